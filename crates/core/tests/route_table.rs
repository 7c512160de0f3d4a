//! Behaviour of the name table (`kracauer_core::route`).

use std::collections::BTreeMap;
use std::net::Ipv6Addr;

use kracauer_core::name::{HostName, NameError};
use kracauer_core::route::{BackendSpec, BadNameReason, HashOn, RouteError, RouteSpec, RouteTable};

fn v6(s: &str) -> Ipv6Addr {
    s.parse().expect("test addresses are valid")
}

fn spec(hosts: &[&str], backend: &str) -> RouteSpec {
    RouteSpec {
        hosts: hosts.iter().map(|h| (*h).to_owned()).collect(),
        backends: vec![BackendSpec::new(v6(backend))],
        hash: HashOn::Address,
        ports: BTreeMap::new(),
    }
}

fn host(s: &str) -> HostName {
    HostName::parse(s.as_bytes()).expect("test names are valid")
}

/// The backend `name` routes to, if any.
fn backend_of(table: &RouteTable, name: &str) -> Option<Ipv6Addr> {
    table.lookup(&host(name)).map(|r| r.backend())
}

fn table(routes: &[(&[&str], &str)]) -> RouteTable {
    let mut builder = RouteTable::builder();
    for (hosts, backend) in routes {
        builder
            .add(spec(hosts, backend))
            .expect("test routes are valid");
    }
    builder.build()
}

#[test]
fn exact_name_matches_itself() {
    let t = table(&[(&["a.example"], "2001:db8::1")]);
    assert_eq!(backend_of(&t, "a.example"), Some(v6("2001:db8::1")));
    assert_eq!(backend_of(&t, "b.example"), None);
    assert_eq!(backend_of(&t, "x.a.example"), None);
}

#[test]
fn lookup_is_case_insensitive() {
    let t = table(&[(&["A.Example"], "2001:db8::1")]);
    assert_eq!(backend_of(&t, "a.EXAMPLE"), Some(v6("2001:db8::1")));
}

#[test]
fn trailing_dot_in_config_is_ignored() {
    let t = table(&[(&["a.example."], "2001:db8::1")]);
    assert_eq!(backend_of(&t, "a.example"), Some(v6("2001:db8::1")));
}

#[test]
fn wildcard_matches_one_label_below() {
    let t = table(&[(&["*.a.example"], "2001:db8::1")]);
    assert_eq!(backend_of(&t, "x.a.example"), Some(v6("2001:db8::1")));
}

#[test]
fn wildcard_matches_any_depth() {
    let t = table(&[(&["*.a.example"], "2001:db8::1")]);
    assert_eq!(backend_of(&t, "y.x.a.example"), Some(v6("2001:db8::1")));
    assert_eq!(backend_of(&t, "z.y.x.a.example"), Some(v6("2001:db8::1")));
}

#[test]
fn wildcard_does_not_match_its_own_apex() {
    let t = table(&[(&["*.a.example"], "2001:db8::1")]);
    assert_eq!(backend_of(&t, "a.example"), None);
}

#[test]
fn wildcard_does_not_match_a_name_merely_ending_in_its_text() {
    let t = table(&[(&["*.a.example"], "2001:db8::1")]);
    assert_eq!(backend_of(&t, "xa.example"), None);
    assert_eq!(backend_of(&t, "x.ba.example"), None);
}

#[test]
fn exact_beats_wildcard() {
    let t = table(&[
        (&["*.a.example"], "2001:db8::1"),
        (&["x.a.example"], "2001:db8::2"),
    ]);
    assert_eq!(backend_of(&t, "x.a.example"), Some(v6("2001:db8::2")));
    assert_eq!(backend_of(&t, "y.a.example"), Some(v6("2001:db8::1")));
}

#[test]
fn longest_wildcard_suffix_wins() {
    let t = table(&[
        (&["*.example"], "2001:db8::1"),
        (&["*.b.a.example"], "2001:db8::3"),
        (&["*.a.example"], "2001:db8::2"),
    ]);
    assert_eq!(backend_of(&t, "x.b.a.example"), Some(v6("2001:db8::3")));
    assert_eq!(backend_of(&t, "b.a.example"), Some(v6("2001:db8::2")));
    assert_eq!(backend_of(&t, "x.c.a.example"), Some(v6("2001:db8::2")));
    assert_eq!(backend_of(&t, "a.example"), Some(v6("2001:db8::1")));
}

#[test]
fn single_label_wildcard_matches_everything_under_it() {
    let t = table(&[(&["*.example"], "2001:db8::1")]);
    assert_eq!(backend_of(&t, "a.b.c.example"), Some(v6("2001:db8::1")));
    assert_eq!(backend_of(&t, "example"), None);
}

#[test]
fn idn_route_matches_its_a_label() {
    let t = table(&[(&["bücher.example"], "2001:db8::1")]);
    assert_eq!(
        backend_of(&t, "xn--bcher-kva.example"),
        Some(v6("2001:db8::1"))
    );
}

