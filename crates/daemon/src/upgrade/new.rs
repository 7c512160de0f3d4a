//! The new process's side of the upgrade: validate, restore, adopt, say ready, and wait
//! for the commit before reading a packet.

use std::io;
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc;
use std::time::Instant;

use kracauer_core::engine::Engine;
use kracauer_core::engine::snapshot::{SNAPSHOT_VERSION, version};
use kracauer_core::time::Time;

use super::link::{Kind, Link};
use super::state::State;
use super::syscalls::claim_inherited;
use super::{FD_ENV, READY_TIMEOUT, TESTING_SNAPSHOT_VERSION_ENV};
use crate::accesslog::{AccessLog, Lines};
use crate::health::{self, check};
use crate::host::Host;
use crate::observe::{Observer, RouteLabels};
use crate::reload::Retired;
use crate::routes::{self, Loaded};
use crate::run::{MetricsServer, RunError, Running, worker_configs};
use crate::runtime::{self, DataPlane};
use crate::tun::Queue;
use crate::workers::Workers;
use crate::{logging, metrics};

/// How long the old process has to send its state once this one said hello.
const STATE_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(60);

/// The handover socket, if this process was started by an upgrade.
pub fn inherited() -> Option<io::Result<Link>> {
    let raw = std::env::var(FD_ENV).ok()?;
    let fd = raw
        .parse()
        .map_err(|_| io::Error::other(format!("{FD_ENV}={raw} is not a descriptor number")))
        .and_then(claim_inherited);
    Some(fd.and_then(|fd| {
        rustix::io::fcntl_setfd(&fd, rustix::io::FdFlags::CLOEXEC)?;
        Ok(Link::new(fd))
    }))
}

/// Takes over from the process at the other end of `link`, with the configuration at
/// `path`. Any failure is told to the old process (which then serves on) and returned;
/// nothing of the host set-up is touched either way.
pub async fn take_over(link: Link, path: &Path) -> Result<Running, RunError> {
    match prepare(&link, path).await {
        Ok(running) => {
            let mut running = commit(&link, running)?;
            relisten(&mut running).await;
            Ok(running)
        }
        Err(why) => {
            let _ = link.send(Kind::Fail, why.as_bytes(), &[]);
            Err(RunError::Upgrade(why))
        }
    }
}

/// Says ready and waits for the commit; only then do the workers start.
fn commit(link: &Link, mut running: Running) -> Result<Running, RunError> {
    let fail = |why: String| RunError::Upgrade(why);
    link.send(Kind::Ready, &[], &[])
        .map_err(|e| fail(format!("cannot say ready: {e}")))?;
    match link.recv(READY_TIMEOUT) {
        Ok(m) if m.kind == Kind::Commit => {}
        // The old process is gone after the state was handed over: nobody else serves.
        Err(e) if e.kind() == io::ErrorKind::UnexpectedEof => {
            tracing::warn!("upgrade: the old process went away without a commit; taking over")
        }
        Ok(m) => {
            return Err(fail(format!(
                "the old process sent {:?}, not a commit",
                m.kind
            )));
        }
        Err(e) => return Err(fail(format!("no commit from the old process: {e}"))),
    }
    running
        .workers
        .resume()
        .map_err(|e| fail(format!("cannot start the data-plane threads: {e}")))?;
    Ok(running)
}

/// After the commit: brings the host's diversions to this configuration's listen
/// addresses and ports, if they changed (the engines serve the new ones already, and
/// end the flows of removed ones). Nothing of the host is touched before the commit, so
/// that a failed upgrade leaves the old process's set-up as it was.
async fn relisten(running: &mut Running) {
    match running.host.divert_for(&running.config).await {
        Ok(undo) => {
            for e in running.host.undivert(&undo).await {
                tracing::error!(
                    "upgrade: could not undo a diversion no longer needed (removed at the exit): {e}"
                );
            }
        }
        Err(e) => tracing::error!(
            "upgrade: cannot divert the new listen addresses and ports ({e}); the old ones stay diverted"
        ),
    }
}

