//! QUIC flows over UDP (docs/architecture.md, "QUIC"): a [`UdpFlow`] is one client
//! 4-tuple to a QUIC service port, in one of two phases, each owning its data.
//!
//! | phase | holds | takes | leads to |
//! |---|---|---|---|
//! | [`Pending`] | the Initial peek, the client's datagrams so far (their UDP payloads, in order) | client datagrams | `Forwarding` (the name routed), or the end (refused, unreadable, deadline) |
//! | [`Forwarding`] | the name, the backend's answer so far, the connection IDs the backend chose, byte counts | every datagram both ways, translated statelessly | the end (idle) |
//!
//! A UDP flow has no handshake of its own and nothing to close: it ends when idle
//! ([`UdpFlow::deadline`]), short before the backend has answered
//! ([`UdpTimeouts::unanswered`]), long after ([`UdpTimeouts::idle`]). A pending flow
//! ends at its peek deadline. The transitions consume the phase
//! ([`Pending::into_forwarding`]).

use core::time::Duration;

use arrayvec::ArrayVec;

use crate::addr::Prefix96;
use crate::name::HostName;
use crate::quic::{ConnectionId, InitialPeek, QuicPeek};
use crate::time::Time;

use super::Usage;

/// Server-chosen connection IDs a flow remembers for rebinding: the SCID of the
/// backend's Initial and Handshake packets (one, usually), of a Retry, and the IDs the
/// client moved to later (which the backend gave it in encrypted frames; seen in the
/// client's short headers). The oldest goes first when a new one comes.
pub const MAX_LEARNED_CIDS: usize = 4;

/// What [`Forwarding::learn`] did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Learned {
    /// Known already, empty, or too long: nothing changed.
    Nothing,
    /// Remembered.
    Added,
    /// Remembered in place of this one, the oldest.
    Replaced(ConnectionId),
}

/// The timeouts a UDP flow's deadline is made of.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct UdpTimeouts {
    /// A pending flow's time to name the host, from its first datagram.
    pub peek: Duration,
    /// Idle time before the backend has sent anything.
    pub unanswered: Duration,
    /// Idle time after.
    pub idle: Duration,
}

/// One QUIC flow.
#[derive(Debug)]
pub struct UdpFlow {
    /// The first datagram.
    pub created: Time,
    /// The last datagram either way.
    pub last_seen: Time,
    /// When its earliest timer entry fires (see `flow::timers`).
    pub armed: Time,
    /// The /96 the backend knows the client by: the prefix in force when the flow
    /// began, kept to its end across a prefix change (`engine/prefixes.rs`).
    pub prefix: Prefix96,
    pub phase: UdpPhase,
}

/// What a UDP flow is doing.
#[derive(Debug)]
pub enum UdpPhase {
    Pending(Box<Pending>),
    Forwarding(Forwarding),
}

/// A flow whose Initials have not named the host yet.
#[derive(Debug)]
pub struct Pending {
    pub peek: InitialPeek,
    /// The name the hello gave, kept for the log line of a refused flow.
    pub name: Option<HostName>,
    /// The client's datagrams (UDP payloads), one after another.
    held: Vec<u8>,
    /// Where each ends in `held`.
    ends: Vec<u32>,
}

/// A flow routed to its backend: every datagram is translated as it comes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Forwarding {
    /// The SNI the Initials gave, if any.
    pub name: Option<HostName>,
    /// The backend has sent a datagram on this mapping.
    pub answered: bool,
    /// UDP payload bytes forwarded: [to backend, to client].
    pub bytes: [u64; 2],
    /// Connection IDs the backend chose (long-header SCIDs), for rebinding.
    pub cids: ArrayVec<ConnectionId, MAX_LEARNED_CIDS>,
    /// The flow is a new mapping of a rebinding client, made from another flow's
    /// connection ID.
    pub rebound: bool,
}

impl Forwarding {
    /// A flow routed by `name`.
    pub fn new(name: Option<HostName>) -> Self {
        Self {
            name,
            answered: false,
            bytes: [0; 2],
            cids: ArrayVec::new(),
            rebound: false,
        }
    }

