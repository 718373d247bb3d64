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

/// Runner groups when `--runners` is not given: half the executor's worker threads, at least
/// one. The other half serve the relays and their kernel sockets, whose system calls are most
/// of the forwarder's CPU. Measured on the 2-core bench machine, two runs of
/// `NETSTACK_BENCH_BASELINE=<script: tun_forward --runners 1> cargo xtask bench --only
/// netstack,netstack-baseline --no-udp --no-conn-tests --no-scaling --runs 3 --seconds 5`
/// (BENCHMARKS.md, "Before and after"): two groups on two workers lost to one group in MTU
/// 1500 download (8.8-9.5 against 9.6-11.3 Gbit/s) and MTU 65000 with 8 streams (13.3-15.8
/// against 15.8-16.7), and won only MTU 65000 upload (15.1-15.5 against 13.1-13.3).
fn default_runners(workers: usize) -> usize {
    (workers / 2).max(1)
}

#[cfg(test)]
mod tests {
    use super::default_runners;

    #[test]
    fn runner_groups_default_to_half_the_workers_and_at_least_one() {
        assert_eq!(default_runners(0), 1);
        assert_eq!(default_runners(1), 1);
        assert_eq!(default_runners(2), 1);
        assert_eq!(default_runners(3), 1);
        assert_eq!(default_runners(8), 4);
    }
}
