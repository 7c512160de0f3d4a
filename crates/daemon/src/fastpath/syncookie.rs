//! SYN floods answered in the kernel (docs/architecture.md, "SYN cookies in the kernel"):
//! the tc program `bpf/syncookie.c`, loaded with aya and attached at the ingress of the
//! fast path's interfaces ahead of the fast path (TCX, first), and the thread that runs
//! it: flood mode on and off from the rate of SYNs ([`flood`]), the counters for the
//! metrics, the MSS after a reload.
//!
//! One cookie scheme: the program signs and checks Kracauer's own cookies with the root
//! every worker's engine has (`EngineConfig::cookie_root`, [`root`]) on CLOCK_MONOTONIC,
//! the engines' cookie clock ([`monotonic_micros`]). The root lives in the pinned config
//! map (`/sys/fs/bpf/kracauer/<tun>/syncookie-v<layout>/`), so a daemon started while an
//! earlier one's pins are there (a restart after a crash, or a live upgrade) takes that
//! root and the cookies either made go on validating; an orderly stop removes the pins.
//!
//! It runs only with the fast path: without it, every SYN takes the TUN path as before.

pub mod flood;
pub mod maps;
mod syscalls;
#[cfg(test)]
mod tests;

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::mpsc::{self, Receiver, RecvTimeoutError, Sender};
use std::thread::JoinHandle;

use aya::EbpfLoader;
use aya::maps::{Array, HashMap, MapData, PerCpuArray};
use aya::programs::SchedClassifier;
use aya::programs::links::{FdLink, LinkOrder, PinnedLink};
use aya::programs::tc::{SchedClassifierLink, TcAttachOptions, TcAttachType};

pub use maps::{ScConfig, ScKey};

use kracauer_core::engine::SharedLimits;

use super::FastpathError;
use crate::config::{Config, FastpathMode, Tun};
use flood::FloodMode;

/// The compiled program (`bpf/build.sh` makes it; it is committed beside its source).
static OBJECT: &[u8] = aya::include_bytes_aligned!("../../bpf/syncookie.o");
/// The map layout version (`SYNCOOKIE_LAYOUT` in `bpf/syncookie.h`); part of the pin path.
pub const LAYOUT: u32 = 1;
/// The program's name (its function in `syncookie.c`).
const PROGRAM: &str = "kracauer_syncookie";
/// The maps the object pins, by name.
const MAPS: [&str; 3] = ["kr_sc_config", "kr_sc_flows", "kr_sc_stats"];
/// Fewest and most connections the program remembers (LRU).
const FLOWS_MIN: u32 = 4_096;
const FLOWS_MAX: u32 = 131_072;

/// Where one instance keeps the program's maps and links:
/// `/sys/fs/bpf/kracauer/<tun>/syncookie-v<layout>/`.
pub fn pin_dir(tun: &str) -> PathBuf {
    Path::new("/sys/fs/bpf")
        .join("kracauer")
        .join(tun)
        .join(format!("syncookie-v{LAYOUT}"))
}

/// CLOCK_MONOTONIC in µs: the clock the program reads (`bpf_ktime_get_ns`) and the
/// engines' cookie clock.
pub fn monotonic_micros() -> u64 {
    let t = rustix::time::clock_gettime(rustix::time::ClockId::Monotonic);
    (t.tv_sec as u64)
        .saturating_mul(1_000_000)
        .saturating_add(t.tv_nsec as u64 / 1_000)
}

/// The cookie root for an instance with TUN settings `tun` and seed `seed`: the root a
/// running or crashed daemon left in the pinned config map, when the fast path may run
/// and it is there; else the seed's (`routes::cookie_root`).
pub fn root(tun: &Tun, seed: [u8; 32]) -> [u64; 2] {
    let pinned = || -> Option<[u64; 2]> {
        let map = MapData::from_pin(pin_dir(&tun.name).join(MAPS[0])).ok()?;
        let array: Array<MapData, ScConfig> = Array::try_from(aya::maps::Map::Array(map)).ok()?;
        let c = array.get(&0, 0).ok()?;
        (c.root != [0, 0]).then_some(c.root)
    };
    match tun.fastpath {
        FastpathMode::Off => crate::routes::cookie_root(seed),
        _ => pinned().unwrap_or_else(|| crate::routes::cookie_root(seed)),
    }
}

