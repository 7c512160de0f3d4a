//! The backend side: IPv6 segments towards the prefix. The backend's SYN-ACK fixes the
//! splice; after it, segments are translated for the client.

use std::net::{SocketAddrV4, SocketAddrV6};

use super::client::ts_at_least;
use super::{Engine, RxChecksum, Verdict};
use crate::base::Outcome;
use crate::engine::event::Event;
use crate::engine::output::Output;
use crate::engine::stats::{Direction, DropReason};
use crate::flow::state::{FlowState, Splice};
use crate::flow::table::{BackendKey, FlowId};
use crate::tcp::emit::{self, Segment};
use crate::tcp::seg::SegInfo;
use crate::time::Time;
use crate::wire::tcp::{SeqNumber, TcpPacket, flags};
use crate::wire::{ChecksumForm, Ipv6Packet, ip_proto};
use crate::xlat::{self, HopLimit, V4Rewrite};

/// Option bytes on every data segment Kracauer sends with timestamps.
const TS_OPTION_LEN: u16 = 12;

impl Engine {
    pub(super) fn handle_backend(
        &mut self,
        now: Time,
        buf: &mut [u8],
        start: usize,
        checksum: RxChecksum,
        out: &mut Output,
    ) -> Verdict {
        let Some(packet) = buf.get(start..) else {
            return Verdict::Dropped(DropReason::BackendMalformed);
        };
        let Ok(ip) = Ipv6Packet::new_checked(packet) else {
            return Verdict::Dropped(DropReason::BackendMalformed);
        };
        let Some(client) = self.config.prefix.extract(ip.dst_addr()) else {
            return Verdict::Dropped(DropReason::BackendNotPrefix);
        };
        let Ok(upper) = ip.upper_layer() else {
            return Verdict::Dropped(DropReason::BackendMalformed);
        };
        if upper.fragment.is_some() {
            return Verdict::Dropped(DropReason::BackendMalformed);
        }
        match upper.protocol {
            ip_proto::TCP => {}
            ip_proto::ICMPV6 => return self.backend_icmp(now, packet, out),
            _ => return Verdict::Dropped(DropReason::BackendNotTcp),
        }
        let end = ip.payload_range().end;
        let Some(tcp_bytes) = packet.get(upper.offset..end) else {
            return Verdict::Dropped(DropReason::BackendMalformed);
        };
        let Ok(tcp) = TcpPacket::new_checked(tcp_bytes) else {
            return Verdict::Dropped(DropReason::BackendMalformed);
        };
        let Ok(seg) = SegInfo::parse(&tcp) else {
            return Verdict::Dropped(DropReason::BackendMalformed);
        };
        let key = BackendKey {
            backend: ip.src_addr(),
            backend_port: seg.src_port,
            client,
            client_port: seg.dst_port,
        };
        let Some(id) = self.flows.find_backend(&key) else {
            if !seg.rst() {
                let rst = emit::rst_for(
                    seg.dst_port,
                    seg.src_port,
                    seg.seq,
                    seg.ack_number(),
                    seg.seg_len(),
                );
                let src = ip.dst_addr();
                self.emit_v6(&rst, &src, &key.backend, out);
            }
            return Verdict::Dropped(DropReason::BackendNoFlow);
        };
        // Verified only where Kracauer reads the segment itself (see the client side).
        let connecting = matches!(
            self.flows.get(id).map(|f| &f.state),
            Some(FlowState::Connecting(_))
        );
        let checksum_ok = !connecting
            || !checksum.needs_verifying()
            || tcp.verify_checksum_v6(&ip.src_addr(), &ip.dst_addr());
        let Some(flow) = self.flows.get_mut(id) else {
            return Verdict::Dropped(DropReason::BackendNoFlow);
        };
        flow.last_seen = now;
        match &flow.state {
            FlowState::Connecting(_) if !checksum_ok => {
                Verdict::Dropped(DropReason::BackendMalformed)
            }
            FlowState::Connecting(_) => self.backend_connecting(now, id, key, &seg, out),
            FlowState::Spliced(_) | FlowState::Closing(_) if seg.syn() && seg.ack_flag() => {
                // A retransmitted SYN-ACK: our ACK was lost; ACK it again, never forward it.
                self.ack_backend(id, key, &seg, out);
                Verdict::Consumed
            }
            FlowState::Spliced(_) | FlowState::Closing(_) => self.forward_to_client(
                now,
                id,
                &seg,
                buf,
                start,
                upper.offset,
                ChecksumForm::from(checksum),
            ),
            _ => Verdict::Dropped(DropReason::BackendUnexpected),
        }
    }

