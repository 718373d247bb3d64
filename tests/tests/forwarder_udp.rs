//! The forwarders' UDP paths against kernel sockets. Download: datagrams a target sends back to a
//! flow are read from the flow's socket in batches and handed to the stack in batches, and must
//! still reach the client whole, once each and in order, whatever their sizes. Upload: what
//! the client sends reaches the target the same way, whether the flow table sends it directly
//! or through the flow's queue.
//!
//! Every test runs the forwarder as a process in a namespace of its own, with
//! `--redirect 127.0.0.1 --redirect ::1`: the target is a kernel socket on loopback there, the
//! client a kernel socket behind the TUN device.
#![allow(unsafe_code)] // one `setsockopt`, argued where it is

use std::net::{SocketAddr, UdpSocket};
use std::os::fd::AsRawFd;
use std::path::PathBuf;
use std::time::Duration;

use netstack_tests::forwarder::{counter, ForwarderProcess};
use netstack_tests::{pattern, tun_forward_binary, tun_forward_smol_binary};

/// Datagrams the target sends back per flow.
const REPLIES: usize = 200;
/// The target sends them in bursts of this many, each read by the client before the next: a
/// burst is more than one batched read can miss, and fits the client's and the flow's
/// receive buffers, which the kernel would otherwise overrun (UDP may drop; this test checks
/// that the relay does not).
const BURST: usize = 25;
/// Where the long datagram is among the replies (inside a burst, not at its start).
const LONG_AT: usize = 110;
/// Its length: IP fragments on the TUN link (MTU 1500), one read of 60000 bytes for the relay.
const LONG: usize = 60_000;

/// The length of reply `i`: mixed small and MTU-sized ones, an empty one, and one long one.
fn reply_len(i: usize) -> usize {
    if i == LONG_AT {
        LONG
    } else {
        [1, 1400, 0, 512, 1472, 33, 1000][i % 7]
    }
}

/// The length of reply `i` for the train test: 1200 bytes, but the last of each burst shorter
/// (it ends a train; the kernel must still cut it off whole).
fn train_reply_len(i: usize) -> usize {
    if i % BURST == BURST - 1 {
        300
    } else {
        1200
    }
}

/// Grows `socket`'s receive buffer (up to the namespace's `rmem_max`).
fn big_receive_buffer(socket: &UdpSocket) {
    let size: libc::c_int = 1 << 20;
    // SAFETY: setsockopt reads `size_of::<c_int>()` bytes from `&size`, which lives for the
    // call, on a descriptor `socket` owns.
    let rc = unsafe {
        libc::setsockopt(
            socket.as_raw_fd(),
            libc::SOL_SOCKET,
            libc::SO_RCVBUF,
            std::ptr::from_ref(&size).cast(),
            std::mem::size_of::<libc::c_int>() as libc::socklen_t,
        )
    };
    assert_eq!(rc, 0, "SO_RCVBUF: {}", std::io::Error::last_os_error());
}

/// IPv4 flows to 127.0.0.1, IPv6 flows to ::1.
const REDIRECTS: [&str; 4] = ["--redirect", "127.0.0.1", "--redirect", "::1"];

/// A target on `target_ip` and a client connected to it through the forwarder as `via`
/// (`PORT` standing for the target's port), both with large receive buffers and a read
/// timeout of 10 s.
fn flow_sockets(target_ip: &str, via: &str) -> (UdpSocket, UdpSocket) {
    let target = UdpSocket::bind((target_ip, 0)).expect("bind the target");
    let port = target.local_addr().unwrap().port();
    let client_bind = if via.starts_with('[') {
        "[::]:0"
    } else {
        "0.0.0.0:0"
    };
    let client = UdpSocket::bind(client_bind).expect("bind the client");
    let to: SocketAddr = via.replace("PORT", &port.to_string()).parse().unwrap();
    client.connect(to).unwrap();
    for s in [&target, &client] {
        big_receive_buffer(s);
        s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    }
    (target, client)
}

