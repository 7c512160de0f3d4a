//! Arbitrary bytes through every checked constructor of `kracauer_core::wire`, walking
//! every option list and extension-header chain; every getter and setter on unchecked
//! views of the same bytes; and a TCP segment built from the bytes. Nothing may panic,
//! and these invariants are checked: a checksum made valid stays valid through every
//! in-place rewrite (incremental updates agree with recomputation), sums combine across
//! a split, and a built segment parses back to what was asked for with valid checksums.
#![no_main]
use std::hint::black_box;
use std::net::{Ipv4Addr, Ipv6Addr};

use kracauer_core::wire::build::{IpHeaderSpec, TcpOptionsSpec, TcpSegmentSpec, emit_tcp};
use kracauer_core::wire::checksum::{self, ChecksumForm};
use kracauer_core::wire::ipv4::Ipv4Packet;
use kracauer_core::wire::ipv6::{Ipv6FragHeader, Ipv6Packet};
use kracauer_core::wire::tcp::{SeqNumber, TcpOption, TcpPacket};
use kracauer_core::wire::{Icmpv4Packet, Icmpv6Packet, UdpPacket, ip_proto};
use libfuzzer_sys::fuzz_target;

const SRC4: Ipv4Addr = Ipv4Addr::new(198, 51, 100, 2);
const DST4: Ipv4Addr = Ipv4Addr::new(203, 0, 113, 10);
const SRC6: Ipv6Addr = Ipv6Addr::new(0x2001, 0xdb8, 0x64, 0, 0, 0, 0xc633, 0x6402);
const DST6: Ipv6Addr = Ipv6Addr::new(0x2001, 0xdb8, 1, 0, 0, 0, 0, 2);

fn ipv4(data: &[u8]) {
    for p in [
        Ipv4Packet::new_checked(data),
        Ipv4Packet::new_checked_header(data),
    ]
    .into_iter()
    .flatten()
    {
        black_box((
            p.version(),
            p.header_len(),
            p.dscp(),
            p.ecn(),
            p.total_len(),
        ));
        black_box((
            p.ident(),
            p.dont_frag(),
            p.more_frags(),
            p.frag_offset(),
            p.ttl(),
        ));
        black_box((p.protocol(), p.checksum(), p.src_addr(), p.dst_addr()));
        black_box((p.verify_checksum(), p.payload().len(), p.options().len()));
        black_box(p.has_unexpired_source_route().is_ok());
        for o in p.options_iter() {
            if let Ok(o) = o {
                black_box(o.is_unexpired_source_route());
            }
        }
        assert!(p.header_len() >= 20 && p.payload_range().end <= data.len());
        if p.verify_checksum() && p.ttl() > 0 {
            let mut copy = p.header().to_vec();
            let mut m = Ipv4Packet::new_checked_header(&mut copy[..]).unwrap();
            m.decrement_ttl();
            assert!(
                m.verify_checksum(),
                "TTL decrement broke the header checksum"
            );
        }
        upper(p.protocol(), p.payload(), false);
    }
}

fn ipv6(data: &[u8]) {
    for p in [
        Ipv6Packet::new_checked(data),
        Ipv6Packet::new_checked_header(data),
    ]
    .into_iter()
    .flatten()
    {
        black_box((
            p.traffic_class(),
            p.flow_label(),
            p.payload_len(),
            p.hop_limit(),
        ));
        black_box((p.src_addr(), p.dst_addr(), p.payload().len()));
        if let Ok(Some((at, _))) = p.routing_segments_left() {
            assert!(at < p.payload_range().end);
        }
        for h in p.ext_headers() {
            match h {
                Ok(h) => {
                    assert!(h.offset + h.len <= data.len());
                    if h.kind == ip_proto::IPV6_FRAG {
                        let f = Ipv6FragHeader::new_checked(&data[h.offset..]).unwrap();
                        black_box((f.frag_offset(), f.more_frags(), f.ident()));
                    }
                }
                Err(_) => break,
            }
        }
        if let Ok(up) = p.upper_layer() {
            let end = p.payload_range().end;
            assert!(up.offset <= end);
            if up.fragment.is_none_or(|f| f.offset == 0) {
                upper(up.protocol, &data[up.offset..end], true);
            }
        }
    }
}

