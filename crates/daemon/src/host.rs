//! The host set-up as one unit: the TUN, the sysctls and the netlink routes and rules,
//! set up in order and undone in reverse, with the leftovers of a crashed run removed
//! first.

use kracauer_core::addr::Prefix96;

use crate::config::{Config, MAX_WORKERS};
use crate::netlink::{Divert, NetError, Netlink, Plan, Sysctls};
use crate::steer::{self, Steering};
use crate::tun::{Tun, TunOptions};

/// A set-up that failed (what was done of it is undone already).
#[derive(Debug, thiserror::Error)]
pub enum SetupError {
    #[error(transparent)]
    Net(#[from] NetError),
    #[error(transparent)]
    Tun(#[from] std::io::Error),
}

/// Opens the TUN for `c`; with more than one queue, attaches the steering program that
/// keeps both directions of a flow on one queue, or, if it cannot be loaded, falls back
/// to one queue and says why.
fn open_tun(c: &Config) -> std::io::Result<Tun> {
    let queues = Host::workers(c);
    let opts = TunOptions {
        mtu: c.tun.mtu,
        offload: c.tun.offload,
        queues,
    };
    let mut tun = Tun::open(&c.tun.name, opts)?;
    if tun.queue_count() == 1 {
        return Ok(tun);
    }
    let steered = steer::random_key()
        .map_err(|e| std::io::Error::other(format!("no random key: {e}")))
        .and_then(Steering::load)
        .and_then(|steering| {
            steering.self_check()?;
            steering.attach(tun.first_queue_fd())
        });
    match steered {
        Ok(()) => Ok(tun),
        Err(e) => {
            tracing::warn!(
                "cannot steer flows across {queues} TUN queues ({e}); running one worker"
            );
            tun.keep_one_queue();
            Ok(tun)
        }
    }
}

/// What Kracauer did to the host; [`Host::tear_down`] undoes it.
#[derive(Debug)]
pub struct Host {
    netlink: Netlink,
    sysctls: Sysctls,
    /// How each service address was diverted.
    pub diverts: Vec<Divert>,
    /// Tagged rules and routes a previous run had left and this start removed.
    pub leftovers: usize,
}

impl Host {
    /// Removes leftovers, opens the TUN (down) with one queue per worker and steering
    /// across them, sets its sysctls, brings it up, then sets up routes, rules and
    /// forwarding for `c`. Must run on a tokio runtime (the netlink connection is a
    /// task).
    pub async fn set_up(c: &Config) -> Result<(Self, Tun), SetupError> {
        let netlink = Netlink::connect()?;
        let leftovers = netlink.remove_ours().await?;
        let tun = open_tun(c)?;
        let mut host = Host {
            netlink,
            sysctls: Sysctls::default(),
            diverts: Vec::new(),
            leftovers,
        };
        match host.apply(c, &tun).await {
            Ok(()) => Ok((host, tun)),
            Err(e) => {
                for undo in host.tear_down().await {
                    tracing::warn!("while undoing a failed set-up: {undo}");
                }
                Err(e)
            }
        }
    }

    /// The set-up another Kracauer made and handed over in a live upgrade: nothing is
    /// removed or added (the routes, rules and sysctls stay as they are); this process
    /// undoes them at its exit as the one that made them would have. The leftover
    /// removal of [`set_up`](Self::set_up) must not run here: it would take the live
    /// routes away.
    pub fn adopt(
        sysctls: Vec<(std::path::PathBuf, String)>,
        diverts: Vec<Divert>,
    ) -> Result<Self, SetupError> {
        Ok(Host {
            netlink: Netlink::connect()?,
            sysctls: Sysctls::adopt(sysctls),
            diverts,
            leftovers: 0,
        })
    }

    /// The sysctl values this set-up will put back, for a live upgrade.
    pub fn saved_sysctls(&self) -> &[(std::path::PathBuf, String)] {
        self.sysctls.saved()
    }

    /// Workers `c` asks for: `[tun] workers`, or one per CPU this process may use.
    pub fn workers(c: &Config) -> usize {
        c.tun.workers.map_or_else(
            || {
                std::thread::available_parallelism()
                    .map_or(1, |n| n.get())
                    .min(usize::from(MAX_WORKERS))
            },
            usize::from,
        )
    }

    async fn apply(&mut self, c: &Config, tun: &Tun) -> Result<(), SetupError> {
        let index = self.netlink.link_index(&c.tun.name).await?;
        self.sysctls.before_up(&c.tun.name);
        tun.up()?;
        self.sysctls.set_up(&c.tun.name)?;
        self.diverts = self.netlink.set_up(&Plan::new(c), index).await?;
        Ok(())
    }

    /// Removes every route and rule Kracauer added and restores the sysctls; returns
    /// what could not be undone.
    pub async fn tear_down(&mut self) -> Vec<NetError> {
        let mut errors = Vec::new();
        if let Err(e) = self.netlink.remove_ours().await {
            errors.push(e);
        }
        errors.extend(self.sysctls.restore());
        errors
    }

    /// One line per diversion, for the log.
    pub fn describe(&self, prefix: Prefix96, tun: &str) -> Vec<String> {
        let mut out = vec![
            format!("{prefix} routed into {tun}"),
            format!(
                "{} routed local (the source of active health checks)",
                crate::health::check::source(prefix)
            ),
        ];
        for d in &self.diverts {
            out.push(match d {
                Divert::Route(a) => format!("{a}/32 routed into {tun} (not a local address)"),
                Divert::Rules(a, ports) => format!(
                    "{a} tcp ports {ports:?} diverted into {tun} by policy rules (local address)"
                ),
            });
        }
        out
    }
}
