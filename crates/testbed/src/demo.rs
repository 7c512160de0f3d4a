//! What `kracauer-demo` shows, once kracauer runs in a testbed's router namespace: the
//! testbed's shape, then one line per request saying what the client asked and what the
//! backend saw. How kracauer is started is the caller's business (the daemon runs its
//! engine in process; the tests run the binary), so the testbed never depends on the
//! daemon.

use std::io::{self, Write};

use crate::Error;
use crate::client::{Reply, embedded_v4};
use crate::quic::{H3Backend, H3Error, H3Reply};
use crate::topology::{
    BACKEND_A, BACKEND_B, CLIENT_V4, HTTP_PORT, HTTPS_PORT, NAMES_A, PREFIX, SERVICE_V4, TUN,
    Topology,
};

/// One request of the demo and what came of it.
#[derive(Debug)]
pub struct Fetch {
    /// What the client asked, e.g. `https://a.example/`.
    pub url: String,
    /// Whether kracauer should refuse it (a name no route knows).
    pub refused_expected: bool,
    /// The reply, or why there was none.
    pub outcome: Result<Reply, Error>,
}

impl Fetch {
    /// Whether the outcome is the expected one: an answer from the backend that saw the
    /// client's address embedded and its port, or (for an unknown name) a refusal.
    pub fn as_expected(&self) -> bool {
        match (&self.outcome, self.refused_expected) {
            (Ok(r), false) => r.seen().is_some_and(|s| {
                embedded_v4(s.peer) == Some(CLIENT_V4) && s.peer.port() == r.local.port()
            }),
            (Ok(r), true) => r.status == 421,
            (Err(Error::Tls(rustls::Error::AlertReceived(_))), true) => true,
            (Err(_), _) => false,
        }
    }

    /// The line the demo prints for this request.
    pub fn line(&self) -> String {
        let url = format!("{:<24}", self.url);
        match &self.outcome {
            Ok(r) => match r.seen() {
                Some(s) => {
                    let v4 = embedded_v4(s.peer)
                        .map(|v4| v4.to_string())
                        .unwrap_or_else(|| "?".into());
                    let port = if s.peer.port() == r.local.port() {
                        "the client's own port".to_owned()
                    } else {
                        format!("the client used {}", r.local.port())
                    };
                    format!(
                        "{url} -> backend {} saw {} = {v4} port {} ({port})",
                        s.local.ip(),
                        s.peer.ip(),
                        s.peer.port()
                    )
                }
                None => format!(
                    "{url} -> refused by kracauer: HTTP {} ({}); no backend contacted",
                    r.status,
                    r.body
                        .lines()
                        .next()
                        .unwrap_or_default()
                        .trim()
                        .trim_end_matches('.')
                ),
            },
            Err(Error::Tls(rustls::Error::AlertReceived(alert))) => {
                let alert = match alert {
                    rustls::AlertDescription::UnrecognisedName => "unrecognized_name".to_owned(),
                    other => format!("{other:?}"),
                };
                format!("{url} -> refused by kracauer: TLS alert {alert}; no backend contacted")
            }
            Err(e) => format!("{url} -> FAILED: {e}"),
        }
    }
}

/// Prints the testbed's shape to `out`, makes the demo's requests from the client, and
/// prints a line for each. Returns the requests; the demo succeeded when every one
/// [`Fetch::as_expected`] and no backend was contacted for the refused ones.
pub fn narrate(tb: &Topology, out: &mut impl Write) -> io::Result<Vec<Fetch>> {
    writeln!(out, "testbed {}: four network namespaces", tb.tag())?;
    writeln!(
        out,
        "  client   {CLIENT_V4}, IPv4 only, default route via the router"
    )?;
    writeln!(
        out,
        "  router   kracauer on {TUN}: {SERVICE_V4} tls {HTTPS_PORT} http {HTTP_PORT}, prefix {PREFIX}"
    )?;
    writeln!(
        out,
        "  backend  {BACKEND_A}  {}  (IPv6 only; HTTPS with a throwaway CA, HTTP)",
        NAMES_A.join(" ")
    )?;
    writeln!(out, "  backend  {BACKEND_B}  b.example")?;
    writeln!(out)?;
    let mut fetches = Vec::new();
    for (scheme, name, refused) in [
        ("https", "a.example", false),
        ("https", "b.example", false),
        ("http", "www.a.example", false),
        ("http", "b.example", false),
        ("https", "unknown.example", true),
        ("http", "unknown.example", true),
    ] {
        let before = tb.contacts_a.len() + tb.contacts_b.len();
        let outcome = match scheme {
            "https" => tb.https_get(name, "/"),
            _ => tb.http_get(name, "/"),
        };
        let mut fetch = Fetch {
            url: format!("{scheme}://{name}/"),
            refused_expected: refused,
            outcome,
        };
        if refused && tb.contacts_a.len() + tb.contacts_b.len() != before {
            fetch.outcome = Err(Error::Setup("a backend was contacted".into()));
        }
        writeln!(out, "{}", fetch.line())?;
        fetches.push(fetch);
    }
    Ok(fetches)
}

