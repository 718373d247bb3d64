//! In-memory tests of the whole core, with a smoltcp client as the peer, a manual clock and no
//! executor: everything is driven by hand, deterministically.

extern crate std;

use alloc::vec::Vec;
use core::task::{Context, Poll, Waker};

use embassy_sync::blocking_mutex::raw::NoopRawMutex;
use netstack_testkit::packets::{tcp_info, tcp_syn, Segment};
use netstack_testkit::{ManualTime, Peer, PEER_ADDR as PEER, TARGET_ADDR as TARGET};
use smoltcp::socket::tcp;
use smoltcp::time::{Duration, Instant};
use smoltcp::wire::{IpAddress, IpEndpoint};

use crate::{Clock, Config, Stack, TcpListener, TcpStream};

/// A clock that only moves when the test says so.
#[derive(Default)]
pub(crate) struct ManualClock(pub(crate) ManualTime);

impl Clock for ManualClock {
    fn now(&self) -> Instant {
        self.0.now()
    }
}

type LocalStack = Stack<NoopRawMutex, ManualClock>;

/// Polls a listener on `stack` once (listeners share the stack's accept queue).
fn accept<'s>(stack: &'s LocalStack, cx: &mut Context<'_>) -> Poll<TcpStream<&'s LocalStack>> {
    let listener: TcpListener<&LocalStack> = TcpListener::new(stack);
    match listener.poll_accept(cx) {
        Poll::Ready(Ok(stream)) => Poll::Ready(stream),
        Poll::Ready(Err(e)) => panic!("accept failed: {e}"),
        Poll::Pending => Poll::Pending,
    }
}

/// Moves packets both ways and runs both sides until nothing moves.
fn settle(stack: &LocalStack, peer: &mut Peer, cx: &mut Context<'_>) {
    for _ in 0..10_000 {
        peer.poll(stack.clock().now());
        let mut moved = false;
        while let Some(p) = peer.wire.to_stack.pop_front() {
            stack.push_ingress(p).unwrap();
            moved = true;
        }
        let _ = stack.poll_runner(cx);
        while let Poll::Ready(p) = stack.poll_egress(cx) {
            peer.wire.to_peer.push_back(p);
            moved = true;
        }
        if !moved {
            return;
        }
    }
    panic!("the exchange did not settle");
}

#[test]
fn handshake_data_half_close_and_reap_without_an_executor() {
    let stack = LocalStack::new(Config::default(), ManualClock::default());
    let mut peer = Peer::new();
    let mut cx = Context::from_waker(Waker::noop());
    let target = IpEndpoint::new(IpAddress::Ipv4(TARGET), 443);
    let h = peer.connect(40000, target, 65536);

    // Nothing is accepted before the handshake completes.
    assert!(accept(&stack, &mut cx).is_pending());
    settle(&stack, &mut peer, &mut cx);
    let conn: TcpStream<&LocalStack> = match accept(&stack, &mut cx) {
        Poll::Ready(c) => c,
        Poll::Pending => panic!("handshake did not complete: {}", stack.stats()),
    };
    assert_eq!(conn.local_endpoint(), target);
    assert_eq!(conn.remote_endpoint().port, 40000);

    // Peer → stack, then the peer half-closes.
    peer.socket(h).send_slice(b"request").unwrap();
    peer.socket(h).close();
    settle(&stack, &mut peer, &mut cx);
    let mut buf = [0u8; 64];
    assert_eq!(conn.poll_read(&mut cx, &mut buf), Poll::Ready(Ok(7)));
    assert_eq!(&buf[..7], b"request");
    assert_eq!(
        conn.poll_read(&mut cx, &mut buf),
        Poll::Ready(Ok(0)),
        "FIN = EOF"
    );

    // Stack → peer still works after the peer's FIN; then the stack closes too.
    assert_eq!(conn.poll_write(&mut cx, b"reply"), Poll::Ready(Ok(5)));
    conn.shutdown_write().unwrap();
    settle(&stack, &mut peer, &mut cx);
    assert_eq!(peer.read_all(h), b"reply");
    assert!(!peer.socket(h).may_recv(), "peer saw the stack's FIN");

    // Dropping the handle lets the core reap the connection.
    drop(conn);
    stack.clock().0.set(Instant::from_millis(1_000));
    settle(&stack, &mut peer, &mut cx);
    let stats = stack.stats();
    assert_eq!(
        stats.tcp.open + stats.tcp.closing + stats.tcp.syn_received,
        0,
        "{stats}"
    );
    assert_eq!(stats.tcp.accepted, 1);
}

