//! Counters: packets and bytes by direction, flows by outcome, drops by named reason.
//!
//! A dropped packet is never an error: it is counted under a [`DropReason`], each
//! tagged with the side whose packet it was ([`Side`]), so an operator can tell a
//! scanner on the client side from a misbehaving backend from Kracauer's own limits.

pub use crate::base::{DropReason, Outcome, PeekPath, Protocol, Side};

/// Direction of a forwarded packet.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Direction {
    /// IPv4 client to IPv6 backend.
    ToBackend,
    /// IPv6 backend to IPv4 client.
    ToClient,
}

/// Counters since the engine started.
#[derive(Debug, Clone, Default)]
pub struct Stats {
    drops: Vec<u64>,
    outcomes: Vec<u64>,
    /// Packets forwarded (translated), by direction: [to backend, to client].
    pub packets: [u64; 2],
    /// TCP payload bytes forwarded, by direction: [to backend, to client].
    pub bytes: [u64; 2],
    /// Packets Kracauer made itself (SYN-ACKs, RSTs, SYNs, ACKs, peeked data, refusals).
    pub made: u64,
    /// SYN-ACKs answered with a cookie (the half-open bound or the flow table reached, or
    /// the client address holding its allowance of unnamed connections).
    pub cookies_sent: u64,
    /// Of those, the cookies sent because the address held its allowance.
    pub cookies_for_address: u64,
    /// Cookie ACKs without data from an address holding its allowance, taken without
    /// making a flow (the client's first bytes make it).
    pub deferred: u64,
    /// Connections established from a valid cookie.
    pub cookies_accepted: u64,
    /// Flows that reached the spliced state.
    pub spliced: u64,
    /// Peeks ended, by protocol (TLS, HTTP, QUIC) and by the path taken ([`PeekPath`]).
    peeks: [[u64; PEEK_PATHS]; 3],
    /// Backend SYNs sent again to the next backend of a pool, after a RST, an ICMPv6
    /// error or silence from the one before.
    pub failovers: u64,
    /// Flows refused because no backend of their route was up.
    pub no_backend: u64,
    /// Unnamed flows cut under pressure (docs/robustness.md, "Many users behind one
    /// address").
    pub pressure_cuts: u64,
    /// Peeks whose bytes Kracauer acknowledged itself (custody taken).
    pub custody_taken: u64,
    /// Custody bytes sent again to a backend (segments).
    pub custody_retransmits: u64,
    /// RFC 5961 challenge ACKs sent, and those the rate limit held back.
    pub challenge_acks: u64,
    pub challenge_acks_limited: u64,
    /// Second chance (`secondchance.rs`): client segments for no flow held here given
    /// back as [`Verdict::SecondChance`](super::Verdict::SecondChance) for the peers.
    pub second_chance_passed: u64,
    /// Segments peers passed on to this engine.
    pub second_chance_received: u64,
    /// Of those, the segments of a flow this engine holds (handled as from the TUN).
    pub second_chance_held: u64,
    /// Segments every peer said it holds no flow for, answered with RST here.
    pub second_chance_orphans_reset: u64,
    /// QUIC datagrams forwarded, by direction: [to backend, to client] (a GSO
    /// super-packet counts once).
    pub quic_packets: [u64; 2],
    /// UDP payload bytes of QUIC flows forwarded, by direction.
    pub quic_bytes: [u64; 2],
    /// QUIC flows that reached their backend (their Initials sent on).
    pub quic_opened: u64,
    /// QUIC flows ended, by outcome.
    quic_outcomes: Vec<u64>,
    /// New mappings made for a rebinding QUIC client: a packet on a new 4-tuple whose
    /// Destination Connection ID a backend chose.
    pub quic_rebinds: u64,
    /// Version Negotiation packets sent for Initials of a version Kracauer cannot read.
    pub quic_version_negotiations: u64,
    /// Connection IDs learned from clients' short headers (a client moved to an ID the
    /// backend gave it in an encrypted frame).
    pub quic_cids_from_clients: u64,
}

/// How many [`PeekPath`]s there are.
const PEEK_PATHS: usize = PeekPath::ALL.len();

