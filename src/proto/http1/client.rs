//! Reading a response as a client (RFC 9112 §4 status line, §6.3 message body length), for
//! the webhook sender.
//!
//! # Theory of operation
//!
//! ```text
//!   Head --1xx--> Head            (interim responses are skipped)
//!     |
//!     +--final, no body------------------------------------------> Done
//!     +--final, Content-Length / chunked / until close--> Body --> Done
//! ```
//!
//! The body length follows RFC 9112 §6.3: none for a response to HEAD and for 204 and
//! 304; chunked when `chunked` is the final transfer coding (codings before it are left
//! in place); until the connection closes when another coding is final or no length is
//! given; otherwise `Content-Length`. Only the first `body_cap` bytes of the body are kept:
//! a webhook sender wants the status and a snippet for its log, not the peer's whole
//! answer, and the bytes past the cap are read and dropped so the connection can be
//! reused. Errors carry status 502 (Bad Gateway): the peer is an upstream server.

use super::head::{content_length, transfer_coding, Coding, HeadScan};
use super::{first_value, list_has_token, own_headers, ChunkedDecoder, Header, HttpError};
use super::{Limits, Version};

/// A final response read by [`ResponseReader`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClientResponse {
    /// The status code (200-999; interim 1xx responses are skipped).
    pub status: u16,
    /// The header fields in the order received.
    pub headers: Vec<Header>,
    /// The first `body_cap` bytes of the body (chunked coding removed).
    pub body: Vec<u8>,
    /// Whether the connection may carry another request (RFC 9112 §9.3); false when the body
    /// was delimited by the connection closing.
    pub keep_alive: bool,
}

impl ClientResponse {
    /// The value of the first header field called `name` (case-insensitive).
    pub fn header(&self, name: &str) -> Option<&[u8]> {
        first_value(&self.headers, name)
    }

    /// [`header`](Self::header) as text; `None` also when the value is not UTF-8.
    pub fn header_str(&self, name: &str) -> Option<&str> {
        self.header(name).and_then(|v| std::str::from_utf8(v).ok())
    }
}

#[derive(Debug)]
enum Body {
    Length(u64),
    Chunked(Box<ChunkedDecoder>),
    UntilClose,
}

#[derive(Debug)]
enum State {
    Head(HeadScan),
    Body(Box<ClientResponse>, Body),
    Done,
    Failed(HttpError),
}

/// Reads the response to one request, sans-IO. Create one per request.
#[derive(Debug)]
pub struct ResponseReader {
    state: State,
    head_request: bool,
    body_cap: usize,
    limits: Limits,
}

impl ResponseReader {
    /// A reader for the response to a request (`head_request`: it was a HEAD, so the
    /// response has no body whatever its fields say). The head is bounded by
    /// [`Limits::max_head_bytes`] and [`Limits::max_headers`] (also for trailers);
    /// `max_body_bytes` is not used: at most `body_cap` body bytes are kept, any more are
    /// read and dropped.
    pub fn new(head_request: bool, body_cap: usize, limits: &Limits) -> Self {
        ResponseReader {
            state: State::Head(HeadScan::default()),
            head_request,
            body_cap,
            limits: *limits,
        }
    }

    /// Same contract as [`RequestReader::advance`](super::RequestReader::advance): `buf` is
    /// the whole unconsumed input; returns the bytes consumed and the response once it is
    /// complete. After that it consumes nothing; after an error it returns that error again.
    pub fn advance(&mut self, buf: &[u8]) -> Result<(usize, Option<ClientResponse>), HttpError> {
        let result = self.step(buf);
        if let Err(e) = result {
            if !matches!(self.state, State::Failed(_)) {
                log::debug!("response refused: {e}");
            }
            self.state = State::Failed(e);
        }
        result
    }

    /// The peer closed the connection: completes a body delimited by the close; `Ok(None)`
    /// when the response was already returned; otherwise the response was cut short (502).
    pub fn on_eof(&mut self) -> Result<Option<ClientResponse>, HttpError> {
        match std::mem::replace(&mut self.state, State::Done) {
            State::Body(response, Body::UntilClose) => Ok(Some(*response)),
            State::Done => Ok(None),
            State::Failed(e) => {
                self.state = State::Failed(e);
                Err(e)
            }
            _ => {
                let e = HttpError::new(502, "connection closed before the response was complete");
                self.state = State::Failed(e);
                Err(e)
            }
        }
    }

