//! Servers that run inside a namespace: the backends' HTTP and HTTPS servers, which
//! answer every request with the peer address and port they saw, and a TCP echo (the
//! "SSH" that must keep answering on a shared address).
//!
//! The listener is bound on a thread inside the namespace and so belongs to it; accepting
//! and serving then run on ordinary threads. Requests a backend understands:
//! - `GET /source/N`: N bytes of the [`pattern`];
//! - `POST /sink` with `Content-Length: N`: reads N bytes, checks them against the
//!   pattern, answers `sink=N mismatch=none` (or the offset of the first wrong byte);
//! - anything else: `peer=[ADDR]:PORT local=[ADDR]:PORT host=HOST sni=SNI` (one line).
//!
//! Every accepted connection is recorded in a [`ContactLog`] before anything is read,
//! so a test can assert that a refused name never reached any backend.

use std::io::{self, Read, Write};
use std::net::{Shutdown, SocketAddr, TcpListener, TcpStream};
use std::os::fd::AsRawFd;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::thread::{self, JoinHandle};
use std::time::Duration;

use rustls::{ServerConfig, ServerConnection, StreamOwned};

use crate::http::Head;
use crate::netns::Netns;
use crate::{Error, pattern};

/// How long a server connection may sit without progress before it is dropped.
const IDLE: Duration = Duration::from_secs(60);
/// Chunk size of bulk transfers.
const CHUNK: usize = 64 * 1024;

/// What a server speaks.
#[derive(Debug, Clone)]
pub enum Mode {
    /// Plain HTTP/1.1.
    Http,
    /// HTTP/1.1 over TLS with this configuration.
    Https(Arc<ServerConfig>),
    /// Echo every byte back.
    Echo,
}

/// One accepted connection, as the server saw it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Contact {
    /// The client address and port the server saw.
    pub peer: SocketAddr,
    /// The address and port the connection arrived on.
    pub local: SocketAddr,
}

/// Every connection a group of servers accepted.
#[derive(Debug, Clone, Default)]
pub struct ContactLog(Arc<Mutex<Vec<Contact>>>);

impl ContactLog {
    /// A copy of the contacts so far.
    pub fn contacts(&self) -> Vec<Contact> {
        self.0
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }

    /// How many connections were accepted.
    pub fn len(&self) -> usize {
        self.0.lock().unwrap_or_else(PoisonError::into_inner).len()
    }

    /// Whether no connection was accepted.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    fn push(&self, c: Contact) {
        self.0
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .push(c);
    }
}

/// A running server; dropping it stops accepting (connections in progress finish or time
/// out on their own).
#[derive(Debug)]
pub struct Server {
    listener: TcpListener,
    stop: Arc<AtomicBool>,
    accept: Option<JoinHandle<()>>,
}

impl Server {
    /// Binds `addr` inside `ns` and serves `mode`, recording contacts in `log`.
    pub fn start(ns: &Netns, addr: SocketAddr, mode: Mode, log: ContactLog) -> Result<Self, Error> {
        let listener = ns.run(|| TcpListener::bind(addr))??;
        let stop = Arc::new(AtomicBool::new(false));
        let accept = {
            let listener = listener.try_clone()?;
            let stop = Arc::clone(&stop);
            thread::Builder::new()
                .name(format!("accept {addr}@{}", ns.name()))
                .spawn(move || accept_loop(&listener, &stop, &mode, &log))
                .map_err(|e| Error::spawn("accept thread", e))?
        };
        Ok(Server {
            listener,
            stop,
            accept: Some(accept),
        })
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        // shutdown(2) on a listening socket wakes a blocked accept(2) with an error.
        let _ =
            nix::sys::socket::shutdown(self.listener.as_raw_fd(), nix::sys::socket::Shutdown::Both);
        if let Some(t) = self.accept.take() {
            let _ = t.join();
        }
    }
}

fn accept_loop(listener: &TcpListener, stop: &AtomicBool, mode: &Mode, log: &ContactLog) {
    loop {
        let accepted = listener.accept();
        if stop.load(Ordering::SeqCst) {
            return;
        }
        let Ok((stream, peer)) = accepted else {
            thread::sleep(Duration::from_millis(10));
            continue;
        };
        let local = stream.local_addr().unwrap_or(peer);
        log.push(Contact { peer, local });
        let mode = mode.clone();
        let _ = thread::Builder::new()
            .name(format!("serve {peer}"))
            .spawn(move || {
                let _ = serve(stream, peer, local, &mode);
            });
    }
}

