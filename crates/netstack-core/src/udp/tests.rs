//! In-memory tests of sending UDP in batches: what leaves, in which order, how a full egress
//! queue pushes back, and how errors end a batch.

extern crate std;

use alloc::sync::Arc;
use alloc::task::Wake;
use alloc::vec;
use alloc::vec::Vec;
use core::future::Future;
use core::net::SocketAddr;
use core::pin::pin;
use core::sync::atomic::{AtomicUsize, Ordering};
use core::task::{Context, Poll, Waker};

use embassy_sync::blocking_mutex::raw::NoopRawMutex;
use smoltcp::phy::ChecksumCapabilities;
use smoltcp::wire::{IpAddress, IpEndpoint, Ipv4Packet, Ipv4Repr, UdpPacket, UdpRepr};

use crate::tests::ManualClock;
use crate::{Config, Error, Stack, UdpSocket};

// One lock acquisition per batch follows from `poll_send_udp_batch` (one `with_group`);
// counting it would need a custom `RawMutex` impl, which the core does not allow.
type LocalStack = Stack<NoopRawMutex, ManualClock>;

/// A waker that counts its wake-ups.
#[derive(Default)]
pub(super) struct CountingWaker(pub(super) AtomicUsize);

impl Wake for CountingWaker {
    fn wake(self: Arc<Self>) {
        self.0.fetch_add(1, Ordering::Relaxed);
    }
}

impl CountingWaker {
    /// Wake-ups so far.
    pub(super) fn count(&self) -> usize {
        self.0.load(Ordering::Relaxed)
    }
}

const CLIENT: &str = "10.0.0.1:40000";
const SERVER: &str = "93.184.216.34:53";

fn endpoint(s: &str) -> IpEndpoint {
    s.parse::<SocketAddr>().unwrap().into()
}

fn stack(egress_queue: usize) -> LocalStack {
    let config = Config {
        egress_queue,
        ..Config::default()
    };
    Stack::new(config, ManualClock::default())
}

/// Every packet the stack has for the device now.
fn drain(stack: &LocalStack) -> Vec<Vec<u8>> {
    let mut cx = Context::from_waker(Waker::noop());
    let mut out = Vec::new();
    while let Poll::Ready(p) = stack.poll_egress(&mut cx) {
        out.push(p);
    }
    out
}

/// The UDP payload of an unfragmented IPv4 packet from [`SERVER`] to [`CLIENT`], with both
/// checksums verified.
fn payload_of(packet: &[u8]) -> Vec<u8> {
    let caps = ChecksumCapabilities::default();
    let ip = Ipv4Packet::new_checked(packet).expect("an IPv4 packet");
    let repr = Ipv4Repr::parse(&ip, &caps).expect("a valid IPv4 header");
    assert!(!ip.more_frags() && ip.frag_offset() == 0, "not a fragment");
    let (src, dst) = (endpoint(SERVER), endpoint(CLIENT));
    assert_eq!(
        (
            IpAddress::Ipv4(repr.src_addr),
            IpAddress::Ipv4(repr.dst_addr)
        ),
        (src.addr, dst.addr)
    );
    let udp = UdpPacket::new_checked(ip.payload()).expect("a UDP header");
    let u = UdpRepr::parse(&udp, &src.addr, &dst.addr, &caps).expect("a valid UDP checksum");
    assert_eq!((u.src_port, u.dst_port), (src.port, dst.port));
    udp.payload().to_vec()
}

fn payloads(sizes: &[usize]) -> Vec<Vec<u8>> {
    sizes
        .iter()
        .enumerate()
        .map(|(i, &n)| (0..n).map(|b| (b as u8).wrapping_add(i as u8)).collect())
        .collect()
}

