//! How each TCP connection reaches its destination: **dial first** (the default) or accept
//! first.
//!
//! Dial first: the stack hands over each new connection at SYN time (a
//! [`ConnectionRequest`]); the forwarder dials the destination and answers the client as the
//! destination did — accepts (SYN-ACK, then relays) once the dial connected, refuses with RST
//! if it was refused (the client's `connect()` fails with `ECONNREFUSED`), with an ICMP
//! network unreachable if the network was (`ENETUNREACH`), and with an ICMP host unreachable
//! for everything else, a dial timeout included (`EHOSTUNREACH`: what a router says when the
//! host does not answer its neighbour discovery; the kernel's own connect would wait about two
//! minutes for `ETIMEDOUT`, which no ICMP error can carry).
//!
//! Accept first (`--accept-first`, and connections made from SYN cookies, which arrive
//! established): the handshake is complete before the dial; a failed dial resets the stream.
//!
//! Either way a dial needs a permit of the [`DialLimiter`], and gets `dial_timeout` from the
//! moment the forwarder saw the connection, the wait for a permit included. Beyond the
//! limiter's bounds a connection *waits* rather than being refused: a refusal would tell the
//! client that the destination refused it, which it did not, and a waiting request costs
//! little (it holds its SYN, no buffers, and counts against the stack's `syn_backlog`, past
//! which new SYNs get SYN cookies); the client retransmits its SYN meanwhile, which makes no
//! new request. What waits is bounded by the stack: requests by `syn_backlog`, established
//! connections by `max_connections`.

use std::future::Future;
use std::io;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use futures::future::Either;
use futures::FutureExt;
use netstack_core::{ConnectionRequest, Refusal, StackPtr, TcpStream, Unreachable};

use super::executor::{Executor, KernelStream};
use super::limiter::DialLimiter;
use super::relay::relay;
use super::time::{connect_within, within};
use crate::forward::Targets;

/// A connection request of the forwarder's listener (core streams, `io::Error`s).
pub type Request<P> = ConnectionRequest<P, TcpStream<P>, io::Error>;

/// Counters of the dials.
#[derive(Debug, Default)]
pub struct DialStats {
    /// Dials that connected.
    pub connected: AtomicU64,
    /// Dials the destination refused (the client got RST, or its stream was reset).
    pub refused: AtomicU64,
    /// Dials that found the destination's network or host unreachable.
    pub unreachable: AtomicU64,
    /// Dials that did not connect within the dial timeout (waiting for a permit included).
    pub timed_out: AtomicU64,
    /// Dial-first connections whose handshake with the client then failed (the client went
    /// away, or never existed: a spoofed SYN).
    pub handshake_failed: AtomicU64,
    /// Of the unreachable ones: dials that failed with an error other than a refusal, a
    /// timeout or an unreachable network or host (reported on stderr at powers of two).
    pub unexpected: AtomicU64,
}

impl std::fmt::Display for DialStats {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let n = |c: &AtomicU64| c.load(Ordering::Relaxed);
        write!(
            f,
            "dials: connected {}, refused {}, unreachable {} (other errors {}), timed out {}; \
             handshakes failed after the dial {}",
            n(&self.connected),
            n(&self.refused),
            n(&self.unreachable),
            n(&self.unexpected),
            n(&self.timed_out),
            n(&self.handshake_failed)
        )
    }
}

/// What every connection task shares: where to dial, for how long, and the permits.
#[derive(Debug)]
pub struct Dialer {
    /// Where each destination is relayed to.
    pub targets: Targets,
    /// How long a connection may take to reach its destination, from the moment the forwarder
    /// sees it.
    pub timeout: Duration,
    /// The permits.
    pub limiter: Arc<DialLimiter>,
    /// Counters.
    pub stats: DialStats,
}

impl Dialer {
    /// Dials the target of `destination` within the timeout.
    ///
    /// # Errors
    /// The connect error; `TimedOut` if no permit or no connection came in time.
    async fn dial<E: Executor>(&self, destination: SocketAddr) -> io::Result<E::TcpStream> {
        let deadline = Instant::now() + self.timeout;
        let target = self.targets.target(destination);
        let result = match within::<E, _>(deadline, self.limiter.acquire(target.ip())).await {
            None => Err(io::ErrorKind::TimedOut.into()),
            Some(_permit) => connect_within::<E>(target, deadline).await,
        };
        let counter = match &result {
            Ok(_) => &self.stats.connected,
            Err(e) => match refusal_for(e) {
                Refusal::Reset => &self.stats.refused,
                _ if e.kind() == io::ErrorKind::TimedOut => &self.stats.timed_out,
                _ => {
                    self.report_unexpected(target, e);
                    &self.stats.unreachable
                }
            },
        };
        counter.fetch_add(1, Ordering::Relaxed);
        result
    }

