//! The byte-by-byte scan of a request head behind [`super::HttpPeeker::peek`]: the first
//! decisive byte decides (see the module doc of [`super`]).

use core::net::{Ipv4Addr, Ipv6Addr};

use super::{HttpError, HttpHost, HttpPeek};
use crate::name::HostName;

/// RFC 9110 §5.6.2 `tchar`.
fn is_tchar(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b)
}

fn invalid(e: HttpError) -> Option<HttpPeek> {
    Some(HttpPeek::Invalid(e))
}

fn not_http() -> Option<HttpPeek> {
    Some(HttpPeek::NotHttp)
}

fn found(host: Option<HttpHost>) -> Option<HttpPeek> {
    Some(HttpPeek::Found { host })
}

/// What is at a byte where a line may end.
enum LineEnd {
    /// Not a line end.
    No,
    /// Not enough bytes to tell.
    Incomplete,
    /// A CR not followed by LF.
    BareCr,
    /// LF or CRLF; the next line starts here.
    At(usize),
}

fn line_end(b: &[u8], i: usize) -> LineEnd {
    match b.get(i) {
        None => LineEnd::Incomplete,
        Some(b'\n') => LineEnd::At(i + 1),
        Some(b'\r') => match b.get(i + 1) {
            None => LineEnd::Incomplete,
            Some(b'\n') => LineEnd::At(i + 2),
            Some(_) => LineEnd::BareCr,
        },
        Some(_) => LineEnd::No,
    }
}

/// Reads `b` in order; `None` means nothing is decided yet.
pub(super) fn scan(b: &[u8]) -> Option<HttpPeek> {
    // Empty lines before the request line are skipped (RFC 9112 §2.2).
    let mut i = 0;
    loop {
        match line_end(b, i) {
            LineEnd::Incomplete => return None,
            LineEnd::BareCr => return not_http(),
            LineEnd::At(next) => i = next,
            LineEnd::No => break,
        }
    }
    // Request line: method SP+ target SP+ "HTTP/" DIGIT "." DIGIT SP* line end.
    let m0 = i;
    i += b[i..]
        .iter()
        .position(|&c| !is_tchar(c))
        .unwrap_or(b.len() - i);
    match b.get(i) {
        None => return None,
        Some(b' ') if i > m0 => {}
        Some(_) => return not_http(),
    }
    i = skip_spaces(b, i);
    let t0 = i;
    i += b[i..]
        .iter()
        .position(|&c| matches!(c, b' ' | b'\r' | b'\n' | 0))
        .unwrap_or(b.len() - i);
    match b.get(i) {
        None => return None,
        Some(b' ') if i > t0 => {}
        Some(_) => return not_http(),
    }
    let target = &b[t0..i];
    i = skip_spaces(b, i);
    for &want in b"HTTP/" {
        match b.get(i) {
            None => return None,
            Some(&c) if c == want => i += 1,
            Some(_) => return not_http(),
        }
    }
    let mut version = [0u8; 2];
    for (k, slot) in version.iter_mut().enumerate() {
        if k == 1 {
            match b.get(i) {
                None => return None,
                Some(b'.') => i += 1,
                Some(_) => return not_http(),
            }
        }
        match b.get(i) {
            None => return None,
            Some(c) if c.is_ascii_digit() => {
                *slot = c - b'0';
                i += 1;
            }
            Some(_) => return not_http(),
        }
    }
    let http11 = match version {
        [1, 0] => false,
        [1, _] => true,
        _ => return invalid(HttpError::UnsupportedVersion),
    };
    while matches!(b.get(i), Some(b' ' | b'\t')) {
        i += 1;
    }
    i = match line_end(b, i) {
        LineEnd::Incomplete => return None,
        LineEnd::BareCr => return invalid(HttpError::BareCr),
        LineEnd::No => return invalid(HttpError::BadRequestLine),
        LineEnd::At(next) => next,
    };
    match target_authority(target) {
        Err(e) => return invalid(e),
        Ok(Some(authority)) => return found(parse_host(authority)),
        Ok(None) => {}
    }
    header_lines(b, i, http11)
}

fn skip_spaces(b: &[u8], mut i: usize) -> usize {
    while b.get(i) == Some(&b' ') {
        i += 1;
    }
    i
}

