//! Backend pools as the route table builds them: rendezvous placement moves few clients
//! when a pool changes, weights share clients out, backups wait for every primary, and
//! the 4-tuple hash spreads one address's connections.

use std::collections::HashMap;
use std::net::{Ipv4Addr, Ipv6Addr};

use kracauer_core::base::ClientKey;
use kracauer_core::route::{
    BackendSpec, HashOn, Health, MAX_ATTEMPTS, Pool, RouteSpec, RouteTable,
};

const CLIENTS: u32 = 20_000;

fn addr(n: u16) -> Ipv6Addr {
    Ipv6Addr::new(0x2001, 0xdb8, 1, 0, 0, 0, 0, n)
}

fn key(n: u32, port: u16) -> ClientKey {
    ClientKey {
        // Spread over 198.51.100.0/24 and beyond, as many distinct addresses.
        client: Ipv4Addr::from(0xc633_6400u32.wrapping_add(n.wrapping_mul(2_654_435_761))),
        client_port: port,
        service: Ipv4Addr::new(203, 0, 113, 10),
        service_port: 443,
    }
}

fn table(backends: Vec<BackendSpec>, hash: HashOn) -> RouteTable {
    RouteTable::builder()
        .route(RouteSpec {
            hosts: vec!["a.example".into()],
            backends,
            hash,
            ports: Default::default(),
        })
        .expect("a valid route")
        .build()
}

fn primaries(n: u16) -> Vec<BackendSpec> {
    (1..=n).map(|i| BackendSpec::new(addr(i))).collect()
}

fn pool(t: &RouteTable) -> &Pool {
    t.routes()[0].pool()
}

fn placement(t: &RouteTable, health: &Health) -> Vec<Option<Ipv6Addr>> {
    (0..CLIENTS)
        .map(|n| {
            pool(t)
                .candidates(&key(n, 40000), health)
                .first()
                .map(|c| c.address)
        })
        .collect()
}

#[test]
fn growing_a_pool_from_n_to_n_plus_one_moves_about_one_client_in_n_plus_one_all_to_the_new_one() {
    for n in [1u16, 2, 4, 8] {
        let before = placement(&table(primaries(n), HashOn::Address), &Health::all_up());
        let after = placement(&table(primaries(n + 1), HashOn::Address), &Health::all_up());
        let moved: Vec<_> = before
            .iter()
            .zip(&after)
            .filter(|(b, a)| b != a)
            .map(|(_, a)| *a)
            .collect();
        assert!(
            moved.iter().all(|a| *a == Some(addr(n + 1))),
            "clients move only to the new backend"
        );
        let share = moved.len() as f64 / f64::from(CLIENTS);
        let ideal = 1.0 / f64::from(n + 1);
        assert!(
            (share - ideal).abs() < 0.02,
            "{n} -> {}: moved {share:.3}, ideal {ideal:.3}",
            n + 1
        );
    }
}

#[test]
fn a_backend_going_down_moves_only_its_own_clients_and_they_return_when_it_is_back() {
    let t = table(primaries(5), HashOn::Address);
    let all = placement(&t, &Health::all_up());
    let down_slot = pool(&t).backends()[2].slot();
    let mut health = Health::all_up();
    health.set(down_slot, false);
    let without = placement(&t, &health);
    for (b, a) in all.iter().zip(&without) {
        if *b == Some(addr(3)) {
            assert_ne!(*a, Some(addr(3)));
        } else {
            assert_eq!(a, b, "a client of a healthy backend stays");
        }
    }
    assert_eq!(placement(&t, &Health::all_up()), all);
}

#[test]
fn weights_share_clients_out_in_proportion() {
    let mut backends = primaries(3);
    backends[0].weight = 2;
    backends[2].weight = 5;
    let t = table(backends, HashOn::Address);
    let mut count: HashMap<Ipv6Addr, u32> = HashMap::new();
    for a in placement(&t, &Health::all_up()).into_iter().flatten() {
        *count.entry(a).or_default() += 1;
    }
    for (n, weight) in [(1, 2.0), (2, 1.0), (3, 5.0)] {
        let share = f64::from(count[&addr(n)]) / f64::from(CLIENTS);
        let ideal = weight / 8.0;
        assert!(
            (share - ideal).abs() < 0.02,
            "backend {n}: {share:.3}, ideal {ideal:.3}"
        );
    }
}

