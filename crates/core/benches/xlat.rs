//! Per-packet cost of in-place TCP translation, IPv4 -> IPv6 and IPv6 -> IPv4, at 64 B,
//! 1500 B and 64 KB (a GSO super-packet) of payload. The cost must not grow with the
//! payload: only headers are touched.
//!
//! Between iterations the buffer is restored by copying back the 60 header bytes the
//! translation rewrote (a constant cost, the same for every size), never the payload.
use std::hint::black_box;
use std::net::{Ipv4Addr, Ipv6Addr};

use criterion::{BenchmarkId, Criterion, Throughput, criterion_group, criterion_main};
use kracauer_core::xlat::{HEADROOM, Options, V4Rewrite, V6Rewrite, ipv4_to_ipv6, ipv6_to_ipv4};

const CLIENT4: Ipv4Addr = Ipv4Addr::new(198, 51, 100, 2);
const SERVICE4: Ipv4Addr = Ipv4Addr::new(203, 0, 113, 10);
const CLIENT6: Ipv6Addr = Ipv6Addr::new(0x2001, 0xdb8, 0x64, 0, 0, 0, 0xc633, 0x6402);
const BACKEND6: Ipv6Addr = Ipv6Addr::new(0x2001, 0xdb8, 1, 0, 0, 0, 0, 2);

/// Payload sizes: a small segment, a full Ethernet one, and the largest IPv4 packet.
const SIZES: [(&str, usize); 3] = [("64B", 64), ("1500B", 1460), ("64KB", 65_535 - 40)];

/// Number of leading buffer bytes a translation rewrites (headroom or IPv6 header, IPv4
/// header, TCP header with ports and checksum).
const TOUCHED: usize = 60;

fn to_backend() -> V6Rewrite {
    V6Rewrite {
        src: CLIENT6,
        dst: BACKEND6,
        src_port: 51000,
        dst_port: 8443,
    }
}

fn to_client() -> V4Rewrite {
    V4Rewrite {
        src: SERVICE4,
        dst: CLIENT4,
        src_port: 443,
        dst_port: 51000,
        identification: 0x1234,
    }
}

/// An IPv4 TCP packet with `payload` bytes behind 20 bytes of headroom. The checksum
/// field holds an arbitrary value: incremental updates do not care whether it is right.
fn v4_buffer(payload: usize) -> Vec<u8> {
    let total = 40 + payload;
    let mut buf = vec![0u8; HEADROOM + total];
    let p = &mut buf[HEADROOM..];
    p[0] = 0x45;
    p[2..4].copy_from_slice(&(total as u16).to_be_bytes());
    p[6] = 0x40;
    p[8] = 64;
    p[9] = 6;
    p[12..16].copy_from_slice(&CLIENT4.octets());
    p[16..20].copy_from_slice(&SERVICE4.octets());
    p[20..22].copy_from_slice(&51000u16.to_be_bytes());
    p[22..24].copy_from_slice(&443u16.to_be_bytes());
    p[32] = 0x50;
    p[33] = 0x10;
    p[36..38].copy_from_slice(&0x1234u16.to_be_bytes());
    buf
}

/// The same packet as IPv6 from the backend (translated once, so it is well formed).
fn v6_buffer(payload: usize) -> Vec<u8> {
    let mut buf = v4_buffer(payload);
    let r = ipv4_to_ipv6(&mut buf, HEADROOM, &to_backend(), Options::default())
        .expect("benchmark packet translates");
    assert_eq!(r.start, 0);
    buf
}

fn bench(c: &mut Criterion) {
    let mut g = c.benchmark_group("xlat_tcp");
    for (name, payload) in SIZES {
        g.throughput(Throughput::Elements(1));

        let mut buf = v4_buffer(payload);
        let saved: [u8; TOUCHED] = buf[..TOUCHED].try_into().expect("60 bytes");
        g.bench_function(BenchmarkId::new("v4_to_v6", name), |b| {
            b.iter(|| {
                buf[..TOUCHED].copy_from_slice(&saved);
                let r = ipv4_to_ipv6(
                    black_box(&mut buf),
                    HEADROOM,
                    black_box(&to_backend()),
                    Options::default(),
                );
                black_box(r).expect("translates")
            });
        });

        let mut buf = v6_buffer(payload);
        let saved: [u8; TOUCHED] = buf[..TOUCHED].try_into().expect("60 bytes");
        g.bench_function(BenchmarkId::new("v6_to_v4", name), |b| {
            b.iter(|| {
                buf[..TOUCHED].copy_from_slice(&saved);
                let r = ipv6_to_ipv4(
                    black_box(&mut buf),
                    0,
                    black_box(&to_client()),
                    Options::default(),
                );
                black_box(r).expect("translates")
            });
        });

        // No restore at all: v4 -> v6 -> v4 leaves an IPv4 packet at the same place.
        let mut buf = v4_buffer(payload);
        let back = V4Rewrite {
            src: CLIENT4,
            dst: SERVICE4,
            src_port: 51000,
            dst_port: 443,
            identification: 0x1234,
        };
        let keep = Options {
            hop_limit: kracauer_core::xlat::HopLimit::Keep,
            ..Options::default()
        };
        g.bench_function(BenchmarkId::new("round_trip", name), |b| {
            b.iter(|| {
                let r6 = ipv4_to_ipv6(black_box(&mut buf), HEADROOM, &to_backend(), keep)
                    .expect("translates");
                let r4 = ipv6_to_ipv4(black_box(&mut buf), r6.start, &back, keep)
                    .expect("translates back");
                black_box(r4)
            });
        });
    }
    g.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
