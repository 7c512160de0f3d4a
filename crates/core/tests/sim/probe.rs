//! Reads simulated packets: a checked parse of IPv4/IPv6 + TCP (header checksum, TCP
//! checksum, lengths) into a [`Seg`] summary, and the option stripper that plays a peer
//! that does not offer (or declines) window scaling, SACK or timestamps.

use std::fmt;
use std::net::IpAddr;

use std::net::{Ipv4Addr, Ipv6Addr};

use smoltcp::phy::ChecksumCapabilities;
use smoltcp::wire::{
    Icmpv6DstUnreachable, Icmpv6Packet, Icmpv6Repr, IpAddress, IpProtocol, Ipv4Packet, Ipv6Packet,
    Ipv6Repr, TcpOption, TcpPacket,
};

/// One TCP segment, as seen on a link.
#[derive(Debug, Clone, Default)]
pub struct Seg {
    pub v6: bool,
    pub src: Option<IpAddr>,
    pub dst: Option<IpAddr>,
    pub src_port: u16,
    pub dst_port: u16,
    pub seq: u32,
    pub ack: u32,
    pub syn: bool,
    pub ack_flag: bool,
    pub fin: bool,
    pub rst: bool,
    pub window: u16,
    pub payload_len: usize,
    pub mss: Option<u16>,
    pub wscale: Option<u8>,
    pub sack_permitted: bool,
    pub sack: Vec<(u32, u32)>,
    pub ts: Option<(u32, u32)>,
}

impl Seg {
    /// Sequence space the segment occupies (SYN and FIN count one each).
    pub fn seq_len(&self) -> u32 {
        self.payload_len as u32 + u32::from(self.syn) + u32::from(self.fin)
    }
}

impl fmt::Display for Seg {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let flags: String = [
            (self.syn, 'S'),
            (self.ack_flag, '.'),
            (self.fin, 'F'),
            (self.rst, 'R'),
        ]
        .iter()
        .filter(|(on, _)| *on)
        .map(|(_, c)| *c)
        .collect();
        write!(
            f,
            "v{} {}:{} > {}:{} [{flags}] seq {} ack {} win {} len {}",
            if self.v6 { 6 } else { 4 },
            self.src.map_or("?".into(), |a| a.to_string()),
            self.src_port,
            self.dst.map_or("?".into(), |a| a.to_string()),
            self.dst_port,
            self.seq,
            self.ack,
            self.window,
            self.payload_len
        )?;
        if let Some(m) = self.mss {
            write!(f, " mss {m}")?;
        }
        if let Some(w) = self.wscale {
            write!(f, " ws {w}")?;
        }
        if self.sack_permitted {
            write!(f, " sackOK")?;
        }
        if !self.sack.is_empty() {
            write!(f, " sack {:?}", self.sack)?;
        }
        if let Some((v, e)) = self.ts {
            write!(f, " ts {v}/{e}")?;
        }
        Ok(())
    }
}

/// The IP addresses and the TCP bytes of a packet, checking the IP layer.
fn ip_layer(packet: &[u8]) -> Result<(bool, IpAddress, IpAddress, &[u8]), String> {
    match packet.first().map(|b| b >> 4) {
        Some(4) => {
            let ip = Ipv4Packet::new_checked(packet).map_err(|e| format!("IPv4: {e}"))?;
            if !ip.verify_checksum() {
                return Err("IPv4 header checksum".into());
            }
            if usize::from(ip.total_len()) != packet.len() {
                return Err(format!(
                    "IPv4 total length {} but {} bytes",
                    ip.total_len(),
                    packet.len()
                ));
            }
            if ip.next_header() != IpProtocol::Tcp {
                return Err(format!("IPv4 protocol {}", ip.next_header()));
            }
            let (src, dst) = (ip.src_addr(), ip.dst_addr());
            let start = usize::from(ip.header_len());
            Ok((false, src.into(), dst.into(), &packet[start..]))
        }
        Some(6) => {
            let ip = Ipv6Packet::new_checked(packet).map_err(|e| format!("IPv6: {e}"))?;
            if 40 + usize::from(ip.payload_len()) != packet.len() {
                return Err(format!(
                    "IPv6 payload length {} but {} bytes",
                    ip.payload_len(),
                    packet.len()
                ));
            }
            if ip.next_header() != IpProtocol::Tcp {
                return Err(format!("IPv6 next header {}", ip.next_header()));
            }
            let (src, dst) = (ip.src_addr(), ip.dst_addr());
            Ok((true, src.into(), dst.into(), &packet[40..]))
        }
        other => Err(format!("IP version {other:?}")),
    }
}

