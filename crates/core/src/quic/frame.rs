//! The frames of a decrypted Initial payload (RFC 9000 §12.4, §19): PADDING, PING, ACK,
//! CRYPTO and CONNECTION_CLOSE are the frames an Initial may carry; any other is a
//! connection error of type PROTOCOL_VIOLATION, reported here as
//! [`FrameError::NotAllowed`].
//!
//! Frame types are read as variable-length integers in any encoding (RFC 9000 §12.4 asks
//! for the shortest, but checking that is the server's business). CONNECTION_CLOSE of
//! the application type (0x1d) is accepted as well: RFC 9000 §12.4's table allows both
//! types in Initial packets, though §10.2.3 tells senders to use 0x1c there.

use super::varint;

/// Frame types an Initial may carry.
pub mod ty {
    pub const PADDING: u64 = 0x00;
    pub const PING: u64 = 0x01;
    pub const ACK: u64 = 0x02;
    pub const ACK_ECN: u64 = 0x03;
    pub const CRYPTO: u64 = 0x06;
    pub const CONNECTION_CLOSE: u64 = 0x1c;
    pub const CONNECTION_CLOSE_APP: u64 = 0x1d;
}

/// One frame of an Initial.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Frame<'a> {
    /// A run of PADDING frames (zero bytes), taken as one.
    Padding(usize),
    Ping,
    /// An ACK frame, skipped: its contents do not matter for reading a hello.
    Ack,
    /// Handshake bytes at `offset` in the Initial CRYPTO stream.
    Crypto {
        offset: u64,
        data: &'a [u8],
    },
    /// The sender closes the connection.
    ConnectionClose {
        /// A transport error code (type 0x1c) or an application one (0x1d).
        error_code: u64,
        /// Whether this is the application variant (0x1d).
        application: bool,
        reason: &'a [u8],
    },
}

/// Why an Initial payload's frames cannot be read.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum FrameError {
    #[error("a frame of type 0x{0:02x} runs past the end of the payload")]
    Truncated(u64),
    #[error("a frame of type 0x{0:02x} is not allowed in an Initial packet")]
    NotAllowed(u64),
    #[error("a CRYPTO frame ends past 2^62 - 1")]
    CryptoOverflow,
    #[error("an ACK frame's ranges run below packet number 0")]
    AckRange,
}

/// The frames of a decrypted payload, in order. After an error the walk ends.
pub fn frames(payload: &[u8]) -> Frames<'_> {
    Frames { rest: payload }
}

/// See [`frames`].
#[derive(Debug, Clone)]
pub struct Frames<'a> {
    rest: &'a [u8],
}

impl<'a> Frames<'a> {
    fn varint(&mut self, ty: u64) -> Result<u64, FrameError> {
        let (v, n) = varint::read(self.rest).ok_or(FrameError::Truncated(ty))?;
        self.rest = &self.rest[n..];
        Ok(v)
    }

    fn bytes(&mut self, len: u64, ty: u64) -> Result<&'a [u8], FrameError> {
        let len = usize::try_from(len).map_err(|_| FrameError::Truncated(ty))?;
        let bytes = self.rest.get(..len).ok_or(FrameError::Truncated(ty))?;
        self.rest = &self.rest[len..];
        Ok(bytes)
    }

    fn frame(&mut self) -> Result<Frame<'a>, FrameError> {
        let ty = self.varint(ty::PADDING)?;
        match ty {
            ty::PADDING => {
                let zeros = self.rest.iter().take_while(|&&b| b == 0).count();
                self.rest = &self.rest[zeros..];
                Ok(Frame::Padding(1 + zeros))
            }
            ty::PING => Ok(Frame::Ping),
            ty::ACK | ty::ACK_ECN => {
                let largest = self.varint(ty)?;
                let _delay = self.varint(ty)?;
                let ranges = self.varint(ty)?;
                let first = self.varint(ty)?;
                let mut smallest = largest.checked_sub(first).ok_or(FrameError::AckRange)?;
                // Each range takes at least two bytes, so a huge count runs out of
                // payload quickly.
                for _ in 0..ranges {
                    let gap = self.varint(ty)?;
                    let len = self.varint(ty)?;
                    smallest = smallest
                        .checked_sub(gap)
                        .and_then(|s| s.checked_sub(2))
                        .and_then(|s| s.checked_sub(len))
                        .ok_or(FrameError::AckRange)?;
                }
                if ty == ty::ACK_ECN {
                    for _ in 0..3 {
                        self.varint(ty)?;
                    }
                }
                Ok(Frame::Ack)
            }
            ty::CRYPTO => {
                let offset = self.varint(ty)?;
                let len = self.varint(ty)?;
                if offset.saturating_add(len) > varint::MAX {
                    return Err(FrameError::CryptoOverflow);
                }
                let data = self.bytes(len, ty)?;
                Ok(Frame::Crypto { offset, data })
            }
            ty::CONNECTION_CLOSE | ty::CONNECTION_CLOSE_APP => {
                let error_code = self.varint(ty)?;
                let application = ty == ty::CONNECTION_CLOSE_APP;
                if !application {
                    let _frame_type = self.varint(ty)?;
                }
                let len = self.varint(ty)?;
                let reason = self.bytes(len, ty)?;
                Ok(Frame::ConnectionClose {
                    error_code,
                    application,
                    reason,
                })
            }
            other => Err(FrameError::NotAllowed(other)),
        }
    }
}

