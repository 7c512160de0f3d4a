//! Fuzzes building the route table from arbitrary names and looking up arbitrary queries.
//!
//! Input: lines up to the first empty line are routes (hosts separated by `,`, any bytes,
//! read as UTF-8 with replacement so IDNA is exercised); the lines after are queries.
//! Checks: nothing panics; a refused route leaves the table as it was; every name the
//! table lists is found by lookup (an exact name leads to its own route, a wildcard
//! `*.s` makes `x.s` lead to its route unless `x.s` is itself an exact name); every
//! exact ASCII name that was accepted is found by `HostName::parse` of its spelling.
#![no_main]
use std::collections::{BTreeMap, HashSet};
use std::net::Ipv6Addr;

use kracauer_core::name::HostName;
use kracauer_core::route::{BackendSpec, HashOn, RouteSpec, RouteTable};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let text = String::from_utf8_lossy(data);
    let (config, queries) = text.split_once("\n\n").unwrap_or((&text, ""));

    let mut builder = RouteTable::builder().default_backend(Ipv6Addr::LOCALHOST);
    let mut accepted: Vec<(usize, Vec<String>)> = Vec::new();
    let mut names = 0;
    for (i, line) in config.lines().enumerate() {
        let hosts: Vec<String> = line.split(',').map(str::to_owned).collect();
        let spec = RouteSpec {
            hosts: hosts.clone(),
            backends: vec![BackendSpec::new(Ipv6Addr::new(
                0x2001, 0xdb8, 0, 0, 0, 0, 0, i as u16,
            ))],
            hash: HashOn::Address,
            ports: BTreeMap::from([(443, 8443)]),
        };
        if builder.add(spec).is_ok() {
            names += hosts.len();
            accepted.push((accepted.len(), hosts));
        }
    }
    let table = builder.build();
    assert_eq!(
        table.len(),
        names,
        "refused routes must leave no names behind"
    );
    assert_eq!(table.routes().len(), accepted.len());

    let entries = table.entries();
    let exact: HashSet<&str> = entries
        .iter()
        .filter(|e| !e.is_wildcard())
        .map(|e| e.name())
        .collect();
    for entry in &entries {
        let route = entry.route();
        if entry.is_wildcard() {
            let below = format!("x.{}", entry.name());
            if let Ok(query) = HostName::parse(below.as_bytes()) {
                let found = table
                    .lookup(&query)
                    .expect("a wildcard matches a name below it");
                if !exact.contains(below.as_str()) {
                    assert_eq!(found, route, "{below} must lead to *.{}", entry.name());
                }
            }
        } else {
            assert_eq!(table.lookup_normalised(entry.name()), Some(route));
        }
    }
    for (index, hosts) in &accepted {
        for host in hosts
            .iter()
            .filter(|h| h.is_ascii() && !h.starts_with("*."))
        {
            let name = HostName::parse(host.as_bytes()).expect("an accepted ASCII name parses");
            let route = table
                .lookup(&name)
                .expect("an accepted exact name is found");
            assert_eq!(route.index(), Some(*index));
        }
    }

    for query in queries.lines() {
        let _ = table.lookup_normalised(query);
        if let Ok(name) = HostName::parse(query.as_bytes()) {
            let route = table
                .lookup_or_default(Some(&name))
                .expect("there is a default");
            assert_eq!(
                route.backend_port(443),
                if route.is_default() { 443 } else { 8443 }
            );
        }
    }
});
