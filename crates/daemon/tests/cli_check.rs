//! `kracauer check` as an operator runs it: the resolved route table, or the error with
//! its place in the file.

use std::path::PathBuf;
use std::process::{Command, Output};

/// Writes `text` to a file unique to this test process and test.
fn config_file(test: &str, text: &str) -> PathBuf {
    let path =
        std::env::temp_dir().join(format!("kracauer-check-{}-{test}.toml", std::process::id()));
    std::fs::write(&path, text).expect("write config");
    path
}

fn check(path: &PathBuf) -> Output {
    let o = Command::new(env!("CARGO_BIN_EXE_kracauer"))
        .arg("check")
        .arg("--config")
        .arg(path)
        .output()
        .expect("run kracauer");
    let _ = std::fs::remove_file(path);
    o
}

const HEAD: &str = "prefix = \"2001:db8:64::/96\"\n\n[[listen]]\naddress = \"203.0.113.10\"\ntls = [443]\nhttp = [80]\n\n";

#[test]
fn check_prints_normalised_names_sorted_with_backends_and_ports() {
    let path = config_file(
        "table",
        &format!(
            "{HEAD}[[route]]\nhosts = [\"*.B.example\", \"a.example\"]\nbackend = \"2001:db8:1::2\"\nports = {{ 443 = 8443 }}\n\n[[route]]\nhosts = [\"Bücher.example\"]\nbackend = \"2001:db8:1::3\"\n"
        ),
    );
    let o = check(&path);
    let out = String::from_utf8_lossy(&o.stdout);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let routes: Vec<&str> = out
        .lines()
        .skip_while(|l| *l != "routes")
        .skip(1)
        .map(str::trim_end)
        .collect();
    let expected = [
        format!("  {:<32} 2001:db8:1::2  ports 443->8443", "a.example"),
        format!("  {:<32} 2001:db8:1::2  ports 443->8443", "*.b.example"),
        format!("  {:<32} 2001:db8:1::3", "xn--bcher-kva.example"),
        format!("  {:<32} refused", "(any other name)"),
    ];
    assert_eq!(routes, expected, "{out}");
}

#[test]
fn check_prints_each_pool_with_weights_roles_and_placement() {
    let path = config_file(
        "pool",
        &format!(
            "prefix = \"2001:db8:64::/96\"\ndefault_backend = [\"2001:db8:1::8\", \"2001:db8:1::9\"]\n{}[[route]]\nhosts = [\"a.example\"]\nbackend = [\"2001:db8:1::2\", {{ address = \"2001:db8:1::3\", weight = 2 }}, {{ address = \"2001:db8:1::4\", backup = true }}]\nhash = \"tuple\"\n",
            &HEAD["prefix = \"2001:db8:64::/96\"\n".len()..]
        ),
    );
    let o = check(&path);
    let out = String::from_utf8_lossy(&o.stdout);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let routes: Vec<&str> = out
        .lines()
        .skip_while(|l| *l != "routes")
        .skip(1)
        .map(str::trim_end)
        .collect();
    let expected = [
        format!(
            "  {:<32} 2001:db8:1::2, 2001:db8:1::3 weight 2, 2001:db8:1::4 backup  hash tuple",
            "a.example"
        ),
        format!("  {:<32} 2001:db8:1::8, 2001:db8:1::9", "(any other name)"),
    ];
    assert_eq!(routes, expected, "{out}");
}

#[test]
fn check_reports_a_duplicate_name_at_its_line_and_column() {
    let path = config_file(
        "dup",
        &format!(
            "{HEAD}[[route]]\nhosts = [\"a.example\"]\nbackend = \"2001:db8:1::2\"\n\n[[route]]\nhosts = [\"A.EXAMPLE\"]\nbackend = \"2001:db8:1::3\"\n"
        ),
    );
    let o = check(&path);
    let err = String::from_utf8_lossy(&o.stderr);
    assert_eq!(o.status.code(), Some(1));
    assert!(
        err.contains(".toml:13:10: route.hosts: \"A.EXAMPLE\" is the same name as \"a.example\" at line 9, column 10"),
        "{err}"
    );
}

#[test]
fn check_shows_the_tun_offloads_and_workers_in_force() {
    let path = config_file("tun-default", HEAD);
    let o = check(&path);
    let out = String::from_utf8_lossy(&o.stdout);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    assert!(
        out.lines()
            .any(|l| l == "tun       kracauer0 (mtu 1500, offloads on, workers one per CPU)"),
        "{out}"
    );
    let path = config_file(
        "tun-set",
        &HEAD.replace(
            "\n\n[[listen]]",
            "\n\n[tun]\noffload = false\nworkers = 3\n\n[[listen]]",
        ),
    );
    let o = check(&path);
    let out = String::from_utf8_lossy(&o.stdout);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    assert!(
        out.lines()
            .any(|l| l == "tun       kracauer0 (mtu 1500, offloads off, workers 3)"),
        "{out}"
    );
}

