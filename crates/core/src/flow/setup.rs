//! The client's segments while Kracauer is its endpoint: the handshake, the peek, and the
//! wait for the backend (docs/architecture.md, "The splice", steps 1 to 4).
//!
//! Kracauer answered the SYN itself, so until the splice it plays the server: it checks
//! the client's ACK against its own ISN, answers a retransmitted SYN with the identical
//! SYN-ACK, and collects the client's first bytes by sequence number without
//! acknowledging them. When the contiguous bytes name the host (or show that nothing
//! will), the step says so and the engine chooses the backend.
//!
//! RFC 5961, where Kracauer is the endpoint: a RST resets only at exactly the next
//! sequence expected (what Kracauer acknowledged, or what it holds); any other RST inside
//! the window it announced, a SYN once the handshake is over, and an ACK field that
//! acknowledges what Kracauer never sent get a challenge ACK ([`SetupStep::Challenge`],
//! rate-limited by the engine) and are dropped. Only in the handshake does a wrong ACK
//! field get a RST (RFC 9293, SYN-RECEIVED).
//!
//! Custody: a peek that stalls with bytes it has not acknowledged (a client whose Nagle
//! holds the rest of its hello until the first segment is acknowledged) is acknowledged
//! by Kracauer after the engine's custody delay ([`Peek::take_custody`]). From then on
//! those bytes are Kracauer's to deliver: they travel with the flow into `Connect` and
//! the splice (`flow/custody.rs`).
use super::connect::{Connect, SynTimers};
use super::spliced::{Refusal, Refused};
use super::{Conn, Flow, Phase};
use crate::base::{DropReason, Outcome, Protocol};
use crate::name::HostName;
use crate::peek::http::{self, HttpError, HttpHost, HttpPeek, HttpPeeker};
use crate::peek::tls::{self, HelloError, TlsPeek, TlsPeekConfig};
use crate::route::Candidates;
use crate::tcp::reasm::{Inserted, PeekBuffer};
use crate::tcp::seg::SegInfo;
use crate::time::Time;

/// Peeking: the client's bytes so far.
#[derive(Debug)]
pub struct Peek {
    pub buf: PeekBuffer,
    /// Bytes from the start of the stream that Kracauer acknowledged itself (custody).
    pub acked: u32,
    /// When the last new byte arrived (or the peek began): the custody delay counts from
    /// here.
    pub progress_at: Time,
}

/// The window Kracauer announced in its SYN-ACK (unscaled, RFC 7323): what a client may
/// send past the sequence Kracauer acknowledges.
pub const ANNOUNCED_WINDOW: u32 = 65_535;

/// What the engine lends a flow for one client segment.
#[derive(Debug, Clone, Copy)]
pub struct PeekLimits {
    /// Most bytes one flow peeks at.
    pub cap: usize,
    /// Peek-buffer bytes the engine may still hand out.
    pub budget: usize,
    /// The engine's time.
    pub now: Time,
}

/// A client segment's effect while the flow is being set up.
#[derive(Debug, PartialEq, Eq)]
pub struct Setup {
    /// Part of the segment was refused and is counted under this reason (the client
    /// sends it again); the rest of the step still stands.
    pub counted: Option<DropReason>,
    pub step: SetupStep,
}

/// What to do about a client segment while the flow is being set up.
#[derive(Debug, PartialEq, Eq)]
pub enum SetupStep {
    /// Used; nothing to send.
    Consumed,
    /// Dropped and counted.
    Drop(DropReason),
    /// Dropped and counted, and the segment answered with a RST of its own.
    DropWithRst(DropReason),
    /// The client retransmitted its SYN: send the identical SYN-ACK.
    SynAck,
    /// The client sent again bytes Kracauer acknowledged (its ACK was lost): acknowledge
    /// them again.
    Ack,
    /// RFC 5961: answer with a challenge ACK (the engine limits how many it sends); the
    /// segment is dropped and counted under the reason, if any (a duplicate of the
    /// flow's own SYN is not counted).
    Challenge(Option<DropReason>),
    /// The flow ends; `reset` sends the client a RST first.
    Finish { outcome: Outcome, reset: bool },
    /// The contiguous bytes named the host (`None`: a complete hello or request without a
    /// usable name). The engine routes it by name, else to the default backend, else
    /// refuses it as an unknown name.
    Named(Option<HostName>),
    /// The bytes cannot be named. The engine routes them to the default backend as they
    /// are (unless [`Unnamed::Ambiguous`]), else answers as [`Unnamed::refusal`] says.
    Unnamed(Unnamed),
}

