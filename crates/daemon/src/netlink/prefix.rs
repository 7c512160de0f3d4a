//! The translation prefix's routes: the `/96` into the TUN and the `local` route of its
//! health-check source. Set up at the start, and added and removed one prefix at a
//! time when a reload or an upgrade changes the prefix (the old one is served until
//! its last flow ends: core's `engine/prefixes.rs`).

use std::net::Ipv6Addr;

use kracauer_core::addr::Prefix96;
use rtnetlink::RouteMessageBuilder;
use rtnetlink::packet_route::route::{RouteMessage, RouteProtocol, RouteScope, RouteType};

use super::{NetError, Netlink, TABLE_LOCAL, is_errno, nl};

impl Netlink {
    /// Routes `prefix` into the TUN with index `tun`, and its health-check source
    /// `local`. One already there (an upgrade's predecessor made it) is no error.
    pub async fn route_prefix(&self, prefix: Prefix96, tun: u32) -> Result<(), NetError> {
        for (msg, what) in self.prefix_routes(prefix, tun).await? {
            match self.handle.route().add(msg).execute().await {
                Ok(()) => {}
                Err(e) if is_errno(&e, rustix::io::Errno::EXIST) => {}
                Err(e) => return Err(nl(format!("add {what}"))(e)),
            }
        }
        Ok(())
    }

    /// Removes the routes [`route_prefix`](Self::route_prefix) added for `prefix`; one
    /// already gone is no error.
    pub async fn unroute_prefix(&self, prefix: Prefix96, tun: u32) -> Result<(), NetError> {
        for (msg, what) in self.prefix_routes(prefix, tun).await? {
            match self.handle.route().del(msg).execute().await {
                Ok(()) => {}
                Err(e)
                    if is_errno(&e, rustix::io::Errno::SRCH)
                        || is_errno(&e, rustix::io::Errno::NOENT) => {}
                Err(e) => return Err(nl(format!("remove {what}"))(e)),
            }
        }
        Ok(())
    }

    async fn prefix_routes(
        &self,
        prefix: Prefix96,
        tun: u32,
    ) -> Result<[(RouteMessage, String); 2], NetError> {
        let into_tun = RouteMessageBuilder::<Ipv6Addr>::new()
            .destination_prefix(prefix.network(), 96)
            .output_interface(tun)
            .protocol(RouteProtocol::Other(self.ids.protocol))
            .scope(RouteScope::Link)
            .build();
        let source = crate::health::check::source(prefix);
        let lo = self.link_index("lo").await?;
        let check_source = RouteMessageBuilder::<Ipv6Addr>::new()
            .destination_prefix(source, 128)
            .output_interface(lo)
            .table_id(TABLE_LOCAL)
            .kind(RouteType::Local)
            .scope(RouteScope::Host)
            .protocol(RouteProtocol::Other(self.ids.protocol))
            .build();
        Ok([
            (into_tun, format!("route {prefix} into the TUN")),
            (
                check_source,
                format!("local route for the health-check source {source}"),
            ),
        ])
    }
}
