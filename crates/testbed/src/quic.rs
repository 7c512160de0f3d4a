//! HTTP/3 for the QUIC tests: a backend (quinn + h3) that says which address and UDP
//! port it saw, and an in-process client, both on the testbed's TLS (its CA, ALPN `h3`).
//!
//! The backend answers `GET /whoami` with `IP PORT` (the connection's remote address at
//! the time of the request: the client's embedded address through Kracauer) and
//! `GET /bytes/N` with N bytes of [`crate::pattern`]'s pattern, then its remote address
//! in a trailer-like last line (`\n--\nIP PORT`), so a download that moved paths says
//! where it ended. It counts every Initial it accepts ([`H3Backend::incoming`]).
//!
//! The client opens one connection per request ([`get`]) or many at once
//! ([`get_many`]); a connection refused by the server's CONNECTION_CLOSE comes back as
//! [`H3Error::Closed`] with its error code (0x170 for `unrecognized_name`).

use std::net::{SocketAddr, UdpSocket};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::thread;
use std::time::Duration;

use bytes::{Buf, Bytes};
use rustls::{ClientConfig, ServerConfig};

use crate::{Error, Netns};

/// Time a client gives one request, handshake included.
pub const REQUEST_TIMEOUT: Duration = Duration::from_secs(30);

/// An HTTP/3 backend running in a namespace until dropped.
#[derive(Debug)]
pub struct H3Backend {
    incoming: Arc<AtomicU64>,
    stop: Arc<AtomicBool>,
    thread: Option<thread::JoinHandle<()>>,
}

impl H3Backend {
    /// Starts the backend on UDP `addr` in `ns` with the certificate of `tls`.
    pub fn start(ns: &Netns, addr: SocketAddr, tls: &ServerConfig) -> Result<Self, Error> {
        let mut tls = tls.clone();
        tls.alpn_protocols = vec![b"h3".to_vec()];
        tls.max_early_data_size = 0;
        let crypto = quinn::crypto::rustls::QuicServerConfig::try_from(tls)
            .map_err(|e| Error::Setup(format!("QUIC server TLS: {e}")))?;
        let server = quinn::ServerConfig::with_crypto(Arc::new(crypto));
        let incoming = Arc::new(AtomicU64::new(0));
        let stop = Arc::new(AtomicBool::new(false));
        let (ready_tx, ready_rx) = std::sync::mpsc::channel();
        let (count, halt) = (Arc::clone(&incoming), Arc::clone(&stop));
        let thread = ns.spawn("h3-backend", move || {
            let rt = match tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
            {
                Ok(rt) => rt,
                Err(e) => {
                    let _ = ready_tx.send(Err(e.to_string()));
                    return;
                }
            };
            rt.block_on(async move {
                let endpoint = match quinn::Endpoint::server(server, addr) {
                    Ok(e) => e,
                    Err(e) => {
                        let _ = ready_tx.send(Err(e.to_string()));
                        return;
                    }
                };
                let _ = ready_tx.send(Ok(()));
                loop {
                    let accepted =
                        tokio::time::timeout(Duration::from_millis(100), endpoint.accept()).await;
                    if halt.load(Ordering::Relaxed) {
                        break;
                    }
                    match accepted {
                        Ok(Some(incoming)) => {
                            count.fetch_add(1, Ordering::Relaxed);
                            tokio::spawn(serve(incoming));
                        }
                        Ok(None) => break,
                        Err(_) => {}
                    }
                }
                endpoint.close(0u32.into(), b"bye");
            });
        })?;
        match ready_rx.recv_timeout(Duration::from_secs(10)) {
            Ok(Ok(())) => Ok(Self {
                incoming,
                stop,
                thread: Some(thread),
            }),
            Ok(Err(e)) => Err(Error::Setup(format!("HTTP/3 backend on {addr}: {e}"))),
            Err(_) => Err(Error::Setup(format!(
                "HTTP/3 backend on {addr} did not start"
            ))),
        }
    }

    /// Connection attempts (Initials accepted) so far.
    pub fn incoming(&self) -> u64 {
        self.incoming.load(Ordering::Relaxed)
    }
}

impl Drop for H3Backend {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// Serves one connection's requests.
async fn serve(incoming: quinn::Incoming) {
    let Ok(conn) = incoming.await else { return };
    let Ok(mut h3) =
        h3::server::Connection::<_, Bytes>::new(h3_quinn::Connection::new(conn.clone())).await
    else {
        return;
    };
    while let Ok(Some(resolver)) = h3.accept().await {
        let conn = conn.clone();
        tokio::spawn(async move {
            let Ok((req, mut stream)) = resolver.resolve_request().await else {
                return;
            };
            let path = req.uri().path().to_owned();
            let peer = |c: &quinn::Connection| {
                let a = c.remote_address();
                format!("{} {}", a.ip(), a.port())
            };
            let (status, body) = if path == "/whoami" {
                (200, Bytes::from(peer(&conn)))
            } else if let Some(n) = path.strip_prefix("/bytes/").and_then(|n| n.parse().ok()) {
                let resp = http::Response::builder()
                    .status(200)
                    .body(())
                    .unwrap_or_default();
                if stream.send_response(resp).await.is_err() {
                    return;
                }
                let mut sent = 0u64;
                while sent < n {
                    let len = (n - sent).min(64 * 1024);
                    let mut chunk = vec![0u8; len as usize];
                    crate::pattern::fill(sent, &mut chunk);
                    if stream.send_data(Bytes::from(chunk)).await.is_err() {
                        return;
                    }
                    sent += len;
                }
                let tail = format!("\n--\n{}", peer(&conn));
                let _ = stream.send_data(Bytes::from(tail)).await;
                let _ = stream.finish().await;
                return;
            } else {
                (404, Bytes::from_static(b"not found"))
            };
            let resp = http::Response::builder()
                .status(status)
                .body(())
                .unwrap_or_default();
            if stream.send_response(resp).await.is_ok() {
                let _ = stream.send_data(body).await;
                let _ = stream.finish().await;
            }
        });
    }
}

/// How an HTTP/3 request failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum H3Error {
    /// The server (or Kracauer, as one) closed the connection with this error code.
    #[error("connection closed by the peer with error 0x{0:x}")]
    Closed(u64),
    #[error("no answer within {0:?}")]
    Timeout(Duration),
    #[error("{0}")]
    Other(String),
}

