//! `kracauer-demo` as root: it shows what each backend saw and deletes its namespaces;
//! and it refuses clearly when not root.

use std::process::{Command, Output};

/// The binary under test.
const DEMO: &str = env!("CARGO_BIN_EXE_kracauer-demo");

fn demo() -> Output {
    Command::new(DEMO).output().expect("run kracauer-demo")
}

#[test]
#[ignore = "privileged: needs root and network namespaces (run with --include-ignored)"]
fn demo_shows_each_backend_saw_the_client_and_cleans_up() {
    kracauer_testbed::require_privileged("demo_shows_each_backend_saw_the_client_and_cleans_up");
    let out = demo();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{}\n{text}\n{}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    for url in [
        "https://a.example/",
        "https://b.example/",
        "http://b.example/",
    ] {
        let line = text
            .lines()
            .find(|l| l.starts_with(&format!("{url} ")))
            .unwrap_or_else(|| panic!("no line for {url}:\n{text}"));
        assert!(
            line.contains("saw 2001:db8:64::c633:6402 = 198.51.100.2 port")
                && line.contains("(the client's own port)"),
            "{line}"
        );
    }
    assert!(text.contains("TLS alert unrecognized_name"), "{text}");
    for url in ["h3://a.example/whoami", "h3://b.example/whoami"] {
        let line = text
            .lines()
            .find(|l| l.starts_with(&format!("{url} ")))
            .unwrap_or_else(|| panic!("no line for {url}:\n{text}"));
        assert!(
            line.contains("HTTP/3 backend saw 2001:db8:64::c633:6402 = 198.51.100.2 port")
                && line.contains("(the client's own UDP port)"),
            "{line}"
        );
    }
    assert!(
        text.contains("QUIC CONNECTION_CLOSE unrecognized_name (0x170); no backend contacted"),
        "{text}"
    );
    // Its namespaces are gone: `testbed krc-tbPID-N: ...` names them.
    let tag = text
        .split_whitespace()
        .nth(1)
        .unwrap()
        .trim_end_matches(':')
        .to_owned();
    assert!(tag.starts_with("krc-tb"), "{text}");
    for role in ["client", "router", "a", "b"] {
        assert!(!kracauer_testbed::netns::exists(&format!("{tag}-{role}")));
    }
}

/// A directory of this test's own, deleted on drop.
struct TempDir(std::path::PathBuf);

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

#[test]
#[ignore = "privileged: needs root to drop to nobody (run with --include-ignored)"]
fn demo_refuses_clearly_when_not_root() {
    use std::os::unix::fs::PermissionsExt;

    kracauer_testbed::require_privileged_and("demo_refuses_clearly_when_not_root", &["setpriv"]);
    // nobody may not reach the binary where cargo built it (a clone under /root): run a
    // copy from a directory anyone can read.
    let dir = TempDir(std::env::temp_dir().join(format!("krc-demo-{}", std::process::id())));
    std::fs::create_dir_all(&dir.0).unwrap();
    std::fs::set_permissions(&dir.0, std::fs::Permissions::from_mode(0o755)).unwrap();
    let binary = dir.0.join("kracauer-demo");
    std::fs::copy(DEMO, &binary).unwrap();
    std::fs::set_permissions(&binary, std::fs::Permissions::from_mode(0o755)).unwrap();
    // Root drops to nobody for this one run (setpriv, util-linux).
    let out = Command::new("setpriv")
        .args(["--reuid=65534", "--regid=65534", "--clear-groups"])
        .arg(&binary)
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    assert!(stderr.contains("kracauer-demo: needs root"), "{stderr}");
    assert!(out.stdout.is_empty());
}
