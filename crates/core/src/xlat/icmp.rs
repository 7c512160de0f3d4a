//! ICMP translation (RFC 7915 §4.2, §5.2) into a caller-provided output buffer: the
//! outer header, the ICMP header (type/code, MTU, pointer), and for errors the embedded
//! packet with its addresses, ports and TCP sequence numbers rewritten through the
//! engine's [`InnerMapping`], truncated to 1280 (ICMPv6) or 576 (ICMPv4) bytes. The
//! output is written rather than the input rewritten in place because the embedded
//! header changes size too; the copy is bounded by those limits (and by the message
//! size for Echo).

use std::net::{Ipv4Addr, Ipv6Addr};

use super::ip::{
    Ipv4Fields, check_ipv4_options, ipv6_upper_layer, next_hop_limit, ports_sum, v4_pair_sum,
    v6_pair_sum, write_ipv4_header,
};
use super::rfc7915::{Icmpv4Out, Icmpv6Out, map_icmpv4, map_icmpv6, mtu_v4_to_v6, mtu_v6_to_v4};
use super::{HopLimit, IcmpDrop, InnerFlow, InnerMapping, InnerProtocol, NextHopMtus, XlatError};
use crate::wire::checksum;
use crate::wire::icmpv4::msg_type as t4;
use crate::wire::icmpv6::msg_type as t6;
use crate::wire::ip_proto;
use crate::wire::ipv4::{self, Ipv4Packet};
use crate::wire::ipv6::{self, Ipv6Packet};
use crate::wire::{WireError, get16, put16};

/// Largest ICMPv6 error this translator emits (the IPv6 minimum MTU, RFC 4443 §2.4).
pub const MAX_ICMPV6_ERROR: usize = 1280;
/// Largest ICMPv4 error this translator emits (RFC 1812 §4.3.2.3).
pub const MAX_ICMPV4_ERROR: usize = 576;
/// ICMP header length (type, code, checksum, 4 bytes of rest-of-header).
const ICMP_HEADER_LEN: usize = 8;
/// Fewest transport bytes an embedded packet must show: its two ports.
const INNER_L4_MIN: usize = 4;

/// Outer header of an ICMPv6 message translated from ICMPv4.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct IcmpV6Params {
    /// IPv6 source (the engine's choice: the sender's embedded address, or its own).
    pub src: Ipv6Addr,
    /// IPv6 destination.
    pub dst: Ipv6Addr,
    /// Hop-limit policy for the outer header (the embedded one is copied).
    pub hop_limit: HopLimit,
    /// The translator's next-hop MTUs, which cap a Packet Too Big MTU.
    pub mtus: NextHopMtus,
}

/// Outer header of an ICMPv4 message translated from ICMPv6.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct IcmpV4Params {
    /// IPv4 source.
    pub src: Ipv4Addr,
    /// IPv4 destination.
    pub dst: Ipv4Addr,
    /// Hop-limit policy for the outer header (the embedded one is copied).
    pub hop_limit: HopLimit,
    /// The translator's next-hop MTUs, which cap a Fragmentation Needed MTU.
    pub mtus: NextHopMtus,
    /// Identification of the outer IPv4 header (the embedded header gets 0: the
    /// original value is unknown to a stateless translator).
    pub identification: u16,
}

fn inner_error(e: WireError) -> IcmpDrop {
    match e {
        WireError::Truncated | WireError::ExtHeaderOverrun => IcmpDrop::InnerTruncated,
        _ => IcmpDrop::InnerMalformed,
    }
}

/// The embedded packet's transport, or why it is not translated. `icmp` is the ICMP
/// protocol number of the family and `is_error` its error-type test.
fn inner_protocol(
    protocol: u8,
    l4: &[u8],
    icmp: u8,
    is_error: fn(u8) -> bool,
) -> Result<InnerProtocol, IcmpDrop> {
    match protocol {
        ip_proto::TCP => Ok(InnerProtocol::Tcp),
        ip_proto::UDP => Ok(InnerProtocol::Udp),
        p if p == icmp => match l4.first() {
            Some(&ty) if is_error(ty) => Err(IcmpDrop::ErrorAboutError),
            Some(_) => Err(IcmpDrop::InnerProtocol),
            None => Err(IcmpDrop::InnerTruncated),
        },
        _ => Err(IcmpDrop::InnerProtocol),
    }
}