/// Why a flow's first bytes name no host (architecture.md, The splice, step 3).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Unnamed {
    /// Not the port's protocol at all, or nothing at all before the client's FIN.
    NotProtocol,
    /// The protocol, but malformed where the name is read.
    Malformed,
    /// The client closed (FIN) before its hello or head was complete.
    Truncated,
    /// Longer than the peek cap before the name could be read.
    TooLarge,
    /// The client stopped sending before the name could be read: it retransmits bytes
    /// already held (it waits for an acknowledgement, which a peek gives only by taking
    /// custody) with at least [`STALL_MIN_BYTES`] held and none acknowledged. With
    /// custody off, a hello or head larger than the client's initial congestion window
    /// ends here; with it on, custody acknowledges the flight before the client's
    /// retransmission timer fires.
    Stalled,
    /// Names that disagree (two different TLS `host_name`s in one list): refused even
    /// with a default backend, since choosing one could send the client to a tenant it did
    /// not ask for.
    Ambiguous,
    /// Two TLS `server_name` extensions naming different hosts: refused like
    /// [`Unnamed::Ambiguous`], with the alert OpenSSL gives a duplicate extension.
    DuplicateServerName,
}

/// Least contiguous bytes held before a retransmission of held bytes counts as
/// [`Unnamed::Stalled`]: below it, a retransmission is a loss or a slow writer (a person
/// typing a request), never a full initial window.
pub const STALL_MIN_BYTES: usize = 4096;

impl Unnamed {
    /// Whether the default backend may take these bytes.
    pub const fn may_default(self) -> bool {
        !matches!(self, Self::Ambiguous | Self::DuplicateServerName)
    }

    /// The answer without a default backend: `None` is a RST (bytes of no protocol).
    pub const fn refusal(self) -> Option<Refusal> {
        match self {
            Self::NotProtocol => None,
            Self::Malformed | Self::Truncated | Self::Ambiguous => Some(Refusal::Malformed),
            Self::TooLarge | Self::Stalled => Some(Refusal::TooLarge),
            Self::DuplicateServerName => Some(Refusal::DuplicateExtension),
        }
    }

    /// Snake-case name for logs.
    pub const fn name(self) -> &'static str {
        match self {
            Self::NotProtocol => "not_protocol",
            Self::Malformed => "malformed",
            Self::Truncated => "truncated",
            Self::TooLarge => "too_large",
            Self::Stalled => "stalled",
            Self::Ambiguous => "ambiguous",
            Self::DuplicateServerName => "duplicate_server_name",
        }
    }
}

/// What the peeker made of the bytes so far.
enum Peeked {
    NeedMore,
    Name(Option<HostName>),
    Unnamed(Unnamed),
}

impl Flow {
    /// A client segment for a flow in `Handshake`, `Peek` or `Connect`.
    pub fn client_setup(self, seg: &SegInfo, payload: &[u8], limits: PeekLimits) -> (Self, Setup) {
        let Flow {
            protocol,
            created,
            last_seen,
            armed,
            mut conn,
            phase,
            peek_end,
        } = self;
        let mut counted = None;
        let (phase, step) = setup_step(
            protocol,
            &mut conn,
            phase,
            seg,
            payload,
            limits,
            &mut counted,
        );
        let flow = Flow {
            protocol,
            created,
            last_seen,
            armed,
            conn,
            phase,
            peek_end,
        };
        (flow, Setup { counted, step })
    }
}

