//! ICMP for flows: errors translated with the embedded packet mapped back, echo answered.

use super::*;
use crate::wire::{Icmpv4Packet, Icmpv6Packet, ip_proto};

/// An IPv6 packet from `src` to the client's embedded address carrying ICMPv6
/// `ty`/`code` with `rest` and `inner` as the embedded packet.
pub(super) fn icmpv6_to_client(
    src: Ipv6Addr,
    ty: u8,
    code: u8,
    rest: u32,
    inner: &[u8],
) -> Vec<u8> {
    let len = 8 + inner.len();
    let mut buf = vec![0u8; HEADROOM + 40 + len];
    let pkt = &mut buf[HEADROOM..];
    {
        let mut ip = Ipv6Packet::new_unchecked(&mut *pkt);
        ip.set_version(6);
        ip.set_payload_len(len as u16);
        ip.set_next_header(ip_proto::ICMPV6);
        ip.set_hop_limit(64);
        ip.set_src_addr(&src);
        ip.set_dst_addr(&client6());
    }
    pkt[48..].copy_from_slice(inner);
    let mut icmp = Icmpv6Packet::new_unchecked(&mut pkt[40..]);
    icmp.set_msg_type(ty);
    icmp.set_code(code);
    icmp.set_rest_of_header(rest);
    icmp.fill_checksum(&src, &client6());
    buf
}

/// An IPv4 packet from `src` to the service address with ICMPv4 `ty`/`code`.
fn icmpv4_to_service(src: Ipv4Addr, ty: u8, code: u8, rest: u32, inner: &[u8]) -> Vec<u8> {
    let len = 20 + 8 + inner.len();
    let mut buf = vec![0u8; HEADROOM + len];
    let pkt = &mut buf[HEADROOM..];
    {
        let mut ip = Ipv4Packet::new_unchecked(&mut *pkt);
        ip.set_version(4);
        ip.set_header_len(20);
        ip.set_total_len(len as u16);
        ip.set_ttl(64);
        ip.set_protocol(ip_proto::ICMP);
        ip.set_src_addr(src);
        ip.set_dst_addr(SERVICE);
        ip.fill_checksum();
    }
    pkt[28..].copy_from_slice(inner);
    let mut icmp = Icmpv4Packet::new_unchecked(&mut pkt[20..]);
    icmp.set_msg_type(ty);
    icmp.set_code(code);
    icmp.set_rest_of_header(rest);
    icmp.fill_checksum();
    buf
}

fn run(h: &mut Harness, mut buf: Vec<u8>) -> (Verdict, Vec<Vec<u8>>) {
    let mut out = Output::default();
    let v = h.engine.handle_packet(h.now, &mut buf, HEADROOM, &mut out);
    (v, out.packets().map(<[u8]>::to_vec).collect())
}

#[test]
fn echo_request_to_a_service_address_is_answered() {
    let mut h = Harness::new();
    let (v, out) = run(
        &mut h,
        icmpv4_to_service(CLIENT, 8, 0, 0x1234_0001, b"ping!"),
    );
    assert_eq!(v, Verdict::Consumed);
    let ip = Ipv4Packet::new_checked(&out[0][..]).unwrap();
    assert_eq!((ip.src_addr(), ip.dst_addr()), (SERVICE, CLIENT));
    let icmp = Icmpv4Packet::new_checked(ip.payload()).unwrap();
    assert_eq!((icmp.msg_type(), icmp.rest_of_header()), (0, 0x1234_0001));
    assert!(icmp.verify_checksum());
    assert_eq!(icmp.payload(), b"ping!");
}

/// Splices a flow in `h` and sends a 1400-byte client segment through it: the splice's
/// SYN-ACK sequence number (k) and the first 1232 bytes of the segment as Kracauer sent it
/// to the backend (what a Packet Too Big quotes).
fn spliced_big_segment(h: &mut Harness) -> (u32, Vec<u8>) {
    let (synack, _) = h.spliced_http(backend_linux());
    let k = synack.seg.seq.0;
    // A big client segment, as it left Kracauer towards the backend.
    let step = h.client_to(
        80,
        flags::ACK,
        C_ISN + 1,
        k + 1 + 7,
        TcpOptionsSpec::default(),
        &[0x55; 1400],
    );
    let Verdict::Forward(_) = step.verdict else {
        panic!("{:?}", step.verdict)
    };
    let fwd = step.forwarded.unwrap();
    assert_eq!(fwd.seg.ack, SeqNumber(B_ISN + 1 + 7));
    // Rebuild the bytes of what was forwarded (first 48 bytes suffice for the error).
    let seg = Segment {
        src_port: CPORT,
        dst_port: 80,
        seq: fwd.seg.seq,
        ack: fwd.seg.ack,
        flags: flags::ACK,
        window: 502,
        options: TcpOptionsSpec::default(),
        payload: &[0x55; 1400],
    };
    let mut inner = vec![0u8; seg.v6_len()];
    seg.emit_v6(&client6(), &backend_addr(), &mut inner)
        .unwrap();
    inner.truncate(1232);
    (k, inner)
}

