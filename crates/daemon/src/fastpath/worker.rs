//! A worker's handle on the fast path's maps: it carries out its engine's
//! [`FastpathOp`]s, gives the access log and the metrics the bytes the program forwarded,
//! and reports the program's last-seen times to the engine for idle expiry.
//!
//! At a start it adopts the entries it is given ([`WorkerFastpath::adopt`]): those a
//! killed daemon left, or those of the process it took over from.
//!
//! Each worker opens the pinned maps itself (its own descriptors), so nothing is shared
//! between threads. Per flow, nothing is allocated per packet: the map operations happen
//! once when a flow is handed over and once when it is taken back, and the sweep reads
//! each handed-over flow's entry once a second.

use std::collections::HashMap as StdHashMap;
use std::net::SocketAddrV4;
use std::path::Path;
use std::time::Instant;

use aya::maps::{HashMap, MapData};
use kracauer_core::engine::{Adopted, AdoptedFlow, Engine, Event, FastpathFlow, FastpathOp, Stats};
use kracauer_core::time::Time;

use super::maps::{FlowAddrs, FlowEntry, V4Key, V6Key};
use super::{FastpathError, MAPS};

/// A worker's maps, and what it handed over.
pub struct WorkerFastpath {
    flows: HashMap<MapData, V4Key, FlowEntry>,
    backends: HashMap<MapData, V6Key, V4Key>,
    installed: StdHashMap<V4Key, FlowAddrs>,
    /// Counters of flows taken back, waiting for their access-log line.
    removed: StdHashMap<(SocketAddrV4, SocketAddrV4), [u64; 2]>,
    /// Bytes and packets of flows taken back: [to backend, to client].
    done: ([u64; 2], [u64; 2]),
    /// The same of the flows still handed over, as of the last sweep.
    live: ([u64; 2], [u64; 2]),
    /// Hand-overs the map had no room for (the flow stayed on the TUN path).
    pub full: u64,
}

impl std::fmt::Debug for WorkerFastpath {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("WorkerFastpath")
            .field("installed", &self.installed.len())
            .finish_non_exhaustive()
    }
}

fn addrs(f: &FastpathFlow) -> FlowAddrs {
    FlowAddrs {
        client: f.client,
        service: f.service,
        client6: f.client6,
        backend: f.backend,
    }
}

impl WorkerFastpath {
    /// Opens the maps pinned in `dir`.
    pub fn open(dir: &Path) -> Result<Self, FastpathError> {
        let open = |name: &str| MapData::from_pin(dir.join(name)).map(aya::maps::Map::HashMap);
        Ok(Self {
            flows: HashMap::try_from(open(MAPS[0])?)?,
            backends: HashMap::try_from(open(MAPS[1])?)?,
            installed: StdHashMap::new(),
            removed: StdHashMap::new(),
            done: ([0; 2], [0; 2]),
            live: ([0; 2], [0; 2]),
            full: 0,
        })
    }

    /// Carries out one operation of the worker's engine (whose clock started at
    /// `start`).
    pub fn apply(&mut self, op: FastpathOp, start: Instant) {
        match op {
            FastpathOp::Install(f) => {
                let a = addrs(&f);
                let key = a.v4_key();
                let entry = FlowEntry::of(&f, monotonic_of(f.created, start));
                let installed = self
                    .flows
                    .insert(key, entry, 0)
                    .and_then(|()| self.backends.insert(a.v6_key(), key, 0));
                match installed {
                    Ok(()) => {
                        self.installed.insert(key, a);
                    }
                    Err(e) => {
                        let _ = self.flows.remove(&key);
                        self.full += 1;
                        tracing::debug!("fast path: flow {} stays on the TUN path: {e}", f.client);
                    }
                }
            }
            FastpathOp::Remove(f) => {
                let a = addrs(&f);
                let key = a.v4_key();
                let entry = self.flows.get(&key, 0).ok();
                let _ = self.backends.remove(&a.v6_key());
                let _ = self.flows.remove(&key);
                self.installed.remove(&key);
                if let Some(e) = entry {
                    for d in 0..2 {
                        self.done.0[d] += e.bytes[d];
                        self.done.1[d] += e.packets[d];
                    }
                    self.removed.insert((f.client, f.service), e.bytes);
                }
            }
        }
    }

