//! What a worker learns from its engine's per-flow events, for the metrics: histograms of
//! the peek time and of the backend connect time, and counters per route.
//!
//! A route is named by its first host as written in the configuration (`hosts =
//! ["a.example", "*.a.example"]` is `a.example`), the default backend by [`DEFAULT_ROUTE`].
//! Routes come from the configuration, so the labels are bounded by it: a reload that
//! renames routes adds labels, which stay (with their counts) until a restart. A flow is
//! attributed to the route its name maps to in the table the worker holds when the event
//! is drained (so a reload between a flow's start and end counts it under the new table).
//! Flows that never reached a route (unknown names, bytes that are no protocol, peek
//! timeouts, limits) have no route: `kracauer_flows_ended_total` counts them by outcome.
//!
//! Everything here runs on the worker, per flow (never per packet), without locks; the
//! worker publishes a copy with its other counters about once a second.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use kracauer_core::engine::{Event, Outcome};
use kracauer_core::route::{Route, RouteTable};

use crate::config::Config;

/// The route label of flows that went to the `default_backend`. Not a host name, so it
/// cannot collide with a route's.
pub const DEFAULT_ROUTE: &str = "(default)";

/// Upper bounds (seconds) of the peek-time histogram's buckets: from a ClientHello in the
/// first segment to the 5 s peek timeout.
pub const PEEK_BUCKETS: [f64; 12] = [
    0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 5.0,
];
/// Upper bounds (seconds) of the connect-time histogram's buckets: a backend on the same
/// link answers within a millisecond; a retransmitted SYN takes a second or more.
pub const CONNECT_BUCKETS: [f64; 12] = [
    0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.1, 0.5, 1.0, 5.0,
];

/// A histogram with fixed buckets, filled without allocating.
#[derive(Debug, Clone, PartialEq)]
pub struct Histogram {
    bounds: &'static [f64],
    /// Observations per bucket (not cumulative); the last one is above every bound.
    counts: Vec<u64>,
    sum: f64,
}

impl Histogram {
    /// An empty histogram with these upper bounds (seconds, ascending).
    pub fn new(bounds: &'static [f64]) -> Self {
        Self {
            bounds,
            counts: vec![0; bounds.len() + 1],
            sum: 0.0,
        }
    }

    /// Counts one observation.
    pub fn observe(&mut self, d: Duration) {
        let s = d.as_secs_f64();
        let i = self
            .bounds
            .iter()
            .position(|&b| s <= b)
            .unwrap_or(self.bounds.len());
        if let Some(c) = self.counts.get_mut(i) {
            *c += 1;
        }
        self.sum += s;
    }

    /// Adds `other`'s observations (same bounds).
    pub fn add(&mut self, other: &Histogram) {
        for (a, b) in self.counts.iter_mut().zip(&other.counts) {
            *a += b;
        }
        self.sum += other.sum;
    }

    /// Observations in all.
    pub fn count(&self) -> u64 {
        self.counts.iter().sum()
    }

    /// The sum of all observations, in seconds.
    pub fn sum(&self) -> f64 {
        self.sum
    }

    /// `(upper bound, count)` per bucket, not cumulative, `+Inf` last.
    pub fn buckets(&self) -> Vec<(f64, u64)> {
        self.bounds
            .iter()
            .copied()
            .chain([f64::INFINITY])
            .zip(self.counts.iter().copied())
            .collect()
    }

    /// `(upper bound, cumulative count)` per bucket, `+Inf` last, as Prometheus wants.
    pub fn cumulative(&self) -> Vec<(f64, u64)> {
        let mut total = 0;
        self.bounds
            .iter()
            .copied()
            .chain([f64::INFINITY])
            .zip(&self.counts)
            .map(|(b, c)| {
                total += c;
                (b, total)
            })
            .collect()
    }
}

/// One route's counters.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct RouteStats {
    /// Flows that chose this route, counted when they end (any outcome).
    pub flows: u64,
    /// Of those, flows whose backend never answered or refused (`connect_timeout`,
    /// `backend_refused`).
    pub connect_failures: u64,
    /// Of those, flows the backend refused (RST or ICMPv6 error to the SYN).
    pub refused: u64,
    /// Payload bytes forwarded: `[to_backend, to_client]`.
    pub bytes: [u64; 2],
}

impl RouteStats {
    fn add(&mut self, o: &RouteStats) {
        self.flows += o.flows;
        self.connect_failures += o.connect_failures;
        self.refused += o.refused;
        self.bytes[0] += o.bytes[0];
        self.bytes[1] += o.bytes[1];
    }
}

