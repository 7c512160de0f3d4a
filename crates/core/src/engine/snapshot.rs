//! An engine's state as bytes, for a live upgrade (docs/architecture.md, "Upgrades"):
//! [`Engine::snapshot`] in the old process, [`Engine::restore`] in the new one.
//!
//! ```text
//! magic "KRCSNAP\n" | version u16 | body length u64 | checksum u64 | body
//! body: engine time u64 | seed [32] | next IPv4 ident u16
//!       | prefix [16] | window scale u8 | IPv6 MTU u16 | services
//!       | counters (by name) | flow count u64 | flows (flow/snapshot.rs)
//!       | QUIC counters and flows (udp_snapshot.rs)
//! ```
//!
//! Big-endian throughout. The checksum (SipHash-2-4 under a zero key: a check against
//! damage, not a seal) covers the body. What travels:
//! - every flow in every phase, with its keys (the backend index is rebuilt from them);
//!   the timers are rebuilt from each flow's deadline, and the half-open, per-client
//!   peeking and peek-byte counts from each flow's phase ([`Flow::usage`](crate::flow::Flow::usage)), as they are
//!   kept while running, so a restore cannot make them disagree;
//! - the seed every secret is drawn from (ISN, cookie and hash keys), which takes the
//!   place of the configuration's: ISNs go on, cookies made before validate after;
//! - the engine's time at the snapshot (see `clock.rs`), the counters, and the next IPv4
//!   Identification.
//!
//! What does not: the route table (the new configuration's; flows keep their backend),
//! the timeouts and limits (the new configuration's, as a reload would apply them),
//! access-log events not yet drained (the caller drains them first), and peek bytes held
//! after a hole (see flow/snapshot.rs). The setting a flow's packets depend on, the
//! window scale, must be the snapshot's: otherwise the restore is refused with
//! [`SnapshotError::ConfigMismatch`] (a new IPv6 MTU is taken by new flows; the others
//! keep the MSS they agreed). Each flow carries its prefix: a new prefix in the
//! configuration is taken by new flows, and the snapshot's flows keep theirs
//! (`prefixes.rs`). The services may differ: the
//! configuration's are served, and flows on one it no longer lists are ended as a reload
//! ends them (`services.rs`).

use core::hash::Hasher;
use std::net::{Ipv4Addr, Ipv6Addr};
use std::sync::Arc;

use siphasher::sip::SipHasher24;

use super::clock::Clock;
use super::stats::Stats;
use super::{Engine, EngineConfig, Service};
use crate::addr::Prefix96;
use crate::base::{BackendKey, ClientKey, DropReason, Outcome};
use crate::flow::Usage;
pub use crate::flow::snapshot::SnapshotError;
use crate::flow::snapshot::{Reader, Writer, read_flow, write_flow};
use crate::flow::table::TableError;
use crate::route::RouteTable;
use crate::time::Time;

/// The first bytes of every snapshot.
pub const MAGIC: [u8; 8] = *b"KRCSNAP\n";
/// The format this build writes and reads. Any change to what a snapshot holds, or how,
/// takes a new number: a build refuses every version but its own.
pub const SNAPSHOT_VERSION: u16 = 4;
/// Magic, version, body length and checksum.
const HEADER_LEN: usize = 8 + 2 + 8 + 8;

fn checksum(body: &[u8]) -> u64 {
    let mut h = SipHasher24::new_with_keys(0, 0);
    h.write(body);
    h.finish()
}

/// `body` framed as a snapshot of [`SNAPSHOT_VERSION`]: for tools and fuzzers that make
/// bodies of their own.
pub fn seal(body: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(HEADER_LEN + body.len());
    out.extend_from_slice(&MAGIC);
    out.extend_from_slice(&SNAPSHOT_VERSION.to_be_bytes());
    out.extend_from_slice(&(body.len() as u64).to_be_bytes());
    out.extend_from_slice(&checksum(body).to_be_bytes());
    out.extend_from_slice(body);
    out
}

/// The format version a snapshot says it has (its magic checked, nothing else).
pub fn version(bytes: &[u8]) -> Result<u16, SnapshotError> {
    let mut r = Reader::new(bytes);
    if r.raw::<8>()? != MAGIC {
        return Err(SnapshotError::BadMagic);
    }
    r.u16()
}

/// The body of a snapshot, its framing checked.
fn open(bytes: &[u8]) -> Result<&[u8], SnapshotError> {
    let found = version(bytes)?;
    if found != SNAPSHOT_VERSION {
        return Err(SnapshotError::Version {
            found,
            supported: SNAPSHOT_VERSION,
        });
    }
    let mut r = Reader::new(bytes.get(10..).unwrap_or_default());
    let len = r.u64()?;
    let sum = r.u64()?;
    let rest = r.remaining() as u64;
    if len > rest {
        return Err(SnapshotError::Truncated);
    }
    if len < rest {
        return Err(SnapshotError::TrailingBytes((rest - len) as usize));
    }
    let body = r.take(len as usize)?;
    if checksum(body) != sum {
        return Err(SnapshotError::Checksum);
    }
    Ok(body)
}

