//! Backend health, decided in one place for every worker (DESIGN.md step 3, "Choose").
//!
//! Each worker owns an engine, and all of them must agree on which backends are up:
//! placement is by client address, and a client's connections are spread over workers
//! by port, so workers with different views would split one client over backends. So
//! health lives here, in the control plane: workers report every failed connect attempt
//! ([`Report`], from the engine's `BackendFailed` events), active checks report their
//! results, and the [`Monitor`] turns both into one [`Health`] set that every worker
//! gets (`runtime::Control::Health`), exported as `kracauer_backend_up{route,backend}`
//! and logged when it changes.
//!
//! - **Passive.** `max_fails` failures of one backend within `fail_timeout` mark it
//!   down for `fail_timeout`; then it is up again and real traffic tries it (and its
//!   failures count anew). A pool of one backend is never marked down passively: there
//!   is nowhere else to send its clients, and a refusal would be no better than a try.
//! - **Active** (a pool with `check_interval`): [`check`] connects to every backend of
//!   the pool at that interval. [`FALL`] failed checks in a row mark it down, [`RISE`]
//!   good ones up again; a good check also ends a passive down.
//!
//! A backend is up when neither says it is down. Time is passed in, so the rules are
//! tested without a clock.

pub mod check;

use std::collections::{HashMap, VecDeque};
use std::net::{Ipv6Addr, SocketAddrV6};
use std::sync::{Arc, PoisonError};
use std::time::{Duration, Instant};

use kracauer_core::engine::ConnectFailure;
use kracauer_core::route::{Health, RouteTable};
use tokio::sync::mpsc::{UnboundedReceiver, UnboundedSender, unbounded_channel};

use self::check::{Checked, Checks};
use crate::config::{ActiveCheck, Config, PoolHealth};
use crate::runtime::Published;

/// Failed active checks in a row that mark a backend down.
pub const FALL: u32 = 2;
/// Good active checks in a row that bring it back.
pub const RISE: u32 = 2;

/// A worker's report of a failed connect attempt.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Report {
    /// The route's label (its first host, or `default`).
    pub route: Box<str>,
    pub backend: SocketAddrV6,
    pub cause: ConnectFailure,
}

/// One backend as metrics show it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BackendState {
    pub route: String,
    pub backend: Ipv6Addr,
    pub up: bool,
    /// Failed connect attempts reported since the daemon started.
    pub failures: u64,
}

/// A change of a backend's state, for the log.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Change {
    pub route: String,
    pub backend: Ipv6Addr,
    pub up: bool,
    pub why: &'static str,
}

/// What an active check task checks.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Target {
    pub route: String,
    pub backend: Ipv6Addr,
    pub check: ActiveCheck,
}

#[derive(Debug, Clone)]
struct Backend {
    route: String,
    address: Ipv6Addr,
    slot: u32,
    rules: PoolHealth,
    /// Whether passive failures can mark it down (`max_fails` > 0, a pool of more than
    /// one).
    passive: bool,
    /// Failures within the window, oldest first.
    recent: VecDeque<Instant>,
    down_until: Option<Instant>,
    /// Checks in a row that went the other way than `checked_up` says.
    streak: u32,
    /// What the active checks say (up until they say otherwise).
    checked_up: bool,
    failures: u64,
    up: bool,
}

impl Backend {
    fn is_up(&self) -> bool {
        self.down_until.is_none() && self.checked_up
    }
}

/// Every backend's health.
#[derive(Debug, Default)]
pub struct Monitor {
    backends: Vec<Backend>,
    /// (route label, address) → index in `backends`.
    index: HashMap<(String, Ipv6Addr), usize>,
}

impl Monitor {
    /// Every backend of `table` (built from `config`) up.
    pub fn new(config: &Config, table: &RouteTable) -> Self {
        let mut m = Monitor::default();
        for route in table.all_routes() {
            let rules = route
                .index()
                .and_then(|i| config.routes.get(i))
                .map_or_else(PoolHealth::default, |r| r.health);
            let backends = route.pool().backends();
            for b in backends {
                m.index
                    .insert((route.label().to_owned(), b.address()), m.backends.len());
                m.backends.push(Backend {
                    route: route.label().to_owned(),
                    address: b.address(),
                    slot: b.slot(),
                    rules,
                    passive: rules.max_fails > 0 && backends.len() > 1,
                    recent: VecDeque::new(),
                    down_until: None,
                    streak: 0,
                    checked_up: true,
                    failures: 0,
                    up: true,
                });
            }
        }
        m
    }

