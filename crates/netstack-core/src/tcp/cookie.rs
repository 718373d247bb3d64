//! SYN cookies (RFC 4987 3.6): when the half-open table is full, a SYN is answered without
//! keeping any state, with a SYN-ACK whose initial sequence number is a MAC of the connection;
//! the connection is created only when an ACK comes back that carries a valid one.
//!
//! The 32-bit cookie (our initial sequence number) is
//!
//! ```text
//!  31                        8 7     5 4        1   0
//! +---------------------------+-------+----------+---+
//! |  MAC (24 bits)            |  MSS  | wscale   |SACK|
//! +---------------------------+-------+----------+---+
//! ```
//!
//! - MSS: an index into [`MSS_TABLE`], the largest entry not above the peer's MSS;
//! - wscale: the peer's window-scale shift (0–14), or 15 if it does not scale — so a cookie
//!   connection keeps window scaling, and is as fast as any other;
//! - SACK: whether the peer permits selective acknowledgements;
//! - MAC: SipHash-2-4 over the 4-tuple, the peer's initial sequence number, the low 8 bits and
//!   the 64-second epoch, keyed by a random key of the stack's. A cookie is valid for the epoch
//!   it was made in and the next one (64–128 s); every epoch in effect uses a new key.
//!
//! Forging a connection takes guessing 24 bits (one in 16.7 million forged ACKs), as with
//! Linux's cookies, and cookies are checked only while the stack has sent some in the last two
//! epochs, so a forged-ACK storm outside a SYN flood costs one table lookup per packet.
//! Timestamps are not negotiated on cookie connections (the stack does not use them anyway).

use smoltcp::time::{Duration, Instant};
use smoltcp::wire::IpAddress;

use crate::classify::SynOptions;
use crate::tcp::tuple::FourTuple;

/// How long one key is in use; a cookie stays valid for this and the next period.
const EPOCH: Duration = Duration::from_secs(64);

/// The MSS values a cookie can carry (3 bits): Linux's common values plus jumbo and TUN-sized
/// segments, so that a connection over a large-MTU link keeps large segments.
pub(crate) const MSS_TABLE: [u16; 8] = [536, 1220, 1360, 1440, 1460, 8960, 16344, 64960];

/// What a valid cookie tells about the peer's SYN.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct CookieOptions {
    pub(crate) mss: u16,
    pub(crate) window_scale: Option<u8>,
    pub(crate) sack_permitted: bool,
}

/// The stack's cookie state: a key, and when it last sent a cookie.
#[derive(Debug)]
pub(crate) struct CookieJar {
    key: (u64, u64),
    last_sent: Option<Instant>,
}

impl CookieJar {
    /// A jar keyed from `seed` (the stack's random seed).
    pub(crate) fn new(seed: u64) -> Self {
        let mut s = seed ^ 0x636f_6f6b_6965_6a61; // "cookieja"
        CookieJar {
            key: (splitmix64(&mut s), splitmix64(&mut s)),
            last_sent: None,
        }
    }

    /// The cookie (our initial sequence number) answering a SYN with `options` and sequence
    /// number `peer_isn` on `tuple`, at `now`.
    pub(crate) fn make(
        &mut self,
        tuple: &FourTuple,
        peer_isn: u32,
        options: &SynOptions,
        now: Instant,
    ) -> u32 {
        self.last_sent = Some(now);
        let mss = options.mss.unwrap_or(536);
        let mss_index = MSS_TABLE.iter().rposition(|&m| m <= mss).unwrap_or(0) as u32;
        let wscale = options.window_scale.map_or(15, |w| u32::from(w.min(14)));
        let low = (mss_index << 5) | (wscale << 1) | u32::from(options.sack_permitted);
        (self.mac(epoch(now), tuple, peer_isn, low) << 8) | low
    }

    /// Checks the cookie `cookie` that an ACK from `tuple` returned (its acknowledgement number
    /// minus one), whose sequence number minus one is `peer_isn`; the options it carries if it
    /// is valid now.
    pub(crate) fn check(
        &self,
        tuple: &FourTuple,
        peer_isn: u32,
        cookie: u32,
        now: Instant,
    ) -> Option<CookieOptions> {
        let recently_sent = self.last_sent.is_some_and(|t| now < t + EPOCH * 2);
        if !recently_sent {
            return None;
        }
        let low = cookie & 0xff;
        let current = epoch(now);
        let valid = [current, current.wrapping_sub(1)]
            .iter()
            .any(|&e| self.mac(e, tuple, peer_isn, low) == cookie >> 8);
        if !valid {
            return None;
        }
        let wscale = ((low >> 1) & 0xf) as u8;
        Some(CookieOptions {
            mss: MSS_TABLE[(low >> 5) as usize],
            window_scale: (wscale != 15).then_some(wscale),
            sack_permitted: low & 1 == 1,
        })
    }

