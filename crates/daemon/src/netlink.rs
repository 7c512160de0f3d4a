//! Host set-up through netlink (docs/architecture.md, "The packet path"), and its undoing.
//!
//! What Kracauer adds, all tagged with its instance's routing protocol
//! ([`Ids::protocol`], 107 + the instance number, see [`crate::instance`]) so that a later
//! start can find and remove what a crashed run of the same instance left, and never
//! touches another instance's:
//! - a route for the translation prefix (`/96`) into the TUN;
//! - in the `local` table, a `local` route for the one address of the prefix that
//!   active health checks come from (`health::check::source`), so their answers reach
//!   the daemon's socket instead of the TUN;
//! - for each service address this host does not own: a `/32` route into the TUN;
//! - for each service address this host owns: one policy rule per configured TCP port
//!   (`to ADDR ipproto tcp dport PORT lookup TABLE`) at the instance's preference
//!   ([`Ids::divert_pref`]), and in the instance's table ([`Ids::table`]) a default route
//!   into the TUN. Those rules only work ahead of the kernel's `local` rule at
//!   preference 0, so that rule is re-added at [`LOCAL_PREF`] (tagged
//!   [`BASE_PROTOCOL`], shared by every instance) and only then removed from 0: the host
//!   never lacks its local table.
//!
//! [`Netlink::remove_ours`] undoes all of it; the last instance with divert rules puts
//! the `local` rule back at 0. It runs both before a set-up (leftovers of a `kill -9`)
//! and at exit.
//! Forwarding and the TUN's `accept_local`/`rp_filter` are sysctls
//! ([`crate::sysctl`]); the interfaces they apply to are found here
//! ([`Netlink::ipv4_uplinks`], [`Netlink::links_towards`], [`Netlink::ra_default_links`]).
//! `docs/setup-by-hand.md` gives the same as `ip` and `sysctl` commands.

use std::collections::HashMap;
use std::io;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::path::PathBuf;

use futures_util::TryStreamExt;
use kracauer_core::addr::Prefix96;
use rtnetlink::packet_route::address::AddressAttribute;
use rtnetlink::packet_route::link::LinkAttribute;
use rtnetlink::packet_route::route::{
    RouteAttribute, RouteMessage, RouteProtocol, RouteScope, RouteType,
};
use rtnetlink::packet_route::rule::{RuleAction, RuleAttribute, RuleMessage};
use rtnetlink::{Handle, IpVersion, RouteMessageBuilder};

use crate::config::Config;
pub use crate::instance::{BASE_PROTOCOL, Ids, LOCAL_PREF};

mod divert;
mod mtu;
mod prefix;
pub use divert::Rediversion;

/// The routing protocol of instance 0 (`proto 107` in `ip` output).
pub const PROTOCOL: u8 = BASE_PROTOCOL;
/// The divert table of instance 0.
pub const TABLE: u32 = crate::instance::BASE_TABLE;
/// The divert rules' preference of instance 0.
pub const DIVERT_PREF: u32 = crate::instance::BASE_DIVERT_PREF;
/// The kernel's `local` table.
const TABLE_LOCAL: u32 = 255;

/// A host set-up step that failed.
#[derive(Debug, thiserror::Error)]
pub enum NetError {
    #[error("cannot open a netlink socket: {0}")]
    Connect(#[source] io::Error),
    #[error("netlink: cannot {what}: {source}")]
    Netlink {
        what: String,
        #[source]
        source: rtnetlink::Error,
    },
    #[error("no network interface named {0:?}")]
    NoLink(String),
    #[error(
        "the rule for the local table is at preference {0}, ahead of Kracauer's rules at {1}; move it after {1} or route the service address to the TUN instead"
    )]
    LocalRuleTooEarly(u32, u32),
    #[error("cannot write {value} to {}: {source}", path.display())]
    Sysctl {
        path: PathBuf,
        value: String,
        #[source]
        source: io::Error,
    },
    #[error("the sysctl state file {}: {source}", path.display())]
    State {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
}

fn nl(what: impl Into<String>) -> impl FnOnce(rtnetlink::Error) -> NetError {
    let what = what.into();
    move |source| NetError::Netlink { what, source }
}