#[test]
fn packet_too_big_from_the_backend_side_becomes_frag_needed_with_the_inner_ack_mapped_back() {
    let mut h = Harness::new();
    let (k, inner) = spliced_big_segment(&mut h);
    let router: Ipv6Addr = "2001:db8:1::1".parse().unwrap();
    let (v, out) = run(&mut h, icmpv6_to_client(router, 2, 0, 1280, &inner));
    assert_eq!(v, Verdict::Consumed);
    let ip = Ipv4Packet::new_checked(&out[0][..]).unwrap();
    assert_eq!((ip.src_addr(), ip.dst_addr()), (SERVICE, CLIENT));
    let icmp = Icmpv4Packet::new_checked(ip.payload()).unwrap();
    assert!(icmp.verify_checksum());
    assert_eq!(
        (icmp.msg_type(), icmp.code(), icmp.next_hop_mtu()),
        (3, 4, 1260)
    );
    let inner_ip = Ipv4Packet::new_checked_header(icmp.payload()).unwrap();
    assert_eq!(
        (inner_ip.src_addr(), inner_ip.dst_addr()),
        (CLIENT, SERVICE)
    );
    let tcp = &icmp.payload()[20..];
    assert_eq!(u16::from_be_bytes([tcp[0], tcp[1]]), CPORT);
    assert_eq!(u16::from_be_bytes([tcp[2], tcp[3]]), 80);
    let ack = u32::from_be_bytes([tcp[8], tcp[9], tcp[10], tcp[11]]);
    assert_eq!(ack, k + 1 + 7, "the client sees its own ACK number again");
}

#[test]
fn unreachable_for_the_backend_syn_resets_the_client_at_once() {
    let mut h = Harness::new();
    let (_, step) = h.open(80, HTTP_REQUEST);
    let syn = step.only_sent();
    let s = Segment {
        src_port: CPORT,
        dst_port: 80,
        seq: syn.seg.seq,
        ack: SeqNumber(0),
        flags: flags::SYN,
        window: 502,
        options: TcpOptionsSpec::default(),
        payload: &[],
    };
    let mut inner = vec![0u8; s.v6_len()];
    s.emit_v6(&client6(), &backend_addr(), &mut inner).unwrap();
    let (v, out) = run(&mut h, icmpv6_to_client(backend_addr(), 1, 4, 0, &inner));
    assert_eq!(v, Verdict::Consumed);
    let rst = Sent::parse(&out[0]);
    assert!(!rst.v6 && rst.seg.rst());
    assert_eq!(h.engine.stats().outcomes(Outcome::BackendRefused), 1);
    assert_eq!(h.engine.flow_count(), 0);
}

#[test]
fn frag_needed_from_the_client_side_becomes_packet_too_big_with_the_inner_seq_moved_by_delta() {
    let mut h = Harness::new();
    let (synack, _) = h.spliced_http(backend_linux());
    let k = synack.seg.seq.0;
    // What Kracauer sent the client: seq in the client's view.
    let seg = Segment {
        src_port: 80,
        dst_port: CPORT,
        seq: SeqNumber(k + 1),
        ack: SeqNumber(C_ISN + 1),
        flags: flags::ACK,
        window: 4000,
        options: TcpOptionsSpec::default(),
        payload: &[7; 100],
    };
    let mut inner = vec![0u8; seg.v4_len()];
    seg.emit_v4(SERVICE, CLIENT, 9, &mut inner).unwrap();
    let router = Ipv4Addr::new(198, 51, 100, 1);
    let (v, out) = run(&mut h, icmpv4_to_service(router, 3, 4, 1400, &inner[..48]));
    assert_eq!(v, Verdict::Consumed);
    let ip = Ipv6Packet::new_checked(&out[0][..]).unwrap();
    assert_eq!(
        (ip.src_addr(), ip.dst_addr()),
        (prefix().embed(router), backend_addr())
    );
    let icmp = Icmpv6Packet::new_checked(ip.payload()).unwrap();
    assert!(icmp.verify_checksum(&ip.src_addr(), &ip.dst_addr()));
    assert_eq!((icmp.msg_type(), icmp.mtu()), (2, 1420));
    let inner6 = Ipv6Packet::new_checked_header(icmp.payload()).unwrap();
    assert_eq!(
        (inner6.src_addr(), inner6.dst_addr()),
        (backend_addr(), client6())
    );
    let tcp = &icmp.payload()[40..];
    let seq = u32::from_be_bytes([tcp[4], tcp[5], tcp[6], tcp[7]]);
    assert_eq!(seq, B_ISN + 1, "the backend sees its own sequence number");
}

