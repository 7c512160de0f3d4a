//! The sysctls Kracauer sets, scoped to the interfaces that need them, and how they are
//! put back: at exit, and after a crash at the next start.
//!
//! Forwarding is decided on the interface a packet comes in on, so it is enabled there:
//! - IPv4 (`net.ipv4.conf.IF.forwarding`, per interface on every kernel): on the TUN
//!   (packets to clients) and on the interfaces clients' packets come in on. Those are
//!   taken to be the interfaces of the host's IPv4 default routes, or, on a host without
//!   one, of every IPv4 route in the main table (the host reaches clients only through
//!   them). `net.ipv4.ip_forward` is not touched.
//! - IPv6 (`net.ipv6.conf.IF.force_forwarding`, Linux 6.17 and later): on the TUN (packets
//!   to backends) and on the interfaces the backends are reached through (their replies
//!   come in there), as `ip route get BACKEND` says. The interfaces stay hosts, so router
//!   advertisements keep working. Older kernels only forward IPv6 with the global
//!   `net.ipv6.conf.all.forwarding=1`, which makes every interface a router that ignores
//!   router advertisements: there Kracauer says so, and first sets `accept_ra=2` on every
//!   interface that has a default route learnt from router advertisements and
//!   `accept_ra=1`, so the host keeps its IPv6 default route.
//!
//! Every value is written only if it differs, and the old one is recorded, before the
//! write, in a state file ([`state_path`], under `/run/kracauer/`). Tear-down puts the old
//! values back, newest first, and removes the file; a start that finds the file (the last
//! run crashed) does the same first. A value is put back only if it still holds what
//! Kracauer wrote: one the operator changed since is left alone, and so is a device that
//! is gone.

use std::fmt::Write as _;
use std::io;
use std::path::{Path, PathBuf};

use crate::netlink::NetError;

/// Where a state file lives unless systemd's `RuntimeDirectory=` says otherwise
/// (`$RUNTIME_DIRECTORY`).
pub const STATE_DIR: &str = "/run/kracauer";

/// One sysctl write of the plan.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Change {
    /// Below `/proc/sys`, with `/` between the parts: `net/ipv4/conf/eth0/forwarding`.
    pub path: String,
    pub value: &'static str,
    /// Why, for `kracauer check` and the log.
    pub why: &'static str,
    /// A failure is logged, not an error (the setting is only an improvement).
    pub optional: bool,
}

impl Change {
    fn new(path: String, value: &'static str, why: &'static str) -> Self {
        Self {
            path,
            value,
            why,
            optional: false,
        }
    }

    /// The name as `sysctl` writes it: dots between the parts, a dot inside an interface
    /// name (`eth0.100`) as `/`.
    pub fn name(&self) -> String {
        sysctl_name(&self.path)
    }
}

/// `net/ipv4/conf/eth0.100/forwarding` as `net.ipv4.conf.eth0/100.forwarding`.
pub fn sysctl_name(path: &str) -> String {
    path.split('/')
        .map(|p| p.replace('.', "/"))
        .collect::<Vec<_>>()
        .join(".")
}

/// What the host looks like, as far as the sysctls go.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Facts {
    pub tun: String,
    /// Interfaces clients' IPv4 packets come in on (not the TUN, not `lo`).
    pub ipv4_links: Vec<String>,
    /// Interfaces the backends are reached through (not the TUN, not `lo`).
    pub ipv6_links: Vec<String>,
    /// Whether the kernel has `net.ipv6.conf.IF.force_forwarding` (Linux 6.17).
    pub force_forwarding: bool,
    /// Interfaces with an IPv6 default route learnt from router advertisements, with
    /// their `accept_ra`.
    pub ra_links: Vec<(String, String)>,
}

/// The sysctls for `facts`, in the order they are written, and notes for the operator.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct SysctlPlan {
    pub changes: Vec<Change>,
    pub notes: Vec<String>,
}

