//! Writing responses (RFC 9112 §4 status line, §6 framing, §7.1 chunked; RFC 9110 §15
//! status codes).
//!
//! The serialiser owns the framing: it writes `Content-Length` or `Transfer-Encoding`
//! itself, so those names given as ordinary headers are dropped. A header field whose name
//! is not a token, or whose value holds a control character other than HTAB (CR, LF and
//! NUL above all: RFC 9110 §5.5, "a sender MUST NOT generate" them), is never written:
//! the whole field line is dropped and logged at debug level, so no caller-supplied
//! string can split a response.

use std::io::Write as _;

use super::{is_token, Version};

/// A response to send: a small builder, serialised by [`encode`](Self::encode).
///
/// ```
/// use pushwire::proto::http1::{Response, Version};
/// let mut out = Vec::new();
/// Response::text(404, "no such topic").encode(Version::Http11, false, true, None, &mut out);
/// assert_eq!(
///     out,
///     b"HTTP/1.1 404 Not Found\r\nContent-Type: text/plain; charset=utf-8\r\n\
///       Content-Length: 13\r\n\r\nno such topic"
/// );
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Response {
    /// The status code (100-999; anything else is sent as 500).
    pub status: u16,
    /// Header fields to send, in order, besides the framing ones the serialiser adds.
    pub headers: Vec<(String, String)>,
    /// The body (ignored for 1xx, 204 and 304, and not sent in answer to HEAD).
    pub body: Vec<u8>,
    /// Send the body with the chunked transfer coding (HTTP/1.1 only).
    pub chunked: bool,
}

impl Response {
    /// A response with `status`, no header fields and an empty body.
    pub fn new(status: u16) -> Self {
        Response {
            status,
            headers: Vec::new(),
            body: Vec::new(),
            chunked: false,
        }
    }

    /// Adds a header field.
    pub fn header(mut self, name: impl Into<String>, value: impl Into<String>) -> Self {
        self.headers.push((name.into(), value.into()));
        self
    }

    /// Sets the body.
    pub fn body(mut self, body: impl Into<Vec<u8>>) -> Self {
        self.body = body.into();
        self
    }

    /// A `text/plain; charset=utf-8` response.
    pub fn text(status: u16, body: impl Into<String>) -> Self {
        Response::new(status)
            .header("Content-Type", "text/plain; charset=utf-8")
            .body(body.into().into_bytes())
    }

    /// An `application/json` response (the body is sent as given).
    pub fn json(status: u16, body: impl Into<Vec<u8>>) -> Self {
        Response::new(status)
            .header("Content-Type", "application/json")
            .body(body)
    }

    /// A `text/html; charset=utf-8` response.
    pub fn html(status: u16, body: impl Into<Vec<u8>>) -> Self {
        Response::new(status)
            .header("Content-Type", "text/html; charset=utf-8")
            .body(body)
    }

    /// Whether to send the body chunked (on HTTP/1.1; HTTP/1.0 gets a `Content-Length`).
    pub fn chunked(mut self, yes: bool) -> Self {
        self.chunked = yes;
        self
    }

