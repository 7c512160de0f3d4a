//! The SYN cookie program in the kernel (`BPF_PROG_TEST_RUN`), against the engine's own
//! cookie code: for every combination of the SYN's options (MSS absent or around each
//! table entry, window scale absent, 0, 7, 14 or 15, SACK-permitted or not, timestamps or
//! not, in two orders) the program's SYN-ACK is byte for byte the one the engine sends
//! for a cookie (its TSval's clock bits and the IPv4 Identification taken from the
//! program's, the checksums computed afresh), and an engine of another worker (its own
//! seed, the same cookie root) opens the flow from the program's cookie with the options
//! it carried. The other way, the program passes the engine's cookie ACKs on and drops
//! forged ones, and with flood mode off it touches nothing.
//!
//! The runs happen in a namespace of their own: a veth stands in for the TUN device (the
//! service address is routed into it) and another for the client side.

use std::net::{Ipv4Addr, Ipv6Addr};
use std::path::PathBuf;
use std::sync::Arc;

use kracauer_core::addr::Prefix96;
use kracauer_core::engine::{Engine, EngineConfig, Output, Service};
use kracauer_core::route::{BackendSpec, HashOn, RouteSpec, RouteTable};
use kracauer_core::tcp::isn::TICK_MICROS;
use kracauer_core::tcp::seg::SegInfo;
use kracauer_core::time::Time;
use kracauer_core::wire::ipv4::Ipv4Packet;
use kracauer_core::wire::tcp::TcpPacket;
use kracauer_testbed::OwnedNetns;

use super::super::remove_pins;
use super::super::syscalls::test_run;
use super::*;

const TC_ACT_UNSPEC: u32 = u32::MAX;
const TC_ACT_SHOT: u32 = 2;
const TC_ACT_REDIRECT: u32 = 7;
const SERVICE: Ipv4Addr = Ipv4Addr::new(203, 0, 113, 10);
/// Routed out of the other veth: no service.
const ELSEWHERE: Ipv4Addr = Ipv4Addr::new(203, 0, 113, 99);
const ROOT: [u64; 2] = [0x0123_4567_89ab_cdef, 0x0fed_cba9_8765_4321];
const MSS: u16 = 1440;
const WSCALE: u8 = 7;

fn config(flood: bool) -> ScConfig {
    ScConfig {
        root: ROOT,
        mss: MSS,
        wscale: WSCALE,
        flood: u8::from(flood),
        pad: 0,
    }
}

/// An engine as one of the daemon's workers: its own seed, the shared root, cookies on
/// the host's monotonic clock (its `now` is that clock, so the offset is 0), and the
/// half-open bound at 0 so that it answers every SYN with a cookie.
fn engine(seed: u8, root: [u64; 2]) -> Engine {
    let prefix: Prefix96 = "2001:db8:64::/96".parse().expect("prefix");
    let mut c = EngineConfig::new(
        prefix,
        vec![Service {
            address: SERVICE,
            tls: vec![],
            http: vec![443],
            quic: vec![],
        }],
        [seed; 32],
    );
    c.ipv6_mtu = MSS + 60;
    c.window_scale = WSCALE;
    c.max_half_open = 0;
    c.cookie_root = Some(root);
    let backend: Ipv6Addr = "2001:db8:1::2".parse().expect("backend");
    let routes = RouteTable::builder()
        .route(RouteSpec {
            hosts: vec!["a.example".into()],
            backends: vec![BackendSpec::new(backend)],
            hash: HashOn::Address,
            ports: Default::default(),
        })
        .expect("route")
        .build();
    let mut e = Engine::new(c, Arc::new(routes)).expect("engine");
    e.set_cookie_clock(0);
    e
}

fn now() -> Time {
    Time::from_micros(monotonic_micros())
}

/// One SYN's options.
#[derive(Debug, Clone, Copy)]
struct Opts {
    mss: Option<u16>,
    ws: Option<u8>,
    sack: bool,
    ts: Option<u32>,
    /// Linux's order, or the reverse with NOPs between.
    reversed: bool,
}

impl Opts {
    fn bytes(&self) -> Vec<u8> {
        let mut parts: Vec<Vec<u8>> = Vec::new();
        if let Some(m) = self.mss {
            parts.push(vec![2, 4, (m >> 8) as u8, m as u8]);
        }
        if self.sack {
            parts.push(vec![4, 2]);
        }
        if let Some(t) = self.ts {
            let mut o = vec![8, 10];
            o.extend(t.to_be_bytes());
            o.extend([0; 4]);
            parts.push(o);
        }
        if let Some(w) = self.ws {
            parts.push(vec![1, 3, 3, w]);
        }
        if self.reversed {
            parts.reverse();
            for p in &mut parts {
                p.insert(0, 1);
            }
        }
        let mut b = parts.concat();
        b.resize(b.len().next_multiple_of(4), 0);
        b
    }

