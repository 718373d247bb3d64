//! `cargo xtask smoltcp-patches`: checks that `crates/smoltcp-netstack` is upstream smoltcp
//! 0.14.0 plus the patch series in its `patches/` directory, and nothing else.
//!
//! It fetches the pristine crate from crates.io through cargo (a throw-away project in the
//! system's temporary directory, so cargo's own cache and configuration apply), copies
//! upstream's files into a scratch tree, applies every `patches/NNNN-*.patch` in order with
//! `git apply`, and compares the result with the fork file by file. Any difference, a patch
//! that does not apply, or a patch without its header (What/Why/RFC/Test) fails the check.
//! The fork's own files (`Cargo.toml`, `README.md`, `patches/`) are not compared.

use std::path::{Path, PathBuf};
use std::process::Command;

/// The upstream release the fork is based on.
const UPSTREAM_VERSION: &str = "0.14.0";

/// Paths (files or directories, relative to the crate root) that must be upstream's files
/// with the patches applied.
const UPSTREAM_PATHS: &[&str] = &[
    "src",
    "build.rs",
    "gen_config.py",
    "LICENSE-0BSD.txt",
    "CHANGELOG.md",
];

/// The header lines every patch starts with (before its diff).
const HEADER_FIELDS: &[&str] = &["What:", "Why:", "RFC:", "Test:"];

/// Runs the check; the scratch directory is removed when it passes and kept when it fails.
pub fn run() -> Result<(), String> {
    let fork = super::workspace_root().join("crates/smoltcp-netstack");
    let scratch =
        std::env::temp_dir().join(format!("netstack-smoltcp-patches-{}", std::process::id()));
    if scratch.exists() {
        remove_dir(&scratch)?;
    }
    let result = check(&fork, &scratch);
    match &result {
        Ok(()) => remove_dir(&scratch)?,
        Err(_) => eprintln!("xtask: the scratch tree is kept in {}", scratch.display()),
    }
    result
}

/// Fetches upstream, applies the series in `scratch/tree` and compares it with `fork`.
fn check(fork: &Path, scratch: &Path) -> Result<(), String> {
    let upstream = fetch_upstream(&scratch.join("fetch"))?;
    println!(
        "==> pristine smoltcp {UPSTREAM_VERSION}: {}",
        upstream.display()
    );
    let tree = scratch.join("tree");
    for path in UPSTREAM_PATHS {
        copy_path(&upstream.join(path), &tree.join(path))?;
    }
    run_git(&tree, &["init", "-q"])?;
    let patches = patch_files(&fork.join("patches"))?;
    for patch in &patches {
        check_header(patch)?;
        let shown = patch.display().to_string();
        run_git(&tree, &["apply", "--whitespace=nowarn", &shown])
            .map_err(|e| format!("{shown} does not apply: {e}"))?;
        println!("==> applied {}", file_name(patch));
    }
    let mut differences = Vec::new();
    for path in UPSTREAM_PATHS {
        compare(&tree.join(path), &fork.join(path), path, &mut differences)?;
    }
    if differences.is_empty() {
        println!(
            "==> crates/smoltcp-netstack is smoltcp {UPSTREAM_VERSION} plus {} patches, \
             nothing else ({} paths compared)",
            patches.len(),
            UPSTREAM_PATHS.len()
        );
        return Ok(());
    }
    for path in UPSTREAM_PATHS {
        // Shows the differences (git diff exits 1 when there are some; that is expected).
        let _ = Command::new("git")
            .args(["diff", "--no-index", "--stat"])
            .arg(tree.join(path))
            .arg(fork.join(path))
            .status();
    }
    Err(format!(
        "crates/smoltcp-netstack differs from smoltcp {UPSTREAM_VERSION} plus its patch series \
         in: {}. Turn the change into a patch (patches/NNNN-name.patch, with its header) or \
         drop it.",
        differences.join(", ")
    ))
}

/// Makes cargo download smoltcp `UPSTREAM_VERSION` (a project in `dir` that depends on it)
/// and returns the directory of its sources.
fn fetch_upstream(dir: &Path) -> Result<PathBuf, String> {
    std::fs::create_dir_all(dir).map_err(|e| format!("cannot create {}: {e}", dir.display()))?;
    let manifest = dir.join("Cargo.toml");
    write(
        &manifest,
        &format!(
            "[package]\nname = \"fetch-pristine-smoltcp\"\nversion = \"0.0.0\"\nedition = \"2021\"\n\
             publish = false\n\n[lib]\npath = \"lib.rs\"\n\n[dependencies]\n\
             smoltcp = {{ version = \"={UPSTREAM_VERSION}\", default-features = false }}\n\n\
             # A workspace of its own.\n[workspace]\n"
        ),
    )?;
    write(&dir.join("lib.rs"), "")?;
    let packages = super::metadata_packages(
        &["--manifest-path".as_ref(), manifest.as_os_str()],
        None,
        &format!("cargo could not fetch smoltcp {UPSTREAM_VERSION}"),
    )?;
    let smoltcp = packages
        .iter()
        .find(|p| p["name"] == "smoltcp" && p["version"] == UPSTREAM_VERSION)
        .ok_or_else(|| format!("cargo metadata does not list smoltcp {UPSTREAM_VERSION}"))?;
    let manifest_path = smoltcp["manifest_path"]
        .as_str()
        .ok_or("smoltcp has no manifest_path")?;
    Path::new(manifest_path)
        .parent()
        .map(Path::to_path_buf)
        .ok_or_else(|| format!("odd manifest path {manifest_path}"))
}

