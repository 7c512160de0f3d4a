//! Test-only builders: hex, ClientHellos, CRYPTO frames, and a client Initial encryptor
//! written from the primitives (AES-128-GCM, the header protection mask) with full control
//! of the first byte, independent of `protect::seal_long`.

use aes_gcm::Aes128Gcm;
use aes_gcm::aead::{AeadInPlace, KeyInit, generic_array::GenericArray};

use crate::quic::header::LongType;
use crate::quic::keys::{Keys, Side};
use crate::quic::{Version, varint};

pub fn hex(s: &str) -> Vec<u8> {
    (0..s.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&s[i..i + 2], 16).expect("hex"))
        .collect()
}

pub fn push_varint(out: &mut Vec<u8>, v: u64) {
    let mut buf = [0u8; 8];
    let n = varint::write(v, &mut buf).expect("varint");
    out.extend_from_slice(&buf[..n]);
}

/// A ClientHello handshake message naming `name`, offering ALPN `h3`, with a filler
/// extension (an unknown type) of `filler` bytes: a post-quantum key share's size.
pub fn client_hello(name: &str, filler: usize) -> Vec<u8> {
    let mut exts = Vec::new();
    let mut ext = |ty: u16, body: &[u8]| {
        exts.extend_from_slice(&ty.to_be_bytes());
        exts.extend_from_slice(&(body.len() as u16).to_be_bytes());
        exts.extend_from_slice(body);
    };
    let mut sni = vec![0];
    sni.extend_from_slice(&(name.len() as u16).to_be_bytes());
    sni.extend_from_slice(name.as_bytes());
    let mut sni_ext = (sni.len() as u16).to_be_bytes().to_vec();
    sni_ext.extend_from_slice(&sni);
    ext(0, &sni_ext);
    ext(16, b"\x00\x03\x02h3");
    ext(0x7a7a, &vec![0x5a; filler]);

    let mut body = vec![0x03, 0x03];
    body.extend_from_slice(&[0x11; 32]);
    body.push(0);
    body.extend_from_slice(&[0x00, 0x02, 0x13, 0x01, 0x01, 0x00]);
    body.extend_from_slice(&(exts.len() as u16).to_be_bytes());
    body.extend_from_slice(&exts);
    let mut msg = vec![1];
    msg.extend_from_slice(&(body.len() as u32).to_be_bytes()[1..]);
    msg.extend_from_slice(&body);
    msg
}

/// A CRYPTO frame carrying `data` at `offset`.
pub fn crypto(offset: usize, data: &[u8]) -> Vec<u8> {
    let mut f = vec![0x06];
    push_varint(&mut f, offset as u64);
    push_varint(&mut f, data.len() as u64);
    f.extend_from_slice(data);
    f
}

/// A client's Initial packets, to be put in datagrams.
#[derive(Debug, Clone)]
pub struct Client {
    pub version: Version,
    pub dcid: Vec<u8>,
    pub scid: Vec<u8>,
    /// Bits OR-ed into the first byte before protection (the reserved bits, 0x0c).
    pub reserved: u8,
}

impl Client {
    pub fn new(version: Version) -> Self {
        Self {
            version,
            dcid: vec![0xd0, 0xd1, 0xd2, 0xd3, 0xd4, 0xd5, 0xd6, 0xd7],
            scid: vec![0x5c, 0x1d],
            reserved: 0,
        }
    }

    /// One protected Initial with packet number `pn` (in 2 bytes) and `frames`, padded
    /// with PADDING to exactly `len` bytes (or as short as it can be, when `len` is
    /// smaller).
    pub fn initial(&self, pn: u64, frames: &[u8], len: usize) -> Vec<u8> {
        let pn_len = 2;
        let mut header =
            vec![0xc0 | LongType::Initial.bits(self.version) << 4 | self.reserved | (pn_len - 1)];
        header.extend_from_slice(&self.version.wire().to_be_bytes());
        header.push(self.dcid.len() as u8);
        header.extend_from_slice(&self.dcid);
        header.push(self.scid.len() as u8);
        header.extend_from_slice(&self.scid);
        header.push(0); // no token
        // Length in 2 bytes (always, so the header length does not depend on it).
        let fixed = header.len() + 2 + usize::from(pn_len) + 16;
        let plain_len = frames.len().max(len.saturating_sub(fixed)).max(4);
        let length = usize::from(pn_len) + plain_len + 16;
        assert!(length < 0x4000);
        header.extend_from_slice(&(0x4000 | length as u16).to_be_bytes());
        let pn_offset = header.len();
        header.extend_from_slice(&(pn as u16).to_be_bytes());

        let keys = Keys::initial(self.version, &self.dcid, Side::Client);
        let mut payload = frames.to_vec();
        payload.resize(plain_len, 0);
        let cipher = Aes128Gcm::new(&GenericArray::from(*keys.key()));
        let tag = cipher
            .encrypt_in_place_detached(&GenericArray::from(keys.nonce(pn)), &header, &mut payload)
            .expect("seal");
        let mut packet = header;
        packet.extend_from_slice(&payload);
        packet.extend_from_slice(&tag);
        let sample: [u8; 16] = packet[pn_offset + 4..pn_offset + 20]
            .try_into()
            .expect("16");
        let mask = keys.hp_mask(&sample);
        packet[0] ^= mask[0] & 0x0f;
        packet[pn_offset] ^= mask[1];
        packet[pn_offset + 1] ^= mask[2];
        packet
    }
}

/// `hello` cut at `cuts` (sorted offsets) into CRYPTO frames.
pub fn fragments(hello: &[u8], cuts: &[usize]) -> Vec<Vec<u8>> {
    let mut edges = vec![0];
    edges.extend_from_slice(cuts);
    edges.push(hello.len());
    edges
        .windows(2)
        .map(|w| crypto(w[0], &hello[w[0]..w[1]]))
        .collect()
}

/// All permutations of `0..n` (Heap's algorithm).
pub fn permutations(n: usize) -> Vec<Vec<usize>> {
    fn heap(k: usize, a: &mut Vec<usize>, out: &mut Vec<Vec<usize>>) {
        if k <= 1 {
            out.push(a.clone());
            return;
        }
        heap(k - 1, a, out);
        for i in 0..k - 1 {
            let j = if k % 2 == 0 { i } else { 0 };
            a.swap(j, k - 1);
            heap(k - 1, a, out);
        }
    }
    let mut out = Vec::new();
    heap(n, &mut (0..n).collect(), &mut out);
    out
}
