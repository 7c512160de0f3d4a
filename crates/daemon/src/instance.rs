//! An instance's identity on the host (docs/scale-out.md, "Instances on one host"), and
//! the record that lets a start or `kracauer check` see the instances already running.
//!
//! Every host object a Kracauer creates is derived from one number, `instance = N` in the
//! configuration (0 to [`MAX_INSTANCE`], default 0), so that instances never collide:
//!
//! | object | instance N | instance 0 (as before scale-out) |
//! |---|---|---|
//! | route protocol tag of its routes and rules | 107 + N | 107 |
//! | routing table of the divert rules' default route | 27506 + N | 27506 |
//! | preference of its divert rules | 500 + N | 500 |
//! | TUN device (unless `[tun] name` is given) | `kracauerN` | `kracauer0` |
//! | sysctl record, kernel fast-path pins | named after the TUN | |
//! | this record | `instance-netnsINODE-N.state` | |
//!
//! A start, or a crash clean-up, removes only the routes and rules tagged with its own
//! protocol. The one shared object is the copy of the kernel's `local` rule at
//! preference [`LOCAL_PREF`] (after every instance's divert rules), tagged
//! [`BASE_PROTOCOL`]: whichever instance first needs it moves the `local` rule there, and
//! the last instance with divert rules to stop puts it back at preference 0.
//!
//! The record is a small text file in the state directory (`$RUNTIME_DIRECTORY`, or
//! `/run/kracauer`), one per network namespace and instance, holding what another
//! instance could collide with. The running instance holds an exclusive `flock` on it for
//! its whole life, inherited across live upgrades (the descriptor is not close-on-exec):
//! a record whose lock nobody holds is what a crashed run left, and is ignored.

use std::fmt::Write as _;
use std::fs::File;
use std::io::{self, Read as _, Write as _};
use std::net::{Ipv4Addr, SocketAddr};
use std::path::{Path, PathBuf};

use kracauer_core::addr::Prefix96;
use rustix::fs::FlockOperation;

use crate::config::Config;

/// The route protocol tag of instance 0 (`proto 107`; 107 is `k`, unused by
/// `/etc/iproute2/rt_protos`).
pub const BASE_PROTOCOL: u8 = 107;
/// The divert table of instance 0.
pub const BASE_TABLE: u32 = 27506;
/// The divert rules' preference for instance 0.
pub const BASE_DIVERT_PREF: u32 = 500;
/// Where the `local` rule is moved to, after every instance's divert rules; shared.
pub const LOCAL_PREF: u32 = 1000;
/// The highest instance number: protocols 107 to 170 are free in `rt_protos` (BIRD is
/// 12, the routing daemons' own numbers start at 186), preferences stay below 1000.
pub const MAX_INSTANCE: u8 = 63;

/// The host identifiers of one instance.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Ids {
    pub instance: u8,
    /// The route protocol tag on every route and rule this instance adds.
    pub protocol: u8,
    /// The routing table whose default route is this instance's TUN.
    pub table: u32,
    /// Preference of this instance's divert rules.
    pub divert_pref: u32,
}

impl Ids {
    /// The identifiers of instance `n` (at most [`MAX_INSTANCE`]; larger is clamped).
    pub fn of(n: u8) -> Self {
        let n = n.min(MAX_INSTANCE);
        Self {
            instance: n,
            protocol: BASE_PROTOCOL + n,
            table: BASE_TABLE + u32::from(n),
            divert_pref: BASE_DIVERT_PREF + u32::from(n),
        }
    }

    /// Whether `protocol` is the tag of some Kracauer instance.
    pub fn is_kracauer(protocol: u8) -> bool {
        (BASE_PROTOCOL..=BASE_PROTOCOL + MAX_INSTANCE).contains(&protocol)
    }
}

/// The TUN name of instance `n` when the configuration names none.
pub fn default_tun(n: u8) -> String {
    format!("kracauer{n}")
}

/// Why an instance cannot start, or a configuration would collide.
#[derive(Debug, thiserror::Error)]
pub enum InstanceError {
    #[error("the instance record {}: {source}", path.display())]
    Io {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error("this configuration collides with a running Kracauer: {}", .0.join("; "))]
    Collides(Vec<String>),
}

/// What a running instance holds on the host, as its record says.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Record {
    pub instance: u8,
    pub pid: u32,
    /// The configuration file it runs with (as given, made absolute).
    pub config: PathBuf,
    pub tun: String,
    pub prefix: Prefix96,
    pub addresses: Vec<Ipv4Addr>,
    pub metrics: Option<SocketAddr>,
    /// `[scale_out]`'s address and port (bound with `SO_REUSEPORT`, so a second
    /// instance's bind would not fail: it would take half the datagrams).
    pub second_chance: Option<SocketAddr>,
}

impl Record {
    /// The record of `c`, read from `path`, run by this process.
    pub fn of(c: &Config, path: &Path) -> Self {
        Self {
            instance: c.instance,
            pid: std::process::id(),
            config: absolute(path),
            tun: c.tun.name.clone(),
            prefix: c.prefix,
            addresses: c.listen.iter().map(|l| l.address).collect(),
            metrics: c.metrics.map(|m| m.listen),
            second_chance: c.scale_out.as_ref().map(|s| s.listen),
        }
    }

