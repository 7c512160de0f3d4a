//! Fixed-byte tests of the virtio-net header rules.

use super::*;
use crate::wire::checksum::{pseudo_header_v4, pseudo_header_v6};
use crate::wire::ipv4::Ipv4Packet;
use std::net::{Ipv4Addr, Ipv6Addr};

const C4: Ipv4Addr = Ipv4Addr::new(198, 51, 100, 2);
const S4: Ipv4Addr = Ipv4Addr::new(203, 0, 113, 10);

fn hdr(flags: u8, gso_type: u8, gso_size: u16, start: u16, offset: u16) -> [u8; HEADER_LEN] {
    let mut h = [0u8; HEADER_LEN];
    h[field::FLAGS] = flags;
    h[field::GSO_TYPE] = gso_type;
    h[field::GSO_SIZE].copy_from_slice(&gso_size.to_ne_bytes());
    h[field::CSUM_START].copy_from_slice(&start.to_ne_bytes());
    h[field::CSUM_OFFSET].copy_from_slice(&offset.to_ne_bytes());
    h
}

fn read16(h: &[u8], r: core::ops::Range<usize>) -> u16 {
    u16::from_ne_bytes([h[r.start], h[r.start + 1]])
}

/// An IPv4 packet (20-byte header, no IP checksum needed here) carrying `l4` as
/// protocol `proto`.
fn v4(proto: u8, l4: &[u8]) -> Vec<u8> {
    let mut p = vec![0x45, 0, 0, 0, 0, 0, 0x40, 0, 64, proto, 0, 0];
    p.extend_from_slice(&C4.octets());
    p.extend_from_slice(&S4.octets());
    let total = (20 + l4.len()) as u16;
    p[2..4].copy_from_slice(&total.to_be_bytes());
    p.extend_from_slice(l4);
    p
}

fn v6(next: u8, l4: &[u8]) -> Vec<u8> {
    let src: Ipv6Addr = "2001:db8:1::2".parse().unwrap();
    let dst: Ipv6Addr = "2001:db8:64::c633:6402".parse().unwrap();
    let mut p = vec![0x60, 0, 0, 0];
    p.extend_from_slice(&(l4.len() as u16).to_be_bytes());
    p.extend_from_slice(&[next, 64]);
    p.extend_from_slice(&src.octets());
    p.extend_from_slice(&dst.octets());
    p.extend_from_slice(l4);
    p
}

/// A 32-byte TCP header (data offset 8) and `payload` bytes.
fn tcp(payload: usize) -> Vec<u8> {
    let mut t = vec![
        0x9c, 0x40, 0x01, 0xbb, 0, 0, 0, 1, 0, 0, 0, 0, 0x80, 0x10, 0xff, 0xff,
    ];
    t.extend_from_slice(&[0; 16]);
    t.extend((0..payload).map(|i| i as u8));
    t
}

#[test]
fn plain_header_is_an_unchecked_ordinary_packet() {
    let mut p = v4(ip_proto::TCP, &tcp(10));
    let rx = inbound(&PLAIN, &mut p).unwrap();
    assert_eq!(
        rx,
        Inbound {
            checksum: RxChecksum::Unchecked,
            gso: None
        }
    );
    assert_eq!(outbound(&rx, &p).unwrap(), PLAIN);
}

#[test]
fn data_valid_means_the_kernel_checked_it() {
    let mut p = v4(ip_proto::TCP, &tcp(10));
    let rx = inbound(&hdr(flags::DATA_VALID, 0, 0, 0, 0), &mut p).unwrap();
    assert_eq!(rx.checksum, RxChecksum::Valid);
    assert_eq!(
        outbound(&rx, &p).unwrap(),
        PLAIN,
        "written back as finished"
    );
}

