//! When the kernel answers SYNs: flood mode, decided from the rate of SYNs to service
//! ports that the program counts and from what the TUN path makes of them. On when one
//! look ([`LOOK_EVERY`]) sees [`ON_RATE`] SYNs a second or more *and* the TUN path shows
//! a flood: at least one [`UNANSWERED_SHARE`]th of `limits.max_half_open` handshakes wait
//! for their ACK (a SYN-ACK sent, no answer: what spoofed SYNs leave), or the engines
//! answered at least one [`UNANSWERED_SHARE`]th of the SYNs since the last look with
//! cookies (past the half-open bound, or past an address's allowance: what a flood from
//! few addresses gets, which holds few handshakes); off once the rate has stayed under
//! [`OFF_RATE`] for [`HOLD`].
//!
//! Below the flood rate the TUN path answers every SYN as it always has (state, every
//! option the client offered); a cookie costs a client without timestamps its window
//! scaling and SACK, so the kernel's cookies are for floods only. A busy population of
//! real clients makes as many SYNs as a flood, but completes its handshakes within a
//! round trip, so it holds a few handshakes at a time, not thousands: the rate alone
//! would put real clients on cookies (the benchmark's one client at concurrency 64 did).

use std::time::Duration;

/// How often the daemon looks at the program's counters.
pub const LOOK_EVERY: Duration = Duration::from_millis(100);
/// SYNs a second to service ports that turn flood mode on...
pub const ON_RATE: u64 = 5_000;
/// ...while at least this share (1/n) of `limits.max_half_open` handshakes is unanswered,
/// or of the SYNs was answered with the engines' cookies.
pub const UNANSWERED_SHARE: usize = 8;
/// SYNs a second under which flood mode may end...
pub const OFF_RATE: u64 = 2_500;
/// ...once the rate has stayed under it this long.
pub const HOLD: Duration = Duration::from_secs(10);

/// The flood mode's state between looks.
#[derive(Debug, Clone, Default)]
pub struct FloodMode {
    on: bool,
    /// The SYN count, time (µs) and the engines' cookie count of the last look.
    last: Option<(u64, u64, u64)>,
    /// Since when (µs) the rate has been under [`OFF_RATE`], while on.
    calm_since: Option<u64>,
    /// The rate the last look measured (SYNs a second).
    pub rate: u64,
}

impl FloodMode {
    /// Whether flood mode is on.
    pub fn on(&self) -> bool {
        self.on
    }

