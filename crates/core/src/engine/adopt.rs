//! Adopting the kernel fast path's flows (docs/architecture.md, "The kernel fast path"):
//! the entries a daemon finds in the pinned map when it starts.
//!
//! - After a crash (`kill -9`), the map holds the flows the dead daemon had handed over,
//!   and the program kept translating them. A new engine knows nothing of them:
//!   [`Engine::adopt_fastpath`] makes each one a `Spliced` flow again from its entry
//!   (keys, splice, prefix, name, the FINs the program saw pass), handed over as it was.
//!   Flows that were not handed over (still peeking, connecting, in custody, closing)
//!   had no entry and are lost with the process that held them.
//! - After a live upgrade, the restored engine has the flows already (from the snapshot,
//!   which does not say which were handed over): adopting an entry marks the restored
//!   `Spliced` flow as handed over again, so it is taken back at its end.
//!
//! An entry that cannot be adopted (a service no longer served, another prefix, a tuple
//! taken by another flow, a RST seen, a full table) is refused with the reason; the
//! daemon then removes it, and the TUN path resets the flow at its next segment, as it
//! would without the fast path.

use std::net::SocketAddrV4;

use super::Engine;
use super::fastpath::FastpathFlow;
use crate::base::{BackendKey, ClientKey, Outcome};
use crate::flow::spliced::Spliced;
use crate::flow::{Conn, Flow, Phase};
use crate::tcp::seg::ClientOptions;
use crate::time::Time;
use crate::wire::SeqNumber;

/// A fast-path map entry as the daemon read it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AdoptedFlow {
    /// Keys, splice, name and start (in the caller's time).
    pub flow: FastpathFlow,
    /// The program passed a FIN from the client, from the backend, a RST.
    pub client_fin: bool,
    pub backend_fin: bool,
    pub reset: bool,
    /// When the program last forwarded a packet of the flow (the caller's time).
    pub last_seen: Time,
}

/// What adopting an entry did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Adopted {
    /// A new `Spliced` flow, handed over (the start after a crash).
    New,
    /// The flow was in the table, spliced: it is handed over again (a live upgrade).
    Restored,
    /// A new flow whose FINs had both passed: it closes now (lingers, then ends), and its
    /// entry is to be taken back ([`Engine::poll_fastpath`] says so).
    Closing,
}

/// Why an entry was not adopted (the daemon removes it).
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum AdoptError {
    #[error("the fast path is not enabled in this engine")]
    Disabled,
    #[error("its service address and port are no longer served")]
    NotServed,
    #[error("its client address is not in this configuration's prefix")]
    OtherPrefix,
    #[error("a RST of it passed")]
    Reset,
    #[error("another flow holds its {0} 4-tuple")]
    Taken(&'static str),
    #[error("the flow table is full")]
    TableFull,
    #[error("its window scales are past 14")]
    BadWindowScale,
}

impl Engine {
    /// Whether this engine holds the flow of `client` to `service` (in any phase).
    pub fn has_flow(&self, client: SocketAddrV4, service: SocketAddrV4) -> bool {
        self.flows
            .find_client(&client_key(client, service))
            .is_some()
    }

    /// Adopts a flow of the fast path's map at the caller's `now` (see the module doc).
    pub fn adopt_fastpath(&mut self, now: Time, a: &AdoptedFlow) -> Result<Adopted, AdoptError> {
        if !self.fastpath {
            return Err(AdoptError::Disabled);
        }
        let now = self.clock.internal(now);
        let f = &a.flow;
        let key = client_key(f.client, f.service);
        if let Some(id) = self.flows.find_client(&key) {
            let flow = self.flows.get_mut(id).ok_or(AdoptError::Taken("client"))?;
            let same = matches!(&flow.phase, Phase::Spliced(s) if s.splice == f.splice)
                && self.flows.keys(id).and_then(|(_, bk)| bk) == Some(backend_key(f));
            if !same {
                return Err(AdoptError::Taken("client"));
            }
            if let Some(flow) = self.flows.get_mut(id) {
                flow.conn.fastpath = true;
            }
            return Ok(Adopted::Restored);
        }
        if a.reset {
            return Err(AdoptError::Reset);
        }
        let sp = &f.splice;
        if sp.backend_ws > 14
            || sp.client_ws > 14
            || sp.expand_client_window.is_some_and(|w| w > 14)
        {
            return Err(AdoptError::BadWindowScale);
        }
        let Some(protocol) = self.config.protocol(key.service, key.service_port) else {
            return Err(AdoptError::NotServed);
        };
        let prefix = self.config.prefix;
        if prefix.embed(key.client) != f.client6 {
            return Err(AdoptError::OtherPrefix);
        }
        if self.flows.find_backend(&backend_key(f)).is_some() {
            return Err(AdoptError::Taken("backend"));
        }
        let conn = Conn {
            // The handshake's numbers are not kept in the entry: a spliced flow never
            // uses them (its segments are the peers' own, rewritten by the splice).
            c_isn: SeqNumber(0),
            k_isn: SeqNumber(0),
            client: ClientOptions {
                mss: 536,
                wscale: f
                    .splice
                    .expand_client_window
                    .or((f.splice.client_ws > 0 || f.splice.backend_ws > 0)
                        .then_some(f.splice.client_ws)),
                sack: false,
                timestamps: f.splice.ts_offset.is_some(),
            },
            client_tsval: 0,
            k_tsval: 0,
            client_window: 0,
            client_fin: a.client_fin,
            backend_fin: a.backend_fin,
            fastpath: true,
            prefix,
        };
        let created = self.clock.internal(f.created).min(now);
        let phase = Phase::Spliced(Spliced {
            splice: f.splice,
            bytes: [0, 0],
            name: f.name.clone(),
        });
        let mut flow = Flow::new(protocol, created, conn, phase);
        flow.last_seen = self.clock.internal(a.last_seen).clamp(created, now);
        if self.flows.len() >= self.flows.capacity() {
            return Err(AdoptError::TableFull);
        }
        let id = self
            .flows
            .insert(key, flow)
            .map_err(|_| AdoptError::TableFull)?;
        if self.flows.index_backend(id, backend_key(f)).is_err() {
            self.flows.remove(id);
            return Err(AdoptError::Taken("backend"));
        }
        self.rearm(id);
        if a.client_fin && a.backend_fin {
            // Both FINs passed while no daemon saw them: the flow closes now.
            self.start_closing(now, id, Outcome::Closed);
            return Ok(Adopted::Closing);
        }
        Ok(Adopted::New)
    }
}

fn client_key(client: SocketAddrV4, service: SocketAddrV4) -> ClientKey {
    ClientKey {
        client: *client.ip(),
        client_port: client.port(),
        service: *service.ip(),
        service_port: service.port(),
    }
}

fn backend_key(f: &FastpathFlow) -> BackendKey {
    BackendKey {
        backend: *f.backend.ip(),
        backend_port: f.backend.port(),
        client: *f.client.ip(),
        client_port: f.client.port(),
    }
}