fn setup_step(
    protocol: Protocol,
    conn: &mut Conn,
    phase: Phase,
    seg: &SegInfo,
    payload: &[u8],
    limits: PeekLimits,
    counted: &mut Option<DropReason>,
) -> (Phase, SetupStep) {
    use DropReason as D;
    let (acked, contiguous, furthest) = held(&phase);
    let base = conn.c_isn + 1;
    if seg.rst() {
        // RFC 5961 §3.2: only a RST at exactly the next expected sequence resets: what
        // Kracauer acknowledged (a RST answering a challenge ACK), or right after the
        // bytes it holds. Behind a hole (a lost segment) the client's next sequence
        // sits exactly after the furthest byte received.
        if [acked, contiguous, furthest].contains(&(seg.seq - base)) {
            let finish = SetupStep::Finish {
                outcome: Outcome::ClientReset,
                reset: false,
            };
            return (phase, finish);
        }
        // Inside the window Kracauer announced: a challenge ACK, which the real client
        // answers with a RST at the exact sequence. Outside: dropped silently.
        let offset = seg.seq - (base + acked);
        if offset < ANNOUNCED_WINDOW && !matches!(phase, Phase::Handshake) {
            return (phase, SetupStep::Challenge(Some(D::ClientOutOfWindow)));
        }
        return (phase, SetupStep::Drop(D::ClientOutOfWindow));
    }
    if seg.syn() {
        if matches!(phase, Phase::Handshake) {
            if seg.seq == conn.c_isn && !seg.ack_flag() {
                return (phase, SetupStep::SynAck);
            }
            return (phase, SetupStep::Drop(D::ClientOutOfWindow));
        }
        // RFC 5961 §4: a SYN on a synchronized connection gets a challenge ACK; a client
        // that really started over answers it with a RST, and its next SYN starts fresh.
        // A duplicate of the flow's own SYN is answered the same way, but is no fault.
        let fault = (seg.seq != conn.c_isn || seg.ack_flag()).then_some(D::ClientOutOfWindow);
        return (phase, SetupStep::Challenge(fault));
    }
    if !seg.ack_flag() {
        return (phase, SetupStep::Drop(D::ClientBadFlags));
    }
    if seg.ack != conn.k_isn + 1 {
        // Kracauer has sent nothing but its SYN: any other ACK number acknowledges bytes
        // never sent. In the handshake that is answered with a RST (RFC 9293); once
        // established, RFC 5961 §5.2 asks for a challenge ACK and the segment, data and
        // all, is dropped (blind data injection).
        return match phase {
            Phase::Handshake => (phase, SetupStep::DropWithRst(D::ClientOutOfWindow)),
            _ => (phase, SetupStep::Challenge(Some(D::ClientOutOfWindow))),
        };
    }
    if let Some((tsval, _)) = seg.options.timestamps {
        if conn.client.timestamps {
            conn.client_tsval = tsval;
        }
    }
    conn.client_window = seg.window;
    let mut phase = match phase {
        // The handshake's ACK: the client is established, and peeking begins.
        Phase::Handshake => Phase::Peek(Box::new(Peek::new(limits.now))),
        other => other,
    };
    if !payload.is_empty() {
        let offset = (seg.seq - base) as i32;
        let (inserted, buf) = match &mut phase {
            Phase::Peek(p) => {
                let inserted = insert(&mut p.buf, offset, payload, limits);
                if matches!(inserted, Ok(Inserted::PrefixGrew | Inserted::Kept)) {
                    p.progress_at = limits.now;
                }
                (inserted, Some(&p.buf))
            }
            Phase::Connect(c) => (insert(&mut c.buf, offset, payload, limits), None),
            _ => (Ok(Inserted::Nothing), None),
        };
        let within_acked =
            offset >= 0 && (offset as u64) + payload.len() as u64 <= u64::from(acked);
        match (inserted, buf) {
            (Err(reason), _) => *counted = Some(reason),
            (Ok(Inserted::TooFragmented), _) => *counted = Some(D::ClientPeekHoles),
            // Only a grown prefix gives the peeker anything new to read; while connecting
            // the name is already known.
            (Ok(Inserted::PrefixGrew), Some(buf)) => {
                match peek(protocol, buf.contiguous(), limits.cap) {
                    Peeked::NeedMore => {}
                    Peeked::Unnamed(why) => return (phase, SetupStep::Unnamed(why)),
                    Peeked::Name(name) => return (phase, SetupStep::Named(name)),
                }
            }
            // Bytes Kracauer acknowledged, sent again: its ACK was lost.
            (Ok(Inserted::Nothing), _) if within_acked && !seg.fin() => {
                return (phase, SetupStep::Ack);
            }
            (Ok(Inserted::Nothing), Some(buf))
                if acked == 0 && stalled(buf, offset, payload.len()) =>
            {
                return (phase, SetupStep::Unnamed(Unnamed::Stalled));
            }
            _ => {}
        }
    }
    if seg.fin() {
        // A FIN right behind every byte the client sent, with the host still not named:
        // it never will be. A FIN behind a hole, or once the name is known, is left to
        // the client to retransmit (it is not acknowledged).
        if let Phase::Peek(p) = &phase {
            let held = p.buf.contiguous().len();
            let received_end = base + held as u32;
            if seg.seq + seg.payload_len == received_end {
                let why = if held == 0 {
                    Unnamed::NotProtocol
                } else {
                    Unnamed::Truncated
                };
                return (phase, SetupStep::Unnamed(why));
            }
        }
    }
    (phase, SetupStep::Consumed)
}

