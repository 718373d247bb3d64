//! The tokio runtime of the core: its clock (tokio's monotonic time, so paused test time works
//! too), its timer (one `tokio::time::Sleep`, reset in place), a random seed, and spawning the
//! runner with `tokio::spawn` or `spawn_local`.

use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};

use netstack_core::time::{offset_of, since_start};
use netstack_core::{Clock, Instant, LocalFlavor, RunnerOf, SendFlavor, Spawn, StackPtr, Timer};

/// The tokio runtime marker: names the core's generic types for tokio (see the aliases at the
/// crate root and in [`local`](crate::local)).
pub enum Tokio {}

impl netstack_core::Runtime for Tokio {
    type Clock = TokioClock;
    type Timer = TokioTimer;

    fn clock() -> TokioClock {
        TokioClock {
            start: tokio::time::Instant::now(),
        }
    }

    fn timer(clock: &TokioClock) -> TokioTimer {
        TokioTimer {
            sleep: Box::pin(tokio::time::sleep_until(far_future())),
            start: clock.start,
        }
    }

    fn random_seed() -> u64 {
        netstack_core::std_random_seed()
    }
}

/// tokio streams (`AsyncRead`/`AsyncWrite`), and `io::Result`s.
impl netstack_core::Io for Tokio {
    type Error = std::io::Error;
    type Stream<P: StackPtr<Clock = TokioClock>> = crate::generic::TcpStream<P>;
}

/// Spawns the `Send` runner on the current multi-thread or current-thread runtime.
///
/// # Panics
/// Outside a tokio runtime (as `tokio::spawn` does).
impl Spawn<SendFlavor> for Tokio {
    fn spawn(runner: RunnerOf<SendFlavor, Tokio>) {
        tokio::spawn(runner);
    }
}

/// Spawns the local runner on the current `LocalSet`.
///
/// # Panics
/// Outside a `LocalSet` (as `tokio::task::spawn_local` does).
impl Spawn<LocalFlavor> for Tokio {
    fn spawn(runner: RunnerOf<LocalFlavor, Tokio>) {
        tokio::task::spawn_local(runner);
    }
}

/// Time since the stack was built, read from `tokio::time::Instant`.
#[derive(Debug, Clone, Copy)]
pub struct TokioClock {
    start: tokio::time::Instant,
}

impl Clock for TokioClock {
    fn now(&self) -> Instant {
        since_start(self.start.elapsed())
    }
}

/// The runner's timer: one `tokio::time::Sleep`, reset in place (no allocation per deadline).
#[derive(Debug)]
pub struct TokioTimer {
    sleep: Pin<Box<tokio::time::Sleep>>,
    start: tokio::time::Instant,
}

/// Where a disarmed timer waits: far enough never to fire.
fn far_future() -> tokio::time::Instant {
    tokio::time::Instant::now() + std::time::Duration::from_secs(86_400 * 365)
}

impl Timer for TokioTimer {
    fn set(&mut self, at: Instant) {
        self.sleep.as_mut().reset(self.start + offset_of(at));
    }

    fn clear(&mut self) {
        self.sleep.as_mut().reset(far_future());
    }

    fn poll_fired(&mut self, cx: &mut Context<'_>) -> Poll<()> {
        self.sleep.as_mut().poll(cx)
    }
}
