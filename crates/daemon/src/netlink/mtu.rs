//! The TUN device's MTU, changed on a running device by a reload or an upgrade that
//! changes `[tun] mtu` (new flows agree their MSS from it; the others keep theirs).

use rtnetlink::LinkUnspec;

use super::{NetError, Netlink, nl};

impl Netlink {
    /// Sets the MTU of the link with index `link`.
    pub async fn set_mtu(&self, link: u32, mtu: u16) -> Result<(), NetError> {
        self.handle
            .link()
            .set(LinkUnspec::new_with_index(link).mtu(u32::from(mtu)).build())
            .execute()
            .await
            .map_err(nl(format!("set the TUN's MTU to {mtu}")))
    }
}
