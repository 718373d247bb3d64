//! `cargo xtask package`: `cargo package --workspace` (with verification) for every member that
//! can be published.
//!
//! Cargo 1.95's `cargo package --workspace` packages `publish = false` members too (only
//! `cargo publish --workspace` skips them), and fails on those that depend on another
//! `publish = false` member (`netstack-bench` and `netstack-tests` on `netstack-examples`: the
//! temporary registry it verifies against holds only publishable packages). This command runs
//! `cargo package --workspace --exclude M ...` for every member `M` whose manifest says
//! `publish = false`, read from `cargo metadata`, so a new internal crate needs no change here.
//! Each packaged crate is then built from its `.crate` file against the others, as
//! `cargo publish` would. `--allow-dirty` lets it run on a work tree with uncommitted changes
//! (CI runs on a clean clone anyway): the step checks what would be published, not git state.

use std::process::Command;

/// Packages and verifies every publishable workspace member.
pub fn run() -> Result<(), String> {
    let root = super::workspace_root();
    let packages = super::metadata_packages(
        &["--no-deps".as_ref()],
        Some(&root),
        "cargo metadata failed",
    )?;
    let mut publishable = Vec::new();
    let mut internal = Vec::new();
    for package in &packages {
        let name = package["name"]
            .as_str()
            .ok_or("a package without a name")?
            .to_string();
        // `publish = false` appears as an empty list of registries.
        if package["publish"]
            .as_array()
            .is_some_and(|registries| registries.is_empty())
        {
            internal.push(name);
        } else {
            publishable.push(name);
        }
    }
    if publishable.is_empty() {
        return Err("no workspace member can be published".to_string());
    }
    println!(
        "==> packaging {} (publish = false, left out: {})",
        publishable.join(", "),
        internal.join(", ")
    );
    let mut args = vec!["package", "--workspace", "--allow-dirty"];
    for name in &internal {
        args.extend(["--exclude", name.as_str()]);
    }
    println!("==> cargo {}", args.join(" "));
    let status = Command::new(super::cargo())
        .args(&args)
        .current_dir(&root)
        .status()
        .map_err(|e| format!("cannot run cargo package: {e}"))?;
    if status.success() {
        Ok(())
    } else {
        Err(format!("cargo package failed ({status})"))
    }
}
