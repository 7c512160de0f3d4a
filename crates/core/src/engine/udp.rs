//! QUIC over UDP, the client side (docs/architecture.md, "QUIC"): IPv4 datagrams to a
//! QUIC service port. Demultiplexing by the client 4-tuple, new flows, the pending phase
//! that holds datagrams until `quic::InitialPeek` names the host, the route, the refusal,
//! and the stateless translation of a routed flow's datagrams to its backend.
//!
//! - A datagram for no flow is read at once: an Initial makes a pending flow holding it
//!   (a hello whole in one datagram is routed at once); a hello that needs more datagrams
//!   waits as a pending flow (within the limits TCP peeks have: the table, the client address's allowance
//!   of unnamed connections, the global peek memory); a version Kracauer cannot read
//!   gets Version Negotiation (v1, v2) as a server would send it; a packet that starts
//!   nothing is dropped and counted, except a short header whose Destination Connection
//!   ID a backend chose: a rebinding client, which gets a new mapping to the same
//!   backend (`udp_backend.rs` learns the IDs, `udp_route.rs` maps).
//! - A name routes as for TLS (`udp_route.rs`), a route's `ports` remap included. No route and no
//!   default: the client gets an Initial with CONNECTION_CLOSE `unrecognized_name`, and
//!   no backend a packet. A hello that cannot be read goes to the default backend, or is
//!   refused with `decode_error`.
//! - Once routed, the held datagrams go out in order, then every datagram is translated
//!   in place (IPv4→IPv6, ports, checksum updated; a zero IPv4 checksum computed; a UDP
//!   GSO super-packet kept whole). A datagram that would not fit the IPv6 MTU gets ICMP
//!   fragmentation needed (`udp_emit.rs`).

use super::{Engine, Verdict};
use crate::base::{ClientKey, DropReason, RxChecksum};
use crate::engine::output::Output;
use crate::engine::stats::Direction;
use crate::flow::Usage;
use crate::flow::table::{FlowId, FlowTable};
use crate::flow::timers::Timers;
use crate::flow::udp::{Pending, UdpFlow, UdpPhase, UdpTimeouts};
use crate::quic::header::{HeaderError, LongHeader, PacketKind};
use crate::quic::peek::MIN_INITIAL_DATAGRAM;
use crate::quic::{ConnectionId, InitialPeek, QuicPeek, QuicPeekConfig};
use crate::time::Time;
use crate::wire::{ChecksumForm, Ipv4Packet, UdpPacket};
use crate::xlat::{self, HopLimit, V6Rewrite};

/// The engine's QUIC flows: their own table (a UDP 4-tuple is not a TCP one) and their
/// timers. The connection IDs backends chose are in the index every worker shares
/// (`udp_cids.rs`), each entry owned by this engine's `tag` and a flow.
#[derive(Debug)]
pub(super) struct UdpState {
    pub(super) flows: FlowTable<UdpFlow>,
    pub(super) timers: Timers,
    /// This engine, as the owner of entries in the shared index.
    pub(super) tag: u64,
}

impl UdpState {
    pub(super) fn new(capacity: usize, key: [u64; 2], tag: u64) -> Self {
        Self {
            flows: FlowTable::new(capacity, key),
            timers: Timers::with_capacity(capacity.min(1 << 16)),
            tag,
        }
    }
}

impl Engine {
    /// The timeouts UDP flows' deadlines are made of.
    pub(super) fn udp_timeouts(&self) -> UdpTimeouts {
        UdpTimeouts {
            peek: self.config.peek_timeout,
            unanswered: self.config.udp_unanswered_timeout,
            idle: self.config.udp_idle_timeout,
        }
    }

    /// The bounds of one Initial peek.
    fn quic_peek_config(&self) -> QuicPeekConfig {
        QuicPeekConfig {
            max_hello_bytes: self.config.peek_cap,
            ..QuicPeekConfig::default()
        }
    }

