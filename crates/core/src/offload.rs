//! TUN offloads: the virtio-net header in front of every packet on a TUN opened with
//! `IFF_VNET_HDR`, what it says about a packet read ([`inbound`]), and the header a
//! forwarded packet is written back with ([`outbound`]).
//!
//! With `TUN_F_CSUM | TUN_F_TSO4 | TUN_F_TSO6` the kernel hands over TCP segments whose
//! checksum is still to be finished (`NEEDS_CSUM`: the field holds the pseudo-header sum,
//! see [`ChecksumForm::Partial`](crate::wire::ChecksumForm::Partial)) and GSO super-packets: one IP header, one TCP header and
//! up to 64 KB of payload that the kernel cuts into `gso_size` segments when the packet
//! leaves. Translation touches headers only, so a super-packet is translated as one
//! packet: the engine applies the pseudo-header's change to the partial checksum, and
//! [`outbound`] switches `gso_type` between TCPv4 and TCPv6 and moves `csum_start` to
//! where the TCP header now begins. `gso_size` (payload bytes per segment) is kept: the
//! sender chose it within the MSS its peer announced, and translation changes no
//! payload. Each IPv4→IPv6 segment grows by 20 bytes, which the MSS Kracauer announces
//! to clients already allows for (IPv6 MTU − 60). An IPv4 super-packet's DF bit is set
//! by its segments' size ([`set_segment_df`]), as RFC 7915 wants for each of them.
//!
//! UDP segmentation offload (`TUN_F_USO4/6`, kernels from 6.2) is on where the kernel has
//! it: a UDP super-packet (`GSO_UDP_L4`, both families) is read the same way and keeps
//! its partial checksum and `gso_type`: the engine translates a QUIC flow's super-packet
//! whole (`engine/udp.rs`; UDP GSO is the same `gso_type` in both families), and the
//! kernel cuts it into datagrams when it leaves. DF stays set on an IPv4 one (QUIC sets
//! DF on every datagram). Any other partial checksum (ICMP, UDP without GSO) is
//! finished here in software before the engine sees it: such packets are rare and small.
//! UFO (`GSO_UDP`, fragmenting) is never enabled and is refused.
//!
//! The header is the legacy 10-byte `struct virtio_net_hdr`, in the host's byte order
//! (the TUN default without `TUNSETVNETLE`/`TUNSETVNETBE`).

use thiserror::Error;

use crate::base::RxChecksum;
use crate::wire::ip_proto;
use crate::wire::ipv4::Ipv4Packet;
use crate::wire::ipv4::ipv4_dont_fragment;
use crate::wire::ipv6::ExtHeaders;
use crate::wire::{checksum, ne16};

/// Length of the virtio-net header in front of each packet.
pub const HEADER_LEN: usize = 10;

/// The header for a packet with nothing to say: finished checksum, no GSO. Every packet
/// the engine makes itself is written with it.
pub const PLAIN: [u8; HEADER_LEN] = [0; HEADER_LEN];

/// Named byte ranges of the header.
pub mod field {
    use core::ops::Range;
    pub const FLAGS: usize = 0;
    pub const GSO_TYPE: usize = 1;
    pub const HDR_LEN: Range<usize> = 2..4;
    pub const GSO_SIZE: Range<usize> = 4..6;
    pub const CSUM_START: Range<usize> = 6..8;
    pub const CSUM_OFFSET: Range<usize> = 8..10;
}

/// `flags` bits.
pub mod flags {
    /// The checksum is partial: finish it from `csum_start`, store at `+csum_offset`.
    pub const NEEDS_CSUM: u8 = 1;
    /// The kernel verified the checksum.
    pub const DATA_VALID: u8 = 2;
}

/// `gso_type` values.
pub mod gso {
    pub const NONE: u8 = 0;
    pub const TCPV4: u8 = 1;
    pub const UDP: u8 = 3;
    pub const TCPV6: u8 = 4;
    pub const UDP_L4: u8 = 5;
    /// Flag bit: the sender set ECN CWR; segments after the first must clear it.
    pub const ECN: u8 = 0x80;
}

/// Where the checksum field lies within the TCP header.
const TCP_CSUM_OFFSET: u16 = crate::wire::tcp::field::CHECKSUM.start as u16;
/// Where the checksum field lies within the UDP header.
const UDP_CSUM_OFFSET: u16 = crate::wire::udp::field::CHECKSUM.start as u16;
/// UDP header length.
const UDP_HEADER_LEN: usize = 8;

