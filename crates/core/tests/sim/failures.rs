//! Flows that never splice (a backend that does not answer, refuses or is unreachable,
//! a client that stalls or gives up, a name with no route), and ICMP errors about
//! spliced flows.

use kracauer_core::engine::{DropReason, Outcome};
use smoltcp::socket::tcp::State;

use super::hello;
use super::link::Faults;
use super::world::{BACKEND, CLIENT, CLIENT6, SERVICE, Setup, World};

/// The flow ended with `outcome`, is gone, and nothing was dropped or broken.
fn ended(w: &World, outcome: Outcome) {
    let stats = w.engine.stats();
    assert_eq!(stats.outcomes(outcome), 1, "{}", w.report());
    assert_eq!(stats.spliced, 0, "{}", w.report());
    assert_eq!(w.engine.flow_count(), 0, "{}", w.report());
    assert_eq!(stats.total_drops(), 0, "{}", w.report());
    assert!(w.drops.is_empty(), "{}", w.report());
    assert!(w.violations.is_empty(), "{}", w.report());
}

#[test]
fn a_backend_that_never_answers_gets_the_client_reset_at_the_connect_timeout() {
    let mut w = World::new(Setup {
        backend_black_hole: true,
        client_waits_for_fin: true,
        client_payload: 0,
        ..Setup::tls(60, hello::RUSTLS_PQ)
    });
    let done = w.run_until(30_000, |w| w.client_state() == Some(State::Closed));
    assert!(done, "{}", w.report());
    let at = w.client_reset_at_ms().expect("reset");
    // The name is known ~15 ms in; the connect timeout is 5 s.
    assert!(
        (5_000..5_100).contains(&at),
        "reset at {at} ms\n{}",
        w.report()
    );
    ended(&w, Outcome::ConnectTimeout);
    assert!(
        w.sent_to_backend() >= 2,
        "the SYN is retransmitted\n{}",
        w.report()
    );
}

#[test]
fn a_backend_that_refuses_gets_the_client_reset_at_once() {
    let mut w = World::new(Setup {
        backend_listens: false,
        client_waits_for_fin: true,
        client_payload: 0,
        ..Setup::tls(61, hello::CURL)
    });
    let done = w.run_until(30_000, |w| w.client_state() == Some(State::Closed));
    assert!(done, "{}", w.report());
    let at = w.client_reset_at_ms().expect("reset");
    assert!(at < 100, "reset at {at} ms\n{}", w.report());
    ended(&w, Outcome::BackendRefused);
    assert_eq!(w.backend_reset_at_ms(), None, "{}", w.report());
}

#[test]
fn an_unreachable_backend_gets_the_client_reset_at_once() {
    // docs/architecture.md, "The splice", step 4: an ICMPv6 error for the backend SYN fails the client fast.
    let mut w = World::new(Setup {
        backend_unreachable: true,
        client_waits_for_fin: true,
        client_payload: 0,
        ..Setup::tls(68, hello::OPENSSL)
    });
    let done = w.run_until(30_000, |w| w.client_state() == Some(State::Closed));
    assert!(done, "{}", w.report());
    let at = w.client_reset_at_ms().expect("reset");
    assert!(at < 100, "reset at {at} ms\n{}", w.report());
    ended(&w, Outcome::BackendRefused);
}

#[test]
fn a_client_that_gives_up_while_the_backend_is_silent_frees_the_flow_at_once() {
    let mut w = World::new(Setup {
        backend_black_hole: true,
        client_waits_for_fin: true,
        client_payload: 0,
        ..Setup::tls(69, hello::CHROMIUM)
    });
    w.run_for(2_000);
    assert_eq!(w.engine.flow_count(), 1, "{}", w.report());
    w.abort_client();
    w.run_for(50);
    assert_eq!(w.client_state(), Some(State::Closed), "{}", w.report());
    ended(&w, Outcome::ClientReset);
}

#[test]
fn a_client_that_stalls_mid_hello_is_reset_at_the_peek_deadline() {
    let mut w = World::new(Setup {
        client_stall_at: Some(100),
        ..Setup::tls(62, hello::RUSTLS_PQ)
    });
    let done = w.run_until(30_000, |w| w.client_state() == Some(State::Closed));
    assert!(done, "{}", w.report());
    let at = w.client_reset_at_ms().expect("reset");
    // The SYN reaches the engine 5 ms in; the peek deadline is 5 s after it.
    assert!(
        (5_000..5_100).contains(&at),
        "reset at {at} ms\n{}",
        w.report()
    );
    ended(&w, Outcome::PeekTimeout);
    assert_eq!(w.backend_state(), Some(State::Listen), "{}", w.report());
}

/// Runs a refused flow: the client gets `answer` then FIN, closes, and the backend sees
/// nothing.
fn refused(setup: Setup, answer: &[u8]) {
    let mut w = World::new(Setup {
        client_waits_for_fin: true,
        client_payload: 0,
        ..setup
    });
    let done = w.run_until(120_000, |w| {
        matches!(w.client_state(), Some(State::Closed | State::TimeWait))
    });
    assert!(done, "{}", w.report());
    assert!(w.client_got_head().starts_with(answer), "{}", w.report());
    assert_eq!(w.client_reset_at_ms(), None, "{}", w.report());
    assert_eq!(w.backend_state(), Some(State::Listen), "{}", w.report());
    assert!(w.violations.is_empty(), "{}", w.report());
    w.run_for(60_000);
    assert_eq!(
        w.engine.stats().outcomes(Outcome::UnknownName),
        1,
        "{}",
        w.report()
    );
    assert_eq!(w.engine.flow_count(), 0, "{}", w.report());
    assert_eq!(w.engine.stats().total_drops(), 0, "{}", w.report());
}

