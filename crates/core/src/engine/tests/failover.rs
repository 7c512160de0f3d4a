//! Pools: the client's backend order, failover during connect (RST, ICMPv6 error,
//! silence), health reports, and what happens when no backend is up.

use core::time::Duration;

use super::*;
use crate::route::{BackendSpec, HashOn, Health};

fn second_addr() -> Ipv6Addr {
    "2001:db8:1::3".parse().unwrap()
}

fn third_addr() -> Ipv6Addr {
    "2001:db8:1::4".parse().unwrap()
}

/// `a.example` on a pool of `backends`.
fn pool(backends: &[Ipv6Addr]) -> Arc<RouteTable> {
    Arc::new(
        RouteTable::builder()
            .route(RouteSpec {
                hosts: vec!["a.example".into()],
                backends: backends.iter().copied().map(BackendSpec::new).collect(),
                hash: HashOn::Address,
                ports: Default::default(),
            })
            .unwrap()
            .build(),
    )
}

fn two() -> Harness {
    Harness::with_routes(config(), pool(&[backend_addr(), second_addr()]))
}

fn v6(addr: std::net::IpAddr) -> Ipv6Addr {
    match addr {
        std::net::IpAddr::V6(a) => a,
        std::net::IpAddr::V4(a) => panic!("{a} is not IPv6"),
    }
}

/// The request is sent; returns the SYN to the first backend and which backend is next.
fn first_syn(h: &mut Harness) -> (Sent, Ipv6Addr) {
    let (_, step) = h.open(80, HTTP_REQUEST);
    let syn = step.only_sent().clone();
    assert!(syn.v6 && syn.seg.syn() && !syn.seg.ack_flag());
    let first = v6(syn.dst);
    let other = if first == backend_addr() {
        second_addr()
    } else {
        backend_addr()
    };
    (syn, other)
}

/// `sent` is the same SYN as `first`, sent to `to`.
fn assert_same_syn(sent: &Sent, first: &Sent, to: Ipv6Addr) {
    assert!(
        sent.v6 && sent.seg.syn() && !sent.seg.ack_flag(),
        "{sent:?}"
    );
    assert_eq!(sent.dst, std::net::IpAddr::V6(to));
    assert_eq!(sent.src, first.src, "from the client's embedded address");
    assert_eq!(sent.seg.src_port, CPORT, "from the client's own port");
    assert_eq!(sent.seg.dst_port, 80);
    assert_eq!(sent.seg.seq, SeqNumber(C_ISN), "the client's ISN");
    assert_eq!(sent.seg.options.mss, first.seg.options.mss);
    assert_eq!(sent.seg.options.window_scale, Some(7), "the client's scale");
    assert!(sent.seg.options.sack_permitted);
    assert_eq!(sent.seg.options.timestamps, first.seg.options.timestamps);
}

/// The backend at `addr` answers the SYN; the peeked request must go to it, once, and
/// nothing to the client.
fn splice_at(h: &mut Harness, addr: Ipv6Addr) {
    let step = h.backend_at(
        addr,
        80,
        (flags::SYN | flags::ACK, B_ISN, C_ISN + 1),
        backend_linux(),
        &[],
    );
    assert_eq!(step.verdict, Verdict::Consumed);
    assert_eq!(step.sent.len(), 1, "{:?}", step.sent);
    let data = &step.sent[0];
    assert_eq!(data.dst, std::net::IpAddr::V6(addr));
    assert_eq!(
        data.payload, HTTP_REQUEST,
        "the peeked bytes, replayed once"
    );
    assert_eq!(h.engine.stats().spliced, 1);
}

fn failures(h: &mut Harness) -> Vec<(Ipv6Addr, ConnectFailure)> {
    let mut out = Vec::new();
    while let Some(e) = h.engine.poll_event() {
        if let Event::BackendFailed {
            route,
            backend,
            cause,
        } = e
        {
            assert_eq!(&*route, "a.example");
            out.push((*backend.ip(), cause));
        }
    }
    out
}

