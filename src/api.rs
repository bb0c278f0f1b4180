//! The data types of the callback API: what an application hands the loop and what it is
//! told. The [`App`](crate::App) trait and its [`Ctx`](crate::Ctx) live with the loop that
//! calls them; this module depends on nothing but the core's types.

use std::fmt;
use std::io;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use crate::proto::http1::Response;
use crate::proto::server::{CloseReason, ConnKind};
use crate::proto::webhook::{Outcome, RegisterError};

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

/// A host-name resolver for webhook URLs: blocking is fine, it runs off the loop thread.
pub type Resolver = Arc<dyn Fn(&str, u16) -> io::Result<Vec<SocketAddr>> + Send + Sync>;

/// A registered webhook endpoint, as listed by [`Ctx::webhooks`](crate::Ctx::webhooks).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WebhookInfo {
    /// Opaque id (for removal).
    pub id: String,
    /// The target URL.
    pub url: String,
    /// Disabled after the receiver answered 410 Gone.
    pub disabled: bool,
}

/// A new registration: its id and signing secret (`whsec_...`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WebhookCreated {
    /// Opaque id.
    pub id: String,
    /// The secret receivers verify signatures with.
    pub secret: String,
}

/// Why a webhook registration was refused.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum WebhookError {
    /// The topic name is not valid.
    BadTopic,
    /// The URL does not parse, has userinfo, or is not `http://`.
    BadUrl(String),
    /// The target address is refused by the SSRF guard (loopback, private, ...).
    Refused(String),
    /// The secret is not `whsec_` + base64 of 24-64 bytes.
    BadSecret(String),
    /// The Redis backplane is unreachable: the registration was not stored.
    Unavailable,
}

impl fmt::Display for WebhookError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            WebhookError::BadTopic => f.write_str("bad topic name"),
            WebhookError::BadUrl(e) => write!(f, "bad url: {e}"),
            WebhookError::Refused(e) => f.write_str(e),
            WebhookError::BadSecret(e) => write!(f, "bad secret: {e}"),
            WebhookError::Unavailable => {
                f.write_str("redis unavailable: the registration was not stored, try again")
            }
        }
    }
}

impl std::error::Error for WebhookError {}

impl From<RegisterError> for WebhookError {
    fn from(e: RegisterError) -> Self {
        match e {
            RegisterError::BadTopic => WebhookError::BadTopic,
            RegisterError::BadUrl(e) => WebhookError::BadUrl(e.to_string()),
            RegisterError::Refused(e) => WebhookError::Refused(e.to_string()),
            RegisterError::BadSecret(e) => WebhookError::BadSecret(e.to_string()),
            e @ (RegisterError::TooManyOnTopic(_)
            | RegisterError::OwnAddress(_)
            | RegisterError::IdTaken) => WebhookError::Refused(e.to_string()),
        }
    }
}

/// The final result of one webhook message, handed to
/// [`App::on_webhook`](crate::App::on_webhook). Exactly one per message.
#[derive(Debug, Clone)]
pub struct WebhookOutcome {
    /// The endpoint's id.
    pub endpoint: String,
    /// The topic the event was published to.
    pub topic: String,
    /// The `webhook-id` every attempt carried.
    pub webhook_id: String,
    /// Delivered (attempts, latency) or failed (attempts, last error).
    pub outcome: Outcome,
}

/// Webhook counters for `/stats`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct WebhookStats {
    /// Messages delivered.
    pub delivered: u64,
    /// Messages waiting for a retry (gauge).
    pub retrying: u64,
    /// Messages failed.
    pub failed: u64,
    /// Attempts made.
    pub attempts: u64,
    /// Endpoints disabled by 410 Gone.
    pub endpoints_disabled: u64,
    /// Body bytes of the messages not yet at their outcome, per endpoint summed (gauge).
    pub queued_bytes: u64,
    /// Attempts running now (gauge): what a graceful stop waits for.
    pub in_flight: u64,
}

/// One kept event of a topic, as [`Ctx::events`](crate::Ctx::events) returns it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredEvent {
    /// Its id (per topic, ascending).
    pub id: u64,
    /// Its event name, if it has one.
    pub name: Option<String>,
    /// Its data.
    pub data: String,
    /// `data` is one JSON value, published with [`Ctx::publish_json`](crate::Ctx::publish_json).
    pub json: bool,
}

