//! Second chance between scale-out instances (docs/scale-out.md, "Rebalancing"): the
//! daemon's half. When the upstream router's ECMP moves a running flow to an instance
//! that does not hold it, that instance's engine gives the client's segment back as
//! [`Verdict::SecondChance`](kracauer_core::engine::Verdict::SecondChance) instead of
//! resetting it, and the worker sends it, untouched, to every peer of `[scale_out]`. The
//! peer whose engine holds the flow handles it as if it had come from its own TUN; the
//! others answer "not held", and when every peer has, the sender resets the segment as
//! it would have without second chance.
//!
//! Between instances, one UDP datagram per segment (and per peer), from and to
//! `[scale_out] address` and `port`:
//!
//! ```text
//! 0..4   magic "KRSC"
//! 4      version (1)
//! 5      kind: 1 a client segment for a flow the sender does not hold,
//!             2 "not held": a segment sent back by a peer that does not hold it either
//! 6..8   zero
//! 8..18  the virtio-net header the sender's TUN gave the packet (zeros: none)
//! 18..   the IPv4 packet, as the client sent it
//! ```
//!
//! Only the client→service direction ever takes this path: a backend's replies route to
//! the instance that holds the flow by its /96.
//!
//! The parts:
//! - [`Link`] (one per worker): sends a segment to every peer, or a "not held" back, in
//!   place in the worker's read buffer (the header goes into the bytes before the
//!   packet: nothing is allocated or copied), and receives what the receiver hands it.
//! - the receiver (`receiver.rs`): a thread on the UDP socket that takes datagrams from
//!   the peers only, checks the header, and hands each segment to the worker that would
//!   own its flow (the steering program's own choice, [`kracauer_core::steer::steer_value`] with the
//!   daemon's key), through that worker's inbox (a datagram socket pair: it wakes the
//!   worker and copies no more than the kernel does). It counts the "not held" answers
//!   and hands a segment no peer holds back to its worker to be reset.
//! - the worker's part of the loop is `runtime/secondchance.rs`.

mod receiver;
#[cfg(test)]
mod tests;

use std::io;
use std::net::{SocketAddr, UdpSocket};
use std::os::unix::net::UnixDatagram;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use kracauer_core::offload;
use kracauer_core::steer::SteerKey;
use rustix::event::{PollFd, PollFlags, Timespec};

use crate::config::ScaleOut;
use crate::tun::Queue;

pub use self::receiver::Receiver;

/// The first bytes of every datagram.
pub const MAGIC: [u8; 4] = *b"KRSC";
/// The format's version.
pub const VERSION: u8 = 1;
/// Bytes before the virtio-net header in a datagram between instances.
pub const HEADER_LEN: usize = 8;
/// Bytes before the packet in a datagram between instances.
pub const PREFIX_LEN: usize = HEADER_LEN + offload::HEADER_LEN;
/// Bytes before the packet in a datagram from the receiver to a worker: kind, peer.
pub const INBOX_PREFIX_LEN: usize = 2 + offload::HEADER_LEN;
/// Largest datagram: a packet of up to 64 KiB and the prefix.
pub const MAX_DATAGRAM: usize = PREFIX_LEN + 65_535;

/// What a datagram between instances carries.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u8)]
pub enum Kind {
    /// A client segment for a flow the sender does not hold.
    Segment = 1,
    /// A segment sent back by a peer that does not hold its flow either.
    NotHeld = 2,
}

/// What the receiver hands a worker.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u8)]
pub enum Task {
    /// A peer's segment, for the engine's second chance.
    Segment = 1,
    /// A segment every peer said it does not hold: to be reset.
    Orphan = 2,
}

/// Writes the header of a `kind` datagram into `into` (its first [`HEADER_LEN`] bytes).
pub fn write_header(into: &mut [u8], kind: Kind) {
    into[..4].copy_from_slice(&MAGIC);
    into[4] = VERSION;
    into[5] = kind as u8;
    into[6] = 0;
    into[7] = 0;
}

/// Why a datagram was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum WireError {
    #[error("shorter than the header")]
    Short,
    #[error("not a second-chance datagram (magic)")]
    Magic,
    #[error("version {0}, not {VERSION}")]
    Version(u8),
    #[error("unknown kind {0}")]
    Kind(u8),
}

