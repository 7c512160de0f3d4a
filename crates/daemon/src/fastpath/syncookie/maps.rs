//! The SYN cookie program's map entries as it reads them (`bpf/syncookie.h`, field for
//! field; the sizes are tested), and its counters by name.

/// `struct sc_config`: what the daemon tells the program.
#[repr(C)]
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ScConfig {
    /// The root of the cookies' epoch keys (the engines' `cookie_root`).
    pub root: [u64; 2],
    /// The MSS Kracauer announces: the IPv6 MTU − 60.
    pub mss: u16,
    /// The window scale Kracauer announces.
    pub wscale: u8,
    /// 1: flood mode (SYNs answered in the kernel, ACKs of no flow checked).
    pub flood: u8,
    pub pad: u32,
}

/// `struct sc_key`: a connection's client side, as its IPv4 packets carry it.
#[repr(C)]
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash)]
pub struct ScKey {
    pub client: [u8; 4],
    pub service: [u8; 4],
    pub client_port: [u8; 2],
    pub service_port: [u8; 2],
}

const _: () = assert!(size_of::<ScConfig>() == 24);
const _: () = assert!(size_of::<ScKey>() == 12);

/// `enum sc_stat`, in order.
pub const STATS: [&str; 9] = [
    "syn_seen",
    "syn_answered",
    "syn_passed",
    "cookie_valid",
    "cookie_invalid",
    "pass_unsure",
    "pass_route",
    "failed",
    "no_route",
];
/// Index of SYNs to a service port.
pub const SYN_SEEN: usize = 0;
/// Index of SYNs answered in the kernel.
pub const SYN_ANSWERED: usize = 1;
/// Index of ACKs whose cookie checked.
pub const COOKIE_VALID: usize = 3;
/// Index of ACKs of no flow whose cookie failed (dropped).
pub const COOKIE_INVALID: usize = 4;
