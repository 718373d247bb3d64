//! The kernel-peer TCP tests, once per flavour of the stack: tokio multi-thread, tokio
//! current-thread with a `LocalSet`, smol with a `Send` executor on two threads, smol with a
//! `LocalExecutor` (see `netstack_tests::flavors`).
//!
//! Each body is written once; [`matrix!`] expands it into a module with one `#[test]` per
//! flavour (`small_echo_v4::smol_local`, ...), each importing its flavour's prelude, so the
//! same text is type-checked against `Send` and non-`Send` types and executors.

use std::io::ErrorKind;
use std::net::SocketAddr;
use std::sync::atomic::Ordering;
use std::time::Duration;

use futures::future::join_all;
use netstack_tests::fixture::{assert_same_bytes, STACK_V4, STACK_V6};
use netstack_tests::{pattern, TestNet};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream as KernelStream;

/// Upper bound for any single test body: a stall fails the test instead of hanging CI.
const LIMIT: Duration = Duration::from_secs(120);

/// Bytes each way in the bulk tests (the 64 MiB runs are in `tcp.rs`, for one flavour).
const BULK: usize = 16 << 20;

fn v4(port: u16) -> SocketAddr {
    SocketAddr::new(STACK_V4.into(), port)
}

fn v6(port: u16) -> SocketAddr {
    SocketAddr::new(STACK_V6.into(), port)
}

fn net(mtu: u32) -> TestNet {
    TestNet {
        mtu,
        ..TestNet::default()
    }
}

/// Connects a kernel socket to `addr`, sends `data` and half-closes while reading; returns
/// everything read until the peer's FIN.
async fn kernel_exchange(addr: SocketAddr, data: &[u8]) -> Vec<u8> {
    let stream = KernelStream::connect(addr)
        .await
        .expect("connect through the stack");
    let (mut r, mut w) = stream.into_split();
    let write = async {
        w.write_all(data).await.expect("kernel write");
        w.shutdown().await.expect("kernel shutdown");
    };
    let read = async {
        let mut got = Vec::with_capacity(data.len());
        r.read_to_end(&mut got).await.expect("kernel read");
        got
    };
    futures::join!(write, read).1
}

/// Sends `data` from a kernel socket to an echo server in the stack and checks every byte
/// comes back.
async fn kernel_echo(addr: SocketAddr, data: Vec<u8>) {
    let got = kernel_exchange(addr, &data).await;
    assert_same_bytes(&got, &data, "echo");
}

