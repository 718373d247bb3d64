//! ICMP echo forwarding (`--icmp forward`): each echo request the stack delivers is sent to the
//! real destination, and the stack answers only if that destination answered within the
//! timeout — so `ping` through the tunnel reports the truth.
//!
//! Pings leave through a Linux ICMP datagram socket ("ping socket", no privileges needed when
//! `net.ipv4.ping_group_range` allows the process's group), falling back to a raw socket
//! (needs `CAP_NET_RAW`); either is connected to the destination and waited on with the
//! executor's reactor, like a UDP flow's socket.

use std::io;
use std::net::{IpAddr, SocketAddr};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use netstack_core::{IcmpKind, IcmpMessage, IcmpSocket, StackPtr};
use socket2::{Domain, Protocol, Socket, Type};

use super::executor::{Executor, KernelDatagram};
use super::time::within;

/// How long to wait for the real destination's reply.
pub const REPLY_TIMEOUT: Duration = Duration::from_secs(2);
/// Pings in flight at once; requests beyond it are dropped (as a lossy network would).
pub const MAX_IN_FLIGHT: usize = 64;

/// One echo request on its way to the real destination.
pub struct Ping<P: StackPtr> {
    icmp: Arc<IcmpSocket<P>>,
    request: IcmpMessage,
    to: IpAddr,
    seq: u16,
    in_flight: Arc<AtomicUsize>,
}

impl<P: StackPtr> Ping<P> {
    /// A ping of `to` for `request` (an echo request with sequence number `seq`), holding one
    /// of the `in_flight` slots until it is done.
    pub fn new(
        icmp: Arc<IcmpSocket<P>>,
        request: IcmpMessage,
        to: IpAddr,
        seq: u16,
        in_flight: Arc<AtomicUsize>,
    ) -> Self {
        Ping {
            icmp,
            request,
            to,
            seq,
            in_flight,
        }
    }

    /// Pings the destination and answers the request if it answered.
    pub async fn run<E: Executor>(self) {
        let data = self.request.echo_data().unwrap_or_default();
        if let Ok(true) = ping::<E>(self.to, self.seq, data).await {
            let _ = self.icmp.reply_echo(&self.request);
        }
        self.in_flight.fetch_sub(1, Ordering::Relaxed);
    }
}

/// Takes a slot for a ping of `request`, if it is an echo request and a slot is free; returns
/// its sequence number.
pub fn admit(request: &IcmpMessage, in_flight: &AtomicUsize) -> Option<u16> {
    let IcmpKind::EchoRequest { seq, .. } = request.kind() else {
        return None;
    };
    in_flight
        .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |n| {
            (n < MAX_IN_FLIGHT).then_some(n + 1)
        })
        .ok()
        .map(|_| seq)
}

fn echo_request(v6: bool, seq: u16, data: &[u8]) -> Vec<u8> {
    let mut m = vec![if v6 { 128 } else { 8 }, 0, 0, 0];
    // The identifier is chosen by the kernel for ping sockets; for raw sockets use our PID.
    m.extend_from_slice(&(std::process::id() as u16).to_be_bytes());
    m.extend_from_slice(&seq.to_be_bytes());
    m.extend_from_slice(data);
    if !v6 {
        let sum = checksum(&m);
        m[2..4].copy_from_slice(&sum.to_be_bytes());
    }
    m
}

/// The Internet checksum (RFC 1071).
fn checksum(data: &[u8]) -> u16 {
    let mut sum: u32 = data
        .chunks(2)
        .map(|c| u32::from(u16::from_be_bytes([c[0], *c.get(1).unwrap_or(&0)])))
        .sum();
    while sum > 0xffff {
        sum = (sum & 0xffff) + (sum >> 16);
    }
    !(sum as u16)
}

/// A non-blocking ICMP socket connected to `to`, and whether it is raw.
fn icmp_socket(to: IpAddr) -> io::Result<(std::net::UdpSocket, bool)> {
    let (domain, protocol) = match to {
        IpAddr::V4(_) => (Domain::IPV4, Protocol::ICMPV4),
        IpAddr::V6(_) => (Domain::IPV6, Protocol::ICMPV6),
    };
    let (socket, raw) = match Socket::new(domain, Type::DGRAM, Some(protocol)) {
        Ok(s) => (s, false),
        Err(_) => (Socket::new(domain, Type::RAW, Some(protocol))?, true),
    };
    socket.set_nonblocking(true)?;
    socket.connect(&SocketAddr::new(to, 0).into())?;
    // The datagram-socket API (send, recv) is all an ICMP socket needs.
    Ok((std::net::UdpSocket::from(socket), raw))
}

/// Sends one echo request to `to` and waits for its reply; `Ok(true)` if it came.
async fn ping<E: Executor>(to: IpAddr, seq: u16, data: &[u8]) -> io::Result<bool> {
    let v6 = to.is_ipv6();
    let (socket, raw) = icmp_socket(to)?;
    let socket = E::datagram(socket)?;
    socket.send(&echo_request(v6, seq, data)).await?;
    let mut bytes = vec![0u8; 65536];
    let answered = async {
        loop {
            let n = socket.recv(&mut bytes).await?;
            if is_reply(&bytes[..n], v6, raw, seq, data) {
                return Ok::<_, io::Error>(true);
            }
        }
    };
    within::<E, _>(Instant::now() + REPLY_TIMEOUT, answered)
        .await
        .unwrap_or(Ok(false))
}

/// Whether `bytes` (read from the ICMP socket) is the reply to our request `seq` with `data`.
fn is_reply(bytes: &[u8], v6: bool, raw: bool, seq: u16, data: &[u8]) -> bool {
    // Raw IPv4 sockets deliver the IP header too.
    let reply = if raw && !v6 {
        let header = usize::from(bytes.first().map_or(0, |b| b & 0x0f)) * 4;
        bytes.get(header..).unwrap_or_default()
    } else {
        bytes
    };
    let reply_type = if v6 { 129 } else { 0 };
    reply.len() >= 8
        && reply[0] == reply_type
        && u16::from_be_bytes([reply[6], reply[7]]) == seq
        && &reply[8..] == data
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn checksum_of_a_known_echo_request() {
        // type 8, code 0, ident 1, seq 1, no data: checksum 0xf7fd.
        let m = [8u8, 0, 0, 0, 0, 1, 0, 1];
        assert_eq!(checksum(&m), 0xf7fd);
    }

    #[test]
    fn echo_request_carries_seq_data_and_a_valid_checksum() {
        let m = echo_request(false, 7, b"abc");
        assert_eq!(&m[6..8], &7u16.to_be_bytes());
        assert_eq!(&m[8..], b"abc");
        assert_eq!(checksum(&m), 0, "a message with its checksum sums to zero");
    }

    #[test]
    fn only_the_matching_reply_counts() {
        let mut reply = echo_request(false, 7, b"abc");
        reply[0] = 0;
        assert!(is_reply(&reply, false, false, 7, b"abc"));
        assert!(!is_reply(&reply, false, false, 8, b"abc"), "another seq");
        assert!(!is_reply(&reply, false, false, 7, b"abd"), "other data");
        let request = echo_request(false, 7, b"abc");
        assert!(
            !is_reply(&request, false, false, 7, b"abc"),
            "our own request"
        );
        // A raw IPv4 socket's read starts with the IP header.
        let mut with_header = vec![0x45; 1];
        with_header.extend_from_slice(&[0; 19]);
        with_header.extend_from_slice(&reply);
        assert!(is_reply(&with_header, false, true, 7, b"abc"));
    }
}
