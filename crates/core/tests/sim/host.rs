//! An endpoint of the simulation: one smoltcp interface on a [`QueueDevice`] with one
//! or more TCP connections, each driven by a small application (send a [`Source`],
//! read everything, close or abort), and what each connection sent, to judge what it
//! receives.

use std::collections::BTreeMap;
use std::net::{Ipv4Addr, Ipv6Addr};

use smoltcp::iface::{Config, Interface, SocketHandle, SocketSet};
use smoltcp::socket::tcp;
use smoltcp::time::Instant;
use smoltcp::wire::{HardwareAddress, IpCidr};

use super::device::QueueDevice;
use super::probe::Seg;
use super::rng::{Source, StreamHash};

/// `a <= b` in wrapping 32-bit order.
fn le(a: u32, b: u32) -> bool {
    (b.wrapping_sub(a) as i32) >= 0
}

/// What one end of a connection has sent, to judge what it receives.
#[derive(Debug, Default, Clone, Copy)]
pub struct Sent {
    pub isn: Option<u32>,
    /// Highest sequence number sent plus one.
    pub snd_max: u32,
    pub max_tsval: Option<u32>,
}

impl Sent {
    pub fn note(&mut self, seg: &Seg) {
        if seg.rst {
            return;
        }
        if seg.syn {
            self.isn = Some(seg.seq);
            self.snd_max = seg.seq.wrapping_add(1);
        }
        let end = seg.seq.wrapping_add(seg.seq_len());
        if le(self.snd_max, end) {
            self.snd_max = end;
        }
        if let Some((tsval, _)) = seg.ts {
            if self.max_tsval.is_none_or(|m| le(m, tsval)) {
                self.max_tsval = Some(tsval);
            }
        }
    }

    /// Whether `seg`, arriving at this end, acknowledges, SACKs and echoes only what it
    /// sent.
    pub fn check(&self, seg: &Seg) -> Result<(), String> {
        let Some(isn) = self.isn else {
            return Ok(());
        };
        if seg.ack_flag && !(le(isn, seg.ack) && le(seg.ack, self.snd_max)) {
            return Err(format!(
                "acknowledges {} outside [{isn}, {}]",
                seg.ack, self.snd_max
            ));
        }
        for &(l, r) in &seg.sack {
            if !(le(isn, l) && le(l, r) && le(r, self.snd_max)) {
                return Err(format!(
                    "SACK block {l}-{r} outside [{isn}, {}]",
                    self.snd_max
                ));
            }
        }
        if let (Some((_, tsecr)), Some(max)) = (seg.ts, self.max_tsval) {
            if seg.ack_flag && !le(tsecr, max) {
                return Err(format!("echoes TSval {tsecr} never sent (max {max})"));
            }
        }
        Ok(())
    }
}

/// How a host's applications behave.
#[derive(Debug, Clone, Copy, Default)]
pub struct Behaviour {
    /// Close only once the peer's FIN arrived.
    pub waits_for_fin: bool,
    /// Close only once everything sent is acknowledged.
    pub close_when_acked: bool,
    /// Read at most this much every [`READ_EVERY_US`] (a slow reader).
    pub read_chunk: Option<usize>,
    /// Abort (RST) once this many bytes were received.
    pub abort_after: Option<u64>,
}

/// How often a slow reader reads (virtual µs).
pub const READ_EVERY_US: u64 = 10_000;

/// One TCP socket and its application.
#[derive(Debug)]
pub struct Conn {
    pub handle: SocketHandle,
    /// The client's port: known from the start on the client, from the SYN on the
    /// backend.
    pub port: Option<u16>,
    /// What the application sends (on the backend, made once the client is known).
    pub src: Option<Source>,
    pub got: StreamHash,
    /// The first bytes received.
    pub got_head: Vec<u8>,
    close_called: bool,
    aborted: bool,
    /// When a slow reader last read (virtual µs).
    last_read: u64,
}

/// Whether a host is the client (IPv4) or the backend (IPv6).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    Client,
    Backend,
}

/// An endpoint.
pub struct Host {
    pub role: Role,
    pub iface: Interface,
    pub dev: QueueDevice,
    pub sockets: SocketSet<'static>,
    pub conns: Vec<Conn>,
    pub behaviour: Behaviour,
    /// The backend's payload for each connection: its size and the seed it is drawn
    /// from (mixed with the client's port).
    pub reply: (usize, u64),
    /// By the client's port: what this end sent, when an RST first reached it.
    pub sent: BTreeMap<u16, Sent>,
    pub reset_at: BTreeMap<u16, u64>,
}

