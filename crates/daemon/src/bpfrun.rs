//! Running a loaded BPF program once on given bytes (`BPF_PROG_TEST_RUN`, which aya does
//! not expose): the steering program's self-check before it is attached, and the tests
//! that compare the kernel programs with the core's reference code.

#[allow(unsafe_code)]
mod syscalls;

pub use syscalls::{TestRun, test_run};
