//! IPv6 header view (RFC 8200), the extension-header walk (Hop-by-Hop, Routing,
//! Fragment, Destination Options) to the upper-layer header, and a Fragment header view.

use core::ops::Range;
use std::net::Ipv6Addr;

use super::{Result, WireError, array, be16, be32, byte, ip_proto, put_bytes, put8, put16, put32};

/// Byte ranges and offsets of the fixed IPv6 header fields.
pub mod field {
    use core::ops::Range;

    /// Version (4 bits), traffic class (8 bits), flow label (20 bits).
    pub const VER_TC_FLOW: Range<usize> = 0..4;
    /// Payload length.
    pub const LENGTH: Range<usize> = 4..6;
    /// Next header.
    pub const NXT_HDR: usize = 6;
    /// Hop limit.
    pub const HOP_LIMIT: usize = 7;
    /// Source address.
    pub const SRC_ADDR: Range<usize> = 8..24;
    /// Destination address.
    pub const DST_ADDR: Range<usize> = 24..40;
}

/// Length of the fixed IPv6 header.
pub const HEADER_LEN: usize = 40;
/// The most extension headers [`Ipv6Packet::upper_layer`] walks before giving up.
pub const MAX_EXT_HEADERS: usize = 8;

/// A read or read-write view of an IPv6 packet.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Ipv6Packet<T: AsRef<[u8]>> {
    buffer: T,
}

impl<T: AsRef<[u8]>> Ipv6Packet<T> {
    /// Wraps a buffer without validation (see the module documentation of `wire`).
    pub const fn new_unchecked(buffer: T) -> Self {
        Ipv6Packet { buffer }
    }

    /// Validates `buffer` as a complete IPv6 packet: at least 40 bytes, version 6, and
    /// 40 + payload length ≤ buffer length (trailing bytes are ignored). Jumbograms
    /// (payload length 0 with a Jumbo option) are not supported: the payload is empty.
    pub fn new_checked(buffer: T) -> Result<Self> {
        let p = Self::new_checked_header(buffer)?;
        if p.total_len() > p.buffer.as_ref().len() {
            return Err(WireError::BadPayloadLen);
        }
        Ok(p)
    }

    /// Validates only the fixed header (40 bytes, version 6); the payload may be cut
    /// short, as in the packet quoted by an ICMPv6 error.
    pub fn new_checked_header(buffer: T) -> Result<Self> {
        let b = buffer.as_ref();
        if b.len() < HEADER_LEN {
            return Err(WireError::Truncated);
        }
        if b[0] >> 4 != 6 {
            return Err(WireError::BadVersion);
        }
        Ok(Ipv6Packet { buffer })
    }

    /// The underlying buffer.
    pub fn into_inner(self) -> T {
        self.buffer
    }

    /// The whole underlying buffer.
    pub fn as_bytes(&self) -> &[u8] {
        self.buffer.as_ref()
    }

    /// Version field (6 on a checked view).
    pub fn version(&self) -> u8 {
        byte(self.buffer.as_ref(), 0) >> 4
    }

    /// Traffic class (DSCP and ECN).
    pub fn traffic_class(&self) -> u8 {
        ((be16(self.buffer.as_ref(), 0) >> 4) & 0xff) as u8
    }

    /// Flow label (20 bits).
    pub fn flow_label(&self) -> u32 {
        be32(self.buffer.as_ref(), 0) & 0x000f_ffff
    }

    /// Payload length (everything after the fixed header, extension headers included).
    pub fn payload_len(&self) -> u16 {
        be16(self.buffer.as_ref(), field::LENGTH.start)
    }

    /// Fixed header plus payload length.
    pub fn total_len(&self) -> usize {
        HEADER_LEN + usize::from(self.payload_len())
    }

    /// Next header of the fixed header.
    pub fn next_header(&self) -> u8 {
        byte(self.buffer.as_ref(), field::NXT_HDR)
    }

    /// Hop limit.
    pub fn hop_limit(&self) -> u8 {
        byte(self.buffer.as_ref(), field::HOP_LIMIT)
    }

    /// Source address.
    pub fn src_addr(&self) -> Ipv6Addr {
        Ipv6Addr::from(array::<16>(self.buffer.as_ref(), field::SRC_ADDR.start))
    }

