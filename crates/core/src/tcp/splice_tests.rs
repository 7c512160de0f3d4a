//! Tests of the pure splice rewrite ([`Splice`]).
//!
//! Segments are built from an option list ([`Opt`]), so any layout can be written, and
//! the expected result of a rewrite is that list with the model's changes, built from
//! scratch: comparing whole segments checks at once that the right fields moved, that
//! every other option and the payload stayed byte-identical, and that the incrementally
//! updated checksum equals a recomputation. The splice touches no address or port, so
//! one fixed pseudo-header stands in for the translator's.

use std::net::{Ipv4Addr, Ipv6Addr};

use super::seg::{ClientOptions, SegInfo};
use super::splice::{BackendSynAck, Splice, SpliceError};
use crate::wire::WireError;
use crate::wire::checksum::{self, ChecksumForm as Form};
use crate::wire::tcp::flags::{ACK, FIN, PSH, RST, SYN, URG};
use crate::wire::tcp::{SeqNumber, TcpOption, TcpPacket};

use Form::{Full, Partial};

const C6: Ipv6Addr = Ipv6Addr::new(0x2001, 0xdb8, 0x64, 0, 0, 0, 0xc633, 0x6402);
const B6: Ipv6Addr = Ipv6Addr::new(0x2001, 0xdb8, 1, 0, 0, 0, 0, 2);
const FORMS: [Form; 2] = [Full, Partial];
const C4: Ipv4Addr = Ipv4Addr::new(198, 51, 100, 2);
const S4: Ipv4Addr = Ipv4Addr::new(203, 0, 113, 10);

/// One TCP option, or raw option bytes (unknown kinds, malformed lengths, junk).
#[derive(Debug, Clone, PartialEq)]
enum Opt {
    Nop,
    Eol,
    Mss(u16),
    Ws(u8),
    SackOk,
    Ts(u32, u32),
    Sack(Vec<(u32, u32)>),
    Raw(&'static [u8]),
}
use Opt::{Eol, Mss, Nop, Raw, Sack, SackOk, Ts, Ws};

fn unpadded(opts: &[Opt]) -> Vec<u8> {
    let mut b = Vec::new();
    for o in opts {
        match o {
            Nop => b.push(1),
            Eol => b.push(0),
            Mss(m) => b.extend([[2, 4], m.to_be_bytes()].concat()),
            Ws(s) => b.extend([3, 3, *s]),
            SackOk => b.extend([4, 2]),
            Ts(v, e) => b.extend([&[8, 10][..], &v.to_be_bytes(), &e.to_be_bytes()].concat()),
            Sack(blocks) => {
                b.extend([5, 2 + 8 * blocks.len() as u8]);
                for (l, r) in blocks {
                    b.extend([l.to_be_bytes(), r.to_be_bytes()].concat());
                }
            }
            Raw(bytes) => b.extend(*bytes),
        }
    }
    b
}

/// The option bytes, padded with zeros (EOL) to a multiple of four.
fn encode(opts: &[Opt]) -> Vec<u8> {
    let mut b = unpadded(opts);
    b.resize(b.len().next_multiple_of(4), 0);
    assert!(b.len() <= 40, "options too long: {opts:?}");
    b
}

/// A segment to build: ports 40000 → 443, urgent pointer 0x0bad (which must not change).
#[derive(Debug, Clone)]
struct Seg {
    seq: u32,
    ack: u32,
    flags: u8,
    window: u16,
    opts: Vec<Opt>,
    payload: Vec<u8>,
}

fn seg(opts: Vec<Opt>) -> Seg {
    let (seq, ack, flags, window) = (0x1000_0000, 0x2000_0000, ACK | PSH, 502);
    let payload = b"odd-length payload!".to_vec();
    Seg {
        seq,
        ack,
        flags,
        window,
        opts,
        payload,
    }
}

fn pseudo(len: usize) -> u32 {
    checksum::pseudo_header_v6(&C6, &B6, 6, len as u32)
}

impl Seg {
    fn with(mut self, change: impl FnOnce(&mut Seg)) -> Seg {
        change(&mut self);
        self
    }

    /// The segment with its checksum field in `form` over the fixed pseudo-header: `Full`
    /// the finished checksum, `Partial` the folded pseudo-header sum (a kernel
    /// `CHECKSUM_PARTIAL` packet).
    fn bytes(&self, form: Form) -> Vec<u8> {
        let o = encode(&self.opts);
        let mut b = [40000u16.to_be_bytes(), 443u16.to_be_bytes()].concat();
        b.extend([self.seq.to_be_bytes(), self.ack.to_be_bytes()].concat());
        b.extend([(((20 + o.len()) / 4) << 4) as u8, self.flags]);
        b.extend(self.window.to_be_bytes());
        b.extend([0, 0, 0x0b, 0xad]);
        b.extend(o);
        b.extend(&self.payload);
        let csum = match form {
            Full => checksum::finish(checksum::combine(pseudo(b.len()), checksum::sum(&b))),
            Partial => checksum::fold(pseudo(b.len())),
        };
        b[16..18].copy_from_slice(&csum.to_be_bytes());
        b
    }

