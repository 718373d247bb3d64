//! `tun_forward`: a TUN-to-TCP forwarder over netstack.
//!
//! ```text
//! tun_forward --tun NAME [--mtu N] [--redirect IP]
//! tun_forward --tun-fd FD [--mtu N] [--redirect IP]
//! ```
//!
//! Creates (or opens) TUN device NAME in the current network namespace, or drives the inherited
//! TUN descriptor FD (Android's VpnService, an iOS utun socket; never closed), wires it to the
//! stack, and relays every accepted TCP stream to its original destination, or, with
//! `--redirect`, to `IP:<original port>`. Prints `ready` on stdout once the device exists and
//! the stack runs (configure addresses and routes after that), and on SIGINT/SIGTERM (Ctrl+C on
//! Windows) prints the stack's counters on stderr and exits. If reading the device fails (its
//! interface was deleted, say), it says so on stderr and exits with status 1.
//!
//! Without `--redirect`, a real deployment must keep the forwarder's own outbound sockets off
//! the TUN route (`SO_MARK` + policy routing, or `SO_BINDTODEVICE`), or they loop back into it.

use std::process::ExitCode;
use std::sync::Arc;

use clap::Parser;
use netstack_examples::forward::{Args, IcmpMode};
use netstack_examples::icmp_forward::forward_icmp;
use netstack_examples::udp_relay::{relay_udp, UdpRelayLimits, UdpRelayStats};
use netstack_examples::{relay::relay, tun::Tun, wire::wire};
use netstack_tokio::{IcmpEchoMode, StackBuilder};

/// Connection buffers get pages of their own on Linux: untouched ones cost nothing, freed ones
/// return to the system (see `netstack_examples::allocator`).
#[global_allocator]
static ALLOC: netstack_examples::allocator::ForwarderAllocator =
    netstack_examples::allocator::FORWARDER_ALLOCATOR;

#[tokio::main]
async fn main() -> std::io::Result<ExitCode> {
    let args = Args::parse();
    netstack_examples::allocator::keep_small_frees();
    let tun = Tun::new(args.open_device(!args.no_offload)?)?;
    // With offloads the kernel's transport checksums are partial by design, and every packet
    // on the device was built by the local kernel: neither complete nor verify them (the stack
    // gets `verify_checksums(false)` below).
    tun.set_complete_checksums(!tun.offload());
    let tun = Arc::new(tun);
    let icmp_echo = match args.icmp {
        IcmpMode::Reply => IcmpEchoMode::Reply,
        IcmpMode::Forward => IcmpEchoMode::Deliver,
    };
    let (stack, listener) = StackBuilder::new(
        netstack_tokio::Config::default()
            .mtu(args.mtu as usize)
            // With the device's offloads the kernel cuts large TCP segments itself.
            .tcp_segmentation_offload(tun.offload())
            .verify_checksums(!tun.offload())
            .tcp_rx_buffer(args.tcp_buffer())
            .tcp_tx_buffer(args.tcp_buffer())
            .max_connections(args.max_connections)
            // The connection cap is the limit users set here; size the byte budget to match it.
            .tcp_buffer_budget(args.max_connections * 2 * args.tcp_buffer())
            .icmp_echo(icmp_echo),
    )
    .run();
    let stats = stack.clone();
    let udp_target = {
        let args = args.clone();
        move |dst| args.target(dst)
    };
    let limits = UdpRelayLimits {
        idle_timeout: std::time::Duration::from_secs(args.udp_idle_timeout),
        max_flows: args.max_udp_flows,
    };
    let udp_stats = Arc::new(UdpRelayStats::default());
    let udp = tokio::spawn(relay_udp(
        stack.udp_socket()?,
        udp_target,
        limits,
        udp_stats.clone(),
    ));
    let icmp = match args.icmp {
        IcmpMode::Forward => {
            let args = args.clone();
            let socket = stack.icmp_socket()?;
            Some(tokio::spawn(forward_icmp(socket, move |ip| {
                args.ping_target(ip)
            })))
        }
        IcmpMode::Reply => None,
    };
    let (mut pump_in, pump_out) = wire(tun.clone(), stack);
    // Registered before `ready`, so that a signal right after it is not lost.
    let shutdown = shutdown_signal()?;
    tokio::pin!(shutdown);
    println!("ready");

    let exit = loop {
        tokio::select! {
            accepted = listener.accept() => {
                let (stream, _peer) = accepted?;
                let target = args.target(stream.local_addr()?);
                tokio::spawn(async move {
                    if let Err(e) = relay(stream, target).await {
                        eprintln!("relay to {target}: {e}");
                    }
                });
            }
            // The device → stack pump ends only when reading the device failed.
            ended = &mut pump_in => {
                let error = match ended {
                    Ok(Err(e)) => e.to_string(),
                    Ok(Ok(())) => "the reader stopped".to_string(),
                    Err(e) => e.to_string(),
                };
                eprintln!("tun_forward: reading TUN device {} failed: {error}", tun.name());
                break ExitCode::FAILURE;
            }
            signalled = &mut shutdown => {
                signalled?;
                break ExitCode::SUCCESS;
            }
        }
    };
    pump_in.abort();
    pump_out.abort();
    udp.abort();
    if let Some(icmp) = icmp {
        icmp.abort();
    }
    eprintln!("{}", stats.stats());
    eprintln!("{udp_stats}");
    eprintln!(
        "tun {}: offloads {}, {} packets dropped for an inconsistent offload header",
        tun.name(),
        if tun.offload() { "on" } else { "off" },
        tun.offload_drops()
    );
    Ok(exit)
}

/// Registers for SIGINT and SIGTERM (Ctrl+C on Windows) and returns the wait for either.
fn shutdown_signal() -> std::io::Result<impl std::future::Future<Output = std::io::Result<()>>> {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{signal, SignalKind};
        let mut sigint = signal(SignalKind::interrupt())?;
        let mut sigterm = signal(SignalKind::terminate())?;
        Ok(async move {
            tokio::select! {
                _ = sigint.recv() => {}
                _ = sigterm.recv() => {}
            }
            Ok(())
        })
    }
    #[cfg(windows)]
    Ok(tokio::signal::ctrl_c())
}
