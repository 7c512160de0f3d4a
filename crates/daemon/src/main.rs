//! The `kracauer` binary: command-line parsing and dispatch to the subcommands.
//!
//! Everything but parsing lives in the `kracauer` library crate (`lib.rs`). The demo is
//! its own crate (`kracauer-demo`, it links the testbed); `kracauer demo` is hidden and
//! says how to run it. Two more hidden subcommands serve packaging:
//! `kracauer completions SHELL` prints a completion script and `kracauer manpages DIR`
//! writes the man pages, both from this command line's own definition. The hidden
//! `kracauer hold-carrier` is the carrier keeper `run` starts ([`kracauer::keeper`]).

#![deny(unsafe_code)]

use std::net::IpAddr;
use std::path::PathBuf;
use std::process::ExitCode;

use clap::{CommandFactory, Parser, Subcommand};
use kracauer::{check, routes};
use kracauer_core::addr::{Prefix96, low32};

mod manpages;

/// The version line: the crate's version, the commit and its date (build.rs).
macro_rules! version_line {
    () => {
        concat!(
            env!("CARGO_PKG_VERSION"),
            " (commit ",
            env!("KRACAUER_COMMIT"),
            ", ",
            env!("KRACAUER_COMMIT_DATE"),
            ")"
        )
    };
}

/// `kracauer -V`.
const VERSION: &str = version_line!();
/// `kracauer --version`: the version line, then how this binary was built.
const LONG_VERSION: &str = concat!(
    version_line!(),
    "\nbuild: ",
    env!("KRACAUER_BUILD"),
    "\nfeatures: ",
    env!("KRACAUER_FEATURES")
);

