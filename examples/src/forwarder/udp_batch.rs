//! Sending many datagrams on one connected UDP socket with one system call.
//!
//! A UDP flow's bottleneck is the kernel's send path, paid once per `send` (the profile in
//! BENCHMARKS.md: one `sendto` per datagram bounded UDP upload). On Linux a batch goes out
//! with UDP segmentation offload where it can (`UDP_SEGMENT`, kernel ≥ 4.18: one `sendmsg`
//! whose payload the kernel cuts into equal datagrams, one pass through the UDP/IP stack for
//! all of them), else with one `sendmmsg`; elsewhere one `send` per datagram.

use std::io;
use std::net::UdpSocket;

/// Datagrams sent per call at most (`UDP_MAX_SEGMENTS` of Linux 4.18; newer kernels allow 128).
pub const MAX_BATCH: usize = 64;

/// Sends the first datagrams of `datagrams` on the connected, non-blocking `socket`; returns
/// how many were sent (at least one, unless the first fails).
///
/// # Errors
/// `WouldBlock` if the socket has no room for the first one; its error otherwise (for
/// example `ECONNREFUSED` left by an earlier port unreachable).
pub fn send_batch(socket: &UdpSocket, datagrams: &[&[u8]]) -> io::Result<usize> {
    match datagrams {
        [] => Ok(0),
        [one] => socket.send(one).map(|_| 1),
        _ => platform::send_batch(socket, datagrams),
    }
}

#[cfg(target_os = "linux")]
#[allow(unsafe_code)]
mod platform {
    use std::io;
    use std::mem::{size_of, zeroed};
    use std::net::UdpSocket;
    use std::os::fd::AsRawFd;
    use std::sync::atomic::{AtomicBool, Ordering};

    use super::MAX_BATCH;

    /// Largest payload of one segmented send (IPv4's largest datagram, with its headers).
    const MAX_GSO_PAYLOAD: usize = 65_507;
    /// Cleared the first time the kernel refuses `UDP_SEGMENT` (an old kernel, or a route
    /// over a device that cannot segment): from then on, `sendmmsg`.
    static GSO: AtomicBool = AtomicBool::new(true);

    pub(super) fn send_batch(socket: &UdpSocket, datagrams: &[&[u8]]) -> io::Result<usize> {
        let datagrams = &datagrams[..datagrams.len().min(MAX_BATCH)];
        if GSO.load(Ordering::Relaxed) {
            let n = segmentable(datagrams);
            if n >= 2 {
                match send_segmented(socket, &datagrams[..n]) {
                    Ok(()) => return Ok(n),
                    // EIO: the device cannot segment; EINVAL/ENOPROTOOPT: no UDP_SEGMENT.
                    Err(e)
                        if matches!(
                            e.raw_os_error(),
                            Some(libc::EIO | libc::EINVAL | libc::ENOPROTOOPT)
                        ) =>
                    {
                        GSO.store(false, Ordering::Relaxed)
                    }
                    Err(e) => return Err(e),
                }
            }
        }
        send_many(socket, datagrams)
    }

    /// How many leading datagrams one segmented send can carry: equal sizes, the last one
    /// possibly shorter but not empty (the kernel cuts the payload into segments, and an empty
    /// datagram adds no bytes to cut), within the payload limit.
    fn segmentable(datagrams: &[&[u8]]) -> usize {
        let size = datagrams[0].len();
        if size == 0 {
            return 0;
        }
        let mut total = 0;
        for (i, d) in datagrams.iter().enumerate() {
            if d.len() > size || d.is_empty() || total + d.len() > MAX_GSO_PAYLOAD {
                return i;
            }
            total += d.len();
            if d.len() < size {
                return i + 1;
            }
        }
        datagrams.len()
    }

    /// One `sendmsg` of all `datagrams` with `UDP_SEGMENT` = the first one's size.
    fn send_segmented(socket: &UdpSocket, datagrams: &[&[u8]]) -> io::Result<()> {
        let mut iov: [libc::iovec; MAX_BATCH] = [libc::iovec {
            iov_base: std::ptr::null_mut(),
            iov_len: 0,
        }; MAX_BATCH];
        for (slot, d) in iov.iter_mut().zip(datagrams) {
            *slot = libc::iovec {
                iov_base: d.as_ptr() as *mut libc::c_void,
                iov_len: d.len(),
            };
        }
        let segment = u16::try_from(datagrams[0].len())
            .map_err(|_| io::Error::from_raw_os_error(libc::EINVAL))?;
        // Room for one cmsg carrying a u16, aligned as cmsghdr wants.
        let mut control = [0u64; 4];
        // SAFETY: `msg` is zero-initialised (a valid `msghdr`: null pointers, zero lengths),
        // then points at `iov` (the first `datagrams.len()` entries, each pointing into a
        // datagram borrowed for this call) and at `control`, which outlives the call and is
        // large enough for `CMSG_SPACE(2)` (24 bytes on 64-bit Linux, checked by the assert).
        // `CMSG_FIRSTHDR` of a control buffer that size is non-null, and the u16 is written
        // within it at `CMSG_DATA`. `sendmsg` only reads these buffers.
        unsafe {
            let space = libc::CMSG_SPACE(size_of::<u16>() as u32) as usize;
            assert!(space <= size_of::<[u64; 4]>());
            let mut msg: libc::msghdr = zeroed();
            msg.msg_iov = iov.as_mut_ptr();
            msg.msg_iovlen = datagrams.len() as _;
            msg.msg_control = control.as_mut_ptr().cast();
            msg.msg_controllen = space as _;
            let cmsg = libc::CMSG_FIRSTHDR(&msg);
            (*cmsg).cmsg_level = libc::SOL_UDP;
            (*cmsg).cmsg_type = libc::UDP_SEGMENT;
            (*cmsg).cmsg_len = libc::CMSG_LEN(size_of::<u16>() as u32) as _;
            std::ptr::write_unaligned(libc::CMSG_DATA(cmsg).cast::<u16>(), segment);
            if libc::sendmsg(socket.as_raw_fd(), &msg, 0) < 0 {
                return Err(io::Error::last_os_error());
            }
        }
        Ok(())
    }

