//! Hostile and broken input: what a public address meets first. Every packet here is
//! hand-made; each test checks the verdict, the named drop reason it is counted under,
//! what (if anything) is sent back, and that no state or memory is left behind.

use core::time::Duration;

use super::*;
use crate::wire::ip_proto;

/// Where the IPv4 header and the TCP header start in a packet made by [`segment`].
const IP: usize = HEADROOM;
const TCP: usize = HEADROOM + 20;

/// An IPv4 TCP segment from `src:sport` to the service, with headroom, checksums right.
#[allow(clippy::too_many_arguments)]
pub(super) fn segment(
    src: Ipv4Addr,
    sport: u16,
    dport: u16,
    flags: u8,
    seq: u32,
    ack: u32,
    options: TcpOptionsSpec<'static>,
    payload: &[u8],
) -> Vec<u8> {
    let seg = Segment {
        src_port: sport,
        dst_port: dport,
        seq: SeqNumber(seq),
        ack: SeqNumber(ack),
        flags,
        window: 502,
        options,
        payload,
    };
    let mut buf = vec![0u8; HEADROOM + seg.v4_len()];
    seg.emit_v4(src, SERVICE, 1, &mut buf[HEADROOM..]).unwrap();
    buf
}

/// The test client's SYN to `port`, as bytes.
fn syn_bytes(port: u16) -> Vec<u8> {
    segment(
        CLIENT,
        CPORT,
        port,
        flags::SYN,
        C_ISN,
        0,
        linux_syn_options(),
        &[],
    )
}

/// Recomputes the IPv4 header checksum and the TCP checksum after a test edited bytes.
fn refill(buf: &mut [u8]) {
    let total = usize::from(u16::from_be_bytes([buf[IP + 2], buf[IP + 3]]));
    let mut ip = Ipv4Packet::new_unchecked(&mut buf[IP..]);
    ip.fill_checksum();
    let (src, dst) = (ip.src_addr(), ip.dst_addr());
    let end = (IP + total).min(buf.len());
    let mut tcp = TcpPacket::new_unchecked(&mut buf[TCP..end]);
    tcp.fill_checksum_v4(src, dst);
}

/// An IPv4 fragment of a TCP segment to `port`: `offset` in 8-byte units, `more` the MF
/// flag, `data` whatever part of the transport bytes this fragment carries.
fn fragment(port: u16, ident: u16, offset: u16, more: bool, data: &[u8]) -> Vec<u8> {
    let mut buf = vec![0u8; HEADROOM + 20 + data.len()];
    {
        let b = &mut buf[IP..];
        b[0] = 0x45;
        b[2..4].copy_from_slice(&((20 + data.len()) as u16).to_be_bytes());
        b[4..6].copy_from_slice(&ident.to_be_bytes());
        b[8] = 64;
        b[9] = ip_proto::TCP;
        b[12..16].copy_from_slice(&CLIENT.octets());
        b[16..20].copy_from_slice(&SERVICE.octets());
        b[20..].copy_from_slice(data);
    }
    let mut ip = Ipv4Packet::new_unchecked(&mut buf[IP..]);
    ip.set_frag_offset(offset * 8);
    ip.set_more_frags(more);
    ip.fill_checksum();
    if offset == 0 && data.len() >= 4 {
        buf[TCP + 2..TCP + 4].copy_from_slice(&port.to_be_bytes());
    }
    buf
}

/// An IPv4 packet of protocol `proto` from the client to the service, payload as given.
fn ipv4(proto: u8, payload: &[u8]) -> Vec<u8> {
    let mut buf = vec![0u8; HEADROOM + 20 + payload.len()];
    let b = &mut buf[IP..];
    b[0] = 0x45;
    b[2..4].copy_from_slice(&((20 + payload.len()) as u16).to_be_bytes());
    b[8] = 64;
    b[9] = proto;
    b[12..16].copy_from_slice(&CLIENT.octets());
    b[16..20].copy_from_slice(&SERVICE.octets());
    b[20..].copy_from_slice(payload);
    Ipv4Packet::new_unchecked(&mut buf[IP..]).fill_checksum();
    buf
}

