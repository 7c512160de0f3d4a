//! The flow table: flows in a slab, found by either side's addresses.
//!
//! A flow is found from a client's IPv4 packet by [`ClientKey`] (client address and port,
//! service address and port) and, once its backend is chosen, from a backend's IPv6 packet
//! by [`BackendKey`] (backend address and port, the client's embedded address and port).
//! Both keys are stored once, in the flow's slot; the two indexes are hash tables of slot
//! numbers only (4 bytes a bucket), compared against the slot's keys on lookup. That keeps
//! an index at a few bytes per flow instead of a copy of its key. Both indexes hash what
//! attackers choose, so they use SipHash-1-3 under a secret key (the construction std's
//! `HashMap` uses, with a key the caller derives from the engine's seed, so the core reads
//! no OS randomness and tests are reproducible). A [`FlowId`] carries a generation so that
//! a stale reference (a timer entry for a freed flow) never reaches the flow that reused
//! its slot.

use std::hash::{BuildHasher, Hash};

use hashbrown::HashTable;
use siphasher::sip::SipHasher13;
use slab::Slab;

pub use crate::base::{BackendKey, ClientKey};

/// A flow's handle: slot index and generation.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct FlowId {
    index: u32,
    generation: u32,
}

impl FlowId {
    /// A handle from its parts (tests and timers).
    pub const fn from_parts(index: u32, generation: u32) -> Self {
        Self { index, generation }
    }
}

/// SipHash-1-3 under a secret key.
#[derive(Debug, Clone, Copy)]
pub struct KeyedHash {
    k0: u64,
    k1: u64,
}

impl KeyedHash {
    /// A hasher keyed with `key`.
    pub const fn new(key: [u64; 2]) -> Self {
        Self {
            k0: key[0],
            k1: key[1],
        }
    }
}

impl BuildHasher for KeyedHash {
    type Hasher = SipHasher13;

    fn build_hasher(&self) -> SipHasher13 {
        SipHasher13::new_with_keys(self.k0, self.k1)
    }
}

/// Why a flow could not be added or indexed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum TableError {
    #[error("the flow table is full")]
    Full,
    #[error("a flow with this client-side 4-tuple exists")]
    ClientTupleTaken,
    #[error("a flow with this backend-side 4-tuple exists")]
    BackendTupleTaken,
    #[error("no such flow")]
    NoSuchFlow,
}

#[derive(Debug)]
struct Slot<F> {
    generation: u32,
    client_key: ClientKey,
    backend_key: Option<BackendKey>,
    /// `None` only for the length of a [`FlowTable::step`], which cannot be observed: the
    /// step holds the table borrowed and always puts a value back.
    flow: Option<F>,
}

/// Flows and their two indexes.
#[derive(Debug)]
pub struct FlowTable<F> {
    slots: Slab<Slot<F>>,
    by_client: HashTable<u32>,
    by_backend: HashTable<u32>,
    hasher: KeyedHash,
    next_generation: u32,
    capacity: usize,
}

impl<F> FlowTable<F> {
    /// A table for at most `capacity` flows, hashing with `key`. Memory for all of them is
    /// reserved up front, so the table never reallocates while flows come and go.
    pub fn new(capacity: usize, key: [u64; 2]) -> Self {
        Self {
            slots: Slab::with_capacity(capacity),
            by_client: HashTable::with_capacity(capacity),
            by_backend: HashTable::with_capacity(capacity),
            hasher: KeyedHash::new(key),
            next_generation: 0,
            capacity,
        }
    }

    /// Number of flows.
    pub fn len(&self) -> usize {
        self.slots.len()
    }

    /// Whether there are no flows.
    pub fn is_empty(&self) -> bool {
        self.slots.is_empty()
    }

    /// The most flows the table takes.
    pub fn capacity(&self) -> usize {
        self.capacity
    }

    fn hash<K: Hash>(&self, key: &K) -> u64 {
        self.hasher.hash_one(key)
    }

    /// Adds a flow found by `key` on the client side.
    pub fn insert(&mut self, key: ClientKey, flow: F) -> Result<FlowId, TableError> {
        if self.slots.len() >= self.capacity {
            return Err(TableError::Full);
        }
        if self.find_client(&key).is_some() {
            return Err(TableError::ClientTupleTaken);
        }
        let generation = self.next_generation;
        self.next_generation = self.next_generation.wrapping_add(1);
        let index = self.slots.insert(Slot {
            generation,
            client_key: key,
            backend_key: None,
            flow: Some(flow),
        });
        // The slab never holds more than `capacity` entries, and `FlowTable` users cap
        // capacity at u32::MAX (EngineConfig::validate).
        let index = index as u32;
        let hash = self.hash(&key);
        let (slots, hasher) = (&self.slots, &self.hasher);
        self.by_client.insert_unique(hash, index, |&i| {
            slots
                .get(i as usize)
                .map_or(0, |s| hasher.hash_one(s.client_key))
        });
        Ok(FlowId { index, generation })
    }

