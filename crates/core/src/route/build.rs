//! Building a [`RouteTable`] from configuration: names normalised (IDNA, case, trailing
//! dot), wildcards checked, duplicates, bad ports and empty pools refused with errors
//! that name the route and the name as written; every backend given its health slot.

use std::collections::BTreeMap;
use std::net::Ipv6Addr;

use idna::AsciiDenyList;

use super::pool::{BackendSpec, HashOn, Pool};
use super::{Route, RouteTable, Slot};
use crate::name::{HostName, NameError};

/// One `[[route]]` of the configuration, as written.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RouteSpec {
    /// Exact names and `*.suffix` wildcards, in any case, Unicode or A-labels.
    pub hosts: Vec<String>,
    /// Where connections for these names go: one backend or more (a pool).
    pub backends: Vec<BackendSpec>,
    /// What the pool's placement hash reads.
    pub hash: HashOn,
    /// Service port → backend port; ports not listed keep their number.
    pub ports: BTreeMap<u16, u16>,
}

/// Why a configured name is not usable.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum BadNameReason {
    #[error(transparent)]
    Name(#[from] NameError),
    #[error("it cannot be converted to an A-label (IDNA, UTS #46)")]
    Idna,
    #[error("a wildcard must be one leading \"*.\" label, as in \"*.a.example\"")]
    Wildcard,
}

/// Why a route cannot go into the table. Routes are named `route[i]` by their position
/// (from 0) in the order they were added, which is their order in the configuration.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RouteError {
    #[error("route[{route}] has no hosts")]
    NoHosts { route: usize },
    #[error("route[{route}]: host {name:?} is not valid: {reason}")]
    BadName {
        route: usize,
        name: String,
        reason: BadNameReason,
    },
    #[error(
        "route[{route}]: host {name:?} is the same as host {first_name:?} of route[{first_route}] (both are {normalised:?})"
    )]
    Duplicate {
        first_route: usize,
        first_name: String,
        route: usize,
        name: String,
        normalised: String,
    },
    #[error("route[{route}]: port {from} = {to}: port 0 cannot be remapped or be a backend port")]
    PortZero { route: usize, from: u16, to: u16 },
    #[error("route[{route}] has no backend")]
    NoBackends { route: usize },
    #[error("route[{route}]: backend {address} is listed twice")]
    DuplicateBackend { route: usize, address: Ipv6Addr },
}

/// Collects routes for a [`RouteTable`], refusing bad ones as they come.
///
/// ```
/// # use kracauer_core::route::{BackendSpec, HashOn, RouteSpec, RouteTable};
/// # fn main() -> Result<(), kracauer_core::route::RouteError> {
/// let table = RouteTable::builder()
///     .default_backend("2001:db8:1::9".parse().unwrap())
///     .route(RouteSpec {
///         hosts: vec!["a.example".into(), "*.a.example".into()],
///         backends: vec![
///             BackendSpec::new("2001:db8:1::2".parse().unwrap()),
///             BackendSpec { weight: 2, ..BackendSpec::new("2001:db8:1::3".parse().unwrap()) },
///         ],
///         hash: HashOn::Address,
///         ports: [(443, 8443)].into(),
///     })?
///     .build();
/// # Ok(()) }
/// ```
#[derive(Debug, Default)]
pub struct RouteTableBuilder {
    table: RouteTable,
    /// The hosts of each added route as written, for error messages.
    written: Vec<Vec<String>>,
}

impl RouteTableBuilder {
    /// Unknown names (and requests without one) go to `backend`, on the service port.
    pub fn default_backend(self, backend: Ipv6Addr) -> Self {
        self.default_pool(&[BackendSpec::new(backend)])
    }

    /// Unknown names (and requests without one) go to a pool of `backends`, placed by
    /// client address, on the service port. An empty list means no default.
    pub fn default_pool(mut self, backends: &[BackendSpec]) -> Self {
        self.table.default = (!backends.is_empty()).then(|| Route {
            index: None,
            label: "default".into(),
            pool: Pool::new(backends, HashOn::Address),
            ports: Box::new([]),
        });
        self
    }

    /// Adds a route (see [`add`](Self::add)); for chaining with `?`.
    pub fn route(mut self, spec: RouteSpec) -> Result<Self, RouteError> {
        self.add(spec)?;
        Ok(self)
    }

