//! quic: Initial parsing, opening and the peek, on arbitrary bytes.
//!
//! The first byte picks the mode; the rest is cut into chunks, each a 2-byte big-endian
//! length and that many bytes (a short last chunk takes what is left).
//!
//! - Raw (first byte even): each chunk is a datagram. Every packet of it is walked with
//!   every accessor, opened with the Initial keys of its own DCID (client and server
//!   side), and the datagram is pushed to an `InitialPeek`.
//! - Sealed (odd): each chunk is the plaintext payload of a client Initial (packet number
//!   = its index, version from the first byte), sealed with the real keys and padded to a
//!   1200-byte datagram, so the fuzzer reaches the frames, the CRYPTO reassembly and the
//!   TLS peeker past the AEAD.
//!
//! Invariants: no panic; a final answer is given again for every later datagram; the
//! peek's budget and memory stay within their bounds; a Found name is normalised; the
//! refusal for the flow opens with the server keys as CONNECTION_CLOSE 0x170.
#![no_main]
use kracauer_core::name::HostName;
use kracauer_core::quic::frame::{Frame, frames};
use kracauer_core::quic::header::{LongHeader, LongType, Packet, packets};
use kracauer_core::quic::keys::{Keys, Side};
use kracauer_core::quic::protect::{LongPacket, open, seal_long};
use kracauer_core::quic::refuse::{MAX_REFUSAL_LEN, unrecognized_name};
use kracauer_core::quic::{InitialPeek, QuicPeek, QuicPeekConfig, Version};
use libfuzzer_sys::fuzz_target;

const DCID: [u8; 8] = [0x83, 0x94, 0xc8, 0xf0, 0x3e, 0x51, 0x57, 0x08];
const SCID: [u8; 3] = [0x5c, 0x1d, 0x00];

fuzz_target!(|data: &[u8]| {
    let Some((&mode, rest)) = data.split_first() else {
        return;
    };
    let chunks = chunks(rest);
    let config = QuicPeekConfig {
        max_datagrams: 4 + usize::from(mode >> 5),
        max_bytes: 8 * 1024,
        max_hello_bytes: 2048 + 512 * usize::from(mode >> 6),
    };
    let mut peek = InitialPeek::new(config);
    let mut decided: Option<QuicPeek> = None;
    let version = if mode & 2 == 0 { Version::V1 } else { Version::V2 };
    for (i, chunk) in chunks.iter().enumerate() {
        let answer = if mode & 1 == 0 {
            walk(chunk);
            peek.push(chunk)
        } else {
            peek.push(&sealed(version, i as u64, chunk))
        };
        assert!(peek.datagrams() <= config.max_datagrams);
        assert!(peek.bytes() <= config.max_bytes);
        assert!(peek.held() <= config.max_hello_bytes);
        match &decided {
            Some(first) => assert_eq!(&answer, first, "a final answer changed"),
            None if matches!(answer, QuicPeek::Found(_) | QuicPeek::Invalid(_)) => {
                decided = Some(answer.clone());
            }
            None => {}
        }
        if let QuicPeek::Found(found) = &answer {
            if let Some(name) = &found.sni {
                assert_eq!(HostName::parse(name.as_str().as_bytes()).as_ref(), Ok(name));
            }
        }
    }
    if let Some((version, dcid, scid)) = peek.client() {
        check_refusal(version, dcid.as_bytes(), scid.as_bytes());
    }
});

fn chunks(mut rest: &[u8]) -> Vec<&[u8]> {
    let mut out = Vec::new();
    while let [hi, lo, tail @ ..] = rest {
        let len = usize::from(u16::from_be_bytes([*hi, *lo])).min(tail.len());
        out.push(&tail[..len]);
        rest = &tail[len..];
    }
    out
}

/// Every accessor of every packet, and an open attempt with each side's keys.
fn walk(datagram: &[u8]) {
    let mut buf = vec![0u8; datagram.len()];
    for packet in packets(datagram) {
        let Ok(Packet::Long(h)) = packet else {
            continue;
        };
        let _ = (h.first_byte(), h.version(), h.kind(), h.token(), h.pn_offset());
        let _ = (h.retry_integrity_tag(), h.supported_versions().count());
        assert!(h.dcid().len() <= 255 && h.scid().len() <= 255);
        assert!(h.packet().len() <= datagram.len());
        for version in [Version::V1, Version::V2] {
            for side in [Side::Client, Side::Server] {
                let keys = Keys::initial(version, h.dcid(), side);
                if let Ok(opened) = open(&keys, &h, None, &mut buf) {
                    frames(opened.payload).for_each(drop);
                }
            }
        }
    }
}

/// A client Initial carrying `payload`, in a datagram of at least 1200 bytes.
fn sealed(version: Version, pn: u64, payload: &[u8]) -> Vec<u8> {
    let keys = Keys::initial(version, &DCID, Side::Client);
    let packet = LongPacket {
        version,
        packet_type: LongType::Initial,
        dcid: &DCID,
        scid: &SCID,
        token: &[],
        packet_number: pn,
        pn_len: 2,
    };
    let mut padded = payload.to_vec();
    padded.resize(payload.len().max(1200), 0);
    let mut out = vec![0u8; padded.len() + 64];
    let n = seal_long(&keys, &packet, &padded, &mut out).expect("a buffer 64 bytes over fits");
    out.truncate(n);
    out
}

fn check_refusal(version: Version, dcid: &[u8], scid: &[u8]) {
    let mut out = [0u8; MAX_REFUSAL_LEN];
    let n = unrecognized_name(version, dcid, scid, dcid, &mut out).expect("fits");
    let header = LongHeader::new_checked(&out[..n]).expect("its own header");
    let keys = Keys::initial(version, dcid, Side::Server);
    let mut buf = [0u8; MAX_REFUSAL_LEN];
    let opened = open(&keys, &header, None, &mut buf).expect("opens");
    let frames: Vec<_> = frames(opened.payload).collect();
    assert!(matches!(
        frames[..],
        [Ok(Frame::ConnectionClose {
            error_code: 0x170,
            ..
        })]
    ));
}
