//! In-place translation of TCP and UDP packets between IPv4 and IPv6 (RFC 7915 §4.1,
//! §5.1): header rewrite in the buffer, transport checksum updated incrementally.

use core::ops::Range;
use std::net::{Ipv4Addr, Ipv6Addr};

use super::{HopLimit, Options, V4Rewrite, V6Rewrite, XlatError};
use crate::wire::checksum::{self, ChecksumForm};
use crate::wire::ip_proto;
use crate::wire::ipv4::ipv4_dont_fragment;
use crate::wire::ipv4::{self, Ipv4Packet};
use crate::wire::ipv6::{self, Ipv6Packet};
use crate::wire::{TcpPacket, UdpPacket, get16, put16};

/// Bytes the header grows by from IPv4 (without options) to IPv6.
pub const HEADROOM: usize = ipv6::HEADER_LEN - ipv4::HEADER_LEN;

/// Offset of the checksum field in a TCP header.
const TCP_CHECKSUM_AT: usize = crate::wire::tcp::field::CHECKSUM.start;
/// Offset of the checksum field in a UDP header.
const UDP_CHECKSUM_AT: usize = crate::wire::udp::field::CHECKSUM.start;

/// The hop limit a translated packet leaves with.
pub(crate) fn next_hop_limit(ttl: u8, policy: HopLimit) -> Result<u8, XlatError> {
    match policy {
        HopLimit::Keep => Ok(ttl),
        HopLimit::Decrement if ttl <= 1 => Err(XlatError::HopLimitExceeded),
        HopLimit::Decrement => Ok(ttl - 1),
    }
}

/// Sum of an IPv4 address pair, as it enters a pseudo-header.
pub(crate) fn v4_pair_sum(src: Ipv4Addr, dst: Ipv4Addr) -> u32 {
    checksum::combine(checksum::sum(&src.octets()), checksum::sum(&dst.octets()))
}

/// Sum of an IPv6 address pair, as it enters a pseudo-header.
pub(crate) fn v6_pair_sum(src: &Ipv6Addr, dst: &Ipv6Addr) -> u32 {
    checksum::combine(checksum::sum(&src.octets()), checksum::sum(&dst.octets()))
}

/// Sum of a port pair (the first 32-bit word of a TCP or UDP header).
pub(crate) fn ports_sum(src: u16, dst: u16) -> u32 {
    u32::from(src) + u32::from(dst)
}

/// Which transport a packet carries, with the offset of its checksum field.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Transport {
    Tcp,
    Udp,
}

impl Transport {
    fn of(protocol: u8) -> Result<Self, XlatError> {
        match protocol {
            ip_proto::TCP => Ok(Self::Tcp),
            ip_proto::UDP => Ok(Self::Udp),
            p => Err(XlatError::Protocol(p)),
        }
    }

    fn checksum_at(self) -> usize {
        match self {
            Self::Tcp => TCP_CHECKSUM_AT,
            Self::Udp => UDP_CHECKSUM_AT,
        }
    }

    /// Validates the transport header of `segment` (exactly the L4 bytes).
    fn check(self, segment: &[u8]) -> Result<(), XlatError> {
        let ok = match self {
            Self::Tcp => TcpPacket::new_checked(segment).is_ok(),
            Self::Udp => UdpPacket::new_checked(segment).is_ok(),
        };
        if ok {
            Ok(())
        } else {
            Err(XlatError::TransportTruncated)
        }
    }
}

/// Rewrites the ports of `segment` (its first 4 bytes) and updates its checksum for the
/// pseudo-header address change `old_pseudo -> new_pseudo` and the port change, in the
/// given checksum form. For UDP in full form, a resulting 0 is written as 0xffff.
fn rewrite_transport(
    segment: &mut [u8],
    transport: Transport,
    form: ChecksumForm,
    old_pseudo: u32,
    new_pseudo: u32,
    ports: (u16, u16),
) {
    let at = transport.checksum_at();
    let old_ports = ports_sum(
        get16(segment, 0).unwrap_or(0),
        get16(segment, 2).unwrap_or(0),
    );
    let new_ports = ports_sum(ports.0, ports.1);
    let mut ck = get16(segment, at).unwrap_or(0);
    ck = form.update_pseudo(ck, old_pseudo, new_pseudo);
    ck = form.update_data(ck, old_ports, new_ports);
    if transport == Transport::Udp && form == ChecksumForm::Full && ck == 0 {
        ck = 0xffff;
    }
    put16(segment, 0, ports.0);
    put16(segment, 2, ports.1);
    put16(segment, at, ck);
}