fn upper(protocol: u8, l4: &[u8], v6: bool) {
    match protocol {
        ip_proto::TCP => tcp(l4, v6),
        ip_proto::UDP => udp(l4),
        ip_proto::ICMP => icmpv4(l4),
        ip_proto::ICMPV6 => icmpv6(l4),
        _ => {}
    }
}

fn tcp(data: &[u8], v6: bool) {
    let Ok(p) = TcpPacket::new_checked(data) else {
        return;
    };
    black_box((
        p.src_port(),
        p.dst_port(),
        p.seq_number(),
        p.ack_number(),
        p.flags(),
    ));
    black_box((
        p.window_len(),
        p.urgent_at(),
        p.segment_len(),
        p.payload().len(),
    ));
    let mut offsets = Vec::new();
    for o in p.options() {
        match o {
            Ok((at, opt)) => {
                if let TcpOption::Sack(b) = opt {
                    black_box(b.iter().count());
                }
                let kind = match opt {
                    TcpOption::Mss(_) => 2,
                    TcpOption::Sack(_) => 5,
                    TcpOption::Timestamps { .. } => 8,
                    _ => 0,
                };
                offsets.push((at, kind));
            }
            Err(_) => break,
        }
    }
    // Make the checksum valid, rewrite everything rewritable, check it is still valid.
    let mut buf = data.to_vec();
    let mut m = TcpPacket::new_checked(&mut buf[..]).unwrap();
    let valid = |m: &TcpPacket<&mut [u8]>| {
        if v6 {
            m.verify_checksum_v6(&SRC6, &DST6)
        } else {
            m.verify_checksum_v4(SRC4, DST4)
        }
    };
    if v6 {
        m.fill_checksum_v6(&SRC6, &DST6)
    } else {
        m.fill_checksum_v4(SRC4, DST4)
    }
    let full = ChecksumForm::Full;
    m.rewrite_seq_number(m.seq_number() + 0x8000_0001, full);
    m.rewrite_ack_number(SeqNumber(!m.ack_number().0), full);
    m.rewrite_window_len(m.window_len().rotate_left(3), full);
    m.rewrite_port(true, 8443, full);
    for (at, kind) in offsets {
        let r = match kind {
            8 => m.rewrite_timestamps_at(at, 0xdead_beef, 1, full),
            5 => m.rewrite_sack_block_at(at, 0, SeqNumber(7), SeqNumber(9), full),
            2 => m.rewrite_mss_at(at, 1220, full),
            _ => Ok(()),
        };
        black_box(r.is_ok());
    }
    let _ = m.map_timestamps(full, |v, e| (e, v));
    let _ = m.shift_sack_edges(0x1234_5678, full);
    assert!(valid(&m), "incremental update disagrees with recomputation");
}

fn udp(data: &[u8]) {
    for p in [
        UdpPacket::new_checked(data),
        UdpPacket::new_checked_header(data),
    ]
    .into_iter()
    .flatten()
    {
        black_box((
            p.src_port(),
            p.dst_port(),
            p.len(),
            p.checksum(),
            p.payload().len(),
        ));
        black_box((
            p.verify_checksum_v4(SRC4, DST4),
            p.verify_checksum_v6(&SRC6, &DST6),
        ));
    }
}

fn icmpv4(data: &[u8]) {
    let Ok(p) = Icmpv4Packet::new_checked(data) else {
        return;
    };
    black_box((
        p.msg_type(),
        p.code(),
        p.rest_of_header(),
        p.pointer(),
        p.next_hop_mtu(),
    ));
    black_box((p.is_error(), p.verify_checksum()));
    if p.is_error() {
        ipv4(p.payload());
    }
}

