//! Carrying out what a flow being set up decided about a client segment
//! ([`SetupStep`]): the SYN-ACK again, a RST, the end of the flow, or, once the peek is
//! over, the backends chosen and the flow moved to `Connect` (`failover.rs`), or to
//! `Refused` when nothing routes it or no backend of its route is up (architecture.md,
//! The splice, step 3):
//!
//! - a name with a route goes to its backend (`named`);
//! - no name, or a name without a route, goes to the default backend
//!   (`default_unnamed`), else is refused as an unknown name (TLS `unrecognized_name`,
//!   HTTP 421);
//! - bytes that cannot be named ([`Unnamed`]) go to the default backend as they are
//!   (`default_unparsable`), else are refused as [`Unnamed::refusal`] says (TLS
//!   `decode_error`, HTTP 400 or 431), or reset when they are no protocol at all;
//! - two different TLS names ([`Unnamed::Ambiguous`], [`Unnamed::DuplicateServerName`])
//!   are refused even with a default (`decode_error`, `illegal_parameter`).

use super::failover::Target;
use super::{Engine, Verdict};
use crate::base::{ClientKey, DropReason, Outcome, PeekPath};
use crate::engine::output::Output;
use crate::flow::setup::{PeekLimits, SetupStep, Unnamed};
use crate::flow::table::FlowId;
use crate::flow::{Flow, PeekEnd, Phase, Refusal};
use crate::name::HostName;
use crate::route::Route;
use crate::tcp::seg::SegInfo;
use crate::time::Time;

impl Engine {
    /// A segment while the flow is being set up (Handshake, Peek, Connect).
    pub(super) fn client_setup(
        &mut self,
        now: Time,
        id: FlowId,
        key: ClientKey,
        seg: &SegInfo,
        payload: &[u8],
        out: &mut Output,
    ) -> Verdict {
        let limits = PeekLimits {
            cap: self.config.peek_cap,
            budget: self
                .config
                .max_peek_bytes
                .saturating_sub(self.shared.peek_bytes()),
            now,
        };
        let Some(setup) = self.step(id, |flow| flow.client_setup(seg, payload, limits)) else {
            return Verdict::Dropped(DropReason::ClientNoFlow);
        };
        if let Some(reason) = setup.counted {
            self.stats.drop(reason);
        }
        match setup.step {
            SetupStep::Consumed => {
                // New bytes may have brought the custody timer forward.
                self.rearm(id);
                Verdict::Consumed
            }
            SetupStep::Drop(reason) => Verdict::Dropped(reason),
            SetupStep::DropWithRst(reason) => {
                self.send_rst_to_client(&key, seg, out);
                Verdict::Dropped(reason)
            }
            SetupStep::SynAck => {
                if let Some(conn) = self.flows.get(id).map(|f| f.conn) {
                    self.resend_synack(&key, &conn, out);
                }
                Verdict::Consumed
            }
            SetupStep::Ack => {
                self.send_endpoint_ack(now, id, out);
                Verdict::Consumed
            }
            SetupStep::Challenge(reason) => {
                self.challenge(now, id, out);
                reason.map_or(Verdict::Consumed, Verdict::Dropped)
            }
            SetupStep::Finish { outcome, reset } => {
                if reset {
                    self.reset_client(id, out);
                }
                self.finish(now, id, outcome);
                Verdict::Consumed
            }
            SetupStep::Named(name) => {
                self.choose_backend(now, id, key, name, out);
                Verdict::Consumed
            }
            SetupStep::Unnamed(why) => {
                self.route_unnamed(now, id, key, why, out);
                Verdict::Consumed
            }
        }
    }

    /// The name is known: connect to its route's backends in the client's order (the
    /// default's, when no route has the name), or refuse when there is no route or no
    /// backend of it is up.
    fn choose_backend(
        &mut self,
        now: Time,
        id: FlowId,
        key: ClientKey,
        name: Option<HostName>,
        out: &mut Output,
    ) {
        let routes = self.routes.clone();
        let Some(route) = routes.lookup_or_default(name.as_ref()) else {
            self.ended_peek(id, PeekPath::Refused, None);
            self.refuse(now, id, key, Refusal::UnknownName, out);
            return;
        };
        let path = if route.is_default() {
            PeekPath::DefaultUnnamed
        } else {
            PeekPath::Named
        };
        let Some(target) = self.target(route, &key) else {
            self.ended_peek(id, PeekPath::Refused, None);
            self.refuse(now, id, key, Refusal::UnknownName, out);
            return;
        };
        self.ended_peek(id, path, None);
        self.connect(now, id, key, name, target, out);
    }

    /// The backends of `route` for `key`'s client, in its order, or `None` (counted) when
    /// none of them is up.
    fn target(&mut self, route: &Route, key: &ClientKey) -> Option<Target> {
        let candidates = route.pool().candidates(key, &self.health);
        if candidates.is_empty() {
            self.stats.no_backend += 1;
            return None;
        }
        Some(Target {
            candidates,
            port: route.backend_port(key.service_port),
        })
    }

    /// The bytes name nothing: the default backend takes them as they are, or Kracauer
    /// answers (or resets) the client.
    fn route_unnamed(
        &mut self,
        now: Time,
        id: FlowId,
        key: ClientKey,
        why: Unnamed,
        out: &mut Output,
    ) {
        let routes = self.routes.clone();
        let default = routes.default_route().filter(|_| why.may_default());
        // A default whose backends are all down refuses as if there were none.
        if let Some(target) = default.and_then(|route| self.target(route, &key)) {
            self.ended_peek(id, PeekPath::DefaultUnparsable, Some(why));
            self.connect(now, id, key, None, target, out);
            return;
        }
        match why.refusal() {
            Some(refusal) => {
                self.ended_peek(id, PeekPath::Refused, Some(why));
                self.refuse(now, id, key, refusal, out);
            }
            None => {
                self.ended_peek(id, PeekPath::Reset, Some(why));
                self.reset_client(id, out);
                self.finish(now, id, Outcome::NotRecognised);
            }
        }
    }

    /// Counts the path a flow's peek took and keeps it for the access log.
    fn ended_peek(&mut self, id: FlowId, path: PeekPath, unnamed: Option<Unnamed>) {
        if let Some(flow) = self.flows.get_mut(id) {
            flow.peek_end = Some(PeekEnd { path, unnamed });
            self.stats.peek_path(flow.protocol, path);
        }
    }

    /// Refuses the flow: TLS alert or HTTP 421 / 400 / 431, with FIN, acknowledging what
    /// the client sent.
    fn refuse(
        &mut self,
        now: Time,
        id: FlowId,
        key: ClientKey,
        refusal: Refusal,
        out: &mut Output,
    ) {
        let until = now + self.config.linger;
        self.step(id, |flow| {
            let phase = match flow.phase {
                Phase::Peek(p) => Phase::Refused(p.refuse(&flow.conn, until, refusal)),
                other => other,
            };
            (Flow { phase, ..flow }, ())
        });
        self.send_refusal(now, id, &key, out);
        self.rearm(id);
    }
}