#[test]
fn idn_wildcard_matches_names_below_its_a_label() {
    let t = table(&[(&["*.BÜCHER.example"], "2001:db8::1")]);
    assert_eq!(
        backend_of(&t, "shop.xn--bcher-kva.example"),
        Some(v6("2001:db8::1"))
    );
}

#[test]
fn a_label_and_unicode_spelling_are_duplicates() {
    let err = RouteTable::builder()
        .route(spec(&["xn--bcher-kva.example"], "2001:db8::1"))
        .unwrap()
        .route(spec(&["bücher.example"], "2001:db8::2"))
        .unwrap_err();
    assert!(matches!(
        err,
        RouteError::Duplicate {
            first_route: 0,
            route: 1,
            ..
        }
    ));
}

#[test]
fn duplicate_name_across_routes_names_both() {
    let err = RouteTable::builder()
        .route(spec(&["a.example", "b.example"], "2001:db8::1"))
        .unwrap()
        .route(spec(&["c.example", "B.Example."], "2001:db8::2"))
        .unwrap_err();
    assert_eq!(
        err,
        RouteError::Duplicate {
            first_route: 0,
            first_name: "b.example".into(),
            route: 1,
            name: "B.Example.".into(),
            normalised: "b.example".into(),
        }
    );
    let message = err.to_string();
    assert!(
        message.contains("route[0]") && message.contains("route[1]"),
        "{message}"
    );
    assert!(
        message.contains("\"b.example\"") && message.contains("\"B.Example.\""),
        "{message}"
    );
}

#[test]
fn duplicate_wildcard_is_an_error_too() {
    let err = RouteTable::builder()
        .route(spec(&["*.a.example"], "2001:db8::1"))
        .unwrap()
        .route(spec(&["*.A.example"], "2001:db8::2"))
        .unwrap_err();
    assert!(
        matches!(&err, RouteError::Duplicate { normalised, .. } if normalised == "*.a.example"),
        "{err:?}"
    );
}

#[test]
fn duplicate_within_one_route_names_both_spellings() {
    let err = RouteTable::builder()
        .route(spec(&["a.example", "A.EXAMPLE"], "2001:db8::1"))
        .unwrap_err();
    assert_eq!(
        err,
        RouteError::Duplicate {
            first_route: 0,
            first_name: "a.example".into(),
            route: 0,
            name: "A.EXAMPLE".into(),
            normalised: "a.example".into(),
        }
    );
}

#[test]
fn name_and_its_wildcard_are_not_duplicates() {
    let t = table(&[
        (&["a.example"], "2001:db8::1"),
        (&["*.a.example"], "2001:db8::2"),
    ]);
    assert_eq!(backend_of(&t, "a.example"), Some(v6("2001:db8::1")));
    assert_eq!(backend_of(&t, "x.a.example"), Some(v6("2001:db8::2")));
}

#[test]
fn bad_name_error_names_the_route_and_the_name() {
    let err = RouteTable::builder()
        .route(spec(&["a.example"], "2001:db8::1"))
        .unwrap()
        .route(spec(&["ok.example", "a..example"], "2001:db8::2"))
        .unwrap_err();
    assert_eq!(
        err,
        RouteError::BadName {
            route: 1,
            name: "a..example".into(),
            reason: BadNameReason::Name(NameError::EmptyLabel),
        }
    );
    let message = err.to_string();
    assert!(
        message.contains("route[1]") && message.contains("\"a..example\""),
        "{message}"
    );
}

#[test]
fn misplaced_wildcard_is_a_bad_name() {
    let err = RouteTable::builder()
        .route(spec(&["a.*.example"], "2001:db8::1"))
        .unwrap_err();
    assert!(matches!(
        err,
        RouteError::BadName {
            route: 0,
            reason: BadNameReason::Wildcard,
            ..
        }
    ));
}

#[test]
fn name_idna_refuses_is_a_bad_name() {
    // U+FFFD is disallowed by UTS #46.
    let err = RouteTable::builder()
        .route(spec(&["a\u{fffd}.example"], "2001:db8::1"))
        .unwrap_err();
    assert!(matches!(
        err,
        RouteError::BadName {
            route: 0,
            reason: BadNameReason::Idna,
            ..
        }
    ));
}

#[test]
fn route_without_hosts_is_an_error() {
    let err = RouteTable::builder()
        .route(spec(&[], "2001:db8::1"))
        .unwrap_err();
    assert_eq!(err, RouteError::NoHosts { route: 0 });
}

#[test]
fn port_zero_in_remap_is_an_error() {
    let mut s = spec(&["a.example"], "2001:db8::1");
    s.ports.insert(443, 0);
    let err = RouteTable::builder().route(s).unwrap_err();
    assert_eq!(
        err,
        RouteError::PortZero {
            route: 0,
            from: 443,
            to: 0
        }
    );
}

