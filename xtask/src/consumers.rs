//! `cargo xtask consumers`: crates outside the workspace that use netstack as a new user would.
//!
//! It writes four crates into a fresh directory under the system's temporary directory (not
//! inside the workspace, no `[patch]`, no workspace `.cargo/config.toml`), each depending on the
//! libraries **by path**, the way a user who cloned the repository would:
//!
//! * `consumer-tokio`: the `Send` flavour of netstack-tokio on the multi-thread runtime;
//! * `consumer-tokio-local`: the `local` flavour on a current-thread runtime and a `LocalSet`;
//! * `consumer-smol`: netstack-smol on async-executor / async-io;
//! * `consumer-no-std`: a `#![no_std]` library over netstack-core with its own `Clock`, built
//!   for `thumbv7em-none-eabihf`.
//!
//! All four are built. Then the two tokio programs run (as root): each enters a network
//! namespace of its own (`unshare(CLONE_NEWNET)`), creates a TUN device there, wires it to its
//! stack, and echoes what a kernel `TcpStream` sends to 198.19.0.7:7 through it; the program
//! checks the destination the stack saw and every byte that came back, and exits non-zero
//! otherwise. The namespace and the device vanish with the process.
//!
//! The generated sources are the templates below; when the adapters' API changes, update them
//! here. Builds share `target/consumers` in the workspace, so a repeated run only rebuilds what
//! changed.

use std::path::{Path, PathBuf};
use std::process::Command;

/// `Cargo.toml` of the `Send` tokio consumer (`@NETSTACK@` is the workspace root).
const TOKIO_MANIFEST: &str = r#"[package]
name = "consumer-tokio"
version = "0.0.0"
edition = "2024"
publish = false

[dependencies]
netstack-tokio = { path = "@NETSTACK@/crates/netstack-tokio" }
tokio = { version = "1.54", features = ["rt-multi-thread", "net", "io-util", "time"] }
futures = "0.3"
libc = "0.2"
"#;

/// `src/main.rs` of the `Send` tokio consumer: a kernel echo through a TUN device.
const TOKIO_MAIN: &str = r#"//! netstack-tokio (`Send` flavour) as a dependency: a kernel TcpStream's bytes come back
//! through a TUN device in a private network namespace.
mod tun;

use futures::{SinkExt, StreamExt};

fn main() -> std::io::Result<()> {
    // Before the runtime starts any thread: they all inherit the private namespace.
    let device = tun::create_in_private_namespace()?;
    let runtime = tokio::runtime::Builder::new_multi_thread().enable_all().build()?;
    runtime.block_on(async {
        let device = tun::register(device)?;
        let config = netstack_tokio::Config::default().mtu(1500);
        let (port, listener) = netstack_tokio::StackBuilder::new(config).run();
        let (mut to_stack, mut from_stack) = port.split();
        let (reader, writer) = (device.clone(), device);
        tokio::spawn(async move {
            while let Ok(packet) = tun::read(&reader).await {
                if to_stack.send(packet).await.is_err() {
                    break;
                }
            }
        });
        tokio::spawn(async move {
            while let Some(packet) = from_stack.next().await {
                if tun::write(&writer, &packet).await.is_err() {
                    break;
                }
            }
        });
        tokio::spawn(async move {
            while let Ok((stream, _peer)) = listener.accept().await {
                tokio::spawn(tun::echo(stream.local_addr().ok(), stream.into_split()));
            }
        });
        tun::kernel_client_checks_echo().await
    })
}
"#;

/// `Cargo.toml` of the `local` tokio consumer.
const TOKIO_LOCAL_MANIFEST: &str = r#"[package]
name = "consumer-tokio-local"
version = "0.0.0"
edition = "2024"
publish = false

[dependencies]
netstack-tokio = { path = "@NETSTACK@/crates/netstack-tokio" }
tokio = { version = "1.54", features = ["rt", "net", "io-util", "time"] }
futures = "0.3"
libc = "0.2"
"#;

