//! The long-header view and the walk over coalesced packets, on good and bad bytes.

use super::util::{Client, crypto, hex};
use super::vectors::*;
use crate::quic::Version;
use crate::quic::header::{HeaderError, HeaderField, LongHeader, Packet, PacketKind, packets};

/// A Version Negotiation packet: DCID 4 bytes, SCID 2 bytes, versions 1 and v2.
fn version_negotiation() -> Vec<u8> {
    let mut p = vec![0x80 | 0x2a, 0, 0, 0, 0, 4, 1, 2, 3, 4, 2, 5, 6];
    p.extend_from_slice(&1u32.to_be_bytes());
    p.extend_from_slice(&Version::V2.wire().to_be_bytes());
    p
}

/// A v1 Retry: DCID 2 bytes, SCID 3 bytes, a 5-byte token, a 16-byte tag.
fn retry() -> Vec<u8> {
    let mut p = vec![0xf0, 0, 0, 0, 1, 2, 0xaa, 0xbb, 3, 1, 2, 3];
    p.extend_from_slice(b"token");
    p.extend_from_slice(&[0x77; 16]);
    p
}

#[test]
fn version_negotiation_is_recognised_with_its_versions() {
    let p = version_negotiation();
    let h = LongHeader::new_checked(&p).expect("header");
    assert_eq!(h.kind(), PacketKind::VersionNegotiation);
    assert_eq!(h.dcid(), [1, 2, 3, 4]);
    assert_eq!(h.scid(), [5, 6]);
    assert_eq!(h.supported_versions().collect::<Vec<_>>(), [1, 0x6b33_43cf]);
    assert_eq!(h.packet().len(), p.len());
}

#[test]
fn retry_is_recognised_with_its_token_and_tag() {
    let p = retry();
    let h = LongHeader::new_checked(&p).expect("header");
    assert_eq!(h.kind(), PacketKind::Retry(Version::V1));
    assert_eq!(h.token(), b"token");
    assert_eq!(h.retry_integrity_tag(), [0x77; 16]);
    assert_eq!(h.supported_versions().count(), 0);
    // The same type bits mean Retry in v1 only; v2's Retry is type 0.
    let mut v2 = p.clone();
    v2[0] = 0xc0;
    v2[1..5].copy_from_slice(&Version::V2.wire().to_be_bytes());
    assert_eq!(
        LongHeader::new_checked(&v2).expect("v2").kind(),
        PacketKind::Retry(Version::V2)
    );
}

#[test]
fn an_unknown_version_keeps_only_the_invariants() {
    // Draft-29 with a 30-byte DCID: longer than v1 allows, fine for an unknown version.
    let mut p = vec![0xc0, 0xff, 0, 0, 29, 30];
    p.extend_from_slice(&[9; 30]);
    p.extend_from_slice(&[0, 1, 2, 3]);
    let h = LongHeader::new_checked(&p).expect("header");
    assert_eq!(h.kind(), PacketKind::UnknownVersion(0xff00_001d));
    assert_eq!(h.dcid().len(), 30);
    assert_eq!(h.pn_offset(), None);
    // In v1 the same DCID is refused.
    p[1..5].copy_from_slice(&1u32.to_be_bytes());
    assert_eq!(
        LongHeader::new_checked(&p),
        Err(HeaderError::CidTooLong(30))
    );
}

#[test]
fn a_short_header_or_nothing_is_no_long_header() {
    assert_eq!(LongHeader::new_checked(&[]), Err(HeaderError::Empty));
    assert_eq!(
        LongHeader::new_checked(&[0x40, 1, 2]),
        Err(HeaderError::ShortHeader)
    );
}

#[test]
fn every_truncation_of_every_kind_is_a_named_error_not_a_panic() {
    let initial = hex(V1_CLIENT_PACKET);
    let handshake = {
        let mut p = hex(V1_SERVER_PACKET);
        p[0] = (p[0] & 0xcf) | 0x20; // type bits 2: Handshake in v1, same layout less token
        p.remove(15); // drop the token length byte
        p
    };
    for p in [initial, handshake, retry(), version_negotiation()] {
        let whole = LongHeader::new_checked(&p).expect("whole");
        for cut in 0..p.len() {
            match LongHeader::new_checked(&p[..cut]) {
                Err(_) => {}
                // Version Negotiation and Retry run to the end of the datagram: cut
                // short, they are shorter ones (a Retry's tag then fails its check).
                Ok(h) => assert!(
                    matches!(
                        h.kind(),
                        PacketKind::VersionNegotiation | PacketKind::Retry(_)
                    ),
                    "cut {cut}: {h:?}"
                ),
            }
        }
        assert_eq!(whole.packet().len(), p.len());
    }
    let p = hex(V1_CLIENT_PACKET);
    assert_eq!(
        LongHeader::new_checked(&p[..3]),
        Err(HeaderError::Truncated(HeaderField::Version))
    );
    assert_eq!(
        LongHeader::new_checked(&p[..10]),
        Err(HeaderError::Truncated(HeaderField::Dcid))
    );
    assert_eq!(
        LongHeader::new_checked(&p[..17]),
        Err(HeaderError::Truncated(HeaderField::Length))
    );
    assert_eq!(
        LongHeader::new_checked(&p[..1199]),
        Err(HeaderError::Truncated(HeaderField::Payload))
    );
}

#[test]
fn coalesced_packets_are_walked_in_order_and_trailing_junk_ends_the_walk() {
    let c = Client::new(Version::V1);
    let first = c.initial(0, &crypto(0, b"abc"), 0);
    let second = c.initial(1, &crypto(3, b"def"), 0);
    let mut zero_rtt = first.clone();
    zero_rtt[0] = (zero_rtt[0] & 0xcf) | 0x10; // type 1: 0-RTT in v1
    zero_rtt.remove(1 + 4 + 1 + 8 + 1 + 2); // no token length in 0-RTT
    let mut datagram = [first.clone(), second.clone(), zero_rtt.clone()].concat();
    datagram.extend_from_slice(&[0; 40]);

    let got: Vec<_> = packets(&datagram).collect();
    assert_eq!(got.len(), 4);
    let kinds: Vec<_> = got
        .iter()
        .map(|p| match p {
            Ok(Packet::Long(h)) => Some((h.kind(), h.packet().len())),
            _ => None,
        })
        .collect();
    assert_eq!(
        kinds[..3],
        [
            Some((PacketKind::Initial(Version::V1), first.len())),
            Some((PacketKind::Initial(Version::V1), second.len())),
            Some((PacketKind::ZeroRtt(Version::V1), zero_rtt.len())),
        ]
    );
    assert_eq!(got[3], Ok(Packet::Short(&[0; 40][..])));
}

#[test]
fn a_walk_stops_at_the_first_bad_packet() {
    let c = Client::new(Version::V1);
    let first = c.initial(0, &crypto(0, b"abc"), 0);
    let datagram = [&first[..], &[0xc0, 0, 0, 0, 1, 25][..]].concat();
    let got: Vec<_> = packets(&datagram).collect();
    assert_eq!(got.len(), 2);
    assert_eq!(got[1], Err(HeaderError::CidTooLong(25)));
}