#[test]
fn a_batch_leaves_whole_and_in_order_under_one_lock_acquisition() {
    let stack = stack(256);
    let socket = UdpSocket::new(&stack).unwrap();
    let (_recv, send) = socket.split();
    // The 3000-byte one leaves as three fragments (MTU 1500) between its neighbours.
    let data = payloads(&[1, 1400, 0, 3000, 512]);
    let slices: Vec<&[u8]> = data.iter().map(Vec::as_slice).collect();
    let mut cx = Context::from_waker(Waker::noop());
    let r = send.poll_send_batch(&mut cx, &slices, endpoint(SERVER), endpoint(CLIENT));
    assert!(matches!(r, Poll::Ready(Ok(5))), "{r:?}");

    let out = drain(&stack);
    assert_eq!(out.len(), 7, "four whole datagrams and three fragments");
    for (packet, expected) in out[..3].iter().zip(&data[..3]) {
        assert_eq!(&payload_of(packet), expected);
    }
    for fragment in &out[3..6] {
        let ip = Ipv4Packet::new_checked(&fragment[..]).unwrap();
        assert!(
            ip.more_frags() || ip.frag_offset() > 0,
            "a fragment of the large one"
        );
    }
    assert_eq!(payload_of(&out[6]), data[4]);
    assert_eq!(stack.stats().udp.datagrams_out, 5);

    // The same datagrams one by one.
    for p in &slices {
        let r = stack.poll_udp_send(&mut cx, endpoint(SERVER), endpoint(CLIENT), p);
        assert!(matches!(r, Poll::Ready(Ok(()))));
    }
}

#[test]
fn a_full_egress_queue_takes_what_fits_and_wakes_the_sender_when_room_frees() {
    let stack = stack(4);
    let socket = UdpSocket::new(&stack).unwrap();
    let data = payloads(&[100; 10]);
    let slices: Vec<&[u8]> = data.iter().map(Vec::as_slice).collect();
    let woken = Arc::new(CountingWaker::default());
    let waker = Waker::from(woken.clone());
    let mut cx = Context::from_waker(&waker);
    let (_recv, send) = socket.split();
    let (src, dst) = (endpoint(SERVER), endpoint(CLIENT));

    let r = send.poll_send_batch(&mut cx, &slices, src, dst);
    assert!(matches!(r, Poll::Ready(Ok(4))), "as many as fit: {r:?}");
    // Full: nothing fits, and the sender waits for room.
    assert!(send
        .poll_send_batch(&mut cx, &slices[4..], src, dst)
        .is_pending());
    assert_eq!(woken.0.load(Ordering::Relaxed), 0);
    let first = drain(&stack);
    assert!(woken.0.load(Ordering::Relaxed) >= 1, "room woke the sender");
    let r = send.poll_send_batch(&mut cx, &slices[4..], src, dst);
    assert!(matches!(r, Poll::Ready(Ok(4))), "{r:?}");
    let second = drain(&stack);
    let r = send.poll_send_batch(&mut cx, &slices[8..], src, dst);
    assert!(matches!(r, Poll::Ready(Ok(2))), "{r:?}");
    let third = drain(&stack);

    let got: Vec<Vec<u8>> = first
        .iter()
        .chain(&second)
        .chain(&third)
        .map(|p| payload_of(p))
        .collect();
    assert_eq!(got, data, "every datagram, once, in order");
}

#[test]
fn send_to_batch_waits_for_room_and_sends_everything_in_order() {
    let stack = stack(8);
    let socket = UdpSocket::new(&stack).unwrap();
    let data = payloads(&[1200; 50]);
    let slices: Vec<&[u8]> = data.iter().map(Vec::as_slice).collect();
    let (from, to) = (SERVER.parse().unwrap(), CLIENT.parse().unwrap());
    let woken = Arc::new(CountingWaker::default());
    let waker = Waker::from(woken.clone());
    let mut cx = Context::from_waker(&waker);
    let mut send = pin!(socket.send_to_batch(&slices, from, to));
    let mut got = Vec::new();
    let mut polls = 0;
    loop {
        polls += 1;
        assert!(polls < 100, "the batch did not complete");
        let before = woken.0.load(Ordering::Relaxed);
        let r = send.as_mut().poll(&mut cx);
        match r {
            Poll::Ready(r) => {
                r.unwrap();
                break;
            }
            Poll::Pending => {
                got.extend(drain(&stack).iter().map(|p| payload_of(p)));
                assert!(
                    woken.0.load(Ordering::Relaxed) > before,
                    "a pending send is woken"
                );
            }
        }
    }
    got.extend(drain(&stack).iter().map(|p| payload_of(p)));
    assert_eq!(got, data);
    assert_eq!(polls, 50 / 8 + 1, "8 datagrams (the queue's room) per poll");
}