    fn to_text(&self) -> String {
        let mut s = String::new();
        let _ = writeln!(s, "instance {}", self.instance);
        let _ = writeln!(s, "pid {}", self.pid);
        let _ = writeln!(s, "config {}", self.config.display());
        let _ = writeln!(s, "tun {}", self.tun);
        let _ = writeln!(s, "prefix {}", self.prefix);
        for a in &self.addresses {
            let _ = writeln!(s, "address {a}");
        }
        if let Some(m) = self.metrics {
            let _ = writeln!(s, "metrics {m}");
        }
        if let Some(a) = self.second_chance {
            let _ = writeln!(s, "second_chance {a}");
        }
        s
    }

    /// Parses [`Record::to_text`]; `None` for anything else (a record of another
    /// version is not trusted, and ignored).
    fn parse(text: &str) -> Option<Self> {
        let (mut instance, mut pid, mut tun, mut prefix) = (None, None, None, None);
        let mut config = None;
        let (mut addresses, mut metrics, mut second_chance) = (Vec::new(), None, None);
        for line in text.lines() {
            let (key, value) = line.split_once(' ')?;
            match key {
                "instance" => instance = Some(value.parse().ok()?),
                "pid" => pid = Some(value.parse().ok()?),
                "config" => config = Some(PathBuf::from(value)),
                "tun" => tun = Some(value.to_owned()),
                "prefix" => prefix = Some(value.parse().ok()?),
                "address" => addresses.push(value.parse().ok()?),
                "metrics" => metrics = Some(value.parse().ok()?),
                "second_chance" => second_chance = Some(value.parse().ok()?),
                _ => return None,
            }
        }
        Some(Self {
            instance: instance?,
            pid: pid?,
            config: config?,
            tun: tun?,
            prefix: prefix?,
            addresses,
            metrics,
            second_chance,
        })
    }

    /// What in `c`, read from `path`, this running instance could not take from a reload
    /// or a live upgrade, when it runs `path` as the same instance: a new `[tun] name`
    /// (one line, naming the setting and why; empty otherwise).
    pub fn needs_restart(&self, c: &Config, path: &Path) -> Vec<String> {
        if self.instance != c.instance || self.config != absolute(path) || self.tun == c.tun.name {
            return Vec::new();
        }
        vec![format!(
            "[tun] name: instance {} (pid {}) runs this configuration on the TUN device {:?}, \
             not {:?}: a reload or a live upgrade (SIGUSR2) refuses a new name; it takes {}",
            self.instance,
            self.pid,
            self.tun,
            c.tun.name,
            crate::reload::how_to_apply("[tun] name")
        )]
    }

    /// What `c`, read from `path`, would collide with in this running instance, one line
    /// each. The same instance number with the same configuration file is the running
    /// instance itself (`check` before a reload or an upgrade): nothing.
    pub fn collisions(&self, c: &Config, path: &Path) -> Vec<String> {
        let who = format!("instance {} (pid {}", self.instance, self.pid);
        let mut out = Vec::new();
        if self.instance == c.instance && self.config == absolute(path) {
            return out;
        }
        if self.instance == c.instance {
            out.push(format!(
                "{who}) runs already: give this one another `instance = N` (0 to {MAX_INSTANCE})"
            ));
        }
        if self.tun == c.tun.name {
            out.push(format!("{who}) uses the TUN device {}", self.tun));
        }
        if self.prefix == c.prefix {
            out.push(format!(
                "{who}) owns the prefix {}: each instance needs its own /96",
                self.prefix
            ));
        }
        for l in &c.listen {
            if self.addresses.contains(&l.address) {
                out.push(format!("{who}) serves {} already", l.address));
            }
        }
        if let (Some(a), Some(b)) = (self.metrics, c.metrics.map(|m| m.listen)) {
            if a == b {
                out.push(format!("{who}) serves metrics on {a}"));
            }
        }
        if let (Some(a), Some(b)) = (self.second_chance, c.scale_out.as_ref().map(|s| s.listen)) {
            if a == b {
                out.push(format!(
                    "{who}) takes second-chance traffic on {a}: give this one another [scale_out] port"
                ));
            }
        }
        out
    }
}

/// The state directory: `$RUNTIME_DIRECTORY` (systemd's `RuntimeDirectory=`), or
/// [`crate::sysctl::STATE_DIR`].
pub fn state_dir() -> PathBuf {
    std::env::var_os("RUNTIME_DIRECTORY")
        .filter(|d| !d.is_empty())
        .map_or_else(|| PathBuf::from(crate::sysctl::STATE_DIR), PathBuf::from)
}

/// The calling thread's network namespace, by inode number (0 if unknown).
fn netns() -> u64 {
    use std::os::unix::fs::MetadataExt;
    std::fs::metadata("/proc/thread-self/ns/net").map_or(0, |m| m.ino())
}

