//! The sample packets of RFC 9001 Appendix A and RFC 9369 Appendix A: opened, read and
//! sealed again byte for byte.

use super::util::hex;
use super::vectors::*;
use crate::peek::tls::AlpnList;
use crate::quic::frame::{Frame, frames};
use crate::quic::header::{LongHeader, LongType, PacketKind};
use crate::quic::keys::{Keys, Side};
use crate::quic::protect::{LongPacket, open, seal_long};
use crate::quic::{InitialPeek, QuicPeek, QuicPeekConfig, Version};

struct Case {
    version: Version,
    client_header: &'static str,
    client_packet: &'static str,
    server_header: &'static str,
    server_packet: &'static str,
}

const CASES: [Case; 2] = [
    Case {
        version: Version::V1,
        client_header: V1_CLIENT_HEADER,
        client_packet: V1_CLIENT_PACKET,
        server_header: V1_SERVER_HEADER,
        server_packet: V1_SERVER_PACKET,
    },
    Case {
        version: Version::V2,
        client_header: V2_CLIENT_HEADER,
        client_packet: V2_CLIENT_PACKET,
        server_header: V2_SERVER_HEADER,
        server_packet: V2_SERVER_PACKET,
    },
];

fn client_payload() -> Vec<u8> {
    let mut p = hex(CLIENT_CRYPTO_FRAME);
    p.resize(p.len() + CLIENT_PADDING, 0);
    p
}

#[test]
fn the_client_initial_of_appendix_a2_opens_to_its_crypto_frame() {
    for case in &CASES {
        let packet = hex(case.client_packet);
        assert_eq!(packet.len(), 1200);
        let header = LongHeader::new_checked(&packet).expect("header");
        assert_eq!(header.kind(), PacketKind::Initial(case.version));
        assert_eq!(header.dcid(), hex(DCID));
        assert_eq!(header.scid(), b"");
        assert_eq!(header.token(), b"");
        assert_eq!(header.pn_offset(), Some(18));
        assert_eq!(header.packet().len(), 1200);

        let keys = Keys::initial(case.version, &hex(DCID), Side::Client);
        let mut buf = vec![0; 1200];
        let opened = open(&keys, &header, None, &mut buf).expect("opens");
        assert_eq!(opened.packet_number, 2);
        assert_eq!(opened.header, hex(case.client_header));
        assert_eq!(opened.payload, client_payload());
        let all: Vec<_> = frames(opened.payload)
            .collect::<Result<_, _>>()
            .expect("frames");
        assert!(matches!(all[0], Frame::Crypto { offset: 0, data } if data.len() == 241));
        assert_eq!(all[1], Frame::Padding(CLIENT_PADDING));
    }
}

#[test]
fn sealing_the_appendix_a2_payload_gives_the_protected_packet() {
    for case in &CASES {
        let keys = Keys::initial(case.version, &hex(DCID), Side::Client);
        let dcid = hex(DCID);
        let packet = LongPacket {
            version: case.version,
            packet_type: LongType::Initial,
            dcid: &dcid,
            scid: &[],
            token: &[],
            packet_number: 2,
            pn_len: 4,
        };
        let mut out = [0u8; 1500];
        let n = seal_long(&keys, &packet, &client_payload(), &mut out).expect("seals");
        assert_eq!(out[..n], hex(case.client_packet)[..], "{:?}", case.version);
    }
}

#[test]
fn the_server_initial_of_appendix_a3_opens_with_the_server_keys_and_seals_back() {
    for case in &CASES {
        let packet = hex(case.server_packet);
        let header = LongHeader::new_checked(&packet).expect("header");
        assert_eq!(header.kind(), PacketKind::Initial(case.version));
        assert_eq!(header.dcid(), b"");
        assert_eq!(header.scid(), hex(SERVER_SCID));
        let keys = Keys::initial(case.version, &hex(DCID), Side::Server);
        let mut buf = vec![0; packet.len()];
        let opened = open(&keys, &header, None, &mut buf).expect("opens");
        assert_eq!(opened.packet_number, 1);
        assert_eq!(opened.header, hex(case.server_header));
        assert_eq!(opened.payload, hex(SERVER_PAYLOAD));

        let scid = hex(SERVER_SCID);
        let sealed = LongPacket {
            version: case.version,
            packet_type: LongType::Initial,
            dcid: &[],
            scid: &scid,
            token: &[],
            packet_number: 1,
            pn_len: 2,
        };
        let mut out = [0u8; 256];
        let n = seal_long(&keys, &sealed, &hex(SERVER_PAYLOAD), &mut out).expect("seals");
        assert_eq!(out[..n], packet[..]);
    }
}

#[test]
fn the_client_initial_of_appendix_a2_names_example_com() {
    for case in &CASES {
        let mut peek = InitialPeek::new(QuicPeekConfig::default());
        let QuicPeek::Found(found) = peek.push(&hex(case.client_packet)) else {
            panic!("not found");
        };
        assert_eq!(found.version, case.version);
        assert_eq!(found.sni.expect("sni").as_str(), "example.com");
        assert_eq!(found.unusable_sni, None);
        let alpn: Vec<&[u8]> = found
            .alpn
            .as_ref()
            .map(AlpnList::iter)
            .expect("alpn")
            .collect();
        assert_eq!(alpn, [&b"alpn"[..]]);
        assert!(!found.ech_outer);
        assert_eq!(found.dcid.as_bytes(), hex(DCID));
        assert_eq!(found.scid.as_bytes(), b"");
    }
}

#[test]
fn a_server_initial_is_not_taken_for_a_client_one() {
    for case in &CASES {
        let mut packet = hex(case.server_packet);
        // Pad the datagram so that only the keys can tell.
        packet.resize(1200, 0);
        let mut peek = InitialPeek::new(QuicPeekConfig::default());
        assert!(matches!(
            peek.push(&packet),
            QuicPeek::Discarded(crate::quic::Discard::Open(_))
        ));
        assert!(peek.client().is_none());
    }
}
