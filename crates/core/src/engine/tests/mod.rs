//! State-by-state engine tests with hand-made packets.
//!
//! `Harness` plays both peers by hand: `client(..)` builds an IPv4 segment from the client
//! to the service and hands it to the engine; `backend(..)` builds an IPv6 segment from
//! the backend to the client's embedded address. What the engine sends is parsed back into
//! [`Sent`] records, so tests read as the conversation they check.

mod adopt;
mod custody;
mod failover;
mod fastpath;
mod handshake;
mod hostile;
mod icmp;
mod offload;
mod prefixes;
mod pressure;
mod reconfigure;
mod rfc5961;
mod secondchance;
mod services;
mod snapshot;
mod splice;
mod udp;
mod unnamed;

use std::net::{Ipv4Addr, Ipv6Addr};
use std::sync::Arc;

use super::*;
use crate::addr::Prefix96;
use crate::route::{BackendSpec, HashOn, RouteSpec, RouteTable};
use crate::tcp::emit::Segment;
use crate::tcp::seg::SegInfo;
use crate::wire::build::TcpOptionsSpec;
use crate::wire::tcp::{SeqNumber, TcpPacket, flags};
use crate::wire::{Ipv4Packet, Ipv6Packet};

pub const CLIENT: Ipv4Addr = Ipv4Addr::new(198, 51, 100, 2);
pub const SERVICE: Ipv4Addr = Ipv4Addr::new(203, 0, 113, 10);
pub const CPORT: u16 = 51000;
pub const C_ISN: u32 = 1_000_000;
pub const B_ISN: u32 = 7_000_000;
pub const HEADROOM: usize = 20;

pub fn backend_addr() -> Ipv6Addr {
    "2001:db8:1::2".parse().unwrap()
}

pub fn prefix() -> Prefix96 {
    "2001:db8:64::/96".parse().unwrap()
}

pub fn client6() -> Ipv6Addr {
    prefix().embed(CLIENT)
}

pub fn routes() -> Arc<RouteTable> {
    let mut ports = std::collections::BTreeMap::new();
    ports.insert(443, 8443);
    Arc::new(
        RouteTable::builder()
            .route(RouteSpec {
                hosts: vec!["a.example".into(), "*.a.example".into()],
                backends: vec![BackendSpec::new(backend_addr())],
                hash: HashOn::Address,
                ports,
            })
            .unwrap()
            .build(),
    )
}

pub fn config() -> EngineConfig {
    EngineConfig::new(
        prefix(),
        vec![Service {
            address: SERVICE,
            tls: vec![443],
            http: vec![80],
            quic: vec![443],
        }],
        [7; 32],
    )
}

/// Options a Linux client sends in its SYN.
pub fn linux_syn_options() -> TcpOptionsSpec<'static> {
    TcpOptionsSpec {
        mss: Some(1460),
        window_scale: Some(7),
        sack_permitted: true,
        timestamps: Some((100, 0)),
        sack_blocks: &[],
    }
}

/// Options a Linux backend answers a SYN with (window scale 9, unlike the client's 7).
pub fn backend_linux() -> TcpOptionsSpec<'static> {
    TcpOptionsSpec {
        mss: Some(1440),
        window_scale: Some(9),
        sack_permitted: true,
        timestamps: Some((5_000, 101)),
        sack_blocks: &[],
    }
}

/// Only a timestamps option.
pub fn ts(tsval: u32, tsecr: u32) -> TcpOptionsSpec<'static> {
    TcpOptionsSpec {
        timestamps: Some((tsval, tsecr)),
        ..Default::default()
    }
}

/// A segment the engine sent, parsed.
#[derive(Debug, Clone)]
pub struct Sent {
    pub v6: bool,
    pub src: std::net::IpAddr,
    pub dst: std::net::IpAddr,
    pub seg: SegInfo,
    pub payload: Vec<u8>,
}

