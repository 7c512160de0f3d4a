//! Unit tests for building TCP segments.

use super::*;
use crate::wire::tcp::{TcpOption, flags};
use crate::wire::testdata::{SYN_V4, SYNACK_V6};

const C4: Ipv4Addr = Ipv4Addr::new(198, 51, 100, 2);
const S4: Ipv4Addr = Ipv4Addr::new(203, 0, 113, 10);

fn b6() -> Ipv6Addr {
    "2001:db8:1::2".parse().unwrap()
}
fn k6() -> Ipv6Addr {
    "2001:db8:64::c633:6402".parse().unwrap()
}

#[test]
fn linux_syn_is_reproduced_byte_for_byte() {
    let mut buf = [0xaau8; 100];
    let ip = IpHeaderSpec::V4 {
        src: C4,
        dst: S4,
        ttl: 64,
        ident: 0x1c46,
    };
    let seg = TcpSegmentSpec {
        src_port: 40000,
        dst_port: 443,
        seq: SeqNumber(0x6b8b_4567),
        ack: SeqNumber(0),
        flags: flags::SYN,
        window: 64240,
        options: TcpOptionsSpec {
            mss: Some(1460),
            window_scale: Some(7),
            sack_permitted: true,
            timestamps: Some((123_456, 0)),
            sack_blocks: &[],
        },
        payload: &[],
    };
    let n = emit_tcp(&mut buf, &ip, &seg).unwrap();
    assert_eq!(n, 60);
    assert_eq!(&buf[..n], &SYN_V4[..]);
    assert_eq!(buf[60], 0xaa, "nothing written past the packet");
}

#[test]
fn synack_without_sack_permitted_or_timestamps_uses_nop_layout() {
    let opts = TcpOptionsSpec {
        mss: Some(1420),
        window_scale: Some(9),
        sack_permitted: true,
        timestamps: None,
        sack_blocks: &[],
    };
    let mut out = [0u8; 40];
    let n = opts.write(&mut out).unwrap();
    assert_eq!(&out[..n], &[2, 4, 0x05, 0x8c, 1, 3, 3, 9, 1, 1, 4, 2]);
}

#[test]
fn ipv6_synack_parses_back_with_valid_checksum() {
    let mut buf = [0u8; 100];
    let ip = IpHeaderSpec::V6 {
        src: b6(),
        dst: k6(),
        hop_limit: 64,
        flow_label: 0x12345,
    };
    let seg = TcpSegmentSpec {
        src_port: 443,
        dst_port: 40000,
        seq: SeqNumber(0xa0b0_c0d0),
        ack: SeqNumber(0x6b8b_4568),
        flags: flags::SYN | flags::ACK,
        window: 65535,
        options: TcpOptionsSpec {
            mss: Some(1420),
            window_scale: Some(9),
            sack_permitted: true,
            timestamps: Some((0x1122_3344, 123_456)),
            sack_blocks: &[],
        },
        payload: &[],
    };
    let n = emit_tcp(&mut buf, &ip, &seg).unwrap();
    let p = Ipv6Packet::new_checked(&buf[..n]).unwrap();
    assert_eq!(p.payload_len(), 40);
    assert_eq!(
        (p.src_addr(), p.dst_addr(), p.flow_label()),
        (b6(), k6(), 0x12345)
    );
    let t = TcpPacket::new_checked_options(p.payload()).unwrap();
    assert!(t.verify_checksum_v6(&b6(), &k6()));
    assert_eq!(
        t.options().options().collect::<Vec<_>>(),
        vec![
            Ok(TcpOption::Mss(1420)),
            Ok(TcpOption::SackPermitted),
            Ok(TcpOption::Timestamps {
                tsval: 0x1122_3344,
                tsecr: 123_456
            }),
            Ok(TcpOption::WindowScale(9)),
        ]
    );
    // The fixed header matches the sample SYN-ACK's but for the payload length (this
    // one's options take Linux's 20 bytes, the sample's 24).
    assert_eq!(&buf[..4], &SYNACK_V6[..4]);
    assert_eq!(&buf[6..40], &SYNACK_V6[6..40]);
}

