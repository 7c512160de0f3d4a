//! In-place TCP/UDP translation: fixed-byte vectors, and every field of the output
//! checked with `etherparse` (including the transport checksum it computes itself).

use std::net::{Ipv4Addr, Ipv6Addr};

use etherparse::{NetHeaders, PacketBuilder, PacketHeaders, TransportHeader};
use kracauer_core::xlat::{
    ChecksumForm, HEADROOM, HopLimit, Options, V4Rewrite, V6Rewrite, XlatError, ipv4_to_ipv6,
    ipv6_to_ipv4,
};

const CLIENT4: Ipv4Addr = Ipv4Addr::new(198, 51, 100, 2);
const SERVICE4: Ipv4Addr = Ipv4Addr::new(203, 0, 113, 10);
const CLIENT6: Ipv6Addr = Ipv6Addr::new(0x2001, 0xdb8, 0x64, 0, 0, 0, 0xc633, 0x6402);
const BACKEND6: Ipv6Addr = Ipv6Addr::new(0x2001, 0xdb8, 1, 0, 0, 0, 0, 2);

/// 198.51.100.2:51000 -> 203.0.113.10:443, SYN seq 0x01020304, MSS 1460, NOP, WS 7,
/// TTL 64, ID 0x1c46, DF (checksums computed independently of this crate).
const V4_SYN: [u8; 48] = [
    0x45, 0x00, 0x00, 0x30, 0x1c, 0x46, 0x40, 0x00, 0x40, 0x06, 0xb8, 0x41, 0xc6, 0x33, 0x64, 0x02,
    0xcb, 0x00, 0x71, 0x0a, 0xc7, 0x38, 0x01, 0xbb, 0x01, 0x02, 0x03, 0x04, 0x00, 0x00, 0x00, 0x00,
    0x70, 0x02, 0xfa, 0xf0, 0x55, 0xed, 0x00, 0x00, 0x02, 0x04, 0x05, 0xb4, 0x01, 0x03, 0x03, 0x07,
];

/// The same SYN as [2001:db8:64::c633:6402]:51000 -> [2001:db8:1::2]:8443, hop limit 63.
const V6_SYN: [u8; 68] = [
    0x60, 0x00, 0x00, 0x00, 0x00, 0x1c, 0x06, 0x3f, 0x20, 0x01, 0x0d, 0xb8, 0x00, 0x64, 0x00, 0x00,
    0x00, 0x00, 0x00, 0x00, 0xc6, 0x33, 0x64, 0x02, 0x20, 0x01, 0x0d, 0xb8, 0x00, 0x01, 0x00, 0x00,
    0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x02, 0xc7, 0x38, 0x20, 0xfb, 0x01, 0x02, 0x03, 0x04,
    0x00, 0x00, 0x00, 0x00, 0x70, 0x02, 0xfa, 0xf0, 0x16, 0xdf, 0x00, 0x00, 0x02, 0x04, 0x05, 0xb4,
    0x01, 0x03, 0x03, 0x07,
];

/// [`V6_SYN`] translated back with the original addresses and ports: TTL 62, ID 0x1c46
/// as supplied, DF clear (48 bytes is not above 1260).
const V4_SYN_BACK: [u8; 48] = [
    0x45, 0x00, 0x00, 0x30, 0x1c, 0x46, 0x00, 0x00, 0x3e, 0x06, 0xfa, 0x41, 0xc6, 0x33, 0x64, 0x02,
    0xcb, 0x00, 0x71, 0x0a, 0xc7, 0x38, 0x01, 0xbb, 0x01, 0x02, 0x03, 0x04, 0x00, 0x00, 0x00, 0x00,
    0x70, 0x02, 0xfa, 0xf0, 0x55, 0xed, 0x00, 0x00, 0x02, 0x04, 0x05, 0xb4, 0x01, 0x03, 0x03, 0x07,
];

fn to_backend() -> V6Rewrite {
    V6Rewrite {
        src: CLIENT6,
        dst: BACKEND6,
        src_port: 51000,
        dst_port: 8443,
    }
}

