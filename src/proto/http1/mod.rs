//! HTTP/1.1 message syntax and framing, sans-IO (RFC 9110 semantics, RFC 9112 syntax).
//!
//! What lives here, and which part of the RFCs it implements:
//!
//! * [`RequestReader`]: reads requests off a connection's input buffer, one at a time:
//!   request line and header section (RFC 9112 §2-§5, parsed by `httparse`), message body
//!   length (RFC 9112 §6.3: `Content-Length`, `Transfer-Encoding: chunked`, or none),
//!   `Host` (RFC 9112 §3.2), `Expect: 100-continue` (RFC 9110 §10.1.1) and every limit.
//! * [`ChunkedDecoder`]: the chunked transfer coding with extensions and trailers
//!   (RFC 9112 §7.1), shared by both directions.
//! * [`Request`]: the parsed request with lookups for header fields (RFC 9110 §5), lists
//!   (RFC 9110 §5.6.1), the query string and `application/x-www-form-urlencoded` data.
//! * [`Response`]: a small response builder and its serialiser, plus
//!   [`write_stream_head`]/[`write_chunk`]/[`write_last_chunk`] for streamed bodies (SSE).
//! * [`ResponseReader`]: the client side, reading the answer to a webhook request.
//! * [`http_date`]/[`parse_http_date`]: the HTTP-date format (RFC 9110 §5.6.7).
//!
//! # Theory of operation
//!
//! The driver owns one input buffer per connection. After every read it calls
//! [`RequestReader::advance`] with the whole unconsumed buffer, drains the number of bytes
//! the reader says it consumed, and repeats while a request comes out. The reader is a small
//! state machine:
//!
//! ```text
//!   Idle --(first byte of a head)--> Head --(CRLF CRLF, head valid)--> Body --(complete)--> Idle
//!     ^                                |                                 |
//!     +--------- (no body) ------------+           any error: Failed (sticky)
//! ```
//!
//! * **Head**: nothing is consumed until the blank line ending the head has arrived; the
//!   reader remembers how far it has scanned, so a head dripping in byte by byte costs
//!   linear time. The head is limited to [`Limits::max_head_bytes`] even before it is
//!   complete.
//! * **Body**: body bytes are consumed as they arrive, into the request being built.
//! * **Failed**: every error is final: the driver answers `status` and closes.
//!
//! # Strictness
//!
//! Lines end with CRLF. RFC 9112 §2.2 allows ("MAY") a recipient to accept a bare LF; this
//! reader refuses it (400), because disagreement about line endings between a proxy and the
//! server behind it is a classic request-smuggling vector. The same goes for obs-fold,
//! whitespace before a field's colon, conflicting `Content-Length` values and
//! `Content-Length` together with `Transfer-Encoding`.
//!
//! Request targets are accepted in origin-form (`/path?query`), `*` for `OPTIONS`, and in
//! absolute-form (`http://host/path`), which is mapped to origin-form with the `Host` field
//! replaced by the target's authority, as RFC 9112 §3.2.2 asks of an origin server.
//! Authority-form (`CONNECT`) is refused with 400.

mod chunked;
mod client;
mod date;
mod head;
mod params;
mod query;
mod reader;
mod request;
mod response;

pub use chunked::{ChunkedDecoder, MAX_CHUNK_LINE};
pub use client::{ClientResponse, ResponseReader};
pub(crate) use date::civil_from_days;
pub use date::{http_date, parse_http_date};
pub(crate) use head::{content_length, transfer_coding, Coding, HeadScan};
pub use params::BadParam;
pub use query::form_pairs;
pub use reader::RequestReader;
pub use request::Request;
pub use response::{
    reason_phrase, write_chunk, write_extra_fields, write_last_chunk, write_stream_head, Response,
};

use std::fmt;

/// The limits a reader enforces on every message; all configurable, checked before any
/// memory is reserved.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// Largest request line plus header section, including its final CRLF, in bytes (431
    /// above it). Also bounds the trailer section of a chunked body. Default 16 KiB.
    pub max_head_bytes: usize,
    /// Most header fields in one header section (431 above it); also bounds the number of
    /// trailer fields. Default 100.
    pub max_headers: usize,
    /// Largest request body after chunked decoding (413 above it). Default 1 MiB.
    pub max_body_bytes: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_head_bytes: 16 * 1024,
            max_headers: 100,
            max_body_bytes: 1024 * 1024,
        }
    }
}

/// The protocol version of a message. Only HTTP/1.0 and HTTP/1.1 are spoken here; any other
/// version is answered with 505 (RFC 9110 §15.6.6).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Version {
    /// HTTP/1.0: connections close after each message unless `Connection: keep-alive`.
    Http10,
    /// HTTP/1.1: persistent connections, chunked transfer coding, `Host` required.
    Http11,
}

impl Version {
    /// The version as written on the wire: `"HTTP/1.0"` or `"HTTP/1.1"`.
    pub fn as_str(self) -> &'static str {
        match self {
            Version::Http10 => "HTTP/1.0",
            Version::Http11 => "HTTP/1.1",
        }
    }
}

