//! Two instances in one network namespace (one host), each with its own service address,
//! prefix, instance number and so TUN, table, rule preference and route protocol: both
//! serve; a colliding configuration is refused by `check` and by `run`; a crash and
//! restart of one, and the orderly stop of either, leave the other's set-up intact.

use std::net::{Ipv4Addr, Ipv6Addr, SocketAddr, SocketAddrV4};
use std::path::Path;
use std::process::Stdio;

use kracauer_testbed::topology::{BACKEND_A, HTTP_PORT, ROUTER_V6, SERVICE_V4, SSH_PORT, TUN};
use kracauer_testbed::{Kracauer, Topology, Variant, client, require_privileged};

use super::{KRACAUER, lines};

/// The second instance's service address, also the router's own.
const SERVICE_1: Ipv4Addr = Ipv4Addr::new(203, 0, 113, 11);
/// The second instance's prefix.
const PREFIX_1: &str = "2001:db8:64::1:0:0/96";
/// The client as instance 1's backends see it (PREFIX_1 + 198.51.100.2).
const CLIENT_V6_1: Ipv6Addr = Ipv6Addr::new(0x2001, 0xdb8, 0x64, 0, 0, 1, 0xc633, 0x6402);
/// The client as instance 0's backends see it.
const CLIENT_V6_0: Ipv6Addr = kracauer_testbed::topology::CLIENT_V6;

fn config_1() -> String {
    format!(
        "instance = 1\nprefix = \"{PREFIX_1}\"\n\n[[listen]]\naddress = \"{SERVICE_1}\"\nhttp = [{HTTP_PORT}]\n\n\
         [[route]]\nhosts = [\"a.example\"]\nbackend = \"{BACKEND_A}\"\n\n[metrics]\nlisten = \"127.0.0.1:9642\"\n"
    )
}

/// `GET /` for a.example at `service`, from the client; the peer the backend saw.
fn peer_via(tb: &Topology, service: Ipv4Addr) -> SocketAddr {
    let addr = SocketAddr::V4(SocketAddrV4::new(service, HTTP_PORT));
    let reply = tb
        .client
        .run(move || client::http_get(addr, "a.example", "/"))
        .unwrap()
        .unwrap();
    assert_eq!(reply.status, 200, "{reply:?}");
    reply.seen().expect("the backend's answer").peer
}

/// The router's SSH echo (on 203.0.113.10) still answers (the local rule is in place).
fn ssh_answers(tb: &Topology, service: Ipv4Addr) -> bool {
    let addr = SocketAddr::V4(SocketAddrV4::new(service, SSH_PORT));
    tb.client
        .run(move || -> std::io::Result<bool> {
            use std::io::{Read, Write};
            let mut s = client::open(addr).map_err(std::io::Error::other)?;
            s.write_all(b"ping")?;
            let mut buf = [0u8; 4];
            s.read_exact(&mut buf)?;
            Ok(&buf == b"ping")
        })
        .unwrap()
        .unwrap_or(false)
}

fn rules(tb: &Topology) -> Vec<String> {
    lines(&tb.router.ip(["-4", "rule", "show"]).unwrap())
}

/// `kracauer ARGS` in the router namespace with the testbed's state directory: status
/// and standard error.
fn kracauer(tb: &Topology, args: &[&str], config: &Path) -> (bool, String) {
    let out = tb
        .router
        .command(KRACAUER)
        .env("RUNTIME_DIRECTORY", tb.dir())
        .args(args)
        .arg("--config")
        .arg(config)
        .stdin(Stdio::null())
        .output()
        .unwrap();
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

fn start_1<'tb>(tb: &'tb Topology, n: u32) -> Kracauer<'tb> {
    Kracauer::start_in(
        &tb.router,
        None,
        tb.dir(),
        &format!("instance1-{n}"),
        "instance1.toml",
        Path::new(KRACAUER),
        &config_1(),
        "kracauer1",
    )
    .unwrap()
}