    /// Adopts `entries` of the map into `engine` (whose clock started at `start`): each
    /// becomes a flow handed over (see [`Engine::adopt_fastpath`]), or is removed from
    /// the map with the reason logged. Returns how many were adopted and refused.
    pub fn adopt(
        &mut self,
        engine: &mut Engine,
        entries: Vec<(V4Key, FlowEntry)>,
        start: Instant,
    ) -> (usize, usize) {
        let now = crate::runtime::now_since(start);
        let (mut adopted, mut refused) = (0, 0);
        for (key, e) in entries {
            let a = e.addrs(&key);
            let flow = FastpathFlow {
                client: a.client,
                service: a.service,
                client6: a.client6,
                backend: a.backend,
                splice: e.splice(),
                name: e.name(),
                created: time_of(e.created_ns, start).unwrap_or(now),
            };
            let entry = AdoptedFlow {
                flow,
                client_fin: e.client_fin != 0,
                backend_fin: e.backend_fin != 0,
                reset: e.reset != 0,
                last_seen: time_of(e.last_seen_ns, start).unwrap_or(now),
            };
            match engine.adopt_fastpath(now, &entry) {
                Ok(how) => {
                    adopted += 1;
                    self.installed.insert(key, a);
                    if how == Adopted::Closing {
                        tracing::debug!("fast path: adopted flow {} closes now", a.client);
                    }
                }
                Err(why) => {
                    refused += 1;
                    let _ = self.backends.remove(&a.v6_key());
                    let _ = self.flows.remove(&key);
                    tracing::info!(
                        "fast path: flow {} -> {} not adopted ({why}); its entry is removed",
                        a.client,
                        a.service
                    );
                }
            }
        }
        (adopted, refused)
    }

    /// Adds what the program forwarded of a flow taken back to its access-log line.
    pub fn closed(&mut self, event: &mut Event) {
        if let Event::Closed {
            client,
            service,
            bytes_to_backend,
            bytes_to_client,
            ..
        } = event
        {
            if let Some(b) = self.removed.remove(&(*client, *service)) {
                *bytes_to_backend += b[0];
                *bytes_to_client += b[1];
            }
        }
    }

    /// Reads every handed-over flow's entry: its last-seen time goes to `engine` (the
    /// worker's clock started at `start`), its counters to the live totals.
    pub fn sweep(&mut self, engine: &mut Engine, start: Instant) {
        let mono_now = monotonic_ns();
        let now = Instant::now();
        self.live = ([0; 2], [0; 2]);
        for (key, a) in &self.installed {
            let Ok(e) = self.flows.get(key, 0) else {
                continue;
            };
            for d in 0..2 {
                self.live.0[d] += e.bytes[d];
                self.live.1[d] += e.packets[d];
            }
            if e.last_seen_ns == 0 {
                continue;
            }
            let ago = std::time::Duration::from_nanos(mono_now.saturating_sub(e.last_seen_ns));
            let seen = now.checked_sub(ago).unwrap_or(start);
            let at = Time::from_micros(seen.saturating_duration_since(start).as_micros() as u64);
            engine.fastpath_seen(a.client, a.service, at);
        }
    }

    /// Adds the program's bytes and packets to a worker's published counters.
    pub fn add_to(&self, stats: &mut Stats) {
        for d in 0..2 {
            stats.bytes[d] += self.done.0[d] + self.live.0[d];
            stats.packets[d] += self.done.1[d] + self.live.1[d];
        }
    }

    /// Flows handed over and not taken back.
    pub fn installed(&self) -> usize {
        self.installed.len()
    }

    /// What the worker publishes of its hand-overs.
    pub fn handovers(&self) -> HandOvers {
        HandOvers {
            flows: self.installed(),
            refused: self.full,
        }
    }
}

/// A worker's hand-overs to the program, as published for the metrics.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct HandOvers {
    /// Flows handed over now.
    pub flows: usize,
    /// Hand-overs the map refused (full): those flows stayed on the TUN path.
    pub refused: u64,
}

impl HandOvers {
    /// Adds another worker's.
    pub fn add(&mut self, other: &HandOvers) {
        self.flows += other.flows;
        self.refused += other.refused;
    }
}

/// The CLOCK_MONOTONIC nanoseconds of engine time `t` (the worker's clock started at
/// `start`).
fn monotonic_of(t: Time, start: Instant) -> u64 {
    let ago = crate::runtime::now_since(start)
        .as_micros()
        .saturating_sub(t.as_micros());
    monotonic_ns().saturating_sub(ago.saturating_mul(1000))
}

/// The engine time of CLOCK_MONOTONIC `ns` (the worker's clock started at `start`);
/// `None` for 0 (not known).
fn time_of(ns: u64, start: Instant) -> Option<Time> {
    if ns == 0 {
        return None;
    }
    let ago = monotonic_ns().saturating_sub(ns) / 1000;
    let now = crate::runtime::now_since(start).as_micros();
    Some(Time::from_micros(now.saturating_sub(ago)))
}

/// CLOCK_MONOTONIC in nanoseconds (the program's `bpf_ktime_get_ns`).
fn monotonic_ns() -> u64 {
    let t = rustix::time::clock_gettime(rustix::time::ClockId::Monotonic);
    (t.tv_sec as u64) * 1_000_000_000 + t.tv_nsec as u64
}
