//! A netstack under test, wired to a TUN device: the stack side of every kernel-peer test.
//!
//! [`Fixture::start`] builds a tokio-flavour stack, spawns its runner wrapped in a poll counter
//! (to prove an idle stack is not woken) and connects it to the TUN device, optionally through
//! a *tap* that sees every packet going into the stack and decides what the stack gets (to
//! duplicate SYNs, inject malformed packets, and so on).

use std::future::Future;
use std::net::{Ipv4Addr, Ipv6Addr};
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use futures::{SinkExt, StreamExt};
use netstack_tokio::{PacketPort, PacketSink, Runner, StackBuilder, Stats, TcpListener};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use crate::Tun;

/// The stack's IPv4 address used by tests (any address routed into the TUN would do).
pub const STACK_V4: Ipv4Addr = Ipv4Addr::new(198, 18, 0, 2);
/// The stack's IPv6 address used by tests.
pub const STACK_V6: Ipv6Addr = Ipv6Addr::new(0xfd00, 0, 0, 0, 0, 0, 0, 2);

/// Decides what the stack receives for each packet read from the TUN device.
pub type Tap = Box<dyn FnMut(Vec<u8>, &PacketSink) -> Vec<Vec<u8>> + Send>;

/// Decides what the TUN device receives for each packet the stack emits (the packets it
/// returns are written at once; it may write others later itself).
pub type OutTap = Box<dyn FnMut(Vec<u8>, &Arc<Tun>) -> Vec<Vec<u8>> + Send>;

/// A running stack wired to a TUN device.
pub struct Fixture {
    /// The packet side (clone it to inject packets or read counters).
    pub stack: PacketPort,
    /// Accepts the stack's connections.
    pub listener: TcpListener,
    /// How many times the runner future has been polled.
    pub runner_polls: Arc<AtomicU64>,
}

impl Fixture {
    /// Starts a stack from `builder` and wires it to `tun` directly.
    pub fn start(tun: Arc<Tun>, builder: StackBuilder) -> Fixture {
        Self::start_with_tap(tun, builder, Box::new(|p, _| vec![p]))
    }

    /// Starts a stack whose inbound packets pass through `tap`.
    pub fn start_with_tap(tun: Arc<Tun>, builder: StackBuilder, tap: Tap) -> Fixture {
        Self::start_with_taps(tun, builder, tap, Box::new(|p, _| vec![p]))
    }

    /// Starts a stack whose inbound packets pass through `tap` and whose outbound packets pass
    /// through `out_tap`.
    pub fn start_with_taps(
        tun: Arc<Tun>,
        builder: StackBuilder,
        mut tap: Tap,
        mut out_tap: OutTap,
    ) -> Fixture {
        // One runner task per runner group (one unless the test sets `tcp_runners`).
        let (stack, runners, listener) = builder.build_runners();
        let runner_polls = Arc::new(AtomicU64::new(0));
        for runner in runners {
            tokio::spawn(CountingRunner {
                runner,
                polls: runner_polls.clone(),
            });
        }
        let (mut sink, mut stream) = stack.clone().split();
        let injector = sink.clone();
        let reader = tun.clone();
        tokio::spawn(async move {
            let mut buf = vec![0u8; reader.mtu() as usize + 64];
            loop {
                let Ok(n) = reader.recv(&mut buf).await else {
                    return;
                };
                for packet in tap(buf[..n].to_vec(), &injector) {
                    if sink.send(packet).await.is_err() {
                        return;
                    }
                }
            }
        });
        tokio::spawn(async move {
            while let Some(packet) = stream.next().await {
                for packet in out_tap(packet, &tun) {
                    // The kernel refuses some packets (e.g. to addresses it cannot route): report
                    // them (a test that then stalls shows why) and go on.
                    if let Err(e) = tun.send(&packet).await {
                        eprintln!("TUN write of a {}-byte packet failed: {e}", packet.len());
                    }
                }
            }
        });
        Fixture {
            stack,
            listener,
            runner_polls,
        }
    }

    /// The stack's counters.
    pub fn stats(&self) -> Stats {
        self.stack.stats()
    }
}

/// Waits (up to `limit`) until `cond` holds for the stack's counters; returns the last snapshot.
pub async fn wait_for(stack: &PacketPort, limit: Duration, cond: impl Fn(&Stats) -> bool) -> Stats {
    let deadline = tokio::time::Instant::now() + limit;
    loop {
        let s = stack.stats();
        if cond(&s) || tokio::time::Instant::now() >= deadline {
            return s;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// The stack's runner, counting its polls.
struct CountingRunner {
    runner: Runner,
    polls: Arc<AtomicU64>,
}

impl Future for CountingRunner {
    type Output = ();

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        self.polls.fetch_add(1, Ordering::Relaxed);
        Pin::new(&mut self.runner).poll(cx)
    }
}

/// Spawns an echo server on `listener`: every connection gets its bytes back, and a FIN once
/// the peer's FIN arrived.
pub fn spawn_echo_server(listener: TcpListener) {
    spawn_echo_server_with_buffer(listener, 64 * 1024);
}

/// [`spawn_echo_server`] with a copy buffer of `buffer` bytes per connection (small for
/// tests that measure memory: the buffer is the application's, not the stack's).
pub fn spawn_echo_server_with_buffer(listener: TcpListener, buffer: usize) {
    tokio::spawn(async move {
        while let Ok((stream, _)) = listener.accept().await {
            tokio::spawn(async move {
                let (mut r, mut w) = stream.into_split();
                let mut buf = vec![0u8; buffer];
                loop {
                    match r.read(&mut buf).await {
                        Ok(0) | Err(_) => break,
                        Ok(n) => {
                            if w.write_all(&buf[..n]).await.is_err() {
                                return;
                            }
                        }
                    }
                }
                let _ = w.shutdown().await;
            });
        }
    });
}

/// Asserts two byte strings are equal without printing megabytes: reports the first difference.
#[track_caller]
pub fn assert_same_bytes(got: &[u8], expected: &[u8], what: &str) {
    if got != expected {
        let first = got
            .iter()
            .zip(expected)
            .position(|(a, b)| a != b)
            .unwrap_or(got.len().min(expected.len()));
        panic!(
            "{what}: got {} bytes, expected {}; first difference at byte {first}",
            got.len(),
            expected.len()
        );
    }
}
