//! The packets of [`Steering::self_check`](super::Steering::self_check) and the tests:
//! one flow, 198.51.100.2:40000 to the service 203.0.113.10:443, reaching the backend
//! 2001:db8:1::10:443 from 2001:db8:64::c633:6402 (the prefix 2001:db8:64::/96), and the
//! builders of IPv4, IPv6 (with extension headers), TCP and ICMP packets the tests make
//! more of.

use std::net::{Ipv4Addr, Ipv6Addr};

use kracauer_core::wire::ip_proto;

/// The flow's client.
pub(super) const CLIENT: Ipv4Addr = Ipv4Addr::new(198, 51, 100, 2);
/// The service address the client connects to.
pub(super) const SERVICE: Ipv4Addr = Ipv4Addr::new(203, 0, 113, 10);
/// The backend the flow reaches.
pub(super) const BACKEND: Ipv6Addr = Ipv6Addr::new(0x2001, 0xdb8, 1, 0, 0, 0, 0, 0x10);
/// A router on the IPv4 side, sending an ICMP error.
const ROUTER_V4: Ipv4Addr = Ipv4Addr::new(203, 0, 113, 1);
/// A router on the IPv6 side, sending an ICMPv6 error.
const ROUTER_V6: Ipv6Addr = Ipv6Addr::new(0x2001, 0xdb8, 1, 0, 0, 0, 0, 1);

/// `client` embedded in 2001:db8:64::/96.
pub(super) fn embed(client: Ipv4Addr) -> Ipv6Addr {
    let [a, b, c, d] = client.octets();
    Ipv6Addr::new(
        0x2001,
        0xdb8,
        0x64,
        0,
        0,
        0,
        u16::from_be_bytes([a, b]),
        u16::from_be_bytes([c, d]),
    )
}

/// An IPv4 header (checksum left 0: steering does not read it) with `options`,
/// then `payload`.
pub(super) fn ipv4(
    protocol: u8,
    src: Ipv4Addr,
    dst: Ipv4Addr,
    options: &[u8],
    payload: &[u8],
) -> Vec<u8> {
    let header_len = 20 + options.len();
    let total = (header_len + payload.len()) as u16;
    let mut p = vec![0x40 | (header_len / 4) as u8, 0];
    p.extend_from_slice(&total.to_be_bytes());
    p.extend_from_slice(&[0, 1, 0x40, 0, 64, protocol, 0, 0]);
    p.extend_from_slice(&src.octets());
    p.extend_from_slice(&dst.octets());
    p.extend_from_slice(options);
    p.extend_from_slice(payload);
    p
}

/// An IPv6 header, then `payload`.
pub(super) fn ipv6(next_header: u8, src: Ipv6Addr, dst: Ipv6Addr, payload: &[u8]) -> Vec<u8> {
    let mut p = vec![0x60, 0, 0, 0];
    p.extend_from_slice(&(payload.len() as u16).to_be_bytes());
    p.extend_from_slice(&[next_header, 64]);
    p.extend_from_slice(&src.octets());
    p.extend_from_slice(&dst.octets());
    p.extend_from_slice(payload);
    p
}

/// An IPv6 extension header for [`with_ext`].
#[derive(Debug, Clone, Copy)]
pub(super) enum Ext {
    /// Hop-by-Hop, Routing or Destination Options (the type) with this many 8-byte units
    /// after the first 8 bytes, filled with Pad1 options (a Routing header of type 0
    /// with no segments left).
    Options(u8, u8),
    /// An Authentication Header with this Payload Len: (it + 2) 4-byte words in all.
    Auth(u8),
    /// A Fragment header with this offset (in 8-byte units) and More Fragments.
    Fragment(u16),
}

impl Ext {
    /// A Hop-by-Hop Options header of 8 bytes.
    pub(super) const HOP: Ext = Ext::Options(ip_proto::HOPOPT, 0);
    /// A Routing header of 24 bytes.
    pub(super) const ROUTING: Ext = Ext::Options(ip_proto::IPV6_ROUTE, 2);
    /// A Destination Options header of 16 bytes.
    pub(super) const DEST: Ext = Ext::Options(ip_proto::IPV6_OPTS, 1);

