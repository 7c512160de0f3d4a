//! Building TCP segments (SYN-ACK, RST, ACK with data) with their IPv4 or IPv6 header
//! into a caller-provided buffer, with options laid out as Linux lays them out and both
//! checksums filled in. No allocation.

use std::net::{Ipv4Addr, Ipv6Addr};

use super::ipv4::{self, Ipv4Packet};
use super::ipv6::{self, Ipv6Packet};
use super::tcp::{self, SeqNumber, TcpPacket, kind};
use super::{Result, WireError, ip_proto};

/// The IP header to put in front of a built segment.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum IpHeaderSpec {
    /// IPv4 header without options; Don't Fragment set.
    V4 {
        /// Source address.
        src: Ipv4Addr,
        /// Destination address.
        dst: Ipv4Addr,
        /// Time to live.
        ttl: u8,
        /// Identification.
        ident: u16,
    },
    /// IPv6 header without extension headers.
    V6 {
        /// Source address.
        src: Ipv6Addr,
        /// Destination address.
        dst: Ipv6Addr,
        /// Hop limit.
        hop_limit: u8,
        /// Flow label (20 bits).
        flow_label: u32,
    },
}

impl IpHeaderSpec {
    /// Length of the IP header this spec produces.
    pub fn header_len(&self) -> usize {
        match self {
            IpHeaderSpec::V4 { .. } => ipv4::HEADER_LEN,
            IpHeaderSpec::V6 { .. } => ipv6::HEADER_LEN,
        }
    }
}

/// TCP options to emit: the one type for options Kracauer writes (the parsed side is
/// [`tcp::TcpOption`], one option as it sits in a header). A segment's summary
/// (`tcp::seg::SegInfo`) holds the options it negotiates in this type too. At most four
/// SACK blocks fit, three alongside timestamps.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct TcpOptionsSpec<'a> {
    /// Maximum segment size.
    pub mss: Option<u16>,
    /// Window scale shift count.
    pub window_scale: Option<u8>,
    /// SACK permitted.
    pub sack_permitted: bool,
    /// Timestamps (TSval, TSecr).
    pub timestamps: Option<(u32, u32)>,
    /// SACK blocks (left edge, right edge).
    pub sack_blocks: &'a [(SeqNumber, SeqNumber)],
}

/// Longest TCP options area.
pub const MAX_OPTIONS_LEN: usize = tcp::MAX_HEADER_LEN - tcp::HEADER_LEN;

impl TcpOptionsSpec<'_> {
    /// Bytes these options take, padded to a multiple of 4 (at most 40: what does not
    /// fit is refused by [`TcpOptionsSpec::write`]).
    pub fn len(&self) -> usize {
        self.write(&mut [0; MAX_OPTIONS_LEN])
            .unwrap_or(MAX_OPTIONS_LEN)
    }

    /// Whether there are none.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Writes the options into `out` in the layout Linux uses (MSS; SACK-permitted
    /// with timestamps, or NOP NOP timestamps; NOP window scale; NOP NOP SACK-permitted
    /// when there are no timestamps; NOP NOP SACK), padded with NOPs to a multiple of
    /// four. Returns the length written, or [`WireError::ValueOutOfRange`] if the
    /// options exceed 40 bytes, or [`WireError::BufferTooSmall`].
    pub fn write(&self, out: &mut [u8]) -> Result<usize> {
        let mut w = OptionWriter {
            bytes: [0; MAX_OPTIONS_LEN],
            len: 0,
        };
        if let Some(mss) = self.mss {
            let m = mss.to_be_bytes();
            w.put(&[kind::MSS, 4, m[0], m[1]])?;
        }
        if let Some((tsval, tsecr)) = self.timestamps {
            if self.sack_permitted {
                w.put(&[kind::SACK_PERMITTED, 2])?;
            } else {
                w.put(&[kind::NOP, kind::NOP])?;
            }
            w.put(&[kind::TIMESTAMPS, 10])?;
            w.put(&tsval.to_be_bytes())?;
            w.put(&tsecr.to_be_bytes())?;
        }
        if let Some(ws) = self.window_scale {
            w.put(&[kind::NOP, kind::WINDOW_SCALE, 3, ws])?;
        }
        if self.sack_permitted && self.timestamps.is_none() {
            w.put(&[kind::NOP, kind::NOP, kind::SACK_PERMITTED, 2])?;
        }
        if !self.sack_blocks.is_empty() {
            let len = 2 + 8 * self.sack_blocks.len();
            let len = u8::try_from(len).map_err(|_| WireError::ValueOutOfRange)?;
            w.put(&[kind::NOP, kind::NOP, kind::SACK, len])?;
            for (l, r) in self.sack_blocks {
                w.put(&l.0.to_be_bytes())?;
                w.put(&r.0.to_be_bytes())?;
            }
        }
        while w.len % 4 != 0 {
            w.put(&[kind::NOP])?;
        }
        let dst = out.get_mut(..w.len).ok_or(WireError::BufferTooSmall)?;
        dst.copy_from_slice(&w.bytes[..w.len]);
        Ok(w.len)
    }
}

