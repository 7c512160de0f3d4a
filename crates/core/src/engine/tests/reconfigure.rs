//! `Engine::reconfigure`: a reload's timeouts and limits reach a running engine.

use core::time::Duration;

use super::*;

#[test]
fn reconfigured_idle_timeout_applies_to_a_flow_spliced_afterwards() {
    let mut h = Harness::new();
    let mut c = config();
    c.idle_timeout = Duration::from_secs(60);
    h.engine.reconfigure(c).unwrap();
    h.spliced_http(backend_linux());
    h.advance(Duration::from_secs(59));
    assert_eq!(h.engine.flow_count(), 1);
    h.advance(Duration::from_secs(2));
    assert_eq!(h.engine.flow_count(), 0, "expired at the new idle timeout");
    assert_eq!(h.engine.stats().outcomes(Outcome::IdleTimeout), 1);
}

#[test]
fn reconfigured_peek_allowance_answers_the_next_syn_from_that_client_with_a_cookie() {
    let mut h = Harness::new();
    h.syn(443);
    let mut c = config();
    c.max_peeking_per_client = 1;
    h.engine.reconfigure(c).unwrap();
    let second = Segment {
        src_port: CPORT + 1,
        dst_port: 443,
        seq: SeqNumber(C_ISN),
        ack: SeqNumber(0),
        flags: flags::SYN,
        window: 502,
        options: linux_syn_options(),
        payload: &[],
    };
    let step = h.run(client_packet(&second));
    assert_eq!(step.verdict, Verdict::Consumed);
    assert_eq!(h.engine.stats().cookies_for_address, 1);
    assert_eq!(h.engine.flow_count(), 1);
}

#[test]
fn invalid_reconfiguration_changes_nothing() {
    let mut h = Harness::new();
    let before = h.engine.config().idle_timeout;
    let mut c = config();
    c.idle_timeout = Duration::from_secs(1);
    c.peek_cap = 0;
    assert_eq!(h.engine.reconfigure(c), Err(ConfigError::PeekCap));
    assert_eq!(h.engine.config().idle_timeout, before);
}

#[test]
fn reconfiguration_keeps_the_secrets() {
    let mut a = Harness::new();
    let mut b = Harness::new();
    let mut c = config();
    c.seed = [9; 32];
    c.idle_timeout = Duration::from_secs(10);
    b.engine.reconfigure(c).unwrap();
    assert_eq!(b.engine.config().seed, config().seed);
    // The same SYN gets the same SYN-ACK (ISN and MSS) from both.
    assert_eq!(a.syn(443).seg, b.syn(443).seg);
}

#[test]
fn a_new_mtu_sets_the_mss_of_new_flows_and_spliced_ones_keep_theirs() {
    let mut h = Harness::new();
    let (_, sent) = h.spliced_http(backend_linux());
    assert!(!sent.is_empty());
    let mut c = config();
    c.ipv6_mtu = 1400;
    h.engine.reconfigure(c).unwrap();
    assert_eq!(h.engine.config().ipv6_mtu, 1400);
    // A new connection (another client port) is offered MSS 1400 - 60.
    let syn = Segment {
        src_port: CPORT + 1,
        dst_port: 443,
        seq: SeqNumber(C_ISN),
        ack: SeqNumber(0),
        flags: flags::SYN,
        window: 502,
        options: linux_syn_options(),
        payload: &[],
    };
    let synack = h.run(client_packet(&syn));
    assert_eq!(synack.only_sent().seg.options.mss, Some(1340));
    // The spliced flow still forwards.
    assert_eq!(h.engine.flow_count(), 2);
}
