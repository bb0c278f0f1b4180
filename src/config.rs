//! Server settings: every limit and timeout of the crate, documented in one place.

use std::path::PathBuf;
use std::time::Duration;

use crate::api::Resolver;
use crate::proto::server::{ConnSettings, SlowPolicy};
use crate::proto::topic::HistoryLimits;
use crate::proto::webhook::{EngineConfig, RegistryConfig, Schedule};

/// Webhook settings, part of [`Config`].
#[derive(Clone)]
pub(crate) struct HookConfig {
    pub(crate) engine: EngineConfig,
    /// The limits on registrations; `own_addrs` is filled in at bind.
    pub(crate) registry: RegistryConfig,
    pub(crate) allow_private: bool,
    pub(crate) connect_timeout: Duration,
    pub(crate) attempt_timeout: Duration,
    pub(crate) resolver: Option<Resolver>,
    /// What `https://` targets are verified against.
    #[cfg(feature = "tls")]
    pub(crate) tls: crate::tls::ClientTls,
}

impl std::fmt::Debug for HookConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("HookConfig")
            .field("engine", &self.engine)
            .field("registry", &self.registry)
            .field("allow_private", &self.allow_private)
            .field("connect_timeout", &self.connect_timeout)
            .field("attempt_timeout", &self.attempt_timeout)
            .finish_non_exhaustive()
    }
}

impl Default for HookConfig {
    fn default() -> Self {
        HookConfig {
            engine: EngineConfig::default(),
            registry: RegistryConfig::default(),
            allow_private: false,
            connect_timeout: Duration::from_secs(5),
            attempt_timeout: Duration::from_secs(15),
            resolver: None,
            #[cfg(feature = "tls")]
            tls: crate::tls::ClientTls::default(),
        }
    }
}

/// When the durable log is fsynced (see [`Config::data_dir`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum Fsync {
    /// A publish is answered, and delivered, only after an fsync that covers it; one
    /// fsync covers every record that arrived while the previous one ran. Nothing
    /// acknowledged is lost, even by a power cut.
    #[default]
    Always,
    /// Fsync at most once a second; publishes are answered at once. A crash may lose the
    /// last second: after an unclean stop each topic starts a new id range from the
    /// clock, so clients resuming from a lost id see a gap.
    Interval,
}

