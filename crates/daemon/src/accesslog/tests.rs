//! The access log's lines as an operator reads them, and its queue under a sink that
//! stalls: the sender never waits, and written plus dropped is every line.

use super::*;
use kracauer_core::engine::{Outcome, PeekEnd, PeekPath, Protocol, Unnamed};
use kracauer_core::name::HostName;
use std::sync::{Condvar, Mutex};
use std::time::Instant;

/// 2026-01-02T03:04:05.678901Z
fn at() -> SystemTime {
    SystemTime::UNIX_EPOCH + Duration::from_micros(1_767_323_045_678_901)
}

fn closed() -> Record {
    Record {
        time: at(),
        route: Some(Arc::from("a.example")),
        event: Event::Closed {
            protocol: Protocol::Tls,
            client: "198.51.100.2:40000".parse().unwrap(),
            service: "203.0.113.10:443".parse().unwrap(),
            name: Some(HostName::parse(b"x.a.example").unwrap()),
            backend: Some("[2001:db8:1::2]:8443".parse().unwrap()),
            bytes_to_backend: 517,
            bytes_to_client: 4096,
            duration: Duration::from_millis(1250),
            outcome: Outcome::Closed,
            peek: Some(PeekEnd {
                path: PeekPath::Named,
                unnamed: None,
            }),
        },
    }
}

fn refused() -> Record {
    Record {
        time: at(),
        route: None,
        event: Event::Closed {
            protocol: Protocol::Tls,
            client: "198.51.100.2:40000".parse().unwrap(),
            service: "203.0.113.10:80".parse().unwrap(),
            name: None,
            backend: None,
            bytes_to_backend: 0,
            bytes_to_client: 0,
            duration: Duration::from_secs(5),
            outcome: Outcome::PeekTimeout,
            peek: None,
        },
    }
}

fn opened() -> Record {
    Record {
        time: at(),
        route: Some(Arc::from("a.example")),
        event: Event::Opened {
            protocol: Protocol::Tls,
            client: "198.51.100.2:40000".parse().unwrap(),
            service: "203.0.113.10:443".parse().unwrap(),
            name: Some(HostName::parse(b"x.a.example").unwrap()),
            backend: "[2001:db8:1::2]:8443".parse().unwrap(),
            peek_time: Duration::from_millis(12),
            connect_time: Duration::from_millis(3),
        },
    }
}

fn line(r: &Record, format: LogFormat) -> String {
    let mut s = String::new();
    format_line(r, format, &mut s);
    s
}

#[test]
fn closed_flow_is_one_text_line_with_every_field_of_the_old_tracing_line() {
    assert_eq!(
        line(&closed(), LogFormat::Text),
        "2026-01-02T03:04:05.678901Z  INFO kracauer::access: closed client=198.51.100.2:40000 \
         service=203.0.113.10:443 protocol=tls name=x.a.example backend=[2001:db8:1::2]:8443 to_backend=517 \
         to_client=4096 duration_ms=1250 outcome=closed path=named route=a.example\n"
    );
}

#[test]
fn flow_refused_before_a_backend_logs_dashes() {
    let l = line(&refused(), LogFormat::Text);
    assert!(l.contains(" name=- backend=- "), "{l}");
    assert!(l.ends_with(" outcome=peek_timeout path=- route=-\n"), "{l}");
}

#[test]
fn a_refused_flow_says_its_peek_path_and_why_in_both_formats() {
    let mut r = refused();
    if let Event::Closed { outcome, peek, .. } = &mut r.event {
        *outcome = Outcome::Unparsable;
        *peek = Some(PeekEnd {
            path: PeekPath::Refused,
            unnamed: Some(Unnamed::TooLarge),
        });
    }
    let l = line(&r, LogFormat::Text);
    assert!(
        l.ends_with(" outcome=unparsable path=refused:too_large route=-\n"),
        "{l}"
    );
    let v: serde_json::Value = serde_json::from_str(&line(&r, LogFormat::Json)).unwrap();
    assert_eq!(v["path"], "refused:too_large");
}

