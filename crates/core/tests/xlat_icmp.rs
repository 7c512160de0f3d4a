//! ICMP translation checked with `etherparse`: outer header, ICMP type/code/MTU/pointer
//! and checksum, and the embedded packet (addresses, ports, sequence numbers and its
//! transport checksum as if computed over the whole original packet).

use std::net::{Ipv4Addr, Ipv6Addr};

use etherparse::{
    Icmpv4Slice, Icmpv4Type, Icmpv6Slice, Icmpv6Type, Ipv4Header, Ipv6Header, PacketBuilder,
    TcpHeader, UdpHeader, icmpv4::DestUnreachableHeader,
};
use kracauer_core::xlat::{
    HopLimit, IcmpDrop, IcmpV4Params, IcmpV6Params, InnerFlow, InnerMapping, InnerProtocol,
    NextHopMtus, XlatError, icmpv4_to_icmpv6, icmpv6_to_icmpv4,
};

const CLIENT4: Ipv4Addr = Ipv4Addr::new(198, 51, 100, 2);
const SERVICE4: Ipv4Addr = Ipv4Addr::new(203, 0, 113, 10);
const ROUTER4: Ipv4Addr = Ipv4Addr::new(203, 0, 113, 1);
const CLIENT6: Ipv6Addr = Ipv6Addr::new(0x2001, 0xdb8, 0x64, 0, 0, 0, 0xc633, 0x6402);
const ROUTER4_6: Ipv6Addr = Ipv6Addr::new(0x2001, 0xdb8, 0x64, 0, 0, 0, 0xcb00, 0x7101);
const BACKEND6: Ipv6Addr = Ipv6Addr::new(0x2001, 0xdb8, 1, 0, 0, 0, 0, 2);
const ROUTER6: Ipv6Addr = Ipv6Addr::new(0x2001, 0xdb8, 0xff, 0, 0, 0, 0, 1);
const DELTA: u32 = 0x1000_0000;

/// The engine's view of one spliced flow: client 198.51.100.2:51000 <-> 203.0.113.10:443
/// is [2001:db8:64::c633:6402]:51000 <-> [2001:db8:1::2]:8443, backend sequence numbers
/// are `DELTA` ahead of Kracauer's.
#[derive(Default)]
struct OneFlow {
    calls: usize,
}

impl InnerMapping for OneFlow {
    fn inner_v4_to_v6(
        &mut self,
        _protocol: InnerProtocol,
        inner: &InnerFlow<Ipv4Addr>,
    ) -> Option<InnerFlow<Ipv6Addr>> {
        self.calls += 1;
        // A packet Kracauer sent to the client (from the backend).
        let ok = (inner.src, inner.src_port, inner.dst, inner.dst_port)
            == (SERVICE4, 443, CLIENT4, 51000);
        ok.then(|| InnerFlow {
            src: BACKEND6,
            dst: CLIENT6,
            src_port: 8443,
            dst_port: 51000,
            seq: inner.seq.map(|s| s.wrapping_add(DELTA)),
            ack: inner.ack,
        })
    }

    fn inner_v6_to_v4(
        &mut self,
        _protocol: InnerProtocol,
        inner: &InnerFlow<Ipv6Addr>,
    ) -> Option<InnerFlow<Ipv4Addr>> {
        self.calls += 1;
        // A packet Kracauer sent to the backend (from the client).
        let ok = (inner.src, inner.src_port, inner.dst, inner.dst_port)
            == (CLIENT6, 51000, BACKEND6, 8443);
        ok.then(|| InnerFlow {
            src: CLIENT4,
            dst: SERVICE4,
            src_port: 51000,
            dst_port: 443,
            seq: inner.seq,
            ack: inner.ack.map(|a| a.wrapping_sub(DELTA)),
        })
    }
}

fn payload(len: usize) -> Vec<u8> {
    (0..len).map(|i| (i * 13 + 5) as u8).collect()
}

