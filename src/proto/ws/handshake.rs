//! The server side of the opening handshake (RFC 6455 §4.2.1, §4.2.2).
//!
//! The HTTP layer parses the request head; [`validate_request`] looks at its method and
//! header fields and decides whether it is a valid WebSocket handshake, and
//! [`write_accept_response`] writes the `101 Switching Protocols` answer with the
//! `Sec-WebSocket-Accept` value of [`accept_key`].
//!
//! The HTTP version (§4.2.1: "An HTTP/1.1 or higher GET request") is the HTTP layer's to
//! check: it is not among the inputs here. The `Sec-WebSocket-Extensions` offers are
//! collected ([`Handshake::extensions`], every field joined with `,` as RFC 9110 §5.3
//! allows) for [`negotiate`](super::extensions::negotiate); the chosen answer goes into
//! the 101 (§9.1).
//!
//! Answers to a refused handshake:
//!
//! * not a WebSocket request at all (not GET, no `Upgrade: websocket` or no
//!   `Connection: upgrade`): 400;
//! * otherwise a missing or unsupported `Sec-WebSocket-Version`: 426, and the response must
//!   carry `Sec-WebSocket-Version: 13` (§4.2.2 step 4, §4.4);
//! * any other fault (no Host, a bad key, a malformed subprotocol list): 400.

use base64::engine::general_purpose::STANDARD;
use base64::Engine as _;
use sha1::{Digest, Sha1};

/// The GUID of §1.3 appended to the client's key before hashing.
pub const ACCEPT_GUID: &str = "258EAFA5-E914-47DA-95CA-C5AB0DC85B11";

/// The only protocol version this implementation speaks (§4.1, §11.6).
pub const VERSION: &str = "13";

/// A valid handshake request: what the application needs to accept or refuse it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Handshake<'a> {
    /// `Sec-WebSocket-Key`, trimmed; feed it to [`accept_key`] / [`write_accept_response`].
    pub key: &'a str,
    /// The subprotocols the client offered in `Sec-WebSocket-Protocol`, in order of
    /// preference (all occurrences of the field, comma lists split, each a token).
    pub protocols: Vec<&'a str>,
    /// `Origin`, when sent (browsers always send it, §4.2.2 / §10.2).
    pub origin: Option<&'a str>,
    /// Every `Sec-WebSocket-Extensions` value joined with `, ` (empty when none was sent;
    /// a value that is not UTF-8 is left out, which declines it).
    pub extensions: String,
}

/// Why a handshake was refused, and the HTTP status to answer with.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct HandshakeError {
    /// 400 Bad Request, or 426 Upgrade Required (then add `Sec-WebSocket-Version: 13`).
    pub status: u16,
    /// A short human-readable reason, suitable for logs and the response body.
    pub reason: &'static str,
}

impl std::fmt::Display for HandshakeError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "websocket handshake refused ({}): {}",
            self.status, self.reason
        )
    }
}

impl std::error::Error for HandshakeError {}

fn bad(reason: &'static str) -> HandshakeError {
    HandshakeError {
        status: 400,
        reason,
    }
}

/// Splits a header value into its comma-separated, whitespace-trimmed, non-empty elements
/// (RFC 9110 §5.6.1 list syntax).
fn list_elements(value: &[u8]) -> impl Iterator<Item = &[u8]> {
    value
        .split(|&b| b == b',')
        .map(<[u8]>::trim_ascii)
        .filter(|e| !e.is_empty())
}

/// `tchar` of RFC 9110 §5.6.2.
fn is_tchar(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b)
}

fn is_token(s: &[u8]) -> bool {
    !s.is_empty() && s.iter().all(|&b| is_tchar(b))
}

