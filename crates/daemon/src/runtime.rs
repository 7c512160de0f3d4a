//! The data plane: one worker thread per TUN queue, each owning its own [`Engine`] and
//! moving packets between the two. No protocol logic lives here: packets go TUN → engine
//! → TUN, timers fire when the engine says, and the clock is a monotonic [`Instant`].
//!
//! Per packet: read into a buffer with [`HEADROOM`] bytes in front (IPv4→IPv6 grows in
//! place) and, with offloads, the virtio-net header just before the packet; check the
//! header ([`offload::inbound`]); `handle_packet_with`; write a `Forward` range back
//! with the header [`offload::outbound`] made for it, written into the bytes just before
//! the range so header and packet go out in one write; write whatever the engine made
//! into its [`Output`], clear it. Nothing is allocated, no lock is taken and nothing
//! crosses threads per packet: both directions of a flow reach the same worker (the
//! kernel steers them, see [`crate::steer`]), and each worker reads and writes its own
//! queue. Reloads (a new route table and its backends' health and, when `[timeouts]` or
//! `[limits]` changed, the worker's new [`EngineConfig`]) arrive as a [`Reload`], and
//! new backend health alone as [`Control::Health`], through a channel checked between
//! packets; failed backend attempts go the other way, to [`crate::health`]. And a
//! [`Snapshot`] of the worker's counters is published for the metrics endpoint about
//! once a second (with `try_lock`: a scrape holding the lock delays the publication, never
//! the worker). The engine's per-flow events are drained after every batch: counted by
//! the worker's [`Observer`] (histograms, per-route counters) and handed to the access
//! log's thread without waiting ([`accesslog::Sender::send`]).

use std::io;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::Receiver;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant, SystemTime};

use kracauer_core::engine::{Engine, EngineConfig, Event, Output, Stats, Verdict};
use kracauer_core::offload::{self, Inbound};
use kracauer_core::route::{Health, RouteTable};
use kracauer_core::time::Time;
use tokio::sync::mpsc::UnboundedSender;

use crate::accesslog::{self, Record};
use crate::fastpath::{HandOvers, WorkerFastpath};
use crate::health::{self, BackendState};
use crate::observe::{FlowStats, Observer, RouteLabels};
use crate::tun::Queue;

mod secondchance;

/// Bytes in front of every packet read, for IPv4→IPv6 growth (the engine needs 20).
pub const HEADROOM: usize = 20;
/// Where the packet starts in the read buffer: after the headroom and the space for a
/// virtio-net header. A translated packet starts at least `HEADROOM` bytes earlier, so
/// its header always fits in front of it.
const START: usize = HEADROOM + offload::HEADER_LEN;
/// Largest packet read: a GSO super-packet's IPv6 header plus 64 KB of payload.
const MAX_PACKET: usize = 40 + 65_535;
/// Packets handled before timers, reloads and events are looked at again.
const BATCH: usize = 64;
/// Longest sleep, so a stop request is seen promptly even with no traffic and no timer.
const MAX_WAIT: Duration = Duration::from_millis(200);
/// How often the counters are published.
const PUBLISH_EVERY: Duration = Duration::from_secs(1);

/// One worker's counters as last published.
#[derive(Debug, Clone, Default)]
pub struct Snapshot {
    pub stats: Stats,
    /// Flows in the table.
    pub flows: usize,
    /// QUIC flows in their table.
    pub quic_flows: usize,
    /// Flows whose SYN was answered and whose handshake has not completed.
    pub half_open: usize,
    /// Bytes held by peek buffers.
    pub peek_bytes: usize,
    /// Packets read from the TUN.
    pub tun_packets: u64,
    /// Of those, GSO super-packets (more than one segment's payload in one read).
    pub tun_super_packets: u64,
    /// Packets whose virtio-net header was refused (dropped).
    pub tun_header_errors: u64,
    /// Writes to the TUN that failed.
    pub tun_write_errors: u64,
    /// Reloads taken (each installs a route table, some also new timeouts and limits).
    pub reloads: u64,
    /// Prefixes changed since that this worker's flows still hold.
    pub retired: Vec<kracauer_core::addr::Prefix96>,
    /// Seconds since the data plane started.
    pub uptime: Duration,
    /// Peek and connect times, per-route counters.
    pub flow_stats: FlowStats,
    /// Flows handed to the kernel fast path, and hand-overs its map refused.
    pub fastpath: HandOvers,
}

