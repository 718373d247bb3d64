//! Smoke tests of the kernel-peer harness itself: the TUN link in a private
//! namespace carries packets in both directions, and panics propagate.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

use netstack_tests::{
    pattern, run_in_netns, run_in_netns_current_thread, TestNet, Tun, KERNEL_V4, KERNEL_V6,
};
use tokio::net::UdpSocket;

/// Reads packets from `tun` until one of IP version `version` carrying UDP
/// arrives (the kernel may emit unrelated packets such as IPv6 router
/// solicitations), with a 5 s limit.
async fn next_udp_packet(tun: &Tun, version: u8) -> Vec<u8> {
    let mut buf = vec![0u8; 65536];
    tokio::time::timeout(Duration::from_secs(5), async {
        loop {
            let n = tun.recv(&mut buf).await.expect("tun recv");
            let pkt = &buf[..n];
            let is_udp = match version {
                4 => n >= 28 && pkt[0] >> 4 == 4 && pkt[9] == 17,
                6 => n >= 48 && pkt[0] >> 4 == 6 && pkt[6] == 17,
                _ => unreachable!(),
            };
            if is_udp {
                return pkt.to_vec();
            }
        }
    })
    .await
    .expect("no UDP packet on the TUN within 5 s")
}

#[test]
fn udp_v4_round_trip_through_tun() {
    let payload = pattern(1, 1000);
    let expected = payload.clone();
    run_in_netns(TestNet::default(), 2, move |tun: Arc<Tun>| async move {
        let sock = UdpSocket::bind((KERNEL_V4, 0)).await.unwrap();
        let local_port = sock.local_addr().unwrap().port();
        let stack = SocketAddr::new(IpAddr::V4(Ipv4Addr::new(198, 19, 0, 10)), 7777);
        sock.send_to(&payload, stack).await.unwrap();

        let reader = tun.clone();
        let mut pkt = tokio::spawn(async move { next_udp_packet(&reader, 4).await })
            .await
            .unwrap();
        let ihl = usize::from(pkt[0] & 0x0f) * 4;
        assert_eq!(pkt[12..16], KERNEL_V4.octets());
        assert_eq!(pkt[16..20], [198, 19, 0, 10]);
        assert_eq!(u16::from_be_bytes([pkt[ihl], pkt[ihl + 1]]), local_port);
        assert_eq!(u16::from_be_bytes([pkt[ihl + 2], pkt[ihl + 3]]), 7777);
        assert_eq!(pkt[ihl + 8..], expected[..]);

        // Turn it into the reply: swapping addresses and ports keeps the IPv4
        // header checksum valid; a zero UDP checksum means "none" over IPv4.
        let (src, dst) = (pkt[12..16].to_vec(), pkt[16..20].to_vec());
        pkt[12..16].copy_from_slice(&dst);
        pkt[16..20].copy_from_slice(&src);
        let (sp, dp) = (pkt[ihl..ihl + 2].to_vec(), pkt[ihl + 2..ihl + 4].to_vec());
        pkt[ihl..ihl + 2].copy_from_slice(&dp);
        pkt[ihl + 2..ihl + 4].copy_from_slice(&sp);
        pkt[ihl + 6..ihl + 8].copy_from_slice(&[0, 0]);
        assert_eq!(tun.send(&pkt).await.unwrap(), pkt.len());

        let mut buf = vec![0u8; 2048];
        let (n, from) = tokio::time::timeout(Duration::from_secs(5), sock.recv_from(&mut buf))
            .await
            .expect("no reply delivered to the kernel socket within 5 s")
            .unwrap();
        assert_eq!(from, stack);
        assert_eq!(buf[..n], expected[..]);
    });
}

#[test]
fn udp_v6_reaches_tun_on_current_thread_runtime() {
    let net = TestNet {
        mtu: 1280,
        tun_name: "tunv6".to_string(),
    };
    run_in_netns_current_thread(net, |tun: Arc<Tun>| async move {
        assert_eq!(tun.name(), "tunv6");
        assert_eq!(tun.mtu(), 1280);
        let sock = UdpSocket::bind((KERNEL_V6, 0)).await.unwrap();
        let stack = Ipv6Addr::new(0xfd00, 0, 0, 0, 0, 0, 0, 0x10);
        sock.send_to(b"hello v6", (stack, 7777)).await.unwrap();
        let pkt = next_udp_packet(&tun, 6).await;
        assert_eq!(pkt[8..24], KERNEL_V6.octets());
        assert_eq!(pkt[24..40], stack.octets());
        assert_eq!(&pkt[48..], b"hello v6");
    });
}

#[test]
fn results_are_returned() {
    let name = run_in_netns(TestNet::default(), 1, |tun: Arc<Tun>| async move {
        tun.name().to_string()
    });
    assert_eq!(name, "tun0");
}

#[test]
#[should_panic(expected = "boom inside the namespace")]
fn panics_propagate() {
    run_in_netns_current_thread(TestNet::default(), |_tun: Arc<Tun>| async move {
        panic!("boom inside the namespace");
    });
}
