//! Flows: one state machine per client connection, the table that finds them and the
//! timers that expire them.
//!
//! A [`Flow`] is what Kracauer knows of the TCP connection with the client ([`Conn`]:
//! ISNs, the options its SYN agreed, the FINs seen) and the [`Phase`] it is in. Each phase
//! is a type that owns its data:
//!
//! | phase | holds | next |
//! |---|---|---|
//! | `Handshake` | nothing beyond `Conn` (the SYN-ACK is rebuilt from it) | `Peek` |
//! | [`Peek`] | the peek buffer | [`Connect`], [`Refused`], or the end |
//! | [`Connect`] | the peeked bytes, the name, the backends to try, the SYN timers | [`Spliced`], or the end |
//! | [`Spliced`] | the [`Splice`](crate::tcp::splice::Splice), byte counts, the name | [`Closing`] |
//! | [`Custody`] | the spliced state, and bytes Kracauer acknowledged itself until the backend does | [`Spliced`], [`Closing`], or the end |
//! | [`Refused`] | the answer sent, until when to linger | the end |
//! | [`Closing`] | the spliced state, until when to linger | the end |
//!
//! A phase takes a parsed segment and says what to do ([`setup::SetupStep`],
//! [`connect::ConnectStep`], ...); the engine carries it out. A transition is a function
//! that consumes the old phase and returns the new one, run through
//! [`table::FlowTable::step`]. What a phase holds against the engine's limits (a half-open
//! slot, a per-client peek slot, peek-buffer bytes) is read from the phase itself by
//! [`Flow::usage`], so no transition can forget to give it back.

pub mod connect;
pub mod custody;
pub mod setup;
pub mod snapshot;
pub mod spliced;
pub mod table;
pub mod timers;
pub mod udp;

use core::fmt;
use core::time::Duration;

pub use self::connect::Connect;
pub use self::custody::Custody;
pub use self::setup::{Peek, Unnamed};
pub use self::spliced::{Closing, Refusal, Refused, Spliced};
use crate::addr::Prefix96;
use crate::base::{Outcome, PeekPath, Protocol};
use crate::name::HostName;
use crate::tcp::seg::ClientOptions;
use crate::time::Time;
use crate::wire::SeqNumber;

/// One client connection, from its SYN to its end.
#[derive(Debug)]
pub struct Flow {
    pub protocol: Protocol,
    pub created: Time,
    /// Last packet from either side.
    pub last_seen: Time,
    /// When this flow's earliest timer entry fires ([`Time::NEVER`] when none).
    pub armed: Time,
    pub conn: Conn,
    pub phase: Phase,
    /// Which way the peek ended, once it has (for the access log).
    pub peek_end: Option<PeekEnd>,
}

/// Which way a flow's peek ended, and why it named nothing, if it did not.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PeekEnd {
    pub path: PeekPath,
    pub unnamed: Option<Unnamed>,
}

impl fmt::Display for PeekEnd {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.path.name())?;
        match self.unnamed {
            Some(why) => write!(f, ":{}", why.name()),
            None => Ok(()),
        }
    }
}

/// What Kracauer knows of the TCP connection with the client, in every phase.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Conn {
    /// The client's ISN.
    pub c_isn: SeqNumber,
    /// Kracauer's ISN, as sent in its SYN-ACK.
    pub k_isn: SeqNumber,
    pub client: ClientOptions,
    /// Latest TSval seen from the client.
    pub client_tsval: u32,
    /// TSval Kracauer sent in its SYN-ACK (the client's view of "the server's" clock
    /// starts there).
    pub k_tsval: u32,
    /// Latest window field from the client (in its own scale).
    pub client_window: u16,
    /// The client's FIN was forwarded.
    pub client_fin: bool,
    /// The backend's FIN was forwarded.
    pub backend_fin: bool,
    /// The flow's entry is in the kernel fast path's map (engine/fastpath.rs). Not in
    /// snapshots: a restored engine has handed nothing over until the daemon says so.
    pub fastpath: bool,
    /// The /96 the backend knows this connection by: the prefix in force when the flow
    /// began. A prefix changed since keeps serving the flows that began under it
    /// (`engine/prefixes.rs`).
    pub prefix: Prefix96,
}

