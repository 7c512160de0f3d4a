//! What the Debian package ships, tested against the binary cargo built for this run:
//! the example configuration passes `kracauer check`, the man pages and completions are
//! generated for every subcommand, `--version` names the commit, and the systemd unit's
//! capabilities (`packaging/kracauer.service`) are exactly what the daemon needs.
//!
//! The capability tests are privileged (`#[ignore]`d; as root with `--include-ignored`):
//! they run `kracauer run` in the testbed's router namespace as an unprivileged user
//! holding only the capabilities the unit lists, read from the unit file itself, and
//! show a request spliced end to end, the readiness notification systemd waits for, a
//! reload and a clean stop; then that without any one of those capabilities the daemon
//! cannot do its job. So the unit and the daemon cannot drift apart: a capability the
//! daemon starts to need, or one the unit drops, fails here.

use std::io::ErrorKind;
use std::os::unix::fs::PermissionsExt;
use std::os::unix::net::UnixDatagram;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use kracauer_testbed::topology::{BACKEND_A, BACKEND_B, CLIENT_V6, HTTP_PORT, HTTPS_PORT};
use kracauer_testbed::{Kracauer, Reply, Topology, Variant, require_privileged_and};

/// The binary under test.
const KRACAUER: &str = env!("CARGO_BIN_EXE_kracauer");

/// A file of the repository's `packaging/` directory.
fn packaging(file: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../../packaging")
        .join(file)
}

fn kracauer(args: &[&str]) -> std::process::Output {
    Command::new(KRACAUER)
        .args(args)
        .output()
        .expect("run kracauer")
}

fn text(out: &[u8]) -> String {
    String::from_utf8_lossy(out).into_owned()
}

