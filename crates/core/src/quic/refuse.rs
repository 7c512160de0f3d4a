//! The refusal of a QUIC client whose name has no route: the Initial a server sends
//! when its TLS stack refuses the hello with `unrecognized_name`, the QUIC twin of the
//! TLS alert (docs/architecture.md, The splice, step 3).
//!
//! It is one Initial packet (RFC 9000 §17.2.2) protected with the server's Initial keys
//! for the client's first Destination Connection ID, addressed to the client's Source
//! Connection ID, carrying CONNECTION_CLOSE of type 0x1c (RFC 9000 §19.19) with the
//! crypto error for the alert: 0x0100 + 112 = 0x0170 (RFC 9001 §4.8). The frame type
//! that triggered it is CRYPTO (the hello). No token (RFC 9000 §17.2.2: servers send
//! none), packet number 0, and no padding: CONNECTION_CLOSE is not ack-eliciting, so the
//! 1200-byte rule does not apply (RFC 9000 §14.1), and the packet is far below the
//! 3× anti-amplification limit.

use super::Version;
use super::frame::ty;
use super::header::LongType;
use super::keys::{Keys, Side};
use super::protect::{LongPacket, SealError, seal_long};

/// The crypto error code for TLS alert `unrecognized_name` (112): 0x0100 + 112.
pub const CRYPTO_ERROR_UNRECOGNIZED_NAME: u64 = 0x0100 + 112;
/// The crypto error code for TLS alert `decode_error` (50): 0x0100 + 50.
pub const CRYPTO_ERROR_DECODE_ERROR: u64 = 0x0100 + 50;

/// Bytes a refusal takes at most: header with two 20-byte CIDs, the frame, the tag.
pub const MAX_REFUSAL_LEN: usize = 128;

/// Writes the server's Initial closing the connection with `unrecognized_name` into
/// `out` and returns its length.
///
/// `client_dcid` is the Destination Connection ID of the client's first Initial (the
/// keys derive from it); `client_scid` its Source Connection ID (the packet's
/// destination). `server_scid` is the connection ID the server claims as its own: any
/// value up to 20 bytes works (the client takes whatever the server's first packet
/// says); the client's DCID is a fine choice and needs no randomness.
pub fn unrecognized_name(
    version: Version,
    client_dcid: &[u8],
    client_scid: &[u8],
    server_scid: &[u8],
    out: &mut [u8],
) -> Result<usize, SealError> {
    connection_close(
        version,
        client_dcid,
        client_scid,
        server_scid,
        CRYPTO_ERROR_UNRECOGNIZED_NAME,
        out,
    )
}

/// Like [`unrecognized_name`], with any transport error code (e.g.
/// [`CRYPTO_ERROR_DECODE_ERROR`] for a hello that cannot be read).
pub fn connection_close(
    version: Version,
    client_dcid: &[u8],
    client_scid: &[u8],
    server_scid: &[u8],
    error_code: u64,
    out: &mut [u8],
) -> Result<usize, SealError> {
    // CONNECTION_CLOSE: type, error code, triggering frame type, empty reason.
    let mut frame = [0u8; 1 + 8 + 1 + 1];
    frame[0] = ty::CONNECTION_CLOSE as u8;
    let n = super::varint::write(error_code, &mut frame[1..]).ok_or(SealError::BufferTooSmall)?;
    frame[1 + n] = ty::CRYPTO as u8;
    frame[2 + n] = 0;
    let payload = &frame[..3 + n];

    let keys = Keys::initial(version, client_dcid, Side::Server);
    let packet = LongPacket {
        version,
        packet_type: LongType::Initial,
        dcid: client_scid,
        scid: server_scid,
        token: &[],
        packet_number: 0,
        pn_len: 1,
    };
    seal_long(&keys, &packet, payload, out)
}
