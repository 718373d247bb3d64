//! UDP, ICMP, fragments and filters through the stack, against the Linux kernel as the peer.
//!
//! Each test runs in its own network namespace with its own TUN device.

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::process::Command;
use std::sync::Arc;
use std::time::Duration;

use futures::SinkExt;
use netstack_testkit::packets::udp_datagram;
use netstack_tests::fixture::{
    assert_same_bytes, spawn_echo_server, wait_for, Fixture, STACK_V4, STACK_V6,
};
use netstack_tests::{pattern, run_in_netns, TestNet};
use netstack_tokio::{
    Config, IcmpEchoMode, IcmpKind, IpCidr, IpFilter, StackBuilder, UdpSocket as StackUdp,
};
use smoltcp::wire::Ipv4Packet;
use tokio::net::{TcpStream, UdpSocket};
use tokio::time::timeout;

const LIMIT: Duration = Duration::from_secs(60);

fn net() -> TestNet {
    TestNet::default()
}

/// Answers every datagram the stack receives with the same payload, from its destination.
fn spawn_udp_echo(socket: StackUdp) {
    tokio::spawn(async move {
        loop {
            let d = socket.recv().await;
            if socket.send_to(&d.payload, d.dst, d.src).await.is_err() {
                return;
            }
        }
    });
}

/// Sends `payload` from a kernel UDP socket to `to` and returns the echo (retrying on loss).
async fn kernel_udp_round_trip(to: SocketAddr, payload: &[u8]) -> Vec<u8> {
    let bind: SocketAddr = match to.ip() {
        IpAddr::V4(_) => "0.0.0.0:0".parse().unwrap(),
        IpAddr::V6(_) => "[::]:0".parse().unwrap(),
    };
    let socket = UdpSocket::bind(bind).await.unwrap();
    socket.connect(to).await.unwrap();
    let mut buf = vec![0u8; 70_000];
    for _ in 0..5 {
        socket.send(payload).await.unwrap();
        if let Ok(Ok(n)) = timeout(Duration::from_secs(1), socket.recv(&mut buf)).await {
            return buf[..n].to_vec();
        }
    }
    panic!("no UDP echo from {to}");
}

#[test]
fn udp_echo_v4_and_v6_small_and_fragmented() {
    run_in_netns(net(), 2, |tun| async move {
        let fx = Fixture::start(tun, StackBuilder::default());
        spawn_udp_echo(fx.stack.udp_socket().unwrap());
        timeout(LIMIT, async {
            for (to, len) in [
                (SocketAddr::new(STACK_V4.into(), 53), 100),
                (SocketAddr::new(STACK_V6.into(), 53), 100),
                // Larger than the MTU: the kernel fragments, the stack reassembles, and the
                // stack's reply must be fragmented in turn.
                (SocketAddr::new(STACK_V4.into(), 9000), 8_500),
                (SocketAddr::new(STACK_V6.into(), 9000), 8_500),
                (SocketAddr::new(STACK_V4.into(), 9001), 60_000),
            ] {
                let payload = pattern(len as u64, len);
                let echo = kernel_udp_round_trip(to, &payload).await;
                assert_same_bytes(&echo, &payload, &format!("UDP echo via {to}"));
            }
        })
        .await
        .expect("timed out");
        let s = fx.stack.stats();
        assert!(s.ip.reassembled >= 3, "{s}");
        assert!(s.ip.fragments_out >= 3 * 6, "{s}");
        assert_eq!(
            s.drops.malformed + s.drops.bad_checksum + s.drops.reassembly,
            0,
            "{s}"
        );
    });
}

