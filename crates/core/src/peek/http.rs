//! HTTP/1.x request-head peeker: the `Host` a request names (RFC 9112 §3.2).
//!
//! [`HttpPeeker::peek`] takes the contiguous bytes a client has sent so far and answers
//! [`HttpPeek::NeedMore`], [`HttpPeek::Found`], [`HttpPeek::NotHttp`] or
//! [`HttpPeek::Invalid`]. It reads the request line and the header lines up to the empty
//! line that ends the head, never past the cap (16 KiB by default), and allocates nothing
//! until it has a whole head: only the returned [`HostName`] is allocated.
//!
//! The bytes are read in order and the first decisive byte decides, so an answer other
//! than `NeedMore` on a prefix is the answer on every longer input: a request split at
//! any byte boundary ends with the same answer as the whole request.
//!
//! Choices where the RFCs leave room, all on the strict side because the backend parses
//! these bytes again and must not see a different host than the one we routed on:
//!
//! - **Line ends are CRLF only.** RFC 9112 §2.2 lets a recipient accept a bare LF; we do
//!   not (every real client sends CRLF, and a backend that reads LF differently could
//!   disagree with us about which line is `Host`). A bare LF or a CR not followed by LF
//!   after the request line has been recognised is [`HttpError::BareLf`] /
//!   [`HttpError::BareCr`].
//! - **`NotHttp` versus `Invalid`.** Until the request line is recognised as
//!   `token SP target SP HTTP/DIGIT.DIGIT`, any deviation is `NotHttp`, decided at the first
//!   byte that cannot fit (a TLS record's `0x16` is refused at once, so TLS can be tried).
//!   This includes empty lines before the request line (RFC 9112 §2.2's leniency is about
//!   persistent connections, not a fresh one), HTTP/0.9's version-less line, two spaces in
//!   a row, and target bytes outside `0x21..=0x7e`. Once the version is there, the bytes
//!   are HTTP and every problem is `Invalid(reason)`. Versions other than 1.0 and 1.1
//!   (including the HTTP/2 prior-knowledge preface `PRI * HTTP/2.0`) are
//!   [`HttpError::UnsupportedVersion`].
//! - **Header lines** (RFC 9112 §5): a line starting with whitespace (obs-fold, or
//!   whitespace between the request line and the first field) is [`HttpError::ObsFold`];
//!   whitespace between the field name and the colon is
//!   [`HttpError::WhitespaceBeforeColon`] (§5.1 says MUST reject); control characters other
//!   than HTAB in a value are [`HttpError::ControlCharacter`]; bytes `0x80..=0xff`
//!   (obs-text) are allowed in values other than `Host`.
//! - **Host** (RFC 9112 §3.2, RFC 9110 §7.2): the field name matches case-insensitively,
//!   whitespace around the value is dropped, a port must be at most five digits and
//!   `<= 65535` (an empty port after `:` is allowed, as the URI grammar does). `[v6]` is
//!   an IPv6 address (no zone, no IPvFuture), a dotted quad is an IPv4 address, anything
//!   else goes through [`HostName::parse`]. A name whose last label is all digits but
//!   which is not an IPv4 address (`1.2.3.04`, `256.1.1.1`) is refused: no top-level
//!   domain is numeric, and such strings are address spoofing attempts. An empty `Host`
//!   (allowed by RFC 9110 §7.2 for targets without an authority) gives `host: None`.
//! - **Targets** (RFC 9112 §3.2): origin-form (`/…`) and asterisk-form (`*`) use `Host`;
//!   absolute-form `http://` or `https://` (scheme case-insensitive) uses its authority,
//!   which wins over `Host`, though `Host` must still be present (HTTP/1.1), single and
//!   valid; userinfo (`user@`) is refused (RFC 9110 §4.2.4), as are other schemes and the
//!   authority-form of `CONNECT`, which only a proxy serves.

use core::net::{Ipv4Addr, Ipv6Addr};

use crate::name::{HostName, NameError};

/// Default cap on the request head, request line included, in bytes.
pub const DEFAULT_MAX_HEAD: usize = 16 * 1024;

/// What the engine sends to an HTTP client whose host has no route (and no default).
pub const MISDIRECTED_RESPONSE: &[u8] = b"HTTP/1.1 421 Misdirected Request\r\n\
Content-Type: text/plain; charset=utf-8\r\n\
Content-Length: 45\r\n\
Connection: close\r\n\
\r\n\
No service is configured for this host name.\n";

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
}

