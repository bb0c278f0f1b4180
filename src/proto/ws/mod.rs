//! WebSocket (RFC 6455), server and client side, with permessage-deflate (RFC 7692),
//! sans-IO.
//!
//! * [`handshake`] — the opening handshake: validate the upgrade request (§4.2.1) and write
//!   the `101` answer with its `Sec-WebSocket-Accept` (§4.2.2).
//! * [`client`] — the client side: `ws://` URLs (§3), the request and its answer (§4.1).
//! * [`frame`] — frame header parse and encode (§5.2).
//! * [`mask`] — payload masking (§5.3), word at a time, with its byte-loop oracle; a
//!   client's keys ([`MaskKeys`]) from a seed the driver draws.
//! * [`utf8`] — the incremental UTF-8 validator that fails a text message fast (§8.1).
//! * [`close`] — close status codes (§7.4) and the fault that fails a connection (§7.1.7).
//! * [`limits`] — the frame and message size limits of a connection (§10.4).
//! * [`conn`] — the receiving half of a connection, [`Receiver`]: message assembly from
//!   fragments (§5.4), control frames (§5.5); and [`Connection`], both halves together for
//!   code that does not split them.
//! * [`sender`] — the sending half, [`Sender`]: sends (masked in the client role,
//!   compressed when negotiated), and owns the closing handshake (§7).
//! * [`extensions`] — `Sec-WebSocket-Extensions` (§9.1) and the permessage-deflate
//!   negotiation (RFC 7692 §5, §7.1), both sides.
//! * [`deflate`] — one message's compression and inflation within a limit (RFC 7692 §7.2),
//!   and the loop's shared [`Codec`](deflate::Codec).
//!
//! A driver accepts the handshake with [`validate_request`] and [`write_accept_response`],
//! then moves bytes: input into [`Receiver::read`] (with the [`Sender`]), which returns
//! [`WsEvent`]s and appends what the protocol forces (Pong, Close) to an output buffer;
//! application messages go out through [`Sender::send_text`] and friends. While the
//! application handles a message only the receiving half is lent out, so a Close it sends
//! takes effect before the next frame is read. RSV2 and RSV3 are always an error, RSV1
//! unless permessage-deflate was negotiated (then only on a message's first frame).

pub mod client;
pub mod close;
pub mod conn;
pub mod deflate;
pub mod extensions;
pub mod frame;
pub mod handshake;
pub mod limits;
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