/// Where a flow is in its life.
#[derive(Debug)]
pub enum Phase {
    /// SYN answered, waiting for the client's ACK.
    Handshake,
    /// Collecting the client's first bytes until a peeker names the host.
    Peek(Box<Peek>),
    /// Backend SYN sent, waiting for its SYN-ACK.
    Connect(Box<Connect>),
    /// Every packet is translated.
    Spliced(Spliced),
    /// Every packet is translated, and bytes Kracauer acknowledged to the client while
    /// peeking are kept (and retransmitted) until the backend acknowledges them.
    Custody(Box<Custody>),
    /// The name was refused: the answer (alert or 421) and FIN were sent; ACKing the
    /// client's close until the linger ends.
    Refused(Refused),
    /// Both FINs, or a RST, were seen; stragglers are still translated until the linger
    /// ends.
    Closing(Closing),
}

/// The timeouts a flow's deadlines are made of.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Timeouts {
    /// From the SYN to the name.
    pub peek: Duration,
    /// From the name to the backend's SYN-ACK.
    pub connect: Duration,
    /// Longest quiet spell of a spliced flow.
    pub idle: Duration,
    /// How long a stalled peek waits before Kracauer acknowledges its bytes (zero:
    /// never).
    pub custody: Duration,
}

/// What a flow's timer coming due means.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Expiry {
    /// Not yet: the real deadline is later (the timer is lazy).
    NotYet(Time),
    /// Send the backend SYN again (the connect deadline is still ahead).
    RetransmitSyn,
    /// The backend being tried stayed silent past its attempt: try the next one.
    NextBackend,
    /// A peek stalled with bytes not acknowledged: Kracauer acknowledges them itself.
    TakeCustody,
    /// Custody bytes the backend has not acknowledged go again.
    RetransmitCustody,
    /// The backend did not acknowledge the custody bytes in time: both ends are reset.
    CustodyLost,
    /// The flow ends; `reset` says whether the client gets a RST first (Kracauer is its
    /// endpoint until the splice).
    Finish { outcome: Outcome, reset: bool },
}

/// What a flow holds against the engine's limits.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Usage {
    /// A half-open slot (SYN answered with state, no ACK yet).
    pub half_open: bool,
    /// A slot in its client address's count of flows still peeking.
    pub peeking: bool,
    /// Heap bytes of its peek buffer.
    pub peek_bytes: usize,
}

impl Flow {
    /// A flow whose SYN was just answered.
    pub fn new(protocol: Protocol, now: Time, conn: Conn, phase: Phase) -> Self {
        Self {
            protocol,
            created: now,
            last_seen: now,
            armed: Time::NEVER,
            conn,
            phase,
            peek_end: None,
        }
    }

    /// What this flow holds against the engine's limits, read from its phase.
    pub fn usage(&self) -> Usage {
        match &self.phase {
            Phase::Handshake => Usage {
                half_open: true,
                peeking: true,
                peek_bytes: 0,
            },
            Phase::Peek(p) => Usage {
                half_open: false,
                peeking: true,
                peek_bytes: p.buf.capacity(),
            },
            Phase::Connect(c) => Usage {
                peek_bytes: c.buf.capacity(),
                ..Usage::default()
            },
            Phase::Custody(c) => Usage {
                peek_bytes: c.buf.capacity(),
                ..Usage::default()
            },
            Phase::Spliced(_) | Phase::Refused(_) | Phase::Closing(_) => Usage::default(),
        }
    }

    /// The spliced state, while the flow is spliced or closing.
    pub fn spliced(&self) -> Option<&Spliced> {
        match &self.phase {
            Phase::Spliced(s) => Some(s),
            Phase::Custody(c) => Some(&c.spliced),
            Phase::Closing(c) => Some(&c.spliced),
            _ => None,
        }
    }

    /// The spliced state, while the flow is spliced or closing.
    pub fn spliced_mut(&mut self) -> Option<&mut Spliced> {
        match &mut self.phase {
            Phase::Spliced(s) => Some(s),
            Phase::Custody(c) => Some(&mut c.spliced),
            Phase::Closing(c) => Some(&mut c.spliced),
            _ => None,
        }
    }

