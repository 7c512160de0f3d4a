//! The client handshake, the peek, refusals, the backend connect, timers and limits.

use core::time::Duration;

use super::*;

#[test]
fn syn_gets_a_synack_with_only_the_options_kracauer_can_keep() {
    let mut h = Harness::new();
    let synack = h.syn(443);
    assert!(!synack.v6);
    assert_eq!((synack.src, synack.dst), (SERVICE.into(), CLIENT.into()));
    assert_eq!(synack.flags(), flags::SYN | flags::ACK);
    assert_eq!(synack.seg.ack, SeqNumber(C_ISN + 1));
    let o = synack.seg.options;
    assert_eq!(o.mss, Some(1440), "IPv6 MTU 1500 minus 60");
    assert_eq!(o.window_scale, Some(7));
    assert!(o.sack_permitted);
    assert_eq!(
        o.timestamps.map(|t| t.1),
        Some(100),
        "TSecr echoes the client's TSval"
    );
    assert_eq!(h.engine.half_open(), 1);
}

#[test]
fn syn_without_options_gets_mss_alone() {
    let mut h = Harness::new();
    let step = h.client_to(443, flags::SYN, C_ISN, 0, TcpOptionsSpec::default(), &[]);
    let o = step.only_sent().seg.options;
    assert_eq!(
        (o.mss, o.window_scale, o.sack_permitted, o.timestamps),
        (Some(1440), None, false, None)
    );
}

#[test]
fn retransmitted_syn_gets_identical_synack() {
    let mut h = Harness::new();
    let first = h.syn(443);
    h.now = h.now + Duration::from_secs(1);
    let second = h.syn(443);
    assert_eq!(first.seg, second.seg);
    assert_eq!(h.engine.flow_count(), 1);
}

#[test]
fn synack_isn_differs_between_client_ports() {
    let mut h = Harness::new();
    let a = h.syn(443).seg.seq;
    let step = h.client_to(80, flags::SYN, C_ISN, 0, linux_syn_options(), &[]);
    assert_ne!(a, step.only_sent().seg.seq);
}

#[test]
fn ack_for_no_flow_gets_rst_with_its_ack_number() {
    let mut h = Harness::new();
    let step = h.client_to(443, flags::ACK, 5, 777, TcpOptionsSpec::default(), &[]);
    assert_eq!(step.verdict, Verdict::Dropped(DropReason::ClientNoFlow));
    let rst = step.only_sent();
    assert_eq!((rst.flags(), rst.seg.seq), (flags::RST, SeqNumber(777)));
}

#[test]
fn rst_for_no_flow_is_dropped_silently() {
    let mut h = Harness::new();
    let step = h.client_to(443, flags::RST, 5, 0, TcpOptionsSpec::default(), &[]);
    assert!(step.sent.is_empty());
    assert_eq!(h.engine.stats().drops(DropReason::ClientNoFlow), 1);
}

#[test]
fn syn_to_an_unconfigured_port_gets_rst() {
    let mut h = Harness::new();
    let step = h.client_to(22, flags::SYN, C_ISN, 0, TcpOptionsSpec::default(), &[]);
    assert_eq!(step.verdict, Verdict::Dropped(DropReason::ClientNotService));
    assert_eq!(step.only_sent().flags(), flags::RST | flags::ACK);
}

#[test]
fn syn_with_fin_is_dropped_as_bad_flags() {
    let mut h = Harness::new();
    let step = h.client_to(
        443,
        flags::SYN | flags::FIN,
        C_ISN,
        0,
        TcpOptionsSpec::default(),
        &[],
    );
    assert_eq!(step.verdict, Verdict::Dropped(DropReason::ClientBadFlags));
    assert!(step.sent.is_empty());
}

