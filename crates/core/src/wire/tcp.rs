//! TCP segment view (RFC 9293): fixed fields, flags, the options walk (MSS, window
//! scale, SACK-permitted, SACK blocks, timestamps, anything else kept intact), in-place
//! rewrites with incremental checksum updates, and [`SeqNumber`], the wrapping sequence
//! number type.

use core::fmt;
use core::ops::{Add, AddAssign, Range, Sub, SubAssign};
use std::net::{Ipv4Addr, Ipv6Addr};

use super::checksum::{self, ChecksumForm};
use super::{Result, WireError, be16, be32, byte, ip_proto, put8, put16, put32};

/// Byte ranges and offsets of the fixed TCP header fields.
pub mod field {
    use core::ops::Range;

    /// Source port.
    pub const SRC_PORT: Range<usize> = 0..2;
    /// Destination port.
    pub const DST_PORT: Range<usize> = 2..4;
    /// Sequence number.
    pub const SEQ_NUM: Range<usize> = 4..8;
    /// Acknowledgment number.
    pub const ACK_NUM: Range<usize> = 8..12;
    /// Data offset (4 bits), reserved (4 bits, the lowest of them once NS), flags (8 bits).
    pub const FLAGS: Range<usize> = 12..14;
    /// Window.
    pub const WIN_SIZE: Range<usize> = 14..16;
    /// Checksum.
    pub const CHECKSUM: Range<usize> = 16..18;
    /// Urgent pointer.
    pub const URGENT: Range<usize> = 18..20;
}

/// Length of a TCP header without options.
pub const HEADER_LEN: usize = 20;
/// Longest TCP header (data offset 15).
pub const MAX_HEADER_LEN: usize = 60;
/// The least of a TCP header an ICMP error quotes (RFC 792: 64 bits).
pub const QUOTED_MIN_LEN: usize = 8;

/// TCP flag bits, as in the low byte of [`field::FLAGS`].
pub mod flags {
    /// FIN.
    pub const FIN: u8 = 0x01;
    /// SYN.
    pub const SYN: u8 = 0x02;
    /// RST.
    pub const RST: u8 = 0x04;
    /// PSH.
    pub const PSH: u8 = 0x08;
    /// ACK.
    pub const ACK: u8 = 0x10;
    /// URG.
    pub const URG: u8 = 0x20;
    /// ECE.
    pub const ECE: u8 = 0x40;
    /// CWR.
    pub const CWR: u8 = 0x80;
}

/// TCP option kinds.
pub mod kind {
    /// End of option list.
    pub const EOL: u8 = 0;
    /// No operation (padding).
    pub const NOP: u8 = 1;
    /// Maximum segment size.
    pub const MSS: u8 = 2;
    /// Window scale.
    pub const WINDOW_SCALE: u8 = 3;
    /// SACK permitted.
    pub const SACK_PERMITTED: u8 = 4;
    /// SACK blocks.
    pub const SACK: u8 = 5;
    /// Timestamps.
    pub const TIMESTAMPS: u8 = 8;
}

/// A TCP sequence number: arithmetic wraps modulo 2^32 and comparison is RFC 1982
/// serial-number comparison (`a < b` iff `(a − b) as i32 < 0`).
///
/// It deliberately has no `PartialOrd`: the comparison is not transitive across the
/// whole space. Use [`SeqNumber::lt`] and friends.
#[derive(Clone, Copy, PartialEq, Eq, Hash, Default)]
pub struct SeqNumber(pub u32);

impl SeqNumber {
    /// Signed distance `self − other`, in (−2^31, 2^31].
    #[must_use]
    pub fn signed_diff(self, other: SeqNumber) -> i32 {
        self.0.wrapping_sub(other.0) as i32
    }

    /// `self` comes before `other`.
    #[must_use]
    pub fn lt(self, other: SeqNumber) -> bool {
        self.signed_diff(other) < 0
    }

    /// `self` comes before or is `other`.
    #[must_use]
    pub fn le(self, other: SeqNumber) -> bool {
        self.signed_diff(other) <= 0
    }

    /// `self` comes after `other`.
    #[must_use]
    pub fn gt(self, other: SeqNumber) -> bool {
        self.signed_diff(other) > 0
    }