#[test]
fn tso4_super_packet_is_read_whole_and_written_back_as_tso6() {
    let mut p = v4(ip_proto::TCP, &tcp(60_000));
    let h = hdr(flags::NEEDS_CSUM, gso::TCPV4 | gso::ECN, 1448, 20, 16);
    let before = p.clone();
    let rx = inbound(&h, &mut p).unwrap();
    assert_eq!(p, before, "a TCP partial checksum is left for the kernel");
    assert_eq!(rx.checksum, RxChecksum::Partial);
    assert_eq!(
        rx.gso,
        Some(Gso {
            size: 1448,
            ecn: true,
            udp: false
        })
    );
    // The engine translated it: the same TCP segment behind an IPv6 header.
    let out = v6(ip_proto::TCP, &tcp(60_000));
    let o = outbound(&rx, &out).unwrap();
    assert_eq!(o[field::FLAGS], flags::NEEDS_CSUM);
    assert_eq!(o[field::GSO_TYPE], gso::TCPV6 | gso::ECN);
    assert_eq!(read16(&o, field::GSO_SIZE), 1448, "segment size kept");
    assert_eq!(
        read16(&o, field::CSUM_START),
        40,
        "moved to the new TCP header"
    );
    assert_eq!(read16(&o, field::CSUM_OFFSET), 16);
    assert_eq!(read16(&o, field::HDR_LEN), 40 + 32);
}

#[test]
fn tso6_super_packet_is_written_back_as_tso4() {
    let mut p = v6(ip_proto::TCP, &tcp(50_000));
    let rx = inbound(&hdr(flags::NEEDS_CSUM, gso::TCPV6, 1428, 40, 16), &mut p).unwrap();
    let out = v4(ip_proto::TCP, &tcp(50_000));
    let o = outbound(&rx, &out).unwrap();
    assert_eq!(o[field::GSO_TYPE], gso::TCPV4);
    assert_eq!(read16(&o, field::GSO_SIZE), 1428);
    assert_eq!(read16(&o, field::CSUM_START), 20);
    assert_eq!(read16(&o, field::HDR_LEN), 20 + 32);
}

#[test]
fn partial_checksum_without_gso_stays_partial_with_no_gso_type() {
    let mut p = v6(ip_proto::TCP, &tcp(100));
    let rx = inbound(&hdr(flags::NEEDS_CSUM, 0, 0, 40, 16), &mut p).unwrap();
    assert_eq!(rx.gso, None);
    let out = v4(ip_proto::TCP, &tcp(100));
    let o = outbound(&rx, &out).unwrap();
    assert_eq!(o[field::GSO_TYPE], gso::NONE);
    assert_eq!(read16(&o, field::CSUM_START), 20);
    assert_eq!(read16(&o, field::HDR_LEN), 0);
}

#[test]
fn gso_type_of_the_other_family_is_refused() {
    let mut p = v4(ip_proto::TCP, &tcp(3000));
    assert_eq!(
        inbound(&hdr(flags::NEEDS_CSUM, gso::TCPV6, 1400, 20, 16), &mut p),
        Err(OffloadError::GsoFamilyMismatch { gso: 6, ip: 4 })
    );
}

#[test]
fn malformed_gso_headers_are_refused() {
    let mut p = v4(ip_proto::TCP, &tcp(3000));
    assert_eq!(
        inbound(&hdr(0, gso::TCPV4, 1400, 20, 16), &mut p),
        Err(OffloadError::GsoWithoutPartialChecksum)
    );
    assert_eq!(
        inbound(&hdr(flags::NEEDS_CSUM, gso::TCPV4, 0, 20, 16), &mut p),
        Err(OffloadError::GsoSizeZero)
    );
    assert_eq!(
        inbound(&hdr(flags::NEEDS_CSUM, gso::UDP, 1400, 20, 6), &mut p),
        Err(OffloadError::UnsupportedGso(gso::UDP)),
        "UFO is never enabled"
    );
    assert_eq!(
        inbound(&hdr(flags::NEEDS_CSUM, gso::UDP_L4, 1400, 20, 6), &mut p),
        Err(OffloadError::GsoNotTcp),
        "UDP segmentation of a TCP packet"
    );
    assert_eq!(
        inbound(&hdr(flags::NEEDS_CSUM, gso::TCPV4, 1400, 24, 16), &mut p),
        Err(OffloadError::GsoNotTcp),
        "checksum start not at the TCP header"
    );
    assert_eq!(
        inbound(&[0; 12], &mut p),
        Err(OffloadError::HeaderLength(12))
    );
}

#[test]
fn partial_checksum_beyond_the_packet_is_refused() {
    let mut p = v4(ip_proto::TCP, &tcp(0));
    let len = p.len();
    assert_eq!(
        inbound(&hdr(flags::NEEDS_CSUM, 0, 0, 40, 16), &mut p),
        Err(OffloadError::ChecksumOutside {
            start: 40,
            offset: 16,
            len
        })
    );
}

