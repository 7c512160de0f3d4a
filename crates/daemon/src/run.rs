//! `kracauer run`: the control plane. It loads the configuration, sets the host up,
//! starts one data-plane thread per TUN queue, then waits for signals on a
//! single-threaded tokio runtime:
//! - SIGHUP reloads the configuration: validated in full first; on error it is logged
//!   and nothing changes. On success every worker gets the new route table and, if they
//!   changed, the new `[timeouts]` and `[limits]` (global: every worker checks the
//!   same counts), all but `limits.max_flows`; the log names each value applied. The other settings
//!   (`prefix`, `[tun]`, `[[listen]]`, `[metrics]`, `[log]`, `limits.max_flows`) take a
//!   restart: a reload that changes them says so and keeps the running values ([`plan`]);
//! - SIGUSR1 reopens a `file:` access log (logrotate);
//! - SIGINT and SIGTERM stop the data plane, undo the host set-up and exit 0.
//!
//! If a data-plane worker fails (the TUN went away), all stop, the set-up is undone and
//! `run` fails.
//!
//! Under systemd (`Type=notify`) it says READY=1 once the host is set up and the workers
//! run, RELOADING=1 and READY=1 around a reload, STOPPING=1 when it stops, and on a live
//! upgrade hands the service's main PID to the new process ([`notify`]).

use std::os::fd::OwnedFd;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::{self, Sender};
use std::time::Duration;

use kracauer_core::engine::{self, Engine, EngineConfig};
use kracauer_core::route::{Health, RouteTable};
use tokio::signal::unix::{SignalKind, signal};

use crate::accesslog::{AccessLog, AccessLogError, Lines};
use crate::config::{Config, ConfigError, Limits};
use crate::health::{self, check};
use crate::host::{Host, SetupError};
use crate::notify;
use crate::observe::{Observer, RouteLabels};
use crate::routes::{self, Loaded};
use crate::runtime::{self, Control, DataPlane, Reload};
use crate::upgrade;
use crate::workers::Workers;
use crate::{logging, metrics};

