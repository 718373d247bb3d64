//! Receiving many datagrams from one connected UDP socket with one system call: a flow's
//! download side (target → relay → stack → TUN).
//!
//! A flow used to pay one `recv` system call and one readiness wake-up per datagram its target
//! sent; on Linux a [`RecvBatch`] takes every ready datagram (up to [`MAX_BATCH`]) with one
//! `recvmmsg`, and the flow hands them to the stack together. Elsewhere it reads one per call.
//!
//! # Memory
//! A batch needs room for many datagrams, up to 64 KiB each, and a flow cannot tell the sizes
//! of the datagrams waiting in its socket before it reads them. So a read gives each message a
//! *slot* (2 KiB to start with: anything a 1500-byte path delivers unfragmented) followed by one
//! *overflow* area that all messages share, 64 KiB minus the slot, so that no message can be
//! truncated. A datagram longer than its slot continues in the overflow; the kernel writes the
//! messages in order, so the last such datagram of a read is whole (its head is then copied in
//! front of its tail: at most one slot, and only for a long datagram), and any earlier one was
//! overwritten: it is lost and counted ([`RecvBatch::lost`]), and the flow's slots grow to fit
//! it (fewer per read: the slots of a read share 128 KiB; they never shrink back). A flow's
//! first read takes one datagram and sizes the slots to it, so a flow of long datagrams loses
//! none to that. Mixed traffic, such as a burst of small datagrams with one long one, is read
//! whole.
//!
//! The buffer (128 KiB of slots + 64 KiB of overflow, on Linux; 64 KiB elsewhere) is lent to
//! a flow only from a read that found datagrams until their replies are handed on
//! ([`RecvBatch::release`]), from a small pool per thread: an idle flow holds none (where it
//! held a 64 KiB buffer of its own before), and the forwarder holds about one per thread
//! that serves flows, plus one per flow whose replies wait for room in the stack's egress
//! queue (at most one per flow). Pages of a new buffer that no datagram reached are never
//! touched, so a read of small datagrams costs no more resident memory than its slots.

use std::cell::RefCell;
use std::io;
use std::net::UdpSocket;

use super::udp::MAX_DATAGRAM;
use super::udp_batch::MAX_BATCH;

/// A flow's slot size to start with: a datagram that a 1500-byte path delivers whole.
const SLOT: usize = 2048;
/// Bytes the slots of one read share (their size times their number).
#[cfg(target_os = "linux")]
const SLOTS_BYTES: usize = MAX_BATCH * SLOT;
/// Bytes of a lent buffer: the slots, then the overflow area (with room for one slot in front
/// of it, where the head of a long datagram is moved).
#[cfg(target_os = "linux")]
const BUFFER: usize = SLOTS_BYTES + MAX_DATAGRAM;
#[cfg(not(target_os = "linux"))]
const BUFFER: usize = MAX_DATAGRAM;
/// Idle buffers each thread keeps for the next read: a thread serves one read at a time.
const SPARE_PER_THREAD: usize = 1;

std::thread_local! {
    /// Buffers returned by flows of this thread, for the next read.
    static SPARE: RefCell<Vec<Box<[u8]>>> = const { RefCell::new(Vec::new()) };
}

/// A buffer from this thread's pool, or a new one (zeroed pages the kernel maps on first
/// write: a read of small datagrams touches only their slots).
fn lend() -> Box<[u8]> {
    SPARE
        .try_with(|s| s.borrow_mut().pop())
        .ok()
        .flatten()
        .unwrap_or_else(|| vec![0u8; BUFFER].into_boxed_slice())
}

/// Returns `buf` to this thread's pool, or frees it if the pool is full.
fn give_back(buf: Box<[u8]>) {
    let _ = SPARE.try_with(|s| {
        let mut s = s.borrow_mut();
        if s.len() < SPARE_PER_THREAD {
            s.push(buf);
        }
    });
}

/// The datagrams one read took from a flow's socket, in order, and where to put the next.
#[derive(Debug)]
pub struct RecvBatch {
    /// Lent while datagrams are held, none otherwise.
    buf: Option<Box<[u8]>>,
    /// Where each whole datagram of the last read is in `buf` (offset, length), in order.
    spans: [(usize, usize); MAX_BATCH],
    len: usize,
    /// Datagrams of the last read that were lost (overwritten in the overflow).
    lost: usize,
    /// The flow's slot size.
    slot: usize,
    /// Whether the flow has read a datagram yet (its first read takes one).
    started: bool,
}

