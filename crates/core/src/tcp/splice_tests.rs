//! Tests of the pure splice rewrite (filled in separately).
