//! Clients: plain HTTP and HTTPS (rustls) written by hand, and the bulk transfers. These
//! functions use whatever namespace the calling thread is in; [`Topology`](crate::Topology)
//! runs them inside the client namespace. `curl` lives on the topology too.

use std::io::{self, Read, Write};
use std::net::{IpAddr, Shutdown, SocketAddr, TcpStream};
use std::sync::Arc;
use std::time::Duration;

use rustls::pki_types::ServerName;
use rustls::{ClientConfig, ClientConnection, StreamOwned};

use crate::http::Head;
use crate::{Error, pattern};

/// How long a connect may take.
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);
/// How long a read or write may make no progress.
pub const IO_TIMEOUT: Duration = Duration::from_secs(30);

/// A response, and the client's own end of the connection that carried it.
#[derive(Debug, Clone)]
pub struct Reply {
    /// The status code (`421` for a misdirected request).
    pub status: u16,
    /// The body, as text.
    pub body: String,
    /// The client's own address and port (to compare with what the backend saw).
    pub local: SocketAddr,
}

impl Reply {
    /// What the backend saw, parsed from its answer line.
    pub fn seen(&self) -> Option<Seen> {
        Seen::parse(&self.body)
    }
}

/// What a backend reports it saw: `peer=[ADDR]:PORT local=[ADDR]:PORT host=H sni=S`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Seen {
    /// The client address and port as the backend saw them.
    pub peer: SocketAddr,
    /// The backend's own address and port.
    pub local: SocketAddr,
    /// The `Host` header the backend received.
    pub host: String,
    /// The TLS server name the backend received (`None` for plain HTTP).
    pub sni: Option<String>,
}

impl Seen {
    /// Parses a backend's answer line.
    pub fn parse(body: &str) -> Option<Seen> {
        let mut peer = None;
        let mut local = None;
        let mut host = None;
        let mut sni = None;
        for word in body.split_whitespace() {
            match word.split_once('=')? {
                ("peer", v) => peer = v.parse().ok(),
                ("local", v) => local = v.parse().ok(),
                ("host", v) => host = Some(v.to_owned()),
                ("sni", "-") => {}
                ("sni", v) => sni = Some(v.to_owned()),
                _ => {}
            }
        }
        Some(Seen {
            peer: peer?,
            local: local?,
            host: host?,
            sni,
        })
    }
}

fn connect(addr: SocketAddr) -> Result<TcpStream, Error> {
    let s = TcpStream::connect_timeout(&addr, CONNECT_TIMEOUT)?;
    s.set_read_timeout(Some(IO_TIMEOUT))?;
    s.set_write_timeout(Some(IO_TIMEOUT))?;
    s.set_nodelay(true)?;
    Ok(s)
}

/// `GET path` with `Host: host` over plain TCP to `addr`.
pub fn http_get(addr: SocketAddr, host: &str, path: &str) -> Result<Reply, Error> {
    let mut s = connect(addr)?;
    let local = s.local_addr()?;
    write!(
        s,
        "GET {path} HTTP/1.1\r\nHost: {host}\r\nUser-Agent: kracauer-testbed\r\nConnection: close\r\n\r\n"
    )?;
    read_reply(&mut s, local)
}

/// `GET path` over TLS with server name `sni` (and the same `Host`) to `addr`,
/// verifying the backend's certificate against `config`'s roots.
pub fn https_get(
    config: &Arc<ClientConfig>,
    addr: SocketAddr,
    sni: &str,
    path: &str,
) -> Result<Reply, Error> {
    let s = connect(addr)?;
    let local = s.local_addr()?;
    let name = ServerName::try_from(sni.to_owned())
        .map_err(|e| Error::Setup(format!("{sni:?} is not a server name: {e}")))?;
    let conn = ClientConnection::new(Arc::clone(config), name)?;
    let mut tls = StreamOwned::new(conn, s);
    let exchange = (|| -> io::Result<()> {
        write!(
            tls,
            "GET {path} HTTP/1.1\r\nHost: {sni}\r\nUser-Agent: kracauer-testbed\r\nConnection: close\r\n\r\n"
        )?;
        tls.flush()
    })();
    exchange.map_err(tls_error)?;
    read_reply(&mut tls, local).map_err(|e| match e {
        Error::Io(io) => tls_error(io),
        other => other,
    })
}

