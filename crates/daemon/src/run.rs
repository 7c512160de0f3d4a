//! `kracauer run`: the control plane. It loads the configuration, sets the host up,
//! starts one data-plane thread per TUN queue, then waits for signals on a
//! single-threaded tokio runtime:
//! - SIGHUP reloads the configuration: validated in full first; on error it is logged
//!   and nothing changes; on success the new route table goes to the data plane (other
//!   settings need a restart, and a reload that changes them says so);
//! - SIGINT and SIGTERM stop the data plane, undo the host set-up and exit 0.
//!
//! If a data-plane worker fails (the TUN went away), all stop, the set-up is undone and
//! `run` fails.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::{self, Sender};

use kracauer_core::engine::{self, Engine};
use kracauer_core::route::RouteTable;
use tokio::signal::unix::{SignalKind, signal};

use crate::config::{Config, ConfigError};
use crate::host::{Host, SetupError};
use crate::metrics;
use crate::routes::{self, Loaded};
use crate::runtime::{self, DataPlane};

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
    #[error("{what}: {source}")]
    Io {
        what: &'static str,
        #[source]
        source: std::io::Error,
    },
    #[error("the data plane stopped: {0}")]
    DataPlane(std::io::Error),
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

    let Loaded { config, routes } = routes::load(&path)?;
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
        Some(m) => match metrics::serve(m.listen, published.clone()).await {
            Ok(task) => {
                tracing::info!("metrics at http://{}/metrics", m.listen);
                Some(task)
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
    let engine_config = routes::per_worker(routes::engine_config(&config, seed), workers);
    let mut engines = Vec::with_capacity(workers);
    for index in 0..workers {
        let mut c = engine_config.clone();
        c.seed = routes::worker_seed(seed, index);
        match Engine::new(c, routes.clone()) {
            Ok(e) => engines.push(e),
            Err(e) => {
                undo(&mut host).await;
                return Err(e.into());
            }
        }
    }

    let stop = Arc::new(AtomicBool::new(false));
    let (done_tx, mut done_rx) = tokio::sync::mpsc::unbounded_channel();
    let mut senders = Vec::with_capacity(workers);
    let mut threads = Vec::with_capacity(workers);
    for ((index, queue), engine) in tun.into_queues().into_iter().enumerate().zip(engines) {
        let (routes_tx, routes_rx) = mpsc::channel();
        senders.push(routes_tx);
        let mut plane = DataPlane::new(
            index,
            queue,
            engine,
            routes_rx,
            stop.clone(),
            published.clone(),
        );
        // Says the worker ended however it ends, a panic included (a panicking worker
        // closes its queue, and the kernel then steers every flow anew: all stop).
        let done = Done(done_tx.clone(), index);
        let thread = std::thread::Builder::new()
            .name(format!("kracauer-w{index}"))
            .spawn(move || {
                let _done = done;
                let result = plane.run();
                (plane, result)
            });
        match thread {
            Ok(t) => threads.push(t),
            Err(e) => {
                stop.store(true, Ordering::Relaxed);
                for t in threads {
                    let _ = t.join();
                }
                undo(&mut host).await;
                return Err(RunError::Io {
                    what: "cannot start a data-plane thread",
                    source: e,
                });
            }
        }
    }
    drop(done_tx);
    tracing::info!(
        "kracauer {} running on {} (config {})",
        env!("CARGO_PKG_VERSION"),
        config.tun.name,
        path.display()
    );

    loop {
        tokio::select! {
            _ = hup.recv() => reload(&path, &config, &senders),
            _ = int.recv() => { tracing::info!("SIGINT: stopping"); break; }
            _ = term.recv() => { tracing::info!("SIGTERM: stopping"); break; }
            _ = done_rx.recv() => break,
        }
    }
    stop.store(true, Ordering::Relaxed);
    let joined: Vec<_> = threads.into_iter().map(|t| t.join()).collect();
    if let Some(task) = metrics {
        task.abort();
    }
    undo(&mut host).await;
    let mut result = Ok(());
    for j in joined {
        match j {
            Ok((plane, r)) => {
                drop(plane.into_queue());
                if let Err(e) = r {
                    result = result.and(Err(RunError::DataPlane(e)));
                }
            }
            Err(_) => {
                result = result.and(Err(RunError::DataPlane(std::io::Error::other(
                    "a data-plane thread panicked",
                ))));
            }
        }
    }
    result
}

/// Sends its worker's index when dropped: when the worker returns or unwinds.
struct Done(tokio::sync::mpsc::UnboundedSender<usize>, usize);

impl Drop for Done {
    fn drop(&mut self) {
        let _ = self.0.send(self.1);
    }
}

async fn undo(host: &mut Host) {
    for e in host.tear_down().await {
        tracing::error!("could not undo: {e}");
    }
}

/// SIGHUP: load and validate the file again; only a fully valid one changes anything.
fn reload(path: &Path, running: &Config, workers: &[Sender<Arc<RouteTable>>]) {
    match routes::load(path) {
        Err(e) => tracing::error!("reload refused, nothing changed: {e}"),
        Ok(Loaded {
            config,
            routes: table,
        }) => {
            for what in needs_restart(running, &config) {
                tracing::warn!(
                    "reload: {what} changed; that takes a restart (only routes are reloaded)"
                );
            }
            let names = table.len();
            let table = Arc::new(table);
            let taken = workers
                .iter()
                .filter(|w| w.send(table.clone()).is_ok())
                .count();
            if taken > 0 {
                tracing::info!("reload: {names} names from {}", path.display());
            }
        }
    }
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

    #[test]
    fn route_changes_alone_need_no_restart() {
        let b = parse(&BASE.replace("a.example", "b.example"));
        assert!(needs_restart(&parse(BASE), &b).is_empty());
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