/// A worker's per-flow observations.
#[derive(Debug, Clone, PartialEq)]
pub struct FlowStats {
    /// From the client's SYN to the name, per spliced flow.
    pub peek: Histogram,
    /// From the backend SYN to its SYN-ACK, per spliced flow.
    pub connect: Histogram,
    /// Per route label.
    pub routes: BTreeMap<Arc<str>, RouteStats>,
}

impl Default for FlowStats {
    fn default() -> Self {
        Self {
            peek: Histogram::new(&PEEK_BUCKETS),
            connect: Histogram::new(&CONNECT_BUCKETS),
            routes: BTreeMap::new(),
        }
    }
}

impl FlowStats {
    /// Adds another worker's observations.
    pub fn add(&mut self, o: &FlowStats) {
        self.peek.add(&o.peek);
        self.connect.add(&o.connect);
        for (label, stats) in &o.routes {
            match self.routes.get_mut(label) {
                Some(s) => s.add(stats),
                None => {
                    self.routes.insert(label.clone(), *stats);
                }
            }
        }
    }
}

/// The label of each route of a configuration, by the route's index.
#[derive(Debug, Clone)]
pub struct RouteLabels {
    by_index: Arc<[Arc<str>]>,
    default: Arc<str>,
}

impl Default for RouteLabels {
    /// No routes; the default backend's label.
    fn default() -> Self {
        Self {
            by_index: Arc::from(Vec::new()),
            default: Arc::from(DEFAULT_ROUTE),
        }
    }
}

impl RouteLabels {
    /// Labels for `c`'s routes: each route's first host as written.
    pub fn new(c: &Config) -> Self {
        Self {
            by_index: c
                .routes
                .iter()
                .map(|r| Arc::from(r.hosts.first().map_or("", String::as_str)))
                .collect(),
            default: Arc::from(DEFAULT_ROUTE),
        }
    }

    /// The label of `route` (`None`: no route).
    pub fn of(&self, route: Option<&Route>) -> Option<Arc<str>> {
        let route = route?;
        match route.index() {
            None => Some(self.default.clone()),
            Some(i) => self.by_index.get(i).cloned(),
        }
    }
}

/// Attributes flow events to routes and counts them. Owned by one worker.
#[derive(Debug)]
pub struct Observer {
    routes: Arc<RouteTable>,
    labels: RouteLabels,
    stats: FlowStats,
}

impl Observer {
    /// An observer attributing flows by `routes`, labelled by `labels`.
    pub fn new(routes: Arc<RouteTable>, labels: RouteLabels) -> Self {
        Self {
            routes,
            labels,
            stats: FlowStats::default(),
        }
    }

    /// A new route table (a reload); the counts stay.
    pub fn set_routes(&mut self, routes: Arc<RouteTable>, labels: RouteLabels) {
        self.routes = routes;
        self.labels = labels;
    }

    /// Counts `event`; returns the label of the route its flow took, if any.
    pub fn observe(&mut self, event: &Event) -> Option<Arc<str>> {
        match event {
            Event::Opened {
                name,
                peek_time,
                connect_time,
                ..
            } => {
                self.stats.peek.observe(*peek_time);
                self.stats.connect.observe(*connect_time);
                self.labels.of(self.routes.lookup_or_default(name.as_ref()))
            }
            Event::Closed {
                name,
                backend,
                bytes_to_backend,
                bytes_to_client,
                outcome,
                ..
            } => {
                backend.as_ref()?;
                let label = self
                    .labels
                    .of(self.routes.lookup_or_default(name.as_ref()))?;
                // The key is an `Arc`: a new entry allocates, an existing one does not.
                let s = self.stats.routes.entry(label.clone()).or_default();
                s.flows += 1;
                s.bytes[0] += bytes_to_backend;
                s.bytes[1] += bytes_to_client;
                if matches!(outcome, Outcome::ConnectTimeout | Outcome::BackendRefused) {
                    s.connect_failures += 1;
                }
                if *outcome == Outcome::BackendRefused {
                    s.refused += 1;
                }
                Some(label)
            }
            Event::BackendFailed { .. } => None,
        }
    }

