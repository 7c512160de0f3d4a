//! ICMPv4 message view (RFC 792): type, code, checksum, the rest-of-header word and its
//! per-type readings (echo identifier and sequence, next-hop MTU, parameter-problem
//! pointer), and the payload (the quoted packet, for errors).

use core::ops::Range;

use super::{Result, WireError, be16, be32, byte, checksum, put8, put16, put32};

/// Byte ranges and offsets of the ICMPv4 header fields.
pub mod field {
    use core::ops::Range;

    /// Message type.
    pub const TYPE: usize = 0;
    /// Code.
    pub const CODE: usize = 1;
    /// Checksum (over the whole message, no pseudo-header).
    pub const CHECKSUM: Range<usize> = 2..4;
    /// The type-specific rest of the header.
    pub const REST: Range<usize> = 4..8;
    /// Echo identifier.
    pub const ECHO_IDENT: Range<usize> = 4..6;
    /// Echo sequence number.
    pub const ECHO_SEQNO: Range<usize> = 6..8;
    /// Parameter Problem pointer.
    pub const POINTER: usize = 4;
    /// RFC 4884 length of the original datagram, in 32-bit words.
    pub const EXT_LENGTH: usize = 5;
    /// Destination Unreachable / Fragmentation Needed next-hop MTU (RFC 1191).
    pub const NEXT_HOP_MTU: Range<usize> = 6..8;
}

/// Length of the ICMPv4 header.
pub const HEADER_LEN: usize = 8;

/// ICMPv4 message types.
pub mod msg_type {
    /// Echo reply.
    pub const ECHO_REPLY: u8 = 0;
    /// Destination unreachable.
    pub const DEST_UNREACHABLE: u8 = 3;
    /// Source quench (deprecated).
    pub const SOURCE_QUENCH: u8 = 4;
    /// Redirect.
    pub const REDIRECT: u8 = 5;
    /// Echo request.
    pub const ECHO_REQUEST: u8 = 8;
    /// Time exceeded.
    pub const TIME_EXCEEDED: u8 = 11;
    /// Parameter problem.
    pub const PARAMETER_PROBLEM: u8 = 12;
    /// Alternate host address (deprecated).
    pub const ALTERNATE_HOST: u8 = 6;
    /// Router advertisement.
    pub const ROUTER_ADVERTISEMENT: u8 = 9;
    /// Router solicitation.
    pub const ROUTER_SOLICITATION: u8 = 10;

    /// Whether `ty` is an error message type that quotes a packet (RFC 792, RFC 1812
    /// §4.3.2.4).
    pub const fn is_error(ty: u8) -> bool {
        matches!(
            ty,
            DEST_UNREACHABLE | SOURCE_QUENCH | REDIRECT | TIME_EXCEEDED | PARAMETER_PROBLEM
        )
    }
}

/// Destination Unreachable codes.
pub mod unreachable {
    /// Network unreachable.
    pub const NET: u8 = 0;
    /// Host unreachable.
    pub const HOST: u8 = 1;
    /// Protocol unreachable.
    pub const PROTOCOL: u8 = 2;
    /// Port unreachable.
    pub const PORT: u8 = 3;
    /// Fragmentation needed and DF set.
    pub const FRAG_NEEDED: u8 = 4;
    /// Source route failed.
    pub const SOURCE_ROUTE_FAILED: u8 = 5;
    /// Communication administratively prohibited.
    pub const ADMIN_PROHIBITED: u8 = 13;
}

/// A read or read-write view of an ICMPv4 message. The buffer is the whole message.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Icmpv4Packet<T: AsRef<[u8]>> {
    buffer: T,
}

impl<T: AsRef<[u8]>> Icmpv4Packet<T> {
    /// Wraps a buffer without validation (see the module documentation of `wire`).
    pub const fn new_unchecked(buffer: T) -> Self {
        Icmpv4Packet { buffer }
    }

