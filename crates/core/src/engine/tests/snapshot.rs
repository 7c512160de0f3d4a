//! `Engine::snapshot` and `Engine::restore`: a flow in any phase goes on in the restored
//! engine exactly as it would have in the old one, whatever the new process's clock;
//! a snapshot that is damaged, of another version or for another configuration is
//! refused, and never panics.

use core::time::Duration;

use super::*;
use crate::base::ClientKey;
use crate::engine::snapshot::{SNAPSHOT_VERSION, seal, version};

/// The new process's clock: it started a moment ago, unlike the old one's.
const NEW_CLOCK: Time = Time::from_millis(3);

/// `h`'s engine through a snapshot, restored with `config` in a "new process".
fn twin_with(h: &Harness, config: EngineConfig) -> Harness {
    let bytes = h.engine.snapshot(h.now);
    let engine = Engine::restore(config, routes(), &bytes, NEW_CLOCK).expect("restores");
    Harness {
        engine,
        now: NEW_CLOCK,
        backend_window: h.backend_window,
        out: Output::default(),
    }
}

fn twin(h: &Harness) -> Harness {
    twin_with(h, config())
}

/// Runs `f` on both harnesses; what each did must be the same.
fn both(a: &mut Harness, b: &mut Harness, f: impl Fn(&mut Harness) -> Step) -> Step {
    let (x, y) = (f(a), f(b));
    assert_eq!(
        format!("{x:?}"),
        format!("{y:?}"),
        "the restored engine differs"
    );
    x
}

/// Advances both by `d`; what their timers sent must be the same.
fn advance_both(a: &mut Harness, b: &mut Harness, d: Duration) -> Vec<Sent> {
    let (x, y) = (a.advance(d), b.advance(d));
    assert_eq!(
        format!("{x:?}"),
        format!("{y:?}"),
        "the restored timers differ"
    );
    x
}

fn hello_ack(h: &mut Harness, synack: &Sent, payload: &[u8], seq_off: u32) -> Step {
    let k = synack.seg.seq.0;
    let tsecr = synack.seg.options.timestamps.unwrap().0;
    h.client_to(
        443,
        flags::ACK | flags::PSH,
        C_ISN + 1 + seq_off,
        k + 1,
        ts(101, tsecr),
        payload,
    )
}

#[test]
fn spliced_flow_translates_with_the_same_splice_after_restore() {
    let mut a = Harness::new();
    let (synack, _) = a.spliced_http(backend_linux());
    let mut b = twin(&a);
    let splice = |h: &Harness| {
        h.engine
            .flows
            .iter()
            .find_map(|(_, _, _, f)| f.spliced().map(|s| s.splice))
    };
    assert_eq!(splice(&a), splice(&b));
    assert!(splice(&b).is_some());
    let c_end = C_ISN + 1 + HTTP_REQUEST.len() as u32;
    let k = synack.seg.seq.0;
    let step = both(&mut a, &mut b, |h| {
        h.backend_from(80, flags::ACK, B_ISN + 1, c_end, ts(5_001, 101), b"hello")
    });
    assert!(step.forwarded.is_some());
    both(&mut a, &mut b, |h| {
        h.client_to(80, flags::ACK, c_end, k + 6, ts(102, 0), b"more")
    });
    advance_both(&mut a, &mut b, Duration::from_secs(7441));
    assert_eq!(b.engine.flow_count(), 0, "the idle timeout ran on");
    assert_eq!(b.engine.stats().outcomes(Outcome::IdleTimeout), 1);
}

#[test]
fn connecting_flow_is_spliced_by_the_backends_synack_after_restore() {
    let mut a = Harness::new();
    a.open(80, HTTP_REQUEST);
    let mut b = twin(&a);
    let step = both(&mut a, &mut b, |h| {
        h.backend_from(
            80,
            flags::SYN | flags::ACK,
            B_ISN,
            C_ISN + 1,
            backend_linux(),
            &[],
        )
    });
    assert_eq!(
        step.only_sent().payload,
        HTTP_REQUEST,
        "the peeked bytes travelled"
    );
    assert_eq!(b.engine.stats().spliced, 1);
}