#[test]
fn packaged_configuration_passes_kracauer_check() {
    let config = packaging("kracauer.toml");
    let out = kracauer(&["check", "--config", config.to_str().expect("UTF-8 path")]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let report = text(&out.stdout);
    assert!(report.contains("valid"), "{report}");
    assert!(report.contains("a.example"), "{report}");
}

#[test]
fn man_pages_are_generated_for_the_command_and_each_subcommand() {
    let dir = std::env::temp_dir().join(format!("krc-man-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("make a directory");
    let out = kracauer(&["manpages", dir.to_str().expect("UTF-8 path")]);
    let pages: Vec<(String, String)> = [
        "kracauer",
        "kracauer-run",
        "kracauer-check",
        "kracauer-addr",
    ]
    .iter()
    .map(|name| {
        let page = std::fs::read_to_string(dir.join(format!("{name}.8"))).unwrap_or_default();
        (name.to_string(), page)
    })
    .collect();
    let _ = std::fs::remove_dir_all(&dir);
    assert!(out.status.success(), "{}", text(&out.stderr));
    for (name, page) in &pages {
        assert!(
            page.starts_with(".ie") || page.contains(".TH"),
            "{name}.8 is no man page: {page:.200}"
        );
        assert!(page.contains(" 8 "), "{name}.8 is not in section 8");
    }
    let main = &pages[0].1;
    for text in ["kracauer\\-run(8)", "SIGHUP", "/etc/kracauer/kracauer.toml"] {
        assert!(main.contains(text), "kracauer.8 lacks {text}");
    }
    assert!(
        pages[1].1.contains("\\-\\-config"),
        "kracauer-run.8 lacks --config"
    );
}

#[test]
fn completions_offer_every_subcommand_in_bash_zsh_and_fish() {
    for shell in ["bash", "zsh", "fish"] {
        let out = kracauer(&["completions", shell]);
        assert!(out.status.success(), "{shell}: {}", text(&out.stderr));
        let script = text(&out.stdout);
        for word in ["run", "check", "addr", "config", "prefix"] {
            assert!(script.contains(word), "{shell} completion lacks {word}");
        }
    }
}

#[test]
fn version_names_the_commit_and_how_it_was_built() {
    let short = text(&kracauer(&["-V"]).stdout);
    assert!(
        short.starts_with(&format!("kracauer {} (commit ", env!("CARGO_PKG_VERSION"))),
        "{short}"
    );
    let long = text(&kracauer(&["--version"]).stdout);
    assert!(
        long.contains("\nbuild: ") && long.contains("rustc "),
        "{long}"
    );
    assert!(long.contains("\nfeatures: "), "{long}");
}

/// The capabilities a unit-file key lists (`CAP_NET_ADMIN CAP_BPF`), in order.
fn unit_list(unit: &str, key: &str) -> Vec<String> {
    let lines: Vec<&str> = unit
        .lines()
        .filter_map(|l| l.trim().strip_prefix(key)?.strip_prefix('='))
        .collect();
    assert_eq!(lines.len(), 1, "one {key}= line in the unit: {lines:?}");
    lines[0].split_whitespace().map(str::to_owned).collect()
}

/// The unit's capabilities: what `AmbientCapabilities=` grants, which must be what
/// `CapabilityBoundingSet=` bounds (a bounded capability not granted would be unused; one
/// granted but not bounded would be dropped).
fn unit_capabilities() -> Vec<String> {
    let unit = std::fs::read_to_string(packaging("kracauer.service")).expect("read the unit");
    let ambient = unit_list(&unit, "AmbientCapabilities");
    let bounding = unit_list(&unit, "CapabilityBoundingSet");
    assert_eq!(
        ambient, bounding,
        "the unit grants what it bounds, no more and no less"
    );
    assert!(!ambient.is_empty(), "the unit names its capabilities");
    ambient
}

#[test]
fn unit_grants_exactly_the_capabilities_it_bounds() {
    let caps = unit_capabilities();
    for cap in &caps {
        capability_bit(cap);
    }
    assert_eq!(caps, ["CAP_NET_ADMIN", "CAP_BPF"]);
}

/// The bit of a capability in `/proc/PID/status`'s masks.
fn capability_bit(cap: &str) -> u32 {
    match cap {
        "CAP_NET_BIND_SERVICE" => 10,
        "CAP_NET_ADMIN" => 12,
        "CAP_NET_RAW" => 13,
        "CAP_SYS_ADMIN" => 21,
        "CAP_SYS_RESOURCE" => 24,
        "CAP_PERFMON" => 38,
        "CAP_BPF" => 39,
        other => panic!("{other}: add its number (linux/capability.h) to this test"),
    }
}

/// Like systemd's DynamicUser=: a user and group no file belongs to (the first number
/// systemd hands out).
const UNIT_USER: u32 = 61184;

/// Starts `kracauer run` in `tb` as [`UNIT_USER`] with only `caps` (as the unit names
/// them), ambient, inheritable, permitted, effective and bounding, and no new privileges,
/// the way systemd starts the unit; with `NOTIFY_SOCKET` at `notify`. Returns what the
/// testbed returns: the running daemon once its routes are in place, or why it never got
/// there.
fn start_as_unit<'tb>(
    tb: &'tb Topology,
    caps: &[String],
    notify: &Path,
    config: &str,
) -> Result<Kracauer<'tb>, kracauer_testbed::Error> {
    let dir = tb.dir();
    // The binary where the unprivileged user can reach it whatever the checkout's
    // directories allow.
    let binary = dir.join("kracauer-bin");
    if !binary.exists() {
        std::fs::copy(KRACAUER, &binary).expect("copy the binary");
    }
    let set: Vec<String> = std::iter::once("-all".to_owned())
        .chain(caps.iter().map(|c| {
            format!(
                "+{}",
                c.strip_prefix("CAP_").expect("CAP_ name").to_lowercase()
            )
        }))
        .collect();
    let set = set.join(",");
    // Runs as root inside `ip netns exec ROUTER`, whose mount namespace is the daemon's
    // own: a TUN device node the user may open (on a real host udev makes /dev/net/tun
    // 0666; here it may be 0600) bound over /dev/net/tun there only, then the daemon as
    // the user with `set`.
    let wrapper = dir.join(format!("kracauer-as-unit-{}", caps.len()));
    let script = format!(
        "#!/bin/sh\nset -e\n\
         [ -e '{dir}/tun' ] || mknod -m 0666 '{dir}/tun' c 10 200\n\
         mount --bind '{dir}/tun' /dev/net/tun\n\
         export NOTIFY_SOCKET='{notify}'\n\
         exec setpriv --reuid={UNIT_USER} --regid={UNIT_USER} --clear-groups \
         --inh-caps={set} --ambient-caps={set} --bounding-set={set} --no-new-privs \
         -- '{binary}' \"$@\"\n",
        dir = dir.display(),
        notify = notify.display(),
        binary = binary.display(),
    );
    std::fs::write(&wrapper, script).expect("write the wrapper");
    std::fs::set_permissions(&wrapper, std::fs::Permissions::from_mode(0o755))
        .expect("chmod the wrapper");
    tb.start_kracauer(&wrapper, config)
}

/// A datagram socket for `NOTIFY_SOCKET` that the unprivileged daemon may send to.
fn notify_socket(tb: &Topology, name: &str) -> (UnixDatagram, PathBuf) {
    let path = tb.dir().join(name);
    let socket = UnixDatagram::bind(&path).expect("bind the notify socket");
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o666))
        .expect("chmod the notify socket");
    // A bound on waiting for the daemon, not a timed assertion.
    socket
        .set_read_timeout(Some(Duration::from_secs(20)))
        .expect("set a read timeout");
    (socket, path)
}

