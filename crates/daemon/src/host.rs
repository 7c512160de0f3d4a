//! The host set-up as one unit: the TUN, the sysctls and the netlink routes and rules,
//! set up in order and undone in reverse, with the leftovers of a crashed run (rules,
//! routes, sysctls) removed or put back first. [`preview`] says what a set-up would
//! change, for `kracauer check`.

use std::net::Ipv6Addr;
use std::path::PathBuf;

use kracauer_core::addr::Prefix96;
use kracauer_core::steer::SteerKey;

use crate::config::{Config, MAX_WORKERS};
use crate::instance::Ids;
use crate::netlink::{Divert, NetError, Netlink, Plan};
use crate::steer::{self, Steering};
use crate::sysctl::{self, Change, Facts, SysctlPlan, Sysctls};
use crate::tun::{Tun, TunOptions};

mod relisten;

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
fn open_tun(c: &Config, key: Option<SteerKey>) -> std::io::Result<Tun> {
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
    let key = match key {
        Some(k) => Ok(k),
        None => steer::random_key(),
    };
    let steered = key.and_then(|key| {
        let steering = Steering::load(key)?;
        steering.self_check()?;
        steering.attach(tun.first_queue_fd())?;
        Ok::<_, steer::SteerError>(key)
    });
    match steered {
        Ok(key) => {
            tun.steered_by(key);
            Ok(tun)
        }
        Err(e) => {
            tracing::warn!(
                "cannot steer flows across {queues} TUN queues ({e}); running one worker"
            );
            tun.keep_one_queue();
            Ok(tun)
        }
    }
}

/// How IPv6 forwarding is enabled.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Ipv6Forwarding {
    /// Per interface (`force_forwarding`) where the kernel has it, else global.
    #[default]
    Scoped,
    /// Global (`net.ipv6.conf.all.forwarding`), as on a kernel before Linux 6.17.
    Global,
}

/// Choices of a set-up that the configuration does not make.
#[derive(Debug, Clone, Default)]
pub struct HostOptions {
    pub ipv6_forwarding: Ipv6Forwarding,
    /// Where the sysctls to put back are recorded; `None`: [`sysctl::state_path`].
    pub state: Option<PathBuf>,
    /// The steering program's key; `None`: a random one. `kracauer run` gives the one
    /// drawn from its seed ([`SteerKey::from_seed`]), which second chance steers by
    /// ([`crate::secondchance`]) and a live upgrade's new process knows again.
    pub steer_key: Option<SteerKey>,
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
    /// Sysctls a previous run had left changed and this start put back.
    pub restored_sysctls: usize,
    /// The sysctls written, each with the value it had.
    pub sysctls_set: Vec<(Change, String)>,
}

impl Host {
    /// Removes leftovers, opens the TUN (down) with one queue per worker and steering
    /// across them, sets its sysctls, brings it up, then sets up routes, rules and
    /// forwarding for `c`. Must run on a tokio runtime (the netlink connection is a
    /// task).
    pub async fn set_up(c: &Config) -> Result<(Self, Tun), SetupError> {
        Self::set_up_with(c, &HostOptions::default()).await
    }

