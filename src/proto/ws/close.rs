//! Close status codes (RFC 6455 §7.4) and the fault that fails a connection (§7.1.7).
//!
//! Kept apart from the frame codec and the connection so both can use them without
//! depending on each other.

/// Close status codes (§7.4.1, and the IANA "WebSocket Close Code Number Registry").
pub mod close_code {
    /// The purpose of the connection has been fulfilled.
    pub const NORMAL: u16 = 1000;
    /// The endpoint is going away (server shutting down, page left).
    pub const GOING_AWAY: u16 = 1001;
    /// The peer broke the protocol.
    pub const PROTOCOL_ERROR: u16 = 1002;
    /// The endpoint cannot accept this type of data (e.g. binary for a text-only service).
    pub const UNSUPPORTED_DATA: u16 = 1003;
    /// Reserved: "no status code was present". Never sent on the wire.
    pub const NO_STATUS: u16 = 1005;
    /// Reserved: "closed abnormally", without a Close frame. Never sent on the wire.
    pub const ABNORMAL: u16 = 1006;
    /// Data inconsistent with the message type (e.g. non-UTF-8 in a text message).
    pub const INVALID_PAYLOAD: u16 = 1007;
    /// A message violates the endpoint's policy.
    pub const POLICY_VIOLATION: u16 = 1008;
    /// A message (or frame) is too big to process.
    pub const MESSAGE_TOO_BIG: u16 = 1009;
    /// The client expected the server to negotiate an extension.
    pub const MANDATORY_EXTENSION: u16 = 1010;
    /// The server met an unexpected condition.
    pub const INTERNAL_ERROR: u16 = 1011;
    /// The service is restarting (IANA registry).
    pub const SERVICE_RESTART: u16 = 1012;
    /// Temporary overload, try again later (IANA registry).
    pub const TRY_AGAIN_LATER: u16 = 1013;
    /// A gateway got an invalid response upstream (IANA registry).
    pub const BAD_GATEWAY: u16 = 1014;

    /// Whether `code` may appear in a Close frame on the wire.
    ///
    /// Valid: 1000-1003, 1007-1011 (§7.4.1), 1012-1014 (registered with IANA since RFC
    /// 6455: Service Restart, Try Again Later, Bad Gateway), 3000-3999 (registered by
    /// libraries and frameworks) and 4000-4999 (private use). Invalid: below 1000, 1004
    /// (reserved), 1005, 1006 and 1015 ("MUST NOT be set as a status code in a Close
    /// control frame"), the rest of 1016-2999 (reserved for this protocol and extensions,
    /// unassigned), and 5000 and above (undefined).
    pub fn is_valid(code: u16) -> bool {
        matches!(code, 1000..=1003 | 1007..=1014 | 3000..=4999)
    }
}

/// A fault that fails the connection: the close status code sent to the peer and why.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct CloseError {
    /// The status code of the Close frame (1002, 1007, 1009, ...).
    pub code: u16,
    /// A short reason, also sent as the Close frame's reason.
    pub reason: &'static str,
}

impl std::fmt::Display for CloseError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "websocket close {}: {}", self.code, self.reason)
    }
}

impl std::error::Error for CloseError {}