/// The next notification, as its `KEY=VALUE` lines.
fn next_notification(socket: &UnixDatagram) -> Vec<String> {
    let mut buf = [0u8; 4096];
    match socket.recv(&mut buf) {
        Ok(n) => text(&buf[..n]).lines().map(str::to_owned).collect(),
        Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => {
            panic!("no notification from the daemon within 20 s")
        }
        Err(e) => panic!("notify socket: {e}"),
    }
}

/// `/proc/PID/status`'s line `key:`, its value.
fn proc_status(pid: u32, key: &str) -> String {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).expect("read status");
    status
        .lines()
        .find_map(|l| l.strip_prefix(key)?.strip_prefix(':'))
        .unwrap_or_else(|| panic!("no {key} in /proc/{pid}/status"))
        .trim()
        .to_owned()
}

/// The testbed's configuration with two workers, so that the steering program is loaded.
fn two_worker_config(tb: &Topology, extra: &str) -> String {
    let config = tb
        .config(extra)
        .replacen("mtu = 1500\n", "mtu = 1500\nworkers = 2\n", 1);
    assert!(config.contains("workers = 2"), "{config}");
    config
}

fn assert_translated(reply: &Reply, backend: std::net::Ipv6Addr, port: u16) {
    assert_eq!(reply.status, 200, "{reply:?}");
    let seen = reply.seen().expect("the backend's answer line");
    assert_eq!(seen.local.ip(), backend, "{seen:?}");
    assert_eq!(seen.local.port(), port, "{seen:?}");
    assert_eq!(seen.peer.ip(), CLIENT_V6, "{seen:?}");
    assert_eq!(seen.peer.port(), reply.local.port(), "{seen:?}");
}

const TOOLS: &[&str] = &["setpriv", "mount", "mknod"];