/// Share one IPv4 address among IPv6-only servers: route TLS/HTTP by name, translate each
/// flow to IPv6 with the client's address embedded in a /96.
#[derive(Debug, Parser)]
#[command(
    name = "kracauer",
    version = VERSION,
    long_version = LONG_VERSION,
    about,
    long_about = None
)]
struct Cli {
    /// More log output: -v for debug, -vv for trace (RUST_LOG, if set, wins).
    #[arg(short, long, action = clap::ArgAction::Count, global = true)]
    verbose: u8,
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Set up the host, translate in the foreground, clean up on SIGINT/SIGTERM.
    ///
    /// SIGHUP reloads the configuration (an invalid file changes nothing); SIGUSR2
    /// upgrades live to the binary now at this one's path.
    Run {
        /// The configuration file (TOML).
        #[arg(long, short)]
        config: PathBuf,
    },
    /// Validate a configuration file and print the resolved route table.
    ///
    /// Fails when the configuration would collide with another Kracauer instance running
    /// in this network namespace (the same instance number, TUN, prefix, service address
    /// or metrics address).
    Check {
        /// The configuration file (TOML).
        #[arg(long, short)]
        config: PathBuf,
    },
    /// Convert between a client's IPv4 address and its IPv6 form inside the prefix.
    ///
    /// `kracauer addr 2001:db8:64::c633:6402` prints 198.51.100.2;
    /// `kracauer addr 198.51.100.2 --prefix 2001:db8:64::/96` prints 2001:db8:64::c633:6402.
    Addr {
        /// An IPv6 address to decode, or an IPv4 address to embed (needs --prefix).
        address: IpAddr,
        /// The translation prefix, e.g. 2001:db8:64::/96.
        #[arg(long, short)]
        prefix: Option<Prefix96>,
    },
    /// Says how to run the demo, which is not part of the installed binary.
    #[command(hide = true)]
    Demo,
    /// Print a shell completion script on standard output (the package installs bash,
    /// zsh and fish ones).
    #[command(hide = true)]
    Completions {
        /// The shell to complete for.
        shell: clap_complete::Shell,
    },
    /// Write the man pages (kracauer.8 and one per subcommand) into a directory.
    #[command(hide = true)]
    Manpages {
        /// Where to write them (it must exist).
        dir: PathBuf,
    },
    /// The carrier keeper `kracauer run` starts for itself: holds a disabled queue of the
    /// TUN device until its standard input says `stop`, or for the grace after it ends.
    #[command(hide = true, name = "hold-carrier")]
    HoldCarrier {
        /// The TUN device.
        #[arg(long)]
        tun: String,
        /// How long to keep the carrier after the daemon is gone, in milliseconds.
        #[arg(long)]
        grace_ms: u64,
    },
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    match cli.command {
        Command::Run { config } => {
            kracauer::logging::init(cli.verbose);
            match kracauer::run::run(&config) {
                Ok(()) => ExitCode::SUCCESS,
                Err(e) => {
                    eprintln!("kracauer: {e}");
                    ExitCode::from(1)
                }
            }
        }
        Command::Check { config } => match routes::load(&config) {
            Ok(l) => {
                print!("{}", check::report(&config, &l.config, &l.routes));
                let dir = kracauer::instance::state_dir();
                let collides = kracauer::instance::collisions(&l.config, &config, &dir);
                let restart = kracauer::instance::needs_restart(&l.config, &config, &dir);
                if collides.is_empty() && restart.is_empty() {
                    return ExitCode::SUCCESS;
                }
                for c in collides {
                    eprintln!("kracauer: collides with a running instance: {c}");
                }
                for r in restart {
                    eprintln!("kracauer: {r}");
                }
                ExitCode::from(1)
            }
            Err(e) => {
                eprintln!("kracauer: {e}");
                ExitCode::from(1)
            }
        },
        Command::Demo => {
            eprintln!("{NO_DEMO}");
            ExitCode::from(2)
        }
        Command::Completions { shell } => {
            clap_complete::generate(
                shell,
                &mut Cli::command(),
                "kracauer",
                &mut std::io::stdout(),
            );
            ExitCode::SUCCESS
        }
        Command::Manpages { dir } => match manpages::write(Cli::command(), &dir) {
            Ok(pages) => {
                for page in pages {
                    println!("{}", page.display());
                }
                ExitCode::SUCCESS
            }
            Err(e) => {
                eprintln!(
                    "kracauer: cannot write the man pages into {}: {e}",
                    dir.display()
                );
                ExitCode::from(1)
            }
        },
        Command::HoldCarrier { tun, grace_ms } => {
            kracauer::logging::init(cli.verbose);
            let grace = std::time::Duration::from_millis(grace_ms);
            let stdin = std::io::stdin().lock();
            match kracauer::keeper::hold(&tun, grace, stdin, std::io::stdout()) {
                Ok(_) => ExitCode::SUCCESS,
                Err(e) => {
                    eprintln!("kracauer hold-carrier: {e}");
                    ExitCode::from(1)
                }
            }
        }
        Command::Addr { address, prefix } => match addr(address, prefix) {
            Ok(line) => {
                println!("{line}");
                ExitCode::SUCCESS
            }
            Err(message) => {
                eprintln!("kracauer: {message}");
                ExitCode::from(2)
            }
        },
    }
}

/// What `kracauer demo` says: the demo is a separate binary.
const NO_DEMO: &str = "kracauer demo: the demo is not part of the installed kracauer (it links \
    the namespace testbed: TLS, certificates). From a source checkout, as root: \
    cargo run -p kracauer-demo";

/// The `addr` subcommand: one line of output, or why not.
fn addr(address: IpAddr, prefix: Option<Prefix96>) -> Result<String, String> {
    match (address, prefix) {
        (IpAddr::V4(v4), Some(prefix)) => Ok(prefix.embed(v4).to_string()),
        (IpAddr::V4(v4), None) => Err(format!(
            "to embed {v4} give the prefix, e.g. `kracauer addr {v4} --prefix 2001:db8:64::/96`"
        )),
        (IpAddr::V6(v6), Some(prefix)) => prefix
            .extract(v6)
            .map(|v4| v4.to_string())
            .ok_or_else(|| format!("{v6} is not inside the prefix {prefix}")),
        (IpAddr::V6(v6), None) => Ok(low32(v6).to_string()),
    }
}