/// What the (possibly truncated) transport bytes show, with addresses added.
fn inner_flow<A>(protocol: InnerProtocol, l4: &[u8], src: A, dst: A) -> InnerFlow<A> {
    let word = |at: usize| -> Option<u32> {
        match l4.get(at..at + 4) {
            Some(&[a, b, c, d]) if protocol == InnerProtocol::Tcp => {
                Some(u32::from_be_bytes([a, b, c, d]))
            }
            _ => None,
        }
    };
    InnerFlow {
        src,
        dst,
        src_port: get16(l4, 0).unwrap_or(0),
        dst_port: get16(l4, 2).unwrap_or(0),
        seq: word(4),
        ack: word(8),
    }
}

fn word_sum(v: u32) -> u32 {
    checksum::sum(&v.to_be_bytes())
}

/// Rewrites the embedded transport bytes `l4` (possibly truncated) from `old` to `new`
/// and updates their checksum incrementally when the copy holds it. `old_pseudo` and
/// `new_pseudo` are the address-pair sums of the pseudo-header.
fn rewrite_inner_l4<A, B>(
    l4: &mut [u8],
    protocol: InnerProtocol,
    old: &InnerFlow<A>,
    new: &InnerFlow<B>,
    old_pseudo: u32,
    new_pseudo: u32,
) {
    let mut old_sum = checksum::combine(old_pseudo, ports_sum(old.src_port, old.dst_port));
    let mut new_sum = checksum::combine(new_pseudo, ports_sum(new.src_port, new.dst_port));
    put16(l4, 0, new.src_port);
    put16(l4, 2, new.dst_port);
    for (at, was, now) in [(4, old.seq, new.seq), (8, old.ack, new.ack)] {
        if let (Some(was), Some(now)) = (was, now) {
            old_sum = checksum::combine(old_sum, word_sum(was));
            new_sum = checksum::combine(new_sum, word_sum(now));
            if let Some(s) = l4.get_mut(at..at + 4) {
                s.copy_from_slice(&now.to_be_bytes());
            }
        }
    }
    let at = match protocol {
        InnerProtocol::Tcp => crate::wire::tcp::field::CHECKSUM.start,
        InnerProtocol::Udp => crate::wire::udp::field::CHECKSUM.start,
    };
    match get16(l4, at) {
        // Not in the copy, or a UDP datagram sent without checksum: nothing to update.
        None => {}
        Some(0) if protocol == InnerProtocol::Udp => {}
        Some(ck) => {
            let ck = match checksum::update_sum(ck, old_sum, new_sum) {
                0 if protocol == InnerProtocol::Udp => 0xffff,
                c => c,
            };
            put16(l4, at, ck);
        }
    }
}

/// Computes the checksum of the ICMP message `msg` (pseudo-header sum `pseudo`, 0 for
/// ICMPv4) and stores it. Recomputed rather than updated: an ICMPv4 message can be all
/// zeros (an Echo Reply with identifier, sequence and data 0), whose only valid checksum
/// is 0xffff, which no incremental update can tell from 0x0000.
fn fill_icmp_checksum(msg: &mut [u8], pseudo: u32) {
    put16(msg, 2, 0);
    let ck = checksum::finish(checksum::combine(pseudo, checksum::sum(msg)));
    put16(msg, 2, ck);
}

/// Checks the bounded output size and returns the limit.
fn output_limit(out: &[u8], cap: usize, min: usize) -> Result<usize, XlatError> {
    let limit = out.len().min(cap);
    if limit < min {
        return Err(XlatError::OutputTooSmall);
    }
    Ok(limit)
}

