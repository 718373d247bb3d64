//! The command line shared by every TUN forwarder (the same as `tun_forward`'s).

use std::net::{IpAddr, SocketAddr};

use clap::Parser;

/// Command line of a TUN forwarder: `--tun NAME [--mtu N] [--redirect IP]`.
#[derive(Parser, Debug, Clone)]
#[command(about = "Relay every TCP connection arriving on a TUN device")]
pub struct ForwarderArgs {
    /// Name of the TUN device to create or open.
    #[arg(long)]
    pub tun: String,
    /// MTU of the device and the stack (1280..=65535).
    #[arg(long, default_value_t = 1500, value_parser = clap::value_parser!(u32).range(1280..=65535))]
    pub mtu: u32,
    /// Relay every flow to this address (keeping the original port) instead of its original
    /// destination.
    #[arg(long)]
    pub redirect: Option<IpAddr>,
}

impl ForwarderArgs {
    /// Where a flow to `destination` is relayed: `--redirect` with the original port, or the
    /// original destination.
    pub fn target(&self, destination: SocketAddr) -> SocketAddr {
        match self.redirect {
            Some(ip) => SocketAddr::new(ip, destination.port()),
            None => destination,
        }
    }
}

/// Waits for SIGINT or SIGTERM.
///
/// # Errors
/// If the signal handlers cannot be installed.
pub async fn shutdown_signal() -> std::io::Result<()> {
    use tokio::signal::unix::{signal, SignalKind};
    let mut sigint = signal(SignalKind::interrupt())?;
    let mut sigterm = signal(SignalKind::terminate())?;
    tokio::select! {
        _ = sigint.recv() => {}
        _ = sigterm.recv() => {}
    }
    Ok(())
}
