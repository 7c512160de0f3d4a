//! Fuzzes the TLS ClientHello peeker with arbitrary bytes and their growing prefixes.
//!
//! Checks: it never panics; every prefix answers `NeedMore` or the same as the whole input
//! (bytes arriving in any number of segments give the answer for the whole); a final
//! answer does not change when more bytes follow; a found name is already normalised.
//! Runs with the default cap and with a small cap taken from the first byte.
#![no_main]
use kracauer_core::name::HostName;
use kracauer_core::peek::tls::{TlsPeek, TlsPeekConfig, peek};
use libfuzzer_sys::fuzz_target;

fn check(config: &TlsPeekConfig, data: &[u8]) {
    let whole = peek(data, config);
    let step = (data.len() / 256).max(1);
    for cut in (0..data.len()).step_by(step) {
        let part = peek(&data[..cut], config);
        assert!(
            part == TlsPeek::NeedMore || part == whole,
            "prefix {cut} says {part:?}, whole says {whole:?}"
        );
    }
    if let TlsPeek::Found { sni: Some(name), .. } = &whole {
        assert_eq!(
            HostName::parse(name.as_str().as_bytes()).as_ref(),
            Ok(name),
            "found name is not normalised"
        );
    }
    if whole != TlsPeek::NeedMore {
        let mut longer = data.to_vec();
        longer.extend_from_slice(&[0x16, 0x03, 0x01, 0x00, 0x04, 0x01, 0x00, 0x00, 0x00]);
        assert_eq!(peek(&longer, config), whole, "more bytes changed a final answer");
    }
}

fuzz_target!(|data: &[u8]| {
    check(&TlsPeekConfig::default(), data);
    let small = usize::from(data.first().copied().unwrap_or(0)) * 8 + 5;
    check(
        &TlsPeekConfig {
            max_hello_bytes: small,
        },
        data,
    );
});
