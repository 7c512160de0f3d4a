//! The carrier keeper: a small child process that keeps the TUN device's carrier on for
//! `[tun] restart_grace` after the daemon dies without an orderly stop, so that a routing
//! daemon that follows the link (BIRD's `check link`, docs/scale-out.md) withdraws a
//! crashed instance only when no new daemon has come back within the grace.
//!
//! The signal is the kernel's: a TUN device has carrier while at least one descriptor is
//! attached to it as a queue, enabled or disabled, and loses it when the last one closes
//! (a persistent device with no process stays, `NO-CARRIER`, its routes `linkdown`). With
//! the kernel fast path the device is persistent, so after `kill -9` it would otherwise
//! keep neither a reader nor its carrier.
//!
//! The daemon runs the keeper ([`Keeper::spawn`]) while the fast path runs (only then do
//! flows outlive a crash): `kracauer hold-carrier --tun NAME --grace-ms N`, the same
//! binary, with its standard input a pipe from the daemon and its own process group.
//! The keeper ([`hold`]) attaches one more queue to the device with the device's own
//! flags and disables it at once: it is given no packets, but counts as attached. Then it
//! reads its standard input ([`ending`]):
//! - `stop` (the daemon's orderly stop, before it lets the device go): it exits at once;
//! - end of file (the daemon died: a crash, or the end of the old process after a live
//!   upgrade, whose new process runs its own keeper): it holds the queue for the grace,
//!   then exits; the carrier goes off then unless a daemon has attached queues again.
//!
//! The keeper's pid is recorded beside the sysctl record ([`record_path`]). A daemon
//! whose own keeper holds ends the one an earlier process left (SIGTERM, after checking
//! its command line): a restarted or upgraded daemon holds the carrier itself, and the
//! old keeper would only keep the device (and a crashed process's mount namespace) for
//! the rest of its grace.
//!
//! Between its attach and its disable (microseconds) the keeper's queue is enabled and
//! the kernel spreads the device's packets over one more queue: a packet steered there is
//! dropped, one steered to another worker meanwhile is handled as a live upgrade to more
//! workers handles it.

use std::io::{self, BufRead, BufReader, Write};
use std::process::{Child, ChildStdin, Command, Stdio};
use std::time::Duration;

mod syscalls;
#[cfg(test)]
mod tests;

/// The hidden subcommand the keeper runs as.
pub const SUBCOMMAND: &str = "hold-carrier";
/// What the daemon writes to stop the keeper at once.
pub const STOP: &str = "stop";
/// What the keeper writes once its queue is attached and disabled.
pub const HELD: &str = "held";
/// `IFF_MULTI_QUEUE`: only a queue of a multi-queue device can be disabled.
const IFF_MULTI_QUEUE: u32 = 0x0100;

/// Why the keeper could not start or hold the carrier.
#[derive(Debug, thiserror::Error)]
pub enum KeeperError {
    #[error("cannot start the carrier keeper: {0}")]
    Spawn(io::Error),
    #[error("the carrier keeper exited before it held the carrier ({0})")]
    Exited(String),
    #[error("cannot read the flags of TUN device {tun:?} ({path}): {source}")]
    Flags {
        tun: String,
        path: String,
        #[source]
        source: io::Error,
    },
    #[error("TUN device {0:?} is not multi-queue: it has no queue to disable")]
    NotMultiQueue(String),
    #[error("cannot attach a disabled queue to TUN device {tun:?}: {source}")]
    Attach {
        tun: String,
        #[source]
        source: io::Error,
    },
    #[error("cannot tell the daemon the carrier is held: {0}")]
    Report(io::Error),
}

/// A running carrier keeper, as the daemon holds it. Dropping it (a crash, a panic, the
/// old process's exit after a live upgrade) closes its input: it keeps the carrier for
/// the grace. [`stop`](Self::stop) ends it at once.
#[derive(Debug)]
pub struct Keeper {
    child: Child,
    input: Option<ChildStdin>,
}

impl Keeper {
    /// Starts `kracauer hold-carrier` for the TUN device `tun` with `grace`, and waits
    /// until it holds a disabled queue (its first line, [`HELD`]).
    pub fn spawn(tun: &str, grace: Duration) -> Result<Self, KeeperError> {
        use std::os::unix::process::CommandExt;
        // The running binary, even when a package has renamed a new one over its path.
        let mut child = Command::new("/proc/self/exe")
            .arg(SUBCOMMAND)
            .arg("--tun")
            .arg(tun)
            .arg("--grace-ms")
            .arg(grace.as_millis().to_string())
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            // Not the daemon's process group: a Ctrl-C meant for the daemon in a
            // terminal is an orderly stop, which stops the keeper itself.
            .process_group(0)
            .spawn()
            .map_err(KeeperError::Spawn)?;
        let mut line = String::new();
        let read = match child.stdout.take() {
            Some(out) => BufReader::new(out).read_line(&mut line),
            None => Ok(0),
        };
        if read.is_err() || line.trim_end() != HELD {
            drop(child.stdin.take());
            let status = child
                .wait()
                .map_or_else(|e| e.to_string(), |s| s.to_string());
            return Err(KeeperError::Exited(status));
        }
        let input = child.stdin.take();
        Ok(Self { child, input })
    }

