//! The wait for the backend (docs/architecture.md, "The splice", steps 4 and 5): the SYN sent
//! with the client's own ISN and options, retransmitted with back-off, and the backend's
//! answer. A SYN-ACK that acknowledges the client's ISN fixes the [`Splice`].
//!
//! The client is not committed to a backend until one answers, so a connection holds
//! the backends it may try, in its order ([`Candidates`], from the route's pool). A RST
//! or an ICMPv6 error for the SYN, or silence past the per-attempt deadline, moves it to
//! the next one ([`Connect::fail_over`]): the same SYN (the client's ISN, port and
//! options) goes there, within the one connect deadline counted from the name. Only
//! when no backend is left does the client get its RST.

use core::time::Duration;

use super::Conn;
use super::spliced::Spliced;
use crate::base::DropReason;
use crate::name::HostName;
use crate::route::{Candidate, Candidates};
use crate::tcp::reasm::PeekBuffer;
use crate::tcp::seg::SegInfo;
use crate::tcp::splice::{BackendSynAck, Splice};
use crate::time::Time;

/// Longest interval between two retransmissions of the backend SYN.
pub(crate) const MAX_RTO: Duration = Duration::from_secs(60);

/// Connecting: the peeked bytes to send once a backend answers, the backends to try,
/// and the SYN timers.
#[derive(Debug)]
pub struct Connect {
    pub buf: PeekBuffer,
    pub name: Option<HostName>,
    /// When the name was found (the peek time is `named_at - created`).
    pub named_at: Time,
    /// When the SYN is sent next.
    pub retransmit_at: Time,
    /// The current retransmission interval (doubles).
    pub rto: Duration,
    /// The backends this connection may try, in its order (never empty).
    pub candidates: Candidates,
    /// The one being tried (an index into `candidates`).
    pub attempt: usize,
    /// When the current attempt gives way to the next backend; `None` for the last one,
    /// which has until the connect deadline.
    pub attempt_until: Option<Time>,
}

/// How the SYN timers of a connection run.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SynTimers {
    /// The first retransmission interval of the SYN to one backend.
    pub rto: Duration,
    /// How long one backend has before the next is tried.
    pub attempt: Duration,
}

/// What to do about a backend segment while the backend SYN is outstanding.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ConnectStep {
    /// Dropped and counted.
    Drop(DropReason),
    /// Dropped and counted, and answered with a RST to the backend (its SYN-ACK does
    /// not acknowledge the SYN Kracauer sent).
    DropWithRst(DropReason),
    /// The backend refused the SYN: the client gets a RST and the flow ends.
    Refused,
    /// The backend's SYN-ACK: splice.
    Splice,
}

/// What the engine sends the backend once the flow is spliced: the ACK of its SYN-ACK,
/// with the bytes peeked from the client.
#[derive(Debug)]
pub struct Handover {
    pub buf: PeekBuffer,
    /// (TSval, TSecr) for the segments, when both sides use timestamps.
    pub timestamps: Option<(u32, u32)>,
    /// The window field, in the scale the backend agreed to.
    pub window: u16,
    /// When the name was found.
    pub named_at: Time,
}

impl Connect {
    /// Judges a backend segment for `conn`'s SYN.
    pub fn backend_segment(conn: &Conn, seg: &SegInfo) -> ConnectStep {
        let expected_ack = conn.c_isn + 1;
        if seg.rst() {
            if seg.ack_flag() && seg.ack == expected_ack {
                return ConnectStep::Refused;
            }
            return ConnectStep::Drop(DropReason::BackendUnexpected);
        }
        if !(seg.syn() && seg.ack_flag()) {
            return ConnectStep::Drop(DropReason::BackendUnexpected);
        }
        if seg.ack != expected_ack {
            return ConnectStep::DropWithRst(DropReason::BackendBadSynAck);
        }
        ConnectStep::Splice
    }

    /// The backend answered with `synack`: the flow is spliced. `ws_k` is the window
    /// scale Kracauer announced to the client, `k_tsval` the TSval its next segment to the
    /// client would carry.
    pub fn splice(
        self,
        conn: &Conn,
        synack: &SegInfo,
        ws_k: u8,
        k_tsval: u32,
    ) -> (Spliced, Handover) {
        let backend = BackendSynAck {
            isn: synack.seq,
            wscale: synack.options.window_scale,
            tsval: synack.options.timestamps.map(|t| t.0),
        };
        let splice = Splice::negotiate(conn.k_isn, &conn.client, ws_k, k_tsval, &backend);
        let timestamps = match (conn.client.timestamps, backend.tsval) {
            (true, Some(b_tsval)) => Some((conn.client_tsval, b_tsval)),
            _ => None,
        };
        let handover = Handover {
            buf: self.buf,
            timestamps,
            window: splice.window_to_backend(conn.client_window),
            named_at: self.named_at,
        };
        let spliced = Spliced {
            splice,
            bytes: [0, 0],
            name: self.name,
        };
        (spliced, handover)
    }

    /// The backend being tried.
    pub fn current(&self) -> Option<Candidate> {
        self.candidates.get(self.attempt).copied()
    }

    /// Starts attempt `attempt` at `now`: fresh SYN timers, and a per-attempt deadline
    /// unless it is the last candidate.
    pub fn begin(&mut self, attempt: usize, now: Time, timers: SynTimers) {
        self.attempt = attempt;
        self.rto = timers.rto;
        self.retransmit_at = now + timers.rto;
        self.attempt_until = (attempt + 1 < self.candidates.len()).then(|| now + timers.attempt);
    }

    /// The candidates after the current one, with their indexes: where a failover goes.
    pub fn fail_over(&self) -> impl Iterator<Item = (usize, Candidate)> + '_ {
        self.candidates
            .iter()
            .copied()
            .enumerate()
            .skip(self.attempt + 1)
    }

    /// The SYN timer fired before the connect deadline: the SYN goes again, and the next
    /// interval doubles.
    pub fn back_off(&mut self, now: Time) {
        self.rto = (self.rto * 2).min(MAX_RTO);
        self.retransmit_at = now + self.rto;
    }
}
