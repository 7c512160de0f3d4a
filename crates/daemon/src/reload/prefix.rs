//! A prefix change, by reload (SIGHUP) or upgrade (SIGUSR2): the new prefix is routed
//! into the TUN before any worker takes it; the old one is *retired* and its routes stay
//! until no worker holds a flow on it any more (the workers say which prefixes they
//! still hold in what they publish, about once a second; core's `engine/prefixes.rs`).

use std::sync::PoisonError;
use std::time::Duration;

use kracauer_core::addr::Prefix96;

use crate::run::Running;

/// A prefix the workers serve only for the flows that began under it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Retired {
    pub prefix: Prefix96,
    /// Reloads every worker must have taken before what it publishes counts: the reload
    /// that changed the prefix (0 for the flows a new process restored).
    pub after_reloads: u64,
}

/// Removes the routes of every retired prefix that no worker holds a flow on any more.
pub async fn drain_retired(running: &mut Running) {
    let drained: Vec<Prefix96> = {
        let workers = running
            .published
            .workers
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        running
            .retired
            .iter()
            .filter(|r| {
                workers.iter().all(|w| {
                    w.uptime > Duration::ZERO
                        && w.reloads >= r.after_reloads
                        && !w.retired.contains(&r.prefix)
                })
            })
            .map(|r| r.prefix)
            .collect()
    };
    for prefix in drained {
        if prefix == running.config.prefix {
            // Changed back before its flows ended: it is the current prefix again.
        } else if let Err(e) = running.host.unroute_prefix(prefix, &running.tun).await {
            tracing::error!(
                "prefix {prefix}: its routes could not be removed ({e}); they go at the exit"
            );
        } else {
            tracing::info!("prefix {prefix}: its last flow ended; its routes are removed");
        }
        running.retired.retain(|r| r.prefix != prefix);
    }
}