#[test]
fn connecting_flow_retransmits_its_syn_and_times_out_on_schedule_after_restore() {
    let mut a = Harness::new();
    a.open(80, HTTP_REQUEST);
    a.advance(Duration::from_millis(400));
    let mut b = twin(&a);
    let sent = advance_both(&mut a, &mut b, Duration::from_millis(600));
    assert!(sent.iter().any(|s| s.v6 && s.seg.syn()), "{sent:?}");
    advance_both(&mut a, &mut b, Duration::from_secs(5));
    assert_eq!(b.engine.stats().outcomes(Outcome::ConnectTimeout), 1);
}

#[test]
fn handshake_flow_peeks_after_its_ack_after_restore() {
    let mut a = Harness::new();
    let synack = a.syn(443);
    assert_eq!(a.engine.half_open(), 1);
    let mut b = twin(&a);
    assert_eq!(
        b.engine.half_open(),
        1,
        "the half-open count is derived again"
    );
    // A retransmitted SYN gets the identical SYN-ACK from the new engine.
    both(&mut a, &mut b, |h| {
        h.client_to(443, flags::SYN, C_ISN, 0, linux_syn_options(), &[])
    });
    let hello = client_hello("a.example");
    let step = both(&mut a, &mut b, |h| hello_ack(h, &synack, &hello, 0));
    assert!(step.only_sent().seg.syn(), "the backend SYN");
    assert_eq!(b.engine.half_open(), 0);
}

#[test]
fn peeking_flow_names_the_host_with_its_bytes_after_restore() {
    let mut a = Harness::new();
    let synack = a.syn(443);
    let hello = client_hello("a.example");
    hello_ack(&mut a, &synack, &hello[..20], 0);
    let mut b = twin(&a);
    assert_eq!(b.engine.peek_bytes(), a.engine.peek_bytes());
    let step = both(&mut a, &mut b, |h| hello_ack(h, &synack, &hello[20..], 20));
    assert!(step.only_sent().seg.syn());
    let step = both(&mut a, &mut b, |h| {
        h.backend_from(
            8443,
            flags::SYN | flags::ACK,
            B_ISN,
            C_ISN + 1,
            backend_linux(),
            &[],
        )
    });
    assert_eq!(step.only_sent().payload, hello);
}

#[test]
fn bytes_after_a_hole_are_left_to_the_client_and_its_retransmission_repairs_them() {
    let mut a = Harness::new();
    let synack = a.syn(443);
    let hello = client_hello("a.example");
    // The first segment is lost; the second is held after the hole.
    hello_ack(&mut a, &synack, &hello[20..], 20);
    let mut b = twin(&a);
    assert_eq!(b.engine.peek_bytes(), 0, "bytes after a hole do not travel");
    // The lost segment arrives: the old engine has all of it, the new one only the start.
    let old = hello_ack(&mut a, &synack, &hello[..20], 0);
    assert!(old.only_sent().seg.syn());
    let new = hello_ack(&mut b, &synack, &hello[..20], 0);
    assert!(new.sent.is_empty(), "still peeking: {:?}", new.sent);
    // Nothing was acknowledged, so the client sends the rest again: same backend SYN.
    let again = hello_ack(&mut b, &synack, &hello[20..], 20);
    assert_eq!(format!("{:?}", again.sent), format!("{:?}", old.sent));
    let step = both(&mut a, &mut b, |h| {
        h.backend_from(
            8443,
            flags::SYN | flags::ACK,
            B_ISN,
            C_ISN + 1,
            backend_linux(),
            &[],
        )
    });
    assert_eq!(
        step.only_sent().payload,
        hello,
        "the backend gets every byte"
    );
}

