//! TCP through the stack against the Linux kernel's TCP as the peer.
//!
//! Every test runs in its own network namespace with its own TUN device: kernel sockets connect
//! to addresses routed into the TUN, and the stack accepts them.

use std::io::ErrorKind;
use std::net::SocketAddr;
use std::process::Command;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use netstack_testkit::packets::{is_syn, tcp_syn};
use netstack_tests::fixture::{
    assert_same_bytes, spawn_echo_server, wait_for, Fixture, STACK_V4, STACK_V6,
};
use netstack_tests::{pattern, run_in_netns, TestNet, Tun};
use netstack_tokio::StackBuilder;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::time::timeout;

/// Upper bound for any single test body: a stall fails the test instead of hanging CI.
const LIMIT: Duration = Duration::from_secs(120);
/// How long the malformed-input test's transfer may take (it is small).
const SHORT_LIMIT: Duration = Duration::from_secs(30);

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

/// Sends `data` from a kernel socket to an echo server in the stack and checks every byte
/// comes back.
async fn kernel_echo(addr: SocketAddr, data: Vec<u8>) {
    let stream = TcpStream::connect(addr)
        .await
        .expect("connect through the stack");
    let (mut r, mut w) = stream.into_split();
    let sent = data.clone();
    let writer = tokio::spawn(async move {
        w.write_all(&sent).await.expect("kernel write");
        w.shutdown().await.expect("kernel shutdown");
    });
    let mut got = Vec::with_capacity(data.len());
    r.read_to_end(&mut got).await.expect("kernel read");
    writer.await.unwrap();
    assert_same_bytes(&got, &data, "echo");
}

#[test]
fn small_echo_v4() {
    run_in_netns(net(1500), 2, |tun| async move {
        let fx = Fixture::start(tun, StackBuilder::default());
        spawn_echo_server(fx.listener);
        timeout(LIMIT, kernel_echo(v4(7), b"hello, stack".to_vec()))
            .await
            .expect("timed out");
        let stats = fx.stack.stats();
        assert_eq!(stats.tcp.accepted, 1);
        assert_eq!(stats.drops.malformed + stats.drops.bad_checksum, 0);
    });
}

#[test]
fn echo_over_ipv6() {
    run_in_netns(net(1500), 2, |tun| async move {
        let fx = Fixture::start(tun, StackBuilder::default());
        spawn_echo_server(fx.listener);
        timeout(LIMIT, kernel_echo(v6(443), pattern(6, 1 << 20)))
            .await
            .expect("timed out");
        assert_eq!(fx.stack.stats().tcp.accepted, 1);
    });
}

/// 64 MiB each way at the same time, byte-exact, with the stack's buffers sized for the MTU.
fn bulk_both_directions(mtu: u32, len: usize) {
    run_in_netns(net(mtu), 2, move |tun| async move {
        let buffer = (16 * mtu as usize).max(256 * 1024);
        let fx = Fixture::start(
            tun,
            StackBuilder::new(
                netstack_tokio::Config::default()
                    .mtu(mtu as usize)
                    .tcp_rx_buffer(buffer)
                    .tcp_tx_buffer(buffer),
            ),
        );
        let up = pattern(1, len);
        let down = pattern(2, len);
        let listener = fx.listener;
        let to_send = down.clone();
        let server = tokio::spawn(async move {
            let (stream, _) = listener.accept().await.expect("accept");
            let (mut r, mut w) = stream.into_split();
            let writer = tokio::spawn(async move {
                w.write_all(&to_send).await.expect("stack write");
                w.shutdown().await.expect("stack shutdown");
                w
            });
            let mut got = Vec::with_capacity(len);
            r.read_to_end(&mut got).await.expect("stack read");
            let _w = writer.await.unwrap();
            got
        });
        let client = async {
            let stream = TcpStream::connect(v4(5001)).await.expect("connect");
            let (mut r, mut w) = stream.into_split();
            let sent = up.clone();
            let writer = tokio::spawn(async move {
                w.write_all(&sent).await.expect("kernel write");
                w.shutdown().await.expect("kernel shutdown");
            });
            let mut got = Vec::with_capacity(len);
            r.read_to_end(&mut got).await.expect("kernel read");
            writer.await.unwrap();
            got
        };
        let (kernel_got, stack_got) = timeout(LIMIT, async { (client.await, server.await) })
            .await
            .expect("bulk transfer timed out");
        assert_same_bytes(&kernel_got, &down, "stack → kernel");
        assert_same_bytes(&stack_got.unwrap(), &up, "kernel → stack");
    });
}

