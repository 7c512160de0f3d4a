//! TLS ClientHello peeker: SNI, ALPN and the ECH marker from the first records.
//!
//! [`peek`] takes the contiguous bytes received so far from a client and answers
//! [`TlsPeek::NeedMore`], [`TlsPeek::Found`], [`TlsPeek::SslV2`], [`TlsPeek::NotTls`] or
//! [`TlsPeek::Invalid`]. It re-parses from the start on every call (the input is bounded
//! by [`TlsPeekConfig::max_hello_bytes`]) and walks the handshake stream across record
//! headers in place, so the ClientHello may be split over any number of records and the
//! records over any number of segments. Nothing is copied or allocated until the answer
//! is `Found`, which then owns the name and the ALPN list.
//!
//! # Never stricter than the server behind
//!
//! Kracauer reads a hello only to choose a backend; the backend's TLS stack reads the same
//! bytes again and answers them. So the peeker checks what it must follow to find the
//! name with certainty — the record layer, the ClientHello's outline, the framing of the
//! extension block and the `server_name` extension — and nothing else. What it does not
//! need is the server's to judge: legacy and record versions, the session id's length,
//! the cipher suite and compression lists, duplicate or misplaced extensions other than
//! `server_name`, and the contents of ALPN and ECH (a malformed ALPN list is reported as
//! absent, a malformed ECH extension as not outer). The engine then routes an `Invalid`
//! hello to the default backend, replaying its bytes as they came, or, with no default,
//! answers `decode_error` (architecture.md, The splice, step 3).
//!
//! The rules kept, each one a hello that OpenSSL, BoringSSL and rustls servers refuse
//! too (so routing it to the default backend changes nothing the client sees):
//!
//! | rule | [`HelloError`] | what the servers do |
//! |---|---|---|
//! | a record after the first whose major version is not 3 | `RecordVersion` | OpenSSL: `protocol_version` (wrong version number); BoringSSL, rustls: `protocol_version` / `decode_error` |
//! | another record type between the hello's records | `InterleavedRecord` | all three: `unexpected_message` (RFC 8446 §5.1 forbids interleaving) |
//! | a record longer than 2^14 bytes | `RecordOverflow` | all three: `record_overflow` |
//! | the first handshake message is not a ClientHello | `NotClientHello` | all three: `unexpected_message` |
//! | a length that runs past its enclosing structure (message, session id, suites, methods, extension block, extension, name list, name) | `Overrun` | all three: `decode_error` |
//! | an extension block or `server_name` list that does not end where its container ends | `LengthMismatch` | all three: `decode_error` |
//! | an empty `server_name` list | `EmptyServerNameList` | OpenSSL, BoringSSL: `decode_error` |
//! | two **different** `host_name`s in one `server_name` list | `DifferentHostNames` | OpenSSL, BoringSSL: `decode_error` (one entry only); rustls refuses too |
//! | two `server_name` extensions naming different hosts | `DuplicateServerName` | OpenSSL, rustls: `illegal_parameter` (a duplicate extension); BoringSSL: `decode_error` |
//!
//! These two are the rules the engine refuses even with a default backend
//! ([`HelloError::is_ambiguous`]), answering with OpenSSL's alert: Kracauer would have to
//! pick one name, and another reader of the same bytes may pick the other, so the client
//! could be sent to a tenant it did not ask for. The same `host_name` twice is not
//! ambiguous: it is read as that name (and the backend refuses the duplicate as it would
//! anyway).
//!
//! A hello larger than the cap is `Invalid(TooLarge)`: it cannot be named, and goes to
//! the default backend like the rest (the cap is the daemon's `limits.peek_bytes`, up
//! to [`MAX_HELLO_BYTES`]).
//!
//! # Decisions
//! - The first byte decides cheaply: anything but `0x16` (handshake) is `NotTls`, so an
//!   HTTP request or an alert can be tried elsewhere, except an SSLv2-format CLIENT-HELLO
//!   (a 2-byte header with the high bit set, message type 1, a version of major 3), which
//!   is [`TlsPeek::SslV2`]: a hello that cannot carry a name, decided at its 4th byte. A
//!   second byte other than `0x03` is `NotTls` too. Any record version `0x0300..=0x03ff`
//!   is accepted, on every record (RFC 5246 Appendix E.1; RFC 8446 §5.1: the field "MUST
//!   be ignored for all purposes").
//! - Answers are final: once a prefix gives an answer other than `NeedMore`, every longer
//!   prefix gives the same answer. Checks run in wire order and each uses only bytes
//!   already read, and the input is clipped to the cap before parsing. Bytes after the end
//!   of the ClientHello are not examined.
//! - Empty handshake records are skipped (OpenSSL accepts up to 32 of them); each costs 5
//!   bytes of the cap, so skipping them is bounded.
//! - Only `host_name` (type 0) server names count; other name types are skipped. The
//!   name goes through [`HostName::parse`]. A `host_name` that is no valid host name, or
//!   that is a literal address (RFC 6066 §3 forbids them; an IPv4 literal is a name whose
//!   last label is all digits, which no real TLD is), is reported as
//!   `unusable_sni` with `sni: None`: such a hello is routed as one without a name, as
//!   nginx sends a name it does not know to its default server.
//! - ECH (`0xfe0d`): an `outer` ECHClientHello (what a client sends in clear, real or
//!   GREASE) sets `ech_outer`; routing then uses the outer SNI, the public name. An
//!   `inner` one (a split-mode client-facing server forwarding the decrypted inner
//!   hello) is accepted with `ech_outer: false`.
//! - ALPN is kept as one boxed copy of the validated wire `protocol_name_list`
//!   ([`AlpnList`]): one allocation whatever the number of protocols, iterated in place.

