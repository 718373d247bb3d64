//! `cargo xtask ci`: the complete CI check sequence, failing fast.

use std::process::Command;
use std::time::Instant;

/// The CI steps, in order: a label and cargo's arguments.
const STEPS: &[(&str, &[&str])] = &[
    ("format check", &["fmt", "--all", "--", "--check"]),
    (
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
    ("tests", &["test", "--workspace"]),
    (
        "the patched smoltcp's own test suite",
        &["xtask", "smoltcp-tests"],
    ),
    (
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
    (
        "cross builds (mobile, desktop, bare-metal targets)",
        &["xtask", "cross"],
    ),
    (
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
    for (index, (label, args)) in STEPS.iter().enumerate() {
        let shown = format!("cargo {}", args.join(" "));
        println!("==> [{}/{total}] {label}: {shown}", index + 1);
        let step_started = Instant::now();
        let status = Command::new(&cargo)
            .args(*args)
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
