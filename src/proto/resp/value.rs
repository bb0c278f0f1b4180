//! The values a Redis server sends, and their encoding (the inverse of the
//! [`Parser`](super::Parser)).
//!
//! One [`Value`] variant per RESP type of the specification's table, RESP2 and RESP3
//! alike; the three RESP2/RESP3 nulls stay apart (`$-1`, `*-1`, `_`) so that a parsed value
//! encodes back to the same bytes. Attributes (`|`) have no variant: the parser reads and
//! drops them (see the [module docs](super#attributes)).

use std::fmt;

/// One RESP value: a whole reply, or one element of an aggregate.
///
/// Byte strings are kept as bytes (`Vec<u8>`): RESP is binary-safe, and even simple strings
/// and errors are not promised to be UTF-8. Equality compares doubles by their bits, so
/// `NaN == NaN` and `0.0 != -0.0` (what a round trip through the encoder preserves); that
/// makes `Value` [`Eq`].
#[derive(Clone)]
pub enum Value {
    /// `+OK\r\n`: a short string without CR or LF.
    SimpleString(Vec<u8>),
    /// `-ERR message\r\n`: an error reply. The command failed, the connection did not.
    Error(Vec<u8>),
    /// `:1000\r\n`: a signed 64-bit integer.
    Integer(i64),
    /// `$5\r\nhello\r\n`: a binary-safe string.
    BulkString(Vec<u8>),
    /// `*2\r\n...`: an ordered list of values.
    Array(Vec<Value>),
    /// `$-1\r\n`: the RESP2 null bulk string (`GET` of a missing key).
    NullBulk,
    /// `*-1\r\n`: the RESP2 null array (`BLPOP` timing out).
    NullArray,
    /// `_\r\n`: the RESP3 null.
    Null,
    /// `#t\r\n` / `#f\r\n` (RESP3).
    Boolean(bool),
    /// `,1.23\r\n`, `,inf\r\n`, `,-inf\r\n`, `,nan\r\n` (RESP3).
    Double(f64),
    /// `(3492890328409238509324850943850943825024385\r\n` (RESP3): an integer outside the
    /// 64-bit range, kept as its text (an optional sign and one or more digits).
    BigNumber(Vec<u8>),
    /// `!21\r\nSYNTAX invalid syntax\r\n` (RESP3): a binary-safe error reply.
    BulkError(Vec<u8>),
    /// `=15\r\ntxt:Some string\r\n` (RESP3): a string with a three-byte format hint
    /// (`txt`, `mkd`).
    Verbatim {
        /// The three bytes before the `:`.
        format: [u8; 3],
        /// The bytes after the `:`.
        text: Vec<u8>,
    },
    /// `%2\r\n<key><value><key><value>` (RESP3): key-value pairs in the order received.
    Map(Vec<(Value, Value)>),
    /// `~3\r\n...` (RESP3): an unordered collection, kept in the order received.
    Set(Vec<Value>),
    /// `>3\r\n...` (RESP3): out-of-band data (pub/sub messages, invalidations). Only ever
    /// a whole reply, never inside another value.
    Push(Vec<Value>),
}

impl Value {
    /// The error text of an [`Error`](Value::Error) or [`BulkError`](Value::BulkError).
    pub fn as_error(&self) -> Option<&[u8]> {
        match self {
            Value::Error(e) | Value::BulkError(e) => Some(e),
            _ => None,
        }
    }

    /// The bytes of a simple string, bulk string or verbatim string.
    pub fn as_bytes(&self) -> Option<&[u8]> {
        match self {
            Value::SimpleString(s) | Value::BulkString(s) => Some(s),
            Value::Verbatim { text, .. } => Some(text),
            _ => None,
        }
    }

    /// The number of an [`Integer`](Value::Integer).
    pub fn as_integer(&self) -> Option<i64> {
        match self {
            Value::Integer(n) => Some(*n),
            _ => None,
        }
    }

    /// Any of the three nulls.
    pub fn is_null(&self) -> bool {
        matches!(self, Value::NullBulk | Value::NullArray | Value::Null)
    }