impl Default for RecvBatch {
    fn default() -> Self {
        RecvBatch {
            buf: None,
            spans: [(0, 0); MAX_BATCH],
            len: 0,
            lost: 0,
            slot: SLOT,
            started: false,
        }
    }
}

impl RecvBatch {
    /// An empty batch that holds no buffer.
    pub fn new() -> Self {
        Self::default()
    }

    /// Reads the datagrams ready on the connected, non-blocking `socket` (with one system
    /// call), replacing those held; returns how many whole ones it holds now (at least one:
    /// the last long datagram of a read is always whole).
    ///
    /// # Errors
    /// `WouldBlock` if none is ready; the socket's error otherwise (`ECONNREFUSED` after a port
    /// unreachable). The batch holds nothing then, not even its buffer.
    pub fn try_recv(&mut self, socket: &UdpSocket) -> io::Result<usize> {
        self.len = 0;
        self.lost = 0;
        let mut buf = self.buf.take().unwrap_or_else(lend);
        let r = if self.started {
            self.read(socket, &mut buf)
        } else {
            self.read_one(socket, &mut buf)
        };
        match r {
            Ok(()) => {
                self.started = true;
                self.buf = Some(buf);
                Ok(self.len)
            }
            Err(e) => {
                give_back(buf);
                Err(e)
            }
        }
    }

    /// The whole datagrams of the last read, in the order they arrived.
    pub fn datagrams(&self) -> impl Iterator<Item = &[u8]> {
        let buf = self.buf.as_deref().unwrap_or(&[]);
        self.spans[..self.len]
            .iter()
            .map(move |&(at, n)| &buf[at..at + n])
    }

    /// How many whole datagrams the batch holds.
    pub fn len(&self) -> usize {
        self.len
    }

    /// Whether the batch holds none.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Datagrams the last read lost (long ones overwritten by a later long one in the same
    /// read; see the [module](self) documentation).
    pub fn lost(&self) -> usize {
        self.lost
    }

    /// Drops the datagrams held and returns the buffer to this thread's pool.
    pub fn release(&mut self) {
        self.len = 0;
        self.lost = 0;
        if let Some(buf) = self.buf.take() {
            give_back(buf);
        }
    }

    /// The buffer for one datagram, for a platform whose socket is read some other way: put
    /// the datagram at its start, then call [`Self::received_one`]. The batch holds the buffer
    /// until [`Self::release`], even if no datagram comes.
    pub fn one_buffer(&mut self) -> &mut [u8] {
        self.release();
        &mut self.buf.get_or_insert_with(lend)[..MAX_DATAGRAM]
    }

    /// Holds the datagram of `len` bytes put into [`Self::one_buffer`]; returns 1.
    pub fn received_one(&mut self, len: usize) -> usize {
        self.spans[0] = (0, len.min(MAX_DATAGRAM));
        self.len = 1;
        self.started = true;
        1
    }

    /// Reads one datagram into the start of `buf`; on Linux the flow's slots are then sized to
    /// it.
    fn read_one(&mut self, socket: &UdpSocket, buf: &mut [u8]) -> io::Result<()> {
        let n = socket.recv(&mut buf[..MAX_DATAGRAM])?;
        self.spans[0] = (0, n);
        self.len = 1;
        if cfg!(target_os = "linux") {
            self.slot = slot_for(n).max(self.slot);
        }
        Ok(())
    }

    #[cfg(not(target_os = "linux"))]
    fn read(&mut self, socket: &UdpSocket, buf: &mut [u8]) -> io::Result<()> {
        self.read_one(socket, buf)
    }

    /// One `recvmmsg` into the flow's slots and the shared overflow; then the last long
    /// datagram is made contiguous and the earlier long ones are counted as lost.
    #[cfg(target_os = "linux")]
    fn read(&mut self, socket: &UdpSocket, buf: &mut [u8]) -> io::Result<()> {
        let slot = self.slot;
        let slots = (SLOTS_BYTES / slot).clamp(1, MAX_BATCH);
        let headroom = slots * slot;
        let mut lens = [None; MAX_BATCH];
        let got = recvmmsg::recv(socket, buf, slot, slots, &mut lens)?;
        let longest = lens[..got]
            .iter()
            .rposition(|n| n.is_some_and(|n| n > slot));
        let (mut kept, mut lost, mut grow) = (0, 0, 0);
        for (k, &n) in lens[..got].iter().enumerate() {
            match n {
                Some(n) if n <= slot => self.spans[kept] = (k * slot, n),
                Some(n) if Some(k) == longest => {
                    // Head in its slot, tail in the overflow: move the head in front of it.
                    buf.copy_within(k * slot..(k + 1) * slot, headroom);
                    self.spans[kept] = (headroom, n);
                }
                _ => {
                    lost += 1;
                    grow = grow.max(n.unwrap_or(MAX_DATAGRAM));
                    continue;
                }
            }
            kept += 1;
        }
        if lost > 0 {
            self.slot = slot_for(grow).max(slot);
        }
        self.len = kept;
        self.lost = lost;
        Ok(())
    }
}

