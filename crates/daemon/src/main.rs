//! The `kracauer` binary.
fn main() {}