/// A TCP segment from the backend to the client as Kracauer sent it (IPv4).
fn v4_tcp_to_client(data: &[u8], seq: u32) -> Vec<u8> {
    let b = PacketBuilder::ipv4(SERVICE4.octets(), CLIENT4.octets(), 60)
        .tcp(443, 51000, seq, 500)
        .ack(77);
    let mut v = Vec::new();
    b.write(&mut v, data).expect("build test packet");
    v
}

/// A TCP segment from the client to the backend as Kracauer sent it (IPv6).
fn v6_tcp_to_backend(data: &[u8], ack: u32) -> Vec<u8> {
    let b = PacketBuilder::ipv6(CLIENT6.octets(), BACKEND6.octets(), 60)
        .tcp(51000, 8443, 4242, 500)
        .ack(ack);
    let mut v = Vec::new();
    b.write(&mut v, data).expect("build test packet");
    v
}

/// An ICMPv4 message from ROUTER4 to SERVICE4 quoting `quoted`.
fn icmpv4(ty: u8, code: u8, rest: [u8; 4], quoted: &[u8]) -> Vec<u8> {
    let b = PacketBuilder::ipv4(ROUTER4.octets(), SERVICE4.octets(), 50).icmpv4_raw(ty, code, rest);
    let mut v = Vec::new();
    b.write(&mut v, quoted).expect("build test packet");
    v
}

/// An ICMPv6 message from ROUTER6 to CLIENT6 quoting `quoted`.
fn icmpv6(ty: u8, code: u8, rest: [u8; 4], quoted: &[u8]) -> Vec<u8> {
    let b = PacketBuilder::ipv6(ROUTER6.octets(), CLIENT6.octets(), 50).icmpv6_raw(ty, code, rest);
    let mut v = Vec::new();
    b.write(&mut v, quoted).expect("build test packet");
    v
}

fn to_v6() -> IcmpV6Params {
    IcmpV6Params {
        src: ROUTER4_6,
        dst: BACKEND6,
        hop_limit: HopLimit::Decrement,
        mtus: NextHopMtus::default(),
    }
}

fn to_v4() -> IcmpV4Params {
    IcmpV4Params {
        src: SERVICE4,
        dst: CLIENT4,
        hop_limit: HopLimit::Decrement,
        mtus: NextHopMtus::default(),
        identification: 0x4242,
    }
}

/// Parses an ICMPv6 packet: checks the outer header and the ICMPv6 checksum.
fn parse_v6(out: &[u8]) -> (Ipv6Header, Icmpv6Slice<'_>) {
    let (ip, rest) = Ipv6Header::from_slice(out).expect("etherparse parses the output");
    assert_eq!(ip.next_header.0, 58);
    assert_eq!(usize::from(ip.payload_length), rest.len());
    assert_eq!(Ipv6Addr::from(ip.source), ROUTER4_6);
    assert_eq!(Ipv6Addr::from(ip.destination), BACKEND6);
    assert_eq!(ip.hop_limit, 49);
    let icmp = Icmpv6Slice::from_slice(rest).expect("etherparse parses the output");
    assert!(
        icmp.is_checksum_valid(ip.source, ip.destination),
        "ICMPv6 checksum"
    );
    (ip, icmp)
}

/// Parses an ICMPv4 packet: checks the outer header and both checksums.
fn parse_v4(out: &[u8]) -> (Ipv4Header, Icmpv4Slice<'_>) {
    let (ip, rest) = Ipv4Header::from_slice(out).expect("etherparse parses the output");
    assert_eq!(ip.protocol.0, 1);
    assert_eq!(ip.header_checksum, ip.calc_header_checksum());
    assert_eq!(usize::from(ip.total_len), out.len());
    assert_eq!(Ipv4Addr::from(ip.source), SERVICE4);
    assert_eq!(Ipv4Addr::from(ip.destination), CLIENT4);
    assert_eq!(ip.time_to_live, 49);
    assert_eq!(ip.identification, 0x4242);
    let icmp = Icmpv4Slice::from_slice(rest).expect("etherparse parses the output");
    let expected = icmp.header().icmp_type.calc_checksum(icmp.payload());
    assert_eq!(icmp.checksum(), expected, "ICMPv4 checksum");
    (ip, icmp)
}

