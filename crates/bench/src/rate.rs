//! The connection-rate workload: 64 client threads loop connect, ClientHello + command,
//! read a 1 KB answer, close. Used by the measurements (`main.rs`) and by the rate
//! profile (`profile_rate.rs`), so both run the very same load.

use std::net::SocketAddr;
use std::sync::Arc;
use std::thread;
use std::time::{Duration, Instant};

use kracauer_testbed::{Error, Topology};

use crate::proto;

/// Client threads of the rate run.
pub const CONCURRENCY: usize = 64;

/// What one rate run gave.
#[derive(Debug, Clone, Default)]
pub struct Rate {
    /// Connections that got their whole answer.
    pub count: usize,
    /// Connections that failed.
    pub errors: u64,
    /// Time to first answer byte of each good connection, sorted.
    pub ttfb: Vec<Duration>,
    /// Wall time of the run.
    pub secs: f64,
    /// The client threads' last errors, deduplicated.
    pub kinds: Vec<String>,
}

impl Rate {
    /// Good connections a second.
    pub fn per_sec(&self) -> f64 {
        self.count as f64 / self.secs
    }

    /// The `p` quantile (0 to 1) of the TTFB, in ms.
    pub fn ttfb_ms(&self, p: f64) -> f64 {
        self.ttfb
            .get(((self.ttfb.len() as f64 - 1.0) * p).round() as usize)
            .map_or(f64::NAN, |d| d.as_secs_f64() * 1e3)
    }
}

/// Runs the rate workload against `addr` from the client's namespace for `dur`.
pub fn run(
    tb: &Topology,
    hello: &Arc<Vec<u8>>,
    addr: SocketAddr,
    dur: Duration,
) -> Result<Rate, Error> {
    let h = Arc::clone(hello);
    tb.client.run(move || {
        let start = Instant::now();
        let per: Vec<(Vec<Duration>, u64, Option<String>)> = thread::scope(|s| {
            let handles: Vec<_> = (0..CONCURRENCY)
                .map(|_| {
                    s.spawn(|| {
                        let mut t = Vec::new();
                        let mut errors = 0u64;
                        let mut last = None;
                        while start.elapsed() < dur {
                            match proto::request(addr, &h) {
                                Ok(d) => t.push(d),
                                Err(e) => {
                                    errors += 1;
                                    last = Some(e.to_string());
                                }
                            }
                        }
                        (t, errors, last)
                    })
                })
                .collect();
            handles.into_iter().filter_map(|t| t.join().ok()).collect()
        });
        let secs = start.elapsed().as_secs_f64();
        let errors: u64 = per.iter().map(|p| p.1).sum();
        let mut kinds: Vec<String> = per.iter().filter_map(|p| p.2.clone()).collect();
        kinds.sort();
        kinds.dedup();
        let mut ttfb: Vec<Duration> = per.into_iter().flat_map(|p| p.0).collect();
        ttfb.sort();
        Rate {
            count: ttfb.len(),
            errors,
            ttfb,
            secs,
            kinds,
        }
    })
}

/// Warms `addr` up (neighbour discovery, a first flow) and checks the path end to end:
/// one request, retried for up to 10 s.
pub fn warm_up(tb: &Topology, hello: &Arc<Vec<u8>>, addr: SocketAddr) -> Result<(), Error> {
    let h = Arc::clone(hello);
    tb.client
        .run(move || {
            let deadline = Instant::now() + Duration::from_secs(10);
            loop {
                match proto::request(addr, &h) {
                    Ok(_) => return Ok(()),
                    Err(e) if Instant::now() > deadline => return Err(e),
                    Err(_) => thread::sleep(Duration::from_millis(100)),
                }
            }
        })?
        .map_err(|e| Error::Setup(format!("the warm-up request to {addr} failed: {e}")))
}
