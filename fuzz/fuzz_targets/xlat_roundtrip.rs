//! Fuzzes `kracauer_core::xlat`: arbitrary bytes as an IPv4 or IPv6 TCP/UDP packet (in
//! place, both checksum forms) or as an ICMPv4/ICMPv6 message. Translation must never
//! panic; when it succeeds the output must be a valid packet, translating it back must
//! succeed and give a valid packet, and a TCP/UDP packet whose checksum was right must
//! come back with the same transport bytes.
#![no_main]

use std::net::{Ipv4Addr, Ipv6Addr};

use kracauer_core::wire::{
    Icmpv4Packet, Icmpv6Packet, Ipv4Packet, Ipv6Packet, TcpPacket, UdpPacket, ip_proto,
};
use kracauer_core::xlat::{
    ChecksumForm, HEADROOM, HopLimit, IcmpV4Params, IcmpV6Params, InnerFlow, InnerMapping,
    InnerProtocol, NextHopMtus, Options, V4Rewrite, V6Rewrite, icmpv4_to_icmpv6, icmpv6_to_icmpv4,
    ipv4_to_ipv6, ipv6_to_ipv4,
};
use libfuzzer_sys::fuzz_target;

const PREFIX: [u8; 12] = [0x20, 0x01, 0x0d, 0xb8, 0, 0x64, 0, 0, 0, 0, 0, 0];
const DELTA: u32 = 0x8000_0001;

fn embed(a: Ipv4Addr) -> Ipv6Addr {
    let mut o = [0u8; 16];
    o[..12].copy_from_slice(&PREFIX);
    o[12..].copy_from_slice(&a.octets());
    Ipv6Addr::from(o)
}

fn extract(a: Ipv6Addr) -> Ipv4Addr {
    let o = a.octets();
    Ipv4Addr::new(o[12], o[13], o[14], o[15])
}

/// Maps every embedded packet: addresses through the /96, ports swapped around, the
/// sequence number shifted by `DELTA` (and back).
struct Embed;

impl InnerMapping for Embed {
    fn inner_v4_to_v6(
        &mut self,
        _: InnerProtocol,
        i: &InnerFlow<Ipv4Addr>,
    ) -> Option<InnerFlow<Ipv6Addr>> {
        Some(InnerFlow {
            src: embed(i.src),
            dst: embed(i.dst),
            src_port: i.src_port.rotate_left(3),
            dst_port: !i.dst_port,
            seq: i.seq.map(|s| s.wrapping_add(DELTA)),
            ack: i.ack,
        })
    }

    fn inner_v6_to_v4(
        &mut self,
        _: InnerProtocol,
        i: &InnerFlow<Ipv6Addr>,
    ) -> Option<InnerFlow<Ipv4Addr>> {
        Some(InnerFlow {
            src: extract(i.src),
            dst: extract(i.dst),
            src_port: i.src_port.rotate_right(3),
            dst_port: !i.dst_port,
            seq: i.seq.map(|s| s.wrapping_sub(DELTA)),
            ack: i.ack,
        })
    }
}

/// Whether the transport checksum of `l4` (exactly the segment) is right; a UDP
/// checksum of 0 ("none" in IPv4) does not count as right.
fn l4_valid_v4(protocol: u8, l4: &[u8], src: Ipv4Addr, dst: Ipv4Addr) -> bool {
    match protocol {
        ip_proto::TCP => TcpPacket::new_checked(l4).is_ok_and(|t| t.verify_checksum_v4(src, dst)),
        ip_proto::UDP => UdpPacket::new_checked(l4).is_ok_and(|u| {
            u.checksum() != 0 && u.len() as usize == l4.len() && u.verify_checksum_v4(src, dst)
        }),
        _ => false,
    }
}

fn l4_valid_v6(protocol: u8, l4: &[u8], src: &Ipv6Addr, dst: &Ipv6Addr) -> bool {
    match protocol {
        ip_proto::TCP => TcpPacket::new_checked(l4).is_ok_and(|t| t.verify_checksum_v6(src, dst)),
        ip_proto::UDP => UdpPacket::new_checked(l4).is_ok_and(|u| {
            u.checksum() != 0 && u.len() as usize == l4.len() && u.verify_checksum_v6(src, dst)
        }),
        _ => false,
    }
}

