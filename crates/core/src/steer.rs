//! Which data-plane worker a packet belongs to: the reference definition of the steering
//! value that the daemon's eBPF program computes in the kernel.
//!
//! With a multi-queue TUN device each worker reads one queue and owns its own flow
//! table, so both directions of a flow, and the ICMP errors about it, must land on the
//! same queue. A flow is identified by its client: the client's IPv4 address and port.
//! [`client_of_packet`] says where that pair is in each kind of packet the kernel hands
//! the TUN, [`queue_hash`] turns it into a keyed 16-bit value, and [`queue_of`] is what
//! the kernel then does with it (`value % queues`). [`steer_value`] is the whole
//! program: the daemon's tests run the loaded eBPF program on crafted packets and
//! require it to return exactly this.
//!
//! The program (`crates/daemon/bpf/steer.c`) returns 0 as soon as a read falls outside
//! the packet. [`client_of_packet`] therefore returns `None` exactly when a read it
//! needs is out of range, and [`steer_value`] is 0 then. Every path reads the same
//! fields in both, IPv6 extension headers included ([`v6_upper_layer`]), so the two
//! agree on every input, not only on well-formed ones.

use std::net::Ipv4Addr;

use crate::wire::ip_proto;
use crate::wire::{icmpv4, ipv4, ipv6};

/// The per-daemon secret mixed into [`queue_hash`], drawn at random at each start so
/// that a client cannot choose addresses or ports that all land on one worker. Not
/// cryptographic: a few 32-bit multiply, xor and shift rounds, which eBPF's 32-bit ALU
/// computes exactly.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SteerKey {
    /// Mixed into the client address.
    pub k0: u32,
    /// Mixed into the client port.
    pub k1: u32,
}

impl SteerKey {
    /// The key from 8 random bytes (the daemon gets them from the OS).
    pub const fn from_bytes(b: [u8; 8]) -> Self {
        Self {
            k0: u32::from_le_bytes([b[0], b[1], b[2], b[3]]),
            k1: u32::from_le_bytes([b[4], b[5], b[6], b[7]]),
        }
    }

    /// The key drawn from the daemon's secret `seed` (SipHash-2-4 keyed by it, over a
    /// label): a daemon that knows its seed, as a live upgrade's new process does, knows
    /// which queue the kernel steers each flow to without being told the key.
    pub fn from_seed(seed: &[u8; 32]) -> Self {
        use core::hash::Hasher;
        let half = |at: usize| {
            let mut b = [0u8; 8];
            b.copy_from_slice(&seed[at..at + 8]);
            u64::from_le_bytes(b)
        };
        let mut h = siphasher::sip::SipHasher24::new_with_keys(half(0), half(8));
        h.write(&seed[16..]);
        h.write(b"kracauer steering key");
        Self::from_bytes(h.finish().to_le_bytes())
    }
}

/// The constants of [`queue_hash`]. The eBPF program (`crates/daemon/bpf/steer.c`)
/// repeats them; the daemon's tests compare the two on real runs in the kernel.
pub mod mix {
    /// Multiplier after the address is keyed (an odd constant: a bijection mod 2^32).
    pub const MUL_ADDR: u32 = 0x9e37_79b1;
    /// Multiplier after the port is keyed.
    pub const MUL_PORT: u32 = 0x85eb_ca6b;
    /// Final multiplier.
    pub const MUL_FINAL: u32 = 0xc2b2_ae35;
    /// Right shift folded back after the address round.
    pub const SHIFT_ADDR: u32 = 16;
    /// Right shift folded back after the port round.
    pub const SHIFT_PORT: u32 = 13;
    /// Right shift folded back at the end.
    pub const SHIFT_FINAL: u32 = 16;
    /// The value is cut to 16 bits: the kernel keeps only that much of the program's
    /// result (`u16 ret` in `tun_ebpf_select_queue`), and a value that already fits
    /// steers the same whether a kernel truncates it or not.
    pub const OUT_MASK: u32 = 0xffff;
}

/// Offsets, from the start of the IP header (or of the header named), of every field the
/// steering program reads (`crates/daemon/bpf/steer.c` repeats them).
pub mod offset {
    use super::{ipv4, ipv6};

