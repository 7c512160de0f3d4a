//! `kracauer check`: what a validated configuration will do, printed for the operator.

use std::fmt::Write as _;
use std::path::Path;

use kracauer_core::route::{HashOn, Pool, RouteTable};

use crate::config::{AccessTarget, Config, LogFormat};

/// The report `kracauer check` prints for a valid configuration: its settings, what
/// `kracauer run` would change on this host ([`crate::host::preview`]), then the resolved
/// route table (normalised names, sorted, each with its backend and remapped ports) and
/// what happens to any other name.
pub fn report(path: &Path, c: &Config, routes: &RouteTable) -> String {
    report_with_host(path, c, routes, &host_changes(c))
}

/// What the host set-up would change, read from this host; or why it cannot be told.
pub fn host_changes(c: &Config) -> Result<Vec<String>, String> {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| e.to_string())?;
    rt.block_on(crate::host::preview(c))
        .map_err(|e| e.to_string())
}

/// [`report`] with the host's changes given.
pub fn report_with_host(
    path: &Path,
    c: &Config,
    routes: &RouteTable,
    host: &Result<Vec<String>, String>,
) -> String {
    let mut out = String::new();
    // Writing to a String cannot fail.
    let _ = writeln!(out, "{}: valid", path.display());
    let _ = writeln!(out, "prefix    {}", c.prefix);
    let workers = c
        .tun
        .workers
        .map_or_else(|| "one per CPU".to_owned(), |w| w.to_string());
    let _ = writeln!(
        out,
        "tun       {} (mtu {}, offloads {}, workers {workers})",
        c.tun.name,
        c.tun.mtu,
        if c.tun.offload { "on" } else { "off" }
    );
    let _ = writeln!(out, "fastpath  {}", crate::fastpath::expected(&c.tun));
    let _ = writeln!(out, "grace     {}", restart_grace(&c.tun));
    for l in &c.listen {
        let _ = writeln!(
            out,
            "listen    {}  tls {:?}  http {:?}  quic {:?}",
            l.address, l.tls, l.http, l.quic
        );
    }
    if let Some(m) = &c.metrics {
        let _ = writeln!(out, "metrics   http://{}/metrics", m.listen);
    }
    let access = match &c.log.access {
        AccessTarget::Stderr => "stderr".to_owned(),
        AccessTarget::File(p) => format!("file {} (reopened on SIGUSR1)", p.display()),
        AccessTarget::Off => "off".to_owned(),
    };
    let format = match c.log.format {
        LogFormat::Text => "text",
        LogFormat::Json => "json",
    };
    let _ = writeln!(
        out,
        "log       access {access}, {format}, queue {}; level {} (RUST_LOG and -v come first)",
        c.log.queue,
        c.log.level.as_deref().unwrap_or("info")
    );
    match host {
        Ok(lines) => {
            let _ = writeln!(
                out,
                "host      `kracauer run` changes, undoing it at exit (after a crash, at the next start):"
            );
            for l in lines {
                let _ = writeln!(out, "  {l}");
            }
        }
        Err(e) => {
            let _ = writeln!(
                out,
                "host      cannot tell what `kracauer run` changes here: {e}"
            );
        }
    }
    let _ = writeln!(out, "routes");
    for e in routes.entries() {
        let name = if e.is_wildcard() {
            format!("*.{}", e.name())
        } else {
            e.name().to_owned()
        };
        let route = e.route();
        let _ = write!(out, "  {name:<32} {}", backends(route.pool()));
        let remap: Vec<String> = route
            .port_map()
            .iter()
            .map(|(s, b)| format!("{s}->{b}"))
            .collect();
        if !remap.is_empty() {
            let _ = write!(out, "  ports {}", remap.join(" "));
        }
        out.push('\n');
    }
    match routes.default_route() {
        Some(d) => {
            let _ = writeln!(out, "  {:<32} {}", "(any other name)", backends(d.pool()));
        }
        None => {
            let _ = writeln!(out, "  {:<32} refused", "(any other name)");
        }
    }
    out
}

/// `2001:db8:1::2` for one backend; for a pool every backend with its weight and role,
/// and `hash tuple` when connections rather than addresses are placed.
fn backends(pool: &Pool) -> String {
    let list: Vec<String> = pool
        .backends()
        .iter()
        .map(|b| {
            let mut s = b.address().to_string();
            if b.weight() != 1 {
                s.push_str(&format!(" weight {}", b.weight()));
            }
            if b.is_backup() {
                s.push_str(" backup");
            }
            s
        })
        .collect();
    let mut out = list.join(", ");
    if pool.hash_on() == HashOn::Tuple {
        out.push_str("  hash tuple");
    }
    out
}

/// What `[tun] restart_grace` does, for the report.
fn restart_grace(tun: &crate::config::Tun) -> String {
    if tun.restart_grace.is_zero() {
        return "none: a crash takes the TUN's carrier at once ([tun] restart_grace = \"0s\")"
            .to_owned();
    }
    format!(
        "{}: with the fast path, a crash keeps the TUN's carrier on that long for a restart ([tun] restart_grace)",
        humantime::format_duration(tun.restart_grace)
    )
}
