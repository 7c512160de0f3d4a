//! Arbitrary sequences of packets and clock steps fed to one engine: it must never panic,
//! must keep within its configured limits, and must only emit well-formed packets. The
//! interpreter is shared with `crates/core/tests/engine_ops.rs`, which runs it on seeded
//! random inputs in CI.
#![no_main]
use libfuzzer_sys::fuzz_target;

#[path = "../../crates/core/tests/support/engine_ops.rs"]
mod engine_ops;

fuzz_target!(|data: &[u8]| {
    let _ = engine_ops::run(data);
});
