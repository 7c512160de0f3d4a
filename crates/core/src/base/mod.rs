//! The leaf of the core: the vocabulary every layer shares and that depends on nothing
//! else in the crate. Flow keys, the protocol a service port speaks, how a flow ended,
//! what the device said of a packet's checksum, and the named reasons a packet is dropped
//! for (`reason`).
//!
//! Layers above (see `docs/architecture.md`): `wire` → {`xlat`, `tcp`, `peek`, `route`}
//! → `flow` → `engine`. Nothing here may use any of them.

mod reason;

use std::hash::{Hash, Hasher};
use std::net::{Ipv4Addr, Ipv6Addr};

pub use self::reason::{DropReason, Outcome, PeekPath, Side};

/// A flow as the client side sees it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ClientKey {
    pub client: Ipv4Addr,
    pub client_port: u16,
    pub service: Ipv4Addr,
    pub service_port: u16,
}

/// A flow as the backend side sees it (the prefix is the same for every flow of one
/// engine, so the client's IPv4 address stands for its embedded IPv6 address).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BackendKey {
    pub backend: Ipv6Addr,
    pub backend_port: u16,
    pub client: Ipv4Addr,
    pub client_port: u16,
}

// The keys hash as two or three whole words rather than field by field: each write is a
// SipHash round's worth of work, and this runs for every forwarded packet.
impl Hash for ClientKey {
    fn hash<H: Hasher>(&self, state: &mut H) {
        state.write_u64(
            (u64::from(u32::from(self.client)) << 32) | u64::from(u32::from(self.service)),
        );
        state.write_u32((u32::from(self.client_port) << 16) | u32::from(self.service_port));
    }
}

impl Hash for BackendKey {
    fn hash<H: Hasher>(&self, state: &mut H) {
        state.write_u128(u128::from(self.backend));
        state.write_u64(
            (u64::from(u32::from(self.client)) << 32)
                | (u64::from(self.backend_port) << 16)
                | u64::from(self.client_port),
        );
    }
}

/// Which peeker a service port uses.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Protocol {
    /// TLS ClientHello SNI.
    Tls,
    /// HTTP/1.x `Host`.
    Http,
    /// QUIC (UDP): the SNI of the ClientHello in the client's Initial packets.
    Quic,
}

impl Protocol {
    /// Every protocol, in declaration order.
    pub const ALL: &'static [Protocol] = &[Protocol::Tls, Protocol::Http, Protocol::Quic];

    /// Lower-case name for metrics labels and logs.
    pub const fn name(self) -> &'static str {
        match self {
            Protocol::Tls => "tls",
            Protocol::Http => "http",
            Protocol::Quic => "quic",
        }
    }
}

/// What the device that delivered a packet says of its TCP or UDP checksum.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum RxChecksum {
    /// Nothing: the field holds a finished checksum that nobody has checked yet. The
    /// engine verifies it on every segment it reads itself.
    #[default]
    Unchecked,
    /// The kernel verified the finished checksum (virtio-net `DATA_VALID`).
    Valid,
    /// `CHECKSUM_PARTIAL` (virtio-net `NEEDS_CSUM`): the field holds the folded
    /// pseudo-header sum and the rest is computed when the packet leaves. Only the
    /// kernel's own stack and GRO (which verified every segment it merged) produce such
    /// packets, so the data is trusted as verified.
    Partial,
}

impl RxChecksum {
    /// Whether the engine must verify the checksum before trusting the segment.
    pub fn needs_verifying(self) -> bool {
        self == Self::Unchecked
    }
}
