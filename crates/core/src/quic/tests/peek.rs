//! [`InitialPeek`] over built Initials: splits and orders of the CRYPTO stream, coalesced
//! packets, a post-quantum hello across two Initials, and every way a flow goes wrong.

use super::util::{Client, client_hello, crypto, fragments, hex, permutations};
use super::vectors::*;
use crate::peek::tls::HelloError;
use crate::quic::frame::FrameError;
use crate::quic::header::HeaderError;
use crate::quic::protect::OpenError;
use crate::quic::stream::StreamError;
use crate::quic::{Discard, InitialPeek, QuicError, QuicPeek, QuicPeekConfig, Version};

const VERSIONS: [Version; 2] = [Version::V1, Version::V2];

fn peek() -> InitialPeek {
    InitialPeek::new(QuicPeekConfig::default())
}

fn sni(answer: &QuicPeek) -> Option<&str> {
    match answer {
        QuicPeek::Found(f) => f.sni.as_ref().map(|n| n.as_str()),
        _ => None,
    }
}

/// Each datagram holds the Initials of `groups` (frames concatenated per packet).
fn push_all(p: &mut InitialPeek, c: &Client, datagrams: &[Vec<u8>]) -> QuicPeek {
    let mut last = QuicPeek::NeedMore;
    for (i, frames) in datagrams.iter().enumerate() {
        last = p.push(&c.initial(i as u64, frames, 1200));
    }
    last
}

#[test]
fn every_split_of_a_hello_across_two_initials_in_either_order_is_found() {
    let hello = client_hello("a.example", 300);
    for v in VERSIONS {
        let c = Client::new(v);
        for cut in 1..hello.len() {
            let f = fragments(&hello, &[cut]);
            for order in [[0, 1], [1, 0]] {
                let mut p = peek();
                let first = p.push(&c.initial(0, &f[order[0]], 1200));
                assert_eq!(first, QuicPeek::NeedMore, "{v:?} cut {cut} order {order:?}");
                let second = p.push(&c.initial(1, &f[order[1]], 1200));
                assert_eq!(
                    sni(&second),
                    Some("a.example"),
                    "{v:?} cut {cut} order {order:?}"
                );
            }
        }
    }
}

#[test]
fn every_order_of_three_pieces_in_one_or_three_initials_is_found() {
    let hello = client_hello("b.example", 200);
    let c = Client::new(Version::V1);
    for a in (1..hello.len() - 1).step_by(23) {
        for b in (a + 1..hello.len()).step_by(41) {
            let f = fragments(&hello, &[a, b]);
            for order in permutations(3) {
                let shuffled: Vec<_> = order.iter().map(|&i| f[i].clone()).collect();
                let one = push_all(&mut peek(), &c, &[shuffled.concat()]);
                assert_eq!(sni(&one), Some("b.example"), "{a}/{b} {order:?} in one");
                let three = push_all(&mut peek(), &c, &shuffled);
                assert_eq!(sni(&three), Some("b.example"), "{a}/{b} {order:?} in three");
            }
        }
    }
}

#[test]
fn a_post_quantum_hello_in_two_initials_with_shuffled_fragments_is_found() {
    // X25519MLKEM768's share alone is 1216 bytes: the hello cannot fit one Initial.
    let hello = client_hello("pq.example", 1250);
    assert!(hello.len() > 1300);
    let cuts = [180, 523, 900, 1111, 1290];
    let f = fragments(&hello, &cuts);
    for v in VERSIONS {
        let c = Client::new(v);
        for order in permutations(f.len()).iter().step_by(7) {
            // Chromium's way: fragments shuffled, PING and PADDING between them, spread
            // over two full-sized Initials.
            let mut packets = [Vec::new(), Vec::new()];
            let mut room = [0usize; 2];
            for &i in order {
                let k = usize::from(room[0] + f[i].len() > 1100);
                packets[k].extend_from_slice(&f[i]);
                packets[k].extend_from_slice(&[0x01, 0x00, 0x00]);
                room[k] += f[i].len() + 3;
            }
            for swap in [false, true] {
                let mut p = peek();
                let (x, y) = if swap { (1, 0) } else { (0, 1) };
                assert_eq!(p.push(&c.initial(0, &packets[x], 1250)), QuicPeek::NeedMore);
                let found = p.push(&c.initial(1, &packets[y], 1250));
                assert_eq!(
                    sni(&found),
                    Some("pq.example"),
                    "{v:?} {order:?} swap {swap}"
                );
                assert_eq!(p.datagrams(), 2);
            }
        }
    }
}

