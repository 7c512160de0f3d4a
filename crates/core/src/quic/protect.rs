//! Packet protection of long-header packets with Initial keys: [`open`] removes header
//! protection and opens the AEAD (RFC 9001 §5.3, §5.4); [`seal_long`] builds a protected
//! long-header packet, for the refusal a server sends and for tests.
//!
//! Both work in a caller-owned buffer and allocate nothing. AES-128-GCM is RustCrypto's
//! `aes-gcm`; the header protection mask comes from [`Keys::hp_mask`].

use aes_gcm::Aes128Gcm;
use aes_gcm::aead::{AeadInPlace, KeyInit, generic_array::GenericArray};

use super::header::{LongHeader, LongType};
use super::keys::{Keys, SAMPLE_LEN};
use super::{Version, varint};

/// Bytes of the AEAD tag.
pub const TAG_LEN: usize = 16;
/// The header protection sample starts this many bytes after the packet number's start,
/// whatever the packet number's length (RFC 9001 §5.4.2).
const SAMPLE_OFFSET: usize = 4;

/// Why a packet could not be opened. A receiver discards such a packet (RFC 9001 §5.3,
/// §5.4.2), so none of these ends a connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum OpenError {
    #[error("the packet has no packet number (not Initial, 0-RTT or Handshake)")]
    NoPacketNumber,
    #[error("the packet is too short for a header protection sample ({0} bytes)")]
    TooShort(usize),
    #[error("the buffer of {buffer} bytes cannot hold the {packet}-byte packet")]
    BufferTooSmall { buffer: usize, packet: usize },
    #[error("the AEAD tag does not authenticate the packet")]
    Authentication,
}

/// Why a packet could not be sealed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum SealError {
    #[error("the output buffer is too small")]
    BufferTooSmall,
    #[error("a connection ID is longer than 20 bytes")]
    CidTooLong,
    #[error("the packet number length must be 1 to 4 bytes")]
    PacketNumberLength,
    #[error("Retry packets are not sealed this way")]
    Retry,
}

/// A packet opened in the caller's buffer.
#[derive(Debug, PartialEq, Eq)]
pub struct Opened<'b> {
    /// The first byte without header protection (reserved bits and packet number length
    /// now readable).
    pub first_byte: u8,
    /// The full packet number, recovered from its truncated form.
    pub packet_number: u64,
    /// The header without protection: what the AEAD authenticated as associated data.
    pub header: &'b [u8],
    /// The decrypted payload: the packet's frames.
    pub payload: &'b [u8],
}

/// Copies `header`'s packet into `buf`, removes header protection and opens it with
/// `keys`. `largest_pn` is the largest packet number opened so far in this packet number
/// space, from which the full packet number is recovered (RFC 9000 §17.1, Appendix A.3).
pub fn open<'b>(
    keys: &Keys,
    header: &LongHeader<'_>,
    largest_pn: Option<u64>,
    buf: &'b mut [u8],
) -> Result<Opened<'b>, OpenError> {
    let packet = header.packet();
    let pn_offset = header.pn_offset().ok_or(OpenError::NoPacketNumber)?;
    let sample_at = pn_offset + SAMPLE_OFFSET;
    let sample: &[u8; SAMPLE_LEN] = packet
        .get(sample_at..sample_at + SAMPLE_LEN)
        .and_then(|s| s.try_into().ok())
        .ok_or(OpenError::TooShort(packet.len()))?;
    let buffer = buf.len();
    let buf = buf
        .get_mut(..packet.len())
        .ok_or(OpenError::BufferTooSmall {
            buffer,
            packet: packet.len(),
        })?;
    buf.copy_from_slice(packet);

    let mask = keys.hp_mask(sample);
    buf[0] ^= mask[0] & 0x0f;
    let first_byte = buf[0];
    let pn_len = usize::from(first_byte & 0x03) + 1;
    let mut truncated = 0u64;
    for (i, b) in buf[pn_offset..pn_offset + pn_len].iter_mut().enumerate() {
        *b ^= mask[1 + i];
        truncated = truncated << 8 | u64::from(*b);
    }
    let packet_number = decode_packet_number(largest_pn, truncated, pn_len);

    // The sample check above guarantees pn_offset + 20 <= len, so the header (at most
    // pn_offset + 4 bytes) leaves at least 16 bytes for the tag.
    let header_len = pn_offset + pn_len;
    let (aad, rest) = buf.split_at_mut(header_len);
    let (ciphertext, tag) = rest.split_at_mut(rest.len() - TAG_LEN);
    let cipher = Aes128Gcm::new(&GenericArray::from(*keys.key()));
    let nonce = GenericArray::from(keys.nonce(packet_number));
    cipher
        .decrypt_in_place_detached(&nonce, aad, ciphertext, GenericArray::from_slice(tag))
        .map_err(|_| OpenError::Authentication)?;
    Ok(Opened {
        first_byte,
        packet_number,
        header: aad,
        payload: ciphertext,
    })
}

