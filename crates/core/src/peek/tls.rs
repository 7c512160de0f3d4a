//! TLS ClientHello peeker: SNI, ALPN and the ECH marker from the first records.
//!
//! [`peek`] takes the contiguous bytes received so far from a client and answers
//! [`TlsPeek::NeedMore`], [`TlsPeek::Found`], [`TlsPeek::NotTls`] or
//! [`TlsPeek::Invalid`]. It re-parses from the start on every call (the input is bounded
//! by [`TlsPeekConfig::max_hello_bytes`]) and walks the handshake stream across record
//! headers in place, so the ClientHello may be split over any number of records and the
//! records over any number of segments. Nothing is copied or allocated until the answer
//! is `Found`, which then owns the name and the ALPN list.
//!
//! # Decisions
//! - The first byte decides cheaply: anything but `0x16` (handshake) is `NotTls`, so an
//!   HTTP request, an SSLv2-style hello (high bit set) or an alert can be tried elsewhere.
//!   A second byte other than `0x03` is `NotTls` too. A record version of `0x0300`
//!   (SSL 3.0) or above `0x0303` is `Invalid`: it is TLS-shaped but not acceptable.
//! - Answers are final: once a prefix gives `Found`, `NotTls` or `Invalid`, every longer
//!   prefix gives the same answer. Checks run in wire order and each uses only bytes
//!   already read, and the input is clipped to the cap before parsing.
//! - Strict where the RFCs are: every length must fit its enclosing structure and the
//!   extension block must end where the message ends; duplicate extensions, an empty or
//!   duplicate `host_name`, an empty ALPN list or protocol, zero-length or oversized
//!   records, other record types between hello fragments, and `pre_shared_key` not last
//!   are `Invalid`. Bytes after the end of the ClientHello are not examined.
//! - Only `host_name` (type 0) server names count; other name types are skipped. The
//!   name goes through [`HostName::parse`]. A literal address is forbidden by RFC 6066
//!   §3: an IPv4 literal (a name whose last label is all digits, which no real TLD is) is
//!   [`HelloError::AddressLiteral`]; an IPv6 literal already fails `HostName::parse`.
//! - ECH (`0xfe0d`): an `outer` ECHClientHello (what a client sends in clear, real or
//!   GREASE) sets `ech_outer`; routing then uses the outer SNI, the public name. An
//!   `inner` one (a split-mode client-facing server forwarding the decrypted inner
//!   hello) is accepted with `ech_outer: false`.
//! - ALPN is kept as one boxed copy of the validated wire `protocol_name_list`
//!   ([`AlpnList`]): one allocation whatever the number of protocols, iterated in place.

use core::fmt;

use crate::name::{HostName, NameError};

/// Default cap on the bytes examined for one ClientHello, record headers included.
pub const DEFAULT_MAX_HELLO_BYTES: usize = 16 * 1024;

/// Record content type of handshake records.
const CONTENT_HANDSHAKE: u8 = 0x16;
/// Handshake message type of ClientHello.
const HANDSHAKE_CLIENT_HELLO: u8 = 1;
/// Bytes of a record header: type, version, length.
const RECORD_HEADER_LEN: usize = 5;
/// Bytes of a handshake message header: type, 24-bit length.
const HANDSHAKE_HEADER_LEN: usize = 4;
/// Largest record plaintext (RFC 8446 §5.1).
const MAX_RECORD_LEN: usize = 1 << 14;
/// Longest name `HostName::parse` may accept: 253 bytes plus one trailing dot.
const MAX_SNI_LEN: usize = crate::name::MAX_NAME_LEN + 1;

/// Extension types this peeker reads.
mod ext {
    pub const SERVER_NAME: u16 = 0;
    pub const ALPN: u16 = 16;
    pub const PRE_SHARED_KEY: u16 = 41;
    pub const ENCRYPTED_CLIENT_HELLO: u16 = 0xfe0d;
}

/// Limits for [`peek`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TlsPeekConfig {
    /// Bytes of the connection examined at most, record headers included. Reaching it
    /// without a complete ClientHello is [`HelloError::TooLarge`].
    pub max_hello_bytes: usize,
}