    /// `self` comes after or is `other`.
    #[must_use]
    pub fn ge(self, other: SeqNumber) -> bool {
        self.signed_diff(other) >= 0
    }

    /// Whether `self` lies in the half-open window `[start, start + len)`.
    #[must_use]
    pub fn in_window(self, start: SeqNumber, len: u32) -> bool {
        self.0.wrapping_sub(start.0) < len
    }
}

impl fmt::Debug for SeqNumber {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "SeqNumber({})", self.0)
    }
}

impl fmt::Display for SeqNumber {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(&self.0, f)
    }
}

impl Add<u32> for SeqNumber {
    type Output = SeqNumber;
    fn add(self, rhs: u32) -> SeqNumber {
        SeqNumber(self.0.wrapping_add(rhs))
    }
}

impl Sub<u32> for SeqNumber {
    type Output = SeqNumber;
    fn sub(self, rhs: u32) -> SeqNumber {
        SeqNumber(self.0.wrapping_sub(rhs))
    }
}

/// `a − b` is the wrapping offset from `b` to `a`, so that `b + (a − b) == a`.
impl Sub<SeqNumber> for SeqNumber {
    type Output = u32;
    fn sub(self, rhs: SeqNumber) -> u32 {
        self.0.wrapping_sub(rhs.0)
    }
}

impl AddAssign<u32> for SeqNumber {
    fn add_assign(&mut self, rhs: u32) {
        *self = *self + rhs;
    }
}

impl SubAssign<u32> for SeqNumber {
    fn sub_assign(&mut self, rhs: u32) {
        *self = *self - rhs;
    }
}

/// SACK blocks of a SACK option: pairs of (left edge, right edge).
#[derive(Clone, Copy, PartialEq, Eq)]
pub struct SackBlocks<'a> {
    bytes: &'a [u8],
}

impl<'a> SackBlocks<'a> {
    /// Number of blocks.
    pub fn len(&self) -> usize {
        self.bytes.len() / 8
    }

    /// Whether there are no blocks.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Block `i` as (left edge, right edge).
    pub fn get(&self, i: usize) -> Option<(SeqNumber, SeqNumber)> {
        let block = self.bytes.get(i.checked_mul(8)?..)?.get(..8)?;
        Some((SeqNumber(be32(block, 0)), SeqNumber(be32(block, 4))))
    }

    /// Iterator over the blocks.
    pub fn iter(&self) -> impl Iterator<Item = (SeqNumber, SeqNumber)> + 'a {
        let bytes = self.bytes;
        bytes
            .chunks_exact(8)
            .map(|c| (SeqNumber(be32(c, 0)), SeqNumber(be32(c, 4))))
    }
}

impl fmt::Debug for SackBlocks<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_list().entries(self.iter()).finish()
    }
}

/// One TCP option.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TcpOption<'a> {
    /// Maximum segment size (kind 2, length 4).
    Mss(u16),
    /// Window scale shift count (kind 3, length 3).
    WindowScale(u8),
    /// SACK permitted (kind 4, length 2).
    SackPermitted,
    /// SACK blocks (kind 5, length 2 + 8n).
    Sack(SackBlocks<'a>),
    /// Timestamps (kind 8, length 10).
    Timestamps {
        /// Timestamp value.
        tsval: u32,
        /// Timestamp echo reply.
        tsecr: u32,
    },
    /// Any other kind: left as it is.
    Unknown {
        /// Option kind.
        kind: u8,
        /// Data after the kind and length bytes.
        data: &'a [u8],
    },
    /// One of the kinds above with a length it cannot have (e.g. MSS of length 3).
    /// Receivers ignore such options (Linux does), so they are yielded uninterpreted.
    Malformed {
        /// Option kind.
        kind: u8,
        /// Data after the kind and length bytes.
        data: &'a [u8],
    },
}

/// Iterator over TCP options, yielding each with the offset of its kind byte from the
/// start of the TCP header.
///
/// EOL ends the walk (bytes after it are ignored); NOP is skipped; a length byte below 2
/// ([`WireError::BadOptionLen`]) or an option whose length byte or data runs past the
/// header ([`WireError::OptionOverrun`]) yields one error and ends the walk.
#[derive(Debug, Clone)]
pub struct TcpOptions<'a> {
    bytes: &'a [u8],
    pos: usize,
    done: bool,
}

