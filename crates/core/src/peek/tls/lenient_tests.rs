//! Unit tests of what the ClientHello peeker accepts because servers do (issue 19): one
//! relaxed rule per test, with the rules it keeps beside them, and the extreme shapes
//! (every record version, no extension block, fuzzed lengths, truncation at every byte,
//! SSLv2-format hellos, 64 KiB hellos over many records).

use super::parse::ext;
use super::tests::{
    alpn, body, ech_outer, found_sni, handshake, hello, invalid, records, run, sni,
};
use super::*;

/// `stream` cut into handshake records of at most `chunk` bytes, record version
/// `0x03` `minor`.
fn records_at(stream: &[u8], chunk: usize, minor: u8) -> Vec<u8> {
    let mut out = records(stream, chunk);
    let mut at = 0;
    while at < out.len() {
        out[at + 2] = minor;
        at += 5 + usize::from(u16::from_be_bytes([out[at + 3], out[at + 4]]));
    }
    out
}

fn named_hello() -> Vec<u8> {
    handshake(&body(&[sni(b"a.example"), alpn(&[b"h2"])]))
}

#[test]
fn hello_with_record_version_0x0300_is_named() {
    let data = records_at(&named_hello(), 16_384, 0);
    assert_eq!(&data[..3], [0x16, 0x03, 0x00]);
    assert_eq!(found_sni(&data).as_deref(), Some("a.example"));
}

#[test]
fn hello_with_record_version_0x0304_is_named() {
    let data = records_at(&named_hello(), 16_384, 4);
    assert_eq!(found_sni(&data).as_deref(), Some("a.example"));
}

#[test]
fn every_record_version_from_0x0300_to_0x03ff_is_named_on_every_record() {
    for minor in 0..=255u8 {
        let data = records_at(&named_hello(), 7, minor);
        assert_eq!(
            found_sni(&data).as_deref(),
            Some("a.example"),
            "0x03{minor:02x}"
        );
    }
}

#[test]
fn a_later_record_of_another_major_version_is_invalid() {
    let stream = named_hello();
    let mut data = records(&stream[..10], 10);
    data.extend_from_slice(&[0x16, 0x02, 0x00]);
    assert_eq!(invalid(&data), HelloError::RecordVersion(0x0200));
}

#[test]
fn empty_records_are_skipped() {
    let stream = named_hello();
    let mut data = vec![0x16, 0x03, 0x01, 0x00, 0x00];
    data.extend_from_slice(&records(&stream[..10], 10));
    data.extend_from_slice(&[0x16, 0x03, 0x01, 0x00, 0x00, 0x16, 0x03, 0x01, 0x00, 0x00]);
    data.extend_from_slice(&records(&stream[10..], 100));
    assert_eq!(found_sni(&data).as_deref(), Some("a.example"));
}

#[test]
fn hello_of_only_empty_records_up_to_the_cap_is_too_large() {
    let data = [0x16, 0x03, 0x01, 0x00, 0x00].repeat(10);
    let config = TlsPeekConfig {
        max_hello_bytes: 50,
    };
    assert_eq!(peek(&data[..49], &config), TlsPeek::NeedMore);
    assert_eq!(
        peek(&data, &config),
        TlsPeek::Invalid(HelloError::TooLarge { cap: 50 })
    );
}

#[test]
fn hello_with_no_extension_block_is_named_without_a_name() {
    let mut b = body(&[]);
    b.truncate(b.len() - 2);
    assert_eq!(found_sni(&records(&handshake(&b), 16_384)), None);
    // One byte where the block's length would be: it cannot be a length.
    b.push(0);
    assert_eq!(
        invalid(&records(&handshake(&b), 16_384)),
        HelloError::Overrun(Field::Extensions)
    );
}

#[test]
fn legacy_versions_session_ids_suites_and_methods_are_the_servers_to_judge() {
    let base = body(&[sni(b"a.example")]);
    let mut cases = Vec::new();
    for version in [[0, 0], [3, 0], [3, 4], [0x7f, 0x1c], [0xfe, 0xfd]] {
        let mut b = base.clone();
        b[..2].copy_from_slice(&version);
        cases.push(b);
    }
    // A 40-byte session id (the 32 bytes of it plus 8 more).
    let mut b = base.clone();
    b[34] = 40;
    b.splice(35..35, [0xcc; 8]);
    cases.push(b);
    // An odd and an empty cipher suite list, and no compression method.
    let mut b = base.clone();
    b.splice(67..71, [0x00, 0x03, 0x13, 0x01, 0x13]);
    b.remove(71);
    cases.push(b);
    let mut b = base.clone();
    b.splice(67..73, [0x00, 0x00]);
    cases.push(b);
    let mut b = base.clone();
    b.splice(73..75, [0x00]);
    cases.push(b);
    for (i, b) in cases.iter().enumerate() {
        assert_eq!(
            found_sni(&records(&handshake(b), 16_384)).as_deref(),
            Some("a.example"),
            "case {i}"
        );
    }
}

