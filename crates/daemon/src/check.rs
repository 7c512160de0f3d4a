//! `kracauer check`: what a validated configuration will do, printed for the operator.

use std::fmt::Write as _;
use std::path::Path;

use crate::config::Config;

/// The report `kracauer check` prints for a valid configuration.
pub fn report(path: &Path, c: &Config) -> String {
    let mut out = String::new();
    // Writing to a String cannot fail.
    let _ = writeln!(out, "{}: valid", path.display());
    let _ = writeln!(out, "prefix    {}", c.prefix);
    let _ = writeln!(out, "tun       {} (mtu {})", c.tun.name, c.tun.mtu);
    for l in &c.listen {
        let _ = writeln!(
            out,
            "listen    {}  tls {:?}  http {:?}",
            l.address, l.tls, l.http
        );
    }
    if let Some(m) = &c.metrics {
        let _ = writeln!(out, "metrics   http://{}/metrics", m.listen);
    }
    let _ = writeln!(out, "routes");
    for r in &c.routes {
        for h in &r.hosts {
            let remap: Vec<String> = r.ports.iter().map(|(s, b)| format!("{s}->{b}")).collect();
            let _ = write!(out, "  {h:<32} {}", r.backend);
            if !remap.is_empty() {
                let _ = write!(out, "  ports {}", remap.join(" "));
            }
            out.push('\n');
        }
    }
    match c.default_backend {
        Some(b) => {
            let _ = writeln!(out, "  {:<32} {b}", "(any other name)");
        }
        None => {
            let _ = writeln!(out, "  {:<32} refused", "(any other name)");
        }
    }
    out
}