/// The peeker's answer for the bytes received so far.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum HttpPeek {
    /// The head is not complete yet and nothing is wrong so far: wait for more bytes.
    NeedMore,
    /// A whole, valid request head. `host` is `None` for HTTP/1.0 without `Host` and for
    /// an empty `Host`.
    Found {
        /// The host the request is for.
        host: Option<HttpHost>,
    },
    /// These bytes do not start an HTTP/1.x request line.
    NotHttp,
    /// An HTTP/1.x request that is malformed or cannot be routed.
    Invalid(HttpError),
}

/// Why an HTTP request head is refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum HttpError {
    #[error("the request head does not end within the size cap")]
    TooLarge,
    #[error("the HTTP version is neither 1.0 nor 1.1")]
    UnsupportedVersion,
    #[error("the request line does not end right after the HTTP version")]
    BadRequestLine,
    #[error("a line ends in a bare LF instead of CRLF")]
    BareLf,
    #[error("a CR is not followed by LF")]
    BareCr,
    #[error("a header line starts with whitespace (obs-fold)")]
    ObsFold,
    #[error("whitespace between a field name and its colon (RFC 9112 §5.1)")]
    WhitespaceBeforeColon,
    #[error("a header line has no colon")]
    MissingColon,
    #[error("a field name is empty or has a byte that is not a token character")]
    BadFieldName,
    #[error("a field value has a control character")]
    ControlCharacter,
    #[error("more than one Host header")]
    DuplicateHost,
    #[error("an HTTP/1.1 request without a Host header")]
    MissingHost,
    #[error("the host is not a valid name: {0}")]
    BadHostName(NameError),
    #[error("the host's last label is numeric but it is not an IPv4 address")]
    NumericHostName,
    #[error("the bracketed host is not an IPv6 address")]
    BadIpLiteral,
    #[error("the port after the host is not a number from 0 to 65535")]
    BadPort,
    #[error(
        "the request target is not origin-form, asterisk-form or an http(s) absolute URI without userinfo"
    )]
    BadTarget,
}

/// The HTTP peeker, with its cap on the size of the request head.
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
    /// A peeker that gives up with [`HttpError::TooLarge`] when the head (request line,
    /// fields and the final empty line) would be longer than `max_head` bytes.
    pub const fn new(max_head: usize) -> Self {
        Self { max_head }
    }

    /// The cap on the request head, in bytes.
    pub const fn max_head(&self) -> usize {
        self.max_head
    }

    /// Looks at the bytes received so far (always from the start of the connection).
    pub fn peek(&self, bytes: &[u8]) -> HttpPeek {
        if bytes.is_empty() {
            return HttpPeek::NeedMore;
        }
        let window = &bytes[..bytes.len().min(self.max_head)];
        match scan(window) {
            Scan::Decided(answer) => answer,
            Scan::Complete(head) => match head.resolve() {
                Ok(host) => HttpPeek::Found { host },
                Err(e) => HttpPeek::Invalid(e),
            },
            Scan::Incomplete if bytes.len() >= self.max_head => {
                HttpPeek::Invalid(HttpError::TooLarge)
            }
            Scan::Incomplete => HttpPeek::NeedMore,
        }
    }
}

/// Where the byte-by-byte scan stopped.
enum Scan<'a> {
    /// Ran out of bytes with nothing wrong so far.
    Incomplete,
    /// A byte decided the answer.
    Decided(HttpPeek),
    /// The empty line that ends the head was read.
    Complete(Head<'a>),
}

/// The parts of a complete head that the host depends on.
struct Head<'a> {
    http11: bool,
    target: &'a [u8],
    /// The `Host` value, whitespace trimmed.
    host: Option<&'a [u8]>,
}

/// RFC 9110 §5.6.2 `tchar`.
fn is_tchar(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b)
}

fn invalid(e: HttpError) -> Scan<'static> {
    Scan::Decided(HttpPeek::Invalid(e))
}

fn not_http() -> Scan<'static> {
    Scan::Decided(HttpPeek::NotHttp)
}