/// Checks a parsed request head against §4.2.1. `headers` are (name, value) pairs as the
/// HTTP parser produced them (e.g. httparse's `Header { name, value }`); names are matched
/// case-insensitively and values may carry surrounding whitespace.
pub fn validate_request<'a, I>(method: &str, headers: I) -> Result<Handshake<'a>, HandshakeError>
where
    I: IntoIterator<Item = (&'a str, &'a [u8])>,
{
    let mut upgrade_websocket = false;
    let mut connection_upgrade = false;
    let mut has_host = false;
    let mut versions = 0usize;
    let mut version_13 = false;
    let mut key: Option<&'a [u8]> = None;
    let mut keys = 0usize;
    let mut protocol_values: Vec<&'a [u8]> = Vec::new();
    let mut origin: Option<&'a [u8]> = None;
    let mut origins = 0usize;
    let mut extensions = String::new();

    for (name, value) in headers {
        let value = value.trim_ascii();
        if name.eq_ignore_ascii_case("upgrade") {
            // Protocol names are case-insensitive (RFC 9110 §7.8); a version suffix
            // ("websocket/13") is not the token "websocket".
            upgrade_websocket |= list_elements(value).any(|e| e.eq_ignore_ascii_case(b"websocket"));
        } else if name.eq_ignore_ascii_case("connection") {
            connection_upgrade |= list_elements(value).any(|e| e.eq_ignore_ascii_case(b"upgrade"));
        } else if name.eq_ignore_ascii_case("host") {
            has_host = true;
        } else if name.eq_ignore_ascii_case("sec-websocket-version") {
            versions += 1;
            version_13 = value == VERSION.as_bytes();
        } else if name.eq_ignore_ascii_case("sec-websocket-key") {
            keys += 1;
            key = Some(value);
        } else if name.eq_ignore_ascii_case("sec-websocket-protocol") {
            protocol_values.push(value);
        } else if name.eq_ignore_ascii_case("sec-websocket-extensions") {
            if let Ok(v) = std::str::from_utf8(value) {
                if !extensions.is_empty() {
                    extensions.push_str(", ");
                }
                extensions.push_str(v);
            }
        } else if name.eq_ignore_ascii_case("origin") {
            origins += 1;
            origin = Some(value);
        }
    }

    // "The method of the request MUST be GET" (§4.1); "An |Upgrade| header field containing
    // the value "websocket"" and "A |Connection| header field that includes the token
    // "Upgrade"" (§4.2.1). Without these it is not a WebSocket handshake at all.
    if method != "GET" {
        return Err(bad("WebSocket handshake must be a GET request"));
    }
    if !upgrade_websocket || !connection_upgrade {
        return Err(bad("not a WebSocket upgrade request"));
    }
    // "A |Sec-WebSocket-Version| header field, with a value of 13." (§4.2.1) Otherwise "the
    // server MUST abort the WebSocket handshake [...] and instead send an appropriate HTTP
    // error code (such as 426 Upgrade Required) and a |Sec-WebSocket-Version| header field
    // indicating the version(s) the server is capable of understanding." (§4.2.2)
    if versions != 1 || !version_13 {
        return Err(HandshakeError {
            status: 426,
            reason: "unsupported Sec-WebSocket-Version (only 13)",
        });
    }
    // "A |Host| header field containing the server's authority." (§4.2.1)
    if !has_host {
        return Err(bad("missing Host"));
    }
    // "A |Sec-WebSocket-Key| header field with a base64-encoded value that, when decoded,
    // is 16 bytes in length." (§4.2.1)
    let key = match (keys, key) {
        (1, Some(key)) => key,
        (0, _) | (_, None) => return Err(bad("missing Sec-WebSocket-Key")),
        _ => return Err(bad("repeated Sec-WebSocket-Key")),
    };
    // A 16-byte value is exactly 24 base64 characters; checking the length first keeps the
    // decode buffer fixed.
    let mut decoded = [0u8; 18];
    let key_ok = key.len() == 24 && matches!(STANDARD.decode_slice(key, &mut decoded), Ok(16));
    let key = match std::str::from_utf8(key) {
        Ok(key) if key_ok => key,
        _ => return Err(bad("Sec-WebSocket-Key is not base64 of 16 bytes")),
    };

    // "|Sec-WebSocket-Protocol| header field, with a list of values indicating which
    // protocols the client would like to speak, ordered by preference." (§4.2.1) Each
    // element is a token (§4.1: "elements that comprise this value MUST be non-empty strings
    // with characters in the range U+0021 to U+007E not including separator characters").
    let mut protocols = Vec::new();
    for value in protocol_values {
        for element in list_elements(value) {
            match std::str::from_utf8(element) {
                Ok(p) if is_token(element) => protocols.push(p),
                _ => return Err(bad("malformed Sec-WebSocket-Protocol")),
            }
        }
    }

    let origin = match (origins, origin) {
        (0, _) | (_, None) => None,
        (1, Some(o)) => match std::str::from_utf8(o) {
            Ok(o) => Some(o),
            Err(_) => return Err(bad("Origin is not ASCII")),
        },
        _ => return Err(bad("repeated Origin")),
    };

    log::trace!("ws handshake ok: protocols {protocols:?} origin {origin:?}");
    Ok(Handshake {
        key,
        protocols,
        origin,
        extensions,
    })
}

