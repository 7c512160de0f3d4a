//! The new process's side of the upgrade: validate, restore, adopt, say ready, and wait
//! for the commit before reading a packet.

use std::io;
use std::os::fd::{AsFd, OwnedFd};
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc;
use std::time::Instant;

use kracauer_core::engine::Engine;
use kracauer_core::engine::snapshot::{SNAPSHOT_VERSION, version};
use kracauer_core::steer::SteerKey;
use rustix::process::Pid;

use super::link::{Kind, Link};
use super::state::State;
use super::syscalls::claim_inherited;
use super::{FD_ENV, READY_TIMEOUT, TESTING_SNAPSHOT_VERSION_ENV};
use super::{offload, workers};
use crate::accesslog::{AccessLog, Lines};
use crate::config::FastpathMode;
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
        Ok((running, retire)) => {
            let (mut running, old) = commit(&link, running)?;
            // `fastpath = "off"`: the old process's program and maps go now, not before
            // the commit (a failed upgrade leaves the old process as it was).
            if let Some(fd) = retire {
                crate::fastpath::retire(&running.tun, fd.as_fd());
            }
            if running.config.tun.offload != running.offload {
                reopen(&mut running, old)?;
            }
            running.workers.resume().map_err(|e| {
                RunError::Upgrade(format!("cannot start the data-plane threads: {e}"))
            })?;
            relisten(&mut running).await;
            Ok(running)
        }
        Err(why) => {
            let _ = link.send(Kind::Fail, why.as_bytes(), &[]);
            Err(RunError::Upgrade(why))
        }
    }
}

/// Says ready and waits for the commit; only then may the workers start. Also returns
/// the old process's pid (this one's parent until it exits).
fn commit(link: &Link, running: Running) -> Result<(Running, Option<Pid>), RunError> {
    let fail = |why: String| RunError::Upgrade(why);
    // The old process is this one's parent until it exits.
    let old = rustix::process::getppid();
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
    Ok((running, old))
}

