//! Unit tests for the IPv4 view.

use super::*;
use crate::wire::ip_proto;
use crate::wire::testdata::{ACK_SACK_V4, FRAG_V4, SYN_V4, UDP_OPTS_V4};

#[test]
fn syn_header_fields_parse() {
    let p = Ipv4Packet::new_checked(&SYN_V4[..]).unwrap();
    assert_eq!(p.version(), 4);
    assert_eq!(p.header_len(), 20);
    assert_eq!(p.dscp(), 0);
    assert_eq!(p.ecn(), 0);
    assert_eq!(p.total_len(), 60);
    assert_eq!(p.ident(), 0x1c46);
    assert!(p.dont_frag());
    assert!(!p.more_frags());
    assert!(!p.reserved_flag());
    assert_eq!(p.frag_offset(), 0);
    assert!(!p.is_fragment());
    assert_eq!(p.ttl(), 64);
    assert_eq!(p.protocol(), ip_proto::TCP);
    assert_eq!(p.checksum(), 0xb835);
    assert_eq!(p.src_addr(), Ipv4Addr::new(198, 51, 100, 2));
    assert_eq!(p.dst_addr(), Ipv4Addr::new(203, 0, 113, 10));
    assert!(p.options().is_empty());
    assert_eq!(p.payload_range(), 20..60);
    assert_eq!(p.payload().len(), 40);
    assert!(p.verify_checksum());
}

#[test]
fn header_with_record_route_option_parses_options() {
    let p = Ipv4Packet::new_checked(&UDP_OPTS_V4[..]).unwrap();
    assert_eq!(p.header_len(), 28);
    assert_eq!(p.options(), &[7, 7, 4, 0, 0, 0, 0, 0]);
    assert_eq!(p.payload_range(), 28..48);
    assert_eq!(p.protocol(), ip_proto::UDP);
    assert!(!p.dont_frag());
    assert_eq!(p.ttl(), 17);
    assert!(p.verify_checksum());
    let opts: Vec<_> = p.options_iter().collect();
    assert_eq!(
        opts,
        vec![Ok(Ipv4Option {
            offset: 20,
            kind: option::RR,
            data: &[4, 0, 0, 0, 0]
        })]
    );
    assert!(!opts[0].as_ref().unwrap().is_source_route());
}

#[test]
fn non_first_fragment_reports_offset_and_more_fragments() {
    let p = Ipv4Packet::new_checked(&FRAG_V4[..]).unwrap();
    assert!(p.is_fragment());
    assert!(p.more_frags());
    assert!(!p.dont_frag());
    assert_eq!(p.frag_offset(), 185);
    assert_eq!(p.ident(), 0xbeef);
    assert_eq!(p.payload(), &FRAG_V4[20..]);
    assert!(p.verify_checksum());
}

#[test]
fn trailing_bytes_past_total_length_are_ignored() {
    let mut b = ACK_SACK_V4.to_vec();
    b.extend_from_slice(&[0xee; 7]);
    let p = Ipv4Packet::new_checked(&b[..]).unwrap();
    assert_eq!(p.payload_range(), 20..77);
}

#[test]
fn truncated_buffer_is_an_error_at_every_length() {
    for n in 0..SYN_V4.len() {
        let e = Ipv4Packet::new_checked(&SYN_V4[..n]).unwrap_err();
        let want = if n < 20 {
            WireError::Truncated
        } else {
            WireError::BadTotalLen
        };
        assert_eq!(e, want, "length {n}");
    }
    for n in 0..UDP_OPTS_V4.len() {
        let e = Ipv4Packet::new_checked(&UDP_OPTS_V4[..n]).unwrap_err();
        // Header of 28 bytes: below it the header itself is cut.
        let want = if n < 28 {
            WireError::Truncated
        } else {
            WireError::BadTotalLen
        };
        assert_eq!(e, want, "length {n}");
    }
}

#[test]
fn ihl_below_five_is_bad_header_len() {
    for ihl in 0..5u8 {
        let mut b = SYN_V4;
        b[0] = 0x40 | ihl;
        assert_eq!(
            Ipv4Packet::new_checked(&b[..]),
            Err(WireError::BadHeaderLen)
        );
    }
}

#[test]
fn ihl_past_buffer_is_truncated() {
    let mut b = FRAG_V4;
    b[0] = 0x4f; // 60-byte header in a 36-byte buffer
    assert_eq!(Ipv4Packet::new_checked(&b[..]), Err(WireError::Truncated));
}

#[test]
fn total_length_below_header_is_bad_total_len() {
    let mut b = UDP_OPTS_V4;
    b[2..4].copy_from_slice(&27u16.to_be_bytes());
    assert_eq!(Ipv4Packet::new_checked(&b[..]), Err(WireError::BadTotalLen));
    assert_eq!(
        Ipv4Packet::new_checked_header(&b[..]),
        Err(WireError::BadTotalLen)
    );
}

#[test]
fn total_length_past_buffer_is_bad_total_len_but_fine_for_a_quoted_header() {
    let p = Ipv4Packet::new_checked_header(&SYN_V4[..28]).unwrap();
    assert_eq!(p.total_len(), 60);
    assert_eq!(p.payload_range(), 20..28);
    assert_eq!(
        Ipv4Packet::new_checked(&SYN_V4[..28]),
        Err(WireError::BadTotalLen)
    );
}

#[test]
fn version_six_is_bad_version() {
    let mut b = SYN_V4;
    b[0] = 0x65;
    assert_eq!(Ipv4Packet::new_checked(&b[..]), Err(WireError::BadVersion));
}

