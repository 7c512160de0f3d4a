//! The differential test of the fast path program, in the kernel: `BPF_PROG_TEST_RUN` on
//! thousands of generated segments, each compared byte for byte with what the TUN path
//! makes of it (kracauer_core's `Splice::to_backend`/`to_client` followed by
//! `xlat::ipv4_to_ipv6`/`ipv6_to_ipv4`, the hop limit decremented once). A segment the
//! program must leave to the TUN path (the model below says which) must come back
//! untouched with `TC_ACT_OK`; every other one must be redirected, translated exactly.
//!
//! The program routes each packet (`bpf_fib_lookup`), so the runs happen in a namespace
//! of their own with a veth standing in for the TUN device and routes for the test addresses
//! over another veth (MTU 1500; one IPv6 route with MTU 1280).
//!
//! What `BPF_PROG_TEST_RUN` cannot show: its skbs have no checksum state
//! (`CHECKSUM_NONE`), so only full checksums are compared here; partial ones
//! (`CHECKSUM_PARTIAL`, GSO from local stacks) are the kernel helpers' job and are
//! exercised by the end-to-end tests.

use std::net::{Ipv4Addr, Ipv6Addr, SocketAddrV4, SocketAddrV6};

use kracauer_core::addr::Prefix96;
use kracauer_core::tcp::splice::Splice;
use kracauer_core::wire::tcp::{TcpOption, TcpPacket};
use kracauer_core::wire::{ChecksumForm, ipv4::Ipv4Packet};
use kracauer_core::xlat::{self, HopLimit, V4Rewrite, V6Rewrite};
use kracauer_testbed::OwnedNetns;

use super::syscalls::{TestRun, test_run};
use super::*;

const TC_ACT_OK: u32 = 0;
const TC_ACT_REDIRECT: u32 = 7;
const SERVICE: Ipv4Addr = Ipv4Addr::new(203, 0, 113, 10);
const BACKEND: Ipv6Addr = Ipv6Addr::new(0x2001, 0xdb8, 1, 0, 0, 0, 0, 2);
/// Reached over a route with MTU 1280.
const SMALL_BACKEND: Ipv6Addr = Ipv6Addr::new(0x2001, 0xdb8, 0xffff, 0, 0, 0, 0, 2);
const EGRESS_MTU: usize = 1500;
const SMALL_MTU: usize = 1280;

fn prefix() -> Prefix96 {
    "2001:db8:64::/96".parse().expect("prefix")
}

