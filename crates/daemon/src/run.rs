//! `kracauer run`: the control plane. It loads the configuration, sets the host up,
//! starts one data-plane thread per TUN queue, then waits for signals on a
//! single-threaded tokio runtime:
//! - SIGHUP reloads the configuration ([`crate::reload`]): validated in full first; on
//!   error it is logged and nothing changes. On success the routes, `[timeouts]`,
//!   `[limits]` (all but `max_flows`; global, every worker checks the same counts),
//!   `[[listen]]`, `[metrics]` and `prefix` are applied to the
//!   running daemon; `[tun]`, `[log]` and `limits.max_flows` are not (an upgrade
//!   applies the last two), and the log says so;
//! - SIGUSR1 reopens a `file:` access log (logrotate);
//! - SIGUSR2 is a live upgrade ([`crate::upgrade`]);
//! - every second, the kernel fast path's program is looked at for the metrics
//!   ([`crate::fastpath::counters`]: attached or not, its counters);
//! - SIGINT and SIGTERM stop the data plane, turn the TUN's carrier off (a routing
//!   daemon following the link withdraws the instance), undo the host set-up, stop the
//!   carrier keeper ([`crate::keeper`], which holds the carrier for `[tun]
//!   restart_grace` after a crash while the fast path runs) and exit 0.
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

use kracauer_core::engine::{self, Engine, EngineConfig};
use tokio::signal::unix::{SignalKind, signal};