    /// Makes flow `id` findable by `key` from the backend side.
    pub fn index_backend(&mut self, id: FlowId, key: BackendKey) -> Result<(), TableError> {
        match self.slot_mut(id) {
            None => return Err(TableError::NoSuchFlow),
            Some(slot) if slot.backend_key.is_some() => return Err(TableError::BackendTupleTaken),
            Some(_) => {}
        }
        if self.find_backend(&key).is_some() {
            return Err(TableError::BackendTupleTaken);
        }
        if let Some(slot) = self.slot_mut(id) {
            slot.backend_key = Some(key);
        }
        let hash = self.hash(&key);
        let (slots, hasher) = (&self.slots, &self.hasher);
        self.by_backend.insert_unique(hash, id.index, |&i| {
            slots
                .get(i as usize)
                .and_then(|s| s.backend_key)
                .map_or(0, |k| hasher.hash_one(k))
        });
        Ok(())
    }

    /// Moves flow `id`'s backend-side index from its current key to `key` (a failover
    /// to another backend), in O(1). If another flow holds `key` the flow keeps its old
    /// key and the error says so; a flow not yet indexed is indexed.
    pub fn reindex_backend(&mut self, id: FlowId, key: BackendKey) -> Result<(), TableError> {
        let old = match self.slot_mut(id) {
            None => return Err(TableError::NoSuchFlow),
            Some(slot) => slot.backend_key,
        };
        let Some(old) = old else {
            return self.index_backend(id, key);
        };
        if old == key {
            return Ok(());
        }
        if self.find_backend(&key).is_some() {
            return Err(TableError::BackendTupleTaken);
        }
        let hash = self.hash(&old);
        if let Ok(entry) = self.by_backend.find_entry(hash, |&i| i == id.index) {
            entry.remove();
        }
        if let Some(slot) = self.slot_mut(id) {
            slot.backend_key = None;
        }
        self.index_backend(id, key)
    }

    /// The flow a client-side packet belongs to.
    pub fn find_client(&self, key: &ClientKey) -> Option<FlowId> {
        let slots = &self.slots;
        let &index = self.by_client.find(self.hash(key), |&i| {
            slots.get(i as usize).is_some_and(|s| s.client_key == *key)
        })?;
        self.id_of(index)
    }

    /// The flow a backend-side packet belongs to.
    pub fn find_backend(&self, key: &BackendKey) -> Option<FlowId> {
        let slots = &self.slots;
        let &index = self.by_backend.find(self.hash(key), |&i| {
            slots
                .get(i as usize)
                .is_some_and(|s| s.backend_key == Some(*key))
        })?;
        self.id_of(index)
    }

    fn id_of(&self, index: u32) -> Option<FlowId> {
        self.slots.get(index as usize).map(|s| FlowId {
            index,
            generation: s.generation,
        })
    }

    /// The flow behind `id`, if it still exists.
    pub fn get(&self, id: FlowId) -> Option<&F> {
        self.slots
            .get(id.index as usize)
            .filter(|s| s.generation == id.generation)
            .and_then(|s| s.flow.as_ref())
    }

    /// The flow behind `id`, if it still exists.
    pub fn get_mut(&mut self, id: FlowId) -> Option<&mut F> {
        self.slot_mut(id).and_then(|s| s.flow.as_mut())
    }

    /// Moves flow `id` through `step`, which consumes its value and returns the next one
    /// (and a result for the caller). This is how a flow changes phase: by a function from
    /// the old state to the new, never by patching a placeholder in place.
    pub fn step<R>(&mut self, id: FlowId, step: impl FnOnce(F) -> (F, R)) -> Option<R> {
        let slot = self.slot_mut(id)?;
        let flow = slot.flow.take()?;
        let (next, result) = step(flow);
        slot.flow = Some(next);
        Some(result)
    }

    /// The keys flow `id` is indexed under.
    pub fn keys(&self, id: FlowId) -> Option<(ClientKey, Option<BackendKey>)> {
        self.slots
            .get(id.index as usize)
            .filter(|s| s.generation == id.generation)
            .map(|s| (s.client_key, s.backend_key))
    }

    /// Removes flow `id` and its index entries; returns it.
    pub fn remove(&mut self, id: FlowId) -> Option<F> {
        let (client_key, backend_key) = self.keys(id)?;
        let hash = self.hash(&client_key);
        if let Ok(entry) = self.by_client.find_entry(hash, |&i| i == id.index) {
            entry.remove();
        }
        if let Some(b) = backend_key {
            let hash = self.hash(&b);
            if let Ok(entry) = self.by_backend.find_entry(hash, |&i| i == id.index) {
                entry.remove();
            }
        }
        self.slots.remove(id.index as usize).flow
    }

    /// Every flow with its keys, in slot order (for a snapshot).
    pub fn iter(&self) -> impl Iterator<Item = (FlowId, ClientKey, Option<BackendKey>, &F)> {
        self.slots.iter().filter_map(|(index, s)| {
            let id = FlowId {
                index: index as u32,
                generation: s.generation,
            };
            s.flow
                .as_ref()
                .map(|f| (id, s.client_key, s.backend_key, f))
        })
    }

