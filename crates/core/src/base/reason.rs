//! Named reasons: why a packet was dropped ([`DropReason`], with the [`Side`] whose packet
//! it was) and how a flow ended ([`Outcome`]). Counted by the engine's stats, named in
//! metrics and logs; decided wherever the decision is made.

/// Whose packet was dropped.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Side {
    /// An IPv4 packet from a client (or claiming to be).
    Client,
    /// An IPv6 packet from a backend (or towards the prefix).
    Backend,
    /// Kracauer's own limits or failures.
    Internal,
}

impl Side {
    /// Lower-case name for metrics labels.
    pub const fn name(self) -> &'static str {
        match self {
            Side::Client => "client",
            Side::Backend => "backend",
            Side::Internal => "internal",
        }
    }
}

macro_rules! drop_reasons {
    ($($variant:ident = $name:literal, $side:ident, $doc:literal;)*) => {
        /// Why a packet was dropped.
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
        pub enum DropReason {
            $(#[doc = $doc] $variant,)*
        }

        impl DropReason {
            /// Every reason, in declaration order.
            pub const ALL: &'static [DropReason] = &[$(DropReason::$variant,)*];

            /// Snake-case name for metrics labels and logs.
            pub const fn name(self) -> &'static str {
                match self { $(DropReason::$variant => $name,)* }
            }

            /// Whose packet it was.
            pub const fn side(self) -> Side {
                match self { $(DropReason::$variant => Side::$side,)* }
            }

            /// What it means, for operators.
            pub const fn description(self) -> &'static str {
                match self { $(DropReason::$variant => $doc,)* }
            }
        }
    };
}

drop_reasons! {
    ClientMalformed = "client_malformed", Client, "IPv4 or TCP header that does not parse (lengths, options running past the header).";
    ClientBadChecksum = "client_bad_checksum", Client, "TCP checksum wrong on a segment Kracauer itself had to read (SYN, peeked data).";
    ClientNotService = "client_not_service", Client, "IPv4 packet to an address or port that is not a configured service.";
    ClientFragment = "client_fragment", Client, "IPv4 fragment to a service: dropped by design, never reassembled (docs/robustness.md).";
    ClientBadFlags = "client_bad_flags", Client, "Impossible flag combination (SYN with FIN or RST, no ACK on a non-SYN).";
    ClientNoFlow = "client_no_flow", Client, "Non-SYN segment for no known flow and no valid cookie (answered with RST).";
    ClientNoFlowSettling = "client_no_flow_settling", Client, "Non-SYN segment for no known flow in the seconds after a live upgrade: dropped without a RST (the steering may have changed for a moment, or the upgrade divided the flows among another number of workers), the client sends it again.";
    ClientOutOfWindow = "client_out_of_window", Client, "Segment outside what Kracauer can accept in this state.";
    ClientPeekHoles = "client_peek_holes", Client, "Peek segment that would leave too many holes in the peek buffer.";
    ClientPeekLimit = "client_peek_limit", Client, "Bytes from an address holding its allowance of unnamed connections that did not name a host at once (the client sends them again), or, under pressure, a SYN a cookie would cost its options.";
    ClientSecondChanceNoFlow = "client_second_chance_no_flow", Client, "Segment a peer instance passed on as a second chance (docs/scale-out.md) for no flow held here either: not answered, another peer may hold it.";
    ClientIcmp = "client_icmp", Client, "ICMPv4 with a bad checksum, not an error about a known flow, or that cannot be translated.";
    ClientQuicNoFlow = "client_quic_no_flow", Client, "UDP datagram to a QUIC port for no flow that starts none: no long header (a short header whose connection ID no backend chose, garbage), or a Handshake or 0-RTT packet.";
    ClientQuicDiscarded = "client_quic_discarded", Client, "QUIC Initial for no flow that a server discards too (in a datagram under 1200 bytes, not authenticating, a version Kracauer cannot read in a short datagram).";
    ClientTooBig = "client_too_big", Client, "IPv4 datagram too large for the IPv6 MTU once translated (answered with ICMP fragmentation needed when DF is set).";
    ClientTooBigRepeated = "client_too_big_repeated", Client, "ICMP fragmentation needed for a flow whose backend was sent Packet Too Big with the same MTU less than 100 ms before: it already lowered its MSS and sent again what was in flight.";
    BackendMalformed = "backend_malformed", Backend, "IPv6 or TCP header that does not parse.";
    BackendNotPrefix = "backend_not_prefix", Backend, "IPv6 packet whose destination is not in the translation prefix.";
    BackendNoFlow = "backend_no_flow", Backend, "Segment for no known flow (answered with RST).";
    BackendNoFlowSettling = "backend_no_flow_settling", Backend, "Segment for no known flow in the seconds after a live upgrade (the steering may have changed for a moment, or the flows were divided among another number of workers): dropped without a RST, the backend sends it again.";
    BackendBadSynAck = "backend_bad_synack", Backend, "SYN-ACK whose ACK number does not match the SYN Kracauer sent.";
    BackendUnexpected = "backend_unexpected", Backend, "Segment the flow's state cannot use (data before the handshake ended).";
    BackendIcmp = "backend_icmp", Backend, "ICMPv6 that is not an error about a known flow, or that cannot be translated.";
    BackendTooBigRepeated = "backend_too_big_repeated", Backend, "ICMPv6 Packet Too Big for a flow whose client was sent fragmentation needed with the same MTU less than 100 ms before: it already lowered its MSS and sent again what was in flight.";
    BackendNotTcp = "backend_not_tcp", Backend, "IPv6 packet to the prefix that is neither TCP, UDP nor ICMPv6.";
    BackendUdpNoFlow = "backend_udp_no_flow", Backend, "UDP datagram from a backend for no QUIC flow (dropped silently).";
    FlowTableFull = "flow_table_full", Internal, "No room for a new flow (max_flows).";
    PeekMemory = "peek_memory", Internal, "The global cap on peek-buffer bytes is reached.";
    TupleCollision = "tuple_collision", Internal, "A second client connection would map onto an IPv6 4-tuple in use.";
    OutputFull = "output_full", Internal, "No room left in the output buffer for a packet Kracauer makes.";
    TranslationFailed = "translation_failed", Internal, "Header translation refused the packet (e.g. TTL exhausted).";
}

