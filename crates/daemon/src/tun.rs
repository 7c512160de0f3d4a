//! The TUN device: created (or attached to, if a persistent one of that name exists), its
//! MTU set and brought up, then read and written by one [`Queue`] per data-plane worker.
//!
//! With offloads (the default) the device is opened with `IFF_VNET_HDR` and
//! `TUN_F_CSUM | TUN_F_TSO4 | TUN_F_TSO6`: every read and write carries the 10-byte
//! virtio-net header ([`kracauer_core::offload`]) and a read may be a GSO super-packet of
//! up to 64 KB, which the engine translates whole. tun-rs also asks for UDP segmentation
//! offload (`TUN_F_USO4/6`) where the kernel has it; such packets are read correctly and
//! dropped by the engine, which carries no UDP yet. Where the kernel refuses offloads,
//! the device is opened again without, and the log says so. A live upgrade to another
//! `[tun] offload` re-opens every queue in the new mode (`upgrade/offload.rs`).
//!
//! With more than one worker the device is multi-queue (`IFF_MULTI_QUEUE`, one descriptor
//! per queue) and a steering program ([`crate::steer`]) makes the kernel put both
//! directions of a flow on the same queue. Descriptors are non-blocking; a worker waits
//! with [`Queue::wait`] (poll(2)) until a packet is ready or its next timer. A device this
//! process created disappears with its last descriptor, taking its routes with it; a
//! persistent one stays.

use std::io::{self, IoSlice};
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::time::Duration;

use kracauer_core::offload;
use rustix::event::{PollFd, PollFlags, Timespec};
use tun_rs::{DeviceBuilder, SyncDevice};

pub(crate) mod syscalls;

/// How to open the device.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TunOptions {
    pub mtu: u16,
    /// Ask for the virtio-net header and TCP offloads.
    pub offload: bool,
    /// Queues to open (one per worker), at least 1.
    pub queues: usize,
}

/// An open TUN device: its queues, and whether offloads are on.
pub struct Tun {
    queues: Vec<SyncDevice>,
    name: String,
    offload: bool,
    /// The key of the steering program attached across the queues (`None`: one queue).
    steering: Option<kracauer_core::steer::SteerKey>,
}

/// One queue of the device: what one worker reads and writes. It is a plain descriptor,
/// so that a live upgrade can hand it to the new process, which adopts it as it is
/// ([`Queue::adopt`]): the queue stays attached to the device, and packets wait in it.
pub struct Queue {
    fd: OwnedFd,
    offload: bool,
}

impl Tun {
    /// Creates or attaches to the TUN device `name` with `opts`. A new device is left
    /// down (so per-device sysctls can be set before the kernel configures IPv6 on it);
    /// [`up`](Self::up) brings it up. An existing one (persistent, or held by a carrier
    /// keeper after a crash) keeps its state: taking it down would flush its routes and
    /// tell a routing daemon watching its link to withdraw them.
    pub fn open(name: &str, opts: TunOptions) -> io::Result<Self> {
        let (first, opts) = match first_queue(name, opts) {
            Err(e) if opts.queues > 1 => {
                // A persistent device made without multi_queue refuses a multi-queue
                // attach (EINVAL): run on its one queue rather than not at all.
                tracing::warn!(
                    "cannot open TUN device {name:?} with {} queues ({e}); running one \
                     worker (a persistent device must be made with `multi_queue`)",
                    opts.queues
                );
                let one = TunOptions { queues: 1, ..opts };
                (first_queue(name, one)?, one)
            }
            other => (other?, opts),
        };
        let offload = first.tcp_gso();
        let mut devs = vec![first];
        while devs.len() < opts.queues.max(1) {
            let dev = devs[0].try_clone().map_err(|e| {
                io::Error::new(
                    e.kind(),
                    format!(
                        "cannot open queue {} of TUN device {name:?}: {e}",
                        devs.len()
                    ),
                )
            })?;
            devs.push(dev);
        }
        for dev in &devs {
            dev.set_nonblocking(true)?;
        }
        Ok(Self {
            queues: devs,
            name: name.to_owned(),
            offload,
            steering: None,
        })
    }

    /// Brings the device up.
    pub fn up(&self) -> io::Result<()> {
        self.queues[0].enabled(true)
    }

    /// The interface name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// Whether reads and writes carry the virtio-net header (offloads on).
    pub fn offload(&self) -> bool {
        self.offload
    }

    /// Records that a steering program with `key` spreads flows across the queues.
    pub fn steered_by(&mut self, key: kracauer_core::steer::SteerKey) {
        self.steering = Some(key);
    }

    /// The key of the steering program, when one spreads flows across the queues.
    pub fn steering(&self) -> Option<kracauer_core::steer::SteerKey> {
        self.steering
    }

    /// How many queues are open.
    pub fn queue_count(&self) -> usize {
        self.queues.len()
    }

