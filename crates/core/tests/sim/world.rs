//! The simulated network: a smoltcp client (IPv4) and a smoltcp backend (IPv6), each
//! on a queue device, the engine between them, four one-way [`Link`]s, and one
//! virtual clock. [`World::run_until`] advances the clock to the next thing that has to
//! happen (a link delivery, a smoltcp timer, an engine timer), delivers, polls, and
//! checks every packet that crosses a link: checksums and lengths, and that what an
//! endpoint receives acknowledges, SACKs and echoes only what it sent itself.

use std::cell::Cell;
use std::collections::{BTreeMap, HashSet, VecDeque};
use std::fmt::Write as _;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use kracauer_core::engine::{Engine, Output, Verdict};
use kracauer_core::time::Time;
use smoltcp::socket::tcp;
use smoltcp::time::Instant;
use smoltcp::wire::Ipv4Packet;

use super::device::MTU;
use super::host::{Behaviour, Host, READ_EVERY_US, Role};
use super::link::{Faults, Link};
use super::oracle::{Handshakes, Oracle};
use super::probe::{self, Seg};
use super::rng::{Source, StreamHash};
pub use super::setup::{Setup, routes};

pub const CLIENT: Ipv4Addr = Ipv4Addr::new(198, 51, 100, 2);
pub const SERVICE: Ipv4Addr = Ipv4Addr::new(203, 0, 113, 10);
pub const BACKEND: Ipv6Addr = Ipv6Addr::new(0x2001, 0xdb8, 1, 0, 0, 0, 0, 2);
/// 2001:db8:64::198.51.100.2, the client as the backend sees it.
pub const CLIENT6: Ipv6Addr = Ipv6Addr::new(0x2001, 0xdb8, 0x64, 0, 0, 0, 0xc633, 0x6402);
pub const HTTP_REQUEST: &[u8] = b"GET / HTTP/1.1\r\nHost: a.example\r\n\r\n";

/// The virtual clock starts here (µs), so engine timestamps are not near zero.
const START_US: u64 = 1_000_000_000;

thread_local! {
    /// The virtual time in ms, for smoltcp's timestamp generators (plain `fn`s).
    static NOW_MS: Cell<u32> = const { Cell::new(0) };
}

fn client_tsval() -> u32 {
    NOW_MS.with(Cell::get).wrapping_add(50_000)
}

/// The backend's timestamp clock wraps about one second into the run.
fn backend_tsval() -> u32 {
    NOW_MS
        .with(Cell::get)
        .wrapping_add(u32::MAX - (START_US / 1000) as u32 - 1_000)
}

#[derive(Debug, Clone)]
struct Traced {
    at_us: u64,
    link: &'static str,
    seg: Result<Seg, String>,
}

/// The whole simulation.
pub struct World {
    pub setup: Setup,
    now: u64,
    pub engine: Engine,
    out: Output,
    scratch: Vec<u8>,
    client: Host,
    backend: Host,
    to_engine: Link,
    to_client: Link,
    to_backend: Link,
    from_backend: Link,
    /// Verdicts other than Forward/Consumed, with the packet.
    pub drops: Vec<String>,
    /// Broken invariants (bad packets, acknowledgements of unsent data, ...).
    pub violations: Vec<String>,
    trace: VecDeque<Traced>,
    /// Every SYN, FIN and RST that entered a link.
    controls: Vec<Traced>,
    /// The first SYN and SYN-ACK of each side, and the translation oracle, by the
    /// client's port.
    handshakes: BTreeMap<u16, Handshakes>,
    oracles: BTreeMap<u16, Oracle>,
    /// The largest payload of a segment the engine made itself for a backend (the
    /// peeked bytes).
    pub largest_made_to_backend: usize,
    /// (client port, sequence, acknowledgement) of every segment the client sent.
    pub client_segments: HashSet<(u16, u32, u32)>,
    /// Segments that reached the backend with a zero window.
    pub zero_windows_to_backend: u64,
    /// ICMPv6 errors the engine sent to the backend.
    pub icmp_to_backend: Vec<probe::Icmp6>,
    /// (client port, sequence, acknowledgement) of every segment the backend sent.
    pub backend_segments: HashSet<(u16, u32, u32)>,
    /// ICMPv4 errors the engine sent to the client.
    pub icmp_to_client: Vec<probe::Icmp4>,
    /// Connections reopened from a port already used ([`World::reconnect`]).
    pub reconnects: u16,
    /// The first data segment the engine got from the client started after the
    /// client's first byte.
    pub first_data_out_of_order: Option<bool>,
}