#[test]
fn half_open_connection_expires_under_simulated_time() {
    let config = Config::default().syn_timeout(Duration::from_secs(3));
    let stack = LocalStack::new(config, ManualClock::default());
    let mut peer = Peer::new();
    let mut cx = Context::from_waker(Waker::noop());
    let target = IpEndpoint::new(IpAddress::Ipv4(TARGET), 80);
    peer.connect(40001, target, 65536);
    // Deliver the SYN but lose everything the stack answers.
    peer.poll(Instant::ZERO);
    while let Some(p) = peer.wire.to_stack.pop_front() {
        stack.push_ingress(p).unwrap();
    }
    let status = stack.poll_runner(&mut cx);
    assert_eq!(stack.stats().tcp.syn_received, 1);
    assert!(
        status.deadline.is_some(),
        "a half-open connection needs a timer"
    );
    while stack.poll_egress(&mut cx).is_ready() {}

    stack.clock().0.set(Instant::from_millis(3_001));
    let status = stack.poll_runner(&mut cx);
    let stats = stack.stats();
    assert_eq!(stats.tcp.syn_received, 0, "{stats}");
    assert_eq!(stats.tcp.syn_expired, 1);
    assert_eq!(status.deadline, None, "nothing left to time");
}

/// A waker that counts its wake-ups.
struct CountingWaker(core::sync::atomic::AtomicUsize);

impl alloc::task::Wake for CountingWaker {
    fn wake(self: alloc::sync::Arc<Self>) {
        self.0.fetch_add(1, core::sync::atomic::Ordering::SeqCst);
    }
}

fn counting_waker() -> (alloc::sync::Arc<CountingWaker>, Waker) {
    let counter = alloc::sync::Arc::new(CountingWaker(core::sync::atomic::AtomicUsize::new(0)));
    (counter.clone(), Waker::from(counter))
}

#[test]
fn every_packet_source_waiting_for_ingress_room_is_woken() {
    // Two clones of a packet sink (a TUN reader and an injector, say) wait on a full queue at
    // once; a single waker slot would forget one of them and stall it forever.
    let stack = LocalStack::new(Config::default().ingress_queue(1), ManualClock::default());
    // A TCP segment waits in the ingress queue for the runner (other packets do not).
    let segment = tcp_syn((PEER, 40000), (TARGET, 80), 1);
    stack.push_ingress(segment).unwrap();
    let (a, waker_a) = counting_waker();
    let (b, waker_b) = counting_waker();
    assert!(stack
        .poll_ingress_ready(&mut Context::from_waker(&waker_a))
        .is_pending());
    assert!(stack
        .poll_ingress_ready(&mut Context::from_waker(&waker_b))
        .is_pending());
    let _ = stack.poll_runner(&mut Context::from_waker(Waker::noop()));
    let woken = |c: &CountingWaker| c.0.load(core::sync::atomic::Ordering::SeqCst);
    assert_eq!((woken(&a), woken(&b)), (1, 1));
}

/// The smallest executor that can run the core's futures: it polls each task in turn with a
/// no-op waker, and between rounds lets the test move packets and time. No tokio, no async-io:
/// the core needs nothing from an executor but `poll`.
fn run_tasks(
    mut tasks: Vec<core::pin::Pin<alloc::boxed::Box<dyn core::future::Future<Output = ()> + '_>>>,
    mut between_rounds: impl FnMut(),
) {
    let mut cx = Context::from_waker(Waker::noop());
    for _ in 0..100_000 {
        tasks.retain_mut(|t| t.as_mut().poll(&mut cx).is_pending());
        if tasks.is_empty() {
            return;
        }
        between_rounds();
    }
    panic!("tasks did not finish");
}