/// Before the TUN comes up: no IPv6 link-local address on it (`addr_gen_mode=1`), so the
/// kernel sends no router solicitations or MLD reports into it, which the engine would
/// only count as drops. An old kernel without the setting is no error.
pub fn before_up(tun: &str) -> Change {
    Change {
        optional: true,
        ..Change::new(
            format!("net/ipv6/conf/{tun}/addr_gen_mode"),
            "1",
            "no IPv6 link-local address on the TUN",
        )
    }
}

/// The sysctls once the TUN is up.
pub fn plan(f: &Facts) -> SysctlPlan {
    let tun = &f.tun;
    let mut p = SysctlPlan::default();
    let c = &mut p.changes;
    c.push(Change::new(
        format!("net/ipv4/conf/{tun}/forwarding"),
        "1",
        "forward IPv4 from the TUN to clients",
    ));
    c.push(Change::new(
        format!("net/ipv4/conf/{tun}/accept_local"),
        "1",
        "take answers from the host's own service address",
    ));
    c.push(Change::new(
        format!("net/ipv4/conf/{tun}/rp_filter"),
        "0",
        "take answers from the host's own service address",
    ));
    for link in &f.ipv4_links {
        c.push(Change::new(
            format!("net/ipv4/conf/{link}/forwarding"),
            "1",
            "forward clients' IPv4 into the TUN",
        ));
    }
    if f.ipv4_links.is_empty() {
        p.notes.push(
            "no IPv4 route outside the TUN: no interface gets IPv4 forwarding for clients"
                .to_owned(),
        );
    }
    if f.force_forwarding {
        c.push(Change::new(
            format!("net/ipv6/conf/{tun}/force_forwarding"),
            "1",
            "forward IPv6 from the TUN to backends",
        ));
        for link in &f.ipv6_links {
            c.push(Change::new(
                format!("net/ipv6/conf/{link}/force_forwarding"),
                "1",
                "forward backends' IPv6 into the TUN",
            ));
        }
    } else {
        p.notes.push(
            "IPv6 forwarding is global on this kernel (net.ipv6.conf.*.force_forwarding needs Linux 6.17): every interface becomes an IPv6 router"
                .to_owned(),
        );
        for (link, accept_ra) in &f.ra_links {
            if accept_ra == "1" {
                c.push(Change::new(
                    format!("net/ipv6/conf/{link}/accept_ra"),
                    "2",
                    "keep taking router advertisements (the IPv6 default route) while forwarding",
                ));
            }
        }
        c.push(Change::new(
            "net/ipv6/conf/all/forwarding".to_owned(),
            "1",
            "forward IPv6 between the TUN and backends (global)",
        ));
    }
    p
}

/// The state file for TUN `tun` in the calling thread's network namespace: Kracauer
/// instances in different namespaces on one host keep apart. The namespace is named by
/// its inode number, which the kernel reuses after a namespace is deleted; the record
/// only ever writes back values that still hold what Kracauer wrote.
pub fn state_path(tun: &str) -> PathBuf {
    use std::os::unix::fs::MetadataExt;
    let dir = std::env::var_os("RUNTIME_DIRECTORY")
        .filter(|d| !d.is_empty())
        .map_or_else(|| PathBuf::from(STATE_DIR), PathBuf::from);
    let netns = std::fs::metadata("/proc/thread-self/ns/net").map_or(0, |m| m.ino());
    dir.join(format!("sysctl-netns{netns}-{tun}.state"))
}

/// One value Kracauer changed.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Saved {
    /// The full path (`/proc/sys/...`).
    path: PathBuf,
    old: String,
    new: String,
}

/// Sysctls Kracauer sets, with the values to put back.
#[derive(Debug, Default)]
pub struct Sysctls {
    saved: Vec<Saved>,
    /// Where the saved values are kept for the next start, if anywhere.
    state: Option<PathBuf>,
    /// `/proc/sys`, or a directory standing in for it in tests.
    root: PathBuf,
}

