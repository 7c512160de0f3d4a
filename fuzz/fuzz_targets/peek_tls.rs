//! peek::tls on arbitrary bytes, whole and as growing prefixes: it must never panic, and
//! its answers must be final (once a prefix gives Found, NotTls or Invalid, every longer
//! prefix gives the same answer; a NeedMore whole means NeedMore for every prefix).
//! Checked with the default cap and with a small one derived from the input length.
#![no_main]
use kracauer_core::name::HostName;
use kracauer_core::peek::tls::{TlsPeek, TlsPeekConfig, peek, unrecognized_name_alert};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let small = TlsPeekConfig {
        max_hello_bytes: data.len() / 2 + 5,
    };
    for config in [TlsPeekConfig::default(), small] {
        check(data, &config);
    }
    let alert = unrecognized_name_alert(data);
    assert_eq!(alert[..2], [0x15, 0x03]);
    assert!((1..=3).contains(&alert[2]));
    assert_eq!(alert[3..], [0x00, 0x02, 0x02, 0x70]);
});

fn check(data: &[u8], config: &TlsPeekConfig) {
    let whole = peek(data, config);
    check_found(&whole);

    // Prefix lengths to try: every one up to 64, a spread of others, and the first
    // final prefix found by bisection (which assumes finality; the others check it).
    let mut cuts: Vec<usize> = (0..=data.len().min(64)).collect();
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for &b in data.iter().take(256) {
        h = (h ^ u64::from(b)).wrapping_mul(0x100_0000_01b3);
    }
    for i in 0..16u64 {
        let x = h.rotate_left((i * 7) as u32) ^ i.wrapping_mul(0x9e37_79b9_7f4a_7c15);
        cuts.push((x % (data.len() as u64 + 1)) as usize);
    }
    if whole != TlsPeek::NeedMore {
        let (mut lo, mut hi) = (0, data.len()); // peek(..lo) may be NeedMore, peek(..hi) is final
        while lo < hi {
            let mid = lo + (hi - lo) / 2;
            if peek(&data[..mid], config) == TlsPeek::NeedMore {
                lo = mid + 1;
            } else {
                hi = mid;
            }
        }
        cuts.extend([hi, hi.saturating_sub(1)]);
    }
    cuts.push(data.len());
    cuts.sort_unstable();
    cuts.dedup();

    let mut decided: Option<TlsPeek> = None;
    for n in cuts {
        let got = peek(&data[..n], config);
        match &decided {
            Some(first) => assert_eq!(&got, first, "prefix {n} changed a final answer"),
            None if got != TlsPeek::NeedMore => {
                assert_eq!(got, whole, "final answer at prefix {n} differs from the whole");
                decided = Some(got);
            }
            None => {}
        }
    }
}

/// A Found answer holds a normalised name and a well-formed ALPN list.
fn check_found(result: &TlsPeek) {
    let TlsPeek::Found { sni, alpn, .. } = result else {
        return;
    };
    if let Some(name) = sni {
        assert_eq!(HostName::parse(name.as_str().as_bytes()).as_ref(), Ok(name));
    }
    if let Some(alpn) = alpn {
        let mut rebuilt = Vec::new();
        for p in alpn {
            assert!(!p.is_empty());
            rebuilt.push(p.len() as u8);
            rebuilt.extend_from_slice(p);
        }
        assert!(!rebuilt.is_empty());
        assert_eq!(rebuilt, alpn.as_wire());
    }
}
