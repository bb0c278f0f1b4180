//! # pushwire
//!
//! Push events to other programs over all four of the web's real-time mechanisms from
//! **one single-threaded [mio] event loop**, with no async runtime: WebSocket (RFC 6455),
//! Server-Sent Events, long-poll parking and outbound webhooks.
//!
//! The crate is split in two:
//!
//! * [`proto`] — the sans-IO core. Parsers, encoders and protocol state machines over byte
//!   slices. No sockets, no clock reads, no randomness: time and random bytes are inputs.
//!   Every piece can be unit-tested with exact byte vectors, fuzzed and read alone.
//! * the driver (see [`Server`]) — the only code that touches sockets. It moves bytes between
//!   mio and the core and calls the application's [`App`] callbacks.
#![deny(missing_docs)]
#![deny(unsafe_code)]

pub mod proto;

pub mod api;
mod config;
mod driver;

pub use api::{
    App, CloseInfo, ConnId, ConnKind, Message, Park, Reply, SlowPolicy, SseStream, TimerId,
    WsAccept,
};
pub use config::Config;
pub use driver::{
    Ctx, Handle, Resolver, Server, Stats, WebhookCreated, WebhookError, WebhookInfo,
    WebhookOutcome, WebhookStats,
};
pub use proto::http1::{Request, Response};
pub use proto::topic::PublishError;