    /// IP version in the high nibble (both families); IPv4 header length in 32-bit words
    /// in the low nibble.
    pub const VERSION: usize = ipv4::field::VER_IHL;
    /// IPv4 flags and fragment offset (16 bits).
    pub const V4_FLAGS_FRAG: usize = ipv4::field::FLG_OFF.start;
    /// IPv4 protocol.
    pub const V4_PROTOCOL: usize = ipv4::field::PROTOCOL;
    /// IPv4 source address.
    pub const V4_SRC: usize = ipv4::field::SRC_ADDR.start;
    /// IPv4 destination address.
    pub const V4_DST: usize = ipv4::field::DST_ADDR.start;
    /// IPv6 next header.
    pub const V6_NEXT_HEADER: usize = ipv6::field::NXT_HDR;
    /// The low 32 bits of the IPv6 source address (an embedded client, in a packet that
    /// Kracauer sent to a backend).
    pub const V6_SRC_LOW32: usize = ipv6::field::SRC_ADDR.end - 4;
    /// The low 32 bits of the IPv6 destination address (the embedded client, in a packet
    /// from a backend).
    pub const V6_DST_LOW32: usize = ipv6::field::DST_ADDR.end - 4;
    /// The IPv6 payload: the first extension header, or the upper layer.
    pub const V6_PAYLOAD: usize = ipv6::HEADER_LEN;
    /// From the start of an IPv6 extension header: its Next Header.
    pub const EXT_NEXT_HEADER: usize = 0;
    /// From the start of an IPv6 extension header: its length (not in a Fragment header).
    pub const EXT_LEN: usize = 1;
    /// From the start of an IPv6 Fragment header: the fragment offset (13 bits), two
    /// reserved bits and the M flag.
    pub const FRAG_OFFSET_M: usize = ipv6::frag_field::OFF_M.start;
    /// The packet quoted by an ICMP error, after the 8-byte ICMP header.
    pub const ICMP_QUOTE: usize = 8;
    /// Source port, from the start of a TCP or UDP header.
    pub const SRC_PORT: usize = 0;
    /// Destination port, from the start of a TCP or UDP header.
    pub const DST_PORT: usize = 2;
}

/// Which IPv4 header bits mark a fragment: More Fragments and the fragment offset.
pub const V4_FRAGMENT_MASK: u16 = 0x3fff;

/// ICMPv4 error types that the engine maps back to a flow (`Icmpv4Packet::is_error`):
/// destination unreachable, source quench, redirect, time exceeded, parameter problem.
pub const ICMPV4_ERRORS: [u8; 5] = [
    icmpv4::msg_type::DEST_UNREACHABLE,
    icmpv4::msg_type::SOURCE_QUENCH,
    icmpv4::msg_type::REDIRECT,
    icmpv4::msg_type::TIME_EXCEEDED,
    icmpv4::msg_type::PARAMETER_PROBLEM,
];

/// The bits of an IPv6 Fragment header's offset field that make it a non-first fragment.
pub const V6_FRAGMENT_OFFSET_MASK: u16 = 0xfff8;

/// The bytes [`v6_upper_layer`] reads at the start of each extension header.
pub const EXT_HEAD_LEN: usize = 4;

/// The most IPv6 extension headers [`v6_upper_layer`] walks: as many as the engine does.
pub const MAX_EXT_HEADERS: usize = ipv6::MAX_EXT_HEADERS;

/// ICMPv6 types below this are errors (RFC 4443 §2.1), as the engine reads them.
pub const ICMPV6_INFO_FIRST: u8 = 128;

/// The keyed steering hash of a client: 32-bit multiply, xor and shift rounds, cut to
/// 16 bits (see [`mix`]). Both directions of a flow call it with the same pair.
pub fn queue_hash(client: Ipv4Addr, client_port: u16, key: SteerKey) -> u32 {
    let mut h = u32::from(client) ^ key.k0;
    h = h.wrapping_mul(mix::MUL_ADDR);
    h ^= h >> mix::SHIFT_ADDR;
    h ^= u32::from(client_port) ^ key.k1;
    h = h.wrapping_mul(mix::MUL_PORT);
    h ^= h >> mix::SHIFT_PORT;
    h = h.wrapping_mul(mix::MUL_FINAL);
    h ^= h >> mix::SHIFT_FINAL;
    h & mix::OUT_MASK
}

/// The client a packet read from the TUN belongs to, as (address, port):
///
/// - IPv4 TCP or UDP (client to service): source address and source port.
/// - IPv4 ICMP error (about a packet Kracauer sent to the client): the quoted packet's
///   destination address and destination port, after the quoted header's own IHL.
/// - IPv6 TCP or UDP (backend to client): the low 32 bits of the destination address
///   and the destination port.
/// - ICMPv6 error (about a packet Kracauer sent to a backend): the low 32 bits of the
///   quoted packet's source address and its source port.
/// - Anything else, IPv4 fragments included: the address as above (IPv4 source, IPv6
///   destination low bits) with port 0. The engine drops fragments and answers echo
///   itself, so any worker will do for these.
///
/// IPv6 extension headers are walked first ([`v6_upper_layer`]): a backend's segment
/// behind Hop-by-Hop, Routing, Destination Options, Fragment or Authentication headers
/// steers by its ports, as the engine reads it. A non-first fragment has no ports and
/// steers by the address; so does a chain longer than [`MAX_EXT_HEADERS`].
///
/// The quoted protocol is not checked: an error quoting anything but TCP or UDP matches
/// no flow, so its worker does not matter. The IPv4 header length is used as written
/// (the kernel never routes one below 20 bytes).
///
/// `None` when a byte it needs is missing, or the version is neither 4 nor 6: the eBPF
/// program returns 0 for those (see the module documentation).
pub fn client_of_packet(packet: &[u8]) -> Option<(Ipv4Addr, u16)> {
    let first = u8_at(packet, offset::VERSION)?;
    match first >> 4 {
        4 => client_of_v4(packet, usize::from(first & 0x0f) * 4),
        6 => client_of_v6(packet),
        _ => None,
    }
}

