//! `kracauer addr` as an operator runs it: the real binary, its output and exit status.

use std::process::{Command, Output};

fn kracauer(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_kracauer"))
        .args(args)
        .output()
        .expect("run kracauer")
}

fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

#[test]
fn ipv6_form_decodes_to_the_client_ipv4() {
    let o = kracauer(&["addr", "2001:db8:64::c633:6402"]);
    assert!(o.status.success(), "{}", stderr(&o));
    assert_eq!(stdout(&o), "198.51.100.2\n");
}

#[test]
fn ipv4_embeds_into_the_prefix() {
    let o = kracauer(&["addr", "198.51.100.2", "--prefix", "2001:db8:64::/96"]);
    assert!(o.status.success(), "{}", stderr(&o));
    assert_eq!(stdout(&o), "2001:db8:64::c633:6402\n");
}

#[test]
fn decoding_checks_the_prefix_when_given() {
    let o = kracauer(&[
        "addr",
        "2001:db8:65::c633:6402",
        "--prefix",
        "2001:db8:64::/96",
    ]);
    assert_eq!(o.status.code(), Some(2));
    assert!(
        stderr(&o).contains("not inside the prefix 2001:db8:64::/96"),
        "{}",
        stderr(&o)
    );
    assert!(stdout(&o).is_empty());
}

#[test]
fn ipv4_without_prefix_is_refused_with_an_example() {
    let o = kracauer(&["addr", "198.51.100.2"]);
    assert_eq!(o.status.code(), Some(2));
    assert!(
        stderr(&o).contains("--prefix 2001:db8:64::/96"),
        "{}",
        stderr(&o)
    );
}

#[test]
fn bad_prefix_is_refused_with_the_reason() {
    let o = kracauer(&["addr", "198.51.100.2", "--prefix", "2001:db8:64::/64"]);
    assert!(!o.status.success());
    assert!(stderr(&o).contains("must be /96"), "{}", stderr(&o));
    let o = kracauer(&["addr", "198.51.100.2", "--prefix", "ff02::/96"]);
    assert!(!o.status.success());
    assert!(stderr(&o).contains("multicast"), "{}", stderr(&o));
}

#[test]
fn garbage_address_is_refused() {
    let o = kracauer(&["addr", "not-an-address"]);
    assert!(!o.status.success());
    assert!(
        stderr(&o).contains("invalid value 'not-an-address'"),
        "{}",
        stderr(&o)
    );
}

#[test]
fn help_names_the_addr_command() {
    let o = kracauer(&["--help"]);
    assert!(o.status.success());
    assert!(stdout(&o).contains("addr"), "{}", stdout(&o));
}
