//! A worker's part of second chance ([`crate::secondchance`]): a segment its engine does
//! not hold goes to the peers; the segments the receiver hands it (a peer's, for the
//! engine's second chance; or an orphan no peer holds, to be reset) are taken between
//! batches of TUN packets, their results written to its TUN queue as usual.

use kracauer_core::engine::{DropReason, Output, Verdict};
use kracauer_core::offload::{self, Inbound};

use super::{DataPlane, START};
use crate::secondchance::{Counters, Task};

/// Most inbox tasks taken before the TUN is looked at again.
const BATCH: usize = 64;

impl DataPlane {
    /// Passes the packet at `buf[START..]` (a [`Verdict::SecondChance`]) to the peers.
    pub(super) fn pass_on(&self, buf: &mut [u8]) {
        if let Some(link) = &self.second_chance {
            link.pass_on(buf, START, self.queue.offload());
        }
    }

    /// Takes up to [`BATCH`] tasks from the receiver; returns whether there may be more.
    pub(super) fn take_second_chances(&mut self, buf: &mut [u8], out: &mut Output) -> bool {
        let Some(link) = self.second_chance.take() else {
            return false;
        };
        let mut taken = 0;
        while taken < BATCH {
            let Some((task, peer, end)) = link.recv(buf, START) else {
                break;
            };
            taken += 1;
            let (hdr, packet) =
                buf[START - offload::HEADER_LEN..end].split_at_mut(offload::HEADER_LEN);
            let rx = match offload::inbound(hdr, packet) {
                // A worker without offloads can write neither a partial checksum nor a
                // super-packet.
                Ok(rx) if self.queue.offload() || (rx.gso.is_none() && !partial(&rx)) => rx,
                _ => {
                    Counters::add(&link.counters().refused, 1);
                    continue;
                }
            };
            let now = self.now();
            let packet = &mut buf[..end];
            match task {
                Task::Segment => {
                    let verdict =
                        self.engine
                            .handle_second_chance(now, packet, START, rx.checksum, out);
                    self.apply_fastpath_ops();
                    match verdict {
                        Verdict::Forward(range) => self.forward(packet, range, &rx),
                        Verdict::Dropped(DropReason::ClientSecondChanceNoFlow) => {
                            link.not_held(packet, START, peer);
                        }
                        _ => {}
                    }
                }
                Task::Orphan => {
                    self.engine.reset_orphan(packet, START, out);
                    self.apply_fastpath_ops();
                }
            }
            self.flush(out);
        }
        self.second_chance = Some(link);
        taken == BATCH
    }
}

fn partial(rx: &Inbound) -> bool {
    rx.checksum == kracauer_core::engine::RxChecksum::Partial
}
