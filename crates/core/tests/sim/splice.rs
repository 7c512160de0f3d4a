//! Spliced transfers: bytes both ways arrive intact and both ends close with FIN, on
//! clean and faulty links, with window scaling, SACK and timestamps offered or not.

use kracauer_core::engine::Outcome;

use super::hello;
use super::link::Faults;
use super::probe::Strip;
use super::world::{Setup, World};

/// Loss, duplication and reordering on every link.
fn faulty() -> Faults {
    Faults::lossy(0.02, 0.02, 0.05)
}

/// Runs a transfer to the end and checks it: every byte both ways, clean close on both
/// sides, no RST, no broken invariant, and the engine forgets the flow after lingering
/// with one spliced flow closed by FINs.
pub fn transfer(setup: Setup) -> World {
    let mut w = World::new(setup);
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
    w.run_for(60_000);
    assert_eq!(w.engine.flow_count(), 0, "{}", w.report());
    let stats = w.engine.stats();
    assert_eq!(stats.spliced, 1, "{}", w.report());
    assert_eq!(stats.outcomes(Outcome::Closed), 1, "{}", w.report());
    assert_eq!(w.engine.peek_bytes(), 0, "{}", w.report());
    w
}

/// A clean run drops nothing at all.
fn assert_no_drops(w: &World) {
    assert!(w.drops.is_empty(), "{}", w.report());
    assert_eq!(w.engine.stats().total_drops(), 0, "{}", w.report());
}

#[test]
fn http_transfer_on_a_clean_link_arrives_intact_and_closes_with_fins() {
    let w = transfer(Setup::http(1));
    assert_no_drops(&w);
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
    let w = transfer(Setup {
        client_payload: 4_000_000,
        backend_payload: 4_000_000,
        ..Setup::tls(22, hello::RUSTLS_PQ)
    });
    assert_no_drops(&w);
}

#[test]
fn tls_transfers_with_real_hellos_arrive_intact() {
    for (seed, hello) in [
        (30, hello::RUSTLS_PQ),
        (31, hello::CHROMIUM),
        (32, hello::CURL),
    ] {
        let w = transfer(Setup::tls(seed, hello));
        assert_no_drops(&w);
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
        assert_no_drops(&w);
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
        for (faults, size) in [(Faults::CLEAN, 300_000), (faulty(), 100_000)] {
            let setup = Setup {
                client_timestamps: client_ts,
                client_strip,
                backend_strip,
                client_payload: size,
                backend_payload: size,
                ..Setup::http(50 + i as u64).all_faults(faults)
            };
            transfer(setup);
        }
    }
}
