//! Kracauer's own initial sequence numbers and SYN cookies.
//!
//! ISNs follow RFC 6528: a 4 µs clock plus a keyed hash of the 4-tuple, so they are
//! unpredictable from outside yet increase for one tuple over time.
//!
//! SYN cookies carry a half-open connection in the SYN-ACK's sequence number when the
//! half-open table is full, as Linux does (docs/architecture.md, "The splice", step 1). The cookie holds a 5-bit
//! time counter (64 s ticks; a cookie is valid for the tick it was made in and the one
//! after, 64 to 128 s), a 2-bit index into [`COOKIE_MSS`], and 25 bits of SipHash over the
//! tuple, the client's ISN, the full tick and the MSS index. Options that the sequence
//! number cannot hold ride in the SYN-ACK's timestamp, when the client offered timestamps:
//! the low 5 bits of our TSval carry the client's window scale (or "none") and its
//! SACK-permitted flag, and come back in the client's TSecr.
//!
//! The cookie key is not used as it is: it is the root of one key per epoch of 16 ticks
//! (about 17 minutes), derived with SipHash ([`cookie_epoch_key`]), so the key that
//! signs cookies rotates while every path that knows the root (each worker's engine, and
//! the kernel's SYN cookie program, `crates/daemon/bpf/syncookie.c`) derives the same one
//! for the same tick. The time a cookie is made and checked at is the caller's cookie
//! clock: the daemon gives it CLOCK_MONOTONIC, which the kernel's program reads too.
//!
//! What a cookie flow loses: the client's exact MSS (rounded down to the table), and,
//! when the client sent no timestamps, window scaling and SACK (the SYN-ACK then offers
//! neither, so both ends run without them, as Linux does).

use core::hash::Hasher;

use siphasher::sip::SipHasher24;

use crate::base::ClientKey;
use crate::time::Time;

/// MSS values a cookie can carry (the client's MSS is rounded down to one of them).
/// 1220 is what fits the IPv6 minimum MTU (1280 − 60).
pub const COOKIE_MSS: [u16; 4] = [536, 1220, 1440, 1460];

/// Cookie time tick: 64 s.
pub const TICK_MICROS: u64 = 64_000_000;
/// The cookie key rotates every `1 << EPOCH_TICKS_LOG2` ticks.
pub const EPOCH_TICKS_LOG2: u32 = 4;
const HASH_BITS: u32 = 25;
const HASH_MASK: u32 = (1 << HASH_BITS) - 1;

/// Window-scale value in the timestamp bits that means "the client offered none".
const NO_WSCALE: u32 = 0xf;

/// Keyed ISN and cookie generator.
#[derive(Debug, Clone)]
pub struct IsnSource {
    isn_key: [u64; 2],
    cookie_root: [u64; 2],
}

/// What a valid cookie restores.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CookieOptions {
    /// The client's MSS, rounded down to [`COOKIE_MSS`].
    pub mss: u16,
    /// The client's window scale, if it offered one and timestamps carried it.
    pub wscale: Option<u8>,
    /// Whether the client offered SACK and timestamps carried it.
    pub sack_permitted: bool,
}

impl IsnSource {
    /// A generator with two independent secret keys: the ISNs' and the root of the
    /// cookies' epoch keys.
    pub fn new(isn_key: [u64; 2], cookie_root: [u64; 2]) -> Self {
        Self {
            isn_key,
            cookie_root,
        }
    }

    /// RFC 6528 ISN for a connection from the client side of `key`.
    pub fn isn(&self, key: &ClientKey, now: Time) -> u32 {
        let mut h = SipHasher24::new_with_keys(self.isn_key[0], self.isn_key[1]);
        hash_tuple(&mut h, key);
        let clock = (now.as_micros() / 4) as u32;
        clock.wrapping_add(h.finish() as u32)
    }

    /// The cookie to use as our ISN for a SYN with sequence `client_isn` and MSS option
    /// `client_mss` (536 when absent), at cookie time `now`. Returns the cookie and the
    /// MSS it encodes.
    pub fn cookie(
        &self,
        key: &ClientKey,
        client_isn: u32,
        client_mss: u16,
        now: Time,
    ) -> (u32, u16) {
        let tick = now.as_micros() / TICK_MICROS;
        let idx = COOKIE_MSS
            .iter()
            .rposition(|&m| m <= client_mss)
            .unwrap_or(0);
        let hash = self.cookie_hash(key, client_isn, tick, idx as u32);
        let cookie = ((tick as u32 & 0x1f) << 27) | ((idx as u32) << HASH_BITS) | hash;
        (cookie, COOKIE_MSS[idx])
    }

