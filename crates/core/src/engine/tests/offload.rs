//! Packets from a TUN with offloads: partial checksums (`NEEDS_CSUM`) and GSO
//! super-packets keep the partial form through translation, and the device's word on a
//! checksum stands in for verifying it.

use super::*;
use crate::wire::checksum;
use crate::wire::ip_proto;

/// Where the TCP header of the IP packet at `buf[HEADROOM..]` starts, and its length.
fn tcp_span(packet: &[u8]) -> (usize, usize) {
    let l4 = if packet[0] >> 4 == 4 {
        usize::from(packet[0] & 0x0f) * 4
    } else {
        40
    };
    (l4, packet.len() - l4)
}

/// Turns the finished TCP checksum of the packet at `buf[HEADROOM..]` into the partial
/// form the kernel hands over with `NEEDS_CSUM`: the folded pseudo-header sum.
fn make_partial(buf: &mut [u8]) {
    let p = &mut buf[HEADROOM..];
    let (l4, len) = tcp_span(p);
    let pseudo = pseudo_sum(p, len);
    p[l4 + 16..l4 + 18].copy_from_slice(&checksum::fold(pseudo).to_be_bytes());
}

fn pseudo_sum(p: &[u8], len: usize) -> u32 {
    if p[0] >> 4 == 4 {
        let src = Ipv4Addr::from(<[u8; 4]>::try_from(&p[12..16]).unwrap());
        let dst = Ipv4Addr::from(<[u8; 4]>::try_from(&p[16..20]).unwrap());
        checksum::pseudo_header_v4(src, dst, ip_proto::TCP, len as u16)
    } else {
        let src = Ipv6Addr::from(<[u8; 16]>::try_from(&p[8..24]).unwrap());
        let dst = Ipv6Addr::from(<[u8; 16]>::try_from(&p[24..40]).unwrap());
        checksum::pseudo_header_v6(&src, &dst, ip_proto::TCP, len as u32)
    }
}

/// Finishes a partial checksum as the kernel does when the packet leaves.
fn finish(packet: &mut [u8]) {
    let (l4, _) = tcp_span(packet);
    let c = checksum::finish(checksum::sum(&packet[l4..]));
    packet[l4 + 16..l4 + 18].copy_from_slice(&c.to_be_bytes());
}

/// The forwarded packet, still with its partial checksum.
fn forwarded(step: &Step, buf: &[u8]) -> Vec<u8> {
    match &step.verdict {
        Verdict::Forward(r) => buf[r.clone()].to_vec(),
        v => panic!("not forwarded: {v:?}"),
    }
}

fn super_payload(len: usize) -> Vec<u8> {
    (0..len).map(|i| (i * 7 + 3) as u8).collect()
}

#[test]
fn client_super_packet_keeps_its_partial_checksum_through_translation() {
    let mut h = Harness::new();
    let (synack, _) = h.spliced_http(backend_linux());
    let k = synack.seg.seq.0;
    let k_ts = synack.seg.options.timestamps.unwrap().0;
    let payload = super_payload(60_000);
    let seq = C_ISN + 1 + HTTP_REQUEST.len() as u32;
    let mut buf = client_packet(&Segment {
        src_port: CPORT,
        dst_port: 80,
        seq: SeqNumber(seq),
        ack: SeqNumber(k + 1 + 10),
        flags: flags::ACK | flags::PSH,
        window: 502,
        options: ts(200, k_ts + 3),
        payload: &payload,
    });
    make_partial(&mut buf);
    let (step, buf) = h.run_with(buf, RxChecksum::Partial);
    let mut out = forwarded(&step, &buf);
    assert_eq!(out[0] >> 4, 6);
    let (l4, len) = tcp_span(&out);
    assert_eq!(l4, 40);
    let field = u16::from_be_bytes([out[l4 + 16], out[l4 + 17]]);
    assert_eq!(
        field,
        checksum::fold(pseudo_sum(&out, len)),
        "the field holds the IPv6 pseudo-header sum, nothing else"
    );
    finish(&mut out);
    let sent = Sent::parse(&out); // verifies the finished checksum
    assert_eq!(sent.payload, payload);
    assert_eq!(sent.seg.seq, SeqNumber(seq));
    assert_eq!(sent.seg.ack, SeqNumber(B_ISN + 1 + 10), "ack + δ");
    assert_eq!(
        sent.seg.options.timestamps.unwrap().1,
        (k_ts + 3).wrapping_add(5_000u32.wrapping_sub(k_ts)),
        "TSecr + ts_offset"
    );
}

