//! Standard Webhooks signatures (symmetric scheme, `v1`): signing for senders and
//! verification for receivers.
//!
//! The [Standard Webhooks specification] (version 1.0.0, "Verifying webhook authenticity")
//! signs the message id, the attempt's timestamp and the body together:
//!
//! > The content to be signed is therefore: `{msg_id}.{timestamp}.{payload}`.
//!
//! with HMAC-SHA256 under a secret shared with the receiver. The secret is shown to people
//! as `whsec_` followed by the standard base64 of its bytes ("Random. At least 24 bytes");
//! pushwire accepts 24 to 64 bytes. The signature travels in the `webhook-signature`
//! header as `v1,` + base64 of the 32-byte MAC; the header is
//!
//! > a space delimited list of signatures associated with this webhook
//!
//! so a sender can sign with an old and a new key while rotating secrets, and a receiver
//! accepts the message when any `v1` entry matches. Entries of other versions (such as
//! `v1a`, the asymmetric ed25519 scheme) are skipped.
//!
//! [`verify`] also enforces the replay window the spec asks for ("verify the
//! `webhook-timestamp` header has a timestamp that is within some allowable tolerance of
//! the current timestamp"), [`DEFAULT_TOLERANCE`] being five minutes, and compares MACs in
//! constant time ("use a constant time comparison function ... Failing to do so can expose
//! consumers to timing-attacks").
//!
//! The current time is a parameter: nothing here reads the clock.
//!
//! [Standard Webhooks specification]: https://www.standardwebhooks.com

use std::fmt;
use std::str::FromStr;
use std::time::Duration;

use base64::engine::general_purpose::STANDARD;
use base64::Engine as _;
use hmac::{Hmac, Mac};
use sha2::Sha256;

type HmacSha256 = Hmac<Sha256>;

/// The prefix that marks a symmetric Standard Webhooks secret.
pub const SECRET_PREFIX: &str = "whsec_";

/// The shortest secret accepted, in bytes ("At least 24 bytes (192 bits)").
pub const MIN_SECRET_LEN: usize = 24;

/// The longest secret accepted, in bytes.
pub const MAX_SECRET_LEN: usize = 64;

/// How far a `webhook-timestamp` may be from the receiver's clock, either way, by default.
pub const DEFAULT_TOLERANCE: Duration = Duration::from_secs(5 * 60);

/// The largest base64 text that can hold a [`MAX_SECRET_LEN`]-byte secret; longer input is
/// refused before anything is decoded.
const MAX_SECRET_B64_LEN: usize = MAX_SECRET_LEN.div_ceil(3) * 4;

/// A webhook signing secret: 24 to 64 random bytes.
///
/// `Display` (and so `to_string()`) gives the `whsec_<base64>` form to hand to a receiver;
/// `Debug` never prints the key.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret {
    key: Vec<u8>,
}

/// Why a secret was refused.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SecretError {
    /// The text does not start with `whsec_`.
    MissingPrefix,
    /// The part after `whsec_` is not standard (padded) base64.
    BadBase64,
    /// The key is shorter than [`MIN_SECRET_LEN`] bytes (carries the length found).
    TooShort(usize),
    /// The key is longer than [`MAX_SECRET_LEN`] bytes (carries the length found, or a
    /// lower bound when the text was too long to decode).
    TooLong(usize),
}

impl fmt::Display for SecretError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            SecretError::MissingPrefix => write!(f, "a webhook secret must start with \"whsec_\""),
            SecretError::BadBase64 => {
                write!(f, "a webhook secret must be \"whsec_\" followed by standard base64")
            }
            SecretError::TooShort(n) => write!(
                f,
                "a webhook secret must hold {MIN_SECRET_LEN} to {MAX_SECRET_LEN} bytes, this one has {n}"
            ),
            SecretError::TooLong(n) => write!(
                f,
                "a webhook secret must hold {MIN_SECRET_LEN} to {MAX_SECRET_LEN} bytes, this one has {n}"
            ),
        }
    }
}

impl std::error::Error for SecretError {}