#[test]
fn duplicate_and_misplaced_extensions_other_than_server_name_are_accepted() {
    let psk = (41, vec![0; 8]);
    let data = hello(&[
        (0xfafa, vec![]),
        psk,
        sni(b"a.example"),
        (0xfafa, vec![]),
        alpn(&[b"h2"]),
        alpn(&[b"http/1.1"]),
    ]);
    let TlsPeek::Found { sni, alpn, .. } = run(&data) else {
        panic!("not found");
    };
    assert_eq!(sni.unwrap().as_str(), "a.example");
    assert_eq!(alpn.unwrap().as_wire(), b"\x02h2", "the first ALPN counts");
}

#[test]
fn malformed_alpn_is_reported_absent_and_the_hello_still_named() {
    let (t, mut past) = alpn(&[b"h2"]);
    past[2] = 3;
    let (_, mut short) = alpn(&[b"h2"]);
    short[1] -= 1;
    for e in [vec![0, 0], vec![], alpn(&[b"h2", b""]).1, past, short] {
        let data = hello(&[sni(b"a.example"), (t, e.clone())]);
        let TlsPeek::Found { sni, alpn, .. } = run(&data) else {
            panic!("{e:?}: not found");
        };
        assert_eq!(sni.unwrap().as_str(), "a.example");
        assert_eq!(alpn, None, "{e:?}");
    }
}

#[test]
fn malformed_or_unknown_ech_is_not_outer_and_the_hello_still_named() {
    let (t, mut trailing) = ech_outer(4);
    trailing.push(0);
    for e in [ech_outer(0).1, trailing, vec![1, 0], vec![2], vec![]] {
        let data = hello(&[sni(b"a.example"), (t, e.clone())]);
        let TlsPeek::Found { sni, ech_outer, .. } = run(&data) else {
            panic!("{e:?}: not found");
        };
        assert_eq!(sni.unwrap().as_str(), "a.example");
        assert!(!ech_outer, "{e:?}");
    }
}

#[test]
fn the_same_host_name_twice_is_that_name() {
    let entry = b"\x00\x00\x09a.example";
    let mut e = vec![0, 24];
    e.extend_from_slice(entry);
    e.extend_from_slice(b"\x00\x00\x09A.EXAMPLE");
    assert_eq!(
        found_sni(&hello(&[(ext::SERVER_NAME, e)])).as_deref(),
        Some("a.example")
    );
    assert_eq!(
        found_sni(&hello(&[sni(b"a.example"), sni(b"a.example.")])).as_deref(),
        Some("a.example")
    );
}

#[test]
fn two_different_host_names_are_ambiguous_in_one_list_or_two_extensions() {
    let mut e = vec![0, 24];
    e.extend_from_slice(b"\x00\x00\x09a.example");
    e.extend_from_slice(b"\x00\x00\x09b.example");
    let one_list = invalid(&hello(&[(ext::SERVER_NAME, e)]));
    assert_eq!(one_list, HelloError::DifferentHostNames);
    let two_exts = invalid(&hello(&[sni(b"a.example"), sni(b"b.example")]));
    assert_eq!(two_exts, HelloError::DuplicateServerName);
    assert!(one_list.is_ambiguous() && two_exts.is_ambiguous());
    assert!(!HelloError::Overrun(Field::ServerName).is_ambiguous());
}

#[test]
fn sni_that_is_no_host_name_is_found_as_unusable() {
    let cases: [(&[u8], SniError); 6] = [
        (b"a b.example", SniError::Name(NameError::BadByte(b' '))),
        (b"a..example", SniError::Name(NameError::EmptyLabel)),
        (b"", SniError::Name(NameError::Empty)),
        (&[b'a'; 300], SniError::Name(NameError::TooLong)),
        (b"198.51.100.2", SniError::AddressLiteral),
        (b"2001:db8::1", SniError::Name(NameError::BadByte(b':'))),
    ];
    for (name, why) in cases {
        let TlsPeek::Found {
            sni, unusable_sni, ..
        } = run(&hello(&[sni(name)]))
        else {
            panic!("{name:?}: not found");
        };
        assert_eq!((sni, unusable_sni), (None, Some(why)));
    }
    assert_eq!(
        found_sni(&hello(&[sni(b"198.51.100.2.example")])).as_deref(),
        Some("198.51.100.2.example")
    );
}

#[test]
fn sslv2_format_hello_offering_tls_is_decided_at_its_fourth_byte() {
    // 2-byte header with the high bit set, CLIENT-HELLO (1), version 0x0301, ...
    let v2 = [
        0x80, 0x2e, 0x01, 0x03, 0x01, 0x00, 0x15, 0x00, 0x00, 0x00, 0x10,
    ];
    for n in 0..4 {
        assert_eq!(run(&v2[..n]), TlsPeek::NeedMore, "prefix {n}");
    }
    for n in 4..=v2.len() {
        assert_eq!(run(&v2[..n]), TlsPeek::SslV2, "prefix {n}");
    }
    // Pure SSL 2.0 (version 0x0002), or another message type: not TLS.
    assert_eq!(run(&[0x80, 0x2e, 0x01, 0x00, 0x02]), TlsPeek::NotTls);
    assert_eq!(run(&[0x80, 0x2e, 0x04]), TlsPeek::NotTls);
    assert_eq!(run(&[0x80]), TlsPeek::NeedMore);
}