    /// How many options a receiver walks: those before any EOL.
    fn live(&self) -> usize {
        let eol = self.opts.iter().position(|o| *o == Eol);
        eol.unwrap_or(self.opts.len())
    }

    /// The timestamps option a receiver reads: the last live one (as Linux does).
    fn live_ts(&self) -> Option<usize> {
        let live = &self.opts[..self.live()];
        live.iter().rposition(|o| matches!(o, Ts(..)))
    }

    /// Model of `to_backend`: ack (with ACK) and SACK edges + δ, TSecr + offset, window
    /// expanded (and clamped) when the backend declined scaling.
    fn to_backend(&self, s: &Splice) -> Seg {
        let mut e = self.clone();
        if self.flags & ACK != 0 {
            e.ack = self.ack.wrapping_add(s.delta);
        }
        let ts = self.live_ts();
        for (i, o) in e.opts.iter_mut().enumerate().take(self.live()) {
            match o {
                Sack(blocks) => blocks.iter_mut().for_each(|(l, r)| {
                    (*l, *r) = (l.wrapping_add(s.delta), r.wrapping_add(s.delta));
                }),
                Ts(_, e) if Some(i) == ts => *e = e.wrapping_add(s.ts_offset.unwrap_or(0)),
                _ => {}
            }
        }
        if let Some(shift) = s.expand_client_window {
            e.window = (u64::from(self.window) << shift).min(0xffff) as u16;
        }
        e
    }

