//! The client side: IPv4 segments to a service address. Demultiplexing, new flows (a SYN,
//! or an ACK carrying a valid cookie), refused flows, and the forwarding of spliced flows'
//! segments to their backends. Segments of flows still being set up go to `setup.rs`.
//!
//! A SYN gets state unless the half-open bound or the flow table is reached, or its
//! address holds its allowance of unnamed connections (`pressure.rs`): then a SYN cookie.
//! A cookie ACK from an address over its allowance makes a flow only when its bytes name
//! the host at once; a bare ACK is taken without one, and bytes that would have to wait
//! are left to the client (`client_peek_limit`), which sends them again.

use super::{Arrival, Engine, Verdict};
use crate::base::{ClientKey, DropReason, Outcome, Protocol, RxChecksum};
use crate::engine::output::Output;
use crate::engine::stats::Direction;
use crate::flow::setup::names_at_once;
use crate::flow::spliced::{Forwarded, RefusedStep};
use crate::flow::table::FlowId;
use crate::flow::{Conn, Flow, Peek, Phase};
use crate::tcp::isn::{cookie_options_from_tsecr, cookie_tsval};
use crate::tcp::seg::{ClientOptions, SegInfo};
use crate::time::Time;
use crate::wire::tcp::{SeqNumber, TcpPacket};
use crate::wire::{ChecksumForm, Ipv4Packet, ip_proto};
use crate::xlat::{self, HopLimit, V6Rewrite};