#[test]
fn failed_route_leaves_the_builder_unchanged() {
    let mut builder = RouteTable::builder();
    builder.add(spec(&["a.example"], "2001:db8::1")).unwrap();
    let err = builder.add(spec(
        &["b.example", "c.example", "A.example"],
        "2001:db8::2",
    ));
    assert!(err.is_err());
    builder.add(spec(&["b.example"], "2001:db8::3")).unwrap();
    let t = builder.build();
    assert_eq!(backend_of(&t, "b.example"), Some(v6("2001:db8::3")));
    assert_eq!(backend_of(&t, "c.example"), None);
    assert_eq!(t.lookup(&host("b.example")).unwrap().index(), Some(1));
    assert_eq!(t.len(), 2);
}

#[test]
fn backend_port_is_the_service_port_unless_remapped() {
    let mut s = spec(&["a.example"], "2001:db8::1");
    s.ports.insert(443, 8443);
    let t = RouteTable::builder().route(s).unwrap().build();
    let route = t.lookup(&host("a.example")).unwrap();
    assert_eq!(route.backend_port(443), 8443);
    assert_eq!(route.backend_port(80), 80);
}

#[test]
fn default_backend_catches_unknown_and_missing_names() {
    let t = RouteTable::builder()
        .default_backend(v6("2001:db8::9"))
        .route(spec(&["a.example"], "2001:db8::1"))
        .unwrap()
        .build();
    let unknown = t.lookup_or_default(Some(&host("b.example"))).unwrap();
    assert_eq!(unknown.backend(), v6("2001:db8::9"));
    assert!(unknown.is_default());
    assert_eq!(unknown.backend_port(443), 443);
    let missing = t.lookup_or_default(None).unwrap();
    assert_eq!(missing.backend(), v6("2001:db8::9"));
    let known = t.lookup_or_default(Some(&host("a.example"))).unwrap();
    assert_eq!(known.backend(), v6("2001:db8::1"));
}

#[test]
fn without_default_unknown_names_have_no_route() {
    let t = table(&[(&["a.example"], "2001:db8::1")]);
    assert!(t.lookup_or_default(Some(&host("b.example"))).is_none());
    assert!(t.lookup_or_default(None).is_none());
    assert!(t.default_route().is_none());
}

#[test]
fn lookup_normalised_does_not_match_unnormalised_strings() {
    let t = table(&[(&["a.example"], "2001:db8::1")]);
    assert!(t.lookup_normalised("a.example").is_some());
    assert!(t.lookup_normalised("A.example").is_none());
    assert!(t.lookup_normalised("a.example.").is_none());
    assert!(t.lookup_normalised("").is_none());
    assert!(t.lookup_normalised(".").is_none());
}

#[test]
fn listing_is_sorted_by_labels_from_the_right() {
    let mut s = spec(
        &["b.a.example", "*.a.example", "a.example"],
        "2001:db8:1::2",
    );
    s.ports.insert(443, 8443);
    s.ports.insert(80, 8080);
    let t = RouteTable::builder()
        .default_backend(v6("2001:db8:1::9"))
        .route(spec(&["z.example", "bücher.example"], "2001:db8:1::3"))
        .unwrap()
        .route(s)
        .unwrap()
        .build();
    assert_eq!(
        t.to_string(),
        "a.example -> [2001:db8:1::2] (route[1]) ports 80->8080, 443->8443\n\
         *.a.example -> [2001:db8:1::2] (route[1]) ports 80->8080, 443->8443\n\
         b.a.example -> [2001:db8:1::2] (route[1]) ports 80->8080, 443->8443\n\
         xn--bcher-kva.example -> [2001:db8:1::3] (route[0])\n\
         z.example -> [2001:db8:1::3] (route[0])\n\
         default -> [2001:db8:1::9]\n"
    );
}

#[test]
fn listing_without_default_says_unknown_names_are_refused() {
    let t = table(&[(&["a.example"], "2001:db8::1")]);
    assert!(
        t.to_string()
            .ends_with("default -> none (unknown names are refused)\n")
    );
}

#[test]
fn table_of_100k_names_builds_and_finds_the_last() {
    let mut builder = RouteTable::builder();
    for i in 0..100_000u32 {
        let hosts = if i % 2 == 0 {
            vec![format!("host{i}.zone{}.example", i % 100)]
        } else {
            vec![format!("*.svc{i}.zone{}.example", i % 100)]
        };
        builder
            .add(RouteSpec {
                hosts,
                backends: vec![BackendSpec::new(Ipv6Addr::new(
                    0x2001, 0xdb8, 1, 0, 0, 0, 0, i as u16,
                ))],
                hash: HashOn::Address,
                ports: BTreeMap::new(),
            })
            .unwrap();
    }
    let t = builder.build();
    assert_eq!(t.len(), 100_000);
    assert_eq!(
        t.lookup(&host("host99998.zone98.example")).unwrap().index(),
        Some(99_998)
    );
    assert_eq!(
        t.lookup(&host("a.b.svc99999.zone99.example"))
            .unwrap()
            .index(),
        Some(99_999)
    );
    assert!(t.lookup(&host("host99999.zone99.example")).is_none());
}
