//! A change of listen addresses and ports on a running set-up (a reload, or the new
//! process of an upgrade): the diversions into the TUN are brought from what they are to
//! what the new services need, adding first and removing last, so that a service that
//! stays is never without its route or rule.
//!
//! An address keeps the way it was diverted (a `/32` route, or one policy rule per port)
//! while it stays a service address; its ports change under a `/32` route without any
//! change here. A new address is diverted as [`Netlink::set_up`] would divert it. The
//! instance's table's default route and the moved `local` rule, once made, stay until the
//! exit even when no rule needs them any more (they divert nothing on their own).

use std::net::Ipv4Addr;

use futures_util::TryStreamExt;
use rtnetlink::packet_route::IpProtocol;
use rtnetlink::packet_route::route::{
    RouteAddress, RouteAttribute, RouteMessage, RouteProtocol, RouteScope,
};
use rtnetlink::packet_route::rule::{RuleAction, RuleAttribute, RulePortRange};
use rtnetlink::{IpVersion, RouteMessageBuilder};

use super::{Divert, NetError, Netlink, is_errno, nl, rule_protocol, rule_table};

/// What a listen change does to the diversions.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Rediversion {
    /// To add first (a [`Divert::Rules`] here names only the ports to add).
    pub add: Vec<Divert>,
    /// To remove once the workers serve the new services (a [`Divert::Rules`] here names
    /// only the ports to remove).
    pub remove: Vec<Divert>,
    /// The diversions once both are done.
    pub after: Vec<Divert>,
}

impl Rediversion {
    /// From the diversions `current` to those `services` (each address with all its TCP
    /// ports) and `quic` (the addresses with UDP ports) need; `owned` lists the new
    /// addresses this host owns (they get rules).
    pub fn plan(
        current: &[Divert],
        services: &[(Ipv4Addr, Vec<u16>)],
        quic: &[(Ipv4Addr, Vec<u16>)],
        owned: &[Ipv4Addr],
    ) -> Self {
        let mut r = Self::default();
        r.plan_tcp(current, services, owned);
        r.plan_udp(current, quic);
        r
    }

    fn plan_tcp(
        &mut self,
        current: &[Divert],
        services: &[(Ipv4Addr, Vec<u16>)],
        owned: &[Ipv4Addr],
    ) {
        let r = self;
        for (address, ports) in services {
            let was = current
                .iter()
                .find(|d| !matches!(d, Divert::UdpRules(..)) && d.address() == *address);
            match was {
                Some(Divert::Route(_)) => r.after.push(Divert::Route(*address)),
                Some(Divert::UdpRules(..)) => {}
                Some(Divert::Rules(_, old)) => {
                    let added: Vec<u16> =
                        ports.iter().filter(|p| !old.contains(p)).copied().collect();
                    let gone: Vec<u16> =
                        old.iter().filter(|p| !ports.contains(p)).copied().collect();
                    if !added.is_empty() {
                        r.add.push(Divert::Rules(*address, added));
                    }
                    if !gone.is_empty() {
                        r.remove.push(Divert::Rules(*address, gone));
                    }
                    r.after.push(Divert::Rules(*address, ports.clone()));
                }
                None if owned.contains(address) => {
                    r.add.push(Divert::Rules(*address, ports.clone()));
                    r.after.push(Divert::Rules(*address, ports.clone()));
                }
                None => {
                    r.add.push(Divert::Route(*address));
                    r.after.push(Divert::Route(*address));
                }
            }
        }
        for d in current {
            if !matches!(d, Divert::UdpRules(..))
                && !services.iter().any(|(a, _)| *a == d.address())
            {
                r.remove.push(d.clone());
            }
        }
    }

