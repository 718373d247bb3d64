//! `cargo xtask cross`: builds the libraries for every platform the project supports.
//!
//! For each target it runs `rustup target add`, then `cargo build --lib -p <crate> --target
//! <target>` for the core and both adapters (the core alone on the bare-metal targets), and
//! prints a table target × crate × result. A library build compiles every dependency but links
//! nothing, so no C toolchain or platform SDK is needed; a row that fails anyway says why.
//! Exits nonzero if any row failed.

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
    let plan: Vec<(&str, &[&str])> = STD_TARGETS
        .iter()
        .map(|t| (*t, STD_CRATES))
        .chain(NO_STD_TARGETS.iter().map(|t| (*t, &STD_CRATES[..1])))
        .filter(|(t, _)| args.targets.is_empty() || args.targets.iter().any(|a| a == t))
        .collect();
    if plan.is_empty() {
        return Err(format!(
            "no supported target among {:?}; supported: {:?} and (core only) {:?}",
            args.targets, STD_TARGETS, NO_STD_TARGETS
        ));
    }
    let root = super::workspace_root();
    let cargo = super::cargo();
    let mut rows = Vec::new();
    let mut logs: Vec<(&str, &str, String)> = Vec::new();
    for (target, crates) in plan {
        println!("==> {target}: rustup target add");
        let added = Command::new("rustup")
            .args(["target", "add", target])
            .output();
        if let Some(reason) = failure(&added) {
            for krate in crates {
                rows.push(Row {
                    target: target.to_string(),
                    krate,
                    ok: false,
                    detail: format!("target not installable: {reason}"),
                });
            }
            continue;
        }
        for krate in crates {
            println!("==> {target}: cargo build --lib -p {krate}");
            let started = Instant::now();
            let built = Command::new(&cargo)
                .current_dir(&root)
                .args(["build", "--lib", "-p", krate, "--target", target])
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
        println!("\n---- cargo build -p {krate} --target {target} (stderr, last 40 lines) ----");
        let lines: Vec<&str> = log.lines().collect();
        for line in &lines[lines.len().saturating_sub(40)..] {
            println!("{line}");
        }
    }
    print_table(&rows);
    let failed = rows.iter().filter(|r| !r.ok).count();
    if failed == 0 {
        println!("==> xtask cross: all {} builds passed", rows.len());
        Ok(())
    } else {
        Err(format!("{failed} of {} cross builds failed", rows.len()))
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