#[test]
fn partial_icmp_checksum_is_finished_in_software() {
    // An ICMP echo request with its checksum field zero (ICMP has no pseudo-header).
    let icmp = [8u8, 0, 0, 0, 0x12, 0x34, 0, 1, b'h', b'e', b'l', b'l', b'o'];
    let mut p = v4(ip_proto::ICMP, &icmp);
    let rx = inbound(&hdr(flags::NEEDS_CSUM, 0, 0, 20, 2), &mut p).unwrap();
    assert_eq!(rx.checksum, RxChecksum::Valid);
    assert_eq!(
        checksum::fold(checksum::sum(&p[20..])),
        0xffff,
        "the ICMP message now sums to all ones"
    );
}

#[test]
fn partial_udp_checksum_is_finished_with_the_pseudo_header() {
    let mut udp = vec![
        0x30, 0x39, 0x01, 0xbb, 0, 13, 0, 0, b'q', b'u', b'i', b'c', b'!',
    ];
    let pseudo = pseudo_header_v4(C4, S4, ip_proto::UDP, 13);
    udp[6..8].copy_from_slice(&checksum::fold(pseudo).to_be_bytes());
    let mut p = v4(ip_proto::UDP, &udp);
    let rx = inbound(&hdr(flags::NEEDS_CSUM, 0, 0, 20, 6), &mut p).unwrap();
    assert_eq!(rx.checksum, RxChecksum::Valid);
    let total = checksum::combine(pseudo, checksum::sum(&p[20..]));
    assert_eq!(
        checksum::fold(total),
        0xffff,
        "verifies as a finished checksum"
    );
}

#[test]
fn partial_tcp_checksum_on_ipv6_is_recognised_at_40() {
    let mut t = tcp(20);
    let dst: Ipv6Addr = "2001:db8:64::c633:6402".parse().unwrap();
    let src: Ipv6Addr = "2001:db8:1::2".parse().unwrap();
    let pseudo = pseudo_header_v6(&src, &dst, ip_proto::TCP, t.len() as u32);
    t[16..18].copy_from_slice(&checksum::fold(pseudo).to_be_bytes());
    let mut p = v6(ip_proto::TCP, &t);
    let rx = inbound(&hdr(flags::NEEDS_CSUM, 0, 0, 40, 16), &mut p).unwrap();
    assert_eq!(rx.checksum, RxChecksum::Partial);
}

/// `p` (IPv6 carrying TCP) with a Hop-by-Hop header (8 bytes) and a Routing header of
/// type 4 with no segments left (24 bytes) before the TCP header, as a backend's segment
/// arrives through Segment Routing.
fn behind_extension_headers(p: &[u8]) -> Vec<u8> {
    let mut out = p[..40].to_vec();
    out[6] = ip_proto::HOPOPT;
    out.extend_from_slice(&[ip_proto::IPV6_ROUTE, 0, 1, 4, 0, 0, 0, 0]);
    out.extend_from_slice(&[ip_proto::TCP, 2, 4, 0, 0, 0, 0, 0]);
    out.extend_from_slice(&[0; 16]);
    out.extend_from_slice(&p[40..]);
    let len = (out.len() - 40) as u16;
    out[4..6].copy_from_slice(&len.to_be_bytes());
    out
}

#[test]
fn tso6_super_packet_behind_extension_headers_is_read_whole_and_written_back_as_tso4() {
    let mut p = behind_extension_headers(&v6(ip_proto::TCP, &tcp(50_000)));
    let rx = inbound(&hdr(flags::NEEDS_CSUM, gso::TCPV6, 1428, 72, 16), &mut p).unwrap();
    assert_eq!(rx.checksum, RxChecksum::Partial);
    assert_eq!(rx.gso.map(|g| g.size), Some(1428));
    let out = v4(ip_proto::TCP, &tcp(50_000));
    let o = outbound(&rx, &out).unwrap();
    assert_eq!(o[field::GSO_TYPE], gso::TCPV4);
    assert_eq!(read16(&o, field::CSUM_START), 20);
}