#[test]
fn an_unknown_tls_name_gets_the_unrecognized_name_alert_and_a_clean_close() {
    for (seed, h) in [(63, hello::CURL), (64, hello::RUSTLS_PQ)] {
        let setup = Setup::tls(seed, &hello::with_unknown_name(h));
        refused(setup, &[0x15, 3, 1, 0, 2, 2, 112]);
    }
}

#[test]
fn a_hello_without_a_server_name_gets_the_alert_when_there_is_no_default_route() {
    refused(
        Setup::tls(66, hello::OPENSSL_NO_SNI),
        &[0x15, 3, 1, 0, 2, 2, 112],
    );
}

#[test]
fn an_unknown_http_host_gets_421_and_a_clean_close() {
    let setup = Setup {
        head: b"GET / HTTP/1.1\r\nHost: b.example\r\n\r\n".to_vec(),
        ..Setup::http(65)
    };
    refused(setup, b"HTTP/1.1 421");
}

#[test]
fn refusals_survive_loss_duplication_and_reordering() {
    // A lost alert or 421 is sent again when the client retransmits; the client's FIN is
    // acknowledged however often it comes.
    for seed in 130..142 {
        let faults = Faults::lossy(0.1, 0.1, 0.1);
        let tls = Setup::tls(seed, &hello::with_unknown_name(hello::RUSTLS_PQ)).all_faults(faults);
        refused(tls, &[0x15, 3, 1, 0, 2, 2, 112]);
        let http = Setup {
            head: b"GET / HTTP/1.1\r\nHost: b.example\r\n\r\n".to_vec(),
            ..Setup::http(seed + 100).all_faults(faults)
        };
        refused(http, b"HTTP/1.1 421");
    }
}

#[test]
fn a_client_that_gives_up_after_losing_its_first_segment_frees_the_flow_at_once() {
    // The engine holds the hello's second segment only; the client's RST comes right
    // after it, not where the engine's contiguous bytes end.
    let mut w = World::new(Setup {
        lose_first_data: true,
        client_waits_for_fin: true,
        client_payload: 0,
        ..Setup::tls(70, hello::CHROMIUM)
    });
    w.run_for(500);
    assert_eq!(w.engine.flow_count(), 1, "{}", w.report());
    w.abort_client();
    w.run_for(50);
    ended(&w, Outcome::ClientReset);
}

#[test]
fn packet_too_big_on_the_backend_path_reaches_the_client_as_fragmentation_needed() {
    // A router towards the backend has MTU 1300. Its ICMPv6 errors about the client's
    // segments come back to the client as ICMPv4 "fragmentation needed", MTU 1280,
    // quoting the segment exactly as the client sent it (Linux drops ICMP errors whose
    // quoted sequence number is outside its window). smoltcp does no path MTU
    // discovery, so the flow itself cannot go on; only the errors are checked.
    let mut w = World::new(Setup {
        backend_path_mtu: Some(1300),
        client_payload: 50_000,
        ..Setup::tls(71, hello::CURL)
    });
    w.run_for(3_000);
    assert!(w.violations.is_empty(), "{}", w.report());
    assert!(!w.icmp_to_client.is_empty(), "{}", w.report());
    for m in &w.icmp_to_client {
        assert_eq!((m.kind, m.code, m.mtu), (3, 4, 1280), "{m:?}");
        let (src, dst, sport, dport, seq, ack) = m.inner;
        assert_eq!(
            (src, dst, dport),
            (CLIENT.into(), SERVICE.into(), 443),
            "{m:?}"
        );
        assert!(
            w.client_segments.contains(&(sport, seq, ack)),
            "{m:?} quotes a segment the client never sent"
        );
    }
    // smoltcp does no path MTU discovery: it sends the segment again and again, and the
    // repeats of the error within 100 ms of one passed on are dropped (and only those).
    let stats = w.engine.stats();
    let repeated = stats.drops(DropReason::BackendTooBigRepeated);
    assert_eq!(stats.total_drops(), repeated, "{}", w.report());
}

#[test]
fn fragmentation_needed_on_the_client_path_reaches_the_backend_as_packet_too_big() {
    // A router towards the client has MTU 1300. Its ICMPv4 errors about the backend's
    // translated segments go back to the backend as ICMPv6 "packet too big", MTU 1320,
    // quoting the segment exactly as the backend sent it.
    let mut w = World::new(Setup {
        client_path_mtu: Some(1300),
        backend_payload: 50_000,
        ..Setup::tls(72, hello::CURL)
    });
    w.run_for(3_000);
    assert!(w.violations.is_empty(), "{}", w.report());
    assert!(!w.icmp_to_backend.is_empty(), "{}", w.report());
    for m in &w.icmp_to_backend {
        assert_eq!((m.kind, m.code, m.mtu), (2, 0, 1320), "{m:?}");
        let (src, dst, sport, dport, seq, ack) = m.inner;
        assert_eq!(
            (src, dst, sport),
            (BACKEND.into(), CLIENT6.into(), 8443),
            "{m:?}"
        );
        assert!(
            w.backend_segments.contains(&(dport, seq, ack)),
            "{m:?} quotes a segment the backend never sent"
        );
    }
    let stats = w.engine.stats();
    let repeated = stats.drops(DropReason::ClientTooBigRepeated);
    assert_eq!(stats.total_drops(), repeated, "{}", w.report());
}