/// Settings for a [`Server`](crate::Server). Build with [`Config::new`] and the setters;
/// every value has a safe default.
///
/// | setting | default | what happens at the limit |
/// |---|---|---|
/// | `max_head_bytes` | 16 KiB | 431 and close |
/// | `max_headers` | 100 | 431 and close |
/// | `max_body_bytes` | 1 MiB | 413 and close |
/// | `header_timeout` | 10 s | a request (head and body) not complete in time: close |
/// | `idle_timeout` | 60 s | an idle keep-alive connection: close |
/// | `max_connections` | 10,000 | new connections are closed at once |
/// | `history_events` / `history_bytes` | 1,000 / 1 MiB per topic | the oldest events are dropped |
/// | `history_total_bytes` | 256 MiB across all topics | the oldest events of the largest topics are dropped, newest ones too if need be; resuming clients see a gap |
/// | `max_topics` | 10,000 | publishing to a new topic fails (expired topics do not count) |
/// | `topic_ttl` | 3600 s | a topic with no publish, no subscriber and no webhook for this long is dropped with its history (zero: never) |
/// | `ws_max_frame` / `ws_max_message` | 16 MiB / 16 MiB | close 1009 (a compressed message: its inflated size) |
/// | `ws_deflate` | true | permessage-deflate (RFC 7692) accepted when offered, without context takeover: no memory per connection |
/// | `ws_deflate_level` / `ws_deflate_direct_level` | 6 / 1 | the zlib level (0-9) of broadcasts (compressed once for every subscriber) and of messages to one connection |
/// | `ws_deflate_takeover` | false | with `true`, context takeover when the client allows it: its own compressor and decompressor per connection (about 420 KiB together, measured in `benches/DEFLATE-FIGURES.md`) |
/// | `high_water` | 1 MiB queued per connection | [`SlowPolicy`]; reading pauses for HTTP/WebSocket input |
/// | `ws_close_timeout` | 5 s | after our close frame, wait this long for the peer's |
/// | `ws_ping_interval` | 30 s | a WebSocket peer (accepted or dialed) that sent nothing for this long gets a Ping (`None` or zero: never) |
/// | `ws_ping_timeout` | 30 s | no input within this after that Ping: close 1001 "ping timeout", `on_close` gets `CloseReason::PingTimeout` |
/// | `sse_heartbeat` | 15 s | a `: heartbeat` comment on idle streams (zero: none) |
/// | `sse_retry` | none | a `retry:` field at the start of each stream |
/// | `poll_batch` | 100 events | per long-poll answer; the client follows `next` |
/// | `stop_timeout` | 5 s | graceful stop: queued output is flushed for at most this long |
/// | `webhook_schedule` | now, 5 s, 5 min, 30 min, 2 h, 5 h, 10 h, 10 h | the message fails |
/// | `webhook_connect_timeout` / `webhook_timeout` | 5 s / 15 s | the attempt fails and is retried |
/// | `webhook_max_in_flight` | 4 per endpoint | further messages wait in the endpoint's queue |
/// | `webhook_pause_after` | 5 failed messages in a row | the endpoint is paused, probed every `webhook_probe_interval` (60 s) |
/// | `webhook_max_queue` | 10,000 per endpoint | the oldest queued message fails ("queue full") |
/// | `webhook_queue_bytes` | 16 MiB per endpoint | the endpoint's oldest queued message fails ("queue full"); a body larger than this fails at once |
/// | `webhook_total_bytes` | 256 MiB for all endpoints | the oldest queued message of any endpoint fails ("queue full") |
/// | `webhook_allow_private` | false | loopback/private/CGNAT/ULA targets are refused |
/// | `webhook_max_per_topic` | 16 endpoints per topic | registration refused: "too many webhooks on this topic (16)" |
/// | `webhook_self_path` | none | a target at the server's own address is refused unless its path (without query) is exactly this one |
/// | `data_dir` | none (in memory) | with a directory: history, registrations and the webhook outbox survive restarts |
/// | `fsync` | [`Fsync::Always`] | a publish waits for its fsync; a full disk answers 507 |
#[derive(Debug, Clone)]
pub struct Config {
    pub(crate) conn: ConnSettings,
    pub(crate) max_connections: usize,
    pub(crate) history: HistoryLimits,
    pub(crate) topic_ttl: Duration,
    pub(crate) ws_max_frame: usize,
    pub(crate) ws_max_message: usize,
    pub(crate) ws_deflate_level: u32,
    pub(crate) ws_deflate_direct_level: u32,
    pub(crate) sse_retry: Option<u64>,
    pub(crate) poll_batch: usize,
    pub(crate) stop_timeout: Duration,
    pub(crate) hooks: HookConfig,
    pub(crate) data_dir: Option<PathBuf>,
    pub(crate) fsync: Fsync,
    /// The Redis backplane's server, when there is one (see [`Config::redis`]).
    pub(crate) redis: Option<crate::proto::resp::RedisUrl>,
    /// The prefix of the backplane's keys and channels.
    pub(crate) redis_prefix: String,
    /// The links without the backplane (the links' own tests read their events).
    pub(crate) redis_links_only: bool,
    /// How long a webhook message may sit with a server that says nothing before another
    /// server takes it over.
    pub(crate) redis_claim_timeout: Duration,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            conn: ConnSettings::default(),
            max_connections: 10_000,
            history: HistoryLimits::default(),
            topic_ttl: Duration::from_secs(3600),
            ws_max_frame: 16 << 20,
            ws_max_message: 16 << 20,
            ws_deflate_level: crate::proto::ws::deflate::LEVEL,
            ws_deflate_direct_level: crate::proto::ws::deflate::DIRECT_LEVEL,
            sse_retry: None,
            poll_batch: 100,
            stop_timeout: Duration::from_secs(5),
            hooks: HookConfig::default(),
            data_dir: None,
            fsync: Fsync::Always,
            redis: None,
            redis_prefix: "pushwire:".into(),
            redis_links_only: false,
            redis_claim_timeout: Duration::from_secs(30),
        }
    }
}

