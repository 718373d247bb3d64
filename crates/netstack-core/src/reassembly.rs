//! IP fragment reassembly (IPv4 and IPv6), bounded in datagrams, bytes and time.
//!
//! A fragmented datagram is identified by its addresses and identification (plus the protocol
//! for IPv4). Fragments are copied into a buffer at their offset; the datagram is complete when
//! the last fragment has set its length and no hole remains. Overlapping fragments discard the
//! whole datagram (RFC 5722: overlaps are an attack, not a network artefact). Every pending
//! datagram expires after the configured timeout.
//!
//! Cost per fragment is bounded whatever the sender does: the received ranges of a datagram are
//! a sorted list that a fragment extends in place (merged with the neighbours it touches), at
//! most [`MAX_RANGES`] long, and the list's memory counts against the byte limit like the data.

use alloc::vec::Vec;

use smoltcp::time::{Duration, Instant};
use smoltcp::wire::IpAddress;

/// Identifies the datagram a fragment belongs to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum FragKey {
    V4 {
        src: IpAddress,
        dst: IpAddress,
        ident: u16,
        protocol: u8,
    },
    V6 {
        src: IpAddress,
        dst: IpAddress,
        ident: u32,
    },
}

/// Largest reassembled payload: the IP length fields are 16 bits.
const MAX_PAYLOAD: usize = 65535;

/// Most disjoint byte ranges (holes + 1) one datagram may have. Fragments of a real datagram
/// arrive nearly in order (a 64 KiB datagram at MTU 1280 is 52 fragments); a sender that keeps
/// more holes open than this is attacking, and its datagram is discarded.
pub(crate) const MAX_RANGES: usize = 64;

/// Bytes one entry of a range list costs.
const RANGE_BYTES: usize = core::mem::size_of::<(usize, usize)>();

/// Why a fragment was not accepted (counted by the caller).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum ReassemblyError {
    /// The fragment is inconsistent (bad length, beyond 64 KiB, overlapping).
    Invalid,
    /// No room: too many pending datagrams or too many buffered bytes.
    Full,
}

/// A completed datagram: the header of its first fragment and its whole payload.
#[derive(Debug)]
pub(crate) struct Reassembled {
    /// The IP header of the fragment at offset 0 (IPv4 with options, or the IPv6 fixed header).
    pub(crate) header: Vec<u8>,
    /// The upper-layer protocol (IPv6: the fragment header's next header).
    pub(crate) next_header: u8,
    pub(crate) payload: Vec<u8>,
}

struct Pending {
    key: FragKey,
    expires: Instant,
    header: Option<Vec<u8>>,
    next_header: u8,
    data: Vec<u8>,
    /// Received byte ranges, sorted and disjoint.
    filled: Vec<(usize, usize)>,
    total: Option<usize>,
}

impl Pending {
    /// Memory this datagram holds: data, header and its range list.
    fn bytes(&self) -> usize {
        self.data.len() + self.header.as_ref().map_or(0, Vec::len) + self.ranges_bytes()
    }

    fn ranges_bytes(&self) -> usize {
        self.filled.capacity() * RANGE_BYTES
    }

    fn is_complete(&self) -> bool {
        self.header.is_some() && self.total.is_some_and(|t| self.filled == [(0, t)])
    }

    /// Records `start..end` as received, merging it with the ranges it touches, so that a
    /// complete datagram is one range. `false` if it overlaps what is already there or would
    /// open more than [`MAX_RANGES`] ranges. O(log n) to find its place, at most one shift of
    /// the (bounded) list to insert it.
    fn fill(&mut self, start: usize, end: usize) -> bool {
        let at = self.filled.partition_point(|&(s, _)| s < start);
        let before = at.checked_sub(1).map(|i| self.filled[i]);
        let after = self.filled.get(at).copied();
        if before.is_some_and(|(_, e)| e > start) || after.is_some_and(|(s, _)| s < end) {
            return false;
        }
        let joins_before = before.is_some_and(|(_, e)| e == start);
        let joins_after = after.is_some_and(|(s, _)| s == end);
        match (joins_before, joins_after) {
            (true, true) => {
                self.filled[at - 1].1 = self.filled[at].1;
                self.filled.remove(at);
            }
            (true, false) => self.filled[at - 1].1 = end,
            (false, true) => self.filled[at].0 = start,
            (false, false) => {
                if self.filled.len() >= MAX_RANGES {
                    return false;
                }
                self.filled.insert(at, (start, end));
            }
        }
        true
    }
}

/// Pending fragmented datagrams.
pub(crate) struct Reassembler {
    pending: Vec<Pending>,
    max_datagrams: usize,
    max_bytes: usize,
    timeout: Duration,
    bytes: usize,
    /// Datagrams dropped because they timed out (read by the stack's counters).
    pub(crate) expired: u64,
}

