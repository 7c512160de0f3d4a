//! Host set-up in a network namespace (root): the TUN, routes, policy rules and sysctls
//! appear as docs/architecture.md ("The packet path") says, disappear at tear-down, and
//! a start after a crash removes what the crashed run left and puts back the sysctls it
//! changed. Forwarding is scoped to the interfaces that need it; where IPv6 forwarding
//! must be global, router advertisements keep working (`accept_ra=2`).
//!
//! Privileged: every test is `#[ignore]`d (run them as root with `--include-ignored`) and
//! panics when root or `ip` is missing. Each works in a namespace of its own
//! (`krc-TAG-PID`), deleted when the test ends, passed or not.

use std::path::Path;
use std::time::{Duration, Instant};

use kracauer::host::{Host, HostOptions, Ipv6Forwarding};
use kracauer::{config, netlink, sysctl};
use kracauer_testbed::{Netns, OwnedNetns, require_privileged, require_privileged_and};

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
            assert_eq!(fwd, "0 0", "forwarding is scoped to interfaces, not global");
            assert_eq!(read(&ns, "/proc/sys/net/ipv4/conf/krc0/forwarding"), "1");
            assert_eq!(
                read(&ns, "/proc/sys/net/ipv6/conf/krc0/force_forwarding"),
                "1"
            );
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

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime")
}

/// Polls `f` until it is true (a bound on waiting, not a timed assertion).
fn eventually(what: &str, mut f: impl FnMut() -> bool) {
    let end = Instant::now() + Duration::from_secs(20);
    while !f() {
        assert!(Instant::now() < end, "gave up waiting for {what}");
        std::thread::sleep(Duration::from_millis(100));
    }
}

#[test]
#[ignore = "privileged: needs root, network namespaces and a TUN device (run with --include-ignored)"]
fn a_start_after_a_crash_puts_back_the_sysctls_the_crashed_run_changed() {
    require_privileged("a_start_after_a_crash_puts_back_the_sysctls_the_crashed_run_changed");
    let ns = namespace("sysctlcrash");
    // An uplink: the namespace's only IPv4 route, so clients come in there.
    ip(
        &ns,
        &["link", "add", "up0", "type", "veth", "peer", "name", "up0p"],
    );
    ip(&ns, &["addr", "add", "198.51.100.1/24", "dev", "up0"]);
    ip(&ns, &["link", "set", "dev", "up0", "up"]);
    ip(&ns, &["link", "set", "dev", "up0p", "up"]);
    let fwd = "/proc/sys/net/ipv4/conf/up0/forwarding";
    assert_eq!(read(&ns, fwd), "0");
    let c = config::parse(CONFIG, Path::new("k.toml")).expect("config");
    let state = inside(&ns, || sysctl::state_path("krc0"));

    inside(&ns, || {
        runtime().block_on(async {
            let (host, tun) = Host::set_up(&c).await.expect("set up");
            assert!(
                host.sysctls_set.iter().any(|(change, old)| change.name()
                    == "net.ipv4.conf.up0.forwarding"
                    && old == "0"),
                "{:?}",
                host.sysctls_set
            );
            // A crash: nothing is undone, and the TUN goes with the process.
            std::mem::forget(host);
            drop(tun);
        })
    });
    assert_eq!(read(&ns, fwd), "1", "left changed by the crash");
    let recorded = std::fs::read_to_string(&state).expect("the state file outlives the crash");
    assert!(
        recorded.contains("/proc/sys/net/ipv4/conf/up0/forwarding\t0\t1"),
        "{recorded}"
    );

    inside(&ns, || {
        runtime().block_on(async {
            let (mut host, tun) = Host::set_up(&c).await.expect("set up after the crash");
            // The TUN's own values went with the TUN; the uplink's was put back (and set
            // again by this start).
            assert_eq!(host.restored_sysctls, 1);
            assert_eq!(read(&ns, fwd), "1");
            assert!(host.tear_down().await.is_empty());
            drop(tun);
        });
    });
    assert_eq!(read(&ns, fwd), "0", "put back at the clean exit");
    assert!(!state.exists(), "a clean exit removes the state file");
}

/// A namespace whose `eth1` learnt an IPv6 default route from a router advertisement
/// sent by `peer` (fe80::1), and has 2001:db8:1::1/64 with a backend behind it.
fn with_ra_default_route(ns: &Netns, peer: &Netns) {
    ip(
        ns,
        &[
            "link",
            "add",
            "eth1",
            "type",
            "veth",
            "peer",
            "name",
            "peer0",
            "netns",
            peer.name(),
        ],
    );
    ip(
        peer,
        &["link", "set", "dev", "peer0", "addrgenmode", "none"],
    );
    ip(
        peer,
        &["addr", "add", "fe80::1/64", "dev", "peer0", "nodad"],
    );
    ip(peer, &["link", "set", "dev", "peer0", "up"]);
    ip(
        ns,
        &["addr", "add", "2001:db8:1::1/64", "dev", "eth1", "nodad"],
    );
    ip(ns, &["link", "set", "dev", "eth1", "up"]);
    assert_eq!(read(ns, "/proc/sys/net/ipv6/conf/eth1/accept_ra"), "1");
    eventually(
        "eth1 to learn a default route from the router advertisement",
        || {
            send_ra(peer);
            ra_default(ns)
        },
    );
}

