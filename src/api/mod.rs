//! The data types of the callback API: what an application hands the loop and what it is
//! told. The [`App`](crate::App) trait and its [`Ctx`](crate::Ctx) live with the loop that
//! calls them; this module depends on nothing but the core's types.

use std::fmt;
use std::time::Duration;

use crate::proto::http1::Response;
use crate::proto::server::{CloseReason, ConnKind};

mod dial;
mod topic;
mod webhook;

pub use dial::{ConnectError, WsConnect};
pub use topic::{EventPage, RemoveTopicError, StoredEvent, TopicInfo, TopicSubscribers};
pub use webhook::{
    Resolver, WebhookCreated, WebhookError, WebhookInfo, WebhookOutcome, WebhookStats,
};

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
pub struct TimerId(pub(crate) crate::proto::timer::TimerKey);

/// Why a connection closed, handed to [`App::on_close`](crate::App::on_close).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CloseInfo {
    /// What the connection was when it closed.
    pub kind: ConnKind,
    /// For WebSocket connections: the close code sent or received, if any.
    pub ws_code: Option<u16>,
    /// Why it closed (its `Display` is a short human-readable text).
    pub reason: CloseReason,
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
    /// Answer with a page of a topic's kept events as JSON (see [`EventsQuery`]). With a
    /// Redis backplane the page comes from Redis once this server has the topic in sync
    /// (503 while Redis is unreachable).
    Events(EventsQuery),
}

/// Reading a topic's kept events, answered 200 with [`EventPage::to_json`] and
/// `Cache-Control: no-store`.
#[derive(Debug, Clone)]
pub struct EventsQuery {
    pub(crate) topic: String,
    pub(crate) since: u64,
    pub(crate) max: usize,
    pub(crate) headers: Vec<(String, String)>,
}

impl EventsQuery {
    /// At most `max` events of `topic` after `since`.
    pub fn new(topic: impl Into<String>, since: u64, max: usize) -> Self {
        EventsQuery {
            topic: topic.into(),
            since,
            max,
            headers: Vec::new(),
        }
    }

    /// Adds a header field to the answer.
    pub fn header(mut self, name: impl Into<String>, value: impl Into<String>) -> Self {
        self.headers.push((name.into(), value.into()));
        self
    }
}

/// Identifies a publish whose outcome comes later, in
/// [`App::on_published`](crate::App::on_published).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct PublishTicket(pub(crate) u64);

/// What [`Ctx::publish_async`](crate::Ctx::publish_async) did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Publishing {
    /// Published, with this id (no backplane: the server gives ids itself).
    Done(u64),
    /// Sent to the Redis backplane: [`App::on_published`](crate::App::on_published) gets
    /// the id, or the error, with this ticket.
    Pending(PublishTicket),
}

impl From<EventsQuery> for Reply {
    fn from(q: EventsQuery) -> Self {
        Reply::Events(q)
    }
}

impl From<Response> for Reply {
    fn from(r: Response) -> Self {
        Reply::Response(r)
    }
}

/// A bad query parameter is a `400 Bad Request` whose body names it
/// (`since must be a non-negative integer`).
impl From<crate::proto::http1::BadParam> for Reply {
    fn from(e: crate::proto::http1::BadParam) -> Self {
        Reply::Response(Response::text(400, format!("{e}\n")))
    }
}

/// Accepting a WebSocket handshake.
#[derive(Debug, Default, Clone)]
pub struct WsAccept {
    pub(crate) protocol: Option<String>,
    pub(crate) subscribe: Option<(String, Option<u64>)>,
    pub(crate) max_message: Option<usize>,
    pub(crate) headers: Vec<(String, String)>,
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
    /// Adds a header field to the `101 Switching Protocols` answer, after the handshake's
    /// own fields (e.g. `Set-Cookie`). Names or values that cannot be written in a header
    /// (a line break, a colon in the name) are left out with a warning, like every other
    /// extra header.
    pub fn header(mut self, name: impl Into<String>, value: impl Into<String>) -> Self {
        self.headers.push((name.into(), value.into()));
        self
    }
}

/// Starting a Server-Sent Events stream of a topic.
#[derive(Debug, Clone)]
pub struct SseStream {
    pub(crate) topic: String,
    pub(crate) last_id: Option<u64>,
    pub(crate) headers: Vec<(String, String)>,
}

impl SseStream {
    /// Stream `topic`'s live events.
    pub fn new(topic: impl Into<String>) -> Self {
        SseStream {
            topic: topic.into(),
            last_id: None,
            headers: Vec::new(),
        }
    }

    /// Adds a header field to the stream's answer (after its own `Content-Type`,
    /// `Cache-Control` and `X-Accel-Buffering`), e.g. `Access-Control-Allow-Origin`.
    pub fn header(mut self, name: impl Into<String>, value: impl Into<String>) -> Self {
        self.headers.push((name.into(), value.into()));
        self
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
    pub(crate) headers: Vec<(String, String)>,
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
            headers: Vec::new(),
        }
    }

    /// Adds a header field to the answer, whenever it comes (e.g.
    /// `Access-Control-Allow-Origin`). Such an answer is encoded for this request alone
    /// instead of being shared with the other polls on the same cursor.
    pub fn header(mut self, name: impl Into<String>, value: impl Into<String>) -> Self {
        self.headers.push((name.into(), value.into()));
        self
    }
}

/// Counters and gauges of a running server; see [`Ctx::stats`](crate::Ctx::stats).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Stats {
    /// Open plain HTTP connections.
    pub http: usize,
    /// Open WebSocket connections.
    pub websocket: usize,
    /// Open SSE streams.
    pub sse: usize,
    /// Parked long polls.
    pub parked: usize,
    /// Events published.
    pub published: u64,
    /// Events sent to WebSocket subscribers.
    pub delivered_websocket: u64,
    /// Events sent on SSE streams.
    pub delivered_sse: u64,
    /// Events returned by long polls (events, not responses).
    pub delivered_longpoll: u64,
    /// Events delivered by webhook (2xx received).
    pub delivered_webhook: u64,
    /// Publishes and registrations written to the data directory and waiting for the
    /// fsync that makes them take effect (a gauge; 0 without a data directory).
    pub store_held: usize,
    /// Publishes and registrations refused because their record could not be stored
    /// (answered 507).
    pub store_failed: u64,
    /// Bytes of topic history kept, across topics (a gauge, within the total history
    /// budget plus one event).
    pub history_bytes: usize,
    /// The history budget across topics (`max_total_bytes`), for `history_bytes`.
    pub history_max_bytes: usize,
    /// Topics that exist (a gauge).
    pub topics: usize,
    /// The topic limit (`max_topics`).
    pub max_topics: usize,
    /// The connection limit (`max_connections`).
    pub max_connections: usize,
    /// Bytes queued for output across connections, not yet written (a gauge; summed over
    /// the open connections when asked, O(connections)).
    pub output_queued_bytes: usize,
    /// With a Redis backplane: both links to Redis are up (a gauge; `false` without one).
    pub redis_ready: bool,
    /// With a Redis backplane: publish scripts sent to Redis (one round trip each; a
    /// second only when Redis had to be given the script).
    pub redis_publishes: u64,
    /// With a Redis backplane: stream reads sent (following a topic, catching up).
    pub redis_reads: u64,
    /// WebSockets closed because the peer answered no keepalive Ping in time
    /// ([`CloseReason::PingTimeout`](crate::CloseReason::PingTimeout)).
    pub ws_ping_timeouts: u64,
}