const TRACE: usize = 400;

/// Opens a client connection from `cport` (the `generation`th from that port).
fn open_client(setup: &Setup, client: &mut Host, cport: u16, generation: u64) {
    let mut socket = tcp::Socket::new(
        tcp::SocketBuffer::new(vec![0; setup.client_buffer]),
        tcp::SocketBuffer::new(vec![0; setup.client_buffer]),
    );
    if setup.client_timestamps {
        socket.set_tsval_generator(Some(client_tsval));
    }
    // smoltcp's Nagle is RFC 896's: it holds the short tail of a ClientHello until the
    // first segment is acknowledged, which Kracauer never does while peeking. TLS
    // clients set TCP_NODELAY, and Linux's Nagle (Minshall's variant) sends a short
    // segment behind a full one anyway; `client_classic_nagle` plays the others.
    socket.set_nagle_enabled(setup.client_classic_nagle);
    socket
        .connect(
            client.iface.context(),
            (IpAddr::from(SERVICE), setup.service_port),
            (IpAddr::from(CLIENT), cport),
        )
        .expect("connect");
    let seed = setup.seed ^ 0xda7a ^ u64::from(cport) ^ (generation << 32);
    let mut src = Source::new(setup.head.clone(), setup.client_payload, seed);
    src.stall_at = setup.client_stall_at;
    client.add(socket, Some(cport), Some(src));
}

/// Adds a listening socket to the backend.
fn listen(setup: &Setup, backend: &mut Host) {
    let mut socket = tcp::Socket::new(
        tcp::SocketBuffer::new(vec![0; setup.backend_buffer]),
        tcp::SocketBuffer::new(vec![0; setup.backend_buffer]),
    );
    if setup.backend_timestamps {
        socket.set_tsval_generator(Some(backend_tsval));
    }
    socket.listen(setup.backend_port).expect("listen");
    backend.add(socket, None, None);
}

impl World {
    pub fn new(setup: Setup) -> Self {
        let now = START_US;
        let t = Instant::from_micros(now as i64);
        NOW_MS.with(|c| c.set((now / 1000) as u32));
        let seed = setup.seed;

        let mut client = Host::new(Role::Client, seed ^ 0xc1, t);
        client.behaviour = Behaviour {
            waits_for_fin: setup.client_waits_for_fin,
            close_when_acked: setup.close_when_acked,
            read_chunk: setup.client_read_chunk,
            abort_after: setup.client_abort_after,
        };
        for i in 0..setup.connections {
            let cport = 40_000 + (seed % 20_000) as u16 + i;
            open_client(&setup, &mut client, cport, 0);
        }

        let mut backend = Host::new(Role::Backend, seed ^ 0xb4, t);
        backend.behaviour = Behaviour {
            close_when_acked: setup.close_when_acked,
            abort_after: setup.backend_abort_after,
            ..Behaviour::default()
        };
        backend.reply = (setup.backend_payload, seed ^ 0xbac);
        if setup.backend_listens {
            for _ in 0..setup.connections {
                listen(&setup, &mut backend);
            }
        }

        let [f0, f1, f2, f3] = setup.faults;
        let mut to_engine = Link::new("c>k", f0, seed ^ 1);
        to_engine.strip = setup.client_strip;
        to_engine.hold_first_data = setup.reverse_first_data;
        to_engine.drop_first_data = setup.lose_first_data;
        let mut to_client = Link::new("k>c", f1, seed ^ 2);
        to_client.clamp_mss = setup.client_mss;
        let mut to_backend = Link::new("k>b", f2, seed ^ 3);
        to_backend.strip = setup.backend_strip;
        to_backend.black_hole = setup.backend_black_hole;
        to_backend.drop_first_data = setup.lose_first_handover;
        let mut from_backend = Link::new("b>k", f3, seed ^ 4);
        from_backend.clamp_mss = setup.backend_mss;
        let engine = Engine::new(setup.engine.clone(), routes()).expect("engine");

        Self {
            setup,
            now,
            engine,
            out: Output::default(),
            scratch: Vec::with_capacity(2048),
            client,
            backend,
            to_engine,
            to_client,
            to_backend,
            from_backend,
            drops: Vec::new(),
            violations: Vec::new(),
            trace: VecDeque::with_capacity(TRACE),
            controls: Vec::new(),
            first_data_out_of_order: None,
            reconnects: 0,
            icmp_to_client: Vec::new(),
            icmp_to_backend: Vec::new(),
            zero_windows_to_backend: 0,
            backend_segments: HashSet::new(),
            client_segments: HashSet::new(),
            largest_made_to_backend: 0,
            handshakes: BTreeMap::new(),
            oracles: BTreeMap::new(),
        }
    }

