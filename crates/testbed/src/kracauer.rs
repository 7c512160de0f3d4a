//! The real `kracauer` binary, run as a child process in the router namespace
//! (`ip netns exec ROUTER BINARY run --config FILE`), with a readiness wait and the
//! signals the tests need.
//!
//! The caller says which binary: the testbed never looks for one. An integration test of
//! the `kracauer` package passes `env!("CARGO_BIN_EXE_kracauer")`, the binary cargo built
//! for that very test run; `kracauer-bench` takes `--kracauer PATH`.

use std::fs::File;
use std::marker::PhantomData;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::thread;
use std::time::{Duration, Instant};

use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;

use crate::Error;
use crate::client::{self, Reply};
use crate::netns::Netns;
use crate::topology::{METRICS, TUN, Topology};

/// How long kracauer may take to come up.
pub const READY_TIMEOUT: Duration = Duration::from_secs(20);
/// How long kracauer may take to exit after SIGTERM.
pub const EXIT_TIMEOUT: Duration = Duration::from_secs(10);

/// A running `kracauer run`. Dropping it kills the process (SIGKILL, by its pid) if it
/// still runs; when dropped during a panic it prints the daemon's log to stderr.
#[derive(Debug)]
pub struct Kracauer<'tb> {
    ns: Netns,
    tun: String,
    child: Child,
    config: PathBuf,
    log: PathBuf,
    exited: Option<ExitStatus>,
    /// The testbed it runs in outlives it.
    _tb: PhantomData<&'tb ()>,
}

impl<'tb> Kracauer<'tb> {
    /// Writes `config`, starts the daemon in `tb`'s router namespace, and waits until its
    /// TUN device carries a route for the prefix and one for IPv4 (the service address's
    /// /32, or the policy table's default route), its log says it runs (`running on`)
    /// and, when the configuration has a `[metrics]` table, until the metrics endpoint
    /// accepts connections. `binary` is the
    /// `kracauer` executable to run.
    pub fn start(tb: &'tb Topology, binary: &Path, config: &str) -> Result<Self, Error> {
        Self::start_router(tb, None, binary, config)
    }

    /// The testbed's one daemon in the router namespace, with or without a bpffs holder.
    fn start_router(
        tb: &'tb Topology,
        holder: Option<&BpffsHolder>,
        binary: &Path,
        config: &str,
    ) -> Result<Self, Error> {
        let n = tb.next_start();
        Self::start_in(
            &tb.router,
            holder,
            tb.dir(),
            &format!("kracauer-{n}"),
            "kracauer.toml",
            binary,
            config,
            TUN,
        )
    }

    /// Starts `binary run` with `config` (written to `dir/config_file`) in `ns`, its log
    /// in `dir/LOG.log`, and waits until the TUN `tun` carries an IPv6 and an IPv4 route,
    /// its log says it runs (and the metrics endpoint [`METRICS`] answers, when the configuration serves
    /// metrics there). For several daemons in one testbed (instances of their own), each
    /// with its own configuration file and TUN. With a `holder` (running in `ns`), inside
    /// its mount namespace (see [`start_held`](Self::start_held)).
    #[allow(clippy::too_many_arguments)]
    pub fn start_in(
        ns: &Netns,
        holder: Option<&BpffsHolder>,
        dir: &Path,
        log: &str,
        config_file: &str,
        binary: &Path,
        config: &str,
        tun: &str,
    ) -> Result<Self, Error> {
        let mut command = holder.map_or_else(|| ns.command(binary), |h| h.command(binary));
        let config_path = dir.join(config_file);
        std::fs::write(&config_path, config)?;
        let log = dir.join(format!("{log}.log"));
        let out = File::create(&log)?;
        let err = out.try_clone()?;
        let child = command
            // The record of the sysctls to put back after a crash lives and dies with the
            // testbed, not in the host's /run/kracauer (a later namespace may reuse this
            // one's inode number, which names the record there).
            .env("RUNTIME_DIRECTORY", dir)
            .arg("run")
            .arg("--config")
            .arg(&config_path)
            .stdin(Stdio::null())
            .stdout(out)
            .stderr(err)
            .spawn()
            .map_err(|e| Error::spawn(&binary.display().to_string(), e))?;
        let mut k = Kracauer {
            ns: ns.clone(),
            tun: tun.to_owned(),
            child,
            config: config_path,
            log,
            exited: None,
            _tb: PhantomData,
        };
        k.wait_ready(config.contains(METRICS))?;
        Ok(k)
    }

    /// [`Kracauer::start`] inside `holder`'s mount namespace (entered with `nsenter`, as
    /// the router's network namespace), where bpffs outlives the daemon: its fast-path
    /// pins survive a `kill -9`, as they do on a host, for the next daemon to adopt.
    pub fn start_held(
        tb: &'tb Topology,
        holder: &BpffsHolder,
        binary: &Path,
        config: &str,
    ) -> Result<Self, Error> {
        Self::start_router(tb, Some(holder), binary, config)
    }

    fn wait_ready(&mut self, metrics: bool) -> Result<(), Error> {
        let deadline = Instant::now() + READY_TIMEOUT;
        loop {
            if let Some(status) = self.child.try_wait()? {
                self.exited = Some(status);
                return Err(Error::Setup(format!(
                    "kracauer exited ({status}) before it was ready; its log:\n{}",
                    self.log()
                )));
            }
            // The routes alone do not say it: a persistent TUN keeps those of a killed
            // daemon, and a restart no longer takes it down. The daemon's own line does.
            if tun_ready(&self.ns, &self.tun)
                && self.log().contains(" running on ")
                && (!metrics || self.metrics().is_ok())
            {
                return Ok(());
            }
            if Instant::now() > deadline {
                return Err(Error::Setup(format!(
                    "kracauer not ready after {READY_TIMEOUT:?}; its log:\n{}",
                    self.log()
                )));
            }
            thread::sleep(Duration::from_millis(50));
        }
    }

