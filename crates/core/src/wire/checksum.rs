//! The Internet checksum: full computation (RFC 1071), pseudo-header sums for IPv4 and
//! IPv6, and incremental updates (RFC 1624) for both checksum forms a TUN device hands
//! over.
//!
//! # Sums and checksums
//!
//! A *sum* (`u32`) is a ones'-complement running sum that has not been folded to 16
//! bits yet: [`sum`] of some bytes, [`pseudo_header_v4`], [`pseudo_header_v6`], or
//! [`combine`] of sums. Because 2^16 ≡ 1 (mod 2^16 − 1), a 32-bit end-around-carry
//! sum is as good as a 16-bit one, and [`combine`] never overflows. [`fold`] reduces a
//! sum to 16 bits; [`finish`] folds and complements it into the value that goes in a
//! checksum field.
//!
//! # The two checksum forms
//!
//! - [`ChecksumForm::Full`]: the field holds the finished checksum, `!fold(pseudo +
//!   header + payload)`, as on the wire. Any change to the covered bytes must be
//!   reflected with the `update_*` functions (RFC 1624 eqn. 3,
//!   `HC' = ~(~HC + ~m + m')`).
//! - [`ChecksumForm::Partial`]: the field holds `fold(pseudo)`, the folded pseudo-header
//!   sum, *not* complemented, and the rest of the checksum is still to be computed over
//!   the L4 header and payload (Linux `CHECKSUM_PARTIAL`, `virtio_net_hdr`
//!   `NEEDS_CSUM`; this is what a TUN device with offloads delivers). A change to the
//!   L4 header or payload needs no update at all; a change to the pseudo-header
//!   (addresses, protocol, length) is applied with the `update_partial_*` functions:
//!   `P' = P + ~m + m'`.
//!
//! # Zero
//!
//! For any data that is not all zeros the folded sum is never `0x0000` (ones'-complement
//! addition of a non-zero value never yields +0), so a full checksum is never `0xffff`
//! and a partial one never `0x0000`. The incremental updates keep to that: they return
//! exactly what recomputation from scratch would. UDP transmits a computed `0x0000` as
//! `0xffff` (a zero field means "no checksum" in IPv4): that mapping is the caller's
//! (see `UdpPacket`), and the update functions accept either spelling of zero.
//!
//! # Example: IPv4 to IPv6 pseudo-header, both forms
//!
//! ```
//! use std::net::{Ipv4Addr, Ipv6Addr};
//! use kracauer_core::wire::checksum::{self, ChecksumForm};
//!
//! let (c4, s4) = (Ipv4Addr::new(198, 51, 100, 2), Ipv4Addr::new(203, 0, 113, 10));
//! let c6: Ipv6Addr = "2001:db8:64::c633:6402".parse().unwrap();
//! let b6: Ipv6Addr = "2001:db8:1::2".parse().unwrap();
//! let segment = [0x9c, 0x40, 0x01, 0xbb, 0, 0, 0, 1, 0, 0, 0, 0, 0x50, 0x02, 0xff, 0xff,
//!                0, 0, 0, 0]; // a TCP header, checksum field zero
//! let data = checksum::sum(&segment);
//! let len = segment.len();
//!
//! // The sum of what changes: the addresses (the protocol and length words agree).
//! let old = checksum::combine(checksum::sum(&c4.octets()), checksum::sum(&s4.octets()));
//! let new = checksum::combine(checksum::sum(&c6.octets()), checksum::sum(&b6.octets()));
//!
//! // Full form: the field holds the finished checksum.
//! let full4 = checksum::finish(checksum::combine(
//!     checksum::pseudo_header_v4(c4, s4, 6, len as u16), data));
//! let full6 = checksum::finish(checksum::combine(
//!     checksum::pseudo_header_v6(&c6, &b6, 6, len as u32), data));
//! assert_eq!(ChecksumForm::Full.update_pseudo(full4, old, new), full6);
//! // The same, address by address, with bytes of different lengths.
//! let step = checksum::update_bytes(full4, &c4.octets(), &c6.octets());
//! assert_eq!(checksum::update_bytes(step, &s4.octets(), &b6.octets()), full6);
//!
//! // Partial form: the field holds the folded pseudo-header sum only.
//! let part4 = checksum::fold(checksum::pseudo_header_v4(c4, s4, 6, len as u16));
//! let part6 = checksum::fold(checksum::pseudo_header_v6(&c6, &b6, 6, len as u32));
//! assert_eq!(ChecksumForm::Partial.update_pseudo(part4, old, new), part6);
//! ```

