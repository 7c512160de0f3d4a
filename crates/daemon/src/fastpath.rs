//! The kernel fast path (docs/architecture.md, "The kernel fast path"): the tc program
//! `bpf/fastpath.c`, loaded with aya, attached at the ingress of the chosen interfaces,
//! and its maps, which hold one entry per spliced flow that the engine handed over.
//!
//! Everything lives in bpffs under [`pin_dir`]: the maps (pinned by name when the
//! object is loaded; an existing pin is opened instead, which is how a new daemon adopts
//! the flows of one that was killed or that it took over from) and one TCX link per
//! interface (`link-<ifname>`), so the program stays attached while no daemon runs. A new
//! daemon replaces the program behind a pinned link in place (`bpf_link_update`): no
//! packet finds no program.
//!
//! The program routes as if its packets came out of the TUN device, so the device must
//! outlive a killed daemon too: while the fast path runs, the TUN is made persistent
//! (unless the operator's already was), and a marker file beside the sysctl record
//! ([`persist_mark`], in the runtime directory) says that Kracauer did it. [`Fastpath::remove_all`] (SIGTERM) and
//! [`retire`] (`fastpath = "off"`) detach and unpin everything and let the device go
//! with its last descriptor again.

pub mod counters;
pub mod maps;
pub mod syncookie;
mod syscalls;
#[cfg(test)]
mod tests;
pub mod worker;

use std::io;
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::path::{Path, PathBuf};

use aya::maps::{HashMap, MapData, MapError, PerCpuArray};
use aya::programs::links::{FdLink, PinnedLink};
use aya::programs::tc::{SchedClassifierLink, TcAttachType};
use aya::programs::{ProgramError, SchedClassifier};
use aya::{Ebpf, EbpfError, EbpfLoader};
use kracauer_core::tcp::splice::Splice;

pub use maps::{FlowAddrs, FlowEntry, V4Key, V6Key};
pub use worker::{HandOvers, WorkerFastpath};

use crate::config::{FastpathMode, Tun};

/// The compiled program (`bpf/build.sh` makes it; it is committed beside its source).
static OBJECT: &[u8] = aya::include_bytes_aligned!("../bpf/fastpath.o");
/// The map layout version (`FASTPATH_LAYOUT` in `bpf/fastpath.h`); part of the pin path.
pub const LAYOUT: u32 = 2;
/// The program's name (its function in `fastpath.c`).
const PROGRAM: &str = "kracauer_fastpath";
/// Where bpffs is mounted.
const BPFFS: &str = "/sys/fs/bpf";
/// `statfs` type of bpffs.
const BPF_FS_MAGIC: i64 = 0xcafe_4a11;
/// The maps the object pins, by name.
pub(crate) const MAPS: [&str; 3] = ["kr_fp_flows", "kr_fp_backends", "kr_fp_stats"];
/// `IFF_PERSIST` in `/sys/class/net/<tun>/tun_flags`.
const IFF_PERSIST: u32 = 0x0800;

/// Where one instance keeps its maps and links: `/sys/fs/bpf/kracauer/<tun>/v<layout>/`.
/// The one place that decides it.
pub fn pin_dir(tun: &str) -> PathBuf {
    Path::new(BPFFS)
        .join("kracauer")
        .join(tun)
        .join(format!("v{LAYOUT}"))
}

