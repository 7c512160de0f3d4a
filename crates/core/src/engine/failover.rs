//! The backend attempts of a connection (DESIGN.md, "The TCP splice", steps 3 and 4):
//! the first backend of the client's order indexed and sent the SYN, and when an attempt
//! fails (a RST or an ICMPv6 error for the SYN, or silence past `connect_attempt`), the
//! same SYN to the next one, the flow's backend-side index moved with it. Every failed
//! attempt is reported as an [`Event::BackendFailed`] for the daemon's passive health.
//! A late answer from a backend given up on finds no flow under its tuple and gets a RST
//! (`backend.rs`).

use std::net::SocketAddrV6;

use super::Engine;
use crate::base::{BackendKey, ClientKey, DropReason, Outcome};
use crate::engine::event::{ConnectFailure, Event};
use crate::engine::output::Output;
use crate::flow::connect::SynTimers;
use crate::flow::table::{FlowId, TableError};
use crate::flow::{Flow, Phase};
use crate::name::HostName;
use crate::route::Candidates;
use crate::time::Time;

/// Where a named flow is to connect: its route's backends in the client's order (never
/// empty) and the backend port.
#[derive(Debug, Clone)]
pub(super) struct Target {
    pub candidates: Candidates,
    pub port: u16,
}

impl Engine {
    /// The SYN timers of a backend attempt.
    fn syn_timers(&self) -> SynTimers {
        SynTimers {
            rto: self.config.syn_retransmit,
            attempt: self.config.connect_attempt,
        }
    }

    /// Moves a peeking flow to `Connect` towards the first backend of `target` whose
    /// tuple is free, and sends it the SYN. With every tuple taken (the client's address
    /// and port already talk to each of them) the client gets a RST.
    pub(super) fn connect(
        &mut self,
        now: Time,
        id: FlowId,
        key: ClientKey,
        name: Option<HostName>,
        target: Target,
        out: &mut Output,
    ) {
        let mut first = None;
        for (i, c) in target.candidates.iter().enumerate() {
            let bk = BackendKey {
                backend: c.address,
                backend_port: target.port,
                client: key.client,
                client_port: key.client_port,
            };
            match self.flows.index_backend(id, bk) {
                Ok(()) => {
                    first = Some(i);
                    break;
                }
                Err(TableError::BackendTupleTaken) => continue,
                Err(_) => break,
            }
        }
        let Some(first) = first else {
            self.stats.drop(DropReason::TupleCollision);
            self.reset_client(id, out);
            self.finish(now, id, Outcome::Limited);
            return;
        };
        let timers = self.syn_timers();
        let plan = (target.candidates, first);
        self.step(id, |flow| {
            let phase = match flow.phase {
                Phase::Peek(p) => Phase::Connect(Box::new(p.connect(name, now, plan, timers))),
                other => other,
            };
            (Flow { phase, ..flow }, ())
        });
        self.send_backend_syn(id, out);
        self.rearm(id);
    }

    /// The current attempt of connecting flow `id` failed for `cause`: it is reported,
    /// and the SYN goes to the next backend in the client's order; with none left, the
    /// client gets a RST and the flow ends.
    pub(super) fn attempt_failed(
        &mut self,
        now: Time,
        id: FlowId,
        cause: ConnectFailure,
        out: &mut Output,
    ) {
        self.report_failure(id, cause);
        if self.fail_over(now, id, out) {
            return;
        }
        let outcome = match cause {
            ConnectFailure::Timeout => Outcome::ConnectTimeout,
            ConnectFailure::Refused | ConnectFailure::Unreachable => Outcome::BackendRefused,
        };
        self.reset_client(id, out);
        self.finish(now, id, outcome);
    }

    /// Sends flow `id`'s SYN to the next backend whose tuple is free; whether there was
    /// one.
    fn fail_over(&mut self, now: Time, id: FlowId, out: &mut Output) -> bool {
        let Some((_, Some(old))) = self.flows.keys(id) else {
            return false;
        };
        let Some(Phase::Connect(c)) = self.flows.get(id).map(|f| &f.phase) else {
            return false;
        };
        let next: Candidates = c.fail_over().map(|(_, c)| c).collect();
        let skipped = c.attempt + 1;
        for (i, candidate) in next.iter().enumerate() {
            let bk = BackendKey {
                backend: candidate.address,
                ..old
            };
            match self.flows.reindex_backend(id, bk) {
                Ok(()) => {}
                Err(TableError::BackendTupleTaken) => continue,
                Err(_) => return false,
            }
            let timers = self.syn_timers();
            if let Some(Phase::Connect(c)) = self.flows.get_mut(id).map(|f| &mut f.phase) {
                c.begin(skipped + i, now, timers);
            }
            self.stats.failovers += 1;
            self.send_backend_syn(id, out);
            self.rearm(id);
            return true;
        }
        false
    }

    /// Queues the health report of flow `id`'s current attempt having failed for
    /// `cause`. A backend that left the route table since (a reload) is not reported.
    pub(super) fn report_failure(&mut self, id: FlowId, cause: ConnectFailure) {
        let (Some((_, Some(bk))), Some(flow)) = (self.flows.keys(id), self.flows.get(id)) else {
            return;
        };
        let Phase::Connect(c) = &flow.phase else {
            return;
        };
        let Some(current) = c.current() else {
            return;
        };
        let route = self.routes.all_routes().find(|r| {
            r.pool()
                .backends()
                .iter()
                .any(|b| b.slot() == current.slot && b.address() == bk.backend)
        });
        let Some(route) = route else {
            return;
        };
        let event = Event::BackendFailed {
            route: route.label().into(),
            backend: SocketAddrV6::new(bk.backend, bk.backend_port, 0, 0),
            cause,
        };
        self.push_event(event);
    }
}
