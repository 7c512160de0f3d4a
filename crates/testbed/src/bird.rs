//! BIRD 2 as a real routing peer in a namespace: `bird -f -c CONF -s SOCK -P PIDFILE`,
//! its own control socket and log in the testbed's directory, asked through `birdc`.
//! Nothing here depends on systemd or on the host's BIRD service.

use std::fs::File;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};

use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;

use crate::Error;
use crate::netns::Netns;

/// A running BIRD. Dropping it stops it (SIGTERM, by its pid, then reaped); when dropped
/// during a panic it prints its log.
#[derive(Debug)]
pub struct Bird {
    name: String,
    child: Child,
    socket: PathBuf,
    log: PathBuf,
}

/// One protocol's line of `birdc show protocols`, and its route counters.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Protocol {
    /// `up`, `down`, `start`.
    pub state: String,
    /// The whole line (for a BGP session that is up, it says `Established`).
    pub line: String,
    /// Import updates received (`show protocols all`, the channel's "Import updates").
    pub updates: u64,
    /// Import withdraws received.
    pub withdraws: u64,
}

impl Protocol {
    /// A BGP session that is up.
    pub fn established(&self) -> bool {
        self.state == "up" && self.line.contains("Established")
    }
}

impl Bird {
    /// Writes `config` to `dir/bird-NAME.conf`, checks it (`bird -p`), and starts BIRD in
    /// `ns` in the foreground with its socket and pid file in `dir`.
    pub fn start(ns: &Netns, dir: &Path, name: &str, config: &str) -> Result<Self, Error> {
        let conf = dir.join(format!("bird-{name}.conf"));
        std::fs::write(&conf, config)?;
        let check = Command::new("bird")
            .arg("-p")
            .arg("-c")
            .arg(&conf)
            .output()
            .map_err(|e| Error::spawn("bird -p", e))?;
        if !check.status.success() {
            return Err(Error::Setup(format!(
                "bird -p -c {}: {}",
                conf.display(),
                String::from_utf8_lossy(&check.stderr)
            )));
        }
        let socket = dir.join(format!("bird-{name}.ctl"));
        let log = dir.join(format!("bird-{name}.log"));
        let out = File::create(&log)?;
        let err = out.try_clone()?;
        let child = ns
            .command("bird")
            .arg("-f")
            .arg("-c")
            .arg(&conf)
            .arg("-s")
            .arg(&socket)
            .arg("-P")
            .arg(dir.join(format!("bird-{name}.pid")))
            .stdin(Stdio::null())
            .stdout(out)
            .stderr(err)
            .spawn()
            .map_err(|e| Error::spawn("bird", e))?;
        Ok(Self {
            name: name.to_owned(),
            child,
            socket,
            log,
        })
    }

    /// `birdc -s SOCK ARGS...`: its standard output.
    pub fn birdc(&self, args: &[&str]) -> Result<String, Error> {
        let out = Command::new("birdc")
            .arg("-s")
            .arg(&self.socket)
            .args(args)
            .stdin(Stdio::null())
            .output()
            .map_err(|e| Error::spawn("birdc", e))?;
        if !out.status.success() {
            return Err(Error::Command {
                command: format!("birdc {}", args.join(" ")),
                status: out.status.to_string(),
                stderr: String::from_utf8_lossy(&out.stderr).trim().to_owned(),
            });
        }
        Ok(String::from_utf8_lossy(&out.stdout).into_owned())
    }

    /// The state of protocol `name` (`show protocols all NAME`), or `None` when BIRD does
    /// not answer yet.
    pub fn protocol(&self, name: &str) -> Option<Protocol> {
        let text = self.birdc(&["show", "protocols", "all", name]).ok()?;
        let line = text.lines().find(|l| l.starts_with(name))?;
        // NAME PROTO TABLE STATE SINCE INFO
        let state = line.split_whitespace().nth(3)?.to_owned();
        // "Import updates:  received rejected filtered ignored accepted"
        let counter = |row: &str| -> u64 {
            text.lines()
                .find(|l| l.trim_start().starts_with(row))
                .and_then(|l| l.split_whitespace().nth(2)?.parse().ok())
                .unwrap_or(0)
        };
        Some(Protocol {
            state,
            line: line.to_owned(),
            updates: counter("Import updates:"),
            withdraws: counter("Import withdraws:"),
        })
    }

    /// The process id.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Everything BIRD logged so far.
    pub fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// SIGKILL (BIRD dies as a crashed host's would), and reaps it.
    pub fn kill9(&mut self) -> Result<(), Error> {
        let pid = Pid::from_raw(self.child.id() as i32);
        kill(pid, Signal::SIGKILL).map_err(|e| Error::Setup(format!("kill -9 {pid}: {e}")))?;
        self.child.wait()?;
        Ok(())
    }
}

impl Drop for Bird {
    fn drop(&mut self) {
        if let Ok(None) = self.child.try_wait() {
            let _ = kill(Pid::from_raw(self.child.id() as i32), Signal::SIGTERM);
            let _ = self.child.wait();
        }
        if std::thread::panicking() {
            eprintln!(
                "---- bird {} log ----\n{}\n---- end of bird {} log ----",
                self.name,
                self.log(),
                self.name
            );
        }
    }
}
