//! The configuration file: the operator's contract (README.md and docs/operator-guide.md).
//!
//! Parsing happens in two steps. Serde reads the TOML into `Raw*` structs that keep the
//! byte span of every value the operator wrote; validation then turns them into a
//! [`Config`], and every error, from the TOML parser or from validation, is reported
//! with the file, line and column of the offending value and says what would be valid.
//! Unknown keys are errors, so a typo never silently falls back to a default. The
//! backend-pool part (`backend` lists, `hash`, `[route.health]`) is in `config/pool.rs`.

use std::collections::{BTreeMap, HashMap};
use std::fmt;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::ops::Range;
use std::path::{Path, PathBuf};
use std::time::Duration;

use kracauer_core::addr::Prefix96;
use kracauer_core::peek::tls::MAX_HELLO_BYTES;
use kracauer_core::route::{BackendSpec, HashOn};
use serde::Deserialize;
use toml::Spanned;

pub use self::pool::{ActiveCheck, PoolHealth};
use self::pool::{RawBackends, RawHealth};
use self::scaleout::RawScaleOut;
pub use self::scaleout::ScaleOut;

/// Default TUN device name.
pub const DEFAULT_TUN_NAME: &str = "kracauer0";
/// Default IPv6-side MTU.
pub const DEFAULT_MTU: u16 = 1500;
/// Smallest MTU IPv6 allows on any link (RFC 8200 §5).
pub const MIN_MTU: u16 = 1280;
/// Longest interface name Linux accepts (IFNAMSIZ - 1).
pub const MAX_IFNAME_LEN: usize = 15;

/// A validated configuration.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Config {
    /// `instance`: this instance's number on the host, from which every host object it
    /// creates is named ([`crate::instance`]; default 0).
    pub instance: u8,
    pub prefix: Prefix96,
    /// Where unknown names go: one backend, a pool, or none (empty: they are refused).
    pub default_backend: Vec<BackendSpec>,
    pub tun: Tun,
    pub listen: Vec<Listen>,
    pub routes: Vec<Route>,
    pub metrics: Option<Metrics>,
    pub timeouts: Timeouts,
    pub limits: Limits,
    pub log: Log,
    /// `[scale_out]`: the peers second chance passes segments to (`None`: off).
    pub scale_out: Option<ScaleOut>,
}

/// `[log]`: where the access log goes, in which format, and the daemon log's level.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Log {
    /// `access`: where the access log (one line per flow) is written.
    pub access: AccessTarget,
    /// `format`: the access log's format.
    pub format: LogFormat,
    /// `level`: the daemon log's filter (`info`, or `RUST_LOG`-style directives such as
    /// `"info,kracauer::netlink=debug"`); `-v` and `RUST_LOG` take precedence.
    pub level: Option<String>,
    /// `queue`: access-log lines held for the logging thread before lines are dropped
    /// (default [`DEFAULT_LOG_QUEUE`], about 160 bytes each, allocated at start).
    pub queue: usize,
}

/// Default `[log] queue`: at 10,000 flows a second, three seconds of a stalled sink.
pub const DEFAULT_LOG_QUEUE: usize = 32 * 1024;
/// Largest `[log] queue`.
pub const MAX_LOG_QUEUE: usize = 1 << 20;

impl Default for Log {
    fn default() -> Self {
        Self {
            access: AccessTarget::default(),
            format: LogFormat::default(),
            level: None,
            queue: DEFAULT_LOG_QUEUE,
        }
    }
}

/// Where the access log goes (`[log] access`).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub enum AccessTarget {
    /// `"stderr"` (the default): standard error, beside the daemon log.
    #[default]
    Stderr,
    /// `"file:PATH"`: appended to the file at PATH (absolute), reopened on SIGUSR1.
    File(PathBuf),
    /// `"off"`: no access log.
    Off,
}

/// The access log's format (`[log] format`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum LogFormat {
    /// `"text"` (the default): `key=value` fields, as the daemon log writes them.
    #[default]
    Text,
    /// `"json"`: one JSON object per line.
    Json,
}