#[test]
fn a_datagram_that_cannot_be_sent_ends_the_batch_and_is_reported_alone() {
    let stack = stack(256);
    let socket = UdpSocket::new(&stack).unwrap();
    let (_recv, send) = socket.split();
    let too_large = vec![0u8; 70_000];
    let slices: [&[u8]; 3] = [b"before", &too_large, b"after"];
    let mut cx = Context::from_waker(Waker::noop());
    let (src, dst) = (endpoint(SERVER), endpoint(CLIENT));
    let r = send.poll_send_batch(&mut cx, &slices, src, dst);
    assert!(matches!(r, Poll::Ready(Ok(1))), "stops before it: {r:?}");
    let r = send.poll_send_batch(&mut cx, &slices[1..], src, dst);
    assert!(matches!(r, Poll::Ready(Err(Error::TooLarge))), "{r:?}");
    let r = send.poll_send_batch(&mut cx, &slices[2..], src, dst);
    assert!(matches!(r, Poll::Ready(Ok(1))), "{r:?}");
    let got: Vec<Vec<u8>> = drain(&stack).iter().map(|p| payload_of(p)).collect();
    assert_eq!(got, [b"before".to_vec(), b"after".to_vec()]);

    let bad = endpoint("93.184.216.34:0");
    let r = send.poll_send_batch(&mut cx, &slices[..1], bad, dst);
    assert!(
        matches!(r, Poll::Ready(Err(Error::InvalidAddress))),
        "{r:?}"
    );
}

/// A datagram reassembled from fragments is received where its last fragment arrived: between
/// the datagrams sent before and after it, as the sender sent them.
#[test]
fn a_reassembled_datagram_is_received_in_order_with_its_neighbours() {
    let sender = stack(256);
    let (_, send) = UdpSocket::new(&sender).unwrap().split();
    // The 3000-byte one arrives as three fragments (MTU 1500).
    let data = payloads(&[1, 1400, 3000, 512, 0]);
    let slices: Vec<&[u8]> = data.iter().map(Vec::as_slice).collect();
    let mut cx = Context::from_waker(Waker::noop());
    let r = send.poll_send_batch(&mut cx, &slices, endpoint(CLIENT), endpoint(SERVER));
    assert!(matches!(r, Poll::Ready(Ok(5))), "{r:?}");
    let mut packets: alloc::collections::VecDeque<Vec<u8>> = drain(&sender).into();
    assert_eq!(packets.len(), 7, "four whole datagrams and three fragments");

    let receiver = stack(256);
    let (recv, _) = UdpSocket::new(&receiver).unwrap().split();
    assert_eq!(receiver.poll_push_ingress_batch(&mut cx, &mut packets), 7);
    let mut received = Vec::new();
    let r = recv.poll_recv_batch(&mut cx, &mut received, 16);
    assert!(matches!(r, Poll::Ready(5)), "{r:?}");
    let lengths: Vec<usize> = received.iter().map(|d| d.payload().len()).collect();
    assert_eq!(
        lengths,
        [1, 1400, 3000, 512, 0],
        "received in the order sent"
    );
    for (d, sent) in received.iter().zip(&data) {
        assert!(
            d.payload() == &sent[..],
            "the datagram of {} bytes arrives whole",
            sent.len()
        );
    }
    assert_eq!(receiver.stats().ip.reassembled, 1);
}
