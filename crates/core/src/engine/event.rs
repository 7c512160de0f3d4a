//! Events for the access log and for backend health: one when a flow is spliced to its
//! backend, one when a flow ends, and one for every failed attempt to connect to a
//! backend (which the daemon's passive health counts). They are queued per flow (not per
//! packet) and drained by the daemon.

use core::time::Duration;
use std::net::{SocketAddrV4, SocketAddrV6};

use crate::base::{Outcome, Protocol};
use crate::flow::PeekEnd;
use crate::name::HostName;

/// Why an attempt to connect to a backend failed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ConnectFailure {
    /// It answered the SYN with RST.
    Refused,
    /// An ICMPv6 error came back for the SYN (unreachable, time exceeded, ...).
    Unreachable,
    /// It stayed silent past the attempt (or the connect deadline).
    Timeout,
}

impl ConnectFailure {
    /// Snake-case name for logs.
    pub const fn name(self) -> &'static str {
        match self {
            ConnectFailure::Refused => "refused",
            ConnectFailure::Unreachable => "unreachable",
            ConnectFailure::Timeout => "timeout",
        }
    }
}

/// Something an operator wants in the access log, or the daemon's health checks.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Event {
    /// A flow reached its backend.
    Opened {
        /// TLS or HTTP over TCP, or QUIC over UDP.
        protocol: Protocol,
        client: SocketAddrV4,
        service: SocketAddrV4,
        name: Option<HostName>,
        backend: SocketAddrV6,
        /// From the client's SYN to the name.
        peek_time: Duration,
        /// From the name (when the SYN went to the backend) to the backend's SYN-ACK,
        /// retransmissions included.
        connect_time: Duration,
    },
    /// A flow ended.
    Closed {
        protocol: Protocol,
        client: SocketAddrV4,
        service: SocketAddrV4,
        name: Option<HostName>,
        /// `None` when it ended before a backend was chosen.
        backend: Option<SocketAddrV6>,
        bytes_to_backend: u64,
        bytes_to_client: u64,
        duration: Duration,
        outcome: Outcome,
        /// Which way the peek ended (`None`: it did not).
        peek: Option<PeekEnd>,
    },
    /// A connection attempt to a backend failed; the flow went on to the next backend of
    /// its pool, or ended.
    BackendFailed {
        /// The route's label ([`Route::label`](crate::route::Route::label)).
        route: Box<str>,
        backend: SocketAddrV6,
        cause: ConnectFailure,
    },
}