/// The series: `NNNN-*.patch` in `dir`, numbered 0001, 0002, ... without gaps.
fn patch_files(dir: &Path) -> Result<Vec<PathBuf>, String> {
    let mut patches: Vec<PathBuf> = std::fs::read_dir(dir)
        .map_err(|e| format!("cannot list {}: {e}", dir.display()))?
        .filter_map(|entry| entry.ok().map(|e| e.path()))
        .filter(|path| path.extension().is_some_and(|ext| ext == "patch"))
        .collect();
    patches.sort();
    if patches.is_empty() {
        return Err(format!("no patches in {}", dir.display()));
    }
    for (index, patch) in patches.iter().enumerate() {
        let expected = format!("{:04}-", index + 1);
        if !file_name(patch).starts_with(&expected) {
            return Err(format!(
                "patch {} should be numbered {expected}: the series is 0001, 0002, ... in order",
                file_name(patch)
            ));
        }
    }
    Ok(patches)
}

/// Fails unless the text before the patch's first diff names what, why, RFC and test.
fn check_header(patch: &Path) -> Result<(), String> {
    let text = std::fs::read_to_string(patch)
        .map_err(|e| format!("cannot read {}: {e}", patch.display()))?;
    let header = text
        .find("\ndiff --git ")
        .map(|end| &text[..end])
        .ok_or_else(|| format!("{} contains no git diff", file_name(patch)))?;
    let missing: Vec<&str> = HEADER_FIELDS
        .iter()
        .copied()
        .filter(|field| !header.lines().any(|line| line.starts_with(field)))
        .collect();
    if missing.is_empty() {
        Ok(())
    } else {
        Err(format!(
            "the header of {} lacks {}",
            file_name(patch),
            missing.join(", ")
        ))
    }
}

/// Compares `expected` with `actual` (files or directory trees), pushing every path that
/// differs, exists on one side only, or is of a different kind.
fn compare(
    expected: &Path,
    actual: &Path,
    shown: &str,
    differences: &mut Vec<String>,
) -> Result<(), String> {
    match (expected.is_dir(), actual.is_dir()) {
        (true, true) => {
            let mut names = list_dir(expected)?;
            names.extend(list_dir(actual)?);
            names.sort();
            names.dedup();
            for name in names {
                compare(
                    &expected.join(&name),
                    &actual.join(&name),
                    &format!("{shown}/{name}"),
                    differences,
                )?;
            }
        }
        (false, false) => {
            if std::fs::read(expected).ok() != std::fs::read(actual).ok()
                || !expected.exists()
                || !actual.exists()
            {
                differences.push(shown.to_string());
            }
        }
        _ => differences.push(shown.to_string()),
    }
    Ok(())
}

/// The names of the entries of `dir`, or none if it does not exist.
fn list_dir(dir: &Path) -> Result<Vec<String>, String> {
    if !dir.exists() {
        return Ok(Vec::new());
    }
    let entries =
        std::fs::read_dir(dir).map_err(|e| format!("cannot list {}: {e}", dir.display()))?;
    entries
        .map(|entry| {
            entry
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .map_err(|e| format!("cannot list {}: {e}", dir.display()))
        })
        .collect()
}

/// Copies a file or a directory tree.
fn copy_path(from: &Path, to: &Path) -> Result<(), String> {
    if from.is_dir() {
        std::fs::create_dir_all(to).map_err(|e| format!("cannot create {}: {e}", to.display()))?;
        for name in list_dir(from)? {
            copy_path(&from.join(&name), &to.join(&name))?;
        }
        Ok(())
    } else {
        if let Some(parent) = to.parent() {
            std::fs::create_dir_all(parent)
                .map_err(|e| format!("cannot create {}: {e}", parent.display()))?;
        }
        std::fs::copy(from, to)
            .map(|_| ())
            .map_err(|e| format!("cannot copy {}: {e}", from.display()))
    }
}

/// Runs git in `dir`, failing with its error output.
fn run_git(dir: &Path, args: &[&str]) -> Result<(), String> {
    let output = Command::new("git")
        .args(args)
        .current_dir(dir)
        .output()
        .map_err(|e| format!("cannot run git: {e}"))?;
    if output.status.success() {
        Ok(())
    } else {
        Err(String::from_utf8_lossy(&output.stderr).trim().to_string())
    }
}

/// Writes a file.
fn write(path: &Path, text: &str) -> Result<(), String> {
    std::fs::write(path, text).map_err(|e| format!("cannot write {}: {e}", path.display()))
}

/// Removes a directory tree.
fn remove_dir(dir: &Path) -> Result<(), String> {
    std::fs::remove_dir_all(dir).map_err(|e| format!("cannot remove {}: {e}", dir.display()))
}

/// The file name of a path, for messages.
fn file_name(path: &Path) -> String {
    path.file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default()
}
