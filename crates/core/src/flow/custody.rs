//! Custody: a spliced flow whose first bytes Kracauer acknowledged to the client itself,
//! before the splice, and the backend has not yet acknowledged (docs/architecture.md,
//! "Custody").
//!
//! A client whose Nagle is RFC 896's holds the short rest of its hello until its first
//! segment is acknowledged; a peek never acknowledges, so such a client would wait until
//! the peek deadline. When a peek stalls that way for the engine's custody delay,
//! Kracauer acknowledges the contiguous bytes it holds ([`Peek::take_custody`]), and the
//! client goes on. From then on the client will never send those bytes again: until the
//! backend acknowledges them, they are Kracauer's to deliver. So the flow splices into
//! this phase instead of [`Spliced`]:
//!
//! - the handover sends the peeked bytes as always (cut to the backend's window); the
//!   custody bytes it could not send go as the backend's acknowledgements open its window,
//!   and all of them from the backend's last acknowledgement again when the
//!   retransmission timer fires (from about twice the backend's SYN round trip, doubling,
//!   at least 200 ms);
//! - every segment is forwarded with the flow's [`Splice`] as
//!   a spliced one is, and on its way to the client a backend acknowledgement below the
//!   custody bytes' end is raised to it (the client was told those bytes arrived; an ACK
//!   behind that would be an old duplicate) with the window cut by as much, so the right
//!   edge the backend offered stays where it was;
//! - once the backend acknowledges every custody byte the flow becomes [`Spliced`] and the
//!   bytes are freed; if it has not within the connect timeout of the splice, both ends
//!   are reset.
//!
//! The bytes count against the peek memory until they are freed ([`Flow::usage`]).
//!
//! [`Peek::take_custody`]: super::setup::Peek::take_custody
//! [`Flow::usage`]: super::Flow::usage

use core::ops::Range;
use core::time::Duration;

use super::Conn;
use super::connect::MAX_RTO;
use super::spliced::Spliced;
use crate::tcp::reasm::PeekBuffer;
use crate::tcp::seg::SegInfo;
use crate::tcp::splice::Splice;
use crate::time::Time;
use crate::wire::ChecksumForm;
use crate::wire::tcp::{SeqNumber, TcpPacket};

/// Shortest retransmission interval of custody bytes (Linux's minimum RTO).
pub const MIN_CUSTODY_RTO: Duration = Duration::from_millis(200);

/// A spliced flow holding bytes Kracauer acknowledged to the client.
#[derive(Debug)]
pub struct Custody {
    pub spliced: Spliced,
    /// The client's first bytes; the first `acked` of them are Kracauer's to deliver.
    pub buf: PeekBuffer,
    /// Bytes from the start of the client's stream that Kracauer acknowledged itself.
    pub acked: u32,
    /// Bytes from the start of the stream the backend has acknowledged.
    pub backend_acked: u32,
    /// Custody bytes sent to the backend so far (from the start of the stream).
    pub sent: u32,
    /// The backend's latest window, in bytes.
    pub backend_window: u32,
    /// When the custody bytes from `backend_acked` go again.
    pub retransmit_at: Time,
    pub rto: Duration,
    /// When Kracauer gives up: the backend never took the bytes.
    pub until: Time,
    /// The ACK number (the backend's space) and window field Kracauer's own segments to
    /// the backend carry: the client's latest.
    pub ack: SeqNumber,
    pub window: u16,
    /// (TSval, TSecr) for Kracauer's own segments, when both sides use timestamps: the
    /// client's latest TSval and the backend's.
    pub timestamps: Option<(u32, u32)>,
    /// Payload bytes per segment to the backend.
    pub segment: u16,
    /// The backend's next sequence number, in its own space (where a RST to the client
    /// sits, once mapped).
    pub backend_next: SeqNumber,
}

/// What a backend segment did to the custody.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CustodyAck {
    /// The backend acknowledged every custody byte: the flow is spliced.
    Released,
    /// The backend acknowledged more of them: more may go.
    Advanced,
    /// Nothing new.
    Unchanged,
}

impl Custody {
    /// The client sequence number up to which Kracauer acknowledged.
    pub fn floor(&self, conn: &Conn) -> SeqNumber {
        conn.c_isn + 1 + self.acked
    }

