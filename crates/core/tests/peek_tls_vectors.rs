//! Real ClientHellos (crates/core/testdata/*.bin, see its README.md) through peek::tls:
//! exact SNI, ALPN and ECH flag for each, the same answer from every prefix, from random
//! segmentations, and from the hello re-cut into 100-byte records; and no allocation
//! before `Found` (a counting allocator wraps the system one in this test binary).

use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;

use kracauer_core::peek::tls::{HelloError, TlsPeek, TlsPeekConfig, peek, unrecognized_name_alert};

/// The system allocator, counting allocations made by the current thread (tests run on
/// several threads at once, so a global count would mix them).
struct CountingAlloc;

thread_local! {
    static ALLOCATIONS: Cell<usize> = const { Cell::new(0) };
}

// SAFETY: every call is forwarded unchanged to `System`, which upholds the contract;
// the counter is a const-initialised thread local, so counting never allocates.
unsafe impl GlobalAlloc for CountingAlloc {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        ALLOCATIONS.with(|n| n.set(n.get() + 1));
        // SAFETY: same layout contract as our caller's.
        unsafe { System.alloc(layout) }
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: `ptr` came from `System.alloc` with this layout.
        unsafe { System.dealloc(ptr, layout) }
    }
}

#[global_allocator]
static GLOBAL: CountingAlloc = CountingAlloc;

/// `f`'s result and the number of allocations it made on this thread.
fn counting<T>(f: impl FnOnce() -> T) -> (T, usize) {
    let before = ALLOCATIONS.with(Cell::get);
    let out = f();
    (out, ALLOCATIONS.with(Cell::get) - before)
}

struct Vector {
    name: &'static str,
    bytes: &'static [u8],
    sni: Option<&'static str>,
    alpn: Option<&'static [&'static [u8]]>,
    ech_outer: bool,
}

const H2_HTTP11: &[&[u8]] = &[b"h2", b"http/1.1"];

const VECTORS: &[Vector] = &[
    Vector {
        name: "openssl_s_client",
        bytes: include_bytes!("../testdata/openssl_s_client.bin"),
        sni: Some("a.example"),
        alpn: None,
        ech_outer: false,
    },
    Vector {
        name: "openssl_tls12",
        bytes: include_bytes!("../testdata/openssl_tls12.bin"),
        sni: Some("a.example"),
        alpn: None,
        ech_outer: false,
    },
    Vector {
        name: "openssl_no_sni",
        bytes: include_bytes!("../testdata/openssl_no_sni.bin"),
        sni: None,
        alpn: None,
        ech_outer: false,
    },
    Vector {
        name: "curl",
        bytes: include_bytes!("../testdata/curl.bin"),
        sni: Some("a.example"),
        alpn: Some(H2_HTTP11),
        ech_outer: false,
    },
    Vector {
        name: "rustls_pq",
        bytes: include_bytes!("../testdata/rustls_pq.bin"),
        sni: Some("a.example"),
        alpn: Some(H2_HTTP11),
        ech_outer: false,
    },
    Vector {
        name: "chromium",
        bytes: include_bytes!("../testdata/chromium.bin"),
        sni: Some("a.example"),
        alpn: Some(H2_HTTP11),
        ech_outer: true,
    },
];

fn run(data: &[u8]) -> TlsPeek {
    peek(data, &TlsPeekConfig::default())
}

fn assert_expected(v: &Vector, got: &TlsPeek) {
    let TlsPeek::Found {
        sni,
        alpn,
        ech_outer,
        ..
    } = got
    else {
        panic!("{}: expected Found, got {got:?}", v.name);
    };
    assert_eq!(sni.as_ref().map(|n| n.as_str()), v.sni, "{}: sni", v.name);
    let alpn: Option<Vec<&[u8]>> = alpn.as_ref().map(|a| a.iter().collect());
    assert_eq!(alpn.as_deref(), v.alpn, "{}: alpn", v.name);
    assert_eq!(*ech_outer, v.ech_outer, "{}: ech_outer", v.name);
}

#[test]
fn each_vector_gives_its_exact_sni_alpn_and_ech_flag() {
    for v in VECTORS {
        assert_expected(v, &run(v.bytes));
    }
}

#[test]
fn every_proper_prefix_of_each_vector_needs_more() {
    for v in VECTORS {
        for n in 0..v.bytes.len() {
            assert_eq!(
                run(&v.bytes[..n]),
                TlsPeek::NeedMore,
                "{} prefix {n}",
                v.name
            );
        }
    }
}