fn to_client_side() -> V4Rewrite {
    V4Rewrite {
        src: CLIENT4,
        dst: SERVICE4,
        src_port: 51000,
        dst_port: 443,
        identification: 0x1c46,
    }
}

/// `packet` behind `HEADROOM` bytes of headroom.
fn with_headroom(packet: &[u8]) -> Vec<u8> {
    let mut buf = vec![0u8; HEADROOM];
    buf.extend_from_slice(packet);
    buf
}

#[test]
fn ipv4_syn_becomes_the_expected_ipv6_bytes() {
    let mut buf = with_headroom(&V4_SYN);
    let range = ipv4_to_ipv6(&mut buf, HEADROOM, &to_backend(), Options::default()).unwrap();
    assert_eq!(range, 0..68);
    assert_eq!(&buf[range], &V6_SYN[..]);
}

#[test]
fn ipv6_syn_becomes_the_expected_ipv4_bytes() {
    let mut buf = V6_SYN.to_vec();
    let range = ipv6_to_ipv4(&mut buf, 0, &to_client_side(), Options::default()).unwrap();
    assert_eq!(range, 20..68);
    assert_eq!(&buf[range], &V4_SYN_BACK[..]);
}

#[test]
fn translation_ignores_bytes_after_the_packet() {
    let mut buf = with_headroom(&V4_SYN);
    buf.extend_from_slice(&[0xee; 10]);
    let range = ipv4_to_ipv6(&mut buf, HEADROOM, &to_backend(), Options::default()).unwrap();
    assert_eq!(&buf[range], &V6_SYN[..]);
}

#[test]
fn ipv4_without_headroom_is_refused() {
    let mut buf = V4_SYN.to_vec();
    let err = ipv4_to_ipv6(&mut buf, 0, &to_backend(), Options::default());
    assert_eq!(err, Err(XlatError::NoHeadroom));
    assert_eq!(buf, V4_SYN, "a refused packet is left untouched");
}

#[test]
fn ttl_of_one_is_hop_limit_exceeded_unless_kept() {
    let mut packet = V4_SYN;
    packet[8] = 1;
    let mut buf = with_headroom(&packet);
    let err = ipv4_to_ipv6(&mut buf, HEADROOM, &to_backend(), Options::default());
    assert_eq!(err, Err(XlatError::HopLimitExceeded));
    let keep = Options {
        hop_limit: HopLimit::Keep,
        ..Options::default()
    };
    let range = ipv4_to_ipv6(&mut buf, HEADROOM, &to_backend(), keep).unwrap();
    assert_eq!(buf[range.start + 7], 1);
}

#[test]
fn ipv4_fragment_is_refused() {
    let mut packet = V4_SYN;
    packet[6] = 0x20; // MF
    let mut buf = with_headroom(&packet);
    let err = ipv4_to_ipv6(&mut buf, HEADROOM, &to_backend(), Options::default());
    assert_eq!(err, Err(XlatError::Fragment));
}

#[test]
fn icmp_is_not_translated_in_place() {
    let mut packet = V4_SYN;
    packet[9] = 1;
    let mut buf = with_headroom(&packet);
    let err = ipv4_to_ipv6(&mut buf, HEADROOM, &to_backend(), Options::default());
    assert_eq!(err, Err(XlatError::Protocol(1)));
}

/// Builds an IPv4 TCP packet with `etherparse` (correct checksums).
fn v4_tcp(payload: &[u8], ttl: u8) -> Vec<u8> {
    let b = PacketBuilder::ipv4(CLIENT4.octets(), SERVICE4.octets(), ttl)
        .tcp(51000, 443, 0xdead_beef, 4000)
        .ack(0x1234_5678)
        .psh();
    let mut v = Vec::new();
    b.write(&mut v, payload).expect("build test packet");
    v
}

/// Builds an IPv4 UDP packet with `etherparse` (correct checksum).
fn v4_udp(payload: &[u8]) -> Vec<u8> {
    let b = PacketBuilder::ipv4(CLIENT4.octets(), SERVICE4.octets(), 50).udp(51000, 443);
    let mut v = Vec::new();
    b.write(&mut v, payload).expect("build test packet");
    v
}

