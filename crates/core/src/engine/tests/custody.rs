//! Custody (docs/architecture.md, "Custody"): a stalled peek acknowledged by Kracauer
//! after the custody delay, and the acknowledged bytes delivered to the backend by
//! Kracauer itself until the backend acknowledges them.

use core::time::Duration;

use super::*;

/// A TLS flow with the first `n` bytes of a ClientHello for a.example held and
/// acknowledged by Kracauer (custody taken). Returns (Kracauer's ISN, the hello).
fn in_custody(h: &mut Harness, n: usize) -> (u32, Vec<u8>) {
    let synack = h.syn(443);
    let k = synack.seg.seq.0;
    let hello = client_hello("a.example");
    let step = h.client_to(443, flags::ACK, C_ISN + 1, k + 1, ts(101, 0), &hello[..n]);
    assert!(
        step.sent.is_empty(),
        "peeked bytes are not acknowledged at once"
    );
    assert!(h.advance(Duration::from_millis(99)).is_empty());
    let sent = h.advance(Duration::from_millis(1));
    assert_eq!(sent.len(), 1, "{sent:?}");
    let ack = &sent[0];
    assert_eq!((ack.flags(), ack.seg.seq.0), (flags::ACK, k + 1));
    assert_eq!(ack.seg.ack.0, C_ISN + 1 + n as u32);
    assert_eq!(h.engine.stats().custody_taken, 1);
    (k, hello)
}

/// `in_custody`, then the rest of the hello, the backend's SYN-ACK (window
/// `backend_window`, MSS 1440): returns what went to the backend after its SYN-ACK.
fn spliced_in_custody(h: &mut Harness, n: usize, backend_window: u16) -> (u32, Vec<Sent>) {
    let (k, hello) = in_custody(h, n);
    let step = h.client_to(
        443,
        flags::ACK | flags::PSH,
        C_ISN + 1 + n as u32,
        k + 1,
        ts(102, 0),
        &hello[n..],
    );
    assert!(step.only_sent().seg.syn(), "named: the backend SYN");
    h.backend_window = backend_window;
    let step = h.backend_from(
        8443,
        flags::SYN | flags::ACK,
        B_ISN,
        C_ISN + 1,
        backend_linux(),
        &[],
    );
    (k, step.sent)
}

#[test]
fn a_stalled_peek_is_acknowledged_after_the_custody_delay_and_not_before() {
    let mut h = Harness::new();
    in_custody(&mut h, 40);
    // Nothing more until the peek deadline.
    let sent = h.advance(Duration::from_secs(4));
    assert!(sent.is_empty(), "{sent:?}");
}

#[test]
fn no_custody_is_taken_when_the_delay_is_zero() {
    let mut c = config();
    c.custody_delay = Duration::ZERO;
    let mut h = Harness::with(c);
    let k = h.syn(443).seg.seq.0;
    let hello = client_hello("a.example");
    h.client_to(443, flags::ACK, C_ISN + 1, k + 1, ts(101, 0), &hello[..40]);
    assert!(h.advance(Duration::from_secs(4)).is_empty());
    assert_eq!(h.engine.stats().custody_taken, 0);
}

#[test]
fn bytes_sent_again_after_custody_are_acknowledged_again_at_once() {
    let mut h = Harness::new();
    let (k, hello) = in_custody(&mut h, 40);
    // The custody ACK was lost: the client sends its bytes again.
    let step = h.client_to(443, flags::ACK, C_ISN + 1, k + 1, ts(103, 0), &hello[..40]);
    assert_eq!(step.verdict, Verdict::Consumed);
    let ack = step.only_sent();
    assert_eq!((ack.flags(), ack.seg.ack.0), (flags::ACK, C_ISN + 41));
}

#[test]
fn the_custody_ack_keeps_the_right_edge_of_the_announced_window() {
    let mut h = Harness::new();
    let synack = h.syn(443);
    let k = synack.seg.seq.0;
    let hello = client_hello("a.example");
    h.client_to(443, flags::ACK, C_ISN + 1, k + 1, ts(101, 0), &hello[..40]);
    let ack = h.advance(Duration::from_millis(100)).remove(0);
    // The SYN-ACK offered 65,535 bytes (16 KiB peek cap below that); the client scales
    // Kracauer's windows by 2^7.
    let edge = u64::from(ack.seg.ack.0) + (u64::from(ack.seg.window) << 7);
    assert!(edge >= u64::from(C_ISN + 1) + 65_535, "edge {edge}");
    assert!(edge < u64::from(C_ISN + 1) + 65_535 + 128);
}

