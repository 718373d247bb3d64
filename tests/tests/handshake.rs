//! Connection requests at SYN time and the errors that reach the client, against the Linux
//! kernel as the peer (tokio multi-thread flavour): the application sees each new 4-tuple
//! before the stack answers it, and its refusal reaches the kernel's `connect()` as the errno a
//! real destination would have caused.

use std::io;
use std::net::{IpAddr, SocketAddr};
use std::time::{Duration, Instant};

use netstack_tests::fixture::{Fixture, STACK_V4, STACK_V6};
use netstack_tests::{pattern, run_in_netns, TestNet};
use netstack_tokio::{Config, Incoming, Refusal, StackBuilder, TcpListener, Unreachable};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpStream, UdpSocket};
use tokio::time::timeout;

const LIMIT: Duration = Duration::from_secs(30);

fn requests() -> StackBuilder {
    StackBuilder::new(Config::default().connection_requests(true))
}

/// The next incoming request of `listener` (failing on an established stream).
async fn next_request(listener: &TcpListener) -> netstack_tokio::ConnectionRequest {
    match timeout(LIMIT, listener.incoming()).await {
        Ok(Ok(Incoming::Request(r))) => r,
        Ok(Ok(Incoming::Stream(_, peer))) => panic!("an established stream from {peer}"),
        Ok(Err(e)) => panic!("incoming: {e}"),
        Err(_) => panic!("no connection request"),
    }
}

#[test]
fn a_request_comes_before_any_answer_and_accepting_it_connects() {
    run_in_netns(TestNet::default(), 2, |tun| async move {
        let fx = Fixture::start(tun, requests());
        let to = SocketAddr::new(STACK_V4.into(), 8080);
        let client = tokio::spawn(async move {
            let started = Instant::now();
            let stream = TcpStream::connect(to).await;
            (stream, started.elapsed())
        });
        let request = next_request(&fx.listener).await;
        assert_eq!(request.local_addr(), to);
        let options = request.syn_options();
        assert_eq!(options.mss, Some(1460), "Linux's MSS at MTU 1500");
        assert!(
            options.window_scale.is_some() && options.sack_permitted,
            "{options:?}"
        );
        // Nothing answers the SYN while the application decides: the kernel retransmits it
        // (after 1 s), and the retransmission makes no second request.
        tokio::time::sleep(Duration::from_millis(1300)).await;
        assert!(
            !client.is_finished(),
            "connect() must wait for the application"
        );
        let s = fx.stack.stats();
        assert!(
            s.tcp.duplicate_syns >= 1,
            "the kernel retransmitted its SYN: {s}"
        );
        assert_eq!((s.tcp.requests, s.tcp.syn_received), (1, 1), "{s}");
        assert!(
            timeout(Duration::from_millis(100), fx.listener.incoming())
                .await
                .is_err(),
            "a retransmitted SYN made a second request"
        );
        let mut stream = timeout(LIMIT, request.accept())
            .await
            .expect("the handshake completed")
            .expect("accepted");
        let (client, waited) = client.await.expect("task");
        let mut client = client.expect("connect() succeeded once the request was accepted");
        assert!(
            waited >= Duration::from_millis(1000),
            "connected after {waited:?}"
        );
        let data = pattern(9, 256 * 1024);
        client.write_all(&data).await.expect("write");
        let mut got = vec![0u8; data.len()];
        stream.read_exact(&mut got).await.expect("read");
        assert_eq!(got, data);
        stream.write_all(b"bye").await.expect("write back");
        let mut bye = [0u8; 3];
        client.read_exact(&mut bye).await.expect("read back");
        assert_eq!(&bye, b"bye");
        assert_eq!(fx.stack.stats().tcp.accepted, 1);
    });
}

