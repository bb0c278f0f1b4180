//! The options of a WebSocket the application dials, and why a dial failed.

use std::fmt;
use std::io;
use std::time::Duration;

/// Options of a WebSocket connection the application opens with
/// [`Ctx::connect_ws`](crate::Ctx::connect_ws).
///
/// | option | default |
/// |---|---|
/// | `protocol` | none offered |
/// | `header` | none (the handshake's own fields are always sent) |
/// | `deflate` | offered (permessage-deflate, any window the server picks) |
/// | `max_message` | the server's `ws_max_message` (and `ws_max_frame` for frames) |
/// | `timeout` | 10 s for TCP connect, TLS and the handshake together |
///
/// `wss://` (the `tls` feature) is verified with the roots of `Config::webhook_tls`, the
/// Mozilla roots by default.
#[derive(Debug, Clone)]
pub struct WsConnect {
    pub(crate) protocols: Vec<String>,
    pub(crate) headers: Vec<(String, String)>,
    pub(crate) deflate: bool,
    pub(crate) max_message: Option<usize>,
    pub(crate) timeout: Duration,
}

impl Default for WsConnect {
    fn default() -> Self {
        WsConnect {
            protocols: Vec::new(),
            headers: Vec::new(),
            deflate: true,
            max_message: None,
            timeout: Duration::from_secs(10),
        }
    }
}

impl WsConnect {
    /// The defaults above.
    pub fn new() -> Self {
        Self::default()
    }

    /// Offers a subprotocol (call again for more, in order of preference).
    pub fn protocol(mut self, name: impl Into<String>) -> Self {
        self.protocols.push(name.into());
        self
    }

    /// Adds a request header field (e.g. `Origin`, `Authorization`).
    pub fn header(mut self, name: impl Into<String>, value: impl Into<String>) -> Self {
        self.headers.push((name.into(), value.into()));
        self
    }

    /// Offers permessage-deflate (true by default).
    pub fn deflate(mut self, offer: bool) -> Self {
        self.deflate = offer;
        self
    }

    /// The largest message accepted from the server (close 1009 above it).
    pub fn max_message(mut self, bytes: usize) -> Self {
        self.max_message = Some(bytes);
        self
    }

    /// The connect timeout: TCP connect, TLS and the handshake.
    pub fn timeout(mut self, timeout: Duration) -> Self {
        self.timeout = timeout;
        self
    }
}

/// Why [`Ctx::connect_ws`](crate::Ctx::connect_ws) could not start a connection. Failures
/// after it started (refused, timed out, a bad handshake answer) arrive in
/// [`App::on_ws_connect_failed`](crate::App::on_ws_connect_failed).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ConnectError {
    /// Not a `ws://` or `wss://` URL.
    Url(crate::proto::ws::client::UrlError),
    /// A subprotocol or header field that cannot be sent.
    Offer(crate::proto::ws::client::OfferError),
    /// `wss://` without the `tls` feature.
    NoTls,
    /// No TLS session could be made for the host (e.g. not a valid server name).
    Tls(String),
    /// The server's `max_connections` are all in use.
    TooManyConnections,
    /// The socket could not be made or registered.
    Io(io::ErrorKind),
    /// The server is stopping, or its loop is gone (from a [`Handle`](crate::Handle)).
    Stopped,
}

impl fmt::Display for ConnectError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ConnectError::Url(e) => write!(f, "bad WebSocket URL: {e}"),
            ConnectError::Offer(e) => write!(f, "bad WebSocket offer: {e}"),
            ConnectError::NoTls => f.write_str("wss:// needs pushwire's `tls` feature"),
            ConnectError::Tls(e) => f.write_str(e),
            ConnectError::TooManyConnections => f.write_str("too many connections"),
            ConnectError::Io(k) => write!(f, "socket: {k}"),
            ConnectError::Stopped => f.write_str("the server is stopping or gone"),
        }
    }
}

impl std::error::Error for ConnectError {}
