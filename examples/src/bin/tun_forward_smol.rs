//! `tun_forward_smol`: the forwarder of `tun_forward`, on async-io executors (one thread by
//! default).
//!
//! ```text
//! tun_forward_smol --tun NAME [--mtu N] [--redirect IP]... [--accept-first] [--dial-timeout S]
//! tun_forward_smol --tun-fd FD [--mtu N] [--redirect IP]...
//! tun_forward_smol --tun NAME --threads N
//! ```
//!
//! The same forwarder as `tun_forward` (`netstack_examples::forwarder`: the same command line,
//! TCP relay, dial-first handshakes, UDP flows, `--icmp forward`, TUN offloads and batched
//! device I/O), but everything — the stack's runner, the packet pumps, every relay — runs on a
//! single-thread `async_executor::LocalExecutor` over async-io, with the `!Send` stack from
//! `netstack_smol::local`: an `Rc` and no locking. Prints `ready` on stdout once the device
//! exists and the stack runs, and on SIGINT/SIGTERM prints its counters on stderr and exits.
//! With `--threads N` (N > 1) it runs on N threads instead: an `async_executor::Executor` that
//! each of them drives, with netstack-smol's `Send` stack (one runner per runner group). If
//! reading the device fails, it says so on stderr and exits with status 1. `--tun-fd` drives
//! an inherited descriptor, never closed, as in `tun_forward`.

use std::process::ExitCode;
use std::rc::Rc;
use std::sync::Arc;

use async_executor::{Executor, LocalExecutor};
use async_signal::{Signal, Signals};
use clap::Parser;
use futures::StreamExt;
use netstack_examples::forward::Args;
use netstack_examples::forwarder::async_io_exec::{AsyncIoLocal, AsyncIoThreads};
use netstack_examples::forwarder::forward;

/// Connection buffers get pages of their own on Linux: untouched ones cost nothing, freed ones
/// return to the system; glibc keeps one heap of small blocks (see `netstack_examples::allocator`).
#[global_allocator]
static ALLOC: netstack_examples::allocator::ForwarderAllocator =
    netstack_examples::allocator::FORWARDER_ALLOCATOR;

/// `tun_forward`'s command line, and the number of threads.
#[derive(Parser)]
#[command(version, about = "tun_forward's forwarder on async-io executors")]
struct SmolArgs {
    #[command(flatten)]
    forward: Args,
    /// Executor threads: 1 runs everything on one `LocalExecutor` with the `!Send` stack (no
    /// locking); more run a shared executor on that many threads with the `Send` stack.
    #[arg(long, value_name = "N", default_value_t = 1, value_parser = clap::value_parser!(u16).range(1..=256))]
    threads: u16,
}

fn main() -> std::io::Result<ExitCode> {
    let SmolArgs {
        forward: args,
        threads,
    } = SmolArgs::parse();
    // Registered before anything else, so that a signal right after `ready` is not lost.
    let mut signals = Signals::new(SHUTDOWN_SIGNALS)?;
    let shutdown = async move {
        signals.next().await.transpose()?;
        Ok(())
    };
    if threads > 1 {
        return on_threads(usize::from(threads), args, shutdown);
    }
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

/// Runs the forwarder on `threads` threads that share one executor: this thread and
/// `threads - 1` helpers, which run the executor until the process exits (when the forwarder
/// has finished on this thread).
fn on_threads(
    threads: usize,
    args: Args,
    shutdown: impl std::future::Future<Output = std::io::Result<()>> + Send + 'static,
) -> std::io::Result<ExitCode> {
    let ex = Arc::new(Executor::new());
    let forwarder = ex.spawn(forward(
        AsyncIoThreads::new(ex.clone(), threads),
        args,
        "tun_forward_smol",
        shutdown,
    ));
    for i in 1..threads {
        let ex = ex.clone();
        std::thread::Builder::new()
            .name(format!("tun_forward_smol-{i}"))
            .spawn(move || async_io::block_on(ex.run(std::future::pending::<()>())))?;
    }
    async_io::block_on(ex.run(forwarder))
}

/// The signals that stop the forwarder (Windows: Ctrl+C only).
#[cfg(unix)]
const SHUTDOWN_SIGNALS: [Signal; 2] = [Signal::Int, Signal::Term];
/// The signals that stop the forwarder (Windows: Ctrl+C only).
#[cfg(windows)]
const SHUTDOWN_SIGNALS: [Signal; 1] = [Signal::Int];