impl Snapshot {
    /// The sum of every worker's counters (uptime: the longest; reloads: the most any
    /// worker installed, as every worker installs every reload).
    pub fn total(workers: &[Snapshot]) -> Snapshot {
        let mut t = Snapshot::default();
        for w in workers {
            t.stats.add(&w.stats);
            t.flows += w.flows;
            t.quic_flows += w.quic_flows;
            t.half_open += w.half_open;
            t.peek_bytes += w.peek_bytes;
            t.tun_packets += w.tun_packets;
            t.tun_super_packets += w.tun_super_packets;
            t.tun_header_errors += w.tun_header_errors;
            t.tun_write_errors += w.tun_write_errors;
            t.reloads = t.reloads.max(w.reloads);
            t.uptime = t.uptime.max(w.uptime);
            t.flow_stats.add(&w.flow_stats);
            t.fastpath.add(&w.fastpath);
        }
        t
    }
}

/// What the data plane shares with the metrics endpoint: one snapshot per worker, each
/// written by its worker about once a second, and whether offloads are on.
#[derive(Debug)]
pub struct Shared {
    pub workers: Mutex<Vec<Snapshot>>,
    pub offload: AtomicBool,
    /// Every backend's health, as the control plane last decided it.
    pub backends: Mutex<Vec<BackendState>>,
    /// Second chance's counters ([`crate::secondchance`]; zero when it is off).
    pub second_chance: Arc<crate::secondchance::Counters>,
}

/// The published snapshots.
pub type Published = Arc<Shared>;

/// A [`Published`] for `workers` workers, all zero.
pub fn published(workers: usize) -> Published {
    Arc::new(Shared {
        workers: Mutex::new(vec![Snapshot::default(); workers]),
        offload: AtomicBool::new(false),
        backends: Mutex::new(Vec::new()),
        second_chance: Arc::default(),
    })
}

/// What a reload sends every worker, applied between two packets.
#[derive(Debug, Clone)]
pub struct Reload {
    /// The new route table. Flows that already chose a backend keep it.
    pub routes: Arc<RouteTable>,
    /// The labels of its routes, for the per-route metrics.
    pub labels: RouteLabels,
    /// The worker's engine configuration with the new timeouts and limits (its share of
    /// them), if they changed; given to [`Engine::reconfigure`], which keeps the
    /// worker's seed and everything else a reload does not change.
    pub config: Option<EngineConfig>,
    /// Which backends of `routes` are down.
    pub health: Arc<Health>,
}

/// What the control plane sends a worker.
#[derive(Debug, Clone)]
pub enum Control {
    /// A reload (boxed: it is rare and large).
    Reload(Box<Reload>),
    /// New backend health for the route table in force.
    Health(Arc<Health>),
}

/// Applies every message waiting in `reloads` to worker `worker`'s `engine`, in order;
/// returns how many reloads there were.
pub fn take_reloads(engine: &mut Engine, reloads: &Receiver<Control>, worker: usize) -> u64 {
    take_reloads_with(engine, reloads, worker, |_| {})
}

/// [`take_reloads`], calling `also` with each reload once the engine has its routes.
pub fn take_reloads_with(
    engine: &mut Engine,
    reloads: &Receiver<Control>,
    worker: usize,
    mut also: impl FnMut(&Reload),
) -> u64 {
    let mut taken = 0;
    while let Ok(message) = reloads.try_recv() {
        let reload = match message {
            Control::Reload(r) => *r,
            Control::Health(health) => {
                engine.set_health(health);
                continue;
            }
        };
        engine.set_routes(reload.routes.clone());
        engine.set_health(reload.health.clone());
        also(&reload);
        let config = reload.config;
        taken += 1;
        tracing::debug!(worker, "data plane: new route table in force");
        if let Some(config) = config {
            // The control plane validated it; an error here leaves the engine as it was.
            match engine.reconfigure(config) {
                Ok(()) => tracing::debug!(worker, "data plane: new timeouts and limits in force"),
                Err(e) => tracing::error!(
                    worker,
                    "data plane: the engine refused the reloaded timeouts and limits and keeps its own: {e}"
                ),
            }
        }
    }
    taken
}