/// Why a header read from the TUN was refused (the packet is dropped and counted).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Error)]
pub enum OffloadError {
    #[error("the virtio-net header is {0} bytes, not {HEADER_LEN}")]
    HeaderLength(usize),
    #[error("GSO type {0:#04x} is neither TCP nor UDP L4 (UFO is never enabled)")]
    UnsupportedGso(u8),
    #[error("a GSO packet without a partial checksum")]
    GsoWithoutPartialChecksum,
    #[error("a GSO packet with segment size 0")]
    GsoSizeZero,
    #[error("GSO type TCPv{gso} on an IPv{ip} packet")]
    GsoFamilyMismatch { gso: u8, ip: u8 },
    #[error("a GSO packet whose partial checksum is not at its TCP or UDP header's")]
    GsoNotTcp,
    #[error("checksum start {start} + offset {offset} lies beyond the {len}-byte packet")]
    ChecksumOutside { start: u16, offset: u16, len: usize },
    #[error("the translated packet is not a TCP or UDP packet this module can describe")]
    Unrecognised,
}

/// A header read from the TUN, checked against its packet.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Inbound {
    /// What the engine may assume about the transport checksum.
    pub checksum: RxChecksum,
    /// Set for a GSO super-packet (always TCP or UDP with a partial checksum).
    pub gso: Option<Gso>,
}

/// A super-packet's segmentation.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Gso {
    /// Payload bytes per segment.
    pub size: u16,
    /// `VIRTIO_NET_HDR_GSO_ECN`.
    pub ecn: bool,
    /// UDP (`GSO_UDP_L4`), not TCP.
    pub udp: bool,
}

/// Reads the header `hdr` of `packet` (an IP packet, no headroom). A partial checksum
/// on anything but a TCP header is finished here, in `packet`; everything else is left
/// as it is.
pub fn inbound(hdr: &[u8], packet: &mut [u8]) -> Result<Inbound, OffloadError> {
    if hdr.len() != HEADER_LEN {
        return Err(OffloadError::HeaderLength(hdr.len()));
    }
    let flags = hdr[field::FLAGS];
    let gso_type = hdr[field::GSO_TYPE];
    let gso_size = ne16(hdr, field::GSO_SIZE.start);
    let start = ne16(hdr, field::CSUM_START.start);
    let offset = ne16(hdr, field::CSUM_OFFSET.start);
    let version = packet.first().map_or(0, |b| b >> 4);

    let gso = match gso_type & !gso::ECN {
        gso::NONE => None,
        t @ (gso::TCPV4 | gso::TCPV6 | gso::UDP_L4) => {
            if t != gso::UDP_L4 {
                let want = if t == gso::TCPV4 { 4 } else { 6 };
                if version != want {
                    return Err(OffloadError::GsoFamilyMismatch {
                        gso: want,
                        ip: version,
                    });
                }
            }
            if flags & flags::NEEDS_CSUM == 0 {
                return Err(OffloadError::GsoWithoutPartialChecksum);
            }
            if gso_size == 0 {
                return Err(OffloadError::GsoSizeZero);
            }
            if t == gso::UDP_L4 && gso_type & gso::ECN != 0 {
                // The kernel takes the ECN flag with TCP only, and would refuse it back.
                return Err(OffloadError::UnsupportedGso(gso_type));
            }
            Some(Gso {
                size: gso_size,
                ecn: gso_type & gso::ECN != 0,
                udp: t == gso::UDP_L4,
            })
        }
        t => return Err(OffloadError::UnsupportedGso(t)),
    };

    if flags & flags::NEEDS_CSUM == 0 {
        let checksum = if flags & flags::DATA_VALID != 0 {
            RxChecksum::Valid
        } else {
            RxChecksum::Unchecked
        };
        return Ok(Inbound { checksum, gso });
    }
    let field_at = usize::from(start) + usize::from(offset);
    if field_at + 2 > packet.len() {
        return Err(OffloadError::ChecksumOutside {
            start,
            offset,
            len: packet.len(),
        });
    }
    let tcp_partial = offset == TCP_CSUM_OFFSET
        && transport_at(packet, ip_proto::TCP) == Some(usize::from(start))
        && gso.is_none_or(|g| !g.udp);
    let udp_gso_partial = offset == UDP_CSUM_OFFSET
        && transport_at(packet, ip_proto::UDP) == Some(usize::from(start))
        && gso.is_some_and(|g| g.udp);
    if tcp_partial || udp_gso_partial {
        return Ok(Inbound {
            checksum: RxChecksum::Partial,
            gso,
        });
    }
    if gso.is_some() {
        return Err(OffloadError::GsoNotTcp);
    }
    finish_partial(packet, usize::from(start), field_at);
    Ok(Inbound {
        checksum: RxChecksum::Valid,
        gso: None,
    })
}

