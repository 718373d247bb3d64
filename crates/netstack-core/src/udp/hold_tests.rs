//! In-memory tests of ingress waiting for the UDP reader ([`Config::udp_hold`]): the pump is
//! held (nothing dropped, order kept) while the reader drains the queue, released when it has
//! drained it to half, and no longer than the hold limit when it does not read at all.

extern crate std;

use alloc::collections::VecDeque;
use alloc::sync::Arc;
use alloc::vec::Vec;
use core::net::SocketAddr;
use core::task::{Context, Waker};

use embassy_sync::blocking_mutex::raw::NoopRawMutex;
use netstack_testkit::packets::udp_datagram;
use smoltcp::time::Duration;

use super::tests::CountingWaker;
use crate::tests::ManualClock;
use crate::{Clock, Config, Stack, UdpDatagram, UdpSocket};

type LocalStack = Stack<NoopRawMutex, ManualClock>;

/// A stack whose UDP queue holds `queue` datagrams, waiting `hold` for its reader.
fn stack(queue: usize, hold: Option<Duration>) -> LocalStack {
    let config = Config::default().udp_queue(queue).udp_hold(hold);
    Stack::new(config, ManualClock::default())
}

/// The packet pump's waker, and its count of wake-ups.
fn pump() -> (Arc<CountingWaker>, Waker) {
    let pump = Arc::new(CountingWaker::default());
    let waker = Waker::from(pump.clone());
    (pump, waker)
}

/// `n` datagrams from the device, numbered by their one-byte payload from `first`.
fn datagrams(first: u8, n: u8) -> VecDeque<Vec<u8>> {
    (first..first + n)
        .map(|i| {
            let src: SocketAddr = "10.0.0.1:40000".parse().unwrap();
            let dst: SocketAddr = "198.19.0.10:5201".parse().unwrap();
            udp_datagram(src, dst, &[i])
        })
        .collect()
}

/// Takes up to `max` datagrams as the application would; returns their numbers.
fn read(stack: &LocalStack, max: usize) -> Vec<u8> {
    let mut cx = Context::from_waker(Waker::noop());
    let mut out: Vec<UdpDatagram> = Vec::new();
    let _ = stack.poll_udp_recv_batch(&mut cx, &mut out, max);
    out.iter().map(|d| d.payload()[0]).collect()
}

#[test]
fn a_full_queue_holds_the_pump_without_a_drop_until_the_reader_drains_half() {
    let stack = stack(4, Some(Duration::from_millis(5)));
    let _socket = UdpSocket::new(&stack).unwrap();
    let (pump, waker) = pump();
    let mut cx = Context::from_waker(&waker);
    let mut batch = datagrams(0, 10);

    assert_eq!(stack.poll_push_ingress_batch(&mut cx, &mut batch), 4);
    assert_eq!(batch.len(), 6, "the rest waits at the pump");
    assert_eq!(stack.stats().udp.holds, 1);

    // One taken: still more than half full, the pump sleeps on.
    assert_eq!(read(&stack, 1), [0]);
    assert_eq!(pump.count(), 0);
    // Half: the pump is woken and the next four fit.
    assert_eq!(read(&stack, 1), [1]);
    assert_eq!(pump.count(), 1);
    assert_eq!(stack.poll_push_ingress_batch(&mut cx, &mut batch), 2);
    assert_eq!(read(&stack, 4), [2, 3, 4, 5]);
    assert_eq!(stack.poll_push_ingress_batch(&mut cx, &mut batch), 4);
    assert!(batch.is_empty());
    assert_eq!(read(&stack, 10), [6, 7, 8, 9]);

    let stats = stack.stats();
    assert_eq!(stats.drops.udp_queue_full, 0, "nothing dropped");
    assert_eq!(stats.udp.datagrams_in, 10);
    assert_eq!(stats.udp.holds_expired, 0);
}

#[test]
fn a_reader_that_does_not_read_holds_the_pump_only_until_the_limit() {
    let stack = stack(4, Some(Duration::from_millis(5)));
    let _socket = UdpSocket::new(&stack).unwrap();
    let (pump, waker) = pump();
    let mut cx = Context::from_waker(&waker);
    let mut batch = datagrams(0, 10);
    assert_eq!(stack.poll_push_ingress_batch(&mut cx, &mut batch), 4);

    // The runner's deadline is the end of the wait: before it nothing changes.
    let mut runner_cx = Context::from_waker(Waker::noop());
    let status = stack.poll_runner(&mut runner_cx);
    let deadline = status
        .deadline
        .expect("the runner must wake at the end of the wait");
    assert_eq!(deadline, stack.clock().now() + Duration::from_millis(5));
    stack.clock().0.advance(Duration::from_millis(4));
    let _ = stack.poll_runner(&mut runner_cx);
    assert_eq!(pump.count(), 0);

    // At the limit the pump is woken, and what does not fit is dropped and counted.
    stack.clock().0.advance(Duration::from_millis(1));
    let _ = stack.poll_runner(&mut runner_cx);
    assert_eq!(pump.count(), 1);
    assert_eq!(stack.poll_push_ingress_batch(&mut cx, &mut batch), 6);
    let stats = stack.stats();
    assert_eq!(stats.drops.udp_queue_full, 6);
    assert_eq!(stats.udp.holds_expired, 1);

    // Once the reader has drained the queue to half, a full queue is waited on again.
    assert_eq!(read(&stack, 2), [0, 1]);
    let mut more = datagrams(10, 4);
    assert_eq!(stack.poll_push_ingress_batch(&mut cx, &mut more), 2);
    assert_eq!(more.len(), 2);
    assert_eq!(stack.stats().udp.holds, 2);
}

