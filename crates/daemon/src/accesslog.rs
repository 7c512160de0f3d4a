//! The access log, off the packet path: workers hand each flow's event to a logging
//! thread through a bounded queue and never wait for it.
//!
//! - A worker calls [`Sender::send`] per flow event (never per packet). It is a `try_send`
//!   on a bounded queue of `[log] queue` records allocated at start: a full queue drops the
//!   line and counts it (`kracauer_log_dropped_total{reason="queue_full"}`); the worker
//!   goes on at once.
//! - The logging thread formats lines ([`LogFormat::Text`] or [`LogFormat::Json`]) and
//!   writes them in batches cut at line ends: at most 4 KiB per `write` to standard
//!   error (a pipe takes that atomically, so lines never interleave with the daemon log),
//!   64 KiB to a file opened for appending. A sink that is slow or stalled (journald under
//!   back-pressure, a full disk) stalls only this thread; the queue absorbs what it can
//!   and the rest is counted as dropped. Lines a failed write loses are counted too
//!   (`reason="write_error"`), so lines written plus lines dropped is every line.
//! - `file:PATH` is reopened on SIGUSR1 (logrotate's `postrotate`), before the next write.
//!
//! One line per flow that ended (`closed`), and, when the daemon log is at debug for
//! `kracauer::access` (`-v`, `level = "debug"`), one per flow spliced to its backend
//! (`opened`). The text format is the line the daemon wrote through `tracing` before
//! (timestamp, level, target, then `key=value` fields) with `route` added; the JSON
//! fields are documented in docs/operator-guide.md ("Watching it").

use std::fmt::Write as _;
use std::fs::{File, OpenOptions};
use std::io::{self, Write};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::mpsc::{Receiver, RecvTimeoutError, SyncSender, TrySendError};
use std::thread::JoinHandle;
use std::time::{Duration, SystemTime};

use kracauer_core::engine::Event;
use serde::Serialize;

use crate::config::{AccessTarget, Log, LogFormat};

/// Largest write to standard error: `PIPE_BUF`, which a pipe writes atomically.
const STDERR_CHUNK: usize = 4096;
/// Largest write to a file.
const FILE_CHUNK: usize = 64 * 1024;
/// How often an idle logging thread looks for a reopen request.
const IDLE: Duration = Duration::from_millis(250);

/// One flow event on its way to the log.
#[derive(Debug)]
pub struct Record {
    /// When the worker drained it from its engine.
    pub time: SystemTime,
    /// The label of the route the flow took ([`crate::observe`]), if any.
    pub route: Option<Arc<str>>,
    pub event: Event,
}

/// The access log's counters, shared by the workers, the logging thread and the metrics.
#[derive(Debug, Default)]
pub struct LogCounters {
    /// Lines written to the sink.
    pub written: AtomicU64,
    /// Lines dropped because the queue was full.
    pub dropped_queue_full: AtomicU64,
    /// Lines lost because a write to the sink failed.
    pub dropped_write_error: AtomicU64,
}

impl LogCounters {
    /// Lines dropped for any reason.
    pub fn dropped(&self) -> u64 {
        self.dropped_queue_full.load(Ordering::Relaxed)
            + self.dropped_write_error.load(Ordering::Relaxed)
    }
}

/// Which events become lines.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Lines {
    /// `closed` lines (the access log proper).
    pub closed: bool,
    /// `opened` lines (debug).
    pub opened: bool,
}

impl Lines {
    /// What the daemon log's filter asks for: `closed` lines unless `kracauer::access` is
    /// filtered below info (`RUST_LOG=kracauer::access=off`), `opened` lines at debug.
    pub fn from_filter() -> Self {
        Self {
            closed: tracing::enabled!(target: "kracauer::access", tracing::Level::INFO),
            opened: tracing::enabled!(target: "kracauer::access", tracing::Level::DEBUG),
        }
    }
}

/// A worker's end of the queue.
#[derive(Debug, Clone)]
pub struct Sender {
    tx: SyncSender<Record>,
    counters: Arc<LogCounters>,
    lines: Lines,
}