/// Fails with [`XlatError::SourceRoute`] on an unexpired source route option (RFC 7915
/// §4.1) and with [`XlatError::Malformed`] on an option area that does not parse.
pub(crate) fn check_ipv4_options<T: AsRef<[u8]>>(ip: &Ipv4Packet<T>) -> Result<(), XlatError> {
    match ip.has_unexpired_source_route() {
        Ok(false) => Ok(()),
        Ok(true) => Err(XlatError::SourceRoute),
        Err(_) => Err(XlatError::Malformed),
    }
}

/// Translates the IPv4 TCP or UDP packet at `buf[start..]` to IPv6 in place.
///
/// The IPv6 header is written to end where the transport header begins, so the packet
/// grows backwards into the headroom: `start` must be at least 20 (more precisely,
/// `start + IPv4 header length >= 40`). Bytes after the IPv4 Total Length are ignored.
/// Returns the range of `buf` the IPv6 packet now occupies.
///
/// The transport checksum is updated incrementally (addresses and ports); the payload
/// is not read, except for a UDP datagram without checksum (0) in full form, whose
/// checksum IPv6 requires and which is therefore computed over the whole datagram.
pub fn ipv4_to_ipv6(
    buf: &mut [u8],
    start: usize,
    to: &V6Rewrite,
    opts: Options,
) -> Result<Range<usize>, XlatError> {
    let packet = buf.get(start..).ok_or(XlatError::Malformed)?;
    let ip = Ipv4Packet::new_checked(packet).map_err(|_| XlatError::Malformed)?;
    if ip.is_fragment() {
        return Err(XlatError::Fragment);
    }
    check_ipv4_options(&ip)?;
    let transport = Transport::of(ip.protocol())?;
    let hop_limit = next_hop_limit(ip.ttl(), opts.hop_limit)?;
    let header_len = ip.header_len();
    let end = start + usize::from(ip.total_len());
    let l4_start = start + header_len;
    let new_start = l4_start
        .checked_sub(ipv6::HEADER_LEN)
        .ok_or(XlatError::NoHeadroom)?;
    let tos = ip.tos();
    let old_pseudo = v4_pair_sum(ip.src_addr(), ip.dst_addr());
    let protocol = ip.protocol();

    let segment = &mut buf[l4_start..end];
    transport.check(segment)?;
    let l4_len = segment.len() as u16;
    let at = transport.checksum_at();
    if transport == Transport::Udp
        && opts.checksum == ChecksumForm::Full
        && get16(segment, at) == Some(0)
    {
        // IPv4 UDP without checksum: IPv6 requires one, so it is computed in full.
        put16(segment, 0, to.src_port);
        put16(segment, 2, to.dst_port);
        // The UDP length is at most the segment length (checked above).
        let udp_len = get16(segment, 4).unwrap_or(l4_len);
        let datagram = segment.get(..usize::from(udp_len)).unwrap_or(&[]);
        let pseudo = checksum::pseudo_header_v6(&to.src, &to.dst, protocol, u32::from(udp_len));
        let ck = match checksum::finish(checksum::combine(pseudo, checksum::sum(datagram))) {
            0 => 0xffff,
            c => c,
        };
        put16(segment, at, ck);
    } else {
        let new_pseudo = v6_pair_sum(&to.src, &to.dst);
        rewrite_transport(
            segment,
            transport,
            opts.checksum,
            old_pseudo,
            new_pseudo,
            (to.src_port, to.dst_port),
        );
    }

    let mut v6 = Ipv6Packet::new_unchecked(&mut buf[new_start..l4_start]);
    v6.set_version(6);
    v6.set_traffic_class(tos);
    v6.set_flow_label(0);
    v6.set_payload_len(l4_len);
    v6.set_next_header(protocol);
    v6.set_hop_limit(hop_limit);
    v6.set_src_addr(&to.src);
    v6.set_dst_addr(&to.dst);
    Ok(new_start..end)
}