    /// An IPv4 UDP datagram to a service address.
    pub(super) fn handle_client_udp(
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
        if ip.is_fragment() {
            return Verdict::Dropped(DropReason::ClientFragment);
        }
        let Ok(udp) = UdpPacket::new_checked(ip.payload()) else {
            return Verdict::Dropped(DropReason::ClientMalformed);
        };
        let key = ClientKey {
            client: ip.src_addr(),
            client_port: udp.src_port(),
            service: ip.dst_addr(),
            service_port: udp.dst_port(),
        };
        if !self.config.is_quic(key.service, key.service_port) {
            return Verdict::Dropped(DropReason::ClientNotService);
        }
        let total = usize::from(ip.total_len());
        // A GSO super-packet is cut by the kernel into the segments its sender sized.
        if checksum != RxChecksum::Partial
            && total - ip.header_len() + 40 > usize::from(self.config.ipv6_mtu)
        {
            if ip.dont_frag() {
                self.send_frag_needed(packet, out);
            }
            return Verdict::Dropped(DropReason::ClientTooBig);
        }
        let payload_len = usize::from(udp.len()).saturating_sub(8) as u64;
        let id = self.udp.flows.find_client(&key);
        if let Some(flow) = id.and_then(|id| self.udp.flows.get_mut(id)) {
            if let UdpPhase::Forwarding(f) = &mut flow.phase {
                flow.last_seen = now;
                f.bytes[0] += payload_len;
                // One compare of a few bytes per datagram: the client's ID is one Kracauer
                // knows, save when it moved to another (then, checksum first, learned).
                let moved = f.unseen_dcid(udp.payload()).and_then(ConnectionId::new);
                if let (Some(cid), Some(id)) = (moved, id) {
                    let intact = !checksum.needs_verifying()
                        || udp.checksum() == 0
                        || udp.verify_checksum_v4(key.client, key.service);
                    if intact {
                        self.learn_client_cid(id, cid.as_bytes());
                    }
                }
                return self.udp_to_backend(id, &key, buf, start, total, checksum);
            }
        }
        // From here Kracauer reads the datagram itself.
        if checksum.needs_verifying()
            && udp.checksum() != 0
            && !udp.verify_checksum_v4(key.client, key.service)
        {
            return Verdict::Dropped(DropReason::ClientBadChecksum);
        }
        let range = start + ip.header_len() + 8..start + ip.header_len() + 8 + payload_len as usize;
        match id {
            Some(id) => {
                let datagram = buf.get(range).unwrap_or_default();
                self.pending_datagram(now, id, key, datagram, out)
            }
            None => self.udp_without_flow(now, key, buf, start, range, checksum, out),
        }
    }

    /// Translates a routed flow's datagram for its backend, in place.
    pub(super) fn udp_to_backend(
        &mut self,
        id: Option<FlowId>,
        key: &ClientKey,
        buf: &mut [u8],
        start: usize,
        total: usize,
        checksum: RxChecksum,
    ) -> Verdict {
        let (Some((_, Some(bk))), Some(prefix)) = (
            id.and_then(|id| self.udp.flows.keys(id)),
            id.and_then(|id| self.udp.flows.get(id)).map(|f| f.prefix),
        ) else {
            return Verdict::Dropped(DropReason::ClientQuicNoFlow);
        };
        let to = V6Rewrite {
            src: prefix.embed(key.client),
            dst: bk.backend,
            src_port: key.client_port,
            dst_port: bk.backend_port,
        };
        let opts = xlat::Options {
            checksum: ChecksumForm::from(checksum),
            hop_limit: HopLimit::Keep,
        };
        match xlat::ipv4_to_ipv6(&mut buf[..start + total], start, &to, opts) {
            Ok(range) => {
                let payload = range.len().saturating_sub(48);
                self.stats.forwarded_quic(Direction::ToBackend, payload);
                Verdict::Forward(range)
            }
            Err(_) => Verdict::Dropped(DropReason::TranslationFailed),
        }
    }

