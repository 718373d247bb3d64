//! What an executor supplies, in the style of quinn's `runtime` module: a clock, a timer, a
//! random seed, and (for [`StackBuilder::run`](crate::StackBuilder::run)) a way to spawn the
//! runner. An adapter crate implements these for one ecosystem (tokio, async-io); everything
//! else — listener, streams, runner decisions, builder, flavours — is the core's.

use crate::flavor::Flavor;
use crate::ptr::StackPtr;
use crate::runner::{Runner, Timer};
use crate::tcp::stream::TcpStream;
use crate::time::Clock;

/// An executor's part of a stack: its time.
pub trait Runtime: 'static {
    /// The stack's clock.
    type Clock: Clock + Clone + 'static;
    /// The runner's timer.
    type Timer: Timer;

    /// A new clock (its zero is now).
    fn clock() -> Self::Clock;
    /// A new, disarmed timer for stack instants of `clock`.
    fn timer(clock: &Self::Clock) -> Self::Timer;
    /// A seed for initial sequence numbers, different on every call and every run
    /// ([`std_random_seed`] where `std` is available).
    fn random_seed() -> u64;
}

/// An ecosystem's I/O types, which the handles a [`StackBuilder`](crate::StackBuilder) makes
/// are written in.
pub trait Io: Runtime {
    /// The error type of the packet sink's and the listener's `Result`s (never produced;
    /// `std::io::Error` for std ecosystems, so that `stream.forward(sink)` and `?` work).
    type Error: 'static;
    /// What the listener yields: the core's [`TcpStream`] in the ecosystem's I/O traits.
    type Stream<P: StackPtr<Clock = Self::Clock>>: From<TcpStream<P>>;
}

/// A seed from the standard library's per-process random keys and the time of day.
#[cfg(feature = "std")]
pub fn std_random_seed() -> u64 {
    use core::hash::BuildHasher;
    std::collections::hash_map::RandomState::new().hash_one(std::time::SystemTime::now())
}

/// A runtime that can spawn the runner of a stack of flavour `F` by itself (for
/// [`StackBuilder::run`](crate::StackBuilder::run)).
pub trait Spawn<F: Flavor>: Runtime {
    /// Spawns `runner` to completion, detached.
    fn spawn(runner: Runner<F::Ptr<Self::Clock>, Self::Timer>);
}
