//! Reading requests off a connection (RFC 9112 §2-§7; `Host` RFC 9112 §3.2, `Expect`
//! RFC 9110 §10.1.1). See the theory of operation in the [module docs](super).

use std::mem;

use super::head::{content_length, transfer_coding, Coding, HeadScan};
use super::{
    first_value, list_elements, own_headers, values_named, ChunkedDecoder, Header, HttpError,
};
use super::{Limits, Request, Version};

/// What the driver writes first when a client waits for permission to send its body.
pub(crate) const CONTINUE: &[u8] = b"HTTP/1.1 100 Continue\r\n\r\n";

/// How the rest of the body is delimited (RFC 9112 §6.3).
#[derive(Debug)]
enum Framing {
    Length(u64),
    Chunked(Box<ChunkedDecoder>),
}

#[derive(Debug)]
enum State {
    /// Between requests: nothing of the next one seen yet.
    Idle,
    /// Part of a head has arrived; the scan remembers how far it looked.
    Head(HeadScan),
    /// The head was valid; the body is being read into the request.
    Body(Box<Request>, Framing),
    /// An error was returned; it is returned again.
    Failed(HttpError),
}

/// Reads one request after another from a connection's input (RFC 9112), sans-IO.
///
/// See [`advance`](Self::advance) for the contract with the driver.
#[derive(Debug)]
pub struct RequestReader {
    state: State,
}

impl Default for RequestReader {
    fn default() -> Self {
        Self::new()
    }
}

impl RequestReader {
    /// A reader waiting for the first request of a connection.
    pub fn new() -> Self {
        RequestReader { state: State::Idle }
    }

    /// Reads from `buf`, the connection's whole unconsumed input.
    ///
    /// The driver keeps the bytes not yet consumed in a buffer and appends new reads to it;
    /// it calls `advance` with the whole buffer each time and then drains `consumed` bytes
    /// from its front, calling again while a request comes out (pipelining).
    ///
    /// * `Ok((consumed, Some(request)))`: a complete request (head, body and trailers); the
    ///   bytes of the next request are left alone.
    /// * `Ok((consumed, None))`: more input is needed. Body bytes may already have been
    ///   consumed into the request being built; head bytes are only consumed once the head
    ///   is complete, but the reader remembers how far it scanned, so a slow drip costs
    ///   linear time.
    /// * `Err(e)`: answer `e.status` and close the connection. The reader stays failed.
    ///
    /// When an HTTP/1.1 request carries `Expect: 100-continue`, a non-empty body is expected
    /// and none of it has arrived yet, `HTTP/1.1 100 Continue` is appended to `out`.
    pub fn advance(
        &mut self,
        buf: &[u8],
        limits: &Limits,
        out: &mut Vec<u8>,
    ) -> Result<(usize, Option<Request>), HttpError> {
        let result = self.step(buf, limits, out);
        if let Err(e) = result {
            if !matches!(self.state, State::Failed(_)) {
                log::debug!("request refused: {e}");
            }
            self.state = State::Failed(e);
        }
        result
    }

    /// True when no request is partly read (between requests): the driver applies its
    /// keep-alive idle timeout then, and its header (slowloris) timeout otherwise.
    pub fn is_idle(&self) -> bool {
        matches!(self.state, State::Idle)
    }

    fn step(
        &mut self,
        buf: &[u8],
        limits: &Limits,
        out: &mut Vec<u8>,
    ) -> Result<(usize, Option<Request>), HttpError> {
        let mut consumed = 0;
        if let State::Failed(e) = self.state {
            return Err(e);
        }
        if let State::Idle = self.state {
            // RFC 9112 §2.2: "a server that is expecting to receive and parse a request-line
            // SHOULD ignore at least one empty line (CRLF) received prior to the
            // request-line."
            while buf.get(consumed..consumed + 2) == Some(b"\r\n") {
                consumed += 2;
            }
            let rest = buf.get(consumed..).unwrap_or_default();
            if rest.is_empty() || rest == b"\r" {
                return Ok((consumed, None));
            }
            self.state = State::Head(HeadScan::default());
        }
        if let State::Head(scan) = &mut self.state {
            let rest = buf.get(consumed..).unwrap_or_default();
            let Some(end) = scan.scan(rest, limits)? else {
                return Ok((consumed, None));
            };
            let head = rest.get(..end.len).unwrap_or_default();
            let (request, framing, expect_continue) = parse_head(head, end.fields, limits)?;
            consumed += end.len;
            let Some(framing) = framing else {
                self.state = State::Idle;
                return Ok((consumed, Some(request)));
            };
            // RFC 9110 §10.1.1: "A server that receives a 100-continue expectation in an
            // HTTP/1.0 request MUST ignore that expectation."
            if expect_continue && request.version == Version::Http11 && buf.len() == consumed {
                log::trace!("-> 100 Continue");
                out.extend_from_slice(CONTINUE);
            }
            self.state = State::Body(Box::new(request), framing);
        }
        let State::Body(request, framing) = &mut self.state else {
            return Ok((consumed, None));
        };
        let rest = buf.get(consumed..).unwrap_or_default();
        let done = match framing {
            Framing::Length(remaining) => {
                let n = rest
                    .len()
                    .min(usize::try_from(*remaining).unwrap_or(usize::MAX));
                request.body.extend_from_slice(&rest[..n]);
                *remaining -= n as u64;
                consumed += n;
                *remaining == 0
            }
            Framing::Chunked(decoder) => {
                let (n, done) = decoder.decode(rest, &mut request.body)?;
                consumed += n;
                if done {
                    request.trailers = decoder.take_trailers();
                }
                done
            }
        };
        if !done {
            return Ok((consumed, None));
        }
        match mem::replace(&mut self.state, State::Idle) {
            State::Body(request, _) => Ok((consumed, Some(*request))),
            _ => Ok((consumed, None)), // unreachable: the state was Body just above
        }
    }
}

