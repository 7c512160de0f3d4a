//! Initial packet keys (RFC 9001 §5.2; RFC 9369 §3.3 for version 2): derived from the
//! client's first Destination Connection ID, so anyone on the path can compute them.
//! That is what lets Kracauer read the ClientHello, and also why nothing in an Initial
//! is authenticated against a third party.
//!
//! HKDF-SHA256 with the version's salt gives the initial secret; `client in` and
//! `server in` give each side's secret; the version's `quic key`, `quic iv` and `quic hp`
//! labels give the AES-128-GCM key, the IV and the AES-128 header protection key. All
//! crypto is RustCrypto's (`hkdf`, `sha2`, `aes`); nothing here is hand-written beyond
//! the HKDF label encoding (RFC 8446 §7.1).

use aes::Aes128;
use aes::cipher::{BlockEncrypt, KeyInit, generic_array::GenericArray};
use hkdf::Hkdf;
use sha2::Sha256;

use super::Version;

/// Bytes of the AEAD key and of the header protection key (AES-128).
pub const KEY_LEN: usize = 16;
/// Bytes of the AEAD IV and nonce.
pub const IV_LEN: usize = 12;
/// Bytes of a header protection sample (one AES block).
pub const SAMPLE_LEN: usize = 16;

/// The initial salt of QUIC v1 (RFC 9001 §5.2).
const SALT_V1: [u8; 20] = [
    0x38, 0x76, 0x2c, 0xf7, 0xf5, 0x59, 0x34, 0xb3, 0x4d, 0x17, 0x9a, 0xe6, 0xa4, 0xc8, 0x0c, 0xad,
    0xcc, 0xbb, 0x7f, 0x0a,
];
/// The initial salt of QUIC v2 (RFC 9369 §3.3.1).
const SALT_V2: [u8; 20] = [
    0x0d, 0xed, 0xe3, 0xde, 0xf7, 0x00, 0xa6, 0xdb, 0x81, 0x93, 0x81, 0xbe, 0x6e, 0x26, 0x9d, 0xcb,
    0xf9, 0xbd, 0x2e, 0xd9,
];

/// Which end of the connection a secret or key belongs to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Side {
    Client,
    Server,
}

/// One side's Initial packet protection keys.
#[derive(Clone, PartialEq, Eq)]
pub struct Keys {
    key: [u8; KEY_LEN],
    iv: [u8; IV_LEN],
    hp: [u8; KEY_LEN],
}

impl core::fmt::Debug for Keys {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        // Initial keys are public by design, but there is nothing to learn from them in
        // a log either.
        f.write_str("Keys { .. }")
    }
}

impl Keys {
    /// The Initial keys `side` protects its packets with, for a connection whose client
    /// chose `dcid` as its first Destination Connection ID.
    pub fn initial(version: Version, dcid: &[u8], side: Side) -> Self {
        Self::from_secret(version, &initial_secret(version, dcid, side))
    }

    /// The keys from one side's traffic secret.
    pub fn from_secret(version: Version, secret: &[u8; 32]) -> Self {
        let (key_label, iv_label, hp_label) = match version {
            Version::V1 => (&b"quic key"[..], &b"quic iv"[..], &b"quic hp"[..]),
            Version::V2 => (&b"quicv2 key"[..], &b"quicv2 iv"[..], &b"quicv2 hp"[..]),
        };
        let mut keys = Self {
            key: [0; KEY_LEN],
            iv: [0; IV_LEN],
            hp: [0; KEY_LEN],
        };
        expand_label(secret, key_label, &mut keys.key);
        expand_label(secret, iv_label, &mut keys.iv);
        expand_label(secret, hp_label, &mut keys.hp);
        keys
    }

    /// The AEAD key.
    pub fn key(&self) -> &[u8; KEY_LEN] {
        &self.key
    }

    /// The AEAD IV.
    pub fn iv(&self) -> &[u8; IV_LEN] {
        &self.iv
    }

    /// The header protection key.
    pub fn hp(&self) -> &[u8; KEY_LEN] {
        &self.hp
    }

    /// The header protection mask for `sample` (RFC 9001 §5.4.3: one AES-128 block
    /// encryption, ECB).
    pub fn hp_mask(&self, sample: &[u8; SAMPLE_LEN]) -> [u8; SAMPLE_LEN] {
        let cipher = Aes128::new(&GenericArray::from(self.hp));
        let mut block = GenericArray::from(*sample);
        cipher.encrypt_block(&mut block);
        block.into()
    }

    /// The AEAD nonce of packet number `pn`: the IV with `pn` XORed into its low bytes
    /// (RFC 9001 §5.3).
    pub fn nonce(&self, pn: u64) -> [u8; IV_LEN] {
        let mut nonce = self.iv;
        for (n, p) in nonce[IV_LEN - 8..].iter_mut().zip(pn.to_be_bytes()) {
            *n ^= p;
        }
        nonce
    }
}

/// One side's Initial secret: HKDF-Extract with the version's salt over `dcid`, then
/// `client in` or `server in`.
pub fn initial_secret(version: Version, dcid: &[u8], side: Side) -> [u8; 32] {
    let salt = match version {
        Version::V1 => &SALT_V1,
        Version::V2 => &SALT_V2,
    };
    let (prk, _) = Hkdf::<Sha256>::extract(Some(salt), dcid);
    let label = match side {
        Side::Client => &b"client in"[..],
        Side::Server => &b"server in"[..],
    };
    let mut secret = [0u8; 32];
    expand_label(&prk.into(), label, &mut secret);
    secret
}