    /// Every combination.
    fn all() -> Vec<Opts> {
        let mut out = Vec::new();
        for mss in [
            None,
            Some(100),
            Some(536),
            Some(1219),
            Some(1220),
            Some(1439),
        ] {
            for mss in [mss, mss.map(|m| m + 1)] {
                for ws in [None, Some(0), Some(7), Some(14), Some(15)] {
                    for sack in [false, true] {
                        for ts in [None, Some(0x1234_5678)] {
                            for reversed in [false, true] {
                                out.push(Opts {
                                    mss,
                                    ws,
                                    sack,
                                    ts,
                                    reversed,
                                });
                            }
                        }
                    }
                }
            }
        }
        out.extend([1440, 1460, 9000].map(|m| Opts {
            mss: Some(m),
            ws: Some(9),
            sack: true,
            ts: Some(1),
            reversed: false,
        }));
        out
    }
}

/// An IPv4 packet from `client:port` to `dst:443`: `flags`, `seq`, `ack`, option bytes
/// and payload, checksums filled.
fn packet(
    client: Ipv4Addr,
    port: u16,
    dst: Ipv4Addr,
    (flags, seq, ack): (u8, u32, u32),
    opts: &[u8],
    payload: &[u8],
) -> Vec<u8> {
    let mut tcp = Vec::new();
    tcp.extend(port.to_be_bytes());
    tcp.extend(443u16.to_be_bytes());
    tcp.extend(seq.to_be_bytes());
    tcp.extend(ack.to_be_bytes());
    tcp.push((((20 + opts.len()) / 4) << 4) as u8);
    tcp.push(flags);
    tcp.extend(64240u16.to_be_bytes());
    tcp.extend([0, 0, 0, 0]);
    tcp.extend(opts);
    tcp.extend(payload);
    TcpPacket::new_unchecked(&mut tcp[..]).fill_checksum_v4(client, dst);
    let total = 20 + tcp.len();
    let mut ip = vec![
        0x45,
        0,
        (total >> 8) as u8,
        total as u8,
        0x12,
        0x34,
        0x40,
        0,
        64,
        6,
    ];
    ip.extend([0, 0]);
    ip.extend(client.octets());
    ip.extend(dst.octets());
    Ipv4Packet::new_unchecked(&mut ip[..]).fill_checksum();
    ip.extend(tcp);
    ip
}

fn frame(ip: &[u8]) -> Vec<u8> {
    let mut f = vec![0u8; 12];
    f.extend(0x0800u16.to_be_bytes());
    f.extend(ip);
    f
}

/// The engine's answer to `ip` (an IPv4 packet), and the packets it sent.
fn engine_run(e: &mut Engine, ip: &[u8]) -> Vec<Vec<u8>> {
    let mut buf = ip.to_vec();
    let mut out = Output::with_capacity(64 * 1024);
    e.handle_packet(now(), &mut buf, 0, &mut out);
    out.packets().map(<[u8]>::to_vec).collect()
}

fn tsval_of(tcp: &[u8]) -> Option<(u32, usize)> {
    let t = TcpPacket::new_checked(tcp).ok()?;
    let seg = SegInfo::parse(&t).ok()?;
    let (tsval, _) = seg.options.timestamps?;
    let at = t.options().find_map(|o| match o {
        Ok((at, kracauer_core::wire::tcp::TcpOption::Timestamps { .. })) => Some(at),
        _ => None,
    })?;
    Some((tsval, at + 2))
}

/// A namespace with a veth as "TUN" (the service address routed into it) and another
/// towards the clients.
fn namespace(tag: &str) -> (OwnedNetns, u32) {
    let ns = OwnedNetns::create(tag).expect("namespace");
    let ip = |args: &[&str]| ns.ip(args).unwrap_or_else(|e| panic!("ip {args:?}: {e}"));
    ns.sysctl("net.ipv4.ip_forward", "1").expect("sysctl");
    for (dev, peer) in [("sctun", "sctunp"), ("scout", "scoutp")] {
        ip(&["link", "add", dev, "type", "veth", "peer", "name", peer]);
        ip(&["link", "set", dev, "up"]);
        ip(&["link", "set", peer, "up"]);
    }
    ip(&["route", "add", "198.51.100.0/24", "dev", "scout"]);
    ip(&["route", "add", &format!("{SERVICE}/32"), "dev", "sctun"]);
    ip(&["route", "add", &format!("{ELSEWHERE}/32"), "dev", "scout"]);
    let index = ns.read("/sys/class/net/sctun/ifindex").expect("ifindex");
    (ns, index.trim().parse().expect("ifindex"))
}

