//! Arbitrary virtio-net headers in front of arbitrary packets through
//! `offload::inbound`, and every accepted one through `outbound` against the packet as it
//! was left: nothing may panic; a refused header changes nothing; an accepted GSO header
//! is TCP with a partial checksum; a header made for a packet carries the checksum start
//! at that packet's TCP header.
#![no_main]
use kracauer_core::engine::RxChecksum;
use kracauer_core::offload::{self, HEADER_LEN, field, inbound, outbound};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if data.len() < HEADER_LEN {
        return;
    }
    let (hdr, packet) = data.split_at(HEADER_LEN);
    let mut p = packet.to_vec();
    match inbound(hdr, &mut p) {
        Err(_) => assert_eq!(p, packet, "a refused header changed the packet"),
        Ok(rx) => {
            if rx.gso.is_some() {
                assert_eq!(rx.checksum, RxChecksum::Partial);
            }
            if rx.checksum == RxChecksum::Partial {
                assert_eq!(p, packet, "a TCP partial checksum is left for the kernel");
            }
            if let Ok(out) = outbound(&rx, &p) {
                if rx.checksum == RxChecksum::Partial {
                    assert_eq!(out[field::FLAGS], offload::flags::NEEDS_CSUM);
                    let start = u16::from_ne_bytes([out[6], out[7]]);
                    let ihl = usize::from(p[0] & 0x0f) * 4;
                    let want = if p[0] >> 4 == 4 { ihl } else { 40 };
                    assert_eq!(usize::from(start), want);
                } else {
                    assert_eq!(out, offload::PLAIN);
                }
            }
        }
    }
});