/// The kind of the datagram `d`, after checking its header.
pub fn read_header(d: &[u8]) -> Result<Kind, WireError> {
    if d.len() < PREFIX_LEN + 20 {
        return Err(WireError::Short);
    }
    if d[..4] != MAGIC {
        return Err(WireError::Magic);
    }
    if d[4] != VERSION {
        return Err(WireError::Version(d[4]));
    }
    match d[5] {
        1 => Ok(Kind::Segment),
        2 => Ok(Kind::NotHeld),
        k => Err(WireError::Kind(k)),
    }
}

/// The daemon's second-chance counters (all workers and the receiver), for the metrics.
#[derive(Debug, Default)]
pub struct Counters {
    /// Segments sent to a peer (one per peer per segment).
    pub sent: AtomicU64,
    /// Sends that failed (the peer unreachable, a datagram too large, ...).
    pub send_errors: AtomicU64,
    /// Segments received from peers and handed to a worker.
    pub received: AtomicU64,
    /// "Not held" answers sent back to peers.
    pub not_held_sent: AtomicU64,
    /// "Not held" answers received from peers.
    pub not_held_received: AtomicU64,
    /// Segments every peer said it does not hold, handed to their worker to be reset.
    pub orphans: AtomicU64,
    /// Datagrams refused: from an address that is not a peer, with a bad header, or that
    /// a worker's inbox had no room for.
    pub not_peer: AtomicU64,
    pub bad_header: AtomicU64,
    pub inbox_full: AtomicU64,
    /// Segments a worker could not take as they came (a partial checksum or a GSO
    /// super-packet for a worker without TUN offloads).
    pub refused: AtomicU64,
}

impl Counters {
    pub(crate) fn add(c: &AtomicU64, n: u64) {
        c.fetch_add(n, Ordering::Relaxed);
    }

    /// The value of `c`.
    pub fn get(c: &AtomicU64) -> u64 {
        c.load(Ordering::Relaxed)
    }
}

/// The UDP socket for `scale_out`: bound to its address and port, with `SO_REUSEPORT`
/// so that a live upgrade's new process can bind it while the old one still does.
pub fn bind(scale_out: &ScaleOut) -> io::Result<UdpSocket> {
    use socket2::{Domain, Protocol, Socket, Type};
    let addr = scale_out.listen;
    let s = Socket::new(Domain::for_address(addr), Type::DGRAM, Some(Protocol::UDP))?;
    s.set_reuse_port(true)?;
    // Rebalancing comes in bursts; the kernel caps this at net.core.rmem_max.
    let _ = s.set_recv_buffer_size(4 << 20);
    s.bind(&addr.into()).map_err(|e| {
        io::Error::new(
            e.kind(),
            format!("cannot bind the second-chance socket to {addr} ([scale_out]): {e}"),
        )
    })?;
    s.set_read_timeout(Some(receiver::POLL))?;
    Ok(s.into())
}

/// Starts second chance for `workers` workers on `socket` (from [`bind`]): the receiver
/// thread, steering with `key` as the TUN does, and one [`Link`] per worker, in worker
/// order.
pub fn start(
    scale_out: &ScaleOut,
    socket: UdpSocket,
    workers: usize,
    key: SteerKey,
    counters: Arc<Counters>,
) -> io::Result<(Receiver, Vec<Link>)> {
    let socket = Arc::new(socket);
    let mut inboxes = Vec::with_capacity(workers);
    let mut links = Vec::with_capacity(workers);
    for _ in 0..workers {
        let (tx, rx) = UnixDatagram::pair()?;
        tx.set_nonblocking(true)?;
        rx.set_nonblocking(true)?;
        inboxes.push(tx);
        links.push(Link {
            socket: socket.clone(),
            peers: scale_out.peers.clone().into(),
            inbox: rx,
            counters: counters.clone(),
        });
    }
    let receiver = Receiver::start(socket, scale_out.peers.clone(), inboxes, key, counters)?;
    Ok((receiver, links))
}

/// Second chance as a daemon runs it: the receiver, and each worker's link in worker
/// order (none of either when `[scale_out]` is not configured).
#[derive(Debug)]
pub struct Started {
    pub receiver: Option<Receiver>,
    pub links: Vec<Option<Link>>,
}