#[test]
fn without_a_reader_or_with_the_hold_off_a_full_queue_drops_at_once() {
    let (pump, waker) = pump();
    let mut cx = Context::from_waker(&waker);

    let off = stack(4, None);
    let _socket = UdpSocket::new(&off).unwrap();
    let mut batch = datagrams(0, 10);
    assert_eq!(off.poll_push_ingress_batch(&mut cx, &mut batch), 10);
    assert_eq!(off.stats().drops.udp_queue_full, 6);

    let unclaimed = stack(4, Some(Duration::from_millis(5)));
    let mut batch = datagrams(0, 10);
    assert_eq!(unclaimed.poll_push_ingress_batch(&mut cx, &mut batch), 10);
    assert_eq!(unclaimed.stats().drops.udp_queue_full, 6);
    assert_eq!(unclaimed.stats().udp.holds, 0);

    // A reader that goes away releases a held pump.
    let held = stack(4, Some(Duration::from_millis(5)));
    let socket = UdpSocket::new(&held).unwrap();
    let mut batch = datagrams(0, 10);
    assert_eq!(held.poll_push_ingress_batch(&mut cx, &mut batch), 4);
    drop(socket);
    assert_eq!(pump.count(), 1);
    assert_eq!(held.poll_push_ingress_batch(&mut cx, &mut batch), 6);
    assert_eq!(held.stats().drops.udp_queue_full, 6);
}

/// The fragments of datagram `number` (3000 bytes, its first byte `number`) as the device
/// delivers them at MTU 1500, cut by another stack.
fn fragments(number: u8) -> VecDeque<Vec<u8>> {
    let sender = stack(16, None);
    let (_, send) = UdpSocket::new(&sender).unwrap().split();
    let mut payload = alloc::vec![0xaa; 3000];
    payload[0] = number;
    let src: SocketAddr = "10.0.0.1:40000".parse().unwrap();
    let dst: SocketAddr = "198.19.0.10:5201".parse().unwrap();
    let mut cx = Context::from_waker(Waker::noop());
    let sent = send.poll_send_batch(&mut cx, &[&payload[..]], src.into(), dst.into());
    assert!(matches!(sent, core::task::Poll::Ready(Ok(1))), "{sent:?}");
    let mut out = VecDeque::new();
    while let core::task::Poll::Ready(p) = sender.poll_egress(&mut cx) {
        out.push_back(p);
    }
    assert_eq!(out.len(), 3, "three fragments");
    out
}

#[test]
fn fragments_behind_a_held_datagram_wait_too_and_their_datagram_keeps_its_place() {
    let stack = stack(2, Some(Duration::from_millis(5)));
    let _socket = UdpSocket::new(&stack).unwrap();
    let (pump, waker) = pump();
    let mut cx = Context::from_waker(&waker);
    let mut batch = datagrams(0, 3);
    batch.extend(fragments(3));
    batch.extend(datagrams(4, 1));

    assert_eq!(stack.poll_push_ingress_batch(&mut cx, &mut batch), 2);
    assert_eq!(
        batch.len(),
        5,
        "datagram 2, the three fragments and datagram 4 wait"
    );
    assert_eq!(stack.stats().ip.fragments_in, 0, "no fragment taken yet");

    assert_eq!(read(&stack, 2), [0, 1]);
    assert_eq!(pump.count(), 1);
    // Datagram 2 and the reassembled one fill the queue; datagram 4 waits behind them.
    assert_eq!(stack.poll_push_ingress_batch(&mut cx, &mut batch), 4);
    assert_eq!(batch.len(), 1);
    assert_eq!(read(&stack, 2), [2, 3], "the reassembled one in its place");
    assert_eq!(stack.poll_push_ingress_batch(&mut cx, &mut batch), 1);
    assert_eq!(read(&stack, 4), [4]);
    let stats = stack.stats();
    assert_eq!(stats.ip.reassembled, 1);
    assert_eq!(stats.drops.udp_queue_full, 0, "nothing dropped");
}

#[test]
fn fragments_wait_for_room_so_the_datagram_they_complete_is_not_dropped() {
    let stack = stack(2, Some(Duration::from_millis(5)));
    let _socket = UdpSocket::new(&stack).unwrap();
    let (pump, waker) = pump();
    let mut cx = Context::from_waker(&waker);
    let mut batch = datagrams(0, 2);
    batch.extend(fragments(2));

    // The queue is full once datagrams 0 and 1 are in: the fragments wait.
    assert_eq!(stack.poll_push_ingress_batch(&mut cx, &mut batch), 2);
    assert_eq!(batch.len(), 3, "the three fragments wait");
    assert_eq!(stack.stats().udp.holds, 1);

    assert_eq!(read(&stack, 2), [0, 1]);
    assert_eq!(pump.count(), 1);
    assert_eq!(stack.poll_push_ingress_batch(&mut cx, &mut batch), 3);
    assert_eq!(read(&stack, 2), [2]);
    let stats = stack.stats();
    assert_eq!(stats.ip.reassembled, 1);
    assert_eq!(stats.drops.udp_queue_full, 0, "nothing dropped");
}