    fn slot_mut(&mut self, id: FlowId) -> Option<&mut Slot<F>> {
        self.slots
            .get_mut(id.index as usize)
            .filter(|s| s.generation == id.generation)
    }
}

#[cfg(test)]
mod tests {
    use std::net::Ipv4Addr;

    use super::*;

    fn ck(port: u16) -> ClientKey {
        ClientKey {
            client: Ipv4Addr::new(198, 51, 100, 2),
            client_port: port,
            service: Ipv4Addr::new(203, 0, 113, 10),
            service_port: 443,
        }
    }

    fn bk(port: u16) -> BackendKey {
        BackendKey {
            backend: "2001:db8:1::2".parse().unwrap(),
            backend_port: 443,
            client: Ipv4Addr::new(198, 51, 100, 2),
            client_port: port,
        }
    }

    #[test]
    fn flow_is_found_from_both_sides_once_indexed() {
        let mut t = FlowTable::new(4, [1, 2]);
        let id = t.insert(ck(1000), "a").unwrap();
        assert_eq!(t.find_client(&ck(1000)), Some(id));
        assert_eq!(t.find_backend(&bk(1000)), None);
        t.index_backend(id, bk(1000)).unwrap();
        assert_eq!(t.find_backend(&bk(1000)), Some(id));
        assert_eq!(t.get(id), Some(&"a"));
    }

    #[test]
    fn removal_frees_both_index_entries() {
        let mut t = FlowTable::new(4, [1, 2]);
        let id = t.insert(ck(1000), "a").unwrap();
        t.index_backend(id, bk(1000)).unwrap();
        assert_eq!(t.remove(id), Some("a"));
        assert_eq!(t.find_client(&ck(1000)), None);
        assert_eq!(t.find_backend(&bk(1000)), None);
        assert!(t.is_empty());
    }

    #[test]
    fn stale_id_does_not_reach_the_flow_that_reused_its_slot() {
        let mut t = FlowTable::new(4, [1, 2]);
        let old = t.insert(ck(1000), "old").unwrap();
        t.remove(old);
        let new = t.insert(ck(1001), "new").unwrap();
        assert_ne!(old, new);
        assert_eq!(t.get(old), None);
        assert_eq!(t.remove(old), None);
        assert_eq!(t.get(new), Some(&"new"));
    }

    #[test]
    fn second_flow_on_one_backend_tuple_is_refused() {
        let mut t = FlowTable::new(4, [1, 2]);
        let a = t.insert(ck(1000), "a").unwrap();
        t.index_backend(a, bk(1000)).unwrap();
        let mut other_service = ck(1000);
        other_service.service = Ipv4Addr::new(203, 0, 113, 11);
        let b = t.insert(other_service, "b").unwrap();
        assert_eq!(
            t.index_backend(b, bk(1000)),
            Err(TableError::BackendTupleTaken)
        );
        assert_eq!(t.find_backend(&bk(1000)), Some(a));
    }

    #[test]
    fn reindexed_flow_is_found_by_its_new_backend_key_only() {
        let mut t = FlowTable::new(4, [1, 2]);
        let id = t.insert(ck(1000), "a").unwrap();
        t.index_backend(id, bk(1000)).unwrap();
        let mut next = bk(1000);
        next.backend = "2001:db8:1::3".parse().unwrap();
        t.reindex_backend(id, next).unwrap();
        assert_eq!(t.find_backend(&bk(1000)), None);
        assert_eq!(t.find_backend(&next), Some(id));
        assert_eq!(t.keys(id), Some((ck(1000), Some(next))));
        assert_eq!(t.remove(id), Some("a"));
        assert_eq!(t.find_backend(&next), None);
    }

    #[test]
    fn reindexing_onto_a_tuple_in_use_keeps_both_flows_as_they_were() {
        let mut t = FlowTable::new(4, [1, 2]);
        let a = t.insert(ck(1000), "a").unwrap();
        t.index_backend(a, bk(1000)).unwrap();
        let mut other = ck(1000);
        other.service = Ipv4Addr::new(203, 0, 113, 11);
        let b = t.insert(other, "b").unwrap();
        let mut b_key = bk(1000);
        b_key.backend = "2001:db8:1::3".parse().unwrap();
        t.index_backend(b, b_key).unwrap();
        assert_eq!(
            t.reindex_backend(b, bk(1000)),
            Err(TableError::BackendTupleTaken)
        );
        assert_eq!(t.find_backend(&bk(1000)), Some(a));
        assert_eq!(t.find_backend(&b_key), Some(b));
    }

    #[test]
    fn same_client_tuple_twice_is_refused() {
        let mut t = FlowTable::new(4, [1, 2]);
        t.insert(ck(1000), "a").unwrap();
        assert_eq!(t.insert(ck(1000), "b"), Err(TableError::ClientTupleTaken));
    }

    #[test]
    fn table_refuses_past_its_capacity() {
        let mut t = FlowTable::new(2, [1, 2]);
        t.insert(ck(1), ()).unwrap();
        t.insert(ck(2), ()).unwrap();
        assert_eq!(t.insert(ck(3), ()), Err(TableError::Full));
    }
}