impl Stats {
    pub(crate) fn new() -> Self {
        Self {
            drops: vec![0; DropReason::ALL.len()],
            outcomes: vec![0; Outcome::ALL.len()],
            quic_outcomes: vec![0; Outcome::ALL.len()],
            ..Default::default()
        }
    }

    pub(crate) fn drop(&mut self, reason: DropReason) {
        if let Some(c) = self.drops.get_mut(reason as usize) {
            *c += 1;
        }
    }

    pub(crate) fn outcome(&mut self, outcome: Outcome) {
        if let Some(c) = self.outcomes.get_mut(outcome as usize) {
            *c += 1;
        }
    }

    /// Counts a QUIC flow's end.
    pub(crate) fn quic_outcome(&mut self, outcome: Outcome) {
        if let Some(c) = self.quic_outcomes.get_mut(outcome as usize) {
            *c += 1;
        }
    }

    /// QUIC flows that ended with `outcome`.
    pub fn quic_outcomes(&self, outcome: Outcome) -> u64 {
        self.quic_outcomes
            .get(outcome as usize)
            .copied()
            .unwrap_or(0)
    }

    /// Sets the count of QUIC flows that ended with `outcome` (a restored snapshot's).
    pub(crate) fn set_quic_outcomes(&mut self, outcome: Outcome, n: u64) {
        if let Some(c) = self.quic_outcomes.get_mut(outcome as usize) {
            *c = n;
        }
    }

    /// Counts a forwarded QUIC datagram of `payload` UDP payload bytes.
    pub(crate) fn forwarded_quic(&mut self, dir: Direction, payload: usize) {
        let i = dir as usize;
        self.quic_packets[i] += 1;
        self.quic_bytes[i] += payload as u64;
    }

    pub(crate) fn peek_path(&mut self, protocol: Protocol, path: PeekPath) {
        self.peeks[protocol as usize][path as usize] += 1;
    }

    /// Peeks on `protocol` ports that ended by `path`.
    pub fn peeks(&self, protocol: Protocol, path: PeekPath) -> u64 {
        self.peeks[protocol as usize][path as usize]
    }

    pub(crate) fn forwarded(&mut self, dir: Direction, payload: usize) {
        let i = dir as usize;
        self.packets[i] += 1;
        self.bytes[i] += payload as u64;
    }

    /// Packets dropped for `reason`.
    pub fn drops(&self, reason: DropReason) -> u64 {
        self.drops.get(reason as usize).copied().unwrap_or(0)
    }

