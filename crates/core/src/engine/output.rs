//! Packets the engine makes (SYN-ACKs, RSTs, the backend SYN, peeked data, refusals),
//! queued in one caller-owned buffer.
//!
//! The driver hands the engine an [`Output`], writes every packet it holds to the TUN
//! after each call, and clears it. Its memory is reserved once and reused, so making a
//! packet costs no allocation in steady state.

use core::ops::Range;

/// Room for packets the engine makes during one call.
#[derive(Debug)]
pub struct Output {
    buf: Vec<u8>,
    packets: Vec<Range<usize>>,
    limit: usize,
}

/// The output buffer has no room for another packet; the packet is not made and the
/// drop is counted.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("the output buffer is full")]
pub struct OutputFull;

impl Output {
    /// An output that holds up to `bytes` bytes of packets, reserved now.
    pub fn with_capacity(bytes: usize) -> Self {
        Self {
            buf: Vec::with_capacity(bytes),
            packets: Vec::with_capacity(64),
            limit: bytes,
        }
    }

    /// Appends a packet of `len` bytes, zeroed, and lets `fill` write it. If `fill` fails
    /// the packet is withdrawn.
    pub fn push<E>(
        &mut self,
        len: usize,
        fill: impl FnOnce(&mut [u8]) -> Result<usize, E>,
    ) -> Result<Result<(), E>, OutputFull> {
        let start = self.buf.len();
        if start + len > self.limit {
            return Err(OutputFull);
        }
        self.buf.resize(start + len, 0);
        match fill(&mut self.buf[start..]) {
            Ok(written) => {
                let written = written.min(len);
                self.buf.truncate(start + written);
                self.packets.push(start..start + written);
                Ok(Ok(()))
            }
            Err(e) => {
                self.buf.truncate(start);
                Ok(Err(e))
            }
        }
    }

    /// The packets, in the order they were made.
    pub fn packets(&self) -> impl ExactSizeIterator<Item = &[u8]> {
        self.packets.iter().map(|r| &self.buf[r.clone()])
    }

    /// Number of packets held.
    pub fn len(&self) -> usize {
        self.packets.len()
    }

    /// Whether no packet is held.
    pub fn is_empty(&self) -> bool {
        self.packets.is_empty()
    }

    /// Forgets every packet, keeping the memory.
    pub fn clear(&mut self) {
        self.buf.clear();
        self.packets.clear();
    }
}

impl Default for Output {
    /// Room for a full peek's worth of segments and then some (64 KiB).
    fn default() -> Self {
        Self::with_capacity(64 * 1024)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn packets_come_out_in_order_and_trimmed_to_what_was_written() {
        let mut o = Output::with_capacity(100);
        o.push(10, |b| {
            b[..3].copy_from_slice(b"abc");
            Ok::<_, ()>(3)
        })
        .unwrap()
        .unwrap();
        o.push(4, |b| {
            b.copy_from_slice(b"wxyz");
            Ok::<_, ()>(4)
        })
        .unwrap()
        .unwrap();
        assert_eq!(o.packets().collect::<Vec<_>>(), [&b"abc"[..], b"wxyz"]);
    }

    #[test]
    fn failed_fill_leaves_nothing_behind() {
        let mut o = Output::with_capacity(100);
        assert_eq!(o.push(10, |_| Err("no")).unwrap(), Err("no"));
        assert!(o.is_empty());
    }

    #[test]
    fn push_past_the_limit_is_refused() {
        let mut o = Output::with_capacity(8);
        assert!(o.push(8, |_| Ok::<_, ()>(8)).is_ok());
        assert_eq!(o.push(1, |_| Ok::<_, ()>(1)), Err(OutputFull));
        o.clear();
        assert!(o.push(8, |_| Ok::<_, ()>(8)).is_ok());
    }
}
