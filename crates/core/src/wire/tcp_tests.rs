//! Unit tests for the TCP view, the options walk, in-place rewrites and `SeqNumber`.

use super::*;
use crate::wire::testdata::{ACK_SACK_V4, SYN_V4, SYNACK_V6};

const C4: Ipv4Addr = Ipv4Addr::new(198, 51, 100, 2);
const S4: Ipv4Addr = Ipv4Addr::new(203, 0, 113, 10);

fn b6() -> Ipv6Addr {
    "2001:db8:1::2".parse().unwrap()
}
fn k6() -> Ipv6Addr {
    "2001:db8:64::c633:6402".parse().unwrap()
}

fn opts<T: AsRef<[u8]>>(p: &TcpPacket<T>) -> Vec<Result<(usize, TcpOption<'_>)>> {
    p.options().collect()
}

#[test]
fn syn_fields_and_options_parse() {
    let p = TcpPacket::new_checked(&SYN_V4[20..]).unwrap();
    assert_eq!(p.src_port(), 40000);
    assert_eq!(p.dst_port(), 443);
    assert_eq!(p.seq_number(), SeqNumber(0x6b8b4567));
    assert_eq!(p.ack_number(), SeqNumber(0));
    assert_eq!(p.header_len(), 40);
    assert_eq!(p.flags(), flags::SYN);
    assert!(p.syn() && !p.ack() && !p.fin() && !p.rst() && !p.psh());
    assert!(!p.urg() && !p.ece() && !p.cwr());
    assert_eq!(p.window_len(), 64240);
    assert_eq!(p.checksum(), 0xb59e);
    assert_eq!(p.urgent_at(), 0);
    assert!(p.payload().is_empty());
    assert_eq!(p.segment_len(), 1);
    assert_eq!(
        opts(&p),
        vec![
            Ok((20, TcpOption::Mss(1460))),
            Ok((24, TcpOption::SackPermitted)),
            Ok((
                26,
                TcpOption::Timestamps {
                    tsval: 123_456,
                    tsecr: 0
                }
            )),
            Ok((37, TcpOption::WindowScale(7))),
        ]
    );
    assert!(p.verify_checksum_v4(C4, S4));
    // Swapping source and destination leaves the sum unchanged, so check another address.
    assert!(!p.verify_checksum_v4(C4, Ipv4Addr::new(203, 0, 113, 11)));
}

#[test]
fn ack_with_sack_and_payload_parses() {
    let p = TcpPacket::new_checked(&ACK_SACK_V4[20..]).unwrap();
    assert_eq!(p.header_len(), 52);
    assert!(p.ack() && p.psh());
    assert_eq!(p.ack_number(), SeqNumber(0x1000_0001));
    assert_eq!(p.payload(), b"hello");
    assert_eq!(p.segment_len(), 5);
    let o = opts(&p);
    assert_eq!(
        o[0],
        Ok((
            22,
            TcpOption::Timestamps {
                tsval: 0x0001_e2a0,
                tsecr: 0x7f00_0001
            }
        ))
    );
    let Ok((34, TcpOption::Sack(blocks))) = o[1] else {
        panic!("{o:?}")
    };
    assert_eq!(blocks.len(), 2);
    assert_eq!(
        blocks.iter().collect::<Vec<_>>(),
        vec![
            (SeqNumber(1000), SeqNumber(2000)),
            (SeqNumber(3000), SeqNumber(4000))
        ]
    );
    assert_eq!(blocks.get(1), Some((SeqNumber(3000), SeqNumber(4000))));
    assert_eq!(blocks.get(2), None);
    assert_eq!(blocks.get(usize::MAX / 8), None);
    assert_eq!(o.len(), 2);
    assert!(p.verify_checksum_v4(C4, S4));
}