    /// The keeper's process id.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// An orderly stop: tells the keeper to let go at once and waits until it has exited
    /// (its queue closed), so that the device can go with the daemon's last queue.
    pub fn stop(mut self, tun: &str) {
        forget(tun, self.pid());
        if let Some(mut input) = self.input.take() {
            if let Err(e) = writeln!(input, "{STOP}") {
                tracing::warn!("carrier keeper: cannot tell it to stop ({e}); ending it");
                let _ = self.child.kill();
            }
        }
        match self.child.wait() {
            Ok(status) if status.success() => {}
            Ok(status) => tracing::warn!("carrier keeper: {status}"),
            Err(e) => tracing::warn!("carrier keeper: cannot wait for it: {e}"),
        }
    }
}

/// The keeper `config` asks for, started: only while the kernel fast path runs
/// (`fastpath`; without it no flow outlives a crash, and a crash should withdraw at
/// once) and with a `[tun] restart_grace` above zero. A keeper that cannot start is a
/// warning: the instance serves on, and a crash then withdraws it at once.
pub fn start(tun: &str, grace: Duration, fastpath: bool) -> Option<Keeper> {
    if !fastpath {
        return None;
    }
    if grace.is_zero() {
        tracing::info!(
            "carrier keeper: none ([tun] restart_grace = \"0s\"): a crash takes the carrier of {tun} at once"
        );
        return None;
    }
    match Keeper::spawn(tun, grace) {
        Ok(k) => {
            tracing::info!(
                "carrier keeper: pid {} holds a disabled queue of {tun}: after a crash the carrier stays on for {}",
                k.pid(),
                humantime::format_duration(grace)
            );
            succeed(tun, k.pid());
            Some(k)
        }
        Err(e) => {
            tracing::warn!("{e}; a crash takes the carrier of {tun} at once");
            None
        }
    }
}

/// Where the pid of the TUN device `tun`'s running keeper is recorded: beside the
/// sysctl record, in the runtime directory.
pub fn record_path(tun: &str) -> std::path::PathBuf {
    let state = crate::sysctl::state_path(tun);
    let name = state
        .file_name()
        .map_or_else(String::new, |n| n.to_string_lossy().into_owned())
        .replacen("sysctl-", "tun-", 1)
        .replace(".state", ".keeper");
    state.with_file_name(name)
}

/// Records `pid` as `tun`'s keeper, and ends the keeper the record named before if it
/// still runs: it kept the carrier for a daemon that is gone (a crashed one, or the old
/// process of a live upgrade), and this process and its own keeper hold it now. Left
/// running, it would keep the device, and the crashed process's mount namespace, until
/// its grace is over.
fn succeed(tun: &str, pid: u32) {
    end_earlier(tun, Some(pid));
    if let Err(e) = std::fs::write(record_path(tun), format!("{pid}\n")) {
        tracing::warn!(
            "carrier keeper: cannot record its pid at {} ({e}); the next process cannot end it early",
            record_path(tun).display()
        );
    }
}

/// Ends the keeper `tun`'s record names, unless it is `except` or no longer a keeper of
/// `tun`. Also called by a live upgrade that re-opens the queues for another
/// `[tun] offload`: the device takes a new mode only from a queue attached alone, and a
/// keeper's disabled queue counts (the carrier is off for that moment anyway, every queue
/// being closed).
pub fn end_earlier(tun: &str, except: Option<u32>) {
    let path = record_path(tun);
    if let Some(old) = std::fs::read_to_string(&path)
        .ok()
        .and_then(|t| t.trim().parse::<u32>().ok())
        .filter(|&old| Some(old) != except && is_keeper_of(old, tun))
    {
        match rustix::process::Pid::from_raw(old as i32)
            .map(|p| rustix::process::kill_process(p, rustix::process::Signal::TERM))
        {
            Some(Ok(())) => tracing::info!(
                "carrier keeper: ended pid {old}, the keeper of an earlier process (this one holds the carrier now)"
            ),
            Some(Err(e)) => tracing::warn!("carrier keeper: cannot end pid {old}: {e}"),
            None => {}
        }
    }
}

