//! A flow as bytes, for the live upgrade (docs/architecture.md, "Upgrades"): what an
//! engine's snapshot holds for each flow, and the length-checked reader and writer the
//! whole snapshot is made with.
//!
//! The format is written by hand, field by field, big-endian, rather than derived with
//! serde: every field a decoder takes is checked here (window scales at most 14, an RTO
//! that is neither zero nor past the back-off's ceiling, a name that is a valid name), a
//! field added to a phase cannot change the format without this file changing too (and
//! with it the engine's snapshot version number), and the core
//! takes no new dependency.
//!
//! Times are written relative to the snapshot's `now` (microseconds, signed), so a flow's
//! deadlines mean the same after a restore whatever clock the new process keeps.
//!
//! A peek buffer travels as its contiguous prefix only: bytes held after a hole are left
//! behind. Kracauer never acknowledges peeked bytes, so the client still has every one of
//! them and sends those again (the test `bytes_after_a_hole_are_left_to_the_client`).

use std::net::{Ipv4Addr, Ipv6Addr};

use core::time::Duration;

use super::connect::{Connect, MAX_RTO};
use super::custody::Custody;
use super::setup::Peek;
use super::spliced::{Closing, Refusal, Refused, Spliced};
use super::{Conn, Flow, Phase};
use crate::addr::Prefix96;
use crate::base::{ClientKey, Outcome, Protocol};
use crate::name::HostName;
use crate::route::{Candidate, Candidates, MAX_ATTEMPTS};
use crate::tcp::reasm::PeekBuffer;
use crate::tcp::seg::ClientOptions;
use crate::tcp::splice::Splice;
use crate::time::Time;
use crate::wire::SeqNumber;

