//! The daemon log: `tracing` to standard error. Its filter comes from, first match wins:
//!
//! 1. `RUST_LOG`, if set and not empty (`RUST_LOG=debug`, `RUST_LOG=kracauer::netlink=trace`);
//! 2. `-v` on the command line: debug with `-v`, trace with `-vv`;
//! 3. `[log] level` in the configuration file, applied once the file is read
//!    ([`apply_config_level`]);
//! 4. `info`.
//!
//! Until the file is read the filter is `info` (or what 1 and 2 say), so errors reading the
//! file are always shown. The access log is not written through `tracing`: workers hand
//! its lines to a thread of their own ([`crate::accesslog`]).

use std::io::IsTerminal;
use std::sync::OnceLock;

use tracing_subscriber::EnvFilter;
use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::reload;
use tracing_subscriber::util::SubscriberInitExt;

/// What the command line and the environment decided, and the handle that changes the
/// filter once the configuration's `[log] level` is known.
struct Installed {
    /// `Some` when `RUST_LOG` or `-v` chose the filter; the configuration then cannot.
    chosen_by: Option<&'static str>,
    handle: reload::Handle<EnvFilter, tracing_subscriber::Registry>,
}

static INSTALLED: OnceLock<Installed> = OnceLock::new();

/// The level `-v` flags ask for: `None` without any.
fn verbose_level(verbose: u8) -> Option<&'static str> {
    match verbose {
        0 => None,
        1 => Some("debug"),
        _ => Some("trace"),
    }
}

/// The filter before the configuration is read, and who chose it (`RUST_LOG`, `-v`), or
/// `None` for the default `info`.
pub fn initial_filter(rust_log: Option<&str>, verbose: u8) -> (String, Option<&'static str>) {
    match (rust_log.filter(|s| !s.is_empty()), verbose_level(verbose)) {
        (Some(spec), _) => (spec.to_owned(), Some("RUST_LOG")),
        (None, Some(level)) => (level.to_owned(), Some("-v")),
        (None, None) => ("info".to_owned(), None),
    }
}

/// Installs the global subscriber; `verbose` counts `-v` flags.
pub fn init(verbose: u8) {
    let rust_log = std::env::var("RUST_LOG").ok();
    let (spec, chosen_by) = initial_filter(rust_log.as_deref(), verbose);
    let (filter, handle) = reload::Layer::new(EnvFilter::new(spec));
    let fmt = tracing_subscriber::fmt::layer()
        .with_writer(std::io::stderr)
        .with_ansi(std::io::stderr().is_terminal());
    if tracing_subscriber::registry()
        .with(filter)
        .with(fmt)
        .try_init()
        .is_ok()
    {
        let _ = INSTALLED.set(Installed { chosen_by, handle });
    }
}

/// Applies the configuration's `[log] level`, unless `RUST_LOG` or `-v` chose the filter
/// (then it says so at debug level). Without a level in the file nothing changes.
pub fn apply_config_level(level: Option<&str>) {
    let (Some(installed), Some(level)) = (INSTALLED.get(), level) else {
        return;
    };
    if let Some(who) = installed.chosen_by {
        tracing::debug!("log: [log] level {level:?} ignored: {who} chose the filter");
        return;
    }
    match filter(level) {
        Ok(f) => {
            if let Err(e) = installed.handle.reload(f) {
                tracing::warn!("log: cannot apply [log] level {level:?}: {e}");
            }
        }
        Err(e) => tracing::warn!("log: [log] level {level:?}: {e}"),
    }
}

/// The filter for a `[log] level`: a level (`error`, `warn`, `info`, `debug`, `trace`,
/// `off`), or comma-separated directives each of which is a level or `target=level`
/// (`"info,kracauer::netlink=debug"`). Stricter than `RUST_LOG`, which takes any word as
/// a target: in a file, `level = "inf"` is a typo, not a target.
pub fn filter(spec: &str) -> Result<EnvFilter, String> {
    const LEVELS: [&str; 6] = ["off", "error", "warn", "info", "debug", "trace"];
    if spec.trim().is_empty() {
        return Err("it is empty".to_owned());
    }
    for part in spec.split(',').map(str::trim) {
        let level = match part.split_once('=') {
            Some((target, level)) => {
                let ok_target = !target.is_empty()
                    && target
                        .chars()
                        .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == ':');
                if !ok_target {
                    return Err(format!("{target:?} is not a module path"));
                }
                level
            }
            None => part,
        };
        if !LEVELS.contains(&level.to_ascii_lowercase().as_str()) {
            return Err(format!("{level:?} is not a level"));
        }
    }
    EnvFilter::builder().parse(spec).map_err(|e| e.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rust_log_beats_v_which_beats_the_default() {
        assert_eq!(
            initial_filter(Some("warn"), 2),
            ("warn".to_owned(), Some("RUST_LOG"))
        );
        assert_eq!(
            initial_filter(Some(""), 1),
            ("debug".to_owned(), Some("-v"))
        );
        assert_eq!(initial_filter(None, 2), ("trace".to_owned(), Some("-v")));
        assert_eq!(initial_filter(None, 0), ("info".to_owned(), None));
    }

    #[test]
    fn config_level_takes_levels_and_target_directives_but_not_typos() {
        assert!(filter("debug").is_ok());
        assert!(filter("WARN").is_ok());
        assert!(filter("info,kracauer::netlink=debug").is_ok());
        assert!(
            filter("inf")
                .unwrap_err()
                .contains("\"inf\" is not a level")
        );
        assert!(filter("kracauer=loud").is_err());
        assert!(filter("=debug").is_err());
        assert!(filter(" ").is_err());
    }
}
