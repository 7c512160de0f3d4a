//! The connection IDs backends chose, shared by every worker (docs/architecture.md,
//! "QUIC", rebinding): a client whose NAT moved it arrives on a new 4-tuple, which the
//! kernel's steering may hand to another worker than the one holding its flow. That
//! worker finds the ID here, with what a new mapping needs (the service, the backend,
//! the name), and makes the mapping itself; the backend's answers to the new 4-tuple are
//! steered to it too.
//!
//! Each entry names its owner (an engine's tag and the flow's id there): a flow that ends
//! removes only the entries it still owns, so a newer mapping of the same client, in any
//! worker, keeps them. A lock guards the map; it is taken when a flow learns or forgets
//! an ID and when a packet on an unknown 4-tuple carries a connection ID, never for a
//! packet of a known flow. The map is bounded ([`MAX_ENTRIES`]): past it new IDs are not
//! remembered (those clients cannot rebind) and the refusal is counted.

use std::collections::HashMap;
use std::net::{Ipv4Addr, Ipv6Addr};
use std::sync::atomic::{AtomicU32, AtomicU64, Ordering::Relaxed};
use std::sync::{Mutex, PoisonError};

use crate::flow::table::{FlowId, KeyedHash};
use crate::name::HostName;
use crate::quic::ConnectionId;

/// Most connection IDs remembered, all workers together.
pub const MAX_ENTRIES: usize = 1 << 20;

/// Where a learned connection ID leads.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CidRoute {
    /// The engine ([`super::Engine`]'s tag) and flow that own it.
    pub owner: (u64, FlowId),
    /// The service address and port the client used.
    pub service: (Ipv4Addr, u16),
    /// The backend and its port.
    pub backend: (Ipv6Addr, u16),
    /// The name the flow was routed by.
    pub name: Option<HostName>,
}

/// The shared index (see the module doc).
#[derive(Debug)]
pub struct SharedCids {
    map: Mutex<HashMap<ConnectionId, CidRoute, KeyedHash>>,
    /// Bit n: some ID of n bytes was learned (a short header does not say its length).
    lengths: AtomicU32,
    /// IDs not remembered because the map was full.
    refused: AtomicU64,
}

impl SharedCids {
    /// An empty index hashing with `key` (secret: clients choose what is looked up).
    pub fn new(key: [u64; 2]) -> Self {
        Self {
            map: Mutex::new(HashMap::with_hasher(KeyedHash::new(key))),
            lengths: AtomicU32::new(0),
            refused: AtomicU64::new(0),
        }
    }

    fn map(&self) -> std::sync::MutexGuard<'_, HashMap<ConnectionId, CidRoute, KeyedHash>> {
        self.map.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Points `cid` at `route` (a new flow, or the newest mapping of a rebinding client).
    pub fn insert(&self, cid: &ConnectionId, route: CidRoute) {
        let mut map = self.map();
        if map.len() >= MAX_ENTRIES && !map.contains_key(cid) {
            self.refused.fetch_add(1, Relaxed);
            return;
        }
        map.insert(cid.clone(), route);
        self.lengths.fetch_or(1 << cid.as_bytes().len(), Relaxed);
    }

    /// Forgets `cid` if `owner` still owns it.
    pub fn remove(&self, cid: &ConnectionId, owner: (u64, FlowId)) {
        let mut map = self.map();
        if map.get(cid).is_some_and(|r| r.owner == owner) {
            map.remove(cid);
        }
    }

    /// Where `cid` leads.
    pub fn get(&self, cid: &[u8]) -> Option<CidRoute> {
        let cid = ConnectionId::new(cid)?;
        self.map().get(&cid).cloned()
    }

    /// The ID a short header's Destination Connection ID is, trying every length a
    /// learned ID has, with where it leads.
    pub fn find_short_header(&self, packet: &[u8]) -> Option<(ConnectionId, CidRoute)> {
        let mut lengths = self.lengths.load(Relaxed);
        if lengths == 0 {
            return None;
        }
        let map = self.map();
        while lengths != 0 {
            let len = lengths.trailing_zeros() as usize;
            lengths &= lengths - 1;
            let Some(cid) = packet.get(1..1 + len).and_then(ConnectionId::new) else {
                continue;
            };
            if let Some(route) = map.get(&cid) {
                return Some((cid, route.clone()));
            }
        }
        None
    }

    /// Number of IDs remembered.
    pub fn len(&self) -> usize {
        self.map().len()
    }

    /// Whether none is remembered.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// IDs not remembered because the index was full.
    pub fn refused(&self) -> u64 {
        self.refused.load(Relaxed)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn route(owner: u64, flow: u32) -> CidRoute {
        CidRoute {
            owner: (owner, FlowId::from_parts(flow, 0)),
            service: (Ipv4Addr::new(203, 0, 113, 10), 443),
            backend: ("2001:db8:1::2".parse().unwrap(), 443),
            name: None,
        }
    }

    #[test]
    fn an_id_leads_to_its_newest_owner_and_only_that_owner_removes_it() {
        let s = SharedCids::new([1, 2]);
        let cid = ConnectionId::new(&[7; 8]).unwrap();
        s.insert(&cid, route(1, 1));
        s.insert(&cid, route(2, 5));
        s.remove(&cid, route(1, 1).owner);
        assert_eq!(s.get(&[7; 8]), Some(route(2, 5)));
        let mut short = vec![0x41];
        short.extend_from_slice(&[7; 8]);
        short.extend_from_slice(b"payload");
        assert_eq!(
            s.find_short_header(&short),
            Some((cid.clone(), route(2, 5)))
        );
        s.remove(&cid, route(2, 5).owner);
        assert!(s.is_empty());
        assert_eq!(s.find_short_header(&short), None);
    }
}