impl Sender {
    /// Whether `event` makes a line.
    pub fn wants(&self, event: &Event) -> bool {
        match event {
            Event::Opened { .. } => self.lines.opened,
            Event::Closed { .. } => self.lines.closed,
            // Backend health logs its changes itself (`health`), not per attempt here.
            Event::BackendFailed { .. } => false,
        }
    }

    /// Queues `record` if there is room, else counts it as dropped. Never blocks.
    pub fn send(&self, record: Record) {
        match self.tx.try_send(record) {
            Ok(()) => {}
            Err(TrySendError::Full(_) | TrySendError::Disconnected(_)) => {
                self.counters
                    .dropped_queue_full
                    .fetch_add(1, Ordering::Relaxed);
            }
        }
    }
}

/// Where lines are written.
enum Sink {
    Stderr,
    File {
        path: PathBuf,
        file: File,
    },
    /// For tests: any writer.
    #[cfg(test)]
    Writer(Box<dyn Write + Send>),
}

impl Sink {
    fn open(path: &Path) -> io::Result<File> {
        use std::os::unix::fs::OpenOptionsExt;
        OpenOptions::new()
            .append(true)
            .create(true)
            .mode(0o640)
            .open(path)
    }

    fn chunk(&self) -> usize {
        match self {
            Sink::Stderr => STDERR_CHUNK,
            _ => FILE_CHUNK,
        }
    }

    fn write_all(&mut self, buf: &[u8]) -> io::Result<()> {
        match self {
            Sink::Stderr => io::stderr().lock().write_all(buf),
            Sink::File { file, .. } => file.write_all(buf),
            #[cfg(test)]
            Sink::Writer(w) => w.write_all(buf).and_then(|()| w.flush()),
        }
    }

    /// Opens the file anew (after logrotate moved it away); keeps the old one on error.
    fn reopen(&mut self) {
        if let Sink::File { path, file } = self {
            match Self::open(path) {
                Ok(f) => {
                    *file = f;
                    tracing::info!("access log: reopened {}", path.display());
                }
                Err(e) => tracing::error!(
                    "access log: cannot reopen {} ({e}); writing to the old file",
                    path.display()
                ),
            }
        }
    }
}

/// The running access log: the logging thread and the queue's sending end.
#[derive(Debug)]
pub struct AccessLog {
    sender: Option<Sender>,
    thread: Option<JoinHandle<()>>,
    reopen: Arc<AtomicBool>,
    counters: Arc<LogCounters>,
    file: Option<PathBuf>,
}

/// Why the access log could not start.
#[derive(Debug, thiserror::Error)]
pub enum AccessLogError {
    #[error("cannot open the access log {}: {source}", path.display())]
    Open { path: PathBuf, source: io::Error },
    #[error("cannot start the access-log thread: {0}")]
    Thread(io::Error),
}

impl AccessLog {
    /// Starts the access log `log` asks for, writing the `lines` given; with
    /// `access = "off"` (or no lines wanted) there is no thread and no queue. A file is
    /// opened here, so a path that cannot be written stops the start.
    pub fn start(log: &Log, lines: Lines) -> Result<Self, AccessLogError> {
        let counters = Arc::new(LogCounters::default());
        let sink = match &log.access {
            _ if !lines.closed && !lines.opened => None,
            AccessTarget::Off => None,
            AccessTarget::Stderr => Some(Sink::Stderr),
            AccessTarget::File(path) => {
                let file = Sink::open(path).map_err(|source| AccessLogError::Open {
                    path: path.clone(),
                    source,
                })?;
                Some(Sink::File {
                    path: path.clone(),
                    file,
                })
            }
        };
        let file = match &log.access {
            AccessTarget::File(p) if sink.is_some() => Some(p.clone()),
            _ => None,
        };
        match sink {
            None => Ok(Self {
                sender: None,
                thread: None,
                reopen: Arc::new(AtomicBool::new(false)),
                counters,
                file,
            }),
            Some(sink) => Self::spawn(sink, log.format, lines, log.queue, counters, file),
        }
    }

