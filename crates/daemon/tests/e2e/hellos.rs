//! ClientHellos Kracauer cannot name, against a real OpenSSL server (issue 19): for a
//! generated corpus of malformed and extreme hellos, a client sees the same answer
//! (ServerHello, or the same alert, or nothing) through Kracauer with nginx as the default
//! backend as it sees from nginx directly; without a default it sees the documented
//! alert.

use kracauer_testbed::{Topology, Variant, require_privileged};

use std::time::Duration;

use super::origin::{Answer, Origin};
use super::{KRACAUER, eventually};

/// One extension: type and body.
type Ext = (u16, Vec<u8>);

fn u16b(v: usize) -> [u8; 2] {
    (v as u16).to_be_bytes()
}

fn sni(name: &[u8]) -> Ext {
    let mut entry = vec![0];
    entry.extend_from_slice(&u16b(name.len()));
    entry.extend_from_slice(name);
    let mut e = u16b(entry.len()).to_vec();
    e.extend_from_slice(&entry);
    (0, e)
}

fn list16(items: &[u16]) -> Vec<u8> {
    let mut e = u16b(items.len() * 2).to_vec();
    for i in items {
        e.extend_from_slice(&i.to_be_bytes());
    }
    e
}

/// The extensions of a TLS 1.3-capable hello nginx (OpenSSL) accepts, after `first`.
fn exts(first: Vec<Ext>) -> Vec<Ext> {
    let mut key_share = u16b(36).to_vec();
    key_share.extend_from_slice(&[0x00, 0x1d, 0x00, 0x20, 9]);
    key_share.extend_from_slice(&[0; 31]);
    let mut all = first;
    all.extend([
        (10, list16(&[0x001d, 0x0017])),
        (11, vec![1, 0]),
        (13, list16(&[0x0804, 0x0805, 0x0401, 0x0501, 0x0403])),
        (43, vec![4, 0x03, 0x04, 0x03, 0x03]),
        (51, key_share),
    ]);
    all
}

/// A ClientHello body: `version`, session id, suites, methods, then the extension block
/// (`None`: no block at all).
fn body(
    version: [u8; 2],
    sid: &[u8],
    suites: &[u8],
    methods: &[u8],
    exts: Option<&[Ext]>,
) -> Vec<u8> {
    let mut b = version.to_vec();
    b.extend_from_slice(&[0x11; 32]);
    b.push(sid.len() as u8);
    b.extend_from_slice(sid);
    b.extend_from_slice(&u16b(suites.len()));
    b.extend_from_slice(suites);
    b.push(methods.len() as u8);
    b.extend_from_slice(methods);
    if let Some(exts) = exts {
        let mut block = Vec::new();
        for (t, e) in exts {
            block.extend_from_slice(&t.to_be_bytes());
            block.extend_from_slice(&u16b(e.len()));
            block.extend_from_slice(e);
        }
        b.extend_from_slice(&u16b(block.len()));
        b.extend_from_slice(&block);
    }
    b
}

const SUITES: &[u8] = &[
    0x13, 0x01, 0x13, 0x02, 0x13, 0x03, 0xc0, 0x2f, 0xc0, 0x30, 0xc0, 0x2b, 0xc0, 0x2c, 0x00, 0x9c,
    0x00, 0x9d, 0x00, 0x2f, 0x00, 0x35,
];

fn standard_body(exts: &[Ext]) -> Vec<u8> {
    body([3, 3], &[0x22; 32], SUITES, &[0], Some(exts))
}

fn handshake(body: &[u8]) -> Vec<u8> {
    let mut m = vec![1];
    m.extend_from_slice(&(body.len() as u32).to_be_bytes()[1..]);
    m.extend_from_slice(body);
    m
}

/// `stream` in handshake records of at most `chunk` bytes, record version 0x03 `minor`.
fn records(stream: &[u8], chunk: usize, minor: u8) -> Vec<u8> {
    let mut out = Vec::new();
    for piece in stream.chunks(chunk) {
        out.extend_from_slice(&[0x16, 3, minor]);
        out.extend_from_slice(&u16b(piece.len()));
        out.extend_from_slice(piece);
    }
    out
}

