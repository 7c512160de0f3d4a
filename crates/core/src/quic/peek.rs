//! [`InitialPeek`]: the datagrams of one pending QUIC flow in, the ClientHello's name out.
//!
//! The engine hands it each datagram the client sends on a new 4-tuple, in order of
//! arrival, until the answer is final. Per datagram it walks the coalesced packets, opens
//! every Initial with the keys of the client's first Destination Connection ID, feeds the
//! CRYPTO frames to the reassembled stream, and reads the stream with the TLS peeker
//! ([`peek_handshake`]) each time its prefix grows.
//!
//! # Answers
//!
//! | answer | meaning | final |
//! |---|---|---|
//! | [`QuicPeek::NeedMore`] | an Initial was taken; the hello is not complete | no |
//! | [`QuicPeek::Found`] | the hello is complete: name, ALPN, ECH, version, CIDs | yes |
//! | [`QuicPeek::NotQuic`] | the datagram does not start with a long header | no |
//! | [`QuicPeek::Discarded`] | a long header, but no Initial this flow can use, for the reason given; dropped as a server drops it | no |
//! | [`QuicPeek::Invalid`] | the flow's Initials cannot be read to a name | yes |
//!
//! A final answer is given again for every later datagram. The non-final answers leave
//! the peek as it was (but for the budget), so the engine chooses what a datagram that
//! was not taken means: dropped before a flow exists, kept for replay after.
//!
//! # Never stricter than the server
//!
//! What a server discards without closing (RFC 9000 §14.1: an Initial in a datagram under
//! 1200 bytes; RFC 9001 §5.3: a packet that does not authenticate; §12.3: a packet number
//! already seen; §12.2: a packet for another connection ID) is `Discarded`, and the
//! flow goes on. What a server closes the connection for (reserved bits set, a frame an
//! Initial may not carry or that does not parse, a hello its TLS stack refuses) is
//! `Invalid`, as is the client's own CONNECTION_CLOSE. The fixed bit and the DCID's
//! minimum length of 8 are not checked.
//!
//! # Bounds
//!
//! Per pending flow: at most [`QuicPeekConfig::max_datagrams`] datagrams and
//! [`QuicPeekConfig::max_bytes`] bytes of them, and a CRYPTO stream of at most
//! [`QuicPeekConfig::max_hello_bytes`] in at most [`MAX_FRAGMENTS`](super::stream::MAX_FRAGMENTS) pieces. The deadline
//! (T ms) and the global bound are the engine's, which owns the clock and the table.

use crate::name::HostName;
use crate::peek::tls::{
    AlpnList, DEFAULT_MAX_HELLO_BYTES, HelloError, SniError, TlsPeek, TlsPeekConfig, peek_handshake,
};

use super::Version;
use super::frame::{Frame, FrameError, frames};
use super::header::{ConnectionId, HeaderError, LongHeader, Packet, PacketKind, packets};
use super::keys::{Keys, Side};
use super::protect::{OpenError, open};
use super::stream::{CryptoStream, StreamError};

/// Default most datagrams held for one pending flow. Chromium's post-quantum hello
/// takes two; the rest leaves room for retransmissions and coalesced 0-RTT.
pub const DEFAULT_MAX_DATAGRAMS: usize = 8;
/// Default most datagram bytes held for one pending flow.
pub const DEFAULT_MAX_BYTES: usize = 16 * 1024;
/// A client's datagrams that carry Initial packets are at least this long; a server
/// discards an Initial in a shorter one (RFC 9000 §14.1).
pub const MIN_INITIAL_DATAGRAM: usize = 1200;

/// Bounds of one [`InitialPeek`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct QuicPeekConfig {
    /// Datagrams taken at most; the next one is `Invalid(TooManyDatagrams)`.
    pub max_datagrams: usize,
    /// Datagram bytes taken at most; a datagram that would pass it is
    /// `Invalid(TooManyBytes)`.
    pub max_bytes: usize,
    /// The CRYPTO stream's cap: handshake bytes of the hello at most.
    pub max_hello_bytes: usize,
}

impl Default for QuicPeekConfig {
    fn default() -> Self {
        Self {
            max_datagrams: DEFAULT_MAX_DATAGRAMS,
            max_bytes: DEFAULT_MAX_BYTES,
            max_hello_bytes: DEFAULT_MAX_HELLO_BYTES,
        }
    }
}

/// What the datagrams so far say.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum QuicPeek {
    NeedMore,
    Found(Found),
    NotQuic,
    Discarded(Discard),
    Invalid(QuicError),
}

/// A complete ClientHello from a flow's Initials.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Found {
    pub version: Version,
    /// The client's first Destination Connection ID: the Initial keys derive from it.
    pub dcid: ConnectionId,
    /// The client's Source Connection ID: a server's packets are addressed to it.
    pub scid: ConnectionId,
    /// The `host_name` server name, if the client sent a usable one.
    pub sni: Option<HostName>,
    /// Why the `host_name` the client sent is not used (`sni` is then `None`).
    pub unusable_sni: Option<SniError>,
    /// The ALPN protocols offered, if the extension was present and well formed.
    pub alpn: Option<AlpnList>,
    /// The hello carries an outer `encrypted_client_hello` extension.
    pub ech_outer: bool,
}