    /// Serialises the response for a client speaking `version`, appending to `out`.
    ///
    /// * The status line is always `HTTP/1.1 <code> <reason>` (RFC 9110 §6.2: a server
    ///   sends the highest minor version it conforms to).
    /// * Then the given header fields (see the module docs for what is dropped), `Date`
    ///   when `date` is given, and the framing: `Content-Length`, or on HTTP/1.1 when
    ///   [`chunked`](Self::chunked) `Transfer-Encoding: chunked` with the body as one chunk
    ///   and the last chunk.
    /// * `Connection: close` when `!keep_alive`; `Connection: keep-alive` when `keep_alive`
    ///   on HTTP/1.0.
    /// * `head_only` (the answer to HEAD): the same header fields, `Content-Length`
    ///   included, and no body (RFC 9110 §9.3.2).
    /// * 1xx, 204 and 304: no body and no `Content-Length` (RFC 9110 §8.6, RFC 9112 §6.3).
    pub fn encode(
        &self,
        version: Version,
        head_only: bool,
        keep_alive: bool,
        date: Option<&str>,
        out: &mut Vec<u8>,
    ) {
        let status = if (100..=999).contains(&self.status) {
            self.status
        } else {
            500
        };
        let bodyless = status < 200 || status == 204 || status == 304;
        let chunked = self.chunked && version == Version::Http11 && !bodyless;
        let framing = match () {
            _ if chunked => Framing::Chunked,
            _ if bodyless => Framing::None,
            _ => Framing::Length(self.body.len()),
        };
        self.write_head(status, framing, version, keep_alive, date, out);
        log::trace!(
            "-> {status} {} ({} body bytes)",
            reason_phrase(status),
            self.body.len()
        );
        if head_only || bodyless {
            return;
        }
        if chunked {
            write_chunk(out, &self.body);
            write_last_chunk(out);
        } else {
            out.extend_from_slice(&self.body);
        }
    }
}

impl Response {
    /// Writes only the head of this response for a body of `body_len` bytes sent separately
    /// (a body encoded once and shared by many connections, such as a long-poll page):
    /// the same header section [`encode`](Self::encode) writes, always with
    /// `Content-Length: body_len`. The caller queues the body after it unless `head_only`.
    pub fn encode_head(
        &self,
        version: Version,
        keep_alive: bool,
        date: Option<&str>,
        body_len: usize,
        out: &mut Vec<u8>,
    ) {
        let status =
            if (200..=999).contains(&self.status) && self.status != 204 && self.status != 304 {
                self.status
            } else {
                500
            };
        let framing = Framing::Length(body_len);
        self.write_head(status, framing, version, keep_alive, date, out);
        log::trace!(
            "-> {status} {} ({body_len} shared body bytes)",
            reason_phrase(status)
        );
    }
}

/// How a response's body is delimited (RFC 9112 §6.3).
#[derive(Clone, Copy)]
enum Framing {
    /// 1xx, 204, 304: no body, no `Content-Length`.
    None,
    Length(usize),
    Chunked,
}

impl Response {
    /// The status line and header section: the application's fields (framing ones and a
    /// `Connection: close` dropped: they are written here), `Date`, the framing and
    /// `Connection`.
    fn write_head(
        &self,
        status: u16,
        framing: Framing,
        version: Version,
        keep_alive: bool,
        date: Option<&str>,
        out: &mut Vec<u8>,
    ) {
        write_status_line(out, status);
        for (name, value) in &self.headers {
            if is_framing(name) {
                log::debug!("dropped framing header field {name:?}: the serialiser writes it");
                continue;
            }
            if is_connection_close(name, value) && !keep_alive {
                continue;
            }
            write_field(out, name, value);
        }
        if let Some(date) = date {
            write_field(out, "Date", date);
        }
        match framing {
            Framing::Chunked => out.extend_from_slice(b"Transfer-Encoding: chunked\r\n"),
            Framing::Length(n) => {
                let _ = write!(out, "Content-Length: {n}\r\n");
            }
            Framing::None => {}
        }
        if !keep_alive {
            out.extend_from_slice(b"Connection: close\r\n");
        } else if version == Version::Http10 {
            out.extend_from_slice(b"Connection: keep-alive\r\n");
        }
        out.extend_from_slice(b"\r\n");
    }
}

/// Writes header fields an application added to a handshake answer (`101 Switching
/// Protocols`): each filtered like every other field, and the ones the handshake itself
/// owns (framing, `Connection`, `Upgrade`, `Sec-WebSocket-*`) left out with a debug line.
pub fn write_extra_fields(out: &mut Vec<u8>, headers: &[(String, String)]) {
    for (name, value) in headers {
        let owned = is_framing(name)
            || name.eq_ignore_ascii_case("connection")
            || name.eq_ignore_ascii_case("upgrade")
            || name
                .get(..14)
                .is_some_and(|p| p.eq_ignore_ascii_case("sec-websocket-"));
        if owned {
            log::debug!("dropped handshake header field {name:?} given by the application");
            continue;
        }
        write_field(out, name, value);
    }
}

