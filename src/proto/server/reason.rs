//! Why a connection ended ([`CloseReason`]), and why a TLS session failed ([`TlsFailure`]),
//! each with its words for logs and callbacks.

use std::io;

/// Why a connection ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CloseReason {
    /// The peer ended the connection (end of stream), with nothing left owed to it.
    PeerClosed,
    /// A WebSocket peer closed TCP without a Close frame (code 1006).
    NoCloseFrame,
    /// We ended it after our last bytes (an answer with `Connection: close`, a finished
    /// closing handshake, an ended stream) and the peer hung up or the linger time passed.
    Finished,
    /// A keep-alive connection stayed idle for the idle timeout.
    IdleTimeout,
    /// The peer did not answer our WebSocket Close in time, or did not read our last bytes.
    CloseTimeout,
    /// Reading from the socket failed.
    ReadError(io::ErrorKind),
    /// Writing to the socket failed.
    WriteError(io::ErrorKind),
    /// The server stopped.
    ServerStopped,
    /// Not a byte of a request arrived within the header timeout of a connection that
    /// began with a handshake (see [`ServerConn::new_with_handshake`](super::ServerConn::new_with_handshake)).
    HeaderTimeout,
    /// The TLS session failed; the alert for the peer was sent first.
    Tls(TlsFailure),
    /// A dialed WebSocket was not open within its connect timeout.
    ConnectTimeout,
    /// A dialed WebSocket's handshake answer was refused (its cause:
    /// [`ServerConn::dial_failure`](super::ServerConn::dial_failure)).
    HandshakeFailed,
    /// A WebSocket peer sent nothing for the ping interval and then nothing within the
    /// ping timeout after our Ping: we closed it with 1001 (and, as a half-open peer does
    /// not answer that Close, dropped it after the close timeout).
    PingTimeout,
}

/// Why a TLS session failed, in a byte (a [`CloseReason`] stays small for every
/// connection, TLS or not).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TlsFailure {
    /// The bytes are not TLS records (e.g. plaintext HTTP sent to the TLS port).
    NotTls,
    /// A record failed to decrypt (garbage or tampering after the handshake).
    Decrypt,
    /// A record longer than TLS allows.
    OversizedRecord,
    /// The peer sent a fatal alert (e.g. it refused our certificate).
    PeerAlert,
    /// No TLS version or cipher suite in common.
    Incompatible,
    /// No ALPN protocol in common (only `http/1.1` is offered).
    NoAlpn,
    /// A message that does not belong at this point of the protocol.
    UnexpectedMessage,
    /// The peer's certificate was refused.
    Certificate,
    /// The peer broke the protocol in another way.
    Misbehaved,
    /// Anything else.
    Other,
}

impl TlsFailure {
    /// The cause in words.
    pub fn as_str(&self) -> &'static str {
        match self {
            TlsFailure::NotTls => "not TLS (a malformed record or handshake message)",
            TlsFailure::Decrypt => "a record failed to decrypt",
            TlsFailure::OversizedRecord => "oversized record",
            TlsFailure::PeerAlert => "the peer sent a fatal alert",
            TlsFailure::Incompatible => "no common TLS version or cipher suite",
            TlsFailure::NoAlpn => "no common ALPN protocol (only http/1.1 is offered)",
            TlsFailure::UnexpectedMessage => "unexpected TLS message",
            TlsFailure::Certificate => "the peer's certificate was refused",
            TlsFailure::Misbehaved => "the peer broke the TLS protocol",
            TlsFailure::Other => "TLS error",
        }
    }
}

impl std::fmt::Display for TlsFailure {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

impl std::fmt::Display for CloseReason {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            CloseReason::PeerClosed => f.write_str("peer closed"),
            CloseReason::NoCloseFrame => f.write_str("peer closed without a close frame"),
            CloseReason::Finished => f.write_str("closed"),
            CloseReason::IdleTimeout => f.write_str("idle timeout"),
            CloseReason::CloseTimeout => f.write_str("peer did not finish the close in time"),
            CloseReason::ReadError(k) => write!(f, "read error: {k}"),
            CloseReason::WriteError(k) => write!(f, "write error: {k}"),
            CloseReason::ServerStopped => f.write_str("server stopped"),
            CloseReason::HeaderTimeout => f.write_str("no request within the header timeout"),
            CloseReason::Tls(why) => write!(f, "tls: {why}"),
            CloseReason::ConnectTimeout => f.write_str("not connected within the connect timeout"),
            CloseReason::HandshakeFailed => f.write_str("the WebSocket handshake failed"),
            CloseReason::PingTimeout => f.write_str("no answer to our ping in time"),
        }
    }
}