fn options(mode: u8) -> Options {
    Options {
        checksum: if mode & 0x10 != 0 {
            ChecksumForm::Partial
        } else {
            ChecksumForm::Full
        },
        hop_limit: if mode & 0x20 != 0 {
            HopLimit::Keep
        } else {
            HopLimit::Decrement
        },
    }
}

fn tcp_udp_from_v4(bytes: &[u8], mode: u8) {
    let opts = options(mode);
    let mut buf = vec![0u8; HEADROOM];
    buf.extend_from_slice(bytes);
    let to6 = V6Rewrite {
        src: Ipv6Addr::new(0x2001, 0xdb8, 0x64, 0, 0, 0, 0xc633, 0x6402),
        dst: Ipv6Addr::new(0x2001, 0xdb8, 1, 0, 0, 0, 0, 2),
        src_port: 51000,
        dst_port: 8443,
    };
    let (before, orig_l4) = {
        let Ok(ip) = Ipv4Packet::new_checked(bytes) else {
            let _ = ipv4_to_ipv6(&mut buf, HEADROOM, &to6, opts);
            return;
        };
        let back = V4Rewrite {
            src: ip.src_addr(),
            dst: ip.dst_addr(),
            src_port: ip
                .payload()
                .get(..2)
                .map_or(0, |p| u16::from_be_bytes([p[0], p[1]])),
            dst_port: ip
                .payload()
                .get(2..4)
                .map_or(0, |p| u16::from_be_bytes([p[0], p[1]])),
            identification: ip.ident(),
        };
        let valid = opts.checksum == ChecksumForm::Full
            && l4_valid_v4(ip.protocol(), ip.payload(), ip.src_addr(), ip.dst_addr());
        (back, valid.then(|| ip.payload().to_vec()))
    };
    let Ok(r6) = ipv4_to_ipv6(&mut buf, HEADROOM, &to6, opts) else {
        return;
    };
    let v6 = Ipv6Packet::new_checked(&buf[r6.clone()]).expect("translated IPv6 parses");
    assert_eq!(v6.total_len(), r6.len());
    if orig_l4.is_some() {
        let l4 = &buf[r6.start + 40..r6.end];
        assert!(l4_valid_v6(v6.next_header(), l4, &to6.src, &to6.dst));
    }
    let keep = Options {
        hop_limit: HopLimit::Keep,
        ..opts
    };
    let r4 = ipv6_to_ipv4(&mut buf, r6.start, &before, keep).expect("translating back succeeds");
    let v4 = Ipv4Packet::new_checked(&buf[r4.clone()]).expect("translated back IPv4 parses");
    assert!(v4.verify_checksum());
    assert_eq!(usize::from(v4.total_len()), r4.len());
    if let Some(orig) = orig_l4 {
        assert_eq!(
            v4.payload(),
            &orig[..],
            "transport bytes survive the round trip"
        );
    }
}

fn tcp_udp_from_v6(bytes: &[u8], mode: u8) {
    let opts = options(mode);
    let mut buf = bytes.to_vec();
    let to4 = V4Rewrite {
        src: Ipv4Addr::new(203, 0, 113, 10),
        dst: Ipv4Addr::new(198, 51, 100, 2),
        src_port: 443,
        dst_port: 51000,
        identification: u16::from(mode) * 257,
    };
    let Ok(r4) = ipv6_to_ipv4(&mut buf, 0, &to4, opts) else {
        return;
    };
    let ip6 = Ipv6Packet::new_checked(bytes).expect("accepted input parses");
    let l4_at = r4.start + 20;
    let orig_l4 = &bytes[l4_at..r4.end];
    let valid = opts.checksum == ChecksumForm::Full
        && l4_valid_v6(buf[r4.start + 9], orig_l4, &ip6.src_addr(), &ip6.dst_addr());
    let v4 = Ipv4Packet::new_checked(&buf[r4.clone()]).expect("translated IPv4 parses");
    assert!(v4.verify_checksum());
    assert_eq!(usize::from(v4.total_len()), r4.len());
    assert_eq!(v4.dont_frag(), r4.len() > 1260);
    if valid {
        assert!(l4_valid_v4(v4.protocol(), v4.payload(), to4.src, to4.dst));
    }
    let back = V6Rewrite {
        src: ip6.src_addr(),
        dst: ip6.dst_addr(),
        src_port: u16::from_be_bytes([orig_l4[0], orig_l4[1]]),
        dst_port: u16::from_be_bytes([orig_l4[2], orig_l4[3]]),
    };
    let keep = Options {
        hop_limit: HopLimit::Keep,
        ..opts
    };
    let end = r4.end;
    let r6 =
        ipv4_to_ipv6(&mut buf[..end], r4.start, &back, keep).expect("translating back succeeds");
    let v6 = Ipv6Packet::new_checked(&buf[r6.clone()]).expect("translated back IPv6 parses");
    assert_eq!(v6.total_len(), r6.len());
    if valid {
        assert_eq!(
            &buf[r6.start + 40..r6.end],
            orig_l4,
            "transport bytes survive the round trip"
        );
    }
}

