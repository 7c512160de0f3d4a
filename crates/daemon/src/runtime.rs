//! The data plane: one thread that owns the [`Engine`] and the TUN and moves packets
//! between them. No protocol logic lives here: packets go TUN → engine → TUN, timers fire
//! when the engine says, and the clock is a monotonic [`Instant`] taken at start.
//!
//! Per packet: read into a buffer with [`HEADROOM`] bytes in front (IPv4→IPv6 grows in
//! place), `handle_packet`, write a `Forward` range back, write whatever the engine made
//! into its [`Output`], clear it. Nothing is allocated and no lock is taken per packet:
//! new route tables arrive through a channel checked between packets, and a
//! [`Snapshot`] of the counters is published for the metrics endpoint about once a
//! second. Access-log events are drained after every batch.

use std::io;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::Receiver;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use kracauer_core::engine::{Engine, Event, Output, Stats, Verdict};
use kracauer_core::route::RouteTable;
use kracauer_core::time::Time;

use crate::tun::Tun;

/// Bytes in front of every packet read, for IPv4→IPv6 growth (the engine needs 20).
pub const HEADROOM: usize = 20;
/// Largest packet read from the TUN (no offloads, so at most the MTU; IP's own limit).
const MAX_PACKET: usize = 65_535;
/// Packets handled before timers, reloads and events are looked at again.
const BATCH: usize = 64;
/// Longest sleep, so a stop request is seen promptly even with no traffic and no timer.
const MAX_WAIT: Duration = Duration::from_millis(200);
/// How often the counters are published.
const PUBLISH_EVERY: Duration = Duration::from_secs(1);

/// The counters as last published by the data plane.
#[derive(Debug, Clone, Default)]
pub struct Snapshot {
    pub stats: Stats,
    /// Flows in the table.
    pub flows: usize,
    /// Flows whose SYN was answered and whose handshake has not completed.
    pub half_open: usize,
    /// Bytes held by peek buffers.
    pub peek_bytes: usize,
    /// Writes to the TUN that failed.
    pub tun_write_errors: u64,
    /// Route tables installed by reloads.
    pub reloads: u64,
    /// Seconds since the data plane started.
    pub uptime: Duration,
}

/// The snapshot shared with the metrics endpoint (written once a second).
pub type Published = Arc<Mutex<Snapshot>>;

/// The data-plane thread's state.
#[derive(Debug)]
pub struct DataPlane {
    tun: Tun,
    engine: Engine,
    routes: Receiver<Arc<RouteTable>>,
    stop: Arc<AtomicBool>,
    published: Published,
    tun_write_errors: u64,
    reloads: u64,
}

impl DataPlane {
    /// A data plane moving packets between `tun` and `engine`; new route tables come in
    /// through `routes`, and it returns from [`run`](Self::run) once `stop` is set.
    pub fn new(
        tun: Tun,
        engine: Engine,
        routes: Receiver<Arc<RouteTable>>,
        stop: Arc<AtomicBool>,
        published: Published,
    ) -> Self {
        Self {
            tun,
            engine,
            routes,
            stop,
            published,
            tun_write_errors: 0,
            reloads: 0,
        }
    }

    /// Moves packets until stopped; an error reading the TUN ends it.
    pub fn run(&mut self) -> io::Result<()> {
        let start = Instant::now();
        let now = move || Time::from_micros(start.elapsed().as_micros() as u64);
        let mut buf = vec![0u8; HEADROOM + MAX_PACKET];
        let mut out = Output::default();
        let mut next_publish = start;
        while !self.stop.load(Ordering::Relaxed) {
            self.take_routes();
            if self.engine.poll_timeout().is_some_and(|at| at <= now()) {
                self.engine.handle_timeout(now(), &mut out);
                self.flush(&mut out);
            }
            let mut handled = 0;
            while handled < BATCH {
                let Some(n) = self.tun.recv(&mut buf[HEADROOM..])? else {
                    break;
                };
                handled += 1;
                let packet = &mut buf[..HEADROOM + n];
                match self.engine.handle_packet(now(), packet, HEADROOM, &mut out) {
                    Verdict::Forward(range) => match packet.get(range) {
                        Some(p) => self.write(p),
                        None => self.tun_write_errors += 1,
                    },
                    Verdict::Consumed => {}
                    Verdict::Dropped(reason) => tracing::trace!(
                        reason = reason.name(),
                        head = ?&packet[HEADROOM..packet.len().min(HEADROOM + 40)],
                        "dropped"
                    ),
                }
                self.flush(&mut out);
                self.take_routes();
            }
            self.log_events();
            if Instant::now() >= next_publish {
                self.publish(start.elapsed());
                next_publish = Instant::now() + PUBLISH_EVERY;
            }
            if handled == 0 {
                let until_timer = self.engine.poll_timeout().map(|at| {
                    Duration::from_micros(at.as_micros()).saturating_sub(start.elapsed())
                });
                let until_publish = next_publish.saturating_duration_since(Instant::now());
                let wait = until_timer
                    .unwrap_or(MAX_WAIT)
                    .min(until_publish)
                    .min(MAX_WAIT);
                self.tun.wait(Some(wait))?;
            }
        }
        self.log_events();
        self.publish(start.elapsed());
        Ok(())
    }

