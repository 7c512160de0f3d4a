//! Packets and an engine for the engine benchmark and the flow-memory example.
#![allow(clippy::unwrap_used)] // benchmark set-up: a failure is a bug in the bench itself

use std::net::{Ipv4Addr, Ipv6Addr};
use std::sync::Arc;

use kracauer_core::addr::Prefix96;
use kracauer_core::engine::{Engine, EngineConfig, Output, Service, Verdict};
use kracauer_core::route::{BackendSpec, HashOn, RouteSpec, RouteTable};
use kracauer_core::tcp::emit::Segment;
use kracauer_core::time::Time;
use kracauer_core::wire::build::TcpOptionsSpec;
use kracauer_core::wire::tcp::{SeqNumber, flags};

pub const HEADROOM: usize = 20;
pub const CLIENT: Ipv4Addr = Ipv4Addr::new(198, 51, 100, 2);
pub const SERVICE: Ipv4Addr = Ipv4Addr::new(203, 0, 113, 10);
pub const REQUEST: &[u8] = b"GET / HTTP/1.1\r\nHost: a.example\r\n\r\n";
pub const C_ISN: u32 = 1_000;
pub const B_ISN: u32 = 900_000;

pub fn prefix() -> Prefix96 {
    "2001:db8:64::/96".parse().unwrap()
}

pub fn backend() -> Ipv6Addr {
    "2001:db8:1::2".parse().unwrap()
}

pub fn engine(max_flows: usize) -> Engine {
    let mut config = EngineConfig::new(
        prefix(),
        vec![Service {
            address: SERVICE,
            tls: vec![443],
            http: vec![80],
            quic: vec![],
        }],
        [9; 32],
    );
    config.max_flows = max_flows;
    config.max_half_open = max_flows;
    config.max_peeking_per_client = u32::MAX;
    let routes = RouteTable::builder()
        .route(RouteSpec {
            hosts: vec!["a.example".into()],
            backends: vec![BackendSpec::new(backend())],
            hash: HashOn::Address,
            ports: Default::default(),
        })
        .unwrap()
        .build();
    Engine::new(config, Arc::new(routes)).unwrap()
}

pub fn ts(v: u32, e: u32) -> TcpOptionsSpec<'static> {
    TcpOptionsSpec {
        timestamps: Some((v, e)),
        ..TcpOptionsSpec::default()
    }
}

/// A client segment as it arrives from the TUN (with headroom).
pub fn client_packet(
    client: Ipv4Addr,
    cport: u16,
    flags: u8,
    seq: u32,
    ack: u32,
    options: TcpOptionsSpec<'static>,
    payload: &[u8],
) -> Vec<u8> {
    let seg = Segment {
        src_port: cport,
        dst_port: 80,
        seq: SeqNumber(seq),
        ack: SeqNumber(ack),
        flags,
        window: 502,
        options,
        payload,
    };
    let mut buf = vec![0u8; HEADROOM + seg.v4_len()];
    seg.emit_v4(client, SERVICE, 1, &mut buf[HEADROOM..])
        .unwrap();
    buf
}

/// A backend segment as it arrives from the TUN (with headroom).
pub fn backend_packet(
    client: Ipv4Addr,
    cport: u16,
    flags: u8,
    seq: u32,
    ack: u32,
    options: TcpOptionsSpec<'static>,
    payload: &[u8],
) -> Vec<u8> {
    let seg = Segment {
        src_port: 80,
        dst_port: cport,
        seq: SeqNumber(seq),
        ack: SeqNumber(ack),
        flags,
        window: 1000,
        options,
        payload,
    };
    let mut buf = vec![0u8; HEADROOM + seg.v6_len()];
    seg.emit_v6(&backend(), &prefix().embed(client), &mut buf[HEADROOM..])
        .unwrap();
    buf
}

/// Opens one spliced HTTP flow from `client`:`cport`; returns Kracauer's ISN towards the
/// client.
pub fn open_flow(
    engine: &mut Engine,
    out: &mut Output,
    now: Time,
    client: Ipv4Addr,
    cport: u16,
) -> u32 {
    let syn = TcpOptionsSpec {
        mss: Some(1460),
        window_scale: Some(7),
        sack_permitted: true,
        timestamps: Some((1, 0)),
        sack_blocks: &[],
    };
    out.clear();
    let mut p = client_packet(client, cport, flags::SYN, C_ISN, 0, syn, &[]);
    engine.handle_packet(now, &mut p, HEADROOM, out);
    let synack = out.packets().next().expect("SYN-ACK");
    let k_isn = u32::from_be_bytes([synack[24], synack[25], synack[26], synack[27]]);
    out.clear();
    let mut p = client_packet(
        client,
        cport,
        flags::ACK | flags::PSH,
        C_ISN + 1,
        k_isn + 1,
        ts(2, 0),
        REQUEST,
    );
    engine.handle_packet(now, &mut p, HEADROOM, out);
    out.clear();
    let synack_opts = TcpOptionsSpec {
        mss: Some(1440),
        window_scale: Some(7),
        sack_permitted: true,
        timestamps: Some((50, 2)),
        sack_blocks: &[],
    };
    let mut p = backend_packet(
        client,
        cport,
        flags::SYN | flags::ACK,
        B_ISN,
        C_ISN + 1,
        synack_opts,
        &[],
    );
    assert_eq!(
        engine.handle_packet(now, &mut p, HEADROOM, out),
        Verdict::Consumed
    );
    k_isn
}