    fn spawn(
        sink: Sink,
        format: LogFormat,
        lines: Lines,
        capacity: usize,
        counters: Arc<LogCounters>,
        file: Option<PathBuf>,
    ) -> Result<Self, AccessLogError> {
        let (tx, rx) = std::sync::mpsc::sync_channel(capacity);
        let reopen = Arc::new(AtomicBool::new(false));
        let writer = Writer {
            rx,
            sink,
            format,
            reopen: reopen.clone(),
            counters: counters.clone(),
        };
        let thread = std::thread::Builder::new()
            .name("kracauer-log".into())
            .spawn(move || writer.run())
            .map_err(AccessLogError::Thread)?;
        Ok(Self {
            sender: Some(Sender {
                tx,
                counters: counters.clone(),
                lines,
            }),
            thread: Some(thread),
            reopen,
            counters,
            file,
        })
    }

    /// A sending end for a worker; `None` when there is no access log.
    pub fn sender(&self) -> Option<Sender> {
        self.sender.clone()
    }

    /// The counters, for the metrics.
    pub fn counters(&self) -> Arc<LogCounters> {
        self.counters.clone()
    }

    /// SIGUSR1: the file is reopened before the next write. Returns what is reopened, or
    /// `None` when the access log is not a file.
    pub fn reopen(&self) -> Option<&Path> {
        let path = self.file.as_deref()?;
        self.reopen.store(true, Ordering::Relaxed);
        Some(path)
    }

    /// Writes what is queued and stops the thread, once every worker's [`Sender`] is gone
    /// (the workers have stopped). Returns `(lines written, lines dropped)`.
    pub fn finish(mut self) -> (u64, u64) {
        self.sender = None;
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
        (
            self.counters.written.load(Ordering::Relaxed),
            self.counters.dropped(),
        )
    }
}

/// The logging thread.
struct Writer {
    rx: Receiver<Record>,
    sink: Sink,
    format: LogFormat,
    reopen: Arc<AtomicBool>,
    counters: Arc<LogCounters>,
}

impl Writer {
    fn run(mut self) {
        let chunk = self.sink.chunk();
        let mut batch = Vec::with_capacity(chunk);
        let mut in_batch = 0u64;
        let mut line = String::with_capacity(1024);
        let mut failing = false;
        loop {
            let first = match self.rx.recv_timeout(IDLE) {
                Ok(r) => r,
                Err(RecvTimeoutError::Timeout) => {
                    self.take_reopen();
                    continue;
                }
                Err(RecvTimeoutError::Disconnected) => break,
            };
            self.take_reopen();
            let mut next = Some(first);
            // Everything already queued, in batches of whole lines.
            while let Some(record) = next.take() {
                line.clear();
                format_line(&record, self.format, &mut line);
                if !batch.is_empty() && batch.len() + line.len() > chunk {
                    self.write(&mut batch, &mut in_batch, &mut failing);
                }
                batch.extend_from_slice(line.as_bytes());
                in_batch += 1;
                next = self.rx.try_recv().ok();
            }
            self.write(&mut batch, &mut in_batch, &mut failing);
        }
        self.write(&mut batch, &mut in_batch, &mut failing);
    }

    fn take_reopen(&mut self) {
        if self.reopen.swap(false, Ordering::Relaxed) {
            self.sink.reopen();
        }
    }

    /// Writes the batch; its lines count as written, or as dropped if the write failed.
    fn write(&mut self, batch: &mut Vec<u8>, lines: &mut u64, failing: &mut bool) {
        if batch.is_empty() {
            return;
        }
        match self.sink.write_all(batch) {
            Ok(()) => {
                self.counters.written.fetch_add(*lines, Ordering::Relaxed);
                if std::mem::take(failing) {
                    tracing::info!("access log: writing again");
                }
            }
            Err(e) => {
                self.counters
                    .dropped_write_error
                    .fetch_add(*lines, Ordering::Relaxed);
                if !std::mem::replace(failing, true) {
                    tracing::error!(
                        "access log: write failed ({e}); lines are dropped and counted until a write succeeds"
                    );
                }
            }
        }
        batch.clear();
        *lines = 0;
    }
}

/// Appends `record` as one line (with its newline) in `format`.
pub fn format_line(record: &Record, format: LogFormat, out: &mut String) {
    match format {
        LogFormat::Text => text_line(record, out),
        LogFormat::Json => json_line(record, out),
    }
    out.push('\n');
}