/// Parses an IPv6 packet with `etherparse` and checks the header fields and the
/// transport checksum; returns the transport header.
fn check_v6(bytes: &[u8], hop_limit: u8, payload: &[u8]) -> TransportHeader {
    let p = PacketHeaders::from_ip_slice(bytes).expect("etherparse parses the output");
    let Some(NetHeaders::Ipv6(ip, _)) = &p.net else {
        panic!("not IPv6: {:?}", p.net)
    };
    assert_eq!(Ipv6Addr::from(ip.source), CLIENT6);
    assert_eq!(Ipv6Addr::from(ip.destination), BACKEND6);
    assert_eq!(ip.hop_limit, hop_limit);
    assert_eq!(ip.flow_label.value(), 0);
    assert_eq!(usize::from(ip.payload_length), bytes.len() - 40);
    assert_eq!(p.payload.slice(), payload);
    let t = p.transport.clone().expect("etherparse parses the output");
    match &t {
        TransportHeader::Tcp(tcp) => {
            assert_eq!((tcp.source_port, tcp.destination_port), (51000, 8443));
            assert_eq!(
                tcp.checksum,
                tcp.calc_checksum_ipv6(ip, payload)
                    .expect("etherparse parses the output")
            );
        }
        TransportHeader::Udp(udp) => {
            assert_eq!((udp.source_port, udp.destination_port), (51000, 8443));
            assert_eq!(
                udp.checksum,
                udp.calc_checksum_ipv6(ip, payload)
                    .expect("etherparse parses the output")
            );
        }
        other => panic!("unexpected transport {other:?}"),
    }
    t
}

#[test]
fn tcp_with_payload_verifies_in_etherparse_after_translation() {
    let payload: Vec<u8> = (0..1000u32).map(|i| (i * 7) as u8).collect();
    let mut buf = with_headroom(&v4_tcp(&payload, 64));
    let range = ipv4_to_ipv6(&mut buf, HEADROOM, &to_backend(), Options::default()).unwrap();
    let t = check_v6(&buf[range], 63, &payload);
    let TransportHeader::Tcp(tcp) = t else {
        panic!()
    };
    assert_eq!(tcp.sequence_number, 0xdead_beef);
    assert_eq!(tcp.acknowledgment_number, 0x1234_5678);
}

#[test]
fn udp_with_payload_verifies_in_etherparse_after_translation() {
    let payload = b"quic initial, more or less".repeat(20);
    let mut buf = with_headroom(&v4_udp(&payload));
    let range = ipv4_to_ipv6(&mut buf, HEADROOM, &to_backend(), Options::default()).unwrap();
    check_v6(&buf[range], 49, &payload);
}

#[test]
fn udp_without_checksum_gets_a_full_one_in_ipv6() {
    let payload = b"no checksum in IPv4".to_vec();
    let mut packet = v4_udp(&payload);
    packet[26..28].fill(0);
    let mut buf = with_headroom(&packet);
    let range = ipv4_to_ipv6(&mut buf, HEADROOM, &to_backend(), Options::default()).unwrap();
    let t = check_v6(&buf[range], 49, &payload);
    let TransportHeader::Udp(udp) = t else {
        panic!()
    };
    assert_ne!(udp.checksum, 0);
}

/// The partial (CHECKSUM_PARTIAL) form of a TCP/UDP packet: the checksum field holds the
/// folded, uncomplemented pseudo-header sum.
fn to_partial_v4(packet: &mut [u8], checksum_at: usize) {
    let proto = packet[9];
    let l4_len = packet.len() - 20;
    let mut words: Vec<u32> = Vec::new();
    for w in packet[12..20].chunks(2) {
        words.push(u32::from(u16::from_be_bytes([w[0], w[1]])));
    }
    words.push(u32::from(proto));
    words.push(l4_len as u32);
    let partial = fold(words.iter().sum());
    packet[20 + checksum_at..22 + checksum_at].copy_from_slice(&partial.to_be_bytes());
}

fn fold(mut s: u32) -> u16 {
    while s >> 16 != 0 {
        s = (s & 0xffff) + (s >> 16);
    }
    s as u16
}

