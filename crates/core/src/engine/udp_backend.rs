//! QUIC over UDP, the backend side and what every UDP flow shares
//! (docs/architecture.md, "QUIC"): IPv6 datagrams from backends translated to their
//! clients, the connection IDs backends choose learned from their long headers (for
//! rebinding, `udp_route.rs`), the flows' timers, their ends and log lines, and the
//! pressure sweep of stalled pending flows. The packets the engine makes for QUIC and
//! ICMP about QUIC datagrams are `udp_emit.rs`'s.

use std::net::{SocketAddrV4, SocketAddrV6};

use super::{Engine, Verdict};
use crate::base::{BackendKey, DropReason, Outcome, PeekPath, Protocol, RxChecksum};
use crate::engine::event::Event;
use crate::engine::stats::Direction;
use crate::engine::udp_cids::CidRoute;
use crate::flow::PeekEnd;
use crate::flow::Usage;
use crate::flow::table::FlowId;
use crate::flow::udp::{Learned, UdpFlow, UdpPhase};
use crate::quic::ConnectionId;
use crate::quic::header::{LongHeader, Packet, PacketKind, packets};
use crate::time::Time;
use crate::wire::{ChecksumForm, Ipv6Packet, UdpPacket};
use crate::xlat::V4Rewrite;
use crate::xlat::{self, HopLimit};

/// Long-header packets of one backend datagram read for connection IDs, at most.
const MAX_LEARN_PACKETS: usize = 4;

impl Engine {
    /// An IPv6 UDP datagram towards the prefix (`upper`: where its UDP header starts).
    pub(super) fn handle_backend_udp(
        &mut self,
        now: Time,
        buf: &mut [u8],
        start: usize,
        upper: usize,
        checksum: RxChecksum,
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
        let end = ip.payload_range().end;
        let Some(udp) = packet
            .get(upper..end)
            .and_then(|b| UdpPacket::new_checked(b).ok())
        else {
            return Verdict::Dropped(DropReason::BackendMalformed);
        };
        let key = BackendKey {
            backend: ip.src_addr(),
            backend_port: udp.src_port(),
            client,
            client_port: udp.dst_port(),
        };
        let Some(id) = self.udp.flows.find_backend(&key) else {
            return Verdict::Dropped(DropReason::BackendUdpNoFlow);
        };
        let Some((ck, _)) = self.udp.flows.keys(id) else {
            return Verdict::Dropped(DropReason::BackendUdpNoFlow);
        };
        if self.udp.flows.get(id).map(|f| f.prefix) != Some(prefix) {
            // The flow's 4-tuple under another prefix than it began with.
            return Verdict::Dropped(DropReason::BackendNotPrefix);
        }
        let datagram = udp.payload();
        let payload_len = datagram.len();
        // Steady state is short headers: one bit says there is nothing to learn.
        let learn = datagram.first().is_some_and(|b| b & 0x80 != 0);
        let mut learned = arrayvec::ArrayVec::<_, MAX_LEARN_PACKETS>::new();
        if learn {
            for p in packets(datagram).take(MAX_LEARN_PACKETS) {
                let Ok(Packet::Long(h)) = p else { break };
                if let Some(cid) = server_cid(&h) {
                    learned.push(cid);
                }
            }
        }
        let Some(flow) = self.udp.flows.get_mut(id) else {
            return Verdict::Dropped(DropReason::BackendUdpNoFlow);
        };
        flow.last_seen = now;
        let Some(f) = flow.forwarding_mut() else {
            return Verdict::Dropped(DropReason::BackendUdpNoFlow);
        };
        f.answered = true;
        f.bytes[1] += payload_len as u64;
        let mut changes = arrayvec::ArrayVec::<_, MAX_LEARN_PACKETS>::new();
        for cid in learned {
            match f.learn(cid.as_bytes()) {
                Learned::Nothing => {}
                Learned::Added => changes.push((cid, None)),
                Learned::Replaced(old) => changes.push((cid, Some(old))),
            }
        }
        for (cid, old) in &changes {
            if let Some(old) = old {
                self.unindex_cid(old, id);
            }
            self.index_cid(cid, id);
        }
        // The deadline moved from the short idle time to the long one.
        self.udp_rearm(id);
        let to = V4Rewrite {
            src: ck.service,
            dst: ck.client,
            src_port: ck.service_port,
            dst_port: ck.client_port,
            identification: self.ident(),
        };
        let opts = xlat::Options {
            checksum: ChecksumForm::from(checksum),
            hop_limit: HopLimit::Keep,
        };
        match xlat::ipv6_to_ipv4(buf, start, &to, opts) {
            Ok(range) => {
                self.stats.forwarded_quic(Direction::ToClient, payload_len);
                Verdict::Forward(range)
            }
            Err(_) => Verdict::Dropped(DropReason::TranslationFailed),
        }
    }