#[test]
fn bulk_64mib_both_directions_mtu_1500() {
    bulk_both_directions(1500, 64 << 20);
}

#[test]
fn bulk_64mib_both_directions_mtu_65000() {
    bulk_both_directions(65000, 64 << 20);
}

#[test]
fn two_hundred_concurrent_connections() {
    run_in_netns(net(1500), 2, |tun| async move {
        let fx = Fixture::start(tun, StackBuilder::default());
        spawn_echo_server(fx.listener);
        let clients: Vec<_> = (0..200u16)
            .map(|i| {
                tokio::spawn(kernel_echo(
                    v4(10_000 + i % 7),
                    pattern(u64::from(i), 32 * 1024),
                ))
            })
            .collect();
        timeout(LIMIT, async {
            for c in clients {
                c.await.expect("client task");
            }
        })
        .await
        .expect("timed out");
        let stats = fx.stack.stats();
        assert_eq!(stats.tcp.accepted, 200);
        assert_eq!(
            stats.tcp.refused_syn_backlog + stats.tcp.refused_connection_limit,
            0
        );
    });
}

#[test]
fn readable_waits_for_data_and_for_end_of_stream_without_reading() {
    run_in_netns(net(1500), 2, |tun| async move {
        let fx = Fixture::start(tun, StackBuilder::default());
        let listener = fx.listener;
        timeout(LIMIT, async {
            let mut c = TcpStream::connect(v4(80)).await.unwrap();
            let (s, _) = listener.accept().await.unwrap();
            // Nothing sent yet: not readable.
            assert!(
                timeout(Duration::from_millis(200), s.readable())
                    .await
                    .is_err(),
                "readable before any data"
            );
            c.write_all(b"ping").await.unwrap();
            s.readable().await.unwrap();
            // Readiness consumed nothing: the bytes are all still there, and stay readable.
            s.readable().await.unwrap();
            let (mut r, _w) = s.into_split();
            let mut buf = [0u8; 16];
            let n = r.read(&mut buf).await.unwrap();
            assert_eq!(&buf[..n], b"ping");
            assert!(
                timeout(Duration::from_millis(200), r.readable())
                    .await
                    .is_err(),
                "readable after the data was read"
            );
            // The kernel's FIN makes it readable again: the read reports end of stream.
            c.shutdown().await.unwrap();
            r.readable().await.unwrap();
            assert_eq!(r.read(&mut buf).await.unwrap(), 0);
        })
        .await
        .expect("timed out");
    });
}

#[test]
fn half_close_from_kernel_keeps_stack_writing() {
    run_in_netns(net(1500), 2, |tun| async move {
        let fx = Fixture::start(tun, StackBuilder::default());
        let listener = fx.listener;
        let server = tokio::spawn(async move {
            let (mut s, _) = listener.accept().await.unwrap();
            let mut request = Vec::new();
            s.read_to_end(&mut request).await.unwrap(); // ends at the kernel's FIN
                                                        // The kernel half-closed; our direction still works.
            let reply = pattern(9, 2 << 20);
            s.write_all(&reply).await.unwrap();
            s.shutdown().await.unwrap();
            request
        });
        timeout(LIMIT, async {
            let mut c = TcpStream::connect(v4(80)).await.unwrap();
            c.write_all(b"request").await.unwrap();
            c.shutdown().await.unwrap();
            let mut reply = Vec::new();
            c.read_to_end(&mut reply).await.unwrap();
            assert_same_bytes(&reply, &pattern(9, 2 << 20), "reply after half-close");
            assert_eq!(server.await.unwrap(), b"request");
        })
        .await
        .expect("timed out");
    });
}