/// The loaded program and its maps.
pub struct Syncookie {
    ebpf: aya::Ebpf,
    dir: PathBuf,
    config: Array<MapData, ScConfig>,
    stats: PerCpuArray<MapData, u64>,
    #[cfg_attr(not(test), allow(dead_code))]
    flows: HashMap<MapData, ScKey, u64>,
}

impl std::fmt::Debug for Syncookie {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Syncookie")
            .field("dir", &self.dir)
            .finish_non_exhaustive()
    }
}

impl Syncookie {
    /// Loads the program for the instance whose TUN device is `tun` (index
    /// `tun_ifindex`), opening the maps an earlier daemon pinned or creating them, the
    /// connections' LRU sized from `max_flows`.
    pub fn load(tun: &str, tun_ifindex: u32, max_flows: usize) -> Result<Self, FastpathError> {
        super::ensure_bpffs()?;
        let dir = pin_dir(tun);
        std::fs::create_dir_all(&dir).map_err(|source| FastpathError::PinDir {
            path: dir.clone(),
            source,
        })?;
        let flows = u32::try_from(max_flows.saturating_mul(2))
            .unwrap_or(u32::MAX)
            .clamp(FLOWS_MIN, FLOWS_MAX);
        let mut ebpf = EbpfLoader::new()
            .map_pin_path(&dir)
            .set_global("tun_ifindex", &tun_ifindex, true)
            .set_max_entries(MAPS[1], flows)
            .load(OBJECT)?;
        let prog: &mut SchedClassifier = ebpf
            .program_mut(PROGRAM)
            .ok_or(FastpathError::Missing("program"))?
            .try_into()?;
        prog.load()?;
        let mut take = |name: &'static str| ebpf.take_map(name).ok_or(FastpathError::Missing(name));
        let (config, flows, stats) = (take(MAPS[0])?, take(MAPS[1])?, take(MAPS[2])?);
        Ok(Self {
            config: Array::try_from(config)?,
            flows: HashMap::try_from(flows)?,
            stats: PerCpuArray::try_from(stats)?,
            ebpf,
            dir,
        })
    }

    /// What the program is told now.
    pub fn config(&self) -> ScConfig {
        self.config.get(&0, 0).unwrap_or_default()
    }

    /// Tells the program `c`.
    pub fn configure(&mut self, c: ScConfig) -> Result<(), FastpathError> {
        Ok(self.config.set(0, c, 0)?)
    }

    /// Attaches the program at the ingress of `iface` ahead of every other TCX program
    /// there (the fast path), or puts it behind the link an earlier daemon pinned.
    pub fn attach(&mut self, iface: &str) -> Result<(), FastpathError> {
        let pin = self.dir.join(format!("link-{iface}"));
        let err = |source: Box<dyn std::error::Error + Send + Sync>| FastpathError::Attach {
            iface: iface.to_owned(),
            source,
        };
        let prog: &mut SchedClassifier = self
            .ebpf
            .program_mut(PROGRAM)
            .ok_or(FastpathError::Missing("program"))?
            .try_into()?;
        if pin.exists() {
            let link = PinnedLink::from_pin(&pin).map_err(|e| err(e.into()))?;
            let link =
                SchedClassifierLink::try_from(FdLink::from(link)).map_err(|e| err(e.into()))?;
            let id = prog.attach_to_link(link).map_err(|e| err(e.into()))?;
            drop(prog.take_link(id).map_err(|e| err(e.into()))?);
            return Ok(());
        }
        let id = prog
            .attach_with_options(
                iface,
                TcAttachType::Ingress,
                TcAttachOptions::TcxOrder(LinkOrder::first()),
            )
            .map_err(|e| err(e.into()))?;
        let link = prog.take_link(id).map_err(|e| err(e.into()))?;
        let link = FdLink::try_from(link).map_err(|e| err(e.into()))?;
        link.pin(&pin).map_err(|e| err(e.into()))?;
        Ok(())
    }