#[test]
fn peek_deadline_runs_on_from_the_snapshot() {
    let mut a = Harness::new();
    a.syn(443);
    a.advance(Duration::from_secs(4));
    let mut b = twin(&a);
    advance_both(&mut a, &mut b, Duration::from_millis(999));
    assert_eq!(b.engine.flow_count(), 1);
    let sent = advance_both(&mut a, &mut b, Duration::from_millis(2));
    assert!(sent[0].seg.rst(), "reset at the peek deadline");
    assert_eq!(b.engine.stats().outcomes(Outcome::PeekTimeout), 1);
}

#[test]
fn refused_flow_acknowledges_the_clients_fin_after_restore() {
    let mut a = Harness::new();
    let (synack, step) = a.open(80, b"GET / HTTP/1.1\r\nHost: b.example\r\n\r\n");
    let answer = step.only_sent().clone();
    let mut b = twin(&a);
    let fin_seq = C_ISN + 1 + 35;
    let our_fin_end = synack.seg.seq.0 + 1 + answer.payload.len() as u32 + 1;
    let step = both(&mut a, &mut b, |h| {
        h.client_to(
            80,
            flags::ACK | flags::FIN,
            fin_seq,
            our_fin_end,
            ts(103, 0),
            &[],
        )
    });
    assert_eq!(step.only_sent().seg.ack, SeqNumber(fin_seq + 1));
    advance_both(&mut a, &mut b, Duration::from_secs(31));
    assert_eq!(b.engine.flow_count(), 0);
}

#[test]
fn a_refusals_kind_survives_restore_and_ends_the_flow_the_same_way() {
    let mut a = Harness::new();
    // HTTP/1.1 without Host: refused as malformed (400), not as an unknown name.
    let (_, step) = a.open(80, b"GET / HTTP/1.1\r\n\r\n");
    assert!(step.only_sent().payload.starts_with(b"HTTP/1.1 400"));
    let mut b = twin(&a);
    advance_both(&mut a, &mut b, Duration::from_secs(31));
    assert_eq!(b.engine.flow_count(), 0);
    assert_eq!(a.engine.stats().outcomes(Outcome::Unparsable), 1);
    assert_eq!(b.engine.stats().outcomes(Outcome::Unparsable), 1);
}

#[test]
fn closing_flow_forwards_stragglers_and_ends_after_the_linger_after_restore() {
    let mut a = Harness::new();
    let (synack, _) = a.spliced_http(backend_linux());
    let c_end = C_ISN + 1 + HTTP_REQUEST.len() as u32;
    let k = synack.seg.seq.0;
    a.backend_from(
        80,
        flags::ACK | flags::FIN,
        B_ISN + 1,
        c_end,
        ts(5_001, 101),
        b"bye",
    );
    a.client_to(80, flags::ACK | flags::FIN, c_end, k + 5, ts(201, 0), &[]);
    let mut b = twin(&a);
    let step = both(&mut a, &mut b, |h| {
        h.backend_from(80, flags::ACK, B_ISN + 5, c_end + 1, ts(5_002, 201), &[])
    });
    assert!(step.forwarded.is_some());
    advance_both(&mut a, &mut b, Duration::from_secs(31));
    assert_eq!(b.engine.stats().outcomes(Outcome::Closed), 1);
    let closed = core::iter::from_fn(|| b.engine.poll_event()).last();
    assert!(
        matches!(
            closed,
            Some(Event::Closed {
                bytes_to_client: 3,
                ..
            })
        ),
        "the byte counts travelled: {closed:?}"
    );
}

