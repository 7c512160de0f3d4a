//! The backend side: IPv6 segments towards the prefix. Demultiplexing, the backend's
//! answer to the SYN (which splices the flow), and the forwarding of spliced flows'
//! segments to their clients.

use std::net::{SocketAddrV4, SocketAddrV6};

use super::emit::ts_at_least;
use super::{Engine, Verdict};
use crate::base::{BackendKey, DropReason, RxChecksum};
use crate::engine::event::{ConnectFailure, Event};
use crate::engine::output::Output;
use crate::engine::stats::Direction;
use crate::flow::connect::{Connect, ConnectStep, CustodyTimers, Handover};
use crate::flow::spliced::Forwarded;
use crate::flow::table::FlowId;
use crate::flow::{Flow, Phase};
use crate::tcp::seg::SegInfo;
use crate::time::Time;
use crate::wire::tcp::TcpPacket;
use crate::wire::{ChecksumForm, Ipv6Packet, ip_proto};
use crate::xlat::{self, HopLimit, V4Rewrite};

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
        let Some((prefix, client)) = self.extract_client(ip.dst_addr()) else {
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
            ip_proto::UDP => {
                return self.handle_backend_udp(now, buf, start, upper.offset, checksum);
            }
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
            if now < self.settling_until {
                return Verdict::Dropped(DropReason::BackendNoFlowSettling);
            }
            if !seg.rst() {
                self.send_rst_to_backend(prefix, &key, &seg, out);
            }
            return Verdict::Dropped(DropReason::BackendNoFlow);
        };
        if self.flows.get(id).map(|f| f.conn.prefix) != Some(prefix) {
            // The flow's 4-tuple under the other prefix than it began with.
            return Verdict::Dropped(DropReason::BackendNotPrefix);
        }
        // Verified only where Kracauer reads the segment itself (see the client side):
        // the answer to its SYN, and acknowledgements of bytes in its custody.
        let reads = matches!(
            self.flows.get(id).map(|f| &f.phase),
            Some(Phase::Connect(_) | Phase::Custody(_))
        );
        let checksum_ok = !reads
            || !checksum.needs_verifying()
            || tcp.verify_checksum_v6(&ip.src_addr(), &ip.dst_addr());
        let Some(flow) = self.flows.get_mut(id) else {
            return Verdict::Dropped(DropReason::BackendNoFlow);
        };
        flow.last_seen = now;
        match &flow.phase {
            Phase::Connect(_) | Phase::Custody(_) if !checksum_ok => {
                Verdict::Dropped(DropReason::BackendMalformed)
            }
            Phase::Connect(_) => self.backend_connecting(now, id, key, &seg, out),
            Phase::Spliced(_) | Phase::Custody(_) | Phase::Closing(_)
                if seg.syn() && seg.ack_flag() =>
            {
                // A retransmitted SYN-ACK: our ACK was lost; ACK it again, never forward it.
                // Bytes in custody go with it (the client will not send them again).
                self.ack_backend(id, &key, &seg, out);
                self.send_custody(id, true, out);
                Verdict::Consumed
            }
            Phase::Spliced(_) | Phase::Custody(_) | Phase::Closing(_) => {
                let form = checksum.into();
                self.forward_to_client(now, id, &seg, buf, (start, upper.offset), form, out)
            }
            _ => Verdict::Dropped(DropReason::BackendUnexpected),
        }
    }

    /// A segment while the backend SYN is outstanding: SYN-ACK splices, RST fails the
    /// attempt (the next backend of the pool, or a RST to the client).
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
        match Connect::backend_segment(&flow.conn, seg) {
            ConnectStep::Drop(reason) => Verdict::Dropped(reason),
            ConnectStep::DropWithRst(reason) => {
                let prefix = flow.conn.prefix;
                self.send_rst_to_backend(prefix, &key, seg, out);
                Verdict::Dropped(reason)
            }
            ConnectStep::Refused => {
                self.attempt_failed(now, id, ConnectFailure::Refused, out);
                Verdict::Consumed
            }
            ConnectStep::Splice => {
                self.splice(now, id, key, seg, out);
                Verdict::Consumed
            }
        }
    }

    /// The backend's SYN-ACK: the flow becomes spliced; ACK it with the peeked bytes, and
    /// from now on translate.
    fn splice(
        &mut self,
        now: Time,
        id: FlowId,
        key: BackendKey,
        synack: &SegInfo,
        out: &mut Output,
    ) {
        let ws_k = self.config.window_scale;
        let custody = CustodyTimers {
            now,
            mss: self.config.mss(),
            first_rto: self.config.syn_retransmit,
            give_up: self.config.connect_timeout,
        };
        let Some(handover) = self
            .step(id, |flow| {
                // The client's view of "the server's" clock continues from what it saw last.
                let k_tsval = ts_at_least(now.ts_millis(), flow.conn.k_tsval);
                match flow.phase {
                    Phase::Connect(c) => {
                        let (phase, handover) =
                            c.splice(&flow.conn, synack, (ws_k, k_tsval), custody);
                        (Flow { phase, ..flow }, Some(handover))
                    }
                    other => (
                        Flow {
                            phase: other,
                            ..flow
                        },
                        None,
                    ),
                }
            })
            .flatten()
        else {
            return;
        };
        let Some(flow) = self.flows.get(id) else {
            return;
        };
        let (c_isn, created, prefix) = (flow.conn.c_isn, flow.created, flow.conn.prefix);
        let name = flow.spliced().and_then(|s| s.name.clone());
        let sent = self.send_handover(&key, (prefix, c_isn), synack, &handover, out);
        if let Some(Phase::Custody(c)) = self.flows.get_mut(id).map(|f| &mut f.phase) {
            c.sent = sent.min(c.acked);
        }
        self.stats.spliced += 1;
        self.opened(now, id, &key, name, &handover, created);
        self.fastpath_install(id);
        self.rearm(id);
    }

    /// Queues the access-log event of a flow that reached its backend.
    fn opened(
        &mut self,
        now: Time,
        id: FlowId,
        key: &BackendKey,
        name: Option<crate::name::HostName>,
        handover: &Handover,
        created: Time,
    ) {
        let protocol = self.flows.get(id).map(|f| f.protocol);
        if let (Some((ck, _)), Some(protocol)) = (self.flows.keys(id), protocol) {
            self.push_event(Event::Opened {
                protocol,
                client: SocketAddrV4::new(ck.client, ck.client_port),
                service: SocketAddrV4::new(ck.service, ck.service_port),
                name,
                backend: SocketAddrV6::new(key.backend, key.backend_port, 0, 0),
                peek_time: handover.named_at.saturating_since(created),
                connect_time: now.saturating_since(handover.named_at),
            });
        }
    }

    /// Translates a spliced flow's segment for the client, in place. `at` is where the
    /// packet and its TCP header start (the latter from the IPv6 header).
    #[allow(clippy::too_many_arguments)]
    fn forward_to_client(
        &mut self,
        now: Time,
        id: FlowId,
        seg: &SegInfo,
        buf: &mut [u8],
        (start, tcp_offset): (usize, usize),
        form: ChecksumForm,
        out: &mut Output,
    ) -> Verdict {
        let ident = self.ident();
        let Some((ck, _)) = self.flows.keys(id) else {
            return Verdict::Dropped(DropReason::BackendNoFlow);
        };
        let Some(Flow { conn, phase, .. }) = self.flows.get_mut(id) else {
            return Verdict::Dropped(DropReason::BackendNoFlow);
        };
        let payload_len = usize::from(Ipv6Packet::new_unchecked(&buf[start..]).payload_len());
        let end = start + 40 + payload_len;
        let Some(tcp_bytes) = buf.get_mut(start + tcp_offset..end) else {
            return Verdict::Dropped(DropReason::BackendMalformed);
        };
        let mut tcp = TcpPacket::new_unchecked(tcp_bytes);
        let (spliced, custody) = match phase {
            Phase::Spliced(s) => (s, None),
            Phase::Closing(c) => (&mut *c.spliced, None),
            Phase::Custody(c) => {
                // The splice's rewrite, then the custody's on top (an ACK below the
                // custody bytes raised to their end).
                let splice = c.spliced.splice;
                splice.to_client_parsed(&mut tcp, seg, form);
                let ack = c.backend_segment(conn, &splice, seg, now);
                c.to_client(conn, &splice, &mut tcp, seg, form);
                (&mut c.spliced, Some(ack))
            }
            _ => return Verdict::Dropped(DropReason::BackendUnexpected),
        };
        if custody.is_none() {
            spliced.splice.to_client_parsed(&mut tcp, seg, form);
        }
        let forwarded = spliced.forwarded(conn, seg, false);
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
        if let Some(ack) = custody {
            self.after_custody_ack(now, id, ack, out);
        }
        if let Forwarded::Close(outcome) = forwarded {
            self.start_closing(now, id, outcome);
        }
        Verdict::Forward(range)
    }
}