/// An ICMPv4 message (checksum right) from the client to the service.
fn icmpv4(ty: u8, code: u8, rest: [u8; 4], body: &[u8]) -> Vec<u8> {
    let mut icmp = vec![ty, code, 0, 0];
    icmp.extend_from_slice(&rest);
    icmp.extend_from_slice(body);
    let sum = crate::wire::checksum::checksum(&icmp);
    icmp[2..4].copy_from_slice(&sum.to_be_bytes());
    ipv4(ip_proto::ICMP, &icmp)
}

/// Runs `buf` and checks that it was dropped for `reason`, counted once, with nothing
/// sent and no flow made.
pub(super) fn assert_silent_drop(h: &mut Harness, buf: Vec<u8>, reason: DropReason) {
    let before = h.engine.stats().drops(reason);
    let flows = h.engine.flow_count();
    let step = h.run(buf);
    assert_eq!(step.verdict, Verdict::Dropped(reason));
    assert!(step.sent.is_empty(), "nothing answers: {:?}", step.sent);
    assert_eq!(h.engine.stats().drops(reason), before + 1);
    assert_eq!(h.engine.flow_count(), flows);
}

/// A flow peeking: handshake done, half a ClientHello received. Returns Kracauer's ISN.
pub(super) fn peeking_with_half_a_hello(h: &mut Harness) -> u32 {
    let k = h.syn(443).seg.seq.0;
    let hello = client_hello("a.example");
    let half = &hello[..hello.len() / 2];
    let step = h.client_to(
        443,
        flags::ACK,
        C_ISN + 1,
        k + 1,
        TcpOptionsSpec::default(),
        half,
    );
    assert_eq!(step.verdict, Verdict::Consumed);
    assert!(step.sent.is_empty());
    k
}

// Checksums and lengths.

#[test]
fn syn_with_a_bad_checksum_is_dropped_and_answers_nothing() {
    let mut h = Harness::new();
    let mut buf = syn_bytes(443);
    buf[TCP + 16] ^= 0x5a;
    assert_silent_drop(&mut h, buf, DropReason::ClientBadChecksum);
    assert_eq!(h.engine.half_open(), 0);
}

#[test]
fn peeked_data_with_a_bad_checksum_is_not_read() {
    let mut h = Harness::new();
    let k = h.syn(80).seg.seq.0;
    let mut buf = segment(
        CLIENT,
        CPORT,
        80,
        flags::ACK | flags::PSH,
        C_ISN + 1,
        k + 1,
        TcpOptionsSpec::default(),
        HTTP_REQUEST,
    );
    let last = buf.len() - 1;
    buf[last] ^= 0x01;
    assert_silent_drop(&mut h, buf, DropReason::ClientBadChecksum);
    assert_eq!(h.engine.peek_bytes(), 0, "the corrupt bytes were not kept");
    let step = h.client_to(
        80,
        flags::ACK | flags::PSH,
        C_ISN + 1,
        k + 1,
        TcpOptionsSpec::default(),
        HTTP_REQUEST,
    );
    assert!(
        step.only_sent().seg.syn(),
        "the clean retransmission is peeked"
    );
}

#[test]
fn ipv4_total_length_beyond_the_buffer_is_malformed() {
    let mut h = Harness::new();
    let mut buf = syn_bytes(443);
    let len = (buf.len() - HEADROOM + 1) as u16;
    buf[IP + 2..IP + 4].copy_from_slice(&len.to_be_bytes());
    assert_silent_drop(&mut h, buf, DropReason::ClientMalformed);
}

#[test]
fn ipv4_total_length_inside_the_header_is_malformed() {
    let mut h = Harness::new();
    let mut buf = syn_bytes(443);
    buf[IP + 2..IP + 4].copy_from_slice(&19u16.to_be_bytes());
    assert_silent_drop(&mut h, buf, DropReason::ClientMalformed);
}

