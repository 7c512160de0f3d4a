//! The State message: what the old process hands the new one besides the descriptors.
//!
//! ```text
//! magic "KRCHAND\n" | protocol u16 | seed [32] | TUN name | offload u8 | queues u16
//! | metrics listener passed u8 | sysctls: count u16, (path, old value)…
//! | diversions: count u16, (0 address | 1 address ports)… | snapshots: count u16, bytes…
//! ```
//!
//! Written with the core's length-checked [`Writer`] and [`Reader`]; the snapshots
//! inside are the engines' own format, checked by `Engine::restore`.

use std::net::Ipv4Addr;
use std::path::PathBuf;

use kracauer_core::flow::snapshot::{Reader, SnapshotError, Writer};

use crate::netlink::Divert;

const MAGIC: [u8; 8] = *b"KRCHAND\n";
/// The handover protocol's version: both sides must speak the same.
pub const PROTOCOL: u16 = 1;

/// Everything the State message says.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct State {
    /// The seed every worker's secrets were drawn from.
    pub seed: [u8; 32],
    pub tun: String,
    pub offload: bool,
    /// Queue descriptors passed, in worker order.
    pub queues: u16,
    /// Whether the metrics listener's descriptor follows the queues'.
    pub metrics: bool,
    /// The sysctl values to put back at the last exit.
    pub sysctls: Vec<(PathBuf, String)>,
    pub diverts: Vec<Divert>,
    /// One engine snapshot per worker, in worker order.
    pub snapshots: Vec<Vec<u8>>,
}

impl State {
    pub fn encode(&self) -> Vec<u8> {
        let mut w = Writer::new();
        w.raw(&MAGIC);
        w.u16(PROTOCOL);
        w.raw(&self.seed);
        w.bytes(self.tun.as_bytes());
        w.bool(self.offload);
        w.u16(self.queues);
        w.bool(self.metrics);
        w.u16(self.sysctls.len() as u16);
        for (path, value) in &self.sysctls {
            w.bytes(path.as_os_str().as_encoded_bytes());
            w.bytes(value.as_bytes());
        }
        w.u16(self.diverts.len() as u16);
        for d in &self.diverts {
            match d {
                Divert::Route(a) => {
                    w.u8(0);
                    w.raw(&a.octets());
                }
                Divert::Rules(a, ports) | Divert::UdpRules(a, ports) => {
                    w.u8(if matches!(d, Divert::Rules(..)) { 1 } else { 2 });
                    w.raw(&a.octets());
                    w.u16(ports.len() as u16);
                    for &p in ports {
                        w.u16(p);
                    }
                }
            }
        }
        w.u16(self.snapshots.len() as u16);
        for s in &self.snapshots {
            w.bytes(s);
        }
        w.into_bytes()
    }

    pub fn decode(bytes: &[u8]) -> Result<Self, String> {
        Self::read(&mut Reader::new(bytes)).map_err(|e| format!("the handover state: {e}"))
    }

    fn read(r: &mut Reader<'_>) -> Result<Self, SnapshotError> {
        if r.raw::<8>()? != MAGIC {
            return Err(SnapshotError::BadMagic);
        }
        let found = r.u16()?;
        if found != PROTOCOL {
            return Err(SnapshotError::Version {
                found,
                supported: PROTOCOL,
            });
        }
        let seed = r.raw()?;
        let text = |b: &[u8], field| {
            String::from_utf8(b.to_vec()).map_err(|_| SnapshotError::BadField(field))
        };
        let tun = text(r.bytes()?, "TUN name")?;
        let offload = r.bool("offload")?;
        let queues = r.u16()?;
        let metrics = r.bool("metrics")?;
        let mut sysctls = Vec::new();
        for _ in 0..r.u16()? {
            let path = PathBuf::from(text(r.bytes()?, "sysctl path")?);
            sysctls.push((path, text(r.bytes()?, "sysctl value")?));
        }
        let mut diverts = Vec::new();
        for _ in 0..r.u16()? {
            let tag = r.u8()?;
            let address = Ipv4Addr::from(r.raw::<4>()?);
            diverts.push(match tag {
                0 => Divert::Route(address),
                1 | 2 => {
                    let mut ports = Vec::new();
                    for _ in 0..r.u16()? {
                        ports.push(r.u16()?);
                    }
                    if tag == 1 {
                        Divert::Rules(address, ports)
                    } else {
                        Divert::UdpRules(address, ports)
                    }
                }
                _ => return Err(SnapshotError::BadField("diversion")),
            });
        }
        let mut snapshots = Vec::new();
        for _ in 0..r.u16()? {
            snapshots.push(r.bytes()?.to_vec());
        }
        if r.remaining() > 0 {
            return Err(SnapshotError::TrailingBytes(r.remaining()));
        }
        Ok(Self {
            seed,
            tun,
            offload,
            queues,
            metrics,
            sysctls,
            diverts,
            snapshots,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn state() -> State {
        State {
            seed: [3; 32],
            tun: "kracauer0".into(),
            offload: true,
            queues: 2,
            metrics: true,
            sysctls: vec![("/proc/sys/net/ipv4/ip_forward".into(), "0".into())],
            diverts: vec![
                Divert::Route(Ipv4Addr::new(203, 0, 113, 10)),
                Divert::Rules(Ipv4Addr::new(203, 0, 113, 11), vec![80, 443]),
                Divert::UdpRules(Ipv4Addr::new(203, 0, 113, 11), vec![443]),
            ],
            snapshots: vec![vec![1, 2, 3], vec![]],
        }
    }

    #[test]
    fn handover_state_reads_back_as_written() {
        let s = state();
        assert_eq!(State::decode(&s.encode()), Ok(s));
    }

    #[test]
    fn truncated_or_damaged_handover_state_is_refused() {
        let bytes = state().encode();
        for n in 0..bytes.len() {
            assert!(State::decode(&bytes[..n]).is_err(), "{n}");
        }
        let mut other = bytes.clone();
        other[9] ^= 1;
        assert!(State::decode(&other).unwrap_err().contains("version"));
    }
}
