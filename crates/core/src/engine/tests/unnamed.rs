//! What cannot be named (issue 19): with a default backend it goes there with its bytes
//! replayed exactly; without one Kracauer answers like the server would (TLS
//! `decode_error` or `unrecognized_name`, HTTP 400, 421 or 431), and resets only bytes of
//! no protocol at all. Each path is counted.

use core::time::Duration;

use super::*;
use crate::flow::{PeekEnd, Unnamed};
use crate::route::{BackendSpec, HashOn};

const DECODE_ERROR: [u8; 7] = [0x15, 3, 1, 0, 2, 2, 50];

/// The test routes plus a default backend (the same backend address, on the service
/// port).
fn routes_with_default() -> Arc<RouteTable> {
    let mut ports = std::collections::BTreeMap::new();
    ports.insert(443, 8443);
    Arc::new(
        RouteTable::builder()
            .default_backend(backend_addr())
            .route(RouteSpec {
                hosts: vec!["a.example".into()],
                backends: vec![BackendSpec::new(backend_addr())],
                hash: HashOn::Address,
                ports,
            })
            .unwrap()
            .build(),
    )
}

fn with_default(config: EngineConfig) -> Harness {
    let mut h = Harness::with(config);
    h.engine.set_routes(routes_with_default());
    h
}

/// The backend on `port` answers the SYN; returns the bytes it was handed.
fn replayed(h: &mut Harness, port: u16) -> Vec<u8> {
    h.backend_window = 65535;
    let step = h.backend_from(
        port,
        flags::SYN | flags::ACK,
        B_ISN,
        C_ISN + 1,
        backend_linux(),
        &[],
    );
    assert!(step.sent.iter().all(|s| s.v6 && !s.seg.syn()));
    step.sent.iter().flat_map(|s| s.payload.clone()).collect()
}

/// Asserts `step` sent the backend's SYN to `port` (the default's port is the service's).
fn assert_syn_to(step: &Step, port: u16) {
    let syn = step.only_sent();
    assert!(syn.v6 && syn.seg.syn(), "{syn:?}");
    assert_eq!(syn.seg.dst_port, port);
    assert_eq!(syn.dst, std::net::IpAddr::V6(backend_addr()));
}

fn path(h: &Harness, protocol: Protocol, path: PeekPath) -> u64 {
    h.engine.stats().peeks(protocol, path)
}

/// A hello that names a.example, with the extension block's length one too large.
fn unparsable_hello() -> Vec<u8> {
    let mut hello = client_hello("a.example");
    let at = 5 + 4 + 2 + 32 + 1 + 4 + 2;
    hello[at + 1] += 1;
    hello
}

/// The first `n` bytes of a ClientHello that says it is `len` bytes long (a cipher suite
/// list that fills it), in one record of at most 2^14.
fn long_hello_prefix(len: usize, n: usize) -> Vec<u8> {
    let mut body = vec![3, 3];
    body.extend_from_slice(&[0x11; 32]);
    body.push(0);
    body.extend_from_slice(&((len - 2 - 32 - 1 - 2) as u16).to_be_bytes());
    body.resize(len, 0x13);
    let mut hs = vec![1];
    hs.extend_from_slice(&(len as u32).to_be_bytes()[1..]);
    hs.extend_from_slice(&body);
    let mut rec = vec![0x16, 3, 1];
    rec.extend_from_slice(&(hs.len().min(1 << 14) as u16).to_be_bytes());
    rec.extend_from_slice(&hs);
    rec.truncate(n);
    rec
}

#[test]
fn unparsable_hello_goes_to_the_default_backend_with_its_bytes_replayed_exactly() {
    let mut h = with_default(config());
    let hello = unparsable_hello();
    let (_, step) = h.open(443, &hello);
    assert_syn_to(&step, 443);
    assert_eq!(replayed(&mut h, 443), hello);
    assert_eq!(path(&h, Protocol::Tls, PeekPath::DefaultUnparsable), 1);
}

#[test]
fn hello_over_the_cap_goes_to_the_default_backend_from_its_first_bytes() {
    let mut h = with_default(config());
    let first = long_hello_prefix(40_000, 1200);
    let (_, step) = h.open(443, &first);
    assert_syn_to(&step, 443);
    assert_eq!(replayed(&mut h, 443), first);
    assert_eq!(path(&h, Protocol::Tls, PeekPath::DefaultUnparsable), 1);
}

#[test]
fn bytes_that_are_not_tls_go_to_the_default_backend_on_a_tls_port() {
    let mut h = with_default(config());
    let bytes = b"\x00\x01garbage that is not tls";
    let (_, step) = h.open(443, bytes);
    assert_syn_to(&step, 443);
    assert_eq!(replayed(&mut h, 443), bytes);
}

