//! Unit tests of the ClientHello peeker: hand-built hellos, one malformed shape per test.

use super::parse::{HANDSHAKE_CLIENT_HELLO, MAX_RECORD_LEN, ext};
use super::*;

/// A ClientHello body: TLS 1.2 legacy_version, a 32-byte session id, two suites, null
/// compression, and the extensions given (type, body) in order.
pub(super) fn body(exts: &[(u16, Vec<u8>)]) -> Vec<u8> {
    let mut b = vec![0x03, 0x03];
    b.extend_from_slice(&[0xaa; 32]);
    b.push(32);
    b.extend_from_slice(&[0xbb; 32]);
    b.extend_from_slice(&[0x00, 0x04, 0x13, 0x01, 0x13, 0x02]);
    b.extend_from_slice(&[0x01, 0x00]);
    let mut block = Vec::new();
    for (t, e) in exts {
        block.extend_from_slice(&t.to_be_bytes());
        block.extend_from_slice(&(e.len() as u16).to_be_bytes());
        block.extend_from_slice(e);
    }
    b.extend_from_slice(&(block.len() as u16).to_be_bytes());
    b.extend_from_slice(&block);
    b
}

/// The handshake message around a body.
pub(super) fn handshake(body: &[u8]) -> Vec<u8> {
    let len = body.len() as u32;
    let mut m = vec![HANDSHAKE_CLIENT_HELLO];
    m.extend_from_slice(&len.to_be_bytes()[1..]);
    m.extend_from_slice(body);
    m
}

/// `stream` cut into handshake records of at most `chunk` bytes, record version 0x0301.
pub(super) fn records(stream: &[u8], chunk: usize) -> Vec<u8> {
    let mut out = Vec::new();
    for piece in stream.chunks(chunk) {
        out.extend_from_slice(&[0x16, 0x03, 0x01]);
        out.extend_from_slice(&(piece.len() as u16).to_be_bytes());
        out.extend_from_slice(piece);
    }
    out
}

pub(super) fn hello(exts: &[(u16, Vec<u8>)]) -> Vec<u8> {
    records(&handshake(&body(exts)), MAX_RECORD_LEN)
}

pub(super) fn sni(name: &[u8]) -> (u16, Vec<u8>) {
    let mut entry = vec![0];
    entry.extend_from_slice(&(name.len() as u16).to_be_bytes());
    entry.extend_from_slice(name);
    let mut e = (entry.len() as u16).to_be_bytes().to_vec();
    e.extend_from_slice(&entry);
    (ext::SERVER_NAME, e)
}

pub(super) fn alpn(protocols: &[&[u8]]) -> (u16, Vec<u8>) {
    let mut list = Vec::new();
    for p in protocols {
        list.push(p.len() as u8);
        list.extend_from_slice(p);
    }
    let mut e = (list.len() as u16).to_be_bytes().to_vec();
    e.extend_from_slice(&list);
    (ext::ALPN, e)
}

pub(super) fn run(data: &[u8]) -> TlsPeek {
    peek(data, &TlsPeekConfig::default())
}

pub(super) fn invalid(data: &[u8]) -> HelloError {
    match run(data) {
        TlsPeek::Invalid(e) => e,
        other => panic!("expected Invalid, got {other:?}"),
    }
}

pub(super) fn found_sni(data: &[u8]) -> Option<String> {
    match run(data) {
        TlsPeek::Found { sni, .. } => sni.map(|n| n.as_str().to_owned()),
        other => panic!("expected Found, got {other:?}"),
    }
}