    /// Whether a cookie was sent in the last two epochs (only then are ACKs checked).
    pub(crate) fn active(&self, now: Instant) -> bool {
        self.last_sent.is_some_and(|t| now < t + EPOCH * 2)
    }

    /// The 24-bit MAC of a cookie.
    fn mac(&self, epoch: u64, tuple: &FourTuple, peer_isn: u32, low: u32) -> u32 {
        let mut input = [0u8; 2 * 18 + 4 + 4 + 8];
        let mut at = 0;
        for ep in [tuple.remote, tuple.local] {
            let addr: &[u8] = match &ep.addr {
                IpAddress::Ipv4(a) => &a.octets(),
                IpAddress::Ipv6(a) => &a.octets(),
            };
            // Both families fill 16 bytes (IPv4 zero-padded), so no two inputs collide.
            input[at..at + addr.len()].copy_from_slice(addr);
            at += 16;
            input[at..at + 2].copy_from_slice(&ep.port.to_be_bytes());
            at += 2;
        }
        input[at..at + 4].copy_from_slice(&peer_isn.to_be_bytes());
        input[at + 4..at + 8].copy_from_slice(&low.to_be_bytes());
        input[at + 8..at + 16].copy_from_slice(&epoch.to_be_bytes());
        (siphash24(self.key, &input) & 0x00ff_ffff) as u32
    }
}

/// The epoch `now` falls in.
fn epoch(now: Instant) -> u64 {
    (now.total_millis().max(0) as u64) / EPOCH.total_millis()
}

