//! Tests of the steering program: offline, that the embedded object is the program the
//! loader looks for; as root, the loaded program against the reference in
//! `kracauer_core::steer` (under `BPF_PROG_TEST_RUN`), and steering on a real
//! multi-queue TUN device in a network namespace of its own.

use std::io::Write as _;
use std::net::{Ipv4Addr, Ipv6Addr, UdpSocket};
use std::os::fd::AsFd;

use kracauer_core::steer::{MAX_EXT_HEADERS, queue_hash, queue_of, steer_value};
use kracauer_core::wire::ip_proto;
use kracauer_testbed::Netns;
use rustix::event::{PollFd, PollFlags, Timespec};
use tun_rs::{DeviceBuilder, SyncDevice};

use super::samples::{BACKEND, CLIENT, Ext, SERVICE, embed, icmp, ipv4, ipv6, tcp, with_ext};
use super::*;

const KEY: SteerKey = SteerKey {
    k0: 0x0123_4567,
    k1: 0x89ab_cdef,
};
const OTHER_KEY: SteerKey = SteerKey {
    k0: 0xdead_beef,
    k1: 0x0bad_f00d,
};

/// Root is needed to load the program (CAP_BPF) and for the TUN test (a namespace).
/// These tests are `#[ignore]`d so that a plain `cargo test` lists them as ignored; run
/// with `--include-ignored` (as `.ci/run` does), they fail when they cannot run.
#[track_caller]
fn require_privileged(test: &str) {
    kracauer_testbed::require_privileged(&format!("steer::{test}"));
}

fn loaded(key: SteerKey) -> Steering {
    Steering::load(key).unwrap_or_else(|e| panic!("loading the steering program: {e}"))
}

fn run(s: &Steering, packet: &[u8]) -> u32 {
    s.test_run(packet)
        .unwrap_or_else(|e| panic!("test run on {packet:02x?}: {e}"))
}

/// A fixed stream of pseudo-random numbers (xorshift32).
fn xorshift(mut s: u32) -> impl Iterator<Item = u32> {
    std::iter::repeat_with(move || {
        s ^= s << 13;
        s ^= s >> 17;
        s ^= s << 5;
        s
    })
}

/// A client in 198.51.100.0/24 or 203.0.113.0/24 with any port, from one number.
fn client_of(r: u32) -> (Ipv4Addr, u16) {
    let net = if r & 1 == 0 {
        [198, 51, 100]
    } else {
        [203, 0, 113]
    };
    (
        Ipv4Addr::new(net[0], net[1], net[2], (r >> 1) as u8),
        (r >> 16) as u16,
    )
}

/// The four packets of one flow: client to service, backend to client, and an ICMP
/// error about each direction (fragmentation needed with 4 bytes of options in the
/// quoted header; time exceeded).
fn flow_packets(client: Ipv4Addr, port: u16) -> [Vec<u8>; 4] {
    let to_client = ipv4(6, SERVICE, client, &[1, 1, 1, 0], &tcp(443, port));
    let to_backend = ipv6(6, embed(client), BACKEND, &tcp(port, 443));
    let router = Ipv4Addr::new(203, 0, 113, 1);
    let router6 = Ipv6Addr::new(0x2001, 0xdb8, 1, 0, 0, 0, 0, 1);
    [
        ipv4(6, client, SERVICE, &[], &tcp(port, 443)),
        ipv6(6, BACKEND, embed(client), &tcp(443, port)),
        ipv4(
            1,
            router,
            SERVICE,
            &[],
            &icmp(3, 4, [0, 0, 5, 0x78], &to_client),
        ),
        ipv6(58, router6, embed(client), &icmp(3, 0, [0; 4], &to_backend)),
    ]
}

/// What the reference documents for a case of [`every_case`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Want {
    /// The flow's client address and port 40000.
    Flow,
    /// The client address with port 0.
    AddressOnly,
    /// No client: 0.
    Zero,
}