/// [`client_of_packet`] for IPv4; `transport` is the header length from the IHL.
fn client_of_v4(packet: &[u8], transport: usize) -> Option<(Ipv4Addr, u16)> {
    let protocol = u8_at(packet, offset::V4_PROTOCOL)?;
    let src = Ipv4Addr::from(u32_at(packet, offset::V4_SRC)?);
    if u16_at(packet, offset::V4_FLAGS_FRAG)? & V4_FRAGMENT_MASK != 0 {
        return Some((src, 0));
    }
    match protocol {
        ip_proto::TCP | ip_proto::UDP => Some((src, u16_at(packet, transport + offset::SRC_PORT)?)),
        ip_proto::ICMP if ICMPV4_ERRORS.contains(&u8_at(packet, transport)?) => {
            let quote = transport + offset::ICMP_QUOTE;
            let quoted_ihl = usize::from(u8_at(packet, quote + offset::VERSION)? & 0x0f) * 4;
            let client = Ipv4Addr::from(u32_at(packet, quote + offset::V4_DST)?);
            let port = u16_at(packet, quote + quoted_ihl + offset::DST_PORT)?;
            Some((client, port))
        }
        _ => Some((src, 0)),
    }
}

/// [`client_of_packet`] for IPv6.
fn client_of_v6(packet: &[u8]) -> Option<(Ipv4Addr, u16)> {
    let client = Ipv4Addr::from(u32_at(packet, offset::V6_DST_LOW32)?);
    let (protocol, at) = match v6_upper_layer(packet)? {
        V6Upper::Header { protocol, offset } => (protocol, offset),
        V6Upper::NonFirstFragment => return Some((client, 0)),
    };
    match protocol {
        ip_proto::TCP | ip_proto::UDP => Some((client, u16_at(packet, at + offset::DST_PORT)?)),
        ip_proto::ICMPV6 if u8_at(packet, at)? < ICMPV6_INFO_FIRST => {
            let quote = at + offset::ICMP_QUOTE;
            let quoted_client = Ipv4Addr::from(u32_at(packet, quote + offset::V6_SRC_LOW32)?);
            let port = u16_at(packet, quote + offset::V6_PAYLOAD + offset::SRC_PORT)?;
            Some((quoted_client, port))
        }
        _ => Some((client, 0)),
    }
}

/// Where [`v6_upper_layer`] ends.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum V6Upper {
    /// The header after the walked extension headers: its protocol and its offset from
    /// the start of the IPv6 header. The protocol may still be an extension header when
    /// the chain is longer than [`MAX_EXT_HEADERS`].
    Header { protocol: u8, offset: usize },
    /// A Fragment header with a non-zero offset: what follows is no header.
    NonFirstFragment,
}

/// Walks at most [`MAX_EXT_HEADERS`] IPv6 extension headers, in any order, from the
/// fixed header's Next Header: Hop-by-Hop, Routing and Destination Options (length in
/// 8-byte units after the first 8 bytes), Authentication (RFC 4302: in 4-byte units
/// after the first 8 bytes) and a first fragment's Fragment header (8 bytes). The first
/// [`EXT_HEAD_LEN`] bytes of each header are read: Next Header, the length (reserved in
/// a Fragment header) and a Fragment header's offset field.
///
/// Looser than the engine's walk ([`ipv6::ExtHeaders`]): the chain is not bounded by the
/// payload length, and Hop-by-Hop may be anywhere. A packet the engine refuses for
/// those reasons is dropped by whichever worker gets it; the steering only has to agree
/// with the engine where the engine accepts. `None` when a byte it reads is missing.
pub fn v6_upper_layer(packet: &[u8]) -> Option<V6Upper> {
    let mut protocol = u8_at(packet, offset::V6_NEXT_HEADER)?;
    let mut at = offset::V6_PAYLOAD;
    for _ in 0..MAX_EXT_HEADERS {
        if !is_walked_ext_header(protocol) {
            break;
        }
        // The first 4 bytes of every walked header, whatever its kind (each is at least
        // 8 bytes long): what the program reads, in one load.
        let head: [u8; EXT_HEAD_LEN] = *packet.get(at..)?.first_chunk()?;
        let next = head[offset::EXT_NEXT_HEADER];
        let len = match protocol {
            ip_proto::IPV6_FRAG => {
                let at = offset::FRAG_OFFSET_M;
                if u16::from_be_bytes([head[at], head[at + 1]]) & V6_FRAGMENT_OFFSET_MASK != 0 {
                    return Some(V6Upper::NonFirstFragment);
                }
                ipv6::FRAG_HEADER_LEN
            }
            ip_proto::AH => (usize::from(head[offset::EXT_LEN]) + 2) * 4,
            _ => (usize::from(head[offset::EXT_LEN]) + 1) * 8,
        };
        protocol = next;
        at += len;
    }
    Some(V6Upper::Header {
        protocol,
        offset: at,
    })
}

