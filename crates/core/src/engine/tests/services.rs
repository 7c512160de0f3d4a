//! Service addresses and ports changed by a reload (`Engine::reconfigure`) or by a
//! restore with another configuration: flows still served go on, flows on a removed
//! service end (`services.rs`), an added one is served at once.

use core::time::Duration;

use super::*;

/// `config()` with the service's ports set to `tls` and `http`.
fn serving(tls: &[u16], http: &[u16]) -> EngineConfig {
    let mut c = config();
    c.services[0].tls = tls.to_vec();
    c.services[0].http = http.to_vec();
    c
}

/// Events queued so far, outcomes only.
fn outcomes(h: &mut Harness) -> Vec<Outcome> {
    core::iter::from_fn(|| h.engine.poll_event())
        .filter_map(|e| match e {
            Event::Closed { outcome, .. } => Some(outcome),
            _ => None,
        })
        .collect()
}

#[test]
fn a_removed_port_resets_its_flows_being_set_up_and_the_others_go_on() {
    let mut h = Harness::new();
    let (synack, _) = h.spliced_http(backend_linux());
    let tls_synack = h.syn(443);
    while h.engine.poll_event().is_some() {}
    h.engine.reconfigure(serving(&[], &[80])).unwrap();
    assert_eq!(
        h.engine.poll_timeout(),
        Some(Time::ZERO),
        "asks to be called at once"
    );
    let sent = h.advance(Duration::ZERO);
    assert_eq!(sent.len(), 1, "{sent:?}");
    let rst = &sent[0];
    assert!(!rst.v6 && rst.seg.rst());
    assert_eq!(rst.seg.dst_port, CPORT);
    assert_eq!(rst.seg.src_port, 443);
    assert_eq!(
        rst.seg.seq,
        tls_synack.seg.seq + 1,
        "exactly the client's next"
    );
    assert_eq!(outcomes(&mut h), [Outcome::ServiceRemoved]);
    assert_eq!(h.engine.flow_count(), 1);
    assert_eq!(h.engine.half_open(), 0, "the half-open slot is given back");
    assert_ne!(
        h.engine.poll_timeout(),
        Some(Time::ZERO),
        "the sweep is over"
    );
    // The flow on port 80 is still translated.
    let k = synack.seg.seq.0;
    let k_ts = synack.seg.options.timestamps.unwrap().0;
    let step = h.client_to(
        80,
        flags::ACK,
        C_ISN + 1 + HTTP_REQUEST.len() as u32,
        k + 1,
        ts(200, k_ts),
        b"more",
    );
    assert!(step.forwarded.is_some_and(|f| f.v6));
}

#[test]
fn a_spliced_flow_on_a_removed_port_is_forgotten_and_each_side_reset_at_its_next_segment() {
    let mut h = Harness::new();
    let (synack, _) = h.spliced_http(backend_linux());
    while h.engine.poll_event().is_some() {}
    h.engine.reconfigure(serving(&[443], &[8080])).unwrap();
    assert!(h.advance(Duration::ZERO).is_empty(), "no RST it cannot aim");
    assert_eq!(outcomes(&mut h), [Outcome::ServiceRemoved]);
    assert_eq!(h.engine.stats().outcomes(Outcome::ServiceRemoved), 1);
    assert_eq!(h.engine.flow_count(), 0);
    let step = h.backend_from(
        80,
        flags::ACK,
        B_ISN + 1,
        555,
        TcpOptionsSpec::default(),
        b"x",
    );
    assert_eq!(step.verdict, Verdict::Dropped(DropReason::BackendNoFlow));
    assert!(step.only_sent().seg.rst());
    let k = synack.seg.seq.0;
    let step = h.client_to(
        80,
        flags::ACK,
        C_ISN + 60,
        k + 9,
        TcpOptionsSpec::default(),
        b"y",
    );
    let rst = step.only_sent();
    assert!(rst.seg.rst());
    assert_eq!(rst.seg.seq, SeqNumber(k + 9), "at the client's own ACK");
}

#[test]
fn a_port_added_by_a_reload_answers_syns_at_once() {
    let mut h = Harness::new();
    let step = h.client_to(8080, flags::SYN, C_ISN, 0, linux_syn_options(), &[]);
    assert!(step.only_sent().seg.rst(), "not served yet");
    h.engine.reconfigure(serving(&[443], &[80, 8080])).unwrap();
    assert!(h.advance(Duration::ZERO).is_empty());
    let synack = h.syn(8080);
    assert!(synack.seg.syn() && synack.seg.ack_flag());
}

#[test]
fn a_service_address_removed_ends_its_flows_and_its_syns_are_not_served() {
    let mut h = Harness::new();
    h.syn(443);
    let mut c = config();
    c.services[0].address = Ipv4Addr::new(203, 0, 113, 11);
    h.engine.reconfigure(c).unwrap();
    h.advance(Duration::ZERO);
    assert_eq!(h.engine.flow_count(), 0);
    let step = h.client_to(443, flags::SYN, C_ISN, 0, linux_syn_options(), &[]);
    assert_eq!(step.verdict, Verdict::Dropped(DropReason::ClientNotService));
}

#[test]
fn many_flows_on_a_removed_port_end_in_batches_each_reset() {
    let mut c = config();
    c.max_peeking_per_client = 2000;
    let mut h = Harness::with(c);
    let n = 1300u16;
    for i in 0..n {
        let syn = Segment {
            src_port: 20_000 + i,
            dst_port: 443,
            seq: SeqNumber(C_ISN),
            ack: SeqNumber(0),
            flags: flags::SYN,
            window: 502,
            options: linux_syn_options(),
            payload: &[],
        };
        assert_eq!(h.run(client_packet(&syn)).verdict, Verdict::Consumed);
    }
    let mut c = serving(&[], &[80]);
    c.max_peeking_per_client = 2000;
    h.engine.reconfigure(c).unwrap();
    let mut resets = 0;
    while h.engine.poll_timeout() == Some(Time::ZERO) {
        resets += h.advance(Duration::ZERO).len();
        while h.engine.poll_event().is_some() {}
    }
    assert_eq!(resets, usize::from(n));
    assert_eq!(h.engine.flow_count(), 0);
    assert_eq!(
        h.engine.stats().outcomes(Outcome::ServiceRemoved),
        u64::from(n)
    );
}

#[test]
fn a_restore_with_other_services_ends_the_flows_of_the_removed_ones() {
    let mut a = Harness::new();
    a.spliced_http(backend_linux());
    a.syn(443);
    let bytes = a.engine.snapshot(a.now);
    let mut b = Harness::with(config());
    b.engine = Engine::restore(serving(&[443, 8443], &[]), routes(), &bytes, Time::ZERO)
        .expect("other services are no reason to refuse");
    b.now = Time::ZERO;
    assert_eq!(b.engine.flow_count(), 2);
    assert_eq!(b.engine.poll_timeout(), Some(Time::ZERO));
    b.advance(Duration::ZERO);
    assert_eq!(b.engine.flow_count(), 1, "the flow on 443 goes on");
    assert_eq!(outcomes(&mut b), [Outcome::ServiceRemoved]);
    assert_eq!(b.syn(8443).flags(), flags::SYN | flags::ACK);
}