/// One packet of every case of `client_of_packet`, the flow's own packets first, and
/// what the reference says of each.
fn every_case() -> Vec<(Vec<u8>, Want)> {
    use Want::*;
    let mut all: Vec<(Vec<u8>, Want)> = flow_packets(CLIENT, 40000)
        .into_iter()
        .map(|p| (p, Flow))
        .collect();
    all.push((ipv4(17, CLIENT, SERVICE, &[], &tcp(40000, 443)[..8]), Flow));
    all.push((
        ipv6(17, BACKEND, embed(CLIENT), &tcp(443, 40000)[..8]),
        Flow,
    ));
    let options = [0x01, 0x01, 0x01, 0x01, 0x01, 0x01, 0x01, 0x00];
    all.push((ipv4(6, CLIENT, SERVICE, &options, &tcp(40000, 443)), Flow));
    let echo = icmp(8, 0, [0, 1, 0, 1], b"ping");
    all.push((ipv4(1, CLIENT, SERVICE, &[], &echo), AddressOnly));
    let echo6 = icmp(128, 0, [0, 1, 0, 1], b"ping");
    all.push((ipv6(58, BACKEND, embed(CLIENT), &echo6), AddressOnly));
    let mut fragment = ipv4(6, CLIENT, SERVICE, &[], &tcp(40000, 443));
    fragment[6..8].copy_from_slice(&[0x20, 0x00]);
    all.push((fragment, AddressOnly));
    let mut unknown = ipv4(6, CLIENT, SERVICE, &[], &tcp(40000, 443));
    unknown[0] = 0x55;
    all.push((unknown, Zero));
    all.extend(extension_cases());
    all
}

/// The backend's packets behind IPv6 extension headers: every walked kind, the longest
/// chain the engine accepts and one longer, first and later fragments, ESP, an ICMPv6
/// error, and chains that run past the packet.
fn extension_cases() -> Vec<(Vec<u8>, Want)> {
    use Want::*;
    let seg = ipv6(6, BACKEND, embed(CLIENT), &tcp(443, 40000));
    let mut all = Vec::new();
    for chain in [
        &[Ext::HOP][..],
        &[Ext::ROUTING],
        &[Ext::DEST],
        &[Ext::Auth(4)],
        &[Ext::Fragment(0)],
        &[
            Ext::HOP,
            Ext::DEST,
            Ext::ROUTING,
            Ext::Auth(1),
            Ext::Fragment(0),
            Ext::DEST,
        ],
        &[Ext::Options(ip_proto::IPV6_OPTS, 255), Ext::Auth(255)],
        &[Ext::DEST; MAX_EXT_HEADERS],
    ] {
        all.push((with_ext(&seg, chain), Flow));
    }
    all.push((
        with_ext(&seg, &[Ext::DEST; MAX_EXT_HEADERS + 1]),
        AddressOnly,
    ));
    all.push((with_ext(&seg, &[Ext::HOP, Ext::Fragment(185)]), AddressOnly));
    let mut esp = with_ext(&seg, &[Ext::HOP]);
    esp[40] = ip_proto::ESP;
    all.push((esp, AddressOnly));
    let to_backend = ipv6(6, embed(CLIENT), BACKEND, &tcp(40000, 443));
    let router6 = Ipv6Addr::new(0x2001, 0xdb8, 1, 0, 0, 0, 0, 1);
    let error = ipv6(58, router6, embed(CLIENT), &icmp(1, 4, [0; 4], &to_backend));
    all.push((with_ext(&error, &[Ext::HOP, Ext::DEST]), Flow));
    // A length that runs past the end, and a header cut in two.
    let mut overlong = with_ext(&seg, &[Ext::HOP, Ext::DEST]);
    overlong[49] = 200;
    all.push((overlong, Zero));
    let cut = with_ext(&seg, &[Ext::HOP, Ext::Fragment(0)]);
    all.push((cut[..51].to_vec(), Zero));
    all
}

/// Offline: the committed object has the socket-filter program the loader asks for,
/// and the key's globals in read-only data, where the loader writes the key.
#[test]
fn the_embedded_object_holds_the_steering_program_and_its_key_globals() {
    let mut object = aya_obj::Object::parse(OBJECT).expect("the committed object parses");
    let program = object.programs.get(PROGRAM).expect("the steering program");
    assert!(
        matches!(program.section, aya_obj::ProgramSection::SocketFilter),
        "{:?}",
        program.section
    );
    let (k0, k1) = (KEY.k0.to_ne_bytes(), KEY.k1.to_ne_bytes());
    let globals = [
        (KEY_GLOBALS[0], (&k0[..], true)),
        (KEY_GLOBALS[1], (&k1[..], true)),
    ];
    object
        .patch_map_data(globals.into_iter().collect())
        .expect("both globals exist, 4 bytes each");
    let rodata = object.maps.get(".rodata").expect("read-only data");
    let mut key = k0.to_vec();
    key.extend_from_slice(&k1);
    assert_eq!(rodata.data(), &key[..], "the key fills the read-only data");
}

