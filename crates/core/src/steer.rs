//! PLACEHOLDER (not committed)
#[derive(Debug, Clone, Copy)]
pub struct SteerKey {
    pub k0: u32,
    pub k1: u32,
}
