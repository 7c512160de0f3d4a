//! The engine fed seeded random sequences of packets and clock steps (the same
//! interpreter the `engine_sequence` fuzz target uses): it must never panic, must keep
//! within its limits, and every packet it sends or forwards must be well-formed.

#[path = "support/engine_ops.rs"]
mod engine_ops;

use proptest::prelude::*;

proptest! {
    #![proptest_config(ProptestConfig { cases: 2000, ..ProptestConfig::default() })]

    #[test]
    fn random_packet_sequences_keep_the_engine_within_its_invariants(data in proptest::collection::vec(any::<u8>(), 0..600)) {
        let _ = engine_ops::run(&data);
    }
}

/// A sequence that walks one HTTP flow through handshake, peek, backend SYN-ACK and
/// data, to show the interpreter reaches the spliced state (ops: client SYN, client ACK
/// with the request, backend SYN-ACK, backend data).
#[test]
fn interpreter_reaches_a_spliced_flow() {
    let data = [
        3, 0x02, 0, 0, 0, 5, 255, 0x0f, // client SYN to :80, all options
        3, 0x18, 0, 1, 0, 5, 255,
        0x08, // client ACK|PSH seq c+1 ack k+1, a.example request, TS
        // From the second backend of the pool (the top bit of the sequence offset), this
        // client's first choice under the fixed placement key.
        4, 0x12, 0x80, 0, 1, 5, 255, 0x0f, // backend SYN-ACK, ack c_isn+1
        4, 0x18, 0x80, 1, 1, 3, 255, 0x08, // backend data "HTTP/1.1 200 OK..."
    ];
    let stats = engine_ops::run(&data);
    assert_eq!(stats.spliced, 1, "{stats:?}");
    assert_eq!(
        stats.packets[1], 1,
        "the backend's data reached the client: {stats:?}"
    );
}

/// The client's first choice refuses the SYN and the other backend takes the flow.
#[test]
fn interpreter_reaches_a_failover() {
    let data = [
        3, 0x02, 0, 0, 0, 5, 255, 0x0f, // client SYN to :80, all options
        3, 0x18, 0, 1, 0, 5, 255, 0x08, // the request
        4, 0x14, 0x80, 0, 1, 5, 0, 0, // the first choice refuses: RST|ACK, ack c_isn+1
        4, 0x12, 0, 0, 1, 5, 255, 0x0f, // the other answers
    ];
    let stats = engine_ops::run(&data);
    assert_eq!((stats.failovers, stats.spliced), (1, 1), "{stats:?}");
}