#[test]
#[ignore = "privileged: loads a BPF program (root, CAP_BPF); run with --include-ignored"]
fn the_program_computes_the_reference_on_the_sample_flow() {
    require_privileged("the_program_computes_the_reference_on_the_sample_flow");
    for key in [KEY, OTHER_KEY] {
        let s = loaded(key);
        s.self_check().expect("kernel and reference agree");
        assert_eq!(s.key(), key);
        let want = queue_hash(CLIENT, 40000, key);
        for (i, p) in samples::packets().iter().enumerate() {
            assert_eq!(run(&s, p), want, "{p:02x?}");
            // The errors (2, 3 and 5) quote 8 bytes of TCP: 7 fewer cuts into the ports,
            // and the program ends early with 0. The others keep their ports.
            let short = &p[..p.len() - 7];
            let want_short = if matches!(i, 0 | 1 | 4) { want } else { 0 };
            assert_eq!(run(&s, short), want_short, "{short:02x?}");
        }
    }
}

#[test]
#[ignore = "privileged: loads a BPF program (root, CAP_BPF); run with --include-ignored"]
fn every_truncation_of_every_case_agrees_with_the_reference() {
    require_privileged("every_truncation_of_every_case_agrees_with_the_reference");
    let s = loaded(KEY);
    for (p, _) in every_case() {
        for len in 0..=p.len() {
            let cut = &p[..len];
            assert_eq!(run(&s, cut), steer_value(cut, KEY), "{cut:02x?}");
        }
    }
}

#[test]
#[ignore = "privileged: loads a BPF program (root, CAP_BPF); run with --include-ignored"]
fn cases_give_the_values_the_reference_documents() {
    require_privileged("cases_give_the_values_the_reference_documents");
    let s = loaded(KEY);
    for (p, want) in every_case() {
        let value = match want {
            Want::Flow => queue_hash(CLIENT, 40000, KEY),
            Want::AddressOnly => queue_hash(CLIENT, 0, KEY),
            Want::Zero => 0,
        };
        assert_eq!(steer_value(&p, KEY), value, "the reference on {p:02x?}");
        assert_eq!(run(&s, &p), value, "the program on {p:02x?}");
    }
}

#[test]
#[ignore = "privileged: loads a BPF program (root, CAP_BPF); run with --include-ignored"]
fn random_flows_steer_alike_both_ways_and_spread() {
    require_privileged("random_flows_steer_alike_both_ways_and_spread");
    for (key, seed) in [(KEY, 0x2545_f491), (OTHER_KEY, 0x9e37_79b9)] {
        let s = loaded(key);
        let mut on2 = [0usize; 2];
        let mut on4 = [0usize; 4];
        for r in xorshift(seed).take(1000) {
            let (client, port) = client_of(r);
            let want = queue_hash(client, port, key);
            for p in flow_packets(client, port) {
                assert_eq!(run(&s, &p), want, "{client}:{port} {p:02x?}");
            }
            on2[usize::from(queue_of(want, 2))] += 1;
            on4[usize::from(queue_of(want, 4))] += 1;
        }
        assert!(on2.iter().all(|&n| n > 100), "2 queues: {on2:?}");
        assert!(on4.iter().all(|&n| n > 100), "4 queues: {on4:?}");
    }
}

#[test]
#[ignore = "privileged: loads a BPF program (root, CAP_BPF); run with --include-ignored"]
fn random_bytes_agree_with_the_reference() {
    require_privileged("random_bytes_agree_with_the_reference");
    let s = loaded(KEY);
    let mut rng = xorshift(0x1234_5678);
    let mut next = move || rng.next().unwrap_or(0);
    for _ in 0..3000 {
        let len = (next() % 120) as usize;
        let mut p: Vec<u8> = (0..len).map(|_| next() as u8).collect();
        // Mostly IPv4 or IPv6, mostly a protocol the program looks into.
        if let Some(first) = p.first_mut() {
            *first = match next() % 8 {
                0..=3 => 0x40 | (*first & 0x0f),
                4..=6 => 0x60 | (*first & 0x0f),
                _ => *first,
            };
        }
        let proto = [6u8, 17, 1, 58][(next() % 4) as usize];
        let ext = [0u8, 43, 44, 60, 51, 6, 17, 58][(next() % 8) as usize];
        match p.first().map(|b| b >> 4) {
            Some(4) if len > 9 => {
                p[9] = proto;
                // Mostly not a fragment; mostly an ICMP error type.
                if next() % 4 != 0 {
                    p[6] &= 0x80;
                    p[7] = 0;
                }
                let ty = usize::from(p[0] & 0x0f) * 4;
                if let Some(t) = p.get_mut(ty) {
                    *t = [3, 4, 5, 11, 12, 8][(next() % 6) as usize];
                }
            }
            Some(6) if len > 6 => {
                // Often an extension header, whose Next Header is again one, or an upper
                // layer; its length mostly small enough to stay in the packet.
                p[6] = if next() % 2 == 0 { proto } else { ext };
                if let Some(h) = p.get_mut(40..42) {
                    h[0] = [0u8, 60, 44, 51, 6, 17, 58, 43][(next() % 8) as usize];
                    h[1] &= 0x03;
                }
            }
            _ => {}
        }
        assert_eq!(run(&s, &p), steer_value(&p, KEY), "{p:02x?}");
    }
}