#[test]
fn many_concurrent_udp_flows() {
    run_in_netns(net(), 2, |tun| async move {
        let fx = Fixture::start(tun, StackBuilder::default());
        spawn_udp_echo(fx.stack.udp_socket().unwrap());
        let flows: Vec<_> = (0..200u16)
            .map(|i| {
                tokio::spawn(async move {
                    let to = SocketAddr::new(
                        Ipv4Addr::new(198, 18, 1, (i % 250) as u8).into(),
                        1000 + i,
                    );
                    for round in 0..10u64 {
                        let payload = pattern(u64::from(i) * 100 + round, 200);
                        let echo = kernel_udp_round_trip(to, &payload).await;
                        assert_same_bytes(&echo, &payload, "flow echo");
                    }
                })
            })
            .collect();
        timeout(LIMIT, async {
            for f in flows {
                f.await.unwrap();
            }
        })
        .await
        .expect("timed out");
        assert!(fx.stack.stats().udp.datagrams_in >= 2000);
    });
}

fn ping(args: &[&str]) -> bool {
    let status = Command::new("ping")
        .args(["-c", "2", "-i", "0.2", "-W", "1"])
        .args(args)
        .stdout(std::process::Stdio::null())
        .status()
        .expect("ping is installed (iputils-ping)");
    status.success()
}

#[test]
fn ping_and_ping6_are_answered_by_the_stack() {
    run_in_netns(net(), 2, |tun| async move {
        let fx = Fixture::start(tun, StackBuilder::default());
        let ok = tokio::task::spawn_blocking(|| {
            ping(&["198.18.0.50"])
                && ping(&["-6", "fd00::50"])
                && ping(&["-s", "5000", "198.19.3.3"]) // fragmented both ways
        })
        .await
        .unwrap();
        assert!(ok, "ping failed: {}", fx.stack.stats());
        let s = fx.stack.stats();
        assert_eq!(s.icmp.echo_replies, 6, "{s}");
    });
}

#[test]
fn delivered_echo_requests_are_answered_only_by_the_application() {
    run_in_netns(net(), 2, |tun| async move {
        let fx = Fixture::start(
            tun,
            StackBuilder::new(netstack_tokio::Config::default().icmp_echo(IcmpEchoMode::Deliver)),
        );
        let icmp = fx.stack.icmp_socket().unwrap();
        // The application answers for 198.18.0.60 only, as a forwarder whose real destination
        // answered would.
        tokio::spawn(async move {
            loop {
                let m = icmp.recv().await;
                assert!(matches!(m.kind(), IcmpKind::EchoRequest { .. }));
                if IpAddr::from(m.dst()) == IpAddr::from(Ipv4Addr::new(198, 18, 0, 60)) {
                    icmp.reply_echo(&m).unwrap();
                }
            }
        });
        let (answered, unanswered) =
            tokio::task::spawn_blocking(|| (ping(&["198.18.0.60"]), ping(&["198.18.0.61"])))
                .await
                .unwrap();
        assert!(answered, "the application's replies must reach ping");
        assert!(
            !unanswered,
            "the stack must not answer on its own in deliver mode"
        );
        let s = fx.stack.stats();
        assert_eq!(s.icmp.delivered, 4, "{s}");
        assert_eq!(s.icmp.echo_replies, 2, "{s}");
    });
}

#[test]
fn filter_denies_a_destination_and_allows_others() {
    run_in_netns(net(), 2, |tun| async move {
        let denied: IpCidr = "198.18.0.70/32".parse().unwrap();
        let config = Config::default().filter(IpFilter::default().deny(None, Some(denied)));
        let fx = Fixture::start(tun, StackBuilder::new(config));
        spawn_udp_echo(fx.stack.udp_socket().unwrap());
        spawn_echo_server(fx.listener);
        timeout(LIMIT, async {
            // Allowed: UDP and TCP work.
            let echo = kernel_udp_round_trip("198.18.0.71:53".parse().unwrap(), b"ok").await;
            assert_eq!(echo, b"ok");
            let mut c = TcpStream::connect("198.18.0.71:80").await.unwrap();
            use tokio::io::{AsyncReadExt, AsyncWriteExt};
            c.write_all(b"x").await.unwrap();
            let mut b = [0u8; 1];
            c.read_exact(&mut b).await.unwrap();
            // Denied: nothing comes back, not even a RST.
            let s = UdpSocket::bind("0.0.0.0:0").await.unwrap();
            s.send_to(b"no", "198.18.0.70:53").await.unwrap();
            let mut buf = [0u8; 16];
            assert!(timeout(Duration::from_millis(500), s.recv(&mut buf))
                .await
                .is_err());
            assert!(
                timeout(
                    Duration::from_millis(500),
                    TcpStream::connect("198.18.0.70:80")
                )
                .await
                .is_err(),
                "a filtered SYN must go unanswered"
            );
        })
        .await
        .expect("timed out");
        let s = fx.stack.stats();
        assert!(s.drops.filtered >= 2, "{s}");
        assert!(
            !ping(&["198.18.0.70"]),
            "ICMP to a denied destination is filtered too"
        );
    });
}