/// The folded pseudo-header sum of an IPv6 packet.
fn v6_partial(bytes: &[u8]) -> u16 {
    let mut s: u32 = 0;
    for w in bytes[8..40].chunks(2) {
        s += u32::from(u16::from_be_bytes([w[0], w[1]]));
    }
    s += u32::from(bytes[6]);
    s += (bytes.len() - 40) as u32;
    fold(s)
}

#[test]
fn partial_checksum_becomes_the_ipv6_pseudo_header_sum() {
    for (mut packet, at) in [(v4_tcp(b"hello", 64), 16), (v4_udp(b"hello"), 6)] {
        to_partial_v4(&mut packet, at);
        let mut buf = with_headroom(&packet);
        let opts = Options {
            checksum: ChecksumForm::Partial,
            ..Options::default()
        };
        let range = ipv4_to_ipv6(&mut buf, HEADROOM, &to_backend(), opts).unwrap();
        let out = &buf[range];
        let field = u16::from_be_bytes([out[40 + at], out[41 + at]]);
        assert_eq!(field, v6_partial(out), "protocol {}", out[6]);
        // Ports are rewritten, the checksum field aside.
        assert_eq!(&out[40..44], &[0xc7, 0x38, 0x20, 0xfb]);
    }
}

#[test]
fn partial_checksum_comes_back_as_the_ipv4_pseudo_header_sum() {
    let mut packet = v4_tcp(b"hello", 64);
    to_partial_v4(&mut packet, 16);
    let original = packet.clone();
    let mut buf = with_headroom(&packet);
    let opts = Options {
        checksum: ChecksumForm::Partial,
        hop_limit: HopLimit::Keep,
    };
    let r6 = ipv4_to_ipv6(&mut buf, HEADROOM, &to_backend(), opts).unwrap();
    let r4 = ipv6_to_ipv4(&mut buf, r6.start, &to_client_side(), opts).unwrap();
    assert_eq!(&buf[r4.start + 20..r4.end], &original[20..]);
}

#[test]
fn ipv6_tcp_from_backend_verifies_in_etherparse_as_ipv4() {
    let payload = vec![0x5a; 1400];
    let b = PacketBuilder::ipv6(BACKEND6.octets(), CLIENT6.octets(), 64)
        .tcp(8443, 51000, 7, 1000)
        .ack(9)
        .fin();
    let mut packet = Vec::new();
    b.write(&mut packet, &payload).unwrap();
    let to = V4Rewrite {
        src: SERVICE4,
        dst: CLIENT4,
        src_port: 443,
        dst_port: 51000,
        identification: 0xabcd,
    };
    let range = ipv6_to_ipv4(&mut packet, 0, &to, Options::default()).unwrap();
    let out = &packet[range];
    let p = PacketHeaders::from_ip_slice(out).unwrap();
    let Some(NetHeaders::Ipv4(ip, _)) = &p.net else {
        panic!()
    };
    assert_eq!(ip.header_checksum, ip.calc_header_checksum());
    assert_eq!(Ipv4Addr::from(ip.source), SERVICE4);
    assert_eq!(Ipv4Addr::from(ip.destination), CLIENT4);
    assert_eq!(ip.time_to_live, 63);
    assert_eq!(ip.identification, 0xabcd);
    assert!(ip.dont_fragment, "1440 bytes is above 1260: DF");
    assert!(!ip.more_fragments);
    assert_eq!(usize::from(ip.total_len), out.len());
    let Some(TransportHeader::Tcp(tcp)) = &p.transport else {
        panic!()
    };
    assert_eq!((tcp.source_port, tcp.destination_port), (443, 51000));
    assert!(tcp.fin);
    assert_eq!(tcp.checksum, tcp.calc_checksum_ipv4(ip, &payload).unwrap());
}

