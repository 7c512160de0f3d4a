//! Stateless IPv4 <-> IPv6 header translation and ICMP error translation (RFC 7915).
//!
//! The engine decides every address and port (it owns the flow table and the RFC 6052
//! `/96` embedding); this module only rewrites packets. Two kinds of work:
//!
//! * **TCP and UDP, in place** ([`ipv4_to_ipv6`], [`ipv6_to_ipv4`]). The IPv6 header is
//!   written over the IPv4 header and the 20 bytes of headroom in front of it, so the
//!   packet grows backwards; the other way the IPv4 header is written just in front of the
//!   transport header and the packet start moves forward. The payload is never copied and
//!   never summed: the transport checksum is updated incrementally (RFC 1624) for the
//!   pseudo-header and port changes. The one exception: an IPv4 UDP datagram without a
//!   checksum (0) must get one in IPv6, and that is computed over the whole datagram.
//!   [`ChecksumForm::Partial`] handles packets whose checksum field holds only the folded,
//!   uncomplemented pseudo-header sum (`CHECKSUM_PARTIAL` from TUN offloads); there only
//!   the pseudo-header change is applied, since ports are summed later with the payload.
//! * **ICMP, into a caller-provided output buffer** ([`icmpv4_to_icmpv6`],
//!   [`icmpv6_to_icmpv4`]). Errors are translated per RFC 7915 §4.2 and §5.2, including
//!   the embedded packet, whose addresses, ports and TCP sequence numbers come from an
//!   [`InnerMapping`] supplied by the engine. The output is bounded (1280 bytes for
//!   ICMPv6, 576 for ICMPv4), so the copy is bounded too. Echo Request/Reply are
//!   translated the same way, whole (bounded by the message and `out`). ICMP checksums
//!   are verified on input and recomputed on output.
//!
//! Choices where the RFC leaves room:
//!
//! * TTL / hop limit: by default decremented, as RFC 7915 translators do (the translator
//!   is a router); a packet that would leave with 0 fails with
//!   [`XlatError::HopLimitExceeded`] so the engine can answer Time Exceeded.
//!   [`HopLimit::Keep`] copies it unchanged instead.
//! * Traffic class and TOS are copied both ways; the flow label is 0.
//! * IPv6 -> IPv4: DF is set iff the IPv4 packet is larger than 1260 bytes (§5.1); the
//!   Identification comes from the caller (the core holds no RNG).
//! * IPv4 options are dropped (an unexpired source route option is refused, §4.1); IPv6
//!   Hop-by-Hop, Destination Options and Routing headers with Segments Left 0 are
//!   skipped.
//! * Fragments (IPv4 MF or offset, IPv6 Fragment header) are refused with
//!   [`XlatError::Fragment`]: fragment handling is a later issue.
//! * The IPv4 header checksum of an input packet is not verified (the kernel routed it
//!   into the TUN and already did); an ICMP checksum is, since it is recomputed.
//! * ICMP errors: the embedded packet must be TCP or UDP and show at least its ports;
//!   its Identification becomes 0 going to IPv4 (a stateless translator does not know
//!   the original), its hop limit / TTL is copied, and an embedded UDP checksum of 0 is
//!   left alone. An ICMPv4 Fragmentation Needed with MTU 0 gets the RFC 1191 plateau
//!   below the embedded Total Length, plus 20 (see [`rfc7915::mtu_v4_to_v6`]). RFC 4884
//!   extensions are not translated: the length field is zeroed and any extension bytes
//!   are carried as quoted data.
//! * Packets that cannot be translated are refused with a named [`XlatError`]; ICMP
//!   messages RFC 7915 says to drop come back as [`XlatError::IcmpDropped`] with an
//!   [`IcmpDrop`] reason the engine can count.

mod icmp;
mod ip;
pub mod rfc7915;

pub use crate::wire::ChecksumForm;
pub use icmp::{
    IcmpV4Params, IcmpV6Params, MAX_ICMPV4_ERROR, MAX_ICMPV6_ERROR, icmpv4_to_icmpv6,
    icmpv6_to_icmpv4,
};
pub use ip::{HEADROOM, ipv4_to_ipv6, ipv6_to_ipv4};
pub use rfc7915::NextHopMtus;

use std::net::{Ipv4Addr, Ipv6Addr};

/// Why an ICMP message is not translated (RFC 7915 says to drop it silently; the engine
/// counts it by reason).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, thiserror::Error)]
pub enum IcmpDrop {
    /// Redirect, router/neighbour discovery, MLD: meaningful on one link only.
    #[error("single-hop ICMP message")]
    SingleHop,
    /// A type with no counterpart in the other family (source quench, timestamp,
    /// information, address mask, alternate host address).
    #[error("ICMP type has no counterpart in the other family")]
    NoCounterpart,
    /// A type this translator does not know.
    #[error("unknown ICMP type")]
    UnknownType,
    /// A known type whose code RFC 7915 does not translate.
    #[error("ICMP code not translatable")]
    UntranslatableCode,
    /// A Parameter Problem pointing at a field the other header lacks.
    #[error("parameter problem pointer not translatable")]
    UntranslatablePointer,
    /// An ICMP error about an ICMP error.
    #[error("ICMP error about an ICMP error")]
    ErrorAboutError,
    /// The embedded packet is neither TCP nor UDP.
    #[error("embedded packet is neither TCP nor UDP")]
    InnerProtocol,
    /// The embedded packet is too short to show its addresses and ports.
    #[error("embedded packet truncated before its ports")]
    InnerTruncated,
    /// The embedded packet's IP header is invalid.
    #[error("embedded packet malformed")]
    InnerMalformed,
    /// The embedded packet is a fragment (other than the first).
    #[error("embedded packet is a fragment")]
    InnerFragment,
    /// The mapping knows no flow for the embedded packet.
    #[error("no flow for the embedded packet")]
    InnerUnmapped,
}