#[test]
fn half_close_from_stack_keeps_kernel_writing() {
    run_in_netns(net(1500), 2, |tun| async move {
        let fx = Fixture::start(tun, StackBuilder::default());
        let listener = fx.listener;
        let server = tokio::spawn(async move {
            let (mut s, _) = listener.accept().await.unwrap();
            s.write_all(b"greeting").await.unwrap();
            // poll_shutdown returns as soon as the FIN is queued, not when the connection ends.
            timeout(Duration::from_secs(1), s.shutdown())
                .await
                .expect("shutdown must not wait for the peer")
                .unwrap();
            let mut rest = Vec::new();
            s.read_to_end(&mut rest).await.unwrap();
            rest
        });
        timeout(LIMIT, async {
            let mut c = TcpStream::connect(v4(81)).await.unwrap();
            let mut greeting = Vec::new();
            c.read_to_end(&mut greeting).await.unwrap(); // ends at the stack's FIN
            assert_eq!(greeting, b"greeting");
            let late = pattern(3, 1 << 20);
            c.write_all(&late).await.unwrap();
            c.shutdown().await.unwrap();
            assert_same_bytes(&server.await.unwrap(), &late, "data after the stack's FIN");
        })
        .await
        .expect("timed out");
    });
}

#[test]
fn peer_reset_is_reported_as_connection_reset() {
    run_in_netns(net(1500), 2, |tun| async move {
        let fx = Fixture::start(tun, StackBuilder::default());
        let listener = fx.listener;
        timeout(LIMIT, async {
            let c = TcpStream::connect(v4(82)).await.unwrap();
            let (mut s, _) = listener.accept().await.unwrap();
            #[allow(deprecated)] // SO_LINGER 0 is exactly how to make the kernel send RST
            c.set_linger(Some(Duration::ZERO)).unwrap();
            drop(c); // SO_LINGER 0: the kernel sends RST
            let mut buf = [0u8; 16];
            let err = s
                .read(&mut buf)
                .await
                .expect_err("read after RST must fail");
            assert_eq!(err.kind(), ErrorKind::ConnectionReset);
            let err = s
                .write_all(b"x")
                .await
                .expect_err("write after RST must fail");
            assert_eq!(err.kind(), ErrorKind::ConnectionReset);
        })
        .await
        .expect("timed out");
        // The reset connection is reaped once the application drops it.
        let s = wait_for(&fx.stack, Duration::from_secs(5), |s| {
            s.tcp.open + s.tcp.closing == 0
        })
        .await;
        assert_eq!(s.tcp.open + s.tcp.closing, 0, "{s}");
    });
}

#[test]
fn local_abort_resets_the_peer() {
    run_in_netns(net(1500), 2, |tun| async move {
        let fx = Fixture::start(tun, StackBuilder::default());
        let listener = fx.listener;
        timeout(LIMIT, async {
            let mut c = TcpStream::connect(v4(83)).await.unwrap();
            let (mut s, _) = listener.accept().await.unwrap();
            s.abort();
            let mut buf = [0u8; 16];
            let err = c.read(&mut buf).await.expect_err("kernel must see the RST");
            assert_eq!(err.kind(), ErrorKind::ConnectionReset);
            let err = s
                .read(&mut buf)
                .await
                .expect_err("aborted stream is unusable");
            assert_eq!(err.kind(), ErrorKind::ConnectionAborted);
        })
        .await
        .expect("timed out");
    });
}