#[test]
fn fixed_bytes_hello_with_sni_is_found() {
    // Record (0x0301, 65 bytes) holding a 61-byte ClientHello: legacy_version 0x0303,
    // random of zeros, empty session id, suite 0x1301, null compression, and one
    // server_name extension naming "a.example".
    let mut bytes = vec![
        0x16, 0x03, 0x01, 0x00, 0x41, 0x01, 0x00, 0x00, 0x3d, 0x03, 0x03,
    ];
    bytes.extend_from_slice(&[0; 32]);
    bytes.extend_from_slice(&[0x00, 0x00, 0x02, 0x13, 0x01, 0x01, 0x00]);
    bytes.extend_from_slice(&[0x00, 0x12, 0x00, 0x00, 0x00, 0x0e, 0x00, 0x0c, 0x00, 0x00]);
    bytes.extend_from_slice(b"\x09a.example");
    assert_eq!(bytes.len(), 5 + 0x41);
    assert_eq!(
        run(&bytes),
        TlsPeek::Found {
            sni: Some(HostName::parse(b"a.example").unwrap()),
            unusable_sni: None,
            alpn: None,
            ech_outer: false,
        }
    );
}

#[test]
fn sni_alpn_and_ech_flag_are_reported() {
    let data = hello(&[sni(b"a.example"), alpn(&[b"h2", b"http/1.1"])]);
    let TlsPeek::Found {
        sni,
        alpn,
        ech_outer,
        ..
    } = run(&data)
    else {
        panic!("not found");
    };
    assert_eq!(sni.unwrap().as_str(), "a.example");
    let alpn = alpn.unwrap();
    assert_eq!(alpn.iter().collect::<Vec<_>>(), [&b"h2"[..], b"http/1.1"]);
    assert_eq!(alpn.as_wire(), b"\x02h2\x08http/1.1");
    assert!(alpn.contains(b"h2") && !alpn.contains(b"h3"));
    assert!(!ech_outer);
}

#[test]
fn sni_is_lowercased_and_loses_trailing_dot() {
    assert_eq!(
        found_sni(&hello(&[sni(b"WWW.A.Example.")])).as_deref(),
        Some("www.a.example")
    );
}

#[test]
fn missing_sni_is_found_without_name() {
    assert_eq!(found_sni(&hello(&[alpn(&[b"h2"])])), None);
}

#[test]
fn hello_without_extension_block_is_found_without_name() {
    let mut b = body(&[]);
    b.truncate(b.len() - 2); // drop the empty block's length too
    assert_eq!(found_sni(&records(&handshake(&b), 100)), None);
}

#[test]
fn every_proper_prefix_needs_more_and_trailing_bytes_are_ignored() {
    let data = hello(&[sni(b"a.example"), alpn(&[b"h2"])]);
    for n in 0..data.len() {
        assert_eq!(run(&data[..n]), TlsPeek::NeedMore, "prefix {n}");
    }
    let mut longer = data.clone();
    longer.extend_from_slice(b"\x17\x03\x03garbage");
    assert_eq!(run(&longer), run(&data));
    assert!(matches!(run(&data), TlsPeek::Found { .. }));
}

#[test]
fn hello_spread_over_one_byte_records_is_found() {
    let stream = handshake(&body(&[sni(b"a.example"), alpn(&[b"h2"])]));
    assert_eq!(
        found_sni(&records(&stream, 1)).as_deref(),
        Some("a.example")
    );
}

#[test]
fn http_request_is_not_tls_from_its_first_byte() {
    assert_eq!(run(b"G"), TlsPeek::NotTls);
    assert_eq!(run(b"GET / HTTP/1.1\r\n"), TlsPeek::NotTls);
}

#[test]
fn alert_record_first_is_not_tls() {
    assert_eq!(
        run(&[0x15, 0x03, 0x03, 0x00, 0x02, 0x02, 0x70]),
        TlsPeek::NotTls
    );
}

#[test]
fn handshake_byte_with_other_major_version_is_not_tls() {
    assert_eq!(run(&[0x16, 0x02]), TlsPeek::NotTls);
}

#[test]
fn empty_input_and_lone_handshake_byte_need_more() {
    assert_eq!(run(b""), TlsPeek::NeedMore);
    assert_eq!(run(&[0x16]), TlsPeek::NeedMore);
    assert_eq!(run(&[0x16, 0x03, 0x01, 0x00]), TlsPeek::NeedMore);
}