    /// What it counted so far.
    pub fn stats(&self) -> &FlowStats {
        &self.stats
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use kracauer_core::engine::Protocol;
    use kracauer_core::name::HostName;
    use std::path::Path;

    const CONFIG: &str = "prefix = \"2001:db8:64::/96\"\ndefault_backend = \"2001:db8:1::9\"\n[[listen]]\naddress = \"203.0.113.10\"\ntls = [443]\n[[route]]\nhosts = [\"a.example\", \"*.a.example\"]\nbackend = \"2001:db8:1::2\"\n[[route]]\nhosts = [\"www.b.example\", \"b.example\"]\nbackend = \"2001:db8:1::3\"\n";

    fn observer() -> Observer {
        let c = crate::config::parse(CONFIG, Path::new("k.toml")).unwrap();
        let table = crate::routes::route_table(&c, Path::new("k.toml")).unwrap();
        Observer::new(Arc::new(table), RouteLabels::new(&c))
    }

    fn closed(name: Option<&str>, backend: bool, outcome: Outcome) -> Event {
        Event::Closed {
            protocol: Protocol::Tls,
            client: "198.51.100.2:40000".parse().unwrap(),
            service: "203.0.113.10:443".parse().unwrap(),
            name: name.map(|n| HostName::parse(n.as_bytes()).unwrap()),
            backend: backend.then(|| "[2001:db8:1::2]:443".parse().unwrap()),
            bytes_to_backend: 10,
            bytes_to_client: 100,
            duration: Duration::from_secs(1),
            outcome,
            peek: None,
        }
    }

    #[test]
    fn flows_are_counted_under_their_routes_first_host_as_written() {
        let mut o = observer();
        let label = o.observe(&closed(Some("x.a.example"), true, Outcome::Closed));
        assert_eq!(label.as_deref(), Some("a.example"));
        let label = o.observe(&closed(Some("b.example"), true, Outcome::BackendRefused));
        assert_eq!(label.as_deref(), Some("www.b.example"));
        o.observe(&closed(Some("b.example"), true, Outcome::ConnectTimeout));
        let label = o.observe(&closed(Some("c.example"), true, Outcome::Closed));
        assert_eq!(label.as_deref(), Some(DEFAULT_ROUTE));
        let routes = &o.stats().routes;
        assert_eq!(
            routes["a.example"],
            RouteStats {
                flows: 1,
                connect_failures: 0,
                refused: 0,
                bytes: [10, 100]
            }
        );
        let b = routes["www.b.example"];
        assert_eq!((b.flows, b.connect_failures, b.refused), (2, 2, 1));
        assert_eq!(routes[DEFAULT_ROUTE].flows, 1);
    }

    #[test]
    fn flows_that_reached_no_backend_have_no_route() {
        let mut o = observer();
        assert_eq!(
            o.observe(&closed(Some("a.example"), false, Outcome::PeekTimeout)),
            None
        );
        assert_eq!(
            o.observe(&closed(None, false, Outcome::NotRecognised)),
            None
        );
        assert!(o.stats().routes.is_empty());
    }

    #[test]
    fn opened_flows_fill_the_peek_and_connect_histograms() {
        let mut o = observer();
        let label = o.observe(&Event::Opened {
            protocol: Protocol::Tls,
            client: "198.51.100.2:40000".parse().unwrap(),
            service: "203.0.113.10:443".parse().unwrap(),
            name: Some(HostName::parse(b"a.example").unwrap()),
            backend: "[2001:db8:1::2]:443".parse().unwrap(),
            peek_time: Duration::from_millis(3),
            connect_time: Duration::from_micros(300),
        });
        assert_eq!(label.as_deref(), Some("a.example"));
        let s = o.stats();
        assert_eq!((s.peek.count(), s.connect.count()), (1, 1));
        let peek = s.peek.cumulative();
        assert_eq!(peek[3], (0.005, 1), "3 ms is in the 5 ms bucket: {peek:?}");
        assert_eq!(peek[2], (0.0025, 0));
        assert_eq!(s.connect.cumulative()[2], (0.0005, 1));
        assert_eq!(peek.last(), Some(&(f64::INFINITY, 1)));
    }

    #[test]
    fn histograms_of_two_workers_add_up() {
        let mut a = Histogram::new(&PEEK_BUCKETS);
        let mut b = Histogram::new(&PEEK_BUCKETS);
        a.observe(Duration::from_secs(10));
        b.observe(Duration::from_millis(1));
        a.add(&b);
        assert_eq!(a.count(), 2);
        assert!((a.sum() - 10.001).abs() < 1e-9);
        assert_eq!(a.cumulative()[1], (0.001, 1));
        assert_eq!(a.cumulative().last(), Some(&(f64::INFINITY, 2)));
    }
}
