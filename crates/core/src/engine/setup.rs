//! Carrying out what a flow being set up decided about a client segment
//! ([`SetupStep`]): the SYN-ACK again, a RST, the end of the flow, or, once the host is
//! named, the backends chosen from the route table and the flow moved to `Connect`
//! (`failover.rs`), or to `Refused` when nothing routes the name or no backend is up.

use super::failover::Target;
use super::{Engine, Verdict};
use crate::base::{ClientKey, DropReason};
use crate::engine::output::Output;
use crate::flow::setup::{PeekLimits, SetupStep};
use crate::flow::table::FlowId;
use crate::flow::{Flow, Phase};
use crate::name::HostName;
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
            budget: self.config.max_peek_bytes.saturating_sub(self.peek_bytes),
        };
        let Some(setup) = self.step(id, |flow| flow.client_setup(seg, payload, limits)) else {
            return Verdict::Dropped(DropReason::ClientNoFlow);
        };
        if let Some(reason) = setup.counted {
            self.stats.drop(reason);
        }
        match setup.step {
            SetupStep::Consumed => Verdict::Consumed,
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
        }
    }

    /// The name is known: connect to its route's backends in the client's order, or
    /// refuse when no route has the name or no backend of its route is up.
    fn choose_backend(
        &mut self,
        now: Time,
        id: FlowId,
        key: ClientKey,
        name: Option<HostName>,
        out: &mut Output,
    ) {
        let Some(route) = self.routes.lookup_or_default(name.as_ref()) else {
            self.refuse(now, id, key, out);
            return;
        };
        let target = Target {
            candidates: route.pool().candidates(&key, &self.health),
            port: route.backend_port(key.service_port),
        };
        if target.candidates.is_empty() {
            self.stats.no_backend += 1;
            self.refuse(now, id, key, out);
            return;
        }
        self.connect(now, id, key, name, target, out);
    }

    /// Refuses an unknown name: TLS alert or HTTP 421, with FIN, acknowledging what the
    /// client sent.
    fn refuse(&mut self, now: Time, id: FlowId, key: ClientKey, out: &mut Output) {
        let until = now + self.config.linger;
        self.step(id, |flow| {
            let phase = match flow.phase {
                Phase::Peek(p) => Phase::Refused(p.refuse(&flow.conn, until)),
                other => other,
            };
            (Flow { phase, ..flow }, ())
        });
        self.send_refusal(now, id, &key, out);
        self.rearm(id);
    }
}