    /// The name of the value's RESP type, for logs and error messages.
    pub fn kind(&self) -> &'static str {
        match self {
            Value::SimpleString(_) => "simple string",
            Value::Error(_) => "simple error",
            Value::Integer(_) => "integer",
            Value::BulkString(_) => "bulk string",
            Value::Array(_) => "array",
            Value::NullBulk => "null bulk string",
            Value::NullArray => "null array",
            Value::Null => "null",
            Value::Boolean(_) => "boolean",
            Value::Double(_) => "double",
            Value::BigNumber(_) => "big number",
            Value::BulkError(_) => "bulk error",
            Value::Verbatim { .. } => "verbatim string",
            Value::Map(_) => "map",
            Value::Set(_) => "set",
            Value::Push(_) => "push",
        }
    }

    /// Appends the RESP encoding of the value to `out` (RESP3 syntax for RESP3 types).
    ///
    /// A value the [`Parser`](super::Parser) returned encodes to bytes that parse back to
    /// an equal value. A value built by hand that cannot be written in its own form without
    /// breaking the framing is written in a binary-safe form instead: a simple string with
    /// CR or LF as a bulk string, such an error as a bulk error, a big number that is not
    /// `[+-]digits` as a bulk string. The recursion follows the value's nesting (at most
    /// [`Limits::max_depth`](super::Limits::max_depth) for a parsed value).
    pub fn encode(&self, out: &mut Vec<u8>) {
        match self {
            Value::SimpleString(s) if is_line_safe(s) => line(out, b'+', s),
            Value::SimpleString(s) => blob(out, b'$', s),
            Value::Error(e) if is_line_safe(e) => line(out, b'-', e),
            Value::Error(e) => blob(out, b'!', e),
            Value::Integer(n) => line(out, b':', n.to_string().as_bytes()),
            Value::BulkString(s) => blob(out, b'$', s),
            Value::Array(items) => aggregate(out, b'*', items),
            Value::NullBulk => out.extend_from_slice(b"$-1\r\n"),
            Value::NullArray => out.extend_from_slice(b"*-1\r\n"),
            Value::Null => out.extend_from_slice(b"_\r\n"),
            Value::Boolean(true) => out.extend_from_slice(b"#t\r\n"),
            Value::Boolean(false) => out.extend_from_slice(b"#f\r\n"),
            Value::Double(d) => line(out, b',', format_double(*d).as_bytes()),
            Value::BigNumber(n) if is_big_number(n) => line(out, b'(', n),
            Value::BigNumber(n) => blob(out, b'$', n),
            Value::BulkError(e) => blob(out, b'!', e),
            Value::Verbatim { format, text } => {
                out.push(b'=');
                push_decimal(out, text.len() + 4);
                out.extend_from_slice(b"\r\n");
                out.extend_from_slice(format);
                out.push(b':');
                out.extend_from_slice(text);
                out.extend_from_slice(b"\r\n");
            }
            Value::Map(pairs) => {
                header(out, b'%', pairs.len());
                for (k, v) in pairs {
                    k.encode(out);
                    v.encode(out);
                }
            }
            Value::Set(items) => aggregate(out, b'~', items),
            Value::Push(items) => aggregate(out, b'>', items),
        }
    }

    /// The encoding as a new vector (see [`encode`](Self::encode)).
    pub fn to_bytes(&self) -> Vec<u8> {
        let mut out = Vec::new();
        self.encode(&mut out);
        out
    }
}

/// Appends `n` in decimal.
pub(crate) fn push_decimal(out: &mut Vec<u8>, mut n: usize) {
    let mut digits = [0u8; 20];
    let mut at = digits.len();
    loop {
        at -= 1;
        digits[at] = b'0' + (n % 10) as u8;
        n /= 10;
        if n == 0 {
            break;
        }
    }
    out.extend_from_slice(&digits[at..]);
}

/// `<type><len>\r\n`.
pub(crate) fn header(out: &mut Vec<u8>, kind: u8, len: usize) {
    out.push(kind);
    push_decimal(out, len);
    out.extend_from_slice(b"\r\n");
}

/// `<type><len>\r\n<data>\r\n`.
pub(crate) fn blob(out: &mut Vec<u8>, kind: u8, data: &[u8]) {
    header(out, kind, data.len());
    out.extend_from_slice(data);
    out.extend_from_slice(b"\r\n");
}

fn line(out: &mut Vec<u8>, kind: u8, text: &[u8]) {
    out.push(kind);
    out.extend_from_slice(text);
    out.extend_from_slice(b"\r\n");
}

fn aggregate(out: &mut Vec<u8>, kind: u8, items: &[Value]) {
    header(out, kind, items.len());
    for item in items {
        item.encode(out);
    }
}

