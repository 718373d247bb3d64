//! Kernel-peer test harness for netstack.
//!
//! Integration tests in `tests/*.rs` use this library to run a user-space
//! stack against the real Linux network stack: each test gets a private
//! network namespace containing a TUN device whose kernel side owns
//! [`KERNEL_V4`] (`198.18.0.1/15`) and [`KERNEL_V6`] (`fd00::1/64`). Every
//! other address in `198.18.0.0/15` and `fd00::/64` is routed into the TUN,
//! i.e. to the stack under test, so ordinary kernel sockets (or child
//! processes such as `curl`) act as the remote peer.
//!
//! Nothing is ever configured in the machine's root namespace: the namespace
//! belongs to a dedicated thread (and the runtime threads it creates) and
//! vanishes together with its TUN device when those threads end. Creating
//! namespaces needs root (`CAP_SYS_ADMIN` and `CAP_NET_ADMIN`).

#![allow(unsafe_code)]

use std::future::Future;
use std::io;
use std::net::{Ipv4Addr, Ipv6Addr};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::{Arc, OnceLock};
use std::time::Duration;

pub mod fd_handover;
pub mod fixture;
pub mod flavors;
pub mod flood;
pub mod forwarder;
pub mod impair;
pub mod mem;
pub mod sim;

pub use netstack_examples::tun::Tun;

/// The kernel's IPv4 address on the test TUN link (`198.18.0.1/15`).
///
/// Any other address in `198.18.0.0/15` is routed into the TUN device, i.e.
/// to the stack under test.
pub const KERNEL_V4: Ipv4Addr = Ipv4Addr::new(198, 18, 0, 1);

/// The kernel's IPv6 address on the test TUN link (`fd00::1/64`).
///
/// Any other address in `fd00::/64` is routed into the TUN device, i.e. to
/// the stack under test.
pub const KERNEL_V6: Ipv6Addr = Ipv6Addr::new(0xfd00, 0, 0, 0, 0, 0, 0, 1);

/// How long runtime shutdown may wait for blocking tasks after the test
/// future has finished.
const SHUTDOWN_TIMEOUT: Duration = Duration::from_secs(10);

/// Moves the calling thread into a new, private network namespace
/// (`unshare(CLONE_NEWNET)`) and brings `lo` up.
///
/// Threads and child processes started afterwards from this thread inherit
/// the namespace. The namespace disappears when the last thread or process
/// in it ends.
pub fn enter_new_netns() -> io::Result<()> {
    // SAFETY: unshare(2) with a constant flag; it only changes the namespace of
    // the calling thread and touches no memory of ours.
    if unsafe { libc::unshare(libc::CLONE_NEWNET) } != 0 {
        let err = io::Error::last_os_error();
        return Err(io::Error::new(
            err.kind(),
            format!("unshare(CLONE_NEWNET) failed (needs root): {err}"),
        ));
    }
    ip(&["link", "set", "lo", "up"])
}

/// Runs `ip <args>` from the calling thread (so in its network namespace)
/// and returns an error carrying `ip`'s stderr if it fails.
pub fn ip(args: &[&str]) -> io::Result<()> {
    let out = Command::new("ip")
        .args(args)
        .output()
        .map_err(|e| io::Error::new(e.kind(), format!("running `ip {}`: {e}", args.join(" "))))?;
    if out.status.success() {
        Ok(())
    } else {
        Err(io::Error::other(format!(
            "`ip {}` failed ({}): {}",
            args.join(" "),
            out.status,
            String::from_utf8_lossy(&out.stderr).trim()
        )))
    }
}

/// Configuration of the kernel side of a test TUN link.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TestNet {
    /// MTU of the TUN device.
    pub mtu: u32,
    /// Interface name of the TUN device.
    pub tun_name: String,
}

impl Default for TestNet {
    /// MTU 1500, device `tun0`.
    fn default() -> Self {
        TestNet {
            mtu: 1500,
            tun_name: "tun0".to_string(),
        }
    }
}

