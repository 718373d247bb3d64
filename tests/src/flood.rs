//! Spoofed packet floods injected into the TUN device from inside the test namespace: a raw
//! IPv4 socket (`IPPROTO_RAW`, the IP header is ours) sends crafted packets to an address
//! routed into the TUN, so the forwarder behind it reads them as if many clients sent them.
//! Bounded in count and time, paced to a rate, from sources in `198.18.128.0/17` (inside the
//! test's `198.18.0.0/15`; the stack's answers to them go back into the namespace's kernel,
//! which drops them: it forwards nothing).

use std::io;
use std::net::{Ipv4Addr, SocketAddrV4};
use std::time::{Duration, Instant};

use netstack_testkit::packets::Segment;
use smoltcp::wire::TcpControl;

/// Packets handed to the kernel per `sendmmsg` call.
const BATCH: usize = 64;

/// What a flood sent.
#[derive(Debug, Clone, Copy)]
pub struct FloodReport {
    /// Packets the kernel accepted from the raw socket.
    pub sent: u64,
    /// How long sending took.
    pub elapsed: Duration,
}

impl FloodReport {
    /// Packets per second offered.
    pub fn rate(&self) -> f64 {
        self.sent as f64 / self.elapsed.as_secs_f64()
    }
}

/// What a flood sends.
#[derive(Debug, Clone, Copy)]
pub enum FloodKind {
    /// SYNs to `dst`, each from a new source address and port.
    Syn,
    /// Bare ACKs with random sequence and acknowledgement numbers, from random sources to
    /// random ports of `dst`'s address (a forged-ACK flood against SYN cookies).
    ForgedAck,
}

/// The `i`-th spoofed source: a new (address, port) for every `i` below 2^31, all in
/// 198.18.128.0/17.
fn spoofed_source(i: u64) -> SocketAddrV4 {
    let host = (i % 32_768) as u32;
    let port = 1024 + ((i / 32_768) % 64_000) as u16;
    SocketAddrV4::new(
        Ipv4Addr::from(u32::from(Ipv4Addr::new(198, 18, 128, 0)) + host),
        port,
    )
}

/// xorshift64*: the forged ACKs' "random" numbers (reproducible per seed).
fn next_random(state: &mut u64) -> u64 {
    *state ^= *state >> 12;
    *state ^= *state << 25;
    *state ^= *state >> 27;
    state.wrapping_mul(0x2545_F491_4F6C_DD1D)
}

/// The `i`-th packet of a flood of `kind` to `dst`.
fn flood_packet(kind: FloodKind, dst: SocketAddrV4, i: u64, random: &mut u64) -> Vec<u8> {
    let src = spoofed_source(i);
    match kind {
        FloodKind::Syn => Segment::syn(src, dst, i as i32).build(),
        FloodKind::ForgedAck => {
            let r = next_random(random);
            let dst = SocketAddrV4::new(*dst.ip(), 1 + (r % 65_535) as u16);
            Segment::new(src, dst)
                .control(TcpControl::None)
                .seq((r >> 16) as i32)
                .ack((r >> 32) as i32)
                .build()
        }
    }
}

/// Sends `count` packets of `kind` to `dst` at `rate` per second at most, stopping at
/// `limit` whatever was sent. Runs on the calling thread, which must be in the test's
/// namespace.
///
/// # Errors
/// If the raw socket cannot be opened, or sending fails other than for a full queue.
pub fn flood(
    kind: FloodKind,
    dst: SocketAddrV4,
    count: u64,
    rate: u64,
    limit: Duration,
) -> io::Result<FloodReport> {
    let socket = RawSocket::open()?;
    let started = Instant::now();
    let mut sent = 0u64;
    let mut next = 0u64;
    let mut random = 0x9E37_79B9_7F4A_7C15u64;
    while next < count && started.elapsed() < limit {
        // Send what the rate allows by now, a batch at a time.
        let due = ((started.elapsed().as_secs_f64() * rate as f64) as u64).min(count);
        if next >= due {
            std::thread::sleep(Duration::from_micros(200));
            continue;
        }
        let n = (due - next).min(BATCH as u64);
        let batch: Vec<Vec<u8>> = (next..next + n)
            .map(|i| flood_packet(kind, dst, i, &mut random))
            .collect();
        next += n;
        sent += socket.send_batch(&batch, *dst.ip())?;
    }
    Ok(FloodReport {
        sent,
        elapsed: started.elapsed(),
    })
}

