//! Flow timers: one min-heap of deadlines, armed lazily.
//!
//! A flow has at most one deadline that matters (the next thing that can happen to it),
//! but that deadline moves on almost every packet (idle timeouts). Re-keying a heap entry
//! per packet would cost a heap operation per packet, so entries are *lazy*: the flow keeps
//! the time its earliest heap entry fires (`armed`), an entry is pushed only when a
//! deadline moves *earlier* than that, and when an entry comes due the engine asks the flow
//! for its real deadline and re-arms if it has moved later. Entries for freed flows are
//! recognised by their generation and discarded.

use std::cmp::Reverse;
use std::collections::BinaryHeap;

use super::table::FlowId;
use crate::time::Time;

/// Pending deadlines, earliest first.
#[derive(Debug, Default)]
pub struct Timers {
    heap: BinaryHeap<Reverse<(Time, FlowId)>>,
}

impl Timers {
    /// Room for `n` entries without reallocating.
    pub fn with_capacity(n: usize) -> Self {
        Self {
            heap: BinaryHeap::with_capacity(n),
        }
    }

    /// Arms a deadline for `id` at `at`, if that is earlier than `armed` (the flow's
    /// current earliest entry, [`Time::NEVER`] when it has none). Returns the flow's new
    /// `armed` value.
    pub fn arm(&mut self, id: FlowId, at: Time, armed: Time) -> Time {
        if at < armed {
            self.heap.push(Reverse((at, id)));
            at
        } else {
            armed
        }
    }

    /// The earliest entry's time, which may belong to a stale entry (then the engine's
    /// wake-up finds nothing to do and costs one heap pop).
    pub fn next(&self) -> Option<Time> {
        self.heap.peek().map(|Reverse((t, _))| *t)
    }

    /// Takes the earliest entry if it is due at `now`.
    pub fn pop_due(&mut self, now: Time) -> Option<(Time, FlowId)> {
        match self.heap.peek() {
            Some(Reverse((t, _))) if *t <= now => self.heap.pop().map(|Reverse(e)| e),
            _ => None,
        }
    }

    /// Number of entries, stale ones included.
    pub fn len(&self) -> usize {
        self.heap.len()
    }

    /// Whether there are no entries.
    pub fn is_empty(&self) -> bool {
        self.heap.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn id(i: u32) -> FlowId {
        FlowId::from_parts(i, 0)
    }

    #[test]
    fn later_deadline_does_not_push_a_new_entry() {
        let mut t = Timers::default();
        let armed = t.arm(id(1), Time::from_millis(10), Time::NEVER);
        assert_eq!(armed, Time::from_millis(10));
        assert_eq!(t.arm(id(1), Time::from_millis(20), armed), armed);
        assert_eq!(t.len(), 1);
    }

    #[test]
    fn earlier_deadline_pushes_and_rearms() {
        let mut t = Timers::default();
        let armed = t.arm(id(1), Time::from_millis(10), Time::NEVER);
        let armed = t.arm(id(1), Time::from_millis(5), armed);
        assert_eq!(armed, Time::from_millis(5));
        assert_eq!(t.len(), 2);
        assert_eq!(t.next(), Some(Time::from_millis(5)));
    }

    #[test]
    fn entries_come_due_in_time_order_and_not_before() {
        let mut t = Timers::default();
        t.arm(id(2), Time::from_millis(20), Time::NEVER);
        t.arm(id(1), Time::from_millis(10), Time::NEVER);
        t.arm(id(3), Time::from_millis(30), Time::NEVER);
        assert_eq!(t.pop_due(Time::from_millis(9)), None);
        assert_eq!(
            t.pop_due(Time::from_millis(25)),
            Some((Time::from_millis(10), id(1)))
        );
        assert_eq!(
            t.pop_due(Time::from_millis(25)),
            Some((Time::from_millis(20), id(2)))
        );
        assert_eq!(t.pop_due(Time::from_millis(25)), None);
        assert_eq!(t.next(), Some(Time::from_millis(30)));
    }
}