/// Random chains of up to ten extension headers of every walked kind and random
/// lengths before the backend's segment (or its ICMPv6 error), whole and cut anywhere:
/// the program agrees with the reference, and a whole chain the engine would walk keeps
/// the flow's ports.
#[test]
#[ignore = "privileged: loads a BPF program (root, CAP_BPF); run with --include-ignored"]
fn random_extension_chains_agree_with_the_reference() {
    require_privileged("random_extension_chains_agree_with_the_reference");
    let s = loaded(OTHER_KEY);
    let mut rng = xorshift(0x0dd_ba11);
    let mut next = move || rng.next().unwrap_or(0);
    let seg = ipv6(6, BACKEND, embed(CLIENT), &tcp(443, 40000));
    let to_backend = ipv6(6, embed(CLIENT), BACKEND, &tcp(40000, 443));
    let router6 = Ipv6Addr::new(0x2001, 0xdb8, 1, 0, 0, 0, 0, 1);
    let error = ipv6(58, router6, embed(CLIENT), &icmp(3, 0, [0; 4], &to_backend));
    let flow = queue_hash(CLIENT, 40000, OTHER_KEY);
    for _ in 0..400 {
        let chain: Vec<Ext> = (0..next() % 11)
            .map(|_| {
                let units = (next() % 4) as u8;
                match next() % 5 {
                    0 => Ext::Options(ip_proto::HOPOPT, units),
                    1 => Ext::Options(ip_proto::IPV6_ROUTE, units),
                    2 => Ext::Options(ip_proto::IPV6_OPTS, units),
                    3 => Ext::Auth(units),
                    _ => Ext::Fragment(if next() % 4 == 0 { 1 } else { 0 }),
                }
            })
            .collect();
        let base = if next() % 3 == 0 { &error } else { &seg };
        let p = with_ext(base, &chain);
        let later_fragment = chain.iter().any(|h| matches!(h, Ext::Fragment(1)));
        if chain.len() <= MAX_EXT_HEADERS && !later_fragment {
            assert_eq!(run(&s, &p), flow, "{chain:?}: {p:02x?}");
        }
        for len in (0..=p.len()).rev().step_by(1 + (next() % 5) as usize) {
            let cut = &p[..len];
            assert_eq!(
                run(&s, cut),
                steer_value(cut, OTHER_KEY),
                "{chain:?}: {cut:02x?}"
            );
        }
    }
}

/// Deletes the namespace when the test ends, passed or not.
struct NetnsGuard(Netns);

impl Drop for NetnsGuard {
    fn drop(&mut self) {
        if let Err(e) = self.0.delete() {
            let _ = writeln!(io::stderr(), "cannot delete {}: {e}", self.0.name());
        }
    }
}

/// Reads queues until one yields a packet ending with `marker`, and returns that queue
/// and packet; other packets (the kernel's own IPv6 chatter) are skipped.
fn receive(queues: &[SyncDevice], marker: &[u8]) -> (usize, Vec<u8>) {
    let mut buf = [0u8; 2048];
    // A bound on waiting for a packet already sent, not a timing assertion.
    for _ in 0..200 {
        let mut fds: Vec<PollFd<'_>> = queues
            .iter()
            .map(|q| PollFd::new(q, PollFlags::IN))
            .collect();
        let wait = Timespec {
            tv_sec: 0,
            tv_nsec: 10_000_000,
        };
        rustix::event::poll(&mut fds, Some(&wait)).expect("poll");
        for (i, q) in queues.iter().enumerate() {
            while let Ok(n) = q.recv(&mut buf) {
                if buf[..n].ends_with(marker) {
                    return (i, buf[..n].to_vec());
                }
            }
        }
    }
    panic!("no queue received the packet marked {marker:02x?}");
}

