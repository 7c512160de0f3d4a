//! From the validated configuration to what the engine runs on: the [`EngineConfig`]
//! (prefix, services, MTU, seed) and the [`RouteTable`] (names → backends).
//!
//! The route table is built here rather than in `config.rs` because only the core knows
//! which names collide (IDNA, case, trailing dots): its errors name a route by index and
//! a host as written, and this module turns them back into the file, line and column the
//! operator wrote that host at. [`load`] is the one entry point `run`, `check` and a
//! reload all use, so a reload is validated exactly as a start is.

use std::path::{Path, PathBuf};

use kracauer_core::engine::{EngineConfig, Service, SharedLimits};
use kracauer_core::route::{RouteError, RouteSpec, RouteTable};

use crate::config::{self, Config, ConfigError, Position};

/// A configuration with everything checked, its route table included.
#[derive(Debug, Clone)]
pub struct Loaded {
    pub config: Config,
    pub routes: RouteTable,
}

/// Reads `path`, validates it and builds its route table.
pub fn load(path: &Path) -> Result<Loaded, ConfigError> {
    let config = config::load(path)?;
    let routes = route_table(&config, path)?;
    Ok(Loaded { config, routes })
}

/// The engine's configuration for `c` (its `[timeouts]` and `[limits]` as a whole; the
/// runtime gives each worker its share), with the seed given.
pub fn engine_config(c: &Config, seed: [u8; 32]) -> EngineConfig {
    let services = c
        .listen
        .iter()
        .map(|l| Service {
            address: l.address,
            tls: l.tls.clone(),
            http: l.http.clone(),
            quic: l.quic.clone(),
        })
        .collect();
    let mut e = EngineConfig::new(c.prefix, services, seed);
    e.ipv6_mtu = c.tun.mtu;
    let t = &c.timeouts;
    e.peek_timeout = t.peek;
    e.connect_timeout = t.connect;
    e.syn_retransmit = t.syn_retransmit;
    e.connect_attempt = t.connect_attempt;
    e.idle_timeout = t.idle;
    e.linger = t.linger;
    e.custody_delay = t.custody;
    e.udp_unanswered_timeout = t.quic_unanswered;
    e.udp_idle_timeout = t.quic_idle;
    let l = &c.limits;
    e.max_flows = l.max_flows;
    e.max_half_open = l.max_half_open;
    e.peek_cap = l.peek_bytes;
    e.max_peeking_per_client = l.peeks_per_client;
    e.max_peek_bytes = l.peek_memory;
    e.second_chance = c.scale_out.is_some();
    e
}

/// `e` for one of `workers` workers, each with its own flow table: `max_flows` is a
/// share of the configured one (rounded up; each table is sized at the start). The other
/// limits (half-open, peek memory, each address's allowance) are not divided: every
/// worker checks them against the same counts ([`shared_limits`]), so a client gets its
/// configured figure however the kernel spreads its connections over the workers.
pub fn per_worker(mut e: EngineConfig, workers: usize) -> EngineConfig {
    e.max_flows = e.max_flows.div_ceil(workers.max(1));
    e.max_udp_flows = e.max_udp_flows.div_ceil(workers.max(1));
    e
}

/// The counts every worker's limits are checked against, keyed from `seed` (the same key
/// for all workers: they must place an address in the same counters).
pub fn shared_limits(seed: [u8; 32]) -> std::sync::Arc<SharedLimits> {
    let half = |b: &[u8]| u64::from_le_bytes(b.try_into().unwrap_or_default());
    // The seed's first half keys the per-address sketch; the workers' own seeds differ
    // only in its last bytes (`worker_seed`).
    let key = [half(&seed[..8]) ^ 0x6c69_6d69_7473, half(&seed[8..16])];
    std::sync::Arc::new(SharedLimits::new(key))
}

/// The root of the SYN cookies' keys, shared by every worker and the kernel's SYN cookie
/// program, drawn from `seed` (which a live upgrade carries, so the new workers check the
/// old ones' cookies). A daemon that adopts a kernel program's pinned secret uses that
/// instead (`fastpath::syncookie::root`).
pub fn cookie_root(seed: [u8; 32]) -> [u64; 2] {
    kracauer_core::tcp::isn::cookie_root_from_seed(&seed)
}

/// Worker `index`'s seed: `seed` with the index mixed into its last bytes, so workers
/// share no secret (and no IPv4 ID sequence) while all stay unpredictable from outside.
pub fn worker_seed(mut seed: [u8; 32], index: usize) -> [u8; 32] {
    for (b, i) in seed[24..].iter_mut().zip((index as u64).to_le_bytes()) {
        *b ^= i;
    }
    seed
}

/// A seed for the engine's secrets (ISNs, SYN cookies, hash keys) from the OS.
pub fn os_seed() -> Result<[u8; 32], getrandom::Error> {
    let mut seed = [0; 32];
    getrandom::fill(&mut seed)?;
    Ok(seed)
}