#[test]
fn ipv4_header_length_below_twenty_is_malformed() {
    let mut h = Harness::new();
    let mut buf = syn_bytes(443);
    buf[IP] = 0x44;
    assert_silent_drop(&mut h, buf, DropReason::ClientMalformed);
}

#[test]
fn ipv4_header_length_past_the_packet_is_malformed() {
    let mut h = Harness::new();
    let mut buf = vec![0u8; HEADROOM + 24];
    buf[IP] = 0x4f;
    buf[IP + 3] = 24;
    buf[IP + 12..IP + 16].copy_from_slice(&CLIENT.octets());
    buf[IP + 16..IP + 20].copy_from_slice(&SERVICE.octets());
    assert_silent_drop(&mut h, buf, DropReason::ClientMalformed);
}

#[test]
fn empty_packet_and_unknown_ip_version_are_malformed() {
    let mut h = Harness::new();
    assert_silent_drop(&mut h, vec![0u8; HEADROOM], DropReason::ClientMalformed);
    let mut buf = syn_bytes(443);
    buf[IP] = 0x55;
    assert_silent_drop(&mut h, buf, DropReason::ClientMalformed);
}

#[test]
fn truncated_tcp_header_is_malformed() {
    let mut h = Harness::new();
    let mut buf = syn_bytes(443);
    buf[IP + 2..IP + 4].copy_from_slice(&30u16.to_be_bytes());
    buf.truncate(IP + 30);
    Ipv4Packet::new_unchecked(&mut buf[IP..]).fill_checksum();
    assert_silent_drop(&mut h, buf, DropReason::ClientMalformed);
}

#[test]
fn tcp_data_offset_below_five_words_is_malformed() {
    let mut h = Harness::new();
    let mut buf = syn_bytes(443);
    buf[TCP + 12] = (4 << 4) | (buf[TCP + 12] & 0x0f);
    refill(&mut buf);
    assert_silent_drop(&mut h, buf, DropReason::ClientMalformed);
}

#[test]
fn tcp_data_offset_past_the_segment_is_malformed() {
    let mut h = Harness::new();
    let mut buf = syn_bytes(443);
    buf[TCP + 12] = (15 << 4) | (buf[TCP + 12] & 0x0f);
    refill(&mut buf);
    assert_silent_drop(&mut h, buf, DropReason::ClientMalformed);
}

#[test]
fn tcp_option_running_past_the_header_is_malformed() {
    let mut h = Harness::new();
    // A SYN whose only option is an MSS option claiming 40 bytes in a 4-byte space.
    let mut buf = segment(
        CLIENT,
        CPORT,
        443,
        flags::SYN,
        C_ISN,
        0,
        TcpOptionsSpec {
            mss: Some(1460),
            ..Default::default()
        },
        &[],
    );
    assert_eq!(buf[TCP + 20], 2, "MSS option first");
    buf[TCP + 21] = 40;
    refill(&mut buf);
    assert_silent_drop(&mut h, buf, DropReason::ClientMalformed);
}

#[test]
fn tcp_option_with_length_below_two_is_malformed() {
    let mut h = Harness::new();
    let mut buf = segment(
        CLIENT,
        CPORT,
        443,
        flags::SYN,
        C_ISN,
        0,
        TcpOptionsSpec {
            mss: Some(1460),
            ..Default::default()
        },
        &[],
    );
    buf[TCP + 21] = 0;
    refill(&mut buf);
    assert_silent_drop(&mut h, buf, DropReason::ClientMalformed);
}

#[test]
fn trailing_bytes_after_the_total_length_are_ignored() {
    let mut h = Harness::new();
    let mut buf = syn_bytes(443);
    buf.extend_from_slice(&[0xee; 18]);
    let step = h.run(buf);
    assert_eq!(step.verdict, Verdict::Consumed);
    let synack = step.only_sent();
    assert_eq!(synack.seg.ack, SeqNumber(C_ISN + 1), "padding is not data");
}