#[test]
fn truncation_at_every_byte_of_every_record_cut_needs_more() {
    let stream = named_hello();
    for chunk in [1, 2, 3, 5, 16, 100, 16_384] {
        for minor in [0, 1, 3, 4] {
            let data = records_at(&stream, chunk, minor);
            for n in 0..data.len() {
                assert_eq!(run(&data[..n]), TlsPeek::NeedMore, "{chunk}/{minor}: {n}");
            }
            assert_eq!(found_sni(&data).as_deref(), Some("a.example"));
        }
    }
}

/// The SNI extension with its 2-byte extension length replaced by `len`, the block's and
/// the message's lengths kept consistent with the real bytes.
fn with_sni_ext_len(len: u16) -> Vec<u8> {
    let mut b = body(&[sni(b"a.example"), alpn(&[b"h2"])]);
    b[79..81].copy_from_slice(&len.to_be_bytes());
    records(&handshake(&b), 16_384)
}

#[test]
fn fuzzed_extension_lengths_give_a_name_or_a_length_error_never_a_panic() {
    let real = 14u16;
    for len in 0..=u16::MAX {
        let data = with_sni_ext_len(len);
        let got = run(&data);
        match got {
            TlsPeek::Found { .. } => assert_eq!(len, real),
            TlsPeek::Invalid(
                HelloError::Overrun(_)
                | HelloError::LengthMismatch(_)
                | HelloError::EmptyServerNameList,
            ) => {}
            other => panic!("length {len}: {other:?}"),
        }
        // The answer is final: every prefix needs more or says the same.
        if len % 4099 == 0 {
            for n in 0..data.len() {
                let part = run(&data[..n]);
                assert!(
                    part == TlsPeek::NeedMore || part == got,
                    "{len}: prefix {n}"
                );
            }
        }
    }
}

/// A ClientHello of about `size` bytes: a name, then one padding extension (RFC 7685)
/// filling the rest.
fn big_hello(size: usize) -> Vec<u8> {
    let small = body(&[sni(b"a.example")]);
    let pad = size - small.len() - 4 - 4;
    handshake(&body(&[sni(b"a.example"), (21, vec![0; pad])]))
}

#[test]
fn hello_of_64_kib_over_many_records_is_named_within_a_cap_that_holds_it() {
    let stream = big_hello(64 * 1024 - 8);
    assert!(stream.len() > 0xffff - 8);
    let config = TlsPeekConfig {
        max_hello_bytes: 128 * 1024,
    };
    for chunk in [16_384, 1000, 333] {
        for minor in [0, 1, 3] {
            let data = records_at(&stream, chunk, minor);
            assert!(data.len() > 64 * 1024);
            let TlsPeek::Found { sni, .. } = peek(&data, &config) else {
                panic!("{chunk}: not found");
            };
            assert_eq!(sni.unwrap().as_str(), "a.example");
            assert_eq!(peek(&data[..data.len() - 1], &config), TlsPeek::NeedMore);
        }
    }
}

#[test]
fn hello_of_64_kib_is_too_large_for_the_default_cap_from_its_headers() {
    let data = records(&big_hello(64 * 1024 - 8), 16_384);
    let too_large = TlsPeek::Invalid(HelloError::TooLarge {
        cap: DEFAULT_MAX_HELLO_BYTES,
    });
    assert_eq!(run(&data[..8]), TlsPeek::NeedMore);
    assert_eq!(run(&data[..9]), too_large);
    assert_eq!(run(&data), too_large);
}

#[test]
fn the_largest_cap_holds_the_largest_hello_in_the_smallest_count_of_records() {
    let records = ((1 << 24) - 1 + 4usize).div_ceil(parse::MAX_RECORD_LEN);
    assert!((1 << 24) - 1 + 4 + 5 * records <= MAX_HELLO_BYTES);
}

#[test]
fn illegal_parameter_alert_is_a_fatal_alert_47() {
    assert_eq!(
        illegal_parameter_alert(&[0x16, 0x03, 0x03]),
        [0x15, 0x03, 0x03, 0x00, 0x02, 0x02, 47]
    );
}

#[test]
fn decode_error_alert_is_a_fatal_alert_50_in_the_clients_record_version() {
    assert_eq!(
        decode_error_alert(&[0x16, 0x03, 0x01]),
        [0x15, 0x03, 0x01, 0x00, 0x02, 0x02, 50]
    );
    assert_eq!(
        decode_error_alert(&[0x16, 0x03, 0x00]),
        [0x15, 0x03, 0x03, 0x00, 0x02, 0x02, 50]
    );
    assert_eq!(decode_error_alert(b"")[6], 50);
}
