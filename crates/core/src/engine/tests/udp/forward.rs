//! QUIC flows: routing by the Initial's SNI, the pending phase, the refusal, stateless
//! translation both ways, timeouts, Version Negotiation and Retry, and ICMP.

use core::time::Duration;
use std::net::Ipv6Addr;

use super::{
    CPORT, Dgram, Quic, backend_handshake, client_dgram, initial, short, two_initials, v4,
};
use crate::base::{PeekPath, RxChecksum};
use crate::engine::tests::{CLIENT, HEADROOM, SERVICE, backend_addr, client6, config, routes};
use crate::engine::{DropReason, Event, Outcome, Protocol, Verdict};
use crate::quic::Version;
use crate::quic::tests::util::{Client, client_hello, crypto};
use crate::wire::{Ipv4Packet, Ipv6Packet, UdpPacket, ip_proto};

#[test]
fn an_initial_naming_a_route_goes_to_its_backend_from_the_embedded_client_and_its_port() {
    let mut q = Quic::new();
    let c = Client::new(Version::V1);
    let dgram = initial(&c, "a.example");
    let step = q.client(CPORT, &dgram);
    assert_eq!(step.verdict, Verdict::Consumed);
    let out = step.all();
    assert_eq!(out.len(), 1);
    // The route's `ports` remap (443 → 8443) applies to QUIC as to TLS.
    assert_eq!(out[0].src, std::net::IpAddr::from(client6()));
    assert_eq!(out[0].dst, std::net::IpAddr::from(backend_addr()));
    assert_eq!((out[0].sport, out[0].dport), (CPORT, 8443));
    assert_eq!(out[0].payload, dgram);
    assert_eq!(q.engine.quic_flow_count(), 1);
    assert_eq!(q.engine.stats().peeks(Protocol::Quic, PeekPath::Named), 1);
    let opened = q.events();
    assert!(matches!(
        &opened[..],
        [Event::Opened { protocol: Protocol::Quic, name: Some(n), .. }] if n.as_str() == "a.example"
    ));
}

#[test]
fn a_hello_over_two_initials_is_held_then_both_go_out_in_order() {
    let mut q = Quic::new();
    let c = Client::new(Version::V1);
    let [first, second] = two_initials(&c, "www.a.example");
    let step = q.client(CPORT, &first);
    assert_eq!(step.verdict, Verdict::Consumed);
    assert!(step.all().is_empty(), "nothing goes out before the name");
    assert!(
        q.engine.peek_bytes() >= 1200,
        "the held datagram counts as peek memory"
    );
    let step = q.client(CPORT, &second);
    let out = step.all();
    assert_eq!(out.len(), 2);
    assert_eq!(out[0].payload, first);
    assert_eq!(out[1].payload, second);
    assert!(out.iter().all(|d| d.dport == 8443 && d.sport == CPORT));
    assert_eq!(q.engine.peek_bytes(), 0, "the pending bytes are given back");
    // Later datagrams are translated in place.
    let step = q.client(CPORT, &short(&[1; 8]));
    assert!(matches!(step.verdict, Verdict::Forward(_)));
    assert_eq!(step.forwarded.unwrap().dport, 8443);
}

#[test]
fn the_second_initial_first_is_held_and_the_order_of_arrival_is_kept() {
    let mut q = Quic::new();
    let c = Client::new(Version::V2);
    let [first, second] = two_initials(&c, "a.example");
    assert!(q.client(CPORT, &second).all().is_empty());
    let out = q.client(CPORT, &first).all();
    assert_eq!(
        out.iter().map(|d| &d.payload).collect::<Vec<_>>(),
        [&second, &first]
    );
}

