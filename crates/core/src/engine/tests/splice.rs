//! Spliced flows: the backend's SYN-ACK, translation both ways, teardown.

use core::time::Duration;

use super::*;

#[test]
fn backend_synack_is_acked_with_the_peeked_bytes_and_not_shown_to_the_client() {
    let mut h = Harness::new();
    let (_, sent) = h.spliced_http(backend_linux());
    assert_eq!(sent.len(), 1, "one data segment: {sent:?}");
    let data = &sent[0];
    assert!(data.v6);
    assert_eq!(data.flags(), flags::ACK | flags::PSH);
    assert_eq!(
        (data.seg.seq, data.seg.ack),
        (SeqNumber(C_ISN + 1), SeqNumber(B_ISN + 1))
    );
    assert_eq!(data.payload, HTTP_REQUEST);
    assert_eq!(data.seg.options.timestamps, Some((101, 5_000)));
    assert_eq!(h.engine.stats().spliced, 1);
    assert_eq!(h.engine.peek_bytes(), 0, "the peek buffer is released");
    match h.engine.poll_event() {
        Some(Event::Opened { name, backend, .. }) => {
            assert_eq!(name.unwrap().as_str(), "a.example");
            assert_eq!(backend.port(), 80);
        }
        other => panic!("{other:?}"),
    }
}

#[test]
fn opened_event_carries_the_backend_connect_time() {
    let mut h = Harness::new();
    let (_, step) = h.open(80, HTTP_REQUEST);
    assert!(step.only_sent().seg.syn());
    let later = h.advance(Duration::from_millis(30));
    assert!(later.is_empty(), "no retransmission yet: {later:?}");
    let step = h.backend_from(
        80,
        flags::SYN | flags::ACK,
        B_ISN,
        C_ISN + 1,
        backend_linux(),
        &[],
    );
    assert_eq!(step.verdict, Verdict::Consumed);
    match h.engine.poll_event() {
        Some(Event::Opened {
            peek_time,
            connect_time,
            ..
        }) => {
            assert_eq!(peek_time, Duration::ZERO, "named in the first segment");
            assert_eq!(connect_time, Duration::from_millis(30));
        }
        other => panic!("{other:?}"),
    }
}

#[test]
fn peeked_bytes_are_cut_to_the_backends_mss() {
    let mut h = Harness::new();
    let request = [
        b"GET / HTTP/1.1\r\nHost: a.example\r\nX: ".as_slice(),
        &[b'y'; 3000],
        b"\r\n\r\n",
    ]
    .concat();
    let (_, step) = h.open(80, &request);
    assert!(step.only_sent().seg.syn());
    let small = TcpOptionsSpec {
        mss: Some(1220),
        ..backend_linux()
    };
    h.backend_window = 65535;
    let step = h.backend_from(80, flags::SYN | flags::ACK, B_ISN, C_ISN + 1, small, &[]);
    let sizes: Vec<usize> = step.sent.iter().map(|s| s.payload.len()).collect();
    assert_eq!(
        sizes,
        [1208, 1208, request.len() - 2416],
        "MSS 1220 minus 12 option bytes"
    );
    assert_eq!(step.sent[1].seg.seq, SeqNumber(C_ISN + 1 + 1208));
    assert_eq!(
        step.sent
            .iter()
            .flat_map(|s| s.payload.clone())
            .collect::<Vec<_>>(),
        request
    );
}

#[test]
fn client_segment_is_translated_with_ack_and_tsecr_offsets() {
    let mut h = Harness::new();
    let (synack, _) = h.spliced_http(backend_linux());
    let k = synack.seg.seq.0;
    let k_ts = synack.seg.options.timestamps.unwrap().0;
    let step = h.client_to(
        80,
        flags::ACK,
        C_ISN + 1 + HTTP_REQUEST.len() as u32,
        k + 1 + 10,
        ts(200, k_ts + 3),
        b"more",
    );
    let fwd = step.forwarded.expect("forwarded");
    assert!(fwd.v6);
    assert_eq!(
        (fwd.src, fwd.dst),
        (client6().into(), backend_addr().into())
    );
    assert_eq!((fwd.seg.src_port, fwd.seg.dst_port), (CPORT, 80));
    assert_eq!(
        fwd.seg.seq,
        SeqNumber(C_ISN + 1 + HTTP_REQUEST.len() as u32),
        "client sequence space unchanged"
    );
    assert_eq!(fwd.seg.ack, SeqNumber(B_ISN + 1 + 10), "ack + δ");
    let (tsval, tsecr) = fwd.seg.options.timestamps.unwrap();
    assert_eq!(tsval, 200);
    // ts_offset = 5000 - k_base, k_base = the SYN-ACK's TSval here (same millisecond).
    assert_eq!(tsecr, (k_ts + 3).wrapping_add(5_000u32.wrapping_sub(k_ts)));
    assert_eq!(fwd.payload, b"more");
    assert_eq!(
        fwd.seg.window, 502,
        "the backend agreed to the client's scale"
    );
}

