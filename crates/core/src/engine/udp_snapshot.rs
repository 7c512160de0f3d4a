//! QUIC flows in a live upgrade's snapshot (docs/architecture.md, "Upgrades"): the
//! section after the TCP flows (`snapshot.rs`).
//!
//! ```text
//! quic counters: packets [2] u64 | bytes [2] u64 | opened, rebinds, version negotiations,
//!                connection IDs learned from clients u64
//!                | outcomes (count u16, then name and u64 each)
//! flow count u64 | per flow: client, client port, service, service port
//!                | backend [16], backend port | prefix [16] | created, last seen (times)
//!                | name | answered bool | bytes [2] u64 | rebound bool
//!                | connection IDs (count u8, each: length u8, bytes)
//! ```
//!
//! Every routed flow travels whole, with the connection IDs its backend chose, so a
//! rebinding client is still recognised after the upgrade. A pending flow (its Initials
//! not yet naming the host, at most the peek deadline old) does not: the client
//! retransmits an unanswered Initial after its probe timeout, and the new process reads
//! it as a new flow's first datagram.

use std::net::{Ipv4Addr, Ipv6Addr};

use super::Engine;
use crate::addr::Prefix96;
use crate::base::{BackendKey, ClientKey, Outcome};
use crate::flow::snapshot::{Reader, SnapshotError, Writer};
use crate::flow::table::TableError;
use crate::flow::udp::{Forwarding, MAX_LEARNED_CIDS, UdpFlow, UdpPhase};
use crate::quic::ConnectionId;
use crate::time::Time;

impl Engine {
    /// Writes the QUIC counters and every routed QUIC flow.
    pub(super) fn write_udp(&self, w: &mut Writer, now: Time) {
        let s = &self.stats;
        for v in [
            s.quic_packets[0],
            s.quic_packets[1],
            s.quic_bytes[0],
            s.quic_bytes[1],
        ] {
            w.u64(v);
        }
        for v in [
            s.quic_opened,
            s.quic_rebinds,
            s.quic_version_negotiations,
            s.quic_cids_from_clients,
        ] {
            w.u64(v);
        }
        w.u16(Outcome::ALL.len() as u16);
        for &o in Outcome::ALL {
            w.name_str(o.name());
            w.u64(s.quic_outcomes(o));
        }
        let routed: Vec<_> = self
            .udp
            .flows
            .iter()
            .filter_map(|(_, key, bk, flow)| Some((key, bk?, flow, flow.forwarding()?)))
            .collect();
        w.u64(routed.len() as u64);
        for (key, bk, flow, f) in routed {
            w.raw(&key.client.octets());
            w.u16(key.client_port);
            w.raw(&key.service.octets());
            w.u16(key.service_port);
            w.raw(&bk.backend.octets());
            w.u16(bk.backend_port);
            w.raw(&flow.prefix.network().octets());
            w.time(flow.created, now);
            w.time(flow.last_seen, now);
            w.name(f.name.as_ref());
            w.bool(f.answered);
            w.u64(f.bytes[0]);
            w.u64(f.bytes[1]);
            w.bool(f.rebound);
            w.u8(f.cids.len() as u8);
            for cid in &f.cids {
                w.u8(cid.as_bytes().len() as u8);
                w.raw(cid.as_bytes());
            }
        }
    }

    /// Reads what [`Engine::write_udp`] wrote (`then`: the snapshot's time).
    /// Reads a snapshot's QUIC part: its counters if `own` (this engine's own snapshot),
    /// and the flows `keep` selects.
    pub(super) fn read_udp(
        &mut self,
        r: &mut Reader<'_>,
        then: Time,
        own: bool,
        keep: &impl Fn(&ClientKey) -> bool,
    ) -> Result<(), SnapshotError> {
        let mut others = super::stats::Stats::new();
        let s = if own { &mut self.stats } else { &mut others };
        s.quic_packets = [r.u64()?, r.u64()?];
        s.quic_bytes = [r.u64()?, r.u64()?];
        s.quic_opened = r.u64()?;
        s.quic_rebinds = r.u64()?;
        s.quic_version_negotiations = r.u64()?;
        s.quic_cids_from_clients = r.u64()?;
        for _ in 0..r.u16()? {
            let name = r.name_str()?;
            let n = r.u64()?;
            if let Some(&o) = Outcome::ALL.iter().find(|o| o.name().as_bytes() == name) {
                s.set_quic_outcomes(o, n);
            }
        }
        let flows = r.u64()?;
        let capacity = self.udp.flows.capacity();
        if flows > capacity as u64 {
            return Err(SnapshotError::TooManyFlows { flows, capacity });
        }
        for _ in 0..flows {
            let key = ClientKey {
                client: Ipv4Addr::from(r.raw::<4>()?),
                client_port: r.u16()?,
                service: Ipv4Addr::from(r.raw::<4>()?),
                service_port: r.u16()?,
            };
            let backend = Ipv6Addr::from(r.raw::<16>()?);
            let backend_port = r.u16()?;
            let prefix = Prefix96::new(Ipv6Addr::from(r.raw::<16>()?))
                .map_err(|_| SnapshotError::BadField("quic flow prefix"))?;
            let created = r.time(then)?;
            let last_seen = r.time(then)?;
            let mut f = Forwarding::new(r.name("quic name")?);
            f.answered = r.bool("quic answered")?;
            f.bytes = [r.u64()?, r.u64()?];
            f.rebound = r.bool("quic rebound")?;
            let n = usize::from(r.u8()?);
            if n > MAX_LEARNED_CIDS {
                return Err(SnapshotError::BadField("quic connection IDs"));
            }
            for _ in 0..n {
                let len = usize::from(r.u8()?);
                let cid = ConnectionId::new(r.take(len)?)
                    .filter(|c| !c.as_bytes().is_empty())
                    .ok_or(SnapshotError::BadField("quic connection ID"))?;
                f.cids.push(cid);
            }
            if !keep(&key) {
                continue;
            }
            let cids = f.cids.clone();
            self.retire(prefix);
            let mut flow = UdpFlow::new(created, prefix, UdpPhase::Forwarding(f));
            flow.last_seen = last_seen;
            let id = self.udp.flows.insert(key, flow).map_err(|e| match e {
                TableError::ClientTupleTaken => SnapshotError::DuplicateFlow("quic client"),
                _ => SnapshotError::TooManyFlows { flows, capacity },
            })?;
            let bk = BackendKey {
                backend,
                backend_port,
                client: key.client,
                client_port: key.client_port,
            };
            self.udp
                .flows
                .index_backend(id, bk)
                .map_err(|_| SnapshotError::DuplicateFlow("quic backend"))?;
            for cid in &cids {
                self.index_cid(cid, id);
            }
            self.udp_rearm(id);
        }
        Ok(())
    }
}