/// How a flow ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Outcome {
    /// Both ends closed with FIN.
    Closed,
    /// The client reset it.
    ClientReset,
    /// The backend reset it.
    BackendReset,
    /// Idle for longer than the idle timeout.
    IdleTimeout,
    /// No name within the peek deadline.
    PeekTimeout,
    /// The backend did not answer the SYN within the connect timeout.
    ConnectTimeout,
    /// The backend refused (RST or ICMPv6 error to the SYN).
    BackendRefused,
    /// The name matched no route and there is no default: alert / 421 sent.
    UnknownName,
    /// The first bytes could not be read to a name (malformed, cut short, too large, or
    /// naming two hosts) and there is no default: `decode_error` / 400 / 431 sent.
    Unparsable,
    /// The first bytes were not the port's protocol and there is no default: RST sent.
    NotRecognised,
    /// Refused by a limit (per-client peeks, peek memory, 4-tuple collision).
    Limited,
    /// Still open when the daemon stopped (SIGTERM): logged, then forgotten.
    Shutdown,
    /// Its service address or port was removed by a reload: forgotten, the client reset
    /// if the flow was still being set up (each side of a spliced flow is reset at its
    /// next segment, as after a restart).
    ServiceRemoved,
}

impl Outcome {
    /// Every outcome.
    pub const ALL: &'static [Outcome] = &[
        Outcome::Closed,
        Outcome::ClientReset,
        Outcome::BackendReset,
        Outcome::IdleTimeout,
        Outcome::PeekTimeout,
        Outcome::ConnectTimeout,
        Outcome::BackendRefused,
        Outcome::UnknownName,
        Outcome::Unparsable,
        Outcome::NotRecognised,
        Outcome::Limited,
        Outcome::Shutdown,
        Outcome::ServiceRemoved,
    ];

    /// Snake-case name for metrics labels and logs.
    pub const fn name(self) -> &'static str {
        match self {
            Outcome::Closed => "closed",
            Outcome::ClientReset => "client_reset",
            Outcome::BackendReset => "backend_reset",
            Outcome::IdleTimeout => "idle_timeout",
            Outcome::PeekTimeout => "peek_timeout",
            Outcome::ConnectTimeout => "connect_timeout",
            Outcome::BackendRefused => "backend_refused",
            Outcome::UnknownName => "unknown_name",
            Outcome::Unparsable => "unparsable",
            Outcome::NotRecognised => "not_recognised",
            Outcome::Limited => "limited",
            Outcome::Shutdown => "shutdown",
            Outcome::ServiceRemoved => "service_removed",
        }
    }
}

/// Which way a flow's first bytes took once the peek was over (issue 19: metrics and logs
/// say it).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum PeekPath {
    /// A route matched the name.
    Named,
    /// No name, or a name no route matches: sent to the default backend.
    DefaultUnnamed,
    /// Bytes that could not be read to a name (malformed, cut short, too large, not the
    /// protocol): sent to the default backend as they are.
    DefaultUnparsable,
    /// Answered by Kracauer: TLS alert, or HTTP 421 / 400 / 431.
    Refused,
    /// Not the port's protocol, and no default backend: reset.
    Reset,
}

impl PeekPath {
    /// Every path, in declaration order.
    pub const ALL: &'static [PeekPath] = &[
        PeekPath::Named,
        PeekPath::DefaultUnnamed,
        PeekPath::DefaultUnparsable,
        PeekPath::Refused,
        PeekPath::Reset,
    ];

    /// Snake-case name for metrics labels and logs.
    pub const fn name(self) -> &'static str {
        match self {
            PeekPath::Named => "named",
            PeekPath::DefaultUnnamed => "default_unnamed",
            PeekPath::DefaultUnparsable => "default_unparsable",
            PeekPath::Refused => "refused",
            PeekPath::Reset => "reset",
        }
    }
}
