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
//!
//! # A guide
//!
//! The application implements [`App`]. Its one required method answers each HTTP request
//! with a [`Reply`]: a [`Response`], a WebSocket upgrade ([`WsAccept`]), a Server-Sent
//! Events stream ([`SseStream`]), a parked long poll ([`Park`]), or [`Reply::Later`]. Every
//! callback gets a [`Ctx`] to publish, send, close, subscribe and set timers; one
//! [`Ctx::publish`] reaches WebSocket, SSE, long-poll and webhook subscribers of a topic.
//!
//! ```no_run
//! use std::time::Duration;
//! use pushwire::{App, Config, ConnId, Ctx, Park, Reply, Request, Response, Server, SseStream, WsAccept};
//!
//! struct News;
//!
//! impl App for News {
//!     fn on_request(&mut self, cx: &mut Ctx<'_>, _conn: ConnId, req: &Request) -> Reply {
//!         match (req.method.as_str(), req.path()) {
//!             ("POST", "/news") => {
//!                 let text = String::from_utf8_lossy(&req.body);
//!                 let id = cx.publish("news", None, &text).expect("valid topic");
//!                 Response::text(201, id.to_string()).into()
//!             }
//!             ("GET", "/news/ws") => Reply::WebSocket(WsAccept::new().subscribe("news", None)),
//!             ("GET", "/news/sse") => Reply::Sse(SseStream::new("news")),
//!             ("GET", "/news/poll") => Reply::Park(Park::new("news", 0, Duration::from_secs(30))),
//!             _ => Response::text(404, "not found\n").into(),
//!         }
//!     }
//! }
//!
//! fn main() -> std::io::Result<()> {
//!     let mut server = Server::bind("127.0.0.1:8080", Config::new(), News)?;
//!     let handle = server.handle(); // Send + Clone: publish or stop from other threads
//!     std::thread::spawn(move || handle.publish("news", Some("tick"), "hello"));
//!     server.run()
//! }
//! ```
//!
//! Webhooks are registered per topic with [`Ctx::add_webhook`]; their outcomes arrive in
//! [`App::on_webhook`]. Every limit and timeout is a [`Config`] setting.
//!
//! With the default `tls` feature, `Server::listen_tls` adds a TLS listener (`https://`,
//! `wss://`) to the same loop, and `https://` webhooks are verified against the Mozilla
//! roots and any added with `Config::webhook_tls`; see the `tls` module.
//!
//! `examples/hub.rs` puts all of it together, and `examples/echo.rs` is the Autobahn testee.
//!
//! To learn the protocols themselves, byte by byte, read the [`guide`].
#![deny(missing_docs)]
#![deny(unsafe_code)]

pub mod guide;
pub mod proto;

mod api;
mod config;
mod driver;
mod server;
#[cfg(feature = "tls")]
pub mod tls;

pub use api::{
    CloseInfo, ConnId, ConnectError, EventPage, EventsQuery, Park, PublishTicket, Publishing,
    RemoveTopicError, Reply, Resolver, SseStream, Stats, StoredEvent, TimerId, TopicInfo,
    TopicSubscribers, WebhookCreated, WebhookError, WebhookInfo, WebhookOutcome, WebhookStats,
    WsAccept, WsConnect,
};
pub use config::{Config, Fsync};
pub use proto::http1::{form_pairs, BadParam, Request, Response};
pub use proto::server::{CloseReason, ConnKind, Message, SlowPolicy, TlsFailure};
pub use proto::topic::PublishError;
pub use proto::webhook::Outcome;
pub use server::{App, Ctx, Handle, Server};
