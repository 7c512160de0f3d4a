//! Time as the core sees it: a monotonic instant the caller passes in.
//!
//! The core never reads a clock. The daemon turns its monotonic clock into a [`Time`]
//! (microseconds since some start of its choosing) and passes it to every call; tests and
//! fuzzers make up their own. Being a plain number, a `Time` can be built from fuzz input
//! and compared without reference to any real clock.

use core::ops::{Add, Sub};
use core::time::Duration;

/// An instant, in microseconds since an epoch the caller chose.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct Time(u64);

impl Time {
    /// The caller's epoch.
    pub const ZERO: Time = Time(0);
    /// Later than any instant the engine will be given; "no deadline".
    pub const NEVER: Time = Time(u64::MAX);

    /// The instant `micros` microseconds after the epoch.
    pub const fn from_micros(micros: u64) -> Self {
        Self(micros)
    }

    /// The instant `millis` milliseconds after the epoch.
    pub const fn from_millis(millis: u64) -> Self {
        Self(millis.saturating_mul(1000))
    }

    /// Microseconds since the epoch.
    pub const fn as_micros(self) -> u64 {
        self.0
    }

    /// Milliseconds since the epoch, wrapped to 32 bits: a TCP timestamp clock (RFC 7323
    /// asks for 1 ms to 1 s per tick).
    pub const fn ts_millis(self) -> u32 {
        (self.0 / 1000) as u32
    }

    /// How long after `earlier` this is; zero when it is not after it.
    pub fn saturating_since(self, earlier: Time) -> Duration {
        Duration::from_micros(self.0.saturating_sub(earlier.0))
    }
}

impl Add<Duration> for Time {
    type Output = Time;

    /// Saturates at [`Time::NEVER`] instead of overflowing.
    fn add(self, d: Duration) -> Time {
        let micros = u64::try_from(d.as_micros()).unwrap_or(u64::MAX);
        Time(self.0.saturating_add(micros))
    }
}

impl Sub<Duration> for Time {
    type Output = Time;

    /// Saturates at [`Time::ZERO`].
    fn sub(self, d: Duration) -> Time {
        let micros = u64::try_from(d.as_micros()).unwrap_or(u64::MAX);
        Time(self.0.saturating_sub(micros))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn adding_a_huge_duration_saturates_at_never() {
        assert_eq!(Time::from_millis(5) + Duration::MAX, Time::NEVER);
        assert_eq!(Time::NEVER + Duration::from_secs(1), Time::NEVER);
    }

    #[test]
    fn subtracting_past_the_epoch_saturates_at_zero() {
        assert_eq!(Time::from_millis(5) - Duration::from_secs(1), Time::ZERO);
    }

    #[test]
    fn timestamp_clock_ticks_in_milliseconds_and_wraps() {
        assert_eq!(Time::from_micros(1_999).ts_millis(), 1);
        assert_eq!(Time::from_millis(u64::from(u32::MAX) + 3).ts_millis(), 2);
    }

    #[test]
    fn elapsed_is_zero_when_not_later() {
        let t = Time::from_millis(10);
        assert_eq!(t.saturating_since(Time::from_millis(20)), Duration::ZERO);
        assert_eq!(
            Time::from_millis(20).saturating_since(t),
            Duration::from_millis(10)
        );
    }
}