impl<'a> TcpOptions<'a> {
    /// Walks option bytes (the part of the TCP header after byte 20).
    pub fn new(bytes: &'a [u8]) -> Self {
        TcpOptions {
            bytes,
            pos: 0,
            done: false,
        }
    }

    /// Checks the whole option area: `Ok` if every option is well-formed.
    pub fn validate(self) -> Result<()> {
        for o in self {
            o?;
        }
        Ok(())
    }

    /// Drops the offsets, yielding options only.
    pub fn options(self) -> impl Iterator<Item = Result<TcpOption<'a>>> {
        self.map(|r| r.map(|(_, o)| o))
    }
}

impl<'a> Iterator for TcpOptions<'a> {
    type Item = Result<(usize, TcpOption<'a>)>;

    fn next(&mut self) -> Option<Self::Item> {
        while !self.done {
            let Some(&k) = self.bytes.get(self.pos) else {
                break;
            };
            match k {
                kind::EOL => break,
                kind::NOP => {
                    self.pos += 1;
                    continue;
                }
                _ => {}
            }
            self.done = true;
            let Some(&len) = self.bytes.get(self.pos + 1) else {
                return Some(Err(WireError::OptionOverrun));
            };
            let len = usize::from(len);
            if len < 2 {
                return Some(Err(WireError::BadOptionLen));
            }
            let Some(data) = self.bytes.get(self.pos + 2..self.pos + len) else {
                return Some(Err(WireError::OptionOverrun));
            };
            let opt = match (k, data.len()) {
                (kind::MSS, 2) => TcpOption::Mss(be16(data, 0)),
                (kind::WINDOW_SCALE, 1) => TcpOption::WindowScale(data[0]),
                (kind::SACK_PERMITTED, 0) => TcpOption::SackPermitted,
                (kind::SACK, n) if n % 8 == 0 && n > 0 => {
                    TcpOption::Sack(SackBlocks { bytes: data })
                }
                (kind::TIMESTAMPS, 8) => TcpOption::Timestamps {
                    tsval: be32(data, 0),
                    tsecr: be32(data, 4),
                },
                (
                    kind::MSS
                    | kind::WINDOW_SCALE
                    | kind::SACK_PERMITTED
                    | kind::SACK
                    | kind::TIMESTAMPS,
                    _,
                ) => TcpOption::Malformed { kind: k, data },
                _ => TcpOption::Unknown { kind: k, data },
            };
            let at = HEADER_LEN + self.pos;
            self.pos += len;
            self.done = false;
            return Some(Ok((at, opt)));
        }
        self.done = true;
        None
    }
}

/// A read or read-write view of a TCP segment. The buffer is the whole segment (the
/// checksum covers it all).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TcpPacket<T: AsRef<[u8]>> {
    buffer: T,
}

impl<T: AsRef<[u8]>> TcpPacket<T> {
    /// Wraps a buffer without validation (see the module documentation of `wire`).
    pub const fn new_unchecked(buffer: T) -> Self {
        TcpPacket { buffer }
    }

    /// Validates `buffer` as a TCP segment: at least 20 bytes, data offset ≥ 5 and the
    /// whole header within the buffer. Options are not validated here: the options
    /// walk reports bad ones (or use [`TcpPacket::new_checked_options`]).
    pub fn new_checked(buffer: T) -> Result<Self> {
        let b = buffer.as_ref();
        if b.len() < HEADER_LEN {
            return Err(WireError::Truncated);
        }
        let hl = usize::from(b[field::FLAGS.start] >> 4) * 4;
        if hl < HEADER_LEN || hl > b.len() {
            return Err(WireError::BadDataOffset);
        }
        Ok(TcpPacket { buffer })
    }

    /// Validates `buffer` as the start of a TCP segment quoted by an ICMP error, which
    /// may hold as little as the first 8 bytes (RFC 792): ports and sequence number.
    /// Getters of fields past the end of the buffer return 0, setters of them do
    /// nothing, and the options and payload are whatever part of them is present.
    pub fn new_checked_quoted(buffer: T) -> Result<Self> {
        if buffer.as_ref().len() < QUOTED_MIN_LEN {
            return Err(WireError::Truncated);
        }
        Ok(TcpPacket { buffer })
    }