    /// Destination address.
    pub fn dst_addr(&self) -> Ipv6Addr {
        Ipv6Addr::from(array::<16>(self.buffer.as_ref(), field::DST_ADDR.start))
    }

    /// Byte range of the payload (after the fixed header), bounded by the payload length
    /// and clamped to the buffer.
    pub fn payload_range(&self) -> Range<usize> {
        let len = self.buffer.as_ref().len();
        HEADER_LEN.min(len)..self.total_len().min(len)
    }

    /// The payload (extension headers and upper layer), bounded by the payload length.
    pub fn payload(&self) -> &[u8] {
        let r = self.payload_range();
        &self.buffer.as_ref()[r]
    }

    /// Iterator over the extension headers that follow the fixed header (see
    /// [`ExtHeaders`]).
    pub fn ext_headers(&self) -> ExtHeaders<'_> {
        ExtHeaders::new(
            self.buffer.as_ref(),
            self.payload_range().end,
            self.next_header(),
        )
    }

    /// Walks the extension headers to the upper layer.
    ///
    /// Hop-by-Hop (first only), Routing, Fragment and Destination Options headers are
    /// skipped; any other next-header value is the upper layer (including No Next
    /// Header, AH and ESP). The walk stops at a non-first fragment's Fragment header:
    /// its data is not an upper-layer header, and `fragment.offset != 0` says so.
    /// Errors: a header running past the payload, or the chain not reaching an
    /// upper-layer header within the payload ([`WireError::ExtHeaderOverrun`]); more
    /// than [`MAX_EXT_HEADERS`] headers; Hop-by-Hop not first.
    pub fn upper_layer(&self) -> Result<UpperLayer> {
        let mut walk = self.ext_headers();
        let mut fragment = None;
        for h in &mut walk {
            let h = h?;
            if h.kind == ip_proto::IPV6_FRAG {
                let b = self.buffer.as_ref();
                let word = be16(b, h.offset + 2);
                let info = FragmentInfo {
                    header_offset: h.offset,
                    offset: word >> 3,
                    more: word & 1 != 0,
                    ident: be32(b, h.offset + 4),
                };
                fragment = Some(info);
                if info.offset != 0 {
                    return Ok(UpperLayer {
                        protocol: h.next_header,
                        offset: h.offset + h.len,
                        fragment,
                    });
                }
            }
        }
        Ok(UpperLayer {
            protocol: walk.next_header,
            offset: walk.pos,
            fragment,
        })
    }
}

impl<T: AsRef<[u8]>> Ipv6Packet<T> {
    /// The first Routing header's Segments Left, with the offset of that byte from the
    /// start of the IPv6 header (what a Parameter Problem pointer names), or `None`
    /// without a Routing header. RFC 7915 §5.1 refuses to translate a packet whose
    /// Segments Left is not zero.
    pub fn routing_segments_left(&self) -> Result<Option<(usize, u8)>> {
        for h in self.ext_headers() {
            let h = h?;
            if h.kind == ip_proto::IPV6_ROUTE {
                let at = h.offset + 3;
                return Ok(Some((at, byte(self.buffer.as_ref(), at))));
            }
        }
        Ok(None)
    }
}

impl<T: AsRef<[u8]> + AsMut<[u8]>> Ipv6Packet<T> {
    /// Sets the version nibble.
    pub fn set_version(&mut self, v: u8) {
        let b = self.buffer.as_mut();
        let old = byte(b, 0);
        put8(b, 0, (old & 0x0f) | (v << 4));
    }

    /// Sets the traffic class.
    pub fn set_traffic_class(&mut self, tc: u8) {
        let b = self.buffer.as_mut();
        let old = be16(b, 0);
        put16(b, 0, (old & 0xf00f) | (u16::from(tc) << 4));
    }

    /// Sets the flow label (20 bits; higher bits are dropped).
    pub fn set_flow_label(&mut self, label: u32) {
        let b = self.buffer.as_mut();
        let old = be32(b, 0);
        put32(b, 0, (old & 0xfff0_0000) | (label & 0x000f_ffff));
    }

