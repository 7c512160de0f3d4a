//! ICMP for flows (docs/architecture.md, "The splice", ICMP): errors about packets Kracauer sent one
//! side become errors to the other side, with the embedded packet mapped back to what
//! that side sent (addresses, ports, and sequence numbers moved by δ, since Linux drops
//! ICMP errors whose embedded sequence number is outside its window). An error about the
//! backend SYN fails that attempt at once: the next backend of the pool, or the client's
//! RST. Echo requests to a service address are answered.
//!
//! A Packet Too Big (or Fragmentation Needed) that repeats, for the same flow and the same
//! MTU, one translated less than [`TOO_BIG_REPEAT`] before is dropped: the first one made
//! the sender lower its MSS and send again everything it had in flight, so the later
//! ones, about segments already sent again, tell it nothing. With the kernel fast path
//! they would also come late: the too-big segments take the TUN path, the smaller ones
//! sent again take the kernel's and may be acknowledged before the errors about the
//! first ones come back, which the sender's kernel then counts out of window
//! (`TcpExtOutOfWindowIcmps`).

use std::net::{Ipv4Addr, Ipv6Addr};
use std::time::Duration;

use super::{Engine, Verdict};
use crate::base::{BackendKey, ClientKey};
use crate::engine::event::ConnectFailure;
use crate::engine::output::Output;
use crate::engine::stats::DropReason;
use crate::flow::table::FlowId;
use crate::flow::{Flow, Phase};
use crate::time::Time;
use crate::wire::icmpv4::msg_type as v4type;
use crate::wire::icmpv6::msg_type as v6type;
use crate::wire::{Icmpv4Packet, Icmpv6Packet, Ipv4Packet, Ipv6Packet, ip_proto};
use crate::xlat::{HopLimit, InnerFlow, InnerMapping, InnerProtocol, NextHopMtus};
use crate::xlat::{IcmpV4Params, IcmpV6Params, icmpv4_to_icmpv6, icmpv6_to_icmpv4};

/// How long a translated Packet Too Big (or Fragmentation Needed) stands for the repeats
/// of its MTU for its flow: well under the least retransmission timeout (200 ms in Linux),
/// so that if the translated error is lost, the sender's next try is answered again.
const TOO_BIG_REPEAT: Duration = Duration::from_millis(100);

/// The last Packet Too Big or Fragmentation Needed an engine translated: its flow, which
/// side it went to, the MTU it reported and when.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct TooBig {
    flow: FlowId,
    to_client: bool,
    mtu: u32,
    at: Time,
}

/// Largest ICMPv4 error Kracauer makes (RFC 1812 §4.3.2.3).
const MAX_ICMPV4: usize = 576;
/// Largest ICMPv6 error Kracauer makes (RFC 4443 §2.4).
const MAX_ICMPV6: usize = 1280;

/// The splice offset of a flow that has one.
fn delta_of(flow: &Flow) -> Option<u32> {
    flow.spliced().map(|s| s.splice.delta)
}

/// Addresses and ports of the TCP or UDP packet embedded in an ICMP error, read from
/// the (possibly truncated) copy: (src, dst, src port, dst port), and whether it is UDP.
fn embedded_v4(payload: &[u8]) -> Option<(Ipv4Addr, Ipv4Addr, u16, u16, bool)> {
    let ip = Ipv4Packet::new_checked_header(payload).ok()?;
    let udp = ip.protocol() == ip_proto::UDP;
    if !(udp || ip.protocol() == ip_proto::TCP) || ip.frag_offset() != 0 {
        return None;
    }
    let ports = payload.get(ip.header_len()..ip.header_len() + 4)?;
    Some((
        ip.src_addr(),
        ip.dst_addr(),
        u16::from_be_bytes([ports[0], ports[1]]),
        u16::from_be_bytes([ports[2], ports[3]]),
        udp,
    ))
}

/// As [`embedded_v4`], for an IPv6 packet Kracauer sent (no extension headers).
fn embedded_v6(payload: &[u8]) -> Option<(Ipv6Addr, Ipv6Addr, u16, u16, bool)> {
    let ip = Ipv6Packet::new_checked_header(payload).ok()?;
    let udp = ip.next_header() == ip_proto::UDP;
    if !(udp || ip.next_header() == ip_proto::TCP) {
        return None;
    }
    let ports = payload.get(40..44)?;
    Some((
        ip.src_addr(),
        ip.dst_addr(),
        u16::from_be_bytes([ports[0], ports[1]]),
        u16::from_be_bytes([ports[2], ports[3]]),
        udp,
    ))
}

/// The rewrite of one flow's embedded packet, decided before translating.
struct FlowMap {
    /// What the embedded packet becomes for the client: (client, service, client port,
    /// service port), and δ to subtract from its ACK number.
    to_client: Option<(ClientKey, u32)>,
    /// What it becomes for the backend, and δ to add to its sequence number.
    to_backend: Option<(BackendKey, Ipv6Addr, u32)>,
}

