//! The packets the engine makes itself, into the caller's [`Output`]: SYN-ACKs and RSTs
//! to clients, refusals, and towards backends the SYN, the ACK of their SYN-ACK with the
//! peeked bytes, and RSTs. Every one is counted as made, or as dropped when the output is
//! full.

use std::net::{Ipv4Addr, Ipv6Addr};

use super::Engine;
use crate::addr::Prefix96;
use crate::base::{BackendKey, ClientKey, DropReason};
use crate::engine::output::Output;
use crate::flow::connect::Handover;
use crate::flow::table::FlowId;
use crate::flow::{Conn, Flow, Phase};
use crate::tcp::emit::{self, Segment};
use crate::tcp::seg::{ClientOptions, SegInfo};
use crate::time::Time;
use crate::wire::build::TcpOptionsSpec;
use crate::wire::tcp::{SeqNumber, flags};

/// Option bytes on every data segment Kracauer sends with timestamps.
const TS_OPTION_LEN: u16 = 12;

impl Engine {
    /// Puts an IPv4 segment from a service address into the output.
    pub(super) fn emit_v4(
        &mut self,
        seg: &Segment<'_>,
        src: Ipv4Addr,
        dst: Ipv4Addr,
        out: &mut Output,
    ) {
        let ident = self.ident();
        match out.push(seg.v4_len(), |b| seg.emit_v4(src, dst, ident, b)) {
            Ok(Ok(())) => self.stats.made += 1,
            Ok(Err(_)) | Err(_) => self.stats.drop(DropReason::OutputFull),
        }
    }

    /// Puts an IPv6 segment from the prefix into the output.
    pub(super) fn emit_v6(
        &mut self,
        seg: &Segment<'_>,
        src: &Ipv6Addr,
        dst: &Ipv6Addr,
        out: &mut Output,
    ) {
        match out.push(seg.v6_len(), |b| seg.emit_v6(src, dst, b)) {
            Ok(Ok(())) => self.stats.made += 1,
            Ok(Err(_)) | Err(_) => self.stats.drop(DropReason::OutputFull),
        }
    }

    /// Sends the SYN-ACK for a client SYN (Kracauer's ISN `k_isn`, its TSval `k_tsval`).
    pub(super) fn send_synack(
        &mut self,
        key: &ClientKey,
        syn: (SeqNumber, u32),
        client: ClientOptions,
        k: (SeqNumber, u32),
        out: &mut Output,
    ) {
        let ((c_isn, client_tsval), (k_isn, k_tsval)) = (syn, k);
        let seg = Segment {
            src_port: key.service_port,
            dst_port: key.client_port,
            seq: k_isn,
            ack: c_isn + 1,
            flags: flags::SYN | flags::ACK,
            window: 65535,
            options: TcpOptionsSpec {
                mss: Some(self.config.mss()),
                window_scale: client.wscale.map(|_| self.config.window_scale),
                sack_permitted: client.sack,
                timestamps: client.timestamps.then_some((k_tsval, client_tsval)),
                sack_blocks: &[],
            },
            payload: &[],
        };
        self.emit_v4(&seg, key.service, key.client, out);
    }

    /// Sends again the SYN-ACK a flow's SYN got.
    pub(super) fn resend_synack(&mut self, key: &ClientKey, conn: &Conn, out: &mut Output) {
        let syn = (conn.c_isn, conn.client_tsval);
        self.send_synack(key, syn, conn.client, (conn.k_isn, conn.k_tsval), out);
    }

    /// RST for a client segment that belongs to no flow, or that a flow cannot accept
    /// (docs/architecture.md, "The splice", step 7).
    pub(super) fn send_rst_to_client(&mut self, key: &ClientKey, seg: &SegInfo, out: &mut Output) {
        let rst = emit::rst_for(
            key.service_port,
            key.client_port,
            seg.seq,
            seg.ack_number(),
            seg.seg_len(),
        );
        self.emit_v4(&rst, key.service, key.client, out);
    }

