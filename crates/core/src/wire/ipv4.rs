//! IPv4 header view (RFC 791): fixed fields, flags and fragment offset, options
//! (as bytes and as an iterator), payload bounded by the total length, header checksum.

use core::ops::Range;
use std::net::Ipv4Addr;

use super::{Result, WireError, array, be16, byte, checksum, put_bytes, put8, put16};

/// Byte ranges and offsets of the fixed IPv4 header fields.
pub mod field {
    use core::ops::Range;

    /// Version (high nibble) and IHL (low nibble).
    pub const VER_IHL: usize = 0;
    /// DSCP (high 6 bits) and ECN (low 2 bits).
    pub const DSCP_ECN: usize = 1;
    /// Total length.
    pub const LENGTH: Range<usize> = 2..4;
    /// Identification.
    pub const IDENT: Range<usize> = 4..6;
    /// Flags (3 high bits) and fragment offset (13 bits, in 8-byte units).
    pub const FLG_OFF: Range<usize> = 6..8;
    /// Time to live.
    pub const TTL: usize = 8;
    /// Protocol.
    pub const PROTOCOL: usize = 9;
    /// Header checksum.
    pub const CHECKSUM: Range<usize> = 10..12;
    /// Source address.
    pub const SRC_ADDR: Range<usize> = 12..16;
    /// Destination address.
    pub const DST_ADDR: Range<usize> = 16..20;
}

/// Length of an IPv4 header without options.
pub const HEADER_LEN: usize = 20;
/// Longest IPv4 header (IHL 15).
pub const MAX_HEADER_LEN: usize = 60;

const FLAG_DF: u16 = 0x4000;
const FLAG_MF: u16 = 0x2000;
const OFFSET_MASK: u16 = 0x1fff;

/// A read or read-write view of an IPv4 packet.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Ipv4Packet<T: AsRef<[u8]>> {
    buffer: T,
}

impl<T: AsRef<[u8]>> Ipv4Packet<T> {
    /// Wraps a buffer without validation (see the module documentation of `wire`).
    pub const fn new_unchecked(buffer: T) -> Self {
        Ipv4Packet { buffer }
    }

    /// Validates `buffer` as a complete IPv4 packet: at least 20 bytes, version 4,
    /// IHL ≥ 5 with the whole header in the buffer, and header length ≤ total length ≤
    /// buffer length. Bytes past the total length are allowed and ignored.
    pub fn new_checked(buffer: T) -> Result<Self> {
        let p = Self::new_checked_header(buffer)?;
        if usize::from(p.total_len()) > p.buffer.as_ref().len() {
            return Err(WireError::BadTotalLen);
        }
        Ok(p)
    }

    /// Validates `buffer` as an IPv4 header whose payload may be cut short, as in the
    /// packet quoted by an ICMP error: like [`Ipv4Packet::new_checked`] but the total
    /// length may exceed the buffer. [`Ipv4Packet::payload`] then returns what is there.
    pub fn new_checked_header(buffer: T) -> Result<Self> {
        let b = buffer.as_ref();
        if b.len() < HEADER_LEN {
            return Err(WireError::Truncated);
        }
        if b[field::VER_IHL] >> 4 != 4 {
            return Err(WireError::BadVersion);
        }
        let hl = usize::from(b[field::VER_IHL] & 0x0f) * 4;
        if hl < HEADER_LEN {
            return Err(WireError::BadHeaderLen);
        }
        if hl > b.len() {
            return Err(WireError::Truncated);
        }
        let total = usize::from(u16::from_be_bytes([b[2], b[3]]));
        if total < hl {
            return Err(WireError::BadTotalLen);
        }
        Ok(Ipv4Packet { buffer })
    }

    /// The underlying buffer.
    pub fn into_inner(self) -> T {
        self.buffer
    }

    /// The whole underlying buffer (including any bytes past the total length).
    pub fn as_bytes(&self) -> &[u8] {
        self.buffer.as_ref()
    }

    /// Version field (4 on a checked view).
    pub fn version(&self) -> u8 {
        byte(self.buffer.as_ref(), field::VER_IHL) >> 4
    }

    /// Header length in bytes (IHL × 4).
    pub fn header_len(&self) -> usize {
        usize::from(byte(self.buffer.as_ref(), field::VER_IHL) & 0x0f) * 4
    }

    /// Differentiated services code point.
    pub fn dscp(&self) -> u8 {
        byte(self.buffer.as_ref(), field::DSCP_ECN) >> 2
    }