impl Sysctls {
    /// Sysctls under `/proc/sys`, recorded in the state file `state` (`None`: in memory
    /// only).
    pub fn new(state: Option<PathBuf>) -> Self {
        Self::with_root(PathBuf::from("/proc/sys"), state)
    }

    /// Sysctls under `root` instead of `/proc/sys` (tests).
    pub fn with_root(root: PathBuf, state: Option<PathBuf>) -> Self {
        Self {
            saved: Vec::new(),
            state,
            root,
        }
    }

    /// The values to put back, oldest first, as (full path, old value): what a live
    /// upgrade hands the new process.
    pub fn saved(&self) -> Vec<(PathBuf, String)> {
        self.saved
            .iter()
            .map(|s| (s.path.clone(), s.old.clone()))
            .collect()
    }

    /// Sysctls another process (a live upgrade's old one) set, with the values it would
    /// have put back; what they hold now counts as what Kracauer wrote. Recorded in
    /// `state` at once, so that a crash of this process is repaired by the next start.
    pub fn adopt(saved: Vec<(PathBuf, String)>, state: Option<PathBuf>) -> Self {
        let saved = saved
            .into_iter()
            .filter_map(|(path, old)| {
                let new = current(&path)?;
                Some(Saved { path, old, new })
            })
            .collect();
        let adopted = Self {
            saved,
            state,
            root: PathBuf::from("/proc/sys"),
        };
        adopted.persist();
        adopted
    }

    /// The current value at `path` (below the root), trimmed; `None` if it does not exist.
    pub fn read(&self, path: &str) -> Option<String> {
        std::fs::read_to_string(self.root.join(path))
            .ok()
            .map(|s| s.trim().to_owned())
    }

    /// Writes the change, recording the old value first if it differs. An optional
    /// change that fails is logged at debug level.
    pub fn apply(&mut self, change: &Change) -> Result<(), NetError> {
        match self.set(&change.path, change.value) {
            Err(e) if change.optional => {
                tracing::debug!("{e}");
                Ok(())
            }
            r => r,
        }
    }

    /// Writes `value` to `path` (below the root), remembering the old value if it differs.
    pub fn set(&mut self, path: &str, value: &str) -> Result<(), NetError> {
        let path = self.root.join(path);
        let err = |source| NetError::Sysctl {
            path: path.clone(),
            value: value.to_owned(),
            source,
        };
        let old = std::fs::read_to_string(&path).map_err(err)?;
        let old = old.trim();
        if old == value {
            return Ok(());
        }
        self.saved.push(Saved {
            path: path.clone(),
            old: old.to_owned(),
            new: value.to_owned(),
        });
        // Recorded before the write: a crash right after it still finds the old value.
        self.persist();
        if let Err(e) = std::fs::write(&path, value) {
            self.saved.pop();
            self.persist();
            return Err(err(e));
        }
        Ok(())
    }

    fn persist(&self) {
        let Some(state) = &self.state else { return };
        if let Err(e) = write_state(state, &self.saved) {
            tracing::warn!(
                "cannot record the sysctls to put back after a crash in {} ({e}); they are put back at a clean exit only",
                state.display()
            );
        }
    }

    /// Puts back every value changed, newest first, if it still holds what Kracauer
    /// wrote, and removes the state file. Returns what could not be written.
    pub fn restore(&mut self) -> Vec<NetError> {
        let errors = put_back(std::mem::take(&mut self.saved));
        if let Some(state) = &self.state {
            match std::fs::remove_file(state) {
                Err(e) if e.kind() != io::ErrorKind::NotFound => {
                    tracing::warn!("cannot remove {}: {e}", state.display());
                }
                _ => {}
            }
        }
        errors
    }