    /// Checks `cookie` (the client's ACK number minus one) for a connection whose client
    /// ISN is `client_isn` (its sequence number minus one), at cookie time `now`; returns
    /// the MSS it encodes.
    pub fn check_cookie(
        &self,
        key: &ClientKey,
        client_isn: u32,
        cookie: u32,
        now: Time,
    ) -> Option<u16> {
        let now_tick = now.as_micros() / TICK_MICROS;
        let idx = (cookie >> HASH_BITS) & 0x3;
        let cookie_tick5 = u64::from(cookie >> 27);
        [Some(now_tick), now_tick.checked_sub(1)]
            .into_iter()
            .flatten()
            .find(|&tick| {
                tick & 0x1f == cookie_tick5
                    && self.cookie_hash(key, client_isn, tick, idx) == cookie & HASH_MASK
            })
            .map(|_| COOKIE_MSS[idx as usize])
    }

    fn cookie_hash(&self, key: &ClientKey, client_isn: u32, tick: u64, idx: u32) -> u32 {
        let k = cookie_epoch_key(self.cookie_root, tick >> EPOCH_TICKS_LOG2);
        let mut h = SipHasher24::new_with_keys(k[0], k[1]);
        hash_tuple(&mut h, key);
        h.write_u32(client_isn);
        h.write_u64(tick);
        h.write_u32(idx);
        h.finish() as u32 & HASH_MASK
    }
}

/// The key that signs the cookies of the ticks of `epoch`: SipHash-2-4 keyed with `root`
/// over the epoch and 0 (then 1), each a little-endian `u64`.
pub fn cookie_epoch_key(root: [u64; 2], epoch: u64) -> [u64; 2] {
    let derive = |n: u64| {
        let mut h = SipHasher24::new_with_keys(root[0], root[1]);
        h.write_u64(epoch);
        h.write_u64(n);
        h.finish()
    };
    [derive(0), derive(1)]
}

/// A cookie root drawn from a 32-byte seed (the daemon's: every worker's is the same).
pub fn cookie_root_from_seed(seed: &[u8; 32]) -> [u64; 2] {
    let half = |b: &[u8]| u64::from_le_bytes(b.try_into().unwrap_or_default());
    let derive = |n: u8| {
        let mut h = SipHasher24::new_with_keys(half(&seed[..8]), half(&seed[8..16]));
        h.write(&seed[16..]);
        h.write(b"syn cookie root");
        h.write_u8(n);
        h.finish()
    };
    [derive(0), derive(1)]
}

fn hash_tuple(h: &mut impl Hasher, key: &ClientKey) {
    h.write(&key.client.octets());
    h.write_u16(key.client_port);
    h.write(&key.service.octets());
    h.write_u16(key.service_port);
}

/// Our TSval for a cookie SYN-ACK: the clock with its low 5 bits replaced by the
/// client's options.
pub fn cookie_tsval(now_ts: u32, wscale: Option<u8>, sack_permitted: bool) -> u32 {
    let ws = wscale.map_or(NO_WSCALE, |w| u32::from(w.min(14)));
    (now_ts & !0x1f) | (u32::from(sack_permitted) << 4) | ws
}

