//! [`StackBuilder`]: configuration and construction of a stack of either flavour.

use std::collections::hash_map::RandomState;
use std::hash::BuildHasher;
use std::marker::PhantomData;

use netstack_core::{Config, Duration};

use crate::flavor::{CoreStack, Flavor, LocalFlavor, SendFlavor};
use crate::generic::{Runner, Stack, TcpListener};
use crate::TokioClock;

/// Builds a [`Stack`], its [`Runner`] and its [`TcpListener`].
///
/// Every setting has a documented default (see [`Config`]); `StackBuilder::default()` suits a
/// phone or desktop VPN.
#[derive(Debug)]
pub struct StackBuilder<F: Flavor> {
    config: Config,
    flavor: PhantomData<F>,
}

impl<F: Flavor> Clone for StackBuilder<F> {
    fn clone(&self) -> Self {
        Self::from_config(self.config.clone())
    }
}

impl<F: Flavor> Default for StackBuilder<F> {
    fn default() -> Self {
        // Initial sequence numbers must differ between runs.
        let seed = RandomState::new().hash_one(std::time::SystemTime::now());
        Self::from_config(Config::default().random_seed(seed))
    }
}

macro_rules! forward {
    ($($(#[$doc:meta])* $name:ident: $ty:ty),* $(,)?) => {
        $(
            $(#[$doc])*
            #[must_use]
            pub fn $name(mut self, value: $ty) -> Self {
                self.config = self.config.$name(value);
                self
            }
        )*
    };
}

impl<F: Flavor> StackBuilder<F> {
    /// A builder starting from `config` instead of the defaults.
    pub fn from_config(config: Config) -> Self {
        StackBuilder {
            config,
            flavor: PhantomData,
        }
    }

    /// The configuration built so far.
    pub fn config(&self) -> &Config {
        &self.config
    }

    forward! {
        /// Link MTU in bytes (default 1500). See [`Config::mtu`].
        mtu: usize,
        /// The device segments large TCP packets itself (default off). See
        /// [`Config::tcp_segmentation_offload`].
        tcp_segmentation_offload: bool,
        /// Verify transport checksums of incoming packets (default on). See
        /// [`Config::verify_checksums`].
        verify_checksums: bool,
        /// Receive buffer per TCP connection (default 256 KiB). See [`Config::tcp_rx_buffer`].
        tcp_rx_buffer: usize,
        /// Send buffer per TCP connection (default 256 KiB). See [`Config::tcp_tx_buffer`].
        tcp_tx_buffer: usize,
        /// Connection cap (default 4096). See [`Config::max_connections`].
        max_connections: usize,
        /// Half-open connection cap (default 256). See [`Config::syn_backlog`].
        syn_backlog: usize,
        /// Handshake timeout (default 5 s). See [`Config::syn_timeout`].
        syn_timeout: Duration,
        /// Accept queue length (default 256). See [`Config::accept_queue`].
        accept_queue: usize,
        /// Ingress queue length in packets (default 256). See [`Config::ingress_queue`].
        ingress_queue: usize,
        /// Egress queue length in packets (default 256). See [`Config::egress_queue`].
        egress_queue: usize,
        /// Close timeout of dropped connections (default 30 s). See [`Config::close_timeout`].
        close_timeout: Duration,
        /// Unacknowledged-data timeout (default 120 s). See [`Config::tcp_timeout`].
        tcp_timeout: Option<Duration>,
        /// Keep-alive interval (default off). See [`Config::tcp_keep_alive`].
        tcp_keep_alive: Option<Duration>,
        /// Packets per runner pass (default 64). See [`Config::runner_batch`].
        runner_batch: usize,
        /// Seed for initial sequence numbers (default: random). See [`Config::random_seed`].
        random_seed: u64,
        /// UDP receive queue in datagrams (default 512). See [`Config::udp_queue`].
        udp_queue: usize,
        /// UDP receive queue in bytes (default 4 MiB). See [`Config::udp_queue_bytes`].
        udp_queue_bytes: usize,
        /// TTL/hop limit of UDP and ICMP packets (default 64). See [`Config::hop_limit`].
        hop_limit: u8,
        /// ICMP echo handling (default: reply). See [`Config::icmp_echo`].
        icmp_echo: netstack_core::IcmpEchoMode,
        /// Deliver non-echo ICMP (default off). See [`Config::icmp_deliver_other`].
        icmp_deliver_other: bool,
        /// ICMP queue length (default 64). See [`Config::icmp_queue`].
        icmp_queue: usize,
        /// Pending fragmented datagrams (default 64). See [`Config::reassembly_max_datagrams`].
        reassembly_max_datagrams: usize,
        /// Bytes held for reassembly (default 1 MiB). See [`Config::reassembly_max_bytes`].
        reassembly_max_bytes: usize,
        /// Reassembly timeout (default 10 s). See [`Config::reassembly_timeout`].
        reassembly_timeout: Duration,
        /// IP filter (default: allow all). See [`Config::filter`].
        filter: netstack_core::IpFilter,
        /// TCP socket tables connections are spread over (default 256). See
        /// [`Config::tcp_shards`].
        tcp_shards: usize,
        /// Global byte budget for connection buffers (default 1 GiB). See
        /// [`Config::tcp_buffer_budget`].
        tcp_buffer_budget: usize,
    }

    /// Builds the stack. Spawn the [`Runner`] (a `Send` future in the `Send` flavour, a local
    /// one in [`local`](crate::local)), wire the [`Stack`] to a packet device, and accept
    /// connections from the [`TcpListener`].
    pub fn build(self) -> (Stack<F>, Runner<F>, TcpListener<F>) {
        let core = F::new_ptr(CoreStack::<F>::new(self.config, TokioClock::new()));
        (
            Stack::<F>::new(core.clone()),
            Runner::new(core.clone()),
            TcpListener::new(core),
        )
    }
}

impl StackBuilder<SendFlavor> {
    /// Builds the stack and spawns its runner on the current tokio runtime.
    ///
    /// # Panics
    /// Outside a tokio runtime (as `tokio::spawn` does).
    pub fn run(self) -> (Stack<SendFlavor>, TcpListener<SendFlavor>) {
        let (stack, runner, listener) = self.build();
        tokio::spawn(runner);
        (stack, listener)
    }
}

impl StackBuilder<LocalFlavor> {
    /// Builds the stack and spawns its runner on the current `LocalSet`.
    ///
    /// # Panics
    /// Outside a `LocalSet` (as `tokio::task::spawn_local` does).
    pub fn run(self) -> (Stack<LocalFlavor>, TcpListener<LocalFlavor>) {
        let (stack, runner, listener) = self.build();
        tokio::task::spawn_local(runner);
        (stack, listener)
    }
}