use std::net::{Ipv4Addr, Ipv6Addr};

/// Which of the two checksum forms a TCP or UDP checksum field holds (see the module
/// documentation).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ChecksumForm {
    /// The finished checksum over pseudo-header, header and payload.
    Full,
    /// The folded, uncomplemented pseudo-header sum (offload still to complete it).
    Partial,
}

/// Ones'-complement sum of `data` as big-endian 16-bit words; an odd final byte is
/// padded with a zero byte on the right (RFC 1071).
///
/// The result is unfolded; see [`fold`] and [`finish`].
#[must_use]
pub fn sum(data: &[u8]) -> u32 {
    // Sum 32-bit words into a u64: 2^32 ≡ 1 (mod 2^16 − 1), so this is congruent to
    // the sum of 16-bit words, and a u64 cannot overflow for any slice that fits in
    // memory (2^32 words of 2^32 each).
    let mut acc: u64 = 0;
    let mut words = data.chunks_exact(4);
    for w in &mut words {
        acc += u64::from(u32::from_be_bytes([w[0], w[1], w[2], w[3]]));
    }
    let rest = words.remainder();
    let mut tail = [0u8; 4];
    tail[..rest.len()].copy_from_slice(rest);
    acc += u64::from(u32::from_be_bytes(tail));
    // End-around carry from 64 down to 32 bits.
    while acc >> 32 != 0 {
        acc = (acc & 0xffff_ffff) + (acc >> 32);
    }
    acc as u32
}

/// Adds two sums with end-around carry.
#[must_use]
#[inline]
pub fn combine(a: u32, b: u32) -> u32 {
    let (s, carry) = a.overflowing_add(b);
    // When carry is set, s <= 2^32 - 2, so adding it back cannot overflow.
    s + u32::from(carry)
}

/// Folds a sum to 16 bits (ones'-complement, not complemented).
#[must_use]
#[inline]
pub fn fold(sum: u32) -> u16 {
    let s = (sum & 0xffff) + (sum >> 16);
    let s = (s & 0xffff) + (s >> 16);
    s as u16
}

/// Folds and complements a sum: the value to store in a checksum field.
#[must_use]
#[inline]
pub fn finish(sum: u32) -> u16 {
    !fold(sum)
}

/// The Internet checksum of `data` (RFC 1071): `finish(sum(data))`.
///
/// A buffer whose checksum field is correct has `checksum(buffer) == 0`.
#[must_use]
pub fn checksum(data: &[u8]) -> u16 {
    finish(sum(data))
}

/// Sum of the IPv4 pseudo-header (RFC 793 §3.1, RFC 768): source, destination, zero,
/// protocol, and the L4 length.
#[must_use]
pub fn pseudo_header_v4(src: Ipv4Addr, dst: Ipv4Addr, protocol: u8, len: u16) -> u32 {
    let s = src.octets();
    let d = dst.octets();
    u32::from(u16::from_be_bytes([s[0], s[1]]))
        + u32::from(u16::from_be_bytes([s[2], s[3]]))
        + u32::from(u16::from_be_bytes([d[0], d[1]]))
        + u32::from(u16::from_be_bytes([d[2], d[3]]))
        + u32::from(protocol)
        + u32::from(len)
}