impl Engine {
    /// The engine's whole state at the caller's `now`, as bytes for [`Engine::restore`].
    /// Drain [`Engine::poll_event`] first: queued events do not travel.
    pub fn snapshot(&self, now: Time) -> Vec<u8> {
        let now = self.clock.internal(now);
        let mut w = Writer::new();
        w.u64(now.as_micros());
        w.raw(&self.config.seed);
        w.u16(self.next_ident);
        write_settings(&mut w, &self.config);
        write_counters(&mut w, self);
        w.u64(self.flows.len() as u64);
        for (_, key, backend, flow) in self.flows.iter() {
            let backend = backend.map(|b| (b.backend, b.backend_port));
            write_flow(&mut w, &key, backend, flow, now);
        }
        self.write_udp(&mut w, now);
        seal(&w.into_bytes())
    }

    /// An engine for `config` and `routes` holding the state `bytes` (from
    /// [`Engine::snapshot`]) describe, running on from the caller's `now`. The snapshot's
    /// seed replaces `config.seed`; its window scale must be `config`'s (its flows keep
    /// their prefix and MSS whatever `config`'s are).
    /// Flows on a service `config` no longer lists are ended at the first
    /// [`Engine::handle_timeout`]. A snapshot that is damaged, of another version, or does not fit
    /// `config` is refused whole; nothing in it can make this panic.
    pub fn restore(
        config: EngineConfig,
        routes: Arc<RouteTable>,
        bytes: &[u8],
        now: Time,
    ) -> Result<Engine, SnapshotError> {
        Self::restore_part(config, routes, &[bytes], 0, now, |_| true)
    }

    /// [`Engine::restore`] of one engine of a new set whose flows are divided otherwise
    /// than the old set's (a live upgrade to another number of workers): the seed,
    /// clock, counters and settings are `snapshots[own]`'s, the flows those of every
    /// snapshot that `keep` selects. Each snapshot is read whole and checked as
    /// [`Engine::restore`] checks it; the flows of another snapshot run on with their
    /// deadlines as they were at that snapshot (the old engines' snapshots are taken
    /// moments apart). With `own` past the end, the clock and settings are the first
    /// snapshot's, the seed `config`'s, and the counters start at zero.
    pub fn restore_part(
        mut config: EngineConfig,
        routes: Arc<RouteTable>,
        snapshots: &[&[u8]],
        own: usize,
        now: Time,
        keep: impl Fn(&ClientKey) -> bool,
    ) -> Result<Engine, SnapshotError> {
        let mut readers = Vec::with_capacity(snapshots.len());
        for bytes in snapshots {
            let mut r = Reader::new(open(bytes)?);
            let then = Time::from_micros(r.u64()?);
            if then == Time::NEVER {
                return Err(SnapshotError::BadField("engine time"));
            }
            let seed: [u8; 32] = r.raw()?;
            let next_ident = r.u16()?;
            let services = check_settings(&mut r, &config)?;
            readers.push((r, then, seed, next_ident, services));
        }
        let Some(&(_, then, seed, next_ident, ref services)) =
            readers.get(own).or_else(|| readers.first())
        else {
            return Err(SnapshotError::Truncated);
        };
        if own < readers.len() {
            config.seed = seed;
        }
        let services_changed = *services != config.services;
        let mut engine =
            Engine::new(config, routes).map_err(|e| SnapshotError::InvalidConfig(e.to_string()))?;
        engine.unserved_sweep = services_changed;
        engine.clock = Clock::rebased(now, then);
        engine.next_ident = next_ident;
        for (i, (r, its_then, ..)) in readers.iter_mut().enumerate() {
            let mut others = Stats::new();
            read_counters(
                r,
                if i == own {
                    &mut engine.stats
                } else {
                    &mut others
                },
            )?;
            engine.restore_flows(r, *its_then, &keep, i == own)?;
        }
        Ok(engine)
    }

    /// For `settle` from now on, a segment for no flow is dropped and counted
    /// (`*_no_flow_settling`) rather than answered with a RST: after a restore that
    /// divided the flows among another number of workers, segments queued before the
    /// steering changed may reach a worker that does not hold their flow, and so may
    /// segments steered while the number of queues changed for a moment (the daemon's
    /// carrier keeper attaching its queue); the peer sends them again, and they then
    /// reach the right one.
    pub fn settle_for(&mut self, now: Time, settle: core::time::Duration) {
        self.settling_until = self.clock.internal(now) + settle;
    }