    /// The UDP rules of the addresses the TCP plan diverts by rules (an address with a
    /// `/32` route needs none).
    fn plan_udp(&mut self, current: &[Divert], quic: &[(Ipv4Addr, Vec<u16>)]) {
        for (address, ports) in quic {
            let by_rules = self
                .after
                .iter()
                .any(|d| matches!(d, Divert::Rules(a, _) if a == address));
            if !by_rules {
                continue;
            }
            let old = current.iter().find_map(|d| match d {
                Divert::UdpRules(a, old) if a == address => Some(old.clone()),
                _ => None,
            });
            let old = old.unwrap_or_default();
            let added: Vec<u16> = ports.iter().filter(|p| !old.contains(p)).copied().collect();
            let gone: Vec<u16> = old.iter().filter(|p| !ports.contains(p)).copied().collect();
            if !added.is_empty() {
                self.add.push(Divert::UdpRules(*address, added));
            }
            if !gone.is_empty() {
                self.remove.push(Divert::UdpRules(*address, gone));
            }
            self.after.push(Divert::UdpRules(*address, ports.clone()));
        }
        for d in current {
            if let Divert::UdpRules(a, old) = d {
                let kept = self
                    .after
                    .iter()
                    .any(|x| matches!(x, Divert::UdpRules(b, _) if b == a));
                if !kept {
                    self.remove.push(Divert::UdpRules(*a, old.clone()));
                }
            }
        }
    }

    /// Whether nothing changes.
    pub fn is_empty(&self) -> bool {
        self.add.is_empty() && self.remove.is_empty()
    }
}

impl Netlink {
    /// Adds the diversions `add` through the TUN `tun_name` (index `tun`); `rules_before`
    /// says whether any policy rule diverted already (then the table's route is there).
    /// On an error, what it added is removed again before the error is returned.
    pub async fn divert(
        &self,
        add: &[Divert],
        rules_before: bool,
        tun: u32,
        tun_name: &str,
    ) -> Result<(), NetError> {
        let mut done = Vec::new();
        let result = self
            .divert_each(add, rules_before, tun, tun_name, &mut done)
            .await;
        if result.is_err() {
            for e in self.undivert(&done).await {
                tracing::warn!("while undoing a failed diversion: {e}");
            }
        }
        result
    }

    async fn divert_each(
        &self,
        add: &[Divert],
        rules_before: bool,
        tun: u32,
        tun_name: &str,
        done: &mut Vec<Divert>,
    ) -> Result<(), NetError> {
        let rules = add
            .iter()
            .any(|d| matches!(d, Divert::Rules(..) | Divert::UdpRules(..)));
        if rules && !rules_before {
            let r = RouteMessageBuilder::<Ipv4Addr>::new()
                .destination_prefix(Ipv4Addr::UNSPECIFIED, 0)
                .output_interface(tun)
                .table_id(self.ids.table)
                .protocol(RouteProtocol::Other(self.ids.protocol))
                .scope(RouteScope::Link)
                .build();
            match self.handle.route().add(r).execute().await {
                Err(e) if is_errno(&e, rustix::io::Errno::EXIST) => {}
                other => other.map_err(nl(format!(
                    "add route default into {tun_name} in table {}",
                    self.ids.table
                )))?,
            }
            self.move_local_rule().await?;
        }
        for d in add {
            match d {
                Divert::Route(address) => {
                    let r = RouteMessageBuilder::<Ipv4Addr>::new()
                        .destination_prefix(*address, 32)
                        .output_interface(tun)
                        .protocol(RouteProtocol::Other(self.ids.protocol))
                        .scope(RouteScope::Link)
                        .build();
                    self.add_route(r, format!("route {address}/32 into {tun_name}"))
                        .await?;
                    done.push(d.clone());
                }
                Divert::Rules(address, ports) => {
                    for &port in ports {
                        self.add_port_rule(*address, port, false).await?;
                        done.push(Divert::Rules(*address, vec![port]));
                    }
                }
                Divert::UdpRules(address, ports) => {
                    for &port in ports {
                        self.add_port_rule(*address, port, true).await?;
                        done.push(Divert::UdpRules(*address, vec![port]));
                    }
                }
            }
        }
        Ok(())
    }