/// `src/main.rs` of the `local` tokio consumer: the same echo on one thread.
const TOKIO_LOCAL_MAIN: &str = r#"//! netstack-tokio (`local` flavour: `Rc`, no locking) as a dependency: a kernel TcpStream's
//! bytes come back through a TUN device in a private network namespace.
mod tun;

use futures::{SinkExt, StreamExt};
use tokio::task::spawn_local;

fn main() -> std::io::Result<()> {
    let device = tun::create_in_private_namespace()?;
    let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build()?;
    tokio::task::LocalSet::new().block_on(&runtime, async {
        let device = tun::register(device)?;
        let config = netstack_tokio::Config::default().mtu(1500);
        let (port, listener) = netstack_tokio::local::StackBuilder::new(config).run();
        let (mut to_stack, mut from_stack) = port.split();
        let (reader, writer) = (device.clone(), device);
        spawn_local(async move {
            while let Ok(packet) = tun::read(&reader).await {
                if to_stack.send(packet).await.is_err() {
                    break;
                }
            }
        });
        spawn_local(async move {
            while let Some(packet) = from_stack.next().await {
                if tun::write(&writer, &packet).await.is_err() {
                    break;
                }
            }
        });
        spawn_local(async move {
            while let Ok((stream, _peer)) = listener.accept().await {
                spawn_local(tun::echo(stream.local_addr().ok(), stream.into_split()));
            }
        });
        tun::kernel_client_checks_echo().await
    })
}
"#;

/// `src/tun.rs` of both tokio consumers: the namespace, a raw TUN device, the echo and the
/// kernel client that checks it. Nothing here is netstack's API except what `echo` takes.
const TOKIO_TUN: &str = r#"//! A private network namespace with a TUN device, and a kernel client that checks the echo.

use std::fs::File;
use std::io::{Error, ErrorKind, Read, Result, Write};
use std::net::SocketAddr;
use std::os::fd::AsRawFd;
use std::os::unix::fs::OpenOptionsExt;
use std::process::Command;
use std::sync::Arc;
use std::time::Duration;

use tokio::io::unix::AsyncFd;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};

/// The device's name, and the addresses: the kernel's side, and where the client connects to
/// (routed into the device, so the stack answers for it).
const NAME: &str = "nsc0";
const KERNEL: &str = "198.18.0.1/24";
const ROUTED: &str = "198.19.0.0/16";
const TARGET: &str = "198.19.0.7:7";
const BYTES: usize = 1 << 20;

/// The TUN device, readable and writable from tasks.
pub type Device = Arc<AsyncFd<File>>;

/// Moves this thread (call it before any other thread exists) into a new network namespace,
/// creates the TUN device there and routes `ROUTED` into it. The namespace has no other
/// interface but loopback and disappears with the process.
pub fn create_in_private_namespace() -> Result<File> {
    // SAFETY: unshare(2) takes a flag word and touches no memory of ours.
    if unsafe { libc::unshare(libc::CLONE_NEWNET) } != 0 {
        return Err(Error::last_os_error());
    }
    let file = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .custom_flags(libc::O_NONBLOCK)
        .open("/dev/net/tun")?;
    // SAFETY: `ifreq` is plain old data; all zeroes is a valid value.
    let mut request: libc::ifreq = unsafe { std::mem::zeroed() };
    for (slot, byte) in request.ifr_name.iter_mut().zip(NAME.bytes()) {
        *slot = byte as libc::c_char;
    }
    request.ifr_ifru.ifru_flags = (libc::IFF_TUN | libc::IFF_NO_PI) as libc::c_short;
    // SAFETY: TUNSETIFF reads and writes one `ifreq`, which `request` is, for as long as the
    // call lasts.
    if unsafe { libc::ioctl(file.as_raw_fd(), libc::TUNSETIFF as _, &mut request) } != 0 {
        return Err(Error::last_os_error());
    }
    ip(&["addr", "add", KERNEL, "dev", NAME])?;
    ip(&["link", "set", NAME, "up"])?;
    ip(&["route", "add", ROUTED, "dev", NAME])?;
    Ok(file)
}