/// Where the `protocol` header of a packet begins, if the packet carries one: after
/// IPv4 with any options, or after IPv6 and its extension headers (the engine's walk,
/// [`ExtHeaders`]). The kernel's offloads put a super-packet's headers there: a
/// backend's segments behind a Routing header (Segment Routing) or Hop-by-Hop options
/// reach the TUN merged by GRO with the headers in place. Never in a fragment.
fn transport_at(packet: &[u8], protocol: u8) -> Option<usize> {
    match packet.first()? >> 4 {
        4 if packet.get(9) == Some(&protocol) => Some(usize::from(packet[0] & 0x0f) * 4),
        6 => {
            let mut walk = ExtHeaders::new(packet, packet.len(), *packet.get(6)?);
            for h in &mut walk {
                if h.ok()?.kind == ip_proto::IPV6_FRAG {
                    return None;
                }
            }
            let (next, at) = walk.upper();
            (next == protocol).then_some(at)
        }
        _ => None,
    }
}

/// Finishes a partial checksum as the kernel would (`skb_checksum_help`): the sum from
/// `start` to the end, which includes the pseudo-header sum already in the field,
/// complemented into the field. A UDP result of zero is sent as `0xffff`.
fn finish_partial(packet: &mut [u8], start: usize, field_at: usize) {
    let value = checksum::finish(checksum::sum(&packet[start..]));
    // UDP's field is 6 bytes into its header (ICMP's is 2, TCP's 16), whatever IPv6
    // extension headers come before it.
    let udp = field_at - start == usize::from(UDP_CSUM_OFFSET);
    let value = if udp && value == 0 { 0xffff } else { value };
    packet[field_at..field_at + 2].copy_from_slice(&value.to_be_bytes());
}

/// Sets DF on a translated IPv4 TCP super-packet by the size of the segments the kernel
/// will cut it into, not by its own: RFC 7915 §5.1 leaves DF clear on translated packets
/// of at most 1260 bytes, and the kernel copies the super-packet's DF to every segment.
/// (Translation decided it from the whole length, which is always above 1260.) Anything
/// else is left as it is.
pub fn set_segment_df(rx: &Inbound, packet: &mut [u8]) {
    let Some(g) = rx.gso.filter(|g| !g.udp) else {
        return;
    };
    let Some(l4) = transport_at(packet, ip_proto::TCP) else {
        return;
    };
    if packet[0] >> 4 != 4 {
        return;
    }
    let Some(tcp_len) = packet.get(l4 + 12).map(|b| usize::from(b >> 4) * 4) else {
        return;
    };
    let segment = l4 + tcp_len + usize::from(g.size);
    let df = ipv4_dont_fragment(segment);
    let Ok(mut ip) = Ipv4Packet::new_checked(&mut packet[..]) else {
        return;
    };
    if ip.dont_frag() != df {
        ip.set_dont_frag(df);
        ip.fill_checksum();
    }
}

/// The header to write a forwarded (translated) `packet` with, given the one it was
/// read with.
pub fn outbound(rx: &Inbound, packet: &[u8]) -> Result<[u8; HEADER_LEN], OffloadError> {
    let mut hdr = PLAIN;
    if rx.checksum != RxChecksum::Partial {
        return Ok(hdr);
    }
    let udp = rx.gso.is_some_and(|g| g.udp);
    let (protocol, csum_offset) = if udp {
        (ip_proto::UDP, UDP_CSUM_OFFSET)
    } else {
        (ip_proto::TCP, TCP_CSUM_OFFSET)
    };
    let l4 = transport_at(packet, protocol).ok_or(OffloadError::Unrecognised)?;
    let l4_len = if udp {
        UDP_HEADER_LEN
    } else {
        packet
            .get(l4 + 12)
            .map(|b| usize::from(b >> 4) * 4)
            .ok_or(OffloadError::Unrecognised)?
    };
    if packet.len() < l4 + l4_len {
        return Err(OffloadError::Unrecognised);
    }
    let l4_u16 = u16::try_from(l4).map_err(|_| OffloadError::Unrecognised)?;
    hdr[field::FLAGS] = flags::NEEDS_CSUM;
    hdr[field::CSUM_START].copy_from_slice(&l4_u16.to_ne_bytes());
    hdr[field::CSUM_OFFSET].copy_from_slice(&csum_offset.to_ne_bytes());
    if let Some(g) = rx.gso {
        let kind = match (udp, packet[0] >> 4) {
            (true, _) => gso::UDP_L4,
            (false, 4) => gso::TCPV4,
            (false, _) => gso::TCPV6,
        };
        hdr[field::GSO_TYPE] = kind | if g.ecn { gso::ECN } else { 0 };
        hdr[field::GSO_SIZE].copy_from_slice(&g.size.to_ne_bytes());
        let hdr_len = u16::try_from(l4 + l4_len).map_err(|_| OffloadError::Unrecognised)?;
        hdr[field::HDR_LEN].copy_from_slice(&hdr_len.to_ne_bytes());
    }
    Ok(hdr)
}

#[cfg(test)]
#[path = "offload_tests.rs"]
mod tests;