#[test]
fn partial_checksum_that_does_not_start_at_the_walked_tcp_header_is_refused() {
    let mut p = behind_extension_headers(&v6(ip_proto::TCP, &tcp(50_000)));
    // At 40, where TCP would be without the extension headers.
    let err = inbound(&hdr(flags::NEEDS_CSUM, gso::TCPV6, 1428, 40, 16), &mut p);
    assert!(matches!(err, Err(OffloadError::GsoNotTcp)), "{err:?}");
    // Behind a Fragment header: no transport header the offloads could have made.
    let mut l4 = vec![ip_proto::TCP, 0, 0, 0, 0, 0, 0, 1];
    l4.extend_from_slice(&tcp(50_000));
    let mut frag = v6(ip_proto::IPV6_FRAG, &l4);
    let err = inbound(&hdr(flags::NEEDS_CSUM, gso::TCPV6, 1428, 48, 16), &mut frag);
    assert!(matches!(err, Err(OffloadError::GsoNotTcp)), "{err:?}");
}

#[test]
fn outbound_of_something_not_tcp_is_an_error_not_a_guess() {
    let rx = Inbound {
        checksum: RxChecksum::Partial,
        gso: None,
    };
    assert_eq!(
        outbound(&rx, &v4(ip_proto::UDP, &[0; 8])),
        Err(OffloadError::Unrecognised)
    );
    assert_eq!(outbound(&rx, &[]), Err(OffloadError::Unrecognised));
}

#[test]
fn udp_super_packet_keeps_its_partial_checksum_and_type_across_families() {
    // A QUIC sender's GSO burst: an 8-byte UDP header and 30 datagrams' worth.
    let mut udp = vec![0x30, 0x39, 0x01, 0xbb, 0, 0, 0, 0];
    udp.extend((0..36_000).map(|i| i as u8));
    let mut p = v6(ip_proto::UDP, &udp);
    let before = p.clone();
    let rx = inbound(&hdr(flags::NEEDS_CSUM, gso::UDP_L4, 1200, 40, 6), &mut p).unwrap();
    assert_eq!(p, before, "left for the kernel to finish per datagram");
    assert_eq!(rx.checksum, RxChecksum::Partial);
    assert_eq!(
        rx.gso,
        Some(Gso {
            size: 1200,
            ecn: false,
            udp: true
        })
    );
    let out = v4(ip_proto::UDP, &udp);
    let o = outbound(&rx, &out).unwrap();
    assert_eq!(
        o[field::GSO_TYPE],
        gso::UDP_L4,
        "one type for both families"
    );
    assert_eq!(read16(&o, field::GSO_SIZE), 1200);
    assert_eq!(read16(&o, field::CSUM_START), 20);
    assert_eq!(read16(&o, field::CSUM_OFFSET), 6);
    assert_eq!(read16(&o, field::HDR_LEN), 28);
}

#[test]
fn super_packet_of_small_segments_leaves_without_df_large_ones_with_it() {
    let rx = |size| Inbound {
        checksum: RxChecksum::Partial,
        gso: Some(Gso {
            size,
            ecn: false,
            udp: false,
        }),
    };
    // A translated super-packet: DF set (decided from its 10 KB), header checksum valid.
    let mut p = v4(ip_proto::TCP, &tcp(10_000));
    {
        let mut ip = Ipv4Packet::new_checked(&mut p[..]).unwrap();
        ip.set_dont_frag(true);
        ip.fill_checksum();
    }
    let mut small = p.clone();
    set_segment_df(&rx(536), &mut small); // 20 + 32 + 536 = 588 bytes a segment
    let ip = Ipv4Packet::new_checked(&small[..]).unwrap();
    assert!(!ip.dont_frag(), "RFC 7915: at most 1260 bytes, DF clear");
    assert!(ip.verify_checksum());
    let mut large = p.clone();
    set_segment_df(&rx(1428), &mut large);
    assert_eq!(large, p, "1480-byte segments keep DF");
    let mut edge = p.clone();
    set_segment_df(&rx(1260 - 52), &mut edge);
    assert!(!Ipv4Packet::new_checked(&edge[..]).unwrap().dont_frag());
    let mut plain = p.clone();
    set_segment_df(
        &Inbound {
            checksum: RxChecksum::Partial,
            gso: None,
        },
        &mut plain,
    );
    assert_eq!(plain, p, "not a super-packet: translation's choice stands");
}
