//! The engine's cost: a spliced 1500-byte packet through `handle_packet` (lookup plus
//! rewrite) each way, and a whole handshake (SYN, request, backend SYN-ACK, RST).
//!
//! `cargo bench -p kracauer-core --bench engine`

#[path = "support.rs"]
mod support;

use std::hint::black_box;

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use kracauer_core::engine::{Output, Verdict};
use kracauer_core::time::Time;
use kracauer_core::wire::tcp::flags;
use support::*;

fn spliced(c: &mut Criterion) {
    let mut engine = engine(1024);
    let mut out = Output::default();
    let now = Time::from_millis(10_000);
    let k_isn = open_flow(&mut engine, &mut out, now, CLIENT, 40_000);
    let payload = vec![0xab; 1448];

    let template = client_packet(
        CLIENT,
        40_000,
        flags::ACK,
        C_ISN + 1 + REQUEST.len() as u32,
        k_isn + 1,
        ts(3, 50),
        &payload,
    );
    let header_end = HEADROOM + 20 + 32;
    let mut buf = template.clone();
    let mut g = c.benchmark_group("spliced_1500");
    g.throughput(Throughput::Elements(1));
    g.bench_function("client_to_backend", |b| {
        b.iter(|| {
            buf[..header_end].copy_from_slice(&template[..header_end]);
            let v = engine.handle_packet(now, black_box(&mut buf), HEADROOM, &mut out);
            debug_assert!(matches!(v, Verdict::Forward(_)));
            black_box(v);
        })
    });

    let template = backend_packet(
        CLIENT,
        40_000,
        flags::ACK,
        B_ISN + 1,
        C_ISN + 1 + REQUEST.len() as u32,
        ts(51, 3),
        &payload,
    );
    let header_end = HEADROOM + 40 + 32;
    let mut buf = template.clone();
    g.bench_function("backend_to_client", |b| {
        b.iter(|| {
            buf[..header_end].copy_from_slice(&template[..header_end]);
            let v = engine.handle_packet(now, black_box(&mut buf), HEADROOM, &mut out);
            debug_assert!(matches!(v, Verdict::Forward(_)));
            black_box(v);
        })
    });
    g.finish();
}

fn handshake(c: &mut Criterion) {
    let mut engine = engine(70_000);
    let mut out = Output::default();
    let now = Time::from_millis(10_000);
    let mut port = 1024u16;
    c.bench_function("handshake_to_splice_and_reset", |b| {
        b.iter(|| {
            port = if port == u16::MAX { 1024 } else { port + 1 };
            let k_isn = open_flow(&mut engine, &mut out, now, CLIENT, port);
            let mut rst = client_packet(
                CLIENT,
                port,
                flags::RST,
                C_ISN + 1 + REQUEST.len() as u32,
                k_isn + 1,
                Default::default(),
                &[],
            );
            out.clear();
            black_box(engine.handle_packet(now, &mut rst, HEADROOM, &mut out));
        })
    });
}

criterion_group!(benches, spliced, handshake);
criterion_main!(benches);
