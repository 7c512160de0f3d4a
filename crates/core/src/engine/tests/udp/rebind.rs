//! QUIC flows: rebinding by learned connection IDs, the limits pending flows hold,
//! the default route, and the snapshot.

use core::time::Duration;
use std::sync::Arc;

use super::{CPORT, Quic, backend_handshake, initial, short, two_initials};
use crate::base::PeekPath;
use crate::engine::tests::{backend_addr, config, prefix, routes};
use crate::engine::{DropReason, Engine, Event, Outcome, Protocol, Verdict};
use crate::quic::Version;
use crate::quic::tests::util::Client;
use crate::route::{BackendSpec, HashOn, RouteSpec, RouteTable};
use crate::time::Time;

const SERVER_CID: [u8; 8] = [0xaa, 1, 2, 3, 4, 5, 6, 7];

/// A flow routed and answered with a Handshake that chose `SERVER_CID`.
fn answered(q: &mut Quic, c: &Client) {
    q.client(CPORT, &initial(c, "a.example"));
    q.backend(CPORT, &backend_handshake(&c.scid, &SERVER_CID));
    assert_eq!(q.engine.quic_learned_cids(), 1);
}

#[test]
fn a_rebinding_client_reaches_the_same_backend_as_a_new_mapping() {
    let mut q = Quic::new();
    let c = Client::new(Version::V1);
    answered(&mut q, &c);
    q.events();
    // The client's NAT moved it to port 40001 mid-connection.
    let step = q.client(CPORT + 1, &short(&SERVER_CID));
    let d = step.forwarded.expect("forwarded");
    assert_eq!(d.dst, std::net::IpAddr::from(backend_addr()));
    assert_eq!(
        (d.sport, d.dport),
        (CPORT + 1, 8443),
        "the new port, as the backend must see it"
    );
    assert_eq!(q.engine.quic_flow_count(), 2);
    assert_eq!(q.engine.stats().quic_rebinds, 1);
    assert!(matches!(
        &q.events()[..],
        [Event::Opened {
            protocol: Protocol::Quic,
            name: Some(_),
            ..
        }]
    ));
    // The backend's answers on the new path go to the new port.
    let back = q.backend(CPORT + 1, &short(&c.scid)).forwarded.unwrap();
    assert_eq!(back.dport, CPORT + 1);
    // A second move is recognised too (from the newest mapping).
    assert!(q.client(CPORT + 2, &short(&SERVER_CID)).forwarded.is_some());
    assert_eq!(q.engine.stats().quic_rebinds, 2);
    // An ID no backend chose starts nothing.
    let step = q.client(CPORT + 3, &short(&[0xbb; 8]));
    assert_eq!(step.verdict, Verdict::Dropped(DropReason::ClientQuicNoFlow));
}

#[test]
fn a_rebinding_client_mid_handshake_is_recognised_by_its_handshake_packet() {
    let mut q = Quic::new();
    let c = Client::new(Version::V1);
    answered(&mut q, &c);
    let hs = backend_handshake(&SERVER_CID, &c.scid);
    assert!(q.client(CPORT + 7, &hs).forwarded.is_some());
}

#[test]
fn learned_ids_are_forgotten_with_their_last_flow() {
    let mut q = Quic::new();
    let c = Client::new(Version::V1);
    answered(&mut q, &c);
    q.client(CPORT + 1, &short(&SERVER_CID));
    q.advance(Duration::from_secs(181));
    assert_eq!(q.engine.quic_flow_count(), 0);
    assert_eq!(q.engine.quic_learned_cids(), 0);
    let step = q.client(CPORT + 2, &short(&SERVER_CID));
    assert_eq!(step.verdict, Verdict::Dropped(DropReason::ClientQuicNoFlow));
}

#[test]
fn pending_flows_hold_their_address_allowance_and_the_peek_memory() {
    let mut cfg = config();
    cfg.max_peeking_per_client = 2;
    let mut q = Quic::with(cfg, routes());
    let c = Client::new(Version::V1);
    let [first, second] = two_initials(&c, "a.example");
    assert_eq!(q.client(1, &first).verdict, Verdict::Consumed);
    assert_eq!(q.client(2, &first).verdict, Verdict::Consumed);
    // A third half hello from the same address waits in the client.
    assert_eq!(
        q.client(3, &first).verdict,
        Verdict::Dropped(DropReason::ClientPeekLimit)
    );
    // A whole hello in one datagram is still served at once.
    assert!(q.client(4, &initial(&c, "a.example")).sent.len() == 1);
    // Completing a pending one frees its slot.
    assert_eq!(q.client(1, &second).sent.len(), 2);
    assert_eq!(q.client(3, &first).verdict, Verdict::Consumed);

    let mut cfg = config();
    cfg.max_peek_bytes = 1000;
    let mut q = Quic::with(cfg, routes());
    assert_eq!(
        q.client(1, &first).verdict,
        Verdict::Dropped(DropReason::PeekMemory)
    );
}