/// Why a snapshot was refused. Nothing in a refused snapshot is used.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SnapshotError {
    #[error("not a Kracauer engine snapshot (bad magic)")]
    BadMagic,
    #[error("snapshot format version {found}; this build reads version {supported}")]
    Version { found: u16, supported: u16 },
    #[error("the snapshot is truncated")]
    Truncated,
    #[error("{0} bytes follow the end of the snapshot")]
    TrailingBytes(usize),
    #[error("the snapshot's checksum does not match its contents")]
    Checksum,
    #[error("the snapshot has a bad value for {0}")]
    BadField(&'static str),
    #[error("the snapshot was taken with a different {0} than this configuration's")]
    ConfigMismatch(&'static str),
    #[error("the snapshot holds {flows} flows; this configuration's flow table takes {capacity}")]
    TooManyFlows { flows: u64, capacity: usize },
    #[error("two flows in the snapshot share one {0} 4-tuple")]
    DuplicateFlow(&'static str),
    #[error("the configuration is invalid: {0}")]
    InvalidConfig(String),
}

/// Appends fields to a snapshot.
#[derive(Debug, Default)]
pub struct Writer {
    buf: Vec<u8>,
}

impl Writer {
    /// An empty writer.
    pub fn new() -> Self {
        Self::default()
    }

    /// The bytes written.
    pub fn into_bytes(self) -> Vec<u8> {
        self.buf
    }

    /// Bytes written so far.
    pub fn len(&self) -> usize {
        self.buf.len()
    }

    /// Whether nothing was written.
    pub fn is_empty(&self) -> bool {
        self.buf.is_empty()
    }

    pub fn u8(&mut self, v: u8) {
        self.buf.push(v);
    }

    pub fn u16(&mut self, v: u16) {
        self.buf.extend_from_slice(&v.to_be_bytes());
    }

    pub fn u32(&mut self, v: u32) {
        self.buf.extend_from_slice(&v.to_be_bytes());
    }

    pub fn u64(&mut self, v: u64) {
        self.buf.extend_from_slice(&v.to_be_bytes());
    }

    pub fn bool(&mut self, v: bool) {
        self.u8(u8::from(v));
    }

    /// Raw bytes of a length both sides know.
    pub fn raw(&mut self, v: &[u8]) {
        self.buf.extend_from_slice(v);
    }

    /// Bytes with a 32-bit length in front.
    pub fn bytes(&mut self, v: &[u8]) {
        self.u32(v.len().min(u32::MAX as usize) as u32);
        self.raw(v.get(..u32::MAX as usize).unwrap_or(v));
    }

    /// An optional byte (a tag, then the value).
    pub fn opt_u8(&mut self, v: Option<u8>) {
        self.bool(v.is_some());
        self.u8(v.unwrap_or(0));
    }

    /// An optional 32-bit value (a tag, then the value).
    pub fn opt_u32(&mut self, v: Option<u32>) {
        self.bool(v.is_some());
        self.u32(v.unwrap_or(0));
    }

    /// `t` as signed microseconds from `now`.
    pub fn time(&mut self, t: Time, now: Time) {
        let d = i128::from(t.as_micros()) - i128::from(now.as_micros());
        self.u64(d.clamp(i128::from(i64::MIN), i128::from(i64::MAX)) as i64 as u64);
    }

    /// A duration in microseconds.
    pub fn duration(&mut self, d: Duration) {
        self.u64(u64::try_from(d.as_micros()).unwrap_or(u64::MAX));
    }

    /// A short string (a counter's name) with an 8-bit length in front.
    pub fn name_str(&mut self, s: &str) {
        let s = s.as_bytes();
        self.u8(s.len().min(255) as u8);
        self.raw(s.get(..255).unwrap_or(s));
    }

    /// An optional host name (a length of 0 for none).
    pub fn name(&mut self, n: Option<&HostName>) {
        let s = n.map_or(&b""[..], |n| n.as_str().as_bytes());
        self.u8(s.len().min(255) as u8);
        self.raw(s.get(..255).unwrap_or(s));
    }
}

/// Takes fields from a snapshot, never reading past its end.
#[derive(Debug)]
pub struct Reader<'a> {
    buf: &'a [u8],
}

impl<'a> Reader<'a> {
    /// A reader over `buf`.
    pub fn new(buf: &'a [u8]) -> Self {
        Self { buf }
    }

    /// Bytes not read yet.
    pub fn remaining(&self) -> usize {
        self.buf.len()
    }

    /// The next `n` bytes.
    pub fn take(&mut self, n: usize) -> Result<&'a [u8], SnapshotError> {
        if n > self.buf.len() {
            return Err(SnapshotError::Truncated);
        }
        let (head, rest) = self.buf.split_at(n);
        self.buf = rest;
        Ok(head)
    }

    fn array<const N: usize>(&mut self) -> Result<[u8; N], SnapshotError> {
        let mut a = [0u8; N];
        a.copy_from_slice(self.take(N)?);
        Ok(a)
    }

    pub fn u8(&mut self) -> Result<u8, SnapshotError> {
        Ok(self.array::<1>()?[0])
    }

    pub fn u16(&mut self) -> Result<u16, SnapshotError> {
        Ok(u16::from_be_bytes(self.array()?))
    }

    pub fn u32(&mut self) -> Result<u32, SnapshotError> {
        Ok(u32::from_be_bytes(self.array()?))
    }

    pub fn u64(&mut self) -> Result<u64, SnapshotError> {
        Ok(u64::from_be_bytes(self.array()?))
    }

    /// Raw bytes of a length both sides know.
    pub fn raw<const N: usize>(&mut self) -> Result<[u8; N], SnapshotError> {
        self.array()
    }

    /// A 0 or a 1; anything else is a bad `field`.
    pub fn bool(&mut self, field: &'static str) -> Result<bool, SnapshotError> {
        match self.u8()? {
            0 => Ok(false),
            1 => Ok(true),
            _ => Err(SnapshotError::BadField(field)),
        }
    }

    /// Bytes with a 32-bit length in front.
    pub fn bytes(&mut self) -> Result<&'a [u8], SnapshotError> {
        let n = self.u32()? as usize;
        self.take(n)
    }

    pub fn opt_u8(&mut self, field: &'static str) -> Result<Option<u8>, SnapshotError> {
        let some = self.bool(field)?;
        let v = self.u8()?;
        Ok(some.then_some(v))
    }

    pub fn opt_u32(&mut self, field: &'static str) -> Result<Option<u32>, SnapshotError> {
        let some = self.bool(field)?;
        let v = self.u32()?;
        Ok(some.then_some(v))
    }

    /// A time written relative to the snapshot's `now`, placed relative to `now`
    /// (saturating at the clock's ends).
    pub fn time(&mut self, now: Time) -> Result<Time, SnapshotError> {
        let d = i128::from(self.u64()? as i64);
        let t = (i128::from(now.as_micros()) + d).clamp(0, i128::from(u64::MAX - 1));
        Ok(Time::from_micros(t as u64))
    }

    pub fn duration(&mut self) -> Result<Duration, SnapshotError> {
        Ok(Duration::from_micros(self.u64()?))
    }

    /// A short string written by [`Writer::name_str`].
    pub fn name_str(&mut self) -> Result<&'a [u8], SnapshotError> {
        let n = usize::from(self.u8()?);
        self.take(n)
    }

    /// An optional host name, which must be one as [`HostName::parse`] leaves it.
    pub fn name(&mut self, field: &'static str) -> Result<Option<HostName>, SnapshotError> {
        let n = usize::from(self.u8()?);
        if n == 0 {
            return Ok(None);
        }
        let bytes = self.take(n)?;
        match HostName::parse(bytes) {
            Ok(name) if name.as_str().as_bytes() == bytes => Ok(Some(name)),
            _ => Err(SnapshotError::BadField(field)),
        }
    }
}