impl Default for TlsPeekConfig {
    fn default() -> Self {
        Self {
            max_hello_bytes: DEFAULT_MAX_HELLO_BYTES,
        }
    }
}

/// What the bytes received so far say.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TlsPeek {
    /// A valid beginning of a ClientHello: call again with more bytes.
    NeedMore,
    /// A complete, valid ClientHello.
    Found {
        /// The `host_name` server name, if the client sent one.
        sni: Option<HostName>,
        /// The ALPN protocols offered, if the extension was present.
        alpn: Option<AlpnList>,
        /// The hello carries an outer `encrypted_client_hello` extension (real or GREASE);
        /// `sni` is then the outer, public name.
        ech_outer: bool,
    },
    /// Not a TLS handshake record: another peeker may try.
    NotTls,
    /// TLS-shaped, but not a ClientHello this peeker accepts.
    Invalid(HelloError),
}

/// Why TLS-shaped bytes are not an acceptable ClientHello.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum HelloError {
    #[error("record version 0x{0:04x} is not one of 0x0301..=0x0303")]
    RecordVersion(u16),
    #[error("a record of content type {0} sits between handshake records")]
    InterleavedRecord(u8),
    #[error("a handshake record is empty")]
    EmptyRecord,
    #[error("a record of {0} bytes exceeds 2^14")]
    RecordOverflow(u16),
    #[error("the first handshake message has type {0}, not ClientHello (1)")]
    NotClientHello(u8),
    #[error("the ClientHello does not fit in {cap} bytes")]
    TooLarge { cap: usize },
    #[error("ClientHello legacy_version 0x{0:04x} is not TLS 1.0 or later")]
    HelloVersion(u16),
    #[error("session id of {0} bytes is longer than 32")]
    SessionIdTooLong(u8),
    #[error("cipher suite list is empty or has an odd length")]
    BadCipherSuites,
    #[error("compression method list is empty")]
    NoCompressionMethods,
    #[error("{0} runs past its enclosing structure")]
    Overrun(Field),
    #[error("{0} length does not match its enclosing structure")]
    LengthMismatch(Field),
    #[error("extension 0x{0:04x} appears twice")]
    DuplicateExtension(u16),
    #[error("pre_shared_key is not the last extension")]
    PskNotLast,
    #[error("server_name list is empty")]
    EmptyServerNameList,
    #[error("server_name list has two host_name entries")]
    DuplicateHostName,
    #[error("server name: {0}")]
    Name(#[from] NameError),
    #[error("server name is a literal address (RFC 6066 §3)")]
    AddressLiteral,
    #[error("ALPN protocol list is empty")]
    EmptyAlpnList,
    #[error("ALPN protocol name is empty")]
    EmptyAlpnProtocol,
    #[error("encrypted_client_hello has unknown type {0}")]
    EchType(u8),
}

/// A length-delimited part of the ClientHello, named in [`HelloError`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Field {
    Version,
    Random,
    SessionId,
    CipherSuites,
    CompressionMethods,
    Extensions,
    ExtensionHeader,
    Extension,
    ServerNameList,
    ServerName,
    AlpnList,
    AlpnProtocol,
    Ech,
}

impl fmt::Display for Field {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::Version => "legacy_version",
            Self::Random => "random",
            Self::SessionId => "session id",
            Self::CipherSuites => "cipher suite list",
            Self::CompressionMethods => "compression method list",
            Self::Extensions => "extension block",
            Self::ExtensionHeader => "extension header",
            Self::Extension => "extension",
            Self::ServerNameList => "server_name list",
            Self::ServerName => "server name",
            Self::AlpnList => "ALPN protocol list",
            Self::AlpnProtocol => "ALPN protocol name",
            Self::Ech => "encrypted_client_hello",
        })
    }
}

/// The ALPN `protocol_name_list` as sent (without its 2-byte length), validated: one or
/// more protocols, each a 1-byte length and 1 to 255 bytes of name.
#[derive(Clone, PartialEq, Eq)]
pub struct AlpnList(Box<[u8]>);

