//! Real QUIC first flights (crates/core/testdata/quic_*.bin, see its README.md) through
//! `quic::InitialPeek`: the exact SNI, ALPN, ECH flag and version of each; the same
//! answer with the datagrams in any order, replayed, or with their CRYPTO frames taken
//! out and re-sealed in other splits and orders; never a name from a truncated flight.

use kracauer_core::quic::frame::{Frame, frames};
use kracauer_core::quic::header::{LongHeader, LongType, Packet, PacketKind, packets};
use kracauer_core::quic::keys::{Keys, Side};
use kracauer_core::quic::protect::{LongPacket, open, seal_long};
use kracauer_core::quic::{Discard, Found, InitialPeek, QuicPeek, QuicPeekConfig, Version};

struct Vector {
    name: &'static str,
    bytes: &'static [u8],
    version: Version,
    sni: &'static str,
    alpn: &'static [&'static [u8]],
    ech_outer: bool,
    /// Datagrams in the first flight; the hello is complete with the last.
    datagrams: usize,
}

const VECTORS: &[Vector] = &[
    Vector {
        name: "quic_quinn",
        bytes: include_bytes!("../testdata/quic_quinn.bin"),
        version: Version::V1,
        sni: "a.example",
        alpn: &[b"h3"],
        ech_outer: false,
        datagrams: 2,
    },
    Vector {
        name: "quic_ngtcp2",
        bytes: include_bytes!("../testdata/quic_ngtcp2.bin"),
        version: Version::V1,
        // gtlsclient 0.12 sends "localhost" for an address literal, --sni notwithstanding.
        sni: "localhost",
        alpn: &[b"h3"],
        ech_outer: false,
        datagrams: 1,
    },
    Vector {
        name: "quic_chromium",
        bytes: include_bytes!("../testdata/quic_chromium.bin"),
        version: Version::V1,
        sni: "a.example",
        alpn: &[b"h3"],
        ech_outer: true,
        datagrams: 2,
    },
];

/// The datagrams of a recording: each a 2-byte big-endian length and its bytes.
fn datagrams(mut file: &[u8]) -> Vec<&[u8]> {
    let mut out = Vec::new();
    while let [hi, lo, rest @ ..] = file {
        let len = usize::from(u16::from_be_bytes([*hi, *lo]));
        out.push(&rest[..len]);
        file = &rest[len..];
    }
    out
}

fn run(datagrams: &[&[u8]]) -> QuicPeek {
    run_with(QuicPeekConfig::default(), datagrams)
}

fn run_with(config: QuicPeekConfig, datagrams: &[&[u8]]) -> QuicPeek {
    let mut peek = InitialPeek::new(config);
    let mut last = QuicPeek::NeedMore;
    for d in datagrams {
        last = peek.push(d);
    }
    last
}

fn check(v: &Vector, answer: &QuicPeek, how: &str) -> Found {
    let QuicPeek::Found(found) = answer else {
        panic!("{} {how}: {answer:?}", v.name);
    };
    assert_eq!(found.version, v.version, "{} {how}", v.name);
    assert_eq!(
        found.sni.as_ref().map(|n| n.as_str()),
        Some(v.sni),
        "{} {how}",
        v.name
    );
    let alpn: Vec<&[u8]> = found.alpn.iter().flat_map(|a| a.iter()).collect();
    assert_eq!(alpn, v.alpn, "{} {how}", v.name);
    assert_eq!(found.ech_outer, v.ech_outer, "{} {how}", v.name);
    found.clone()
}

#[test]
fn each_recorded_flight_names_its_host_with_its_last_datagram() {
    for v in VECTORS {
        let flight = datagrams(v.bytes);
        assert_eq!(flight.len(), v.datagrams, "{}", v.name);
        let mut peek = InitialPeek::new(QuicPeekConfig::default());
        for (i, d) in flight.iter().enumerate() {
            let answer = peek.push(d);
            if i + 1 < flight.len() {
                assert_eq!(answer, QuicPeek::NeedMore, "{} datagram {i}", v.name);
            } else {
                let found = check(v, &answer, "in order");
                let (version, dcid, scid) = peek.client().expect("client");
                assert_eq!((version, &found.dcid, &found.scid), (v.version, dcid, scid));
                assert!(
                    found.dcid.as_bytes().len() >= 8,
                    "{}: a client's first DCID",
                    v.name
                );
            }
        }
    }
}

#[test]
fn a_recorded_flight_in_reverse_or_replayed_gives_the_same_answer() {
    for v in VECTORS {
        let flight = datagrams(v.bytes);
        let reversed: Vec<&[u8]> = flight.iter().rev().copied().collect();
        check(v, &run(&reversed), "reversed");
        // Every datagram twice: the second copy is a duplicate, and changes nothing.
        let mut peek = InitialPeek::new(QuicPeekConfig::default());
        for (i, d) in flight.iter().enumerate() {
            let first = peek.push(d);
            let again = peek.push(d);
            if i + 1 < flight.len() {
                assert!(
                    matches!(again, QuicPeek::Discarded(Discard::Duplicate(_))),
                    "{}",
                    v.name
                );
            } else {
                assert_eq!(again, first, "{}: a final answer stays", v.name);
                check(v, &first, "replayed");
            }
        }
    }
}

#[test]
fn a_recorded_flight_cut_short_anywhere_is_never_found() {
    for v in VECTORS {
        let flight = datagrams(v.bytes);
        let last = flight.len() - 1;
        for cut in (0..flight[last].len()).step_by(3) {
            let mut cut_flight = flight[..last].to_vec();
            cut_flight.push(&flight[last][..cut]);
            let answer = run(&cut_flight);
            assert!(
                !matches!(answer, QuicPeek::Found(_)),
                "{} cut {cut}: {answer:?}",
                v.name
            );
        }
    }
}