#[test]
fn async_echo_runs_on_a_hand_written_executor_under_simulated_time() {
    let stack = LocalStack::new(Config::default(), ManualClock::default());
    let peer = core::cell::RefCell::new(Peer::new());
    let target = IpEndpoint::new(IpAddress::Ipv4(TARGET), 7);
    let h = peer.borrow_mut().connect(40002, target, 65536);
    let echoed = core::cell::RefCell::new(Vec::new());

    let app = async {
        let conn = core::future::poll_fn(|cx| accept(&stack, cx)).await;
        let mut got = Vec::new();
        let mut buf = [0u8; 64];
        loop {
            let n = core::future::poll_fn(|cx| conn.poll_read(cx, &mut buf))
                .await
                .unwrap();
            if n == 0 {
                break; // the peer's FIN
            }
            got.extend_from_slice(&buf[..n]);
        }
        let mut sent = 0;
        while sent < got.len() {
            sent += core::future::poll_fn(|cx| conn.poll_write(cx, &got[sent..]))
                .await
                .unwrap();
        }
        conn.shutdown_write().unwrap();
    };
    let mut closed = false;
    run_tasks(alloc::vec![alloc::boxed::Box::pin(app)], || {
        // The "network" and the clock: 1 ms of simulated time per round.
        let mut peer = peer.borrow_mut();
        stack.clock().0.advance(Duration::from_millis(1));
        settle(&stack, &mut peer, &mut Context::from_waker(Waker::noop()));
        let socket = peer.socket(h);
        if !closed && socket.state() == tcp::State::Established {
            // Once connected: send, and half-close.
            socket.send_slice(b"hello, executor").unwrap();
            socket.close();
            closed = true;
        }
        echoed.borrow_mut().extend(peer.read_all(h));
    });
    // Deliver the stack's last segments (the echo and its FIN) to the peer.
    settle(
        &stack,
        &mut peer.borrow_mut(),
        &mut Context::from_waker(Waker::noop()),
    );
    let mut peer = peer.borrow_mut();
    echoed.borrow_mut().extend(peer.read_all(h));
    assert_eq!(&echoed.borrow()[..], b"hello, executor");
    assert!(!peer.socket(h).may_recv(), "the stack's FIN arrived");
}

#[test]
fn ack_on_a_segment_beyond_a_zero_window_is_not_ignored() {
    // A tiny receive buffer that the peer fills, so the stack's window is zero.
    let config = Config::default().tcp_rx_buffer(1024).tcp_tx_buffer(4096);
    let stack = LocalStack::new(config, ManualClock::default());
    let mut peer = Peer::new();
    let mut cx = Context::from_waker(Waker::noop());
    let target = IpEndpoint::new(IpAddress::Ipv4(TARGET), 9);
    let h = peer.connect(40003, target, 65536);
    settle(&stack, &mut peer, &mut cx);
    let conn = match accept(&stack, &mut cx) {
        Poll::Ready(c) => c,
        Poll::Pending => panic!("no connection"),
    };
    peer.socket(h).send_slice(&[7u8; 1024]).unwrap();
    settle(&stack, &mut peer, &mut cx);
    // The application writes but never reads: its data goes out, the stack's window stays 0.
    assert_eq!(conn.poll_write(&mut cx, &[1u8; 100]), Poll::Ready(Ok(100)));
    let _ = stack.poll_runner(&mut cx);
    let mut data_segment = None;
    while let Poll::Ready(p) = stack.poll_egress(&mut cx) {
        let tcp = tcp_info(&p).expect("a TCP segment");
        if tcp.payload_len == 100 {
            data_segment = Some((tcp.seq, tcp.ack.expect("an ACK")));
        }
    }
    let (seq, ack) = data_segment.expect("the stack sent the application's data");
    assert_eq!(conn.send_queue(), 100);
    // The peer acknowledges it on a pure ACK whose sequence number lies 4 bytes beyond the
    // stack's (zero) window, as Linux does after sending into a window that was then shrunk.
    let segment = Segment {
        seq: ack + 4,
        ack: Some(seq + 100),
        window: 1000,
        ..Segment::new((PEER, 40003), (TARGET, 9))
    };
    stack.push_ingress(segment.build()).unwrap();
    let _ = stack.poll_runner(&mut cx);
    assert_eq!(
        conn.send_queue(),
        0,
        "the ACK must be processed even though its segment is outside the zero window"
    );
}