#[test]
fn malformed_udp_and_icmp_are_counted_while_a_live_flow_keeps_working() {
    run_in_netns(net(), 2, |tun| async move {
        let fx = Fixture::start(tun, StackBuilder::default());
        spawn_udp_echo(fx.stack.udp_socket().unwrap());
        let before = fx.stack.stats();
        let src: SocketAddr = "198.18.0.1:4444".parse().unwrap();
        let dst: SocketAddr = "198.18.0.2:53".parse().unwrap();
        let good = udp_datagram(src, dst, b"valid");
        let mut bad_checksum = good.clone();
        let last = bad_checksum.len() - 1;
        bad_checksum[last] ^= 0x01;
        let mut sink = fx.stack.clone();
        let mut malformed = 0;
        for round in 0..10 {
            // Truncated inside the UDP header, and a length field larger than the packet.
            for len in 21..28 {
                let mut p = good[..len].to_vec();
                let total = len as u16;
                p[2..4].copy_from_slice(&total.to_be_bytes());
                let mut ip = Ipv4Packet::new_unchecked(&mut p[..]);
                ip.fill_checksum();
                sink.send(p).await.unwrap();
                malformed += 1;
            }
            sink.send(bad_checksum.clone()).await.unwrap();
            // ICMP echo request with a wrong checksum.
            let mut icmp = good.clone();
            icmp[9] = 1;
            let mut ip = Ipv4Packet::new_unchecked(&mut icmp[..]);
            ip.fill_checksum();
            icmp[20] = 8;
            sink.send(icmp).await.unwrap();
            let echo = kernel_udp_round_trip(
                SocketAddr::new(STACK_V4.into(), 7000 + round),
                b"still alive",
            )
            .await;
            assert_eq!(echo, b"still alive");
        }
        let after = wait_for(&fx.stack, Duration::from_secs(2), |s| {
            s.drops.bad_checksum - before.drops.bad_checksum >= 20
        })
        .await;
        assert_eq!(after.drops.malformed - before.drops.malformed, malformed);
        assert_eq!(
            after.drops.bad_checksum - before.drops.bad_checksum,
            20,
            "{after}"
        );
    });
}