/// The extension headers [`v6_upper_layer`] walks: the engine's
/// ([`ipv6::is_walked_ext_header`]) and the Authentication Header.
pub fn is_walked_ext_header(protocol: u8) -> bool {
    protocol == ip_proto::AH || ipv6::is_walked_ext_header(protocol)
}

/// The value the steering program returns for `packet`: [`queue_hash`] of
/// [`client_of_packet`], or 0 when that is `None`.
pub fn steer_value(packet: &[u8], key: SteerKey) -> u32 {
    client_of_packet(packet).map_or(0, |(client, port)| queue_hash(client, port, key))
}

/// The queue the kernel picks for a steering value with `queues` queues: it keeps the
/// low 16 bits and takes the remainder (queue 0 when there are none).
pub fn queue_of(value: u32, queues: u16) -> u16 {
    (value as u16).checked_rem(queues).unwrap_or(0)
}

fn u8_at(b: &[u8], at: usize) -> Option<u8> {
    b.get(at).copied()
}

fn u16_at(b: &[u8], at: usize) -> Option<u16> {
    b.get(at..)?.first_chunk().copied().map(u16::from_be_bytes)
}

fn u32_at(b: &[u8], at: usize) -> Option<u32> {
    b.get(at..)?.first_chunk().copied().map(u32::from_be_bytes)
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;

    const CLIENT: Ipv4Addr = Ipv4Addr::new(198, 51, 100, 2);
    const KEY: SteerKey = SteerKey {
        k0: 0x0123_4567,
        k1: 0x89ab_cdef,
    };

    /// 198.51.100.2:40000 -> 203.0.113.10:443, TCP SYN, no IP options.
    #[rustfmt::skip]
    const V4_TCP: [u8; 40] = [
        0x45, 0x00, 0x00, 0x28, 0x00, 0x01, 0x40, 0x00, // DF
        0x40, 0x06, 0x00, 0x00, // TCP
        0xc6, 0x33, 0x64, 0x02, // 198.51.100.2
        0xcb, 0x00, 0x71, 0x0a, // 203.0.113.10
        0x9c, 0x40, 0x01, 0xbb, // 40000 -> 443
        0x00, 0x00, 0x00, 0x01, 0x00, 0x00, 0x00, 0x00, // seq, ack
        0x50, 0x02, 0xff, 0xff, 0x00, 0x00, 0x00, 0x00, // SYN
    ];

    /// 198.51.100.2:40001 -> 203.0.113.10:443 with 8 bytes of IP options (IHL 7).
    #[rustfmt::skip]
    const V4_TCP_OPTIONS: [u8; 32] = [
        0x47, 0x00, 0x00, 0x30, 0x00, 0x01, 0x40, 0x00,
        0x40, 0x06, 0x00, 0x00, // TCP
        0xc6, 0x33, 0x64, 0x02, // 198.51.100.2
        0xcb, 0x00, 0x71, 0x0a, // 203.0.113.10
        0x01, 0x01, 0x01, 0x01, 0x01, 0x01, 0x01, 0x00, // NOP x7, EOL
        0x9c, 0x41, 0x01, 0xbb, // 40001 -> 443
    ];

    /// 2001:db8:1::10:443 -> 2001:db8:64::c633:6402:40000 (the backend's answer).
    #[rustfmt::skip]
    const V6_TCP: [u8; 44] = [
        0x60, 0x00, 0x00, 0x00, 0x00, 0x04, 0x06, 0x40, // TCP, hop limit 64
        0x20, 0x01, 0x0d, 0xb8, 0x00, 0x01, 0x00, 0x00, // 2001:db8:1::10
        0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x10,
        0x20, 0x01, 0x0d, 0xb8, 0x00, 0x64, 0x00, 0x00, // 2001:db8:64::c633:6402
        0x00, 0x00, 0x00, 0x00, 0xc6, 0x33, 0x64, 0x02,
        0x01, 0xbb, 0x9c, 0x40, // 443 -> 40000
    ];

    /// 203.0.113.1 -> 203.0.113.10: fragmentation needed (MTU 1400) about a packet the
    /// service sent 203.0.113.10:443 -> 198.51.100.2:40000, whose header has 4 bytes of
    /// options (quoted IHL 6).
    #[rustfmt::skip]
    const V4_FRAG_NEEDED: [u8; 60] = [
        0x45, 0x00, 0x00, 0x3c, 0x00, 0x02, 0x00, 0x00,
        0x40, 0x01, 0x00, 0x00, // ICMP
        0xcb, 0x00, 0x71, 0x01, // 203.0.113.1
        0xcb, 0x00, 0x71, 0x0a, // 203.0.113.10
        0x03, 0x04, 0x00, 0x00, 0x00, 0x00, 0x05, 0x78, // type 3 code 4, MTU 1400
        0x46, 0x00, 0x05, 0xdc, 0x00, 0x03, 0x40, 0x00, // quoted IPv4, IHL 6
        0x40, 0x06, 0x00, 0x00, // TCP
        0xcb, 0x00, 0x71, 0x0a, // 203.0.113.10
        0xc6, 0x33, 0x64, 0x02, // 198.51.100.2
        0x01, 0x01, 0x01, 0x00, // quoted options
        0x01, 0xbb, 0x9c, 0x40, 0x00, 0x00, 0x00, 0x01, // 443 -> 40000, seq
    ];

    /// 2001:db8:1::1 -> 2001:db8:64::c633:6402: packet too big (MTU 1280) about a packet
    /// Kracauer sent 2001:db8:64::c633:6402:40000 -> 2001:db8:1::10:443.
    #[rustfmt::skip]
    const V6_PACKET_TOO_BIG: [u8; 96] = [
        0x60, 0x00, 0x00, 0x00, 0x00, 0x38, 0x3a, 0x40, // ICMPv6
        0x20, 0x01, 0x0d, 0xb8, 0x00, 0x01, 0x00, 0x00, // 2001:db8:1::1
        0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x01,
        0x20, 0x01, 0x0d, 0xb8, 0x00, 0x64, 0x00, 0x00, // 2001:db8:64::c633:6402
        0x00, 0x00, 0x00, 0x00, 0xc6, 0x33, 0x64, 0x02,
        0x02, 0x00, 0x00, 0x00, 0x00, 0x00, 0x05, 0x00, // type 2, MTU 1280
        0x60, 0x00, 0x00, 0x00, 0x05, 0xb4, 0x06, 0x40, // quoted IPv6, TCP
        0x20, 0x01, 0x0d, 0xb8, 0x00, 0x64, 0x00, 0x00, // 2001:db8:64::c633:6402
        0x00, 0x00, 0x00, 0x00, 0xc6, 0x33, 0x64, 0x02,
        0x20, 0x01, 0x0d, 0xb8, 0x00, 0x01, 0x00, 0x00, // 2001:db8:1::10
        0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x10,
        0x9c, 0x40, 0x01, 0xbb, 0x00, 0x00, 0x00, 0x01, // 40000 -> 443, seq
    ];

    #[test]
    fn ipv4_tcp_client_is_source_address_and_port() {
        assert_eq!(client_of_packet(&V4_TCP), Some((CLIENT, 40000)));
    }

    #[test]
    fn ipv4_ports_are_read_after_the_options() {
        assert_eq!(client_of_packet(&V4_TCP_OPTIONS), Some((CLIENT, 40001)));
    }

    #[test]
    fn ipv4_udp_client_is_source_address_and_port() {
        let mut udp = V4_TCP;
        udp[offset::V4_PROTOCOL] = ip_proto::UDP;
        assert_eq!(client_of_packet(&udp), Some((CLIENT, 40000)));
    }

    #[test]
    fn ipv6_tcp_client_is_embedded_destination_and_destination_port() {
        assert_eq!(client_of_packet(&V6_TCP), Some((CLIENT, 40000)));
    }

    #[test]
    fn icmpv4_error_client_is_quoted_destination_after_quoted_options() {
        assert_eq!(client_of_packet(&V4_FRAG_NEEDED), Some((CLIENT, 40000)));
    }

    #[test]
    fn every_icmpv4_error_type_is_read_through_its_quote() {
        for ty in [3, 4, 5, 11, 12] {
            let mut p = V4_FRAG_NEEDED;
            p[20] = ty;
            assert_eq!(client_of_packet(&p), Some((CLIENT, 40000)), "type {ty}");
        }
    }

    #[test]
    fn icmpv6_error_client_is_quoted_source_and_source_port() {
        assert_eq!(client_of_packet(&V6_PACKET_TOO_BIG), Some((CLIENT, 40000)));
        // The quote decides, not the outer destination.
        let mut p = V6_PACKET_TOO_BIG;
        p[39] = 0x03;
        assert_eq!(client_of_packet(&p), Some((CLIENT, 40000)));
    }

    #[test]
    fn icmpv4_echo_uses_the_source_with_port_zero() {
        let mut echo = V4_FRAG_NEEDED;
        echo[12..16].copy_from_slice(&CLIENT.octets());
        echo[20] = icmpv4::msg_type::ECHO_REQUEST;
        assert_eq!(client_of_packet(&echo), Some((CLIENT, 0)));
    }

    #[test]
    fn icmpv6_echo_uses_the_embedded_destination_with_port_zero() {
        let mut echo = V6_PACKET_TOO_BIG;
        echo[40] = 128;
        assert_eq!(client_of_packet(&echo), Some((CLIENT, 0)));
    }

    #[test]
    fn ipv4_fragments_use_port_zero() {
        let mut first = V4_TCP;
        first[6] = 0x20; // More Fragments, offset 0
        assert_eq!(client_of_packet(&first), Some((CLIENT, 0)));
        let mut later = V4_TCP;
        later[6..8].copy_from_slice(&[0x00, 0xb9]); // offset 185 * 8
        assert_eq!(client_of_packet(&later), Some((CLIENT, 0)));
    }

    /// One extension header of a chain built by [`with_chain`].
    #[derive(Debug, Clone, Copy)]
    enum Ext {
        /// Hop-by-Hop, Routing or Destination Options with this many 8-byte units after
        /// the first 8 bytes.
        Options(u8, u8),
        /// An Authentication Header whose Payload Len is this: (this + 2) 4-byte words
        /// in all (RFC 4302).
        Auth(u8),
        /// A Fragment header with this offset (in 8-byte units).
        Fragment(u16),
    }

    impl Ext {
        fn kind(self) -> u8 {
            match self {
                Ext::Options(kind, _) => kind,
                Ext::Auth(_) => ip_proto::AH,
                Ext::Fragment(_) => ip_proto::IPV6_FRAG,
            }
        }

        /// The header, announcing `next`.
        fn bytes(self, next: u8) -> Vec<u8> {
            match self {
                Ext::Options(_, units) => {
                    let mut h = vec![0u8; (usize::from(units) + 1) * 8];
                    h[0] = next;
                    h[1] = units; // the rest Pad1 options (a Routing header's type 0)
                    h
                }
                Ext::Auth(units) => {
                    let mut h = vec![0u8; 8 + usize::from(units) * 4];
                    h[0] = next;
                    h[1] = units;
                    h
                }
                Ext::Fragment(offset) => {
                    let word = (offset << 3) | 1;
                    let [a, b] = word.to_be_bytes();
                    vec![next, 0, a, b, 0, 0, 0, 7]
                }
            }
        }
    }

    /// `packet` (an IPv6 packet without extension headers) with `chain` put between
    /// its fixed header and its payload; the payload length is fixed up.
    fn with_chain(packet: &[u8], chain: &[Ext]) -> Vec<u8> {
        let (fixed, payload) = packet.split_at(ipv6::HEADER_LEN);
        let mut out = fixed.to_vec();
        let upper = fixed[offset::V6_NEXT_HEADER];
        if let Some(first) = chain.first() {
            out[offset::V6_NEXT_HEADER] = first.kind();
        }
        for (i, h) in chain.iter().enumerate() {
            let next = chain.get(i + 1).map_or(upper, |n| n.kind());
            out.extend_from_slice(&h.bytes(next));
        }
        out.extend_from_slice(payload);
        let len = (out.len() - ipv6::HEADER_LEN) as u16;
        out[4..6].copy_from_slice(&len.to_be_bytes());
        out
    }

    const HOP: Ext = Ext::Options(ip_proto::HOPOPT, 0);
    const ROUTING: Ext = Ext::Options(ip_proto::IPV6_ROUTE, 2);
    const DEST: Ext = Ext::Options(ip_proto::IPV6_OPTS, 1);

    #[test]
    fn ipv6_tcp_behind_options_and_routing_headers_keeps_its_ports() {
        for chain in [
            &[HOP][..],
            &[ROUTING],
            &[DEST],
            &[HOP, DEST, ROUTING, DEST],
            &[Ext::Options(ip_proto::IPV6_OPTS, 255)],
        ] {
            let p = with_chain(&V6_TCP, chain);
            assert_eq!(client_of_packet(&p), Some((CLIENT, 40000)), "{chain:?}");
            assert_eq!(steer_value(&p, KEY), steer_value(&V4_TCP, KEY), "{chain:?}");
        }
    }

    #[test]
    fn ipv6_tcp_behind_an_authentication_header_counts_it_in_four_byte_units() {
        for units in [0, 1, 4, 255] {
            let p = with_chain(&V6_TCP, &[HOP, Ext::Auth(units), DEST]);
            assert_eq!(client_of_packet(&p), Some((CLIENT, 40000)), "{units}");
        }
    }

    #[test]
    fn ipv6_first_fragment_keeps_its_ports_and_a_later_one_steers_by_address() {
        let first = with_chain(&V6_TCP, &[HOP, Ext::Fragment(0)]);
        assert_eq!(client_of_packet(&first), Some((CLIENT, 40000)));
        let later = with_chain(&V6_TCP, &[HOP, Ext::Fragment(185), DEST]);
        assert_eq!(client_of_packet(&later), Some((CLIENT, 0)));
        assert_eq!(v6_upper_layer(&later), Some(V6Upper::NonFirstFragment));
    }

    #[test]
    fn icmpv6_error_behind_extension_headers_reads_its_quote() {
        let p = with_chain(&V6_PACKET_TOO_BIG, &[HOP, DEST]);
        assert_eq!(client_of_packet(&p), Some((CLIENT, 40000)));
        let mut echo = p.clone();
        echo[ipv6::HEADER_LEN + 8 + 16] = 128;
        assert_eq!(client_of_packet(&echo), Some((CLIENT, 0)));
    }

    #[test]
    fn a_chain_longer_than_the_engine_walks_steers_by_address() {
        let longest = with_chain(&V6_TCP, &[DEST; MAX_EXT_HEADERS]);
        assert_eq!(client_of_packet(&longest), Some((CLIENT, 40000)));
        let longer = with_chain(&V6_TCP, &[DEST; MAX_EXT_HEADERS + 1]);
        assert_eq!(client_of_packet(&longer), Some((CLIENT, 0)));
        assert_eq!(
            v6_upper_layer(&longer),
            Some(V6Upper::Header {
                protocol: ip_proto::IPV6_OPTS,
                offset: ipv6::HEADER_LEN + MAX_EXT_HEADERS * 16
            })
        );
    }

    #[test]
    fn esp_and_no_next_header_end_the_walk_without_ports() {
        for upper in [ip_proto::ESP, ip_proto::IPV6_NONXT] {
            let mut p = with_chain(&V6_TCP, &[HOP]);
            p[ipv6::HEADER_LEN] = upper;
            assert_eq!(client_of_packet(&p), Some((CLIENT, 0)), "{upper}");
        }
    }

    #[test]
    fn truncated_or_overlong_extension_chains_have_no_client() {
        let p = with_chain(&V6_TCP, &[HOP, Ext::Fragment(0), Ext::Auth(1)]);
        // Each cut inside the chain or the ports: a read falls outside the packet.
        for len in [40, 41, 48, 49, 51, 56, 57, 70, 71] {
            assert_eq!(client_of_packet(&p[..len]), None, "cut at {len}");
        }
        assert_eq!(client_of_packet(&p), Some((CLIENT, 40000)));
        // A header whose length runs past the end of the packet.
        let mut overlong = with_chain(&V6_TCP, &[DEST]);
        overlong[ipv6::HEADER_LEN + 1] = 200;
        assert_eq!(client_of_packet(&overlong), None);
    }

    #[test]
    fn truncated_packets_have_no_client() {
        assert_eq!(client_of_packet(&[]), None);
        assert_eq!(client_of_packet(&V4_TCP[..15]), None);
        assert_eq!(client_of_packet(&V4_TCP[..21]), None);
        assert_eq!(client_of_packet(&V4_TCP_OPTIONS[..29]), None);
        assert_eq!(client_of_packet(&V6_TCP[..39]), None);
        assert_eq!(client_of_packet(&V6_TCP[..43]), None);
        assert_eq!(client_of_packet(&V4_FRAG_NEEDED[..55]), None);
        assert_eq!(client_of_packet(&V6_PACKET_TOO_BIG[..89]), None);
    }

    #[test]
    fn neither_ipv4_nor_ipv6_has_no_client() {
        let mut p = V4_TCP;
        p[0] = 0x55;
        assert_eq!(client_of_packet(&p), None);
        assert_eq!(steer_value(&p, KEY), 0);
    }

    #[test]
    fn both_directions_and_their_errors_steer_alike() {
        let v = steer_value(&V4_TCP, KEY);
        assert_eq!(steer_value(&V6_TCP, KEY), v);
        assert_eq!(steer_value(&V4_FRAG_NEEDED, KEY), v);
        assert_eq!(steer_value(&V6_PACKET_TOO_BIG, KEY), v);
        assert_ne!(steer_value(&V4_TCP_OPTIONS, KEY), v, "another port");
    }

    // Expected values computed independently of this code (a few lines of Python).
    #[test]
    fn queue_hash_matches_known_answers() {
        assert_eq!(queue_hash(CLIENT, 40000, KEY), 0x972d);
        assert_eq!(queue_hash(CLIENT, 40001, KEY), 0x8076);
        assert_eq!(queue_hash(CLIENT, 40000, SteerKey { k0: 0, k1: 0 }), 0xecc8);
    }

    #[test]
    fn key_comes_from_little_endian_bytes() {
        let key = SteerKey::from_bytes([0x67, 0x45, 0x23, 0x01, 0xef, 0xcd, 0xab, 0x89]);
        assert_eq!(key, KEY);
    }

    #[test]
    fn queue_of_keeps_sixteen_bits_like_the_kernel() {
        assert_eq!(queue_of(0x1_0000, 3), 0, "65536 % 3 would be 1");
        assert_eq!(queue_of(7, 4), 3);
        assert_eq!(queue_of(7, 0), 0);
    }

    /// A fixed sequence of pseudo-random clients (xorshift32).
    fn clients(n: usize) -> impl Iterator<Item = (Ipv4Addr, u16)> {
        let mut s: u32 = 0x2545_f491;
        std::iter::repeat_with(move || {
            s ^= s << 13;
            s ^= s >> 17;
            s ^= s << 5;
            s
        })
        .map(|r| {
            // 198.51.100.0/24 and 203.0.113.0/24, any port.
            let net = if r & 1 == 0 {
                [198, 51, 100]
            } else {
                [203, 0, 113]
            };
            let addr = Ipv4Addr::new(net[0], net[1], net[2], (r >> 1) as u8);
            (addr, (r >> 16) as u16)
        })
        .take(n)
    }

    #[test]
    fn a_thousand_clients_spread_over_two_and_four_queues() {
        for queues in [2u16, 4] {
            let mut count = [0usize; 4];
            for (addr, port) in clients(1000) {
                count[usize::from(queue_of(queue_hash(addr, port, KEY), queues))] += 1;
            }
            let each = &count[..usize::from(queues)];
            assert!(each.iter().all(|&c| c > 100), "{queues} queues: {each:?}");
        }
    }

    #[test]
    fn one_client_port_range_spreads_too() {
        // One address, consecutive ports: what a single benchmark client produces.
        let mut count = [0usize; 4];
        for port in 40000..41000 {
            count[usize::from(queue_of(queue_hash(CLIENT, port, KEY), 4))] += 1;
        }
        assert!(count.iter().all(|&c| c > 100), "{count:?}");
    }

    #[test]
    fn another_key_reshuffles_the_queues() {
        // What an attacker who does not know the key faces: with another key, about half
        // of the flows change queue (of two).
        let other = SteerKey {
            k0: 0xdead_beef,
            k1: 0x0bad_f00d,
        };
        let moved = clients(1000)
            .filter(|&(a, p)| {
                queue_of(queue_hash(a, p, KEY), 2) != queue_of(queue_hash(a, p, other), 2)
            })
            .count();
        assert!((350..650).contains(&moved), "{moved} of 1000 moved");
    }

    fn ext_strategy() -> impl Strategy<Value = Ext> {
        prop_oneof![
            (0u8..4).prop_map(|u| Ext::Options(ip_proto::HOPOPT, u)),
            (0u8..4).prop_map(|u| Ext::Options(ip_proto::IPV6_ROUTE, u)),
            (0u8..4).prop_map(|u| Ext::Options(ip_proto::IPV6_OPTS, u)),
            (0u16..2).prop_map(Ext::Fragment),
        ]
    }

    proptest! {
        #[test]
        fn arbitrary_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..128)) {
            let _ = steer_value(&bytes, KEY);
        }

        #[test]
        fn any_flow_steers_alike_both_ways(a in any::<u32>(), port in any::<u16>(), k0 in any::<u32>(), k1 in any::<u32>()) {
            let key = SteerKey { k0, k1 };
            let mut v4 = V4_TCP;
            v4[12..16].copy_from_slice(&a.to_be_bytes());
            v4[20..22].copy_from_slice(&port.to_be_bytes());
            let mut v6 = V6_TCP;
            v6[36..40].copy_from_slice(&a.to_be_bytes());
            v6[42..44].copy_from_slice(&port.to_be_bytes());
            prop_assert_eq!(steer_value(&v4, key), steer_value(&v6, key));
            prop_assert_eq!(steer_value(&v4, key), queue_hash(Ipv4Addr::from(a), port, key));
        }

        /// Wherever the engine finds the upper layer of a packet it accepts, the walk
        /// finds the same (the engine does not walk AH: it is not generated here).
        #[test]
        fn the_walk_agrees_with_the_engine_wherever_the_engine_accepts(
            chain in proptest::collection::vec(ext_strategy(), 0..=MAX_EXT_HEADERS + 1),
        ) {
            let p = with_chain(&V6_TCP, &chain);
            let Ok(ip) = ipv6::Ipv6Packet::new_checked(&p[..]) else {
                return Err(TestCaseError::fail("the builder made a bad packet"));
            };
            let Ok(engine) = ip.upper_layer() else {
                // Hop-by-Hop not first, or too many headers: the engine drops the packet.
                return Ok(());
            };
            let ours = v6_upper_layer(&p);
            match engine.fragment {
                Some(f) if f.offset != 0 => {
                    prop_assert_eq!(ours, Some(V6Upper::NonFirstFragment));
                }
                _ => {
                    prop_assert_eq!(ours, Some(V6Upper::Header {
                        protocol: engine.protocol,
                        offset: engine.offset,
                    }));
                    prop_assert_eq!(client_of_packet(&p), Some((CLIENT, 40000)));
                }
            }
        }
    }
}