#[test]
fn ack_with_data_and_sack_blocks_carries_payload_and_valid_checksums() {
    let mut buf = [0u8; 200];
    let ip = IpHeaderSpec::V4 {
        src: S4,
        dst: C4,
        ttl: 64,
        ident: 7,
    };
    let blocks = [
        (SeqNumber(100), SeqNumber(200)),
        (SeqNumber(300), SeqNumber(400)),
    ];
    let seg = TcpSegmentSpec {
        src_port: 443,
        dst_port: 40000,
        seq: SeqNumber(1),
        ack: SeqNumber(2),
        flags: flags::ACK | flags::PSH,
        window: 500,
        options: TcpOptionsSpec {
            timestamps: Some((5, 6)),
            sack_blocks: &blocks,
            ..TcpOptionsSpec::default()
        },
        payload: b"GET / HTTP/1.1\r\n",
    };
    let n = emit_tcp(&mut buf, &ip, &seg).unwrap();
    let p = Ipv4Packet::new_checked(&buf[..n]).unwrap();
    assert!(p.verify_checksum());
    assert!(p.dont_frag());
    let t = TcpPacket::new_checked_options(p.payload()).unwrap();
    assert_eq!(t.header_len(), 20 + 12 + 20);
    assert_eq!(t.payload(), b"GET / HTTP/1.1\r\n");
    assert!(t.verify_checksum_v4(S4, C4));
}

#[test]
fn rst_without_options_is_forty_bytes() {
    let mut buf = [0u8; 40];
    let ip = IpHeaderSpec::V4 {
        src: S4,
        dst: C4,
        ttl: 64,
        ident: 0,
    };
    let seg = TcpSegmentSpec {
        src_port: 443,
        dst_port: 40000,
        seq: SeqNumber(9),
        ack: SeqNumber(0),
        flags: flags::RST,
        window: 0,
        options: TcpOptionsSpec::default(),
        payload: &[],
    };
    assert_eq!(emit_tcp(&mut buf, &ip, &seg), Ok(40));
    let t = TcpPacket::new_checked(&buf[20..]).unwrap();
    assert!(t.rst() && t.verify_checksum_v4(S4, C4));
    assert_eq!(
        emit_tcp(&mut buf[..39], &ip, &seg),
        Err(WireError::BufferTooSmall)
    );
}

#[test]
fn too_many_options_are_refused() {
    let blocks = [(SeqNumber(1), SeqNumber(2)); 4];
    let opts = TcpOptionsSpec {
        timestamps: Some((1, 2)),
        sack_blocks: &blocks,
        ..TcpOptionsSpec::default()
    };
    assert_eq!(opts.write(&mut [0u8; 60]), Err(WireError::ValueOutOfRange));
    let opts = TcpOptionsSpec {
        sack_blocks: &blocks,
        ..TcpOptionsSpec::default()
    };
    assert_eq!(opts.write(&mut [0u8; 60]), Ok(36));
    assert_eq!(opts.write(&mut [0u8; 35]), Err(WireError::BufferTooSmall));
}

#[test]
fn payload_over_64k_is_refused() {
    let mut buf = vec![0u8; 70_000];
    let payload = vec![0u8; 65_536];
    let ip = IpHeaderSpec::V6 {
        src: b6(),
        dst: k6(),
        hop_limit: 1,
        flow_label: 0,
    };
    let seg = TcpSegmentSpec {
        src_port: 1,
        dst_port: 2,
        seq: SeqNumber(0),
        ack: SeqNumber(0),
        flags: flags::ACK,
        window: 0,
        options: TcpOptionsSpec::default(),
        payload: &payload,
    };
    assert_eq!(
        emit_tcp(&mut buf, &ip, &seg),
        Err(WireError::ValueOutOfRange)
    );
}
