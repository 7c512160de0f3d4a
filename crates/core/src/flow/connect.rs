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

use super::custody::Custody;
use super::spliced::Spliced;
use super::{Conn, Phase};
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
    /// Bytes from the start of the stream Kracauer acknowledged itself while peeking
    /// (custody, see `flow/custody.rs`): the splice keeps them until the backend
    /// acknowledges them.
    pub acked: u32,
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

/// What a splice needs to take custody of bytes Kracauer acknowledged while peeking.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CustodyTimers {
    /// The moment the backend's SYN-ACK arrived.
    pub now: Time,
    /// The largest MSS Kracauer sends (the IPv6 MTU's).
    pub mss: u16,
    /// The first retransmission interval of the backend SYN (the ceiling of custody's
    /// first interval).
    pub first_rto: Duration,
    /// How long the backend has to acknowledge the custody bytes.
    pub give_up: Duration,
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

    /// The backend answered with `synack`: the flow is spliced ([`Phase::Spliced`], or
    /// [`Phase::Custody`] when Kracauer acknowledged some of the peeked bytes itself).
    /// `ws_k` is the window scale Kracauer announced to the client, `k_tsval` the TSval
    /// its next segment to the client would carry.
    pub fn splice(
        self,
        conn: &Conn,
        synack: &SegInfo,
        (ws_k, k_tsval): (u8, u32),
        custody: CustodyTimers,
    ) -> (Phase, Handover) {
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
        let window = splice.window_to_backend(conn.client_window);
        let spliced = Spliced {
            splice,
            bytes: [0, 0],
            name: self.name,
        };
        if self.acked == 0 {
            let handover = Handover {
                buf: self.buf,
                timestamps,
                window,
                named_at: self.named_at,
            };
            return (Phase::Spliced(spliced), handover);
        }
        // The SYN's round trip, from its last transmission (Karn's rule is moot: the
        // estimate only bounds the first interval from above and below).
        let sent_at = Time::from_micros(
            self.retransmit_at
                .as_micros()
                .saturating_sub(self.rto.as_micros() as u64),
        );
        let rto = Custody::first_rto(custody.now.saturating_since(sent_at), custody.first_rto);
        let ts_len = if timestamps.is_some() { 12 } else { 0 };
        let mss = synack.options.mss.unwrap_or(536).min(custody.mss);
        let handover = Handover {
            buf: self.buf.clone(),
            timestamps,
            window,
            named_at: self.named_at,
        };
        let custody = Custody {
            spliced,
            buf: self.buf,
            acked: self.acked,
            backend_acked: 0,
            sent: 0,
            backend_window: u32::from(synack.window),
            retransmit_at: custody.now + rto,
            rto,
            until: custody.now + custody.give_up,
            ack: synack.seq + 1,
            window,
            timestamps,
            segment: mss.saturating_sub(ts_len).max(1),
            backend_next: synack.seq + 1,
        };
        (Phase::Custody(Box::new(custody)), handover)
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