#[test]
fn with_tcp_checksum_offload_segments_leave_the_checksum_to_the_device() {
    for offload in [false, true] {
        let config = Config::default().tcp_checksum_offload(offload);
        let stack = LocalStack::new(config, ManualClock::default());
        let mut cx = Context::from_waker(Waker::noop());
        let peer = IpEndpoint::new(IpAddress::Ipv4(PEER), 40000);
        let target = IpEndpoint::new(IpAddress::Ipv4(TARGET), 80);
        stack.push_ingress(tcp_syn(peer, target, 1000)).unwrap();
        let _ = stack.poll_runner(&mut cx);
        let Poll::Ready(synack) = stack.poll_egress(&mut cx) else {
            panic!("no SYN-ACK: {}", stack.stats());
        };
        let checksum = u16::from_be_bytes([synack[20 + 16], synack[20 + 17]]);
        if offload {
            assert_eq!(checksum, 0, "left for the device");
        } else {
            assert!(tcp_info(&synack).is_some(), "a valid segment");
            assert_ne!(checksum, 0);
        }
    }
}

#[test]
fn recycled_packet_buffers_carry_the_next_segments() {
    let stack = LocalStack::new(Config::default(), ManualClock::default());
    let mut peer = Peer::new();
    let mut cx = Context::from_waker(Waker::noop());
    let target = IpEndpoint::new(IpAddress::Ipv4(TARGET), 7);
    let h = peer.connect(40001, target, 65536);
    settle(&stack, &mut peer, &mut cx);
    let Poll::Ready(conn) = accept(&stack, &mut cx) else {
        panic!("not accepted: {}", stack.stats());
    };
    // The device wrote a packet and gives its buffer back.
    let written = alloc::vec![0xeeu8; 1500];
    let buffer = written.as_ptr();
    stack.recycle([written]);
    assert_eq!(conn.poll_write(&mut cx, b"reply"), Poll::Ready(Ok(5)));
    let _ = stack.poll_runner(&mut cx);
    let Poll::Ready(segment) = stack.poll_egress(&mut cx) else {
        panic!("nothing sent: {}", stack.stats());
    };
    assert_eq!(
        segment.as_ptr(),
        buffer,
        "the segment reuses the recycled buffer"
    );
    assert!(
        tcp_info(&segment).is_some_and(|t| t.payload_len == 5),
        "a whole, valid segment"
    );
    peer.wire.to_peer.push_back(segment);
    settle(&stack, &mut peer, &mut cx);
    let mut got = [0u8; 5];
    assert_eq!(peer.socket(h).recv_slice(&mut got), Ok(5));
    assert_eq!(&got, b"reply");
}

#[test]
fn idle_connections_give_their_buffer_pages_back() {
    let config = Config::default().tcp_idle_trim(Some(Duration::from_secs(2)));
    let stack = LocalStack::new(config, ManualClock::default());
    let mut peer = Peer::new();
    let mut cx = Context::from_waker(Waker::noop());
    let target = IpEndpoint::new(IpAddress::Ipv4(TARGET), 22);
    let h = peer.connect(40002, target, 65536);
    settle(&stack, &mut peer, &mut cx);
    let Poll::Ready(conn) = accept(&stack, &mut cx) else {
        panic!("not accepted: {}", stack.stats());
    };
    let exchange = |peer: &mut Peer, what: &[u8]| {
        peer.socket(h).send_slice(what).unwrap();
        settle(&stack, peer, &mut Context::from_waker(Waker::noop()));
        let mut got = [0u8; 16];
        let Poll::Ready(Ok(n)) = conn.poll_read(&mut Context::from_waker(Waker::noop()), &mut got)
        else {
            panic!("nothing to read");
        };
        assert_eq!(&got[..n], what);
        assert_eq!(
            conn.poll_write(&mut Context::from_waker(Waker::noop()), &got[..n]),
            Poll::Ready(Ok(n))
        );
        settle(&stack, peer, &mut Context::from_waker(Waker::noop()));
        let mut back = [0u8; 16];
        assert_eq!(peer.socket(h).recv_slice(&mut back), Ok(n));
        assert_eq!(&back[..n], what);
    };
    exchange(&mut peer, b"before");
    // Not idle long enough yet.
    stack.clock().0.advance(Duration::from_secs(1));
    let status = stack.poll_runner(&mut cx);
    assert_eq!(stack.stats().tcp.buffers_trimmed, 0);
    let due = status.deadline.expect("the trim is scheduled");
    assert!(
        due <= stack.clock().now() + Duration::from_secs(1),
        "{due:?}"
    );
    stack.clock().0.advance(Duration::from_millis(1100));
    let _ = stack.poll_runner(&mut cx);
    assert_eq!(stack.stats().tcp.buffers_trimmed, 1, "{}", stack.stats());
    // Once trimmed, nothing more to do until data moves.
    stack.clock().0.advance(Duration::from_secs(10));
    let _ = stack.poll_runner(&mut cx);
    assert_eq!(stack.stats().tcp.buffers_trimmed, 1);
    // The connection goes on in its new buffers, and trims again after the next silence.
    exchange(&mut peer, b"after");
    stack.clock().0.advance(Duration::from_secs(3));
    let _ = stack.poll_runner(&mut cx);
    assert_eq!(stack.stats().tcp.buffers_trimmed, 2);
}

