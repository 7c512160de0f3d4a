//! Config parsing as an operator meets it: what is accepted, and the exact place and
//! wording of what is not.

use super::*;
use std::time::Duration;

const GOOD: &str = r#"prefix = "2001:db8:64::/96"
default_backend = "2001:db8:1::2"

[tun]
name = "kracauer0"
mtu = 1500

[[listen]]
address = "203.0.113.10"
tls = [443]
http = [80]

[[route]]
hosts = ["a.example", "*.a.example"]
backend = "2001:db8:1::2"
ports = { 443 = 8443 }

[metrics]
listen = "127.0.0.1:9641"
"#;

fn parse_str(text: &str) -> Result<Config, ConfigError> {
    parse(text, Path::new("k.toml"))
}

/// The error's `file:line:column: message` text.
fn error(text: &str) -> String {
    match parse_str(text) {
        Ok(c) => panic!("accepted: {c:?}"),
        Err(e) => e.to_string(),
    }
}

/// `GOOD` with one line replaced (matched by its start).
fn good_with(line_start: &str, replacement: &str) -> String {
    let mut found = false;
    let out: Vec<&str> = GOOD
        .lines()
        .map(|l| {
            if !found && l.starts_with(line_start) {
                found = true;
                replacement
            } else {
                l
            }
        })
        .collect();
    assert!(found, "no line starts with {line_start:?}");
    out.join("\n") + "\n"
}

#[test]
fn design_example_without_quic_is_accepted_in_full() {
    let c = parse_str(GOOD).unwrap();
    assert_eq!(c.prefix.to_string(), "2001:db8:64::/96");
    assert_eq!(
        c.default_backend,
        [BackendSpec::new("2001:db8:1::2".parse().unwrap())]
    );
    assert_eq!(
        c.tun,
        Tun {
            fastpath: FastpathMode::Auto,
            fastpath_interfaces: None,
            name: "kracauer0".into(),
            mtu: 1500,
            offload: true,
            workers: None,
            restart_grace: DEFAULT_RESTART_GRACE,
        }
    );
    assert_eq!(
        c.listen,
        vec![Listen {
            address: Ipv4Addr::new(203, 0, 113, 10),
            tls: vec![443],
            http: vec![80],
            quic: vec![],
        }]
    );
    assert_eq!(c.routes.len(), 1);
    assert_eq!(c.routes[0].hosts, ["a.example", "*.a.example"]);
    assert_eq!(c.routes[0].ports, BTreeMap::from([(443, 8443)]));
    assert_eq!(
        c.routes[0].host_positions[1],
        Position {
            line: 14,
            column: 23
        }
    );
    assert_eq!(
        c.metrics,
        Some(Metrics {
            listen: "127.0.0.1:9641".parse().unwrap()
        })
    );
}

#[test]
fn minimal_config_gets_documented_defaults() {
    let c = parse_str(
        "prefix = \"2001:db8:64::/96\"\n[[listen]]\naddress = \"203.0.113.10\"\ntls = [443]\n",
    )
    .unwrap();
    assert_eq!(
        c.tun,
        Tun {
            fastpath: FastpathMode::Auto,
            fastpath_interfaces: None,
            name: DEFAULT_TUN_NAME.into(),
            mtu: DEFAULT_MTU,
            offload: true,
            workers: None,
            restart_grace: DEFAULT_RESTART_GRACE,
        }
    );
    assert!(c.default_backend.is_empty());
    assert!(c.routes.is_empty());
    assert_eq!(c.metrics, None);
}

#[test]
fn tun_offload_and_workers_are_read() {
    let c = parse_str(
        "prefix = \"2001:db8:64::/96\"\n[tun]\noffload = false\nworkers = 4\n[[listen]]\naddress = \"203.0.113.10\"\ntls = [443]\n",
    )
    .unwrap();
    assert!(!c.tun.offload);
    assert_eq!(c.tun.workers, Some(4));
}

#[test]
fn restart_grace_defaults_to_5s_takes_a_duration_and_zero_turns_the_keeper_off() {
    assert_eq!(DEFAULT_RESTART_GRACE, Duration::from_secs(5));
    let with = |v: &str| {
        parse_str(&format!(
            "prefix = \"2001:db8:64::/96\"\n[tun]\nrestart_grace = \"{v}\"\n[[listen]]\naddress = \"203.0.113.10\"\ntls = [443]\n"
        ))
    };
    assert_eq!(
        with("30s").unwrap().tun.restart_grace,
        Duration::from_secs(30)
    );
    assert_eq!(
        with("1500ms").unwrap().tun.restart_grace,
        Duration::from_millis(1500)
    );
    assert_eq!(with("0s").unwrap().tun.restart_grace, Duration::ZERO);
    assert_eq!(with("1h").unwrap().tun.restart_grace, MAX_RESTART_GRACE);
}

