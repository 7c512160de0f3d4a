//! The second-chance receiver: one thread on the UDP socket. A datagram from an address
//! that is not a peer, or with a bad header, is dropped and counted. A peer's segment goes
//! to the worker the TUN would steer its flow to; a "not held" answer is counted against
//! its segment ([`Answers`]), and once every peer has answered for one, the segment goes
//! to its worker to be reset.

use std::collections::hash_map::DefaultHasher;
use std::hash::{Hash, Hasher};
use std::io;
use std::net::{SocketAddr, UdpSocket};
use std::os::unix::net::UnixDatagram;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use kracauer_core::steer::{self, SteerKey};

use super::{Counters, INBOX_PREFIX_LEN, Kind, MAX_DATAGRAM, PREFIX_LEN, Task};

/// How often the thread looks at its stop flag (the socket's read timeout).
pub(super) const POLL: Duration = Duration::from_millis(200);
/// How long "not held" answers for one segment are gathered: the peers answer within a
/// round trip; a slot older than this is taken for another segment.
const ANSWER_WINDOW: Duration = Duration::from_secs(1);
/// Segments whose answers are gathered at once (a slot each; a collision forgets the
/// older segment, which is then not reset: the client times out instead).
const ANSWER_SLOTS: usize = 4096;

/// The receiver thread; dropping it stops the thread.
#[derive(Debug)]
pub struct Receiver {
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

impl Receiver {
    pub(super) fn start(
        socket: Arc<UdpSocket>,
        peers: Vec<SocketAddr>,
        inboxes: Vec<UnixDatagram>,
        key: SteerKey,
        counters: Arc<Counters>,
    ) -> io::Result<Self> {
        let stop = Arc::new(AtomicBool::new(false));
        let mut state = State {
            socket,
            answers: Answers::new(peers.len()),
            peers,
            inboxes,
            key,
            counters,
        };
        let flag = stop.clone();
        let thread = std::thread::Builder::new()
            .name("kracauer-sc".into())
            .spawn(move || state.run(&flag))?;
        Ok(Self {
            stop,
            thread: Some(thread),
        })
    }
}

impl Drop for Receiver {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

struct State {
    socket: Arc<UdpSocket>,
    peers: Vec<SocketAddr>,
    inboxes: Vec<UnixDatagram>,
    key: SteerKey,
    counters: Arc<Counters>,
    answers: Answers,
}

impl State {
    fn run(&mut self, stop: &AtomicBool) {
        let mut buf = vec![0u8; MAX_DATAGRAM];
        while !stop.load(Ordering::Relaxed) {
            let (n, from) = match self.socket.recv_from(&mut buf) {
                Ok(r) => r,
                Err(e)
                    if matches!(
                        e.kind(),
                        io::ErrorKind::WouldBlock
                            | io::ErrorKind::TimedOut
                            | io::ErrorKind::Interrupted
                    ) =>
                {
                    continue;
                }
                Err(e) => {
                    // An ICMP error for an earlier send (a peer that is down) shows here.
                    tracing::trace!("second chance: receive: {e}");
                    continue;
                }
            };
            self.datagram(&mut buf[..n], from, Instant::now());
        }
    }

    /// Handles one datagram `d` from `from`.
    fn datagram(&mut self, d: &mut [u8], from: SocketAddr, now: Instant) {
        let Some(peer) = self.peers.iter().position(|p| *p == from) else {
            Counters::add(&self.counters.not_peer, 1);
            tracing::debug!("second chance: a datagram from {from}, not a peer; dropped");
            return;
        };
        let kind = match super::read_header(d) {
            Ok(k) => k,
            Err(e) => {
                Counters::add(&self.counters.bad_header, 1);
                tracing::debug!("second chance: a datagram from {from} refused: {e}");
                return;
            }
        };
        let task = match kind {
            Kind::Segment => {
                Counters::add(&self.counters.received, 1);
                Task::Segment
            }
            Kind::NotHeld => {
                Counters::add(&self.counters.not_held_received, 1);
                if !self.answers.not_held(&d[PREFIX_LEN..], peer, now) {
                    return;
                }
                Counters::add(&self.counters.orphans, 1);
                Task::Orphan
            }
        };
        let worker = worker_of(&d[PREFIX_LEN..], self.key, self.inboxes.len());
        // The inbox datagram: task, peer, then the virtio-net header and the packet,
        // which are already in place.
        let at = PREFIX_LEN - INBOX_PREFIX_LEN;
        d[at] = task as u8;
        d[at + 1] = peer as u8;
        if let Some(inbox) = self.inboxes.get(worker) {
            if inbox.send(&d[at..]).is_err() {
                Counters::add(&self.counters.inbox_full, 1);
            }
        }
    }
}

/// The worker the steering program sends `packet`'s flow to, of `workers`.
pub fn worker_of(packet: &[u8], key: SteerKey, workers: usize) -> usize {
    let queues = u16::try_from(workers).unwrap_or(u16::MAX);
    usize::from(steer::queue_of(steer::steer_value(packet, key), queues))
}

/// The "not held" answers gathered for segments, in fixed slots (nothing is allocated
/// after the start).
pub(super) struct Answers {
    slots: Vec<Slot>,
    /// The mask of every peer.
    all: u64,
}

#[derive(Clone, Copy)]
struct Slot {
    hash: u64,
    answered: u64,
    since: Option<Instant>,
}

impl Answers {
    pub(super) fn new(peers: usize) -> Self {
        let all = if peers >= 64 {
            u64::MAX
        } else {
            (1u64 << peers) - 1
        };
        Self {
            slots: vec![
                Slot {
                    hash: 0,
                    answered: 0,
                    since: None,
                };
                ANSWER_SLOTS
            ],
            all,
        }
    }

    /// Counts peer `peer`'s "not held" for `packet`; returns whether every peer has now
    /// answered so for it (the slot is then freed).
    pub(super) fn not_held(&mut self, packet: &[u8], peer: usize, now: Instant) -> bool {
        let mut h = DefaultHasher::new();
        packet.hash(&mut h);
        let hash = h.finish();
        let len = self.slots.len();
        let slot = &mut self.slots[(hash as usize) % len];
        let fresh = slot
            .since
            .is_some_and(|t| slot.hash == hash && now.saturating_duration_since(t) < ANSWER_WINDOW);
        if !fresh {
            *slot = Slot {
                hash,
                answered: 0,
                since: Some(now),
            };
        }
        slot.answered |= 1u64 << peer.min(63);
        if slot.answered & self.all == self.all {
            slot.since = None;
            return true;
        }
        false
    }
}
