//! A change of the prefix while flows run: flows keep the /96 they began under, new
//! flows take the new one, and the old one is served until its last flow ends.

use core::time::Duration;

use super::*;

fn new_prefix() -> Prefix96 {
    "2001:db8:65::/96".parse().unwrap()
}

fn with_prefix(prefix: Prefix96) -> EngineConfig {
    let mut c = config();
    c.prefix = prefix;
    c
}

/// The backend sends a segment from port 80 to `client_port` of the client's address
/// embedded in `prefix`.
fn backend_to(
    h: &mut Harness,
    prefix: Prefix96,
    client_port: u16,
    (flags, seq, ack): (u8, u32, u32),
    payload: &[u8],
) -> Step {
    let seg = Segment {
        src_port: 80,
        dst_port: client_port,
        seq: SeqNumber(seq),
        ack: SeqNumber(ack),
        flags,
        window: 1000,
        options: ts(5_001, 102),
        payload,
    };
    let mut buf = vec![0u8; HEADROOM + seg.v6_len()];
    seg.emit_v6(&backend_addr(), &prefix.embed(CLIENT), &mut buf[HEADROOM..])
        .unwrap();
    h.run(buf)
}

/// The client sends data on its spliced flow from `CPORT` to port 80.
fn client_data(h: &mut Harness, synack: &Sent) -> Step {
    let k = synack.seg.seq.0;
    let tsecr = synack.seg.options.timestamps.unwrap().0;
    h.client_to(
        80,
        flags::ACK | flags::PSH,
        C_ISN + 1 + HTTP_REQUEST.len() as u32,
        k + 1,
        ts(102, tsecr),
        b"more",
    )
}

#[test]
fn a_flow_spliced_before_a_prefix_change_keeps_its_prefix_both_ways() {
    let mut h = Harness::new();
    let (synack, _) = h.spliced_http(backend_linux());
    h.engine.reconfigure(with_prefix(new_prefix())).unwrap();
    assert_eq!(h.engine.config().prefix, new_prefix());
    assert_eq!(h.engine.retired_prefixes(), &[prefix()]);

    let up = client_data(&mut h, &synack);
    let fwd = up.forwarded.expect("forwarded to the backend");
    assert_eq!(fwd.src, std::net::IpAddr::V6(prefix().embed(CLIENT)));

    let down = backend_to(
        &mut h,
        prefix(),
        CPORT,
        (flags::ACK, B_ISN + 1, C_ISN + 1 + HTTP_REQUEST.len() as u32),
        b"reply",
    );
    let fwd = down.forwarded.expect("forwarded to the client");
    assert_eq!(fwd.dst, std::net::IpAddr::V4(CLIENT));
    assert_eq!(fwd.payload, b"reply");
}

#[test]
fn a_flow_begun_after_a_prefix_change_takes_the_new_prefix() {
    let mut h = Harness::new();
    h.engine.reconfigure(with_prefix(new_prefix())).unwrap();
    let (_, step) = h.open(80, HTTP_REQUEST);
    let syn = step.only_sent();
    assert!(syn.v6 && syn.seg.syn());
    assert_eq!(syn.src, std::net::IpAddr::V6(new_prefix().embed(CLIENT)));
    assert!(
        h.engine.retired_prefixes().is_empty(),
        "no flow held the old one"
    );

    // Its SYN-ACK towards the old prefix finds no flow of that prefix.
    let wrong = backend_to(
        &mut h,
        prefix(),
        CPORT,
        (flags::SYN | flags::ACK, B_ISN, C_ISN + 1),
        &[],
    );
    assert_eq!(
        wrong.verdict,
        Verdict::Dropped(DropReason::BackendNotPrefix)
    );
    let right = backend_to(
        &mut h,
        new_prefix(),
        CPORT,
        (flags::SYN | flags::ACK, B_ISN, C_ISN + 1),
        &[],
    );
    assert_eq!(right.verdict, Verdict::Consumed);
    assert!(
        right
            .sent
            .iter()
            .all(|s| s.src == std::net::IpAddr::V6(new_prefix().embed(CLIENT)))
    );
}

#[test]
fn the_old_prefix_is_served_until_its_last_flow_ends() {
    let mut h = Harness::new();
    h.spliced_http(backend_linux());
    h.engine.reconfigure(with_prefix(new_prefix())).unwrap();
    h.advance(Duration::from_secs(1));
    assert_eq!(
        h.engine.retired_prefixes(),
        &[prefix()],
        "a flow still holds it"
    );
    assert!(
        h.engine.poll_timeout().is_some(),
        "the engine looks again later"
    );

    h.advance(h.engine.config().idle_timeout + Duration::from_secs(1));
    assert_eq!(h.engine.flow_count(), 0);
    h.advance(Duration::from_secs(1));
    assert!(h.engine.retired_prefixes().is_empty());
    let late = backend_to(
        &mut h,
        prefix(),
        CPORT,
        (flags::ACK, B_ISN + 1, C_ISN + 1),
        b"x",
    );
    assert_eq!(late.verdict, Verdict::Dropped(DropReason::BackendNotPrefix));
}

#[test]
fn changing_the_prefix_back_serves_the_old_flows_as_current() {
    let mut h = Harness::new();
    h.spliced_http(backend_linux());
    h.engine.reconfigure(with_prefix(new_prefix())).unwrap();
    h.engine.reconfigure(with_prefix(prefix())).unwrap();
    assert_eq!(h.engine.config().prefix, prefix());
    assert!(
        h.engine.retired_prefixes().is_empty(),
        "nothing holds the other one"
    );
}

#[test]
fn a_restore_under_a_new_prefix_keeps_the_snapshot_flows_on_theirs() {
    let mut h = Harness::new();
    let (synack, _) = h.spliced_http(backend_linux());
    let bytes = h.engine.snapshot(h.now);
    let engine = Engine::restore(with_prefix(new_prefix()), routes(), &bytes, h.now).unwrap();
    h.engine = engine;
    assert_eq!(h.engine.retired_prefixes(), &[prefix()]);
    let up = client_data(&mut h, &synack);
    let fwd = up.forwarded.expect("forwarded to the backend");
    assert_eq!(fwd.src, std::net::IpAddr::V6(prefix().embed(CLIENT)));
    // The same prefix again retires nothing more.
    h.engine.reconfigure(with_prefix(new_prefix())).unwrap();
    assert_eq!(h.engine.retired_prefixes(), &[prefix()]);
}
