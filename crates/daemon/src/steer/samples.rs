//! The packets of [`Steering::self_check`](super::Steering::self_check) and the tests:
//! one flow, 198.51.100.2:40000 to the service 203.0.113.10:443, reaching the backend
//! 2001:db8:1::10:443 from 2001:db8:64::c633:6402 (the prefix 2001:db8:64::/96), and the
//! builders of IPv4, IPv6, TCP and ICMP packets the tests make more of.

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

/// The flow's packets in both directions and an ICMP error about each direction.
pub(super) fn packets() -> [Vec<u8>; 4] {
    let to_client = ipv4(ip_proto::TCP, SERVICE, CLIENT, &[], &tcp(443, 40000));
    let to_backend = ipv6(ip_proto::TCP, embed(CLIENT), BACKEND, &tcp(40000, 443));
    [
        ipv4(ip_proto::TCP, CLIENT, SERVICE, &[], &tcp(40000, 443)),
        ipv6(ip_proto::TCP, BACKEND, embed(CLIENT), &tcp(443, 40000)),
        // Fragmentation needed, next-hop MTU 1400.
        ipv4(
            ip_proto::ICMP,
            ROUTER_V4,
            SERVICE,
            &[],
            &icmp(3, 4, [0, 0, 0x05, 0x78], &to_client[..28]),
        ),
        // Packet too big, MTU 1280.
        ipv6(
            ip_proto::ICMPV6,
            ROUTER_V6,
            embed(CLIENT),
            &icmp(2, 0, [0, 0, 0x05, 0], &to_backend[..48]),
        ),
    ]
}