/// Runs the runner once, drains (and returns) what the stack sent.
fn run_and_drain(stack: &LocalStack) -> Vec<Vec<u8>> {
    let mut cx = Context::from_waker(Waker::noop());
    let _ = stack.poll_runner(&mut cx);
    let mut out = Vec::new();
    while let Poll::Ready(p) = stack.poll_egress(&mut cx) {
        out.push(p);
    }
    out
}

/// An accepted connection request whose handshake never completes: the task waiting for it
/// in `accept()` is woken and told, when the handshake expires (`syn_timeout`) or the peer
/// resets it, instead of waiting forever (a forwarder that dials first would otherwise keep
/// the upstream connection it dialed for every spoofed SYN).
#[test]
fn a_failed_handshake_of_an_accepted_request_wakes_its_waiter() {
    use core::future::Future;
    use smoltcp::wire::TcpControl;

    for reset in [false, true] {
        let config = Config::default()
            .connection_requests(true)
            .syn_timeout(Duration::from_secs(3));
        let stack = LocalStack::new(config, ManualClock::default());
        let listener: TcpListener<&LocalStack> = TcpListener::new(&stack);
        let (peer, target) = ((PEER, 40010), (TARGET, 80));
        stack.push_ingress(tcp_syn(peer, target, 100)).unwrap();
        assert!(
            run_and_drain(&stack).is_empty(),
            "nothing answers a request yet"
        );
        let mut cx = Context::from_waker(Waker::noop());
        let request = match listener.poll_incoming(&mut cx) {
            Poll::Ready(Ok(crate::Incoming::Request(r))) => r,
            other => panic!("expected a request, got {other:?}"),
        };
        let mut accepting = core::pin::pin!(request.accept());
        let (woken, waker) = counting_waker();
        let mut task = Context::from_waker(&waker);
        assert!(accepting.as_mut().poll(&mut task).is_pending());
        let answer = run_and_drain(&stack);
        assert!(
            answer.iter().any(|p| tcp_info(p).is_some_and(|t| t.syn)),
            "a SYN-ACK"
        );

        if reset {
            let rst = Segment::new(peer, target)
                .control(TcpControl::Rst)
                .seq(101)
                .build();
            stack.push_ingress(rst).unwrap();
        } else {
            stack.clock().0.set(Instant::from_millis(3_001));
        }
        run_and_drain(&stack);
        let count = woken.0.load(core::sync::atomic::Ordering::SeqCst);
        assert!(count >= 1, "reset {reset}: the waiter was not woken");
        match accepting.as_mut().poll(&mut task) {
            Poll::Ready(Err(crate::TcpError::ConnectionReset)) => {}
            other => panic!("reset {reset}: accept() gave {other:?}"),
        }
        assert_eq!(stack.stats().tcp.syn_received, 0, "{}", stack.stats());
    }
}

