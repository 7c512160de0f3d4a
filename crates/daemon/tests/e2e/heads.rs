//! HTTP request heads against nginx on :80 (issue 19): bare LF, long heads, heads over
//! the cap, absolute-form, HTTP/1.0 without Host, pipelined requests. Through Kracauer
//! with nginx as the default backend a client gets what nginx gives it directly; without
//! a default, the documented refusal (421, 400, 431), and never a stall.

use kracauer_testbed::{Topology, Variant, require_privileged};

use super::KRACAUER;
use super::origin::{Answer, Origin};

/// A head with `lines` before `Host: n.example`, then `after`.
fn head(before: &[String], after: &[String]) -> Vec<u8> {
    let mut r = b"GET /who HTTP/1.1\r\n".to_vec();
    for l in before {
        r.extend_from_slice(l.as_bytes());
        r.extend_from_slice(b"\r\n");
    }
    r.extend_from_slice(b"Host: n.example\r\n");
    for l in after {
        r.extend_from_slice(l.as_bytes());
        r.extend_from_slice(b"\r\n");
    }
    r.extend_from_slice(b"Connection: close\r\n\r\n");
    r
}

fn cookie(n: usize) -> String {
    format!("Cookie: c={}", "x".repeat(n))
}

fn requests() -> Vec<(&'static str, Vec<u8>)> {
    vec![
        ("plain", head(&[], &[])),
        (
            "bare LF",
            b"GET /who HTTP/1.1\nHost: n.example\nConnection: close\n\n".to_vec(),
        ),
        ("a 6 KB header after Host", head(&[], &[cookie(6_000)])),
        ("a 20 KB header after Host", head(&[], &[cookie(20_000)])),
        (
            "three 7 KB headers before Host (over the cap)",
            head(&[cookie(7_000), cookie(7_000), cookie(7_000)], &[]),
        ),
        (
            "a 20 KB header before Host (over the cap)",
            head(&[cookie(20_000)], &[]),
        ),
        (
            "absolute-form",
            b"GET http://n.example/abs HTTP/1.1\r\nHost: n.example\r\nConnection: close\r\n\r\n"
                .to_vec(),
        ),
        (
            "HTTP/1.0 without Host",
            b"GET /old HTTP/1.0\r\n\r\n".to_vec(),
        ),
        (
            "pipelined",
            [
                &b"GET /1 HTTP/1.1\r\nHost: n.example\r\n\r\n"[..],
                b"GET /2 HTTP/1.1\r\nHost: n.example\r\nConnection: close\r\n\r\n",
            ]
            .concat(),
        ),
        (
            "HTTP/1.1 without Host",
            b"GET / HTTP/1.1\r\nConnection: close\r\n\r\n".to_vec(),
        ),
        (
            "two Host lines",
            b"GET / HTTP/1.1\r\nHost: n.example\r\nHost: m.example\r\n\r\n".to_vec(),
        ),
        (
            "obs-fold before Host",
            b"GET / HTTP/1.1\r\nX: a\r\n b\r\nHost: n.example\r\n\r\n".to_vec(),
        ),
        (
            "empty line before the request",
            b"\r\nGET / HTTP/1.1\r\nHost: n.example\r\nConnection: close\r\n\r\n".to_vec(),
        ),
        (
            "a port that is no number",
            b"GET / HTTP/1.1\r\nHost: n.example:http\r\nConnection: close\r\n\r\n".to_vec(),
        ),
        (
            "HTTP/2.0 request line",
            b"GET / HTTP/2.0\r\nHost: n.example\r\n\r\n".to_vec(),
        ),
        (
            "TLS bytes on port 80",
            vec![0x16, 3, 1, 0, 5, 1, 0, 0, 1, 0],
        ),
    ]
}

#[test]
#[ignore = "privileged: needs root, network namespaces, nginx and openssl (run with --include-ignored)"]
fn every_head_gets_the_same_answer_through_kracauer_with_a_default_as_from_nginx() {
    require_privileged(
        "every_head_gets_the_same_answer_through_kracauer_with_a_default_as_from_nginx",
    );
    Origin::require_tools();
    let tb = Topology::build(Variant::Routed).unwrap();
    let origin = Origin::start(&tb);
    let k = tb
        .start_kracauer(KRACAUER, &tb.config_with(&Origin::default_backend(), ""))
        .unwrap();
    let requests = requests();
    let mut differ = Vec::new();
    for (what, bytes) in &requests {
        let direct = origin.direct(80, bytes);
        let through = origin.through(80, bytes);
        eprintln!("{what}: {direct:?}");
        if direct != through {
            differ.push(format!(
                "{what}: directly {direct:?}, through Kracauer {through:?}"
            ));
        }
    }
    eprintln!(
        "{} requests, {} identical",
        requests.len(),
        requests.len() - differ.len()
    );
    assert!(differ.is_empty(), "{}\n{}", differ.join("\n"), k.log());
}

#[test]
#[ignore = "privileged: needs root, network namespaces, nginx and openssl (run with --include-ignored)"]
fn without_a_default_each_head_gets_the_documented_refusal_and_none_stalls() {
    require_privileged("without_a_default_each_head_gets_the_documented_refusal_and_none_stalls");
    Origin::require_tools();
    let tb = Topology::build(Variant::Routed).unwrap();
    let origin = Origin::start(&tb);
    let k = tb.start_kracauer(KRACAUER, &tb.config("")).unwrap();
    let requests: std::collections::HashMap<_, _> = requests().into_iter().collect();
    let expected = [
        ("plain", Answer::Http(vec![421])),
        ("bare LF", Answer::Http(vec![421])),
        ("a 20 KB header after Host", Answer::Http(vec![421])),
        (
            "three 7 KB headers before Host (over the cap)",
            Answer::Http(vec![431]),
        ),
        (
            "a 20 KB header before Host (over the cap)",
            Answer::Http(vec![431]),
        ),
        ("absolute-form", Answer::Http(vec![421])),
        ("HTTP/1.0 without Host", Answer::Http(vec![421])),
        ("pipelined", Answer::Http(vec![421])),
        ("HTTP/1.1 without Host", Answer::Http(vec![400])),
        ("obs-fold before Host", Answer::Http(vec![400])),
        ("HTTP/2.0 request line", Answer::Http(vec![400])),
        ("TLS bytes on port 80", Answer::Nothing),
    ];
    let mut wrong = Vec::new();
    for (what, want) in expected {
        let got = origin.through(80, &requests[what]);
        if got != want {
            wrong.push(format!("{what}: got {got:?}, documented {want:?}"));
        }
    }
    // A name with a route still reaches its backend (the testbed's own server, which
    // wants CRLF).
    let named = origin.through(
        80,
        b"GET / HTTP/1.1\r\nHost: a.example\r\nConnection: close\r\n\r\n",
    );
    if named != Answer::Http(vec![200]) {
        wrong.push(format!("a.example: got {named:?}"));
    }
    assert!(wrong.is_empty(), "{}\n{}", wrong.join("\n"), k.log());
}
