//! A small seeded generator (SplitMix64) for link faults and payload bytes, and an
//! incremental FNV-1a hash to compare byte streams without keeping them.

/// Deterministic pseudo-random numbers from a seed.
#[derive(Debug, Clone)]
pub struct Rng(u64);

impl Rng {
    pub fn new(seed: u64) -> Self {
        Self(seed ^ 0x5851_f42d_4c95_7f2d)
    }

    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    /// True with probability `p`.
    pub fn chance(&mut self, p: f64) -> bool {
        p > 0.0 && (self.next_u64() >> 11) as f64 / (1u64 << 53) as f64 <= p
    }

    /// Uniform in `0..n` (`n > 0`).
    pub fn below(&mut self, n: u64) -> u64 {
        self.next_u64() % n.max(1)
    }

    pub fn fill(&mut self, buf: &mut [u8]) {
        for chunk in buf.chunks_mut(8) {
            let v = self.next_u64().to_le_bytes();
            chunk.copy_from_slice(&v[..chunk.len()]);
        }
    }
}

/// FNV-1a over a byte stream, with its length.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct StreamHash {
    pub len: u64,
    pub hash: u64,
}

impl Default for StreamHash {
    fn default() -> Self {
        Self {
            len: 0,
            hash: 0xcbf2_9ce4_8422_2325,
        }
    }
}

impl StreamHash {
    pub fn update(&mut self, bytes: &[u8]) {
        for &b in bytes {
            self.hash = (self.hash ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3);
        }
        self.len += bytes.len() as u64;
    }
}

/// A byte stream of fixed length: first `head` (a request or a ClientHello), then
/// `payload` bytes drawn from a seeded generator.
#[derive(Debug)]
pub struct Source {
    head: Vec<u8>,
    total: usize,
    pos: usize,
    rng: Rng,
    /// Generated but not yet taken (the generator works in 8-byte steps).
    spare: Vec<u8>,
    /// Hash of what was taken.
    pub hash: StreamHash,
    /// Stop after this many bytes (a client that stalls).
    pub stall_at: Option<usize>,
}

impl Source {
    pub fn new(head: Vec<u8>, payload: usize, seed: u64) -> Self {
        Self {
            total: head.len() + payload,
            head,
            pos: 0,
            rng: Rng::new(seed),
            spare: Vec::new(),
            hash: StreamHash::default(),
            stall_at: None,
        }
    }

    /// Whether every byte was taken.
    pub fn done(&self) -> bool {
        self.pos == self.total
    }

    /// Whether nothing more will be produced (done, or stalled).
    pub fn exhausted(&self) -> bool {
        self.done() || self.stall_at.is_some_and(|s| self.pos >= s)
    }

    /// Fills `buf` with the next bytes; returns how many.
    pub fn take(&mut self, buf: &mut [u8]) -> usize {
        let limit = self.stall_at.unwrap_or(usize::MAX).min(self.total);
        let n = buf.len().min(limit.saturating_sub(self.pos));
        let mut filled = 0;
        while filled < n {
            let at = self.pos + filled;
            if at < self.head.len() {
                let k = (self.head.len() - at).min(n - filled);
                buf[filled..filled + k].copy_from_slice(&self.head[at..at + k]);
                filled += k;
            } else {
                if self.spare.is_empty() {
                    let mut block = [0u8; 4096];
                    self.rng.fill(&mut block);
                    self.spare.extend_from_slice(&block);
                    self.spare.reverse();
                }
                let k = self.spare.len().min(n - filled);
                for b in &mut buf[filled..filled + k] {
                    *b = self.spare.pop().unwrap_or(0);
                }
                filled += k;
            }
        }
        self.hash.update(&buf[..n]);
        self.pos += n;
        n
    }
}
