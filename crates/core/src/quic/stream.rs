//! The Initial CRYPTO stream, reassembled by offset from CRYPTO frames that arrive in any
//! order, duplicated or overlapping, across packets and datagrams (RFC 9000 §19.6).
//!
//! This mirrors the TCP peek buffer (`tcp::reasm`): the first copy of every byte wins (a
//! later, different copy is ignored, as RFC 9000 §2.2 allows), and the buffer is bounded
//! twice: no byte at or past the cap (`StreamError::PastCap`: the client's Initial
//! CRYPTO stream holds only its ClientHello, so such a byte means a hello too large to
//! read), and at most [`MAX_FRAGMENTS`] separate filled ranges (`TooFragmented`).
//! Nothing is allocated until the first byte; the buffer then grows to the furthest
//! byte held, never past the cap.

/// Most separate filled ranges the stream tracks. Chromium cuts its hello into a handful
/// of CRYPTO frames and shuffles them across two packets; 16 leaves room for that and
/// for loss.
pub const MAX_FRAGMENTS: usize = 16;

/// What inserting a CRYPTO frame did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Inserted {
    /// The contiguous prefix grew: the hello reader has more to read.
    PrefixGrew,
    /// New bytes were kept, after a hole.
    Kept,
    /// Nothing new: every byte was here already (or the frame was empty).
    Nothing,
}

/// Why a CRYPTO frame cannot be kept.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum StreamError {
    #[error("CRYPTO data reaches past the {cap}-byte cap")]
    PastCap { cap: usize },
    #[error("CRYPTO data in more than {MAX_FRAGMENTS} separate pieces")]
    TooFragmented,
}

/// The bytes of a CRYPTO stream from offset 0, up to a cap.
#[derive(Debug, Clone)]
pub struct CryptoStream {
    data: Vec<u8>,
    /// Filled `[start, end)` ranges, sorted, disjoint and not touching; u32, as the cap
    /// is (a pending flow should stay small).
    ranges: arrayvec::ArrayVec<(u32, u32), MAX_FRAGMENTS>,
    cap: u32,
}

impl CryptoStream {
    /// An empty stream that keeps no byte at or past `cap` (at most `u32::MAX`).
    pub fn new(cap: usize) -> Self {
        Self {
            data: Vec::new(),
            ranges: arrayvec::ArrayVec::new(),
            cap: u32::try_from(cap).unwrap_or(u32::MAX),
        }
    }

    /// The filled ranges, as offsets.
    fn filled(&self) -> impl Iterator<Item = (usize, usize)> + '_ {
        self.ranges.iter().map(|&(s, e)| (s as usize, e as usize))
    }

    /// The bytes from offset 0 with no hole.
    pub fn contiguous(&self) -> &[u8] {
        match self.ranges.first() {
            Some(&(0, end)) => self.data.get(..end as usize).unwrap_or_default(),
            _ => &[],
        }
    }

    /// Bytes held, holes included: what the stream costs.
    pub fn held(&self) -> usize {
        self.data.len()
    }

    /// Adds the CRYPTO data `bytes` found at `offset`. On an error nothing changes.
    pub fn insert(&mut self, offset: u64, bytes: &[u8]) -> Result<Inserted, StreamError> {
        if bytes.is_empty() {
            return Ok(Inserted::Nothing);
        }
        let cap = self.cap as usize;
        let past_cap = StreamError::PastCap { cap };
        let start = usize::try_from(offset).map_err(|_| past_cap)?;
        let end = start.checked_add(bytes.len()).ok_or(past_cap)?;
        if end > cap {
            return Err(past_cap);
        }

        // The ranges after this insert, merged; refuse before touching anything.
        let mut merged = arrayvec::ArrayVec::<(usize, usize), { MAX_FRAGMENTS + 1 }>::new();
        let mut placed = false;
        for r in self.filled() {
            if !placed && start < r.0 {
                merge_push(&mut merged, (start, end));
                placed = true;
            }
            merge_push(&mut merged, r);
        }
        if !placed {
            merge_push(&mut merged, (start, end));
        }
        if merged.len() > MAX_FRAGMENTS {
            return Err(StreamError::TooFragmented);
        }

        if self.data.len() < end {
            self.data.resize(end, 0);
        }
        let before = self.contiguous().len();
        // Copy only into the gaps between the ranges held before: first copy wins.
        let mut new_bytes = false;
        let mut cursor = start;
        let held: arrayvec::ArrayVec<(usize, usize), MAX_FRAGMENTS> = self.filled().collect();
        for &(s, e) in held
            .iter()
            .chain(core::iter::once(&(usize::MAX, usize::MAX)))
        {
            if e <= cursor {
                continue;
            }
            let gap_end = s.min(end);
            if gap_end > cursor {
                self.data[cursor..gap_end].copy_from_slice(&bytes[cursor - start..gap_end - start]);
                new_bytes = true;
            }
            cursor = cursor.max(e);
            if cursor >= end {
                break;
            }
        }
        self.ranges.clear();
        // Every end is at most the cap, a u32.
        self.ranges
            .extend(merged.iter().map(|&(s, e)| (s as u32, e as u32)));
        Ok(if !new_bytes {
            Inserted::Nothing
        } else if self.contiguous().len() > before {
            Inserted::PrefixGrew
        } else {
            Inserted::Kept
        })
    }
}

