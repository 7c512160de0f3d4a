//! QUIC Initial packets, sans-IO: reading the ClientHello a client sends in its Initials,
//! and the refusal a server sends back (docs/architecture.md, "QUIC (foundation)").
//!
//! | module | owns |
//! |---|---|
//! | [`varint`] | variable-length integers (RFC 9000 §16) |
//! | [`header`] | the checked long-header view, packet kinds (Version Negotiation, Retry and unknown versions classified), coalesced packets, connection IDs |
//! | [`keys`] | Initial secrets and keys from the client's first DCID (HKDF-SHA256), the header protection mask (AES-128) |
//! | [`protect`] | header protection removal and AEAD opening (AES-128-GCM); sealing a long-header packet |
//! | [`frame`] | the frames an Initial may carry (PADDING, PING, ACK, CRYPTO, CONNECTION_CLOSE) |
//! | [`stream`] | the CRYPTO stream reassembled by offset, bounded |
//! | [`peek`] | [`InitialPeek`]: datagrams of one pending flow in, the hello's name out |
//! | [`refuse`] | the server's Initial with CONNECTION_CLOSE `unrecognized_name` |
//!
//! QUIC v1 (RFC 9000, RFC 9001) and v2 (RFC 9369) are read. Every byte is untrusted:
//! nothing here panics on any input, and every refusal is a named error. The hello
//! itself is read by the TLS peeker ([`crate::peek::tls::peek_handshake`]), so QUIC and
//! TCP clients are named by the same rules.

pub mod frame;
pub mod header;
pub mod keys;
pub mod peek;
pub mod protect;
pub mod refuse;
pub mod stream;
pub mod varint;

pub use header::{ConnectionId, PacketKind};
pub use peek::{Discard, Found, InitialPeek, QuicError, QuicPeek, QuicPeekConfig};

/// The QUIC versions whose Initials can be read.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Version {
    /// QUIC version 1, 0x00000001 (RFC 9000).
    V1,
    /// QUIC version 2, 0x6b3343cf (RFC 9369).
    V2,
}

impl Version {
    /// The version of a long header's version field, if known.
    pub const fn from_wire(version: u32) -> Option<Self> {
        match version {
            0x0000_0001 => Some(Self::V1),
            0x6b33_43cf => Some(Self::V2),
            _ => None,
        }
    }

    /// The version field's value.
    pub const fn wire(self) -> u32 {
        match self {
            Self::V1 => 0x0000_0001,
            Self::V2 => 0x6b33_43cf,
        }
    }
}

#[cfg(test)]
pub(crate) mod tests;