    /// The policy rule that diverts `address` TCP (or, `udp`, UDP) `port` to the
    /// instance's table.
    pub(super) async fn add_port_rule(
        &self,
        address: Ipv4Addr,
        port: u16,
        udp: bool,
    ) -> Result<(), NetError> {
        let mut req = self
            .handle
            .rule()
            .add()
            .v4()
            .destination_prefix(address, 32)
            .table_id(self.ids.table)
            .priority(self.ids.divert_pref)
            .action(RuleAction::ToTable);
        let attrs = &mut req.message_mut().attributes;
        attrs.push(RuleAttribute::IpProtocol(if udp {
            IpProtocol::Udp
        } else {
            IpProtocol::Tcp
        }));
        attrs.push(RuleAttribute::DestinationPortRange(RulePortRange {
            start: port,
            end: port,
        }));
        attrs.push(RuleAttribute::Protocol(RouteProtocol::Other(
            self.ids.protocol,
        )));
        let proto = if udp { "udp" } else { "tcp" };
        req.execute()
            .await
            .map_err(nl(format!("add rule for {address} {proto} port {port}")))
    }

    /// Removes the diversions `remove` (only this instance's: routes and rules tagged
    /// with its protocol); returns what could not be removed. One already gone is no error.
    pub async fn undivert(&self, remove: &[Divert]) -> Vec<NetError> {
        let mut errors = Vec::new();
        if remove.is_empty() {
            return errors;
        }
        match self.rules(IpVersion::V4).await {
            Ok(rules) => {
                for r in rules.iter().filter(|r| {
                    rule_protocol(r) == Some(self.ids.protocol)
                        && rule_table(r) == self.ids.table
                        && rule_diverts(r).is_some_and(|(a, p, udp)| {
                            remove.iter().any(|d| match d {
                                Divert::Rules(addr, ports) => {
                                    !udp && *addr == a && ports.contains(&p)
                                }
                                Divert::UdpRules(addr, ports) => {
                                    udp && *addr == a && ports.contains(&p)
                                }
                                Divert::Route(_) => false,
                            })
                        })
                }) {
                    match self.handle.rule().del(r.clone()).execute().await {
                        Err(e) if !is_errno(&e, rustix::io::Errno::NOENT) => {
                            errors.push(nl("remove a diversion rule")(e));
                        }
                        _ => {}
                    }
                }
            }
            Err(e) => errors.push(e),
        }
        let routes: Result<Vec<RouteMessage>, _> = self
            .handle
            .route()
            .get(RouteMessageBuilder::<Ipv4Addr>::new().build())
            .execute()
            .try_collect()
            .await;
        match routes {
            Ok(routes) => {
                for r in routes.into_iter().filter(|r| {
                    u8::from(r.header.protocol) == self.ids.protocol
                        && r.header.destination_prefix_length == 32
                        && route_destination(r).is_some_and(|a| {
                            remove
                                .iter()
                                .any(|d| matches!(d, Divert::Route(x) if *x == a))
                        })
                }) {
                    match self.handle.route().del(r).execute().await {
                        Err(e)
                            if !is_errno(&e, rustix::io::Errno::SRCH)
                                && !is_errno(&e, rustix::io::Errno::NOENT) =>
                        {
                            errors.push(nl("remove a diversion route")(e));
                        }
                        _ => {}
                    }
                }
            }
            Err(e) => errors.push(nl("list routes")(e)),
        }
        errors
    }
}

/// The address and port a diversion rule selects, and whether it is UDP's.
fn rule_diverts(r: &rtnetlink::packet_route::rule::RuleMessage) -> Option<(Ipv4Addr, u16, bool)> {
    let address = r.attributes.iter().find_map(|a| match a {
        RuleAttribute::Destination(std::net::IpAddr::V4(a)) => Some(*a),
        _ => None,
    })?;
    let port = r.attributes.iter().find_map(|a| match a {
        RuleAttribute::DestinationPortRange(p) if p.start == p.end => Some(p.start),
        _ => None,
    })?;
    let udp = r
        .attributes
        .iter()
        .any(|a| matches!(a, RuleAttribute::IpProtocol(IpProtocol::Udp)));
    Some((address, port, udp))
}