impl Sent {
    pub fn parse(bytes: &[u8]) -> Sent {
        if bytes[0] >> 4 == 4 {
            let ip = Ipv4Packet::new_checked(bytes).expect("valid IPv4");
            assert!(ip.verify_checksum(), "IPv4 header checksum");
            let tcp = TcpPacket::new_checked(ip.payload()).expect("valid TCP");
            assert!(
                tcp.verify_checksum_v4(ip.src_addr(), ip.dst_addr()),
                "TCP checksum (v4)"
            );
            Sent {
                v6: false,
                src: ip.src_addr().into(),
                dst: ip.dst_addr().into(),
                seg: SegInfo::parse(&tcp).unwrap(),
                payload: tcp.payload().to_vec(),
            }
        } else {
            let ip = Ipv6Packet::new_checked(bytes).expect("valid IPv6");
            let tcp = TcpPacket::new_checked(ip.payload()).expect("valid TCP");
            assert!(
                tcp.verify_checksum_v6(&ip.src_addr(), &ip.dst_addr()),
                "TCP checksum (v6)"
            );
            Sent {
                v6: true,
                src: ip.src_addr().into(),
                dst: ip.dst_addr().into(),
                seg: SegInfo::parse(&tcp).unwrap(),
                payload: tcp.payload().to_vec(),
            }
        }
    }

    pub fn flags(&self) -> u8 {
        self.seg.flags
    }
}

pub struct Harness {
    pub engine: Engine,
    pub now: Time,
    /// Window field of the backend's segments.
    pub backend_window: u16,
    out: Output,
}

/// What one packet did: the verdict, the forwarded packet (parsed) and what was sent.
#[derive(Debug)]
pub struct Step {
    pub verdict: Verdict,
    pub forwarded: Option<Sent>,
    pub sent: Vec<Sent>,
}

impl Step {
    pub fn only_sent(&self) -> &Sent {
        assert_eq!(
            self.sent.len(),
            1,
            "expected one packet, got {:?}",
            self.sent
        );
        &self.sent[0]
    }
}

impl Harness {
    pub fn new() -> Self {
        Self::with(config())
    }

    pub fn with(config: EngineConfig) -> Self {
        Self::with_routes(config, routes())
    }

    pub fn with_routes(config: EngineConfig, routes: Arc<RouteTable>) -> Self {
        Self {
            engine: Engine::new(config, routes).unwrap(),
            now: Time::from_millis(1_000_000),
            backend_window: 1000,
            out: Output::default(),
        }
    }

    fn run(&mut self, buf: Vec<u8>) -> Step {
        self.run_with(buf, RxChecksum::Unchecked).0
    }

    /// Hands `buf` (headroom, then the packet) to the engine as a device that says
    /// `checksum` of it; returns the step and the buffer as the engine left it.
    pub fn run_with(&mut self, mut buf: Vec<u8>, checksum: RxChecksum) -> (Step, Vec<u8>) {
        self.out.clear();
        let verdict =
            self.engine
                .handle_packet_with(self.now, &mut buf, HEADROOM, checksum, &mut self.out);
        // A partial checksum stays partial: such a packet is left for the test to read.
        let forwarded = match &verdict {
            Verdict::Forward(r) if checksum != RxChecksum::Partial => {
                Some(Sent::parse(&buf[r.clone()]))
            }
            _ => None,
        };
        let sent = self.out.packets().map(Sent::parse).collect();
        let step = Step {
            verdict,
            forwarded,
            sent,
        };
        (step, buf)
    }

    /// The client sends a segment to `port` of the service address.
    pub fn client_to(
        &mut self,
        port: u16,
        flags: u8,
        seq: u32,
        ack: u32,
        options: TcpOptionsSpec<'static>,
        payload: &[u8],
    ) -> Step {
        let seg = Segment {
            src_port: CPORT,
            dst_port: port,
            seq: SeqNumber(seq),
            ack: SeqNumber(ack),
            flags,
            window: 502,
            options,
            payload,
        };
        self.run(client_packet(&seg))
    }

    /// The backend (port 80 or 8443) sends a segment to the client's embedded address.
    pub fn backend_from(
        &mut self,
        port: u16,
        flags: u8,
        seq: u32,
        ack: u32,
        options: TcpOptionsSpec<'static>,
        payload: &[u8],
    ) -> Step {
        self.backend_at(backend_addr(), port, (flags, seq, ack), options, payload)
    }

    /// Backend `addr` sends a segment from `port` to the client's embedded address.
    pub fn backend_at(
        &mut self,
        addr: Ipv6Addr,
        port: u16,
        (flags, seq, ack): (u8, u32, u32),
        options: TcpOptionsSpec<'static>,
        payload: &[u8],
    ) -> Step {
        let seg = Segment {
            src_port: port,
            dst_port: CPORT,
            seq: SeqNumber(seq),
            ack: SeqNumber(ack),
            flags,
            window: self.backend_window,
            options,
            payload,
        };
        let mut buf = vec![0u8; HEADROOM + seg.v6_len()];
        seg.emit_v6(&addr, &client6(), &mut buf[HEADROOM..])
            .unwrap();
        self.run(buf)
    }

