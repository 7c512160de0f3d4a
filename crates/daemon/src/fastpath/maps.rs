//! The fast path's map entries as the program reads them (`bpf/fastpath.h`, field for
//! field; the sizes are tested), and how a flow's [`Splice`] and addresses become one.
//!
//! Addresses and ports are kept as the bytes the packets carry (network order); the
//! splice's numbers are host-order `u32`s, which the program reads as such.

use std::net::{Ipv6Addr, SocketAddrV4, SocketAddrV6};

use kracauer_core::engine::FastpathFlow;
use kracauer_core::name::HostName;
use kracauer_core::tcp::splice::Splice;

/// `fp_flow.flags`: the client uses timestamps (`ts_offset` applies).
pub const FLAG_TIMESTAMPS: u8 = 1;
/// `fp_flow.flags`: the client's windows are expanded by `expand_ws`.
pub const FLAG_EXPAND: u8 = 2;

/// `struct fp_v4_key`: a flow's client side.
#[repr(C)]
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash)]
pub struct V4Key {
    pub client: [u8; 4],
    pub service: [u8; 4],
    pub client_port: [u8; 2],
    pub service_port: [u8; 2],
}

/// `struct fp_v6_key`: a flow's backend side, as the backend's packets carry it.
#[repr(C)]
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct V6Key {
    pub backend: [u8; 16],
    pub client: [u8; 16],
    pub backend_port: [u8; 2],
    pub client_port: [u8; 2],
}

/// Room for a host name in an entry (`fp_flow.name`).
pub const NAME_LEN: usize = 256;

/// `struct fp_flow`: the splice and addresses of a flow, what the program counts, and
/// what a daemon adopting the entry needs besides (its name, when it began, how far it
/// closed).
#[repr(C)]
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FlowEntry {
    pub delta: u32,
    pub ts_offset: u32,
    pub flags: u8,
    pub backend_ws: u8,
    pub client_ws: u8,
    pub expand_ws: u8,
    pub backend_port: [u8; 2],
    /// Bytes of `name` in use (0: no name).
    pub name_len: u8,
    pub pad: u8,
    pub client6: [u8; 16],
    pub backend6: [u8; 16],
    /// CLOCK_MONOTONIC of the last packet the program forwarded (0: none yet).
    pub last_seen_ns: u64,
    /// TCP payload bytes: [to backend, to client].
    pub bytes: [u64; 2],
    /// Packets (a GSO super-packet once): [to backend, to client].
    pub packets: [u64; 2],
    /// CLOCK_MONOTONIC when the flow began (0: not known).
    pub created_ns: u64,
    /// The program passed a FIN from the client on to the TUN path.
    pub client_fin: u8,
    /// The program passed a FIN from the backend on to the TUN path.
    pub backend_fin: u8,
    /// The program passed a RST (either way) on to the TUN path.
    pub reset: u8,
    pub pad2: [u8; 5],
    /// The flow's host name (`name_len` bytes).
    pub name: [u8; NAME_LEN],
}

impl Default for FlowEntry {
    fn default() -> Self {
        Self {
            delta: 0,
            ts_offset: 0,
            flags: 0,
            backend_ws: 0,
            client_ws: 0,
            expand_ws: 0,
            backend_port: [0; 2],
            name_len: 0,
            pad: 0,
            client6: [0; 16],
            backend6: [0; 16],
            last_seen_ns: 0,
            bytes: [0; 2],
            packets: [0; 2],
            created_ns: 0,
            client_fin: 0,
            backend_fin: 0,
            reset: 0,
            pad2: [0; 5],
            name: [0; NAME_LEN],
        }
    }
}

const _: () = assert!(size_of::<V4Key>() == 12);
const _: () = assert!(size_of::<V6Key>() == 36);
const _: () = assert!(size_of::<FlowEntry>() == 360);

/// Both ends of a spliced flow, as the engine knows them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FlowAddrs {
    pub client: SocketAddrV4,
    pub service: SocketAddrV4,
    /// The client's address in the prefix (the source of its IPv6 packets).
    pub client6: Ipv6Addr,
    pub backend: SocketAddrV6,
}

impl FlowAddrs {
    /// The key of the flow's client side.
    pub fn v4_key(&self) -> V4Key {
        V4Key {
            client: self.client.ip().octets(),
            service: self.service.ip().octets(),
            client_port: self.client.port().to_be_bytes(),
            service_port: self.service.port().to_be_bytes(),
        }
    }

    /// The key of the flow's backend side.
    pub fn v6_key(&self) -> V6Key {
        V6Key {
            backend: self.backend.ip().octets(),
            client: self.client6.octets(),
            backend_port: self.backend.port().to_be_bytes(),
            client_port: self.client.port().to_be_bytes(),
        }
    }

    /// The entry for this flow spliced with `splice`, counters zero.
    pub fn entry(&self, splice: &Splice) -> FlowEntry {
        let mut flags = 0;
        if splice.ts_offset.is_some() {
            flags |= FLAG_TIMESTAMPS;
        }
        if splice.expand_client_window.is_some() {
            flags |= FLAG_EXPAND;
        }
        FlowEntry {
            delta: splice.delta,
            ts_offset: splice.ts_offset.unwrap_or(0),
            flags,
            backend_ws: splice.backend_ws.min(14),
            client_ws: splice.client_ws.min(14),
            expand_ws: splice.expand_client_window.unwrap_or(0).min(14),
            backend_port: self.backend.port().to_be_bytes(),
            client6: self.client6.octets(),
            backend6: self.backend.ip().octets(),
            ..FlowEntry::default()
        }
    }
}

impl FlowEntry {
    /// The entry for the flow `f` handed over, counters zero, with its name and its
    /// start (`created_ns`, CLOCK_MONOTONIC) for a daemon that adopts it.
    pub fn of(f: &FastpathFlow, created_ns: u64) -> Self {
        let addrs = FlowAddrs {
            client: f.client,
            service: f.service,
            client6: f.client6,
            backend: f.backend,
        };
        let mut e = addrs.entry(&f.splice);
        e.created_ns = created_ns;
        if let Some(name) = &f.name {
            let bytes = name.as_str().as_bytes();
            let n = bytes.len().min(NAME_LEN - 1);
            e.name[..n].copy_from_slice(&bytes[..n]);
            e.name_len = n as u8;
        }
        e
    }

    /// The name written into the entry, if it is one.
    pub fn name(&self) -> Option<HostName> {
        let bytes = self.name.get(..usize::from(self.name_len))?;
        if bytes.is_empty() {
            return None;
        }
        HostName::parse(bytes).ok()
    }

    /// The splice this entry translates with.
    pub fn splice(&self) -> Splice {
        Splice {
            delta: self.delta,
            ts_offset: (self.flags & FLAG_TIMESTAMPS != 0).then_some(self.ts_offset),
            backend_ws: self.backend_ws,
            client_ws: self.client_ws,
            expand_client_window: (self.flags & FLAG_EXPAND != 0).then_some(self.expand_ws),
        }
    }

    /// The flow's addresses, with `key` (the entry's client side).
    pub fn addrs(&self, key: &V4Key) -> FlowAddrs {
        FlowAddrs {
            client: SocketAddrV4::new(key.client.into(), u16::from_be_bytes(key.client_port)),
            service: SocketAddrV4::new(key.service.into(), u16::from_be_bytes(key.service_port)),
            client6: self.client6.into(),
            backend: SocketAddrV6::new(
                self.backend6.into(),
                u16::from_be_bytes(self.backend_port),
                0,
                0,
            ),
        }
    }
}