#[test]
fn backend_segment_is_translated_with_seq_offset_and_rescaled_window() {
    let mut h = Harness::new();
    let (synack, _) = h.spliced_http(backend_linux());
    let k = synack.seg.seq.0;
    let k_ts = synack.seg.options.timestamps.unwrap().0;
    let step = h.backend_from(
        80,
        flags::ACK | flags::PSH,
        B_ISN + 1,
        C_ISN + 1 + 50,
        ts(5_010, 150),
        b"HTTP/1.1 200 OK\r\n",
    );
    let fwd = step.forwarded.expect("forwarded");
    assert!(!fwd.v6);
    assert_eq!((fwd.src, fwd.dst), (SERVICE.into(), CLIENT.into()));
    assert_eq!((fwd.seg.src_port, fwd.seg.dst_port), (80, CPORT));
    assert_eq!(fwd.seg.seq, SeqNumber(k + 1), "seq − δ");
    assert_eq!(fwd.seg.ack, SeqNumber(C_ISN + 1 + 50));
    assert_eq!(
        fwd.seg.options.timestamps,
        Some((k_ts + 10, 150)),
        "TSval − ts_offset"
    );
    assert_eq!(
        fwd.seg.window, 4000,
        "window rescaled from ws 9 to ws 7: 1000 << 9 >> 7"
    );
}

#[test]
fn sack_edges_from_the_client_are_moved_into_backend_space() {
    let mut h = Harness::new();
    let (synack, _) = h.spliced_http(backend_linux());
    let k = synack.seg.seq.0;
    // Build a client segment with a SACK block by hand: NOP NOP SACK(10) one block.
    let seg = Segment {
        src_port: CPORT,
        dst_port: 80,
        seq: SeqNumber(C_ISN + 1),
        ack: SeqNumber(k + 1),
        flags: flags::ACK,
        window: 500,
        options: TcpOptionsSpec::default(),
        payload: &[],
    };
    let mut buf = vec![0u8; HEADROOM + seg.v4_len() + 12];
    let n = seg
        .emit_v4(CLIENT, SERVICE, 1, &mut buf[HEADROOM..])
        .unwrap();
    let pkt = &mut buf[HEADROOM..HEADROOM + n + 12];
    pkt[2..4].copy_from_slice(&((n + 12) as u16).to_be_bytes());
    pkt[32] = 0x80; // data offset 8 words
    let left = (k + 1001).to_be_bytes();
    let right = (k + 2001).to_be_bytes();
    pkt[40..52].copy_from_slice(&[
        1, 1, 5, 10, left[0], left[1], left[2], left[3], right[0], right[1], right[2], right[3],
    ]);
    {
        let mut ip = Ipv4Packet::new_unchecked(&mut *pkt);
        ip.fill_checksum();
    }
    TcpPacket::new_unchecked(&mut pkt[20..]).fill_checksum_v4(CLIENT, SERVICE);
    let mut out = Output::default();
    let verdict = h.engine.handle_packet(h.now, &mut buf, HEADROOM, &mut out);
    let Verdict::Forward(r) = verdict else {
        panic!("{verdict:?}")
    };
    let ip = Ipv6Packet::new_checked(&buf[r]).unwrap();
    let tcp = TcpPacket::new_checked(ip.payload()).unwrap();
    assert!(tcp.verify_checksum_v6(&ip.src_addr(), &ip.dst_addr()));
    let blocks: Vec<_> = tcp
        .options()
        .filter_map(|o| match o.unwrap().1 {
            crate::wire::TcpOption::Sack(b) => Some(b.iter().collect::<Vec<_>>()),
            _ => None,
        })
        .collect();
    assert_eq!(
        blocks,
        [vec![(SeqNumber(B_ISN + 1001), SeqNumber(B_ISN + 2001))]]
    );
}