#[test]
fn frag_needed_becomes_packet_too_big_with_the_inner_packet_translated() {
    let data = payload(1460);
    let inner = v4_tcp_to_client(&data, 1000);
    // The router quotes the first 548 bytes (576 - 20 - 8).
    let msg = icmpv4(3, 4, [0, 0, 0x05, 0x78], &inner[..548]); // MTU 1400
    let mut out = [0u8; 1500];
    let mut map = OneFlow::default();
    let n = icmpv4_to_icmpv6(&msg, &mut out, &to_v6(), &mut map).unwrap();
    assert_eq!(map.calls, 1);
    assert_eq!(n, 40 + 8 + 40 + 528);
    let (_, icmp) = parse_v6(&out[..n]);
    assert_eq!(icmp.icmp_type(), Icmpv6Type::PacketTooBig { mtu: 1420 });

    let (inner6, l4) = Ipv6Header::from_slice(icmp.payload()).unwrap();
    assert_eq!(Ipv6Addr::from(inner6.source), BACKEND6);
    assert_eq!(Ipv6Addr::from(inner6.destination), CLIENT6);
    assert_eq!(inner6.hop_limit, 60, "inner hop limit is copied");
    assert_eq!(usize::from(inner6.payload_length), 20 + data.len());
    let (tcp, _) = TcpHeader::from_slice(l4).unwrap();
    assert_eq!((tcp.source_port, tcp.destination_port), (8443, 51000));
    assert_eq!(tcp.sequence_number, 1000 + DELTA);
    assert_eq!(tcp.acknowledgment_number, 77);
    assert_eq!(
        tcp.checksum,
        tcp.calc_checksum_ipv6(&inner6, &data).unwrap(),
        "inner checksum is that of the whole translated packet"
    );
    assert_eq!(&l4[20..], &data[..l4.len() - 20], "quoted data kept");
}

#[test]
fn frag_needed_with_mtu_zero_uses_the_rfc1191_plateau() {
    let inner = v4_tcp_to_client(&payload(1460), 1); // total length 1500
    let msg = icmpv4(3, 4, [0; 4], &inner[..28]);
    let mut out = [0u8; 1280];
    let n = icmpv4_to_icmpv6(&msg, &mut out, &to_v6(), &mut OneFlow::default()).unwrap();
    let (_, icmp) = parse_v6(&out[..n]);
    // Plateau below 1500 is 1492, plus 20.
    assert_eq!(icmp.icmp_type(), Icmpv6Type::PacketTooBig { mtu: 1512 });
}

#[test]
fn port_unreachable_for_udp_translates_both_ways() {
    let data = payload(100);
    let b = PacketBuilder::ipv4(SERVICE4.octets(), CLIENT4.octets(), 60).udp(443, 51000);
    let mut inner = Vec::new();
    b.write(&mut inner, &data).unwrap();
    let msg = icmpv4(3, 3, [0; 4], &inner);
    let mut out = [0u8; 1280];
    let n = icmpv4_to_icmpv6(&msg, &mut out, &to_v6(), &mut OneFlow::default()).unwrap();
    let (_, icmp) = parse_v6(&out[..n]);
    assert_eq!(icmp.type_u8(), 1);
    assert_eq!(icmp.code_u8(), 4);
    let (inner6, l4) = Ipv6Header::from_slice(icmp.payload()).unwrap();
    let (udp, rest) = UdpHeader::from_slice(l4).unwrap();
    assert_eq!((udp.source_port, udp.destination_port), (8443, 51000));
    assert_eq!(rest, &data[..]);
    assert_eq!(
        udp.checksum,
        udp.calc_checksum_ipv6(&inner6, &data).unwrap()
    );
}