/// Removes the test's pins however the test ends.
struct Pins(PathBuf);

impl Drop for Pins {
    fn drop(&mut self) {
        let _ = remove_pins(&self.0);
    }
}

fn run(sc: &Syncookie, frame: &[u8]) -> (u32, Vec<u8>) {
    let got = test_run(sc.program_fd().expect("fd"), frame, 0, 0).expect("test run");
    (got.retval, got.data)
}

/// The program's SYN-ACK for `o` against the engine's, byte for byte; then another
/// worker's engine opens the flow from it. Returns false when a tick boundary fell
/// between the two (the case is run again).
fn syn_ack_case(sc: &Syncookie, o: Opts, port: u16) -> bool {
    let client = Ipv4Addr::new(198, 51, 100, 7);
    let c_isn = 0x0bad_cafe_u32.wrapping_add(u32::from(port) << 7);
    let syn = packet(client, port, SERVICE, (0x02, c_isn, 0), &o.bytes(), &[]);
    let tick = monotonic_micros() / TICK_MICROS;
    let (rc, data) = run(sc, &frame(&syn));
    let mut worker = engine(1, ROOT);
    let sent = engine_run(&mut worker, &syn);
    if monotonic_micros() / TICK_MICROS != tick {
        return false;
    }
    let ctx = format!("{o:?}");
    assert_eq!(rc, TC_ACT_REDIRECT, "answered: {ctx}");
    assert_eq!(sent.len(), 1, "the engine answered with a cookie: {ctx}");
    let kernel = &data[14..];
    let mut want = sent[0].clone();
    // The clock bits of the TSval and the Identification are the program's own.
    let k_tcp = &kernel[20..];
    match (tsval_of(k_tcp), tsval_of(&want[20..])) {
        (Some((k, _)), Some((w, at))) => {
            assert_eq!(k & 0x1f, w & 0x1f, "options in the TSval: {ctx}");
            let skew = (k & !0x1f).wrapping_sub(w & !0x1f) as i32;
            assert!(skew.abs() <= 5_000, "TSval clock {k} vs {w}: {ctx}");
            want[20 + at..20 + at + 4].copy_from_slice(&k.to_be_bytes());
        }
        (None, None) => {}
        other => panic!("timestamps differ {other:?}: {ctx}"),
    }
    {
        let mut ip = Ipv4Packet::new_unchecked(&mut want[..]);
        ip.set_ident(u16::from_be_bytes([kernel[4], kernel[5]]));
        ip.fill_checksum();
    }
    TcpPacket::new_unchecked(&mut want[20..]).fill_checksum_v4(SERVICE, client);
    assert_eq!(kernel, &want[..], "SYN-ACK bytes: {ctx}");

    // Another worker takes the client's ACK (its request in it) and opens the flow.
    let k = TcpPacket::new_checked(k_tcp).expect("tcp");
    let ts = tsval_of(k_tcp).map(|(tsval, _)| tsval);
    let mut ack_opts = Vec::new();
    if let Some(tsval) = ts {
        ack_opts.extend([1, 1, 8, 10, 0, 0, 0, 9]);
        ack_opts.extend(tsval.to_be_bytes());
    }
    let request = b"GET / HTTP/1.1\r\nHost: a.example\r\n\r\n";
    let ack = packet(
        client,
        port,
        SERVICE,
        (
            0x18,
            c_isn.wrapping_add(1),
            k.seq_number().0.wrapping_add(1),
        ),
        &ack_opts,
        request,
    );
    let mut other = engine(2, ROOT);
    let sent = engine_run(&mut other, &ack);
    assert_eq!(other.stats().cookies_accepted, 1, "accepted: {ctx}");
    let to_backend = sent
        .iter()
        .find(|p| p[0] >> 4 == 6)
        .expect("SYN to the backend");
    let b = TcpPacket::new_checked(&to_backend[40..]).expect("tcp");
    let b = SegInfo::parse(&b).expect("seg").options;
    let table = [536u16, 1220, 1440, 1460];
    let client_mss = o.mss.unwrap_or(536);
    let cookie_mss = table
        .iter()
        .rev()
        .find(|&&m| m <= client_mss)
        .copied()
        .unwrap_or(536);
    assert_eq!(b.mss, Some(cookie_mss.min(MSS)), "MSS: {ctx}");
    let with_ts = o.ts.is_some();
    assert_eq!(
        b.window_scale,
        o.ws.filter(|_| with_ts).map(|w| w.min(14)),
        "{ctx}"
    );
    assert_eq!(b.sack_permitted, o.sack && with_ts, "{ctx}");
    assert_eq!(b.timestamps.is_some(), with_ts, "{ctx}");
    true
}