/// `[timeouts]`: durations written like `"5s"`, `"250ms"`, `"2h 4m"`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Timeouts {
    /// From the client's SYN to the host name (default 5 s). Raise it for clients on
    /// very slow links; lower it to shed slowloris-style peeks sooner.
    pub peek: Duration,
    /// For the backend to answer the SYN (default 5 s).
    pub connect: Duration,
    /// First retransmission of the SYN to the backend, doubling after (default 1 s).
    pub syn_retransmit: Duration,
    /// How long one backend of a pool has to answer before the same SYN goes to the
    /// next (default 1 s); the last one tried has until `connect`.
    pub connect_attempt: Duration,
    /// Established flows idle this long are forgotten (default 2 h 4 min, the least
    /// RFC 5382 allows; lower only if clients use keepalives).
    pub idle: Duration,
    /// How long a closed flow stays to translate stragglers (default 30 s).
    pub linger: Duration,
    /// How long a peek waits with bytes it has not acknowledged, nothing new arriving,
    /// before Kracauer acknowledges them itself and takes custody of them (default
    /// 100 ms, about one delayed-ACK time; `"0s"` turns custody off). A client whose
    /// Nagle holds the rest of its hello until the first segment is acknowledged waits
    /// this long.
    pub custody: Duration,
    /// A QUIC flow whose backend has not answered yet is forgotten after this long
    /// without a datagram (default 30 s).
    pub quic_unanswered: Duration,
    /// A QUIC flow is forgotten after this long without a datagram either way (default
    /// 3 min; RFC 4787 asks for at least 2 min, and QUIC clients send PINGs well within
    /// their own idle timeout).
    pub quic_idle: Duration,
}

impl Default for Timeouts {
    fn default() -> Self {
        Self {
            peek: Duration::from_secs(5),
            connect: Duration::from_secs(5),
            syn_retransmit: Duration::from_secs(1),
            connect_attempt: Duration::from_secs(1),
            idle: Duration::from_secs(7440),
            linger: Duration::from_secs(30),
            custody: Duration::from_millis(100),
            quic_unanswered: Duration::from_secs(30),
            quic_idle: Duration::from_secs(180),
        }
    }
}

/// `[limits]`
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// Most flows in any state (default 1,000,000; about 240 bytes each). Size it to the
    /// connections you expect at peak, with room for floods.
    pub max_flows: usize,
    /// Most half-open handshakes kept as state; past it, SYN cookies (default 16,384).
    pub max_half_open: usize,
    /// Most bytes read from a client before its host must be named (default 16,384; at
    /// most 16,793,600, a ClientHello of the TLS maximum over records). A hello or head
    /// that names no host within it goes to the default backend, or is refused. Each
    /// peeking connection may hold this much, within `peek_memory` for all of them.
    pub peek_bytes: usize,
    /// Most connections peeking at once from one client address (default 64). Raise it
    /// for clients behind a large NAT.
    pub peeks_per_client: u32,
    /// Most bytes held in all peek buffers together (default 67,108,864 = 64 MiB).
    pub peek_memory: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            max_flows: 1_000_000,
            max_half_open: 16_384,
            peek_bytes: 16_384,
            peeks_per_client: 64,
            peek_memory: 64 * 1024 * 1024,
        }
    }
}

/// `[tun]`
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Tun {
    pub name: String,
    pub mtu: u16,
    /// Open the TUN with virtio-net headers and TCP offloads (checksum, TSO4, TSO6), so
    /// the kernel hands over GSO super-packets; `false` forces them off. Where the kernel
    /// refuses them the daemon falls back to plain packets and says so in the log.
    pub offload: bool,
    /// Data-plane workers, one TUN queue each; `None`: one per CPU the process may use.
    pub workers: Option<u16>,
    /// The kernel fast path (`fastpath = "auto" | "on" | "off"`).
    pub fastpath: FastpathMode,
    /// Where the fast path's program is attached (`fastpath_interfaces`); `None`: every
    /// interface that is up, other than `lo` and the TUN device.
    pub fastpath_interfaces: Option<Vec<String>>,
    /// How long the TUN keeps its carrier after the daemon dies without an orderly stop
    /// (`restart_grace`; zero: no carrier keeper), so that a quick restart withdraws
    /// nothing ([`crate::keeper`]).
    pub restart_grace: Duration,
}