    fn step(&mut self, buf: &[u8]) -> Result<(usize, Option<ClientResponse>), HttpError> {
        if let State::Failed(e) = self.state {
            return Err(e);
        }
        let mut consumed = 0;
        while let State::Head(scan) = &mut self.state {
            let rest = buf.get(consumed..).unwrap_or_default();
            let Some(end) = scan.scan(rest, &self.limits).map_err(upstream)? else {
                return Ok((consumed, None));
            };
            let head = rest.get(..end.len).unwrap_or_default();
            consumed += end.len;
            let (response, body) = self.parse_head(head, end.fields)?;
            match body {
                _ if response.status < 200 => {
                    log::trace!("<- {} (interim, skipped)", response.status);
                    self.state = State::Head(HeadScan::default());
                }
                None => {
                    self.state = State::Done;
                    return Ok((consumed, Some(response)));
                }
                Some(body) => self.state = State::Body(Box::new(response), body),
            }
        }
        let State::Body(response, body) = &mut self.state else {
            return Ok((consumed, None)); // Done, or Failed (returned by advance before)
        };
        let rest = buf.get(consumed..).unwrap_or_default();
        let cap = self.body_cap;
        let kept = &mut response.body;
        let mut keep = |data: &[u8]| {
            let room = cap.saturating_sub(kept.len()).min(data.len());
            kept.extend_from_slice(&data[..room]);
        };
        let done = match body {
            Body::Length(remaining) => {
                let n = rest
                    .len()
                    .min(usize::try_from(*remaining).unwrap_or(usize::MAX));
                keep(&rest[..n]);
                *remaining -= n as u64;
                consumed += n;
                *remaining == 0
            }
            Body::Chunked(decoder) => {
                let (n, done) = decoder.decode_into(rest, &mut keep).map_err(upstream)?;
                consumed += n;
                done
            }
            Body::UntilClose => {
                keep(rest);
                consumed += rest.len();
                false
            }
        };
        if !done {
            return Ok((consumed, None));
        }
        match std::mem::replace(&mut self.state, State::Done) {
            State::Body(response, _) => Ok((consumed, Some(*response))),
            _ => Ok((consumed, None)), // unreachable: the state was Body just above
        }
    }

    fn parse_head(
        &self,
        head: &[u8],
        fields: usize,
    ) -> Result<(ClientResponse, Option<Body>), HttpError> {
        let mut parsed = vec![httparse::EMPTY_HEADER; fields];
        let mut raw = httparse::Response::new(&mut parsed);
        match raw.parse(head) {
            Ok(httparse::Status::Complete(n)) if n == head.len() => {}
            Err(httparse::Error::TooManyHeaders) => {
                return Err(HttpError::new(502, "too many header fields"))
            }
            Err(httparse::Error::HeaderName | httparse::Error::HeaderValue) => {
                return Err(HttpError::new(502, "malformed header field"))
            }
            _ => return Err(HttpError::new(502, "malformed status line")),
        }
        let (Some(minor), Some(status)) = (raw.version, raw.code) else {
            return Err(HttpError::new(502, "malformed status line"));
        };
        let version = if minor == 0 {
            Version::Http10
        } else {
            Version::Http11
        };
        if status < 100 {
            return Err(HttpError::new(502, "malformed status line"));
        }
        let headers = own_headers(raw.headers);
        log::trace!(
            "<- {} {status} {}",
            version.as_str(),
            raw.reason.unwrap_or_default()
        );
        let mut response = ClientResponse {
            status,
            headers,
            body: Vec::new(),
            keep_alive: false,
        };
        if status == 101 {
            // We never ask to switch protocols (RFC 9110 §15.2.2).
            return Err(HttpError::new(502, "unexpected 101 Switching Protocols"));
        }
        if status < 200 {
            return Ok((response, None));
        }
        let body = self.body_length(&response.headers, version, status)?;
        let close = list_has_token(&response.headers, "connection", "close");
        response.keep_alive = !matches!(body, Some(Body::UntilClose))
            && !close
            && (version == Version::Http11
                || list_has_token(&response.headers, "connection", "keep-alive"));
        Ok((response, body))
    }

