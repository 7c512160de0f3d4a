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
use std::process::{Child, ExitStatus, Stdio};
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
    /// /32, or the policy table's default route) and, when the configuration has a
    /// `[metrics]` table, until the metrics endpoint accepts connections. `binary` is the
    /// `kracauer` executable to run.
    pub fn start(tb: &'tb Topology, binary: &Path, config: &str) -> Result<Self, Error> {
        let n = tb.next_start();
        Self::start_in(
            &tb.router,
            tb.dir(),
            &format!("kracauer-{n}"),
            "kracauer.toml",
            binary,
            config,
            TUN,
        )
    }

    /// Starts `binary run` with `config` (written to `dir/config_file`) in `ns`, its log
    /// in `dir/LOG.log`, and waits until the TUN `tun` carries an IPv6 and an IPv4 route
    /// (and the metrics endpoint [`METRICS`] answers, when the configuration serves
    /// metrics there). For several daemons in one testbed (instances of their own), each
    /// with its own configuration file and TUN.
    pub fn start_in(
        ns: &Netns,
        dir: &Path,
        log: &str,
        config_file: &str,
        binary: &Path,
        config: &str,
        tun: &str,
    ) -> Result<Self, Error> {
        let config_path = dir.join(config_file);
        std::fs::write(&config_path, config)?;
        let log = dir.join(format!("{log}.log"));
        let out = File::create(&log)?;
        let err = out.try_clone()?;
        let child = ns
            .command(binary)
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
            if tun_ready(&self.ns, &self.tun) && (!metrics || self.metrics().is_ok()) {
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
