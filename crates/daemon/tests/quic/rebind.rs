//! A client behind a NAT that moves it to another UDP port mid-transfer: Kracauer
//! recognises its packets by the connection ID the backend chose and makes a new mapping
//! to the same backend, which validates the new path; the transfer completes.

use kracauer_testbed::quic::Request;
use kracauer_testbed::topology::{CLIENT_V6, HTTPS_PORT};
use kracauer_testbed::{Topology, Variant, pattern, require_privileged};

use super::{KRACAUER, metric_reaches, nft};

/// The client's own port, and the one its NAT moves it to.
const PORT: u16 = 42_000;
const MOVED: u16 = 42_001;

#[test]
#[ignore = "privileged: needs root and network namespaces (run with --include-ignored)"]
fn a_client_whose_nat_rebinds_its_port_mid_transfer_completes() {
    require_privileged("a_client_whose_nat_rebinds_its_port_mid_transfer_completes");
    let tb = Topology::build(Variant::Routed).unwrap();
    let _h3 = tb.start_h3().unwrap();
    let k = tb.start_kracauer(KRACAUER, &tb.quic_config("")).unwrap();
    const N: u64 = 8_000_000;
    let mut moved = false;
    let client = tb.client.clone();
    let req = Request {
        sni: "a.example".into(),
        path: format!("/bytes/{N}"),
        port: PORT,
    };
    let reply = kracauer_testbed::quic::get(
        &tb.client,
        &tb.client_tls(),
        Topology::service(HTTPS_PORT),
        req,
        |got| {
            if !moved && got >= 1_000_000 {
                moved = true;
                // A stateless NAT in the client's namespace: its datagrams leave from
                // MOVED, and answers to MOVED come back to PORT. The client knows nothing.
                nft(
                    &client,
                    &format!(
                        "table inet krc_nat {{\n\
                         chain out {{ type filter hook postrouting priority 300; udp sport {PORT} udp sport set {MOVED}; }}\n\
                         chain in {{ type filter hook prerouting priority -300; udp dport {MOVED} udp dport set {PORT}; }}\n\
                         }}\n"
                    ),
                );
            }
        },
    )
    .unwrap()
    .unwrap_or_else(|e| {
        let m = super::metrics(&k);
        let interesting: Vec<&str> = m
            .lines()
            .filter(|l| !l.starts_with('#') && !l.ends_with(" 0") && (l.contains("drops") || l.contains("quic")))
            .collect();
        let nat = client.command("nft").args(["list", "ruleset"]).output().unwrap();
        panic!("{e}\n{}\n{}", interesting.join("\n"), String::from_utf8_lossy(&nat.stdout))
    });
    assert!(moved, "the NAT moved the client mid-transfer");
    assert_eq!(pattern::first_mismatch(0, &reply.body[..N as usize]), None);
    let tail = String::from_utf8_lossy(&reply.body[N as usize..]);
    assert_eq!(
        tail,
        format!("\n--\n{CLIENT_V6} {MOVED}"),
        "the backend ended on the new path"
    );
    metric_reaches(&k, "kracauer_quic_rebinds_total", |n| n >= 1);
}