#[test]
fn cookie_made_before_the_upgrade_validates_after_it() {
    let mut c = config();
    c.max_half_open = 0;
    let mut a = Harness::with(c.clone());
    a.now = Time::from_millis(10 * 64_000 + 63_900); // tick 10, ending soon
    let synack = a.syn(80);
    assert_eq!(a.engine.flow_count(), 0);
    // The new process has another seed in its configuration: the snapshot's wins.
    c.seed = [1; 32];
    let mut b = twin_with(&a, c);
    b.advance(Duration::from_millis(200));
    let tsecr = synack.seg.options.timestamps.unwrap().0;
    let k = synack.seg.seq.0;
    let step = b.client_to(
        80,
        flags::ACK | flags::PSH,
        C_ISN + 1,
        k + 1,
        ts(101, tsecr),
        HTTP_REQUEST,
    );
    assert!(step.only_sent().v6 && step.only_sent().seg.syn());
    assert_eq!(b.engine.stats().cookies_accepted, 1);
    assert_eq!(b.engine.stats().cookies_sent, 1, "the counters travelled");
}

#[test]
fn new_flows_get_the_same_isn_as_from_the_old_engine() {
    let mut a = Harness::new();
    a.syn(443);
    let mut b = twin(&a);
    a.advance(Duration::from_millis(250));
    b.advance(Duration::from_millis(250));
    let syn = |h: &mut Harness| {
        let seg = Segment {
            src_port: CPORT + 7,
            dst_port: 443,
            seq: SeqNumber(C_ISN),
            ack: SeqNumber(0),
            flags: flags::SYN,
            window: 502,
            options: linux_syn_options(),
            payload: &[],
        };
        h.run(client_packet(&seg))
    };
    both(&mut a, &mut b, syn);
}

#[test]
fn a_snapshot_of_a_restored_engine_is_the_same_snapshot() {
    let mut a = Harness::new();
    a.spliced_http(backend_linux());
    a.syn(443);
    let one = a.engine.snapshot(a.now);
    let b = twin(&a);
    assert_eq!(b.engine.snapshot(b.now), one);
    assert_eq!(version(&one), Ok(SNAPSHOT_VERSION));
}

fn snapshot_with_flows() -> Vec<u8> {
    let mut a = Harness::new();
    a.spliced_http(backend_linux());
    let synack = a.syn(443);
    hello_ack(&mut a, &synack, &client_hello("a.example")[..30], 0);
    a.engine.snapshot(a.now)
}

fn refused(bytes: &[u8], config: EngineConfig) -> SnapshotError {
    Engine::restore(config, routes(), bytes, NEW_CLOCK).expect_err("refused")
}

#[test]
fn every_truncation_is_refused() {
    let bytes = snapshot_with_flows();
    for n in 0..bytes.len() {
        refused(&bytes[..n], config());
    }
    let body = &bytes[26..];
    for n in 0..body.len() {
        // Sealed anew, so the checksum passes and the decoder itself meets the end.
        let e = refused(&seal(&body[..n]), config());
        assert!(
            matches!(e, SnapshotError::Truncated | SnapshotError::BadField(_)),
            "{n}: {e}"
        );
    }
}

#[test]
fn any_flipped_byte_is_refused() {
    let bytes = snapshot_with_flows();
    for i in 0..bytes.len() {
        let mut bad = bytes.clone();
        bad[i] ^= 0x40;
        refused(&bad, config());
    }
}

#[test]
fn wrong_magic_version_and_trailing_bytes_are_named() {
    let bytes = snapshot_with_flows();
    let mut bad = bytes.clone();
    bad[0] = b'X';
    assert_eq!(refused(&bad, config()), SnapshotError::BadMagic);
    let mut bad = bytes.clone();
    bad[8..10].copy_from_slice(&(SNAPSHOT_VERSION + 1).to_be_bytes());
    assert_eq!(
        refused(&bad, config()),
        SnapshotError::Version {
            found: SNAPSHOT_VERSION + 1,
            supported: SNAPSHOT_VERSION
        }
    );
    let mut long = bytes.clone();
    long.push(0);
    assert_eq!(refused(&long, config()), SnapshotError::TrailingBytes(1));
    let mut body = bytes[26..].to_vec();
    body.push(0);
    assert_eq!(
        refused(&seal(&body), config()),
        SnapshotError::TrailingBytes(1)
    );
}