/// Registers the device with the tokio runtime this is called in.
pub fn register(file: File) -> Result<Device> {
    // SAFETY: the `File` owns its descriptor, keeps it open until the `AsyncFd` drops it, and
    // always returns the same one from `as_raw_fd`.
    Ok(Arc::new(unsafe { AsyncFd::register(file) }?))
}

/// Runs `ip ARGS` (it inherits this thread's namespace).
fn ip(args: &[&str]) -> Result<()> {
    let status = Command::new("ip").args(args).status()?;
    if status.success() {
        Ok(())
    } else {
        Err(Error::other(format!("ip {} failed: {status}", args.join(" "))))
    }
}

/// Reads one IP packet from the device.
pub async fn read(device: &Device) -> Result<Vec<u8>> {
    let mut buffer = vec![0u8; 65536];
    loop {
        let mut ready = device.readable().await?;
        if let Ok(result) = ready.try_io(|fd| fd.get_ref().read(&mut buffer)) {
            let length = result?;
            buffer.truncate(length);
            return Ok(buffer);
        }
    }
}

/// Writes one IP packet to the device.
pub async fn write(device: &Device, packet: &[u8]) -> Result<()> {
    loop {
        let mut ready = device.writable().await?;
        if let Ok(result) = ready.try_io(|fd| fd.get_ref().write(packet)) {
            return result.map(drop);
        }
    }
}

/// Echoes one connection of the stack: everything read is written back, then a FIN; nothing
/// if the stack reports another destination than the one the client dialled.
pub async fn echo<R, W>(destination: Option<SocketAddr>, (mut from, mut to): (R, W))
where
    R: AsyncRead + Unpin,
    W: AsyncWrite + Unpin,
{
    if destination != TARGET.parse().ok() {
        // No echo: the client reports the failure.
        eprintln!("the stack saw destination {destination:?}, the client dialled {TARGET}");
        return;
    }
    if tokio::io::copy(&mut from, &mut to).await.is_ok() {
        let _ = to.shutdown().await;
    }
}

/// Connects a kernel TcpStream to `TARGET`, sends `BYTES` bytes, half-closes, and checks that
/// exactly those bytes come back before the FIN (within 60 s).
pub async fn kernel_client_checks_echo() -> Result<()> {
    let sent: Vec<u8> = (0..BYTES).map(|i| (i % 251) as u8).collect();
    let exchange = async {
        let stream = tokio::net::TcpStream::connect(TARGET).await?;
        let (mut from, mut to) = stream.into_split();
        let writer = async {
            to.write_all(&sent).await?;
            to.shutdown().await
        };
        let mut received = Vec::with_capacity(BYTES);
        let (written, read) = futures::join!(writer, from.read_to_end(&mut received));
        written?;
        read?;
        Ok::<_, Error>(received)
    };
    let received = tokio::time::timeout(Duration::from_secs(60), exchange)
        .await
        .map_err(|_| Error::new(ErrorKind::TimedOut, "no echo within 60 s"))??;
    if received != sent {
        let first = sent.iter().zip(&received).position(|(a, b)| a != b);
        return Err(Error::other(format!(
            "echo differs: sent {} bytes, got {} (first difference at {first:?})",
            sent.len(),
            received.len()
        )));
    }
    println!("{}: {BYTES} bytes echoed through {TARGET}", env!("CARGO_PKG_NAME"));
    Ok(())
}
"#;

/// `Cargo.toml` of the smol consumer.
const SMOL_MANIFEST: &str = r#"[package]
name = "consumer-smol"
version = "0.0.0"
edition = "2024"
publish = false

[dependencies]
netstack-smol = { path = "@NETSTACK@/crates/netstack-smol" }
async-executor = "1"
async-io = "2"
futures = "0.3"
"#;

/// `src/main.rs` of the smol consumer (built, not run: it has no device).
const SMOL_MAIN: &str = r#"//! netstack-smol as a dependency: the `Send` flavour on an `async_executor::Executor`.

use futures::{AsyncWriteExt, StreamExt};