#[test]
fn lent_reads_and_writes_move_bytes_in_place_and_leave_the_waker_registered() {
    // A 4 KiB ring each way, so the lent slices wrap (and no growth).
    let config = Config::default()
        .tcp_rx_buffer(4096)
        .tcp_tx_buffer(4096)
        .tcp_rx_buffer_max(4096)
        .tcp_tx_buffer_max(4096);
    let stack = LocalStack::new(config, ManualClock::default());
    let mut peer = Peer::new();
    let mut noop = Context::from_waker(Waker::noop());
    let (counter, waker) = counting_waker();
    let mut cx = Context::from_waker(&waker);
    let wakes = || counter.0.load(core::sync::atomic::Ordering::SeqCst);
    let target = IpEndpoint::new(IpAddress::Ipv4(TARGET), 7);
    let h = peer.connect(40010, target, 65536);
    settle(&stack, &mut peer, &mut noop);
    let conn = match accept(&stack, &mut noop) {
        Poll::Ready(c) => c,
        Poll::Pending => panic!("no connection"),
    };
    let pattern = |from: usize, len: usize| -> Vec<u8> {
        (from..from + len).map(|i| (i % 251) as u8).collect()
    };

    // Nothing queued: Pending, the closure is not called, and arriving data wakes us.
    let r = conn.poll_read_with(&mut cx, |_| panic!("called with nothing to read"));
    assert!(r.is_pending());
    peer.socket(h).send_slice(&pattern(0, 3000)).unwrap();
    settle(&stack, &mut peer, &mut noop);
    assert_eq!(wakes(), 1, "data woke the reader");

    // A closure that takes less than it is lent stops the call there.
    let mut got = Vec::new();
    let r = conn.poll_read_with(&mut cx, |data| {
        let n = data.len().min(1000);
        got.extend_from_slice(&data[..n]);
        n
    });
    assert_eq!(r, Poll::Ready(Ok(Some(1000))));
    // Taking everything drains the ring and leaves the waker registered: more data wakes us
    // with no further call.
    let r = conn.poll_read_with(&mut cx, |data| {
        got.extend_from_slice(data);
        data.len()
    });
    assert_eq!(r, Poll::Ready(Ok(Some(2000))));
    assert_eq!(got, pattern(0, 3000));
    peer.socket(h).send_slice(&pattern(3000, 3000)).unwrap();
    settle(&stack, &mut peer, &mut noop);
    assert_eq!(wakes(), 2, "the drained read left the waker registered");
    // The new bytes wrap around the 4 KiB ring: two slices, in order, in one call.
    let mut slices = Vec::new();
    let mut got = Vec::new();
    let r = conn.poll_read_with(&mut cx, |data| {
        slices.push(data.len());
        got.extend_from_slice(data);
        data.len() + 99 // more than the slice counts as all of it
    });
    assert_eq!(r, Poll::Ready(Ok(Some(3000))));
    assert_eq!(slices.len(), 2, "the ring wrapped: {slices:?}");
    assert_eq!(got, pattern(3000, 3000));

    // Data and FIN together: the drained read wakes at once, the next one is end of stream.
    peer.socket(h).send_slice(b"end").unwrap();
    peer.socket(h).close();
    settle(&stack, &mut peer, &mut noop);
    let before = wakes();
    let r = conn.poll_read_with(&mut cx, |data| data.len());
    assert_eq!(r, Poll::Ready(Ok(Some(3))));
    assert_eq!(
        wakes(),
        before + 1,
        "the FIN behind the data is reported by a wake"
    );
    let r = conn.poll_read_with(&mut cx, |_| panic!("called at end of stream"));
    assert_eq!(r, Poll::Ready(Ok(None)));

    // Writes: the closure fills the free space in place; filling it all leaves the waker
    // registered, and the peer's ACKs wake us for room.
    let mut written = 0;
    let r = conn.poll_write_with(&mut cx, |free| {
        free.copy_from_slice(&pattern(written, free.len()));
        written += free.len();
        free.len()
    });
    assert_eq!(r, Poll::Ready(Ok(4096)));
    let r = conn.poll_write_with(&mut cx, |_| panic!("called with a full buffer"));
    assert!(r.is_pending());
    let before = wakes();
    settle(&stack, &mut peer, &mut noop);
    assert!(wakes() > before, "room woke the writer");
    let r = conn.poll_write_with(&mut cx, |free| {
        free[..10].copy_from_slice(&pattern(4096, 10));
        10
    });
    assert_eq!(
        r,
        Poll::Ready(Ok(10)),
        "a closure that fills less stops the call"
    );
    settle(&stack, &mut peer, &mut noop);
    assert_eq!(peer.read_all(h), pattern(0, 4106));
}

/// Reads everything `conn` has queued; returns the bytes.
fn read_queued(conn: &TcpStream<&LocalStack>, cx: &mut Context<'_>) -> Vec<u8> {
    let mut got = Vec::new();
    while let Poll::Ready(Ok(Some(_))) = conn.poll_read_with(cx, |data| {
        got.extend_from_slice(data);
        data.len()
    }) {}
    got
}

