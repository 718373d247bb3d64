//! [`Task`]: everything the forwarder runs concurrently, as one closed set. An [`Executor`]
//! spawns `task.run()`; since the set is closed, the executor's `spawn` is the one place where
//! the compiler checks, for concrete types, that every task fits the executor (`Send` on
//! tokio's multi-thread runtime).

use std::collections::VecDeque;
use std::future::Future;
use std::io;
use std::pin::Pin;
use std::sync::atomic::AtomicUsize;
use std::sync::Arc;

use futures::channel::oneshot;
use futures::future::Either::{Left, Right};
use netstack_core::{
    IcmpSocket, PacketSink, PacketStream, TcpStream, UdpDatagram, UdpSendHalf, UdpSocket,
};

use super::connect::{accept_first, dial_first, Dialer, Request};
use super::executor::Executor;
use super::icmp::{admit, Ping};
use super::pump::{device_to_stack, stack_to_device};
use super::udp::{FlowTable, TableFlow, UdpLimits, UdpRelayStats};
use super::udp_batch::MAX_BATCH;
use crate::forward::Targets;

/// A UDP flow of netstack's UDP socket, on kernel sockets `K`.
pub type StackFlow<P, K> = TableFlow<UdpDatagram, UdpSendHalf<P>, K>;

/// One of the forwarder's tasks.
pub enum Task<E: Executor> {
    /// Device → stack; sends the read error that ends it on `failed`.
    DeviceToStack {
        /// The device.
        tun: Arc<E::Tun>,
        /// The stack's packet sink.
        sink: PacketSink<E::Ptr, io::Error>,
        /// Where the read error goes.
        failed: oneshot::Sender<io::Error>,
    },
    /// Stack → device.
    StackToDevice {
        /// The device.
        tun: Arc<E::Tun>,
        /// The stack's egress.
        stream: PacketStream<E::Ptr>,
    },
    /// The UDP flow table: every datagram of the stack onto its flow.
    Udp {
        /// Spawns the flows.
        exec: E,
        /// The stack's UDP socket.
        socket: UdpSocket<E::Ptr>,
        /// Where each flow goes.
        targets: Targets,
        /// Flow limits.
        limits: UdpLimits,
        /// Counters.
        stats: Arc<UdpRelayStats>,
    },
    /// One UDP flow.
    UdpFlow(StackFlow<E::Ptr, E::Datagram>),
    /// Echo requests to their real destinations (`--icmp forward`).
    Icmp {
        /// Spawns the pings.
        exec: E,
        /// The stack's ICMP socket.
        socket: IcmpSocket<E::Ptr>,
        /// Where each ping goes.
        targets: Targets,
    },
    /// One forwarded ping.
    Ping(Ping<E::Ptr>),
    /// A connection request: dial, then accept or refuse.
    DialFirst(Request<E::Ptr>, Arc<Dialer>),
    /// An established connection: dial, then relay or reset.
    AcceptFirst(TcpStream<E::Ptr>, Arc<Dialer>),
}

impl<E: Executor> Task<E> {
    /// The task's future: as large as a connection's (the common task, one per connection for
    /// its whole life), no larger. Hence a chain of `Either`s rather than an `async fn` with a
    /// `match` (which would keep the task's arguments beside the arm that runs: rustc does not
    /// overlap them), and the other tasks boxed (there are a few of them, or one per UDP flow
    /// or ping).
    pub fn run(self) -> impl Future<Output = ()> {
        match self {
            Task::DialFirst(request, dialer) => Left(dial_first::<E>(request, dialer)),
            Task::AcceptFirst(stream, dialer) => Right(Left(accept_first::<E>(stream, dialer))),
            other => Right(Right(other.run_boxed())),
        }
    }

    /// The future of a task that is not a connection's, boxed.
    fn run_boxed(self) -> Pin<Box<impl Future<Output = ()>>> {
        Box::pin(async move {
            match self {
                Task::DialFirst(request, dialer) => dial_first::<E>(request, dialer).await,
                Task::AcceptFirst(stream, dialer) => accept_first::<E>(stream, dialer).await,
                Task::UdpFlow(flow) => {
                    // A flow that cannot get a socket is counted as a drop by the flow itself.
                    let _ = flow.run::<E>().await;
                }
                Task::Ping(ping) => ping.run::<E>().await,
                Task::DeviceToStack { tun, sink, failed } => {
                    let _ = failed.send(device_to_stack(tun, sink).await);
                }
                Task::StackToDevice { tun, stream } => stack_to_device(tun, stream).await,
                Task::Udp {
                    exec,
                    socket,
                    targets,
                    limits,
                    stats,
                } => relay_udp(exec, socket, targets, limits, stats).await,
                Task::Icmp {
                    exec,
                    socket,
                    targets,
                } => forward_icmp(exec, socket, targets).await,
            }
        })
    }
}

/// Relays every datagram of `socket` on its flow, to `targets.target(original destination)`;
/// runs for as long as the stack lives.
async fn relay_udp<E: Executor>(
    exec: E,
    socket: UdpSocket<E::Ptr>,
    targets: Targets,
    limits: UdpLimits,
    stats: Arc<UdpRelayStats>,
) {
    let (datagrams, replies) = socket.split();
    let mut table = FlowTable::new(replies, limits, stats);
    // Every waiting datagram under one lock acquisition of the stack.
    let mut batch = VecDeque::with_capacity(MAX_BATCH);
    loop {
        std::future::poll_fn(|cx| datagrams.poll_recv_batch(cx, &mut batch, MAX_BATCH)).await;
        for d in batch.drain(..) {
            let (src, dst) = (d.src().into(), d.dst().into());
            // Waiting here (not dropping) holds the stack's UDP queue, and so the device:
            // what the flows cannot send is then dropped by the kernel, unread.
            table.wait_for_room::<E>(src, dst).await;
            if let Some(flow) = table.dispatch::<E>(src, dst, d, targets.target(dst)) {
                exec.spawn(Task::UdpFlow(flow));
            }
        }
        // Every run gathered from the batch goes out before the next wait.
        table.flush();
    }
}

/// Forwards every echo request of `icmp` to `targets.ping_target(original destination)`,
/// answering the ones the target answers; runs for as long as the stack lives.
async fn forward_icmp<E: Executor>(exec: E, icmp: IcmpSocket<E::Ptr>, targets: Targets) {
    let icmp = Arc::new(icmp);
    let in_flight = Arc::new(AtomicUsize::new(0));
    loop {
        let request = icmp.recv().await;
        let Some(seq) = admit(&request, &in_flight) else {
            continue;
        };
        let to = targets.ping_target(request.dst().into());
        let ping = Ping::new(icmp.clone(), request, to, seq, in_flight.clone());
        exec.spawn(Task::Ping(ping));
    }
}
