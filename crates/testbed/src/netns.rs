//! Named network namespaces: create with `ip netns add`, run a closure or a command
//! inside, delete by name.
//!
//! Code that must run inside a namespace runs on a thread of its own that enters the
//! namespace with `setns(2)` first; the calling thread never changes namespace, so a test
//! harness thread is never left in a namespace that is later deleted. Sockets keep the
//! namespace they were created in, so a listener bound on such a thread serves that
//! namespace for its whole life whichever thread accepts on it.

use std::ffi::OsStr;
use std::fs::File;
use std::process::{Command, Output, Stdio};
use std::thread;

use nix::sched::{CloneFlags, setns};

use crate::Error;

/// Where `ip netns add` makes the handle of a named namespace.
const NETNS_DIR: &str = "/var/run/netns";

/// A network namespace known by name. Dropping this value does not delete the namespace:
/// the [`Topology`](crate::Topology) that made it deletes it (see [`Netns::delete`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Netns {
    name: String,
}

impl Netns {
    /// Creates the namespace `name` and brings its loopback up.
    pub fn create(name: &str) -> Result<Self, Error> {
        ip(["netns", "add", name])?;
        let ns = Netns {
            name: name.to_owned(),
        };
        ns.ip(["link", "set", "lo", "up"])?;
        Ok(ns)
    }

    /// The namespace's name, as `ip netns` knows it.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// Runs `ip -n NAME ARGS...`.
    pub fn ip<I, S>(&self, args: I) -> Result<String, Error>
    where
        I: IntoIterator<Item = S>,
        S: AsRef<OsStr>,
    {
        let mut all: Vec<std::ffi::OsString> = vec!["-n".into(), self.name.clone().into()];
        all.extend(args.into_iter().map(|a| a.as_ref().to_owned()));
        ip(all)
    }

    /// Sets a sysctl inside the namespace (`ip netns exec NAME sysctl -qw KEY=VALUE`).
    pub fn sysctl(&self, key: &str, value: &str) -> Result<(), Error> {
        let out = self
            .command("sysctl")
            .args(["-qw", &format!("{key}={value}")])
            .output()
            .map_err(|e| Error::spawn("sysctl", e))?;
        check("sysctl", &out)?;
        Ok(())
    }

    /// A command that runs `program` inside the namespace (`ip netns exec NAME program`).
    pub fn command(&self, program: impl AsRef<OsStr>) -> Command {
        let mut cmd = Command::new("ip");
        cmd.args(["netns", "exec", &self.name]).arg(program);
        cmd
    }

    /// Runs `f` on a new thread that has entered this namespace, and returns its result.
    /// A panic in `f` is resumed on the calling thread.
    pub fn run<T, F>(&self, f: F) -> Result<T, Error>
    where
        F: FnOnce() -> T + Send,
        T: Send,
    {
        let handle = self.open()?;
        thread::scope(|s| {
            let joined = thread::Builder::new()
                .name(format!("in-{}", self.name))
                .spawn_scoped(s, move || -> Result<T, Error> {
                    enter(&handle, &self.name)?;
                    Ok(f())
                })
                .map_err(|e| Error::spawn("thread", e))?
                .join();
            match joined {
                Ok(result) => result,
                Err(panic) => std::panic::resume_unwind(panic),
            }
        })
    }

    /// Starts a detached thread inside this namespace running `f`.
    pub fn spawn<F>(&self, label: &str, f: F) -> Result<thread::JoinHandle<()>, Error>
    where
        F: FnOnce() + Send + 'static,
    {
        let handle = self.open()?;
        let name = self.name.clone();
        let (ready_tx, ready_rx) = std::sync::mpsc::channel();
        let join = thread::Builder::new()
            .name(format!("{label}@{name}"))
            .spawn(move || match enter(&handle, &name) {
                Ok(()) => {
                    let _ = ready_tx.send(Ok(()));
                    f();
                }
                Err(e) => {
                    let _ = ready_tx.send(Err(e));
                }
            })
            .map_err(|e| Error::spawn("thread", e))?;
        match ready_rx.recv() {
            Ok(Ok(())) => Ok(join),
            Ok(Err(e)) => Err(e),
            Err(_) => Err(Error::Setup(format!(
                "thread for {label} in {} ended before entering the namespace",
                self.name
            ))),
        }
    }