impl Reassembler {
    pub(crate) fn new(max_datagrams: usize, max_bytes: usize, timeout: Duration) -> Self {
        Reassembler {
            pending: Vec::new(),
            max_datagrams,
            max_bytes,
            timeout,
            bytes: 0,
            expired: 0,
        }
    }

    /// Earliest expiry of a pending datagram.
    pub(crate) fn deadline(&self) -> Option<Instant> {
        self.pending.iter().map(|p| p.expires).min()
    }

    /// Number of datagrams being reassembled.
    #[cfg(test)]
    pub(crate) fn len(&self) -> usize {
        self.pending.len()
    }

    /// Drops datagrams whose time is up.
    pub(crate) fn expire(&mut self, now: Instant) {
        let before = self.pending.len();
        let mut freed = 0;
        self.pending.retain(|p| {
            let keep = p.expires > now;
            if !keep {
                freed += p.bytes();
            }
            keep
        });
        self.bytes -= freed;
        self.expired += (before - self.pending.len()) as u64;
    }

    /// Adds one fragment. `header` is the fragment's IP header (kept from the fragment at
    /// offset 0), `offset` and `data` its place in the payload, `more` its more-fragments flag.
    /// Returns the whole datagram once complete.
    #[allow(clippy::too_many_arguments)]
    pub(crate) fn add(
        &mut self,
        key: FragKey,
        header: &[u8],
        next_header: u8,
        offset: usize,
        more: bool,
        data: &[u8],
        now: Instant,
    ) -> Result<Option<Reassembled>, ReassemblyError> {
        let end = offset + data.len();
        // Every fragment but the last carries a multiple of 8 bytes; nothing goes past 64 KiB.
        if (more && !data.len().is_multiple_of(8)) || end > MAX_PAYLOAD || (more && data.is_empty())
        {
            return Err(ReassemblyError::Invalid);
        }
        let index = match self.pending.iter().position(|p| p.key == key) {
            Some(i) => i,
            None => {
                if self.pending.len() >= self.max_datagrams {
                    return Err(ReassemblyError::Full);
                }
                self.pending.push(Pending {
                    key,
                    expires: now + self.timeout,
                    header: None,
                    next_header,
                    data: Vec::new(),
                    filled: Vec::new(),
                    total: None,
                });
                self.pending.len() - 1
            }
        };
        let p = &mut self.pending[index];
        let total_conflict = match p.total {
            Some(t) => end > t || (!more && end != t),
            None => !more && p.filled.last().is_some_and(|&(_, e)| e > end),
        };
        let ranges_before = p.ranges_bytes();
        if total_conflict || !p.fill(offset, end) {
            self.discard(index);
            return Err(ReassemblyError::Invalid);
        }
        let growth = end.saturating_sub(p.data.len())
            + (p.ranges_bytes() - ranges_before)
            + if offset == 0 && p.header.is_none() {
                header.len()
            } else {
                0
            };
        if self.bytes + growth > self.max_bytes {
            // `discard` subtracts what was counted before this fragment.
            let p = &mut self.pending[index];
            self.bytes += p.ranges_bytes() - ranges_before;
            self.discard(index);
            return Err(ReassemblyError::Full);
        }
        let p = &mut self.pending[index];
        if p.data.len() < end {
            p.data.resize(end, 0);
        }
        p.data[offset..end].copy_from_slice(data);
        if offset == 0 {
            p.header = Some(header.to_vec());
            p.next_header = next_header;
        }
        if !more {
            p.total = Some(end);
        }
        self.bytes += growth;
        if !p.is_complete() {
            return Ok(None);
        }
        let p = self.pending.swap_remove(index);
        self.bytes -= p.bytes();
        Ok(Some(Reassembled {
            header: p.header.unwrap_or_default(),
            next_header: p.next_header,
            payload: p.data,
        }))
    }

