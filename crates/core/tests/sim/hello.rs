//! ClientHellos for the TLS scenarios: real captured ones from `testdata/`, and the
//! same with the server name changed to one that has no route.

/// rustls 0.23 with X25519MLKEM768: 1,484 bytes, two segments at MSS 1440.
pub const RUSTLS_PQ: &[u8] = include_bytes!("../../testdata/rustls_pq.bin");
/// Chromium with X25519MLKEM768 and ECH GREASE: 1,815 bytes.
pub const CHROMIUM: &[u8] = include_bytes!("../../testdata/chromium.bin");
/// curl (OpenSSL), 517 bytes.
pub const CURL: &[u8] = include_bytes!("../../testdata/curl.bin");

/// OpenSSL `s_client`, TLS 1.3, 315 bytes.
pub const OPENSSL: &[u8] = include_bytes!("../../testdata/openssl_s_client.bin");
/// OpenSSL `s_client -tls1_2`, 206 bytes.
pub const OPENSSL_TLS12: &[u8] = include_bytes!("../../testdata/openssl_tls12.bin");
/// OpenSSL `s_client -noservername`: no server_name extension.
pub const OPENSSL_NO_SNI: &[u8] = include_bytes!("../../testdata/openssl_no_sni.bin");

/// `hello` with its `a.example` server name replaced by `b.example` (same length, so
/// every length field stays right).
pub fn with_unknown_name(hello: &[u8]) -> Vec<u8> {
    let mut h = hello.to_vec();
    let at = h
        .windows(9)
        .position(|w| w == b"a.example")
        .expect("the vector names a.example");
    h[at] = b'b';
    h
}

/// `hello` grown by a padding extension (RFC 7685) of `extra` bytes of zeros (at least
/// 4, the extension's header), every length field set to match: a hello of any size the
/// peeker reads like the original.
pub fn padded(hello: &[u8], extra: usize) -> Vec<u8> {
    let mut h = hello.to_vec();
    let sid = 5 + 4 + 2 + 32;
    let suites = sid + 1 + usize::from(h[sid]);
    let compression = suites + 2 + usize::from(u16::from_be_bytes([h[suites], h[suites + 1]]));
    let ext_len_at = compression + 1 + usize::from(h[compression]);
    let pad = extra.max(4) - 4;
    h.extend_from_slice(&21u16.to_be_bytes());
    h.extend_from_slice(&(pad as u16).to_be_bytes());
    h.resize(h.len() + pad, 0);
    let grow = |h: &mut Vec<u8>, at: usize, width: usize| {
        let mut v = 0usize;
        for i in 0..width {
            v = v << 8 | usize::from(h[at + i]);
        }
        v += pad + 4;
        for i in (0..width).rev() {
            h[at + i] = (v >> (8 * (width - 1 - i))) as u8;
        }
    };
    grow(&mut h, ext_len_at, 2);
    grow(&mut h, 6, 3);
    grow(&mut h, 3, 2);
    h
}
