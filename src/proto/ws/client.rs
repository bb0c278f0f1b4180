//! The client side of the opening handshake (RFC 6455 §3, §4.1, §4.2.2 seen from the
//! client, §11.3) and the permessage-deflate offer (RFC 7692 §5, §7.1), pure.
//!
//! [`WsUrl::parse`] reads the URL (§3). The driver connects and draws the 16 random bytes
//! of the nonce (an input here, never made here); [`write_request`] appends the `GET`
//! upgrade request (§4.1) and returns the `Sec-WebSocket-Accept` value to expect;
//! [`read_response`] reads the answer as bytes arrive (`Ok(None)` until the head is
//! complete) and checks it against the §4.1 list of what "the client MUST" do, failing the
//! handshake with a [`ClientHandshakeError`] naming the cause. The bytes after the head
//! ([`Accepted::head_len`]) are already WebSocket frames.
//!
//! A [`ClientOffer`] holds subprotocols, a permessage-deflate offer and extra fields;
//! [`check_offer`] refuses what cannot go on the wire. The request, optional fields last:
//!
//! ```text
//! GET /chat?x=1 HTTP/1.1
//! Host: server.example.com
//! Upgrade: websocket
//! Connection: Upgrade
//! Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==
//! Sec-WebSocket-Version: 13
//! Sec-WebSocket-Protocol: chat, superchat
//! Sec-WebSocket-Extensions: permessage-deflate; client_max_window_bits
//! Origin: http://example.com
//! ```
//!
//! Limits: [`MAX_URL_LEN`], [`MAX_RESPONSE_HEAD`] and [`MAX_RESPONSE_HEADERS`].

use std::fmt;
use std::net::Ipv6Addr;

use base64::engine::general_purpose::STANDARD;
use base64::Engine as _;

use super::extensions::{self, Agreed, DeflateParams, ResponseError};
use super::extensions::{MAX_WINDOW_BITS, MIN_WINDOW_BITS, PERMESSAGE_DEFLATE};
use super::handshake::{accept_key, VERSION};

/// The longest URL [`WsUrl::parse`] accepts, in bytes.
pub const MAX_URL_LEN: usize = 2048;
/// The longest response head [`read_response`] waits for, in bytes.
pub const MAX_RESPONSE_HEAD: usize = 16 * 1024;
/// The most header fields a response head may have.
pub const MAX_RESPONSE_HEADERS: usize = 64;

/// A parsed `ws://` or `wss://` URL (RFC 6455 §3).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WsUrl {
    /// `wss`: the connection runs over TLS, verified against [`host`](Self::host).
    pub secure: bool,
    /// The host, lowercase; an IPv6 literal without its brackets.
    pub host: String,
    /// The TCP port: the URL's, or 80 for `ws` and 443 for `wss` (§3).
    pub port: u16,
    /// The resource name of the request line (§3): the path (`/` when empty), then `?` and
    /// the query when the query is not empty.
    pub resource: String,
}

/// Why a URL is not a WebSocket URL.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum UrlError {
    /// Longer than [`MAX_URL_LEN`].
    TooLong,
    /// A space, control character or non-ASCII byte at this byte offset.
    BadChar(usize),
    /// The URL does not start with `ws://` or `wss://`.
    Scheme,
    /// `user@` before the host: the ws-URI grammar has none.
    UserInfo,
    /// Nothing between `//` and the port, path or query.
    EmptyHost,
    /// A host character RFC 3986's reg-name does not allow, or a `%`.
    BadHost,
    /// A bracketed IPv6 literal that does not parse (zone ids included).
    BadIpv6,
    /// The port is not a number from 1 to 65535.
    BadPort,
    /// A `#`: "Fragment identifiers are meaningless in the context of WebSocket URIs and
    /// MUST NOT be used on these URIs" (§3).
    Fragment,
}