/// Whether `e` is the kernel saying "no such entry" (already gone) or "exists".
fn is_errno(e: &rtnetlink::Error, errno: rustix::io::Errno) -> bool {
    matches!(e, rtnetlink::Error::NetlinkError(m)
        if m.code.map(|c| c.get()) == Some(-errno.raw_os_error()))
}

/// What the set-up diverts into the TUN.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Plan {
    pub ids: Ids,
    pub tun: String,
    pub prefix: Prefix96,
    /// Each service address with all its TCP ports (tls and http).
    pub services: Vec<(Ipv4Addr, Vec<u16>)>,
    /// The service addresses with QUIC, each with its UDP ports.
    pub quic: Vec<(Ipv4Addr, Vec<u16>)>,
    /// The address active health checks come from, routed `local`.
    pub check_source: Ipv6Addr,
}

impl Plan {
    /// The plan for a configuration.
    pub fn new(c: &Config) -> Self {
        Self {
            ids: Ids::of(c.instance),
            tun: c.tun.name.clone(),
            prefix: c.prefix,
            services: c
                .listen
                .iter()
                .map(|l| (l.address, l.tls.iter().chain(&l.http).copied().collect()))
                .collect(),
            quic: c
                .listen
                .iter()
                .filter(|l| !l.quic.is_empty())
                .map(|l| (l.address, l.quic.clone()))
                .collect(),
            check_source: crate::health::check::source(c.prefix),
        }
    }
}

/// How a service address reaches the TUN.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Divert {
    /// Not this host's address: a `/32` route.
    Route(Ipv4Addr),
    /// This host's address: policy rules for these TCP ports.
    Rules(Ipv4Addr, Vec<u16>),
    /// This host's address: policy rules for these UDP ports (QUIC). An address with a
    /// `/32` route needs none: the route carries its UDP too.
    UdpRules(Ipv4Addr, Vec<u16>),
}

impl Divert {
    /// The service address diverted.
    pub fn address(&self) -> Ipv4Addr {
        match self {
            Divert::Route(a) | Divert::Rules(a, _) | Divert::UdpRules(a, _) => *a,
        }
    }
}

/// A netlink connection (its task runs on the current tokio runtime), acting for the
/// instance `ids`.
#[derive(Debug, Clone)]
pub struct Netlink {
    handle: Handle,
    ids: Ids,
}

impl Netlink {
    /// Opens a netlink socket in the calling thread's network namespace, for the
    /// instance with `ids`.
    pub fn connect(ids: Ids) -> Result<Self, NetError> {
        let (conn, handle, _) = rtnetlink::new_connection().map_err(NetError::Connect)?;
        tokio::spawn(conn);
        Ok(Self { handle, ids })
    }

    /// The index of interface `name`.
    pub async fn link_index(&self, name: &str) -> Result<u32, NetError> {
        let mut links = self
            .handle
            .link()
            .get()
            .match_name(name.to_owned())
            .execute();
        match links.try_next().await {
            Ok(Some(link)) => Ok(link.header.index),
            Ok(None) => Err(NetError::NoLink(name.to_owned())),
            Err(e) if is_errno(&e, rustix::io::Errno::NODEV) => {
                Err(NetError::NoLink(name.to_owned()))
            }
            Err(e) => Err(nl(format!("look up interface {name}"))(e)),
        }
    }

    /// Whether `address` is assigned to an interface of this host.
    pub async fn owns(&self, address: Ipv4Addr) -> Result<bool, NetError> {
        let mut addrs = self.handle.address().get().execute();
        while let Some(a) = addrs.try_next().await.map_err(nl("list addresses"))? {
            // IFA_LOCAL is the host's own address; IFA_ADDRESS is the peer's on a
            // point-to-point link, so it only counts when there is no IFA_LOCAL.
            let local = a.attributes.iter().find_map(|attr| match attr {
                AddressAttribute::Local(ip) => Some(*ip),
                _ => None,
            });
            let own = local.or_else(|| {
                a.attributes.iter().find_map(|attr| match attr {
                    AddressAttribute::Address(ip) => Some(*ip),
                    _ => None,
                })
            });
            let mine = own == Some(IpAddr::V4(address));
            if mine {
                return Ok(true);
            }
        }
        Ok(false)
    }

