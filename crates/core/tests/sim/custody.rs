//! Custody (docs/architecture.md, "Custody"): a client whose Nagle is RFC 896's and
//! that does not set TCP_NODELAY sends the first full segment of a hello longer than one
//! MSS, then holds the short rest until that segment is acknowledged. Kracauer takes
//! custody of what it holds after the custody delay, acknowledges it, and from then on
//! delivers those bytes to the backend itself, however the links treat them.

use kracauer_core::engine::DropReason;

use super::hello;
use super::link::Faults;
use super::splice::{finish, transfer};
use super::world::{Setup, World};

/// A classic-Nagle TLS client that writes `hello` and waits for the server (so its
/// short last segment waits for an acknowledgement), then reads 30,000 bytes and closes
/// after the server.
fn nagle(seed: u64, hello: &[u8]) -> Setup {
    Setup {
        client_classic_nagle: true,
        client_payload: 0,
        client_waits_for_fin: true,
        backend_payload: 30_000,
        ..Setup::tls(seed, hello)
    }
}

/// A hello of three segments at the client's MSS (1428 bytes with timestamps).
fn three_segment_hello() -> Vec<u8> {
    let h = hello::padded(hello::RUSTLS_PQ, 1_600);
    assert!(h.len() > 2 * 1428 && h.len() < 3 * 1428, "{}", h.len());
    h
}

#[test]
fn a_classic_nagle_client_with_a_two_segment_hello_is_served_once_kracauer_takes_custody() {
    let w = transfer(nagle(67, hello::RUSTLS_PQ));
    let stats = w.engine.stats();
    assert_eq!(stats.custody_taken, 1, "{}", w.report());
    assert_eq!(stats.custody_retransmits, 0, "{}", w.report());
}

#[test]
fn a_classic_nagle_client_with_a_three_segment_hello_is_served_once_kracauer_takes_custody() {
    let w = transfer(nagle(68, &three_segment_hello()));
    assert_eq!(w.engine.stats().custody_taken, 1, "{}", w.report());
}

#[test]
fn the_custody_delay_is_all_a_classic_nagle_client_waits() {
    let mut w = World::new(nagle(69, hello::RUSTLS_PQ));
    // 5 ms links: the SYN-ACK at 5 ms, the first segment at 10 ms, the custody ACK at
    // 110 ms, the rest of the hello at 120 ms; the backend at 5 ms away from there.
    let named = w.run_until(1_000, |w| w.engine.stats().spliced == 1);
    assert!(named, "{}", w.report());
    let at = w.elapsed_ms();
    assert!(
        (100..200).contains(&at),
        "spliced at {at} ms\n{}",
        w.report()
    );
}

#[test]
fn custody_bytes_lost_on_the_way_to_the_backend_are_sent_again_by_kracauer() {
    for (seed, h) in [(70, hello::RUSTLS_PQ.to_vec()), (71, three_segment_hello())] {
        let w = transfer(Setup {
            lose_first_handover: true,
            ..nagle(seed, &h)
        });
        let stats = w.engine.stats();
        assert_eq!(stats.custody_taken, 1, "{}", w.report());
        assert!(stats.custody_retransmits >= 1, "{}", w.report());
    }
}

#[test]
fn classic_nagle_hellos_of_two_and_three_segments_survive_loss_duplication_and_reordering() {
    let three = three_segment_hello();
    for seed in 300..316 {
        let h = if seed % 2 == 0 {
            hello::RUSTLS_PQ
        } else {
            &three[..]
        };
        let mut setup = nagle(seed, h).all_faults(Faults::lossy(0.1, 0.05, 0.1));
        // At 10% loss a client's own retransmissions of its SYN and first segment can
        // outlast the 5 s peek deadline; that deadline is not what this tests.
        setup.engine.peek_timeout = core::time::Duration::from_secs(60);
        // A lost custody ACK makes the client send its bytes again (acknowledged again);
        // duplicates of its SYN get challenge ACKs.
        finish(World::new(setup), &[DropReason::ClientOutOfWindow]);
    }
}