    /// Validates that `buffer` holds at least the 8-byte header.
    pub fn new_checked(buffer: T) -> Result<Self> {
        if buffer.as_ref().len() < HEADER_LEN {
            return Err(WireError::Truncated);
        }
        Ok(Icmpv4Packet { buffer })
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

    /// Parameter Problem pointer (offset of the faulty byte in the quoted header).
    pub fn pointer(&self) -> u8 {
        byte(self.buffer.as_ref(), field::POINTER)
    }

    /// Next-hop MTU of a Fragmentation Needed message.
    pub fn next_hop_mtu(&self) -> u16 {
        be16(self.buffer.as_ref(), field::NEXT_HOP_MTU.start)
    }

    /// Whether the type is an error message that quotes a packet.
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

    /// The checksum the message should carry.
    pub fn compute_checksum(&self) -> u16 {
        let b = self.buffer.as_ref();
        let head = b.get(..field::CHECKSUM.start).unwrap_or(b);
        let tail = b.get(field::CHECKSUM.end..).unwrap_or(&[]);
        checksum::finish(checksum::combine(checksum::sum(head), checksum::sum(tail)))
    }

    /// Whether the checksum field is correct.
    pub fn verify_checksum(&self) -> bool {
        checksum::checksum(self.buffer.as_ref()) == 0
    }
}

impl<T: AsRef<[u8]> + AsMut<[u8]>> Icmpv4Packet<T> {
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

    /// Sets the Parameter Problem pointer.
    pub fn set_pointer(&mut self, p: u8) {
        put8(self.buffer.as_mut(), field::POINTER, p);
    }

    /// Sets the next-hop MTU.
    pub fn set_next_hop_mtu(&mut self, mtu: u16) {
        put16(self.buffer.as_mut(), field::NEXT_HOP_MTU.start, mtu);
    }

    /// Mutable payload.
    pub fn payload_mut(&mut self) -> &mut [u8] {
        let r = self.payload_range();
        &mut self.buffer.as_mut()[r]
    }

    /// Computes and stores the checksum.
    pub fn fill_checksum(&mut self) {
        let c = self.compute_checksum();
        self.set_checksum(c);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    // ICMPv4 echo request, id 0x1234, seq 1, payload "abcd"; checksum computed by hand:
    // 0x0800 + 0x1234 + 0x0001 + 0x6162 + 0x6364 = 0xdefb -> !0xdefb = 0x2104.
    const ECHO: [u8; 12] = [
        0x08, 0x00, 0x21, 0x04, 0x12, 0x34, 0x00, 0x01, 0x61, 0x62, 0x63, 0x64,
    ];

    #[test]
    fn echo_request_fields_parse() {
        let p = Icmpv4Packet::new_checked(&ECHO[..]).unwrap();
        assert_eq!(p.msg_type(), msg_type::ECHO_REQUEST);
        assert_eq!(p.code(), 0);
        assert_eq!(p.echo_ident(), 0x1234);
        assert_eq!(p.echo_seq_no(), 1);
        assert_eq!(p.payload(), b"abcd");
        assert!(!p.is_error());
        assert!(p.verify_checksum());
        assert_eq!(p.compute_checksum(), 0x2104);
    }

    #[test]
    fn frag_needed_carries_mtu_and_quote() {
        let mut b = [0u8; 36];
        let mut p = Icmpv4Packet::new_checked(&mut b[..]).unwrap();
        p.set_msg_type(msg_type::DEST_UNREACHABLE);
        p.set_code(unreachable::FRAG_NEEDED);
        p.set_next_hop_mtu(1480);
        p.payload_mut()[0] = 0x45;
        p.fill_checksum();
        assert!(p.verify_checksum());
        assert!(p.is_error());
        assert_eq!(p.next_hop_mtu(), 1480);
        assert_eq!(p.rest_of_header(), 1480);
        assert_eq!(&b[..8], &[3, 4, 0xb2, 0x33, 0, 0, 0x05, 0xc8]);
    }

    #[test]
    fn parameter_problem_pointer_is_byte_four() {
        let mut b = [12u8, 0, 0, 0, 0, 0, 0, 0];
        Icmpv4Packet::new_checked(&mut b[..])
            .unwrap()
            .set_pointer(9);
        assert_eq!(b[4], 9);
        assert_eq!(Icmpv4Packet::new_checked(&b[..]).unwrap().pointer(), 9);
    }

    #[test]
    fn truncated_icmpv4_header_is_an_error_at_every_length() {
        for n in 0..HEADER_LEN {
            assert_eq!(
                Icmpv4Packet::new_checked(&ECHO[..n]),
                Err(WireError::Truncated)
            );
        }
    }
}