#[test]
fn http_request_leads_to_backend_syn_with_the_clients_isn_and_options() {
    let mut h = Harness::new();
    let (_, step) = h.open(80, HTTP_REQUEST);
    assert!(step.sent.len() == 1, "{:?}", step.sent);
    let syn = step.only_sent();
    assert!(syn.v6);
    assert_eq!(
        (syn.src, syn.dst),
        (client6().into(), backend_addr().into())
    );
    assert_eq!((syn.seg.src_port, syn.seg.dst_port), (CPORT, 80));
    assert_eq!(syn.flags(), flags::SYN);
    assert_eq!(syn.seg.seq, SeqNumber(C_ISN));
    let o = syn.seg.options;
    assert_eq!(o.mss, Some(1440), "min(client 1460, 1500 - 60)");
    assert_eq!(o.window_scale, Some(7), "the client's own window scale");
    assert!(o.sack_permitted);
    assert_eq!(o.timestamps, Some((101, 0)), "the client's latest TSval");
}

#[test]
fn peeked_data_is_not_acknowledged() {
    let mut h = Harness::new();
    let synack = h.syn(80);
    let k = synack.seg.seq.0;
    let step = h.client_to(
        80,
        flags::ACK,
        C_ISN + 1,
        k + 1,
        ts(101, 0),
        b"GET / HTTP/1.1\r\nHo",
    );
    assert!(step.sent.is_empty(), "no ACK, no SYN yet: {:?}", step.sent);
}

#[test]
fn tls_hello_routes_by_sni_to_the_remapped_port() {
    let mut h = Harness::new();
    let (_, step) = h.open(443, &client_hello("www.a.example"));
    let syn = step.only_sent();
    assert_eq!(syn.seg.dst_port, 8443);
    assert_eq!(syn.dst, std::net::IpAddr::from(backend_addr()));
}

#[test]
fn hello_in_reverse_order_is_reassembled() {
    let mut h = Harness::new();
    let synack = h.syn(443);
    let k = synack.seg.seq.0;
    let hello = client_hello("a.example");
    let (first, second) = hello.split_at(20);
    let later = h.client_to(443, flags::ACK, C_ISN + 1 + 20, k + 1, ts(101, 0), second);
    assert!(later.sent.is_empty());
    let step = h.client_to(443, flags::ACK, C_ISN + 1, k + 1, ts(102, 0), first);
    assert!(step.only_sent().seg.syn());
}

#[test]
fn unknown_tls_name_gets_an_unrecognized_name_alert_and_fin() {
    let mut h = Harness::new();
    let hello = client_hello("b.example");
    let (_, step) = h.open(443, &hello);
    let alert = step.only_sent();
    assert!(!alert.v6);
    assert_eq!(alert.payload, [0x15, 3, 1, 0, 2, 2, 112]);
    assert_eq!(alert.flags(), flags::ACK | flags::PSH | flags::FIN);
    assert_eq!(alert.seg.ack, SeqNumber(C_ISN + 1 + hello.len() as u32));
}

#[test]
fn unknown_http_host_gets_421_and_no_backend_contact() {
    let mut h = Harness::new();
    let (_, step) = h.open(80, b"GET / HTTP/1.1\r\nHost: b.example\r\n\r\n");
    let answer = step.only_sent();
    assert!(!answer.v6);
    assert!(
        answer
            .payload
            .starts_with(b"HTTP/1.1 421 Misdirected Request\r\n")
    );
    assert!(answer.seg.fin());
}

#[test]
fn refused_client_fin_is_acknowledged_and_flow_freed_after_linger() {
    let mut h = Harness::new();
    let (synack, step) = h.open(80, b"GET / HTTP/1.1\r\nHost: b.example\r\n\r\n");
    let k = synack.seg.seq.0;
    let answer = step.only_sent().clone();
    let req_len = 35u32;
    let fin_seq = C_ISN + 1 + req_len;
    let our_fin_end = k + 1 + answer.payload.len() as u32 + 1;
    let step = h.client_to(
        80,
        flags::ACK | flags::FIN,
        fin_seq,
        our_fin_end,
        ts(103, 0),
        &[],
    );
    let ack = step.only_sent();
    assert_eq!(ack.seg.ack, SeqNumber(fin_seq + 1));
    assert_eq!(ack.flags(), flags::ACK);
    h.advance(Duration::from_secs(31));
    assert_eq!(h.engine.flow_count(), 0);
    assert_eq!(h.engine.stats().outcomes(Outcome::UnknownName), 1);
}

