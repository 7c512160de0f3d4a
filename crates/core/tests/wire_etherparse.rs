//! Cross-checks `kracauer_core::wire` against etherparse, an independent implementation:
//! packets built by etherparse's builder parse to the same fields with our views and
//! carry the checksums ours compute; and, with proptest, incremental checksum updates
//! (full and partial forms) equal what etherparse recomputes from scratch.
#![allow(
    clippy::unwrap_used,
    reason = "test helpers: a failed unwrap is a failed test"
)]

use std::net::{Ipv4Addr, Ipv6Addr};

use etherparse::{
    IpDscp, IpEcn, IpFragOffset, IpHeaders, IpNumber, Ipv4Extensions, Ipv4Header, Ipv6Extensions,
    Ipv6FlowLabel, Ipv6Header, PacketBuilder, TcpHeader, TcpOptionElement, UdpHeader,
};
use kracauer_core::wire::checksum::{self, ChecksumForm};
use kracauer_core::wire::tcp::{SeqNumber, TcpOption, TcpPacket};
use kracauer_core::wire::{
    Icmpv4Packet, Icmpv6Packet, Ipv4Packet, Ipv6Packet, UdpPacket, icmpv4, icmpv6, ip_proto,
};
use proptest::prelude::*;

/// A TCP option in a form both libraries can be compared in.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Opt {
    Mss(u16),
    Ws(u8),
    SackPerm,
    Sack(Vec<(u32, u32)>),
    Ts(u32, u32),
}

fn ours(p: &TcpPacket<&[u8]>) -> Vec<Opt> {
    p.options()
        .options()
        .map(|o| match o.expect("well-formed options") {
            TcpOption::Mss(m) => Opt::Mss(m),
            TcpOption::WindowScale(s) => Opt::Ws(s),
            TcpOption::SackPermitted => Opt::SackPerm,
            TcpOption::Sack(b) => Opt::Sack(b.iter().map(|(l, r)| (l.0, r.0)).collect()),
            TcpOption::Timestamps { tsval, tsecr } => Opt::Ts(tsval, tsecr),
            other => panic!("unexpected {other:?}"),
        })
        .collect()
}

fn theirs(opts: &[TcpOptionElement]) -> Vec<Opt> {
    opts.iter()
        .filter_map(|o| match *o {
            TcpOptionElement::Noop => None,
            TcpOptionElement::MaximumSegmentSize(m) => Some(Opt::Mss(m)),
            TcpOptionElement::WindowScale(s) => Some(Opt::Ws(s)),
            TcpOptionElement::SelectiveAcknowledgementPermitted => Some(Opt::SackPerm),
            TcpOptionElement::SelectiveAcknowledgement(first, rest) => Some(Opt::Sack(
                std::iter::once(first)
                    .chain(rest.iter().flatten().copied())
                    .collect(),
            )),
            TcpOptionElement::Timestamp(v, e) => Some(Opt::Ts(v, e)),
        })
        .collect()
}

fn options_len(opts: &[TcpOptionElement]) -> usize {
    opts.iter()
        .map(|o| match o {
            TcpOptionElement::Noop => 1,
            TcpOptionElement::MaximumSegmentSize(_) => 4,
            TcpOptionElement::WindowScale(_) => 3,
            TcpOptionElement::SelectiveAcknowledgementPermitted => 2,
            TcpOptionElement::SelectiveAcknowledgement(_, rest) => {
                10 + 8 * rest.iter().flatten().count()
            }
            TcpOptionElement::Timestamp(..) => 10,
        })
        .sum()
}

fn option_strategy() -> impl Strategy<Value = TcpOptionElement> {
    prop_oneof![
        Just(TcpOptionElement::Noop),
        any::<u16>().prop_map(TcpOptionElement::MaximumSegmentSize),
        any::<u8>().prop_map(TcpOptionElement::WindowScale),
        Just(TcpOptionElement::SelectiveAcknowledgementPermitted),
        (
            any::<(u32, u32)>(),
            proptest::collection::vec(any::<(u32, u32)>(), 0..=2)
        )
            .prop_map(|(first, more)| {
                let mut rest = [None; 3];
                for (slot, b) in rest.iter_mut().zip(more) {
                    *slot = Some(b);
                }
                TcpOptionElement::SelectiveAcknowledgement(first, rest)
            }),
        any::<(u32, u32)>().prop_map(|(v, e)| TcpOptionElement::Timestamp(v, e)),
    ]
}