    /// Every reason with its count.
    pub fn all_drops(&self) -> impl Iterator<Item = (DropReason, u64)> + '_ {
        DropReason::ALL.iter().map(|&r| (r, self.drops(r)))
    }

    /// Flows that ended with `outcome`.
    pub fn outcomes(&self, outcome: Outcome) -> u64 {
        self.outcomes.get(outcome as usize).copied().unwrap_or(0)
    }

    /// Adds `other`'s counts to these (to total the engines of several workers).
    pub fn add(&mut self, other: &Stats) {
        let grow = |v: &mut Vec<u64>, o: &[u64]| {
            if v.len() < o.len() {
                v.resize(o.len(), 0);
            }
            for (a, b) in v.iter_mut().zip(o) {
                *a += b;
            }
        };
        grow(&mut self.drops, &other.drops);
        grow(&mut self.outcomes, &other.outcomes);
        grow(&mut self.quic_outcomes, &other.quic_outcomes);
        for i in 0..2 {
            self.packets[i] += other.packets[i];
            self.bytes[i] += other.bytes[i];
            self.quic_packets[i] += other.quic_packets[i];
            self.quic_bytes[i] += other.quic_bytes[i];
        }
        self.quic_opened += other.quic_opened;
        self.quic_rebinds += other.quic_rebinds;
        self.quic_version_negotiations += other.quic_version_negotiations;
        self.quic_cids_from_clients += other.quic_cids_from_clients;
        self.made += other.made;
        self.cookies_sent += other.cookies_sent;
        self.cookies_accepted += other.cookies_accepted;
        self.spliced += other.spliced;
        self.failovers += other.failovers;
        self.no_backend += other.no_backend;
        self.cookies_for_address += other.cookies_for_address;
        self.deferred += other.deferred;
        self.pressure_cuts += other.pressure_cuts;
        self.custody_taken += other.custody_taken;
        self.custody_retransmits += other.custody_retransmits;
        self.challenge_acks += other.challenge_acks;
        self.challenge_acks_limited += other.challenge_acks_limited;
        self.second_chance_passed += other.second_chance_passed;
        self.second_chance_received += other.second_chance_received;
        self.second_chance_held += other.second_chance_held;
        self.second_chance_orphans_reset += other.second_chance_orphans_reset;
        for (mine, theirs) in self.peeks.iter_mut().zip(&other.peeks) {
            for (a, b) in mine.iter_mut().zip(theirs) {
                *a += b;
            }
        }
    }

    /// Sets the count of drops for `reason` (a restored snapshot's).
    pub(crate) fn set_drops(&mut self, reason: DropReason, n: u64) {
        if let Some(c) = self.drops.get_mut(reason as usize) {
            *c = n;
        }
    }

    /// Sets the count of flows that ended with `outcome` (a restored snapshot's).
    pub(crate) fn set_outcomes(&mut self, outcome: Outcome, n: u64) {
        if let Some(c) = self.outcomes.get_mut(outcome as usize) {
            *c = n;
        }
    }

    /// Sum of all drops.
    pub fn total_drops(&self) -> u64 {
        self.drops.iter().sum()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_reason_has_a_distinct_name_and_a_side() {
        let mut names: Vec<_> = DropReason::ALL.iter().map(|r| r.name()).collect();
        names.sort_unstable();
        names.dedup();
        assert_eq!(names.len(), DropReason::ALL.len());
        assert!(
            DropReason::ALL
                .iter()
                .all(|r| r.name().starts_with(r.side().name()) || r.side() == Side::Internal)
        );
    }

    #[test]
    fn drops_are_counted_by_reason() {
        let mut s = Stats::new();
        s.drop(DropReason::ClientNoFlow);
        s.drop(DropReason::ClientNoFlow);
        s.drop(DropReason::OutputFull);
        assert_eq!(s.drops(DropReason::ClientNoFlow), 2);
        assert_eq!(s.drops(DropReason::OutputFull), 1);
        assert_eq!(s.drops(DropReason::BackendNoFlow), 0);
        assert_eq!(s.total_drops(), 3);
    }

    #[test]
    fn added_stats_sum_every_counter() {
        let mut a = Stats::new();
        a.drop(DropReason::ClientNoFlow);
        a.forwarded(Direction::ToClient, 100);
        a.outcome(Outcome::Closed);
        let mut b = Stats::new();
        b.drop(DropReason::ClientNoFlow);
        b.drop(DropReason::OutputFull);
        b.forwarded(Direction::ToClient, 50);
        b.spliced = 2;
        a.peek_path(Protocol::Http, PeekPath::DefaultUnparsable);
        b.peek_path(Protocol::Http, PeekPath::DefaultUnparsable);
        b.peek_path(Protocol::Tls, PeekPath::Refused);
        let mut total = Stats::default();
        total.add(&a);
        total.add(&b);
        assert_eq!(total.drops(DropReason::ClientNoFlow), 2);
        assert_eq!(total.drops(DropReason::OutputFull), 1);
        assert_eq!(total.outcomes(Outcome::Closed), 1);
        assert_eq!((total.packets[1], total.bytes[1]), (2, 150));
        assert_eq!(total.spliced, 2);
        assert_eq!(total.peeks(Protocol::Http, PeekPath::DefaultUnparsable), 2);
        assert_eq!(total.peeks(Protocol::Tls, PeekPath::Refused), 1);
        assert_eq!(total.peeks(Protocol::Tls, PeekPath::Named), 0);
    }

    #[test]
    fn reasons_index_matches_declaration_order() {
        for (i, r) in DropReason::ALL.iter().enumerate() {
            assert_eq!(*r as usize, i);
        }
        for (i, o) in Outcome::ALL.iter().enumerate() {
            assert_eq!(*o as usize, i);
        }
        for (i, p) in PeekPath::ALL.iter().enumerate() {
            assert_eq!(*p as usize, i);
        }
        for (i, p) in Protocol::ALL.iter().enumerate() {
            assert_eq!(*p as usize, i);
        }
    }
}