fn is_line_safe(s: &[u8]) -> bool {
    !s.iter().any(|&b| b == b'\r' || b == b'\n')
}

/// `[+-]digits`, the big number syntax.
pub(crate) fn is_big_number(s: &[u8]) -> bool {
    let digits = match s {
        [b'+' | b'-', rest @ ..] => rest,
        _ => s,
    };
    !digits.is_empty() && digits.iter().all(u8::is_ascii_digit)
}

/// The shortest text that parses back to exactly `d`, in the RESP double syntax: `inf`,
/// `-inf`, `nan`, plain notation for everyday magnitudes, exponent notation for the rest
/// (Rust's `{}` and `{:e}` both print the shortest round-tripping digits).
fn format_double(d: f64) -> String {
    if d.is_nan() {
        "nan".into()
    } else if d.is_infinite() {
        if d > 0.0 { "inf" } else { "-inf" }.into()
    } else if d == 0.0 || (1e-5..1e16).contains(&d.abs()) {
        format!("{d}")
    } else {
        format!("{d:e}")
    }
}

impl PartialEq for Value {
    fn eq(&self, other: &Value) -> bool {
        use Value::*;
        match (self, other) {
            (SimpleString(a), SimpleString(b))
            | (Error(a), Error(b))
            | (BulkString(a), BulkString(b))
            | (BigNumber(a), BigNumber(b))
            | (BulkError(a), BulkError(b)) => a == b,
            (Integer(a), Integer(b)) => a == b,
            (Array(a), Array(b)) | (Set(a), Set(b)) | (Push(a), Push(b)) => a == b,
            (NullBulk, NullBulk) | (NullArray, NullArray) | (Null, Null) => true,
            (Boolean(a), Boolean(b)) => a == b,
            (Double(a), Double(b)) => a.to_bits() == b.to_bits(),
            (
                Verbatim {
                    format: fa,
                    text: ta,
                },
                Verbatim {
                    format: fb,
                    text: tb,
                },
            ) => fa == fb && ta == tb,
            (Map(a), Map(b)) => a == b,
            _ => false,
        }
    }
}

impl Eq for Value {}

/// Byte strings shown as `b"..."` with escapes, so test failures are readable.
struct Bytes<'a>(&'a [u8]);

impl fmt::Debug for Bytes<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "b\"{}\"", self.0.escape_ascii())
    }
}