/// Everything before "ready": the reason as text on failure, for the old process's log.
async fn prepare(link: &Link, path: &Path) -> Result<Running, String> {
    let Loaded { config, routes } = routes::load(path).map_err(|e| e.to_string())?;
    let routes = Arc::new(routes);
    logging::apply_config_level(config.log.level.as_deref());
    let access = AccessLog::start(&config.log, Lines::from_filter()).map_err(|e| e.to_string())?;
    let control = Arc::new(metrics::Control::default());
    link.send(Kind::Hello, env!("CARGO_PKG_VERSION").as_bytes(), &[])
        .map_err(|e| format!("cannot say hello: {e}"))?;
    let m = link
        .recv(STATE_TIMEOUT)
        .map_err(|e| format!("no state from the old process: {e}"))?;
    if m.kind != Kind::State {
        return Err(format!("the old process sent {:?}, not its state", m.kind));
    }
    let state = State::decode(&m.payload)?;
    let mut fds = m.fds.into_iter();
    let queues: Vec<_> = fds.by_ref().take(usize::from(state.queues)).collect();
    let metrics_fd = if state.metrics { fds.next() } else { None };
    let workers = queues.len();
    if workers != usize::from(state.queues) || state.snapshots.len() != workers || workers == 0 {
        return Err(format!(
            "{} queue descriptors and {} snapshots for {} queues",
            workers,
            state.snapshots.len(),
            state.queues
        ));
    }
    if state.tun != config.tun.name {
        return Err(format!(
            "[tun] name is {:?}, the running TUN is {:?}: that takes a restart",
            config.tun.name, state.tun
        ));
    }
    if !crate::instance::held(config.instance, &crate::instance::state_dir()) {
        return Err(format!(
            "instance = {} is not the running instance's number: that takes a restart",
            config.instance
        ));
    }
    if Host::workers(&config) != workers {
        tracing::warn!(
            "upgrade: keeping the {workers} TUN queues handed over; a change of [tun] workers takes a restart"
        );
    }
    if !config.tun.offload && state.offload {
        tracing::warn!(
            "upgrade: keeping the TUN queues as they were opened, with offloads; [tun] offload = false takes a restart"
        );
    }
    let accepted = std::env::var(TESTING_SNAPSHOT_VERSION_ENV)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(SNAPSHOT_VERSION);
    let start = Instant::now();
    let mut engines = Vec::with_capacity(workers);
    for (index, (c, bytes)) in worker_configs(&config, state.seed, workers)
        .into_iter()
        .zip(&state.snapshots)
        .enumerate()
    {
        let found = version(bytes).map_err(|e| format!("worker {index}'s snapshot: {e}"))?;
        if found != accepted {
            return Err(format!(
                "worker {index}'s snapshot has format version {found}; this build reads version {accepted}"
            ));
        }
        let engine = Engine::restore(c, routes.clone(), bytes, Time::ZERO)
            .map_err(|e| format!("worker {index}'s snapshot refused: {e}"))?;
        engines.push(engine);
    }
    let flows: usize = engines.iter().map(Engine::flow_count).sum();
    let host = Host::adopt(
        crate::instance::Ids::of(config.instance),
        &config.tun.name,
        state.sysctls,
        state.diverts,
    )
    .map_err(|e| e.to_string())?;
    // A new prefix: routed before any packet is read; the restored flows keep theirs,
    // whose routes stay until the last of them ends (`reload/prefix.rs`).
    host.route_prefix(config.prefix, &state.tun)
        .await
        .map_err(|e| format!("cannot route the prefix {}: {e}", config.prefix))?;
    let mut retired: Vec<Retired> = Vec::new();
    for prefix in engines
        .iter()
        .flat_map(|e| e.retired_prefixes().iter().copied())
    {
        if !retired.iter().any(|r| r.prefix == prefix) {
            retired.push(Retired {
                prefix,
                after_reloads: 0,
            });
        }
    }
    let published = runtime::published(workers);
    published.offload.store(state.offload, Ordering::Relaxed);
    let metrics = match config.metrics {
        Some(m) => {
            let sources = metrics::Sources {
                published: published.clone(),
                log: access.counters(),
                control: control.clone(),
            };
            Some(metrics_server(
                m.listen,
                metrics_fd,
                metrics::Metrics::new(sources),
            )?)
        }
        None => None,
    };
    let stop = Arc::new(AtomicBool::new(true));
    // Backend health starts afresh (all up) in the new process: passive health learns
    // again from real traffic, active checks from their first round.
    let source = check::source(config.prefix);
    let (health, reports) = health::Plane::start(&config, &routes, source, published.clone());
    let mut senders = Vec::with_capacity(workers);
    let mut planes = Vec::with_capacity(workers);
    // A fresh fast path: the old process's pins go (its flows return to the TUN path,
    // where the restored engines know them), new flows are handed over as they splice.
    let (fastpath, fastpath_maps) =
        crate::run::start_fastpath(&config, workers).map_err(|e| e.to_string())?;
    let syncookie = crate::fastpath::syncookie::start(
        &config,
        fastpath.as_ref(),
        crate::fastpath::syncookie::root(&config.tun, state.seed),
        control.syncookie.clone(),
    );
    let mut fastpath_maps = fastpath_maps.into_iter();
    for (index, (fd, engine)) in queues.into_iter().zip(engines).enumerate() {
        let (tx, rx) = mpsc::channel();
        senders.push(tx);
        let queue = Queue::adopt(fd, state.offload);
        let plane = DataPlane::new(index, queue, engine, rx, stop.clone(), published.clone())
            .with_reports(reports.clone())
            .observing(
                Observer::new(routes.clone(), RouteLabels::new(&config)),
                access.sender(),
            );
        let plane = match fastpath_maps.next() {
            Some(maps) => plane.with_fastpath(maps),
            None => plane,
        };
        planes.push(plane.started_at(start));
    }
    // `[tun] mtu`: new flows agree their MSS from it, the restored ones keep theirs. Last
    // of the fallible steps, so that a failed upgrade leaves the device as it was.
    host.set_mtu(&state.tun, config.tun.mtu)
        .await
        .map_err(|e| format!("cannot set the TUN's MTU to {}: {e}", config.tun.mtu))?;
    tracing::info!("upgrade: restored {flows} flows on {workers} queues; ready");
    Ok(Running {
        tun: state.tun,
        offload: state.offload,
        seed: state.seed,
        host,
        workers: Workers::new_parked(planes, stop),
        senders,
        health,
        metrics,
        published,
        config,
        access,
        control,
        fastpath,
        syncookie,
        claim: None,
        reloads_sent: 0,
        retired,
    })
}

/// The metrics server on the listener handed over if it is bound where the
/// configuration says, else on a new one.
fn metrics_server(
    listen: std::net::SocketAddr,
    handed: Option<std::os::fd::OwnedFd>,
    metrics: metrics::Metrics,
) -> Result<MetricsServer, String> {
    let handed = handed
        .map(std::net::TcpListener::from)
        .filter(|l| l.local_addr().is_ok_and(|a| a == listen));
    let listener = match handed {
        Some(l) => l,
        None => std::net::TcpListener::bind(listen)
            .map_err(|e| format!("cannot listen for metrics on {listen}: {e}"))?,
    };
    MetricsServer::start(listener, metrics).map_err(|e| format!("metrics: {e}"))
}
