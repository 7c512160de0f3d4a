//! The phases after the name: spliced, closing, and refused.
//!
//! A spliced flow is translated packet by packet with its [`Splice`]; FINs and RSTs are
//! tracked both ways (in [`Conn`]), and once both FINs or a RST have passed it lingers as
//! [`Closing`] to translate stragglers. A [`Refused`] flow sent its answer (TLS alert or
//! HTTP 421) with a FIN and only acknowledges the client's close.

use super::Conn;
use crate::base::{Outcome, Protocol};
use crate::name::HostName;
use crate::tcp::seg::SegInfo;
use crate::tcp::splice::Splice;
use crate::time::Time;
use crate::wire::SeqNumber;

/// A spliced flow: how its segments are rewritten, and what the access log reports.
#[derive(Debug)]
pub struct Spliced {
    pub splice: Splice,
    /// TCP payload bytes forwarded: [to backend, to client].
    pub bytes: [u64; 2],
    pub name: Option<HostName>,
}

/// A closing flow: still translated, briefly.
#[derive(Debug)]
pub struct Closing {
    /// Boxed so that the closing state does not make every flow larger.
    pub spliced: Box<Spliced>,
    pub until: Time,
    pub outcome: Outcome,
}

/// A refused flow.
#[derive(Debug, Clone, Copy)]
pub struct Refused {
    /// The client sequence number Kracauer acknowledges (after the peeked bytes).
    pub ack: SeqNumber,
    /// When the flow is forgotten.
    pub until: Time,
    /// The TLS alert record sent (unused for HTTP).
    pub alert: [u8; 7],
    /// Why, which says the answer.
    pub refusal: Refusal,
}

/// Why a flow is answered by Kracauer itself, and with what (architecture.md, The splice,
/// step 3).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refusal {
    /// No route for the name, or no name, and no default backend: TLS
    /// `unrecognized_name`, HTTP `421 Misdirected Request`.
    UnknownName,
    /// Bytes of the protocol that cannot be read to a name (malformed, cut short by the
    /// client's FIN, or naming two different hosts), with no default backend (or
    /// ambiguous): TLS `decode_error`, HTTP `400 Bad Request`.
    Malformed,
    /// A TLS hello with two `server_name` extensions naming different hosts (refused
    /// even with a default): TLS `illegal_parameter`, as OpenSSL answers a duplicate
    /// extension.
    DuplicateExtension,
    /// Longer than Kracauer reads before the name, with no default backend: TLS
    /// `decode_error`, HTTP `431 Request Header Fields Too Large`.
    TooLarge,
}

impl Refusal {
    /// How a refused flow ends, for the access log and the outcome counters.
    pub const fn outcome(self) -> Outcome {
        match self {
            Self::UnknownName => Outcome::UnknownName,
            Self::Malformed | Self::DuplicateExtension | Self::TooLarge => Outcome::Unparsable,
        }
    }
}

/// What a forwarded segment did to a spliced flow.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Forwarded {
    /// The flow goes on.
    Open,
    /// A RST, or the second FIN, passed: the flow should close with this outcome.
    Close(Outcome),
}

impl Spliced {
    /// Counts a segment forwarded to the backend (`to_backend`) or the client, and
    /// records its FIN or RST.
    pub fn forwarded(&mut self, conn: &mut Conn, seg: &SegInfo, to_backend: bool) -> Forwarded {
        self.bytes[usize::from(!to_backend)] += u64::from(seg.payload_len);
        if seg.fin() {
            if to_backend {
                conn.client_fin = true;
            } else {
                conn.backend_fin = true;
            }
        }
        if seg.rst() {
            let outcome = if to_backend {
                Outcome::ClientReset
            } else {
                Outcome::BackendReset
            };
            return Forwarded::Close(outcome);
        }
        if conn.client_fin && conn.backend_fin {
            return Forwarded::Close(Outcome::Closed);
        }
        Forwarded::Open
    }

    /// Both FINs or a RST have passed: linger until `until`, then end with `outcome`.
    pub fn close(self, until: Time, outcome: Outcome) -> Closing {
        Closing {
            spliced: Box::new(self),
            until,
            outcome,
        }
    }
}

/// What to do about a client segment for a refused flow.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RefusedStep {
    /// The client reset, or starts over with a SYN: the flow ends now.
    Finish,
    /// The client closed: acknowledge its FIN.
    AckFin { seq: SeqNumber, ack: SeqNumber },
    /// The client has not seen the answer: send it again.
    Resend,
    /// Nothing to do (the client acknowledged the answer and its FIN).
    Nothing,
}

impl Refused {
    /// Judges a client segment for this refused flow.
    pub fn client_segment(&self, conn: &Conn, protocol: Protocol, seg: &SegInfo) -> RefusedStep {
        if seg.rst() || seg.syn() {
            return RefusedStep::Finish;
        }
        let answer_len = self.answer(protocol).len() as u32;
        let after_our_fin = conn.k_isn + 1 + answer_len + 1;
        if seg.fin() {
            return RefusedStep::AckFin {
                seq: after_our_fin,
                ack: seg.seq + seg.payload_len + 1,
            };
        }
        if seg.ack_flag() && seg.ack == after_our_fin {
            RefusedStep::Nothing
        } else {
            RefusedStep::Resend
        }
    }
}
