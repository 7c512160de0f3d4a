//! Spliced transfers: bytes both ways arrive intact and both ends close with FIN, on
//! clean and faulty links, with window scaling, SACK and timestamps offered or not.

use core::time::Duration;

use std::net::SocketAddrV6;

use kracauer_core::engine::{DropReason, Event, Outcome};
use smoltcp::socket::tcp::State;

use super::hello;
use super::link::Faults;
use super::probe::Strip;
use super::world::{BACKEND, Setup, World};

/// Loss, duplication and reordering on every link.
fn faulty() -> Faults {
    Faults::lossy(0.02, 0.02, 0.05)
}

/// Runs a transfer to the end and checks it: every byte both ways on every connection,
/// clean close on both sides, no RST, no broken invariant, the engine forgets the flows
/// after lingering with each spliced once and closed by FINs, and it dropped nothing.
pub fn transfer(setup: Setup) -> World {
    finish(World::new(setup), &[])
}

/// Runs `w` to the end of its transfer and checks it, as [`transfer`], allowing drops
/// for the reasons in `allowed`.
pub fn finish(mut w: World, allowed: &[DropReason]) -> World {
    let done = w.run_until(600_000, |w| {
        w.both_closed() && w.client_sent_all() && w.backend_sent_all()
    });
    assert!(done, "the transfer did not finish\n{}", w.report());
    for (sent, got) in w.streams() {
        assert_eq!(sent, got, "a stream differs\n{}", w.report());
    }
    assert_eq!(w.client_reset_at_ms(), None, "{}", w.report());
    assert_eq!(w.backend_reset_at_ms(), None, "{}", w.report());
    assert!(w.violations.is_empty(), "{}", w.report());
    w.run_for(w.setup.engine.linger.as_millis() as u64 + 30_000);
    assert_eq!(w.engine.flow_count(), 0, "{}", w.report());
    let stats = w.engine.stats();
    let n = u64::from(w.setup.connections + w.reconnects);
    assert_eq!(stats.spliced, n, "{}", w.report());
    assert_eq!(stats.outcomes(Outcome::Closed), n, "{}", w.report());
    assert_eq!(w.engine.peek_bytes(), 0, "{}", w.report());
    let unexpected = stats
        .all_drops()
        .filter(|(r, n)| *n > 0 && !allowed.contains(r))
        .count();
    assert_eq!(unexpected, 0, "{}", w.report());
    check_events(&mut w);
    w
}

/// The access-log events: one Opened and one Closed per connection, naming a.example and
/// the backend, with at least every payload byte counted (retransmissions count again;
/// bytes the engine sent from its peek buffer are not forwarded packets).
fn check_events(w: &mut World) {
    let n = usize::from(w.setup.connections + w.reconnects);
    let backend = SocketAddrV6::new(BACKEND, w.setup.backend_port, 0, 0);
    let up = (w.setup.head.len() + w.setup.client_payload) as u64;
    let down = w.setup.backend_payload as u64;
    let peek_cap = w.setup.engine.peek_cap as u64;
    let (mut opened, mut closed) = (0, 0);
    while let Some(e) = w.engine.poll_event() {
        match e {
            Event::Opened {
                name, backend: b, ..
            } => {
                opened += 1;
                assert_eq!(name.as_ref().map(|n| n.as_str()), Some("a.example"));
                assert_eq!(b, backend);
            }
            Event::Closed {
                name,
                backend: b,
                bytes_to_backend,
                bytes_to_client,
                outcome,
                ..
            } => {
                closed += 1;
                assert_eq!(name.as_ref().map(|n| n.as_str()), Some("a.example"));
                assert_eq!((b, outcome), (Some(backend), Outcome::Closed));
                assert!(bytes_to_client >= down, "{bytes_to_client} < {down}");
                assert!(
                    bytes_to_backend + peek_cap >= up,
                    "{bytes_to_backend} + peek < {up}"
                );
            }
            other @ Event::BackendFailed { .. } => {
                panic!("the one backend never fails here: {other:?}")
            }
        }
    }
    assert_eq!((opened, closed), (n, n), "{}", w.report());
}

#[test]
fn http_transfer_on_a_clean_link_arrives_intact_and_closes_with_fins() {
    transfer(Setup::http(1));
}

#[test]
fn http_transfers_survive_loss_duplication_and_reordering() {
    for seed in 10..16 {
        let setup = Setup {
            client_payload: 50_000 + 7_000 * seed as usize,
            backend_payload: 150_000,
            ..Setup::http(seed).all_faults(faulty())
        };
        transfer(setup);
    }
}