    /// Reports on stderr a dial error that no destination gives by itself (anything but a
    /// refusal, a timeout or an unreachable network or host), at powers of two: the client is
    /// told its host is unreachable, and this says why.
    fn report_unexpected(&self, target: SocketAddr, e: &io::Error) {
        let expected = matches!(
            e.kind(),
            io::ErrorKind::HostUnreachable | io::ErrorKind::NetworkUnreachable
        );
        if expected {
            return;
        }
        let n = self.stats.unexpected.fetch_add(1, Ordering::Relaxed) + 1;
        if n.is_power_of_two() {
            eprintln!("dial {target}: {e} ({n} such dial errors so far)");
        }
    }
}

/// The answer to a client whose dial failed with `e`.
pub fn refusal_for(e: &io::Error) -> Refusal {
    match e.kind() {
        io::ErrorKind::ConnectionRefused => Refusal::Reset,
        io::ErrorKind::NetworkUnreachable => Refusal::Unreachable(Unreachable::Network),
        _ => Refusal::Unreachable(Unreachable::Host),
    }
}

/// Both ends of a connection, connected: the stack's stream, the upstream stream and the
/// original destination.
type Connected<P, K> = (TcpStream<P>, K, SocketAddr);

/// Dial first: dials `request`'s destination, then accepts and relays, or refuses as the
/// destination did.
///
/// The handshake (the dial's permit, timers and connect; the accept) runs boxed, and the relay
/// after it, in turn: a connection's task holds the relay's state only, not the handshake's
/// beside it, for its whole life (nested `async fn`s would keep both).
pub fn dial_first<E: Executor>(
    request: Request<E::Ptr>,
    dialer: Arc<Dialer>,
) -> impl Future<Output = ()> {
    Box::pin(dial_then_accept::<E>(request, dialer.clone()))
        .then(move |connected| relay_connected(connected, dialer))
}

/// The handshake of [`dial_first`]: both ends connected, or `None` (the client was refused,
/// or its handshake failed).
async fn dial_then_accept<E: Executor>(
    request: Request<E::Ptr>,
    dialer: Arc<Dialer>,
) -> Option<Connected<E::Ptr, E::TcpStream>> {
    let destination = request.local_addr();
    let upstream = match dialer.dial::<E>(destination).await {
        Ok(upstream) => upstream,
        Err(e) => {
            // A full egress queue drops the answer (counted by the stack); the client's
            // retransmitted SYN then makes a new request.
            let _ = request.refuse(refusal_for(&e));
            return None;
        }
    };
    match request.accept().await {
        Ok(stream) => Some((stream, upstream, destination)),
        // Dropping `upstream` closes the dialed connection.
        Err(_) => {
            dialer
                .stats
                .handshake_failed
                .fetch_add(1, Ordering::Relaxed);
            None
        }
    }
}

/// Accept first: `stream` is established; dials its destination and relays, or resets it
/// (the dial boxed, as in [`dial_first`]).
pub fn accept_first<E: Executor>(
    stream: TcpStream<E::Ptr>,
    dialer: Arc<Dialer>,
) -> impl Future<Output = ()> {
    Box::pin(dial_for::<E>(stream, dialer.clone()))
        .then(move |connected| relay_connected(connected, dialer))
}

/// The dial of [`accept_first`]: both ends connected, or `None` (the stream was reset, as the
/// real server would have refused it).
async fn dial_for<E: Executor>(
    stream: TcpStream<E::Ptr>,
    dialer: Arc<Dialer>,
) -> Option<Connected<E::Ptr, E::TcpStream>> {
    let destination = stream.local_addr().ok()?;
    match dialer.dial::<E>(destination).await {
        Ok(upstream) => Some((stream, upstream, destination)),
        Err(_) => {
            stream.abort();
            None
        }
    }
}

/// Relays a connected pair, reporting an I/O error on stderr. (Combinators, not an `async fn`:
/// that would store the pair twice, as its argument and as the relay's.)
fn relay_connected<P: StackPtr, K: KernelStream>(
    connected: Option<Connected<P, K>>,
    dialer: Arc<Dialer>,
) -> impl Future<Output = ()> {
    let Some((stream, upstream, destination)) = connected else {
        return Either::Left(std::future::ready(()));
    };
    Either::Right(relay(stream, upstream).map(move |relayed| {
        if let Err(e) = relayed {
            eprintln!("relay to {}: {e}", dialer.targets.target(destination));
        }
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_dial_error_maps_to_the_errno_a_kernel_client_would_get() {
        let kind = |k: io::ErrorKind| refusal_for(&io::Error::from(k));
        assert_eq!(kind(io::ErrorKind::ConnectionRefused), Refusal::Reset);
        assert_eq!(
            kind(io::ErrorKind::NetworkUnreachable),
            Refusal::Unreachable(Unreachable::Network)
        );
        for k in [
            io::ErrorKind::HostUnreachable,
            io::ErrorKind::TimedOut,
            io::ErrorKind::PermissionDenied,
        ] {
            assert_eq!(kind(k), Refusal::Unreachable(Unreachable::Host), "{k:?}");
        }
        // From the raw errno too, as connect() reports it.
        assert_eq!(
            refusal_for(&io::Error::from_raw_os_error(libc::ENETUNREACH)),
            Refusal::Unreachable(Unreachable::Network)
        );
    }
}