#[test]
fn an_unknown_name_without_default_gets_connection_close_and_no_backend_sees_a_packet() {
    let mut q = Quic::new();
    let c = Client::new(Version::V1);
    for dgrams in [
        vec![initial(&c, "nope.example")],
        two_initials(&c, "other.example").to_vec(),
    ] {
        let mut made = Vec::new();
        for d in &dgrams {
            let step = q.client(CPORT, d);
            assert!(step.forwarded.is_none());
            made.extend(step.sent);
        }
        assert_eq!(made.len(), 1, "exactly the refusal");
        let answer = Dgram::parse(&made[0]);
        assert_eq!((answer.src, answer.dst), (v4(SERVICE), v4(CLIENT)));
        assert_eq!((answer.sport, answer.dport), (443, CPORT));
        let mut want = [0u8; 128];
        let n =
            crate::quic::refuse::unrecognized_name(c.version, &c.dcid, &c.scid, &c.dcid, &mut want)
                .unwrap();
        assert_eq!(answer.payload, want[..n]);
        assert_eq!(q.engine.quic_flow_count(), 0);
    }
    assert_eq!(q.engine.stats().quic_opened, 0);
    assert_eq!(q.engine.stats().quic_outcomes(Outcome::UnknownName), 2);
    assert_eq!(q.engine.stats().peeks(Protocol::Quic, PeekPath::Refused), 2);
    let closed = q.events();
    assert!(closed.iter().all(|e| matches!(
        e,
        Event::Closed {
            protocol: Protocol::Quic,
            backend: None,
            outcome: Outcome::UnknownName,
            ..
        }
    )));
}

#[test]
fn backend_datagrams_go_back_to_the_client_from_the_service_address_and_port() {
    let mut q = Quic::new();
    let c = Client::new(Version::V1);
    q.client(CPORT, &initial(&c, "a.example"));
    let reply = backend_handshake(&c.scid, &[0xaa; 8]);
    let step = q.backend(CPORT, &reply);
    let back = step.forwarded.expect("forwarded");
    assert_eq!((back.src, back.dst), (v4(SERVICE), v4(CLIENT)));
    assert_eq!((back.sport, back.dport), (443, CPORT));
    assert_eq!(back.payload, reply);
    assert_eq!(q.engine.stats().quic_packets, [1, 1]);
    // Nothing for a 4-tuple without a flow.
    let stray = q.backend(CPORT + 1, &reply);
    assert_eq!(
        stray.verdict,
        Verdict::Dropped(DropReason::BackendUdpNoFlow)
    );
}

#[test]
fn a_zero_ipv4_udp_checksum_is_computed_for_ipv6() {
    let mut q = Quic::new();
    let c = Client::new(Version::V1);
    q.client(CPORT, &initial(&c, "a.example"));
    let buf = client_dgram(CLIENT, CPORT, 443, &short(&[3; 8]), true);
    let (step, _) = q.run(buf, RxChecksum::Unchecked);
    // Dgram::parse checks the IPv6 checksum is there and right.
    assert_eq!(step.forwarded.unwrap().payload, short(&[3; 8]));
}

#[test]
fn a_gso_super_packet_is_translated_whole_with_its_partial_checksum() {
    let mut q = Quic::new();
    let c = Client::new(Version::V1);
    q.client(CPORT, &initial(&c, "a.example"));
    // 10 segments' worth in one packet: far over the MTU, and left whole.
    let payload = vec![0x42u8; 12_000];
    let mut buf = client_dgram(CLIENT, CPORT, 443, &payload, false);
    // A partial checksum holds the pseudo-header sum only.
    let udp_at = HEADROOM + 20;
    let pseudo = crate::wire::checksum::pseudo_header_v4(
        CLIENT,
        SERVICE,
        ip_proto::UDP,
        (8 + payload.len()) as u16,
    );
    let partial = crate::wire::checksum::fold(pseudo);
    buf[udp_at + 6..udp_at + 8].copy_from_slice(&partial.to_be_bytes());
    let (step, out) = q.run(buf, RxChecksum::Partial);
    let Verdict::Forward(range) = step.verdict else {
        panic!("{:?}", step.verdict)
    };
    let ip = Ipv6Packet::new_checked(&out[range]).unwrap();
    assert_eq!(usize::from(ip.payload_len()), 8 + payload.len());
    let udp = UdpPacket::new_checked(ip.payload()).unwrap();
    let want = crate::wire::checksum::fold(crate::wire::checksum::pseudo_header_v6(
        &client6(),
        &backend_addr(),
        ip_proto::UDP,
        (8 + payload.len()) as u32,
    ));
    assert_eq!(udp.checksum(), want, "still the (new) pseudo-header sum");
    assert_eq!(udp.payload(), &payload[..]);
}