    /// Reads a snapshot's flows (after its counters) into this engine, those `keep`
    /// selects; `then` is that snapshot's time.
    fn restore_flows(
        &mut self,
        r: &mut Reader<'_>,
        then: Time,
        keep: &impl Fn(&ClientKey) -> bool,
        own: bool,
    ) -> Result<(), SnapshotError> {
        let engine = self;
        let flows = r.u64()?;
        let capacity = engine.flows.capacity();
        if flows > capacity as u64 {
            return Err(SnapshotError::TooManyFlows { flows, capacity });
        }
        for _ in 0..flows {
            let rec = read_flow(r, then, engine.config.peek_cap)?;
            let key = rec.client_key;
            if !keep(&key) {
                continue;
            }
            let usage = rec.flow.usage();
            engine.retire(rec.flow.conn.prefix);
            let id = engine.flows.insert(key, rec.flow).map_err(|e| match e {
                TableError::ClientTupleTaken => SnapshotError::DuplicateFlow("client"),
                _ => SnapshotError::TooManyFlows { flows, capacity },
            })?;
            engine.account(key.client, Usage::default(), usage);
            if let Some((backend, backend_port)) = rec.backend {
                let bk = BackendKey {
                    backend,
                    backend_port,
                    client: key.client,
                    client_port: key.client_port,
                };
                engine
                    .flows
                    .index_backend(id, bk)
                    .map_err(|_| SnapshotError::DuplicateFlow("backend"))?;
            }
            engine.rearm(id);
        }
        engine.read_udp(r, then, own, keep)?;
        if r.remaining() > 0 {
            return Err(SnapshotError::TrailingBytes(r.remaining()));
        }
        Ok(())
    }
}

fn write_settings(w: &mut Writer, c: &EngineConfig) {
    w.raw(&c.prefix.network().octets());
    w.u8(c.window_scale);
    w.u16(c.ipv6_mtu);
    w.u16(c.services.len() as u16);
    for s in &c.services {
        w.raw(&s.address.octets());
        for ports in [&s.tls, &s.http, &s.quic] {
            w.u16(ports.len() as u16);
            for &p in ports {
                w.u16(p);
            }
        }
    }
}

/// Reads the settings the snapshot's flows depend on and checks them against `c`'s;
/// returns the snapshot's services.
fn check_settings(r: &mut Reader<'_>, c: &EngineConfig) -> Result<Vec<Service>, SnapshotError> {
    // The prefix new flows took; each flow carries its own, and keeps it.
    Prefix96::new(Ipv6Addr::from(r.raw::<16>()?)).map_err(|_| SnapshotError::BadField("prefix"))?;
    if r.u8()? != c.window_scale {
        return Err(SnapshotError::ConfigMismatch("window scale"));
    }
    // The IPv6 MTU new flows took: the snapshot's flows keep the MSS they agreed.
    r.u16()?;
    let n = r.u16()?;
    let mut services = Vec::new();
    for _ in 0..n {
        let address = Ipv4Addr::from(r.raw::<4>()?);
        let mut ports = [Vec::new(), Vec::new(), Vec::new()];
        for list in &mut ports {
            for _ in 0..r.u16()? {
                list.push(r.u16()?);
            }
        }
        let [tls, http, quic] = ports;
        services.push(Service {
            address,
            tls,
            http,
            quic,
        });
    }
    Ok(services)
}

/// Counters by name, so that a reason or outcome a build adds or drops costs nothing.
fn write_counters(w: &mut Writer, e: &Engine) {
    let s = &e.stats;
    w.u16(DropReason::ALL.len() as u16);
    for (reason, n) in s.all_drops() {
        w.name_str(reason.name());
        w.u64(n);
    }
    w.u16(Outcome::ALL.len() as u16);
    for &o in Outcome::ALL {
        w.name_str(o.name());
        w.u64(s.outcomes(o));
    }
    for v in [s.packets[0], s.packets[1], s.bytes[0], s.bytes[1]] {
        w.u64(v);
    }
    for v in [s.made, s.cookies_sent, s.cookies_accepted, s.spliced] {
        w.u64(v);
    }
    for v in [
        s.cookies_for_address,
        s.deferred,
        s.pressure_cuts,
        s.custody_taken,
        s.custody_retransmits,
        s.challenge_acks,
        s.challenge_acks_limited,
    ] {
        w.u64(v);
    }
}

fn read_counters(r: &mut Reader<'_>, s: &mut Stats) -> Result<(), SnapshotError> {
    for _ in 0..r.u16()? {
        let name = r.name_str()?;
        let n = r.u64()?;
        if let Some(&reason) = DropReason::ALL.iter().find(|d| d.name().as_bytes() == name) {
            s.set_drops(reason, n);
        }
    }
    for _ in 0..r.u16()? {
        let name = r.name_str()?;
        let n = r.u64()?;
        if let Some(&o) = Outcome::ALL.iter().find(|o| o.name().as_bytes() == name) {
            s.set_outcomes(o, n);
        }
    }
    s.packets = [r.u64()?, r.u64()?];
    s.bytes = [r.u64()?, r.u64()?];
    s.made = r.u64()?;
    s.cookies_sent = r.u64()?;
    s.cookies_accepted = r.u64()?;
    s.spliced = r.u64()?;
    s.cookies_for_address = r.u64()?;
    s.deferred = r.u64()?;
    s.pressure_cuts = r.u64()?;
    s.custody_taken = r.u64()?;
    s.custody_retransmits = r.u64()?;
    s.challenge_acks = r.u64()?;
    s.challenge_acks_limited = r.u64()?;
    Ok(())
}