/// Checks that `what` number `at` arrived as `got`: exactly the `sent` bytes.
fn assert_whole(what: &str, at: usize, got: &[u8], sent: &[u8]) {
    assert_eq!(
        (got.len(), got == sent),
        (sent.len(), true),
        "{what} {at}: {} bytes where {} were sent, or other bytes (out of order?)",
        got.len(),
        sent.len()
    );
}

/// One flow through the forwarder to a target on `target_ip`, reached as `via`: the client
/// opens it, the target answers with [`REPLIES`] datagrams in bursts, and the client must
/// receive each of them whole, once, in order.
fn replies_arrive_whole_and_in_order(
    target_ip: &str,
    via: &str,
    seed: u64,
    reply_len: fn(usize) -> usize,
) {
    let (target, client) = flow_sockets(target_ip, via);

    client.send(b"hello").unwrap();
    let mut buf = vec![0u8; 65536];
    let (n, flow) = target
        .recv_from(&mut buf)
        .expect("the flow reaches the target");
    assert_eq!(&buf[..n], b"hello");

    let replies: Vec<Vec<u8>> = (0..REPLIES)
        .map(|i| pattern(seed + i as u64, reply_len(i)))
        .collect();
    for (b, burst) in replies.chunks(BURST).enumerate() {
        for d in burst {
            target.send_to(d, flow).unwrap();
        }
        for (i, d) in burst.iter().enumerate() {
            let at = b * BURST + i;
            let n = client
                .recv(&mut buf)
                .unwrap_or_else(|e| panic!("reply {at} ({} bytes) missing: {e}", d.len()));
            assert_whole("reply", at, &buf[..n], d);
        }
    }
}