    /// Explicit congestion notification bits.
    pub fn ecn(&self) -> u8 {
        byte(self.buffer.as_ref(), field::DSCP_ECN) & 0x03
    }

    /// The whole Type of Service / Traffic Class byte (DSCP and ECN).
    pub fn tos(&self) -> u8 {
        byte(self.buffer.as_ref(), field::DSCP_ECN)
    }

    /// Total length field (header and payload) in bytes.
    pub fn total_len(&self) -> u16 {
        be16(self.buffer.as_ref(), field::LENGTH.start)
    }

    /// Identification field.
    pub fn ident(&self) -> u16 {
        be16(self.buffer.as_ref(), field::IDENT.start)
    }

    /// Don't Fragment flag.
    pub fn dont_frag(&self) -> bool {
        be16(self.buffer.as_ref(), field::FLG_OFF.start) & FLAG_DF != 0
    }

    /// More Fragments flag.
    pub fn more_frags(&self) -> bool {
        be16(self.buffer.as_ref(), field::FLG_OFF.start) & FLAG_MF != 0
    }

    /// The reserved (evil) flag bit.
    pub fn reserved_flag(&self) -> bool {
        be16(self.buffer.as_ref(), field::FLG_OFF.start) & 0x8000 != 0
    }

    /// Fragment offset in 8-byte units.
    pub fn frag_offset(&self) -> u16 {
        be16(self.buffer.as_ref(), field::FLG_OFF.start) & OFFSET_MASK
    }

    /// Whether this packet is a fragment: More Fragments set or a non-zero offset.
    pub fn is_fragment(&self) -> bool {
        self.more_frags() || self.frag_offset() != 0
    }

    /// Time to live.
    pub fn ttl(&self) -> u8 {
        byte(self.buffer.as_ref(), field::TTL)
    }

    /// Protocol of the payload.
    pub fn protocol(&self) -> u8 {
        byte(self.buffer.as_ref(), field::PROTOCOL)
    }

    /// Header checksum field.
    pub fn checksum(&self) -> u16 {
        be16(self.buffer.as_ref(), field::CHECKSUM.start)
    }

    /// Source address.
    pub fn src_addr(&self) -> Ipv4Addr {
        Ipv4Addr::from(array::<4>(self.buffer.as_ref(), field::SRC_ADDR.start))
    }

    /// Destination address.
    pub fn dst_addr(&self) -> Ipv4Addr {
        Ipv4Addr::from(array::<4>(self.buffer.as_ref(), field::DST_ADDR.start))
    }

    /// Byte range of the header, clamped to the buffer.
    pub fn header_range(&self) -> Range<usize> {
        0..self.header_len().min(self.buffer.as_ref().len())
    }

    /// Byte range of the options (between byte 20 and the header length), clamped.
    pub fn options_range(&self) -> Range<usize> {
        let end = self.header_range().end;
        HEADER_LEN.min(end)..end
    }

    /// Byte range of the payload: from the header length to the total length, clamped
    /// to the buffer (shorter than `total_len − header_len` only on a view made with
    /// [`Ipv4Packet::new_checked_header`]).
    pub fn payload_range(&self) -> Range<usize> {
        let len = self.buffer.as_ref().len();
        let end = usize::from(self.total_len()).min(len);
        let start = self.header_len().min(end);
        start..end
    }

    /// Raw option bytes.
    pub fn options(&self) -> &[u8] {
        let r = self.options_range();
        &self.buffer.as_ref()[r]
    }

    /// Iterator over the options (see [`Ipv4Options`]).
    pub fn options_iter(&self) -> Ipv4Options<'_> {
        Ipv4Options::new(self.options())
    }

    /// Whether the options hold an unexpired source route (LSRR or SSRR), which RFC
    /// 7915 §4.1 says to drop rather than translate. Malformed options are an error.
    pub fn has_unexpired_source_route(&self) -> Result<bool> {
        for o in self.options_iter() {
            if o?.is_unexpired_source_route() {
                return Ok(true);
            }
        }
        Ok(false)
    }

    /// The header bytes.
    pub fn header(&self) -> &[u8] {
        let r = self.header_range();
        &self.buffer.as_ref()[r]
    }

    /// The payload bytes, bounded by the total length.
    pub fn payload(&self) -> &[u8] {
        let r = self.payload_range();
        &self.buffer.as_ref()[r]
    }

    /// Whether the header checksum is correct.
    pub fn verify_checksum(&self) -> bool {
        checksum::checksum(self.header()) == 0
    }
}

