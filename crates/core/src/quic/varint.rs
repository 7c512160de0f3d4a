//! QUIC variable-length integers (RFC 9000 §16): the two high bits of the first byte give
//! the length (1, 2, 4 or 8 bytes), the rest is the value, big-endian.

/// The largest value a variable-length integer can hold: 2^62 − 1.
pub const MAX: u64 = (1 << 62) - 1;

/// Reads one integer from the start of `buf`: its value and how many bytes it took, or
/// `None` when `buf` ends inside it. Any encoding is accepted, not only the shortest.
pub fn read(buf: &[u8]) -> Option<(u64, usize)> {
    let first = *buf.first()?;
    let len = 1usize << (first >> 6);
    let bytes = buf.get(..len)?;
    let mut value = u64::from(first & 0x3f);
    for &b in &bytes[1..] {
        value = value << 8 | u64::from(b);
    }
    Some((value, len))
}

/// Bytes the shortest encoding of `value` takes (values above [`MAX`] take 8 and are
/// refused by [`write()`]).
pub const fn len(value: u64) -> usize {
    match value {
        0..=0x3f => 1,
        0x40..=0x3fff => 2,
        0x4000..=0x3fff_ffff => 4,
        _ => 8,
    }
}

/// Writes the shortest encoding of `value` at the start of `out`: the bytes written, or
/// `None` when `value` is above [`MAX`] or `out` is too short (nothing is written then).
pub fn write(value: u64, out: &mut [u8]) -> Option<usize> {
    if value > MAX {
        return None;
    }
    let n = len(value);
    let dst = out.get_mut(..n)?;
    let be = value.to_be_bytes();
    dst.copy_from_slice(&be[8 - n..]);
    // The length tag: 00, 01, 10, 11 for 1, 2, 4, 8 bytes.
    dst[0] |= (n.trailing_zeros() as u8) << 6;
    Some(n)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rfc_9000_appendix_a1_examples_decode() {
        let cases: &[(&[u8], u64)] = &[
            (
                &[0xc2, 0x19, 0x7c, 0x5e, 0xff, 0x14, 0xe8, 0x8c],
                151_288_809_941_952_652,
            ),
            (&[0x9d, 0x7f, 0x3e, 0x7d], 494_878_333),
            (&[0x7b, 0xbd], 15_293),
            (&[0x25], 37),
            (&[0x40, 0x25], 37),
        ];
        for &(bytes, value) in cases {
            assert_eq!(read(bytes), Some((value, bytes.len())), "{bytes:02x?}");
        }
    }

    #[test]
    fn writing_then_reading_gives_the_value_back_in_the_shortest_form() {
        for value in [0, 63, 64, 16_383, 16_384, (1 << 30) - 1, 1 << 30, MAX] {
            let mut buf = [0u8; 8];
            let n = write(value, &mut buf).expect("fits");
            assert_eq!(n, len(value));
            assert_eq!(read(&buf[..n]), Some((value, n)));
        }
    }

    #[test]
    fn a_value_past_the_maximum_or_a_short_buffer_is_refused() {
        assert_eq!(write(MAX + 1, &mut [0u8; 8]), None);
        assert_eq!(write(64, &mut [0u8; 1]), None);
    }

    #[test]
    fn a_buffer_ending_inside_an_integer_reads_as_none() {
        assert_eq!(read(&[]), None);
        assert_eq!(read(&[0x40]), None);
        assert_eq!(read(&[0xc0, 0, 0, 0, 0, 0, 0]), None);
    }
}
