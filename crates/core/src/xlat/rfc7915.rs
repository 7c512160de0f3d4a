//! The pure RFC 7915 rules, free of any packet buffer: ICMP type/code maps both ways
//! (§4.2, §5.2), the Parameter Problem pointer maps (Figures 3 and 6), Packet Too Big /
//! Fragmentation Needed MTU adjustment with the RFC 1191 plateau table, and the IPv4
//! DF rule of §5.1.
//!
//! Every function here is total: an input the RFC says to drop yields an [`IcmpDrop`]
//! naming why, never a panic.

use super::IcmpDrop;

// The ICMP type numbers have one home, `wire`; the RFC's names for them are used here.
use crate::wire::icmpv4::msg_type as icmpv4;
use crate::wire::icmpv4::unreachable::FRAG_NEEDED as CODE_FRAG_NEEDED;
use crate::wire::icmpv6::msg_type as icmpv6;

/// What an ICMPv4 message becomes in ICMPv6 (RFC 7915 §4.2). The Packet Too Big MTU is
/// computed separately by [`mtu_v4_to_v6`] because it needs the embedded packet.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Icmpv6Out {
    /// Echo Request (128); identifier and sequence number are kept.
    EchoRequest,
    /// Echo Reply (129); identifier and sequence number are kept.
    EchoReply,
    /// Destination Unreachable (1) with this code.
    DestinationUnreachable {
        /// The ICMPv6 code.
        code: u8,
    },
    /// Packet Too Big (2), code 0.
    PacketTooBig,
    /// Time Exceeded (3) with the same code.
    TimeExceeded {
        /// The ICMPv6 code (0 hop limit, 1 reassembly).
        code: u8,
    },
    /// Parameter Problem (4).
    ParameterProblem {
        /// The ICMPv6 code.
        code: u8,
        /// Offset into the embedded IPv6 packet.
        pointer: u32,
    },
}

impl Icmpv6Out {
    /// The ICMPv6 (type, code) pair.
    pub fn type_code(self) -> (u8, u8) {
        match self {
            Self::EchoRequest => (icmpv6::ECHO_REQUEST, 0),
            Self::EchoReply => (icmpv6::ECHO_REPLY, 0),
            Self::DestinationUnreachable { code } => (icmpv6::DEST_UNREACHABLE, code),
            Self::PacketTooBig => (icmpv6::PACKET_TOO_BIG, 0),
            Self::TimeExceeded { code } => (icmpv6::TIME_EXCEEDED, code),
            Self::ParameterProblem { code, .. } => (icmpv6::PARAMETER_PROBLEM, code),
        }
    }

    /// Whether this is an error message (it embeds a packet to translate).
    pub fn is_error(self) -> bool {
        !matches!(self, Self::EchoRequest | Self::EchoReply)
    }
}

/// What an ICMPv6 message becomes in ICMPv4 (RFC 7915 §5.2). The Fragmentation Needed
/// MTU is computed separately by [`mtu_v6_to_v4`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Icmpv4Out {
    /// Echo Request (8); identifier and sequence number are kept.
    EchoRequest,
    /// Echo Reply (0); identifier and sequence number are kept.
    EchoReply,
    /// Destination Unreachable (3) with this code (never 4: see `FragmentationNeeded`).
    DestinationUnreachable {
        /// The ICMPv4 code.
        code: u8,
    },
    /// Destination Unreachable (3), code 4, with a next-hop MTU.
    FragmentationNeeded,
    /// Time Exceeded (11) with the same code.
    TimeExceeded {
        /// The ICMPv4 code (0 TTL, 1 reassembly).
        code: u8,
    },
    /// Parameter Problem (12), code 0.
    ParameterProblem {
        /// Offset into the embedded IPv4 header.
        pointer: u8,
    },
}

