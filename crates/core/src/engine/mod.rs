//! The engine: every protocol decision Kracauer makes, sans-IO.
//!
//! The daemon reads a packet from the TUN into a buffer with at least 20 bytes of
//! headroom and calls [`Engine::handle_packet`]. The engine either rewrites the packet in
//! place and says where it now lies ([`Verdict::Forward`]: write it back to the TUN),
//! consumes it (answering, if at all, through the caller's [`Output`]), or drops it with a
//! counted [`DropReason`]. Timers fire through [`Engine::handle_timeout`];
//! [`Engine::poll_timeout`] says when next to call it. Nothing here reads a clock or
//! allocates per forwarded packet: forwarding is a hash lookup and header rewrites.
//!
//! The TCP splice is docs/architecture.md's: Kracauer answers the client's SYN itself, peeks at the
//! first bytes without acknowledging them, opens the backend connection with the client's
//! own ISN and options, and from the backend's SYN-ACK on rewrites every segment with a
//! sequence offset, a timestamp offset and a window rescale.
//!
//! The engine keeps the demultiplexing, the limits, the table and the timers; what a
//! flow does with a segment is decided by its phase (`crate::flow`), and the engine
//! carries that out. The IPv4 side is in `client.rs`, the set-up steps it carries out in
//! `setup.rs`, the backend attempts of a pool and their failover in `failover.rs`, the
//! IPv6 side in `backend.rs`, ICMP in `icmp.rs`, and the packets it makes in `emit.rs`.
//! See `docs/architecture.md`.

mod adopt;
mod backend;
mod client;
mod clock;
pub mod config;
mod custody;
mod emit;
pub mod event;
mod failover;
pub mod fastpath;
mod icmp;
pub mod limits;
pub mod output;
mod prefixes;
mod pressure;
mod secondchance;
mod services;
mod setup;
pub mod snapshot;
pub mod stats;
#[cfg(test)]
mod tests;
mod udp;
mod udp_backend;
pub mod udp_cids;
mod udp_emit;
mod udp_route;
mod udp_snapshot;

use core::hash::Hasher;
use core::ops::Range;
use std::collections::VecDeque;
use std::net::{Ipv4Addr, SocketAddrV4, SocketAddrV6};
use std::sync::Arc;

use siphasher::sip::SipHasher24;

pub use self::adopt::{AdoptError, Adopted, AdoptedFlow};
use self::clock::Clock;
pub use self::config::{ConfigError, EngineConfig, Service};
pub use self::event::{ConnectFailure, Event};
pub use self::fastpath::{FastpathFlow, FastpathOp};
pub use self::limits::SharedLimits;
pub use self::output::Output;
use self::secondchance::Arrival;
pub use self::snapshot::SnapshotError;
pub use self::stats::{Direction, DropReason, PeekPath, Side, Stats};
pub use crate::base::{Outcome, Protocol, RxChecksum};
use crate::flow::table::{FlowId, FlowTable};
use crate::flow::timers::Timers;
use crate::flow::{Expiry, Flow, Timeouts, Usage};
pub use crate::flow::{PeekEnd, Unnamed};
use crate::route::{Health, RouteTable};
use crate::tcp::isn::IsnSource;
use crate::time::Time;

/// What became of a packet.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verdict {
    /// Translated in place: write `buf[range]` to the TUN.
    Forward(Range<usize>),
    /// Used by the engine (answers, if any, are in the output).
    Consumed,
    /// Dropped and counted.
    Dropped(DropReason),
    /// A client segment for a flow this engine does not hold, with second chance on
    /// ([`EngineConfig::second_chance`]): left untouched in the buffer for the daemon to
    /// pass to the peer instances (`secondchance.rs`), not answered with RST.
    SecondChance,
}

