//! TLS ClientHello peeker: SNI, ALPN and the ECH marker from the first records.