/// Removes the record of `tun`'s keeper `pid` (an orderly stop ends it).
fn forget(tun: &str, pid: u32) {
    let path = record_path(tun);
    let ours = std::fs::read_to_string(&path)
        .ok()
        .and_then(|t| t.trim().parse::<u32>().ok())
        == Some(pid);
    if ours {
        let _ = std::fs::remove_file(path);
    }
}

/// Whether process `pid` is `kracauer hold-carrier --tun TUN` (a recorded pid may have
/// been reused by anything since).
fn is_keeper_of(pid: u32, tun: &str) -> bool {
    std::fs::read(format!("/proc/{pid}/cmdline"))
        .is_ok_and(|cmdline| is_keeper_cmdline(&cmdline, tun))
}

/// Whether `cmdline` (NUL-separated, as `/proc/PID/cmdline`) is the keeper's for `tun`.
pub fn is_keeper_cmdline(cmdline: &[u8], tun: &str) -> bool {
    let args: Vec<&[u8]> = cmdline.split(|&b| b == 0).collect();
    args.get(1) == Some(&SUBCOMMAND.as_bytes())
        && args
            .windows(2)
            .any(|w| w[0] == b"--tun" && w[1] == tun.as_bytes())
}

/// How the daemon's side of the keeper's input ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Ending {
    /// The daemon said [`STOP`]: an orderly stop.
    Stop,
    /// End of file (or a read error): the daemon is gone without a word.
    Gone,
}

/// Reads the keeper's input until [`STOP`] or its end. Other lines are ignored (and
/// logged): only an orderly stop may end the keeper early.
pub fn ending(input: impl BufRead) -> Ending {
    for line in input.lines() {
        match line {
            Ok(l) if l.trim() == STOP => return Ending::Stop,
            Ok(l) => tracing::warn!("carrier keeper: ignoring {l:?} from the daemon"),
            Err(_) => return Ending::Gone,
        }
    }
    Ending::Gone
}

/// `kracauer hold-carrier`: attaches a disabled queue to the TUN device `tun`, says
/// [`HELD`] on `report`, then waits for the [`ending`] of `input`; on [`Ending::Gone`]
/// holds the queue for `grace` before it returns (and the queue closes).
pub fn hold(
    tun: &str,
    grace: Duration,
    input: impl BufRead,
    mut report: impl Write,
) -> Result<Ending, KeeperError> {
    // Nothing the daemon left open by mistake may live on in the keeper (an instance
    // lock would outlive the daemon, a queue would take packets).
    syscalls::close_inherited();
    let path = format!("/sys/class/net/{tun}/tun_flags");
    let flags = std::fs::read_to_string(&path)
        .and_then(|text| parse_flags(&text))
        .map_err(|source| KeeperError::Flags {
            tun: tun.to_owned(),
            path: path.clone(),
            source,
        })?;
    if flags & IFF_MULTI_QUEUE == 0 {
        return Err(KeeperError::NotMultiQueue(tun.to_owned()));
    }
    let queue = disabled_queue(tun, flags).map_err(|source| KeeperError::Attach {
        tun: tun.to_owned(),
        source,
    })?;
    writeln!(report, "{HELD}")
        .and_then(|()| report.flush())
        .map_err(KeeperError::Report)?;
    drop(report);
    let end = ending(input);
    if end == Ending::Gone {
        tracing::warn!(
            "carrier keeper: the daemon is gone; keeping the carrier of {tun} on for {}",
            humantime::format_duration(grace)
        );
        std::thread::sleep(grace);
        tracing::warn!(
            "carrier keeper: grace over; letting go of {tun} (its carrier goes off unless a daemon holds it)"
        );
    }
    drop(queue);
    Ok(end)
}

/// One more queue of the device `tun`, attached with its `flags` and disabled at once.
fn disabled_queue(tun: &str, flags: u32) -> io::Result<std::os::fd::OwnedFd> {
    use std::os::fd::AsFd;
    let flags = u16::try_from(flags)
        .map_err(|_| io::Error::new(io::ErrorKind::InvalidData, format!("flags {flags:#x}")))?;
    let queue = crate::tun::syscalls::attach(tun, flags as libc::c_short)?;
    crate::tun::syscalls::disable_queue(queue.as_fd())?;
    Ok(queue)
}

/// The device flags as sysfs writes them (`0x5d01`).
pub fn parse_flags(text: &str) -> io::Result<u32> {
    let t = text.trim();
    let hex = t.strip_prefix("0x").unwrap_or(t);
    u32::from_str_radix(hex, 16).map_err(|e| {
        io::Error::new(
            io::ErrorKind::InvalidData,
            format!("{t:?} is not hexadecimal flags: {e}"),
        )
    })
}