impl InnerMapping for FlowMap {
    fn inner_v4_to_v6(
        &mut self,
        protocol: InnerProtocol,
        inner: &InnerFlow<Ipv4Addr>,
    ) -> Option<InnerFlow<Ipv6Addr>> {
        let (bk, client6, delta) = self.to_backend?;
        (protocol == InnerProtocol::Tcp).then(|| InnerFlow {
            src: bk.backend,
            dst: client6,
            src_port: bk.backend_port,
            dst_port: bk.client_port,
            seq: inner.seq.map(|s| s.wrapping_add(delta)),
            ack: inner.ack,
        })
    }

    fn inner_v6_to_v4(
        &mut self,
        protocol: InnerProtocol,
        inner: &InnerFlow<Ipv6Addr>,
    ) -> Option<InnerFlow<Ipv4Addr>> {
        let (ck, delta) = self.to_client?;
        (protocol == InnerProtocol::Tcp).then(|| InnerFlow {
            src: ck.client,
            dst: ck.service,
            src_port: ck.client_port,
            dst_port: ck.service_port,
            seq: inner.seq,
            ack: inner.ack.map(|a| a.wrapping_sub(delta)),
        })
    }
}

impl Engine {
    /// An ICMPv6 packet towards the prefix: an error about a packet Kracauer sent a
    /// backend becomes an ICMPv4 error to the client.
    pub(super) fn backend_icmp(&mut self, now: Time, packet: &[u8], out: &mut Output) -> Verdict {
        let Ok(ip) = Ipv6Packet::new_checked(packet) else {
            return Verdict::Dropped(DropReason::BackendMalformed);
        };
        let Ok(upper) = ip.upper_layer() else {
            return Verdict::Dropped(DropReason::BackendMalformed);
        };
        let Some(icmp) = packet
            .get(upper.offset..ip.payload_range().end)
            .and_then(|b| Icmpv6Packet::new_checked(b).ok())
        else {
            return Verdict::Dropped(DropReason::BackendIcmp);
        };
        if !icmp.is_error() {
            return Verdict::Dropped(DropReason::BackendIcmp);
        }
        let Some((src, dst, sport, dport, udp)) = embedded_v6(icmp.payload()) else {
            return Verdict::Dropped(DropReason::BackendIcmp);
        };
        if udp {
            return self.udp_backend_icmp(packet, (src, dst, sport, dport), out);
        }
        let Some((prefix, client)) = self.extract_client(src) else {
            return Verdict::Dropped(DropReason::BackendIcmp);
        };
        let key = BackendKey {
            backend: dst,
            backend_port: dport,
            client,
            client_port: sport,
        };
        let Some(id) = self.flows.find_backend(&key) else {
            return Verdict::Dropped(DropReason::BackendIcmp);
        };
        let (Some(flow), Some((ck, _))) = (self.flows.get(id), self.flows.keys(id)) else {
            return Verdict::Dropped(DropReason::BackendIcmp);
        };
        if flow.conn.prefix != prefix {
            return Verdict::Dropped(DropReason::BackendIcmp);
        }
        let Some(delta) = delta_of(flow) else {
            if matches!(flow.phase, Phase::Connect(_)) && icmp.msg_type() != v6type::PACKET_TOO_BIG
            {
                // The backend SYN met an error: the next backend, or fail the client now,
                // not at the timeout.
                self.attempt_failed(now, id, ConnectFailure::Unreachable, out);
                return Verdict::Consumed;
            }
            return Verdict::Dropped(DropReason::BackendIcmp);
        };
        let params = IcmpV4Params {
            src: ck.service,
            dst: ck.client,
            hop_limit: HopLimit::Keep,
            mtus: NextHopMtus {
                ipv4: u16::MAX,
                ipv6: u32::from(self.config.ipv6_mtu),
            },
            identification: self.ident(),
        };
        let too_big = (icmp.msg_type() == v6type::PACKET_TOO_BIG).then(|| TooBig {
            flow: id,
            to_client: true,
            mtu: icmp.mtu(),
            at: now,
        });
        if too_big.is_some_and(|t| self.repeats_too_big(&t)) {
            return Verdict::Dropped(DropReason::BackendTooBigRepeated);
        }
        let mut map = FlowMap {
            to_client: Some((ck, delta)),
            to_backend: None,
        };
        match out.push(MAX_ICMPV4, |b| {
            icmpv6_to_icmpv4(packet, b, &params, &mut map)
        }) {
            Ok(Ok(())) => {
                self.stats.made += 1;
                self.last_too_big = too_big.or(self.last_too_big);
                Verdict::Consumed
            }
            Ok(Err(_)) => Verdict::Dropped(DropReason::BackendIcmp),
            Err(_) => Verdict::Dropped(DropReason::OutputFull),
        }
    }

