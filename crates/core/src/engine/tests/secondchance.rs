//! Second chance between scale-out instances (`secondchance.rs`): a segment for no flow
//! held here is passed on, not reset; one passed on by a peer is handled for a held flow
//! and dropped silently otherwise; an orphan every peer refused is reset.

use super::*;
use crate::tcp::emit::Segment;

fn second_chance_config() -> EngineConfig {
    EngineConfig {
        second_chance: true,
        ..config()
    }
}

/// A client segment from `CPORT` to port 80.
fn client_segment(flags: u8, seq: u32, ack: u32, payload: &[u8]) -> Vec<u8> {
    client_packet(&Segment {
        src_port: CPORT,
        dst_port: 80,
        seq: SeqNumber(seq),
        ack: SeqNumber(ack),
        flags,
        window: 502,
        options: ts(200, 300),
        payload,
    })
}

impl Harness {
    /// Hands `buf` to the engine as a peer's second chance.
    fn passed_on(&mut self, mut buf: Vec<u8>) -> (Step, Vec<u8>) {
        self.out.clear();
        let verdict = self.engine.handle_second_chance(
            self.now,
            &mut buf,
            HEADROOM,
            RxChecksum::Unchecked,
            &mut self.out,
        );
        let forwarded = match &verdict {
            Verdict::Forward(r) => Some(Sent::parse(&buf[r.clone()])),
            _ => None,
        };
        let sent = self.out.packets().map(Sent::parse).collect();
        let step = Step {
            verdict,
            forwarded,
            sent,
        };
        (step, buf)
    }

    /// Hands `buf` to the engine as an orphan every peer refused.
    fn orphan(&mut self, buf: &[u8]) -> Step {
        self.out.clear();
        let verdict = self.engine.reset_orphan(buf, HEADROOM, &mut self.out);
        let sent = self.out.packets().map(Sent::parse).collect();
        Step {
            verdict,
            forwarded: None,
            sent,
        }
    }
}

#[test]
fn without_second_chance_a_segment_for_no_flow_is_answered_with_rst() {
    let mut h = Harness::new();
    let (step, _) = h.run_with(
        client_segment(flags::ACK, 5_000, 9_000, b"data"),
        RxChecksum::Unchecked,
    );
    assert_eq!(step.verdict, Verdict::Dropped(DropReason::ClientNoFlow));
    assert!(step.only_sent().seg.rst());
    assert_eq!(h.engine.stats().second_chance_passed, 0);
}

#[test]
fn with_second_chance_a_segment_for_no_flow_is_passed_on_untouched_and_not_reset() {
    let mut h = Harness::with(second_chance_config());
    let packet = client_segment(flags::ACK | flags::PSH, 5_000, 9_000, b"data");
    let (step, after) = h.run_with(packet.clone(), RxChecksum::Unchecked);
    assert_eq!(step.verdict, Verdict::SecondChance);
    assert!(step.sent.is_empty(), "nothing answered: {:?}", step.sent);
    assert_eq!(after, packet, "the packet is left as it came");
    assert_eq!(h.engine.stats().second_chance_passed, 1);
    assert_eq!(h.engine.stats().total_drops(), 0);
    assert_eq!(h.engine.flow_count(), 0);
}

#[test]
fn with_second_chance_a_rst_and_a_fin_for_no_flow_are_passed_on() {
    let mut h = Harness::with(second_chance_config());
    for f in [flags::RST, flags::RST | flags::ACK, flags::FIN | flags::ACK] {
        let (step, _) = h.run_with(client_segment(f, 5_000, 9_000, &[]), RxChecksum::Unchecked);
        assert_eq!(step.verdict, Verdict::SecondChance, "flags {f:#x}");
        assert!(step.sent.is_empty());
    }
    assert_eq!(h.engine.stats().second_chance_passed, 3);
}

#[test]
fn with_second_chance_a_syn_still_starts_a_flow_here() {
    let mut h = Harness::with(second_chance_config());
    let synack = h.syn(80);
    assert!(synack.seg.syn() && synack.seg.ack_flag());
    assert_eq!(h.engine.flow_count(), 1);
    assert_eq!(h.engine.stats().second_chance_passed, 0);
}

