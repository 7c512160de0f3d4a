//! Building the segments Kracauer sends itself: SYN-ACKs and RSTs to clients, the SYN,
//! ACK and peeked data to backends, refusals.
//!
//! Options are laid out as Linux lays them out (MSS; SACK-permitted with timestamps, or
//! NOPs; NOP and window scale), so a capture of Kracauer looks like a capture of Linux.

use std::net::{Ipv4Addr, Ipv6Addr};

use crate::wire::ip_proto;
use crate::wire::tcp::{SeqNumber, TcpPacket, flags, kind};
use crate::wire::{Ipv4Packet, Ipv6Packet, WireError};

/// TTL / hop limit of packets Kracauer makes.
pub const HOP_LIMIT: u8 = 64;

/// Options a segment carries.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Options {
    pub mss: Option<u16>,
    pub wscale: Option<u8>,
    pub sack_permitted: bool,
    /// (TSval, TSecr)
    pub timestamps: Option<(u32, u32)>,
}

impl Options {
    /// Bytes these options take, padded to a multiple of 4.
    pub fn len(&self) -> usize {
        let mut n = 0;
        if self.mss.is_some() {
            n += 4;
        }
        if self.timestamps.is_some() {
            n += 12; // SACK-permitted rides in the two NOPs before the timestamps
        } else if self.sack_permitted {
            n += 4;
        }
        if self.wscale.is_some() {
            n += 4;
        }
        n
    }

    /// Whether there are none.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    fn write(&self, out: &mut [u8]) {
        let mut at = 0;
        let mut put = |bytes: &[u8]| {
            out[at..at + bytes.len()].copy_from_slice(bytes);
            at += bytes.len();
        };
        if let Some(mss) = self.mss {
            let m = mss.to_be_bytes();
            put(&[kind::MSS, 4, m[0], m[1]]);
        }
        match (self.sack_permitted, self.timestamps) {
            (sack, Some((tsval, tsecr))) => {
                if sack {
                    put(&[kind::SACK_PERMITTED, 2]);
                } else {
                    put(&[kind::NOP, kind::NOP]);
                }
                put(&[kind::TIMESTAMPS, 10]);
                put(&tsval.to_be_bytes());
                put(&tsecr.to_be_bytes());
            }
            (true, None) => put(&[kind::NOP, kind::NOP, kind::SACK_PERMITTED, 2]),
            (false, None) => {}
        }
        if let Some(ws) = self.wscale {
            put(&[kind::NOP, kind::WINDOW_SCALE, 3, ws]);
        }
    }
}

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
    pub options: Options,
    pub payload: &'a [u8],
}

impl Segment<'_> {
    fn tcp_len(&self) -> usize {
        20 + self.options.len() + self.payload.len()
    }

    fn write_tcp(&self, out: &mut [u8]) {
        let hl = 20 + self.options.len();
        let mut tcp = TcpPacket::new_unchecked(&mut *out);
        tcp.set_src_port(self.src_port);
        tcp.set_dst_port(self.dst_port);
        tcp.set_seq_number(self.seq);
        tcp.set_ack_number(if self.flags & flags::ACK != 0 {
            self.ack
        } else {
            SeqNumber(0)
        });
        tcp.set_header_len(hl);
        tcp.set_flags(self.flags);
        tcp.set_window_len(self.window);
        tcp.set_checksum(0);
        tcp.set_urgent_at(0);
        self.options.write(&mut out[20..hl]);
        out[hl..hl + self.payload.len()].copy_from_slice(self.payload);
    }

    /// Length of the IPv4 packet this segment makes.
    pub fn v4_len(&self) -> usize {
        20 + self.tcp_len()
    }

    /// Length of the IPv6 packet this segment makes.
    pub fn v6_len(&self) -> usize {
        40 + self.tcp_len()
    }

    /// Writes the segment as an IPv4 packet into `out`; returns its length.
    pub fn emit_v4(
        &self,
        src: Ipv4Addr,
        dst: Ipv4Addr,
        ident: u16,
        out: &mut [u8],
    ) -> Result<usize, WireError> {
        let len = self.v4_len();
        let total = u16::try_from(len).map_err(|_| WireError::BadTotalLen)?;
        let out = out.get_mut(..len).ok_or(WireError::Truncated)?;
        {
            let mut ip = Ipv4Packet::new_unchecked(&mut *out);
            ip.set_version(4);
            ip.set_header_len(20);
            ip.set_tos(0);
            ip.set_total_len(total);
            ip.set_ident(ident);
            ip.set_flags_and_offset(0x4000); // DF
            ip.set_ttl(HOP_LIMIT);
            ip.set_protocol(ip_proto::TCP);
            ip.set_src_addr(src);
            ip.set_dst_addr(dst);
            ip.fill_checksum();
        }
        self.write_tcp(&mut out[20..]);
        TcpPacket::new_unchecked(&mut out[20..]).fill_checksum_v4(src, dst);
        Ok(len)
    }

    /// Writes the segment as an IPv6 packet into `out`; returns its length.
    pub fn emit_v6(
        &self,
        src: &Ipv6Addr,
        dst: &Ipv6Addr,
        out: &mut [u8],
    ) -> Result<usize, WireError> {
        let len = self.v6_len();
        let payload_len = u16::try_from(self.tcp_len()).map_err(|_| WireError::BadTotalLen)?;
        let out = out.get_mut(..len).ok_or(WireError::Truncated)?;
        {
            let mut ip = Ipv6Packet::new_unchecked(&mut *out);
            ip.set_version(6);
            ip.set_traffic_class(0);
            ip.set_flow_label(0);
            ip.set_payload_len(payload_len);
            ip.set_next_header(ip_proto::TCP);
            ip.set_hop_limit(HOP_LIMIT);
            ip.set_src_addr(src);
            ip.set_dst_addr(dst);
        }
        self.write_tcp(&mut out[40..]);
        TcpPacket::new_unchecked(&mut out[40..]).fill_checksum_v6(src, dst);
        Ok(len)
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
            options: Options::default(),
            payload: &[],
        },
        None => Segment {
            src_port,
            dst_port,
            seq: SeqNumber(0),
            ack: seg_seq + seg_len,
            flags: flags::RST | flags::ACK,
            window: 0,
            options: Options::default(),
            payload: &[],
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::wire::TcpOption;

    fn synack() -> Segment<'static> {
        Segment {
            src_port: 443,
            dst_port: 51000,
            seq: SeqNumber(1000),
            ack: SeqNumber(2001),
            flags: flags::SYN | flags::ACK,
            window: 65535,
            options: Options {
                mss: Some(1440),
                wscale: Some(7),
                sack_permitted: true,
                timestamps: Some((5, 6)),
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
        seg.options = Options {
            mss: Some(1440),
            ..Options::default()
        };
        let n = seg.emit_v6(&src, &dst, &mut buf).unwrap();
        let ip = Ipv6Packet::new_checked(&buf[..n]).unwrap();
        let tcp = TcpPacket::new_checked(ip.payload()).unwrap();
        assert!(tcp.verify_checksum_v6(&src, &dst));
        assert_eq!(tcp.header_len(), 24);
    }

    #[test]
    fn sack_without_timestamps_is_padded_with_nops() {
        let o = Options {
            sack_permitted: true,
            ..Options::default()
        };
        let mut b = [0u8; 4];
        o.write(&mut b);
        assert_eq!(b, [1, 1, 4, 2]);
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