impl AlpnList {
    /// The protocols in the client's order of preference.
    pub fn iter(&self) -> AlpnIter<'_> {
        AlpnIter(&self.0)
    }

    /// Whether `protocol` (e.g. `b"h2"`) is offered.
    pub fn contains(&self, protocol: &[u8]) -> bool {
        self.iter().any(|p| p == protocol)
    }

    /// The wire list: each protocol prefixed by its one-byte length.
    pub fn as_wire(&self) -> &[u8] {
        &self.0
    }
}

impl fmt::Debug for AlpnList {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_list()
            .entries(self.iter().map(|p| String::from_utf8_lossy(p)))
            .finish()
    }
}

impl<'a> IntoIterator for &'a AlpnList {
    type Item = &'a [u8];
    type IntoIter = AlpnIter<'a>;
    fn into_iter(self) -> AlpnIter<'a> {
        self.iter()
    }
}

/// Iterator over the protocols of an [`AlpnList`].
#[derive(Debug, Clone)]
pub struct AlpnIter<'a>(&'a [u8]);

impl<'a> Iterator for AlpnIter<'a> {
    type Item = &'a [u8];
    fn next(&mut self) -> Option<&'a [u8]> {
        let (&len, rest) = self.0.split_first()?;
        // The list was validated when built; `get` keeps a foreign one from panicking.
        let proto = rest.get(..usize::from(len))?;
        self.0 = &rest[proto.len()..];
        Some(proto)
    }
}

/// The bytes of a fatal `unrecognized_name` alert record, for refusing a client whose
/// name has no route.
///
/// The record version echoes the client's first record version when it is
/// 0x0301..=0x0303, else 0x0303. No version is negotiated yet, so the version the client
/// chose for its own first record is the one it is sure to accept (TLS 1.3 clients ignore
/// the field, RFC 8446 §5.1; OpenSSL servers send such early alerts as 0x0301).
pub fn unrecognized_name_alert(client_prefix: &[u8]) -> [u8; 7] {
    let version = match client_prefix {
        [CONTENT_HANDSHAKE, 3, minor @ 1..=3, ..] => *minor,
        _ => 3,
    };
    [0x15, 3, version, 0, 2, 2, 112]
}

/// Reads the ClientHello at the start of `data`, the contiguous bytes received so far.
pub fn peek(data: &[u8], config: &TlsPeekConfig) -> TlsPeek {
    let cap = config.max_hello_bytes;
    let clipped = &data[..data.len().min(cap)];
    match first_record(clipped) {
        First::NotTls => return TlsPeek::NotTls,
        First::Invalid(e) => return TlsPeek::Invalid(e),
        First::Maybe => {}
    }
    let mut parser = Parser {
        r: Reader {
            data: clipped,
            pos: 0,
            left_in_record: 0,
            consumed: 0,
        },
        cap,
    };
    match parser.client_hello() {
        Ok(found) => found,
        Err(Stop::Invalid(e)) => TlsPeek::Invalid(e),
        Err(Stop::NeedMore) if data.len() >= cap => TlsPeek::Invalid(HelloError::TooLarge { cap }),
        Err(Stop::NeedMore) => TlsPeek::NeedMore,
    }
}

enum First {
    NotTls,
    Invalid(HelloError),
    Maybe,
}

/// The cheap verdict from the first three bytes.
fn first_record(data: &[u8]) -> First {
    match data {
        [t, ..] if *t != CONTENT_HANDSHAKE => First::NotTls,
        [_, major, ..] if *major != 3 => First::NotTls,
        [_, _, minor, ..] if !(1..=3).contains(minor) => {
            First::Invalid(HelloError::RecordVersion(u16::from_be_bytes([3, *minor])))
        }
        _ => First::Maybe,
    }
}

/// Why parsing stopped before a result.
#[derive(Debug)]
enum Stop {
    NeedMore,
    Invalid(HelloError),
}

impl From<HelloError> for Stop {
    fn from(e: HelloError) -> Self {
        Self::Invalid(e)
    }
}

