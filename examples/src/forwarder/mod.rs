//! The forwarder behind `tun_forward` (tokio) and `tun_forward_smol` (a single-thread async-io
//! executor), written once: a TUN device wired to the stack, and every TCP connection, UDP flow
//! and (with `--icmp forward`) ping relayed to its destination through kernel sockets.
//!
//! ```text
//!  TUN ──pump::device_to_stack──▶ stack ──pump::stack_to_device──▶ TUN      (batched both ways)
//!  stack listener ─ request ─▶ connect::dial_first ─ dial ─▶ accept + relay, or refuse
//!                 ─ stream ──▶ connect::accept_first ─ dial ─▶ relay, or reset
//!  stack UDP socket ─▶ udp_table::FlowTable ─▶ the flow's connected socket (directly, or
//!                      └ through udp::Flow's queue when it has no room; udp::Flow reads replies)
//!  stack ICMP socket ─▶ icmp::Ping (--icmp forward)
//! ```
//!
//! What differs between the executors is the small [`Executor`] trait (spawn, the stack's
//! flavour, kernel sockets, a timer, the TUN wrapper), implemented by [`tokio_exec::Tokio`] and
//! [`async_io_exec::AsyncIoLocal`]; [`forward`] runs the whole forwarder on either.

pub mod async_io_exec;
pub mod connect;
pub mod dial;
pub mod executor;
pub mod icmp;
pub mod limiter;
pub mod pump;
pub mod relay;
pub mod task;
pub mod time;
pub mod tokio_exec;
pub mod udp;
pub mod udp_batch;
pub mod udp_recv;
pub mod udp_table;

use std::future::{poll_fn, Future};
use std::io;
use std::pin::{pin, Pin};
use std::process::ExitCode;
use std::sync::Arc;
use std::task::Poll;

use futures::channel::oneshot;
use netstack_core::{Incoming, TcpListener, TcpStream};

use crate::forward::{Args, IcmpMode};
use connect::{DialStats, Dialer};
pub use executor::Executor;
use limiter::DialLimiter;
use task::Task;
use udp::UdpRelayStats;

/// The forwarder's listener: core streams, `io::Error`s.
pub type Listener<P> = TcpListener<P, TcpStream<P>, io::Error>;

/// What woke the forwarder's main loop.
enum Event<P: netstack_core::StackPtr> {
    Incoming(Incoming<P, TcpStream<P>, io::Error>),
    ReadFailed(String),
    Shutdown(io::Result<()>),
}