#[test]
fn connection_set_up_survives_heavy_loss_duplication_and_reordering() {
    // Lost, duplicated and late SYNs, SYN-ACKs (both sides), handshake ACKs and peeked
    // data: every one is repaired by a retransmission of the client or the backend, or
    // by the engine's own SYN retransmission. With this much loss the client's backed-off
    // retransmissions can outlast the 5 s deadlines, so those are longer here.
    //
    // The links turn clean once the data is through: smoltcp's retransmission timeout
    // backs off to 60 s, past its own 10 s TIME-WAIT, so with a lost last ACK its
    // retransmitted FIN finds the peer gone and is reset, engine or no engine.
    for seed in 200..230 {
        let mut setup = Setup {
            client_payload: 3_000,
            backend_payload: 8_000,
            ..Setup::tls(seed, hello::RUSTLS_PQ).all_faults(Faults::lossy(0.15, 0.1, 0.1))
        };
        setup.engine.peek_timeout = Duration::from_secs(60);
        setup.engine.connect_timeout = Duration::from_secs(60);
        let mut w = World::new(setup);
        assert!(w.run_until(600_000, World::all_delivered), "{}", w.report());
        w.set_faults(Faults::CLEAN);
        finish(w, &[]);
    }
}

#[test]
fn megabytes_both_ways_arrive_intact_on_faulty_links() {
    // smoltcp recovers from loss by going back to the first unacknowledged byte after a
    // retransmission timeout of at least one second, so a long transfer needs a gentler
    // link to finish in a few virtual minutes.
    for (seed, size) in [(20, 2_000_000), (21, 1_000_000)] {
        let setup = Setup {
            client_payload: size,
            backend_payload: size * 2,
            ..Setup::http(seed).all_faults(Faults::lossy(0.002, 0.005, 0.01))
        };
        transfer(setup);
    }
    transfer(Setup {
        client_payload: 4_000_000,
        backend_payload: 4_000_000,
        ..Setup::tls(22, hello::RUSTLS_PQ)
    });
}

#[test]
fn tls_transfers_with_real_hellos_arrive_intact() {
    for (seed, hello) in [
        (30, hello::RUSTLS_PQ),
        (31, hello::CHROMIUM),
        (32, hello::CURL),
        (33, hello::OPENSSL),
        (34, hello::OPENSSL_TLS12),
    ] {
        transfer(Setup::tls(seed, hello));
        let setup = Setup {
            client_payload: 30_000,
            ..Setup::tls(seed + 100, hello).all_faults(faulty())
        };
        transfer(setup);
    }
}

#[test]
fn a_two_segment_hello_that_arrives_in_reverse_order_is_peeked_and_spliced() {
    for hello in [hello::RUSTLS_PQ, hello::CHROMIUM] {
        let setup = Setup {
            reverse_first_data: true,
            client_payload: 0,
            ..Setup::tls(40, hello)
        };
        let w = transfer(setup);
        assert_eq!(w.first_data_out_of_order, Some(true), "{}", w.report());
    }
}

#[test]
fn an_http_client_that_half_closes_right_after_its_request_gets_the_answer() {
    let setup = Setup {
        client_payload: 0,
        ..Setup::http(45)
    };
    transfer(setup);
}

/// Every combination of what the client offers and what the backend declines.
#[test]
fn window_scaling_sack_and_timestamps_offered_or_declined_on_either_side() {
    let none = Strip::default();
    let cases = [
        // (client timestamps, client does not offer, backend declines)
        (true, none, none),
        (false, none, none),
        (
            true,
            Strip {
                wscale: true,
                ..none
            },
            none,
        ),
        (true, Strip { sack: true, ..none }, none),
        (
            true,
            none,
            Strip {
                wscale: true,
                ..none
            },
        ),
        (
            true,
            none,
            Strip {
                timestamps: true,
                ..none
            },
        ),
        (true, none, Strip { sack: true, ..none }),
        (
            true,
            none,
            Strip {
                wscale: true,
                sack: true,
                timestamps: true,
            },
        ),
        (
            false,
            Strip {
                wscale: true,
                sack: true,
                timestamps: false,
            },
            none,
        ),
        (
            false,
            none,
            Strip {
                wscale: true,
                ..none
            },
        ),
    ];
    for (i, (client_ts, client_strip, backend_strip)) in cases.into_iter().enumerate() {
        // The backend's buffer sets its window scale: 0 (32 KiB), 3, 5 (1 MiB).
        let backend_buffer = [32 * 1024, 256 * 1024, 1024 * 1024][i % 3];
        for (faults, size) in [(Faults::CLEAN, 300_000), (faulty(), 100_000)] {
            let mut setup = Setup {
                client_timestamps: client_ts,
                client_strip,
                backend_strip,
                client_payload: size,
                backend_payload: size,
                backend_buffer,
                ..Setup::http(50 + i as u64)
            };
            if faults.loss > 0.0 {
                setup = setup.all_faults(faults);
            }
            let w = transfer(setup);
            let hs = w.handshakes();
            let offered = |on: bool, stripped: bool| on && !stripped;
            let ws = offered(true, client_strip.wscale);
            let sack = offered(true, client_strip.sack);
            let ts = offered(client_ts, client_strip.timestamps);
            let synack = hs.engine_synack.as_ref().expect("SYN-ACK to the client");
            assert_eq!(
                (
                    synack.wscale.is_some(),
                    synack.sack_permitted,
                    synack.ts.is_some()
                ),
                (ws, sack, ts),
                "the engine offers the client what it offered\n{}",
                w.report()
            );
            let syn = hs.engine_syn.as_ref().expect("SYN to the backend");
            assert_eq!(
                (syn.wscale.is_some(), syn.sack_permitted, syn.ts.is_some()),
                (ws, sack, ts),
                "the backend is offered what the client offered\n{}",
                w.report()
            );
            let b = hs.backend_synack.as_ref().expect("backend SYN-ACK");
            assert_eq!(
                (b.wscale.is_some(), b.sack_permitted, b.ts.is_some()),
                (
                    ws && !backend_strip.wscale,
                    sack && !backend_strip.sack,
                    ts && !backend_strip.timestamps
                ),
                "{}",
                w.report()
            );
        }
    }
}