    /// RST for a backend segment (no flow, or a SYN-ACK for a SYN Kracauer did not send).
    pub(super) fn send_rst_to_backend(
        &mut self,
        prefix: Prefix96,
        key: &BackendKey,
        seg: &SegInfo,
        out: &mut Output,
    ) {
        let rst = emit::rst_for(
            seg.dst_port,
            seg.src_port,
            seg.seq,
            seg.ack_number(),
            seg.seg_len(),
        );
        let src = prefix.embed(key.client);
        self.emit_v6(&rst, &src, &key.backend, out);
    }

    /// RST to the client of flow `id` while Kracauer is its endpoint (before the splice).
    pub(super) fn reset_client(&mut self, id: FlowId, out: &mut Output) {
        let (Some((key, _)), Some(flow)) = (self.flows.keys(id), self.flows.get(id)) else {
            return;
        };
        let seg = Segment {
            src_port: key.service_port,
            dst_port: key.client_port,
            seq: flow.conn.k_isn + 1,
            ack: flow.client_ack(),
            flags: flags::RST | flags::ACK,
            window: 0,
            options: TcpOptionsSpec::default(),
            payload: &[],
        };
        self.emit_v4(&seg, key.service, key.client, out);
    }

    /// Sends (or re-sends) the SYN to the backend, with the client's ISN and options.
    pub(super) fn send_backend_syn(&mut self, id: FlowId, out: &mut Output) {
        let (Some((ck, Some(bk))), Some(flow)) = (self.flows.keys(id), self.flows.get(id)) else {
            return;
        };
        let conn = flow.conn;
        let c = conn.client;
        let seg = Segment {
            src_port: ck.client_port,
            dst_port: bk.backend_port,
            seq: conn.c_isn,
            ack: SeqNumber(0),
            flags: flags::SYN,
            window: conn.client_window,
            options: TcpOptionsSpec {
                mss: Some(c.mss.min(self.config.mss())),
                window_scale: c.wscale,
                sack_permitted: c.sack,
                timestamps: c.timestamps.then_some((conn.client_tsval, 0)),
                sack_blocks: &[],
            },
            payload: &[],
        };
        let src = conn.prefix.embed(ck.client);
        self.emit_v6(&seg, &src, &bk.backend, out);
    }