impl fmt::Display for UrlError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            UrlError::TooLong => write!(f, "URL is longer than {MAX_URL_LEN} bytes"),
            UrlError::BadChar(at) => {
                write!(f, "URL has a space, control or non-ASCII byte at {at}")
            }
            UrlError::Scheme => f.write_str("URL must start with ws:// or wss://"),
            UrlError::UserInfo => f.write_str("a WebSocket URL has no user name or password"),
            UrlError::EmptyHost => f.write_str("URL has no host"),
            UrlError::BadHost => f.write_str("URL has an invalid host"),
            UrlError::BadIpv6 => f.write_str("URL has an invalid IPv6 address literal"),
            UrlError::BadPort => f.write_str("port must be a number from 1 to 65535"),
            UrlError::Fragment => f.write_str("URL has a fragment (escape '#' as %23)"),
        }
    }
}

impl std::error::Error for UrlError {}

impl WsUrl {
    /// Parses `ws-URI` or `wss-URI` (§3):
    ///
    /// ```text
    /// ws-URI  = "ws:" "//" host [ ":" port ] path [ "?" query ]
    /// wss-URI = "wss:" "//" host [ ":" port ] path [ "?" query ]
    /// ```
    ///
    /// The scheme and host are case-insensitive (RFC 3986 §3.1, §3.2.2); an empty port is
    /// the default one (RFC 3986 §3.2.3).
    pub fn parse(url: &str) -> Result<WsUrl, UrlError> {
        if url.len() > MAX_URL_LEN {
            return Err(UrlError::TooLong);
        }
        if let Some(at) = url.bytes().position(|b| b <= b' ' || b >= 0x7F) {
            return Err(UrlError::BadChar(at));
        }
        // "the character "#", when not indicating the start of a fragment, MUST be escaped
        // as %23" (§3): so any `#` starts one.
        if url.contains('#') {
            return Err(UrlError::Fragment);
        }
        let (scheme, rest) = url.split_once("://").ok_or(UrlError::Scheme)?;
        let secure = scheme.eq_ignore_ascii_case("wss");
        if !secure && !scheme.eq_ignore_ascii_case("ws") {
            return Err(UrlError::Scheme);
        }
        let (authority, path_and_query) =
            rest.split_at(rest.find(['/', '?']).unwrap_or(rest.len()));
        if authority.contains('@') {
            return Err(UrlError::UserInfo);
        }
        let (host, port) = if let Some(v6) = authority.strip_prefix('[') {
            let (inner, after) = v6.split_once(']').ok_or(UrlError::BadIpv6)?;
            let ip: Ipv6Addr = inner.parse().map_err(|_| UrlError::BadIpv6)?;
            let port = (!after.is_empty()).then(|| after.strip_prefix(':'));
            let port = port.map(|p| p.ok_or(UrlError::BadIpv6)).transpose()?;
            (ip.to_string(), port)
        } else {
            let (host, port) = authority
                .split_once(':')
                .map_or((authority, None), |(host, port)| (host, Some(port)));
            check_reg_name(host)?;
            (host.to_ascii_lowercase(), port)
        };
        let port = match port {
            None | Some("") => default_port(secure),
            Some(p) => parse_port(p)?,
        };
        // "/" if the path component is empty; the path component; "?" if the query
        // component is non-empty; the query component (§3).
        let (path, query) = path_and_query
            .split_once('?')
            .unwrap_or((path_and_query, ""));
        let path = if path.is_empty() { "/" } else { path };
        let resource = match query {
            "" => path.to_owned(),
            query => format!("{path}?{query}"),
        };
        Ok(WsUrl {
            secure,
            host,
            port,
            resource,
        })
    }

    /// The `Host` field value (§4.1 item 4): the host, plus `:port` when it is not the
    /// scheme's default; an IPv6 literal in brackets.
    pub fn host_header(&self) -> String {
        let v6 = self.host.contains(':');
        let (open, close) = if v6 { ("[", "]") } else { ("", "") };
        match self.port == default_port(self.secure) {
            true => format!("{open}{}{close}", self.host),
            false => format!("{open}{}{close}:{}", self.host, self.port),
        }
    }
}

