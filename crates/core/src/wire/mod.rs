//! Zero-copy views over IPv4, IPv6, TCP, UDP, ICMPv4 and ICMPv6 headers, and checksums.
//!
//! Every view follows the same pattern (the smoltcp manner):
//!
//! - `new_checked(buffer)` validates untrusted bytes once and returns a [`WireError`]
//!   naming what is wrong. After it succeeds, every getter is in bounds and cannot
//!   panic. Getters whose range depends on a length field (payload, options) are also
//!   clamped to the buffer, so they stay panic-free even after a setter changed that
//!   length field.
//! - `new_unchecked(buffer)` skips validation: use it on bytes you are about to fill.
//!   Even then nothing panics: every getter reads through a bounds check and returns 0
//!   for bytes that are missing, every setter drops writes that would fall outside the
//!   buffer, and every range is clamped. (The fuzz target checks this on arbitrary
//!   bytes.) Values read that way are meaningless, of course; validation is what makes
//!   them meaningful.
//! - Setters exist when the buffer is mutable (`T: AsRef<[u8]> + AsMut<[u8]>`). They
//!   write one field and never touch checksums, except the `rewrite_*` methods, which
//!   say in their name and documentation that they update the checksum incrementally.
//! - Byte ranges of the fixed fields are public in each module's `field` module, for
//!   callers that must reach into a header too short to be checked (an ICMP error
//!   quotes only the first 8 bytes of a TCP header).
//!
//! A view's buffer is the unit it describes: an IPv4 or IPv6 view may be given a buffer
//! longer than its total length (trailing bytes are ignored); a TCP, UDP or ICMP view's
//! buffer is exactly the segment or message, because its checksum covers all of it.
//!
//! Nothing here allocates.

pub mod build;
pub mod checksum;
pub mod icmpv4;
pub mod icmpv6;
pub mod ipv4;
pub mod ipv6;
pub mod tcp;
pub mod udp;

#[cfg(test)]
mod testdata;

pub use checksum::ChecksumForm;
pub use icmpv4::Icmpv4Packet;
pub use icmpv6::Icmpv6Packet;
pub use ipv4::Ipv4Packet;
pub use ipv6::{FragmentInfo, Ipv6Packet, UpperLayer};
pub use tcp::{SeqNumber, TcpOption, TcpPacket};
pub use udp::UdpPacket;

/// Why bytes were refused as a header, or why an operation on a header failed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, thiserror::Error)]
pub enum WireError {
    /// The buffer ends before the fixed part of the header does.
    #[error("buffer too short for the header")]
    Truncated,
    /// The IP version nibble is not the one this view parses.
    #[error("wrong IP version")]
    BadVersion,
    /// IPv4 IHL below 5 (a header length past the buffer is [`WireError::Truncated`]).
    #[error("bad IPv4 header length")]
    BadHeaderLen,
    /// IPv4 total length below the header length or past the end of the buffer.
    #[error("bad IPv4 total length")]
    BadTotalLen,
    /// IPv6 payload length past the end of the buffer.
    #[error("bad IPv6 payload length")]
    BadPayloadLen,
    /// TCP data offset below 5, or past the end of the segment.
    #[error("bad TCP data offset")]
    BadDataOffset,
    /// UDP length below 8 or past the end of the buffer.
    #[error("bad UDP length")]
    BadLength,
    /// A TCP or IPv4 option's kind or length byte runs past the end of the options area.
    #[error("option runs past the end of the header")]
    OptionOverrun,
    /// A TCP or IPv4 option declares a length below 2.
    #[error("option length below 2")]
    BadOptionLen,
    /// The byte offset given does not hold the option the operation expects.
    #[error("no such option at this offset")]
    NoSuchOption,
    /// An IPv6 extension header runs past the end of the payload, or the chain of
    /// extension headers does not reach an upper-layer header within the payload.
    #[error("IPv6 extension header runs past the payload")]
    ExtHeaderOverrun,
    /// More IPv6 extension headers than [`ipv6::MAX_EXT_HEADERS`].
    #[error("too many IPv6 extension headers")]
    TooManyExtHeaders,
    /// A Hop-by-Hop Options header anywhere but first (RFC 8200 §4.3).
    #[error("hop-by-hop options header not first")]
    HopByHopNotFirst,
    /// An output buffer is too small for what is being written into it.
    #[error("output buffer too small")]
    BufferTooSmall,
    /// A value does not fit the field it is written into.
    #[error("value does not fit the field")]
    ValueOutOfRange,
}

/// Result alias for this module.
pub type Result<T> = core::result::Result<T, WireError>;