/// Where the upper layer of an IPv6 packet starts, after checking the extension
/// headers RFC 7915 §5.1 lets a translator skip.
pub(crate) fn ipv6_upper_layer<T: AsRef<[u8]>>(
    ip: &Ipv6Packet<T>,
) -> Result<(u8, usize), XlatError> {
    let bytes = ip.as_bytes();
    let mut walk = ip.ext_headers();
    for h in &mut walk {
        let h = h.map_err(|_| XlatError::Malformed)?;
        match h.kind {
            ip_proto::IPV6_FRAG => return Err(XlatError::Fragment),
            ip_proto::IPV6_ROUTE if bytes.get(h.offset + 3).copied().unwrap_or(0) != 0 => {
                return Err(XlatError::RoutingHeader);
            }
            _ => {}
        }
    }
    Ok(walk.upper())
}

/// Translates the IPv6 TCP or UDP packet at `buf[start..]` to IPv4 in place.
///
/// Extension headers (Hop-by-Hop, Destination Options, Routing with Segments Left 0)
/// are skipped; the IPv4 header is written just in front of the transport header, so
/// the packet start moves forward. Bytes after the IPv6 payload are ignored. Returns the
/// range of `buf` the IPv4 packet now occupies.
///
/// DF is set iff the IPv4 packet is larger than 1260 bytes (RFC 7915 §5.1); the
/// Identification is `to.identification`. A UDP checksum of 0 (invalid in IPv6) stays 0,
/// "no checksum" in IPv4; a UDP checksum that becomes 0 is written as 0xffff.
pub fn ipv6_to_ipv4(
    buf: &mut [u8],
    start: usize,
    to: &V4Rewrite,
    opts: Options,
) -> Result<Range<usize>, XlatError> {
    let packet = buf.get(start..).ok_or(XlatError::Malformed)?;
    let ip = Ipv6Packet::new_checked(packet).map_err(|_| XlatError::Malformed)?;
    if ip.payload_len() == 0 && ip.next_header() == ip_proto::HOPOPT {
        // A jumbogram (RFC 2675) or nonsense: neither fits IPv4.
        return Err(XlatError::TooBig);
    }
    let (protocol, upper) = ipv6_upper_layer(&ip)?;
    let transport = Transport::of(protocol)?;
    let hop_limit = next_hop_limit(ip.hop_limit(), opts.hop_limit)?;
    let end = start + ip.total_len();
    let l4_start = start + upper;
    let total_len =
        u16::try_from(end - l4_start + ipv4::HEADER_LEN).map_err(|_| XlatError::TooBig)?;
    let new_start = l4_start - ipv4::HEADER_LEN;
    let tc = ip.traffic_class();
    let old_pseudo = v6_pair_sum(&ip.src_addr(), &ip.dst_addr());

    let segment = &mut buf[l4_start..end];
    transport.check(segment)?;
    let at = transport.checksum_at();
    if transport == Transport::Udp
        && opts.checksum == ChecksumForm::Full
        && get16(segment, at) == Some(0)
    {
        put16(segment, 0, to.src_port);
        put16(segment, 2, to.dst_port);
    } else {
        let new_pseudo = v4_pair_sum(to.src, to.dst);
        rewrite_transport(
            segment,
            transport,
            opts.checksum,
            old_pseudo,
            new_pseudo,
            (to.src_port, to.dst_port),
        );
    }

    write_ipv4_header(
        &mut buf[new_start..l4_start],
        &Ipv4Fields {
            tos: tc,
            total_len,
            identification: to.identification,
            ttl: hop_limit,
            protocol,
            src: to.src,
            dst: to.dst,
        },
    );
    Ok(new_start..end)
}

/// The fields of a fresh 20-byte IPv4 header.
pub(crate) struct Ipv4Fields {
    pub tos: u8,
    pub total_len: u16,
    pub identification: u16,
    pub ttl: u8,
    pub protocol: u8,
    pub src: Ipv4Addr,
    pub dst: Ipv4Addr,
}

/// Writes a 20-byte IPv4 header without options into `out` (exactly 20 bytes), DF per
/// RFC 7915 §5.1, header checksum filled.
pub(crate) fn write_ipv4_header(out: &mut [u8], f: &Ipv4Fields) {
    let mut v4 = Ipv4Packet::new_unchecked(out);
    v4.set_version(4);
    v4.set_header_len(ipv4::HEADER_LEN);
    v4.set_tos(f.tos);
    v4.set_total_len(f.total_len);
    v4.set_ident(f.identification);
    v4.set_flags_and_offset(0);
    v4.set_dont_frag(ipv4_dont_fragment(usize::from(f.total_len)));
    v4.set_ttl(f.ttl);
    v4.set_protocol(f.protocol);
    v4.set_src_addr(f.src);
    v4.set_dst_addr(f.dst);
    v4.fill_checksum();
}
