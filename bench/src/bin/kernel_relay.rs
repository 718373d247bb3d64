//! `kernel_relay`: the shared relay glue on a kernel TCP listener (the benchmark's ceiling).
//!
//! ```text
//! kernel_relay --listen 127.0.0.1:5202 --target 127.0.0.1:5201
//! ```
//!
//! Accepts on `--listen` and relays every connection to `--target` with the same
//! [`relay_to`] every TUN subject uses, so the kernel terminates TCP on both sides. Prints
//! `ready` once listening.

use std::net::SocketAddr;

use clap::Parser;
use netstack_bench::cli::shutdown_signal;
use netstack_bench::relay::relay_to;

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
}

/// The same process set-up as `tun_forward` (page-mapped large blocks, glibc keeping small
/// frees), so that the subjects differ in their stacks, not in their allocator tuning.
#[global_allocator]
static ALLOC: netstack_examples::allocator::PageMappedLargeAllocs =
    netstack_examples::allocator::PageMappedLargeAllocs;

#[tokio::main]
async fn main() -> std::io::Result<()> {
    netstack_examples::allocator::keep_small_frees();
    let args = Args::parse();
    let listener = tokio::net::TcpListener::bind(args.listen).await?;
    println!("ready");
    let target = args.target;
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
    tokio::select! {
        () = accept => Ok(()),
        r = shutdown_signal() => r,
    }
}
