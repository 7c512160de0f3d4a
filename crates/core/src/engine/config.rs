//! The engine's configuration: addresses it serves, sizes, timeouts and limits.
//!
//! Every limit an operator may want to tune is here with its default; the daemon maps
//! its config file onto this struct. The timeouts, most limits and the services change
//! on reload ([`Engine::reconfigure`](super::Engine::reconfigure)); the routes and the
//! backends' health come separately.

use core::time::Duration;
use std::net::Ipv4Addr;
use std::sync::Arc;

use crate::addr::Prefix96;
use crate::base::Protocol;
use crate::engine::limits::SharedLimits;

/// One IPv4 service address and its ports.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Service {
    pub address: Ipv4Addr,
    pub tls: Vec<u16>,
    pub http: Vec<u16>,
    /// UDP ports of QUIC, routed by the SNI of the client's Initial (`engine/udp.rs`).
    pub quic: Vec<u16>,
}

/// Everything the engine needs besides the routes.
#[derive(Debug, Clone)]
pub struct EngineConfig {
    /// The /96 that client addresses are embedded in.
    pub prefix: Prefix96,
    /// Service addresses and ports.
    pub services: Vec<Service>,
    /// MTU towards the backends; the MSS Kracauer announces is this minus 60.
    pub ipv6_mtu: u16,
    /// Window scale Kracauer announces to clients that offer scaling (`ws_k`); windows
    /// from backends are rescaled to it.
    pub window_scale: u8,
    /// How long a client has from its SYN to name the host (default 5 s).
    pub peek_timeout: Duration,
    /// Most bytes read while peeking (default 16 KiB, at most
    /// [`MAX_HELLO_BYTES`](crate::peek::tls::MAX_HELLO_BYTES)). Bytes that name no host
    /// within it go to the default backend, or are refused.
    pub peek_cap: usize,
    /// Unnamed connections (handshakes and peeks) one client address may hold as state
    /// at once, all workers together (default 64). Past it the address's connections are
    /// carried without state until their bytes name a host: a SYN cookie, and a flow
    /// made only for a segment that names the host at once (docs/robustness.md, "Many
    /// users behind one address").
    pub max_peeking_per_client: u32,
    /// Most bytes held in all peek buffers together, all workers together (default
    /// 64 MiB).
    pub max_peek_bytes: usize,
    /// How long a peek waits, with bytes it has not acknowledged and nothing new
    /// arriving, before Kracauer acknowledges them itself and takes custody of them
    /// (default 100 ms; zero: never). A client whose Nagle holds the rest of its hello
    /// until its first segment is acknowledged goes on then.
    pub custody_delay: Duration,
    /// How long the backend has to answer the SYN (default 5 s).
    pub connect_timeout: Duration,
    /// First retransmission of the SYN to the backend; doubles each time (default 1 s).
    pub syn_retransmit: Duration,
    /// How long one backend of a pool has to answer before the same SYN goes to the next
    /// one (default 1 s). The last backend tried has until `connect_timeout`.
    pub connect_attempt: Duration,
    /// Established flows idle this long are forgotten (default 7440 s, RFC 5382).
    pub idle_timeout: Duration,
    /// How long a closed flow stays to translate stragglers (default 30 s).
    pub linger: Duration,
    /// Most flows of any state (default 1,000,000).
    pub max_flows: usize,
    /// Most QUIC (UDP) flows, in a table of their own (default 65,536). The table is
    /// reserved at the start, as the TCP one is.
    pub max_udp_flows: usize,
    /// A QUIC flow whose backend has not answered yet is forgotten after this long
    /// without a datagram (default 30 s).
    pub udp_unanswered_timeout: Duration,
    /// A QUIC flow the backend has answered is forgotten after this long without a
    /// datagram either way (default 180 s; RFC 4787 REQ-5 asks for at least 2 minutes).
    pub udp_idle_timeout: Duration,
    /// Most half-open flows (SYN answered, no ACK yet); past it, SYN cookies (default
    /// 16,384).
    pub max_half_open: usize,
    /// Seed for every secret (ISN and cookie keys, hash keys); the daemon draws it from
    /// the OS, tests fix it.
    pub seed: [u8; 32],
    /// Second chance between scale-out instances (`secondchance.rs`): a non-SYN client
    /// segment for a flow this engine does not hold is not answered with RST but given
    /// back as [`Verdict::SecondChance`](super::Verdict::SecondChance), for the daemon to
    /// pass to the peer instances (default off).
    pub second_chance: bool,
    /// The counts this engine's limits are checked against, shared with the daemon's
    /// other workers; `None`: its own (one engine alone). A reload keeps the engine's.
    pub shared_limits: Option<Arc<SharedLimits>>,
    /// The root of the SYN cookies' keys (`tcp::isn`), when it is shared: every worker
    /// of the daemon and its kernel SYN cookie program sign and check cookies with it,
    /// so any of them accepts a cookie any other made. `None`: drawn from the seed (one
    /// engine alone). A reload keeps the engine's.
    pub cookie_root: Option<[u64; 2]>,
}

