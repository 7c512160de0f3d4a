//! A listen change on the running host set-up ([`crate::netlink::Rediversion`]), in two
//! halves around the moment the workers take the new services: what is new is diverted
//! before, what is gone is undone after.

use std::net::Ipv4Addr;

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

    /// Second half: undoes the diversions [`Host::divert_for`] returned; what could not
    /// be undone stays until the exit removes it (it is tagged as Kracauer's).
    pub async fn undivert(&mut self, remove: &[Divert]) -> Vec<NetError> {
        self.netlink.undivert(remove).await
    }
}