impl Host {
    pub fn new(role: Role, seed: u64, now: Instant) -> Self {
        let mut dev = QueueDevice::default();
        let mut config = Config::new(HardwareAddress::Ip);
        config.random_seed = seed;
        let mut iface = Interface::new(config, &mut dev, now);
        match role {
            Role::Client => {
                let addr = IpCidr::new(super::world::CLIENT.into(), 24);
                iface.update_ip_addrs(|a| a.push(addr).expect("one address"));
                let gw = Ipv4Addr::new(198, 51, 100, 1);
                iface
                    .routes_mut()
                    .add_default_ipv4_route(gw)
                    .expect("route");
            }
            Role::Backend => {
                let addr = IpCidr::new(super::world::BACKEND.into(), 64);
                iface.update_ip_addrs(|a| a.push(addr).expect("one address"));
                let gw = Ipv6Addr::new(0x2001, 0xdb8, 1, 0, 0, 0, 0, 1);
                iface
                    .routes_mut()
                    .add_default_ipv6_route(gw)
                    .expect("route");
            }
        }
        Self {
            role,
            iface,
            dev,
            sockets: SocketSet::new(vec![]),
            conns: Vec::new(),
            behaviour: Behaviour::default(),
            reply: (0, seed),
            sent: BTreeMap::new(),
            reset_at: BTreeMap::new(),
        }
    }

    /// Adds a socket (already connecting or listening).
    pub fn add(&mut self, socket: tcp::Socket<'static>, port: Option<u16>, src: Option<Source>) {
        let handle = self.sockets.add(socket);
        self.conns.push(Conn {
            handle,
            port,
            src,
            got: StreamHash::default(),
            got_head: Vec::new(),
            close_called: false,
            aborted: false,
            last_read: 0,
        });
    }

    pub fn state(&self, conn: &Conn) -> tcp::State {
        self.sockets
            .get::<tcp::Socket<'static>>(conn.handle)
            .state()
    }

    /// The client's port of a segment this host sends (`outgoing`) or receives.
    pub fn port_of(&self, seg: &Seg, outgoing: bool) -> u16 {
        match (self.role, outgoing) {
            (Role::Client, true) | (Role::Backend, false) => seg.src_port,
            (Role::Client, false) | (Role::Backend, true) => seg.dst_port,
        }
    }

    /// The connection with the client's port `port`.
    pub fn conn(&self, port: u16) -> Option<&Conn> {
        self.conns.iter().find(|c| c.port == Some(port))
    }

    /// Runs every connection's application at `now` (virtual µs).
    pub fn app(&mut self, now: u64) {
        let b = self.behaviour;
        for conn in &mut self.conns {
            let s = self.sockets.get_mut::<tcp::Socket<'static>>(conn.handle);
            if conn.port.is_none() {
                conn.port = s.remote_endpoint().map(|e| e.port);
            }
            if conn.src.is_none() && s.may_send() {
                let port = conn.port.unwrap_or(0);
                let (size, seed) = self.reply;
                conn.src = Some(Source::new(Vec::new(), size, seed ^ u64::from(port)));
            }
            let Some(src) = conn.src.as_mut() else {
                continue;
            };
            while s.can_send() && !src.exhausted() {
                if s.send(|buf| (src.take(buf), ())).is_err() {
                    break;
                }
            }
            let peer_done = !b.waits_for_fin || !s.may_recv();
            let acked = !b.close_when_acked || s.send_queue() == 0;
            if src.done() && peer_done && acked && !conn.close_called && s.may_send() {
                s.close();
                conn.close_called = true;
            }
            let mut budget = match b.read_chunk {
                None => usize::MAX,
                Some(_) if now < conn.last_read + READ_EVERY_US => 0,
                Some(chunk) => {
                    conn.last_read = now;
                    chunk
                }
            };
            while s.can_recv() && budget > 0 {
                let (got, head) = (&mut conn.got, &mut conn.got_head);
                let r = s.recv(|buf| {
                    let n = buf.len().min(budget);
                    got.update(&buf[..n]);
                    let keep = n.min(4096usize.saturating_sub(head.len()));
                    head.extend_from_slice(&buf[..keep]);
                    (n, n)
                });
                match r {
                    Ok(n) => budget -= n,
                    Err(_) => break,
                }
            }
            let abort = b.abort_after.is_some_and(|n| conn.got.len >= n);
            if abort && !conn.aborted && s.is_open() {
                s.abort();
                conn.aborted = true;
            }
        }
    }
}