/// Translates the ICMPv4 message in the IPv4 packet `packet` into an IPv6 packet
/// written at the start of `out`; returns its length.
///
/// Echo Request/Reply keep identifier, sequence and data (the output must hold all of
/// it). Errors are rebuilt: type/code per RFC 7915 §4.2, Packet Too Big MTU per
/// [`mtu_v4_to_v6`], the embedded IPv4 packet turned into IPv6 through `map`, and the result truncated to 1280 bytes (or `out.len()`, which
/// must hold at least the headers and the embedded ports). The input checksum is
/// verified first; the ICMPv6 checksum is computed over the output message (see
/// `fill_icmp_checksum` for why it is not updated incrementally).
pub fn icmpv4_to_icmpv6<M: InnerMapping + ?Sized>(
    packet: &[u8],
    out: &mut [u8],
    to: &IcmpV6Params,
    map: &mut M,
) -> Result<usize, XlatError> {
    let ip = Ipv4Packet::new_checked(packet).map_err(|_| XlatError::Malformed)?;
    if ip.is_fragment() {
        return Err(XlatError::Fragment);
    }
    check_ipv4_options(&ip)?;
    if ip.protocol() != ip_proto::ICMP {
        return Err(XlatError::Protocol(ip.protocol()));
    }
    let hop_limit = next_hop_limit(ip.ttl(), to.hop_limit)?;
    let icmp = ip.payload();
    if icmp.len() < ICMP_HEADER_LEN {
        return Err(XlatError::TransportTruncated);
    }
    if checksum::checksum(icmp) != 0 {
        return Err(XlatError::BadChecksum);
    }
    let (ty, code) = (icmp[0], icmp[1]);
    let kind = map_icmpv4(ty, code, icmp[4])?;
    let (new_ty, new_code) = kind.type_code();
    const AT_ICMP: usize = ipv6::HEADER_LEN;
    const AT_INNER: usize = AT_ICMP + ICMP_HEADER_LEN;

    let icmp_len = if !kind.is_error() {
        let total = AT_ICMP + icmp.len();
        let dst = out
            .get_mut(AT_ICMP..total)
            .ok_or(XlatError::OutputTooSmall)?;
        dst.copy_from_slice(icmp);
        dst[0] = new_ty;
        dst[1] = new_code;
        let pseudo =
            checksum::pseudo_header_v6(&to.src, &to.dst, ip_proto::ICMPV6, icmp.len() as u32);
        fill_icmp_checksum(dst, pseudo);
        icmp.len()
    } else {
        let limit = output_limit(
            out,
            MAX_ICMPV6_ERROR,
            AT_INNER + ipv6::HEADER_LEN + ICMP_HEADER_LEN,
        )?;
        let quoted = &icmp[ICMP_HEADER_LEN..];
        let inner = Ipv4Packet::new_checked_header(quoted).map_err(inner_error)?;
        if inner.is_fragment() {
            return Err(IcmpDrop::InnerFragment.into());
        }
        let l4 = inner.payload();
        let protocol = inner_protocol(inner.protocol(), l4, ip_proto::ICMP, t4::is_error)?;
        if l4.len() < INNER_L4_MIN {
            return Err(IcmpDrop::InnerTruncated.into());
        }
        let at_l4 = AT_INNER + ipv6::HEADER_LEN;
        let copy = l4.len().min(limit - at_l4);
        let seg = &mut out[at_l4..at_l4 + copy];
        seg.copy_from_slice(&l4[..copy]);
        let old = inner_flow(protocol, seg, inner.src_addr(), inner.dst_addr());
        let new = map
            .inner_v4_to_v6(protocol, &old)
            .ok_or(IcmpDrop::InnerUnmapped)?;
        rewrite_inner_l4(
            seg,
            protocol,
            &old,
            &new,
            v4_pair_sum(old.src, old.dst),
            v6_pair_sum(&new.src, &new.dst),
        );
        let inner_payload = inner.total_len().saturating_sub(inner.header_len() as u16);
        write_ipv6_header(
            &mut out[AT_INNER..at_l4],
            inner.tos(),
            inner_payload,
            inner.protocol(),
            inner.ttl(),
            &new.src,
            &new.dst,
        );
        let rest: u32 = match kind {
            Icmpv6Out::PacketTooBig => {
                mtu_v4_to_v6(get16(icmp, 6).unwrap_or(0), inner.total_len(), to.mtus)
            }
            Icmpv6Out::ParameterProblem { pointer, .. } => pointer,
            _ => 0,
        };
        let hdr = &mut out[AT_ICMP..AT_INNER];
        hdr[0] = new_ty;
        hdr[1] = new_code;
        hdr[2..4].fill(0);
        hdr[4..8].copy_from_slice(&rest.to_be_bytes());
        let icmp_len = ICMP_HEADER_LEN + ipv6::HEADER_LEN + copy;
        let pseudo =
            checksum::pseudo_header_v6(&to.src, &to.dst, ip_proto::ICMPV6, icmp_len as u32);
        fill_icmp_checksum(&mut out[AT_ICMP..AT_ICMP + icmp_len], pseudo);
        icmp_len
    };
    let payload_len = u16::try_from(icmp_len).map_err(|_| XlatError::TooBig)?;
    write_ipv6_header(
        &mut out[..AT_ICMP],
        ip.tos(),
        payload_len,
        ip_proto::ICMPV6,
        hop_limit,
        &to.src,
        &to.dst,
    );
    Ok(AT_ICMP + icmp_len)
}

