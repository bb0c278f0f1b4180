//! The callback API: the one trait an application implements, and the small types it sees.
//!
//! The loop calls [`App`] methods; every call gets a [`Ctx`] that lets the
//! application send, close, publish and set timers. Inside the loop nothing goes through a
//! channel: the context appends to the connections' output queues directly. Only other
//! threads use a [`Handle`](crate::Handle), which wakes the loop through `mio::Waker`.

use std::fmt;
use std::time::Duration;

use crate::proto::http1::{Request, Response};
use crate::Ctx;

/// Identifies one connection for as long as it is open.
///
/// Ids are never reused while the server runs: a slot in the connection table gets a new
/// generation each time it is taken, so a stale `ConnId` simply refers to nothing.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ConnId {
    pub(crate) index: u32,
    pub(crate) gen: u32,
}

impl fmt::Debug for ConnId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "conn#{}.{}", self.index, self.gen)
    }
}

impl fmt::Display for ConnId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(self, f)
    }
}

/// Identifies an application timer set with [`Ctx::set_timer`](crate::Ctx::set_timer).
#[derive(Clone, Copy, PartialEq, Eq, Hash, Debug)]
pub struct TimerId(pub(crate) crate::proto::timer::TimerId);

/// What kind of connection a [`ConnId`] currently is.
#[derive(Clone, Copy, PartialEq, Eq, Debug, Hash)]
pub enum ConnKind {
    /// A plain HTTP/1.1 connection (between requests, or with a request in progress).
    Http,
    /// An HTTP request parked as a long poll, waiting for an event or its timeout.
    Parked,
    /// A Server-Sent Events stream.
    Sse,
    /// A WebSocket connection (after the 101 answer).
    WebSocket,
}

/// A complete WebSocket data message handed to [`App::on_ws_message`].
#[derive(Debug, Clone, Copy)]
pub enum Message<'a> {
    /// A text message (already validated as UTF-8).
    Text(&'a str),
    /// A binary message.
    Binary(&'a [u8]),
}

/// Why a connection closed, handed to [`App::on_close`].
#[derive(Debug, Clone)]
pub struct CloseInfo {
    /// What the connection was when it closed.
    pub kind: ConnKind,
    /// For WebSocket connections: the close code sent or received, if any.
    pub ws_code: Option<u16>,
    /// A short human-readable reason ("peer closed", "idle timeout", a protocol error, ...).
    pub reason: String,
}

/// How the application answers a request: a response now, or one of the long-lived modes.
#[derive(Debug)]
pub enum Reply {
    /// Answer with this response. The connection stays open for the next request unless the
    /// request or the response asks for `close`.
    Response(Response),
    /// Accept a WebSocket upgrade (RFC 6455 §4.2.2). The driver validates the handshake
    /// itself and answers 400 or 426 when it is not a valid one.
    WebSocket(WsAccept),
    /// Start a Server-Sent Events stream of a topic.
    Sse(SseStream),
    /// Park the request as a long poll on a topic.
    Park(Park),
    /// The application answers later with [`Ctx::respond`](crate::Ctx::respond). Further
    /// pipelined requests on this connection wait until then.
    Later,
}

impl From<Response> for Reply {
    fn from(r: Response) -> Self {
        Reply::Response(r)
    }
}

/// Accepting a WebSocket handshake.
#[derive(Debug, Default, Clone)]
pub struct WsAccept {
    pub(crate) protocol: Option<String>,
    pub(crate) subscribe: Option<(String, Option<u64>)>,
    pub(crate) max_message: Option<usize>,
}

impl WsAccept {
    /// Accept with no subprotocol and no subscription.
    pub fn new() -> Self {
        Self::default()
    }
    /// Answer with this subprotocol (it must be one the client offered in
    /// `Sec-WebSocket-Protocol`; RFC 6455 §4.2.2 point 5.4).
    pub fn protocol(mut self, p: impl Into<String>) -> Self {
        self.protocol = Some(p.into());
        self
    }
    /// Subscribe the new connection to `topic`: each event is sent as one text frame
    /// `{"id":N,"event":...,"data":"..."}`. With `since = Some(n)` the kept events after `n`
    /// are replayed first (a `{"gap":true,"oldest":N}` message first when some were dropped).
    pub fn subscribe(mut self, topic: impl Into<String>, since: Option<u64>) -> Self {
        self.subscribe = Some((topic.into(), since));
        self
    }
    /// Override the server's maximum message size for this connection (close 1009 above it).
    pub fn max_message(mut self, bytes: usize) -> Self {
        self.max_message = Some(bytes);
        self
    }
}

/// Starting a Server-Sent Events stream of a topic.
#[derive(Debug, Clone)]
pub struct SseStream {
    pub(crate) topic: String,
    pub(crate) last_id: Option<u64>,
}

impl SseStream {
    /// Stream `topic`'s live events.
    pub fn new(topic: impl Into<String>) -> Self {
        SseStream {
            topic: topic.into(),
            last_id: None,
        }
    }
    /// Resume after `last_id` (from `Last-Event-ID`): kept events after it are sent first,
    /// then live ones, with nothing duplicated or skipped. When events after it were already
    /// dropped from the history, an event named `gap` whose data is the oldest kept id comes
    /// first.
    pub fn resume_after(mut self, last_id: Option<u64>) -> Self {
        self.last_id = last_id;
        self
    }
}

/// Parking a request as a long poll.
#[derive(Debug, Clone)]
pub struct Park {
    pub(crate) topic: String,
    pub(crate) since: u64,
    pub(crate) timeout: Duration,
}

impl Park {
    /// Wait for events on `topic` with ids above `since`, for at most `timeout`.
    ///
    /// If such events are already kept, the answer comes at once. The answer is 200 JSON
    /// `{"events":[...],"next":M,"gap":false}` (at most the configured batch size of
    /// events; an empty list when the timeout fires).
    pub fn new(topic: impl Into<String>, since: u64, timeout: Duration) -> Self {
        Park {
            topic: topic.into(),
            since,
            timeout,
        }
    }
}

/// What happens to a WebSocket connection whose output queue passed the high-water mark.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SlowPolicy {
    /// Close it with 1008 (policy violation) after the frame being written. The default.
    Disconnect,
    /// Keep it, but drop broadcast messages for it while it is above the mark.
    DropMessages,
}