impl Icmpv4Out {
    /// The ICMPv4 (type, code) pair.
    pub fn type_code(self) -> (u8, u8) {
        match self {
            Self::EchoRequest => (icmpv4::ECHO_REQUEST, 0),
            Self::EchoReply => (icmpv4::ECHO_REPLY, 0),
            Self::DestinationUnreachable { code } => (icmpv4::DEST_UNREACHABLE, code),
            Self::FragmentationNeeded => (icmpv4::DEST_UNREACHABLE, CODE_FRAG_NEEDED),
            Self::TimeExceeded { code } => (icmpv4::TIME_EXCEEDED, code),
            Self::ParameterProblem { .. } => (icmpv4::PARAMETER_PROBLEM, 0),
        }
    }

    /// Whether this is an error message (it embeds a packet to translate).
    pub fn is_error(self) -> bool {
        !matches!(self, Self::EchoRequest | Self::EchoReply)
    }
}

/// Offset of the Next Header field in the IPv6 header: the Parameter Problem pointer
/// for an ICMPv4 Protocol Unreachable (RFC 7915 §4.2).
pub const IPV6_NEXT_HEADER_POINTER: u32 = 6;

/// Maps an ICMPv4 type/code to ICMPv6 (RFC 7915 §4.2). `pointer` is the ICMPv4
/// Parameter Problem pointer (byte 4 of the ICMP header); it is ignored for other types.
pub fn map_icmpv4(ty: u8, code: u8, pointer: u8) -> Result<Icmpv6Out, IcmpDrop> {
    use icmpv4::*;
    match ty {
        ECHO_REQUEST => Ok(Icmpv6Out::EchoRequest),
        ECHO_REPLY => Ok(Icmpv6Out::EchoReply),
        DEST_UNREACHABLE => match code {
            // Net, host, source route failed, unknown net/host, isolated, TOS unreachable.
            0 | 1 | 5 | 6 | 7 | 8 | 11 | 12 => Ok(Icmpv6Out::DestinationUnreachable { code: 0 }),
            // Protocol unreachable: Parameter Problem, unrecognized Next Header.
            2 => Ok(Icmpv6Out::ParameterProblem {
                code: 1,
                pointer: IPV6_NEXT_HEADER_POINTER,
            }),
            3 => Ok(Icmpv6Out::DestinationUnreachable { code: 4 }),
            CODE_FRAG_NEEDED => Ok(Icmpv6Out::PacketTooBig),
            // Administratively prohibited (net, host, communication), precedence cutoff.
            9 | 10 | 13 | 15 => Ok(Icmpv6Out::DestinationUnreachable { code: 1 }),
            // 14 (host precedence violation) and unassigned codes.
            _ => Err(IcmpDrop::UntranslatableCode),
        },
        TIME_EXCEEDED => match code {
            0 | 1 => Ok(Icmpv6Out::TimeExceeded { code }),
            _ => Err(IcmpDrop::UntranslatableCode),
        },
        PARAMETER_PROBLEM => match code {
            // Pointer indicates the error; bad length.
            0 | 2 => match pointer_v4_to_v6(pointer) {
                Some(pointer) => Ok(Icmpv6Out::ParameterProblem { code: 0, pointer }),
                None => Err(IcmpDrop::UntranslatablePointer),
            },
            // 1 (missing a required option) and unassigned codes.
            _ => Err(IcmpDrop::UntranslatableCode),
        },
        REDIRECT | ROUTER_ADVERTISEMENT | ROUTER_SOLICITATION => Err(IcmpDrop::SingleHop),
        // Source quench, alternate host, timestamp, information, address mask.
        SOURCE_QUENCH | ALTERNATE_HOST | 13..=18 => Err(IcmpDrop::NoCounterpart),
        _ => Err(IcmpDrop::UnknownType),
    }
}

