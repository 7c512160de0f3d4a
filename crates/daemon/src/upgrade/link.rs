//! The socket between the old and the new process: framed messages, with descriptors
//! passed alongside (`SCM_RIGHTS`).
//!
//! A message is its kind (one byte), its length (eight bytes, big-endian) and its
//! payload. Descriptors ride on the first byte of the message that carries them.

use std::io::{self, IoSlice, IoSliceMut, Read, Write};
use std::mem::MaybeUninit;
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::os::unix::net::UnixStream;
use std::time::Duration;

use rustix::net::{
    RecvAncillaryBuffer, RecvAncillaryMessage, RecvFlags, SendAncillaryBuffer,
    SendAncillaryMessage, SendFlags,
};

use crate::config::MAX_WORKERS;

/// Most descriptors one message carries: every queue and the metrics listener.
pub const MAX_FDS: usize = MAX_WORKERS as usize + 1;
/// Largest payload taken (a snapshot of a full flow table is far smaller).
const MAX_PAYLOAD: u64 = 16 << 30;

/// What a message says.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// New → old: the configuration is loaded and valid; send the state.
    Hello = 1,
    /// Old → new: the state, with the TUN queues (and the metrics listener).
    State = 2,
    /// New → old: everything is restored; nothing is read until the commit.
    Ready = 3,
    /// New → old: the new process gives up, and why (then it exits).
    Fail = 4,
    /// Old → new: the old process stops for good; read packets.
    Commit = 5,
}

impl Kind {
    fn from_u8(b: u8) -> Option<Self> {
        Some(match b {
            1 => Self::Hello,
            2 => Self::State,
            3 => Self::Ready,
            4 => Self::Fail,
            5 => Self::Commit,
            _ => return None,
        })
    }
}

/// A message received.
#[derive(Debug)]
pub struct Message {
    pub kind: Kind,
    pub payload: Vec<u8>,
    pub fds: Vec<OwnedFd>,
}

/// One end of the socket.
#[derive(Debug)]
pub struct Link {
    sock: UnixStream,
}

impl Link {
    /// The end `fd` (a connected stream socket).
    pub fn new(fd: OwnedFd) -> Self {
        Self {
            sock: UnixStream::from(fd),
        }
    }

    /// Sends a message, with `fds` passed along.
    pub fn send(&self, kind: Kind, payload: &[u8], fds: &[BorrowedFd<'_>]) -> io::Result<()> {
        let mut head = [0u8; 9];
        head[0] = kind as u8;
        head[1..].copy_from_slice(&(payload.len() as u64).to_be_bytes());
        let mut space = [MaybeUninit::uninit(); rustix::cmsg_space!(ScmRights(MAX_FDS))];
        let mut control = SendAncillaryBuffer::new(&mut space);
        if !fds.is_empty() && !control.push(SendAncillaryMessage::ScmRights(fds)) {
            return Err(io::Error::other("too many descriptors for one message"));
        }
        // The descriptors go with the first byte; the rest follows as a plain stream.
        let first = rustix::net::sendmsg(
            &self.sock,
            &[IoSlice::new(&head[..1])],
            &mut control,
            SendFlags::NOSIGNAL,
        )?;
        if first != 1 {
            return Err(io::Error::new(io::ErrorKind::WriteZero, "handover socket"));
        }
        let mut w = &self.sock;
        w.write_all(&head[1..])?;
        w.write_all(payload)?;
        w.flush()
    }

    /// Waits up to `timeout` for each part of the next message. The peer closing the
    /// socket is an `UnexpectedEof` error.
    pub fn recv(&self, timeout: Duration) -> io::Result<Message> {
        self.sock.set_read_timeout(Some(timeout))?;
        let mut first = [0u8; 1];
        let mut space = [MaybeUninit::uninit(); rustix::cmsg_space!(ScmRights(MAX_FDS))];
        let mut control = RecvAncillaryBuffer::new(&mut space);
        let got = loop {
            match rustix::net::recvmsg(
                &self.sock,
                &mut [IoSliceMut::new(&mut first)],
                &mut control,
                RecvFlags::CMSG_CLOEXEC,
            ) {
                Ok(m) => break m,
                Err(rustix::io::Errno::INTR) => continue,
                Err(rustix::io::Errno::AGAIN) => {
                    return Err(io::Error::new(io::ErrorKind::TimedOut, "no answer in time"));
                }
                Err(e) => return Err(e.into()),
            }
        };
        let mut fds = Vec::new();
        for m in control.drain() {
            if let RecvAncillaryMessage::ScmRights(received) = m {
                fds.extend(received);
            }
        }
        if got.bytes == 0 {
            return Err(io::Error::new(
                io::ErrorKind::UnexpectedEof,
                "the other process closed the handover socket",
            ));
        }
        let kind = Kind::from_u8(first[0])
            .ok_or_else(|| io::Error::new(io::ErrorKind::InvalidData, "unknown message"))?;
        let mut len = [0u8; 8];
        let mut r = &self.sock;
        r.read_exact(&mut len)?;
        let len = u64::from_be_bytes(len);
        if len > MAX_PAYLOAD {
            return Err(io::Error::new(
                io::ErrorKind::InvalidData,
                "message too long",
            ));
        }
        let mut payload = Vec::new();
        r.take(len).read_to_end(&mut payload)?;
        if payload.len() as u64 != len {
            return Err(io::Error::new(
                io::ErrorKind::UnexpectedEof,
                "the other process closed the handover socket mid-message",
            ));
        }
        Ok(Message { kind, payload, fds })
    }
}

impl AsFd for Link {
    fn as_fd(&self) -> BorrowedFd<'_> {
        self.sock.as_fd()
    }
}