/// SplitMix64: a fixed stream, so a failure is reproducible.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let z = (self.0 ^ (self.0 >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        let z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }

    /// A u32, one time in three an edge of the space (sequence wrap).
    fn u32(&mut self) -> u32 {
        const EDGES: [u32; 6] = [0, 1, u32::MAX, u32::MAX - 1, 0x8000_0000, 0x7fff_ffff];
        match self.below(3) {
            0 => EDGES[self.below(EDGES.len())],
            _ => self.next() as u32,
        }
    }

    fn one_in(&mut self, n: usize) -> bool {
        self.below(n) == 0
    }

    fn splice(&mut self) -> Splice {
        let ts_offset = [None, Some(0), Some(u32::MAX), Some(self.u32())][self.below(4)];
        let ws = self.below(15) as u8;
        let expand_client_window = [None, None, Some(ws)][self.below(3)];
        Splice {
            delta: self.u32(),
            ts_offset,
            backend_ws: self.below(15) as u8,
            client_ws: self.below(15) as u8,
            expand_client_window,
        }
    }

    /// TCP options: timestamps or not, 0–4 SACK blocks, fillers (MSS, WS, SACKok,
    /// unknown kinds, NOPs) anywhere, EOL or NOP padding, and now and then what the
    /// program leaves alone (a second TS or SACK, a bad length, junk after EOL).
    fn options(&mut self) -> Vec<u8> {
        let mut opts: Vec<Vec<u8>> = Vec::new();
        let ts = self.one_in(2);
        if ts {
            let mut o = vec![8, 10];
            o.extend(self.u32().to_be_bytes());
            o.extend(self.u32().to_be_bytes());
            opts.push(o);
        }
        let blocks = self.below(if ts { 4 } else { 5 });
        if blocks > 0 {
            let mut o = vec![5, 2 + 8 * blocks as u8];
            for _ in 0..blocks * 2 {
                o.extend(self.u32().to_be_bytes());
            }
            opts.push(o);
        }
        let fillers: [&[u8]; 9] = [
            &[1],
            &[1],
            &[2, 4, 5, 0xb4],
            &[3, 3, 9],
            &[4, 2],
            &[30, 4, 0x20, 0x81],
            &[254, 2],
            &[8, 6, 1, 2, 3, 4],              // TS of a wrong length: skipped
            &[8, 10, 0, 0, 0, 1, 0, 0, 0, 2], // a second TS: the TUN path's
        ];
        for _ in 0..self.below(6) {
            let f = fillers[self.below(fillers.len())].to_vec();
            let at = self.below(opts.len() + 1);
            opts.insert(at, f);
        }
        if self.one_in(40) {
            opts.push(vec![30, 1]); // length below 2: an error
        }
        let mut b: Vec<u8> = opts.concat();
        while b.len() > 40 {
            // Too long for the header: drop options from the end until it fits.
            opts.pop();
            b = opts.concat();
        }
        match self.below(4) {
            0 if b.len() < 40 => {
                b.push(0);
                if self.one_in(3) {
                    b.extend([8, 10, 9, 9, 9, 9]); // junk after EOL is no option
                }
            }
            1 => b.resize(b.len().next_multiple_of(4), 1),
            _ => {}
        }
        b.truncate(40);
        b.resize(b.len().next_multiple_of(4), 0);
        b
    }

    fn flags(&mut self) -> u8 {
        const ACK: u8 = 0x10;
        match self.below(20) {
            0 => 0x02,       // SYN
            1 => ACK | 0x01, // FIN
            2 => ACK | 0x04, // RST
            3 => 0x08,       // PSH without ACK
            4 => ACK | 0x20, // URG
            5..=12 => ACK | 0x08,
            _ => ACK,
        }
    }

    /// A TCP segment with a payload of `payload` bytes (checksum left 0).
    fn segment(&mut self, ports: (u16, u16), payload: usize) -> Vec<u8> {
        let opts = self.options();
        let mut b = Vec::with_capacity(20 + opts.len() + payload);
        b.extend(ports.0.to_be_bytes());
        b.extend(ports.1.to_be_bytes());
        b.extend(self.u32().to_be_bytes());
        b.extend(self.u32().to_be_bytes());
        b.push((((20 + opts.len()) / 4) << 4) as u8);
        b.push(self.flags());
        b.extend((self.next() as u16).to_be_bytes());
        b.extend([0, 0, 0x0b, 0xad]);
        b.extend(opts);
        b.extend((0..payload).map(|_| self.next() as u8));
        b
    }

    fn payload_len(&mut self) -> usize {
        match self.below(10) {
            0 => 1400 + self.below(200),  // around the MTU, over it once translated
            1 => 2000 + self.below(1400), // a GSO super-packet when gso_size is set
            2..=4 => 0,
            _ => self.below(100),
        }
    }
}

/// One case: a flow's splice and addresses, and the packet to run.
struct Case {
    addrs: FlowAddrs,
    splice: Splice,
    frame: Vec<u8>,
    gso_size: u32,
    /// The IP packet (without Ethernet header or padding).
    ip: Vec<u8>,
}