#[test]
fn coalesced_initials_and_a_0rtt_packet_in_one_datagram_are_read() {
    let hello = client_hello("c.example", 100);
    let f = fragments(&hello, &[60]);
    let c = Client::new(Version::V2);
    let first = c.initial(0, &f[1], 0);
    let second = c.initial(1, &f[0], 0);
    let mut zero_rtt = c.initial(2, &[0x01], 0);
    zero_rtt[0] = (zero_rtt[0] & 0xcf) | 0x20; // type 2: 0-RTT in v2
    zero_rtt.remove(17); // no token length
    let mut datagram = [first, second, zero_rtt].concat();
    datagram.resize(1200, 0);
    let answer = peek().push(&datagram);
    assert_eq!(sni(&answer), Some("c.example"));
}

#[test]
fn a_retransmitted_initial_adds_nothing_and_a_replayed_one_is_a_duplicate() {
    let hello = client_hello("d.example", 100);
    let f = fragments(&hello, &[50]);
    let c = Client::new(Version::V1);
    let mut p = peek();
    let first = c.initial(0, &f[0], 1200);
    assert_eq!(p.push(&first), QuicPeek::NeedMore);
    assert_eq!(p.push(&first), QuicPeek::Discarded(Discard::Duplicate(0)));
    // The client's retransmission: the same CRYPTO bytes under a new packet number.
    assert_eq!(p.push(&c.initial(1, &f[0], 1200)), QuicPeek::NeedMore);
    let found = p.push(&c.initial(2, &f[1], 1200));
    assert_eq!(sni(&found), Some("d.example"));
    // Final: every later datagram gets the same answer, and the stream's memory is back.
    assert_eq!(p.push(&first), found);
    assert_eq!(p.push(b"junk"), found);
    assert_eq!(p.held(), 0);
    let (version, dcid, scid) = p.client().expect("client");
    assert_eq!(
        (version, dcid.as_bytes(), scid.as_bytes()),
        (Version::V1, &c.dcid[..], &c.scid[..])
    );
}

#[test]
fn the_client_initial_of_appendix_a2_truncated_at_every_byte_is_never_found() {
    for packet in [hex(V1_CLIENT_PACKET), hex(V2_CLIENT_PACKET)] {
        for cut in 0..packet.len() {
            let answer = peek().push(&packet[..cut]);
            assert!(
                matches!(answer, QuicPeek::NotQuic | QuicPeek::Discarded(_)),
                "cut {cut}: {answer:?}"
            );
        }
    }
}

#[test]
fn a_flipped_bit_anywhere_in_the_appendix_a2_initial_is_never_found() {
    let packet = hex(V1_CLIENT_PACKET);
    for at in 0..packet.len() {
        for bit in [0x01, 0x80] {
            let mut bad = packet.clone();
            bad[at] ^= bit;
            let answer = peek().push(&bad);
            assert!(
                matches!(answer, QuicPeek::NotQuic | QuicPeek::Discarded(_)),
                "byte {at} bit {bit:#x}: {answer:?}"
            );
        }
    }
}

#[test]
fn what_a_server_discards_is_discarded_and_the_flow_goes_on() {
    let hello = client_hello("e.example", 100);
    let c = Client::new(Version::V1);
    let mut p = peek();
    let small = c.initial(0, &crypto(0, &hello), 1000);
    assert_eq!(
        p.push(&small),
        QuicPeek::Discarded(Discard::SmallDatagram(1000))
    );
    let mut forged = c.initial(0, &crypto(0, &hello), 1200);
    forged[1000] ^= 1;
    assert_eq!(
        p.push(&forged),
        QuicPeek::Discarded(Discard::Open(OpenError::Authentication))
    );
    let mut other = c.clone();
    other.dcid[0] ^= 0xff;
    assert_eq!(
        p.push(&other.initial(0, &crypto(0, &hello[..10]), 1200)),
        QuicPeek::NeedMore
    );
    // The flow belongs to the DCID of its first opened Initial now.
    assert_eq!(
        p.push(&c.initial(1, &crypto(0, &hello), 1200)),
        QuicPeek::Discarded(Discard::OtherConnection)
    );
    let draft29 = [&[0xc0, 0xff, 0, 0, 29, 0, 0][..], &[0; 1193]].concat();
    assert_eq!(
        p.push(&draft29),
        QuicPeek::Discarded(Discard::UnsupportedVersion(0xff00_001d))
    );
    assert_eq!(
        p.push(&[0xc0, 0, 0, 0, 1, 21]),
        QuicPeek::Discarded(Discard::Header(HeaderError::CidTooLong(21)))
    );
    assert_eq!(
        p.push(&[0x80, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1]),
        QuicPeek::Discarded(Discard::VersionNegotiation)
    );
}

#[test]
fn a_datagram_that_is_no_long_header_is_not_quic() {
    let mut p = peek();
    assert_eq!(p.push(&[]), QuicPeek::NotQuic);
    assert_eq!(p.push(&[0x40; 1200]), QuicPeek::NotQuic);
    assert_eq!(p.push(b"GET / HTTP/1.1\r\n"), QuicPeek::NotQuic);
    assert!(p.client().is_none());
}