use crate::accesslog::{AccessLog, AccessLogError, Lines};
use crate::config::{Config, ConfigError};
use crate::health::{self, check};
use crate::host::{Host, SetupError};
use crate::notify;
use crate::observe::{Observer, RouteLabels};
use crate::reload;
use crate::routes::{self, Loaded};
use crate::runtime::{self, Control, DataPlane};
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
    #[error("the kernel fast path ([tun] fastpath = \"on\"): {0}")]
    Fastpath(#[from] crate::fastpath::FastpathError),
    #[error(transparent)]
    Instance(#[from] crate::instance::InstanceError),
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
            let running = upgrade::take_over(link, &path).await?;
            crate::instance::adopt(&running.config, &path, &crate::instance::state_dir());
            running
        }
        None => start(&path).await?,
    };
    // After a live upgrade too: the old process's keeper holds the carrier for its grace
    // once that process is gone; this one's covers this process.
    let keeper = crate::keeper::start(
        &running.tun,
        running.config.tun.restart_grace,
        running.fastpath.is_some(),
    );
    // The fast path's program is looked at once now (a scrape after the log's
    // "running on" sees it attached), then every second for the metrics.
    let mut look_tick = tokio::time::interval(crate::fastpath::counters::LOOK_EVERY);
    look_tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
    look_tick.tick().await;
    running.control.fastpath.look(running.fastpath.as_ref());
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

    let mut retire_tick = tokio::time::interval(std::time::Duration::from_secs(1));
    loop {
        tokio::select! {
            _ = hup.recv() => {
                notify::reloading();
                reload::reload(&path, &mut running).await;
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
                        // The keeper's input closes with this process: it keeps the
                        // carrier for its grace, in case the new process dies too.
                        drop(keeper);
                        return Ok(());
                    }
                    upgrade::Upgrade::Failed(why) => {
                        tracing::error!("upgrade failed, serving on: {why}");
                    }
                }
            }
            _ = look_tick.tick() => running.control.fastpath.look(running.fastpath.as_ref()),
            _ = retire_tick.tick(), if !running.retired.is_empty() => {
                reload::drain_retired(&mut running).await;
            }
            _ = int.recv() => { tracing::info!("SIGINT: stopping"); break; }
            _ = term.recv() => { tracing::info!("SIGTERM: stopping"); break; }
            _ = running.workers.ended() => break,
        }
    }
    notify::stopping();
    stop(running, keeper).await
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
    /// What the workers publish, for the metrics endpoint (a reload may move it).
    pub published: runtime::Published,
    /// The access log's thread (the workers hold its senders).
    pub access: AccessLog,
    /// The control plane's own counters (reloads), for the metrics.
    pub control: Arc<metrics::Control>,
    /// The kernel fast path, when it runs (removed on an orderly stop).
    pub fastpath: Option<crate::fastpath::Fastpath>,
    /// The kernel's SYN cookies, when the fast path runs (removed on an orderly stop).
    pub syncookie: Option<crate::fastpath::syncookie::Handle>,
    /// The lock on this instance's identity (`None` in a process that took over in a
    /// live upgrade: it holds the lock by an inherited descriptor).
    pub claim: Option<crate::instance::Claim>,
    /// Reloads sent to the workers since this process started.
    pub reloads_sent: u64,
    /// Prefixes changed since that flows still hold: routed until their last flow ends.
    pub retired: Vec<reload::Retired>,
    /// Second chance's receiver, if `[scale_out]` is configured (dropping it stops it).
    pub second_chance: Option<crate::secondchance::Receiver>,
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
    // Before the host is touched: a configuration that would collide with an instance
    // running here stops the start (its leftover removal would take the other's routes).
    // A record that cannot be written (a state directory this user may not write) only
    // costs the collision check of later starts, as a sysctl record does its clean-up.
    let claim = match crate::instance::Claim::take(&config, path, &crate::instance::state_dir()) {
        Ok(claim) => Some(claim),
        Err(e @ crate::instance::InstanceError::Io { .. }) => {
            tracing::warn!("{e}; other instances cannot see this one");
            None
        }
        Err(e) => return Err(e.into()),
    };
    // Before the host is touched: an access log that cannot be opened stops the start.
    let access = AccessLog::start(&config.log, Lines::from_filter())?;
    let control = Arc::new(metrics::Control::default());
    let seed = routes::os_seed().map_err(RunError::Seed)?;
    let routes = Arc::new(routes);
    // Validated before the host is touched; each worker gets its own engine below.
    Engine::new(routes::engine_config(&config, seed), routes.clone())?;
    // Bound before the host is touched: an address that is not this host's stops the start.
    let second_chance_socket = match &config.scale_out {
        Some(s) => Some(crate::secondchance::bind(s).map_err(io("second chance"))?),
        None => None,
    };
    // The steering key from the seed: second chance steers by it, and a live upgrade's
    // new process knows it again.
    let options = crate::host::HostOptions {
        steer_key: Some(kracauer_core::steer::SteerKey::from_seed(&seed)),
        ..Default::default()
    };
    let (mut host, tun) = Host::set_up_with(&config, &options).await?;
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
    let steering = tun.steering();
    let (fastpath, fastpath_maps) = match start_fastpath(&config, workers, tun.first_queue_fd()) {
        Ok(f) => f,
        Err(e) => {
            undo(&mut host).await;
            return Err(e);
        }
    };
    // The flows a killed daemon left on the fast path, each for the worker the steering
    // program sends its packets to: adopted below, before any packet is read.
    let mut adopt = match &fastpath {
        Some(fp) => {
            let engines: Vec<&Engine> = engines.iter().collect();
            crate::fastpath::divide(fp.entries(), &engines, steering, true).0
        }
        None => Vec::new(),
    }
    .into_iter();
    let syncookie = crate::fastpath::syncookie::start(
        &config,
        fastpath.as_ref(),
        crate::fastpath::syncookie::root(&config.tun, seed),
        control.syncookie.clone(),
        engines.first().map(|e| e.shared_limits().clone()),
    );
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
    let second_chance = match crate::secondchance::start_for(
        &config,
        second_chance_socket,
        workers,
        &seed,
        published.second_chance.clone(),
    ) {
        Ok(s) => s,
        Err(e) => {
            undo(&mut host).await;
            return Err(RunError::Io {
                what: "cannot start second chance",
                source: e,
            });
        }
    };
    let mut links = second_chance.links.into_iter();
    let mut fastpath_maps = fastpath_maps.into_iter();
    for ((index, queue), engine) in queues.into_iter().enumerate().zip(engines) {
        let (reload_tx, reload_rx) = mpsc::channel();
        senders.push(reload_tx);
        let plane = DataPlane::new(
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
        )
        .with_second_chance(links.next().flatten());
        planes.push(match fastpath_maps.next() {
            Some(maps) => {
                let mut plane = plane.with_fastpath(maps);
                let (adopted, refused) = plane.adopt_fastpath(adopt.next().unwrap_or_default());
                if adopted + refused > 0 {
                    tracing::info!(
                        "fast path: worker {index} adopted {adopted} flows an earlier run left on the kernel path ({refused} refused)"
                    );
                }
                plane
            }
            None => plane,
        });
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
        published,
        access,
        control,
        fastpath,
        syncookie,
        claim,
        reloads_sent: 0,
        retired: Vec::new(),
        second_chance: second_chance.receiver,
    })
}

