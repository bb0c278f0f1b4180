//! The limits on replies, and the errors of the reply parser.

use std::fmt;

/// The limits a [`Parser`](super::Parser) enforces on every reply, all checked before
/// memory is reserved for what they bound.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// Longest bulk string, bulk error or verbatim string, in bytes (default 64 MiB; Redis
    /// itself refuses bulk arguments above 512 MB, its `proto-max-bulk-len`).
    pub max_bulk_len: usize,
    /// Deepest nesting of aggregates (arrays, maps, sets, pushes, attributes), counting the
    /// outermost as 1 (default 32).
    pub max_depth: usize,
    /// Most elements of one array, set or push, or entries of one map or attribute
    /// (default 1,048,576).
    pub max_elements: usize,
    /// Most bytes of one reply, everything from its first type byte to its last CRLF,
    /// attributes included (default 128 MiB).
    pub max_reply_bytes: usize,
    /// Longest line (a simple string, error, number, length or count), its type byte
    /// included, without its CRLF (default 64 KiB).
    pub max_line_len: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_bulk_len: 64 << 20,
            max_depth: 32,
            max_elements: 1 << 20,
            max_reply_bytes: 128 << 20,
            max_line_len: 64 << 10,
        }
    }
}

/// Why a reply was refused: malformed, or over one of the [`Limits`]. Every such error is
/// fatal to the connection (the stream can no longer be framed), and the parser keeps
/// returning it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RespError {
    /// The first byte of a value is not one of the RESP type bytes.
    UnknownType(u8),
    /// A CR not followed by LF, or an LF without a CR before it: "The `\r\n` (CRLF) is the
    /// protocol's terminator, which always separates its parts."
    BadLineEnding,
    /// Bulk data not followed by CRLF (the length was wrong).
    MissingTerminator,
    /// A line longer than [`Limits::max_line_len`].
    LineTooLong {
        /// The limit.
        limit: usize,
    },
    /// An integer (`:`) that is not a signed 64-bit decimal number.
    BadInteger,
    /// A length or count that is not a decimal number (or `-1` where RESP2 allows a null).
    BadLength,
    /// A double (`,`) outside the specification's syntax.
    BadDouble,
    /// A boolean other than `#t` and `#f`.
    BadBoolean,
    /// A big number (`(`) that is not an optional sign and one or more digits.
    BadBigNumber,
    /// A null (`_`) with something after the underscore.
    BadNull,
    /// A verbatim string (`=`) shorter than four bytes or without `:` after its format.
    BadVerbatim,
    /// A RESP3 streamed string or aggregate (`$?`, `*?`, ...): Redis never sends them, and
    /// this parser does not read them.
    Streamed,
    /// A push (`>`) inside another value: "Pushed data may precede or follow any of RESP's
    /// data types but never inside them."
    NestedPush,
    /// A bulk length above [`Limits::max_bulk_len`].
    BulkTooLong {
        /// The length announced.
        len: u64,
        /// The limit.
        limit: usize,
    },
    /// An aggregate announcing more than [`Limits::max_elements`] elements or entries.
    TooManyElements {
        /// The count announced.
        len: u64,
        /// The limit.
        limit: usize,
    },
    /// Aggregates nested deeper than [`Limits::max_depth`].
    TooDeep {
        /// The limit.
        limit: usize,
    },
    /// A reply larger than [`Limits::max_reply_bytes`].
    ReplyTooLarge {
        /// The limit.
        limit: usize,
    },
}

impl fmt::Display for RespError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            RespError::UnknownType(b) => {
                write!(f, "unknown RESP type byte 0x{b:02x} ({:?})", char::from(*b))
            }
            RespError::BadLineEnding => write!(f, "line not terminated by CRLF"),
            RespError::MissingTerminator => write!(f, "bulk data not followed by CRLF"),
            RespError::LineTooLong { limit } => write!(f, "line longer than {limit} bytes"),
            RespError::BadInteger => write!(f, "integer is not a signed 64-bit decimal number"),
            RespError::BadLength => write!(f, "length or count is not a decimal number"),
            RespError::BadDouble => write!(f, "malformed double"),
            RespError::BadBoolean => write!(f, "boolean is neither #t nor #f"),
            RespError::BadBigNumber => write!(f, "malformed big number"),
            RespError::BadNull => write!(f, "malformed null"),
            RespError::BadVerbatim => write!(f, "verbatim string without a 3-byte format and ':'"),
            RespError::Streamed => {
                write!(f, "streamed RESP3 strings and aggregates are not supported")
            }
            RespError::NestedPush => write!(f, "push inside another value"),
            RespError::BulkTooLong { len, limit } => {
                write!(f, "bulk length {len} is over the limit of {limit} bytes")
            }
            RespError::TooManyElements { len, limit } => {
                write!(
                    f,
                    "aggregate of {len} elements is over the limit of {limit}"
                )
            }
            RespError::TooDeep { limit } => write!(f, "aggregates nested deeper than {limit}"),
            RespError::ReplyTooLarge { limit } => write!(f, "reply larger than {limit} bytes"),
        }
    }
}

impl std::error::Error for RespError {}
