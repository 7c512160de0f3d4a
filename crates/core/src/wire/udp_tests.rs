//! Unit tests for the UDP view.

use super::*;
use crate::wire::testdata::{EXT_CHAIN_V6, UDP_OPTS_V4};

const C4: Ipv4Addr = Ipv4Addr::new(198, 51, 100, 2);
const S4: Ipv4Addr = Ipv4Addr::new(203, 0, 113, 10);

fn k6() -> Ipv6Addr {
    "2001:db8:64::c633:6402".parse().unwrap()
}
fn b6() -> Ipv6Addr {
    "2001:db8:1::2".parse().unwrap()
}

#[test]
fn dns_query_over_ipv4_parses() {
    let p = UdpPacket::new_checked(&UDP_OPTS_V4[28..]).unwrap();
    assert_eq!(p.src_port(), 5353);
    assert_eq!(p.dst_port(), 53);
    assert_eq!(p.len(), 20);
    assert!(!p.is_empty());
    assert_eq!(p.checksum(), 0x7132);
    assert_eq!(p.payload(), &UDP_OPTS_V4[36..]);
    assert!(p.verify_checksum_v4(C4, S4));
    assert!(!p.verify_checksum_v4(C4, Ipv4Addr::new(203, 0, 113, 11)));
}

#[test]
fn datagram_over_ipv6_parses_and_verifies() {
    let p = UdpPacket::new_checked(&EXT_CHAIN_V6[96..]).unwrap();
    assert_eq!(p.payload(), b"ping");
    assert!(p.verify_checksum_v6(&k6(), &b6()));
    assert!(!p.verify_checksum_v6(&b6(), &b6()));
}

#[test]
fn truncated_datagram_is_an_error_at_every_length() {
    let d = &UDP_OPTS_V4[28..];
    for n in 0..d.len() {
        let want = if n < 8 {
            WireError::Truncated
        } else {
            WireError::BadLength
        };
        assert_eq!(UdpPacket::new_checked(&d[..n]), Err(want), "length {n}");
    }
}

#[test]
fn length_below_header_is_bad_length() {
    let mut d = [0u8; 8];
    d[4..6].copy_from_slice(&7u16.to_be_bytes());
    assert_eq!(UdpPacket::new_checked(&d[..]), Err(WireError::BadLength));
    let p = UdpPacket::new_checked_header(&d[..]).unwrap();
    assert!(p.payload().is_empty());
    assert!(p.is_empty());
}

#[test]
fn quoted_header_with_longer_length_is_accepted_by_header_check() {
    let d = &UDP_OPTS_V4[28..40];
    let p = UdpPacket::new_checked_header(d).unwrap();
    assert_eq!(p.len(), 20);
    assert_eq!(p.payload_range(), 8..12);
}

#[test]
fn zero_checksum_means_none_in_ipv4_only() {
    let mut d = [0u8; 12];
    let mut p = UdpPacket::new_unchecked(&mut d[..]);
    p.set_len(12);
    assert!(p.verify_checksum_v4(C4, S4));
    assert!(!p.verify_checksum_v6(&k6(), &b6()));
}

#[test]
fn computed_zero_is_sent_as_ffff() {
    // Choose a payload word so that the checksum comes out as zero.
    let mut d = [0u8; 10];
    let mut p = UdpPacket::new_unchecked(&mut d[..]);
    p.set_len(10);
    p.set_src_port(1);
    p.set_dst_port(2);
    let c = p.compute_checksum_v4(C4, S4);
    // c = !S for the sum S of everything else; adding c as a payload word makes the
    // total sum 0xffff, whose complement is 0x0000.
    p.payload_mut().copy_from_slice(&c.to_be_bytes());
    p.fill_checksum_v4(C4, S4);
    assert_eq!(p.checksum(), 0xffff);
    assert!(p.verify_checksum_v4(C4, S4));
}

#[test]
fn building_with_setters_reproduces_the_ipv6_datagram() {
    let mut d = [0u8; 12];
    let mut p = UdpPacket::new_unchecked(&mut d[..]);
    p.set_src_port(5353);
    p.set_dst_port(53);
    p.set_len(12);
    p.payload_mut().copy_from_slice(b"ping");
    p.fill_checksum_v6(&k6(), &b6());
    assert_eq!(&d[..], &EXT_CHAIN_V6[96..]);
}

#[test]
fn pseudo_header_update_v4_to_v6_matches_recomputation() {
    let mut d = [0u8; 20];
    d.copy_from_slice(&UDP_OPTS_V4[28..]);
    let mut p = UdpPacket::new_checked(&mut d[..]).unwrap();
    let old = checksum::combine(checksum::sum(&C4.octets()), checksum::sum(&S4.octets()));
    let new = checksum::combine(checksum::sum(&k6().octets()), checksum::sum(&b6().octets()));
    p.update_checksum_pseudo(ChecksumForm::Full, old, new);
    assert!(p.verify_checksum_v6(&k6(), &b6()));
    p.rewrite_port(false, 40000, ChecksumForm::Full);
    assert!(p.verify_checksum_v6(&k6(), &b6()));
    assert_eq!(p.src_port(), 40000);
}

#[test]
fn absent_ipv4_checksum_stays_absent_on_update() {
    let mut d = [0u8; 20];
    d.copy_from_slice(&UDP_OPTS_V4[28..]);
    let mut p = UdpPacket::new_checked(&mut d[..]).unwrap();
    p.set_checksum(0);
    p.update_checksum_pseudo(ChecksumForm::Full, 1, 2);
    p.rewrite_port(true, 54, ChecksumForm::Full);
    assert_eq!(p.checksum(), 0);
    assert_eq!(p.dst_port(), 54);
}

#[test]
fn partial_checksum_follows_pseudo_header_only() {
    let mut d = [0u8; 20];
    d.copy_from_slice(&UDP_OPTS_V4[28..]);
    let mut p = UdpPacket::new_checked(&mut d[..]).unwrap();
    let ph4 = checksum::pseudo_header_v4(C4, S4, ip_proto::UDP, 20);
    let ph6 = checksum::pseudo_header_v6(&k6(), &b6(), ip_proto::UDP, 20);
    p.set_checksum(checksum::fold(ph4));
    p.rewrite_port(true, 5353, ChecksumForm::Partial);
    assert_eq!(p.checksum(), checksum::fold(ph4));
    let old = checksum::combine(checksum::sum(&C4.octets()), checksum::sum(&S4.octets()));
    let new = checksum::combine(checksum::sum(&k6().octets()), checksum::sum(&b6().octets()));
    p.update_checksum_pseudo(ChecksumForm::Partial, old, new);
    assert_eq!(p.checksum(), checksum::fold(ph6));
}
