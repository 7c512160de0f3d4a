//! The segments Kracauer sends itself (SYN-ACKs and RSTs to clients; the SYN, ACK and
//! peeked data to backends; refusals), in the engine's terms, built by
//! [`crate::wire::build`] with options laid out as Linux lays them out.

use std::net::{Ipv4Addr, Ipv6Addr};

use crate::wire::WireError;
use crate::wire::build::{IpHeaderSpec, TcpOptionsSpec, TcpSegmentSpec, emit_tcp};
use crate::wire::tcp::{SeqNumber, flags};

/// TTL / hop limit of packets Kracauer makes.
pub const HOP_LIMIT: u8 = 64;

/// A TCP segment to build.
#[derive(Debug, Clone, Copy)]
pub struct Segment<'a> {
    pub src_port: u16,
    pub dst_port: u16,
    pub seq: SeqNumber,
    pub ack: SeqNumber,
    /// Flag bits (`wire::tcp::flags`).
    pub flags: u8,
    pub window: u16,
    pub options: TcpOptionsSpec<'a>,
    pub payload: &'a [u8],
}

impl Segment<'_> {
    fn tcp_len(&self) -> usize {
        20 + self.options.len() + self.payload.len()
    }

    fn spec(&self) -> TcpSegmentSpec<'_> {
        TcpSegmentSpec {
            src_port: self.src_port,
            dst_port: self.dst_port,
            seq: self.seq,
            ack: if self.flags & flags::ACK != 0 {
                self.ack
            } else {
                SeqNumber(0)
            },
            flags: self.flags,
            window: self.window,
            options: self.options,
            payload: self.payload,
        }
    }

    /// Length of the IPv4 packet this segment makes.
    pub fn v4_len(&self) -> usize {
        20 + self.tcp_len()
    }

    /// Length of the IPv6 packet this segment makes.
    pub fn v6_len(&self) -> usize {
        40 + self.tcp_len()
    }

    /// Writes the segment as an IPv4 packet (DF set) into `out`; returns its length.
    pub fn emit_v4(
        &self,
        src: Ipv4Addr,
        dst: Ipv4Addr,
        ident: u16,
        out: &mut [u8],
    ) -> Result<usize, WireError> {
        emit_tcp(
            out,
            &IpHeaderSpec::V4 {
                src,
                dst,
                ttl: HOP_LIMIT,
                ident,
            },
            &self.spec(),
        )
    }

    /// Writes the segment as an IPv6 packet into `out`; returns its length.
    pub fn emit_v6(
        &self,
        src: &Ipv6Addr,
        dst: &Ipv6Addr,
        out: &mut [u8],
    ) -> Result<usize, WireError> {
        let ip = IpHeaderSpec::V6 {
            src: *src,
            dst: *dst,
            hop_limit: HOP_LIMIT,
            flow_label: 0,
        };
        emit_tcp(out, &ip, &self.spec())
    }
}