#[test]
#[ignore = "privileged: needs root, network namespaces and a TUN device (run with --include-ignored)"]
fn two_instances_on_one_host_serve_side_by_side_and_stopping_one_leaves_the_other_intact() {
    let _machine = super::beside();
    require_privileged(
        "two_instances_on_one_host_serve_side_by_side_and_stopping_one_leaves_the_other_intact",
    );
    let tb = Topology::build(Variant::Shared).unwrap();
    let r = &tb.router;
    r.ip([
        "addr",
        "add",
        &format!("{SERVICE_1}/32"),
        "dev",
        "to-client",
    ])
    .unwrap();
    for b in [&tb.backend_a, &tb.backend_b] {
        b.ip([
            "-6",
            "route",
            "add",
            PREFIX_1,
            "via",
            &ROUTER_V6.to_string(),
        ])
        .unwrap();
    }
    let pristine = rules(&tb);

    let k0 = tb.start_kracauer(KRACAUER, &tb.config("")).unwrap();
    let k1 = start_1(&tb, 0);
    assert_eq!(peer_via(&tb, SERVICE_V4).ip(), CLIENT_V6_0);
    assert_eq!(peer_via(&tb, SERVICE_1).ip(), CLIENT_V6_1);
    let both = rules(&tb);
    let want_0 =
        "500: from all to 203.0.113.10 ipproto tcp dport 80 lookup 27506 proto 107".to_owned();
    let want_1 =
        "501: from all to 203.0.113.11 ipproto tcp dport 80 lookup 27507 proto 108".to_owned();
    let local = "1000: from all lookup local proto 107".to_owned();
    for want in [&want_0, &want_1, &local] {
        assert!(both.contains(want), "{want} missing: {both:#?}");
    }
    let routes_1 = || {
        lines(
            &r.ip(["route", "show", "table", "all", "proto", "108"])
                .unwrap(),
        )
    };
    let own_1 = [
        "default dev kracauer1 table 27507 scope link",
        "2001:db8:64::1:0:0/96 dev kracauer1 metric 1024 pref medium",
        "local 2001:db8:64::1:0:1 dev lo table local metric 1024 pref medium",
    ];
    assert_eq!(routes_1(), own_1, "instance 1's routes, its own table");

    // `check` accepts each running instance's own file (before a reload), and refuses a
    // second file for instance 1 that would take its number, TUN, prefix and address.
    let (ok, err) = kracauer(&tb, &["check"], k0.config_path());
    assert!(ok, "{err}");
    let copy = tb.dir().join("copy-of-1.toml");
    std::fs::write(&copy, config_1().replace("9642", "9643")).unwrap();
    let (ok, err) = kracauer(&tb, &["check"], &copy);
    assert!(!ok, "a colliding configuration passed check");
    for what in [
        "instance 1 (pid",
        "runs already",
        "TUN device kracauer1",
        "prefix 2001:db8:64::1:0:0/96",
        "serves 203.0.113.11",
    ] {
        assert!(err.contains(what), "{what} missing from: {err}");
    }
    // `run` refuses it before touching the host: instance 1 keeps its set-up.
    let (ok, err) = kracauer(&tb, &["run"], &copy);
    assert!(!ok, "a colliding instance started");
    assert!(err.contains("collides with a running Kracauer"), "{err}");
    assert_eq!(rules(&tb), both);
    assert_eq!(peer_via(&tb, SERVICE_1).ip(), CLIENT_V6_1);

    // A crash of instance 1 and its restart (which removes what the crash left) leave
    // instance 0 alone.
    k1.kill9().unwrap();
    let k1 = start_1(&tb, 1);
    // With the fast path (on where it can run) instance 1's TUN was persistent, so its
    // two routes (its prefix and its table's default) outlived the crash too.
    let log = k1.log();
    assert!(
        [2, 4].iter().any(|left| log.contains(&format!(
            "removed {left} rules and routes left by an earlier run"
        ))),
        "only instance 1's own leftovers (its divert rule, the local route of its health-check source, and with the fast path its TUN's routes): {}",
        k1.log()
    );
    assert_eq!(rules(&tb), both);
    assert_eq!(peer_via(&tb, SERVICE_V4).ip(), CLIENT_V6_0);
    assert_eq!(peer_via(&tb, SERVICE_1).ip(), CLIENT_V6_1);

    // Stopping instance 0 removes its rules only; the local rule stays moved, for
    // instance 1's rules, and the host's own service on port 22 keeps answering.
    assert!(k0.terminate().unwrap().success());
    let after = rules(&tb);
    assert!(!after.contains(&want_0), "{after:#?}");
    assert!(after.contains(&want_1), "{after:#?}");
    assert!(after.contains(&local), "{after:#?}");
    assert!(!after.iter().any(|l| l.starts_with("0:")), "{after:#?}");
    assert_eq!(
        lines(
            &r.ip(["route", "show", "table", "all", "proto", "107"])
                .unwrap()
        ),
        Vec::<String>::new()
    );
    assert_eq!(routes_1(), own_1);
    assert_eq!(peer_via(&tb, SERVICE_1).ip(), CLIENT_V6_1);
    assert!(ssh_answers(&tb, SERVICE_V4), "the host's own port 22");
    assert!(r.ip(["link", "show", TUN]).is_err(), "kracauer0 is gone");

    // The last one out puts the local rule back at 0: the host as it was.
    assert!(k1.terminate().unwrap().success());
    assert_eq!(rules(&tb), pristine);
    assert!(ssh_answers(&tb, SERVICE_V4), "the host's own port 22");
}
