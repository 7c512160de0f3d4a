//! The client's segments while Kracauer is its endpoint: the handshake, the peek, and the
//! wait for the backend (DESIGN.md, "The TCP splice", steps 1 to 4).
//!
//! Kracauer answered the SYN itself, so until the splice it plays the server: it checks
//! the client's ACK against its own ISN, takes RSTs only at the sequence it expects
//! (RFC 5961 §3.2), answers a retransmitted SYN with the identical SYN-ACK, and collects
//! the client's first bytes by sequence number without acknowledging them. When the
//! contiguous bytes name the host (or show that nothing will), the step says so and the
//! engine chooses the backend.

use super::connect::{Connect, SynTimers};
use super::spliced::Refused;
use super::{Conn, Flow, Phase};
use crate::base::{DropReason, Outcome, Protocol};
use crate::name::HostName;
use crate::peek::http::{self, HttpHost, HttpPeek, HttpPeeker};
use crate::peek::tls::{self, TlsPeek, TlsPeekConfig};
use crate::route::Candidates;
use crate::tcp::reasm::{Inserted, PeekBuffer};
use crate::tcp::seg::SegInfo;
use crate::time::Time;

/// Peeking: the client's bytes so far.
#[derive(Debug, Default)]
pub struct Peek {
    pub buf: PeekBuffer,
}

/// What the engine lends a flow for one client segment.
#[derive(Debug, Clone, Copy)]
pub struct PeekLimits {
    /// Most bytes one flow peeks at.
    pub cap: usize,
    /// Peek-buffer bytes the engine may still hand out.
    pub budget: usize,
}

/// A client segment's effect while the flow is being set up.
#[derive(Debug, PartialEq, Eq)]
pub struct Setup {
    /// Part of the segment was refused and is counted under this reason (the client
    /// sends it again); the rest of the step still stands.
    pub counted: Option<DropReason>,
    pub step: SetupStep,
}

/// What to do about a client segment while the flow is being set up.
#[derive(Debug, PartialEq, Eq)]
pub enum SetupStep {
    /// Used; nothing to send.
    Consumed,
    /// Dropped and counted.
    Drop(DropReason),
    /// Dropped and counted, and the segment answered with a RST of its own.
    DropWithRst(DropReason),
    /// The client retransmitted its SYN: send the identical SYN-ACK.
    SynAck,
    /// The flow ends; `reset` sends the client a RST first.
    Finish { outcome: Outcome, reset: bool },
    /// The contiguous bytes named the host (`None`: a hello or request without a name).
    Named(Option<HostName>),
}

/// What the peeker made of the bytes so far.
enum Peeked {
    NeedMore,
    Name(Option<HostName>),
    Garbage,
}

impl Flow {
    /// A client segment for a flow in `Handshake`, `Peek` or `Connect`.
    pub fn client_setup(self, seg: &SegInfo, payload: &[u8], limits: PeekLimits) -> (Self, Setup) {
        let Flow {
            protocol,
            created,
            last_seen,
            armed,
            mut conn,
            phase,
        } = self;
        let mut counted = None;
        let (phase, step) = setup_step(
            protocol,
            &mut conn,
            phase,
            seg,
            payload,
            limits,
            &mut counted,
        );
        let flow = Flow {
            protocol,
            created,
            last_seen,
            armed,
            conn,
            phase,
        };
        (flow, Setup { counted, step })
    }
}

fn setup_step(
    protocol: Protocol,
    conn: &mut Conn,
    phase: Phase,
    seg: &SegInfo,
    payload: &[u8],
    limits: PeekLimits,
    counted: &mut Option<DropReason>,
) -> (Phase, SetupStep) {
    use DropReason as D;
    if seg.rst() {
        // RFC 5961 §3.2: only a RST at exactly the next expected sequence resets. Behind
        // a hole (a lost segment) the client's next sequence is not ours: its RST then
        // sits exactly after the furthest byte received.
        let (contiguous, furthest) = held(&phase);
        let base = conn.c_isn + 1;
        if seg.seq == base + contiguous || seg.seq == base + furthest {
            let finish = SetupStep::Finish {
                outcome: Outcome::ClientReset,
                reset: false,
            };
            return (phase, finish);
        }
        return (phase, SetupStep::Drop(D::ClientOutOfWindow));
    }
    if seg.syn() {
        if seg.seq == conn.c_isn && !seg.ack_flag() {
            return (phase, SetupStep::SynAck);
        }
        return (phase, SetupStep::Drop(D::ClientOutOfWindow));
    }
    if !seg.ack_flag() {
        return (phase, SetupStep::Drop(D::ClientBadFlags));
    }
    if seg.ack != conn.k_isn + 1 {
        return (phase, SetupStep::DropWithRst(D::ClientOutOfWindow));
    }
    if let Some((tsval, _)) = seg.options.timestamps {
        if conn.client.timestamps {
            conn.client_tsval = tsval;
        }
    }
    conn.client_window = seg.window;
    let mut phase = match phase {
        // The handshake's ACK: the client is established, and peeking begins.
        Phase::Handshake => Phase::Peek(Box::default()),
        other => other,
    };
    if !payload.is_empty() {
        let offset = (seg.seq - (conn.c_isn + 1)) as i32;
        let (inserted, buf) = match &mut phase {
            Phase::Peek(p) => (insert(&mut p.buf, offset, payload, limits), Some(&p.buf)),
            Phase::Connect(c) => (insert(&mut c.buf, offset, payload, limits), None),
            _ => (Ok(Inserted::Nothing), None),
        };
        match (inserted, buf) {
            (Err(reason), _) => *counted = Some(reason),
            (Ok(Inserted::TooFragmented), _) => *counted = Some(D::ClientPeekHoles),
            // Only a grown prefix gives the peeker anything new to read; while connecting
            // the name is already known.
            (Ok(Inserted::PrefixGrew), Some(buf)) => {
                match peek(protocol, buf.contiguous(), limits.cap) {
                    Peeked::NeedMore => {}
                    Peeked::Garbage => {
                        let finish = SetupStep::Finish {
                            outcome: Outcome::NotRecognised,
                            reset: true,
                        };
                        return (phase, finish);
                    }
                    Peeked::Name(name) => return (phase, SetupStep::Named(name)),
                }
            }
            _ => {}
        }
    }
    if seg.fin() {
        // A FIN right behind every byte the client sent, with the host still not named:
        // it never will be. A FIN behind a hole, or once the name is known, is left to
        // the client to retransmit (it is not acknowledged).
        if let Phase::Peek(p) = &phase {
            let received_end = conn.c_isn + 1 + p.buf.contiguous().len() as u32;
            if seg.seq + seg.payload_len == received_end {
                let finish = SetupStep::Finish {
                    outcome: Outcome::NotRecognised,
                    reset: true,
                };
                return (phase, finish);
            }
        }
    }
    (phase, SetupStep::Consumed)
}