/// One HTTP/3 request of the demo and what came of it.
#[derive(Debug)]
pub struct QuicFetch {
    /// What the client asked, e.g. `h3://a.example/whoami`.
    pub url: String,
    pub refused_expected: bool,
    pub outcome: Result<Result<H3Reply, H3Error>, Error>,
}

impl QuicFetch {
    /// The IPv4 address embedded in what the backend saw.
    fn embedded(ip: &str) -> Option<std::net::Ipv4Addr> {
        let ip: std::net::IpAddr = ip.parse().ok()?;
        embedded_v4(std::net::SocketAddr::new(ip, 0))
    }

    /// What the backend said it saw: address and UDP port.
    fn seen(&self) -> Option<(String, u16)> {
        let Ok(Ok(r)) = &self.outcome else {
            return None;
        };
        let text = String::from_utf8_lossy(&r.body);
        let (ip, port) = text.trim().rsplit_once(' ')?;
        Some((ip.to_owned(), port.parse().ok()?))
    }

    /// An answer from a backend that saw the client's embedded address and own UDP port,
    /// or (for an unknown name) Kracauer's CONNECTION_CLOSE `unrecognized_name`.
    pub fn as_expected(&self) -> bool {
        match (&self.outcome, self.refused_expected) {
            (Ok(Ok(r)), false) => self.seen().is_some_and(|(ip, port)| {
                Self::embedded(&ip) == Some(CLIENT_V4) && port == r.local_port
            }),
            (Ok(Err(H3Error::Closed(0x170))), true) => true,
            _ => false,
        }
    }

    /// The line the demo prints for this request.
    pub fn line(&self) -> String {
        let url = format!("{:<24}", self.url);
        match (&self.outcome, self.seen()) {
            (Ok(Ok(r)), Some((ip, port))) => {
                let v4 = Self::embedded(&ip).map_or_else(|| "?".to_owned(), |a| a.to_string());
                let own = if port == r.local_port {
                    "the client's own UDP port".to_owned()
                } else {
                    format!("the client used {}", r.local_port)
                };
                format!("{url} -> HTTP/3 backend saw {ip} = {v4} port {port} ({own})")
            }
            (Ok(Err(H3Error::Closed(0x170))), _) => format!(
                "{url} -> refused by kracauer: QUIC CONNECTION_CLOSE unrecognized_name (0x170); no backend contacted"
            ),
            (Ok(Err(e)), _) => format!("{url} -> FAILED: {e}"),
            (Ok(Ok(r)), None) => format!("{url} -> FAILED: HTTP {}", r.status),
            (Err(e), _) => format!("{url} -> FAILED: {e}"),
        }
    }
}

/// HTTP/3 over QUIC to UDP 443 (kracauer's configuration must list `quic = [443]`; the
/// HTTP/3 backends are started here and stopped on return): `a.example`, `b.example` and
/// an unknown name, a line each.
pub fn narrate_quic(tb: &Topology, out: &mut impl Write) -> io::Result<Vec<QuicFetch>> {
    writeln!(out)?;
    writeln!(
        out,
        "HTTP/3 (QUIC on UDP {HTTPS_PORT}, routed by the SNI in the Initial):"
    )?;
    let backends = match tb.start_h3() {
        Ok(b) => b,
        Err(e) => {
            writeln!(out, "  cannot start the HTTP/3 backends: {e}")?;
            return Ok(vec![QuicFetch {
                url: "h3://a.example/whoami".into(),
                refused_expected: false,
                outcome: Err(e),
            }]);
        }
    };
    let mut fetches = Vec::new();
    for (name, refused) in [
        ("a.example", false),
        ("b.example", false),
        ("unknown.example", true),
    ] {
        let before: u64 = backends.iter().map(H3Backend::incoming).sum();
        let mut fetch = QuicFetch {
            url: format!("h3://{name}/whoami"),
            refused_expected: refused,
            outcome: tb.h3_get(name, "/whoami", 0),
        };
        let after: u64 = backends.iter().map(H3Backend::incoming).sum();
        if refused && after != before {
            fetch.outcome = Err(Error::Setup("a backend was contacted".into()));
        }
        writeln!(out, "{}", fetch.line())?;
        fetches.push(fetch);
    }
    Ok(fetches)
}

/// Sends SIGTERM to this very process. An in-process `kracauer run` (the demo's router)
/// stops on SIGTERM once it has installed its handler, as the binary does; this is how
/// the demo tells it to clean up. Call it only after the router is ready.
pub fn terminate_self() -> Result<(), Error> {
    nix::sys::signal::raise(nix::sys::signal::Signal::SIGTERM)
        .map_err(|e| Error::Setup(format!("cannot signal this process: {e}")))
}