// Flags.

#[test]
fn syn_with_rst_is_dropped_as_bad_flags() {
    let mut h = Harness::new();
    let buf = segment(
        CLIENT,
        CPORT,
        443,
        flags::SYN | flags::RST,
        C_ISN,
        0,
        linux_syn_options(),
        &[],
    );
    assert_silent_drop(&mut h, buf, DropReason::ClientBadFlags);
}

#[test]
fn syn_with_fin_on_a_peeking_flow_is_bad_flags_and_changes_nothing() {
    let mut h = Harness::new();
    let k = peeking_with_half_a_hello(&mut h);
    let peek = h.engine.peek_bytes();
    let buf = segment(
        CLIENT,
        CPORT,
        443,
        flags::SYN | flags::FIN,
        C_ISN,
        0,
        TcpOptionsSpec::default(),
        &[],
    );
    assert_silent_drop(&mut h, buf, DropReason::ClientBadFlags);
    assert_eq!((h.engine.flow_count(), h.engine.peek_bytes()), (1, peek));
    let rest = client_hello("a.example");
    let half = rest.len() / 2;
    let step = h.client_to(
        443,
        flags::ACK,
        C_ISN + 1 + half as u32,
        k + 1,
        TcpOptionsSpec::default(),
        &rest[half..],
    );
    assert!(
        step.only_sent().seg.syn(),
        "the flow still reaches its backend"
    );
}

#[test]
fn segment_without_ack_on_a_peeking_flow_is_bad_flags() {
    let mut h = Harness::new();
    peeking_with_half_a_hello(&mut h);
    let buf = segment(
        CLIENT,
        CPORT,
        443,
        flags::PSH,
        C_ISN + 1,
        0,
        TcpOptionsSpec::default(),
        b"x",
    );
    assert_silent_drop(&mut h, buf, DropReason::ClientBadFlags);
}

// RFC 5961: where Kracauer is the endpoint (before the splice), a RST resets only at
// exactly the next expected sequence number; one inside the window Kracauer announced
// gets a challenge ACK, one outside it nothing.

#[test]
fn rst_with_a_wrong_sequence_number_does_not_reset_a_half_open_flow() {
    let mut h = Harness::new();
    h.syn(443);
    let step = h.client_to(
        443,
        flags::RST,
        C_ISN + 2,
        0,
        TcpOptionsSpec::default(),
        &[],
    );
    assert_eq!(
        step.verdict,
        Verdict::Dropped(DropReason::ClientOutOfWindow)
    );
    assert_eq!((h.engine.flow_count(), h.engine.half_open()), (1, 1));
    let step = h.client_to(
        443,
        flags::RST,
        C_ISN + 1,
        0,
        TcpOptionsSpec::default(),
        &[],
    );
    assert_eq!(step.verdict, Verdict::Consumed);
    assert_eq!((h.engine.flow_count(), h.engine.half_open()), (0, 0));
}

#[test]
fn blind_ack_with_a_wrong_number_gets_rst_but_leaves_the_flow() {
    let mut h = Harness::new();
    let k = h.syn(80).seg.seq.0;
    let step = h.client_to(
        80,
        flags::ACK,
        C_ISN + 1,
        k.wrapping_add(1000),
        TcpOptionsSpec::default(),
        &[],
    );
    assert_eq!(
        step.verdict,
        Verdict::Dropped(DropReason::ClientOutOfWindow)
    );
    assert!(step.only_sent().seg.rst());
    assert_eq!(h.engine.flow_count(), 1);
    let step = h.client_to(
        80,
        flags::ACK | flags::PSH,
        C_ISN + 1,
        k + 1,
        TcpOptionsSpec::default(),
        HTTP_REQUEST,
    );
    assert!(step.only_sent().seg.syn(), "the real client goes on");
}