/// Why `kracauer run` stopped with an error.
#[derive(Debug, thiserror::Error)]
pub enum RunError {
    #[error(transparent)]
    Config(#[from] ConfigError),
    #[error("the engine refused the configuration: {0}")]
    Engine(#[from] engine::ConfigError),
    #[error("cannot draw a random seed from the OS: {0}")]
    Seed(getrandom::Error),
    #[error("host set-up failed: {0}")]
    Setup(#[from] SetupError),
    #[error(transparent)]
    AccessLog(#[from] AccessLogError),
    #[error("{what}: {source}")]
    Io {
        what: &'static str,
        #[source]
        source: std::io::Error,
    },
    #[error("the data plane stopped: {0}")]
    DataPlane(std::io::Error),
    #[error("upgrade: {0}")]
    Upgrade(String),
}

fn io(what: &'static str) -> impl FnOnce(std::io::Error) -> RunError {
    move |source| RunError::Io { what, source }
}

/// Runs the daemon until SIGINT or SIGTERM (`Ok`) or a failure (`Err`).
pub fn run(path: &Path) -> Result<(), RunError> {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(io("cannot start the control-plane runtime"))?;
    rt.block_on(control(path.to_owned()))
}

async fn control(path: PathBuf) -> Result<(), RunError> {
    // Signals first: a SIGTERM during set-up must not kill us half-way.
    let mut hup = signal(SignalKind::hangup()).map_err(io("cannot catch SIGHUP"))?;
    let mut int = signal(SignalKind::interrupt()).map_err(io("cannot catch SIGINT"))?;
    let mut term = signal(SignalKind::terminate()).map_err(io("cannot catch SIGTERM"))?;
    let mut usr2 = signal(SignalKind::user_defined2()).map_err(io("cannot catch SIGUSR2"))?;
    let mut usr1 = signal(SignalKind::user_defined1()).map_err(io("cannot catch SIGUSR1"))?;
    let origin = upgrade::Origin::at_start();

    let mut running = match upgrade::inherited() {
        Some(link) => {
            let link = link.map_err(|e| RunError::Upgrade(format!("no handover socket: {e}")))?;
            upgrade::take_over(link, &path).await?
        }
        None => start(&path).await?,
    };
    tracing::info!(
        "kracauer {} running on {} (config {}, pid {})",
        env!("CARGO_PKG_VERSION"),
        running.config.tun.name,
        path.display(),
        std::process::id()
    );
    let workers = running.senders.len();
    let status = format!(
        "running on {}, {workers} worker{}",
        running.config.tun.name,
        if workers == 1 { "" } else { "s" }
    );
    notify::ready(&status);

    loop {
        tokio::select! {
            _ = hup.recv() => {
                notify::reloading();
                let config = running.config.clone();
                running.config = reload(
                    &path,
                    config,
                    running.seed,
                    &running.senders,
                    &mut running.health,
                    &running.control,
                );
                notify::ready(&status);
            }
            _ = usr1.recv() => match running.access.reopen() {
                Some(file) => tracing::info!("SIGUSR1: reopening the access log {}", file.display()),
                None => tracing::info!("SIGUSR1: the access log is not a file; nothing to reopen"),
            },
            changed = running.health.next() => {
                for h in changed.iter() {
                    for worker in &running.senders {
                        let _ = worker.send(Control::Health(h.clone()));
                    }
                }
            }
            _ = usr2.recv() => {
                tracing::info!("SIGUSR2: upgrading to {}", origin.exe.display());
                match upgrade::upgrade(&origin, &mut running) {
                    upgrade::Upgrade::Committed { pid } => {
                        tracing::info!(
                            "upgrade: pid {pid} took over; exiting, the host set-up left to it"
                        );
                        notify::hand_over(pid);
                        return Ok(());
                    }
                    upgrade::Upgrade::Failed(why) => {
                        tracing::error!("upgrade failed, serving on: {why}");
                    }
                }
            }
            _ = int.recv() => { tracing::info!("SIGINT: stopping"); break; }
            _ = term.recv() => { tracing::info!("SIGTERM: stopping"); break; }
            _ = running.workers.ended() => break,
        }
    }
    notify::stopping();
    stop(running).await
}

/// What a running daemon holds: what `control` serves with, and what an upgrade hands
/// over.
#[derive(Debug)]
pub struct Running {
    pub config: Config,
    /// The seed every worker's secrets are drawn from.
    pub seed: [u8; 32],
    pub tun: String,
    pub offload: bool,
    pub host: Host,
    pub workers: Workers,
    /// Each worker's control channel (reloads, backend health), in worker order.
    pub senders: Vec<Sender<Control>>,
    /// Backend health, decided here for all workers alike (see `health`).
    pub health: health::Plane,
    pub metrics: Option<MetricsServer>,
    /// The access log's thread (the workers hold its senders).
    pub access: AccessLog,
    /// The control plane's own counters (reloads), for the metrics.
    pub control: Arc<metrics::Control>,
}

/// The metrics endpoint: its task, and its listener's descriptor for an upgrade.
#[derive(Debug)]
pub struct MetricsServer {
    pub task: tokio::task::JoinHandle<()>,
    pub fd: OwnedFd,
}

impl MetricsServer {
    /// Serves `metrics` at `/metrics` on `listener` (a task of the current runtime).
    pub fn start(
        listener: std::net::TcpListener,
        metrics: metrics::Metrics,
    ) -> std::io::Result<Self> {
        listener.set_nonblocking(true)?;
        let fd = OwnedFd::from(listener.try_clone()?);
        let listener = tokio::net::TcpListener::from_std(listener)?;
        Ok(Self {
            task: metrics::serve_on(listener, metrics),
            fd,
        })
    }
}

/// A start from nothing: the host set up (leftovers of a crash removed first), a fresh
/// seed, one engine per queue, the workers started.
async fn start(path: &Path) -> Result<Running, RunError> {
    let Loaded { config, routes } = routes::load(path)?;
    logging::apply_config_level(config.log.level.as_deref());
    // Before the host is touched: an access log that cannot be opened stops the start.
    let access = AccessLog::start(&config.log, Lines::from_filter())?;
    let control = Arc::new(metrics::Control::default());
    let seed = routes::os_seed().map_err(RunError::Seed)?;
    let routes = Arc::new(routes);
    // Validated before the host is touched; each worker gets its own engine below.
    Engine::new(routes::engine_config(&config, seed), routes.clone())?;
    let (mut host, tun) = Host::set_up(&config).await?;
    if host.leftovers > 0 {
        tracing::warn!(
            "removed {} rules and routes left by an earlier run that did not exit cleanly",
            host.leftovers
        );
    }
    for line in host.describe(config.prefix, &config.tun.name) {
        tracing::info!("{line}");
    }
    let workers = tun.queue_count();
    let offload = tun.offload();
    tracing::info!(
        "data plane: {workers} worker{}, TUN offloads {}",
        if workers == 1 { "" } else { "s" },
        if offload {
            "on (GSO super-packets translated whole)"
        } else {
            "off"
        }
    );

    let published = runtime::published(workers);
    published.offload.store(offload, Ordering::Relaxed);
    let metrics = match config.metrics {
        Some(m) => match std::net::TcpListener::bind(m.listen).and_then(|l| {
            let sources = metrics::Sources {
                published: published.clone(),
                log: access.counters(),
                control: control.clone(),
            };
            MetricsServer::start(l, metrics::Metrics::new(sources))
        }) {
            Ok(server) => {
                tracing::info!("metrics at http://{}/metrics", m.listen);
                Some(server)
            }
            Err(e) => {
                undo(&mut host).await;
                return Err(RunError::Io {
                    what: "cannot listen for metrics",
                    source: e,
                });
            }
        },
        None => None,
    };

    // Every worker's engine before any thread starts, so a failure here leaves nothing
    // running. Each worker has its own secrets (ISNs, cookies, hash keys, IPv4 IDs):
    // the seed with the worker's index mixed in; a flow's packets, cookie ACK included,
    // always reach the worker that answered its SYN.
    let mut engines = Vec::with_capacity(workers);
    for c in worker_configs(&config, seed, workers) {
        match Engine::new(c, routes.clone()) {
            Ok(e) => engines.push(e),
            Err(e) => {
                undo(&mut host).await;
                return Err(e.into());
            }
        }
    }
    let tun_name = tun.name().to_owned();
    let queues = match tun.into_queues() {
        Ok(q) => q,
        Err(e) => {
            undo(&mut host).await;
            return Err(RunError::Io {
                what: "cannot take the TUN queues",
                source: e,
            });
        }
    };
    let stop = Arc::new(AtomicBool::new(false));
    let mut senders = Vec::with_capacity(workers);
    let mut planes = Vec::with_capacity(workers);
    // Backend health: decided here, for all workers alike (see `health`).
    let source = check::source(config.prefix);
    let (health, reports) = health::Plane::start(&config, &routes, source, published.clone());
    for ((index, queue), engine) in queues.into_iter().enumerate().zip(engines) {
        let (reload_tx, reload_rx) = mpsc::channel();
        senders.push(reload_tx);
        planes.push(
            DataPlane::new(
                index,
                queue,
                engine,
                reload_rx,
                stop.clone(),
                published.clone(),
            )
            .with_reports(reports.clone())
            .observing(
                Observer::new(routes.clone(), RouteLabels::new(&config)),
                access.sender(),
            ),
        );
    }
    // A panicking worker closes its queue, and the kernel then steers every flow anew:
    // `control` stops all when one ends.
    let workers = match Workers::start(planes, stop) {
        Ok(w) => w,
        Err(e) => {
            undo(&mut host).await;
            return Err(RunError::Io {
                what: "cannot start a data-plane thread",
                source: e,
            });
        }
    };
    Ok(Running {
        config,
        seed,
        tun: tun_name,
        offload,
        host,
        workers,
        senders,
        health,
        metrics,
        access,
        control,
    })
}

/// An orderly stop: the workers stopped, every flow still open logged (outcome
/// `shutdown`), the host set-up undone.
async fn stop(running: Running) -> Result<(), RunError> {
    let Running {
        mut host,
        workers,
        metrics,
        access,
        ..
    } = running;
    let (planes, errors) = workers.finish();
    if let Some(m) = metrics {
        m.task.abort();
    }
    undo(&mut host).await;
    for mut plane in planes {
        plane.close_flows();
        drop(plane.into_queue());
    }
    // Every worker, and with it every sender, is gone: what is queued is written.
    let (written, dropped) = access.finish();
    tracing::info!("access log: {written} lines written, {dropped} dropped");
    match errors.into_iter().next() {
        Some(e) => Err(RunError::DataPlane(e)),
        None => Ok(()),
    }
}

async fn undo(host: &mut Host) {
    for e in host.tear_down().await {
        tracing::error!("could not undo: {e}");
    }
}

/// Every worker's engine configuration for `config`: the flow table shared out among
/// `workers` ([`routes::per_worker`]), one set of limit counts for all of them
/// ([`routes::shared_limits`]), and each worker's own seed drawn from `seed`
/// ([`routes::worker_seed`]).
pub fn worker_configs(config: &Config, seed: [u8; 32], workers: usize) -> Vec<EngineConfig> {
    let mut shared = routes::per_worker(routes::engine_config(config, seed), workers);
    shared.shared_limits = Some(routes::shared_limits(seed));
    (0..workers)
        .map(|index| EngineConfig {
            seed: routes::worker_seed(seed, index),
            ..shared.clone()
        })
        .collect()
}

/// SIGHUP: load and validate the file again; only a fully valid one changes anything.
/// Returns the configuration in force afterwards.
fn reload(
    path: &Path,
    running: Config,
    seed: [u8; 32],
    workers: &[Sender<Control>],
    health: &mut health::Plane,
    control: &metrics::Control,
) -> Config {
    let Loaded {
        config,
        routes: table,
    } = match routes::load(path) {
        Ok(loaded) => loaded,
        Err(e) => {
            tracing::error!("reload refused, nothing changed: {e}");
            control.reloaded(false);
            return running;
        }
    };
    let plan = plan(&running, &config);
    let names = table.len();
    let (monitor, now_up) = health.prepare(&plan.in_force, &table);
    let messages = match messages(&plan, seed, workers.len(), Arc::new(table), now_up) {
        Ok(m) => m,
        Err(e) => {
            tracing::error!("reload refused, nothing changed: the engine refused it: {e}");
            control.reloaded(false);
            return running;
        }
    };
    control.reloaded(true);
    for what in &plan.restart {
        tracing::warn!(
            "reload: {what} changed; that takes a restart (the running value stays in force)"
        );
    }
    health.install(monitor);
    let mut taken = 0;
    for (worker, message) in workers.iter().zip(messages) {
        // A worker that has stopped no longer listens; the daemon is stopping then.
        if worker.send(Control::Reload(Box::new(message))).is_ok() {
            taken += 1;
        }
    }
    if taken > 0 {
        tracing::info!("reload: {names} names from {}", path.display());
        for change in &plan.applied {
            tracing::info!("reload: applied {change}");
        }
    }
    plan.in_force
}

/// What a reload from `running` to a valid `new` configuration does, with `workers`
/// data-plane workers.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Plan {
    /// The configuration in force after the reload: `new`'s routes, default backend,
    /// timeouts and limits, `running`'s everything else (`limits.max_flows` included).
    pub in_force: Config,
    /// The settings that differ and only a restart applies, as named in the file.
    pub restart: Vec<&'static str>,
    /// The `[timeouts]` and `[limits]` values that change in the running workers.
    pub applied: Vec<Change>,
}

impl Plan {
    /// Whether the workers' engines get new timeouts or limits.
    pub fn reconfigures(&self) -> bool {
        !self.applied.is_empty()
    }
}

/// One `[timeouts]` or `[limits]` value a reload changes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Change {
    /// As written in the file, e.g. `timeouts.peek`.
    pub key: &'static str,
    pub from: String,
    pub to: String,
}

impl std::fmt::Display for Change {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} {} -> {}", self.key, self.from, self.to)
    }
}

