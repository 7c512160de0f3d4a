//! The QUIC half of the recorder: `udp-listen` records the datagrams a client sends to
//! a UDP port, `quic-client` is a quinn client that sends its first flight there.

use std::net::UdpSocket;
use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::{USAGE, opt};

/// Most datagrams recorded.
const MAX_DATAGRAMS: usize = 16;
/// The first flight ends at this much silence. Clients retransmit an unanswered Initial
/// only after a probe timeout of at least an initial RTT (Chromium 100 ms and more,
/// quinn and ngtcp2 333 ms), so a shorter gap keeps the first flight alone.
const FLIGHT_GAP: Duration = Duration::from_millis(80);

/// `udp-listen --out FILE [--port-file PATH]`: binds 127.0.0.1 on a free UDP port, waits
/// up to 60 s for a first datagram, then records datagrams until [`FLIGHT_GAP`] passes
/// with none (at most [`MAX_DATAGRAMS`]). FILE holds each datagram as a 2-byte
/// big-endian length and its bytes. Nothing is answered.
pub fn udp_listen(args: &[String]) -> Result<(), String> {
    let out = opt(args, "--out").ok_or(USAGE)?;
    let socket = UdpSocket::bind("127.0.0.1:0").map_err(|e| format!("bind: {e}"))?;
    let port = socket.local_addr().map_err(|e| e.to_string())?.port();
    crate::announce_port(port, opt(args, "--port-file"))?;

    let mut buf = [0u8; 65536];
    let mut file = Vec::new();
    let mut count = 0;
    let mut peer = None;
    socket
        .set_read_timeout(Some(Duration::from_secs(60)))
        .map_err(|e| e.to_string())?;
    let start = Instant::now();
    while count < MAX_DATAGRAMS {
        let (n, from) = match socket.recv_from(&mut buf) {
            Ok(got) => got,
            Err(_) if count > 0 => break,
            Err(e) => return Err(format!("no datagram in 60 s: {e}")),
        };
        // One client only: another sender's datagrams are not its flight.
        if *peer.get_or_insert(from) != from {
            continue;
        }
        let len = u16::try_from(n).map_err(|_| "datagram over 65535 bytes".to_owned())?;
        file.extend_from_slice(&len.to_be_bytes());
        file.extend_from_slice(&buf[..n]);
        count += 1;
        socket
            .set_read_timeout(Some(FLIGHT_GAP))
            .map_err(|e| e.to_string())?;
    }
    std::fs::write(out, &file).map_err(|e| format!("{out}: {e}"))?;
    eprintln!(
        "recorder: {count} datagram(s), {} bytes, from {} in {:?} -> {out}",
        file.len() - 2 * count,
        peer.map_or_else(String::new, |p| p.to_string()),
        start.elapsed(),
    );
    Ok(())
}

/// `quic-client --port N [--servername NAME] [--alpn P1,P2]`: a quinn 0.11 client
/// (rustls 0.23, aws-lc-rs: X25519MLKEM768 offered) connects to 127.0.0.1:N and gives up
/// after 3 s. Its Initials are what the listener records.
pub fn quic_client(args: &[String]) -> Result<(), String> {
    let port: u16 = opt(args, "--port")
        .ok_or(USAGE)?
        .parse()
        .map_err(|e| format!("--port: {e}"))?;
    let servername = opt(args, "--servername").unwrap_or("a.example").to_owned();
    let alpn = opt(args, "--alpn").unwrap_or("h3");

    let mut tls = rustls::ClientConfig::builder()
        .with_root_certificates(rustls::RootCertStore::empty())
        .with_no_client_auth();
    tls.alpn_protocols = alpn.split(',').map(|p| p.as_bytes().to_vec()).collect();
    let crypto = quinn::crypto::rustls::QuicClientConfig::try_from(tls)
        .map_err(|e| format!("quinn crypto: {e}"))?;
    let config = quinn::ClientConfig::new(Arc::new(crypto));

    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| format!("tokio: {e}"))?;
    runtime.block_on(async {
        let mut endpoint = quinn::Endpoint::client("127.0.0.1:0".parse().map_err(|e| format!("{e}"))?)
            .map_err(|e| format!("endpoint: {e}"))?;
        endpoint.set_default_client_config(config);
        let connecting = endpoint
            .connect(([127, 0, 0, 1], port).into(), &servername)
            .map_err(|e| format!("connect: {e}"))?;
        // The listener never answers: the attempt times out, as it should.
        let _ = tokio::time::timeout(Duration::from_secs(3), connecting).await;
        endpoint.close(0u32.into(), b"");
        Ok::<(), String>(())
    })?;
    eprintln!("recorder: quinn client done");
    Ok(())
}