    /// Sets the payload length.
    pub fn set_payload_len(&mut self, len: u16) {
        put16(self.buffer.as_mut(), field::LENGTH.start, len);
    }

    /// Sets the next header of the fixed header.
    pub fn set_next_header(&mut self, nh: u8) {
        put8(self.buffer.as_mut(), field::NXT_HDR, nh);
    }

    /// Sets the hop limit.
    pub fn set_hop_limit(&mut self, hl: u8) {
        put8(self.buffer.as_mut(), field::HOP_LIMIT, hl);
    }

    /// Sets the source address.
    pub fn set_src_addr(&mut self, addr: &Ipv6Addr) {
        put_bytes(self.buffer.as_mut(), field::SRC_ADDR.start, &addr.octets());
    }

    /// Sets the destination address.
    pub fn set_dst_addr(&mut self, addr: &Ipv6Addr) {
        put_bytes(self.buffer.as_mut(), field::DST_ADDR.start, &addr.octets());
    }

    /// Mutable payload bytes.
    pub fn payload_mut(&mut self) -> &mut [u8] {
        let r = self.payload_range();
        &mut self.buffer.as_mut()[r]
    }

    /// Mutable access to the whole buffer.
    pub fn as_bytes_mut(&mut self) -> &mut [u8] {
        self.buffer.as_mut()
    }
}

/// Where the upper-layer header starts, as found by [`Ipv6Packet::upper_layer`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct UpperLayer {
    /// Upper-layer protocol (the last Next Header value of the chain).
    pub protocol: u8,
    /// Offset of the upper-layer header from the start of the IPv6 header. It may equal
    /// the end of the payload (e.g. No Next Header, or an empty payload).
    pub offset: usize,
    /// The Fragment header's contents, if the chain has one.
    pub fragment: Option<FragmentInfo>,
}

/// What a Fragment header says.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FragmentInfo {
    /// Offset of the Fragment header from the start of the IPv6 header.
    pub header_offset: usize,
    /// Fragment offset in 8-byte units.
    pub offset: u16,
    /// More Fragments flag.
    pub more: bool,
    /// Identification.
    pub ident: u32,
}

/// One extension header found by [`ExtHeaders`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ExtHeader {
    /// The header type (the Next Header value that announced it).
    pub kind: u8,
    /// Offset of the header from the start of the IPv6 header.
    pub offset: usize,
    /// Length of the header in bytes.
    pub len: usize,
    /// The Next Header value inside this header.
    pub next_header: u8,
}

/// Whether `nh` is an extension header that [`ExtHeaders`] walks over.
pub fn is_walked_ext_header(nh: u8) -> bool {
    matches!(
        nh,
        ip_proto::HOPOPT | ip_proto::IPV6_ROUTE | ip_proto::IPV6_FRAG | ip_proto::IPV6_OPTS
    )
}

/// Iterator over the Hop-by-Hop, Routing, Fragment and Destination Options headers that
/// follow an IPv6 fixed header. Yields each header, then stops at the first other
/// Next Header value; [`ExtHeaders::upper`] gives that value and offset. An error ends
/// the walk.
#[derive(Debug, Clone)]
pub struct ExtHeaders<'a> {
    bytes: &'a [u8],
    end: usize,
    pos: usize,
    next_header: u8,
    count: usize,
    done: bool,
}

impl<'a> ExtHeaders<'a> {
    /// Walks `bytes` (starting with the fixed header) up to `end`, starting with the
    /// fixed header's next-header value `first`.
    pub fn new(bytes: &'a [u8], end: usize, first: u8) -> Self {
        ExtHeaders {
            bytes,
            end: end.min(bytes.len()),
            pos: HEADER_LEN,
            next_header: first,
            count: 0,
            done: false,
        }
    }

    /// The next-header value and offset where the walk stopped (or currently is).
    pub fn upper(&self) -> (u8, usize) {
        (self.next_header, self.pos)
    }
}