    /// The monitor for a reloaded `table`: backends it keeps (same route label and
    /// address) keep their state and counts, new ones start up.
    pub fn reload(&self, config: &Config, table: &RouteTable) -> Self {
        let mut next = Monitor::new(config, table);
        for b in &mut next.backends {
            let Some(old) = self.find(&b.route, b.address) else {
                continue;
            };
            b.failures = old.failures;
            b.recent = old.recent.clone();
            b.down_until = old.down_until.filter(|_| b.passive);
            if b.rules.check.is_some() && old.rules.check.is_some() {
                b.checked_up = old.checked_up;
                b.streak = old.streak;
            }
            b.up = b.is_up();
        }
        next
    }

    fn find(&self, route: &str, address: Ipv6Addr) -> Option<&Backend> {
        let i = *self.index.get(&(route.to_owned(), address))?;
        self.backends.get(i)
    }

    fn find_mut(&mut self, route: &str, address: Ipv6Addr) -> Option<&mut Backend> {
        let i = *self.index.get(&(route.to_owned(), address))?;
        self.backends.get_mut(i)
    }

    /// A worker reported a failed attempt at `now`. Reports about backends this
    /// configuration does not have (a reload raced them) are ignored.
    pub fn failed(&mut self, report: &Report, now: Instant) -> Option<Change> {
        let b = self.find_mut(&report.route, *report.backend.ip())?;
        b.failures += 1;
        if !b.passive || b.down_until.is_some() {
            return None;
        }
        let window = b.rules.fail_timeout;
        b.recent.push_back(now);
        while b
            .recent
            .front()
            .is_some_and(|t| now.saturating_duration_since(*t) >= window)
        {
            b.recent.pop_front();
        }
        if b.recent.len() < b.rules.max_fails as usize {
            return None;
        }
        b.recent.clear();
        b.down_until = Some(now + window);
        update(b, "connect attempts failed")
    }

    /// An active check of `route`'s `backend` succeeded (`ok`) or failed.
    pub fn checked(&mut self, route: &str, backend: Ipv6Addr, ok: bool) -> Option<Change> {
        let b = self.find_mut(route, backend)?;
        if ok == b.checked_up {
            b.streak = 0;
        } else {
            b.streak += 1;
            let needed = if ok { RISE } else { FALL };
            if b.streak >= needed {
                b.checked_up = ok;
                b.streak = 0;
            }
        }
        if ok && b.checked_up {
            // A backend that answers its checks is tried again at once.
            b.down_until = None;
            b.recent.clear();
        }
        let why = if ok {
            "active checks succeed"
        } else {
            "active checks fail"
        };
        update(b, why)
    }

    /// Ends the passive downs due at `now`; what changed.
    pub fn tick(&mut self, now: Instant) -> Vec<Change> {
        let mut changes = Vec::new();
        for b in &mut self.backends {
            if b.down_until.is_some_and(|t| t <= now) {
                b.down_until = None;
                changes.extend(update(b, "its time down is over; real traffic tries it"));
            }
        }
        changes
    }

    /// When [`tick`](Self::tick) has something to do next.
    pub fn next_wake(&self) -> Option<Instant> {
        self.backends.iter().filter_map(|b| b.down_until).min()
    }

    /// The health set for the table this monitor was built for.
    pub fn health(&self) -> Health {
        let mut h = Health::all_up();
        for b in self.backends.iter().filter(|b| !b.up) {
            h.set(b.slot, false);
        }
        h
    }

    /// Every backend, for metrics.
    pub fn states(&self) -> Vec<BackendState> {
        self.backends
            .iter()
            .map(|b| BackendState {
                route: b.route.clone(),
                backend: b.address,
                up: b.up,
                failures: b.failures,
            })
            .collect()
    }

    /// The backends active checks are configured for.
    pub fn targets(&self) -> Vec<Target> {
        self.backends
            .iter()
            .filter_map(|b| {
                b.rules.check.map(|check| Target {
                    route: b.route.clone(),
                    backend: b.address,
                    check,
                })
            })
            .collect()
    }