    /// A segment while the backend SYN is outstanding: SYN-ACK splices, RST refuses.
    fn backend_connecting(
        &mut self,
        now: Time,
        id: FlowId,
        key: BackendKey,
        seg: &SegInfo,
        out: &mut Output,
    ) -> Verdict {
        let Some(flow) = self.flows.get(id) else {
            return Verdict::Dropped(DropReason::BackendNoFlow);
        };
        let expected_ack = flow.c_isn + 1;
        if seg.rst() {
            if seg.ack_flag() && seg.ack == expected_ack {
                self.reset_client(id, out);
                self.finish(now, id, Outcome::BackendRefused);
                return Verdict::Consumed;
            }
            return Verdict::Dropped(DropReason::BackendUnexpected);
        }
        if !(seg.syn() && seg.ack_flag()) {
            return Verdict::Dropped(DropReason::BackendUnexpected);
        }
        if seg.ack != expected_ack {
            let rst = emit::rst_for(
                seg.dst_port,
                seg.src_port,
                seg.seq,
                seg.ack_number(),
                seg.seg_len(),
            );
            let src = self.config.prefix.embed(key.client);
            self.emit_v6(&rst, &src, &key.backend, out);
            return Verdict::Dropped(DropReason::BackendBadSynAck);
        }
        self.splice(now, id, key, seg, out);
        Verdict::Consumed
    }

    /// The backend's SYN-ACK: fix δ, the timestamp offset and the window scales, ACK it
    /// with the peeked bytes, and from now on translate.
    fn splice(&mut self, now: Time, id: FlowId, key: BackendKey, seg: &SegInfo, out: &mut Output) {
        let ws_k = self.config.window_scale;
        let our_mss = self.config.mss();
        let Some(flow) = self.flows.get_mut(id) else {
            return;
        };
        let FlowState::Connecting(conn) =
            core::mem::replace(&mut flow.state, FlowState::SynReceived)
        else {
            return;
        };
        let b_isn = seg.seq;
        let delta = b_isn - flow.k_isn;
        let client_ts = flow.client.timestamps;
        let backend_ts = seg.options.timestamps;
        // The client's view of "the server's" clock continues from what it saw last.
        let k_base = ts_at_least(now.ts_millis(), flow.k_tsval);
        let ts_offset = match (client_ts, backend_ts) {
            (true, Some((b_tsval, _))) => b_tsval.wrapping_sub(k_base),
            _ => 0,
        };
        let (backend_ws, client_ws, expand) = match (flow.client.wscale, seg.options.wscale) {
            (Some(_), Some(ws_b)) => (ws_b, ws_k, None),
            (Some(ws_c), None) => (0, ws_k, Some(ws_c)),
            (None, _) => (0, 0, None),
        };
        let window = match expand {
            Some(shift) => (u32::from(flow.client_window) << shift).min(0xffff) as u16,
            None => flow.client_window,
        };
        let timestamps = match (client_ts, backend_ts) {
            (true, Some((b_tsval, _))) => Some((flow.client_tsval, b_tsval)),
            _ => None,
        };
        let c_isn = flow.c_isn;
        flow.state = FlowState::Spliced(Splice {
            delta,
            ts_offset,
            backend_ws,
            client_ws,
            expand_client_window: expand,
            client_fin: false,
            backend_fin: false,
            bytes: [0, 0],
            name: conn.name.clone(),
        });
        let peek_time = conn.named_at.saturating_since(flow.created);
        self.peek_bytes = self.peek_bytes.saturating_sub(conn.buf.capacity());

        // ACK plus the peeked bytes, cut to the backend's MSS and its first window.
        let src = self.config.prefix.embed(key.client);
        let mss = seg.options.mss.unwrap_or(536).min(our_mss);
        let per_segment = usize::from(
            mss.saturating_sub(if timestamps.is_some() {
                TS_OPTION_LEN
            } else {
                0
            })
            .max(1),
        );
        let data = conn.buf.contiguous();
        let data = &data[..data.len().min(usize::from(seg.window).max(per_segment))];
        let ack = b_isn + 1;
        let mut seq = c_isn + 1;
        let mut chunks = data.chunks(per_segment).peekable();
        if chunks.peek().is_none() {
            let s = data_segment(key, seq, ack, window, timestamps, &[], false);
            self.emit_v6(&s, &src, &key.backend, out);
        }
        while let Some(chunk) = chunks.next() {
            let last = chunks.peek().is_none();
            let s = data_segment(key, seq, ack, window, timestamps, chunk, last);
            self.emit_v6(&s, &src, &key.backend, out);
            seq += chunk.len() as u32;
        }
        self.stats.spliced += 1;
        if let Some((ck, _)) = self.flows.keys(id) {
            self.push_event(Event::Opened {
                client: SocketAddrV4::new(ck.client, ck.client_port),
                service: SocketAddrV4::new(ck.service, ck.service_port),
                name: conn.name,
                backend: SocketAddrV6::new(key.backend, key.backend_port, 0, 0),
                peek_time,
            });
        }
        self.rearm(id);
    }