    /// RFC 9112 §6.3, for a response. `None`: no body.
    fn body_length(
        &self,
        headers: &[Header],
        version: Version,
        status: u16,
    ) -> Result<Option<Body>, HttpError> {
        // "Any response to a HEAD request and any response with a 1xx (Informational),
        // 204 (No Content), or 304 (Not Modified) status code is always terminated by the
        // first empty line after the header fields, regardless of the header fields
        // present in the message, and thus cannot contain a message body or trailer
        // section."
        if self.head_request || status == 204 || status == 304 {
            return Ok(None);
        }
        let coding = transfer_coding(headers).map_err(upstream)?;
        let length = content_length(headers).map_err(upstream)?;
        if coding != Coding::Absent {
            if version == Version::Http10 {
                return Err(HttpError::new(
                    502,
                    "Transfer-Encoding in an HTTP/1.0 response",
                ));
            }
            // "Such a message might indicate an attempt to perform request smuggling or
            // response splitting and ought to be handled as an error."
            if length.is_some() {
                return Err(HttpError::new(
                    502,
                    "both Content-Length and Transfer-Encoding",
                ));
            }
        }
        Ok(Some(match (coding, length) {
            (Coding::Chunked { .. }, _) => Body::Chunked(Box::new(ChunkedDecoder::new(
                u64::MAX,
                self.limits.max_head_bytes,
                self.limits.max_headers,
            ))),
            (Coding::NotChunked, _) => Body::UntilClose,
            (Coding::Absent, Some(0)) => return Ok(None),
            (Coding::Absent, Some(n)) => Body::Length(n),
            (Coding::Absent, None) => Body::UntilClose,
        }))
    }
}

/// A framing error in a response is the upstream server's fault: 502.
fn upstream(e: HttpError) -> HttpError {
    HttpError::new(502, e.reason)
}

#[cfg(test)]
mod tests {
    use super::*;

    type Outcome = Result<Vec<(u16, Vec<u8>, bool)>, &'static str>;

    /// Feeds `input` ending at `ends`, as a driver would, then reports EOF if `eof`.
    fn drive(input: &[u8], ends: &[usize], head: bool, cap: usize, eof: bool) -> (Outcome, usize) {
        let limits = Limits {
            max_head_bytes: 128,
            max_headers: 4,
            max_body_bytes: 0,
        };
        let mut reader = ResponseReader::new(head, cap, &limits);
        let mut buf = Vec::new();
        let mut got = Vec::new();
        let mut start = 0;
        for &end in ends.iter().chain([input.len()].iter()) {
            buf.extend_from_slice(&input[start..end]);
            start = end;
            match reader.advance(&buf) {
                Ok((n, r)) => {
                    buf.drain(..n);
                    got.extend(r.map(|r| (r.status, r.body, r.keep_alive)));
                }
                Err(e) => {
                    assert_eq!(e.status, 502);
                    assert_eq!(reader.advance(&buf), Err(e));
                    return (Err(e.reason), 0);
                }
            }
        }
        if eof {
            match reader.on_eof() {
                Ok(r) => got.extend(r.map(|r| (r.status, r.body, r.keep_alive))),
                Err(e) => return (Err(e.reason), 0),
            }
        }
        (Ok(got), buf.len())
    }

    fn check(input: &[u8], head: bool, cap: usize, eof: bool) -> (Outcome, usize) {
        let whole = drive(input, &[], head, cap, eof);
        let bytewise: Vec<usize> = (1..input.len()).collect();
        assert_eq!(
            drive(input, &bytewise, head, cap, eof),
            whole,
            "byte by byte {input:?}"
        );
        for split in 1..input.len() {
            assert_eq!(
                drive(input, &[split], head, cap, eof),
                whole,
                "split {split} {input:?}"
            );
        }
        whole
    }

    fn ok(status: u16, body: &[u8], keep_alive: bool) -> Outcome {
        Ok(vec![(status, body.to_vec(), keep_alive)])
    }