    /// Like [`TcpPacket::new_checked`], and also checks that every option is well-formed.
    pub fn new_checked_options(buffer: T) -> Result<Self> {
        let p = Self::new_checked(buffer)?;
        p.options().validate()?;
        Ok(p)
    }

    /// The underlying buffer.
    pub fn into_inner(self) -> T {
        self.buffer
    }

    /// The whole segment.
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

    /// Sequence number.
    pub fn seq_number(&self) -> SeqNumber {
        SeqNumber(be32(self.buffer.as_ref(), field::SEQ_NUM.start))
    }

    /// Acknowledgment number (meaningful when ACK is set).
    pub fn ack_number(&self) -> SeqNumber {
        SeqNumber(be32(self.buffer.as_ref(), field::ACK_NUM.start))
    }

    /// Header length in bytes (data offset × 4).
    pub fn header_len(&self) -> usize {
        usize::from(byte(self.buffer.as_ref(), field::FLAGS.start) >> 4) * 4
    }

    /// The eight flag bits (see [`flags`]).
    pub fn flags(&self) -> u8 {
        byte(self.buffer.as_ref(), field::FLAGS.start + 1)
    }

    /// The four reserved bits between data offset and flags.
    pub fn reserved(&self) -> u8 {
        byte(self.buffer.as_ref(), field::FLAGS.start) & 0x0f
    }

    /// FIN flag.
    pub fn fin(&self) -> bool {
        self.flags() & flags::FIN != 0
    }

    /// SYN flag.
    pub fn syn(&self) -> bool {
        self.flags() & flags::SYN != 0
    }

    /// RST flag.
    pub fn rst(&self) -> bool {
        self.flags() & flags::RST != 0
    }

    /// PSH flag.
    pub fn psh(&self) -> bool {
        self.flags() & flags::PSH != 0
    }

    /// ACK flag.
    pub fn ack(&self) -> bool {
        self.flags() & flags::ACK != 0
    }

    /// URG flag.
    pub fn urg(&self) -> bool {
        self.flags() & flags::URG != 0
    }

    /// ECE flag.
    pub fn ece(&self) -> bool {
        self.flags() & flags::ECE != 0
    }

    /// CWR flag.
    pub fn cwr(&self) -> bool {
        self.flags() & flags::CWR != 0
    }

    /// Window field (unscaled).
    pub fn window_len(&self) -> u16 {
        be16(self.buffer.as_ref(), field::WIN_SIZE.start)
    }

    /// Checksum field.
    pub fn checksum(&self) -> u16 {
        be16(self.buffer.as_ref(), field::CHECKSUM.start)
    }

    /// Urgent pointer.
    pub fn urgent_at(&self) -> u16 {
        be16(self.buffer.as_ref(), field::URGENT.start)
    }

    /// Byte range of the options, clamped to the buffer.
    pub fn options_range(&self) -> Range<usize> {
        let len = self.buffer.as_ref().len();
        let end = self.header_len().min(len);
        HEADER_LEN.min(end)..end
    }

    /// Byte range of the payload (header length to end of buffer), clamped.
    pub fn payload_range(&self) -> Range<usize> {
        let len = self.buffer.as_ref().len();
        self.header_len().min(len)..len
    }

    /// Raw option bytes.
    pub fn options_bytes(&self) -> &[u8] {
        let r = self.options_range();
        &self.buffer.as_ref()[r]
    }