/// A window scale: at most 14 (RFC 7323).
fn wscale(v: u8, field: &'static str) -> Result<u8, SnapshotError> {
    if v > 14 {
        return Err(SnapshotError::BadField(field));
    }
    Ok(v)
}

/// One flow as the snapshot carries it: its keys and its state.
#[derive(Debug)]
pub struct FlowRecord {
    pub client_key: ClientKey,
    /// The backend's address and port, once chosen (the backend key's client half is the
    /// client key's).
    pub backend: Option<(Ipv6Addr, u16)>,
    pub flow: Flow,
}

/// Writes one flow, its times relative to `now`.
pub fn write_flow(
    w: &mut Writer,
    key: &ClientKey,
    backend: Option<(Ipv6Addr, u16)>,
    flow: &Flow,
    now: Time,
) {
    w.raw(&key.client.octets());
    w.u16(key.client_port);
    w.raw(&key.service.octets());
    w.u16(key.service_port);
    w.bool(backend.is_some());
    let (addr, port) = backend.unwrap_or((Ipv6Addr::UNSPECIFIED, 0));
    w.raw(&addr.octets());
    w.u16(port);
    w.u8(match flow.protocol {
        Protocol::Tls => 0,
        Protocol::Http => 1,
        Protocol::Quic => 2,
    });
    w.time(flow.created, now);
    w.time(flow.last_seen, now);
    write_conn(w, &flow.conn);
    write_phase(w, &flow.phase, now);
}

/// Reads one flow written by [`write_flow`]; peek bytes are kept up to `peek_cap`.
pub fn read_flow(
    r: &mut Reader<'_>,
    now: Time,
    peek_cap: usize,
) -> Result<FlowRecord, SnapshotError> {
    let client_key = ClientKey {
        client: Ipv4Addr::from(r.raw::<4>()?),
        client_port: r.u16()?,
        service: Ipv4Addr::from(r.raw::<4>()?),
        service_port: r.u16()?,
    };
    let indexed = r.bool("backend index")?;
    let backend = (Ipv6Addr::from(r.raw::<16>()?), r.u16()?);
    let protocol = match r.u8()? {
        0 => Protocol::Tls,
        1 => Protocol::Http,
        _ => return Err(SnapshotError::BadField("protocol")),
    };
    let created = r.time(now)?;
    let last_seen = r.time(now)?;
    let conn = read_conn(r)?;
    let phase = read_phase(r, now, peek_cap)?;
    // Only the phases after the name have a backend, and those always have one.
    let needs_backend = matches!(
        phase,
        Phase::Connect(_) | Phase::Spliced(_) | Phase::Custody(_) | Phase::Closing(_)
    );
    if needs_backend != indexed {
        return Err(SnapshotError::BadField("backend index"));
    }
    let mut flow = Flow::new(protocol, created, conn, phase);
    flow.last_seen = last_seen;
    Ok(FlowRecord {
        client_key,
        backend: indexed.then_some(backend),
        flow,
    })
}

