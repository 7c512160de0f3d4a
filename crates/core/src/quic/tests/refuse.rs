//! The `unrecognized_name` refusal, read back the way a client reads it.

use super::util::{Client, client_hello, crypto, hex};
use super::vectors::*;
use crate::quic::frame::{Frame, frames};
use crate::quic::header::{LongHeader, PacketKind, packets};
use crate::quic::keys::{Keys, Side};
use crate::quic::protect::{SealError, open};
use crate::quic::refuse::{CRYPTO_ERROR_UNRECOGNIZED_NAME, MAX_REFUSAL_LEN, unrecognized_name};
use crate::quic::{InitialPeek, QuicPeek, QuicPeekConfig, Version};

/// Opens a refusal as the client does: the server's Initial keys for the client's own
/// first DCID. Returns the frames.
fn client_reads(
    version: Version,
    client_dcid: &[u8],
    datagram: &[u8],
) -> (Vec<u8>, Vec<u8>, Vec<Frame<'static>>) {
    let header = LongHeader::new_checked(datagram).expect("header");
    assert_eq!(header.kind(), PacketKind::Initial(version));
    assert_eq!(header.token(), b"");
    assert_eq!(
        header.packet().len(),
        datagram.len(),
        "one packet, nothing after it"
    );
    let keys = Keys::initial(version, client_dcid, Side::Server);
    let mut buf = vec![0; datagram.len()];
    let opened = open(&keys, &header, None, &mut buf).expect("the client opens it");
    assert_eq!(opened.first_byte & 0x0c, 0, "reserved bits clear");
    assert_eq!(opened.packet_number, 0);
    let payload: &'static [u8] = Box::leak(opened.payload.to_vec().into_boxed_slice());
    let frames = frames(payload)
        .collect::<Result<Vec<_>, _>>()
        .expect("frames");
    (header.dcid().to_vec(), header.scid().to_vec(), frames)
}

#[test]
fn the_refusal_opens_with_the_server_initial_keys_as_connection_close_0x170() {
    for version in [Version::V1, Version::V2] {
        let (dcid, scid) = (hex(DCID), [0x5c, 0x1d, 0x5c]);
        let mut out = [0u8; MAX_REFUSAL_LEN];
        let n = unrecognized_name(version, &dcid, &scid, &dcid, &mut out).expect("fits");
        let (to, from, frames) = client_reads(version, &dcid, &out[..n]);
        assert_eq!(to, scid, "addressed to the client's SCID");
        assert_eq!(from, dcid);
        assert_eq!(
            frames,
            [Frame::ConnectionClose {
                error_code: 0x0170,
                application: false,
                reason: b""
            }]
        );
        assert_eq!(CRYPTO_ERROR_UNRECOGNIZED_NAME, 0x0170);
        // The client's own keys do not open it: it is the server's.
        let header = LongHeader::new_checked(&out[..n]).expect("header");
        let client_keys = Keys::initial(version, &dcid, Side::Client);
        assert!(open(&client_keys, &header, None, &mut [0u8; MAX_REFUSAL_LEN]).is_err());
    }
}

#[test]
fn a_refusal_for_a_peeked_flow_uses_the_flow_connection_ids() {
    let c = Client::new(Version::V2);
    let mut peek = InitialPeek::new(QuicPeekConfig::default());
    let answer = peek.push(&c.initial(0, &crypto(0, &client_hello("unknown.example", 50)), 1200));
    assert!(matches!(answer, QuicPeek::Found(_)));
    let (version, dcid, scid) = peek.client().expect("client");
    let mut out = [0u8; MAX_REFUSAL_LEN];
    let n = unrecognized_name(
        version,
        dcid.as_bytes(),
        scid.as_bytes(),
        dcid.as_bytes(),
        &mut out,
    )
    .expect("fits");
    let (to, _, frames) = client_reads(Version::V2, &c.dcid, &out[..n]);
    assert_eq!(to, c.scid);
    assert!(matches!(
        frames[..],
        [Frame::ConnectionClose {
            error_code: 0x170,
            ..
        }]
    ));
    // A client's peek does not take it for a client Initial (too small, wrong keys).
    assert_eq!(packets(&out[..n]).count(), 1);
}

#[test]
fn the_refusal_fits_its_bound_and_a_short_buffer_is_an_error() {
    let long = [7u8; 20];
    let mut out = [0u8; MAX_REFUSAL_LEN];
    let n = unrecognized_name(Version::V1, &long, &long, &long, &mut out).expect("fits");
    assert!(n <= MAX_REFUSAL_LEN);
    for short in 0..n {
        let got = unrecognized_name(Version::V1, &long, &long, &long, &mut out[..short]);
        assert_eq!(got, Err(SealError::BufferTooSmall), "{short}");
    }
    assert_eq!(
        unrecognized_name(Version::V1, &long, &[0; 21], &long, &mut out),
        Err(SealError::CidTooLong)
    );
}