/// The kernel hands each packet to the queue that [`queue_of`] names for the program's
/// value: IPv4 from the host to "clients" and IPv6 from the host to embedded clients,
/// plain and behind extension headers (those on their flow's queue), through a
/// three-queue TUN device (three is not a power of two, so the remainder is really
/// taken).
#[test]
#[ignore = "privileged: a network namespace, a multi-queue TUN and a BPF program (root); run with --include-ignored"]
fn a_multi_queue_tun_delivers_each_flow_to_the_queue_the_reference_names() {
    let test = "a_multi_queue_tun_delivers_each_flow_to_the_queue_the_reference_names";
    require_privileged(test);
    let name = format!("kstr-{}", std::process::id());
    let ns = NetnsGuard(Netns::create(&name).expect("create the namespace"));
    let ns = &ns.0;
    ns.run(|| {
        let first = DeviceBuilder::new()
            .name("kstr0")
            .mtu(1500)
            .packet_information(false)
            .multi_queue(true)
            .enable(false)
            .build_sync()
            .expect("create the TUN device");
        let second = first.try_clone().expect("second queue");
        let third = first.try_clone().expect("third queue");
        let queues = [first, second, third];
        for q in &queues {
            q.set_nonblocking(true).expect("non-blocking");
        }
        let steering = loaded(KEY);
        steering
            .attach(queues[2].as_fd())
            .expect("attach to the device through any queue");
        ns.ip(["addr", "add", "198.51.100.1/24", "dev", "kstr0"])
            .expect("IPv4 address");
        ns.ip(["addr", "add", "2001:db8:64::1/96", "dev", "kstr0", "nodad"])
            .expect("IPv6 address");
        ns.ip(["link", "set", "kstr0", "up"]).expect("up");
        ns.ip(["route", "add", "203.0.113.0/24", "dev", "kstr0"])
            .expect("IPv4 route");

        let mut count = [0usize; 3];
        let v6 = UdpSocket::bind("[2001:db8:64::1]:443").expect("IPv6 socket");
        // IPv6 with extension headers, as a backend's router would forward them: written
        // whole (IPPROTO_RAW implies the header is included) and routed into the TUN.
        let raw = socket2::Socket::new(
            socket2::Domain::IPV6,
            socket2::Type::RAW,
            Some(socket2::Protocol::from(libc::IPPROTO_RAW)),
        )
        .expect("raw IPv6 socket");
        let chains = [
            &[Ext::HOP][..],
            &[Ext::DEST, Ext::ROUTING],
            &[Ext::HOP, Ext::Auth(4), Ext::Fragment(0), Ext::DEST],
        ];
        for (i, r) in xorshift(0x5eed_5eed).take(90).enumerate() {
            let marker = [b'k', b's', i as u8];
            let (client, port) = client_of(r);
            let port = port.max(1);
            let (queue, bytes) = match i % 3 {
                0 => {
                    // Client to service: the host's address with our port is the "client".
                    let s = UdpSocket::bind(("198.51.100.1", port)).expect("IPv4 socket");
                    s.send_to(&marker, (client, 443)).expect("send IPv4");
                    receive(&queues, &marker)
                }
                1 => {
                    // Backend to client: the embedded destination and its port.
                    v6.send_to(&marker, (embed(client), port))
                        .expect("send IPv6");
                    receive(&queues, &marker)
                }
                _ => {
                    // The same behind extension headers: the flow's queue all the same.
                    let mut udp = tcp(443, port)[..8].to_vec();
                    udp[4..6].copy_from_slice(&(8 + marker.len() as u16).to_be_bytes());
                    udp.extend_from_slice(&marker);
                    let plain = ipv6(17, BACKEND, embed(client), &udp);
                    let packet = with_ext(&plain, chains[i / 3 % chains.len()]);
                    let to = std::net::SocketAddrV6::new(embed(client), 0, 0, 0);
                    raw.send_to(&packet, &to.into()).expect("send raw IPv6");
                    let (queue, bytes) = receive(&queues, &marker);
                    assert_eq!(bytes, packet, "the kernel passed it on as written");
                    let flow = queue_of(queue_hash(client, port, KEY), 3);
                    assert_eq!(queue, usize::from(flow), "packet {i}: {bytes:02x?}");
                    (queue, bytes)
                }
            };
            let want = queue_of(steer_value(&bytes, KEY), 3);
            assert_eq!(queue, usize::from(want), "packet {i}: {bytes:02x?}");
            count[queue] += 1;
        }
        assert!(count.iter().all(|&n| n >= 10), "{count:?}");
        Steering::detach(queues[0].as_fd()).expect("detach");
    })
    .expect("run in the namespace");
}