#[test]
fn what_a_server_closes_the_connection_for_is_invalid() {
    let hello = client_hello("f.example", 100);
    let c = Client::new(Version::V2);
    let case = |c: &Client, frames: &[u8]| peek().push(&c.initial(0, frames, 1200));
    let mut reserved = c.clone();
    reserved.reserved = 0x08;
    assert_eq!(
        case(&reserved, &crypto(0, &hello)),
        QuicPeek::Invalid(QuicError::ReservedBits)
    );
    let stream = [0x08, 0x00, 0x01, b'x'];
    assert_eq!(
        case(&c, &stream),
        QuicPeek::Invalid(QuicError::Frame(FrameError::NotAllowed(8)))
    );
    let close = [0x1c, 0x0a, 0x00, 0x00];
    assert_eq!(
        case(&c, &close),
        QuicPeek::Invalid(QuicError::ClientClosed { error_code: 10 })
    );
    let server_hello = crypto(0, &[2, 0, 0, 4, 3, 3, 0, 0]);
    assert_eq!(
        case(&c, &server_hello),
        QuicPeek::Invalid(QuicError::Hello(HelloError::NotClientHello(2)))
    );
}

#[test]
fn ping_ack_and_padding_alone_need_more() {
    let c = Client::new(Version::V1);
    let ack = [0x02, 0x00, 0x00, 0x00, 0x00];
    assert_eq!(
        peek().push(&c.initial(0, &[0x01], 1200)),
        QuicPeek::NeedMore
    );
    assert_eq!(peek().push(&c.initial(0, &ack, 1200)), QuicPeek::NeedMore);
}

#[test]
fn the_crypto_stream_is_bounded_in_bytes_and_pieces() {
    let c = Client::new(Version::V1);
    let config = QuicPeekConfig {
        max_hello_bytes: 4096,
        ..QuicPeekConfig::default()
    };
    let past = InitialPeek::new(config).push(&c.initial(0, &crypto(4090, &[1; 10]), 1200));
    assert_eq!(
        past,
        QuicPeek::Invalid(QuicError::Crypto(StreamError::PastCap { cap: 4096 }))
    );
    let hello = client_hello("g.example", 5000);
    let too_large = push_all(
        &mut InitialPeek::new(config),
        &c,
        &[crypto(0, &hello[..1000])],
    );
    assert_eq!(
        too_large,
        QuicPeek::Invalid(QuicError::Hello(HelloError::TooLarge { cap: 4096 }))
    );
    let pieces: Vec<u8> = (0..17).flat_map(|i| crypto(10 + 3 * i, b"x")).collect();
    let fragmented = peek().push(&c.initial(0, &pieces, 1200));
    assert_eq!(
        fragmented,
        QuicPeek::Invalid(QuicError::Crypto(StreamError::TooFragmented))
    );
}

#[test]
fn a_flow_is_bounded_in_datagrams_and_bytes() {
    let c = Client::new(Version::V1);
    let mut p = peek();
    for pn in 0..8 {
        assert_eq!(p.push(&c.initial(pn, &[0x01], 1200)), QuicPeek::NeedMore);
    }
    let over = QuicPeek::Invalid(QuicError::TooManyDatagrams { max: 8 });
    assert_eq!(p.push(&c.initial(8, &[0x01], 1200)), over);
    assert_eq!(p.push(&c.initial(9, &[0x01], 1200)), over);

    let config = QuicPeekConfig {
        max_bytes: 3000,
        ..QuicPeekConfig::default()
    };
    let mut p = InitialPeek::new(config);
    assert_eq!(p.push(&c.initial(0, &[0x01], 1400)), QuicPeek::NeedMore);
    assert_eq!(p.push(&c.initial(1, &[0x01], 1400)), QuicPeek::NeedMore);
    assert_eq!(
        p.push(&c.initial(2, &[0x01], 1200)),
        QuicPeek::Invalid(QuicError::TooManyBytes { max: 3000 })
    );
    assert_eq!(p.bytes(), 2800);
}

#[test]
fn a_hello_without_a_usable_name_is_found_without_one() {
    let c = Client::new(Version::V1);
    let answer = peek().push(&c.initial(0, &crypto(0, &client_hello("192.0.2.1", 10)), 1200));
    let QuicPeek::Found(found) = answer else {
        panic!("{answer:?}")
    };
    assert_eq!(found.sni, None);
    assert!(found.unusable_sni.is_some());
}

#[test]
fn a_pending_flow_peek_stays_small_before_its_stream_grows() {
    // Fixed size, the CRYPTO stream's heap excluded (bounded by max_hello_bytes).
    let size = size_of::<InitialPeek>();
    assert!(size <= 512, "InitialPeek is {size} bytes");
    assert_eq!(peek().held(), 0);
}