fn hello_named(name: &[u8]) -> Vec<u8> {
    records(
        &handshake(&standard_body(&exts(vec![sni(name)]))),
        16_384,
        1,
    )
}

/// The corpus: (what it is, the bytes). Names are `n.example`, which has no route, so
/// through Kracauer every named hello reaches the default backend too.
fn corpus() -> Vec<(String, Vec<u8>)> {
    let mut c: Vec<(String, Vec<u8>)> = Vec::new();
    let name = b"n.example".as_slice();
    let hs = handshake(&standard_body(&exts(vec![sni(name)])));
    let base = records(&hs, 16_384, 1);
    c.push(("base".into(), base.clone()));
    for minor in [0, 1, 2, 3, 4, 0x7f, 0xff] {
        c.push((
            format!("record version 0x03{minor:02x}"),
            records(&hs, 16_384, minor),
        ));
    }
    for chunk in [1, 7, 100] {
        c.push((format!("{chunk}-byte records"), records(&hs, chunk, 1)));
        c.push((
            format!("{chunk}-byte records, 0x0300"),
            records(&hs, chunk, 0),
        ));
    }
    let mut empties = vec![0x16, 3, 1, 0, 0];
    empties.extend_from_slice(&records(&hs[..20], 20, 1));
    empties.extend_from_slice(&[0x16, 3, 1, 0, 0]);
    empties.extend_from_slice(&records(&hs[20..], 16_384, 1));
    c.push(("empty records".into(), empties));
    for v in [[3, 0], [3, 2], [3, 4], [0x7f, 0x1c], [2, 0]] {
        let b = body(v, &[0x22; 32], SUITES, &[0], Some(&exts(vec![sni(name)])));
        c.push((
            format!("legacy_version {v:02x?}"),
            records(&handshake(&b), 16_384, 1),
        ));
    }
    let tls12: &[u8] = &[0xc0, 0x2f, 0xc0, 0x30, 0x00, 0x9c, 0x00, 0x2f];
    let b = body([3, 3], &[], tls12, &[0], None);
    c.push((
        "no extension block".into(),
        records(&handshake(&b), 16_384, 1),
    ));
    let b = body([3, 3], &[], tls12, &[0], Some(&[]));
    c.push((
        "empty extension block".into(),
        records(&handshake(&b), 16_384, 1),
    ));
    c.push((
        "no server_name".into(),
        records(&handshake(&standard_body(&exts(vec![]))), 16_384, 1),
    ));
    let e = exts(vec![sni(name)]);
    for (what, b) in [
        (
            "33-byte session id",
            body([3, 3], &[0x22; 33], SUITES, &[0], Some(&e)),
        ),
        ("empty suites", body([3, 3], &[], &[], &[0], Some(&e))),
        (
            "odd suites",
            body([3, 3], &[], &SUITES[..5], &[0], Some(&e)),
        ),
        (
            "no compression methods",
            body([3, 3], &[], SUITES, &[], Some(&e)),
        ),
        (
            "only deflate compression",
            body([3, 3], &[], SUITES, &[1], Some(&e)),
        ),
    ] {
        c.push((what.into(), records(&handshake(&b), 16_384, 1)));
    }
    let dup_groups = exts(vec![sni(name), (10, list16(&[0x001d]))]);
    let psk_first = exts(vec![(41, vec![0, 0, 0, 0]), sni(name)]);
    let empty_alpn = exts(vec![sni(name), (16, vec![0, 0])]);
    let empty_proto = exts(vec![sni(name), (16, vec![0, 4, 2, b'h', b'2', 0])]);
    let bad_ech = exts(vec![sni(name), (0xfe0d, vec![0, 0, 1])]);
    let ech_type = exts(vec![sni(name), (0xfe0d, vec![7])]);
    let two_names = exts(vec![sni(name), sni(b"m.example")]);
    let same_twice = exts(vec![sni(name), sni(name)]);
    let mut list = vec![0, 24];
    list.extend_from_slice(b"\x00\x00\x09n.example\x00\x00\x09m.example");
    let two_in_list = exts(vec![(0, list)]);
    for (what, e) in [
        ("duplicate supported_groups", dup_groups),
        ("pre_shared_key first", psk_first),
        ("empty ALPN list", empty_alpn),
        ("ALPN with an empty protocol", empty_proto),
        ("malformed ECH", bad_ech),
        ("unknown ECH type", ech_type),
        ("two different server_name extensions", two_names),
        ("the same server_name twice", same_twice),
        ("two host_names in one list", two_in_list),
    ] {
        c.push((
            what.into(),
            records(&handshake(&standard_body(&e)), 16_384, 1),
        ));
    }
    for (what, n) in [
        ("IPv4 literal SNI", &b"198.51.100.7"[..]),
        ("SNI with a bad byte", b"n!.example"),
        ("empty SNI", b""),
        ("SNI with an empty label", b"n..example"),
    ] {
        c.push((what.into(), hello_named(n)));
    }
    // Fuzzed lengths: the server_name extension's, its list's, the block's, the message's.
    let body0 = standard_body(&exts(vec![sni(name)]));
    let block_at = 2 + 32 + 1 + 32 + 2 + SUITES.len() + 1 + 1;
    let real_sni = u16::from_be_bytes([body0[block_at + 4], body0[block_at + 5]]) as usize;
    for (what, at, value) in [
        ("server_name length 0", block_at + 4, 0),
        ("server_name length -1", block_at + 4, real_sni - 1),
        ("server_name length +1", block_at + 4, real_sni + 1),
        ("server_name length 0xffff", block_at + 4, 0xffff),
        ("server_name list length +1", block_at + 6, real_sni - 1),
        ("server_name list length 0", block_at + 6, 0),
        (
            "extension block length -1",
            block_at,
            body0.len() - block_at - 3,
        ),
        (
            "extension block length +1",
            block_at,
            body0.len() - block_at - 1,
        ),
        ("extension block length 0", block_at, 0),
    ] {
        let mut b = body0.clone();
        b[at..at + 2].copy_from_slice(&u16b(value));
        c.push((what.into(), records(&handshake(&b), 16_384, 1)));
    }
    for delta in [-1i64, 1, 100] {
        let mut h = handshake(&body0);
        let len = (body0.len() as i64 + delta) as u32;
        h[1..4].copy_from_slice(&len.to_be_bytes()[1..]);
        c.push((
            format!("handshake length {delta:+}"),
            records(&h, 16_384, 1),
        ));
    }
    for cut in [1, 3, 5, 9, 40, base.len() / 2, base.len() - 1] {
        c.push((format!("truncated at {cut}"), base[..cut].to_vec()));
    }
    let mut server_hello = hs.clone();
    server_hello[0] = 2;
    c.push((
        "a ServerHello from the client".into(),
        records(&server_hello, 16_384, 1),
    ));
    let mut overflow = records(&hs, 16_384, 1);
    let pad = 16_385 - hs.len();
    overflow[3..5].copy_from_slice(&u16b(16_385));
    overflow.extend(std::iter::repeat_n(0, pad));
    c.push(("record of 2^14 + 1 bytes".into(), overflow));
    let mut ccs = records(&hs[..30], 30, 1);
    ccs.extend_from_slice(&[0x14, 3, 3, 0, 1, 1]);
    ccs.extend_from_slice(&records(&hs[30..], 16_384, 1));
    c.push(("change_cipher_spec between fragments".into(), ccs));
    c.push(("SSLv2-format hello".into(), sslv2_hello()));
    c.push((
        "HTTP on the TLS port".into(),
        b"GET / HTTP/1.1\r\nHost: n.example\r\n\r\n".to_vec(),
    ));
    c.push((
        "binary noise".into(),
        (0..200u8).map(|i| i.wrapping_mul(37)).collect(),
    ));
    for size in [15_000, 20_000, 64 * 1024 - 100] {
        let padding = size - body0.len();
        let b = standard_body(&exts(vec![sni(name), (21, vec![0; padding])]));
        let h = handshake(&b);
        c.push((
            format!("{size}-byte hello in 2^14 records"),
            records(&h, 16_384, 1),
        ));
        c.push((
            format!("{size}-byte hello in 1000-byte records"),
            records(&h, 1000, 3),
        ));
    }
    let mut many = vec![sni(name)];
    many.extend((0..4100u16).map(|i| (0x1000 + i, Vec::new())));
    let h = handshake(&standard_body(&exts(many)));
    c.push(("4,100 extensions".into(), records(&h, 16_384, 1)));
    c
}

