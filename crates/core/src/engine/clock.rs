//! The engine's own clock, carried across a live upgrade.
//!
//! The caller's `now` is a monotonic clock whose start it chose (the daemon: the moment
//! its worker started), so a new process's `now` has nothing to do with the old one's.
//! Yet the engine's clocks must run on: RFC 6528 ISNs, the SYN cookies' 64 s ticks (a
//! cookie made before an upgrade must validate after it), the TSvals Kracauer sends, and
//! every flow's deadlines. So the engine keeps its own time: the caller's `now` moved by
//! a fixed offset, which is zero for a new engine and, for a restored one, whatever makes
//! the restore's `now` the snapshot's. The handover's pause does not count: the engine's
//! time stands still from the snapshot to the restore.

use crate::time::Time;

/// Maps the caller's time to the engine's and back.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub(crate) struct Clock {
    /// A caller's instant...
    external: Time,
    /// ...and the engine's instant it stands for.
    internal: Time,
}

impl Clock {
    /// The clock of a restored engine: the caller's `now` is the snapshot's `internal`.
    pub(crate) fn rebased(now: Time, internal: Time) -> Self {
        Self {
            external: now,
            internal,
        }
    }

    /// The engine's time at the caller's `now`.
    pub(crate) fn internal(&self, now: Time) -> Time {
        shift(now, self.external, self.internal)
    }

    /// The caller's time at the engine's `t` ([`Time::NEVER`] stays itself).
    pub(crate) fn external(&self, t: Time) -> Time {
        if t == Time::NEVER {
            return t;
        }
        shift(t, self.internal, self.external)
    }
}

/// `t` moved from a clock where `from` is a given instant to one where `to` is.
fn shift(t: Time, from: Time, to: Time) -> Time {
    let (t, from, to) = (t.as_micros(), from.as_micros(), to.as_micros());
    let moved = if t >= from {
        to.saturating_add(t - from)
    } else {
        to.saturating_sub(from - t)
    };
    Time::from_micros(moved)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_new_engines_clock_is_the_callers() {
        let c = Clock::default();
        let t = Time::from_millis(1234);
        assert_eq!(c.internal(t), t);
        assert_eq!(c.external(t), t);
    }

    #[test]
    fn a_restored_clock_runs_on_from_the_snapshot() {
        // Snapshot at engine time 1 000 s; the new process restores at its 2 s.
        let c = Clock::rebased(Time::from_millis(2_000), Time::from_millis(1_000_000));
        assert_eq!(
            c.internal(Time::from_millis(2_500)),
            Time::from_millis(1_000_500)
        );
        assert_eq!(
            c.external(Time::from_millis(1_000_500)),
            Time::from_millis(2_500)
        );
        assert_eq!(c.external(Time::NEVER), Time::NEVER);
        // A deadline from before the restore's instant is due at once.
        assert_eq!(c.external(Time::from_millis(500)), Time::ZERO);
    }
}
