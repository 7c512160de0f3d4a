//! Headless Chromium with QUIC forced on the origin loads a page over HTTP/3 through
//! Kracauer.

use std::process::Stdio;

use kracauer_testbed::topology::{CLIENT_V6, SERVICE_V4};
use kracauer_testbed::{Topology, Variant, require_privileged_and};

use super::{KRACAUER, metric_reaches};

#[test]
#[ignore = "privileged: needs root, network namespaces and chromium (run with --include-ignored)"]
fn headless_chromium_loads_a_page_over_http3_through_kracauer() {
    require_privileged_and(
        "headless_chromium_loads_a_page_over_http3_through_kracauer",
        &["chromium"],
    );
    let tb = Topology::build(Variant::Routed).unwrap();
    let h3 = tb.start_h3().unwrap();
    let k = tb.start_kracauer(KRACAUER, &tb.quic_config("")).unwrap();
    // TCP 443 is blocked for the client: the page can only come over QUIC.
    super::nft(
        &tb.client,
        "table inet krc_notcp {\n chain out { type filter hook output priority 0; tcp dport 443 drop; }\n}\n",
    );
    let profile = tb.dir().join("chromium-profile");
    std::fs::create_dir_all(&profile).unwrap();
    let out = tb
        .client
        .command("chromium")
        .args([
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--no-first-run",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
            "--enable-quic",
            "--origin-to-force-quic-on=a.example:443",
            "--timeout=20000",
            "--dump-dom",
        ])
        .arg(format!("--user-data-dir={}", profile.display()))
        .arg(format!(
            "--ignore-certificate-errors-spki-list={}",
            spki_hash(&tb)
        ))
        .arg(format!("--host-resolver-rules=MAP a.example {SERVICE_V4}"))
        .arg("https://a.example/whoami")
        .stdin(Stdio::null())
        .output()
        .expect("chromium");
    let dom = String::from_utf8_lossy(&out.stdout);
    assert!(
        dom.contains(&CLIENT_V6.to_string()),
        "the page shows the embedded address:\n{dom}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(h3[0].incoming() >= 1);
    metric_reaches(&k, "kracauer_quic_flows_routed_total", |n| n >= 1);
}

/// Base64 of the SHA-256 of backend a's certificate's public key, as Chromium's
/// `--ignore-certificate-errors-spki-list` takes it (the testbed's CA is no system root;
/// Chromium's QUIC stack honours only this way of trusting it).
fn spki_hash(tb: &Topology) -> String {
    let der = tb.dir().join("backend-a.der");
    let cert = tb.backend_cert(0).expect("backend a's certificate");
    std::fs::write(&der, cert).expect("write the certificate");
    let out = std::process::Command::new("sh")
        .arg("-c")
        .arg(format!(
            "openssl x509 -inform der -in {} -pubkey -noout | openssl pkey -pubin -outform der | openssl dgst -sha256 -binary | base64",
            der.display()
        ))
        .output()
        .expect("openssl");
    assert!(out.status.success());
    String::from_utf8(out.stdout)
        .expect("base64 is text")
        .trim()
        .to_owned()
}