    #[test]
    fn response_table() {
        // (input, head request, eof after input, expected, bytes left over)
        let table: Vec<(&[u8], bool, bool, Outcome, usize)> = vec![
            (b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nhello", false, false, ok(200, b"hello", true), 0),
            (b"HTTP/1.1 204 No Content\r\n\r\n", false, false, ok(204, b"", true), 0),
            (b"HTTP/1.1 204 No Content\r\nContent-Length: 5\r\n\r\n", false, false, ok(204, b"", true), 0),
            (b"HTTP/1.1 304 Not Modified\r\nTransfer-Encoding: chunked\r\n\r\n", false, false, ok(304, b"", true), 0),
            (b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\n", true, false, ok(200, b"", true), 0),
            (b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\nXX", false, false, ok(200, b"", true), 2),
            (b"HTTP/1.1 200 OK\r\nContent-Length: 3\r\n\r\nabcdef", false, false, ok(200, b"abc", true), 3),
            (b"HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 103 Early Hints\r\nLink: x\r\n\r\nHTTP/1.1 202 Accepted\r\nContent-Length: 2\r\n\r\nok",
                false, false, ok(202, b"ok", true), 0),
            (b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n2\r\nok\r\n0\r\nX: y\r\n\r\n", false, false, ok(200, b"ok", true), 0),
            (b"HTTP/1.1 200 OK\r\nTransfer-Encoding: gzip, chunked\r\n\r\n2\r\nok\r\n0\r\n\r\n", false, false, ok(200, b"ok", true), 0),
            (b"HTTP/1.1 200 OK\r\nConnection: close\r\nContent-Length: 2\r\n\r\nok", false, false, ok(200, b"ok", false), 0),
            (b"HTTP/1.0 200 OK\r\nContent-Length: 2\r\n\r\nok", false, false, ok(200, b"ok", false), 0),
            (b"HTTP/1.0 200 OK\r\nConnection: keep-alive\r\nContent-Length: 2\r\n\r\nok", false, false, ok(200, b"ok", true), 0),
            // until close
            (b"HTTP/1.1 200 OK\r\n\r\nsomebody", false, true, ok(200, b"somebody", false), 0),
            (b"HTTP/1.1 200 OK\r\nTransfer-Encoding: gzip\r\n\r\nzzz", false, true, ok(200, b"zzz", false), 0),
            (b"HTTP/1.1 200 OK\r\n\r\nsomebody", false, false, Ok(vec![]), 0),
            // capped body: the rest is read and dropped
            (b"HTTP/1.1 500 Oops\r\nContent-Length: 12\r\n\r\n0123456789ab", false, false, ok(500, b"01234567", true), 0),
            (b"HTTP/1.1 500 Oops\r\nTransfer-Encoding: chunked\r\n\r\n3\r\n012\r\n3\r\n345\r\n3\r\n678\r\n0\r\n\r\n", false, false, ok(500, b"01234567", true), 0),
            (b"HTTP/1.1 500 Oops\r\n\r\n0123456789", false, true, ok(500, b"01234567", false), 0),
            // errors
            (b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nhel", false, true, Err("connection closed before the response was complete"), 0),
            (b"HTTP/1.1 200 OK\r\n", false, true, Err("connection closed before the response was complete"), 0),
            (b"", false, true, Err("connection closed before the response was complete"), 0),
            (b"HTTP/1.1 101 Switching Protocols\r\n\r\n", false, false, Err("unexpected 101 Switching Protocols"), 0),
            (b"HTTP/2.0 200 OK\r\n\r\n", false, false, Err("malformed status line"), 0),
            (b"HTTP/1.1 20 OK\r\n\r\n", false, false, Err("malformed status line"), 0),
            (b"HTTP/1.1 099 OK\r\n\r\n", false, false, Err("malformed status line"), 0),
            (b"HTTP/1.1 200 OK\nContent-Length: 0\n\n", false, false, Err("bare LF in head"), 0),
            (b"HTTP/1.1 200 OK\r\nA : b\r\n\r\n", false, false, Err("malformed header field"), 0),
            (b"HTTP/1.1 200 OK\r\nContent-Length: 1, 2\r\n\r\n", false, false, Err("conflicting Content-Length values"), 0),
            (b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nTransfer-Encoding: chunked\r\n\r\n", false, false, Err("both Content-Length and Transfer-Encoding"), 0),
            (b"HTTP/1.0 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n", false, false, Err("Transfer-Encoding in an HTTP/1.0 response"), 0),
            (b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n", false, false, Err("invalid chunk size"), 0),
            (b"HTTP/1.1 200 OK\r\nA: 1\r\nB: 1\r\nC: 1\r\nD: 1\r\nE: 1\r\n\r\n", false, false, Err("too many header fields"), 0),
        ];
        for (input, head, eof, want, left) in table {
            assert_eq!(
                check(input, head, 8, eof),
                (want, left),
                "{:?}",
                String::from_utf8_lossy(input)
            );
        }
    }

    #[test]
    fn large_head_and_unlimited_body() {
        let mut long = b"HTTP/1.1 200 OK\r\nX: ".to_vec();
        long.extend_from_slice(&[b'a'; 200]);
        assert_eq!(
            check(&long, false, 4, false).0,
            Err("header section too large")
        );
        // the body total is not limited, only what is kept
        let mut big = b"HTTP/1.1 200 OK\r\nContent-Length: 100000\r\n\r\n".to_vec();
        big.extend_from_slice(&[b'z'; 100_000]);
        let (got, _) = drive(&big, &[1000, 50_000], false, 4, false);
        assert_eq!(got, ok(200, b"zzzz", true));
    }

    #[test]
    fn done_then_eof() {
        let mut r = ResponseReader::new(false, 10, &Limits::default());
        let input = b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n";
        let (n, resp) = r.advance(input).unwrap();
        assert_eq!(n, input.len());
        let resp = resp.unwrap();
        assert_eq!(resp.header_str("content-length"), Some("0"));
        assert_eq!(r.advance(b"junk"), Ok((0, None)));
        assert_eq!(r.on_eof(), Ok(None));
    }
}