/// An IPv4 route's destination.
fn route_destination(r: &RouteMessage) -> Option<Ipv4Addr> {
    r.attributes.iter().find_map(|a| match a {
        RouteAttribute::Destination(RouteAddress::Inet(a)) => Some(*a),
        _ => None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    const A: Ipv4Addr = Ipv4Addr::new(203, 0, 113, 10);
    const B: Ipv4Addr = Ipv4Addr::new(203, 0, 113, 11);

    #[test]
    fn ports_added_and_removed_on_an_owned_address_change_only_their_rules() {
        let r = Rediversion::plan(
            &[Divert::Rules(A, vec![80, 443])],
            &[(A, vec![443, 8080])],
            &[],
            &[],
        );
        assert_eq!(r.add, [Divert::Rules(A, vec![8080])]);
        assert_eq!(r.remove, [Divert::Rules(A, vec![80])]);
        assert_eq!(r.after, [Divert::Rules(A, vec![443, 8080])]);
    }

    #[test]
    fn ports_changed_under_a_route_change_nothing() {
        let r = Rediversion::plan(&[Divert::Route(A)], &[(A, vec![8080])], &[], &[A]);
        assert!(r.is_empty());
        assert_eq!(r.after, [Divert::Route(A)]);
    }

    #[test]
    fn a_new_address_is_routed_or_ruled_as_a_start_would_and_a_removed_one_undone() {
        let r = Rediversion::plan(&[Divert::Route(A)], &[(B, vec![443])], &[], &[]);
        assert_eq!(r.add, [Divert::Route(B)]);
        assert_eq!(r.remove, [Divert::Route(A)]);
        let r = Rediversion::plan(
            &[Divert::Route(A)],
            &[(A, vec![80]), (B, vec![443])],
            &[],
            &[B],
        );
        assert_eq!(r.add, [Divert::Rules(B, vec![443])]);
        assert!(r.remove.is_empty());
        assert_eq!(r.after, [Divert::Route(A), Divert::Rules(B, vec![443])]);
    }

    #[test]
    fn the_same_services_change_nothing() {
        let now = [Divert::Rules(A, vec![80]), Divert::Route(B)];
        let r = Rediversion::plan(&now, &[(A, vec![80]), (B, vec![1, 2])], &[], &[]);
        assert!(r.is_empty());
        assert_eq!(r.after, now);
    }

    #[test]
    fn quic_ports_get_udp_rules_on_an_owned_address_and_nothing_under_a_route() {
        // Added beside the TCP rules of an owned address; a route carries UDP already.
        let r = Rediversion::plan(
            &[Divert::Rules(A, vec![443]), Divert::Route(B)],
            &[(A, vec![443]), (B, vec![443])],
            &[(A, vec![443]), (B, vec![443])],
            &[],
        );
        assert_eq!(r.add, [Divert::UdpRules(A, vec![443])]);
        assert!(r.remove.is_empty());
        // Changed, then dropped with the address's QUIC.
        let now = [Divert::Rules(A, vec![443]), Divert::UdpRules(A, vec![443])];
        let r = Rediversion::plan(&now, &[(A, vec![443])], &[(A, vec![8443])], &[]);
        assert_eq!(r.add, [Divert::UdpRules(A, vec![8443])]);
        assert_eq!(r.remove, [Divert::UdpRules(A, vec![443])]);
        let r = Rediversion::plan(&now, &[(A, vec![443])], &[], &[]);
        assert!(r.add.is_empty());
        assert_eq!(r.remove, [Divert::UdpRules(A, vec![443])]);
        assert_eq!(r.after, [Divert::Rules(A, vec![443])]);
        // A new owned address gets both.
        let r = Rediversion::plan(&[], &[(A, vec![443])], &[(A, vec![443])], &[A]);
        assert_eq!(
            r.add,
            [Divert::Rules(A, vec![443]), Divert::UdpRules(A, vec![443])]
        );
    }
}