    /// Sets up routes and rules for `plan` through the TUN with index `tun`. Call
    /// [`remove_ours`](Self::remove_ours) first (leftovers) and after (also on error).
    pub async fn set_up(&self, plan: &Plan, tun: u32) -> Result<Vec<Divert>, NetError> {
        self.route_prefix(plan.prefix, tun).await?;
        let mut diverts = Vec::new();
        let mut table_route = false;
        for (address, ports) in &plan.services {
            if !self.owns(*address).await? {
                let r = RouteMessageBuilder::<Ipv4Addr>::new()
                    .destination_prefix(*address, 32)
                    .output_interface(tun)
                    .protocol(RouteProtocol::Other(self.ids.protocol))
                    .scope(RouteScope::Link)
                    .build();
                self.add_route(r, format!("route {address}/32 into {}", plan.tun))
                    .await?;
                diverts.push(Divert::Route(*address));
                continue;
            }
            if !table_route {
                let r = RouteMessageBuilder::<Ipv4Addr>::new()
                    .destination_prefix(Ipv4Addr::UNSPECIFIED, 0)
                    .output_interface(tun)
                    .table_id(self.ids.table)
                    .protocol(RouteProtocol::Other(self.ids.protocol))
                    .scope(RouteScope::Link)
                    .build();
                self.add_route(
                    r,
                    format!(
                        "route default into {} in table {}",
                        plan.tun, self.ids.table
                    ),
                )
                .await?;
                table_route = true;
            }
            for &port in ports {
                self.add_port_rule(*address, port, false).await?;
            }
            diverts.push(Divert::Rules(*address, ports.clone()));
        }
        for (address, ports) in &plan.quic {
            if diverts
                .iter()
                .any(|d| matches!(d, Divert::Route(a) if a == address))
            {
                continue;
            }
            if !table_route {
                let r = RouteMessageBuilder::<Ipv4Addr>::new()
                    .destination_prefix(Ipv4Addr::UNSPECIFIED, 0)
                    .output_interface(tun)
                    .table_id(TABLE)
                    .protocol(RouteProtocol::Other(PROTOCOL))
                    .scope(RouteScope::Link)
                    .build();
                self.add_route(
                    r,
                    format!("route default into {} in table {TABLE}", plan.tun),
                )
                .await?;
                table_route = true;
            }
            for &port in ports {
                self.add_port_rule(*address, port, true).await?;
            }
            diverts.push(Divert::UdpRules(*address, ports.clone()));
        }
        if table_route {
            self.move_local_rule().await?;
        }
        Ok(diverts)
    }

    async fn add_route(&self, msg: RouteMessage, what: String) -> Result<(), NetError> {
        self.handle
            .route()
            .add(msg)
            .execute()
            .await
            .map_err(nl(format!("add {what}")))
    }

    /// Puts the kernel's `local` rule after the divert rules: re-added (tagged) at
    /// [`LOCAL_PREF`] first, then removed from preference 0.
    async fn move_local_rule(&self) -> Result<(), NetError> {
        let rules = self.rules(IpVersion::V4).await?;
        let local: Vec<&RuleMessage> = rules
            .iter()
            .filter(|r| rule_table(r) == TABLE_LOCAL && rule_selects_all(r))
            .collect();
        let Some(first) = local.iter().map(|r| rule_pref(r)).min() else {
            return Ok(()); // no local rule at all: nothing ahead of ours
        };
        if first > self.ids.divert_pref {
            return Ok(());
        }
        if first != 0 {
            return Err(NetError::LocalRuleTooEarly(first, self.ids.divert_pref));
        }
        self.add_local_rule(LOCAL_PREF, true).await?;
        for r in local.iter().filter(|r| rule_pref(r) == 0) {
            self.handle
                .rule()
                .del((*r).clone())
                .execute()
                .await
                .map_err(nl("remove the local rule from preference 0"))?;
        }
        Ok(())
    }