/// The `Sec-WebSocket-Accept` value for a client's key (§4.2.2 step 5.4): the base64 of
/// the SHA-1 of the key concatenated with [`ACCEPT_GUID`].
pub fn accept_key(key: &str) -> String {
    let mut sha = Sha1::new();
    sha.update(key.as_bytes());
    sha.update(ACCEPT_GUID.as_bytes());
    STANDARD.encode(sha.finalize())
}

/// Appends the whole `101 Switching Protocols` response (status line, header fields and
/// the empty line) accepting the handshake with `key` (§4.2.2 step 5).
///
/// `protocol` is the subprotocol chosen among [`Handshake::protocols`], if any. It must be
/// a token; anything else (which could inject header fields) is left out of the response.
/// `extensions` is the `Sec-WebSocket-Extensions` answer (§9.1), e.g.
/// [`Agreed::response`](super::extensions::Agreed::response); a value with CR or LF is
/// left out. `extra` are the application's own fields (a cookie, say), written by
/// [`write_extra_fields`](crate::proto::http1::write_extra_fields), which leaves out the
/// ones the handshake owns.
pub fn write_accept_response(
    out: &mut Vec<u8>,
    key: &str,
    protocol: Option<&str>,
    extensions: Option<&str>,
    extra: &[(String, String)],
) {
    out.extend_from_slice(
        b"HTTP/1.1 101 Switching Protocols\r\n\
          Upgrade: websocket\r\n\
          Connection: Upgrade\r\n\
          Sec-WebSocket-Accept: ",
    );
    out.extend_from_slice(accept_key(key).as_bytes());
    out.extend_from_slice(b"\r\n");
    if let Some(p) = protocol.filter(|p| is_token(p.as_bytes())) {
        out.extend_from_slice(b"Sec-WebSocket-Protocol: ");
        out.extend_from_slice(p.as_bytes());
        out.extend_from_slice(b"\r\n");
    }
    if let Some(e) = extensions.filter(|e| !e.bytes().any(|b| b == b'\r' || b == b'\n')) {
        out.extend_from_slice(b"Sec-WebSocket-Extensions: ");
        out.extend_from_slice(e.as_bytes());
        out.extend_from_slice(b"\r\n");
    }
    crate::proto::http1::write_extra_fields(out, extra);
    out.extend_from_slice(b"\r\n");
}

#[cfg(test)]
mod tests {
    use super::*;

    const KEY: &str = "dGhlIHNhbXBsZSBub25jZQ==";

    type Headers = Vec<(&'static str, &'static [u8])>;

    fn base() -> Headers {
        vec![
            ("Host", b"server.example.com"),
            ("Upgrade", b"websocket"),
            ("Connection", b"Upgrade"),
            ("Sec-WebSocket-Key", KEY.as_bytes()),
            ("Origin", b"http://example.com"),
            ("Sec-WebSocket-Protocol", b"chat, superchat"),
            ("Sec-WebSocket-Version", b"13"),
        ]
    }

    fn with(mut headers: Headers, name: &str, value: Option<&'static [u8]>) -> Headers {
        headers.retain(|(n, _)| !n.eq_ignore_ascii_case(name));
        if let Some(v) = value {
            let name: &'static str = Box::leak(name.to_owned().into_boxed_str());
            headers.push((name, v));
        }
        headers
    }

    #[test]
    fn rfc_accept_key_example() {
        // RFC 6455 §1.3 and §4.2.2.
        assert_eq!(accept_key(KEY), "s3pPLMBiTxaQ9kYGzzhZRbK+xOo=");
    }