/// One step of splitmix64: expands a seed into independent key words.
fn splitmix64(state: &mut u64) -> u64 {
    *state = state.wrapping_add(0x9e37_79b9_7f4a_7c15);
    let mut z = *state;
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

/// SipHash-2-4 (Aumasson and Bernstein), a keyed MAC for short inputs.
fn siphash24((k0, k1): (u64, u64), data: &[u8]) -> u64 {
    let mut v = [
        k0 ^ 0x736f_6d65_7073_6575,
        k1 ^ 0x646f_7261_6e64_6f6d,
        k0 ^ 0x6c79_6765_6e65_7261,
        k1 ^ 0x7465_6462_7974_6573,
    ];
    fn round(v: &mut [u64; 4]) {
        v[0] = v[0].wrapping_add(v[1]);
        v[1] = v[1].rotate_left(13) ^ v[0];
        v[0] = v[0].rotate_left(32);
        v[2] = v[2].wrapping_add(v[3]);
        v[3] = v[3].rotate_left(16) ^ v[2];
        v[0] = v[0].wrapping_add(v[3]);
        v[3] = v[3].rotate_left(21) ^ v[0];
        v[2] = v[2].wrapping_add(v[1]);
        v[1] = v[1].rotate_left(17) ^ v[2];
        v[2] = v[2].rotate_left(32);
    }
    let compress = |m: u64, v: &mut [u64; 4]| {
        v[3] ^= m;
        round(v);
        round(v);
        v[0] ^= m;
    };
    let mut chunks = data.chunks_exact(8);
    for chunk in &mut chunks {
        let mut word = [0u8; 8];
        word.copy_from_slice(chunk);
        compress(u64::from_le_bytes(word), &mut v);
    }
    let mut last = [0u8; 8];
    last[..chunks.remainder().len()].copy_from_slice(chunks.remainder());
    last[7] = data.len() as u8;
    compress(u64::from_le_bytes(last), &mut v);
    v[2] ^= 0xff;
    for _ in 0..4 {
        round(&mut v);
    }
    v[0] ^ v[1] ^ v[2] ^ v[3]
}

#[cfg(test)]
mod tests {
    use super::*;
    use smoltcp::wire::{IpEndpoint, Ipv4Address, Ipv6Address};

    #[test]
    fn siphash_matches_the_reference_vector() {
        // From the SipHash paper: key 00..0f, message 00..0e.
        let key = (0x0706_0504_0302_0100, 0x0f0e_0d0c_0b0a_0908);
        let message: [u8; 15] = core::array::from_fn(|i| i as u8);
        assert_eq!(siphash24(key, &message), 0xa129_ca61_49be_45e5);
    }

    fn tuple(port: u16) -> FourTuple {
        FourTuple {
            remote: IpEndpoint::new(Ipv4Address::new(198, 18, 0, 1).into(), port),
            local: IpEndpoint::new(Ipv4Address::new(198, 19, 0, 10).into(), 80),
        }
    }

    fn syn(mss: u16, ws: Option<u8>, sack: bool) -> SynOptions {
        SynOptions {
            mss: Some(mss),
            window_scale: ws,
            sack_permitted: sack,
            timestamp: None,
        }
    }

    #[test]
    fn a_cookie_carries_mss_window_scale_and_sack_and_checks_only_for_its_connection() {
        let mut jar = CookieJar::new(42);
        let now = Instant::from_secs(1000);
        let t = tuple(40_000);
        let cookie = jar.make(&t, 12345, &syn(1460, Some(7), true), now);
        let got = jar.check(&t, 12345, cookie, now).expect("valid");
        assert_eq!(
            got,
            CookieOptions {
                mss: 1460,
                window_scale: Some(7),
                sack_permitted: true
            }
        );
        // Another port, another peer ISN, another cookie bit: all invalid.
        assert_eq!(jar.check(&tuple(40_001), 12345, cookie, now), None);
        assert_eq!(jar.check(&t, 12346, cookie, now), None);
        assert_eq!(jar.check(&t, 12345, cookie ^ 0x100, now), None);
        assert_eq!(
            jar.check(&t, 12345, cookie ^ 0x1, now),
            None,
            "the option bits are signed"
        );
        // No scaling, a small MSS: rounded down to a table entry.
        let c = jar.make(&t, 7, &syn(1300, None, false), now);
        let got = jar.check(&t, 7, c, now).expect("valid");
        assert_eq!(
            (got.mss, got.window_scale, got.sack_permitted),
            (1220, None, false)
        );
        // IPv6, a TUN-sized MSS.
        let t6 = FourTuple {
            remote: IpEndpoint::new(Ipv6Address::new(0xfd00, 0, 0, 0, 0, 0, 0, 1).into(), 5),
            local: IpEndpoint::new(Ipv6Address::new(0xfd00, 0, 0, 0, 0, 0, 0, 2).into(), 6),
        };
        let c = jar.make(&t6, 9, &syn(65_000, Some(14), true), now);
        assert_eq!(jar.check(&t6, 9, c, now).map(|o| o.mss), Some(64960));
    }

    #[test]
    fn cookies_expire_after_two_epochs_and_keys_differ_per_stack() {
        let mut jar = CookieJar::new(1);
        let t = tuple(1);
        let made = Instant::from_secs(64 * 10 + 63);
        let cookie = jar.make(&t, 99, &syn(1460, Some(7), true), made);
        assert!(jar
            .check(&t, 99, cookie, made + Duration::from_secs(2))
            .is_some());
        assert!(jar
            .check(&t, 99, cookie, made + Duration::from_secs(64))
            .is_some());
        assert!(jar
            .check(&t, 99, cookie, made + Duration::from_secs(130))
            .is_none());
        let other = CookieJar::new(2);
        assert!(
            other.check(&t, 99, cookie, made).is_none(),
            "no cookie sent by it"
        );
        let mut other = CookieJar::new(2);
        let _ = other.make(&t, 1, &syn(1460, None, false), made);
        assert!(other.check(&t, 99, cookie, made).is_none(), "another key");
    }

    #[test]
    fn random_acks_almost_never_pass() {
        let mut jar = CookieJar::new(7);
        let now = Instant::from_secs(5);
        let _ = jar.make(&tuple(1), 1, &syn(1460, Some(7), true), now);
        let mut state = 3u64;
        let passed = (0..200_000)
            .filter(|_| {
                let r = splitmix64(&mut state);
                let t = tuple(r as u16);
                jar.check(&t, (r >> 16) as u32, (r >> 32) as u32, now)
                    .is_some()
            })
            .count();
        // Expected 200,000 / 2^24 = 0.012.
        assert!(passed <= 1, "{passed} random ACKs passed");
    }
}