#[test]
fn ipv6_synack_options_and_checksum_parse() {
    let p = TcpPacket::new_checked_options(&SYNACK_V6[40..]).unwrap();
    assert!(p.syn() && p.ack());
    assert_eq!(
        p.options().options().collect::<Vec<_>>(),
        vec![
            Ok(TcpOption::Mss(1420)),
            Ok(TcpOption::SackPermitted),
            Ok(TcpOption::Timestamps {
                tsval: 0x1122_3344,
                tsecr: 123_456
            }),
            Ok(TcpOption::WindowScale(9)),
        ]
    );
    assert!(p.verify_checksum_v6(&b6(), &k6()));
    assert!(!p.verify_checksum_v6(&k6(), &k6()));
}

#[test]
fn truncated_segment_is_an_error_at_every_length() {
    let seg = &SYN_V4[20..];
    for n in 0..seg.len() {
        let e = TcpPacket::new_checked(&seg[..n]).unwrap_err();
        let want = if n < 20 {
            WireError::Truncated
        } else {
            WireError::BadDataOffset
        };
        assert_eq!(e, want, "length {n}");
    }
}

#[test]
fn data_offset_below_five_is_bad_data_offset() {
    for off in 0..5u8 {
        let mut b = SYN_V4;
        b[32] = off << 4;
        assert_eq!(
            TcpPacket::new_checked(&b[20..]),
            Err(WireError::BadDataOffset)
        );
    }
}

#[test]
fn unknown_option_kinds_are_yielded_intact() {
    // Header of 32 bytes: kind 30 (MPTCP) length 4, kind 254 length 2, NOP, NOP, EOL pad.
    let mut b = [0u8; 32];
    b[12] = 8 << 4;
    b[20..32].copy_from_slice(&[30, 4, 0x10, 0x01, 254, 2, 1, 1, 0, 0, 0, 0]);
    let p = TcpPacket::new_checked_options(&b[..]).unwrap();
    assert_eq!(
        opts(&p),
        vec![
            Ok((
                20,
                TcpOption::Unknown {
                    kind: 30,
                    data: &[0x10, 0x01]
                }
            )),
            Ok((
                24,
                TcpOption::Unknown {
                    kind: 254,
                    data: &[]
                }
            )),
        ]
    );
}

#[test]
fn known_kind_with_wrong_length_is_malformed_not_misread() {
    let mut b = [0u8; 28];
    b[12] = 7 << 4;
    b[20..28].copy_from_slice(&[kind::MSS, 3, 0x05, kind::SACK, 4, 0, 0, 0]);
    let p = TcpPacket::new_checked(&b[..]).unwrap();
    assert_eq!(
        opts(&p),
        vec![
            Ok((
                20,
                TcpOption::Malformed {
                    kind: kind::MSS,
                    data: &[0x05]
                }
            )),
            Ok((
                23,
                TcpOption::Malformed {
                    kind: kind::SACK,
                    data: &[0, 0]
                }
            )),
        ]
    );
}

#[test]
fn option_running_past_header_is_option_overrun() {
    let mut b = [0u8; 24];
    b[12] = 6 << 4;
    b[20..24].copy_from_slice(&[1, 8, 10, 0]); // NOP, TS claiming 10 bytes in 3
    let p = TcpPacket::new_checked(&b[..]).unwrap();
    assert_eq!(opts(&p), vec![Err(WireError::OptionOverrun)]);
    assert_eq!(
        TcpPacket::new_checked_options(&b[..]),
        Err(WireError::OptionOverrun)
    );
    b[20..24].copy_from_slice(&[1, 1, 1, 2]); // kind byte without length byte
    let p = TcpPacket::new_checked(&b[..]).unwrap();
    assert_eq!(opts(&p), vec![Err(WireError::OptionOverrun)]);
}

#[test]
fn option_length_below_two_is_bad_option_len() {
    let mut b = [0u8; 24];
    b[12] = 6 << 4;
    b[20..24].copy_from_slice(&[2, 1, 0, 0]);
    let p = TcpPacket::new_checked(&b[..]).unwrap();
    assert_eq!(opts(&p), vec![Err(WireError::BadOptionLen)]);
}