/// An SSLv2-format CLIENT-HELLO offering TLS 1.2 with four TLS cipher suites.
fn sslv2_hello() -> Vec<u8> {
    let specs: &[u8] = &[0, 0xc0, 0x2f, 0, 0xc0, 0x30, 0, 0x00, 0x9c, 0, 0x00, 0x2f];
    let mut m = vec![1, 3, 3];
    m.extend_from_slice(&u16b(specs.len()));
    m.extend_from_slice(&u16b(0));
    m.extend_from_slice(&u16b(16));
    m.extend_from_slice(specs);
    m.extend_from_slice(&[0x33; 16]);
    let mut out = u16b(m.len()).to_vec();
    out[0] |= 0x80;
    out.extend_from_slice(&m);
    out
}

#[test]
#[ignore = "privileged: needs root, network namespaces, nginx and openssl (run with --include-ignored)"]
fn every_corpus_hello_gets_the_same_answer_through_kracauer_with_a_default_as_from_nginx() {
    require_privileged(
        "every_corpus_hello_gets_the_same_answer_through_kracauer_with_a_default_as_from_nginx",
    );
    Origin::require_tools();
    let tb = Topology::build(Variant::Routed).unwrap();
    let origin = Origin::start(&tb);
    let k = tb
        .start_kracauer(KRACAUER, &tb.config_with(&Origin::default_backend(), ""))
        .unwrap();
    let corpus = corpus();
    let mut differ = Vec::new();
    let mut kinds = std::collections::BTreeMap::<String, usize>::new();
    for (what, bytes) in &corpus {
        let direct = origin.direct(443, bytes);
        let through = origin.through(443, bytes);
        *kinds.entry(format!("{direct:?}")).or_default() += 1;
        if direct != through {
            differ.push(format!(
                "{what}: directly {direct:?}, through Kracauer {through:?}"
            ));
        }
    }
    eprintln!(
        "{} probes, {} identical; answers from nginx: {kinds:?}",
        corpus.len(),
        corpus.len() - differ.len()
    );
    assert!(differ.is_empty(), "{}\n{}", differ.join("\n"), k.log());
    assert!(
        kinds.len() >= 3,
        "a corpus of one answer proves little: {kinds:?}"
    );
}