fn is_framing(name: &str) -> bool {
    name.eq_ignore_ascii_case("content-length") || name.eq_ignore_ascii_case("transfer-encoding")
}

/// `Connection: close` given by the application: honoured through the keep-alive decision
/// (the caller sees it and passes `keep_alive: false`) and written once, by the serialiser.
fn is_connection_close(name: &str, value: &str) -> bool {
    name.eq_ignore_ascii_case("connection") && value.trim().eq_ignore_ascii_case("close")
}

fn write_status_line(out: &mut Vec<u8>, status: u16) {
    let _ = write!(out, "HTTP/1.1 {status} {}\r\n", reason_phrase(status));
}

/// Writes `name: value` unless the name is not a token or the value holds a control
/// character other than HTAB; surrounding whitespace of the value is not written.
fn write_field(out: &mut Vec<u8>, name: &str, value: &str) {
    let bad_value = value.bytes().any(|b| (b < 0x20 && b != b'\t') || b == 0x7F);
    if !is_token(name.as_bytes()) || bad_value {
        log::debug!("dropped invalid header field {name:?}: {value:?}");
        return;
    }
    out.extend_from_slice(name.as_bytes());
    out.extend_from_slice(b": ");
    out.extend_from_slice(value.trim_matches([' ', '\t']).as_bytes());
    out.extend_from_slice(b"\r\n");
}

/// Writes the head of a long-lived streamed response (e.g. `text/event-stream`) whose length
/// is not known: on HTTP/1.1 the body is chunked (`Transfer-Encoding: chunked`; follow with
/// [`write_chunk`] and finally [`write_last_chunk`]); on HTTP/1.0 it is delimited by closing
/// the connection (`Connection: close`; write the data as it is, without chunk framing).
/// Header fields are filtered as by [`Response::encode`].
pub fn write_stream_head(
    out: &mut Vec<u8>,
    version: Version,
    status: u16,
    headers: &[(&str, &str)],
    date: Option<&str>,
) {
    let status = if (100..=999).contains(&status) {
        status
    } else {
        500
    };
    write_status_line(out, status);
    for (name, value) in headers {
        if is_framing(name) {
            log::debug!("dropped framing header field {name:?} from a stream head");
            continue;
        }
        write_field(out, name, value);
    }
    if let Some(date) = date {
        write_field(out, "Date", date);
    }
    match version {
        Version::Http11 => out.extend_from_slice(b"Transfer-Encoding: chunked\r\n"),
        Version::Http10 => out.extend_from_slice(b"Connection: close\r\n"),
    }
    out.extend_from_slice(b"\r\n");
    log::trace!(
        "-> {status} {} (streamed, {})",
        reason_phrase(status),
        version.as_str()
    );
}

/// Writes `data` as one chunk: `<size in hex> CRLF data CRLF`. Writes nothing for empty
/// data, since a chunk of size zero is the last chunk and would end the body.
pub fn write_chunk(out: &mut Vec<u8>, data: &[u8]) {
    if data.is_empty() {
        return;
    }
    let _ = write!(out, "{:X}\r\n", data.len());
    out.extend_from_slice(data);
    out.extend_from_slice(b"\r\n");
}

/// Writes the last chunk and an empty trailer section: `0 CRLF CRLF`.
pub fn write_last_chunk(out: &mut Vec<u8>) {
    out.extend_from_slice(b"0\r\n\r\n");
}