fn write_conn(w: &mut Writer, c: &Conn) {
    w.u32(c.c_isn.0);
    w.u32(c.k_isn.0);
    w.u16(c.client.mss);
    w.opt_u8(c.client.wscale);
    w.bool(c.client.sack);
    w.bool(c.client.timestamps);
    w.u32(c.client_tsval);
    w.u32(c.k_tsval);
    w.u16(c.client_window);
    w.bool(c.client_fin);
    w.bool(c.backend_fin);
    w.raw(&c.prefix.network().octets());
}

fn read_conn(r: &mut Reader<'_>) -> Result<Conn, SnapshotError> {
    let c_isn = SeqNumber(r.u32()?);
    let k_isn = SeqNumber(r.u32()?);
    let mss = r.u16()?;
    let wscale = r
        .opt_u8("client window scale")?
        .map(|v| wscale(v, "client window scale"))
        .transpose()?;
    let client = ClientOptions {
        mss,
        wscale,
        sack: r.bool("client sack")?,
        timestamps: r.bool("client timestamps")?,
    };
    Ok(Conn {
        c_isn,
        k_isn,
        client,
        client_tsval: r.u32()?,
        k_tsval: r.u32()?,
        client_window: r.u16()?,
        client_fin: r.bool("client fin")?,
        backend_fin: r.bool("backend fin")?,
        fastpath: false,
        prefix: Prefix96::new(Ipv6Addr::from(r.raw::<16>()?))
            .map_err(|_| SnapshotError::BadField("flow prefix"))?,
    })
}

const HANDSHAKE: u8 = 0;
const PEEK: u8 = 1;
const CONNECT: u8 = 2;
const SPLICED: u8 = 3;
const REFUSED: u8 = 4;
const CLOSING: u8 = 5;
const CUSTODY: u8 = 6;

fn write_phase(w: &mut Writer, phase: &Phase, now: Time) {
    match phase {
        Phase::Handshake => w.u8(HANDSHAKE),
        Phase::Peek(p) => {
            w.u8(PEEK);
            w.bytes(p.buf.contiguous());
            w.u32(p.acked);
            w.time(p.progress_at, now);
        }
        Phase::Connect(c) => {
            w.u8(CONNECT);
            write_connect(w, c, now);
        }
        Phase::Spliced(s) => {
            w.u8(SPLICED);
            write_spliced(w, s);
        }
        Phase::Custody(c) => {
            w.u8(CUSTODY);
            write_custody(w, c, now);
        }
        Phase::Refused(f) => {
            w.u8(REFUSED);
            w.u32(f.ack.0);
            w.time(f.until, now);
            w.raw(&f.alert);
            w.u8(refusal_code(f.refusal));
        }
        Phase::Closing(c) => {
            w.u8(CLOSING);
            write_spliced(w, &c.spliced);
            w.time(c.until, now);
            w.u8(c.outcome as u8);
        }
    }
}

fn refusal_code(r: Refusal) -> u8 {
    match r {
        Refusal::UnknownName => 0,
        Refusal::Malformed => 1,
        Refusal::DuplicateExtension => 2,
        Refusal::TooLarge => 3,
    }
}

fn refusal_of(code: u8) -> Result<Refusal, SnapshotError> {
    Ok(match code {
        0 => Refusal::UnknownName,
        1 => Refusal::Malformed,
        2 => Refusal::DuplicateExtension,
        3 => Refusal::TooLarge,
        _ => return Err(SnapshotError::BadField("refusal")),
    })
}