/// HKDF-Expand-Label (RFC 8446 §7.1) with an empty context, into `out` (at most 255
/// bytes; every caller asks for 12 to 32).
fn expand_label(secret: &[u8; 32], label: &[u8], out: &mut [u8]) {
    const PREFIX: &[u8] = b"tls13 ";
    // HkdfLabel: length (2), label length (1), "tls13 " + label, context length (1).
    let mut info = [0u8; 2 + 1 + 6 + 16 + 1];
    let full = PREFIX.len() + label.len();
    let info_len = 2 + 1 + full + 1;
    if info_len > info.len() || out.len() > usize::from(u16::MAX) {
        return;
    }
    info[..2].copy_from_slice(&(out.len() as u16).to_be_bytes());
    info[2] = full as u8;
    info[3..3 + PREFIX.len()].copy_from_slice(PREFIX);
    info[3 + PREFIX.len()..3 + full].copy_from_slice(label);
    // info[3 + full] is the empty context's length, 0.
    // A 32-byte PRK is a valid SHA-256 PRK, and the outputs here are far below the
    // 255 * 32 bytes HKDF can give, so neither call can fail.
    if let Ok(hk) = Hkdf::<Sha256>::from_prk(secret) {
        let _ = hk.expand(&info[..info_len], out);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    pub(crate) fn hex(s: &str) -> Vec<u8> {
        (0..s.len())
            .step_by(2)
            .map(|i| u8::from_str_radix(&s[i..i + 2], 16).expect("hex"))
            .collect()
    }

    const DCID: &str = "8394c8f03e515708";

    #[test]
    fn rfc_9001_a1_v1_secrets_and_keys() {
        let dcid = hex(DCID);
        let client = initial_secret(Version::V1, &dcid, Side::Client);
        assert_eq!(
            client.to_vec(),
            hex("c00cf151ca5be075ed0ebfb5c80323c42d6b7db67881289af4008f1f6c357aea")
        );
        let k = Keys::initial(Version::V1, &dcid, Side::Client);
        assert_eq!(k.key().to_vec(), hex("1f369613dd76d5467730efcbe3b1a22d"));
        assert_eq!(k.iv().to_vec(), hex("fa044b2f42a3fd3b46fb255c"));
        assert_eq!(k.hp().to_vec(), hex("9f50449e04a0e810283a1e9933adedd2"));

        let server = initial_secret(Version::V1, &dcid, Side::Server);
        assert_eq!(
            server.to_vec(),
            hex("3c199828fd139efd216c155ad844cc81fb82fa8d7446fa7d78be803acdda951b")
        );
        let k = Keys::initial(Version::V1, &dcid, Side::Server);
        assert_eq!(k.key().to_vec(), hex("cf3a5331653c364c88f0f379b6067e37"));
        assert_eq!(k.iv().to_vec(), hex("0ac1493ca1905853b0bba03e"));
        assert_eq!(k.hp().to_vec(), hex("c206b8d9b9f0f37644430b490eeaa314"));
    }

    #[test]
    fn rfc_9369_a1_v2_secrets_and_keys() {
        let dcid = hex(DCID);
        let client = initial_secret(Version::V2, &dcid, Side::Client);
        assert_eq!(
            client.to_vec(),
            hex("14ec9d6eb9fd7af83bf5a668bc17a7e283766aade7ecd0891f70f9ff7f4bf47b")
        );
        let k = Keys::initial(Version::V2, &dcid, Side::Client);
        assert_eq!(k.key().to_vec(), hex("8b1a0bc121284290a29e0971b5cd045d"));
        assert_eq!(k.iv().to_vec(), hex("91f73e2351d8fa91660e909f"));
        assert_eq!(k.hp().to_vec(), hex("45b95e15235d6f45a6b19cbcb0294ba9"));

        let server = initial_secret(Version::V2, &dcid, Side::Server);
        assert_eq!(
            server.to_vec(),
            hex("0263db1782731bf4588e7e4d93b7463907cb8cd8200b5da55a8bd488eafc37c1")
        );
        let k = Keys::initial(Version::V2, &dcid, Side::Server);
        assert_eq!(k.key().to_vec(), hex("82db637861d55e1d011f19ea71d5d2a7"));
        assert_eq!(k.iv().to_vec(), hex("dd13c276499c0249d3310652"));
        assert_eq!(k.hp().to_vec(), hex("edf6d05c83121201b436e16877593c3a"));
    }

    #[test]
    fn rfc_9001_a2_header_protection_mask() {
        let k = Keys::initial(Version::V1, &hex(DCID), Side::Client);
        let sample: [u8; 16] = hex("d1b1c98dd7689fb8ec11d242b123dc9b")
            .try_into()
            .expect("16");
        assert_eq!(k.hp_mask(&sample)[..5].to_vec(), hex("437b9aec36"));
    }

    #[test]
    fn rfc_9369_a2_header_protection_mask() {
        let k = Keys::initial(Version::V2, &hex(DCID), Side::Client);
        let sample: [u8; 16] = hex("ffe67b6abcdb4298b485dd04de806071")
            .try_into()
            .expect("16");
        assert_eq!(k.hp_mask(&sample)[..5].to_vec(), hex("94a0c95e80"));
    }

    #[test]
    fn the_nonce_is_the_iv_xor_the_packet_number() {
        let k = Keys::initial(Version::V1, &hex(DCID), Side::Client);
        let mut want = *k.iv();
        want[11] ^= 2;
        assert_eq!(k.nonce(2), want);
    }
}