fn ipv4_header(src: Ipv4Addr, dst: Ipv4Addr, total: usize, ttl: u8, tos: u8) -> Vec<u8> {
    let mut h = vec![0x45, tos];
    h.extend((total as u16).to_be_bytes());
    h.extend([0x12, 0x34, 0x40, 0, ttl, 6, 0, 0]);
    h.extend(src.octets());
    h.extend(dst.octets());
    h
}

fn ipv6_header(src: &Ipv6Addr, dst: &Ipv6Addr, payload: usize, hop: u8, tc: u8) -> Vec<u8> {
    let mut h = vec![0x60 | (tc >> 4), (tc << 4) | 0x0a, 0xbc, 0xde];
    h.extend((payload as u16).to_be_bytes());
    h.extend([6, hop]);
    h.extend(src.octets());
    h.extend(dst.octets());
    h
}

fn frame(ethertype: u16, ip: &[u8], pad: bool) -> Vec<u8> {
    // Zero MACs: the test run's device is loopback, whose address is zero, so the
    // frame is PACKET_HOST.
    let mut f = vec![0u8; 12];
    f.extend(ethertype.to_be_bytes());
    f.extend(ip);
    if pad {
        f.resize(f.len().max(60), 0);
        f.extend([0xee; 4]);
    }
    f
}

fn addrs(r: &mut Rng) -> FlowAddrs {
    let client = Ipv4Addr::new(198, 51, 100, 1 + r.below(250) as u8);
    let backend = if r.one_in(8) { SMALL_BACKEND } else { BACKEND };
    FlowAddrs {
        client: SocketAddrV4::new(client, 1024 + r.below(60000) as u16),
        service: SocketAddrV4::new(SERVICE, [443, 80][r.below(2)]),
        client6: prefix().embed(client),
        backend: SocketAddrV6::new(backend, [443, 8443][r.below(2)], 0, 0),
    }
}

fn client_case(r: &mut Rng) -> Case {
    let (addrs, splice) = (addrs(r), r.splice());
    let payload = r.payload_len();
    let ports = (addrs.client.port(), addrs.service.port());
    let mut tcp = r.segment(ports, payload);
    TcpPacket::new_unchecked(&mut tcp[..]).fill_checksum_v4(*addrs.client.ip(), SERVICE);
    let ttl = [1, 2, 64, 255][r.below(4)];
    let mut ip = ipv4_header(
        *addrs.client.ip(),
        SERVICE,
        20 + tcp.len(),
        ttl,
        r.next() as u8,
    );
    if r.one_in(30) {
        ip[6] |= 0x20; // MF: a fragment
    }
    Ipv4Packet::new_unchecked(&mut ip[..]).fill_checksum();
    ip.extend(tcp);
    let gso_size = if payload > 1800 {
        500 + r.below(1000) as u32
    } else {
        0
    };
    let pad = r.one_in(3);
    Case {
        addrs,
        splice,
        frame: frame(0x0800, &ip, pad),
        gso_size,
        ip,
    }
}

fn backend_case(r: &mut Rng) -> Case {
    let (addrs, splice) = (addrs(r), r.splice());
    let payload = r.payload_len();
    let ports = (addrs.backend.port(), addrs.client.port());
    let mut tcp = r.segment(ports, payload);
    let (src, dst) = (*addrs.backend.ip(), addrs.client6);
    TcpPacket::new_unchecked(&mut tcp[..]).fill_checksum_v6(&src, &dst);
    let hop = [1, 2, 64, 255][r.below(4)];
    let mut ip = ipv6_header(&src, &dst, tcp.len(), hop, r.next() as u8);
    ip.extend(tcp);
    let gso_size = if payload > 1800 {
        500 + r.below(1000) as u32
    } else {
        0
    };
    let pad = r.one_in(3);
    Case {
        addrs,
        splice,
        frame: frame(0x86dd, &ip, pad),
        gso_size,
        ip,
    }
}