/// Maps an ICMPv6 type/code to ICMPv4 (RFC 7915 §5.2). `pointer` is the ICMPv6
/// Parameter Problem pointer (bytes 4..8); it is ignored for other types.
pub fn map_icmpv6(ty: u8, code: u8, pointer: u32) -> Result<Icmpv4Out, IcmpDrop> {
    use icmpv6::*;
    match ty {
        ECHO_REQUEST => Ok(Icmpv4Out::EchoRequest),
        ECHO_REPLY => Ok(Icmpv4Out::EchoReply),
        DEST_UNREACHABLE => match code {
            // No route, beyond scope of source address, address unreachable: host unreachable.
            0 | 2 | 3 => Ok(Icmpv4Out::DestinationUnreachable { code: 1 }),
            // Administratively prohibited: host administratively prohibited.
            1 => Ok(Icmpv4Out::DestinationUnreachable { code: 10 }),
            4 => Ok(Icmpv4Out::DestinationUnreachable { code: 3 }),
            _ => Err(IcmpDrop::UntranslatableCode),
        },
        PACKET_TOO_BIG => Ok(Icmpv4Out::FragmentationNeeded),
        TIME_EXCEEDED => match code {
            0 | 1 => Ok(Icmpv4Out::TimeExceeded { code }),
            _ => Err(IcmpDrop::UntranslatableCode),
        },
        PARAMETER_PROBLEM => match code {
            0 => match pointer_v6_to_v4(pointer) {
                Some(pointer) => Ok(Icmpv4Out::ParameterProblem { pointer }),
                None => Err(IcmpDrop::UntranslatablePointer),
            },
            // Unrecognized Next Header: protocol unreachable.
            1 => Ok(Icmpv4Out::DestinationUnreachable { code: 2 }),
            // 2 (unrecognized IPv6 option) and anything newer.
            _ => Err(IcmpDrop::UntranslatableCode),
        },
        // Neighbour discovery, MLD, router renumbering and the like never leave the link.
        130..=137 | 143 => Err(IcmpDrop::SingleHop),
        _ => Err(IcmpDrop::UnknownType),
    }
}

/// RFC 7915 Figure 3: an IPv4 header offset to the IPv6 header offset of the field
/// that replaces it. `None` for fields IPv6 lacks (identification, flags, fragment
/// offset, header checksum) and for options.
pub fn pointer_v4_to_v6(pointer: u8) -> Option<u32> {
    match pointer {
        0 => Some(0),     // version/IHL -> version/traffic class
        1 => Some(1),     // type of service -> traffic class
        2 | 3 => Some(4), // total length -> payload length
        8 => Some(7),     // TTL -> hop limit
        9 => Some(6),     // protocol -> next header
        12..=15 => Some(8),
        16..=19 => Some(24),
        _ => None,
    }
}

/// RFC 7915 Figure 6: an IPv6 header offset to the IPv4 header offset of the field
/// that replaces it. `None` for the flow label and for offsets past the fixed header.
pub fn pointer_v6_to_v4(pointer: u32) -> Option<u8> {
    match pointer {
        0 => Some(0),     // version/traffic class -> version/IHL
        1 => Some(1),     // traffic class/flow label -> type of service
        4 | 5 => Some(2), // payload length -> total length
        6 => Some(9),     // next header -> protocol
        7 => Some(8),     // hop limit -> TTL
        8..=23 => Some(12),
        24..=39 => Some(16),
        _ => None,
    }
}

/// The RFC 1191 §7 table of common MTU plateaus, largest first.
pub const RFC1191_PLATEAUS: [u16; 11] = [
    65535, 32000, 17914, 8166, 4352, 2002, 1492, 1006, 508, 296, 68,
];

/// The greatest RFC 1191 plateau strictly below `total_length` (the embedded packet's
/// Total Length), or 68, the IPv4 minimum, when none is.
pub fn plateau_below(total_length: u16) -> u16 {
    RFC1191_PLATEAUS
        .iter()
        .copied()
        .find(|&p| p < total_length)
        .unwrap_or(68)
}

/// Smallest MTU an IPv6 link may have (RFC 8200 §5).
pub const IPV6_MIN_MTU: u32 = 1280;
/// Smallest MTU an IPv4 link may have (RFC 791).
pub const IPV4_MIN_MTU: u16 = 68;
/// IPv6 header length minus IPv4 header length.
pub const HEADER_GROWTH: u32 = 20;

/// Next-hop MTUs of the translator's own interfaces, which cap the MTU it reports.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct NextHopMtus {
    /// MTU towards IPv4 destinations.
    pub ipv4: u16,
    /// MTU towards IPv6 destinations.
    pub ipv6: u32,
}