    /// Forgets the first client connection and its backend socket (both must be closed)
    /// and opens a new one from the same client port, with a fresh listening socket.
    pub fn reconnect(&mut self) {
        let Some(old) = self.client.conns.first() else {
            return;
        };
        let port = old.port.unwrap_or(0);
        let handle = old.handle;
        self.client.conns.remove(0);
        self.client.sockets.remove(handle);
        if let Some(i) = self.backend.conns.iter().position(|c| c.port == Some(port)) {
            let c = self.backend.conns.remove(i);
            self.backend.sockets.remove(c.handle);
        }
        for map in [&mut self.client.sent, &mut self.backend.sent] {
            map.remove(&port);
        }
        self.handshakes.remove(&port);
        self.oracles.remove(&port);
        self.reconnects += 1;
        open_client(
            &self.setup,
            &mut self.client,
            port,
            u64::from(self.reconnects),
        );
        // Keep the new connection first, so the accessors follow it.
        if let Some(c) = self.client.conns.pop() {
            self.client.conns.insert(0, c);
        }
        listen(&self.setup, &mut self.backend);
    }

    /// The (first) client application gives up: its socket sends RST.
    pub fn abort_client(&mut self) {
        if let Some(c) = self.client.conns.first() {
            self.client
                .sockets
                .get_mut::<tcp::Socket<'static>>(c.handle)
                .abort();
        }
    }

    /// Gives every link new faults from now on.
    pub fn set_faults(&mut self, f: Faults) {
        for l in [
            &mut self.to_engine,
            &mut self.to_client,
            &mut self.to_backend,
            &mut self.from_backend,
        ] {
            l.faults = f;
        }
    }

    /// Packets put on the engine→backend link (lost ones included).
    pub fn sent_to_backend(&self) -> u64 {
        self.to_backend.stats.sent
    }

    /// Every byte both ways has arrived.
    pub fn all_delivered(&self) -> bool {
        self.client_sent_all()
            && self.backend_sent_all()
            && self.streams().iter().all(|(sent, got)| sent == got)
    }

    /// Virtual milliseconds since the start.
    pub fn elapsed_ms(&self) -> u64 {
        (self.now - START_US) / 1000
    }

    /// The state of the first client connection.
    pub fn client_state(&self) -> Option<tcp::State> {
        let c = self.client.conns.first()?;
        Some(self.client.state(c))
    }

    /// The state of the backend socket of the first client connection (or of the first
    /// socket, while none is connected).
    pub fn backend_state(&self) -> Option<tcp::State> {
        let port = self.client.conns.first().and_then(|c| c.port);
        let c = port
            .and_then(|p| self.backend.conn(p))
            .or(self.backend.conns.first())?;
        Some(self.backend.state(c))
    }

    /// For each client connection: (what the client sent, what the backend got), then
    /// (what the backend sent, what the client got).
    pub fn streams(&self) -> Vec<(StreamHash, StreamHash)> {
        let mut v = Vec::new();
        for c in &self.client.conns {
            let b = c.port.and_then(|p| self.backend.conn(p));
            let sent = c.src.as_ref().map(|s| s.hash).unwrap_or_default();
            v.push((sent, b.map(|b| b.got).unwrap_or_default()));
            let back = b.and_then(|b| b.src.as_ref()).map(|s| s.hash);
            v.push((back.unwrap_or_default(), c.got));
        }
        v
    }

    pub fn client_sent_all(&self) -> bool {
        let done = |c: &super::host::Conn| c.src.as_ref().is_some_and(Source::done);
        self.client.conns.iter().all(done)
    }