/// `[tun] restart_grace` when not given.
pub const DEFAULT_RESTART_GRACE: Duration = Duration::from_secs(5);
/// The longest `[tun] restart_grace`: a crashed instance stays announced this long.
pub const MAX_RESTART_GRACE: Duration = Duration::from_secs(3600);

/// `[tun] fastpath`: whether spliced flows are translated in the kernel.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum FastpathMode {
    /// Where the kernel and the capabilities allow it, saying why not otherwise.
    #[default]
    Auto,
    /// Refuse to start without it.
    On,
    /// The TUN path for everything.
    Off,
}

/// Most TUN queues Linux allows on one device.
pub const MAX_WORKERS: u16 = 256;

/// One `[[listen]]` table: an IPv4 service address and its ports by protocol.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Listen {
    pub address: Ipv4Addr,
    pub tls: Vec<u16>,
    pub http: Vec<u16>,
    /// UDP ports of QUIC (HTTP/3), routed by the same names as `tls`.
    pub quic: Vec<u16>,
}

/// One `[[route]]` table, as written (names are resolved by the route table).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Route {
    pub hosts: Vec<String>,
    /// The backends, in the order written (one for a single address).
    pub backends: Vec<BackendSpec>,
    /// What the placement hash reads (`hash = "address" | "tuple"`).
    pub hash: HashOn,
    /// `[route.health]`: passive failure counting and the optional active check.
    pub health: PoolHealth,
    /// Service port → backend port.
    pub ports: BTreeMap<u16, u16>,
    /// Where each host name was written, for errors found later (parallel to `hosts`).
    pub host_positions: Vec<Position>,
}

/// `[metrics]`
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Metrics {
    pub listen: SocketAddr,
}

/// A line and column in the config file, both counted from 1 (columns in characters).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Position {
    pub line: usize,
    pub column: usize,
}