#[test]
fn udp_flood_to_a_slow_reader_keeps_memory_bounded() {
    run_in_netns(net(), 2, |tun| async move {
        let fx = Fixture::start(
            tun,
            StackBuilder::new(
                netstack_tokio::Config::default()
                    .udp_queue(256)
                    .udp_queue_bytes(1 << 20),
            ),
        );
        let socket = Arc::new(fx.stack.udp_socket().unwrap());
        // Nobody reads while 20,000 datagrams of 1 KiB arrive for 1,000 ports.
        let sender = UdpSocket::bind("0.0.0.0:0").await.unwrap();
        let payload = vec![7u8; 1024];
        for i in 0..20_000u32 {
            let to = SocketAddr::new(
                Ipv4Addr::new(198, 18, 2, (i % 200) as u8 + 1).into(),
                2000 + (i % 1000) as u16,
            );
            sender.send_to(&payload, to).await.unwrap();
        }
        let s = wait_for(&fx.stack, Duration::from_secs(5), |s| {
            s.udp.datagrams_in + s.drops.udp_queue_full >= 15_000
        })
        .await;
        assert!(s.udp.queued <= 256, "{s}");
        assert!(s.udp.queued_bytes <= 1 << 20, "{s}");
        assert!(s.drops.udp_queue_full > 0, "{s}");
        // The reader catches up, and new datagrams still arrive.
        let mut drained = 0;
        while timeout(Duration::from_millis(200), socket.recv())
            .await
            .is_ok()
        {
            drained += 1;
        }
        // Every datagram the stack accepted was delivered exactly once; the rest were counted.
        let s = fx.stack.stats();
        assert_eq!(s.udp.queued, 0, "{s}");
        assert_eq!(s.udp.datagrams_in, drained, "{s}");
        assert!(s.udp.datagrams_in + s.drops.udp_queue_full <= 20_000, "{s}");
        spawn_udp_echo(Arc::into_inner(socket).unwrap());
        let echo = kernel_udp_round_trip(SocketAddr::new(STACK_V4.into(), 53), b"after").await;
        assert_eq!(echo, b"after");
    });
}

/// A relay takes waiting datagrams in batches (one lock acquisition each), all of them, in
/// order.
#[test]
fn datagrams_are_received_in_batches() {
    run_in_netns(net(), 2, |tun| async move {
        let fx = Fixture::start(tun, StackBuilder::default());
        let udp = fx.stack.udp_socket().unwrap();
        let kernel = UdpSocket::bind("0.0.0.0:0").await.unwrap();
        let to = SocketAddr::new(STACK_V4.into(), 4444);
        for i in 0..100u16 {
            kernel.send_to(&i.to_be_bytes(), to).await.unwrap();
        }
        let mut got = Vec::new();
        let mut batches = 0;
        timeout(LIMIT, async {
            while got.len() < 100 {
                let n = udp.recv_batch(&mut got, 64).await;
                assert!((1..=64).contains(&n));
                batches += 1;
            }
        })
        .await
        .expect("all 100 datagrams");
        let seq: Vec<u16> = got
            .iter()
            .map(|d| u16::from_be_bytes([d.payload()[0], d.payload()[1]]))
            .collect();
        assert_eq!(seq, (0..100).collect::<Vec<_>>(), "in order");
        assert!(batches < 100, "{batches} batches for 100 datagrams");
    });
}

/// Starts a stack from `config` on `tun` with a batching pump, as a forwarder drives it: up to
/// 32 packets per read, handed over with [`netstack_tokio::PacketSink::send_batch`], which
/// waits while the stack holds them (its UDP queue full, see `Config::udp_hold`).
fn start_with_batch_pump(
    tun: Arc<netstack_tests::Tun>,
    config: Config,
) -> (netstack_tokio::PacketPort, netstack_tokio::TcpListener) {
    use futures::StreamExt;
    let (stack, runners, listener) = StackBuilder::new(config).build_runners();
    for runner in runners {
        tokio::spawn(runner);
    }
    let (mut sink, mut stream) = stack.clone().split();
    let reader = tun.clone();
    tokio::spawn(async move {
        let capacity = reader.mtu() as usize + 64;
        let mut batch = std::collections::VecDeque::new();
        while reader.recv_many(&mut batch, 32, capacity).await.is_ok() {
            sink.send_batch(&mut batch).await;
        }
    });
    tokio::spawn(async move {
        while let Some(packet) = stream.next().await {
            let _ = tun.send(&packet).await;
        }
    });
    (stack, listener)
}

/// Sends datagrams numbered `from..to` (4-byte big-endian, then padding to 512 bytes) to
/// `to_addr` from one kernel socket, as fast as the kernel takes them.
async fn send_numbered(sender: &UdpSocket, to_addr: SocketAddr, from: u32, to: u32) {
    let mut payload = vec![0u8; 512];
    for i in from..to {
        payload[..4].copy_from_slice(&i.to_be_bytes());
        sender.send_to(&payload, to_addr).await.unwrap();
    }
}

