//! UDP datagram view (RFC 768): ports, length, checksum (with its zero rule), payload.

use core::ops::Range;
use std::net::{Ipv4Addr, Ipv6Addr};

use super::checksum::{self, ChecksumForm};
use super::{Result, WireError, be16, ip_proto, put16};

/// Byte ranges of the UDP header fields.
pub mod field {
    use core::ops::Range;

    /// Source port.
    pub const SRC_PORT: Range<usize> = 0..2;
    /// Destination port.
    pub const DST_PORT: Range<usize> = 2..4;
    /// Length (header and payload).
    pub const LENGTH: Range<usize> = 4..6;
    /// Checksum.
    pub const CHECKSUM: Range<usize> = 6..8;
}

/// Length of the UDP header.
pub const HEADER_LEN: usize = 8;

/// A read or read-write view of a UDP datagram.
///
/// The checksum covers the datagram as given by its length field. A computed checksum
/// of `0x0000` is sent as `0xffff`; a `0x0000` field means "no checksum" (allowed in
/// IPv4 only, RFC 768 / RFC 8200 §8.1).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct UdpPacket<T: AsRef<[u8]>> {
    buffer: T,
}

impl<T: AsRef<[u8]>> UdpPacket<T> {
    /// Wraps a buffer without validation (see the module documentation of `wire`).
    pub const fn new_unchecked(buffer: T) -> Self {
        UdpPacket { buffer }
    }

    /// Validates `buffer` as a UDP datagram: at least 8 bytes and 8 ≤ length field ≤
    /// buffer length. Bytes past the length field are ignored.
    pub fn new_checked(buffer: T) -> Result<Self> {
        let p = Self::new_checked_header(buffer)?;
        let len = usize::from(p.len());
        if len < HEADER_LEN || len > p.buffer.as_ref().len() {
            return Err(WireError::BadLength);
        }
        Ok(p)
    }

    /// Validates only that the 8-byte header is present: for the first fragment of a
    /// fragmented datagram and for the datagram quoted by an ICMP error, where the
    /// length field describes more bytes than are there.
    pub fn new_checked_header(buffer: T) -> Result<Self> {
        if buffer.as_ref().len() < HEADER_LEN {
            return Err(WireError::Truncated);
        }
        Ok(UdpPacket { buffer })
    }

    /// The underlying buffer.
    pub fn into_inner(self) -> T {
        self.buffer
    }

    /// The whole underlying buffer.
    pub fn as_bytes(&self) -> &[u8] {
        self.buffer.as_ref()
    }

    /// Source port.
    pub fn src_port(&self) -> u16 {
        be16(self.buffer.as_ref(), field::SRC_PORT.start)
    }

    /// Destination port.
    pub fn dst_port(&self) -> u16 {
        be16(self.buffer.as_ref(), field::DST_PORT.start)
    }

    /// Length field (header and payload).
    pub fn len(&self) -> u16 {
        be16(self.buffer.as_ref(), field::LENGTH.start)
    }

    /// Whether the length field says there is no payload.
    pub fn is_empty(&self) -> bool {
        usize::from(self.len()) <= HEADER_LEN
    }

    /// Checksum field.
    pub fn checksum(&self) -> u16 {
        be16(self.buffer.as_ref(), field::CHECKSUM.start)
    }

    /// Byte range of the datagram as given by the length field, clamped to the buffer.
    pub fn datagram_range(&self) -> Range<usize> {
        let len = self.buffer.as_ref().len();
        0..usize::from(self.len())
            .clamp(HEADER_LEN, len.max(HEADER_LEN))
            .min(len)
    }

    /// Byte range of the payload, bounded by the length field and clamped to the buffer.
    pub fn payload_range(&self) -> Range<usize> {
        let end = self.datagram_range().end;
        HEADER_LEN.min(end)..end
    }

    /// The payload.
    pub fn payload(&self) -> &[u8] {
        let r = self.payload_range();
        &self.buffer.as_ref()[r]
    }

    fn data_sum(&self) -> u32 {
        let b = &self.buffer.as_ref()[self.datagram_range()];
        let head = b.get(..field::CHECKSUM.start).unwrap_or(b);
        let tail = b.get(field::CHECKSUM.end..).unwrap_or(&[]);
        checksum::combine(checksum::sum(head), checksum::sum(tail))
    }

    fn finish(sum: u32) -> u16 {
        match checksum::finish(sum) {
            0 => 0xffff,
            c => c,
        }
    }

