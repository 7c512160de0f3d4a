//! The SYN cookie program's `unsafe`: the [`aya::Pod`] promises for its map structs.

#![allow(unsafe_code)]

use super::maps::{ScConfig, ScKey};

// SAFETY: `repr(C)` structs of integers and byte arrays with no padding (their sizes are
// asserted in `maps.rs` to be the sums of their fields), so every bit pattern is a valid
// value and none has uninitialised bytes.
unsafe impl aya::Pod for ScConfig {}
// SAFETY: as for `ScConfig`.
unsafe impl aya::Pod for ScKey {}
