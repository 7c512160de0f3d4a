//! ICMPv6 message view (RFC 4443): type, code, checksum (with the IPv6 pseudo-header),
//! the rest-of-header word and its per-type readings (echo identifier and sequence,
//! Packet Too Big MTU, Parameter Problem pointer), and the payload.

use core::ops::Range;
use std::net::Ipv6Addr;

use super::{Result, WireError, be16, be32, byte, checksum, ip_proto, put8, put16, put32};

/// Byte ranges and offsets of the ICMPv6 header fields.
pub mod field {
    use core::ops::Range;

    /// Message type.
    pub const TYPE: usize = 0;
    /// Code.
    pub const CODE: usize = 1;
    /// Checksum (over the IPv6 pseudo-header and the whole message).
    pub const CHECKSUM: Range<usize> = 2..4;
    /// The type-specific rest of the header.
    pub const REST: Range<usize> = 4..8;
    /// Echo identifier.
    pub const ECHO_IDENT: Range<usize> = 4..6;
    /// Echo sequence number.
    pub const ECHO_SEQNO: Range<usize> = 6..8;
    /// Packet Too Big MTU.
    pub const MTU: Range<usize> = 4..8;
    /// Parameter Problem pointer.
    pub const POINTER: Range<usize> = 4..8;
}

/// Length of the ICMPv6 header.
pub const HEADER_LEN: usize = 8;

/// ICMPv6 message types.
pub mod msg_type {
    /// Destination unreachable.
    pub const DEST_UNREACHABLE: u8 = 1;
    /// Packet too big.
    pub const PACKET_TOO_BIG: u8 = 2;
    /// Time exceeded.
    pub const TIME_EXCEEDED: u8 = 3;
    /// Parameter problem.
    pub const PARAMETER_PROBLEM: u8 = 4;
    /// Echo request.
    pub const ECHO_REQUEST: u8 = 128;
    /// Echo reply.
    pub const ECHO_REPLY: u8 = 129;

    /// Whether `ty` is an error message type (types below 128 quote a packet, RFC 4443
    /// §2.1).
    pub const fn is_error(ty: u8) -> bool {
        ty < 128
    }
}

/// Destination Unreachable codes.
pub mod unreachable {
    /// No route to destination.
    pub const NO_ROUTE: u8 = 0;
    /// Communication administratively prohibited.
    pub const ADMIN_PROHIBITED: u8 = 1;
    /// Beyond scope of source address.
    pub const BEYOND_SCOPE: u8 = 2;
    /// Address unreachable.
    pub const ADDRESS: u8 = 3;
    /// Port unreachable.
    pub const PORT: u8 = 4;
}

/// Parameter Problem codes.
pub mod param_problem {
    /// Erroneous header field.
    pub const HEADER_FIELD: u8 = 0;
    /// Unrecognized Next Header type.
    pub const NEXT_HEADER: u8 = 1;
    /// Unrecognized IPv6 option.
    pub const OPTION: u8 = 2;
}

/// A read or read-write view of an ICMPv6 message. The buffer is the whole message
/// (its length is the upper-layer length in the checksum's pseudo-header).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Icmpv6Packet<T: AsRef<[u8]>> {
    buffer: T,
}

impl<T: AsRef<[u8]>> Icmpv6Packet<T> {
    /// Wraps a buffer without validation (see the module documentation of `wire`).
    pub const fn new_unchecked(buffer: T) -> Self {
        Icmpv6Packet { buffer }
    }

    /// Validates that `buffer` holds at least the 8-byte header.
    pub fn new_checked(buffer: T) -> Result<Self> {
        if buffer.as_ref().len() < HEADER_LEN {
            return Err(WireError::Truncated);
        }
        Ok(Icmpv6Packet { buffer })
    }

    /// The underlying buffer.
    pub fn into_inner(self) -> T {
        self.buffer
    }

    /// The whole message.
    pub fn as_bytes(&self) -> &[u8] {
        self.buffer.as_ref()
    }

    /// Message type.
    pub fn msg_type(&self) -> u8 {
        byte(self.buffer.as_ref(), field::TYPE)
    }

    /// Code.
    pub fn code(&self) -> u8 {
        byte(self.buffer.as_ref(), field::CODE)
    }

    /// Checksum field.
    pub fn checksum(&self) -> u16 {
        be16(self.buffer.as_ref(), field::CHECKSUM.start)
    }

    /// The four bytes after the checksum, as one word.
    pub fn rest_of_header(&self) -> u32 {
        be32(self.buffer.as_ref(), field::REST.start)
    }

    /// Echo identifier.
    pub fn echo_ident(&self) -> u16 {
        be16(self.buffer.as_ref(), field::ECHO_IDENT.start)
    }

    /// Echo sequence number.
    pub fn echo_seq_no(&self) -> u16 {
        be16(self.buffer.as_ref(), field::ECHO_SEQNO.start)
    }

    /// Packet Too Big MTU.
    pub fn mtu(&self) -> u32 {
        be32(self.buffer.as_ref(), field::MTU.start)
    }

    /// Parameter Problem pointer (offset of the faulty byte in the quoted packet).
    pub fn pointer(&self) -> u32 {
        be32(self.buffer.as_ref(), field::POINTER.start)
    }

    /// Whether the type is an error message (types below 128 quote a packet).
    pub fn is_error(&self) -> bool {
        msg_type::is_error(self.msg_type())
    }

    /// Byte range of the payload (after the 8-byte header).
    pub fn payload_range(&self) -> Range<usize> {
        let len = self.buffer.as_ref().len();
        HEADER_LEN.min(len)..len
    }

