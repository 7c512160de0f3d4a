//! The peek buffer: client bytes collected by sequence number until a peeker names the
//! host (docs/architecture.md, "The splice", step 2).
//!
//! Segments may arrive out of order, twice, or overlapping; the buffer keeps the first
//! copy of every byte (a later, different copy of the same bytes is ignored, so what the
//! peeker read is exactly what the backend will be sent). Bytes past the cap are not kept:
//! Kracauer never acknowledges peeked data, so the client still holds everything and
//! retransmits what was not kept once the flow is spliced. The buffer tracks at most
//! [`MAX_HOLES`] separate filled ranges; a segment that would need more is refused and,
//! again, retransmitted by the client later.

/// Most separate filled ranges the buffer tracks.
pub const MAX_HOLES: usize = 8;

/// What inserting a segment did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Inserted {
    /// The contiguous prefix grew: the peeker has more to read.
    PrefixGrew,
    /// New bytes were kept, but after a hole.
    Kept,
    /// Nothing new: all of it was already here, before the start, or past the cap.
    Nothing,
    /// The segment would open more holes than the buffer tracks; dropped.
    TooFragmented,
}

/// Client bytes from offset 0 (the byte after the client's SYN) up to a cap.
#[derive(Debug, Clone, Default)]
pub struct PeekBuffer {
    data: Vec<u8>,
    /// Filled `[start, end)` ranges, sorted, disjoint and not touching.
    ranges: [(u32, u32); MAX_HOLES],
    nranges: u8,
}

impl PeekBuffer {
    /// An empty buffer (no allocation until the first byte).
    pub fn new() -> Self {
        Self::default()
    }

    /// The bytes from offset 0 with no hole.
    pub fn contiguous(&self) -> &[u8] {
        match self.filled().first() {
            Some(&(0, end)) => self.data.get(..end as usize).unwrap_or(&[]),
            _ => &[],
        }
    }

    /// Bytes held, including those after a hole (this is what the buffer costs).
    pub fn held(&self) -> usize {
        self.data.len()
    }

    /// Heap bytes this buffer has reserved.
    pub fn capacity(&self) -> usize {
        self.data.capacity()
    }

    /// The heap capacity the buffer would have after inserting `len` bytes at `offset`
    /// under `cap`: it grows by doubling, never past the cap, so a buffer never holds more
    /// than `cap` bytes of heap.
    pub fn capacity_after(&self, offset: i32, len: usize, cap: usize) -> usize {
        let end = (i64::from(offset) + len as i64).clamp(0, cap.min(u32::MAX as usize) as i64);
        let end = end as usize;
        let have = self.data.capacity();
        if end <= have {
            return have;
        }
        end.max(have.saturating_mul(2)).min(cap).max(end)
    }

    fn filled(&self) -> &[(u32, u32)] {
        &self.ranges[..usize::from(self.nranges)]
    }