/// The errno a kernel client's `connect()` reports for each refusal (Linux 6.x).
const ERRNO_TABLE: &[(&str, Refusal, i32, i32)] = &[
    // (name, refusal, errno over IPv4, errno over IPv6)
    (
        "reset",
        Refusal::Reset,
        libc::ECONNREFUSED,
        libc::ECONNREFUSED,
    ),
    (
        "port unreachable",
        Refusal::Unreachable(Unreachable::Port),
        libc::ECONNREFUSED,
        libc::ECONNREFUSED,
    ),
    (
        "host unreachable",
        Refusal::Unreachable(Unreachable::Host),
        libc::EHOSTUNREACH,
        libc::EHOSTUNREACH,
    ),
    (
        "network unreachable",
        Refusal::Unreachable(Unreachable::Network),
        libc::ENETUNREACH,
        libc::ENETUNREACH,
    ),
    (
        "administratively prohibited",
        Refusal::Unreachable(Unreachable::AdminProhibited),
        libc::EHOSTUNREACH,
        libc::EACCES,
    ),
];

#[test]
fn each_refusal_reaches_the_kernel_client_as_its_errno_within_a_second() {
    run_in_netns(TestNet::default(), 2, |tun| async move {
        let fx = Fixture::start(tun, requests());
        let mut port = 9000;
        for &(name, refusal, errno_v4, errno_v6) in ERRNO_TABLE {
            for (ip, errno) in [
                (IpAddr::from(STACK_V4), errno_v4),
                (STACK_V6.into(), errno_v6),
            ] {
                port += 1;
                let to = SocketAddr::new(ip, port);
                let client = tokio::spawn(async move {
                    let started = Instant::now();
                    (TcpStream::connect(to).await, started.elapsed())
                });
                next_request(&fx.listener)
                    .await
                    .refuse(refusal)
                    .expect("refused");
                let (result, took) = client.await.expect("task");
                let err = result.expect_err(name);
                assert_eq!(
                    err.raw_os_error(),
                    Some(errno),
                    "{name} to {to}: {err} ({:?})",
                    err.kind()
                );
                assert!(
                    took < Duration::from_secs(1),
                    "{name} to {to} took {took:?}"
                );
            }
        }
        let s = fx.stack.stats();
        assert_eq!(
            s.tcp.refused_by_application,
            2 * ERRNO_TABLE.len() as u64,
            "{s}"
        );
        assert_eq!(
            s.icmp.errors_sent,
            2 * (ERRNO_TABLE.len() as u64 - 1),
            "{s}"
        );
    });
}

#[test]
fn a_request_dropped_or_left_unanswered_is_refused_with_rst() {
    run_in_netns(TestNet::default(), 2, |tun| async move {
        let builder = StackBuilder::new(
            Config::default()
                .connection_requests(true)
                .syn_timeout(netstack_tokio::Duration::from_millis(800)),
        );
        let fx = Fixture::start(tun, builder);
        // Dropped: refused at once.
        let to = SocketAddr::new(STACK_V4.into(), 7100);
        let client = tokio::spawn(async move { TcpStream::connect(to).await });
        drop(next_request(&fx.listener).await);
        let err = timeout(LIMIT, client)
            .await
            .expect("in time")
            .expect("task")
            .expect_err("refused");
        assert_eq!(err.kind(), io::ErrorKind::ConnectionRefused);
        // Held without an answer: refused when `syn_timeout` runs out.
        let to = SocketAddr::new(STACK_V6.into(), 7101);
        let client = tokio::spawn(async move {
            let started = Instant::now();
            (TcpStream::connect(to).await, started.elapsed())
        });
        let held = next_request(&fx.listener).await;
        let (result, took) = timeout(LIMIT, client)
            .await
            .expect("in time")
            .expect("task");
        assert_eq!(
            result.expect_err("expired").kind(),
            io::ErrorKind::ConnectionRefused
        );
        assert!(
            took >= Duration::from_millis(700) && took < Duration::from_secs(3),
            "refused after {took:?}"
        );
        // Accepting it now is too late.
        let late = held
            .accept()
            .await
            .expect_err("expired before it was accepted");
        assert_eq!(io::Error::from(late).kind(), io::ErrorKind::ConnectionReset);
        let s = fx.stack.stats();
        assert_eq!(
            (s.tcp.syn_expired, s.tcp.syn_received, s.tcp.open),
            (1, 0, 0),
            "{s}"
        );
    });
}

