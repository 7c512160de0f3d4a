//! The engine's QUIC path (`engine/udp.rs`, `engine/udp_backend.rs`) driven by arbitrary
//! sequences of operations on one engine with a QUIC service on UDP 443.
//!
//! Each operation takes its first byte as the kind and what follows as arguments:
//! client datagrams (raw bytes, or a real Initial naming one of three names, whole or in
//! two halves, to reach routing), backend datagrams (raw, or a Handshake choosing a
//! connection ID), short headers to learned IDs from new ports (rebinding), clock steps,
//! ICMPv6 errors, a snapshot restored in place of the engine, and IPv4 packets of any
//! shape to the service.
//!
//! Invariants: no panic; every packet the engine makes or forwards parses with valid
//! checksums; the QUIC table stays within its size; after every flow is closed no peek
//! memory and no learned connection ID is left.
#![no_main]
use std::net::{Ipv4Addr, Ipv6Addr};
use std::sync::Arc;

use kracauer_core::addr::Prefix96;
use kracauer_core::engine::{Engine, EngineConfig, Output, RxChecksum, Service, Verdict};
use kracauer_core::quic::header::LongType;
use kracauer_core::quic::keys::{Keys, Side};
use kracauer_core::quic::protect::{LongPacket, seal_long};
use kracauer_core::quic::{Version, varint};
use kracauer_core::route::{BackendSpec, HashOn, RouteSpec, RouteTable};
use kracauer_core::time::Time;
use kracauer_core::wire::{Ipv4Packet, Ipv6Packet, UdpPacket, ip_proto};
use libfuzzer_sys::fuzz_target;

const SERVICE: Ipv4Addr = Ipv4Addr::new(203, 0, 113, 10);
const HEADROOM: usize = 20;
const NAMES: [&str; 3] = ["a.example", "b.example", "nope.example"];

fn config() -> EngineConfig {
    let mut c = EngineConfig::new(
        "2001:db8:64::/96".parse::<Prefix96>().unwrap(),
        vec![Service {
            address: SERVICE,
            tls: vec![443],
            http: vec![],
            quic: vec![443],
        }],
        [9; 32],
    );
    c.max_flows = 64;
    c.max_udp_flows = 16;
    c.max_peeking_per_client = 4;
    c.max_peek_bytes = 40_000;
    c.ipv6_mtu = 1280;
    c
}

fn routes() -> Arc<RouteTable> {
    let mut b = RouteTable::builder();
    for (i, name) in NAMES[..2].iter().enumerate() {
        b = b
            .route(RouteSpec {
                hosts: vec![(*name).into()],
                backends: vec![BackendSpec::new(backend(i as u8))],
                hash: HashOn::Address,
                ports: Default::default(),
            })
            .unwrap();
    }
    Arc::new(b.build())
}

fn backend(i: u8) -> Ipv6Addr {
    Ipv6Addr::new(0x2001, 0xdb8, 1, 0, 0, 0, 0, 2 + u16::from(i))
}

fn client(i: u8) -> Ipv4Addr {
    Ipv4Addr::new(198, 51, 100, 2 + (i % 3))
}

fn hello(name: &str, filler: usize) -> Vec<u8> {
    let mut exts = Vec::new();
    let mut sni = vec![0];
    sni.extend_from_slice(&(name.len() as u16).to_be_bytes());
    sni.extend_from_slice(name.as_bytes());
    exts.extend_from_slice(&[0, 0]);
    exts.extend_from_slice(&((sni.len() + 2) as u16).to_be_bytes());
    exts.extend_from_slice(&(sni.len() as u16).to_be_bytes());
    exts.extend_from_slice(&sni);
    exts.extend_from_slice(&[0x7a, 0x7a]);
    exts.extend_from_slice(&(filler as u16).to_be_bytes());
    exts.extend(std::iter::repeat_n(0x5a, filler));
    let mut body = vec![3, 3];
    body.extend_from_slice(&[0x11; 32]);
    body.push(0);
    body.extend_from_slice(&[0, 2, 0x13, 1, 1, 0]);
    body.extend_from_slice(&(exts.len() as u16).to_be_bytes());
    body.extend_from_slice(&exts);
    let mut msg = vec![1];
    msg.extend_from_slice(&(body.len() as u32).to_be_bytes()[1..]);
    msg.extend_from_slice(&body);
    msg
}

