//! QUIC over UDP, the route of a pending flow once its Initials are read
//! (docs/architecture.md, "QUIC"): the decision (the name's route, the default, or a
//! refusal), the move to `Forwarding` with the held datagrams sent on in order, the
//! CONNECTION_CLOSE for a refused name, and the new mapping of a rebinding client.

use core::time::Duration;
use std::net::{Ipv6Addr, SocketAddrV4, SocketAddrV6};

use super::{Engine, Verdict};
use crate::base::{BackendKey, ClientKey, DropReason, Outcome, PeekPath, Protocol, RxChecksum};
use crate::engine::event::Event;
use crate::engine::output::Output;
use crate::engine::stats::Direction;
use crate::engine::udp_cids::CidRoute;
use crate::flow::Usage;
use crate::flow::table::FlowId;
use crate::flow::udp::{Forwarding, UdpFlow, UdpPhase};
use crate::name::HostName;
use crate::quic::refuse::{self, CRYPTO_ERROR_DECODE_ERROR, CRYPTO_ERROR_UNRECOGNIZED_NAME};
use crate::quic::{ConnectionId, QuicPeek};
use crate::time::Time;

/// What a finished peek leads to.
enum Decision {
    /// The route's backend (the first of the client's order) and port.
    Forward {
        backend: Ipv6Addr,
        port: u16,
        path: PeekPath,
    },
    /// An Initial with CONNECTION_CLOSE carrying `error`, to the client's IDs.
    Refuse { error: u64, outcome: Outcome },
    /// Nothing to answer with (the connection IDs could not be read): forgotten.
    Forget,
}

impl Engine {
    /// What a final peek answer leads to.
    fn decide(&mut self, key: &ClientKey, answer: &QuicPeek) -> Decision {
        let routes = self.routes.clone();
        let (route, path) = match answer {
            QuicPeek::Found(found) => match routes.lookup_or_default(found.sni.as_ref()) {
                Some(r) if r.is_default() => (r, PeekPath::DefaultUnnamed),
                Some(r) => (r, PeekPath::Named),
                None => {
                    return Decision::Refuse {
                        error: CRYPTO_ERROR_UNRECOGNIZED_NAME,
                        outcome: Outcome::UnknownName,
                    };
                }
            },
            _ => match routes.default_route() {
                Some(r) => (r, PeekPath::DefaultUnparsable),
                None => {
                    return Decision::Refuse {
                        error: CRYPTO_ERROR_DECODE_ERROR,
                        outcome: Outcome::Unparsable,
                    };
                }
            },
        };
        match route.pool().candidates(key, &self.health).first() {
            Some(c) => Decision::Forward {
                backend: c.address,
                port: route.backend_port(key.service_port),
                path,
            },
            None => {
                // A route whose backends are all down refuses as if there were none.
                self.stats.no_backend += 1;
                Decision::Refuse {
                    error: CRYPTO_ERROR_UNRECOGNIZED_NAME,
                    outcome: Outcome::UnknownName,
                }
            }
        }
    }

    /// A pending flow's peek gave its final answer: route it, sending what it held in
    /// order, or refuse it (no backend contacted), or forget it.
    pub(super) fn peek_done(
        &mut self,
        now: Time,
        id: FlowId,
        key: ClientKey,
        answer: QuicPeek,
        out: &mut Output,
    ) {
        let mut decision = self.decide(&key, &answer);
        let name = match &answer {
            QuicPeek::Found(f) => f.sni.clone(),
            _ => None,
        };
        let client = match self.udp.flows.get(id).map(|f| &f.phase) {
            Some(UdpPhase::Pending(p)) => {
                p.peek.client().map(|(v, d, s)| (v, d.clone(), s.clone()))
            }
            _ => None,
        };
        if matches!(decision, Decision::Refuse { .. }) && client.is_none() {
            decision = Decision::Forget;
        }
        match decision {
            Decision::Forward {
                backend,
                port,
                path,
            } => self.quic_forward(now, id, key, name, (backend, port), path, out),
            Decision::Refuse { error, outcome } => {
                if let Some((version, dcid, scid)) = client {
                    let src = SocketAddrV4::new(key.service, key.service_port);
                    let dst = SocketAddrV4::new(key.client, key.client_port);
                    self.emit_udp_v4(src, dst, refuse::MAX_REFUSAL_LEN, out, |b| {
                        let (d, s) = (dcid.as_bytes(), scid.as_bytes());
                        refuse::connection_close(version, d, s, d, error, b).map_err(|_| ())
                    });
                }
                self.set_pending_name(id, name);
                self.stats.peek_path(Protocol::Quic, PeekPath::Refused);
                self.udp_finish(now, id, outcome, Some(PeekPath::Refused));
            }
            Decision::Forget => {
                self.stats.peek_path(Protocol::Quic, PeekPath::Reset);
                self.udp_finish(now, id, Outcome::NotRecognised, Some(PeekPath::Reset));
            }
        }
    }