    /// The client of routed flow `id` sent a short header to a connection ID Kracauer had
    /// not seen (it moved to one the backend gave it in an encrypted frame): once the
    /// datagram's checksum shows it is not damaged, the ID is learned, so that a later
    /// rebinding that uses it is recognised. Rare: clients change IDs seldom.
    pub(super) fn learn_client_cid(&mut self, id: FlowId, cid: &[u8]) {
        let Some(f) = self.udp.flows.get_mut(id).and_then(UdpFlow::forwarding_mut) else {
            return;
        };
        let Some(new) = ConnectionId::new(cid) else {
            return;
        };
        match f.learn(cid) {
            Learned::Nothing => return,
            Learned::Added => {}
            Learned::Replaced(old) => self.unindex_cid(&old, id),
        }
        self.index_cid(&new, id);
        self.stats.quic_cids_from_clients += 1;
    }

    /// Forgets every connection ID this engine's flows own in the shared index (the
    /// engine is dropped).
    pub(super) fn forget_cids(&mut self) {
        let owned: Vec<(ConnectionId, FlowId)> = self
            .udp
            .flows
            .iter()
            .filter_map(|(id, _, _, f)| Some((id, f.forwarding()?)))
            .flat_map(|(id, f)| f.cids.iter().map(move |c| (c.clone(), id)))
            .collect();
        for (cid, id) in owned {
            self.unindex_cid(&cid, id);
        }
    }

    /// Points `cid` at routed flow `id` in the shared index.
    pub(super) fn index_cid(&mut self, cid: &ConnectionId, id: FlowId) {
        let (Some((ck, Some(bk))), Some(f)) = (
            self.udp.flows.keys(id),
            self.udp.flows.get(id).and_then(UdpFlow::forwarding),
        ) else {
            return;
        };
        let route = CidRoute {
            owner: (self.udp.tag, id),
            service: (ck.service, ck.service_port),
            backend: (bk.backend, bk.backend_port),
            name: f.name.clone(),
        };
        self.shared.cids().insert(cid, route);
    }

    /// Forgets `cid` in the shared index if flow `id` of this engine still owns it.
    pub(super) fn unindex_cid(&mut self, cid: &ConnectionId, id: FlowId) {
        self.shared.cids().remove(cid, (self.udp.tag, id));
    }

    /// Makes sure UDP flow `id` has a timer entry no later than its deadline.
    pub(super) fn udp_rearm(&mut self, id: FlowId) {
        let t = self.udp_timeouts();
        if let Some(flow) = self.udp.flows.get_mut(id) {
            let at = flow.deadline(&t);
            flow.armed = self.udp.timers.arm(id, at, flow.armed);
        }
    }

    /// Runs every UDP timer due at `now`: pending flows past their peek deadline and
    /// idle flows end.
    pub(super) fn udp_handle_timeout(&mut self, now: Time) {
        let t = self.udp_timeouts();
        while let Some((at, id)) = self.udp.timers.pop_due(now) {
            let Some(flow) = self.udp.flows.get_mut(id) else {
                continue;
            };
            if flow.armed != at {
                continue; // stale: the flow armed an earlier entry since
            }
            flow.armed = Time::NEVER;
            let deadline = flow.deadline(&t);
            if deadline > now {
                flow.armed = self.udp.timers.arm(id, deadline, Time::NEVER);
                continue;
            }
            let outcome = match flow.phase {
                UdpPhase::Pending(_) => Outcome::PeekTimeout,
                UdpPhase::Forwarding(_) => Outcome::IdleTimeout,
            };
            self.udp_finish(now, id, outcome, None);
        }
    }