/// Expands each body into `mod $name { #[test] fn <flavour>() }` for every flavour.
macro_rules! matrix {
    ($(
        $(#[$meta:meta])*
        fn $name:ident($net:expr, |$tun:ident| $body:block)
    )*) => {$(
        $(#[$meta])*
        mod $name {
            #[allow(unused_imports)]
            use super::*;
            matrix!(@flavour tokio_multi_thread, $net, $tun, $body);
            matrix!(@flavour tokio_local, $net, $tun, $body);
            matrix!(@flavour smol_send, $net, $tun, $body);
            matrix!(@flavour smol_local, $net, $tun, $body);
        }
    )*};
    (@flavour $flavour:ident, $net:expr, $tun:ident, $body:block) => {
        #[test]
        fn $flavour() {
            #[allow(unused_imports)]
            use netstack_tests::flavors::$flavour::*;
            run($net, move |$tun| async move $body);
        }
    };
}

/// The stack's buffers for `mtu`, as `tun_forward` sizes them.
fn buffer_for(mtu: u32) -> usize {
    (16 * mtu as usize).max(256 * 1024)
}

/// The body of the bulk tests: [`BULK`] bytes each way at the same time, byte-exact, with the
/// stack's buffers sized for the MTU. A macro, as bodies are expanded per flavour.
macro_rules! bulk_body {
    ($tun:ident, $mtu:expr) => {{
        let mtu: u32 = $mtu;
        let fx = Fixture::start(
            $tun,
            StackBuilder::new(
                netstack_tokio::Config::default()
                    .mtu(mtu as usize)
                    .tcp_rx_buffer(buffer_for(mtu))
                    .tcp_tx_buffer(buffer_for(mtu)),
            ),
        );
        let up = pattern(1, BULK);
        let down = pattern(2, BULK);
        let listener = fx.listener;
        let to_send = down.clone();
        let server = spawn(async move {
            let (stream, _) = listener.accept().await.expect("accept");
            let (mut r, mut w) = stream.into_split();
            let writer = spawn(async move {
                w.write_all(&to_send).await.expect("stack write");
                w.shutdown().await.expect("stack shutdown");
                w
            });
            let mut got = Vec::with_capacity(BULK);
            r.read_to_end(&mut got).await.expect("stack read");
            let _w = writer.await;
            got
        });
        let (kernel_got, stack_got) = timeout(LIMIT, async {
            (kernel_exchange(v4(5001), &up).await, server.await)
        })
        .await
        .expect("bulk transfer timed out");
        assert_same_bytes(&kernel_got, &down, "stack → kernel");
        assert_same_bytes(&stack_got, &up, "kernel → stack");
    }};
}

matrix! {
    /// A few bytes echoed over IPv4.
    fn small_echo_v4(net(1500), |tun| {
        let fx = Fixture::start(tun, StackBuilder::default());
        spawn_echo_server(fx.listener);
        timeout(LIMIT, kernel_echo(v4(7), b"hello, stack".to_vec()))
            .await
            .expect("timed out");
        let stats = fx.stack.stats();
        assert_eq!(stats.tcp.accepted, 1);
        assert_eq!(stats.drops.malformed + stats.drops.bad_checksum, 0);
    })

    /// 1 MiB echoed over IPv6.
    fn echo_over_ipv6(net(1500), |tun| {
        let fx = Fixture::start(tun, StackBuilder::default());
        spawn_echo_server(fx.listener);
        timeout(LIMIT, kernel_echo(v6(443), pattern(6, 1 << 20)))
            .await
            .expect("timed out");
        assert_eq!(fx.stack.stats().tcp.accepted, 1);
    })

    /// 16 MiB each way at the same time at MTU 1500, byte-exact.
    fn bulk_both_directions_mtu_1500(net(1500), |tun| {
        bulk_body!(tun, 1500)
    })

    /// 16 MiB each way at the same time at MTU 65000, byte-exact.
    fn bulk_both_directions_mtu_65000(net(65000), |tun| {
        bulk_body!(tun, 65000)
    })

    /// 200 kernel connections at once, each echoing 32 KiB.
    fn two_hundred_concurrent_connections(net(1500), |tun| {
        let fx = Fixture::start(tun, StackBuilder::default());
        spawn_echo_server(fx.listener);
        let clients = (0..200u16)
            .map(|i| kernel_echo(v4(10_000 + i % 7), pattern(u64::from(i), 32 * 1024)));
        timeout(LIMIT, join_all(clients)).await.expect("timed out");
        let stats = fx.stack.stats();
        assert_eq!(stats.tcp.accepted, 200);
        assert_eq!(
            stats.tcp.refused_syn_backlog + stats.tcp.refused_connection_limit,
            0
        );
    })

    /// The kernel half-closes; the stack keeps writing 2 MiB after the kernel's FIN.
    fn half_close_from_kernel_keeps_stack_writing(net(1500), |tun| {
        let fx = Fixture::start(tun, StackBuilder::default());
        let listener = fx.listener;
        let server = spawn(async move {
            let (mut s, _) = listener.accept().await.unwrap();
            let mut request = Vec::new();
            s.read_to_end(&mut request).await.unwrap(); // ends at the kernel's FIN
            s.write_all(&pattern(9, 2 << 20)).await.unwrap();
            s.shutdown().await.unwrap();
            request
        });
        timeout(LIMIT, async {
            let reply = kernel_exchange(v4(80), b"request").await;
            assert_same_bytes(&reply, &pattern(9, 2 << 20), "reply after half-close");
            assert_eq!(server.await, b"request");
        })
        .await
        .expect("timed out");
    })

    /// The stack half-closes (and `shutdown` returns at once); the kernel keeps writing 1 MiB.
    fn half_close_from_stack_keeps_kernel_writing(net(1500), |tun| {
        let fx = Fixture::start(tun, StackBuilder::default());
        let listener = fx.listener;
        let server = spawn(async move {
            let (mut s, _) = listener.accept().await.unwrap();
            s.write_all(b"greeting").await.unwrap();
            // The half-close returns as soon as the FIN is queued, not when the connection ends.
            timeout(Duration::from_secs(1), s.shutdown())
                .await
                .expect("shutdown must not wait for the peer")
                .unwrap();
            let mut rest = Vec::new();
            s.read_to_end(&mut rest).await.unwrap();
            rest
        });
        timeout(LIMIT, async {
            let mut c = KernelStream::connect(v4(81)).await.unwrap();
            let mut greeting = Vec::new();
            c.read_to_end(&mut greeting).await.unwrap(); // ends at the stack's FIN
            assert_eq!(greeting, b"greeting");
            let late = pattern(3, 1 << 20);
            c.write_all(&late).await.unwrap();
            c.shutdown().await.unwrap();
            assert_same_bytes(&server.await, &late, "data after the stack's FIN");
        })
        .await
        .expect("timed out");
    })

    /// A kernel RST makes the stack's reads and writes fail with `ConnectionReset`, and the
    /// connection is reaped once dropped.
    fn peer_reset_is_reported_as_connection_reset(net(1500), |tun| {
        let fx = Fixture::start(tun, StackBuilder::default());
        let listener = fx.listener;
        timeout(LIMIT, async {
            let c = KernelStream::connect(v4(82)).await.unwrap();
            let (mut s, _) = listener.accept().await.unwrap();
            #[allow(deprecated)] // SO_LINGER 0 is exactly how to make the kernel send RST
            c.set_linger(Some(Duration::ZERO)).unwrap();
            drop(c);
            let mut buf = [0u8; 16];
            let err = s.read(&mut buf).await.expect_err("read after RST must fail");
            assert_eq!(err.kind(), ErrorKind::ConnectionReset);
            let err = s.write_all(b"x").await.expect_err("write after RST must fail");
            assert_eq!(err.kind(), ErrorKind::ConnectionReset);
        })
        .await
        .expect("timed out");
        let s = wait_for(&fx.stack, Duration::from_secs(5), |s| {
            s.tcp.open + s.tcp.closing == 0
        })
        .await;
        assert_eq!(s.tcp.open + s.tcp.closing, 0, "{s}");
    })

    /// After traffic, an idle stack's runner is not polled at all: no periodic tick.
    fn idle_stack_runner_is_not_woken(net(1500), |tun| {
        // Stop the kernel's IPv6 router solicitations on the link: they are traffic.
        let status = std::process::Command::new("sysctl")
            .args(["-qw", "net.ipv6.conf.tun0.router_solicitations=0"])
            .status()
            .expect("sysctl");
        assert!(status.success());
        let fx = Fixture::start(tun, StackBuilder::default());
        spawn_echo_server(fx.listener);
        timeout(LIMIT, kernel_echo(v4(7), b"some traffic first".to_vec()))
            .await
            .expect("timed out");
        let s = wait_for(&fx.stack, Duration::from_secs(5), |s| {
            s.tcp.open + s.tcp.closing == 0
        })
        .await;
        assert_eq!(s.tcp.open + s.tcp.closing, 0, "{s}");
        sleep(Duration::from_secs(1)).await;
        let polls = fx.runner_polls.load(Ordering::Relaxed);
        let packets = fx.stack.stats().packets_in;
        sleep(Duration::from_millis(2500)).await;
        let polls_after = fx.runner_polls.load(Ordering::Relaxed);
        let packets_after = fx.stack.stats().packets_in;
        assert_eq!(
            polls_after,
            polls,
            "runner woken {} times in 2.5 s of idleness ({} packets arrived)",
            polls_after - polls,
            packets_after - packets
        );
    })

    /// `abort` sends RST to the kernel and makes the stream unusable.
    fn local_abort_resets_the_peer(net(1500), |tun| {
        let fx = Fixture::start(tun, StackBuilder::default());
        let listener = fx.listener;
        timeout(LIMIT, async {
            let mut c = KernelStream::connect(v4(83)).await.unwrap();
            let (mut s, _) = listener.accept().await.unwrap();
            s.abort();
            let mut buf = [0u8; 16];
            let err = c.read(&mut buf).await.expect_err("kernel must see the RST");
            assert_eq!(err.kind(), ErrorKind::ConnectionReset);
            let err = s.read(&mut buf).await.expect_err("aborted stream is unusable");
            assert_eq!(err.kind(), ErrorKind::ConnectionAborted);
        })
        .await
        .expect("timed out");
    })

    /// The runner future completes once every handle of its stack (packet port, listener,
    /// sockets) is gone, as its docs say; the last one dropped wakes it. (It used to wait for
    /// a wake-up that never came.)
    fn runner_ends_once_every_handle_is_dropped(net(1500), |tun| {
        drop(tun);
        let (port, runner, listener) = StackBuilder::default().build();
        let udp = port.udp_socket().expect("the UDP socket");
        let runner = spawn(runner);
        drop(port);
        drop(listener);
        // The UDP socket still holds the stack: a datagram could still be sent.
        sleep(Duration::from_millis(100)).await;
        drop(udp);
        timeout(Duration::from_secs(5), runner)
            .await
            .expect("the runner ended after the last handle was dropped");
    })

    /// Two tasks waiting in `accept` on one listener both get a connection: the accept queue
    /// keeps every waiting task (it used to keep the last one only, so the other never woke).
    fn every_task_waiting_in_accept_gets_a_connection(net(1500), |tun| {
        let fx = Fixture::start(tun, StackBuilder::default());
        // One body for every flavour: in the local ones this `Arc` is just a shared pointer.
        #[allow(clippy::arc_with_non_send_sync)]
        let listener = std::sync::Arc::new(fx.listener);
        let waiters: Vec<_> = (0..2)
            .map(|_| {
                let listener = listener.clone();
                spawn(async move {
                    let (mut stream, _) = listener.accept().await.expect("accept");
                    stream.write_all(b"accepted").await.expect("write");
                    stream.shutdown().await.expect("shutdown");
                    let mut rest = Vec::new();
                    let _ = stream.read_to_end(&mut rest).await;
                })
            })
            .collect();
        // Both tasks register in `accept` before the first connection arrives.
        sleep(Duration::from_millis(200)).await;
        timeout(Duration::from_secs(20), async {
            for port in [7001, 7002] {
                let got = kernel_exchange(v4(port), b"").await;
                assert_eq!(got, b"accepted", "connection to port {port}");
            }
            join_all(waiters).await;
        })
        .await
        .expect("both waiting tasks got a connection");
    })

    /// Two tasks waiting in `recv` on one UDP socket both get a datagram.
    fn every_task_waiting_in_udp_recv_gets_a_datagram(net(1500), |tun| {
        let fx = Fixture::start(tun, StackBuilder::default());
        #[allow(clippy::arc_with_non_send_sync)] // as above
        let udp = std::sync::Arc::new(fx.stack.udp_socket().expect("the UDP socket"));
        let waiters: Vec<_> = (0..2)
            .map(|_| {
                let udp = udp.clone();
                spawn(async move { udp.recv().await.payload })
            })
            .collect();
        sleep(Duration::from_millis(200)).await;
        let kernel = tokio::net::UdpSocket::bind("0.0.0.0:0").await.expect("bind");
        for port in [5301u16, 5302] {
            kernel.send_to(&port.to_be_bytes(), v4(port)).await.expect("send");
        }
        let mut got = timeout(Duration::from_secs(20), join_all(waiters))
            .await
            .expect("both waiting tasks got a datagram");
        got.sort();
        assert_eq!(got, [5301u16.to_be_bytes().to_vec(), 5302u16.to_be_bytes().to_vec()]);
    })

    /// Connection requests on every flavour: one is accepted (and carries an echo), one is
    /// refused (the kernel's `connect()` fails with ECONNREFUSED).
    fn connection_requests_are_accepted_or_refused(net(1500), |tun| {
        let fx = Fixture::start(
            tun,
            StackBuilder::new(netstack_tokio::Config::default().connection_requests(true)),
        );
        let listener = fx.listener;
        let server = spawn(async move {
            for refuse in [false, true] {
                let request = match listener.incoming().await.expect("incoming") {
                    netstack_core::Incoming::Request(r) => r,
                    netstack_core::Incoming::Stream(..) => panic!("a stream without a request"),
                };
                if refuse {
                    request.refuse(netstack_core::Refusal::Reset).expect("refused");
                    continue;
                }
                let stream = request.accept().await.expect("accepted");
                let (mut r, mut w) = stream.into_split();
                let mut buf = vec![0u8; 64 * 1024];
                loop {
                    match r.read(&mut buf).await {
                        Ok(0) | Err(_) => break,
                        Ok(n) => w.write_all(&buf[..n]).await.expect("echo"),
                    }
                }
                w.shutdown().await.expect("shutdown");
            }
        });
        timeout(LIMIT, async {
            kernel_echo(v4(8001), pattern(8, 100_000)).await;
            let err = KernelStream::connect(v6(8002)).await.expect_err("refused");
            assert_eq!(err.kind(), ErrorKind::ConnectionRefused);
            server.await;
        })
        .await
        .expect("timed out");
    })

    /// Four connections echo 1 MiB each at once through a stack of two runner groups (one
    /// runner task serving both here; `tcp.rs` runs one task per group).
    fn concurrent_echoes_through_two_runner_groups(net(1500), |tun| {
        let fx = Fixture::start(
            tun,
            StackBuilder::new(netstack_tokio::Config::default().tcp_runners(2)),
        );
        spawn_echo_server(fx.listener);
        timeout(LIMIT, async {
            let echoes: Vec<_> = (0..4u16)
                .map(|i| kernel_echo(v4(9100 + i), pattern(u64::from(i), 1 << 20)))
                .collect();
            join_all(echoes).await;
        })
        .await
        .expect("timed out");
        assert_eq!(fx.stack.stats().tcp.accepted, 4);
    })
}
