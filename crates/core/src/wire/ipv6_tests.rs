//! Unit tests for the IPv6 view and the extension-header walk.

use super::*;
use crate::wire::testdata::{EXT_CHAIN_V6, SYNACK_V6};

fn a(s: &str) -> Ipv6Addr {
    s.parse().unwrap()
}

#[test]
fn synack_header_fields_parse() {
    let p = Ipv6Packet::new_checked(&SYNACK_V6[..]).unwrap();
    assert_eq!(p.version(), 6);
    assert_eq!(p.traffic_class(), 0);
    assert_eq!(p.flow_label(), 0x12345);
    assert_eq!(p.payload_len(), 44);
    assert_eq!(p.total_len(), 84);
    assert_eq!(p.next_header(), ip_proto::TCP);
    assert_eq!(p.hop_limit(), 64);
    assert_eq!(p.src_addr(), a("2001:db8:1::2"));
    assert_eq!(p.dst_addr(), a("2001:db8:64::c633:6402"));
    assert_eq!(p.payload_range(), 40..84);
    assert_eq!(
        p.upper_layer(),
        Ok(UpperLayer {
            protocol: ip_proto::TCP,
            offset: 40,
            fragment: None
        })
    );
    assert_eq!(p.ext_headers().count(), 0);
}

#[test]
fn extension_chain_is_walked_to_udp_with_fragment_info() {
    let p = Ipv6Packet::new_checked(&EXT_CHAIN_V6[..]).unwrap();
    assert_eq!(p.traffic_class(), 0xb8);
    assert_eq!(p.flow_label(), 0);
    assert_eq!(p.hop_limit(), 255);
    let hs: Vec<_> = p.ext_headers().map(|h| h.unwrap()).collect();
    let kinds: Vec<_> = hs
        .iter()
        .map(|h| (h.kind, h.offset, h.len, h.next_header))
        .collect();
    assert_eq!(
        kinds,
        vec![
            (ip_proto::HOPOPT, 40, 8, ip_proto::IPV6_OPTS),
            (ip_proto::IPV6_OPTS, 48, 16, ip_proto::IPV6_ROUTE),
            (ip_proto::IPV6_ROUTE, 64, 24, ip_proto::IPV6_FRAG),
            (ip_proto::IPV6_FRAG, 88, 8, ip_proto::UDP),
        ]
    );
    let up = p.upper_layer().unwrap();
    assert_eq!(up.protocol, ip_proto::UDP);
    assert_eq!(up.offset, 96);
    assert_eq!(
        up.fragment,
        Some(FragmentInfo {
            header_offset: 88,
            offset: 0,
            more: true,
            ident: 0xdeadbeef
        })
    );
    let f = Ipv6FragHeader::new_checked(&EXT_CHAIN_V6[88..]).unwrap();
    assert_eq!(
        (f.next_header(), f.frag_offset(), f.more_frags(), f.ident()),
        (17, 0, true, 0xdeadbeef)
    );
}

#[test]
fn non_first_fragment_stops_the_walk_at_the_fragment_header() {
    let mut b = EXT_CHAIN_V6;
    // Fragment offset 3 (24 bytes), M clear.
    b[90..92].copy_from_slice(&(3u16 << 3).to_be_bytes());
    let up = Ipv6Packet::new_checked(&b[..])
        .unwrap()
        .upper_layer()
        .unwrap();
    assert_eq!(up.protocol, ip_proto::UDP);
    assert_eq!(up.offset, 96);
    let f = up.fragment.unwrap();
    assert_eq!((f.offset, f.more), (3, false));
}

#[test]
fn truncated_buffer_is_an_error_at_every_length() {
    for n in 0..SYNACK_V6.len() {
        let e = Ipv6Packet::new_checked(&SYNACK_V6[..n]).unwrap_err();
        let want = if n < 40 {
            WireError::Truncated
        } else {
            WireError::BadPayloadLen
        };
        assert_eq!(e, want, "length {n}");
    }
}

#[test]
fn version_four_is_bad_version() {
    let mut b = SYNACK_V6;
    b[0] = 0x45;
    assert_eq!(Ipv6Packet::new_checked(&b[..]), Err(WireError::BadVersion));
}

#[test]
fn payload_length_past_buffer_is_bad_payload_len_but_fine_for_a_quoted_header() {
    let mut b = SYNACK_V6;
    b[4..6].copy_from_slice(&45u16.to_be_bytes());
    assert_eq!(
        Ipv6Packet::new_checked(&b[..]),
        Err(WireError::BadPayloadLen)
    );
    let p = Ipv6Packet::new_checked_header(&b[..]).unwrap();
    assert_eq!(p.payload_range(), 40..84);
}

#[test]
fn extension_header_cut_at_every_length_is_ext_header_overrun() {
    // Shorten the payload length so each header in turn runs past it.
    for payload in 0..56u16 {
        let mut b = EXT_CHAIN_V6;
        b[4..6].copy_from_slice(&payload.to_be_bytes());
        let p = Ipv6Packet::new_checked(&b[..]).unwrap();
        assert_eq!(
            p.upper_layer(),
            Err(WireError::ExtHeaderOverrun),
            "payload {payload}"
        );
    }
    // 56 bytes: the Fragment header ends at 96; UDP at the end of the payload.
    let mut b = EXT_CHAIN_V6;
    b[4..6].copy_from_slice(&56u16.to_be_bytes());
    let up = Ipv6Packet::new_checked(&b[..])
        .unwrap()
        .upper_layer()
        .unwrap();
    assert_eq!((up.protocol, up.offset), (ip_proto::UDP, 96));
}