    fn kind(self) -> u8 {
        match self {
            Ext::Options(kind, _) => kind,
            Ext::Auth(_) => ip_proto::AH,
            Ext::Fragment(_) => ip_proto::IPV6_FRAG,
        }
    }

    /// The header, announcing `next`.
    fn bytes(self, next: u8) -> Vec<u8> {
        match self {
            Ext::Options(_, units) => {
                let mut h = vec![0u8; (usize::from(units) + 1) * 8];
                h[0] = next;
                h[1] = units;
                h
            }
            Ext::Auth(len) => {
                let mut h = vec![0u8; (usize::from(len) + 2) * 4];
                h[0] = next;
                h[1] = len;
                h
            }
            Ext::Fragment(offset) => {
                let [a, b] = ((offset << 3) | 1).to_be_bytes();
                vec![next, 0, a, b, 0, 0, 0, 7]
            }
        }
    }
}

/// `packet` (IPv6 without extension headers) with `chain` between its fixed header and
/// its payload, the payload length fixed up.
pub(super) fn with_ext(packet: &[u8], chain: &[Ext]) -> Vec<u8> {
    let (fixed, payload) = packet.split_at(40);
    let upper = fixed[6];
    let mut out = fixed.to_vec();
    if let Some(first) = chain.first() {
        out[6] = first.kind();
    }
    for (i, h) in chain.iter().enumerate() {
        out.extend_from_slice(&h.bytes(chain.get(i + 1).map_or(upper, |n| n.kind())));
    }
    out.extend_from_slice(payload);
    let len = (out.len() - 40) as u16;
    out[4..6].copy_from_slice(&len.to_be_bytes());
    out
}

/// A TCP header (SYN, no options) from `src` to `dst` port.
pub(super) fn tcp(src: u16, dst: u16) -> Vec<u8> {
    let mut t = Vec::with_capacity(20);
    t.extend_from_slice(&src.to_be_bytes());
    t.extend_from_slice(&dst.to_be_bytes());
    t.extend_from_slice(&[0, 0, 0, 1, 0, 0, 0, 0, 0x50, 0x02, 0xff, 0xff, 0, 0, 0, 0]);
    t
}

/// An ICMP (v4 or v6) message: type, code, 4 bytes of `rest`, then the quote.
pub(super) fn icmp(ty: u8, code: u8, rest: [u8; 4], quote: &[u8]) -> Vec<u8> {
    let mut m = vec![ty, code, 0, 0];
    m.extend_from_slice(&rest);
    m.extend_from_slice(quote);
    m
}

/// The flow's packets in both directions, an ICMP error about each direction, and the
/// backend's segment and ICMPv6 error behind extension headers.
pub(super) fn packets() -> [Vec<u8>; 6] {
    let to_client = ipv4(ip_proto::TCP, SERVICE, CLIENT, &[], &tcp(443, 40000));
    let to_backend = ipv6(ip_proto::TCP, embed(CLIENT), BACKEND, &tcp(40000, 443));
    let from_backend = ipv6(ip_proto::TCP, BACKEND, embed(CLIENT), &tcp(443, 40000));
    let too_big = ipv6(
        ip_proto::ICMPV6,
        ROUTER_V6,
        embed(CLIENT),
        &icmp(2, 0, [0, 0, 0x05, 0], &to_backend[..48]),
    );
    let chain = [
        Ext::HOP,
        Ext::DEST,
        Ext::ROUTING,
        Ext::Auth(4),
        Ext::Fragment(0),
    ];
    [
        ipv4(ip_proto::TCP, CLIENT, SERVICE, &[], &tcp(40000, 443)),
        from_backend.clone(),
        // Fragmentation needed, next-hop MTU 1400.
        ipv4(
            ip_proto::ICMP,
            ROUTER_V4,
            SERVICE,
            &[],
            &icmp(3, 4, [0, 0, 0x05, 0x78], &to_client[..28]),
        ),
        // Packet too big, MTU 1280.
        too_big.clone(),
        with_ext(&from_backend, &chain),
        with_ext(&too_big, &[Ext::HOP, Ext::DEST]),
    ]
}