/// The options a cookie SYN-ACK's TSval carried, read back from the client's TSecr.
pub fn cookie_options_from_tsecr(tsecr: u32, mss: u16) -> CookieOptions {
    let ws = tsecr & 0xf;
    CookieOptions {
        mss,
        wscale: (ws != NO_WSCALE).then_some(ws.min(14) as u8),
        sack_permitted: tsecr & 0x10 != 0,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::Ipv4Addr;

    fn key(port: u16) -> ClientKey {
        ClientKey {
            client: Ipv4Addr::new(198, 51, 100, 2),
            client_port: port,
            service: Ipv4Addr::new(203, 0, 113, 10),
            service_port: 443,
        }
    }

    fn src() -> IsnSource {
        IsnSource::new([1, 2], [3, 4])
    }

    #[test]
    fn isn_differs_per_tuple_and_advances_with_the_clock() {
        let s = src();
        let t = Time::from_millis(1000);
        assert_ne!(s.isn(&key(1000), t), s.isn(&key(1001), t));
        let later = s.isn(&key(1000), Time::from_millis(1001));
        assert_eq!(later.wrapping_sub(s.isn(&key(1000), t)), 250);
    }

    #[test]
    fn isn_depends_on_the_secret() {
        let t = Time::from_millis(1000);
        assert_ne!(
            src().isn(&key(1000), t),
            IsnSource::new([9, 9], [3, 4]).isn(&key(1000), t)
        );
    }

    #[test]
    fn cookie_round_trips_with_the_mss_rounded_down() {
        let s = src();
        let now = Time::from_millis(500_000);
        let (cookie, mss) = s.cookie(&key(1000), 77, 1400, now);
        assert_eq!(mss, 1220);
        assert_eq!(s.check_cookie(&key(1000), 77, cookie, now), Some(1220));
    }

    #[test]
    fn cookie_is_valid_in_the_next_tick_but_not_after() {
        let s = src();
        let made = Time::from_micros(10 * TICK_MICROS + 5);
        let (cookie, _) = s.cookie(&key(1000), 77, 1460, made);
        assert_eq!(
            s.check_cookie(
                &key(1000),
                77,
                cookie,
                Time::from_micros(11 * TICK_MICROS + 9)
            ),
            Some(1460)
        );
        assert_eq!(
            s.check_cookie(&key(1000), 77, cookie, Time::from_micros(12 * TICK_MICROS)),
            None
        );
    }

    #[test]
    fn cookie_for_another_tuple_or_isn_is_refused() {
        let s = src();
        let now = Time::from_millis(500_000);
        let (cookie, _) = s.cookie(&key(1000), 77, 1460, now);
        assert_eq!(s.check_cookie(&key(1001), 77, cookie, now), None);
        assert_eq!(s.check_cookie(&key(1000), 78, cookie, now), None);
        assert_eq!(s.check_cookie(&key(1000), 77, cookie ^ 1, now), None);
        assert_eq!(
            s.check_cookie(&key(1000), 77, cookie ^ (1 << 25), now),
            None
        );
    }

    #[test]
    fn cookie_made_in_the_first_tick_is_valid() {
        let s = src();
        let (cookie, _) = s.cookie(&key(1000), 77, 1460, Time::ZERO);
        assert_eq!(
            s.check_cookie(&key(1000), 77, cookie, Time::ZERO),
            Some(1460)
        );
    }

    #[test]
    fn the_signing_key_rotates_every_epoch_and_cookies_still_span_the_boundary() {
        let s = src();
        let first = EPOCH_TICKS_LOG2;
        assert_ne!(cookie_epoch_key([3, 4], 0), cookie_epoch_key([3, 4], 1));
        // Made in the last tick of epoch 0, checked in the first of epoch 1.
        let last = (1u64 << first) - 1;
        let made = Time::from_micros(last * TICK_MICROS + 7);
        let (cookie, _) = s.cookie(&key(1000), 77, 1460, made);
        let next = Time::from_micros((last + 1) * TICK_MICROS + 3);
        assert_eq!(s.check_cookie(&key(1000), 77, cookie, next), Some(1460));
        // Another root signs differently.
        let other = IsnSource::new([1, 2], [3, 5]);
        assert_eq!(other.check_cookie(&key(1000), 77, cookie, made), None);
    }

    #[test]
    fn tiny_mss_uses_the_smallest_table_entry() {
        let (_, mss) = src().cookie(&key(1), 1, 100, Time::ZERO);
        assert_eq!(mss, 536);
    }

    #[test]
    fn options_ride_in_the_timestamp_low_bits() {
        let ts = cookie_tsval(0x1234_5678, Some(7), true);
        assert_eq!(ts & !0x1f, 0x1234_5678 & !0x1f);
        assert_eq!(
            cookie_options_from_tsecr(ts, 1460),
            CookieOptions {
                mss: 1460,
                wscale: Some(7),
                sack_permitted: true
            }
        );
        let none = cookie_tsval(0x1234_5678, None, false);
        assert_eq!(
            cookie_options_from_tsecr(none, 536),
            CookieOptions {
                mss: 536,
                wscale: None,
                sack_permitted: false
            }
        );
    }
}