/// Whether the program should take the segment (else: the TUN path's, untouched).
fn fast(case: &Case, to_backend: bool) -> bool {
    let (l3, ttl) = if to_backend {
        (20, case.ip[8])
    } else {
        (40, case.ip[7])
    };
    let fragment = to_backend && case.ip[6] & 0x3f != 0;
    let tcp = &case.ip[l3..];
    let flags = tcp[13];
    let doff = usize::from(tcp[12] >> 4) * 4;
    if fragment || ttl <= 1 || flags & 0x10 == 0 || flags & 0x07 != 0 {
        return false;
    }
    let Ok(seg) = TcpPacket::new_checked(tcp) else {
        return false;
    };
    let (mut ts, mut sack) = (0, 0);
    for o in seg.options().options() {
        match o {
            Err(_) => return false,
            Ok(TcpOption::Timestamps { .. }) => ts += 1,
            Ok(TcpOption::Sack(_)) => sack += 1,
            Ok(_) => {}
        }
    }
    let out_l3 = if to_backend { 40 } else { 20 };
    let segment = match case.gso_size {
        0 => out_l3 + tcp.len(),
        g => out_l3 + doff + g as usize,
    };
    let mtu = if to_backend && *case.addrs.backend.ip() == SMALL_BACKEND {
        SMALL_MTU
    } else {
        EGRESS_MTU
    };
    ts <= 1 && sack <= 1 && segment <= mtu
}

/// The entry after the program passed the case's segment on to the TUN path: a FIN or
/// RST (in a packet whose IP header it reads) is recorded, nothing else changes.
fn marked(case: &Case, to_backend: bool, mut entry: FlowEntry) -> FlowEntry {
    let (l3, ttl) = if to_backend {
        (20, case.ip[8])
    } else {
        (40, case.ip[7])
    };
    let fragment = to_backend && case.ip[6] & 0x3f != 0;
    if fragment || ttl <= 1 {
        return entry;
    }
    let flags = case.ip[l3 + 13];
    if flags & 0x04 != 0 {
        entry.reset = 1;
    } else if flags & 0x01 != 0 {
        if to_backend {
            entry.client_fin = 1;
        } else {
            entry.backend_fin = 1;
        }
    }
    entry
}

/// What the TUN path makes of the case's packet: the splice's rewrite, then the
/// translation with the hop limit decremented once.
fn reference(case: &Case, to_backend: bool, ident: u16) -> Vec<u8> {
    let opts = xlat::Options {
        checksum: ChecksumForm::Full,
        hop_limit: HopLimit::Decrement,
    };
    let a = &case.addrs;
    if to_backend {
        let mut buf = vec![0u8; 20];
        buf.extend(&case.ip);
        let mut tcp = TcpPacket::new_checked(&mut buf[40..]).expect("segment");
        case.splice
            .to_backend(&mut tcp, ChecksumForm::Full)
            .expect("to_backend");
        let to = V6Rewrite {
            src: a.client6,
            dst: *a.backend.ip(),
            src_port: a.client.port(),
            dst_port: a.backend.port(),
        };
        let range = xlat::ipv4_to_ipv6(&mut buf, 20, &to, opts).expect("ipv4_to_ipv6");
        buf[range].to_vec()
    } else {
        let mut buf = case.ip.clone();
        let mut tcp = TcpPacket::new_checked(&mut buf[40..]).expect("segment");
        case.splice
            .to_client(&mut tcp, ChecksumForm::Full)
            .expect("to_client");
        let to = V4Rewrite {
            src: SERVICE,
            dst: *a.client.ip(),
            src_port: a.service.port(),
            dst_port: a.client.port(),
            identification: ident,
        };
        let range = xlat::ipv6_to_ipv4(&mut buf, 0, &to, opts).expect("ipv6_to_ipv4");
        buf[range].to_vec()
    }
}