/// The application: the loop calls these methods. Only `on_request` is required.
pub trait App {
    /// A complete HTTP request arrived on `conn`. Answer it with a [`Reply`].
    fn on_request(&mut self, cx: &mut Ctx<'_>, conn: ConnId, req: &Request) -> Reply;

    /// A WebSocket handshake on `conn` was accepted and answered with 101.
    fn on_ws_open(&mut self, cx: &mut Ctx<'_>, conn: ConnId) {
        let _ = (cx, conn);
    }

    /// A complete WebSocket message arrived.
    fn on_ws_message(&mut self, cx: &mut Ctx<'_>, conn: ConnId, msg: Message<'_>) {
        let _ = (cx, conn, msg);
    }

    /// `conn` closed (any kind). Called exactly once per connection that was accepted.
    fn on_close(&mut self, cx: &mut Ctx<'_>, conn: ConnId, info: &CloseInfo) {
        let _ = (cx, conn, info);
    }

    /// A timer set with [`Ctx::set_timer`](crate::Ctx::set_timer) fired.
    fn on_timer(&mut self, cx: &mut Ctx<'_>, timer: TimerId, tag: u64) {
        let _ = (cx, timer, tag);
    }

    /// A webhook message reached its one final outcome (delivered or failed).
    fn on_webhook(&mut self, cx: &mut Ctx<'_>, outcome: &crate::WebhookOutcome) {
        let _ = (cx, outcome);
    }

    /// `conn`'s output queue passed the high-water mark; the configured [`SlowPolicy`] was
    /// applied (SSE streams are always closed: their clients resume with `Last-Event-ID`).
    fn on_slow_reader(&mut self, cx: &mut Ctx<'_>, conn: ConnId, kind: ConnKind) {
        let _ = (cx, conn, kind);
    }
}