#[test]
fn backend_that_declines_window_scaling_gets_expanded_client_windows() {
    let mut h = Harness::new();
    let (synack, _) = h.spliced_http(TcpOptionsSpec {
        window_scale: None,
        ..backend_linux()
    });
    let k = synack.seg.seq.0;
    let step = h.client_to(80, flags::ACK, C_ISN + 1, k + 1, ts(200, 0), &[]);
    assert_eq!(step.forwarded.unwrap().seg.window, 64256);
    let step = h.backend_from(80, flags::ACK, B_ISN + 1, C_ISN + 1, ts(5_001, 200), &[]);
    assert_eq!(
        step.forwarded.unwrap().seg.window,
        1000 >> 7,
        "unscaled bytes in the client's scale"
    );
}

#[test]
fn backend_that_declines_timestamps_leaves_client_timestamps_untouched() {
    let mut h = Harness::new();
    let (synack, sent) = h.spliced_http(TcpOptionsSpec {
        timestamps: None,
        ..backend_linux()
    });
    assert_eq!(
        sent[0].seg.options.timestamps, None,
        "no timestamps towards a backend that declined"
    );
    let k = synack.seg.seq.0;
    let step = h.client_to(80, flags::ACK, C_ISN + 1, k + 1, ts(200, 77), &[]);
    assert_eq!(
        step.forwarded.unwrap().seg.options.timestamps,
        Some((200, 77))
    );
}

#[test]
fn retransmitted_backend_synack_is_reacked_not_forwarded() {
    let mut h = Harness::new();
    h.spliced_http(backend_linux());
    let step = h.backend_from(
        80,
        flags::SYN | flags::ACK,
        B_ISN,
        C_ISN + 1,
        backend_linux(),
        &[],
    );
    assert_eq!(step.verdict, Verdict::Consumed);
    let ack = step.only_sent();
    assert!(ack.v6);
    assert_eq!(ack.flags(), flags::ACK);
    assert_eq!(ack.seg.ack, SeqNumber(B_ISN + 1));
}

#[test]
fn fins_both_ways_close_the_flow_after_the_linger() {
    let mut h = Harness::new();
    let (synack, _) = h.spliced_http(backend_linux());
    let k = synack.seg.seq.0;
    let c_end = C_ISN + 1 + HTTP_REQUEST.len() as u32;
    let step = h.backend_from(
        80,
        flags::ACK | flags::FIN,
        B_ISN + 1,
        c_end,
        ts(5_001, 101),
        b"bye",
    );
    assert!(step.forwarded.unwrap().seg.fin());
    let step = h.client_to(
        80,
        flags::ACK | flags::FIN,
        c_end,
        k + 1 + 4,
        ts(201, 0),
        &[],
    );
    assert!(step.forwarded.unwrap().seg.fin());
    // The last ACK is a straggler that still gets through.
    let step = h.backend_from(80, flags::ACK, B_ISN + 5, c_end + 1, ts(5_002, 201), &[]);
    assert!(step.forwarded.is_some());
    h.advance(Duration::from_secs(31));
    assert_eq!(h.engine.flow_count(), 0);
    assert_eq!(h.engine.stats().outcomes(Outcome::Closed), 1);
    let closed = core::iter::from_fn(|| h.engine.poll_event())
        .last()
        .unwrap();
    match closed {
        Event::Closed {
            bytes_to_client,
            bytes_to_backend,
            outcome,
            ..
        } => {
            assert_eq!(outcome, Outcome::Closed);
            assert_eq!(bytes_to_client, 3);
            assert_eq!(
                bytes_to_backend, 0,
                "peeked bytes are Kracauer's to send, not forwarded"
            );
        }
        other => panic!("{other:?}"),
    }
}

#[test]
fn client_rst_is_forwarded_and_closes_the_flow() {
    let mut h = Harness::new();
    let (synack, _) = h.spliced_http(backend_linux());
    let step = h.client_to(
        80,
        flags::RST,
        C_ISN + 1,
        synack.seg.seq.0 + 1,
        TcpOptionsSpec::default(),
        &[],
    );
    assert!(step.forwarded.unwrap().seg.rst());
    h.advance(Duration::from_secs(31));
    assert_eq!(h.engine.stats().outcomes(Outcome::ClientReset), 1);
}