#[test]
fn packet_too_big_becomes_frag_needed_truncated_to_576() {
    let data = payload(1400);
    let inner = v6_tcp_to_backend(&data, 5 + DELTA);
    let msg = icmpv6(2, 0, 1400u32.to_be_bytes(), &inner[..1232]);
    let mut out = [0u8; 1500];
    let mut map = OneFlow::default();
    let n = icmpv6_to_icmpv4(&msg, &mut out, &to_v4(), &mut map).unwrap();
    assert_eq!(n, 576, "ICMPv4 errors are cut to 576 bytes");
    let (ip, icmp) = parse_v4(&out[..n]);
    assert!(!ip.dont_fragment);
    assert_eq!(
        icmp.icmp_type(),
        Icmpv4Type::DestinationUnreachable(DestUnreachableHeader::FragmentationNeeded {
            next_hop_mtu: 1380
        })
    );
    let (inner4, l4) = Ipv4Header::from_slice(icmp.payload()).unwrap();
    assert_eq!(inner4.header_checksum, inner4.calc_header_checksum());
    assert_eq!(Ipv4Addr::from(inner4.source), CLIENT4);
    assert_eq!(Ipv4Addr::from(inner4.destination), SERVICE4);
    assert_eq!(inner4.time_to_live, 60);
    assert_eq!(usize::from(inner4.total_len), 20 + 20 + data.len());
    assert!(inner4.dont_fragment, "1440 bytes: DF as RFC 7915 §5.1");
    let (tcp, _) = TcpHeader::from_slice(l4).unwrap();
    assert_eq!((tcp.source_port, tcp.destination_port), (51000, 443));
    assert_eq!(tcp.sequence_number, 4242);
    assert_eq!(tcp.acknowledgment_number, 5, "ack - delta");
    assert_eq!(
        tcp.checksum,
        tcp.calc_checksum_ipv4(&inner4, &data).unwrap()
    );
}

#[test]
fn packet_too_big_mtu_is_capped_by_the_translator_ipv4_mtu() {
    let inner = v6_tcp_to_backend(&payload(10), 5);
    let msg = icmpv6(2, 0, 9000u32.to_be_bytes(), &inner);
    let mut out = [0u8; 576];
    let params = IcmpV4Params {
        mtus: NextHopMtus {
            ipv4: 1500,
            ipv6: 9000,
        },
        ..to_v4()
    };
    let n = icmpv6_to_icmpv4(&msg, &mut out, &params, &mut OneFlow::default()).unwrap();
    let (_, icmp) = parse_v4(&out[..n]);
    assert_eq!(icmp.bytes5to8(), [0, 0, 0x05, 0xdc]);
}

#[test]
fn icmpv6_error_is_truncated_to_1280() {
    let inner = v4_tcp_to_client(&payload(1460), 1);
    let msg = icmpv4(11, 0, [0; 4], &inner); // a generous router quoting all of it
    let mut out = vec![0u8; 2000];
    let n = icmpv4_to_icmpv6(&msg, &mut out, &to_v6(), &mut OneFlow::default()).unwrap();
    assert_eq!(n, 1280);
    let (_, icmp) = parse_v6(&out[..n]);
    assert_eq!(icmp.type_u8(), 3);
    assert_eq!(icmp.code_u8(), 0);
}

#[test]
fn parameter_problem_pointer_is_mapped_both_ways() {
    let inner = v4_tcp_to_client(&[], 1);
    let msg = icmpv4(12, 0, [8, 0, 0, 0], &inner); // TTL
    let mut out = [0u8; 1280];
    let n = icmpv4_to_icmpv6(&msg, &mut out, &to_v6(), &mut OneFlow::default()).unwrap();
    let (_, icmp) = parse_v6(&out[..n]);
    assert_eq!((icmp.type_u8(), icmp.code_u8()), (4, 0));
    assert_eq!(icmp.bytes5to8(), [0, 0, 0, 7], "hop limit");

    let inner = v6_tcp_to_backend(&[], 1);
    let msg = icmpv6(4, 0, 24u32.to_be_bytes(), &inner); // destination address
    let n = icmpv6_to_icmpv4(&msg, &mut out, &to_v4(), &mut OneFlow::default()).unwrap();
    let (_, icmp) = parse_v4(&out[..n]);
    assert_eq!((icmp.type_u8(), icmp.code_u8()), (12, 0));
    assert_eq!(icmp.bytes5to8(), [16, 0, 0, 0]);
}