#[test]
fn error_about_no_known_flow_is_dropped_and_counted() {
    let mut h = Harness::new();
    let s = Segment {
        src_port: 80,
        dst_port: 1234,
        seq: SeqNumber(1),
        ack: SeqNumber(1),
        flags: flags::ACK,
        window: 1,
        options: TcpOptionsSpec::default(),
        payload: &[],
    };
    let mut inner = vec![0u8; s.v4_len()];
    s.emit_v4(SERVICE, CLIENT, 1, &mut inner).unwrap();
    let (v, out) = run(&mut h, icmpv4_to_service(CLIENT, 3, 1, 0, &inner));
    assert_eq!(v, Verdict::Dropped(DropReason::ClientIcmp));
    assert!(out.is_empty());
}

#[test]
fn packet_too_big_repeating_the_last_mtu_for_the_flow_within_100_ms_is_dropped_and_counted() {
    let mut h = Harness::new();
    let (_, inner) = spliced_big_segment(&mut h);
    let router: Ipv6Addr = "2001:db8:1::1".parse().unwrap();
    let too_big = |mtu| icmpv6_to_client(router, 2, 0, mtu, &inner);
    let (v, out) = run(&mut h, too_big(1280));
    assert_eq!((v, out.len()), (Verdict::Consumed, 1));
    // The client lowered its MSS and sent everything in flight again: the errors about
    // the other segments it had sent tell it nothing, and may come after those were
    // acknowledged.
    for _ in 0..2 {
        let (v, out) = run(&mut h, too_big(1280));
        assert_eq!(v, Verdict::Dropped(DropReason::BackendTooBigRepeated));
        assert!(out.is_empty());
    }
    h.now = h.now + std::time::Duration::from_millis(99);
    let (v, _) = run(&mut h, too_big(1280));
    assert_eq!(v, Verdict::Dropped(DropReason::BackendTooBigRepeated));
    // Another MTU is news; and once the time has passed, the same MTU is answered again
    // (the first translation may have been lost).
    let (v, out) = run(&mut h, too_big(1300));
    assert_eq!((v, out.len()), (Verdict::Consumed, 1));
    let (v, out) = run(&mut h, too_big(1280));
    assert_eq!((v, out.len()), (Verdict::Consumed, 1));
    h.now = h.now + std::time::Duration::from_millis(100);
    let (v, out) = run(&mut h, too_big(1280));
    assert_eq!((v, out.len()), (Verdict::Consumed, 1));
    assert_eq!(h.engine.stats().drops(DropReason::BackendTooBigRepeated), 3);
}

#[test]
fn frag_needed_repeating_the_last_mtu_for_the_flow_within_100_ms_is_dropped_and_counted() {
    let mut h = Harness::new();
    let (synack, _) = h.spliced_http(backend_linux());
    let seg = Segment {
        src_port: 80,
        dst_port: CPORT,
        seq: SeqNumber(synack.seg.seq.0 + 1),
        ack: SeqNumber(C_ISN + 1),
        flags: flags::ACK,
        window: 4000,
        options: TcpOptionsSpec::default(),
        payload: &[7; 100],
    };
    let mut inner = vec![0u8; seg.v4_len()];
    seg.emit_v4(SERVICE, CLIENT, 9, &mut inner).unwrap();
    let router = Ipv4Addr::new(198, 51, 100, 1);
    let frag_needed = || icmpv4_to_service(router, 3, 4, 1280, &inner[..48]);
    let (v, out) = run(&mut h, frag_needed());
    assert_eq!((v, out.len()), (Verdict::Consumed, 1));
    let (v, out) = run(&mut h, frag_needed());
    assert_eq!(v, Verdict::Dropped(DropReason::ClientTooBigRepeated));
    assert!(out.is_empty());
    h.now = h.now + std::time::Duration::from_millis(100);
    let (v, out) = run(&mut h, frag_needed());
    assert_eq!((v, out.len()), (Verdict::Consumed, 1));
}