#[test]
fn ipv6_extension_headers_are_skipped() {
    // Hop-by-Hop (8 bytes of padding) then Destination Options, then UDP.
    let payload = b"behind two extension headers";
    let b = PacketBuilder::ipv6(BACKEND6.octets(), CLIENT6.octets(), 64).udp(8443, 51000);
    let mut plain = Vec::new();
    b.write(&mut plain, payload).unwrap();
    let mut packet = plain[..40].to_vec();
    packet[6] = 0; // hop-by-hop
    packet.extend_from_slice(&[60, 0, 1, 4, 0, 0, 0, 0]); // -> dest opts, PadN
    packet.extend_from_slice(&[17, 0, 1, 4, 0, 0, 0, 0]); // -> UDP, PadN
    packet.extend_from_slice(&plain[40..]);
    let plen = (packet.len() - 40) as u16;
    packet[4..6].copy_from_slice(&plen.to_be_bytes());
    let to = V4Rewrite {
        src: SERVICE4,
        dst: CLIENT4,
        src_port: 443,
        dst_port: 51000,
        identification: 1,
    };
    let range = ipv6_to_ipv4(&mut packet, 0, &to, Options::default()).unwrap();
    assert_eq!(range.start, 36, "IPv4 header written just before UDP");
    let out = &packet[range];
    let p = PacketHeaders::from_ip_slice(out).unwrap();
    let Some(NetHeaders::Ipv4(ip, _)) = &p.net else {
        panic!()
    };
    let Some(TransportHeader::Udp(udp)) = &p.transport else {
        panic!()
    };
    assert_eq!(udp.checksum, udp.calc_checksum_ipv4(ip, payload).unwrap());
    assert_eq!(ip.total_len as usize, 20 + 8 + payload.len());
}

#[test]
fn ipv6_routing_header_with_segments_left_is_refused() {
    let mut packet = V6_SYN[..40].to_vec();
    packet[6] = 43;
    packet.extend_from_slice(&[6, 0, 0, 1, 0, 0, 0, 0]); // type 0, segments left 1
    packet.extend_from_slice(&V6_SYN[40..]);
    let plen = (packet.len() - 40) as u16;
    packet[4..6].copy_from_slice(&plen.to_be_bytes());
    let err = ipv6_to_ipv4(
        &mut packet.clone(),
        0,
        &to_client_side(),
        Options::default(),
    );
    assert_eq!(err, Err(XlatError::RoutingHeader));
    packet[43] = 0; // segments left 0: skipped
    let range = ipv6_to_ipv4(&mut packet, 0, &to_client_side(), Options::default()).unwrap();
    assert_eq!(range, 28..76);
}

#[test]
fn ipv6_fragment_header_is_refused() {
    let mut packet = V6_SYN[..40].to_vec();
    packet[6] = 44;
    packet.extend_from_slice(&[6, 0, 0, 0, 0, 0, 0, 1]);
    packet.extend_from_slice(&V6_SYN[40..]);
    let plen = (packet.len() - 40) as u16;
    packet[4..6].copy_from_slice(&plen.to_be_bytes());
    let err = ipv6_to_ipv4(&mut packet, 0, &to_client_side(), Options::default());
    assert_eq!(err, Err(XlatError::Fragment));
}

#[test]
fn ipv4_options_are_dropped_and_an_unexpired_source_route_refused() {
    // V4_SYN with 4 bytes of options: NOP NOP NOP EOL.
    let mut packet = V4_SYN[..20].to_vec();
    packet.extend_from_slice(&[1, 1, 1, 0]);
    packet.extend_from_slice(&V4_SYN[20..]);
    packet[0] = 0x46;
    packet[2..4].copy_from_slice(&52u16.to_be_bytes());
    let mut buf = with_headroom(&packet);
    let range = ipv4_to_ipv6(&mut buf, HEADROOM, &to_backend(), Options::default()).unwrap();
    assert_eq!(range, 4..72);
    assert_eq!(&buf[range], &V6_SYN[..]);

    // LSRR, length 7, pointer 4 (one address still to visit), then EOL.
    let mut packet = V4_SYN[..20].to_vec();
    packet.extend_from_slice(&[131, 7, 4, 192, 0, 2, 1, 0]);
    packet.extend_from_slice(&V4_SYN[20..]);
    packet[0] = 0x47;
    packet[2..4].copy_from_slice(&56u16.to_be_bytes());
    let mut buf = with_headroom(&packet);
    let err = ipv4_to_ipv6(&mut buf, HEADROOM, &to_backend(), Options::default());
    assert_eq!(err, Err(XlatError::SourceRoute));
}