/// Second chance for `config` and `workers` workers of a daemon whose secrets come from
/// `seed` (the steering key is drawn from it): on `socket` if given (bound by [`bind`]
/// before the host was set up), else on a socket bound here.
pub fn start_for(
    config: &crate::config::Config,
    socket: Option<UdpSocket>,
    workers: usize,
    seed: &[u8; 32],
    counters: Arc<Counters>,
) -> io::Result<Started> {
    let Some(scale_out) = &config.scale_out else {
        return Ok(Started {
            receiver: None,
            links: (0..workers).map(|_| None).collect(),
        });
    };
    let socket = match socket {
        Some(s) => s,
        None => bind(scale_out)?,
    };
    let (receiver, links) = start(
        scale_out,
        socket,
        workers,
        SteerKey::from_seed(seed),
        counters,
    )?;
    tracing::info!(
        "second chance: on {}, peers {:?}",
        scale_out.listen,
        scale_out.peers
    );
    Ok(Started {
        receiver: Some(receiver),
        links: links.into_iter().map(Some).collect(),
    })
}

/// A worker's end: the socket to the peers and its inbox from the receiver.
#[derive(Debug)]
pub struct Link {
    socket: Arc<UdpSocket>,
    peers: Arc<[SocketAddr]>,
    inbox: UnixDatagram,
    counters: Arc<Counters>,
}

impl Link {
    /// Sends the packet at `buf[start..]` to every peer. The [`PREFIX_LEN`] bytes before
    /// `start` are overwritten with the header; the virtio-net header is taken to be in
    /// the [`offload::HEADER_LEN`] bytes just before the packet when `offload` (as the
    /// TUN read it), and written there as none otherwise.
    pub fn pass_on(&self, buf: &mut [u8], start: usize, offload: bool) {
        let Some(at) = start.checked_sub(PREFIX_LEN) else {
            return;
        };
        if !offload {
            buf[start - offload::HEADER_LEN..start].copy_from_slice(&offload::PLAIN);
        }
        write_header(&mut buf[at..], Kind::Segment);
        for peer in self.peers.iter() {
            self.send(&buf[at..], *peer);
        }
        Counters::add(&self.counters.sent, self.peers.len() as u64);
    }

    /// Sends the packet at `buf[start..]`, with its virtio-net header before it as it
    /// came in the inbox, back to peer `peer` (an index into the peers) as "not held".
    pub fn not_held(&self, buf: &mut [u8], start: usize, peer: usize) {
        let (Some(at), Some(&to)) = (start.checked_sub(PREFIX_LEN), self.peers.get(peer)) else {
            return;
        };
        write_header(&mut buf[at..], Kind::NotHeld);
        self.send(&buf[at..], to);
        Counters::add(&self.counters.not_held_sent, 1);
    }

    fn send(&self, datagram: &[u8], to: SocketAddr) {
        if let Err(e) = self.socket.send_to(datagram, to) {
            Counters::add(&self.counters.send_errors, 1);
            tracing::debug!(
                "second chance: sending {} bytes to {to}: {e}",
                datagram.len()
            );
        }
    }

    /// The next task from the receiver, read into `buf` so that its packet starts at
    /// `start` (its virtio-net header just before): the task, the peer it came from, and
    /// the end of the packet. `None` when the inbox is empty.
    pub fn recv(&self, buf: &mut [u8], start: usize) -> Option<(Task, usize, usize)> {
        let at = start.checked_sub(INBOX_PREFIX_LEN)?;
        loop {
            let n = match self.inbox.recv(&mut buf[at..]) {
                Ok(n) => n,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(_) => return None,
            };
            if n <= INBOX_PREFIX_LEN {
                continue;
            }
            let task = match buf[at] {
                1 => Task::Segment,
                2 => Task::Orphan,
                _ => continue,
            };
            return Some((task, usize::from(buf[at + 1]), at + n));
        }
    }

    /// The counters this link adds to.
    pub fn counters(&self) -> &Counters {
        &self.counters
    }

    /// Waits until `queue` or the inbox has something to read, or `timeout` passes.
    pub fn wait(&self, queue: &Queue, timeout: Duration) -> io::Result<()> {
        let mut fds = [
            PollFd::new(queue, PollFlags::IN),
            PollFd::new(&self.inbox, PollFlags::IN),
        ];
        let ts = Timespec {
            tv_sec: timeout.as_secs().min(i64::MAX as u64) as i64,
            tv_nsec: i64::from(timeout.subsec_nanos()),
        };
        match rustix::event::poll(&mut fds, Some(&ts)) {
            Ok(_) | Err(rustix::io::Errno::INTR) => Ok(()),
            Err(e) => Err(e.into()),
        }
    }
}
