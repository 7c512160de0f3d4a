//! The keeper's input protocol and the flags it reads from sysfs.

use std::io::Cursor;

use super::*;

#[test]
fn stop_ends_the_keeper_at_once() {
    assert_eq!(ending(Cursor::new("stop\n")), Ending::Stop);
    assert_eq!(ending(Cursor::new("stop")), Ending::Stop);
    assert_eq!(ending(Cursor::new("  stop \n more\n")), Ending::Stop);
}

#[test]
fn the_end_of_the_input_means_the_daemon_is_gone() {
    assert_eq!(ending(Cursor::new("")), Ending::Gone);
}

#[test]
fn other_lines_do_not_end_the_keeper_early() {
    assert_eq!(ending(Cursor::new("stopp\nSTOP\n\nheld\n")), Ending::Gone);
    assert_eq!(ending(Cursor::new("hello\nstop\n")), Ending::Stop);
}

#[test]
fn a_read_error_counts_as_the_daemon_gone() {
    struct Broken;
    impl io::Read for Broken {
        fn read(&mut self, _: &mut [u8]) -> io::Result<usize> {
            Err(io::Error::other("broken pipe"))
        }
    }
    assert_eq!(ending(BufReader::new(Broken)), Ending::Gone);
}

#[test]
fn sysfs_flags_are_read_as_hex() {
    assert_eq!(parse_flags("0x5d01\n").unwrap(), 0x5d01);
    assert_eq!(parse_flags("5901").unwrap(), 0x5901);
    assert!(parse_flags("tun").is_err());
    assert!(parse_flags("").is_err());
}

#[test]
fn no_keeper_without_the_fast_path_or_with_a_zero_grace() {
    assert!(start("kracauer-none", Duration::from_secs(5), false).is_none());
    assert!(start("kracauer-none", Duration::ZERO, true).is_none());
}

#[test]
fn only_the_keeper_of_that_tun_is_recognised_by_its_command_line() {
    let keeper = b"/proc/self/exe\0hold-carrier\0--tun\0kracauer1\0--grace-ms\0\x35000\0";
    assert!(is_keeper_cmdline(keeper, "kracauer1"));
    assert!(!is_keeper_cmdline(keeper, "kracauer2"));
    assert!(!is_keeper_cmdline(keeper, "kracauer"));
    assert!(!is_keeper_cmdline(
        b"/usr/sbin/kracauer\0run\0--config\0/etc/kracauer/kracauer.toml\0",
        "kracauer1"
    ));
    assert!(!is_keeper_cmdline(
        b"sleep\0hold-carrier --tun kracauer1\0",
        "kracauer1"
    ));
    assert!(!is_keeper_cmdline(b"", "kracauer1"));
}

#[test]
fn the_record_lives_beside_the_sysctl_record() {
    let path = record_path("kracauer1");
    let sysctl = crate::sysctl::state_path("kracauer1");
    assert_eq!(path.parent(), sysctl.parent());
    let name = path.file_name().unwrap().to_string_lossy().into_owned();
    assert!(
        name.starts_with("tun-netns") && name.ends_with("-kracauer1.keeper"),
        "{name}"
    );
}