impl Drop for RecvBatch {
    fn drop(&mut self) {
        self.release();
    }
}

/// The slot size that holds a datagram of `len` bytes (whole KiB, at least [`SLOT`], at most
/// the largest datagram).
fn slot_for(len: usize) -> usize {
    len.next_multiple_of(1024).clamp(SLOT, MAX_DATAGRAM)
}

#[cfg(target_os = "linux")]
#[allow(unsafe_code)]
mod recvmmsg {
    use std::io;
    use std::mem::zeroed;
    use std::net::UdpSocket;
    use std::os::fd::AsRawFd;

    use super::{MAX_BATCH, MAX_DATAGRAM};

    /// One `recvmmsg` of up to `slots` datagrams into `buf`: message `k` gets the slot at
    /// `k * slot` and then the overflow, which starts one slot after the slots
    /// (`buf[(slots + 1) * slot..slots * slot + MAX_DATAGRAM]`), so every message has room for
    /// the largest datagram. Writes each datagram's length into `lens` (`None` for one that
    /// was truncated: impossible, as every message has room for the largest); returns how
    /// many.
    pub(super) fn recv(
        socket: &UdpSocket,
        buf: &mut [u8],
        slot: usize,
        slots: usize,
        lens: &mut [Option<usize>; MAX_BATCH],
    ) -> io::Result<usize> {
        let slots = slots.min(MAX_BATCH);
        let overflow = (slots + 1) * slot;
        let end = slots * slot + MAX_DATAGRAM;
        assert!(end <= buf.len() && overflow <= end);
        let base = buf.as_mut_ptr();
        let mut iov = [[libc::iovec {
            iov_base: std::ptr::null_mut(),
            iov_len: 0,
        }; 2]; MAX_BATCH];
        // SAFETY (for `zeroed`): an all-zero `mmsghdr` is valid (null pointers, zero lengths).
        let mut msgs: [libc::mmsghdr; MAX_BATCH] = unsafe { zeroed() };
        for (k, (pair, msg)) in iov.iter_mut().zip(msgs.iter_mut()).take(slots).enumerate() {
            // SAFETY: `k * slot` and `overflow` are within `buf` (checked above: the slots end
            // before the overflow, which ends at `end <= buf.len()`).
            *pair = unsafe {
                [
                    libc::iovec {
                        iov_base: base.add(k * slot).cast(),
                        iov_len: slot,
                    },
                    libc::iovec {
                        iov_base: base.add(overflow).cast(),
                        iov_len: end - overflow,
                    },
                ]
            };
            msg.msg_hdr.msg_iov = pair.as_mut_ptr();
            msg.msg_hdr.msg_iovlen = 2;
        }
        // SAFETY: the first `slots` entries of `msgs` each point at two entries of `iov`, which
        // point into `buf` (borrowed mutably for this call; the overflow of every message is
        // the same bytes, which the kernel writes one message after another); `iov`, `msgs`
        // and `buf` outlive the call. No address or control buffer is given (null, 0), and no
        // timeout (null): the socket is non-blocking.
        let got = unsafe {
            libc::recvmmsg(
                socket.as_raw_fd(),
                msgs.as_mut_ptr(),
                slots as _,
                0,
                std::ptr::null_mut(),
            )
        };
        if got < 0 {
            return Err(io::Error::last_os_error());
        }
        let got = got as usize;
        for (len, msg) in lens.iter_mut().zip(&msgs).take(got) {
            *len = (msg.msg_hdr.msg_flags & libc::MSG_TRUNC == 0).then_some(msg.msg_len as usize);
        }
        Ok(got)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    /// A kernel socket pair on loopback: `target` sends to `flow`, which is connected to it.
    fn pair() -> (UdpSocket, UdpSocket) {
        let target = UdpSocket::bind("127.0.0.1:0").unwrap();
        let flow = UdpSocket::bind("127.0.0.1:0").unwrap();
        flow.connect(target.local_addr().unwrap()).unwrap();
        target.connect(flow.local_addr().unwrap()).unwrap();
        flow.set_nonblocking(true).unwrap();
        (target, flow)
    }

    /// Reads everything `target` sent to `flow`; returns the datagrams and the lost count.
    fn read_all(flow: &UdpSocket, batch: &mut RecvBatch, expect: usize) -> (Vec<Vec<u8>>, usize) {
        let (got, lost, _reads) = read_counting(flow, batch, expect);
        (got, lost)
    }

    /// [`read_all`], also counting the reads that found datagrams.
    fn read_counting(
        flow: &UdpSocket,
        batch: &mut RecvBatch,
        expect: usize,
    ) -> (Vec<Vec<u8>>, usize, usize) {
        let (mut got, mut lost, mut reads) = (Vec::new(), 0, 0);
        let deadline = std::time::Instant::now() + Duration::from_secs(5);
        while got.len() + lost < expect {
            assert!(std::time::Instant::now() < deadline, "datagrams missing");
            match batch.try_recv(flow) {
                Ok(n) => {
                    reads += 1;
                    assert_eq!(n, batch.len());
                    got.extend(batch.datagrams().map(<[u8]>::to_vec));
                    lost += batch.lost();
                    batch.release();
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                    std::thread::sleep(Duration::from_millis(1));
                }
                Err(e) => panic!("recv: {e}"),
            }
        }
        (got, lost, reads)
    }

    fn datagrams(sizes: &[usize]) -> Vec<Vec<u8>> {
        sizes
            .iter()
            .enumerate()
            .map(|(i, &n)| (0..n).map(|b| (b * 7 + i) as u8).collect())
            .collect()
    }

    /// Small datagrams with one long one among them arrive whole and in order, several per
    /// read.
    #[test]
    fn mixed_sizes_with_one_long_datagram_are_read_whole_and_in_order() {
        let (target, flow) = pair();
        let mut batch = RecvBatch::new();
        let mut sizes = vec![100];
        sizes.extend((0..40).map(|i| [1, 1400, 0, 2048, 700][i % 5]));
        sizes.insert(20, 60_000);
        let sent = datagrams(&sizes);
        for d in &sent {
            target.send(d).unwrap();
        }
        let (got, lost, reads) = read_counting(&flow, &mut batch, sent.len());
        assert_eq!(lost, 0);
        assert_eq!(got, sent);
        if cfg!(target_os = "linux") {
            assert!(reads < sent.len() / 2, "{reads} reads for {}", sent.len());
        }
    }

    /// A flow whose first datagram is long sizes its slots to it: a run of long datagrams is
    /// read whole, several per read on Linux.
    #[test]
    fn a_flow_of_long_datagrams_loses_none() {
        let (target, flow) = pair();
        let mut batch = RecvBatch::new();
        let sent = datagrams(&[8000; 12]);
        for d in &sent {
            target.send(d).unwrap();
        }
        let (got, lost) = read_all(&flow, &mut batch, sent.len());
        assert_eq!(lost, 0);
        assert_eq!(got, sent);
    }

    /// Two long datagrams in one read: the earlier is lost and counted, the later is whole,
    /// and the flow's slots grow so that the next such pair is read whole.
    #[cfg(target_os = "linux")]
    #[test]
    fn two_long_datagrams_in_one_read_lose_the_first_and_grow_the_slots() {
        let (target, flow) = pair();
        let mut batch = RecvBatch::new();
        let first = datagrams(&[10]);
        target.send(&first[0]).unwrap();
        assert_eq!(read_all(&flow, &mut batch, 1), (first, 0));
        let sent = datagrams(&[10, 5000, 20, 6000, 30]);
        for d in &sent {
            target.send(d).unwrap();
        }
        // All queued before the read, so that one read takes them all.
        std::thread::sleep(Duration::from_millis(50));
        let (got, lost) = read_all(&flow, &mut batch, sent.len());
        assert_eq!(lost, 1);
        let expected: Vec<Vec<u8>> = [0, 2, 3, 4].iter().map(|&i| sent[i].clone()).collect();
        assert_eq!(got, expected);
        assert_eq!(batch.slot, 5120);
        for d in &sent {
            target.send(d).unwrap();
        }
        let (got, lost) = read_all(&flow, &mut batch, sent.len());
        assert_eq!((got, lost), (sent, 0));
    }

    /// A batch holds no buffer between reads, nor after a read that found nothing.
    #[test]
    fn an_idle_batch_holds_no_buffer() {
        let (target, flow) = pair();
        let mut batch = RecvBatch::new();
        let e = batch.try_recv(&flow).unwrap_err();
        assert_eq!(e.kind(), io::ErrorKind::WouldBlock);
        assert!(batch.buf.is_none());
        target.send(b"one").unwrap();
        read_all(&flow, &mut batch, 1);
        assert!(batch.buf.is_none(), "released after use");
    }
}