#[test]
fn opened_flow_line_carries_peek_and_connect_times() {
    let l = line(&opened(), LogFormat::Text);
    assert!(
        l.ends_with(
            " DEBUG kracauer::access: opened client=198.51.100.2:40000 service=203.0.113.10:443 \
             protocol=tls name=x.a.example backend=[2001:db8:1::2]:8443 peek_ms=12 connect_ms=3 route=a.example\n"
        ),
        "{l}"
    );
}

#[test]
fn json_lines_carry_the_documented_fields() {
    let v: serde_json::Value = serde_json::from_str(&line(&closed(), LogFormat::Json)).unwrap();
    assert_eq!(
        v,
        serde_json::json!({
            "time": "2026-01-02T03:04:05.678901Z",
            "event": "closed",
            "client": "198.51.100.2:40000",
            "service": "203.0.113.10:443",
            "protocol": "tls",
            "name": "x.a.example",
            "backend": "[2001:db8:1::2]:8443",
            "route": "a.example",
            "to_backend": 517,
            "to_client": 4096,
            "duration_ms": 1250,
            "outcome": "closed",
            "path": "named",
        })
    );
    let v: serde_json::Value = serde_json::from_str(&line(&refused(), LogFormat::Json)).unwrap();
    assert_eq!(v["name"], serde_json::Value::Null);
    assert_eq!(v["backend"], serde_json::Value::Null);
    assert_eq!(v["route"], serde_json::Value::Null);
    let v: serde_json::Value = serde_json::from_str(&line(&opened(), LogFormat::Json)).unwrap();
    assert_eq!(v["event"], "opened");
    assert_eq!(
        (v["peek_ms"].as_u64(), v["connect_ms"].as_u64()),
        (Some(12), Some(3))
    );
    assert!(v.get("outcome").is_none(), "{v}");
}

#[test]
fn json_line_is_one_line_even_for_odd_names() {
    let mut r = closed();
    if let Event::Closed { name, .. } = &mut r.event {
        *name = Some(HostName::parse("xn--bcher-kva.example".as_bytes()).unwrap());
    }
    let l = line(&r, LogFormat::Json);
    assert_eq!(l.matches('\n').count(), 1, "{l}");
}

/// A writer that blocks every write until the gate opens, then appends to `out`.
#[derive(Clone, Default)]
struct Gated {
    open: Arc<(Mutex<bool>, Condvar)>,
    out: Arc<Mutex<Vec<u8>>>,
}

impl Gated {
    fn open(&self) {
        let (m, c) = &*self.open;
        *m.lock().unwrap() = true;
        c.notify_all();
    }
}

