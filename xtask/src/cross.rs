//! `cargo xtask cross`: builds the libraries, and checks the forwarders, for every platform the
//! project supports.
//!
//! For each target it runs `rustup target add`, then `cargo build --lib -p <crate> --target
//! <target>` for the core and both adapters (the core alone on the bare-metal targets), and on
//! the forwarders' platforms `cargo check -p netstack-examples --bins --target <target>`
//! (`tun_forward` and `tun_forward_smol` with their TUN device: tun-rs on macOS, iOS, Android,
//! FreeBSD and Windows), and prints a table target × crate × result. A library build compiles
//! every dependency but links nothing, and a check does not even generate code, so no C
//! toolchain or platform SDK is needed; a row that fails anyway says why. Exits nonzero if any
//! row failed.

use std::process::{Command, Output};
use std::time::Instant;

use clap::Args;

/// Targets on which the core and both adapters must build.
const STD_TARGETS: &[&str] = &[
    "x86_64-unknown-linux-gnu",
    "aarch64-linux-android",
    "x86_64-linux-android",
    "x86_64-apple-darwin",
    "aarch64-apple-darwin",
    "aarch64-apple-ios",
    "x86_64-pc-windows-msvc",
    "aarch64-pc-windows-msvc",
];

/// Bare-metal targets, on which only the `no_std` core must build.
const NO_STD_TARGETS: &[&str] = &["thumbv7em-none-eabihf", "riscv32imac-unknown-none-elf"];

/// The library crates built on `std` targets.
const STD_CRATES: &[&str] = &["netstack-core", "netstack-tokio", "netstack-smol"];

/// Targets on which the forwarders (the examples' binaries) must check, besides the Linux host
/// that builds and tests them.
const EXAMPLE_TARGETS: &[&str] = &[
    "x86_64-apple-darwin",
    "aarch64-apple-darwin",
    "x86_64-pc-windows-msvc",
    "aarch64-linux-android",
    "aarch64-apple-ios",
    "x86_64-unknown-freebsd",
];

/// One cargo run of the plan.
#[derive(Debug, Clone, Copy)]
enum Step {
    /// `cargo build --lib -p <crate>`.
    Lib(&'static str),
    /// `cargo check -p netstack-examples --bins`.
    ExampleBins,
}

impl Step {
    /// The crate column of the table.
    fn label(self) -> &'static str {
        match self {
            Step::Lib(krate) => krate,
            Step::ExampleBins => "netstack-examples (bins)",
        }
    }

    /// Cargo's arguments for `target`.
    fn args(self, target: &str) -> Vec<&str> {
        match self {
            Step::Lib(krate) => vec!["build", "--lib", "-p", krate, "--target", target],
            Step::ExampleBins => vec![
                "check",
                "-p",
                "netstack-examples",
                "--bins",
                "--target",
                target,
            ],
        }
    }
}

/// Every target with its steps, in a stable order: libraries first, the examples' targets
/// that build no library last.
fn full_plan() -> Vec<(&'static str, Vec<Step>)> {
    let libs = |target: &str| -> Vec<Step> {
        if STD_TARGETS.contains(&target) {
            STD_CRATES.iter().map(|k| Step::Lib(k)).collect()
        } else if NO_STD_TARGETS.contains(&target) {
            vec![Step::Lib(STD_CRATES[0])]
        } else {
            Vec::new()
        }
    };
    let mut targets: Vec<&'static str> =
        STD_TARGETS.iter().chain(NO_STD_TARGETS).copied().collect();
    for target in EXAMPLE_TARGETS {
        if !targets.contains(target) {
            targets.push(target);
        }
    }
    targets
        .into_iter()
        .map(|target| {
            let mut steps = libs(target);
            if EXAMPLE_TARGETS.contains(&target) {
                steps.push(Step::ExampleBins);
            }
            (target, steps)
        })
        .collect()
}

/// Command line of `cargo xtask cross`.
#[derive(Debug, Args)]
pub struct CrossArgs {
    /// Build only this target (repeatable); default: every supported target.
    #[arg(long = "target")]
    targets: Vec<String>,
}

/// One cell of the result table.
struct Row {
    target: String,
    krate: &'static str,
    ok: bool,
    detail: String,
}