#[test]
fn echo_request_translates_both_ways_with_valid_checksums() {
    let b = PacketBuilder::ipv4(ROUTER4.octets(), CLIENT4.octets(), 50).icmpv4_echo_request(7, 9);
    let mut msg = Vec::new();
    b.write(&mut msg, b"ping payload").unwrap();
    let mut out = [0u8; 200];
    let n = icmpv4_to_icmpv6(&msg, &mut out, &to_v6(), &mut OneFlow::default()).unwrap();
    let (_, icmp) = parse_v6(&out[..n]);
    assert_eq!(icmp.type_u8(), 128);
    assert_eq!(icmp.payload(), b"ping payload");

    let b = PacketBuilder::ipv6(ROUTER6.octets(), CLIENT6.octets(), 50).icmpv6_echo_reply(7, 9);
    let mut msg = Vec::new();
    b.write(&mut msg, b"pong payload").unwrap();
    let n = icmpv6_to_icmpv4(&msg, &mut out, &to_v4(), &mut OneFlow::default()).unwrap();
    let (_, icmp) = parse_v4(&out[..n]);
    assert_eq!(icmp.type_u8(), 0);
    assert_eq!(icmp.bytes5to8(), [0, 7, 0, 9]);
    assert_eq!(icmp.payload(), b"pong payload");
}

#[test]
fn inner_packet_cut_after_its_ports_is_still_translated() {
    let inner = v4_tcp_to_client(&[], 1);
    let msg = icmpv4(3, 1, [0; 4], &inner[..24]);
    let mut out = [0u8; 1280];
    let n = icmpv4_to_icmpv6(&msg, &mut out, &to_v6(), &mut OneFlow::default()).unwrap();
    let (_, icmp) = parse_v6(&out[..n]);
    assert_eq!(&icmp.payload()[40..], &[0x20, 0xfb, 0xc7, 0x38]);
}

#[test]
fn inner_packet_cut_before_its_ports_is_dropped() {
    let inner = v4_tcp_to_client(&[], 1);
    let msg = icmpv4(3, 1, [0; 4], &inner[..22]);
    let mut out = [0u8; 1280];
    let err = icmpv4_to_icmpv6(&msg, &mut out, &to_v6(), &mut OneFlow::default());
    assert_eq!(err, Err(XlatError::IcmpDropped(IcmpDrop::InnerTruncated)));
}

#[test]
fn error_about_an_unknown_flow_is_dropped() {
    let b = PacketBuilder::ipv4(SERVICE4.octets(), CLIENT4.octets(), 60).tcp(443, 40000, 1, 1);
    let mut inner = Vec::new();
    b.write(&mut inner, &[]).unwrap();
    let msg = icmpv4(3, 1, [0; 4], &inner);
    let mut out = [0u8; 1280];
    let err = icmpv4_to_icmpv6(&msg, &mut out, &to_v6(), &mut OneFlow::default());
    assert_eq!(err, Err(XlatError::IcmpDropped(IcmpDrop::InnerUnmapped)));
}

#[test]
fn error_about_an_error_is_dropped() {
    let about = icmpv4(3, 1, [0; 4], &v4_tcp_to_client(&[], 1));
    let msg = icmpv4(3, 1, [0; 4], &about);
    let mut out = [0u8; 1280];
    let err = icmpv4_to_icmpv6(&msg, &mut out, &to_v6(), &mut OneFlow::default());
    assert_eq!(err, Err(XlatError::IcmpDropped(IcmpDrop::ErrorAboutError)));

    let about = icmpv6(1, 0, [0; 4], &v6_tcp_to_backend(&[], 1));
    let msg = icmpv6(1, 0, [0; 4], &about);
    let err = icmpv6_to_icmpv4(&msg, &mut out, &to_v4(), &mut OneFlow::default());
    assert_eq!(err, Err(XlatError::IcmpDropped(IcmpDrop::ErrorAboutError)));
}