/// `[tun] offload` changed: every queue re-opened in the new mode once the old process
/// has exited (`upgrade/offload.rs`), the fast path's descriptor of the device let go of
/// meanwhile and taken again from the new queues.
fn reopen(running: &mut Running, old: Option<Pid>) -> Result<(), RunError> {
    let want = running.config.tun.offload;
    let kept = running.fastpath.as_mut().and_then(|fp| fp.swap_tun(None));
    let had = kept.is_some();
    drop(kept);
    let got =
        offload::reopen(running.workers.parked_mut(), &running.tun, want, old).map_err(|e| {
            RunError::Upgrade(format!("after the commit, re-opening the TUN queues: {e}"))
        })?;
    if had {
        let fd = running
            .workers
            .parked()
            .first()
            .map(|p| p.queue().as_fd().try_clone_to_owned());
        match (fd, running.fastpath.as_mut()) {
            (Some(Ok(fd)), Some(fp)) => drop(fp.swap_tun(Some(fd))),
            (Some(Err(e)), _) => tracing::warn!(
                "upgrade: the fast path keeps no descriptor of the TUN (to make it transient at the stop): {e}"
            ),
            _ => {}
        }
    }
    running.offload = got;
    running.published.offload.store(got, Ordering::Relaxed);
    Ok(())
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
/// Also returns, with `[tun] fastpath = "off"`, a descriptor of the TUN to remove the old
/// process's fast path with once committed.
async fn prepare(link: &Link, path: &Path) -> Result<(Running, Option<OwnedFd>), String> {
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
            "[tun] name is {:?}, the running TUN is {:?}: that takes {}",
            config.tun.name,
            state.tun,
            crate::reload::how_to_apply("[tun] name")
        ));
    }
    if !crate::instance::held(config.instance, &crate::instance::state_dir()) {
        return Err(format!(
            "instance = {} is not the running instance's number: that takes {}",
            config.instance,
            crate::reload::how_to_apply("instance")
        ));
    }
    let accepted = std::env::var(TESTING_SNAPSHOT_VERSION_ENV)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(SNAPSHOT_VERSION);
    let start = Instant::now();
    for (index, bytes) in state.snapshots.iter().enumerate() {
        let found = version(bytes).map_err(|e| format!("worker {index}'s snapshot: {e}"))?;
        if found != accepted {
            return Err(format!(
                "worker {index}'s snapshot has format version {found}; this build reads version {accepted}"
            ));
        }
    }
    // `[tun] workers`: the flows divided among another number of workers
    // (`upgrade/workers.rs`).
    let handed = workers;
    let queues = workers::requeue(queues, Host::workers(&config));
    let workers = queues.len();
    let key = SteerKey::from_seed(&state.seed);
    let snapshots: Vec<&[u8]> = state.snapshots.iter().map(Vec::as_slice).collect();
    let configs = worker_configs(&config, state.seed, workers);
    let engines = workers::restore(configs, &routes, &snapshots, key)?;
    if workers != handed {
        tracing::info!(
            "upgrade: the flows of {handed} workers divided among {workers}, as the kernel steers them"
        );
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
    // Second chance on a socket of its own (`SO_REUSEPORT`: the old process still has
    // one), steering by the key drawn from the seed, as the device does.
    let second_chance = crate::secondchance::start_for(
        &config,
        None,
        workers,
        &state.seed,
        published.second_chance.clone(),
    )
    .map_err(|e| format!("second chance: {e}"))?;
    let mut links = second_chance.links.into_iter();
    let mut senders = Vec::with_capacity(workers);
    let mut planes = Vec::with_capacity(workers);
    // The old process's program, links and maps are adopted (this build's program takes
    // their place behind the links), and the flows it had handed over stay on the fast
    // path: each restored engine marks its own handed over again. With `off` they stay
    // until the commit (`take_over`).
    let first = queues[0].as_fd();
    let (retire, (fastpath, fastpath_maps)) = if config.tun.fastpath == FastpathMode::Off {
        let fd = first.try_clone_to_owned().map_err(|e| e.to_string())?;
        (Some(fd), (None, Vec::new()))
    } else {
        let started = crate::run::start_fastpath(&config, workers, first);
        (None, started.map_err(|e| e.to_string())?)
    };
    let mut fastpath = fastpath;
    let mut adopt = match &mut fastpath {
        Some(fp) => {
            let refs: Vec<&Engine> = engines.iter().collect();
            let (each, stale) = crate::fastpath::divide(fp.entries(), &refs, None, false);
            for (key, e) in &stale {
                tracing::info!(
                    "upgrade: removing the fast-path entry of {}, a flow no worker holds",
                    e.addrs(key).client
                );
                fp.remove(&e.addrs(key));
            }
            each
        }
        None => Vec::new(),
    }
    .into_iter();
    let syncookie = crate::fastpath::syncookie::start(
        &config,
        fastpath.as_ref(),
        crate::fastpath::syncookie::root(&config.tun, state.seed),
        control.syncookie.clone(),
        engines.first().map(|e| e.shared_limits().clone()),
    );
    let mut fastpath_maps = fastpath_maps.into_iter();
    workers::steer(handed, &queues, key)?;
    for (index, (fd, engine)) in queues.into_iter().zip(engines).enumerate() {
        let (tx, rx) = mpsc::channel();
        senders.push(tx);
        let queue = Queue::adopt(fd, state.offload);
        let plane = DataPlane::new(index, queue, engine, rx, stop.clone(), published.clone())
            .with_reports(reports.clone())
            .observing(
                Observer::new(routes.clone(), RouteLabels::new(&config)),
                access.sender(),
            )
            .with_second_chance(links.next().flatten());
        let plane = plane.started_at(start);
        planes.push(match fastpath_maps.next() {
            Some(maps) => {
                let mut plane = plane.with_fastpath(maps);
                let (kept, refused) = plane.adopt_fastpath(adopt.next().unwrap_or_default());
                tracing::info!(
                    "upgrade: worker {index} keeps {kept} flows on the fast path ({refused} refused)"
                );
                plane
            }
            None => plane,
        });
    }
    // `[tun] mtu`: new flows agree their MSS from it, the restored ones keep theirs. Last
    // of the fallible steps, so that a failed upgrade leaves the device as it was.
    host.set_mtu(&state.tun, config.tun.mtu)
        .await
        .map_err(|e| format!("cannot set the TUN's MTU to {}: {e}", config.tun.mtu))?;

    tracing::info!("upgrade: restored {flows} flows on {workers} queues; ready");
    Ok((
        Running {
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
            second_chance: second_chance.receiver,
        },
        retire,
    ))
}

/// The metrics server on the listener handed over if it is bound where the
/// configuration says, else on a new one.
fn metrics_server(
    listen: std::net::SocketAddr,
    handed: Option<OwnedFd>,
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
