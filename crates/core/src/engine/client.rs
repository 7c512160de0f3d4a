//! The client side: IPv4 segments to a service address. New connections (SYN, cookie
//! ACK), the handshake, the peek, refusal, and forwarding of spliced flows to backends.

use core::time::Duration;

use super::{Engine, RxChecksum, Verdict};
use crate::base::Outcome;
use crate::base::Protocol;
use crate::engine::output::Output;
use crate::engine::stats::{Direction, DropReason};
use crate::flow::state::{ClientOptions, Closing, Connecting, Flow, FlowState, Refused};
use crate::flow::table::{BackendKey, ClientKey, FlowId, TableError};
use crate::name::HostName;
use crate::peek::http::{HttpHost, HttpPeek, HttpPeeker};
use crate::peek::tls::{self, TlsPeek, TlsPeekConfig};
use crate::tcp::emit::{self, Segment};
use crate::tcp::isn::{cookie_options_from_tsecr, cookie_tsval};
use crate::tcp::reasm::{Inserted, PeekBuffer};
use crate::tcp::seg::SegInfo;
use crate::time::Time;
use crate::wire::tcp::{SeqNumber, TcpPacket, flags};
use crate::wire::{ChecksumForm, Ipv4Packet, ip_proto};
use crate::xlat::{self, HopLimit, V6Rewrite};

/// What the peeker made of the bytes so far.
enum Peeked {
    NeedMore,
    Name(Option<HostName>),
    Garbage,
}

impl Engine {
    pub(super) fn handle_client(
        &mut self,
        now: Time,
        buf: &mut [u8],
        start: usize,
        checksum: RxChecksum,
        out: &mut Output,
    ) -> Verdict {
        let Some(packet) = buf.get(start..) else {
            return Verdict::Dropped(DropReason::ClientMalformed);
        };
        let Ok(ip) = Ipv4Packet::new_checked(packet) else {
            return Verdict::Dropped(DropReason::ClientMalformed);
        };
        let (client, service) = (ip.src_addr(), ip.dst_addr());
        if !self.config.is_service_address(service) {
            return Verdict::Dropped(DropReason::ClientNotService);
        }
        match ip.protocol() {
            ip_proto::TCP => {}
            ip_proto::ICMP => return self.client_icmp(packet, out),
            _ => return Verdict::Dropped(DropReason::ClientNotService),
        }
        if ip.is_fragment() {
            return Verdict::Dropped(DropReason::ClientFragment);
        }
        let Ok(tcp) = TcpPacket::new_checked(ip.payload()) else {
            return Verdict::Dropped(DropReason::ClientMalformed);
        };
        let Ok(seg) = SegInfo::parse(&tcp) else {
            return Verdict::Dropped(DropReason::ClientMalformed);
        };
        let key = ClientKey {
            client,
            client_port: seg.src_port,
            service,
            service_port: seg.dst_port,
        };
        let Some(protocol) = self.config.protocol(service, seg.dst_port) else {
            if !seg.rst() {
                self.send_rst_to_client(&key, &seg, out);
            }
            return Verdict::Dropped(DropReason::ClientNotService);
        };
        // The checksum is verified only on segments Kracauer reads itself: a forwarded
        // segment keeps its checksum through incremental updates, so a corrupt one stays
        // corrupt and the receiver drops it, and summing its payload would cost more than
        // the whole translation.
        let id = self.flows.find_client(&key);
        let forwarding = id
            .and_then(|id| self.flows.get(id))
            .is_some_and(|f| match f.state {
                FlowState::Spliced(_) => true,
                FlowState::Closing(_) => !seg.syn() || seg.ack_flag(),
                _ => false,
            });
        let checksum_ok =
            forwarding || !checksum.needs_verifying() || tcp.verify_checksum_v4(client, service);
        let payload_start = start + ip.header_len() + seg.payload_offset;
        let payload = payload_start..payload_start + seg.payload_len as usize;

        if !forwarding && seg.syn() && (seg.rst() || seg.fin()) {
            // Where Kracauer is the endpoint, SYN+RST and SYN+FIN mean nothing but a
            // scanner's probe; spliced flows leave the judgement to the backend.
            return Verdict::Dropped(DropReason::ClientBadFlags);
        }
        // A new SYN on a closing tuple starts fresh: the old flow ends here.
        let id = match id {
            Some(id) if seg.syn() && !seg.ack_flag() => {
                match self.flows.get(id).map(|f| &f.state) {
                    Some(FlowState::Closing(c)) => {
                        let outcome = c.outcome;
                        self.finish(now, id, outcome);
                        None
                    }
                    _ => Some(id),
                }
            }
            other => other,
        };
        let Some(id) = id else {
            return self.client_without_flow(
                now,
                key,
                protocol,
                &seg,
                checksum_ok,
                buf,
                payload,
                out,
            );
        };
        let Some(flow) = self.flows.get_mut(id) else {
            return Verdict::Dropped(DropReason::ClientNoFlow);
        };
        match &flow.state {
            FlowState::Spliced(_) | FlowState::Closing(_) => {
                flow.last_seen = now;
                self.forward_to_backend(
                    now,
                    id,
                    key,
                    &seg,
                    buf,
                    start,
                    ChecksumForm::from(checksum),
                )
            }
            _ if !checksum_ok => Verdict::Dropped(DropReason::ClientBadChecksum),
            FlowState::Refused(_) => self.client_refused(now, id, key, &seg, out),
            FlowState::SynReceived | FlowState::Peeking(_) | FlowState::Connecting(_) => {
                flow.last_seen = now;
                self.client_handshake(now, id, key, &seg, buf, payload, out)
            }
        }
    }