fn initial(version: Version, dcid: &[u8], pn: u64, offset: usize, data: &[u8]) -> Vec<u8> {
    let mut frame = vec![6];
    let mut v = [0u8; 8];
    let n = varint::write(offset as u64, &mut v).unwrap();
    frame.extend_from_slice(&v[..n]);
    let n = varint::write(data.len() as u64, &mut v).unwrap();
    frame.extend_from_slice(&v[..n]);
    frame.extend_from_slice(data);
    frame.resize(frame.len().max(1150), 0);
    let keys = Keys::initial(version, dcid, Side::Client);
    let packet = LongPacket {
        version,
        packet_type: LongType::Initial,
        dcid,
        scid: &[0x5c, 0x1d],
        token: &[],
        packet_number: pn,
        pn_len: 2,
    };
    let mut out = vec![0u8; frame.len() + 64];
    let len = seal_long(&keys, &packet, &frame, &mut out).unwrap();
    out.truncate(len);
    out
}

fn client_dgram(src: Ipv4Addr, sport: u16, payload: &[u8]) -> Vec<u8> {
    let total = 28 + payload.len();
    let mut buf = vec![0u8; HEADROOM + total];
    let b = &mut buf[HEADROOM..];
    {
        let mut ip = Ipv4Packet::new_unchecked(&mut b[..20]);
        ip.set_version(4);
        ip.set_header_len(20);
        ip.set_total_len(total as u16);
        ip.set_dont_frag(true);
        ip.set_ttl(60);
        ip.set_protocol(ip_proto::UDP);
        ip.set_src_addr(src);
        ip.set_dst_addr(SERVICE);
        ip.fill_checksum();
    }
    b[28..].copy_from_slice(payload);
    let mut udp = UdpPacket::new_unchecked(&mut b[20..]);
    udp.set_src_port(sport);
    udp.set_dst_port(443);
    udp.set_len((8 + payload.len()) as u16);
    udp.fill_checksum_v4(src, SERVICE);
    buf
}

fn backend_dgram(b: Ipv6Addr, dst: Ipv4Addr, dport: u16, payload: &[u8]) -> Vec<u8> {
    let len = 8 + payload.len();
    let mut buf = vec![0u8; HEADROOM + 40 + len];
    let to = "2001:db8:64::".parse::<Prefix96>().map(|p| p.embed(dst));
    let to = to.unwrap_or(Ipv6Addr::UNSPECIFIED);
    {
        let mut ip = Ipv6Packet::new_unchecked(&mut buf[HEADROOM..HEADROOM + 40]);
        ip.set_version(6);
        ip.set_payload_len(len as u16);
        ip.set_next_header(ip_proto::UDP);
        ip.set_hop_limit(64);
        ip.set_src_addr(&b);
        ip.set_dst_addr(&to);
    }
    buf[HEADROOM + 48..].copy_from_slice(payload);
    let mut udp = UdpPacket::new_unchecked(&mut buf[HEADROOM + 40..]);
    udp.set_src_port(443);
    udp.set_dst_port(dport);
    udp.set_len(len as u16);
    udp.fill_checksum_v6(&b, &to);
    buf
}

/// A packet the engine wrote: its IP header and, for UDP, its checksum must be right.
fn check(bytes: &[u8]) {
    match bytes.first().map(|b| b >> 4) {
        Some(4) => {
            let ip = Ipv4Packet::new_checked(bytes).expect("IPv4 made");
            assert!(ip.verify_checksum());
            if ip.protocol() == ip_proto::UDP {
                let udp = UdpPacket::new_checked(ip.payload()).expect("UDP made");
                assert!(
                    udp.checksum() == 0 || udp.verify_checksum_v4(ip.src_addr(), ip.dst_addr())
                );
            }
        }
        Some(6) => {
            let ip = Ipv6Packet::new_checked(bytes).expect("IPv6 made");
            if ip.next_header() == ip_proto::UDP {
                let udp = UdpPacket::new_checked(ip.payload()).expect("UDP made");
                assert!(udp.verify_checksum_v6(&ip.src_addr(), &ip.dst_addr()));
            }
        }
        _ => panic!("neither IPv4 nor IPv6"),
    }
}

