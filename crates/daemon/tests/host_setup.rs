//! Host set-up in a network namespace (root): the TUN, routes, policy rules and sysctls
//! appear as DESIGN.md says, disappear at tear-down, and a start after a crash removes
//! what the crashed run left.

mod common;

use std::path::Path;

use common::{Netns, privileged};
use kracauer::host::Host;
use kracauer::{config, netlink};

const CONFIG: &str = r#"prefix = "2001:db8:64::/96"

[tun]
name = "krc0"
mtu = 1400

[[listen]]
address = "203.0.113.10"
tls = [443]
http = [80]

[[listen]]
address = "203.0.113.20"
tls = [443]
"#;

fn lines(s: &str) -> Vec<String> {
    s.lines()
        .map(|l| l.split_whitespace().collect::<Vec<_>>().join(" "))
        .collect()
}

/// Rules, routes of every table and forwarding, as `ip` and /proc show them.
fn state(ns: &Netns) -> (Vec<String>, Vec<String>, String) {
    let rules = lines(&ns.ip(&["-4", "rule", "show"]));
    let mut routes = lines(&ns.ip(&["-4", "route", "show", "table", "all"]));
    routes.extend(lines(&ns.ip(&["-6", "route", "show", "table", "all"])));
    routes.retain(|r| {
        !r.contains("fe80") && !r.starts_with("multicast") && !r.starts_with("local fe80")
    });
    let fwd = format!(
        "{} {}",
        ns.read("/proc/sys/net/ipv4/ip_forward"),
        ns.read("/proc/sys/net/ipv6/conf/all/forwarding")
    );
    (rules, routes, fwd)
}

fn has(list: &[String], want: &str) -> bool {
    list.iter().any(|l| l == want)
}

#[test]
fn set_up_diverts_owned_and_routed_addresses_and_tear_down_restores_the_host() {
    if !privileged("set_up_diverts_owned_and_routed_addresses_and_tear_down_restores_the_host") {
        return;
    }
    let ns = Netns::new("hs");
    ns.ip(&["addr", "add", "203.0.113.10/32", "dev", "lo"]);
    let before = state(&ns);
    assert!(has(&before.0, "0: from all lookup local"), "{:?}", before.0);
    let c = config::parse(CONFIG, Path::new("k.toml")).expect("config");
    let rt = || {
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("runtime")
    };

    ns.enter(|| {
        rt().block_on(async {
            let (mut host, tun) = Host::set_up(&c).await.expect("set up");
            assert_eq!(host.leftovers, 0);
            let (rules, routes, fwd) = state(&ns);
            let p = netlink::PROTOCOL;
            let t = netlink::TABLE;
            assert!(
                has(
                    &rules,
                    &format!(
                        "500: from all to 203.0.113.10 ipproto tcp dport 443 lookup {t} proto {p}"
                    )
                ),
                "{rules:?}"
            );
            assert!(
                has(
                    &rules,
                    &format!(
                        "500: from all to 203.0.113.10 ipproto tcp dport 80 lookup {t} proto {p}"
                    )
                ),
                "{rules:?}"
            );
            assert!(
                has(&rules, &format!("1000: from all lookup local proto {p}")),
                "{rules:?}"
            );
            assert!(
                !rules.iter().any(|r| r.starts_with("0:")),
                "local rule still at 0: {rules:?}"
            );
            assert!(
                !rules.iter().any(|r| r.contains("203.0.113.20")),
                "{rules:?}"
            );
            assert!(
                has(
                    &routes,
                    &format!("default dev krc0 table {t} proto {p} scope link")
                ),
                "{routes:?}"
            );
            assert!(
                has(
                    &routes,
                    &format!("203.0.113.20 dev krc0 proto {p} scope link")
                ),
                "{routes:?}"
            );
            assert!(
                routes
                    .iter()
                    .any(|r| r.starts_with(&format!("2001:db8:64::/96 dev krc0 proto {p}"))),
                "{routes:?}"
            );
            assert_eq!(fwd, "1 1");
            assert_eq!(ns.read("/proc/sys/net/ipv4/conf/krc0/accept_local"), "1");
            assert_eq!(ns.read("/proc/sys/net/ipv4/conf/krc0/rp_filter"), "0");
            assert!(ns.ip(&["link", "show", "krc0"]).contains("mtu 1400"));

            let errors = host.tear_down().await;
            assert!(errors.is_empty(), "{errors:?}");
            drop(tun);
        });
    });
    assert_eq!(state(&ns), before);
    assert!(!ns.ip(&["link", "show"]).contains("krc0"));
}

