//! Backends out of service and more backends: what the pool tests do to the testbed
//! ([`Topology::backend_outage`], [`Topology::end_outage`],
//! [`Topology::add_backend_address`]). Outages are nftables tables in the backend's
//! namespace, so its servers keep running and come back as they were.

use std::net::Ipv6Addr;

use crate::Error;
use crate::netns::Netns;
use crate::topology::Topology;

/// How a backend is taken out of service ([`Topology::backend_outage`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outage {
    /// Every TCP packet is answered with RST: a host whose servers stopped.
    Refuse,
    /// Every TCP packet is dropped: a host that went away.
    Silent,
}

impl Topology {
    /// Takes the backend in namespace `ns` out of service the way `outage` says, with an
    /// nftables table in that namespace: every TCP packet that reaches it is answered
    /// with RST ([`Outage::Refuse`], as a host whose servers stopped; connections in
    /// progress are reset at their next segment) or dropped ([`Outage::Silent`], as a
    /// host that went away). [`Topology::end_outage`] undoes it.
    pub fn backend_outage(&self, ns: &Netns, outage: Outage) -> Result<(), Error> {
        let verdict = match outage {
            Outage::Refuse => "reject with tcp reset",
            Outage::Silent => "drop",
        };
        let rules = format!(
            "table inet krc_outage {{\n\
             chain input {{ type filter hook input priority 0; meta l4proto tcp {verdict}; }}\n\
             }}\n"
        );
        let file = self.dir().join(format!("outage-{}.nft", ns.name()));
        std::fs::write(&file, rules)?;
        let out = ns
            .command("nft")
            .arg("-f")
            .arg(&file)
            .output()
            .map_err(|e| Error::spawn("nft", e))?;
        if out.status.success() {
            Ok(())
        } else {
            Err(Error::Command {
                command: "nft -f outage.nft".into(),
                status: out.status.to_string(),
                stderr: String::from_utf8_lossy(&out.stderr).trim().to_owned(),
            })
        }
    }

    /// Puts the backend in namespace `ns` back in service (undoes
    /// [`Topology::backend_outage`]).
    pub fn end_outage(&self, ns: &Netns) -> Result<(), Error> {
        let out = ns
            .command("nft")
            .args(["delete", "table", "inet", "krc_outage"])
            .output()
            .map_err(|e| Error::spawn("nft", e))?;
        if out.status.success() {
            Ok(())
        } else {
            Err(Error::Command {
                command: "nft delete table inet krc_outage".into(),
                status: out.status.to_string(),
                stderr: String::from_utf8_lossy(&out.stderr).trim().to_owned(),
            })
        }
    }

    /// Gives the backend in namespace `ns` one more address on the backend link, so it
    /// answers as one more backend (its servers listen on every address). Answers show
    /// the address a connection arrived on ([`crate::Seen::local`]).
    pub fn add_backend_address(&self, ns: &Netns, address: Ipv6Addr) -> Result<(), Error> {
        ns.ip([
            "addr",
            "add",
            &format!("{address}/64"),
            "dev",
            "eth0",
            "nodad",
        ])?;
        Ok(())
    }
}
