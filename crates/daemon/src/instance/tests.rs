//! The instance identifiers and the record: what collides, what a crashed run's record
//! counts for, and the record's text round trip.

use std::path::Path;

use super::*;

fn config(text: &str) -> Config {
    crate::config::parse(text, Path::new("k.toml")).expect("valid")
}

const ONE: &str = r#"instance = 1
prefix = "2001:db8:64::1:0:0/96"
[[listen]]
address = "203.0.113.11"
tls = [443]
[metrics]
listen = "127.0.0.1:9642"
[scale_out]
address = "203.0.113.66"
peers = ["203.0.113.70"]
port = 7471
"#;

const ZERO: &str = r#"prefix = "2001:db8:64::/96"
[[listen]]
address = "203.0.113.10"
tls = [443]
[metrics]
listen = "127.0.0.1:9641"
[scale_out]
address = "203.0.113.66"
peers = ["203.0.113.70"]
"#;

fn temp_dir(tag: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("krc-instance-{tag}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).expect("temp dir");
    d
}

#[test]
fn every_host_identifier_is_derived_from_the_instance_number() {
    assert_eq!(
        Ids::of(0),
        Ids {
            instance: 0,
            protocol: 107,
            table: 27506,
            divert_pref: 500
        }
    );
    let three = Ids::of(3);
    assert_eq!(
        (three.protocol, three.table, three.divert_pref),
        (110, 27509, 503)
    );
    let last = Ids::of(MAX_INSTANCE);
    assert!(last.divert_pref < LOCAL_PREF);
    assert!(Ids::is_kracauer(last.protocol));
    assert!(!Ids::is_kracauer(last.protocol + 1));
    assert!(!Ids::is_kracauer(12)); // BIRD's
    let c = config(ONE);
    assert_eq!(c.instance, 1);
    assert_eq!(c.tun.name, "kracauer1");
    assert_eq!(config(ZERO).tun.name, "kracauer0");
}

#[test]
fn an_instance_number_out_of_range_is_refused_naming_the_range() {
    let e = crate::config::parse(&format!("instance = 64\n{ZERO}"), Path::new("k.toml"))
        .expect_err("out of range")
        .to_string();
    assert!(e.contains("k.toml:1:12"), "{e}");
    assert!(e.contains("give 0 to 63"), "{e}");
}

#[test]
fn two_instances_with_their_own_number_prefix_address_and_metrics_do_not_collide() {
    let running = Record::of(&config(ZERO), Path::new("/etc/kracauer/zero.toml"));
    assert!(
        running
            .collisions(&config(ONE), Path::new("/etc/kracauer/one.toml"))
            .is_empty()
    );
}

#[test]
fn each_shared_identifier_is_named_as_a_collision() {
    let running = Record::of(&config(ZERO), Path::new("/etc/kracauer/zero.toml"));
    let copy = config(ZERO);
    let found = running.collisions(&copy, Path::new("/etc/kracauer/copy.toml"));
    let text = found.join("\n");
    for what in [
        "runs already",
        "TUN device kracauer0",
        "prefix 2001:db8:64::/96",
        "serves 203.0.113.10",
        "metrics on 127.0.0.1:9641",
        "second-chance traffic on 203.0.113.66:7470",
    ] {
        assert!(text.contains(what), "{what} missing from {text}");
    }
    // The running instance's own file, checked before a reload: no collision.
    assert!(
        running
            .collisions(&copy, Path::new("/etc/kracauer/zero.toml"))
            .is_empty()
    );
}

#[test]
fn a_new_tun_name_for_the_running_configuration_is_named_as_taking_a_restart() {
    let path = Path::new("/etc/kracauer/zero.toml");
    let running = Record::of(&config(ZERO), path);
    assert!(running.needs_restart(&config(ZERO), path).is_empty());
    let renamed = config(&format!("{ZERO}[tun]\nname = \"k-new\"\n"));
    let found = running.needs_restart(&renamed, path).join("\n");
    assert!(found.starts_with("[tun] name:"), "{found}");
    assert!(found.contains("\"kracauer0\", not \"k-new\""), "{found}");
    assert!(found.contains("refuses a new name"), "{found}");
    // Another instance's file, or another number: a collision's business, not this.
    assert!(
        running
            .needs_restart(&renamed, Path::new("/etc/kracauer/other.toml"))
            .is_empty()
    );
}

#[test]
fn record_text_round_trips_and_a_foreign_line_is_not_trusted() {
    let r = Record::of(&config(ONE), Path::new("/etc/kracauer/one.toml"));
    assert_eq!(Record::parse(&r.to_text()), Some(r.clone()));
    assert_eq!(
        Record::parse(&format!("{}colour blue\n", r.to_text())),
        None
    );
}

#[test]
fn a_claimed_record_is_seen_running_and_a_released_or_crashed_one_is_not() {
    let dir = temp_dir("claim");
    let zero = config(ZERO);
    let path = Path::new("/etc/kracauer/zero.toml");
    let claim = Claim::take(&zero, path, &dir).expect("claim");
    assert!(held(0, &dir));
    // This process's own record is not listed (it would collide with itself).
    assert!(running(&dir).is_empty());
    // A crash: the lock goes with the process, the file stays and is ignored.
    drop(claim);
    assert!(!held(0, &dir));
    let again = Claim::take(&zero, path, &dir).expect("claim after a crash");
    again.release();
    assert!(
        std::fs::read_dir(&dir).expect("dir").next().is_none(),
        "removed"
    );
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn a_second_claim_of_a_held_instance_is_refused() {
    let dir = temp_dir("twice");
    let zero = config(ZERO);
    let path = Path::new("/etc/kracauer/zero.toml");
    let first = Claim::take(&zero, path, &dir).expect("claim");
    let e = Claim::take(&zero, path, &dir).expect_err("held");
    assert!(e.to_string().contains("instance 0 runs already"), "{e}");
    first.release();
    let _ = std::fs::remove_dir_all(&dir);
}
