//! A one-way link with a seeded fault model: it delays every packet, and drops,
//! duplicates or holds back (reorders) some, each with its own probability. It can also
//! strip options from SYNs, drop everything, or hold back the first data segment until
//! the next one has passed (a ClientHello that arrives in reverse order).

use std::cmp::Reverse;
use std::collections::BinaryHeap;

use super::probe::{self, Strip};
use super::rng::Rng;

/// How a link treats packets. Times are virtual milliseconds.
#[derive(Debug, Clone, Copy)]
pub struct Faults {
    pub delay_ms: u64,
    pub loss: f64,
    pub duplicate: f64,
    /// Probability that a packet is held back by up to `reorder_ms` extra.
    pub reorder: f64,
    pub reorder_ms: u64,
}

impl Faults {
    pub const CLEAN: Faults = Faults {
        delay_ms: 5,
        loss: 0.0,
        duplicate: 0.0,
        reorder: 0.0,
        reorder_ms: 0,
    };

    pub fn lossy(loss: f64, duplicate: f64, reorder: f64) -> Faults {
        Faults {
            delay_ms: 5,
            loss,
            duplicate,
            reorder,
            reorder_ms: 20,
        }
    }
}

#[derive(Debug, Default, Clone, Copy)]
pub struct LinkStats {
    pub sent: u64,
    pub lost: u64,
    pub duplicated: u64,
    pub reordered: u64,
}

#[derive(Debug)]
pub struct Link {
    pub name: &'static str,
    pub faults: Faults,
    /// Drop every packet (a backend that never answers).
    pub black_hole: bool,
    /// Options to strip from SYNs crossing this link.
    pub strip: Strip,
    /// Lower the MSS of SYNs and SYN-ACKs crossing this link.
    pub clamp_mss: Option<u16>,
    /// Hold the first segment with data until the next one with data has passed.
    pub hold_first_data: bool,
    /// Lose the first segment with data.
    pub drop_first_data: bool,
    held: Option<Vec<u8>>,
    released: bool,
    rng: Rng,
    queue: BinaryHeap<Reverse<(u64, u64, Vec<u8>)>>,
    order: u64,
    pub stats: LinkStats,
}

impl Link {
    pub fn new(name: &'static str, faults: Faults, seed: u64) -> Self {
        Self {
            name,
            faults,
            black_hole: false,
            strip: Strip::default(),
            clamp_mss: None,
            hold_first_data: false,
            drop_first_data: false,
            held: None,
            released: false,
            rng: Rng::new(seed),
            queue: BinaryHeap::new(),
            order: 0,
            stats: LinkStats::default(),
        }
    }

    /// Puts a packet on the link at `now` (µs).
    pub fn send(&mut self, now: u64, mut packet: Vec<u8>) {
        self.stats.sent += 1;
        if self.black_hole {
            self.stats.lost += 1;
            return;
        }
        if self.strip.any() {
            probe::strip_syn_options(&mut packet, self.strip);
        }
        if let Some(mss) = self.clamp_mss {
            probe::clamp_mss(&mut packet, mss);
        }
        if self.drop_first_data
            && !self.released
            && probe::parse(&packet).is_ok_and(|s| s.payload_len > 0)
        {
            self.released = true;
            return;
        }
        if self.hold_first_data && !self.released {
            let has_data = probe::parse(&packet).is_ok_and(|s| s.payload_len > 0);
            if has_data {
                match self.held.take() {
                    None => {
                        self.held = Some(packet);
                        return;
                    }
                    Some(first) => {
                        self.released = true;
                        let at = now + self.faults.delay_ms * 1000;
                        self.enqueue(at, packet);
                        self.enqueue(at + 1, first);
                        return;
                    }
                }
            }
        }
        if self.rng.chance(self.faults.loss) {
            self.stats.lost += 1;
            return;
        }
        let copies = if self.rng.chance(self.faults.duplicate) {
            self.stats.duplicated += 1;
            2
        } else {
            1
        };
        for _ in 0..copies {
            let mut at = now + self.faults.delay_ms * 1000;
            if self.rng.chance(self.faults.reorder) {
                self.stats.reordered += 1;
                at += 1000 + self.rng.below(self.faults.reorder_ms.max(1) * 1000);
            }
            self.enqueue(at, packet.clone());
        }
    }

    fn enqueue(&mut self, at: u64, packet: Vec<u8>) {
        self.order += 1;
        self.queue.push(Reverse((at, self.order, packet)));
    }

    /// When the next packet arrives, if any is in flight.
    pub fn next_at(&self) -> Option<u64> {
        self.queue.peek().map(|Reverse((at, _, _))| *at)
    }

    /// The next packet due at or before `now`.
    pub fn pop_due(&mut self, now: u64) -> Option<Vec<u8>> {
        if self.next_at()? <= now {
            self.queue.pop().map(|Reverse((_, _, p))| p)
        } else {
            None
        }
    }
}