    /// A segment for no known flow: a SYN starts one, an ACK may carry a valid cookie,
    /// anything else is answered with RST.
    #[allow(clippy::too_many_arguments)]
    fn client_without_flow(
        &mut self,
        now: Time,
        key: ClientKey,
        protocol: Protocol,
        seg: &SegInfo,
        checksum_ok: bool,
        buf: &[u8],
        payload: core::ops::Range<usize>,
        out: &mut Output,
    ) -> Verdict {
        if seg.rst() {
            return Verdict::Dropped(DropReason::ClientNoFlow);
        }
        if !checksum_ok {
            return Verdict::Dropped(DropReason::ClientBadChecksum);
        }
        if seg.syn() {
            if seg.ack_flag() || seg.fin() {
                return Verdict::Dropped(DropReason::ClientBadFlags);
            }
            return self.client_syn(now, key, protocol, seg, out);
        }
        if seg.ack_flag() && !seg.fin() {
            if let Some(verdict) =
                self.client_cookie_ack(now, key, protocol, seg, buf, payload, out)
            {
                return verdict;
            }
        }
        self.send_rst_to_client(&key, seg, out);
        Verdict::Dropped(DropReason::ClientNoFlow)
    }

    /// A SYN for a new flow: state and a SYN-ACK, or, past the half-open bound, a cookie.
    fn client_syn(
        &mut self,
        now: Time,
        key: ClientKey,
        protocol: Protocol,
        seg: &SegInfo,
        out: &mut Output,
    ) -> Verdict {
        let peeking = self.peeking.get(&key.client).copied().unwrap_or(0);
        if peeking >= self.config.max_peeking_per_client {
            return Verdict::Dropped(DropReason::ClientPeekLimit);
        }
        let o = seg.options;
        let client = ClientOptions {
            mss: o.mss.unwrap_or(536),
            wscale: o.wscale,
            sack: o.sack_permitted,
            timestamps: o.timestamps.is_some(),
        };
        let client_tsval = o.timestamps.map_or(0, |t| t.0);
        if self.half_open >= self.config.max_half_open || self.flows.len() >= self.flows.capacity()
        {
            // SYN cookie: no state. Without timestamps to carry them, a cookie SYN-ACK
            // offers no window scaling and no SACK (as Linux does).
            let (cookie, mss) = self.isn.cookie(&key, seg.seq.0, client.mss, now);
            let (client, tsval) = match o.timestamps {
                Some(_) => (
                    ClientOptions { mss, ..client },
                    cookie_tsval(now.ts_millis(), o.wscale, o.sack_permitted),
                ),
                None => (
                    ClientOptions {
                        mss,
                        wscale: None,
                        sack: false,
                        timestamps: false,
                    },
                    0,
                ),
            };
            self.stats.cookies_sent += 1;
            self.send_synack(
                &key,
                SeqNumber(cookie),
                seg.seq,
                client,
                tsval,
                client_tsval,
                out,
            );
            return Verdict::Consumed;
        }
        let k_isn = SeqNumber(self.isn.isn(&key, now));
        let k_tsval = now.ts_millis();
        let flow = Flow {
            state: FlowState::SynReceived,
            protocol,
            created: now,
            last_seen: now,
            armed: Time::NEVER,
            c_isn: seg.seq,
            k_isn,
            client,
            client_tsval,
            k_tsval,
            client_window: seg.window,
        };
        let id = match self.flows.insert(key, flow) {
            Ok(id) => id,
            Err(_) => return Verdict::Dropped(DropReason::FlowTableFull),
        };
        self.half_open += 1;
        *self.peeking.entry(key.client).or_insert(0) += 1;
        self.send_synack(&key, k_isn, seg.seq, client, k_tsval, client_tsval, out);
        self.rearm(id);
        Verdict::Consumed
    }

