//! A flow's state: each state carries its own data, so an impossible combination (a
//! sequence offset before the backend answered, a peek buffer after the splice) cannot
//! be written down.

use core::time::Duration;

use crate::base::{Outcome, Protocol};
use crate::name::HostName;
use crate::tcp::reasm::PeekBuffer;
use crate::time::Time;
use crate::wire::SeqNumber;

/// What the client's SYN offered, as far as Kracauer agreed to it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ClientOptions {
    /// The client's MSS (536 when it sent none).
    pub mss: u16,
    /// The client's window scale (`ws_c`), when both sides use scaling.
    pub wscale: Option<u8>,
    /// SACK permitted both ways.
    pub sack: bool,
    /// Timestamps in use.
    pub timestamps: bool,
}

/// One client connection, from its SYN to its end.
#[derive(Debug)]
pub struct Flow {
    pub state: FlowState,
    pub protocol: Protocol,
    pub created: Time,
    /// Last packet from either side.
    pub last_seen: Time,
    /// When this flow's earliest timer entry fires ([`Time::NEVER`] when none).
    pub armed: Time,
    /// The client's ISN.
    pub c_isn: SeqNumber,
    /// Kracauer's ISN, as sent in its SYN-ACK.
    pub k_isn: SeqNumber,
    pub client: ClientOptions,
    /// Latest TSval seen from the client.
    pub client_tsval: u32,
    /// TSval Kracauer sent in its SYN-ACK (the client's view of "the server's" clock
    /// starts there).
    pub k_tsval: u32,
    /// Latest window field from the client (in its own scale).
    pub client_window: u16,
}

/// Where a flow is in its life.
#[derive(Debug)]
pub enum FlowState {
    /// SYN answered, waiting for the client's ACK.
    SynReceived,
    /// Collecting the client's first bytes until a peeker names the host.
    Peeking(Box<Peeking>),
    /// Backend SYN sent, waiting for its SYN-ACK.
    Connecting(Box<Connecting>),
    /// Every packet is translated.
    Spliced(Splice),
    /// The name was refused: the answer (alert or 421) and FIN were sent; ACKing the
    /// client's close until the linger ends.
    Refused(Refused),
    /// Both FINs, or a RST, were seen; stragglers are still translated until `until`.
    Closing(Closing),
}

/// Peeking: the buffer.
#[derive(Debug, Default)]
pub struct Peeking {
    pub buf: PeekBuffer,
}

/// Connecting: the peeked bytes to send once the backend answers, and the SYN timer.
#[derive(Debug)]
pub struct Connecting {
    pub buf: PeekBuffer,
    pub name: Option<HostName>,
    /// When the name was found (the peek time is `named_at - created`).
    pub named_at: Time,
    /// When the SYN is sent next.
    pub retransmit_at: Time,
    /// The current retransmission interval (doubles).
    pub rto: Duration,
}

/// How packets of a spliced flow are rewritten.
#[derive(Debug, Clone)]
pub struct Splice {
    /// `δ = b_isn − k_isn`: backend sequence numbers minus δ are the client's view.
    pub delta: u32,
    /// Backend TSval minus this is the client's view of "the server's" clock.
    pub ts_offset: u32,
    /// Shift of the backend's window field (`ws_b` when both sides scale, else 0).
    pub backend_ws: u8,
    /// Shift of the window field the client expects (`ws_k` when both sides scale, else
    /// 0).
    pub client_ws: u8,
    /// The backend declined window scaling that the client uses: client windows are
    /// expanded by this shift and clamped.
    pub expand_client_window: Option<u8>,
    /// The client's FIN was seen.
    pub client_fin: bool,
    /// The backend's FIN was seen.
    pub backend_fin: bool,
    /// TCP payload bytes forwarded: [to backend, to client].
    pub bytes: [u64; 2],
    pub name: Option<HostName>,
}

/// A refused flow.
#[derive(Debug)]
pub struct Refused {
    /// The client sequence number Kracauer acknowledges (after the peeked bytes).
    pub ack: SeqNumber,
    /// When the flow is forgotten.
    pub until: Time,
    /// The TLS alert record sent (unused for HTTP).
    pub alert: [u8; 7],
}

/// A closing flow: still translated, briefly.
#[derive(Debug)]
pub struct Closing {
    /// Boxed so that the closing state does not make every flow larger.
    pub splice: Box<Splice>,
    pub until: Time,
    pub outcome: Outcome,
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Memory per flow is the product's claim (under 256 bytes per spliced flow, all
    /// included; `examples/flow_memory.rs` measures the whole): the state itself must not
    /// creep up unnoticed. Peeking and connecting data is boxed; the closing state boxes
    /// its splice.
    #[test]
    fn flow_state_stays_small() {
        assert!(
            size_of::<FlowState>() <= 48,
            "FlowState is {} bytes",
            size_of::<FlowState>()
        );
        assert!(
            size_of::<Flow>() <= 104,
            "Flow is {} bytes",
            size_of::<Flow>()
        );
    }
}