/// Parses a packet, checking every checksum and length.
pub fn parse(packet: &[u8]) -> Result<Seg, String> {
    let (v6, src, dst, tcp_bytes) = ip_layer(packet)?;
    let tcp = TcpPacket::new_checked(tcp_bytes).map_err(|e| format!("TCP: {e}"))?;
    if !tcp.verify_checksum(&src, &dst) {
        return Err("TCP checksum".into());
    }
    let mut seg = Seg {
        v6,
        src: Some(src.into()),
        dst: Some(dst.into()),
        src_port: tcp.src_port(),
        dst_port: tcp.dst_port(),
        seq: tcp.seq_number().0 as u32,
        ack: tcp.ack_number().0 as u32,
        syn: tcp.syn(),
        ack_flag: tcp.ack(),
        fin: tcp.fin(),
        rst: tcp.rst(),
        window: tcp.window_len(),
        payload_len: tcp.payload().len(),
        ..Seg::default()
    };
    let mut options = tcp.options();
    while !options.is_empty() {
        let (rest, option) = TcpOption::parse(options).map_err(|e| format!("TCP option: {e}"))?;
        match option {
            TcpOption::EndOfList => break,
            TcpOption::NoOperation | TcpOption::Unknown { .. } => {}
            TcpOption::MaxSegmentSize(m) => seg.mss = Some(m),
            TcpOption::WindowScale(w) => seg.wscale = Some(w),
            TcpOption::SackPermitted => seg.sack_permitted = true,
            TcpOption::SackRange(r) => seg.sack.extend(r.iter().flatten()),
            TcpOption::TimeStamp { tsval, tsecr } => seg.ts = Some((tsval, tsecr)),
        }
        options = rest;
    }
    Ok(seg)
}

/// Options to take out of SYNs (replaced by NOPs, checksum fixed).
#[derive(Debug, Clone, Copy, Default)]
pub struct Strip {
    pub wscale: bool,
    pub sack: bool,
    pub timestamps: bool,
}

impl Strip {
    pub fn any(&self) -> bool {
        self.wscale || self.sack || self.timestamps
    }
}

/// Lowers the MSS option of a SYN or SYN-ACK to `mss` (a middlebox clamping it).
pub fn clamp_mss(packet: &mut [u8], mss: u16) {
    let Ok((_, src, dst, _)) = ip_layer(packet) else {
        return;
    };
    let start = if packet[0] >> 4 == 4 {
        usize::from(packet[0] & 0x0f) * 4
    } else {
        40
    };
    let Ok(mut tcp) = TcpPacket::new_checked(&mut packet[start..]) else {
        return;
    };
    if !tcp.syn() {
        return;
    }
    let options = tcp.options_mut();
    let mut i = 0;
    while i + 1 < options.len() {
        let kind = options[i];
        let len = match kind {
            0 => break,
            1 => 1,
            _ => usize::from(options[i + 1]).max(2),
        };
        if kind == 2 && len == 4 && i + 4 <= options.len() {
            let old = u16::from_be_bytes([options[i + 2], options[i + 3]]);
            options[i + 2..i + 4].copy_from_slice(&old.min(mss).to_be_bytes());
        }
        i += len;
    }
    tcp.fill_checksum(&src, &dst);
}

