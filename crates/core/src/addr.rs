//! Embedding client IPv4 addresses in the operator's IPv6 `/96` prefix and back.
//!
//! RFC 6052 §2.2 with a /96 prefix: the IPv4 address is the low 32 bits, so
//! `2001:db8:64::/96` and `198.51.100.2` give `2001:db8:64::c633:6402`. A [`Prefix96`]
//! can only be built from a prefix that a backend can route back to this host: the
//! parser refuses what could never work (multicast, loopback, link-local, the
//! unspecified and IPv4-compatible `::/96`, IPv4-mapped `::ffff:0:0/96`, the discard-only
//! `100::/64`), and says why.

use core::fmt;
use core::str::FromStr;
use std::net::{Ipv4Addr, Ipv6Addr};

/// An IPv6 `/96` prefix whose low 32 bits carry an IPv4 address.
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct Prefix96 {
    /// The 96 prefix bits, as the first 12 bytes of the address.
    high: [u8; 12],
}

/// Why a string is not a usable translation prefix.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PrefixError {
    #[error("{0:?} is not an IPv6 prefix: write it as ADDRESS/96, e.g. 2001:db8:64::/96")]
    Syntax(String),
    #[error(
        "the prefix length is /{0}, but it must be /96: the client's IPv4 address fills the low 32 bits"
    )]
    NotSlash96(u8),
    #[error(
        "the prefix has bits set in its low 32 bits ({0}); those bits carry the client address, so write it with them zero, e.g. {1}/96"
    )]
    HostBitsSet(Ipv6Addr, Ipv6Addr),
    #[error(
        "::/96 is the unspecified address's block (deprecated IPv4-compatible addresses, RFC 4291 §2.5.5.1); backends cannot route it back"
    )]
    Unspecified,
    #[error("::1 is the loopback address; backends cannot route it back to this host")]
    Loopback,
    #[error("{0} is multicast (ff00::/8); client addresses must be unicast")]
    Multicast(Ipv6Addr),
    #[error("{0} is link-local (fe80::/10); it is not routable beyond one link")]
    LinkLocal(Ipv6Addr),
    #[error(
        "::ffff:0:0/96 is the IPv4-mapped block (RFC 4291 §2.5.5.2); it never appears on the wire"
    )]
    Ipv4Mapped,
    #[error("{0} is in the discard-only block 100::/64 (RFC 6666); packets to it are dropped")]
    DiscardOnly(Ipv6Addr),
}

impl Prefix96 {
    /// Builds the prefix from an address whose low 32 bits are zero.
    pub fn new(network: Ipv6Addr) -> Result<Self, PrefixError> {
        let seg = network.segments();
        if network == Ipv6Addr::LOCALHOST {
            return Err(PrefixError::Loopback);
        }
        if seg[..6] == [0; 6] {
            return Err(PrefixError::Unspecified);
        }
        let host = (u32::from(seg[6]) << 16) | u32::from(seg[7]);
        if host != 0 {
            let mut o = network.octets();
            o[12..].fill(0);
            return Err(PrefixError::HostBitsSet(network, Ipv6Addr::from(o)));
        }
        if seg[0] & 0xff00 == 0xff00 {
            return Err(PrefixError::Multicast(network));
        }
        if seg[0] & 0xffc0 == 0xfe80 {
            return Err(PrefixError::LinkLocal(network));
        }
        if seg[..5] == [0; 5] && seg[5] == 0xffff {
            return Err(PrefixError::Ipv4Mapped);
        }
        if seg[..4] == [0x100, 0, 0, 0] {
            return Err(PrefixError::DiscardOnly(network));
        }
        let o = network.octets();
        let mut high = [0; 12];
        high.copy_from_slice(&o[..12]);
        Ok(Self { high })
    }

    /// The prefix as an address with the low 32 bits zero.
    pub fn network(&self) -> Ipv6Addr {
        self.embed(Ipv4Addr::UNSPECIFIED)
    }

    /// The IPv6 address that stands for `v4`.
    pub fn embed(&self, v4: Ipv4Addr) -> Ipv6Addr {
        let mut o = [0; 16];
        o[..12].copy_from_slice(&self.high);
        o[12..].copy_from_slice(&v4.octets());
        Ipv6Addr::from(o)
    }

    /// The IPv4 address embedded in `v6`, if `v6` is inside this prefix.
    pub fn extract(&self, v6: Ipv6Addr) -> Option<Ipv4Addr> {
        let o = v6.octets();
        (o[..12] == self.high).then(|| Ipv4Addr::new(o[12], o[13], o[14], o[15]))
    }