    /// The first queue's descriptor, for device-wide settings (steering, the carrier).
    pub fn first_queue_fd(&self) -> BorrowedFd<'_> {
        self.queues[0].as_fd()
    }

    /// Closes every queue but the first (one worker after all). Done before the device
    /// is up and before steering is attached, so no flow is on the closed ones.
    pub fn keep_one_queue(&mut self) {
        self.queues.truncate(1);
    }

    /// The queues, one per worker, leaving the device to be kept open by them. Each is a
    /// duplicate of the device's descriptor (the same open file, so the same queue).
    pub fn into_queues(self) -> io::Result<Vec<Queue>> {
        let offload = self.offload;
        self.queues
            .iter()
            .map(|dev| {
                let fd = rustix::io::fcntl_dupfd_cloexec(dev, 0)?;
                Ok(Queue { fd, offload })
            })
            .collect()
    }
}

/// Opens the device's first queue: with offloads if asked for and the kernel agrees,
/// else without, saying so.
fn first_queue(name: &str, opts: TunOptions) -> io::Result<SyncDevice> {
    let plain = || {
        attach(name, opts, false)
            .map_err(|e| io::Error::new(e.kind(), format!("cannot open TUN device {name:?}: {e}")))
    };
    if !opts.offload {
        return plain();
    }
    match attach(name, opts, true) {
        Ok(dev) => Ok(dev),
        Err(e) => {
            // Said only once the device opens without them: then offloads were the cause.
            let dev = plain()?;
            tracing::warn!(
                "TUN offloads unavailable on {name:?} ({e}): reading and writing one packet \
                 of at most the MTU at a time"
            );
            Ok(dev)
        }
    }
}

/// Opens one queue, always of a multi-queue device, also for one worker: a live upgrade
/// to more workers opens more queues beside it (`upgrade/workers.rs`). A persistent
/// device made without `multi_queue` is attached as it is, with its one queue (the
/// kernel refuses a queue whose multi-queue flag differs from the device's).
fn attach(name: &str, opts: TunOptions, offload: bool) -> io::Result<SyncDevice> {
    match build(name, opts, offload, true) {
        Err(e)
            if opts.queues <= 1
                && e.raw_os_error() == Some(rustix::io::Errno::INVAL.raw_os_error()) =>
        {
            build(name, opts, offload, false).map_err(|_| e)
        }
        other => other,
    }
}

fn build(name: &str, opts: TunOptions, offload: bool, multi: bool) -> io::Result<SyncDevice> {
    DeviceBuilder::new()
        .name(name)
        .mtu(opts.mtu)
        .packet_information(false)
        .offload(offload)
        .multi_queue(multi)
        .inherit_enable_state()
        .build_sync()
}

impl Queue {
    /// A queue handed over by the process that opened it: `fd` is a non-blocking
    /// descriptor of a TUN queue, `offload` whether it was opened with the virtio-net
    /// header.
    pub fn adopt(fd: OwnedFd, offload: bool) -> Self {
        Self { fd, offload }
    }

    /// Whether each read and write carries the virtio-net header.
    pub fn offload(&self) -> bool {
        self.offload
    }

    /// Reads one packet (with its virtio-net header if offloads are on) into `buf`;
    /// `Ok(None)` when none is waiting.
    pub fn recv(&self, buf: &mut [u8]) -> io::Result<Option<usize>> {
        match rustix::io::read(&self.fd, buf) {
            Ok(n) => Ok(Some(n)),
            Err(rustix::io::Errno::AGAIN | rustix::io::Errno::INTR) => Ok(None),
            Err(e) => Err(e.into()),
        }
    }

    /// Writes `bytes` as they are: the virtio-net header, if offloads are on, must be
    /// its first [`offload::HEADER_LEN`] bytes.
    pub fn send_raw(&self, bytes: &[u8]) -> io::Result<()> {
        rustix::io::write(&self.fd, bytes)
            .map(drop)
            .map_err(Into::into)
    }

    /// Writes a packet the engine made (finished checksum, no GSO), adding the plain
    /// virtio-net header in front if offloads are on.
    pub fn send_plain(&self, packet: &[u8]) -> io::Result<()> {
        if self.offload {
            let bufs = [IoSlice::new(&offload::PLAIN), IoSlice::new(packet)];
            rustix::io::writev(&self.fd, &bufs)
                .map(drop)
                .map_err(Into::into)
        } else {
            self.send_raw(packet)
        }
    }

    /// Waits until a packet can be read or `timeout` passes (`None`: no limit). Returns
    /// whether a packet is ready; an interrupted wait counts as not ready.
    pub fn wait(&self, timeout: Option<Duration>) -> io::Result<bool> {
        let mut fds = [PollFd::new(&self.fd, PollFlags::IN)];
        let ts = timeout.map(|t| Timespec {
            tv_sec: t.as_secs().min(i64::MAX as u64) as i64,
            tv_nsec: i64::from(t.subsec_nanos()),
        });
        match rustix::event::poll(&mut fds, ts.as_ref()) {
            Ok(n) => Ok(n > 0),
            Err(rustix::io::Errno::INTR) => Ok(false),
            Err(e) => Err(e.into()),
        }
    }
}

impl std::fmt::Debug for Tun {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Tun")
            .field("name", &self.name)
            .field("queues", &self.queues.len())
            .field("offload", &self.offload)
            .finish()
    }
}

impl std::fmt::Debug for Queue {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Queue")
            .field("offload", &self.offload)
            .finish()
    }
}

impl AsFd for Queue {
    fn as_fd(&self) -> BorrowedFd<'_> {
        self.fd.as_fd()
    }
}
