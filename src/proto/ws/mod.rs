//! WebSocket (RFC 6455), server side, sans-IO.
//!
//! * [`handshake`] — the opening handshake: validate the upgrade request (§4.2.1) and write
//!   the `101` answer with its `Sec-WebSocket-Accept` (§4.2.2).
//! * [`client`] — the client side: `ws://` URLs (§3), the request and its answer (§4.1).
//! * [`frame`] — frame header parse and encode (§5.2).
//! * [`mask`] — payload masking (§5.3), word at a time, with its byte-loop oracle.
//! * [`utf8`] — the incremental UTF-8 validator that fails a text message fast (§8.1).
//! * [`close`] — close status codes (§7.4) and the fault that fails a connection (§7.1.7).
//! * [`conn`] — the receiving half of a connection, [`Receiver`]: message assembly from
//!   fragments (§5.4), control frames (§5.5); and [`Connection`], both halves together for
//!   code that does not split them.
//! * [`sender`] — the sending half, [`Sender`]: sends, and owns the closing handshake (§7).
//!
//! A driver accepts the handshake with [`validate_request`] and [`write_accept_response`],
//! then moves bytes: input into [`Receiver::read`] (with the [`Sender`]), which returns
//! [`WsEvent`]s and appends what the protocol forces (Pong, Close) to an output buffer;
//! application messages go out through [`Sender::send_text`] and friends. While the
//! application handles a message only the receiving half is lent out, so a Close it sends
//! takes effect before the next frame is read. No extension is negotiated, so RSV bits are
//! always an error.

pub mod client;
pub mod close;
pub mod conn;
pub mod deflate;
pub mod extensions;
pub mod frame;
pub mod handshake;
pub mod mask;
pub mod sender;
pub mod utf8;

pub use close::{close_code, CloseError};
pub use conn::{Connection, Receiver, WsEvent, WsLimits};
pub use frame::{encode_frame, parse_header, write_close, write_header, FrameHeader, OpCode};
pub use handshake::{
    accept_key, validate_request, write_accept_response, Handshake, HandshakeError,
};
pub use mask::{apply_mask, apply_mask_bytewise, MaskKeys};
pub use sender::Sender;
pub use utf8::{InvalidUtf8, Utf8Validator};