/// The header lines from `i`, up to the first `Host` or the empty line.
fn header_lines(b: &[u8], mut i: usize, http11: bool) -> Option<HttpPeek> {
    loop {
        match line_end(b, i) {
            LineEnd::Incomplete => return None,
            LineEnd::BareCr => return invalid(HttpError::BareCr),
            // The empty line: the head ended without a Host.
            LineEnd::At(_) if http11 => return invalid(HttpError::MissingHost),
            LineEnd::At(_) => return found(None),
            LineEnd::No => {}
        }
        if matches!(b[i], b' ' | b'\t') {
            return invalid(HttpError::ObsFold);
        }
        let n0 = i;
        let mut token = true;
        loop {
            match b.get(i) {
                None => return None,
                Some(b':') if i > n0 => break,
                Some(b':') => return invalid(HttpError::BadFieldName),
                Some(b' ' | b'\t') => return invalid(HttpError::WhitespaceBeforeColon),
                Some(b'\r' | b'\n') => return invalid(HttpError::MissingColon),
                Some(&c) if c < 0x20 || c == 0x7f => return invalid(HttpError::BadFieldName),
                Some(&c) => token &= is_tchar(c),
            }
            i += 1;
        }
        // A name with a visible non-token byte is no field nginx reads; it is skipped.
        let is_host = token && b[n0..i].eq_ignore_ascii_case(b"host");
        i += 1;
        let v0 = i;
        let next = loop {
            match line_end(b, i) {
                LineEnd::Incomplete => return None,
                LineEnd::BareCr => return invalid(HttpError::BareCr),
                LineEnd::At(next) => break next,
                LineEnd::No if b[i] == 0 => return invalid(HttpError::ControlCharacter),
                LineEnd::No => i += 1,
            }
        };
        if is_host {
            // Certain once the next line does not continue this one (obs-fold).
            return match b.get(next) {
                None => None,
                Some(b' ' | b'\t') => invalid(HttpError::ObsFold),
                Some(_) => found(parse_host(b[v0..i].trim_ascii())),
            };
        }
        i = next;
    }
}

/// The authority of an absolute-form target (`scheme://authority/...`), `None` for
/// origin-form and asterisk-form.
fn target_authority(target: &[u8]) -> Result<Option<&[u8]>, HttpError> {
    if target.starts_with(b"/") || target == b"*" {
        return Ok(None);
    }
    let scheme_len = target
        .iter()
        .position(|&c| !(c.is_ascii_alphanumeric() || matches!(c, b'+' | b'-' | b'.')))
        .unwrap_or(target.len());
    let rest = match target.split_at(scheme_len) {
        (scheme, rest) if scheme.first().is_some_and(u8::is_ascii_alphabetic) => {
            rest.strip_prefix(b"://").ok_or(HttpError::BadTarget)?
        }
        _ => return Err(HttpError::BadTarget),
    };
    let end = rest
        .iter()
        .position(|&c| matches!(c, b'/' | b'?' | b'#'))
        .unwrap_or(rest.len());
    let authority = &rest[..end];
    if authority.is_empty() || authority.contains(&b'@') {
        return Err(HttpError::BadTarget);
    }
    Ok(Some(authority))
}

/// `uri-host [":" port]` (RFC 9110 §7.2), already trimmed. Empty gives `None`; what
/// follows the host (a port, or anything after a colon) is not judged, as nginx does not.
fn parse_host(value: &[u8]) -> Option<HttpHost> {
    if value.is_empty() {
        return None;
    }
    if let Some(inner) = value.strip_prefix(b"[") {
        let v6 = inner
            .iter()
            .position(|&c| c == b']')
            .filter(|&close| matches!(inner.get(close + 1), None | Some(b':')))
            .and_then(|close| core::str::from_utf8(&inner[..close]).ok())
            .and_then(|s| s.parse::<Ipv6Addr>().ok());
        return Some(v6.map_or(HttpHost::Unusable(HttpError::BadIpLiteral), HttpHost::Ipv6));
    }
    let colon = value.iter().position(|&c| c == b':').unwrap_or(value.len());
    Some(parse_name_or_v4(&value[..colon]))
}

fn parse_name_or_v4(name: &[u8]) -> HttpHost {
    let trimmed = name.strip_suffix(b".").unwrap_or(name);
    let last_label = trimmed.rsplit(|&c| c == b'.').next().unwrap_or(trimmed);
    if !last_label.is_empty() && last_label.iter().all(u8::is_ascii_digit) {
        // Only ASCII digits and whatever else passed the header scan; from_utf8 refuses
        // obs-text, and the dotted-quad parser refuses everything but `d.d.d.d`.
        return core::str::from_utf8(name)
            .ok()
            .and_then(|s| s.parse::<Ipv4Addr>().ok())
            .map_or(
                HttpHost::Unusable(HttpError::NumericHostName),
                HttpHost::Ipv4,
            );
    }
    HostName::parse(name).map_or_else(
        |e| HttpHost::Unusable(HttpError::BadHostName(e)),
        HttpHost::Name,
    )
}