/// Which settings a reload from `running` to `new` applies and which take a restart.
/// The limits a reload applies are global, the same whatever the number of workers.
pub fn plan(running: &Config, new: &Config) -> Plan {
    let in_force = Config {
        routes: new.routes.clone(),
        default_backend: new.default_backend.clone(),
        timeouts: new.timeouts,
        limits: Limits {
            // The flow table (and the timer heap) is sized for it at the start.
            max_flows: running.limits.max_flows,
            ..new.limits
        },
        ..running.clone()
    };
    let mut applied = Vec::new();
    let mut time = |key, from: Duration, to: Duration| {
        if from != to {
            applied.push(Change {
                key,
                from: humantime::format_duration(from).to_string(),
                to: humantime::format_duration(to).to_string(),
            });
        }
    };
    let (a, b) = (&running.timeouts, &new.timeouts);
    time("timeouts.peek", a.peek, b.peek);
    time("timeouts.connect", a.connect, b.connect);
    time(
        "timeouts.syn_retransmit",
        a.syn_retransmit,
        b.syn_retransmit,
    );
    time(
        "timeouts.connect_attempt",
        a.connect_attempt,
        b.connect_attempt,
    );
    time("timeouts.idle", a.idle, b.idle);
    time("timeouts.linger", a.linger, b.linger);
    time("timeouts.custody", a.custody, b.custody);
    let mut limit = |key, from: u64, to: u64| {
        if from != to {
            applied.push(Change {
                key,
                from: from.to_string(),
                to: to.to_string(),
            });
        }
    };
    let (a, b) = (&running.limits, &new.limits);
    limit(
        "limits.max_half_open",
        a.max_half_open as u64,
        b.max_half_open as u64,
    );
    limit(
        "limits.peek_bytes",
        a.peek_bytes as u64,
        b.peek_bytes as u64,
    );
    limit(
        "limits.peeks_per_client",
        u64::from(a.peeks_per_client),
        u64::from(b.peeks_per_client),
    );
    limit(
        "limits.peek_memory",
        a.peek_memory as u64,
        b.peek_memory as u64,
    );
    Plan {
        restart: needs_restart(running, new),
        applied,
        in_force,
    }
}