/// Runs the forwarder `args` describes on `exec` until `shutdown` completes (then it prints
/// its counters on stderr and returns success) or reading the device fails (then it says so,
/// naming itself `program`, and returns failure). Prints `ready` on stdout once the device
/// exists and the stack runs.
///
/// # Errors
/// If the device cannot be opened, or `shutdown` fails.
pub async fn forward<E: Executor>(
    exec: E,
    args: Args,
    program: &str,
    shutdown: impl Future<Output = io::Result<()>>,
) -> io::Result<ExitCode> {
    let tun = Arc::new(exec.open_tun(args.open_device(!args.no_offload)?)?);
    // With offloads the kernel's transport checksums are partial by design, and every packet
    // on the device was built by the local kernel: neither complete nor verify them (the stack
    // gets `verify_checksums(false)`).
    tun.set_complete_checksums(!tun.offload());
    let mut config = args.stack_config(tun.offload());
    if args.runners.is_none() {
        config = config.tcp_runners(default_runners(exec.parallelism()));
    }
    let port = exec.start_stack(config);
    let listener = Listener::new(port.core().clone());
    let targets = args.targets();
    let udp_stats = Arc::new(UdpRelayStats::default());
    let device_side = exec.device_side();
    device_side.spawn(Task::Udp {
        exec: device_side.clone(),
        socket: port.udp_socket()?,
        targets: targets.clone(),
        limits: args.udp_limits(),
        stats: udp_stats.clone(),
    });
    if args.icmp == IcmpMode::Forward {
        exec.spawn(Task::Icmp {
            exec: exec.clone(),
            socket: port.icmp_socket()?,
            targets: targets.clone(),
        });
    }
    let (sink, stream) = port.split();
    let (failed, mut read_failed) = oneshot::channel();
    device_side.spawn(Task::DeviceToStack {
        tun: tun.clone(),
        sink,
        failed,
    });
    exec.spawn(Task::StackToDevice {
        tun: tun.clone(),
        stream,
    });
    let dialer = Arc::new(Dialer {
        targets,
        timeout: args.dial_timeout(),
        limiter: DialLimiter::new(args.max_pending_dials, args.max_dials_per_destination),
        stats: DialStats::default(),
    });
    println!("ready");

    let mut shutdown = pin!(shutdown);
    let exit = loop {
        let event = poll_fn(|cx| {
            if let Poll::Ready(r) = shutdown.as_mut().poll(cx) {
                return Poll::Ready(Event::Shutdown(r));
            }
            if let Poll::Ready(r) = Pin::new(&mut read_failed).poll(cx) {
                let why = r.map_or_else(|_| "the reader stopped".into(), |e| e.to_string());
                return Poll::Ready(Event::ReadFailed(why));
            }
            listener.poll_incoming(cx).map(|incoming| match incoming {
                Ok(incoming) => Event::Incoming(incoming),
                Err(e) => Event::Shutdown(Err(e)),
            })
        })
        .await;
        match event {
            Event::Incoming(Incoming::Request(request)) => {
                exec.spawn(Task::DialFirst(request, dialer.clone()));
            }
            Event::Incoming(Incoming::Stream(stream, _peer)) => {
                exec.spawn(Task::AcceptFirst(stream, dialer.clone()));
            }
            Event::ReadFailed(why) => {
                eprintln!("{program}: reading TUN device {} failed: {why}", tun.name());
                break ExitCode::FAILURE;
            }
            Event::Shutdown(result) => {
                result?;
                break ExitCode::SUCCESS;
            }
        }
    };
    eprintln!("{}", listener.stats());
    eprintln!("{udp_stats}");
    eprintln!("{}", dialer.stats);
    let (trains, train_datagrams) = tun.udp_trains();
    let (reads, read_packets) = tun.reads_without_wait();
    eprintln!(
        "tun {}: offloads {}, {} packets dropped for an inconsistent offload header, \
         reads after a burst without waiting {reads} ({read_packets} packets), \
         udp trains {trains} ({train_datagrams} datagrams)",
        tun.name(),
        if tun.offload() { "on" } else { "off" },
        tun.offload_drops()
    );
    Ok(exit)
}

/// Runner groups when `--runners` is not given: one per worker thread of the executor, so that
/// the workers can run the groups' passes at the same time. (That a connection's set-up in one
/// group then no longer waits behind another connection's teardown in the other is the likely
/// reason for the gain below; it was not measured on its own.)
///
/// Until run P this was half the workers (one group on the 2-core bench machine): in run A
/// (2026-12-02, at half of today's throughput) two groups lost to one in MTU 1500 download and
/// MTU 65000 with 8 streams. In run P (BENCHMARKS.md: `tun_forward` against the same binary
/// with `--runners 1`, in one run) two groups were within the spread of one in every TCP and
/// UDP cell, and one client's connection rate rose 4.5 % (six alternating pairs of
/// `bench/scripts/rate_one_cell.sh target/release/tun_forward 1 /tmp/rate [--runners 1]`:
/// 22,460 against 21,499 connections in 5 s). The price: buffer growth is allowed per group
/// (`Config::tcp_buffer_growth`), so 8 bulk streams at MTU 65000 peaked at 29.6 MiB of RSS
/// against 23.0.
fn default_runners(workers: usize) -> usize {
    workers.max(1)
}

#[cfg(test)]
mod tests {
    use super::default_runners;

    #[test]
    fn runner_groups_default_to_one_per_worker_and_at_least_one() {
        assert_eq!(default_runners(0), 1);
        assert_eq!(default_runners(1), 1);
        assert_eq!(default_runners(2), 2);
        assert_eq!(default_runners(8), 8);
    }
}