#[test]
fn a_datagram_too_large_for_the_ipv6_mtu_gets_fragmentation_needed() {
    let mut cfg = config();
    cfg.ipv6_mtu = 1280;
    let mut q = Quic::with(cfg, routes());
    let c = Client::new(Version::V1);
    // 1200 + 28 = 1228 bytes of IPv4 become 1248 of IPv6: they fit.
    q.client(CPORT, &initial(&c, "a.example"));
    let step = q.client(CPORT, &vec![0x40; 1233]);
    assert_eq!(step.verdict, Verdict::Dropped(DropReason::ClientTooBig));
    let icmp = &step.sent[0];
    let ip = Ipv4Packet::new_checked(&icmp[..]).unwrap();
    assert_eq!((ip.src_addr(), ip.dst_addr()), (SERVICE, CLIENT));
    let m = crate::wire::Icmpv4Packet::new_checked(ip.payload()).unwrap();
    assert!(m.verify_checksum());
    assert_eq!((m.msg_type(), m.code(), m.next_hop_mtu()), (3, 4, 1260));
    // The quoted header is the client's own datagram.
    let inner = Ipv4Packet::new_checked_header(m.payload()).unwrap();
    assert_eq!((inner.src_addr(), inner.dst_addr()), (CLIENT, SERVICE));
    // 1232 bytes of payload fit exactly (1260 of IPv4, 1280 of IPv6).
    assert!(matches!(
        q.client(CPORT, &vec![0x40; 1232]).verdict,
        Verdict::Forward(_)
    ));
}

#[test]
fn idle_flows_end_soon_before_the_backend_answers_and_after_two_minutes_once_it_has() {
    let mut q = Quic::new();
    let c = Client::new(Version::V1);
    q.client(CPORT, &initial(&c, "a.example"));
    q.advance(Duration::from_secs(29));
    assert_eq!(q.engine.quic_flow_count(), 1);
    q.advance(Duration::from_secs(2));
    assert_eq!(q.engine.quic_flow_count(), 0, "unanswered: 30 s");

    q.client(CPORT, &initial(&c, "a.example"));
    q.backend(CPORT, &backend_handshake(&c.scid, &[0xaa; 8]));
    q.advance(Duration::from_secs(179));
    assert_eq!(q.engine.quic_flow_count(), 1);
    q.client(CPORT, &short(&[0xaa; 8]));
    q.advance(Duration::from_secs(179));
    assert_eq!(
        q.engine.quic_flow_count(),
        1,
        "a datagram moves the deadline"
    );
    q.advance(Duration::from_secs(2));
    assert_eq!(q.engine.quic_flow_count(), 0);
    assert_eq!(q.engine.stats().quic_outcomes(Outcome::IdleTimeout), 2);
    assert!(q.engine.config().udp_idle_timeout >= Duration::from_secs(120));
}

#[test]
fn a_pending_flow_ends_at_the_peek_deadline_and_gives_its_memory_back() {
    let mut q = Quic::new();
    let c = Client::new(Version::V1);
    q.client(CPORT, &two_initials(&c, "a.example")[0]);
    assert!(q.engine.peek_bytes() > 0);
    q.advance(Duration::from_millis(4_900));
    assert_eq!(q.engine.quic_flow_count(), 1);
    q.advance(Duration::from_millis(200));
    assert_eq!(q.engine.quic_flow_count(), 0);
    assert_eq!(q.engine.peek_bytes(), 0);
    assert_eq!(q.engine.stats().quic_outcomes(Outcome::PeekTimeout), 1);
}