/// A refusal whose RST is lost is repeated for the retransmitted SYN at once, as a closed port
/// would answer every SYN: the request is not made again.
#[test]
fn a_lost_refusal_is_repeated_for_the_retransmitted_syn() {
    run_in_netns(TestNet::default(), 2, |tun| async move {
        let mut dropped = 0;
        let out_tap: netstack_tests::fixture::OutTap = Box::new(move |packet, _| {
            let rst = packet.len() == 40 && packet[9] == 6 && packet[33] & 0x04 != 0;
            if rst && dropped == 0 {
                dropped += 1;
                return vec![];
            }
            vec![packet]
        });
        let fx = Fixture::start_with_taps(tun, requests(), Box::new(|p, _| vec![p]), out_tap);
        let to = SocketAddr::new(STACK_V4.into(), 7200);
        let client = tokio::spawn(async move {
            let started = Instant::now();
            (TcpStream::connect(to).await, started.elapsed())
        });
        next_request(&fx.listener)
            .await
            .refuse(Refusal::Reset)
            .expect("refused");
        let (result, took) = timeout(LIMIT, client)
            .await
            .expect("in time")
            .expect("task");
        assert_eq!(
            result.expect_err("refused").kind(),
            io::ErrorKind::ConnectionRefused
        );
        // The kernel retransmits its SYN after 1 s; that one is refused at once.
        assert!(took < Duration::from_millis(2500), "refused after {took:?}");
        let s = fx.stack.stats();
        assert_eq!((s.tcp.requests, s.tcp.duplicate_syns), (1, 1), "{s}");
    });
}

#[test]
fn a_datagram_answered_with_port_unreachable_fails_the_clients_connected_socket() {
    run_in_netns(TestNet::default(), 2, |tun| async move {
        let fx = Fixture::start(tun, StackBuilder::default());
        let udp = fx.stack.udp_socket().expect("udp");
        for ip in [IpAddr::from(STACK_V4), STACK_V6.into()] {
            let to = SocketAddr::new(ip, 5353);
            let bind: SocketAddr = match ip {
                IpAddr::V4(_) => "0.0.0.0:0".parse().unwrap(),
                IpAddr::V6(_) => "[::]:0".parse().unwrap(),
            };
            let client = UdpSocket::bind(bind).await.expect("bind");
            client.connect(to).await.expect("connect");
            client.send(b"query").await.expect("send");
            let datagram = timeout(LIMIT, udp.recv_datagram()).await.expect("received");
            assert_eq!(datagram.payload(), b"query");
            // The relay's upstream said "port unreachable": tell the client.
            udp.send_unreachable(&datagram.quote(), Unreachable::Port)
                .expect("sent");
            let mut buf = [0u8; 16];
            let err = timeout(LIMIT, client.recv(&mut buf))
                .await
                .expect("the error arrived")
                .expect_err("ECONNREFUSED");
            assert_eq!(err.kind(), io::ErrorKind::ConnectionRefused, "{ip}: {err}");
        }
        assert_eq!(fx.stack.stats().icmp.errors_sent, 2);
    });
}

/// A TCP segment with only the ACK flag, as a forged-ACK flood sends them.
fn forged_ack(src: SocketAddr, dst: SocketAddr, seq: u32, ack: u32) -> Vec<u8> {
    netstack_testkit::packets::Segment::new(src, dst)
        .seq(seq as i32)
        .ack(ack as i32)
        .window(502)
        .build()
}