impl<'a> Iterator for Frames<'a> {
    type Item = Result<Frame<'a>, FrameError>;

    fn next(&mut self) -> Option<Self::Item> {
        if self.rest.is_empty() {
            return None;
        }
        let frame = self.frame();
        if frame.is_err() {
            self.rest = &[];
        }
        Some(frame)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn all(payload: &[u8]) -> Vec<Result<Frame<'_>, FrameError>> {
        frames(payload).collect()
    }

    #[test]
    fn padding_ping_ack_crypto_and_close_are_read() {
        let payload = [
            0x01, // PING
            0x02, 0x05, 0x00, 0x01, 0x01, 0x00, 0x01, // ACK 5, one more range
            0x06, 0x40, 0x10, 0x03, b'a', b'b', b'c', // CRYPTO offset 16
            0x1c, 0x41, 0x70, 0x06, 0x02, b'n', b'o', // CONNECTION_CLOSE 0x170
            0x00, 0x00, 0x00, // PADDING x3
        ];
        assert_eq!(
            all(&payload),
            vec![
                Ok(Frame::Ping),
                Ok(Frame::Ack),
                Ok(Frame::Crypto {
                    offset: 16,
                    data: b"abc"
                }),
                Ok(Frame::ConnectionClose {
                    error_code: 0x170,
                    application: false,
                    reason: b"no"
                }),
                Ok(Frame::Padding(3)),
            ]
        );
    }

    #[test]
    fn an_ack_with_ecn_counts_is_skipped_whole() {
        let payload = [0x03, 0x01, 0x00, 0x00, 0x00, 0x07, 0x08, 0x09, 0x01];
        assert_eq!(all(&payload), vec![Ok(Frame::Ack), Ok(Frame::Ping)]);
    }

    #[test]
    fn a_stream_frame_in_an_initial_is_not_allowed() {
        assert_eq!(all(&[0x08, 0x00]), vec![Err(FrameError::NotAllowed(0x08))]);
        assert_eq!(all(&[0x1e]), vec![Err(FrameError::NotAllowed(0x1e))]);
    }

    #[test]
    fn every_truncation_of_a_frame_is_an_error_not_a_panic() {
        let frames_bytes: &[&[u8]] = &[
            &[0x06, 0x40, 0x10, 0x03, b'a', b'b', b'c'],
            &[0x02, 0x05, 0x00, 0x01, 0x01, 0x00, 0x01],
            &[0x03, 0x01, 0x00, 0x00, 0x00, 0x07, 0x08, 0x09],
            &[0x1c, 0x41, 0x70, 0x06, 0x02, b'n', b'o'],
            &[0x1d, 0x01, 0x01, b'x'],
        ];
        for f in frames_bytes {
            for cut in 1..f.len() {
                let got = all(&f[..cut]);
                assert!(
                    matches!(got.as_slice(), [Err(FrameError::Truncated(_))]),
                    "{f:02x?} cut at {cut}: {got:?}"
                );
            }
        }
    }

    #[test]
    fn a_crypto_frame_past_the_largest_offset_is_refused() {
        let payload = [
            0x06, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x01, 0x00,
        ];
        assert_eq!(all(&payload), vec![Err(FrameError::CryptoOverflow)]);
    }

    #[test]
    fn an_ack_range_below_zero_is_refused() {
        assert_eq!(
            all(&[0x02, 0x01, 0x00, 0x00, 0x02]),
            vec![Err(FrameError::AckRange)]
        );
    }
}