impl fmt::Display for WsUrl {
    /// The normalized URL: scheme, `://`, the host header, the resource name.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let scheme = if self.secure { "wss" } else { "ws" };
        write!(f, "{scheme}://{}{}", self.host_header(), self.resource)
    }
}

fn default_port(secure: bool) -> u16 {
    [80, 443][usize::from(secure)]
}

fn parse_port(text: &str) -> Result<u16, UrlError> {
    match text.parse::<u16>() {
        Ok(port) if port != 0 && text.bytes().all(|b| b.is_ascii_digit()) => Ok(port),
        _ => Err(UrlError::BadPort),
    }
}

/// `reg-name = *( unreserved / sub-delims )` (RFC 3986 §3.2.2), not empty; no DNS name
/// needs the `pct-encoded` form, so `%` is refused.
fn check_reg_name(host: &str) -> Result<(), UrlError> {
    let ok = |c: u8| c.is_ascii_alphanumeric() || b"-._~!$&'()*+,;=".contains(&c);
    match host {
        "" => Err(UrlError::EmptyHost),
        _ if host.bytes().all(ok) => Ok(()),
        _ => Err(UrlError::BadHost),
    }
}

/// What the client offers in its request.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ClientOffer<'a> {
    /// Subprotocols, in order of preference (`Sec-WebSocket-Protocol`, §4.1 item 10): each
    /// a token, none twice. Empty: the field is not sent.
    pub protocols: &'a [&'a str],
    /// A permessage-deflate offer (RFC 7692 §7.1), windows of 9 to 15 bits.
    pub deflate: Option<DeflateParams>,
    /// Extra header fields, in order (`Origin`, `Authorization`, cookies, ...). The fields
    /// the handshake writes itself are refused here (see [`OfferError::ReservedHeader`]).
    pub headers: &'a [(&'a str, &'a str)],
}

/// Why an offer (or a URL built by hand) cannot be written as a request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum OfferError {
    /// A subprotocol that is not a token (§4.1: "non-empty strings with characters in the
    /// range U+0021 to U+007E not including separator characters").
    BadProtocol(String),
    /// A subprotocol listed twice (§4.1: they "MUST all be unique strings").
    DuplicateProtocol(String),
    /// A header field name that is not a token (RFC 9110 §5.1).
    BadHeaderName(String),
    /// The value of this header field has a CR, LF or other control character (RFC 9110
    /// §5.5). The value itself is not kept: it may be a credential.
    BadHeaderValue(String),
    /// A field the handshake writes itself (`Host`, `Upgrade`, `Connection`, the
    /// `Sec-WebSocket-*` fields), or one that would give the GET a body
    /// (`Content-Length`, `Transfer-Encoding`).
    ReservedHeader(String),
    /// A permessage-deflate window outside 9 to 15 bits (8 cannot be made by zlib).
    BadWindow(&'static str),
    /// A [`WsUrl`] whose fields were set by hand to something a request line or `Host`
    /// field cannot carry.
    BadUrl,
}

impl fmt::Display for OfferError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            OfferError::BadProtocol(p) => write!(f, "subprotocol {p:?} is not a token"),
            OfferError::DuplicateProtocol(p) => write!(f, "subprotocol {p:?} offered twice"),
            OfferError::BadHeaderName(n) => write!(f, "header field name {n:?} is not a token"),
            OfferError::BadHeaderValue(n) => write!(f, "a control character in the value of {n}"),
            OfferError::ReservedHeader(n) => write!(f, "{n} is written by the handshake itself"),
            OfferError::BadWindow(p) => write!(f, "permessage-deflate: {p} must be 9 to 15"),
            OfferError::BadUrl => f.write_str("the URL's host or resource cannot be sent"),
        }
    }
}

impl std::error::Error for OfferError {}