fn text_line(r: &Record, out: &mut String) {
    let time = humantime::format_rfc3339_micros(r.time);
    let route = r.route.as_deref().unwrap_or("-");
    // Writing to a String cannot fail.
    let _ = match &r.event {
        Event::Opened {
            protocol,
            client,
            service,
            name,
            backend,
            peek_time,
            connect_time,
        } => write!(
            out,
            "{time} DEBUG kracauer::access: opened client={client} service={service} protocol={} name={} backend={backend} peek_ms={} connect_ms={} route={route}",
            protocol.name(),
            name.as_ref().map_or("-", |n| n.as_str()),
            peek_time.as_millis(),
            connect_time.as_millis(),
        ),
        Event::Closed {
            protocol,
            client,
            service,
            name,
            backend,
            bytes_to_backend,
            bytes_to_client,
            duration,
            outcome,
            peek,
        } => {
            let _ = write!(
                out,
                "{time}  INFO kracauer::access: closed client={client} service={service} protocol={} name={} backend=",
                protocol.name(),
                name.as_ref().map_or("-", |n| n.as_str()),
            );
            let _ = match backend {
                Some(b) => write!(out, "{b}"),
                None => write!(out, "-"),
            };
            write!(
                out,
                " to_backend={bytes_to_backend} to_client={bytes_to_client} duration_ms={} outcome={} path={} route={route}",
                duration.as_millis(),
                outcome.name(),
                peek.map_or_else(|| "-".to_owned(), |p| p.to_string()),
            )
        }
        Event::BackendFailed { .. } => Ok(()),
    };
}

/// One JSON access-log line; `None` fields are `null`, every field is always present.
#[derive(Serialize)]
struct JsonLine<'a> {
    time: String,
    event: &'static str,
    client: String,
    service: String,
    /// `tls`, `http` or `quic`.
    protocol: &'static str,
    name: Option<&'a str>,
    backend: Option<String>,
    route: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    to_backend: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    to_client: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    duration_ms: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    outcome: Option<&'static str>,
    /// How the peek ended (`named`, `default_unparsable:too_large`, ...), on closed lines.
    #[serde(skip_serializing_if = "Option::is_none")]
    path: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    peek_ms: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    connect_ms: Option<u64>,
}

fn json_line(r: &Record, out: &mut String) {
    let time = humantime::format_rfc3339_micros(r.time).to_string();
    let route = r.route.as_deref();
    let line = match &r.event {
        Event::Opened {
            protocol,
            client,
            service,
            name,
            backend,
            peek_time,
            connect_time,
        } => JsonLine {
            time,
            event: "opened",
            client: client.to_string(),
            service: service.to_string(),
            protocol: protocol.name(),
            name: name.as_ref().map(|n| n.as_str()),
            backend: Some(backend.to_string()),
            route,
            to_backend: None,
            to_client: None,
            duration_ms: None,
            outcome: None,
            path: None,
            peek_ms: Some(peek_time.as_millis() as u64),
            connect_ms: Some(connect_time.as_millis() as u64),
        },
        Event::Closed {
            protocol,
            client,
            service,
            name,
            backend,
            bytes_to_backend,
            bytes_to_client,
            duration,
            outcome,
            peek,
        } => JsonLine {
            time,
            event: "closed",
            client: client.to_string(),
            service: service.to_string(),
            protocol: protocol.name(),
            name: name.as_ref().map(|n| n.as_str()),
            backend: backend.map(|b| b.to_string()),
            route,
            to_backend: Some(*bytes_to_backend),
            to_client: Some(*bytes_to_client),
            duration_ms: Some(duration.as_millis() as u64),
            outcome: Some(outcome.name()),
            path: Some(peek.map_or_else(|| "-".to_owned(), |p| p.to_string())),
            peek_ms: None,
            connect_ms: None,
        },
        Event::BackendFailed { .. } => return,
    };
    // Serialising strings and numbers cannot fail.
    if let Ok(s) = serde_json::to_string(&line) {
        out.push_str(&s);
    }
}

#[cfg(test)]
mod tests;