    /// Routes pending flow `id` to `backend`: indexes it, moves it to `Forwarding`, logs
    /// it opened, and sends the datagrams it held, in order.
    #[allow(clippy::too_many_arguments)]
    fn quic_forward(
        &mut self,
        now: Time,
        id: FlowId,
        key: ClientKey,
        name: Option<HostName>,
        (backend, backend_port): (Ipv6Addr, u16),
        path: PeekPath,
        out: &mut Output,
    ) {
        let bk = BackendKey {
            backend,
            backend_port,
            client: key.client,
            client_port: key.client_port,
        };
        if self.udp.flows.index_backend(id, bk).is_err() {
            self.stats.drop(DropReason::TupleCollision);
            self.udp_finish(now, id, Outcome::Limited, None);
            return;
        }
        let before = self
            .udp
            .flows
            .get(id)
            .map_or(Usage::default(), UdpFlow::usage);
        let named = name.clone();
        let Some(Some(pending)) = self.udp.flows.step(id, move |flow| match flow.phase {
            UdpPhase::Pending(p) => {
                let next = UdpPhase::Forwarding(Forwarding::new(named));
                (
                    UdpFlow {
                        phase: next,
                        ..flow
                    },
                    Some(p),
                )
            }
            other => (
                UdpFlow {
                    phase: other,
                    ..flow
                },
                None,
            ),
        }) else {
            return;
        };
        self.account(key.client, before, Usage::default());
        self.stats.peek_path(Protocol::Quic, path);
        self.stats.quic_opened += 1;
        let (created, prefix) = self
            .udp
            .flows
            .get(id)
            .map_or((now, self.config.prefix), |f| (f.created, f.prefix));
        self.push_event(Event::Opened {
            protocol: Protocol::Quic,
            client: SocketAddrV4::new(key.client, key.client_port),
            service: SocketAddrV4::new(key.service, key.service_port),
            name,
            backend: SocketAddrV6::new(backend, backend_port, 0, 0),
            peek_time: now.saturating_since(created),
            connect_time: Duration::ZERO,
        });
        let src = prefix.embed(key.client);
        let mut sent = 0u64;
        for d in pending.datagrams() {
            if self.emit_udp_v6(&src, &backend, (key.client_port, backend_port), d, out) {
                self.stats.forwarded_quic(Direction::ToBackend, d.len());
                sent += d.len() as u64;
            }
        }
        if let Some(f) = self.udp.flows.get_mut(id).and_then(UdpFlow::forwarding_mut) {
            f.bytes[0] += sent;
        }
        self.udp_rearm(id);
    }

    /// Keeps the name a refused pending flow asked for, for its log line.
    fn set_pending_name(&mut self, id: FlowId, name: Option<HostName>) {
        if let Some(flow) = self.udp.flows.get_mut(id) {
            if let UdpPhase::Pending(p) = &mut flow.phase {
                p.name = name;
            }
        }
    }

    /// A packet on a new 4-tuple whose Destination Connection ID a backend chose
    /// (`found`: the ID and where it leads, from the index every worker shares): the
    /// client moved (NAT rebinding). A new mapping to the same backend forwards it, in
    /// this worker whichever worker holds the old one; the backend validates the new path
    /// itself.
    #[allow(clippy::too_many_arguments)]
    pub(super) fn rebind(
        &mut self,
        now: Time,
        key: ClientKey,
        found: Option<(ConnectionId, CidRoute)>,
        buf: &mut [u8],
        start: usize,
        total: usize,
        checksum: RxChecksum,
    ) -> Verdict {
        let Some((cid, route)) = found else {
            return Verdict::Dropped(DropReason::ClientQuicNoFlow);
        };
        if route.service != (key.service, key.service_port) {
            return Verdict::Dropped(DropReason::ClientQuicNoFlow);
        }
        let mut next = Forwarding::new(route.name.clone());
        next.rebound = true;
        // The old mapping's other IDs, when it is this engine's.
        let (tag, old) = route.owner;
        if let Some(fw) = (tag == self.udp.tag)
            .then(|| self.udp.flows.get(old).and_then(UdpFlow::forwarding))
            .flatten()
        {
            next.cids = fw.cids.clone();
        }
        if !next.knows(cid.as_bytes()) {
            next.learn(cid.as_bytes());
        }
        let (cids, name) = (next.cids.clone(), next.name.clone());
        if self.udp.flows.len() >= self.udp.flows.capacity() {
            return Verdict::Dropped(DropReason::FlowTableFull);
        }
        let flow = UdpFlow::new(now, self.config.prefix, UdpPhase::Forwarding(next));
        let Some(id) = self.udp_insert(key, flow) else {
            return Verdict::Dropped(DropReason::FlowTableFull);
        };
        let bk = BackendKey {
            backend: route.backend.0,
            backend_port: route.backend.1,
            client: key.client,
            client_port: key.client_port,
        };
        if self.udp.flows.index_backend(id, bk).is_err() {
            self.udp_finish(now, id, Outcome::Limited, None);
            return Verdict::Dropped(DropReason::TupleCollision);
        }
        for cid in &cids {
            self.index_cid(cid, id);
        }
        self.stats.quic_rebinds += 1;
        self.push_event(Event::Opened {
            protocol: Protocol::Quic,
            client: SocketAddrV4::new(key.client, key.client_port),
            service: SocketAddrV4::new(key.service, key.service_port),
            name,
            backend: SocketAddrV6::new(bk.backend, bk.backend_port, 0, 0),
            peek_time: Duration::ZERO,
            connect_time: Duration::ZERO,
        });
        if let Some(f) = self.udp.flows.get_mut(id).and_then(UdpFlow::forwarding_mut) {
            f.bytes[0] += total.saturating_sub(28) as u64;
        }
        self.udp_to_backend(Some(id), &key, buf, start, total, checksum)
    }
}