/// Runs `f(tun)` inside a fresh network namespace on a multi-thread tokio
/// runtime with `workers` worker threads (at least one).
///
/// Spawns a std thread, enters a new namespace there
/// ([`enter_new_netns`]), builds the runtime from that thread (so its worker
/// and blocking threads are in the namespace too), creates the TUN device
/// with [`Tun::create`], configures [`KERNEL_V4`]`/15` and
/// [`KERNEL_V6`]`/64` (`nodad`) on it, and runs `f(tun)` to completion.
/// Returns `f`'s output; a panic in `f` (or in the setup) propagates to the
/// caller as a panic.
///
/// Kernel sockets and child processes created from within `f` (on any
/// runtime thread) live in the test namespace.
pub fn run_in_netns<F, Fut, T>(net: TestNet, workers: usize, f: F) -> T
where
    F: FnOnce(Arc<Tun>) -> Fut + Send + 'static,
    Fut: Future<Output = T>,
    T: Send + 'static,
{
    run_with_runtime(
        net,
        move || {
            let mut builder = tokio::runtime::Builder::new_multi_thread();
            builder.worker_threads(workers.max(1));
            builder
        },
        f,
    )
}

/// Like [`run_in_netns`], but runs `f` on a current-thread tokio runtime
/// (driven by the namespace thread itself).
pub fn run_in_netns_current_thread<F, Fut, T>(net: TestNet, f: F) -> T
where
    F: FnOnce(Arc<Tun>) -> Fut + Send + 'static,
    Fut: Future<Output = T>,
    T: Send + 'static,
{
    run_with_runtime(net, tokio::runtime::Builder::new_current_thread, f)
}

/// Shared implementation of [`run_in_netns`] and
/// [`run_in_netns_current_thread`].
fn run_with_runtime<B, F, Fut, T>(net: TestNet, make_builder: B, f: F) -> T
where
    B: FnOnce() -> tokio::runtime::Builder + Send + 'static,
    F: FnOnce(Arc<Tun>) -> Fut + Send + 'static,
    Fut: Future<Output = T>,
    T: Send + 'static,
{
    let thread_name = format!("netns-{}", net.tun_name);
    in_new_netns(&thread_name, move || {
        let mut builder = make_builder();
        let runtime = builder
            .enable_all()
            .build()
            .unwrap_or_else(|e| panic!("building the tokio runtime: {e}"));
        let tun = {
            let _guard = runtime.enter();
            Tun::create(&net.tun_name, net.mtu)
                .unwrap_or_else(|e| panic!("creating TUN device {:?}: {e}", net.tun_name))
        };
        configure_kernel_side(&net.tun_name)
            .unwrap_or_else(|e| panic!("configuring TUN device {:?}: {e}", net.tun_name));
        let output = runtime.block_on(f(Arc::new(tun)));
        runtime.shutdown_timeout(SHUTDOWN_TIMEOUT);
        output
    })
}

/// Runs `f` on a new thread named `thread_name` that first enters a fresh network namespace
/// ([`enter_new_netns`]); returns `f`'s output and propagates its panics.
///
/// `f` must create every executor, thread, TUN device and socket of the test itself (threads
/// it starts inherit the namespace; threads that existed before do not). For executors other
/// than tokio's: create the device, then call [`configure_kernel_side`].
pub fn in_new_netns<T, F>(thread_name: &str, f: F) -> T
where
    F: FnOnce() -> T + Send + 'static,
    T: Send + 'static,
{
    let thread = std::thread::Builder::new()
        .name(thread_name.to_string())
        .spawn(move || {
            enter_new_netns().unwrap_or_else(|e| panic!("entering a new network namespace: {e}"));
            f()
        })
        .expect("spawning the network namespace thread");
    match thread.join() {
        Ok(output) => output,
        Err(panic) => std::panic::resume_unwind(panic),
    }
}

/// Gives the kernel its addresses on the TUN link `dev` ([`KERNEL_V4`]`/15`, [`KERNEL_V6`]`/64`)
/// and brings it up. Call it from the namespace's thread after creating the device.
///
/// # Errors
/// The failing `ip` command.
pub fn configure_kernel_side(dev: &str) -> io::Result<()> {
    let v4 = format!("{KERNEL_V4}/15");
    let v6 = format!("{KERNEL_V6}/64");
    ip(&["addr", "add", &v4, "dev", dev])?;
    ip(&["-6", "addr", "add", &v6, "dev", dev, "nodad"])?;
    ip(&["link", "set", dev, "up"])
}