impl Secret {
    /// Parses the `whsec_<base64>` form. The base64 is the standard alphabet with padding;
    /// the decoded key must be 24 to 64 bytes long.
    pub fn parse(text: &str) -> Result<Secret, SecretError> {
        let b64 = text
            .strip_prefix(SECRET_PREFIX)
            .ok_or(SecretError::MissingPrefix)?;
        // Limits before allocation: never decode more than a maximal key's worth of text.
        if b64.len() > MAX_SECRET_B64_LEN {
            return Err(SecretError::TooLong(b64.len() / 4 * 3));
        }
        let key = STANDARD.decode(b64).map_err(|_| SecretError::BadBase64)?;
        Secret::from_bytes(&key)
    }

    /// Wraps raw key bytes (for example 32 random bytes from the driver), checking the same
    /// 24..=64 length rule as [`Secret::parse`].
    pub fn from_bytes(key: &[u8]) -> Result<Secret, SecretError> {
        if key.len() < MIN_SECRET_LEN {
            return Err(SecretError::TooShort(key.len()));
        }
        if key.len() > MAX_SECRET_LEN {
            return Err(SecretError::TooLong(key.len()));
        }
        Ok(Secret { key: key.to_vec() })
    }

    /// The raw key bytes.
    pub fn as_bytes(&self) -> &[u8] {
        &self.key
    }

    /// Signs one attempt: returns the `webhook-signature` header value
    /// `v1,<base64 of HMAC-SHA256 over "{msg_id}.{timestamp}.{body}">`.
    ///
    /// The spec warns that the id and timestamp must not be user-controlled, "or at the
    /// very least not be allowed to include any `.`": pushwire builds both itself.
    pub fn sign(&self, msg_id: &str, timestamp: u64, body: &[u8]) -> String {
        let mac = self.mac(msg_id, timestamp.to_string().as_bytes(), body);
        let mut out = String::with_capacity(3 + 44);
        out.push_str("v1,");
        STANDARD.encode_string(mac, &mut out);
        out
    }

    /// Verifies a received webhook against this one secret; see [`verify`].
    pub fn verify(
        &self,
        msg_id: &str,
        timestamp: &str,
        signature_header: &str,
        body: &[u8],
        now_unix: u64,
        tolerance: Duration,
    ) -> Result<(), VerifyError> {
        verify(
            std::slice::from_ref(self),
            msg_id,
            timestamp,
            signature_header,
            body,
            now_unix,
            tolerance,
        )
    }

    fn mac(&self, msg_id: &str, timestamp: &[u8], body: &[u8]) -> [u8; 32] {
        self.keyed(msg_id, timestamp, body)
            .finalize()
            .into_bytes()
            .into()
    }

    /// The HMAC state after `msg_id.timestamp.body`, ready to finalize or to verify.
    fn keyed(&self, msg_id: &str, timestamp: &[u8], body: &[u8]) -> HmacSha256 {
        // HMAC is defined for keys of any length (RFC 2104 §2), so this cannot fail.
        let mut mac = match HmacSha256::new_from_slice(&self.key) {
            Ok(mac) => mac,
            Err(_) => unreachable!("HMAC accepts keys of any length"),
        };
        mac.update(msg_id.as_bytes());
        mac.update(b".");
        mac.update(timestamp);
        mac.update(b".");
        mac.update(body);
        mac
    }
}

impl fmt::Display for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(SECRET_PREFIX)?;
        f.write_str(&STANDARD.encode(&self.key))
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Secret({} bytes, redacted)", self.key.len())
    }
}

impl FromStr for Secret {
    type Err = SecretError;
    fn from_str(s: &str) -> Result<Secret, SecretError> {
        Secret::parse(s)
    }
}

/// Why [`verify`] refused a webhook.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum VerifyError {
    /// A header was absent (passed as an empty string): carries its name.
    MissingHeader(&'static str),
    /// `webhook-timestamp` is not an integer number of unix seconds.
    BadTimestamp,
    /// The timestamp is further in the past than the tolerance allows (replay?).
    TooOld,
    /// The timestamp is further in the future than the tolerance allows.
    TooNew,
    /// No `v1` entry of `webhook-signature` matches any of the secrets.
    NoMatchingSignature,
}