#[test]
fn idle_spliced_flow_expires_after_the_idle_timeout() {
    let mut h = Harness::new();
    let (synack, _) = h.spliced_http(backend_linux());
    h.advance(Duration::from_secs(7000));
    h.client_to(
        80,
        flags::ACK,
        C_ISN + 1,
        synack.seg.seq.0 + 1,
        ts(300, 0),
        &[],
    );
    h.advance(Duration::from_secs(7000));
    assert_eq!(h.engine.flow_count(), 1, "activity pushed the deadline out");
    h.advance(Duration::from_secs(500));
    assert_eq!(h.engine.flow_count(), 0);
    assert_eq!(h.engine.stats().outcomes(Outcome::IdleTimeout), 1);
}

#[test]
fn backend_segment_for_no_flow_gets_rst_towards_the_backend() {
    let mut h = Harness::new();
    let step = h.backend_from(80, flags::ACK, B_ISN, 555, TcpOptionsSpec::default(), b"x");
    assert_eq!(step.verdict, Verdict::Dropped(DropReason::BackendNoFlow));
    let rst = step.only_sent();
    assert!(rst.v6 && rst.seg.rst());
    assert_eq!(
        (rst.src, rst.dst),
        (client6().into(), backend_addr().into())
    );
    assert_eq!(rst.seg.seq, SeqNumber(555));
}

#[test]
fn second_client_connection_onto_the_same_backend_tuple_is_refused() {
    let mut c = config();
    c.services.push(Service {
        address: Ipv4Addr::new(203, 0, 113, 11),
        tls: vec![],
        http: vec![80],
        quic: vec![],
    });
    let mut h = Harness::with(c);
    h.spliced_http(backend_linux());
    // Same client address and port to the second service address: same IPv6 4-tuple.
    let seg = Segment {
        src_port: CPORT,
        dst_port: 80,
        seq: SeqNumber(9),
        ack: SeqNumber(0),
        flags: flags::SYN,
        window: 100,
        options: TcpOptionsSpec::default(),
        payload: &[],
    };
    let other = Ipv4Addr::new(203, 0, 113, 11);
    let mut buf = vec![0u8; HEADROOM + seg.v4_len()];
    seg.emit_v4(CLIENT, other, 1, &mut buf[HEADROOM..]).unwrap();
    let mut out = Output::default();
    h.engine.handle_packet(h.now, &mut buf, HEADROOM, &mut out);
    let synack = Sent::parse(out.packets().next().unwrap());
    let req = Segment {
        seq: SeqNumber(10),
        ack: synack.seg.seq + 1,
        flags: flags::ACK | flags::PSH,
        payload: HTTP_REQUEST,
        ..seg
    };
    let mut buf = vec![0u8; HEADROOM + req.v4_len()];
    req.emit_v4(CLIENT, other, 2, &mut buf[HEADROOM..]).unwrap();
    out.clear();
    h.engine.handle_packet(h.now, &mut buf, HEADROOM, &mut out);
    let rst = Sent::parse(out.packets().next().unwrap());
    assert!(!rst.v6 && rst.seg.rst());
    assert_eq!(h.engine.stats().drops(DropReason::TupleCollision), 1);
    assert_eq!(h.engine.flow_count(), 1);
}

#[test]
fn new_syn_on_a_closing_tuple_starts_fresh() {
    let mut h = Harness::new();
    let (synack, _) = h.spliced_http(backend_linux());
    h.client_to(
        80,
        flags::RST,
        C_ISN + 1,
        synack.seg.seq.0 + 1,
        TcpOptionsSpec::default(),
        &[],
    );
    // The same client port connects again before the linger ends.
    let step = h.client_to(80, flags::SYN, C_ISN + 50_000, 0, linux_syn_options(), &[]);
    let fresh = step.only_sent();
    assert_eq!(fresh.flags(), flags::SYN | flags::ACK);
    assert_eq!(fresh.seg.ack, SeqNumber(C_ISN + 50_001));
    assert_eq!(h.engine.flow_count(), 1);
    assert_eq!(
        h.engine.stats().outcomes(Outcome::ClientReset),
        1,
        "the old flow was closed out"
    );
}

