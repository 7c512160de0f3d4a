//! HTTP/1.x request-head peeker: the `Host` a request names (RFC 9112 §3.2).
