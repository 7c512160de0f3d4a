//! Second chance's metrics (docs/scale-out.md, "Rebalancing"): the engines' side (segments
//! passed on, received, held, dropped, orphans reset) and the daemon's (datagrams sent,
//! answers, refusals), all zero while `[scale_out]` is not configured.

use kracauer_core::engine::{DropReason, Stats};
use prometheus_client::encoding::DescriptorEncoder;

use super::{counter, one};
use crate::secondchance::Counters;

pub(super) fn encode(
    e: &mut DescriptorEncoder<'_>,
    st: &Stats,
    c: &Counters,
) -> Result<(), std::fmt::Error> {
    let get = Counters::get;
    for (name, help, n) in [
        (
            "kracauer_second_chance_passed",
            "Client segments for no flow held here passed to the peer instances instead of reset.",
            st.second_chance_passed,
        ),
        (
            "kracauer_second_chance_sent",
            "Second-chance datagrams sent to peers (a passed segment goes to every peer).",
            get(&c.sent),
        ),
        (
            "kracauer_second_chance_send_errors",
            "Second-chance datagrams the socket refused to send.",
            get(&c.send_errors),
        ),
        (
            "kracauer_second_chance_received",
            "Segments peers passed to this instance.",
            st.second_chance_received,
        ),
        (
            "kracauer_second_chance_delivered",
            "Segments peers passed on for a flow this instance holds (handled as from the TUN).",
            st.second_chance_held,
        ),
        (
            "kracauer_second_chance_no_flow",
            "Segments peers passed on for no flow held here: dropped, answered \"not held\".",
            st.drops(DropReason::ClientSecondChanceNoFlow),
        ),
        (
            "kracauer_second_chance_orphans_reset",
            "Passed segments every peer answered \"not held\": reset here, as without second chance.",
            st.second_chance_orphans_reset,
        ),
    ] {
        counter(e, name, help, &one(n))?;
    }
    counter(
        e,
        "kracauer_second_chance_not_held",
        "\"Not held\" answers, sent to peers and received from them.",
        &[
            (vec![("direction", "sent")], get(&c.not_held_sent)),
            (vec![("direction", "received")], get(&c.not_held_received)),
        ],
    )?;
    counter(
        e,
        "kracauer_second_chance_refused",
        "Second-chance datagrams refused: from an address that is no peer, with a bad header, with no room in the worker's inbox, or with offloads the worker's TUN queue lacks.",
        &[
            (vec![("reason", "not_peer")], get(&c.not_peer)),
            (vec![("reason", "bad_header")], get(&c.bad_header)),
            (vec![("reason", "inbox_full")], get(&c.inbox_full)),
            (vec![("reason", "offload")], get(&c.refused)),
        ],
    )
}