/// A cursor over the handshake byte stream carried by consecutive handshake records,
/// stepping over record headers in place.
#[derive(Debug, Clone, Copy)]
struct Reader<'a> {
    data: &'a [u8],
    /// Next byte of `data` to read.
    pos: usize,
    /// Payload bytes of the current record not read yet.
    left_in_record: usize,
    /// Handshake-stream bytes read so far.
    consumed: usize,
}

impl Reader<'_> {
    /// Reads the header of the next record, checking it byte by byte as it arrives.
    fn next_record(&mut self) -> Result<(), Stop> {
        let header = self.data.get(self.pos..).unwrap_or_default();
        let header = &header[..header.len().min(RECORD_HEADER_LEN)];
        if let Some(&t) = header.first() {
            if t != CONTENT_HANDSHAKE {
                return Err(HelloError::InterleavedRecord(t).into());
            }
        }
        if let [_, major, minor, ..] = *header {
            if major != 3 || !(1..=3).contains(&minor) {
                return Err(HelloError::RecordVersion(u16::from_be_bytes([major, minor])).into());
            }
        }
        let [_, _, _, hi, lo] = *header else {
            return Err(Stop::NeedMore);
        };
        let len = u16::from_be_bytes([hi, lo]);
        if len == 0 {
            return Err(HelloError::EmptyRecord.into());
        }
        if usize::from(len) > MAX_RECORD_LEN {
            return Err(HelloError::RecordOverflow(len).into());
        }
        self.pos += RECORD_HEADER_LEN;
        self.left_in_record = usize::from(len);
        Ok(())
    }

    /// Advances over `n` handshake bytes, calling `sink` with each contiguous piece.
    fn advance(&mut self, mut n: usize, mut sink: impl FnMut(&[u8])) -> Result<(), Stop> {
        while n > 0 {
            if self.left_in_record == 0 {
                self.next_record()?;
            }
            let avail = self.data.len().saturating_sub(self.pos);
            let take = n.min(self.left_in_record).min(avail);
            if take == 0 {
                return Err(Stop::NeedMore);
            }
            sink(&self.data[self.pos..self.pos + take]);
            self.pos += take;
            self.left_in_record -= take;
            self.consumed += take;
            n -= take;
        }
        Ok(())
    }

    fn skip(&mut self, n: usize) -> Result<(), Stop> {
        self.advance(n, |_| {})
    }

    /// Reads a big-endian integer of `N` bytes (1 to 3).
    fn uint<const N: usize>(&mut self) -> Result<usize, Stop> {
        let mut value = 0usize;
        self.advance(N, |piece| {
            for &b in piece {
                value = value << 8 | usize::from(b);
            }
        })?;
        Ok(value)
    }
}

/// Parses one ClientHello from a [`Reader`].
struct Parser<'a> {
    r: Reader<'a>,
    cap: usize,
}

/// Where a field was found, to copy it out once the hello is known to be complete.
#[derive(Clone, Copy)]
struct Span<'a> {
    at: Reader<'a>,
    len: usize,
}

impl<'a> Parser<'a> {
    /// Checks that `n` more bytes fit before `end` (a handshake-stream offset).
    fn fits(&self, n: usize, end: usize, field: Field) -> Result<(), Stop> {
        if self.r.consumed + n > end {
            return Err(HelloError::Overrun(field).into());
        }
        Ok(())
    }

    /// Reads an `N`-byte integer that must lie before `end`.
    fn uint<const N: usize>(&mut self, end: usize, field: Field) -> Result<usize, Stop> {
        self.fits(N, end, field)?;
        self.r.uint::<N>()
    }

    /// Skips an `n`-byte field that must lie before `end`.
    fn skip(&mut self, n: usize, end: usize, field: Field) -> Result<(), Stop> {
        self.fits(n, end, field)?;
        self.r.skip(n)
    }