#[test]
fn extension_header_length_past_payload_is_ext_header_overrun() {
    let mut b = EXT_CHAIN_V6;
    b[49] = 200; // Destination Options claims (200 + 1) * 8 bytes
    let p = Ipv6Packet::new_checked(&b[..]).unwrap();
    assert_eq!(p.upper_layer(), Err(WireError::ExtHeaderOverrun));
    let walked: Vec<_> = p.ext_headers().collect();
    assert_eq!(walked.len(), 2);
    assert_eq!(walked[1], Err(WireError::ExtHeaderOverrun));
}

#[test]
fn chain_that_never_ends_within_the_buffer_is_an_error() {
    // Destination Options headers pointing at each other until the buffer ends.
    let mut b = [0u8; 40 + 7 * 8];
    b[0] = 0x60;
    b[4..6].copy_from_slice(&(7u16 * 8).to_be_bytes());
    b[6] = ip_proto::IPV6_OPTS;
    for i in 0..7 {
        b[40 + i * 8] = ip_proto::IPV6_OPTS;
    }
    let p = Ipv6Packet::new_checked(&b[..]).unwrap();
    assert_eq!(p.upper_layer(), Err(WireError::ExtHeaderOverrun));
}

#[test]
fn more_than_max_extension_headers_is_refused() {
    let n = MAX_EXT_HEADERS + 1;
    let mut b = vec![0u8; 40 + n * 8 + 8];
    b[0] = 0x60;
    b[4..6].copy_from_slice(&((n * 8 + 8) as u16).to_be_bytes());
    b[6] = ip_proto::IPV6_OPTS;
    for i in 0..n {
        b[40 + i * 8] = if i + 1 < n {
            ip_proto::IPV6_OPTS
        } else {
            ip_proto::UDP
        };
    }
    let p = Ipv6Packet::new_checked(&b[..]).unwrap();
    assert_eq!(p.upper_layer(), Err(WireError::TooManyExtHeaders));
}

#[test]
fn hop_by_hop_after_another_header_is_refused() {
    let mut b = EXT_CHAIN_V6;
    b[6] = ip_proto::IPV6_OPTS; // fixed header -> DstOpts at 40 whose next is DstOpts...
    b[40] = ip_proto::HOPOPT; // ... whose next is Hop-by-Hop
    let p = Ipv6Packet::new_checked(&b[..]).unwrap();
    assert_eq!(p.upper_layer(), Err(WireError::HopByHopNotFirst));
}

#[test]
fn no_next_header_is_an_upper_layer_at_its_offset() {
    let mut b = EXT_CHAIN_V6;
    b[40] = ip_proto::IPV6_NONXT;
    let up = Ipv6Packet::new_checked(&b[..])
        .unwrap()
        .upper_layer()
        .unwrap();
    assert_eq!(
        up,
        UpperLayer {
            protocol: ip_proto::IPV6_NONXT,
            offset: 48,
            fragment: None
        }
    );
}

#[test]
fn building_a_header_with_setters_reproduces_the_synack_bytes() {
    let mut b = [0u8; 84];
    b[40..].copy_from_slice(&SYNACK_V6[40..]);
    let mut p = Ipv6Packet::new_unchecked(&mut b[..]);
    p.set_version(6);
    p.set_traffic_class(0xff);
    p.set_flow_label(0xfff12345);
    p.set_traffic_class(0);
    p.set_payload_len(44);
    p.set_next_header(ip_proto::TCP);
    p.set_hop_limit(64);
    p.set_src_addr(&a("2001:db8:1::2"));
    p.set_dst_addr(&a("2001:db8:64::c633:6402"));
    assert_eq!(p.version(), 6);
    assert_eq!(b, SYNACK_V6);
}

#[test]
fn fragment_header_setters_write_rfc8200_layout() {
    let mut b = [0xffu8; 8];
    let mut f = Ipv6FragHeader::new_checked(&mut b[..]).unwrap();
    f.set_next_header(ip_proto::TCP);
    f.set_frag_offset_and_more(185, true);
    f.set_ident(0x0000beef);
    assert_eq!(b, [6, 0, 0x05, 0xc9, 0, 0, 0xbe, 0xef]);
    assert_eq!(
        Ipv6FragHeader::new_checked(&b[..7]),
        Err(WireError::Truncated)
    );
}

#[test]
fn routing_header_segments_left_is_found_with_its_offset() {
    let p = Ipv6Packet::new_checked(&EXT_CHAIN_V6[..]).unwrap();
    assert_eq!(p.routing_segments_left(), Ok(Some((67, 0))));
    let mut b = EXT_CHAIN_V6;
    b[67] = 2;
    let p = Ipv6Packet::new_checked(&b[..]).unwrap();
    assert_eq!(p.routing_segments_left(), Ok(Some((67, 2))));
    let p = Ipv6Packet::new_checked(&SYNACK_V6[..]).unwrap();
    assert_eq!(p.routing_segments_left(), Ok(None));
    b[49] = 200; // Destination Options before it runs past the payload
    let p = Ipv6Packet::new_checked(&b[..]).unwrap();
    assert_eq!(p.routing_segments_left(), Err(WireError::ExtHeaderOverrun));
}