    /// The daemon's process id.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Everything the daemon wrote to stdout and stderr so far.
    pub fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// The configuration file the daemon was started with.
    pub fn config_path(&self) -> &Path {
        &self.config
    }

    /// Rewrites the configuration file with `config` and sends SIGHUP.
    pub fn reload(&self, config: &str) -> Result<(), Error> {
        std::fs::write(&self.config, config)?;
        self.signal(Signal::SIGHUP)
    }

    /// Sends `signal` to the daemon.
    pub fn signal(&self, signal: Signal) -> Result<(), Error> {
        let pid = Pid::from_raw(self.child.id() as i32);
        kill(pid, signal).map_err(|e| Error::Setup(format!("kill -{signal} {pid}: {e}")))
    }

    /// Whether the daemon is still running.
    pub fn is_running(&mut self) -> bool {
        if self.exited.is_some() {
            return false;
        }
        match self.child.try_wait() {
            Ok(Some(status)) => {
                self.exited = Some(status);
                false
            }
            Ok(None) => true,
            Err(_) => false,
        }
    }

    /// SIGTERM, then waits for the exit (SIGKILL after [`EXIT_TIMEOUT`], reported as an
    /// error).
    pub fn terminate(mut self) -> Result<ExitStatus, Error> {
        self.signal(Signal::SIGTERM)?;
        let deadline = Instant::now() + EXIT_TIMEOUT;
        while Instant::now() < deadline {
            if let Some(status) = self.child.try_wait()? {
                self.exited = Some(status);
                return Ok(status);
            }
            thread::sleep(Duration::from_millis(20));
        }
        Err(Error::Setup(format!(
            "kracauer still running {EXIT_TIMEOUT:?} after SIGTERM; its log:\n{}",
            self.log()
        )))
    }

    /// SIGKILL (`kill -9`), and reaps the process.
    pub fn kill9(mut self) -> Result<(), Error> {
        self.signal(Signal::SIGKILL)?;
        let status = self.child.wait()?;
        self.exited = Some(status);
        Ok(())
    }

    /// `GET /metrics` (at [`METRICS`]) from inside the daemon's namespace.
    pub fn metrics(&self) -> Result<Reply, Error> {
        let addr = METRICS
            .parse()
            .map_err(|e| Error::Setup(format!("metrics address: {e}")))?;
        self.ns
            .run(move || client::http_get(addr, "127.0.0.1", "/metrics"))?
    }
}

impl Drop for Kracauer<'_> {
    fn drop(&mut self) {
        if self.is_running() {
            let _ = self.signal(Signal::SIGKILL);
            let _ = self.child.wait();
        }
        if thread::panicking() {
            eprintln!(
                "---- kracauer log ({}) ----\n{}\n---- end of kracauer log ----",
                self.log.display(),
                self.log()
            );
        }
    }
}

/// Whether the TUN `tun` in `ns` carries an IPv6 route (the prefix) and an IPv4 route
/// (the service address's /32, or the policy table's default route).
pub fn tun_ready(ns: &Netns, tun: &str) -> bool {
    let v6 = ns.ip(["-6", "route", "show", "table", "all", "dev", tun]);
    let v4 = ns.ip(["-4", "route", "show", "table", "all", "dev", tun]);
    matches!((v6, v4), (Ok(v6), Ok(v4)) if !v6.trim().is_empty() && !v4.trim().is_empty())
}

/// A process that holds a mount namespace of its own in a network namespace, with bpffs
/// mounted at `/sys/fs/bpf`, for daemons whose BPF pins must outlive them
/// ([`Kracauer::start_held`]).
///
/// `ip netns exec` gives every command a mount namespace of its own (to mount the
/// namespace's sysfs), so the bpffs a daemon started that way mounts dies with it, and
/// its pins with it: not what a host, whose bpffs belongs to the host, does. A daemon
/// entered into this holder's namespaces with `nsenter` sees the network namespace's
/// sysfs and a bpffs that stays while the holder runs. Dropping the holder kills it (by
/// its pid); its mount namespace, and the pins, go with it.
#[derive(Debug)]
pub struct BpffsHolder {
    child: Child,
}

impl BpffsHolder {
    /// Starts the holder in `ns`.
    pub fn start(ns: &Netns) -> Result<Self, Error> {
        let mut child = ns
            .command("sh")
            .args([
                "-c",
                "mount -t bpf bpf /sys/fs/bpf && echo ready && exec sleep 1000000",
            ])
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .spawn()
            .map_err(|e| Error::spawn("sh", e))?;
        let mut line = String::new();
        if let Some(out) = child.stdout.take() {
            use std::io::BufRead as _;
            let _ = std::io::BufReader::new(out).read_line(&mut line);
        }
        let holder = Self { child };
        if line.trim() != "ready" {
            return Err(Error::Setup("cannot mount bpffs in the holder".into()));
        }
        Ok(holder)
    }

    /// A command that runs `program` in the holder's mount and network namespaces.
    pub fn command(&self, program: impl AsRef<std::ffi::OsStr>) -> Command {
        let mut cmd = Command::new("nsenter");
        cmd.arg("-t")
            .arg(self.child.id().to_string())
            .args(["-m", "-n", "--"])
            .arg(program);
        cmd
    }
}

impl Drop for BpffsHolder {
    fn drop(&mut self) {
        let _ = kill(Pid::from_raw(self.child.id() as i32), Signal::SIGKILL);
        let _ = self.child.wait();
    }
}