/// Parses and checks a complete head. Returns the request (body still empty), how its body
/// is framed (`None`: no body) and whether the client expects `100 Continue`.
fn parse_head(
    head: &[u8],
    fields: usize,
    limits: &Limits,
) -> Result<(Request, Option<Framing>, bool), HttpError> {
    check_version_token(head)?;
    let mut parsed = vec![httparse::EMPTY_HEADER; fields];
    let mut raw = httparse::Request::new(&mut parsed);
    match raw.parse(head) {
        Ok(httparse::Status::Complete(n)) if n == head.len() => {}
        Ok(_) => return Err(HttpError::bad_request("malformed request head")),
        Err(httparse::Error::TooManyHeaders) => {
            return Err(HttpError::new(431, "too many header fields"))
        }
        Err(httparse::Error::HeaderName | httparse::Error::HeaderValue) => {
            return Err(HttpError::bad_request("malformed header field"))
        }
        Err(_) => return Err(HttpError::bad_request("malformed request line")),
    }
    let (Some(method), Some(target), Some(minor)) = (raw.method, raw.path, raw.version) else {
        return Err(HttpError::bad_request("malformed request line"));
    };
    let version = if minor == 0 {
        Version::Http10
    } else {
        Version::Http11
    };
    let mut request = Request {
        method: method.to_owned(),
        target: String::new(),
        version,
        headers: own_headers(raw.headers),
        body: Vec::new(),
        trailers: Vec::new(),
    };
    log::trace!("<- {method} {target} {}", version.as_str());

    // RFC 9112 §3.2: "A server MUST respond with a 400 (Bad Request) status code to any
    // HTTP/1.1 request message that lacks a Host header field and to any request message
    // that contains more than one Host header field line or a Host header field with an
    // invalid field value."
    let host = first_value(&request.headers, "host");
    match (host, values_named(&request.headers, "host").nth(1)) {
        (_, Some(_)) => return Err(HttpError::bad_request("more than one Host field")),
        (None, None) if version == Version::Http11 => {
            return Err(HttpError::bad_request("missing Host field"))
        }
        (Some(host), None) if !valid_authority(host) => {
            return Err(HttpError::bad_request("invalid Host field"))
        }
        _ => {}
    }
    request.target = origin_form(target, &request.method, &mut request.headers)?;

    let framing = body_framing(&request, limits)?;

    // RFC 9110 §10.1.1: "A server that receives an Expect field value containing a member
    // other than 100-continue MAY respond with a 417 (Expectation Failed) status code".
    let mut expect_continue = false;
    for member in list_elements(values_named(&request.headers, "expect")) {
        if !member.eq_ignore_ascii_case(b"100-continue") {
            return Err(HttpError::new(417, "unsupported expectation"));
        }
        expect_continue = true;
    }
    Ok((request, framing, expect_continue))
}

/// Finds the version token at the end of the request line: an HTTP-version other than 1.0
/// and 1.1 is 505 (httparse only knows HTTP/1.x, and would call it malformed).
fn check_version_token(head: &[u8]) -> Result<(), HttpError> {
    let line_end = head.iter().position(|&b| b == b'\r').unwrap_or(head.len());
    let line = head.get(..line_end).unwrap_or_default();
    let token = line.rsplit(|&b| b == b' ').next().unwrap_or_default();
    // HTTP-version = HTTP-name "/" DIGIT "." DIGIT  (RFC 9112 §2.3)
    match token {
        b"HTTP/1.0" | b"HTTP/1.1" => Ok(()),
        [b'H', b'T', b'T', b'P', b'/', major, b'.', minor]
            if major.is_ascii_digit() && minor.is_ascii_digit() =>
        {
            Err(HttpError::new(505, "HTTP version not supported"))
        }
        _ => Err(HttpError::bad_request("malformed request line")),
    }
}

