//! An interpreter that turns arbitrary bytes into a sequence of packets and clock steps
//! for one engine, and checks what must always hold. Shared by the `engine_ops` test
//! (seeded random inputs, in CI) and the `engine_sequence` fuzz target (`#[path]`).
//!
//! Raw bytes alone rarely get past the handshake, so most operations build well-formed
//! segments with fuzzed fields (flags, sequence offsets, options, a payload cut from a
//! small dictionary of real first bytes) between one client and a pool of two backends
//! (so failovers happen: a RST, or silence past the attempt); raw packets are mixed in
//! for the parsers.

#![allow(clippy::unwrap_used)] // harness set-up and invariant checks: a failure is the finding

use std::sync::Arc;
use std::time::Duration;

use kracauer_core::addr::Prefix96;
use kracauer_core::engine::{Engine, EngineConfig, Output, RxChecksum, Service, Stats, Verdict};
use kracauer_core::route::{BackendSpec, HashOn, RouteSpec, RouteTable};
use kracauer_core::tcp::emit::Segment;
use kracauer_core::time::Time;
use kracauer_core::wire::build::TcpOptionsSpec;
use kracauer_core::wire::checksum;
use kracauer_core::wire::tcp::{SeqNumber, TcpPacket};
use kracauer_core::wire::{Ipv4Packet, Ipv6Packet};

const HEADROOM: usize = 20;
const CLIENT: std::net::Ipv4Addr = std::net::Ipv4Addr::new(198, 51, 100, 2);
const SERVICE: std::net::Ipv4Addr = std::net::Ipv4Addr::new(203, 0, 113, 10);
const MAX_FLOWS: usize = 32;
const MAX_PEEK_BYTES: usize = 64 * 1024;
const PEEK_CAP: usize = 4096;

fn hello() -> Vec<u8> {
    let name = b"a.example";
    let mut ext = vec![
        0,
        0,
        0,
        (name.len() + 5) as u8,
        0,
        (name.len() + 3) as u8,
        0,
        0,
        name.len() as u8,
    ];
    ext.extend_from_slice(name);
    let mut body = vec![3, 3];
    body.extend_from_slice(&[0x11; 32]);
    body.extend_from_slice(&[0, 0, 2, 0x13, 0x01, 1, 0, 0, ext.len() as u8]);
    body.extend_from_slice(&ext);
    let mut rec = vec![
        0x16,
        3,
        1,
        0,
        (body.len() + 4) as u8,
        1,
        0,
        0,
        body.len() as u8,
    ];
    rec.extend_from_slice(&body);
    rec
}

const DICTIONARY: &[&[u8]] = &[
    b"GET / HTTP/1.1\r\nHost: a.example\r\n\r\n",
    b"GET / HTTP/1.1\r\nHost: b.example\r\n\r\n",
    b"\x16\x03\x01\x00\x05garbage",
    b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nhi",
    b"\x00\x00\x00\x00",
];

/// Reads the fuzz input.
struct Input<'a>(&'a [u8]);

impl Input<'_> {
    fn u8(&mut self) -> Option<u8> {
        let (&b, rest) = self.0.split_first()?;
        self.0 = rest;
        Some(b)
    }

    fn u16(&mut self) -> Option<u16> {
        Some(u16::from_be_bytes([self.u8()?, self.u8()?]))
    }

    fn bytes(&mut self, n: usize) -> &[u8] {
        let n = n.min(self.0.len());
        let (a, b) = self.0.split_at(n);
        self.0 = b;
        a
    }
}

