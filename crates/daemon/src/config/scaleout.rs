//! `[scale_out]`: this instance's peers for the second chance (docs/scale-out.md,
//! "Rebalancing"; the daemon's side is [`crate::secondchance`]). Without the table,
//! second chance is off and a segment for no flow held here is answered with RST, as
//! before.
//!
//! ```toml
//! [scale_out]
//! address = "203.0.113.66"                  # this instance's underlay address
//! peers = ["203.0.113.66", "203.0.113.70"]  # every instance's; this one's is skipped
//! port = 7470                               # UDP, the same on every instance
//! ```

use std::net::{IpAddr, SocketAddr};

use serde::Deserialize;
use toml::Spanned;

use super::{ConfigError, Validator};

/// The UDP port second-chance traffic uses when `port` is not given.
pub const DEFAULT_PORT: u16 = 7470;
/// Most peers an instance passes a segment to (a segment is sent to each of them).
pub const MAX_PEERS: usize = 64;

/// `[scale_out]`, validated.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ScaleOut {
    /// Where this instance receives second-chance traffic, and sends it from: its
    /// `address` and `port`.
    pub listen: SocketAddr,
    /// The other instances' addresses and the port, this instance's own left out; in the
    /// order written, without repeats.
    pub peers: Vec<SocketAddr>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawScaleOut {
    address: Spanned<String>,
    #[serde(default)]
    peers: Vec<Spanned<String>>,
    port: Option<Spanned<i64>>,
}

impl Validator<'_> {
    pub(super) fn scale_out(
        &self,
        raw: Option<RawScaleOut>,
    ) -> Result<Option<ScaleOut>, ConfigError> {
        let Some(raw) = raw else { return Ok(None) };
        let address = self.ip(&raw.address, "scale_out.address")?;
        if address.is_unspecified() || address.is_multicast() {
            return self.err(
                raw.address.span(),
                "scale_out.address: give this instance's own unicast address on the link to its peers, not a wildcard",
            );
        }
        let port = match &raw.port {
            None => DEFAULT_PORT,
            Some(p) => match u16::try_from(*p.get_ref()) {
                Ok(p) if p > 0 => p,
                _ => {
                    return self.err(
                        p.span(),
                        format!(
                            "scale_out.port: {} is not a UDP port; give 1 to 65535 (default {DEFAULT_PORT})",
                            p.get_ref()
                        ),
                    );
                }
            },
        };
        let mut peers = Vec::new();
        for p in &raw.peers {
            let ip = self.ip(p, "scale_out.peers")?;
            if ip.is_ipv4() != address.is_ipv4() {
                return self.err(
                    p.span(),
                    format!(
                        "scale_out.peers: {ip} is not of the family of scale_out.address ({address}); give the peers' addresses on the same network"
                    ),
                );
            }
            if ip.is_unspecified() || ip.is_multicast() {
                return self.err(
                    p.span(),
                    format!("scale_out.peers: {ip} is not a peer's unicast address"),
                );
            }
            let peer = SocketAddr::new(ip, port);
            if ip != address && !peers.contains(&peer) {
                peers.push(peer);
            }
        }
        if peers.is_empty() {
            return self.err(
                raw.address.span(),
                "scale_out.peers: name at least one other instance's address (this instance's own is skipped)",
            );
        }
        if peers.len() > MAX_PEERS {
            return self.err(
                raw.address.span(),
                format!(
                    "scale_out.peers: {} peers; at most {MAX_PEERS}",
                    peers.len()
                ),
            );
        }
        Ok(Some(ScaleOut {
            listen: SocketAddr::new(address, port),
            peers,
        }))
    }

    fn ip(&self, v: &Spanned<String>, key: &str) -> Result<IpAddr, ConfigError> {
        match v.get_ref().parse() {
            Ok(ip) => Ok(ip),
            Err(_) => self.err(
                v.span(),
                format!(
                    "{key}: {:?} is not an IP address, e.g. \"203.0.113.66\" or \"2001:db8:ff:1::2\"",
                    v.get_ref()
                ),
            ),
        }
    }
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    use super::*;

    const BASE: &str =
        "prefix = \"2001:db8:64::/96\"\n\n[[listen]]\naddress = \"203.0.113.10\"\nhttp = [80]\n\n";

    fn parse(extra: &str) -> Result<Option<ScaleOut>, String> {
        super::super::parse(&format!("{BASE}{extra}"), Path::new("k.toml"))
            .map(|c| c.scale_out)
            .map_err(|e| e.to_string())
    }

    #[test]
    fn without_the_table_second_chance_is_off() {
        assert_eq!(parse(""), Ok(None));
    }

    #[test]
    fn the_peers_leave_out_this_instance_and_repeats_and_take_the_port() {
        let s = parse(
            "[scale_out]\naddress = \"203.0.113.66\"\npeers = [\"203.0.113.66\", \"203.0.113.70\", \"203.0.113.74\", \"203.0.113.70\"]\nport = 9000\n",
        )
        .unwrap()
        .unwrap();
        assert_eq!(s.listen, "203.0.113.66:9000".parse().unwrap());
        assert_eq!(
            s.peers,
            vec![
                "203.0.113.70:9000".parse::<SocketAddr>().unwrap(),
                "203.0.113.74:9000".parse().unwrap()
            ]
        );
    }

    #[test]
    fn the_port_defaults_and_ipv6_works() {
        let s =
            parse("[scale_out]\naddress = \"2001:db8:ff:1::2\"\npeers = [\"2001:db8:ff:2::2\"]\n")
                .unwrap()
                .unwrap();
        assert_eq!(s.listen.port(), DEFAULT_PORT);
        assert_eq!(
            s.peers,
            vec![SocketAddr::new(
                "2001:db8:ff:2::2".parse().unwrap(),
                DEFAULT_PORT
            )]
        );
    }

    #[test]
    fn bad_values_are_refused_with_what_would_be_valid() {
        for (extra, says) in [
            (
                "address = \"nowhere\"\npeers = [\"203.0.113.70\"]",
                "is not an IP address",
            ),
            (
                "address = \"0.0.0.0\"\npeers = [\"203.0.113.70\"]",
                "not a wildcard",
            ),
            (
                "address = \"203.0.113.66\"\npeers = [\"2001:db8::1\"]",
                "not of the family",
            ),
            (
                "address = \"203.0.113.66\"\npeers = [\"203.0.113.66\"]",
                "at least one other",
            ),
            (
                "address = \"203.0.113.66\"\npeers = []",
                "at least one other",
            ),
            (
                "address = \"203.0.113.66\"\npeers = [\"203.0.113.70\"]\nport = 0",
                "not a UDP port",
            ),
            (
                "address = \"203.0.113.66\"\npeers = [\"203.0.113.70\"]\nport = 70000",
                "not a UDP port",
            ),
            (
                "address = \"203.0.113.66\"\npeer = [\"203.0.113.70\"]",
                "unknown field",
            ),
        ] {
            let e = parse(&format!("[scale_out]\n{extra}\n")).unwrap_err();
            assert!(e.contains(says), "{extra}: {e}");
            assert!(e.contains("k.toml:"), "{e}");
        }
    }
}