/// One worker: a TUN queue and the engine for the flows the kernel steers to it.
#[derive(Debug)]
pub struct DataPlane {
    index: usize,
    queue: Queue,
    engine: Engine,
    reloads: Receiver<Control>,
    stop: Arc<AtomicBool>,
    published: Published,
    counters: Counters,
    /// The origin of the worker's clock: the engine's `now` is the time since.
    start: Instant,
    /// Where failed backend attempts are reported.
    reports: Option<UnboundedSender<health::Report>>,
    observer: Observer,
    access: Option<accesslog::Sender>,
    /// Second chance with the peer instances (`runtime/secondchance.rs`), if configured.
    second_chance: Option<crate::secondchance::Link>,
    /// The kernel fast path's maps, when it runs (`crate::fastpath`).
    fastpath: Option<WorkerFastpath>,
}

#[derive(Debug, Default)]
struct Counters {
    tun_packets: u64,
    tun_super_packets: u64,
    tun_header_errors: u64,
    tun_write_errors: u64,
    reloads: u64,
}

impl DataPlane {
    /// Worker `index`, moving packets between `queue` and `engine`; reloads come in
    /// through `reloads`, and it returns from [`run`](Self::run) once `stop` is set.
    pub fn new(
        index: usize,
        queue: Queue,
        engine: Engine,
        reloads: Receiver<Control>,
        stop: Arc<AtomicBool>,
        published: Published,
    ) -> Self {
        let mut engine = engine;
        let start = Instant::now();
        // Cookies are made and checked on the host's monotonic clock, which the kernel's
        // SYN cookie program reads too (`fastpath::syncookie`).
        engine.set_cookie_clock(crate::fastpath::syncookie::monotonic_micros());
        Self {
            index,
            queue,
            engine,
            reloads,
            stop,
            published,
            counters: Counters::default(),
            observer: Observer::new(Arc::default(), RouteLabels::default()),
            access: None,
            start,
            reports: None,
            second_chance: None,
            fastpath: None,
        }
    }

    /// The worker with second chance through `link` ([`crate::secondchance`]).
    pub fn with_second_chance(mut self, link: Option<crate::secondchance::Link>) -> Self {
        self.second_chance = link;
        self
    }

    /// The worker handing its spliced flows to the kernel fast path through `maps`.
    pub fn with_fastpath(mut self, maps: WorkerFastpath) -> Self {
        self.engine.enable_fastpath();
        self.fastpath = Some(maps);
        self
    }

    /// Adopts the fast path's `entries` into the engine (a start after a crash, or an
    /// upgrade): nothing is read from the TUN before. Returns how many were adopted and
    /// refused (and removed).
    pub fn adopt_fastpath(
        &mut self,
        entries: Vec<(crate::fastpath::V4Key, crate::fastpath::FlowEntry)>,
    ) -> (usize, usize) {
        let Some(fp) = &mut self.fastpath else {
            return (0, 0);
        };
        let counts = fp.adopt(&mut self.engine, entries, self.start);
        self.drain_events();
        counts
    }

    /// The same worker with its clock started at `start` (the instant an engine restored
    /// for it took as its `now`, see [`crate::upgrade`]).
    pub fn started_at(mut self, start: Instant) -> Self {
        self.start = start;
        self
    }

    /// The engine's `now`: the time since the worker's clock started.
    pub fn now(&self) -> Time {
        now_since(self.start)
    }

    /// The engine's state, for the live upgrade (the worker must be stopped).
    pub fn snapshot(&self) -> Vec<u8> {
        self.engine.snapshot(self.now())
    }

    /// Ends every flow with its access-log line (outcome `shutdown`): the daemon stops.
    pub fn close_flows(&mut self) {
        let now = self.now();
        while self.engine.close_flows(now, 4096) > 0 {
            self.drain_events();
        }
        self.drain_events();
    }

    /// Reports failed backend attempts to `reports` (the control plane's health).
    pub fn with_reports(mut self, reports: UnboundedSender<health::Report>) -> Self {
        self.reports = Some(reports);
        self
    }

    /// The worker with `observer` counting its flows and `access` taking its access-log
    /// lines (`None`: no access log).
    pub fn observing(mut self, observer: Observer, access: Option<accesslog::Sender>) -> Self {
        self.observer = observer;
        self.access = access;
        self
    }

