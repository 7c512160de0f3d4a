//! QUIC over UDP, the packets the engine makes (docs/architecture.md, "QUIC"): IPv4
//! datagrams to clients (the CONNECTION_CLOSE refusal, Version Negotiation), the held
//! datagrams of a pending flow sent on as IPv6, ICMP fragmentation needed for a datagram
//! too large for the IPv6 MTU, and ICMP errors about QUIC datagrams translated both ways
//! with the quoted datagram mapped back.

use std::net::{Ipv4Addr, Ipv6Addr, SocketAddrV4};

use super::{Engine, Verdict};
use crate::base::{BackendKey, ClientKey, DropReason};
use crate::engine::output::Output;
use crate::quic::Version;
use crate::quic::header::LongHeader;
use crate::wire::icmpv4::{msg_type as v4type, unreachable};
use crate::wire::{Icmpv4Packet, Ipv4Packet, Ipv6Packet, UdpPacket, ip_proto};
use crate::xlat::{HopLimit, InnerFlow, InnerMapping, InnerProtocol, NextHopMtus};
use crate::xlat::{IcmpV4Params, IcmpV6Params, icmpv4_to_icmpv6, icmpv6_to_icmpv4};

/// Largest ICMPv4 error Kracauer makes (RFC 1812 §4.3.2.3).
const MAX_ICMPV4: usize = 576;
/// Largest ICMPv6 error Kracauer makes (RFC 4443 §2.4).
const MAX_ICMPV6: usize = 1280;

/// The rewrite of a UDP flow's datagram quoted in an ICMP error.
struct UdpMap {
    to_client: Option<ClientKey>,
    to_backend: Option<(BackendKey, Ipv6Addr)>,
}

impl InnerMapping for UdpMap {
    fn inner_v4_to_v6(
        &mut self,
        protocol: InnerProtocol,
        _inner: &InnerFlow<Ipv4Addr>,
    ) -> Option<InnerFlow<Ipv6Addr>> {
        let (bk, client6) = self.to_backend?;
        (protocol == InnerProtocol::Udp).then_some(InnerFlow {
            src: bk.backend,
            dst: client6,
            src_port: bk.backend_port,
            dst_port: bk.client_port,
            seq: None,
            ack: None,
        })
    }

    fn inner_v6_to_v4(
        &mut self,
        protocol: InnerProtocol,
        _inner: &InnerFlow<Ipv6Addr>,
    ) -> Option<InnerFlow<Ipv4Addr>> {
        let ck = self.to_client?;
        (protocol == InnerProtocol::Udp).then_some(InnerFlow {
            src: ck.client,
            dst: ck.service,
            src_port: ck.client_port,
            dst_port: ck.service_port,
            seq: None,
            ack: None,
        })
    }
}

impl Engine {
    /// Puts an IPv4 UDP datagram from `src` to `dst` into the output, its payload of at
    /// most `max` bytes written by `fill`. Counted as made, or dropped when it fails.
    pub(super) fn emit_udp_v4(
        &mut self,
        src: SocketAddrV4,
        dst: SocketAddrV4,
        max: usize,
        out: &mut Output,
        fill: impl FnOnce(&mut [u8]) -> Result<usize, ()>,
    ) -> bool {
        let ident = self.ident();
        let made = out.push(28 + max, |b| -> Result<usize, ()> {
            let n = fill(b.get_mut(28..).ok_or(())?)?;
            let total = u16::try_from(28 + n).map_err(|_| ())?;
            {
                let mut ip = Ipv4Packet::new_unchecked(&mut b[..20]);
                ip.set_version(4);
                ip.set_header_len(20);
                ip.set_tos(0);
                ip.set_total_len(total);
                ip.set_ident(ident);
                ip.set_flags_and_offset(0);
                ip.set_dont_frag(true);
                ip.set_ttl(crate::tcp::emit::HOP_LIMIT);
                ip.set_protocol(ip_proto::UDP);
                ip.set_src_addr(*src.ip());
                ip.set_dst_addr(*dst.ip());
                ip.fill_checksum();
            }
            let mut udp = UdpPacket::new_unchecked(&mut b[20..28 + n]);
            udp.set_src_port(src.port());
            udp.set_dst_port(dst.port());
            udp.set_len(total - 20);
            udp.fill_checksum_v4(*src.ip(), *dst.ip());
            Ok(28 + n)
        });
        self.count_made(made)
    }

