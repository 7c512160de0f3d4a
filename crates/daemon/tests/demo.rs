//! `kracauer demo` in the installed binary: hidden, and it says how to run the demo (its
//! own crate, `crates/demo`, which links the testbed).

use std::process::{Command, Output};

/// The binary under test.
const KRACAUER: &str = env!("CARGO_BIN_EXE_kracauer");

fn kracauer(args: &[&str]) -> Output {
    Command::new(KRACAUER)
        .args(args)
        .output()
        .expect("run kracauer")
}

#[test]
fn demo_is_hidden_and_says_how_to_run_the_separate_demo() {
    let help = String::from_utf8_lossy(&kracauer(&["--help"]).stdout).into_owned();
    assert!(help.contains("addr") && !help.contains("demo"), "{help}");
    let out = kracauer(&["demo"]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    assert!(stderr.contains("cargo run -p kracauer-demo"), "{stderr}");
    assert!(out.stdout.is_empty());
}