#[test]
fn dropping_a_stream_with_unread_data_resets_the_peer() {
    run_in_netns(net(1500), 2, |tun| async move {
        let fx = Fixture::start(tun, StackBuilder::default());
        let listener = fx.listener;
        timeout(LIMIT, async {
            let mut c = TcpStream::connect(v4(84)).await.unwrap();
            let (s, _) = listener.accept().await.unwrap();
            c.write_all(b"never read").await.unwrap();
            tokio::time::sleep(Duration::from_millis(100)).await;
            drop(s);
            let mut buf = [0u8; 16];
            let err = c.read(&mut buf).await.expect_err("unread data means RST");
            assert_eq!(err.kind(), ErrorKind::ConnectionReset);
        })
        .await
        .expect("timed out");
    });
}

#[test]
fn retransmitted_syn_yields_one_stream() {
    run_in_netns(net(1500), 2, |tun| async move {
        // Every SYN from the kernel reaches the stack twice: at once, and again 200 ms later,
        // after the stack has answered the first (as a retransmission after a lost SYN-ACK).
        let tap = Box::new(|packet: Vec<u8>, sink: &netstack_tokio::PacketSink| {
            if is_syn(&packet) {
                let mut sink = sink.clone();
                let again = packet.clone();
                tokio::spawn(async move {
                    tokio::time::sleep(Duration::from_millis(200)).await;
                    use futures::SinkExt;
                    let _ = sink.send(again).await;
                });
                // And once more right away: two copies in the same batch.
                vec![packet.clone(), packet]
            } else {
                vec![packet]
            }
        });
        let fx = Fixture::start_with_tap(tun, StackBuilder::default(), tap);
        let listener = fx.listener;
        timeout(LIMIT, async {
            let mut c = TcpStream::connect(v4(85)).await.unwrap();
            let (mut s, _) = listener.accept().await.unwrap();
            tokio::time::sleep(Duration::from_millis(400)).await; // the late copy has arrived
            c.write_all(b"ping").await.unwrap();
            let mut buf = [0u8; 4];
            s.read_exact(&mut buf).await.unwrap();
            assert_eq!(&buf, b"ping");
            assert!(
                timeout(Duration::from_millis(500), listener.accept())
                    .await
                    .is_err(),
                "a duplicate SYN produced a second stream"
            );
        })
        .await
        .expect("timed out");
        let stats = fx.stack.stats();
        assert_eq!(stats.tcp.accepted, 1);
        assert!(stats.tcp.duplicate_syns >= 2, "{stats}");
    });
}

#[test]
fn connection_cap_refuses_excess_syns_with_rst() {
    run_in_netns(net(1500), 2, |tun| async move {
        let fx = Fixture::start(
            tun,
            StackBuilder::new(netstack_tokio::Config::default().max_connections(3)),
        );
        let listener = fx.listener;
        timeout(LIMIT, async {
            let mut held = Vec::new();
            for i in 0..3 {
                let c = TcpStream::connect(v4(90 + i)).await.unwrap();
                let (s, _) = listener.accept().await.unwrap();
                held.push((c, s));
            }
            let err = TcpStream::connect(v4(99))
                .await
                .expect_err("the fourth connection must be refused");
            assert_eq!(err.kind(), ErrorKind::ConnectionRefused);
            assert!(fx.stack.stats().tcp.refused_connection_limit >= 1);
            // Closing one (both sides) frees its slot.
            drop(held.pop());
            let s = wait_for(&fx.stack, Duration::from_secs(5), |s| {
                s.tcp.open + s.tcp.closing <= 2
            })
            .await;
            assert!(s.tcp.open + s.tcp.closing <= 2, "{s}");
            let mut c = TcpStream::connect(v4(99)).await.expect("a slot was freed");
            let (mut s, _) = listener.accept().await.unwrap();
            c.write_all(b"ok").await.unwrap();
            let mut buf = [0u8; 2];
            s.read_exact(&mut buf).await.unwrap();
        })
        .await
        .expect("timed out");
    });
}

