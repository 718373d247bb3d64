//! Builds the gVisor-netstack subject (`bench/gvisor/main.go`) offline, in GOPATH mode, from
//! Debian's packages: `golang-go` (Go 1.19) and `golang-gvisor-gvisor-dev` (gVisor's source
//! of 2022-12-19 under `/usr/share/gocode`), installed with apt-get when missing.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use crate::bench_env::{apt_install, run_output};

/// Name of the built forwarder (in the release directory, next to the Rust subjects).
pub const GVISOR_BINARY: &str = "fwd_gvisor";

/// Where Debian's Go packages put their source.
const DEBIAN_GOPATH: &str = "/usr/share/gocode";

/// The gVisor package the forwarder needs, under [`DEBIAN_GOPATH`].
const GVISOR_SOURCE: &str = "/usr/share/gocode/src/gvisor.dev/gvisor/pkg/tcpip/stack";

/// Builds `fwd_gvisor` into `release`; returns its path, or why it cannot be built (the
/// subject is then skipped with that message).
pub fn build_gvisor(release: &Path) -> Result<PathBuf, String> {
    let have_go = run_output("go", &["version"]).is_ok();
    let have_gvisor = Path::new(GVISOR_SOURCE).is_dir();
    if !have_go || !have_gvisor {
        apt_install(&["golang-go", "golang-gvisor-gvisor-dev"]).map_err(|e| {
            format!("Go or gVisor's source is missing and could not be installed: {e}")
        })?;
    }
    let source = crate::workspace_root().join("bench/gvisor");
    let target = crate::target_dir();
    let output = release.join(GVISOR_BINARY);
    eprintln!("==> go build -o {} {}", output.display(), source.display());
    // GOPATH mode, nothing fetched: our own (empty) GOPATH first, so nothing is written
    // under /usr/share; the build cache in target/.
    let gopath = format!("{}:{DEBIAN_GOPATH}", target.join("go").display());
    let built = Command::new("go")
        .args(["build", "-trimpath", "-o"])
        .arg(&output)
        .arg(".")
        .current_dir(&source)
        .env("GO111MODULE", "off")
        .env("GOPATH", gopath)
        .env("GOCACHE", target.join("go-cache"))
        .env("GOFLAGS", "")
        .env("GOPROXY", "off")
        .env("GOTOOLCHAIN", "local")
        .env("CGO_ENABLED", "0")
        .stdin(Stdio::null())
        .output()
        .map_err(|e| format!("running go build: {e}"))?;
    if !built.status.success() {
        return Err(format!(
            "go build of bench/gvisor failed ({}): {}",
            built.status,
            String::from_utf8_lossy(&built.stderr).trim()
        ));
    }
    Ok(output)
}