/// Why a datagram's long-header packets gave this flow nothing (the first reason met).
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum Discard {
    #[error("long header: {0}")]
    Header(HeaderError),
    #[error("a Version Negotiation packet (a server's)")]
    VersionNegotiation,
    #[error("a Retry packet (a server's)")]
    Retry,
    #[error("QUIC version 0x{0:08x}, which cannot be read")]
    UnsupportedVersion(u32),
    #[error("no Initial packet (0-RTT or Handshake only)")]
    NoInitial,
    #[error("an Initial in a {0}-byte datagram (under 1200)")]
    SmallDatagram(usize),
    #[error("an Initial of another connection (version or destination connection ID)")]
    OtherConnection,
    #[error("an Initial that cannot be opened: {0}")]
    Open(OpenError),
    #[error("packet number {0} opened already")]
    Duplicate(u64),
}

/// Why a flow's Initials cannot be read to a name.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum QuicError {
    #[error("more than {max} datagrams without a complete hello")]
    TooManyDatagrams { max: usize },
    #[error("more than {max} bytes of datagrams without a complete hello")]
    TooManyBytes { max: usize },
    #[error("reserved bits set in an Initial's first byte")]
    ReservedBits,
    #[error("Initial frames: {0}")]
    Frame(FrameError),
    #[error("CRYPTO stream: {0}")]
    Crypto(StreamError),
    #[error("the client closed the connection (error 0x{error_code:x})")]
    ClientClosed { error_code: u64 },
    #[error("ClientHello: {0}")]
    Hello(HelloError),
}

/// What is known of the client's connection once one Initial is opened.
#[derive(Debug, Clone)]
struct Flight {
    version: Version,
    dcid: ConnectionId,
    scid: ConnectionId,
    keys: Keys,
    largest_pn: Option<u64>,
    /// Packet numbers 0 to 63 opened so far (clients start at 0; RFC 9000 §12.3).
    seen: u64,
    crypto: CryptoStream,
}

/// The ClientHello peek of one pending QUIC flow (see the module doc).
#[derive(Debug, Clone)]
pub struct InitialPeek {
    config: QuicPeekConfig,
    flight: Option<Flight>,
    datagrams: usize,
    bytes: usize,
    done: Option<QuicPeek>,
}

/// What one packet did.
enum Step {
    Taken,
    Dropped(Discard),
    Final(QuicPeek),
}

impl InitialPeek {
    /// A peek that holds nothing yet.
    pub fn new(config: QuicPeekConfig) -> Self {
        Self {
            config,
            flight: None,
            datagrams: 0,
            bytes: 0,
            done: None,
        }
    }

    /// Datagrams taken so far.
    pub fn datagrams(&self) -> usize {
        self.datagrams
    }

    /// Datagram bytes taken so far.
    pub fn bytes(&self) -> usize {
        self.bytes
    }

    /// CRYPTO stream bytes held: the heap this peek costs beyond its fixed size.
    pub fn held(&self) -> usize {
        self.flight.as_ref().map_or(0, |f| f.crypto.held())
    }

    /// The client's version, first DCID and SCID, once an Initial has been opened: what
    /// a refusal needs ([`super::refuse::unrecognized_name`]).
    pub fn client(&self) -> Option<(Version, &ConnectionId, &ConnectionId)> {
        self.flight.as_ref().map(|f| (f.version, &f.dcid, &f.scid))
    }

    /// Takes the client's next datagram.
    pub fn push(&mut self, datagram: &[u8]) -> QuicPeek {
        if let Some(done) = &self.done {
            return done.clone();
        }
        if self.datagrams >= self.config.max_datagrams {
            let max = self.config.max_datagrams;
            return self.finish(QuicPeek::Invalid(QuicError::TooManyDatagrams { max }));
        }
        if self.bytes.saturating_add(datagram.len()) > self.config.max_bytes {
            let max = self.config.max_bytes;
            return self.finish(QuicPeek::Invalid(QuicError::TooManyBytes { max }));
        }
        self.datagrams += 1;
        self.bytes += datagram.len();

        if datagram.is_empty() {
            return QuicPeek::NotQuic;
        }
        let mut scratch = Vec::new();
        let mut taken = false;
        let mut discard = None;
        for (i, packet) in packets(datagram).enumerate() {
            let step = match packet {
                Ok(Packet::Short(_)) | Err(HeaderError::Empty) if i == 0 => {
                    return QuicPeek::NotQuic;
                }
                // What follows the long-header packets belongs to no Initial.
                Ok(Packet::Short(_)) => break,
                Err(e) => Step::Dropped(Discard::Header(e)),
                Ok(Packet::Long(header)) => self.packet(&header, datagram.len(), &mut scratch),
            };
            match step {
                Step::Taken => taken = true,
                Step::Dropped(d) => {
                    discard.get_or_insert(d);
                }
                Step::Final(answer) => return self.finish(answer),
            }
        }
        match discard {
            Some(d) if !taken => QuicPeek::Discarded(d),
            _ => QuicPeek::NeedMore,
        }
    }