    /// Puts an IPv6 UDP datagram carrying `payload` into the output (a held datagram of a
    /// pending flow, sent on once the flow is routed).
    pub(super) fn emit_udp_v6(
        &mut self,
        src: &Ipv6Addr,
        dst: &Ipv6Addr,
        (src_port, dst_port): (u16, u16),
        payload: &[u8],
        out: &mut Output,
    ) -> bool {
        let made = out.push(48 + payload.len(), |b| -> Result<usize, ()> {
            let len = u16::try_from(8 + payload.len()).map_err(|_| ())?;
            {
                let mut ip = Ipv6Packet::new_unchecked(&mut b[..40]);
                ip.set_version(6);
                ip.set_traffic_class(0);
                ip.set_flow_label(0);
                ip.set_payload_len(len);
                ip.set_next_header(ip_proto::UDP);
                ip.set_hop_limit(crate::tcp::emit::HOP_LIMIT);
                ip.set_src_addr(src);
                ip.set_dst_addr(dst);
            }
            b[48..48 + payload.len()].copy_from_slice(payload);
            let mut udp = UdpPacket::new_unchecked(&mut b[40..48 + payload.len()]);
            udp.set_src_port(src_port);
            udp.set_dst_port(dst_port);
            udp.set_len(len);
            udp.fill_checksum_v6(src, dst);
            Ok(48 + payload.len())
        });
        self.count_made(made)
    }

    fn count_made<E>(
        &mut self,
        made: Result<Result<(), E>, crate::engine::output::OutputFull>,
    ) -> bool {
        match made {
            Ok(Ok(())) => {
                self.stats.made += 1;
                true
            }
            _ => {
                self.stats.drop(DropReason::OutputFull);
                false
            }
        }
    }

    /// Version Negotiation for an Initial of a version Kracauer cannot read: the
    /// versions it can (RFC 9000 §17.2.1), addressed to the client's connection IDs, so
    /// the client tries again with one of them.
    pub(super) fn send_version_negotiation(
        &mut self,
        key: &ClientKey,
        header: &LongHeader<'_>,
        out: &mut Output,
    ) {
        let (dcid, scid) = (header.scid(), header.dcid());
        let src = SocketAddrV4::new(key.service, key.service_port);
        let dst = SocketAddrV4::new(key.client, key.client_port);
        let len = 7 + dcid.len() + scid.len() + 8;
        let made = self.emit_udp_v4(src, dst, len, out, |b| {
            let b = b.get_mut(..len).ok_or(())?;
            // The unused bits are the server's to choose; the form bit is set.
            b[0] = 0xc0;
            b[1..5].copy_from_slice(&0u32.to_be_bytes());
            let mut at = 5;
            for cid in [dcid, scid] {
                b[at] = cid.len() as u8;
                b[at + 1..at + 1 + cid.len()].copy_from_slice(cid);
                at += 1 + cid.len();
            }
            b[at..at + 4].copy_from_slice(&Version::V1.wire().to_be_bytes());
            b[at + 4..at + 8].copy_from_slice(&Version::V2.wire().to_be_bytes());
            Ok(len)
        });
        if made {
            self.stats.quic_version_negotiations += 1;
        }
    }