fn check_icmpv6(out: &[u8]) {
    let ip = Ipv6Packet::new_checked(out).expect("ICMPv6 output parses");
    assert_eq!(ip.total_len(), out.len());
    let icmp = Icmpv6Packet::new_checked(&out[40..]).expect("ICMPv6 header");
    assert!(icmp.verify_checksum(&ip.src_addr(), &ip.dst_addr()));
}

fn check_icmpv4(out: &[u8]) {
    let ip = Ipv4Packet::new_checked(out).expect("ICMPv4 output parses");
    assert!(ip.verify_checksum());
    assert_eq!(usize::from(ip.total_len()), out.len());
    let icmp = Icmpv4Packet::new_checked(ip.payload()).expect("ICMPv4 header");
    assert!(icmp.verify_checksum());
}

fn params6() -> IcmpV6Params {
    IcmpV6Params {
        src: Ipv6Addr::new(0x2001, 0xdb8, 0x64, 0, 0, 0, 0xcb00, 0x7101),
        dst: Ipv6Addr::new(0x2001, 0xdb8, 1, 0, 0, 0, 0, 2),
        hop_limit: HopLimit::Keep,
        mtus: NextHopMtus {
            ipv4: 1500,
            ipv6: 9000,
        },
    }
}

fn params4() -> IcmpV4Params {
    IcmpV4Params {
        src: Ipv4Addr::new(203, 0, 113, 10),
        dst: Ipv4Addr::new(198, 51, 100, 2),
        hop_limit: HopLimit::Keep,
        mtus: NextHopMtus::default(),
        identification: 7,
    }
}

fn icmp_from_v4(bytes: &[u8], mode: u8) {
    let mut out = vec![0u8; 65_600];
    let p6 = IcmpV6Params {
        hop_limit: options(mode).hop_limit,
        ..params6()
    };
    let Ok(n) = icmpv4_to_icmpv6(bytes, &mut out, &p6, &mut Embed) else {
        return;
    };
    check_icmpv6(&out[..n]);
    let mut back = vec![0u8; 65_600];
    let m = icmpv6_to_icmpv4(&out[..n], &mut back, &params4(), &mut Embed)
        .expect("translating back succeeds");
    check_icmpv4(&back[..m]);
}

fn icmp_from_v6(bytes: &[u8], mode: u8) {
    let mut out = vec![0u8; 65_600];
    let p4 = IcmpV4Params {
        hop_limit: options(mode).hop_limit,
        ..params4()
    };
    let Ok(n) = icmpv6_to_icmpv4(bytes, &mut out, &p4, &mut Embed) else {
        return;
    };
    check_icmpv4(&out[..n]);
    let mut back = vec![0u8; 65_600];
    let m = icmpv4_to_icmpv6(&out[..n], &mut back, &params6(), &mut Embed)
        .expect("translating back succeeds");
    check_icmpv6(&back[..m]);
}

fuzz_target!(|data: &[u8]| {
    let Some((&mode, bytes)) = data.split_first() else {
        return;
    };
    match mode % 4 {
        0 => tcp_udp_from_v4(bytes, mode),
        1 => tcp_udp_from_v6(bytes, mode),
        2 => icmp_from_v4(bytes, mode),
        _ => icmp_from_v6(bytes, mode),
    }
});