/// Sum of the IPv6 pseudo-header (RFC 8200 §8.1): source, destination, the 32-bit
/// upper-layer length, three zero bytes and the next header value.
///
/// For the same protocol and a length below 65536 the length and protocol words sum to
/// the same value as in the IPv4 pseudo-header, so translating between the two changes
/// only the address part of the sum.
#[must_use]
pub fn pseudo_header_v6(src: &Ipv6Addr, dst: &Ipv6Addr, next_header: u8, len: u32) -> u32 {
    let mut acc = combine(sum(&src.octets()), sum(&dst.octets()));
    acc = combine(acc, (len >> 16) + (len & 0xffff));
    combine(acc, u32::from(next_header))
}

/// Ones'-complement negation of a sum, as a 16-bit quantity.
#[inline]
fn negate(sum: u32) -> u32 {
    u32::from(!fold(sum))
}

/// Folds a sum known to cover non-zero data: the result is never +0 (see the module
/// documentation on zero).
#[inline]
fn fold_nonzero(sum: u32) -> u16 {
    match fold(sum) {
        0 => 0xffff,
        s => s,
    }
}

/// Full-form update for a change of covered data whose old sum was `old` and new sum is
/// `new` (RFC 1624 eqn. 3, generalised to any run of words): `~(~HC + ~old + new)`.
///
/// This is the building block for every other update, and useful when whole regions
/// change, e.g. adding the IPv6 pseudo-header to an ICMPv4 checksum that had none:
/// `update_sum(csum, 0, pseudo_header_v6(..))`.
#[must_use]
pub fn update_sum(csum: u16, old: u32, new: u32) -> u16 {
    !update_partial_sum(!csum, old, new)
}

/// Full-form update for a 16-bit word changing from `old` to `new` (RFC 1624 eqn. 3).
///
/// The word must sit at an even offset from the start of the checksummed data (every
/// 16-bit header field does).
#[must_use]
pub fn update_u16(csum: u16, old: u16, new: u16) -> u16 {
    update_sum(csum, u32::from(old), u32::from(new))
}

/// Full-form update for a 32-bit field at an even offset changing from `old` to `new`.
#[must_use]
pub fn update_u32(csum: u16, old: u32, new: u32) -> u16 {
    update_sum(csum, sum(&old.to_be_bytes()), sum(&new.to_be_bytes()))
}

/// Full-form update for bytes at an even offset changing from `old` to `new`, which may
/// differ in length: e.g. a 4-byte IPv4 address in the pseudo-header replaced by a
/// 16-byte IPv6 address. An odd length is padded with a zero byte, as in [`sum`].
#[must_use]
pub fn update_bytes(csum: u16, old: &[u8], new: &[u8]) -> u16 {
    update_sum(csum, sum(old), sum(new))
}

/// Partial-form update for a pseudo-header change of sum `old` to sum `new`:
/// `P' = P + ~old + new`, folded (see [`ChecksumForm::Partial`]).
#[must_use]
pub fn update_partial_sum(partial: u16, old: u32, new: u32) -> u16 {
    let acc = combine(combine(u32::from(partial), negate(old)), new);
    fold_nonzero(acc)
}

/// Partial-form update for a 16-bit pseudo-header word (e.g. the length).
#[must_use]
pub fn update_partial_u16(partial: u16, old: u16, new: u16) -> u16 {
    update_partial_sum(partial, u32::from(old), u32::from(new))
}

/// Partial-form update for a 32-bit pseudo-header field (e.g. an IPv4 address as `u32`,
/// or the IPv6 upper-layer length).
#[must_use]
pub fn update_partial_u32(partial: u16, old: u32, new: u32) -> u16 {
    update_partial_sum(partial, sum(&old.to_be_bytes()), sum(&new.to_be_bytes()))
}

/// Partial-form update for pseudo-header bytes changing from `old` to `new`, of equal or
/// different lengths (e.g. IPv4 address to IPv6 address).
#[must_use]
pub fn update_partial_bytes(partial: u16, old: &[u8], new: &[u8]) -> u16 {
    update_partial_sum(partial, sum(old), sum(new))
}

