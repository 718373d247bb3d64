//! `tun_forward_smol`: the TUN forwarder of `tun_forward`, on one thread.
//!
//! ```text
//! tun_forward_smol --tun NAME [--mtu N] [--redirect IP]
//! tun_forward_smol --tun-fd FD [--mtu N] [--redirect IP]
//! ```
//!
//! Same command line, TCP and UDP behaviour as `tun_forward` (pings are answered by the stack;
//! `--icmp forward` is accepted but not implemented here), but everything (the stack's runner,
//! the packet pumps, every relay) runs on a single-thread `async_executor::LocalExecutor` over
//! async-io, with the `!Send` stack from `netstack_smol::local`: an `Rc` and no locking.
//! Prints `ready` on stdout once the device exists and the stack runs, and on SIGINT/SIGTERM
//! prints the stack's counters on stderr and exits. If reading the device fails, it says so on
//! stderr and exits with status 1. `--tun-fd` drives an inherited descriptor, never closed, as
//! in `tun_forward`; the device's offloads are not used here.

use std::process::ExitCode;
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

/// Connection buffers get pages of their own on Linux: untouched ones cost nothing, freed ones
/// return to the system (see `netstack_examples::allocator`).
#[global_allocator]
static ALLOC: netstack_examples::allocator::ForwarderAllocator =
    netstack_examples::allocator::FORWARDER_ALLOCATOR;

fn main() -> std::io::Result<ExitCode> {
    let args = Args::parse();
    netstack_examples::allocator::keep_small_frees();
    let ex = Rc::new(LocalExecutor::new());
    async_io::block_on(ex.run(forward(ex.clone(), args)))
}

async fn forward(ex: Rc<LocalExecutor<'static>>, args: Args) -> std::io::Result<ExitCode> {
    // Registered before anything else, so that a signal right after `ready` is not lost.
    let mut signals = Signals::new(SHUTDOWN_SIGNALS)?;
    // No offloads: this forwarder's pump and stack take MTU-sized packets only.
    let tun = Rc::new(AsyncIoTun::new(args.open_device(false)?)?);
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
    let (mut pump_in, pump_out) = wire(&ex, tun.clone(), stack);
    println!("ready");

    // Accept until SIGINT or SIGTERM, or until reading the device fails (the device → stack
    // pump ends only then).
    let exit = loop {
        let stop = select(signals.next(), &mut pump_in);
        match select(Box::pin(listener.accept()), stop).await {
            Either::Left((accepted, _)) => {
                let (stream, _peer) = accepted?;
                let target = args.target(stream.local_addr()?);
                ex.spawn(async move {
                    if let Err(e) = relay(stream, target).await {
                        eprintln!("relay to {target}: {e}");
                    }
                })
                .detach();
            }
            Either::Right((Either::Left(_signal), _)) => break ExitCode::SUCCESS,
            Either::Right((Either::Right((ended, _)), _)) => {
                let error = match ended {
                    Err(e) => e.to_string(),
                    Ok(()) => "the reader stopped".to_string(),
                };
                eprintln!(
                    "tun_forward_smol: reading TUN device {} failed: {error}",
                    tun.name()
                );
                break ExitCode::FAILURE;
            }
        }
    };
    // Stop the pumps and the UDP relay, and let go of the device before exiting, as
    // `tun_forward` does (an adopted descriptor stays open: the device only borrows it).
    pump_in.cancel().await;
    pump_out.cancel().await;
    udp_relay.cancel().await;
    drop(tun);
    eprintln!("{}", stats.stats());
    Ok(exit)
}

/// The signals that stop the forwarder (Windows: Ctrl+C only).
#[cfg(unix)]
const SHUTDOWN_SIGNALS: [Signal; 2] = [Signal::Int, Signal::Term];
/// The signals that stop the forwarder (Windows: Ctrl+C only).
#[cfg(windows)]
const SHUTDOWN_SIGNALS: [Signal; 1] = [Signal::Int];