/// Fills the SYN backlog with `n` spoofed SYNs that never complete (from 198.18.200.x, which
/// nobody answers for).
async fn fill_backlog(fx: &Fixture, n: u16) {
    use futures::SinkExt;
    let (mut sink, _) = fx.stack.clone().split();
    for i in 0..n {
        let src = SocketAddr::new(
            std::net::Ipv4Addr::new(198, 18, 200, (i % 250) as u8).into(),
            20_000 + i,
        );
        let syn = netstack_testkit::packets::tcp_syn(
            src,
            SocketAddr::new(STACK_V4.into(), 80),
            i32::from(i),
        );
        sink.send(syn).await.expect("inject");
    }
    let s =
        netstack_tests::fixture::wait_for(&fx.stack, LIMIT, |s| s.tcp.syn_received >= u64::from(n))
            .await;
    assert_eq!(s.tcp.syn_received, u64::from(n), "{s}");
}

/// Moves `bytes` from a kernel client to the stack over one connection to `port`; returns the
/// rate in Gbit/s.
async fn upload(fx_listener: &TcpListener, port: u16, bytes: usize) -> f64 {
    let data = pattern(u64::from(port), 1 << 20);
    let to = SocketAddr::new(STACK_V4.into(), port);
    let client = tokio::spawn(async move {
        let mut c = TcpStream::connect(to).await.expect("connect");
        let started = Instant::now();
        let mut sent = 0;
        while sent < bytes {
            let n = (bytes - sent).min(data.len());
            c.write_all(&data[..n]).await.expect("write");
            sent += n;
        }
        c.shutdown().await.expect("shutdown");
        started
    });
    let (mut stream, _) = timeout(LIMIT, fx_listener.accept())
        .await
        .expect("accepted")
        .expect("accept");
    let mut got = 0;
    let mut buf = vec![0u8; 256 * 1024];
    loop {
        match stream.read(&mut buf).await.expect("read") {
            0 => break,
            n => got += n,
        }
    }
    let started = client.await.expect("task");
    assert_eq!(got, bytes);
    (bytes * 8) as f64 / started.elapsed().as_secs_f64() / 1e9
}

/// With the SYN backlog full of spoofed half-open connections, a new client still connects:
/// its SYN is answered with a cookie, the connection is made from its ACK, with window scaling
/// (a 64 KiB window would crawl), and carries a bulk upload at least half as fast as a normal
/// connection does.
#[test]
fn a_full_backlog_answers_with_syn_cookies_that_become_fast_connections() {
    run_in_netns(TestNet::default(), 2, |tun| async move {
        let builder = StackBuilder::new(
            Config::default()
                .syn_backlog(8)
                .syn_timeout(netstack_tokio::Duration::from_secs(60)),
        );
        let fx = Fixture::start(tun, builder);
        let normal = upload(&fx.listener, 6001, 64 << 20).await;
        fill_backlog(&fx, 8).await;
        let before = fx.stack.stats();
        let cookie = upload(&fx.listener, 6002, 64 << 20).await;
        let s = fx.stack.stats();
        assert_eq!(
            s.tcp.syn_cookies_sent - before.tcp.syn_cookies_sent,
            1,
            "{s}"
        );
        assert_eq!(s.tcp.syn_cookies_accepted, 1, "{s}");
        eprintln!("64 MiB upload: normal connection {normal:.2} Gbit/s, cookie connection {cookie:.2} Gbit/s");
        assert!(
            cookie >= normal / 2.0,
            "cookie {cookie:.2} vs normal {normal:.2} Gbit/s"
        );
        // A cookie connection cannot be refused at SYN time: with requests on it arrives as an
        // established stream (checked in `syn_cookie_connections_arrive_established`).
    });
}