    /// The moment this flow next needs attention.
    pub fn deadline(&self, t: &Timeouts) -> Time {
        match &self.phase {
            Phase::Handshake => self.created + t.peek,
            Phase::Peek(p) => (self.created + t.peek).min(p.custody_due(t.custody)),
            Phase::Connect(c) => c
                .retransmit_at
                .min(c.named_at + t.connect)
                .min(c.attempt_until.unwrap_or(Time::NEVER)),
            Phase::Spliced(_) => self.last_seen + t.idle,
            Phase::Custody(c) => (self.last_seen + t.idle).min(c.retransmit_at).min(c.until),
            Phase::Refused(r) => r.until,
            Phase::Closing(c) => c.until,
        }
    }

    /// What the flow's timer coming due at `now` means.
    pub fn expire(&self, now: Time, t: &Timeouts) -> Expiry {
        let deadline = self.deadline(t);
        if deadline > now {
            return Expiry::NotYet(deadline);
        }
        let (outcome, reset) = match &self.phase {
            Phase::Peek(p) if now < self.created + t.peek && p.custody_due(t.custody) <= now => {
                return Expiry::TakeCustody;
            }
            Phase::Handshake | Phase::Peek(_) => (Outcome::PeekTimeout, true),
            Phase::Custody(c) if c.until <= now => return Expiry::CustodyLost,
            Phase::Custody(c) if c.retransmit_at <= now => return Expiry::RetransmitCustody,
            Phase::Custody(_) => (Outcome::IdleTimeout, false),
            Phase::Connect(c) if now < c.named_at + t.connect => {
                if c.attempt_until.is_some_and(|until| until <= now) {
                    return Expiry::NextBackend;
                }
                return Expiry::RetransmitSyn;
            }
            Phase::Connect(_) => (Outcome::ConnectTimeout, true),
            Phase::Spliced(_) => (Outcome::IdleTimeout, false),
            Phase::Refused(r) => (r.refusal.outcome(), false),
            Phase::Closing(c) => (c.outcome, false),
        };
        Expiry::Finish { outcome, reset }
    }

    /// The name and the bytes forwarded each way ([to backend, to client]), for the
    /// access log.
    pub fn into_log(self) -> (Option<HostName>, [u64; 2]) {
        match self.phase {
            Phase::Spliced(s) => (s.name, s.bytes),
            Phase::Custody(c) => (c.spliced.name, c.spliced.bytes),
            Phase::Closing(c) => (c.spliced.name, c.spliced.bytes),
            Phase::Connect(c) => (c.name, [0, 0]),
            Phase::Handshake | Phase::Peek(_) | Phase::Refused(_) => (None, [0, 0]),
        }
    }

    /// Bytes of the client's stream held without a hole, and up to the furthest byte
    /// held (0 outside the phases that hold them).
    pub fn received_lens(&self) -> (u32, u32) {
        let buf = match &self.phase {
            Phase::Peek(p) => &p.buf,
            Phase::Connect(c) => &c.buf,
            _ => return (0, 0),
        };
        (buf.contiguous().len() as u32, buf.held() as u32)
    }

    /// The next client sequence number Kracauer acknowledges as an endpoint (before the
    /// splice): after the SYN and every byte held without a hole.
    pub fn client_ack(&self) -> SeqNumber {
        self.conn.c_isn + 1 + self.received_lens().0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Memory per flow is the product's claim (under 256 bytes per spliced flow, all
    /// included; `examples/flow_memory.rs` measures the whole): the state itself must not
    /// creep up unnoticed. Peeking and connecting data is boxed; the closing state boxes
    /// its spliced state.
    #[test]
    fn flow_state_stays_small() {
        assert!(
            size_of::<Phase>() <= 48,
            "Phase is {} bytes",
            size_of::<Phase>()
        );
        assert!(
            // 104 until each flow carried its prefix (12 bytes, for a prefix change).
            size_of::<Flow>() <= 120,
            "Flow is {} bytes",
            size_of::<Flow>()
        );
    }
}
