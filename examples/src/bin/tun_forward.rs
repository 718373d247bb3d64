//! `tun_forward`: a TUN-to-TCP forwarder over netstack, on tokio.
//!
//! ```text
//! tun_forward --tun NAME [--mtu N] [--redirect IP]... [--accept-first] [--dial-timeout S]
//! tun_forward --tun-fd FD [--mtu N] [--redirect IP]...
//! tun_forward --tun NAME --device-thread
//! ```
//!
//! Creates (or opens) TUN device NAME in the current network namespace, or drives the inherited
//! TUN descriptor FD (Android's VpnService, an iOS utun socket; never closed), wires it to the
//! stack, and relays every TCP connection and UDP flow to its original destination, or, with
//! `--redirect`, to `IP:<original port>`. By default it dials each connection's destination
//! before answering the client's SYN, and answers as the destination did (connected, refused,
//! unreachable); `--accept-first` completes the handshake first. Prints `ready` on stdout once
//! the device exists and the stack runs (configure addresses and routes after that), and on
//! SIGINT/SIGTERM (Ctrl+C on Windows) prints its counters on stderr and exits. If reading the
//! device fails (its interface was deleted, say), it says so on stderr and exits with status 1.
//! `--help` lists every option.
//!
//! The forwarding code is `netstack_examples::forwarder`, shared with `tun_forward_smol`; this
//! binary runs it on tokio's multi-thread runtime. With `--device-thread`, the device's reader
//! and the UDP relay run on a thread of their own: faster UDP upload, slower UDP download and
//! TCP (see `Tokio::with_device_thread`).
//!
//! Without `--redirect`, a real deployment must keep the forwarder's own outbound sockets off
//! the TUN route (`SO_MARK` + policy routing, or `SO_BINDTODEVICE`), or they loop back into it.

use std::process::ExitCode;

use clap::Parser;
use netstack_examples::forward::Args;
use netstack_examples::forwarder::{forward, tokio_exec::Tokio};

/// Connection buffers get pages of their own on Linux: untouched ones cost nothing, freed ones
/// return to the system; glibc keeps one heap of small blocks (see `netstack_examples::allocator`).
#[global_allocator]
static ALLOC: netstack_examples::allocator::ForwarderAllocator =
    netstack_examples::allocator::FORWARDER_ALLOCATOR;

/// The forwarder's command line, and where the device is read.
#[derive(Parser)]
#[command(
    version,
    about = "Relay every TCP connection and UDP flow arriving on a TUN device"
)]
struct TokioArgs {
    #[command(flatten)]
    forward: Args,
    /// Read the device and relay UDP on a thread of their own (a single-thread runtime) instead
    /// of on tokio's workers: 3-11 % more UDP upload on a 2-core machine, at a cost of about
    /// 30 % in UDP download, 2-14 % in TCP and 43 µs of UDP round trip (BENCHMARKS.md, run P).
    /// For upload-heavy UDP tunnels.
    #[arg(long)]
    device_thread: bool,
}

#[tokio::main]
async fn main() -> std::io::Result<ExitCode> {
    let TokioArgs {
        forward: args,
        device_thread,
    } = TokioArgs::parse();
    let exec = if device_thread {
        Tokio::with_device_thread()?
    } else {
        Tokio::default()
    };
    // Registered before `ready`, so that a signal right after it is not lost.
    let shutdown = shutdown_signal()?;
    // On a worker thread, not on this one (`block_on`'s): the forwarder's accept loop spawns a
    // task for every connection request, and a spawn from outside the workers goes through the
    // runtime's shared queue and wakes a parked worker, where a spawn from a worker lands in
    // its own queue. With 32 clients of `connload rate` this thread woke about once per five
    // connections (BENCHMARKS.md, run I).
    tokio::spawn(forward(exec, args, "tun_forward", shutdown))
        .await
        .map_err(std::io::Error::other)?
}

/// Registers for SIGINT and SIGTERM (Ctrl+C on Windows) and returns the wait for either.
fn shutdown_signal() -> std::io::Result<impl std::future::Future<Output = std::io::Result<()>>> {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{signal, SignalKind};
        let mut sigint = signal(SignalKind::interrupt())?;
        let mut sigterm = signal(SignalKind::terminate())?;
        Ok(async move {
            tokio::select! {
                _ = sigint.recv() => {}
                _ = sigterm.recv() => {}
            }
            Ok(())
        })
    }
    #[cfg(windows)]
    Ok(tokio::signal::ctrl_c())
}