impl fmt::Display for VerifyError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            VerifyError::MissingHeader(name) => write!(f, "missing {name} header"),
            VerifyError::BadTimestamp => {
                write!(
                    f,
                    "webhook-timestamp is not an integer number of unix seconds"
                )
            }
            VerifyError::TooOld => write!(f, "webhook-timestamp is too old"),
            VerifyError::TooNew => write!(f, "webhook-timestamp is too far in the future"),
            VerifyError::NoMatchingSignature => write!(f, "no matching v1 signature"),
        }
    }
}

impl std::error::Error for VerifyError {}

/// Verifies a received webhook, as a Standard Webhooks receiver.
///
/// `msg_id`, `timestamp` and `signature_header` are the values of the `webhook-id`,
/// `webhook-timestamp` and `webhook-signature` headers; pass `""` for an absent header.
/// `body` is the raw request body exactly as received. `now_unix` is the receiver's clock
/// in unix seconds, and the timestamp must lie within `tolerance` of it either way.
///
/// Passes when any `v1,<base64>` entry of the space-separated signature header equals the
/// MAC under any of `secrets` (several secrets allow key rotation on the receiving side).
/// Comparisons run in constant time with respect to the MAC bytes.
pub fn verify(
    secrets: &[Secret],
    msg_id: &str,
    timestamp: &str,
    signature_header: &str,
    body: &[u8],
    now_unix: u64,
    tolerance: Duration,
) -> Result<(), VerifyError> {
    if msg_id.is_empty() {
        return Err(VerifyError::MissingHeader("webhook-id"));
    }
    if timestamp.is_empty() {
        return Err(VerifyError::MissingHeader("webhook-timestamp"));
    }
    if signature_header.is_empty() {
        return Err(VerifyError::MissingHeader("webhook-signature"));
    }
    let ts = parse_unix_seconds(timestamp).ok_or(VerifyError::BadTimestamp)?;
    let tolerance = tolerance.as_secs();
    if now_unix > ts && now_unix - ts > tolerance {
        return Err(VerifyError::TooOld);
    }
    if ts > now_unix && ts - now_unix > tolerance {
        return Err(VerifyError::TooNew);
    }
    let macs: Vec<HmacSha256> = secrets
        .iter()
        .map(|s| s.keyed(msg_id, timestamp.as_bytes(), body))
        .collect();
    let mut decoded = [0u8; 32];
    for entry in signature_header.split(' ') {
        let Some(("v1", b64)) = entry.split_once(',') else {
            continue; // another version (v1a, ...), or not a signature at all
        };
        // A v1 MAC is 32 bytes = 44 base64 characters; anything else cannot match.
        if b64.len() != 44 {
            continue;
        }
        match STANDARD.decode_slice(b64, &mut decoded) {
            Ok(32) => {}
            _ => continue,
        }
        // `verify_slice` is the hmac crate's own constant-time comparison (`subtle`).
        if macs
            .iter()
            .any(|mac| mac.clone().verify_slice(&decoded).is_ok())
        {
            return Ok(());
        }
    }
    Err(VerifyError::NoMatchingSignature)
}