    /// Takes what a backend segment says: its acknowledgement of the custody bytes, its
    /// window, its TSval and how far its own stream reaches.
    pub fn backend_segment(
        &mut self,
        conn: &Conn,
        splice: &Splice,
        seg: &SegInfo,
        now: Time,
    ) -> CustodyAck {
        let end = seg.seq + seg.seg_len();
        if (end - self.backend_next) as i32 > 0 {
            self.backend_next = end;
        }
        if let (Some((_, tsecr)), Some((tsval, _))) = (&mut self.timestamps, seg.options.timestamps)
        {
            *tsecr = tsval;
        }
        if !seg.ack_flag() || seg.rst() {
            return CustodyAck::Unchanged;
        }
        self.backend_window = u32::from(seg.window) << splice.backend_ws.min(14);
        let offset = seg.ack - (conn.c_isn + 1);
        if offset as i32 >= 0 && offset >= self.acked {
            return CustodyAck::Released;
        }
        if offset as i32 > 0 && offset > self.backend_acked {
            self.backend_acked = offset;
            self.sent = self.sent.max(offset);
            self.retransmit_at = now + self.rto;
            return CustodyAck::Advanced;
        }
        CustodyAck::Unchanged
    }

    /// Takes what a client segment on its way to the backend says: the acknowledgement,
    /// window and TSval Kracauer's own segments should carry.
    pub fn client_segment(&mut self, splice: &Splice, seg: &SegInfo) {
        if seg.ack_flag() {
            let ack = splice.ack_to_backend(seg.ack);
            if (ack - self.ack) as i32 > 0 {
                self.ack = ack;
            }
        }
        self.window = splice.window_to_backend(seg.window);
        if let (Some((tsval, _)), Some((client_tsval, _))) =
            (&mut self.timestamps, seg.options.timestamps)
        {
            if (client_tsval.wrapping_sub(*tsval) as i32) > 0 {
                *tsval = client_tsval;
            }
        }
    }

    /// Raises a backend acknowledgement below the custody bytes' end to that end on its
    /// way to the client (after the splice's own rewrite), cutting the window by as much.
    pub fn to_client<T: AsRef<[u8]> + AsMut<[u8]>>(
        &self,
        conn: &Conn,
        splice: &Splice,
        tcp: &mut TcpPacket<T>,
        seg: &SegInfo,
        form: ChecksumForm,
    ) {
        let floor = self.floor(conn);
        let behind = floor - seg.ack;
        if !seg.ack_flag() || seg.rst() || behind as i32 <= 0 {
            return;
        }
        let bytes =
            (u64::from(seg.window) << splice.backend_ws.min(14)).saturating_sub(u64::from(behind));
        let field = (bytes >> splice.client_ws.min(14)).min(0xffff) as u16;
        tcp.rewrite_ack_number(floor, form);
        tcp.rewrite_window_len(field, form);
    }

    /// The custody bytes to send now (offsets from the start of the stream): after an
    /// acknowledgement, what the backend's window newly lets through; when the timer
    /// fired (`retransmit`), everything from its last acknowledgement.
    pub fn to_send(&self, retransmit: bool) -> Range<u32> {
        let window_end = self
            .backend_acked
            .saturating_add(self.backend_window.max(u32::from(self.segment)));
        let end = self.acked.min(window_end);
        let start = if retransmit {
            self.backend_acked
        } else {
            self.sent
        };
        start..end.max(start)
    }

    /// The bytes at `range` (offsets from the start of the stream).
    pub fn bytes(&self, range: Range<u32>) -> &[u8] {
        self.buf
            .contiguous()
            .get(range.start as usize..range.end as usize)
            .unwrap_or(&[])
    }

    /// The timer fired at `now`: everything from the backend's last acknowledgement goes
    /// again, and the next interval doubles.
    pub fn back_off(&mut self, now: Time) {
        self.rto = (self.rto * 2).min(MAX_RTO);
        self.retransmit_at = now + self.rto;
    }

    /// The first retransmission interval for a backend whose SYN round trip was `rtt`,
    /// bounded by `first` (the backend SYN's own).
    pub fn first_rto(rtt: Duration, first: Duration) -> Duration {
        (rtt * 2).clamp(MIN_CUSTODY_RTO, first.max(MIN_CUSTODY_RTO))
    }

    /// Every custody byte is acknowledged: the flow is spliced.
    pub fn release(self) -> Spliced {
        self.spliced
    }
}