#[test]
fn sslv2_format_hello_goes_to_the_default_backend_as_unnamed() {
    let mut h = with_default(config());
    let v2 = [
        0x80, 0x2e, 0x01, 0x03, 0x01, 0x00, 0x15, 0x00, 0x00, 0x00, 0x10,
    ];
    let (_, step) = h.open(443, &v2);
    assert_syn_to(&step, 443);
    assert_eq!(replayed(&mut h, 443), v2);
    assert_eq!(path(&h, Protocol::Tls, PeekPath::DefaultUnnamed), 1);
}

#[test]
fn named_hello_still_goes_to_its_route_with_a_default() {
    let mut h = with_default(config());
    let (_, step) = h.open(443, &client_hello("a.example"));
    assert_syn_to(&step, 8443);
    assert_eq!(path(&h, Protocol::Tls, PeekPath::Named), 1);
}

#[test]
fn two_different_host_names_are_refused_even_with_a_default() {
    let mut h = with_default(config());
    let mut hello = client_hello("a.example");
    // A second server_name extension naming b.example, the lengths grown to hold it.
    let ext = [
        0, 0, 0, 14, 0, 12, 0, 0, 9, b'b', b'.', b'e', b'x', b'a', b'm', b'p', b'l', b'e',
    ];
    hello.extend_from_slice(&ext);
    for (at, width) in [(3, 2), (6, 3), (5 + 4 + 2 + 32 + 1 + 4 + 2, 2)] {
        let mut v = 0usize;
        for b in &hello[at..at + width] {
            v = v << 8 | usize::from(*b);
        }
        let bytes = (v + ext.len()).to_be_bytes();
        hello[at..at + width].copy_from_slice(&bytes[bytes.len() - width..]);
    }
    let (_, step) = h.open(443, &hello);
    let answer = step.only_sent();
    assert!(!answer.v6 && answer.seg.fin());
    assert_eq!(
        answer.payload,
        [0x15, 3, 1, 0, 2, 2, 47],
        "illegal_parameter"
    );
    assert_eq!(path(&h, Protocol::Tls, PeekPath::Refused), 1);
}

#[test]
fn unparsable_and_oversized_hellos_get_decode_error_without_a_default() {
    for hello in [unparsable_hello(), long_hello_prefix(40_000, 1200)] {
        let mut h = Harness::new();
        let (_, step) = h.open(443, &hello);
        let alert = step.only_sent();
        assert!(!alert.v6 && !alert.seg.rst());
        assert_eq!(alert.payload, DECODE_ERROR);
        assert_eq!(alert.flags(), flags::ACK | flags::PSH | flags::FIN);
        assert_eq!(alert.seg.ack, SeqNumber(C_ISN + 1 + hello.len() as u32));
        h.advance(Duration::from_secs(31));
        assert_eq!(h.engine.stats().outcomes(Outcome::Unparsable), 1);
        assert_eq!(path(&h, Protocol::Tls, PeekPath::Refused), 1);
    }
}

#[test]
fn hello_without_a_name_gets_unrecognized_name_without_a_default() {
    let mut h = Harness::new();
    let v2 = [0x80, 0x2e, 0x01, 0x03, 0x01];
    let (_, step) = h.open(443, &v2);
    assert_eq!(step.only_sent().payload, [0x15, 3, 3, 0, 2, 2, 112]);
}

#[test]
fn bytes_of_no_protocol_are_reset_without_a_default_and_counted() {
    let mut h = Harness::new();
    let (_, step) = h.open(443, b"\x00\x01garbage");
    assert!(step.only_sent().seg.rst());
    assert_eq!(path(&h, Protocol::Tls, PeekPath::Reset), 1);
    assert_eq!(h.engine.stats().outcomes(Outcome::NotRecognised), 1);
    match h.engine.poll_event() {
        Some(Event::Closed { peek, .. }) => assert_eq!(
            peek,
            Some(PeekEnd {
                path: PeekPath::Reset,
                unnamed: Some(Unnamed::NotProtocol)
            })
        ),
        other => panic!("{other:?}"),
    }
}

#[test]
fn malformed_http_head_goes_to_the_default_backend_with_its_bytes_replayed() {
    let mut h = with_default(config());
    let request = b"GET / HTTP/1.1\r\n Host: a.example\r\n\r\n";
    let (_, step) = h.open(80, request);
    assert_syn_to(&step, 80);
    assert_eq!(replayed(&mut h, 80), request);
    assert_eq!(path(&h, Protocol::Http, PeekPath::DefaultUnparsable), 1);
}

#[test]
fn http_head_over_the_cap_goes_to_the_default_backend_with_the_capped_bytes() {
    let mut c = config();
    c.peek_cap = 200;
    let mut h = with_default(c);
    let mut request = b"GET / HTTP/1.1\r\nCookie: ".to_vec();
    request.resize(300, b'c');
    request.extend_from_slice(b"\r\nHost: a.example\r\n\r\n");
    let (_, step) = h.open(80, &request);
    assert_syn_to(&step, 80);
    assert_eq!(replayed(&mut h, 80), request[..200]);
}

