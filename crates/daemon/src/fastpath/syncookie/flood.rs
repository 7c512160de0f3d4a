//! When the kernel answers SYNs: flood mode, decided from the rate of SYNs to service
//! ports that the program counts. On at [`ON_RATE`] SYNs a second over one look
//! ([`LOOK_EVERY`]); off once the rate has stayed under [`OFF_RATE`] for [`HOLD`].
//!
//! Below the flood rate the TUN path answers every SYN as it always has (state, every
//! option the client offered); a cookie costs a client without timestamps its window
//! scaling and SACK, so the kernel's cookies are for floods only.

use std::time::Duration;

/// How often the daemon looks at the program's counters.
pub const LOOK_EVERY: Duration = Duration::from_millis(100);
/// SYNs a second to service ports that turn flood mode on.
pub const ON_RATE: u64 = 5_000;
/// SYNs a second under which flood mode may end...
pub const OFF_RATE: u64 = 2_500;
/// ...once the rate has stayed under it this long.
pub const HOLD: Duration = Duration::from_secs(10);

/// The flood mode's state between looks.
#[derive(Debug, Clone, Default)]
pub struct FloodMode {
    on: bool,
    /// The SYN count and time (µs) of the last look.
    last: Option<(u64, u64)>,
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

    /// One look: `syns` SYNs counted in all (the program's counter) at `now_micros`.
    /// Returns the new mode when it changed.
    pub fn look(&mut self, syns: u64, now_micros: u64) -> Option<bool> {
        let (then_syns, then) = self.last.replace((syns, now_micros))?;
        let elapsed = now_micros.saturating_sub(then).max(1);
        self.rate = syns.saturating_sub(then_syns).saturating_mul(1_000_000) / elapsed;
        if !self.on {
            if self.rate >= ON_RATE {
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

    #[test]
    fn a_flood_turns_the_mode_on_at_once_and_off_only_after_a_calm_hold() {
        let mut m = FloodMode::default();
        let mut syns = 0;
        let mut t = 0;
        assert_eq!(
            m.look(syns, t),
            None,
            "the first look only sets the baseline"
        );
        // 100 SYN/s: off.
        for _ in 0..10 {
            (syns, t) = (syns + 10, t + STEP);
            assert_eq!(m.look(syns, t), None);
        }
        // 20,000 SYN/s: on at the first look.
        (syns, t) = (syns + 2_000, t + STEP);
        assert_eq!(m.look(syns, t), Some(true));
        assert_eq!(m.rate, 20_000);
        // 3,000 SYN/s (between the two rates) keeps it on however long.
        for _ in 0..200 {
            (syns, t) = (syns + 300, t + STEP);
            assert_eq!(m.look(syns, t), None);
        }
        // Calm: off after HOLD, not before.
        let calm_from = t + STEP;
        loop {
            (syns, t) = (syns + 1, t + STEP);
            match m.look(syns, t) {
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
        m.look(0, 0);
        assert_eq!(m.look(1_000, STEP), Some(true));
        let mut syns = 1_000;
        let mut t = STEP;
        for _ in 0..50 {
            (syns, t) = (syns + 1, t + STEP);
            assert_eq!(m.look(syns, t), None);
        }
        (syns, t) = (syns + 1_000, t + STEP);
        assert_eq!(m.look(syns, t), None, "still on");
        for _ in 0..100 {
            (syns, t) = (syns + 1, t + STEP);
            assert_eq!(m.look(syns, t), None, "the hold counts from the burst");
        }
        (syns, t) = (syns + 1, t + STEP);
        assert_eq!(m.look(syns, t), Some(false));
    }
}
