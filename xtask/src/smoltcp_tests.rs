//! `cargo xtask smoltcp-tests`: runs the test suite of the patched smoltcp in `vendor/smoltcp`.
//!
//! The vendored crate is not a workspace member (it is the crates.io package, patched in
//! through `[patch.crates-io]`), so `cargo test --workspace` never runs its own tests. They
//! are what shows that the netstack patches (marked "netstack patch" in
//! `src/socket/tcp.rs`) keep every upstream behaviour and have tests of their own. The crate
//! is copied into `target/` as a stand-alone workspace and tested there, with both congestion
//! controllers enabled.

use std::path::Path;
use std::process::Command;

/// Copies `vendor/smoltcp` to `target/smoltcp-tests/crate` and runs its library tests.
pub fn run() -> Result<(), String> {
    let root = super::workspace_root();
    let source = root.join("vendor/smoltcp");
    let work = root.join("target/smoltcp-tests");
    let copy = work.join("crate");
    if copy.exists() {
        std::fs::remove_dir_all(&copy)
            .map_err(|e| format!("cannot remove {}: {e}", copy.display()))?;
    }
    copy_dir(&source, &copy)?;
    let manifest = copy.join("Cargo.toml");
    let mut text = std::fs::read_to_string(&manifest)
        .map_err(|e| format!("cannot read {}: {e}", manifest.display()))?;
    text.push_str(
        "\n# Added by `cargo xtask smoltcp-tests`: a workspace of its own.\n[workspace]\n",
    );
    std::fs::write(&manifest, text)
        .map_err(|e| format!("cannot write {}: {e}", manifest.display()))?;
    let args = [
        "test",
        "--lib",
        "--features",
        "socket-tcp-reno,socket-tcp-cubic",
    ];
    println!("==> cargo {} (in {})", args.join(" "), copy.display());
    let status = Command::new(super::cargo())
        .args(args)
        .current_dir(&copy)
        .env("CARGO_TARGET_DIR", work.join("target"))
        .status()
        .map_err(|e| format!("cannot run cargo: {e}"))?;
    if status.success() {
        Ok(())
    } else {
        Err(format!("the patched smoltcp's tests failed ({status})"))
    }
}

/// Copies a directory tree (regular files and directories only).
fn copy_dir(from: &Path, to: &Path) -> Result<(), String> {
    std::fs::create_dir_all(to).map_err(|e| format!("cannot create {}: {e}", to.display()))?;
    let entries =
        std::fs::read_dir(from).map_err(|e| format!("cannot list {}: {e}", from.display()))?;
    for entry in entries {
        let entry = entry.map_err(|e| format!("cannot list {}: {e}", from.display()))?;
        let target = to.join(entry.file_name());
        let kind = entry
            .file_type()
            .map_err(|e| format!("cannot stat {}: {e}", entry.path().display()))?;
        if kind.is_dir() {
            copy_dir(&entry.path(), &target)?;
        } else if kind.is_file() {
            std::fs::copy(entry.path(), &target)
                .map_err(|e| format!("cannot copy {}: {e}", entry.path().display()))?;
        }
    }
    Ok(())
}
