//! Backend pools: the servers behind one route, their health, and the order in which a
//! client tries them (DESIGN.md, "The TCP splice", step 3).
//!
//! **Choice.** Rendezvous (highest random weight) hashing: every backend gets a score
//! from a hash of the client and the backend's address, and the client goes to the
//! highest score among the healthy primaries. A change of pool moves only the clients
//! whose best backend came or went (1/(N+1) of them when a pool grows from N to N+1), a
//! backend that goes down moves only its own clients, and when it comes back they return.
//! Weights use the logarithmic method (score = −w / ln u, u the hash as a number in
//! (0, 1)), which keeps both properties and gives each backend w / Σw of the clients.
//! Backups are tried only after every healthy primary, and are chosen first only when no
//! primary is healthy. Rendezvous rather than Maglev: pools are small (O(N) per new
//! connection, no table to rebuild on every health change), weights need no table
//! resolution, and the full order (not just the winner) comes for free, which the
//! failover needs.
//!
//! **The key** is fixed: SipHash-1-3 under [`PLACEMENT_KEY`], over the backend's address
//! and the client's IPv4 address ([`HashOn::Address`]) or its whole 4-tuple
//! ([`HashOn::Tuple`]). Every worker has its own secret seed, but they must agree on
//! placement (a client's connections are spread over workers by port), and so should a
//! restarted daemon and a second Kracauer behind the same ECMP route: a fixed key gives
//! all of that. What an attacker gains from knowing it is little: to land on a chosen
//! backend it must complete a TCP handshake from an address that hashes there, and it
//! can find such an address just as well by asking and looking at the answers.
//!
//! **Health** is a set of backends marked down ([`Health`]), indexed by each backend's
//! slot in the table; the daemon decides it (passive failures reported by every worker,
//! active checks) and hands the same set to every engine.

use core::hash::Hasher;
use std::net::Ipv6Addr;

use arrayvec::ArrayVec;
use siphasher::sip::SipHasher13;

use crate::base::ClientKey;

/// Most backends one connection tries before it gives up: the first and up to three
/// failovers.
pub const MAX_ATTEMPTS: usize = 4;

/// The fixed SipHash key of the placement hash (`"kracauer"`, `"backends"` as
/// little-endian words). Changing it moves every client: never change it.
pub const PLACEMENT_KEY: [u64; 2] = [0x7265_7561_6361_726b, 0x7364_6e65_6b63_6162];

/// What the placement hash reads of a connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum HashOn {
    /// The client's IPv4 address: all its connections go to one backend (session
    /// caches, rate limits).
    #[default]
    Address,
    /// Client address and port, service address and port: connections spread evenly
    /// even from one address (a large NAT).
    Tuple,
}

/// One backend of a route, as configured.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BackendSpec {
    pub address: Ipv6Addr,
    /// Relative share of the clients (at least 1).
    pub weight: u32,
    /// Used only after every healthy primary.
    pub backup: bool,
}

impl BackendSpec {
    /// A primary backend of weight 1.
    pub const fn new(address: Ipv6Addr) -> Self {
        Self {
            address,
            weight: 1,
            backup: false,
        }
    }
}

/// One backend in a built table.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Backend {
    address: Ipv6Addr,
    weight: u32,
    backup: bool,
    slot: u32,
}

impl Backend {
    /// The backend's address.
    pub fn address(&self) -> Ipv6Addr {
        self.address
    }

    /// Its weight.
    pub fn weight(&self) -> u32 {
        self.weight
    }

    /// Whether it is a backup.
    pub fn is_backup(&self) -> bool {
        self.backup
    }

    /// Its index in the table's [`Health`] set.
    pub fn slot(&self) -> u32 {
        self.slot
    }
}

/// A backend a connection may try: its address and health slot.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Candidate {
    pub address: Ipv6Addr,
    pub slot: u32,
}

/// The backends a connection tries, best first (at most [`MAX_ATTEMPTS`]).
pub type Candidates = ArrayVec<Candidate, MAX_ATTEMPTS>;

/// The backends of one route and how clients are placed on them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Pool {
    backends: Box<[Backend]>,
    hash: HashOn,
}

impl Pool {
    /// A pool of `specs`, its health slots counted from 0 until the table places it.
    /// Weights of 0 count as 1.
    pub(super) fn new(specs: &[BackendSpec], hash: HashOn) -> Self {
        let backends = specs
            .iter()
            .zip(0..)
            .map(|(s, slot)| Backend {
                address: s.address,
                weight: s.weight.max(1),
                backup: s.backup,
                slot,
            })
            .collect();
        Self { backends, hash }
    }

    /// Gives the backends the health slots from `first` on; returns the next free one.
    pub(super) fn place(&mut self, first: u32) -> u32 {
        let mut next = first;
        for b in self.backends.iter_mut() {
            b.slot = next;
            next += 1;
        }
        next
    }

    /// The backends in configuration order.
    pub fn backends(&self) -> &[Backend] {
        &self.backends
    }

    /// What the placement hash reads.
    pub fn hash_on(&self) -> HashOn {
        self.hash
    }