#[test]
fn end_of_option_list_stops_the_walk() {
    let mut b = [0u8; 28];
    b[12] = 7 << 4;
    b[20..28].copy_from_slice(&[3, 3, 7, 0, 2, 200, 0, 0]);
    let p = TcpPacket::new_checked_options(&b[..]).unwrap();
    assert_eq!(opts(&p), vec![Ok((20, TcpOption::WindowScale(7)))]);
}

#[test]
fn rewriting_seq_ack_window_keeps_full_checksum_valid() {
    let mut b = ACK_SACK_V4;
    let mut p = TcpPacket::new_checked(&mut b[20..]).unwrap();
    p.rewrite_seq_number(SeqNumber(0xdead_beef), ChecksumForm::Full);
    p.rewrite_ack_number(p.ack_number() + 0x8000_0000, ChecksumForm::Full);
    p.rewrite_window_len(7, ChecksumForm::Full);
    p.rewrite_port(true, 8443, ChecksumForm::Full);
    assert_eq!(p.seq_number(), SeqNumber(0xdead_beef));
    assert_eq!(p.ack_number(), SeqNumber(0x9000_0001));
    assert_eq!(p.window_len(), 7);
    assert_eq!(p.dst_port(), 8443);
    assert!(p.verify_checksum_v4(C4, S4));
}

#[test]
fn rewriting_with_partial_checksum_leaves_field_alone() {
    let mut b = ACK_SACK_V4;
    let mut p = TcpPacket::new_checked(&mut b[20..]).unwrap();
    p.set_checksum(0x1234);
    p.rewrite_seq_number(SeqNumber(1), ChecksumForm::Partial);
    p.rewrite_timestamps_at(22, 1, 2, ChecksumForm::Partial)
        .unwrap();
    assert_eq!(p.checksum(), 0x1234);
    assert_eq!(p.seq_number(), SeqNumber(1));
}

#[test]
fn rewriting_timestamps_and_sack_edges_keeps_checksum_valid() {
    let mut b = ACK_SACK_V4;
    let mut p = TcpPacket::new_checked(&mut b[20..]).unwrap();
    assert!(
        p.map_timestamps(ChecksumForm::Full, |v, e| (v, e.wrapping_add(0x8100_0000)))
            .unwrap()
    );
    assert_eq!(p.shift_sack_edges(0xffff_ff00, ChecksumForm::Full), Ok(2));
    assert!(p.verify_checksum_v4(C4, S4));
    let o: Vec<_> = p.options().options().collect();
    assert_eq!(
        o[0],
        Ok(TcpOption::Timestamps {
            tsval: 0x0001_e2a0,
            tsecr: 0x0000_0001
        })
    );
    let Ok(TcpOption::Sack(blocks)) = o[1] else {
        panic!()
    };
    assert_eq!(
        blocks.iter().collect::<Vec<_>>(),
        vec![
            (SeqNumber(744), SeqNumber(1744)),
            (SeqNumber(2744), SeqNumber(3744))
        ]
    );
    assert_eq!(p.payload(), b"hello");
}

#[test]
fn rewriting_an_option_at_an_odd_offset_keeps_checksum_valid() {
    // Header 36 bytes: NOP, TS at 21 (odd), NOP, SACK(1 block) at 32? No: NOP TS(10) = 11
    // bytes from 20 to 31, then SACK of 10 bytes at 31 (odd), then padding.
    let mut seg = [0u8; 44];
    seg[12] = 11 << 4;
    seg[13] = flags::ACK;
    seg[20] = kind::NOP;
    seg[21..31].copy_from_slice(&[8, 10, 0, 0, 0, 1, 0, 0, 0, 2]);
    seg[31..41].copy_from_slice(&[5, 10, 0, 0, 0, 10, 0, 0, 0, 20]);
    seg[42..44].copy_from_slice(b"hi");
    let mut p = TcpPacket::new_checked_options(&mut seg[..]).unwrap();
    p.fill_checksum_v4(C4, S4);
    p.rewrite_timestamps_at(21, 0xa1b2_c3d4, 0xe5f6_0718, ChecksumForm::Full)
        .unwrap();
    p.rewrite_sack_block_at(
        31,
        0,
        SeqNumber(0xffff_fff0),
        SeqNumber(5),
        ChecksumForm::Full,
    )
    .unwrap();
    assert!(p.verify_checksum_v4(C4, S4));
    assert_eq!(
        &seg[23..31],
        &[0xa1, 0xb2, 0xc3, 0xd4, 0xe5, 0xf6, 0x07, 0x18]
    );
}