    /// The checksum this datagram should carry between `src` and `dst` (IPv4), never 0.
    pub fn compute_checksum_v4(&self, src: Ipv4Addr, dst: Ipv4Addr) -> u16 {
        let ph = checksum::pseudo_header_v4(src, dst, ip_proto::UDP, self.len());
        Self::finish(checksum::combine(ph, self.data_sum()))
    }

    /// The checksum this datagram should carry between `src` and `dst` (IPv6), never 0.
    pub fn compute_checksum_v6(&self, src: &Ipv6Addr, dst: &Ipv6Addr) -> u16 {
        let ph = checksum::pseudo_header_v6(src, dst, ip_proto::UDP, u32::from(self.len()));
        Self::finish(checksum::combine(ph, self.data_sum()))
    }

    /// Whether the checksum field is correct (IPv4); a zero field (no checksum) passes.
    pub fn verify_checksum_v4(&self, src: Ipv4Addr, dst: Ipv4Addr) -> bool {
        self.checksum() == 0 || self.compute_checksum_v4(src, dst) == self.checksum()
    }

    /// Whether the checksum field is correct (IPv6); zero is not allowed in IPv6.
    pub fn verify_checksum_v6(&self, src: &Ipv6Addr, dst: &Ipv6Addr) -> bool {
        self.compute_checksum_v6(src, dst) == self.checksum()
    }
}

impl<T: AsRef<[u8]> + AsMut<[u8]>> UdpPacket<T> {
    /// Mutable access to the whole buffer.
    pub fn as_bytes_mut(&mut self) -> &mut [u8] {
        self.buffer.as_mut()
    }

    /// Sets the source port.
    pub fn set_src_port(&mut self, port: u16) {
        put16(self.buffer.as_mut(), field::SRC_PORT.start, port);
    }

    /// Sets the destination port.
    pub fn set_dst_port(&mut self, port: u16) {
        put16(self.buffer.as_mut(), field::DST_PORT.start, port);
    }

    /// Sets the length field.
    pub fn set_len(&mut self, len: u16) {
        put16(self.buffer.as_mut(), field::LENGTH.start, len);
    }

    /// Sets the checksum field.
    pub fn set_checksum(&mut self, csum: u16) {
        put16(self.buffer.as_mut(), field::CHECKSUM.start, csum);
    }

    /// Mutable payload.
    pub fn payload_mut(&mut self) -> &mut [u8] {
        let r = self.payload_range();
        &mut self.buffer.as_mut()[r]
    }

    /// Computes and stores the checksum (IPv4 pseudo-header).
    pub fn fill_checksum_v4(&mut self, src: Ipv4Addr, dst: Ipv4Addr) {
        let c = self.compute_checksum_v4(src, dst);
        self.set_checksum(c);
    }

    /// Computes and stores the checksum (IPv6 pseudo-header).
    pub fn fill_checksum_v6(&mut self, src: &Ipv6Addr, dst: &Ipv6Addr) {
        let c = self.compute_checksum_v6(src, dst);
        self.set_checksum(c);
    }

    /// Applies a pseudo-header change (sums `old` → `new`, e.g. from
    /// [`checksum::sum`] of old and new addresses) to the checksum field in `form`.
    /// A zero full-form field (no checksum, IPv4) is left at zero: the caller decides
    /// whether to compute one (IPv6 requires it). A full result of 0 is stored as
    /// `0xffff`.
    pub fn update_checksum_pseudo(&mut self, form: ChecksumForm, old: u32, new: u32) {
        let c = self.checksum();
        if form == ChecksumForm::Full && c == 0 {
            return;
        }
        let c = match form.update_pseudo(c, old, new) {
            0 if form == ChecksumForm::Full => 0xffff,
            c => c,
        };
        self.set_checksum(c);
    }

    /// Sets a port (`dst` chooses which) and updates the checksum field for `form`,
    /// keeping a zero (absent) full checksum at zero.
    pub fn rewrite_port(&mut self, dst: bool, port: u16, form: ChecksumForm) {
        let (old, at) = if dst {
            (self.dst_port(), field::DST_PORT.start)
        } else {
            (self.src_port(), field::SRC_PORT.start)
        };
        put16(self.buffer.as_mut(), at, port);
        let c = self.checksum();
        if form == ChecksumForm::Full && c != 0 {
            let c = match checksum::update_u16(c, old, port) {
                0 => 0xffff,
                c => c,
            };
            self.set_checksum(c);
        }
    }
}

#[cfg(test)]
#[path = "udp_tests.rs"]
mod tests;
