//! SIGHUP: the configuration file loaded and validated again, and applied to the running
//! daemon without dropping anything; an invalid file, or one the engine or the host
//! refuses, changes nothing.
//!
//! Applied ([`plan`]): the routes and `default_backend` (new flows route by them), the
//! `[timeouts]` and `[limits]` but `max_flows` (every worker's engine takes its share),
//! the `[[listen]]` addresses and ports (a live re-setup: what is added is diverted into
//! the TUN before the workers serve it, what is removed is undone after; flows on a
//! removed address or port end, the others go on, see the core's `engine/services.rs`),
//! `[metrics]` (the endpoint moves) and `prefix` (new flows take it, the old one is served
//! until its last flow ends: `reload/prefix.rs`). Not applied, named in a warning, the
//! running value kept: `limits.max_flows` and `[log]` (the flow table and the access log
//! are made at the start: an upgrade, SIGUSR2, applies them), `[tun] offload`, `workers`
//! and the fast path's settings (how the queues are opened: an upgrade applies them too),
//! and `[tun] name` and `instance` (a restart: [`how_to_apply`] says why). A new `[tun]
//! mtu` is set on the device, and new flows agree their MSS from it.

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use kracauer_core::engine;
use kracauer_core::route::{Health, RouteTable};

use crate::config::{Config, Limits, Listen};
use crate::metrics;
use crate::observe::RouteLabels;
use crate::routes::{self, Loaded};
use crate::run::{MetricsServer, Running, worker_configs};
use crate::runtime::{Control, Reload};

/// SIGHUP: load and validate the file again; only a fully valid one that the engine and
/// the host accept changes anything. `running.config` is the configuration in force
/// afterwards.
pub async fn reload(path: &Path, running: &mut Running) {
    let Loaded {
        config,
        routes: table,
    } = match routes::load(path) {
        Ok(loaded) => loaded,
        Err(e) => {
            tracing::error!("reload refused, nothing changed: {e}");
            running.control.reloaded(false);
            return;
        }
    };
    let workers = running.senders.len();
    let plan = plan(&running.config, &config);
    let names = table.len();
    let (monitor, now_up) = running.health.prepare(&plan.in_force, &table);
    let messages = match messages(&plan, running.seed, workers, Arc::new(table), now_up) {
        Ok(m) => m,
        Err(e) => {
            tracing::error!("reload refused, nothing changed: the engine refused it: {e}");
            running.control.reloaded(false);
            return;
        }
    };
    // Everything that can fail comes before anything changes: the metrics listener is
    // bound, then what the new listen set-up adds is diverted.
    let metrics = match plan.in_force.metrics {
        Some(m) if plan.in_force.metrics != running.config.metrics => {
            match std::net::TcpListener::bind(m.listen) {
                Ok(l) => Some(Some((l, m.listen))),
                Err(e) => {
                    tracing::error!(
                        "reload refused, nothing changed: cannot listen for metrics on {}: {e}",
                        m.listen
                    );
                    running.control.reloaded(false);
                    return;
                }
            }
        }
        None if running.config.metrics.is_some() => Some(None),
        _ => None,
    };
    // The host changes, each undone if a later one fails.
    let old_mtu = running.config.tun.mtu;
    let new_mtu = (plan.in_force.tun.mtu != old_mtu).then_some(plan.in_force.tun.mtu);
    if let Some(mtu) = new_mtu {
        if let Err(e) = running.host.set_mtu(&running.tun, mtu).await {
            tracing::error!(
                "reload refused, nothing changed: cannot set the TUN's MTU to {mtu}: {e}"
            );
            running.control.reloaded(false);
            return;
        }
    }
    let new_prefix = plan.reprefixes().then_some(plan.in_force.prefix);
    if let Some(prefix) = new_prefix {
        if let Err(e) = running.host.route_prefix(prefix, &running.tun).await {
            tracing::error!(
                "reload refused, nothing changed: cannot route the new prefix {prefix}: {e}"
            );
            if new_mtu.is_some() {
                restore_mtu(running, old_mtu).await;
            }
            running.control.reloaded(false);
            return;
        }
    }
    let undo = if plan.relistens() {
        match running.host.divert_for(&plan.in_force).await {
            Ok(undo) => undo,
            Err(e) => {
                tracing::error!(
                    "reload refused, nothing changed: cannot divert the new listen addresses and ports: {e}"
                );
                if let Some(prefix) = new_prefix {
                    if let Err(e) = running.host.unroute_prefix(prefix, &running.tun).await {
                        tracing::error!(
                            "while undoing the new prefix's routes (removed at the exit): {e}"
                        );
                    }
                }
                if new_mtu.is_some() {
                    restore_mtu(running, old_mtu).await;
                }
                running.control.reloaded(false);
                return;
            }
        }
    } else {
        Vec::new()
    };
    running.control.reloaded(true);
    if let (Some(mtu), Some(sc)) = (new_mtu, &running.syncookie) {
        sc.set_mtu(mtu);
    }
    if let Some(sc) = &running.syncookie {
        sc.set_max_half_open(plan.in_force.limits.max_half_open);
    }
    for what in &plan.restart {
        tracing::warn!(
            "reload: {what} changed; that takes {} (the running value stays in force)",
            how_to_apply(what)
        );
    }
    if let Some(prefix) = new_prefix {
        running
            .health
            .set_source(crate::health::check::source(prefix));
    }
    running.health.install(monitor);
    let mut taken = 0;
    for (worker, message) in running.senders.iter().zip(messages) {
        // A worker that has stopped no longer listens; the daemon is stopping then.
        if worker.send(Control::Reload(Box::new(message))).is_ok() {
            taken += 1;
        }
    }
    running.reloads_sent += 1;
    if new_prefix.is_some() {
        let old = running.config.prefix;
        running.retired.retain(|r| r.prefix != old);
        running.retired.push(Retired {
            prefix: old,
            after_reloads: running.reloads_sent,
        });
    }
    if taken > 0 {
        tracing::info!("reload: {names} names from {}", path.display());
        for change in &plan.applied {
            tracing::info!("reload: applied {change}");
        }
    }
    if !undo.is_empty() {
        // What is gone is undone only once every worker has ended the flows on it: a
        // worker with nothing to read (its flows on the kernel fast path) takes the
        // reload at its next wake-up, and until then the kernel would carry them on.
        settle(running).await;
    }
    for e in running.host.undivert(&undo).await {
        tracing::error!(
            "reload: could not undo a diversion no longer needed (removed at the exit): {e}"
        );
    }
    match metrics {
        Some(Some((listener, at))) => {
            let sources = metrics::Sources {
                published: running.published.clone(),
                log: running.access.counters(),
                control: running.control.clone(),
            };
            match MetricsServer::start(listener, metrics::Metrics::new(sources)) {
                Ok(server) => {
                    if let Some(old) = running.metrics.replace(server) {
                        old.task.abort();
                    }
                    tracing::info!("reload: metrics now at http://{at}/metrics");
                }
                Err(e) => tracing::error!("reload: metrics stay where they were: {e}"),
            }
        }
        Some(None) => {
            if let Some(old) = running.metrics.take() {
                old.task.abort();
            }
            tracing::info!("reload: metrics endpoint closed");
        }
        None => {}
    }
    running.config = plan.in_force;
}