/// The kernel fast path as `[tun] fastpath` asks (`crate::fastpath::start`), and one
/// handle on its maps per worker.
pub fn start_fastpath(
    config: &Config,
    workers: usize,
    tun_fd: std::os::fd::BorrowedFd<'_>,
) -> Result<
    (
        Option<crate::fastpath::Fastpath>,
        Vec<crate::fastpath::WorkerFastpath>,
    ),
    RunError,
> {
    let Some(fp) = crate::fastpath::start(&config.tun, config.limits.max_flows, tun_fd)? else {
        return Ok((None, Vec::new()));
    };
    let mut maps = Vec::with_capacity(workers);
    for _ in 0..workers {
        match crate::fastpath::WorkerFastpath::open(fp.dir()) {
            Ok(m) => maps.push(m),
            Err(e) => {
                let _ = fp.remove_all();
                return Err(e.into());
            }
        }
    }
    Ok((Some(fp), maps))
}

/// An orderly stop: the workers stopped, the TUN's carrier off (a routing daemon that
/// follows it withdraws the instance at once), every flow still open logged (outcome
/// `shutdown`), the host set-up undone, the carrier keeper stopped before the device's
/// last queue closes (a queue it holds would keep the device).
async fn stop(running: Running, keeper: Option<crate::keeper::Keeper>) -> Result<(), RunError> {
    let Running {
        mut host,
        workers,
        metrics,
        access,
        fastpath,
        syncookie,
        claim,
        config,
        ..
    } = running;
    let (planes, errors) = workers.finish();
    if let Some(plane) = planes.first() {
        use std::os::fd::AsFd;
        if let Err(e) = crate::tun::syscalls::set_carrier(plane.queue().as_fd(), false) {
            tracing::warn!(
                "cannot turn the TUN's carrier off ({e}): it goes with the device instead"
            );
        }
    }
    if let Some(m) = metrics {
        m.task.abort();
    }
    undo(&mut host).await;
    match claim {
        Some(claim) => claim.release(),
        None => crate::instance::remove(config.instance, &crate::instance::state_dir()),
    }
    // The program goes before the queues close: with the TUN (if Kracauer made it
    // persistent, it goes with its last descriptor again).
    let mut queues = Vec::with_capacity(planes.len());
    for mut plane in planes {
        plane.close_flows();
        queues.push(plane.into_queue());
    }
    if let Some(sc) = syncookie {
        sc.stop(true);
    }
    if let Some(fp) = fastpath {
        if let Err(e) = fp.remove_all() {
            tracing::error!("could not remove the fast path: {e}");
        }
    }
    if let Some(k) = keeper {
        k.stop(&config.tun.name);
    }
    drop(queues);
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
    // One cookie root for all workers (and the kernel's SYN cookie program): a cookie
    // any of them made opens the flow at any other.
    shared.cookie_root = Some(crate::fastpath::syncookie::root(&config.tun, seed));
    (0..workers)
        .map(|index| EngineConfig {
            seed: routes::worker_seed(seed, index),
            ..shared.clone()
        })
        .collect()
}