/// The fields [`write_request`] writes, and those that would give the GET a body.
const RESERVED: &str = "host upgrade connection sec-websocket-key sec-websocket-version \
                        sec-websocket-protocol sec-websocket-extensions content-length \
                        transfer-encoding";

/// Checks that `offer` can be written: see [`OfferError`] for what is refused.
pub fn check_offer(offer: &ClientOffer<'_>) -> Result<(), OfferError> {
    for (i, p) in offer.protocols.iter().enumerate() {
        if !is_token(p.as_bytes()) {
            return Err(OfferError::BadProtocol((*p).to_owned()));
        }
        if offer.protocols[..i].contains(p) {
            return Err(OfferError::DuplicateProtocol((*p).to_owned()));
        }
    }
    for (name, value) in offer.headers {
        if !is_token(name.as_bytes()) {
            return Err(OfferError::BadHeaderName((*name).to_owned()));
        }
        let reserved = RESERVED
            .split_whitespace()
            .any(|r| name.eq_ignore_ascii_case(r));
        if reserved {
            return Err(OfferError::ReservedHeader((*name).to_owned()));
        }
        // field-content is VCHAR, obs-text, SP and HTAB: no other control character.
        if value.bytes().any(|b| (b < b' ' && b != b'\t') || b == 0x7F) {
            return Err(OfferError::BadHeaderValue((*name).to_owned()));
        }
    }
    if let Some(d) = &offer.deflate {
        let ok = |bits: u8| (MIN_WINDOW_BITS..=MAX_WINDOW_BITS).contains(&bits);
        if d.server_max_window_bits.is_some_and(|b| !ok(b)) {
            return Err(OfferError::BadWindow("server_max_window_bits"));
        }
        if d.client_max_window_bits.flatten().is_some_and(|b| !ok(b)) {
            return Err(OfferError::BadWindow("client_max_window_bits"));
        }
    }
    Ok(())
}

/// Whether `url` (which may have been built by hand) can go into a request line and a
/// `Host` field: what [`WsUrl::parse`] would let through.
fn url_ok(url: &WsUrl) -> bool {
    let plain = |s: &str| s.bytes().all(|b| b > b' ' && b < 0x7F && b != b'#');
    let host_ok = url.host.parse::<Ipv6Addr>().is_ok() || check_reg_name(&url.host).is_ok();
    host_ok && url.port != 0 && url.resource.starts_with('/') && plain(&url.resource)
}

/// The `Sec-WebSocket-Extensions` offer for `d` (RFC 7692 §7.1).
fn render_deflate(d: &DeflateParams) -> String {
    let mut out = String::from(PERMESSAGE_DEFLATE);
    if d.server_no_context_takeover {
        out.push_str("; server_no_context_takeover");
    }
    if d.client_no_context_takeover {
        out.push_str("; client_no_context_takeover");
    }
    if let Some(bits) = d.server_max_window_bits {
        out.push_str(&format!("; server_max_window_bits={bits}"));
    }
    match d.client_max_window_bits {
        Some(Some(bits)) => out.push_str(&format!("; client_max_window_bits={bits}")),
        Some(None) => out.push_str("; client_max_window_bits"),
        None => {}
    }
    out
}

