//! RFC 5961 where Kracauer is the endpoint (handshake and peek): a RST resets only at
//! exactly the next sequence expected; other RSTs inside the window Kracauer announced,
//! SYNs once established and ACK fields that acknowledge what Kracauer never sent get a
//! challenge ACK (rate-limited) and are dropped.

use core::time::Duration;

use super::*;
use crate::engine::tests::hostile::{assert_silent_drop, peeking_with_half_a_hello, segment};

#[test]
fn rst_inside_the_window_at_a_wrong_sequence_gets_a_challenge_ack_and_does_not_reset() {
    let mut h = Harness::new();
    let k = peeking_with_half_a_hello(&mut h);
    let half = client_hello("a.example").len() as u32 / 2;
    for seq in [C_ISN + half, C_ISN + 2 + half, C_ISN + 60_000] {
        let buf = segment(
            CLIENT,
            CPORT,
            443,
            flags::RST,
            seq,
            0,
            TcpOptionsSpec::default(),
            &[],
        );
        let step = h.run(buf);
        assert_eq!(
            step.verdict,
            Verdict::Dropped(DropReason::ClientOutOfWindow)
        );
        let challenge = step.only_sent();
        assert_eq!(challenge.flags(), flags::ACK);
        // It acknowledges only what Kracauer acknowledged (nothing of the peek).
        assert_eq!(
            (challenge.seg.seq.0, challenge.seg.ack.0),
            (k + 1, C_ISN + 1)
        );
    }
    assert_eq!(h.engine.stats().challenge_acks, 3);
    for seq in [C_ISN, 0x8000_0000] {
        let buf = segment(
            CLIENT,
            CPORT,
            443,
            flags::RST,
            seq,
            0,
            TcpOptionsSpec::default(),
            &[],
        );
        assert_silent_drop(&mut h, buf, DropReason::ClientOutOfWindow);
    }
    assert_eq!(h.engine.flow_count(), 1);
    let exact = h.client_to(
        443,
        flags::RST | flags::ACK,
        C_ISN + 1 + half,
        k + 1,
        TcpOptionsSpec::default(),
        &[],
    );
    assert_eq!(exact.verdict, Verdict::Consumed);
    assert_eq!(h.engine.flow_count(), 0, "the exact RST resets");
    assert_eq!(h.engine.peek_bytes(), 0);
    assert_eq!(h.engine.stats().outcomes(Outcome::ClientReset), 1);
}

#[test]
fn rst_at_the_sequence_a_challenge_ack_acknowledged_resets() {
    // A client whose connection is gone answers a challenge ACK with a RST at the
    // challenge's acknowledgment number.
    let mut h = Harness::new();
    peeking_with_half_a_hello(&mut h);
    let step = h.client_to(
        443,
        flags::RST,
        C_ISN + 1,
        0,
        TcpOptionsSpec::default(),
        &[],
    );
    assert_eq!(step.verdict, Verdict::Consumed);
    assert_eq!(h.engine.flow_count(), 0);
}

#[test]
fn challenge_acks_are_rate_limited() {
    let mut h = Harness::new();
    peeking_with_half_a_hello(&mut h);
    let half = client_hello("a.example").len() as u32 / 2;
    let n = crate::engine::custody::CHALLENGE_ACKS_PER_SECOND + 50;
    let mut sent = 0;
    for _ in 0..n {
        let buf = segment(
            CLIENT,
            CPORT,
            443,
            flags::RST,
            C_ISN + half,
            0,
            TcpOptionsSpec::default(),
            &[],
        );
        sent += h.run(buf).sent.len() as u32;
    }
    assert_eq!(sent, crate::engine::custody::CHALLENGE_ACKS_PER_SECOND);
    assert_eq!(h.engine.stats().challenge_acks_limited, 50);
    h.now = h.now + Duration::from_secs(1);
    let buf = segment(
        CLIENT,
        CPORT,
        443,
        flags::RST,
        C_ISN + half,
        0,
        TcpOptionsSpec::default(),
        &[],
    );
    assert_eq!(h.run(buf).sent.len(), 1, "a new second, a new budget");
}

#[test]
fn syn_on_a_peeking_flow_gets_a_challenge_ack() {
    let mut h = Harness::new();
    let k = peeking_with_half_a_hello(&mut h);
    for (isn, verdict) in [
        (C_ISN, Verdict::Consumed),
        (
            C_ISN + 5_000_000,
            Verdict::Dropped(DropReason::ClientOutOfWindow),
        ),
    ] {
        let step = h.client_to(443, flags::SYN, isn, 0, linux_syn_options(), &[]);
        assert_eq!(
            step.verdict, verdict,
            "a duplicate of its own SYN is no fault"
        );
        let challenge = step.only_sent();
        assert_eq!(challenge.flags(), flags::ACK);
        assert_eq!(challenge.seg.seq.0, k + 1);
    }
    assert_eq!(h.engine.flow_count(), 1);
}

#[test]
fn data_acknowledging_bytes_never_sent_gets_a_challenge_ack_and_is_dropped() {
    // RFC 5961 §5: blind data injection. Kracauer sent nothing but its SYN.
    let mut h = Harness::new();
    let k = peeking_with_half_a_hello(&mut h);
    let hello = client_hello("a.example");
    let half = hello.len() / 2;
    for ack in [k + 2, k, k.wrapping_add(0x4000_0000)] {
        let step = h.client_to(
            443,
            flags::ACK | flags::PSH,
            C_ISN + 1 + half as u32,
            ack,
            TcpOptionsSpec::default(),
            &hello[half..],
        );
        assert_eq!(
            step.verdict,
            Verdict::Dropped(DropReason::ClientOutOfWindow)
        );
        assert_eq!(
            step.only_sent().flags(),
            flags::ACK,
            "a challenge, not a RST"
        );
    }
    assert_eq!(h.engine.flow_count(), 1);
    assert_eq!(
        h.engine.stats().spliced,
        0,
        "the injected bytes were not taken"
    );
    // The real client's segment goes on.
    let step = h.client_to(
        443,
        flags::ACK | flags::PSH,
        C_ISN + 1 + half as u32,
        k + 1,
        TcpOptionsSpec::default(),
        &hello[half..],
    );
    assert!(step.only_sent().seg.syn(), "named: the backend SYN");
}
