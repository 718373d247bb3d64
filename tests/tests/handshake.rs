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