    /// [`Host::set_up`] with `options`.
    pub async fn set_up_with(c: &Config, options: &HostOptions) -> Result<(Self, Tun), SetupError> {
        let netlink = Netlink::connect(Ids::of(c.instance))?;
        let leftovers = netlink.remove_ours().await?;
        let state = options
            .state
            .clone()
            .unwrap_or_else(|| sysctl::state_path(&c.tun.name));
        let sysctls = Sysctls::new(Some(state));
        let restored_sysctls = sysctls.recover()?;
        if restored_sysctls > 0 {
            tracing::warn!(
                "put back {restored_sysctls} sysctls left changed by an earlier run that did not exit cleanly"
            );
        }
        let tun = open_tun(c, options.steer_key)?;
        let mut host = Host {
            netlink,
            sysctls,
            diverts: Vec::new(),
            leftovers,
            restored_sysctls,
            sysctls_set: Vec::new(),
        };
        match host.apply(c, &tun, options).await {
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
        ids: Ids,
        tun: &str,
        sysctls: Vec<(PathBuf, String)>,
        diverts: Vec<Divert>,
    ) -> Result<Self, SetupError> {
        Ok(Host {
            netlink: Netlink::connect(ids)?,
            sysctls: Sysctls::adopt(sysctls, Some(sysctl::state_path(tun))),
            diverts,
            leftovers: 0,
            restored_sysctls: 0,
            sysctls_set: Vec::new(),
        })
    }

    /// The sysctl values this set-up will put back, for a live upgrade.
    pub fn saved_sysctls(&self) -> Vec<(PathBuf, String)> {
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

    async fn apply(
        &mut self,
        c: &Config,
        tun: &Tun,
        options: &HostOptions,
    ) -> Result<(), SetupError> {
        let index = self.netlink.link_index(&c.tun.name).await?;
        self.set(&sysctl::before_up(&c.tun.name))?;
        tun.up()?;
        let plan = sysctl_plan(&self.netlink, c, options).await?;
        for note in &plan.notes {
            tracing::warn!("{note}");
        }
        for change in &plan.changes {
            self.set(change)?;
        }
        self.diverts = self.netlink.set_up(&Plan::new(c), index).await?;
        Ok(())
    }

    fn set(&mut self, change: &Change) -> Result<(), NetError> {
        let old = self.sysctls.read(&change.path);
        self.sysctls.apply(change)?;
        if let Some(old) = old.filter(|o| o != change.value) {
            self.sysctls_set.push((change.clone(), old));
        }
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

    /// One line per diversion and per sysctl written, for the log.
    pub fn describe(&self, prefix: Prefix96, tun: &str) -> Vec<String> {
        let mut out: Vec<String> = self
            .sysctls_set
            .iter()
            .map(|(c, old)| {
                format!(
                    "sysctl {} = {} (was {old}; put back at exit): {}",
                    c.name(),
                    c.value,
                    c.why
                )
            })
            .collect();
        out.push(format!("{prefix} routed into {tun}"));
        out.push(format!(
            "{} routed local (the source of active health checks)",
            crate::health::check::source(prefix)
        ));
        for d in &self.diverts {
            out.push(match d {
                Divert::Route(a) => format!("{a}/32 routed into {tun} (not a local address)"),
                Divert::Rules(a, ports) => format!(
                    "{a} tcp ports {ports:?} diverted into {tun} by policy rules (local address)"
                ),
                Divert::UdpRules(a, ports) => format!(
                    "{a} udp ports {ports:?} (QUIC) diverted into {tun} by policy rules (local address)"
                ),
            });
        }
        out
    }
}

/// Every backend address `c` names: the routes' and the default backend.
fn backends(c: &Config) -> Vec<Ipv6Addr> {
    let mut out: Vec<Ipv6Addr> = c
        .routes
        .iter()
        .flat_map(|r| &r.backends)
        .chain(&c.default_backend)
        .map(|b| b.address)
        .collect();
    out.sort();
    out.dedup();
    out
}

/// Looks at the host and plans the sysctls for `c` ([`sysctl::plan`]).
async fn sysctl_plan(
    netlink: &Netlink,
    c: &Config,
    options: &HostOptions,
) -> Result<SysctlPlan, NetError> {
    let tun = &c.tun.name;
    let ipv4_links = netlink.ipv4_uplinks(tun).await?;
    let (ipv6_links, unrouted) = netlink.links_towards(&backends(c), tun).await?;
    let probe = Sysctls::new(None);
    let force_forwarding = options.ipv6_forwarding == Ipv6Forwarding::Scoped
        && probe.read("net/ipv6/conf/all/force_forwarding").is_some();
    let ra_links = netlink
        .ra_default_links()
        .await?
        .into_iter()
        .map(|l| {
            let accept_ra = probe
                .read(&format!("net/ipv6/conf/{l}/accept_ra"))
                .unwrap_or_default();
            (l, accept_ra)
        })
        .collect();
    let mut plan = sysctl::plan(&Facts {
        tun: tun.clone(),
        ipv4_links,
        ipv6_links,
        force_forwarding,
        ra_links,
    });
    for (backend, why) in unrouted {
        plan.notes.push(format!(
            "no route to backend {backend} ({why}): no interface towards it gets IPv6 forwarding"
        ));
    }
    Ok(plan)
}

/// What [`Host::set_up`] would change on this host for `c`, one line each, for `kracauer
/// check`: the sysctls (with their values now), the routes and rules. Reads the host only
/// (netlink dumps, `/proc/sys`); needs a tokio runtime.
pub async fn preview(c: &Config) -> Result<Vec<String>, NetError> {
    let ids = Ids::of(c.instance);
    let netlink = Netlink::connect(ids)?;
    let plan = sysctl_plan(&netlink, c, &HostOptions::default()).await?;
    let probe = Sysctls::new(None);
    let mut out = Vec::new();
    for change in std::iter::once(sysctl::before_up(&c.tun.name)).chain(plan.changes) {
        let now = match probe.read(&change.path) {
            None => "new device".to_owned(),
            Some(v) if v == change.value => format!("already {v}"),
            Some(v) => format!("now {v}"),
        };
        out.push(format!(
            "sysctl {} = {} ({now}): {}",
            change.name(),
            change.value,
            change.why
        ));
    }
    for note in plan.notes {
        out.push(format!("note: {note}"));
    }
    let tun = &c.tun.name;
    out.push(format!(
        "instance {}: routes and rules tagged proto {}",
        ids.instance, ids.protocol
    ));
    out.push(format!("route {} into {tun}", c.prefix));
    let plan = Plan::new(c);
    let mut moves_local = false;
    for (address, ports) in &plan.services {
        let quic = plan
            .quic
            .iter()
            .find(|(a, _)| a == address)
            .map_or(&[][..], |(_, p)| &p[..]);
        if netlink.owns(*address).await? {
            moves_local = true;
            let tcp = ports.iter().map(|p| ("tcp", p));
            for (proto, port) in tcp.chain(quic.iter().map(|p| ("udp", p))) {
                out.push(format!(
                    "rule pref {} to {address} {proto} dport {port} lookup {} proto {}",
                    ids.divert_pref, ids.table, ids.protocol
                ));
            }
        } else if quic.is_empty() {
            out.push(format!("route {address}/32 into {tun}"));
        } else {
            out.push(format!(
                "route {address}/32 into {tun} (carries QUIC udp ports {quic:?} too)"
            ));
        }
    }
    if moves_local {
        out.push(format!(
            "route default into {tun} in table {}; the local rule moves from preference 0 to {} (shared by every instance)",
            ids.table,
            crate::netlink::LOCAL_PREF
        ));
    }
    Ok(out)
}
