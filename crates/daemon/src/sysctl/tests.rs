//! The sysctl plan for each kind of kernel and host, and putting values back: at exit,
//! after a crash, and never over what the operator changed since.

use super::*;

fn facts(force_forwarding: bool) -> Facts {
    Facts {
        tun: "kracauer0".into(),
        ipv4_links: vec!["eth0".into()],
        ipv6_links: vec!["eth1.100".into()],
        force_forwarding,
        ra_links: vec![
            ("eth0".into(), "1".into()),
            ("eth2".into(), "2".into()),
            ("eth3".into(), "0".into()),
        ],
    }
}

fn names(p: &SysctlPlan) -> Vec<String> {
    p.changes
        .iter()
        .map(|c| format!("{}={}", c.name(), c.value))
        .collect()
}

#[test]
fn with_force_forwarding_ipv6_is_scoped_to_the_tun_and_backend_links_and_ras_are_left_alone() {
    let p = plan(&facts(true));
    assert_eq!(
        names(&p),
        [
            "net.ipv4.conf.kracauer0.forwarding=1",
            "net.ipv4.conf.kracauer0.accept_local=1",
            "net.ipv4.conf.kracauer0.rp_filter=0",
            "net.ipv4.conf.eth0.forwarding=1",
            "net.ipv6.conf.kracauer0.force_forwarding=1",
            "net.ipv6.conf.eth1/100.force_forwarding=1",
        ]
    );
    assert!(p.notes.is_empty(), "{:?}", p.notes);
    assert!(
        !names(&p)
            .iter()
            .any(|n| n.contains("ip_forward") || n.contains(".all."))
    );
}

#[test]
fn without_force_forwarding_ra_links_get_accept_ra_2_before_global_ipv6_forwarding() {
    let p = plan(&facts(false));
    let n = names(&p);
    assert_eq!(
        n[4..],
        [
            "net.ipv6.conf.eth0.accept_ra=2",
            "net.ipv6.conf.all.forwarding=1"
        ],
        "accept_ra 2 and 0 are left as they are: {n:?}"
    );
    assert!(
        p.notes
            .iter()
            .any(|n| n.contains("IPv6 forwarding is global")),
        "{:?}",
        p.notes
    );
}

#[test]
fn a_host_without_ipv4_routes_is_told_no_interface_forwards_for_clients() {
    let p = plan(&Facts {
        tun: "krc0".into(),
        force_forwarding: true,
        ..Facts::default()
    });
    assert_eq!(p.changes.len(), 4);
    assert!(
        p.notes[0].starts_with("no IPv4 route outside the TUN"),
        "{:?}",
        p.notes
    );
}

#[test]
fn sysctl_names_write_a_dot_inside_an_interface_name_as_a_slash() {
    assert_eq!(
        sysctl_name("net/ipv4/conf/eth0.100/forwarding"),
        "net.ipv4.conf.eth0/100.forwarding"
    );
}

/// A directory standing in for `/proc/sys`, with `values` (path, value) in it, and a
/// state file path beside it; removed on drop.
struct Root {
    dir: PathBuf,
}