    /// The program's counters (`enum sc_stat`), summed over CPUs.
    pub fn stats(&self) -> [u64; maps::STATS.len()] {
        let mut out = [0u64; maps::STATS.len()];
        for (i, slot) in out.iter_mut().enumerate() {
            if let Ok(v) = self.stats.get(&(i as u32), 0) {
                *slot = v.iter().sum();
            }
        }
        out
    }

    /// Detaches the program everywhere and removes its pins (an orderly stop).
    pub fn remove_all(self) -> Result<(), FastpathError> {
        let dir = self.dir.clone();
        drop(self);
        super::remove_pins(&dir)
    }

    /// The loaded program's descriptor (for test runs).
    #[cfg(test)]
    fn program_fd(&self) -> Result<std::os::fd::BorrowedFd<'_>, FastpathError> {
        use std::os::fd::AsFd as _;
        let prog: &SchedClassifier = self
            .ebpf
            .program(PROGRAM)
            .ok_or(FastpathError::Missing("program"))?
            .try_into()?;
        Ok(prog.fd()?.as_fd())
    }
}

/// What the metrics show of the program (written by its thread).
#[derive(Debug, Default)]
pub struct Counters {
    /// Whether the program runs.
    pub running: AtomicBool,
    /// Whether flood mode is on.
    pub flood: AtomicBool,
    /// Times flood mode turned on, and off.
    pub turned_on: AtomicU64,
    pub turned_off: AtomicU64,
    /// When the mode last changed (seconds since the Unix epoch; 0: never).
    pub changed_at: AtomicU64,
    /// The SYN rate to service ports at the last look (SYNs a second).
    pub syn_rate: AtomicU64,
    /// The program's counters (`maps::STATS`).
    pub kernel: [AtomicU64; maps::STATS.len()],
}

/// The program's thread: the handle a running daemon holds.
#[derive(Debug)]
pub struct Handle {
    tx: Sender<Command>,
    thread: Option<JoinHandle<()>>,
}

#[derive(Debug)]
enum Command {
    /// The MSS changed (a reload of `[tun] mtu`).
    Mss(u16),
    /// `limits.max_half_open` changed (a reload).
    MaxHalfOpen(usize),
    /// Stop; with `true`, detach and unpin the program (an orderly stop).
    Stop(bool),
}

impl Handle {
    /// Tells the program the MSS for IPv6 MTU `mtu`.
    pub fn set_mtu(&self, mtu: u16) {
        let _ = self.tx.send(Command::Mss(mss_for(mtu)));
    }

    /// Tells the flood-mode decision the new `limits.max_half_open`.
    pub fn set_max_half_open(&self, max: usize) {
        let _ = self.tx.send(Command::MaxHalfOpen(max));
    }

