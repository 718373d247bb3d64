//! `fwd_ipstack`: `tun_forward` over ipstack 1.0.1 (a benchmark subject).
//!
//! ```text
//! fwd_ipstack --tun NAME [--mtu N] [--redirect IP]
//! ```
//!
//! Same command line, TUN device and relay glue as `tun_forward`; only the stack differs. The
//! stack uses the crate's defaults except the MTU. Prints `ready` once the device exists.

use clap::Parser;
use ipstack::{IpStack, IpStackConfig, IpStackStream};
use netstack_bench::cli::{shutdown_signal, ForwarderArgs};
use netstack_bench::relay::relay_to;
use netstack_bench::tun_io::TunIo;

/// The same process set-up as `tun_forward` (page-mapped large blocks, glibc keeping small
/// frees), so that the subjects differ in their stacks, not in their allocator tuning.
#[global_allocator]
static ALLOC: netstack_examples::allocator::PageMappedLargeAllocs =
    netstack_examples::allocator::PageMappedLargeAllocs;

#[tokio::main]
async fn main() -> std::io::Result<()> {
    netstack_examples::allocator::keep_small_frees();
    let args = ForwarderArgs::parse();
    let device = TunIo::create(&args.tun, args.mtu)?;
    let mut config = IpStackConfig::default();
    let mtu = u16::try_from(args.mtu).unwrap_or(u16::MAX);
    config.mtu(mtu).map_err(std::io::Error::other)?;
    let mut stack = IpStack::new(config, device);
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
                // UDP, ICMP and unparsable packets are not part of the benchmark: drop them.
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
    Ok(())
}