impl<T: AsRef<[u8]> + AsMut<[u8]>> Ipv4Packet<T> {
    /// Sets the version nibble.
    pub fn set_version(&mut self, v: u8) {
        let b = self.buffer.as_mut();
        let old = byte(b, field::VER_IHL);
        put8(b, field::VER_IHL, (old & 0x0f) | (v << 4));
    }

    /// Sets the header length in bytes (must be a multiple of 4 between 20 and 60;
    /// other values are rounded down and clamped to the 4-bit field).
    pub fn set_header_len(&mut self, len: usize) {
        let b = self.buffer.as_mut();
        let old = byte(b, field::VER_IHL);
        let ihl = (len / 4).min(15) as u8;
        put8(b, field::VER_IHL, (old & 0xf0) | ihl);
    }

    /// Sets the DSCP (6 bits).
    pub fn set_dscp(&mut self, dscp: u8) {
        let b = self.buffer.as_mut();
        let old = byte(b, field::DSCP_ECN);
        put8(b, field::DSCP_ECN, (old & 0x03) | (dscp << 2));
    }

    /// Sets the ECN bits (2 bits).
    pub fn set_ecn(&mut self, ecn: u8) {
        let b = self.buffer.as_mut();
        let old = byte(b, field::DSCP_ECN);
        put8(b, field::DSCP_ECN, (old & 0xfc) | (ecn & 0x03));
    }

    /// Sets the whole TOS byte.
    pub fn set_tos(&mut self, tos: u8) {
        put8(self.buffer.as_mut(), field::DSCP_ECN, tos);
    }

    /// Sets the total length.
    pub fn set_total_len(&mut self, len: u16) {
        put16(self.buffer.as_mut(), field::LENGTH.start, len);
    }

    /// Sets the identification.
    pub fn set_ident(&mut self, id: u16) {
        put16(self.buffer.as_mut(), field::IDENT.start, id);
    }

    fn set_flag_bits(&mut self, mask: u16, value: u16) {
        let b = self.buffer.as_mut();
        let old = be16(b, field::FLG_OFF.start);
        put16(b, field::FLG_OFF.start, (old & !mask) | (value & mask));
    }

    /// Sets the Don't Fragment flag.
    pub fn set_dont_frag(&mut self, on: bool) {
        self.set_flag_bits(FLAG_DF, if on { FLAG_DF } else { 0 });
    }

    /// Sets the More Fragments flag.
    pub fn set_more_frags(&mut self, on: bool) {
        self.set_flag_bits(FLAG_MF, if on { FLAG_MF } else { 0 });
    }

    /// Sets the fragment offset in 8-byte units (13 bits; higher bits are dropped).
    pub fn set_frag_offset(&mut self, offset: u16) {
        self.set_flag_bits(OFFSET_MASK, offset);
    }

    /// Sets the whole flags/fragment-offset word.
    pub fn set_flags_and_offset(&mut self, word: u16) {
        put16(self.buffer.as_mut(), field::FLG_OFF.start, word);
    }

    /// Sets the time to live.
    pub fn set_ttl(&mut self, ttl: u8) {
        put8(self.buffer.as_mut(), field::TTL, ttl);
    }

    /// Sets the protocol.
    pub fn set_protocol(&mut self, proto: u8) {
        put8(self.buffer.as_mut(), field::PROTOCOL, proto);
    }

    /// Sets the header checksum field.
    pub fn set_checksum(&mut self, csum: u16) {
        put16(self.buffer.as_mut(), field::CHECKSUM.start, csum);
    }

    /// Sets the source address.
    pub fn set_src_addr(&mut self, addr: Ipv4Addr) {
        put_bytes(self.buffer.as_mut(), field::SRC_ADDR.start, &addr.octets());
    }

    /// Sets the destination address.
    pub fn set_dst_addr(&mut self, addr: Ipv4Addr) {
        put_bytes(self.buffer.as_mut(), field::DST_ADDR.start, &addr.octets());
    }

    /// Computes and stores the header checksum.
    pub fn fill_checksum(&mut self) {
        self.set_checksum(0);
        let c = checksum::checksum(self.header());
        self.set_checksum(c);
    }

    /// Decrements the TTL by one and updates the header checksum incrementally.
    /// Returns the new TTL; a TTL already 0 is left alone.
    pub fn decrement_ttl(&mut self) -> u8 {
        let ttl = self.ttl();
        if ttl == 0 {
            return 0;
        }
        let proto = self.protocol();
        let old = u16::from_be_bytes([ttl, proto]);
        let new = u16::from_be_bytes([ttl - 1, proto]);
        let c = checksum::update_u16(self.checksum(), old, new);
        self.set_ttl(ttl - 1);
        self.set_checksum(c);
        ttl - 1
    }

