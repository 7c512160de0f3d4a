//! Active checks: a TCP connect from the daemon's own stack to a backend's port, at an
//! interval, one tokio task per backend.
//!
//! The source is [`source`]: the prefix's address for `0.0.0.1`, an IPv4 address no
//! client can have, so the backend's firewall sees checks coming from the prefix it
//! already admits, yet tells them apart from any client. The address is assigned to no
//! interface: the socket binds it with `IPV6_FREEBIND`, and the host set-up routes it
//! `local` (`netlink.rs`), so the answers reach this socket rather than the TUN the rest
//! of the /96 goes to. `IPV6_FREEBIND` was chosen over `IPV6_TRANSPARENT` because it
//! needs no policy routing and no capability beyond the daemon's own (it binds, it does
//! not intercept). The socket is made with socket2 (the only way to set the option before
//! `bind` without `unsafe`) and handed to tokio for the connect and its timeout.

use std::io;
use std::net::{Ipv4Addr, Ipv6Addr, SocketAddr, SocketAddrV6};

use kracauer_core::addr::Prefix96;
use socket2::{Domain, Protocol, Socket, Type};
use tokio::sync::mpsc::UnboundedSender;
use tokio::task::JoinHandle;
use tokio::time::{MissedTickBehavior, interval, timeout};

use super::Target;

/// The address active checks come from: `prefix` + `0.0.0.1`.
pub fn source(prefix: Prefix96) -> Ipv6Addr {
    prefix.embed(Ipv4Addr::new(0, 0, 0, 1))
}

/// One check's result.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Checked {
    pub route: String,
    pub backend: Ipv6Addr,
    pub ok: bool,
}

/// Connects from `src` to `dst` within `limit`, then closes.
pub async fn probe(src: Ipv6Addr, dst: SocketAddrV6, limit: std::time::Duration) -> io::Result<()> {
    let socket = Socket::new(Domain::IPV6, Type::STREAM, Some(Protocol::TCP))?;
    socket.set_freebind_v6(true)?;
    socket.set_nonblocking(true)?;
    socket.bind(&SocketAddr::V6(SocketAddrV6::new(src, 0, 0, 0)).into())?;
    let socket = tokio::net::TcpSocket::from_std_stream(socket.into());
    match timeout(limit, socket.connect(dst.into())).await {
        Ok(Ok(_stream)) => Ok(()),
        Ok(Err(e)) => Err(e),
        Err(_) => Err(io::ErrorKind::TimedOut.into()),
    }
}

/// The running check tasks; dropping them stops them (a reload starts new ones).
#[derive(Debug, Default)]
pub struct Checks(Vec<JoinHandle<()>>);

impl Drop for Checks {
    fn drop(&mut self) {
        for task in &self.0 {
            task.abort();
        }
    }
}

/// Starts a check task for every target on the current runtime, each reporting to
/// `results`.
pub fn spawn(targets: Vec<Target>, src: Ipv6Addr, results: &UnboundedSender<Checked>) -> Checks {
    Checks(
        targets
            .into_iter()
            .map(|t| {
                let results = results.clone();
                tokio::spawn(async move {
                    let mut tick = interval(t.check.interval);
                    tick.set_missed_tick_behavior(MissedTickBehavior::Delay);
                    let dst = SocketAddrV6::new(t.backend, t.check.port, 0, 0);
                    loop {
                        tick.tick().await;
                        let ok = match probe(src, dst, t.check.timeout).await {
                            Ok(()) => true,
                            Err(e) => {
                                tracing::debug!(route = %t.route, backend = %dst, "check failed: {e}");
                                false
                            }
                        };
                        let checked = Checked {
                            route: t.route.clone(),
                            backend: t.backend,
                            ok,
                        };
                        if results.send(checked).is_err() {
                            return;
                        }
                    }
                })
            })
            .collect(),
    )
}