/// Waits until every worker has published that it took every reload sent (they look
/// at least every 200 ms and publish every second), at most [`SETTLE_LIMIT`].
async fn settle(running: &Running) {
    let end = tokio::time::Instant::now() + SETTLE_LIMIT;
    loop {
        let taken = {
            let workers = running
                .published
                .workers
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner);
            workers.iter().all(|w| w.reloads >= running.reloads_sent)
        };
        if taken {
            return;
        }
        if tokio::time::Instant::now() >= end {
            tracing::warn!(
                "reload: not every worker said it took the reload within {} s; going on",
                SETTLE_LIMIT.as_secs()
            );
            return;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Longest a reload waits for the workers before undoing what it removed.
const SETTLE_LIMIT: Duration = Duration::from_secs(5);

/// Puts the TUN's MTU back after a refused reload had changed it.
async fn restore_mtu(running: &Running, mtu: u16) {
    if let Err(e) = running.host.set_mtu(&running.tun, mtu).await {
        tracing::error!("while putting the TUN's MTU back to {mtu}: {e}");
    }
}

/// What a reload from `running` to a valid `new` configuration does, with `workers`
/// data-plane workers.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Plan {
    /// The configuration in force after the reload: `new`'s routes, default backend,
    /// timeouts, limits, listen addresses and ports, metrics endpoint and prefix,
    /// `running`'s everything else (`limits.max_flows` included).
    pub in_force: Config,
    /// The settings that differ and a reload cannot apply, as named in the file.
    pub restart: Vec<&'static str>,
    /// The `[timeouts]`, `[limits]`, `[[listen]]` and `prefix` values that change in the
    /// running workers.
    pub applied: Vec<Change>,
}

impl Plan {
    /// Whether the workers' engines get new timeouts, limits or services.
    pub fn reconfigures(&self) -> bool {
        !self.applied.is_empty()
    }

    /// Whether the listen addresses or ports change (the host set-up with them).
    pub fn relistens(&self) -> bool {
        self.applied.iter().any(|c| c.key == "[[listen]]")
    }

    /// Whether the prefix changes (its routes with it).
    pub fn reprefixes(&self) -> bool {
        self.applied.iter().any(|c| c.key == "prefix")
    }
}

/// One `[timeouts]`, `[limits]` or `[[listen]]` value a reload changes.
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
        listen: new.listen.clone(),
        metrics: new.metrics,
        prefix: new.prefix,
        tun: crate::config::Tun {
            mtu: new.tun.mtu,
            ..running.tun.clone()
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
        "timeouts.connect_attempt",
        a.connect_attempt,
        b.connect_attempt,
    );
    time(
        "timeouts.syn_retransmit",
        a.syn_retransmit,
        b.syn_retransmit,
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
    if running.tun.mtu != new.tun.mtu {
        applied.push(Change {
            key: "[tun] mtu",
            from: running.tun.mtu.to_string(),
            to: new.tun.mtu.to_string(),
        });
    }
    if running.prefix != new.prefix {
        applied.push(Change {
            key: "prefix",
            from: running.prefix.to_string(),
            to: new.prefix.to_string(),
        });
    }
    if running.listen != new.listen {
        applied.push(Change {
            key: "[[listen]]",
            from: describe(&running.listen),
            to: describe(&new.listen),
        });
    }
    Plan {
        restart: needs_restart(running, new),
        applied,
        in_force,
    }
}

/// The listen addresses and ports, for the log: `203.0.113.10 tls [443] http [80]`.
fn describe(listen: &[Listen]) -> String {
    let each: Vec<String> = listen
        .iter()
        .map(|l| format!("{} tls {:?} http {:?}", l.address, l.tls, l.http))
        .collect();
    each.join(", ")
}

/// The messages for `workers` workers carrying out `plan`: the route table and its
/// backends' `health` for all, and each worker's engine configuration if the plan
/// changes timeouts, limits or services. An error
/// if the engine would refuse that configuration (then nothing should be sent).
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

/// How a setting [`needs_restart`] names is applied: `[tun] name` and `instance` only by
/// a restart (a live upgrade refuses them: the TUN device is the instance's identity, its
/// flows, routes, rules and fast-path pins are on it), the others by a live upgrade
/// (SIGUSR2) too.
pub fn how_to_apply(setting: &str) -> &'static str {
    match setting {
        "[tun] name" | "instance" => {
            "a restart, which resets every connection (a live upgrade refuses it: the TUN \
             device is this instance's identity; see \"Upgrades and restarts\" in the \
             operator guide)"
        }
        _ => "an upgrade (SIGUSR2) or a restart",
    }
}

