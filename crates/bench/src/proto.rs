//! The bench's own wire protocol and its two ends: a client sends a real TLS ClientHello
//! (made once by rustls, so every peer sees a genuine hello to peek at), then a 9-byte
//! command (`op`, u64 big-endian argument) and raw bytes; the backend in backend a's
//! namespace answers without any TLS, so the peers are measured rather than crypto.
//!
//! The backend runs as its own process ([`Backend`]); [`tls_download`] is the one real TLS
//! client (the testbed's HTTPS backend, not this protocol).
//!
//! Commands: `D` download (the backend sends until the client closes), `U` upload (the
//! backend counts bytes until EOF and answers the count as 8 bytes), `R` request/response
//! (1 KB answer, then the backend waits for the client's close), `I` idle (held open).

use std::io::{self, Read, Write};
use std::net::{Ipv6Addr, Shutdown, SocketAddr, SocketAddrV6, TcpListener, TcpStream};
use std::os::fd::AsRawFd;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, PoisonError, mpsc};
use std::thread;
use std::time::{Duration, Instant};

use std::path::PathBuf;
use std::process::Stdio;

use kracauer_testbed::{Error, Topology};
use rustls::pki_types::ServerName;
use rustls::{ClientConfig, ClientConnection, RootCertStore, StreamOwned};

/// The port the raw backend listens on (in backend a).
pub const RAW_PORT: u16 = 9000;
/// The server name in the bench's ClientHello.
pub const BENCH_NAME: &str = "bench.example";
/// Size of the request/response answer.
pub const ANSWER: usize = 1024;
const CHUNK: usize = 64 * 1024;

/// A genuine ClientHello for [`BENCH_NAME`], as one TLS record.
pub fn client_hello() -> Result<Vec<u8>, Error> {
    let config = ClientConfig::builder()
        .with_root_certificates(RootCertStore::empty())
        .with_no_client_auth();
    let name =
        ServerName::try_from(BENCH_NAME).map_err(|e| Error::Setup(format!("server name: {e}")))?;
    let mut conn = ClientConnection::new(Arc::new(config), name)?;
    let mut out = Vec::new();
    while conn.wants_write() {
        conn.write_tls(&mut out)?;
    }
    Ok(out)
}

/// Writes the hello and a command.
pub fn send_command(s: &mut TcpStream, hello: &[u8], op: u8, arg: u64) -> io::Result<()> {
    let mut msg = Vec::with_capacity(hello.len() + 9);
    msg.extend_from_slice(hello);
    msg.push(op);
    msg.extend_from_slice(&arg.to_be_bytes());
    s.write_all(&msg)
}

/// The raw backend, run in its own process (`kracauer-bench --serve-backend FILE` in backend
/// a's namespace: the bench process alone may not hold 20,000 descriptors).
#[derive(Debug)]
pub struct RawBackend {
    listener: TcpListener,
    stop: Arc<AtomicBool>,
    idle: Arc<Mutex<Vec<TcpStream>>>,
    idle_count: Arc<AtomicUsize>,
    last_peer: Arc<Mutex<Option<SocketAddr>>>,
    peer_file: PathBuf,
}

impl RawBackend {
    /// Listens on `[::]:RAW_PORT` in this process's namespace; writes the client address
    /// it sees to `peer_file` whenever the address changes or the file is gone.
    pub fn start(peer_file: PathBuf) -> Result<Self, Error> {
        let addr = SocketAddr::V6(SocketAddrV6::new(Ipv6Addr::UNSPECIFIED, RAW_PORT, 0, 0));
        let listener = TcpListener::bind(addr)?;
        // A deeper backlog than std's 128 for the idle and rate workloads.
        let backlog = nix::sys::socket::Backlog::new(4096).map_err(io::Error::from)?;
        nix::sys::socket::listen(&listener, backlog).map_err(io::Error::from)?;
        let b = RawBackend {
            listener,
            stop: Arc::new(AtomicBool::new(false)),
            idle: Arc::default(),
            idle_count: Arc::default(),
            last_peer: Arc::default(),
            peer_file,
        };
        let file = b.peer_file.clone();
        let (l, stop, idle, count, last) = (
            b.listener.try_clone()?,
            Arc::clone(&b.stop),
            Arc::clone(&b.idle),
            Arc::clone(&b.idle_count),
            Arc::clone(&b.last_peer),
        );
        thread::Builder::new()
            .name("raw backend".into())
            .spawn(move || accept_loop(&l, &stop, &idle, &count, &last, &file))
            .map_err(|e| Error::Setup(format!("raw backend thread: {e}")))?;
        Ok(b)
    }

    /// Closes every idle connection.
    pub fn drop_idle(&self) {
        self.idle
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clear();
        self.idle_count.store(0, Ordering::SeqCst);
    }
}

impl Drop for RawBackend {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        let _ =
            nix::sys::socket::shutdown(self.listener.as_raw_fd(), nix::sys::socket::Shutdown::Both);
        self.drop_idle();
    }
}