    /// Skips an `n`-byte field that must lie before `end`, returning where it was.
    fn span(&mut self, n: usize, end: usize, field: Field) -> Result<Span<'a>, Stop> {
        let at = self.r;
        self.skip(n, end, field)?;
        Ok(Span { at, len: n })
    }

    fn client_hello(&mut self) -> Result<TlsPeek, Stop> {
        let msg_type = self.r.uint::<1>()?;
        if msg_type != usize::from(HANDSHAKE_CLIENT_HELLO) {
            return Err(HelloError::NotClientHello(msg_type as u8).into());
        }
        let len = self.r.uint::<3>()?;
        if len + HANDSHAKE_HEADER_LEN + RECORD_HEADER_LEN > self.cap {
            return Err(HelloError::TooLarge { cap: self.cap }.into());
        }
        let end = HANDSHAKE_HEADER_LEN + len;

        let version = self.uint::<2>(end, Field::Version)?;
        if version < 0x0301 || version >> 8 != 3 {
            return Err(HelloError::HelloVersion(version as u16).into());
        }
        self.skip(32, end, Field::Random)?;
        let sid_len = self.uint::<1>(end, Field::SessionId)?;
        if sid_len > 32 {
            return Err(HelloError::SessionIdTooLong(sid_len as u8).into());
        }
        self.skip(sid_len, end, Field::SessionId)?;
        let suites_len = self.uint::<2>(end, Field::CipherSuites)?;
        if suites_len == 0 || suites_len % 2 != 0 {
            return Err(HelloError::BadCipherSuites.into());
        }
        self.skip(suites_len, end, Field::CipherSuites)?;
        let methods_len = self.uint::<1>(end, Field::CompressionMethods)?;
        if methods_len == 0 {
            return Err(HelloError::NoCompressionMethods.into());
        }
        self.skip(methods_len, end, Field::CompressionMethods)?;

        let mut hello = Extensions::default();
        // Before TLS 1.3 the extension block may be absent altogether.
        if self.r.consumed < end {
            let block_len = self.uint::<2>(end, Field::Extensions)?;
            if self.r.consumed + block_len != end {
                return Err(HelloError::LengthMismatch(Field::Extensions).into());
            }
            self.extensions(end, &mut hello)?;
        }
        hello.into_found()
    }

    fn extensions(&mut self, end: usize, hello: &mut Extensions<'a>) -> Result<(), Stop> {
        // One bit per extension type: bounded, and no allocation.
        let mut seen = [0u64; 1024];
        let mut psk_seen = false;
        while self.r.consumed < end {
            let ext_type = self.uint::<2>(end, Field::ExtensionHeader)?;
            let ext_len = self.uint::<2>(end, Field::ExtensionHeader)?;
            self.fits(ext_len, end, Field::Extension)?;
            let ext_type = ext_type as u16;
            let (word, bit) = (usize::from(ext_type / 64), ext_type % 64);
            if seen[word] & 1 << bit != 0 {
                return Err(HelloError::DuplicateExtension(ext_type).into());
            }
            seen[word] |= 1 << bit;
            if psk_seen {
                return Err(HelloError::PskNotLast.into());
            }
            let ext_end = self.r.consumed + ext_len;
            match ext_type {
                ext::SERVER_NAME => hello.sni = self.server_name(ext_end)?,
                ext::ALPN => hello.alpn = Some(self.alpn(ext_end)?),
                ext::ENCRYPTED_CLIENT_HELLO => hello.ech_outer = self.ech(ext_end)?,
                ext::PRE_SHARED_KEY => {
                    psk_seen = true;
                    self.r.skip(ext_len)?;
                }
                _ => self.r.skip(ext_len)?,
            }
        }
        Ok(())
    }

    /// Reads a length-prefixed vector that must exactly fill the extension up to `end`.
    fn list_filling(&mut self, end: usize, field: Field) -> Result<usize, Stop> {
        let len = self.uint::<2>(end, field)?;
        if self.r.consumed + len != end {
            return Err(HelloError::LengthMismatch(field).into());
        }
        Ok(len)
    }

    /// The `server_name` extension (RFC 6066 §3): the `host_name` entry, if any.
    fn server_name(&mut self, end: usize) -> Result<Option<Span<'a>>, Stop> {
        if self.list_filling(end, Field::ServerNameList)? == 0 {
            return Err(HelloError::EmptyServerNameList.into());
        }
        let mut host = None;
        while self.r.consumed < end {
            let name_type = self.uint::<1>(end, Field::ServerName)?;
            let len = self.uint::<2>(end, Field::ServerName)?;
            self.fits(len, end, Field::ServerName)?;
            if name_type != 0 {
                self.r.skip(len)?;
                continue;
            }
            if host.is_some() {
                return Err(HelloError::DuplicateHostName.into());
            }
            if len > MAX_SNI_LEN {
                return Err(HelloError::Name(NameError::TooLong).into());
            }
            host = Some(self.span(len, end, Field::ServerName)?);
        }
        Ok(host)
    }

    /// The ALPN extension (RFC 7301 §3.1): where the validated protocol list is.
    fn alpn(&mut self, end: usize) -> Result<Span<'a>, Stop> {
        let len = self.list_filling(end, Field::AlpnList)?;
        if len == 0 {
            return Err(HelloError::EmptyAlpnList.into());
        }
        let at = self.r;
        while self.r.consumed < end {
            let proto_len = self.uint::<1>(end, Field::AlpnProtocol)?;
            if proto_len == 0 {
                return Err(HelloError::EmptyAlpnProtocol.into());
            }
            self.skip(proto_len, end, Field::AlpnProtocol)?;
        }
        Ok(Span { at, len })
    }

    /// The `encrypted_client_hello` extension: whether it is the outer form.
    fn ech(&mut self, end: usize) -> Result<bool, Stop> {
        match self.uint::<1>(end, Field::Ech)? {
            // outer: cipher suite (KDF, AEAD), config_id, enc<0..2^16-1>, payload<1..2^16-1>
            0 => {
                self.skip(5, end, Field::Ech)?;
                let enc_len = self.uint::<2>(end, Field::Ech)?;
                self.skip(enc_len, end, Field::Ech)?;
                let payload_len = self.list_filling(end, Field::Ech)?;
                if payload_len == 0 {
                    return Err(HelloError::LengthMismatch(Field::Ech).into());
                }
                self.r.skip(payload_len)?;
                Ok(true)
            }
            // inner: nothing more.
            1 if self.r.consumed == end => Ok(false),
            1 => Err(HelloError::LengthMismatch(Field::Ech).into()),
            t => Err(HelloError::EchType(t as u8).into()),
        }
    }
}