/// What can go wrong with the fast path.
#[derive(Debug, thiserror::Error)]
pub enum FastpathError {
    #[error("bpffs at {BPFFS}: {0}")]
    Bpffs(io::Error),
    #[error("{path}: {source}")]
    PinDir { path: PathBuf, source: io::Error },
    #[error("loading the fast path program: {0}")]
    Load(#[from] EbpfError),
    #[error("the fast path program: {0}")]
    Program(#[from] ProgramError),
    #[error("the fast path maps: {0}")]
    Map(#[from] MapError),
    #[error("the object has no {0}")]
    Missing(&'static str),
    #[error("making the TUN device persistent: {0}")]
    Persist(io::Error),
    #[error("attaching to {iface}: {source}")]
    Attach {
        iface: String,
        source: Box<dyn std::error::Error + Send + Sync>,
    },
}

/// The loaded program and its maps.
pub struct Fastpath {
    ebpf: Ebpf,
    dir: PathBuf,
    flows: HashMap<MapData, V4Key, FlowEntry>,
    backends: HashMap<MapData, V6Key, V4Key>,
    stats: PerCpuArray<MapData, u64>,
    /// A descriptor of the TUN device (a queue's), to make it persistent and back.
    tun: Option<OwnedFd>,
    /// The TUN device's name.
    tun_name: String,
}

impl std::fmt::Debug for Fastpath {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Fastpath")
            .field("dir", &self.dir)
            .finish_non_exhaustive()
    }
}

impl Fastpath {
    /// Loads the program for the instance whose TUN device is `tun` (index
    /// `tun_ifindex`), opening the maps pinned by an earlier daemon or creating (and
    /// pinning) them with room for `max_flows` flows.
    pub fn load(tun: &str, tun_ifindex: u32, max_flows: u32) -> Result<Self, FastpathError> {
        ensure_bpffs()?;
        let dir = pin_dir(tun);
        std::fs::create_dir_all(&dir).map_err(|source| FastpathError::PinDir {
            path: dir.clone(),
            source,
        })?;
        let max_flows = max_flows.max(1);
        let mut ebpf = EbpfLoader::new()
            .map_pin_path(&dir)
            .set_global("tun_ifindex", &tun_ifindex, true)
            .set_max_entries(MAPS[0], max_flows)
            .set_max_entries(MAPS[1], max_flows)
            .load(OBJECT)?;
        let prog: &mut SchedClassifier = ebpf
            .program_mut(PROGRAM)
            .ok_or(FastpathError::Missing("program"))?
            .try_into()?;
        prog.load()?;
        let mut take = |name: &'static str| ebpf.take_map(name).ok_or(FastpathError::Missing(name));
        let (flows, backends, stats) = (take(MAPS[0])?, take(MAPS[1])?, take(MAPS[2])?);
        Ok(Self {
            flows: HashMap::try_from(flows)?,
            backends: HashMap::try_from(backends)?,
            stats: PerCpuArray::try_from(stats)?,
            ebpf,
            dir,
            tun: None,
            tun_name: tun.to_owned(),
        })
    }

    fn program(&mut self) -> Result<&mut SchedClassifier, FastpathError> {
        Ok(self
            .ebpf
            .program_mut(PROGRAM)
            .ok_or(FastpathError::Missing("program"))?
            .try_into()?)
    }

    /// Where this instance's maps and links are pinned.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Attaches the program at the ingress of `iface` (TCX), or, when an earlier daemon
    /// left a pinned link there, puts this program behind that link in its place.
    pub fn attach(&mut self, iface: &str) -> Result<(), FastpathError> {
        let pin = self.dir.join(format!("link-{iface}"));
        let err = |source: Box<dyn std::error::Error + Send + Sync>| FastpathError::Attach {
            iface: iface.to_owned(),
            source,
        };
        let prog = self.program()?;
        if pin.exists() {
            let link = PinnedLink::from_pin(&pin).map_err(|e| err(e.into()))?;
            let link =
                SchedClassifierLink::try_from(FdLink::from(link)).map_err(|e| err(e.into()))?;
            let id = prog.attach_to_link(link).map_err(|e| err(e.into()))?;
            // The pin keeps the link; the descriptor this process holds may go.
            drop(prog.take_link(id).map_err(|e| err(e.into()))?);
            return Ok(());
        }
        let id = prog
            .attach(iface, TcAttachType::Ingress)
            .map_err(|e| err(e.into()))?;
        let link = prog.take_link(id).map_err(|e| err(e.into()))?;
        let link = FdLink::try_from(link).map_err(|e| err(e.into()))?;
        link.pin(&pin).map_err(|e| err(e.into()))?;
        Ok(())
    }

    /// Detaches the program from `iface` (its pinned link), if attached there.
    pub fn detach(&mut self, iface: &str) -> Result<(), FastpathError> {
        unpin_link(&self.dir.join(format!("link-{iface}")))
    }

    /// The interfaces the program is attached to (by their pinned links).
    pub fn attached(&self) -> Vec<String> {
        let Ok(dir) = std::fs::read_dir(&self.dir) else {
            return Vec::new();
        };
        let names = dir.filter_map(|e| e.ok()?.file_name().into_string().ok());
        names
            .filter_map(|n| n.strip_prefix("link-").map(str::to_owned))
            .collect()
    }

    /// Hands a spliced flow to the program. A full map is an error: the flow stays on the
    /// TUN path.
    pub fn install(&mut self, addrs: &FlowAddrs, splice: &Splice) -> Result<(), FastpathError> {
        let key = addrs.v4_key();
        self.flows.insert(key, addrs.entry(splice), 0)?;
        if let Err(e) = self.backends.insert(addrs.v6_key(), key, 0) {
            let _ = self.flows.remove(&key);
            return Err(e.into());
        }
        Ok(())
    }

    /// Takes a flow back from the program; its entry (the counters) if it had one.
    pub fn remove(&mut self, addrs: &FlowAddrs) -> Option<FlowEntry> {
        let key = addrs.v4_key();
        let entry = self.flows.get(&key, 0).ok();
        let _ = self.backends.remove(&addrs.v6_key());
        let _ = self.flows.remove(&key);
        entry
    }

    /// A flow's entry as the program last left it.
    pub fn entry(&self, addrs: &FlowAddrs) -> Option<FlowEntry> {
        self.flows.get(&addrs.v4_key(), 0).ok()
    }

    /// Every entry in the map (what a new daemon adopts).
    pub fn entries(&self) -> Vec<(V4Key, FlowEntry)> {
        self.flows.iter().filter_map(Result::ok).collect()
    }

    /// The program's counters (`enum fp_stat`), summed over CPUs.
    pub fn stats(&self) -> [u64; 7] {
        let mut out = [0u64; 7];
        for (i, slot) in out.iter_mut().enumerate() {
            if let Ok(v) = self.stats.get(&(i as u32), 0) {
                *slot = v.iter().sum();
            }
        }
        out
    }

    /// Detaches the program everywhere and removes every pin of this instance (an
    /// orderly stop: flows end with the daemon); the TUN device, if Kracauer made it
    /// persistent, goes with its last descriptor again.
    pub fn remove_all(mut self) -> Result<(), FastpathError> {
        let dir = self.dir.clone();
        for iface in self.attached() {
            unpin_link(&dir.join(format!("link-{iface}")))?;
        }
        let tun = self.tun.take();
        let name = std::mem::take(&mut self.tun_name);
        drop(self);
        release_tun(&name, tun.as_ref().map(AsFd::as_fd));
        remove_pins(&dir)
    }

    /// Keeps the TUN device (whose queue `fd` is) beyond this process: made persistent
    /// unless it already was; the marker ([`persist_mark`]) says whether Kracauer did
    /// it. Without a place for the marker it is left as it is, with a warning.
    pub fn keep_tun(&mut self, tun: &str, fd: BorrowedFd<'_>) -> Result<(), FastpathError> {
        let fd = fd.try_clone_to_owned().map_err(FastpathError::Persist)?;
        let mark = persist_mark(tun);
        let flags = std::fs::read_to_string(format!("/sys/class/net/{tun}/tun_flags"))
            .ok()
            .and_then(|f| u32::from_str_radix(f.trim().trim_start_matches("0x"), 16).ok())
            .unwrap_or(0);
        if flags & IFF_PERSIST == 0 {
            match std::fs::write(&mark, "made persistent by kracauer for the fast path\n") {
                Ok(()) => {
                    syscalls::set_tun_persist(fd.as_fd(), true).map_err(FastpathError::Persist)?
                }
                Err(e) => tracing::warn!(
                    "fast path: cannot record at {} that the TUN is made persistent ({e}): it is not, and spliced flows will not outlive a crash",
                    mark.display()
                ),
            }
        }
        self.tun = Some(fd);
        Ok(())
    }

    /// Puts `fd` (a queue of the same TUN device, or none) in place of the descriptor
    /// kept by [`keep_tun`](Self::keep_tun), which is returned: a live upgrade that
    /// re-opens every queue lets go of it first (`upgrade/offload.rs`).
    pub fn swap_tun(&mut self, fd: Option<OwnedFd>) -> Option<OwnedFd> {
        std::mem::replace(&mut self.tun, fd)
    }

    /// Detaches the program from every interface with a pinned link that is not in
    /// `keep` (an earlier daemon's choice of interfaces).
    pub fn detach_others(&mut self, keep: &[String]) -> Result<(), FastpathError> {
        for iface in self.attached() {
            if !keep.contains(&iface) {
                self.detach(&iface)?;
            }
        }
        Ok(())
    }

    /// The loaded program's descriptor (for test runs).
    #[cfg(test)]
    fn program_fd(&mut self) -> Result<BorrowedFd<'_>, FastpathError> {
        let prog: &SchedClassifier = self
            .ebpf
            .program(PROGRAM)
            .ok_or(FastpathError::Missing("program"))?
            .try_into()?;
        Ok(prog.fd()?.as_fd())
    }
}

/// The fast path for an instance with TUN settings `tun` and room for `max_flows` flows,
/// as its mode asks: `off`, none; `auto`, the fast path if it can be loaded and attached,
/// else none with a warning that says why; `on`, the fast path or the error. `tun_fd` is
/// a descriptor of the TUN device (one of its queues).
///
/// The maps an earlier daemon pinned (one killed, or the one this process takes over
/// from) are kept, with their entries: the caller adopts them
/// ([`Fastpath::entries`]). Pins of another layout version are removed (their flows
/// are not adopted), and so is everything with `off` ([`retire`]).
pub fn start(
    tun: &Tun,
    max_flows: usize,
    tun_fd: BorrowedFd<'_>,
) -> Result<Option<Fastpath>, FastpathError> {
    if tun.fastpath == FastpathMode::Off {
        retire(&tun.name, tun_fd);
        tracing::info!(
            "fast path: off ([tun] fastpath = \"off\"): every packet takes the TUN path"
        );
        return Ok(None);
    }
    let attempt = || -> Result<Fastpath, FastpathError> {
        ensure_bpffs()?;
        remove_other_layouts(&tun.name)?;
        let index = std::fs::read_to_string(format!("/sys/class/net/{}/ifindex", tun.name))
            .ok()
            .and_then(|s| s.trim().parse().ok())
            .ok_or(FastpathError::Missing("TUN device"))?;
        let max = u32::try_from(max_flows).unwrap_or(u32::MAX);
        let mut fp = Fastpath::load(&tun.name, index, max)?;
        let ifaces = match &tun.fastpath_interfaces {
            Some(list) => list.clone(),
            None => interfaces_up(&tun.name),
        };
        let attached = fp
            .detach_others(&ifaces)
            .and_then(|()| ifaces.iter().try_for_each(|iface| fp.attach(iface)))
            .and_then(|()| fp.keep_tun(&tun.name, tun_fd));
        if let Err(e) = attached {
            let _ = fp.remove_all();
            return Err(e);
        }
        tracing::info!("fast path: on, at the ingress of {}", ifaces.join(", "));
        Ok(fp)
    };
    match attempt() {
        Ok(fp) => Ok(Some(fp)),
        Err(e) if tun.fastpath == FastpathMode::Auto => {
            tracing::warn!(
                "fast path: not available ({e}); every packet takes the TUN path. It needs Linux 6.6 or later, CAP_BPF and CAP_NET_ADMIN, and bpffs at {BPFFS}"
            );
            retire(&tun.name, tun_fd);
            Ok(None)
        }
        Err(e) => Err(e),
    }
}

/// Removes the fast path an earlier daemon of the TUN device `tun` left (killed, or
/// upgraded from, with the fast path now off): the program is detached, its flows go
/// back to the TUN path (a restored engine knows them; after a crash they are reset
/// there as unknown flows), and the device, if Kracauer made it persistent, goes with its
/// last descriptor (`tun_fd` is one of its queues).
pub fn retire(tun: &str, tun_fd: BorrowedFd<'_>) {
    let dir = pin_dir(tun);
    if !dir.exists() {
        release_tun(tun, Some(tun_fd));
        return;
    }
    release_tun(tun, Some(tun_fd));
    match remove_pins(&dir) {
        Ok(()) => tracing::info!(
            "fast path: removed the program and maps left at {}",
            dir.display()
        ),
        Err(e) => tracing::warn!("fast path: could not remove {}: {e}", dir.display()),
    }
}

/// Where the record that Kracauer made the TUN device `tun` persistent lives: beside
/// the sysctl record, in the runtime directory (gone at a reboot, with the device).
pub fn persist_mark(tun: &str) -> PathBuf {
    let state = crate::sysctl::state_path(tun);
    let name = state
        .file_name()
        .map_or_else(String::new, |n| n.to_string_lossy().into_owned());
    let name = name
        .replacen("sysctl-", "tun-", 1)
        .replace(".state", ".persistent");
    state.with_file_name(name)
}

/// Makes the TUN device `tun` not persistent again if Kracauer made it so (its marker),
/// and removes the marker.
fn release_tun(tun: &str, tun_fd: Option<BorrowedFd<'_>>) {
    let mark = persist_mark(tun);
    if !mark.exists() {
        return;
    }
    let Some(fd) = tun_fd else {
        return;
    };
    if let Err(e) = syscalls::set_tun_persist(fd, false) {
        tracing::warn!("fast path: the TUN device stays persistent: {e}");
        return;
    }
    let _ = std::fs::remove_file(&mark);
}

/// Removes the pins of other layout versions (`v<N>`) under the TUN device's folder,
/// and nothing else there: the SYN cookie program's `syncookie-v<N>` is its own.
fn remove_other_layouts(tun: &str) -> Result<(), FastpathError> {
    let ours = pin_dir(tun);
    let Some(parent) = ours.parent() else {
        return Ok(());
    };
    let Ok(entries) = std::fs::read_dir(parent) else {
        return Ok(());
    };
    for e in entries.flatten() {
        if e.path() != ours && is_layout_dir(&e.file_name().to_string_lossy()) {
            tracing::warn!(
                "fast path: removing {} (another layout version; its flows are not adopted)",
                e.path().display()
            );
            remove_pins(&e.path())?;
        }
    }
    Ok(())
}

/// Whether `name` is a fast-path layout folder's name: `v` and a number.
fn is_layout_dir(name: &str) -> bool {
    name.strip_prefix('v')
        .is_some_and(|n| !n.is_empty() && n.bytes().all(|b| b.is_ascii_digit()))
}

/// Entries of the flow map, as read from it.
pub type Entries = Vec<(V4Key, FlowEntry)>;

/// The map's `entries` divided among the workers whose engines are `engines`: to the
/// engine that holds the flow already (a live upgrade), else to the worker the steering
/// program with `steering` sends the flow's packets to (a start after a crash: the new
/// key decides, the flows follow it), else, with one worker, to it. The rest (a live
/// upgrade's entries of flows no engine holds) come back last, to be removed.
pub fn divide(
    entries: Entries,
    engines: &[&kracauer_core::engine::Engine],
    steering: Option<kracauer_core::steer::SteerKey>,
    restart: bool,
) -> (Vec<Entries>, Entries) {
    use kracauer_core::steer::{queue_hash, queue_of};
    let mut out = vec![Vec::new(); engines.len()];
    let mut rest = Vec::new();
    for (key, e) in entries {
        let a = e.addrs(&key);
        let held = engines.iter().position(|g| g.has_flow(a.client, a.service));
        let steered = match (restart, steering, engines.len()) {
            (false, ..) | (_, _, 0) => None,
            (true, Some(k), n) => {
                let queues = u16::try_from(n).unwrap_or(u16::MAX);
                Some(usize::from(queue_of(
                    queue_hash(*a.client.ip(), a.client.port(), k),
                    queues,
                )))
            }
            (true, None, _) => Some(0),
        };
        match held.or(steered).and_then(|i| out.get_mut(i)) {
            Some(worker) => worker.push((key, e)),
            None => rest.push((key, e)),
        }
    }
    (out, rest)
}

/// What `kracauer check` says of the fast path for TUN settings `tun`: which path will
/// run and why (the kernel version and this process's capabilities; `run` has the last
/// word, when it loads the program).
pub fn expected(tun: &Tun) -> String {
    let mode = match tun.fastpath {
        FastpathMode::Off => {
            return "off ([tun] fastpath = \"off\"): the TUN path for every packet".into();
        }
        FastpathMode::Auto => "auto",
        FastpathMode::On => "on",
    };
    let release = rustix::system::uname()
        .release()
        .to_string_lossy()
        .into_owned();
    let mut nums = release
        .split(|c: char| !c.is_ascii_digit())
        .filter_map(|n| n.parse::<u32>().ok());
    let version = (nums.next().unwrap_or(0), nums.next().unwrap_or(0));
    let caps = std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            let line = s.lines().find(|l| l.starts_with("CapEff:"))?.to_owned();
            u64::from_str_radix(line.trim_start_matches("CapEff:").trim(), 16).ok()
        })
        .unwrap_or(0);
    // CAP_NET_ADMIN is 12, CAP_BPF 39 (CAP_SYS_ADMIN, 21, stands in for it).
    let (net_admin, bpf) = (caps & (1 << 12) != 0, caps & ((1 << 39) | (1 << 21)) != 0);
    let mut why = Vec::new();
    if version < (6, 6) {
        why.push(format!("Linux {release} is older than 6.6"));
    }
    if !net_admin {
        why.push("this process lacks CAP_NET_ADMIN".to_owned());
    }
    if !bpf {
        why.push("this process lacks CAP_BPF".to_owned());
    }
    let ifaces = match &tun.fastpath_interfaces {
        Some(list) => list.join(", "),
        None => "every interface up at start but lo and the TUN".to_owned(),
    };
    if why.is_empty() {
        format!(
            "{mode}: the kernel path for spliced flows (Linux {release}, CAP_BPF, CAP_NET_ADMIN), at the ingress of {ifaces}"
        )
    } else if tun.fastpath == FastpathMode::On {
        format!("on, but `run` will refuse to start: {}", why.join("; "))
    } else {
        format!(
            "auto: the TUN path for every packet, since {}",
            why.join("; ")
        )
    }
}