#[test]
fn a_bad_or_too_long_restart_grace_is_refused_at_its_value() {
    let with = |v: &str| {
        error(&format!(
            "prefix = \"2001:db8:64::/96\"\n[tun]\nrestart_grace = \"{v}\"\n[[listen]]\naddress = \"203.0.113.10\"\ntls = [443]\n"
        ))
    };
    let e = with("soon");
    assert!(e.contains(":3:17:"), "{e}");
    assert!(
        e.contains("tun.restart_grace: \"soon\" is not a duration"),
        "{e}"
    );
    assert!(e.contains("\"0s\""), "{e}");
    let e = with("2h");
    assert!(e.contains(":3:17:"), "{e}");
    assert!(
        e.contains("tun.restart_grace: \"2h\" is longer than an hour"),
        "{e}"
    );
}

#[test]
fn zero_workers_is_an_error_at_its_value() {
    let e = parse_str(
        "prefix = \"2001:db8:64::/96\"\n[tun]\nworkers = 0\n[[listen]]\naddress = \"203.0.113.10\"\ntls = [443]\n",
    )
    .unwrap_err()
    .to_string();
    assert!(e.contains(":3:11:"), "{e}");
    assert!(e.contains("tun.workers: 0 is not 1 to 256"), "{e}");
}

#[test]
fn quic_ports_are_accepted_beside_tls_on_the_same_port() {
    let c = parse_str(&good_with("http = [80]", "http = [80]\nquic = [443, 8443]")).unwrap();
    assert_eq!(c.listen[0].tls, [443]);
    assert_eq!(c.listen[0].quic, [443, 8443]);
}

#[test]
fn a_quic_only_listen_is_accepted_and_bad_quic_ports_are_named() {
    let quic_only = GOOD.replace("tls = [443]\nhttp = [80]", "quic = [443]");
    let c = parse_str(&quic_only).unwrap();
    assert_eq!((c.listen[0].tls.len(), c.listen[0].quic.len()), (0, 1));
    let e = error(&good_with("http = [80]", "http = [80]\nquic = [0]"));
    assert!(
        e.contains("listen.quic: port 0 is not a service port"),
        "{e}"
    );
    let e = error(&good_with("http = [80]", "http = [80]\nquic = [443, 443]"));
    assert!(
        e.contains("listen.quic: port 443 of 203.0.113.10 is listed twice"),
        "{e}"
    );
}

#[test]
fn quic_timeouts_default_to_at_least_two_minutes_and_can_be_set() {
    let c = parse_str(GOOD).unwrap();
    assert!(c.timeouts.quic_idle >= std::time::Duration::from_secs(120));
    let t = GOOD.to_owned() + "[timeouts]\nquic_idle = \"10m\"\nquic_unanswered = \"5s\"\n";
    let c = parse_str(&t).unwrap();
    assert_eq!(c.timeouts.quic_idle, std::time::Duration::from_secs(600));
    assert_eq!(
        c.timeouts.quic_unanswered,
        std::time::Duration::from_secs(5)
    );
}

#[test]
fn unknown_key_names_its_place_and_the_valid_keys() {
    let e = error(&good_with("mtu = 1500", "mut = 1500"));
    assert!(e.starts_with("k.toml:6:1: "), "{e}");
    assert!(e.contains("unknown field `mut`"), "{e}");
    assert!(
        e.contains("expected one of `name`, `mtu`, `offload`, `workers`"),
        "{e}"
    );
}

#[test]
fn top_level_key_after_a_table_is_reported_inside_that_table() {
    let e = error("[tun]\nname = \"k0\"\nprefix = \"2001:db8:64::/96\"\n");
    assert!(e.starts_with("k.toml:3:1: unknown field `prefix`"), "{e}");
}

#[test]
fn missing_prefix_is_reported() {
    let e = error("[[listen]]\naddress = \"203.0.113.10\"\ntls = [443]\n");
    assert!(e.contains("missing field `prefix`"), "{e}");
}