    /// Under pressure (after the TCP flows, `pressure.rs`), ends pending QUIC flows that
    /// got no datagram for [`STALE_AFTER`](super::pressure::STALE_AFTER), those of the
    /// addresses holding the most unnamed state first, until the pressure is gone.
    pub(super) fn udp_sweep(&mut self, now: Time) {
        let stale_after = super::pressure::STALE_AFTER;
        let mut stale: Vec<(u32, Time, FlowId)> = self
            .udp
            .flows
            .iter()
            .filter_map(|(id, key, _, flow)| match flow.phase {
                UdpPhase::Pending(_) if now.saturating_since(flow.last_seen) >= stale_after => {
                    Some((self.shared.held_by(key.client), flow.last_seen, id))
                }
                _ => None,
            })
            .collect();
        stale.sort_unstable_by(|a, b| b.0.cmp(&a.0).then(a.1.cmp(&b.1)));
        for (_, _, id) in stale {
            if !self.under_pressure() {
                break;
            }
            self.udp_finish(now, id, Outcome::Limited, None);
            self.stats.pressure_cuts += 1;
        }
    }

    /// When the next UDP timer is due (engine time).
    pub(super) fn udp_next_timer(&self) -> Option<Time> {
        self.udp.timers.next()
    }

    /// Frees UDP flow `id`, counts its outcome and queues its log line. `refused`: the
    /// way its peek ended, when it ended with the peek.
    pub(super) fn udp_finish(
        &mut self,
        now: Time,
        id: FlowId,
        outcome: Outcome,
        peek_end: Option<PeekPath>,
    ) {
        let Some((ck, bk)) = self.udp.flows.keys(id) else {
            return;
        };
        let Some(flow) = self.udp.flows.remove(id) else {
            return;
        };
        self.account(ck.client, flow.usage(), Usage::default());
        self.stats.quic_outcome(outcome);
        let (name, bytes, path) = match flow.phase {
            UdpPhase::Pending(p) => (p.name, [0; 2], peek_end),
            UdpPhase::Forwarding(f) => {
                for cid in &f.cids {
                    self.unindex_cid(cid, id);
                }
                (f.name, f.bytes, Some(PeekPath::Named))
            }
        };
        let path = peek_end.or(path);
        self.push_event(Event::Closed {
            protocol: Protocol::Quic,
            client: SocketAddrV4::new(ck.client, ck.client_port),
            service: SocketAddrV4::new(ck.service, ck.service_port),
            name,
            backend: bk.map(|b| SocketAddrV6::new(b.backend, b.backend_port, 0, 0)),
            bytes_to_backend: bytes[0],
            bytes_to_client: bytes[1],
            duration: now.saturating_since(flow.created),
            outcome,
            peek: path.map(|path| PeekEnd {
                path,
                unnamed: None,
            }),
        });
    }

    /// Ends up to `limit` UDP flows (the daemon is stopping); returns how many are left.
    pub(super) fn close_udp_flows(&mut self, now: Time, limit: usize) -> usize {
        let ids: Vec<FlowId> = self
            .udp
            .flows
            .iter()
            .map(|(id, ..)| id)
            .take(limit)
            .collect();
        for id in ids {
            self.udp_finish(now, id, Outcome::Shutdown, None);
        }
        self.udp.flows.len()
    }

    /// Connection IDs learned, all flows of every engine sharing these limits together.
    pub fn quic_learned_cids(&self) -> usize {
        self.shared.cids().len()
    }

    /// Number of QUIC flows in the table.
    pub fn quic_flow_count(&self) -> usize {
        self.udp.flows.len()
    }
}

/// The connection ID a backend chose, from one of its long-header packets: the SCID of
/// an Initial, a Handshake or a Retry (a 0-RTT packet is never a server's; Version
/// Negotiation echoes the client's IDs).
fn server_cid(h: &LongHeader<'_>) -> Option<ConnectionId> {
    match h.kind() {
        PacketKind::Initial(_) | PacketKind::Handshake(_) | PacketKind::Retry(_) => {
            ConnectionId::new(h.scid()).filter(|c| !c.as_bytes().is_empty())
        }
        _ => None,
    }
}