/// Reads `b` in order; the first byte that decides something wins.
fn scan(b: &[u8]) -> Scan<'_> {
    // Request line: method SP target SP "HTTP/" DIGIT "." DIGIT CRLF.
    let mut i = b.iter().position(|&c| !is_tchar(c)).unwrap_or(b.len());
    match b.get(i) {
        None => return Scan::Incomplete,
        Some(b' ') if i > 0 => i += 1,
        Some(_) => return not_http(),
    }
    let t0 = i;
    i += b[i..]
        .iter()
        .position(|&c| !(0x21..=0x7e).contains(&c))
        .unwrap_or(b.len() - i);
    match b.get(i) {
        None => return Scan::Incomplete,
        Some(b' ') if i > t0 => i += 1,
        Some(_) => return not_http(),
    }
    let target = &b[t0..i - 1];
    for &want in b"HTTP/" {
        match b.get(i) {
            None => return Scan::Incomplete,
            Some(&c) if c == want => i += 1,
            Some(_) => return not_http(),
        }
    }
    let mut version = [0u8; 2];
    for (k, slot) in version.iter_mut().enumerate() {
        if k == 1 {
            match b.get(i) {
                None => return Scan::Incomplete,
                Some(b'.') => i += 1,
                Some(_) => return not_http(),
            }
        }
        match b.get(i) {
            None => return Scan::Incomplete,
            Some(c) if c.is_ascii_digit() => {
                *slot = c - b'0';
                i += 1;
            }
            Some(_) => return not_http(),
        }
    }
    let http11 = match version {
        [1, 0] => false,
        [1, 1] => true,
        _ => return invalid(HttpError::UnsupportedVersion),
    };
    match b.get(i) {
        None => return Scan::Incomplete,
        Some(b'\r') => {}
        Some(b'\n') => return invalid(HttpError::BareLf),
        Some(_) => return invalid(HttpError::BadRequestLine),
    }
    match b.get(i + 1) {
        None => return Scan::Incomplete,
        Some(b'\n') => i += 2,
        Some(_) => return invalid(HttpError::BareCr),
    }

    // Header lines, up to the empty line.
    let mut host: Option<&[u8]> = None;
    loop {
        match b.get(i) {
            None => return Scan::Incomplete,
            Some(b'\r') => {
                return match b.get(i + 1) {
                    None => Scan::Incomplete,
                    Some(b'\n') => Scan::Complete(Head {
                        http11,
                        target,
                        host,
                    }),
                    Some(_) => invalid(HttpError::BareCr),
                };
            }
            Some(b'\n') => return invalid(HttpError::BareLf),
            Some(b' ' | b'\t') => return invalid(HttpError::ObsFold),
            Some(_) => {}
        }
        let n0 = i;
        i += b[i..]
            .iter()
            .position(|&c| !is_tchar(c))
            .unwrap_or(b.len() - i);
        match b.get(i) {
            None => return Scan::Incomplete,
            Some(b':') if i > n0 => {}
            Some(b' ' | b'\t') => return invalid(HttpError::WhitespaceBeforeColon),
            Some(b'\r' | b'\n') => return invalid(HttpError::MissingColon),
            Some(_) => return invalid(HttpError::BadFieldName),
        }
        let is_host = b[n0..i].eq_ignore_ascii_case(b"host");
        if is_host && host.is_some() {
            return invalid(HttpError::DuplicateHost);
        }
        i += 1;
        let v0 = i;
        loop {
            match b.get(i) {
                None => return Scan::Incomplete,
                Some(b'\r') => match b.get(i + 1) {
                    None => return Scan::Incomplete,
                    Some(b'\n') => break,
                    Some(_) => return invalid(HttpError::BareCr),
                },
                Some(b'\n') => return invalid(HttpError::BareLf),
                Some(&c) if c == b'\t' || c >= 0x20 && c != 0x7f => i += 1,
                Some(_) => return invalid(HttpError::ControlCharacter),
            }
        }
        if is_host {
            host = Some(b[v0..i].trim_ascii());
        }
        i += 2;
    }
}

impl Head<'_> {
    /// The host of a complete head: the absolute-form target's authority if there is one,
    /// else the `Host` header.
    fn resolve(&self) -> Result<Option<HttpHost>, HttpError> {
        let from_header = match self.host {
            Some(value) => parse_host(value)?,
            None if self.http11 => return Err(HttpError::MissingHost),
            None => None,
        };
        match target_authority(self.target)? {
            Some(authority) => match parse_host(authority)? {
                Some(host) => Ok(Some(host)),
                None => Err(HttpError::BadTarget),
            },
            None => Ok(from_header),
        }
    }
}

