//! The name table: host name → route (exact names, `*.` wildcards, a default), each
//! route a pool of backends (`pool`: placement, weights, backups, health).
//!
//! A [`RouteTable`] is built once from the configuration with [`RouteTable::builder`]
//! (see [`RouteTableBuilder`]) and then only read. Lookups take a name already validated
//! and normalised by [`HostName::parse`] (what both peekers return):
//!
//! - an **exact** name matches itself only;
//! - a **wildcard** `*.a.example` matches every name that ends in `.a.example`, at any
//!   depth (`x.a.example`, `y.x.a.example`), but not `a.example` itself;
//! - an exact name beats any wildcard, and among wildcards the longest suffix wins;
//! - names are compared case-insensitively (both sides are lower-cased), and
//!   internationalised names in the configuration are turned into A-labels with IDNA
//!   (`bücher.example` → `xn--bcher-kva.example`), which is what clients send.
//!
//! Cost: one hash lookup for the exact name, then one per suffix of the queried name
//! (`b.c.example`, `c.example`, `example` for `a.b.c.example`), so it is bounded by the
//! label count of the query (at most 127) and does not grow with the table. Nothing is
//! allocated per lookup.
//!
//! Hashing: the maps use std's SipHash with fixed zero keys
//! (`BuildHasherDefault<DefaultHasher>`) instead of `RandomState`. `RandomState` asks the
//! OS for random keys, which the sans-IO core must not do, and randomness buys nothing
//! here: hash flooding needs the attacker to choose the *keys*, and the keys all come
//! from the operator's configuration. An attacker only chooses queries, and a query costs
//! one probe sequence in a table whose shape the operator fixed. SipHash (rather than a
//! weaker hand-written hash) keeps the probe sequences short for any set of names.

mod build;
mod pool;

use core::fmt;
use std::collections::HashMap;
use std::hash::{BuildHasherDefault, DefaultHasher};
use std::net::Ipv6Addr;

use crate::name::HostName;

pub use build::{BadNameReason, RouteError, RouteSpec, RouteTableBuilder};
pub use pool::{
    Backend, BackendSpec, Candidate, Candidates, HashOn, Health, MAX_ATTEMPTS, PLACEMENT_KEY, Pool,
};

/// Deterministic hasher for the name maps (see the module documentation).
type NameHasher = BuildHasherDefault<DefaultHasher>;

/// Where a configured name came from: route index and host index within that route.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Slot {
    route: usize,
    host: usize,
}

/// One route: a pool of backends and how service ports map to backend ports.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Route {
    index: Option<usize>,
    /// The first host, normalised (`*.a.example` for a wildcard), or `default`.
    label: Box<str>,
    pool: Pool,
    /// `(service port, backend port)`, sorted by service port, no duplicates.
    ports: Box<[(u16, u16)]>,
}

impl Route {
    /// The first backend's address, in configuration order (the only one of a pool of
    /// one). Connections do not use it: they take [`Pool::candidates`].
    pub fn backend(&self) -> Ipv6Addr {
        self.pool
            .backends()
            .first()
            .map_or(Ipv6Addr::UNSPECIFIED, |b| b.address())
    }

    /// The route's backends and how clients are placed on them.
    pub fn pool(&self) -> &Pool {
        &self.pool
    }

    /// A name for the route in logs and metrics: its first host, normalised (with `*.`
    /// for a wildcard), or `default` for the default route. Unique within a table.
    pub fn label(&self) -> &str {
        &self.label
    }

    /// The backend port for a connection to `service_port`: the service port itself
    /// unless the route remaps it.
    pub fn backend_port(&self, service_port: u16) -> u16 {
        self.ports
            .binary_search_by_key(&service_port, |&(from, _)| from)
            .map_or(service_port, |i| self.ports[i].1)
    }

    /// The remapped ports, `(service port, backend port)`, sorted by service port.
    pub fn port_map(&self) -> &[(u16, u16)] {
        &self.ports
    }

    /// The route's position in the configuration (`route[i]`), `None` for the default.
    pub fn index(&self) -> Option<usize> {
        self.index
    }

    /// Whether this is the default route (the `default_backend`).
    pub fn is_default(&self) -> bool {
        self.index.is_none()
    }
}

/// The name table. Build it with [`RouteTable::builder`].
#[derive(Debug, Clone, Default)]
pub struct RouteTable {
    routes: Vec<Route>,
    exact: HashMap<Box<str>, Slot, NameHasher>,
    /// Keyed by the suffix without `*.`: `*.a.example` is stored as `a.example`.
    wildcard: HashMap<Box<str>, Slot, NameHasher>,
    default: Option<Route>,
    /// Backends in the table (routes and default): the size of its [`Health`] set.
    slots: u32,
}

impl RouteTable {
    /// A builder for a table: add the default backend and the routes, then build.
    pub fn builder() -> RouteTableBuilder {
        RouteTableBuilder::default()
    }

    /// The route for `name`, or `None` when no exact name or wildcard matches.
    pub fn lookup(&self, name: &HostName) -> Option<&Route> {
        self.lookup_normalised(name.as_str())
    }