    /// Every backend socket a client connection reached has sent everything.
    pub fn backend_sent_all(&self) -> bool {
        self.client.conns.iter().all(|c| {
            c.port
                .and_then(|p| self.backend.conn(p))
                .and_then(|b| b.src.as_ref())
                .is_some_and(Source::done)
        })
    }

    /// The first bytes the (first) client connection received.
    pub fn client_got_head(&self) -> &[u8] {
        self.client.conns.first().map_or(&[], |c| &c.got_head)
    }

    /// When (ms since start) an RST first reached the client / the backend.
    pub fn client_reset_at_ms(&self) -> Option<u64> {
        let first = self.client.reset_at.values().min()?;
        Some((first - START_US) / 1000)
    }

    pub fn backend_reset_at_ms(&self) -> Option<u64> {
        let first = self.backend.reset_at.values().min()?;
        Some((first - START_US) / 1000)
    }

    /// Every client connection and its backend socket are closed (Closed or
    /// TimeWait).
    pub fn both_closed(&self) -> bool {
        let done = |s: tcp::State| matches!(s, tcp::State::Closed | tcp::State::TimeWait);
        self.client.conns.iter().all(|c| {
            done(self.client.state(c))
                && c.port
                    .and_then(|p| self.backend.conn(p))
                    .is_some_and(|b| done(self.backend.state(b)))
        })
    }

    /// The handshakes of the first client connection.
    pub fn handshakes(&self) -> Handshakes {
        let port = self.client.conns.first().and_then(|c| c.port);
        port.and_then(|p| self.handshakes.get(&p).cloned())
            .unwrap_or_default()
    }

    /// Runs until `done` holds or `limit_ms` of virtual time pass; returns whether
    /// `done` held.
    pub fn run_until(&mut self, limit_ms: u64, done: impl Fn(&World) -> bool) -> bool {
        let deadline = self.now + limit_ms * 1000;
        let mut rounds = 0u64;
        loop {
            rounds += 1;
            assert!(rounds < 50_000_000, "the simulation does not settle");
            self.poll_hosts();
            if let Some(at) = self.engine.poll_timeout() {
                if at.as_micros() <= self.now {
                    self.engine
                        .handle_timeout(Time::from_micros(self.now), &mut self.out);
                    self.route_output();
                }
            }
            if self.deliver_due() {
                continue;
            }
            if done(self) {
                return true;
            }
            let next = self.next_event();
            if next > deadline {
                self.set_now(deadline);
                return done(self);
            }
            self.set_now(next.max(self.now + 1));
        }
    }

    /// Runs for `ms` of virtual time.
    pub fn run_for(&mut self, ms: u64) {
        self.run_until(ms, |_| false);
    }

    fn set_now(&mut self, now: u64) {
        self.now = now;
        NOW_MS.with(|c| c.set((now / 1000) as u32));
    }

    fn next_event(&mut self) -> u64 {
        let t = Instant::from_micros(self.now as i64);
        let mut next = u64::MAX;
        for host in [&mut self.client, &mut self.backend] {
            if let Some(at) = host.iface.poll_at(t, &host.sockets) {
                next = next.min(at.total_micros().max(0) as u64);
            }
        }
        for link in [
            &self.to_engine,
            &self.to_client,
            &self.to_backend,
            &self.from_backend,
        ] {
            if let Some(at) = link.next_at() {
                next = next.min(at);
            }
        }
        if let Some(at) = self.engine.poll_timeout() {
            next = next.min(at.as_micros());
        }
        if self.setup.client_read_chunk.is_some() {
            // A slow reader wakes up to read.
            next = next.min(self.now + READ_EVERY_US);
        }
        next
    }