impl Default for NextHopMtus {
    /// No cap from the translator's side (the caller knows nothing better).
    fn default() -> Self {
        Self {
            ipv4: u16::MAX,
            ipv6: u32::MAX,
        }
    }
}

/// The Packet Too Big MTU for an ICMPv4 Fragmentation Needed (RFC 7915 §4.2):
/// `max(1280, min(advertised + 20, ipv6 next hop, ipv4 next hop + 20))`. An advertised
/// MTU of 0 (a router predating RFC 1191) is replaced by the greatest RFC 1191 plateau
/// below the embedded packet's Total Length; that plateau is an IPv4 MTU, so it gets the
/// same `+ 20` as an advertised one.
pub fn mtu_v4_to_v6(advertised: u16, inner_total_length: u16, next_hop: NextHopMtus) -> u32 {
    let v4 = if advertised == 0 {
        plateau_below(inner_total_length)
    } else {
        advertised
    };
    (u32::from(v4) + HEADER_GROWTH)
        .min(next_hop.ipv6)
        .min(u32::from(next_hop.ipv4) + HEADER_GROWTH)
        .max(IPV6_MIN_MTU)
}

/// The Fragmentation Needed MTU for an ICMPv6 Packet Too Big (RFC 7915 §5.2):
/// `min(advertised − 20, ipv4 next hop, ipv6 next hop − 20)`, never below 68 and never
/// above 65535.
pub fn mtu_v6_to_v4(advertised: u32, next_hop: NextHopMtus) -> u16 {
    let mtu = advertised
        .saturating_sub(HEADER_GROWTH)
        .min(u32::from(next_hop.ipv4))
        .min(next_hop.ipv6.saturating_sub(HEADER_GROWTH))
        .min(u32::from(u16::MAX));
    (mtu as u16).max(IPV4_MIN_MTU)
}