/// Appends `r` to sorted, merged ranges, merging it with the last one when they overlap
/// or touch. `out` has room for one more range than a stream keeps.
fn merge_push<const N: usize>(out: &mut arrayvec::ArrayVec<(usize, usize), N>, r: (usize, usize)) {
    match out.last_mut() {
        Some(last) if r.0 <= last.1 => last.1 = last.1.max(r.1),
        _ => {
            let _ = out.try_push(r);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn in_order_frames_grow_the_prefix() {
        let mut s = CryptoStream::new(64);
        assert_eq!(s.insert(0, b"hello "), Ok(Inserted::PrefixGrew));
        assert_eq!(s.insert(6, b"world"), Ok(Inserted::PrefixGrew));
        assert_eq!(s.contiguous(), b"hello world");
    }

    #[test]
    fn a_later_frame_waits_for_the_hole_before_it() {
        let mut s = CryptoStream::new(64);
        assert_eq!(s.insert(6, b"world"), Ok(Inserted::Kept));
        assert_eq!(s.contiguous(), b"");
        assert_eq!(s.insert(0, b"hello "), Ok(Inserted::PrefixGrew));
        assert_eq!(s.contiguous(), b"hello world");
    }

    #[test]
    fn overlap_keeps_the_first_copy() {
        let mut s = CryptoStream::new(64);
        s.insert(0, b"abcd").expect("fits");
        s.insert(6, b"gh").expect("fits");
        assert_eq!(s.insert(2, b"XXXXXXXXij"), Ok(Inserted::PrefixGrew));
        assert_eq!(s.contiguous(), b"abcdXXghXXij");
        assert_eq!(s.insert(0, b"abcdXXghXXij"), Ok(Inserted::Nothing));
        assert_eq!(s.insert(3, b""), Ok(Inserted::Nothing));
    }

    #[test]
    fn a_byte_at_the_cap_is_refused_without_change() {
        let mut s = CryptoStream::new(8);
        assert_eq!(s.insert(0, b"12345678"), Ok(Inserted::PrefixGrew));
        assert_eq!(s.insert(7, b"89"), Err(StreamError::PastCap { cap: 8 }));
        assert_eq!(
            s.insert(u64::MAX, b"x"),
            Err(StreamError::PastCap { cap: 8 })
        );
        assert_eq!(s.contiguous(), b"12345678");
        assert_eq!(s.held(), 8);
    }

    #[test]
    fn too_many_pieces_are_refused_until_a_hole_closes() {
        let mut s = CryptoStream::new(1024);
        for i in 0..MAX_FRAGMENTS as u64 {
            assert_eq!(s.insert(2 + 3 * i, b"x"), Ok(Inserted::Kept));
        }
        assert_eq!(s.insert(500, b"y"), Err(StreamError::TooFragmented));
        // Filling the first hole keeps the count; bridging two pieces frees one.
        assert_eq!(s.insert(0, b"ab"), Ok(Inserted::PrefixGrew));
        assert_eq!(s.contiguous(), b"abx");
        assert_eq!(s.insert(500, b"y"), Err(StreamError::TooFragmented));
        assert_eq!(s.insert(3, b"zz"), Ok(Inserted::PrefixGrew));
        assert_eq!(s.contiguous(), b"abxzzx");
        assert_eq!(s.insert(500, b"y"), Ok(Inserted::Kept));
    }

    #[test]
    fn every_split_and_order_of_a_stream_gives_the_same_bytes() {
        let msg: Vec<u8> = (0..40u8).collect();
        for a in 1..msg.len() - 1 {
            for c in a + 1..msg.len() {
                let pieces = [(0, &msg[..a]), (a, &msg[a..c]), (c, &msg[c..])];
                for order in [
                    [0, 1, 2],
                    [0, 2, 1],
                    [1, 0, 2],
                    [1, 2, 0],
                    [2, 0, 1],
                    [2, 1, 0],
                ] {
                    let mut s = CryptoStream::new(64);
                    for i in order {
                        s.insert(pieces[i].0 as u64, pieces[i].1).expect("fits");
                    }
                    assert_eq!(s.contiguous(), &msg[..], "split {a}/{c} order {order:?}");
                }
            }
        }
    }
}