    /// One look: `syns` SYNs counted in all (the program's counter) at `now_micros`;
    /// what the TUN path made of them: `tun.0` of at most `tun.1` handshakes unanswered,
    /// and `tun.2` SYNs answered with the engines' cookies in all. Returns the new mode
    /// when it changed.
    pub fn look(&mut self, syns: u64, now_micros: u64, tun: (usize, usize, u64)) -> Option<bool> {
        let (half_open, max_half_open, cookies) = tun;
        let (then_syns, then, then_cookies) = self.last.replace((syns, now_micros, cookies))?;
        let elapsed = now_micros.saturating_sub(then).max(1);
        let new_syns = syns.saturating_sub(then_syns);
        self.rate = new_syns.saturating_mul(1_000_000) / elapsed;
        if !self.on {
            let share = UNANSWERED_SHARE as u64;
            let unanswered = half_open.saturating_mul(UNANSWERED_SHARE) >= max_half_open
                || cookies.saturating_sub(then_cookies).saturating_mul(share) >= new_syns;
            if self.rate >= ON_RATE && unanswered {
                self.on = true;
                self.calm_since = None;
                return Some(true);
            }
            return None;
        }
        if self.rate >= OFF_RATE {
            self.calm_since = None;
            return None;
        }
        let since = *self.calm_since.get_or_insert(now_micros);
        if now_micros.saturating_sub(since) >= HOLD.as_micros() as u64 {
            self.on = false;
            self.calm_since = None;
            return Some(false);
        }
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const STEP: u64 = 100_000;
    /// `limits.max_half_open`'s default, and handshakes a spoofed flood leaves unanswered.
    const BOUND: usize = 16_384;
    const STUCK: usize = 4_000;

    #[test]
    fn a_flood_turns_the_mode_on_at_once_and_off_only_after_a_calm_hold() {
        let mut m = FloodMode::default();
        let mut syns = 0;
        let mut t = 0;
        assert_eq!(
            m.look(syns, t, (STUCK, BOUND, 0)),
            None,
            "the first look only sets the baseline"
        );
        // 100 SYN/s: off.
        for _ in 0..10 {
            (syns, t) = (syns + 10, t + STEP);
            assert_eq!(m.look(syns, t, (STUCK, BOUND, 0)), None);
        }
        // 20,000 SYN/s: on at the first look.
        (syns, t) = (syns + 2_000, t + STEP);
        assert_eq!(m.look(syns, t, (STUCK, BOUND, 0)), Some(true));
        assert_eq!(m.rate, 20_000);
        // 3,000 SYN/s (between the two rates) keeps it on however long.
        for _ in 0..200 {
            (syns, t) = (syns + 300, t + STEP);
            assert_eq!(m.look(syns, t, (STUCK, BOUND, 0)), None);
        }
        // Calm: off after HOLD, not before.
        let calm_from = t + STEP;
        loop {
            (syns, t) = (syns + 1, t + STEP);
            match m.look(syns, t, (STUCK, BOUND, 0)) {
                None => assert!(t - calm_from < HOLD.as_micros() as u64),
                Some(on) => {
                    assert!(!on);
                    assert_eq!(t - calm_from, HOLD.as_micros() as u64);
                    break;
                }
            }
        }
        assert!(!m.on());
    }

    #[test]
    fn a_burst_during_the_calm_hold_starts_the_hold_again() {
        let mut m = FloodMode::default();
        m.look(0, 0, (STUCK, BOUND, 0));
        assert_eq!(m.look(1_000, STEP, (STUCK, BOUND, 0)), Some(true));
        let mut syns = 1_000;
        let mut t = STEP;
        for _ in 0..50 {
            (syns, t) = (syns + 1, t + STEP);
            assert_eq!(m.look(syns, t, (STUCK, BOUND, 0)), None);
        }
        (syns, t) = (syns + 1_000, t + STEP);
        assert_eq!(m.look(syns, t, (STUCK, BOUND, 0)), None, "still on");
        for _ in 0..100 {
            (syns, t) = (syns + 1, t + STEP);
            assert_eq!(
                m.look(syns, t, (STUCK, BOUND, 0)),
                None,
                "the hold counts from the burst"
            );
        }
        (syns, t) = (syns + 1, t + STEP);
        assert_eq!(m.look(syns, t, (STUCK, BOUND, 0)), Some(false));
    }

    #[test]
    fn a_busy_rate_of_handshakes_that_complete_leaves_flood_mode_off() {
        let mut m = FloodMode::default();
        m.look(0, 0, (0, BOUND, 0));
        let (mut syns, mut t) = (0, 0);
        // 20,000 SYN/s whose handshakes complete within a round trip: a few dozen at a
        // time wait for their ACK, and a few SYNs get cookies (an address past its
        // allowance now and then).
        let mut cookies = 0;
        for _ in 0..100 {
            (syns, t, cookies) = (syns + 2_000, t + STEP, cookies + 100);
            assert_eq!(m.look(syns, t, (40, BOUND, cookies)), None);
        }
        assert!(!m.on());
        // The same rate once an eighth of the bound is unanswered: a flood.
        (syns, t) = (syns + 2_000, t + STEP);
        assert_eq!(m.look(syns, t, (BOUND / 8, BOUND, cookies)), Some(true));
        // Unanswered handshakes alone, at a calm rate, are not a flood.
        let mut calm = FloodMode::default();
        calm.look(0, 0, (BOUND, BOUND, 0));
        assert_eq!(calm.look(100, STEP, (BOUND, BOUND, 100)), None);
    }

    #[test]
    fn a_flood_from_few_addresses_answered_with_the_engines_cookies_turns_flood_mode_on() {
        // Each address holds at most its allowance of handshakes (64 by default), so a
        // flood from a few of them leaves few unanswered: the engines answer the rest
        // with cookies.
        let mut m = FloodMode::default();
        m.look(0, 0, (0, BOUND, 0));
        assert_eq!(m.look(2_000, STEP, (128, BOUND, 1_700)), Some(true));
        // A quarter of the SYNs answered with cookies at a calm rate: not a flood.
        let mut calm = FloodMode::default();
        calm.look(0, 0, (0, BOUND, 0));
        assert_eq!(calm.look(200, STEP, (10, BOUND, 50)), None);
    }
}