    /// An ACK for no flow: if it carries a valid cookie, the flow starts here, peeking.
    #[allow(clippy::too_many_arguments)]
    fn client_cookie_ack(
        &mut self,
        now: Time,
        key: ClientKey,
        protocol: Protocol,
        seg: &SegInfo,
        buf: &[u8],
        payload: core::ops::Range<usize>,
        out: &mut Output,
    ) -> Option<Verdict> {
        let c_isn = seg.seq - 1;
        let k_isn = seg.ack - 1;
        let mss = self.isn.check_cookie(&key, c_isn.0, k_isn.0, now)?;
        let client = match seg.options.timestamps {
            Some((_, tsecr)) => {
                let o = cookie_options_from_tsecr(tsecr, mss);
                ClientOptions {
                    mss,
                    wscale: o.wscale,
                    sack: o.sack_permitted,
                    timestamps: true,
                }
            }
            None => ClientOptions {
                mss,
                wscale: None,
                sack: false,
                timestamps: false,
            },
        };
        if self.peeking.get(&key.client).copied().unwrap_or(0) >= self.config.max_peeking_per_client
        {
            return Some(Verdict::Dropped(DropReason::ClientPeekLimit));
        }
        let flow = Flow {
            state: FlowState::Peeking(Box::default()),
            protocol,
            created: now,
            last_seen: now,
            armed: Time::NEVER,
            c_isn,
            k_isn,
            client,
            client_tsval: seg.options.timestamps.map_or(0, |t| t.0),
            k_tsval: seg.options.timestamps.map_or(0, |t| t.1),
            client_window: seg.window,
        };
        let id = match self.flows.insert(key, flow) {
            Ok(id) => id,
            Err(_) => return Some(Verdict::Dropped(DropReason::FlowTableFull)),
        };
        self.stats.cookies_accepted += 1;
        *self.peeking.entry(key.client).or_insert(0) += 1;
        self.rearm(id);
        if seg.payload_len > 0 {
            self.peek_data(now, id, key, seg, &buf[payload], out);
        }
        Some(Verdict::Consumed)
    }

    /// A segment while the flow is being set up (SynReceived, Peeking, Connecting).
    #[allow(clippy::too_many_arguments)]
    fn client_handshake(
        &mut self,
        now: Time,
        id: FlowId,
        key: ClientKey,
        seg: &SegInfo,
        buf: &[u8],
        payload: core::ops::Range<usize>,
        out: &mut Output,
    ) -> Verdict {
        let Some(flow) = self.flows.get_mut(id) else {
            return Verdict::Dropped(DropReason::ClientNoFlow);
        };
        if seg.rst() {
            // RFC 5961 §3.2: only a RST at exactly the next expected sequence resets.
            // Behind a hole (a lost segment) the client's next sequence is not ours: its
            // RST then sits exactly after the furthest byte received.
            let base = flow.c_isn + 1;
            let (contiguous, furthest) = self.received_lens(id);
            if seg.seq == base + contiguous || seg.seq == base + furthest {
                self.finish(now, id, Outcome::ClientReset);
                return Verdict::Consumed;
            }
            return Verdict::Dropped(DropReason::ClientOutOfWindow);
        }
        if seg.syn() {
            if seg.seq == flow.c_isn && !seg.ack_flag() {
                // A retransmitted SYN gets the identical SYN-ACK.
                let (k_isn, c_isn, client, k_tsval, client_tsval) = (
                    flow.k_isn,
                    flow.c_isn,
                    flow.client,
                    flow.k_tsval,
                    flow.client_tsval,
                );
                self.send_synack(&key, k_isn, c_isn, client, k_tsval, client_tsval, out);
                return Verdict::Consumed;
            }
            return Verdict::Dropped(DropReason::ClientOutOfWindow);
        }
        if !seg.ack_flag() {
            return Verdict::Dropped(DropReason::ClientBadFlags);
        }
        if seg.ack != flow.k_isn + 1 {
            self.send_rst_to_client(&key, seg, out);
            return Verdict::Dropped(DropReason::ClientOutOfWindow);
        }
        if let Some((tsval, _)) = seg.options.timestamps {
            if flow.client.timestamps {
                flow.client_tsval = tsval;
            }
        }
        flow.client_window = seg.window;
        if matches!(flow.state, FlowState::SynReceived) {
            flow.state = FlowState::Peeking(Box::default());
            self.half_open = self.half_open.saturating_sub(1);
        }
        if seg.payload_len > 0 {
            self.peek_data(now, id, key, seg, &buf[payload], out);
        }
        if seg.fin() {
            // A FIN right behind every byte the client sent, with the host still not
            // named: it never will be. A FIN behind a hole, or once the name is known,
            // is left to the client to retransmit (it is not acknowledged).
            if let Some(Flow {
                state: FlowState::Peeking(p),
                c_isn,
                ..
            }) = self.flows.get(id)
            {
                let received_end = *c_isn + 1 + p.buf.contiguous().len() as u32;
                if seg.seq + seg.payload_len == received_end {
                    self.reset_client(id, out);
                    self.finish(now, id, Outcome::NotRecognised);
                }
            }
        }
        Verdict::Consumed
    }