fn options_strategy() -> impl Strategy<Value = Vec<TcpOptionElement>> {
    proptest::collection::vec(option_strategy(), 0..6).prop_map(|mut v| {
        while options_len(&v) > 40 {
            v.pop();
        }
        v
    })
}

#[derive(Debug, Clone)]
struct Tcp {
    sport: u16,
    dport: u16,
    seq: u32,
    ack: u32,
    win: u16,
    flags: u8,
    urg: u16,
    opts: Vec<TcpOptionElement>,
    payload: Vec<u8>,
}

fn tcp_strategy() -> impl Strategy<Value = Tcp> {
    (
        any::<(u16, u16, u32, u32, u16, u8, u16)>(),
        options_strategy(),
        proptest::collection::vec(any::<u8>(), 0..200),
    )
        .prop_map(
            |((sport, dport, seq, ack, win, flags, urg), opts, payload)| Tcp {
                sport,
                dport,
                seq,
                ack,
                win,
                flags,
                urg,
                opts,
                payload,
            },
        )
}

fn tcp_header(t: &Tcp) -> TcpHeader {
    let mut h = TcpHeader::new(t.sport, t.dport, t.seq, t.win);
    h.acknowledgment_number = t.ack;
    h.fin = t.flags & 0x01 != 0;
    h.syn = t.flags & 0x02 != 0;
    h.rst = t.flags & 0x04 != 0;
    h.psh = t.flags & 0x08 != 0;
    h.ack = t.flags & 0x10 != 0;
    h.urg = t.flags & 0x20 != 0;
    h.ece = t.flags & 0x40 != 0;
    h.cwr = t.flags & 0x80 != 0;
    h.urgent_pointer = t.urg;
    h.set_options(&t.opts).expect("options fit");
    h
}

fn check_tcp(seg: &[u8], t: &Tcp) {
    let p = TcpPacket::new_checked_options(seg).expect("etherparse's segment parses");
    assert_eq!(p.src_port(), t.sport);
    assert_eq!(p.dst_port(), t.dport);
    assert_eq!(p.seq_number(), SeqNumber(t.seq));
    assert_eq!(p.ack_number(), SeqNumber(t.ack));
    assert_eq!(p.window_len(), t.win);
    assert_eq!(p.flags(), t.flags);
    assert_eq!(p.urgent_at(), t.urg);
    assert_eq!(p.header_len(), 20 + options_len(&t.opts).div_ceil(4) * 4);
    assert_eq!(p.payload(), &t.payload[..]);
    assert_eq!(ours(&p), theirs(&t.opts));
}

fn v4_header(src: [u8; 4], dst: [u8; 4], ttl: u8, ident: u16, tos: u8, opts: &[u8]) -> Ipv4Header {
    let mut h = Ipv4Header::new(0, ttl, IpNumber::TCP, src, dst).expect("header");
    h.identification = ident;
    h.dscp = IpDscp::try_new(tos >> 2).expect("6 bits");
    h.ecn = IpEcn::try_new(tos & 3).expect("2 bits");
    h.dont_fragment = ident & 1 == 0;
    h.options = opts.try_into().expect("options multiple of 4");
    h
}

#[test]
fn linux_like_syn_built_by_etherparse_parses_field_for_field() {
    let t = Tcp {
        sport: 40000,
        dport: 443,
        seq: 0x6b8b_4567,
        ack: 0,
        win: 64240,
        flags: 0x02,
        urg: 0,
        opts: vec![
            TcpOptionElement::MaximumSegmentSize(1460),
            TcpOptionElement::SelectiveAcknowledgementPermitted,
            TcpOptionElement::Timestamp(123_456, 0),
            TcpOptionElement::Noop,
            TcpOptionElement::WindowScale(7),
        ],
        payload: vec![],
    };
    let ip = v4_header([198, 51, 100, 2], [203, 0, 113, 10], 64, 0x1c46, 0, &[]);
    let builder = PacketBuilder::ip(IpHeaders::Ipv4(ip, Ipv4Extensions::default()))
        .tcp_header(tcp_header(&t));
    let mut pkt = Vec::new();
    builder.write(&mut pkt, &t.payload).unwrap();
    let ip = Ipv4Packet::new_checked(&pkt[..]).unwrap();
    assert_eq!(ip.total_len(), 60);
    assert!(ip.verify_checksum());
    check_tcp(ip.payload(), &t);
    let tcp = TcpPacket::new_checked(ip.payload()).unwrap();
    assert!(tcp.verify_checksum_v4(ip.src_addr(), ip.dst_addr()));
}