#[test]
fn redirect_and_neighbour_solicitation_are_single_hop() {
    let msg = icmpv4(5, 1, [203, 0, 113, 99], &v4_tcp_to_client(&[], 1));
    let mut out = [0u8; 1280];
    let err = icmpv4_to_icmpv6(&msg, &mut out, &to_v6(), &mut OneFlow::default());
    assert_eq!(err, Err(XlatError::IcmpDropped(IcmpDrop::SingleHop)));
    let msg = icmpv6(135, 0, [0; 4], &[0; 16]);
    let err = icmpv6_to_icmpv4(&msg, &mut out, &to_v4(), &mut OneFlow::default());
    assert_eq!(err, Err(XlatError::IcmpDropped(IcmpDrop::SingleHop)));
}

#[test]
fn corrupted_icmp_checksum_is_refused() {
    let mut msg = icmpv4(3, 1, [0; 4], &v4_tcp_to_client(&[], 1));
    let last = msg.len() - 1;
    msg[last] ^= 1;
    let mut out = [0u8; 1280];
    let err = icmpv4_to_icmpv6(&msg, &mut out, &to_v6(), &mut OneFlow::default());
    assert_eq!(err, Err(XlatError::BadChecksum));
}

#[test]
fn output_buffer_too_small_for_the_headers_is_refused() {
    let msg = icmpv4(3, 1, [0; 4], &v4_tcp_to_client(&[], 1));
    let mut out = [0u8; 90];
    let err = icmpv4_to_icmpv6(&msg, &mut out, &to_v6(), &mut OneFlow::default());
    assert_eq!(err, Err(XlatError::OutputTooSmall));
}

#[test]
fn inner_tcp_cut_after_its_sequence_number_gets_it_rewritten() {
    // RFC 792 routers quote the IP header and 8 bytes: ports and sequence number.
    let inner = v4_tcp_to_client(&payload(100), 1000);
    let msg = icmpv4(11, 0, [0; 4], &inner[..28]);
    let mut out = [0u8; 1280];
    let n = icmpv4_to_icmpv6(&msg, &mut out, &to_v6(), &mut OneFlow::default()).unwrap();
    let (_, icmp) = parse_v6(&out[..n]);
    let l4 = &icmp.payload()[40..];
    assert_eq!(l4.len(), 8);
    assert_eq!(&l4[..4], &[0x20, 0xfb, 0xc7, 0x38]);
    assert_eq!(l4[4..8], (1000 + DELTA).to_be_bytes());
}

/// Fuzz reproducer: an all-zero Echo Reply (checksum 0xffff) must come back from IPv6
/// with checksum 0xffff, the only valid one for all-zero data (an incremental update
/// would give 0x0000).
#[test]
fn all_zero_echo_reply_round_trips_with_checksum_ffff() {
    let msg = [
        0x45, 0x00, 0x00, 0x1c, 0x46, 0x30, 0x40, 0x00, 0x32, 0x01, 0x00, 0x00, 203, 0, 113, 1,
        198, 51, 100, 2, 0x00, 0x00, 0xff, 0xff, 0x00, 0x00, 0x00, 0x00,
    ];
    let mut out = [0u8; 100];
    let n = icmpv4_to_icmpv6(&msg, &mut out, &to_v6(), &mut OneFlow::default()).unwrap();
    parse_v6(&out[..n]);
    let mut back = [0u8; 100];
    let m = icmpv6_to_icmpv4(&out[..n], &mut back, &to_v4(), &mut OneFlow::default()).unwrap();
    assert_eq!(m, 28);
    assert_eq!(&back[20..28], &[0, 0, 0xff, 0xff, 0, 0, 0, 0]);
}