    /// Stops the thread, detaching and unpinning the program when `remove` (an orderly
    /// stop; after a live upgrade the new daemon has it).
    pub fn stop(mut self, remove: bool) {
        let _ = self.tx.send(Command::Stop(remove));
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

impl Drop for Handle {
    fn drop(&mut self) {
        let _ = self.tx.send(Command::Stop(false));
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// The MSS Kracauer announces for IPv6 MTU `mtu` (as `EngineConfig::mss`).
fn mss_for(mtu: u16) -> u16 {
    mtu.saturating_sub(60).max(536)
}

/// Starts the program for `config` with cookie root `root`, when the fast path runs
/// (`fastpath`): loaded, told the root, MSS and window scale, attached where the fast
/// path is, and its thread started, which reads the workers' unanswered handshakes from
/// `limits` (any worker's: they share them) for flood mode. A failure is a warning: SYNs
/// then take the TUN path.
pub fn start(
    config: &Config,
    fastpath: Option<&super::Fastpath>,
    root: [u64; 2],
    counters: std::sync::Arc<Counters>,
    limits: Option<std::sync::Arc<SharedLimits>>,
) -> Option<Handle> {
    let (fp, limits) = (fastpath?, limits?);
    let attempt = || -> Result<Syncookie, FastpathError> {
        let tun = &config.tun.name;
        let index = std::fs::read_to_string(format!("/sys/class/net/{tun}/ifindex"))
            .ok()
            .and_then(|s| s.trim().parse().ok())
            .ok_or(FastpathError::Missing("TUN device"))?;
        let mut sc = Syncookie::load(tun, index, config.limits.max_flows)?;
        sc.configure(ScConfig {
            root,
            mss: mss_for(config.tun.mtu),
            wscale: crate::routes::engine_config(config, [0; 32]).window_scale,
            flood: 0,
            pad: 0,
        })?;
        for iface in fp.attached() {
            sc.attach(&iface)?;
        }
        Ok(sc)
    };
    match attempt() {
        Ok(sc) => {
            let max_half_open = config.limits.max_half_open;
            tracing::info!(
                "SYN cookies in the kernel: ready, at the fast path's interfaces; flood mode at {} SYN/s to service ports with {} handshakes unanswered or 1 SYN in {} answered with a cookie",
                flood::ON_RATE,
                max_half_open.div_ceil(flood::UNANSWERED_SHARE),
                flood::UNANSWERED_SHARE
            );
            let (tx, rx) = mpsc::channel();
            counters.running.store(true, Ordering::Relaxed);
            let thread = std::thread::Builder::new()
                .name("kracauer-syncookie".into())
                .spawn(move || run(sc, rx, &counters, &limits, max_half_open))
                .ok()?;
            Some(Handle {
                tx,
                thread: Some(thread),
            })
        }
        Err(e) => {
            tracing::warn!(
                "SYN cookies in the kernel: not available ({e}); SYNs take the TUN path"
            );
            let _ = super::remove_pins(&pin_dir(&config.tun.name));
            None
        }
    }
}

/// The program's thread: a look at its counters every [`flood::LOOK_EVERY`].
fn run(
    mut sc: Syncookie,
    rx: Receiver<Command>,
    counters: &Counters,
    limits: &SharedLimits,
    mut max_half_open: usize,
) {
    let mut mode = FloodMode::default();
    loop {
        match rx.recv_timeout(flood::LOOK_EVERY) {
            Ok(Command::Mss(mss)) => {
                let c = ScConfig { mss, ..sc.config() };
                if let Err(e) = sc.configure(c) {
                    tracing::warn!("SYN cookies in the kernel: cannot set the MSS: {e}");
                }
                continue;
            }
            Ok(Command::MaxHalfOpen(max)) => {
                max_half_open = max;
                continue;
            }
            Ok(Command::Stop(remove)) => {
                counters.running.store(false, Ordering::Relaxed);
                if remove {
                    if let Err(e) = sc.remove_all() {
                        tracing::error!("could not remove the SYN cookie program: {e}");
                    }
                }
                return;
            }
            Err(RecvTimeoutError::Disconnected) => return,
            Err(RecvTimeoutError::Timeout) => {}
        }
        let stats = sc.stats();
        for (slot, v) in counters.kernel.iter().zip(stats) {
            slot.store(v, Ordering::Relaxed);
        }
        let changed = mode.look(
            stats[maps::SYN_SEEN],
            monotonic_micros(),
            (limits.half_open(), max_half_open, limits.cookies_sent()),
        );
        counters.syn_rate.store(mode.rate, Ordering::Relaxed);
        let Some(on) = changed else { continue };
        let c = ScConfig {
            flood: u8::from(on),
            ..sc.config()
        };
        if let Err(e) = sc.configure(c) {
            tracing::warn!("SYN cookies in the kernel: cannot change flood mode: {e}");
            continue;
        }
        counters.flood.store(on, Ordering::Relaxed);
        let unix = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_secs());
        counters.changed_at.store(unix, Ordering::Relaxed);
        if on {
            counters.turned_on.fetch_add(1, Ordering::Relaxed);
            tracing::warn!(
                "SYN flood: {} SYN/s to service ports; flood mode on, SYNs are answered with cookies in the kernel",
                mode.rate
            );
        } else {
            counters.turned_off.fetch_add(1, Ordering::Relaxed);
            tracing::info!(
                "SYN flood over: {} SYN/s to service ports; flood mode off, SYNs take the TUN path",
                mode.rate
            );
        }
    }
}