    /// Model of `to_client`: seq − δ, TSval − offset, window from the backend's scale to
    /// the client's, rounded down and clamped; ack and SACK (client space) stay.
    fn to_client(&self, s: &Splice) -> Seg {
        let mut e = self.clone();
        e.seq = self.seq.wrapping_sub(s.delta);
        if let (Some(i), Some(off)) = (self.live_ts(), s.ts_offset) {
            if let Ts(v, _) = &mut e.opts[i] {
                *v = v.wrapping_sub(off);
            }
        }
        let bytes = u64::from(self.window) << s.backend_ws;
        e.window = (bytes >> s.client_ws).min(0xffff) as u16;
        e
    }
}

#[derive(Debug, Clone, Copy, PartialEq)]
enum Dir {
    ToBackend,
    ToClient,
}
use Dir::{ToBackend, ToClient};
const DIRS: [Dir; 2] = [ToBackend, ToClient];

/// How the rewrite is invoked: the value's two entry points, or the engine's old code.
#[derive(Debug, Clone, Copy)]
enum Via {
    Value,
    Parsed,
    OldEngine,
}

type Out = (Result<(), SpliceError>, Vec<u8>);
type Tcp<'a> = TcpPacket<&'a mut [u8]>;

fn run(s: &Splice, dir: Dir, via: Via, bytes: &[u8], form: Form) -> Out {
    let mut b = bytes.to_vec();
    let mut tcp = TcpPacket::new_checked(&mut b[..]).unwrap();
    let r = match (via, dir) {
        (Via::Value, ToBackend) => s.to_backend(&mut tcp, form),
        (Via::Value, ToClient) => s.to_client(&mut tcp, form),
        (via, dir) => match SegInfo::parse(&tcp) {
            Err(e) => Err(SpliceError::Options(e)),
            Ok(seg) => {
                let t = &mut tcp;
                match (via, dir) {
                    (Via::OldEngine, ToBackend) => old_engine_to_backend(s, t, &seg, form),
                    (Via::OldEngine, ToClient) => old_engine_to_client(s, t, &seg, form),
                    (_, ToBackend) => s.to_backend_parsed(t, &seg, form).unwrap(),
                    (_, ToClient) => s.to_client_parsed(t, &seg, form),
                }
                Ok(())
            }
        },
    };
    (r, b)
}

fn rewrite(s: &Splice, dir: Dir, bytes: &[u8], form: Form) -> Vec<u8> {
    let (r, b) = run(s, dir, Via::Value, bytes, form);
    r.unwrap();
    b
}

/// engine/client.rs `forward_to_backend` before `Splice`, verbatim but for the names
/// (the flow kept `ts_offset: u32` beside `client.timestamps: bool`).
fn old_engine_to_backend(s: &Splice, tcp: &mut Tcp<'_>, seg: &SegInfo, form: Form) {
    let (delta, ts_offset, expand) = (s.delta, s.ts_offset.unwrap_or(0), s.expand_client_window);
    let timestamps = s.ts_offset.is_some() && ts_offset != u32::MAX;
    if seg.ack_flag() {
        tcp.rewrite_ack_number(seg.ack + delta, form);
    }
    if seg.sack {
        tcp.shift_sack_edges(delta, form).unwrap();
    }
    if timestamps {
        if let (Some(at), Some((tsval, tsecr))) = (seg.timestamps_at, seg.options.timestamps) {
            let _ = tcp.rewrite_timestamps_at(at, tsval, tsecr.wrapping_add(ts_offset), form);
        }
    }
    if let Some(shift) = expand {
        let w = (u32::from(seg.window) << shift).min(0xffff) as u16;
        tcp.rewrite_window_len(w, form);
    }
}

/// engine/backend.rs `forward_to_client` before `Splice`, likewise.
fn old_engine_to_client(s: &Splice, tcp: &mut Tcp<'_>, seg: &SegInfo, form: Form) {
    let (ts_offset, backend_ws, client_ws) = (s.ts_offset.unwrap_or(0), s.backend_ws, s.client_ws);
    tcp.rewrite_seq_number(seg.seq - s.delta, form);
    if s.ts_offset.is_some() {
        if let (Some(at), Some((tsval, tsecr))) = (seg.timestamps_at, seg.options.timestamps) {
            let _ = tcp.rewrite_timestamps_at(at, tsval.wrapping_sub(ts_offset), tsecr, form);
        }
    }
    if backend_ws != client_ws {
        let bytes = u32::from(seg.window) << backend_ws;
        tcp.rewrite_window_len((bytes >> client_ws).min(0xffff) as u16, form);
    }
}

/// Completes a partial checksum as offload does: the sum over the segment, starting
/// from the pseudo-header sum in the field, complemented.
fn finish_partial(mut b: Vec<u8>) -> Vec<u8> {
    let c = checksum::checksum(&b);
    b[16..18].copy_from_slice(&c.to_be_bytes());
    b
}

/// Applies `s` to `g` in `dir`, in both forms, through both entry points, and checks the
/// result against the model built from scratch; the partial result, finished, must
/// equal the full one.
fn check(s: &Splice, dir: Dir, g: &Seg) {
    let want = match dir {
        ToBackend => g.to_backend(s),
        ToClient => g.to_client(s),
    };
    for form in FORMS {
        let before = g.bytes(form);
        let got = rewrite(s, dir, &before, form);
        let ctx = format!("{dir:?} {form:?} {s:?} {g:?}");
        assert_eq!(got, want.bytes(form), "{ctx}");
        let parsed = run(s, dir, Via::Parsed, &before, form).1;
        assert_eq!(parsed, got, "parsed: {ctx}");
        assert_eq!(got[got.len() - g.payload.len()..], g.payload[..], "{ctx}");
        match form {
            Full => assert!(TcpPacket::new_unchecked(&got).verify_checksum_v6(&C6, &B6)),
            Partial => assert_eq!(finish_partial(got), want.bytes(Full), "{ctx}"),
        }
    }
}

/// (seq, ack, window, the live timestamps, every SACK block) of a segment, read back.
type Fields = (u32, u32, u16, Option<(u32, u32)>, Vec<(u32, u32)>);

fn fields(b: &[u8]) -> Fields {
    let tcp = TcpPacket::new_checked(b).unwrap();
    let (mut ts, mut sack) = (None, vec![]);
    for o in tcp.options().options() {
        match o.unwrap() {
            TcpOption::Timestamps { tsval, tsecr } => ts = Some((tsval, tsecr)),
            TcpOption::Sack(blocks) => sack.extend(blocks.iter().map(|(l, r)| (l.0, r.0))),
            _ => {}
        }
    }
    let (seq, ack) = (tcp.seq_number().0, tcp.ack_number().0);
    (seq, ack, tcp.window_len(), ts, sack)
}

/// The fields of `g` after the rewrite in `dir` (full checksum form).
fn moved(s: &Splice, dir: Dir, g: &Seg) -> Fields {
    fields(&rewrite(s, dir, &g.bytes(Full), Full))
}

/// A splice with equal window scales (no window rewrite).
fn splice(delta: u32, ts_offset: Option<u32>) -> Splice {
    let (backend_ws, client_ws, expand_client_window) = (7, 7, None);
    Splice {
        delta,
        ts_offset,
        backend_ws,
        client_ws,
        expand_client_window,
    }
}

fn scaled(backend_ws: u8, client_ws: u8, expand: Option<u8>, mut s: Splice) -> Splice {
    (s.backend_ws, s.client_ws, s.expand_client_window) = (backend_ws, client_ws, expand);
    s
}

fn client(wscale: Option<u8>, timestamps: bool) -> ClientOptions {
    let (mss, sack) = (1460, true);
    ClientOptions {
        mss,
        wscale,
        sack,
        timestamps,
    }
}

fn backend(isn: u32, wscale: Option<u8>, tsval: Option<u32>) -> BackendSynAck {
    let isn = SeqNumber(isn);
    BackendSynAck { isn, wscale, tsval }
}

/// Every pair of an element of `a` and one of `b`.
fn product<A: Clone, B: Clone>(a: &[A], b: &[B]) -> Vec<(A, B)> {
    let pairs = a
        .iter()
        .map(|x| b.iter().map(move |y| (x.clone(), y.clone())));
    pairs.flatten().collect()
}

fn blocks(n: u32) -> Vec<(u32, u32)> {
    (1..=n)
        .map(|i| (0x2000_0000 + i * 0x1000, 0x2000_0800 + i * 0x1000))
        .collect()
}

/// Option layouts every rewrite is checked on.
#[rustfmt::skip]
fn layouts() -> Vec<Vec<Opt>> {
    let ts = || Ts(0x0001_e2a0, 0x7f00_0001);
    let mut v = vec![
        vec![],                                                 // no options
        vec![Nop, Nop, ts()],                                   // Linux
        vec![ts(), Eol],                                        // EOL padding
        vec![Nop, ts(), Nop],                                   // TS at an odd offset
        vec![Nop, Sack(blocks(2)), Nop, ts()],                  // SACK at an odd offset
        vec![Nop, Nop, Sack(blocks(3)), Nop, Nop, ts()],        // SACK first, 40 bytes
        vec![Mss(1460), SackOk, ts(), Nop, Ws(7)],              // SYN-like, with TS
        vec![Mss(1400), Nop, Ws(14), Nop, Nop, SackOk],         // SYN-like, without TS
        // Unknown kinds (30 MPTCP-like, 254 experimental) before, between and after.
        vec![Raw(&[30, 6, 0x10, 1, 0xaa, 0xbb]), ts(), Raw(&[254, 4, 0xf9, 0x89]), Sack(blocks(1))],
        vec![Sack(blocks(1)), Raw(&[254, 6, 0xf9, 0x89, 0, 0]), ts()],
        vec![Nop, Nop, ts(), Raw(&[30, 3, 7]), Eol],
        // Known kinds with impossible lengths are no options to rewrite.
        vec![Raw(&[8, 6, 1, 2, 3, 4]), Raw(&[5, 2]), Raw(&[5, 7, 1, 2, 3, 4, 5]), Nop, ts()],
        // After EOL nothing is an option, not even junk.
        vec![Nop, Nop, ts(), Eol, Raw(&[8, 10, 0, 0, 0, 1, 0, 0, 0, 2, 5, 10, 0, 0, 0, 3, 0, 0, 0, 4])],
        vec![Eol, Raw(&[30, 0xff, 5])],
        vec![Ts(1, 2), Ts(3, 4), Nop, Nop, Sack(blocks(1))],    // the last TS is read
        vec![Sack(blocks(1)), Sack(blocks(2)), Nop, Nop],       // both SACKs move
    ];
    v.extend((1..=4).map(|n| vec![Nop, Nop, Sack(blocks(n))]));
    v.extend((1..=3).map(|n| vec![Nop, Nop, ts(), Nop, Nop, Sack(blocks(n))]));
    v
}

#[test]
fn every_option_layout_is_rewritten_like_the_model_in_both_directions_and_forms() {
    let splices = [
        splice(0x0123_4567, Some(0x89ab_cdef)),
        splice(u32::MAX, Some(u32::MAX)),
        splice(0x8000_0000, None),
        scaled(9, 7, Some(5), splice(7, Some(3))),
        scaled(7, 9, Some(14), splice(0, Some(0))),
    ];
    for (opts, (s, dir)) in product(&layouts(), &product(&splices, &DIRS)) {
        check(&s, dir, &seg(opts).with(|g| g.ack = 0xffff_fff0));
    }
}

#[test]
fn ack_and_every_sack_edge_move_by_delta_to_backend() {
    // Four blocks fit only without timestamps.
    for (ts, n) in product(&[false, true], &[0, 1, 2, 3, 4])
        .into_iter()
        .take(9)
    {
        let mut opts = if ts { vec![Nop, Nop, Ts(5, 6)] } else { vec![] };
        if n > 0 {
            opts.extend([Nop, Nop, Sack(blocks(n))]);
        }
        let sack = blocks(n).into_iter().map(|(l, r)| (l + 0x100, r + 0x100));
        let sack = sack.collect();
        let want = (0x1000_0000, 0x2000_0100, 502, ts.then_some((5, 6)), sack);
        assert_eq!(moved(&splice(0x100, None), ToBackend, &seg(opts)), want);
    }
}

#[test]
fn seq_moves_back_by_delta_to_client_and_ack_and_sack_edges_stay() {
    let g = seg(vec![Nop, Nop, Ts(5, 6), Nop, Nop, Sack(blocks(3))]);
    let want = (0x0fff_ff00, 0x2000_0000, 502, Some((5, 6)), blocks(3));
    assert_eq!(moved(&splice(0x100, None), ToClient, &g), want);
}

#[test]
fn tsecr_gains_the_offset_to_backend_and_tsval_loses_it_to_client() {
    let (s, g) = (splice(0, Some(300)), seg(vec![Nop, Nop, Ts(1000, 2000)]));
    assert_eq!(moved(&s, ToBackend, &g).3, Some((1000, 2300)));
    assert_eq!(moved(&s, ToClient, &g).3, Some((700, 2000)));
}

#[test]
fn splice_without_delta_offset_or_rescale_changes_no_byte() {
    for (opts, (ts_offset, form)) in product(&layouts(), &product(&[None, Some(0)], &FORMS)) {
        let (s, b) = (splice(0, ts_offset), seg(opts).bytes(form));
        assert_eq!(rewrite(&s, ToBackend, &b, form), b);
        assert_eq!(rewrite(&s, ToClient, &b, form), b);
    }
}

#[test]
fn sequence_numbers_sack_edges_and_timestamps_wrap_at_2_pow_32() {
    // Kracauer's ISN and clock sit just below 2^32, the backend's just above 0.
    let (client, b) = (client(Some(7), true), backend(0x100, Some(7), Some(0x10)));
    let s = Splice::negotiate(SeqNumber(0xffff_ff00), &client, 7, 0xffff_fff0, &b);
    assert_eq!((s.delta, s.ts_offset), (0x200, Some(0x20)));
    let sack = Sack(vec![(0xffff_fff8, 8), (0xffff_fe00, 0xffff_ff00)]);
    let g = seg(vec![Ts(0x10, 0xffff_fff0), sack]).with(|g| (g.seq, g.ack) = (0x101, 0xffff_fff0));
    let sack = vec![(0x1f8, 0x208), (0, 0x100)];
    let want = (0x101, 0x1f0, 502, Some((0x10, 0x10)), sack);
    assert_eq!(moved(&s, ToBackend, &g), want);
    let (seq, _, _, ts, _) = moved(&s, ToClient, &g);
    assert_eq!((seq, ts), (0xffff_ff01, Some((0xffff_fff0, 0xffff_fff0))));
    for dir in DIRS {
        check(&s, dir, &g);
    }
}

#[test]
fn negotiate_sets_delta_to_backend_isn_minus_kracauer_isn_wrapping() {
    #[rustfmt::skip]
    let cases = [(1, 5, 4), (5, 1, u32::MAX - 3), (u32::MAX, 0, 1), (0x8000_0000, 0, 0x8000_0000), (7, 7, 0)];
    for (k, b, delta) in cases {
        let (client, backend) = (client(None, false), backend(b, None, None));
        let s = Splice::negotiate(SeqNumber(k), &client, 7, 0, &backend);
        assert_eq!(s.delta, delta, "k_isn {k:#x} b_isn {b:#x}");
        assert_eq!(s.seq_to_client(SeqNumber(b)), SeqNumber(k));
        assert_eq!(s.ack_to_backend(SeqNumber(k) + 1), SeqNumber(b) + 1);
    }
}

#[test]
fn negotiate_picks_window_scales_for_every_wscale_combination() {
    // (client wscale, backend wscale) -> (backend_ws, client_ws, expand), with ws_k = 8.
    #[rustfmt::skip]
    let cases = [
        (Some(7), Some(9), (9, 8, None)),   (Some(7), Some(0), (0, 8, None)),
        (Some(7), Some(15), (14, 8, None)), (Some(7), Some(255), (14, 8, None)),
        (Some(7), None, (0, 8, Some(7))),   (Some(0), None, (0, 8, Some(0))),
        (None, Some(9), (0, 0, None)),      (None, None, (0, 0, None)),
    ];
    for (ws_c, ws_b, want) in cases {
        let (client, backend) = (client(ws_c, false), backend(9, ws_b, None));
        let s = Splice::negotiate(SeqNumber(1), &client, 8, 0, &backend);
        let got = (s.backend_ws, s.client_ws, s.expand_client_window);
        assert_eq!(got, want, "{ws_c:?} {ws_b:?}");
    }
}

#[test]
fn negotiate_sets_the_timestamp_offset_only_when_the_client_uses_timestamps() {
    // (client timestamps, backend TSval, k_tsval) -> ts_offset = TSval − k_tsval
    #[rustfmt::skip]
    let cases = [
        (true, Some(5000), 1000, Some(4000)),   (true, Some(1000), 5000, Some(u32::MAX - 3999)),
        (true, Some(0x10), 0xffff_fff0, Some(0x20)), (true, Some(999), 1000, Some(u32::MAX)),
        (true, None, 1000, Some(0)),            (false, Some(5000), 1000, None),
        (false, None, 1000, None),
    ];
    for (ts, tsval, k_tsval, want) in cases {
        let (client, b) = (client(None, ts), backend(9, None, tsval));
        let s = Splice::negotiate(SeqNumber(1), &client, 7, k_tsval, &b);
        assert_eq!(s.ts_offset, want, "{ts} {tsval:?} {k_tsval}");
    }
}

#[test]
fn backend_window_reaches_the_client_rescaled_rounded_down_and_clamped() {
    // (backend_ws, client_ws, backend window field) -> client window field
    #[rustfmt::skip]
    let cases = [
        (7, 7, 1234, 1234), (0, 0, 0xffff, 0xffff), (14, 14, 0xffff, 0xffff),
        (9, 7, 1000, 4000), (9, 7, 0x3fff, 0xfffc), (9, 7, 0x4000, 0xffff),
        (14, 0, 0xffff, 0xffff), (14, 0, 1, 0x4000),
        (7, 9, 1003, 250), (7, 9, 3, 0), (0, 14, 0xffff, 3), (0, 7, 0x7f, 0),
    ];
    for (backend_ws, client_ws, w, want) in cases {
        let s = scaled(backend_ws, client_ws, None, splice(0, None));
        let ctx = format!("{backend_ws}->{client_ws}: {w}");
        assert_eq!(s.window_to_client(w), want, "{ctx}");
        let g = seg(vec![]).with(|g| g.window = w);
        assert_eq!(moved(&s, ToClient, &g).2, want);
        check(&s, ToClient, &g);
    }
}

#[test]
fn client_window_is_expanded_and_clamped_only_when_the_backend_declined_scaling() {
    // (expand, backend_ws, client_ws, client window field) -> backend window field
    #[rustfmt::skip]
    let cases = [
        (None, 9, 7, 1234, 1234), (None, 0, 0, 0xffff, 0xffff), (Some(0), 0, 7, 1234, 1234),
        (Some(7), 0, 7, 100, 12800), (Some(7), 0, 7, 511, 0xff80), (Some(7), 0, 7, 512, 0xffff),
        (Some(14), 0, 7, 3, 0xc000), (Some(14), 0, 7, 4, 0xffff), (Some(14), 0, 7, 0xffff, 0xffff),
    ];
    for (expand, backend_ws, client_ws, w, want) in cases {
        let s = scaled(backend_ws, client_ws, expand, splice(0, None));
        assert_eq!(s.window_to_backend(w), want, "{expand:?}: {w}");
        let g = seg(vec![]).with(|g| g.window = w);
        assert_eq!(moved(&s, ToBackend, &g).2, want);
        check(&s, ToBackend, &g);
    }
}

#[test]
fn segment_without_the_ack_flag_keeps_its_ack_field_and_the_rest_moves() {
    let s = splice(0x100, Some(10));
    let opts = vec![Nop, Nop, Ts(5, 6), Nop, Nop, Sack(blocks(1))];
    for f in [0, SYN, RST, FIN, PSH, RST | FIN] {
        let g = seg(opts.clone()).with(|g| g.flags = f);
        let (_, ack, _, ts, sack) = moved(&s, ToBackend, &g);
        let want = (0x2000_0000, Some((5, 16)), 0x2000_1100);
        assert_eq!((ack, ts, sack[0].0), want, "{f:#x}");
        check(&s, ToBackend, &g);
    }
}

#[test]
fn rst_and_fin_get_the_same_rewrite_as_a_data_segment() {
    let s = scaled(9, 7, Some(3), splice(0x8000_0001, Some(77)));
    let data = seg(vec![Nop, Nop, Ts(5, 6), Nop, Nop, Sack(blocks(2))]);
    let fin_rst = [ACK | FIN, ACK | RST, ACK | FIN | PSH, ACK | RST | URG, RST];
    let payloads: [&[u8]; 2] = [b"", b"bye"];
    for (dir, (f, payload)) in product(&DIRS, &product(&fin_rst, &payloads)) {
        let g = data
            .clone()
            .with(|g| (g.flags, g.payload) = (f, payload.to_vec()));
        let mut want = moved(&s, dir, &data);
        if dir == ToBackend && f & ACK == 0 {
            want.1 = data.ack;
        }
        assert_eq!(moved(&s, dir, &g), want, "{dir:?} {f:#x}");
        check(&s, dir, &g);
    }
}

#[test]
fn option_running_past_the_header_is_an_error_and_changes_no_byte() {
    #[rustfmt::skip]
    let cases: [(&[u8], WireError); 6] = [
        (&[1, 1, 8, 10, 0, 0, 0, 1], WireError::OptionOverrun),              // TS cut short
        (&[1, 1, 5, 26, 0, 0, 0, 1, 0, 0, 0, 2], WireError::OptionOverrun),  // 3 blocks claimed
        (&[1, 1, 1, 30], WireError::OptionOverrun),                          // no length byte
        (&[30, 1, 0, 0], WireError::BadOptionLen),                           // length below 2
        // A good TS or SACK before the bad option is not rewritten either.
        (&[1, 1, 8, 10, 0, 0, 0, 1, 0, 0, 0, 2, 254, 0, 0, 0], WireError::BadOptionLen),
        (&[5, 10, 0, 0, 0, 1, 0, 0, 0, 2, 30, 20], WireError::OptionOverrun),
    ];
    let s = scaled(9, 7, Some(3), splice(0x100, Some(9)));
    let ways = product(&DIRS, &product(&[Via::Value, Via::Parsed], &FORMS));
    for ((raw, err), (dir, (via, form))) in product(&cases, &ways) {
        let b = seg(vec![Raw(raw)]).bytes(form);
        let want = (Err(SpliceError::Options(err)), b.clone());
        assert_eq!(run(&s, dir, via, &b, form), want, "{raw:?} {dir:?} {via:?}");
    }
}

#[test]
fn full_checksum_over_an_ipv4_pseudo_header_also_survives_the_rewrite() {
    let s = scaled(9, 7, Some(7), splice(0xdead_beef, Some(0x1234_5678)));
    for (opts, dir) in product(&layouts(), &DIRS) {
        let mut b = seg(opts).bytes(Full);
        TcpPacket::new_unchecked(&mut b[..]).fill_checksum_v4(C4, S4);
        let incremental = rewrite(&s, dir, &b, Full);
        assert!(TcpPacket::new_unchecked(&incremental).verify_checksum_v4(C4, S4));
        let mut scratch = incremental.clone();
        TcpPacket::new_unchecked(&mut scratch[..]).fill_checksum_v4(C4, S4);
        assert_eq!(incremental, scratch);
    }
}

#[test]
fn partial_checksum_keeps_the_pseudo_header_sum_and_finishes_to_a_valid_checksum() {
    let s = scaled(9, 7, Some(7), splice(0x0bad_cafe, Some(0x0042_4242)));
    let g = seg(vec![Nop, Nop, Ts(5, 6), Nop, Nop, Sack(blocks(3))]);
    for dir in DIRS {
        let got = rewrite(&s, dir, &g.bytes(Partial), Partial);
        assert_eq!(got[16..18], checksum::fold(pseudo(got.len())).to_be_bytes());
        let done = finish_partial(got);
        assert!(TcpPacket::new_unchecked(&done).verify_checksum_v6(&C6, &B6));
    }
}

#[test]
fn rewrite_landing_on_a_zero_checksum_matches_recomputation() {
    // Choose the rewritten ack so that the segment's sum folds to 0xffff (checksum
    // 0x0000), then rewrite into that segment and back out of it.
    let s = splice(0x1234_5678, None);
    let g = seg(vec![Nop, Nop, Ts(5, 6)]).with(|g| g.ack = 0);
    let b = g.bytes(Full);
    let (head, tail) = (checksum::sum(&b[..16]), checksum::sum(&b[18..]));
    let rest = [pseudo(b.len()), head, tail]
        .into_iter()
        .fold(0, checksum::combine);
    let rest = checksum::fold(rest);
    let g = g.with(|g| g.ack = u32::from(0xffff - rest).wrapping_sub(s.delta));
    let zero = g.to_backend(&s).bytes(Full);
    assert_eq!(zero[16..18], [0, 0]);
    check(&s, ToBackend, &g);
    let back = splice(s.delta.wrapping_neg(), None);
    assert_eq!(rewrite(&back, ToBackend, &zero, Full), g.bytes(Full));
}

#[test]
fn ts_offset_of_u32_max_moves_tsecr_where_the_old_engine_took_it_for_no_timestamps() {
    // FINDING (old engine, not Splice): forward_to_backend skipped the TSecr rewrite when
    // ts_offset == u32::MAX (backend TSval = k_tsval − 1), as if that were a sentinel.
    let s = splice(0, Some(u32::MAX));
    let g = seg(vec![Nop, Nop, Ts(1000, 2000)]);
    assert_eq!(moved(&s, ToBackend, &g).3, Some((1000, 1999)));
    let old = run(&s, ToBackend, Via::OldEngine, &g.bytes(Full), Full).1;
    assert_eq!(fields(&old).3, Some((1000, 2000)));
}

/// Found by these tests: `negotiate` clamped the backend's scale to 14 but not the
/// client's, so a scale of 17..=31 wrapped the expanded window to 0 (and from 32 the shift
/// panicked). The engine clamps on parsing, but the value must hold on its own.
#[test]
fn client_wscale_above_14_is_treated_as_14_like_the_backends() {
    let (client, b) = (client(Some(17), false), backend(9, None, None));
    let s = Splice::negotiate(SeqNumber(1), &client, 7, 0, &b);
    assert_eq!(s.window_to_backend(0x8000), 0xffff);
    assert_eq!(s.expand_client_window, Some(14));
}

/// SplitMix64, for the property loop.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let z = (self.0 ^ (self.0 >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        let z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }

    /// A u32, one time in three an edge of the space.
    fn u32(&mut self) -> u32 {
        const EDGES: [u32; 6] = [0, 1, u32::MAX, u32::MAX - 1, 0x8000_0000, 0x7fff_ffff];
        match self.below(3) {
            0 => EDGES[self.below(EDGES.len())],
            _ => self.next() as u32,
        }
    }

    fn pick<T: Clone>(&mut self, of: &[T]) -> T {
        of[self.below(of.len())].clone()
    }

    fn splice(&mut self) -> Splice {
        let (delta, any, ws) = (self.u32(), self.u32(), self.below(15) as u8);
        let ts_offset = self.pick(&[None, Some(0), Some(u32::MAX), Some(any)]);
        let expand = self.pick(&[None, None, Some(ws)]);
        let (backend_ws, client_ws) = (self.below(15) as u8, self.below(15) as u8);
        scaled(backend_ws, client_ws, expand, splice(delta, ts_offset))
    }

    /// Timestamps or not, 0–4 SACK blocks (3 beside timestamps), fillers (MSS, WS,
    /// SACKok, unknown kinds, NOPs) anywhere, then NOP, EOL or no padding.
    #[rustfmt::skip]
    fn seg(&mut self) -> Seg {
        let ts = self.below(2) == 0;
        let mut opts = if ts { vec![Ts(self.u32(), self.u32())] } else { vec![] };
        let n = self.below(if ts { 4 } else { 5 });
        if n > 0 {
            opts.push(Sack((0..n).map(|_| (self.u32(), self.u32())).collect()));
        }
        let fillers = [Nop, Nop, Mss(1460), Ws(9), SackOk, Raw(&[30, 4, 0x20, 0x81]), Raw(&[254, 2])];
        for _ in 0..self.below(8) {
            let mut longer = opts.clone();
            longer.insert(self.below(opts.len() + 1), self.pick(&fillers));
            if unpadded(&longer).len() <= 40 {
                opts = longer;
            }
        }
        let len = unpadded(&opts).len();
        match self.below(3) {
            0 if len < 40 => opts.push(Eol),
            1 => opts.resize(opts.len() + len.next_multiple_of(4) - len, Nop),
            _ => {}
        }
        let flags = self.pick(&[ACK, ACK | PSH, ACK | FIN, ACK | RST, RST, SYN]);
        let payload = (0..self.below(40)).map(|_| self.next() as u8).collect();
        Seg { seq: self.u32(), ack: self.u32(), flags, window: self.next() as u16, opts, payload }
    }
}