#[test]
fn backups_come_after_every_healthy_primary_and_first_only_when_none_is_up() {
    let mut backends = primaries(4);
    backends[2].backup = true;
    backends[3].backup = true;
    let t = table(backends, HashOn::Address);
    let p = pool(&t);
    let is_backup = |a: Ipv6Addr| a == addr(3) || a == addr(4);
    for n in 0..1000 {
        let order: Vec<_> = p
            .candidates(&key(n, 40000), &Health::all_up())
            .iter()
            .map(|c| c.address)
            .collect();
        assert_eq!(order.len(), 4);
        assert!(!is_backup(order[0]) && !is_backup(order[1]), "{order:?}");
        assert!(is_backup(order[2]) && is_backup(order[3]), "{order:?}");
    }
    let mut health = Health::all_up();
    health.set(p.backends()[0].slot(), false);
    let used = placement(&t, &health);
    assert!(
        used.iter().all(|a| *a == Some(addr(2))),
        "one primary left: all go there"
    );
    health.set(p.backends()[1].slot(), false);
    let used = placement(&t, &health);
    assert!(used.iter().all(|a| a.is_some_and(is_backup)));
    let on_3 = used.iter().filter(|a| **a == Some(addr(3))).count() as f64;
    assert!(
        (on_3 / f64::from(CLIENTS) - 0.5).abs() < 0.02,
        "backups share too"
    );
    health.set(p.backends()[2].slot(), false);
    health.set(p.backends()[3].slot(), false);
    assert!(placement(&t, &health).iter().all(Option::is_none));
}

#[test]
fn address_hash_keeps_one_client_on_one_backend_and_tuple_hash_spreads_its_ports() {
    let by_address = table(primaries(4), HashOn::Address);
    let by_tuple = table(primaries(4), HashOn::Tuple);
    let used = |t: &RouteTable| -> std::collections::HashSet<Ipv6Addr> {
        (40000..40400)
            .filter_map(|port| {
                pool(t)
                    .candidates(&key(7, port), &Health::all_up())
                    .first()
                    .map(|c| c.address)
            })
            .collect()
    };
    assert_eq!(used(&by_address).len(), 1);
    assert_eq!(used(&by_tuple).len(), 4);
}

#[test]
fn a_large_pool_gives_a_connection_at_most_max_attempts_distinct_backends() {
    let t = table(primaries(50), HashOn::Address);
    let c = pool(&t).candidates(&key(1, 1), &Health::all_up());
    assert_eq!(c.len(), MAX_ATTEMPTS);
    let mut seen: Vec<_> = c.iter().map(|c| c.address).collect();
    seen.dedup();
    assert_eq!(seen.len(), MAX_ATTEMPTS);
}

#[test]
fn every_backend_of_the_table_has_its_own_slot_the_default_last() {
    let t = RouteTable::builder()
        .default_pool(&[BackendSpec::new(addr(9)), BackendSpec::new(addr(8))])
        .route(RouteSpec {
            hosts: vec!["a.example".into()],
            backends: primaries(2),
            hash: HashOn::Address,
            ports: Default::default(),
        })
        .unwrap()
        .route(RouteSpec {
            hosts: vec!["*.b.example".into()],
            backends: primaries(3),
            hash: HashOn::Tuple,
            ports: Default::default(),
        })
        .unwrap()
        .build();
    let slots: Vec<(String, u32)> = t
        .all_routes()
        .flat_map(|r| {
            r.pool()
                .backends()
                .iter()
                .map(|b| (r.label().to_owned(), b.slot()))
        })
        .collect();
    let labels: Vec<&str> = slots.iter().map(|(l, _)| l.as_str()).collect();
    assert_eq!(
        labels,
        [
            "a.example",
            "a.example",
            "*.b.example",
            "*.b.example",
            "*.b.example",
            "default",
            "default"
        ]
    );
    assert_eq!(
        slots.iter().map(|(_, s)| *s).collect::<Vec<_>>(),
        [0, 1, 2, 3, 4, 5, 6]
    );
    assert_eq!(t.backend_slots(), 7);
}