#[test]
fn garbage_first_bytes_get_rst() {
    let mut h = Harness::new();
    let (_, step) = h.open(443, b"\x00\x01garbage that is not tls");
    let rst = step.only_sent();
    assert!(rst.seg.rst());
    assert_eq!(h.engine.flow_count(), 0);
    assert_eq!(h.engine.stats().outcomes(Outcome::NotRecognised), 1);
}

#[test]
fn client_that_stalls_mid_hello_is_reset_at_the_peek_deadline() {
    let mut h = Harness::new();
    let synack = h.syn(443);
    let hello = client_hello("a.example");
    h.client_to(
        443,
        flags::ACK,
        C_ISN + 1,
        synack.seg.seq.0 + 1,
        ts(101, 0),
        &hello[..30],
    );
    // Kracauer takes custody of the 30 bytes after the custody delay (one ACK), then
    // nothing until the deadline.
    let sent = h.advance(Duration::from_secs(4));
    assert_eq!(sent.len(), 1);
    assert_eq!(
        (sent[0].flags(), sent[0].seg.ack.0),
        (flags::ACK, C_ISN + 31)
    );
    let sent = h.advance(Duration::from_secs(2));
    assert_eq!(sent.len(), 1);
    assert!(sent[0].seg.rst());
    assert_eq!(h.engine.flow_count(), 0);
    assert_eq!(h.engine.stats().outcomes(Outcome::PeekTimeout), 1);
    assert_eq!(h.engine.peek_bytes(), 0);
}

#[test]
fn backend_syn_is_retransmitted_then_client_reset_at_connect_timeout() {
    let mut h = Harness::new();
    h.open(80, HTTP_REQUEST);
    let again = h.advance(Duration::from_millis(1001));
    assert_eq!(again.len(), 1);
    assert!(again[0].v6 && again[0].seg.syn());
    let again = h.advance(Duration::from_millis(2001));
    assert!(again[0].seg.syn(), "backed off to 2 s");
    let end = h.advance(Duration::from_secs(3));
    let rst = end.iter().find(|s| !s.v6).expect("RST to the client");
    assert!(rst.seg.rst());
    assert_eq!(h.engine.stats().outcomes(Outcome::ConnectTimeout), 1);
    assert_eq!(h.engine.flow_count(), 0);
}

#[test]
fn backend_rst_during_connect_resets_client() {
    let mut h = Harness::new();
    h.open(80, HTTP_REQUEST);
    let step = h.backend_from(
        80,
        flags::RST | flags::ACK,
        0,
        C_ISN + 1,
        TcpOptionsSpec::default(),
        &[],
    );
    let rst = step.only_sent();
    assert!(!rst.v6 && rst.seg.rst());
    assert_eq!(h.engine.stats().outcomes(Outcome::BackendRefused), 1);
    assert_eq!(h.engine.flow_count(), 0);
}

#[test]
fn synack_with_wrong_ack_gets_rst_and_changes_nothing() {
    let mut h = Harness::new();
    h.open(80, HTTP_REQUEST);
    let step = h.backend_from(
        80,
        flags::SYN | flags::ACK,
        B_ISN,
        C_ISN + 5,
        TcpOptionsSpec::default(),
        &[],
    );
    assert_eq!(step.verdict, Verdict::Dropped(DropReason::BackendBadSynAck));
    assert!(step.only_sent().seg.rst());
    assert_eq!(h.engine.flow_count(), 1);
}

