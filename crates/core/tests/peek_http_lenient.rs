//! What the HTTP/1.x request-head peeker accepts because nginx does (issue 19), and when
//! it decides: bare LF, empty lines and runs of spaces in the request line, 1.x minor
//! versions, odd target bytes, ports, skipped fields, unusable hosts, and a host found as
//! soon as it is certain (the first `Host` line, or an absolute-form target).

use kracauer_core::name::{HostName, NameError};
use kracauer_core::peek::http::{HttpError, HttpHost, HttpPeek, peek};

fn found(s: &str) -> HttpPeek {
    HttpPeek::Found {
        host: Some(HttpHost::Name(
            HostName::parse(s.as_bytes()).expect("test names are valid"),
        )),
    }
}

fn invalid(e: HttpError) -> HttpPeek {
    HttpPeek::Invalid(e)
}

fn unusable(e: HttpError) -> HttpPeek {
    HttpPeek::Found {
        host: Some(HttpHost::Unusable(e)),
    }
}

/// `GET / HTTP/1.1`, `lines` as the header lines, and the empty line, with CRLF.
fn request(lines: &[&str]) -> Vec<u8> {
    let mut r = b"GET / HTTP/1.1\r\n".to_vec();
    for l in lines {
        r.extend_from_slice(l.as_bytes());
        r.extend_from_slice(b"\r\n");
    }
    r.extend_from_slice(b"\r\n");
    r
}

/// The whole gives `whole`; every prefix needs more until the answer is certain, and
/// gives `whole` from then on.
fn assert_same_answer_at_every_split(request: &[u8], whole: &HttpPeek) {
    assert_eq!(&peek(request), whole);
    let mut decided = false;
    for cut in 0..request.len() {
        let part = peek(&request[..cut]);
        if decided || part != HttpPeek::NeedMore {
            assert_eq!(&part, whole, "cut at {cut}");
            decided = true;
        }
    }
}

#[test]
fn empty_lines_before_the_request_line_are_skipped() {
    assert_eq!(
        peek(b"\r\n\nGET / HTTP/1.1\r\nHost: a.example\r\n\r\n"),
        found("a.example")
    );
    assert_eq!(peek(b"\r\n\r\n"), HttpPeek::NeedMore);
}

#[test]
fn runs_of_spaces_between_request_line_parts_are_accepted() {
    assert_eq!(
        peek(b"GET  /   HTTP/1.1\r\nHost: a.example\r\n\r\n"),
        found("a.example")
    );
    assert_eq!(peek(b"GET\t/ HTTP/1.1\r\n"), HttpPeek::NotHttp);
}

#[test]
fn control_and_non_ascii_bytes_in_the_target_are_the_backends_to_judge() {
    assert_eq!(
        peek("GET /\x01/k\u{fc}r HTTP/1.1\r\nHost: a.example\r\n\r\n".as_bytes()),
        found("a.example")
    );
    assert_eq!(peek(b"GET /\x00 HTTP/1.1\r\n"), HttpPeek::NotHttp);
}

#[test]
fn higher_minor_versions_read_as_http11() {
    assert_eq!(
        peek(b"GET / HTTP/1.2\r\nHost: a.example\r\n\r\n"),
        found("a.example")
    );
    assert_eq!(
        peek(b"GET / HTTP/1.9\r\n\r\n"),
        invalid(HttpError::MissingHost)
    );
}

#[test]
fn first_host_decides_and_a_second_is_not_looked_for() {
    assert_eq!(
        peek(b"GET / HTTP/1.1\r\nHost: a.example\r\nX: y\r\nhost: b.example\r\n\r\n"),
        found("a.example")
    );
}

#[test]
fn host_is_found_before_the_head_ends_once_its_line_is_not_continued() {
    assert_eq!(
        peek(b"GET / HTTP/1.1\r\nHost: a.example\r\n"),
        HttpPeek::NeedMore
    );
    assert_eq!(
        peek(b"GET / HTTP/1.1\r\nHost: a.example\r\nX"),
        found("a.example")
    );
}

#[test]
fn long_head_after_host_is_not_waited_for() {
    let mut r = b"GET / HTTP/1.1\r\nHost: a.example\r\nCookie: ".to_vec();
    r.resize(20_000, b'c');
    assert_eq!(peek(&r), found("a.example"));
}

#[test]
fn whatever_follows_the_hosts_colon_is_not_judged() {
    for port in ["http", "80:80", "65536", "-1"] {
        let r = request(&[&format!("Host: a.example:{port}")]);
        assert_eq!(peek(&r), found("a.example"), "{port}");
    }
}