    /// ACKs a retransmitted backend SYN-ACK.
    fn ack_backend(&mut self, id: FlowId, key: BackendKey, seg: &SegInfo, out: &mut Output) {
        let Some(flow) = self.flows.get(id) else {
            return;
        };
        let timestamps = match (flow.client.timestamps, seg.options.timestamps) {
            (true, Some((b_tsval, _))) => Some((flow.client_tsval, b_tsval)),
            _ => None,
        };
        let s = data_segment(
            key,
            flow.c_isn + 1,
            seg.seq + 1,
            flow.client_window,
            timestamps,
            &[],
            false,
        );
        let src = self.config.prefix.embed(key.client);
        self.emit_v6(&s, &src, &key.backend, out);
    }

    /// Translates a spliced flow's segment for the client, in place.
    #[allow(clippy::too_many_arguments)]
    fn forward_to_client(
        &mut self,
        now: Time,
        id: FlowId,
        seg: &SegInfo,
        buf: &mut [u8],
        start: usize,
        tcp_offset: usize,
        form: ChecksumForm,
    ) -> Verdict {
        let linger = self.config.linger;
        let ident = self.ident();
        let Some((ck, _)) = self.flows.keys(id) else {
            return Verdict::Dropped(DropReason::BackendNoFlow);
        };
        let Some(flow) = self.flows.get_mut(id) else {
            return Verdict::Dropped(DropReason::BackendNoFlow);
        };
        let timestamps = flow.client.timestamps;
        let splice = match &mut flow.state {
            FlowState::Spliced(s) => s,
            FlowState::Closing(c) => &mut c.splice,
            _ => return Verdict::Dropped(DropReason::BackendUnexpected),
        };
        let (delta, ts_offset, backend_ws, client_ws) = (
            splice.delta,
            splice.ts_offset,
            splice.backend_ws,
            splice.client_ws,
        );
        splice.bytes[1] += u64::from(seg.payload_len);
        let client_seq = seg.seq - delta;
        if seg.fin() {
            splice.backend_fin = true;
        }
        let both_fins = splice.client_fin && splice.backend_fin;

        let payload_len = usize::from(Ipv6Packet::new_unchecked(&buf[start..]).payload_len());
        let end = start + 40 + payload_len;
        let Some(tcp_bytes) = buf.get_mut(start + tcp_offset..end) else {
            return Verdict::Dropped(DropReason::BackendMalformed);
        };
        let mut tcp = TcpPacket::new_unchecked(tcp_bytes);
        tcp.rewrite_seq_number(client_seq, form);
        if timestamps {
            if let (Some(at), Some((tsval, tsecr))) = (seg.timestamps_at, seg.options.timestamps) {
                let _ = tcp.rewrite_timestamps_at(at, tsval.wrapping_sub(ts_offset), tsecr, form);
            }
        }
        if backend_ws != client_ws {
            let bytes = u32::from(seg.window) << backend_ws;
            tcp.rewrite_window_len((bytes >> client_ws).min(0xffff) as u16, form);
        }
        let to = V4Rewrite {
            src: ck.service,
            dst: ck.client,
            src_port: ck.service_port,
            dst_port: ck.client_port,
            identification: ident,
        };
        let opts = xlat::Options {
            checksum: form,
            hop_limit: HopLimit::Keep,
        };
        let range = match xlat::ipv6_to_ipv4(&mut buf[..end], start, &to, opts) {
            Ok(r) => r,
            Err(_) => return Verdict::Dropped(DropReason::TranslationFailed),
        };
        self.stats
            .forwarded(Direction::ToClient, seg.payload_len as usize);
        if seg.rst() || both_fins {
            self.start_closing(
                now,
                id,
                if seg.rst() {
                    Outcome::BackendReset
                } else {
                    Outcome::Closed
                },
                linger,
            );
        }
        Verdict::Forward(range)
    }
}

/// An ACK (with data, if any) from the client's address to the backend.
fn data_segment<'a>(
    key: BackendKey,
    seq: SeqNumber,
    ack: SeqNumber,
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
        options: emit::Options {
            timestamps,
            ..emit::Options::default()
        },
        payload,
    }
}