/// Checks the request target (RFC 9112 §3.2) and returns it in origin-form.
///
/// * origin-form `/path?query`: kept; every byte must be visible ASCII and `#` is refused
///   (a fragment is never sent).
/// * asterisk-form `*`: only for `OPTIONS`.
/// * absolute-form `http://authority/path?query`: "When an origin server receives a request
///   with an absolute-form of request-target, the origin server MUST ignore the received
///   Host header field (if any) and instead use the host information of the
///   request-target" (RFC 9112 §3.2.2): the `Host` field is replaced by the authority.
/// * authority-form (`CONNECT host:port`) and anything else: 400.
fn origin_form(target: &str, method: &str, headers: &mut Vec<Header>) -> Result<String, HttpError> {
    let bad = HttpError::bad_request("invalid request target");
    if !target
        .bytes()
        .all(|b| matches!(b, 0x21..=0x7E) && b != b'#')
    {
        return Err(bad);
    }
    if target.starts_with('/') {
        return Ok(target.to_owned());
    }
    if target == "*" {
        return if method == "OPTIONS" {
            Ok(target.to_owned())
        } else {
            Err(bad)
        };
    }
    let scheme_len = match target.find("://") {
        Some(n) if target[..n].eq_ignore_ascii_case("http") => n,
        Some(n) if target[..n].eq_ignore_ascii_case("https") => n,
        _ => return Err(bad),
    };
    let rest = &target[scheme_len + 3..];
    let authority_len = rest.find(['/', '?']).unwrap_or(rest.len());
    let (authority, path) = rest.split_at(authority_len);
    // RFC 9110 §4.2.1: "A recipient that processes such a URI reference [with an empty
    // host] MUST reject it as invalid."
    if authority.is_empty() || authority.starts_with(':') || !valid_authority(authority.as_bytes())
    {
        return Err(bad);
    }
    match headers
        .iter_mut()
        .find(|h| h.name.eq_ignore_ascii_case("host"))
    {
        Some(host) => host.value = authority.as_bytes().to_vec(),
        None => headers.push(Header {
            name: "Host".into(),
            value: authority.as_bytes().to_vec(),
        }),
    }
    Ok(match path.as_bytes().first() {
        Some(b'/') => path.to_owned(),
        _ => format!("/{path}"),
    })
}

/// `uri-host [ ":" port ]` (RFC 3986 §3.2.2): unreserved, pct-encoded, sub-delims, `:` and
/// the brackets of an IP literal; no userinfo (`@`), no whitespace, nothing else.
fn valid_authority(value: &[u8]) -> bool {
    value
        .iter()
        .all(|&b| b.is_ascii_alphanumeric() || b"-._~%!$&'()*+,;=:[]".contains(&b))
}

/// Decides how the body is delimited (RFC 9112 §6.1-§6.3). `None`: no body.
fn body_framing(request: &Request, limits: &Limits) -> Result<Option<Framing>, HttpError> {
    let coding = transfer_coding(&request.headers)?;
    let length = content_length(&request.headers)?;
    if coding != Coding::Absent {
        // RFC 9112 §6.1: "A server or client that receives an HTTP/1.0 message containing a
        // Transfer-Encoding header field MUST treat the message as if the framing is faulty".
        if request.version == Version::Http10 {
            return Err(HttpError::bad_request(
                "Transfer-Encoding in an HTTP/1.0 request",
            ));
        }
        // RFC 9112 §6.1: "A server MAY reject a request that contains both Content-Length
        // and Transfer-Encoding or process such a request in accordance with the
        // Transfer-Encoding alone." Refused: it is how requests are smuggled.
        if length.is_some() {
            return Err(HttpError::bad_request(
                "both Content-Length and Transfer-Encoding",
            ));
        }
    }
    match coding {
        // RFC 9112 §6.3: "If a Transfer-Encoding header field is present in a request and
        // the chunked transfer coding is not the final encoding, the message body length
        // cannot be determined reliably; the server MUST respond with the 400 (Bad Request)
        // status code and then close the connection."
        Coding::NotChunked => Err(HttpError::bad_request(
            "final transfer coding is not chunked",
        )),
        // RFC 9112 §6.1: "A server that receives a request message with a transfer coding
        // it does not understand SHOULD respond with 501 (Not Implemented)."
        Coding::Chunked { others: true } => Err(HttpError::new(501, "unsupported transfer coding")),
        Coding::Chunked { others: false } => {
            Ok(Some(Framing::Chunked(Box::new(ChunkedDecoder::new(
                limits.max_body_bytes as u64,
                limits.max_head_bytes,
                limits.max_headers,
            )))))
        }
        Coding::Absent => match length {
            Some(n) if n > limits.max_body_bytes as u64 => {
                Err(HttpError::new(413, "body too large"))
            }
            Some(n) if n > 0 => Ok(Some(Framing::Length(n))),
            // RFC 9112 §6.3: "If this is a request message and none of the above are true,
            // then the message body length is zero".
            _ => Ok(None),
        },
    }
}

#[cfg(test)]
mod tests;