#[test]
fn large_ipv6_packet_gets_df_and_small_one_does_not() {
    for (len, df) in [(1240usize, false), (1241, true)] {
        let payload = vec![1u8; len - 20];
        let b = PacketBuilder::ipv6(BACKEND6.octets(), CLIENT6.octets(), 64).tcp(1, 2, 3, 4);
        let mut packet = Vec::new();
        b.write(&mut packet, &payload).unwrap();
        let range = ipv6_to_ipv4(&mut packet, 0, &to_client_side(), Options::default()).unwrap();
        assert_eq!(range.len(), len + 20);
        assert_eq!(
            packet[range.start + 6] & 0x40 != 0,
            df,
            "IPv4 length {}",
            len + 20
        );
    }
}

/// Ones'-complement sum of `b` as 16-bit words, folded.
fn fold_sum(b: &[u8]) -> u16 {
    let mut s: u32 = b
        .chunks(2)
        .map(|w| u32::from(u16::from_be_bytes([w[0], *w.get(1).unwrap_or(&0)])))
        .sum();
    while s >> 16 != 0 {
        s = (s & 0xffff) + (s >> 16);
    }
    s as u16
}

#[test]
fn udp_checksum_that_becomes_zero_is_sent_as_ffff_in_ipv4() {
    // Choose the first payload word so that the IPv4 datagram sums to 0xffff: its
    // computed checksum is 0, which UDP must send as 0xffff.
    let mut payload = vec![0u8, 0, 1, 2, 3, 4, 5];
    let mut v4_sum = Vec::new();
    v4_sum.extend_from_slice(&SERVICE4.octets());
    v4_sum.extend_from_slice(&CLIENT4.octets());
    let udp_len = (8 + payload.len()) as u16;
    v4_sum.extend_from_slice(&[0, 17]);
    v4_sum.extend_from_slice(&udp_len.to_be_bytes());
    v4_sum.extend_from_slice(&443u16.to_be_bytes());
    v4_sum.extend_from_slice(&51000u16.to_be_bytes());
    v4_sum.extend_from_slice(&udp_len.to_be_bytes());
    v4_sum.extend_from_slice(&payload[2..]);
    let word = 0xffff - fold_sum(&v4_sum);
    payload[..2].copy_from_slice(&word.to_be_bytes());

    let b = PacketBuilder::ipv6(BACKEND6.octets(), CLIENT6.octets(), 64).udp(8443, 51000);
    let mut packet = Vec::new();
    b.write(&mut packet, &payload).unwrap();
    let to = V4Rewrite {
        src: SERVICE4,
        dst: CLIENT4,
        src_port: 443,
        dst_port: 51000,
        identification: 1,
    };
    let range = ipv6_to_ipv4(&mut packet, 0, &to, Options::default()).unwrap();
    let out = &packet[range];
    assert_eq!(&out[26..28], &[0xff, 0xff]);
    let p = PacketHeaders::from_ip_slice(out).unwrap();
    let Some(NetHeaders::Ipv4(ip, _)) = &p.net else {
        panic!()
    };
    let Some(TransportHeader::Udp(udp)) = &p.transport else {
        panic!()
    };
    assert_eq!(udp.checksum, udp.calc_checksum_ipv4(ip, &payload).unwrap());
}

#[test]
fn ipv6_packet_too_long_for_ipv4_is_refused() {
    let payload = vec![0u8; 65_535 - 20];
    let b = PacketBuilder::ipv6(BACKEND6.octets(), CLIENT6.octets(), 64).tcp(1, 2, 3, 4);
    let mut packet = Vec::new();
    b.write(&mut packet, &payload).unwrap();
    let err = ipv6_to_ipv4(&mut packet, 0, &to_client_side(), Options::default());
    assert_eq!(err, Err(XlatError::TooBig));
    // 20 bytes less fits exactly: a 65535-byte IPv4 packet.
    let mut packet = packet[..packet.len() - 20].to_vec();
    packet[4..6].copy_from_slice(&(65_535u16 - 20).to_be_bytes());
    let range = ipv6_to_ipv4(&mut packet, 0, &to_client_side(), Options::default()).unwrap();
    assert_eq!(range.len(), 65_535);
}
