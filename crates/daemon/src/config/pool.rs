//! The backend-pool part of the configuration: `backend` as one address or a list of
//! addresses and `{ address, weight, backup }` tables, `hash`, and `[route.health]`
//! (passive failure counting, the optional active check). Errors point at the value
//! written, like every other configuration error.
//!
//! `backend` takes two shapes, so it is read by a small visitor rather than an untagged
//! enum: an untagged enum buffers the value and loses the spans that errors need.

use std::collections::BTreeMap;
use std::fmt;
use std::time::Duration;

use kracauer_core::addr::Prefix96;
use kracauer_core::route::{BackendSpec, HashOn};
use serde::Deserialize;
use serde::de::{self, Deserializer, MapAccess, SeqAccess, Visitor};
use toml::Spanned;

use super::{ConfigError, Listen, Validator};

/// Most backends in one pool: every new connection scores each of them.
pub const MAX_POOL: usize = 256;
/// Passive health default: failures within `fail_timeout` that mark a backend down.
pub const DEFAULT_MAX_FAILS: u32 = 1;
/// Passive health default: the failure window, and how long a backend stays down.
pub const DEFAULT_FAIL_TIMEOUT: Duration = Duration::from_secs(10);
/// Active check default: how long a check connection may take.
pub const DEFAULT_CHECK_TIMEOUT: Duration = Duration::from_secs(2);

/// `[route.health]`, validated.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PoolHealth {
    /// Failed connects within `fail_timeout` that mark a backend down (passive health);
    /// 0 turns passive marking off. A pool of one backend is never marked down
    /// passively: there would be nowhere else to go.
    pub max_fails: u32,
    /// The window failures are counted in, and how long a backend so marked stays down
    /// before real traffic tries it again.
    pub fail_timeout: Duration,
    /// The active check, if configured.
    pub check: Option<ActiveCheck>,
}

impl Default for PoolHealth {
    fn default() -> Self {
        Self {
            max_fails: DEFAULT_MAX_FAILS,
            fail_timeout: DEFAULT_FAIL_TIMEOUT,
            check: None,
        }
    }
}

/// An active check: a TCP connect to each backend from the prefix, every `interval`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ActiveCheck {
    pub interval: Duration,
    /// A check that has not connected by then failed.
    pub timeout: Duration,
    /// The backend port checked.
    pub port: u16,
}

/// `backend = "..."` or `backend = ["...", { address = "...", weight = 2 }, ...]`.
#[derive(Debug)]
pub(super) enum RawBackends {
    One(String),
    Many(Vec<Spanned<RawBackend>>),
}

/// One element of a `backend` list.
#[derive(Debug)]
pub(super) enum RawBackend {
    Address(String),
    Table(RawBackendTable),
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawBackendTable {
    address: Spanned<String>,
    weight: Option<Spanned<u32>>,
    backup: Option<bool>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawHealth {
    max_fails: Option<Spanned<u32>>,
    fail_timeout: Option<Spanned<String>>,
    check_interval: Option<Spanned<String>>,
    check_timeout: Option<Spanned<String>>,
    check_port: Option<Spanned<u16>>,
}

impl<'de> Deserialize<'de> for RawBackends {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = RawBackends;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("an IPv6 address, or a list of addresses and { address = \"...\", weight = N, backup = true } tables")
            }
            fn visit_str<E: de::Error>(self, s: &str) -> Result<RawBackends, E> {
                Ok(RawBackends::One(s.to_owned()))
            }
            fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<RawBackends, A::Error> {
                let mut list = Vec::new();
                while let Some(b) = seq.next_element()? {
                    list.push(b);
                }
                Ok(RawBackends::Many(list))
            }
        }
        d.deserialize_any(V)
    }
}

impl<'de> Deserialize<'de> for RawBackend {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = RawBackend;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(
                    "an IPv6 address or a { address = \"...\", weight = N, backup = true } table",
                )
            }
            fn visit_str<E: de::Error>(self, s: &str) -> Result<RawBackend, E> {
                Ok(RawBackend::Address(s.to_owned()))
            }
            fn visit_map<A: MapAccess<'de>>(self, map: A) -> Result<RawBackend, A::Error> {
                RawBackendTable::deserialize(de::value::MapAccessDeserializer::new(map))
                    .map(RawBackend::Table)
            }
        }
        d.deserialize_any(V)
    }
}

