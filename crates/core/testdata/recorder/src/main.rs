//! Records real TLS ClientHellos for kracauer-core's peek::tls test vectors.
//!
//! `listen --out FILE [--port-file PATH]` binds 127.0.0.1 on a free port (written to
//! PATH, or printed), accepts one connection, reads until one complete ClientHello has
//! arrived (walking record headers and the handshake header), writes exactly the records
//! that carry it to FILE, and closes without answering.
//!
//! `client --port N [--servername NAME] [--alpn P1,P2]` connects to 127.0.0.1:N with a
//! rustls 0.23 client (default aws-lc-rs provider, which offers the X25519MLKEM768 key
//! share) and sends its ClientHello; whatever happens next is ignored.
//!
//! `udp-listen` and `quic-client` do the same for QUIC (see `quic.rs`): the datagrams of
//! a client's first flight, and a quinn client to send one.
//!
//! Run by hand through ../record.sh; not part of the main workspace or of CI.

mod quic;

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let result = match args.first().map(String::as_str) {
        Some("listen") => listen(&args[1..]),
        Some("client") => client(&args[1..]),
        Some("udp-listen") => quic::udp_listen(&args[1..]),
        Some("quic-client") => quic::quic_client(&args[1..]),
        _ => Err(USAGE.to_owned()),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("recorder: {e}");
            ExitCode::FAILURE
        }
    }
}

pub(crate) const USAGE: &str = "usage: recorder listen --out FILE [--port-file PATH]\n\
                     \x20      recorder client --port N [--servername NAME] [--alpn P1,P2]\n\
                     \x20      recorder udp-listen --out FILE [--port-file PATH]\n\
                     \x20      recorder quic-client --port N [--servername NAME] [--alpn P1,P2]";

/// The value following `--name` in `args`, if any.
pub(crate) fn opt<'a>(args: &'a [String], name: &str) -> Option<&'a str> {
    args.iter()
        .position(|a| a == name)
        .and_then(|i| args.get(i + 1))
        .map(String::as_str)
}

fn listen(args: &[String]) -> Result<(), String> {
    let out = opt(args, "--out").ok_or(USAGE)?;
    let listener = TcpListener::bind("127.0.0.1:0").map_err(|e| format!("bind: {e}"))?;
    let port = listener.local_addr().map_err(|e| e.to_string())?.port();
    announce_port(port, opt(args, "--port-file"))?;
    let (mut conn, peer) = listener.accept().map_err(|e| format!("accept: {e}"))?;
    conn.set_read_timeout(Some(Duration::from_secs(30)))
        .map_err(|e| e.to_string())?;
    let mut got = Vec::new();
    let mut reads = 0;
    let mut buf = [0u8; 65536];
    let hello_end = loop {
        if let Some(end) = hello_records_end(&got)? {
            break end;
        }
        let n = conn.read(&mut buf).map_err(|e| format!("read: {e}"))?;
        if n == 0 {
            return Err(format!("{peer} closed after {} bytes", got.len()));
        }
        reads += 1;
        got.extend_from_slice(&buf[..n]);
    };
    std::fs::write(out, &got[..hello_end]).map_err(|e| format!("{out}: {e}"))?;
    eprintln!(
        "recorder: {hello_end} bytes of ClientHello records from {peer} in {reads} read(s) -> {out}"
    );
    Ok(())
}

/// Writes `port` to `path` (or prints it).
pub(crate) fn announce_port(port: u16, path: Option<&str>) -> Result<(), String> {
    match path {
        Some(path) => {
            // Write then rename, so a reader never sees a partial number.
            let tmp = format!("{path}.tmp");
            std::fs::write(&tmp, format!("{port}\n")).map_err(|e| format!("{tmp}: {e}"))?;
            std::fs::rename(&tmp, path).map_err(|e| format!("{path}: {e}"))?;
        }
        None => println!("{port}"),
    }
    Ok(())
}

/// The length of the records that complete the first handshake message, once all in.
fn hello_records_end(data: &[u8]) -> Result<Option<usize>, String> {
    let mut pos = 0;
    let mut handshake = Vec::new();
    while let Some(header) = data.get(pos..pos + 5) {
        if header[0] != 0x16 {
            return Err(format!("record type {} is not handshake", header[0]));
        }
        let len = usize::from(u16::from_be_bytes([header[3], header[4]]));
        let Some(payload) = data.get(pos + 5..pos + 5 + len) else {
            return Ok(None);
        };
        handshake.extend_from_slice(payload);
        pos += 5 + len;
        if let [1, a, b, c, ..] = handshake[..] {
            let msg_len = usize::from(a) << 16 | usize::from(b) << 8 | usize::from(c);
            if handshake.len() >= 4 + msg_len {
                return Ok(Some(pos));
            }
        } else if handshake.len() >= 4 {
            return Err(format!(
                "handshake type {} is not ClientHello",
                handshake[0]
            ));
        }
    }
    Ok(None)
}

fn client(args: &[String]) -> Result<(), String> {
    let port: u16 = opt(args, "--port")
        .ok_or(USAGE)?
        .parse()
        .map_err(|e| format!("--port: {e}"))?;
    let servername = opt(args, "--servername").unwrap_or("a.example").to_owned();
    let alpn = opt(args, "--alpn").unwrap_or("h2,http/1.1");

    // No roots: the hello is all we send; the listener never answers.
    let mut config = rustls::ClientConfig::builder()
        .with_root_certificates(rustls::RootCertStore::empty())
        .with_no_client_auth();
    config.alpn_protocols = alpn.split(',').map(|p| p.as_bytes().to_vec()).collect();
    let name = rustls::pki_types::ServerName::try_from(servername)
        .map_err(|e| format!("--servername: {e}"))?;
    let mut tls = rustls::ClientConnection::new(Arc::new(config), name)
        .map_err(|e| format!("rustls: {e}"))?;

    let mut tcp = TcpStream::connect(("127.0.0.1", port)).map_err(|e| format!("connect: {e}"))?;
    let mut hello = Vec::new();
    while tls.wants_write() {
        tls.write_tls(&mut hello).map_err(|e| e.to_string())?;
    }
    tcp.write_all(&hello).map_err(|e| format!("write: {e}"))?;
    // Wait for the listener to close; its silence is expected.
    let _ = tcp.set_read_timeout(Some(Duration::from_secs(10)));
    let _ = tcp.read(&mut [0u8; 1]);
    eprintln!("recorder: client sent {} bytes", hello.len());
    Ok(())
}
