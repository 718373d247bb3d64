//! `cargo xtask smoltcp-tests`: runs the test suite of the patched smoltcp,
//! `crates/smoltcp-netstack`, with upstream's default features.
//!
//! The fork is a workspace member, so `cargo test --workspace` runs its tests too, but with
//! the fork's default features (the small set netstack-core builds with), which leaves out most
//! of upstream's suite. This command runs the suite as upstream's CI does
//! (`upstream-default`, upstream's default feature list) with both congestion controllers on:
//! it shows that the netstack patches keep every upstream behaviour and that their own tests
//! (named `test_netstack_patch_*`) pass.

use std::process::Command;

/// The arguments of the test run.
const ARGS: &[&str] = &[
    "test",
    "-p",
    "smoltcp-netstack",
    "--lib",
    "--no-default-features",
    "--features",
    "upstream-default,socket-tcp-reno,socket-tcp-cubic",
];

/// Runs the fork's library tests with upstream's default features.
pub fn run() -> Result<(), String> {
    let root = super::workspace_root();
    println!("==> cargo {}", ARGS.join(" "));
    let status = Command::new(super::cargo())
        .args(ARGS)
        .current_dir(&root)
        .status()
        .map_err(|e| format!("cannot run cargo: {e}"))?;
    if status.success() {
        Ok(())
    } else {
        Err(format!("the patched smoltcp's tests failed ({status})"))
    }
}