    /// Like [`lookup`](Self::lookup) for a string that is already normalised (lower-case,
    /// no trailing dot). A string that is not normalised simply does not match.
    pub fn lookup_normalised(&self, name: &str) -> Option<&Route> {
        if let Some(slot) = self.exact.get(name) {
            return self.routes.get(slot.route);
        }
        if self.wildcard.is_empty() {
            return None;
        }
        let mut rest = name;
        while let Some((_, suffix)) = rest.split_once('.') {
            if let Some(slot) = self.wildcard.get(suffix) {
                return self.routes.get(slot.route);
            }
            rest = suffix;
        }
        None
    }

    /// The route for `name` if one matches, else the default route (if configured).
    /// `None` as the name (HTTP/1.0 without `Host`, an IP literal, no SNI) goes straight
    /// to the default.
    pub fn lookup_or_default(&self, name: Option<&HostName>) -> Option<&Route> {
        name.and_then(|n| self.lookup(n)).or(self.default.as_ref())
    }

    /// The default route, if a default backend is configured.
    pub fn default_route(&self) -> Option<&Route> {
        self.default.as_ref()
    }

    /// The routes in configuration order.
    pub fn routes(&self) -> &[Route] {
        &self.routes
    }

    /// Every route, the default last if there is one.
    pub fn all_routes(&self) -> impl Iterator<Item = &Route> + '_ {
        self.routes.iter().chain(self.default.as_ref())
    }

    /// Number of backends in the table, every route's and the default's: slots of a
    /// [`Health`] set run from 0 to this.
    pub fn backend_slots(&self) -> u32 {
        self.slots
    }

    /// The number of names (exact and wildcard) in the table.
    pub fn len(&self) -> usize {
        self.exact.len() + self.wildcard.len()
    }

    /// Whether the table has no names (it may still have a default).
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Every name with its route, sorted the way DNS reads: by labels from the right,
    /// an exact name just before its own wildcard (`a.example`, `*.a.example`,
    /// `b.a.example`). For `kracauer check`.
    pub fn entries(&self) -> Vec<RouteEntry<'_>> {
        let exact = self.exact.iter().map(|(k, s)| (false, k, s));
        let wild = self.wildcard.iter().map(|(k, s)| (true, k, s));
        let mut list: Vec<_> = exact
            .chain(wild)
            .filter_map(|(wildcard, name, slot)| {
                Some(RouteEntry {
                    name,
                    wildcard,
                    route: self.routes.get(slot.route)?,
                })
            })
            .collect();
        list.sort_unstable_by(|a, b| {
            a.name
                .rsplit('.')
                .cmp(b.name.rsplit('.'))
                .then(a.wildcard.cmp(&b.wildcard))
        });
        list
    }
}

/// One line of the resolved table: a name (or wildcard) and its route.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RouteEntry<'a> {
    name: &'a str,
    wildcard: bool,
    route: &'a Route,
}

impl<'a> RouteEntry<'a> {
    /// The normalised name; for a wildcard, the suffix after `*.`.
    pub fn name(&self) -> &'a str {
        self.name
    }

    /// Whether the entry is a `*.` wildcard.
    pub fn is_wildcard(&self) -> bool {
        self.wildcard
    }

    /// The route the name leads to.
    pub fn route(&self) -> &'a Route {
        self.route
    }
}

impl fmt::Display for RouteEntry<'_> {
    /// `*.a.example -> [2001:db8:1::2] (route[0]) ports 443->8443`
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.wildcard {
            f.write_str("*.")?;
        }
        write!(f, "{} -> {}", self.name, self.route)
    }
}

impl fmt::Display for Route {
    /// `[2001:db8:1::2] (route[0]) ports 443->8443, 80->8080`; a pool lists every backend
    /// with its weight and role and how clients are hashed:
    /// `[2001:db8:1::2], [2001:db8:1::3] weight 2, [2001:db8:1::9] backup (route[0]) hash tuple`
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (n, b) in self.pool.backends().iter().enumerate() {
            let sep = if n == 0 { "" } else { ", " };
            write!(f, "{sep}[{}]", b.address())?;
            if b.weight() != 1 {
                write!(f, " weight {}", b.weight())?;
            }
            if b.is_backup() {
                f.write_str(" backup")?;
            }
        }
        if let Some(i) = self.index {
            write!(f, " (route[{i}])")?;
        }
        if self.pool.hash_on() == HashOn::Tuple {
            f.write_str(" hash tuple")?;
        }
        for (n, (from, to)) in self.ports.iter().enumerate() {
            let sep = if n == 0 { " ports " } else { ", " };
            write!(f, "{sep}{from}->{to}")?;
        }
        Ok(())
    }
}

impl fmt::Display for RouteTable {
    /// The sorted entries, one a line, then the default backend (or that there is none).
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for entry in self.entries() {
            writeln!(f, "{entry}")?;
        }
        match &self.default {
            Some(route) => writeln!(f, "default -> {route}"),
            None => writeln!(f, "default -> none (unknown names are refused)"),
        }
    }
}