#[test]
fn garbage_and_packets_that_start_nothing_are_dropped_and_counted() {
    let mut q = Quic::new();
    let c = Client::new(Version::V1);
    let cases: Vec<(Vec<u8>, DropReason)> = vec![
        (vec![], DropReason::ClientQuicNoFlow),
        (b"hello".to_vec(), DropReason::ClientQuicNoFlow),
        (short(&[5; 8]), DropReason::ClientQuicNoFlow),
        (
            backend_handshake(&[1; 8], &[2; 8]),
            DropReason::ClientQuicNoFlow,
        ),
        (vec![0xc0, 0, 0, 0, 1, 30], DropReason::ClientQuicNoFlow),
        // An Initial under 1200 bytes, and one that does not authenticate.
        (
            c.initial(0, &crypto(0, &client_hello("a.example", 0)), 600),
            DropReason::ClientQuicDiscarded,
        ),
        (
            {
                let mut d = initial(&c, "a.example");
                d[700] ^= 1;
                d
            },
            DropReason::ClientQuicDiscarded,
        ),
    ];
    for (d, reason) in cases {
        let step = q.client(CPORT, &d);
        assert_eq!(step.verdict, Verdict::Dropped(reason), "{d:02x?}");
        assert!(step.sent.is_empty());
    }
    assert_eq!(q.engine.quic_flow_count(), 0);
    assert_eq!(q.engine.stats().drops(DropReason::ClientQuicNoFlow), 5);
    // A UDP port that is not QUIC, and a bad checksum.
    let buf = client_dgram(CLIENT, CPORT, 4433, &initial(&c, "a.example"), false);
    assert_eq!(
        q.run(buf, RxChecksum::Unchecked).0.verdict,
        Verdict::Dropped(DropReason::ClientNotService)
    );
    let mut buf = client_dgram(CLIENT, CPORT, 443, &initial(&c, "a.example"), false);
    buf[HEADROOM + 27] ^= 0xff;
    assert_eq!(
        q.run(buf, RxChecksum::Unchecked).0.verdict,
        Verdict::Dropped(DropReason::ClientBadChecksum)
    );
}

#[test]
fn an_unknown_version_gets_version_negotiation_and_no_state() {
    let mut q = Quic::new();
    let mut d = initial(&Client::new(Version::V1), "a.example");
    d[1..5].copy_from_slice(&0x1a2a_3a4au32.to_be_bytes());
    let step = q.client(CPORT, &d);
    assert_eq!(step.verdict, Verdict::Consumed);
    let vn = Dgram::parse(&step.sent[0]);
    assert_eq!((vn.sport, vn.dport), (443, CPORT));
    let h = crate::quic::header::LongHeader::new_checked(&vn.payload).unwrap();
    assert_eq!(h.kind(), crate::quic::PacketKind::VersionNegotiation);
    // Addressed to the client's SCID, from its DCID.
    assert_eq!(h.dcid(), &[0x5c, 0x1d]);
    assert_eq!(h.scid(), &[0xd0, 0xd1, 0xd2, 0xd3, 0xd4, 0xd5, 0xd6, 0xd7]);
    assert_eq!(h.supported_versions().collect::<Vec<_>>(), [1, 0x6b33_43cf]);
    assert_eq!(q.engine.quic_flow_count(), 0);
    assert_eq!(q.engine.stats().quic_version_negotiations, 1);
    // Too short to deserve an answer.
    d.truncate(300);
    assert_eq!(
        q.client(CPORT, &d).verdict,
        Verdict::Dropped(DropReason::ClientQuicDiscarded)
    );
}

#[test]
fn a_backend_retry_and_version_negotiation_pass_through_and_the_client_goes_on() {
    let mut q = Quic::new();
    let c = Client::new(Version::V1);
    q.client(CPORT, &initial(&c, "a.example"));
    // The backend's Retry (new SCID, a token, the tag) reaches the client unchanged.
    let mut retry = vec![0xf0];
    retry.extend_from_slice(&1u32.to_be_bytes());
    retry.push(2);
    retry.extend_from_slice(&c.scid);
    retry.push(8);
    retry.extend_from_slice(&[0xbb; 8]);
    retry.extend_from_slice(b"token-token");
    retry.extend_from_slice(&[0x11; 16]);
    assert_eq!(q.backend(CPORT, &retry).forwarded.unwrap().payload, retry);
    // The client's second Initial, to the new connection ID, takes the same flow.
    let mut again = c.clone();
    again.dcid = vec![0xbb; 8];
    let step = q.client(CPORT, &initial(&again, "a.example"));
    assert_eq!(step.forwarded.unwrap().dport, 8443);
    // Version Negotiation from the backend, too.
    let mut vn = vec![0x80, 0, 0, 0, 0, 2];
    vn.extend_from_slice(&c.scid);
    vn.push(8);
    vn.extend_from_slice(&c.dcid);
    vn.extend_from_slice(&1u32.to_be_bytes());
    assert_eq!(q.backend(CPORT, &vn).forwarded.unwrap().payload, vn);
    assert_eq!(q.engine.quic_flow_count(), 1);
}