    fn poll_hosts(&mut self) {
        let t = Instant::from_micros(self.now as i64);
        for (host, link, name) in [
            (&mut self.client, &mut self.to_engine, "client"),
            (&mut self.backend, &mut self.from_backend, "backend"),
        ] {
            host.iface.poll(t, &mut host.dev, &mut host.sockets);
            host.app(self.now);
            host.iface.poll(t, &mut host.dev, &mut host.sockets);
            while let Some(p) = host.dev.tx.pop_front() {
                if name == "backend" && p.len() > usize::from(self.setup.engine.ipv6_mtu) {
                    self.violations.push(format!(
                        "the backend sent {} bytes, over the IPv6 MTU",
                        p.len()
                    ));
                }
                match probe::parse(&p) {
                    Ok(seg) => {
                        let port = host.port_of(&seg, true);
                        host.sent.entry(port).or_default().note(&seg);
                        if name == "client" {
                            self.client_segments.insert((port, seg.seq, seg.ack));
                        } else {
                            self.backend_segments.insert((port, seg.seq, seg.ack));
                        }
                        if seg.syn && seg.ack_flag {
                            let h = self.handshakes.entry(port).or_default();
                            h.backend_synack.get_or_insert(seg);
                        }
                    }
                    Err(e) => self
                        .violations
                        .push(format!("{name} sent a bad packet: {e}")),
                }
                Self::record(&mut self.trace, &mut self.controls, self.now, link.name, &p);
                link.send(self.now, p);
            }
        }
    }

    fn record(
        trace: &mut VecDeque<Traced>,
        controls: &mut Vec<Traced>,
        now: u64,
        link: &'static str,
        packet: &[u8],
    ) {
        if trace.len() == TRACE {
            trace.pop_front();
        }
        let t = Traced {
            at_us: now,
            link,
            seg: probe::parse(packet),
        };
        if t.seg.as_ref().is_ok_and(|s| s.syn || s.fin || s.rst) && controls.len() < 1000 {
            controls.push(t.clone());
        }
        trace.push_back(t);
    }

    /// Delivers every packet due now; returns whether an endpoint got one.
    fn deliver_due(&mut self) -> bool {
        let now = self.now;
        let mut to_host = false;
        let mut progress = true;
        while progress {
            progress = false;
            while let Some(p) = self.to_engine.pop_due(now) {
                progress = true;
                if let Ok(seg) = probe::parse(&p) {
                    let isn = self.client.sent.get(&seg.src_port).and_then(|s| s.isn);
                    if let (None, Some(isn)) = (self.first_data_out_of_order, isn) {
                        if seg.payload_len > 0 {
                            self.first_data_out_of_order = Some(seg.seq != isn.wrapping_add(1));
                        }
                    }
                    if seg.syn && !seg.ack_flag {
                        let h = self.handshakes.entry(seg.src_port).or_default();
                        h.client_syn.get_or_insert(seg);
                    }
                }
                self.engine_gets(&p);
            }
            while let Some(p) = self.from_backend.pop_due(now) {
                progress = true;
                self.engine_gets(&p);
            }
            for (link, host, name) in [
                (&mut self.to_client, &mut self.client, "client"),
                (&mut self.to_backend, &mut self.backend, "backend"),
            ] {
                while let Some(p) = link.pop_due(now) {
                    progress = true;
                    to_host = true;
                    if let Ok(seg) = probe::parse(&p) {
                        let (src, dst): (IpAddr, IpAddr) = if name == "client" {
                            (SERVICE.into(), CLIENT.into())
                        } else {
                            (CLIENT6.into(), BACKEND.into())
                        };
                        if (seg.src, seg.dst) != (Some(src), Some(dst)) {
                            self.violations
                                .push(format!("the {name} got {seg}: wrong addresses"));
                        }
                        let port = host.port_of(&seg, false);
                        let sent = host.sent.get(&port).copied().unwrap_or_default();
                        if let Err(e) = sent.check(&seg) {
                            self.violations.push(format!(
                                "at {} ms the {name} got {seg}: {e}",
                                (now - START_US) / 1000
                            ));
                        }
                        // An RST for a connection this end has finished (a duplicate
                        // of its last ACK answered by a peer already closed) ends
                        // nothing.
                        let finished = host.conn(port).is_some_and(|c| {
                            matches!(host.state(c), tcp::State::TimeWait | tcp::State::Closed)
                        });
                        if name == "backend" && seg.window == 0 && !seg.rst {
                            self.zero_windows_to_backend += 1;
                        }
                        if seg.rst && !finished {
                            host.reset_at.entry(port).or_insert(now);
                        }
                    }
                    host.dev.rx.push_back(p);
                }
            }
        }
        to_host
    }

