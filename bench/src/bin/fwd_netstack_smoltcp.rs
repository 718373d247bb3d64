//! `fwd_netstack_smoltcp`: `tun_forward` over netstack-smoltcp 0.2.4 (a benchmark subject).
//!
//! ```text
//! fwd_netstack_smoltcp --tun NAME [--mtu N] [--redirect IP]
//! ```
//!
//! Same command line, TUN device and relay glue as `tun_forward`; only the stack differs. The
//! stack uses the crate's defaults except the MTU, with TCP and UDP enabled. TCP streams are
//! relayed with [`relay_to`]; UDP datagrams (the crate's one UDP socket, every datagram with its
//! addresses) through a [`FlowTable`]: one kernel socket per flow, as `tun_forward` does. Prints
//! `ready` once the device exists; on SIGINT/SIGTERM prints the UDP relay's counters.

use std::net::SocketAddr;
use std::sync::Arc;

use clap::Parser;
use futures::{FutureExt, SinkExt, StreamExt};
use netstack_bench::cli::{shutdown_signal, ForwarderArgs};
use netstack_bench::relay::relay_to;
use netstack_bench::udp_relay::{FlowTable, Replies, Tokio, UdpRelayStats, LIMITS, MAX_BATCH};
use netstack_examples::tun::Tun;

/// The same process set-up as `tun_forward` (page-mapped large blocks, glibc keeping small
/// frees), so that the subjects differ in their stacks, not in their allocator tuning.
#[global_allocator]
static ALLOC: netstack_examples::allocator::PageMappedLargeAllocs =
    netstack_examples::allocator::PageMappedLargeAllocs;

#[tokio::main]
async fn main() -> std::io::Result<()> {
    let args = ForwarderArgs::parse();
    let tun = Arc::new(Tun::create(&args.tun, args.mtu)?);
    let (stack, runner, udp, listener) = netstack_smoltcp::StackBuilder::default()
        .enable_tcp(true)
        .enable_udp(true)
        .mtu(args.mtu as usize)
        .build()?;
    let mut listener = listener.expect("TCP is enabled");
    if let Some(runner) = runner {
        tokio::spawn(runner);
    }
    let (mut stack_sink, mut stack_stream) = stack.split();

    let reader = tun.clone();
    let inbound = tokio::spawn(async move {
        // One reused read buffer, each packet copied out at its own size (as tun_forward's
        // device does for small packets): a fresh MTU-sized zeroed buffer per packet would
        // cost netstack-smoltcp a 64 KiB memset per 40-byte ACK at MTU 65000, and keep 64 KiB
        // per queued 1,400-byte datagram.
        let mut scratch = vec![0u8; reader.mtu() as usize + 64];
        loop {
            let n = match reader.recv(&mut scratch).await {
                Ok(n) => n,
                Err(e) => {
                    eprintln!("tun read: {e}");
                    return;
                }
            };
            if let Err(e) = stack_sink.send(scratch[..n].to_vec()).await {
                eprintln!("stack refused a packet: {e}");
            }
        }
    });
    let writer = tun.clone();
    let outbound = tokio::spawn(async move {
        while let Some(packet) = stack_stream.next().await {
            let Ok(packet) = packet else { continue };
            let _ = writer.send(&packet).await;
        }
    });
    let udp_stats = Arc::new(UdpRelayStats::default());
    let udp = {
        let (mut datagrams, replies) = udp.expect("UDP is enabled").split();
        let reply = StackReplies(Arc::new(tokio::sync::Mutex::new(replies)));
        let args = args.clone();
        let mut table = FlowTable::new(reply, LIMITS, udp_stats.clone());
        tokio::spawn(async move {
            while let Some(first) = datagrams.next().await {
                // Every datagram that is ready, then the runs gathered from them go out.
                let mut next = Some(first);
                let mut taken = 0;
                while let Some((payload, src, dst)) = next {
                    taken += 1;
                    if let Some(flow) = table.dispatch::<Tokio>(src, dst, payload, args.target(dst))
                    {
                        tokio::spawn(flow.run::<Tokio>());
                    }
                    next = if taken < MAX_BATCH {
                        datagrams.next().now_or_never().flatten()
                    } else {
                        None
                    };
                }
                table.flush();
            }
        })
    };
    println!("ready");

    let accept = async {
        while let Some((stream, _client, destination)) = listener.next().await {
            let target = args.target(destination);
            tokio::spawn(async move {
                if let Err(e) = relay_to(stream, target).await {
                    eprintln!("relay to {target}: {e}");
                }
            });
        }
    };
    tokio::select! {
        () = accept => {}
        r = shutdown_signal() => r?,
    }
    inbound.abort();
    outbound.abort();
    udp.abort();
    eprintln!("{udp_stats}");
    Ok(())
}

/// Replies of the UDP flows, written into the stack's UDP socket (a `Sink` of
/// `(payload, from, to)`), one flow at a time.
#[derive(Clone)]
struct StackReplies(Arc<tokio::sync::Mutex<netstack_smoltcp::udp::WriteHalf>>);

impl Replies for StackReplies {
    type Quote = ();

    async fn send_reply(
        &self,
        payload: &[u8],
        from: SocketAddr,
        to: SocketAddr,
    ) -> std::io::Result<()> {
        self.0.lock().await.send((payload.to_vec(), from, to)).await
    }

    fn refused(&self, _: &()) -> bool {
        false
    }
}
