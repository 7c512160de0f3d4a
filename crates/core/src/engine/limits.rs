//! The limits every worker's engine shares (docs/robustness.md, "Many users behind one
//! address"): half-open handshakes, peek-buffer bytes, the unnamed connections each
//! client address holds, and the budget of RFC 5961 challenge ACKs.
//!
//! A multi-queue TUN spreads one client address's connections over every worker (the
//! steering hashes address and port), so a limit kept per engine would be a share of the
//! configured one and would bite "slightly before the configured figure". Instead the
//! daemon hands one [`SharedLimits`] to every engine (through
//! [`EngineConfig::shared_limits`](super::EngineConfig::shared_limits)) and each engine
//! settles its flows' usage into it (`Engine::account`), at phase transitions only, never
//! per forwarded packet. Everything here is a relaxed atomic: no lock, no syscall, no
//! clock (time comes in as an argument), no `unsafe`. Two workers racing at a bound may
//! both pass it by one; the bounds are about memory, and one flow more is nothing.
//!
//! Per client address the count of unnamed connections held (handshakes and peeks) is a
//! count-min sketch: [`ROWS`] rows of [`BUCKETS`] counters, each row indexed by a keyed
//! hash of the address, the estimate the smallest of the address's counters. It never
//! says less than the truth; it says more only when every row's bucket is shared with
//! other busy addresses, and then the address is served statelessly (a SYN cookie) a
//! little earlier than it would be, never refused. The key is secret, so an attacker
//! cannot aim at a victim's buckets. Fixed memory (64 KiB), no allocation after start.

use crate::engine::udp_cids::SharedCids;
use core::fmt;
use core::hash::Hasher;
use std::net::Ipv4Addr;
use std::sync::atomic::{AtomicU32, AtomicU64, AtomicUsize, Ordering::Relaxed};

use siphasher::sip::SipHasher13;

use crate::time::Time;

/// Rows of the per-address sketch.
pub const ROWS: usize = 2;
/// Counters per row.
pub const BUCKETS: usize = 8192;

/// Counts shared by every engine of one daemon.
pub struct SharedLimits {
    half_open: AtomicUsize,
    /// SYNs every engine answered with a SYN cookie (no state), in all.
    cookies_sent: AtomicU64,
    peek_bytes: AtomicUsize,
    /// `ROWS` rows of `BUCKETS` counters.
    held: Box<[AtomicU32]>,
    key: [u64; 2],
    /// The current second (high 32 bits) and the challenge ACKs sent in it (low 32).
    challenges: AtomicU64,
    /// The QUIC connection IDs backends chose, for rebinding across workers.
    cids: SharedCids,
}

impl fmt::Debug for SharedLimits {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SharedLimits")
            .field("half_open", &self.half_open())
            .field("peek_bytes", &self.peek_bytes())
            .finish_non_exhaustive()
    }
}

impl SharedLimits {
    /// Empty counts; `key` places addresses in the sketch (keep it secret, and the same
    /// for every engine that shares this).
    pub fn new(key: [u64; 2]) -> Self {
        Self {
            half_open: AtomicUsize::new(0),
            cookies_sent: AtomicU64::new(0),
            peek_bytes: AtomicUsize::new(0),
            held: (0..ROWS * BUCKETS).map(|_| AtomicU32::new(0)).collect(),
            key,
            challenges: AtomicU64::new(0),
            cids: SharedCids::new([key[1] ^ 0x5155_4943_4349_4453, key[0].rotate_left(29)]),
        }
    }

    /// The QUIC connection IDs every engine learned (`udp_cids.rs`).
    pub fn cids(&self) -> &SharedCids {
        &self.cids
    }

    /// Half-open handshakes held, all engines together.
    pub fn half_open(&self) -> usize {
        self.half_open.load(Relaxed)
    }

    /// Peek-buffer bytes held, all engines together.
    pub fn peek_bytes(&self) -> usize {
        self.peek_bytes.load(Relaxed)
    }

    /// Unnamed connections (handshakes and peeks) `client` holds, all engines together:
    /// never less than the truth.
    pub fn held_by(&self, client: Ipv4Addr) -> u32 {
        self.slots(client)
            .map(|i| self.held.get(i).map_or(0, |c| c.load(Relaxed)))
            .min()
            .unwrap_or(0)
    }

    /// SYNs the engines sharing these counts answered with a cookie, in all (the kernel
    /// SYN cookie program's flood mode reads it: a flood from few addresses is answered
    /// with cookies past each address's allowance and holds few handshakes).
    pub fn cookies_sent(&self) -> u64 {
        self.cookies_sent.load(Relaxed)
    }

    pub(crate) fn add_cookie_sent(&self) {
        self.cookies_sent.fetch_add(1, Relaxed);
    }

