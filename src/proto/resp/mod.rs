//! The Redis protocol (RESP2 and RESP3), sans-IO: the pure core of pushwire's Redis client.
//!
//! Implements the Redis serialization protocol specification
//! (<https://redis.io/docs/latest/develop/reference/protocol-spec/>, and the RESP3
//! specification it links), as far as a client needs it:
//!
//! * [`encode_command`] and [`Command`]: commands as arrays of bulk strings;
//! * [`Value`]: every type a server may send, with [`Value::encode`];
//! * [`Parser`]: the incremental reply parser, with its [`Limits`] and [`RespError`];
//! * [`RedisUrl`]: `redis://[[USER]:PASSWORD@]HOST[:PORT][/DB]` (module [`url`]);
//! * [`RedisConn`]: the state machine of one client connection: handshake, pipelining,
//!   pub/sub, deadlines (module [`conn`]); and [`Backoff`] for reconnecting.
//!
//! # The wire format
//!
//! "The first byte in an RESP-serialized payload always identifies its type", and "the
//! `\r\n` (CRLF) is the protocol's terminator, which always separates its parts":
//!
//! ```text
//!  RESP2  +OK\r\n                              simple string
//!         -ERR unknown command\r\n             simple error
//!         :1000\r\n                            integer
//!         $5\r\nhello\r\n                      bulk string
//!         *2\r\n:1\r\n:2\r\n                   array
//!         $-1\r\n  *-1\r\n                      null bulk string, null array
//!  RESP3  _\r\n                                null
//!         #t\r\n  #f\r\n                        boolean
//!         ,1.23\r\n  ,inf\r\n  ,-inf\r\n  ,nan\r\n  double
//!         (3492890328409238509324850943850\r\n  big number
//!         !21\r\nSYNTAX invalid syntax\r\n      bulk error
//!         =15\r\ntxt:Some string\r\n            verbatim string (3-byte format, ':')
//!         %1\r\n+key\r\n:1\r\n                 map (count of entries, key, value, ...)
//!         ~2\r\n:1\r\n:2\r\n                   set
//!         >3\r\n$7\r\nmessage\r\n...           push (out-of-band data)
//!         |1\r\n+ttl\r\n:3600\r\n<value>       attribute (describes the value after it)
//! ```
//!
//! Simple values are one line. Bulk values are a length line, that many bytes, and CRLF.
//! Aggregates are a count line followed by that many values (two per map entry). A client
//! only ever sends arrays of bulk strings.
//!
//! # Theory of operation
//!
//! The [`Parser`] keeps a **resumable state** instead of re-parsing a growing buffer from
//! the start, so the cost of a reply is linear in its size however it is split:
//!
//! * a stack of the aggregates still open, each with the values it has collected and the
//!   number still to come;
//! * what it is reading now: a line (with how far it has already looked for the CRLF), the
//!   data of a bulk value (with how many bytes are left), or the CRLF after that data.
//!
//! Lines are the only unit consumed whole: a line is short (at most
//! [`Limits::max_line_len`]), stays in the caller's buffer until its CRLF arrives, and the
//! search for the CRLF resumes where it stopped. Bulk data is consumed as it arrives and
//! copied once into its value, so a 64 MiB string does not have to sit in the input
//! buffer: the caller's buffer stays small, and nothing is scanned twice. A reply comes
//! out when its last byte is in; the next reply starts fresh.
//!
//! The alternative, a stateless parser re-run over the whole buffer after each read, is
//! quadratic: a reply of *n* bytes arriving in reads of *k* bytes is parsed *n / k* times.
//!
//! # Limits
//!
//! Every length and count comes from the peer, so each is checked against [`Limits`] when
//! it is read, before a byte of what it announces arrives: bulk lengths, element counts,
//! nesting depth, the total size of one reply (a bulk value is charged its whole length
//! when announced) and the length of a line (checked while the line is still incomplete).
//! Nothing is allocated from an announced size: bulk data and element vectors grow by
//! doubling as the bytes and elements actually arrive, capped at the announced size. Note
//! that a parsed value takes more memory than its bytes on the wire (an element is a
//! 32-byte [`Value`], `_\r\n` is 3 bytes), so the memory of one reply is bounded by about
//! eleven times [`Limits::max_reply_bytes`] in the worst case: lower that limit where
//! replies are known to be small.
//!
//! # Strictness
//!
//! Lines end with CRLF; a bare CR or LF is an error, as are lengths with a sign or
//! anything but digits, doubles outside the specification's grammar, nulls other than
//! `$-1`, `*-1` and `_`, a push inside another value, and bulk data not followed by CRLF.
//! RESP3's streamed strings and aggregates (`$?`, `*?`, ...) are refused
//! ([`RespError::Streamed`]): Redis does not send them ("excluding streaming strings and
//! streaming aggregates").
//!
//! # Attributes
//!
//! An attribute (`|`, "exactly like the Map type") describes the value after it and is
//! "not part of the reply". This parser **reads and drops** attributes: they count against
//! the limits (depth, elements, reply size) like any aggregate, and the value they describe
//! takes their place (so an attribute inside an array does not count as an element).
//! Redis does not send attributes today, and nothing in pushwire would use them.

pub mod backoff;
pub mod command;
pub mod conn;
pub mod limits;
pub mod parse;
pub mod url;
pub mod value;

pub use backoff::Backoff;
pub use command::{command_len, encode_command, Command};
pub use conn::{
    ConnError, Events, Failure, Phase, Protocol, Push, RedisConfig, RedisConn, Refused, SendError,
};
pub use limits::{Limits, RespError};
pub use parse::{parse, Parser};
pub use url::{Auth, Password, RedisUrl, RedisUrlError};
pub use value::Value;