/// With connection requests on and the backlog full of pending requests, a cookie connection
/// arrives as an established stream.
#[test]
fn syn_cookie_connections_arrive_established_when_requests_are_on() {
    run_in_netns(TestNet::default(), 2, |tun| async move {
        let builder = StackBuilder::new(
            Config::default()
                .connection_requests(true)
                .syn_backlog(4)
                .syn_timeout(netstack_tokio::Duration::from_secs(60)),
        );
        let fx = Fixture::start(tun, builder);
        fill_backlog(&fx, 4).await;
        let to = SocketAddr::new(STACK_V4.into(), 6100);
        let client = tokio::spawn(async move {
            let mut c = TcpStream::connect(to).await.expect("connect");
            c.write_all(b"via a cookie").await.expect("write");
            c
        });
        // The client's SYN found the backlog full: its connection is made from the cookie.
        // (Answering the spoofed requests first would free the backlog for it.)
        let s = netstack_tests::fixture::wait_for(&fx.stack, LIMIT, |s| {
            s.tcp.syn_cookies_accepted == 1
        })
        .await;
        assert_eq!(s.tcp.syn_cookies_accepted, 1, "{s}");
        loop {
            match timeout(LIMIT, fx.listener.incoming())
                .await
                .expect("incoming")
                .expect("ok")
            {
                // The spoofed SYNs' requests: refuse them.
                Incoming::Request(r) => drop(r),
                Incoming::Stream(mut stream, peer) => {
                    assert_eq!(peer.ip(), IpAddr::from(netstack_tests::KERNEL_V4));
                    let mut got = [0u8; 12];
                    stream.read_exact(&mut got).await.expect("read");
                    assert_eq!(&got, b"via a cookie");
                    break;
                }
            }
        }
        drop(client.await.expect("task"));
        assert_eq!(fx.stack.stats().tcp.syn_cookies_accepted, 1);
    });
}

/// 100,000 forged ACKs to random ports while cookies are in use create no connection, and
/// cost bounded work: each is one cookie check and a RST. (A forged ACK passes with the chance
/// of guessing a 24-bit MAC, checked against two epochs: 2 × 100,000 / 2^24 = 1.2 % that one
/// of them does, as with Linux's cookies; the test allows that one, and fails on more.)
#[test]
fn a_forged_ack_flood_creates_no_connection() {
    use futures::SinkExt;
    run_in_netns(TestNet::default(), 2, |tun| async move {
        let builder = StackBuilder::new(
            Config::default()
                .syn_backlog(2)
                .syn_timeout(netstack_tokio::Duration::from_secs(60)),
        );
        let fx = Fixture::start(tun, builder);
        fill_backlog(&fx, 2).await;
        // One real cookie connection, so that cookies are in use.
        let to = SocketAddr::new(STACK_V4.into(), 6200);
        let client = TcpStream::connect(to).await.expect("connect");
        let (_accepted, _) = timeout(LIMIT, fx.listener.accept())
            .await
            .expect("in time")
            .expect("accept");
        let (mut sink, _) = fx.stack.clone().split();
        let mut state = 0x5eed_u64;
        let mut next = move || {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            state
        };
        let started = Instant::now();
        for _ in 0..100_000 {
            let r = next();
            let src = SocketAddr::new(
                std::net::Ipv4Addr::new(198, 18, 128 + (r as u8 & 0x7f), (r >> 8) as u8).into(),
                1024 + (r >> 16) as u16 % 60_000,
            );
            let dst = SocketAddr::new(STACK_V4.into(), 1 + (r >> 32) as u16 % 65_000);
            sink.send(forged_ack(src, dst, (r >> 20) as u32, (r >> 40) as u32))
                .await
                .expect("inject");
        }
        let took = started.elapsed();
        let s =
            netstack_tests::fixture::wait_for(&fx.stack, LIMIT, |s| s.ingress_queued == 0).await;
        eprintln!("100,000 forged ACKs in {took:?}: {s}");
        let forged = s.tcp.syn_cookies_accepted - 1; // the real one
        assert!(forged <= 1, "{forged} forged ACKs passed as cookies: {s}");
        assert!(s.tcp.syn_cookies_invalid >= 99_999, "{s}");
        assert!(s.tcp.open + s.tcp.accept_pending <= 1 + forged, "{s}");
        drop(client);
    });
}
