//! `tun_forward_smol`: the TUN forwarder of `tun_forward`, on one thread.
//!
//! ```text
//! tun_forward_smol --tun NAME [--mtu N] [--redirect IP]
//! ```
//!
//! Same command line, TCP and UDP behaviour as `tun_forward` (pings are answered by the stack;
//! `--icmp forward` is accepted but not implemented here), but everything (the stack's runner,
//! the packet pumps, every relay) runs on a single-thread `async_executor::LocalExecutor` over
//! async-io, with the `!Send` stack from `netstack_smol::local`: an `Rc` and no locking.
//! Prints `ready` on stdout once the device exists and the stack runs, and on SIGINT/SIGTERM
//! prints the stack's counters on stderr and exits.

use std::rc::Rc;

use async_executor::LocalExecutor;
use async_signal::{Signal, Signals};
use clap::Parser;
use futures::future::{select, Either};
use futures::StreamExt;
use netstack_examples::forward::Args;
use netstack_examples::smol_local::{relay, relay_udp, wire};
use netstack_examples::tun_async_io::AsyncIoTun;
use netstack_smol::local::StackBuilder;

/// Connection buffers get pages of their own: untouched ones cost nothing, freed ones return
/// to the system (see `netstack_examples::allocator`).
#[global_allocator]
static ALLOC: netstack_examples::allocator::PageMappedLargeAllocs =
    netstack_examples::allocator::PageMappedLargeAllocs;

fn main() -> std::io::Result<()> {
    let args = Args::parse();
    netstack_examples::allocator::keep_small_frees();
    let ex = Rc::new(LocalExecutor::new());
    async_io::block_on(ex.run(forward(ex.clone(), args)))
}

async fn forward(ex: Rc<LocalExecutor<'static>>, args: Args) -> std::io::Result<()> {
    // Registered before anything else, so that a signal right after `ready` is not lost.
    let mut signals = Signals::new([Signal::Int, Signal::Term])?;
    let tun = Rc::new(AsyncIoTun::create(&args.tun, args.mtu)?);
    let (stack, runner, listener) = StackBuilder::new(
        netstack_smol::Config::default()
            .mtu(args.mtu as usize)
            .tcp_rx_buffer(args.tcp_buffer())
            .tcp_tx_buffer(args.tcp_buffer())
            .max_connections(args.max_connections),
    )
    .build();
    ex.spawn(runner).detach();
    let stats = stack.clone();
    let udp = stack.udp_socket()?;
    let udp_args = args.clone();
    let udp_relay = ex.spawn(relay_udp(
        ex.clone(),
        udp,
        move |dst| udp_args.target(dst),
        std::time::Duration::from_secs(args.udp_idle_timeout),
        args.max_udp_flows,
    ));
    let (pump_in, pump_out) = wire(&ex, tun, stack);
    println!("ready");

    // Accept until SIGINT or SIGTERM.
    while let Either::Left((accepted, _)) =
        select(Box::pin(listener.accept()), signals.next()).await
    {
        let (stream, _peer) = accepted?;
        let target = args.target(stream.local_addr()?);
        ex.spawn(async move {
            if let Err(e) = relay(stream, target).await {
                eprintln!("relay to {target}: {e}");
            }
        })
        .detach();
    }
    drop((pump_in, pump_out, udp_relay)); // cancels the pumps and the UDP relay
    eprintln!("{}", stats.stats());
    Ok(())
}
