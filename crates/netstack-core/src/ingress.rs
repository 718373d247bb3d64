//! How packets enter the stack: [`Stack::poll_ingress_ready`], [`Stack::push_ingress`] and
//! [`Stack::poll_push_ingress_batch`]. Each packet is prepared outside the locks
//! ([`ingest`](crate::ingest)), then a TCP segment joins its runner group's ingress queue and
//! anything else is handed to the shared side.

use alloc::collections::VecDeque;
use alloc::vec::Vec;
use core::task::{Context, Poll};

use embassy_sync::blocking_mutex::raw::RawMutex;

use crate::error::Error;
use crate::ingest::{Delivered, Prepared};
use crate::packet::Packet;
use crate::shard::shard_of;
use crate::stack::Stack;
use crate::time::Clock;
use crate::udp::queue::Admit;

/// Packets prepared outside the locks and handed over together.
const INGRESS_CHUNK: usize = 32;

/// The ingress primitives.
impl<M: RawMutex, C: Clock> Stack<M, C> {
    /// `Ready` when every runner group's ingress queue has room for a TCP segment; otherwise
    /// registers the waker, which is woken when that group's runner has made room.
    pub fn poll_ingress_ready(&self, cx: &mut Context<'_>) -> Poll<()> {
        for g in 0..self.runner_groups() {
            let full = self.with_group(g, |group, _| {
                let full = group.tcp_ingress.len() >= group.config.ingress_queue;
                if full {
                    group.ingress_waiters.register(cx.waker());
                }
                full
            });
            if full {
                return Poll::Pending;
            }
        }
        Poll::Ready(())
    }

    /// Takes a raw IP packet from the device: it is checked and classified at once, and handed
    /// to its transport (TCP segments wait for their runner in its ingress queue).
    ///
    /// # Errors
    /// [`Error::QueueFull`] if it is a TCP segment and its ingress queue is full; the packet
    /// is dropped and counted (`drops.ingress_full`). Use
    /// [`poll_ingress_ready`](Self::poll_ingress_ready) first to get back-pressure instead.
    pub fn push_ingress(&self, packet: Packet) -> Result<(), Error> {
        let mut one = VecDeque::from([packet]);
        self.push_chunk(&mut one, None);
        if one.is_empty() {
            return Ok(());
        }
        self.with_shared(|shared, _| shared.counters.drops.ingress_full += 1);
        Err(Error::QueueFull)
    }

    /// Takes packets from the front of `packets`, as many as fit, checking and classifying them
    /// outside the locks and handing them over a chunk of 32 at a time (one lock acquisition
    /// per group with segments in the chunk, one for the rest); returns how many it took. If a
    /// group's ingress queue filled up, registers the waker (woken when its runner made room).
    /// Likewise while the UDP queue is full and its reader has not yet had
    /// [`Config::udp_hold`](crate::Config::udp_hold) to make room (woken when it has drained
    /// the queue to half, or when the time is up). Nothing is dropped: what did not fit stays
    /// in `packets`, in order.
    pub fn poll_push_ingress_batch(
        &self,
        cx: &mut Context<'_>,
        packets: &mut VecDeque<Packet>,
    ) -> usize {
        let mut taken = 0;
        while !packets.is_empty() {
            let before = packets.len();
            let stopped = self.push_chunk(packets, Some(&mut *cx));
            taken += before - packets.len();
            if stopped {
                break;
            }
        }
        taken
    }

