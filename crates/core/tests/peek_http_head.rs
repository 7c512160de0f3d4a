//! Behaviour of the HTTP/1.x request-head peeker (`kracauer_core::peek::http`).

use std::net::{Ipv4Addr, Ipv6Addr};

use kracauer_core::name::HostName;
use kracauer_core::peek::http::{HttpError, HttpHost, HttpPeek, HttpPeeker, peek};
use proptest::prelude::*;

const CURL: &[u8] = b"GET /index.html HTTP/1.1\r\n\
Host: www.a.example\r\n\
User-Agent: curl/8.5.0\r\n\
Accept: */*\r\n\
\r\n";

const BROWSER: &[u8] = b"GET /search?q=k%C3%BC HTTP/1.1\r\n\
Host: Shop.B.Example:8080\r\n\
User-Agent: Mozilla/5.0 (X11; Linux x86_64; rv:128.0) Gecko/20100101 Firefox/128.0\r\n\
Accept: text/html,application/xhtml+xml,application/xml;q=0.9,*/*;q=0.8\r\n\
Accept-Language: de-DE,de;q=0.8,en-US;q=0.5,en;q=0.3\r\n\
Accept-Encoding: gzip, deflate, br, zstd\r\n\
Referer: http://shop.b.example:8080/\r\n\
Connection: keep-alive\r\n\
Cookie: session=abc123; theme=dark\r\n\
Upgrade-Insecure-Requests: 1\r\n\
Sec-Fetch-Dest: document\r\n\
Sec-Fetch-Mode: navigate\r\n\
Sec-Fetch-Site: same-origin\r\n\
Priority: u=0, i\r\n\
\r\n";

fn name(s: &str) -> Option<HttpHost> {
    Some(HttpHost::Name(
        HostName::parse(s.as_bytes()).expect("test names are valid"),
    ))
}

fn found(s: &str) -> HttpPeek {
    HttpPeek::Found { host: name(s) }
}

fn invalid(e: HttpError) -> HttpPeek {
    HttpPeek::Invalid(e)
}

/// The whole gives `whole`; every prefix needs more until the answer is certain, and
/// gives `whole` from then on.
fn assert_same_answer_at_every_split(request: &[u8], whole: &HttpPeek) {
    assert_eq!(&peek(request), whole);
    let mut decided = false;
    for cut in 0..request.len() {
        let part = peek(&request[..cut]);
        if decided {
            assert_eq!(&part, whole, "cut at {cut}");
        } else if part != HttpPeek::NeedMore {
            assert_eq!(&part, whole, "cut at {cut}");
            decided = true;
        }
    }
}

#[test]
fn curl_request_finds_its_host() {
    assert_eq!(peek(CURL), found("www.a.example"));
}

#[test]
fn browser_request_finds_its_host_lowercased_without_port() {
    assert_eq!(peek(BROWSER), found("shop.b.example"));
}

#[test]
fn curl_request_split_at_every_byte_gives_the_same_answer() {
    assert_same_answer_at_every_split(CURL, &found("www.a.example"));
}

#[test]
fn browser_request_split_at_every_byte_gives_the_same_answer() {
    assert_same_answer_at_every_split(BROWSER, &found("shop.b.example"));
}

#[test]
fn host_split_across_segments_needs_more_then_found() {
    let request = b"GET / HTTP/1.1\r\nHost: a.exa";
    assert_eq!(peek(request), HttpPeek::NeedMore);
    let mut whole = request.to_vec();
    whole.extend_from_slice(b"mple\r\n\r\n");
    assert_eq!(peek(&whole), found("a.example"));
}

#[test]
fn bytes_after_the_head_are_ignored() {
    let mut request = b"POST /f HTTP/1.1\r\nHost: a.example\r\nContent-Length: 3\r\n\r\n".to_vec();
    request.extend_from_slice(b"\x00\x01\x02");
    assert_eq!(peek(&request), found("a.example"));
}

#[test]
fn empty_input_needs_more() {
    assert_eq!(peek(b""), HttpPeek::NeedMore);
}

#[test]
fn tls_record_first_byte_is_not_http_at_once() {
    assert_eq!(peek(&[0x16]), HttpPeek::NotHttp);
    assert_eq!(peek(&[0x16, 0x03, 0x01, 0x02, 0x00]), HttpPeek::NotHttp);
}