    /// Timestamps option for a segment Kracauer sends the client itself.
    pub(super) fn client_ts_option(flow: &Flow, now: Time) -> TcpOptionsSpec<'static> {
        let conn = &flow.conn;
        TcpOptionsSpec {
            timestamps: conn.client.timestamps.then(|| {
                (
                    ts_at_least(now.ts_millis(), conn.k_tsval),
                    conn.client_tsval,
                )
            }),
            ..TcpOptionsSpec::default()
        }
    }

    /// Sends a refused flow's answer with FIN (again, when the client retransmits).
    pub(super) fn send_refusal(
        &mut self,
        now: Time,
        id: FlowId,
        key: &ClientKey,
        out: &mut Output,
    ) {
        let Some(flow) = self.flows.get(id) else {
            return;
        };
        let Phase::Refused(r) = &flow.phase else {
            return;
        };
        let (r, seq) = (*r, flow.conn.k_isn + 1);
        let ack = r.ack;
        let options = Self::client_ts_option(flow, now);
        let answer = r.answer(flow.protocol);
        let seg = Segment {
            src_port: key.service_port,
            dst_port: key.client_port,
            seq,
            ack,
            flags: flags::ACK | flags::PSH | flags::FIN,
            window: 0,
            options,
            payload: answer,
        };
        self.emit_v4(&seg, key.service, key.client, out);
    }

    /// ACKs the FIN of a refused flow's client.
    pub(super) fn ack_refused_fin(
        &mut self,
        now: Time,
        id: FlowId,
        key: &ClientKey,
        (seq, ack): (SeqNumber, SeqNumber),
        out: &mut Output,
    ) {
        let Some(flow) = self.flows.get(id) else {
            return;
        };
        let seg = Segment {
            src_port: key.service_port,
            dst_port: key.client_port,
            seq,
            ack,
            flags: flags::ACK,
            window: 0,
            options: Self::client_ts_option(flow, now),
            payload: &[],
        };
        self.emit_v4(&seg, key.service, key.client, out);
    }

    /// The backend's SYN-ACK spliced the flow: ACK it with the peeked bytes, cut to the
    /// backend's MSS and its first window. Returns how many bytes went.
    pub(super) fn send_handover(
        &mut self,
        key: &BackendKey,
        (prefix, c_isn): (Prefix96, SeqNumber),
        synack: &SegInfo,
        h: &Handover,
        out: &mut Output,
    ) -> u32 {
        let src = prefix.embed(key.client);
        let mss = synack.options.mss.unwrap_or(536).min(self.config.mss());
        let ts_len = if h.timestamps.is_some() {
            TS_OPTION_LEN
        } else {
            0
        };
        let per_segment = usize::from(mss.saturating_sub(ts_len).max(1));
        let data = h.buf.contiguous();
        let data = &data[..data.len().min(usize::from(synack.window).max(per_segment))];
        let ack = synack.seq + 1;
        let mut seq = c_isn + 1;
        let mut chunks = data.chunks(per_segment).peekable();
        if chunks.peek().is_none() {
            let s = data_segment(key, (seq, ack), h.window, h.timestamps, &[], false);
            self.emit_v6(&s, &src, &key.backend, out);
        }
        while let Some(chunk) = chunks.next() {
            let last = chunks.peek().is_none();
            let s = data_segment(key, (seq, ack), h.window, h.timestamps, chunk, last);
            self.emit_v6(&s, &src, &key.backend, out);
            seq += chunk.len() as u32;
        }
        data.len() as u32
    }

    /// ACKs a retransmitted backend SYN-ACK (Kracauer's ACK was lost).
    pub(super) fn ack_backend(
        &mut self,
        id: FlowId,
        key: &BackendKey,
        synack: &SegInfo,
        out: &mut Output,
    ) {
        let Some(flow) = self.flows.get(id) else {
            return;
        };
        let conn = flow.conn;
        let timestamps = match (conn.client.timestamps, synack.options.timestamps) {
            (true, Some((b_tsval, _))) => Some((conn.client_tsval, b_tsval)),
            _ => None,
        };
        let s = data_segment(
            key,
            (conn.c_isn + 1, synack.seq + 1),
            conn.client_window,
            timestamps,
            &[],
            false,
        );
        let src = conn.prefix.embed(key.client);
        self.emit_v6(&s, &src, &key.backend, out);
    }
}

/// An ACK (with data, if any) from the client's address to the backend.
pub(super) fn data_segment<'a>(
    key: &BackendKey,
    (seq, ack): (SeqNumber, SeqNumber),
    window: u16,
    timestamps: Option<(u32, u32)>,
    payload: &'a [u8],
    push: bool,
) -> Segment<'a> {
    Segment {
        src_port: key.client_port,
        dst_port: key.backend_port,
        seq,
        ack,
        flags: flags::ACK | if push { flags::PSH } else { 0 },
        window,
        options: TcpOptionsSpec {
            timestamps,
            ..TcpOptionsSpec::default()
        },
        payload,
    }
}

/// `now` unless that would be older than `floor` (in wrapping TCP timestamp order): the
/// client must never see "the server's" clock go backwards (PAWS, RFC 7323 §5).
pub(super) fn ts_at_least(now: u32, floor: u32) -> u32 {
    if (now.wrapping_sub(floor) as i32) < 0 {
        floor
    } else {
        now
    }
}