#[test]
#[ignore = "privileged: needs root, network namespaces, nginx and openssl (run with --include-ignored)"]
fn without_a_default_each_hello_gets_the_documented_answer() {
    require_privileged("without_a_default_each_hello_gets_the_documented_answer");
    Origin::require_tools();
    let tb = Topology::build(Variant::Routed).unwrap();
    let origin = Origin::start(&tb);
    let k = tb.start_kracauer(KRACAUER, &tb.config("")).unwrap();
    let corpus: std::collections::HashMap<String, Vec<u8>> = corpus().into_iter().collect();
    const UNRECOGNIZED_NAME: u8 = 112;
    const DECODE_ERROR: u8 = 50;
    const ILLEGAL_PARAMETER: u8 = 47;
    let expected = [
        ("base", Answer::Alert(UNRECOGNIZED_NAME)),
        ("record version 0x0300", Answer::Alert(UNRECOGNIZED_NAME)),
        ("record version 0x03ff", Answer::Alert(UNRECOGNIZED_NAME)),
        ("no server_name", Answer::Alert(UNRECOGNIZED_NAME)),
        ("IPv4 literal SNI", Answer::Alert(UNRECOGNIZED_NAME)),
        ("SSLv2-format hello", Answer::Alert(UNRECOGNIZED_NAME)),
        ("33-byte session id", Answer::Alert(UNRECOGNIZED_NAME)),
        ("server_name length +1", Answer::Alert(DECODE_ERROR)),
        ("extension block length -1", Answer::Alert(DECODE_ERROR)),
        ("truncated at 40", Answer::Alert(DECODE_ERROR)),
        (
            "two different server_name extensions",
            Answer::Alert(ILLEGAL_PARAMETER),
        ),
        ("two host_names in one list", Answer::Alert(DECODE_ERROR)),
        (
            "20000-byte hello in 2^14 records",
            Answer::Alert(DECODE_ERROR),
        ),
        // Within the cap and within the client's first flight (10 segments and a
        // probe): read whole, and named.
        (
            "15000-byte hello in 2^14 records",
            Answer::Alert(UNRECOGNIZED_NAME),
        ),
        ("4,100 extensions", Answer::Alert(DECODE_ERROR)),
        ("HTTP on the TLS port", Answer::Nothing),
        ("binary noise", Answer::Nothing),
    ];
    let mut wrong = Vec::new();
    for (what, want) in expected {
        let got = origin.through(443, &corpus[what]);
        if got != want {
            wrong.push(format!("{what}: got {got:?}, documented {want:?}"));
        }
    }
    // A name with a route still reaches its backend.
    let named = origin.through(443, &hello_named(b"a.example"));
    if named != Answer::ServerHello {
        wrong.push(format!("a.example: got {named:?}"));
    }
    assert!(wrong.is_empty(), "{}\n{}", wrong.join("\n"), k.log());
}