#[test]
fn first_backend_resetting_the_syn_moves_the_same_syn_to_the_second_where_the_flow_splices() {
    let mut h = two();
    let (syn, second) = first_syn(&mut h);
    let first = v6(syn.dst);
    let step = h.backend_at(
        first,
        80,
        (flags::RST | flags::ACK, 0, C_ISN + 1),
        ts(0, 0),
        &[],
    );
    assert_eq!(step.verdict, Verdict::Consumed);
    assert_same_syn(step.only_sent(), &syn, second);
    assert_eq!(h.engine.stats().failovers, 1);
    splice_at(&mut h, second);
    assert_eq!(failures(&mut h), [(first, ConnectFailure::Refused)]);
    assert_eq!(h.engine.stats().outcomes(Outcome::BackendRefused), 0);
}

#[test]
fn first_backend_silent_past_the_attempt_deadline_gives_way_to_the_second() {
    let mut h = two();
    let (syn, second) = first_syn(&mut h);
    let sent = h.advance(Duration::from_millis(999));
    assert!(sent.is_empty(), "{sent:?}");
    let sent = h.advance(Duration::from_millis(1));
    assert_eq!(sent.len(), 1, "{sent:?}");
    assert_same_syn(&sent[0], &syn, second);
    splice_at(&mut h, second);
    assert_eq!(failures(&mut h), [(v6(syn.dst), ConnectFailure::Timeout)]);
}

#[test]
fn icmp_unreachable_for_the_first_syn_moves_it_to_the_second() {
    let mut h = two();
    let (syn, second) = first_syn(&mut h);
    let first = v6(syn.dst);
    let s = Segment {
        src_port: CPORT,
        dst_port: 80,
        seq: syn.seg.seq,
        ack: SeqNumber(0),
        flags: flags::SYN,
        window: 502,
        options: TcpOptionsSpec::default(),
        payload: &[],
    };
    let mut inner = vec![0u8; s.v6_len()];
    s.emit_v6(&client6(), &first, &mut inner).unwrap();
    let icmp = icmp::icmpv6_to_client(first, 1, 4, 0, &inner);
    let step = h.run_with(icmp, RxChecksum::Unchecked).0;
    assert_eq!(step.verdict, Verdict::Consumed);
    assert_same_syn(step.only_sent(), &syn, second);
    splice_at(&mut h, second);
    assert_eq!(failures(&mut h), [(first, ConnectFailure::Unreachable)]);
}

#[test]
fn late_synack_from_the_abandoned_backend_gets_a_rst_and_leaves_the_flow_alone() {
    let mut h = two();
    let (syn, second) = first_syn(&mut h);
    let first = v6(syn.dst);
    h.advance(Duration::from_secs(1));
    let step = h.backend_at(
        first,
        80,
        (flags::SYN | flags::ACK, B_ISN, C_ISN + 1),
        backend_linux(),
        &[],
    );
    assert_eq!(step.verdict, Verdict::Dropped(DropReason::BackendNoFlow));
    let rst = step.only_sent();
    assert!(rst.v6 && rst.seg.rst());
    assert_eq!(rst.dst, std::net::IpAddr::V6(first));
    assert_eq!(rst.seg.seq, SeqNumber(C_ISN + 1));
    splice_at(&mut h, second);
}

#[test]
fn every_backend_refusing_resets_the_client_once_after_the_last() {
    let mut h = two();
    let (syn, second) = first_syn(&mut h);
    let first = v6(syn.dst);
    let rst = (flags::RST | flags::ACK, 0, C_ISN + 1);
    let step = h.backend_at(first, 80, rst, ts(0, 0), &[]);
    assert!(step.only_sent().v6);
    let step = h.backend_at(second, 80, rst, ts(0, 0), &[]);
    let to_client = step.only_sent();
    assert!(!to_client.v6 && to_client.seg.rst());
    assert_eq!(h.engine.stats().outcomes(Outcome::BackendRefused), 1);
    assert_eq!(h.engine.flow_count(), 0);
    assert_eq!(
        failures(&mut h),
        [
            (first, ConnectFailure::Refused),
            (second, ConnectFailure::Refused)
        ]
    );
}