/// Appends the `GET` upgrade request for `url` (§4.1) and returns the
/// `Sec-WebSocket-Accept` value the server must answer with (for [`read_response`]).
///
/// `key` is the nonce: "a randomly selected 16-byte value that has been base64-encoded"
/// (§4.1 item 7), drawn by the driver for each connection. Nothing is appended when the
/// offer (see [`check_offer`]) or the URL cannot be written.
pub fn write_request(
    out: &mut Vec<u8>,
    url: &WsUrl,
    key: &[u8; 16],
    offer: &ClientOffer<'_>,
) -> Result<String, OfferError> {
    check_offer(offer)?;
    if !url_ok(url) {
        return Err(OfferError::BadUrl);
    }
    let key = STANDARD.encode(key);
    // "The method of the request MUST be GET, and the HTTP version MUST be at least 1.1."
    // (§4.1 item 2)
    out.extend_from_slice(b"GET ");
    out.extend_from_slice(url.resource.as_bytes());
    out.extend_from_slice(b" HTTP/1.1\r\n");
    let mut line = |name: &str, value: &str| {
        out.extend_from_slice(name.as_bytes());
        out.extend_from_slice(b": ");
        out.extend_from_slice(value.as_bytes());
        out.extend_from_slice(b"\r\n");
    };
    line("Host", &url.host_header());
    line("Upgrade", "websocket");
    line("Connection", "Upgrade");
    line("Sec-WebSocket-Key", &key);
    line("Sec-WebSocket-Version", VERSION);
    if !offer.protocols.is_empty() {
        line("Sec-WebSocket-Protocol", &offer.protocols.join(", "));
    }
    if let Some(d) = &offer.deflate {
        line("Sec-WebSocket-Extensions", &render_deflate(d));
    }
    for (name, value) in offer.headers {
        line(name, value);
    }
    out.extend_from_slice(b"\r\n");
    let path = url.resource.split('?').next().unwrap_or_default();
    log::trace!("-> GET {path} (websocket upgrade)");
    Ok(accept_key(&key))
}

/// The server's answer, checked: the handshake succeeded.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Accepted {
    /// The subprotocol the server chose among those offered; `None` when it sent no
    /// `Sec-WebSocket-Protocol` (the application decides whether to go on without one).
    pub protocol: Option<String>,
    /// The permessage-deflate settings agreed, when the server took the offer.
    pub deflate: Option<Agreed>,
    /// The length of the head in `buf`: the bytes after it are already WebSocket frames.
    pub head_len: usize,
}

/// Why the client fails the WebSocket connection (§4.1: "the client MUST _Fail the
/// WebSocket Connection_"). The fault is the server's; there is nothing to answer, the
/// connection is closed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ClientHandshakeError {
    /// No end of the head within [`MAX_RESPONSE_HEAD`] bytes.
    HeadTooLarge,
    /// More than [`MAX_RESPONSE_HEADERS`] header fields.
    TooManyHeaders,
    /// The head is not an HTTP/1.x response (what httparse said of it).
    Malformed(String),
    /// A status other than 101, with its reason phrase (empty when it was not ASCII). §4.1:
    /// "If the status code received from the server is not 101, the client handles the
    /// response per HTTP procedures" (401: authenticate; 3xx: a redirect it may follow).
    Status(u16, String),
    /// A 101 over HTTP/1.0, which has no protocol switching (RFC 9110 §7.8).
    Http10,
    /// `Upgrade` missing, or with a value that is not `websocket`.
    Upgrade,
    /// `Connection` missing, or without the token `upgrade`.
    Connection,
    /// No `Sec-WebSocket-Accept`.
    MissingAccept,
    /// `Sec-WebSocket-Accept` is not the value for the key sent.
    AcceptMismatch,
    /// A field that must appear at most once appears more often.
    Repeated(&'static str),
    /// `Sec-WebSocket-Protocol` names a subprotocol that was not offered.
    ProtocolNotOffered(String),
    /// `Sec-WebSocket-Extensions` names an extension that was not offered.
    ExtensionNotOffered(String),
    /// The permessage-deflate answer does not parse, or is not one the offer allows.
    Extension(ResponseError),
}