    #[test]
    fn rfc_request_is_valid() {
        let hs = validate_request("GET", base()).unwrap();
        assert_eq!(
            hs,
            Handshake {
                key: KEY,
                protocols: vec!["chat", "superchat"],
                origin: Some("http://example.com"),
                extensions: String::new(),
            }
        );
        // Every Sec-WebSocket-Extensions field, joined.
        let mut h = base();
        h.push((
            "Sec-WebSocket-Extensions",
            b" permessage-deflate; client_max_window_bits ",
        ));
        h.push(("sec-websocket-extensions", b"x-foo"));
        assert_eq!(
            validate_request("GET", h).unwrap().extensions,
            "permessage-deflate; client_max_window_bits, x-foo"
        );
    }

    #[test]
    fn lenient_forms() {
        let mut h = with(base(), "Upgrade", Some(b"  WebSocket "));
        h = with(h, "Connection", Some(b"keep-alive, UPGRADE"));
        h = with(h, "Sec-WebSocket-Protocol", None);
        h = with(h, "Origin", None);
        h.push(("sec-websocket-protocol", b"a,, b "));
        h.push(("SEC-WEBSOCKET-PROTOCOL", b"c"));
        let hs = validate_request("GET", h).unwrap();
        assert_eq!(hs.protocols, ["a", "b", "c"]);
        assert_eq!(hs.origin, None);
        // Upgrade as a list; Connection repeated.
        let mut h = with(base(), "Upgrade", Some(b"h2c, websocket"));
        h = with(h, "Connection", Some(b"keep-alive"));
        h.push(("connection", b"upgrade"));
        assert!(validate_request("GET", h).is_ok());
    }

    #[test]
    fn refusals() {
        let cases: Vec<(&str, Headers, u16, &str)> = vec![
            (
                "POST",
                base(),
                400,
                "WebSocket handshake must be a GET request",
            ),
            (
                "get",
                base(),
                400,
                "WebSocket handshake must be a GET request",
            ),
            (
                "GET",
                with(base(), "Upgrade", None),
                400,
                "not a WebSocket upgrade request",
            ),
            (
                "GET",
                with(base(), "Upgrade", Some(b"h2c")),
                400,
                "not a WebSocket upgrade request",
            ),
            (
                "GET",
                with(base(), "Upgrade", Some(b"websocket/13")),
                400,
                "not a WebSocket upgrade request",
            ),
            (
                "GET",
                with(base(), "Connection", None),
                400,
                "not a WebSocket upgrade request",
            ),
            (
                "GET",
                with(base(), "Connection", Some(b"keep-alive")),
                400,
                "not a WebSocket upgrade request",
            ),
            // Without upgrade headers the version does not matter: 400, not 426.
            (
                "GET",
                with(with(base(), "Upgrade", None), "Sec-WebSocket-Version", None),
                400,
                "not a WebSocket upgrade request",
            ),
            (
                "GET",
                with(base(), "Sec-WebSocket-Version", None),
                426,
                "unsupported Sec-WebSocket-Version (only 13)",
            ),
            (
                "GET",
                with(base(), "Sec-WebSocket-Version", Some(b"8")),
                426,
                "unsupported Sec-WebSocket-Version (only 13)",
            ),
            (
                "GET",
                with(base(), "Sec-WebSocket-Version", Some(b"13, 8")),
                426,
                "unsupported Sec-WebSocket-Version (only 13)",
            ),
            ("GET", with(base(), "Host", None), 400, "missing Host"),
            (
                "GET",
                with(base(), "Sec-WebSocket-Key", None),
                400,
                "missing Sec-WebSocket-Key",
            ),
            (
                "GET",
                with(base(), "Sec-WebSocket-Key", Some(b"dGhlIHNhbXBsZSBub25jZQ")),
                400,
                "Sec-WebSocket-Key is not base64 of 16 bytes",
            ),
            (
                "GET",
                with(
                    base(),
                    "Sec-WebSocket-Key",
                    Some(b"dGhlIHNhbXBsZSBub25jZQ==dGhl"),
                ),
                400,
                "Sec-WebSocket-Key is not base64 of 16 bytes",
            ),
            (
                "GET",
                with(
                    base(),
                    "Sec-WebSocket-Key",
                    Some(b"dGhlIHNhbXBsZSBub25jZX=="),
                ),
                400,
                "Sec-WebSocket-Key is not base64 of 16 bytes",
            ),
            (
                "GET",
                with(
                    base(),
                    "Sec-WebSocket-Key",
                    Some(b"AAAAAAAAAAAAAAAAAAAAAAA="),
                ),
                400,
                "Sec-WebSocket-Key is not base64 of 16 bytes",
            ),
            (
                "GET",
                with(base(), "Sec-WebSocket-Protocol", Some(b"chat, su per")),
                400,
                "malformed Sec-WebSocket-Protocol",
            ),
            (
                "GET",
                with(base(), "Sec-WebSocket-Protocol", Some(b"chat\xff")),
                400,
                "malformed Sec-WebSocket-Protocol",
            ),
            (
                "GET",
                with(base(), "Origin", Some(b"http://\xffx")),
                400,
                "Origin is not ASCII",
            ),
        ];
        for (method, headers, status, reason) in cases {
            let got = validate_request(method, headers.clone());
            assert_eq!(
                got,
                Err(HandshakeError { status, reason }),
                "{method} {headers:?}"
            );
        }
        let mut twice = base();
        twice.push(("Sec-WebSocket-Key", KEY.as_bytes()));
        assert_eq!(
            validate_request("GET", twice).unwrap_err().reason,
            "repeated Sec-WebSocket-Key"
        );
        let mut twice = base();
        twice.push(("Sec-WebSocket-Version", b"13"));
        assert_eq!(validate_request("GET", twice).unwrap_err().status, 426);
    }