#[test]
fn toml_syntax_error_names_line_and_column() {
    let e = error("prefix = \"2001:db8:64::/96\"\nlisten = [\n");
    assert!(e.starts_with("k.toml:2:"), "{e}");
}

#[test]
fn non_96_prefix_points_at_the_value_and_says_why() {
    let e = error(&good_with("prefix", "prefix = \"2001:db8:64::/64\""));
    assert!(
        e.starts_with("k.toml:1:10: prefix: the prefix length is /64, but it must be /96"),
        "{e}"
    );
}

#[test]
fn ipv4_backend_is_refused_with_a_hint() {
    let e = error(&good_with("backend", "backend = \"198.51.100.7\""));
    assert!(
        e.starts_with("k.toml:15:11: route.backend: \"198.51.100.7\" is not an IPv6 address"),
        "{e}"
    );
    assert!(e.contains("IPv6 only"), "{e}");
}

#[test]
fn backend_inside_the_prefix_is_refused() {
    let e = error(&good_with(
        "default_backend",
        "default_backend = \"2001:db8:64::1\"",
    ));
    assert!(
        e.starts_with(
            "k.toml:2:19: default_backend: 2001:db8:64::1 is inside the translation prefix"
        ),
        "{e}"
    );
}

#[test]
fn loopback_and_link_local_backends_are_refused() {
    assert!(error(&good_with("backend", "backend = \"::1\"")).contains("loopback"));
    assert!(error(&good_with("backend", "backend = \"fe80::1\"")).contains("link-local"));
    assert!(error(&good_with("backend", "backend = \"ff02::1\"")).contains("multicast"));
}

#[test]
fn one_port_with_two_protocols_is_refused() {
    let e = error(&good_with("http = [80]", "http = [80, 443]"));
    assert!(
        e.starts_with("k.toml:11:13: listen.http: port 443 of 203.0.113.10 is already a tls port"),
        "{e}"
    );
}

#[test]
fn port_listed_twice_is_refused() {
    let e = error(&good_with("tls = [443]", "tls = [443, 443]"));
    assert!(
        e.contains("port 443 of 203.0.113.10 is already a tls port"),
        "{e}"
    );
}

#[test]
fn same_service_address_in_two_listen_tables_names_the_first() {
    let text = good_with(
        "http = [80]",
        "http = [80]\n\n[[listen]]\naddress = \"203.0.113.10\"\ntls = [8443]",
    );
    let e = error(&text);
    assert!(
        e.starts_with("k.toml:14:11: listen: 203.0.113.10 already has a [[listen]] table (line 9)"),
        "{e}"
    );
}

#[test]
fn ipv6_service_address_is_refused_with_the_reason() {
    let e = error(&good_with("address", "address = \"2001:db8::10\""));
    assert!(
        e.contains("IPv6 clients reach the backends directly"),
        "{e}"
    );
}

#[test]
fn loopback_service_address_is_refused() {
    let e = error(&good_with("address", "address = \"127.0.0.1\""));
    assert!(e.contains("cannot be a service address"), "{e}");
}

#[test]
fn listen_without_ports_is_refused() {
    let e = error("prefix = \"2001:db8:64::/96\"\n[[listen]]\naddress = \"203.0.113.10\"\n");
    assert!(e.contains("203.0.113.10 has no ports"), "{e}");
}

#[test]
fn no_listen_table_is_refused_with_an_example() {
    let e = error("prefix = \"2001:db8:64::/96\"\n");
    assert!(e.contains("no [[listen]] table"), "{e}");
    assert!(e.contains("address = \"203.0.113.10\""), "{e}");
}

#[test]
fn port_out_of_range_is_a_toml_error_at_the_value() {
    let e = error(&good_with("tls = [443]", "tls = [70000]"));
    assert!(e.starts_with("k.toml:10:8: "), "{e}");
}

#[test]
fn port_zero_is_refused() {
    let e = error(&good_with("tls = [443]", "tls = [0]"));
    assert!(e.contains("port 0 is not a service port"), "{e}");
}

#[test]
fn remap_of_a_port_nobody_listens_on_is_refused() {
    let e = error(&good_with("ports", "ports = { 444 = 8443 }"));
    assert!(
        e.starts_with("k.toml:16:11: route.ports: 444 is not a service port"),
        "{e}"
    );
}

