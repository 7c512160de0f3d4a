//! Events for the access log: one when a flow is spliced to its backend, one when a flow
//! ends. They are queued per flow (not per packet) and drained by the daemon.

use core::time::Duration;
use std::net::{SocketAddrV4, SocketAddrV6};

use crate::base::Outcome;
use crate::name::HostName;

/// Something an operator wants in the access log.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Event {
    /// A flow reached its backend.
    Opened {
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
        client: SocketAddrV4,
        service: SocketAddrV4,
        name: Option<HostName>,
        /// `None` when it ended before a backend was chosen.
        backend: Option<SocketAddrV6>,
        bytes_to_backend: u64,
        bytes_to_client: u64,
        duration: Duration,
        outcome: Outcome,
    },
}