#[test]
fn buffer_budget_refuses_syns_beyond_it_with_rst() {
    run_in_netns(net(1500), 2, |tun| async move {
        // Room for exactly three connections' buffers.
        let fx = Fixture::start(
            tun,
            StackBuilder::new(
                netstack_tokio::Config::default()
                    .tcp_rx_buffer(64 * 1024)
                    .tcp_tx_buffer(64 * 1024)
                    .tcp_buffer_budget(3 * 128 * 1024),
            ),
        );
        let listener = fx.listener;
        timeout(LIMIT, async {
            let mut held = Vec::new();
            for i in 0..3 {
                let c = TcpStream::connect(v4(100 + i)).await.unwrap();
                let (s, _) = listener.accept().await.unwrap();
                held.push((c, s));
            }
            let err = TcpStream::connect(v4(110))
                .await
                .expect_err("a fourth connection would exceed the budget");
            assert_eq!(err.kind(), ErrorKind::ConnectionRefused);
        })
        .await
        .expect("timed out");
        let s = fx.stack.stats();
        assert!(s.tcp.refused_memory_budget >= 1, "{s}");
        assert_eq!(s.tcp.refused_connection_limit, 0, "{s}");
    });
}

/// With SYN cookies off, SYNs beyond the backlog are refused with RST (with cookies on,
/// the default, they get cookies: `handshake.rs`).
#[test]
fn syn_backlog_is_bounded_and_expires() {
    run_in_netns(net(1500), 2, |tun| async move {
        let fx = Fixture::start(
            tun,
            StackBuilder::new(
                netstack_tokio::Config::default()
                    .syn_backlog(2)
                    .syn_cookies(false)
                    .syn_timeout(netstack_tokio::Duration::from_secs(1)),
            ),
        );
        // Five spoofed SYNs that never complete their handshake.
        let mut sink = fx.stack.clone();
        for i in 0..5u8 {
            let src: SocketAddr = format!("198.18.5.{}:4000", 10 + i).parse().unwrap();
            use futures::SinkExt;
            sink.send(tcp_syn(src, v4(80), 1000)).await.unwrap();
        }
        let s = wait_for(&fx.stack, Duration::from_secs(2), |s| {
            s.tcp.refused_syn_backlog == 3
        })
        .await;
        assert_eq!(s.tcp.syn_received, 2, "{s}");
        assert_eq!(s.tcp.refused_syn_backlog, 3, "{s}");
        let s = wait_for(&fx.stack, Duration::from_secs(5), |s| {
            s.tcp.syn_expired == 2
        })
        .await;
        assert_eq!(s.tcp.syn_expired, 2, "{s}");
        assert_eq!(s.tcp.syn_received, 0, "{s}");
        // The backlog is free again for real peers.
        spawn_echo_server(fx.listener);
        timeout(LIMIT, kernel_echo(v4(80), b"after the flood".to_vec()))
            .await
            .expect("timed out");
    });
}

#[test]
fn idle_stack_runner_is_not_woken() {
    run_in_netns(net(1500), 2, |tun: Arc<Tun>| async move {
        // Stop the kernel's IPv6 router solicitations on the link: they are traffic, not idling.
        let status = Command::new("sysctl")
            .args(["-qw", "net.ipv6.conf.tun0.router_solicitations=0"])
            .status()
            .expect("sysctl");
        assert!(status.success());
        let fx = Fixture::start(tun, StackBuilder::default());
        spawn_echo_server(fx.listener);
        timeout(LIMIT, kernel_echo(v4(7), b"some traffic first".to_vec()))
            .await
            .expect("timed out");
        // Let the connection finish closing on both sides.
        let s = wait_for(&fx.stack, Duration::from_secs(5), |s| {
            s.tcp.open + s.tcp.closing == 0
        })
        .await;
        assert_eq!(s.tcp.open + s.tcp.closing, 0, "{s}");
        tokio::time::sleep(Duration::from_secs(1)).await;
        let polls = fx.runner_polls.load(Ordering::Relaxed);
        let packets = fx.stack.stats().packets_in;
        tokio::time::sleep(Duration::from_millis(2500)).await;
        let polls_after = fx.runner_polls.load(Ordering::Relaxed);
        let packets_after = fx.stack.stats().packets_in;
        assert_eq!(
            polls_after,
            polls,
            "runner woken {} times in 2.5 s of idleness ({} packets arrived)",
            polls_after - polls,
            packets_after - packets
        );
    });
}

