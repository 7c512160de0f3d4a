//! Long-header packets of untrusted datagrams: a checked view and the walk over the
//! packets coalesced in one datagram (RFC 9000 §17.2, §12.2; RFC 8999 for the invariants
//! an unknown version keeps; RFC 9369 §3.2 for version 2's packet types).
//!
//! [`LongHeader::new_checked`] validates every length once and records where each field
//! is; the accessors then only slice within what was checked, so none can panic. The
//! header is read as it is on the wire: the packet number and the low four bits of the
//! first byte are still under header protection (`protect` removes it). The fixed bit is
//! not required: a client may grease it (RFC 9287), and what it means is the server's to
//! judge.

use arrayvec::ArrayVec;
use core::fmt;

use super::{Version, varint};

/// Longest connection ID in QUIC v1 and v2 (RFC 9000 §17.2).
pub const MAX_CID_LEN: usize = 20;

/// What a long-header packet is, from its version and type bits.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PacketKind {
    /// Version 0: the server's list of the versions it speaks (RFC 9000 §17.2.1).
    VersionNegotiation,
    Initial(Version),
    ZeroRtt(Version),
    Handshake(Version),
    /// A server's Retry: a token and an integrity tag (RFC 9000 §17.2.5).
    Retry(Version),
    /// A version this module does not know: only the invariants were read.
    UnknownVersion(u32),
}

/// Long-header packet types, as the two type bits name them in each version.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LongType {
    Initial,
    ZeroRtt,
    Handshake,
    Retry,
}

impl LongType {
    /// The type bits (bits 4 and 5 of the first byte, shifted down) of this type in
    /// `version`.
    pub const fn bits(self, version: Version) -> u8 {
        match (version, self) {
            (Version::V1, Self::Initial) | (Version::V2, Self::Retry) => 0,
            (Version::V1, Self::ZeroRtt) | (Version::V2, Self::Initial) => 1,
            (Version::V1, Self::Handshake) | (Version::V2, Self::ZeroRtt) => 2,
            (Version::V1, Self::Retry) | (Version::V2, Self::Handshake) => 3,
        }
    }

    /// The type the bits name in `version`.
    pub const fn from_bits(version: Version, bits: u8) -> Self {
        match (version, bits & 3) {
            (Version::V1, 0) | (Version::V2, 1) => Self::Initial,
            (Version::V1, 1) | (Version::V2, 2) => Self::ZeroRtt,
            (Version::V1, 2) | (Version::V2, 3) => Self::Handshake,
            _ => Self::Retry,
        }
    }
}

/// Why bytes are not a long-header packet that can be walked.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum HeaderError {
    #[error("no bytes")]
    Empty,
    #[error("a short-header packet (the form bit is 0)")]
    ShortHeader,
    #[error("the packet ends inside its {0}")]
    Truncated(HeaderField),
    #[error("a connection ID of {0} bytes; QUIC v1 and v2 allow at most 20")]
    CidTooLong(u8),
}

/// A field of a long header, named in [`HeaderError`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HeaderField {
    Version,
    DcidLength,
    Dcid,
    ScidLength,
    Scid,
    TokenLength,
    Token,
    Length,
    Payload,
    RetryIntegrityTag,
}

impl fmt::Display for HeaderField {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::Version => "version",
            Self::DcidLength => "destination connection ID length",
            Self::Dcid => "destination connection ID",
            Self::ScidLength => "source connection ID length",
            Self::Scid => "source connection ID",
            Self::TokenLength => "token length",
            Self::Token => "token",
            Self::Length => "length",
            Self::Payload => "payload",
            Self::RetryIntegrityTag => "retry integrity tag",
        })
    }
}

/// Bytes of a Retry packet's integrity tag.
const RETRY_TAG_LEN: usize = 16;

/// A checked long-header packet: the first packet of `bytes`.
#[derive(Clone, Copy, PartialEq, Eq)]
pub struct LongHeader<'a> {
    /// The packet alone (for Initial, 0-RTT and Handshake, up to the end its Length
    /// field gives; otherwise the rest of the datagram).
    packet: &'a [u8],
    kind: PacketKind,
    dcid: (usize, usize),
    scid: (usize, usize),
    /// The token of an Initial or a Retry (empty otherwise).
    token: (usize, usize),
    /// Where the (protected) packet number starts, for packets that have one.
    pn_offset: Option<usize>,
}

