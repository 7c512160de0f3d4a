//! The TUN device: created (or attached to, if a persistent one of that name exists), its
//! MTU set and brought up, then read and written one IP packet at a time.
//!
//! No packet information header and no offloads: every read is one whole IPv4 or IPv6
//! packet, which is what the engine takes. The descriptor is non-blocking; the data
//! plane waits with [`Tun::wait`] (poll(2)) until a packet is ready or its next timer.
//! A device this process created disappears with the descriptor, taking its routes with
//! it; a persistent one stays.

use std::io;
use std::os::fd::AsFd;
use std::time::Duration;

use rustix::event::{PollFd, PollFlags, Timespec};
use tun_rs::{DeviceBuilder, SyncDevice};

/// An open TUN device.
pub struct Tun {
    dev: SyncDevice,
    name: String,
}

impl Tun {
    /// Creates or attaches to the TUN device `name` and sets its MTU. The device is left
    /// down (so per-device sysctls can be set before the kernel configures IPv6 on it);
    /// [`up`](Self::up) brings it up.
    pub fn open(name: &str, mtu: u16) -> io::Result<Self> {
        let dev = DeviceBuilder::new()
            .name(name)
            .mtu(mtu)
            .packet_information(false)
            .enable(false)
            .build_sync()
            .map_err(|e| {
                io::Error::new(e.kind(), format!("cannot open TUN device {name:?}: {e}"))
            })?;
        dev.set_nonblocking(true)?;
        Ok(Self {
            dev,
            name: name.to_owned(),
        })
    }

    /// Brings the device up.
    pub fn up(&self) -> io::Result<()> {
        self.dev.enabled(true)
    }

    /// The interface name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// Reads one packet into `buf`; `Ok(None)` when none is waiting.
    pub fn recv(&self, buf: &mut [u8]) -> io::Result<Option<usize>> {
        match self.dev.recv(buf) {
            Ok(n) => Ok(Some(n)),
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => Ok(None),
            Err(e) if e.kind() == io::ErrorKind::Interrupted => Ok(None),
            Err(e) => Err(e),
        }
    }

    /// Writes one packet.
    pub fn send(&self, packet: &[u8]) -> io::Result<()> {
        self.dev.send(packet).map(drop)
    }

    /// Waits until a packet can be read or `timeout` passes (`None`: no limit). Returns
    /// whether a packet is ready; an interrupted wait counts as not ready.
    pub fn wait(&self, timeout: Option<Duration>) -> io::Result<bool> {
        let mut fds = [PollFd::new(&self.dev, PollFlags::IN)];
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
        f.debug_struct("Tun").field("name", &self.name).finish()
    }
}

impl AsFd for Tun {
    fn as_fd(&self) -> std::os::fd::BorrowedFd<'_> {
        self.dev.as_fd()
    }
}
