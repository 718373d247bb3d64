//! `fwd_ipstack`: `tun_forward` over ipstack 1.0.1 (a benchmark subject).
//!
//! ```text
//! fwd_ipstack --tun NAME [--mtu N] [--redirect IP]
//! ```
//!
//! Same command line, TUN device and relay glue as `tun_forward`; only the stack differs. The
//! stack uses the crate's defaults except the MTU. TCP streams are relayed with [`relay_to`];
//! UDP flows (ipstack hands over one stream per flow) with [`stream_flow`]: one kernel
//! socket per flow, as `tun_forward` does. Prints `ready` once the device exists; on
//! SIGINT/SIGTERM prints the UDP relay's counters.

use std::sync::Arc;

use clap::Parser;
use ipstack::{IpStack, IpStackConfig, IpStackStream};
use netstack_bench::cli::{shutdown_signal, ForwarderArgs};
use netstack_bench::relay::relay_to;
use netstack_bench::tun_io::TunIo;
use netstack_bench::udp_relay::{stream_flow, Tokio, UdpRelayStats, IDLE_TIMEOUT};

/// The same process set-up as `tun_forward` (page-mapped large blocks, glibc keeping small
/// frees), so that the subjects differ in their stacks, not in their allocator tuning.
#[global_allocator]
static ALLOC: netstack_examples::allocator::PageMappedLargeAllocs =
    netstack_examples::allocator::PageMappedLargeAllocs;

#[tokio::main]
async fn main() -> std::io::Result<()> {
    let args = ForwarderArgs::parse();
    let device = TunIo::create(&args.tun, args.mtu)?;
    let mut config = IpStackConfig::default();
    let mtu = u16::try_from(args.mtu).unwrap_or(u16::MAX);
    config.mtu(mtu).map_err(std::io::Error::other)?;
    // The flows' idle timeout of every subject (ipstack's default is 30 s).
    config.udp_timeout(IDLE_TIMEOUT);
    let mut stack = IpStack::new(config, device);
    let udp_stats = Arc::new(UdpRelayStats::default());
    println!("ready");

    let accept = async {
        loop {
            match stack.accept().await {
                Ok(IpStackStream::Tcp(stream)) => {
                    let target = args.target(stream.peer_addr());
                    tokio::spawn(async move {
                        if let Err(e) = relay_to(stream, target).await {
                            eprintln!("relay to {target}: {e}");
                        }
                    });
                }
                Ok(IpStackStream::Udp(stream)) => {
                    let route = (
                        stream.local_addr(),
                        stream.peer_addr(),
                        args.target(stream.peer_addr()),
                    );
                    let flow = stream_flow(stream, route, udp_stats.clone());
                    tokio::spawn(async move {
                        if let Err(e) = flow.run::<Tokio>().await {
                            eprintln!("udp relay to {}: {e}", route.2);
                        }
                    });
                }
                // ICMP and unparsable packets are not part of the benchmark: drop them.
                Ok(_) => {}
                Err(e) => {
                    eprintln!("accept: {e}");
                    return;
                }
            }
        }
    };
    tokio::select! {
        () = accept => {}
        r = shutdown_signal() => r?,
    }
    eprintln!("{udp_stats}");
    Ok(())
}