/// The route table for `c`; `file` names the configuration in errors.
pub fn route_table(c: &Config, file: &Path) -> Result<RouteTable, ConfigError> {
    let mut builder = RouteTable::builder().default_pool(&c.default_backend);
    for r in &c.routes {
        let spec = RouteSpec {
            hosts: r.hosts.clone(),
            backends: r.backends.clone(),
            hash: r.hash,
            ports: r.ports.clone(),
        };
        if let Err(e) = builder.add(spec) {
            return Err(route_error(c, file.to_owned(), &e));
        }
    }
    Ok(builder.build())
}

/// Where host `name` of route `route` was written; `nth` picks among equal spellings in
/// that route (a name written twice in one route fails at its second spelling).
fn host_position(c: &Config, route: usize, name: &str, nth: usize) -> Position {
    let fallback = Position { line: 1, column: 1 };
    let Some(r) = c.routes.get(route) else {
        return fallback;
    };
    r.hosts
        .iter()
        .zip(&r.host_positions)
        .filter(|(h, _)| *h == name)
        .map(|(_, p)| *p)
        .nth(nth)
        .or_else(|| r.host_positions.first().copied())
        .unwrap_or(fallback)
}

/// A route-table error, placed at the host it is about.
fn route_error(c: &Config, file: PathBuf, e: &RouteError) -> ConfigError {
    let (at, message) = match e {
        RouteError::BadName {
            route,
            name,
            reason,
        } => (
            host_position(c, *route, name, 0),
            format!(
                "route.hosts: {name:?} is not a usable host name: {reason}; give a name like \"a.example\" or a wildcard like \"*.a.example\""
            ),
        ),
        RouteError::Duplicate {
            first_route,
            first_name,
            route,
            name,
            normalised,
        } => {
            let again = usize::from(first_route == route && first_name == name);
            let first = host_position(c, *first_route, first_name, 0);
            (
                host_position(c, *route, name, again),
                format!(
                    "route.hosts: {name:?} is the same name as {first_name:?} at line {}, column {} (both are {normalised:?}); a name leads to one backend, so keep one of them",
                    first.line, first.column
                ),
            )
        }
        RouteError::NoHosts { route }
        | RouteError::PortZero { route, .. }
        | RouteError::NoBackends { route }
        | RouteError::DuplicateBackend { route, .. } => (
            c.routes
                .get(*route)
                .and_then(|r| r.host_positions.first().copied())
                .unwrap_or(Position { line: 1, column: 1 }),
            format!("route: {e}"),
        ),
    };
    ConfigError::Invalid { file, at, message }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::Ipv4Addr;

    #[test]
    fn every_worker_gets_a_seed_of_its_own() {
        let seed = [0x5a; 32];
        let seeds: Vec<_> = (0..8).map(|i| worker_seed(seed, i)).collect();
        for (i, a) in seeds.iter().enumerate() {
            for b in &seeds[i + 1..] {
                assert_ne!(a, b);
            }
            assert_eq!(a[..24], seed[..24], "only the last bytes are mixed");
        }
    }

    #[test]
    fn only_the_flow_table_is_shared_out_the_other_limits_are_global() {
        let (c, _) = loaded(GOOD).unwrap();
        let e = per_worker(engine_config(&c, [0; 32]), 3);
        let whole = engine_config(&c, [0; 32]);
        assert_eq!(e.max_flows, whole.max_flows.div_ceil(3));
        assert_eq!(e.max_half_open, whole.max_half_open);
        assert_eq!(e.max_peek_bytes, whole.max_peek_bytes);
        assert_eq!(e.max_peeking_per_client, whole.max_peeking_per_client);
        assert_eq!(per_worker(whole.clone(), 1).max_flows, whole.max_flows);
    }

    const GOOD: &str = r#"prefix = "2001:db8:64::/96"
default_backend = "2001:db8:1::9"

[tun]
name = "krc0"
mtu = 1400

[[listen]]
address = "203.0.113.10"
tls = [443]
http = [80, 8080]

[[route]]
hosts = ["a.example", "*.a.example"]
backend = "2001:db8:1::2"
ports = { 443 = 8443 }
"#;

    fn loaded(text: &str) -> Result<(Config, RouteTable), String> {
        let file = Path::new("k.toml");
        let c = config::parse(text, file).map_err(|e| e.to_string())?;
        let r = route_table(&c, file).map_err(|e| e.to_string())?;
        Ok((c, r))
    }

    fn with_routes(routes: &str) -> String {
        format!(
            "prefix = \"2001:db8:64::/96\"\n\n[[listen]]\naddress = \"203.0.113.10\"\ntls = [443]\n\n{routes}"
        )
    }

    #[test]
    fn engine_config_carries_prefix_services_mtu_and_seed() {
        let (c, _) = loaded(GOOD).unwrap();
        let e = engine_config(&c, [7; 32]);
        assert_eq!(e.prefix.to_string(), "2001:db8:64::/96");
        assert_eq!(
            e.services,
            [Service {
                address: Ipv4Addr::new(203, 0, 113, 10),
                tls: vec![443],
                http: vec![80, 8080],
                quic: vec![],
            }]
        );
        assert_eq!(e.ipv6_mtu, 1400);
        assert_eq!(e.mss(), 1340);
        assert_eq!(e.seed, [7; 32]);
        assert!(e.validate().is_ok());
    }

    #[test]
    fn engine_config_carries_timeouts_and_limits() {
        let text = format!(
            "{GOOD}\n[timeouts]\npeek = \"3s\"\nidle = \"3h\"\n[limits]\nmax_flows = 1000\npeek_bytes = 8192\n"
        );
        let (c, _) = loaded(&text).unwrap();
        let e = engine_config(&c, [7; 32]);
        assert_eq!(e.peek_timeout, std::time::Duration::from_secs(3));
        assert_eq!(e.idle_timeout, std::time::Duration::from_secs(3 * 3600));
        assert_eq!(e.connect_timeout, std::time::Duration::from_secs(5));
        assert_eq!((e.max_flows, e.peek_cap), (1000, 8192));
        assert_eq!(e.max_half_open, 16_384);
    }

    #[test]
    fn route_table_resolves_names_wildcards_remaps_and_the_default() {
        let (_, t) = loaded(GOOD).unwrap();
        let exact = t.lookup_normalised("a.example").unwrap();
        assert_eq!(
            exact.backend(),
            "2001:db8:1::2".parse::<std::net::Ipv6Addr>().unwrap()
        );
        assert_eq!(exact.backend_port(443), 8443);
        assert_eq!(exact.backend_port(80), 80);
        assert!(t.lookup_normalised("x.y.a.example").is_some());
        assert!(t.lookup_normalised("b.example").is_none());
        assert_eq!(
            t.default_route()
                .map(|r| r.backend().to_string())
                .as_deref(),
            Some("2001:db8:1::9")
        );
    }

    #[test]
    fn without_default_backend_the_table_has_no_default() {
        let (_, t) = loaded(&with_routes(
            "[[route]]\nhosts = [\"a.example\"]\nbackend = \"2001:db8:1::2\"\n",
        ))
        .unwrap();
        assert!(t.default_route().is_none());
        assert_eq!(t.len(), 1);
    }

    #[test]
    fn duplicate_across_routes_points_at_the_second_and_names_the_first() {
        let text = with_routes(
            "[[route]]\nhosts = [\"a.example\"]\nbackend = \"2001:db8:1::2\"\n\n[[route]]\nhosts = [\"b.example\", \"A.Example.\"]\nbackend = \"2001:db8:1::3\"\n",
        );
        let e = loaded(&text).unwrap_err();
        assert!(
            e.starts_with("k.toml:12:23: route.hosts: \"A.Example.\" is the same name as \"a.example\" at line 8, column 10"),
            "{e}"
        );
    }

    #[test]
    fn name_written_twice_in_one_route_points_at_its_second_spelling() {
        let text = with_routes(
            "[[route]]\nhosts = [\"a.example\", \"a.example\"]\nbackend = \"2001:db8:1::2\"\n",
        );
        let e = loaded(&text).unwrap_err();
        assert!(e.starts_with("k.toml:8:23: "), "{e}");
    }

    #[test]
    fn unicode_and_ascii_spellings_of_one_name_collide() {
        let text = with_routes(
            "[[route]]\nhosts = [\"bücher.example\", \"xn--bcher-kva.example\"]\nbackend = \"2001:db8:1::2\"\n",
        );
        let e = loaded(&text).unwrap_err();
        // Columns count characters: "bücher.example" is 16 characters with its quotes.
        assert!(e.starts_with("k.toml:8:28: "), "{e}");
        assert!(e.contains("xn--bcher-kva.example"), "{e}");
    }

    #[test]
    fn bad_name_points_at_the_name_and_says_what_is_valid() {
        let text = with_routes(
            "[[route]]\nhosts = [\"a.example\",\n  \"a.*.example\"]\nbackend = \"2001:db8:1::2\"\n",
        );
        let e = loaded(&text).unwrap_err();
        assert!(e.starts_with("k.toml:9:3: route.hosts: \"a.*.example\" is not a usable host name: a wildcard must be"), "{e}");
        assert!(e.contains("\"*.a.example\""), "{e}");
    }

    #[test]
    fn os_seed_is_not_all_zero() {
        // 2^-256 chance of a false failure.
        assert_ne!(os_seed().unwrap(), [0; 32]);
    }
}