/// Whether `ns` has the default route the router advertisement gave it.
fn ra_default(ns: &Netns) -> bool {
    ip(ns, &["-6", "route", "show", "default"]).contains("via fe80::1 dev eth1 proto ra")
}

/// One router advertisement (router lifetime 1800 s) from fe80::1 on `peer0`.
fn send_ra(peer: &Netns) {
    const SEND_RA: &str = r#"
import socket, struct
i = socket.if_nametoindex("peer0")
s = socket.socket(socket.AF_INET6, socket.SOCK_RAW, socket.IPPROTO_ICMPV6)
s.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_MULTICAST_HOPS, 255)
s.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_MULTICAST_IF, i)
s.bind(("fe80::1", 0, 0, i))
s.sendto(struct.pack("!BBHBBHII", 134, 0, 0, 64, 0, 1800, 0, 0), ("ff02::1", 0, 0, i))
"#;
    let out = peer
        .command("python3")
        .args(["-c", SEND_RA])
        .output()
        .expect("run python3");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// `CONFIG` with a route to a backend on eth1's network.
fn config_with_backend() -> config::Config {
    let text =
        format!("{CONFIG}\n[[route]]\nhosts = [\"a.example\"]\nbackend = \"2001:db8:1::2\"\n");
    config::parse(&text, Path::new("k.toml")).expect("config")
}

#[test]
#[ignore = "privileged: needs root, network namespaces, a TUN device and python3 (run with --include-ignored)"]
fn ipv6_forwarding_is_scoped_to_the_tun_and_the_backend_link_and_router_advertisements_stay() {
    require_privileged_and(
        "ipv6_forwarding_is_scoped_to_the_tun_and_the_backend_link_and_router_advertisements_stay",
        &["python3"],
    );
    let ns = namespace("rascoped");
    let peer = namespace("rascopedp");
    with_ra_default_route(&ns, &peer);
    assert_eq!(
        read(&ns, "/proc/sys/net/ipv6/conf/all/force_forwarding"),
        "0",
        "Linux 6.17 or later"
    );
    let c = config_with_backend();
    inside(&ns, || {
        runtime().block_on(async {
            let (mut host, tun) = Host::set_up(&c).await.expect("set up");
            assert_eq!(read(&ns, "/proc/sys/net/ipv6/conf/all/forwarding"), "0");
            assert_eq!(
                read(&ns, "/proc/sys/net/ipv6/conf/eth1/force_forwarding"),
                "1"
            );
            assert_eq!(
                read(&ns, "/proc/sys/net/ipv6/conf/krc0/force_forwarding"),
                "1"
            );
            assert_eq!(
                read(&ns, "/proc/sys/net/ipv6/conf/eth1/accept_ra"),
                "1",
                "left alone"
            );
            assert_eq!(
                read(&ns, "/proc/sys/net/ipv6/conf/eth1/forwarding"),
                "0",
                "still a host"
            );
            assert!(ra_default(&ns), "the RA default route stays");
            assert!(host.tear_down().await.is_empty());
            drop(tun);
        });
    });
    assert_eq!(
        read(&ns, "/proc/sys/net/ipv6/conf/eth1/force_forwarding"),
        "0"
    );
    assert!(ra_default(&ns));
}

#[test]
#[ignore = "privileged: needs root, network namespaces, a TUN device and python3 (run with --include-ignored)"]
fn with_global_ipv6_forwarding_a_link_with_an_ra_default_route_gets_accept_ra_2_and_keeps_the_route()
 {
    require_privileged_and(
        "with_global_ipv6_forwarding_a_link_with_an_ra_default_route_gets_accept_ra_2_and_keeps_the_route",
        &["python3"],
    );
    let ns = namespace("raglobal");
    let peer = namespace("raglobalp");
    with_ra_default_route(&ns, &peer);
    let c = config_with_backend();
    let options = HostOptions {
        ipv6_forwarding: Ipv6Forwarding::Global,
        ..HostOptions::default()
    };
    inside(&ns, || {
        runtime().block_on(async {
            let (mut host, tun) = Host::set_up_with(&c, &options).await.expect("set up");
            assert_eq!(read(&ns, "/proc/sys/net/ipv6/conf/all/forwarding"), "1");
            assert_eq!(read(&ns, "/proc/sys/net/ipv6/conf/eth1/accept_ra"), "2");
            // The kernel drops RA-learnt default routes when forwarding comes on, except
            // on interfaces with accept_ra=2, which was set first.
            assert!(ra_default(&ns), "{}", ip(&ns, &["-6", "route"]));
            assert!(host.tear_down().await.is_empty());
            drop(tun);
        });
    });
    assert_eq!(read(&ns, "/proc/sys/net/ipv6/conf/all/forwarding"), "0");
    assert_eq!(read(&ns, "/proc/sys/net/ipv6/conf/eth1/accept_ra"), "1");
    assert!(ra_default(&ns));
}
