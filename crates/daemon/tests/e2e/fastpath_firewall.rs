//! A stateful nftables FORWARD ruleset on the router with the kernel fast path on
//! (docs/operator-guide.md §7): `ct state established,related accept`, `ct state invalid
//! drop`, policy drop with the service ports allowed, and the rules the guide says to
//! put ahead of them, read from the guide itself and run as written.
//!
//! Conntrack sees a spliced flow's handshake and first bytes (the TUN path), then
//! nothing while the program carries the data past netfilter; the close comes back to
//! the TUN path with sequence and acknowledgment numbers far past the window conntrack
//! last saw, so conntrack calls it invalid. Without the guide's rules the FINs are
//! dropped and the flows never close; the test shows that as a figure.

use std::process::Stdio;

use kracauer_testbed::topology::{BACKEND_A, HTTP_PORT, HTTPS_PORT, SERVICE_V4};
use kracauer_testbed::{Kracauer, Topology, Variant, require_privileged_and};

use super::fastpath::{both_ways, config, metric_sum, scrape};
use super::{KRACAUER, figure};

/// The operator guide, whose §7 the test follows.
const GUIDE: &str = include_str!("../../../../docs/operator-guide.md");

/// Bytes each way: far more than any TCP window, so that the close is outside the window
/// conntrack last saw.
const N: u64 = 50 * 1000 * 1000;

/// An operator's stateful forwarding ruleset: established and related traffic passes,
/// invalid is dropped (and counted), new connections only to the service ports, and
/// nothing else.
fn ruleset() -> String {
    format!(
        "table inet filter {{\n\
         chain forward {{\n\
         type filter hook forward priority 0; policy drop;\n\
         ct state established,related accept\n\
         ct state invalid counter drop\n\
         ip daddr {SERVICE_V4} tcp dport {{ {HTTP_PORT}, {HTTPS_PORT} }} accept\n\
         ip6 daddr {BACKEND_A}/64 tcp dport {{ {HTTP_PORT}, {HTTPS_PORT} }} accept\n\
         }}\n\
         }}\n"
    )
}

/// The `nft` commands of the guide's §7 shell block for a stateful ruleset (the lines
/// that start with `nft insert rule inet filter forward`).
fn guide_rules() -> Vec<Vec<String>> {
    let section = GUIDE
        .split("## 7. Firewalling")
        .nth(1)
        .and_then(|s| s.split("\n## ").next())
        .expect("the guide has a section 7");
    let rules: Vec<Vec<String>> = section
        .lines()
        .filter(|l| l.starts_with("nft insert rule inet filter forward"))
        .map(|l| {
            l.split_whitespace()
                .skip(1)
                .map(|w| w.trim_matches('"').to_owned())
                .collect()
        })
        .collect();
    assert!(!rules.is_empty(), "no `nft insert rule` in §7:\n{section}");
    rules
}

fn nft(tb: &Topology, args: &[&str], stdin: Option<&str>) {
    let mut child = tb
        .router
        .command("nft")
        .args(args)
        .stdin(if stdin.is_some() {
            Stdio::piped()
        } else {
            Stdio::null()
        })
        .stderr(Stdio::piped())
        .spawn()
        .expect("run nft");
    if let (Some(text), Some(mut pipe)) = (stdin, child.stdin.take()) {
        std::io::Write::write_all(&mut pipe, text.as_bytes()).expect("feed nft");
    }
    let out = child.wait_with_output().expect("wait for nft");
    assert!(
        out.status.success(),
        "nft {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// Packets the ruleset's `ct state invalid counter drop` dropped so far.
fn invalid_dropped(tb: &Topology) -> u64 {
    let out = tb
        .router
        .command("nft")
        .args(["list", "chain", "inet", "filter", "forward"])
        .output()
        .expect("nft list");
    let text = String::from_utf8_lossy(&out.stdout);
    text.lines()
        .find(|l| l.contains("ct state invalid"))
        .and_then(|l| {
            l.split("packets ")
                .nth(1)?
                .split_whitespace()
                .next()?
                .parse()
                .ok()
        })
        .unwrap_or_else(|| panic!("no invalid-drop counter in:\n{text}"))
}

/// Replaces the router's ruleset with [`ruleset`] and `rules` (`nft` arguments) run after
/// it.
fn apply(tb: &Topology, rules: &[Vec<String>]) {
    nft(tb, &["flush", "ruleset"], None);
    nft(tb, &["-f", "-"], Some(&ruleset()));
    for rule in rules {
        let args: Vec<&str> = rule.iter().map(String::as_str).collect();
        nft(tb, &args, None);
    }
}

/// Replaces the router's ruleset with [`ruleset`] and `rules` inserted ahead of it, runs a
/// download of `N` bytes, and says how it went: its result, the invalid packets dropped,
/// and the flows still open after it.
fn download_through(tb: &Topology, k: &Kracauer<'_>, rules: &[Vec<String>]) -> String {
    apply(tb, rules);
    let download = match tb.download("a.example", N) {
        Ok(n) => format!("got {n} bytes"),
        Err(e) => format!("failed ({e})"),
    };
    format!(
        "{download}, invalid dropped {}, flows still open {}",
        invalid_dropped(tb),
        metric_sum(&scrape(k), "kracauer_flows")
    )
}

#[test]
#[ignore = "privileged: needs root, network namespaces, BPF and nft (run with --include-ignored)"]
fn stateful_forward_ruleset_with_the_guides_tun_rules_passes_fast_path_flows_and_their_closes() {
    require_privileged_and(
        "stateful_forward_ruleset_with_the_guides_tun_rules_passes_fast_path_flows_and_their_closes",
        &["nft"],
    );
    let tb = Topology::build(Variant::Routed).unwrap();
    let k = tb.start_kracauer(KRACAUER, &config(&tb, "")).unwrap();
    let rules = guide_rules();
    apply(&tb, &rules);

    // Both ways, every byte checked, and every flow closed by its FINs (not expired:
    // the idle timeout is two hours), with the data on the kernel path.
    let (tun_packets, to_backend, to_client) = both_ways(&tb, &k, N);
    assert!(
        (1..1000).contains(&tun_packets),
        "TUN packets {tun_packets}"
    );
    assert!(
        to_client >= N && to_backend >= N - 64 * 1024,
        "{to_backend} {to_client}"
    );
    let reply = tb
        .https_get("a.example", "/")
        .expect("HTTPS through the ruleset");
    assert_eq!(reply.status, 200, "{reply:?}");
    let with_rules = invalid_dropped(&tb);

    // What fails with fewer rules (figures): the guide's `oifname` rule alone (the
    // closes reach the TUN, Kracauer's translations of them do not leave it), and none.
    let oif_only: Vec<_> = rules
        .iter()
        .filter(|r| r.iter().any(|w| w == "oifname"))
        .cloned()
        .collect();
    let oif_only = download_through(&tb, &k, &oif_only);
    let none = download_through(&tb, &k, &[]);
    figure(&format!(
        "stateful FORWARD ruleset, fast path on: with the guide's TUN rules {N} bytes each way \
         intact and closed, TUN packets {tun_packets}, invalid dropped {with_rules}; with its \
         oifname rule alone a {N}-byte download {oif_only}; without either {none}"
    ));
    assert_eq!(
        with_rules, 0,
        "the guide's rules let the TUN's packets pass"
    );
    drop(k);
}