/// The settings that differ between `a` and `b` and a reload cannot apply, one name
/// each: `[tun] name` and `instance` take a restart; `[tun] offload`, `workers`,
/// `fastpath`, `fastpath_interfaces` and `restart_grace`, `limits.max_flows`, `[log]` and
/// `[scale_out]` an upgrade (SIGUSR2) or a restart ([`how_to_apply`]).
pub fn needs_restart(a: &Config, b: &Config) -> Vec<&'static str> {
    let (x, y) = (&a.tun, &b.tun);
    [
        ("instance", a.instance != b.instance),
        ("[tun] name", x.name != y.name),
        ("[tun] offload", x.offload != y.offload),
        ("[tun] workers", x.workers != y.workers),
        ("[tun] fastpath", x.fastpath != y.fastpath),
        (
            "[tun] fastpath_interfaces",
            x.fastpath_interfaces != y.fastpath_interfaces,
        ),
        ("[tun] restart_grace", x.restart_grace != y.restart_grace),
        ("[log]", a.log != b.log),
        ("limits.max_flows", a.limits.max_flows != b.limits.max_flows),
        ("[scale_out]", a.scale_out != b.scale_out),
    ]
    .into_iter()
    .filter_map(|(setting, differs)| differs.then_some(setting))
    .collect()
}

mod prefix;
pub use prefix::{Retired, drain_retired};

#[cfg(test)]
mod tests;