    /// The payload: the quoted packet for errors, the data for echo.
    pub fn payload(&self) -> &[u8] {
        let r = self.payload_range();
        &self.buffer.as_ref()[r]
    }

    /// The checksum the message should carry between `src` and `dst`.
    pub fn compute_checksum(&self, src: &Ipv6Addr, dst: &Ipv6Addr) -> u16 {
        let b = self.buffer.as_ref();
        let ph = checksum::pseudo_header_v6(src, dst, ip_proto::ICMPV6, b.len() as u32);
        let head = b.get(..field::CHECKSUM.start).unwrap_or(b);
        let tail = b.get(field::CHECKSUM.end..).unwrap_or(&[]);
        let data = checksum::combine(checksum::sum(head), checksum::sum(tail));
        checksum::finish(checksum::combine(ph, data))
    }

    /// Whether the checksum field is correct between `src` and `dst`.
    pub fn verify_checksum(&self, src: &Ipv6Addr, dst: &Ipv6Addr) -> bool {
        self.compute_checksum(src, dst) == self.checksum()
    }
}

impl<T: AsRef<[u8]> + AsMut<[u8]>> Icmpv6Packet<T> {
    /// Mutable access to the whole message.
    pub fn as_bytes_mut(&mut self) -> &mut [u8] {
        self.buffer.as_mut()
    }

    /// Sets the message type.
    pub fn set_msg_type(&mut self, t: u8) {
        put8(self.buffer.as_mut(), field::TYPE, t);
    }

    /// Sets the code.
    pub fn set_code(&mut self, c: u8) {
        put8(self.buffer.as_mut(), field::CODE, c);
    }

    /// Sets the checksum field.
    pub fn set_checksum(&mut self, c: u16) {
        put16(self.buffer.as_mut(), field::CHECKSUM.start, c);
    }

    /// Sets the whole rest-of-header word.
    pub fn set_rest_of_header(&mut self, w: u32) {
        put32(self.buffer.as_mut(), field::REST.start, w);
    }

    /// Sets the echo identifier.
    pub fn set_echo_ident(&mut self, id: u16) {
        put16(self.buffer.as_mut(), field::ECHO_IDENT.start, id);
    }

    /// Sets the echo sequence number.
    pub fn set_echo_seq_no(&mut self, seq: u16) {
        put16(self.buffer.as_mut(), field::ECHO_SEQNO.start, seq);
    }

    /// Sets the Packet Too Big MTU.
    pub fn set_mtu(&mut self, mtu: u32) {
        put32(self.buffer.as_mut(), field::MTU.start, mtu);
    }

    /// Sets the Parameter Problem pointer.
    pub fn set_pointer(&mut self, p: u32) {
        put32(self.buffer.as_mut(), field::POINTER.start, p);
    }

    /// Mutable payload.
    pub fn payload_mut(&mut self) -> &mut [u8] {
        let r = self.payload_range();
        &mut self.buffer.as_mut()[r]
    }

    /// Computes and stores the checksum.
    pub fn fill_checksum(&mut self, src: &Ipv6Addr, dst: &Ipv6Addr) {
        let c = self.compute_checksum(src, dst);
        self.set_checksum(c);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn a(s: &str) -> Ipv6Addr {
        s.parse().unwrap()
    }

    // ICMPv6 echo request 2001:db8::1 -> 2001:db8::2, id 0x1234, seq 1, payload "abcd".
    // Checksum by hand: pseudo-header 0x2001+0x0db8+0x0001 + 0x2001+0x0db8+0x0002
    // + length 12 + next header 58 = 0x5bbb; message 0x8000+0x1234+0x0001+0x6162+0x6364
    // = 0x1_56fb -> 0x56fc; total 0xb2b7; checksum !0xb2b7 = 0x4d48.
    const ECHO: [u8; 12] = [
        0x80, 0x00, 0x4d, 0x48, 0x12, 0x34, 0x00, 0x01, 0x61, 0x62, 0x63, 0x64,
    ];

    #[test]
    fn echo_request_fields_and_checksum_parse() {
        let p = Icmpv6Packet::new_checked(&ECHO[..]).unwrap();
        assert_eq!(p.msg_type(), msg_type::ECHO_REQUEST);
        assert_eq!(p.echo_ident(), 0x1234);
        assert_eq!(p.echo_seq_no(), 1);
        assert_eq!(p.payload(), b"abcd");
        assert!(!p.is_error());
        assert!(p.verify_checksum(&a("2001:db8::1"), &a("2001:db8::2")));
        assert!(!p.verify_checksum(&a("2001:db8::1"), &a("2001:db8::3")));
    }

    #[test]
    fn packet_too_big_mtu_is_a_32_bit_word() {
        let mut b = [0u8; 48];
        let mut p = Icmpv6Packet::new_checked(&mut b[..]).unwrap();
        p.set_msg_type(msg_type::PACKET_TOO_BIG);
        p.set_mtu(1280);
        p.fill_checksum(&a("2001:db8::1"), &a("2001:db8::2"));
        assert_eq!(&b[..2], &[2, 0]);
        assert_eq!(&b[4..8], &[0, 0, 5, 0]);
        let p = Icmpv6Packet::new_checked(&b[..]).unwrap();
        assert!(p.is_error());
        assert_eq!(p.mtu(), 1280);
        assert!(p.verify_checksum(&a("2001:db8::1"), &a("2001:db8::2")));
    }

    #[test]
    fn truncated_icmpv6_header_is_an_error_at_every_length() {
        for n in 0..HEADER_LEN {
            assert_eq!(
                Icmpv6Packet::new_checked(&ECHO[..n]),
                Err(WireError::Truncated)
            );
        }
    }
}
