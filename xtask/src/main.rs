//! Project automation for the netstack workspace, run as `cargo xtask <command>`.
//!
//! * `cargo xtask ci` runs every check CI runs (format, clippy, docs, tests, the
//!   smoltcp fork's suite and patch series, the `no_std` build of `netstack-core`, the
//!   consumer crates, packaging, cross builds, fuzzing), failing fast.
//! * `cargo xtask cross` builds the core and both adapters for every
//!   supported target and prints a target × crate table.
//! * `cargo xtask demo` runs `tun_forward` in a throw-away network namespace
//!   and fetches files through it with `curl` over IPv4 and IPv6.
//! * `cargo xtask fuzz [--seconds N]` runs every fuzz target for N seconds.
//! * `cargo xtask smoltcp-tests` runs the test suite of the patched smoltcp
//!   (`crates/smoltcp-netstack`) with upstream's default features.
//! * `cargo xtask smoltcp-patches` checks that the fork is upstream smoltcp 0.14.0 plus its
//!   patch series.
//! * `cargo xtask consumers` builds crates outside the workspace that depend on the libraries
//!   by path, and runs the tokio ones' kernel echo through a TUN device.
//! * `cargo xtask package` runs `cargo package --workspace` for the publishable crates.
//! * `cargo xtask bench` benchmarks netstack against its peers through a TUN
//!   device in private network namespaces (see `BENCHMARKS.md`).

#![allow(unsafe_code)]

mod bench;
mod bench_env;
mod bench_report;
mod ci;
mod consumers;
mod cross;
mod demo;
mod fuzz;
mod package;
mod smoltcp_patches;
mod smoltcp_tests;

use std::ffi::OsString;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use clap::{Parser, Subcommand};

/// Command line of `cargo xtask`.
#[derive(Debug, Parser)]
#[command(name = "xtask", about = "netstack project automation")]
struct Cli {
    /// What to do.
    #[command(subcommand)]
    command: Command,
}

/// The `cargo xtask` subcommands.
#[derive(Debug, Subcommand)]
enum Command {
    /// Run all CI checks: cargo fmt --check, clippy -D warnings, the doc build
    /// with -D warnings, the test suite, the smoltcp fork's suite and patch
    /// series, the no_std thumbv7em-none-eabihf build, the consumer crates,
    /// cargo package, the cross builds and a bounded fuzz run (needs root).
    Ci,
    /// Demonstrate tun_forward: serve files from a namespace-local HTTP
    /// server and fetch them through the user-space stack (needs root,
    /// ip, curl, python3).
    Demo,
    /// Build the libraries for every supported target (rustup target add,
    /// then cargo build --lib) and print a target × crate table.
    Cross(cross::CrossArgs),
    /// Benchmark netstack, its peers and kernel references with iperf3
    /// through a TUN device in private network namespaces (needs root,
    /// ip, iperf3).
    Bench(bench::BenchArgs),
    /// Run every fuzz target of fuzz/ for a bounded time (cargo-fuzz on
    /// nightly if available, else the stable driver).
    Fuzz(fuzz::FuzzArgs),
    /// Run the test suite of the patched smoltcp (crates/smoltcp-netstack) with upstream's
    /// default features (`cargo test --workspace` runs it with the fork's small default set).
    SmoltcpTests,
    /// Check that crates/smoltcp-netstack is upstream smoltcp 0.14.0 (fetched through cargo)
    /// plus its patch series (patches/*.patch applied in order with git apply), nothing else.
    SmoltcpPatches,
    /// Generate crates outside the workspace (no `[patch]`) that depend on netstack-tokio (Send
    /// and local), netstack-smol and netstack-core (no_std, thumbv7em-none-eabihf) by path,
    /// build them, and run the tokio ones' kernel echo through a TUN device (needs root).
    Consumers,
    /// cargo package --workspace with verification, leaving out the publish = false members.
    Package,
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Ci => ci::run(),
        Command::Demo => demo::run(),
        Command::Cross(args) => cross::run(args),
        Command::Bench(args) => bench::run_bench(args),
        Command::Fuzz(args) => fuzz::run(args),
        Command::SmoltcpTests => smoltcp_tests::run(),
        Command::SmoltcpPatches => smoltcp_patches::run(),
        Command::Consumers => consumers::run(),
        Command::Package => package::run(),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(message) => {
            eprintln!("xtask: error: {message}");
            ExitCode::FAILURE
        }
    }
}

/// Returns the workspace root (the parent of this package's directory).
fn workspace_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("xtask lives inside the workspace")
        .to_path_buf()
}

/// Returns the cargo executable to use: `$CARGO` or `cargo`.
fn cargo() -> OsString {
    std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into())
}

/// Runs `cargo metadata --format-version 1` with `args` (in `dir`, if given) and returns its
/// `packages`; `failed` heads the error when cargo fails.
fn metadata_packages(
    args: &[&std::ffi::OsStr],
    dir: Option<&std::path::Path>,
    failed: &str,
) -> Result<Vec<serde_json::Value>, String> {
    let mut command = std::process::Command::new(cargo());
    command
        .args(["metadata", "--format-version", "1"])
        .args(args);
    if let Some(dir) = dir {
        command.current_dir(dir);
    }
    let output = command
        .output()
        .map_err(|e| format!("cannot run cargo metadata: {e}"))?;
    if !output.status.success() {
        return Err(format!(
            "{failed}: {}",
            String::from_utf8_lossy(&output.stderr)
        ));
    }
    let mut metadata: serde_json::Value = serde_json::from_slice(&output.stdout)
        .map_err(|e| format!("cargo metadata printed no JSON: {e}"))?;
    match metadata["packages"].take() {
        serde_json::Value::Array(packages) => Ok(packages),
        _ => Err("cargo metadata lists no packages".into()),
    }
}

/// Returns the cargo target directory: `$CARGO_TARGET_DIR` (relative to the
/// workspace root) or the workspace's `target/`.
fn target_dir() -> PathBuf {
    let root = workspace_root();
    match std::env::var_os("CARGO_TARGET_DIR") {
        Some(dir) => root.join(dir),
        None => root.join("target"),
    }
}

/// Returns whether the process runs with effective user id 0.
fn is_root() -> bool {
    // SAFETY: geteuid(2) has no preconditions and cannot fail.
    unsafe { libc::geteuid() == 0 }
}