#[test]
fn malformed_packets_are_counted_and_do_not_disturb_live_connections() {
    run_in_netns(net(1500), 2, |tun| async move {
        let fx = Fixture::start(tun, StackBuilder::default());
        spawn_echo_server(fx.listener);
        let before = fx.stack.stats();
        let transfer = tokio::spawn(kernel_echo(v4(7), pattern(4, 8 << 20)));
        // Meanwhile, inject garbage into the same stack.
        let mut sink = fx.stack.clone();
        let valid = tcp_syn("198.18.9.9:5555".parse::<SocketAddr>().unwrap(), v4(7), 77);
        let mut bad_checksum = valid.clone();
        let last = bad_checksum.len() - 1;
        bad_checksum[last] ^= 0xff; // inside the TCP header: only the TCP checksum notices
        let mut injected_malformed = 0u64;
        use futures::SinkExt;
        for round in 0..20u8 {
            // Not IP at all.
            sink.send(vec![0u8, round, 1, 2, 3]).await.unwrap();
            sink.send(Vec::new()).await.unwrap();
            injected_malformed += 2;
            // Truncated at every length inside the headers.
            for len in 1..40 {
                sink.send(valid[..len].to_vec()).await.unwrap();
                injected_malformed += 1;
            }
            sink.send(bad_checksum.clone()).await.unwrap();
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        match timeout(SHORT_LIMIT, transfer).await {
            Ok(r) => r.expect("live transfer failed"),
            Err(_) => {
                let mut state = String::new();
                fx.stack
                    .core()
                    .describe(&mut |item| state.push_str(&format!("\n  {item:?}")));
                panic!("live transfer stalled: {}{state}", fx.stack.stats())
            }
        }
        let after = fx.stack.stats();
        assert_eq!(
            after.drops.malformed - before.drops.malformed,
            injected_malformed
        );
        assert_eq!(after.drops.bad_checksum - before.drops.bad_checksum, 20);
        assert_eq!(after.tcp.accepted, 1, "no garbage may create a connection");
    });
}

/// Eight connections move 8 MiB each way at once through four runner groups, each served by
/// its own runner task on the two-worker runtime: connections on different groups run in
/// parallel under different locks, and every byte arrives.
#[test]
fn eight_bulk_connections_over_four_parallel_runner_groups() {
    run_in_netns(net(1500), 2, |tun| async move {
        let fx = Fixture::start(
            tun,
            StackBuilder::new(netstack_tokio::Config::default().tcp_runners(4)),
        );
        assert_eq!(fx.stack.core().runner_groups(), 4);
        spawn_echo_server(fx.listener);
        timeout(LIMIT, async {
            let echoes: Vec<_> = (0..8u16)
                .map(|i| {
                    tokio::spawn(kernel_echo(
                        v4(9200 + i),
                        pattern(u64::from(i) + 50, 8 << 20),
                    ))
                })
                .collect();
            for e in echoes {
                e.await.expect("echo task");
            }
        })
        .await
        .expect("timed out");
        let s = fx.stack.stats();
        assert_eq!(s.tcp.accepted, 8, "{s}");
        assert_eq!(s.drops.malformed + s.drops.bad_checksum, 0, "{s}");
    });
}
