//! Host set-up in a network namespace (root): the TUN, routes, policy rules and sysctls
//! appear as docs/architecture.md ("The packet path") says, disappear at tear-down, and a start after a crash removes
//! what the crashed run left.
//!
//! Privileged: every test is `#[ignore]`d (run them as root with `--include-ignored`) and
//! panics when root or `ip` is missing. Each works in a namespace of its own
//! (`krc-TAG-PID`), deleted when the test ends, passed or not.

use std::path::Path;

use kracauer::host::Host;
use kracauer::{config, netlink};
use kracauer_testbed::{Netns, OwnedNetns, require_privileged};

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

/// A namespace of the test's own.
fn namespace(tag: &str) -> OwnedNetns {
    OwnedNetns::create(tag).unwrap_or_else(|e| panic!("creating namespace {tag}: {e}"))
}

/// `ip -n NS ARGS...`, checked; its standard output.
fn ip(ns: &Netns, args: &[&str]) -> String {
    ns.ip(args)
        .unwrap_or_else(|e| panic!("in {}: {e}", ns.name()))
}

/// A file as seen from inside the namespace (a sysctl), trimmed.
fn read(ns: &Netns, path: &str) -> String {
    ns.read(path)
        .unwrap_or_else(|e| panic!("in {}: {e}", ns.name()))
}

/// Runs `f` on a thread inside the namespace.
fn inside<T: Send>(ns: &Netns, f: impl FnOnce() -> T + Send) -> T {
    ns.run(f)
        .unwrap_or_else(|e| panic!("entering {}: {e}", ns.name()))
}

fn lines(s: &str) -> Vec<String> {
    s.lines()
        .map(|l| l.split_whitespace().collect::<Vec<_>>().join(" "))
        .collect()
}

/// Rules, routes of every table and forwarding, as `ip` and /proc show them.
fn state(ns: &Netns) -> (Vec<String>, Vec<String>, String) {
    let rules = lines(&ip(ns, &["-4", "rule", "show"]));
    let mut routes = lines(&ip(ns, &["-4", "route", "show", "table", "all"]));
    routes.extend(lines(&ip(ns, &["-6", "route", "show", "table", "all"])));
    routes.retain(|r| {
        !r.contains("fe80") && !r.starts_with("multicast") && !r.starts_with("local fe80")
    });
    let fwd = format!(
        "{} {}",
        read(ns, "/proc/sys/net/ipv4/ip_forward"),
        read(ns, "/proc/sys/net/ipv6/conf/all/forwarding")
    );
    (rules, routes, fwd)
}

fn has(list: &[String], want: &str) -> bool {
    list.iter().any(|l| l == want)
}

#[test]
#[ignore = "privileged: needs root, network namespaces and a TUN device (run with --include-ignored)"]
fn set_up_diverts_owned_and_routed_addresses_and_tear_down_restores_the_host() {
    require_privileged("set_up_diverts_owned_and_routed_addresses_and_tear_down_restores_the_host");
    let ns = namespace("hs");
    ip(&ns, &["addr", "add", "203.0.113.10/32", "dev", "lo"]);
    let before = state(&ns);
    assert!(has(&before.0, "0: from all lookup local"), "{:?}", before.0);
    let c = config::parse(CONFIG, Path::new("k.toml")).expect("config");
    let rt = || {
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("runtime")
    };

    inside(&ns, || {
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
            assert_eq!(read(&ns, "/proc/sys/net/ipv4/conf/krc0/accept_local"), "1");
            assert_eq!(read(&ns, "/proc/sys/net/ipv4/conf/krc0/rp_filter"), "0");
            assert!(ip(&ns, &["link", "show", "krc0"]).contains("mtu 1400"));

            let errors = host.tear_down().await;
            assert!(errors.is_empty(), "{errors:?}");
            drop(tun);
        });
    });
    assert_eq!(state(&ns), before);
    assert!(!ip(&ns, &["link", "show"]).contains("krc0"));
}

#[test]
#[ignore = "privileged: needs root, network namespaces and a TUN device (run with --include-ignored)"]
fn start_after_a_crash_removes_what_the_crashed_run_left() {
    require_privileged("start_after_a_crash_removes_what_the_crashed_run_left");
    let ns = namespace("crash");
    ip(&ns, &["addr", "add", "203.0.113.10/32", "dev", "lo"]);
    let before = state(&ns);
    let c = config::parse(CONFIG, Path::new("k.toml")).expect("config");
    let rt = || {
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("runtime")
    };

    let after_first = inside(&ns, || {
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

    inside(&ns, || {
        rt().block_on(async {
            let (mut host, tun) = Host::set_up(&c).await.expect("set up after crash");
            // Three rules (two divert, the moved local rule) and the health-check source's
            // local route on `lo`; the TUN took its own routes.
            assert_eq!(host.leftovers, 4);
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
#[ignore = "privileged: needs root, network namespaces and a TUN device (run with --include-ignored)"]
fn persistent_tun_is_attached_to_and_outlives_the_run() {
    require_privileged("persistent_tun_is_attached_to_and_outlives_the_run");
    let ns = namespace("persist");
    ip(&ns, &["tuntap", "add", "dev", "krc0", "mode", "tun"]);
    let c = config::parse(CONFIG, Path::new("k.toml")).expect("config");
    let rt = || {
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("runtime")
    };
    inside(&ns, || {
        rt().block_on(async {
            let (mut host, tun) = Host::set_up(&c).await.expect("set up");
            let link = ip(&ns, &["link", "show", "krc0"]);
            assert!(link.contains("mtu 1400") && link.contains(",UP"), "{link}");
            assert!(host.tear_down().await.is_empty());
            drop(tun);
        });
    });
    let routes = ip(&ns, &["-6", "route", "show", "table", "all"]);
    assert!(!routes.contains("proto 107"), "{routes}");
    assert!(ip(&ns, &["link", "show", "krc0"]).contains("krc0"));
}

#[test]
#[ignore = "privileged: needs root, network namespaces and a TUN device (run with --include-ignored)"]
fn persistent_multi_queue_tun_takes_one_worker_or_two() {
    require_privileged("persistent_multi_queue_tun_takes_one_worker_or_two");
    let ns = namespace("persistmq");
    ip(
        &ns,
        &["tuntap", "add", "dev", "krc0", "mode", "tun", "multi_queue"],
    );
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
        inside(&ns, || {
            rt().block_on(async {
                let (mut host, tun) = Host::set_up(&c).await.expect("set up");
                assert_eq!(tun.queue_count(), workers, "workers = {workers}");
                assert!(host.tear_down().await.is_empty());
                drop(tun);
            });
        });
    }
    assert!(ip(&ns, &["link", "show", "krc0"]).contains("krc0"));
}
