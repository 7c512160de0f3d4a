//! The standard process metrics (`process_cpu_seconds_total`,
//! `process_resident_memory_bytes`, `process_virtual_memory_bytes`, `process_open_fds`,
//! `process_max_fds`, `process_threads`, `process_start_time_seconds`), read from
//! `/proc/self` at each scrape, as the Go and Python clients name them.
//!
//! Written by hand: `prometheus-client` has no process collector, and the crates that add
//! one pull in `procfs` (and its own dependency tree) for the five numbers below, which
//! `/proc/self/stat`, `/proc/self/fd` and `getrlimit` give directly.

use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, EncodeMetric};
use prometheus_client::metrics::MetricType;
use prometheus_client::metrics::counter::ConstCounter;
use prometheus_client::metrics::gauge::ConstGauge;

/// The fields of `/proc/PID/stat` the metrics use.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Stat {
    /// User and system CPU time, in clock ticks.
    pub utime: u64,
    pub stime: u64,
    pub threads: u64,
    /// Start time after boot, in clock ticks.
    pub starttime: u64,
    /// Virtual memory, bytes.
    pub vsize: u64,
    /// Resident set, pages.
    pub rss: u64,
}

/// Parses `/proc/PID/stat`. The command name (field 2) is in parentheses and may hold
/// spaces and parentheses itself, so the fields are counted after its last `)`.
pub fn parse_stat(text: &str) -> Option<Stat> {
    let rest = &text[text.rfind(')')? + 1..];
    let f: Vec<&str> = rest.split_whitespace().collect();
    // `rest` starts at field 3 (state): field n is f[n - 3].
    let field = |n: usize| f.get(n - 3)?.parse::<u64>().ok();
    Some(Stat {
        utime: field(14)?,
        stime: field(15)?,
        threads: field(20)?,
        starttime: field(22)?,
        vsize: field(23)?,
        rss: field(24)?,
    })
}

/// The boot time (`btime`, seconds since the epoch) from `/proc/stat`.
pub fn parse_btime(text: &str) -> Option<u64> {
    text.lines()
        .find_map(|l| l.strip_prefix("btime "))
        .and_then(|v| v.trim().parse().ok())
}

/// Reads the process metrics at each scrape.
#[derive(Debug)]
pub struct ProcessCollector {
    ticks: u64,
    page: u64,
    /// Seconds since the epoch when the process started, if `/proc` told.
    start: Option<f64>,
}

impl ProcessCollector {
    /// A collector for this process; its start time is read once.
    pub fn new() -> Self {
        let ticks = rustix::param::clock_ticks_per_second().max(1);
        let start = std::fs::read_to_string("/proc/self/stat")
            .ok()
            .and_then(|s| parse_stat(&s))
            .zip(
                std::fs::read_to_string("/proc/stat")
                    .ok()
                    .and_then(|s| parse_btime(&s)),
            )
            .map(|(stat, btime)| btime as f64 + stat.starttime as f64 / ticks as f64);
        Self {
            ticks,
            page: rustix::param::page_size() as u64,
            start,
        }
    }
}

impl Default for ProcessCollector {
    fn default() -> Self {
        Self::new()
    }
}

fn gauge<N: prometheus_client::encoding::EncodeGaugeValue>(
    e: &mut DescriptorEncoder<'_>,
    name: &str,
    help: &str,
    v: N,
) -> Result<(), std::fmt::Error> {
    let m = e.encode_descriptor(name, help, None, MetricType::Gauge)?;
    ConstGauge::new(v).encode(m)
}

impl Collector for ProcessCollector {
    fn encode(&self, mut e: DescriptorEncoder<'_>) -> Result<(), std::fmt::Error> {
        let e = &mut e;
        if let Some(stat) = std::fs::read_to_string("/proc/self/stat")
            .ok()
            .and_then(|s| parse_stat(&s))
        {
            let cpu = (stat.utime + stat.stime) as f64 / self.ticks as f64;
            let m = e.encode_descriptor(
                "process_cpu_seconds",
                "Total user and system CPU time spent in seconds.",
                None,
                MetricType::Counter,
            )?;
            ConstCounter::new(cpu).encode(m)?;
            gauge(
                e,
                "process_resident_memory_bytes",
                "Resident memory size in bytes.",
                i64::try_from(stat.rss.saturating_mul(self.page)).unwrap_or(i64::MAX),
            )?;
            gauge(
                e,
                "process_virtual_memory_bytes",
                "Virtual memory size in bytes.",
                i64::try_from(stat.vsize).unwrap_or(i64::MAX),
            )?;
            gauge(
                e,
                "process_threads",
                "Number of OS threads in the process.",
                i64::try_from(stat.threads).unwrap_or(i64::MAX),
            )?;
        }
        if let Ok(dir) = std::fs::read_dir("/proc/self/fd") {
            // The directory's own descriptor, open while it is read, is not counted.
            let open = dir.count().saturating_sub(1);
            gauge(
                e,
                "process_open_fds",
                "Number of open file descriptors.",
                i64::try_from(open).unwrap_or(i64::MAX),
            )?;
        }
        let limit = rustix::process::getrlimit(rustix::process::Resource::Nofile);
        if let Some(max) = limit.current {
            gauge(
                e,
                "process_max_fds",
                "Maximum number of open file descriptors.",
                i64::try_from(max).unwrap_or(i64::MAX),
            )?;
        }
        if let Some(start) = self.start {
            gauge(
                e,
                "process_start_time_seconds",
                "Start time of the process since unix epoch in seconds.",
                start,
            )?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stat_fields_are_counted_after_the_last_parenthesis_of_the_name() {
        // A name with a space and a parenthesis, as a process may call itself.
        let text = "4242 (kracauer (w0) x) S 1 4242 4242 0 -1 4194560 1000 0 0 0 \
                    250 75 0 0 20 0 3 0 123456 104857600 2560 18446744073709551615";
        assert_eq!(
            parse_stat(text),
            Some(Stat {
                utime: 250,
                stime: 75,
                threads: 3,
                starttime: 123456,
                vsize: 104857600,
                rss: 2560,
            })
        );
        assert_eq!(parse_stat("4242 (cut short) S 1"), None);
    }

    #[test]
    fn boot_time_is_read_from_proc_stat() {
        assert_eq!(
            parse_btime("cpu  1 2 3\nintr 5\nbtime 1767323045\nprocesses 9\n"),
            Some(1_767_323_045)
        );
        assert_eq!(parse_btime("cpu 1\n"), None);
    }

    #[test]
    fn this_process_has_a_start_time_and_a_resident_set() {
        let c = ProcessCollector::new();
        let start = c.start.expect("start time from /proc");
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_secs_f64();
        assert!(
            start <= now + 1.0 && start > now - 86_400.0 * 365.0,
            "{start}"
        );
        let stat = parse_stat(&std::fs::read_to_string("/proc/self/stat").unwrap()).unwrap();
        assert!(stat.rss > 0 && stat.threads >= 1, "{stat:?}");
    }
}