/// Kept events after a cursor, with the gap rule's verdict; see
/// [`Ctx::events`](crate::Ctx::events).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EventPage {
    /// The events, ids ascending.
    pub events: Vec<StoredEvent>,
    /// Events after the cursor were lost (trimmed from the history, or the cursor is ahead).
    pub gap: bool,
    /// The cursor to read after next time.
    pub next: u64,
    /// The oldest kept id (0 when the topic keeps nothing).
    pub oldest: u64,
    /// More kept events follow these.
    pub more: bool,
}

impl EventPage {
    pub(crate) fn from_page(page: &crate::proto::topic::Page) -> Self {
        EventPage {
            events: page
                .events
                .iter()
                .map(|e| StoredEvent {
                    id: e.id,
                    name: e.event.as_deref().map(str::to_owned),
                    data: e.data.to_string(),
                    json: e.json,
                })
                .collect(),
            gap: page.gap,
            next: page.next,
            oldest: page.oldest,
            more: page.more,
        }
    }

    /// The page as the hub's JSON: `{"events":[{"id":N,"event":...,"data":"..."}],"next":M,"gap":false}`
    /// (a JSON event's `data` is its value: `"data":{"msg":"hi"}`).
    pub fn to_json(&self) -> Vec<u8> {
        use crate::proto::json;
        let mut out =
            Vec::with_capacity(64 + self.events.iter().map(|e| e.data.len() + 40).sum::<usize>());
        out.extend_from_slice(b"{\"events\":[");
        for (i, e) in self.events.iter().enumerate() {
            if i > 0 {
                out.push(b',');
            }
            out.extend_from_slice(b"{\"id\":");
            json::write_u64(&mut out, e.id);
            out.extend_from_slice(b",\"event\":");
            match &e.name {
                Some(n) => json::write_str(&mut out, n),
                None => out.extend_from_slice(b"null"),
            }
            out.extend_from_slice(b",\"data\":");
            if e.json {
                out.extend_from_slice(e.data.as_bytes());
            } else {
                json::write_str(&mut out, &e.data);
            }
            out.push(b'}');
        }
        out.extend_from_slice(b"],\"next\":");
        json::write_u64(&mut out, self.next);
        out.extend_from_slice(if self.gap {
            b",\"gap\":true}"
        } else {
            b",\"gap\":false}"
        });
        out
    }
}

/// Options of a WebSocket connection the application opens with
/// [`Ctx::connect_ws`](crate::Ctx::connect_ws).
///
/// | option | default |
/// |---|---|
/// | `protocol` | none offered |
/// | `header` | none (the handshake's own fields are always sent) |
/// | `deflate` | offered (permessage-deflate, any window the server picks) |
/// | `max_message` | the server's `ws_max_message` (and `ws_max_frame` for frames) |
/// | `timeout` | 10 s for TCP connect, TLS and the handshake together |
///
/// `wss://` is verified with the roots of `Config::webhook_tls` (with the `tls` feature)
/// (the Mozilla roots by default).
#[derive(Debug, Clone)]
pub struct WsConnect {
    pub(crate) protocols: Vec<String>,
    pub(crate) headers: Vec<(String, String)>,
    pub(crate) deflate: bool,
    pub(crate) max_message: Option<usize>,
    pub(crate) timeout: Duration,
}

impl Default for WsConnect {
    fn default() -> Self {
        WsConnect {
            protocols: Vec::new(),
            headers: Vec::new(),
            deflate: true,
            max_message: None,
            timeout: Duration::from_secs(10),
        }
    }
}

impl WsConnect {
    /// The defaults above.
    pub fn new() -> Self {
        Self::default()
    }

    /// Offers a subprotocol (call again for more, in order of preference).
    pub fn protocol(mut self, name: impl Into<String>) -> Self {
        self.protocols.push(name.into());
        self
    }

    /// Adds a request header field (e.g. `Origin`, `Authorization`).
    pub fn header(mut self, name: impl Into<String>, value: impl Into<String>) -> Self {
        self.headers.push((name.into(), value.into()));
        self
    }

    /// Offers permessage-deflate (true by default).
    pub fn deflate(mut self, offer: bool) -> Self {
        self.deflate = offer;
        self
    }

    /// The largest message accepted from the server (close 1009 above it).
    pub fn max_message(mut self, bytes: usize) -> Self {
        self.max_message = Some(bytes);
        self
    }