/// Bytes of the client's stream held without a hole, and up to the furthest byte held.
fn held(phase: &Phase) -> (u32, u32) {
    let buf = match phase {
        Phase::Peek(p) => &p.buf,
        Phase::Connect(c) => &c.buf,
        _ => return (0, 0),
    };
    (buf.contiguous().len() as u32, buf.held() as u32)
}

/// Adds client bytes to a peek buffer, unless the engine's peek memory is spent and the
/// buffer would need its first allocation.
fn insert(
    buf: &mut PeekBuffer,
    offset: i32,
    data: &[u8],
    limits: PeekLimits,
) -> Result<Inserted, DropReason> {
    if buf.capacity() == 0 && limits.budget < limits.cap.min(data.len().max(1)) {
        return Err(DropReason::PeekMemory);
    }
    Ok(buf.insert(offset, data, limits.cap))
}

impl Peek {
    /// The name is known and the backend of attempt `attempt` of `candidates` indexed:
    /// wait for it, holding the peeked bytes to send once a backend answers.
    pub fn connect(
        self,
        name: Option<HostName>,
        now: Time,
        (candidates, attempt): (Candidates, usize),
        timers: SynTimers,
    ) -> Connect {
        let mut c = Connect {
            buf: self.buf,
            name,
            named_at: now,
            retransmit_at: now,
            rto: timers.rto,
            candidates,
            attempt,
            attempt_until: None,
        };
        c.begin(attempt, now, timers);
        c
    }

    /// The name has no route and there is no default: answer like a server would (a TLS
    /// `unrecognized_name` alert, or HTTP 421), acknowledging the bytes peeked.
    pub fn refuse(self, conn: &Conn, until: Time) -> Refused {
        let bytes = self.buf.contiguous();
        Refused {
            ack: conn.c_isn + 1 + bytes.len() as u32,
            until,
            alert: tls::unrecognized_name_alert(bytes),
        }
    }
}

impl Refused {
    /// The answer this refusal sends for `protocol`.
    pub fn answer(&self, protocol: Protocol) -> &[u8] {
        match protocol {
            Protocol::Tls => &self.alert,
            Protocol::Http => http::misdirected_response(),
        }
    }
}

/// Runs the peeker for `protocol` over the contiguous bytes.
fn peek(protocol: Protocol, bytes: &[u8], cap: usize) -> Peeked {
    match protocol {
        Protocol::Http => match HttpPeeker::new(cap).peek(bytes) {
            HttpPeek::NeedMore => Peeked::NeedMore,
            HttpPeek::Found {
                host: Some(HttpHost::Name(n)),
            } => Peeked::Name(Some(n)),
            HttpPeek::Found { host: _ } => Peeked::Name(None),
            HttpPeek::NotHttp | HttpPeek::Invalid(_) => Peeked::Garbage,
        },
        Protocol::Tls => match tls::peek(
            bytes,
            &TlsPeekConfig {
                max_hello_bytes: cap,
            },
        ) {
            TlsPeek::NeedMore => Peeked::NeedMore,
            TlsPeek::Found { sni, .. } => Peeked::Name(sni),
            // RFC 6066 forbids address literals in SNI, but some clients send them: route
            // such a hello as one without a name (default backend, or the alert).
            TlsPeek::Invalid(tls::HelloError::AddressLiteral) => Peeked::Name(None),
            TlsPeek::NotTls | TlsPeek::Invalid(_) => Peeked::Garbage,
        },
    }
}
