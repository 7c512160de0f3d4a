//! What the metrics show of the kernel fast path's program: whether it is attached, and
//! its own counters (`enum fp_stat` in `bpf/fastpath.h`, the per-CPU map `kr_fp_stats`),
//! as the control plane last looked at them ([`Counters::look`], about once a second,
//! never per packet). The workers' side (flows handed over, hand-overs refused) travels
//! in their published snapshots ([`super::worker::HandOvers`]).
//!
//! The program's counters live in its pinned map, which outlives the daemon: a daemon
//! that adopts the maps (after `kill -9`, or as the new process of a live upgrade) goes
//! on from the values it finds, so they count since the maps were created (the first
//! start with nothing pinned; SIGTERM and `fastpath = "off"` remove them).

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Duration;

use super::Fastpath;

/// How often the control plane looks at the program.
pub const LOOK_EVERY: Duration = Duration::from_secs(1);

/// The program's counters by the `result` label of `kracauer_fastpath_packets_total`,
/// in the order of `enum fp_stat`.
pub const RESULTS: [&str; 7] = [
    "to_backend",
    "to_client",
    "no_flow",
    "unsure",
    "route",
    "too_big",
    "failed",
];

/// What the metrics show of the program (written by the control plane).
#[derive(Debug, Default)]
pub struct Counters {
    /// Whether the program is attached to at least one interface.
    pub running: AtomicBool,
    /// The program's counters, summed over CPUs ([`RESULTS`] order).
    pub kernel: [AtomicU64; RESULTS.len()],
}

impl Counters {
    /// Takes a look at the running daemon's fast path (`None`: off, not available, or
    /// removed). The counters keep their last values when it is gone, and never go
    /// down (a slot that could not be read counts 0 for that look only).
    pub fn look(&self, fastpath: Option<&Fastpath>) {
        let Some(fp) = fastpath else {
            self.running.store(false, Ordering::Relaxed);
            return;
        };
        self.record(!fp.attached().is_empty(), fp.stats());
    }

    /// Records one look: whether the program is attached, and its counters.
    pub fn record(&self, running: bool, stats: [u64; RESULTS.len()]) {
        for (slot, v) in self.kernel.iter().zip(stats) {
            slot.fetch_max(v, Ordering::Relaxed);
        }
        self.running.store(running, Ordering::Relaxed);
    }

    /// The counter of `RESULTS[i]`.
    pub fn get(&self, i: usize) -> u64 {
        self.kernel.get(i).map_or(0, |c| c.load(Ordering::Relaxed))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn results_name_every_counter_of_the_program_in_its_order() {
        let header = include_str!("../../bpf/fastpath.h");
        let names: Vec<String> = header
            .lines()
            .map(str::trim)
            .filter_map(|l| l.strip_prefix("FP_"))
            .filter_map(|l| l.split(',').next())
            .filter(|n| *n != "STATS")
            .map(|n| {
                let n = n.to_ascii_lowercase();
                n.strip_prefix("pass_").map_or(n.clone(), str::to_owned)
            })
            .collect();
        assert_eq!(names, RESULTS, "enum fp_stat in fastpath.h");
    }

    #[test]
    fn a_lower_reading_does_not_take_a_counter_back() {
        let c = Counters::default();
        c.record(true, [5, 7, 1, 0, 0, 0, 2]);
        c.record(true, [6, 0, 1, 0, 0, 0, 2]);
        assert_eq!(c.get(0), 6);
        assert_eq!(c.get(1), 7, "a slot read as 0 keeps its value");
        assert!(c.running.load(Ordering::Relaxed));
        c.look(None);
        assert!(!c.running.load(Ordering::Relaxed));
        assert_eq!(c.get(6), 2, "the counters stay after the program is gone");
    }
}