/// The reason phrase of a status code (RFC 9110 §15, plus 429 and 431 from RFC 6585);
/// `""` for codes without one (a reason phrase may be empty, RFC 9112 §4).
pub fn reason_phrase(status: u16) -> &'static str {
    match status {
        100 => "Continue",
        101 => "Switching Protocols",
        200 => "OK",
        201 => "Created",
        202 => "Accepted",
        203 => "Non-Authoritative Information",
        204 => "No Content",
        205 => "Reset Content",
        206 => "Partial Content",
        300 => "Multiple Choices",
        301 => "Moved Permanently",
        302 => "Found",
        303 => "See Other",
        304 => "Not Modified",
        307 => "Temporary Redirect",
        308 => "Permanent Redirect",
        400 => "Bad Request",
        401 => "Unauthorized",
        402 => "Payment Required",
        403 => "Forbidden",
        404 => "Not Found",
        405 => "Method Not Allowed",
        406 => "Not Acceptable",
        407 => "Proxy Authentication Required",
        408 => "Request Timeout",
        409 => "Conflict",
        410 => "Gone",
        411 => "Length Required",
        412 => "Precondition Failed",
        413 => "Content Too Large",
        414 => "URI Too Long",
        415 => "Unsupported Media Type",
        416 => "Range Not Satisfiable",
        417 => "Expectation Failed",
        421 => "Misdirected Request",
        422 => "Unprocessable Content",
        426 => "Upgrade Required",
        428 => "Precondition Required",
        429 => "Too Many Requests",
        431 => "Request Header Fields Too Large",
        500 => "Internal Server Error",
        501 => "Not Implemented",
        502 => "Bad Gateway",
        503 => "Service Unavailable",
        504 => "Gateway Timeout",
        505 => "HTTP Version Not Supported",
        _ => "",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn enc(
        r: &Response,
        v: Version,
        head_only: bool,
        keep_alive: bool,
        date: Option<&str>,
    ) -> String {
        let mut out = Vec::new();
        r.encode(v, head_only, keep_alive, date, &mut out);
        String::from_utf8(out).unwrap()
    }

    #[test]
    fn encode_table() {
        use Version::*;
        let d = Some("Sun, 06 Nov 1994 08:49:37 GMT");
        let hello = Response::new(200).header("X-A", "1").body("hello");
        /// response, client version, head_only, keep_alive, date, expected bytes
        type Case<'a> = (Response, Version, bool, bool, Option<&'a str>, &'a str);
        let table: Vec<Case> = vec![
            (hello.clone(), Http11, false, true, None,
                "HTTP/1.1 200 OK\r\nX-A: 1\r\nContent-Length: 5\r\n\r\nhello"),
            (hello.clone(), Http11, false, false, d,
                "HTTP/1.1 200 OK\r\nX-A: 1\r\nDate: Sun, 06 Nov 1994 08:49:37 GMT\r\nContent-Length: 5\r\nConnection: close\r\n\r\nhello"),
            (hello.clone(), Http10, false, true, None,
                "HTTP/1.1 200 OK\r\nX-A: 1\r\nContent-Length: 5\r\nConnection: keep-alive\r\n\r\nhello"),
            (hello.clone(), Http10, false, false, None,
                "HTTP/1.1 200 OK\r\nX-A: 1\r\nContent-Length: 5\r\nConnection: close\r\n\r\nhello"),
            (hello.clone(), Http11, true, true, None,
                "HTTP/1.1 200 OK\r\nX-A: 1\r\nContent-Length: 5\r\n\r\n"),
            (hello.clone().chunked(true), Http11, false, true, None,
                "HTTP/1.1 200 OK\r\nX-A: 1\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\n\r\n"),
            (hello.clone().chunked(true), Http11, true, true, None,
                "HTTP/1.1 200 OK\r\nX-A: 1\r\nTransfer-Encoding: chunked\r\n\r\n"),
            (hello.clone().chunked(true), Http10, false, true, None,
                "HTTP/1.1 200 OK\r\nX-A: 1\r\nContent-Length: 5\r\nConnection: keep-alive\r\n\r\nhello"),
            (Response::new(200).chunked(true), Http11, false, true, None,
                "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n"),
            (Response::new(204).body("x"), Http11, false, true, None, "HTTP/1.1 204 No Content\r\n\r\n"),
            (Response::new(304).body("x").chunked(true), Http11, false, true, None, "HTTP/1.1 304 Not Modified\r\n\r\n"),
            (Response::new(101).header("Upgrade", "websocket").header("Connection", "Upgrade"), Http11, false, true, None,
                "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\r\n"),
            (Response::new(599), Http11, false, true, None, "HTTP/1.1 599 \r\nContent-Length: 0\r\n\r\n"),
            (Response::new(42), Http11, false, true, None, "HTTP/1.1 500 Internal Server Error\r\nContent-Length: 0\r\n\r\n"),
            (Response::text(400, "bad"), Http11, false, false, None,
                "HTTP/1.1 400 Bad Request\r\nContent-Type: text/plain; charset=utf-8\r\nContent-Length: 3\r\nConnection: close\r\n\r\nbad"),
            (Response::json(201, "{}"), Http11, false, true, None,
                "HTTP/1.1 201 Created\r\nContent-Type: application/json\r\nContent-Length: 2\r\n\r\n{}"),
            (Response::html(200, "<p>"), Http11, false, true, None,
                "HTTP/1.1 200 OK\r\nContent-Type: text/html; charset=utf-8\r\nContent-Length: 3\r\n\r\n<p>"),
            // dropped: framing given by the caller, CR/LF/NUL/other CTLs, names that are not tokens
            (Response::new(200)
                .header("Content-Length", "99").header("transfer-encoding", "chunked")
                .header("X-Split", "a\r\nSet-Cookie: evil").header("X-Lf", "a\nb").header("X-Nul", "a\0b")
                .header("X-Esc", "\x1b[1m").header("Bad Name", "v").header("", "v").header("X:Y", "v")
                .header("X-Tab", "a\tb").header("X-Trim", "  v  ").header("X-Utf8", "é"),
                Http11, false, true, None,
                "HTTP/1.1 200 OK\r\nX-Tab: a\tb\r\nX-Trim: v\r\nX-Utf8: é\r\nContent-Length: 0\r\n\r\n"),
        ];
        for (r, v, head_only, keep_alive, date, want) in table {
            assert_eq!(enc(&r, v, head_only, keep_alive, date), want, "{r:?} {v:?}");
        }
    }

    #[test]
    fn stream_heads_and_chunks() {
        let h = [
            ("Content-Type", "text/event-stream"),
            ("Cache-Control", "no-cache"),
            ("Content-Length", "1"),
        ];
        let mut out = Vec::new();
        write_stream_head(&mut out, Version::Http11, 200, &h, Some("D"));
        assert_eq!(
            out,
            b"HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\nCache-Control: no-cache\r\n\
              Date: D\r\nTransfer-Encoding: chunked\r\n\r\n"
        );
        let mut out = Vec::new();
        write_stream_head(&mut out, Version::Http10, 200, &h[..1], None);
        assert_eq!(
            out,
            b"HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\nConnection: close\r\n\r\n"
        );

        let mut out = Vec::new();
        write_chunk(&mut out, b"");
        assert!(out.is_empty());
        write_chunk(&mut out, b"data: x\n\n");
        write_chunk(&mut out, &[b'a'; 26]);
        write_last_chunk(&mut out);
        let mut want = b"9\r\ndata: x\n\n\r\n1A\r\n".to_vec();
        want.extend_from_slice(&[b'a'; 26]);
        want.extend_from_slice(b"\r\n0\r\n\r\n");
        assert_eq!(out, want);
    }

    #[test]
    fn chunked_output_decodes() {
        let mut out = Vec::new();
        write_chunk(&mut out, b"hello ");
        write_chunk(&mut out, &[b'w'; 300]);
        write_last_chunk(&mut out);
        let mut d = super::super::ChunkedDecoder::new(1000, 100, 10);
        let mut body = Vec::new();
        assert_eq!(d.decode(&out, &mut body), Ok((out.len(), true)));
        assert_eq!(body.len(), 306);
    }

    #[test]
    fn reasons() {
        assert_eq!(reason_phrase(413), "Content Too Large");
        assert_eq!(reason_phrase(431), "Request Header Fields Too Large");
        assert_eq!(reason_phrase(505), "HTTP Version Not Supported");
        assert_eq!(reason_phrase(299), "");
    }
}
