//! HTTP/1.x request-head peeker: the `Host` a request names (RFC 9112 §3.2).
//!
//! [`HttpPeeker::peek`] takes the contiguous bytes a client has sent so far and answers
//! [`HttpPeek::NeedMore`], [`HttpPeek::Found`], [`HttpPeek::NotHttp`] or
//! [`HttpPeek::Invalid`]. It reads the request line and the header lines only until the
//! host is certain, never past the cap (16 KiB by default), and allocates nothing but the
//! returned [`HostName`].
//!
//! The bytes are read in order and the first decisive byte decides, so an answer other
//! than `NeedMore` on a prefix is the answer on every longer input: a request split at
//! any byte boundary ends with the same answer as the whole request.
//!
//! # When the host is certain
//!
//! - **Absolute-form** (`GET http://a.example/ HTTP/1.1`): at the end of the request line.
//!   Its authority is the host whatever the `Host` header says (RFC 9112 §3.2.2: the
//!   origin server MUST ignore `Host` then; nginx does), for any `scheme://`, as nginx.
//! - **Origin-form and asterisk-form**: at the end of the first `Host` line, once the next
//!   byte shows the line is not continued (obs-fold). The rest of the head, however long,
//!   is not read: the backend reads it.
//! - **No `Host` at all**: at the empty line that ends the head. HTTP/1.0 then has no
//!   host; HTTP/1.1 is [`HttpError::MissingHost`] (RFC 9112 §3.2: the server MUST answer
//!   400, as nginx does).
//!
//! A second `Host` line is not looked for. RFC 9112 §3.2 obliges the server to answer 400
//! to a request with more than one (nginx, Apache and HAProxy do), so such a request
//! reaches a backend that refuses it; and the route Kracauer picks from the first is one
//! the client could have asked for with that `Host` alone, so nothing is gained by the
//! second. Waiting for the end of the head to look for one would stall every long head
//! (a 20 KB cookie after `Host`) for no client's benefit.
//!
//! # Never stricter than the server behind
//!
//! What nginx accepts is accepted: a bare LF ends a line (RFC 9112 §2.2 allows it), empty
//! lines before the request line are skipped (§2.2), runs of spaces separate the
//! request line's parts (§3), a minor version above 1 is read as HTTP/1.1 (RFC 9110
//! §6.2), spaces may follow the version, any byte but SP, CR, LF and NUL may be in the
//! target, a field whose name has a visible non-token byte is skipped (nginx's
//! `ignore_invalid_headers`), control characters other than NUL may be in other fields'
//! values, and the port after a host name is not judged (nginx ignores it too). A `Host`
//! that is not a name Kracauer can route — no valid host name, a numeric last label that
//! is not an IPv4 address, a bad `[IPv6]` literal — is [`HttpHost::Unusable`]: the
//! request goes to the default backend, as nginx sends a name it does not know to its
//! default server.
//!
//! The rules kept are those where another parser could read a different host from the
//! same bytes, or that RFC 9112 says a server MUST reject (all are 400 in nginx):
//!
//! | rule | [`HttpError`] |
//! |---|---|
//! | a version that is not `1.x` (`HTTP/2.0`, `HTTP/0.9` with a version) | `UnsupportedVersion` |
//! | anything after the version but spaces and the line end | `BadRequestLine` |
//! | a CR not followed by LF (a parser may end a line there, §2.2) | `BareCr` |
//! | a line that starts with whitespace: obs-fold or whitespace before the first field (§5.2, §2.2: it may continue `Host`) | `ObsFold` |
//! | whitespace between a field name and its colon (§5.1: MUST reject) | `WhitespaceBeforeColon` |
//! | a header line without a colon, an empty field name or a control byte in one | `MissingColon`, `BadFieldName` |
//! | NUL in a field value | `ControlCharacter` |
//! | HTTP/1.1 without `Host` (§3.2: MUST be 400) | `MissingHost` |
//! | a target that is neither origin-, asterisk- nor absolute-form, or an authority with userinfo (RFC 9110 §4.2.4) or none | `BadTarget` |
//!
//! The engine routes an `Invalid` request to the default backend with its bytes as they
//! came, or, with no default, answers `400 Bad Request`; [`HttpError::TooLarge`] (no
//! host within the cap) gets `431 Request Header Fields Too Large` instead.
//!
//! Until the request line is recognised as `token SP+ target SP+ HTTP/DIGIT.DIGIT`, any
//! deviation is `NotHttp`, decided at the first byte that cannot fit (a TLS record's
//! `0x16` is refused at once, so TLS can be tried). HTTP/0.9's version-less line is
//! `NotHttp` too.

mod scan;

use core::net::{Ipv4Addr, Ipv6Addr};

use crate::name::HostName;
use crate::name::NameError;

/// Default cap on the request head, request line included, in bytes.
pub const DEFAULT_MAX_HEAD: usize = 16 * 1024;

/// What the engine sends to an HTTP client whose host has no route (and no default).
pub const MISDIRECTED_RESPONSE: &[u8] = b"HTTP/1.1 421 Misdirected Request\r\n\
Content-Type: text/plain; charset=utf-8\r\n\
Content-Length: 45\r\n\
Connection: close\r\n\
\r\n\
No service is configured for this host name.\n";