#[test]
fn a_cookie_ack_on_a_closing_tuple_starts_a_new_flow_instead_of_riding_the_old_one() {
    // The kernel's SYN cookie program answers the SYN of a connection that reuses the
    // client port of a flow still lingering as closing: the engine sees only the ACK.
    let worker = || {
        let mut c = config();
        c.max_half_open = 0;
        c.cookie_root = Some([11, 12]);
        let mut h = Harness::with(c);
        h.engine.set_cookie_clock(5_000_000);
        h
    };
    let (mut h, mut kernel) = (worker(), worker());
    let (synack, _) = h.spliced_http(backend_linux());
    h.client_to(
        80,
        flags::RST,
        C_ISN + 1,
        synack.seg.seq.0 + 1,
        TcpOptionsSpec::default(),
        &[],
    );
    assert_eq!(h.engine.flow_count(), 1, "lingering as closing");
    let accepted = h.engine.stats().cookies_accepted;
    let new_isn = C_ISN + 50_000;
    let cookie = kernel.client_to(80, flags::SYN, new_isn, 0, linux_syn_options(), &[]);
    let cookie = cookie.only_sent();
    let tsecr = cookie.seg.options.timestamps.unwrap().0;
    let step = h.client_to(
        80,
        flags::ACK | flags::PSH,
        new_isn + 1,
        cookie.seg.seq.0 + 1,
        ts(101, tsecr),
        HTTP_REQUEST,
    );
    let sent = step.only_sent();
    assert!(
        sent.seg.syn() && sent.seg.seq == SeqNumber(new_isn),
        "a new backend connection with the new ISN, not the old flow's translation: {sent:?}"
    );
    assert!(step.forwarded.is_none());
    assert_eq!(h.engine.stats().cookies_accepted, accepted + 1);
    assert_eq!(h.engine.stats().outcomes(Outcome::ClientReset), 1);
    assert_eq!(h.engine.flow_count(), 1);
}

#[test]
fn a_stray_ack_of_the_old_connection_on_a_closing_tuple_still_rides_the_old_flow() {
    let mut h = Harness::new();
    let (synack, _) = h.spliced_http(backend_linux());
    let k = synack.seg.seq.0;
    let c_end = C_ISN + 1 + HTTP_REQUEST.len() as u32;
    h.client_to(80, flags::ACK | flags::FIN, c_end, k + 1, ts(201, 0), &[]);
    let step = h.client_to(80, flags::ACK, c_end + 1, k + 1, ts(202, 0), &[]);
    assert!(step.forwarded.is_some(), "forwarded as before");
    assert_eq!(h.engine.stats().cookies_accepted, 0);
    assert_eq!(h.engine.flow_count(), 1);
}

#[test]
fn corrupt_segment_is_forwarded_still_corrupt_not_recomputed() {
    let mut h = Harness::new();
    let (synack, _) = h.spliced_http(backend_linux());
    let seg = Segment {
        src_port: CPORT,
        dst_port: 80,
        seq: SeqNumber(C_ISN + 1),
        ack: SeqNumber(synack.seg.seq.0 + 1),
        flags: flags::ACK,
        window: 502,
        options: TcpOptionsSpec::default(),
        payload: b"payload",
    };
    let mut buf = vec![0u8; HEADROOM + seg.v4_len()];
    seg.emit_v4(CLIENT, SERVICE, 1, &mut buf[HEADROOM..])
        .unwrap();
    let last = buf.len() - 1;
    buf[last] ^= 0x40; // corrupt a payload byte after the checksum was computed
    let mut out = Output::default();
    let Verdict::Forward(r) = h.engine.handle_packet(h.now, &mut buf, HEADROOM, &mut out) else {
        panic!("a spliced segment is forwarded without reading its payload")
    };
    let ip = Ipv6Packet::new_checked(&buf[r]).unwrap();
    let tcp = TcpPacket::new_checked(ip.payload()).unwrap();
    assert!(
        !tcp.verify_checksum_v6(&ip.src_addr(), &ip.dst_addr()),
        "the backend will drop it"
    );
    buf[last] ^= 0x40;
    let ip = Ipv6Packet::new_checked(&buf[HEADROOM - 20..]).unwrap();
    let tcp = TcpPacket::new_checked(ip.payload()).unwrap();
    assert!(
        tcp.verify_checksum_v6(&ip.src_addr(), &ip.dst_addr()),
        "the update itself was exact"
    );
}