#[test]
fn a_configuration_the_flows_do_not_fit_is_refused() {
    // Other services and another prefix are no misfit: see services.rs and prefixes.rs.
    let bytes = snapshot_with_flows();
    let mut c = config();
    c.window_scale = 8;
    assert!(matches!(
        refused(&bytes, c),
        SnapshotError::ConfigMismatch(_)
    ));
    let mut c = config();
    c.max_flows = 1;
    assert_eq!(
        refused(&bytes, c),
        SnapshotError::TooManyFlows {
            flows: 2,
            capacity: 1
        }
    );
}

#[test]
fn new_timeouts_apply_to_restored_flows() {
    let mut a = Harness::new();
    a.spliced_http(backend_linux());
    let mut c = config();
    c.idle_timeout = Duration::from_secs(60);
    let mut b = twin_with(&a, c);
    b.advance(Duration::from_secs(61));
    assert_eq!(b.engine.flow_count(), 0);
}

#[test]
fn closing_every_flow_logs_each_as_shutdown() {
    let mut h = Harness::new();
    h.spliced_http(backend_linux());
    h.syn(443);
    while h.engine.poll_event().is_some() {}
    assert_eq!(h.engine.close_flows(h.now, 1), 1);
    assert_eq!(h.engine.close_flows(h.now, 10), 0);
    let events: Vec<Event> = core::iter::from_fn(|| h.engine.poll_event()).collect();
    assert_eq!(events.len(), 2);
    assert!(events.iter().all(|e| matches!(
        e,
        Event::Closed {
            outcome: Outcome::Shutdown,
            ..
        }
    )));
    assert_eq!(h.engine.half_open(), 0);
}

#[test]
fn at_shutdown_a_flow_that_already_closed_keeps_its_own_outcome() {
    let mut h = Harness::new();
    let (synack, _) = h.spliced_http(backend_linux());
    // The backend resets: the flow lingers as closing, its outcome decided.
    h.backend_from(
        80,
        flags::RST | flags::ACK,
        B_ISN + 1,
        C_ISN + 1 + HTTP_REQUEST.len() as u32,
        TcpOptionsSpec::default(),
        &[],
    );
    let _ = synack;
    while h.engine.poll_event().is_some() {}
    assert_eq!(h.engine.close_flows(h.now, 10), 0);
    let events: Vec<Event> = core::iter::from_fn(|| h.engine.poll_event()).collect();
    assert!(
        matches!(
            events.as_slice(),
            [Event::Closed {
                outcome: Outcome::BackendReset,
                ..
            }]
        ),
        "{events:?}"
    );
}

#[test]
fn http_flow_with_half_a_head_and_one_with_none_go_on_after_restore() {
    let mut a = Harness::new();
    let synack = a.syn(80);
    let k = synack.seg.seq.0;
    let tsecr = synack.seg.options.timestamps.unwrap().0;
    let send = |h: &mut Harness, off: usize, bytes: &[u8]| {
        h.client_to(
            80,
            flags::ACK | flags::PSH,
            C_ISN + 1 + off as u32,
            k + 1,
            ts(101, tsecr),
            bytes,
        )
    };
    send(&mut a, 0, &HTTP_REQUEST[..20]);
    let mut b = twin(&a);
    let step = both(&mut a, &mut b, |h| send(h, 20, &HTTP_REQUEST[20..]));
    assert!(step.only_sent().seg.syn(), "named: the backend SYN");
}

/// The engines of a set restored from `snapshots` as `n` engines, flows divided by
/// `owner` of each flow's key.
fn divided(snapshots: &[&[u8]], n: usize, owner: impl Fn(&ClientKey) -> usize) -> Vec<Engine> {
    (0..n)
        .map(|i| {
            Engine::restore_part(config(), routes(), snapshots, i, NEW_CLOCK, |k| {
                owner(k) == i
            })
            .expect("restores")
        })
        .collect()
}