#[test]
#[ignore = "privileged: needs root, network namespaces, nginx and openssl (run with --include-ignored)"]
fn hellos_beyond_the_clients_first_flight_under_a_raised_cap_are_read_whole_through_custody() {
    require_privileged(
        "hellos_beyond_the_clients_first_flight_under_a_raised_cap_are_read_whole_through_custody",
    );
    Origin::require_tools();
    let tb = Topology::build(Variant::Routed).unwrap();
    let origin = Origin::start(&tb);
    let raised = "[limits]\npeek_bytes = 131072\n";
    let big: Vec<(String, Vec<u8>)> = corpus()
        .into_iter()
        .filter(|(what, _)| what.starts_with("20000-byte") || what.starts_with("65436-byte"))
        .collect();
    assert_eq!(big.len(), 4);
    let k = tb
        .start_kracauer(
            KRACAUER,
            &tb.config_with(&Origin::default_backend(), raised),
        )
        .unwrap();
    let mut wrong = Vec::new();
    for (what, bytes) in &big {
        let direct = origin.direct(443, bytes);
        let through = origin.through(443, bytes);
        if direct != through || direct != Answer::ServerHello {
            wrong.push(format!(
                "{what}: directly {direct:?}, through Kracauer {through:?}"
            ));
        }
    }
    assert!(wrong.is_empty(), "{}\n{}", wrong.join("\n"), k.log());
    // Kracauer took custody of each client's first flight (issue 16), read the rest of
    // the hello and found its name, which has no route: each went to the default as a
    // named hello. (Workers publish their counters now and then: poll until they show.)
    let want = "kracauer_peeks_total{protocol=\"tls\",path=\"default_unnamed\"} 4";
    eventually("the peeks to be counted", Duration::from_secs(20), || {
        let metrics = k.metrics().ok()?.body;
        metrics.lines().any(|l| l == want).then_some(())
    });
    drop(k);
    let k = tb.start_kracauer(KRACAUER, &tb.config(raised)).unwrap();
    // Without a default: read whole, the name has no route, so unrecognized_name.
    const UNRECOGNIZED_NAME: u8 = 112;
    for (what, bytes) in &big {
        let through = origin.through(443, bytes);
        if through != Answer::Alert(UNRECOGNIZED_NAME) {
            wrong.push(format!("{what} without a default: {through:?}"));
        }
    }
    assert!(wrong.is_empty(), "{}\n{}", wrong.join("\n"), k.log());
}
