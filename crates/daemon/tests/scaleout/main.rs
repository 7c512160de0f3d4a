//! Scale-out end to end (docs/scale-out.md): instances that never collide on one host
//! (`instances`), and instances behind an upstream router that spreads flows over them
//! by ECMP, each announced by its own BIRD (`bgp`, on the testbed's
//! [`ScaleOut`](kracauer_testbed::scaleout::ScaleOut) topology), the TUN's carrier as what
//! BIRD follows: a crash withdrawn only when no restart comes within the grace, a live
//! upgrade of a fast-path instance withdrawing nothing (`carrier`), and a returning instance that
//! breaks no running flow with second chance (`rebalance`). The instances run the
//! kernel fast path, as by default.
//!
//! Privileged: every test is `#[ignore]`d (run them as root with `--include-ignored`) and
//! panics when root, `ip` or BIRD is missing. Every test builds its own uniquely named
//! namespaces and deletes them on drop, also when it fails.

#![allow(clippy::unwrap_used)] // test helpers: a failed step is a failed test

mod bgp;
mod carrier;
mod instances;
mod rebalance;

use std::sync::{PoisonError, RwLock, RwLockReadGuard, RwLockWriteGuard};
use std::thread;
use std::time::{Duration, Instant};

/// The binary under test.
const KRACAUER: &str = env!("CARGO_BIN_EXE_kracauer");

/// The machine the tests share: the live upgrade under load asserts that the upgrade
/// drops nothing while its own load runs, so it runs alone ([`alone`]); the others run
/// beside each other ([`beside`]). (Beside the 200-connection ECMP test on this 2-core
/// machine, its transfers once stalled for 30 s in both instances, the one not upgraded
/// too: starvation, not the upgrade.)
static MACHINE: RwLock<()> = RwLock::new(());

fn alone() -> RwLockWriteGuard<'static, ()> {
    MACHINE.write().unwrap_or_else(PoisonError::into_inner)
}

fn beside() -> RwLockReadGuard<'static, ()> {
    MACHINE.read().unwrap_or_else(PoisonError::into_inner)
}

/// Polls `f` until it returns `Some` or `limit` passes (a bound on waiting, not a timed
/// assertion: the condition is what is checked).
fn eventually<T>(what: &str, limit: Duration, mut f: impl FnMut() -> Option<T>) -> T {
    let end = Instant::now() + limit;
    loop {
        if let Some(v) = f() {
            return v;
        }
        assert!(Instant::now() < end, "gave up waiting for {what}");
        thread::sleep(Duration::from_millis(20));
    }
}

/// Output lines with their spacing normalised (as `ip` prints them, tabs and runs of
/// spaces vary).
fn lines(s: &str) -> Vec<String> {
    s.lines()
        .map(|l| l.split_whitespace().collect::<Vec<_>>().join(" "))
        .filter(|l| !l.is_empty())
        .collect()
}

/// A daemon this test does not own as a child (the new process of a live upgrade): ended
/// by SIGTERM (by its pid) and reaped when the test ends, also when it fails, so that
/// it does not outlive its deleted namespaces.
struct EndOnDrop(Option<rustix::process::Pid>);

impl EndOnDrop {
    fn new(pid: i32) -> Self {
        Self(rustix::process::Pid::from_raw(pid))
    }
}

impl Drop for EndOnDrop {
    fn drop(&mut self) {
        if let Some(pid) = self.0 {
            if rustix::process::kill_process(pid, rustix::process::Signal::TERM).is_ok() {
                let _ = rustix::process::waitpid(Some(pid), rustix::process::WaitOptions::empty());
            }
        }
    }
}

/// Samples the upstream router's route to the service address every 10 ms, from
/// [`start`](Self::start) to [`stop`](Self::stop), keeping each sample that lacks
/// instance 1's next hop.
struct RouteWatch {
    watching: std::sync::Arc<std::sync::atomic::AtomicBool>,
    thread: thread::JoinHandle<Vec<String>>,
}

impl RouteWatch {
    fn start(so: &kracauer_testbed::scaleout::ScaleOut) -> Self {
        use std::sync::atomic::Ordering;
        let watching = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(true));
        let up = so.upstream.clone();
        let on = watching.clone();
        let via = kracauer_testbed::scaleout::ScaleOut::host_v4(1).to_string();
        let thread = thread::spawn(move || {
            let mut missing = Vec::new();
            while on.load(Ordering::Relaxed) {
                let routes = up
                    .ip(["-4", "route", "show", "203.0.113.10"])
                    .unwrap_or_default();
                if !routes.contains(&via) {
                    missing.push(routes);
                }
                thread::sleep(Duration::from_millis(10));
            }
            missing
        });
        Self { watching, thread }
    }

    /// The samples that missed instance 1.
    fn stop(self) -> Vec<String> {
        self.watching
            .store(false, std::sync::atomic::Ordering::Relaxed);
        self.thread.join().unwrap()
    }

    /// Stops the watch and checks that instance 1 stayed announced: never missing
    /// upstream, both its BGP sessions up, and no withdrawal since `before` (the upstream
    /// router's `k1_4` and `k1_6` sessions then).
    fn assert_nothing_withdrawn(
        self,
        so: &kracauer_testbed::scaleout::ScaleOut,
        before: (
            &kracauer_testbed::bird::Protocol,
            &kracauer_testbed::bird::Protocol,
        ),
    ) {
        let missing = self.stop();
        assert!(
            missing.is_empty(),
            "instance 1 was missing upstream: {missing:?}"
        );
        let counters = |p: &str| so.bird_upstream.protocol(p).unwrap();
        let (v4_after, v6_after) = (counters("k1_4"), counters("k1_6"));
        assert!(v4_after.established() && v6_after.established());
        assert_eq!(v4_after.withdraws, before.0.withdraws, "no IPv4 withdrawal");
        assert_eq!(v6_after.withdraws, before.1.withdraws, "no IPv6 withdrawal");
    }
}