    /// The TUN, for the control plane to close after tearing the host set-up down.
    pub fn into_tun(self) -> Tun {
        self.tun
    }

    fn take_routes(&mut self) {
        while let Ok(routes) = self.routes.try_recv() {
            self.engine.set_routes(routes);
            self.reloads += 1;
            tracing::info!("data plane: new route table in force");
        }
    }

    fn write(&mut self, packet: &[u8]) {
        if let Err(e) = self.tun.send(packet) {
            self.tun_write_errors += 1;
            tracing::debug!("writing {} bytes to the TUN failed: {e}", packet.len());
        }
    }

    fn flush(&mut self, out: &mut Output) {
        for p in out.packets() {
            if let Err(e) = self.tun.send(p) {
                self.tun_write_errors += 1;
                tracing::debug!("writing {} bytes to the TUN failed: {e}", p.len());
            }
        }
        out.clear();
    }

    fn log_events(&mut self) {
        while let Some(event) = self.engine.poll_event() {
            log_event(&event);
        }
    }

    fn publish(&self, uptime: Duration) {
        let snapshot = Snapshot {
            stats: self.engine.stats().clone(),
            flows: self.engine.flow_count(),
            half_open: self.engine.half_open(),
            peek_bytes: self.engine.peek_bytes(),
            tun_write_errors: self.tun_write_errors,
            reloads: self.reloads,
            uptime,
        };
        *self
            .published
            .lock()
            .unwrap_or_else(PoisonError::into_inner) = snapshot;
    }
}

/// One access-log line per closed flow (target `kracauer::access`, level info); opened
/// flows at debug.
pub fn log_event(event: &Event) {
    match event {
        Event::Opened {
            client,
            service,
            name,
            backend,
            peek_time,
        } => tracing::debug!(
            target: "kracauer::access",
            %client,
            %service,
            name = %name.as_ref().map_or("-", |n| n.as_str()),
            %backend,
            peek_ms = peek_time.as_millis() as u64,
            "opened"
        ),
        Event::Closed {
            client,
            service,
            name,
            backend,
            bytes_to_backend,
            bytes_to_client,
            duration,
            outcome,
        } => tracing::info!(
            target: "kracauer::access",
            %client,
            %service,
            name = %name.as_ref().map_or("-", |n| n.as_str()),
            backend = %backend.map_or_else(|| "-".to_owned(), |b| b.to_string()),
            to_backend = bytes_to_backend,
            to_client = bytes_to_client,
            duration_ms = duration.as_millis() as u64,
            outcome = %outcome.name(),
            "closed"
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use kracauer_core::engine::Outcome;
    use kracauer_core::name::HostName;
    use std::io::Write;

    /// What `f` logs, as the daemon formats it (no colours).
    fn logged(f: impl FnOnce()) -> String {
        #[derive(Clone)]
        struct Buf(Arc<Mutex<Vec<u8>>>);
        impl Write for Buf {
            fn write(&mut self, b: &[u8]) -> io::Result<usize> {
                self.0.lock().unwrap().extend_from_slice(b);
                Ok(b.len())
            }
            fn flush(&mut self) -> io::Result<()> {
                Ok(())
            }
        }
        let buf = Buf(Arc::new(Mutex::new(Vec::new())));
        let writer = buf.clone();
        let subscriber = tracing_subscriber::fmt()
            .with_writer(move || writer.clone())
            .with_ansi(false)
            .with_max_level(tracing::Level::DEBUG)
            .finish();
        tracing::subscriber::with_default(subscriber, f);
        let out = buf.0.lock().unwrap().clone();
        String::from_utf8(out).unwrap()
    }

    #[test]
    fn closed_flow_is_one_access_line_with_every_field() {
        let event = Event::Closed {
            client: "198.51.100.2:40000".parse().unwrap(),
            service: "203.0.113.10:443".parse().unwrap(),
            name: Some(HostName::parse(b"a.example").unwrap()),
            backend: Some("[2001:db8:1::2]:8443".parse().unwrap()),
            bytes_to_backend: 517,
            bytes_to_client: 4096,
            duration: Duration::from_millis(1250),
            outcome: Outcome::Closed,
        };
        let out = logged(|| log_event(&event));
        assert_eq!(out.lines().count(), 1, "{out}");
        assert!(out.contains(" INFO kracauer::access: closed client=198.51.100.2:40000 service=203.0.113.10:443 name=a.example backend=[2001:db8:1::2]:8443 to_backend=517 to_client=4096 duration_ms=1250 outcome=closed"), "{out}");
    }

    #[test]
    fn flow_refused_before_a_backend_logs_dashes() {
        let event = Event::Closed {
            client: "198.51.100.2:40000".parse().unwrap(),
            service: "203.0.113.10:80".parse().unwrap(),
            name: None,
            backend: None,
            bytes_to_backend: 0,
            bytes_to_client: 0,
            duration: Duration::from_secs(5),
            outcome: Outcome::PeekTimeout,
        };
        let out = logged(|| log_event(&event));
        assert!(out.contains("name=- backend=- "), "{out}");
        assert!(out.contains("outcome=peek_timeout"), "{out}");
    }
}
