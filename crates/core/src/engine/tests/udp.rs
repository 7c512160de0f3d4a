//! QUIC flows through the engine, with hand-made datagrams (`engine/udp*.rs`): the
//! harness here; routing by the Initial's SNI, the pending phase, the refusal, stateless
//! translation both ways, timeouts, Version Negotiation and Retry and ICMP in `forward`;
//! rebinding, limits, the default route, reloads and the snapshot in `rebind`.

use core::time::Duration;
use std::net::{Ipv4Addr, Ipv6Addr};

use super::{CLIENT, HEADROOM, SERVICE, backend_addr, config, prefix, routes};
use crate::base::RxChecksum;
use crate::engine::{Engine, EngineConfig, Event, Output, Verdict};
use crate::quic::tests::util::{Client, client_hello, crypto, fragments};
use crate::route::RouteTable;
use crate::time::Time;
use crate::wire::{Ipv4Packet, Ipv6Packet, UdpPacket, ip_proto};

mod forward;
mod rebind;

pub const CPORT: u16 = 40_000;

/// A datagram as the engine wrote it, parsed and its checksums checked.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Dgram {
    pub src: std::net::IpAddr,
    pub dst: std::net::IpAddr,
    pub sport: u16,
    pub dport: u16,
    pub payload: Vec<u8>,
}

impl Dgram {
    pub fn parse(bytes: &[u8]) -> Dgram {
        if bytes[0] >> 4 == 4 {
            let ip = Ipv4Packet::new_checked(bytes).expect("IPv4");
            assert!(ip.verify_checksum(), "IPv4 header checksum");
            assert_eq!(ip.protocol(), ip_proto::UDP);
            let udp = UdpPacket::new_checked(ip.payload()).expect("UDP");
            assert!(
                udp.verify_checksum_v4(ip.src_addr(), ip.dst_addr()),
                "UDP checksum (v4)"
            );
            Dgram {
                src: ip.src_addr().into(),
                dst: ip.dst_addr().into(),
                sport: udp.src_port(),
                dport: udp.dst_port(),
                payload: udp.payload().to_vec(),
            }
        } else {
            let ip = Ipv6Packet::new_checked(bytes).expect("IPv6");
            assert_eq!(ip.next_header(), ip_proto::UDP);
            let udp = UdpPacket::new_checked(ip.payload()).expect("UDP");
            assert!(udp.checksum() != 0, "IPv6 UDP needs a checksum");
            assert!(
                udp.verify_checksum_v6(&ip.src_addr(), &ip.dst_addr()),
                "UDP checksum (v6)"
            );
            Dgram {
                src: ip.src_addr().into(),
                dst: ip.dst_addr().into(),
                sport: udp.src_port(),
                dport: udp.dst_port(),
                payload: udp.payload().to_vec(),
            }
        }
    }
}

/// What one datagram did.
#[derive(Debug)]
pub struct Step {
    pub verdict: Verdict,
    /// The datagram itself, translated in place.
    pub forwarded: Option<Dgram>,
    /// What the engine made (held datagrams sent on, refusals, ICMP as raw bytes).
    pub sent: Vec<Vec<u8>>,
}

impl Step {
    /// Every datagram that went anywhere, in the order it goes to the TUN (what the
    /// engine made, then the datagram itself).
    pub fn all(&self) -> Vec<Dgram> {
        let mut v: Vec<Dgram> = self.sent.iter().map(|b| Dgram::parse(b)).collect();
        v.extend(self.forwarded.clone());
        v
    }
}

pub struct Quic {
    pub engine: Engine,
    pub now: Time,
    out: Output,
}

/// The client's IPv4 UDP datagram from `sport` to the service's `dport`, checksum
/// filled (or 0), after the headroom.
pub fn client_dgram(
    src: Ipv4Addr,
    sport: u16,
    dport: u16,
    payload: &[u8],
    zero_sum: bool,
) -> Vec<u8> {
    let total = 28 + payload.len();
    let mut buf = vec![0u8; HEADROOM + total];
    let b = &mut buf[HEADROOM..];
    {
        let mut ip = Ipv4Packet::new_unchecked(&mut b[..20]);
        ip.set_version(4);
        ip.set_header_len(20);
        ip.set_total_len(total as u16);
        ip.set_ident(7);
        ip.set_flags_and_offset(0);
        ip.set_dont_frag(true);
        ip.set_ttl(61);
        ip.set_protocol(ip_proto::UDP);
        ip.set_src_addr(src);
        ip.set_dst_addr(SERVICE);
        ip.fill_checksum();
    }
    b[28..].copy_from_slice(payload);
    let mut udp = UdpPacket::new_unchecked(&mut b[20..]);
    udp.set_src_port(sport);
    udp.set_dst_port(dport);
    udp.set_len((8 + payload.len()) as u16);
    if zero_sum {
        udp.set_checksum(0);
    } else {
        udp.fill_checksum_v4(src, SERVICE);
    }
    buf
}