impl fmt::Display for ClientHandshakeError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        use ClientHandshakeError as E;
        match self {
            E::HeadTooLarge => write!(f, "response head too large (> {MAX_RESPONSE_HEAD} bytes)"),
            E::TooManyHeaders => write!(f, "more than {MAX_RESPONSE_HEADERS} header fields"),
            E::Malformed(why) => write!(f, "malformed response: {why}"),
            E::Status(code, r) if r.is_empty() => write!(f, "server answered {code}, not 101"),
            E::Status(code, reason) => write!(f, "server answered {code} {reason}, not 101"),
            E::Http10 => f.write_str("server answered 101 over HTTP/1.0"),
            E::Upgrade => f.write_str("response lacks Upgrade: websocket"),
            E::Connection => f.write_str("response lacks Connection: upgrade"),
            E::MissingAccept => f.write_str("response lacks Sec-WebSocket-Accept"),
            E::AcceptMismatch => f.write_str("Sec-WebSocket-Accept does not match the key"),
            E::Repeated(field) => write!(f, "{field} appears more than once"),
            E::ProtocolNotOffered(p) => write!(f, "subprotocol not offered: {p}"),
            E::ExtensionNotOffered(e) => write!(f, "extension not offered: {e}"),
            E::Extension(e) => write!(f, "extension answer refused: {e}"),
        }
    }
}

impl std::error::Error for ClientHandshakeError {}