    /// Hands a packet to the engine and routes what comes out.
    fn engine_gets(&mut self, packet: &[u8]) {
        const HEADROOM: usize = 20;
        self.scratch.clear();
        self.scratch.resize(HEADROOM, 0);
        self.scratch.extend_from_slice(packet);
        let verdict = self.engine.handle_packet(
            Time::from_micros(self.now),
            &mut self.scratch,
            HEADROOM,
            &mut self.out,
        );
        match verdict {
            Verdict::Forward(r) => {
                let p = self.scratch[r].to_vec();
                let port = match probe::parse(packet) {
                    Ok(seg) if seg.v6 => seg.dst_port,
                    Ok(seg) => seg.src_port,
                    Err(_) => 0,
                };
                let h = self.handshakes.entry(port).or_default();
                let oracle = self.oracles.entry(port).or_default();
                if let Err(e) = oracle.check(h, packet, &p) {
                    let seg = probe::parse(packet).map_or_else(|e| e, |s| s.to_string());
                    self.violations.push(format!(
                        "at {} ms {seg} translated wrong: {e}",
                        self.elapsed_ms()
                    ));
                }
                self.emit(p);
            }
            Verdict::Consumed => {}
            Verdict::SecondChance => self.drops.push(format!(
                "at {} ms: second chance without second chance configured",
                self.elapsed_ms()
            )),
            Verdict::Dropped(reason) => {
                let seg = probe::parse(packet).map_or_else(|e| e, |s| s.to_string());
                self.drops.push(format!(
                    "at {} ms {}: {seg}",
                    self.elapsed_ms(),
                    reason.name()
                ));
            }
        }
        self.route_output();
    }

    fn route_output(&mut self) {
        let made: Vec<Vec<u8>> = self.out.packets().map(<[u8]>::to_vec).collect();
        self.out.clear();
        for p in made {
            if let Ok(seg) = probe::parse(&p) {
                if seg.v6 {
                    self.largest_made_to_backend =
                        self.largest_made_to_backend.max(seg.payload_len);
                } else if seg.ack_flag && !(seg.syn || seg.fin || seg.rst) && seg.payload_len == 0 {
                    // An ACK of the engine's own: custody of client bytes.
                    self.oracles
                        .entry(seg.dst_port)
                        .or_default()
                        .engine_acked(seg.ack);
                }
            }
            self.emit(p);
        }
    }

    /// A packet from the engine: IPv4 to the client, IPv6 to the backend.
    fn emit(&mut self, p: Vec<u8>) {
        let icmp4 = p.first() == Some(&0x45) && p.get(9) == Some(&1);
        let icmp6 = p.first().is_some_and(|b| b >> 4 == 6) && p.get(6) == Some(&58);
        match probe::parse(&p) {
            Err(_) if icmp4 => match probe::parse_icmp4(&p) {
                Ok(m) => self.icmp_to_client.push(m),
                Err(e) => self
                    .violations
                    .push(format!("bad ICMPv4 from the engine: {e}")),
            },
            Err(_) if icmp6 => match probe::parse_icmp6(&p) {
                Ok(m) => self.icmp_to_backend.push(m),
                Err(e) => self
                    .violations
                    .push(format!("bad ICMPv6 from the engine: {e}")),
            },
            Err(e) => self.violations.push(format!(
                "at {} ms the engine sent a bad packet: {e}: {p:02x?}",
                self.elapsed_ms()
            )),
            Ok(seg) if seg.syn => {
                let port = if seg.v6 { seg.src_port } else { seg.dst_port };
                let h = self.handshakes.entry(port).or_default();
                let first = if seg.ack_flag {
                    &mut h.engine_synack
                } else {
                    &mut h.engine_syn
                };
                first.get_or_insert(seg);
            }
            Ok(_) => {}
        }
        let v4 = p.first().is_some_and(|b| b >> 4 == 4);
        let mtu = if v4 {
            MTU
        } else {
            usize::from(self.setup.engine.ipv6_mtu)
        };
        if p.len() > mtu {
            self.violations.push(format!(
                "at {} ms the engine sent {} bytes, over the MTU {mtu}",
                self.elapsed_ms(),
                p.len()
            ));
        }
        let client_too_big = self
            .setup
            .client_path_mtu
            .filter(|&m| p.len() > usize::from(m));
        if let (true, Some(mtu)) = (v4 && !icmp4, client_too_big) {
            let df = Ipv4Packet::new_checked(&p[..]).is_ok_and(|ip| ip.dont_frag());
            if df {
                let router = Ipv4Addr::new(198, 51, 100, 1);
                match probe::icmpv4_frag_needed(router, &p, mtu) {
                    Some(icmp) => self.to_engine.send(self.now, icmp),
                    None => self.violations.push("cannot quote a packet".into()),
                }
                return;
            }
        }
        let too_big = self
            .setup
            .backend_path_mtu
            .filter(|&m| p.len() > usize::from(m));
        if !v4 && (self.setup.backend_unreachable || too_big.is_some()) {
            let router = Ipv6Addr::new(0x2001, 0xdb8, 1, 0, 0, 0, 0, 1);
            match probe::icmpv6_error(router, &p, too_big.map(u32::from)) {
                Some(icmp) => self.from_backend.send(self.now, icmp),
                None => self.violations.push("cannot quote a packet".into()),
            }
            return;
        }
        let link = if v4 {
            &mut self.to_client
        } else {
            &mut self.to_backend
        };
        Self::record(&mut self.trace, &mut self.controls, self.now, link.name, &p);
        link.send(self.now, p);
    }

