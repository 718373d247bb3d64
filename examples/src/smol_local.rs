//! Glue of the single-thread smol forwarder: packet pumps between an [`AsyncIoTun`] and a
//! [`netstack_smol::local::PacketPort`], and a relay of one stream over an async-io kernel socket.
//!
//! Everything here is `!Send`: it runs on one thread, with no locks, in a
//! `async_executor::LocalExecutor`.

use std::io;
use std::net::{Shutdown, SocketAddr, TcpStream as StdTcpStream};
use std::rc::Rc;

use async_executor::{LocalExecutor, Task};
use async_io::Async;
use futures::io::BufReader;
use futures::{AsyncWriteExt, SinkExt, StreamExt};
use netstack_smol::local::{PacketPort, TcpStream};

use crate::tun_async_io::AsyncIoTun;

/// Buffer size of each relay direction: large enough that the copy is not the bottleneck.
const RELAY_BUFFER: usize = 64 * 1024;

/// Spawns the two packet pumps between `tun` and `stack` on `ex`: device → stack and
/// stack → device (see [`wire`](crate::wire::wire) for the tokio version).
///
/// The device → stack task ends with an error if reading the device fails. The stack → device
/// task counts and skips packets the device refuses to write, and never ends on its own.
pub fn wire(
    ex: &LocalExecutor<'static>,
    tun: Rc<AsyncIoTun>,
    stack: PacketPort,
) -> (Task<io::Result<()>>, Task<io::Result<()>>) {
    let (mut sink, mut stream) = stack.split();
    let reader = tun.clone();
    let inbound = ex.spawn(async move {
        // Room for the largest packet the device can deliver.
        let capacity = reader.mtu() as usize + 64;
        loop {
            // One allocation per packet: the buffer is handed to the stack by value.
            let mut buf = vec![0u8; capacity];
            let n = reader.recv(&mut buf).await?;
            buf.truncate(n);
            sink.feed(buf).await?;
        }
    });
    let outbound = ex.spawn(async move {
        let mut write_errors: u64 = 0;
        while let Some(packet) = stream.next().await {
            if let Err(e) = tun.send(&packet).await {
                write_errors += 1;
                if write_errors.is_power_of_two() {
                    eprintln!("tun write failed ({write_errors} so far): {e}");
                }
            }
        }
        Ok(())
    });
    (inbound, outbound)
}

/// Connects to `target` and copies bytes both ways until both directions finished, keeping
/// half-closes (see [`relay`](crate::relay::relay) for the tokio version). If the connection
/// to `target` fails, the inbound stream is reset (RST), as the real server would have refused
/// it.
///
/// Returns the bytes copied (inbound → target, target → inbound).
///
/// # Errors
/// The connect error, or the first I/O error of either direction.
pub async fn relay(inbound: TcpStream, target: SocketAddr) -> io::Result<(u64, u64)> {
    let outbound = match Async::<StdTcpStream>::connect(target).await {
        Ok(s) => s,
        Err(e) => {
            inbound.abort();
            return Err(e);
        }
    };
    outbound.get_ref().set_nodelay(true)?;
    let (in_read, mut in_write) = inbound.into_split();
    let outbound = &outbound;
    let up = async move {
        let reader = BufReader::with_capacity(RELAY_BUFFER, in_read);
        let n = futures::io::copy_buf(reader, &mut &*outbound).await?;
        outbound.get_ref().shutdown(Shutdown::Write)?;
        Ok::<_, io::Error>(n)
    };
    let down = async move {
        let reader = BufReader::with_capacity(RELAY_BUFFER, outbound);
        let n = futures::io::copy_buf(reader, &mut in_write).await?;
        // A half-close: queues the FIN, the other direction keeps flowing.
        in_write.close().await?;
        Ok::<_, io::Error>(n)
    };
    futures::future::try_join(up, down).await
}

/// Datagrams buffered per UDP flow on their way out; more are dropped, as on a busy network.
const UDP_FLOW_QUEUE: usize = 64;