    pub(crate) fn add_half_open(&self, n: usize) {
        self.half_open.fetch_add(n, Relaxed);
    }

    pub(crate) fn sub_half_open(&self, n: usize) {
        sub(&self.half_open, n);
    }

    pub(crate) fn add_peek_bytes(&self, n: usize) {
        self.peek_bytes.fetch_add(n, Relaxed);
    }

    pub(crate) fn sub_peek_bytes(&self, n: usize) {
        sub(&self.peek_bytes, n);
    }

    /// `client` holds one unnamed connection more.
    pub(crate) fn hold(&self, client: Ipv4Addr) {
        for i in self.slots(client) {
            if let Some(c) = self.held.get(i) {
                c.fetch_add(1, Relaxed);
            }
        }
    }

    /// `client` holds one unnamed connection fewer.
    pub(crate) fn release(&self, client: Ipv4Addr) {
        for i in self.slots(client) {
            if let Some(c) = self.held.get(i) {
                let _ = c.fetch_update(Relaxed, Relaxed, |v| Some(v.saturating_sub(1)));
            }
        }
    }

    /// Takes one challenge ACK from the budget of `per_second` in the second `now` falls
    /// in; whether there was one left (RFC 5961 §7: challenge ACKs are rate-limited, so
    /// that they cannot be used to amplify a flood).
    pub(crate) fn take_challenge(&self, now: Time, per_second: u32) -> bool {
        let second = (now.as_micros() / 1_000_000) as u32;
        self.challenges
            .fetch_update(Relaxed, Relaxed, |v| {
                let (s, n) = ((v >> 32) as u32, v as u32);
                let n = if s == second { n } else { 0 };
                (n < per_second).then(|| (u64::from(second) << 32) | u64::from(n + 1))
            })
            .is_ok()
    }

    /// The counter of each row for `client`.
    fn slots(&self, client: Ipv4Addr) -> impl Iterator<Item = usize> + '_ {
        let mut h = SipHasher13::new_with_keys(self.key[0], self.key[1]);
        h.write(&client.octets());
        let hash = h.finish();
        (0..ROWS).map(move |row| {
            let bits = (hash >> (row * 32)) as usize;
            row * BUCKETS + bits % BUCKETS
        })
    }
}

fn sub(counter: &AtomicUsize, n: usize) {
    let _ = counter.fetch_update(Relaxed, Relaxed, |v| Some(v.saturating_sub(n)));
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_address_holds_what_it_took_and_gives_back() {
        let s = SharedLimits::new([1, 2]);
        let a = Ipv4Addr::new(198, 51, 100, 2);
        for _ in 0..70 {
            s.hold(a);
        }
        assert_eq!(s.held_by(a), 70);
        assert_eq!(s.held_by(Ipv4Addr::new(198, 51, 100, 3)), 0);
        for _ in 0..80 {
            s.release(a);
        }
        assert_eq!(s.held_by(a), 0, "never below zero");
    }

    #[test]
    fn the_sketch_never_says_less_than_the_truth_among_many_addresses() {
        let s = SharedLimits::new([3, 4]);
        let addrs: Vec<Ipv4Addr> = (0..20_000u32)
            .map(|i| Ipv4Addr::from(0xc633_0000 + i))
            .collect();
        for (i, &a) in addrs.iter().enumerate() {
            for _ in 0..(i % 3) {
                s.hold(a);
            }
        }
        let mut over = 0;
        for (i, &a) in addrs.iter().enumerate() {
            let truth = (i % 3) as u32;
            assert!(s.held_by(a) >= truth);
            over += s.held_by(a) - truth;
        }
        // 20,000 addresses holding 20,000 in 8,192 buckets per row (about 2.4 in each):
        // the smaller of two rows keeps the overestimate below that on average.
        assert!(over < 2 * 20_000, "overestimate {over}");
    }

    #[test]
    fn counts_saturate_at_zero() {
        let s = SharedLimits::new([0, 0]);
        s.add_half_open(2);
        s.sub_half_open(3);
        assert_eq!(s.half_open(), 0);
        s.add_peek_bytes(10);
        s.sub_peek_bytes(4);
        assert_eq!(s.peek_bytes(), 6);
    }

    #[test]
    fn challenge_acks_are_limited_per_second() {
        let s = SharedLimits::new([0, 0]);
        let t = Time::from_millis(5_000);
        assert!((0..3).all(|_| s.take_challenge(t, 3)));
        assert!(!s.take_challenge(t, 3));
        assert!(!s.take_challenge(Time::from_millis(5_999), 3));
        assert!(
            s.take_challenge(Time::from_millis(6_000), 3),
            "a new second"
        );
    }
}