    /// The options walk, yielding `(offset, option)`; offsets are from the start of the
    /// TCP header and can be given to the `*_at` setters. Use `.options()` on the
    /// result to drop the offsets.
    pub fn options(&self) -> TcpOptions<'_> {
        TcpOptions::new(self.options_bytes())
    }

    /// The payload.
    pub fn payload(&self) -> &[u8] {
        let r = self.payload_range();
        &self.buffer.as_ref()[r]
    }

    /// Segment length in sequence space: payload length, plus one each for SYN and FIN.
    pub fn segment_len(&self) -> usize {
        self.payload_range().len() + usize::from(self.syn()) + usize::from(self.fin())
    }

    /// Sum of the segment with the checksum field counted as zero.
    fn data_sum(&self) -> u32 {
        let b = self.buffer.as_ref();
        let head = b.get(..field::CHECKSUM.start).unwrap_or(b);
        let tail = b.get(field::CHECKSUM.end..).unwrap_or(&[]);
        checksum::combine(checksum::sum(head), checksum::sum(tail))
    }

    /// The full checksum this segment should carry between `src` and `dst` (IPv4).
    pub fn compute_checksum_v4(&self, src: Ipv4Addr, dst: Ipv4Addr) -> u16 {
        let len = self.buffer.as_ref().len() as u16;
        let ph = checksum::pseudo_header_v4(src, dst, ip_proto::TCP, len);
        checksum::finish(checksum::combine(ph, self.data_sum()))
    }

    /// The full checksum this segment should carry between `src` and `dst` (IPv6).
    pub fn compute_checksum_v6(&self, src: &Ipv6Addr, dst: &Ipv6Addr) -> u16 {
        let len = self.buffer.as_ref().len() as u32;
        let ph = checksum::pseudo_header_v6(src, dst, ip_proto::TCP, len);
        checksum::finish(checksum::combine(ph, self.data_sum()))
    }

    /// Whether the checksum field is a correct full checksum (IPv4).
    pub fn verify_checksum_v4(&self, src: Ipv4Addr, dst: Ipv4Addr) -> bool {
        self.compute_checksum_v4(src, dst) == self.checksum()
    }

    /// Whether the checksum field is a correct full checksum (IPv6).
    pub fn verify_checksum_v6(&self, src: &Ipv6Addr, dst: &Ipv6Addr) -> bool {
        self.compute_checksum_v6(src, dst) == self.checksum()
    }
}

impl<T: AsRef<[u8]> + AsMut<[u8]>> TcpPacket<T> {
    /// Mutable access to the whole segment.
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

    /// Sets the sequence number.
    pub fn set_seq_number(&mut self, seq: SeqNumber) {
        put32(self.buffer.as_mut(), field::SEQ_NUM.start, seq.0);
    }

    /// Sets the acknowledgment number.
    pub fn set_ack_number(&mut self, ack: SeqNumber) {
        put32(self.buffer.as_mut(), field::ACK_NUM.start, ack.0);
    }

    /// Sets the header length in bytes (rounded down to a multiple of 4, clamped to 60).
    pub fn set_header_len(&mut self, len: usize) {
        let b = self.buffer.as_mut();
        let old = byte(b, field::FLAGS.start);
        let off = (len / 4).min(15) as u8;
        put8(b, field::FLAGS.start, (old & 0x0f) | (off << 4));
    }

    /// Sets all eight flag bits.
    pub fn set_flags(&mut self, f: u8) {
        put8(self.buffer.as_mut(), field::FLAGS.start + 1, f);
    }

    fn set_flag(&mut self, mask: u8, on: bool) {
        let f = self.flags();
        self.set_flags(if on { f | mask } else { f & !mask });
    }

    /// Sets or clears FIN.
    pub fn set_fin(&mut self, on: bool) {
        self.set_flag(flags::FIN, on);
    }

    /// Sets or clears SYN.
    pub fn set_syn(&mut self, on: bool) {
        self.set_flag(flags::SYN, on);
    }

    /// Sets or clears RST.
    pub fn set_rst(&mut self, on: bool) {
        self.set_flag(flags::RST, on);
    }

    /// Sets or clears PSH.
    pub fn set_psh(&mut self, on: bool) {
        self.set_flag(flags::PSH, on);
    }

    /// Sets or clears ACK.
    pub fn set_ack(&mut self, on: bool) {
        self.set_flag(flags::ACK, on);
    }

    /// Sets or clears URG.
    pub fn set_urg(&mut self, on: bool) {
        self.set_flag(flags::URG, on);
    }

    /// Sets or clears ECE.
    pub fn set_ece(&mut self, on: bool) {
        self.set_flag(flags::ECE, on);
    }

    /// Sets or clears CWR.
    pub fn set_cwr(&mut self, on: bool) {
        self.set_flag(flags::CWR, on);
    }