    #[test]
    fn accept_response_bytes() {
        let mut out = Vec::new();
        write_accept_response(&mut out, KEY, Some("chat"), None, &[]);
        assert_eq!(
            out,
            b"HTTP/1.1 101 Switching Protocols\r\n\
              Upgrade: websocket\r\n\
              Connection: Upgrade\r\n\
              Sec-WebSocket-Accept: s3pPLMBiTxaQ9kYGzzhZRbK+xOo=\r\n\
              Sec-WebSocket-Protocol: chat\r\n\r\n"
        );
        out.clear();
        write_accept_response(&mut out, KEY, None, None, &[]);
        assert!(out.ends_with(b"Sec-WebSocket-Accept: s3pPLMBiTxaQ9kYGzzhZRbK+xOo=\r\n\r\n"));
        out.clear();
        write_accept_response(
            &mut out,
            KEY,
            Some("x\r\nSet-Cookie: a=b"),
            Some("y\r\nA: b"),
            &[],
        );
        assert!(!out.windows(10).any(|w| w == b"Set-Cookie"));
        assert!(!out.windows(4).any(|w| w == b"A: b"));
        out.clear();
        let agreed = super::super::extensions::negotiate(
            "permessage-deflate; client_max_window_bits",
            Default::default(),
        )
        .unwrap();
        write_accept_response(&mut out, KEY, None, Some(&agreed.response()), &[]);
        assert!(out.ends_with(
            b"Sec-WebSocket-Accept: s3pPLMBiTxaQ9kYGzzhZRbK+xOo=\r\n\
              Sec-WebSocket-Extensions: permessage-deflate; server_no_context_takeover; \
              client_no_context_takeover\r\n\r\n"
        ));
        // The application's own fields come last; the handshake's own and broken ones
        // are left out.
        out.clear();
        let extra = [
            ("Set-Cookie", "s=1; HttpOnly"),
            ("sec-websocket-accept", "forged"),
            ("Connection", "close"),
            ("Content-Length", "0"),
            ("X-Bad", "a\r\nB: c"),
            ("Bad Name", "v"),
        ]
        .map(|(n, v)| (n.to_owned(), v.to_owned()));
        write_accept_response(&mut out, KEY, None, None, &extra);
        assert!(out.ends_with(
            b"Sec-WebSocket-Accept: s3pPLMBiTxaQ9kYGzzhZRbK+xOo=\r\n\
              Set-Cookie: s=1; HttpOnly\r\n\r\n"
        ));
    }
}