#[test]
fn first_handshake_message_other_than_client_hello_is_invalid() {
    // A ServerHello (type 2) sent by the client.
    assert_eq!(
        invalid(&[0x16, 0x03, 0x03, 0x00, 0x04, 0x02, 0x00, 0x00, 0x00]),
        HelloError::NotClientHello(2)
    );
}

#[test]
fn record_longer_than_2_pow_14_is_invalid() {
    assert_eq!(
        invalid(&[0x16, 0x03, 0x01, 0x40, 0x01]),
        HelloError::RecordOverflow(0x4001)
    );
}

#[test]
fn other_record_between_hello_fragments_is_invalid() {
    let stream = handshake(&body(&[sni(b"a.example")]));
    let mut data = records(&stream[..10], 10);
    data.extend_from_slice(&[0x17, 0x03, 0x03, 0x00, 0x01, 0x00]);
    data.extend_from_slice(&records(&stream[10..], 100));
    assert_eq!(invalid(&data), HelloError::InterleavedRecord(0x17));
}

#[test]
fn hello_over_cap_is_invalid_as_soon_as_its_length_is_read() {
    let data = hello(&[sni(b"a.example")]);
    let small = TlsPeekConfig {
        max_hello_bytes: data.len() - 1,
    };
    // The first 9 bytes (record and handshake headers) already say it cannot fit.
    assert_eq!(
        peek(&data[..9], &small),
        TlsPeek::Invalid(HelloError::TooLarge {
            cap: data.len() - 1
        })
    );
    let exact = TlsPeekConfig {
        max_hello_bytes: data.len(),
    };
    assert!(matches!(peek(&data, &exact), TlsPeek::Found { .. }));
}

#[test]
fn reaching_cap_without_a_complete_hello_is_invalid() {
    // One-byte records: 6 bytes of input per handshake byte, so 20 bytes of cap run out
    // before the message length has been read.
    let data = records(&handshake(&body(&[sni(b"a.example")])), 1);
    let config = TlsPeekConfig {
        max_hello_bytes: 20,
    };
    assert_eq!(peek(&data[..19], &config), TlsPeek::NeedMore);
    let too_large = TlsPeek::Invalid(HelloError::TooLarge { cap: 20 });
    assert_eq!(peek(&data[..20], &config), too_large);
    assert_eq!(peek(&data, &config), too_large);
}

#[test]
fn cipher_suites_past_message_end_are_invalid() {
    let mut b = body(&[]);
    b[67] = 0x10;
    b[68] = 0x00;
    assert_eq!(
        invalid(&records(&handshake(&b), 1000)),
        HelloError::Overrun(Field::CipherSuites)
    );
}

#[test]
fn extension_block_shorter_than_message_is_invalid() {
    let mut b = body(&[sni(b"a.example")]);
    b.push(0); // one byte after the block, inside the message
    assert_eq!(
        invalid(&records(&handshake(&b), 1000)),
        HelloError::LengthMismatch(Field::Extensions)
    );
}

#[test]
fn truncated_extension_length_is_invalid() {
    // The block ends two bytes into an extension header.
    let mut b = body(&[sni(b"a.example")]);
    b.extend_from_slice(&[0x00, 0x17]);
    let block = b.len() - 77;
    b[75..77].copy_from_slice(&(block as u16).to_be_bytes());
    assert_eq!(
        invalid(&records(&handshake(&b), 1000)),
        HelloError::Overrun(Field::ExtensionHeader)
    );
}

#[test]
fn extension_length_past_block_is_invalid() {
    let mut b = body(&[sni(b"a.example")]);
    let ext_len_at = 77 + 2;
    b[ext_len_at + 1] += 1;
    assert_eq!(
        invalid(&records(&handshake(&b), 1000)),
        HelloError::Overrun(Field::Extension)
    );
}

#[test]
fn sni_list_length_past_extension_is_invalid() {
    let (t, mut e) = sni(b"a.example");
    e[1] += 1;
    assert_eq!(
        invalid(&hello(&[(t, e)])),
        HelloError::LengthMismatch(Field::ServerNameList)
    );
}