#[test]
fn half_open_bound_switches_to_cookies_and_a_cookie_ack_opens_the_flow() {
    let mut c = config();
    c.max_half_open = 0;
    let mut h = Harness::with(c);
    let synack = h.syn(80);
    assert_eq!(h.engine.flow_count(), 0, "no state for a cookie");
    assert_eq!(h.engine.stats().cookies_sent, 1);
    let k = synack.seg.seq.0;
    let tsecr = synack.seg.options.timestamps.unwrap().0;
    let step = h.client_to(
        80,
        flags::ACK | flags::PSH,
        C_ISN + 1,
        k + 1,
        ts(101, tsecr),
        HTTP_REQUEST,
    );
    let syn = step.only_sent();
    assert!(syn.v6 && syn.seg.syn());
    assert_eq!(
        syn.seg.options.window_scale,
        Some(7),
        "window scale came back through the timestamp"
    );
    assert!(syn.seg.options.sack_permitted);
    assert_eq!(syn.seg.options.mss, Some(1440));
    assert_eq!(h.engine.stats().cookies_accepted, 1);
}

#[test]
fn forged_cookie_ack_gets_rst() {
    let mut c = config();
    c.max_half_open = 0;
    let mut h = Harness::with(c);
    let synack = h.syn(80);
    let step = h.client_to(
        80,
        flags::ACK,
        C_ISN + 1,
        synack.seg.seq.0 + 2,
        TcpOptionsSpec::default(),
        HTTP_REQUEST,
    );
    assert_eq!(step.verdict, Verdict::Dropped(DropReason::ClientNoFlow));
    assert!(step.only_sent().seg.rst());
}

#[test]
fn request_with_fin_in_the_same_segment_is_peeked_and_sent_to_the_backend() {
    // An HTTP/1.0-style client that shuts down its side right after the request.
    let mut h = Harness::new();
    let synack = h.syn(80);
    let k = synack.seg.seq.0;
    let step = h.client_to(
        80,
        flags::ACK | flags::PSH | flags::FIN,
        C_ISN + 1,
        k + 1,
        ts(101, 0),
        HTTP_REQUEST,
    );
    assert_eq!(step.verdict, Verdict::Consumed);
    let syn = step.only_sent();
    assert!(syn.v6 && syn.seg.syn(), "the backend is contacted: {syn:?}");
}

#[test]
fn fin_behind_a_hole_while_peeking_waits_for_the_missing_bytes() {
    let mut h = Harness::new();
    let synack = h.syn(443);
    let k = synack.seg.seq.0;
    let hello = client_hello("a.example");
    let (first, second) = hello.split_at(20);
    let later = h.client_to(
        443,
        flags::ACK | flags::FIN,
        C_ISN + 1 + 20,
        k + 1,
        ts(101, 0),
        second,
    );
    assert!(later.sent.is_empty(), "no RST: {:?}", later.sent);
    let step = h.client_to(443, flags::ACK, C_ISN + 1, k + 1, ts(102, 0), first);
    assert!(step.only_sent().seg.syn());
}

#[test]
fn fin_after_every_byte_of_an_unfinished_hello_gets_decode_error_without_a_default() {
    // Issue 19 changed this from a RST: the bytes are TLS, cut short, so Kracauer answers
    // like a TLS server would to a hello it cannot decode.
    let mut h = Harness::new();
    let synack = h.syn(443);
    let k = synack.seg.seq.0;
    let hello = client_hello("a.example");
    let part = &hello[..20];
    let step = h.client_to(
        443,
        flags::ACK | flags::FIN,
        C_ISN + 1,
        k + 1,
        ts(101, 0),
        part,
    );
    let alert = step.only_sent();
    assert!(!alert.v6 && !alert.seg.rst());
    assert_eq!(alert.payload, [0x15, 3, 1, 0, 2, 2, 50]);
    assert_eq!(alert.seg.ack, SeqNumber(C_ISN + 1 + 20));
    let stats = h.engine.stats();
    assert_eq!(stats.peeks(Protocol::Tls, PeekPath::Refused), 1);
}