#[test]
fn with_second_chance_a_segment_with_a_bad_checksum_is_dropped_not_passed_on() {
    let mut h = Harness::with(second_chance_config());
    let mut packet = client_segment(flags::ACK, 5_000, 9_000, b"data");
    let last = packet.len() - 1;
    packet[last] ^= 0xff;
    let (step, _) = h.run_with(packet, RxChecksum::Unchecked);
    assert_eq!(
        step.verdict,
        Verdict::Dropped(DropReason::ClientBadChecksum)
    );
    assert_eq!(h.engine.stats().second_chance_passed, 0);
}

#[test]
fn with_second_chance_a_cookie_ack_of_this_engine_opens_the_flow_here() {
    let mut c = second_chance_config();
    c.max_half_open = 0;
    let mut h = Harness::with(c);
    let synack = h.syn(80);
    let tsecr = synack.seg.options.timestamps.unwrap().0;
    let step = h.client_to(
        80,
        flags::ACK | flags::PSH,
        C_ISN + 1,
        synack.seg.seq.0 + 1,
        ts(101, tsecr),
        HTTP_REQUEST,
    );
    assert!(step.only_sent().seg.syn(), "the backend SYN: {step:?}");
    assert_eq!(h.engine.stats().cookies_accepted, 1);
    assert_eq!(h.engine.stats().second_chance_passed, 0);
}

/// Two engines alike (same seed), each with one spliced flow: one takes the client's
/// next segment from the TUN, the other as a peer's second chance.
#[test]
fn a_passed_segment_of_a_held_flow_is_handled_exactly_as_from_the_tun() {
    let mut from_tun = Harness::new();
    let mut from_peer = Harness::with(second_chance_config());
    for h in [&mut from_tun, &mut from_peer] {
        h.spliced_http(backend_linux());
    }
    let data = client_segment(
        flags::ACK | flags::PSH,
        C_ISN + 1 + HTTP_REQUEST.len() as u32,
        1_001,
        b"more bytes",
    );
    let (tun, tun_buf) = from_tun.run_with(data.clone(), RxChecksum::Unchecked);
    let (peer, peer_buf) = from_peer.passed_on(data);
    let Verdict::Forward(range) = &tun.verdict else {
        panic!("{tun:?}");
    };
    assert_eq!(peer.verdict, tun.verdict);
    assert_eq!(peer_buf[range.clone()], tun_buf[range.clone()]);
    let sent = peer.forwarded.unwrap();
    assert!(sent.v6);
    assert_eq!(sent.payload, b"more bytes");
    let stats = from_peer.engine.stats();
    assert_eq!(
        (stats.second_chance_received, stats.second_chance_held),
        (1, 1)
    );
    assert_eq!(stats.packets[0], from_tun.engine.stats().packets[0]);
}

#[test]
fn a_passed_rst_ends_the_held_flow() {
    let mut h = Harness::new();
    h.spliced_http(backend_linux());
    let rst = client_segment(flags::RST, C_ISN + 1 + HTTP_REQUEST.len() as u32, 0, &[]);
    let (step, _) = h.passed_on(rst);
    let forwarded = step.forwarded.expect("the RST goes to the backend");
    assert!(forwarded.v6 && forwarded.seg.rst());
}

#[test]
fn a_passed_segment_for_no_flow_is_dropped_without_an_answer_and_never_passed_again() {
    for config in [config(), second_chance_config()] {
        let mut h = Harness::with(config);
        let (step, _) = h.passed_on(client_segment(flags::ACK, 5_000, 9_000, b"data"));
        assert_eq!(
            step.verdict,
            Verdict::Dropped(DropReason::ClientSecondChanceNoFlow)
        );
        assert!(step.sent.is_empty(), "no RST: {:?}", step.sent);
        let stats = h.engine.stats();
        assert_eq!(stats.drops(DropReason::ClientSecondChanceNoFlow), 1);
        assert_eq!(stats.drops(DropReason::ClientNoFlow), 0);
        assert_eq!(
            (stats.second_chance_received, stats.second_chance_held),
            (1, 0)
        );
        assert_eq!(stats.second_chance_passed, 0);
    }
}