/// What the engine sends to an HTTP client whose request head cannot be read to a host
/// ([`HttpPeek::Invalid`]), when there is no default backend.
pub const BAD_REQUEST_RESPONSE: &[u8] = b"HTTP/1.1 400 Bad Request\r\n\
Content-Type: text/plain; charset=utf-8\r\n\
Content-Length: 36\r\n\
Connection: close\r\n\
\r\n\
The request head could not be read.\n";

/// What the engine sends to an HTTP client that named no host within the cap, when there
/// is no default backend.
pub const HEADERS_TOO_LARGE_RESPONSE: &[u8] = b"HTTP/1.1 431 Request Header Fields Too Large\r\n\
Content-Type: text/plain; charset=utf-8\r\n\
Content-Length: 44\r\n\
Connection: close\r\n\
\r\n\
The request head is too large to be routed.\n";

/// The refusal answer for an unknown host: `421 Misdirected Request` with
/// `Connection: close`, `Content-Length` and a one-line body.
pub const fn misdirected_response() -> &'static [u8] {
    MISDIRECTED_RESPONSE
}

/// The host a request named.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum HttpHost {
    /// A registered name, validated and normalised by [`HostName::parse`].
    Name(HostName),
    /// An IPv4 literal (`203.0.113.10`).
    Ipv4(Ipv4Addr),
    /// An IPv6 literal, written in brackets (`[2001:db8::1]`).
    Ipv6(Ipv6Addr),
    /// A value that is none of these, and why: routed as a request without a name.
    Unusable(HttpError),
}

/// The peeker's answer for the bytes received so far.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum HttpPeek {
    /// The host is not certain yet and nothing is wrong so far: wait for more bytes.
    NeedMore,
    /// The host is certain. `host` is `None` for HTTP/1.0 without `Host` and for an empty
    /// `Host`.
    Found {
        /// The host the request is for.
        host: Option<HttpHost>,
    },
    /// These bytes do not start an HTTP/1.x request line.
    NotHttp,
    /// An HTTP/1.x request whose host cannot be read with certainty.
    Invalid(HttpError),
}

/// Why an HTTP request head names no host.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum HttpError {
    #[error("no host within the size cap")]
    TooLarge,
    #[error("the HTTP version is not 1.x")]
    UnsupportedVersion,
    #[error("the request line does not end right after the HTTP version")]
    BadRequestLine,
    #[error("a CR is not followed by LF")]
    BareCr,
    #[error("a header line starts with whitespace (obs-fold)")]
    ObsFold,
    #[error("whitespace between a field name and its colon (RFC 9112 §5.1)")]
    WhitespaceBeforeColon,
    #[error("a header line has no colon")]
    MissingColon,
    #[error("a field name is empty or has a control byte")]
    BadFieldName,
    #[error("a field value has a NUL byte")]
    ControlCharacter,
    #[error("an HTTP/1.1 request without a Host header")]
    MissingHost,
    #[error("the host is not a valid name: {0}")]
    BadHostName(NameError),
    #[error("the host's last label is numeric but it is not an IPv4 address")]
    NumericHostName,
    #[error("the bracketed host is not an IPv6 address")]
    BadIpLiteral,
    #[error(
        "the request target is not origin-form, asterisk-form or an absolute URI with a host and no userinfo"
    )]
    BadTarget,
}

/// The HTTP peeker, with its cap on the bytes read before the host is certain.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct HttpPeeker {
    max_head: usize,
}

impl Default for HttpPeeker {
    fn default() -> Self {
        Self::new(DEFAULT_MAX_HEAD)
    }
}

/// Peeks with the default cap ([`DEFAULT_MAX_HEAD`]).
pub fn peek(bytes: &[u8]) -> HttpPeek {
    HttpPeeker::default().peek(bytes)
}

impl HttpPeeker {
    /// A peeker that gives up with [`HttpError::TooLarge`] when the host is not certain
    /// within `max_head` bytes.
    pub const fn new(max_head: usize) -> Self {
        Self { max_head }
    }

    /// The cap on the bytes read, in bytes.
    pub const fn max_head(&self) -> usize {
        self.max_head
    }

    /// Looks at the bytes received so far (always from the start of the connection).
    pub fn peek(&self, bytes: &[u8]) -> HttpPeek {
        if bytes.is_empty() {
            return HttpPeek::NeedMore;
        }
        let window = &bytes[..bytes.len().min(self.max_head)];
        match scan::scan(window) {
            Some(answer) => answer,
            None if bytes.len() >= self.max_head => HttpPeek::Invalid(HttpError::TooLarge),
            None => HttpPeek::NeedMore,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn content_length_matches(response: &[u8], status: &str) {
        let text = core::str::from_utf8(response).unwrap();
        let (head, body) = text.split_once("\r\n\r\n").unwrap();
        let length: usize = head
            .lines()
            .find_map(|l| l.strip_prefix("Content-Length: "))
            .unwrap()
            .parse()
            .unwrap();
        assert_eq!(length, body.len(), "{status}");
        assert!(head.starts_with(&format!("HTTP/1.1 {status}\r\n")));
        assert!(head.contains("\r\nConnection: close"));
    }

    #[test]
    fn refusal_responses_have_content_lengths_matching_their_bodies() {
        content_length_matches(MISDIRECTED_RESPONSE, "421 Misdirected Request");
        content_length_matches(BAD_REQUEST_RESPONSE, "400 Bad Request");
        content_length_matches(
            HEADERS_TOO_LARGE_RESPONSE,
            "431 Request Header Fields Too Large",
        );
        assert_eq!(misdirected_response(), MISDIRECTED_RESPONSE);
    }
}
