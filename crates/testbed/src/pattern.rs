//! The byte pattern of bulk transfers: byte `i` of a stream is a fixed function of `i`,
//! so either end can produce or check any stretch without keeping the stream, and a
//! lost, duplicated or reordered stretch shows up at its exact offset.

/// Byte `i` of every bulk stream.
pub fn byte_at(i: u64) -> u8 {
    let x = i.wrapping_mul(0x9e37_79b9_7f4a_7c15);
    ((x >> 56) as u8) ^ (i as u8) ^ ((i >> 16) as u8)
}

/// Fills `buf` with the pattern starting at stream offset `offset`.
pub fn fill(offset: u64, buf: &mut [u8]) {
    for (k, b) in buf.iter_mut().enumerate() {
        *b = byte_at(offset + k as u64);
    }
}

/// The stream offset of the first byte of `buf` (which starts at `offset`) that differs
/// from the pattern, if any.
pub fn first_mismatch(offset: u64, buf: &[u8]) -> Option<u64> {
    buf.iter()
        .enumerate()
        .find(|&(k, &b)| b != byte_at(offset + k as u64))
        .map(|(k, _)| offset + k as u64)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn filled_stretch_checks_clean_at_its_offset() {
        let mut buf = vec![0; 5000];
        fill(123_456, &mut buf);
        assert_eq!(first_mismatch(123_456, &buf), None);
    }

    #[test]
    fn stretch_checked_at_a_shifted_offset_fails_at_its_first_byte() {
        let mut buf = vec![0; 5000];
        fill(1000, &mut buf);
        assert_eq!(first_mismatch(1001, &buf), Some(1001));
    }

    #[test]
    fn flipped_byte_is_found_at_its_offset() {
        let mut buf = vec![0; 5000];
        fill(0, &mut buf);
        buf[4321] ^= 1;
        assert_eq!(first_mismatch(0, &buf), Some(4321));
    }
}
