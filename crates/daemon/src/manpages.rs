//! `kracauer manpages DIR`: kracauer(8) and one page per subcommand (kracauer-run(8),
//! kracauer-check(8), kracauer-addr(8)), generated with clap_mangen from the command
//! line's own definition, so a page cannot drift from the binary it describes. The
//! package build (`packaging/build-deb`) runs it; kracauer.toml(5) is written by hand
//! (`packaging/kracauer.toml.5`).

use std::io;
use std::path::{Path, PathBuf};

use clap_mangen::Man;

/// What kracauer(8) says beyond the options and subcommands clap knows of.
const MORE: &str = r#".SH FILES
.TP
.I /etc/kracauer/kracauer.toml
The configuration read by the packaged service; see
.BR kracauer.toml (5).
.TP
.I /usr/lib/systemd/system/kracauer.service
The systemd unit: Type=notify, least privilege (CAP_NET_ADMIN and CAP_BPF, a dynamic
user). The package installs it disabled: edit the configuration, check it, then
.BR "systemctl enable \-\-now kracauer" .
.SH SIGNALS
.TP
.B SIGHUP
Reload the configuration. The whole file is validated first; an invalid one changes
nothing. Routes, \fBdefault_backend\fR, \fB[timeouts]\fR and \fB[limits]\fR (all but
\fBmax_flows\fR) apply to the running workers; \fB[[listen]]\fR is set up anew
(connections on a removed address or port end, the others go on), \fB[metrics]\fR
moves and a new \fBprefix\fR is taken by new connections (the others keep theirs).
A new \fB[tun] mtu\fR is set on the device. \fBlimits.max_flows\fR and \fB[log]\fR
take SIGUSR2 or a restart, the rest of \fB[tun]\fR a restart; the log says so.
.TP
.B SIGUSR2
Live upgrade: start the binary now at the path this one was started from, hand it every
connection, the TUN queues and the host set\-up, and exit once it is ready. It reads the
configuration as a reload would (and applies \fBlimits.max_flows\fR and \fB[log]\fR); if it fails, this
process serves on and logs why. Under systemd the new process becomes the main PID.
.TP
.BR SIGINT ", " SIGTERM
Stop: undo every host change (routes, rules, sysctls) and exit 0.
.SH "EXIT STATUS"
0 on success; 1 when the configuration is invalid, the host set\-up fails or the data
plane stops; 2 for a usage error.
.SH ENVIRONMENT
.TP
.B RUST_LOG
The log filter (e.g. \fBdebug\fR, or \fBkracauer::access=off\fR to silence the access
log); it wins over \fB\-v\fR.
.TP
.B NOTIFY_SOCKET
Set by systemd for a Type=notify service: \fBkracauer run\fR sends READY=1 once the host
is set up, RELOADING=1 and READY=1 around a reload, STOPPING=1 when it stops, and on a
live upgrade MAINPID= of the new process.
.SH "SEE ALSO"
.BR kracauer.toml (5),
.BR kracauer\-run (8),
.BR kracauer\-check (8),
.BR kracauer\-addr (8),
.BR systemd.exec (5),
.BR ip (8).
The operator guide:
.IR /usr/share/doc/kracauer/operator\-guide.md .
"#;

/// What each subcommand's page says at its end.
const SEE_ALSO: &str = ".SH \"SEE ALSO\"\n.BR kracauer (8),\n.BR kracauer.toml (5).\n";

/// Writes the pages into `dir` (which must exist); returns their paths.
pub fn write(cmd: clap::Command, dir: &Path) -> io::Result<Vec<PathBuf>> {
    let mut cmd = cmd.disable_help_subcommand(true);
    cmd.build();
    let mut written = Vec::new();

    let man = page(cmd.clone());
    let mut out = Vec::new();
    man.render_title(&mut out)?;
    man.render_name_section(&mut out)?;
    man.render_synopsis_section(&mut out)?;
    man.render_description_section(&mut out)?;
    man.render_options_section(&mut out)?;
    man.render_subcommands_section(&mut out)?;
    out.extend_from_slice(MORE.as_bytes());
    man.render_version_section(&mut out)?;
    written.push(save(dir, &man, &out)?);

    for sub in cmd.get_subcommands().filter(|s| !s.is_hide_set()) {
        let man = page(sub.clone());
        let mut out = Vec::new();
        man.render(&mut out)?;
        out.extend_from_slice(SEE_ALSO.as_bytes());
        written.push(save(dir, &man, &out)?);
    }
    Ok(written)
}

fn page(cmd: clap::Command) -> Man {
    Man::new(cmd)
        .section("8")
        .date(env!("KRACAUER_COMMIT_DATE"))
        .source(concat!("kracauer ", env!("CARGO_PKG_VERSION")))
        .manual("System Administration")
}

fn save(dir: &Path, man: &Man, text: &[u8]) -> io::Result<PathBuf> {
    let path = dir.join(man.get_filename());
    std::fs::write(&path, text)?;
    Ok(path)
}
