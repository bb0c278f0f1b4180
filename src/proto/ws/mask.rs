//! Payload masking (RFC 6455 §5.3).
//!
//! > The masking key is a 32-bit value chosen at random by the client. [...] Octet i of the
//! > transformed data ("transformed-octet-i") is the XOR of octet i of the original data
//! > ("original-octet-i") with octet at index i modulo 4 of the masking key
//! > ("masking-key-octet-j"): `j = i MOD 4; transformed-octet-i = original-octet-i XOR
//! > masking-key-octet-j`
//!
//! Masking is its own inverse, so the same functions mask and unmask. Both take `offset`, the
//! index within the frame payload of `buf[0]`, so a payload that arrives in pieces can be
//! unmasked piece by piece as it comes in.
//!
//! [`apply_mask`] works a machine word at a time in safe code; [`apply_mask_bytewise`] is the
//! plain loop of the RFC's formula and serves as its test oracle (and as the baseline of
//! `benches/unmask.rs`).

/// XORs `buf` with the masking `key`, one byte at a time, exactly as §5.3 describes.
///
/// `offset` is the index within the payload of `buf[0]` (only `offset % 4` matters).
pub fn apply_mask_bytewise(buf: &mut [u8], key: [u8; 4], offset: usize) {
    for (i, byte) in buf.iter_mut().enumerate() {
        *byte ^= key[offset.wrapping_add(i) & 3];
    }
}

/// XORs `buf` with the masking `key`, 16 bytes at a time; same result as
/// [`apply_mask_bytewise`].
///
/// `offset` is the index within the payload of `buf[0]` (only `offset % 4` matters). `buf` may
/// start at any address: words are loaded with `from_ne_bytes`, which has no alignment
/// requirement.
pub fn apply_mask(buf: &mut [u8], key: [u8; 4], offset: usize) {
    // Rotate the key so that rotated[0] applies to buf[0].
    let s = offset & 3;
    let k = [key[s], key[(s + 1) & 3], key[(s + 2) & 3], key[(s + 3) & 3]];
    // The key repeated to fill a word; any word width that is a multiple of 4 keeps the
    // key in phase from one word to the next.
    let k4 = u32::from_ne_bytes(k) as u128;
    let wide = k4 | (k4 << 32) | (k4 << 64) | (k4 << 96);

    let mut chunks = buf.chunks_exact_mut(16);
    for chunk in &mut chunks {
        let mut word = [0u8; 16];
        word.copy_from_slice(chunk);
        let masked = u128::from_ne_bytes(word) ^ wide;
        chunk.copy_from_slice(&masked.to_ne_bytes());
    }
    // The remainder starts at a multiple of 16 bytes, so the rotated key is still in phase.
    for (i, byte) in chunks.into_remainder().iter_mut().enumerate() {
        *byte ^= k[i & 3];
    }
}

/// A client's masking keys (§5.3: "a fresh masking key [...] from a strong source of
/// entropy", unpredictable to the application, §10.3). The driver draws 32 random bytes
/// when the connection opens; the keys are SHA-256 of that seed and a counter, eight keys
/// per hash, so the core needs no random source of its own and a test can fix the seed.
#[derive(Clone)]
pub struct MaskKeys {
    seed: [u8; 32],
    counter: u64,
    block: [u8; 32],
    used: usize,
}

impl std::fmt::Debug for MaskKeys {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // The seed stays out of logs.
        f.debug_struct("MaskKeys")
            .field("counter", &self.counter)
            .finish()
    }
}

impl MaskKeys {
    /// Keys derived from `seed` (random bytes from the driver).
    pub fn new(seed: [u8; 32]) -> MaskKeys {
        MaskKeys {
            seed,
            counter: 0,
            block: [0; 32],
            used: 32,
        }
    }

    /// The next key.
    pub fn next_key(&mut self) -> [u8; 4] {
        use sha2::{Digest, Sha256};
        if self.used == self.block.len() {
            let mut h = Sha256::new();
            h.update(self.seed);
            h.update(self.counter.to_be_bytes());
            self.block = h.finalize().into();
            self.counter += 1;
            self.used = 0;
        }
        let mut key = [0; 4];
        key.copy_from_slice(&self.block[self.used..self.used + 4]);
        self.used += 4;
        key
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const KEY: [u8; 4] = [0x37, 0xfa, 0x21, 0x3d];

    fn pattern(len: usize) -> Vec<u8> {
        (0..len)
            .map(|i| (i as u8).wrapping_mul(31).wrapping_add(7))
            .collect()
    }

    #[test]
    fn rfc_example_hello() {
        // RFC 6455 §5.7: "Hello" masked with 37 fa 21 3d.
        let mut payload = *b"Hello";
        apply_mask(&mut payload, KEY, 0);
        assert_eq!(payload, [0x7f, 0x9f, 0x4d, 0x51, 0x58]);
        apply_mask(&mut payload, KEY, 0);
        assert_eq!(&payload, b"Hello");
    }

    #[test]
    fn bytewise_matches_formula() {
        let mut buf = [0u8; 9];
        apply_mask_bytewise(&mut buf, [1, 2, 3, 4], 0);
        assert_eq!(buf, [1, 2, 3, 4, 1, 2, 3, 4, 1]);
        let mut buf = [0u8; 5];
        apply_mask_bytewise(&mut buf, [1, 2, 3, 4], 3);
        assert_eq!(buf, [4, 1, 2, 3, 4]);
    }

    #[test]
    fn fast_matches_bytewise_every_length_offset_and_start() {
        let backing = pattern(100 + 16);
        for start in 0..16 {
            for len in 0..=100 {
                for offset in 0..8 {
                    let mut fast = backing.clone();
                    let mut slow = backing.clone();
                    apply_mask(&mut fast[start..start + len], KEY, offset);
                    apply_mask_bytewise(&mut slow[start..start + len], KEY, offset);
                    assert_eq!(fast, slow, "start {start} len {len} offset {offset}");
                }
            }
        }
    }

    #[test]
    fn unmasking_in_pieces_equals_whole() {
        let original = pattern(100);
        let mut whole = original.clone();
        apply_mask(&mut whole, KEY, 0);
        for split in 0..=original.len() {
            let mut pieces = original.clone();
            let (a, b) = pieces.split_at_mut(split);
            apply_mask(a, KEY, 0);
            apply_mask(b, KEY, split);
            assert_eq!(pieces, whole, "split {split}");
        }
    }
}
