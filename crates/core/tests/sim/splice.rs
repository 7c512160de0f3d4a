//! Spliced transfers: bytes both ways arrive intact and both ends close with FIN, on
//! clean and faulty links, with window scaling, SACK and timestamps offered or not.

use super::link::Faults;
use super::world::{Setup, World};

/// Runs a transfer to the end and checks it: every byte both ways, clean close on both
/// sides, no RST, no broken invariant, and the engine forgets the flow after lingering.
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
    // The flow lingers to translate stragglers, then goes.
    w.run_for(60_000);
    assert_eq!(w.engine.flow_count(), 0, "{}", w.report());
    let stats = w.engine.stats();
    assert_eq!(stats.spliced, 1, "{}", w.report());
    assert_eq!(
        stats.outcomes(kracauer_core::engine::Outcome::Closed),
        1,
        "{}",
        w.report()
    );
    w
}

#[test]
fn http_transfer_on_a_clean_link_arrives_intact_and_closes_with_fins() {
    let w = transfer(Setup::http(1));
    assert!(w.drops.is_empty(), "{}", w.report());
    assert_eq!(w.engine.stats().total_drops(), 0, "{}", w.report());
}