impl Root {
    fn new(test: &str, values: &[(&str, &str)]) -> Self {
        let dir = std::env::temp_dir().join(format!("krc-sysctl-{}-{test}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        for (path, value) in values {
            let p = dir.join("proc").join(path);
            std::fs::create_dir_all(p.parent().unwrap()).unwrap();
            std::fs::write(p, format!("{value}\n")).unwrap();
        }
        Self { dir }
    }
    fn root(&self) -> PathBuf {
        self.dir.join("proc")
    }
    fn state(&self) -> PathBuf {
        self.dir.join("run/kracauer/sysctl.state")
    }
    fn sysctls(&self) -> Sysctls {
        Sysctls::with_root(self.root(), Some(self.state()))
    }
    fn get(&self, path: &str) -> String {
        std::fs::read_to_string(self.root().join(path))
            .unwrap()
            .trim()
            .to_owned()
    }
    fn put(&self, path: &str, value: &str) {
        std::fs::write(self.root().join(path), value).unwrap();
    }
}

impl Drop for Root {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

const FWD: &str = "net/ipv4/conf/eth0/forwarding";
const RA: &str = "net/ipv6/conf/eth0/accept_ra";
const ALL: &str = "net/ipv6/conf/all/forwarding";

#[test]
fn sysctls_put_back_what_they_changed_and_leave_the_rest() {
    let r = Root::new("back", &[(FWD, "0"), (RA, "1")]);
    let mut s = r.sysctls();
    s.set(FWD, "1").unwrap();
    s.set(RA, "1").unwrap();
    assert_eq!(r.get(FWD), "1");
    assert!(r.state().exists(), "recorded before the write");
    assert!(s.restore().is_empty());
    assert_eq!(r.get(FWD), "0");
    assert_eq!(r.get(RA), "1");
    assert!(!r.state().exists(), "a clean exit leaves no state file");
}

#[test]
fn after_a_crash_the_next_start_puts_back_what_the_state_file_records() {
    let r = Root::new("crash", &[(FWD, "0"), (RA, "1"), (ALL, "0")]);
    let mut s = r.sysctls();
    s.set(RA, "2").unwrap();
    s.set(ALL, "1").unwrap();
    s.set(FWD, "1").unwrap();
    // A crash: nothing is put back, the state file stays.
    std::mem::forget(s);
    assert_eq!(
        (r.get(FWD), r.get(RA), r.get(ALL)),
        ("1".into(), "2".into(), "1".into())
    );

    let next = r.sysctls();
    assert_eq!(next.recover().unwrap(), 3);
    assert_eq!(
        (r.get(FWD), r.get(RA), r.get(ALL)),
        ("0".into(), "1".into(), "0".into())
    );
    assert!(!r.state().exists());
    assert_eq!(
        r.sysctls().recover().unwrap(),
        0,
        "nothing left the second time"
    );
}

#[test]
fn a_value_the_operator_changed_since_is_left_alone() {
    let r = Root::new("operator", &[(FWD, "0"), (RA, "1")]);
    let mut s = r.sysctls();
    s.set(FWD, "1").unwrap();
    s.set(RA, "2").unwrap();
    r.put(RA, "0");
    assert!(s.restore().is_empty());
    assert_eq!(r.get(FWD), "0");
    assert_eq!(r.get(RA), "0", "the operator's value stays");
}

#[test]
fn a_state_file_cannot_make_the_daemon_write_outside_the_sysctls() {
    let r = Root::new("outside", &[(FWD, "1")]);
    let victim = r.dir.join("victim");
    std::fs::write(&victim, "1").unwrap();
    std::fs::create_dir_all(r.state().parent().unwrap()).unwrap();
    std::fs::write(
        r.state(),
        format!(
            "{STATE_HEADER}\n# boot {}\n{}\tgone\t1\n{}/../victim\tgone\t1\n{}\t0\t1\n",
            boot_id(),
            victim.display(),
            r.root().display(),
            r.root().join(FWD).display()
        ),
    )
    .unwrap();
    assert_eq!(r.sysctls().recover().unwrap(), 1);
    assert_eq!(std::fs::read_to_string(&victim).unwrap(), "1");
    assert_eq!(r.get(FWD), "0");
}

#[test]
fn sysctl_of_a_missing_device_is_an_error_naming_the_path() {
    let mut s = Sysctls::new(None);
    let e = s
        .set("net/ipv4/conf/krc-none/accept_local", "1")
        .unwrap_err();
    assert!(
        e.to_string()
            .contains("/proc/sys/net/ipv4/conf/krc-none/accept_local"),
        "{e}"
    );
}

#[test]
fn an_optional_change_that_fails_is_no_error() {
    let mut s = Sysctls::new(None);
    assert!(s.apply(&before_up("krc-none")).is_ok());
}

#[test]
fn state_files_of_two_namespaces_differ_and_name_the_tun() {
    let here = state_path("kracauer0");
    assert!(
        here.to_string_lossy().ends_with("-kracauer0.state"),
        "{}",
        here.display()
    );
    let other = std::thread::spawn(|| state_path("kracauer0"))
        .join()
        .unwrap();
    assert_eq!(here, other, "threads of one namespace share it");
}

#[test]
fn a_record_from_an_earlier_boot_is_not_put_back() {
    let r = Root::new("boot", &[(FWD, "0")]);
    let mut s = r.sysctls();
    s.set(FWD, "1").unwrap();
    std::mem::forget(s);
    let text = std::fs::read_to_string(r.state()).unwrap();
    assert!(text.contains(&format!("# boot {}", boot_id())), "{text}");
    std::fs::write(r.state(), text.replace(&boot_id(), "an-earlier-boot")).unwrap();
    assert_eq!(r.sysctls().recover().unwrap(), 0);
    assert_eq!(r.get(FWD), "1", "left as the new boot has it");
    assert!(!r.state().exists());
}