mod parse;

use core::fmt;

use crate::name::{HostName, NameError};

/// Default cap on the bytes examined for one ClientHello, record headers included.
pub const DEFAULT_MAX_HELLO_BYTES: usize = 16 * 1024;

/// The largest cap that can matter: a ClientHello of 2^24 − 1 bytes (the handshake
/// length is 24 bits) with its 4-byte header, in records of 2^14 bytes, each with its
/// 5-byte header, rounded up to 2^24 + 2^14.
pub const MAX_HELLO_BYTES: usize = (1 << 24) + (1 << 14);

/// Record content type of handshake records.
const CONTENT_HANDSHAKE: u8 = 0x16;
/// Record content type of alerts.
const CONTENT_ALERT: u8 = 0x15;
/// Alert description `decode_error` (RFC 8446 §6.2).
const ALERT_DECODE_ERROR: u8 = 50;
/// Alert description `illegal_parameter` (RFC 8446 §6.2).
const ALERT_ILLEGAL_PARAMETER: u8 = 47;
/// Alert description `unrecognized_name` (RFC 6066 §3).
const ALERT_UNRECOGNIZED_NAME: u8 = 112;

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
    /// A complete ClientHello, as far as routing reads it.
    Found {
        /// The `host_name` server name, if the client sent a usable one.
        sni: Option<HostName>,
        /// Why the `host_name` the client sent is not used (`sni` is then `None`).
        unusable_sni: Option<SniError>,
        /// The ALPN protocols offered, if the extension was present and well formed.
        alpn: Option<AlpnList>,
        /// The hello carries an outer `encrypted_client_hello` extension (real or GREASE);
        /// `sni` is then the outer, public name.
        ech_outer: bool,
    },
    /// An SSLv2-format ClientHello offering TLS (OpenSSL still serves these with TLS 1.0
    /// to 1.2): it has no extensions, so no name.
    SslV2,
    /// Not a TLS handshake record: another peeker may try.
    NotTls,
    /// TLS-shaped, but not a ClientHello whose name can be read with certainty.
    Invalid(HelloError),
}