fuzz_target!(|data: &[u8]| {
    let mut engine = Engine::new(config(), routes()).unwrap();
    let mut out = Output::default();
    let mut now = Time::from_millis(1_000);
    let mut cids: Vec<Vec<u8>> = Vec::new();
    let mut rest = data;
    let mut step = 0u64;
    while let [kind, a, b, tail @ ..] = rest {
        step += 1;
        let n = (usize::from(*b) * 8).min(tail.len());
        let (arg, next) = tail.split_at(n);
        rest = next;
        let port = 40_000 + u16::from(a % 8);
        let who = client(*a >> 3);
        let version = if a & 0x40 != 0 { Version::V2 } else { Version::V1 };
        let dcid = [a & 0x0f, 1, 2, 3, 4, 5, 6, 7];
        let name = NAMES[usize::from(*b) % 3];
        let packets: Vec<(Vec<u8>, RxChecksum)> = match kind % 9 {
            0 => vec![(client_dgram(who, port, arg), RxChecksum::Unchecked)],
            1 => vec![(client_dgram(who, port, &initial(version, &dcid, 0, 0, &hello(name, 0))), RxChecksum::Unchecked)],
            2 => {
                let h = hello(name, 1400);
                let cut = 700 + usize::from(*b);
                let first = initial(version, &dcid, 0, 0, &h[..cut]);
                let second = initial(version, &dcid, 1, cut, &h[cut..]);
                let mut v = vec![(client_dgram(who, port, &first), RxChecksum::Unchecked)];
                if a & 0x80 == 0 {
                    v.push((client_dgram(who, port, &second), RxChecksum::Unchecked));
                }
                v
            }
            3 => {
                let mut hs = vec![0xe0, 0, 0, 0, 1, 2, 0x5c, 0x1d, 8];
                let cid = [*b, step as u8, 2, 3, 4, 5, 6, 7];
                hs.extend_from_slice(&cid);
                hs.extend_from_slice(&[0x40, 20]);
                hs.extend_from_slice(&[0; 20]);
                cids.push(cid.to_vec());
                vec![(backend_dgram(backend(a % 2), who, port, &hs), RxChecksum::Unchecked)]
            }
            4 => vec![(backend_dgram(backend(a % 2), who, port, arg), RxChecksum::Unchecked)],
            5 => {
                let mut p = vec![0x41];
                if let Some(c) = cids.get(usize::from(*b) % cids.len().max(1)) {
                    p.extend_from_slice(c);
                }
                p.extend_from_slice(arg);
                vec![(client_dgram(who, port.wrapping_add(100), &p), RxChecksum::Unchecked)]
            }
            6 => {
                now = now + core::time::Duration::from_millis(u64::from(*a) * u64::from(*b) * 50);
                out.clear();
                engine.handle_timeout(now, &mut out);
                out.packets().for_each(check);
                vec![]
            }
            7 => {
                let bytes = engine.snapshot(now);
                drop(engine);
                engine = Engine::restore(config(), routes(), &bytes, now).expect("own snapshot");
                vec![]
            }
            _ => {
                // Any IPv4 packet to the service, or any IPv6 packet to the prefix.
                let mut buf = vec![0u8; HEADROOM];
                buf.extend_from_slice(arg);
                let partial = if a & 1 == 1 { RxChecksum::Partial } else { RxChecksum::Unchecked };
                vec![(buf, partial)]
            }
        };
        for (mut buf, checksum) in packets {
            out.clear();
            let verdict = engine.handle_packet_with(now, &mut buf, HEADROOM, checksum, &mut out);
            out.packets().for_each(check);
            if let Verdict::Forward(r) = verdict {
                if checksum != RxChecksum::Partial {
                    check(&buf[r]);
                }
            }
            assert!(engine.quic_flow_count() <= 16);
        }
    }
    while engine.close_flows(now, 1_000) > 0 {}
    while engine.poll_event().is_some() {}
    assert_eq!(engine.quic_flow_count(), 0);
    assert_eq!(engine.quic_learned_cids(), 0);
    assert_eq!(engine.peek_bytes(), 0);
});