/// Whether a segment that brought nothing new shows a client waiting for an
/// acknowledgement: all of it lies inside the held bytes, which have no hole and are at
/// least [`STALL_MIN_BYTES`] long (see [`Unnamed::Stalled`]).
fn stalled(buf: &PeekBuffer, offset: i32, len: usize) -> bool {
    let held = buf.contiguous().len();
    held >= STALL_MIN_BYTES
        && buf.held() == held
        && offset >= 0
        && (offset as usize).saturating_add(len) <= held
}

/// Bytes of the client's stream Kracauer acknowledged, held without a hole, and held up
/// to the furthest byte.
fn held(phase: &Phase) -> (u32, u32, u32) {
    let (buf, acked) = match phase {
        Phase::Peek(p) => (&p.buf, p.acked),
        Phase::Connect(c) => (&c.buf, c.acked),
        _ => return (0, 0, 0),
    };
    (acked, buf.contiguous().len() as u32, buf.held() as u32)
}

/// Adds client bytes to a peek buffer, unless the buffer would have to grow by more than
/// the engine's peek memory has left: all peek buffers together never hold more than the
/// engine's `max_peek_bytes` (the client sends the refused bytes again).
fn insert(
    buf: &mut PeekBuffer,
    offset: i32,
    data: &[u8],
    limits: PeekLimits,
) -> Result<Inserted, DropReason> {
    let growth = buf.capacity_after(offset, data.len(), limits.cap) - buf.capacity();
    if growth > limits.budget {
        return Err(DropReason::PeekMemory);
    }
    Ok(buf.insert(offset, data, limits.cap))
}

impl Peek {
    /// A peek that begins at `now` (the handshake's ACK).
    pub fn new(now: Time) -> Self {
        Self {
            buf: PeekBuffer::new(),
            acked: 0,
            progress_at: now,
        }
    }

    /// When this peek's bytes are due to be acknowledged by Kracauer (`delay` after the
    /// last new byte, while some contiguous bytes are not yet acknowledged), or
    /// [`Time::NEVER`] (nothing to acknowledge, or `delay` zero: custody is off).
    pub fn custody_due(&self, delay: core::time::Duration) -> Time {
        if delay.is_zero() || self.buf.contiguous().len() as u32 <= self.acked {
            return Time::NEVER;
        }
        self.progress_at + delay
    }

    /// Kracauer acknowledges every contiguous byte it holds: from now on they are its to
    /// deliver. Returns the sequence number it acknowledges up to, from `conn`.
    pub fn take_custody(&mut self, conn: &Conn) -> crate::wire::SeqNumber {
        self.acked = self.acked.max(self.buf.contiguous().len() as u32);
        conn.c_isn + 1 + self.acked
    }

    /// The name is known and the backend of attempt `attempt` of `candidates` indexed:
    /// wait for it, holding the peeked bytes to send once a backend answers.
    pub fn connect(
        self,
        name: Option<HostName>,
        now: Time,
        (candidates, attempt): (Candidates, usize),
        timers: SynTimers,
    ) -> Connect {
        let mut c = Connect {
            buf: self.buf,
            acked: self.acked,
            name,
            named_at: now,
            retransmit_at: now,
            rto: timers.rto,
            candidates,
            attempt,
            attempt_until: None,
        };
        c.begin(attempt, now, timers);
        c
    }