#[test]
fn check_says_which_path_spliced_flows_take_and_why() {
    let path = config_file(
        "fastpath-off",
        &HEAD.replace(
            "\n\n[[listen]]",
            "\n\n[tun]\nfastpath = \"off\"\n\n[[listen]]",
        ),
    );
    let o = check(&path);
    let out = String::from_utf8_lossy(&o.stdout);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    assert!(
        out.lines()
            .any(|l| l.starts_with("fastpath  off ([tun] fastpath = \"off\")")),
        "{out}"
    );
    // The default is auto: it names the path it will take, the kernel's or the TUN's,
    // with the reason.
    let path = config_file("fastpath-auto", HEAD);
    let o = check(&path);
    let out = String::from_utf8_lossy(&o.stdout);
    let line = out
        .lines()
        .find(|l| l.starts_with("fastpath  auto: "))
        .unwrap_or_else(|| panic!("{out}"));
    assert!(
        line.contains("the kernel path for spliced flows")
            || line.contains("the TUN path for every packet, since"),
        "{line}"
    );
    let path = config_file(
        "fastpath-bad",
        &HEAD.replace(
            "\n\n[[listen]]",
            "\n\n[tun]\nfastpath = \"sometimes\"\n\n[[listen]]",
        ),
    );
    let o = check(&path);
    assert!(!o.status.success());
    assert!(
        String::from_utf8_lossy(&o.stderr).contains("fastpath"),
        "{}",
        String::from_utf8_lossy(&o.stderr)
    );
}

#[test]
fn check_shows_the_restart_grace_and_refuses_a_bad_one_at_its_line() {
    let o = check(&config_file("grace-default", HEAD));
    let out = String::from_utf8_lossy(&o.stdout);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    assert!(
        out.lines()
            .any(|l| l.starts_with("grace     5s: with the fast path")),
        "{out}"
    );
    let path = config_file(
        "grace-zero",
        &HEAD.replace(
            "\n\n[[listen]]",
            "\n\n[tun]\nrestart_grace = \"0s\"\n\n[[listen]]",
        ),
    );
    let out = String::from_utf8_lossy(&check(&path).stdout).into_owned();
    assert!(
        out.lines()
            .any(|l| l.starts_with("grace     none: a crash takes")),
        "{out}"
    );
    let path = config_file(
        "grace-bad",
        &HEAD.replace(
            "\n\n[[listen]]",
            "\n\n[tun]\nrestart_grace = \"a while\"\n\n[[listen]]",
        ),
    );
    let o = check(&path);
    assert!(!o.status.success());
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(
        err.contains("tun.restart_grace: \"a while\" is not a duration"),
        "{err}"
    );
}

#[test]
fn check_shows_the_log_settings_and_what_the_host_set_up_would_change() {
    let path = config_file(
        "host",
        &format!(
            "{HEAD}[log]\naccess = \"file:/var/log/kracauer/access.log\"\nformat = \"json\"\n"
        ),
    );
    let o = check(&path);
    let out = String::from_utf8_lossy(&o.stdout);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    assert!(
        out.lines().any(|l| l
            == "log       access file /var/log/kracauer/access.log (reopened on SIGUSR1), json, queue 32768; level info (RUST_LOG and -v come first)"),
        "{out}"
    );
    // Read from this host: the TUN does not exist yet; the rest depends on the host.
    for line in [
        "  sysctl net.ipv4.conf.kracauer0.forwarding = 1 (new device): forward IPv4 from the TUN to clients",
        "  route 2001:db8:64::/96 into kracauer0",
    ] {
        assert!(out.lines().any(|l| l == line), "missing {line:?}:\n{out}");
    }
    assert!(
        !out.lines().any(|l| l.contains("net.ipv4.ip_forward")),
        "forwarding is per interface: {out}"
    );
}

#[test]
fn check_shows_quic_ports_beside_tls_and_http() {
    let path = config_file(
        "quic",
        &format!(
            "{}\nquic = [443]\n\n[[route]]\nhosts = [\"a.example\"]\nbackend = \"2001:db8:1::2\"\n",
            HEAD.trim_end()
        ),
    );
    let o = check(&path);
    let out = String::from_utf8_lossy(&o.stdout);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    assert!(
        out.lines()
            .any(|l| l.starts_with("listen    203.0.113.10  tls [443]  http [80]  quic [443]")),
        "{out}"
    );
}