#[test]
fn last_backend_keeps_the_connect_deadline_and_its_syn_retransmissions() {
    let mut h = two();
    let (syn, second) = first_syn(&mut h);
    let moved = h.advance(Duration::from_secs(1));
    assert_same_syn(&moved[0], &syn, second);
    // The second backend is the last: its SYN goes again at 1 s and 3 s after it, and
    // the client is reset at the connect deadline (5 s after the name).
    let again = h.advance(Duration::from_secs(1));
    assert_same_syn(&again[0], &syn, second);
    let again = h.advance(Duration::from_secs(2));
    assert_same_syn(&again[0], &syn, second);
    let end = h.advance(Duration::from_secs(1));
    assert!(end.iter().any(|s| !s.v6 && s.seg.rst()), "{end:?}");
    assert_eq!(h.engine.stats().outcomes(Outcome::ConnectTimeout), 1);
    assert_eq!(
        failures(&mut h),
        [
            (v6(syn.dst), ConnectFailure::Timeout),
            (second, ConnectFailure::Timeout)
        ]
    );
}

#[test]
fn backend_marked_down_is_skipped_and_back_up_it_is_chosen_again() {
    let table = pool(&[backend_addr(), second_addr(), third_addr()]);
    let mut h = Harness::with_routes(config(), table.clone());
    let (syn, _) = first_syn(&mut h);
    let favourite = v6(syn.dst);
    let slot = table.routes()[0]
        .pool()
        .backends()
        .iter()
        .find(|b| b.address() == favourite)
        .unwrap()
        .slot();
    let mut health = Health::all_up();
    health.set(slot, false);
    h.engine.set_health(Arc::new(health));
    h.advance(Duration::from_secs(10));
    let (syn, _) = first_syn(&mut h);
    assert_ne!(v6(syn.dst), favourite);
    h.engine.set_health(Arc::new(Health::all_up()));
    h.advance(Duration::from_secs(10));
    let (syn, _) = first_syn(&mut h);
    assert_eq!(v6(syn.dst), favourite, "the client's own backend again");
}

#[test]
fn with_every_backend_down_the_client_gets_the_unknown_name_refusal_at_once() {
    let mut h = two();
    let mut health = Health::all_up();
    health.set(0, false);
    health.set(1, false);
    h.engine.set_health(Arc::new(health));
    let (_, step) = h.open(80, HTTP_REQUEST);
    let answer = step.only_sent();
    assert!(!answer.v6);
    assert!(
        answer.payload.starts_with(b"HTTP/1.1 421"),
        "{:?}",
        String::from_utf8_lossy(&answer.payload)
    );
    assert_eq!(h.engine.stats().no_backend, 1);
}

#[test]
fn a_reload_gives_every_backend_of_the_new_table_a_fresh_start() {
    let mut h = two();
    let mut health = Health::all_up();
    health.set(0, false);
    health.set(1, false);
    h.engine.set_health(Arc::new(health));
    h.engine
        .set_routes(pool(&[backend_addr(), second_addr(), third_addr()]));
    let (_, step) = h.open(80, HTTP_REQUEST);
    assert!(step.only_sent().v6, "a SYN, not a refusal");
}

/// A live upgrade in the middle of a failover: the restored flow still knows its order
/// of backends, which one it is trying and until when.
#[test]
fn a_failover_in_progress_survives_a_snapshot_and_splices_on_the_backend_it_moved_to() {
    let mut h = two();
    let (syn, second) = first_syn(&mut h);
    let first = v6(syn.dst);
    let step = h.backend_at(
        first,
        80,
        (flags::RST | flags::ACK, 0, C_ISN + 1),
        ts(0, 0),
        &[],
    );
    assert_same_syn(step.only_sent(), &syn, second);
    let bytes = h.engine.snapshot(h.now);
    let later = Time::from_millis(9_000_000);
    let table = pool(&[backend_addr(), second_addr()]);
    let mut b = Harness {
        engine: Engine::restore(config(), table, &bytes, later).expect("restores"),
        now: later,
        backend_window: h.backend_window,
        out: Output::default(),
    };
    // The abandoned backend's late answer still finds no flow.
    let late = b.backend_at(
        first,
        80,
        (flags::SYN | flags::ACK, B_ISN, C_ISN + 1),
        backend_linux(),
        &[],
    );
    assert_eq!(late.verdict, Verdict::Dropped(DropReason::BackendNoFlow));
    b.engine.stats = Stats::new();
    splice_at(&mut b, second);
}