/// The translator.
#[derive(Debug)]
pub struct Engine {
    config: EngineConfig,
    routes: Arc<RouteTable>,
    /// Which backends of `routes` are down (the daemon's verdict, the same in every
    /// worker).
    health: Arc<Health>,
    flows: FlowTable<Flow>,
    timers: Timers,
    isn: IsnSource,
    stats: Stats,
    events: VecDeque<Event>,
    /// This engine's flows in `Handshake`.
    half_open: usize,
    /// This engine's flows holding unnamed state (`Handshake`, `Peek`).
    peeking: usize,
    /// Heap bytes reserved by this engine's peek buffers.
    peek_bytes: usize,
    /// The same counts, every engine of the daemon together, with the per-address ones
    /// (`limits.rs`): what the limits are checked against.
    shared: Arc<SharedLimits>,
    /// When the limits are next looked at for pressure (`pressure.rs`).
    next_sweep: Time,
    /// IPv4 Identification for translated packets without DF.
    next_ident: u16,
    /// The engine's time from the caller's (moved only by a restore, see `clock.rs`).
    clock: Clock,
    /// The services changed: flows on one no longer served are to be ended
    /// (`services.rs`).
    unserved_sweep: bool,
    /// Spliced flows may go to the kernel fast path (`fastpath.rs`).
    fastpath: bool,
    /// Map operations for the daemon, uncapped (`fastpath.rs`).
    fastpath_ops: VecDeque<FastpathOp>,
    /// Prefixes changed since that flows still hold (`prefixes.rs`).
    retired: Vec<crate::addr::Prefix96>,
    /// Until then a segment for no flow is dropped, not reset (`snapshot.rs`,
    /// [`Engine::restore_part`]).
    settling_until: Time,
    /// The cookie clock: what to add to the caller's `now` (µs) to make the time cookies
    /// are made and checked at; `None`: the engine's own time (`set_cookie_clock`).
    cookie_clock: Option<u64>,
    /// QUIC flows (`udp.rs`, `udp_backend.rs`).
    udp: udp::UdpState,
    /// The last Packet Too Big or Fragmentation Needed translated (`icmp.rs`): its
    /// repeats are not.
    last_too_big: Option<icmp::TooBig>,
}

/// Most events kept when nobody drains them.
const MAX_EVENTS: usize = 65_536;

impl Engine {
    /// An engine for `config`, routing by `routes`.
    pub fn new(config: EngineConfig, routes: Arc<RouteTable>) -> Result<Self, ConfigError> {
        config.validate()?;
        let key = |label: &str| -> [u64; 2] {
            let derive = |n: u8| {
                let mut h = SipHasher24::new_with_keys(
                    u64::from_le_bytes(config.seed[..8].try_into().unwrap_or_default()),
                    u64::from_le_bytes(config.seed[8..16].try_into().unwrap_or_default()),
                );
                h.write(&config.seed[16..]);
                h.write(label.as_bytes());
                h.write_u8(n);
                h.finish()
            };
            [derive(0), derive(1)]
        };
        let flows = FlowTable::new(config.max_flows, key("flow index"));
        let udp = udp::UdpState::new(
            config.max_udp_flows,
            key("udp flow index"),
            key("quic cid owner")[0],
        );
        let shared = config
            .shared_limits
            .clone()
            .unwrap_or_else(|| Arc::new(SharedLimits::new(key("limits"))));
        let isn = IsnSource::new(
            key("isn"),
            config.cookie_root.unwrap_or_else(|| key("cookie")),
        );
        Ok(Self {
            timers: Timers::with_capacity(config.max_flows.min(1 << 20) * 2),
            flows,
            isn,
            stats: Stats::new(),
            events: VecDeque::new(),
            half_open: 0,
            peeking: 0,
            peek_bytes: 0,
            shared,
            next_sweep: Time::ZERO,
            next_ident: key("ident")[0] as u16,
            clock: Clock::default(),
            unserved_sweep: false,
            fastpath: false,
            fastpath_ops: VecDeque::new(),
            retired: Vec::new(),
            settling_until: Time::ZERO,
            cookie_clock: None,
            udp,
            last_too_big: None,
            routes,
            health: Arc::default(),
            config,
        })
    }

    /// Replaces the route table, every backend up until [`set_health`](Self::set_health)
    /// says otherwise. Flows that already chose a backend keep it; flows still
    /// connecting keep the backends they were given.
    pub fn set_routes(&mut self, routes: Arc<RouteTable>) {
        self.routes = routes;
        self.health = Arc::default();
    }

    /// Replaces which backends of the current route table are down (by slot, see
    /// [`RouteTable::backend_slots`]). New connections skip them; connections in progress
    /// are not touched.
    pub fn set_health(&mut self, health: Arc<Health>) {
        self.health = health;
    }