#[test]
fn a_slow_reader_with_a_small_window_gets_everything() {
    // The client's 4 KiB window closes again and again; the backend's window probes and
    // the client's window updates cross the engine both ways.
    let mut zero_windows = 0;
    for (seed, faults) in [(70, Faults::CLEAN), (71, faulty())] {
        let mut setup = Setup {
            client_buffer: 4 * 1024,
            client_read_chunk: Some(1_000),
            client_payload: 1_000,
            backend_payload: 120_000,
            ..Setup::http(seed)
        };
        if faults.loss > 0.0 {
            setup = setup.all_faults(faults);
        }
        zero_windows += transfer(setup).zero_windows_to_backend;
    }
    assert!(zero_windows > 0, "the client's window never closed");
}

/// Runs until one side aborts mid-transfer and checks the other side got the RST
/// through the engine, which ends the flow with `outcome` after lingering.
fn aborted(setup: Setup, outcome: Outcome) {
    let mut w = World::new(setup);
    let done = w.run_until(120_000, |w| {
        w.client_state() == Some(State::Closed) && w.backend_state() == Some(State::Closed)
    });
    assert!(done, "{}", w.report());
    let (client_rst, backend_rst) = (w.client_reset_at_ms(), w.backend_reset_at_ms());
    match outcome {
        Outcome::BackendReset => assert!(client_rst.is_some(), "{}", w.report()),
        _ => assert!(backend_rst.is_some(), "{}", w.report()),
    }
    assert!(w.violations.is_empty(), "{}", w.report());
    w.run_for(w.setup.engine.linger.as_millis() as u64 + 30_000);
    let stats = w.engine.stats();
    assert_eq!(stats.outcomes(outcome), 1, "{}", w.report());
    assert_eq!(w.engine.flow_count(), 0, "{}", w.report());
    assert_eq!(stats.total_drops(), 0, "{}", w.report());
}

#[test]
fn a_backend_that_aborts_mid_transfer_resets_the_client_through_the_splice() {
    aborted(
        Setup {
            backend_abort_after: Some(1_000),
            client_payload: 200_000,
            backend_payload: 2_000_000,
            ..Setup::http(72)
        },
        Outcome::BackendReset,
    );
}

#[test]
fn a_client_that_aborts_mid_transfer_resets_the_backend_through_the_splice() {
    aborted(
        Setup {
            client_abort_after: Some(20_000),
            backend_payload: 2_000_000,
            ..Setup::tls(73, hello::CHROMIUM)
        },
        Outcome::ClientReset,
    );
}

#[test]
fn syn_cookies_carry_connections_with_and_without_timestamps() {
    // With no room for half-open flows every SYN is answered with a cookie; without
    // timestamps to carry them the cookie SYN-ACK offers no window scaling and no SACK.
    for (seed, client_timestamps, faults) in [
        (80, true, Faults::CLEAN),
        (81, false, Faults::CLEAN),
        (82, true, faulty()),
        (83, false, faulty()),
    ] {
        let mut setup = Setup {
            client_timestamps,
            client_payload: 40_000,
            ..Setup::tls(seed, hello::RUSTLS_PQ)
        };
        if faults.loss > 0.0 {
            setup = setup.all_faults(faults);
        }
        setup.engine.max_half_open = 0;
        let w = transfer(setup);
        assert!(w.engine.stats().cookies_accepted >= 1, "{}", w.report());
        let hs = w.handshakes();
        let synack = hs.engine_synack.as_ref().expect("SYN-ACK");
        assert_eq!(synack.wscale.is_some(), client_timestamps, "{}", w.report());
        assert_eq!(synack.sack_permitted, client_timestamps, "{}", w.report());
    }
}

