//! A lossy link for tests: drops, duplicates, reorders and delays packets, decided by a seeded
//! random generator so that a failing run can be repeated.
//!
//! [`Impairer`] only decides (each packet becomes zero, one or two copies, each with a delay);
//! the glue that moves packets applies the decision: [`inbound_tap`] and [`outbound_tap`]
//! between a TUN device and a stack under tokio (real time), and the in-memory simulation in
//! [`crate::sim`] under simulated time.

use std::sync::Arc;
use std::time::Duration;

use futures::SinkExt;
use netstack_tokio::PacketSink;

use crate::fixture::{OutTap, Tap};
use crate::Tun;

/// How a link misbehaves. Probabilities are per packet.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Impairment {
    /// Seed of the random generator.
    pub seed: u64,
    /// Probability that a packet is lost.
    pub loss: f64,
    /// Probability that a packet arrives twice.
    pub duplicate: f64,
    /// Probability that a packet is held back briefly (0.5–`reorder_max`), so that the packets
    /// after it overtake it.
    pub reorder: f64,
    /// Longest hold of a reordered packet.
    pub reorder_max: Duration,
    /// Probability that a packet is delayed by up to `delay_max` (a latency spike).
    pub delay: f64,
    /// Longest latency spike.
    pub delay_max: Duration,
}

impl Impairment {
    /// The link of the robustness tests: 5 % loss, 2 % duplicates, 5 % reordered (held up to
    /// 5 ms), 2 % delayed by up to 40 ms.
    pub fn lossy(seed: u64) -> Self {
        Impairment {
            seed,
            loss: 0.05,
            duplicate: 0.02,
            reorder: 0.05,
            reorder_max: Duration::from_millis(5),
            delay: 0.02,
            delay_max: Duration::from_millis(40),
        }
    }
}

/// Counts of what an [`Impairer`] did.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct ImpairStats {
    /// Packets offered.
    pub packets: u64,
    /// Packets dropped.
    pub lost: u64,
    /// Packets delivered twice.
    pub duplicated: u64,
    /// Packets held back so that later ones overtake them.
    pub reordered: u64,
    /// Packets delayed by a latency spike.
    pub delayed: u64,
}

/// Decides the fate of each packet on one direction of a link.
#[derive(Debug, Clone)]
pub struct Impairer {
    config: Impairment,
    state: u64,
    /// What it did so far.
    pub stats: ImpairStats,
}

impl Impairer {
    /// An impairer for one direction; use different seeds for the two directions.
    pub fn new(config: Impairment) -> Self {
        Impairer {
            config,
            state: config.seed,
            stats: ImpairStats::default(),
        }
    }

    /// splitmix64: every output is fully mixed, even for small, adjacent seeds (a plain
    /// xorshift seeded with 42 lost the first three packets in a row).
    fn next(&mut self) -> u64 {
        self.state = self.state.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.state;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    /// A uniform number in [0, 1).
    fn unit(&mut self) -> f64 {
        (self.next() >> 11) as f64 / (1u64 << 53) as f64
    }

    fn up_to(&mut self, max: Duration) -> Duration {
        max.mul_f64(self.unit())
    }

    /// The copies of `packet` to deliver and the delay of each: empty if it is lost.
    pub fn decide(&mut self, packet: Vec<u8>) -> Vec<(Duration, Vec<u8>)> {
        self.stats.packets += 1;
        let c = self.config;
        if self.unit() < c.loss {
            self.stats.lost += 1;
            return Vec::new();
        }
        let delay = if self.unit() < c.reorder {
            self.stats.reordered += 1;
            Duration::from_micros(500) + self.up_to(c.reorder_max)
        } else if self.unit() < c.delay {
            self.stats.delayed += 1;
            self.up_to(c.delay_max)
        } else {
            Duration::ZERO
        };
        if self.unit() < c.duplicate {
            self.stats.duplicated += 1;
            let later = delay + Duration::from_micros(100) + self.up_to(c.reorder_max);
            vec![(delay, packet.clone()), (later, packet)]
        } else {
            vec![(delay, packet)]
        }
    }
}

/// An inbound tap (TUN → stack) for [`Fixture::start_with_taps`](crate::fixture::Fixture):
/// undelayed copies go to the stack at once, delayed ones from a timer task.
pub fn inbound_tap(mut impairer: Impairer) -> Tap {
    Box::new(move |packet, sink: &PacketSink| {
        let mut now = Vec::new();
        for (delay, p) in impairer.decide(packet) {
            if delay.is_zero() {
                now.push(p);
            } else {
                let mut sink = sink.clone();
                tokio::spawn(async move {
                    tokio::time::sleep(delay).await;
                    let _ = sink.send(p).await;
                });
            }
        }
        now
    })
}

/// An outbound tap (stack → TUN) for [`Fixture::start_with_taps`](crate::fixture::Fixture).
pub fn outbound_tap(mut impairer: Impairer) -> OutTap {
    Box::new(move |packet, tun: &Arc<Tun>| {
        let mut now = Vec::new();
        for (delay, p) in impairer.decide(packet) {
            if delay.is_zero() {
                now.push(p);
            } else {
                let tun = tun.clone();
                tokio::spawn(async move {
                    tokio::time::sleep(delay).await;
                    let _ = tun.send(&p).await;
                });
            }
        }
        now
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn impairer_is_reproducible_and_close_to_its_rates() {
        let run = |seed| {
            let mut imp = Impairer::new(Impairment::lossy(seed));
            let fates: Vec<usize> = (0..20_000u32)
                .map(|i| imp.decide(i.to_le_bytes().to_vec()).len())
                .collect();
            (fates, imp.stats)
        };
        let (a, stats) = run(7);
        assert_eq!(run(7).0, a, "same seed, same fates");
        assert_ne!(run(8).0, a, "another seed, other fates");
        // 5 % ± 1 % lost, 2 % ± 0.7 % duplicated, over 20,000 packets.
        assert!((800..=1200).contains(&stats.lost), "{stats:?}");
        assert!((260..=540).contains(&stats.duplicated), "{stats:?}");
        assert!(stats.reordered > 500 && stats.delayed > 100, "{stats:?}");
    }
}