    /// The backends `key`'s connection tries, in its order: the healthy primaries by
    /// score, then the healthy backups by score. Empty when none is healthy.
    pub fn candidates(&self, key: &ClientKey, health: &Health) -> Candidates {
        let mut out = Candidates::new();
        if let [only] = &*self.backends {
            // A pool of one: no hashing at all.
            if health.is_up(only.slot) {
                out.push(candidate(only));
            }
            return out;
        }
        let client = self.client_word(key);
        for backup in [false, true] {
            let mut best: ArrayVec<(f64, &Backend), MAX_ATTEMPTS> = ArrayVec::new();
            let eligible = self
                .backends
                .iter()
                .filter(|b| b.backup == backup && health.is_up(b.slot));
            for b in eligible {
                let s = score(client, b);
                let at = best.iter().position(|(t, _)| s > *t).unwrap_or(best.len());
                if at < MAX_ATTEMPTS {
                    if best.is_full() {
                        best.pop();
                    }
                    best.insert(at, (s, b));
                }
            }
            for (_, b) in best {
                if out.try_push(candidate(b)).is_err() {
                    return out;
                }
            }
        }
        out
    }

    /// The part of `key` the placement hash reads, as one word.
    fn client_word(&self, key: &ClientKey) -> u64 {
        let address = u64::from(u32::from(key.client));
        match self.hash {
            HashOn::Address => address,
            HashOn::Tuple => {
                let mut h = SipHasher13::new_with_keys(PLACEMENT_KEY[0], PLACEMENT_KEY[1]);
                h.write_u64((address << 32) | u64::from(u32::from(key.service)));
                h.write_u32((u32::from(key.client_port) << 16) | u32::from(key.service_port));
                h.finish()
            }
        }
    }
}

fn candidate(b: &Backend) -> Candidate {
    Candidate {
        address: b.address,
        slot: b.slot,
    }
}

/// Backend `b`'s rendezvous score for the client word `client`: −w / ln u.
fn score(client: u64, b: &Backend) -> f64 {
    let mut h = SipHasher13::new_with_keys(PLACEMENT_KEY[0], PLACEMENT_KEY[1]);
    h.write_u128(u128::from(b.address));
    h.write_u64(client);
    // 53 random bits, centred in their interval: u is never 0 or 1.
    let u = ((h.finish() >> 11) as f64 + 0.5) / (1u64 << 53) as f64;
    -f64::from(b.weight) / u.ln()
}

/// Which backends of a table are down, by slot. The default has every backend up.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Health {
    down: Vec<u64>,
}

impl Health {
    /// Every backend up.
    pub fn all_up() -> Self {
        Self::default()
    }

    /// Marks the backend in `slot` up or down.
    pub fn set(&mut self, slot: u32, up: bool) {
        let (word, bit) = (slot as usize / 64, 1u64 << (slot % 64));
        if !up && self.down.len() <= word {
            self.down.resize(word + 1, 0);
        }
        if let Some(w) = self.down.get_mut(word) {
            if up {
                *w &= !bit;
            } else {
                *w |= bit;
            }
        }
    }

    /// Whether the backend in `slot` is up (slots never marked are).
    pub fn is_up(&self, slot: u32) -> bool {
        let (word, bit) = (slot as usize / 64, 1u64 << (slot % 64));
        self.down.get(word).is_none_or(|w| w & bit == 0)
    }
}

#[cfg(test)]
mod tests {
    use std::net::Ipv4Addr;

    use super::*;

    fn key(client: u32) -> ClientKey {
        ClientKey {
            client: Ipv4Addr::from(0xc633_6400 + client),
            client_port: 40000,
            service: Ipv4Addr::new(203, 0, 113, 10),
            service_port: 443,
        }
    }

    fn backend(n: u16) -> BackendSpec {
        BackendSpec::new(Ipv6Addr::new(0x2001, 0xdb8, 1, 0, 0, 0, 0, n))
    }

    fn first(pool: &Pool, client: u32, health: &Health) -> Option<Ipv6Addr> {
        pool.candidates(&key(client), health)
            .first()
            .map(|c| c.address)
    }

    #[test]
    fn health_slots_start_up_and_follow_what_is_set() {
        let mut h = Health::all_up();
        assert!(h.is_up(0) && h.is_up(1000));
        h.set(70, false);
        assert!(!h.is_up(70) && h.is_up(6) && h.is_up(71));
        h.set(70, true);
        assert!(h.is_up(70));
    }

    #[test]
    fn every_candidate_is_distinct_and_ordered_primaries_before_backups() {
        let mut specs: Vec<_> = (1..=6).map(backend).collect();
        specs[4].backup = true;
        specs[5].backup = true;
        let pool = Pool::new(&specs, HashOn::Address);
        for c in 0..200 {
            let list = pool.candidates(&key(c), &Health::all_up());
            assert_eq!(list.len(), MAX_ATTEMPTS);
            let mut seen: Vec<_> = list.iter().map(|c| c.address).collect();
            assert!(
                seen.iter()
                    .all(|a| !specs[4..].iter().any(|s| s.address == *a))
            );
            seen.sort();
            seen.dedup();
            assert_eq!(seen.len(), MAX_ATTEMPTS);
        }
    }

    #[test]
    fn placement_does_not_depend_on_the_order_backends_are_written_in() {
        let specs: Vec<_> = (1..=5).map(backend).collect();
        let mut reversed = specs.clone();
        reversed.reverse();
        let a = Pool::new(&specs, HashOn::Address);
        let b = Pool::new(&reversed, HashOn::Address);
        for c in 0..500 {
            assert_eq!(
                first(&a, c, &Health::all_up()),
                first(&b, c, &Health::all_up())
            );
        }
    }
}