#[test]
fn random_splices_and_layouts_rewrite_like_the_model_and_the_old_engine_and_invert() {
    let mut r = Rng(0x6b72_6163_6175_6572);
    for _ in 0..2000 {
        let (s, g) = (r.splice(), r.seg());
        for dir in DIRS {
            check(&s, dir, &g);
        }
        for (dir, form) in product(&DIRS, &FORMS) {
            let b = g.bytes(form);
            let old = run(&s, dir, Via::OldEngine, &b, form);
            if !(dir == ToBackend && s.ts_offset == Some(u32::MAX)) {
                let ctx = format!("{dir:?} {form:?} {s:?} {g:?}");
                assert_eq!(old, run(&s, dir, Via::Value, &b, form), "old engine: {ctx}");
            }
            // Without a window change, the inverse splice restores every byte.
            let fixed = scaled(s.backend_ws, s.backend_ws, None, s);
            let mut inverse = fixed;
            inverse.delta = s.delta.wrapping_neg();
            inverse.ts_offset = s.ts_offset.map(u32::wrapping_neg);
            let there = rewrite(&fixed, dir, &b, form);
            let ctx = format!("{dir:?} {form:?} {fixed:?} {g:?}");
            assert_eq!(rewrite(&inverse, dir, &there, form), b, "inverse: {ctx}");
        }
    }
}