    /// Sets the window field.
    pub fn set_window_len(&mut self, win: u16) {
        put16(self.buffer.as_mut(), field::WIN_SIZE.start, win);
    }

    /// Sets the checksum field.
    pub fn set_checksum(&mut self, csum: u16) {
        put16(self.buffer.as_mut(), field::CHECKSUM.start, csum);
    }

    /// Sets the urgent pointer.
    pub fn set_urgent_at(&mut self, at: u16) {
        put16(self.buffer.as_mut(), field::URGENT.start, at);
    }

    /// Mutable option bytes.
    pub fn options_bytes_mut(&mut self) -> &mut [u8] {
        let r = self.options_range();
        &mut self.buffer.as_mut()[r]
    }

    /// Mutable payload.
    pub fn payload_mut(&mut self) -> &mut [u8] {
        let r = self.payload_range();
        &mut self.buffer.as_mut()[r]
    }

    /// Computes and stores the full checksum (IPv4 pseudo-header).
    pub fn fill_checksum_v4(&mut self, src: Ipv4Addr, dst: Ipv4Addr) {
        let c = self.compute_checksum_v4(src, dst);
        self.set_checksum(c);
    }

    /// Computes and stores the full checksum (IPv6 pseudo-header).
    pub fn fill_checksum_v6(&mut self, src: &Ipv6Addr, dst: &Ipv6Addr) {
        let c = self.compute_checksum_v6(src, dst);
        self.set_checksum(c);
    }

    /// Writes `new` at `at` (within the segment) and updates the checksum field for
    /// `form` incrementally. Works at any alignment: the sum is taken over the
    /// enclosing even-aligned window. `new` is at most 8 bytes; out-of-range writes
    /// do nothing.
    fn rewrite_bytes(&mut self, at: usize, new: &[u8], form: ChecksumForm) {
        let b = self.buffer.as_mut();
        let start = at & !1;
        let end = ((at + new.len() + 1) & !1).min(b.len());
        if at + new.len() > b.len() || end - start > 10 {
            return;
        }
        let old_sum = checksum::sum(&b[start..end]);
        b[at..at + new.len()].copy_from_slice(new);
        let new_sum = checksum::sum(&b[start..end]);
        let c = form.update_data(be16(b, field::CHECKSUM.start), old_sum, new_sum);
        put16(b, field::CHECKSUM.start, c);
    }

    /// Sets the sequence number and updates the checksum for `form`.
    pub fn rewrite_seq_number(&mut self, seq: SeqNumber, form: ChecksumForm) {
        self.rewrite_bytes(field::SEQ_NUM.start, &seq.0.to_be_bytes(), form);
    }

    /// Sets the acknowledgment number and updates the checksum for `form`.
    pub fn rewrite_ack_number(&mut self, ack: SeqNumber, form: ChecksumForm) {
        self.rewrite_bytes(field::ACK_NUM.start, &ack.0.to_be_bytes(), form);
    }

    /// Sets the window and updates the checksum for `form`.
    pub fn rewrite_window_len(&mut self, win: u16, form: ChecksumForm) {
        self.rewrite_bytes(field::WIN_SIZE.start, &win.to_be_bytes(), form);
    }

    /// Sets a port and updates the checksum for `form` (`dst` chooses which port).
    pub fn rewrite_port(&mut self, dst: bool, port: u16, form: ChecksumForm) {
        let at = if dst {
            field::DST_PORT.start
        } else {
            field::SRC_PORT.start
        };
        self.rewrite_bytes(at, &port.to_be_bytes(), form);
    }

    /// Checks that a `kind` option starts at `offset` and lies inside the header;
    /// returns its length.
    fn option_len_at(&self, offset: usize, kind: u8) -> Result<usize> {
        let b = self.buffer.as_ref();
        let hl = self.header_len().min(b.len());
        if offset < HEADER_LEN || offset.saturating_add(2) > hl || byte(b, offset) != kind {
            return Err(WireError::NoSuchOption);
        }
        let len = usize::from(byte(b, offset + 1));
        if len < 2 || offset + len > hl {
            return Err(WireError::NoSuchOption);
        }
        Ok(len)
    }