    /// Mutable option bytes.
    pub fn options_mut(&mut self) -> &mut [u8] {
        let r = self.options_range();
        &mut self.buffer.as_mut()[r]
    }

    /// Mutable payload bytes, bounded by the total length.
    pub fn payload_mut(&mut self) -> &mut [u8] {
        let r = self.payload_range();
        &mut self.buffer.as_mut()[r]
    }

    /// Mutable access to the whole buffer.
    pub fn as_bytes_mut(&mut self) -> &mut [u8] {
        self.buffer.as_mut()
    }
}

/// IPv4 option kinds (RFC 791 and the IANA registry) the translator cares about.
pub mod option {
    /// End of option list.
    pub const EOL: u8 = 0;
    /// No operation.
    pub const NOP: u8 = 1;
    /// Loose source and record route.
    pub const LSRR: u8 = 131;
    /// Strict source and record route.
    pub const SSRR: u8 = 137;
    /// Record route.
    pub const RR: u8 = 7;
}

/// One IPv4 option other than EOL and NOP.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Ipv4Option<'a> {
    /// Offset of the option's type byte from the start of the IPv4 header.
    pub offset: usize,
    /// Option type byte (copied flag, class, number).
    pub kind: u8,
    /// Option data after the type and length bytes.
    pub data: &'a [u8],
}

impl Ipv4Option<'_> {
    /// Whether this is a source route option (LSRR or SSRR).
    pub fn is_source_route(&self) -> bool {
        self.kind == option::LSRR || self.kind == option::SSRR
    }

    /// For a source route, whether it is unexpired: the pointer (first data byte, 1-based
    /// from the type byte) has not moved past the end of the route data (RFC 7915 §4.1
    /// drops such packets).
    pub fn is_unexpired_source_route(&self) -> bool {
        if !self.is_source_route() {
            return false;
        }
        let ptr = usize::from(self.data.first().copied().unwrap_or(0));
        // Option length = data.len() + 2; pointer indexes from the type byte, 1-based.
        ptr <= self.data.len() + 2
    }
}

/// Iterator over IPv4 options. EOL ends the walk, NOP is skipped; every other option is
/// yielded with its offset. A length byte below 2 or an option running past the header
/// yields one error and ends the walk.
#[derive(Debug, Clone)]
pub struct Ipv4Options<'a> {
    bytes: &'a [u8],
    pos: usize,
    done: bool,
}

impl<'a> Ipv4Options<'a> {
    /// Walks option bytes (the part of the header after byte 20).
    pub fn new(bytes: &'a [u8]) -> Self {
        Ipv4Options {
            bytes,
            pos: 0,
            done: false,
        }
    }
}

impl<'a> Iterator for Ipv4Options<'a> {
    type Item = Result<Ipv4Option<'a>>;

    fn next(&mut self) -> Option<Self::Item> {
        loop {
            if self.done {
                return None;
            }
            let Some(&kind) = self.bytes.get(self.pos) else {
                self.done = true;
                return None;
            };
            match kind {
                option::EOL => {
                    self.done = true;
                    return None;
                }
                option::NOP => {
                    self.pos += 1;
                    continue;
                }
                _ => {}
            }
            let Some(&len) = self.bytes.get(self.pos + 1) else {
                self.done = true;
                return Some(Err(WireError::OptionOverrun));
            };
            let len = usize::from(len);
            if len < 2 {
                self.done = true;
                return Some(Err(WireError::BadOptionLen));
            }
            let Some(data) = self.bytes.get(self.pos + 2..self.pos + len) else {
                self.done = true;
                return Some(Err(WireError::OptionOverrun));
            };
            let opt = Ipv4Option {
                offset: HEADER_LEN + self.pos,
                kind,
                data,
            };
            self.pos += len;
            return Some(Ok(opt));
        }
    }
}

/// Largest translated IPv4 packet sent without DF (RFC 7915 §5.1; the translator and the offload rules share it).
pub const DF_THRESHOLD: usize = 1260;

/// RFC 7915 §5.1: DF is set on a translated IPv4 packet iff it is larger than 1260
/// bytes, so that a smaller one may still be fragmented by IPv4 routers with a small MTU
/// (the IPv6 sender cannot learn an MTU below 1280).
pub fn ipv4_dont_fragment(total_length: usize) -> bool {
    total_length > DF_THRESHOLD
}

#[cfg(test)]
#[path = "ipv4_tests.rs"]
mod tests;
