//! Reading a Prometheus text body the way the tests need: every sample of a family by
//! label set, the one sample of a family, and one drop reason's count.

/// The value of every sample of `name` in a Prometheus text body, by label set.
pub fn samples<'a>(body: &'a str, name: &str) -> Vec<(&'a str, u64)> {
    body.lines()
        .filter(|l| !l.starts_with('#'))
        .filter_map(|l| {
            let (key, value) = l.rsplit_once(' ')?;
            let labels = key.strip_prefix(name)?;
            (labels.is_empty() || labels.starts_with('{'))
                .then(|| (labels, value.parse().ok()))
                .and_then(|(k, v)| Some((k, v?)))
        })
        .collect()
}

/// The value of `name`'s one sample; panics, showing the body, if there is not exactly one.
pub fn one(body: &str, name: &str) -> u64 {
    let s = samples(body, name);
    assert_eq!(s.len(), 1, "{name} in:\n{body}");
    s[0].1
}

/// `kracauer_drops_total` for `reason`; panics, showing the body, if it is missing.
pub fn drops(body: &str, reason: &str) -> u64 {
    samples(body, "kracauer_drops_total")
        .iter()
        .find(|(l, _)| l.contains(&format!("reason=\"{reason}\"")))
        .map_or_else(|| panic!("no drop reason {reason}:\n{body}"), |s| s.1)
}
