//! Adopting the fast path's map entries: an entry left by a killed daemon becomes a
//! spliced flow that a new engine translates exactly as the old one did, is handed over
//! as it was and taken back at its end; a restored flow is marked handed over again;
//! entries that cannot be adopted are refused with the reason.

use core::time::Duration;
use std::net::SocketAddrV4;

use super::*;
use crate::engine::{AdoptError, Adopted, AdoptedFlow, Event, FastpathFlow, FastpathOp, Outcome};

fn ops(h: &mut Harness) -> Vec<FastpathOp> {
    core::iter::from_fn(|| h.engine.poll_fastpath()).collect()
}

/// A harness with one HTTP flow spliced and handed over; returns the flow as its
/// Install operation gave it to the daemon (what the daemon wrote into the map) and
/// Kracauer's ISN.
fn handed_over() -> (Harness, FastpathFlow, u32) {
    let mut h = Harness::new();
    h.engine.enable_fastpath();
    let (synack, _) = h.spliced_http(backend_linux());
    let got = ops(&mut h);
    let [FastpathOp::Install(f)] = &got[..] else {
        panic!("{got:?}");
    };
    (h.clone_clock(), f.clone(), synack.seg.seq.0)
}

impl Harness {
    /// A fresh engine (a new daemon) with the fast path enabled, at this harness's time.
    fn clone_clock(&self) -> Harness {
        let mut h = Harness::new();
        h.now = self.now;
        h.engine.enable_fastpath();
        h
    }
}

fn entry(f: &FastpathFlow, now: Time) -> AdoptedFlow {
    AdoptedFlow {
        flow: f.clone(),
        client_fin: false,
        backend_fin: false,
        reset: false,
        last_seen: now,
    }
}

/// What a forwarded segment looks like, but for the IPv4 Identification (each engine
/// draws its own).
fn shape(step: &Step) -> String {
    let s = step.forwarded.as_ref().expect("forwarded");
    format!("{} {} {:?} {:?}", s.src, s.dst, s.seg, s.payload)
}

#[test]
fn killed_daemons_entry_becomes_a_spliced_flow_translated_both_ways_as_before() {
    let mut old = Harness::new();
    old.engine.enable_fastpath();
    let (synack, _) = old.spliced_http(backend_linux());
    let Some(FastpathOp::Install(f)) = old.engine.poll_fastpath() else {
        panic!("not handed over");
    };
    let mut new = old.clone_clock();
    let now = new.now;
    assert_eq!(
        new.engine.adopt_fastpath(now, &entry(&f, now)),
        Ok(Adopted::New)
    );
    assert_eq!(new.engine.flow_count(), 1);
    // Adopted as handed over: nothing to install again.
    assert!(ops(&mut new).is_empty());

    let k = synack.seg.seq.0;
    let c_end = C_ISN + 1 + HTTP_REQUEST.len() as u32;
    for h in [&mut old, &mut new] {
        h.advance(Duration::from_secs(1));
    }
    // A backend data segment with timestamps, and the client's ACK of it.
    let data =
        |h: &mut Harness| h.backend_from(80, flags::ACK, B_ISN + 1, c_end, ts(9_000, 300), b"body");
    let (a, b) = (data(&mut old), data(&mut new));
    assert_eq!(shape(&a), shape(&b));
    assert_eq!(
        a.forwarded.as_ref().map(|s| s.seg.seq.0),
        Some(k + 1),
        "the client sees Kracauer's sequence space"
    );
    let ack = |h: &mut Harness| h.client_to(80, flags::ACK, c_end, k + 1 + 4, ts(400, 8_000), &[]);
    let (a, b) = (ack(&mut old), ack(&mut new));
    assert_eq!(shape(&a), shape(&b));
}

#[test]
fn adopted_flow_is_taken_back_and_logged_with_its_name_when_both_fins_pass() {
    let (mut h, f, k) = handed_over();
    let now = h.now;
    assert_eq!(
        h.engine.adopt_fastpath(now, &entry(&f, now)),
        Ok(Adopted::New)
    );
    let c_end = C_ISN + 1 + HTTP_REQUEST.len() as u32;
    h.backend_from(
        80,
        flags::ACK | flags::FIN,
        B_ISN + 1,
        c_end,
        ts(5_001, 101),
        &[],
    );
    assert!(ops(&mut h).is_empty(), "one FIN does not close");
    let step = h.client_to(80, flags::ACK | flags::FIN, c_end, k + 2, ts(201, 0), &[]);
    assert!(step.forwarded.is_some());
    assert_eq!(ops(&mut h), [FastpathOp::Remove(f.clone())]);
    h.advance(Duration::from_secs(60));
    let closed = core::iter::from_fn(|| h.engine.poll_event())
        .find(|e| matches!(e, Event::Closed { .. }))
        .expect("closed");
    let Event::Closed { name, outcome, .. } = closed else {
        unreachable!()
    };
    assert_eq!(outcome, Outcome::Closed);
    assert_eq!(name, f.name);
    assert!(name.is_some());
}

