//! The size limits of one WebSocket connection (RFC 6455 §10.4: "implementations SHOULD
//! impose implementation-specific limits on frame sizes and the total message size").

/// Limits of one connection. Every limit is checked against the length a header announces,
/// before any memory is reserved for the payload.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct WsLimits {
    /// The largest data frame payload accepted (1009 above it). Default 16 MiB.
    pub max_frame_bytes: usize,
    /// The largest message accepted, all fragments together (1009 above it). Default 16 MiB.
    pub max_message_bytes: usize,
}

impl Default for WsLimits {
    fn default() -> Self {
        WsLimits {
            max_frame_bytes: 16 << 20,
            max_message_bytes: 16 << 20,
        }
    }
}
