//! Checks each packet the engine translates against the one it was given: same flags
//! and payload, one sequence offset for the whole flow, one timestamp offset each way,
//! and a window that, scaled as each receiver scales it, says no more than the sender
//! offered and at most one scale unit less. The one exception is custody: a backend
//! acknowledgement below what the engine itself acknowledged to the client is raised to
//! exactly that, with the window cut so that its right edge does not move right.

use super::probe::{self, Seg};

/// What the handshakes settled, as seen on the wire.
#[derive(Debug, Default, Clone)]
pub struct Handshakes {
    /// The client's SYN as the engine got it.
    pub client_syn: Option<Seg>,
    /// The engine's SYN-ACK to the client.
    pub engine_synack: Option<Seg>,
    /// The engine's SYN to the backend (before any stripping on the link).
    pub engine_syn: Option<Seg>,
    /// The backend's SYN-ACK.
    pub backend_synack: Option<Seg>,
}

/// Offsets seen so far, which must not change.
#[derive(Debug, Default)]
pub struct Oracle {
    /// backend seq − client-side seq.
    delta: Option<u32>,
    /// TSecr shift client→backend, TSval shift backend→client.
    ts_up: Option<u32>,
    ts_down: Option<u32>,
    /// The furthest client byte the engine acknowledged itself (custody).
    engine_acked: Option<u32>,
}

/// The window scale each side applies to the other's window fields.
struct Scales {
    /// The client's own scale (its windows), and the one it applies to what it gets.
    client_own: u8,
    client_reads: u8,
    backend_own: u8,
    backend_reads: u8,
}

fn scales(h: &Handshakes) -> Option<Scales> {
    let (csyn, ksa, ksyn, bsa) = (
        h.client_syn.as_ref()?,
        h.engine_synack.as_ref()?,
        h.engine_syn.as_ref()?,
        h.backend_synack.as_ref()?,
    );
    let client_scales = csyn.wscale.is_some() && ksa.wscale.is_some();
    let backend_scales = ksyn.wscale.is_some() && bsa.wscale.is_some();
    let on = |yes: bool, s: Option<u8>| if yes { s.unwrap_or(0).min(14) } else { 0 };
    Some(Scales {
        client_own: on(client_scales, csyn.wscale),
        client_reads: on(client_scales, ksa.wscale),
        backend_own: on(backend_scales, bsa.wscale),
        backend_reads: on(backend_scales, ksyn.wscale),
    })
}

/// `out` (in bytes, its field scaled by `s_out`) must not exceed `inb` and may fall
/// short of it only by rounding down to a unit of `1 << s_out` or by the 16-bit clamp.
fn window_ok(inb: u64, field_out: u16, s_out: u8) -> bool {
    let outb = u64::from(field_out) << s_out;
    outb <= inb && (inb - outb < (1 << s_out) || field_out == 0xffff)
}

fn same<T: PartialEq + Copy + std::fmt::Debug>(
    slot: &mut Option<T>,
    v: T,
    what: &str,
) -> Result<(), String> {
    match *slot {
        None => {
            *slot = Some(v);
            Ok(())
        }
        Some(old) if old == v => Ok(()),
        Some(old) => Err(format!("{what} changed from {old:?} to {v:?}")),
    }
}

impl Oracle {
    /// The engine acknowledged client bytes up to `ack` itself.
    pub fn engine_acked(&mut self, ack: u32) {
        let newer = self
            .engine_acked
            .is_none_or(|a| (ack.wrapping_sub(a) as i32) > 0);
        if newer {
            self.engine_acked = Some(ack);
        }
    }

    /// Checks one translation: `input` went into the engine, `output` came out.
    pub fn check(&mut self, h: &Handshakes, input: &[u8], output: &[u8]) -> Result<(), String> {
        let i = probe::parse(input)?;
        let o = probe::parse(output)?;
        if (i.syn, i.ack_flag, i.fin, i.rst) != (o.syn, o.ack_flag, o.fin, o.rst) {
            return Err("flags changed".into());
        }
        if probe::tcp_payload(input) != probe::tcp_payload(output) {
            return Err("payload changed".into());
        }
        let up = !i.v6;
        let mut custody = false;
        if up == o.v6 {
            // Translated to the other family, as expected.
        } else {
            return Err("not translated to the other IP version".into());
        }
        if up {
            if i.seq != o.seq {
                return Err("client sequence number changed".into());
            }
            if i.ack_flag {
                same(&mut self.delta, o.ack.wrapping_sub(i.ack), "δ")?;
            }
            if let (Some((iv, ie)), Some((ov, oe))) = (i.ts, o.ts) {
                if iv != ov {
                    return Err("client TSval changed".into());
                }
                same(&mut self.ts_up, oe.wrapping_sub(ie), "TSecr offset")?;
            }
            for (a, b) in i.sack.iter().zip(&o.sack) {
                let d = self.delta.unwrap_or(0);
                if (a.0.wrapping_add(d), a.1.wrapping_add(d)) != *b {
                    return Err(format!("SACK block {a:?} became {b:?}, δ {d}"));
                }
            }
        } else {
            same(&mut self.delta, i.seq.wrapping_sub(o.seq), "δ")?;
            if i.ack_flag && i.ack != o.ack {
                let raised =
                    self.engine_acked == Some(o.ack) && (o.ack.wrapping_sub(i.ack) as i32) > 0;
                if !raised {
                    return Err("backend ACK number changed".into());
                }
                if let Some(s) = scales(h) {
                    let edge_in = u64::from(i.ack) + (u64::from(i.window) << s.backend_own);
                    let edge_out = u64::from(o.ack) + (u64::from(o.window) << s.client_reads);
                    if edge_out > edge_in {
                        return Err(format!(
                            "a raised ACK moved the right edge: {edge_in} to {edge_out}"
                        ));
                    }
                }
                custody = true;
            }
            if let (Some((iv, ie)), Some((ov, oe))) = (i.ts, o.ts) {
                if ie != oe {
                    return Err("backend TSecr changed".into());
                }
                same(&mut self.ts_down, iv.wrapping_sub(ov), "TSval offset")?;
            }
            if i.sack != o.sack {
                return Err("backend SACK blocks changed".into());
            }
        }
        if let (Some(s), false, false) = (scales(h), i.syn, custody) {
            let (inb, s_out) = if up {
                (u64::from(i.window) << s.client_own, s.backend_reads)
            } else {
                (u64::from(i.window) << s.backend_own, s.client_reads)
            };
            if !window_ok(inb, o.window, s_out) {
                return Err(format!(
                    "window {} (= {inb} bytes) became {} scaled by {s_out}",
                    i.window, o.window
                ));
            }
        }
        Ok(())
    }
}