    fn discard(&mut self, index: usize) {
        let p = self.pending.swap_remove(index);
        self.bytes -= p.bytes();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use smoltcp::wire::Ipv4Address;

    fn key(ident: u16) -> FragKey {
        FragKey::V4 {
            src: Ipv4Address::new(198, 18, 0, 1).into(),
            dst: Ipv4Address::new(198, 18, 0, 2).into(),
            ident,
            protocol: 17,
        }
    }

    fn reassembler() -> Reassembler {
        Reassembler::new(4, 200_000, Duration::from_secs(5))
    }

    #[test]
    fn fragments_in_any_order_make_one_datagram() {
        let mut r = reassembler();
        let now = Instant::ZERO;
        let payload: Vec<u8> = (0..3000u32).map(|i| i as u8).collect();
        let hdr = [0x45u8; 20];
        assert!(r
            .add(key(1), &hdr, 17, 2400, false, &payload[2400..], now)
            .unwrap()
            .is_none());
        assert!(r
            .add(key(1), &hdr, 17, 0, true, &payload[..1200], now)
            .unwrap()
            .is_none());
        let done = r
            .add(key(1), &hdr, 17, 1200, true, &payload[1200..2400], now)
            .unwrap()
            .expect("complete");
        assert_eq!(done.payload, payload);
        assert_eq!(done.header, hdr);
        assert_eq!(r.len(), 0);
        assert_eq!(r.bytes, 0);
    }

    #[test]
    fn overlapping_fragments_discard_the_datagram() {
        let mut r = reassembler();
        let data = [0u8; 16];
        r.add(key(2), &[], 17, 0, true, &data, Instant::ZERO)
            .unwrap();
        assert_eq!(
            r.add(key(2), &[], 17, 8, true, &data, Instant::ZERO)
                .unwrap_err(),
            ReassemblyError::Invalid
        );
        assert_eq!(r.len(), 0);
    }

    #[test]
    fn limits_and_timeout_bound_memory() {
        let mut r = reassembler();
        for i in 0..4 {
            r.add(key(i), &[], 17, 0, true, &[0; 8], Instant::ZERO)
                .unwrap();
        }
        assert_eq!(
            r.add(key(9), &[], 17, 0, true, &[0; 8], Instant::ZERO)
                .unwrap_err(),
            ReassemblyError::Full
        );
        assert_eq!(r.deadline(), Some(Instant::from_secs(5)));
        r.expire(Instant::from_secs(6));
        assert_eq!((r.len(), r.bytes, r.expired), (0, 0, 4));
        // Byte budget.
        let mut small = Reassembler::new(4, 100, Duration::from_secs(5));
        assert_eq!(
            small
                .add(key(1), &[], 17, 0, true, &[0; 200], Instant::ZERO)
                .unwrap_err(),
            ReassemblyError::Full
        );
        // Beyond 64 KiB.
        assert_eq!(
            r.add(key(3), &[], 17, 65528, false, &[0; 16], Instant::ZERO)
                .unwrap_err(),
            ReassemblyError::Invalid
        );
    }

    #[test]
    fn tiny_alternating_fragments_are_bounded_and_their_range_list_is_counted() {
        let mut r = Reassembler::new(4, 1 << 20, Duration::from_secs(5));
        // Every other 8-byte block: each fragment opens a new hole.
        for i in 0..MAX_RANGES {
            r.add(key(7), &[], 17, i * 16 + 16, true, &[0; 8], Instant::ZERO)
                .unwrap();
        }
        let data_bytes = MAX_RANGES * 16 + 8; // the data buffer reaches the last fragment's end
        assert!(
            r.bytes >= data_bytes + MAX_RANGES * RANGE_BYTES,
            "the range list counts against the byte limit: {} bytes for {data_bytes} of data",
            r.bytes
        );
        // One hole too many discards the datagram and frees everything it held.
        assert_eq!(
            r.add(
                key(7),
                &[],
                17,
                MAX_RANGES * 16 + 16,
                true,
                &[0; 8],
                Instant::ZERO
            )
            .unwrap_err(),
            ReassemblyError::Invalid
        );
        assert_eq!((r.len(), r.bytes), (0, 0));
    }

    #[test]
    fn a_range_list_that_exceeds_the_byte_limit_is_refused() {
        // Room for the data of a few fragments, not for a long range list as well.
        let mut r = Reassembler::new(4, 600, Duration::from_secs(5));
        let mut refused = false;
        for i in 0..MAX_RANGES {
            if r.add(key(8), &[], 17, i * 16 + 16, true, &[0; 8], Instant::ZERO)
                .is_err_and(|e| e == ReassemblyError::Full)
            {
                refused = true;
                break;
            }
        }
        assert!(
            refused,
            "600 bytes cannot hold {MAX_RANGES} ranges and their data"
        );
        assert_eq!((r.len(), r.bytes), (0, 0));
    }

    #[test]
    fn a_large_datagram_in_interleaved_order_still_reassembles() {
        let mut r = Reassembler::new(4, 1 << 20, Duration::from_secs(5));
        let step = 1232; // 52 fragments of a 64,000-byte datagram at MTU 1280
        let payload: Vec<u8> = (0..64_000u32).map(|i| (i * 31) as u8).collect();
        let chunks: Vec<(usize, &[u8])> = payload
            .chunks(step)
            .enumerate()
            .map(|(i, c)| (i * step, c))
            .collect();
        let last = chunks.len() - 1;
        let order = (0..chunks.len())
            .step_by(2)
            .chain((1..chunks.len()).step_by(2));
        let mut done = None;
        for i in order {
            let (offset, data) = chunks[i];
            if let Some(d) = r
                .add(
                    key(9),
                    &[0x45; 20],
                    17,
                    offset,
                    i != last,
                    data,
                    Instant::ZERO,
                )
                .unwrap()
            {
                done = Some(d);
            }
        }
        assert_eq!(done.expect("complete").payload, payload);
        assert_eq!(r.bytes, 0);
    }
}