/// The messages for `workers` workers carrying out `plan`: the route table and its
/// backends' `health` for all, and each worker's engine configuration if the plan
/// changes timeouts or limits. An error if the engine would refuse that configuration
/// (then nothing should be sent).
pub fn messages(
    plan: &Plan,
    seed: [u8; 32],
    workers: usize,
    routes: Arc<RouteTable>,
    health: Arc<Health>,
) -> Result<Vec<Reload>, engine::ConfigError> {
    let labels = RouteLabels::new(&plan.in_force);
    if !plan.reconfigures() {
        return Ok(vec![
            Reload {
                routes,
                labels,
                config: None,
                health,
            };
            workers
        ]);
    }
    let configs = worker_configs(&plan.in_force, seed, workers);
    for c in &configs {
        c.validate()?;
    }
    Ok(configs
        .into_iter()
        .map(|c| Reload {
            routes: routes.clone(),
            labels: labels.clone(),
            config: Some(c),
            health: health.clone(),
        })
        .collect())
}

/// The settings that differ between `a` and `b` and only a restart applies.
pub fn needs_restart(a: &Config, b: &Config) -> Vec<&'static str> {
    let mut out = Vec::new();
    if a.prefix != b.prefix {
        out.push("prefix");
    }
    if a.tun != b.tun {
        out.push("[tun]");
    }
    if a.listen != b.listen {
        out.push("[[listen]]");
    }
    if a.metrics != b.metrics {
        out.push("[metrics]");
    }
    if a.log != b.log {
        out.push("[log]");
    }
    if a.limits.max_flows != b.limits.max_flows {
        out.push("limits.max_flows");
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config;

    const BASE: &str = "prefix = \"2001:db8:64::/96\"\n\n[[listen]]\naddress = \"203.0.113.10\"\ntls = [443]\n\n[[route]]\nhosts = [\"a.example\"]\nbackend = \"2001:db8:1::2\"\n";

    fn parse(text: &str) -> Config {
        config::parse(text, Path::new("k.toml")).expect("valid")
    }

    /// `BASE` with `[timeouts]` and `[limits]` tables of `timeouts` and `limits`.
    fn with(timeouts: &str, limits: &str) -> String {
        format!("{BASE}\n[timeouts]\n{timeouts}\n\n[limits]\n{limits}\n")
    }

    fn keys(plan: &Plan) -> Vec<&'static str> {
        plan.applied.iter().map(|c| c.key).collect()
    }

    #[test]
    fn route_changes_alone_need_no_restart() {
        let b = parse(&BASE.replace("a.example", "b.example"));
        assert!(needs_restart(&parse(BASE), &b).is_empty());
        let plan = plan(&parse(BASE), &b);
        assert!(plan.restart.is_empty());
        assert!(!plan.reconfigures());
        assert_eq!(plan.in_force, b);
    }

    #[test]
    fn timeouts_and_limits_apply_live_but_max_flows_takes_a_restart() {
        let running = parse(&with("", "max_flows = 10000"));
        let new = parse(&with(
            "peek = \"10s\"\nidle = \"1h\"",
            "max_flows = 20000\nmax_half_open = 1001\npeek_bytes = 4096",
        ));
        let plan = plan(&running, &new);
        assert_eq!(plan.restart, ["limits.max_flows"]);
        assert_eq!(
            keys(&plan),
            [
                "timeouts.peek",
                "timeouts.idle",
                "limits.max_half_open",
                "limits.peek_bytes"
            ]
        );
        let said: Vec<String> = plan.applied.iter().map(ToString::to_string).collect();
        assert_eq!(
            said,
            [
                "timeouts.peek 5s -> 10s",
                "timeouts.idle 2h 4m -> 1h",
                "limits.max_half_open 16384 -> 1001",
                "limits.peek_bytes 16384 -> 4096",
            ]
        );
        assert_eq!(plan.in_force.timeouts, new.timeouts);
        assert_eq!(plan.in_force.limits.max_half_open, 1001);
        assert_eq!(plan.in_force.limits.max_flows, 10000, "the running value");
    }

    #[test]
    fn every_timeout_and_every_limit_but_max_flows_is_applied() {
        let running = parse(BASE);
        let new = parse(&with(
            "peek = \"1s\"\nconnect = \"2s\"\nsyn_retransmit = \"3s\"\nidle = \"4s\"\nlinger = \"5s\"\ncustody = \"0s\"",
            "max_half_open = 1\npeek_bytes = 2\npeeks_per_client = 3\npeek_memory = 4",
        ));
        let plan = plan(&running, &new);
        assert!(plan.restart.is_empty());
        assert_eq!(
            keys(&plan),
            [
                "timeouts.peek",
                "timeouts.connect",
                "timeouts.syn_retransmit",
                "timeouts.idle",
                "timeouts.linger",
                "timeouts.custody",
                "limits.max_half_open",
                "limits.peek_bytes",
                "limits.peeks_per_client",
                "limits.peek_memory",
            ]
        );
        assert_eq!(plan.in_force, new);
    }

    #[test]
    fn settings_that_take_a_restart_keep_their_running_values() {
        let running = parse(BASE);
        let new = parse(
            &BASE
                .replace("2001:db8:64::/96", "2001:db8:65::/96")
                .replace("a.example", "b.example"),
        );
        let plan = plan(&running, &new);
        assert_eq!(plan.restart, ["prefix"]);
        assert_eq!(plan.in_force.prefix, running.prefix);
        assert_eq!(plan.in_force.routes, new.routes);
    }

    #[test]
    fn a_reload_without_new_timeouts_or_limits_sends_only_routes() {
        let c = parse(BASE);
        let plan = plan(&c, &c);
        let table = Arc::new(RouteTable::builder().build());
        let sent = messages(&plan, [7; 32], 3, table, Arc::default()).expect("valid");
        assert_eq!(sent.len(), 3);
        assert!(sent.iter().all(|m| m.config.is_none()));
    }

    #[test]
    fn workers_engines_take_the_reloaded_timeouts_and_limits() {
        let workers = 2;
        let seed = [7; 32];
        // A small flow table: every engine allocates its table up front.
        let running = parse(&with("", "max_flows = 1000"));
        let table = Arc::new(routes::route_table(&running, Path::new("k.toml")).expect("routes"));
        let mut engines: Vec<Engine> = worker_configs(&running, seed, workers)
            .into_iter()
            .map(|c| Engine::new(c, table.clone()).expect("engine"))
            .collect();
        let new = parse(&with(
            "peek = \"9s\"\nlinger = \"1s\"",
            "max_flows = 4000\nmax_half_open = 100\npeek_memory = 1000001\npeeks_per_client = 5",
        ));
        let plan = plan(&running, &new);
        let sent = messages(&plan, seed, workers, table, Arc::default()).expect("valid");
        for (index, (engine, message)) in engines.iter_mut().zip(sent).enumerate() {
            let (tx, rx) = mpsc::channel();
            tx.send(Control::Reload(Box::new(message))).expect("send");
            assert_eq!(runtime::take_reloads(engine, &rx, index), 1);
            let c = engine.config();
            assert_eq!(c.peek_timeout, Duration::from_secs(9));
            assert_eq!(c.linger, Duration::from_secs(1));
            assert_eq!(c.connect_timeout, Duration::from_secs(5), "unchanged");
            assert_eq!(c.max_half_open, 100, "global, not divided");
            assert_eq!(c.max_peek_bytes, 1_000_001, "global, not divided");
            assert_eq!(c.max_peeking_per_client, 5, "global, not divided");
            assert_eq!(c.max_flows, 500, "still a half of the running 1000");
            assert_eq!(c.seed, routes::worker_seed(seed, index), "own seed kept");
        }
    }

    #[test]
    fn log_changes_take_a_restart() {
        let b = parse(&format!("{BASE}\n[log]\naccess = \"off\"\n"));
        assert_eq!(needs_restart(&parse(BASE), &b), ["[log]"]);
    }

    #[test]
    fn prefix_and_listen_changes_are_named_as_needing_a_restart() {
        let b = parse(
            &BASE
                .replace("2001:db8:64::/96", "2001:db8:65::/96")
                .replace("tls = [443]", "tls = [443, 8443]"),
        );
        assert_eq!(needs_restart(&parse(BASE), &b), ["prefix", "[[listen]]"]);
    }
}