#[test]
fn the_default_backend_takes_unknown_names_and_unreadable_hellos() {
    let default: std::net::Ipv6Addr = "2001:db8:2::9".parse().unwrap();
    let table = Arc::new(
        RouteTable::builder()
            .route(RouteSpec {
                hosts: vec!["a.example".into()],
                backends: vec![BackendSpec::new(backend_addr())],
                hash: HashOn::Address,
                ports: Default::default(),
            })
            .unwrap()
            .default_backend(default)
            .build(),
    );
    let mut q = Quic::with(config(), table);
    let c = Client::new(Version::V1);
    let out = q.client(1, &initial(&c, "b.example")).all();
    assert_eq!(out[0].dst, std::net::IpAddr::from(default));
    assert_eq!(out[0].dport, 443);
    // Reserved bits set: a server closes the connection; the default backend judges.
    let mut bad = c.clone();
    bad.reserved = 0x0c;
    let out = q.client(2, &initial(&bad, "a.example")).all();
    assert_eq!(out[0].dst, std::net::IpAddr::from(default));
    let s = q.engine.stats();
    assert_eq!(s.peeks(Protocol::Quic, PeekPath::DefaultUnnamed), 1);
    assert_eq!(s.peeks(Protocol::Quic, PeekPath::DefaultUnparsable), 1);
}

#[test]
fn an_unreadable_hello_without_default_gets_decode_error() {
    let mut q = Quic::new();
    let mut bad = Client::new(Version::V1);
    bad.reserved = 0x0c;
    let step = q.client(1, &initial(&bad, "a.example"));
    assert!(step.forwarded.is_none());
    assert_eq!(step.sent.len(), 1);
    let mut want = [0u8; 128];
    let n = crate::quic::refuse::connection_close(
        Version::V1,
        &bad.dcid,
        &bad.scid,
        &bad.dcid,
        crate::quic::refuse::CRYPTO_ERROR_DECODE_ERROR,
        &mut want,
    )
    .unwrap();
    assert_eq!(super::Dgram::parse(&step.sent[0]).payload, want[..n]);
    assert_eq!(q.engine.stats().quic_outcomes(Outcome::Unparsable), 1);
}

#[test]
fn a_snapshot_carries_routed_quic_flows_with_their_connection_ids() {
    let mut q = Quic::new();
    let c = Client::new(Version::V1);
    answered(&mut q, &c);
    // A pending flow is not carried: its client's retransmission starts it again.
    q.client(CPORT + 50, &two_initials(&c, "a.example")[0]);
    let bytes = q.engine.snapshot(q.now);
    let later = Time::from_millis(5);
    let restored = Engine::restore(config(), routes(), &bytes, later).unwrap();
    assert_eq!(restored.quic_flow_count(), 1);
    assert_eq!(restored.quic_learned_cids(), 1);
    assert_eq!(restored.stats().quic_packets, q.engine.stats().quic_packets);
    assert_eq!(restored.peek_bytes(), 0);
    let mut r = Quic {
        engine: restored,
        now: later,
        out: Default::default(),
    };
    // Both ways, and a rebinding client, work on in the new process.
    assert_eq!(
        r.client(CPORT, &short(&SERVER_CID))
            .forwarded
            .unwrap()
            .dport,
        8443
    );
    assert_eq!(
        r.backend(CPORT, &short(&c.scid)).forwarded.unwrap().dport,
        CPORT
    );
    assert!(r.client(CPORT + 9, &short(&SERVER_CID)).forwarded.is_some());
    // The idle deadline runs on from the snapshot's clock.
    r.advance(Duration::from_secs(181));
    assert_eq!(r.engine.quic_flow_count(), 0);
    let _ = prefix();
}

#[test]
fn shutdown_logs_every_quic_flow() {
    let mut q = Quic::new();
    let c = Client::new(Version::V1);
    answered(&mut q, &c);
    q.events();
    assert_eq!(q.engine.close_flows(q.now, 100), 0);
    assert!(matches!(
        &q.events()[..],
        [Event::Closed {
            protocol: Protocol::Quic,
            outcome: Outcome::Shutdown,
            bytes_to_backend: 1200,
            bytes_to_client: 59,
            ..
        }]
    ));
}