/// Deterministic pseudo-random bytes (xorshift64*) for byte-exact transfer
/// checks.
///
/// The same `seed` and `len` always give the same bytes, and a shorter
/// output is a prefix of a longer one with the same seed.
pub fn pattern(seed: u64, len: usize) -> Vec<u8> {
    // A zero state would make xorshift emit zeros forever; mixing in a constant
    // keeps every seed (including 0) useful.
    let mut state = seed ^ 0x9E37_79B9_7F4A_7C15;
    if state == 0 {
        state = 0x2545_F491_4F6C_DD1D;
    }
    let mut out = Vec::with_capacity(len + 8);
    while out.len() < len {
        state ^= state >> 12;
        state ^= state << 25;
        state ^= state >> 27;
        let word = state.wrapping_mul(0x2545_F491_4F6C_DD1D);
        out.extend_from_slice(&word.to_le_bytes());
    }
    out.truncate(len);
    out
}

/// Returns the workspace root directory.
pub fn workspace_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("the tests package lives inside the workspace")
        .to_path_buf()
}

/// Builds the workspace binary `tun_forward` once per process and returns
/// its path (see [`build_example`]).
pub fn tun_forward_binary() -> PathBuf {
    static BINARY: OnceLock<PathBuf> = OnceLock::new();
    BINARY.get_or_init(|| build_example("tun_forward")).clone()
}

/// Builds the workspace binary `tun_forward_smol` (the single-thread smol
/// forwarder) once per process and returns its path.
pub fn tun_forward_smol_binary() -> PathBuf {
    static BINARY: OnceLock<PathBuf> = OnceLock::new();
    BINARY
        .get_or_init(|| build_example("tun_forward_smol"))
        .clone()
}

/// Builds example binary `name` and returns its path.
///
/// Runs `$CARGO build -p netstack-examples --bin NAME` (with
/// `--release` when this crate is built without debug assertions) in the
/// workspace root, using the `CARGO` environment variable or `cargo`. The
/// binary is looked up in `$CARGO_TARGET_DIR` or the workspace's `target/`.
/// Panics with cargo's output if the build fails.
pub fn build_example(name: &str) -> PathBuf {
    let root = workspace_root();
    let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
    let release = !cfg!(debug_assertions);
    let mut cmd = Command::new(&cargo);
    cmd.current_dir(&root)
        .args(["build", "-p", "netstack-examples", "--bin", name]);
    if release {
        cmd.arg("--release");
    }
    let out = cmd
        .output()
        .unwrap_or_else(|e| panic!("running {cargo:?} build: {e}"));
    assert!(
        out.status.success(),
        "building {name} failed ({}):\n{}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    let target_dir = match std::env::var_os("CARGO_TARGET_DIR") {
        Some(dir) => root.join(dir),
        None => root.join("target"),
    };
    let path = target_dir
        .join(if release { "release" } else { "debug" })
        .join(name);
    assert!(
        path.is_file(),
        "{name} was built but not found at {}",
        path.display()
    );
    path
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pattern_is_deterministic_and_prefix_stable() {
        let a = pattern(7, 1000);
        assert_eq!(a.len(), 1000);
        assert_eq!(a, pattern(7, 1000));
        assert_eq!(&a[..13], &pattern(7, 13)[..]);
        assert_ne!(a, pattern(8, 1000));
        assert!(pattern(0, 64).iter().any(|&b| b != 0));
        assert!(pattern(1, 0).is_empty());
    }

    #[test]
    fn default_test_net() {
        let net = TestNet::default();
        assert_eq!(net.mtu, 1500);
        assert_eq!(net.tun_name, "tun0");
    }
}

/// The examples in the README compile: every flavour of both adapters, UDP, ICMP and the IP
/// filter (this crate depends on every adapter, so all of them are in scope).
#[cfg(doctest)]
#[doc = include_str!("../../README.md")]
mod readme_doctests {}