    /// Deletes the namespace by name. Interfaces inside it go with it (a veth pair dies
    /// with either end). Errors are returned, not ignored, but deleting a namespace that
    /// is already gone is not an error.
    pub fn delete(&self) -> Result<(), Error> {
        if !exists(&self.name) {
            return Ok(());
        }
        ip(["netns", "del", &self.name]).map(|_| ())
    }

    /// Reads a file as seen from inside the namespace, trimmed (e.g. a sysctl under
    /// `/proc/sys/net`, which shows the namespace's own values).
    pub fn read(&self, path: &str) -> Result<String, Error> {
        let out = self
            .command("cat")
            .arg(path)
            .output()
            .map_err(|e| Error::spawn("cat", e))?;
        check(&format!("cat {path}"), &out)?;
        Ok(String::from_utf8_lossy(&out.stdout).trim().to_owned())
    }

    fn open(&self) -> Result<File, Error> {
        File::open(format!("{NETNS_DIR}/{}", self.name))
            .map_err(|e| Error::Setup(format!("cannot open namespace {}: {e}", self.name)))
    }
}

/// A namespace of its own for one test, `krc-TAG-PID`, deleted by name when dropped (also
/// when the test panics). For tests that need a bare namespace rather than a
/// [`Topology`](crate::Topology); it dereferences to [`Netns`].
#[derive(Debug)]
pub struct OwnedNetns(Netns);

impl OwnedNetns {
    /// Creates `krc-TAG-PID`. A namespace of that name can only be a leftover of a killed
    /// run of this very pid, so it is deleted first.
    pub fn create(tag: &str) -> Result<Self, Error> {
        let name = format!("krc-{tag}-{}", std::process::id());
        if exists(&name) {
            ip(["netns", "del", &name])?;
        }
        Netns::create(&name).map(OwnedNetns)
    }
}

impl std::ops::Deref for OwnedNetns {
    type Target = Netns;
    fn deref(&self) -> &Netns {
        &self.0
    }
}

impl Drop for OwnedNetns {
    fn drop(&mut self) {
        if let Err(e) = self.0.delete() {
            eprintln!("testbed: cannot delete namespace {}: {e}", self.0.name());
        }
    }
}

/// Whether a namespace of this name exists.
pub fn exists(name: &str) -> bool {
    std::path::Path::new(NETNS_DIR).join(name).exists()
}

/// Moves the calling thread into the namespace whose handle is `file`.
fn enter(file: &File, name: &str) -> Result<(), Error> {
    setns(file, CloneFlags::CLONE_NEWNET)
        .map_err(|e| Error::Setup(format!("setns into {name}: {e}")))
}

/// Runs `ip ARGS...` and returns its standard output, or an error carrying its stderr.
pub fn ip<I, S>(args: I) -> Result<String, Error>
where
    I: IntoIterator<Item = S>,
    S: AsRef<OsStr>,
{
    let args: Vec<std::ffi::OsString> = args.into_iter().map(|a| a.as_ref().to_owned()).collect();
    let out = Command::new("ip")
        .args(&args)
        .stdin(Stdio::null())
        .output()
        .map_err(|e| Error::spawn("ip", e))?;
    let shown = format!(
        "ip {}",
        args.iter()
            .map(|a| a.to_string_lossy())
            .collect::<Vec<_>>()
            .join(" ")
    );
    check(&shown, &out)?;
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

fn check(what: &str, out: &Output) -> Result<(), Error> {
    if out.status.success() {
        Ok(())
    } else {
        Err(Error::Command {
            command: what.to_owned(),
            status: out.status.to_string(),
            stderr: String::from_utf8_lossy(&out.stderr).trim().to_owned(),
        })
    }
}