    /// Bytes of the peek buffer without a hole, and up to the furthest byte held.
    fn received_lens(&self, id: FlowId) -> (u32, u32) {
        let buf = match self.flows.get(id).map(|f| &f.state) {
            Some(FlowState::Peeking(p)) => &p.buf,
            Some(FlowState::Connecting(c)) => &c.buf,
            _ => return (0, 0),
        };
        (buf.contiguous().len() as u32, buf.held() as u32)
    }

    fn contiguous_len(&self, id: FlowId) -> u32 {
        match self.flows.get(id).map(|f| &f.state) {
            Some(FlowState::Peeking(p)) => p.buf.contiguous().len() as u32,
            Some(FlowState::Connecting(c)) => c.buf.contiguous().len() as u32,
            _ => 0,
        }
    }

    /// Adds client bytes to the peek buffer and, when the contiguous prefix grew, asks the
    /// peeker; a name leads to the backend, garbage to a RST, an unknown name to a refusal.
    fn peek_data(
        &mut self,
        now: Time,
        id: FlowId,
        key: ClientKey,
        seg: &SegInfo,
        data: &[u8],
        out: &mut Output,
    ) {
        let cap = self.config.peek_cap;
        let budget_left = self.config.max_peek_bytes.saturating_sub(self.peek_bytes);
        let Some(flow) = self.flows.get_mut(id) else {
            return;
        };
        let offset = (seg.seq - (flow.c_isn + 1)) as i32;
        let buf: &mut PeekBuffer = match &mut flow.state {
            FlowState::Peeking(p) => &mut p.buf,
            FlowState::Connecting(c) => &mut c.buf,
            _ => return,
        };
        let before = buf.capacity();
        if before == 0 && budget_left < cap.min(data.len().max(1)) {
            self.stats.drop(DropReason::PeekMemory);
            return;
        }
        let inserted = buf.insert(offset, data, cap);
        let after = buf.capacity();
        let connecting = matches!(flow.state, FlowState::Connecting(_));
        let protocol = flow.protocol;
        self.peek_bytes = self.peek_bytes + after - before.min(after);
        match inserted {
            Inserted::TooFragmented => self.stats.drop(DropReason::ClientPeekHoles),
            Inserted::PrefixGrew if !connecting => {
                let Some(FlowState::Peeking(p)) = self.flows.get(id).map(|f| &f.state) else {
                    return;
                };
                match peek(protocol, p.buf.contiguous(), cap) {
                    Peeked::NeedMore => {}
                    Peeked::Garbage => {
                        self.reset_client(id, out);
                        self.finish(now, id, Outcome::NotRecognised);
                    }
                    Peeked::Name(name) => self.choose_backend(now, id, key, name, out),
                }
            }
            _ => {}
        }
    }