#[test]
fn start_after_a_crash_removes_what_the_crashed_run_left() {
    if !privileged("start_after_a_crash_removes_what_the_crashed_run_left") {
        return;
    }
    let ns = Netns::new("crash");
    ns.ip(&["addr", "add", "203.0.113.10/32", "dev", "lo"]);
    let before = state(&ns);
    let c = config::parse(CONFIG, Path::new("k.toml")).expect("config");
    let rt = || {
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("runtime")
    };

    let after_first = ns.enter(|| {
        rt().block_on(async {
            let (host, tun) = Host::set_up(&c).await.expect("set up");
            let s = state(&ns);
            // A crash: nothing is undone, and the TUN goes with the process.
            std::mem::forget(host);
            drop(tun);
            s
        })
    });
    let (crashed_rules, _, _) = state(&ns);
    assert!(
        crashed_rules
            .iter()
            .any(|r| r.contains(&format!("proto {}", netlink::PROTOCOL)))
    );
    assert!(
        !crashed_rules.iter().any(|r| r.starts_with("0:")),
        "{crashed_rules:?}"
    );

    ns.enter(|| {
        rt().block_on(async {
            let (mut host, tun) = Host::set_up(&c).await.expect("set up after crash");
            // Three rules (two divert, the moved local rule); the TUN took its routes.
            assert_eq!(host.leftovers, 3);
            assert_eq!(state(&ns), after_first);
            assert!(host.tear_down().await.is_empty());
            drop(tun);
        });
    });
    let after = state(&ns);
    assert_eq!(after.0, before.0);
    assert_eq!(after.1, before.1);
}

#[test]
fn persistent_tun_is_attached_to_and_outlives_the_run() {
    if !privileged("persistent_tun_is_attached_to_and_outlives_the_run") {
        return;
    }
    let ns = Netns::new("persist");
    ns.ip(&["tuntap", "add", "dev", "krc0", "mode", "tun"]);
    let c = config::parse(CONFIG, Path::new("k.toml")).expect("config");
    let rt = || {
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("runtime")
    };
    ns.enter(|| {
        rt().block_on(async {
            let (mut host, tun) = Host::set_up(&c).await.expect("set up");
            let link = ns.ip(&["link", "show", "krc0"]);
            assert!(link.contains("mtu 1400") && link.contains(",UP"), "{link}");
            assert!(host.tear_down().await.is_empty());
            drop(tun);
        });
    });
    let routes = ns.ip(&["-6", "route", "show", "table", "all"]);
    assert!(!routes.contains("proto 107"), "{routes}");
    assert!(ns.ip(&["link", "show", "krc0"]).contains("krc0"));
}

#[test]
fn persistent_multi_queue_tun_takes_one_worker_or_two() {
    if !privileged("persistent_multi_queue_tun_takes_one_worker_or_two") {
        return;
    }
    let ns = Netns::new("persistmq");
    ns.ip(&["tuntap", "add", "dev", "krc0", "mode", "tun", "multi_queue"]);
    let rt = || {
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("runtime")
    };
    for workers in [1, 2] {
        let text = CONFIG.replace(
            "mtu = 1400\n",
            &format!("mtu = 1400\nworkers = {workers}\n"),
        );
        let c = config::parse(&text, Path::new("k.toml")).expect("config");
        ns.enter(|| {
            rt().block_on(async {
                let (mut host, tun) = Host::set_up(&c).await.expect("set up");
                assert_eq!(tun.queue_count(), workers, "workers = {workers}");
                assert!(host.tear_down().await.is_empty());
                drop(tun);
            });
        });
    }
    assert!(ns.ip(&["link", "show", "krc0"]).contains("krc0"));
}