#[test]
fn remap_key_that_is_not_a_number_is_refused() {
    let e = error(&good_with("ports", "ports = { https = 8443 }"));
    assert!(e.contains("\"https\" is not a port number"), "{e}");
}

#[test]
fn empty_hosts_list_is_refused() {
    let e = error(&good_with("hosts", "hosts = []"));
    assert!(
        e.starts_with("k.toml:14:9: route.hosts: the list is empty"),
        "{e}"
    );
}

#[test]
fn mtu_below_the_ipv6_minimum_is_refused() {
    let e = error(&good_with("mtu", "mtu = 1279"));
    assert!(
        e.starts_with("k.toml:6:7: tun.mtu: 1279 is below 1280"),
        "{e}"
    );
}

#[test]
fn tun_name_longer_than_15_bytes_is_refused() {
    let e = error(&good_with("name", "name = \"kracauer-too-long0\""));
    assert!(e.contains("tun.name"), "{e}");
    assert!(parse_str(&good_with("name", "name = \"kracauer-long0\"")).is_ok());
}

#[test]
fn metrics_listen_must_be_address_and_port() {
    let e = error(&good_with("listen =", "listen = \"localhost:9641\""));
    assert!(
        e.starts_with("k.toml:19:10: metrics.listen: \"localhost:9641\" is not ADDRESS:PORT"),
        "{e}"
    );
}

#[test]
fn unreadable_file_is_reported_with_its_path() {
    let e = load(Path::new("/nonexistent/kracauer.toml"))
        .unwrap_err()
        .to_string();
    assert!(
        e.starts_with("/nonexistent/kracauer.toml: cannot read the configuration"),
        "{e}"
    );
}

#[test]
fn position_counts_characters_not_bytes() {
    let text = "a = \"é\"\nb = 1";
    assert_eq!(
        position(text, text.find("1").unwrap()),
        Position { line: 2, column: 5 }
    );
    let after_e = text.find('"').unwrap() + 1 + 'é'.len_utf8();
    assert_eq!(position(text, after_e), Position { line: 1, column: 7 });
}

#[test]
fn timeouts_and_limits_default_when_absent() {
    let c = parse_str(GOOD).unwrap();
    assert_eq!(c.timeouts, Timeouts::default());
    assert_eq!(c.limits, Limits::default());
    assert_eq!(c.timeouts.idle, Duration::from_secs(7440));
}

#[test]
fn timeouts_take_human_durations() {
    let text =
        format!("{GOOD}\n[timeouts]\npeek = \"2s\"\nidle = \"2h 4m\"\nconnect = \"750ms\"\n");
    let c = parse_str(&text).unwrap();
    assert_eq!(c.timeouts.peek, Duration::from_secs(2));
    assert_eq!(c.timeouts.idle, Duration::from_secs(7440));
    assert_eq!(c.timeouts.connect, Duration::from_millis(750));
    assert_eq!(c.timeouts.linger, Timeouts::default().linger);
}

#[test]
fn bad_duration_names_key_and_gives_examples() {
    let text = format!("{GOOD}\n[timeouts]\npeek = \"soon\"\n");
    let e = error(&text);
    assert!(
        e.starts_with("k.toml:22:8: timeouts.peek: \"soon\" is not a duration"),
        "{e}"
    );
    assert!(e.contains("\"250ms\""), "{e}");
}

#[test]
fn custody_defaults_to_100ms_and_zero_turns_it_off() {
    assert_eq!(Timeouts::default().custody, Duration::from_millis(100));
    let c = parse_str(&format!("{GOOD}\n[timeouts]\ncustody = \"0s\"\n")).unwrap();
    assert_eq!(c.timeouts.custody, Duration::ZERO);
    let c = parse_str(&format!("{GOOD}\n[timeouts]\ncustody = \"40ms\"\n")).unwrap();
    assert_eq!(c.timeouts.custody, Duration::from_millis(40));
}

#[test]
fn zero_timeout_is_refused() {
    let e = error(&format!("{GOOD}\n[timeouts]\nlinger = \"0s\"\n"));
    assert!(
        e.contains("timeouts.linger: must be longer than zero"),
        "{e}"
    );
}