/// A namespace with a veth as "TUN", another as egress and routes for the test addresses.
fn namespace(tag: &str) -> (OwnedNetns, u32) {
    let ns = OwnedNetns::create(tag).expect("namespace");
    let ip = |args: &[&str]| ns.ip(args).unwrap_or_else(|e| panic!("ip {args:?}: {e}"));
    ns.sysctl("net.ipv4.ip_forward", "1").expect("sysctl");
    ns.sysctl("net.ipv6.conf.all.forwarding", "1")
        .expect("sysctl");
    for (dev, peer) in [("fptun", "fptunp"), ("fpout", "fpoutp")] {
        ip(&["link", "add", dev, "type", "veth", "peer", "name", peer]);
        ip(&["link", "set", dev, "up"]);
        ip(&["link", "set", peer, "up"]);
    }
    ip(&["route", "add", "198.51.100.0/24", "dev", "fpout"]);
    ip(&["-6", "route", "add", "2001:db8:1::/48", "dev", "fpout"]);
    // Locked: bpf_fib_lookup reads an IPv6 route MTU only when it is locked (a
    // learnt path MTU and the device MTU always).
    ip(&[
        "-6",
        "route",
        "add",
        "2001:db8:ffff::/48",
        "dev",
        "fpout",
        "mtu",
        "lock",
        "1280",
    ]);
    let index = ns.read("/sys/class/net/fptun/ifindex").expect("ifindex");
    (ns, index.parse().expect("ifindex"))
}

/// Removes the test's pins however the test ends.
struct Pins(PathBuf);

impl Drop for Pins {
    fn drop(&mut self) {
        let _ = remove_pins(&self.0);
    }
}

fn run_case(fp: &mut Fastpath, case: &Case, to_backend: bool) -> (bool, TestRun) {
    fp.install(&case.addrs, &case.splice).expect("install");
    let before = fp.entry(&case.addrs).expect("entry");
    let fd = fp.program_fd().expect("program");
    let segs = if case.gso_size == 0 { 0 } else { 3 };
    let got = test_run(fd, &case.frame, case.gso_size, segs).expect("test run");
    let want_fast = fast(case, to_backend);
    let ctx = format!(
        "to_backend {to_backend} {:?} gso {} ip {:02x?}",
        case.splice, case.gso_size, case.ip
    );
    if !want_fast {
        assert_eq!(got.retval, TC_ACT_OK, "should pass: {ctx}");
        assert_eq!(got.data, case.frame, "passed but changed: {ctx}");
        assert_eq!(
            fp.entry(&case.addrs),
            Some(marked(case, to_backend, before)),
            "counted: {ctx}"
        );
        return (false, got);
    }
    assert_eq!(got.retval, TC_ACT_REDIRECT, "should redirect: {ctx}");
    let ident = before.packets[1] as u16;
    let want = reference(case, to_backend, ident);
    let ethertype: u16 = if to_backend { 0x86dd } else { 0x0800 };
    assert_eq!(got.data[12..14], ethertype.to_be_bytes(), "{ctx}");
    assert_eq!(got.data[14..], want[..], "{ctx}");
    let after = fp.entry(&case.addrs).expect("entry");
    let dir = usize::from(!to_backend);
    let l3 = if to_backend { 20 } else { 40 };
    let payload = case.ip.len() - l3 - usize::from(case.ip[l3 + 12] >> 4) * 4;
    assert_eq!(after.packets[dir], before.packets[dir] + 1, "{ctx}");
    assert_eq!(
        after.bytes[dir],
        before.bytes[dir] + payload as u64,
        "{ctx}"
    );
    assert_ne!(after.last_seen_ns, 0, "{ctx}");
    (true, got)
}