/// Replaces the options `strip` names with NOPs if `packet` is a SYN (without ACK).
pub fn strip_syn_options(packet: &mut [u8], strip: Strip) {
    let Ok((_, src, dst, _)) = ip_layer(packet) else {
        return;
    };
    let start = if packet[0] >> 4 == 4 {
        usize::from(packet[0] & 0x0f) * 4
    } else {
        40
    };
    let Ok(mut tcp) = TcpPacket::new_checked(&mut packet[start..]) else {
        return;
    };
    if !tcp.syn() || tcp.ack() {
        return;
    }
    let options = tcp.options_mut();
    let mut i = 0;
    while i < options.len() {
        let kind = options[i];
        let len = match kind {
            0 => break,
            1 => 1,
            _ => usize::from(*options.get(i + 1).unwrap_or(&2)).max(2),
        };
        let gone = (kind == 3 && strip.wscale)
            || (kind == 4 && strip.sack)
            || (kind == 8 && strip.timestamps);
        if gone {
            for b in options.iter_mut().skip(i).take(len) {
                *b = 1;
            }
        }
        i += len;
    }
    tcp.fill_checksum(&src, &dst);
}

/// The TCP payload of a packet that [`parse`] accepts.
pub fn tcp_payload(packet: &[u8]) -> Option<&[u8]> {
    let (_, _, _, tcp_bytes) = ip_layer(packet).ok()?;
    let tcp = TcpPacket::new_checked(tcp_bytes).ok()?;
    let start = usize::from(tcp.header_len());
    tcp_bytes.get(start..)
}

/// The ICMPv6 error a router at `router` sends back for the IPv6 `packet`, quoting its
/// header and the first 64 bytes after it: "address unreachable", or "packet too big"
/// with `mtu`.
pub fn icmpv6_error(router: Ipv6Addr, packet: &[u8], mtu: Option<u32>) -> Option<Vec<u8>> {
    let orig = Ipv6Packet::new_checked(packet).ok()?;
    let header = Ipv6Repr::parse(&orig).ok()?;
    let data = &orig.payload()[..orig.payload().len().min(64)];
    let icmp = match mtu {
        Some(mtu) => Icmpv6Repr::PktTooBig { mtu, header, data },
        None => Icmpv6Repr::DstUnreachable {
            reason: Icmpv6DstUnreachable::AddrUnreachable,
            header,
            data,
        },
    };
    let ip = Ipv6Repr {
        src_addr: router,
        dst_addr: header.src_addr,
        next_header: IpProtocol::Icmpv6,
        payload_len: icmp.buffer_len(),
        hop_limit: 64,
    };
    let mut buf = vec![0; 40 + icmp.buffer_len()];
    ip.emit(&mut Ipv6Packet::new_unchecked(&mut buf[..]));
    icmp.emit(
        &router,
        &header.src_addr,
        &mut Icmpv6Packet::new_unchecked(&mut buf[40..]),
        &ChecksumCapabilities::default(),
    );
    Some(buf)
}

/// An ICMPv4 error, as the client gets it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Icmp4 {
    pub kind: u8,
    pub code: u8,
    /// Next-hop MTU (type 3 code 4).
    pub mtu: u16,
    /// The quoted packet: addresses, ports, sequence and acknowledgement numbers.
    pub inner: (IpAddr, IpAddr, u16, u16, u32, u32),
}