fn serve(stream: TcpStream, peer: SocketAddr, local: SocketAddr, mode: &Mode) -> io::Result<()> {
    stream.set_read_timeout(Some(IDLE))?;
    stream.set_write_timeout(Some(IDLE))?;
    stream.set_nodelay(true)?;
    match mode {
        Mode::Echo => echo(stream),
        Mode::Http => {
            let mut s = stream;
            if let Some(head) = Head::read(&mut s)? {
                answer(&mut s, head, peer, local, None)?;
            }
            s.flush()?;
            s.shutdown(Shutdown::Write)
        }
        Mode::Https(config) => {
            let conn = ServerConnection::new(Arc::clone(config)).map_err(io::Error::other)?;
            let mut s = StreamOwned::new(conn, stream);
            if let Some(head) = Head::read(&mut s)? {
                let sni = s.conn.server_name().map(str::to_owned);
                answer(&mut s, head, peer, local, sni)?;
            }
            s.conn.send_close_notify();
            s.flush()?;
            s.sock.shutdown(Shutdown::Write)
        }
    }
}

fn echo(mut s: TcpStream) -> io::Result<()> {
    let mut buf = [0u8; 4096];
    loop {
        let n = s.read(&mut buf)?;
        if n == 0 {
            return s.shutdown(Shutdown::Write);
        }
        s.write_all(&buf[..n])?;
    }
}

fn answer(
    s: &mut impl ReadWrite,
    head: Head,
    peer: SocketAddr,
    local: SocketAddr,
    sni: Option<String>,
) -> io::Result<()> {
    let path = head.second_word().to_owned();
    if let Some(n) = path.strip_prefix("/source/").and_then(|n| n.parse().ok()) {
        return source(s, n);
    }
    let body = if path == "/sink" {
        let n = head.content_length().unwrap_or(0);
        match sink(s, &head.rest, n)? {
            None => format!("sink={n} mismatch=none\n"),
            Some(at) => format!("sink={n} mismatch={at}\n"),
        }
    } else {
        format!(
            "peer={peer} local={local} host={} sni={}\n",
            head.header("host").unwrap_or("-"),
            sni.as_deref().unwrap_or("-"),
        )
    };
    write!(
        s,
        "HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    )
}

/// Sends `n` pattern bytes as a response body.
fn source(s: &mut impl ReadWrite, n: u64) -> io::Result<()> {
    write!(
        s,
        "HTTP/1.1 200 OK\r\nContent-Type: application/octet-stream\r\nContent-Length: {n}\r\nConnection: close\r\n\r\n"
    )?;
    let mut buf = vec![0u8; CHUNK];
    let mut sent = 0u64;
    while sent < n {
        let len = (n - sent).min(CHUNK as u64) as usize;
        pattern::fill(sent, &mut buf[..len]);
        s.write_all(&buf[..len])?;
        sent += len as u64;
    }
    Ok(())
}

/// Reads `n` body bytes (the first of them already in `first`) and returns the offset
/// of the first byte that is not the pattern. A short body is an error.
fn sink(s: &mut impl ReadWrite, first: &[u8], n: u64) -> io::Result<Option<u64>> {
    let mut got = first.len() as u64;
    let mut mismatch = pattern::first_mismatch(0, first);
    let mut buf = vec![0u8; CHUNK];
    while got < n {
        let want = (n - got).min(CHUNK as u64) as usize;
        let k = s.read(&mut buf[..want])?;
        if k == 0 {
            return Err(io::Error::new(
                io::ErrorKind::UnexpectedEof,
                format!("body ended at {got} of {n}"),
            ));
        }
        if mismatch.is_none() {
            mismatch = pattern::first_mismatch(got, &buf[..k]);
        }
        got += k as u64;
    }
    Ok(mismatch)
}

/// A byte stream both ways (plain or TLS).
trait ReadWrite: Read + Write {}
impl<T: Read + Write> ReadWrite for T {}