    /// Moves packets until stopped; an error reading the TUN ends it.
    pub fn run(&mut self) -> io::Result<()> {
        let start = self.start;
        let now = move || now_since(start);
        let mut buf = vec![0u8; START + MAX_PACKET];
        let mut out = Output::default();
        let mut next_publish = Instant::now();
        let offload = self.queue.offload();
        // Where a read lands: the virtio-net header, if any, just before the packet.
        let read_at = if offload {
            START - offload::HEADER_LEN
        } else {
            START
        };
        while !self.stop.load(Ordering::Relaxed) {
            self.take_reloads();
            if self.engine.poll_timeout().is_some_and(|at| at <= now()) {
                self.engine.handle_timeout(now(), &mut out);
                self.apply_fastpath_ops();
                self.flush(&mut out);
            }
            let mut handled = 0;
            let mut drained = false;
            while handled < BATCH {
                let Some(n) = self.queue.recv(&mut buf[read_at..])? else {
                    drained = true;
                    break;
                };
                handled += 1;
                self.counters.tun_packets += 1;
                let end = read_at + n;
                let rx = if offload {
                    if n < offload::HEADER_LEN {
                        self.counters.tun_header_errors += 1;
                        continue;
                    }
                    let (hdr, packet) = buf[read_at..end].split_at_mut(offload::HEADER_LEN);
                    match offload::inbound(hdr, packet) {
                        Ok(rx) => rx,
                        Err(e) => {
                            self.counters.tun_header_errors += 1;
                            tracing::debug!("virtio-net header refused: {e}");
                            continue;
                        }
                    }
                } else {
                    Inbound {
                        checksum: Default::default(),
                        gso: None,
                    }
                };
                if rx.gso.is_some() {
                    self.counters.tun_super_packets += 1;
                }
                let packet = &mut buf[..end];
                let verdict =
                    self.engine
                        .handle_packet_with(now(), packet, START, rx.checksum, &mut out);
                // Before anything the packet caused leaves: a closing flow's entry must be
                // gone before the client can answer what is sent (a SYN-ACK on its port).
                self.apply_fastpath_ops();
                match verdict {
                    Verdict::Forward(range) => self.forward(packet, range, &rx),
                    Verdict::Consumed => {}
                    Verdict::SecondChance => self.pass_on(packet),
                    Verdict::Dropped(reason) => tracing::trace!(
                        reason = reason.name(),
                        head = ?&packet[START..packet.len().min(START + 40)],
                        "dropped"
                    ),
                }
                self.flush(&mut out);
                self.take_reloads();
            }
            let more = self.take_second_chances(&mut buf, &mut out);
            self.drain_events();
            if Instant::now() >= next_publish {
                if let Some(fp) = &mut self.fastpath {
                    fp.sweep(&mut self.engine, start);
                }
            }
            if Instant::now() >= next_publish && self.publish(start.elapsed(), false) {
                next_publish = Instant::now() + PUBLISH_EVERY;
            }
            // The queue is empty: sleep until a packet or the next timer (a read that
            // would only find it empty again is saved).
            if drained && !more {
                let until_timer = self.engine.poll_timeout().map(|at| {
                    Duration::from_micros(at.as_micros()).saturating_sub(start.elapsed())
                });
                let until_publish = next_publish.saturating_duration_since(Instant::now());
                let wait = until_timer
                    .unwrap_or(MAX_WAIT)
                    .min(until_publish)
                    .min(MAX_WAIT);
                match &self.second_chance {
                    Some(link) => link.wait(&self.queue, wait)?,
                    None => {
                        self.queue.wait(Some(wait))?;
                    }
                }
            }
        }
        self.drain_events();
        self.publish(start.elapsed(), true);
        Ok(())
    }

    /// The worker's queue (for the live upgrade to hand over).
    pub fn queue(&self) -> &Queue {
        &self.queue
    }

    /// Puts `queue` in place of the worker's queue, which is returned (a live upgrade
    /// that re-opens the queues in another offload mode, `upgrade/offload.rs`). Only
    /// while parked: a running worker reads its queue's mode once, as it starts.
    pub fn replace_queue(&mut self, queue: Queue) -> Queue {
        std::mem::replace(&mut self.queue, queue)
    }

    /// The queue, for the control plane to close after tearing the host set-up down.
    pub fn into_queue(self) -> Queue {
        self.queue
    }

    fn take_reloads(&mut self) {
        let observer = &mut self.observer;
        self.counters.reloads +=
            take_reloads_with(&mut self.engine, &self.reloads, self.index, |r| {
                observer.set_routes(r.routes.clone(), r.labels.clone());
            });
    }