#[test]
fn a_reload_without_the_quic_port_forgets_its_flows() {
    let mut q = Quic::new();
    let c = Client::new(Version::V1);
    answered(&mut q, &c);
    let mut cfg = config();
    cfg.services[0].quic.clear();
    q.engine.reconfigure(cfg).unwrap();
    q.advance(Duration::from_millis(1));
    assert_eq!(q.engine.quic_flow_count(), 0);
    assert_eq!(q.engine.quic_learned_cids(), 0);
    assert_eq!(q.engine.stats().quic_outcomes(Outcome::ServiceRemoved), 1);
    let step = q.client(CPORT, &short(&SERVER_CID));
    assert_eq!(step.verdict, Verdict::Dropped(DropReason::ClientNotService));
}

#[test]
fn under_pressure_a_stalled_pending_flow_is_cut_and_a_prompt_one_is_not() {
    let mut cfg = config();
    cfg.max_peek_bytes = 4000;
    let mut q = Quic::with(cfg, routes());
    let c = Client::new(Version::V1);
    let [first, second] = two_initials(&c, "a.example");
    q.client(1, &first);
    assert!(
        q.engine.under_pressure(),
        "{} bytes held",
        q.engine.peek_bytes()
    );
    q.advance(Duration::from_millis(900));
    assert_eq!(q.engine.quic_flow_count(), 1, "not stale yet at this sweep");
    q.advance(Duration::from_millis(400));
    assert_eq!(q.engine.quic_flow_count(), 0);
    assert_eq!(q.engine.stats().quic_outcomes(Outcome::Limited), 1);
    assert_eq!(q.engine.peek_bytes(), 0);
    // A client that completes its hello is routed, pressure or not.
    q.client(2, &first);
    assert_eq!(q.client(2, &second).sent.len(), 2);
}

#[test]
fn a_client_that_moved_to_another_id_before_its_nat_rebinds_is_still_recognised() {
    let mut q = Quic::new();
    let c = Client::new(Version::V1);
    answered(&mut q, &c);
    // The backend gave the client another ID in an encrypted frame; the client uses it
    // on the path Kracauer knows. A damaged datagram teaches nothing.
    let next = [0xbb, 9, 8, 7, 6, 5, 4, 3];
    let mut bad = super::client_dgram(
        crate::engine::tests::CLIENT,
        CPORT,
        443,
        &short(&next),
        false,
    );
    let last = bad.len() - 1;
    bad[last] ^= 0x55;
    // Forwarded as it is (the backend drops it), but not read for an ID.
    let verdict =
        q.engine
            .handle_packet(q.now, &mut bad, crate::engine::tests::HEADROOM, &mut q.out);
    assert!(matches!(verdict, Verdict::Forward(_)));
    assert_eq!(q.engine.quic_learned_cids(), 1);
    assert!(q.client(CPORT, &short(&next)).forwarded.is_some());
    assert_eq!(q.engine.quic_learned_cids(), 2);
    assert_eq!(q.engine.stats().quic_cids_from_clients, 1);
    // Then its NAT moves it: recognised by the new ID.
    let moved = q.client(CPORT + 5, &short(&next));
    assert_eq!(moved.forwarded.unwrap().dport, 8443);
    assert_eq!(q.engine.stats().quic_rebinds, 1);
}

#[test]
fn a_client_rebound_onto_another_worker_reaches_the_same_backend() {
    // Two workers' engines share their limits, as the daemon's do; the kernel's steering
    // may hand the client's new 4-tuple to the other one.
    let shared = Arc::new(crate::engine::SharedLimits::new([3, 4]));
    let worker = |seed: u8| {
        let mut cfg = config();
        cfg.seed = [seed; 32];
        cfg.shared_limits = Some(Arc::clone(&shared));
        Quic::with(cfg, routes())
    };
    let (mut a, mut b) = (worker(1), worker(2));
    let c = Client::new(Version::V1);
    answered(&mut a, &c);
    let step = b.client(CPORT + 1, &short(&SERVER_CID));
    let d = step.forwarded.expect("the other worker makes the mapping");
    assert_eq!(d.dst, std::net::IpAddr::from(backend_addr()));
    assert_eq!((d.sport, d.dport), (CPORT + 1, 8443));
    assert_eq!(b.engine.stats().quic_rebinds, 1);
    // The backend's answer on the new path is steered to that worker, which has it.
    assert_eq!(
        b.backend(CPORT + 1, &short(&c.scid))
            .forwarded
            .unwrap()
            .dport,
        CPORT + 1
    );
    // The first worker's old mapping ends; the ID stays with the newer one.
    a.advance(Duration::from_secs(181));
    assert_eq!(a.engine.quic_flow_count(), 0);
    assert!(b.client(CPORT + 2, &short(&SERVER_CID)).forwarded.is_some());
}
