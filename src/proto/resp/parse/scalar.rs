//! The scalar types' syntax: counts, integers, doubles, verbatim strings.

use super::BulkKind;
use crate::proto::resp::{RespError, Value};

/// The value of finished bulk data.
pub(super) fn bulk_value(kind: BulkKind, mut data: Vec<u8>) -> Result<Value, RespError> {
    Ok(match kind {
        BulkKind::String => Value::BulkString(data),
        BulkKind::Error => Value::BulkError(data),
        BulkKind::Verbatim => {
            // "Exactly three (3) bytes represent the data's encoding. The colon (:)
            // character separates the encoding and data."
            let format = match data.get(..4) {
                Some([a, b, c, b':']) => [*a, *b, *c],
                _ => return Err(RespError::BadVerbatim),
            };
            data.drain(..4);
            Value::Verbatim { format, text: data }
        }
    })
}

/// A length or count: "one or more decimal digits (0..9) ... as an unsigned, base-10
/// value".
pub(super) fn parse_count(text: &[u8]) -> Result<u64, RespError> {
    if text.is_empty() || text.len() > 19 || !text.iter().all(u8::is_ascii_digit) {
        return Err(RespError::BadLength);
    }
    // Nineteen digits always fit a u64.
    Ok(text.iter().fold(0u64, |n, &d| n * 10 + u64::from(d - b'0')))
}

/// `:[<+|->]<value>`: "a signed, base-10, 64-bit integer".
pub(super) fn parse_integer(text: &[u8]) -> Result<i64, RespError> {
    let digits = match text {
        [b'+' | b'-', rest @ ..] => rest,
        _ => text,
    };
    if digits.is_empty() || digits.len() > 19 || !digits.iter().all(u8::is_ascii_digit) {
        return Err(RespError::BadInteger);
    }
    std::str::from_utf8(text)
        .ok()
        .and_then(|t| t.parse().ok())
        .ok_or(RespError::BadInteger)
}

/// `,[<+|->]<integral>[.<fractional>][<E|e>[sign]<exponent>]`, or `inf`, `-inf`, `nan`.
pub(super) fn parse_double(text: &[u8]) -> Result<f64, RespError> {
    match text {
        b"inf" => return Ok(f64::INFINITY),
        b"-inf" => return Ok(f64::NEG_INFINITY),
        b"nan" => return Ok(f64::NAN),
        _ => {}
    }
    fn digits(s: &[u8]) -> Option<&[u8]> {
        let n = s.iter().take_while(|b| b.is_ascii_digit()).count();
        (n > 0).then(|| &s[n..])
    }
    fn sign(s: &[u8]) -> &[u8] {
        match s {
            [b'+' | b'-', rest @ ..] => rest,
            _ => s,
        }
    }
    let mut rest = digits(sign(text)).ok_or(RespError::BadDouble)?;
    if let [b'.', after @ ..] = rest {
        rest = digits(after).ok_or(RespError::BadDouble)?;
    }
    if let [b'e' | b'E', after @ ..] = rest {
        rest = digits(sign(after)).ok_or(RespError::BadDouble)?;
    }
    if !rest.is_empty() {
        return Err(RespError::BadDouble);
    }
    // The syntax above is a subset of what Rust's parser takes; values out of range
    // become infinities, as in C's strtod.
    std::str::from_utf8(text)
        .ok()
        .and_then(|t| t.parse().ok())
        .ok_or(RespError::BadDouble)
}