/// Relays every datagram of `socket`, one outbound async-io UDP socket per (source,
/// destination) flow, to `target(original destination)`; replies go back to the flow's source
/// as if from its destination. A flow closes after `idle` without traffic; at most
/// `max_flows` are open (datagrams of further flows are dropped). Runs until cancelled.
pub async fn relay_udp(
    ex: Rc<LocalExecutor<'static>>,
    socket: netstack_smol::local::UdpSocket,
    target: impl Fn(SocketAddr) -> SocketAddr,
    idle: std::time::Duration,
    max_flows: usize,
) {
    use futures::channel::mpsc;
    use std::collections::HashMap;

    let (rx, tx) = socket.split();
    let mut flows: HashMap<(SocketAddr, SocketAddr), mpsc::Sender<Vec<u8>>> = HashMap::new();
    loop {
        let netstack_smol::Datagram { payload, src, dst } = rx.recv().await;
        let key = (src, dst);
        if let Some(flow) = flows.get_mut(&key) {
            match flow.try_send(payload) {
                Ok(()) => continue,
                Err(e) if e.is_full() => continue, // dropped: the flow is saturated
                Err(e) => {
                    // The flow timed out: start a new one with this datagram.
                    flows.remove(&key);
                    let payload = e.into_inner();
                    open_udp_flow(&ex, &mut flows, &tx, &target, idle, max_flows, key, payload);
                    continue;
                }
            }
        }
        open_udp_flow(&ex, &mut flows, &tx, &target, idle, max_flows, key, payload);
    }
}

#[allow(clippy::too_many_arguments)]
fn open_udp_flow(
    ex: &LocalExecutor<'static>,
    flows: &mut std::collections::HashMap<
        (SocketAddr, SocketAddr),
        futures::channel::mpsc::Sender<Vec<u8>>,
    >,
    back: &netstack_smol::local::UdpSendHalf,
    target: &impl Fn(SocketAddr) -> SocketAddr,
    idle: std::time::Duration,
    max_flows: usize,
    key: (SocketAddr, SocketAddr),
    first: Vec<u8>,
) {
    if flows.len() >= max_flows {
        flows.retain(|_, f| !f.is_closed());
        if flows.len() >= max_flows {
            return;
        }
    }
    let (mut sender, mut outgoing) = futures::channel::mpsc::channel(UDP_FLOW_QUEUE);
    // A fresh channel has room for the first datagram.
    let _ = sender.try_send(first);
    flows.insert(key, sender);
    let (src, dst) = key;
    let to = target(dst);
    let back = back.clone();
    ex.spawn(async move {
        let bind: SocketAddr = if to.is_ipv4() {
            "0.0.0.0:0".parse().expect("valid")
        } else {
            "[::]:0".parse().expect("valid")
        };
        let Ok(socket) = Async::<std::net::UdpSocket>::bind(bind) else {
            return;
        };
        if socket.get_ref().connect(to).is_err() {
            return;
        }
        let mut buf = vec![0u8; 65536];
        /// What woke the flow.
        enum Step {
            Out(Option<Vec<u8>>),
            In(io::Result<usize>),
            Idle,
        }
        loop {
            use futures::future::{select, Either};
            let step = match select(
                select(outgoing.next(), Box::pin(socket.recv(&mut buf))),
                async_io::Timer::after(idle),
            )
            .await
            {
                Either::Left((Either::Left((d, _)), _)) => Step::Out(d),
                Either::Left((Either::Right((r, _)), _)) => Step::In(r),
                Either::Right(_) => Step::Idle,
            };
            match step {
                Step::Out(Some(d)) => {
                    // A failed send is a lost datagram, as on a real network.
                    let _ = socket.send(&d).await;
                }
                // An error is an ICMP error for an earlier datagram: keep the flow.
                Step::In(Ok(n)) => {
                    if back.send_to(&buf[..n], dst, src).await.is_err() {
                        return;
                    }
                }
                Step::In(Err(_)) => {}
                Step::Out(None) | Step::Idle => return,
            }
        }
    })
    .detach();
}