#[test]
#[ignore = "privileged: loads a tc program (CAP_BPF) and routes in a namespace"]
fn program_translates_generated_segments_byte_for_byte_like_the_tun_path() {
    kracauer_testbed::require_privileged("fastpath::differential");
    let (ns, tun_ifindex) = namespace("fpdiff");
    let tun = ns.name().to_owned();
    let _pins = Pins(pin_dir(&tun));
    ns.run(|| {
        let mut fp = Fastpath::load(&tun, tun_ifindex, 1024).expect("load");
        let mut r = Rng(0x6661_7374_7061_7468);
        let (mut taken, mut passed, mut gso) = ([0usize; 2], [0usize; 2], 0);
        for i in 0..6000 {
            let to_backend = i % 2 == 0;
            let case = if to_backend {
                client_case(&mut r)
            } else {
                backend_case(&mut r)
            };
            let (fast, _) = run_case(&mut fp, &case, to_backend);
            let d = usize::from(!to_backend);
            if fast {
                taken[d] += 1;
                gso += usize::from(case.gso_size != 0);
            } else {
                passed[d] += 1;
            }
            fp.remove(&case.addrs);
        }
        eprintln!("fast path: taken {taken:?}, passed {passed:?}, GSO taken {gso}");
        // The generator must exercise both outcomes in both directions, GSO included.
        assert!(taken.iter().all(|&n| n >= 1000), "taken {taken:?}");
        assert!(passed.iter().all(|&n| n >= 300), "passed {passed:?}");
        assert!(gso >= 100, "GSO taken {gso}");
        fp.remove_all().expect("remove");
    })
    .expect("namespace thread");
}

/// Loads the program in a namespace of its own (named after `tag`) and runs `check` on
/// `n` generated segments it would take, alternating directions (`check` gets the case,
/// whether it goes to the backend, and its index); returns the program's counters.
fn on_fast_cases(
    tag: &str,
    seed: u64,
    n: usize,
    mut check: impl FnMut(&mut Fastpath, &Case, bool, usize) + Send,
) -> [u64; 7] {
    let (ns, tun_ifindex) = namespace(tag);
    let tun = ns.name().to_owned();
    let _pins = Pins(pin_dir(&tun));
    ns.run(|| {
        let mut fp = Fastpath::load(&tun, tun_ifindex, 16).expect("load");
        let mut r = Rng(seed);
        let mut checked = 0;
        while checked < n {
            let to_backend = checked % 2 == 0;
            let case = if to_backend {
                client_case(&mut r)
            } else {
                backend_case(&mut r)
            };
            if !fast(&case, to_backend) {
                continue;
            }
            check(&mut fp, &case, to_backend, checked);
            checked += 1;
        }
        let stats = fp.stats();
        fp.remove_all().expect("remove");
        stats
    })
    .expect("namespace thread")
}

#[test]
#[ignore = "privileged: loads a tc program (CAP_BPF) and routes in a namespace"]
fn segment_of_no_flow_or_of_a_removed_flow_passes_untouched() {
    kracauer_testbed::require_privileged("fastpath::no_flow");
    let stats = on_fast_cases("fpnoflow", 7, 50, |fp, case, to_backend, _| {
        let (fast, _) = run_case(fp, case, to_backend);
        assert!(fast);
        fp.remove(&case.addrs);
        let fd = fp.program_fd().expect("program");
        let got = test_run(fd, &case.frame, case.gso_size, 0).expect("test run");
        assert_eq!((got.retval, &got.data), (TC_ACT_OK, &case.frame));
    });
    assert_eq!(stats[0] + stats[1], 50, "{stats:?}");
    assert_eq!(stats[2], 50, "{stats:?}");
}