/// Digits only (no sign, no spaces), at most what fits in a `u64`.
fn parse_unix_seconds(text: &str) -> Option<u64> {
    if text.is_empty() || !text.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    text.parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    // The example published with the Standard Webhooks reference libraries.
    const SPEC_SECRET: &str = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw";
    const SPEC_ID: &str = "msg_p5jXN8AQM9LWM0D4loKWxJek";
    const SPEC_TS: u64 = 1614265330;
    const SPEC_BODY: &[u8] = br#"{"test": 2432232314}"#;
    const SPEC_SIG: &str = "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE=";

    fn spec_secret() -> Secret {
        Secret::parse(SPEC_SECRET).unwrap()
    }

    #[test]
    fn spec_vector_signs_exactly() {
        assert_eq!(spec_secret().sign(SPEC_ID, SPEC_TS, SPEC_BODY), SPEC_SIG);
    }

    #[test]
    fn own_vector() {
        // 24 bytes 0x00..0x17; MAC computed independently with
        // `printf 'msg_1.1700000000.{}' | openssl dgst -sha256 -mac HMAC -macopt hexkey:0001..17 -binary | base64`
        let key: Vec<u8> = (0u8..24).collect();
        let s = Secret::from_bytes(&key).unwrap();
        assert_eq!(s.to_string(), "whsec_AAECAwQFBgcICQoLDA0ODxAREhMUFRYX");
        assert_eq!(
            s.sign("msg_1", 1_700_000_000, b"{}"),
            "v1,ehZEL34p4RtokJ76Mky/c6YT0NkxG/H/gdzahhXIyv0="
        );
    }

    #[test]
    fn secret_round_trip_and_debug_redacts() {
        let s = spec_secret();
        assert_eq!(s.to_string(), SPEC_SECRET);
        assert_eq!(s.as_bytes().len(), 24);
        let dbg = format!("{s:?}");
        assert_eq!(dbg, "Secret(24 bytes, redacted)");
        assert!(!dbg.contains("MfKQ"));
        assert_eq!(SPEC_SECRET.parse::<Secret>().unwrap(), s);
    }

    #[test]
    fn secret_errors() {
        let b64 = |n: usize| STANDARD.encode(vec![7u8; n]);
        let table: Vec<(String, Result<usize, SecretError>)> = vec![
            (format!("whsec_{}", b64(24)), Ok(24)),
            (format!("whsec_{}", b64(64)), Ok(64)),
            (format!("whsec_{}", b64(32)), Ok(32)),
            (format!("whsec_{}", b64(23)), Err(SecretError::TooShort(23))),
            (format!("whsec_{}", b64(65)), Err(SecretError::TooLong(65))),
            (
                format!("whsec_{}", b64(300)),
                Err(SecretError::TooLong(300)),
            ),
            (b64(32), Err(SecretError::MissingPrefix)),
            (
                format!("WHSEC_{}", b64(32)),
                Err(SecretError::MissingPrefix),
            ),
            ("whsec_not base64!!".into(), Err(SecretError::BadBase64)),
            // unpadded and URL-safe alphabets are not the standard form
            (
                "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaS".into(),
                Err(SecretError::BadBase64),
            ),
            (
                "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLa_w".into(),
                Err(SecretError::BadBase64),
            ),
            ("whsec_".into(), Err(SecretError::TooShort(0))),
        ];
        for (text, want) in table {
            let got = Secret::parse(&text).map(|s| s.as_bytes().len());
            assert_eq!(got, want, "{text}");
        }
        assert_eq!(Secret::from_bytes(&[1; 23]), Err(SecretError::TooShort(23)));
        assert_eq!(Secret::from_bytes(&[1; 65]), Err(SecretError::TooLong(65)));
        assert_eq!(
            SecretError::TooShort(3).to_string(),
            "a webhook secret must hold 24 to 64 bytes, this one has 3"
        );
    }

    fn v(
        secrets: &[Secret],
        ts: &str,
        sig: &str,
        body: &[u8],
        now: u64,
    ) -> Result<(), VerifyError> {
        verify(secrets, SPEC_ID, ts, sig, body, now, DEFAULT_TOLERANCE)
    }

    #[test]
    fn verify_table() {
        let s = [spec_secret()];
        let other = Secret::from_bytes(&[9; 32]).unwrap();
        let ts = "1614265330";
        let now = SPEC_TS;
        let other_sig = other.sign(SPEC_ID, SPEC_TS, SPEC_BODY);
        type Row<'a> = (&'a str, String, &'a [u8], u64, Result<(), VerifyError>);
        let table: Vec<Row> = vec![
            (ts, SPEC_SIG.into(), SPEC_BODY, now, Ok(())),
            (ts, SPEC_SIG.into(), SPEC_BODY, now + 300, Ok(())),
            (ts, SPEC_SIG.into(), SPEC_BODY, now - 300, Ok(())),
            (
                ts,
                SPEC_SIG.into(),
                SPEC_BODY,
                now + 301,
                Err(VerifyError::TooOld),
            ),
            (
                ts,
                SPEC_SIG.into(),
                SPEC_BODY,
                now - 301,
                Err(VerifyError::TooNew),
            ),
            // rotation: several entries, other versions skipped
            (
                ts,
                format!("v1a,AAAA v1,bm9wZQ== {SPEC_SIG}"),
                SPEC_BODY,
                now,
                Ok(()),
            ),
            (
                ts,
                format!("{other_sig} {SPEC_SIG}"),
                SPEC_BODY,
                now,
                Ok(()),
            ),
            (
                ts,
                other_sig.clone(),
                SPEC_BODY,
                now,
                Err(VerifyError::NoMatchingSignature),
            ),
            // the right MAC under another version tag does not count
            (
                ts,
                SPEC_SIG.replace("v1,", "v2,"),
                SPEC_BODY,
                now,
                Err(VerifyError::NoMatchingSignature),
            ),
            (
                ts,
                SPEC_SIG.into(),
                b"{\"test\": 2432232315}",
                now,
                Err(VerifyError::NoMatchingSignature),
            ),
            (
                ts,
                "garbage".into(),
                SPEC_BODY,
                now,
                Err(VerifyError::NoMatchingSignature),
            ),
            (
                "1614265330 ",
                SPEC_SIG.into(),
                SPEC_BODY,
                now,
                Err(VerifyError::BadTimestamp),
            ),
            (
                "+1614265330",
                SPEC_SIG.into(),
                SPEC_BODY,
                now,
                Err(VerifyError::BadTimestamp),
            ),
            (
                "99999999999999999999999",
                SPEC_SIG.into(),
                SPEC_BODY,
                now,
                Err(VerifyError::BadTimestamp),
            ),
            (
                "",
                SPEC_SIG.into(),
                SPEC_BODY,
                now,
                Err(VerifyError::MissingHeader("webhook-timestamp")),
            ),
            (
                ts,
                String::new(),
                SPEC_BODY,
                now,
                Err(VerifyError::MissingHeader("webhook-signature")),
            ),
        ];
        for (ts, sig, body, now, want) in table {
            assert_eq!(
                v(&s, ts, &sig, body, now),
                want,
                "ts={ts:?} sig={sig:?} now={now}"
            );
        }
        // the other secret alone matches its own signature; two secrets match either
        assert_eq!(
            v(std::slice::from_ref(&other), ts, &other_sig, SPEC_BODY, now),
            Ok(())
        );
        assert_eq!(
            v(&[other, spec_secret()], ts, SPEC_SIG, SPEC_BODY, now),
            Ok(())
        );
        assert_eq!(
            verify(&s, "", ts, SPEC_SIG, SPEC_BODY, now, DEFAULT_TOLERANCE),
            Err(VerifyError::MissingHeader("webhook-id"))
        );
        // the id is covered by the signature
        assert_eq!(
            verify(
                &s,
                "msg_other",
                ts,
                SPEC_SIG,
                SPEC_BODY,
                now,
                DEFAULT_TOLERANCE
            ),
            Err(VerifyError::NoMatchingSignature)
        );
        assert_eq!(
            spec_secret().verify(SPEC_ID, ts, SPEC_SIG, SPEC_BODY, now, Duration::ZERO),
            Ok(())
        );
        assert_eq!(
            VerifyError::MissingHeader("webhook-id").to_string(),
            "missing webhook-id header"
        );
    }

    #[test]
    fn sign_then_verify() {
        let s = Secret::from_bytes(&[0xA5; 64]).unwrap();
        for body in [&b""[..], b"x", b"{\"a\":[1,2,3]}", &[0xFF; 1000]] {
            let sig = s.sign("msg_abc", 42, body);
            assert_eq!(
                s.verify("msg_abc", "42", &sig, body, 42, DEFAULT_TOLERANCE),
                Ok(())
            );
        }
    }
}