/// One header (or trailer) field line as received: the name keeps its original case (compare
/// it with [`str::eq_ignore_ascii_case`]), the value is raw bytes with surrounding whitespace
/// removed (field values may carry obs-text, RFC 9110 §5.5).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Header {
    /// The field name, a token (RFC 9110 §5.1).
    pub name: String,
    /// The field value without leading or trailing whitespace.
    pub value: Vec<u8>,
}

/// A request or response the peer got wrong (or one that is too large): the status code to
/// answer with and a short static reason. Every such error is fatal to the connection: the
/// driver sends the status and closes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct HttpError {
    /// The HTTP status code to answer with (400, 413, 417, 431, 501, 505; 502 for a bad
    /// response read by [`ResponseReader`]).
    pub status: u16,
    /// What exactly was wrong, for the log and the response body.
    pub reason: &'static str,
}

impl HttpError {
    /// An error answered with `status`, explained by `reason`.
    pub const fn new(status: u16, reason: &'static str) -> Self {
        HttpError { status, reason }
    }

    pub(crate) const fn bad_request(reason: &'static str) -> Self {
        HttpError::new(400, reason)
    }
}

impl fmt::Display for HttpError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{} {}: {}",
            self.status,
            reason_phrase(self.status),
            self.reason
        )
    }
}

impl std::error::Error for HttpError {}

// ---------------------------------------------------------------------------------------
// Small grammar helpers shared by the submodules (RFC 9110 §5.6).

/// `tchar` (RFC 9110 §5.6.2): the characters of a token.
pub(crate) fn is_tchar(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b)
}

/// A token: one or more `tchar`.
pub(crate) fn is_token(s: &[u8]) -> bool {
    !s.is_empty() && s.iter().all(|&b| is_tchar(b))
}

/// Strips optional whitespace (`OWS = *( SP / HTAB )`) from both ends.
pub(crate) fn trim_ows(mut s: &[u8]) -> &[u8] {
    while let [b' ' | b'\t', rest @ ..] = s {
        s = rest;
    }
    while let [rest @ .., b' ' | b'\t'] = s {
        s = rest;
    }
    s
}

/// The elements of a comma-separated list (RFC 9110 §5.6.1) spread over one or more field
/// values, trimmed, with empty elements skipped ("a recipient MUST parse and ignore a
/// reasonable number of empty list elements").
pub(crate) fn list_elements<'a>(
    values: impl Iterator<Item = &'a [u8]>,
) -> impl Iterator<Item = &'a [u8]> {
    values
        .flat_map(|v| v.split(|&b| b == b','))
        .map(trim_ows)
        .filter(|e| !e.is_empty())
}

/// The values of every field called `name` (case-insensitive), in order.
pub(crate) fn values_named<'a>(
    headers: &'a [Header],
    name: &'a str,
) -> impl Iterator<Item = &'a [u8]> {
    headers
        .iter()
        .filter(move |h| h.name.eq_ignore_ascii_case(name))
        .map(|h| h.value.as_slice())
}

/// The value of the first field called `name` (case-insensitive).
pub(crate) fn first_value<'h>(headers: &'h [Header], name: &str) -> Option<&'h [u8]> {
    headers
        .iter()
        .find(|h| h.name.eq_ignore_ascii_case(name))
        .map(|h| h.value.as_slice())
}

/// Whether the list field `name` contains `token` (case-insensitive) in any of its lines.
pub(crate) fn list_has_token(headers: &[Header], name: &str, token: &str) -> bool {
    list_elements(values_named(headers, name)).any(|e| e.eq_ignore_ascii_case(token.as_bytes()))
}

/// Converts httparse's borrowed fields into owned [`Header`]s.
pub(crate) fn own_headers(parsed: &[httparse::Header<'_>]) -> Vec<Header> {
    parsed
        .iter()
        .map(|h| Header {
            name: h.name.to_owned(),
            value: trim_ows(h.value).to_vec(),
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn list_elements_trim_and_skip_empty() {
        let a: &[u8] = b" close ,, Upgrade\t";
        let b: &[u8] = b",keep-alive";
        let got: Vec<&[u8]> = list_elements([a, b].into_iter()).collect();
        assert_eq!(got, vec![&b"close"[..], b"Upgrade", b"keep-alive"]);
    }

    #[test]
    fn tokens() {
        assert!(is_token(b"chunked"));
        assert!(is_token(b"x-a.b~c"));
        assert!(!is_token(b""));
        assert!(!is_token(b"a b"));
        assert!(!is_token(b"a;b"));
        assert!(!is_token("é".as_bytes()));
    }

    #[test]
    fn error_display() {
        let e = HttpError::new(431, "header section too large");
        assert_eq!(
            e.to_string(),
            "431 Request Header Fields Too Large: header section too large"
        );
    }

    #[test]
    fn default_limits() {
        let l = Limits::default();
        assert_eq!(
            (l.max_head_bytes, l.max_headers, l.max_body_bytes),
            (16384, 100, 1048576)
        );
    }
}
