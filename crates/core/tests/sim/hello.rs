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
