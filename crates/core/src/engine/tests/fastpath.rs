//! The fast path's operations: a flow is handed over when it splices, taken back when it
//! starts closing, never handed over while the fast path is off; idle expiry reads the
//! program's last-seen time.

use core::time::Duration;

use super::*;
use crate::engine::{FastpathOp, Outcome};

fn ops(h: &mut Harness) -> Vec<FastpathOp> {
    core::iter::from_fn(|| h.engine.poll_fastpath()).collect()
}

#[test]
fn spliced_flow_is_handed_over_and_taken_back_when_both_fins_pass() {
    let mut h = Harness::new();
    h.engine.enable_fastpath();
    let (synack, _) = h.spliced_http(backend_linux());
    let got = ops(&mut h);
    let [FastpathOp::Install(f)] = &got[..] else {
        panic!("{got:?}");
    };
    let f = f.clone();
    assert_eq!(f.client6, client6());
    assert_eq!(*f.backend.ip(), backend_addr());
    assert_eq!(f.splice.delta, B_ISN.wrapping_sub(synack.seg.seq.0));
    let k = synack.seg.seq.0;
    let c_end = C_ISN + 1 + HTTP_REQUEST.len() as u32;
    h.backend_from(
        80,
        flags::ACK | flags::FIN,
        B_ISN + 1,
        c_end,
        ts(5_001, 101),
        b"bye",
    );
    assert!(ops(&mut h).is_empty(), "one FIN does not close");
    h.client_to(
        80,
        flags::ACK | flags::FIN,
        c_end,
        k + 1 + 4,
        ts(201, 0),
        &[],
    );
    assert_eq!(ops(&mut h), [FastpathOp::Remove(f)]);
    h.advance(Duration::from_secs(31));
    assert!(ops(&mut h).is_empty(), "taken back once");
}

#[test]
fn nothing_is_handed_over_unless_the_fast_path_is_enabled() {
    let mut h = Harness::new();
    h.spliced_http(backend_linux());
    assert!(ops(&mut h).is_empty());
}

#[test]
fn handed_over_flow_expires_idle_from_the_programs_last_seen_time() {
    let mut config = config();
    config.idle_timeout = Duration::from_secs(10);
    let mut h = Harness::with(config);
    h.engine.enable_fastpath();
    h.spliced_http(backend_linux());
    let Some(FastpathOp::Install(f)) = h.engine.poll_fastpath() else {
        panic!("not handed over");
    };
    // The program saw packets until 8 s in: at 12 s the flow is not idle yet.
    h.advance(Duration::from_secs(8));
    let seen = h.now;
    h.engine.fastpath_seen(f.client, f.service, seen);
    h.advance(Duration::from_secs(4));
    assert_eq!(h.engine.flow_count(), 1);
    h.advance(Duration::from_secs(7));
    assert_eq!(h.engine.flow_count(), 0);
    assert_eq!(h.engine.stats().outcomes(Outcome::IdleTimeout), 1);
    assert_eq!(ops(&mut h), [FastpathOp::Remove(f)]);
}
