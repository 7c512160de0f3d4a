//! Property tests: a random IPv4 TCP or UDP packet translated to IPv6 and back is the
//! same packet, apart from what RFC 7915 and this translator change on purpose: the TTL
//! (decremented twice under `HopLimit::Decrement`), DF (set iff above 1260 bytes), the
//! Identification (supplied by the caller: here the original one), options (dropped)
//! and the header checksum that follows from those. Both checksum forms are covered; the
//! IPv6 packet in between is checked with `etherparse`.

use std::net::{Ipv4Addr, Ipv6Addr};

use etherparse::{IpNumber, Ipv4Header, NetHeaders, PacketHeaders, TransportHeader};
use kracauer_core::xlat::{
    ChecksumForm, HEADROOM, HopLimit, Options, V4Rewrite, V6Rewrite, ipv4_to_ipv6, ipv6_to_ipv4,
};
use proptest::prelude::*;

#[derive(Debug, Clone)]
struct V4Packet {
    tcp: bool,
    src: Ipv4Addr,
    dst: Ipv4Addr,
    src_port: u16,
    dst_port: u16,
    ttl: u8,
    tos: u8,
    ident: u16,
    df: bool,
    seq: u32,
    payload: Vec<u8>,
}

fn v4_packet() -> impl Strategy<Value = V4Packet> {
    let payload = prop_oneof![
        8 => proptest::collection::vec(any::<u8>(), 0..1500),
        1 => proptest::collection::vec(any::<u8>(), 1500..9000),
    ];
    (
        any::<bool>(),
        any::<[u8; 4]>(),
        any::<[u8; 4]>(),
        any::<u16>(),
        any::<u16>(),
        3u8..=255,
        any::<u8>(),
        any::<u16>(),
        any::<bool>(),
        any::<u32>(),
        payload,
    )
        .prop_map(
            |(tcp, src, dst, src_port, dst_port, ttl, tos, ident, df, seq, payload)| V4Packet {
                tcp,
                src: src.into(),
                dst: dst.into(),
                src_port,
                dst_port,
                ttl,
                tos,
                ident,
                df,
                seq,
                payload,
            },
        )
}

/// Serialises `p` with `etherparse` (correct checksums).
fn build(p: &V4Packet, df: bool, ttl: u8) -> Vec<u8> {
    let proto = if p.tcp { IpNumber::TCP } else { IpNumber::UDP };
    let l4_len = p.payload.len() + if p.tcp { 20 } else { 8 };
    let mut ip = Ipv4Header::new(l4_len as u16, ttl, proto, p.src.octets(), p.dst.octets())
        .expect("payload fits");
    ip.dscp = etherparse::IpDscp::try_new(p.tos >> 2).expect("6 bits");
    ip.ecn = etherparse::IpEcn::try_new(p.tos & 3).expect("2 bits");
    ip.identification = p.ident;
    ip.dont_fragment = df;
    let builder =
        etherparse::PacketBuilder::ip(etherparse::IpHeaders::Ipv4(ip, Default::default()));
    let mut out = Vec::new();
    if p.tcp {
        builder
            .tcp(p.src_port, p.dst_port, p.seq, 1000)
            .ack(p.seq ^ 0x5555)
            .write(&mut out, &p.payload)
            .expect("build");
    } else {
        builder
            .udp(p.src_port, p.dst_port)
            .write(&mut out, &p.payload)
            .expect("build");
    }
    out
}

fn fold(mut s: u32) -> u16 {
    while s >> 16 != 0 {
        s = (s & 0xffff) + (s >> 16);
    }
    s as u16
}

fn words(b: &[u8]) -> u32 {
    b.chunks(2)
        .map(|w| u32::from(u16::from_be_bytes([w[0], *w.get(1).unwrap_or(&0)])))
        .sum()
}

/// Replaces the transport checksum of an IPv4 packet by its partial form.
fn make_partial(packet: &mut [u8]) {
    let at = 20 + if packet[9] == 6 { 16 } else { 6 };
    let sum = words(&packet[12..20]) + u32::from(packet[9]) + (packet.len() - 20) as u32;
    packet[at..at + 2].copy_from_slice(&fold(sum).to_be_bytes());
}

fn v6_rewrite(seed: u16) -> V6Rewrite {
    V6Rewrite {
        src: Ipv6Addr::new(0x2001, 0xdb8, 0x64, 0, 0, 0, 0xc633, seed),
        dst: Ipv6Addr::new(0x2001, 0xdb8, 1, 0, 0, 0, seed, 2),
        src_port: seed,
        dst_port: seed.wrapping_mul(7),
    }
}

fn back(p: &V4Packet) -> V4Rewrite {
    V4Rewrite {
        src: p.src,
        dst: p.dst,
        src_port: p.src_port,
        dst_port: p.dst_port,
        identification: p.ident,
    }
}

