//! The pushwire hub: one publish reaches WebSocket, Server-Sent Events, long-poll and
//! webhook subscribers, side by side.
//!
//! ```text
//! cargo run --release --example hub -- --addr 127.0.0.1:8080
//! curl -d 'hello' 'http://127.0.0.1:8080/topics/demo?event=greeting'
//! # {"topic":"demo","id":1764620000123456}
//! curl 'http://127.0.0.1:8080/topics/demo/events?since=0'
//! # {"events":[{"id":1764620000123456,"event":"greeting","data":"hello"}],"next":1764620000123456,"gap":false}
//! curl -N 'http://127.0.0.1:8080/topics/demo/sse'
//! curl 'http://127.0.0.1:8080/topics/demo/poll?since=1764620000123456&timeout=30'
//! printf '{"n":1}\n{"n":2}\n' | curl --data-binary @- -H 'Content-Type: application/x-ndjson' \
//!     'http://127.0.0.1:8080/topics/demo'   # a batch: {"topic":"demo","ids":[...,...]}
//! ```
//!
//! A topic's first id is the clock in microseconds when it got its first event (so a
//! restarted hub never reuses an id), then +1 per publish. After a cursor N > 0 an answer
//! has `gap: true` exactly when its first event is not N + 1; from 0 only when the history
//! was trimmed.
//!
//! With `--data-dir DIR` the history, the webhook registrations and the webhook outbox
//! survive restarts and crashes: with `--fsync always` (the default) a publish is answered
//! 201 only once it is on disk, and ids continue after a restart; with `--fsync interval`
//! the disk is synced once a second and a crash starts new id ranges (resumers see a gap).
//! A full disk answers publishes with 507.
//!
//! With `--tls-addr HOST:PORT --tls-cert FILE --tls-key FILE` every route is served over
//! TLS (`https://`, `wss://`) as well; `--webhook-ca FILE` adds roots for verifying
//! `https://` webhook receivers (see `hub/tls.rs`).
//!
//! With `--upstream TOPIC=ws://HOST:PORT/PATH` (repeatable) the hub subscribes to an
//! upstream WebSocket feed and publishes its text messages to TOPIC, reconnecting with
//! backoff when it drops (see `hub/upstream.rs`).
//!
//! With `--redis redis://HOST:PORT` several hubs share their topics through one Redis
//! (ids from Redis, every hub delivers every event, resume on any hub; see the README's
//! "Several hubs" section).
//!
//! Set `PUSHWIRE_LOG=debug` (or `trace`) to watch what crosses the wire; `PUSHWIRE_LOG=wire`
//! shows only the decoded wire lines (one per HTTP message, WebSocket frame or SSE event).

#[path = "hub/access.rs"]
mod access;
#[path = "hub/batch.rs"]
mod batch;
#[path = "hub/cli.rs"]
mod cli;
#[path = "hub/metrics.rs"]
mod metrics;
#[path = "hub/tls.rs"]
mod tls;
#[path = "hub/upstream.rs"]
mod upstream;

use std::collections::{HashMap, HashSet};
use std::time::Duration;

use access::{Class, OriginCheck, Policy};

use pushwire::proto::json;
use pushwire::proto::topic::valid_topic;
use pushwire::proto::webhook::{verify, Host, Secret, Url, DEFAULT_TOLERANCE};
use pushwire::{
    form_pairs, App, CloseInfo, ConnId, Ctx, EventsQuery, Message, Park, PublishError,
    PublishTicket, Publishing, Reply, Request, Response, Server, SseStream, WebhookError, WsAccept,
};
use signal_hook::consts::{SIGINT, SIGTERM};

/// The largest text message a WebSocket client may publish (HUB-NOTES: 1 MiB, else 1009).
const WS_MAX_MESSAGE: usize = 1 << 20;
/// Default and largest long-poll wait.
const POLL_DEFAULT: Duration = Duration::from_secs(30);
const POLL_MAX: Duration = Duration::from_secs(120);

