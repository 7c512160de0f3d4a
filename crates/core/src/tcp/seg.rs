//! A parsed summary of one TCP segment ([`SegInfo`]): the fields the engine decides on,
//! copied out of the packet so that the packet's buffer can then be rewritten; and what
//! a client's SYN agreed with Kracauer ([`ClientOptions`]).

use crate::wire::WireError;
use crate::wire::build::TcpOptionsSpec;
use crate::wire::tcp::{SeqNumber, TcpOption, TcpPacket, flags};

/// What the client's SYN offered, as far as Kracauer agreed to it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ClientOptions {
    /// The client's MSS (536 when it sent none).
    pub mss: u16,
    /// The client's window scale (`ws_c`), when both sides use scaling.
    pub wscale: Option<u8>,
    /// SACK permitted both ways.
    pub sack: bool,
    /// Timestamps in use.
    pub timestamps: bool,
}

impl ClientOptions {
    /// What a SYN with these options agrees to when Kracauer keeps state for it.
    pub fn from_syn(o: &TcpOptionsSpec<'_>) -> Self {
        Self {
            mss: o.mss.unwrap_or(536),
            wscale: o.window_scale,
            sack: o.sack_permitted,
            timestamps: o.timestamps.is_some(),
        }
    }
}

/// One segment's header fields.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SegInfo {
    pub src_port: u16,
    pub dst_port: u16,
    pub seq: SeqNumber,
    pub ack: SeqNumber,
    pub flags: u8,
    pub window: u16,
    /// Payload bytes.
    pub payload_len: u32,
    /// Offset of the payload from the start of the TCP header.
    pub payload_offset: usize,
    /// The options the engine negotiates or rewrites, in the same type it emits them with.
    pub options: TcpOptionsSpec<'static>,
    /// Whether a SACK option (blocks) is present.
    pub sack: bool,
    /// Offset of the Timestamps option's kind byte from the start of the TCP header, so
    /// that rewriting it does not walk the options a second time.
    pub timestamps_at: Option<usize>,
}

impl SegInfo {
    /// Reads a checked TCP segment; options that do not parse are an error.
    pub fn parse<T: AsRef<[u8]>>(tcp: &TcpPacket<T>) -> Result<Self, WireError> {
        let mut options = TcpOptionsSpec::default();
        let mut sack = false;
        let mut timestamps_at = None;
        for o in tcp.options() {
            let (at, option) = o?;
            match option {
                TcpOption::Mss(m) => options.mss = Some(m),
                TcpOption::WindowScale(w) => options.window_scale = Some(w.min(14)),
                TcpOption::SackPermitted => options.sack_permitted = true,
                TcpOption::Sack(_) => sack = true,
                TcpOption::Timestamps { tsval, tsecr } => {
                    options.timestamps = Some((tsval, tsecr));
                    timestamps_at = Some(at);
                }
                TcpOption::Unknown { .. } | TcpOption::Malformed { .. } => {}
            }
        }
        let payload = tcp.payload_range();
        Ok(Self {
            src_port: tcp.src_port(),
            dst_port: tcp.dst_port(),
            seq: tcp.seq_number(),
            ack: tcp.ack_number(),
            flags: tcp.flags(),
            window: tcp.window_len(),
            payload_len: payload.len() as u32,
            payload_offset: payload.start,
            options,
            sack,
            timestamps_at,
        })
    }

    pub fn syn(&self) -> bool {
        self.flags & flags::SYN != 0
    }

    pub fn ack_flag(&self) -> bool {
        self.flags & flags::ACK != 0
    }

    pub fn fin(&self) -> bool {
        self.flags & flags::FIN != 0
    }

    pub fn rst(&self) -> bool {
        self.flags & flags::RST != 0
    }

    /// The ACK number, if the ACK flag is set.
    pub fn ack_number(&self) -> Option<SeqNumber> {
        self.ack_flag().then_some(self.ack)
    }

    /// Sequence space the segment occupies (payload, plus one each for SYN and FIN).
    pub fn seg_len(&self) -> u32 {
        self.payload_len + u32::from(self.syn()) + u32::from(self.fin())
    }
}
