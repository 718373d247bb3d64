//! One runner pass over a group: the work a runner does each time it is polled.
//!
//! A pass feeds the group's queued TCP segments to their shards (SYN table first, then
//! smoltcp), then services every shard that has work — lets its sockets transmit and runs its
//! connection table — and computes the next deadline. It is bounded: at most `runner_batch`
//! segments per pass, and it stops early while the outbox is full. What it produces for the
//! shared side (established connections for the accept queue, new connection requests, expired
//! requests) is collected in the group and handed over after the group's lock is released.

use smoltcp::iface::PollResult;
use smoltcp::time::Instant;

use crate::classify::TcpSegment;
use crate::device::LinkDevice;
use crate::group::Group;
use crate::packet::Packet;
use crate::shard::{shard_of, Shard};
use crate::tcp::budget::BufferBudget;
use crate::tcp::table::SynOutcome;
use crate::waker::WakeBatch;

/// What one call of [`Stack::poll_runner`](crate::Stack::poll_runner) asks of its caller.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[must_use]
pub struct RunnerStatus {
    /// Call `poll_runner` again at this time at the latest (a timer is due then), or `None`
    /// if only an event (packet, application operation) can create work. The runner's waker
    /// is registered either way.
    pub deadline: Option<Instant>,
    /// More work is ready now (the batch limit was reached): yield, then poll again.
    pub more: bool,
    /// No application handle (packet port, listener, sockets, streams) is alive: nothing can
    /// use the stack any more, and a [`Runner`](crate::Runner) stops. (A stack driven by hand,
    /// without handles, reports it on every pass and may ignore it.)
    pub finished: bool,
}

impl RunnerStatus {
    /// The status of two groups served by one runner.
    pub(crate) fn merge(self, other: RunnerStatus) -> RunnerStatus {
        RunnerStatus {
            deadline: [self.deadline, other.deadline].into_iter().flatten().min(),
            more: self.more || other.more,
            finished: self.finished && other.finished,
        }
    }
}

impl Group {
    /// One runner pass (see the module documentation); `finished` is left for the caller.
    pub(crate) fn run(&mut self, now: Instant, wake: &mut WakeBatch) -> RunnerStatus {
        for i in 0..self.shards.len() {
            if self.shards[i].deadline.is_some_and(|d| now >= d) {
                self.mark_dirty(i);
            }
        }

        let mut processed = 0;
        while processed < self.config.runner_batch {
            if self.out.is_full() {
                self.egress_blocked = true;
                break;
            }
            let Some(segment) = self.tcp_ingress.pop_front() else {
                break;
            };
            processed += 1;
            self.ingest_segment(segment, now, wake);
        }
        if processed > 0 {
            self.ingress_waiters.take_all(wake);
        }

        // Service the shards with work: transmit, then run their connection tables.
        let mut serviced = 0;
        while serviced < self.dirty.len() && !self.egress_blocked {
            let i = self.dirty[serviced];
            if self.service(i, now, wake) {
                self.shards[i].dirty = false;
                serviced += 1;
            }
        }
        self.dirty.drain(..serviced);
        self.out.wake_consumers(wake);

        let more = (!self.tcp_ingress.is_empty() || !self.dirty.is_empty()) && !self.egress_blocked;
        // While the outbox is full, only draining it (which wakes the runner) lets the shards
        // make progress; a deadline already due would only make the runner spin.
        let blocked = self.egress_blocked;
        let deadline = self
            .shards
            .iter()
            .filter_map(|s| s.deadline)
            .filter(|&d| !blocked || d > now)
            .min();
        RunnerStatus {
            deadline,
            more,
            finished: false,
        }
    }