// Addresses, ports and protocols that are not a service.

#[test]
fn tcp_to_an_unconfigured_port_is_answered_with_rst_and_counted() {
    let mut h = Harness::new();
    let step = h.run(syn_bytes(22));
    assert_eq!(step.verdict, Verdict::Dropped(DropReason::ClientNotService));
    let rst = step.only_sent();
    assert_eq!(rst.flags(), flags::RST | flags::ACK);
    assert_eq!(rst.seg.ack, SeqNumber(C_ISN + 1));
    assert_eq!(h.engine.stats().drops(DropReason::ClientNotService), 1);
    assert_eq!(h.engine.flow_count(), 0);
}

#[test]
fn rst_to_an_unconfigured_port_is_not_answered() {
    let mut h = Harness::new();
    let buf = segment(
        CLIENT,
        CPORT,
        22,
        flags::RST,
        5,
        0,
        TcpOptionsSpec::default(),
        &[],
    );
    assert_silent_drop(&mut h, buf, DropReason::ClientNotService);
}

#[test]
fn tcp_to_an_address_that_is_not_a_service_is_not_answered() {
    let mut h = Harness::new();
    let mut buf = syn_bytes(443);
    buf[IP + 19] = 99;
    refill(&mut buf);
    assert_silent_drop(&mut h, buf, DropReason::ClientNotService);
}

#[test]
fn udp_to_a_port_that_is_not_quic_is_dropped_as_not_service() {
    let mut h = Harness::new();
    // To port 53: the service speaks QUIC on 443 only.
    let udp = [0xc3, 0x50, 0x00, 0x35, 0, 12, 0, 0, 1, 2, 3, 4];
    assert_silent_drop(
        &mut h,
        ipv4(ip_proto::UDP, &udp),
        DropReason::ClientNotService,
    );
    assert_silent_drop(&mut h, ipv4(47, &[0; 8]), DropReason::ClientNotService);
}

#[test]
fn icmp_noise_to_a_service_address_is_counted_as_client_icmp() {
    let mut h = Harness::new();
    // Echo reply, timestamp request, router advertisement: nothing to answer.
    for (ty, code) in [(0, 0), (13, 0), (9, 0)] {
        assert_silent_drop(
            &mut h,
            icmpv4(ty, code, [0; 4], &[0; 12]),
            DropReason::ClientIcmp,
        );
    }
    // An unreachable quoting garbage, one quoting a packet of no flow, a truncated one.
    assert_silent_drop(
        &mut h,
        icmpv4(3, 1, [0; 4], &[0xff; 6]),
        DropReason::ClientIcmp,
    );
    let quoted = syn_bytes(443)[IP..IP + 28].to_vec();
    assert_silent_drop(
        &mut h,
        icmpv4(3, 4, [0, 0, 0x05, 0x78], &quoted),
        DropReason::ClientIcmp,
    );
    assert_silent_drop(&mut h, ipv4(ip_proto::ICMP, &[8]), DropReason::ClientIcmp);
}

#[test]
fn echo_request_with_a_bad_checksum_is_not_answered() {
    let mut h = Harness::new();
    let mut buf = icmpv4(8, 0, [0, 1, 0, 1], b"ping");
    buf[IP + 20 + 2] ^= 0xff;
    assert_silent_drop(&mut h, buf, DropReason::ClientIcmp);
}

// The backend side.