/// The record file of instance `n` in `dir`, for this network namespace.
fn record_path(dir: &Path, n: u8) -> PathBuf {
    dir.join(format!("instance-netns{}-{n}.state", netns()))
}

/// The records of the instances running in this network namespace (their lock held),
/// other than this process's own.
pub fn running(dir: &Path) -> Vec<Record> {
    let prefix = format!("instance-netns{}-", netns());
    let Ok(entries) = std::fs::read_dir(dir) else {
        return Vec::new();
    };
    let mut out = Vec::new();
    for e in entries.flatten() {
        let name = e.file_name().to_string_lossy().into_owned();
        if !name.starts_with(&prefix) || !name.ends_with(".state") {
            continue;
        }
        let Ok(mut file) = File::open(e.path()) else {
            continue;
        };
        if !locked(&file) {
            continue; // a crashed run's record
        }
        let mut text = String::new();
        if file.read_to_string(&mut text).is_err() {
            continue;
        }
        if let Some(r) = Record::parse(&text).filter(|r| r.pid != std::process::id()) {
            out.push(r);
        }
    }
    out.sort_by_key(|r| r.instance);
    out
}

/// Whether some process holds the lock on `file`.
fn locked(file: &File) -> bool {
    match rustix::fs::flock(file, FlockOperation::NonBlockingLockShared) {
        Ok(()) => {
            let _ = rustix::fs::flock(file, FlockOperation::Unlock);
            false
        }
        Err(_) => true,
    }
}

/// What `c`, read from `path`, would collide with among the instances running here,
/// one line each.
pub fn collisions(c: &Config, path: &Path, dir: &Path) -> Vec<String> {
    running(dir)
        .iter()
        .flat_map(|r| r.collisions(c, path))
        .collect()
}

/// What the instance running `path` here could not take from `c` but by a restart
/// ([`Record::needs_restart`]), one line each.
pub fn needs_restart(c: &Config, path: &Path, dir: &Path) -> Vec<String> {
    running(dir)
        .iter()
        .flat_map(|r| r.needs_restart(c, path))
        .collect()
}

/// Whether instance `n`'s record here is locked: its process (or, in a live upgrade's
/// new process, the one handing over) runs.
pub fn held(n: u8, dir: &Path) -> bool {
    File::open(record_path(dir, n)).is_ok_and(|f| locked(&f))
}

/// `path` made absolute against the working directory (not resolved: the same file
/// given two ways counts as two).
fn absolute(path: &Path) -> PathBuf {
    std::path::absolute(path).unwrap_or_else(|_| path.to_owned())
}

/// This instance's claim on its identity: the locked record. Dropping it releases the
/// lock and leaves the file (what a crash leaves); [`Claim::release`] removes it.
#[derive(Debug)]
pub struct Claim {
    file: File,
    path: PathBuf,
}

impl Claim {
    /// Refuses `c` if it collides with an instance running here; otherwise writes and
    /// locks its record in `dir`. The lock's descriptor is inherited by a live upgrade's
    /// new process, which so keeps the claim without a gap.
    pub fn take(c: &Config, config: &Path, dir: &Path) -> Result<Self, InstanceError> {
        let found = collisions(c, config, dir);
        if !found.is_empty() {
            return Err(InstanceError::Collides(found));
        }
        let path = record_path(dir, c.instance);
        let io = |source| InstanceError::Io {
            path: path.clone(),
            source,
        };
        std::fs::create_dir_all(dir).map_err(io)?;
        let mut file = std::fs::OpenOptions::new()
            .create(true)
            .truncate(false)
            .read(true)
            .write(true)
            .open(&path)
            .map_err(io)?;
        if rustix::fs::flock(&file, FlockOperation::NonBlockingLockExclusive).is_err() {
            return Err(InstanceError::Collides(vec![format!(
                "instance {} runs already (its record {} is locked)",
                c.instance,
                path.display()
            )]));
        }
        file.set_len(0).map_err(io)?;
        file.write_all(Record::of(c, config).to_text().as_bytes())
            .map_err(io)?;
        rustix::io::fcntl_setfd(&file, rustix::io::FdFlags::empty()).map_err(|e| io(e.into()))?;
        Ok(Self { file, path })
    }

    /// An orderly stop: the record is removed, then the lock released.
    pub fn release(self) {
        let _ = std::fs::remove_file(&self.path);
        drop(self.file);
    }
}

/// After a live upgrade: the record (whose lock this process inherited) names this
/// process and its configuration `c`, read from `config`.
pub fn adopt(c: &Config, config: &Path, dir: &Path) {
    let path = record_path(dir, c.instance);
    if let Err(e) = std::fs::write(&path, Record::of(c, config).to_text()) {
        tracing::warn!("cannot update the instance record {}: {e}", path.display());
    }
}

/// An orderly stop of a process that took over in a live upgrade (it holds the lock by
/// an inherited descriptor, not a [`Claim`]): the record is removed.
pub fn remove(n: u8, dir: &Path) {
    let _ = std::fs::remove_file(record_path(dir, n));
}

#[cfg(test)]
mod tests;