impl<'a> LongHeader<'a> {
    /// Reads the long-header packet at the start of `bytes` (a datagram, or what follows
    /// the packets coalesced before it). Bytes after the packet are not examined.
    pub fn new_checked(bytes: &'a [u8]) -> Result<Self, HeaderError> {
        use HeaderError::Truncated;
        let &first = bytes.first().ok_or(HeaderError::Empty)?;
        if first & 0x80 == 0 {
            return Err(HeaderError::ShortHeader);
        }
        let version = bytes.get(1..5).ok_or(Truncated(HeaderField::Version))?;
        let version = u32::from_be_bytes([version[0], version[1], version[2], version[3]]);
        let known = Version::from_wire(version);
        let mut at = 5;
        let mut cid = |len_field, field| -> Result<(usize, usize), HeaderError> {
            let len = *bytes.get(at).ok_or(Truncated(len_field))?;
            if known.is_some() && usize::from(len) > MAX_CID_LEN {
                return Err(HeaderError::CidTooLong(len));
            }
            let start = at + 1;
            let end = start + usize::from(len);
            if end > bytes.len() {
                return Err(Truncated(field));
            }
            at = end;
            Ok((start, end))
        };
        let dcid = cid(HeaderField::DcidLength, HeaderField::Dcid)?;
        let scid = cid(HeaderField::ScidLength, HeaderField::Scid)?;

        let kind = match known {
            None if version == 0 => PacketKind::VersionNegotiation,
            None => PacketKind::UnknownVersion(version),
            Some(v) => match LongType::from_bits(v, first >> 4) {
                LongType::Initial => PacketKind::Initial(v),
                LongType::ZeroRtt => PacketKind::ZeroRtt(v),
                LongType::Handshake => PacketKind::Handshake(v),
                LongType::Retry => PacketKind::Retry(v),
            },
        };
        let mut header = Self {
            packet: bytes,
            kind,
            dcid,
            scid,
            token: (at, at),
            pn_offset: None,
        };
        match kind {
            PacketKind::VersionNegotiation | PacketKind::UnknownVersion(_) => {}
            PacketKind::Retry(_) => {
                let end = bytes
                    .len()
                    .checked_sub(RETRY_TAG_LEN)
                    .filter(|&end| end >= at)
                    .ok_or(Truncated(HeaderField::RetryIntegrityTag))?;
                header.token = (at, end);
            }
            PacketKind::Initial(_) | PacketKind::ZeroRtt(_) | PacketKind::Handshake(_) => {
                if let PacketKind::Initial(_) = kind {
                    let (len, n) =
                        varint::read(&bytes[at..]).ok_or(Truncated(HeaderField::TokenLength))?;
                    let start = at + n;
                    let end = usize::try_from(len)
                        .ok()
                        .and_then(|len| start.checked_add(len))
                        .filter(|&end| end <= bytes.len())
                        .ok_or(Truncated(HeaderField::Token))?;
                    header.token = (start, end);
                    at = end;
                }
                let (len, n) = varint::read(&bytes[at..]).ok_or(Truncated(HeaderField::Length))?;
                let pn_offset = at + n;
                let end = usize::try_from(len)
                    .ok()
                    .and_then(|len| pn_offset.checked_add(len))
                    .filter(|&end| end <= bytes.len())
                    .ok_or(Truncated(HeaderField::Payload))?;
                header.packet = &bytes[..end];
                header.pn_offset = Some(pn_offset);
            }
        }
        Ok(header)
    }

    /// The first byte as sent (its low four bits are protected in packets with a
    /// packet number).
    pub fn first_byte(&self) -> u8 {
        self.packet.first().copied().unwrap_or(0)
    }

    /// The version field.
    pub fn version(&self) -> u32 {
        match self.packet.get(1..5) {
            Some(&[a, b, c, d]) => u32::from_be_bytes([a, b, c, d]),
            _ => 0,
        }
    }

    /// What the packet is.
    pub fn kind(&self) -> PacketKind {
        self.kind
    }