#[test]
fn ipv6_udp_and_icmp_built_by_etherparse_parse_and_verify() {
    let src: [u8; 16] = "2001:db8:64::c633:6402"
        .parse::<Ipv6Addr>()
        .unwrap()
        .octets();
    let dst: [u8; 16] = "2001:db8:1::2".parse::<Ipv6Addr>().unwrap().octets();
    let (s6, d6) = (Ipv6Addr::from(src), Ipv6Addr::from(dst));

    let mut pkt = Vec::new();
    PacketBuilder::ipv6(src, dst, 33)
        .udp(5353, 53)
        .write(&mut pkt, b"query")
        .unwrap();
    let ip = Ipv6Packet::new_checked(&pkt[..]).unwrap();
    assert_eq!(
        (ip.hop_limit(), ip.next_header(), ip.payload_len()),
        (33, ip_proto::UDP, 13)
    );
    let udp = UdpPacket::new_checked(ip.payload()).unwrap();
    assert_eq!((udp.src_port(), udp.dst_port(), udp.len()), (5353, 53, 13));
    assert_eq!(udp.payload(), b"query");
    assert!(udp.verify_checksum_v6(&s6, &d6));

    let mut pkt = Vec::new();
    PacketBuilder::ipv6(src, dst, 64)
        .icmpv6(etherparse::Icmpv6Type::PacketTooBig { mtu: 1280 })
        .write(&mut pkt, &[0x60; 48])
        .unwrap();
    let ip = Ipv6Packet::new_checked(&pkt[..]).unwrap();
    let icmp = Icmpv6Packet::new_checked(ip.payload()).unwrap();
    assert_eq!(icmp.msg_type(), icmpv6::msg_type::PACKET_TOO_BIG);
    assert_eq!(icmp.mtu(), 1280);
    assert!(icmp.is_error());
    assert!(icmp.verify_checksum(&s6, &d6));
    assert_eq!(icmp.payload(), &[0x60; 48]);

    let mut pkt = Vec::new();
    PacketBuilder::ipv6(src, dst, 64)
        .icmpv6_echo_request(0x4242, 7)
        .write(&mut pkt, b"ping")
        .unwrap();
    let ip = Ipv6Packet::new_checked(&pkt[..]).unwrap();
    let icmp = Icmpv6Packet::new_checked(ip.payload()).unwrap();
    assert_eq!(
        (icmp.msg_type(), icmp.echo_ident(), icmp.echo_seq_no()),
        (128, 0x4242, 7)
    );
    assert!(icmp.verify_checksum(&s6, &d6));
}

#[test]
fn icmpv4_built_by_etherparse_parses_and_verifies() {
    use etherparse::icmpv4::DestUnreachableHeader;
    let mut pkt = Vec::new();
    PacketBuilder::ipv4([203, 0, 113, 1], [198, 51, 100, 2], 64)
        .icmpv4(etherparse::Icmpv4Type::DestinationUnreachable(
            DestUnreachableHeader::FragmentationNeeded { next_hop_mtu: 1400 },
        ))
        .write(&mut pkt, &[0x45; 28])
        .unwrap();
    let ip = Ipv4Packet::new_checked(&pkt[..]).unwrap();
    assert_eq!(ip.protocol(), ip_proto::ICMP);
    let icmp = Icmpv4Packet::new_checked(ip.payload()).unwrap();
    assert_eq!(icmp.msg_type(), icmpv4::msg_type::DEST_UNREACHABLE);
    assert_eq!(icmp.code(), icmpv4::unreachable::FRAG_NEEDED);
    assert_eq!(icmp.next_hop_mtu(), 1400);
    assert!(icmp.verify_checksum());
    assert_eq!(icmp.compute_checksum(), icmp.checksum());

    let mut pkt = Vec::new();
    PacketBuilder::ipv4([203, 0, 113, 1], [198, 51, 100, 2], 64)
        .icmpv4_echo_reply(9, 10)
        .write(&mut pkt, b"pong")
        .unwrap();
    let ip = Ipv4Packet::new_checked(&pkt[..]).unwrap();
    let icmp = Icmpv4Packet::new_checked(ip.payload()).unwrap();
    assert_eq!(
        (icmp.msg_type(), icmp.echo_ident(), icmp.echo_seq_no()),
        (0, 9, 10)
    );
    assert!(icmp.verify_checksum());
}

