//! A change of the services (listen addresses and ports) while flows run: a reload
//! ([`Engine::reconfigure`]) or a restore with a new configuration ([`Engine::restore`]).
//!
//! Flows whose service address and port are still served go on, whatever else changed
//! (a port moved between TLS and HTTP keeps its flows; their peek goes on with the
//! protocol it started with). Flows on an address or port no longer served end with
//! [`Outcome::ServiceRemoved`] at the next [`Engine::handle_timeout`], which
//! [`Engine::poll_timeout`] asks for at once:
//! - a flow still being set up (handshake, peek, connecting) gets a RST now: Kracauer
//!   is the client's only peer and knows its sequence numbers;
//! - a spliced, refused or closing flow is forgotten: Kracauer does not track the
//!   sequence numbers a RST would need, so each side is reset at its next segment (a
//!   client segment, or a backend one, for no flow), as after a restart.
//!
//! QUIC flows on a UDP port no longer listed in `quic` are forgotten the same way
//! (nothing to reset: the client's next datagram is dropped as not a service).
//!
//! The flows are ended [`BATCH`] at a time, so that the RSTs of one call fit in the
//! caller's [`Output`] and the access-log events in the queue.

use super::{Engine, Output};
use crate::base::Outcome;
use crate::flow::Phase;
use crate::flow::table::FlowId;
use crate::time::Time;

/// Most flows ended per call.
const BATCH: usize = 512;

impl Engine {
    /// Ends up to [`BATCH`] flows whose service is no longer served; the sweep stays
    /// pending while any is left.
    pub(super) fn end_unserved(&mut self, now: Time, out: &mut Output) {
        let config = &self.config;
        let unserved: Vec<FlowId> = self
            .flows
            .iter()
            .filter(|(_, key, ..)| config.protocol(key.service, key.service_port).is_none())
            .map(|(id, ..)| id)
            .take(BATCH + 1)
            .collect();
        let quic: Vec<FlowId> = self
            .udp
            .flows
            .iter()
            .filter(|(_, key, ..)| !config.is_quic(key.service, key.service_port))
            .map(|(id, ..)| id)
            .take(BATCH + 1)
            .collect();
        self.unserved_sweep = unserved.len() > BATCH || quic.len() > BATCH;
        for id in quic.into_iter().take(BATCH) {
            self.udp_finish(now, id, Outcome::ServiceRemoved, None);
        }
        for id in unserved.into_iter().take(BATCH) {
            let setting_up = matches!(
                self.flows.get(id).map(|f| &f.phase),
                Some(Phase::Handshake | Phase::Peek(_) | Phase::Connect(_))
            );
            if setting_up {
                self.reset_client(id, out);
            }
            self.finish(now, id, Outcome::ServiceRemoved);
        }
    }
}