    /// Adds `bytes` found at `offset` (bytes since the client's SYN, wrapping: a segment
    /// that starts before 0 has a negative offset as i32), keeping nothing at or past
    /// `cap`.
    pub fn insert(&mut self, offset: i32, bytes: &[u8], cap: usize) -> Inserted {
        let cap = cap.min(u32::MAX as usize) as u32;
        // Trim what lies before 0 and at or past the cap.
        let skip = if offset < 0 {
            offset.unsigned_abs() as usize
        } else {
            0
        };
        let Some(bytes) = bytes.get(skip..) else {
            return Inserted::Nothing;
        };
        let start = offset.max(0) as u32;
        if start >= cap || bytes.is_empty() {
            return Inserted::Nothing;
        }
        let len = (bytes.len() as u64).min(u64::from(cap - start)) as u32;
        let end = start + len;
        let bytes = &bytes[..len as usize];

        // The new set of ranges, merged; refuse before touching anything if too many.
        let old = self.ranges;
        let old = &old[..usize::from(self.nranges)];
        let mut all = [(0u32, 0u32); MAX_HOLES + 1];
        let mut n = 0;
        let mut placed = false;
        for &r in old {
            if !placed && start < r.0 {
                all[n] = (start, end);
                n += 1;
                placed = true;
            }
            all[n] = r;
            n += 1;
        }
        if !placed {
            all[n] = (start, end);
            n += 1;
        }
        let mut merged = [(0u32, 0u32); MAX_HOLES + 1];
        let mut m = 0;
        for &(s, e) in &all[..n] {
            if m > 0 && s <= merged[m - 1].1 {
                merged[m - 1].1 = merged[m - 1].1.max(e);
            } else {
                merged[m] = (s, e);
                m += 1;
            }
        }
        if m > MAX_HOLES {
            return Inserted::TooFragmented;
        }

        // Copy only the bytes no range held before (first copy wins).
        if self.data.len() < end as usize {
            let capacity = self.capacity_after(start as i32, len as usize, cap as usize);
            self.data.reserve_exact(capacity - self.data.len());
            self.data.resize(end as usize, 0);
        }
        let before_prefix = self.contiguous().len();
        let mut new_bytes = false;
        let mut cursor = start;
        for &(s, e) in old.iter().chain(core::iter::once(&(u32::MAX, u32::MAX))) {
            if e <= cursor {
                continue;
            }
            let gap_end = s.min(end);
            if gap_end > cursor {
                let from = (cursor - start) as usize;
                let to = (gap_end - start) as usize;
                self.data[cursor as usize..gap_end as usize].copy_from_slice(&bytes[from..to]);
                new_bytes = true;
            }
            cursor = cursor.max(e);
            if cursor >= end {
                break;
            }
        }
        self.ranges[..m].copy_from_slice(&merged[..m]);
        self.nranges = m as u8;
        if !new_bytes {
            Inserted::Nothing
        } else if self.contiguous().len() > before_prefix {
            Inserted::PrefixGrew
        } else {
            Inserted::Kept
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const CAP: usize = 64;

    #[test]
    fn capacity_doubles_but_never_passes_the_cap() {
        let mut b = PeekBuffer::new();
        b.insert(0, &[1; 10], 1000);
        assert_eq!(b.capacity(), 10);
        b.insert(10, &[1; 5], 1000);
        assert_eq!(b.capacity(), 20);
        assert_eq!(b.capacity_after(15, 700, 1000), 715);
        b.insert(15, &[1; 700], 1000);
        assert_eq!(b.capacity(), 715);
        assert_eq!(b.capacity_after(715, 5000, 1000), 1000);
        b.insert(715, &[1; 5000], 1000);
        assert_eq!((b.capacity(), b.contiguous().len()), (1000, 1000));
        assert_eq!(b.capacity_after(-5, 3, 1000), 1000);
    }

    #[test]
    fn in_order_segments_grow_the_prefix() {
        let mut b = PeekBuffer::new();
        assert_eq!(b.insert(0, b"hello ", CAP), Inserted::PrefixGrew);
        assert_eq!(b.insert(6, b"world", CAP), Inserted::PrefixGrew);
        assert_eq!(b.contiguous(), b"hello world");
    }

    #[test]
    fn reversed_segments_give_the_same_prefix_once_the_first_arrives() {
        let mut b = PeekBuffer::new();
        assert_eq!(b.insert(6, b"world", CAP), Inserted::Kept);
        assert_eq!(b.contiguous(), b"");
        assert_eq!(b.insert(0, b"hello ", CAP), Inserted::PrefixGrew);
        assert_eq!(b.contiguous(), b"hello world");
    }

    #[test]
    fn duplicate_segment_adds_nothing() {
        let mut b = PeekBuffer::new();
        b.insert(0, b"hello", CAP);
        assert_eq!(b.insert(0, b"hello", CAP), Inserted::Nothing);
        assert_eq!(b.contiguous(), b"hello");
    }

    #[test]
    fn overlap_keeps_the_first_copy_and_fills_the_rest() {
        let mut b = PeekBuffer::new();
        b.insert(0, b"abcd", CAP);
        b.insert(6, b"gh", CAP);
        assert_eq!(b.insert(2, b"XXXXXXXXij", CAP), Inserted::PrefixGrew);
        assert_eq!(b.contiguous(), b"abcdXXghXXij");
    }

    #[test]
    fn bytes_before_the_start_are_trimmed() {
        let mut b = PeekBuffer::new();
        assert_eq!(b.insert(-3, b"xyzabc", CAP), Inserted::PrefixGrew);
        assert_eq!(b.contiguous(), b"abc");
        assert_eq!(b.insert(-10, b"abc", CAP), Inserted::Nothing);
    }

    #[test]
    fn bytes_past_the_cap_are_not_kept() {
        let mut b = PeekBuffer::new();
        assert_eq!(b.insert(0, &[7; 100], CAP), Inserted::PrefixGrew);
        assert_eq!(b.contiguous().len(), CAP);
        assert_eq!(b.insert(CAP as i32, b"more", CAP), Inserted::Nothing);
        assert_eq!(b.held(), CAP);
    }

    #[test]
    fn too_many_holes_are_refused_without_change() {
        let mut b = PeekBuffer::new();
        for i in 0..MAX_HOLES as i32 {
            assert_eq!(b.insert(2 + 3 * i, b"x", CAP), Inserted::Kept);
        }
        assert_eq!(b.insert(40, b"y", CAP), Inserted::TooFragmented);
        // Filling a hole still works, and closing one frees room for another.
        assert_eq!(b.insert(0, b"ab", CAP), Inserted::PrefixGrew);
        assert_eq!(b.contiguous(), b"abx");
        assert_eq!(b.insert(40, b"y", CAP), Inserted::TooFragmented);
        assert_eq!(b.insert(3, b"zz", CAP), Inserted::PrefixGrew);
        assert_eq!(b.contiguous(), b"abxzzx");
        assert_eq!(b.insert(40, b"y", CAP), Inserted::Kept);
    }

    #[test]
    fn segment_bridging_several_ranges_merges_them() {
        let mut b = PeekBuffer::new();
        b.insert(2, b"c", CAP);
        b.insert(5, b"f", CAP);
        b.insert(8, b"i", CAP);
        assert_eq!(b.insert(0, b"ABCDEFGHIJ", CAP), Inserted::PrefixGrew);
        assert_eq!(b.contiguous(), b"ABcDEfGHiJ");
        assert_eq!(b.filled(), &[(0, 10)]);
    }

    #[test]
    fn every_split_order_of_a_message_gives_the_same_bytes() {
        let msg: Vec<u8> = (0..50u8).collect();
        // Split at every pair of points, insert the three pieces in every order.
        for a in 1..msg.len() {
            for c in [a + 1, msg.len() - 1]
                .into_iter()
                .filter(|&c| c > a && c < msg.len())
            {
                let pieces = [(0, &msg[..a]), (a, &msg[a..c]), (c, &msg[c..])];
                for order in [[0, 1, 2], [2, 1, 0], [1, 2, 0], [2, 0, 1]] {
                    let mut b = PeekBuffer::new();
                    for i in order {
                        b.insert(pieces[i].0 as i32, pieces[i].1, CAP);
                    }
                    assert_eq!(b.contiguous(), &msg[..], "split {a}/{c} order {order:?}");
                }
            }
        }
    }
}
