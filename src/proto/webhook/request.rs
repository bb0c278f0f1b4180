//! The webhook request encoder: one HTTP/1.1 `POST` with a `Content-Length` body
//! (RFC 9112 §3 request line, §6.2 Content-Length; RFC 9110 §7.2 Host).
//!
//! The request line uses the origin-form target (RFC 9112 §3.2.1), and "A client MUST send
//! a Host header field in all HTTP/1.1 request messages" (RFC 9112 §3.2). The framing
//! headers (`Host`, `Content-Length`, `Transfer-Encoding`) and the fixed ones
//! (`Content-Type: application/json`, `User-Agent`) are written by the encoder and cannot
//! be given again by the caller, so a request can never carry two conflicting lengths.
//! Caller header names must be tokens and values must not contain CR, LF, NUL or other
//! control characters (RFC 9110 §5.5: "Field values containing CR, LF, or NUL characters
//! are invalid and dangerous"): a bad header refuses the whole request and leaves the
//! output buffer as it was.
//!
//! [`encode_webhook`] adds the three Standard Webhooks headers (`webhook-id`,
//! `webhook-timestamp`, `webhook-signature`) signed with the endpoint's secret.

use std::fmt;

use super::sign::Secret;
use super::url::Url;

/// The `User-Agent` sent with every webhook.
pub const USER_AGENT: &str = concat!("pushwire/", env!("CARGO_PKG_VERSION"));

/// Headers the encoder writes itself (compared case-insensitively).
const RESERVED: [&str; 5] = [
    "host",
    "content-length",
    "transfer-encoding",
    "content-type",
    "user-agent",
];

/// Why a request was not encoded.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RequestError {
    /// A header name that is not an RFC 9110 token (carries the name, escaped).
    BadHeaderName(String),
    /// A header value with CR, LF, NUL or another control character (carries the name).
    BadHeaderValue(String),
    /// A header the encoder sets itself (carries the name).
    ReservedHeader(String),
}

impl fmt::Display for RequestError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            RequestError::BadHeaderName(n) => write!(f, "invalid header name {n:?}"),
            RequestError::BadHeaderValue(n) => {
                write!(
                    f,
                    "header {n} has a control character (CR, LF, NUL, ...) in its value"
                )
            }
            RequestError::ReservedHeader(n) => write!(f, "header {n} is set by the encoder"),
        }
    }
}

impl std::error::Error for RequestError {}

/// Appends `POST {path} HTTP/1.1` with `Host`, `User-Agent`, `Content-Type:
/// application/json`, `Content-Length`, then `headers` in order, then `body`.
///
/// Nothing is appended when a header is refused.
pub fn encode_post(
    out: &mut Vec<u8>,
    url: &Url,
    headers: &[(&str, &str)],
    body: &[u8],
) -> Result<(), RequestError> {
    for (name, value) in headers {
        check_header(name, value)?;
    }
    out.reserve(
        128 + url.path_and_query.len()
            + headers
                .iter()
                .map(|(n, v)| n.len() + v.len() + 4)
                .sum::<usize>()
            + body.len(),
    );
    let start = out.len();
    out.extend_from_slice(b"POST ");
    out.extend_from_slice(url.path_and_query.as_bytes());
    out.extend_from_slice(b" HTTP/1.1\r\nHost: ");
    out.extend_from_slice(url.host_header().as_bytes());
    out.extend_from_slice(b"\r\nUser-Agent: ");
    out.extend_from_slice(USER_AGENT.as_bytes());
    out.extend_from_slice(b"\r\nContent-Type: application/json\r\nContent-Length: ");
    out.extend_from_slice(body.len().to_string().as_bytes());
    out.extend_from_slice(b"\r\n");
    for (name, value) in headers {
        out.extend_from_slice(name.as_bytes());
        out.extend_from_slice(b": ");
        out.extend_from_slice(value.trim_matches([' ', '\t']).as_bytes());
        out.extend_from_slice(b"\r\n");
    }
    out.extend_from_slice(b"\r\n");
    log::trace!(
        "webhook request head: {:?}",
        String::from_utf8_lossy(&out[start..])
    );
    out.extend_from_slice(body);
    Ok(())
}

/// Appends a signed Standard Webhooks POST: `webhook-id: {webhook_id}`,
/// `webhook-timestamp: {timestamp}` (unix seconds of this attempt) and
/// `webhook-signature: v1,...` over `{webhook_id}.{timestamp}.{body}`, then `extra`
/// headers, via [`encode_post`].
///
/// The spec asks that the id contain no `.` (it is a separator of the signed content):
/// build ids from characters other than `.`.
pub fn encode_webhook(
    out: &mut Vec<u8>,
    url: &Url,
    secret: &Secret,
    webhook_id: &str,
    timestamp: u64,
    extra: &[(&str, &str)],
    body: &[u8],
) -> Result<(), RequestError> {
    let ts = timestamp.to_string();
    let signature = secret.sign(webhook_id, timestamp, body);
    let mut headers: Vec<(&str, &str)> = Vec::with_capacity(3 + extra.len());
    headers.push(("webhook-id", webhook_id));
    headers.push(("webhook-timestamp", &ts));
    headers.push(("webhook-signature", &signature));
    headers.extend_from_slice(extra);
    encode_post(out, url, &headers, body)
}