/// Parses an ICMPv4 error quoting a TCP segment, checking both checksums that can be
/// checked (IPv4 header, ICMP message).
pub fn parse_icmp4(packet: &[u8]) -> Result<Icmp4, String> {
    let ip = Ipv4Packet::new_checked(packet).map_err(|e| format!("IPv4: {e}"))?;
    if !ip.verify_checksum() || ip.next_header() != IpProtocol::Icmp {
        return Err("not a valid ICMPv4 packet".into());
    }
    let icmp = ip.payload();
    if icmp.len() < 8 + 20 + 8 {
        return Err("ICMPv4 too short to quote a TCP header".into());
    }
    if smoltcp::wire::checksum::data(icmp) != 0xffff {
        return Err("ICMPv4 checksum".into());
    }
    let inner = Ipv4Packet::new_unchecked(&icmp[8..]);
    let hl = usize::from(inner.header_len());
    let tcp = icmp.get(8 + hl..8 + hl + 12).ok_or("quote too short")?;
    let be32 = |b: &[u8]| u32::from_be_bytes([b[0], b[1], b[2], b[3]]);
    Ok(Icmp4 {
        kind: icmp[0],
        code: icmp[1],
        mtu: u16::from_be_bytes([icmp[6], icmp[7]]),
        inner: (
            inner.src_addr().into(),
            inner.dst_addr().into(),
            u16::from_be_bytes([tcp[0], tcp[1]]),
            u16::from_be_bytes([tcp[2], tcp[3]]),
            be32(&tcp[4..8]),
            be32(&tcp[8..12]),
        ),
    })
}

/// The ICMPv4 "fragmentation needed" (next-hop `mtu`) a router at `router` sends back
/// for the IPv4 `packet`, quoting its header and the first 64 bytes after it.
pub fn icmpv4_frag_needed(router: Ipv4Addr, packet: &[u8], mtu: u16) -> Option<Vec<u8>> {
    let orig = Ipv4Packet::new_checked(packet).ok()?;
    let quote = &packet[..packet.len().min(usize::from(orig.header_len()) + 64)];
    let mut icmp = vec![3, 4, 0, 0, 0, 0];
    icmp.extend_from_slice(&mtu.to_be_bytes());
    icmp.extend_from_slice(quote);
    let sum = !smoltcp::wire::checksum::data(&icmp);
    icmp[2..4].copy_from_slice(&sum.to_be_bytes());
    let mut p = vec![0x45, 0, 0, 0, 0, 0, 0, 0, 64, 1, 0, 0];
    p.extend_from_slice(&router.octets());
    p.extend_from_slice(&orig.src_addr().octets());
    let total = (20 + icmp.len()) as u16;
    p[2..4].copy_from_slice(&total.to_be_bytes());
    p.extend_from_slice(&icmp);
    Ipv4Packet::new_unchecked(&mut p[..]).fill_checksum();
    Some(p)
}

/// An ICMPv6 error, as the backend gets it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Icmp6 {
    pub kind: u8,
    pub code: u8,
    /// MTU (packet too big).
    pub mtu: u32,
    /// The quoted packet: addresses, ports, sequence and acknowledgement numbers.
    pub inner: (IpAddr, IpAddr, u16, u16, u32, u32),
}

/// Parses an ICMPv6 error quoting a TCP segment, checking its checksum.
pub fn parse_icmp6(packet: &[u8]) -> Result<Icmp6, String> {
    let ip = Ipv6Packet::new_checked(packet).map_err(|e| format!("IPv6: {e}"))?;
    if ip.next_header() != IpProtocol::Icmpv6 {
        return Err("not ICMPv6".into());
    }
    let icmp = Icmpv6Packet::new_checked(ip.payload()).map_err(|e| format!("ICMPv6: {e}"))?;
    if !icmp.verify_checksum(&ip.src_addr(), &ip.dst_addr()) {
        return Err("ICMPv6 checksum".into());
    }
    let body = ip.payload();
    // The quote is cut short, so its payload length says more than is there.
    let quoted = body.get(8..48).ok_or("no quoted IPv6 header")?;
    let inner = Ipv6Packet::new_unchecked(quoted);
    let tcp = body.get(48..60).ok_or("quote too short")?;
    let be32 = |b: &[u8]| u32::from_be_bytes([b[0], b[1], b[2], b[3]]);
    Ok(Icmp6 {
        kind: body[0],
        code: body[1],
        mtu: be32(&body[4..8]),
        inner: (
            inner.src_addr().into(),
            inner.dst_addr().into(),
            u16::from_be_bytes([tcp[0], tcp[1]]),
            u16::from_be_bytes([tcp[2], tcp[3]]),
            be32(&tcp[4..8]),
            be32(&tcp[8..12]),
        ),
    })
}