#[test]
fn entry_whose_fins_both_passed_closes_at_once_and_is_taken_back() {
    let (mut h, f, _) = handed_over();
    let now = h.now;
    let mut e = entry(&f, now);
    e.client_fin = true;
    e.backend_fin = true;
    assert_eq!(h.engine.adopt_fastpath(now, &e), Ok(Adopted::Closing));
    assert_eq!(ops(&mut h), [FastpathOp::Remove(f)]);
    h.advance(Duration::from_secs(60));
    assert_eq!(h.engine.flow_count(), 0);
    assert_eq!(h.engine.stats().outcomes(Outcome::Closed), 1);
}

#[test]
fn one_fin_seen_by_the_program_counts_towards_the_close() {
    let (mut h, f, k) = handed_over();
    let now = h.now;
    let mut e = entry(&f, now);
    e.backend_fin = true;
    assert_eq!(h.engine.adopt_fastpath(now, &e), Ok(Adopted::New));
    // The client's FIN is the second: the flow closes and is taken back.
    let c_end = C_ISN + 1 + HTTP_REQUEST.len() as u32;
    h.client_to(80, flags::ACK | flags::FIN, c_end, k + 2, ts(201, 0), &[]);
    assert_eq!(ops(&mut h), [FastpathOp::Remove(f)]);
}

#[test]
fn adopted_flow_expires_idle_from_the_programs_last_seen_time() {
    let mut config = config();
    config.idle_timeout = Duration::from_secs(10);
    let (mut h, f, _) = handed_over();
    h.engine = Engine::new(config, routes()).unwrap();
    h.engine.enable_fastpath();
    let now = h.now;
    // Last forwarded 6 s before the adoption: idle 4 s later.
    let mut e = entry(&f, now);
    e.flow.created = Time::from_micros(now.as_micros() - 20_000_000);
    e.last_seen = Time::from_micros(now.as_micros() - 6_000_000);
    assert_eq!(h.engine.adopt_fastpath(now, &e), Ok(Adopted::New));
    h.advance(Duration::from_secs(3));
    assert_eq!(h.engine.flow_count(), 1);
    h.advance(Duration::from_secs(2));
    assert_eq!(h.engine.flow_count(), 0);
    assert_eq!(h.engine.stats().outcomes(Outcome::IdleTimeout), 1);
    assert_eq!(ops(&mut h), [FastpathOp::Remove(e.flow)]);
}

#[test]
fn entries_that_cannot_be_adopted_are_refused_with_the_reason() {
    let (mut h, f, _) = handed_over();
    let now = h.now;
    let mut reset = entry(&f, now);
    reset.reset = true;
    assert_eq!(h.engine.adopt_fastpath(now, &reset), Err(AdoptError::Reset));

    let mut unserved = entry(&f, now);
    unserved.flow.service = SocketAddrV4::new(SERVICE, 8080);
    assert_eq!(
        h.engine.adopt_fastpath(now, &unserved),
        Err(AdoptError::NotServed)
    );

    let mut other = entry(&f, now);
    other.flow.client6 = "2001:db8:65::c633:6402".parse().unwrap();
    assert_eq!(
        h.engine.adopt_fastpath(now, &other),
        Err(AdoptError::OtherPrefix)
    );

    let mut wide = entry(&f, now);
    wide.flow.splice.backend_ws = 15;
    assert_eq!(
        h.engine.adopt_fastpath(now, &wide),
        Err(AdoptError::BadWindowScale)
    );

    // Adopted once; the same client tuple with another splice is another flow's.
    assert_eq!(
        h.engine.adopt_fastpath(now, &entry(&f, now)),
        Ok(Adopted::New)
    );
    let mut clash = entry(&f, now);
    clash.flow.splice.delta ^= 1;
    assert_eq!(
        h.engine.adopt_fastpath(now, &clash),
        Err(AdoptError::Taken("client"))
    );
    assert_eq!(h.engine.flow_count(), 1);

    let mut off = Harness::new();
    assert_eq!(
        off.engine.adopt_fastpath(now, &entry(&f, now)),
        Err(AdoptError::Disabled)
    );
    assert!(ops(&mut off).is_empty());
}

#[test]
fn restored_spliced_flow_is_handed_over_again_by_its_entry_and_taken_back_at_its_end() {
    let (mut old, f, k) = {
        let mut h = Harness::new();
        h.engine.enable_fastpath();
        let (synack, _) = h.spliced_http(backend_linux());
        let Some(FastpathOp::Install(f)) = h.engine.poll_fastpath() else {
            panic!("not handed over");
        };
        (h, f, synack.seg.seq.0)
    };
    // A live upgrade: the snapshot does not say the flow was handed over.
    let bytes = old.engine.snapshot(old.now);
    let mut new = old.clone_clock();
    new.engine = Engine::restore(config(), routes(), &bytes, new.now).unwrap();
    new.engine.enable_fastpath();
    let now = new.now;
    assert_eq!(
        new.engine.adopt_fastpath(now, &entry(&f, now)),
        Ok(Adopted::Restored)
    );
    assert_eq!(new.engine.flow_count(), 1);
    let c_end = C_ISN + 1 + HTTP_REQUEST.len() as u32;
    new.backend_from(
        80,
        flags::ACK | flags::FIN,
        B_ISN + 1,
        c_end,
        ts(5_001, 101),
        &[],
    );
    new.client_to(80, flags::ACK | flags::FIN, c_end, k + 2, ts(201, 0), &[]);
    assert_eq!(ops(&mut new), [FastpathOp::Remove(f)]);
    drop(old.advance(Duration::ZERO));
}
