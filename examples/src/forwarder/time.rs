//! Deadlines over any [`Executor`]'s timer.

use std::future::{poll_fn, Future};
use std::io;
use std::net::SocketAddr;
use std::pin::pin;
use std::task::Poll;
use std::time::Instant;

use super::executor::Executor;

/// Runs `f` until `deadline`: its output, or `None` if the deadline came first.
pub async fn within<E: Executor, F: Future>(deadline: Instant, f: F) -> Option<F::Output> {
    let mut f = pin!(f);
    let mut timer = E::sleep_until(deadline);
    poll_fn(|cx| {
        if let Poll::Ready(out) = f.as_mut().poll(cx) {
            return Poll::Ready(Some(out));
        }
        std::pin::Pin::new(&mut timer).poll(cx).map(|_| None)
    })
    .await
}

/// Connects a kernel TCP socket to `to`, giving up at `deadline` (`TimedOut`).
///
/// # Errors
/// The connect error, or `TimedOut`.
pub async fn connect_within<E: Executor>(
    to: SocketAddr,
    deadline: Instant,
) -> io::Result<E::TcpStream> {
    within::<E, _>(deadline, E::connect(to))
        .await
        .unwrap_or_else(|| Err(io::ErrorKind::TimedOut.into()))
}