fn icmpv6(data: &[u8]) {
    let Ok(p) = Icmpv6Packet::new_checked(data) else {
        return;
    };
    black_box((p.msg_type(), p.code(), p.mtu(), p.pointer(), p.is_error()));
    black_box(p.verify_checksum(&SRC6, &DST6));
    if p.is_error() {
        ipv6(p.payload());
    }
}

/// Every getter and setter on unchecked views: no panic, whatever the bytes.
fn unchecked(data: &[u8]) {
    let p = Ipv4Packet::new_unchecked(data);
    black_box((
        p.header_len(),
        p.total_len(),
        p.options().len(),
        p.payload().len(),
    ));
    black_box((p.src_addr(), p.verify_checksum(), p.options_iter().count()));
    let p = Ipv6Packet::new_unchecked(data);
    black_box((
        p.payload().len(),
        p.src_addr(),
        p.upper_layer().is_ok(),
        p.ext_headers().count(),
    ));
    let p = TcpPacket::new_unchecked(data);
    black_box((
        p.header_len(),
        p.seq_number(),
        p.payload().len(),
        p.options().count(),
    ));
    black_box((p.verify_checksum_v4(SRC4, DST4), p.segment_len()));
    let p = UdpPacket::new_unchecked(data);
    black_box((p.len(), p.payload().len(), p.verify_checksum_v4(SRC4, DST4)));
    let p = Icmpv4Packet::new_unchecked(data);
    black_box((p.rest_of_header(), p.payload().len(), p.verify_checksum()));
    let p = Icmpv6Packet::new_unchecked(data);
    black_box((p.mtu(), p.payload().len(), p.verify_checksum(&SRC6, &DST6)));

    let knob = |i: usize| data.get(i).copied().unwrap_or(0);
    let mut buf = data.to_vec();
    let mut p = Ipv4Packet::new_unchecked(&mut buf[..]);
    p.set_header_len(usize::from(knob(0)));
    p.set_total_len(u16::from_be_bytes([knob(1), knob(2)]));
    p.fill_checksum();
    p.decrement_ttl();
    black_box((p.options_mut().len(), p.payload_mut().len()));
    let mut p = Ipv6Packet::new_unchecked(&mut buf[..]);
    p.set_payload_len(u16::from_be_bytes([knob(3), knob(4)]));
    p.set_flow_label(u32::MAX);
    black_box(p.payload_mut().len());
    let mut p = TcpPacket::new_unchecked(&mut buf[..]);
    let f = ChecksumForm::Full;
    p.set_header_len(usize::from(knob(5)));
    p.rewrite_seq_number(SeqNumber(1), f);
    p.rewrite_window_len(2, f);
    let _ = black_box(p.rewrite_timestamps_at(usize::from(knob(6)), 1, 2, f));
    let _ = black_box(p.rewrite_sack_block_at(
        usize::from(knob(7)),
        usize::from(knob(8)),
        SeqNumber(1),
        SeqNumber(2),
        f,
    ));
    let _ = black_box(p.rewrite_mss_at(usize::from(knob(9)), 3, f));
    let _ = black_box(p.shift_sack_edges(5, f));
    let _ = black_box(p.map_timestamps(f, |a, b| (b, a)));
    black_box((p.options_bytes_mut().len(), p.payload_mut().len()));
    let mut p = UdpPacket::new_unchecked(&mut buf[..]);
    p.rewrite_port(true, 1, f);
    p.update_checksum_pseudo(ChecksumForm::Partial, 1, 2);
    black_box(p.payload_mut().len());
    let mut p = Icmpv6Packet::new_unchecked(&mut buf[..]);
    p.fill_checksum(&SRC6, &DST6);
    p.set_mtu(1280);
    let mut p = Icmpv4Packet::new_unchecked(&mut buf[..]);
    p.fill_checksum();
    p.set_next_hop_mtu(1280);
}

