//! The reload plan: what a reload applies, to which workers, and what it cannot.

use super::*;
use crate::config;
use crate::runtime;
use kracauer_core::engine::Engine;
use std::sync::mpsc;

const BASE: &str = "prefix = \"2001:db8:64::/96\"\n\n[[listen]]\naddress = \"203.0.113.10\"\ntls = [443]\n\n[[route]]\nhosts = [\"a.example\"]\nbackend = \"2001:db8:1::2\"\n";

fn parse(text: &str) -> Config {
    config::parse(text, Path::new("k.toml")).expect("valid")
}

/// `BASE` with `[timeouts]` and `[limits]` tables of `timeouts` and `limits`.
fn with(timeouts: &str, limits: &str) -> String {
    format!("{BASE}\n[timeouts]\n{timeouts}\n\n[limits]\n{limits}\n")
}

fn keys(plan: &Plan) -> Vec<&'static str> {
    plan.applied.iter().map(|c| c.key).collect()
}

#[test]
fn route_changes_alone_need_no_restart() {
    let b = parse(&BASE.replace("a.example", "b.example"));
    assert!(needs_restart(&parse(BASE), &b).is_empty());
    let plan = plan(&parse(BASE), &b);
    assert!(plan.restart.is_empty());
    assert!(!plan.reconfigures());
    assert_eq!(plan.in_force, b);
}

#[test]
fn timeouts_and_limits_apply_live_but_max_flows_takes_a_restart() {
    let running = parse(&with("", "max_flows = 10000"));
    let new = parse(&with(
        "peek = \"10s\"\nidle = \"1h\"",
        "max_flows = 20000\nmax_half_open = 1001\npeek_bytes = 4096",
    ));
    let plan = plan(&running, &new);
    assert_eq!(plan.restart, ["limits.max_flows"]);
    assert_eq!(
        keys(&plan),
        [
            "timeouts.peek",
            "timeouts.idle",
            "limits.max_half_open",
            "limits.peek_bytes"
        ]
    );
    let said: Vec<String> = plan.applied.iter().map(ToString::to_string).collect();
    assert_eq!(
        said,
        [
            "timeouts.peek 5s -> 10s",
            "timeouts.idle 2h 4m -> 1h",
            "limits.max_half_open 16384 -> 1001",
            "limits.peek_bytes 16384 -> 4096",
        ]
    );
    assert_eq!(plan.in_force.timeouts, new.timeouts);
    assert_eq!(plan.in_force.limits.max_half_open, 1001);
    assert_eq!(plan.in_force.limits.max_flows, 10000, "the running value");
}

#[test]
fn every_timeout_and_every_limit_but_max_flows_is_applied() {
    let running = parse(BASE);
    let new = parse(&with(
        "peek = \"1s\"\nconnect = \"2s\"\nsyn_retransmit = \"3s\"\nidle = \"4s\"\nlinger = \"5s\"\ncustody = \"0s\"",
        "max_half_open = 1\npeek_bytes = 2\npeeks_per_client = 3\npeek_memory = 4",
    ));
    let plan = plan(&running, &new);
    assert!(plan.restart.is_empty());
    assert_eq!(
        keys(&plan),
        [
            "timeouts.peek",
            "timeouts.connect",
            "timeouts.syn_retransmit",
            "timeouts.idle",
            "timeouts.linger",
            "timeouts.custody",
            "limits.max_half_open",
            "limits.peek_bytes",
            "limits.peeks_per_client",
            "limits.peek_memory",
        ]
    );
    assert_eq!(plan.in_force, new);
}

#[test]
fn settings_that_take_a_restart_keep_their_running_values() {
    let running = parse(BASE);
    let new = parse(&format!(
        "{}\n[tun]\nname = \"kracauer1\"\n",
        BASE.replace("a.example", "b.example")
    ));
    let plan = plan(&running, &new);
    assert_eq!(plan.restart, ["[tun] name"]);
    assert!(how_to_apply("[tun] name").starts_with("a restart"));
    assert_eq!(plan.in_force.tun, running.tun);
    assert_eq!(plan.in_force.routes, new.routes);
}

#[test]
fn a_reload_names_each_tun_setting_it_leaves_to_an_upgrade() {
    let running = parse(BASE);
    let new = parse(&format!("{BASE}\n[tun]\noffload = false\nworkers = 3\n"));
    let plan = plan(&running, &new);
    assert_eq!(plan.restart, ["[tun] offload", "[tun] workers"]);
    for what in plan.restart {
        assert_eq!(how_to_apply(what), "an upgrade (SIGUSR2) or a restart");
    }
    assert_eq!(plan.in_force.tun, running.tun);
}

#[test]
fn a_reload_without_new_timeouts_or_limits_sends_only_routes() {
    let c = parse(BASE);
    let plan = plan(&c, &c);
    let table = Arc::new(RouteTable::builder().build());
    let sent = messages(&plan, [7; 32], 3, table, Arc::default()).expect("valid");
    assert_eq!(sent.len(), 3);
    assert!(sent.iter().all(|m| m.config.is_none()));
}

