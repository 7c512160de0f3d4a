//! The host set-up as one unit: the TUN, the sysctls and the netlink routes and rules,
//! set up in order and undone in reverse, with the leftovers of a crashed run removed
//! first.

use kracauer_core::addr::Prefix96;

use crate::config::Config;
use crate::netlink::{Divert, NetError, Netlink, Plan, Sysctls};
use crate::tun::Tun;

/// A set-up that failed (what was done of it is undone already).
#[derive(Debug, thiserror::Error)]
pub enum SetupError {
    #[error(transparent)]
    Net(#[from] NetError),
    #[error(transparent)]
    Tun(#[from] std::io::Error),
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
    /// Removes leftovers, opens the TUN (down), sets its sysctls, brings it up, then
    /// sets up routes, rules and forwarding for `c`.
    /// Must run on a tokio runtime (the netlink connection is a task).
    pub async fn set_up(c: &Config) -> Result<(Self, Tun), SetupError> {
        let netlink = Netlink::connect()?;
        let leftovers = netlink.remove_ours().await?;
        let tun = Tun::open(&c.tun.name, c.tun.mtu)?;
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
        let mut out = vec![format!("{prefix} routed into {tun}")];
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
