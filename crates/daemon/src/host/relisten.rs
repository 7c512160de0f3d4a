//! A listen change on the running host set-up ([`crate::netlink::Rediversion`]), in two
//! halves around the moment the workers take the new services: what is new is diverted
//! before, what is gone is undone after. A prefix change likewise: the new prefix is
//! routed before, the old one's routes go when its last flow has ended.

use std::net::Ipv4Addr;

use kracauer_core::addr::Prefix96;

use super::Host;
use crate::config::Config;
use crate::netlink::{Divert, NetError, Plan, Rediversion};

impl Host {
    /// First half of a change to `c`'s listen addresses and ports: diverts into the TUN
    /// what `c` adds. Returns the diversions to undo once the workers serve `c`'s
    /// services ([`Host::undivert`]), or, on an error, changes nothing.
    pub async fn divert_for(&mut self, c: &Config) -> Result<Vec<Divert>, NetError> {
        let plan = Plan::new(c);
        let services = plan.services;
        let mut owned: Vec<Ipv4Addr> = Vec::new();
        for (address, _) in &services {
            let known = self.diverts.iter().any(|d| d.address() == *address);
            if !known && self.netlink.owns(*address).await? {
                owned.push(*address);
            }
        }
        let r = Rediversion::plan(&self.diverts, &services, &plan.quic, &owned);
        if r.is_empty() {
            return Ok(Vec::new());
        }
        if !r.add.is_empty() {
            let tun = self.netlink.link_index(&c.tun.name).await?;
            let rules_before = self
                .diverts
                .iter()
                .any(|d| matches!(d, Divert::Rules(..) | Divert::UdpRules(..)));
            self.netlink
                .divert(&r.add, rules_before, tun, &c.tun.name)
                .await?;
        }
        self.diverts = r.after;
        Ok(r.remove)
    }

    /// Routes `prefix` into `tun` (a prefix change: new flows take it).
    pub async fn route_prefix(&self, prefix: Prefix96, tun: &str) -> Result<(), NetError> {
        let index = self.netlink.link_index(tun).await?;
        self.netlink.route_prefix(prefix, index).await
    }

    /// Removes `prefix`'s routes (its last flow ended after a prefix change).
    pub async fn unroute_prefix(&self, prefix: Prefix96, tun: &str) -> Result<(), NetError> {
        let index = self.netlink.link_index(tun).await?;
        self.netlink.unroute_prefix(prefix, index).await
    }

    /// Sets the MTU of the TUN device `tun` (a change of `[tun] mtu`).
    pub async fn set_mtu(&self, tun: &str, mtu: u16) -> Result<(), NetError> {
        let index = self.netlink.link_index(tun).await?;
        self.netlink.set_mtu(index, mtu).await
    }

    /// Second half: undoes the diversions [`Host::divert_for`] returned; what could not
    /// be undone stays until the exit removes it (it is tagged as Kracauer's).
    pub async fn undivert(&mut self, remove: &[Divert]) -> Vec<NetError> {
        self.netlink.undivert(remove).await
    }
}
