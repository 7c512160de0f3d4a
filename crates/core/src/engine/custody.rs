//! What the engine sends as the client's endpoint before the splice besides the SYN-ACK
//! (the ACK of bytes in its custody, RFC 5961 challenge ACKs), and the custody of bytes
//! it acknowledged itself until the backend does (docs/architecture.md, "Custody";
//! `flow/custody.rs` has the phase).

use super::Engine;
use super::emit::data_segment;
use crate::base::Outcome;
use crate::engine::output::Output;
use crate::flow::custody::CustodyAck;
use crate::flow::setup::ANNOUNCED_WINDOW;
use crate::flow::table::FlowId;
use crate::flow::{Flow, Phase};
use crate::tcp::emit::Segment;
use crate::time::Time;
use crate::wire::build::TcpOptionsSpec;
use crate::wire::tcp::flags;

/// Most RFC 5961 challenge ACKs per second, all engines together (Linux's
/// `tcp_challenge_ack_limit` was 1000 a second).
pub const CHALLENGE_ACKS_PER_SECOND: u32 = 1000;

impl Engine {
    /// An ACK to the client of flow `id` as its endpoint (handshake, peek, connect): it
    /// acknowledges the bytes in Kracauer's custody (none unless custody was taken), and
    /// keeps the right edge of the window Kracauer announced in its SYN-ACK.
    pub(super) fn send_endpoint_ack(&mut self, now: Time, id: FlowId, out: &mut Output) {
        let (Some((key, _)), Some(flow)) = (self.flows.keys(id), self.flows.get(id)) else {
            return;
        };
        let acked = match &flow.phase {
            Phase::Peek(p) => p.acked,
            Phase::Connect(c) => c.acked,
            _ => 0,
        };
        let edge = ANNOUNCED_WINDOW.max(self.config.peek_cap as u32);
        let bytes = u64::from(edge.saturating_sub(acked));
        let window = match flow.conn.client.wscale {
            // Rounded up, so that the right edge never moves left.
            Some(_) => {
                let ws = u32::from(self.config.window_scale.min(14));
                (bytes + (1 << ws) - 1) >> ws
            }
            None => bytes,
        };
        let seg = Segment {
            src_port: key.service_port,
            dst_port: key.client_port,
            seq: flow.conn.k_isn + 1,
            ack: flow.conn.c_isn + 1 + acked,
            flags: flags::ACK,
            window: window.min(0xffff) as u16,
            options: Self::client_ts_option(flow, now),
            payload: &[],
        };
        self.emit_v4(&seg, key.service, key.client, out);
    }

    /// RFC 5961: a challenge ACK for flow `id`, unless this second's budget is spent.
    pub(super) fn challenge(&mut self, now: Time, id: FlowId, out: &mut Output) {
        if self.shared.take_challenge(now, CHALLENGE_ACKS_PER_SECOND) {
            self.stats.challenge_acks += 1;
            self.send_endpoint_ack(now, id, out);
        } else {
            self.stats.challenge_acks_limited += 1;
        }
    }

    /// A peek stalled with bytes not acknowledged: Kracauer acknowledges the contiguous
    /// ones and takes custody of them.
    pub(super) fn take_custody(&mut self, now: Time, id: FlowId, out: &mut Output) {
        let Some(Flow {
            conn,
            phase: Phase::Peek(p),
            ..
        }) = self.flows.get_mut(id)
        else {
            return;
        };
        p.take_custody(conn);
        self.stats.custody_taken += 1;
        self.send_endpoint_ack(now, id, out);
        self.rearm(id);
    }

