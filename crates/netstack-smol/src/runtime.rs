//! The async-io runtime of the core: `std::time::Instant` as the clock (the time base of
//! `async_io::Timer`), one `async_io::Timer` re-armed with `set_at` and dropped to disarm it,
//! and — for the `Send` flavour — a runner thread of its own.

use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};

use netstack_core::time::{offset_of, since_start};
use netstack_core::{Clock, Instant, RunnerOf, SendFlavor, Spawn, StackPtr, Timer};

/// The async-io runtime marker: names the core's generic types for smol, async-std and any
/// executor over async-io (see the aliases at the crate root and in [`local`](crate::local)).
pub enum AsyncIo {}

/// futures-io streams and `io::Result`s.
impl netstack_core::Io for AsyncIo {
    type Stream<P: StackPtr<Clock = StdClock>> = crate::generic::TcpStream<P>;
    type Error = std::io::Error;
}

impl netstack_core::Runtime for AsyncIo {
    type Clock = StdClock;
    type Timer = AsyncIoTimer;

    fn clock() -> StdClock {
        StdClock(std::time::Instant::now())
    }

    fn timer(clock: &StdClock) -> AsyncIoTimer {
        AsyncIoTimer {
            timer: async_io::Timer::never(),
            zero: clock.0,
        }
    }

    fn random_seed() -> u64 {
        netstack_core::std_random_seed()
    }
}

/// `run()` for the `Send` flavour: async-io has no global executor, so the runner gets a
/// thread of its own (`netstack-runner`) that blocks on it with `async_io::block_on` and ends
/// with it. The local flavour has no `run()`: spawn its runner on your `LocalExecutor`.
///
/// # Panics
/// If the operating system cannot start a thread.
impl Spawn<SendFlavor> for AsyncIo {
    fn spawn(runner: RunnerOf<SendFlavor, AsyncIo>) {
        std::thread::Builder::new()
            .name("netstack-runner".into())
            .spawn(move || async_io::block_on(runner))
            .expect("cannot start the netstack runner thread");
    }
}

/// Time since the stack was built, read from `std::time::Instant`.
#[derive(Debug, Clone, Copy)]
pub struct StdClock(std::time::Instant);

impl Clock for StdClock {
    fn now(&self) -> Instant {
        since_start(self.0.elapsed())
    }
}

/// The runner's timer: one `async_io::Timer`, armed with `set_at`, replaced by a never-firing
/// one to disarm it.
#[derive(Debug)]
pub struct AsyncIoTimer {
    timer: async_io::Timer,
    zero: std::time::Instant,
}

impl Timer for AsyncIoTimer {
    fn set(&mut self, at: Instant) {
        self.timer.set_at(self.zero + offset_of(at));
    }

    fn clear(&mut self) {
        self.timer = async_io::Timer::never();
    }

    fn poll_fired(&mut self, cx: &mut Context<'_>) -> Poll<()> {
        Pin::new(&mut self.timer).poll(cx).map(drop)
    }
}
