//! The ClientHello parser behind [`super::peek`]: a cursor over the handshake stream that
//! steps over record headers in place, and the walk over the hello's fields.

use super::{AlpnList, CONTENT_HANDSHAKE, Field, HelloError, SniError, TlsPeek};
use crate::name::HostName;

/// Handshake message type of ClientHello.
pub(super) const HANDSHAKE_CLIENT_HELLO: u8 = 1;
/// Bytes of a record header: type, version, length.
const RECORD_HEADER_LEN: usize = 5;
/// Bytes of a handshake message header: type, 24-bit length.
const HANDSHAKE_HEADER_LEN: usize = 4;
/// Largest record plaintext (RFC 8446 §5.1).
pub(super) const MAX_RECORD_LEN: usize = 1 << 14;
/// Longest name `HostName::parse` may accept: 253 bytes plus one trailing dot.
const MAX_SNI_LEN: usize = crate::name::MAX_NAME_LEN + 1;

/// Extension types this peeker reads.
pub(super) mod ext {
    pub const SERVER_NAME: u16 = 0;
    pub const ALPN: u16 = 16;
    pub const ENCRYPTED_CLIENT_HELLO: u16 = 0xfe0d;
}

/// See [`super::peek`].
pub(super) fn peek(data: &[u8], cap: usize) -> TlsPeek {
    let clipped = &data[..data.len().min(cap)];
    let too_large = || TlsPeek::Invalid(HelloError::TooLarge { cap });
    match first_bytes(clipped) {
        First::NotTls => return TlsPeek::NotTls,
        First::SslV2 => return TlsPeek::SslV2,
        First::NeedMore if data.len() >= cap => return too_large(),
        First::NeedMore => return TlsPeek::NeedMore,
        First::Handshake => {}
    }
    let parser = Parser {
        r: Reader {
            data: clipped,
            pos: 0,
            left_in_record: 0,
            consumed: 0,
        },
        cap,
        record_header_len: RECORD_HEADER_LEN,
    };
    parser.run(data.len())
}

/// See [`super::peek_handshake`]: the same walk over a bare handshake stream, whose one
/// "record" never ends.
pub(super) fn peek_handshake(data: &[u8], cap: usize) -> TlsPeek {
    let clipped = &data[..data.len().min(cap)];
    let parser = Parser {
        r: Reader {
            data: clipped,
            pos: 0,
            left_in_record: usize::MAX,
            consumed: 0,
        },
        cap,
        record_header_len: 0,
    };
    parser.run(data.len())
}

enum First {
    NotTls,
    SslV2,
    NeedMore,
    Handshake,
}