/// Builds a segment from the bytes and parses it back.
fn build(data: &[u8]) {
    let knob = |i: usize| data.get(i).copied().unwrap_or(0);
    let word = |i: usize| u32::from_be_bytes([knob(i), knob(i + 1), knob(i + 2), knob(i + 3)]);
    let nblocks = usize::from(knob(0) % 5);
    let blocks: Vec<_> = (0..nblocks)
        .map(|i| (SeqNumber(word(4 + i * 8)), SeqNumber(word(8 + i * 8))))
        .collect();
    let bits = knob(1);
    let options = TcpOptionsSpec {
        mss: (bits & 1 != 0).then(|| word(40) as u16),
        window_scale: (bits & 2 != 0).then(|| knob(44)),
        sack_permitted: bits & 4 != 0,
        timestamps: (bits & 8 != 0).then(|| (word(45), word(49))),
        sack_blocks: &blocks,
    };
    let payload = data.get(60..).unwrap_or(&[]);
    let seg = TcpSegmentSpec {
        src_port: word(53) as u16,
        dst_port: (word(53) >> 16) as u16,
        seq: SeqNumber(word(36)),
        ack: SeqNumber(word(2)),
        flags: knob(57),
        window: word(58) as u16,
        options,
        payload,
    };
    let ip = if bits & 16 != 0 {
        IpHeaderSpec::V6 {
            src: SRC6,
            dst: DST6,
            hop_limit: knob(3),
            flow_label: word(12),
        }
    } else {
        IpHeaderSpec::V4 {
            src: SRC4,
            dst: DST4,
            ttl: knob(3),
            ident: word(12) as u16,
        }
    };
    let mut out = vec![0u8; usize::from(knob(59)) * 4];
    let Ok(n) = emit_tcp(&mut out, &ip, &seg) else {
        return;
    };
    let l4 = match ip {
        IpHeaderSpec::V4 { .. } => {
            let p = Ipv4Packet::new_checked(&out[..n]).unwrap();
            assert!(p.verify_checksum());
            let t = TcpPacket::new_checked_options(p.payload()).unwrap();
            assert!(t.verify_checksum_v4(SRC4, DST4));
            p.header_len()
        }
        IpHeaderSpec::V6 { .. } => {
            let p = Ipv6Packet::new_checked(&out[..n]).unwrap();
            let t = TcpPacket::new_checked_options(p.payload()).unwrap();
            assert!(t.verify_checksum_v6(&SRC6, &DST6));
            p.upper_layer().unwrap().offset
        }
    };
    let t = TcpPacket::new_checked(&out[l4..n]).unwrap();
    assert_eq!(
        (t.seq_number(), t.ack_number(), t.flags()),
        (seg.seq, seg.ack, seg.flags)
    );
    assert_eq!(t.payload(), payload);
    let mut got_blocks = 0;
    for o in t.options().options() {
        match o.unwrap() {
            TcpOption::Mss(m) => assert_eq!(Some(m), options.mss),
            TcpOption::WindowScale(w) => assert_eq!(Some(w), options.window_scale),
            TcpOption::SackPermitted => assert!(options.sack_permitted),
            TcpOption::Timestamps { tsval, tsecr } => {
                assert_eq!(Some((tsval, tsecr)), options.timestamps)
            }
            TcpOption::Sack(b) => {
                assert!(b.iter().eq(blocks.iter().copied()));
                got_blocks = b.len();
            }
            other => panic!("unexpected option {other:?}"),
        }
    }
    assert_eq!(got_blocks, nblocks);
}

fuzz_target!(|data: &[u8]| {
    // Every parser sees every input.
    ipv4(data);
    ipv6(data);
    tcp(data, false);
    udp(data);
    icmpv4(data);
    icmpv6(data);
    unchecked(data);
    build(data);
    // Sums combine across any even split.
    let mid = (data.len() / 2) & !1;
    let (a, b) = data.split_at(mid);
    assert_eq!(
        checksum::fold(checksum::combine(checksum::sum(a), checksum::sum(b))) % 0xffff,
        checksum::fold(checksum::sum(data)) % 0xffff
    );
});