/// IP protocol numbers (IPv4 Protocol, IPv6 Next Header) used by the views.
pub mod ip_proto {
    /// IPv6 Hop-by-Hop Options.
    pub const HOPOPT: u8 = 0;
    /// ICMP for IPv4.
    pub const ICMP: u8 = 1;
    /// TCP.
    pub const TCP: u8 = 6;
    /// UDP.
    pub const UDP: u8 = 17;
    /// IPv6 Routing header.
    pub const IPV6_ROUTE: u8 = 43;
    /// IPv6 Fragment header.
    pub const IPV6_FRAG: u8 = 44;
    /// Encapsulating Security Payload.
    pub const ESP: u8 = 50;
    /// Authentication Header.
    pub const AH: u8 = 51;
    /// ICMP for IPv6.
    pub const ICMPV6: u8 = 58;
    /// IPv6 No Next Header.
    pub const IPV6_NONXT: u8 = 59;
    /// IPv6 Destination Options.
    pub const IPV6_OPTS: u8 = 60;
}

/// Offset of the checksum field within the upper-layer header of `protocol` (TCP, UDP,
/// ICMP, ICMPv6), or `None` for other protocols.
pub fn l4_checksum_offset(protocol: u8) -> Option<usize> {
    match protocol {
        ip_proto::TCP => Some(tcp::field::CHECKSUM.start),
        ip_proto::UDP => Some(udp::field::CHECKSUM.start),
        ip_proto::ICMP => Some(icmpv4::field::CHECKSUM.start),
        ip_proto::ICMPV6 => Some(icmpv6::field::CHECKSUM.start),
        _ => None,
    }
}

/// Reads a big-endian `u16` at `at`, or 0 if it is out of bounds.
///
/// Used by getters on checked views, where the bounds always hold: the fallback only
/// exists so that no getter contains a panic path.
#[inline]
pub(crate) fn be16(b: &[u8], at: usize) -> u16 {
    match b.get(at..at.saturating_add(2)) {
        Some(&[x, y]) => u16::from_be_bytes([x, y]),
        _ => 0,
    }
}

/// Reads a big-endian `u32` at `at`, or 0 if it is out of bounds (see [`be16`]).
#[inline]
pub(crate) fn be32(b: &[u8], at: usize) -> u32 {
    match b.get(at..at.saturating_add(4)) {
        Some(&[w, x, y, z]) => u32::from_be_bytes([w, x, y, z]),
        _ => 0,
    }
}

/// Reads a big-endian `u16` at `at`, if the bytes are there (for callers that must tell
/// a missing field from a zero one).
#[inline]
pub(crate) fn get16(b: &[u8], at: usize) -> Option<u16> {
    match b.get(at..at.saturating_add(2)) {
        Some(&[x, y]) => Some(u16::from_be_bytes([x, y])),
        _ => None,
    }
}

/// Reads a host-order `u16` at `at`, or 0 if it is out of bounds: the virtio-net header
/// that a TUN device puts before each packet is in the host's byte order, not the
/// network's.
#[inline]
pub(crate) fn ne16(b: &[u8], at: usize) -> u16 {
    match b.get(at..at.saturating_add(2)) {
        Some(&[x, y]) => u16::from_ne_bytes([x, y]),
        _ => 0,
    }
}

/// Reads the byte at `at`, or 0 if it is out of bounds (see [`be16`]).
#[inline]
pub(crate) fn byte(b: &[u8], at: usize) -> u8 {
    b.get(at).copied().unwrap_or(0)
}

/// Writes `v` big-endian at `at`; does nothing if out of bounds (see [`be16`]).
#[inline]
pub(crate) fn put16(b: &mut [u8], at: usize, v: u16) {
    if let Some(s) = b.get_mut(at..at.saturating_add(2)) {
        s.copy_from_slice(&v.to_be_bytes());
    }
}

/// Writes `v` big-endian at `at`; does nothing if out of bounds (see [`be16`]).
#[inline]
pub(crate) fn put32(b: &mut [u8], at: usize, v: u32) {
    if let Some(s) = b.get_mut(at..at.saturating_add(4)) {
        s.copy_from_slice(&v.to_be_bytes());
    }
}

/// Writes the byte at `at`; does nothing if out of bounds (see [`be16`]).
#[inline]
pub(crate) fn put8(b: &mut [u8], at: usize, v: u8) {
    if let Some(s) = b.get_mut(at) {
        *s = v;
    }
}

/// Copies `N` bytes starting at `at`, or zeroes if out of bounds (see [`be16`]).
#[inline]
pub(crate) fn array<const N: usize>(b: &[u8], at: usize) -> [u8; N] {
    let mut out = [0u8; N];
    if let Some(s) = b.get(at..at.saturating_add(N)) {
        out.copy_from_slice(s);
    }
    out
}

/// Copies `src` into `b` at `at`; does nothing if out of bounds (see [`be16`]).
#[inline]
pub(crate) fn put_bytes(b: &mut [u8], at: usize, src: &[u8]) {
    if let Some(s) = b.get_mut(at..at.saturating_add(src.len())) {
        s.copy_from_slice(src);
    }
}