/// A raw IPv4 socket whose packets carry their own IP header.
struct RawSocket(std::os::fd::OwnedFd);

impl RawSocket {
    fn open() -> io::Result<RawSocket> {
        // SAFETY: socket(2) with constant arguments; the descriptor is owned by the OwnedFd
        // from here on.
        let fd = unsafe { libc::socket(libc::AF_INET, libc::SOCK_RAW, libc::IPPROTO_RAW) };
        if fd < 0 {
            return Err(io::Error::last_os_error());
        }
        // SAFETY: `fd` was just returned by socket(2) and nothing else owns it.
        Ok(RawSocket(unsafe {
            <std::os::fd::OwnedFd as std::os::fd::FromRawFd>::from_raw_fd(fd)
        }))
    }

    /// Sends `packets` (whole IPv4 packets) towards `to` with one `sendmmsg`; returns how many
    /// the kernel took (a full device queue takes fewer: they count as not sent).
    fn send_batch(&self, packets: &[Vec<u8>], to: Ipv4Addr) -> io::Result<u64> {
        let addr = libc::sockaddr_in {
            sin_family: libc::AF_INET as libc::sa_family_t,
            sin_port: 0,
            sin_addr: libc::in_addr {
                s_addr: u32::from(to).to_be(),
            },
            sin_zero: [0; 8],
        };
        let mut iovs: Vec<libc::iovec> = packets
            .iter()
            .map(|p| libc::iovec {
                iov_base: p.as_ptr() as *mut libc::c_void,
                iov_len: p.len(),
            })
            .collect();
        let mut msgs: Vec<libc::mmsghdr> = iovs
            .iter_mut()
            .map(|iov| libc::mmsghdr {
                msg_hdr: libc::msghdr {
                    msg_name: &addr as *const libc::sockaddr_in as *mut libc::c_void,
                    msg_namelen: std::mem::size_of::<libc::sockaddr_in>() as libc::socklen_t,
                    msg_iov: iov,
                    msg_iovlen: 1,
                    msg_control: std::ptr::null_mut(),
                    msg_controllen: 0,
                    msg_flags: 0,
                },
                msg_len: 0,
            })
            .collect();
        // SAFETY: every mmsghdr points at `addr` and at one iovec, which points at one packet;
        // all of them outlive the call, and the kernel only reads the packets and the address
        // (it writes `msg_len`, which is ours to write).
        let n = unsafe {
            libc::sendmmsg(
                std::os::fd::AsRawFd::as_raw_fd(&self.0),
                msgs.as_mut_ptr(),
                msgs.len() as libc::c_uint,
                0,
            )
        };
        if n < 0 {
            let e = io::Error::last_os_error();
            return match e.raw_os_error() {
                Some(libc::ENOBUFS) | Some(libc::EAGAIN) => Ok(0),
                _ => Err(e),
            };
        }
        Ok(n as u64)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use netstack_testkit::packets::{is_syn, tcp_info};

    #[test]
    fn flood_packets_are_valid_tcp_from_distinct_spoofed_sources() {
        let dst = SocketAddrV4::new(Ipv4Addr::new(198, 19, 0, 10), 7000);
        let mut random = 1;
        let a = flood_packet(FloodKind::Syn, dst, 0, &mut random);
        let b = flood_packet(FloodKind::Syn, dst, 40_000, &mut random);
        assert!(is_syn(&a) && is_syn(&b));
        assert_ne!(&a[12..16], &b[12..16], "different source addresses");
        for i in [0, 1, 32_767, 32_768, 1 << 30] {
            let src = spoofed_source(i);
            assert_eq!(src.ip().octets()[..2], [198, 18]);
            assert!(src.ip().octets()[2] >= 128, "{src}");
        }
        let ack = flood_packet(FloodKind::ForgedAck, dst, 5, &mut random);
        let info = tcp_info(&ack).expect("a TCP segment");
        assert!(!is_syn(&ack));
        assert!(info.ack.is_some(), "{info:?}");
    }
}
