//! `tun_forward_smol`: the forwarder of `tun_forward`, on one thread.
//!
//! ```text
//! tun_forward_smol --tun NAME [--mtu N] [--redirect IP]... [--accept-first] [--dial-timeout S]
//! tun_forward_smol --tun-fd FD [--mtu N] [--redirect IP]...
//! ```
//!
//! The same forwarder as `tun_forward` (`netstack_examples::forwarder`: the same command line,
//! TCP relay, dial-first handshakes, UDP flows, `--icmp forward`, TUN offloads and batched
//! device I/O), but everything — the stack's runner, the packet pumps, every relay — runs on a
//! single-thread `async_executor::LocalExecutor` over async-io, with the `!Send` stack from
//! `netstack_smol::local`: an `Rc` and no locking. Prints `ready` on stdout once the device
//! exists and the stack runs, and on SIGINT/SIGTERM prints its counters on stderr and exits. If
//! reading the device fails, it says so on stderr and exits with status 1. `--tun-fd` drives
//! an inherited descriptor, never closed, as in `tun_forward`.

use std::process::ExitCode;
use std::rc::Rc;

use async_executor::LocalExecutor;
use async_signal::{Signal, Signals};
use clap::Parser;
use futures::StreamExt;
use netstack_examples::forward::Args;
use netstack_examples::forwarder::{async_io_exec::AsyncIoLocal, forward};

/// Connection buffers get pages of their own on Linux: untouched ones cost nothing, freed ones
/// return to the system (see `netstack_examples::allocator`).
#[global_allocator]
static ALLOC: netstack_examples::allocator::ForwarderAllocator =
    netstack_examples::allocator::FORWARDER_ALLOCATOR;

fn main() -> std::io::Result<ExitCode> {
    let args = Args::parse();
    netstack_examples::allocator::keep_small_frees();
    // Registered before anything else, so that a signal right after `ready` is not lost.
    let mut signals = Signals::new(SHUTDOWN_SIGNALS)?;
    let shutdown = async move {
        signals.next().await.transpose()?;
        Ok(())
    };
    let ex = Rc::new(LocalExecutor::new());
    let forwarder = forward(
        AsyncIoLocal::new(ex.clone()),
        args,
        "tun_forward_smol",
        shutdown,
    );
    // The forwarder's accept loop runs as a task of the executor, scheduled in turn with the
    // runner and the relays. As the executor's main future it would be polled only between
    // batches of 200 task runs, while the runner fills the accept queue (connections that
    // complete their handshake when it is full are reset).
    let forwarder = ex.spawn(forwarder);
    async_io::block_on(ex.run(forwarder))
}

/// The signals that stop the forwarder (Windows: Ctrl+C only).
#[cfg(unix)]
const SHUTDOWN_SIGNALS: [Signal; 2] = [Signal::Int, Signal::Term];
/// The signals that stop the forwarder (Windows: Ctrl+C only).
#[cfg(windows)]
const SHUTDOWN_SIGNALS: [Signal; 1] = [Signal::Int];