    /// Writes the translated `buf[range]`, with its virtio-net header in the bytes just
    /// before it if offloads are on.
    fn forward(&mut self, buf: &mut [u8], range: std::ops::Range<usize>, rx: &Inbound) {
        let written = if self.queue.offload() {
            let Some(at) = range.start.checked_sub(offload::HEADER_LEN) else {
                self.counters.tun_write_errors += 1;
                return;
            };
            if let Some(p) = buf.get_mut(range.clone()) {
                offload::set_segment_df(rx, p);
            }
            match buf.get(range.clone()).map(|p| offload::outbound(rx, p)) {
                Some(Ok(hdr)) => {
                    buf[at..range.start].copy_from_slice(&hdr);
                    self.queue.send_raw(&buf[at..range.end])
                }
                _ => {
                    self.counters.tun_write_errors += 1;
                    return;
                }
            }
        } else {
            match buf.get(range) {
                Some(p) => self.queue.send_raw(p),
                None => {
                    self.counters.tun_write_errors += 1;
                    return;
                }
            }
        };
        if let Err(e) = written {
            self.counters.tun_write_errors += 1;
            tracing::debug!("writing to the TUN failed: {e}");
        }
    }

    fn flush(&mut self, out: &mut Output) {
        for p in out.packets() {
            if let Err(e) = self.queue.send_plain(p) {
                self.counters.tun_write_errors += 1;
                tracing::debug!("writing {} bytes to the TUN failed: {e}", p.len());
            }
        }
        out.clear();
    }

    /// Carries out the engine's fast-path map operations, in order, at once: the worker
    /// calls it after every packet and timeout it handled, before writing what they
    /// caused, so the kernel never translates with an entry the engine has given up.
    pub(super) fn apply_fastpath_ops(&mut self) {
        if let Some(fp) = &mut self.fastpath {
            while let Some(op) = self.engine.poll_fastpath() {
                fp.apply(op, self.start);
            }
        }
    }

    /// Counts every flow event the engine queued and hands the access log its lines.
    fn drain_events(&mut self) {
        // Map operations first: a flow's removal (with its counters) comes before its
        // access-log line.
        self.apply_fastpath_ops();
        while let Some(mut event) = self.engine.poll_event() {
            if let Some(fp) = &mut self.fastpath {
                fp.closed(&mut event);
            }
            if let (
                Event::BackendFailed {
                    route,
                    backend,
                    cause,
                },
                Some(tx),
            ) = (&event, &self.reports)
            {
                let report = health::Report {
                    route: route.clone(),
                    backend: *backend,
                    cause: *cause,
                };
                let _ = tx.send(report);
            }
            let route = self.observer.observe(&event);
            if let Some(access) = self.access.as_ref().filter(|a| a.wants(&event)) {
                access.send(Record {
                    time: SystemTime::now(),
                    route,
                    event,
                });
            }
        }
    }

    /// Publishes the worker's counters; returns whether it did. Unless `wait`, it gives up
    /// when a scrape holds the lock (and the caller tries again after the next batch).
    fn publish(&self, uptime: Duration, wait: bool) -> bool {
        let c = &self.counters;
        let mut stats = self.engine.stats().clone();
        if let Some(fp) = &self.fastpath {
            fp.add_to(&mut stats);
        }
        let snapshot = Snapshot {
            stats,
            flows: self.engine.flow_count(),
            quic_flows: self.engine.quic_flow_count(),
            half_open: self.engine.half_open(),
            peek_bytes: self.engine.peek_bytes(),
            tun_packets: c.tun_packets,
            tun_super_packets: c.tun_super_packets,
            tun_header_errors: c.tun_header_errors,
            tun_write_errors: c.tun_write_errors,
            reloads: c.reloads,
            retired: self.engine.retired_prefixes().to_vec(),
            uptime,
            flow_stats: self.observer.stats().clone(),
            fastpath: self
                .fastpath
                .as_ref()
                .map(WorkerFastpath::handovers)
                .unwrap_or_default(),
        };
        let all = if wait {
            Some(
                self.published
                    .workers
                    .lock()
                    .unwrap_or_else(PoisonError::into_inner),
            )
        } else {
            match self.published.workers.try_lock() {
                Ok(all) => Some(all),
                Err(std::sync::TryLockError::Poisoned(p)) => Some(p.into_inner()),
                Err(std::sync::TryLockError::WouldBlock) => None,
            }
        };
        let Some(mut all) = all else {
            return false;
        };
        let old = all
            .get_mut(self.index)
            .map(|slot| std::mem::replace(slot, snapshot));
        drop(all);
        drop(old);
        true
    }
}

/// The engine time of a worker whose clock started at `start`.
pub fn now_since(start: Instant) -> Time {
    Time::from_micros(start.elapsed().as_micros() as u64)
}