/// Runs `data` against a fresh engine; panics if an invariant breaks. Returns the
/// engine's counters at the end.
pub fn run(data: &[u8]) -> Stats {
    let prefix: Prefix96 = "2001:db8:64::/96".parse().unwrap();
    let backend: std::net::Ipv6Addr = "2001:db8:1::2".parse().unwrap();
    let backend_b: std::net::Ipv6Addr = "2001:db8:1::3".parse().unwrap();
    let mut config = EngineConfig::new(
        prefix,
        vec![Service {
            address: SERVICE,
            tls: vec![443],
            http: vec![80],
            quic: vec![],
        }],
        [3; 32],
    );
    config.max_flows = MAX_FLOWS;
    config.max_half_open = 4;
    config.max_peeking_per_client = 8;
    config.max_peek_bytes = MAX_PEEK_BYTES;
    config.peek_cap = PEEK_CAP;
    let routes = Arc::new(
        RouteTable::builder()
            .route(RouteSpec {
                hosts: vec!["a.example".into()],
                backends: vec![BackendSpec::new(backend), BackendSpec::new(backend_b)],
                hash: HashOn::Address,
                ports: Default::default(),
            })
            .unwrap()
            .build(),
    );
    let mut engine = Engine::new(config, routes).unwrap();
    let mut out = Output::default();
    let mut now = Time::from_millis(1_000);
    let client6 = prefix.embed(CLIENT);
    let hello = hello();
    // What the engine told us so far: its last SYN-ACK seq to the client, and whether
    // a backend SYN went out (so backend segments can be aimed at it).
    let mut k_isn = 0u32;
    let c_isn = 5_000u32;
    let b_isn = 9_000u32;
    let mut input = Input(data);
    let mut steps = 0;
    while let Some(op) = input.u8() {
        steps += 1;
        if steps > 256 {
            break;
        }
        out.clear();
        let mut buf = vec![0u8; HEADROOM + 1600];
        let verdict = match op % 6 {
            0 => {
                now = now + Duration::from_millis(u64::from(input.u16().unwrap_or(0)) * 4);
                engine.handle_timeout(now, &mut out);
                None
            }
            1 | 2 => {
                let len = usize::from(input.u8().unwrap_or(0));
                let raw = input.bytes(len).to_vec();
                let mut b = vec![0u8; HEADROOM + raw.len()];
                b[HEADROOM..].copy_from_slice(&raw);
                // Whatever a device might say of the checksum of arbitrary bytes.
                let said = match input.u8().unwrap_or(0) % 3 {
                    0 => RxChecksum::Unchecked,
                    1 => RxChecksum::Valid,
                    _ => RxChecksum::Partial,
                };
                let v = engine.handle_packet_with(now, &mut b, HEADROOM, said, &mut out);
                Some((v, b))
            }
            3 | 4 => {
                let to_backend_side = op % 6 == 4;
                let flags = input.u8().unwrap_or(0);
                let seq_raw = input.u16().unwrap_or(0);
                let seq_off = u32::from(seq_raw) % 4096;
                let ack_off = u32::from(input.u8().unwrap_or(0)) % 8;
                let pick = usize::from(input.u8().unwrap_or(0));
                let cut = usize::from(input.u8().unwrap_or(255));
                let opts_bits = input.u8().unwrap_or(0);
                let payload: &[u8] = if pick % 3 == 0 {
                    let h = &hello[..];
                    let start = (cut / 4).min(h.len());
                    &h[start..]
                } else {
                    let d = DICTIONARY[pick % DICTIONARY.len()];
                    &d[..cut.min(d.len())]
                };
                let options = TcpOptionsSpec {
                    mss: (opts_bits & 1 != 0).then_some(1220 + u16::from(opts_bits)),
                    window_scale: (opts_bits & 2 != 0).then_some(opts_bits >> 4),
                    sack_permitted: opts_bits & 4 != 0,
                    timestamps: (opts_bits & 8 != 0).then_some((u32::from(opts_bits), 7)),
                    sack_blocks: &[],
                };
                let port = if pick & 0x40 != 0 { 443 } else { 80 };
                let n = if to_backend_side {
                    let seg = Segment {
                        src_port: port,
                        dst_port: 40000,
                        seq: SeqNumber(b_isn.wrapping_add(seq_off)),
                        ack: SeqNumber(c_isn.wrapping_add(ack_off)),
                        flags,
                        window: 1000,
                        options,
                        payload,
                    };
                    // The top bit of the sequence offset picks the pool's other backend.
                    let from = if seq_raw & 0x8000 != 0 {
                        backend_b
                    } else {
                        backend
                    };
                    seg.emit_v6(&from, &client6, &mut buf[HEADROOM..]).unwrap()
                } else {
                    let seg = Segment {
                        src_port: 40000,
                        dst_port: port,
                        seq: SeqNumber(c_isn.wrapping_add(seq_off)),
                        ack: SeqNumber(k_isn.wrapping_add(ack_off)),
                        flags,
                        window: 1000,
                        options,
                        payload,
                    };
                    seg.emit_v4(CLIENT, SERVICE, 1, &mut buf[HEADROOM..])
                        .unwrap()
                };
                buf.truncate(HEADROOM + n);
                // Sometimes as a TUN with offloads hands it over: a partial checksum,
                // which the engine must keep partial; finished here as the kernel would
                // when the packet leaves, it must then verify like any other.
                let partial = pick & 0x80 != 0;
                if partial {
                    make_partial(&mut buf[HEADROOM..]);
                }
                let said = if partial {
                    RxChecksum::Partial
                } else {
                    RxChecksum::Unchecked
                };
                let v = engine.handle_packet_with(now, &mut buf, HEADROOM, said, &mut out);
                if let (true, Verdict::Forward(r)) = (partial, &v) {
                    finish_partial(&mut buf[r.clone()]);
                }
                Some((v, buf))
            }
            _ => {
                now = now + Duration::from_millis(u64::from(input.u8().unwrap_or(0)));
                None
            }
        };
        // What was forwarded must be a well-formed packet with a valid checksum (the
        // inputs built here all had valid checksums).
        if let Some((Verdict::Forward(range), b)) = &verdict {
            assert!(range.end <= b.len());
            check_packet(&b[range.clone()], op % 6 >= 3);
        }
        for p in out.packets() {
            check_packet(p, true);
            if p[0] >> 4 == 4 {
                let ip = Ipv4Packet::new_checked(p).unwrap();
                if let Ok(tcp) = TcpPacket::new_checked(ip.payload()) {
                    if tcp.syn() && tcp.ack() {
                        k_isn = tcp.seq_number().0.wrapping_add(1);
                    }
                }
            }
        }
        assert!(engine.flow_count() <= MAX_FLOWS);
        assert!(
            engine.peek_bytes() <= MAX_PEEK_BYTES + 2 * PEEK_CAP,
            "peek bytes {}",
            engine.peek_bytes()
        );
        if let Some(t) = engine.poll_timeout() {
            assert!(t > Time::ZERO);
        }
    }
    engine.stats().clone()
}