    /// Takes the timeouts, limits and services of `config`, validated first (on an error
    /// nothing changes). The seed and the secrets drawn from it, the
    /// window scale, `max_flows` (the flow table is sized at the start) and the shared
    /// limits stay as they are. A new prefix is taken by new flows; the others keep
    /// theirs (`prefixes.rs`); a new IPv6 MTU, the MSS new flows agree (the others keep
    /// theirs: a smaller path is path MTU discovery's). New flows use the new values; a timer already armed
    /// fires when it was set to, and the flow's next deadline is computed with the new
    /// values. A limit lowered below what flows already hold stops new flows until
    /// enough of them end; nothing in progress is cut. Flows on a service address or
    /// port no longer served are ended at the next [`Engine::handle_timeout`] (see
    /// `services.rs`).
    pub fn reconfigure(&mut self, config: EngineConfig) -> Result<(), ConfigError> {
        config.validate()?;
        let c = &mut self.config;
        c.peek_timeout = config.peek_timeout;
        c.connect_timeout = config.connect_timeout;
        c.syn_retransmit = config.syn_retransmit;
        c.connect_attempt = config.connect_attempt;
        c.idle_timeout = config.idle_timeout;
        c.udp_unanswered_timeout = config.udp_unanswered_timeout;
        c.udp_idle_timeout = config.udp_idle_timeout;
        c.linger = config.linger;
        c.peek_cap = config.peek_cap;
        c.max_peeking_per_client = config.max_peeking_per_client;
        c.max_peek_bytes = config.max_peek_bytes;
        c.max_half_open = config.max_half_open;
        if c.services != config.services {
            c.services = config.services;
            self.unserved_sweep = true;
        }
        c.custody_delay = config.custody_delay;
        c.second_chance = config.second_chance;
        // New flows agree their MSS from it; the others keep what they agreed.
        c.ipv6_mtu = config.ipv6_mtu;
        self.change_prefix(config.prefix);
        Ok(())
    }

    /// The configuration in force.
    pub fn config(&self) -> &EngineConfig {
        &self.config
    }

    /// Counters.
    pub fn stats(&self) -> &Stats {
        &self.stats
    }

    /// Number of flows in the table.
    pub fn flow_count(&self) -> usize {
        self.flows.len()
    }

    /// Number of this engine's half-open flows (SYN answered with state, no ACK yet).
    pub fn half_open(&self) -> usize {
        self.half_open
    }

    /// Bytes held by this engine's peek buffers (custody bytes included).
    pub fn peek_bytes(&self) -> usize {
        self.peek_bytes
    }

    /// The limits' counts this engine shares with the daemon's other workers.
    pub fn shared_limits(&self) -> &Arc<SharedLimits> {
        &self.shared
    }

    /// The next access-log event.
    pub fn poll_event(&mut self) -> Option<Event> {
        self.events.pop_front()
    }

    /// When [`Engine::handle_timeout`] should next be called ([`Time::ZERO`]: at once).
    pub fn poll_timeout(&self) -> Option<Time> {
        if self.unserved_sweep {
            return Some(Time::ZERO);
        }
        // While this engine holds unnamed state, the limits are looked at for pressure
        // (which other engines' flows may cause) every `SWEEP_EVERY`.
        // So are the retired prefixes, for flows that ended.
        let sweep = (self.peeking > 0 || !self.retired.is_empty()).then_some(self.next_sweep);
        let next = [self.timers.next(), sweep, self.udp_next_timer()]
            .into_iter()
            .flatten()
            .min();
        next.map(|t| self.clock.external(t))
    }

    /// Handles one packet read from the TUN: `buf[start..]` is the packet, and the bytes
    /// before `start` are headroom the IPv4→IPv6 translation may grow into (at least 20).
    /// The transport checksum is taken to be a finished one, not yet verified.
    pub fn handle_packet(
        &mut self,
        now: Time,
        buf: &mut [u8],
        start: usize,
        out: &mut Output,
    ) -> Verdict {
        self.handle_packet_with(now, buf, start, RxChecksum::Unchecked, out)
    }

    /// [`handle_packet`](Self::handle_packet) for a packet whose device said something
    /// about its transport checksum (a TUN with offloads): a [`RxChecksum::Partial`]
    /// packet, which may be a GSO super-packet of up to 64 KB, keeps the partial form
    /// through translation (only the pseudo-header's change is applied), so the kernel
    /// finishes it, or segments it, when the packet leaves.
    pub fn handle_packet_with(
        &mut self,
        now: Time,
        buf: &mut [u8],
        start: usize,
        checksum: RxChecksum,
        out: &mut Output,
    ) -> Verdict {
        self.handle_arrival(now, buf, start, checksum, Arrival::Tun, out)
    }

