//! [`StackBuilder`]: a stack of a [`Flavor`] on a [`Runtime`], with its packet port, runner
//! and listener.
//!
//! The configuration is a [`Config`], which chains its own setters:
//!
//! ```
//! use netstack_core::{Config, Duration};
//! let config = Config::default().mtu(9000).max_connections(512).syn_timeout(Duration::from_secs(3));
//! # let _ = config;
//! ```
//!
//! and an adapter's builder takes it whole: `StackBuilder::new(config)`.

use alloc::vec::Vec;
use core::marker::PhantomData;

use crate::config::Config;
use crate::flavor::Flavor;
use crate::port::PacketPort;
use crate::runner::Runner;
use crate::runtime::{Io, Runtime, Spawn};
use crate::stack::Stack;
use crate::tcp::listener::TcpListener;

/// The stack pointer of flavour `F` with runtime `R`'s clock.
pub type PtrOf<F, R> = <F as Flavor>::Ptr<<R as Runtime>::Clock>;
/// The packet port a [`StackBuilder`] makes.
pub type PortOf<F, R> = PacketPort<PtrOf<F, R>, <R as Io>::Error>;
/// The runner a [`StackBuilder`] makes.
pub type RunnerOf<F, R> = Runner<PtrOf<F, R>, <R as Runtime>::Timer>;
/// The runners of [`StackBuilder::build_runners`], one per runner group.
pub type RunnersOf<F, R> = Vec<RunnerOf<F, R>>;
/// The listener a [`StackBuilder`] makes.
pub type ListenerOf<F, R> =
    TcpListener<PtrOf<F, R>, <R as Io>::Stream<PtrOf<F, R>>, <R as Io>::Error>;

/// Builds a stack of flavour `F` on runtime `R`: its packet port (wire it to the device), its
/// runner (spawn it) and its listener (accept connections). Adapters name it for their
/// runtime, e.g. `netstack_tokio::StackBuilder`.
///
/// `StackBuilder::default()` suits a phone or desktop VPN (see [`Config`] for every setting,
/// its default and its memory cost).
pub struct StackBuilder<F: Flavor, R: Io> {
    config: Config,
    _types: PhantomData<fn() -> (F, R)>,
}

impl<F: Flavor, R: Io> StackBuilder<F, R> {
    /// A builder for a stack with `config`. A `random_seed` left unset is taken from the
    /// runtime when the stack is built.
    pub fn new(config: Config) -> Self {
        StackBuilder {
            config,
            _types: PhantomData,
        }
    }

    /// The configuration.
    pub fn config(&self) -> &Config {
        &self.config
    }

    /// Builds the stack. Spawn the runner (a `Send` future in a `Send` flavour), wire the
    /// packet port to a device, and accept connections from the listener.
    pub fn build(self) -> (PortOf<F, R>, RunnerOf<F, R>, ListenerOf<F, R>) {
        let stack = self.stack();
        let timer = R::timer(stack.clock());
        (
            PacketPort::new(stack.clone()),
            Runner::new(stack.clone(), timer),
            TcpListener::new(stack),
        )
    }

    /// The stack itself, behind its flavour's pointer.
    fn stack(self) -> PtrOf<F, R> {
        let mut config = self.config;
        if config.random_seed.is_none() {
            config.random_seed = Some(R::random_seed());
        }
        F::share(Stack::new(config, R::clock()))
    }

    /// Builds the stack with one runner per runner group
    /// ([`Config::tcp_runners`](crate::Config::tcp_runners)), for a multi-thread executor to
    /// serve the groups in parallel.
    pub fn build_runners(self) -> (PortOf<F, R>, RunnersOf<F, R>, ListenerOf<F, R>) {
        let stack = self.stack();
        let runners = (0..stack.runner_groups())
            .map(|g| Runner::for_group(stack.clone(), g, R::timer(stack.clock())))
            .collect();
        (
            PacketPort::new(stack.clone()),
            runners,
            TcpListener::new(stack),
        )
    }

    /// Builds the stack and spawns its runners with the runtime (one per runner group).
    pub fn run(self) -> (PortOf<F, R>, ListenerOf<F, R>)
    where
        R: Spawn<F>,
    {
        let (port, runners, listener) = self.build_runners();
        for runner in runners {
            R::spawn(runner);
        }
        (port, listener)
    }
}

impl<F: Flavor, R: Io> Default for StackBuilder<F, R> {
    fn default() -> Self {
        Self::new(Config::default())
    }
}

impl<F: Flavor, R: Io> Clone for StackBuilder<F, R> {
    fn clone(&self) -> Self {
        Self::new(self.config.clone())
    }
}

impl<F: Flavor, R: Io> core::fmt::Debug for StackBuilder<F, R> {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("StackBuilder")
            .field("config", &self.config)
            .finish()
    }
}
