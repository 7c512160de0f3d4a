//! Fuzzes the HTTP request-head peeker with arbitrary bytes and their growing prefixes.
//!
//! Checks: it never panics; every prefix answers `NeedMore` or the same as the whole input
//! (the answer for bytes arriving in any number of segments is the answer for the whole);
//! a found name is already normalised; `Found` is decided within the cap (the bytes up to
//! the cap give it already). Runs with the default cap and with a small cap taken from the
//! first byte.
#![no_main]
use kracauer_core::name::HostName;
use kracauer_core::peek::http::{HttpHost, HttpPeek, HttpPeeker};
use libfuzzer_sys::fuzz_target;

fn check(peeker: HttpPeeker, data: &[u8]) {
    let whole = peeker.peek(data);
    // Every prefix for short inputs, an even spread of cut points for long ones.
    let step = (data.len() / 256).max(1);
    for cut in (0..data.len()).step_by(step) {
        let part = peeker.peek(&data[..cut]);
        assert!(
            part == HttpPeek::NeedMore || part == whole,
            "prefix {cut} says {part:?}, whole says {whole:?}"
        );
    }
    if let HttpPeek::Found { host } = &whole {
        let within = &data[..data.len().min(peeker.max_head())];
        assert_eq!(peeker.peek(within), whole, "found beyond the cap");
        if let Some(HttpHost::Name(name)) = host {
            assert_eq!(
                HostName::parse(name.as_str().as_bytes()).as_ref(),
                Ok(name),
                "found name is not normalised"
            );
        }
    }
    if whole != HttpPeek::NeedMore {
        let mut longer = data.to_vec();
        longer.extend_from_slice(b"\r\n\r\nHost: x.example\r\n\r\n");
        assert_eq!(
            peeker.peek(&longer),
            whole,
            "more bytes changed a final answer"
        );
    }
}

fuzz_target!(|data: &[u8]| {
    check(HttpPeeker::default(), data);
    let small = usize::from(data.first().copied().unwrap_or(0)) + 1;
    check(HttpPeeker::new(small), data);
});