/// Runs the test over IPv4 and IPv6 through the forwarder at `binary`, then checks its
/// counters: every reply relayed, none dropped.
fn mixed_bursts_arrive_whole_and_in_order(binary: fn() -> PathBuf, extra: &[&'static str]) {
    let stderr = bursts_through(binary, extra, reply_len);
    assert_relayed(&stderr, 2, "replied ");
}

/// Checks the relay's counters in `stderr`: `flows` flows, none dropped, and every datagram
/// of them counted under `label` ("replied " or "forwarded ").
fn assert_relayed(stderr: &str, flows: u64, label: &str) {
    assert_eq!(counter(stderr, "udp relay:", "flows "), flows, "{stderr}");
    assert_eq!(counter(stderr, "udp relay:", "dropped "), 0, "{stderr}");
    let all = flows * REPLIES as u64;
    assert_eq!(counter(stderr, "udp relay:", label), all, "{stderr}");
}

/// Runs the test over IPv4 and IPv6 with replies of `reply_len` through the forwarder at
/// `binary` (with [`REDIRECTS`] and `extra`); returns its counters (stderr).
fn bursts_through(
    binary: fn() -> PathBuf,
    extra: &[&'static str],
    reply_len: fn(usize) -> usize,
) -> String {
    ForwarderProcess::run_in_new_netns(binary(), [&REDIRECTS[..], extra].concat(), move |_| {
        replies_arrive_whole_and_in_order("127.0.0.1", "198.19.0.10:PORT", 1, reply_len);
        replies_arrive_whole_and_in_order("::1", "[fd00::10]:PORT", 1000, reply_len);
    })
}

#[test]
fn tun_forward_relays_bursts_of_mixed_replies_whole_and_in_order() {
    mixed_bursts_arrive_whole_and_in_order(tun_forward_binary, &[]);
}

/// The flows on the device thread: their replies enter the stack from there, and leave the
/// device from tokio's workers.
#[test]
fn tun_forward_with_a_device_thread_relays_bursts_of_mixed_replies_whole_and_in_order() {
    mixed_bursts_arrive_whole_and_in_order(tun_forward_binary, &["--device-thread"]);
}

#[test]
fn tun_forward_smol_relays_bursts_of_mixed_replies_whole_and_in_order() {
    mixed_bursts_arrive_whole_and_in_order(tun_forward_smol_binary, &[]);
}

/// Replies of one size that the target sends together leave the TUN device as UDP trains
/// (one segmentation-offload write each, cut back into the datagrams by the kernel), and the
/// client still receives every one whole and in order, the shorter last one of each burst too.
#[test]
fn tun_forward_writes_equal_replies_as_udp_trains_that_arrive_whole() {
    let stderr = bursts_through(tun_forward_binary, &[], train_reply_len);
    assert_relayed(&stderr, 2, "replied ");
    let trains = counter(&stderr, "tun tunf:", "udp trains ");
    let line = stderr
        .lines()
        .find(|l| l.starts_with("tun tunf:"))
        .unwrap_or_default();
    let carried: u64 = line
        .rsplit('(')
        .next()
        .and_then(|t| t.split(' ').next())
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("no datagram count in {line:?}"));
    assert!(trains > 0, "no train written: {stderr}");
    assert!(carried >= trains, "{stderr}");
}

/// The upload direction: the client sends [`REPLIES`] datagrams of `len` in bursts to a target
/// on `target_ip`, reached as `via`, and the target must receive each of them whole, once, in
/// order, from one flow. (The flow table sends a flow's datagrams straight from its own task
/// while nothing is queued for the flow, else behind its queue: either way, in order.)
fn uploads_arrive_whole_and_in_order(
    target_ip: &str,
    via: &str,
    seed: u64,
    len: fn(usize) -> usize,
) {
    let (target, client) = flow_sockets(target_ip, via);
    let datagrams: Vec<Vec<u8>> = (0..REPLIES)
        .map(|i| pattern(seed + i as u64, len(i)))
        .collect();
    let mut buf = vec![0u8; 65536];
    let mut flow = None;
    for (b, burst) in datagrams.chunks(BURST).enumerate() {
        for d in burst {
            client.send(d).unwrap();
        }
        for (i, d) in burst.iter().enumerate() {
            let at = b * BURST + i;
            let (n, from) = target
                .recv_from(&mut buf)
                .unwrap_or_else(|e| panic!("datagram {at} ({} bytes) missing: {e}", d.len()));
            assert_eq!(
                *flow.get_or_insert(from),
                from,
                "datagram {at} on another flow"
            );
            assert_whole("datagram", at, &buf[..n], d);
        }
    }
}

/// Mixed sizes over IPv4 and IPv6, then equal sizes (runs the relay sends with one
/// segmented send), through the forwarder at `binary`; every datagram forwarded, none dropped,
/// and some read after a burst without a readiness wait (`pump::device_to_stack`).
fn mixed_uploads_arrive_whole_and_in_order(binary: fn() -> PathBuf, extra: &[&'static str]) {
    let args = [&REDIRECTS[..], extra].concat();
    let stderr = ForwarderProcess::run_in_new_netns(binary(), args, |_| {
        uploads_arrive_whole_and_in_order("127.0.0.1", "198.19.0.10:PORT", 1, reply_len);
        uploads_arrive_whole_and_in_order("::1", "[fd00::10]:PORT", 1000, reply_len);
        uploads_arrive_whole_and_in_order("127.0.0.1", "198.19.0.10:PORT", 2000, train_reply_len);
    });
    assert_relayed(&stderr, 3, "forwarded ");
    // Bursts the client sends back to back reach the reader faster than it wakes: some are
    // read after a burst without waiting for the device (and, by the assertions above, still
    // arrive whole and in order).
    let reads = counter(&stderr, "tun tunf:", "without waiting ");
    assert!(reads > 0, "no read after a burst: {stderr}");
}

#[test]
fn tun_forward_relays_bursts_of_mixed_uploads_whole_and_in_order() {
    mixed_uploads_arrive_whole_and_in_order(tun_forward_binary, &[]);
}

/// The device read, the flow table and the flows all on the device thread.
#[test]
fn tun_forward_with_a_device_thread_relays_bursts_of_mixed_uploads_whole_and_in_order() {
    mixed_uploads_arrive_whole_and_in_order(tun_forward_binary, &["--device-thread"]);
}

#[test]
fn tun_forward_smol_relays_bursts_of_mixed_uploads_whole_and_in_order() {
    mixed_uploads_arrive_whole_and_in_order(tun_forward_smol_binary, &[]);
}
