//! Second chance between scale-out instances (docs/scale-out.md, "Rebalancing"), the
//! engine's half of it: what a client segment for a flow this engine does not hold
//! becomes.
//!
//! When an instance is added to an ECMP group, or comes back, the upstream router's
//! hash-threshold ECMP moves some running flows to it. With
//! [`EngineConfig::second_chance`](super::EngineConfig::second_chance) on, a non-SYN
//! client segment (RST included: it must end the flow where it is held) for no flow this
//! engine holds, and no valid cookie of its own, is not answered with RST: the verdict is
//! [`Verdict::SecondChance`], the packet left untouched, and the daemon passes it to the
//! peer instances. A peer hands it to its engine with
//! [`Engine::handle_second_chance`]: for a flow it holds (or a cookie of its own) it is
//! handled exactly as if it had come from the TUN; otherwise it is dropped without an
//! answer (another peer may hold the flow), counted as
//! [`DropReason::ClientSecondChanceNoFlow`]. A passed segment is never passed again.
//! When every peer has said it holds no flow for a segment, the daemon gives it back to
//! [`Engine::reset_orphan`], which answers it as an engine without second chance would
//! have: with RST.

use super::{Engine, Verdict};
use crate::base::{ClientKey, DropReason, Protocol, RxChecksum};
use crate::engine::output::Output;
use crate::tcp::seg::SegInfo;
use crate::time::Time;
use crate::wire::tcp::TcpPacket;
use crate::wire::{Ipv4Packet, ip_proto};

/// How a packet reached the engine.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Arrival {
    /// Read from the TUN.
    Tun,
    /// Passed on by a peer instance that does not hold its flow.
    SecondChance,
}

impl Engine {
    /// Handles a client packet a peer instance passed on as a second chance (it holds no
    /// flow for it): `buf[start..]` is the IPv4 packet, with headroom before it as for
    /// [`handle_packet_with`](Self::handle_packet_with). A segment of a flow this engine
    /// holds, or an ACK carrying this engine's cookie, is handled as if it had come from
    /// the TUN; anything else is dropped without an answer and counted.
    pub fn handle_second_chance(
        &mut self,
        now: Time,
        buf: &mut [u8],
        start: usize,
        checksum: RxChecksum,
        out: &mut Output,
    ) -> Verdict {
        self.stats.second_chance_received += 1;
        match self.client_segment_key(buf, start) {
            Some((key, _)) if self.flows.find_client(&key).is_some() => {
                self.stats.second_chance_held += 1;
            }
            Some(_) => {}
            None => {
                // Only TCP to a service address is ever passed on.
                self.stats.drop(DropReason::ClientSecondChanceNoFlow);
                return Verdict::Dropped(DropReason::ClientSecondChanceNoFlow);
            }
        }
        self.handle_arrival(now, buf, start, checksum, Arrival::SecondChance, out)
    }

    /// Answers a client segment that every peer instance said it holds no flow for, as an
    /// engine without second chance would have: with RST (none to a RST), counted as
    /// [`DropReason::ClientNoFlow`]. If this engine holds a flow for its tuple by now (a
    /// new connection), the stale segment is left alone ([`Verdict::Consumed`]).
    pub fn reset_orphan(&mut self, buf: &[u8], start: usize, out: &mut Output) -> Verdict {
        let Some((key, seg)) = self.client_segment_key(buf, start) else {
            self.stats.drop(DropReason::ClientMalformed);
            return Verdict::Dropped(DropReason::ClientMalformed);
        };
        if self.flows.find_client(&key).is_some() || seg.syn() {
            return Verdict::Consumed;
        }
        if !seg.rst() {
            self.send_rst_to_client(&key, &seg, out);
            self.stats.second_chance_orphans_reset += 1;
        }
        self.stats.drop(DropReason::ClientNoFlow);
        Verdict::Dropped(DropReason::ClientNoFlow)
    }

    /// The flow key and segment of a TCP segment to a service address and port, if
    /// `buf[start..]` is one.
    fn client_segment_key(&self, buf: &[u8], start: usize) -> Option<(ClientKey, SegInfo)> {
        let ip = Ipv4Packet::new_checked(buf.get(start..)?).ok()?;
        if ip.protocol() != ip_proto::TCP || ip.is_fragment() {
            return None;
        }
        let tcp = TcpPacket::new_checked(ip.payload()).ok()?;
        let seg = SegInfo::parse(&tcp).ok()?;
        let key = ClientKey {
            client: ip.src_addr(),
            client_port: seg.src_port,
            service: ip.dst_addr(),
            service_port: seg.dst_port,
        };
        self.config.protocol(key.service, key.service_port)?;
        Some((key, seg))
    }

    /// A client segment for no flow this engine holds, with second chance on or passed on
    /// by a peer: a SYN is handled as ever (it starts a flow here); an ACK may carry this
    /// engine's cookie; anything else is passed on (from the TUN) or dropped without an
    /// answer (from a peer).
    #[allow(clippy::too_many_arguments)]
    pub(super) fn without_flow(
        &mut self,
        now: Time,
        key: ClientKey,
        protocol: Protocol,
        seg: &SegInfo,
        checksum_ok: bool,
        payload: &[u8],
        arrival: Arrival,
        out: &mut Output,
    ) -> Verdict {
        if !checksum_ok {
            return Verdict::Dropped(DropReason::ClientBadChecksum);
        }
        if seg.syn() {
            return match arrival {
                Arrival::Tun => self.client_without_flow(now, key, protocol, seg, payload, out),
                // A SYN is never passed on: it starts a flow where it arrives.
                Arrival::SecondChance => Verdict::Dropped(DropReason::ClientSecondChanceNoFlow),
            };
        }
        if seg.ack_flag() && !seg.fin() && !seg.rst() {
            if let Some(verdict) = self.client_cookie_ack(now, key, protocol, seg, payload, out) {
                return verdict;
            }
        }
        match arrival {
            Arrival::Tun => {
                self.stats.second_chance_passed += 1;
                Verdict::SecondChance
            }
            Arrival::SecondChance => Verdict::Dropped(DropReason::ClientSecondChanceNoFlow),
        }
    }
}