macro_rules! setter {
    ($(#[$doc:meta])* $name:ident : $ty:ty => $($field:ident).+) => {
        $(#[$doc])*
        pub fn $name(mut self, value: $ty) -> Self {
            self.$($field).+ = value;
            self
        }
    };
}

impl Config {
    /// The defaults listed above.
    pub fn new() -> Self {
        Self::default()
    }
    setter!(/// Largest request head (request line and header fields) in bytes.
        max_head_bytes: usize => conn.limits.max_head_bytes);
    setter!(/// Most header fields in one request.
        max_headers: usize => conn.limits.max_headers);
    setter!(/// Largest request body in bytes.
        max_body_bytes: usize => conn.limits.max_body_bytes);
    setter!(/// Time a client has to send a whole request once it started one (slowloris guard).
        header_timeout: Duration => conn.header_timeout);
    setter!(/// Time an idle keep-alive connection is kept.
        idle_timeout: Duration => conn.idle_timeout);
    setter!(/// Most open connections; more are closed as soon as they are accepted.
        max_connections: usize => max_connections);
    setter!(/// Events kept per topic.
        history_events: usize => history.max_events);
    setter!(/// Bytes (data plus event name) kept per topic; the newest event is always kept.
        history_bytes: usize => history.max_bytes);
    setter!(/// Bytes (data plus event name) kept across all topics; past it the oldest events
        /// of the largest topics are dropped (newest ones too, if need be).
        history_total_bytes: usize => history.max_total_bytes);
    setter!(/// Most topics.
        max_topics: usize => history.max_topics);
    setter!(/// How long a topic with no publish, no subscriber of any kind and no webhook
        /// endpoint is kept before it is dropped with its history (zero: never).
        topic_ttl: Duration => topic_ttl);
    setter!(/// Largest WebSocket frame payload accepted.
        ws_max_frame: usize => ws_max_frame);
    setter!(/// Largest WebSocket message accepted (after reassembly).
        ws_max_message: usize => ws_max_message);
    setter!(/// Accept permessage-deflate (RFC 7692) when a client offers it. The server
        /// answers `server_no_context_takeover` and `client_no_context_takeover`, so the
        /// loop's one compressor and decompressor serve every connection and a broadcast is
        /// compressed once.
        ws_deflate: bool => conn.ws_deflate);
    setter!(/// The permessage-deflate compression level of broadcasts, 0-9 (zlib's; 6 by
        /// default): an event is compressed once for all its subscribers.
        ws_deflate_level: u32 => ws_deflate_level);
    setter!(/// The permessage-deflate compression level of messages to one connection (a
        /// send, an echo) through the loop's compressors, 0-9 (1 by default: about 2.5x
        /// faster than 6 on 1 KiB of JSON, 25% bigger). Context takeover connections
        /// compress at `ws_deflate_level`.
        ws_deflate_direct_level: u32 => ws_deflate_direct_level);
    setter!(/// Keep the compression context between messages (better ratios for point-to-point
        /// traffic) when the client allows it. Costs a compressor and a decompressor per
        /// such connection, and broadcasts to it go out uncompressed (a shared compressed
        /// frame would not fit its context).
        ws_deflate_takeover: bool => conn.ws_deflate_takeover);
    setter!(/// Output queued per connection beyond which it counts as a slow reader.
        high_water: usize => conn.high_water);
    setter!(/// What to do with a slow WebSocket reader.
        slow_policy: SlowPolicy => conn.slow_policy);
    setter!(/// How long to wait for the peer's close frame after sending ours.
        ws_close_timeout: Duration => conn.ws_close_timeout);
    setter!(/// Send a WebSocket Ping to a peer that sent nothing for this long, accepted and
        /// dialed ([`Ctx::connect_ws`](crate::Ctx::connect_ws)) WebSockets alike (30 s by
        /// default). Any input counts as alive, not only the Pong. `None`, or a zero
        /// interval, turns the keepalive off: a half-open peer is then found only when a
        /// write fails.
        ws_ping_interval: Option<Duration> => conn.ws_ping_interval);
    setter!(/// After a keepalive Ping, how long the peer has to send anything (30 s by
        /// default) before the connection is closed with 1001 "ping timeout"; the close
        /// timeout then drops a peer that does not answer that Close either. `on_close`
        /// gets [`CloseReason::PingTimeout`](crate::CloseReason::PingTimeout).
        ws_ping_timeout: Duration => conn.ws_ping_timeout);
    setter!(/// Interval of SSE heartbeat comments (zero: no heartbeats).
        sse_heartbeat: Duration => conn.sse_heartbeat);
    setter!(/// `retry:` value (milliseconds) sent at the start of each SSE stream.
        sse_retry: Option<u64> => sse_retry);
    setter!(/// Most events in one long-poll answer.
        poll_batch: usize => poll_batch);
    setter!(/// How long a graceful stop waits for queued output to drain.
        stop_timeout: Duration => stop_timeout);
    setter!(/// Webhook retry schedule (delays before each attempt).
        webhook_schedule: Schedule => hooks.engine.schedule);
    setter!(/// Webhook connect timeout.
        webhook_connect_timeout: Duration => hooks.connect_timeout);
    setter!(/// Webhook whole-attempt timeout (connect, write, read).
        webhook_timeout: Duration => hooks.attempt_timeout);
    setter!(/// Concurrent deliveries per webhook endpoint.
        webhook_max_in_flight: usize => hooks.engine.max_in_flight_per_endpoint);
    setter!(/// Consecutive failed messages that pause a webhook endpoint (0: never).
        webhook_pause_after: u32 => hooks.engine.pause_after_failures);
    setter!(/// Probe interval of a paused webhook endpoint.
        webhook_probe_interval: Duration => hooks.engine.probe_interval);
    setter!(/// Messages queued per webhook endpoint before the oldest fails.
        webhook_max_queue: usize => hooks.engine.max_queue);
    setter!(/// Body bytes held per webhook endpoint (queued, waiting for a retry or in flight)
        /// before its oldest queued message fails with "queue full".
        webhook_queue_bytes: usize => hooks.engine.max_queue_bytes_per_endpoint);
    setter!(/// Body bytes held for all webhook endpoints together before the oldest queued
        /// message fails with "queue full". An event's body going to N endpoints counts N
        /// times (its one copy is shared, so this is an upper bound on the memory).
        webhook_total_bytes: usize => hooks.engine.max_queue_bytes_total);
    setter!(/// Allow loopback, private (RFC 1918), CGNAT and IPv6 ULA webhook targets.
        webhook_allow_private: bool => hooks.allow_private);
    setter!(/// Most webhook endpoints registered for one topic; more are refused.
        webhook_max_per_topic: usize => hooks.registry.max_per_topic);
    setter!(/// The one path (without query) a webhook may target at the server's own
        /// listening address, e.g. a built-in receiver that does not republish to a topic
        /// with webhooks. `None` (the default) refuses every target at the server itself
        /// (its IP and port; `localhost` and every loopback IP when it listens on loopback
        /// or on all addresses), so a webhook cannot feed a publish route of its own server.
        webhook_self_path: Option<String> => hooks.registry.self_path);

    setter!(/// When the durable log is fsynced.
        fsync: Fsync => fsync);

    /// Keep topic history, webhook registrations and the webhook outbox in the directory
    /// `dir` (created, mode 0700, if missing; locked while the server runs), so that a
    /// restart loses nothing acknowledged. [`Server::bind`](crate::Server::bind) fails
    /// with an error naming the directory when it cannot be used.
    pub fn data_dir(mut self, dir: impl Into<PathBuf>) -> Self {
        self.data_dir = Some(dir.into());
        self
    }

    /// Share topics with the other servers using the Redis at `url` (the **backplane**):
    /// ids are given by Redis, every server delivers every event of a topic to its own
    /// subscribers, and history reads come from the topic's stream in Redis. Publishing
    /// then answers later: see [`Ctx::publish_async`](crate::Ctx::publish_async). Cannot be
    /// combined with [`Config::data_dir`] (Redis keeps the history).
    pub fn redis(mut self, url: crate::proto::resp::RedisUrl) -> Self {
        self.redis = Some(url);
        self
    }

    setter!(/// The prefix of the backplane's Redis keys and channels (`pushwire:` by
        /// default), so that several deployments can share one Redis.
        redis_prefix: String => redis_prefix);

    setter!(/// With a backplane: how long a webhook message may stay with a server that no
        /// longer says it works on it (it died) before another server takes it over, with
        /// the same `webhook-id` (30 s by default; servers refresh their messages every
        /// third of it).
        redis_claim_timeout: Duration => redis_claim_timeout);

    /// Verify `https://` webhook receivers against these roots (the Mozilla set from
    /// `webpki-roots` by default; add a private CA with
    /// [`ClientTls::add_ca_file`](crate::tls::ClientTls::add_ca_file)). The TLS handshake
    /// counts toward the connect timeout; a certificate failure is a failed attempt,
    /// retried on the schedule, whose reason names the cause.
    #[cfg(feature = "tls")]
    pub fn webhook_tls(mut self, tls: crate::tls::ClientTls) -> Self {
        self.hooks.tls = tls;
        self
    }

    /// Resolve webhook host names with `resolver` (on the resolver thread) instead of the
    /// system's `getaddrinfo`.
    pub fn webhook_resolver(mut self, resolver: Resolver) -> Self {
        self.hooks.resolver = Some(resolver);
        self
    }
}