impl EngineConfig {
    /// A configuration with every default, for `prefix` and `services`.
    pub fn new(prefix: Prefix96, services: Vec<Service>, seed: [u8; 32]) -> Self {
        Self {
            prefix,
            services,
            ipv6_mtu: 1500,
            window_scale: 7,
            peek_timeout: Duration::from_secs(5),
            peek_cap: 16 * 1024,
            max_peeking_per_client: 64,
            max_peek_bytes: 64 * 1024 * 1024,
            custody_delay: Duration::from_millis(100),
            connect_timeout: Duration::from_secs(5),
            syn_retransmit: Duration::from_secs(1),
            connect_attempt: Duration::from_secs(1),
            idle_timeout: Duration::from_secs(7440),
            linger: Duration::from_secs(30),
            max_flows: 1_000_000,
            max_udp_flows: 65_536,
            udp_unanswered_timeout: Duration::from_secs(30),
            udp_idle_timeout: Duration::from_secs(180),
            max_half_open: 16_384,
            seed,
            second_chance: false,
            shared_limits: None,
            cookie_root: None,
        }
    }

    /// The protocol a service address and port speaks, if it is a service.
    pub fn protocol(&self, address: Ipv4Addr, port: u16) -> Option<Protocol> {
        let s = self.services.iter().find(|s| s.address == address)?;
        if s.tls.contains(&port) {
            Some(Protocol::Tls)
        } else if s.http.contains(&port) {
            Some(Protocol::Http)
        } else {
            None
        }
    }

    /// Whether `address` and UDP `port` are a QUIC service.
    pub fn is_quic(&self, address: Ipv4Addr, port: u16) -> bool {
        self.services
            .iter()
            .any(|s| s.address == address && s.quic.contains(&port))
    }

    /// Whether `address` is a service address (any port).
    pub fn is_service_address(&self, address: Ipv4Addr) -> bool {
        self.services.iter().any(|s| s.address == address)
    }

    /// The MSS Kracauer announces and clamps to: what fits the IPv6 MTU.
    pub fn mss(&self) -> u16 {
        self.ipv6_mtu.saturating_sub(60).max(536)
    }

    /// Checks values that would make the engine misbehave.
    pub fn validate(&self) -> Result<(), ConfigError> {
        if self.ipv6_mtu < 1280 {
            return Err(ConfigError::MtuTooSmall(self.ipv6_mtu));
        }
        if self.window_scale > 14 {
            return Err(ConfigError::WindowScale(self.window_scale));
        }
        if self.max_flows == 0 || self.max_flows > u32::MAX as usize {
            return Err(ConfigError::MaxFlows(self.max_flows));
        }
        if self.max_udp_flows == 0 || self.max_udp_flows > u32::MAX as usize {
            return Err(ConfigError::MaxUdpFlows(self.max_udp_flows));
        }
        if self.peek_cap == 0 || self.peek_cap > crate::peek::tls::MAX_HELLO_BYTES {
            return Err(ConfigError::PeekCap);
        }
        Ok(())
    }
}

/// A configuration value the engine cannot work with.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ConfigError {
    #[error("IPv6 MTU {0} is below 1280, the minimum IPv6 allows")]
    MtuTooSmall(u16),
    #[error("window scale {0} is above 14, the maximum TCP allows (RFC 7323)")]
    WindowScale(u8),
    #[error("max_flows {0} must be between 1 and 4294967295")]
    MaxFlows(usize),
    #[error("max_udp_flows {0} must be between 1 and 4294967295")]
    MaxUdpFlows(usize),
    #[error("peek_cap must be from 1 byte to 16,793,600 (a largest ClientHello over records)")]
    PeekCap,
}