#[test]
fn sni_name_length_past_list_is_invalid() {
    let (t, mut e) = sni(b"a.example");
    e[4] += 1;
    assert_eq!(
        invalid(&hello(&[(t, e)])),
        HelloError::Overrun(Field::ServerName)
    );
}

#[test]
fn empty_server_name_extension_is_invalid() {
    assert_eq!(
        invalid(&hello(&[(ext::SERVER_NAME, vec![])])),
        HelloError::Overrun(Field::ServerNameList)
    );
    assert_eq!(
        invalid(&hello(&[(ext::SERVER_NAME, vec![0, 0])])),
        HelloError::EmptyServerNameList
    );
}

#[test]
fn only_host_name_entries_count() {
    // An entry of unknown name type 7, then the host_name.
    let mut e = vec![0, 18, 7, 0, 3, b'x', b'y', b'z'];
    e.extend_from_slice(b"\x00\x00\x07b.examp");
    e[1] = (e.len() - 2) as u8;
    assert_eq!(
        found_sni(&hello(&[(ext::SERVER_NAME, e)])).as_deref(),
        Some("b.examp")
    );
    let only_other = vec![0, 6, 7, 0, 3, b'x', b'y', b'z'];
    assert_eq!(found_sni(&hello(&[(ext::SERVER_NAME, only_other)])), None);
}

pub(super) fn ech_outer(payload_len: u16) -> (u16, Vec<u8>) {
    // outer, HKDF-SHA256 / AES-128-GCM, config 0x2a, 32-byte enc, payload
    let mut e = vec![0, 0x00, 0x01, 0x00, 0x01, 0x2a, 0x00, 0x20];
    e.extend_from_slice(&[0x11; 32]);
    e.extend_from_slice(&payload_len.to_be_bytes());
    e.extend(std::iter::repeat_n(0x22, usize::from(payload_len)));
    (ext::ENCRYPTED_CLIENT_HELLO, e)
}

#[test]
fn outer_ech_extension_sets_flag_and_keeps_outer_sni() {
    let data = hello(&[sni(b"public.example"), ech_outer(144)]);
    let TlsPeek::Found { sni, ech_outer, .. } = run(&data) else {
        panic!("not found");
    };
    assert!(ech_outer);
    assert_eq!(sni.unwrap().as_str(), "public.example");
}

#[test]
fn inner_ech_extension_does_not_set_flag() {
    let data = hello(&[sni(b"a.example"), (ext::ENCRYPTED_CLIENT_HELLO, vec![1])]);
    assert!(matches!(
        run(&data),
        TlsPeek::Found {
            ech_outer: false,
            ..
        }
    ));
}

#[test]
fn unrecognized_name_alert_echoes_client_record_version() {
    assert_eq!(
        unrecognized_name_alert(&[0x16, 0x03, 0x01, 0x02, 0x00]),
        [0x15, 0x03, 0x01, 0x00, 0x02, 0x02, 0x70]
    );
    assert_eq!(
        unrecognized_name_alert(&[0x16, 0x03, 0x03]),
        [0x15, 0x03, 0x03, 0x00, 0x02, 0x02, 0x70]
    );
}

#[test]
fn unrecognized_name_alert_falls_back_to_tls12_version() {
    let expected = [0x15, 0x03, 0x03, 0x00, 0x02, 0x02, 0x70];
    assert_eq!(unrecognized_name_alert(b""), expected);
    assert_eq!(unrecognized_name_alert(&[0x16, 0x03, 0x00]), expected);
    assert_eq!(unrecognized_name_alert(b"GET /"), expected);
}

#[test]
fn alpn_list_debug_shows_protocols() {
    let TlsPeek::Found { alpn: Some(a), .. } = run(&hello(&[alpn(&[b"h2", b"http/1.1"])])) else {
        panic!("not found");
    };
    assert_eq!(format!("{a:?}"), r#"["h2", "http/1.1"]"#);
}