/// What a recorded flight's Initials hold, opened.
struct Opened {
    version: Version,
    dcid: Vec<u8>,
    scid: Vec<u8>,
    /// The CRYPTO frames, offset and data, as sent.
    frames: Vec<(u64, Vec<u8>)>,
}

/// The CRYPTO frames of a recorded flight, opened with the client's Initial keys, and
/// the IDs the keys came from.
fn crypto_frames(flight: &[&[u8]]) -> Opened {
    let mut out = Vec::new();
    let mut ids = None;
    for d in flight {
        for packet in packets(d) {
            let Ok(Packet::Long(h)) = packet else {
                continue;
            };
            let PacketKind::Initial(version) = h.kind() else {
                continue;
            };
            let keys = Keys::initial(version, h.dcid(), Side::Client);
            let mut buf = vec![0; h.packet().len()];
            let opened = open(&keys, &h, None, &mut buf).expect("a real Initial opens");
            for f in frames(opened.payload) {
                if let Frame::Crypto { offset, data } = f.expect("frames") {
                    out.push((offset, data.to_vec()));
                }
            }
            ids.get_or_insert((version, h.dcid().to_vec(), h.scid().to_vec()));
        }
    }
    let (version, dcid, scid) = ids.expect("an Initial");
    Opened {
        version,
        dcid,
        scid,
        frames: out,
    }
}

/// A client Initial with packet number `pn` carrying `frames`, padded past 1200 bytes.
fn reseal(version: Version, dcid: &[u8], scid: &[u8], pn: u64, frames: &[u8]) -> Vec<u8> {
    let keys = Keys::initial(version, dcid, Side::Client);
    let packet = LongPacket {
        version,
        packet_type: LongType::Initial,
        dcid,
        scid,
        token: &[],
        packet_number: pn,
        pn_len: 2,
    };
    let mut payload = frames.to_vec();
    payload.resize(frames.len().max(1200), 0);
    let mut out = vec![0; payload.len() + 128];
    let n = seal_long(&keys, &packet, &payload, &mut out).expect("seals");
    out.truncate(n);
    out
}

fn crypto_frame(offset: u64, data: &[u8]) -> Vec<u8> {
    let mut f = vec![0x06];
    for v in [offset, data.len() as u64] {
        assert!(v < 0x4000);
        f.extend_from_slice(&(0x4000 | v as u16).to_be_bytes());
    }
    f.extend_from_slice(data);
    f
}

#[test]
fn every_order_of_a_recorded_flight_crypto_frames_one_per_initial_is_found() {
    for v in VECTORS {
        let Opened {
            version,
            dcid,
            scid,
            frames,
        } = crypto_frames(&datagrams(v.bytes));
        // Orders: as sent, reversed, and every rotation.
        let n = frames.len();
        let mut orders: Vec<Vec<usize>> = (0..n)
            .map(|r| (0..n).map(|i| (i + r) % n).collect())
            .collect();
        orders.push((0..n).rev().collect());
        for order in orders {
            let flight: Vec<Vec<u8>> = order
                .iter()
                .enumerate()
                .map(|(pn, &i)| {
                    reseal(
                        version,
                        &dcid,
                        &scid,
                        pn as u64,
                        &crypto_frame(frames[i].0, &frames[i].1),
                    )
                })
                .collect();
            let refs: Vec<&[u8]> = flight.iter().map(Vec::as_slice).collect();
            // Chromium cuts its hello into 17 frames: more Initials than a flow may
            // send by default, and this test is about the order, not the budget.
            let config = QuicPeekConfig {
                max_datagrams: n,
                max_bytes: n * 1400,
                ..QuicPeekConfig::default()
            };
            check(
                v,
                &run_with(config, &refs),
                &format!("frames in order {order:?}"),
            );
        }
    }
}

#[test]
fn every_split_of_a_recorded_hello_into_two_initials_either_way_is_found() {
    for v in VECTORS {
        let Opened {
            version,
            dcid,
            scid,
            frames,
        } = crypto_frames(&datagrams(v.bytes));
        let mut hello = Vec::new();
        for (offset, data) in &frames {
            let end = *offset as usize + data.len();
            if hello.len() < end {
                hello.resize(end, 0);
            }
            hello[*offset as usize..end].copy_from_slice(data);
        }
        // Each half must fit one Initial, so cut within the middle of a long hello.
        let lo = hello.len().saturating_sub(1100).max(1);
        let hi = hello.len().min(1100);
        for cut in (lo..hi).step_by(5) {
            let a = crypto_frame(0, &hello[..cut]);
            let b = crypto_frame(cut as u64, &hello[cut..]);
            for (x, y) in [(&a, &b), (&b, &a)] {
                let first = reseal(version, &dcid, &scid, 0, x);
                let second = reseal(version, &dcid, &scid, 1, y);
                check(v, &run(&[&first, &second]), &format!("cut at {cut}"));
            }
        }
    }
}

#[test]
fn a_v2_version_with_v1_packet_types_reads_as_a_client_retry_and_is_discarded() {
    // ngtcp2 0.12 does not know the final v2 number: asked for 0x6b3343cf it sends v1's
    // packet types under it, so its Initial's type bits (0b00) say Retry in v2. A v2
    // server drops a Retry from a client; so does the peek, and it names nothing.
    let flight = datagrams(include_bytes!("../testdata/quic_ngtcp2_v2_draft.bin"));
    assert_eq!(flight.len(), 1);
    let header = LongHeader::new_checked(flight[0]).expect("header");
    assert_eq!(header.kind(), PacketKind::Retry(Version::V2));
    assert_eq!(run(&flight), QuicPeek::Discarded(Discard::Retry));
}