/// Checks the IPv6 packet in between with etherparse (full form only).
fn check_v6(bytes: &[u8], p: &V4Packet, to: &V6Rewrite) -> Result<(), TestCaseError> {
    let h = PacketHeaders::from_ip_slice(bytes).expect("etherparse parses the IPv6 packet");
    let Some(NetHeaders::Ipv6(ip, _)) = &h.net else {
        return Err(TestCaseError::fail("not IPv6"));
    };
    prop_assert_eq!(Ipv6Addr::from(ip.source), to.src);
    prop_assert_eq!(Ipv6Addr::from(ip.destination), to.dst);
    prop_assert_eq!(ip.traffic_class, p.tos);
    prop_assert_eq!(h.payload.slice(), &p.payload[..]);
    match &h.transport {
        Some(TransportHeader::Tcp(t)) => {
            prop_assert_eq!(
                (t.source_port, t.destination_port),
                (to.src_port, to.dst_port)
            );
            prop_assert_eq!(
                t.checksum,
                t.calc_checksum_ipv6(ip, &p.payload).expect("fits")
            );
        }
        Some(TransportHeader::Udp(u)) => {
            prop_assert_eq!(
                (u.source_port, u.destination_port),
                (to.src_port, to.dst_port)
            );
            prop_assert_eq!(
                u.checksum,
                u.calc_checksum_ipv6(ip, &p.payload).expect("fits")
            );
        }
        other => return Err(TestCaseError::fail(format!("transport {other:?}"))),
    }
    Ok(())
}

fn round_trip(
    p: &V4Packet,
    form: ChecksumForm,
    hop_limit: HopLimit,
    seed: u16,
) -> Result<(), TestCaseError> {
    let mut original = build(p, p.df, p.ttl);
    if form == ChecksumForm::Partial {
        make_partial(&mut original);
    }
    let mut buf = vec![0u8; HEADROOM];
    buf.extend_from_slice(&original);
    let opts = Options {
        checksum: form,
        hop_limit,
    };
    let to = v6_rewrite(seed);
    let r6 = ipv4_to_ipv6(&mut buf, HEADROOM, &to, opts).expect("v4 -> v6");
    prop_assert_eq!(r6.len(), original.len() + 20);
    if form == ChecksumForm::Full {
        check_v6(&buf[r6.clone()], p, &to)?;
    } else {
        // The partial field must be the IPv6 pseudo-header sum.
        let v6 = &buf[r6.clone()];
        let at = 40 + if p.tcp { 16 } else { 6 };
        let sum = words(&v6[8..40]) + u32::from(v6[6]) + (v6.len() - 40) as u32;
        prop_assert_eq!(u16::from_be_bytes([v6[at], v6[at + 1]]), fold(sum));
    }
    let r4 = ipv6_to_ipv4(&mut buf, r6.start, &back(p), opts).expect("v6 -> v4");
    prop_assert_eq!(r4.clone(), HEADROOM..buf.len());

    let ttl = match hop_limit {
        HopLimit::Decrement => p.ttl - 2,
        HopLimit::Keep => p.ttl,
    };
    let mut expected = build(p, original.len() > 1260, ttl);
    if form == ChecksumForm::Partial {
        make_partial(&mut expected);
    }
    prop_assert_eq!(&buf[r4], &expected[..]);
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    #[test]
    fn full_checksum_packet_survives_a_round_trip(p in v4_packet(), seed in any::<u16>()) {
        round_trip(&p, ChecksumForm::Full, HopLimit::Decrement, seed)?;
    }

    #[test]
    fn partial_checksum_packet_survives_a_round_trip(p in v4_packet(), seed in any::<u16>()) {
        round_trip(&p, ChecksumForm::Partial, HopLimit::Keep, seed)?;
    }

    #[test]
    fn udp_without_checksum_comes_back_with_a_valid_one(
        payload in proptest::collection::vec(any::<u8>(), 0..2000),
        seed in any::<u16>(),
    ) {
        let p = V4Packet {
            tcp: false,
            src: Ipv4Addr::new(198, 51, 100, 2),
            dst: Ipv4Addr::new(203, 0, 113, 10),
            src_port: 40000,
            dst_port: 443,
            ttl: 64,
            tos: 0,
            ident: 1,
            df: false,
            seq: 0,
            payload,
        };
        let mut original = build(&p, false, 64);
        original[26..28].fill(0);
        let mut buf = vec![0u8; HEADROOM];
        buf.extend_from_slice(&original);
        let to = v6_rewrite(seed);
        let r6 = ipv4_to_ipv6(&mut buf, HEADROOM, &to, Options::default()).expect("v4 -> v6");
        check_v6(&buf[r6.clone()], &p, &to)?;
        let r4 = ipv6_to_ipv4(&mut buf, r6.start, &back(&p), Options::default()).expect("v6 -> v4");
        let expected = build(&p, original.len() > 1260, 62);
        prop_assert_eq!(&buf[r4], &expected[..]);
    }
}
