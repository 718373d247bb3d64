//! ICMP echo forwarding for the tokio forwarder (`--icmp forward`): each echo request the stack
//! delivers is sent to the real destination, and the stack answers only if that destination
//! answered within the timeout — so `ping` through the tunnel reports the truth.
//!
//! Pings leave through a Linux ICMP datagram socket ("ping socket", no privileges needed when
//! `net.ipv4.ping_group_range` allows the process's group), falling back to a raw socket
//! (needs `CAP_NET_RAW`).

use std::io;
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::{Duration, Instant};

use netstack_tokio::{IcmpKind, IcmpSocket};
use socket2::{Domain, Protocol, Socket, Type};
use tokio::sync::Semaphore;

/// How long to wait for the real destination's reply.
const REPLY_TIMEOUT: Duration = Duration::from_secs(2);
/// Pings in flight at once; requests beyond it are dropped (as a lossy network would).
const MAX_IN_FLIGHT: usize = 64;

/// Forwards every echo request of `icmp` to `target(original destination)`, answering the ones
/// the target answers. Runs until the stack ends.
pub async fn forward_icmp(icmp: IcmpSocket, target: impl Fn(IpAddr) -> IpAddr) {
    let icmp = Arc::new(icmp);
    let permits = Arc::new(Semaphore::new(MAX_IN_FLIGHT));
    loop {
        let request = icmp.recv().await;
        let IcmpKind::EchoRequest { seq, .. } = request.kind() else {
            continue;
        };
        let Ok(permit) = permits.clone().try_acquire_owned() else {
            continue;
        };
        let to = target(IpAddr::from(request.dst()));
        let data = request.echo_data().unwrap_or_default().to_vec();
        let icmp = icmp.clone();
        tokio::spawn(async move {
            let answered = tokio::task::spawn_blocking(move || ping(to, seq, &data))
                .await
                .unwrap_or(Ok(false));
            if let Ok(true) = answered {
                let _ = icmp.reply_echo(&request);
            }
            drop((permit, request));
        });
    }
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

/// Sends one echo request to `to` and waits for its reply; `Ok(true)` if it came.
fn ping(to: IpAddr, seq: u16, data: &[u8]) -> io::Result<bool> {
    let v6 = to.is_ipv6();
    let (domain, protocol) = if v6 {
        (Domain::IPV6, Protocol::ICMPV6)
    } else {
        (Domain::IPV4, Protocol::ICMPV4)
    };
    let (socket, raw) = match Socket::new(domain, Type::DGRAM, Some(protocol)) {
        Ok(s) => (s, false),
        Err(_) => (Socket::new(domain, Type::RAW, Some(protocol))?, true),
    };
    // The datagram-socket API (`send_to`/`recv` with a timeout) is all an ICMP socket needs.
    let socket = std::net::UdpSocket::from(socket);
    let request = echo_request(v6, seq, data);
    socket.send_to(&request, SocketAddr::new(to, 0))?;
    let deadline = Instant::now() + REPLY_TIMEOUT;
    let mut bytes = vec![0u8; 65536];
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return Ok(false);
        }
        socket.set_read_timeout(Some(left))?;
        let n = match socket.recv(&mut bytes) {
            Ok(n) => n,
            Err(e)
                if matches!(
                    e.kind(),
                    io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut
                ) =>
            {
                return Ok(false)
            }
            Err(e) => return Err(e),
        };
        let bytes = &bytes[..n];
        // Raw IPv4 sockets deliver the IP header too.
        let reply = if raw && !v6 {
            let header = usize::from(bytes.first().map_or(0, |b| b & 0x0f)) * 4;
            bytes.get(header..).unwrap_or_default()
        } else {
            bytes
        };
        let reply_type = if v6 { 129 } else { 0 };
        if reply.len() >= 8
            && reply[0] == reply_type
            && u16::from_be_bytes([reply[6], reply[7]]) == seq
            && &reply[8..] == data
        {
            return Ok(true);
        }
    }
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
}