#[test]
fn ipv6_extension_chain_built_by_etherparse_is_walked_to_tcp() {
    let src = [0x20, 0x01, 0x0d, 0xb8, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1];
    let dst = [0x20, 0x01, 0x0d, 0xb8, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 2];
    let hdr = Ipv6Header {
        traffic_class: 0x28,
        flow_label: Ipv6FlowLabel::try_new(0xabcde).unwrap(),
        payload_length: 0,
        next_header: IpNumber::TCP,
        hop_limit: 9,
        source: src,
        destination: dst,
    };
    let exts = Ipv6Extensions {
        hop_by_hop_options: Some(
            etherparse::Ipv6RawExtHeader::new_raw(IpNumber::TCP, &[1, 4, 0, 0, 0, 0]).unwrap(),
        ),
        destination_options: Some(
            etherparse::Ipv6RawExtHeader::new_raw(
                IpNumber::TCP,
                &[1, 12, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0],
            )
            .unwrap(),
        ),
        routing: None,
        fragment: Some(etherparse::Ipv6FragmentHeader::new(
            IpNumber::TCP,
            IpFragOffset::try_new(0).unwrap(),
            false,
            0x0102_0304,
        )),
        auth: None,
    };
    let t = Tcp {
        sport: 1,
        dport: 2,
        seq: 3,
        ack: 4,
        win: 5,
        flags: 0x10,
        urg: 0,
        opts: vec![],
        payload: b"data".to_vec(),
    };
    let mut pkt = Vec::new();
    PacketBuilder::ip(IpHeaders::Ipv6(hdr, exts))
        .tcp_header(tcp_header(&t))
        .write(&mut pkt, &t.payload)
        .unwrap();
    let ip = Ipv6Packet::new_checked(&pkt[..]).unwrap();
    assert_eq!(
        (ip.traffic_class(), ip.flow_label(), ip.hop_limit()),
        (0x28, 0xabcde, 9)
    );
    let up = ip.upper_layer().unwrap();
    assert_eq!(up.protocol, ip_proto::TCP);
    let parsed = etherparse::Ipv6Slice::from_slice(&pkt).unwrap();
    assert_eq!(pkt.len() - parsed.payload().payload.len(), up.offset);
    let f = up.fragment.unwrap();
    assert_eq!((f.offset, f.more, f.ident), (0, false, 0x0102_0304));
    let seg = &pkt[up.offset..];
    check_tcp(seg, &t);
    let tcp = TcpPacket::new_checked(seg).unwrap();
    assert!(tcp.verify_checksum_v6(&ip.src_addr(), &ip.dst_addr()));
}

/// etherparse's full TCP checksum of `seg` between IPv4 addresses.
fn their_tcp_v4(seg: &[u8], src: [u8; 4], dst: [u8; 4]) -> u16 {
    let (h, payload) = TcpHeader::from_slice(seg).unwrap();
    h.calc_checksum_ipv4_raw(src, dst, payload).unwrap()
}

/// etherparse's full TCP checksum of `seg` between IPv6 addresses.
fn their_tcp_v6(seg: &[u8], src: [u8; 16], dst: [u8; 16]) -> u16 {
    let (h, payload) = TcpHeader::from_slice(seg).unwrap();
    h.calc_checksum_ipv6_raw(src, dst, payload).unwrap()
}

/// etherparse's `Sum16BitWords` adds words in native byte order; its result, read back
/// through its native bytes, is the big-endian value.
fn be(native: u16) -> u16 {
    u16::from_be_bytes(native.to_ne_bytes())
}

/// etherparse's partial (folded, uncomplemented) pseudo-header sums.
fn their_partial_v4(src: [u8; 4], dst: [u8; 4], proto: u8, len: u16) -> u16 {
    let s = etherparse::checksum::Sum16BitWords::new()
        .add_4bytes(src)
        .add_4bytes(dst)
        .add_2bytes([0, proto])
        .add_2bytes(len.to_be_bytes());
    !be(s.ones_complement())
}

fn their_partial_v6(src: [u8; 16], dst: [u8; 16], proto: u8, len: u32) -> u16 {
    let s = etherparse::checksum::Sum16BitWords::new()
        .add_16bytes(src)
        .add_16bytes(dst)
        .add_4bytes(len.to_be_bytes())
        .add_4bytes([0, 0, 0, proto]);
    !be(s.ones_complement())
}