    async fn add_local_rule(&self, pref: u32, tagged: bool) -> Result<(), NetError> {
        let mut req = self
            .handle
            .rule()
            .add()
            .v4()
            .table_id(TABLE_LOCAL)
            .priority(pref)
            .action(RuleAction::ToTable);
        // Untagged is the kernel's own rule being put back: say so, as the kernel does.
        let protocol = if tagged {
            RouteProtocol::Other(BASE_PROTOCOL)
        } else {
            RouteProtocol::Kernel
        };
        req.message_mut()
            .attributes
            .push(RuleAttribute::Protocol(protocol));
        match req.execute().await {
            Err(e) if is_errno(&e, rustix::io::Errno::EXIST) => Ok(()),
            r => r.map_err(nl(format!("add the local rule at preference {pref}"))),
        }
    }

    async fn rules(&self, v: IpVersion) -> Result<Vec<RuleMessage>, NetError> {
        self.handle
            .rule()
            .get(v)
            .execute()
            .try_collect()
            .await
            .map_err(nl("list rules"))
    }

    /// Removes every rule and route tagged with this instance's protocol. The `local`
    /// rule's shared copy at [`LOCAL_PREF`] goes too, the `local` rule back at preference
    /// 0 first, when no other instance's divert rules are left. Returns how many it
    /// removed.
    pub async fn remove_ours(&self) -> Result<usize, NetError> {
        let mut removed = 0;
        for v in [IpVersion::V4, IpVersion::V6] {
            let rules = self.rules(v.clone()).await?;
            let mine = self.ids.protocol;
            let ours =
                |r: &&RuleMessage| rule_protocol(r) == Some(mine) && rule_table(r) != TABLE_LOCAL;
            let shared_local: Vec<&RuleMessage> = rules
                .iter()
                .filter(|r| {
                    rule_protocol(r).is_some_and(Ids::is_kracauer) && rule_table(r) == TABLE_LOCAL
                })
                .collect();
            let others = rules.iter().any(|r| {
                rule_protocol(r).is_some_and(|p| Ids::is_kracauer(p) && p != mine)
                    && rule_table(r) != TABLE_LOCAL
            });
            let local_at_0 = rules
                .iter()
                .any(|r| rule_table(r) == TABLE_LOCAL && rule_pref(r) == 0);
            for r in rules.iter().filter(ours) {
                match self.handle.rule().del(r.clone()).execute().await {
                    Ok(()) => removed += 1,
                    Err(e) if is_errno(&e, rustix::io::Errno::NOENT) => {}
                    Err(e) => return Err(nl("remove a rule")(e)),
                }
            }
            if others || shared_local.is_empty() {
                continue;
            }
            if !local_at_0 && matches!(v, IpVersion::V4) {
                self.add_local_rule(0, false).await?;
            }
            for r in shared_local {
                match self.handle.rule().del(r.clone()).execute().await {
                    Ok(()) => removed += 1,
                    Err(e) if is_errno(&e, rustix::io::Errno::NOENT) => {}
                    Err(e) => return Err(nl("remove a rule")(e)),
                }
            }
        }
        let v4 = RouteMessageBuilder::<Ipv4Addr>::new().build();
        let v6 = RouteMessageBuilder::<Ipv6Addr>::new().build();
        for query in [v4, v6] {
            let routes: Vec<RouteMessage> = self
                .handle
                .route()
                .get(query)
                .execute()
                .try_collect()
                .await
                .map_err(nl("list routes"))?;
            for r in routes
                .into_iter()
                .filter(|r| u8::from(r.header.protocol) == self.ids.protocol)
            {
                match self.handle.route().del(r).execute().await {
                    Ok(()) => removed += 1,
                    Err(e) if is_errno(&e, rustix::io::Errno::SRCH) => {}
                    Err(e) if is_errno(&e, rustix::io::Errno::NOENT) => {}
                    Err(e) => return Err(nl("remove a route")(e)),
                }
            }
        }
        Ok(removed)
    }
}

/// The main routing table's number.
const TABLE_MAIN: u32 = 254;