fn main() -> std::io::Result<()> {
    let ex = async_executor::Executor::new();
    async_io::block_on(ex.run(async {
        let config = netstack_smol::Config::default().mtu(1500);
        let (port, runner, listener) = netstack_smol::StackBuilder::new(config).build();
        ex.spawn(runner).detach();
        // A real program wires its device here, as consumer-tokio does: packets it reads go
        // into `_to_stack` (a `Sink`), packets from `from_stack` (a `Stream`) go out.
        let (_to_stack, mut from_stack) = port.split();
        ex.spawn(async move { while from_stack.next().await.is_some() {} }).detach();
        loop {
            let (mut stream, _peer) = listener.accept().await?;
            ex.spawn(async move {
                let _ = stream.write_all(b"hello\n").await;
                let _ = stream.close().await;
            })
            .detach();
        }
    }))
}
"#;

/// `Cargo.toml` of the `no_std` consumer.
const NO_STD_MANIFEST: &str = r#"[package]
name = "consumer-no-std"
version = "0.0.0"
edition = "2024"
publish = false

[dependencies]
netstack-core = { path = "@NETSTACK@/crates/netstack-core" }
embassy-sync = "0.8"
"#;

/// `src/lib.rs` of the `no_std` consumer: a firmware's network task over the core.
const NO_STD_LIB: &str = r#"//! netstack-core in `#![no_std]` firmware: its own clock, one lock-free stack, one service step.
#![no_std]

extern crate alloc;

use alloc::vec::Vec;
use core::sync::atomic::{AtomicU32, Ordering};
use core::task::{Context, Poll, Waker};

use embassy_sync::blocking_mutex::raw::NoopRawMutex;
use netstack_core::{Clock, Config, Instant, Stack};

/// Milliseconds since boot, advanced by the board's timer interrupt.
#[derive(Default)]
pub struct TickClock(AtomicU32);

impl TickClock {
    /// Called from the timer interrupt every millisecond.
    pub fn tick(&self) {
        self.0.fetch_add(1, Ordering::Relaxed);
    }
}

impl Clock for TickClock {
    fn now(&self) -> Instant {
        Instant::from_millis(i64::from(self.0.load(Ordering::Relaxed)))
    }
}

/// The board's stack: no locking (one core, one task), the board's clock.
pub type BoardStack = Stack<NoopRawMutex, TickClock>;

/// A stack for a link with a 1500-byte MTU.
pub fn new_stack() -> BoardStack {
    Stack::new(Config::default().mtu(1500), TickClock::default())
}

/// Feeds one received IP packet (if any), runs the stack, and collects the packets to send.
/// Returns when to call it again at the latest.
pub fn service(stack: &BoardStack, received: Option<Vec<u8>>, send: &mut Vec<Vec<u8>>) -> Option<Instant> {
    if let Some(packet) = received {
        let _ = stack.push_ingress(packet); // a full queue drops (and counts) the packet
    }
    let mut cx = Context::from_waker(Waker::noop());
    let status = stack.poll_runner(&mut cx);
    while let Poll::Ready(packet) = stack.poll_egress(&mut cx) {
        send.push(packet);
    }
    status.deadline
}
"#;

/// The bare-metal target of the `no_std` consumer.
const NO_STD_TARGET: &str = "thumbv7em-none-eabihf";

/// One generated crate: its directory name and its files (path, template).
struct Consumer {
    /// Directory (and package) name.
    name: &'static str,
    /// Files: path inside the crate, template text.
    files: &'static [(&'static str, &'static str)],
    /// `cargo build` arguments beyond `build`.
    build: &'static [&'static str],
    /// Whether the built program runs the kernel echo (needs root).
    runs_echo: bool,
}

/// The consumers, in build order.
const CONSUMERS: &[Consumer] = &[
    Consumer {
        name: "consumer-tokio",
        files: &[
            ("Cargo.toml", TOKIO_MANIFEST),
            ("src/main.rs", TOKIO_MAIN),
            ("src/tun.rs", TOKIO_TUN),
        ],
        build: &[],
        runs_echo: true,
    },
    Consumer {
        name: "consumer-tokio-local",
        files: &[
            ("Cargo.toml", TOKIO_LOCAL_MANIFEST),
            ("src/main.rs", TOKIO_LOCAL_MAIN),
            ("src/tun.rs", TOKIO_TUN),
        ],
        build: &[],
        runs_echo: true,
    },
    Consumer {
        name: "consumer-smol",
        files: &[("Cargo.toml", SMOL_MANIFEST), ("src/main.rs", SMOL_MAIN)],
        build: &[],
        runs_echo: false,
    },
    Consumer {
        name: "consumer-no-std",
        files: &[("Cargo.toml", NO_STD_MANIFEST), ("src/lib.rs", NO_STD_LIB)],
        build: &["--target", NO_STD_TARGET],
        runs_echo: false,
    },
];