/// What the extensions said, as positions in the input until the hello is complete.
#[derive(Default)]
struct Extensions<'a> {
    sni: Option<Span<'a>>,
    alpn: Option<Span<'a>>,
    ech_outer: bool,
}

impl Extensions<'_> {
    /// Copies out the name and the ALPN list: the only allocations of a peek.
    fn into_found(self) -> Result<TlsPeek, Stop> {
        let sni = match self.sni {
            None => None,
            Some(Span { mut at, len }) => {
                let mut buf = [0u8; MAX_SNI_LEN];
                let mut filled = 0;
                at.advance(len, |piece| {
                    buf[filled..filled + piece.len()].copy_from_slice(piece);
                    filled += piece.len();
                })?;
                let name = HostName::parse(&buf[..filled]).map_err(HelloError::Name)?;
                if is_address_literal(&name) {
                    return Err(HelloError::AddressLiteral.into());
                }
                Some(name)
            }
        };
        let alpn = match self.alpn {
            None => None,
            Some(Span { mut at, len }) => {
                let mut wire = Vec::with_capacity(len);
                at.advance(len, |piece| wire.extend_from_slice(piece))?;
                Some(AlpnList(wire.into_boxed_slice()))
            }
        };
        Ok(TlsPeek::Found {
            sni,
            alpn,
            ech_outer: self.ech_outer,
        })
    }
}

/// An IPv4 literal in name form: the last label is all digits, which no TLD is.
fn is_address_literal(name: &HostName) -> bool {
    name.labels_rev()
        .next()
        .is_some_and(|tld| tld.bytes().all(|b| b.is_ascii_digit()))
}

#[cfg(test)]
mod tests;