/// The full packet number whose low `pn_len` bytes are `truncated`, closest to the one
/// after `largest` (RFC 9000 Appendix A.3).
pub fn decode_packet_number(largest: Option<u64>, truncated: u64, pn_len: usize) -> u64 {
    let expected = largest.map_or(0, |l| l.saturating_add(1));
    let bits = 8 * pn_len.clamp(1, 4) as u32;
    let win = 1u64 << bits;
    let hwin = win / 2;
    let mask = win - 1;
    let candidate = (expected & !mask) | (truncated & mask);
    if candidate.saturating_add(hwin) <= expected && candidate < (1 << 62) - win {
        candidate + win
    } else if candidate > expected.saturating_add(hwin) && candidate >= win {
        candidate - win
    } else {
        candidate
    }
}

/// What [`seal_long`] writes in a long header.
#[derive(Debug, Clone, Copy)]
pub struct LongPacket<'a> {
    pub version: Version,
    /// Initial, 0-RTT or Handshake (Retry has no packet protection).
    pub packet_type: LongType,
    pub dcid: &'a [u8],
    pub scid: &'a [u8],
    /// The token (Initial only; servers send none, RFC 9000 §17.2.2).
    pub token: &'a [u8],
    pub packet_number: u64,
    /// Bytes of the packet number on the wire, 1 to 4.
    pub pn_len: usize,
}

/// Writes `packet` with `payload` (its frames) protected by `keys` into `out`; returns the
/// packet's length. A payload too short for a header protection sample is padded with
/// PADDING frames (zeros) until it is long enough.
pub fn seal_long(
    keys: &Keys,
    packet: &LongPacket<'_>,
    payload: &[u8],
    out: &mut [u8],
) -> Result<usize, SealError> {
    if !(1..=4).contains(&packet.pn_len) {
        return Err(SealError::PacketNumberLength);
    }
    if packet.packet_type == LongType::Retry {
        return Err(SealError::Retry);
    }
    let cid_len = |cid: &[u8]| u8::try_from(cid.len()).ok().filter(|&l| l <= 20);
    let dcid_len = cid_len(packet.dcid).ok_or(SealError::CidTooLong)?;
    let scid_len = cid_len(packet.scid).ok_or(SealError::CidTooLong)?;
    let plain_len = payload
        .len()
        .max(SAMPLE_OFFSET + SAMPLE_LEN - TAG_LEN - packet.pn_len);
    let length = packet.pn_len + plain_len + TAG_LEN;

    let mut w = Writer { out, at: 0 };
    let type_bits = packet.packet_type.bits(packet.version);
    w.put(&[0xc0 | type_bits << 4 | (packet.pn_len as u8 - 1)])?;
    w.put(&packet.version.wire().to_be_bytes())?;
    w.put(&[dcid_len])?;
    w.put(packet.dcid)?;
    w.put(&[scid_len])?;
    w.put(packet.scid)?;
    if packet.packet_type == LongType::Initial {
        w.varint(packet.token.len() as u64)?;
        w.put(packet.token)?;
    }
    w.varint(length as u64)?;
    let pn_offset = w.at;
    w.put(&packet.packet_number.to_be_bytes()[8 - packet.pn_len..])?;
    let header_len = w.at;
    w.put(payload)?;
    w.put_zeros(plain_len - payload.len())?;
    w.put_zeros(TAG_LEN)?;
    let end = w.at;
    let out = w.out;

    let (aad, rest) = out.split_at_mut(header_len);
    let (plaintext, tag) = rest[..end - header_len].split_at_mut(plain_len);
    let cipher = Aes128Gcm::new(&GenericArray::from(*keys.key()));
    let nonce = GenericArray::from(keys.nonce(packet.packet_number));
    // Encryption fails only for plaintexts longer than AES-GCM allows (2^36 bytes).
    let t = cipher
        .encrypt_in_place_detached(&nonce, aad, plaintext)
        .map_err(|_| SealError::BufferTooSmall)?;
    tag.copy_from_slice(&t);

    let sample_at = pn_offset + SAMPLE_OFFSET;
    let mut sample = [0u8; SAMPLE_LEN];
    sample.copy_from_slice(&out[sample_at..sample_at + SAMPLE_LEN]);
    let mask = keys.hp_mask(&sample);
    out[0] ^= mask[0] & 0x0f;
    for (b, m) in out[pn_offset..pn_offset + packet.pn_len]
        .iter_mut()
        .zip(&mask[1..])
    {
        *b ^= m;
    }
    Ok(end)
}

/// A cursor writing into a caller's buffer, refusing to run past its end.
struct Writer<'o> {
    out: &'o mut [u8],
    at: usize,
}

impl Writer<'_> {
    fn put(&mut self, bytes: &[u8]) -> Result<(), SealError> {
        let dst = self
            .out
            .get_mut(self.at..self.at + bytes.len())
            .ok_or(SealError::BufferTooSmall)?;
        dst.copy_from_slice(bytes);
        self.at += bytes.len();
        Ok(())
    }

    fn put_zeros(&mut self, n: usize) -> Result<(), SealError> {
        let dst = self
            .out
            .get_mut(self.at..self.at + n)
            .ok_or(SealError::BufferTooSmall)?;
        dst.fill(0);
        self.at += n;
        Ok(())
    }

    fn varint(&mut self, value: u64) -> Result<(), SealError> {
        let dst = self
            .out
            .get_mut(self.at..)
            .ok_or(SealError::BufferTooSmall)?;
        self.at += varint::write(value, dst).ok_or(SealError::BufferTooSmall)?;
        Ok(())
    }
}