/// Reads the server's answer to the request [`write_request`] wrote with `offer`, which
/// returned `expected_accept`.
///
/// `buf` is everything received so far. `Ok(None)`: the head is not complete yet, call
/// again with more bytes. `Ok(Some(accepted))`: the handshake succeeded and the first
/// [`Accepted::head_len`] bytes of `buf` were the head. Each call parses `buf` afresh
/// (at most [`MAX_RESPONSE_HEAD`] bytes of it); a handshake is one small head, once.
pub fn read_response(
    buf: &[u8],
    expected_accept: &str,
    offer: &ClientOffer<'_>,
) -> Result<Option<Accepted>, ClientHandshakeError> {
    use ClientHandshakeError as E;
    let mut fields = [httparse::EMPTY_HEADER; MAX_RESPONSE_HEADERS];
    let mut response = httparse::Response::new(&mut fields);
    let parsed = response
        .parse(buf.get(..MAX_RESPONSE_HEAD).unwrap_or(buf))
        .map_err(|e| match e {
            httparse::Error::TooManyHeaders => E::TooManyHeaders,
            e => E::Malformed(e.to_string()),
        });
    let head_len = match parsed? {
        httparse::Status::Complete(n) => n,
        // The head is a prefix of `buf`: not within the first MAX_RESPONSE_HEAD bytes
        // means longer than that.
        httparse::Status::Partial if buf.len() >= MAX_RESPONSE_HEAD => return Err(E::HeadTooLarge),
        httparse::Status::Partial => return Ok(None),
    };
    let code = response.code.unwrap_or_default();
    // "If the status code received from the server is not 101, the client handles the
    // response per HTTP procedures." (§4.1)
    if code != 101 {
        return Err(E::Status(code, response.reason.unwrap_or_default().into()));
    }
    if response.version != Some(1) {
        return Err(E::Http10);
    }
    let mut upgrade_elements = 0usize;
    let mut upgrade_websocket = true;
    let mut connection_upgrade = false;
    let mut accept: Option<&[u8]> = None;
    let mut protocol: Option<&[u8]> = None;
    let mut extension_values: Vec<&[u8]> = Vec::new();
    for field in response.headers.iter() {
        let (name, value) = (field.name, field.value.trim_ascii());
        if name.eq_ignore_ascii_case("upgrade") {
            for e in list_elements(value) {
                upgrade_elements += 1;
                upgrade_websocket &= e.eq_ignore_ascii_case(b"websocket");
            }
        } else if name.eq_ignore_ascii_case("connection") {
            connection_upgrade |= list_elements(value).any(|e| e.eq_ignore_ascii_case(b"upgrade"));
        } else if name.eq_ignore_ascii_case("sec-websocket-accept") {
            if accept.replace(value).is_some() {
                return Err(E::Repeated("Sec-WebSocket-Accept"));
            }
        } else if name.eq_ignore_ascii_case("sec-websocket-protocol") {
            if protocol.replace(value).is_some() {
                return Err(E::Repeated("Sec-WebSocket-Protocol"));
            }
        } else if name.eq_ignore_ascii_case("sec-websocket-extensions") {
            extension_values.push(value);
        }
    }

    // "If the response lacks an |Upgrade| header field or the |Upgrade| header field
    // contains a value that is not an ASCII case-insensitive match for the value
    // "websocket", the client MUST _Fail the WebSocket Connection_." (§4.1 item 2)
    if upgrade_elements == 0 || !upgrade_websocket {
        return Err(E::Upgrade);
    }
    // "If the response lacks a |Connection| header field or the |Connection| header field
    // doesn't contain a token that is an ASCII case-insensitive match for the value
    // "Upgrade", the client MUST _Fail the WebSocket Connection_." (§4.1 item 3)
    if !connection_upgrade {
        return Err(E::Connection);
    }
    // "If the response lacks a |Sec-WebSocket-Accept| header field or the
    // |Sec-WebSocket-Accept| contains a value other than the base64-encoded SHA-1 of [the
    // key and the GUID] but ignoring any leading and trailing whitespace, the client MUST
    // _Fail the WebSocket Connection_." (§4.1 item 4)
    if accept.ok_or(E::MissingAccept)? != expected_accept.as_bytes() {
        return Err(E::AcceptMismatch);
    }
    // "If the response includes a |Sec-WebSocket-Extensions| header field and this header
    // field indicates the use of an extension that was not present in the client's
    // handshake (the server has indicated an extension not requested by the client), the
    // client MUST _Fail the WebSocket Connection_." (§4.1 item 5) Several fields are one
    // comma list (RFC 9110 §5.3).
    let mut deflate = None;
    if !extension_values.is_empty() {
        let values: Result<Vec<&str>, _> = extension_values
            .iter()
            .map(|v| std::str::from_utf8(v))
            .collect();
        let joined = values
            .map_err(|_| E::Malformed("non-ASCII Sec-WebSocket-Extensions".into()))?
            .join(", ");
        deflate = match &offer.deflate {
            Some(offered) => extensions::check_response(&joined, offered).map_err(|e| match e {
                ResponseError::NotOffered(name) => E::ExtensionNotOffered(name),
                e => E::Extension(e),
            })?,
            None => match extensions::parse(&joined).map(|list| list.into_iter().next()) {
                Ok(Some(first)) => return Err(E::ExtensionNotOffered(first.name)),
                Ok(None) => None,
                Err(e) => return Err(E::Extension(ResponseError::Parse(e))),
            },
        };
    }
    // "If the response includes a |Sec-WebSocket-Protocol| header field and this header
    // field indicates the use of a subprotocol that was not present in the client's
    // handshake (the server has indicated a subprotocol not requested by the client), the
    // client MUST _Fail the WebSocket Connection_." (§4.1 item 6) The server echoes one of
    // the values offered (§4.2.2 /subprotocol/): compared exactly.
    let chosen = |v: &[u8]| match offer.protocols.iter().find(|p| p.as_bytes() == v) {
        Some(p) => Ok((*p).to_owned()),
        None => Err(E::ProtocolNotOffered(String::from_utf8_lossy(v).into())),
    };
    let protocol = protocol.map(chosen).transpose()?;
    log::trace!("<- 101 websocket upgrade: protocol {protocol:?}, deflate {deflate:?}");
    Ok(Some(Accepted {
        protocol,
        deflate,
        head_len,
    }))
}

/// The comma-separated, whitespace-trimmed, non-empty elements of a list (RFC 9110
/// §5.6.1).
fn list_elements(value: &[u8]) -> impl Iterator<Item = &[u8]> {
    value
        .split(|&b| b == b',')
        .map(<[u8]>::trim_ascii)
        .filter(|e| !e.is_empty())
}

/// `token = 1*tchar` (RFC 9110 §5.6.2).
fn is_token(s: &[u8]) -> bool {
    let tchar = |b: &u8| b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(b);
    !s.is_empty() && s.iter().all(tchar)
}

#[cfg(test)]
mod tests;
