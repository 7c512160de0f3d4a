//! A change of the prefix while flows run (a reload, [`Engine::reconfigure`], or a
//! restore, [`Engine::restore`]): new flows take the new /96, flows that began under an
//! old one keep it until they end, since their backends know them by it.
//!
//! Each flow carries its prefix ([`Conn::prefix`](crate::flow::Conn::prefix)). The
//! old prefixes are *retired*: backend packets towards them still find their flows.
//! Every [`SWEEP_EVERY`](super::pressure::SWEEP_EVERY) the engine forgets the retired
//! prefixes none of its flows holds any more; [`Engine::retired_prefixes`] says which
//! it still serves, so the daemon keeps their routes until no engine does.

use std::net::{Ipv4Addr, Ipv6Addr};

use super::Engine;
use crate::addr::Prefix96;

impl Engine {
    /// The prefix `v6` is in, current or retired, and the client address it embeds.
    pub(super) fn extract_client(&self, v6: Ipv6Addr) -> Option<(Prefix96, Ipv4Addr)> {
        core::iter::once(&self.config.prefix)
            .chain(&self.retired)
            .find_map(|p| p.extract(v6).map(|client| (*p, client)))
    }

    /// Makes `new` the prefix of new flows; the old one is retired while flows hold it.
    pub(super) fn change_prefix(&mut self, new: Prefix96) {
        let old = core::mem::replace(&mut self.config.prefix, new);
        if old != new {
            self.retire(old);
            self.sweep_retired();
        }
    }

    /// Serves `old` for the flows that hold it (a restore adds those of its snapshot).
    pub(super) fn retire(&mut self, old: Prefix96) {
        self.retired.retain(|p| *p != self.config.prefix);
        if old != self.config.prefix && !self.retired.contains(&old) {
            self.retired.push(old);
        }
    }

    /// Forgets the retired prefixes no flow holds any more.
    pub(super) fn sweep_retired(&mut self) {
        if self.retired.is_empty() {
            return;
        }
        let mut held = [false; 8];
        let mut overflow = false;
        let tcp = self.flows.iter().map(|(.., f)| f.conn.prefix);
        let udp = self.udp.flows.iter().map(|(.., f)| f.prefix);
        for prefix in tcp.chain(udp) {
            match self.retired.iter().position(|p| *p == prefix) {
                Some(i) if i < held.len() => held[i] = true,
                Some(_) => overflow = true,
                None => {}
            }
        }
        let mut i = 0;
        self.retired.retain(|_| {
            let keep = held.get(i).copied().unwrap_or(overflow);
            i += 1;
            keep
        });
    }

    /// The retired prefixes this engine still serves flows on, oldest first.
    pub fn retired_prefixes(&self) -> &[Prefix96] {
        &self.retired
    }
}