impl Write for Gated {
    fn write(&mut self, b: &[u8]) -> io::Result<usize> {
        let (m, c) = &*self.open;
        let _open = c.wait_while(m.lock().unwrap(), |open| !*open).unwrap();
        self.out.lock().unwrap().extend_from_slice(b);
        Ok(b.len())
    }
    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

const ALL: Lines = Lines {
    closed: true,
    opened: true,
};

#[test]
fn a_stalled_sink_never_blocks_the_sender_and_every_line_is_written_or_counted() {
    let sink = Gated::default();
    let counters = Arc::new(LogCounters::default());
    let log = AccessLog::spawn(
        Sink::Writer(Box::new(sink.clone())),
        LogFormat::Text,
        ALL,
        64,
        counters.clone(),
        None,
    )
    .unwrap();
    let tx = log.sender().unwrap();
    // The sink is stalled: the queue (64) and the writer's one batch fill, the rest drops.
    let n = 10_000;
    for _ in 0..n {
        tx.send(closed());
    }
    let dropped = counters.dropped_queue_full.load(Ordering::Relaxed);
    assert!(dropped > 0 && dropped < n, "dropped {dropped} of {n}");
    assert_eq!(
        counters.written.load(Ordering::Relaxed),
        0,
        "the sink is stalled"
    );
    drop(tx);
    sink.open();
    let (written, dropped_total) = log.finish();
    assert_eq!(
        written + dropped_total,
        n,
        "written {written}, dropped {dropped_total}"
    );
    assert_eq!(dropped_total, dropped);
    let out = String::from_utf8(sink.out.lock().unwrap().clone()).unwrap();
    assert_eq!(out.lines().count() as u64, written);
    assert!(
        out.lines().all(|l| l.ends_with("route=a.example")),
        "whole lines only"
    );
}

/// A writer that fails every write.
struct Broken;

impl Write for Broken {
    fn write(&mut self, _: &[u8]) -> io::Result<usize> {
        Err(io::Error::new(io::ErrorKind::BrokenPipe, "gone"))
    }
    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

#[test]
fn lines_a_failed_write_loses_are_counted_as_dropped() {
    let counters = Arc::new(LogCounters::default());
    let log = AccessLog::spawn(
        Sink::Writer(Box::new(Broken)),
        LogFormat::Json,
        ALL,
        1024,
        counters.clone(),
        None,
    )
    .unwrap();
    let tx = log.sender().unwrap();
    for _ in 0..100 {
        tx.send(closed());
    }
    drop(tx);
    assert_eq!(log.finish(), (0, 100));
    assert_eq!(counters.dropped_write_error.load(Ordering::Relaxed), 100);
}

/// Polls `f` until it is true (a bound on waiting, not a timed assertion).
fn eventually(what: &str, mut f: impl FnMut() -> bool) {
    let end = Instant::now() + Duration::from_secs(10);
    while !f() {
        assert!(Instant::now() < end, "gave up waiting for {what}");
        std::thread::sleep(Duration::from_millis(10));
    }
}

#[test]
fn a_file_log_is_reopened_after_logrotate_moved_it() {
    let dir = std::env::temp_dir().join(format!("krc-accesslog-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("access.log");
    let config = Log {
        access: AccessTarget::File(path.clone()),
        ..Log::default()
    };
    let log = AccessLog::start(&config, ALL).unwrap();
    let tx = log.sender().unwrap();
    tx.send(closed());
    eventually("the first line", || {
        log.counters().written.load(Ordering::Relaxed) == 1
    });
    std::fs::rename(&path, dir.join("access.log.1")).unwrap();
    assert_eq!(log.reopen(), Some(path.as_path()));
    tx.send(refused());
    drop(tx);
    assert_eq!(log.finish(), (2, 0));
    let old = std::fs::read_to_string(dir.join("access.log.1")).unwrap();
    let new = std::fs::read_to_string(&path).unwrap();
    assert!(
        old.contains("outcome=closed") && old.lines().count() == 1,
        "{old}"
    );
    assert!(
        new.contains("outcome=peek_timeout") && new.lines().count() == 1,
        "{new}"
    );
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn an_access_log_that_is_off_has_no_queue_and_nothing_to_reopen() {
    let config = Log {
        access: AccessTarget::Off,
        ..Log::default()
    };
    let log = AccessLog::start(&config, ALL).unwrap();
    assert!(log.sender().is_none());
    assert_eq!(log.reopen(), None);
    assert_eq!(log.finish(), (0, 0));
}

#[test]
fn an_unwritable_file_stops_the_start_naming_the_path() {
    let config = Log {
        access: AccessTarget::File("/nonexistent/dir/access.log".into()),
        ..Log::default()
    };
    let e = AccessLog::start(&config, ALL).unwrap_err().to_string();
    assert!(
        e.starts_with("cannot open the access log /nonexistent/dir/access.log: "),
        "{e}"
    );
}

#[test]
fn opened_lines_are_only_sent_when_asked_for() {
    let config = Log::default();
    let log = AccessLog::start(
        &config,
        Lines {
            closed: true,
            opened: false,
        },
    )
    .unwrap();
    let tx = log.sender().unwrap();
    assert!(tx.wants(&closed().event));
    assert!(!tx.wants(&opened().event));
    drop(tx);
    log.finish();
}