/// The cheap verdict from the first bytes: a handshake record of major version 3, an
/// SSLv2-format CLIENT-HELLO offering SSL 3 or TLS (2-byte header with the high bit set,
/// message type 1, version major 3), or neither.
fn first_bytes(data: &[u8]) -> First {
    match data {
        [] => First::NeedMore,
        [CONTENT_HANDSHAKE] => First::NeedMore,
        [CONTENT_HANDSHAKE, 3, ..] => First::Handshake,
        [CONTENT_HANDSHAKE, ..] => First::NotTls,
        [b0, rest @ ..] if b0 & 0x80 != 0 => match rest {
            [] | [_] | [_, 1] => First::NeedMore,
            [_, 1, 3, ..] => First::SslV2,
            _ => First::NotTls,
        },
        _ => First::NotTls,
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
    /// Reads the header of the next non-empty record, checking each header byte by byte
    /// as it arrives. Empty records are stepped over (each costs 5 bytes of the cap).
    fn next_record(&mut self) -> Result<(), Stop> {
        loop {
            let header = self.data.get(self.pos..).unwrap_or_default();
            let header = &header[..header.len().min(RECORD_HEADER_LEN)];
            if let Some(&t) = header.first() {
                if t != CONTENT_HANDSHAKE {
                    return Err(HelloError::InterleavedRecord(t).into());
                }
            }
            if let [_, major, minor, ..] = *header {
                if major != 3 {
                    let version = u16::from_be_bytes([major, minor]);
                    return Err(HelloError::RecordVersion(version).into());
                }
            }
            let [_, _, _, hi, lo] = *header else {
                return Err(Stop::NeedMore);
            };
            let len = u16::from_be_bytes([hi, lo]);
            if usize::from(len) > MAX_RECORD_LEN {
                return Err(HelloError::RecordOverflow(len).into());
            }
            self.pos += RECORD_HEADER_LEN;
            self.left_in_record = usize::from(len);
            if len > 0 {
                return Ok(());
            }
        }
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
    /// Bytes of the first record's header counted against the cap (0 for a bare
    /// handshake stream).
    record_header_len: usize,
}

/// Where a field was found, to copy it out once the hello is known to be complete.
#[derive(Clone, Copy)]
struct Span<'a> {
    at: Reader<'a>,
    len: usize,
}

impl<'a> Span<'a> {
    /// Copies the field into `buf` (which must be long enough); the bytes were read once
    /// already, so this cannot run out.
    fn copy_into(mut self, buf: &mut [u8]) -> Result<&[u8], Stop> {
        let mut filled = 0;
        let out = buf.get_mut(..self.len).ok_or(Stop::NeedMore)?;
        self.at.advance(self.len, |piece| {
            out[filled..filled + piece.len()].copy_from_slice(piece);
            filled += piece.len();
        })?;
        Ok(&buf[..filled])
    }
}

impl<'a> Parser<'a> {
    /// Reads the hello; `received` is the length of the input before it was clipped to
    /// the cap.
    fn run(mut self, received: usize) -> TlsPeek {
        let cap = self.cap;
        match self.client_hello() {
            Ok(found) => found,
            Err(Stop::Invalid(e)) => TlsPeek::Invalid(e),
            Err(Stop::NeedMore) if received >= cap => {
                TlsPeek::Invalid(HelloError::TooLarge { cap })
            }
            Err(Stop::NeedMore) => TlsPeek::NeedMore,
        }
    }

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
        if len + HANDSHAKE_HEADER_LEN + self.record_header_len > self.cap {
            return Err(HelloError::TooLarge { cap: self.cap }.into());
        }
        let end = HANDSHAKE_HEADER_LEN + len;

        // legacy_version, random, session id, suites, methods: the server's to judge;
        // only their lengths are followed.
        self.skip(2, end, Field::Version)?;
        self.skip(32, end, Field::Random)?;
        let sid_len = self.uint::<1>(end, Field::SessionId)?;
        self.skip(sid_len, end, Field::SessionId)?;
        let suites_len = self.uint::<2>(end, Field::CipherSuites)?;
        self.skip(suites_len, end, Field::CipherSuites)?;
        let methods_len = self.uint::<1>(end, Field::CompressionMethods)?;
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
        while self.r.consumed < end {
            let ext_type = self.uint::<2>(end, Field::ExtensionHeader)? as u16;
            let ext_len = self.uint::<2>(end, Field::ExtensionHeader)?;
            self.fits(ext_len, end, Field::Extension)?;
            let ext_end = self.r.consumed + ext_len;
            let body = self.r;
            match ext_type {
                ext::SERVER_NAME => hello.sni = self.server_name(ext_end, hello.sni)?,
                _ => self.r.skip(ext_len)?,
            }
            // Read again from a copy, now that every byte is known to be there: a
            // malformed ALPN or ECH extension only means it is not reported.
            let mut sub = Parser {
                r: body,
                cap: self.cap,
                record_header_len: self.record_header_len,
            };
            match ext_type {
                ext::ALPN if hello.alpn.is_none() => hello.alpn = sub.alpn(ext_end).ok(),
                ext::ENCRYPTED_CLIENT_HELLO => {
                    hello.ech_outer |= sub.ech(ext_end).unwrap_or(false);
                }
                _ => {}
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

    /// The `server_name` extension (RFC 6066 §3): the `host_name` entry, if any, after
    /// `seen`, the one an earlier `server_name` extension gave.
    fn server_name(
        &mut self,
        end: usize,
        seen: Option<Span<'a>>,
    ) -> Result<Option<Span<'a>>, Stop> {
        if self.list_filling(end, Field::ServerNameList)? == 0 {
            return Err(HelloError::EmptyServerNameList.into());
        }
        let mut host = None;
        while self.r.consumed < end {
            let name_type = self.uint::<1>(end, Field::ServerName)?;
            let len = self.uint::<2>(end, Field::ServerName)?;
            let name = self.span(len, end, Field::ServerName)?;
            if name_type != 0 {
                continue;
            }
            match host {
                Some(first) if !same_name(first, name)? => {
                    return Err(HelloError::DifferentHostNames.into());
                }
                Some(_) => {}
                None => host = Some(name),
            }
        }
        match (seen, host) {
            (Some(first), Some(name)) if !same_name(first, name)? => {
                Err(HelloError::DuplicateServerName.into())
            }
            (Some(first), _) => Ok(Some(first)),
            (None, host) => Ok(host),
        }
    }

    /// The ALPN extension (RFC 7301 §3.1): where the protocol list is, if well formed.
    fn alpn(&mut self, end: usize) -> Result<Span<'a>, Stop> {
        let len = self.list_filling(end, Field::Extension)?;
        if len == 0 {
            return Err(HelloError::LengthMismatch(Field::Extension).into());
        }
        let at = self.r;
        while self.r.consumed < end {
            let proto_len = self.uint::<1>(end, Field::Extension)?;
            if proto_len == 0 {
                return Err(HelloError::LengthMismatch(Field::Extension).into());
            }
            self.skip(proto_len, end, Field::Extension)?;
        }
        Ok(Span { at, len })
    }

    /// The `encrypted_client_hello` extension: whether it is a well-formed outer one.
    fn ech(&mut self, end: usize) -> Result<bool, Stop> {
        match self.uint::<1>(end, Field::Extension)? {
            // outer: cipher suite (KDF, AEAD), config_id, enc<0..2^16-1>, payload<1..2^16-1>
            0 => {
                self.skip(5, end, Field::Extension)?;
                let enc_len = self.uint::<2>(end, Field::Extension)?;
                self.skip(enc_len, end, Field::Extension)?;
                let payload_len = self.list_filling(end, Field::Extension)?;
                Ok(payload_len > 0)
            }
            // inner (nothing more), or an unknown type.
            _ => Ok(false),
        }
    }
}

/// Whether two `host_name`s are the same name: equal but for ASCII case and one trailing
/// dot. Names too long to be host names are compared as different.
fn same_name(a: Span<'_>, b: Span<'_>) -> Result<bool, Stop> {
    if a.len > MAX_SNI_LEN || b.len > MAX_SNI_LEN {
        return Ok(false);
    }
    let (mut abuf, mut bbuf) = ([0u8; MAX_SNI_LEN], [0u8; MAX_SNI_LEN]);
    let a = a.copy_into(&mut abuf)?;
    let b = b.copy_into(&mut bbuf)?;
    let trim = |s: &[u8]| -> usize { s.len() - usize::from(s.ends_with(b".")) };
    let (a, b) = (&a[..trim(a)], &b[..trim(b)]);
    Ok(a.eq_ignore_ascii_case(b))
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
        let (sni, unusable_sni) = match self.sni {
            None => (None, None),
            Some(span) if span.len > MAX_SNI_LEN => {
                (None, Some(SniError::Name(crate::name::NameError::TooLong)))
            }
            Some(span) => {
                let mut buf = [0u8; MAX_SNI_LEN];
                match HostName::parse(span.copy_into(&mut buf)?) {
                    Err(e) => (None, Some(SniError::Name(e))),
                    Ok(name) if is_address_literal(&name) => (None, Some(SniError::AddressLiteral)),
                    Ok(name) => (Some(name), None),
                }
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
            unusable_sni,
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