    /// Remembers `cid` as one the backend chose; when all the room is taken, the oldest
    /// makes way (clients retire old IDs, never new ones).
    pub fn learn(&mut self, cid: &[u8]) -> Learned {
        if cid.is_empty() || self.knows(cid) {
            return Learned::Nothing;
        }
        let Some(c) = ConnectionId::new(cid) else {
            return Learned::Nothing;
        };
        if self.cids.is_full() {
            let old = self.cids.remove(0);
            self.cids.push(c);
            return Learned::Replaced(old);
        }
        self.cids.push(c);
        Learned::Added
    }

    /// Whether `cid` is one of the learned IDs.
    pub fn knows(&self, cid: &[u8]) -> bool {
        self.cids.iter().any(|c| c.as_bytes() == cid)
    }

    /// The Destination Connection ID of a client's short-header `datagram`, if it is not
    /// one of the learned IDs: read with the length of the learned ones (a server's IDs
    /// have one length), so nothing is read before the backend chose one.
    pub fn unseen_dcid<'d>(&self, datagram: &'d [u8]) -> Option<&'d [u8]> {
        let len = self.cids.first()?.as_bytes().len();
        if datagram.first()? & 0x80 != 0 {
            return None;
        }
        let dcid = datagram.get(1..1 + len)?;
        (!self.knows(dcid)).then_some(dcid)
    }
}

impl Pending {
    /// A pending flow whose peek has taken its first datagram, `first`.
    pub fn new(peek: InitialPeek, first: &[u8]) -> Self {
        let mut p = Self {
            peek,
            name: None,
            held: Vec::new(),
            ends: Vec::new(),
        };
        p.hold(first);
        p
    }

    /// Keeps `datagram` for replay once the host is named.
    pub fn hold(&mut self, datagram: &[u8]) {
        self.held.extend_from_slice(datagram);
        self.ends
            .push(u32::try_from(self.held.len()).unwrap_or(u32::MAX));
    }

    /// Gives `datagram` to the peek and keeps it: whatever the answer, it goes on with
    /// the others if the flow is routed (the one that completes the hello, too). The
    /// peek's own bounds end the flow one datagram past them at most.
    pub fn push(&mut self, datagram: &[u8]) -> QuicPeek {
        let answer = self.peek.push(datagram);
        self.hold(datagram);
        answer
    }

    /// The held datagrams, in the order they came.
    pub fn datagrams(&self) -> impl Iterator<Item = &[u8]> {
        let mut start = 0usize;
        self.ends.iter().map(move |&end| {
            let end = end as usize;
            let d = self.held.get(start..end).unwrap_or_default();
            start = end;
            d
        })
    }

    /// Number of datagrams held.
    pub fn len(&self) -> usize {
        self.ends.len()
    }

    /// Whether none is held.
    pub fn is_empty(&self) -> bool {
        self.ends.is_empty()
    }

    /// Heap bytes this pending flow holds: its datagrams and its peek's stream.
    pub fn heap_bytes(&self) -> usize {
        self.held.capacity() + self.ends.capacity() * 4 + self.peek.held()
    }

    /// The flow is named: its datagrams go out (the caller took them) and it forwards.
    pub fn into_forwarding(self, name: Option<HostName>) -> Forwarding {
        Forwarding::new(name)
    }
}

impl UdpFlow {
    /// A flow whose first datagram came at `now`, under `prefix`.
    pub fn new(now: Time, prefix: Prefix96, phase: UdpPhase) -> Self {
        Self {
            created: now,
            last_seen: now,
            armed: Time::NEVER,
            prefix,
            phase,
        }
    }

    /// When the flow next needs attention: its end, unless a datagram comes.
    pub fn deadline(&self, t: &UdpTimeouts) -> Time {
        match &self.phase {
            UdpPhase::Pending(_) => self.created + t.peek,
            UdpPhase::Forwarding(f) if f.answered => self.last_seen + t.idle,
            UdpPhase::Forwarding(_) => self.last_seen + t.unanswered,
        }
    }

    /// What the flow holds against the limits: a pending flow holds a slot of its
    /// client address's unnamed connections and its bytes.
    pub fn usage(&self) -> Usage {
        match &self.phase {
            UdpPhase::Pending(p) => Usage {
                half_open: false,
                peeking: true,
                peek_bytes: p.heap_bytes(),
            },
            UdpPhase::Forwarding(_) => Usage::default(),
        }
    }