impl fmt::Debug for Value {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Value::SimpleString(s) => f.debug_tuple("SimpleString").field(&Bytes(s)).finish(),
            Value::Error(s) => f.debug_tuple("Error").field(&Bytes(s)).finish(),
            Value::Integer(n) => f.debug_tuple("Integer").field(n).finish(),
            Value::BulkString(s) => f.debug_tuple("BulkString").field(&Bytes(s)).finish(),
            Value::Array(items) => f.debug_tuple("Array").field(items).finish(),
            Value::NullBulk => f.write_str("NullBulk"),
            Value::NullArray => f.write_str("NullArray"),
            Value::Null => f.write_str("Null"),
            Value::Boolean(b) => f.debug_tuple("Boolean").field(b).finish(),
            Value::Double(d) => f.debug_tuple("Double").field(d).finish(),
            Value::BigNumber(s) => f.debug_tuple("BigNumber").field(&Bytes(s)).finish(),
            Value::BulkError(s) => f.debug_tuple("BulkError").field(&Bytes(s)).finish(),
            Value::Verbatim { format, text } => f
                .debug_struct("Verbatim")
                .field("format", &Bytes(format))
                .field("text", &Bytes(text))
                .finish(),
            Value::Map(pairs) => f.debug_tuple("Map").field(pairs).finish(),
            Value::Set(items) => f.debug_tuple("Set").field(items).finish(),
            Value::Push(items) => f.debug_tuple("Push").field(items).finish(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn bulk(s: &str) -> Value {
        Value::BulkString(s.into())
    }

    #[test]
    fn encodings() {
        let table: Vec<(Value, &[u8])> = vec![
            (Value::SimpleString(b"OK".to_vec()), b"+OK\r\n"),
            (Value::Error(b"ERR no".to_vec()), b"-ERR no\r\n"),
            (Value::Integer(-42), b":-42\r\n"),
            (Value::Integer(i64::MIN), b":-9223372036854775808\r\n"),
            (bulk("hello"), b"$5\r\nhello\r\n"),
            (bulk(""), b"$0\r\n\r\n"),
            (Value::NullBulk, b"$-1\r\n"),
            (Value::NullArray, b"*-1\r\n"),
            (Value::Null, b"_\r\n"),
            (Value::Boolean(true), b"#t\r\n"),
            (Value::Boolean(false), b"#f\r\n"),
            (Value::Double(1.23), b",1.23\r\n"),
            (Value::Double(10.0), b",10\r\n"),
            (Value::Double(-0.0), b",-0\r\n"),
            (Value::Double(1e300), b",1e300\r\n"),
            (Value::Double(-2.5e-7), b",-2.5e-7\r\n"),
            (Value::Double(f64::INFINITY), b",inf\r\n"),
            (Value::Double(f64::NEG_INFINITY), b",-inf\r\n"),
            (Value::Double(f64::NAN), b",nan\r\n"),
            (Value::BigNumber(b"-123".to_vec()), b"(-123\r\n"),
            (
                Value::BulkError(b"SYNTAX x".to_vec()),
                b"!8\r\nSYNTAX x\r\n",
            ),
            (
                Value::Verbatim {
                    format: *b"txt",
                    text: b"Some string".to_vec(),
                },
                b"=15\r\ntxt:Some string\r\n",
            ),
            (
                Value::Array(vec![Value::Integer(1), bulk("a")]),
                b"*2\r\n:1\r\n$1\r\na\r\n",
            ),
            (Value::Array(vec![]), b"*0\r\n"),
            (
                Value::Map(vec![(
                    Value::SimpleString(b"k".to_vec()),
                    Value::Integer(1),
                )]),
                b"%1\r\n+k\r\n:1\r\n",
            ),
            (Value::Set(vec![Value::Null]), b"~1\r\n_\r\n"),
            (
                Value::Push(vec![bulk("message"), bulk("c"), bulk("p")]),
                b">3\r\n$7\r\nmessage\r\n$1\r\nc\r\n$1\r\np\r\n",
            ),
        ];
        for (value, bytes) in table {
            assert_eq!(value.to_bytes(), bytes, "{value:?}");
        }
    }

    #[test]
    fn unsafe_hand_made_values_keep_the_framing() {
        assert_eq!(
            Value::SimpleString(b"a\r\nb".to_vec()).to_bytes(),
            b"$4\r\na\r\nb\r\n"
        );
        assert_eq!(Value::Error(b"x\n".to_vec()).to_bytes(), b"!2\r\nx\n\r\n");
        assert_eq!(
            Value::BigNumber(b"1.5".to_vec()).to_bytes(),
            b"$3\r\n1.5\r\n"
        );
        assert_eq!(Value::BigNumber(b"-".to_vec()).to_bytes(), b"$1\r\n-\r\n");
    }

    #[test]
    fn doubles_compare_by_bits() {
        assert_eq!(Value::Double(f64::NAN), Value::Double(f64::NAN));
        assert_ne!(Value::Double(0.0), Value::Double(-0.0));
        assert_eq!(Value::Double(1.5), Value::Double(1.5));
        assert_ne!(Value::Null, Value::NullBulk);
        assert_ne!(Value::Array(vec![]), Value::Set(vec![]));
    }

    #[test]
    fn accessors_and_debug() {
        assert_eq!(Value::Error(b"E".to_vec()).as_error(), Some(&b"E"[..]));
        assert_eq!(Value::BulkError(b"E".to_vec()).as_error(), Some(&b"E"[..]));
        assert_eq!(bulk("x").as_error(), None);
        assert_eq!(bulk("x").as_bytes(), Some(&b"x"[..]));
        assert_eq!(Value::Integer(3).as_integer(), Some(3));
        assert!(Value::NullArray.is_null() && !Value::Integer(0).is_null());
        assert_eq!(Value::Map(vec![]).kind(), "map");
        assert_eq!(
            format!("{:?}", Value::Array(vec![bulk("a\r\n"), Value::Null])),
            r#"Array([BulkString(b"a\r\n"), Null])"#
        );
    }

    #[test]
    fn decimal() {
        for n in [0, 7, 10, 99, 1_000_000, usize::MAX] {
            let mut out = Vec::new();
            push_decimal(&mut out, n);
            assert_eq!(out, n.to_string().as_bytes());
        }
    }
}