    /// Nothing routes the bytes: answer like a server would (see [`Refusal`]),
    /// acknowledging the bytes peeked.
    pub fn refuse(self, conn: &Conn, until: Time, refusal: Refusal) -> Refused {
        let bytes = self.buf.contiguous();
        let alert = match refusal {
            Refusal::UnknownName => tls::unrecognized_name_alert(bytes),
            Refusal::Malformed | Refusal::TooLarge => tls::decode_error_alert(bytes),
            Refusal::DuplicateExtension => tls::illegal_parameter_alert(bytes),
        };
        Refused {
            ack: conn.c_isn + 1 + bytes.len() as u32,
            until,
            alert,
            refusal,
        }
    }
}

impl Refused {
    /// The answer this refusal sends for `protocol`.
    pub fn answer(&self, protocol: Protocol) -> &[u8] {
        match (protocol, self.refusal) {
            // A QUIC flow is never a TCP flow's phase: its refusal is an Initial
            // (`quic::refuse`); the alert stands in.
            (Protocol::Tls | Protocol::Quic, _) => &self.alert,
            (Protocol::Http, Refusal::UnknownName) => http::misdirected_response(),
            (Protocol::Http, Refusal::Malformed | Refusal::DuplicateExtension) => {
                http::BAD_REQUEST_RESPONSE
            }
            (Protocol::Http, Refusal::TooLarge) => http::HEADERS_TOO_LARGE_RESPONSE,
        }
    }
}

/// Whether `bytes`, the first a client sent, end the peek by themselves: they name the
/// host, or show that nothing will.
pub fn names_at_once(protocol: Protocol, bytes: &[u8], cap: usize) -> bool {
    !matches!(peek(protocol, bytes, cap), Peeked::NeedMore)
}

/// Runs the peeker for `protocol` over the contiguous bytes.
fn peek(protocol: Protocol, bytes: &[u8], cap: usize) -> Peeked {
    match protocol {
        Protocol::Http => match HttpPeeker::new(cap).peek(bytes) {
            HttpPeek::NeedMore => Peeked::NeedMore,
            HttpPeek::Found {
                host: Some(HttpHost::Name(n)),
            } => Peeked::Name(Some(n)),
            // No Host (HTTP/1.0), an empty one, an address or a value that is no name:
            // routed as a request without a name.
            HttpPeek::Found { host: _ } => Peeked::Name(None),
            HttpPeek::NotHttp => Peeked::Unnamed(Unnamed::NotProtocol),
            HttpPeek::Invalid(HttpError::TooLarge) => Peeked::Unnamed(Unnamed::TooLarge),
            HttpPeek::Invalid(_) => Peeked::Unnamed(Unnamed::Malformed),
        },
        // QUIC hellos are read by `quic::InitialPeek`, never here; TLS rules stand in.
        Protocol::Tls | Protocol::Quic => match tls::peek(
            bytes,
            &TlsPeekConfig {
                max_hello_bytes: cap,
            },
        ) {
            TlsPeek::NeedMore => Peeked::NeedMore,
            // An unusable name (not a host name, or an address literal, which RFC 6066
            // forbids but some clients send) is routed as a hello without a name.
            TlsPeek::Found { sni, .. } => Peeked::Name(sni),
            TlsPeek::SslV2 => Peeked::Name(None),
            TlsPeek::NotTls => Peeked::Unnamed(Unnamed::NotProtocol),
            TlsPeek::Invalid(HelloError::TooLarge { .. }) => Peeked::Unnamed(Unnamed::TooLarge),
            TlsPeek::Invalid(HelloError::DuplicateServerName) => {
                Peeked::Unnamed(Unnamed::DuplicateServerName)
            }
            TlsPeek::Invalid(e) if e.is_ambiguous() => Peeked::Unnamed(Unnamed::Ambiguous),
            TlsPeek::Invalid(_) => Peeked::Unnamed(Unnamed::Malformed),
        },
    }
}