#[test]
fn a_passed_syn_starts_nothing() {
    let mut h = Harness::with(second_chance_config());
    let (step, _) = h.passed_on(client_segment(flags::SYN, C_ISN, 0, &[]));
    assert_eq!(
        step.verdict,
        Verdict::Dropped(DropReason::ClientSecondChanceNoFlow)
    );
    assert!(step.sent.is_empty());
    assert_eq!(h.engine.flow_count(), 0);
}

#[test]
fn a_passed_cookie_ack_of_this_engine_opens_the_flow_here() {
    // The SYN-ACK came from here; the client's ACK reached a peer, which passed it on.
    let mut c = config();
    c.max_half_open = 0;
    let mut h = Harness::with(c);
    let synack = h.syn(80);
    let tsecr = synack.seg.options.timestamps.unwrap().0;
    let ack = client_packet(&Segment {
        src_port: CPORT,
        dst_port: 80,
        seq: SeqNumber(C_ISN + 1),
        ack: SeqNumber(synack.seg.seq.0 + 1),
        flags: flags::ACK | flags::PSH,
        window: 502,
        options: ts(101, tsecr),
        payload: HTTP_REQUEST,
    });
    let (step, _) = h.passed_on(ack);
    assert!(step.only_sent().seg.syn(), "the backend SYN: {step:?}");
    assert_eq!(h.engine.stats().cookies_accepted, 1);
}

#[test]
fn a_passed_packet_that_is_not_tcp_to_a_service_is_dropped() {
    let mut h = Harness::with(second_chance_config());
    let mut other_port = client_segment(flags::ACK, 5_000, 9_000, &[]);
    // Destination port 81 is no service port (the checksum no longer matters: the
    // packet is refused before it is read).
    other_port[HEADROOM + 20 + 3] = 81;
    for packet in [other_port, vec![0u8; HEADROOM + 10]] {
        let (step, _) = h.passed_on(packet);
        assert_eq!(
            step.verdict,
            Verdict::Dropped(DropReason::ClientSecondChanceNoFlow)
        );
        assert!(step.sent.is_empty());
    }
}

#[test]
fn an_orphan_is_answered_with_the_rst_an_engine_without_second_chance_sends() {
    let packet = client_segment(flags::ACK | flags::PSH, 5_000, 9_000, b"data");
    let mut plain = Harness::new();
    let (reset, _) = plain.run_with(packet.clone(), RxChecksum::Unchecked);
    let mut h = Harness::with(second_chance_config());
    let step = h.orphan(&packet);
    assert_eq!(step.verdict, Verdict::Dropped(DropReason::ClientNoFlow));
    let (rst, want) = (step.only_sent(), reset.only_sent());
    assert!(rst.seg.rst());
    assert_eq!(
        (rst.src, rst.dst, rst.seg.seq, rst.seg.ack, rst.flags()),
        (want.src, want.dst, want.seg.seq, want.seg.ack, want.flags())
    );
    assert_eq!(h.engine.stats().second_chance_orphans_reset, 1);
    assert_eq!(h.engine.stats().drops(DropReason::ClientNoFlow), 1);
}

#[test]
fn an_orphan_rst_is_not_answered() {
    let mut h = Harness::with(second_chance_config());
    let step = h.orphan(&client_segment(flags::RST, 5_000, 0, &[]));
    assert_eq!(step.verdict, Verdict::Dropped(DropReason::ClientNoFlow));
    assert!(step.sent.is_empty());
    assert_eq!(h.engine.stats().second_chance_orphans_reset, 0);
}

#[test]
fn an_orphan_of_a_tuple_held_here_by_now_is_left_alone() {
    let mut h = Harness::with(second_chance_config());
    h.syn(80);
    let step = h.orphan(&client_segment(flags::ACK, 5_000, 9_000, b"stale"));
    assert_eq!(step.verdict, Verdict::Consumed);
    assert!(step.sent.is_empty());
    assert_eq!(h.engine.flow_count(), 1);
}