/// Generates, builds and runs the consumers; the generated sources are removed on success and
/// kept (their path printed) on failure.
pub fn run() -> Result<(), String> {
    let root = super::workspace_root();
    let scratch = std::env::temp_dir().join(format!("netstack-consumers-{}", std::process::id()));
    if scratch.starts_with(&root) {
        return Err(format!(
            "the temporary directory {} is inside the workspace; set TMPDIR elsewhere",
            scratch.display()
        ));
    }
    let target = super::target_dir().join("consumers");
    let result = build_and_run(&root, &scratch, &target);
    match &result {
        Ok(()) => std::fs::remove_dir_all(&scratch)
            .map_err(|e| format!("cannot remove {}: {e}", scratch.display()))?,
        Err(_) => eprintln!(
            "xtask: the generated crates are kept in {}",
            scratch.display()
        ),
    }
    result
}

/// Writes every consumer into `scratch`, builds it with target directory `target`, and runs
/// the echo of those that have one.
fn build_and_run(root: &Path, scratch: &Path, target: &Path) -> Result<(), String> {
    if CONSUMERS.iter().any(|c| c.runs_echo) && !super::is_root() {
        return Err(
            "the consumers' kernel echo needs root (a network namespace and a TUN \
                    device); run `cargo xtask consumers` as root"
                .to_string(),
        );
    }
    let netstack = root
        .to_str()
        .ok_or("the workspace path is not UTF-8")?
        .to_string();
    for consumer in CONSUMERS {
        let dir = scratch.join(consumer.name);
        for (path, template) in consumer.files {
            write(&dir.join(path), &template.replace("@NETSTACK@", &netstack))?;
        }
        cargo(&dir, target, &[&["build"], consumer.build].concat())?;
    }
    for consumer in CONSUMERS.iter().filter(|c| c.runs_echo) {
        let binary = target.join("debug").join(consumer.name);
        println!(
            "==> {} (kernel echo in its own network namespace)",
            binary.display()
        );
        let status = Command::new(&binary)
            .status()
            .map_err(|e| format!("cannot run {}: {e}", binary.display()))?;
        if !status.success() {
            return Err(format!(
                "{} failed its kernel echo ({status})",
                consumer.name
            ));
        }
    }
    println!(
        "==> {} consumer crates outside the workspace built, {} passed the kernel echo",
        CONSUMERS.len(),
        CONSUMERS.iter().filter(|c| c.runs_echo).count()
    );
    Ok(())
}

/// Runs `cargo ARGS` in the consumer crate `dir` with target directory `target`.
fn cargo(dir: &Path, target: &Path, args: &[&str]) -> Result<(), String> {
    println!("==> cargo {} (in {})", args.join(" "), dir.display());
    let status = Command::new(super::cargo())
        .args(args)
        .current_dir(dir)
        .env("CARGO_TARGET_DIR", target)
        .status()
        .map_err(|e| format!("cannot run cargo: {e}"))?;
    if status.success() {
        Ok(())
    } else {
        Err(format!(
            "cargo {} failed in {} ({status})",
            args.join(" "),
            dir.display()
        ))
    }
}

/// Writes a file, creating its directory.
fn write(path: &PathBuf, text: &str) -> Result<(), String> {
    if let Some(parent) = path.parent() {
        std::fs::create_dir_all(parent)
            .map_err(|e| format!("cannot create {}: {e}", parent.display()))?;
    }
    std::fs::write(path, text).map_err(|e| format!("cannot write {}: {e}", path.display()))
}