    /// Adds a route. On error the builder is unchanged, as if the route had not been
    /// offered (its index is not used up either).
    pub fn add(&mut self, spec: RouteSpec) -> Result<(), RouteError> {
        let route = self.table.routes.len();
        if spec.hosts.is_empty() {
            return Err(RouteError::NoHosts { route });
        }
        if let Some((&from, &to)) = spec.ports.iter().find(|&(&f, &t)| f == 0 || t == 0) {
            return Err(RouteError::PortZero { route, from, to });
        }
        if spec.backends.is_empty() {
            return Err(RouteError::NoBackends { route });
        }
        for (i, b) in spec.backends.iter().enumerate() {
            if spec.backends[..i].iter().any(|a| a.address == b.address) {
                return Err(RouteError::DuplicateBackend {
                    route,
                    address: b.address,
                });
            }
        }
        for (host, written) in spec.hosts.iter().enumerate() {
            if let Err(e) = self.insert(route, host, written, &spec.hosts) {
                // Take back this route's names; an error path may cost a pass over the table.
                self.table.exact.retain(|_, slot| slot.route != route);
                self.table.wildcard.retain(|_, slot| slot.route != route);
                return Err(e);
            }
        }
        let label = match spec.hosts.first().map(|h| normalise(h)) {
            Some(Ok((true, name))) => format!("*.{name}"),
            Some(Ok((false, name))) => name.as_str().to_owned(),
            _ => format!("route[{route}]"),
        };
        self.table.routes.push(Route {
            index: Some(route),
            label: label.into(),
            pool: Pool::new(&spec.backends, spec.hash),
            ports: spec.ports.into_iter().collect(),
        });
        self.written.push(spec.hosts);
        Ok(())
    }

    /// The finished table, every backend given its health slot: the routes' in order,
    /// then the default's.
    pub fn build(mut self) -> RouteTable {
        let t = &mut self.table;
        let mut next = 0;
        for route in t.routes.iter_mut().chain(t.default.as_mut()) {
            next = route.pool.place(next);
        }
        t.slots = next;
        self.table
    }

    /// Normalises one name and puts it in its map, or says why not.
    fn insert(
        &mut self,
        route: usize,
        host: usize,
        written: &str,
        this_route: &[String],
    ) -> Result<(), RouteError> {
        let (wildcard, name) = normalise(written).map_err(|reason| RouteError::BadName {
            route,
            name: written.to_owned(),
            reason,
        })?;
        let map = if wildcard {
            &mut self.table.wildcard
        } else {
            &mut self.table.exact
        };
        if let Some(&first) = map.get(name.as_str()) {
            let first_name = if first.route == route {
                this_route.get(first.host)
            } else {
                self.written
                    .get(first.route)
                    .and_then(|h| h.get(first.host))
            };
            let prefix = if wildcard { "*." } else { "" };
            return Err(RouteError::Duplicate {
                first_route: first.route,
                first_name: first_name.cloned().unwrap_or_default(),
                route,
                name: written.to_owned(),
                normalised: format!("{prefix}{name}"),
            });
        }
        map.insert(name.as_str().into(), Slot { route, host });
        Ok(())
    }
}

/// `*.Bücher.Example.` → `(true, "xn--bcher-kva.example")`.
fn normalise(written: &str) -> Result<(bool, HostName), BadNameReason> {
    let (wildcard, name) = match written.strip_prefix("*.") {
        Some(rest) => (true, rest),
        None => (false, written),
    };
    if name.contains('*') {
        return Err(BadNameReason::Wildcard);
    }
    let name = if name.is_ascii() {
        HostName::parse(name.as_bytes())?
    } else {
        let ascii = idna::domain_to_ascii_cow(name.as_bytes(), AsciiDenyList::URL)
            .map_err(|_| BadNameReason::Idna)?;
        HostName::parse(ascii.as_bytes())?
    };
    Ok((wildcard, name))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unicode_wildcard_is_normalised_to_its_a_label_suffix() {
        let (wildcard, name) = normalise("*.Bücher.Example.").unwrap();
        assert!(wildcard);
        assert_eq!(name.as_str(), "xn--bcher-kva.example");
    }

    #[test]
    fn ascii_names_do_not_go_through_idna() {
        // UTS #46 would refuse this bogus A-label; as ASCII it is taken as written.
        let (_, name) = normalise("xn--zz.example").unwrap();
        assert_eq!(name.as_str(), "xn--zz.example");
    }

    #[test]
    fn misplaced_stars_are_wildcard_errors() {
        for bad in [
            "*",
            "a.*.example",
            "*.*.example",
            "**.example",
            "*a.example",
        ] {
            assert_eq!(
                normalise(bad).unwrap_err(),
                BadNameReason::Wildcard,
                "{bad}"
            );
        }
    }
}