#[test]
#[ignore = "privileged: loads a tc program (CAP_BPF) and routes in a namespace"]
fn segment_of_a_flow_whose_entry_recorded_a_reset_or_both_fins_passes_untouched() {
    kracauer_testbed::require_privileged("fastpath::closing");
    // Closing as the program records it: a RST either way, a FIN each way; and one FIN
    // alone, which is not closing (the other side still sends).
    let marks: [(u8, u8, u8, bool); 5] = [
        (0, 0, 1, false),
        (1, 1, 0, false),
        (1, 1, 1, false),
        (1, 0, 0, true),
        (0, 1, 0, true),
    ];
    let stats = on_fast_cases("fpclosing", 11, 50, |fp, case, to_backend, i| {
        let (client_fin, backend_fin, reset, still_fast) = marks[i % marks.len()];
        fp.install(&case.addrs, &case.splice).expect("install");
        let mut entry = fp.entry(&case.addrs).expect("entry");
        (entry.client_fin, entry.backend_fin, entry.reset) = (client_fin, backend_fin, reset);
        fp.flows
            .insert(case.addrs.v4_key(), entry, 0)
            .expect("mark the entry");
        let fd = fp.program_fd().expect("program");
        let got = test_run(fd, &case.frame, case.gso_size, 0).expect("test run");
        let ctx = format!("fin {client_fin}/{backend_fin} rst {reset} to_backend {to_backend}");
        if still_fast {
            assert_eq!(got.retval, TC_ACT_REDIRECT, "{ctx}");
        } else {
            assert_eq!((got.retval, &got.data), (TC_ACT_OK, &case.frame), "{ctx}");
            let after = fp.entry(&case.addrs).expect("entry");
            assert_eq!(after.packets, entry.packets, "counted as forwarded: {ctx}");
        }
        fp.remove(&case.addrs);
    });
    assert_eq!(stats[0] + stats[1], 20, "{stats:?}");
    assert_eq!(stats[2], 30, "{stats:?}");
}

#[test]
fn layout_version_is_the_headers() {
    let header = include_str!("../../bpf/fastpath.h");
    assert!(header.contains(&format!("#define FASTPATH_LAYOUT {LAYOUT}\n")));
}

#[test]
fn pin_dir_names_the_tun_device_and_the_layout() {
    assert_eq!(
        pin_dir("kracauer0"),
        Path::new("/sys/fs/bpf/kracauer/kracauer0/v2")
    );
}

#[test]
fn entry_gives_back_the_splice_and_addresses_it_was_made_from() {
    let mut r = Rng(3);
    for _ in 0..200 {
        let (a, mut s) = (addrs(&mut r), r.splice());
        // Scales above 14 are clamped as the core clamps them on parsing.
        (s.backend_ws, s.client_ws) = (s.backend_ws.min(14), s.client_ws.min(14));
        let e = a.entry(&s);
        assert_eq!(e.splice(), s);
        assert_eq!(e.addrs(&a.v4_key()), a);
    }
}

#[test]
fn entry_keeps_the_name_and_start_a_daemon_adopting_it_needs() {
    let mut r = Rng(7);
    let a = addrs(&mut r);
    let f = kracauer_core::engine::FastpathFlow {
        client: a.client,
        service: a.service,
        client6: a.client6,
        backend: a.backend,
        splice: r.splice(),
        name: Some(kracauer_core::name::HostName::parse(b"a.example").unwrap()),
        created: kracauer_core::time::Time::ZERO,
    };
    let e = FlowEntry::of(&f, 123_456);
    assert_eq!(e.name(), f.name);
    assert_eq!(e.created_ns, 123_456);
    assert_eq!(e.splice(), f.splice);
    assert_eq!(e.addrs(&a.v4_key()), a);
    assert_eq!((e.client_fin, e.backend_fin, e.reset), (0, 0, 0));
    let nameless = FlowEntry::of(&kracauer_core::engine::FastpathFlow { name: None, ..f }, 0);
    assert_eq!(nameless.name(), None);
}

#[test]
fn only_other_fast_path_layouts_are_removed_not_the_syn_cookie_programs_pins() {
    assert!(is_layout_dir("v1"));
    assert!(is_layout_dir("v12"));
    assert!(!is_layout_dir("syncookie-v1"));
    assert!(!is_layout_dir("v"));
    assert!(!is_layout_dir("vx"));
    assert!(!is_layout_dir("keeper"));
}