    /// An ICMPv4 packet to a service address: echo requests are answered; an error about
    /// a packet of a spliced flow becomes an ICMPv6 error to its backend.
    pub(super) fn client_icmp(&mut self, now: Time, packet: &[u8], out: &mut Output) -> Verdict {
        let Ok(ip) = Ipv4Packet::new_checked(packet) else {
            return Verdict::Dropped(DropReason::ClientMalformed);
        };
        if ip.is_fragment() {
            return Verdict::Dropped(DropReason::ClientFragment);
        }
        let Ok(icmp) = Icmpv4Packet::new_checked(ip.payload()) else {
            return Verdict::Dropped(DropReason::ClientIcmp);
        };
        // ICMP is never on the forwarding fast path: a corrupt message is neither
        // answered nor translated (as the kernel's own ICMP receive path does).
        if !icmp.verify_checksum() {
            return Verdict::Dropped(DropReason::ClientIcmp);
        }
        if icmp.msg_type() == v4type::ECHO_REQUEST && icmp.code() == 0 {
            return self.echo_reply(&ip, out);
        }
        if !icmp.is_error() {
            return Verdict::Dropped(DropReason::ClientIcmp);
        }
        let Some((src, dst, sport, dport, udp)) = embedded_v4(icmp.payload()) else {
            return Verdict::Dropped(DropReason::ClientIcmp);
        };
        let key = ClientKey {
            client: dst,
            client_port: dport,
            service: src,
            service_port: sport,
        };
        if udp {
            return self.udp_client_icmp(packet, key, out);
        }
        let Some(id) = self.flows.find_client(&key) else {
            return Verdict::Dropped(DropReason::ClientIcmp);
        };
        let (Some(delta), Some(prefix), Some((_, Some(bk)))) = (
            self.flows.get(id).and_then(delta_of),
            self.flows.get(id).map(|f| f.conn.prefix),
            self.flows.keys(id),
        ) else {
            return Verdict::Dropped(DropReason::ClientIcmp);
        };
        let client6 = prefix.embed(key.client);
        let params = IcmpV6Params {
            src: prefix.embed(ip.src_addr()),
            dst: bk.backend,
            hop_limit: HopLimit::Keep,
            mtus: NextHopMtus {
                ipv4: u16::MAX,
                ipv6: u32::from(self.config.ipv6_mtu),
            },
        };
        let frag_needed = icmp.msg_type() == v4type::DEST_UNREACHABLE
            && icmp.code() == crate::wire::icmpv4::unreachable::FRAG_NEEDED;
        let too_big = frag_needed.then(|| TooBig {
            flow: id,
            to_client: false,
            mtu: u32::from(icmp.next_hop_mtu()),
            at: now,
        });
        if too_big.is_some_and(|t| self.repeats_too_big(&t)) {
            return Verdict::Dropped(DropReason::ClientTooBigRepeated);
        }
        let mut map = FlowMap {
            to_client: None,
            to_backend: Some((bk, client6, delta)),
        };
        match out.push(MAX_ICMPV6, |b| {
            icmpv4_to_icmpv6(packet, b, &params, &mut map)
        }) {
            Ok(Ok(())) => {
                self.stats.made += 1;
                self.last_too_big = too_big.or(self.last_too_big);
                Verdict::Consumed
            }
            Ok(Err(_)) => Verdict::Dropped(DropReason::ClientIcmp),
            Err(_) => Verdict::Dropped(DropReason::OutputFull),
        }
    }

    /// Whether `t` repeats the last Packet Too Big or Fragmentation Needed translated:
    /// the same flow, side and MTU, less than [`TOO_BIG_REPEAT`] after it.
    fn repeats_too_big(&self, t: &TooBig) -> bool {
        self.last_too_big.is_some_and(|last| {
            (last.flow, last.to_client, last.mtu) == (t.flow, t.to_client, t.mtu)
                && t.at.saturating_since(last.at) < TOO_BIG_REPEAT
        })
    }

    /// Answers an echo request to a service address.
    fn echo_reply(&mut self, ip: &Ipv4Packet<&[u8]>, out: &mut Output) -> Verdict {
        let (src, dst) = (ip.dst_addr(), ip.src_addr());
        let request = ip.payload();
        let total = 20 + request.len();
        let ident = self.ident();
        let made = out.push(total, |b| -> Result<usize, ()> {
            let total16 = u16::try_from(total).map_err(|_| ())?;
            {
                let mut reply = Ipv4Packet::new_unchecked(&mut b[..]);
                reply.set_version(4);
                reply.set_header_len(20);
                reply.set_tos(0);
                reply.set_total_len(total16);
                reply.set_ident(ident);
                reply.set_flags_and_offset(0);
                reply.set_ttl(crate::tcp::emit::HOP_LIMIT);
                reply.set_protocol(ip_proto::ICMP);
                reply.set_src_addr(src);
                reply.set_dst_addr(dst);
                reply.fill_checksum();
            }
            b[20..total].copy_from_slice(request);
            let mut icmp = Icmpv4Packet::new_unchecked(&mut b[20..total]);
            icmp.set_msg_type(v4type::ECHO_REPLY);
            icmp.fill_checksum();
            Ok(total)
        });
        match made {
            Ok(Ok(())) => {
                self.stats.made += 1;
                Verdict::Consumed
            }
            _ => Verdict::Dropped(DropReason::OutputFull),
        }
    }
}