#[test]
fn workers_engines_take_the_reloaded_timeouts_and_limits() {
    let workers = 2;
    let seed = [7; 32];
    // A small flow table: every engine allocates its table up front.
    let running = parse(&with("", "max_flows = 1000"));
    let table = Arc::new(routes::route_table(&running, Path::new("k.toml")).expect("routes"));
    let mut engines: Vec<Engine> = worker_configs(&running, seed, workers)
        .into_iter()
        .map(|c| Engine::new(c, table.clone()).expect("engine"))
        .collect();
    let new = parse(&with(
        "peek = \"9s\"\nlinger = \"1s\"",
        "max_flows = 4000\nmax_half_open = 100\npeek_memory = 1000001\npeeks_per_client = 5",
    ));
    let plan = plan(&running, &new);
    let sent = messages(&plan, seed, workers, table, Arc::default()).expect("valid");
    for (index, (engine, message)) in engines.iter_mut().zip(sent).enumerate() {
        let (tx, rx) = mpsc::channel();
        tx.send(Control::Reload(Box::new(message))).expect("send");
        assert_eq!(runtime::take_reloads(engine, &rx, index), 1);
        let c = engine.config();
        assert_eq!(c.peek_timeout, Duration::from_secs(9));
        assert_eq!(c.linger, Duration::from_secs(1));
        assert_eq!(c.connect_timeout, Duration::from_secs(5), "unchanged");
        assert_eq!(c.max_half_open, 100, "global, not divided");
        assert_eq!(c.max_peek_bytes, 1_000_001, "global, not divided");
        assert_eq!(c.max_peeking_per_client, 5, "global, not divided");
        assert_eq!(c.max_flows, 500, "still a half of the running 1000");
        assert_eq!(c.seed, routes::worker_seed(seed, index), "own seed kept");
    }
}

#[test]
fn a_prefix_change_and_a_listen_change_are_applied() {
    let running = parse(BASE);
    let b = parse(
        &BASE
            .replace("2001:db8:64::/96", "2001:db8:65::/96")
            .replace("tls = [443]", "tls = [443, 8443]\nhttp = [80]"),
    );
    assert!(needs_restart(&running, &b).is_empty());
    let plan = plan(&running, &b);
    assert!(plan.relistens() && plan.reprefixes() && plan.reconfigures());
    assert_eq!(
        plan.applied
            .iter()
            .map(ToString::to_string)
            .collect::<Vec<_>>(),
        [
            "prefix 2001:db8:64::/96 -> 2001:db8:65::/96",
            "[[listen]] 203.0.113.10 tls [443] http [] -> 203.0.113.10 tls [443, 8443] http [80]"
        ]
    );
    assert_eq!(plan.in_force.listen, b.listen);
    assert_eq!(plan.in_force.prefix, b.prefix);
}

#[test]
fn workers_engines_take_the_reloaded_services() {
    let running = parse(BASE);
    let new = parse(&BASE.replace("tls = [443]", "tls = [8443]"));
    let plan = plan(&running, &new);
    let table = Arc::new(RouteTable::builder().build());
    let sent = messages(&plan, [7; 32], 2, table, Arc::default()).expect("valid");
    for m in sent {
        let c = m.config.expect("the services change");
        assert_eq!(c.services[0].tls, [8443]);
    }
}

#[test]
fn a_metrics_change_is_applied() {
    let running = parse(BASE);
    let new = parse(&format!("{BASE}\n[metrics]\nlisten = \"127.0.0.1:9642\"\n"));
    let plan = plan(&running, &new);
    assert!(plan.restart.is_empty());
    assert!(!plan.reconfigures(), "nothing for the workers");
    assert_eq!(plan.in_force.metrics, new.metrics);
}

#[test]
fn log_changes_take_a_restart() {
    let b = parse(&format!("{BASE}\n[log]\naccess = \"off\"\n"));
    assert_eq!(needs_restart(&parse(BASE), &b), ["[log]"]);
}

#[test]
fn a_restart_grace_change_takes_an_upgrade_and_keeps_the_running_value() {
    let running = parse(BASE);
    let new = parse(&format!("{BASE}\n[tun]\nrestart_grace = \"30s\"\n"));
    assert_eq!(needs_restart(&running, &new), ["[tun] restart_grace"]);
    let with_mtu = parse(&format!(
        "{BASE}\n[tun]\nrestart_grace = \"30s\"\nmtu = 1400\n"
    ));
    assert_eq!(needs_restart(&running, &with_mtu), ["[tun] restart_grace"]);
    let plan = plan(&running, &new);
    assert_eq!(plan.in_force.tun.restart_grace, running.tun.restart_grace);
}
