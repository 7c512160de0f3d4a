//! [`Splice`]: the rewrite every segment of a spliced flow gets, as one pure value.
//!
//! Once the backend's SYN-ACK has arrived, a flow needs only a fixed rewrite (docs/architecture.md,
//! "The splice", step 6, and "The splice value"):
//!
//! - client → backend: `ack += δ`, every SACK edge `+= δ`, `TSecr += ts_off`, and the
//!   window expanded when the backend declined the window scaling the client uses;
//! - backend → client: `seq −= δ`, `TSval −= ts_off`, and the window rescaled from the
//!   backend's scale to the one Kracauer announced (rounded down, clamped to 0xffff).
//!
//! Every change updates the checksum incrementally in the form the packet carries
//! ([`ChecksumForm`]): a finished checksum stays finished, a partial one (a GSO
//! super-packet from the kernel) stays partial. No payload byte is read.
//!
//! The value has no I/O, no table and no clock. The engine applies it in place of a
//! segment it has already parsed ([`Splice::to_backend_parsed`]); the kernel fast path
//! must translate exactly as [`Splice::to_backend`] and [`Splice::to_client`] do, and is
//! tested against them.

use crate::tcp::seg::{ClientOptions, SegInfo};
use crate::wire::tcp::{SeqNumber, TcpPacket};
use crate::wire::{ChecksumForm, WireError};

/// How the segments of one spliced flow are rewritten.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Splice {
    /// `δ = b_isn − k_isn` (wrapping): backend sequence numbers minus δ are the client's
    /// view of "the server's" sequence space.
    pub delta: u32,
    /// When the client uses timestamps: backend TSval minus this is the client's view of
    /// "the server's" clock, and the client's TSecr plus this is the backend's. `None`
    /// when the client did not negotiate timestamps (nothing to rewrite).
    pub ts_offset: Option<u32>,
    /// Shift of the backend's window field (`ws_b` when both sides scale, else 0).
    pub backend_ws: u8,
    /// Shift of the window field the client expects (`ws_k` when both sides scale, else 0).
    pub client_ws: u8,
    /// The backend declined the window scaling the client uses: the client's windows are
    /// expanded by this shift (clamped to 0xffff) on their way to the backend.
    pub expand_client_window: Option<u8>,
}

/// What the backend's SYN-ACK agreed to, as far as the splice needs it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BackendSynAck {
    /// The backend's ISN (`b_isn`).
    pub isn: SeqNumber,
    /// The backend's window scale option, if any.
    pub wscale: Option<u8>,
    /// The backend's TSval, if it sent timestamps.
    pub tsval: Option<u32>,
}

/// Why a segment could not be rewritten.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum SpliceError {
    /// The TCP options do not parse (an option runs past the header).
    #[error("TCP options do not parse: {0}")]
    Options(WireError),
}

impl Splice {
    /// The splice for a flow whose client agreed to `client` with Kracauer (which
    /// announced `k_isn` and window scale `ws_k`), once the backend answered with
    /// `backend`. `k_tsval` is the TSval Kracauer's next segment to the client would
    /// carry: the client's view of "the server's" clock continues from there.
    pub fn negotiate(
        k_isn: SeqNumber,
        client: &ClientOptions,
        ws_k: u8,
        k_tsval: u32,
        backend: &BackendSynAck,
    ) -> Self {
        let ts_offset = client
            .timestamps
            .then(|| backend.tsval.map_or(0, |b| b.wrapping_sub(k_tsval)));
        let (backend_ws, client_ws, expand_client_window) = match (client.wscale, backend.wscale) {
            (Some(_), Some(ws_b)) => (ws_b.min(14), ws_k, None),
            (Some(ws_c), None) => (0, ws_k, Some(ws_c.min(14))),
            (None, _) => (0, 0, None),
        };
        Self {
            delta: backend.isn - k_isn,
            ts_offset,
            backend_ws,
            client_ws,
            expand_client_window,
        }
    }