/// Parses `p` as IPv4 or IPv6; when `strict`, TCP checksums must verify.
/// Where the TCP header of a packet built here starts (no IPv4 options, no IPv6
/// extension headers).
fn l4_of(p: &[u8]) -> usize {
    if p[0] >> 4 == 4 { 20 } else { 40 }
}

/// Replaces a finished TCP checksum with the folded pseudo-header sum (`NEEDS_CSUM`).
fn make_partial(p: &mut [u8]) {
    let l4 = l4_of(p);
    let len = p.len() - l4;
    let pseudo = if l4 == 20 {
        let ip = Ipv4Packet::new_checked(&*p).unwrap();
        checksum::pseudo_header_v4(ip.src_addr(), ip.dst_addr(), 6, len as u16)
    } else {
        let ip = Ipv6Packet::new_checked(&*p).unwrap();
        checksum::pseudo_header_v6(&ip.src_addr(), &ip.dst_addr(), 6, len as u32)
    };
    p[l4 + 16..l4 + 18].copy_from_slice(&checksum::fold(pseudo).to_be_bytes());
}

/// Finishes a partial TCP checksum as the kernel does on output.
fn finish_partial(p: &mut [u8]) {
    let l4 = l4_of(p);
    let c = checksum::finish(checksum::sum(&p[l4..]));
    p[l4 + 16..l4 + 18].copy_from_slice(&c.to_be_bytes());
}

fn check_packet(p: &[u8], strict: bool) {
    match p.first().map(|b| b >> 4) {
        Some(4) => {
            let ip = Ipv4Packet::new_checked(p).expect("engine emitted a malformed IPv4 packet");
            assert!(ip.verify_checksum(), "IPv4 header checksum");
            if strict && ip.protocol() == 6 {
                let tcp = TcpPacket::new_checked(ip.payload()).expect("TCP");
                assert!(
                    tcp.verify_checksum_v4(ip.src_addr(), ip.dst_addr()),
                    "TCP checksum (v4)"
                );
            }
        }
        Some(6) => {
            let ip = Ipv6Packet::new_checked(p).expect("engine emitted a malformed IPv6 packet");
            if strict && ip.next_header() == 6 {
                let tcp = TcpPacket::new_checked(ip.payload()).expect("TCP");
                assert!(
                    tcp.verify_checksum_v6(&ip.src_addr(), &ip.dst_addr()),
                    "TCP checksum (v6)"
                );
            }
        }
        other => panic!("engine emitted a packet of version {other:?}"),
    }
}