#[test]
fn first_byte_decides_at_once_unless_it_is_a_token_character_or_a_line_end() {
    let tchars =
        b"!#$%&'*+-.^_`|~0123456789abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ\r\n";
    for byte in 0..=255u8 {
        let want = if tchars.contains(&byte) {
            HttpPeek::NeedMore
        } else {
            HttpPeek::NotHttp
        };
        assert_eq!(peek(&[byte]), want, "first byte 0x{byte:02x}");
    }
}

#[test]
fn non_token_first_byte_is_not_http() {
    assert_eq!(peek(b" GET"), HttpPeek::NotHttp);
    assert_eq!(peek(b"(GET"), HttpPeek::NotHttp);
    assert_eq!(peek(b"\r\r"), HttpPeek::NotHttp);
}

#[test]
fn method_prefix_needs_more() {
    assert_eq!(peek(b"GE"), HttpPeek::NeedMore);
    assert_eq!(peek(b"GET / HT"), HttpPeek::NeedMore);
}

#[test]
fn http09_request_without_version_is_not_http() {
    assert_eq!(peek(b"GET /\r\n\r\n"), HttpPeek::NotHttp);
}

#[test]
fn lowercase_protocol_name_is_not_http() {
    assert_eq!(peek(b"GET / http/1.1\r\n"), HttpPeek::NotHttp);
}