#[test]
fn flows_of_one_engine_divided_among_two_go_on_in_the_one_that_holds_each() {
    let bytes = snapshot_with_flows();
    let by_port = |k: &ClientKey| usize::from(k.service_port == 443);
    let engines = divided(&[&bytes], 2, by_port);
    assert_eq!(engines[0].flow_count(), 1, "the spliced HTTP flow");
    assert_eq!(engines[1].flow_count(), 1, "the TLS flow mid-peek");
    assert_eq!(engines[0].stats().spliced, 1, "the old engine's counters");
    assert_eq!(
        engines[1].stats().spliced,
        0,
        "a new engine's start at zero"
    );
    assert!(engines[1].peek_bytes() > 0, "its peeked bytes came along");
    // The spliced flow forwards in its new engine as it did in the old one.
    let mut h = Harness {
        engine: engines.into_iter().next().unwrap(),
        now: NEW_CLOCK,
        backend_window: 1000,
        out: Output::default(),
    };
    let data = h.backend_from(
        80,
        flags::ACK,
        B_ISN + 1,
        C_ISN + 1 + HTTP_REQUEST.len() as u32,
        ts(5_001, 102),
        b"reply",
    );
    let fwd = data.forwarded.expect("forwarded to the client");
    assert_eq!(fwd.payload, b"reply");
}

#[test]
fn flows_of_two_engines_gathered_into_one_are_all_there_and_a_flow_in_both_is_refused() {
    let bytes = snapshot_with_flows();
    let by_port = |k: &ClientKey| usize::from(k.service_port == 443);
    let two: Vec<Vec<u8>> = divided(&[&bytes], 2, by_port)
        .iter()
        .map(|e| e.snapshot(NEW_CLOCK))
        .collect();
    let refs: Vec<&[u8]> = two.iter().map(Vec::as_slice).collect();
    let one = divided(&refs, 1, |_| 0);
    assert_eq!(one[0].flow_count(), 2);
    let twice = Engine::restore_part(config(), routes(), &[&bytes, &bytes], 0, NEW_CLOCK, |_| {
        true
    });
    assert_eq!(twice.err(), Some(SnapshotError::DuplicateFlow("client")));
}

#[test]
fn after_a_division_a_segment_for_no_flow_is_dropped_unanswered_until_it_settles() {
    let bytes = snapshot_with_flows();
    let mut engines = divided(&[&bytes], 2, |k| usize::from(k.service_port == 443));
    let mut h = Harness {
        engine: engines.remove(1),
        now: NEW_CLOCK,
        backend_window: 1000,
        out: Output::default(),
    };
    h.engine.settle_for(NEW_CLOCK, Duration::from_secs(2));
    // The spliced HTTP flow is the other engine's: its segments reaching this one meet
    // no flow, and are neither reset nor forwarded.
    let stray = h.client_to(80, flags::ACK, C_ISN + 1, 1, ts(102, 0), b"x");
    assert_eq!(
        stray.verdict,
        Verdict::Dropped(DropReason::ClientNoFlowSettling)
    );
    assert!(stray.sent.is_empty(), "{:?}", stray.sent);
    let back = h.backend_from(80, flags::ACK, B_ISN + 1, C_ISN + 1, ts(5_001, 102), b"y");
    assert_eq!(
        back.verdict,
        Verdict::Dropped(DropReason::BackendNoFlowSettling)
    );
    assert!(back.sent.is_empty());
    // Once settled, a segment for no flow is reset as always.
    h.advance(Duration::from_secs(3));
    let late = h.client_to(80, flags::ACK, C_ISN + 1, 1, ts(103, 0), b"x");
    assert_eq!(late.verdict, Verdict::Dropped(DropReason::ClientNoFlow));
    assert!(late.only_sent().seg.rst());
}