/// Every interface that is up, other than `lo` and the TUN device `tun`.
pub fn interfaces_up(tun: &str) -> Vec<String> {
    let Ok(dir) = std::fs::read_dir("/sys/class/net") else {
        return Vec::new();
    };
    let mut out: Vec<String> = dir
        .filter_map(|e| e.ok()?.file_name().into_string().ok())
        .filter(|n| n != "lo" && n != tun)
        .filter(|n| {
            let flags = std::fs::read_to_string(format!("/sys/class/net/{n}/flags"));
            let flags = flags
                .ok()
                .and_then(|f| u32::from_str_radix(f.trim().trim_start_matches("0x"), 16).ok());
            flags.is_some_and(|f| f & 1 != 0)
        })
        .collect();
    out.sort();
    out
}

/// Removes the pinned maps and links under `dir` and the folders up to `kracauer/`,
/// where empty (another instance's folders stay).
pub fn remove_pins(dir: &Path) -> Result<(), FastpathError> {
    let pin_err = |source| FastpathError::PinDir {
        path: dir.to_owned(),
        source,
    };
    if let Ok(entries) = std::fs::read_dir(dir) {
        for e in entries.flatten() {
            let name = e.file_name();
            if name.to_string_lossy().starts_with("link-") {
                unpin_link(&e.path())?;
            } else {
                std::fs::remove_file(e.path()).map_err(pin_err)?;
            }
        }
    }
    let mut d = Some(dir);
    for _ in 0..3 {
        let Some(p) = d else { break };
        if std::fs::remove_dir(p).is_err() {
            break;
        }
        d = p.parent();
    }
    Ok(())
}

/// Detaches the link pinned at `pin` and removes the pin (nothing there: nothing to do).
fn unpin_link(pin: &Path) -> Result<(), FastpathError> {
    if !pin.exists() {
        return Ok(());
    }
    let err = |source: Box<dyn std::error::Error + Send + Sync>| FastpathError::Attach {
        iface: pin.display().to_string(),
        source,
    };
    let link = PinnedLink::from_pin(pin).map_err(|e| err(e.into()))?;
    // Unpinned, the link's last descriptor is this one: dropping it detaches.
    drop(link.unpin().map_err(|e| err(e.into()))?);
    Ok(())
}

/// Mounts bpffs at /sys/fs/bpf unless it is mounted there already (systemd does).
fn ensure_bpffs() -> Result<(), FastpathError> {
    let is_bpffs = |p: &str| rustix::fs::statfs(p).is_ok_and(|s| s.f_type == BPF_FS_MAGIC);
    if is_bpffs(BPFFS) {
        return Ok(());
    }
    rustix::mount::mount(
        "bpf",
        BPFFS,
        "bpf",
        rustix::mount::MountFlags::empty(),
        None,
    )
    .map_err(|e| FastpathError::Bpffs(e.into()))
}