    fn finish(&mut self, answer: QuicPeek) -> QuicPeek {
        if let Some(f) = &mut self.flight {
            // The stream is read for the last time: give its memory back now.
            f.crypto = CryptoStream::new(0);
        }
        self.done = Some(answer.clone());
        answer
    }

    fn packet(
        &mut self,
        header: &LongHeader<'_>,
        datagram_len: usize,
        scratch: &mut Vec<u8>,
    ) -> Step {
        let version = match header.kind() {
            PacketKind::Initial(v) => v,
            PacketKind::VersionNegotiation => return Step::Dropped(Discard::VersionNegotiation),
            PacketKind::Retry(_) => return Step::Dropped(Discard::Retry),
            PacketKind::UnknownVersion(v) => return Step::Dropped(Discard::UnsupportedVersion(v)),
            PacketKind::ZeroRtt(_) | PacketKind::Handshake(_) => {
                return Step::Dropped(Discard::NoInitial);
            }
        };
        if datagram_len < MIN_INITIAL_DATAGRAM {
            return Step::Dropped(Discard::SmallDatagram(datagram_len));
        }
        if let Some(f) = &self.flight {
            if f.version != version || f.dcid.as_bytes() != header.dcid() {
                return Step::Dropped(Discard::OtherConnection);
            }
        }
        // Keys for the first Initial; later ones use the flight's.
        let fresh = match &self.flight {
            None => Some(Keys::initial(version, header.dcid(), Side::Client)),
            Some(_) => None,
        };
        let (keys, largest_pn) = match (&self.flight, &fresh) {
            (Some(f), _) => (&f.keys, f.largest_pn),
            (None, Some(k)) => (k, None),
            (None, None) => return Step::Dropped(Discard::NoInitial),
        };
        if scratch.len() < header.packet().len() {
            scratch.resize(header.packet().len(), 0);
        }
        let opened = match open(keys, header, largest_pn, scratch) {
            Ok(opened) => opened,
            Err(e) => return Step::Dropped(Discard::Open(e)),
        };
        let pn = opened.packet_number;
        let flight = match &mut self.flight {
            Some(f) => f,
            None => {
                let (Some(dcid), Some(scid)) = (
                    ConnectionId::new(header.dcid()),
                    ConnectionId::new(header.scid()),
                ) else {
                    return Step::Dropped(Discard::Header(HeaderError::CidTooLong(0)));
                };
                self.flight.insert(Flight {
                    version,
                    dcid,
                    scid,
                    keys: fresh
                        .unwrap_or_else(|| Keys::initial(version, header.dcid(), Side::Client)),
                    largest_pn: None,
                    seen: 0,
                    crypto: CryptoStream::new(self.config.max_hello_bytes),
                })
            }
        };
        if pn < 64 && flight.seen & (1 << pn) != 0 {
            return Step::Dropped(Discard::Duplicate(pn));
        }
        if pn < 64 {
            flight.seen |= 1 << pn;
        }
        flight.largest_pn = Some(flight.largest_pn.map_or(pn, |l| l.max(pn)));
        if opened.first_byte & 0x0c != 0 {
            return Step::Final(QuicPeek::Invalid(QuicError::ReservedBits));
        }

        let mut grew = false;
        for frame in frames(opened.payload) {
            match frame {
                Err(e) => return Step::Final(QuicPeek::Invalid(QuicError::Frame(e))),
                Ok(Frame::Crypto { offset, data }) => match flight.crypto.insert(offset, data) {
                    Ok(inserted) => grew |= inserted == super::stream::Inserted::PrefixGrew,
                    Err(e) => return Step::Final(QuicPeek::Invalid(QuicError::Crypto(e))),
                },
                Ok(Frame::ConnectionClose { error_code, .. }) => {
                    return Step::Final(QuicPeek::Invalid(QuicError::ClientClosed { error_code }));
                }
                Ok(Frame::Padding(_) | Frame::Ping | Frame::Ack) => {}
            }
        }
        if !grew {
            return Step::Taken;
        }
        let config = TlsPeekConfig {
            max_hello_bytes: self.config.max_hello_bytes,
        };
        match peek_handshake(flight.crypto.contiguous(), &config) {
            TlsPeek::NeedMore => Step::Taken,
            TlsPeek::Found {
                sni,
                unusable_sni,
                alpn,
                ech_outer,
            } => Step::Final(QuicPeek::Found(Found {
                version,
                dcid: flight.dcid.clone(),
                scid: flight.scid.clone(),
                sni,
                unusable_sni,
                alpn,
                ech_outer,
            })),
            TlsPeek::Invalid(e) => Step::Final(QuicPeek::Invalid(QuicError::Hello(e))),
            // A bare handshake stream is never taken for another protocol or SSLv2.
            TlsPeek::NotTls | TlsPeek::SslV2 => Step::Final(QuicPeek::Invalid(QuicError::Hello(
                HelloError::NotClientHello(
                    flight.crypto.contiguous().first().copied().unwrap_or(0),
                ),
            ))),
        }
    }
}