struct Hub {
    /// Tokens and allowed origins.
    policy: Policy,
    /// WebSocket connections that presented the publish token, when one is configured:
    /// their text messages are published (without a token, every connection's are).
    ws_publishers: HashSet<ConnId>,
    /// Webhooks received at /hooks/receive: verified, and refused for a bad signature.
    received: u64,
    bad_signature: u64,
    /// Publishes on their way to the Redis backplane, and who waits for their outcome.
    publishing: HashMap<PublishTicket, Waiting>,
    /// The CORS header fields of the answers that come later (a publish through Redis).
    later_headers: HashMap<ConnId, Vec<(String, String)>>,
    /// The `--upstream` feeds.
    upstreams: upstream::Upstreams,
    /// `--max-batch`: the most lines an NDJSON batch publish may have.
    max_batch: usize,
}

/// Who waits for a publish that went to Redis.
enum Waiting {
    /// A publish request: 201 with the id.
    Created(ConnId, String),
    /// A batch publish request of this many events: 201 with the ids.
    Batch(ConnId, String, usize),
    /// A webhook delivery to the built-in receiver: 204.
    Received(ConnId),
    /// A WebSocket client's message: closed 1011 if it fails.
    Ws(ConnId),
}

/// Where a request goes, decided from its path alone.
enum Route<'a> {
    Health,
    Index,
    Stats,
    Metrics,
    Topic(&'a str),
    TopicEvents(&'a str),
    TopicWs(&'a str),
    TopicSse(&'a str),
    TopicPoll(&'a str),
    TopicWebhooks(&'a str),
    TopicWebhook(&'a str, &'a str),
    HooksReceive,
    BadTopic,
    NotFound,
}

fn route(path: &str) -> Route<'_> {
    match path {
        "/healthz" => return Route::Health,
        "/" => return Route::Index,
        "/stats" => return Route::Stats,
        "/metrics" => return Route::Metrics,
        "/hooks/receive" => return Route::HooksReceive,
        _ => {}
    }
    let Some(rest) = path.strip_prefix("/topics/") else {
        return Route::NotFound;
    };
    let (topic, tail) = match rest.split_once('/') {
        Some((t, tail)) => (t, Some(tail)),
        None => (rest, None),
    };
    let hook_id = tail
        .and_then(|t| t.strip_prefix("webhooks/"))
        .filter(|id| !id.is_empty() && !id.contains('/'));
    let known_tail = matches!(
        tail,
        None | Some("events" | "ws" | "sse" | "poll" | "webhooks")
    ) || hook_id.is_some();
    if !known_tail {
        return Route::NotFound;
    }
    if !valid_topic(topic) {
        return Route::BadTopic;
    }
    if let Some(id) = hook_id {
        return Route::TopicWebhook(topic, id);
    }
    match tail {
        None => Route::Topic(topic),
        Some("events") => Route::TopicEvents(topic),
        Some("ws") => Route::TopicWs(topic),
        Some("sse") => Route::TopicSse(topic),
        Some("webhooks") => Route::TopicWebhooks(topic),
        _ => Route::TopicPoll(topic),
    }
}

fn method_not_allowed(allow: &str) -> Reply {
    Response::text(405, "method not allowed\n")
        .header("Allow", allow)
        .into()
}

fn bad_request(msg: &str) -> Reply {
    Response::text(400, format!("{msg}\n")).into()
}

impl Hub {
    fn publish(&mut self, cx: &mut Ctx<'_>, conn: ConnId, topic: &str, req: &Request) -> Reply {
        // One of our own webhook deliveries coming back (through a proxy, another name of
        // this hub, or another hub): publishing it would start a loop.
        if req
            .header_str("webhook-id")
            .is_some_and(|id| cx.is_own_webhook_id(id))
        {
            return Response::text(
                508,
                "loop detected: this is one of this hub's own webhook deliveries\n",
            )
            .into();
        }
        let json = match batch::kind(req) {
            batch::Kind::Single => false,
            batch::Kind::Json => true,
            batch::Kind::Batch => return self.publish_batch(cx, conn, topic, req),
            batch::Kind::BadCharset(msg) => return Response::text(415, format!("{msg}\n")).into(),
        };
        let Ok(data) = std::str::from_utf8(&req.body) else {
            return bad_request("the event data (request body) must be UTF-8 text");
        };
        let event = req.query_param("event");
        let event = event.as_deref().filter(|e| !e.is_empty());
        // `Content-Type: application/json`: checked (400 naming the byte and the cause) and
        // published as a JSON event; any other type is text.
        let published = if json {
            cx.publish_json_async(topic, event, data)
        } else {
            cx.publish_async(topic, event, data)
        };
        match published {
            Ok(Publishing::Done(id)) => created(topic, Ok(id)).into(),
            Ok(Publishing::Pending(t)) => {
                self.publishing
                    .insert(t, Waiting::Created(conn, topic.to_owned()));
                Reply::Later
            }
            Err(e) => created(topic, Err(e)).into(),
        }
    }

    fn events(&self, cx: &Ctx<'_>, topic: &str, req: &Request) -> Reply {
        let since = match req.number_param("since") {
            Ok(s) => s.unwrap_or(0),
            Err(e) => return e.into(),
        };
        let _ = cx;
        EventsQuery::new(topic, since, 100).into()
    }

    fn websocket(&mut self, conn: ConnId, topic: &str, req: &Request) -> Reply {
        // `?since=` (or Last-Event-ID, ?last_event_id=, for symmetry with SSE).
        let since = match req.resume_cursor() {
            Ok(s) => s,
            Err(e) => return e.into(),
        };
        // Without a publish token every client may publish: nothing to remember per
        // connection (an idle subscriber costs the hub nothing beyond the library's slot).
        if self.policy.requires(Class::Publish) && self.policy.allows(Class::Publish, req) {
            self.ws_publishers.insert(conn);
        }
        Reply::WebSocket(
            WsAccept::new()
                .subscribe(topic, since)
                .max_message(WS_MAX_MESSAGE),
        )
    }

    fn sse(&self, topic: &str, req: &Request) -> Reply {
        // Last-Event-ID wins over ?last_event_id=, then ?since=; a non-numeric id means
        // "start live", a non-numeric since is a 400.
        match req.resume_cursor() {
            Ok(last) => Reply::Sse(SseStream::new(topic).resume_after(last)),
            Err(e) => e.into(),
        }
    }

    fn poll(&self, topic: &str, req: &Request) -> Reply {
        let since = match req.number_param("since") {
            Ok(s) => s.unwrap_or(0),
            Err(e) => return e.into(),
        };
        match req.poll_timeout(POLL_DEFAULT, POLL_MAX) {
            Ok(timeout) => Reply::Park(Park::new(topic, since, timeout)),
            Err(e) => e.into(),
        }
    }

    fn stats(&self, cx: &Ctx<'_>) -> Reply {
        let s = cx.stats();
        let w = cx.webhook_stats();
        let body = format!(
            concat!(
                "{{\"connections\":{{\"http\":{},\"websocket\":{},\"sse\":{},\"parked\":{}}},",
                "\"published\":{},",
                "\"delivered\":{{\"websocket\":{},\"sse\":{},\"longpoll\":{},\"webhook\":{}}},",
                "\"webhooks\":{{\"delivered\":{},\"retrying\":{},\"failed\":{},\"attempts\":{},",
                "\"endpoints_disabled\":{}}},",
                "\"received\":{{\"webhooks\":{},\"bad_signature\":{}}},",
                "\"store\":{{\"held\":{},\"failed\":{}}},",
                "\"redis\":{{\"ready\":{},\"publishes\":{},\"reads\":{}}},",
                "\"budgets\":{{\"history_bytes\":{},\"webhook_queued_bytes\":{}}}}}"
            ),
            s.http,
            s.websocket,
            s.sse,
            s.parked,
            s.published,
            s.delivered_websocket,
            s.delivered_sse,
            s.delivered_longpoll,
            s.delivered_webhook,
            w.delivered,
            w.retrying,
            w.failed,
            w.attempts,
            w.endpoints_disabled,
            self.received,
            self.bad_signature,
            s.store_held,
            s.store_failed,
            s.redis_ready,
            s.redis_publishes,
            s.redis_reads,
            s.history_bytes,
            w.queued_bytes,
        );
        Response::json(200, body)
            .header("Cache-Control", "no-store")
            .into()
    }
}

impl Hub {
    fn add_webhook(&mut self, cx: &mut Ctx<'_>, topic: &str, req: &Request) -> Reply {
        if topic == "_webhooks" {
            // Deliveries received are republished there: a webhook on it would loop.
            return bad_request("_webhooks is reserved for received webhooks");
        }
        let pairs = match form_pairs(&req.body) {
            Ok(p) => p,
            Err(e) => return bad_request(&format!("form body: {}", e.reason)),
        };
        let field = |name: &str| {
            pairs
                .iter()
                .find(|(k, _)| k == name)
                .map(|(_, v)| v.as_str())
        };
        let Some(url) = field("url") else {
            return bad_request("the form needs url=...");
        };
        match cx.add_webhook(topic, url, field("secret").filter(|s| !s.is_empty())) {
            Ok(created) => {
                let mut body = b"{\"id\":".to_vec();
                json::write_str(&mut body, &created.id);
                body.extend_from_slice(b",\"secret\":");
                json::write_str(&mut body, &created.secret);
                body.push(b'}');
                Response::json(201, body).into()
            }
            Err(e @ WebhookError::Unavailable) => Response::text(503, format!("{e}\n"))
                .header("Retry-After", "1")
                .into(),
            Err(e) => bad_request(&e.to_string()),
        }
    }

    fn list_webhooks(&self, cx: &Ctx<'_>, topic: &str) -> Reply {
        let mut body = b"{\"webhooks\":[".to_vec();
        for (i, w) in cx.webhooks(topic).iter().enumerate() {
            if i > 0 {
                body.push(b',');
            }
            body.extend_from_slice(b"{\"id\":");
            json::write_str(&mut body, &w.id);
            body.extend_from_slice(b",\"url\":");
            json::write_str(&mut body, &w.url);
            body.extend_from_slice(if w.disabled {
                b",\"disabled\":true}"
            } else {
                b",\"disabled\":false}"
            });
        }
        body.extend_from_slice(b"]}");
        Response::json(200, body)
            .header("Cache-Control", "no-store")
            .into()
    }

    /// The built-in receiver: verifies the Standard Webhooks signature with the secrets of
    /// the hub's registrations that point at itself, then republishes what it got to the
    /// `_webhooks` topic (event name `webhook`) so pages can watch deliveries arrive.
    fn receive(&mut self, cx: &mut Ctx<'_>, conn: ConnId, req: &Request) -> Reply {
        let secrets = own_secrets(cx);
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_secs());
        let verdict = verify(
            &secrets,
            req.header_str("webhook-id").unwrap_or(""),
            req.header_str("webhook-timestamp").unwrap_or(""),
            req.header_str("webhook-signature").unwrap_or(""),
            &req.body,
            now,
            DEFAULT_TOLERANCE,
        );
        if let Err(e) = verdict {
            self.bad_signature += 1;
            return Response::text(401, format!("{e}\n")).into();
        }
        self.received += 1;
        let Ok(text) = std::str::from_utf8(&req.body) else {
            return bad_request("webhook body is not UTF-8");
        };
        match cx.publish_async("_webhooks", Some("webhook"), text) {
            Ok(Publishing::Done(_)) => Response::new(204).into(),
            Ok(Publishing::Pending(t)) => {
                self.publishing.insert(t, Waiting::Received(conn));
                Reply::Later
            }
            Err(e) => Response::text(e.status(), format!("{e}\n")).into(),
        }
    }
}

/// The answer to a publish request: 201 `{"topic":...,"id":N}`, or the error's status.
fn created(topic: &str, result: Result<u64, PublishError>) -> Response {
    match result {
        Ok(id) => {
            let mut body = b"{\"topic\":".to_vec();
            json::write_str(&mut body, topic);
            body.extend_from_slice(format!(",\"id\":{id}}}").as_bytes());
            Response::json(201, body)
        }
        Err(e) => {
            let r = Response::text(e.status(), format!("{e}\n"));
            if e.status() == 503 {
                r.header("Retry-After", "1")
            } else {
                r
            }
        }
    }
}

/// The close code for a WebSocket publish that failed: 1011 when the server could not
/// store it (try again later), 1008 when the message itself is refused.
fn ws_close_code(e: PublishError) -> u16 {
    if e.status() >= 500 {
        1011
    } else {
        1008
    }
}

/// The token class of a route, by its method.
fn class(route: &Route<'_>, method: &str) -> Class {
    match route {
        Route::Health | Route::Index | Route::HooksReceive | Route::BadTopic | Route::NotFound => {
            Class::Open
        }
        Route::Stats | Route::Metrics | Route::TopicWebhooks(_) | Route::TopicWebhook(..) => {
            Class::Admin
        }
        Route::Topic(_) if method == "POST" || method == "OPTIONS" => Class::Publish,
        Route::Topic(_) if method == "GET" || method == "HEAD" => Class::Subscribe,
        Route::Topic(_) if method == "DELETE" => Class::Admin,
        Route::Topic(_) => Class::Open, // 405 anyway
        Route::TopicEvents(_) | Route::TopicWs(_) | Route::TopicSse(_) | Route::TopicPoll(_) => {
            Class::Subscribe
        }
    }
}

impl App for Hub {
    fn on_request(&mut self, cx: &mut Ctx<'_>, conn: ConnId, req: &Request) -> Reply {
        let r = route(req.path());
        let class = class(&r, &req.method);
        if class == Class::Open {
            return self.serve(cx, conn, req, r);
        }
        // Every route but the open ones: the origin first (a refused site learns nothing,
        // not even whether its token was right), then the token.
        let origin = self.policy.origin(req);
        if req.method == "OPTIONS" {
            return access::preflight(&origin);
        }
        let cors = access::cors_headers(&origin);
        if origin == OriginCheck::Refused {
            return Response::text(403, "origin not allowed\n").into();
        }
        if let Err(denied) = self.policy.authorize(class, req) {
            return access::with_headers(denied.into(), &cors);
        }
        let reply = self.serve(cx, conn, req, r);
        if matches!(reply, Reply::Later) && !cors.is_empty() {
            self.later_headers.insert(conn, cors.clone());
        }
        access::with_headers(reply, &cors)
    }

    fn on_ws_open(&mut self, cx: &mut Ctx<'_>, conn: ConnId) {
        self.upstreams.opened(conn, cx.now());
    }

    fn on_ws_connect_failed(&mut self, cx: &mut Ctx<'_>, conn: ConnId, _url: &str, why: &str) {
        let now = cx.now();
        self.upstreams.closed(cx, conn, why, now);
    }

    fn on_timer(&mut self, cx: &mut Ctx<'_>, _timer: pushwire::TimerId, tag: u64) {
        self.upstreams.timer(cx, tag);
    }

    fn on_ws_message(&mut self, cx: &mut Ctx<'_>, conn: ConnId, msg: Message<'_>) {
        let text = match msg {
            Message::Text(t) => Some(t),
            Message::Binary(_) => None,
        };
        if self.upstreams.message(cx, conn, text) {
            return;
        }
        match msg {
            // A chat: what one client says reaches every subscriber of the topic, of any kind.
            Message::Text(text) => {
                if self.policy.requires(Class::Publish) && !self.ws_publishers.contains(&conn) {
                    cx.close_ws(conn, 1008, "publishing needs the publish token");
                    return;
                }
                // The topic it subscribed to when it connected (the library keeps it).
                let topic = cx.subscriptions(conn).next().map(str::to_owned);
                if let Some(topic) = topic {
                    match cx.publish_async(&topic, None, text) {
                        Ok(Publishing::Pending(t)) => {
                            self.publishing.insert(t, Waiting::Ws(conn));
                        }
                        Ok(Publishing::Done(_)) => {}
                        Err(e) => {
                            cx.close_ws(conn, ws_close_code(e), &e.to_string());
                        }
                    }
                } else {
                    // Not lost in silence: the client hears its message went nowhere.
                    cx.close_ws(conn, 1011, "not subscribed to a topic: nothing published");
                }
            }
            Message::Binary(_) => {
                cx.close_ws(conn, 1003, "only text messages are published");
            }
        }
    }

    fn on_published(
        &mut self,
        cx: &mut Ctx<'_>,
        ticket: PublishTicket,
        result: Result<u64, PublishError>,
    ) {
        let mut respond = |cx: &mut Ctx<'_>, conn: ConnId, mut resp: Response| {
            for (n, v) in self.later_headers.remove(&conn).unwrap_or_default() {
                resp = resp.header(n, v);
            }
            cx.respond(conn, resp);
        };
        match (self.publishing.remove(&ticket), result) {
            (Some(Waiting::Created(conn, topic)), r) => respond(cx, conn, created(&topic, r)),
            (Some(Waiting::Batch(conn, topic, n)), r) => {
                let ids = r.map(|first| first..=first + n as u64 - 1);
                respond(cx, conn, batch::created(&topic, ids))
            }
            (Some(Waiting::Received(conn)), Ok(_)) => respond(cx, conn, Response::new(204)),
            (Some(Waiting::Received(conn)), Err(e)) => {
                respond(cx, conn, Response::text(e.status(), format!("{e}\n")))
            }
            (Some(Waiting::Ws(conn)), Err(e)) => {
                cx.close_ws(conn, ws_close_code(e), &e.to_string());
            }
            (Some(Waiting::Ws(_)), Ok(_)) | (None, _) => {}
        }
    }

    fn on_close(&mut self, cx: &mut Ctx<'_>, conn: ConnId, info: &CloseInfo) {
        let now = cx.now();
        if self
            .upstreams
            .closed(cx, conn, &format!("closed: {}", info.reason), now)
        {
            return;
        }
        self.ws_publishers.remove(&conn);
        self.later_headers.remove(&conn);
    }
}

impl Hub {
    /// Answers a request that may be served (see `on_request`).
    fn serve(&mut self, cx: &mut Ctx<'_>, conn: ConnId, req: &Request, r: Route<'_>) -> Reply {
        let get = matches!(req.method.as_str(), "GET" | "HEAD");
        match r {
            Route::Health if get => Response::text(200, "ok").into(),
            Route::Index if get => Response::html(200, INDEX_HTML).into(),
            Route::Stats if get => self.stats(cx),
            Route::Metrics if get => {
                let hub = metrics::HubCounts {
                    received: self.received,
                    bad_signature: self.bad_signature,
                };
                let body = metrics::render(&cx.stats(), &cx.webhook_stats(), &hub);
                Response::new(200)
                    .header("Content-Type", metrics::CONTENT_TYPE)
                    .header("Cache-Control", "no-store")
                    .body(body)
                    .into()
            }
            Route::Topic(t) if req.method == "POST" => self.publish(cx, conn, t, req),
            Route::Topic(t) if get => match cx.topic_info(t) {
                Some(info) => Response::json(200, info.to_json())
                    .header("Cache-Control", "no-store")
                    .into(),
                None => Response::text(404, "no such topic\n").into(),
            },
            Route::Topic(t) if req.method == "DELETE" => match cx.remove_topic(t) {
                Ok(true) => Response::new(204).into(),
                Ok(false) => Response::text(404, "no such topic\n").into(),
                Err(e) => Response::text(e.status(), format!("{e}\n")).into(),
            },
            Route::Topic(_) => method_not_allowed("GET, HEAD, POST, DELETE"),
            Route::TopicEvents(t) if get => self.events(cx, t, req),
            Route::TopicWs(t) if req.method == "GET" => self.websocket(conn, t, req),
            Route::TopicWs(_) => method_not_allowed("GET"),
            Route::TopicSse(t) if get => self.sse(t, req),
            Route::TopicPoll(t) if get => self.poll(t, req),
            Route::TopicWebhooks(t) if req.method == "POST" => self.add_webhook(cx, t, req),
            Route::TopicWebhooks(t) if get => self.list_webhooks(cx, t),
            Route::TopicWebhooks(_) => method_not_allowed("GET, HEAD, POST"),
            Route::TopicWebhook(t, id) if req.method == "DELETE" => {
                if cx.remove_webhook(t, id) {
                    Response::new(204).into()
                } else {
                    Response::text(404, "no such webhook\n").into()
                }
            }
            Route::TopicWebhook(..) => method_not_allowed("DELETE"),
            Route::HooksReceive if req.method == "POST" => self.receive(cx, conn, req),
            Route::HooksReceive => method_not_allowed("POST"),
            Route::BadTopic => {
                bad_request("topic names are 1-128 bytes of [A-Za-z0-9._-], not . or ..")
            }
            Route::NotFound => Response::text(404, "not found\n").into(),
            _ => method_not_allowed("GET, HEAD"),
        }
    }
}

const INDEX_HTML: &str = include_str!("hub/index.html");

/// A minimal logger for the example: `PUSHWIRE_LOG=debug` prints to stderr;
/// `PUSHWIRE_LOG=wire` prints the decoded wire lines (target `pushwire::wire`) and warnings.
struct StderrLog {
    wire_only: std::sync::atomic::AtomicBool,
}

impl log::Log for StderrLog {
    fn enabled(&self, m: &log::Metadata<'_>) -> bool {
        let wire_only = self.wire_only.load(std::sync::atomic::Ordering::Relaxed);
        m.level() <= log::max_level()
            && (!wire_only || m.level() <= log::Level::Warn || m.target() == "pushwire::wire")
    }
    fn log(&self, r: &log::Record<'_>) {
        if self.enabled(r.metadata()) {
            eprintln!("{:5} {}", r.level(), r.args());
        }
    }
    fn flush(&self) {}
}

fn main() {
    static LOGGER: StderrLog = StderrLog {
        wire_only: std::sync::atomic::AtomicBool::new(false),
    };
    let level = match std::env::var("PUSHWIRE_LOG").as_deref() {
        Ok("trace") => log::LevelFilter::Trace,
        Ok("wire") => {
            LOGGER
                .wire_only
                .store(true, std::sync::atomic::Ordering::Relaxed);
            log::LevelFilter::Trace
        }
        Ok("debug") => log::LevelFilter::Debug,
        Ok("info") => log::LevelFilter::Info,
        _ => log::LevelFilter::Warn,
    };
    let _ = log::set_logger(&LOGGER);
    log::set_max_level(level);

    let args = std::env::args_os().skip(1).collect();
    let o = match cli::parse(args, |k| std::env::var(k).ok()) {
        Ok(cli::Outcome::Run(o)) => o,
        Ok(cli::Outcome::Print(text)) => {
            print!("{text}");
            return;
        }
        Err(e) => {
            eprintln!("pushwire hub: {e}");
            std::process::exit(2);
        }
    };
    for var in cli::unknown_vars() {
        eprintln!("WARN  {var} is not a hub setting (see --help); ignored");
    }
    let hub = Hub {
        policy: o.policy,
        ws_publishers: HashSet::new(),
        received: 0,
        bad_signature: 0,
        publishing: HashMap::new(),
        later_headers: HashMap::new(),
        upstreams: o.upstreams,
        max_batch: o.max_batch,
    };
    let fail = |what: String| -> ! {
        eprintln!("pushwire hub: {what}");
        std::process::exit(1)
    };
    let config = o.tls.config(o.config);
    let mut server = match Server::bind(o.addr.as_str(), config, hub) {
        Ok(s) => s,
        Err(e) => fail(bind_error(&o.addr, &e)),
    };
    let local = server.local_addr();
    if !local.ip().is_loopback() && !server.app().policy.any_token() {
        eprintln!(
            "WARN  listening on {local} with no tokens: anyone who can reach it may publish, \
             subscribe, and manage webhooks (see --publish-token, --subscribe-token, --admin-token)"
        );
    }
    let tls_addr = o.tls.listen(&mut server);
    let stop_timeout = o.stop_timeout;
    let signals = signal_hook_mio::v1_0::Signals::new([SIGINT, SIGTERM])
        .unwrap_or_else(|e| fail(format!("cannot listen for signals: {e}")));
    server
        .add_source(signals, move |_hub, cx, signals| {
            for signal in signals.pending() {
                let name = if signal == SIGINT { "SIGINT" } else { "SIGTERM" };
                if cx.is_stopping() {
                    log::info!("stopping now ({name} again)");
                    cx.stop_now();
                    continue;
                }
                let s = cx.stats();
                let hooks = cx.webhook_stats().in_flight;
                log::info!(
                    "stopping ({name}): {} connections, {hooks} webhook attempts, waiting up to {} s",
                    s.http + s.websocket + s.sse + s.parked,
                    stop_timeout.as_secs_f64()
                );
                cx.stop();
            }
        })
        .unwrap_or_else(|e| fail(format!("cannot listen for signals: {e}")));
    server.with_ctx(|hub, cx| hub.upstreams.start(cx));
    println!("pushwire hub listening on http://{local}");
    if let Some(a) = tls_addr {
        println!("pushwire hub listening on https://{a}");
    }
    match server.run() {
        Ok(()) => log::info!("stopped"),
        Err(e) => fail(format!("the event loop failed: {e}")),
    }
}

/// One line for a failed start: `cannot listen on ADDR: address already in use`; errors
/// that are not the socket's (the data directory, Redis) name their cause themselves.
fn bind_error(addr: &str, e: &std::io::Error) -> String {
    use std::io::ErrorKind;
    match e.kind() {
        ErrorKind::AddrInUse => format!("cannot listen on {addr}: address already in use"),
        ErrorKind::AddrNotAvailable => format!("cannot listen on {addr}: address not available"),
        _ if std::net::ToSocketAddrs::to_socket_addrs(addr).is_err() => {
            format!("cannot listen on {addr}: {e}")
        }
        _ => e.to_string(),
    }
}

/// The secrets of the registrations whose URL points at this hub itself, on its plain or
/// its TLS listener (to verify what it receives from itself).
fn own_secrets(cx: &Ctx<'_>) -> Vec<Secret> {
    let mine: Vec<_> = std::iter::once(cx.local_addr())
        .chain(cx.tls_addr())
        .collect();
    cx.webhook_secrets()
        .into_iter()
        .filter_map(|(url, secret)| {
            let u = Url::parse(&url).ok()?;
            let me = mine.iter().any(|local| {
                u.port == local.port()
                    && match &u.host {
                        Host::Ip(ip) => {
                            *ip == local.ip() || (ip.is_loopback() && local.ip().is_loopback())
                        }
                        Host::Name(n) => n == "localhost" && local.ip().is_loopback(),
                    }
            });
            me.then(|| Secret::parse(&secret).ok()).flatten()
        })
        .collect()
}