impl From<crate::base::RxChecksum> for ChecksumForm {
    /// The form a received packet's checksum field is in, for the rewrites that forward
    /// it: partial only when the device handed it over partial.
    fn from(rx: crate::base::RxChecksum) -> Self {
        match rx {
            crate::base::RxChecksum::Partial => Self::Partial,
            crate::base::RxChecksum::Unchecked | crate::base::RxChecksum::Valid => Self::Full,
        }
    }
}

impl ChecksumForm {
    /// Update for a change of the *pseudo-header* (addresses, protocol, length): both
    /// forms change.
    #[must_use]
    pub fn update_pseudo(self, csum: u16, old: u32, new: u32) -> u16 {
        match self {
            ChecksumForm::Full => update_sum(csum, old, new),
            ChecksumForm::Partial => update_partial_sum(csum, old, new),
        }
    }

    /// Update for a change of the L4 header or payload: only the full form changes; a
    /// partial checksum does not cover those bytes yet.
    #[must_use]
    pub fn update_data(self, csum: u16, old: u32, new: u32) -> u16 {
        match self {
            ChecksumForm::Full => update_sum(csum, old, new),
            ChecksumForm::Partial => csum,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sum_of_rfc1071_example_is_ddf2() {
        // RFC 1071 §3: bytes 00 01 f2 03 f4 f5 f6 f7 sum to 0xddf2.
        let data = [0x00, 0x01, 0xf2, 0x03, 0xf4, 0xf5, 0xf6, 0xf7];
        assert_eq!(fold(sum(&data)), 0xddf2);
        assert_eq!(checksum(&data), !0xddf2);
    }

    #[test]
    fn odd_length_is_padded_on_the_right() {
        assert_eq!(fold(sum(&[0x12, 0x34, 0x56])), 0x1234 + 0x5600);
        assert_eq!(fold(sum(&[0xab])), 0xab00);
    }

    #[test]
    fn sum_of_lengths_not_multiple_of_four_matches_word_sum() {
        let data: Vec<u8> = (0..=255u8).cycle().take(1023).collect();
        for len in 0..data.len() {
            let mut expected: u32 = 0;
            for pair in data[..len].chunks(2) {
                let w = u16::from_be_bytes([pair[0], *pair.get(1).unwrap_or(&0)]);
                expected = combine(expected, u32::from(w));
            }
            assert_eq!(fold(sum(&data[..len])), fold(expected), "len {len}");
        }
    }

    #[test]
    fn ipv4_header_checksum_of_known_header_is_b861() {
        // A classic example IPv4 header (20 bytes) with checksum b861 in bytes 10..12.
        let mut h = [
            0x45, 0x00, 0x00, 0x73, 0x00, 0x00, 0x40, 0x00, 0x40, 0x11, 0x00, 0x00, 0xc0, 0xa8,
            0x00, 0x01, 0xc0, 0xa8, 0x00, 0xc7,
        ];
        assert_eq!(checksum(&h), 0xb861);
        h[10..12].copy_from_slice(&0xb861u16.to_be_bytes());
        assert_eq!(checksum(&h), 0);
    }

    #[test]
    fn combine_carries_around_the_top() {
        assert_eq!(combine(0xffff_ffff, 1), 1);
        assert_eq!(combine(0xffff_ffff, 0xffff_ffff), 0xffff_ffff);
        assert_eq!(fold(0xffff_ffff), 0xffff);
        assert_eq!(fold(0x0001_fffe), 0xffff);
    }

    #[test]
    fn update_u16_matches_rfc1624_section4_example() {
        // RFC 1624 §4: HC = 0xdd2f, m = 0x5555 -> m' = 0x3285, HC' = 0x0000.
        assert_eq!(update_u16(0xdd2f, 0x5555, 0x3285), 0x0000);
    }

    #[test]
    fn update_u16_equals_recomputation() {
        let mut data = [0x45u8, 0x00, 0x12, 0x34, 0xab, 0xcd, 0x00, 0x00, 0x99, 0x01];
        let before = checksum(&data);
        data[4..6].copy_from_slice(&0x0102u16.to_be_bytes());
        assert_eq!(update_u16(before, 0xabcd, 0x0102), checksum(&data));
    }

    #[test]
    fn update_bytes_v4_to_v6_address_equals_recomputation() {
        let v4 = Ipv4Addr::new(198, 51, 100, 2);
        let v6: Ipv6Addr = "2001:db8:64::c633:6402".parse().unwrap();
        let peer: Ipv6Addr = "2001:db8:1::2".parse().unwrap();
        let peer4 = Ipv4Addr::new(203, 0, 113, 10);
        let seg = [
            0x01u8, 0xbb, 0xc0, 0x00, 0, 0, 0, 1, 0, 0, 0, 0, 0x50, 0x02, 0xff, 0xff,
        ];
        let full4 = finish(combine(pseudo_header_v4(v4, peer4, 6, 16), sum(&seg)));
        let full6 = finish(combine(pseudo_header_v6(&v6, &peer, 6, 16), sum(&seg)));
        let step = update_bytes(full4, &v4.octets(), &v6.octets());
        let step = update_bytes(step, &peer4.octets(), &peer.octets());
        assert_eq!(step, full6);

        let part4 = fold(pseudo_header_v4(v4, peer4, 6, 16));
        let part6 = fold(pseudo_header_v6(&v6, &peer, 6, 16));
        let step = update_partial_bytes(part4, &v4.octets(), &v6.octets());
        let step = update_partial_bytes(step, &peer4.octets(), &peer.octets());
        assert_eq!(step, part6);
    }

    #[test]
    fn update_yielding_zero_checksum_matches_recomputation() {
        // Data whose checksum becomes 0x0000 after the edit: sum folds to 0xffff.
        let before = [0x12u8, 0x34, 0x00, 0x00];
        let after = [0x12u8, 0x34, 0xed, 0xcb]; // 0x1234 + 0xedcb = 0xffff
        assert_eq!(checksum(&after), 0x0000);
        assert_eq!(update_u16(checksum(&before), 0x0000, 0xedcb), 0x0000);
        // And back again.
        assert_eq!(update_u16(0x0000, 0xedcb, 0x0000), checksum(&before));
    }

    #[test]
    fn update_accepts_udp_spelling_of_zero() {
        // UDP sends a computed 0x0000 as 0xffff; updating from either gives the same.
        let after = [0x12u8, 0x34, 0x00, 0x01];
        let want = checksum(&after);
        assert_eq!(update_u16(0x0000, 0xedcb, 0x0001), want);
        assert_eq!(update_u16(0xffff, 0xedcb, 0x0001), want);
    }

    #[test]
    fn ipv6_pseudo_header_length_words_match_ipv4_below_64k() {
        let a4 = Ipv4Addr::new(0, 0, 0, 0);
        let a6 = Ipv6Addr::UNSPECIFIED;
        assert_eq!(
            fold(pseudo_header_v4(a4, a4, 17, 1234)),
            fold(pseudo_header_v6(&a6, &a6, 17, 1234))
        );
        // Above 64 KiB the high word counts too.
        assert_eq!(fold(pseudo_header_v6(&a6, &a6, 0, 0x0001_0002)), 3);
    }

    #[test]
    fn checksum_form_partial_ignores_data_changes() {
        assert_eq!(ChecksumForm::Partial.update_data(0x1234, 1, 2), 0x1234);
        assert_eq!(
            ChecksumForm::Full.update_data(0x1234, 1, 2),
            update_sum(0x1234, 1, 2)
        );
        assert_eq!(
            ChecksumForm::Partial.update_pseudo(0x1234, 1, 2),
            update_partial_sum(0x1234, 1, 2)
        );
    }
}