fn route_table(r: &RouteMessage) -> u32 {
    r.attributes
        .iter()
        .find_map(|a| match a {
            RouteAttribute::Table(t) => Some(*t),
            _ => None,
        })
        .unwrap_or(u32::from(r.header.table))
}

/// The interfaces a route leaves through (one, or each next hop's).
fn route_links(r: &RouteMessage) -> Vec<u32> {
    let mut out = Vec::new();
    for a in &r.attributes {
        match a {
            RouteAttribute::Oif(i) => out.push(*i),
            RouteAttribute::MultiPath(hops) => {
                out.extend(hops.iter().map(|h| h.interface_index));
            }
            _ => {}
        }
    }
    out
}

impl Netlink {
    /// Interface names by index.
    pub async fn link_names(&self) -> Result<HashMap<u32, String>, NetError> {
        let mut links = self.handle.link().get().execute();
        let mut names = HashMap::new();
        while let Some(l) = links.try_next().await.map_err(nl("list interfaces"))? {
            if let Some(name) = l.attributes.iter().find_map(|a| match a {
                LinkAttribute::IfName(n) => Some(n.clone()),
                _ => None,
            }) {
                names.insert(l.header.index, name);
            }
        }
        Ok(names)
    }

    /// The unicast routes of the main table that `query` (a dump of one family) lists.
    async fn main_routes(&self, query: RouteMessage) -> Result<Vec<RouteMessage>, NetError> {
        let routes: Vec<RouteMessage> = self
            .handle
            .route()
            .get(query)
            .execute()
            .try_collect()
            .await
            .map_err(nl("list routes"))?;
        Ok(routes
            .into_iter()
            .filter(|r| route_table(r) == TABLE_MAIN && r.header.kind == RouteType::Unicast)
            .collect())
    }

    /// The interfaces clients' IPv4 packets come in on: those of the main table's IPv4
    /// default routes, or, without one, of every IPv4 route in it. Never `lo` or `tun`.
    pub async fn ipv4_uplinks(&self, tun: &str) -> Result<Vec<String>, NetError> {
        let names = self.link_names().await?;
        let routes = self
            .main_routes(RouteMessageBuilder::<Ipv4Addr>::new().build())
            .await?;
        let defaults: Vec<&RouteMessage> = routes
            .iter()
            .filter(|r| r.header.destination_prefix_length == 0)
            .collect();
        let chosen: Vec<&RouteMessage> = if defaults.is_empty() {
            routes.iter().collect()
        } else {
            defaults
        };
        Ok(link_set(
            chosen.into_iter().flat_map(route_links),
            &names,
            tun,
        ))
    }

    /// The interfaces the kernel routes `addrs` through (`ip route get`), and the
    /// addresses it has no route for, with why.
    pub async fn links_towards(
        &self,
        addrs: &[Ipv6Addr],
        tun: &str,
    ) -> Result<(Vec<String>, Vec<(Ipv6Addr, String)>), NetError> {
        let names = self.link_names().await?;
        let mut links = Vec::new();
        let mut unrouted = Vec::new();
        for &a in addrs {
            let query = RouteMessageBuilder::<Ipv6Addr>::new()
                .destination_prefix(a, 128)
                .build();
            let got: Result<Vec<RouteMessage>, _> =
                self.handle.route().get(query).execute().try_collect().await;
            match got {
                Ok(routes) => links.extend(routes.iter().flat_map(route_links)),
                Err(e) => unrouted.push((a, e.to_string())),
            }
        }
        Ok((link_set(links.into_iter(), &names, tun), unrouted))
    }

    /// The interfaces with an IPv6 default route learnt from router advertisements.
    pub async fn ra_default_links(&self) -> Result<Vec<String>, NetError> {
        let names = self.link_names().await?;
        let routes = self
            .main_routes(RouteMessageBuilder::<Ipv6Addr>::new().build())
            .await?;
        Ok(link_set(
            routes
                .iter()
                .filter(|r| {
                    r.header.destination_prefix_length == 0
                        && r.header.protocol == RouteProtocol::Ra
                })
                .flat_map(route_links),
            &names,
            "",
        ))
    }
}