#[test]
fn bad_ipv6_literal_is_unusable() {
    for host in [
        &b"[2001:db8::g]"[..],
        b"[2001:db8::1",
        b"[fe80::1%25eth0]",
        b"[v1.x]",
        b"[2001:db8::1]x",
    ] {
        let mut request = b"GET / HTTP/1.1\r\nHost: ".to_vec();
        request.extend_from_slice(host);
        request.extend_from_slice(b"\r\n\r\n");
        assert_eq!(peek(&request), unusable(HttpError::BadIpLiteral));
    }
}

#[test]
fn numeric_name_that_is_not_ipv4_is_unusable() {
    for host in ["256.1.1.1", "1.2.3.04", "1.2.3", "example.123"] {
        let request = format!("GET / HTTP/1.1\r\nHost: {host}\r\n\r\n");
        assert_eq!(
            peek(request.as_bytes()),
            unusable(HttpError::NumericHostName),
            "{host}"
        );
    }
}

#[test]
fn bad_host_name_is_unusable_with_the_name_error() {
    assert_eq!(
        peek(b"GET / HTTP/1.1\r\nHost: a..example\r\n\r\n"),
        unusable(HttpError::BadHostName(NameError::EmptyLabel))
    );
    assert_eq!(
        peek(b"GET / HTTP/1.1\r\nHost: a b.example\r\n\r\n"),
        unusable(HttpError::BadHostName(NameError::BadByte(b' ')))
    );
    assert_eq!(
        peek("GET / HTTP/1.1\r\nHost: b\u{fc}cher.example\r\n\r\n".as_bytes()),
        unusable(HttpError::BadHostName(NameError::BadByte(0xc3)))
    );
}

#[test]
fn absolute_form_is_found_at_the_end_of_the_request_line() {
    assert_eq!(
        peek(b"GET http://a.example/ HTTP/1.1\r"),
        HttpPeek::NeedMore
    );
    assert_eq!(
        peek(b"GET http://a.example/ HTTP/1.1\n"),
        found("a.example")
    );
    assert_eq!(
        peek(b"GET http://a.example/ HTTP/1.1\r\n\r\n"),
        found("a.example")
    );
}

#[test]
fn any_scheme_names_its_authority_as_nginx_reads_it() {
    assert_eq!(
        peek(b"GET ftp://a.example/ HTTP/1.1\r\nHost: b.example\r\n\r\n"),
        found("a.example")
    );
}

#[test]
fn field_with_a_visible_non_token_byte_in_its_name_is_skipped() {
    assert_eq!(
        peek(&request(&[
            "X(y): z",
            "Ho@st: b.example",
            "Host: a.example"
        ])),
        found("a.example")
    );
}

#[test]
fn nul_in_a_value_is_invalid_and_other_controls_are_skipped() {
    assert_eq!(
        peek(b"GET / HTTP/1.1\r\nX: a\x00b\r\nHost: a.example\r\n\r\n"),
        invalid(HttpError::ControlCharacter)
    );
    assert_eq!(
        peek(b"GET / HTTP/1.1\r\nX: a\x7f\x01b\r\nHost: a.example\r\n\r\n"),
        found("a.example")
    );
}

#[test]
fn bare_lf_ends_lines_as_nginx_reads_them() {
    for r in [
        &b"GET / HTTP/1.1\nHost: a.example\n\n"[..],
        b"GET / HTTP/1.1\r\nHost: a.example\n\r\n",
        b"GET / HTTP/1.1\r\nHost: a.example\r\n\n",
        b"GET /who HTTP/1.1\nUser-Agent: x\nHost: a.example\nAccept: */*\n\n",
    ] {
        assert_same_answer_at_every_split(r, &found("a.example"));
    }
    assert_eq!(
        peek(b"GET / HTTP/1.0\nAccept: */*\n\n"),
        HttpPeek::Found { host: None }
    );
}

#[test]
fn junk_after_version_is_a_bad_request_line() {
    assert_eq!(
        peek(b"GET / HTTP/1.1x\r\nHost: a.example\r\n\r\n"),
        invalid(HttpError::BadRequestLine)
    );
    assert_eq!(
        peek(b"GET / HTTP/1.10\r\n"),
        invalid(HttpError::BadRequestLine)
    );
    assert_eq!(
        peek(b"GET / HTTP/1.1 \t \r\nHost: a.example\r\n\r\n"),
        found("a.example")
    );
}