#[test]
fn the_splice_hands_over_every_byte_and_keeps_custody_until_the_backend_acknowledges() {
    let mut h = Harness::new();
    let len = client_hello("a.example").len() as u32;
    let (_, sent) = spliced_in_custody(&mut h, 40, 60_000);
    let data: Vec<u8> = sent.iter().flat_map(|s| s.payload.clone()).collect();
    assert_eq!(data, client_hello("a.example"), "the whole hello, once");
    assert!(h.engine.peek_bytes() > 0, "custody bytes are held");
    // The backend acknowledges all of it: the custody ends, nothing is held.
    let step = h.backend_from(
        8443,
        flags::ACK,
        B_ISN + 1,
        C_ISN + 1 + len,
        ts(5_001, 102),
        &[],
    );
    let fwd = step.forwarded.expect("forwarded");
    assert_eq!(fwd.seg.ack.0, C_ISN + 1 + len, "not touched");
    assert_eq!(h.engine.peek_bytes(), 0);
    assert!(matches!(
        h.engine.flows.iter().next().map(|f| &f.3.phase),
        Some(crate::flow::Phase::Spliced(_))
    ));
    // And no retransmission follows.
    assert!(h.advance(Duration::from_secs(3)).is_empty());
}

#[test]
fn a_backend_ack_below_the_custody_bytes_is_raised_to_them_with_the_window_cut() {
    let mut h = Harness::new();
    spliced_in_custody(&mut h, 40, 60_000);
    // The backend's answer that acknowledges only 10 of the 40 bytes Kracauer took.
    h.backend_window = 1000; // × 2^9 = 512,000 bytes
    let step = h.backend_from(
        8443,
        flags::ACK | flags::PSH,
        B_ISN + 1,
        C_ISN + 11,
        ts(5_001, 102),
        b"early",
    );
    let fwd = step.forwarded.expect("forwarded");
    assert_eq!(
        fwd.seg.ack.0,
        C_ISN + 41,
        "raised to what the client was told"
    );
    // The right edge stays: 512,000 − 30 bytes, in the client's scale (2^7), rounded down.
    assert_eq!(fwd.seg.window, ((512_000u32 - 30) >> 7) as u16);
    assert_eq!(fwd.payload, b"early");
}

#[test]
fn custody_bytes_the_backend_did_not_acknowledge_are_sent_again_with_back_off() {
    let mut h = Harness::new();
    spliced_in_custody(&mut h, 40, 60_000);
    // The handover was lost. The first interval is at least 200 ms.
    assert!(h.advance(Duration::from_millis(199)).is_empty());
    let again = h.advance(Duration::from_millis(1));
    assert_eq!(again.len(), 1, "{again:?}");
    assert!(again[0].v6);
    assert_eq!(again[0].seg.seq.0, C_ISN + 1);
    assert_eq!(again[0].payload, client_hello("a.example")[..40].to_vec());
    assert!(h.advance(Duration::from_millis(399)).is_empty(), "doubled");
    assert_eq!(h.advance(Duration::from_millis(1)).len(), 1);
    assert_eq!(h.engine.stats().custody_retransmits, 2);
}

#[test]
fn custody_bytes_beyond_the_backend_window_go_as_it_opens() {
    let mut h = Harness::new();
    let mut head = b"GET / HTTP/1.1\r\nX-Pad: ".to_vec();
    head.resize(head.len() + 2_500, b'a');
    head.extend_from_slice(b"\r\nHost: a.example\r\n\r\n");
    let k = h.syn(80).seg.seq.0;
    h.client_to(80, flags::ACK, C_ISN + 1, k + 1, ts(101, 0), &head[..2_000]);
    let ack = h.advance(Duration::from_millis(100));
    assert_eq!(ack[0].seg.ack.0, C_ISN + 2_001, "custody of 2,000 bytes");
    let step = h.client_to(
        80,
        flags::ACK,
        C_ISN + 2_001,
        k + 1,
        ts(102, 0),
        &head[2_000..],
    );
    assert!(step.only_sent().seg.syn());
    // The backend's SYN-ACK offers 20 bytes: the handover sends one segment (1,428
    // bytes with timestamps), short of the custody bytes.
    h.backend_window = 20;
    let step = h.backend_from(
        80,
        flags::SYN | flags::ACK,
        B_ISN,
        C_ISN + 1,
        backend_linux(),
        &[],
    );
    let first: usize = step.sent.iter().map(|s| s.payload.len()).sum();
    assert_eq!(first, 1_428);
    // Its window opens with the acknowledgement: the rest of the custody bytes go.
    h.backend_window = 1000;
    let step = h.backend_from(
        80,
        flags::ACK,
        B_ISN + 1,
        C_ISN + 1 + first as u32,
        ts(5_001, 102),
        &[],
    );
    let more: Vec<u8> = step.sent.iter().flat_map(|s| s.payload.clone()).collect();
    assert_eq!(step.sent[0].seg.seq.0, C_ISN + 1 + first as u32);
    assert_eq!(more, head[first..2_000].to_vec());
}

