//! The Kracauer daemon as a library: configuration, the mapping onto the engine, and
//! (on Linux) the TUN driver, netlink set-up, the data-plane runtime and observability.
//!
//! The `kracauer` binary (`main.rs`) is a thin command line over this; the demo
//! (`crates/demo`) and the host set-up tests call into it directly. `unsafe` is
//! denied everywhere but the syscall modules (`steer`, `fastpath`).

#![deny(unsafe_code)]

pub mod accesslog;
pub mod bpfrun;
pub mod check;
pub mod config;
pub mod fastpath;
pub mod health;
pub mod host;
pub mod instance;
pub mod keeper;
pub mod logging;
pub mod metrics;
pub mod netlink;
pub mod notify;
pub mod observe;
pub mod reload;
pub mod routes;
pub mod run;
pub mod runtime;
pub mod secondchance;
pub mod steer;
pub mod sysctl;
pub mod tun;
pub mod upgrade;
pub mod workers;
