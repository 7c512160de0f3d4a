//! Tests of [`peek_handshake`]: the ClientHello read from a bare handshake stream, as
//! QUIC carries it, gives what [`peek`] gives from the same hello in records.

use super::tests::{alpn, body, handshake, hello, records, sni};
use super::*;

/// The recorded hellos of `testdata/` (records of real clients).
const RECORDED: &[(&str, &[u8])] = &[
    (
        "openssl_s_client",
        include_bytes!("../../../testdata/openssl_s_client.bin"),
    ),
    (
        "openssl_tls12",
        include_bytes!("../../../testdata/openssl_tls12.bin"),
    ),
    (
        "openssl_no_sni",
        include_bytes!("../../../testdata/openssl_no_sni.bin"),
    ),
    ("curl", include_bytes!("../../../testdata/curl.bin")),
    (
        "rustls_pq",
        include_bytes!("../../../testdata/rustls_pq.bin"),
    ),
    ("chromium", include_bytes!("../../../testdata/chromium.bin")),
];

/// The handshake stream carried by handshake records (the record headers dropped).
fn unwrap_records(mut data: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    while let [0x16, 3, _, hi, lo, rest @ ..] = data {
        let len = usize::from(u16::from_be_bytes([*hi, *lo]));
        out.extend_from_slice(&rest[..len]);
        data = &rest[len..];
    }
    out
}

fn bare(data: &[u8]) -> TlsPeek {
    peek_handshake(data, &TlsPeekConfig::default())
}

#[test]
fn a_recorded_hello_reads_the_same_without_its_records() {
    for (name, recorded) in RECORDED {
        let stream = unwrap_records(recorded);
        assert!(stream.len() < recorded.len(), "{name}");
        let want = peek(recorded, &TlsPeekConfig::default());
        assert!(matches!(want, TlsPeek::Found { .. }), "{name}: {want:?}");
        assert_eq!(bare(&stream), want, "{name}");
    }
}

#[test]
fn every_prefix_of_a_bare_hello_needs_more() {
    let stream = unwrap_records(RECORDED[5].1);
    for cut in 0..stream.len() {
        assert_eq!(bare(&stream[..cut]), TlsPeek::NeedMore, "cut at {cut}");
    }
}

#[test]
fn bytes_after_the_bare_hello_are_not_examined() {
    let mut stream = handshake(&body(&[sni(b"a.example"), alpn(&[b"h3"])]));
    let want = bare(&stream);
    assert!(matches!(want, TlsPeek::Found { .. }));
    stream.extend_from_slice(&[0xff; 40]);
    assert_eq!(bare(&stream), want);
}

#[test]
fn a_bare_stream_that_is_not_a_client_hello_is_invalid_not_not_tls() {
    // A TLS record header is not a handshake message in a bare stream.
    let recorded = hello(&[sni(b"a.example")]);
    assert_eq!(
        bare(&recorded),
        TlsPeek::Invalid(HelloError::NotClientHello(0x16))
    );
    assert_eq!(
        bare(b"GET / HTTP/1.1\r\n"),
        TlsPeek::Invalid(HelloError::NotClientHello(b'G'))
    );
    assert_eq!(
        bare(&[2, 0, 0, 4]),
        TlsPeek::Invalid(HelloError::NotClientHello(2))
    );
}

#[test]
fn the_cap_counts_handshake_bytes_only() {
    let stream = handshake(&body(&[sni(b"a.example")]));
    let exact = TlsPeekConfig {
        max_hello_bytes: stream.len(),
    };
    assert!(matches!(
        peek_handshake(&stream, &exact),
        TlsPeek::Found { .. }
    ));
    let short = TlsPeekConfig {
        max_hello_bytes: stream.len() - 1,
    };
    let too_large = TlsPeek::Invalid(HelloError::TooLarge {
        cap: stream.len() - 1,
    });
    assert_eq!(peek_handshake(&stream, &short), too_large);
    // Decided from the handshake header alone.
    assert_eq!(peek_handshake(&stream[..4], &short), too_large);
}

#[test]
fn the_tcp_peeker_is_unchanged_by_the_bare_entry_point() {
    let stream = handshake(&body(&[sni(b"a.example")]));
    for chunk in [1, 7, 100, MAX_HELLO_BYTES] {
        let data = records(&stream, chunk.min(1 << 14));
        assert!(matches!(
            peek(&data, &TlsPeekConfig::default()),
            TlsPeek::Found { .. }
        ));
    }
    assert_eq!(peek(&stream, &TlsPeekConfig::default()), TlsPeek::NotTls);
}
