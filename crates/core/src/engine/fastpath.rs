//! The engine's side of the kernel fast path (docs/architecture.md, "The kernel fast
//! path"): which spliced flows the daemon may hand to the kernel's program, when it must
//! take them back, and what the program saw of them.
//!
//! - A flow may be handed over once nothing of Kracauer's own is in flight: when it
//!   becomes `Spliced` (the peeked bytes it replayed are still in the client's
//!   retransmission queue, so the client repairs their loss, not Kracauer) or leaves
//!   `Custody` for `Spliced` (the backend acknowledged every custody byte).
//! - It is taken back when it starts closing (both FINs or a RST passed: the program
//!   never takes those, so the state machine saw them) and when it ends for any other
//!   reason (idle, shutdown, a removed service).
//! - The program keeps a last-seen time, which the daemon reports with
//!   [`Engine::fastpath_seen`], so idle expiry reads it.
//!
//! The operations queue apart from the access-log events and without their cap: an
//! operation lost would leave an entry that translates another flow on the same 4-tuple.
//!
//! An operation carries the flow's name and start as well as its keys and splice: the
//! daemon writes them into the entry, which is then all a daemon started after a crash
//! needs to adopt the flow (`adopt.rs`).

use std::net::{Ipv6Addr, SocketAddrV4, SocketAddrV6};

use super::Engine;
use crate::flow::Phase;
use crate::flow::table::FlowId;
use crate::name::HostName;
use crate::tcp::splice::Splice;
use crate::time::Time;

/// A flow as the fast path keys and translates it, with what its access-log line needs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FastpathFlow {
    pub client: SocketAddrV4,
    pub service: SocketAddrV4,
    /// The client's address in the prefix: the source of its IPv6 packets.
    pub client6: Ipv6Addr,
    pub backend: SocketAddrV6,
    pub splice: Splice,
    /// The name the flow was routed by.
    pub name: Option<HostName>,
    /// When the flow began (its SYN), in the caller's time.
    pub created: Time,
}

/// What the daemon is to do with the fast path's map.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FastpathOp {
    /// Put the flow's entry in the map (a full map: the flow stays on the TUN path).
    Install(FastpathFlow),
    /// Take the flow's entry out (its counters belong to the flow's access-log line).
    Remove(FastpathFlow),
}

impl Engine {
    /// Lets this engine hand spliced flows to the kernel fast path from now on.
    pub fn enable_fastpath(&mut self) {
        self.fastpath = true;
    }

    /// Makes and checks SYN cookies at the caller's `now` plus `offset_micros` from now on
    /// (the daemon: CLOCK_MONOTONIC at the instant its `now` counts from), so the
    /// engine's cookies and the kernel's SYN cookie program's share one clock. Without
    /// it, the engine's own time.
    pub fn set_cookie_clock(&mut self, offset_micros: u64) {
        self.cookie_clock = Some(offset_micros);
    }

    /// The time cookies are made and checked at, for the engine's time `now`.
    pub(super) fn cookie_time(&self, now: Time) -> Time {
        match self.cookie_clock {
            Some(offset) => {
                Time::from_micros(self.clock.external(now).as_micros().saturating_add(offset))
            }
            None => now,
        }
    }

    /// The next map operation for the daemon, in the order they arose.
    pub fn poll_fastpath(&mut self) -> Option<FastpathOp> {
        self.fastpath_ops.pop_front()
    }

    /// The program last forwarded a packet of the flow of `client` to `service` at
    /// `last_seen` (the caller's time): idle expiry counts from then.
    pub fn fastpath_seen(&mut self, client: SocketAddrV4, service: SocketAddrV4, last_seen: Time) {
        let last_seen = self.clock.internal(last_seen);
        let key = crate::base::ClientKey {
            client: *client.ip(),
            client_port: client.port(),
            service: *service.ip(),
            service_port: service.port(),
        };
        let Some(id) = self.flows.find_client(&key) else {
            return;
        };
        if let Some(flow) = self.flows.get_mut(id) {
            if flow.conn.fastpath && last_seen > flow.last_seen {
                flow.last_seen = last_seen;
                self.rearm(id);
            }
        }
    }

    /// The flow `id`, as the fast path would key it, if it is `Spliced`.
    fn fastpath_flow(&self, id: FlowId) -> Option<FastpathFlow> {
        let (ck, Some(bk)) = self.flows.keys(id)? else {
            return None;
        };
        let flow = self.flows.get(id)?;
        let Phase::Spliced(s) = &flow.phase else {
            return None;
        };
        Some(FastpathFlow {
            client: SocketAddrV4::new(ck.client, ck.client_port),
            service: SocketAddrV4::new(ck.service, ck.service_port),
            client6: flow.conn.prefix.embed(ck.client),
            backend: SocketAddrV6::new(bk.backend, bk.backend_port, 0, 0),
            splice: s.splice,
            name: s.name.clone(),
            created: self.clock.external(flow.created),
        })
    }

    /// Flow `id` just became `Spliced`: hand it over.
    pub(super) fn fastpath_install(&mut self, id: FlowId) {
        if !self.fastpath {
            return;
        }
        let Some(f) = self.fastpath_flow(id) else {
            return;
        };
        if let Some(flow) = self.flows.get_mut(id) {
            flow.conn.fastpath = true;
            self.fastpath_ops.push_back(FastpathOp::Install(f));
        }
    }

    /// Flow `id` is closing or ending: take it back, if it was handed over.
    pub(super) fn fastpath_remove(&mut self, id: FlowId) {
        let Some((ck, Some(bk))) = self.flows.keys(id) else {
            return;
        };
        let Some(flow) = self.flows.get_mut(id) else {
            return;
        };
        if !flow.conn.fastpath {
            return;
        }
        flow.conn.fastpath = false;
        let Some(spliced) = flow.spliced() else {
            return;
        };
        let f = FastpathFlow {
            client: SocketAddrV4::new(ck.client, ck.client_port),
            service: SocketAddrV4::new(ck.service, ck.service_port),
            client6: flow.conn.prefix.embed(ck.client),
            backend: SocketAddrV6::new(bk.backend, bk.backend_port, 0, 0),
            splice: spliced.splice,
            name: spliced.name.clone(),
            created: self.clock.external(flow.created),
        };
        self.fastpath_ops.push_back(FastpathOp::Remove(f));
    }
}