#[test]
fn limits_are_read_and_range_checked() {
    let c = parse_str(&format!(
        "{GOOD}\n[limits]\nmax_flows = 5000\npeeks_per_client = 8\n"
    ))
    .unwrap();
    assert_eq!((c.limits.max_flows, c.limits.peeks_per_client), (5000, 8));
    assert_eq!(c.limits.max_half_open, Limits::default().max_half_open);
    let e = error(&format!("{GOOD}\n[limits]\nmax_flows = 0\n"));
    assert!(
        e.starts_with("k.toml:22:13: limits.max_flows: 0 is out of range; give 1 to 4294967295"),
        "{e}"
    );
}

#[test]
fn peek_bytes_may_reach_the_largest_tls_hello_over_records_and_no_further() {
    let c = parse_str(&format!("{GOOD}\n[limits]\npeek_bytes = 16793600\n")).unwrap();
    assert_eq!(c.limits.peek_bytes, 16_793_600);
    let e = error(&format!("{GOOD}\n[limits]\npeek_bytes = 16793601\n"));
    assert!(
        e.contains("limits.peek_bytes: 16793601 is out of range; give 1 to 16793600"),
        "{e}"
    );
}

#[test]
fn unknown_limit_is_an_error_listing_the_valid_ones() {
    let e = error(&format!("{GOOD}\n[limits]\nmax_flow = 5\n"));
    assert!(e.contains("unknown field `max_flow`"), "{e}");
    assert!(e.contains("`max_flows`"), "{e}");
}

#[test]
fn log_defaults_to_a_text_access_log_on_stderr_and_no_level() {
    let c = parse_str(GOOD).unwrap();
    assert_eq!(c.log, Log::default());
    assert_eq!(c.log.access, AccessTarget::Stderr);
    assert_eq!(c.log.format, LogFormat::Text);
    assert_eq!(c.log.level, None);
}

#[test]
fn log_file_json_and_level_are_read() {
    let c = parse_str(&format!(
        "{GOOD}\n[log]\naccess = \"file:/var/log/kracauer/access.log\"\nformat = \"json\"\nlevel = \"info,kracauer::netlink=debug\"\nqueue = 1024\n"
    ))
    .unwrap();
    assert_eq!(
        c.log,
        Log {
            access: AccessTarget::File("/var/log/kracauer/access.log".into()),
            format: LogFormat::Json,
            level: Some("info,kracauer::netlink=debug".into()),
            queue: 1024,
        }
    );
    let off = parse_str(&format!("{GOOD}\n[log]\naccess = \"off\"\n")).unwrap();
    assert_eq!(off.log.access, AccessTarget::Off);
}

#[test]
fn relative_access_log_file_is_refused_at_its_value() {
    let e = error(&format!("{GOOD}\n[log]\naccess = \"file:access.log\"\n"));
    assert!(
        e.starts_with("k.toml:22:10: log.access: the file \"access.log\" must be an absolute path"),
        "{e}"
    );
}

#[test]
fn unknown_access_log_target_names_the_valid_ones() {
    let e = error(&format!("{GOOD}\n[log]\naccess = \"journald\"\n"));
    assert!(
        e.starts_with("k.toml:22:10: log.access: \"journald\" is not a log target; give \"stderr\", \"file:/ABSOLUTE/PATH\" or \"off\""),
        "{e}"
    );
}

#[test]
fn unknown_log_format_is_refused_at_its_value() {
    let e = error(&format!(
        "{GOOD}\n[log]\naccess = \"stderr\"\nformat = \"xml\"\n"
    ));
    assert!(
        e.starts_with(
            "k.toml:23:10: log.format: \"xml\" is not a format; give \"text\" or \"json\""
        ),
        "{e}"
    );
}

#[test]
fn misspelt_log_level_is_refused_at_its_value() {
    let e = error(&format!("{GOOD}\n[log]\nlevel = \"inf\"\n"));
    assert!(
        e.starts_with("k.toml:22:9: log.level: \"inf\" is not a level or filter"),
        "{e}"
    );
}

#[test]
fn unknown_log_key_lists_the_valid_ones() {
    let e = error(&format!("{GOOD}\n[log]\nqueues = 5\n"));
    assert!(e.starts_with("k.toml:22:1: "), "{e}");
    assert!(
        e.contains("expected one of `access`, `format`, `level`, `queue`"),
        "{e}"
    );
}

#[test]
fn log_queue_of_zero_is_refused_at_its_value() {
    let e = error(&format!("{GOOD}\n[log]\nqueue = 0\n"));
    assert!(
        e.starts_with("k.toml:22:9: log.queue: 0 is out of range; give 1 to 1048576 lines"),
        "{e}"
    );
}