#[test]
#[ignore = "privileged: needs root, network namespaces and setpriv (run with --include-ignored)"]
fn daemon_with_only_the_units_capabilities_splices_notifies_reloads_and_stops_cleanly() {
    require_privileged_and(
        "daemon_with_only_the_units_capabilities_splices_notifies_reloads_and_stops_cleanly",
        TOOLS,
    );
    let caps = unit_capabilities();
    let tb = Topology::build(Variant::Routed).unwrap();
    let (notify, notify_path) = notify_socket(&tb, "notify");
    let k = start_as_unit(&tb, &caps, &notify_path, &two_worker_config(&tb, "")).unwrap();

    // Who it runs as: the user, with exactly the unit's capabilities.
    let pid = k.pid();
    let mask = caps.iter().fold(0u64, |m, c| m | 1 << capability_bit(c));
    let want = format!("{mask:016x}");
    assert_eq!(
        proc_status(pid, "Uid"),
        format!("{UNIT_USER}\t{UNIT_USER}\t{UNIT_USER}\t{UNIT_USER}")
    );
    for set in ["CapEff", "CapPrm", "CapBnd", "CapAmb"] {
        assert_eq!(proc_status(pid, set), want, "{set}");
    }
    assert_eq!(proc_status(pid, "NoNewPrivs"), "1");

    // READY=1 once the host is set up, and both workers running: the steering program
    // was loaded and attached.
    let ready = next_notification(&notify);
    assert!(ready.contains(&"READY=1".to_owned()), "{ready:?}");
    assert!(
        ready.contains(&"STATUS=running on kracauer0, 2 workers".to_owned()),
        "{ready:?}; the log:\n{}",
        k.log()
    );

    // A request spliced end to end, by HTTP Host and by TLS SNI.
    assert_translated(
        &tb.http_get("a.example", "/").unwrap(),
        BACKEND_A,
        HTTP_PORT,
    );
    assert_translated(
        &tb.https_get("b.example", "/").unwrap(),
        BACKEND_B,
        HTTPS_PORT,
    );

    // A reload: RELOADING=1 with the monotonic time systemd ≥ 253 wants, then READY=1;
    // the new route works.
    let more = format!("[[route]]\nhosts = [\"c.example\"]\nbackend = \"{BACKEND_B}\"\n");
    k.reload(&two_worker_config(&tb, &more)).unwrap();
    let reloading = next_notification(&notify);
    assert!(
        reloading.contains(&"RELOADING=1".to_owned()),
        "{reloading:?}"
    );
    assert!(
        reloading.iter().any(|l| l.starts_with("MONOTONIC_USEC=")),
        "{reloading:?}"
    );
    let ready = next_notification(&notify);
    assert!(ready.contains(&"READY=1".to_owned()), "{ready:?}");
    assert_translated(
        &tb.http_get("c.example", "/").unwrap(),
        BACKEND_B,
        HTTP_PORT,
    );

    // A stop: STOPPING=1, everything undone (sysctls included), exit 0.
    let log_before = k.log();
    let status = k.terminate().unwrap();
    let stopping = next_notification(&notify);
    assert!(stopping.contains(&"STOPPING=1".to_owned()), "{stopping:?}");
    assert!(status.success(), "{status}; the log:\n{log_before}");
    assert!(!tb.kracauer_ready(), "the routes are gone");
}

#[test]
#[ignore = "privileged: needs root, network namespaces and setpriv (run with --include-ignored)"]
fn without_any_one_of_the_units_capabilities_the_daemon_falls_short() {
    require_privileged_and(
        "without_any_one_of_the_units_capabilities_the_daemon_falls_short",
        TOOLS,
    );
    let caps = unit_capabilities();
    let tb = Topology::build(Variant::Routed).unwrap();
    let config = two_worker_config(&tb, "");
    for (n, missing) in caps.iter().enumerate() {
        let fewer: Vec<String> = caps.iter().filter(|c| *c != missing).cloned().collect();
        let (notify, notify_path) = notify_socket(&tb, &format!("notify-{n}"));
        match start_as_unit(&tb, &fewer, &notify_path, &config) {
            // Never set up: it exited before its routes were in place.
            Err(e) => assert!(e.to_string().contains("exited"), "without {missing}: {e}"),
            // Set up, but not as configured: one worker instead of two.
            Ok(k) => {
                let ready = next_notification(&notify);
                assert!(ready.contains(&"READY=1".to_owned()), "{ready:?}");
                assert!(
                    !ready.contains(&"STATUS=running on kracauer0, 2 workers".to_owned()),
                    "without {missing} the daemon still did everything: the unit grants a \
                     capability it does not need; the log:\n{}",
                    k.log()
                );
                let status = k.terminate().unwrap();
                assert!(status.success(), "{status}");
            }
        }
    }
}