    /// The name is known: connect to its backend, or refuse.
    fn choose_backend(
        &mut self,
        now: Time,
        id: FlowId,
        key: ClientKey,
        name: Option<HostName>,
        out: &mut Output,
    ) {
        let Some(route) = self.routes.lookup_or_default(name.as_ref()) else {
            self.refuse(now, id, key, out);
            return;
        };
        let bk = BackendKey {
            backend: route.backend(),
            backend_port: route.backend_port(key.service_port),
            client: key.client,
            client_port: key.client_port,
        };
        if let Err(e) = self.flows.index_backend(id, bk) {
            if e == TableError::BackendTupleTaken {
                self.stats.drop(DropReason::TupleCollision);
            }
            self.reset_client(id, out);
            self.finish(now, id, Outcome::Limited);
            return;
        }
        let rto = self.config.syn_retransmit;
        let Some(flow) = self.flows.get_mut(id) else {
            return;
        };
        let FlowState::Peeking(p) = core::mem::replace(&mut flow.state, FlowState::SynReceived)
        else {
            return;
        };
        flow.state = FlowState::Connecting(Box::new(Connecting {
            buf: p.buf,
            name,
            named_at: now,
            retransmit_at: now + rto,
            rto,
        }));
        self.uncount_peeking(key.client);
        self.send_backend_syn(id, out);
        self.rearm(id);
    }

    /// Sends (or re-sends) the SYN to the backend, with the client's ISN and options.
    pub(super) fn send_backend_syn(&mut self, id: FlowId, out: &mut Output) {
        let Some((ck, Some(bk))) = self.flows.keys(id) else {
            return;
        };
        let Some(flow) = self.flows.get(id) else {
            return;
        };
        let c = flow.client;
        let seg = Segment {
            src_port: ck.client_port,
            dst_port: bk.backend_port,
            seq: flow.c_isn,
            ack: SeqNumber(0),
            flags: flags::SYN,
            window: flow.client_window,
            options: emit::Options {
                mss: Some(c.mss.min(self.config.mss())),
                wscale: c.wscale,
                sack_permitted: c.sack,
                timestamps: c.timestamps.then_some((flow.client_tsval, 0)),
            },
            payload: &[],
        };
        let src = self.config.prefix.embed(ck.client);
        self.emit_v6(&seg, &src, &bk.backend, out);
    }

    /// The SYN timer fired before the connect deadline: send it again, back off.
    pub(super) fn retransmit_backend_syn(&mut self, now: Time, id: FlowId, out: &mut Output) {
        if let Some(Flow {
            state: FlowState::Connecting(c),
            ..
        }) = self.flows.get_mut(id)
        {
            c.rto = (c.rto * 2).min(Duration::from_secs(60));
            c.retransmit_at = now + c.rto;
        }
        self.send_backend_syn(id, out);
    }

    /// Refuses an unknown name: TLS alert or HTTP 421, with FIN, acknowledging what the
    /// client sent.
    fn refuse(&mut self, now: Time, id: FlowId, key: ClientKey, out: &mut Output) {
        let linger = self.config.linger;
        let ack_len = self.contiguous_len(id);
        let Some(flow) = self.flows.get_mut(id) else {
            return;
        };
        let ack = flow.c_isn + 1 + ack_len;
        let alert = match &flow.state {
            FlowState::Peeking(p) => tls::unrecognized_name_alert(p.buf.contiguous()),
            _ => tls::unrecognized_name_alert(&[]),
        };
        let refused = Refused {
            ack,
            until: now + linger,
            alert,
        };
        let prev = core::mem::replace(&mut flow.state, FlowState::Refused(refused));
        let released = match prev {
            FlowState::Peeking(p) => p.buf.capacity(),
            _ => 0,
        };
        self.peek_bytes = self.peek_bytes.saturating_sub(released);
        self.uncount_peeking(key.client);
        self.send_refusal(now, id, key, out);
        self.rearm(id);
    }