    pub fn advance(&mut self, d: core::time::Duration) -> Vec<Sent> {
        self.now = self.now + d;
        self.out.clear();
        self.engine.handle_timeout(self.now, &mut self.out);
        self.out.packets().map(Sent::parse).collect()
    }

    /// SYN from a Linux-like client to `port`; returns the SYN-ACK.
    pub fn syn(&mut self, port: u16) -> Sent {
        let step = self.client_to(port, flags::SYN, C_ISN, 0, linux_syn_options(), &[]);
        assert_eq!(step.verdict, Verdict::Consumed);
        step.only_sent().clone()
    }

    /// Handshake plus `request` in one segment after the ACK; returns what the engine
    /// sent after the request (the backend SYN, or a refusal).
    pub fn open(&mut self, port: u16, request: &[u8]) -> (Sent, Step) {
        let synack = self.syn(port);
        let k = synack.seg.seq.0;
        let ts = Some((101, synack.seg.options.timestamps.unwrap().0));
        let ack = self.client_to(
            port,
            flags::ACK,
            C_ISN + 1,
            k + 1,
            TcpOptionsSpec {
                timestamps: ts,
                ..Default::default()
            },
            &[],
        );
        assert!(ack.sent.is_empty(), "{:?}", ack.sent);
        let step = self.client_to(
            port,
            flags::ACK | flags::PSH,
            C_ISN + 1,
            k + 1,
            TcpOptionsSpec {
                timestamps: ts,
                ..Default::default()
            },
            request,
        );
        (synack, step)
    }

    /// A spliced flow through HTTP: handshake, request, backend SYN-ACK with
    /// `backend_options`. Returns (SYN-ACK to the client, what was sent to the backend).
    pub fn spliced_http(&mut self, backend_options: TcpOptionsSpec<'static>) -> (Sent, Vec<Sent>) {
        let (synack, step) = self.open(80, HTTP_REQUEST);
        let syn = step.only_sent();
        assert!(syn.v6 && syn.seg.syn());
        let step = self.backend_from(
            80,
            flags::SYN | flags::ACK,
            B_ISN,
            C_ISN + 1,
            backend_options,
            &[],
        );
        assert_eq!(step.verdict, Verdict::Consumed);
        (synack, step.sent)
    }
}

/// `seg` from the client to the service, after `HEADROOM` zero bytes.
pub fn client_packet(seg: &Segment<'_>) -> Vec<u8> {
    let mut buf = vec![0u8; HEADROOM + seg.v4_len()];
    seg.emit_v4(CLIENT, SERVICE, 1, &mut buf[HEADROOM..])
        .unwrap();
    buf
}

/// `seg` from the backend to the client's embedded address, after `HEADROOM` zero bytes.
pub fn backend_packet(seg: &Segment<'_>) -> Vec<u8> {
    let mut buf = vec![0u8; HEADROOM + seg.v6_len()];
    seg.emit_v6(&backend_addr(), &client6(), &mut buf[HEADROOM..])
        .unwrap();
    buf
}

pub const HTTP_REQUEST: &[u8] = b"GET / HTTP/1.1\r\nHost: a.example\r\nUser-Agent: test\r\n\r\n";

/// A minimal TLS 1.3-shaped ClientHello with `sni`, in one record.
pub fn client_hello(sni: &str) -> Vec<u8> {
    let name = sni.as_bytes();
    let mut ext = Vec::new();
    let list_len = (name.len() + 3) as u16;
    ext.extend_from_slice(&[0, 0]);
    ext.extend_from_slice(&(list_len + 2).to_be_bytes());
    ext.extend_from_slice(&list_len.to_be_bytes());
    ext.push(0);
    ext.extend_from_slice(&(name.len() as u16).to_be_bytes());
    ext.extend_from_slice(name);
    let mut body = vec![3, 3];
    body.extend_from_slice(&[0x11; 32]);
    body.push(0);
    body.extend_from_slice(&[0, 2, 0x13, 0x01, 1, 0]);
    body.extend_from_slice(&(ext.len() as u16).to_be_bytes());
    body.extend_from_slice(&ext);
    let mut hs = vec![1, 0];
    hs.extend_from_slice(&(body.len() as u16).to_be_bytes());
    hs.extend_from_slice(&body);
    let mut rec = vec![0x16, 3, 1];
    rec.extend_from_slice(&(hs.len() as u16).to_be_bytes());
    rec.extend_from_slice(&hs);
    rec
}