#[test]
fn an_icmp_packet_too_big_about_a_quic_datagram_reaches_the_client() {
    let mut q = Quic::new();
    let c = Client::new(Version::V1);
    let step = q.client(CPORT, &initial(&c, "a.example"));
    let sent = step.sent.into_iter().next().unwrap();
    // The kernel's Packet Too Big about the datagram Kracauer sent (MTU 1280).
    let quoted = &sent[..sent.len().min(1232)];
    let mut icmp = vec![2, 0, 0, 0, 0, 0, 5, 0];
    icmp.extend_from_slice(quoted);
    let router: Ipv6Addr = "2001:db8:1::1".parse().unwrap();
    let len = icmp.len();
    let mut buf = vec![0u8; HEADROOM + 40 + len];
    {
        let mut ip = Ipv6Packet::new_unchecked(&mut buf[HEADROOM..HEADROOM + 40]);
        ip.set_version(6);
        ip.set_payload_len(len as u16);
        ip.set_next_header(ip_proto::ICMPV6);
        ip.set_hop_limit(64);
        ip.set_src_addr(&router);
        ip.set_dst_addr(&client6());
    }
    buf[HEADROOM + 40..].copy_from_slice(&icmp);
    let mut m = crate::wire::Icmpv6Packet::new_unchecked(&mut buf[HEADROOM + 40..]);
    m.fill_checksum(&router, &client6());
    let (step, _) = q.run(buf, RxChecksum::Unchecked);
    assert_eq!(step.verdict, Verdict::Consumed);
    let ip = Ipv4Packet::new_checked(&step.sent[0][..]).unwrap();
    assert_eq!((ip.src_addr(), ip.dst_addr()), (SERVICE, CLIENT));
    let m = crate::wire::Icmpv4Packet::new_checked(ip.payload()).unwrap();
    assert_eq!((m.msg_type(), m.code(), m.next_hop_mtu()), (3, 4, 1260));
    let inner = Ipv4Packet::new_checked_header(m.payload()).unwrap();
    assert_eq!((inner.src_addr(), inner.dst_addr()), (CLIENT, SERVICE));
    let ports = &m.payload()[20..24];
    assert_eq!(
        ports,
        [&CPORT.to_be_bytes()[..], &443u16.to_be_bytes()[..]].concat()
    );
}

#[test]
fn a_quic_flow_keeps_its_prefix_across_a_prefix_change_and_a_new_one_takes_the_new() {
    let mut q = Quic::new();
    let c = Client::new(Version::V1);
    q.client(CPORT, &initial(&c, "a.example"));
    let old = crate::engine::tests::prefix();
    let new: crate::addr::Prefix96 = "2001:db8:65::/96".parse().unwrap();
    let mut changed = config();
    changed.prefix = new;
    q.engine.reconfigure(changed).unwrap();
    assert_eq!(q.engine.retired_prefixes(), &[old]);
    // The running flow's datagrams still come from the old prefix, and the backend's
    // answers to it still reach the client.
    let up = q.client(CPORT, &short(&[3; 8]));
    assert_eq!(
        up.forwarded.expect("forwarded").src,
        std::net::IpAddr::from(client6())
    );
    let back = q.backend(CPORT, &backend_handshake(&c.scid, &[0xaa; 8]));
    assert_eq!(back.forwarded.expect("forwarded").dst, v4(CLIENT));
    // A new flow takes the new prefix.
    let c2 = Client::new(Version::V1);
    let out = q.client(CPORT + 1, &initial(&c2, "a.example")).all();
    assert_eq!(out[0].src, std::net::IpAddr::from(new.embed(CLIENT)));
    // Once the old flow has ended, the old prefix is forgotten.
    q.advance(Duration::from_secs(600));
    assert_eq!(q.engine.quic_flow_count(), 0);
    q.advance(Duration::from_secs(1));
    assert!(q.engine.retired_prefixes().is_empty());
}