    /// Hands one TCP segment to its shard: a SYN goes through the SYN table first, which
    /// creates the listening socket for a new 4-tuple (or, with connection requests, keeps the
    /// SYN for the application to answer, or answers with a SYN cookie when the backlog is
    /// full); an ACK for no connection may return a cookie; then smoltcp processes it.
    fn ingest_segment(&mut self, segment: TcpSegment, now: Instant, wake: &mut WakeBatch) {
        let TcpSegment {
            packet,
            tuple,
            header,
        } = segment;
        self.segments_in.0 += 1;
        self.segments_in.1 += packet.len() as u64;
        let i = self.local(shard_of(&tuple, self.config.tcp_shards));
        let mut created = None;
        if header.is_syn() {
            let (total, syn_received, bytes) =
                self.shards.iter().fold((0, 0, 0), |(n, s, b), shard| {
                    (
                        n + shard.tcp.len(),
                        s + shard.tcp.syn_received(),
                        b + shard.tcp.buffer_bytes(),
                    )
                });
            let budget = BufferBudget::new(bytes, self.config.tcp_buffer_budget);
            let totals = (total, syn_received, budget);
            let shard = &mut self.shards[i];
            match shard
                .tcp
                .on_syn(tuple, now, &self.config, &mut shard.sockets, totals)
            {
                SynOutcome::Listening(id) => created = id,
                SynOutcome::Request => {
                    let info = shard
                        .tcp
                        .add_request(tuple, packet, header, now, &self.config);
                    self.new_requests.push(info.id);
                    self.mark_dirty(i); // its expiry joins the shard's deadline
                    return;
                }
                SynOutcome::PendingRequest => return,
                SynOutcome::Refuse(refusal) => {
                    // A full outbox drops the answer (counted); the peer retries.
                    let _ = self.refuse(tuple, &header, &packet, refusal, now, wake);
                    return;
                }
                SynOutcome::Cookie => {
                    let _ = self.send_cookie(tuple, &header, now, wake); // drops are counted
                    return;
                }
                // No socket listens: smoltcp answers with RST.
                SynOutcome::Refused => {}
            }
        }
        let packet = if !header.syn
            && !header.rst
            && header.ack.is_some()
            && self.cookies.active(now)
            && !self.shards[i].tcp.knows(&tuple)
        {
            // An ACK for no connection while cookies are out: perhaps one comes back.
            match self.try_cookie(i, tuple, &header, packet, now) {
                Some(packet) => packet,
                None => return,
            }
        } else {
            packet
        };
        self.feed(i, packet, now);
        let shard = &mut self.shards[i];
        if let Some(id) = created {
            shard.tcp.after_new_syn(id, &mut shard.sockets);
        }
        if header.rst {
            shard.tcp.after_rst(tuple, &mut shard.sockets);
        }
        self.mark_dirty(i);
    }

    /// Lets local shard `i`'s smoltcp interface process `packet`.
    pub(crate) fn feed(&mut self, i: usize, packet: Packet, now: Instant) {
        self.rx = Some(packet);
        let shard = &mut self.shards[i];
        let mut device = LinkDevice {
            rx: &mut self.rx,
            out: &mut self.out,
            mtu: self.config.tcp_mtu(),
            tcp_checksum: !self.config.tcp_checksum_offload,
        };
        shard
            .iface
            .poll_ingress_single(now, &mut device, &mut shard.sockets);
        self.rx = None;
    }

    /// Refuses with RST the requests of local shard `i` that waited `syn_timeout` for an
    /// answer; the ones no listener took yet are forgotten by the request queue afterwards.
    fn expire_requests(&mut self, i: usize, now: Instant, wake: &mut WakeBatch) {
        loop {
            let mut expired: heapless::Vec<_, 16> = heapless::Vec::new();
            let more = self.shards[i]
                .tcp
                .expire_requests(now, &self.config, &mut expired);
            for (id, request) in expired {
                if !request.handed_out {
                    self.expired_requests.push(id);
                }
                // A full outbox drops the RST (counted); the peer's retransmitted SYN then
                // finds no request and is answered afresh.
                let _ = self.out.send_rst(request.tuple, &request.header, wake);
            }
            if !more {
                return;
            }
        }
    }

    /// Services local shard `i`: lets its sockets transmit, runs its connection table
    /// (promotions, expiries, reaping, wakers) and computes its next deadline. Returns `false`
    /// if the outbox filled up first (the shard stays dirty and is finished once it drains).
    fn service(&mut self, i: usize, now: Instant, wake: &mut WakeBatch) -> bool {
        self.expire_requests(i, now, wake);
        let mtu = self.config.tcp_mtu();
        let checksum = !self.config.tcp_checksum_offload;
        let shard = &mut self.shards[i];
        if !transmit(shard, &mut self.rx, &mut self.out, (mtu, checksum), now) {
            self.egress_blocked = true;
            return false;
        }
        let aborted = shard.tcp.maintain(
            now,
            &self.config,
            &mut shard.sockets,
            &mut self.established,
            wake,
        );
        if aborted {
            // Send the RSTs now, then remove what they closed.
            if !transmit(shard, &mut self.rx, &mut self.out, (mtu, checksum), now) {
                self.egress_blocked = true;
                return false;
            }
            shard.tcp.maintain(
                now,
                &self.config,
                &mut shard.sockets,
                &mut self.established,
                wake,
            );
        }
        let iface_at = shard.iface.poll_at(now, &shard.sockets);
        shard.deadline = [iface_at, shard.tcp.deadline()].into_iter().flatten().min();
        true
    }
}

/// Lets the sockets of `shard` transmit until they have nothing to send; `false` if the
/// outbox filled up first.
fn transmit(
    shard: &mut Shard,
    rx: &mut Option<Packet>,
    out: &mut crate::outbox::Outbox,
    (mtu, tcp_checksum): (usize, bool),
    now: Instant,
) -> bool {
    loop {
        if out.is_full() {
            return false;
        }
        let mut device = LinkDevice {
            rx,
            out,
            mtu,
            tcp_checksum,
        };
        match shard
            .iface
            .poll_egress(now, &mut device, &mut shard.sockets)
        {
            PollResult::None => return true,
            PollResult::SocketStateChanged => {}
        }
    }
}