#[test]
fn a_backend_that_never_acknowledges_the_custody_bytes_gets_both_ends_reset() {
    let mut h = Harness::new();
    spliced_in_custody(&mut h, 40, 60_000);
    let mut resets = Vec::new();
    for _ in 0..60 {
        resets.extend(
            h.advance(Duration::from_millis(100))
                .into_iter()
                .filter(|s| s.seg.rst()),
        );
    }
    assert_eq!(resets.len(), 2, "{resets:?}");
    assert!(resets.iter().any(|s| s.v6) && resets.iter().any(|s| !s.v6));
    let to_backend = resets.iter().find(|s| s.v6).expect("RST to the backend");
    assert_eq!(
        to_backend.seg.seq.0,
        C_ISN + 1,
        "at what the backend expects"
    );
    assert_eq!(h.engine.flow_count(), 0);
    assert_eq!(h.engine.peek_bytes(), 0);
    assert_eq!(h.engine.stats().outcomes(Outcome::ConnectTimeout), 1);
}

/// `h`'s engine through a snapshot, restored in a "new process" whose clock started a
/// moment ago.
fn restored(h: &Harness) -> Harness {
    let bytes = h.engine.snapshot(h.now);
    let now = Time::from_millis(3);
    let engine = Engine::restore(config(), routes(), &bytes, now).expect("restores");
    Harness {
        engine,
        now,
        backend_window: h.backend_window,
        out: Output::default(),
    }
}

#[test]
fn a_snapshot_of_flows_in_custody_round_trips_to_the_same_bytes() {
    // A peek in custody, and a spliced flow in custody (another client port).
    let mut a = Harness::new();
    spliced_in_custody(&mut a, 40, 60_000);
    let k = a.syn(80).seg.seq.0;
    a.client_to(
        80,
        flags::ACK,
        C_ISN + 1,
        k + 1,
        ts(101, 0),
        &HTTP_REQUEST[..10],
    );
    a.advance(Duration::from_millis(100));
    assert_eq!(a.engine.stats().custody_taken, 2);
    let one = a.engine.snapshot(a.now);
    let b = restored(&a);
    assert_eq!(b.engine.snapshot(b.now), one);
    assert!(
        b.engine.peek_bytes() > 0,
        "the custody bytes are held again"
    );
}

#[test]
fn custody_runs_on_after_restore_acknowledging_retransmitting_and_releasing_the_same() {
    let mut a = Harness::new();
    let (k, hello) = in_custody(&mut a, 40);
    let mut b = restored(&a);
    // The custody ACK is repeated for a retransmission, from the restored state too.
    for h in [&mut a, &mut b] {
        let step = h.client_to(443, flags::ACK, C_ISN + 1, k + 1, ts(103, 0), &hello[..40]);
        assert_eq!(step.only_sent().seg.ack.0, C_ISN + 41);
    }
    // Named, connected and spliced in custody; then restored again.
    let mut b = {
        let step = a.client_to(
            443,
            flags::ACK | flags::PSH,
            C_ISN + 41,
            k + 1,
            ts(104, 0),
            &hello[40..],
        );
        assert!(step.only_sent().seg.syn());
        a.backend_window = 60_000;
        a.backend_from(
            8443,
            flags::SYN | flags::ACK,
            B_ISN,
            C_ISN + 1,
            backend_linux(),
            &[],
        );
        drop(b);
        restored(&a)
    };
    let (x, y) = (
        a.advance(Duration::from_millis(200)),
        b.advance(Duration::from_millis(200)),
    );
    assert_eq!(
        format!("{x:?}"),
        format!("{y:?}"),
        "the same retransmission"
    );
    assert_eq!(y.len(), 1);
    for h in [&mut a, &mut b] {
        let len = hello.len() as u32;
        h.backend_from(
            8443,
            flags::ACK,
            B_ISN + 1,
            C_ISN + 1 + len,
            ts(5_001, 104),
            &[],
        );
        assert_eq!(h.engine.peek_bytes(), 0, "released");
    }
}
