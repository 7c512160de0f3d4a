//! Many users behind one address (docs/robustness.md): the limits shared by every
//! engine of a daemon, an address's allowance of unnamed state, and fairness under
//! pressure (`engine/pressure.rs`).

use core::time::Duration;

use super::*;

/// A segment from `src`:`sport` to `dport` of the service.
fn from(
    src: Ipv4Addr,
    sport: u16,
    dport: u16,
    (flags, seq, ack): (u8, u32, u32),
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

/// Opens a connection from `src`:`sport` to port 80 and sends `bytes`; returns the step
/// of the bytes.
fn connect_and_send(h: &mut Harness, src: Ipv4Addr, sport: u16, bytes: &[u8]) -> Step {
    let synack = h.run(from(
        src,
        sport,
        80,
        (flags::SYN, C_ISN, 0),
        linux_syn_options(),
        &[],
    ));
    let synack = synack.only_sent();
    let k = synack.seg.seq.0;
    let tsecr = synack.seg.options.timestamps.unwrap().0;
    let opts = ts(101, tsecr);
    h.run(from(
        src,
        sport,
        80,
        (flags::ACK, C_ISN + 1, k + 1),
        opts,
        &[],
    ));
    h.run(from(
        src,
        sport,
        80,
        (flags::ACK, C_ISN + 1, k + 1),
        opts,
        bytes,
    ))
}

#[test]
fn pressure_is_half_of_the_peek_memory_or_of_the_half_open_bound() {
    let mut c = config();
    c.max_half_open = 4;
    let mut h = Harness::with(c);
    h.syn(443);
    assert!(!h.engine.under_pressure());
    h.run(from(
        CLIENT,
        9,
        443,
        (flags::SYN, C_ISN, 0),
        linux_syn_options(),
        &[],
    ));
    assert!(h.engine.under_pressure(), "2 half-open of 4");

    let mut c = config();
    c.max_peek_bytes = 400;
    let mut h = Harness::with(c);
    connect_and_send(&mut h, CLIENT, 9, &HTTP_REQUEST[..20]);
    assert!(!h.engine.under_pressure());
    connect_and_send(&mut h, CLIENT, 10, &[b'G'; 180]);
    assert!(
        h.engine.under_pressure(),
        "{} of 400",
        h.engine.peek_bytes()
    );
}

#[test]
fn under_pressure_stale_peeks_of_the_heaviest_address_are_cut_first_and_only_until_it_ends() {
    let mut c = config();
    c.max_peek_bytes = 4_000;
    c.max_peeking_per_client = 100;
    let mut h = Harness::with(c);
    let (heavy, light, prompt) = (
        Ipv4Addr::new(198, 51, 100, 7),
        Ipv4Addr::new(198, 51, 100, 8),
        Ipv4Addr::new(203, 0, 113, 9),
    );
    // Stalled heads of 200 bytes: ten from one address, two from another.
    let stalled = [b'G'; 200];
    for port in 0..10 {
        connect_and_send(&mut h, heavy, 1_000 + port, &stalled);
    }
    for port in 0..2 {
        connect_and_send(&mut h, light, 2_000 + port, &stalled);
    }
    assert!(h.engine.under_pressure());
    // A third address's clients complete their requests promptly, under pressure too.
    for port in 0..5 {
        let step = connect_and_send(&mut h, prompt, 3_000 + port, HTTP_REQUEST);
        assert!(step.only_sent().seg.syn(), "served: the backend SYN");
    }
    // Not yet stale: nothing is cut.
    h.advance(Duration::from_millis(900));
    assert_eq!(h.engine.stats().pressure_cuts, 0);
    // A second without progress: the heavy address's oldest are cut until the pressure
    // is gone: 12 × 200 bytes stalled and 5 requests still connecting (55 bytes each)
    // are 2,675 of 4,000; four cuts bring it under 2,000.
    let held = h.engine.peek_bytes();
    assert_eq!(held, 12 * 200 + 5 * HTTP_REQUEST.len());
    let cut = h.advance(Duration::from_millis(400));
    let resets: Vec<_> = cut.iter().filter(|s| s.seg.rst()).collect();
    assert_eq!(resets.len(), (held - 1_999).div_ceil(200), "{cut:?}");
    assert!(resets.iter().all(|s| s.dst == std::net::IpAddr::V4(heavy)));
    let ports: Vec<u16> = resets.iter().map(|s| s.seg.dst_port).collect();
    assert_eq!(ports, [1_000, 1_001, 1_002, 1_003], "the oldest first");
    assert_eq!(
        h.engine.stats().outcomes(Outcome::Limited),
        resets.len() as u64
    );
    assert!(!h.engine.under_pressure());
    assert_eq!(h.engine.flow_count(), 10 + 2 + 5 - resets.len());
}

#[test]
fn limits_are_shared_by_every_engine_of_a_daemon() {
    let shared = Arc::new(SharedLimits::new([5, 6]));
    let mut c = config();
    c.max_peeking_per_client = 2;
    c.max_half_open = 3;
    c.shared_limits = Some(shared.clone());
    let mut a = Harness::with(c.clone());
    let mut b = Harness::with(c);
    // One address's allowance of 2, across both engines.
    a.syn(443);
    b.run(from(
        CLIENT,
        7,
        443,
        (flags::SYN, C_ISN, 0),
        linux_syn_options(),
        &[],
    ));
    assert_eq!(shared.held_by(CLIENT), 2);
    let third = a.run(from(
        CLIENT,
        8,
        443,
        (flags::SYN, C_ISN, 0),
        linux_syn_options(),
        &[],
    ));
    assert_eq!(third.verdict, Verdict::Consumed);
    assert_eq!(
        a.engine.stats().cookies_for_address,
        1,
        "a cookie: the allowance is global"
    );
    // The half-open bound of 3, across both engines.
    let other = Ipv4Addr::new(198, 51, 100, 99);
    b.run(from(
        other,
        9,
        443,
        (flags::SYN, C_ISN, 0),
        linux_syn_options(),
        &[],
    ));
    assert_eq!(shared.half_open(), 3);
    let last = Ipv4Addr::new(198, 51, 100, 98);
    a.run(from(
        last,
        9,
        443,
        (flags::SYN, C_ISN, 0),
        linux_syn_options(),
        &[],
    ));
    assert_eq!(a.engine.stats().cookies_sent, 2, "the bound is global");
    // The shared count of cookies (what the kernel program's flood mode reads) counts
    // every engine's.
    assert_eq!(
        shared.cookies_sent(),
        a.engine.stats().cookies_sent + b.engine.stats().cookies_sent
    );
    // An engine that goes away gives back what its flows held.
    drop(b);
    assert_eq!((shared.held_by(CLIENT), shared.half_open()), (1, 1));
}

#[test]
fn past_its_allowance_an_address_gets_syn_cookies_and_a_complete_request_is_served() {
    let mut c = config();
    c.max_peeking_per_client = 1;
    let mut h = Harness::with(c);
    h.syn(443);
    // The second connection: a cookie, no state.
    let synack = h.client_to(80, flags::SYN, C_ISN, 0, linux_syn_options(), &[]);
    assert_eq!(synack.verdict, Verdict::Consumed);
    assert_eq!(h.engine.flow_count(), 1);
    assert_eq!(h.engine.stats().cookies_for_address, 1);
    let k = synack.only_sent().seg.seq.0;
    let tsecr = synack.only_sent().seg.options.timestamps.unwrap().0;
    // Its bare ACK is taken without a flow, its request makes one and goes on.
    let ack = h.client_to(80, flags::ACK, C_ISN + 1, k + 1, ts(101, tsecr), &[]);
    assert_eq!((ack.verdict, ack.sent.len()), (Verdict::Consumed, 0));
    assert_eq!(h.engine.stats().deferred, 1);
    assert_eq!(h.engine.flow_count(), 1);
    let request = h.client_to(
        80,
        flags::ACK | flags::PSH,
        C_ISN + 1,
        k + 1,
        ts(102, tsecr),
        HTTP_REQUEST,
    );
    assert!(request.only_sent().seg.syn(), "the backend SYN");
    assert_eq!(h.engine.flow_count(), 2);
}

#[test]
fn past_its_allowance_bytes_that_do_not_name_at_once_are_left_to_the_client() {
    let mut c = config();
    c.max_peeking_per_client = 1;
    let mut h = Harness::with(c);
    h.syn(443);
    let synack = h.client_to(80, flags::SYN, C_ISN, 0, linux_syn_options(), &[]);
    let k = synack.only_sent().seg.seq.0;
    let tsecr = synack.only_sent().seg.options.timestamps.unwrap().0;
    let step = h.client_to(
        80,
        flags::ACK | flags::PSH,
        C_ISN + 1,
        k + 1,
        ts(101, tsecr),
        &HTTP_REQUEST[..10],
    );
    assert_eq!(step.verdict, Verdict::Dropped(DropReason::ClientPeekLimit));
    assert!(step.sent.is_empty(), "no RST: the client sends it again");
    assert_eq!((h.engine.flow_count(), h.engine.peek_bytes()), (1, 0));
}

#[test]
fn past_its_allowance_a_syn_a_cookie_would_cost_its_options_is_taken_below_pressure() {
    let mut c = config();
    c.max_peeking_per_client = 1;
    let mut h = Harness::with(c);
    h.syn(443);
    // Window scaling and SACK without timestamps: a cookie could not keep them.
    let windows = TcpOptionsSpec {
        mss: Some(1460),
        window_scale: Some(8),
        sack_permitted: true,
        ..Default::default()
    };
    let step = h.client_to(80, flags::SYN, C_ISN, 0, windows, &[]);
    assert_eq!(step.verdict, Verdict::Consumed);
    assert_eq!(step.only_sent().seg.options.window_scale, Some(7));
    assert_eq!(h.engine.flow_count(), 2, "state, not a cookie");
}

#[test]
fn under_pressure_a_syn_a_cookie_would_cost_its_options_is_dropped_past_the_allowance() {
    let mut c = config();
    c.max_peeking_per_client = 1;
    c.max_half_open = 2;
    let mut h = Harness::with(c);
    h.syn(443); // one half-open of two: pressure
    let windows = TcpOptionsSpec {
        mss: Some(1460),
        window_scale: Some(8),
        sack_permitted: true,
        ..Default::default()
    };
    let step = h.client_to(80, flags::SYN, C_ISN, 0, windows, &[]);
    assert_eq!(step.verdict, Verdict::Dropped(DropReason::ClientPeekLimit));
}