    /// Prepares up to [`INGRESS_CHUNK`] packets from the front of `packets` and delivers them.
    /// Returns `true` if a TCP segment found no room: it and its group's later segments are
    /// back at the front of `packets` (in order), and `cx` (if any) is registered for room.
    fn push_chunk(&self, packets: &mut VecDeque<Packet>, mut cx: Option<&mut Context<'_>>) -> bool {
        let now = self.clock().now();
        let mut segments: heapless::Vec<(usize, usize, Prepared), INGRESS_CHUNK> =
            heapless::Vec::new();
        let mut others: heapless::Vec<(usize, Prepared, usize), INGRESS_CHUNK> =
            heapless::Vec::new();
        for index in 0..INGRESS_CHUNK {
            let Some(packet) = packets.pop_front() else {
                break;
            };
            let len = packet.len();
            // Checks, classification and the filter run here, outside the locks.
            let prepared = self.classifier.prepare(packet, now);
            let pushed = match &prepared {
                Prepared::Tcp(s) => {
                    let g = self.group_of(shard_of(&s.tuple, self.config.tcp_shards));
                    segments.push((index, g, prepared)).is_ok()
                }
                _ => others.push((index, prepared, len)).is_ok(),
            };
            debug_assert!(pushed, "at most INGRESS_CHUNK packets per chunk");
        }
        let mut refused: Vec<(usize, Packet)> = Vec::new();
        for g in 0..self.runner_groups() {
            if !segments.iter().any(|&(_, sg, _)| sg == g) {
                continue;
            }
            self.with_group(g, |group, wake| {
                let mut full = false;
                for (index, sg, prepared) in segments.iter_mut() {
                    if *sg != g {
                        continue;
                    }
                    let Prepared::Tcp(segment) = core::mem::replace(prepared, Prepared::Filtered)
                    else {
                        continue;
                    };
                    full |= group.tcp_ingress.len() >= group.config.ingress_queue;
                    if full {
                        refused.push((*index, segment.packet));
                    } else {
                        group.tcp_ingress.push_back(segment);
                    }
                }
                if full {
                    if let Some(cx) = cx.as_deref_mut() {
                        group.ingress_waiters.register(cx.waker());
                    }
                }
                wake.take_from(&mut group.runner_waker);
            });
        }
        let mut hold_started = false;
        // Once a datagram (or a fragment) waits for the UDP reader, so do the later ones and
        // the fragments after it, in order.
        let mut udp_waits = false;
        let pump = cx.as_deref().map(|cx| cx.waker());
        let mut rest = others.into_iter();
        // A datagram reassembled from fragments is delivered where its last fragment was, so
        // that a flow's datagrams stay in order: the lock is released to prepare it (the
        // filter runs outside the locks), and taken again for the packets after it.
        let mut reassembled: Option<Packet> = None;
        loop {
            if let Some(p) = reassembled.take() {
                self.deliver_reassembled(self.classifier.prepare(p, now), now);
            }
            if rest.len() == 0 {
                break;
            }
            self.with_shared(|shared, wake| {
                for (index, prepared, len) in rest.by_ref() {
                    // A fragment may complete a datagram: it waits for room like one (its
                    // own length standing for the datagram's), else the datagram it completes
                    // would find the queue full and be dropped.
                    let size = match &prepared {
                        Prepared::Udp(datagram) => Some(datagram.footprint()),
                        Prepared::Fragment(packet) => Some(packet.len()),
                        _ => None,
                    };
                    let waits = size.is_some_and(|size| {
                        let admit = match pump {
                            Some(pump) if udp_waits => {
                                shared.udp.wait_behind(pump);
                                Admit::Wait { started: false }
                            }
                            _ => {
                                let pump = pump.filter(|_| shared.udp_claimed);
                                shared.udp.admit(size, now, pump)
                            }
                        };
                        match admit {
                            Admit::Wait { started } => {
                                hold_started |= started;
                                true
                            }
                            _ => false,
                        }
                    });
                    if waits {
                        udp_waits = true;
                        let packet = match prepared {
                            Prepared::Udp(datagram) => datagram.into_packet(),
                            Prepared::Fragment(packet) => packet,
                            _ => unreachable!("only datagrams and fragments wait"),
                        };
                        refused.push((index, packet));
                        continue;
                    }
                    if let Delivered::Reassembled(p) =
                        shared.deliver(prepared, Some(len), &self.config, now, wake)
                    {
                        reassembled = Some(p);
                        break;
                    }
                }
            });
        }
        if hold_started {
            // Group 0's runner ends the wait at its deadline (a reader that never reads must
            // not stall the device): wake it to arm its timer.
            self.with_group(0, |group, wake| wake.take_from(&mut group.runner_waker));
        }
        let stopped = !refused.is_empty();
        refused.sort_unstable_by_key(|&(index, _)| index);
        for (_, p) in refused.into_iter().rev() {
            packets.push_front(p);
        }
        stopped
    }

    /// Delivers a datagram reassembled from fragments (already counted, so never held back:
    /// a segment without room is dropped and counted).
    fn deliver_reassembled(&self, prepared: Prepared, now: smoltcp::time::Instant) {
        match prepared {
            Prepared::Tcp(segment) => {
                let g = self.group_of(shard_of(&segment.tuple, self.config.tcp_shards));
                let dropped = self.with_group(g, |group, wake| {
                    if group.tcp_ingress.len() >= group.config.ingress_queue {
                        return true;
                    }
                    group.tcp_ingress.push_back(segment);
                    wake.take_from(&mut group.runner_waker);
                    false
                });
                if dropped {
                    self.with_shared(|shared, _| shared.counters.drops.ingress_full += 1);
                }
            }
            other => {
                // A reassembled datagram is whole: it cannot come back as a fragment.
                let _ = self.with_shared(|shared, wake| {
                    shared.deliver(other, None, &self.config, now, wake)
                });
            }
        }
    }
}