    /// Sends custody bytes of flow `id` to its backend: what its window newly lets
    /// through, or (`retransmit`) everything from its last acknowledgement.
    pub(super) fn send_custody(&mut self, id: FlowId, retransmit: bool, out: &mut Output) {
        let Some((ck, Some(bk))) = self.flows.keys(id) else {
            return;
        };
        let Some(Flow {
            conn,
            phase: Phase::Custody(c),
            ..
        }) = self.flows.get_mut(id)
        else {
            return;
        };
        let range = c.to_send(retransmit);
        if range.is_empty() {
            return;
        }
        c.sent = c.sent.max(range.end);
        let (ack, window, timestamps, segment) = (c.ack, c.window, c.timestamps, c.segment);
        let mut seq = conn.c_isn + 1 + range.start;
        // Lent out while the segments are made, so that no byte is copied.
        let buf = core::mem::take(&mut c.buf);
        let src = conn.prefix.embed(ck.client);
        let data = buf
            .contiguous()
            .get(range.start as usize..range.end as usize)
            .unwrap_or(&[]);
        for chunk in data.chunks(usize::from(segment.max(1))) {
            let s = data_segment(&bk, (seq, ack), window, timestamps, chunk, true);
            self.emit_v6(&s, &src, &bk.backend, out);
            seq += chunk.len() as u32;
            if retransmit {
                self.stats.custody_retransmits += 1;
            }
        }
        if let Some(Phase::Custody(c)) = self.flows.get_mut(id).map(|f| &mut f.phase) {
            c.buf = buf;
        }
    }

    /// The custody timer of flow `id` fired: the bytes the backend has not acknowledged
    /// go again, and the next interval doubles.
    pub(super) fn retransmit_custody(&mut self, now: Time, id: FlowId, out: &mut Output) {
        if let Some(Phase::Custody(c)) = self.flows.get_mut(id).map(|f| &mut f.phase) {
            c.back_off(now);
        }
        self.send_custody(id, true, out);
        self.rearm(id);
    }

    /// What a backend segment of flow `id` in custody did, carried out after it was
    /// forwarded: more custody bytes through a window that opened, or the custody over.
    pub(super) fn after_custody_ack(
        &mut self,
        now: Time,
        id: FlowId,
        ack: CustodyAck,
        out: &mut Output,
    ) {
        match ack {
            CustodyAck::Released => {
                // Both FINs may have passed while the custody lasted: then it closes now.
                let until = now + self.config.linger;
                self.step(id, |flow| {
                    let closed = flow.conn.client_fin && flow.conn.backend_fin;
                    let phase = match flow.phase {
                        Phase::Custody(c) if closed => {
                            Phase::Closing(c.release().close(until, Outcome::Closed))
                        }
                        Phase::Custody(c) => Phase::Spliced(c.release()),
                        other => other,
                    };
                    (Flow { phase, ..flow }, ())
                });
                self.fastpath_install(id);
                self.rearm(id);
            }
            CustodyAck::Advanced => {
                self.send_custody(id, false, out);
                self.rearm(id);
            }
            CustodyAck::Unchanged => {}
        }
    }

    /// The backend never acknowledged the custody bytes of flow `id`: both ends are
    /// reset, each at the sequence number it expects next.
    pub(super) fn custody_lost(&mut self, now: Time, id: FlowId, out: &mut Output) {
        let (Some((ck, Some(bk))), Some(flow)) = (self.flows.keys(id), self.flows.get(id)) else {
            return;
        };
        let Phase::Custody(c) = &flow.phase else {
            return;
        };
        let to_client = Segment {
            src_port: ck.service_port,
            dst_port: ck.client_port,
            seq: c.spliced.splice.seq_to_client(c.backend_next),
            ack: c.floor(&flow.conn),
            flags: flags::RST | flags::ACK,
            window: 0,
            options: TcpOptionsSpec::default(),
            payload: &[],
        };
        let to_backend = Segment {
            src_port: ck.client_port,
            dst_port: bk.backend_port,
            seq: flow.conn.c_isn + 1 + c.backend_acked,
            ack: c.ack,
            flags: flags::RST | flags::ACK,
            window: 0,
            options: TcpOptionsSpec::default(),
            payload: &[],
        };
        let src = flow.conn.prefix.embed(ck.client);
        self.emit_v4(&to_client, ck.service, ck.client, out);
        self.emit_v6(&to_backend, &src, &bk.backend, out);
        self.finish(now, id, Outcome::ConnectTimeout);
    }
}