fn build_v4_tcp(t: &Tcp, src: [u8; 4], dst: [u8; 4]) -> Vec<u8> {
    let ip = v4_header(src, dst, 64, 1, 0, &[]);
    let mut pkt = Vec::new();
    PacketBuilder::ip(IpHeaders::Ipv4(ip, Ipv4Extensions::default()))
        .tcp_header(tcp_header(t))
        .write(&mut pkt, &t.payload)
        .unwrap();
    pkt
}

/// Byte offsets in a TCP segment where a 16-bit word can be edited without touching the
/// data offset/flags word or the checksum itself.
fn editable_u16(seg_len: usize, header_len: usize) -> Vec<usize> {
    [0usize, 2, 4, 6, 8, 10, 14, 18]
        .into_iter()
        .chain((header_len..seg_len.saturating_sub(1)).step_by(2))
        .collect()
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    #[test]
    fn random_ipv4_tcp_parses_like_etherparse_and_checksums_agree(
        t in tcp_strategy(),
        src in any::<[u8; 4]>(),
        dst in any::<[u8; 4]>(),
        ttl in any::<u8>(),
        ident in any::<u16>(),
        tos in any::<u8>(),
        nopts in 0usize..=10,
    ) {
        let opts = vec![1u8; nopts * 4];
        let ip = v4_header(src, dst, ttl, ident, tos, &opts);
        let mut pkt = Vec::new();
        PacketBuilder::ip(IpHeaders::Ipv4(ip, Ipv4Extensions::default()))
            .tcp_header(tcp_header(&t))
            .write(&mut pkt, &t.payload)
            .unwrap();
        let (their_ip, _) = Ipv4Header::from_slice(&pkt).unwrap();
        let p = Ipv4Packet::new_checked(&pkt[..]).unwrap();
        prop_assert_eq!(p.header_len(), 20 + nopts * 4);
        prop_assert_eq!(p.options(), &opts[..]);
        prop_assert_eq!(p.ttl(), ttl);
        prop_assert_eq!(p.ident(), ident);
        prop_assert_eq!(p.tos(), tos);
        prop_assert_eq!(p.dont_frag(), their_ip.dont_fragment);
        prop_assert_eq!(p.total_len(), their_ip.total_len);
        prop_assert_eq!(p.src_addr(), Ipv4Addr::from(src));
        prop_assert_eq!(p.dst_addr(), Ipv4Addr::from(dst));
        prop_assert_eq!(p.checksum(), their_ip.calc_header_checksum());
        prop_assert!(p.verify_checksum());
        check_tcp(p.payload(), &t);
        let seg = TcpPacket::new_checked(p.payload()).unwrap();
        prop_assert_eq!(seg.compute_checksum_v4(src.into(), dst.into()), their_tcp_v4(p.payload(), src, dst));
        prop_assert_eq!(seg.checksum(), their_tcp_v4(p.payload(), src, dst));
    }

    #[test]
    fn random_ipv6_tcp_and_udp_checksums_agree(
        t in tcp_strategy(),
        src in any::<[u8; 16]>(),
        dst in any::<[u8; 16]>(),
        hl in any::<u8>(),
    ) {
        let mut pkt = Vec::new();
        PacketBuilder::ipv6(src, dst, hl)
            .tcp_header(tcp_header(&t))
            .write(&mut pkt, &t.payload)
            .unwrap();
        let p = Ipv6Packet::new_checked(&pkt[..]).unwrap();
        prop_assert_eq!(p.hop_limit(), hl);
        prop_assert_eq!(p.upper_layer().unwrap().offset, 40);
        check_tcp(p.payload(), &t);
        let seg = TcpPacket::new_checked(p.payload()).unwrap();
        prop_assert!(seg.verify_checksum_v6(&src.into(), &dst.into()));
        prop_assert_eq!(seg.checksum(), their_tcp_v6(p.payload(), src, dst));

        let mut pkt = Vec::new();
        PacketBuilder::ipv6(src, dst, hl).udp(t.sport, t.dport).write(&mut pkt, &t.payload).unwrap();
        let p = Ipv6Packet::new_checked(&pkt[..]).unwrap();
        let udp = UdpPacket::new_checked(p.payload()).unwrap();
        let (their, _) = UdpHeader::from_slice(p.payload()).unwrap();
        prop_assert_eq!(udp.checksum(), their.checksum);
        prop_assert_eq!(udp.compute_checksum_v6(&src.into(), &dst.into()), their.checksum);
        prop_assert_eq!(udp.payload(), &t.payload[..]);
    }

    #[test]
    fn random_ipv4_udp_checksums_agree(
        payload in proptest::collection::vec(any::<u8>(), 0..300),
        ports in any::<(u16, u16)>(),
        src in any::<[u8; 4]>(),
        dst in any::<[u8; 4]>(),
    ) {
        let mut pkt = Vec::new();
        PacketBuilder::ipv4(src, dst, 64).udp(ports.0, ports.1).write(&mut pkt, &payload).unwrap();
        let p = Ipv4Packet::new_checked(&pkt[..]).unwrap();
        let udp = UdpPacket::new_checked(p.payload()).unwrap();
        let (their, _) = UdpHeader::from_slice(p.payload()).unwrap();
        prop_assert_eq!((udp.src_port(), udp.dst_port(), udp.len()), (ports.0, ports.1, their.length));
        prop_assert_eq!(udp.compute_checksum_v4(src.into(), dst.into()), their.checksum);
        prop_assert!(udp.verify_checksum_v4(src.into(), dst.into()));
    }

    #[test]
    fn checksum_of_random_bytes_equals_etherparse(data in proptest::collection::vec(any::<u8>(), 0..2000)) {
        let theirs = be(etherparse::checksum::Sum16BitWords::new().add_slice(&data).ones_complement());
        prop_assert_eq!(checksum::checksum(&data), theirs);
    }

    #[test]
    fn incremental_u16_and_u32_edits_equal_recomputation(
        t in tcp_strategy(),
        src in any::<[u8; 4]>(),
        dst in any::<[u8; 4]>(),
        pick in any::<prop::sample::Index>(),
        new16 in any::<u16>(),
        new32 in any::<u32>(),
    ) {
        let pkt = build_v4_tcp(&t, src, dst);
        let mut seg = pkt[20..].to_vec();
        let hl = TcpPacket::new_checked(&seg[..]).unwrap().header_len();
        let spots = editable_u16(seg.len(), hl);
        let at = spots[pick.index(spots.len())];
        let csum = u16::from_be_bytes([seg[16], seg[17]]);
        let old = u16::from_be_bytes([seg[at], seg[at + 1]]);
        seg[at..at + 2].copy_from_slice(&new16.to_be_bytes());
        let c = checksum::update_u16(csum, old, new16);
        prop_assert_eq!(c, their_tcp_v4(&seg, src, dst));
        seg[16..18].copy_from_slice(&c.to_be_bytes());

        // 32-bit: sequence or acknowledgment number.
        let at = if new16 & 1 == 0 { 4 } else { 8 };
        let old = u32::from_be_bytes([seg[at], seg[at + 1], seg[at + 2], seg[at + 3]]);
        seg[at..at + 4].copy_from_slice(&new32.to_be_bytes());
        let c = checksum::update_u32(c, old, new32);
        prop_assert_eq!(c, their_tcp_v4(&seg, src, dst));
    }

    #[test]
    fn tcp_view_rewrites_equal_recomputation(
        t in tcp_strategy(),
        src in any::<[u8; 4]>(),
        dst in any::<[u8; 4]>(),
        delta in any::<u32>(),
        win in any::<u16>(),
    ) {
        let pkt = build_v4_tcp(&t, src, dst);
        let mut seg = pkt[20..].to_vec();
        let mut p = TcpPacket::new_checked(&mut seg[..]).unwrap();
        let f = ChecksumForm::Full;
        p.rewrite_seq_number(p.seq_number() - delta, f);
        p.rewrite_ack_number(p.ack_number() + delta, f);
        p.rewrite_window_len(win, f);
        p.map_timestamps(f, |v, e| (v.wrapping_sub(delta), e.wrapping_add(delta))).unwrap();
        p.shift_sack_edges(delta, f).unwrap();
        let c = p.checksum();
        prop_assert_eq!(c, their_tcp_v4(&seg, src, dst));
    }

    #[test]
    fn address_swaps_equal_recomputation_full_and_partial(
        t in tcp_strategy(),
        src4 in any::<[u8; 4]>(),
        dst4 in any::<[u8; 4]>(),
        new4 in any::<[u8; 4]>(),
        src6 in any::<[u8; 16]>(),
        dst6 in any::<[u8; 16]>(),
        new6 in any::<[u8; 16]>(),
    ) {
        let pkt = build_v4_tcp(&t, src4, dst4);
        let seg = &pkt[20..];
        let len = seg.len();
        let full4 = their_tcp_v4(seg, src4, dst4);

        // v4 address replaced by another v4 address.
        let c = checksum::update_bytes(full4, &src4, &new4);
        prop_assert_eq!(c, their_tcp_v4(seg, new4, dst4));
        // v4 pseudo-header replaced by a v6 one (both addresses).
        let c = checksum::update_bytes(full4, &src4, &src6);
        let c = checksum::update_bytes(c, &dst4, &dst6);
        let full6 = their_tcp_v6(seg, src6, dst6);
        prop_assert_eq!(c, full6);
        // v6 address replaced by another v6 address, and v6 back to v4.
        prop_assert_eq!(checksum::update_bytes(full6, &dst6, &new6), their_tcp_v6(seg, src6, new6));
        let back = checksum::update_bytes(checksum::update_bytes(full6, &src6, &src4), &dst6, &dst4);
        prop_assert_eq!(back, full4);

        // The same for the partial form.
        let p4 = their_partial_v4(src4, dst4, 6, len as u16);
        prop_assert_eq!(p4, checksum::fold(checksum::pseudo_header_v4(src4.into(), dst4.into(), 6, len as u16)));
        let p6 = their_partial_v6(src6, dst6, 6, len as u32);
        prop_assert_eq!(p6, checksum::fold(checksum::pseudo_header_v6(&src6.into(), &dst6.into(), 6, len as u32)));
        prop_assert_eq!(checksum::update_partial_bytes(p4, &src4, &new4), their_partial_v4(new4, dst4, 6, len as u16));
        let q = checksum::update_partial_bytes(checksum::update_partial_bytes(p4, &src4, &src6), &dst4, &dst6);
        prop_assert_eq!(q, p6);
        prop_assert_eq!(checksum::update_partial_bytes(p6, &src6, &new6), their_partial_v6(new6, dst6, 6, len as u32));
        let q = checksum::update_partial_bytes(checksum::update_partial_bytes(p6, &src6, &src4), &dst6, &dst4);
        prop_assert_eq!(q, p4);
        // Length change in the pseudo-header (16-bit word).
        prop_assert_eq!(
            checksum::update_partial_u16(p4, len as u16, (len + 20) as u16),
            their_partial_v4(src4, dst4, 6, (len + 20) as u16)
        );
        prop_assert_eq!(
            checksum::update_partial_u32(p6, len as u32, len as u32 + 0x1_0000),
            their_partial_v6(src6, dst6, 6, len as u32 + 0x1_0000)
        );
    }

    #[test]
    fn partial_checksum_survives_translation_and_completes_to_the_full_one(
        t in tcp_strategy(),
        src4 in any::<[u8; 4]>(),
        dst4 in any::<[u8; 4]>(),
        src6 in any::<[u8; 16]>(),
        dst6 in any::<[u8; 16]>(),
        delta in any::<u32>(),
    ) {
        // A segment as a TUN device with offloads delivers it: the checksum field holds
        // the folded IPv4 pseudo-header sum.
        let pkt = build_v4_tcp(&t, src4, dst4);
        let mut seg = pkt[20..].to_vec();
        let len = seg.len();
        let p4 = their_partial_v4(src4, dst4, 6, len as u16);
        seg[16..18].copy_from_slice(&p4.to_be_bytes());
        // Translate to IPv6 and rewrite header fields, all in the partial form.
        let mut p = TcpPacket::new_checked(&mut seg[..]).unwrap();
        let old = checksum::combine(checksum::sum(&src4), checksum::sum(&dst4));
        let new = checksum::combine(checksum::sum(&src6), checksum::sum(&dst6));
        let c = ChecksumForm::Partial.update_pseudo(p.checksum(), old, new);
        p.set_checksum(c);
        p.rewrite_ack_number(p.ack_number() + delta, ChecksumForm::Partial);
        p.shift_sack_edges(delta, ChecksumForm::Partial).unwrap();
        // Completing it as the offload would (sum over the segment, field included)
        // gives the full IPv6 checksum etherparse computes.
        let completed = checksum::checksum(&seg);
        prop_assert_eq!(completed, their_tcp_v6(&seg, src6, dst6));
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(128))]

    #[test]
    fn built_segments_parse_in_etherparse_with_matching_fields_and_checksums(
        ports in any::<(u16, u16)>(),
        seq in any::<u32>(),
        ack in any::<u32>(),
        flags in any::<u8>(),
        window in any::<u16>(),
        mss in any::<Option<u16>>(),
        ws in any::<Option<u8>>(),
        sack_permitted in any::<bool>(),
        ts in any::<Option<(u32, u32)>>(),
        blocks in proptest::collection::vec(any::<(u32, u32)>(), 0..=3),
        payload in proptest::collection::vec(any::<u8>(), 0..100),
        v6 in any::<bool>(),
    ) {
        use kracauer_core::wire::build::{IpHeaderSpec, TcpOptionsSpec, TcpSegmentSpec, emit_tcp};
        let blocks: Vec<_> = blocks.into_iter().map(|(l, r)| (SeqNumber(l), SeqNumber(r))).collect();
        let options = TcpOptionsSpec { mss, window_scale: ws, sack_permitted, timestamps: ts, sack_blocks: &blocks };
        let seg = TcpSegmentSpec {
            src_port: ports.0, dst_port: ports.1, seq: SeqNumber(seq), ack: SeqNumber(ack),
            flags, window, options, payload: &payload,
        };
        let ip = if v6 {
            IpHeaderSpec::V6 {
                src: "2001:db8:1::2".parse().unwrap(),
                dst: "2001:db8:64::c633:6402".parse().unwrap(),
                hop_limit: 64,
                flow_label: seq & 0xfffff,
            }
        } else {
            IpHeaderSpec::V4 { src: Ipv4Addr::new(203, 0, 113, 10), dst: Ipv4Addr::new(198, 51, 100, 2), ttl: 64, ident: ports.0 }
        };
        let opts_len = 4 * usize::from(mss.is_some())
            + 12 * usize::from(ts.is_some())
            + 4 * usize::from(ws.is_some())
            + 4 * usize::from(sack_permitted && ts.is_none())
            + if blocks.is_empty() { 0 } else { 4 + 8 * blocks.len() };
        let mut buf = [0u8; 256];
        let built = emit_tcp(&mut buf, &ip, &seg);
        if opts_len > 40 {
            prop_assert_eq!(built, Err(kracauer_core::wire::WireError::ValueOutOfRange));
            return Ok(());
        }
        let n = built.unwrap();
        let parsed = etherparse::SlicedPacket::from_ip(&buf[..n]).unwrap();
        let Some(etherparse::TransportSlice::Tcp(t)) = parsed.transport else { panic!("no tcp") };
        prop_assert_eq!((t.source_port(), t.destination_port()), ports);
        prop_assert_eq!((t.sequence_number(), t.acknowledgment_number()), (seq, ack));
        prop_assert_eq!(t.window_size(), window);
        prop_assert_eq!(t.payload(), &payload[..]);
        let expect: Vec<Opt> = mss.map(Opt::Mss).into_iter()
            .chain(ts.filter(|_| sack_permitted).map(|_| Opt::SackPerm))
            .chain(ts.map(|(v, e)| Opt::Ts(v, e)))
            .chain(ws.map(Opt::Ws))
            .chain(Some(Opt::SackPerm).filter(|_| sack_permitted && ts.is_none()))
            .chain(Some(Opt::Sack(blocks.iter().map(|(l, r)| (l.0, r.0)).collect())).filter(|_| !blocks.is_empty()))
            .collect();
        let their_opts: Vec<TcpOptionElement> = t.options_iterator().map(|o| o.unwrap()).collect();
        prop_assert_eq!(theirs(&their_opts), expect);
        let h = t.to_header();
        let want = match parsed.net {
            Some(etherparse::NetSlice::Ipv4(ip)) => {
                prop_assert_eq!(ip.header().header_checksum(), ip.header().to_header().calc_header_checksum());
                h.calc_checksum_ipv4_raw(ip.header().source(), ip.header().destination(), t.payload()).unwrap()
            }
            Some(etherparse::NetSlice::Ipv6(ip)) => {
                h.calc_checksum_ipv6_raw(ip.header().source(), ip.header().destination(), t.payload()).unwrap()
            }
            _ => panic!("no ip"),
        };
        prop_assert_eq!(t.checksum(), want);
    }
}