fn number(payload: &[u8]) -> u32 {
    u32::from_be_bytes(payload[..4].try_into().unwrap())
}

/// A burst 30 times the stack's UDP queue arrives whole and in order while the application
/// keeps reading, slower than the burst comes: the pump waits for room instead of dropping.
#[test]
fn a_udp_burst_larger_than_the_queue_arrives_whole_while_the_reader_reads() {
    run_in_netns(net(), 2, |tun| async move {
        let config = Config::default()
            .udp_queue(64)
            .udp_hold(Some(smoltcp::time::Duration::from_millis(200)));
        let (stack, _listener) = start_with_batch_pump(tun, config);
        let socket = stack.udp_socket().unwrap();
        let sender = UdpSocket::bind("0.0.0.0:0").await.unwrap();
        let to = SocketAddr::new(STACK_V4.into(), 5300);
        let burst = 2_000u32;
        let send = send_numbered(&sender, to, 0, burst);
        let read = async {
            let mut next = 0u32;
            while next < burst {
                let d = timeout(Duration::from_secs(10), socket.recv())
                    .await
                    .unwrap_or_else(|_| panic!("datagram {next} never came: {}", stack.stats()));
                assert_eq!(number(&d.payload), next, "out of order or lost");
                next += 1;
                // A reader slower than the burst: the queue fills up.
                if next.is_multiple_of(16) {
                    tokio::time::sleep(Duration::from_millis(1)).await;
                }
            }
        };
        timeout(LIMIT, futures::future::join(send, read))
            .await
            .expect("timed out");
        let s = stack.stats();
        assert_eq!(s.drops.udp_queue_full, 0, "{s}");
        assert!(
            s.udp.holds > 0,
            "the queue never filled, the test proves nothing: {s}"
        );
        assert_eq!(s.udp.holds_expired, 0, "{s}");
    });
}

/// An application that stops reading UDP holds the device no longer than `udp_hold`: its
/// datagrams are then dropped and counted, and TCP through the same device keeps working.
#[test]
fn a_udp_reader_that_stops_reading_does_not_stall_the_device() {
    run_in_netns(net(), 2, |tun| async move {
        let config = Config::default()
            .udp_queue(64)
            .udp_hold(Some(smoltcp::time::Duration::from_millis(20)));
        let (stack, listener) = start_with_batch_pump(tun, config);
        spawn_echo_server(listener);
        let socket = stack.udp_socket().unwrap();
        let sender = UdpSocket::bind("0.0.0.0:0").await.unwrap();
        let to = SocketAddr::new(STACK_V4.into(), 5300);
        send_numbered(&sender, to, 0, 2_000).await;
        let s = wait_for(&stack, Duration::from_secs(10), |s| {
            s.udp.datagrams_in + s.drops.udp_queue_full >= 2_000
        })
        .await;
        assert_eq!(s.udp.datagrams_in, 64, "{s}");
        assert_eq!(s.drops.udp_queue_full, 2_000 - 64, "{s}");
        assert!(s.udp.holds_expired >= 1, "{s}");
        // TCP through the device while the UDP reader still does not read.
        timeout(LIMIT, async {
            let mut tcp = TcpStream::connect((STACK_V4, 7)).await.unwrap();
            let data = pattern(1, 100_000);
            use tokio::io::{AsyncReadExt, AsyncWriteExt};
            tcp.write_all(&data).await.unwrap();
            let mut echo = vec![0u8; data.len()];
            tcp.read_exact(&mut echo).await.unwrap();
            assert_same_bytes(&echo, &data, "TCP echo during the UDP hold");
        })
        .await
        .expect("TCP stalled behind the UDP reader");
        // The first 64 were queued, in order, and are still there for the reader.
        for i in 0..64 {
            assert_eq!(number(&socket.recv().await.payload), i);
        }
    });
}