#[test]
fn backend_super_packet_keeps_its_partial_checksum_through_translation() {
    let mut h = Harness::new();
    let (synack, _) = h.spliced_http(backend_linux());
    let k = synack.seg.seq.0;
    let payload = super_payload(65_000);
    let mut buf = backend_packet(&Segment {
        src_port: 80,
        dst_port: CPORT,
        seq: SeqNumber(B_ISN + 1),
        ack: SeqNumber(C_ISN + 1 + 50),
        flags: flags::ACK,
        window: 1000,
        options: ts(5_010, 150),
        payload: &payload,
    });
    make_partial(&mut buf);
    let (step, buf) = h.run_with(buf, RxChecksum::Partial);
    let mut out = forwarded(&step, &buf);
    assert_eq!(out[0] >> 4, 4);
    let (l4, len) = tcp_span(&out);
    assert_eq!(
        usize::from(u16::from_be_bytes([out[2], out[3]])),
        out.len(),
        "IPv4 total length of the whole super-packet"
    );
    let field = u16::from_be_bytes([out[l4 + 16], out[l4 + 17]]);
    assert_eq!(field, checksum::fold(pseudo_sum(&out, len)));
    finish(&mut out);
    let sent = Sent::parse(&out);
    assert_eq!(sent.payload.len(), payload.len());
    assert_eq!(sent.seg.seq, SeqNumber(k + 1), "seq − δ");
    assert_eq!(sent.seg.window, 4000, "rescaled from ws 9 to ws 7");
}

#[test]
fn partial_checksum_syn_is_answered_without_verifying() {
    let syn = Segment {
        src_port: CPORT,
        dst_port: 443,
        seq: SeqNumber(C_ISN),
        ack: SeqNumber(0),
        flags: flags::SYN,
        window: 64240,
        options: linux_syn_options(),
        payload: &[],
    };
    let mut partial = client_packet(&syn);
    make_partial(&mut partial);

    let mut h = Harness::new();
    let (step, _) = h.run_with(partial.clone(), RxChecksum::Partial);
    assert_eq!(step.verdict, Verdict::Consumed);
    assert!(step.only_sent().seg.syn());

    let mut h = Harness::new();
    let (step, _) = h.run_with(partial, RxChecksum::Unchecked);
    assert_eq!(
        step.verdict,
        Verdict::Dropped(DropReason::ClientBadChecksum),
        "the same bytes read as a finished checksum are corrupt"
    );
}

#[test]
fn checksum_the_kernel_verified_is_not_verified_again() {
    let mut buf = client_packet(&Segment {
        src_port: CPORT,
        dst_port: 443,
        seq: SeqNumber(C_ISN),
        ack: SeqNumber(0),
        flags: flags::SYN,
        window: 64240,
        options: linux_syn_options(),
        payload: &[],
    });
    // A wrong checksum the device vouched for: the engine takes the device's word.
    let at = HEADROOM + 20 + 16;
    buf[at] ^= 0x5a;
    let mut h = Harness::new();
    let (step, _) = h.run_with(buf, RxChecksum::Valid);
    assert_eq!(step.verdict, Verdict::Consumed);
}

#[test]
fn partial_checksum_request_is_peeked_and_replayed_with_a_finished_checksum() {
    let mut h = Harness::new();
    let synack = h.syn(80);
    let k = synack.seg.seq.0;
    let ts = Some((101, synack.seg.options.timestamps.unwrap().0));
    let mut buf = client_packet(&Segment {
        src_port: CPORT,
        dst_port: 80,
        seq: SeqNumber(C_ISN + 1),
        ack: SeqNumber(k + 1),
        flags: flags::ACK | flags::PSH,
        window: 502,
        options: TcpOptionsSpec {
            timestamps: ts,
            ..Default::default()
        },
        payload: HTTP_REQUEST,
    });
    make_partial(&mut buf);
    let (step, _) = h.run_with(buf, RxChecksum::Partial);
    assert_eq!(step.verdict, Verdict::Consumed);
    let syn = step.only_sent();
    assert!(syn.v6 && syn.seg.syn(), "peeked, routed, backend SYN sent");
    let step = h.backend_from(
        80,
        flags::SYN | flags::ACK,
        B_ISN,
        C_ISN + 1,
        backend_linux(),
        &[],
    );
    // Sent::parse verified the finished checksum of the replayed request.
    assert!(step.sent.iter().any(|s| s.payload == HTTP_REQUEST));
}