#[test]
fn rewriting_at_an_offset_without_that_option_is_refused() {
    let mut b = ACK_SACK_V4;
    let before = b;
    let mut p = TcpPacket::new_checked(&mut b[20..]).unwrap();
    let f = ChecksumForm::Full;
    assert_eq!(
        p.rewrite_timestamps_at(34, 1, 2, f),
        Err(WireError::NoSuchOption)
    );
    assert_eq!(
        p.rewrite_timestamps_at(0, 1, 2, f),
        Err(WireError::NoSuchOption)
    );
    assert_eq!(
        p.rewrite_timestamps_at(70, 1, 2, f),
        Err(WireError::NoSuchOption)
    );
    let (l, r) = (SeqNumber(1), SeqNumber(2));
    assert_eq!(
        p.rewrite_sack_block_at(34, 2, l, r, f),
        Err(WireError::NoSuchOption)
    );
    assert_eq!(
        p.rewrite_sack_block_at(22, 0, l, r, f),
        Err(WireError::NoSuchOption)
    );
    assert_eq!(
        p.rewrite_sack_block_at(usize::MAX, 0, l, r, f),
        Err(WireError::NoSuchOption)
    );
    assert_eq!(p.rewrite_mss_at(22, 1, f), Err(WireError::NoSuchOption));
    assert_eq!(b, before);
}

#[test]
fn shift_sack_edges_on_bad_options_changes_nothing() {
    let mut b = ACK_SACK_V4;
    b[20 + 35] = 26; // the SACK option at 34 claims 26 bytes: runs past the header
    let before = b;
    let mut p = TcpPacket::new_checked(&mut b[20..]).unwrap();
    assert_eq!(
        p.shift_sack_edges(1, ChecksumForm::Full),
        Err(WireError::OptionOverrun)
    );
    assert_eq!(b, before);
}

#[test]
fn map_timestamps_without_timestamps_reports_false() {
    let mut b = SYNACK_V6;
    b[40 + 12] = 5 << 4; // no options
    let mut p = TcpPacket::new_checked(&mut b[40..]).unwrap();
    assert_eq!(
        p.map_timestamps(ChecksumForm::Full, |_, _| unreachable!()),
        Ok(false)
    );
}

#[test]
fn building_the_synack_with_setters_reproduces_its_bytes() {
    let mut seg = [0u8; 44];
    seg[20..].copy_from_slice(&SYNACK_V6[60..]);
    let mut p = TcpPacket::new_unchecked(&mut seg[..]);
    p.set_src_port(443);
    p.set_dst_port(40000);
    p.set_seq_number(SeqNumber(0xa0b0_c0d0));
    p.set_ack_number(SeqNumber(0x6b8b_4568));
    p.set_header_len(44);
    p.set_syn(true);
    p.set_fin(true);
    p.set_fin(false);
    p.set_ack(true);
    p.set_window_len(65535);
    p.set_urgent_at(0);
    p.fill_checksum_v6(&b6(), &k6());
    assert_eq!(&seg[..], &SYNACK_V6[40..]);
}

#[test]
fn flag_setters_touch_only_their_bit() {
    let mut p = TcpPacket::new_unchecked([0u8; 20]);
    p.set_header_len(20);
    type Setter = fn(&mut TcpPacket<[u8; 20]>, bool);
    let setters: [(Setter, u8); 8] = [
        (TcpPacket::set_fin, flags::FIN),
        (TcpPacket::set_syn, flags::SYN),
        (TcpPacket::set_rst, flags::RST),
        (TcpPacket::set_psh, flags::PSH),
        (TcpPacket::set_ack, flags::ACK),
        (TcpPacket::set_urg, flags::URG),
        (TcpPacket::set_ece, flags::ECE),
        (TcpPacket::set_cwr, flags::CWR),
    ];
    for (set, bit) in setters {
        p.set_flags(0);
        set(&mut p, true);
        assert_eq!(p.flags(), bit);
        p.set_flags(0xff);
        set(&mut p, false);
        assert_eq!(p.flags(), !bit);
    }
    assert_eq!(p.header_len(), 20);
    assert_eq!(p.reserved(), 0);
}

