//! HTTP/1.1 framing: where a message starts and ends, and the chunked transfer coding.
//!
//! Every transport pushwire serves starts as an HTTP/1.1 request, and a webhook is an
//! HTTP/1.1 request it sends. This page shows what those messages look like on the wire and
//! how a reader knows where one ends. The code is [`crate::proto::http1`].
//!
//! # The shape of a message (RFC 9112 §2.1)
//!
//! A message is a *start line*, zero or more *field lines*, an empty line, and perhaps a
//! body. Every line ends with CR LF (`\r\n`). For a response the start line is the
//! *status line* (RFC 9112 §4): `HTTP-version SP status-code SP reason-phrase CRLF`. A
//! field line (RFC 9112 §5) is `field-name ":" OWS field-value OWS CRLF`; pushwire writes
//! one space after the colon and none at the end. Field names are case-insensitive
//! (RFC 9110 §5.1).
//!
//! [`Response::encode`](crate::proto::http1::Response::encode) writes a whole response. With a body of known size it sends
//! `Content-Length` (RFC 9110 §8.6), the body's size in decimal octets:
//!
//! ```
//! use pushwire::proto::http1::{http_date, Response, Version};
//!
//! let date = http_date(784_111_777); // RFC 9110 §5.6.7's example instant
//! let mut out = Vec::new();
//! Response::text(200, "hello").encode(Version::Http11, false, true, Some(&date), &mut out);
//! assert_eq!(
//!     out,
//!     b"HTTP/1.1 200 OK\r\n\
//!       Content-Type: text/plain; charset=utf-8\r\n\
//!       Date: Sun, 06 Nov 1994 08:49:37 GMT\r\n\
//!       Content-Length: 5\r\n\
//!       \r\n\
//!       hello"
//! );
//! ```
//!
//! | line | meaning | reference |
//! |---|---|---|
//! | `HTTP/1.1 200 OK\r\n` | status line: version, code, reason phrase | RFC 9112 §4; RFC 9110 §15.3.1 |
//! | `Content-Type: text/plain; charset=utf-8\r\n` | the media type of the body | RFC 9110 §8.3 |
//! | `Date: Sun, 06 Nov 1994 08:49:37 GMT\r\n` | when the response was made, in the IMF-fixdate form | RFC 9110 §6.6.1, §5.6.7 |
//! | `Content-Length: 5\r\n` | the body is the next 5 octets | RFC 9110 §8.6; RFC 9112 §6.2 |
//! | `\r\n` | end of the header section | RFC 9112 §2.1 |
//! | `hello` | the body | RFC 9112 §6 |
//!
//! On a keep-alive HTTP/1.1 connection nothing says "keep-alive": persistence is the
//! default (RFC 9112 §9.3). When the server will close after this response it adds
//! `Connection: close` (RFC 9112 §9.6). The date string is the crate's
//! [`http_date`](crate::proto::http1::http_date), and
//! [`parse_http_date`](crate::proto::http1::parse_http_date) reads it back (the
//! `Retry-After` of a webhook answer may be such a date, see [`super::webhooks`]):
//!
//! ```
//! use pushwire::proto::http1::{http_date, parse_http_date};
//!
//! assert_eq!(http_date(784_111_777), "Sun, 06 Nov 1994 08:49:37 GMT");
//! let now = 784_111_000;
//! assert_eq!(parse_http_date(b"Sun, 06 Nov 1994 08:49:37 GMT", now), Some(784_111_777));
//! // The two obsolete forms a recipient must also accept (RFC 9110 §5.6.7):
//! assert_eq!(parse_http_date(b"Sunday, 06-Nov-94 08:49:37 GMT", now), Some(784_111_777));
//! assert_eq!(parse_http_date(b"Sun Nov  6 08:49:37 1994", now), Some(784_111_777));
//! ```
//!
//! # How long is the body? (RFC 9112 §6.3)
//!
//! A reader decides from the header section alone, in this order:
//!
//! 1. `Transfer-Encoding` whose last coding is `chunked`: the body is a series of chunks
//!    (below), and ends with the zero-size chunk. pushwire refuses (400) a request whose
//!    `Transfer-Encoding` does not end in `chunked`, since its length could not be known
//!    (RFC 9112 §6.3 item 4 requires that 400 and a close), and answers 501 to codings
//!    it does not implement before `chunked` (RFC 9112 §6.1).
//! 2. `Content-Length`: exactly that many octets.
//! 3. Neither, in a request: no body at all. (A response with neither runs until the
//!    server closes the connection, item 8; pushwire's streamed responses to HTTP/1.0
//!    clients use that.)
//!
//! A request carrying both `Transfer-Encoding` and `Content-Length` is a classic
//! request-smuggling shape (two parties may disagree on where it ends); RFC 9112 §6.3
//! item 3 says such a message ought to be handled as an error, and pushwire answers 400,
//! then closes.
//!
//! # The chunked transfer coding (RFC 9112 §7.1)
//!
//! When the size of a body is not known in advance (a Server-Sent Events stream never
//! ends), HTTP/1.1 sends it in chunks. Each chunk is its size in hexadecimal, CR LF, that
//! many octets, CR LF. A chunk of size zero, the *last chunk*, ends the body; a *trailer
//! section* of field lines may follow it, and an empty line ends everything.
//! [`write_stream_head`](crate::proto::http1::write_stream_head) writes the head of such a
//! response, [`write_chunk`](crate::proto::http1::write_chunk) each chunk and
//! [`write_last_chunk`](crate::proto::http1::write_last_chunk) the end:
//!
//! ```
//! use pushwire::proto::http1::{write_chunk, write_last_chunk, write_stream_head, Version};
//!
//! let mut out = Vec::new();
//! write_stream_head(&mut out, Version::Http11, 200, &[("Content-Type", "text/event-stream")], None);
//! write_chunk(&mut out, b"data: hello\n\n");
//! write_chunk(&mut out, b""); // nothing: an empty chunk would end the body
//! write_last_chunk(&mut out);
//! assert_eq!(
//!     out,
//!     b"HTTP/1.1 200 OK\r\n\
//!       Content-Type: text/event-stream\r\n\
//!       Transfer-Encoding: chunked\r\n\
//!       \r\n\
//!       D\r\ndata: hello\n\n\r\n\
//!       0\r\n\r\n"
//! );
//! ```
//!
//! | bytes | field | meaning | reference |
//! |---|---|---|---|
//! | `Transfer-Encoding: chunked\r\n` | the transfer coding | the body is chunked | RFC 9112 §6.1 |
//! | `D\r\n` | chunk-size | 13 octets follow (hex digits; either case is valid) | RFC 9112 §7.1 |
//! | `data: hello\n\n` | chunk-data | the 13 octets | RFC 9112 §7.1 |
//! | `\r\n` | | ends the chunk-data | RFC 9112 §7.1 |
//! | `0\r\n` | last-chunk | size zero: no more data | RFC 9112 §7.1 |
//! | `\r\n` | | an empty trailer section, and the end of the message | RFC 9112 §7.1.2 |
//!
//! An HTTP/1.0 client does not know the chunked coding, and a server must not send it one
//! (RFC 9112 §6.1). The same call then writes `Connection: close` instead: the stream is
//! the raw bytes, and closing the connection ends the body.
//!
//! ```
//! use pushwire::proto::http1::{write_stream_head, Version};
//!
//! let mut out = Vec::new();
//! write_stream_head(&mut out, Version::Http10, 200, &[("Content-Type", "text/event-stream")], None);
//! assert_eq!(out, b"HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\nConnection: close\r\n\r\n");
//! ```
//!
//! (The status line says `HTTP/1.1` even then: a server sends the highest version it
//! conforms to whose major version is the client's, RFC 9110 §2.5.)
//!
//! The reading side is [`ChunkedDecoder`](crate::proto::http1::ChunkedDecoder): it
//! consumes exactly the chunked body and not a byte more, and gives the data back.
//! Chunk extensions (`;name=value` after the size, RFC 9112 §7.1.1) are checked and
//! ignored, as a recipient must ignore extensions it does not know:
//!
//! ```
//! use pushwire::proto::http1::ChunkedDecoder;
//!
//! let wire = b"5;note=x\r\nhello\r\n6\r\n world\r\n0\r\n\r\nNEXT";
//! let mut dec = ChunkedDecoder::new(1024, 1024, 10);
//! let mut body = Vec::new();
//! let (used, done) = dec.decode(wire, &mut body).unwrap();
//! assert!(done);
//! assert_eq!(body, b"hello world");
//! assert_eq!(&wire[used..], b"NEXT"); // the next message is left alone
//! ```
//!
//! # Reading requests off a connection
//!
//! [`RequestReader`](crate::proto::http1::RequestReader) takes the connection's unread
//! bytes and hands back whole requests, one at a time, saying how many bytes it used; the
//! rest (a pipelined next request) stays for the next call. Incomplete input is not an
//! error: it asks for more, and the result does not depend on how the bytes were split:
//!
//! ```
//! use pushwire::proto::http1::{Limits, RequestReader};
//!
//! let wire: &[u8] = b"POST /topics/news HTTP/1.1\r\n\
//!     Host: example.com\r\n\
//!     Transfer-Encoding: chunked\r\n\
//!     \r\n\
//!     5\r\nhello\r\n0\r\n\r\n\
//!     GET /topics/news/events?since=0 HTTP/1.1\r\nHost: example.com\r\n\r\n";
//! let limits = Limits::default();
//!
//! // Whole: the first request comes out, and the second one's bytes are not consumed.
//! let mut reader = RequestReader::new();
//! let mut out = Vec::new();
//! let (used, req) = reader.advance(wire, &limits, &mut out).unwrap();
//! let req = req.unwrap();
//! assert_eq!((req.method.as_str(), req.path(), &req.body[..]), ("POST", "/topics/news", &b"hello"[..]));
//! assert!(wire[used..].starts_with(b"GET "));
//!
//! // Byte by byte, keeping the unconsumed bytes as a driver does: the same request.
//! let mut reader = RequestReader::new();
//! let (mut pending, mut got) = (Vec::new(), None);
//! for &b in &wire[..used] {
//!     pending.push(b);
//!     let (n, r) = reader.advance(&pending, &limits, &mut out).unwrap();
//!     pending.drain(..n);
//!     got = got.or(r);
//! }
//! assert_eq!(got, Some(req));
//!
//! // Both framings at once: refused (request smuggling), and the connection is closed.
//! let mut reader = RequestReader::new();
//! let bad = b"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 3\r\nTransfer-Encoding: chunked\r\n\r\n";
//! assert_eq!(reader.advance(bad, &limits, &mut out).unwrap_err().status, 400);
//! ```
//!
//! pushwire is strict where the RFC allows leniency: a bare LF as a line end (which
//! RFC 9112 §2.2 lets a recipient accept) and obs-fold (which RFC 9112 §5.2 lets a server
//! replace with spaces) are refused with 400, as is whitespace between a field name and
//! its colon (which RFC 9112 §5.1 requires a server to refuse), because two parsers that
//! disagree about them can be made to see different messages in the same bytes. The module docs of
//! [`crate::proto::http1`] list every rule and limit.