/// The RST that answers `seg` (RFC 9293 §3.10.7.1): with the ACK number as sequence if
/// `seg` had ACK, else sequence 0 with an ACK of everything `seg` occupied.
pub fn rst_for(
    src_port: u16,
    dst_port: u16,
    seg_seq: SeqNumber,
    seg_ack: Option<SeqNumber>,
    seg_len: u32,
) -> Segment<'static> {
    match seg_ack {
        Some(ack) => Segment {
            src_port,
            dst_port,
            seq: ack,
            ack: SeqNumber(0),
            flags: flags::RST,
            window: 0,
            options: TcpOptionsSpec::default(),
            payload: &[],
        },
        None => Segment {
            src_port,
            dst_port,
            seq: SeqNumber(0),
            ack: seg_seq + seg_len,
            flags: flags::RST | flags::ACK,
            window: 0,
            options: TcpOptionsSpec::default(),
            payload: &[],
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::wire::tcp::TcpPacket;
    use crate::wire::{Ipv4Packet, Ipv6Packet, TcpOption};

    fn synack() -> Segment<'static> {
        Segment {
            src_port: 443,
            dst_port: 51000,
            seq: SeqNumber(1000),
            ack: SeqNumber(2001),
            flags: flags::SYN | flags::ACK,
            window: 65535,
            options: TcpOptionsSpec {
                mss: Some(1440),
                window_scale: Some(7),
                sack_permitted: true,
                timestamps: Some((5, 6)),
                sack_blocks: &[],
            },
            payload: &[],
        }
    }

    #[test]
    fn synack_options_are_laid_out_as_linux_does() {
        let mut buf = [0u8; 128];
        let n = synack()
            .emit_v4(
                Ipv4Addr::new(203, 0, 113, 10),
                Ipv4Addr::new(198, 51, 100, 2),
                0,
                &mut buf,
            )
            .unwrap();
        assert_eq!(n, 20 + 20 + 20);
        assert_eq!(
            &buf[40..60],
            &[
                2, 4, 0x05, 0xa0, 4, 2, 8, 10, 0, 0, 0, 5, 0, 0, 0, 6, 1, 3, 3, 7
            ]
        );
    }

    #[test]
    fn emitted_v4_segment_parses_back_with_valid_checksums() {
        let mut buf = [0u8; 128];
        let (src, dst) = (
            Ipv4Addr::new(203, 0, 113, 10),
            Ipv4Addr::new(198, 51, 100, 2),
        );
        let mut seg = synack();
        seg.payload = b"hi";
        let n = seg.emit_v4(src, dst, 7, &mut buf).unwrap();
        let ip = Ipv4Packet::new_checked(&buf[..n]).unwrap();
        assert!(ip.verify_checksum());
        assert!(ip.dont_frag());
        let tcp = TcpPacket::new_checked(ip.payload()).unwrap();
        assert!(tcp.verify_checksum_v4(src, dst));
        assert_eq!(
            (tcp.seq_number(), tcp.ack_number()),
            (SeqNumber(1000), SeqNumber(2001))
        );
        assert!(tcp.syn() && tcp.ack());
        assert_eq!(tcp.payload(), b"hi");
        let opts: Vec<_> = tcp.options().map(|o| o.unwrap().1).collect();
        assert_eq!(
            opts,
            [
                TcpOption::Mss(1440),
                TcpOption::SackPermitted,
                TcpOption::Timestamps { tsval: 5, tsecr: 6 },
                TcpOption::WindowScale(7)
            ]
        );
    }

    #[test]
    fn emitted_v6_segment_parses_back_with_a_valid_checksum() {
        let mut buf = [0u8; 128];
        let src: Ipv6Addr = "2001:db8:64::c633:6402".parse().unwrap();
        let dst: Ipv6Addr = "2001:db8:1::2".parse().unwrap();
        let mut seg = synack();
        seg.options = TcpOptionsSpec {
            mss: Some(1440),
            ..TcpOptionsSpec::default()
        };
        let n = seg.emit_v6(&src, &dst, &mut buf).unwrap();
        let ip = Ipv6Packet::new_checked(&buf[..n]).unwrap();
        let tcp = TcpPacket::new_checked(ip.payload()).unwrap();
        assert!(tcp.verify_checksum_v6(&src, &dst));
        assert_eq!(tcp.header_len(), 24);
    }

    #[test]
    fn rst_answers_with_the_ack_number_or_acks_the_segment() {
        let r = rst_for(443, 51000, SeqNumber(10), Some(SeqNumber(99)), 5);
        assert_eq!((r.seq, r.flags), (SeqNumber(99), flags::RST));
        let r = rst_for(443, 51000, SeqNumber(10), None, 5);
        assert_eq!(
            (r.seq, r.ack, r.flags),
            (SeqNumber(0), SeqNumber(15), flags::RST | flags::ACK)
        );
    }

    #[test]
    fn short_buffer_is_an_error() {
        let mut buf = [0u8; 30];
        assert!(
            synack()
                .emit_v4(Ipv4Addr::LOCALHOST, Ipv4Addr::LOCALHOST, 0, &mut buf)
                .is_err()
        );
    }
}