/// Why a packet is not translated.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, thiserror::Error)]
pub enum XlatError {
    /// The bytes are not a well-formed IP packet of the expected version.
    #[error("malformed IP header")]
    Malformed,
    /// The transport header is shorter than its fixed part.
    #[error("transport header truncated")]
    TransportTruncated,
    /// Not TCP or UDP (for the in-place path) or not ICMP (for the ICMP path).
    #[error("protocol {0} not translatable here")]
    Protocol(u8),
    /// Fewer than 20 bytes of headroom in front of the IPv4 packet.
    #[error("not enough headroom to grow the header")]
    NoHeadroom,
    /// The TTL or hop limit would reach 0: the engine may answer Time Exceeded.
    #[error("TTL or hop limit exceeded")]
    HopLimitExceeded,
    /// An IPv4 fragment or an IPv6 Fragment header (handled by a later issue).
    #[error("fragments are not translated")]
    Fragment,
    /// An unexpired IPv4 loose or strict source route option (RFC 7915 §4.1).
    #[error("unexpired IPv4 source route")]
    SourceRoute,
    /// An IPv6 Routing header with Segments Left > 0 (RFC 7915 §5.1).
    #[error("IPv6 routing header with segments left")]
    RoutingHeader,
    /// An IPv6 packet too large to become one IPv4 packet (or a jumbogram).
    #[error("packet too large for IPv4")]
    TooBig,
    /// The ICMP checksum of the message to translate is wrong.
    #[error("bad ICMP checksum")]
    BadChecksum,
    /// The caller's output buffer is smaller than the minimum it must hold.
    #[error("output buffer too small")]
    OutputTooSmall,
    /// An ICMP message RFC 7915 says to drop.
    #[error("ICMP dropped: {0}")]
    IcmpDropped(#[from] IcmpDrop),
}

/// What happens to the TTL / hop limit.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum HopLimit {
    /// Decrement by one, as a router does; 0 after decrement is
    /// [`XlatError::HopLimitExceeded`] (so is 0 on arrival).
    #[default]
    Decrement,
    /// Copy unchanged.
    Keep,
}

/// Options of the in-place TCP/UDP translation.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Options {
    /// The form of the transport checksum field (full, or `CHECKSUM_PARTIAL`).
    pub checksum: ChecksumForm,
    /// TTL / hop-limit policy.
    pub hop_limit: HopLimit,
}

impl Default for Options {
    /// Full checksum, hop limit decremented.
    fn default() -> Self {
        Self {
            checksum: ChecksumForm::Full,
            hop_limit: HopLimit::Decrement,
        }
    }
}

/// Addresses and ports a translated IPv6 packet gets.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct V6Rewrite {
    /// New IPv6 source address.
    pub src: Ipv6Addr,
    /// New IPv6 destination address.
    pub dst: Ipv6Addr,
    /// New source port.
    pub src_port: u16,
    /// New destination port.
    pub dst_port: u16,
}

/// Addresses, ports and Identification a translated IPv4 packet gets.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct V4Rewrite {
    /// New IPv4 source address.
    pub src: Ipv4Addr,
    /// New IPv4 destination address.
    pub dst: Ipv4Addr,
    /// New source port.
    pub src_port: u16,
    /// New destination port.
    pub dst_port: u16,
    /// The IPv4 Identification (the core holds no RNG: the caller supplies it).
    pub identification: u16,
}

/// Transport protocol of a packet embedded in an ICMP error.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum InnerProtocol {
    /// TCP.
    Tcp,
    /// UDP.
    Udp,
}

/// What an ICMP error shows of the packet it is about: addresses, ports, and for TCP the
/// sequence and acknowledgement numbers when the (often truncated) copy still holds them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct InnerFlow<A> {
    /// Source address of the embedded packet.
    pub src: A,
    /// Destination address of the embedded packet.
    pub dst: A,
    /// Source port.
    pub src_port: u16,
    /// Destination port.
    pub dst_port: u16,
    /// TCP sequence number, if the copy holds it.
    pub seq: Option<u32>,
    /// TCP acknowledgement number, if the copy holds it.
    pub ack: Option<u32>,
}

/// The engine's rewrite of packets embedded in ICMP errors.
///
/// Given what the embedded packet shows, return what it must show after translation
/// (`None`: no such flow, the error is dropped as [`IcmpDrop::InnerUnmapped`]). A
/// returned `seq`/`ack` is written only where the copy holds that field; `None` leaves
/// a present field unchanged.
pub trait InnerMapping {
    /// An IPv4 packet embedded in an ICMPv4 error, to become IPv6.
    fn inner_v4_to_v6(
        &mut self,
        protocol: InnerProtocol,
        inner: &InnerFlow<Ipv4Addr>,
    ) -> Option<InnerFlow<Ipv6Addr>>;

    /// An IPv6 packet embedded in an ICMPv6 error, to become IPv4.
    fn inner_v6_to_v4(
        &mut self,
        protocol: InnerProtocol,
        inner: &InnerFlow<Ipv6Addr>,
    ) -> Option<InnerFlow<Ipv4Addr>>;
}