    /// A report for assertion messages: states, streams, drops, violations, links,
    /// engine counters and the last packets.
    pub fn report(&self) -> String {
        let mut s = String::new();
        let _ = writeln!(
            s,
            "seed {} at {} ms: client {:?} backend {:?}",
            self.setup.seed,
            self.elapsed_ms(),
            self.client_state(),
            self.backend_state()
        );
        let _ = writeln!(
            s,
            "client sent {:?}\nbackend sent {:?}",
            self.client.sent.values().take(4).collect::<Vec<_>>(),
            self.backend.sent.values().take(4).collect::<Vec<_>>()
        );
        for (i, (sent, got)) in self.streams().iter().enumerate().take(8) {
            let dir = if i % 2 == 0 { "up" } else { "down" };
            let _ = writeln!(s, "stream {} {dir}: sent {sent:?} got {got:?}", i / 2);
        }
        let stats = self.engine.stats();
        let drops: Vec<_> = stats.all_drops().filter(|(_, n)| *n > 0).collect();
        let _ = writeln!(
            s,
            "engine: flows {} spliced {} packets {:?} bytes {:?} made {} drops {drops:?}",
            self.engine.flow_count(),
            stats.spliced,
            stats.packets,
            stats.bytes,
            stats.made
        );
        for l in [
            &self.to_engine,
            &self.to_client,
            &self.to_backend,
            &self.from_backend,
        ] {
            let _ = writeln!(s, "link {}: {:?}", l.name, l.stats);
        }
        for d in self.drops.iter().take(20) {
            let _ = writeln!(s, "drop {d}");
        }
        for v in self.violations.iter().take(20) {
            let _ = writeln!(s, "VIOLATION {v}");
        }
        let _ = writeln!(s, "RST segments:");
        let rsts = self
            .controls
            .iter()
            .filter(|t| t.seg.as_ref().is_ok_and(|s| s.rst));
        for t in rsts.take(10) {
            let seg = t.seg.as_ref().map_or_else(|e| e.clone(), |s| s.to_string());
            let _ = writeln!(
                s,
                "  {:>8.3} {} {seg}",
                (t.at_us - START_US) as f64 / 1000.0,
                t.link
            );
        }
        let _ = writeln!(s, "SYN, FIN and RST segments:");
        for t in self.controls.iter().take(60) {
            let seg = t.seg.as_ref().map_or_else(|e| e.clone(), |s| s.to_string());
            let _ = writeln!(
                s,
                "  {:>8.3} {} {seg}",
                (t.at_us - START_US) as f64 / 1000.0,
                t.link
            );
        }
        let _ = writeln!(s, "last packets:");
        for t in self.trace.iter().rev().take(60).rev() {
            let seg = t.seg.as_ref().map_or_else(|e| e.clone(), |s| s.to_string());
            let _ = writeln!(
                s,
                "  {:>8.3} {} {seg}",
                (t.at_us - START_US) as f64 / 1000.0,
                t.link
            );
        }
        s
    }
}