/// The authority of an absolute-form target, `None` for origin-form and asterisk-form.
fn target_authority(target: &[u8]) -> Result<Option<&[u8]>, HttpError> {
    if target.starts_with(b"/") || target == b"*" {
        return Ok(None);
    }
    let rest = strip_prefix_ignore_case(target, b"http://")
        .or_else(|| strip_prefix_ignore_case(target, b"https://"))
        .ok_or(HttpError::BadTarget)?;
    let end = rest
        .iter()
        .position(|&c| matches!(c, b'/' | b'?' | b'#'))
        .unwrap_or(rest.len());
    let authority = &rest[..end];
    if authority.contains(&b'@') {
        return Err(HttpError::BadTarget);
    }
    Ok(Some(authority))
}

fn strip_prefix_ignore_case<'a>(bytes: &'a [u8], prefix: &[u8]) -> Option<&'a [u8]> {
    let (head, rest) = bytes.split_at_checked(prefix.len())?;
    head.eq_ignore_ascii_case(prefix).then_some(rest)
}

/// `uri-host [":" port]` (RFC 9110 §7.2), already trimmed. Empty gives `None`.
fn parse_host(value: &[u8]) -> Result<Option<HttpHost>, HttpError> {
    if value.is_empty() {
        return Ok(None);
    }
    let (host, port) = if let Some(inner) = value.strip_prefix(b"[") {
        let close = inner
            .iter()
            .position(|&c| c == b']')
            .ok_or(HttpError::BadIpLiteral)?;
        let addr = core::str::from_utf8(&inner[..close])
            .ok()
            .and_then(|s| s.parse::<Ipv6Addr>().ok())
            .ok_or(HttpError::BadIpLiteral)?;
        (HostKind::V6(addr), &inner[close + 1..])
    } else {
        let colon = value.iter().position(|&c| c == b':').unwrap_or(value.len());
        (HostKind::Other(&value[..colon]), &value[colon..])
    };
    if let Some(digits) = port.strip_prefix(b":") {
        check_port(digits)?;
    } else if !port.is_empty() {
        return Err(HttpError::BadPort);
    }
    let host = match host {
        HostKind::V6(addr) => HttpHost::Ipv6(addr),
        HostKind::Other(name) => parse_name_or_v4(name)?,
    };
    Ok(Some(host))
}

enum HostKind<'a> {
    V6(Ipv6Addr),
    Other(&'a [u8]),
}

fn check_port(digits: &[u8]) -> Result<(), HttpError> {
    if digits.len() > 5 || !digits.iter().all(u8::is_ascii_digit) {
        return Err(HttpError::BadPort);
    }
    let value = digits
        .iter()
        .fold(0u32, |acc, &d| acc * 10 + u32::from(d - b'0'));
    if value > u32::from(u16::MAX) {
        return Err(HttpError::BadPort);
    }
    Ok(())
}

fn parse_name_or_v4(name: &[u8]) -> Result<HttpHost, HttpError> {
    let trimmed = name.strip_suffix(b".").unwrap_or(name);
    let last_label = trimmed.rsplit(|&c| c == b'.').next().unwrap_or(trimmed);
    if !last_label.is_empty() && last_label.iter().all(u8::is_ascii_digit) {
        // Only ASCII digits and whatever else passed the header scan; from_utf8 refuses
        // obs-text, and the dotted-quad parser refuses everything but `d.d.d.d`.
        return core::str::from_utf8(name)
            .ok()
            .and_then(|s| s.parse::<Ipv4Addr>().ok())
            .map(HttpHost::Ipv4)
            .ok_or(HttpError::NumericHostName);
    }
    HostName::parse(name)
        .map(HttpHost::Name)
        .map_err(HttpError::BadHostName)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn misdirected_response_content_length_matches_its_body() {
        let text = core::str::from_utf8(MISDIRECTED_RESPONSE).unwrap();
        let (head, body) = text.split_once("\r\n\r\n").unwrap();
        let length: usize = head
            .lines()
            .find_map(|l| l.strip_prefix("Content-Length: "))
            .unwrap()
            .parse()
            .unwrap();
        assert_eq!(length, body.len());
        assert!(head.starts_with("HTTP/1.1 421 Misdirected Request\r\n"));
        assert!(head.contains("\r\nConnection: close"));
        assert_eq!(misdirected_response(), MISDIRECTED_RESPONSE);
    }

    #[test]
    fn port_of_five_digits_up_to_65535_is_accepted() {
        assert_eq!(check_port(b"65535"), Ok(()));
        assert_eq!(check_port(b""), Ok(()));
        assert_eq!(check_port(b"65536"), Err(HttpError::BadPort));
        assert_eq!(check_port(b"000080"), Err(HttpError::BadPort));
        assert_eq!(check_port(b"8o"), Err(HttpError::BadPort));
    }
}