#[test]
fn http_answers_without_a_default_are_400_and_431() {
    let mut c = config();
    c.peek_cap = 200;
    let mut long = b"GET / HTTP/1.1\r\nCookie: ".to_vec();
    long.resize(300, b'c');
    let cases: [(&[u8], &[u8]); 3] = [
        (
            b"GET / HTTP/1.1\r\n Host: a.example\r\n\r\n",
            b"HTTP/1.1 400 ",
        ),
        (b"GET / HTTP/1.1\r\nAccept: */*\r\n\r\n", b"HTTP/1.1 400 "),
        (&long, b"HTTP/1.1 431 "),
    ];
    for (request, status) in cases {
        let mut h = Harness::with(c.clone());
        let (_, step) = h.open(80, request);
        let answer = step.only_sent();
        assert!(answer.payload.starts_with(status), "{answer:?}");
        assert!(answer.seg.fin());
        assert_eq!(path(&h, Protocol::Http, PeekPath::Refused), 1);
    }
}

#[test]
fn http_with_bare_lf_is_named() {
    let mut h = Harness::new();
    let (_, step) = h.open(80, b"GET /who HTTP/1.1\nHost: a.example\n\n");
    assert_syn_to(&step, 80);
    assert_eq!(path(&h, Protocol::Http, PeekPath::Named), 1);
}

#[test]
fn client_retransmitting_a_long_unfinished_hello_has_stalled_and_goes_to_the_default() {
    let mut h = with_default(config());
    let first = long_hello_prefix(10_000, 5000);
    let (synack, step) = h.open(443, &first);
    assert!(step.sent.is_empty(), "still peeking: {:?}", step.sent);
    // The client's RTO: the first segment again, nothing new.
    let k = synack.seg.seq.0;
    let step = h.client_to(
        443,
        flags::ACK,
        C_ISN + 1,
        k + 1,
        ts(102, 0),
        &first[..1400],
    );
    assert_syn_to(&step, 443);
    assert_eq!(replayed(&mut h, 443), first);
    let stats = h.engine.stats();
    assert_eq!(stats.peeks(Protocol::Tls, PeekPath::DefaultUnparsable), 1);
}

#[test]
fn stalled_hello_gets_decode_error_without_a_default() {
    let mut h = Harness::new();
    let first = long_hello_prefix(10_000, 5000);
    let (synack, _) = h.open(443, &first);
    let k = synack.seg.seq.0;
    let step = h.client_to(
        443,
        flags::ACK,
        C_ISN + 1,
        k + 1,
        ts(102, 0),
        &first[..1400],
    );
    assert_eq!(step.only_sent().payload, DECODE_ERROR);
}

#[test]
fn retransmission_of_a_short_unfinished_hello_is_no_stall() {
    let mut h = with_default(config());
    let first = long_hello_prefix(10_000, 3000);
    let (synack, _) = h.open(443, &first);
    let k = synack.seg.seq.0;
    let step = h.client_to(
        443,
        flags::ACK,
        C_ISN + 1,
        k + 1,
        ts(102, 0),
        &first[..1400],
    );
    assert!(step.sent.is_empty(), "{:?}", step.sent);
    assert_eq!(h.engine.flow_count(), 1);
}

#[test]
fn fin_on_an_empty_connection_goes_to_the_default_or_is_reset_without_one() {
    let mut h = with_default(config());
    let k = h.syn(443).seg.seq.0;
    let step = h.client_to(
        443,
        flags::ACK | flags::FIN,
        C_ISN + 1,
        k + 1,
        ts(102, 0),
        &[],
    );
    assert_syn_to(&step, 443);

    let mut h = Harness::new();
    let k = h.syn(443).seg.seq.0;
    let step = h.client_to(
        443,
        flags::ACK | flags::FIN,
        C_ISN + 1,
        k + 1,
        ts(102, 0),
        &[],
    );
    assert!(step.only_sent().seg.rst());
}

#[test]
fn peek_memory_bounds_every_growth_of_a_buffer_not_only_its_first() {
    let mut c = config();
    c.max_peek_bytes = 3000;
    let mut h = with_default(c);
    let first = long_hello_prefix(10_000, 4000);
    let (synack, step) = h.open(443, &first[..2000]);
    assert!(step.sent.is_empty());
    assert_eq!(h.engine.peek_bytes(), 2000);
    let k = synack.seg.seq.0;
    // Doubling to 4000 bytes would pass the 3000 the engine may hold.
    let step = h.client_to(
        443,
        flags::ACK,
        C_ISN + 2001,
        k + 1,
        ts(102, 0),
        &first[2000..],
    );
    assert_eq!(step.verdict, Verdict::Consumed);
    assert_eq!(h.engine.stats().drops(DropReason::PeekMemory), 1);
    assert!(h.engine.peek_bytes() <= 3000);
}