#[test]
fn buffers_grow_when_filled_up_to_their_maximum_and_are_counted_exactly() {
    // 16 KiB buffers that may grow to 128 KiB: the SYN-ACK offers the scale of 128 KiB.
    let config = Config::default()
        .tcp_rx_buffer(16 * 1024)
        .tcp_tx_buffer(16 * 1024)
        .tcp_rx_buffer_max(128 * 1024)
        .tcp_tx_buffer_max(128 * 1024);
    let stack = LocalStack::new(config, ManualClock::default());
    let mut peer = Peer::new();
    let mut cx = Context::from_waker(Waker::noop());
    let target = IpEndpoint::new(IpAddress::Ipv4(TARGET), 9);
    let h = peer.connect(40020, target, 1 << 20);
    settle(&stack, &mut peer, &mut cx);
    let conn = match accept(&stack, &mut cx) {
        Poll::Ready(c) => c,
        Poll::Pending => panic!("no connection"),
    };
    assert_eq!(stack.stats().tcp.buffer_bytes, 32 * 1024);
    assert_eq!(
        peer.socket(h).remote_window(),
        16 * 1024,
        "the first window"
    );

    // The peer fills the receive window; each read of a full buffer doubles it.
    let pattern = |from: usize, len: usize| -> Vec<u8> {
        (from..from + len).map(|i| (i % 251) as u8).collect()
    };
    let mut sent = 0;
    let mut received = Vec::new();
    for round in 0..5 {
        let room = peer.socket(h).remote_window();
        let n = peer.socket(h).send_slice(&pattern(sent, room)).unwrap();
        sent += n;
        settle(&stack, &mut peer, &mut cx);
        received.extend(read_queued(&conn, &mut cx));
        settle(&stack, &mut peer, &mut cx);
        let expected = ((16 * 1024usize) << (round + 1)).min(128 * 1024);
        assert_eq!(
            peer.socket(h).remote_window(),
            expected,
            "round {round}: the window the peer sees"
        );
    }
    assert_eq!(
        received,
        pattern(0, sent),
        "no byte lost or moved by a growth"
    );
    let stats = stack.stats().tcp;
    assert_eq!(
        stats.buffers_grown, 3,
        "16 → 32 → 64 → 128 KiB, then no more"
    );
    assert_eq!(stats.buffer_bytes, (128 + 16) * 1024);

    // The send buffer grows when the application fills it and the peer's window is larger.
    let mut written = 0;
    for _ in 0..3 {
        let r = conn.poll_write_with(&mut cx, |free| {
            free.copy_from_slice(&pattern(written, free.len()));
            written += free.len();
            free.len()
        });
        assert!(r.is_ready());
    }
    // Nothing is acknowledged meanwhile: each fill doubled the buffer, and the next write
    // filled the new half (16 + 16 + 32 KiB), leaving a 128 KiB buffer.
    assert_eq!(written, 64 * 1024, "the buffer doubled after each fill");
    settle(&stack, &mut peer, &mut cx);
    assert_eq!(peer.read_all(h), pattern(0, written));
    assert_eq!(stack.stats().tcp.buffer_bytes, (128 + 128) * 1024);

    // Gone, the connection gives its bytes back to the budget.
    drop(conn);
    peer.socket(h).close();
    settle(&stack, &mut peer, &mut cx);
    stack.clock().0.advance(Duration::from_secs(300));
    settle(&stack, &mut peer, &mut cx);
    assert_eq!(stack.stats().tcp.buffer_bytes, 0, "{}", stack.stats());
}

#[test]
fn buffers_grow_only_within_three_quarters_of_the_budget() {
    // Budget 64 KiB: a connection (16 + 16 KiB) is admitted, its receive buffer may grow
    // once (to 48 KiB in all), not twice (80 KiB > 48 KiB, three quarters of the budget).
    let config = Config::default()
        .tcp_rx_buffer(16 * 1024)
        .tcp_tx_buffer(16 * 1024)
        .tcp_rx_buffer_max(1 << 20)
        .tcp_buffer_budget(64 * 1024);
    let stack = LocalStack::new(config, ManualClock::default());
    let mut peer = Peer::new();
    let mut cx = Context::from_waker(Waker::noop());
    let target = IpEndpoint::new(IpAddress::Ipv4(TARGET), 9);
    let h = peer.connect(40021, target, 1 << 20);
    settle(&stack, &mut peer, &mut cx);
    let conn = match accept(&stack, &mut cx) {
        Poll::Ready(c) => c,
        Poll::Pending => panic!("no connection"),
    };
    for _ in 0..3 {
        let room = peer.socket(h).remote_window();
        peer.socket(h).send_slice(&alloc::vec![7u8; room]).unwrap();
        settle(&stack, &mut peer, &mut cx);
        read_queued(&conn, &mut cx);
        settle(&stack, &mut peer, &mut cx);
    }
    let stats = stack.stats().tcp;
    assert_eq!(stats.buffers_grown, 1, "{}", stack.stats());
    assert!(stats.growth_refused_budget >= 1, "{}", stack.stats());
    assert_eq!(stats.buffer_bytes, 48 * 1024);
    // The window of the 32 KiB buffer, in units of the scale of 1 MiB (32 bytes).
    let window = peer.socket(h).remote_window();
    assert!((32 * 1024 - 32..=32 * 1024).contains(&window), "{window}");
    // A second connection's first buffers still fit (48 + 32 > 64 KiB does not: refused).
    let h2 = peer.connect(40022, target, 65536);
    settle(&stack, &mut peer, &mut cx);
    assert_eq!(
        stack.stats().tcp.refused_memory_budget,
        1,
        "{}",
        stack.stats()
    );
    assert!(!peer.socket(h2).is_active());
}