fn read_phase(r: &mut Reader<'_>, now: Time, peek_cap: usize) -> Result<Phase, SnapshotError> {
    Ok(match r.u8()? {
        HANDSHAKE => Phase::Handshake,
        PEEK => {
            let buf = read_peek_bytes(r, peek_cap)?;
            let acked = read_acked(r, &buf, "peek acknowledged")?;
            Phase::Peek(Box::new(Peek {
                buf,
                acked,
                progress_at: r.time(now)?,
            }))
        }
        CONNECT => Phase::Connect(Box::new(read_connect(r, now, peek_cap)?)),
        SPLICED => Phase::Spliced(read_spliced(r)?),
        CUSTODY => Phase::Custody(Box::new(read_custody(r, now, peek_cap)?)),
        REFUSED => Phase::Refused(Refused {
            ack: SeqNumber(r.u32()?),
            until: r.time(now)?,
            alert: r.raw()?,
            refusal: refusal_of(r.u8()?)?,
        }),
        CLOSING => {
            let spliced = Box::new(read_spliced(r)?);
            let until = r.time(now)?;
            let outcome = *Outcome::ALL
                .get(usize::from(r.u8()?))
                .ok_or(SnapshotError::BadField("closing outcome"))?;
            Phase::Closing(Closing {
                spliced,
                until,
                outcome,
            })
        }
        _ => return Err(SnapshotError::BadField("phase")),
    })
}

/// The connecting phase, kept in one place: its fields grow (backend failover).
fn write_connect(w: &mut Writer, c: &Connect, now: Time) {
    w.bytes(c.buf.contiguous());
    w.u32(c.acked);
    w.name(c.name.as_ref());
    w.time(c.named_at, now);
    w.time(c.retransmit_at, now);
    w.duration(c.rto);
    w.u8(c.candidates.len() as u8);
    for cand in &c.candidates {
        w.raw(&cand.address.octets());
        w.u32(cand.slot);
    }
    w.u8(c.attempt as u8);
    match c.attempt_until {
        Some(t) => {
            w.u8(1);
            w.time(t, now);
        }
        None => w.u8(0),
    }
}

fn read_connect(r: &mut Reader<'_>, now: Time, peek_cap: usize) -> Result<Connect, SnapshotError> {
    let buf = read_peek_bytes(r, peek_cap)?;
    let acked = read_acked(r, &buf, "connect acknowledged")?;
    let name = r.name("connecting name")?;
    let named_at = r.time(now)?;
    let retransmit_at = r.time(now)?;
    let rto = r.duration()?;
    // A zero interval would retransmit the SYN without end at one instant.
    if rto.is_zero() || rto > MAX_RTO {
        return Err(SnapshotError::BadField("SYN retransmission interval"));
    }
    let count = usize::from(r.u8()?);
    if count == 0 || count > MAX_ATTEMPTS {
        return Err(SnapshotError::BadField("backend candidates"));
    }
    let mut candidates = Candidates::new();
    for _ in 0..count {
        let address = Ipv6Addr::from(r.raw::<16>()?);
        let slot = r.u32()?;
        candidates.push(Candidate { address, slot });
    }
    let attempt = usize::from(r.u8()?);
    if attempt >= count {
        return Err(SnapshotError::BadField("backend attempt"));
    }
    let attempt_until = match r.u8()? {
        0 => None,
        1 => Some(r.time(now)?),
        _ => return Err(SnapshotError::BadField("attempt deadline")),
    };
    Ok(Connect {
        buf,
        acked,
        name,
        named_at,
        retransmit_at,
        rto,
        candidates,
        attempt,
        attempt_until,
    })
}

/// Peeked bytes: the contiguous prefix, put back through the buffer's own checked insert
/// (kept up to `cap`; the client sends whatever was not kept again).
fn read_peek_bytes(r: &mut Reader<'_>, cap: usize) -> Result<PeekBuffer, SnapshotError> {
    let bytes = r.bytes()?;
    let mut buf = PeekBuffer::new();
    buf.insert(0, bytes, cap);
    Ok(buf)
}