/// [`https_get`] from a client with Nagle on (no `TCP_NODELAY`) that writes its
/// ClientHello in two writes, the first `first` bytes long: the kernel sends the first at
/// once and holds the short second one until the first is acknowledged (Nagle), as older
/// Java and Windows clients do with a hello written in pieces.
pub fn https_get_split_hello(
    config: &Arc<ClientConfig>,
    addr: SocketAddr,
    sni: &str,
    path: &str,
    first: usize,
) -> Result<Reply, Error> {
    let mut s = connect(addr)?;
    s.set_nodelay(false)?;
    let local = s.local_addr()?;
    let name = ServerName::try_from(sni.to_owned())
        .map_err(|e| Error::Setup(format!("{sni:?} is not a server name: {e}")))?;
    let mut conn = ClientConnection::new(Arc::clone(config), name)?;
    let mut hello = Vec::new();
    while conn.wants_write() {
        conn.write_tls(&mut hello)?;
    }
    let (a, b) = hello.split_at(first.min(hello.len()));
    s.write_all(a)?;
    s.write_all(b)?;
    let mut tls = StreamOwned::new(conn, s);
    let exchange = (|| -> io::Result<()> {
        write!(
            tls,
            "GET {path} HTTP/1.1\r\nHost: {sni}\r\nUser-Agent: kracauer-testbed\r\nConnection: close\r\n\r\n"
        )?;
        tls.flush()
    })();
    exchange.map_err(tls_error)?;
    read_reply(&mut tls, local).map_err(|e| match e {
        Error::Io(io) => tls_error(io),
        other => other,
    })
}

/// An I/O error that carries a rustls error is reported as the TLS error (an alert from
/// the peer, a certificate problem).
fn tls_error(e: io::Error) -> Error {
    match e
        .get_ref()
        .and_then(|inner| inner.downcast_ref::<rustls::Error>())
    {
        Some(tls) => Error::Tls(tls.clone()),
        None => Error::Io(e),
    }
}

fn read_reply(s: &mut impl Read, local: SocketAddr) -> Result<Reply, Error> {
    let head = Head::read(s)?
        .ok_or_else(|| Error::Setup("connection closed without a response".into()))?;
    let status = head
        .second_word()
        .parse()
        .map_err(|_| Error::Setup(format!("bad status line {:?}", head.start)))?;
    let mut body = head.rest.clone();
    match head.content_length() {
        Some(n) => {
            let missing = (n as usize).saturating_sub(body.len());
            let mut more = vec![0u8; missing];
            s.read_exact(&mut more)?;
            body.extend_from_slice(&more);
        }
        None => {
            s.read_to_end(&mut body)?;
        }
    }
    Ok(Reply {
        status,
        body: String::from_utf8_lossy(&body).into_owned(),
        local,
    })
}

/// `POST /sink` with `n` pattern bytes; the reply says whether the backend found them
/// intact (`sink=N mismatch=none`).
pub fn upload(addr: SocketAddr, host: &str, n: u64) -> Result<Reply, Error> {
    let mut s = connect(addr)?;
    let local = s.local_addr()?;
    write!(
        s,
        "POST /sink HTTP/1.1\r\nHost: {host}\r\nContent-Length: {n}\r\nConnection: close\r\n\r\n"
    )?;
    let mut buf = vec![0u8; 64 * 1024];
    let mut sent = 0u64;
    while sent < n {
        let len = (n - sent).min(buf.len() as u64) as usize;
        pattern::fill(sent, &mut buf[..len]);
        s.write_all(&buf[..len])?;
        sent += len as u64;
    }
    s.flush()?;
    let reply = read_reply(&mut s, local);
    let _ = s.shutdown(Shutdown::Both);
    reply
}

