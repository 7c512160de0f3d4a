//! Paths with small MTUs in a testbed ([`Topology::set_link_mtus`]), and the kernel's
//! own counters of a namespace by their `nstat` names ([`Netns::net_counter`]): what a
//! path-MTU test sets up and reads (is a translated ICMP error accepted, or dropped as
//! out of window?).

use std::net::SocketAddr;
use std::thread;
use std::time::Duration;

use crate::topology::{BACKEND_A, HTTP_PORT};
use crate::{Error, Netns, Topology};

/// The files a namespace's network counters are in: `Group: names` / `Group: values`
/// row pairs (`netstat`, `snmp`) and `Name value` lines (`snmp6`).
const COUNTER_FILES: [&str; 3] = ["/proc/net/netstat", "/proc/net/snmp", "/proc/net/snmp6"];

impl Topology {
    /// Sets the client link's MTU to `client` (the client's `eth0` and the router's
    /// `to-client`) and every backend link's to `backend` (the router's `to-a`, `to-b`
    /// and `br0`, and each backend's `eth0`), then waits (bounded) until the router
    /// reaches backend a again, so that a neighbour-discovery hiccup after the change is
    /// not taken for the daemon's failure.
    pub fn set_link_mtus(&self, client: u16, backend: u16) -> Result<(), Error> {
        let (client, backend) = (client.to_string(), backend.to_string());
        self.client.ip(["link", "set", "eth0", "mtu", &client])?;
        self.router
            .ip(["link", "set", "to-client", "mtu", &client])?;
        for dev in ["to-a", "to-b", "br0"] {
            self.router.ip(["link", "set", dev, "mtu", &backend])?;
        }
        for ns in [&self.backend_a, &self.backend_b] {
            ns.ip(["link", "set", "eth0", "mtu", &backend])?;
        }
        let to = SocketAddr::from((BACKEND_A, HTTP_PORT));
        for _ in 0..10 {
            let reached = self
                .router
                .run(move || std::net::TcpStream::connect_timeout(&to, Duration::from_secs(1)))?;
            if reached.is_ok() {
                return Ok(());
            }
            thread::sleep(Duration::from_millis(500));
        }
        Err(Error::Setup(format!(
            "backend a unreachable from the router after setting MTUs {client}/{backend}"
        )))
    }
}

impl Netns {
    /// The namespace's network counter `name` as `nstat` names it: the group and the
    /// field run together (`TcpExtOutOfWindowIcmps`, `IcmpInDestUnreachs`,
    /// `Icmp6InPktTooBigs`).
    pub fn net_counter(&self, name: &str) -> Result<u64, Error> {
        for file in COUNTER_FILES {
            // A kernel without IPv6 in the namespace has no snmp6: not an error here.
            let Ok(text) = self.read(file) else {
                continue;
            };
            if let Some(v) = find_counter(&text, name) {
                return Ok(v);
            }
        }
        Err(Error::Setup(format!(
            "no counter {name} in {}",
            COUNTER_FILES.join(", ")
        )))
    }
}

/// `name` (group + field) in the text of one of [`COUNTER_FILES`].
fn find_counter(text: &str, name: &str) -> Option<u64> {
    let lines: Vec<&str> = text.lines().collect();
    // snmp6: one `Name value` per line.
    for line in &lines {
        let mut words = line.split_whitespace();
        if words.next() == Some(name) {
            return words.next()?.parse().ok();
        }
    }
    // netstat and snmp: a row of names, then a row of values, both `Group: ...`.
    for pair in lines.windows(2) {
        let (Some((group, names)), Some((again, values))) =
            (pair[0].split_once(':'), pair[1].split_once(':'))
        else {
            continue;
        };
        let Some(field) = name.strip_prefix(group) else {
            continue;
        };
        if group != again {
            continue;
        }
        let at = names.split_whitespace().position(|n| n == field);
        if let Some(v) = at.and_then(|i| values.split_whitespace().nth(i)) {
            // The names row of the next pair is not a row of numbers.
            if let Ok(v) = v.parse() {
                return Some(v);
            }
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::find_counter;

    const NETSTAT: &str = "TcpExt: SyncookiesSent OutOfWindowIcmps LockDroppedIcmps\n\
                           TcpExt: 0 7 1\n\
                           IpExt: InNoRoutes InTruncatedPkts\n\
                           IpExt: 3 4\n";
    const SNMP6: &str =
        "Ip6InReceives                   \t12\nIcmp6InPktTooBigs               \t5\n";

    #[test]
    fn counters_are_found_by_their_nstat_names() {
        assert_eq!(find_counter(NETSTAT, "TcpExtOutOfWindowIcmps"), Some(7));
        assert_eq!(find_counter(NETSTAT, "IpExtInTruncatedPkts"), Some(4));
        assert_eq!(find_counter(SNMP6, "Icmp6InPktTooBigs"), Some(5));
    }

    #[test]
    fn a_name_of_another_group_or_none_is_not_found() {
        assert_eq!(find_counter(NETSTAT, "IpExtOutOfWindowIcmps"), None);
        assert_eq!(find_counter(NETSTAT, "TcpExtNoSuchField"), None);
        assert_eq!(find_counter(SNMP6, "Icmp6InEchos"), None);
    }
}