pub use crate::wire::ipv4::{DF_THRESHOLD, ipv4_dont_fragment};

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn echo_request_and_reply_map_both_ways() {
        assert_eq!(map_icmpv4(8, 0, 0), Ok(Icmpv6Out::EchoRequest));
        assert_eq!(map_icmpv4(0, 0, 0), Ok(Icmpv6Out::EchoReply));
        assert_eq!(map_icmpv6(128, 0, 0), Ok(Icmpv4Out::EchoRequest));
        assert_eq!(map_icmpv6(129, 0, 0), Ok(Icmpv4Out::EchoReply));
        assert_eq!(Icmpv6Out::EchoRequest.type_code(), (128, 0));
        assert_eq!(Icmpv4Out::EchoReply.type_code(), (0, 0));
    }

    #[test]
    fn v4_unreachable_codes_follow_rfc7915_section_4_2() {
        let du = |code| Ok(Icmpv6Out::DestinationUnreachable { code });
        for c in [0, 1, 5, 6, 7, 8, 11, 12] {
            assert_eq!(map_icmpv4(3, c, 0), du(0), "code {c}");
        }
        assert_eq!(map_icmpv4(3, 3, 0), du(4));
        for c in [9, 10, 13, 15] {
            assert_eq!(map_icmpv4(3, c, 0), du(1), "code {c}");
        }
        assert_eq!(map_icmpv4(3, 4, 0), Ok(Icmpv6Out::PacketTooBig));
        assert_eq!(
            map_icmpv4(3, 2, 0),
            Ok(Icmpv6Out::ParameterProblem {
                code: 1,
                pointer: 6
            })
        );
        assert_eq!(map_icmpv4(3, 14, 0), Err(IcmpDrop::UntranslatableCode));
        assert_eq!(map_icmpv4(3, 16, 0), Err(IcmpDrop::UntranslatableCode));
    }

    #[test]
    fn v4_time_exceeded_keeps_its_code() {
        assert_eq!(
            map_icmpv4(11, 0, 0),
            Ok(Icmpv6Out::TimeExceeded { code: 0 })
        );
        assert_eq!(
            map_icmpv4(11, 1, 0),
            Ok(Icmpv6Out::TimeExceeded { code: 1 })
        );
        assert_eq!(map_icmpv4(11, 2, 0), Err(IcmpDrop::UntranslatableCode));
    }

    #[test]
    fn v4_parameter_problem_pointer_is_mapped_or_dropped() {
        let pp = |pointer| Ok(Icmpv6Out::ParameterProblem { code: 0, pointer });
        assert_eq!(map_icmpv4(12, 0, 8), pp(7));
        assert_eq!(map_icmpv4(12, 2, 3), pp(4));
        assert_eq!(map_icmpv4(12, 0, 10), Err(IcmpDrop::UntranslatablePointer));
        assert_eq!(map_icmpv4(12, 1, 0), Err(IcmpDrop::UntranslatableCode));
    }

    #[test]
    fn v4_types_without_counterpart_are_dropped_by_reason() {
        assert_eq!(map_icmpv4(5, 1, 0), Err(IcmpDrop::SingleHop));
        assert_eq!(map_icmpv4(9, 0, 0), Err(IcmpDrop::SingleHop));
        assert_eq!(map_icmpv4(10, 0, 0), Err(IcmpDrop::SingleHop));
        for ty in [4, 6, 13, 14, 15, 16, 17, 18] {
            assert_eq!(
                map_icmpv4(ty, 0, 0),
                Err(IcmpDrop::NoCounterpart),
                "type {ty}"
            );
        }
        assert_eq!(map_icmpv4(42, 0, 0), Err(IcmpDrop::UnknownType));
    }

    #[test]
    fn v6_unreachable_codes_follow_rfc7915_section_5_2() {
        let du = |code| Ok(Icmpv4Out::DestinationUnreachable { code });
        assert_eq!(map_icmpv6(1, 0, 0), du(1));
        assert_eq!(map_icmpv6(1, 1, 0), du(10));
        assert_eq!(map_icmpv6(1, 2, 0), du(1));
        assert_eq!(map_icmpv6(1, 3, 0), du(1));
        assert_eq!(map_icmpv6(1, 4, 0), du(3));
        assert_eq!(map_icmpv6(1, 5, 0), Err(IcmpDrop::UntranslatableCode));
        assert_eq!(map_icmpv6(2, 0, 0), Ok(Icmpv4Out::FragmentationNeeded));
        assert_eq!(Icmpv4Out::FragmentationNeeded.type_code(), (3, 4));
    }

    #[test]
    fn v6_parameter_problem_maps_pointer_or_becomes_protocol_unreachable() {
        assert_eq!(
            map_icmpv6(4, 0, 7),
            Ok(Icmpv4Out::ParameterProblem { pointer: 8 })
        );
        assert_eq!(
            map_icmpv6(4, 1, 40),
            Ok(Icmpv4Out::DestinationUnreachable { code: 2 })
        );
        assert_eq!(map_icmpv6(4, 0, 2), Err(IcmpDrop::UntranslatablePointer));
        assert_eq!(map_icmpv6(4, 0, 40), Err(IcmpDrop::UntranslatablePointer));
        assert_eq!(map_icmpv6(4, 2, 0), Err(IcmpDrop::UntranslatableCode));
    }

    #[test]
    fn v6_link_local_and_unknown_types_are_dropped() {
        for ty in 130..=137 {
            assert_eq!(map_icmpv6(ty, 0, 0), Err(IcmpDrop::SingleHop), "type {ty}");
        }
        assert_eq!(map_icmpv6(100, 0, 0), Err(IcmpDrop::UnknownType));
        assert_eq!(map_icmpv6(200, 0, 0), Err(IcmpDrop::UnknownType));
        assert_eq!(map_icmpv6(3, 2, 0), Err(IcmpDrop::UntranslatableCode));
    }

    #[test]
    fn pointer_maps_match_rfc7915_figures_3_and_6() {
        let fig3: [(u8, Option<u32>); 20] = [
            (0, Some(0)),
            (1, Some(1)),
            (2, Some(4)),
            (3, Some(4)),
            (4, None),
            (5, None),
            (6, None),
            (7, None),
            (8, Some(7)),
            (9, Some(6)),
            (10, None),
            (11, None),
            (12, Some(8)),
            (13, Some(8)),
            (14, Some(8)),
            (15, Some(8)),
            (16, Some(24)),
            (17, Some(24)),
            (18, Some(24)),
            (19, Some(24)),
        ];
        for (v4, v6) in fig3 {
            assert_eq!(pointer_v4_to_v6(v4), v6, "IPv4 pointer {v4}");
        }
        assert_eq!(pointer_v4_to_v6(20), None, "options have no IPv6 field");
        let fig6: [(u32, Option<u8>); 10] = [
            (0, Some(0)),
            (1, Some(1)),
            (2, None),
            (3, None),
            (4, Some(2)),
            (5, Some(2)),
            (6, Some(9)),
            (7, Some(8)),
            (23, Some(12)),
            (39, Some(16)),
        ];
        for (v6, v4) in fig6 {
            assert_eq!(pointer_v6_to_v4(v6), v4, "IPv6 pointer {v6}");
        }
        assert_eq!(pointer_v6_to_v4(8), Some(12));
        assert_eq!(pointer_v6_to_v4(24), Some(16));
        assert_eq!(pointer_v6_to_v4(40), None);
    }

    #[test]
    fn plateau_is_the_greatest_one_strictly_below_the_total_length() {
        assert_eq!(plateau_below(1500), 1492);
        assert_eq!(plateau_below(1492), 1006);
        assert_eq!(plateau_below(65535), 32000);
        assert_eq!(plateau_below(2003), 2002);
        assert_eq!(plateau_below(60), 68);
    }

    #[test]
    fn packet_too_big_mtu_is_advertised_plus_20_floored_at_1280() {
        let none = NextHopMtus::default();
        assert_eq!(mtu_v4_to_v6(1480, 1500, none), 1500);
        assert_eq!(mtu_v4_to_v6(576, 1500, none), 1280);
        assert_eq!(mtu_v4_to_v6(9000, 9000, none), 9020);
        let capped = NextHopMtus {
            ipv4: 1500,
            ipv6: 1400,
        };
        assert_eq!(mtu_v4_to_v6(9000, 9000, capped), 1400);
        let capped = NextHopMtus {
            ipv4: 1300,
            ipv6: 9000,
        };
        assert_eq!(mtu_v4_to_v6(9000, 9000, capped), 1320);
    }

    #[test]
    fn zero_frag_needed_mtu_uses_the_plateau_below_the_inner_length() {
        let none = NextHopMtus::default();
        // 1500-byte packet: plateau 1492, plus 20.
        assert_eq!(mtu_v4_to_v6(0, 1500, none), 1512);
        // 4000-byte packet: plateau 2002, plus 20.
        assert_eq!(mtu_v4_to_v6(0, 4000, none), 2022);
        // 1400-byte packet: plateau 1006, floored to 1280.
        assert_eq!(mtu_v4_to_v6(0, 1400, none), 1280);
    }

    #[test]
    fn frag_needed_mtu_is_advertised_minus_20_capped_by_next_hops() {
        let none = NextHopMtus::default();
        assert_eq!(mtu_v6_to_v4(1280, none), 1260);
        assert_eq!(mtu_v6_to_v4(1500, none), 1480);
        assert_eq!(mtu_v6_to_v4(100_000, none), 65535);
        assert_eq!(mtu_v6_to_v4(10, none), 68);
        let capped = NextHopMtus {
            ipv4: 1400,
            ipv6: 9000,
        };
        assert_eq!(mtu_v6_to_v4(9000, capped), 1400);
        let capped = NextHopMtus {
            ipv4: 9000,
            ipv6: 1350,
        };
        assert_eq!(mtu_v6_to_v4(9000, capped), 1330);
    }

    #[test]
    fn dont_fragment_is_set_only_above_1260_bytes() {
        assert!(!ipv4_dont_fragment(60));
        assert!(!ipv4_dont_fragment(1260));
        assert!(ipv4_dont_fragment(1261));
        assert!(ipv4_dont_fragment(65535));
    }
}