/// Fills `h`'s window from the peer once and lets `conn` read it all.
fn fill_window_once(
    stack: &LocalStack,
    peer: &mut Peer,
    h: smoltcp::iface::SocketHandle,
    conn: &TcpStream<&LocalStack>,
    cx: &mut Context<'_>,
) {
    let room = peer.socket(h).remote_window();
    peer.socket(h).send_slice(&alloc::vec![7u8; room]).unwrap();
    settle(stack, peer, cx);
    read_queued(conn, cx);
    settle(stack, peer, cx);
}

#[test]
fn connections_share_the_growth_limit_and_get_it_back_when_gone() {
    // Growth limited to 48 KiB: the first connection takes it all (16 → 32 → 64 KiB), the
    // second cannot grow until the first is gone.
    let config = Config::default()
        .tcp_rx_buffer(16 * 1024)
        .tcp_tx_buffer(16 * 1024)
        .tcp_rx_buffer_max(1 << 20)
        .tcp_buffer_growth(48 * 1024);
    let stack = LocalStack::new(config, ManualClock::default());
    let mut peer = Peer::new();
    let mut cx = Context::from_waker(Waker::noop());
    let target = IpEndpoint::new(IpAddress::Ipv4(TARGET), 9);
    let a = peer.connect(40030, target, 1 << 20);
    let b = peer.connect(40031, target, 1 << 20);
    settle(&stack, &mut peer, &mut cx);
    let mut conns = Vec::new();
    while let Poll::Ready(c) = accept(&stack, &mut cx) {
        conns.push(c);
    }
    assert_eq!(conns.len(), 2);
    // Which stream is which: the one the peer's first socket reaches.
    let port_a = peer.socket(a).local_endpoint().unwrap().port;
    let (conn_a, conn_b) = if conns[0].remote_endpoint().port == port_a {
        (conns.remove(0), conns.remove(0))
    } else {
        let second = conns.remove(1);
        (second, conns.remove(0))
    };
    for _ in 0..3 {
        fill_window_once(&stack, &mut peer, a, &conn_a, &mut cx);
    }
    // Windows in units of the scale of 1 MiB (32 bytes).
    let window_is = |peer: &mut Peer, h, bytes: usize| {
        let window = peer.socket(h).remote_window();
        assert!(
            (bytes - 32..=bytes).contains(&window),
            "{window}, not {bytes}"
        );
    };
    window_is(&mut peer, a, 64 * 1024);
    fill_window_once(&stack, &mut peer, b, &conn_b, &mut cx);
    window_is(&mut peer, b, 16 * 1024);
    let stats = stack.stats().tcp;
    assert_eq!(stats.buffers_grown, 2);
    assert!(stats.growth_refused_budget >= 1);

    // The first connection goes; its growth comes back, and the second may grow.
    drop(conn_a);
    peer.socket(a).close();
    settle(&stack, &mut peer, &mut cx);
    // Past TIME-WAIT (the stack closed first), within the other's idle timeout.
    stack.clock().0.advance(Duration::from_secs(20));
    settle(&stack, &mut peer, &mut cx);
    assert_eq!(
        stack.stats().tcp.buffer_bytes,
        32 * 1024,
        "{}",
        stack.stats()
    );
    fill_window_once(&stack, &mut peer, b, &conn_b, &mut cx);
    window_is(&mut peer, b, 32 * 1024);
}