/// Accumulates option bytes, refusing to go past 40.
struct OptionWriter {
    bytes: [u8; MAX_OPTIONS_LEN],
    len: usize,
}

impl OptionWriter {
    fn put(&mut self, src: &[u8]) -> Result<()> {
        let dst = self
            .bytes
            .get_mut(self.len..self.len + src.len())
            .ok_or(WireError::ValueOutOfRange)?;
        dst.copy_from_slice(src);
        self.len += src.len();
        Ok(())
    }
}

/// A TCP segment to build.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TcpSegmentSpec<'a> {
    /// Source port.
    pub src_port: u16,
    /// Destination port.
    pub dst_port: u16,
    /// Sequence number.
    pub seq: SeqNumber,
    /// Acknowledgment number (written as given; set [`tcp::flags::ACK`] to mean it).
    pub ack: SeqNumber,
    /// Flag bits (see [`tcp::flags`]).
    pub flags: u8,
    /// Window field.
    pub window: u16,
    /// Options.
    pub options: TcpOptionsSpec<'a>,
    /// Payload (copied in).
    pub payload: &'a [u8],
}

/// Writes an IP header and a TCP segment into the start of `buf`, fills in the IPv4
/// header checksum and the full TCP checksum, and returns the packet length.
///
/// Errors: [`WireError::BufferTooSmall`] if `buf` cannot hold the packet,
/// [`WireError::ValueOutOfRange`] if the options exceed 40 bytes or the packet
/// exceeds 65535 bytes (IPv4 total length, IPv6 payload length).
pub fn emit_tcp(buf: &mut [u8], ip: &IpHeaderSpec, seg: &TcpSegmentSpec<'_>) -> Result<usize> {
    let ip_len = ip.header_len();
    let tcp_start = ip_len;
    let opts_start = tcp_start + tcp::HEADER_LEN;
    let opts_len = seg
        .options
        .write(buf.get_mut(opts_start..).ok_or(WireError::BufferTooSmall)?)?;
    let tcp_len = tcp::HEADER_LEN + opts_len + seg.payload.len();
    let total = ip_len + tcp_len;
    let l3_len = match ip {
        IpHeaderSpec::V4 { .. } => total,
        IpHeaderSpec::V6 { .. } => tcp_len,
    };
    let l3_len = u16::try_from(l3_len).map_err(|_| WireError::ValueOutOfRange)?;
    let pkt = buf.get_mut(..total).ok_or(WireError::BufferTooSmall)?;
    let (ip_bytes, seg_bytes) = pkt.split_at_mut(tcp_start);

    let mut t = TcpPacket::new_unchecked(&mut *seg_bytes);
    t.set_src_port(seg.src_port);
    t.set_dst_port(seg.dst_port);
    t.set_seq_number(seg.seq);
    t.set_ack_number(seg.ack);
    t.as_bytes_mut()[tcp::field::FLAGS.start] = 0;
    t.set_header_len(tcp::HEADER_LEN + opts_len);
    t.set_flags(seg.flags);
    t.set_window_len(seg.window);
    t.set_checksum(0);
    t.set_urgent_at(0);
    t.payload_mut().copy_from_slice(seg.payload);

    match *ip {
        IpHeaderSpec::V4 {
            src,
            dst,
            ttl,
            ident,
        } => {
            let mut p = Ipv4Packet::new_unchecked(ip_bytes);
            p.set_version(4);
            p.set_header_len(ipv4::HEADER_LEN);
            p.set_tos(0);
            p.set_total_len(l3_len);
            p.set_ident(ident);
            p.set_flags_and_offset(0);
            p.set_dont_frag(true);
            p.set_ttl(ttl);
            p.set_protocol(ip_proto::TCP);
            p.set_src_addr(src);
            p.set_dst_addr(dst);
            p.fill_checksum();
            t.fill_checksum_v4(src, dst);
        }
        IpHeaderSpec::V6 {
            src,
            dst,
            hop_limit,
            flow_label,
        } => {
            let mut p = Ipv6Packet::new_unchecked(ip_bytes);
            p.as_bytes_mut()[..4].copy_from_slice(&[0x60, 0, 0, 0]);
            p.set_flow_label(flow_label);
            p.set_payload_len(l3_len);
            p.set_next_header(ip_proto::TCP);
            p.set_hop_limit(hop_limit);
            p.set_src_addr(&src);
            p.set_dst_addr(&dst);
            t.fill_checksum_v6(&src, &dst);
        }
    }
    Ok(total)
}

#[cfg(test)]
#[path = "build_tests.rs"]
mod tests;