    /// ICMP fragmentation needed for an IPv4 datagram (`packet`) that would not fit the
    /// IPv6 MTU once translated: the MTU the client may use is 20 bytes less.
    pub(super) fn send_frag_needed(&mut self, packet: &[u8], out: &mut Output) {
        let Ok(ip) = Ipv4Packet::new_checked(packet) else {
            return;
        };
        let quoted = packet
            .get(..(ip.header_len() + 8).min(packet.len()))
            .unwrap_or_default();
        let mtu = self.config.ipv6_mtu.saturating_sub(20);
        let (src, dst) = (ip.dst_addr(), ip.src_addr());
        let total = 20 + 8 + quoted.len();
        let ident = self.ident();
        let made = out.push(total, |b| -> Result<usize, ()> {
            let total16 = u16::try_from(total).map_err(|_| ())?;
            {
                let mut v4 = Ipv4Packet::new_unchecked(&mut b[..20]);
                v4.set_version(4);
                v4.set_header_len(20);
                v4.set_tos(0);
                v4.set_total_len(total16);
                v4.set_ident(ident);
                v4.set_flags_and_offset(0);
                v4.set_ttl(crate::tcp::emit::HOP_LIMIT);
                v4.set_protocol(ip_proto::ICMP);
                v4.set_src_addr(src);
                v4.set_dst_addr(dst);
                v4.fill_checksum();
            }
            b[28..total].copy_from_slice(quoted);
            let mut icmp = Icmpv4Packet::new_unchecked(&mut b[20..total]);
            icmp.set_msg_type(v4type::DEST_UNREACHABLE);
            icmp.set_code(unreachable::FRAG_NEEDED);
            icmp.set_rest_of_header(0);
            icmp.set_next_hop_mtu(mtu);
            icmp.fill_checksum();
            Ok(total)
        });
        self.count_made(made);
    }

    /// An ICMPv6 error quoting a UDP datagram Kracauer sent a backend (`quoted`:
    /// addresses and ports): an ICMPv4 error to the client about its datagram. The
    /// kernel's own Packet Too Big for a datagram over the path MTU comes this way.
    pub(super) fn udp_backend_icmp(
        &mut self,
        packet: &[u8],
        (src, dst, sport, dport): (Ipv6Addr, Ipv6Addr, u16, u16),
        out: &mut Output,
    ) -> Verdict {
        let Some((_, client)) = self.extract_client(src) else {
            return Verdict::Dropped(DropReason::BackendIcmp);
        };
        let key = BackendKey {
            backend: dst,
            backend_port: dport,
            client,
            client_port: sport,
        };
        let Some((ck, _)) = self
            .udp
            .flows
            .find_backend(&key)
            .and_then(|id| self.udp.flows.keys(id))
        else {
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
        let mut map = UdpMap {
            to_client: Some(ck),
            to_backend: None,
        };
        match out.push(MAX_ICMPV4, |b| {
            icmpv6_to_icmpv4(packet, b, &params, &mut map)
        }) {
            Ok(Ok(())) => {
                self.stats.made += 1;
                Verdict::Consumed
            }
            Ok(Err(_)) => Verdict::Dropped(DropReason::BackendIcmp),
            Err(_) => Verdict::Dropped(DropReason::OutputFull),
        }
    }

    /// An ICMPv4 error from a client quoting a datagram of a routed QUIC flow: an ICMPv6
    /// error to its backend.
    pub(super) fn udp_client_icmp(
        &mut self,
        packet: &[u8],
        key: ClientKey,
        out: &mut Output,
    ) -> Verdict {
        let id = self.udp.flows.find_client(&key);
        let (Some((_, Some(bk))), Some(prefix)) = (
            id.and_then(|id| self.udp.flows.keys(id)),
            id.and_then(|id| self.udp.flows.get(id)).map(|f| f.prefix),
        ) else {
            return Verdict::Dropped(DropReason::ClientIcmp);
        };
        let Ok(ip) = Ipv4Packet::new_checked(packet) else {
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
        let mut map = UdpMap {
            to_client: None,
            to_backend: Some((bk, client6)),
        };
        match out.push(MAX_ICMPV6, |b| {
            icmpv4_to_icmpv6(packet, b, &params, &mut map)
        }) {
            Ok(Ok(())) => {
                self.stats.made += 1;
                Verdict::Consumed
            }
            Ok(Err(_)) => Verdict::Dropped(DropReason::ClientIcmp),
            Err(_) => Verdict::Dropped(DropReason::OutputFull),
        }
    }
}