#[test]
fn seq_number_wraps_and_compares_as_serial_numbers() {
    let a = SeqNumber(0xffff_fff0);
    let b = a + 0x20;
    assert_eq!(b, SeqNumber(0x10));
    assert!(a.lt(b) && a.le(b) && b.gt(a) && b.ge(a));
    assert!(!b.lt(a) && a.le(a) && a.ge(a) && !a.lt(a));
    assert_eq!(b - a, 0x20);
    assert_eq!(a - b, 0xffff_ffe0);
    assert_eq!(a.signed_diff(b), -0x20);
    assert_eq!(a + (b - a), b);
    assert_eq!(b - 0x20u32, a);
    let mut c = a;
    c += 0x10;
    assert_eq!(c, SeqNumber(0));
    c -= 1;
    assert_eq!(c, SeqNumber(u32::MAX));
    assert!(SeqNumber(5).in_window(a, 0x20));
    assert!(!SeqNumber(0x10).in_window(a, 0x20));
    assert_eq!(
        format!("{} {:?}", SeqNumber(7), SeqNumber(7)),
        "7 SeqNumber(7)"
    );
}

#[test]
fn getters_do_not_panic_after_setters_break_lengths() {
    let mut b = SYN_V4;
    let mut p = TcpPacket::new_checked(&mut b[20..]).unwrap();
    p.set_header_len(60);
    assert_eq!(p.options_range(), 20..40);
    assert!(p.payload().is_empty());
    p.set_header_len(0);
    assert!(p.options_bytes().is_empty());
    assert_eq!(p.payload_range(), 0..40);
    assert_eq!(p.options().count(), 0);
}

#[test]
fn quoted_eight_bytes_give_ports_and_sequence_number() {
    let p = TcpPacket::new_checked_quoted(&SYN_V4[20..28]).unwrap();
    assert_eq!((p.src_port(), p.dst_port()), (40000, 443));
    assert_eq!(p.seq_number(), SeqNumber(0x6b8b_4567));
    assert_eq!(p.ack_number(), SeqNumber(0), "not quoted: reads as zero");
    let mut b = [0u8; 8];
    b.copy_from_slice(&SYN_V4[20..28]);
    let mut p = TcpPacket::new_checked_quoted(&mut b[..]).unwrap();
    p.set_seq_number(SeqNumber(1));
    p.set_ack_number(SeqNumber(5)); // not quoted: dropped
    p.rewrite_ack_number(SeqNumber(6), ChecksumForm::Full); // likewise
    assert_eq!(b, [0x9c, 0x40, 0x01, 0xbb, 0, 0, 0, 1]);
    assert_eq!(
        TcpPacket::new_checked_quoted(&SYN_V4[20..27]),
        Err(WireError::Truncated)
    );
}

#[test]
fn options_cut_at_every_length_end_in_overrun_inside_an_option() {
    // The SYN's options: MSS at 0..4, SACK-permitted 4..6, TS 6..16, NOP 16, WS 17..20.
    let all = &SYN_V4[40..60];
    let boundaries = [0, 4, 6, 16, 17, 20];
    for n in 0..=all.len() {
        let walked: Vec<_> = TcpOptions::new(&all[..n]).collect();
        let last = walked.last().cloned();
        if boundaries.contains(&n) {
            assert!(walked.iter().all(|o| o.is_ok()), "cut at {n}: {walked:?}");
        } else {
            assert_eq!(last, Some(Err(WireError::OptionOverrun)), "cut at {n}");
        }
    }
}
