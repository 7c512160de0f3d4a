//! Pools in the configuration: the shapes `backend` takes, weights, backups, `hash`,
//! `[route.health]`, and the place and wording of each error.

use std::path::Path;
use std::time::Duration;

use kracauer_core::route::{BackendSpec, HashOn};

use crate::config::{ActiveCheck, Config, PoolHealth, parse};

const TOP: &str = "prefix = \"2001:db8:64::/96\"\n\n[[listen]]\naddress = \"203.0.113.10\"\ntls = [443]\nhttp = [80]\n\n";

fn with(route: &str) -> Result<Config, String> {
    parse(&format!("{TOP}{route}"), Path::new("k.toml")).map_err(|e| e.to_string())
}

fn addr(n: u16) -> std::net::Ipv6Addr {
    std::net::Ipv6Addr::new(0x2001, 0xdb8, 1, 0, 0, 0, 0, n)
}

#[test]
fn a_list_of_addresses_and_tables_is_a_pool_with_weights_and_backups() {
    let c = with(
        "[[route]]\nhosts = [\"a.example\"]\nbackend = [\n  \"2001:db8:1::2\",\n  { address = \"2001:db8:1::3\", weight = 3 },\n  { address = \"2001:db8:1::9\", backup = true },\n]\nhash = \"tuple\"\n",
    )
    .unwrap();
    let r = &c.routes[0];
    assert_eq!(
        r.backends,
        [
            BackendSpec::new(addr(2)),
            BackendSpec {
                weight: 3,
                ..BackendSpec::new(addr(3))
            },
            BackendSpec {
                backup: true,
                ..BackendSpec::new(addr(9))
            },
        ]
    );
    assert_eq!(r.hash, HashOn::Tuple);
    assert_eq!(r.health, PoolHealth::default());
}

#[test]
fn one_address_is_a_pool_of_one_hashed_by_address() {
    let c = with("[[route]]\nhosts = [\"a.example\"]\nbackend = \"2001:db8:1::2\"\n").unwrap();
    assert_eq!(c.routes[0].backends, [BackendSpec::new(addr(2))]);
    assert_eq!(c.routes[0].hash, HashOn::Address);
}

#[test]
fn default_backend_takes_a_list_too() {
    let text = format!(
        "prefix = \"2001:db8:64::/96\"\ndefault_backend = [\"2001:db8:1::2\", \"2001:db8:1::3\"]\n{}",
        &TOP["prefix = \"2001:db8:64::/96\"\n".len()..]
    );
    let c = parse(&text, Path::new("k.toml")).unwrap();
    assert_eq!(
        c.default_backend,
        [BackendSpec::new(addr(2)), BackendSpec::new(addr(3))]
    );
}

#[test]
fn health_table_sets_passive_rules_and_the_active_check() {
    let c = with(
        "[[route]]\nhosts = [\"a.example\"]\nbackend = [\"2001:db8:1::2\", \"2001:db8:1::3\"]\nports = { 443 = 8443 }\n\n[route.health]\nmax_fails = 3\nfail_timeout = \"30s\"\ncheck_interval = \"5s\"\n",
    )
    .unwrap();
    assert_eq!(
        c.routes[0].health,
        PoolHealth {
            max_fails: 3,
            fail_timeout: Duration::from_secs(30),
            check: Some(ActiveCheck {
                interval: Duration::from_secs(5),
                timeout: Duration::from_secs(2),
                port: 8443,
            }),
        },
        "the check port defaults to where the first listen port goes"
    );
}

#[test]
fn pool_errors_point_at_the_value_and_say_what_is_valid() {
    let cases = [
        (
            "backend = [\"2001:db8:1::2\", \"198.51.100.7\"]\n",
            "k.toml:10:29: route.backend: \"198.51.100.7\" is not an IPv6 address",
        ),
        (
            "backend = [\"2001:db8:1::2\", { address = \"2001:db8:1::2\" }]\n",
            "k.toml:10:41: route.backend: 2001:db8:1::2 is listed twice",
        ),
        (
            "backend = [\"2001:db8:1::2\", { address = \"2001:db8:1::3\", weight = 0 }]\n",
            "k.toml:10:67: route.backend: weight 0 would never be chosen",
        ),
        (
            "backend = []\n",
            "k.toml:10:11: route.backend: the list is empty",
        ),
        (
            "backend = [{ address = \"2001:db8:1::2\", backup = true }]\n",
            "k.toml:10:11: route.backend: every backend is a backup",
        ),
        (
            "backend = \"2001:db8:1::2\"\nhash = \"client\"\n",
            "k.toml:11:8: route.hash: \"client\" is not a placement",
        ),
        (
            "backend = \"2001:db8:1::2\"\n[route.health]\ncheck_port = 80\n",
            "k.toml:12:14: route.health.check_port: active checks are off without `check_interval`",
        ),
        (
            "backend = \"2001:db8:1::2\"\n[route.health]\nfail_timeout = \"soon\"\n",
            "k.toml:12:16: route.health.fail_timeout: \"soon\" is not a duration",
        ),
    ];
    for (route, want) in cases {
        let e = with(&format!("[[route]]\nhosts = [\"a.example\"]\n{route}")).unwrap_err();
        assert!(e.starts_with(want), "{route}: {e}");
    }
}

#[test]
fn unknown_keys_in_a_backend_table_are_errors_at_their_place() {
    let e = with(
        "[[route]]\nhosts = [\"a.example\"]\nbackend = [{ address = \"2001:db8:1::2\", wieght = 2 }]\n",
    )
    .unwrap_err();
    assert!(e.starts_with("k.toml:10:"), "{e}");
    assert!(e.contains("wieght"), "{e}");
}
