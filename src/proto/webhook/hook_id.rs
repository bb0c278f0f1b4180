//! The public id of a webhook endpoint: what registration answers, listings show and a
//! removal names.
//!
//! An endpoint's internal [`EndpointId`] counts up from 1, so it is guessable: anyone could
//! name, and delete, the registrations of others. The public [`HookId`] is 128 bits that
//! only the holder of the endpoint's secret could compute:
//!
//! ```text
//! HookId = first 16 bytes of SHA-256( "pushwire webhook endpoint id v1" || 0x00
//!                                     || len(key) as u64, big-endian || key
//!                                     || number as u64, big-endian )
//! ```
//!
//! where `key` is the endpoint's raw signing key (random, 32 bytes, unless the registrant
//! gave one) and `number` its [`EndpointId::as_u64`]. The tag keeps these hashes apart
//! from any other use of the key; the length prefix makes the input unambiguous. Both
//! inputs survive a restart (the durable log keeps the key and the number), so the id is
//! stable without storing anything new, and two endpoints never share one (their numbers
//! differ). Written as 32 lowercase hex digits, the only form [`HookId::from_str`] accepts.

use std::fmt;
use std::str::FromStr;

use sha2::{Digest, Sha256};

use super::engine::EndpointId;

/// The domain tag hashed before the key (see the module docs).
const TAG: &[u8] = b"pushwire webhook endpoint id v1\0";

/// The public, unguessable id of a webhook endpoint (see the module docs).
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct HookId([u8; 16]);

impl HookId {
    /// The id of endpoint `endpoint` signing with the raw key `key`.
    pub fn derive(key: &[u8], endpoint: EndpointId) -> HookId {
        let mut h = Sha256::new();
        h.update(TAG);
        h.update((key.len() as u64).to_be_bytes());
        h.update(key);
        h.update(endpoint.as_u64().to_be_bytes());
        let digest = h.finalize();
        let mut id = [0u8; 16];
        id.copy_from_slice(&digest[..16]);
        HookId(id)
    }

    /// The 16 bytes.
    pub fn as_bytes(&self) -> &[u8; 16] {
        &self.0
    }
}

impl fmt::Display for HookId {
    /// 32 lowercase hex digits.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for b in self.0 {
            write!(f, "{b:02x}")?;
        }
        Ok(())
    }
}

impl fmt::Debug for HookId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "HookId({self})")
    }
}

/// A string that is not 32 lowercase hex digits.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BadHookId;

impl fmt::Display for BadHookId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a webhook id is 32 lowercase hex digits")
    }
}

impl std::error::Error for BadHookId {}

impl FromStr for HookId {
    type Err = BadHookId;
    /// Exactly the form `Display` writes: 32 lowercase hex digits, nothing else.
    fn from_str(s: &str) -> Result<HookId, BadHookId> {
        let s = s.as_bytes();
        if s.len() != 32 {
            return Err(BadHookId);
        }
        let digit = |c: u8| match c {
            b'0'..=b'9' => Ok(c - b'0'),
            b'a'..=b'f' => Ok(c - b'a' + 10),
            _ => Err(BadHookId),
        };
        let mut id = [0u8; 16];
        for (i, pair) in s.chunks_exact(2).enumerate() {
            id[i] = digit(pair[0])? << 4 | digit(pair[1])?;
        }
        Ok(HookId(id))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn derived_from_the_key_and_the_number() {
        let a = HookId::derive(&[1; 32], EndpointId::from_u64(7));
        // The same inputs give the same id (a restart), any change another one.
        assert_eq!(a, HookId::derive(&[1; 32], EndpointId::from_u64(7)));
        assert_ne!(a, HookId::derive(&[1; 32], EndpointId::from_u64(8)));
        assert_ne!(a, HookId::derive(&[2; 32], EndpointId::from_u64(7)));
        // The length prefix: moving a byte between the key and the number changes it.
        let short = HookId::derive(&[1; 31], EndpointId::from_u64(0x0100_0000_0000_0007));
        assert_ne!(a, short);
    }

    #[test]
    fn known_answer() {
        // { printf 'pushwire webhook endpoint id v1\0'; printf '\0\0\0\0\0\0\0\x20';
        //   head -c 32 /dev/zero | tr '\0' '\1'; printf '\0\0\0\0\0\0\0\7'; } |
        //   sha256sum | cut -c1-32
        let id = HookId::derive(&[1; 32], EndpointId::from_u64(7));
        assert_eq!(id.to_string(), "a9b166cfc95f25a9d953b6fb57a8b9b7");
    }

    #[test]
    fn text_form() {
        let id = HookId::derive(b"key", EndpointId::from_u64(1));
        let text = id.to_string();
        assert_eq!(text.len(), 32);
        assert!(text
            .bytes()
            .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b)));
        assert_eq!(text.parse::<HookId>(), Ok(id));
        assert_eq!(format!("{id:?}"), format!("HookId({text})"));
        let bad = [
            "",
            "7",
            &text[..31],
            &format!("{text}0"),
            &text.to_uppercase(),
            "0123456789abcdef0123456789abcdeg",
            "+123456789abcdef0123456789abcdef",
            " 0123456789abcdef0123456789abcde",
            "0123456789abcdef0123456789abcdé",
        ];
        for s in bad {
            assert_eq!(s.parse::<HookId>(), Err(BadHookId), "{s:?}");
        }
        let max = "ffffffffffffffffffffffffffffffff"
            .parse::<HookId>()
            .unwrap();
        assert_eq!(max.as_bytes(), &[0xff; 16]);
    }
}