/// The names of `indexes`, sorted, without duplicates, `lo` or `tun`.
fn link_set(
    indexes: impl Iterator<Item = u32>,
    names: &HashMap<u32, String>,
    tun: &str,
) -> Vec<String> {
    let mut out: Vec<String> = indexes
        .filter_map(|i| names.get(&i).cloned())
        .filter(|n| n != "lo" && n != tun)
        .collect();
    out.sort();
    out.dedup();
    out
}

fn rule_protocol(r: &RuleMessage) -> Option<u8> {
    r.attributes.iter().find_map(|a| match a {
        RuleAttribute::Protocol(p) => Some(u8::from(*p)),
        _ => None,
    })
}

/// The rule's preference; the kernel leaves it out when it is 0.
fn rule_pref(r: &RuleMessage) -> u32 {
    r.attributes
        .iter()
        .find_map(|a| match a {
            RuleAttribute::Priority(p) => Some(*p),
            _ => None,
        })
        .unwrap_or(0)
}

fn rule_table(r: &RuleMessage) -> u32 {
    r.attributes
        .iter()
        .find_map(|a| match a {
            RuleAttribute::Table(t) => Some(*t),
            _ => None,
        })
        .unwrap_or(u32::from(r.header.table))
}

/// Whether a rule matches every packet (no selector), as the kernel's `local` rule does.
fn rule_selects_all(r: &RuleMessage) -> bool {
    r.header.src_len == 0
        && r.header.dst_len == 0
        && !r.attributes.iter().any(|a| {
            matches!(
                a,
                RuleAttribute::Source(_)
                    | RuleAttribute::Destination(_)
                    | RuleAttribute::Iifname(_)
                    | RuleAttribute::Oifname(_)
                    | RuleAttribute::FwMark(_)
                    | RuleAttribute::FwMask(_)
                    | RuleAttribute::TunId(_)
                    | RuleAttribute::L3MDev(_)
                    | RuleAttribute::UidRange(_)
                    | RuleAttribute::IpProtocol(_)
                    | RuleAttribute::SourcePortRange(_)
                    | RuleAttribute::DestinationPortRange(_)
            )
        })
}

#[cfg(test)]
mod tests {
    use rtnetlink::packet_route::IpProtocol;
    use rtnetlink::packet_route::rule::RulePortRange;

    use super::*;

    fn rule(table: u8, attributes: Vec<RuleAttribute>) -> RuleMessage {
        let mut r = RuleMessage::default();
        r.header.table = table;
        r.header.action = RuleAction::ToTable;
        r.attributes = attributes;
        r
    }

    #[test]
    fn kernel_local_rule_is_at_preference_0_and_selects_everything() {
        // As the kernel dumps it: no FRA_PRIORITY for preference 0.
        let local = rule(
            255,
            vec![
                RuleAttribute::Table(255),
                RuleAttribute::SuppressPrefixLen(u32::MAX),
                RuleAttribute::Protocol(RouteProtocol::Kernel),
            ],
        );
        assert_eq!(rule_pref(&local), 0);
        assert_eq!(rule_table(&local), TABLE_LOCAL);
        assert!(rule_selects_all(&local));
        assert_eq!(rule_protocol(&local), Some(2));
    }

    #[test]
    fn divert_rule_is_ours_and_selects_only_its_port() {
        let divert = rule(
            0,
            vec![
                RuleAttribute::Table(TABLE),
                RuleAttribute::Priority(DIVERT_PREF),
                RuleAttribute::IpProtocol(IpProtocol::Tcp),
                RuleAttribute::DestinationPortRange(RulePortRange {
                    start: 443,
                    end: 443,
                }),
                RuleAttribute::Protocol(RouteProtocol::Other(PROTOCOL)),
            ],
        );
        assert_eq!(rule_pref(&divert), DIVERT_PREF);
        assert_eq!(rule_table(&divert), TABLE);
        assert!(!rule_selects_all(&divert));
        assert_eq!(rule_protocol(&divert), Some(PROTOCOL));
    }

    #[test]
    fn table_falls_back_to_the_header_without_the_attribute() {
        assert_eq!(rule_table(&rule(254, vec![])), 254);
    }
}