    /// One `sendmmsg` of `datagrams`: how many went out.
    fn send_many(socket: &UdpSocket, datagrams: &[&[u8]]) -> io::Result<usize> {
        let mut iov: [libc::iovec; MAX_BATCH] = [libc::iovec {
            iov_base: std::ptr::null_mut(),
            iov_len: 0,
        }; MAX_BATCH];
        // SAFETY (for `zeroed`): an all-zero `mmsghdr` is valid (null pointers, zero lengths).
        let mut msgs: [libc::mmsghdr; MAX_BATCH] = unsafe { zeroed() };
        for ((slot, msg), d) in iov.iter_mut().zip(msgs.iter_mut()).zip(datagrams) {
            *slot = libc::iovec {
                iov_base: d.as_ptr() as *mut libc::c_void,
                iov_len: d.len(),
            };
            msg.msg_hdr.msg_iov = slot;
            msg.msg_hdr.msg_iovlen = 1;
        }
        // SAFETY: the first `datagrams.len()` entries of `msgs` each point at one entry of
        // `iov`, which points into a datagram borrowed for this call; both arrays outlive it,
        // and `sendmmsg` reads only those entries (it writes their `msg_len`).
        let sent = unsafe {
            libc::sendmmsg(
                socket.as_raw_fd(),
                msgs.as_mut_ptr(),
                datagrams.len() as _,
                0,
            )
        };
        if sent < 0 {
            return Err(io::Error::last_os_error());
        }
        Ok(sent as usize)
    }

    #[cfg(test)]
    mod tests {
        use super::*;

        #[test]
        fn equal_datagrams_and_a_shorter_last_one_segment_together() {
            let (a, b, c) = (vec![1u8; 1400], vec![2u8; 1400], vec![3u8; 600]);
            assert_eq!(segmentable(&[&a, &b, &c]), 3);
            assert_eq!(segmentable(&[&a, &c, &b]), 2, "a shorter one ends the run");
            assert_eq!(segmentable(&[&c, &a]), 1, "a longer one cannot follow");
            let big = vec![0u8; 40_000];
            assert_eq!(segmentable(&[&big, &big]), 1, "the payload limit");
            assert_eq!(segmentable(&[&[][..], &[][..]]), 0);
            assert_eq!(
                segmentable(&[&a, &[][..]]),
                1,
                "an empty one adds nothing to cut"
            );
        }
    }
}

#[cfg(not(target_os = "linux"))]
mod platform {
    use std::io;
    use std::net::UdpSocket;

    pub(super) fn send_batch(socket: &UdpSocket, datagrams: &[&[u8]]) -> io::Result<usize> {
        let mut sent = 0;
        for d in datagrams {
            match socket.send(d) {
                Ok(_) => sent += 1,
                Err(e) if sent == 0 => return Err(e),
                Err(_) => break,
            }
        }
        Ok(sent)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Batches of every shape arrive whole, in order, as separate datagrams, at a kernel
    /// socket on loopback.
    #[test]
    fn a_batch_arrives_as_separate_datagrams_in_order() {
        let server = UdpSocket::bind("127.0.0.1:0").unwrap();
        let client = UdpSocket::bind("127.0.0.1:0").unwrap();
        client.connect(server.local_addr().unwrap()).unwrap();
        server
            .set_read_timeout(Some(std::time::Duration::from_secs(5)))
            .unwrap();
        let sizes: [&[usize]; 6] = [
            &[1400; 10],
            &[1400, 1400, 1400, 700],
            &[1400, 0, 1400, 1400, 0, 0],
            &[1472, 60_000, 1000, 1],
            &[100, 1400, 50, 50, 9000],
            &[1200; 70],
        ];
        let mut counter = 0u8;
        for shape in sizes {
            let datagrams: Vec<Vec<u8>> = shape
                .iter()
                .map(|&n| {
                    counter = counter.wrapping_add(1);
                    vec![counter; n]
                })
                .collect();
            let slices: Vec<&[u8]> = datagrams.iter().map(Vec::as_slice).collect();
            let mut sent = 0;
            while sent < slices.len() {
                let n = send_batch(&client, &slices[sent..]).unwrap();
                assert!(n >= 1);
                sent += n;
            }
            let mut buf = vec![0u8; 65536];
            for d in &datagrams {
                let n = server.recv(&mut buf).unwrap();
                assert_eq!(&buf[..n], &d[..], "shape {shape:?}");
            }
        }
    }
}
