//! What a scenario chooses ([`Setup`]): the two ends' options and behaviour, the link
//! faults, and the engine's configuration and routes.

use std::collections::BTreeMap;
use std::sync::Arc;

use kracauer_core::addr::Prefix96;
use kracauer_core::engine::{EngineConfig, Service};
use kracauer_core::route::{BackendSpec, HashOn, RouteSpec, RouteTable};

use super::link::Faults;
use super::probe::Strip;
use super::world::{BACKEND, HTTP_REQUEST, SERVICE};

/// Everything a scenario chooses.
#[derive(Debug, Clone)]
pub struct Setup {
    pub seed: u64,
    /// Service port the client connects to (80: HTTP, 443: TLS).
    pub service_port: u16,
    /// Port the backend listens on (80, or 8443 for 443).
    pub backend_port: u16,
    /// Whether the backend has a listening socket (without one smoltcp answers RST).
    pub backend_listens: bool,
    /// The client's first bytes (request head or ClientHello), then its payload size.
    pub head: Vec<u8>,
    pub client_payload: usize,
    pub backend_payload: usize,
    /// The client stops sending after this many bytes and never closes.
    pub client_stall_at: Option<usize>,
    /// The client closes only after the other side's FIN (a TLS client waits for the
    /// server), instead of as soon as it has sent everything.
    pub client_waits_for_fin: bool,
    /// Both ends close only once everything they sent is acknowledged, so the FIN goes
    /// alone. smoltcp 0.14 cannot finish a close otherwise on a lossy link: a
    /// receiver that already has a segment's data ignores the FIN on its
    /// retransmission (its window test counts only the payload), and the sender, once
    /// the data is acknowledged, does not go on to retransmit the FIN alone.
    pub close_when_acked: bool,
    pub client_timestamps: bool,
    pub backend_timestamps: bool,
    /// The client holds short segments while data is unacknowledged (RFC 896).
    pub client_classic_nagle: bool,
    /// Options the client does not offer (stripped from its SYN before the engine).
    pub client_strip: Strip,
    /// Options the backend declines (stripped from the SYN before the backend).
    pub backend_strip: Strip,
    /// The client reads at most this much every 10 ms (a slow reader).
    pub client_read_chunk: Option<usize>,
    /// The client / the backend aborts (RST) once it has received this many bytes.
    pub client_abort_after: Option<u64>,
    pub backend_abort_after: Option<u64>,
    /// Socket buffer sizes (above 64 KiB smoltcp scales its window).
    pub client_buffer: usize,
    pub backend_buffer: usize,
    /// Faults of the links: client→engine, engine→client, engine→backend, backend→engine.
    pub faults: [Faults; 4],
    /// The client is told this MSS (the engine's SYN-ACK is clamped on its way).
    pub client_mss: Option<u16>,
    /// The client is offered this MSS by the backend (its SYN-ACK is clamped on its way).
    pub backend_mss: Option<u16>,
    /// A router on the way answers every packet for the backend with ICMPv6 "address
    /// unreachable".
    pub backend_unreachable: bool,
    /// A router on the way to the client has this MTU: larger packets with DF are
    /// answered with ICMPv4 "fragmentation needed".
    pub client_path_mtu: Option<u16>,
    /// A router on the way to the backend has this MTU: larger packets are answered with
    /// ICMPv6 "packet too big".
    pub backend_path_mtu: Option<u16>,
    /// The engine→backend link drops everything.
    pub backend_black_hole: bool,
    /// The client→engine link loses the first data segment.
    pub lose_first_data: bool,
    /// The client→engine link holds the first data segment back until the next one.
    pub reverse_first_data: bool,
    /// The engine→backend link loses the first data segment (the handover's first).
    pub lose_first_handover: bool,
    pub engine: EngineConfig,
    /// Client connections opened at once (from consecutive ports).
    pub connections: u16,
}

impl Setup {
    pub fn http(seed: u64) -> Self {
        Self {
            seed,
            service_port: 80,
            backend_port: 80,
            backend_listens: true,
            head: HTTP_REQUEST.to_vec(),
            client_payload: 20_000,
            backend_payload: 100_000,
            client_stall_at: None,
            client_waits_for_fin: false,
            close_when_acked: false,
            client_timestamps: true,
            backend_timestamps: true,
            client_classic_nagle: false,
            client_strip: Strip::default(),
            backend_strip: Strip::default(),
            client_read_chunk: None,
            client_abort_after: None,
            backend_abort_after: None,
            client_buffer: 256 * 1024,
            backend_buffer: 256 * 1024,
            faults: [Faults::CLEAN; 4],
            client_mss: None,
            backend_mss: None,
            backend_unreachable: false,
            backend_path_mtu: None,
            client_path_mtu: None,
            backend_black_hole: false,
            lose_first_data: false,
            reverse_first_data: false,
            lose_first_handover: false,
            engine: engine_config(),
            connections: 1,
        }
    }

    pub fn tls(seed: u64, hello: &[u8]) -> Self {
        Self {
            service_port: 443,
            backend_port: 8443,
            head: hello.to_vec(),
            ..Self::http(seed)
        }
    }

    /// The same faults on every link (and closes that wait for acknowledgements, see
    /// `close_when_acked`).
    pub fn all_faults(mut self, f: Faults) -> Self {
        self.faults = [f; 4];
        self.close_when_acked = true;
        self
    }
}

pub fn engine_config() -> EngineConfig {
    EngineConfig::new(
        "2001:db8:64::/96".parse::<Prefix96>().expect("prefix"),
        vec![Service {
            address: SERVICE,
            tls: vec![443],
            http: vec![80],
            quic: vec![],
        }],
        [7; 32],
    )
}

pub fn routes() -> Arc<RouteTable> {
    let mut ports = BTreeMap::new();
    ports.insert(443, 8443);
    Arc::new(
        RouteTable::builder()
            .route(RouteSpec {
                hosts: vec!["a.example".into(), "*.a.example".into()],
                backends: vec![BackendSpec::new(BACKEND)],
                hash: HashOn::Address,
                ports,
            })
            .expect("route")
            .build(),
    )
}