#[test]
#[ignore = "privileged: loads a tc program (CAP_BPF) and routes in a namespace"]
fn syn_ack_of_the_program_is_the_engines_cookie_syn_ack_for_every_option_combination() {
    kracauer_testbed::require_privileged("syncookie::synack");
    let (ns, tun_ifindex) = namespace("scsynack");
    let tun = ns.name().to_owned();
    let _pins = Pins(pin_dir(&tun));
    ns.run(|| {
        let mut sc = Syncookie::load(&tun, tun_ifindex, 64).expect("load");
        sc.configure(config(true)).expect("configure");
        let all = Opts::all();
        for (i, o) in all.iter().enumerate() {
            let port = 20_000 + i as u16;
            if !syn_ack_case(&sc, *o, port) {
                assert!(syn_ack_case(&sc, *o, port), "two tick boundaries in a row");
            }
        }
        let stats = sc.stats();
        assert!(stats[maps::SYN_ANSWERED] >= all.len() as u64, "{stats:?}");
        sc.remove_all().expect("remove");
    })
    .expect("namespace thread");
}

#[test]
#[ignore = "privileged: loads a tc program (CAP_BPF) and routes in a namespace"]
fn program_passes_the_engines_cookie_acks_and_drops_forged_ones_in_flood_mode() {
    kracauer_testbed::require_privileged("syncookie::acks");
    let (ns, tun_ifindex) = namespace("scacks");
    let tun = ns.name().to_owned();
    let _pins = Pins(pin_dir(&tun));
    ns.run(|| {
        let mut sc = Syncookie::load(&tun, tun_ifindex, 64).expect("load");
        sc.configure(config(true)).expect("configure");
        let client = Ipv4Addr::new(198, 51, 100, 9);
        let mut valid = 0;
        for (i, o) in Opts::all().iter().enumerate().step_by(7) {
            let port = 30_000 + i as u16;
            let c_isn = 77_000 + i as u32;
            let mut worker = engine(3, ROOT);
            let syn = packet(client, port, SERVICE, (0x02, c_isn, 0), &o.bytes(), &[]);
            let sent = engine_run(&mut worker, &syn);
            let synack = TcpPacket::new_checked(&sent[0][20..]).expect("tcp");
            let cookie = synack.seq_number().0;
            let mut opts = Vec::new();
            if let Some((tsval, _)) = tsval_of(&sent[0][20..]) {
                opts.extend([1, 1, 8, 10, 0, 0, 0, 9]);
                opts.extend(tsval.to_be_bytes());
            }
            let ack = |seq_off: u32, cookie_off: u32| {
                let seq = c_isn.wrapping_add(1 + seq_off);
                let ack = cookie.wrapping_add(1 + cookie_off);
                frame(&packet(client, port, SERVICE, (0x10, seq, ack), &opts, &[]))
            };
            // Forged: the cookie one off, and another tuple's ISN.
            for forged in [ack(0, 1), ack(5, 0)] {
                let (rc, _) = run(&sc, &forged);
                assert_eq!(rc, TC_ACT_SHOT, "forged ACK dropped: {o:?}");
            }
            let good = ack(0, 0);
            let (rc, data) = run(&sc, &good);
            assert_eq!(
                (rc, &data),
                (TC_ACT_UNSPEC, &good),
                "valid ACK passed on: {o:?}"
            );
            valid += 1;
            // The connection is known from now on: a later segment passes.
            let later = ack(100, 0);
            assert_eq!(run(&sc, &later), (TC_ACT_UNSPEC, later.clone()), "{o:?}");
        }
        let key = ScKey {
            client: client.octets(),
            service: SERVICE.octets(),
            client_port: 30_000u16.to_be_bytes(),
            service_port: 443u16.to_be_bytes(),
        };
        assert!(
            sc.flows.get(&key, 0).is_ok(),
            "the connection is remembered"
        );
        // Another root's cookie fails.
        let mut stranger = engine(4, [1, 2]);
        let syn = packet(client, 40_000, SERVICE, (0x02, 5, 0), &[], &[]);
        let cookie = TcpPacket::new_checked(&engine_run(&mut stranger, &syn)[0][20..])
            .expect("tcp")
            .seq_number()
            .0;
        let ack = frame(&packet(
            client,
            40_000,
            SERVICE,
            (0x10, 6, cookie + 1),
            &[],
            &[],
        ));
        assert_eq!(run(&sc, &ack).0, TC_ACT_SHOT);
        let stats = sc.stats();
        assert_eq!(stats[maps::COOKIE_VALID], valid, "{stats:?}");
        assert_eq!(stats[maps::COOKIE_INVALID], 2 * valid + 1, "{stats:?}");
        sc.remove_all().expect("remove");
    })
    .expect("namespace thread");
}