fn accept_loop(
    l: &TcpListener,
    stop: &AtomicBool,
    idle: &Arc<Mutex<Vec<TcpStream>>>,
    count: &Arc<AtomicUsize>,
    last: &Mutex<Option<SocketAddr>>,
    file: &std::path::Path,
) {
    let workers: Arc<Workers> = Arc::default();
    loop {
        let accepted = l.accept();
        if stop.load(Ordering::SeqCst) {
            return;
        }
        let Ok((s, peer)) = accepted else {
            thread::sleep(Duration::from_millis(5));
            continue;
        };
        {
            let mut last = last.lock().unwrap_or_else(PoisonError::into_inner);
            if last.map(|a| a.ip()) != Some(peer.ip()) || !file.exists() {
                let _ = std::fs::write(file, peer.to_string());
            }
            *last = Some(peer);
        }
        dispatch(&workers, s, idle, count);
    }
}

/// The backend's idle worker threads, each waiting for its next connection.
type Workers = Mutex<Vec<mpsc::Sender<TcpStream>>>;

/// Hands connection `s` to an idle worker thread, or to a new one when none is idle.
/// Workers are kept, never ended: a thread made and ended per connection would put the
/// kernel's thread creation and exit (stacks mapped and unmapped, TLB shootdowns, IPIs
/// in a VM) into every connection the rate run measures, which no real backend does.
fn dispatch(
    workers: &Arc<Workers>,
    s: TcpStream,
    idle: &Arc<Mutex<Vec<TcpStream>>>,
    count: &Arc<AtomicUsize>,
) {
    let mut s = s;
    loop {
        let worker = workers.lock().unwrap_or_else(PoisonError::into_inner).pop();
        match worker {
            Some(tx) => match tx.send(s) {
                Ok(()) => return,
                // That worker is gone (only a panic ends one); try the next.
                Err(mpsc::SendError(back)) => s = back,
            },
            None => break,
        }
    }
    let (workers, idle, count) = (Arc::clone(workers), Arc::clone(idle), Arc::clone(count));
    let _ = thread::Builder::new()
        .stack_size(256 * 1024)
        .spawn(move || {
            let (tx, rx) = mpsc::channel();
            let mut next = Some(s);
            while let Some(s) = next.take() {
                let _ = serve(s, &idle, &count);
                workers
                    .lock()
                    .unwrap_or_else(PoisonError::into_inner)
                    .push(tx.clone());
                next = rx.recv().ok();
            }
        });
}

fn serve(mut s: TcpStream, idle: &Mutex<Vec<TcpStream>>, count: &AtomicUsize) -> io::Result<()> {
    s.set_read_timeout(Some(Duration::from_secs(60)))?;
    s.set_nodelay(true)?;
    let mut head = [0u8; 5];
    s.read_exact(&mut head)?;
    let len = u16::from_be_bytes([head[3], head[4]]) as usize;
    let mut rest = vec![0u8; len + 9];
    s.read_exact(&mut rest)?;
    let op = rest[len];
    let mut arg = [0u8; 8];
    arg.copy_from_slice(&rest[len + 1..]);
    let arg = u64::from_be_bytes(arg);
    let mut buf = vec![0x5au8; CHUNK];
    match op {
        b'D' => {
            let mut sent = 0u64;
            while sent < arg {
                let n = (arg - sent).min(CHUNK as u64) as usize;
                if s.write_all(&buf[..n]).is_err() {
                    break;
                }
                sent += n as u64;
            }
        }
        b'U' => {
            let mut got = 0u64;
            loop {
                let n = s.read(&mut buf)?;
                if n == 0 {
                    break;
                }
                got += n as u64;
            }
            s.write_all(&got.to_be_bytes())?;
            // The client closes first, so no TIME_WAIT is left on the backend for a
            // tuple a later connection may reuse.
            while s.read(&mut buf)? > 0 {}
        }
        b'R' => {
            s.write_all(&buf[..ANSWER])?;
            while s.read(&mut buf)? > 0 {}
        }
        b'I' => {
            s.set_read_timeout(None)?;
            idle.lock().unwrap_or_else(PoisonError::into_inner).push(s);
            count.fetch_add(1, Ordering::SeqCst);
            return Ok(());
        }
        _ => {}
    }
    let _ = s.shutdown(Shutdown::Both);
    Ok(())
}

fn connect(addr: SocketAddr) -> io::Result<TcpStream> {
    let s = TcpStream::connect_timeout(&addr, Duration::from_secs(10))?;
    s.set_read_timeout(Some(Duration::from_secs(20)))?;
    s.set_write_timeout(Some(Duration::from_secs(20)))?;
    s.set_nodelay(true)?;
    Ok(s)
}