#[test]
fn backend_noise_is_counted_by_reason() {
    let mut h = Harness::new();
    // Not in the prefix.
    let seg = Segment {
        src_port: 80,
        dst_port: CPORT,
        seq: SeqNumber(1),
        ack: SeqNumber(1),
        flags: flags::ACK,
        window: 1,
        options: TcpOptionsSpec::default(),
        payload: &[],
    };
    let mut buf = vec![0u8; HEADROOM + seg.v6_len()];
    let elsewhere: Ipv6Addr = "2001:db8:99::1".parse().unwrap();
    seg.emit_v6(&backend_addr(), &elsewhere, &mut buf[HEADROOM..])
        .unwrap();
    assert_silent_drop(&mut h, buf.clone(), DropReason::BackendNotPrefix);
    // Payload length past the buffer.
    let mut bad = vec![0u8; HEADROOM + seg.v6_len()];
    seg.emit_v6(&backend_addr(), &client6(), &mut bad[HEADROOM..])
        .unwrap();
    bad[HEADROOM + 4..HEADROOM + 6].copy_from_slice(&1000u16.to_be_bytes());
    assert_silent_drop(&mut h, bad.clone(), DropReason::BackendMalformed);
    // UDP towards the prefix for no QUIC flow, and another protocol.
    let mut udp = bad;
    udp[HEADROOM + 4..HEADROOM + 6].copy_from_slice(&20u16.to_be_bytes());
    udp[HEADROOM + 6] = ip_proto::UDP;
    udp[HEADROOM + 44..HEADROOM + 46].copy_from_slice(&20u16.to_be_bytes());
    assert_silent_drop(&mut h, udp.clone(), DropReason::BackendUdpNoFlow);
    let mut gre = udp;
    gre[HEADROOM + 6] = 47;
    assert_silent_drop(&mut h, gre, DropReason::BackendNotTcp);
    // A TCP segment for no flow: RST to the backend so it frees its socket.
    let step = h.backend_from(80, flags::ACK, 5, 9, TcpOptionsSpec::default(), &[]);
    assert_eq!(step.verdict, Verdict::Dropped(DropReason::BackendNoFlow));
    assert!(step.only_sent().v6 && step.only_sent().seg.rst());
}

// IPv4 fragments (dropped and counted: see docs/robustness.md for why).

#[test]
fn fragments_to_a_service_port_in_every_shape_are_dropped_and_leave_nothing() {
    let mut h = Harness::new();
    let whole = syn_bytes(443);
    let tcp = whole[TCP..].to_vec();
    let (first, rest) = tcp.split_at(16);
    let shapes: Vec<Vec<u8>> = vec![
        fragment(443, 1, 0, true, first),       // first
        fragment(443, 2, 2, true, &rest[..8]),  // middle, no first ever
        fragment(443, 3, 3, false, &rest[8..]), // last alone (out of order)
        fragment(443, 4, 1, true, &tcp[8..24]), // overlapping the first
        fragment(443, 4, 0, true, &tcp[..16]),  // the first, after the overlap
        fragment(443, 5, 8191, false, &[0; 8]), // offset at the very end
        fragment(443, 6, 0, true, &tcp[..2]),   // a first too short for ports
        fragment(443, 7, 0, true, &[]),         // an empty first fragment
    ];
    for f in shapes {
        assert_silent_drop(&mut h, f, DropReason::ClientFragment);
    }
    assert_eq!(h.engine.stats().drops(DropReason::ClientFragment), 8);
    assert_eq!((h.engine.half_open(), h.engine.peek_bytes()), (0, 0));
    assert_eq!(
        h.engine.poll_timeout(),
        None,
        "no timer waits on a fragment"
    );
}

#[test]
fn fragments_never_wedge_a_spliced_flow() {
    let mut h = Harness::new();
    let (synack, _) = h.spliced_http(TcpOptionsSpec::default());
    let k = synack.seg.seq.0;
    let next = C_ISN + 1 + HTTP_REQUEST.len() as u32;
    // A fragmented data segment of the flow, in pieces and never completed.
    let whole = segment(
        CLIENT,
        CPORT,
        80,
        flags::ACK,
        next,
        k + 1,
        TcpOptionsSpec::default(),
        &[b'x'; 64],
    );
    let tcp = whole[TCP..].to_vec();
    for f in [
        fragment(80, 9, 0, true, &tcp[..40]),
        fragment(80, 9, 8, false, &tcp[64..]),
    ] {
        assert_silent_drop(&mut h, f, DropReason::ClientFragment);
    }
    // The same bytes unfragmented (the client's retransmission) go through.
    let step = h.run(whole);
    let fwd = step.forwarded.expect("forwarded to the backend");
    assert_eq!(fwd.payload, vec![b'x'; 64]);
    assert_eq!(h.engine.flow_count(), 1);
}