    /// Whether `v6` is inside this prefix.
    pub fn contains(&self, v6: Ipv6Addr) -> bool {
        v6.octets()[..12] == self.high
    }
}

/// The IPv4 address in the low 32 bits of any IPv6 address (no prefix check).
pub fn low32(v6: Ipv6Addr) -> Ipv4Addr {
    let o = v6.octets();
    Ipv4Addr::new(o[12], o[13], o[14], o[15])
}

impl FromStr for Prefix96 {
    type Err = PrefixError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let syntax = || PrefixError::Syntax(s.to_owned());
        let (addr, len) = s.trim().split_once('/').ok_or_else(syntax)?;
        let addr: Ipv6Addr = addr.parse().map_err(|_| syntax())?;
        let len: u8 = len.parse().map_err(|_| syntax())?;
        if len > 128 {
            return Err(syntax());
        }
        if len != 96 {
            return Err(PrefixError::NotSlash96(len));
        }
        Self::new(addr)
    }
}

impl fmt::Display for Prefix96 {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/96", self.network())
    }
}

impl fmt::Debug for Prefix96 {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Prefix96({self})")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn p(s: &str) -> Result<Prefix96, PrefixError> {
        s.parse()
    }

    #[test]
    fn client_address_fills_the_low_32_bits() {
        let prefix = p("2001:db8:64::/96").unwrap();
        let v6 = prefix.embed(Ipv4Addr::new(198, 51, 100, 2));
        assert_eq!(v6, "2001:db8:64::c633:6402".parse::<Ipv6Addr>().unwrap());
        assert_eq!(prefix.extract(v6), Some(Ipv4Addr::new(198, 51, 100, 2)));
    }

    #[test]
    fn address_outside_the_prefix_extracts_nothing() {
        let prefix = p("2001:db8:64::/96").unwrap();
        assert_eq!(
            prefix.extract("2001:db8:65::c633:6402".parse().unwrap()),
            None
        );
        assert!(!prefix.contains("2001:db8:1::2".parse().unwrap()));
    }

    #[test]
    fn prefix_prints_as_written_canonically() {
        assert_eq!(
            p("2001:0db8:0064:0::/96").unwrap().to_string(),
            "2001:db8:64::/96"
        );
    }

    #[test]
    fn other_lengths_are_refused_with_the_length() {
        assert_eq!(p("2001:db8:64::/64"), Err(PrefixError::NotSlash96(64)));
        assert_eq!(p("2001:db8:64::/128"), Err(PrefixError::NotSlash96(128)));
    }

    #[test]
    fn malformed_text_is_a_syntax_error() {
        for s in [
            "2001:db8:64::",
            "2001:db8:64::/",
            "2001:db8:64::/abc",
            "198.51.100.0/24",
            "x/96",
            "::/129",
        ] {
            assert!(matches!(p(s), Err(PrefixError::Syntax(_))), "{s}");
        }
    }

    #[test]
    fn host_bits_are_refused_and_the_fix_is_suggested() {
        let err = p("2001:db8:64::1/96").unwrap_err();
        assert_eq!(
            err,
            PrefixError::HostBitsSet(
                "2001:db8:64::1".parse().unwrap(),
                "2001:db8:64::".parse().unwrap()
            )
        );
        assert!(err.to_string().contains("2001:db8:64::/96"));
    }

    #[test]
    fn unusable_blocks_are_refused_by_kind() {
        assert_eq!(p("::/96"), Err(PrefixError::Unspecified));
        assert_eq!(p("::1/96"), Err(PrefixError::Loopback));
        assert!(matches!(p("ff02::/96"), Err(PrefixError::Multicast(_))));
        assert!(matches!(p("fe80::/96"), Err(PrefixError::LinkLocal(_))));
        assert!(matches!(p("febf:1::/96"), Err(PrefixError::LinkLocal(_))));
        assert_eq!(p("::ffff:0:0/96"), Err(PrefixError::Ipv4Mapped));
        assert!(matches!(p("100::/96"), Err(PrefixError::DiscardOnly(_))));
    }

    #[test]
    fn neighbours_of_refused_blocks_are_accepted() {
        for s in [
            "fec0::/96",
            "64:ff9b::/96",
            "100:0:0:1::/96",
            "::fffe:0:0/96",
            "fd00:64::/96",
        ] {
            assert!(p(s).is_ok(), "{s}");
        }
    }

    #[test]
    fn low32_ignores_the_prefix() {
        assert_eq!(
            low32("2001:db8:64::c633:6402".parse().unwrap()),
            Ipv4Addr::new(198, 51, 100, 2)
        );
    }
}
