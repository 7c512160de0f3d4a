//! Route table benchmarks: lookup cost must not depend on the table size (10, 1,000 and
//! 100,000 routes; exact hit, wildcard hit three labels below the wildcard, miss), and
//! the time to build a table of 100,000 names from configuration.
use std::collections::BTreeMap;
use std::hint::black_box;
use std::net::Ipv6Addr;
use std::time::Duration;

use criterion::{BatchSize, BenchmarkId, Criterion, criterion_group, criterion_main};
use kracauer_core::name::HostName;
use kracauer_core::route::{BackendSpec, HashOn, RouteSpec, RouteTable};

/// `n` routes, each with one exact name and one wildcard, as a configuration would give
/// them: half the names in mixed case, some with ports remapped.
fn specs(n: u32) -> Vec<RouteSpec> {
    (0..n)
        .map(|i| RouteSpec {
            hosts: vec![
                format!("Host{i}.zone{}.example", i % 97),
                format!("*.svc{i}.zone{}.example", i % 97),
            ],
            backends: vec![BackendSpec::new(Ipv6Addr::new(
                0x2001,
                0xdb8,
                1,
                0,
                0,
                0,
                (i >> 16) as u16,
                i as u16,
            ))],
            hash: HashOn::Address,
            ports: if i % 3 == 0 {
                BTreeMap::from([(443, 8443)])
            } else {
                BTreeMap::new()
            },
        })
        .collect()
}

fn build(specs: Vec<RouteSpec>) -> RouteTable {
    let mut builder = RouteTable::builder();
    for spec in specs {
        builder.add(spec).expect("benchmark routes are valid");
    }
    builder.build()
}

fn name(s: &str) -> HostName {
    HostName::parse(s.as_bytes()).expect("benchmark names are valid")
}

fn lookup(c: &mut Criterion) {
    let mut group = c.benchmark_group("route_lookup");
    group
        .warm_up_time(Duration::from_millis(500))
        .measurement_time(Duration::from_secs(2));
    for n in [10u32, 1_000, 100_000] {
        let table = build(specs(n));
        let k = n / 2;
        let queries = [
            (
                "exact_hit",
                name(&format!("host{k}.zone{}.example", k % 97)),
            ),
            (
                "wildcard_hit_depth3",
                name(&format!("a.b.c.svc{k}.zone{}.example", k % 97)),
            ),
            ("miss", name("a.b.c.nowhere.zone1.example")),
        ];
        for (what, query) in &queries {
            assert!(
                table.lookup(query).is_some() == (*what != "miss"),
                "{what} in {n}"
            );
            group.bench_with_input(BenchmarkId::new(*what, n), query, |b, q| {
                b.iter(|| table.lookup(black_box(q)).map(|r| r.backend_port(443)));
            });
        }
    }
    group.finish();
}

fn build_100k(c: &mut Criterion) {
    let mut group = c.benchmark_group("route_build");
    group
        .sample_size(10)
        .warm_up_time(Duration::from_millis(500))
        .measurement_time(Duration::from_secs(5));
    group.bench_function("100k_names", |b| {
        b.iter_batched(|| specs(50_000), build, BatchSize::LargeInput);
    });
    group.finish();
}

criterion_group!(benches, lookup, build_100k);
criterion_main!(benches);
