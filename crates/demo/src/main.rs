//! `kracauer-demo`: a throwaway testbed in network namespaces, shown working
//! (`cargo run -p kracauer-demo`, as root; `-v` shows the daemon's log).
//!
//! It builds the `kracauer-testbed` topology (an IPv4-only client, a router, two IPv6-only
//! backends that answer with the peer address they saw), runs `kracauer run` in process on
//! a thread that has entered the router's namespace (the TUN device, routes and metrics
//! socket are made there), fetches `https://`, `http://` and HTTP/3 (QUIC) for two names
//! and one unknown name, prints what the client asked and what each backend saw, stops the daemon with
//! SIGTERM (it cleans its set-up), deletes the namespaces, and exits 0 when every request
//! came out as it should.

#![deny(unsafe_code)]

use std::io::{self, Write};
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::mpsc;
use std::time::{Duration, Instant};

use kracauer_testbed::demo::{narrate, narrate_quic, terminate_self};
use kracauer_testbed::{Topology, Variant, is_root};

use clap::{ArgAction, Parser};
use kracauer::run::RunError;

/// Builds a throwaway testbed in network namespaces and shows kracauer working (root).
#[derive(Debug, Parser)]
#[command(name = "kracauer-demo", version)]
struct Cli {
    /// Show the daemon's log (-v: debug, -vv: trace).
    #[arg(short, long, action = ArgAction::Count)]
    verbose: u8,
}

fn main() -> ExitCode {
    demo(Cli::parse().verbose)
}

/// How long the daemon may take to set the router up, and to stop.
const PATIENCE: Duration = Duration::from_secs(20);

/// Runs the demo; the exit code says whether it worked.
fn demo(verbose: u8) -> ExitCode {
    if !is_root() {
        eprintln!(
            "kracauer-demo: needs root: it creates network namespaces, veth pairs and a TUN \
             device (and deletes them when done). Try it as root: cargo run -p kracauer-demo"
        );
        return ExitCode::from(2);
    }
    if verbose > 0 {
        kracauer::logging::init(verbose);
    }
    match show() {
        Ok(true) => ExitCode::SUCCESS,
        Ok(false) => ExitCode::from(1),
        Err(e) => {
            eprintln!("kracauer-demo: {e}");
            ExitCode::from(1)
        }
    }
}

fn show() -> Result<bool, String> {
    let tb = Topology::build(Variant::Routed).map_err(|e| format!("building the testbed: {e}"))?;
    let config: PathBuf = tb.dir().join("kracauer.toml");
    std::fs::write(&config, tb.quic_config(""))
        .map_err(|e| format!("writing {}: {e}", config.display()))?;

    let (done_tx, done) = mpsc::channel::<Result<(), RunError>>();
    let path = config.clone();
    tb.router
        .spawn("kracauer", move || {
            let _ = done_tx.send(kracauer::run::run(&path));
        })
        .map_err(|e| format!("starting kracauer in the router namespace: {e}"))?;

    let deadline = Instant::now() + PATIENCE;
    while !tb.kracauer_ready() {
        if let Ok(result) = done.try_recv() {
            return Err(match result {
                Ok(()) => "kracauer stopped before it was ready".to_owned(),
                Err(e) => format!("kracauer: {e}"),
            });
        }
        if Instant::now() > deadline {
            return Err(format!("kracauer was not ready after {PATIENCE:?}"));
        }
        std::thread::sleep(Duration::from_millis(50));
    }

    let mut out = io::stdout().lock();
    let fetches = narrate(&tb, &mut out).map_err(|e| format!("writing: {e}"))?;
    let quic = narrate_quic(&tb, &mut out).map_err(|e| format!("writing: {e}"))?;
    let all_good = fetches.iter().all(|f| f.as_expected()) && quic.iter().all(|f| f.as_expected());

    terminate_self().map_err(|e| e.to_string())?;
    let stopped = match done.recv_timeout(PATIENCE) {
        Ok(Ok(())) => "kracauer stopped and undid its set-up".to_owned(),
        Ok(Err(e)) => return Err(format!("kracauer stopped with an error: {e}")),
        Err(_) => return Err(format!("kracauer did not stop within {PATIENCE:?}")),
    };
    let tag = tb.tag().to_owned();
    drop(tb);
    let _ = writeln!(out, "\n{stopped}; namespaces {tag}-* deleted.");
    if !all_good {
        let _ = writeln!(
            out,
            "Some requests did not come out as they should (above)."
        );
    }
    Ok(all_good)
}