/// Installs the targets, builds every (target, crate) pair, prints the table.
pub fn run(args: CrossArgs) -> Result<(), String> {
    let plan: Vec<(&str, Vec<Step>)> = full_plan()
        .into_iter()
        .filter(|(t, _)| args.targets.is_empty() || args.targets.iter().any(|a| a == t))
        .collect();
    if plan.is_empty() {
        return Err(format!(
            "no supported target among {:?}; supported: {:?}, (core only) {:?} and (examples) {:?}",
            args.targets, STD_TARGETS, NO_STD_TARGETS, EXAMPLE_TARGETS
        ));
    }
    let root = super::workspace_root();
    let cargo = super::cargo();
    let mut rows = Vec::new();
    let mut logs: Vec<(&str, &str, String)> = Vec::new();
    for (target, steps) in plan {
        println!("==> {target}: rustup target add");
        let added = Command::new("rustup")
            .args(["target", "add", target])
            .output();
        if let Some(reason) = failure(&added) {
            for step in steps {
                rows.push(Row {
                    target: target.to_string(),
                    krate: step.label(),
                    ok: false,
                    detail: format!("target not installable: {reason}"),
                });
            }
            continue;
        }
        for step in steps {
            let cargo_args = step.args(target);
            println!("==> {target}: cargo {}", cargo_args.join(" "));
            let krate = step.label();
            let started = Instant::now();
            let built = Command::new(&cargo)
                .current_dir(&root)
                .args(&cargo_args)
                .output();
            let seconds = started.elapsed().as_secs_f64();
            match failure(&built) {
                None => rows.push(Row {
                    target: target.to_string(),
                    krate,
                    ok: true,
                    detail: format!("ok ({seconds:.0} s)"),
                }),
                Some(reason) => {
                    if let Ok(out) = &built {
                        logs.push((target, krate, String::from_utf8_lossy(&out.stderr).into()));
                    }
                    rows.push(Row {
                        target: target.to_string(),
                        krate,
                        ok: false,
                        detail: reason,
                    });
                }
            }
        }
    }
    for (target, krate, log) in &logs {
        println!("\n---- {krate} --target {target} (stderr, last 40 lines) ----");
        let lines: Vec<&str> = log.lines().collect();
        for line in &lines[lines.len().saturating_sub(40)..] {
            println!("{line}");
        }
    }
    print_table(&rows);
    let failed = rows.iter().filter(|r| !r.ok).count();
    if failed == 0 {
        println!(
            "==> xtask cross: all {} builds and checks passed",
            rows.len()
        );
        Ok(())
    } else {
        Err(format!(
            "{failed} of {} cross builds and checks failed",
            rows.len()
        ))
    }
}

/// `None` if the command ran and succeeded; otherwise a one-line reason (the first `error`
/// line of its stderr, with a hint when a missing C toolchain or SDK is the cause).
fn failure(result: &std::io::Result<Output>) -> Option<String> {
    let out = match result {
        Ok(out) if out.status.success() => return None,
        Ok(out) => out,
        Err(e) => return Some(format!("could not start: {e}")),
    };
    let stderr = String::from_utf8_lossy(&out.stderr);
    let first_error = stderr
        .lines()
        .find(|l| l.trim_start().starts_with("error"))
        .unwrap_or_else(|| stderr.lines().last().unwrap_or("no output"))
        .trim();
    let lower = stderr.to_lowercase();
    let hint = if lower.contains("linker") || lower.contains("failed to find tool") {
        " (needs a C toolchain/linker for this target)"
    } else if lower.contains("sdk") || lower.contains("xcrun") {
        " (needs the platform SDK)"
    } else {
        ""
    };
    Some(format!("FAILED: {first_error}{hint}"))
}

/// Prints the result table.
fn print_table(rows: &[Row]) {
    let tw = rows
        .iter()
        .map(|r| r.target.len())
        .max()
        .unwrap_or(6)
        .max(6);
    let cw = rows.iter().map(|r| r.krate.len()).max().unwrap_or(5).max(5);
    println!("\n{:<tw$}  {:<cw$}  result", "target", "crate");
    println!("{:-<tw$}  {:-<cw$}  ------", "", "");
    for r in rows {
        println!("{:<tw$}  {:<cw$}  {}", r.target, r.krate, r.detail);
    }
    println!();
}