    /// Like [`TcpPacket::option_len_at`], also requiring the length to be `len`.
    fn option_at(&self, offset: usize, kind: u8, len: usize) -> Result<()> {
        match self.option_len_at(offset, kind)? {
            l if l == len => Ok(()),
            _ => Err(WireError::NoSuchOption),
        }
    }

    /// Rewrites the Timestamps option whose kind byte is at `offset` (as yielded by
    /// [`TcpPacket::options`]) and updates the checksum for `form`.
    pub fn rewrite_timestamps_at(
        &mut self,
        offset: usize,
        tsval: u32,
        tsecr: u32,
        form: ChecksumForm,
    ) -> Result<()> {
        self.option_at(offset, kind::TIMESTAMPS, 10)?;
        self.rewrite_bytes(offset + 2, &pair(tsval, tsecr), form);
        Ok(())
    }

    /// Rewrites block `index` of the SACK option whose kind byte is at `offset`, and
    /// updates the checksum for `form`.
    pub fn rewrite_sack_block_at(
        &mut self,
        offset: usize,
        index: usize,
        left: SeqNumber,
        right: SeqNumber,
        form: ChecksumForm,
    ) -> Result<()> {
        let len = self.option_len_at(offset, kind::SACK)?;
        if (len - 2) % 8 != 0 || index >= (len - 2) / 8 {
            return Err(WireError::NoSuchOption);
        }
        let at = offset + 2 + index * 8;
        self.rewrite_bytes(at, &pair(left.0, right.0), form);
        Ok(())
    }

    /// Rewrites the MSS option whose kind byte is at `offset` and updates the checksum.
    pub fn rewrite_mss_at(&mut self, offset: usize, mss: u16, form: ChecksumForm) -> Result<()> {
        self.option_at(offset, kind::MSS, 4)?;
        self.rewrite_bytes(offset + 2, &mss.to_be_bytes(), form);
        Ok(())
    }

    /// Finds the Timestamps option and replaces (TSval, TSecr) with `f(tsval, tsecr)`,
    /// updating the checksum for `form`. Returns whether there was one. An error in the
    /// option area before it is returned and nothing is changed.
    pub fn map_timestamps(
        &mut self,
        form: ChecksumForm,
        f: impl FnOnce(u32, u32) -> (u32, u32),
    ) -> Result<bool> {
        let mut found = None;
        for o in self.options() {
            if let (at, TcpOption::Timestamps { tsval, tsecr }) = o? {
                found = Some((at, tsval, tsecr));
                break;
            }
        }
        let Some((at, tsval, tsecr)) = found else {
            return Ok(false);
        };
        let (v, e) = f(tsval, tsecr);
        self.rewrite_timestamps_at(at, v, e, form)?;
        Ok(true)
    }

    /// Adds `delta` (wrapping) to both edges of every block of every SACK option,
    /// updating the checksum for `form`. Returns the number of blocks shifted. Options
    /// are validated first: on an error nothing is changed.
    pub fn shift_sack_edges(&mut self, delta: u32, form: ChecksumForm) -> Result<usize> {
        // 40 bytes of options hold at most four SACK options of at least 10 bytes.
        let mut sacks = [(0usize, 0usize); 4];
        let mut count = 0;
        for o in self.options() {
            if let (at, TcpOption::Sack(blocks)) = o? {
                if let Some(slot) = sacks.get_mut(count) {
                    *slot = (at, blocks.len());
                    count += 1;
                }
            }
        }
        let mut shifted = 0;
        for &(at, n) in &sacks[..count] {
            for i in 0..n {
                let b = self.buffer.as_ref();
                let left = SeqNumber(be32(b, at + 2 + i * 8)) + delta;
                let right = SeqNumber(be32(b, at + 6 + i * 8)) + delta;
                self.rewrite_sack_block_at(at, i, left, right, form)?;
                shifted += 1;
            }
        }
        Ok(shifted)
    }
}

/// Two 32-bit values as 8 big-endian bytes (a timestamp pair, a SACK block).
fn pair(a: u32, b: u32) -> [u8; 8] {
    let mut out = [0u8; 8];
    out[..4].copy_from_slice(&a.to_be_bytes());
    out[4..].copy_from_slice(&b.to_be_bytes());
    out
}

#[cfg(test)]
#[path = "tcp_tests.rs"]
mod tests;
