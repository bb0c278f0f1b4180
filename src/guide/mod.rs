//! A guide to the protocols pushwire speaks, byte by byte.
//!
//! This module holds no code. Each submodule explains one mechanism for someone learning
//! it, with the RFC (or WHATWG, or specification) section beside each field, and shows the
//! exact bytes the crate's own encoders write. Those bytes sit in doc tests that call the
//! real public functions of [`crate::proto`] and compare their output with literal byte
//! strings, and where a parser exists they read the same bytes back. So the guide is
//! checked by `cargo test --doc`: if an encoder changes, the guide stops building until it
//! is brought up to date.
//!
//! | module | what it covers | main references |
//! |---|---|---|
//! | [`http1`] | request and response framing, `Content-Length`, the chunked transfer coding | RFC 9112 §4, §6, §7.1; RFC 9110 |
//! | [`websocket`] | the opening handshake, frames, masking, the closing handshake | RFC 6455 §1.3, §4, §5, §7 |
//! | [`deflate`] | the permessage-deflate extension: negotiation and compressed messages | RFC 7692 §5, §6, §7 |
//! | [`sse`] | Server-Sent Events: the event stream format, `id:`, `retry:`, the `gap` event, resuming with `Last-Event-ID` | WHATWG HTML §9.2 |
//! | [`longpoll`] | long polling: the request, the JSON page, `since`/`next`/`gap`, the timeout | RFC 8259 (JSON); pushwire's own rules |
//! | [`webhooks`] | signed POSTs, the retry schedule, `Retry-After`, pausing and probing | Standard Webhooks 1.0; RFC 2104; RFC 9110 §10.2.3 |
//! | [`datadir`] | the data directory: segment files, record framing, CRC-32, snapshots, the lock | pushwire's own format |
//!
//! # Reading the tables
//!
//! Byte tables give the offset of a field from the start of the example (decimal), its
//! bytes in hexadecimal, the field's name and what the value means. Text protocols
//! (HTTP/1.1, SSE) are shown as text with `\r\n` and `\n` written out, since their fields
//! are lines rather than offsets.
//!
//! Section numbers refer to: RFC 9110 (HTTP semantics), RFC 9112 (HTTP/1.1), RFC 6455
//! (WebSocket), RFC 7692 (compression extensions for WebSocket), RFC 1951 (DEFLATE),
//! RFC 2104 (HMAC), RFC 8259 (JSON), RFC 3339 (timestamps), the WHATWG HTML Living
//! Standard §9.2 (Server-sent events) and the [Standard Webhooks] specification 1.0.0.
//!
//! The guide describes what pushwire does on the wire; the API documentation of each
//! function it calls (linked from the text) has the full contract.
//!
//! [Standard Webhooks]: https://www.standardwebhooks.com

pub mod datadir;
pub mod deflate;
pub mod http1;
pub mod longpoll;
pub mod sse;
pub mod webhooks;
pub mod websocket;
