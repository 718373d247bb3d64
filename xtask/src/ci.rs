//! `cargo xtask ci`: the complete CI check sequence, failing fast.

use std::process::Command;
use std::time::Instant;

/// One CI step: a label, cargo's arguments and extra environment variables.
struct Step {
    /// What the step checks.
    label: &'static str,
    /// The arguments of `cargo`.
    args: &'static [&'static str],
    /// Environment variables set for this step only.
    env: &'static [(&'static str, &'static str)],
}

impl Step {
    /// A step without extra environment variables.
    const fn new(label: &'static str, args: &'static [&'static str]) -> Self {
        Step {
            label,
            args,
            env: &[],
        }
    }
}

/// The CI steps, in order.
const STEPS: &[Step] = &[
    Step::new("format check", &["fmt", "--all", "--", "--check"]),
    Step::new(
        "clippy",
        &[
            "clippy",
            "--workspace",
            "--all-targets",
            "--",
            "-D",
            "warnings",
        ],
    ),
    Step {
        label: "documentation builds without warnings",
        args: &["doc", "--workspace", "--no-deps"],
        env: &[("RUSTDOCFLAGS", "-D warnings")],
    },
    Step::new("tests", &["test", "--workspace"]),
    Step::new(
        "the patched smoltcp's own test suite",
        &["xtask", "smoltcp-tests"],
    ),
    Step::new(
        "the patched smoltcp is upstream 0.14.0 plus its patch series",
        &["xtask", "smoltcp-patches"],
    ),
    Step::new(
        "no_std build of netstack-core",
        &[
            "build",
            "-p",
            "netstack-core",
            "--target",
            "thumbv7em-none-eabihf",
            "--no-default-features",
        ],
    ),
    Step::new(
        "consumer crates outside the workspace (build, kernel echo through a TUN)",
        &["xtask", "consumers"],
    ),
    Step::new(
        "cargo package --workspace with verification (publishable crates)",
        &["xtask", "package"],
    ),
    Step::new(
        "cross builds (mobile, desktop, bare-metal targets)",
        &["xtask", "cross"],
    ),
    Step::new(
        "bounded fuzz run on the seed corpus",
        &["xtask", "fuzz", "--engine", "stable", "--seconds", "60"],
    ),
];

/// Runs every CI step in order and stops at the first failure.
pub fn run() -> Result<(), String> {
    if !super::is_root() {
        return Err(
            "`cargo xtask ci` must run as root: the test suite creates network \
             namespaces and TUN devices (unshare(CLONE_NEWNET), /dev/net/tun). \
             Re-run it as root, e.g. `sudo -E cargo xtask ci`."
                .to_string(),
        );
    }
    let root = super::workspace_root();
    let cargo = super::cargo();
    let total = STEPS.len();
    let started = Instant::now();
    for (index, step) in STEPS.iter().enumerate() {
        let Step { label, args, env } = step;
        let shown_env: String = env.iter().map(|(k, v)| format!("{k}=\"{v}\" ")).collect();
        let shown = format!("{shown_env}cargo {}", args.join(" "));
        println!("==> [{}/{total}] {label}: {shown}", index + 1);
        let step_started = Instant::now();
        let status = Command::new(&cargo)
            .args(*args)
            .envs(env.iter().copied())
            .current_dir(&root)
            .status()
            .map_err(|e| format!("step '{label}' could not start `{shown}`: {e}"))?;
        if !status.success() {
            return Err(format!(
                "CI step {}/{total} '{label}' FAILED ({status}) after {:.1} s: `{shown}`",
                index + 1,
                step_started.elapsed().as_secs_f64()
            ));
        }
        println!(
            "==> [{}/{total}] {label}: ok ({:.1} s)",
            index + 1,
            step_started.elapsed().as_secs_f64()
        );
    }
    println!(
        "==> xtask ci: all {total} steps passed in {:.1} s",
        started.elapsed().as_secs_f64()
    );
    Ok(())
}