// Floods and slow clients.

#[test]
fn syn_flood_is_carried_by_cookies_with_state_bounded_and_real_clients_served() {
    let mut config = config();
    config.max_half_open = 64;
    let mut h = Harness::with(config);
    let mut answered = 0;
    for i in 0..20_000u32 {
        let net = if i % 2 == 0 {
            [198, 51, 100]
        } else {
            [203, 0, 113]
        };
        let src = Ipv4Addr::new(net[0], net[1], net[2], (i % 250) as u8 + 1);
        let buf = segment(
            src,
            1024 + (i % 60_000) as u16,
            443,
            flags::SYN,
            i.wrapping_mul(2_654_435_761),
            0,
            linux_syn_options(),
            &[],
        );
        let step = h.run(buf);
        if step.verdict == Verdict::Consumed && step.sent.len() == 1 {
            answered += 1;
        }
        assert!(h.engine.flow_count() <= 64, "state only up to the bound");
    }
    assert_eq!(
        answered, 20_000,
        "every SYN is answered, by state or cookie"
    );
    assert_eq!(h.engine.stats().cookies_sent, 20_000 - 64);
    assert_eq!(h.engine.peek_bytes(), 0);
    // A real client during the flood: its SYN gets a cookie, its ACK opens the flow.
    let synack = h.syn(80);
    let k = synack.seg.seq.0;
    let tsecr = synack.seg.options.timestamps.map(|t| t.0).unwrap();
    let ts = TcpOptionsSpec {
        timestamps: Some((101, tsecr)),
        ..Default::default()
    };
    let step = h.client_to(
        80,
        flags::ACK | flags::PSH,
        C_ISN + 1,
        k + 1,
        ts,
        HTTP_REQUEST,
    );
    assert!(
        step.only_sent().seg.syn(),
        "the legitimate client reaches its backend"
    );
    assert_eq!(h.engine.stats().cookies_accepted, 1);
    assert_eq!(h.engine.flow_count(), 65, "the bound plus the real client");
    // The half-open bound reached is pressure: a second on, the flood's stale handshakes
    // are forgotten (silently) until the half-open count is below half its bound; the rest
    // expire at the peek deadline, and the real client's connect, with no backend in this
    // harness, at the connect deadline: nothing is left.
    let sent = h.advance(Duration::from_millis(1_100));
    assert!(
        sent.iter().all(|s| s.v6),
        "no RST for a handshake: {sent:?}"
    );
    assert_eq!(h.engine.half_open(), 31);
    assert_eq!(h.engine.stats().outcomes(Outcome::Limited), 33);
    h.advance(Duration::from_secs(5));
    assert_eq!(h.engine.flow_count(), 0);
    assert_eq!(h.engine.stats().outcomes(Outcome::PeekTimeout), 31);
    assert_eq!(h.engine.stats().outcomes(Outcome::ConnectTimeout), 1);
}

