//! `tun_forward`: a TUN-to-TCP forwarder over netstack.
//!
//! ```text
//! tun_forward --tun NAME [--mtu N] [--redirect IP]
//! ```
//!
//! Creates (or opens) TUN device NAME in the current network namespace, wires it to the stack,
//! and relays every accepted TCP stream to its original destination, or, with `--redirect`, to
//! `IP:<original port>`. Prints `ready` on stdout once the device exists and the stack runs
//! (configure addresses and routes after that), and on SIGINT/SIGTERM prints the stack's
//! counters on stderr and exits.
//!
//! Without `--redirect`, a real deployment must keep the forwarder's own outbound sockets off
//! the TUN route (`SO_MARK` + policy routing, or `SO_BINDTODEVICE`), or they loop back into it.

use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;

use clap::Parser;
use netstack_examples::{relay::relay, tun::Tun, wire::wire};
use netstack_tokio::StackBuilder;
use tokio::signal::unix::{signal, SignalKind};

/// Command line of `tun_forward`.
#[derive(Parser, Debug)]
#[command(about = "Relay every TCP connection arriving on a TUN device")]
struct Args {
    /// Name of the TUN device to create or open.
    #[arg(long)]
    tun: String,
    /// MTU of the device and the stack (576..=65535).
    #[arg(long, default_value_t = 1500, value_parser = clap::value_parser!(u32).range(576..=65535))]
    mtu: u32,
    /// Relay every flow to this address (keeping the original port) instead of its original
    /// destination.
    #[arg(long)]
    redirect: Option<IpAddr>,
}

#[tokio::main]
async fn main() -> std::io::Result<()> {
    let args = Args::parse();
    let tun = Arc::new(Tun::create(&args.tun, args.mtu)?);
    let mtu = args.mtu as usize;
    // Keep at least 16 full segments in flight per direction, so large MTUs keep their speed.
    let buffer = (16 * mtu).max(256 * 1024);
    let (stack, listener) = StackBuilder::default()
        .mtu(mtu)
        .tcp_rx_buffer(buffer)
        .tcp_tx_buffer(buffer)
        .run();
    let stats = stack.clone();
    let (pump_in, pump_out) = wire(tun, stack);
    println!("ready");

    let mut sigint = signal(SignalKind::interrupt())?;
    let mut sigterm = signal(SignalKind::terminate())?;
    loop {
        tokio::select! {
            accepted = listener.accept() => {
                let (stream, _peer) = accepted?;
                let destination = stream.local_addr()?;
                let target = match args.redirect {
                    Some(ip) => SocketAddr::new(ip, destination.port()),
                    None => destination,
                };
                tokio::spawn(async move {
                    if let Err(e) = relay(stream, target).await {
                        eprintln!("relay to {target}: {e}");
                    }
                });
            }
            _ = sigint.recv() => break,
            _ = sigterm.recv() => break,
        }
    }
    pump_in.abort();
    pump_out.abort();
    eprintln!("{}", stats.stats());
    Ok(())
}