#[test]
fn concurrent_connections_from_one_client_each_keep_their_own_splice() {
    // One client address, consecutive ports, every flow with its own δ and timestamp
    // offset; the oracle checks each flow's packets against its own handshakes.
    let http = Setup {
        connections: 24,
        client_payload: 20_000,
        backend_payload: 50_000,
        ..Setup::http(90).all_faults(faulty())
    };
    transfer(http);
    let tls = Setup {
        connections: 16,
        client_payload: 10_000,
        backend_payload: 30_000,
        ..Setup::tls(91, hello::CHROMIUM).all_faults(faulty())
    };
    transfer(tls);
}

#[test]
fn a_smaller_ipv6_mtu_is_kept_by_clamping_the_mss_both_ways() {
    // IPv6 MTU 1400: the client is told MSS 1340 so that its segments fit once 20 bytes
    // longer, and the backend is offered the same; nothing on the IPv6 side exceeds 1400.
    let mut setup = Setup {
        client_payload: 200_000,
        backend_payload: 300_000,
        ..Setup::tls(95, hello::CHROMIUM).all_faults(faulty())
    };
    setup.engine.ipv6_mtu = 1400;
    let w = transfer(setup);
    let hs = w.handshakes();
    let synack = hs.engine_synack.as_ref().expect("SYN-ACK");
    let syn = hs.engine_syn.as_ref().expect("SYN to the backend");
    assert_eq!(
        (synack.mss, syn.mss),
        (Some(1340), Some(1340)),
        "{}",
        w.report()
    );
}

#[test]
fn a_hello_in_many_small_reordered_segments_is_reassembled() {
    // A middlebox clamps the client's MSS to 100: Chromium's 1,815-byte hello goes out
    // as ~21 segments, which the links reorder, duplicate and drop.
    // Past 8 holes the engine refuses a segment (counted as client_peek_holes) and the
    // client's retransmission brings it again.
    let mut refused = 0;
    for seed in 100..106 {
        let setup = Setup {
            client_mss: Some(100),
            client_payload: 5_000,
            backend_payload: 50_000,
            ..Setup::tls(seed, hello::CHROMIUM).all_faults(Faults::lossy(0.05, 0.05, 0.3))
        };
        let w = finish(World::new(setup), &[DropReason::ClientPeekHoles]);
        refused += w.engine.stats().drops(DropReason::ClientPeekHoles);
    }
    assert!(refused > 0, "the scenario never made too many holes");
}

#[test]
fn sequence_numbers_that_wrap_on_either_side_are_carried_across() {
    // Seeds whose smoltcp ISNs lie a few megabytes below 2^32 (found by search): the
    // client's sequence space wraps in the first, the backend's in the second.
    for (seed, up, down, client_wraps) in [
        (4113, 3_000_000, 10_000, true),
        (951, 10_000, 2_000_000, false),
    ] {
        let setup = Setup {
            client_payload: up,
            backend_payload: down,
            ..Setup::http(seed).all_faults(Faults::lossy(0.002, 0.002, 0.01))
        };
        let w = transfer(setup);
        let hs = w.handshakes();
        let (isn, bytes) = if client_wraps {
            (hs.client_syn.as_ref().map(|s| s.seq), up)
        } else {
            (hs.backend_synack.as_ref().map(|s| s.seq), down)
        };
        let end = u64::from(isn.expect("ISN")) + bytes as u64;
        assert!(end > 1 << 32, "seed {seed} no longer wraps: {}", w.report());
    }
}

#[test]
fn a_client_reconnecting_from_the_same_port_while_the_flow_lingers_starts_fresh() {
    // Both ends are done and past smoltcp's 10 s TIME-WAIT, but the engine still holds
    // the old flow (30 s linger): the new SYN from the same port replaces it.
    let mut w = World::new(Setup {
        client_payload: 30_000,
        backend_payload: 60_000,
        ..Setup::http(110)
    });
    assert!(w.run_until(60_000, World::both_closed), "{}", w.report());
    w.run_for(12_000);
    assert_eq!(w.client_state(), Some(State::Closed), "{}", w.report());
    assert_eq!(w.engine.flow_count(), 1, "still lingering\n{}", w.report());
    w.reconnect();
    finish(w, &[]);
}

#[test]
fn peeked_bytes_are_sent_in_pieces_no_larger_than_the_backends_mss() {
    // The backend's SYN-ACK says MSS 536: Chromium's 1,815-byte hello leaves the engine
    // in four pieces of at most 536 - 12 (timestamps) bytes.
    let w = transfer(Setup {
        backend_mss: Some(536),
        client_payload: 0,
        ..Setup::tls(120, hello::CHROMIUM)
    });
    assert_eq!(w.largest_made_to_backend, 524, "{}", w.report());
}