    /// The forwarding state, if the flow is routed.
    pub fn forwarding(&self) -> Option<&Forwarding> {
        match &self.phase {
            UdpPhase::Forwarding(f) => Some(f),
            UdpPhase::Pending(_) => None,
        }
    }

    /// The forwarding state, if the flow is routed.
    pub fn forwarding_mut(&mut self) -> Option<&mut Forwarding> {
        match &mut self.phase {
            UdpPhase::Forwarding(f) => Some(f),
            UdpPhase::Pending(_) => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::quic::QuicPeekConfig;

    fn timeouts() -> UdpTimeouts {
        UdpTimeouts {
            peek: Duration::from_secs(5),
            unanswered: Duration::from_secs(30),
            idle: Duration::from_secs(180),
        }
    }

    #[test]
    fn held_datagrams_come_back_in_order_and_whole() {
        let mut p = Pending::new(InitialPeek::new(QuicPeekConfig::default()), b"one");
        p.hold(b"");
        p.hold(b"three");
        let got: Vec<&[u8]> = p.datagrams().collect();
        assert_eq!(got, [&b"one"[..], b"", b"three"]);
        assert_eq!(p.len(), 3);
    }

    fn test_prefix() -> Prefix96 {
        "2001:db8:64::/96".parse().unwrap()
    }

    #[test]
    fn a_pending_flow_ends_at_its_peek_deadline_and_holds_its_bytes() {
        let p = Pending::new(InitialPeek::new(QuicPeekConfig::default()), &[0; 1200]);
        let f = UdpFlow::new(
            Time::from_millis(10),
            test_prefix(),
            UdpPhase::Pending(Box::new(p)),
        );
        assert_eq!(f.deadline(&timeouts()), Time::from_millis(5010));
        let u = f.usage();
        assert!(u.peeking && !u.half_open);
        assert!(u.peek_bytes >= 1200);
    }

    #[test]
    fn idle_time_is_short_until_the_backend_answers() {
        let mut f = UdpFlow::new(
            Time::from_millis(0),
            test_prefix(),
            UdpPhase::Forwarding(Forwarding::new(None)),
        );
        f.last_seen = Time::from_millis(1000);
        assert_eq!(f.deadline(&timeouts()), Time::from_millis(31_000));
        f.forwarding_mut().unwrap().answered = true;
        assert_eq!(f.deadline(&timeouts()), Time::from_millis(181_000));
        assert_eq!(f.usage(), Usage::default());
    }

    #[test]
    fn learned_connection_ids_are_kept_once_and_bounded() {
        let mut f = Forwarding::new(None);
        assert_eq!(f.learn(b"\x01\x02"), Learned::Added);
        assert_eq!(f.learn(b"\x01\x02"), Learned::Nothing);
        assert_eq!(f.learn(b""), Learned::Nothing);
        assert_eq!(f.learn(&[9; 21]), Learned::Nothing);
        for cid in [b"\x03", b"\x04", b"\x05"] {
            assert_eq!(f.learn(cid), Learned::Added);
        }
        let oldest = ConnectionId::new(b"\x01\x02").unwrap();
        assert_eq!(f.learn(b"\x06"), Learned::Replaced(oldest));
        assert_eq!(f.cids.len(), MAX_LEARNED_CIDS);
        assert!(f.knows(b"\x06") && !f.knows(b"\x01\x02"));
    }

    #[test]
    fn a_short_header_to_an_unseen_id_of_the_learned_length_is_noticed() {
        let mut f = Forwarding::new(None);
        let mut short = vec![0x41, 1, 2, 3, 4, 5, 6, 7, 8, 0xee];
        assert_eq!(f.unseen_dcid(&short), None, "no ID learned yet: no length");
        f.learn(&[1, 2, 3, 4, 5, 6, 7, 8]);
        assert_eq!(f.unseen_dcid(&short), None, "known");
        short[1] = 9;
        assert_eq!(f.unseen_dcid(&short), Some(&[9, 2, 3, 4, 5, 6, 7, 8][..]));
        short[0] = 0xc1;
        assert_eq!(f.unseen_dcid(&short), None, "a long header");
        assert_eq!(f.unseen_dcid(&[0x41, 9]), None, "too short");
    }
}