/// A small deterministic generator (xorshift64*), so failures reproduce.
struct Rng(u64);

impl Rng {
    fn below(&mut self, n: usize) -> usize {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        (self.0.wrapping_mul(0x2545_f491_4f6c_dd1d) >> 32) as usize % n
    }
}

#[test]
fn random_segmentations_give_the_whole_vectors_answer() {
    let mut rng = Rng(0x9e37_79b9_7f4a_7c15);
    for v in VECTORS {
        let whole = run(v.bytes);
        for _ in 0..3 {
            // Up to 6 segments, cut at random points, arriving one after another.
            let mut cuts: Vec<usize> = (0..5).map(|_| rng.below(v.bytes.len())).collect();
            cuts.push(v.bytes.len());
            cuts.sort_unstable();
            let mut buffer = Vec::new();
            let mut from = 0;
            for &to in &cuts {
                buffer.extend_from_slice(&v.bytes[from..to]);
                from = to;
                let got = run(&buffer);
                if buffer.len() < v.bytes.len() {
                    assert_eq!(got, TlsPeek::NeedMore, "{} at {}", v.name, buffer.len());
                } else {
                    assert_eq!(got, whole, "{} cuts {cuts:?}", v.name);
                }
            }
        }
    }
}

/// The handshake bytes of a vector re-cut into records of at most `size` bytes, with
/// the vector's own record version.
fn recut(bytes: &[u8], size: usize) -> Vec<u8> {
    let mut stream = Vec::new();
    let mut rest = bytes;
    while let [_, _, _, hi, lo, tail @ ..] = rest {
        let len = usize::from(u16::from_be_bytes([*hi, *lo]));
        stream.extend_from_slice(&tail[..len]);
        rest = &tail[len..];
    }
    assert!(rest.is_empty(), "vector ends inside a record header");
    let mut out = Vec::new();
    for piece in stream.chunks(size) {
        out.extend_from_slice(&bytes[..3]);
        out.extend_from_slice(&(piece.len() as u16).to_be_bytes());
        out.extend_from_slice(piece);
    }
    out
}

#[test]
fn vectors_recut_into_100_byte_records_give_the_same_answer() {
    for v in VECTORS {
        let recut = recut(v.bytes, 100);
        assert!(recut.len() > v.bytes.len(), "{}: no extra records", v.name);
        assert_expected(v, &run(&recut));
        for n in 0..recut.len() {
            assert_eq!(run(&recut[..n]), TlsPeek::NeedMore, "{} prefix {n}", v.name);
        }
    }
}

#[test]
fn pq_hello_over_a_smaller_cap_is_too_large_from_its_headers() {
    let v = &VECTORS[4];
    assert_eq!(v.name, "rustls_pq");
    let config = TlsPeekConfig {
        max_hello_bytes: 1400,
    };
    let too_large = TlsPeek::Invalid(HelloError::TooLarge { cap: 1400 });
    assert_eq!(peek(&v.bytes[..9], &config), too_large);
    assert_eq!(peek(v.bytes, &config), too_large);
}

#[test]
fn refusal_alert_uses_each_clients_record_version() {
    for v in VECTORS {
        let alert = unrecognized_name_alert(v.bytes);
        assert_eq!(alert[..2], [0x15, 0x03], "{}", v.name);
        assert_eq!(alert[2], v.bytes[2], "{}", v.name);
        assert_eq!(alert[3..], [0x00, 0x02, 0x02, 0x70], "{}", v.name);
    }
}

#[test]
fn prefixes_allocate_nothing_and_found_allocates_name_and_alpn_only() {
    let config = TlsPeekConfig::default();
    for v in VECTORS {
        for n in (0..v.bytes.len()).step_by(7) {
            let (got, allocations) = counting(|| peek(&v.bytes[..n], &config));
            assert_eq!(got, TlsPeek::NeedMore);
            assert_eq!(allocations, 0, "{} prefix {n}", v.name);
        }
        let (got, allocations) = counting(|| peek(v.bytes, &config));
        let expected = usize::from(v.sni.is_some()) + usize::from(v.alpn.is_some());
        assert_eq!(allocations, expected, "{}: {got:?}", v.name);
    }
    let (got, allocations) = counting(|| peek(b"GET / HTTP/1.1\r\n", &config));
    assert_eq!((got, allocations), (TlsPeek::NotTls, 0));
}