#[test]
fn stalled_hellos_from_one_address_are_held_up_to_its_allowance_and_cut_at_the_peek_deadline() {
    let mut h = Harness::new();
    let cap = h.engine.config().max_peeking_per_client;
    let hello = client_hello("a.example");
    let half = &hello[..hello.len() / 2];
    let mut limited = 0;
    for port in 0..(cap + 36) as u16 {
        let sport = 20_000 + port;
        let step = h.run(segment(
            CLIENT,
            sport,
            443,
            flags::SYN,
            C_ISN,
            0,
            TcpOptionsSpec::default(),
            &[],
        ));
        assert_eq!(step.verdict, Verdict::Consumed, "every SYN is answered");
        let k = step.only_sent().seg.seq.0;
        let step = h.run(segment(
            CLIENT,
            sport,
            443,
            flags::ACK,
            C_ISN + 1,
            k + 1,
            TcpOptionsSpec::default(),
            half,
        ));
        match step.verdict {
            Verdict::Consumed => {}
            Verdict::Dropped(DropReason::ClientPeekLimit) => {
                assert!(step.sent.is_empty(), "{:?}", step.sent);
                limited += 1;
            }
            other => panic!("{other:?}"),
        }
    }
    assert_eq!(
        h.engine.stats().cookies_for_address,
        36,
        "past the allowance, SYN cookies"
    );
    assert_eq!(
        limited, 36,
        "half hellos past the allowance are left to the client"
    );
    assert_eq!(h.engine.flow_count(), cap as usize);
    assert!(h.engine.peek_bytes() > 0);
    // Another address is not affected by the first one's cap.
    let other = Ipv4Addr::new(198, 51, 100, 77);
    let step = h.run(segment(
        other,
        CPORT,
        80,
        flags::SYN,
        C_ISN,
        0,
        TcpOptionsSpec::default(),
        &[],
    ));
    assert_eq!(step.verdict, Verdict::Consumed);
    h.advance(Duration::from_secs(4));
    assert_eq!(h.engine.flow_count(), cap as usize + 1);
    let resets = h.advance(Duration::from_secs(2));
    assert_eq!(resets.len(), cap as usize + 1);
    assert!(resets.iter().all(|s| s.seg.rst()));
    assert_eq!((h.engine.flow_count(), h.engine.peek_bytes()), (0, 0));
    assert_eq!(
        h.engine.stats().outcomes(Outcome::PeekTimeout),
        u64::from(cap) + 1
    );
}

#[test]
fn a_client_trickling_one_byte_a_second_is_cut_at_the_peek_deadline() {
    let mut h = Harness::new();
    let k = h.syn(443).seg.seq.0;
    let hello = client_hello("a.example");
    let mut cut = None;
    for (i, byte) in hello.iter().enumerate() {
        let step = h.client_to(
            443,
            flags::ACK,
            C_ISN + 1 + i as u32,
            k + 1,
            TcpOptionsSpec::default(),
            core::slice::from_ref(byte),
        );
        assert!(step.sent.iter().all(|s| !s.v6), "never reaches a backend");
        let sent = h.advance(Duration::from_secs(1));
        if sent.iter().any(|s| s.seg.rst()) {
            cut = Some(i + 1);
            break;
        }
    }
    assert_eq!(cut, Some(5), "cut 5 s after its SYN, 5 bytes in");
    assert_eq!((h.engine.flow_count(), h.engine.peek_bytes()), (0, 0));
}

// Whatever the bytes, no panic and a verdict.

#[test]
fn every_single_byte_corruption_of_a_syn_and_of_a_request_gets_a_verdict() {
    let mut h = Harness::new();
    let k = h.syn(80).seg.seq.0;
    let request = segment(
        CLIENT,
        CPORT,
        80,
        flags::ACK | flags::PSH,
        C_ISN + 1,
        k + 1,
        TcpOptionsSpec::default(),
        HTTP_REQUEST,
    );
    let packets = [syn_bytes(443), request];
    let mut runs = 0;
    for packet in &packets {
        for at in HEADROOM..packet.len() {
            for x in [0x01u8, 0x80, 0xff] {
                let mut buf = packet.clone();
                buf[at] ^= x;
                let drops = h.engine.stats().total_drops();
                let step = h.run(buf);
                if let Verdict::Dropped(_) = step.verdict {
                    assert_eq!(h.engine.stats().total_drops(), drops + 1, "counted once");
                }
                runs += 1;
            }
        }
    }
    assert!(runs > 300);
    h.advance(Duration::from_secs(3600));
    assert_eq!((h.engine.flow_count(), h.engine.peek_bytes()), (0, 0));
}