/// An HTTP/3 answer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct H3Reply {
    pub status: u16,
    pub body: Vec<u8>,
    /// The client's own UDP port.
    pub local_port: u16,
}

/// A request's options.
#[derive(Debug, Clone, Default)]
pub struct Request {
    /// The server name sent (and the authority of the URL).
    pub sni: String,
    pub path: String,
    /// The client's UDP port (0: any).
    pub port: u16,
}

/// The client's QUIC configuration from the testbed's TLS client configuration.
pub fn client_config(tls: &ClientConfig) -> Result<quinn::ClientConfig, Error> {
    let mut tls = tls.clone();
    tls.alpn_protocols = vec![b"h3".to_vec()];
    let crypto = quinn::crypto::rustls::QuicClientConfig::try_from(tls)
        .map_err(|e| Error::Setup(format!("QUIC client TLS: {e}")))?;
    Ok(quinn::ClientConfig::new(Arc::new(crypto)))
}

/// One request on a new connection to `server`, run on the caller's runtime.
/// `progress` is called with the body bytes received so far after every chunk.
pub async fn request(
    config: quinn::ClientConfig,
    server: SocketAddr,
    req: &Request,
    mut progress: impl FnMut(u64),
) -> Result<H3Reply, H3Error> {
    let other = |e: &dyn std::fmt::Display| H3Error::Other(e.to_string());
    let any = if server.is_ipv6() { "::" } else { "0.0.0.0" };
    let socket = UdpSocket::bind((any, req.port)).map_err(|e| other(&e))?;
    let local_port = socket.local_addr().map_err(|e| other(&e))?.port();
    let runtime = quinn::default_runtime().ok_or_else(|| H3Error::Other("no runtime".into()))?;
    let mut endpoint =
        quinn::Endpoint::new(quinn::EndpointConfig::default(), None, socket, runtime)
            .map_err(|e| other(&e))?;
    endpoint.set_default_client_config(config);
    let work = async {
        let conn = endpoint
            .connect(server, &req.sni)
            .map_err(|e| other(&e))?
            .await
            .map_err(|e| match e {
                quinn::ConnectionError::ConnectionClosed(c) => {
                    H3Error::Closed(u64::from(c.error_code))
                }
                e => other(&e),
            })?;
        let (mut driver, mut send) = h3::client::new(h3_quinn::Connection::new(conn.clone()))
            .await
            .map_err(|e| other(&e))?;
        let drive = tokio::spawn(async move {
            let _ = std::future::poll_fn(|cx| driver.poll_close(cx)).await;
        });
        let url = format!("https://{}{}", req.sni, req.path);
        let request = http::Request::get(url).body(()).map_err(|e| other(&e))?;
        let mut stream = send.send_request(request).await.map_err(|e| other(&e))?;
        stream.finish().await.map_err(|e| other(&e))?;
        let resp = stream.recv_response().await.map_err(|e| other(&e))?;
        let mut body = Vec::new();
        while let Some(mut chunk) = stream.recv_data().await.map_err(|e| other(&e))? {
            while chunk.has_remaining() {
                let c = chunk.chunk();
                body.extend_from_slice(c);
                let n = c.len();
                chunk.advance(n);
            }
            progress(body.len() as u64);
        }
        conn.close(0u32.into(), b"done");
        drive.abort();
        Ok(H3Reply {
            status: resp.status().as_u16(),
            body,
            local_port,
        })
    };
    let result = tokio::time::timeout(REQUEST_TIMEOUT, work)
        .await
        .unwrap_or(Err(H3Error::Timeout(REQUEST_TIMEOUT)));
    endpoint.wait_idle().await;
    result
}

/// One request from namespace `ns`.
pub fn get(
    ns: &Netns,
    tls: &ClientConfig,
    server: SocketAddr,
    req: Request,
    progress: impl FnMut(u64) + Send,
) -> Result<Result<H3Reply, H3Error>, Error> {
    let config = client_config(tls)?;
    ns.run(move || {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .map_err(Error::Io)?;
        Ok(rt.block_on(request(config, server, &req, progress)))
    })?
}

/// `reqs`, each on its own connection, all at once from namespace `ns`; the answers in
/// the same order.
pub fn get_many(
    ns: &Netns,
    tls: &ClientConfig,
    server: SocketAddr,
    reqs: Vec<Request>,
) -> Result<Vec<Result<H3Reply, H3Error>>, Error> {
    let config = client_config(tls)?;
    ns.run(move || {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .map_err(Error::Io)?;
        Ok(rt.block_on(async move {
            let tasks: Vec<_> = reqs
                .into_iter()
                .map(|r| {
                    let c = config.clone();
                    tokio::spawn(async move { request(c, server, &r, |_| {}).await })
                })
                .collect();
            let mut out = Vec::new();
            for t in tasks {
                out.push(
                    t.await
                        .unwrap_or_else(|e| Err(H3Error::Other(e.to_string()))),
                );
            }
            out
        }))
    })?
}