fn check_header(name: &str, value: &str) -> Result<(), RequestError> {
    if name.is_empty() || !name.bytes().all(is_tchar) {
        return Err(RequestError::BadHeaderName(name.escape_debug().to_string()));
    }
    if RESERVED.iter().any(|r| r.eq_ignore_ascii_case(name)) {
        return Err(RequestError::ReservedHeader(name.to_owned()));
    }
    // field-content: VCHAR, obs-text, SP and HTAB only.
    if value.bytes().any(|b| (b < 0x20 && b != b'\t') || b == 0x7F) {
        return Err(RequestError::BadHeaderValue(name.to_owned()));
    }
    Ok(())
}

/// `tchar` of RFC 9110 §5.6.2.
fn is_tchar(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::proto::webhook::sign::DEFAULT_TOLERANCE;

    #[test]
    fn exact_bytes() {
        let url = Url::parse("http://Example.com:8080/hook?x=1#f").unwrap();
        let mut out = b"previous".to_vec();
        encode_post(
            &mut out,
            &url,
            &[("webhook-id", "msg_1"), ("X-A", " b ")],
            b"{}",
        )
        .unwrap();
        let want = format!(
            "previousPOST /hook?x=1 HTTP/1.1\r\nHost: example.com:8080\r\nUser-Agent: pushwire/{}\r\n\
             Content-Type: application/json\r\nContent-Length: 2\r\nwebhook-id: msg_1\r\nX-A: b\r\n\r\n{{}}",
            env!("CARGO_PKG_VERSION")
        );
        assert_eq!(String::from_utf8(out).unwrap(), want);

        let url = Url::parse("http://[::1]").unwrap();
        let mut out = Vec::new();
        encode_post(&mut out, &url, &[], b"").unwrap();
        assert!(out.starts_with(b"POST / HTTP/1.1\r\nHost: [::1]\r\n"));
        assert!(out.ends_with(b"Content-Length: 0\r\n\r\n"));
    }

    #[test]
    fn bad_headers_write_nothing() {
        let url = Url::parse("http://h/").unwrap();
        let table: &[(&str, &str, RequestError)] = &[
            (
                "X-A",
                "a\r\nX-Evil: 1",
                RequestError::BadHeaderValue("X-A".into()),
            ),
            ("X-A", "a\nb", RequestError::BadHeaderValue("X-A".into())),
            ("X-A", "a\rb", RequestError::BadHeaderValue("X-A".into())),
            ("X-A", "a\0b", RequestError::BadHeaderValue("X-A".into())),
            ("X-A", "a\x7fb", RequestError::BadHeaderValue("X-A".into())),
            ("X A", "v", RequestError::BadHeaderName("X A".into())),
            (
                "X-A\r\n",
                "v",
                RequestError::BadHeaderName("X-A\\r\\n".into()),
            ),
            ("", "v", RequestError::BadHeaderName("".into())),
            ("X:A", "v", RequestError::BadHeaderName("X:A".into())),
            (
                "Content-Length",
                "5",
                RequestError::ReservedHeader("Content-Length".into()),
            ),
            (
                "transfer-encoding",
                "chunked",
                RequestError::ReservedHeader("transfer-encoding".into()),
            ),
            ("HOST", "x", RequestError::ReservedHeader("HOST".into())),
            (
                "Content-Type",
                "x",
                RequestError::ReservedHeader("Content-Type".into()),
            ),
            (
                "User-Agent",
                "x",
                RequestError::ReservedHeader("User-Agent".into()),
            ),
        ];
        for (name, value, want) in table {
            let mut out = b"keep".to_vec();
            let got = encode_post(&mut out, &url, &[("ok", "fine"), (name, value)], b"body");
            assert_eq!(got.as_ref(), Err(want), "{name:?}: {value:?}");
            assert_eq!(out, b"keep");
        }
        // tabs, obs-text and empty values are fine
        let mut out = Vec::new();
        encode_post(
            &mut out,
            &url,
            &[("X-T", "a\tb"), ("X-U", "é"), ("X-E", "")],
            b"",
        )
        .unwrap();
    }

    #[test]
    fn signed_webhook_verifies() {
        let url = Url::parse("http://127.0.0.1:9/in").unwrap();
        let secret = Secret::from_bytes(&[3; 32]).unwrap();
        let body = br#"{"type":"message","data":{}}"#;
        let mut out = Vec::new();
        encode_webhook(&mut out, &url, &secret, "msg_x_1", 1_700_000_000, &[], body).unwrap();
        // Parse it back with httparse and verify as a receiver would.
        let mut headers = [httparse::EMPTY_HEADER; 16];
        let mut req = httparse::Request::new(&mut headers);
        let httparse::Status::Complete(n) = req.parse(&out).unwrap() else {
            panic!("partial")
        };
        assert_eq!(req.method, Some("POST"));
        assert_eq!(req.path, Some("/in"));
        let get = |name: &str| {
            req.headers
                .iter()
                .find(|h| h.name.eq_ignore_ascii_case(name))
                .map(|h| std::str::from_utf8(h.value).unwrap())
                .unwrap()
        };
        assert_eq!(get("host"), "127.0.0.1:9");
        assert_eq!(get("content-length"), body.len().to_string());
        assert_eq!(get("webhook-id"), "msg_x_1");
        assert_eq!(get("webhook-timestamp"), "1700000000");
        assert_eq!(&out[n..], body);
        secret
            .verify(
                get("webhook-id"),
                get("webhook-timestamp"),
                get("webhook-signature"),
                &out[n..],
                1_700_000_100,
                DEFAULT_TOLERANCE,
            )
            .unwrap();
    }
}