#[test]
#[ignore = "privileged: loads a tc program (CAP_BPF) and routes in a namespace"]
fn without_flood_mode_nothing_is_touched_and_known_connections_pass_once_it_is_on() {
    kracauer_testbed::require_privileged("syncookie::off");
    let (ns, tun_ifindex) = namespace("scoff");
    let tun = ns.name().to_owned();
    let _pins = Pins(pin_dir(&tun));
    ns.run(|| {
        let mut sc = Syncookie::load(&tun, tun_ifindex, 64).expect("load");
        sc.configure(config(false)).expect("configure");
        let client = Ipv4Addr::new(198, 51, 100, 11);
        let opts = Opts::all()[0].bytes();
        let syn = frame(&packet(client, 1111, SERVICE, (0x02, 9, 0), &opts, &[]));
        assert_eq!(
            run(&sc, &syn),
            (TC_ACT_UNSPEC, syn.clone()),
            "SYN to the TUN path"
        );
        let junk_ack = frame(&packet(client, 1111, SERVICE, (0x10, 4242, 4242), &[], &[]));
        let stranger = frame(&packet(client, 2222, SERVICE, (0x10, 4242, 4242), &[], &[]));
        assert_eq!(run(&sc, &stranger), (TC_ACT_UNSPEC, stranger.clone()));

        sc.configure(config(true)).expect("configure");
        // A connection whose SYN went to the TUN path before the flood goes on.
        assert_eq!(run(&sc, &junk_ack), (TC_ACT_UNSPEC, junk_ack.clone()));
        // One the program never saw is dropped.
        assert_eq!(run(&sc, &stranger).0, TC_ACT_SHOT);
        // Not a service (routed elsewhere), a SYN with data, RST: untouched even now.
        let elsewhere = frame(&packet(client, 3333, ELSEWHERE, (0x02, 9, 0), &opts, &[]));
        assert_eq!(run(&sc, &elsewhere), (TC_ACT_UNSPEC, elsewhere.clone()));
        let data = frame(&packet(client, 4444, SERVICE, (0x02, 9, 0), &opts, b"hi"));
        assert_eq!(run(&sc, &data), (TC_ACT_UNSPEC, data.clone()));
        let rst = frame(&packet(client, 5555, SERVICE, (0x04, 9, 0), &[], &[]));
        assert_eq!(run(&sc, &rst), (TC_ACT_UNSPEC, rst.clone()));
        let stats = sc.stats();
        assert_eq!(stats[maps::SYN_SEEN], 2, "{stats:?}");
        assert_eq!(stats[2], 1, "passed while off: {stats:?}");
        assert_eq!(stats[5], 1, "SYN with data: {stats:?}");
        sc.remove_all().expect("remove");
    })
    .expect("namespace thread");
}

#[test]
fn layout_version_is_the_headers() {
    let header = include_str!("../../../bpf/syncookie.h");
    assert!(header.contains(&format!("#define SYNCOOKIE_LAYOUT {LAYOUT}\n")));
    assert_eq!(maps::STATS.len(), 9);
    assert!(header.contains("SC_NO_ROUTE,"));
}

#[test]
fn the_root_without_the_fast_path_is_the_seeds() {
    let tun = Tun {
        name: "kracauer-none".into(),
        mtu: 1500,
        offload: false,
        workers: None,
        fastpath: FastpathMode::Off,
        fastpath_interfaces: None,
        restart_grace: std::time::Duration::ZERO,
    };
    assert_eq!(root(&tun, [5; 32]), crate::routes::cookie_root([5; 32]));
    assert_ne!(root(&tun, [5; 32]), root(&tun, [6; 32]));
}
