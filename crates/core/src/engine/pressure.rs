//! Many users behind one address (docs/robustness.md, "Many users behind one address"):
//! what one client address may hold, and fairness when the shared limits come under
//! pressure.
//!
//! - **An address's allowance.** An address may hold `max_peeking_per_client` unnamed
//!   connections (handshakes and peeks) as state at once, all workers together
//!   ([`Engine::may_hold`]). Past it nothing it sends is refused: its SYNs get SYN cookies
//!   and its connections are carried without state until a segment names the host
//!   (`client.rs`). A client that completes its hello promptly never notices; bytes that
//!   would have to wait as state (half a hello) wait in the client instead, which sends
//!   them again.
//! - **Pressure** is the shared peek memory or the shared half-open count at half its
//!   bound or more ([`Engine::under_pressure`]). Only then:
//!   - a SYN past its address's allowance whose options a cookie would lose (no
//!     timestamps, yet window scaling or SACK) is dropped (below pressure it is taken as
//!     state after all);
//!   - every [`SWEEP_EVERY`] each engine cuts ([`Outcome::Limited`]) the unnamed flows
//!     that made no progress for [`STALE_AFTER`], those of the addresses holding the most
//!     unnamed state first and the oldest of each first, until the pressure is gone. A
//!     peek is reset; a pending QUIC flow is forgotten (its client retransmits its
//!     Initial); a handshake is forgotten silently (no RST for what may be a
//!     spoofed source; a real client's late ACK finds no flow and gets its RST then). A peek that completes its hello promptly is never stale, so an address whose
//!     clients complete their hellos promptly is never cut.

use core::time::Duration;
use std::net::Ipv4Addr;

use super::Engine;
use crate::base::Outcome;
use crate::engine::output::Output;
use crate::flow::Phase;
use crate::flow::table::FlowId;
use crate::time::Time;

/// How often the limits are looked at for pressure while an engine holds unnamed state.
pub const SWEEP_EVERY: Duration = Duration::from_millis(250);

/// How long an unnamed flow must have made no progress (no new byte; for a handshake, no
/// ACK) before a sweep under pressure may cut it.
pub const STALE_AFTER: Duration = Duration::from_secs(1);

impl Engine {
    /// Whether the shared peek memory or half-open count is at half its bound or more.
    pub fn under_pressure(&self) -> bool {
        let (s, c) = (&self.shared, &self.config);
        s.peek_bytes().saturating_mul(2) >= c.max_peek_bytes
            || s.half_open().saturating_mul(2) >= c.max_half_open
    }

    /// Whether `client` may hold one more unnamed connection as state.
    pub(super) fn may_hold(&self, client: Ipv4Addr) -> bool {
        self.shared.held_by(client) < self.config.max_peeking_per_client
    }

    /// Under pressure, cuts stale unnamed flows, heaviest address first, until the
    /// pressure is gone; then waits [`SWEEP_EVERY`] before looking again.
    pub(super) fn sweep(&mut self, now: Time, out: &mut Output) {
        self.next_sweep = now + SWEEP_EVERY;
        if !self.under_pressure() {
            return;
        }
        let mut stale: Vec<(u32, Time, FlowId, bool)> = self
            .flows
            .iter()
            .filter_map(|(id, key, _, flow)| {
                let (since, peeking) = match &flow.phase {
                    Phase::Handshake => (flow.created, false),
                    Phase::Peek(p) => (p.progress_at, true),
                    _ => return None,
                };
                (now.saturating_since(since) >= STALE_AFTER)
                    .then(|| (self.shared.held_by(key.client), since, id, peeking))
            })
            .collect();
        stale.sort_unstable_by(|a, b| b.0.cmp(&a.0).then(a.1.cmp(&b.1)));
        for (_, _, id, peeking) in stale {
            if !self.under_pressure() {
                break;
            }
            if peeking {
                self.reset_client(id, out);
            }
            self.finish(now, id, Outcome::Limited);
            self.stats.pressure_cuts += 1;
        }
        self.udp_sweep(now);
    }
}