    /// [`handle_packet_with`](Self::handle_packet_with) for a packet that came by
    /// `arrival` (`secondchance.rs`).
    fn handle_arrival(
        &mut self,
        now: Time,
        buf: &mut [u8],
        start: usize,
        checksum: RxChecksum,
        arrival: Arrival,
        out: &mut Output,
    ) -> Verdict {
        let now = self.clock.internal(now);
        if self.peeking == 0 {
            // Nothing unnamed held here: the first sweep comes a period after some is.
            self.next_sweep = now + pressure::SWEEP_EVERY;
        }
        let version = buf.get(start).map_or(0, |b| b >> 4);
        let verdict = match version {
            4 => self.handle_client(now, buf, start, checksum, arrival, out),
            6 => self.handle_backend(now, buf, start, checksum, out),
            _ => Verdict::Dropped(DropReason::ClientMalformed),
        };
        if let Verdict::Dropped(reason) = verdict {
            self.stats.drop(reason);
        }
        verdict
    }

    /// Runs every timer due at `now`.
    pub fn handle_timeout(&mut self, now: Time, out: &mut Output) {
        let now = self.clock.internal(now);
        if self.unserved_sweep {
            self.end_unserved(now, out);
        }
        if now >= self.next_sweep {
            self.sweep(now, out);
            self.sweep_retired();
        }
        self.udp_handle_timeout(now);
        let timeouts = self.timeouts();
        while let Some((at, id)) = self.timers.pop_due(now) {
            let Some(flow) = self.flows.get_mut(id) else {
                continue;
            };
            if flow.armed != at {
                continue; // stale entry: the flow re-armed earlier since
            }
            flow.armed = Time::NEVER;
            match flow.expire(now, &timeouts) {
                Expiry::NotYet(deadline) => self.arm(id, deadline),
                Expiry::RetransmitSyn => {
                    if let Some(crate::flow::Phase::Connect(c)) =
                        self.flows.get_mut(id).map(|f| &mut f.phase)
                    {
                        c.back_off(now);
                    }
                    self.send_backend_syn(id, out);
                    self.rearm(id);
                }
                Expiry::NextBackend => self.attempt_failed(now, id, ConnectFailure::Timeout, out),
                Expiry::TakeCustody => self.take_custody(now, id, out),
                Expiry::RetransmitCustody => self.retransmit_custody(now, id, out),
                Expiry::CustodyLost => self.custody_lost(now, id, out),
                Expiry::Finish { outcome, reset } => {
                    if outcome == Outcome::ConnectTimeout {
                        self.report_failure(id, ConnectFailure::Timeout);
                    }
                    if reset {
                        self.reset_client(id, out);
                    }
                    self.finish(now, id, outcome);
                }
            }
        }
    }

    /// The timeouts flows' deadlines are made of.
    fn timeouts(&self) -> Timeouts {
        Timeouts {
            peek: self.config.peek_timeout,
            connect: self.config.connect_timeout,
            idle: self.config.idle_timeout,
            custody: self.config.custody_delay,
        }
    }

    /// Makes sure flow `id` has a timer entry no later than `at`.
    fn arm(&mut self, id: FlowId, at: Time) {
        if let Some(flow) = self.flows.get_mut(id) {
            flow.armed = self.timers.arm(id, at, flow.armed);
        }
    }

    /// Re-arms flow `id` for whatever its phase now needs.
    fn rearm(&mut self, id: FlowId) {
        let timeouts = self.timeouts();
        if let Some(at) = self.flows.get(id).map(|f| f.deadline(&timeouts)) {
            self.arm(id, at);
        }
    }

    /// Moves flow `id` through `step` (a phase transition, see
    /// [`FlowTable::step`]) and settles what its phase holds against the limits.
    fn step<R>(&mut self, id: FlowId, step: impl FnOnce(Flow) -> (Flow, R)) -> Option<R> {
        let (key, _) = self.flows.keys(id)?;
        let before = self.flows.get(id)?.usage();
        let result = self.flows.step(id, step)?;
        let after = self.flows.get(id).map_or(Usage::default(), Flow::usage);
        self.account(key.client, before, after);
        Some(result)
    }