    /// Sends the refusal answer with FIN (again, when the client retransmits).
    fn send_refusal(&mut self, now: Time, id: FlowId, key: ClientKey, out: &mut Output) {
        let Some(flow) = self.flows.get(id) else {
            return;
        };
        let FlowState::Refused(r) = &flow.state else {
            return;
        };
        let (alert, ack, seq, protocol) = (r.alert, r.ack, flow.k_isn + 1, flow.protocol);
        let options = self.client_ts_option(flow, now);
        let answer: &[u8] = match protocol {
            Protocol::Tls => &alert,
            Protocol::Http => crate::peek::http::misdirected_response(),
        };
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

    /// A segment for a refused flow: ACK its FIN, repeat the answer, or forget it on RST.
    fn client_refused(
        &mut self,
        now: Time,
        id: FlowId,
        key: ClientKey,
        seg: &SegInfo,
        out: &mut Output,
    ) -> Verdict {
        if seg.rst() || seg.syn() {
            self.finish(now, id, Outcome::UnknownName);
            if seg.syn() {
                // A new SYN on a closing tuple starts fresh.
                if let Some(protocol) = self.config.protocol(key.service, key.service_port) {
                    return self.client_syn(now, key, protocol, seg, out);
                }
            }
            return Verdict::Consumed;
        }
        let Some(flow) = self.flows.get(id) else {
            return Verdict::Consumed;
        };
        let answer_len = match &flow.state {
            FlowState::Refused(r) if flow.protocol == Protocol::Tls => r.alert.len(),
            _ => crate::peek::http::misdirected_response().len(),
        } as u32;
        let our_fin_acked = seg.ack_flag() && seg.ack == flow.k_isn + 1 + answer_len + 1;
        if seg.fin() {
            let seg_out = Segment {
                src_port: key.service_port,
                dst_port: key.client_port,
                seq: flow.k_isn + 1 + answer_len + 1,
                ack: seg.seq + seg.payload_len + 1,
                flags: flags::ACK,
                window: 0,
                options: self.client_ts_option(flow, now),
                payload: &[],
            };
            self.emit_v4(&seg_out, key.service, key.client, out);
        } else if !our_fin_acked {
            self.send_refusal(now, id, key, out);
        }
        Verdict::Consumed
    }

    /// Translates a spliced flow's segment for the backend, in place.
    #[allow(clippy::too_many_arguments)]
    fn forward_to_backend(
        &mut self,
        now: Time,
        id: FlowId,
        key: ClientKey,
        seg: &SegInfo,
        buf: &mut [u8],
        start: usize,
        form: ChecksumForm,
    ) -> Verdict {
        let linger = self.config.linger;
        let Some((_, Some(bk))) = self.flows.keys(id) else {
            return Verdict::Dropped(DropReason::ClientNoFlow);
        };
        let Some(flow) = self.flows.get_mut(id) else {
            return Verdict::Dropped(DropReason::ClientNoFlow);
        };
        let splice = match &mut flow.state {
            FlowState::Spliced(s) => s,
            FlowState::Closing(c) => &mut c.splice,
            _ => return Verdict::Dropped(DropReason::ClientNoFlow),
        };
        let (delta, ts_offset, expand) =
            (splice.delta, splice.ts_offset, splice.expand_client_window);
        let timestamps = flow.client.timestamps && ts_offset != u32::MAX;
        splice.bytes[0] += u64::from(seg.payload_len);
        if seg.fin() {
            splice.client_fin = true;
        }
        let both_fins = splice.client_fin && splice.backend_fin;
        let rst = seg.rst();

        let ip_hl = usize::from(buf.get(start).map_or(5, |b| b & 0x0f)) * 4;
        let tcp_start = start + ip_hl;
        let total = Ipv4Packet::new_unchecked(&buf[start..]).total_len() as usize;
        let Some(tcp_bytes) = buf.get_mut(tcp_start..start + total) else {
            return Verdict::Dropped(DropReason::ClientMalformed);
        };
        let mut tcp = TcpPacket::new_unchecked(tcp_bytes);
        if seg.ack_flag() {
            tcp.rewrite_ack_number(seg.ack + delta, form);
        }
        if seg.sack && tcp.shift_sack_edges(delta, form).is_err() {
            return Verdict::Dropped(DropReason::ClientMalformed);
        }
        if timestamps {
            if let (Some(at), Some((tsval, tsecr))) = (seg.timestamps_at, seg.options.timestamps) {
                let _ = tcp.rewrite_timestamps_at(at, tsval, tsecr.wrapping_add(ts_offset), form);
            }
        }
        if let Some(shift) = expand {
            let w = (u32::from(seg.window) << shift).min(0xffff) as u16;
            tcp.rewrite_window_len(w, form);
        }
        let to = V6Rewrite {
            src: self.config.prefix.embed(key.client),
            dst: bk.backend,
            src_port: key.client_port,
            dst_port: bk.backend_port,
        };
        let opts = xlat::Options {
            checksum: form,
            hop_limit: HopLimit::Keep,
        };
        let range = match xlat::ipv4_to_ipv6(&mut buf[..start + total], start, &to, opts) {
            Ok(r) => r,
            Err(_) => return Verdict::Dropped(DropReason::TranslationFailed),
        };
        self.stats
            .forwarded(Direction::ToBackend, seg.payload_len as usize);
        if rst || both_fins {
            self.start_closing(
                now,
                id,
                if rst {
                    Outcome::ClientReset
                } else {
                    Outcome::Closed
                },
                linger,
            );
        }
        Verdict::Forward(range)
    }

    /// Moves a spliced flow to Closing (idempotent).
    pub(super) fn start_closing(
        &mut self,
        now: Time,
        id: FlowId,
        outcome: Outcome,
        linger: Duration,
    ) {
        let Some(flow) = self.flows.get_mut(id) else {
            return;
        };
        if matches!(flow.state, FlowState::Spliced(_)) {
            let FlowState::Spliced(splice) =
                core::mem::replace(&mut flow.state, FlowState::SynReceived)
            else {
                return;
            };
            flow.state = FlowState::Closing(Closing {
                splice: Box::new(splice),
                until: now + linger,
                outcome,
            });
            self.rearm(id);
        }
    }

    /// Timestamps option for a segment Kracauer sends the client itself.
    fn client_ts_option(&self, flow: &Flow, now: Time) -> emit::Options {
        emit::Options {
            timestamps: flow.client.timestamps.then(|| {
                (
                    ts_at_least(now.ts_millis(), flow.k_tsval),
                    flow.client_tsval,
                )
            }),
            ..emit::Options::default()
        }
    }

    /// Sends the SYN-ACK for a client SYN.
    #[allow(clippy::too_many_arguments)]
    fn send_synack(
        &mut self,
        key: &ClientKey,
        k_isn: SeqNumber,
        c_isn: SeqNumber,
        client: ClientOptions,
        k_tsval: u32,
        client_tsval: u32,
        out: &mut Output,
    ) {
        let seg = Segment {
            src_port: key.service_port,
            dst_port: key.client_port,
            seq: k_isn,
            ack: c_isn + 1,
            flags: flags::SYN | flags::ACK,
            window: 65535,
            options: emit::Options {
                mss: Some(self.config.mss()),
                wscale: client.wscale.map(|_| self.config.window_scale),
                sack_permitted: client.sack,
                timestamps: client.timestamps.then_some((k_tsval, client_tsval)),
            },
            payload: &[],
        };
        self.emit_v4(&seg, key.service, key.client, out);
    }

    /// RST for a segment that belongs to no flow (DESIGN step 7).
    fn send_rst_to_client(&mut self, key: &ClientKey, seg: &SegInfo, out: &mut Output) {
        let rst = emit::rst_for(
            key.service_port,
            key.client_port,
            seg.seq,
            seg.ack_number(),
            seg.seg_len(),
        );
        self.emit_v4(&rst, key.service, key.client, out);
    }

    /// RST to the client of flow `id` while Kracauer is its endpoint (before the splice).
    pub(super) fn reset_client(&mut self, id: FlowId, out: &mut Output) {
        let Some((key, _)) = self.flows.keys(id) else {
            return;
        };
        let Some(flow) = self.flows.get(id) else {
            return;
        };
        let ack = flow.c_isn + 1 + self.contiguous_len(id);
        let seg = Segment {
            src_port: key.service_port,
            dst_port: key.client_port,
            seq: flow.k_isn + 1,
            ack,
            flags: flags::RST | flags::ACK,
            window: 0,
            options: emit::Options::default(),
            payload: &[],
        };
        self.emit_v4(&seg, key.service, key.client, out);
    }

    /// Puts an IPv4 segment from a service address into the output.
    pub(super) fn emit_v4(
        &mut self,
        seg: &Segment<'_>,
        src: std::net::Ipv4Addr,
        dst: std::net::Ipv4Addr,
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
        src: &std::net::Ipv6Addr,
        dst: &std::net::Ipv6Addr,
        out: &mut Output,
    ) {
        match out.push(seg.v6_len(), |b| seg.emit_v6(src, dst, b)) {
            Ok(Ok(())) => self.stats.made += 1,
            Ok(Err(_)) | Err(_) => self.stats.drop(DropReason::OutputFull),
        }
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