    /// A datagram (`buf[datagram]`, the UDP payload) for no flow: an Initial starts
    /// one; a rebinding client's packet makes a new mapping; the rest is dropped, or
    /// answered with Version Negotiation.
    #[allow(clippy::too_many_arguments)]
    fn udp_without_flow(
        &mut self,
        now: Time,
        key: ClientKey,
        buf: &mut [u8],
        start: usize,
        datagram: core::ops::Range<usize>,
        checksum: RxChecksum,
        out: &mut Output,
    ) -> Verdict {
        let total = datagram.end - start;
        let bytes = buf.get(datagram).unwrap_or_default();
        match LongHeader::new_checked(bytes) {
            Err(HeaderError::ShortHeader) => {
                let found = self.shared.cids().find_short_header(bytes);
                return self.rebind(now, key, found, buf, start, total, checksum);
            }
            Err(_) => return Verdict::Dropped(DropReason::ClientQuicNoFlow),
            Ok(h) => match h.kind() {
                PacketKind::Initial(_) => {}
                PacketKind::UnknownVersion(_) if bytes.len() >= MIN_INITIAL_DATAGRAM => {
                    self.send_version_negotiation(&key, &h, out);
                    return Verdict::Consumed;
                }
                PacketKind::UnknownVersion(_) => {
                    return Verdict::Dropped(DropReason::ClientQuicDiscarded);
                }
                // A Handshake or 0-RTT packet on a new path: a rebinding client, or
                // nothing.
                PacketKind::Handshake(_) | PacketKind::ZeroRtt(_) => {
                    let found = ConnectionId::new(h.dcid()).and_then(|cid| {
                        Some((cid.clone(), self.shared.cids().get(cid.as_bytes())?))
                    });
                    return self.rebind(now, key, found, buf, start, total, checksum);
                }
                PacketKind::VersionNegotiation | PacketKind::Retry(_) => {
                    return Verdict::Dropped(DropReason::ClientQuicNoFlow);
                }
            },
        }
        let mut peek = InitialPeek::new(self.quic_peek_config());
        let answer = peek.push(bytes);
        match answer {
            QuicPeek::NotQuic | QuicPeek::Discarded(_) => {
                return Verdict::Dropped(DropReason::ClientQuicDiscarded);
            }
            // As for a TCP peek, an address past its allowance is served only for
            // datagrams that name the host at once; the rest its retransmission repairs.
            QuicPeek::NeedMore if !self.may_hold(key.client) => {
                return Verdict::Dropped(DropReason::ClientPeekLimit);
            }
            _ => {}
        }
        if self.udp.flows.len() >= self.udp.flows.capacity() {
            return Verdict::Dropped(DropReason::FlowTableFull);
        }
        let pending = Pending::new(peek, bytes);
        if matches!(answer, QuicPeek::NeedMore)
            && self
                .shared
                .peek_bytes()
                .saturating_add(pending.heap_bytes())
                > self.config.max_peek_bytes
        {
            return Verdict::Dropped(DropReason::PeekMemory);
        }
        let flow = UdpFlow::new(
            now,
            self.config.prefix,
            UdpPhase::Pending(Box::new(pending)),
        );
        let Some(id) = self.udp_insert(key, flow) else {
            return Verdict::Dropped(DropReason::FlowTableFull);
        };
        if !matches!(answer, QuicPeek::NeedMore) {
            self.peek_done(now, id, key, answer, out);
        }
        Verdict::Consumed
    }

    /// Adds a UDP flow; the limits take what it holds.
    pub(super) fn udp_insert(&mut self, key: ClientKey, flow: UdpFlow) -> Option<FlowId> {
        let usage = flow.usage();
        let id = self.udp.flows.insert(key, flow).ok()?;
        self.account(key.client, Usage::default(), usage);
        self.udp_rearm(id);
        Some(id)
    }

    /// A datagram for a pending flow.
    fn pending_datagram(
        &mut self,
        now: Time,
        id: FlowId,
        key: ClientKey,
        datagram: &[u8],
        out: &mut Output,
    ) -> Verdict {
        let over =
            self.shared.peek_bytes().saturating_add(datagram.len()) > self.config.max_peek_bytes;
        let Some(flow) = self.udp.flows.get_mut(id) else {
            return Verdict::Dropped(DropReason::ClientQuicNoFlow);
        };
        let before = flow.usage();
        flow.last_seen = now;
        let UdpPhase::Pending(pending) = &mut flow.phase else {
            return Verdict::Dropped(DropReason::ClientQuicNoFlow);
        };
        if over {
            return Verdict::Dropped(DropReason::PeekMemory);
        }
        let answer = pending.push(datagram);
        let after = flow.usage();
        self.account(key.client, before, after);
        if !matches!(
            answer,
            QuicPeek::NeedMore | QuicPeek::NotQuic | QuicPeek::Discarded(_)
        ) {
            self.peek_done(now, id, key, answer, out);
        }
        Verdict::Consumed
    }
}
