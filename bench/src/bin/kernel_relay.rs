//! `kernel_relay`: the shared relay glue on a kernel TCP listener (the benchmark's ceiling).
//!
//! ```text
//! kernel_relay --listen 127.0.0.1:5202 --target 127.0.0.1:5201 [--udp]
//! ```
//!
//! Accepts on `--listen` and relays every connection to `--target` with the same
//! [`relay_to`] every TUN subject uses, so the kernel terminates TCP on both sides. With
//! `--udp` it also receives datagrams on `--listen` (a UDP socket) and relays them per flow
//! with the UDP glue of the peer forwarders ([`FlowTable`], one kernel socket per flow, as
//! `tun_forward` does): the UDP reference. Prints `ready` once listening; on SIGINT/SIGTERM
//! prints the UDP relay's counters.

use std::net::SocketAddr;
use std::sync::Arc;

use clap::Parser;
use netstack_bench::cli::shutdown_signal;
use netstack_bench::relay::relay_to;
use netstack_bench::udp_relay::{
    FlowTable, SocketReplies, Tokio, UdpRelayStats, LIMITS, MAX_BATCH, MAX_DATAGRAM,
};

/// Command line of `kernel_relay`.
#[derive(Parser, Debug)]
#[command(about = "Relay every TCP connection accepted on --listen to --target")]
struct Args {
    /// Address to listen on.
    #[arg(long)]
    listen: SocketAddr,
    /// Address to relay to.
    #[arg(long)]
    target: SocketAddr,
    /// Relay UDP flows arriving on `--listen` too.
    #[arg(long)]
    udp: bool,
}

/// The same process set-up as `tun_forward` (page-mapped large blocks, glibc keeping small
/// frees), so that the subjects differ in their stacks, not in their allocator tuning.
#[global_allocator]
static ALLOC: netstack_examples::allocator::PageMappedLargeAllocs =
    netstack_examples::allocator::PageMappedLargeAllocs;

#[tokio::main]
async fn main() -> std::io::Result<()> {
    let args = Args::parse();
    let listener = tokio::net::TcpListener::bind(args.listen).await?;
    let target = args.target;
    let udp_stats = Arc::new(UdpRelayStats::default());
    let udp = if args.udp {
        let socket = Arc::new(tokio::net::UdpSocket::bind(args.listen).await?);
        let mut table = FlowTable::new(SocketReplies(socket.clone()), LIMITS, udp_stats.clone());
        let listen = args.listen;
        Some(tokio::spawn(async move {
            let mut buf = vec![0u8; MAX_DATAGRAM];
            loop {
                let mut received = socket.recv_from(&mut buf).await;
                // Every datagram that is ready, then the runs gathered from them go out.
                for _ in 0..MAX_BATCH {
                    match received {
                        // One allocation per datagram, as the stacks hand theirs over.
                        Ok((n, src)) => {
                            let datagram = buf[..n].to_vec();
                            if let Some(flow) =
                                table.dispatch::<Tokio>(src, listen, datagram, target)
                            {
                                tokio::spawn(flow.run::<Tokio>());
                            }
                        }
                        Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => break,
                        Err(e) => eprintln!("udp recv: {e}"),
                    }
                    received = socket.try_recv_from(&mut buf);
                }
                table.flush();
            }
        }))
    } else {
        None
    };
    println!("ready");
    let accept = async {
        loop {
            match listener.accept().await {
                Ok((stream, _peer)) => {
                    let _ = stream.set_nodelay(true);
                    tokio::spawn(async move {
                        if let Err(e) = relay_to(stream, target).await {
                            eprintln!("relay to {target}: {e}");
                        }
                    });
                }
                Err(e) => {
                    // EMFILE and the like: back off instead of spinning.
                    eprintln!("accept: {e}");
                    tokio::time::sleep(std::time::Duration::from_millis(10)).await;
                }
            }
        }
    };
    let result = tokio::select! {
        () = accept => Ok(()),
        r = shutdown_signal() => r,
    };
    if let Some(udp) = udp {
        udp.abort();
        eprintln!("{udp_stats}");
    }
    result
}