impl Iterator for ExtHeaders<'_> {
    type Item = Result<ExtHeader>;

    fn next(&mut self) -> Option<Self::Item> {
        if self.done || !is_walked_ext_header(self.next_header) {
            self.done = true;
            return None;
        }
        self.done = true; // until proven otherwise
        if self.next_header == ip_proto::HOPOPT && self.count != 0 {
            return Some(Err(WireError::HopByHopNotFirst));
        }
        if self.count >= MAX_EXT_HEADERS {
            return Some(Err(WireError::TooManyExtHeaders));
        }
        // Every walked header is at least 8 bytes and starts with Next Header and
        // (except Fragment) Hdr Ext Len in 8-byte units not counting the first 8.
        let Some(head) = self
            .bytes
            .get(self.pos..self.pos + 2)
            .filter(|_| self.pos + 8 <= self.end)
        else {
            return Some(Err(WireError::ExtHeaderOverrun));
        };
        let (nh, ext_len) = (head[0], head[1]);
        let len = if self.next_header == ip_proto::IPV6_FRAG {
            8
        } else {
            (usize::from(ext_len) + 1) * 8
        };
        if self.pos + len > self.end {
            return Some(Err(WireError::ExtHeaderOverrun));
        }
        let h = ExtHeader {
            kind: self.next_header,
            offset: self.pos,
            len,
            next_header: nh,
        };
        self.pos += len;
        self.next_header = nh;
        self.count += 1;
        self.done = false;
        Some(Ok(h))
    }
}

/// Byte ranges of the IPv6 Fragment header (RFC 8200 §4.5), relative to its start.
pub mod frag_field {
    use core::ops::Range;

    /// Next header.
    pub const NXT_HDR: usize = 0;
    /// Reserved.
    pub const RESERVED: usize = 1;
    /// Fragment offset (13 bits, in 8-byte units), two reserved bits, M flag.
    pub const OFF_M: Range<usize> = 2..4;
    /// Identification.
    pub const IDENT: Range<usize> = 4..8;
}

/// Length of an IPv6 Fragment header.
pub const FRAG_HEADER_LEN: usize = 8;

/// A view of an IPv6 Fragment header (8 bytes).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Ipv6FragHeader<T: AsRef<[u8]>> {
    buffer: T,
}

impl<T: AsRef<[u8]>> Ipv6FragHeader<T> {
    /// Wraps a buffer without validation (see the module documentation of `wire`).
    pub const fn new_unchecked(buffer: T) -> Self {
        Ipv6FragHeader { buffer }
    }

    /// The underlying buffer.
    pub fn into_inner(self) -> T {
        self.buffer
    }

    /// Validates that `buffer` holds at least the 8 bytes of a Fragment header.
    pub fn new_checked(buffer: T) -> Result<Self> {
        if buffer.as_ref().len() < FRAG_HEADER_LEN {
            return Err(WireError::Truncated);
        }
        Ok(Ipv6FragHeader { buffer })
    }

    /// Next header.
    pub fn next_header(&self) -> u8 {
        byte(self.buffer.as_ref(), frag_field::NXT_HDR)
    }

    /// Fragment offset in 8-byte units.
    pub fn frag_offset(&self) -> u16 {
        be16(self.buffer.as_ref(), frag_field::OFF_M.start) >> 3
    }

    /// More Fragments flag.
    pub fn more_frags(&self) -> bool {
        be16(self.buffer.as_ref(), frag_field::OFF_M.start) & 1 != 0
    }

    /// Identification.
    pub fn ident(&self) -> u32 {
        be32(self.buffer.as_ref(), frag_field::IDENT.start)
    }
}

impl<T: AsRef<[u8]> + AsMut<[u8]>> Ipv6FragHeader<T> {
    /// Sets the next header.
    pub fn set_next_header(&mut self, nh: u8) {
        put8(self.buffer.as_mut(), frag_field::NXT_HDR, nh);
    }

    /// Writes offset (8-byte units, 13 bits) and M flag; clears both reserved fields.
    pub fn set_frag_offset_and_more(&mut self, offset: u16, more: bool) {
        let b = self.buffer.as_mut();
        put8(b, frag_field::RESERVED, 0);
        put16(b, frag_field::OFF_M.start, (offset << 3) | u16::from(more));
    }

    /// Sets the identification.
    pub fn set_ident(&mut self, ident: u32) {
        put32(self.buffer.as_mut(), frag_field::IDENT.start, ident);
    }
}

#[cfg(test)]
#[path = "ipv6_tests.rs"]
mod tests;