    /// The shortest active check interval, if any (for the log).
    pub fn fastest_check(&self) -> Option<Duration> {
        self.targets().iter().map(|t| t.check.interval).min()
    }
}

/// The control plane's side of health: the monitor, the check tasks, and the channels
/// that feed them. Runs on the control plane's tokio runtime.
#[derive(Debug)]
pub struct Plane {
    monitor: Monitor,
    checks: Checks,
    source: Ipv6Addr,
    reports: UnboundedReceiver<Report>,
    checked_tx: UnboundedSender<Checked>,
    checked: UnboundedReceiver<Checked>,
    published: Published,
}

impl Plane {
    /// Health for `table` (built from `config`), every backend up, active checks started
    /// from `source`; workers report into the sender returned.
    pub fn start(
        config: &Config,
        table: &RouteTable,
        source: Ipv6Addr,
        published: Published,
    ) -> (Self, UnboundedSender<Report>) {
        let (reports_tx, reports) = unbounded_channel();
        let (checked_tx, checked) = unbounded_channel();
        let monitor = Monitor::new(config, table);
        let mut plane = Plane {
            checks: Checks::default(),
            monitor: Monitor::default(),
            source,
            reports,
            checked_tx,
            checked,
            published,
        };
        plane.install(monitor);
        (plane, reports_tx)
    }

    /// The monitor a reload to `config` and `table` would install (nothing changes
    /// yet), and the health set the workers get with the new table.
    pub fn prepare(&self, config: &Config, table: &RouteTable) -> (Monitor, Arc<Health>) {
        let next = self.monitor.reload(config, table);
        let health = Arc::new(next.health());
        (next, health)
    }

    /// The address the checks [`install`](Self::install) starts come from (a new
    /// prefix's: the old one's routes go when its last flow ends).
    pub fn set_source(&mut self, source: Ipv6Addr) {
        self.source = source;
    }

    /// Puts `monitor` in force: its checks started, its states published.
    pub fn install(&mut self, monitor: Monitor) {
        self.monitor = monitor;
        self.checks = Checks::default();
        self.checks = check::spawn(self.monitor.targets(), self.source, &self.checked_tx);
        if let Some(every) = self.monitor.fastest_check() {
            tracing::info!(
                "active health checks from {} (every {} at the fastest)",
                self.source,
                humantime::format_duration(every)
            );
        }
        self.publish();
    }

    /// Waits for the next report, check result or end of a passive down; returns the
    /// new health set when a backend changed state. Cancel-safe (only channel receives
    /// and a sleep are awaited).
    pub async fn next(&mut self) -> Option<Arc<Health>> {
        let wake = self.monitor.next_wake();
        let changes: Vec<Change> = tokio::select! {
            Some(r) = self.reports.recv() => self.monitor.failed(&r, Instant::now()).into_iter().collect(),
            Some(c) = self.checked.recv() => self.monitor.checked(&c.route, c.backend, c.ok).into_iter().collect(),
            _ = sleep_until(wake), if wake.is_some() => self.monitor.tick(Instant::now()),
            else => {
                std::future::pending::<()>().await;
                Vec::new()
            }
        };
        for c in &changes {
            log_change(c);
        }
        self.publish();
        (!changes.is_empty()).then(|| Arc::new(self.monitor.health()))
    }

    fn publish(&self) {
        *self
            .published
            .backends
            .lock()
            .unwrap_or_else(PoisonError::into_inner) = self.monitor.states();
    }
}

async fn sleep_until(at: Option<Instant>) {
    if let Some(at) = at {
        tokio::time::sleep_until(at.into()).await;
    }
}

/// Recomputes `b`'s state; the change, if it changed.
fn update(b: &mut Backend, why: &'static str) -> Option<Change> {
    let up = b.is_up();
    if up == b.up {
        return None;
    }
    b.up = up;
    Some(Change {
        route: b.route.clone(),
        backend: b.address,
        up,
        why,
    })
}

/// Logs a change of state.
pub fn log_change(c: &Change) {
    if c.up {
        tracing::info!(route = %c.route, backend = %c.backend, "backend up: {}", c.why);
    } else {
        tracing::warn!(route = %c.route, backend = %c.backend, "backend down: {}", c.why);
    }
}

#[cfg(test)]
mod tests;