/// One bulk stream for `dur`: download (`up == false`) counts bytes read; upload counts
/// the bytes the backend confirms. Returns (bytes, seconds).
pub fn bulk_stream(
    addr: SocketAddr,
    hello: &[u8],
    up: bool,
    dur: Duration,
) -> io::Result<(u64, f64)> {
    let mut s = connect(addr)?;
    let start = Instant::now();
    let mut buf = vec![0u8; CHUNK];
    if up {
        send_command(&mut s, hello, b'U', 0)?;
        while start.elapsed() < dur {
            s.write_all(&buf)?;
        }
        s.shutdown(Shutdown::Write)?;
        let mut got = [0u8; 8];
        s.read_exact(&mut got)?;
        Ok((u64::from_be_bytes(got), start.elapsed().as_secs_f64()))
    } else {
        send_command(&mut s, hello, b'D', u64::MAX)?;
        let mut got = 0u64;
        while start.elapsed() < dur {
            let n = s.read(&mut buf)?;
            if n == 0 {
                break;
            }
            got += n as u64;
        }
        Ok((got, start.elapsed().as_secs_f64()))
    }
}

/// One request/response connection: returns the time to the first answer byte.
pub fn request(addr: SocketAddr, hello: &[u8]) -> io::Result<Duration> {
    let start = Instant::now();
    let mut s = connect(addr)?;
    send_command(&mut s, hello, b'R', 0)?;
    let mut buf = [0u8; ANSWER];
    let first = s.read(&mut buf)?;
    if first == 0 {
        return Err(io::Error::new(io::ErrorKind::UnexpectedEof, "no answer"));
    }
    let ttfb = start.elapsed();
    s.read_exact(&mut buf[first..])?;
    Ok(ttfb)
}

/// Opens an idle connection (hello + `I`).
pub fn open_idle(addr: SocketAddr, hello: &[u8]) -> io::Result<TcpStream> {
    let mut s = connect(addr)?;
    send_command(&mut s, hello, b'I', 0)?;
    Ok(s)
}

/// The backend process's main: serves until its standard input closes; each line read
/// closes the idle connections it holds. Prints `ready` once listening.
pub fn serve_backend(peer_file: PathBuf) -> Result<(), Error> {
    let backend = RawBackend::start(peer_file)?;
    println!("ready");
    io::stdout().flush()?;
    let mut line = String::new();
    while io::stdin().read_line(&mut line)? > 0 {
        backend.drop_idle();
        line.clear();
    }
    Ok(())
}

/// One real TLS download of `n` bytes from the testbed's HTTPS backend through `addr`:
/// returns (bytes, seconds), the whole connection timed.
pub fn tls_download(
    config: &Arc<ClientConfig>,
    addr: SocketAddr,
    n: u64,
) -> Result<(u64, f64), Error> {
    let start = Instant::now();
    let s = TcpStream::connect_timeout(&addr, Duration::from_secs(10))?;
    s.set_read_timeout(Some(Duration::from_secs(30)))?;
    let name = ServerName::try_from("a.example").map_err(|e| Error::Setup(e.to_string()))?;
    let conn = ClientConnection::new(Arc::clone(config), name)?;
    let mut tls = StreamOwned::new(conn, s);
    write!(
        tls,
        "GET /source/{n} HTTP/1.1\r\nHost: a.example\r\nConnection: close\r\n\r\n"
    )?;
    tls.flush()?;
    let mut buf = vec![0u8; 64 * 1024];
    let mut got = 0u64;
    loop {
        match tls.read(&mut buf) {
            Ok(0) => break,
            Ok(k) => got += k as u64,
            Err(e) if e.kind() == io::ErrorKind::UnexpectedEof => break,
            Err(e) => return Err(e.into()),
        }
    }
    if got < n {
        return Err(Error::Setup(format!("TLS download got {got} of {n} bytes")));
    }
    Ok((got, start.elapsed().as_secs_f64()))
}

/// The raw backend's process in backend a's namespace.
#[derive(Debug)]
pub struct Backend {
    child: std::process::Child,
    stdin: std::process::ChildStdin,
    pub peer_file: PathBuf,
}

impl Backend {
    pub fn start(tb: &Topology) -> Result<Backend, Error> {
        use std::io::BufRead;
        let peer_file = tb.dir().join("backend-peer");
        let mut child = tb
            .backend_a
            .command(std::env::current_exe()?)
            .arg("--serve-backend")
            .arg(&peer_file)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .map_err(|e| Error::Setup(format!("cannot start the backend: {e}")))?;
        let (Some(stdin), Some(stdout)) = (child.stdin.take(), child.stdout.take()) else {
            return Err(Error::Setup("the backend has no pipes".into()));
        };
        let mut line = String::new();
        io::BufReader::new(stdout).read_line(&mut line)?;
        if line.trim() != "ready" {
            let _ = child.kill();
            let _ = child.wait();
            return Err(Error::Setup("the backend did not start".into()));
        }
        Ok(Backend {
            child,
            stdin,
            peer_file,
        })
    }

    /// The backend process's id.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    pub fn drop_idle(&mut self) -> Result<(), Error> {
        use std::io::Write;
        self.stdin.write_all(b"drop\n")?;
        Ok(())
    }

    pub fn last_peer(&self) -> Option<SocketAddr> {
        std::fs::read_to_string(&self.peer_file)
            .ok()?
            .trim()
            .parse()
            .ok()
    }
}

impl Drop for Backend {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
