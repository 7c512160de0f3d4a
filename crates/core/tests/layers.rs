//! The core's layers, checked: every module names only the modules below it
//! (docs/architecture.md, "Rules that keep it so").
//!
//! `base`, `time`, `name` and `addr` are leaves; then `wire`; then `xlat`, `offload`,
//! `steer`, `tcp`, `peek` and `route`, which use only what is below them (and `quic`,
//! which reads its hello with `peek`); then `flow`; then `engine`. A `crate::` path in a module's source that points sideways or upwards
//! fails this test, so a cycle cannot creep back in.

use std::collections::BTreeSet;
use std::fs;
use std::path::{Path, PathBuf};

/// Each module and the modules it may use.
const LAYERS: &[(&str, &[&str])] = &[
    ("base", &[]),
    ("time", &[]),
    ("name", &[]),
    ("addr", &[]),
    ("wire", &["base"]),
    ("xlat", &["base", "wire"]),
    ("offload", &["base", "wire"]),
    ("steer", &["base", "wire"]),
    ("tcp", &["base", "wire", "time"]),
    ("peek", &["base", "name"]),
    ("quic", &["base", "wire", "peek", "name"]),
    ("route", &["base", "name", "addr"]),
    (
        "flow",
        &[
            "base", "wire", "time", "name", "addr", "tcp", "peek", "route", "quic",
        ],
    ),
    (
        "engine",
        &[
            "base", "wire", "time", "name", "addr", "xlat", "tcp", "peek", "route", "quic", "flow",
        ],
    ),
];

fn sources(module: &str) -> Vec<PathBuf> {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let file = src.join(format!("{module}.rs"));
    let dir = src.join(module);
    let mut out = Vec::new();
    if file.is_file() {
        out.push(file);
    }
    let mut stack = vec![dir];
    while let Some(d) = stack.pop() {
        let Ok(entries) = fs::read_dir(&d) else {
            continue;
        };
        for e in entries.flatten() {
            let p = e.path();
            if p.is_dir() {
                stack.push(p);
            } else if p.extension().is_some_and(|x| x == "rs") {
                out.push(p);
            }
        }
    }
    out
}

/// The top-level modules a source text names as `crate::NAME`.
fn named(text: &str) -> BTreeSet<String> {
    let mut out = BTreeSet::new();
    let mut rest = text;
    while let Some(at) = rest.find("crate::") {
        rest = &rest[at + "crate::".len()..];
        let name: String = rest
            .chars()
            .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
            .collect();
        if !name.is_empty() {
            out.insert(name);
        }
    }
    out
}

#[test]
fn every_module_uses_only_the_layers_below_it() {
    let mut wrong = Vec::new();
    for (module, allowed) in LAYERS {
        let files = sources(module);
        assert!(!files.is_empty(), "no sources for module {module}");
        for f in files {
            let text = fs::read_to_string(&f).unwrap();
            for used in named(&text) {
                if used != *module && !allowed.contains(&used.as_str()) {
                    wrong.push(format!("{} uses crate::{used}", f.display()));
                }
            }
        }
    }
    assert!(wrong.is_empty(), "layering broken:\n{}", wrong.join("\n"));
}

#[test]
fn every_module_of_the_crate_has_a_layer() {
    let lib = fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("src/lib.rs")).unwrap();
    for line in lib.lines() {
        if let Some(m) = line
            .trim()
            .strip_prefix("pub mod ")
            .and_then(|m| m.strip_suffix(';'))
        {
            assert!(
                LAYERS.iter().any(|(name, _)| *name == m),
                "module {m} has no place in LAYERS"
            );
        }
    }
}

#[test]
fn a_module_naming_a_layer_above_is_caught() {
    assert!(named("use crate::engine::Engine;").contains("engine"));
    assert!(named("x: crate::flow::Flow, y: crate::base::ClientKey").contains("base"));
    assert!(named("no paths here").is_empty());
}