    /// A start after a crash: puts back what the state file records (values under this
    /// root only), and removes it. Returns how many values were put back. Call it before
    /// the first [`set`](Self::set).
    pub fn recover(&self) -> Result<usize, NetError> {
        let Some(state) = &self.state else {
            return Ok(0);
        };
        let text = match std::fs::read_to_string(state) {
            Ok(t) => t,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(0),
            Err(source) => {
                return Err(NetError::State {
                    path: state.to_owned(),
                    source,
                });
            }
        };
        let this_boot = format!("# boot {}", boot_id());
        let saved = if text.lines().any(|l| l == this_boot) {
            parse_state(&text, &self.root)
        } else {
            tracing::info!(
                "{} is from an earlier boot: nothing to put back",
                state.display()
            );
            Vec::new()
        };
        let mut restored = 0;
        for s in saved.iter().rev() {
            if current(&s.path).as_deref() == Some(s.new.as_str()) {
                restored += 1;
            }
        }
        for e in put_back(saved) {
            tracing::warn!("putting back a sysctl left by an earlier run: {e}");
        }
        if let Err(source) = std::fs::remove_file(state) {
            return Err(NetError::State {
                path: state.to_owned(),
                source,
            });
        }
        Ok(restored)
    }
}

fn current(path: &Path) -> Option<String> {
    std::fs::read_to_string(path)
        .ok()
        .map(|s| s.trim().to_owned())
}

/// Writes back, newest first, every old value whose sysctl still holds the new one.
fn put_back(mut saved: Vec<Saved>) -> Vec<NetError> {
    let mut errors = Vec::new();
    while let Some(s) = saved.pop() {
        match current(&s.path) {
            None => continue, // the device is gone
            Some(now) if now != s.new => {
                tracing::info!(
                    "{} is {now}, not the {} Kracauer set: left alone",
                    s.path.display(),
                    s.new
                );
                continue;
            }
            Some(_) => {}
        }
        if let Err(source) = std::fs::write(&s.path, &s.old) {
            errors.push(NetError::Sysctl {
                path: s.path,
                value: s.old,
                source,
            });
        }
    }
    errors
}

const STATE_HEADER: &str = "# kracauer: sysctls to put back (path, old value, value set)";

/// This boot's id: a record from an earlier boot (a `/run` that is not a tmpfs) is not
/// put back, as the sysctls started afresh.
fn boot_id() -> String {
    std::fs::read_to_string("/proc/sys/kernel/random/boot_id")
        .map(|s| s.trim().to_owned())
        .unwrap_or_default()
}

/// The state file: a header, then one `PATH\tOLD\tNEW` line per value, oldest first.
/// Written to a temporary file and renamed, so a crash never leaves half a file.
fn write_state(path: &Path, saved: &[Saved]) -> io::Result<()> {
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir)?;
    }
    let mut text = format!("{STATE_HEADER}\n# boot {}\n", boot_id());
    for s in saved {
        let _ = writeln!(text, "{}\t{}\t{}", s.path.display(), s.old, s.new);
    }
    let tmp = path.with_extension("tmp");
    std::fs::write(&tmp, text)?;
    std::fs::rename(&tmp, path)
}

fn parse_state(text: &str, root: &Path) -> Vec<Saved> {
    text.lines()
        .filter(|l| !l.starts_with('#') && !l.trim().is_empty())
        .filter_map(|l| {
            let mut f = l.split('\t');
            let (path, old, new) = (f.next()?, f.next()?, f.next()?);
            // Only sysctls: a state file is no licence to write elsewhere.
            let path = Path::new(path);
            let inside = path.starts_with(root)
                && path
                    .components()
                    .all(|c| !matches!(c, std::path::Component::ParentDir));
            inside.then(|| Saved {
                path: PathBuf::from(path),
                old: old.to_owned(),
                new: new.to_owned(),
            })
        })
        .collect()
}

#[cfg(test)]
mod tests;