/// A backend's IPv6 UDP datagram from `backend:sport` to the client's embedded
/// address and `dport`, after the headroom.
pub fn backend_dgram(
    backend: Ipv6Addr,
    sport: u16,
    client: Ipv4Addr,
    dport: u16,
    payload: &[u8],
) -> Vec<u8> {
    let len = 8 + payload.len();
    let mut buf = vec![0u8; HEADROOM + 40 + len];
    let b = &mut buf[HEADROOM..];
    let dst = prefix().embed(client);
    {
        let mut ip = Ipv6Packet::new_unchecked(&mut b[..40]);
        ip.set_version(6);
        ip.set_payload_len(len as u16);
        ip.set_next_header(ip_proto::UDP);
        ip.set_hop_limit(64);
        ip.set_src_addr(&backend);
        ip.set_dst_addr(&dst);
    }
    b[48..].copy_from_slice(payload);
    let mut udp = UdpPacket::new_unchecked(&mut b[40..]);
    udp.set_src_port(sport);
    udp.set_dst_port(dport);
    udp.set_len(len as u16);
    udp.fill_checksum_v6(&backend, &dst);
    buf
}

impl Quic {
    pub fn new() -> Self {
        Self::with(config(), routes())
    }

    pub fn with(config: EngineConfig, routes: std::sync::Arc<RouteTable>) -> Self {
        Self {
            engine: Engine::new(config, routes).unwrap(),
            now: Time::from_millis(1_000_000),
            out: Output::default(),
        }
    }

    pub fn run(&mut self, mut buf: Vec<u8>, checksum: RxChecksum) -> (Step, Vec<u8>) {
        self.out.clear();
        let verdict =
            self.engine
                .handle_packet_with(self.now, &mut buf, HEADROOM, checksum, &mut self.out);
        let forwarded = match &verdict {
            Verdict::Forward(r) if checksum != RxChecksum::Partial => {
                Some(Dgram::parse(&buf[r.clone()]))
            }
            _ => None,
        };
        let sent = self.out.packets().map(<[u8]>::to_vec).collect();
        (
            Step {
                verdict,
                forwarded,
                sent,
            },
            buf,
        )
    }

    /// The client sends `payload` from `sport` to UDP 443.
    pub fn client(&mut self, sport: u16, payload: &[u8]) -> Step {
        self.run(
            client_dgram(CLIENT, sport, 443, payload, false),
            RxChecksum::Unchecked,
        )
        .0
    }

    /// The backend (port 8443) sends `payload` to the client's `dport`.
    pub fn backend(&mut self, dport: u16, payload: &[u8]) -> Step {
        let buf = backend_dgram(backend_addr(), 8443, CLIENT, dport, payload);
        self.run(buf, RxChecksum::Unchecked).0
    }

    pub fn advance(&mut self, d: Duration) -> Vec<Vec<u8>> {
        self.now = self.now + d;
        self.out.clear();
        self.engine.handle_timeout(self.now, &mut self.out);
        self.out.packets().map(<[u8]>::to_vec).collect()
    }

    pub fn events(&mut self) -> Vec<Event> {
        core::iter::from_fn(|| self.engine.poll_event()).collect()
    }
}

/// One 1200-byte Initial whose hello names `name`.
pub fn initial(c: &Client, name: &str) -> Vec<u8> {
    c.initial(0, &crypto(0, &client_hello(name, 0)), 1200)
}

/// Two 1200-byte Initials carrying one hello (a post-quantum key share's size).
pub fn two_initials(c: &Client, name: &str) -> [Vec<u8>; 2] {
    let hello = client_hello(name, 1300);
    let f = fragments(&hello, &[900]);
    [c.initial(0, &f[0], 1200), c.initial(1, &f[1], 1200)]
}

/// The backend's Handshake packet (QUIC v1) choosing `scid`, addressed to `dcid`.
pub fn backend_handshake(dcid: &[u8], scid: &[u8]) -> Vec<u8> {
    let mut p = vec![0xe0];
    p.extend_from_slice(&1u32.to_be_bytes());
    p.push(dcid.len() as u8);
    p.extend_from_slice(dcid);
    p.push(scid.len() as u8);
    p.extend_from_slice(scid);
    p.extend_from_slice(&[0x40, 40]);
    p.extend_from_slice(&[0x77; 40]);
    p
}

/// A short-header packet to `dcid`.
pub fn short(dcid: &[u8]) -> Vec<u8> {
    let mut p = vec![0x41];
    p.extend_from_slice(dcid);
    p.extend_from_slice(&[0x99; 60]);
    p
}

pub fn v4(a: Ipv4Addr) -> std::net::IpAddr {
    a.into()
}