    /// Moves the limits' counts, this engine's and the shared ones, from what a flow of
    /// `client` held (`before`) to what it holds now.
    fn account(&mut self, client: Ipv4Addr, before: Usage, after: Usage) {
        match (before.half_open, after.half_open) {
            (false, true) => {
                self.half_open += 1;
                self.shared.add_half_open(1);
            }
            (true, false) => {
                self.half_open = self.half_open.saturating_sub(1);
                self.shared.sub_half_open(1);
            }
            _ => {}
        }
        match (before.peeking, after.peeking) {
            (false, true) => {
                self.peeking += 1;
                self.shared.hold(client);
            }
            (true, false) => {
                self.peeking = self.peeking.saturating_sub(1);
                self.shared.release(client);
            }
            _ => {}
        }
        if after.peek_bytes > before.peek_bytes {
            let grown = after.peek_bytes - before.peek_bytes;
            self.peek_bytes += grown;
            self.shared.add_peek_bytes(grown);
        } else {
            let freed = before.peek_bytes - after.peek_bytes;
            self.peek_bytes = self.peek_bytes.saturating_sub(freed);
            self.shared.sub_peek_bytes(freed);
        }
    }

    /// Frees flow `id`, counts its outcome and queues its access-log event.
    fn finish(&mut self, now: Time, id: FlowId, outcome: Outcome) {
        let Some((ck, bk)) = self.flows.keys(id) else {
            return;
        };
        self.fastpath_remove(id);
        let Some(flow) = self.flows.remove(id) else {
            return;
        };
        self.account(ck.client, flow.usage(), Usage::default());
        self.stats.outcome(outcome);
        let (created, peek, protocol) = (flow.created, flow.peek_end, flow.protocol);
        let (name, bytes) = flow.into_log();
        self.push_event(Event::Closed {
            protocol,
            client: SocketAddrV4::new(ck.client, ck.client_port),
            service: SocketAddrV4::new(ck.service, ck.service_port),
            name,
            backend: bk.map(|b| SocketAddrV6::new(b.backend, b.backend_port, 0, 0)),
            bytes_to_backend: bytes[0],
            bytes_to_client: bytes[1],
            duration: now.saturating_since(created),
            outcome,
            peek,
        });
    }

    /// Ends every flow at the caller's `now`, each with its access-log event, sending
    /// nothing (the daemon is stopping): a flow that had already ended and only lingered
    /// (closing, or refused) keeps the outcome it ended with; every other one ends with
    /// [`Outcome::Shutdown`]. Events past the queue's bound are lost, so drain
    /// [`Engine::poll_event`] while calling this with `limit` flows at a time; returns how
    /// many flows are left (QUIC flows, which end first, included).
    pub fn close_flows(&mut self, now: Time, limit: usize) -> usize {
        let now = self.clock.internal(now);
        let udp_left = self.close_udp_flows(now, limit);
        if udp_left > 0 {
            return udp_left + self.flows.len();
        }
        let ids: Vec<FlowId> = self.flows.iter().map(|(id, ..)| id).take(limit).collect();
        for id in ids {
            let outcome = match self.flows.get(id).map(|f| &f.phase) {
                Some(crate::flow::Phase::Closing(c)) => c.outcome,
                Some(crate::flow::Phase::Refused(r)) => r.refusal.outcome(),
                _ => Outcome::Shutdown,
            };
            self.finish(now, id, outcome);
        }
        self.flows.len()
    }

    fn push_event(&mut self, e: Event) {
        if self.events.len() < MAX_EVENTS {
            self.events.push_back(e);
        }
    }

    /// An IPv4 Identification for a translated packet.
    fn ident(&mut self) -> u16 {
        self.next_ident = self.next_ident.wrapping_add(1);
        self.next_ident
    }
}

impl Drop for Engine {
    /// Gives back to the shared limits what this engine's flows hold (an engine dropped
    /// while others run on, as after a failed restore, must not leave its counts behind).
    fn drop(&mut self) {
        let held: Vec<(Ipv4Addr, Usage)> = self
            .flows
            .iter()
            .map(|(_, key, _, flow)| (key.client, flow.usage()))
            .chain(
                self.udp
                    .flows
                    .iter()
                    .map(|(_, key, _, flow)| (key.client, flow.usage())),
            )
            .collect();
        for (client, usage) in held {
            self.account(client, usage, Usage::default());
        }
        self.forget_cids();
    }
}