#[test]
fn rst_right_after_the_furthest_bytes_behind_a_hole_resets() {
    // The client's first segment was lost; it gives up and sends RST at its next
    // sequence number, which is after the bytes that did arrive.
    let mut h = Harness::new();
    let synack = h.syn(443);
    let k = synack.seg.seq.0;
    let hello = client_hello("a.example");
    let (_, second) = hello.split_at(20);
    h.client_to(443, flags::ACK, C_ISN + 1 + 20, k + 1, ts(101, 0), second);
    let end = C_ISN + 1 + hello.len() as u32;
    let step = h.client_to(443, flags::RST | flags::ACK, end, k + 1, ts(102, 0), &[]);
    assert_eq!(step.verdict, Verdict::Consumed);
    assert_eq!(h.engine.flow_count(), 0);
    assert_eq!(h.engine.stats().outcomes(Outcome::ClientReset), 1);
}

#[test]
fn rst_inside_the_received_bytes_is_refused() {
    let mut h = Harness::new();
    let synack = h.syn(443);
    let k = synack.seg.seq.0;
    let hello = client_hello("a.example");
    let (_, second) = hello.split_at(20);
    h.client_to(443, flags::ACK, C_ISN + 1 + 20, k + 1, ts(101, 0), second);
    let inside = C_ISN + 1 + 30;
    let step = h.client_to(443, flags::RST | flags::ACK, inside, k + 1, ts(102, 0), &[]);
    assert_eq!(
        step.verdict,
        Verdict::Dropped(DropReason::ClientOutOfWindow)
    );
    assert_eq!(h.engine.flow_count(), 1);
}

#[test]
fn address_literal_in_sni_is_treated_as_no_name_not_garbage() {
    let mut h = Harness::new();
    let (_, step) = h.open(443, &client_hello("203.0.113.10"));
    let answer = step.only_sent();
    assert!(
        !answer.seg.rst(),
        "refused like a hello without a name, not reset"
    );
    assert_eq!(answer.payload, [0x15, 3, 1, 0, 2, 2, 112]);
}

#[test]
fn a_cookie_made_by_one_worker_opens_the_flow_at_another_sharing_the_cookie_root() {
    // Two workers: their own seeds, one cookie root, cookie clocks that count from
    // different instants of one host clock (each worker started at its own moment).
    let worker = |seed: u8, started_at: u64| {
        let mut c = config();
        c.seed = [seed; 32];
        c.max_half_open = 0;
        c.cookie_root = Some([11, 12]);
        let mut h = Harness::with(c);
        h.engine.set_cookie_clock(started_at);
        h
    };
    let (mut a, mut b) = (worker(1, 5_000_000), worker(2, 4_000_000));
    // Both harnesses' `now` is 1000 s, so `b` is 1 s behind on the host clock: move it on.
    b.now = b.now + Duration::from_secs(1);
    let synack = a.syn(80);
    let tsecr = synack.seg.options.timestamps.unwrap().0;
    let step = b.client_to(
        80,
        flags::ACK | flags::PSH,
        C_ISN + 1,
        synack.seg.seq.0 + 1,
        ts(101, tsecr),
        HTTP_REQUEST,
    );
    assert!(
        step.only_sent().seg.syn(),
        "the flow went on to the backend"
    );
    assert_eq!(b.engine.stats().cookies_accepted, 1);

    // A worker with another root refuses it.
    let mut c = config();
    c.cookie_root = Some([11, 13]);
    let mut other = Harness::with(c);
    other.engine.set_cookie_clock(4_000_000);
    other.now = b.now;
    let step = other.client_to(
        80,
        flags::ACK,
        C_ISN + 1,
        synack.seg.seq.0 + 1,
        ts(101, tsecr),
        HTTP_REQUEST,
    );
    assert_eq!(step.verdict, Verdict::Dropped(DropReason::ClientNoFlow));
}