#[test]
fn building_a_header_with_setters_reproduces_the_fragment_bytes() {
    let mut b = [0u8; 36];
    b[20..].copy_from_slice(&FRAG_V4[20..]);
    let mut p = Ipv4Packet::new_unchecked(&mut b[..]);
    p.set_version(4);
    p.set_header_len(20);
    p.set_tos(0);
    p.set_total_len(36);
    p.set_ident(0xbeef);
    p.set_dont_frag(true);
    p.set_more_frags(true);
    p.set_frag_offset(185);
    p.set_dont_frag(false);
    p.set_ttl(63);
    p.set_protocol(ip_proto::UDP);
    p.set_src_addr(Ipv4Addr::new(198, 51, 100, 2));
    p.set_dst_addr(Ipv4Addr::new(203, 0, 113, 10));
    p.fill_checksum();
    assert_eq!(b, FRAG_V4);
}

#[test]
fn dscp_and_ecn_setters_keep_each_other() {
    let mut b = SYN_V4;
    let mut p = Ipv4Packet::new_checked(&mut b[..]).unwrap();
    p.set_dscp(46);
    p.set_ecn(2);
    assert_eq!((p.dscp(), p.ecn(), p.tos()), (46, 2, 0xba));
    p.set_dscp(0);
    assert_eq!((p.dscp(), p.ecn()), (0, 2));
}

#[test]
fn decrement_ttl_keeps_checksum_valid() {
    let mut b = SYN_V4;
    let mut p = Ipv4Packet::new_checked(&mut b[..]).unwrap();
    assert_eq!(p.decrement_ttl(), 63);
    assert!(p.verify_checksum());
    assert_eq!(p.checksum(), 0xb935);
}

#[test]
fn getters_do_not_panic_after_setters_break_lengths() {
    let mut b = SYN_V4;
    let mut p = Ipv4Packet::new_checked(&mut b[..]).unwrap();
    p.set_header_len(60);
    p.set_total_len(0xffff);
    assert_eq!(p.options().len(), 40);
    assert_eq!(p.payload_range(), 60..60);
    p.set_header_len(8);
    assert_eq!(p.options_range(), 8..8);
    assert_eq!(p.payload_range(), 8..60);
}

#[test]
fn source_route_option_is_found_and_unexpired() {
    // LSRR, length 7, pointer 4 (first address not yet used), address 203.0.113.1.
    let opts = [option::NOP, option::LSRR, 7, 4, 203, 0, 113, 1];
    let o: Vec<_> = Ipv4Options::new(&opts).collect();
    let o = o[0].unwrap();
    assert_eq!(o.offset, 21);
    assert!(o.is_source_route());
    assert!(o.is_unexpired_source_route());
    // Pointer 8 > length 7: every address used.
    let opts = [option::SSRR, 7, 8, 203, 0, 113, 1, option::EOL];
    let o = Ipv4Options::new(&opts).next().unwrap().unwrap();
    assert!(!o.is_unexpired_source_route());
}

#[test]
fn option_running_past_header_is_option_overrun() {
    let opts = [option::NOP, 68, 8, 1, 2];
    assert_eq!(
        Ipv4Options::new(&opts).collect::<Vec<_>>(),
        vec![Err(WireError::OptionOverrun)]
    );
    let opts = [option::NOP, option::NOP, option::NOP, 68];
    assert_eq!(
        Ipv4Options::new(&opts).collect::<Vec<_>>(),
        vec![Err(WireError::OptionOverrun)]
    );
}

#[test]
fn option_length_below_two_is_bad_option_len() {
    for len in 0..2 {
        let opts = [68, len, 0, 0];
        assert_eq!(
            Ipv4Options::new(&opts).collect::<Vec<_>>(),
            vec![Err(WireError::BadOptionLen)]
        );
    }
}

#[test]
fn end_of_options_stops_the_walk() {
    let opts = [option::EOL, 68, 200, 0];
    assert_eq!(Ipv4Options::new(&opts).count(), 0);
}

#[test]
fn options_cut_at_every_length_end_in_overrun_inside_an_option() {
    // NOP, LSRR of 7 bytes (1..8), EOL.
    let all = [option::NOP, option::LSRR, 7, 4, 203, 0, 113, 1, option::EOL];
    for n in 0..=all.len() {
        let walked: Vec<_> = Ipv4Options::new(&all[..n]).collect();
        if n <= 1 || n >= 8 {
            assert!(walked.iter().all(|o| o.is_ok()), "cut at {n}: {walked:?}");
        } else {
            assert_eq!(walked, vec![Err(WireError::OptionOverrun)], "cut at {n}");
        }
    }
}

#[test]
fn unexpired_source_route_in_a_header_is_reported() {
    // IHL 7: NOP, LSRR (7 bytes, pointer 4: one address left), EOL; total length 28.
    let mut b = [0u8; 28];
    b[..20].copy_from_slice(&FRAG_V4[..20]);
    b[0] = 0x47;
    b[2..4].copy_from_slice(&28u16.to_be_bytes());
    b[20..28].copy_from_slice(&[option::NOP, option::LSRR, 7, 4, 203, 0, 113, 1]);
    let p = Ipv4Packet::new_checked(&b[..]).unwrap();
    assert_eq!(p.has_unexpired_source_route(), Ok(true));
    b[23] = 8; // pointer past the route: expired
    let p = Ipv4Packet::new_checked(&b[..]).unwrap();
    assert_eq!(p.has_unexpired_source_route(), Ok(false));
    b[22] = 9; // option length past the header
    let p = Ipv4Packet::new_checked(&b[..]).unwrap();
    assert_eq!(
        p.has_unexpired_source_route(),
        Err(WireError::OptionOverrun)
    );
    let p = Ipv4Packet::new_checked(&UDP_OPTS_V4[..]).unwrap();
    assert_eq!(p.has_unexpired_source_route(), Ok(false));
}