    /// The connect timeout: TCP connect, TLS and the handshake.
    pub fn timeout(mut self, timeout: Duration) -> Self {
        self.timeout = timeout;
        self
    }
}

/// Why [`Ctx::connect_ws`](crate::Ctx::connect_ws) could not start a connection. Failures
/// after it started (refused, timed out, a bad handshake answer) arrive in
/// [`App::on_ws_connect_failed`](crate::App::on_ws_connect_failed).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ConnectError {
    /// Not a `ws://` or `wss://` URL.
    Url(crate::proto::ws::client::UrlError),
    /// A subprotocol or header field that cannot be sent.
    Offer(crate::proto::ws::client::OfferError),
    /// `wss://` without the `tls` feature.
    NoTls,
    /// No TLS session could be made for the host (e.g. not a valid server name).
    Tls(String),
    /// The server's `max_connections` are all in use.
    TooManyConnections,
    /// The socket could not be made or registered.
    Io(io::ErrorKind),
    /// The server is stopping, or its loop is gone (from a [`Handle`](crate::Handle)).
    Stopped,
}

impl fmt::Display for ConnectError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ConnectError::Url(e) => write!(f, "bad WebSocket URL: {e}"),
            ConnectError::Offer(e) => write!(f, "bad WebSocket offer: {e}"),
            ConnectError::NoTls => f.write_str("wss:// needs pushwire's `tls` feature"),
            ConnectError::Tls(e) => f.write_str(e),
            ConnectError::TooManyConnections => f.write_str("too many connections"),
            ConnectError::Io(k) => write!(f, "socket: {k}"),
            ConnectError::Stopped => f.write_str("the server is stopping or gone"),
        }
    }
}

impl std::error::Error for ConnectError {}

/// What a topic has now, as [`Ctx::topic_info`](crate::Ctx::topic_info) tells it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TopicInfo {
    /// The topic's name.
    pub topic: String,
    /// The id of its last event (0 when nothing was published to it).
    pub last_id: u64,
    /// The oldest kept id, `None` when it keeps no event.
    pub oldest_id: Option<u64>,
    /// Its subscribers by transport.
    pub subscribers: TopicSubscribers,
    /// Webhook endpoints registered for it (disabled ones included).
    pub webhooks: usize,
}

/// A topic's subscribers by transport (part of [`TopicInfo`]).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct TopicSubscribers {
    /// WebSocket connections subscribed (closing ones until they are gone).
    pub websocket: usize,
    /// Open SSE streams.
    pub sse: usize,
    /// Parked long polls.
    pub parked: usize,
}

impl TopicInfo {
    /// The hub's JSON: `{"topic":"t","last_id":N,"oldest_id":M,"subscribers":{"websocket":a,
    /// "sse":b,"parked":c},"webhooks":K}` (`oldest_id` is `null` when no event is kept).
    pub fn to_json(&self) -> Vec<u8> {
        use crate::proto::json;
        let mut out = Vec::with_capacity(160 + self.topic.len());
        out.extend_from_slice(b"{\"topic\":");
        json::write_str(&mut out, &self.topic);
        out.extend_from_slice(b",\"last_id\":");
        json::write_u64(&mut out, self.last_id);
        out.extend_from_slice(b",\"oldest_id\":");
        match self.oldest_id {
            Some(id) => json::write_u64(&mut out, id),
            None => out.extend_from_slice(b"null"),
        }
        let s = &self.subscribers;
        for (name, n) in [
            (&b",\"subscribers\":{\"websocket\":"[..], s.websocket),
            (b",\"sse\":", s.sse),
            (b",\"parked\":", s.parked),
            (b"},\"webhooks\":", self.webhooks),
        ] {
            out.extend_from_slice(name);
            json::write_u64(&mut out, n as u64);
        }
        out.push(b'}');
        out
    }
}

/// Why [`Ctx::remove_topic`](crate::Ctx::remove_topic) refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RemoveTopicError {
    /// A Redis backplane is configured: the topic's stream in Redis is shared with the
    /// other servers, which would go on serving it, so removal is not offered there.
    Backplane,
}

impl RemoveTopicError {
    /// The HTTP status to answer with: 501 (not implemented with a backplane).
    pub fn status(self) -> u16 {
        501
    }
}

impl fmt::Display for RemoveTopicError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            RemoveTopicError::Backplane => {
                f.write_str("topics cannot be removed with a Redis backplane")
            }
        }
    }
}

impl std::error::Error for RemoveTopicError {}