#[test]
fn http2_version_is_unsupported() {
    assert_eq!(
        peek(b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"),
        invalid(HttpError::UnsupportedVersion)
    );
    assert_eq!(
        peek(b"GET / HTTP/0.9\r\n"),
        invalid(HttpError::UnsupportedVersion)
    );
}

#[test]
fn http10_without_host_has_no_host() {
    assert_eq!(
        peek(b"GET / HTTP/1.0\r\n\r\n"),
        HttpPeek::Found { host: None }
    );
}

#[test]
fn http11_without_host_is_invalid() {
    assert_eq!(
        peek(b"GET / HTTP/1.1\r\nAccept: */*\r\n\r\n"),
        invalid(HttpError::MissingHost)
    );
}

#[test]
fn empty_host_has_no_host() {
    assert_eq!(
        peek(b"GET / HTTP/1.1\r\nHost:\r\n\r\n"),
        HttpPeek::Found { host: None }
    );
    assert_eq!(
        peek(b"GET / HTTP/1.1\r\nHost:  \t \r\n\r\n"),
        HttpPeek::Found { host: None }
    );
}

#[test]
fn host_field_name_is_case_insensitive() {
    assert_eq!(
        peek(b"GET / HTTP/1.1\r\nhOsT: a.example\r\n\r\n"),
        found("a.example")
    );
}

#[test]
fn whitespace_around_host_value_is_dropped() {
    assert_eq!(
        peek(b"GET / HTTP/1.1\r\nHost: \t a.example \t\r\n\r\n"),
        found("a.example")
    );
    assert_eq!(
        peek(b"GET / HTTP/1.1\r\nHost:a.example\r\n\r\n"),
        found("a.example")
    );
}

#[test]
fn trailing_dot_of_host_is_removed() {
    assert_eq!(
        peek(b"GET / HTTP/1.1\r\nHost: a.example.:80\r\n\r\n"),
        found("a.example")
    );
}

#[test]
fn host_port_is_stripped() {
    assert_eq!(
        peek(b"GET / HTTP/1.1\r\nHost: a.example:8080\r\n\r\n"),
        found("a.example")
    );
}

#[test]
fn empty_port_is_accepted() {
    assert_eq!(
        peek(b"GET / HTTP/1.1\r\nHost: a.example:\r\n\r\n"),
        found("a.example")
    );
}

#[test]
fn ipv6_literal_with_port_is_an_address() {
    assert_eq!(
        peek(b"GET / HTTP/1.1\r\nHost: [2001:db8::1]:8080\r\n\r\n"),
        HttpPeek::Found {
            host: Some(HttpHost::Ipv6("2001:db8::1".parse::<Ipv6Addr>().unwrap()))
        }
    );
}

#[test]
fn ipv6_literal_without_port_is_an_address() {
    assert_eq!(
        peek(b"GET / HTTP/1.1\r\nHost: [2001:DB8::a]\r\n\r\n"),
        HttpPeek::Found {
            host: Some(HttpHost::Ipv6("2001:db8::a".parse::<Ipv6Addr>().unwrap()))
        }
    );
}

#[test]
fn ipv4_literal_is_an_address() {
    assert_eq!(
        peek(b"GET / HTTP/1.1\r\nHost: 203.0.113.10:80\r\n\r\n"),
        HttpPeek::Found {
            host: Some(HttpHost::Ipv4(Ipv4Addr::new(203, 0, 113, 10)))
        }
    );
}

#[test]
fn absolute_form_target_wins_over_host() {
    assert_eq!(
        peek(b"GET http://a.example/x?y HTTP/1.1\r\nHost: b.example\r\n\r\n"),
        found("a.example")
    );
}

#[test]
fn absolute_form_scheme_is_case_insensitive_and_https_counts() {
    assert_eq!(
        peek(b"GET HTTPS://A.example:443 HTTP/1.1\r\nHost: b.example\r\n\r\n"),
        found("a.example")
    );
}

#[test]
fn absolute_form_in_http10_needs_no_host() {
    assert_eq!(
        peek(b"GET http://a.example/ HTTP/1.0\r\n\r\n"),
        found("a.example")
    );
}

#[test]
fn absolute_form_with_userinfo_is_invalid() {
    assert_eq!(
        peek(b"GET http://bank.example@a.example/ HTTP/1.1\r\nHost: a.example\r\n\r\n"),
        invalid(HttpError::BadTarget)
    );
}

#[test]
fn absolute_form_with_empty_authority_is_invalid() {
    assert_eq!(
        peek(b"GET http:///x HTTP/1.1\r\nHost: a.example\r\n\r\n"),
        invalid(HttpError::BadTarget)
    );
}

#[test]
fn authority_form_and_schemeless_targets_are_invalid() {
    assert_eq!(
        peek(b"CONNECT a.example:443 HTTP/1.1\r\nHost: a.example:443\r\n\r\n"),
        invalid(HttpError::BadTarget)
    );
    assert_eq!(
        peek(b"GET a.example/x HTTP/1.1\r\n"),
        invalid(HttpError::BadTarget)
    );
    assert_eq!(
        peek(b"GET 1http://a.example/ HTTP/1.1\r\n"),
        invalid(HttpError::BadTarget)
    );
}

#[test]
fn asterisk_form_uses_host() {
    assert_eq!(
        peek(b"OPTIONS * HTTP/1.1\r\nHost: a.example\r\n\r\n"),
        found("a.example")
    );
}

#[test]
fn whitespace_before_colon_is_invalid() {
    assert_eq!(
        peek(b"GET / HTTP/1.1\r\nHost : a.example\r\n\r\n"),
        invalid(HttpError::WhitespaceBeforeColon)
    );
    assert_eq!(
        peek(b"GET / HTTP/1.1\r\nHost\t: a.example\r\n\r\n"),
        invalid(HttpError::WhitespaceBeforeColon)
    );
}

#[test]
fn header_line_without_colon_is_invalid() {
    assert_eq!(
        peek(b"GET / HTTP/1.1\r\nHost a.example\r\n\r\n"),
        invalid(HttpError::WhitespaceBeforeColon)
    );
    assert_eq!(
        peek(b"GET / HTTP/1.1\r\nHostless\r\n\r\n"),
        invalid(HttpError::MissingColon)
    );
}

#[test]
fn empty_field_name_or_a_control_byte_in_one_is_invalid() {
    assert_eq!(
        peek(b"GET / HTTP/1.1\r\n: x\r\n\r\n"),
        invalid(HttpError::BadFieldName)
    );
    assert_eq!(
        peek(b"GET / HTTP/1.1\r\nX\x01y: z\r\n\r\n"),
        invalid(HttpError::BadFieldName)
    );
}

#[test]
fn obs_fold_line_is_invalid() {
    assert_eq!(
        peek(b"GET / HTTP/1.1\r\nHost: a.example\r\n b.example\r\n\r\n"),
        invalid(HttpError::ObsFold)
    );
}

#[test]
fn whitespace_line_after_request_line_is_invalid() {
    assert_eq!(
        peek(b"GET / HTTP/1.1\r\n\tHost: a.example\r\n\r\n"),
        invalid(HttpError::ObsFold)
    );
}

#[test]
fn tab_and_obs_text_in_other_values_are_fine() {
    assert_eq!(
        peek("GET / HTTP/1.1\r\nX-Name:\tJürgen\r\nHost: a.example\r\n\r\n".as_bytes()),
        found("a.example")
    );
}

#[test]
fn bare_cr_is_invalid() {
    assert_eq!(
        peek(b"GET / HTTP/1.1\r\nHost: a.exa\rmple\r\n\r\n"),
        invalid(HttpError::BareCr)
    );
    assert_eq!(
        peek(b"GET / HTTP/1.1\rHost: a.example\r\n\r\n"),
        invalid(HttpError::BareCr)
    );
}

#[test]
fn head_without_host_within_the_cap_is_too_large() {
    let peeker = HttpPeeker::new(64);
    let mut request = b"GET / HTTP/1.1\r\nX-Pad: ".to_vec();
    request.resize(100, b'p');
    request.extend_from_slice(b"\r\nHost: a.example\r\n\r\n");
    assert_eq!(peeker.peek(&request[..63]), HttpPeek::NeedMore);
    assert_eq!(peeker.peek(&request[..64]), invalid(HttpError::TooLarge));
    assert_eq!(peeker.peek(&request), invalid(HttpError::TooLarge));
}

#[test]
fn host_certain_at_exactly_the_cap_is_found() {
    let request = b"GET / HTTP/1.1\r\nHost: a.example\r\n\r\n";
    // Certain at the first byte after the Host line.
    let certain = request.len() - 1;
    assert_eq!(HttpPeeker::new(certain).peek(request), found("a.example"));
    assert_eq!(
        HttpPeeker::new(certain - 1).peek(request),
        invalid(HttpError::TooLarge)
    );
}

#[test]
fn default_cap_is_16_kib() {
    assert_eq!(HttpPeeker::default().max_head(), 16 * 1024);
    let mut request = b"GET / HTTP/1.1\r\nX: ".to_vec();
    request.resize(16 * 1024 - 20, b'x');
    request.extend_from_slice(b"\r\nHost: a.example\r\n\r\n");
    assert_eq!(peek(&request), found("a.example"));
    request.insert(20, b'x');
    assert_eq!(peek(&request), invalid(HttpError::TooLarge));
}

#[test]
fn error_in_the_bytes_beyond_the_cap_is_not_seen() {
    let peeker = HttpPeeker::new(40);
    let mut request = b"GET / HTTP/1.1\r\nX: ".to_vec();
    request.resize(40, b'x');
    request.extend_from_slice(b"\x00\r\nHost: a.example\r\n\r\n");
    assert_eq!(peeker.peek(&request), invalid(HttpError::TooLarge));
}

fn request_bytes() -> impl Strategy<Value = Vec<u8>> {
    let pieces = prop::collection::vec(
        prop::sample::select(vec![
            &b"GET "[..],
            b"/ ",
            b"http://a.example ",
            b"HTTP/1.1",
            b"HTTP/1.0",
            b"\r\n",
            b"\n",
            b"\r",
            b"Host:",
            b"host :",
            b" a.example",
            b"[2001:db8::1]",
            b":80",
            b"X: y",
            b" ",
            b"\x00",
            b"\x16\x03\x01",
        ]),
        0..16,
    );
    (pieces, prop::collection::vec(any::<u8>(), 0..4)).prop_map(|(pieces, tail)| {
        let mut bytes = pieces.concat();
        bytes.extend(tail);
        bytes
    })
}

proptest! {
    #[test]
    fn every_prefix_needs_more_or_agrees_with_the_whole(bytes in request_bytes(), cap in 1usize..80) {
        let peeker = HttpPeeker::new(cap);
        let whole = peeker.peek(&bytes);
        for cut in 0..=bytes.len() {
            let part = peeker.peek(&bytes[..cut]);
            prop_assert!(part == HttpPeek::NeedMore || part == whole, "cut {cut}: {part:?} vs {whole:?}");
        }
    }

    #[test]
    fn arbitrary_bytes_never_panic(bytes in prop::collection::vec(any::<u8>(), 0..256)) {
        let _ = peek(&bytes);
    }
}