/// Why TLS-shaped bytes are not a ClientHello whose name can be read (see the module
/// doc for what servers do with each).
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum HelloError {
    #[error("a record after the first has version 0x{0:04x}, not 0x03xx")]
    RecordVersion(u16),
    #[error("a record of content type {0} sits between handshake records")]
    InterleavedRecord(u8),
    #[error("a record of {0} bytes exceeds 2^14")]
    RecordOverflow(u16),
    #[error("the first handshake message has type {0}, not ClientHello (1)")]
    NotClientHello(u8),
    #[error("the ClientHello does not fit in {cap} bytes")]
    TooLarge { cap: usize },
    #[error("{0} runs past its enclosing structure")]
    Overrun(Field),
    #[error("{0} length does not match its enclosing structure")]
    LengthMismatch(Field),
    #[error("server_name list is empty")]
    EmptyServerNameList,
    #[error("two different host_name server names in one list")]
    DifferentHostNames,
    #[error("two server_name extensions naming different hosts")]
    DuplicateServerName,
}

impl HelloError {
    /// Whether routing this hello anywhere could send the client to a backend it did not
    /// ask for: refused even when there is a default backend.
    pub const fn is_ambiguous(&self) -> bool {
        matches!(self, Self::DifferentHostNames | Self::DuplicateServerName)
    }
}

/// Why a `host_name` the client sent is not used for routing.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum SniError {
    #[error("server name: {0}")]
    Name(#[from] NameError),
    #[error("server name is a literal address (RFC 6066 §3)")]
    AddressLiteral,
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

/// A fatal alert record with `description`, for refusing a client.
///
/// The record version echoes the client's first record version when it is
/// 0x0301..=0x0303, else 0x0303. No version is negotiated yet, so the version the client
/// chose for its own first record is the one it is sure to accept (TLS 1.3 clients ignore
/// the field, RFC 8446 §5.1; OpenSSL servers send such early alerts as 0x0301).
fn fatal_alert(client_prefix: &[u8], description: u8) -> [u8; 7] {
    let version = match client_prefix {
        [CONTENT_HANDSHAKE, 3, minor @ 1..=3, ..] => *minor,
        _ => 3,
    };
    [CONTENT_ALERT, 3, version, 0, 2, 2, description]
}

/// The bytes of a fatal `unrecognized_name` alert record, for refusing a client whose
/// name has no route (or who sent none) when there is no default backend.
pub fn unrecognized_name_alert(client_prefix: &[u8]) -> [u8; 7] {
    fatal_alert(client_prefix, ALERT_UNRECOGNIZED_NAME)
}

/// The bytes of a fatal `decode_error` alert record, for refusing a client whose hello
/// cannot be read to a name when there is no default backend.
pub fn decode_error_alert(client_prefix: &[u8]) -> [u8; 7] {
    fatal_alert(client_prefix, ALERT_DECODE_ERROR)
}

/// The bytes of a fatal `illegal_parameter` alert record, for refusing a client whose
/// hello repeats `server_name` with different names (what OpenSSL answers to a duplicate
/// extension).
pub fn illegal_parameter_alert(client_prefix: &[u8]) -> [u8; 7] {
    fatal_alert(client_prefix, ALERT_ILLEGAL_PARAMETER)
}

/// Reads the ClientHello at the start of `data`, the contiguous bytes received so far.
pub fn peek(data: &[u8], config: &TlsPeekConfig) -> TlsPeek {
    parse::peek(data, config.max_hello_bytes)
}

/// Reads the ClientHello at the start of a bare handshake stream: handshake messages
/// with no record layer around them, as QUIC's CRYPTO frames carry them (RFC 9001 §4).
///
/// The same walk and the same rules as [`peek`], less the record layer's: the first byte
/// must be a ClientHello's message type (anything else is
/// `Invalid(NotClientHello)`, never `NotTls` or `SslV2`), and `max_hello_bytes` counts
/// handshake bytes only.
pub fn peek_handshake(data: &[u8], config: &TlsPeekConfig) -> TlsPeek {
    parse::peek_handshake(data, config.max_hello_bytes)
}

#[cfg(test)]
mod handshake_tests;
#[cfg(test)]
mod lenient_tests;
#[cfg(test)]
mod tests;
