//! The kernel fast path's metrics (docs/architecture.md, "The kernel fast path"): whether
//! its program is attached, what the program did with the packets it saw (its own
//! counters, read by the control plane about once a second), and the workers' hand-overs
//! (flows on the kernel path now, hand-overs a full map refused). All zero while the
//! fast path is off or not available.

use prometheus_client::encoding::DescriptorEncoder;

use super::{counter, gauge, int, one};
use crate::fastpath::HandOvers;
use crate::fastpath::counters::{Counters, RESULTS};

pub(super) fn encode(
    e: &mut DescriptorEncoder<'_>,
    handovers: &HandOvers,
    c: &Counters,
) -> Result<(), std::fmt::Error> {
    gauge(
        e,
        "kracauer_fastpath_running",
        "1 while the kernel fast path's program is attached, 0 otherwise (off, not available, or removed).",
        i64::from(c.running.load(std::sync::atomic::Ordering::Relaxed)),
    )?;
    let packets: Vec<_> = RESULTS
        .iter()
        .enumerate()
        .map(|(i, r)| (vec![("result", *r)], c.get(i)))
        .collect();
    counter(
        e,
        "kracauer_fastpath_packets",
        "Packets the kernel fast path's program saw at the interfaces' ingress, by result: translated (to_backend, to_client; a GRO super-packet counts once), passed untouched to the TUN path (no_flow: TCP of no flow handed over, or of one closing after its RST or second FIN; unsure: not TCP, SYN, FIN, RST, options it does not rewrite, fragments, extension headers, TTL 1; route: no route, or the route into the TUN; too_big: over the route's MTU), or dropped after a helper failed (failed). Counted since the program's pinned maps were created: a restart after a crash and a live upgrade go on from the same values.",
        &packets,
    )?;
    gauge(
        e,
        "kracauer_fastpath_flows",
        "Flows handed over to the kernel fast path now (its map's entries the workers hold).",
        int(handovers.flows),
    )?;
    counter(
        e,
        "kracauer_fastpath_handovers_refused",
        "Spliced flows the kernel fast path's map had no room for: they stayed on the TUN path.",
        &one(handovers.refused),
    )
}