    /// The window field the backend should see for a client window field `window`.
    pub fn window_to_backend(&self, window: u16) -> u16 {
        match self.expand_client_window {
            Some(shift) => (u64::from(window) << shift.min(14)).min(0xffff) as u16,
            None => window,
        }
    }

    /// The window field the client should see for a backend window field `window`:
    /// the same bytes in the client's scale, rounded down, clamped to 0xffff.
    pub fn window_to_client(&self, window: u16) -> u16 {
        if self.backend_ws == self.client_ws {
            return window;
        }
        let bytes = u64::from(window) << self.backend_ws;
        (bytes >> self.client_ws).min(0xffff) as u16
    }

    /// A backend sequence number as the client sees it.
    pub fn seq_to_client(&self, seq: SeqNumber) -> SeqNumber {
        seq - self.delta
    }

    /// A client acknowledgment (or SACK edge) as the backend sees it.
    pub fn ack_to_backend(&self, ack: SeqNumber) -> SeqNumber {
        ack + self.delta
    }

    /// Rewrites a client segment for the backend: ACK number, SACK edges, TSecr, window.
    /// Ports and addresses are the translator's business, not the splice's.
    pub fn to_backend<T: AsRef<[u8]> + AsMut<[u8]>>(
        &self,
        tcp: &mut TcpPacket<T>,
        form: ChecksumForm,
    ) -> Result<(), SpliceError> {
        let seg = SegInfo::parse(tcp).map_err(SpliceError::Options)?;
        self.to_backend_parsed(tcp, &seg, form)
    }

    /// [`Splice::to_backend`] for a segment whose options were already read into `seg`
    /// (the engine reads them once per segment).
    pub fn to_backend_parsed<T: AsRef<[u8]> + AsMut<[u8]>>(
        &self,
        tcp: &mut TcpPacket<T>,
        seg: &SegInfo,
        form: ChecksumForm,
    ) -> Result<(), SpliceError> {
        if seg.sack && self.delta != 0 {
            tcp.shift_sack_edges(self.delta, form)
                .map_err(SpliceError::Options)?;
        }
        if seg.ack_flag() && self.delta != 0 {
            tcp.rewrite_ack_number(self.ack_to_backend(seg.ack), form);
        }
        if let (Some(off), Some(at), Some((tsval, tsecr))) =
            (self.ts_offset, seg.timestamps_at, seg.options.timestamps)
        {
            if off != 0 {
                // The offset was found by the walk that filled `seg`: it holds a
                // Timestamps option, so this cannot fail.
                let _ = tcp.rewrite_timestamps_at(at, tsval, tsecr.wrapping_add(off), form);
            }
        }
        if self.expand_client_window.is_some() {
            tcp.rewrite_window_len(self.window_to_backend(seg.window), form);
        }
        Ok(())
    }

    /// Rewrites a backend segment for the client: sequence number, TSval, window.
    pub fn to_client<T: AsRef<[u8]> + AsMut<[u8]>>(
        &self,
        tcp: &mut TcpPacket<T>,
        form: ChecksumForm,
    ) -> Result<(), SpliceError> {
        let seg = SegInfo::parse(tcp).map_err(SpliceError::Options)?;
        self.to_client_parsed(tcp, &seg, form);
        Ok(())
    }

    /// [`Splice::to_client`] for a segment whose options were already read into `seg`.
    pub fn to_client_parsed<T: AsRef<[u8]> + AsMut<[u8]>>(
        &self,
        tcp: &mut TcpPacket<T>,
        seg: &SegInfo,
        form: ChecksumForm,
    ) {
        if self.delta != 0 {
            tcp.rewrite_seq_number(self.seq_to_client(seg.seq), form);
        }
        if let (Some(off), Some(at), Some((tsval, tsecr))) =
            (self.ts_offset, seg.timestamps_at, seg.options.timestamps)
        {
            if off != 0 {
                let _ = tcp.rewrite_timestamps_at(at, tsval.wrapping_sub(off), tsecr, form);
            }
        }
        if self.backend_ws != self.client_ws {
            tcp.rewrite_window_len(self.window_to_client(seg.window), form);
        }
    }
}