impl Validator<'_> {
    /// The backends of `raw` (one address or a list), each checked, none twice.
    pub(super) fn backends(
        &self,
        raw: &Spanned<RawBackends>,
        prefix: Prefix96,
        key: &str,
    ) -> Result<Vec<BackendSpec>, ConfigError> {
        let spanned = |s: &str, span: std::ops::Range<usize>| Spanned::new(span, s.to_owned());
        let list = match raw.get_ref() {
            RawBackends::One(a) => {
                let address = self.backend(&spanned(a, raw.span()), prefix, key)?;
                return Ok(vec![BackendSpec::new(address)]);
            }
            RawBackends::Many(list) => list,
        };
        if list.is_empty() {
            return self.err(
                raw.span(),
                format!("{key}: the list is empty; give at least one IPv6 address, e.g. [\"2001:db8:1::2\", \"2001:db8:1::3\"]"),
            );
        }
        if list.len() > MAX_POOL {
            return self.err(
                raw.span(),
                format!(
                    "{key}: {} backends; a pool takes at most {MAX_POOL}",
                    list.len()
                ),
            );
        }
        let mut out: Vec<BackendSpec> = Vec::with_capacity(list.len());
        for b in list {
            let (spec, span) = match b.get_ref() {
                RawBackend::Address(a) => {
                    let address = self.backend(&spanned(a, b.span()), prefix, key)?;
                    (BackendSpec::new(address), b.span())
                }
                RawBackend::Table(t) => {
                    let address = self.backend(&t.address, prefix, key)?;
                    let weight = match &t.weight {
                        Some(w) if *w.get_ref() == 0 => {
                            return self.err(
                                w.span(),
                                format!("{key}: weight 0 would never be chosen; give 1 or more, or mark the backend `backup = true`"),
                            );
                        }
                        Some(w) => *w.get_ref(),
                        None => 1,
                    };
                    let backup = t.backup.unwrap_or(false);
                    (
                        BackendSpec {
                            address,
                            weight,
                            backup,
                        },
                        t.address.span(),
                    )
                }
            };
            if out.iter().any(|o| o.address == spec.address) {
                return self.err(
                    span,
                    format!("{key}: {} is listed twice in this pool", spec.address),
                );
            }
            out.push(spec);
        }
        if out.iter().all(|b| b.backup) {
            return self.err(
                raw.span(),
                format!("{key}: every backend is a backup; at least one must be a primary"),
            );
        }
        Ok(out)
    }

    /// `hash = "address" | "tuple"` (default `address`).
    pub(super) fn hash(&self, raw: Option<&Spanned<String>>) -> Result<HashOn, ConfigError> {
        match raw.map(|h| (h.get_ref().as_str(), h.span())) {
            None | Some(("address", _)) => Ok(HashOn::Address),
            Some(("tuple", _)) => Ok(HashOn::Tuple),
            Some((other, span)) => self.err(
                span,
                format!("route.hash: {other:?} is not a placement; give \"address\" (one backend per client address) or \"tuple\" (per connection)"),
            ),
        }
    }

    /// `[route.health]` of a route with port remaps `ports`; the default check port is
    /// what the first `[[listen]]` port maps to.
    pub(super) fn health(
        &self,
        raw: Option<&RawHealth>,
        ports: &BTreeMap<u16, u16>,
        listen: &[Listen],
    ) -> Result<PoolHealth, ConfigError> {
        let d = PoolHealth::default();
        let Some(raw) = raw else { return Ok(d) };
        let max_fails = raw.max_fails.as_ref().map_or(d.max_fails, |m| *m.get_ref());
        let fail_timeout = self
            .duration(raw.fail_timeout.as_ref(), "route.health.fail_timeout")?
            .unwrap_or(d.fail_timeout);
        let interval = self.duration(raw.check_interval.as_ref(), "route.health.check_interval")?;
        let timeout = self.duration(raw.check_timeout.as_ref(), "route.health.check_timeout")?;
        let Some(interval) = interval else {
            let stray = raw
                .check_timeout
                .as_ref()
                .map(|t| ("check_timeout", t.span()))
                .or(raw.check_port.as_ref().map(|p| ("check_port", p.span())));
            if let Some((key, span)) = stray {
                return self.err(
                    span,
                    format!("route.health.{key}: active checks are off without `check_interval`; add e.g. check_interval = \"5s\""),
                );
            }
            return Ok(PoolHealth {
                max_fails,
                fail_timeout,
                check: None,
            });
        };
        let port = match &raw.check_port {
            Some(p) if *p.get_ref() == 0 => {
                return self.err(
                    p.span(),
                    "route.health.check_port: port 0 is not a port (1 to 65535)",
                );
            }
            Some(p) => *p.get_ref(),
            None => {
                let first = listen
                    .first()
                    .and_then(|l| l.tls.first().or(l.http.first()))
                    .copied()
                    .unwrap_or(443);
                ports.get(&first).copied().unwrap_or(first)
            }
        };
        Ok(PoolHealth {
            max_fails,
            fail_timeout,
            check: Some(ActiveCheck {
                interval,
                timeout: timeout.unwrap_or(DEFAULT_CHECK_TIMEOUT.min(interval)),
                port,
            }),
        })
    }

    /// A duration longer than zero, written like `"5s"`, or `None` if not given.
    fn duration(
        &self,
        raw: Option<&Spanned<String>>,
        key: &str,
    ) -> Result<Option<Duration>, ConfigError> {
        let Some(v) = raw else { return Ok(None) };
        match humantime::parse_duration(v.get_ref()) {
            Ok(t) if !t.is_zero() => Ok(Some(t)),
            Ok(_) => self.err(v.span(), format!("{key}: must be longer than zero")),
            Err(e) => self.err(
                v.span(),
                format!(
                    "{key}: {:?} is not a duration ({e}); write e.g. \"5s\" or \"250ms\"",
                    v.get_ref()
                ),
            ),
        }
    }
}

#[cfg(test)]
#[path = "pool_tests.rs"]
mod tests;