/// Writes a 40-byte IPv6 header (flow label 0) into `out`.
fn write_ipv6_header(
    out: &mut [u8],
    traffic_class: u8,
    payload_len: u16,
    next_header: u8,
    hop_limit: u8,
    src: &Ipv6Addr,
    dst: &Ipv6Addr,
) {
    let mut v6 = Ipv6Packet::new_unchecked(out);
    v6.set_version(6);
    v6.set_traffic_class(traffic_class);
    v6.set_flow_label(0);
    v6.set_payload_len(payload_len);
    v6.set_next_header(next_header);
    v6.set_hop_limit(hop_limit);
    v6.set_src_addr(src);
    v6.set_dst_addr(dst);
}

/// Translates the ICMPv6 message in the IPv6 packet `packet` into an IPv4 packet
/// written at the start of `out`; returns its length.
///
/// Echo Request/Reply keep identifier, sequence and data (the output must hold all of
/// it). Errors are rebuilt: type/code per RFC 7915 §5.2, Fragmentation Needed MTU per
/// [`mtu_v6_to_v4`], the embedded IPv6 packet turned into IPv4 through `map` (its extension headers dropped, Identification 0, DF
/// per §5.1, header checksum computed), and the result truncated to 576 bytes (or
/// `out.len()`, which must hold at least the headers and the embedded ports). The input
/// checksum is verified first; the ICMPv4 checksum is computed over the output message.
pub fn icmpv6_to_icmpv4<M: InnerMapping + ?Sized>(
    packet: &[u8],
    out: &mut [u8],
    to: &IcmpV4Params,
    map: &mut M,
) -> Result<usize, XlatError> {
    let ip = Ipv6Packet::new_checked(packet).map_err(|_| XlatError::Malformed)?;
    let (protocol, upper) = ipv6_upper_layer(&ip)?;
    if protocol != ip_proto::ICMPV6 {
        return Err(XlatError::Protocol(protocol));
    }
    let hop_limit = next_hop_limit(ip.hop_limit(), to.hop_limit)?;
    let icmp = packet
        .get(upper..ip.total_len())
        .ok_or(XlatError::Malformed)?;
    if icmp.len() < ICMP_HEADER_LEN {
        return Err(XlatError::TransportTruncated);
    }
    let pseudo_in = checksum::pseudo_header_v6(
        &ip.src_addr(),
        &ip.dst_addr(),
        ip_proto::ICMPV6,
        icmp.len() as u32,
    );
    if checksum::finish(checksum::combine(pseudo_in, checksum::sum(icmp))) != 0 {
        return Err(XlatError::BadChecksum);
    }
    let (ty, code) = (icmp[0], icmp[1]);
    let rest = u32::from_be_bytes([icmp[4], icmp[5], icmp[6], icmp[7]]);
    let kind = map_icmpv6(ty, code, rest)?;
    let (new_ty, new_code) = kind.type_code();
    const AT_ICMP: usize = ipv4::HEADER_LEN;
    const AT_INNER: usize = AT_ICMP + ICMP_HEADER_LEN;

    let icmp_len = if !kind.is_error() {
        let total = AT_ICMP + icmp.len();
        if total > usize::from(u16::MAX) {
            return Err(XlatError::TooBig);
        }
        let dst = out
            .get_mut(AT_ICMP..total)
            .ok_or(XlatError::OutputTooSmall)?;
        dst.copy_from_slice(icmp);
        dst[0] = new_ty;
        dst[1] = new_code;
        fill_icmp_checksum(dst, 0);
        icmp.len()
    } else {
        let limit = output_limit(
            out,
            MAX_ICMPV4_ERROR,
            AT_INNER + ipv4::HEADER_LEN + ICMP_HEADER_LEN,
        )?;
        let quoted = &icmp[ICMP_HEADER_LEN..];
        let inner = Ipv6Packet::new_checked_header(quoted).map_err(inner_error)?;
        let found = inner.upper_layer().map_err(inner_error)?;
        if found.fragment.is_some() {
            return Err(IcmpDrop::InnerFragment.into());
        }
        let l4_end = inner.total_len().min(quoted.len());
        let l4 = quoted.get(found.offset..l4_end).unwrap_or(&[]);
        let protocol = inner_protocol(found.protocol, l4, ip_proto::ICMPV6, t6::is_error)?;
        if l4.len() < INNER_L4_MIN {
            return Err(IcmpDrop::InnerTruncated.into());
        }
        let at_l4 = AT_INNER + ipv4::HEADER_LEN;
        let copy = l4.len().min(limit - at_l4);
        let seg = &mut out[at_l4..at_l4 + copy];
        seg.copy_from_slice(&l4[..copy]);
        let old = inner_flow(protocol, seg, inner.src_addr(), inner.dst_addr());
        let new = map
            .inner_v6_to_v4(protocol, &old)
            .ok_or(IcmpDrop::InnerUnmapped)?;
        rewrite_inner_l4(
            seg,
            protocol,
            &old,
            &new,
            v6_pair_sum(&old.src, &old.dst),
            v4_pair_sum(new.src, new.dst),
        );
        let inner_total = (inner.total_len().saturating_sub(found.offset) + ipv4::HEADER_LEN)
            .min(usize::from(u16::MAX)) as u16;
        write_ipv4_header(
            &mut out[AT_INNER..at_l4],
            &Ipv4Fields {
                tos: inner.traffic_class(),
                total_len: inner_total,
                identification: 0,
                ttl: inner.hop_limit(),
                protocol: found.protocol,
                src: new.src,
                dst: new.dst,
            },
        );
        let hdr = &mut out[AT_ICMP..AT_INNER];
        hdr[0] = new_ty;
        hdr[1] = new_code;
        hdr[2..8].fill(0);
        match kind {
            Icmpv4Out::FragmentationNeeded => {
                put16(hdr, 6, mtu_v6_to_v4(rest, to.mtus));
            }
            Icmpv4Out::ParameterProblem { pointer } => hdr[4] = pointer,
            _ => {}
        }
        let icmp_len = ICMP_HEADER_LEN + ipv4::HEADER_LEN + copy;
        fill_icmp_checksum(&mut out[AT_ICMP..AT_ICMP + icmp_len], 0);
        icmp_len
    };
    write_ipv4_header(
        &mut out[..AT_ICMP],
        &Ipv4Fields {
            tos: ip.traffic_class(),
            total_len: (AT_ICMP + icmp_len) as u16,
            identification: to.identification,
            ttl: hop_limit,
            protocol: ip_proto::ICMP,
            src: to.src,
            dst: to.dst,
        },
    );
    Ok(AT_ICMP + icmp_len)
}