impl Engine {
    pub(super) fn handle_client(
        &mut self,
        now: Time,
        buf: &mut [u8],
        start: usize,
        checksum: RxChecksum,
        arrival: Arrival,
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
            ip_proto::ICMP => return self.client_icmp(now, packet, out),
            ip_proto::UDP => return self.handle_client_udp(now, buf, start, checksum, out),
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
        let anew = id.is_some_and(|id| self.starts_anew(now, id, &key, &seg));
        let forwarding = !anew
            && id
                .and_then(|id| self.flows.get(id))
                .is_some_and(|f| match f.phase {
                    Phase::Spliced(_) | Phase::Custody(_) => true,
                    Phase::Closing(_) => !seg.syn() || seg.ack_flag(),
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
        // A new connection on a closing tuple starts fresh: the old flow ends here.
        let id = match id {
            Some(id) if anew => {
                if let Some(Phase::Closing(c)) = self.flows.get(id).map(|f| &f.phase) {
                    let outcome = c.outcome;
                    self.finish(now, id, outcome);
                }
                None
            }
            other => other,
        };
        let Some(id) = id else {
            // Second chance (`secondchance.rs`): passed to the peers, or taken from one.
            if arrival != Arrival::Tun || self.config.second_chance {
                let payload = &buf[payload];
                return self.without_flow(
                    now,
                    key,
                    protocol,
                    &seg,
                    checksum_ok,
                    payload,
                    arrival,
                    out,
                );
            }
            if seg.rst() {
                return Verdict::Dropped(DropReason::ClientNoFlow);
            }
            if !checksum_ok {
                return Verdict::Dropped(DropReason::ClientBadChecksum);
            }
            return self.client_without_flow(now, key, protocol, &seg, &buf[payload], out);
        };
        let Some(flow) = self.flows.get_mut(id) else {
            return Verdict::Dropped(DropReason::ClientNoFlow);
        };
        match &flow.phase {
            Phase::Spliced(_) | Phase::Custody(_) | Phase::Closing(_) => {
                flow.last_seen = now;
                self.forward_to_backend(now, id, &key, &seg, buf, start, checksum.into())
            }
            _ if !checksum_ok => Verdict::Dropped(DropReason::ClientBadChecksum),
            Phase::Refused(_) => self.client_refused(now, id, key, &seg, out),
            Phase::Handshake | Phase::Peek(_) | Phase::Connect(_) => {
                flow.last_seen = now;
                self.client_setup(now, id, key, &seg, &buf[payload], out)
            }
        }
    }

    /// Whether `seg` opens a new connection on the tuple of flow `id`, which is closing:
    /// a SYN, or an ACK whose cookie checks. The second is how a new connection that
    /// reuses the client port shows itself when its SYN was answered without the engine
    /// seeing it (the kernel's SYN cookies in flood mode): the old flow must not carry
    /// it. A segment of the old connection passes the cookie check only by chance
    /// (25 bits of hash, and the tick).
    fn starts_anew(&self, now: Time, id: FlowId, key: &ClientKey, seg: &SegInfo) -> bool {
        if !matches!(
            self.flows.get(id).map(|f| &f.phase),
            Some(Phase::Closing(_))
        ) {
            return false;
        }
        if seg.syn() {
            return !seg.ack_flag();
        }
        seg.ack_flag()
            && !seg.fin()
            && !seg.rst()
            && self
                .isn
                .check_cookie(key, (seg.seq - 1).0, (seg.ack - 1).0, self.cookie_time(now))
                .is_some()
    }

    /// A segment for no known flow: a SYN starts one, an ACK may carry a valid cookie,
    /// anything else is answered with RST.
    pub(super) fn client_without_flow(
        &mut self,
        now: Time,
        key: ClientKey,
        protocol: Protocol,
        seg: &SegInfo,
        payload: &[u8],
        out: &mut Output,
    ) -> Verdict {
        if seg.syn() {
            if seg.ack_flag() || seg.fin() {
                return Verdict::Dropped(DropReason::ClientBadFlags);
            }
            return self.client_syn(now, key, protocol, seg, out);
        }
        if seg.ack_flag() && !seg.fin() {
            if let Some(verdict) = self.client_cookie_ack(now, key, protocol, seg, payload, out) {
                return verdict;
            }
        }
        if now < self.settling_until {
            return Verdict::Dropped(DropReason::ClientNoFlowSettling);
        }
        self.send_rst_to_client(&key, seg, out);
        Verdict::Dropped(DropReason::ClientNoFlow)
    }

    /// Adds a new flow; the limits take what its phase holds.
    fn insert(&mut self, key: ClientKey, flow: Flow) -> Option<FlowId> {
        let usage = flow.usage();
        let id = self.flows.insert(key, flow).ok()?;
        self.account(key.client, crate::flow::Usage::default(), usage);
        self.rearm(id);
        Some(id)
    }

    /// A SYN for a new flow: state and a SYN-ACK, or a cookie past the half-open bound,
    /// the flow table's size, or its address's allowance of unnamed connections.
    fn client_syn(
        &mut self,
        now: Time,
        key: ClientKey,
        protocol: Protocol,
        seg: &SegInfo,
        out: &mut Output,
    ) -> Verdict {
        let o = seg.options;
        let full = self.shared.half_open() >= self.config.max_half_open
            || self.flows.len() >= self.flows.capacity();
        let over = !self.may_hold(key.client);
        // A cookie keeps the MSS (rounded down), and window scale and SACK only through
        // timestamps: without them it would cost the client options it asked for.
        let cookie_keeps_options =
            o.timestamps.is_some() || (o.window_scale.is_none() && !o.sack_permitted);
        if full || (over && cookie_keeps_options) {
            if !full {
                self.stats.cookies_for_address += 1;
            }
            self.send_cookie(now, &key, seg, out);
            return Verdict::Consumed;
        }
        if over && self.under_pressure() {
            return Verdict::Dropped(DropReason::ClientPeekLimit);
        }
        // Below pressure a SYN a cookie would cost its options is taken as state even
        // past its address's allowance.
        let client = ClientOptions::from_syn(&o);
        let client_tsval = o.timestamps.map_or(0, |t| t.0);
        let conn = Conn {
            c_isn: seg.seq,
            k_isn: SeqNumber(self.isn.isn(&key, now)),
            client,
            client_tsval,
            k_tsval: now.ts_millis(),
            client_window: seg.window,
            client_fin: false,
            backend_fin: false,
            fastpath: false,
            prefix: self.config.prefix,
        };
        if self
            .insert(key, Flow::new(protocol, now, conn, Phase::Handshake))
            .is_none()
        {
            return Verdict::Dropped(DropReason::FlowTableFull);
        }
        self.resend_synack(&key, &conn, out);
        Verdict::Consumed
    }

    /// Answers a SYN with a SYN cookie: no state. Without timestamps to carry them, a
    /// cookie SYN-ACK offers no window scaling and no SACK (as Linux does).
    fn send_cookie(&mut self, now: Time, key: &ClientKey, seg: &SegInfo, out: &mut Output) {
        let o = seg.options;
        let client = ClientOptions::from_syn(&o);
        let client_tsval = o.timestamps.map_or(0, |t| t.0);
        let (cookie, mss) = self
            .isn
            .cookie(key, seg.seq.0, client.mss, self.cookie_time(now));
        let (client, tsval) = match o.timestamps {
            Some(_) => (
                ClientOptions { mss, ..client },
                cookie_tsval(now.ts_millis(), o.window_scale, o.sack_permitted),
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
        self.shared.add_cookie_sent();
        let syn = (seg.seq, client_tsval);
        self.send_synack(key, syn, client, (SeqNumber(cookie), tsval), out);
    }

    /// An ACK for no flow: if it carries a valid cookie, the flow starts here, peeking.
    pub(super) fn client_cookie_ack(
        &mut self,
        now: Time,
        key: ClientKey,
        protocol: Protocol,
        seg: &SegInfo,
        payload: &[u8],
        out: &mut Output,
    ) -> Option<Verdict> {
        let c_isn = seg.seq - 1;
        let k_isn = seg.ack - 1;
        let mss = self
            .isn
            .check_cookie(&key, c_isn.0, k_isn.0, self.cookie_time(now))?;
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
        // Past its address's allowance a flow is made only for bytes that name the host at
        // once: a bare ACK is taken without one, and bytes that would wait as state are
        // left to the client, which sends them again.
        let over = !self.may_hold(key.client);
        if over && payload.is_empty() {
            self.stats.deferred += 1;
            return Some(Verdict::Consumed);
        }
        if over && !names_at_once(protocol, payload, self.config.peek_cap) {
            return Some(Verdict::Dropped(DropReason::ClientPeekLimit));
        }
        let conn = Conn {
            c_isn,
            k_isn,
            client,
            client_tsval: seg.options.timestamps.map_or(0, |t| t.0),
            k_tsval: seg.options.timestamps.map_or(0, |t| t.1),
            client_window: seg.window,
            client_fin: false,
            backend_fin: false,
            fastpath: false,
            prefix: self.config.prefix,
        };
        let flow = Flow::new(protocol, now, conn, Phase::Peek(Box::new(Peek::new(now))));
        let Some(id) = self.insert(key, flow) else {
            return Some(Verdict::Dropped(DropReason::FlowTableFull));
        };
        self.stats.cookies_accepted += 1;
        if !payload.is_empty() {
            return Some(self.client_setup(now, id, key, seg, payload, out));
        }
        Some(Verdict::Consumed)
    }

    /// A segment for a refused flow: ACK its FIN, repeat the answer, or forget it on RST
    /// (a SYN starts a new flow).
    fn client_refused(
        &mut self,
        now: Time,
        id: FlowId,
        key: ClientKey,
        seg: &SegInfo,
        out: &mut Output,
    ) -> Verdict {
        let step = match self.flows.get(id) {
            Some(Flow {
                phase: Phase::Refused(r),
                conn,
                protocol,
                ..
            }) => r.client_segment(conn, *protocol, seg),
            _ => return Verdict::Consumed,
        };
        match step {
            RefusedStep::Finish => {
                self.finish(now, id, Outcome::UnknownName);
                if seg.syn() {
                    // A new SYN on a closing tuple starts fresh.
                    if let Some(protocol) = self.config.protocol(key.service, key.service_port) {
                        return self.client_syn(now, key, protocol, seg, out);
                    }
                }
            }
            RefusedStep::AckFin { seq, ack } => {
                self.ack_refused_fin(now, id, &key, (seq, ack), out)
            }
            RefusedStep::Resend => self.send_refusal(now, id, &key, out),
            RefusedStep::Nothing => {}
        }
        Verdict::Consumed
    }

    /// Translates a spliced flow's segment for the backend, in place.
    #[allow(clippy::too_many_arguments)]
    fn forward_to_backend(
        &mut self,
        now: Time,
        id: FlowId,
        key: &ClientKey,
        seg: &SegInfo,
        buf: &mut [u8],
        start: usize,
        form: ChecksumForm,
    ) -> Verdict {
        let Some((_, Some(bk))) = self.flows.keys(id) else {
            return Verdict::Dropped(DropReason::ClientNoFlow);
        };
        let Some(Flow { conn, phase, .. }) = self.flows.get_mut(id) else {
            return Verdict::Dropped(DropReason::ClientNoFlow);
        };
        let spliced = match phase {
            Phase::Spliced(s) => s,
            Phase::Closing(c) => &mut *c.spliced,
            Phase::Custody(c) => {
                let splice = c.spliced.splice;
                c.client_segment(&splice, seg);
                &mut c.spliced
            }
            _ => return Verdict::Dropped(DropReason::ClientNoFlow),
        };
        let ip_hl = usize::from(buf.get(start).map_or(5, |b| b & 0x0f)) * 4;
        let total = Ipv4Packet::new_unchecked(&buf[start..]).total_len() as usize;
        let Some(tcp_bytes) = buf.get_mut(start + ip_hl..start + total) else {
            return Verdict::Dropped(DropReason::ClientMalformed);
        };
        let mut tcp = TcpPacket::new_unchecked(tcp_bytes);
        if spliced
            .splice
            .to_backend_parsed(&mut tcp, seg, form)
            .is_err()
        {
            return Verdict::Dropped(DropReason::ClientMalformed);
        }
        let forwarded = spliced.forwarded(conn, seg, true);
        let to = V6Rewrite {
            src: conn.prefix.embed(key.client),
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
        if let Forwarded::Close(outcome) = forwarded {
            self.start_closing(now, id, outcome);
        }
        Verdict::Forward(range)
    }

    /// Moves a spliced flow to Closing (a closing one stays as it is).
    pub(super) fn start_closing(&mut self, now: Time, id: FlowId, outcome: Outcome) {
        self.fastpath_remove(id);
        let until = now + self.config.linger;
        self.step(id, |flow| {
            let phase = match flow.phase {
                Phase::Spliced(s) => Phase::Closing(s.close(until, outcome)),
                // A RST ends the custody with the flow. Both FINs do not: the bytes are
                // still Kracauer's to deliver, and the flow closes once they are
                // acknowledged (`after_custody_ack`).
                Phase::Custody(c) if outcome != Outcome::Closed => {
                    Phase::Closing(c.release().close(until, outcome))
                }
                other => other,
            };
            (Flow { phase, ..flow }, ())
        });
        self.rearm(id);
    }
}