/// Why a configuration was not accepted.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("{}: cannot read the configuration: {source}", path.display())]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{}:{}:{}: {message}", file.display(), at.line, at.column)]
    Invalid {
        file: PathBuf,
        at: Position,
        message: String,
    },
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawConfig {
    instance: Option<Spanned<u64>>,
    prefix: Spanned<String>,
    default_backend: Option<Spanned<RawBackends>>,
    tun: Option<RawTun>,
    #[serde(default)]
    listen: Vec<Spanned<RawListen>>,
    #[serde(default)]
    route: Vec<Spanned<RawRoute>>,
    metrics: Option<RawMetrics>,
    timeouts: Option<RawTimeouts>,
    limits: Option<RawLimits>,
    log: Option<RawLog>,
    scale_out: Option<RawScaleOut>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawLog {
    access: Option<Spanned<String>>,
    format: Option<Spanned<String>>,
    level: Option<Spanned<String>>,
    queue: Option<Spanned<u64>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawTimeouts {
    peek: Option<Spanned<String>>,
    connect: Option<Spanned<String>>,
    syn_retransmit: Option<Spanned<String>>,
    connect_attempt: Option<Spanned<String>>,
    idle: Option<Spanned<String>>,
    linger: Option<Spanned<String>>,
    custody: Option<Spanned<String>>,
    quic_unanswered: Option<Spanned<String>>,
    quic_idle: Option<Spanned<String>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawLimits {
    max_flows: Option<Spanned<u64>>,
    max_half_open: Option<Spanned<u64>>,
    peek_bytes: Option<Spanned<u64>>,
    peeks_per_client: Option<Spanned<u64>>,
    peek_memory: Option<Spanned<u64>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawTun {
    name: Option<Spanned<String>>,
    mtu: Option<Spanned<u16>>,
    offload: Option<bool>,
    workers: Option<Spanned<u16>>,
    fastpath: Option<FastpathMode>,
    fastpath_interfaces: Option<Spanned<Vec<String>>>,
    restart_grace: Option<Spanned<String>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawListen {
    address: Spanned<String>,
    #[serde(default)]
    tls: Vec<Spanned<u16>>,
    #[serde(default)]
    http: Vec<Spanned<u16>>,
    #[serde(default)]
    quic: Vec<Spanned<u16>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawRoute {
    hosts: Spanned<Vec<Spanned<String>>>,
    backend: Spanned<RawBackends>,
    hash: Option<Spanned<String>>,
    health: Option<RawHealth>,
    #[serde(default)]
    ports: HashMap<Spanned<String>, Spanned<u16>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawMetrics {
    listen: Spanned<String>,
}

/// Reads and validates the configuration file at `path`.
pub fn load(path: &Path) -> Result<Config, ConfigError> {
    let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
        path: path.to_owned(),
        source,
    })?;
    parse(&text, path)
}

/// Validates configuration `text`; `file` names it in errors.
pub fn parse(text: &str, file: &Path) -> Result<Config, ConfigError> {
    let v = Validator { text, file };
    let raw: RawConfig = match toml::from_str(text) {
        Ok(raw) => raw,
        Err(e) => return v.err(e.span().unwrap_or(0..0), e.message().trim_end()),
    };
    v.config(raw)
}

/// Line and column (1-based, columns in characters) of byte `offset` in `text`.
pub fn position(text: &str, offset: usize) -> Position {
    let offset = offset.min(text.len());
    let before = text.get(..offset).unwrap_or(text);
    let line_start = before.rfind('\n').map_or(0, |i| i + 1);
    Position {
        line: before.matches('\n').count() + 1,
        column: before[line_start..].chars().count() + 1,
    }
}

struct Validator<'a> {
    text: &'a str,
    file: &'a Path,
}

impl Validator<'_> {
    fn err<T>(&self, span: Range<usize>, message: impl fmt::Display) -> Result<T, ConfigError> {
        Err(ConfigError::Invalid {
            file: self.file.to_owned(),
            at: position(self.text, span.start),
            message: message.to_string(),
        })
    }

    fn config(&self, raw: RawConfig) -> Result<Config, ConfigError> {
        let prefix: Prefix96 = match raw.prefix.get_ref().parse() {
            Ok(p) => p,
            Err(e) => return self.err(raw.prefix.span(), format!("prefix: {e}")),
        };
        let default_backend = match &raw.default_backend {
            Some(b) => self.backends(b, prefix, "default_backend")?,
            None => Vec::new(),
        };
        let instance = match &raw.instance {
            None => 0,
            Some(n) => match u8::try_from(*n.get_ref()) {
                Ok(n) if n <= crate::instance::MAX_INSTANCE => n,
                _ => {
                    return self.err(
                        n.span(),
                        format!(
                            "instance: {} is out of range; give 0 to {} (each instance on a host its own)",
                            n.get_ref(),
                            crate::instance::MAX_INSTANCE
                        ),
                    );
                }
            },
        };
        let tun = self.tun(raw.tun, instance)?;
        let listen = self.listen(&raw.listen)?;
        let routes = raw
            .route
            .iter()
            .map(|r| self.route(r, prefix, &listen))
            .collect::<Result<Vec<_>, _>>()?;
        let metrics = match raw.metrics {
            Some(m) => Some(Metrics {
                listen: match m.listen.get_ref().parse() {
                    Ok(a) => a,
                    Err(_) => {
                        return self.err(
                            m.listen.span(),
                            format!(
                                "metrics.listen: {:?} is not ADDRESS:PORT, e.g. \"127.0.0.1:9641\" or \"[::1]:9641\"",
                                m.listen.get_ref()
                            ),
                        );
                    }
                },
            }),
            None => None,
        };
        let timeouts = self.timeouts(raw.timeouts)?;
        let limits = self.limits(raw.limits)?;
        let log = self.log(raw.log)?;
        let scale_out = self.scale_out(raw.scale_out)?;
        Ok(Config {
            instance,
            prefix,
            default_backend,
            tun,
            listen,
            routes,
            metrics,
            timeouts,
            limits,
            log,
            scale_out,
        })
    }

    fn log(&self, raw: Option<RawLog>) -> Result<Log, ConfigError> {
        let Some(raw) = raw else {
            return Ok(Log::default());
        };
        let access = match &raw.access {
            None => AccessTarget::Stderr,
            Some(a) => match a.get_ref().as_str() {
                "stderr" => AccessTarget::Stderr,
                "off" => AccessTarget::Off,
                s => match s.strip_prefix("file:") {
                    Some(path) if Path::new(path).is_absolute() => {
                        AccessTarget::File(PathBuf::from(path))
                    }
                    Some(path) => {
                        return self.err(
                            a.span(),
                            format!(
                                "log.access: the file {path:?} must be an absolute path, e.g. \"file:/var/log/kracauer/access.log\""
                            ),
                        );
                    }
                    None => {
                        return self.err(
                            a.span(),
                            format!(
                                "log.access: {s:?} is not a log target; give \"stderr\", \"file:/ABSOLUTE/PATH\" or \"off\""
                            ),
                        );
                    }
                },
            },
        };
        let format = match &raw.format {
            None => LogFormat::Text,
            Some(f) => match f.get_ref().as_str() {
                "text" => LogFormat::Text,
                "json" => LogFormat::Json,
                s => {
                    return self.err(
                        f.span(),
                        format!("log.format: {s:?} is not a format; give \"text\" or \"json\""),
                    );
                }
            },
        };
        let level = match &raw.level {
            None => None,
            Some(l) => match crate::logging::filter(l.get_ref()) {
                Ok(_) => Some(l.get_ref().clone()),
                Err(e) => {
                    return self.err(
                        l.span(),
                        format!(
                            "log.level: {:?} is not a level or filter ({e}); give \"error\", \"warn\", \"info\", \"debug\" or \"trace\", or directives such as \"info,kracauer::netlink=debug\"",
                            l.get_ref()
                        ),
                    );
                }
            },
        };
        let queue = match &raw.queue {
            None => DEFAULT_LOG_QUEUE,
            Some(q) => match usize::try_from(*q.get_ref()) {
                Ok(n) if (1..=MAX_LOG_QUEUE).contains(&n) => n,
                _ => {
                    return self.err(
                        q.span(),
                        format!(
                            "log.queue: {} is out of range; give 1 to {MAX_LOG_QUEUE} lines",
                            q.get_ref()
                        ),
                    );
                }
            },
        };
        Ok(Log {
            access,
            format,
            level,
            queue,
        })
    }

    fn timeouts(&self, raw: Option<RawTimeouts>) -> Result<Timeouts, ConfigError> {
        let d = Timeouts::default();
        let Some(raw) = raw else { return Ok(d) };
        let get_or_zero = |v: &Option<Spanned<String>>,
                           key: &str,
                           default: Duration,
                           zero: bool|
         -> Result<Duration, ConfigError> {
            let Some(v) = v else { return Ok(default) };
            match humantime::parse_duration(v.get_ref()) {
                Ok(t) if zero || !t.is_zero() => Ok(t),
                Ok(_) => self.err(v.span(), format!("timeouts.{key}: must be longer than zero")),
                Err(e) => self.err(
                    v.span(),
                    format!(
                        "timeouts.{key}: {:?} is not a duration ({e}); write e.g. \"5s\", \"250ms\" or \"2h 4m\"",
                        v.get_ref()
                    ),
                ),
            }
        };
        let get = |v: &Option<Spanned<String>>, key: &str, default: Duration| {
            get_or_zero(v, key, default, false)
        };
        Ok(Timeouts {
            peek: get(&raw.peek, "peek", d.peek)?,
            connect: get(&raw.connect, "connect", d.connect)?,
            syn_retransmit: get(&raw.syn_retransmit, "syn_retransmit", d.syn_retransmit)?,
            connect_attempt: get(&raw.connect_attempt, "connect_attempt", d.connect_attempt)?,
            idle: get(&raw.idle, "idle", d.idle)?,
            linger: get(&raw.linger, "linger", d.linger)?,
            custody: get_or_zero(&raw.custody, "custody", d.custody, true)?,
            quic_unanswered: get(&raw.quic_unanswered, "quic_unanswered", d.quic_unanswered)?,
            quic_idle: get(&raw.quic_idle, "quic_idle", d.quic_idle)?,
        })
    }

    fn limits(&self, raw: Option<RawLimits>) -> Result<Limits, ConfigError> {
        let d = Limits::default();
        let Some(raw) = raw else { return Ok(d) };
        let get = |v: &Option<Spanned<u64>>,
                   key: &str,
                   default: u64,
                   max: u64|
         -> Result<u64, ConfigError> {
            let Some(v) = v else { return Ok(default) };
            let n = *v.get_ref();
            if n == 0 || n > max {
                return self.err(
                    v.span(),
                    format!("limits.{key}: {n} is out of range; give 1 to {max}"),
                );
            }
            Ok(n)
        };
        let u32max = u64::from(u32::MAX);
        Ok(Limits {
            max_flows: get(&raw.max_flows, "max_flows", d.max_flows as u64, u32max)? as usize,
            max_half_open: get(
                &raw.max_half_open,
                "max_half_open",
                d.max_half_open as u64,
                u32max,
            )? as usize,
            peek_bytes: get(
                &raw.peek_bytes,
                "peek_bytes",
                d.peek_bytes as u64,
                MAX_HELLO_BYTES as u64,
            )? as usize,
            peeks_per_client: get(
                &raw.peeks_per_client,
                "peeks_per_client",
                u64::from(d.peeks_per_client),
                u32max,
            )? as u32,
            peek_memory: get(
                &raw.peek_memory,
                "peek_memory",
                d.peek_memory as u64,
                1 << 40,
            )? as usize,
        })
    }

    fn backend(
        &self,
        s: &Spanned<String>,
        prefix: Prefix96,
        key: &str,
    ) -> Result<Ipv6Addr, ConfigError> {
        let addr: Ipv6Addr = match s.get_ref().parse() {
            Ok(a) => a,
            Err(_) => {
                let hint = if s.get_ref().parse::<Ipv4Addr>().is_ok() {
                    "; backends are reached over IPv6 only"
                } else {
                    ""
                };
                return self.err(
                    s.span(),
                    format!(
                        "{key}: {:?} is not an IPv6 address, e.g. \"2001:db8:1::2\"{hint}",
                        s.get_ref()
                    ),
                );
            }
        };
        let why = if addr.is_unspecified() {
            Some("the unspecified address")
        } else if addr.is_loopback() {
            Some("loopback; a backend must be reachable over the network")
        } else if addr.is_multicast() {
            Some("multicast; a backend must be a unicast address")
        } else if addr.is_unicast_link_local() {
            Some("link-local; a backend must be routable")
        } else if prefix.contains(addr) {
            Some("inside the translation prefix, which stands for clients")
        } else if addr.to_ipv4_mapped().is_some() {
            Some("IPv4-mapped; backends are reached over IPv6 only")
        } else {
            None
        };
        match why {
            Some(why) => self.err(s.span(), format!("{key}: {addr} is {why}")),
            None => Ok(addr),
        }
    }

    fn tun(&self, raw: Option<RawTun>, instance: u8) -> Result<Tun, ConfigError> {
        let (fastpath, fastpath_interfaces) = raw.as_ref().map_or((None, None), |t| {
            (t.fastpath, t.fastpath_interfaces.clone())
        });
        let restart_grace =
            self.restart_grace(raw.as_ref().and_then(|t| t.restart_grace.as_ref()))?;
        let (name, mtu, offload, workers) = raw.map_or((None, None, None, None), |t| {
            (t.name, t.mtu, t.offload, t.workers)
        });
        let name = match name {
            None => crate::instance::default_tun(instance),
            Some(n) => {
                let s = n.get_ref();
                let ok = !s.is_empty()
                    && s.len() <= MAX_IFNAME_LEN
                    && s != "."
                    && s != ".."
                    && s.bytes()
                        .all(|b| b.is_ascii_graphic() && b != b'/' && b != b':');
                if !ok {
                    return self.err(
                        n.span(),
                        format!(
                            "tun.name: {s:?} is not a usable interface name: 1 to {MAX_IFNAME_LEN} printable ASCII characters without '/', ':' or spaces, e.g. \"{DEFAULT_TUN_NAME}\""
                        ),
                    );
                }
                s.clone()
            }
        };
        let mtu = match mtu {
            None => DEFAULT_MTU,
            Some(m) if *m.get_ref() < MIN_MTU => {
                return self.err(
                    m.span(),
                    format!(
                        "tun.mtu: {} is below {MIN_MTU}, the smallest MTU IPv6 allows",
                        m.get_ref()
                    ),
                );
            }
            Some(m) => *m.get_ref(),
        };
        let workers = match workers {
            Some(w) if *w.get_ref() == 0 || *w.get_ref() > MAX_WORKERS => {
                return self.err(
                    w.span(),
                    format!(
                        "tun.workers: {} is not 1 to {MAX_WORKERS} (one TUN queue each); leave it out for one per CPU",
                        w.get_ref()
                    ),
                );
            }
            w => w.map(|w| *w.get_ref()),
        };
        let fastpath_interfaces = match fastpath_interfaces {
            Some(list) if list.get_ref().iter().any(|i| i.is_empty() || *i == name) => {
                return self.err(
                    list.span(),
                    format!(
                        "tun.fastpath_interfaces: names the TUN device {name:?} or an empty name; list the interfaces packets arrive on"
                    ),
                );
            }
            l => l.map(Spanned::into_inner),
        };
        Ok(Tun {
            name,
            mtu,
            offload: offload.unwrap_or(true),
            workers,
            fastpath: fastpath.unwrap_or_default(),
            fastpath_interfaces,
            restart_grace,
        })
    }

    /// `[tun] restart_grace`: a duration from zero (no carrier keeper) to an hour.
    fn restart_grace(&self, raw: Option<&Spanned<String>>) -> Result<Duration, ConfigError> {
        let Some(v) = raw else {
            return Ok(DEFAULT_RESTART_GRACE);
        };
        match humantime::parse_duration(v.get_ref()) {
            Ok(t) if t <= MAX_RESTART_GRACE => Ok(t),
            Ok(_) => self.err(
                v.span(),
                format!(
                    "tun.restart_grace: {:?} is longer than an hour; a crashed instance stays announced that long",
                    v.get_ref()
                ),
            ),
            Err(e) => self.err(
                v.span(),
                format!(
                    "tun.restart_grace: {:?} is not a duration ({e}); write e.g. \"5s\", or \"0s\" to withdraw at once after a crash",
                    v.get_ref()
                ),
            ),
        }
    }

    fn listen(&self, raw: &[Spanned<RawListen>]) -> Result<Vec<Listen>, ConfigError> {
        if raw.is_empty() {
            return self.err(
                0..0,
                "no [[listen]] table: give at least one IPv4 service address, e.g.\n[[listen]]\naddress = \"203.0.113.10\"\ntls = [443]",
            );
        }
        let mut seen: HashMap<Ipv4Addr, Range<usize>> = HashMap::new();
        let mut out = Vec::with_capacity(raw.len());
        for l in raw {
            let l_span = l.span();
            let l = l.get_ref();
            let address = self.service_address(&l.address)?;
            if let Some(first) = seen.insert(address, l.address.span()) {
                let first = position(self.text, first.start);
                return self.err(
                    l.address.span(),
                    format!(
                        "listen: {address} already has a [[listen]] table (line {}); put all its ports in one",
                        first.line
                    ),
                );
            }
            if l.tls.is_empty() && l.http.is_empty() && l.quic.is_empty() {
                return self.err(
                    l_span,
                    format!(
                        "listen: {address} has no ports: give `tls = [443]`, `http = [80]` and/or `quic = [443]`"
                    ),
                );
            }
            let mut ports: HashMap<u16, &str> = HashMap::new();
            for (proto, list) in [("tls", &l.tls), ("http", &l.http)] {
                for p in list {
                    let port = *p.get_ref();
                    if port == 0 {
                        return self.err(
                            p.span(),
                            format!("listen.{proto}: port 0 is not a service port (1 to 65535)"),
                        );
                    }
                    if let Some(other) = ports.insert(port, proto) {
                        return self.err(
                            p.span(),
                            format!("listen.{proto}: port {port} of {address} is already a {other} port; a port carries one protocol"),
                        );
                    }
                }
            }
            // QUIC is UDP: its ports are a namespace of their own (443 is both TLS and
            // QUIC as a rule).
            let mut udp: HashMap<u16, ()> = HashMap::new();
            for p in &l.quic {
                let port = *p.get_ref();
                if port == 0 {
                    return self.err(
                        p.span(),
                        "listen.quic: port 0 is not a service port (1 to 65535)",
                    );
                }
                if udp.insert(port, ()).is_some() {
                    return self.err(
                        p.span(),
                        format!("listen.quic: port {port} of {address} is listed twice"),
                    );
                }
            }
            out.push(Listen {
                address,
                tls: l.tls.iter().map(|p| *p.get_ref()).collect(),
                http: l.http.iter().map(|p| *p.get_ref()).collect(),
                quic: l.quic.iter().map(|p| *p.get_ref()).collect(),
            });
        }
        Ok(out)
    }

    fn service_address(&self, s: &Spanned<String>) -> Result<Ipv4Addr, ConfigError> {
        match s.get_ref().parse::<IpAddr>() {
            Ok(IpAddr::V4(a)) if a.is_unspecified() || a.is_broadcast() || a.is_multicast() || a.is_loopback() => self
                .err(
                    s.span(),
                    format!("listen.address: {a} cannot be a service address; give the IPv4 unicast address clients connect to"),
                ),
            Ok(IpAddr::V4(a)) => Ok(a),
            Ok(IpAddr::V6(a)) => self.err(
                s.span(),
                format!("listen.address: {a} is IPv6; IPv6 clients reach the backends directly, so give the IPv4 service address, e.g. \"203.0.113.10\""),
            ),
            Err(_) => self.err(
                s.span(),
                format!("listen.address: {:?} is not an IPv4 address, e.g. \"203.0.113.10\"", s.get_ref()),
            ),
        }
    }

    fn route(
        &self,
        raw: &Spanned<RawRoute>,
        prefix: Prefix96,
        listen: &[Listen],
    ) -> Result<Route, ConfigError> {
        let r = raw.get_ref();
        if r.hosts.get_ref().is_empty() {
            return self.err(
                r.hosts.span(),
                "route.hosts: the list is empty; give at least one name, e.g. [\"a.example\"]",
            );
        }
        let backends = self.backends(&r.backend, prefix, "route.backend")?;
        let hash = self.hash(r.hash.as_ref())?;
        let mut ports = BTreeMap::new();
        let mut keys: Vec<_> = r.ports.iter().collect();
        keys.sort_by_key(|(k, _)| k.span().start);
        for (k, v) in keys {
            let service: u16 = match k.get_ref().parse() {
                Ok(p) if p != 0 => p,
                _ => {
                    return self.err(
                        k.span(),
                        format!("route.ports: {:?} is not a port number (1 to 65535), e.g. ports = {{ 443 = 8443 }}", k.get_ref()),
                    );
                }
            };
            if !listen.iter().any(|l| {
                l.tls.contains(&service) || l.http.contains(&service) || l.quic.contains(&service)
            }) {
                return self.err(
                    k.span(),
                    format!("route.ports: {service} is not a service port of any [[listen]] table, so nothing would use this remap"),
                );
            }
            if *v.get_ref() == 0 {
                return self.err(
                    v.span(),
                    "route.ports: backend port 0 is not a port (1 to 65535)",
                );
            }
            ports.insert(service, *v.get_ref());
        }
        let health = self.health(r.health.as_ref(), &ports, listen)?;
        Ok(Route {
            hosts: r
                .hosts
                .get_ref()
                .iter()
                .map(|h| h.get_ref().clone())
                .collect(),
            backends,
            hash,
            health,
            ports,
            host_positions: r
                .hosts
                .get_ref()
                .iter()
                .map(|h| position(self.text, h.span().start))
                .collect(),
        })
    }
}

mod pool;
mod scaleout;
#[cfg(test)]
mod tests;