    /// The Destination Connection ID.
    pub fn dcid(&self) -> &'a [u8] {
        self.packet
            .get(self.dcid.0..self.dcid.1)
            .unwrap_or_default()
    }

    /// The Source Connection ID.
    pub fn scid(&self) -> &'a [u8] {
        self.packet
            .get(self.scid.0..self.scid.1)
            .unwrap_or_default()
    }

    /// The token of an Initial or a Retry; empty for other packets.
    pub fn token(&self) -> &'a [u8] {
        self.packet
            .get(self.token.0..self.token.1)
            .unwrap_or_default()
    }

    /// Where the protected packet number starts, in [`Self::packet`]: for Initial, 0-RTT
    /// and Handshake packets.
    pub fn pn_offset(&self) -> Option<usize> {
        self.pn_offset
    }

    /// The whole packet: for Initial, 0-RTT and Handshake up to where its Length field
    /// ends it; for the others, the rest of the datagram.
    pub fn packet(&self) -> &'a [u8] {
        self.packet
    }

    /// A Retry's integrity tag (empty for other packets).
    pub fn retry_integrity_tag(&self) -> &'a [u8] {
        match self.kind {
            PacketKind::Retry(_) => self.packet.get(self.token.1..).unwrap_or_default(),
            _ => &[],
        }
    }

    /// The versions a Version Negotiation packet lists (none for other packets; bytes
    /// past the last whole 4-byte version are ignored).
    pub fn supported_versions(&self) -> impl Iterator<Item = u32> + 'a {
        let list = match self.kind {
            PacketKind::VersionNegotiation => self.packet.get(self.scid.1..).unwrap_or_default(),
            _ => &[],
        };
        list.chunks_exact(4)
            .map(|v| u32::from_be_bytes([v[0], v[1], v[2], v[3]]))
    }
}

impl fmt::Debug for LongHeader<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("LongHeader")
            .field("kind", &self.kind)
            .field("dcid", &Hex(self.dcid()))
            .field("scid", &Hex(self.scid()))
            .field("token_len", &self.token().len())
            .field("packet_len", &self.packet.len())
            .finish()
    }
}

/// One packet of a datagram.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Packet<'a> {
    Long(LongHeader<'a>),
    /// A short-header packet, or bytes that read as one: it runs to the end of the
    /// datagram (a receiver ignores what follows a packet with another connection ID,
    /// RFC 9000 §12.2, so trailing junk lands here too).
    Short(&'a [u8]),
}

/// The packets coalesced in one datagram, first to last. After an error, or a packet
/// that runs to the end of the datagram, the walk ends.
pub fn packets(datagram: &[u8]) -> Packets<'_> {
    Packets { rest: datagram }
}

/// See [`packets`].
#[derive(Debug, Clone)]
pub struct Packets<'a> {
    rest: &'a [u8],
}

impl<'a> Iterator for Packets<'a> {
    type Item = Result<Packet<'a>, HeaderError>;

    fn next(&mut self) -> Option<Self::Item> {
        if self.rest.is_empty() {
            return None;
        }
        let rest = core::mem::take(&mut self.rest);
        match LongHeader::new_checked(rest) {
            Ok(header) => {
                self.rest = rest.get(header.packet().len()..).unwrap_or_default();
                Some(Ok(Packet::Long(header)))
            }
            Err(HeaderError::ShortHeader) => Some(Ok(Packet::Short(rest))),
            Err(e) => Some(Err(e)),
        }
    }
}

/// A connection ID of QUIC v1 or v2: at most 20 bytes, kept inline.
#[derive(Clone, Default, PartialEq, Eq, Hash)]
pub struct ConnectionId(ArrayVec<u8, MAX_CID_LEN>);

impl ConnectionId {
    /// The ID of `bytes`, or `None` when it is longer than 20 bytes.
    pub fn new(bytes: &[u8]) -> Option<Self> {
        ArrayVec::try_from(bytes).ok().map(Self)
    }

    /// The ID's bytes.
    pub fn as_bytes(&self) -> &[u8] {
        &self.0
    }
}

impl fmt::Debug for ConnectionId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        Hex(&self.0).fmt(f)
    }
}

/// Bytes shown as lower-case hex.
struct Hex<'a>(&'a [u8]);

impl fmt::Debug for Hex<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.iter().try_for_each(|b| write!(f, "{b:02x}"))
    }
}