/// How many of `buf`'s bytes Kracauer acknowledged: at most what it holds without a hole
/// (a snapshot that says more could not deliver them).
fn read_acked(
    r: &mut Reader<'_>,
    buf: &PeekBuffer,
    field: &'static str,
) -> Result<u32, SnapshotError> {
    let acked = r.u32()?;
    if acked as usize > buf.contiguous().len() {
        return Err(SnapshotError::BadField(field));
    }
    Ok(acked)
}

/// A custody flow: its spliced state, then the bytes in custody and their timers.
fn write_custody(w: &mut Writer, c: &Custody, now: Time) {
    write_spliced(w, &c.spliced);
    w.bytes(c.buf.contiguous());
    w.u32(c.acked);
    w.u32(c.backend_acked);
    w.u32(c.sent);
    w.u32(c.backend_window);
    w.time(c.retransmit_at, now);
    w.duration(c.rto);
    w.time(c.until, now);
    w.u32(c.ack.0);
    w.u16(c.window);
    w.bool(c.timestamps.is_some());
    let (tsval, tsecr) = c.timestamps.unwrap_or((0, 0));
    w.u32(tsval);
    w.u32(tsecr);
    w.u16(c.segment);
    w.u32(c.backend_next.0);
}

fn read_custody(r: &mut Reader<'_>, now: Time, peek_cap: usize) -> Result<Custody, SnapshotError> {
    let spliced = read_spliced(r)?;
    let buf = read_peek_bytes(r, peek_cap)?;
    let acked = read_acked(r, &buf, "custody bytes")?;
    let backend_acked = r.u32()?;
    let sent = r.u32()?;
    if acked == 0 || backend_acked > acked || sent > acked {
        return Err(SnapshotError::BadField("custody acknowledgements"));
    }
    let backend_window = r.u32()?;
    let retransmit_at = r.time(now)?;
    let rto = r.duration()?;
    if rto.is_zero() || rto > MAX_RTO {
        return Err(SnapshotError::BadField("custody retransmission interval"));
    }
    let until = r.time(now)?;
    let ack = SeqNumber(r.u32()?);
    let window = r.u16()?;
    let has_timestamps = r.bool("custody timestamps")?;
    let timestamps = (r.u32()?, r.u32()?);
    let segment = r.u16()?;
    if segment == 0 {
        return Err(SnapshotError::BadField("custody segment size"));
    }
    Ok(Custody {
        spliced,
        buf,
        acked,
        backend_acked,
        sent,
        backend_window,
        retransmit_at,
        rto,
        until,
        ack,
        window,
        timestamps: has_timestamps.then_some(timestamps),
        segment,
        backend_next: SeqNumber(r.u32()?),
    })
}

fn write_spliced(w: &mut Writer, s: &Spliced) {
    let sp = &s.splice;
    w.u32(sp.delta);
    w.opt_u32(sp.ts_offset);
    w.u8(sp.backend_ws);
    w.u8(sp.client_ws);
    w.opt_u8(sp.expand_client_window);
    w.u64(s.bytes[0]);
    w.u64(s.bytes[1]);
    w.name(s.name.as_ref());
}

fn read_spliced(r: &mut Reader<'_>) -> Result<Spliced, SnapshotError> {
    let splice = Splice {
        delta: r.u32()?,
        ts_offset: r.opt_u32("timestamp offset")?,
        backend_ws: wscale(r.u8()?, "backend window scale")?,
        client_ws: wscale(r.u8()?, "client window scale")?,
        expand_client_window: r
            .opt_u8("window expansion")?
            .map(|v| wscale(v, "window expansion"))
            .transpose()?,
    };
    Ok(Spliced {
        splice,
        bytes: [r.u64()?, r.u64()?],
        name: r.name("spliced name")?,
    })
}