/// `GET /source/N` and checks the `n` bytes received against the pattern. Returns how
/// many bytes arrived intact; a short, long or damaged body is an error.
pub fn download(addr: SocketAddr, host: &str, n: u64) -> Result<u64, Error> {
    let mut s = connect(addr)?;
    write!(
        s,
        "GET /source/{n} HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n\r\n"
    )?;
    let head = Head::read(&mut s)?
        .ok_or_else(|| Error::Setup("connection closed without a response".into()))?;
    if head.second_word() != "200" {
        return Err(Error::Setup(format!("download answered {:?}", head.start)));
    }
    let mut got = head.rest.len() as u64;
    if let Some(at) = pattern::first_mismatch(0, &head.rest) {
        return Err(Error::Setup(format!("download damaged at byte {at}")));
    }
    let mut buf = vec![0u8; 64 * 1024];
    loop {
        let k = s.read(&mut buf)?;
        if k == 0 {
            break;
        }
        if let Some(at) = pattern::first_mismatch(got, &buf[..k]) {
            return Err(Error::Setup(format!("download damaged at byte {at}")));
        }
        got += k as u64;
    }
    if got != n {
        return Err(Error::Setup(format!("download got {got} of {n} bytes")));
    }
    Ok(got)
}

/// Connects to `addr` and keeps the connection open; what the client side of "old
/// connections" tests holds while the daemon restarts.
pub fn open(addr: SocketAddr) -> Result<TcpStream, Error> {
    connect(addr)
}

/// The IPv4 address a backend's peer address embeds (its low 32 bits), if it is IPv6.
pub fn embedded_v4(peer: SocketAddr) -> Option<std::net::Ipv4Addr> {
    match peer.ip() {
        IpAddr::V6(v6) => {
            let o = v6.octets();
            Some(std::net::Ipv4Addr::new(o[12], o[13], o[14], o[15]))
        }
        IpAddr::V4(_) => None,
    }
}

/// A minimal TLS 1.3-shaped ClientHello record naming `sni`, for tests that send hellos
/// byte by byte or in pieces (a real TLS client will not stop half-way).
pub fn minimal_client_hello(sni: &str) -> Vec<u8> {
    let name = sni.as_bytes();
    let list = (name.len() + 3) as u16;
    let mut ext = vec![0, 0];
    ext.extend_from_slice(&(list + 2).to_be_bytes());
    ext.extend_from_slice(&list.to_be_bytes());
    ext.push(0);
    ext.extend_from_slice(&(name.len() as u16).to_be_bytes());
    ext.extend_from_slice(name);
    let mut body = vec![3, 3];
    body.extend_from_slice(&[0x42; 32]);
    body.push(0);
    body.extend_from_slice(&[0, 2, 0x13, 0x01, 1, 0]);
    body.extend_from_slice(&(ext.len() as u16).to_be_bytes());
    body.extend_from_slice(&ext);
    let mut hs = vec![1, 0];
    hs.extend_from_slice(&(body.len() as u16).to_be_bytes());
    hs.extend_from_slice(&body);
    let mut rec = vec![0x16, 3, 1];
    rec.extend_from_slice(&(hs.len() as u16).to_be_bytes());
    rec.extend_from_slice(&hs);
    rec
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backend_answer_line_parses_into_what_it_saw() {
        let seen = Seen::parse(
            "peer=[2001:db8:64::c633:6402]:51234 local=[2001:db8:1::2]:443 host=a.example sni=a.example\n",
        )
        .unwrap();
        assert_eq!(seen.peer, "[2001:db8:64::c633:6402]:51234".parse().unwrap());
        assert_eq!(seen.local.port(), 443);
        assert_eq!(seen.host, "a.example");
        assert_eq!(seen.sni.as_deref(), Some("a.example"));
        assert_eq!(
            embedded_v4(seen.peer),
            Some(std::net::Ipv4Addr::new(198, 51, 100, 2))
        );
    }

    #[test]
    fn plain_http_answer_has_no_sni() {
        let seen = Seen::parse(
            "peer=[2001:db8:64::c633:6402]:1 local=[2001:db8:1::3]:80 host=b.example sni=-",
        )
        .unwrap();
        assert_eq!(seen.sni, None);
    }

    #[test]
    fn a_421_body_is_not_a_backend_answer() {
        assert_eq!(Seen::parse("Misdirected Request\n"), None);
    }
}
