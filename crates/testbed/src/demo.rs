//! What `kracauer-demo` shows, once kracauer runs in a testbed's router namespace: the
//! testbed's shape, then one line per request saying what the client asked and what the
//! backend saw. How kracauer is started is the caller's business (the daemon runs its
//! engine in process; the tests run the binary), so the testbed never depends on the
//! daemon.

use std::io::{self, Write};

use crate::Error;
use crate::client::{Reply, embedded_v4};
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

/// Sends SIGTERM to this very process. An in-process `kracauer run` (the demo's router)
/// stops on SIGTERM once it has installed its handler, as the binary does; this is how
/// the demo tells it to clean up. Call it only after the router is ready.
pub fn terminate_self() -> Result<(), Error> {
    nix::sys::signal::raise(nix::sys::signal::Signal::SIGTERM)
        .map_err(|e| Error::Setup(format!("cannot signal this process: {e}")))
}
