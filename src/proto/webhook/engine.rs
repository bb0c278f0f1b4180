//! The webhook delivery state machine: which message to attempt next, when to retry, when
//! to give up, and the health of each endpoint. Pure: no sockets, no clock, no randomness.
//!
//! # Theory of operation
//!
//! The application registers *endpoints* (a [`Url`] and a [`Secret`]) and enqueues
//! *messages* for them (a `webhook-id` that stays the same across retries, and a body
//! shared by reference among all the endpoints it goes to). The driver runs the loop:
//!
//! ```text
//!   enqueue / attempt_finished / a deadline passed
//!        │
//!        ▼
//!   while let Some(action) = engine.poll_action(now) { execute it }
//!        │      Attempt          -> make one HTTP attempt, later call attempt_finished
//!        │      Finished         -> tell the application (exactly once per message)
//!        │      EndpointDisabled -> tell the application
//!        ▼
//!   sleep until engine.next_deadline() or the next I/O event
//! ```
//!
//! Every `Attempt` the engine hands out must be answered by exactly one
//! [`Engine::attempt_finished`] call, whatever happens to the connection.
//!
//! A message is in one of three states: *ready* (waiting for a free slot, in publish
//! order), *in flight* (one attempt running) or *waiting* (for its retry time). Results
//! follow the Standard Webhooks conventions ("Delivery success and failure"):
//!
//! | result | effect |
//! |---|---|
//! | 2xx | delivered |
//! | 3xx (redirects are not followed), 408, 429, 5xx, other codes, timeout, connect or I/O error | retry per the [`Schedule`]; fail with this error when it is exhausted |
//! | 429 or 503 with `Retry-After` | retry after that delay instead (capped at [`MAX_RETRY_AFTER`]) |
//! | 410 Gone | fail, and disable the endpoint: its other messages fail with "endpoint disabled", and so do later ones at once |
//! | other 4xx | fail without retrying |
//! | refused by the SSRF guard after resolution | fail without retrying |
//!
//! Endpoint health: at most `max_in_flight_per_endpoint` attempts run at once per
//! endpoint. After `pause_after_failures` consecutive *failed messages* (retries used up,
//! or a 4xx) the endpoint is paused: no attempts start, except one *probe* (the oldest
//! ready message) every `probe_interval`. Any delivered message resumes it. While paused,
//! messages keep queueing; beyond `max_queue` ready-or-waiting messages the oldest fails
//! with "queue full". (An attempt that fails while the queue is full can still go back to
//! waiting, so the bound is `max_queue` plus the attempts in flight.)
//!
//! Removing an endpoint fails its ready and waiting messages with "endpoint removed" at
//! once; an attempt still in flight finishes its message when its result comes: delivered
//! on a 2xx, otherwise failed with "endpoint removed", never retried.
//!
//! Latency in [`Outcome::Delivered`] runs from [`Engine::enqueue`] to the successful
//! result. Jitter for retries comes from the caller as a uniform number in `0..1`.
//!
//! ```
//! use std::rc::Rc;
//! use std::time::{Duration, Instant};
//! use pushwire::proto::webhook::{
//!     Action, AttemptResult, Engine, EngineConfig, Outcome, Secret, Url,
//! };
//!
//! let mut engine = Engine::new(EngineConfig::default());
//! let url = Url::parse("http://receiver.example/hook").unwrap();
//! let secret = Secret::from_bytes(&[42; 32]).unwrap();
//! let endpoint = engine.add_endpoint(url, secret);
//!
//! let t0 = Instant::now();
//! let body: Rc<[u8]> = Rc::from(&br#"{"type":"message"}"#[..]);
//! engine.enqueue(endpoint, "msg_1".into(), body, t0);
//!
//! // First attempt: the receiver answers 503.
//! let Some(Action::Attempt { attempt, number: 1, .. }) = engine.poll_action(t0) else {
//!     unreachable!()
//! };
//! let busy = AttemptResult::Status { code: 503, retry_after: None };
//! engine.attempt_finished(attempt, busy, t0, 0.5);
//! assert_eq!(engine.poll_action(t0), None);
//!
//! // The retry is due 5 s later (0.5 = no jitter); this time it works.
//! let t1 = engine.next_deadline().unwrap();
//! assert_eq!(t1 - t0, Duration::from_secs(5));
//! let Some(Action::Attempt { attempt, number: 2, webhook_id, .. }) = engine.poll_action(t1)
//! else {
//!     unreachable!()
//! };
//! assert_eq!(&*webhook_id, "msg_1");
//! let ok = AttemptResult::Status { code: 200, retry_after: None };
//! engine.attempt_finished(attempt, ok, t1, 0.5);
//! let Some(Action::Finished { outcome, .. }) = engine.poll_action(t1) else {
//!     unreachable!()
//! };
//! assert_eq!(outcome, Outcome::Delivered { attempts: 2, latency: Duration::from_secs(5) });
//! ```

use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::fmt;
use std::rc::Rc;
use std::str::FromStr;
use std::time::{Duration, Instant};

use super::schedule::{Schedule, MAX_RETRY_AFTER};
use super::sign::Secret;
use super::url::Url;

/// The engine's settings; `Default` gives the hub's defaults.
#[derive(Debug, Clone)]
pub struct EngineConfig {
    /// When to retry (default: immediately, 5 s, 5 min, 30 min, 2 h, 5 h, 10 h, 10 h).
    pub schedule: Schedule,
    /// Attempts running at once per endpoint (default 4; 0 counts as 1).
    pub max_in_flight_per_endpoint: usize,
    /// Consecutive failed messages that pause an endpoint (default 5; 0 never pauses).
    pub pause_after_failures: u32,
    /// Time between probe attempts of a paused endpoint (default 60 s).
    pub probe_interval: Duration,
    /// Ready-or-waiting messages kept per endpoint before the oldest fails with "queue
    /// full" (default 10,000).
    pub max_queue: usize,
}

impl Default for EngineConfig {
    fn default() -> EngineConfig {
        EngineConfig {
            schedule: Schedule::default(),
            max_in_flight_per_endpoint: 4,
            pause_after_failures: 5,
            probe_interval: Duration::from_secs(60),
            max_queue: 10_000,
        }
    }
}

macro_rules! id_type {
    ($(#[$doc:meta])* $name:ident) => {
        $(#[$doc])*
        #[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
        pub struct $name(u64);

        impl $name {
            /// The number inside (unique within one [`Engine`]; counts up from 1).
            pub fn as_u64(self) -> u64 {
                self.0
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                write!(f, "{}", self.0)
            }
        }
    };
}

id_type!(
    /// Names an endpoint. `Display` gives an opaque decimal string (for JSON) that
    /// `FromStr` parses back.
    EndpointId
);
id_type!(
    /// Names one message (one event for one endpoint), across all its attempts.
    MessageId
);
id_type!(
    /// Names one delivery attempt; report its result with [`Engine::attempt_finished`].
    AttemptId
);

impl FromStr for EndpointId {
    type Err = std::num::ParseIntError;
    fn from_str(s: &str) -> Result<EndpointId, Self::Err> {
        s.parse().map(EndpointId)
    }
}

/// What came of one attempt, as reported by the driver.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AttemptResult {
    /// A complete response: its status code and its parsed `Retry-After`, if any (see
    /// [`super::schedule::parse_retry_after`]).
    Status {
        /// The final (non-1xx) status code.
        code: u16,
        /// The `Retry-After` delay; only honoured on 429 and 503.
        retry_after: Option<Duration>,
    },
    /// No complete response within the attempt timeout.
    Timeout,
    /// Resolution or the TCP connect failed.
    ConnectFailed(String),
    /// Every resolved address was refused by the SSRF guard (carries its message).
    Refused(String),
    /// The connection failed mid-request or mid-response.
    Io(String),
}

/// The one final result of a message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// A 2xx answer.
    Delivered {
        /// Attempts made, the successful one included.
        attempts: u32,
        /// From enqueue to the successful result.
        latency: Duration,
    },
    /// Given up.
    Failed {
        /// Attempts made (0 when the message never got one).
        attempts: u32,
        /// The last error, or why the message was dropped.
        error: String,
    },
}

/// Something for the driver to do; see [`Engine::poll_action`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Action {
    /// Make one attempt: POST `body` to the endpoint's URL, signed with its secret and
    /// with this `webhook_id` and the current time as `webhook-timestamp`.
    Attempt {
        /// Report the result under this id.
        attempt: AttemptId,
        /// Where to (look up its URL and secret with [`Engine::endpoint`]).
        endpoint: EndpointId,
        /// Which message.
        message: MessageId,
        /// 1 for the first attempt of this message, 2 for the first retry, ...
        number: u32,
        /// The `webhook-id` header: the same for every attempt of the message.
        webhook_id: Rc<str>,
        /// The request body.
        body: Rc<[u8]>,
    },
    /// A message is done: report `outcome` to the application. Exactly once per message.
    Finished {
        /// Where it was going (the endpoint may be gone by now).
        endpoint: EndpointId,
        /// Which message.
        message: MessageId,
        /// Its `webhook-id`.
        webhook_id: Rc<str>,
        /// Delivered or failed.
        outcome: Outcome,
    },
    /// An endpoint answered 410 Gone and was disabled.
    EndpointDisabled {
        /// Which one.
        endpoint: EndpointId,
        /// Why, e.g. "HTTP 410 Gone".
        reason: String,
    },
}

/// What the engine knows about an endpoint.
#[derive(Debug, Clone)]
pub struct EndpointInfo {
    /// The target.
    pub url: Url,
    /// The signing secret.
    pub secret: Secret,
    /// Disabled after a 410 Gone: nothing is delivered any more.
    pub disabled: bool,
    /// Paused after too many failed messages: only probes are attempted.
    pub paused: bool,
    /// Failed messages since the last delivered one.
    pub consecutive_failures: u32,
}

/// Counters and gauges for `/stats`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct EngineStats {
    /// Messages delivered (counter).
    pub delivered: u64,
    /// Messages failed, for any reason (counter).
    pub failed: u64,
    /// Attempts started (counter).
    pub attempts: u64,
    /// Messages that failed an attempt and wait for their next one (gauge).
    pub retrying: u64,
    /// Messages waiting for their first attempt (gauge).
    pub queued: u64,
    /// Attempts running now (gauge).
    pub in_flight: u64,
    /// Endpoints disabled by a 410 Gone (counter).
    pub endpoints_disabled: u64,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum MsgState {
    Ready,
    Waiting(Instant),
    InFlight(AttemptId),
}

#[derive(Debug)]
struct Message {
    endpoint: EndpointId,
    webhook_id: Rc<str>,
    body: Rc<[u8]>,
    enqueued: Instant,
    attempts: u32,
    state: MsgState,
}

#[derive(Debug)]
struct Endpoint {
    info: EndpointInfo,
    /// Messages ready for an attempt, oldest (lowest id = first published) first.
    ready: BTreeSet<MessageId>,
    /// Messages waiting for a retry time (their entries in `Engine::retry_timers`).
    waiting: BTreeSet<MessageId>,
    in_flight: usize,
    /// The running probe attempt of a paused endpoint.
    probe: Option<AttemptId>,
    /// When a paused endpoint may next be probed.
    next_probe: Option<Instant>,
    /// Our entry in `Engine::probe_timers`.
    probe_timer: Option<Instant>,
    /// In `Engine::run_queue`.
    scheduled: bool,
}

/// How a result is handled.
enum Verdict {
    Delivered,
    Retry(String, Option<Duration>),
    Fail(String),
    Gone(String),
}

impl Verdict {
    fn of(result: AttemptResult) -> Verdict {
        match result {
            AttemptResult::Status { code, retry_after } => match code {
                200..=299 => Verdict::Delivered,
                410 => Verdict::Gone("HTTP 410 Gone".into()),
                429 | 503 => Verdict::Retry(format!("HTTP {code}"), retry_after),
                300..=399 => {
                    Verdict::Retry(format!("HTTP {code} (redirects are not followed)"), None)
                }
                408 => Verdict::Retry(format!("HTTP {code}"), None),
                400..=499 => Verdict::Fail(format!("HTTP {code}")),
                _ => Verdict::Retry(format!("HTTP {code}"), None),
            },
            AttemptResult::Timeout => Verdict::Retry("timeout".into(), None),
            AttemptResult::ConnectFailed(e) => Verdict::Retry(format!("connect failed: {e}"), None),
            AttemptResult::Io(e) => Verdict::Retry(format!("I/O error: {e}"), None),
            AttemptResult::Refused(e) => Verdict::Fail(e),
        }
    }
}

/// The delivery state machine of all endpoints; see the module docs.
#[derive(Debug)]
pub struct Engine {
    config: EngineConfig,
    endpoints: BTreeMap<EndpointId, Endpoint>,
    messages: BTreeMap<MessageId, Message>,
    attempts: BTreeMap<AttemptId, MessageId>,
    retry_timers: BTreeSet<(Instant, MessageId)>,
    probe_timers: BTreeSet<(Instant, EndpointId)>,
    /// Endpoints that may be able to start an attempt, served round-robin.
    run_queue: VecDeque<EndpointId>,
    out: VecDeque<Action>,
    next_id: u64,
    stats: EngineStats,
}

impl Engine {
    /// An engine with no endpoints.
    pub fn new(mut config: EngineConfig) -> Engine {
        config.max_in_flight_per_endpoint = config.max_in_flight_per_endpoint.max(1);
        Engine {
            config,
            endpoints: BTreeMap::new(),
            messages: BTreeMap::new(),
            attempts: BTreeMap::new(),
            retry_timers: BTreeSet::new(),
            probe_timers: BTreeSet::new(),
            run_queue: VecDeque::new(),
            out: VecDeque::new(),
            next_id: 0,
            stats: EngineStats::default(),
        }
    }

    /// The settings in use.
    pub fn config(&self) -> &EngineConfig {
        &self.config
    }

    fn fresh_id(&mut self) -> u64 {
        self.next_id += 1;
        self.next_id
    }

    /// Registers an endpoint. The URL is assumed to have passed the SSRF check already
    /// when it is an IP literal (names are checked by the driver after each resolution).
    pub fn add_endpoint(&mut self, url: Url, secret: Secret) -> EndpointId {
        let id = EndpointId(self.fresh_id());
        log::debug!("webhook endpoint {id} added: {url}");
        self.endpoints.insert(
            id,
            Endpoint {
                info: EndpointInfo {
                    url,
                    secret,
                    disabled: false,
                    paused: false,
                    consecutive_failures: 0,
                },
                ready: BTreeSet::new(),
                waiting: BTreeSet::new(),
                in_flight: 0,
                probe: None,
                next_probe: None,
                probe_timer: None,
                scheduled: false,
            },
        );
        id
    }

    /// Looks up an endpoint (`None` once removed).
    pub fn endpoint(&self, id: EndpointId) -> Option<&EndpointInfo> {
        self.endpoints.get(&id).map(|e| &e.info)
    }

    /// All endpoints, in the order they were added.
    pub fn endpoints(&self) -> impl Iterator<Item = (EndpointId, &EndpointInfo)> + '_ {
        self.endpoints.iter().map(|(id, e)| (*id, &e.info))
    }

    /// Removes an endpoint; false if there was none. Its ready and waiting messages finish
    /// now as failed with "endpoint removed"; each attempt in flight finishes its message
    /// when its result is reported (delivered on 2xx, else "endpoint removed").
    pub fn remove_endpoint(&mut self, id: EndpointId, now: Instant) -> bool {
        let Some(ep) = self.endpoints.remove(&id) else {
            return false;
        };
        log::debug!("webhook endpoint {id} removed at {now:?}");
        if let Some(at) = ep.probe_timer {
            self.probe_timers.remove(&(at, id));
        }
        for mid in ep.ready.iter().chain(ep.waiting.iter()) {
            self.drop_pending(*mid, "endpoint removed");
        }
        true
    }

    /// Queues one message for one endpoint and returns its id. The body is shared, not
    /// copied: enqueue the same `Rc` for every endpoint of an event. For an unknown or
    /// disabled endpoint, the message fails at once (a `Finished` action follows).
    pub fn enqueue(
        &mut self,
        endpoint: EndpointId,
        webhook_id: Rc<str>,
        body: Rc<[u8]>,
        now: Instant,
    ) -> MessageId {
        let id = MessageId(self.fresh_id());
        let refusal = match self.endpoints.get(&endpoint) {
            None => Some("unknown endpoint"),
            Some(ep) if ep.info.disabled => Some("endpoint disabled"),
            Some(_) => None,
        };
        if let Some(error) = refusal {
            self.stats.failed += 1;
            self.out.push_back(Action::Finished {
                endpoint,
                message: id,
                webhook_id,
                outcome: Outcome::Failed {
                    attempts: 0,
                    error: error.into(),
                },
            });
            return id;
        }
        self.messages.insert(
            id,
            Message {
                endpoint,
                webhook_id,
                body,
                enqueued: now,
                attempts: 0,
                state: MsgState::Ready,
            },
        );
        self.stats.queued += 1;
        let max_queue = self.config.max_queue;
        let mut evict = Vec::new();
        if let Some(ep) = self.endpoints.get_mut(&endpoint) {
            ep.ready.insert(id);
            while ep.ready.len() + ep.waiting.len() > max_queue {
                let oldest = match (ep.ready.first(), ep.waiting.first()) {
                    (Some(r), Some(w)) => *r.min(w),
                    (Some(r), None) => *r,
                    (None, Some(w)) => *w,
                    (None, None) => break,
                };
                ep.ready.remove(&oldest);
                ep.waiting.remove(&oldest);
                evict.push(oldest);
            }
        }
        for mid in evict {
            log::debug!("webhook endpoint {endpoint}: queue full, dropping message {mid}");
            self.drop_pending(mid, "queue full");
        }
        self.schedule(endpoint);
        id
    }

    /// Reports the result of an attempt handed out by [`Engine::poll_action`]. `jitter` is
    /// a uniform random number in `0..1` for the retry delay. Unknown (or already
    /// reported) attempt ids are ignored.
    pub fn attempt_finished(
        &mut self,
        attempt: AttemptId,
        result: AttemptResult,
        now: Instant,
        jitter: f64,
    ) {
        let Some(mid) = self.attempts.remove(&attempt) else {
            log::debug!("webhook: result for unknown attempt {attempt} ignored");
            return;
        };
        self.stats.in_flight -= 1;
        let Some(msg) = self.messages.get_mut(&mid) else {
            return;
        };
        let (endpoint, attempts, enqueued) = (msg.endpoint, msg.attempts, msg.enqueued);
        log::debug!("webhook attempt {attempt} (message {mid}, #{attempts}) -> {result:?}");
        if let Some(ep) = self.endpoints.get_mut(&endpoint) {
            ep.in_flight -= 1;
            if ep.probe == Some(attempt) {
                ep.probe = None;
            }
        }
        self.schedule(endpoint);

        let verdict = Verdict::of(result);
        if let Verdict::Delivered = verdict {
            let latency = now.saturating_duration_since(enqueued);
            self.finish(mid, Outcome::Delivered { attempts, latency });
            if let Some(ep) = self.endpoints.get_mut(&endpoint) {
                ep.info.consecutive_failures = 0;
                if ep.info.paused {
                    log::info!("webhook endpoint {endpoint} delivered again: resumed");
                    ep.info.paused = false;
                    if let Some(at) = ep.probe_timer.take() {
                        self.probe_timers.remove(&(at, endpoint));
                    }
                }
            }
            return;
        }
        let gone = match self.endpoints.get(&endpoint) {
            None => Some("endpoint removed"),
            Some(ep) if ep.info.disabled => Some("endpoint disabled"),
            Some(_) => None,
        };
        if let Some(error) = gone {
            self.finish(mid, failed(attempts, error));
            return;
        }
        match verdict {
            Verdict::Delivered => {}
            Verdict::Gone(error) => {
                self.finish(mid, failed(attempts, &error));
                self.disable(endpoint, error);
            }
            Verdict::Fail(error) => {
                self.finish(mid, failed(attempts, &error));
                self.message_failed(endpoint, now);
            }
            Verdict::Retry(error, retry_after) => {
                let Some(scheduled) = self.config.schedule.delay_before(attempts + 1, jitter)
                else {
                    self.finish(mid, failed(attempts, &error));
                    self.message_failed(endpoint, now);
                    return;
                };
                let delay = retry_after.map_or(scheduled, |d| d.min(MAX_RETRY_AFTER));
                let due = now + delay;
                if let Some(msg) = self.messages.get_mut(&mid) {
                    msg.state = MsgState::Waiting(due);
                }
                self.retry_timers.insert((due, mid));
                self.stats.retrying += 1;
                if let Some(ep) = self.endpoints.get_mut(&endpoint) {
                    ep.waiting.insert(mid);
                }
                log::debug!(
                    "webhook message {mid}: {error}, attempt {} in {delay:?}",
                    attempts + 1
                );
            }
        }
    }

    /// The next thing to do, or `None` when nothing is ready at `now`. Call it until it
    /// returns `None` after every other call into the engine and when
    /// [`Engine::next_deadline`] passes. Starts attempts (respecting the per-endpoint
    /// limit, pauses and probes, oldest message first, endpoints served round-robin) and
    /// hands out outcomes.
    pub fn poll_action(&mut self, now: Instant) -> Option<Action> {
        if let Some(action) = self.out.pop_front() {
            return Some(action);
        }
        while let Some(&(due, mid)) = self.retry_timers.first() {
            if due > now {
                break;
            }
            self.retry_timers.pop_first();
            let Some(msg) = self.messages.get_mut(&mid) else {
                continue;
            };
            msg.state = MsgState::Ready;
            let endpoint = msg.endpoint;
            if let Some(ep) = self.endpoints.get_mut(&endpoint) {
                ep.waiting.remove(&mid);
                ep.ready.insert(mid);
            }
            self.schedule(endpoint);
        }
        while let Some(&(due, endpoint)) = self.probe_timers.first() {
            if due > now {
                break;
            }
            self.probe_timers.pop_first();
            if let Some(ep) = self.endpoints.get_mut(&endpoint) {
                ep.probe_timer = None;
            }
            self.schedule(endpoint);
        }
        while let Some(endpoint) = self.run_queue.pop_front() {
            let Some(ep) = self.endpoints.get_mut(&endpoint) else {
                continue;
            };
            ep.scheduled = false;
            if let Some(action) = self.try_start(endpoint, now) {
                // Maybe it can start more: back of the line, so endpoints take turns.
                self.schedule(endpoint);
                return Some(action);
            }
        }
        None
    }

    /// When [`Engine::poll_action`] may next have something to do without any other
    /// input: the earliest retry or probe time. `None` when nothing is waiting on time.
    pub fn next_deadline(&self) -> Option<Instant> {
        let retry = self.retry_timers.first().map(|(t, _)| *t);
        let probe = self.probe_timers.first().map(|(t, _)| *t);
        match (retry, probe) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        }
    }

    /// Counters and gauges.
    pub fn stats(&self) -> EngineStats {
        self.stats
    }

    fn schedule(&mut self, endpoint: EndpointId) {
        if let Some(ep) = self.endpoints.get_mut(&endpoint) {
            if !ep.scheduled {
                ep.scheduled = true;
                self.run_queue.push_back(endpoint);
            }
        }
    }

    fn try_start(&mut self, endpoint: EndpointId, now: Instant) -> Option<Action> {
        let ep = self.endpoints.get_mut(&endpoint)?;
        if ep.info.disabled
            || ep.in_flight >= self.config.max_in_flight_per_endpoint
            || ep.ready.is_empty()
        {
            return None;
        }
        let probing = ep.info.paused;
        if probing {
            if ep.probe.is_some() {
                return None;
            }
            if let Some(at) = ep.next_probe.filter(|at| now < *at) {
                if ep.probe_timer.is_none() {
                    ep.probe_timer = Some(at);
                    self.probe_timers.insert((at, endpoint));
                }
                return None;
            }
        }
        let mid = ep.ready.pop_first()?;
        self.next_id += 1;
        let attempt = AttemptId(self.next_id);
        ep.in_flight += 1;
        if probing {
            log::debug!("webhook endpoint {endpoint} paused: probing with message {mid}");
            ep.probe = Some(attempt);
            ep.next_probe = Some(now + self.config.probe_interval);
        }
        let msg = self.messages.get_mut(&mid)?;
        if msg.attempts == 0 {
            self.stats.queued -= 1;
        } else {
            self.stats.retrying -= 1;
        }
        msg.attempts += 1;
        msg.state = MsgState::InFlight(attempt);
        self.attempts.insert(attempt, mid);
        self.stats.attempts += 1;
        self.stats.in_flight += 1;
        Some(Action::Attempt {
            attempt,
            endpoint,
            message: mid,
            number: msg.attempts,
            webhook_id: msg.webhook_id.clone(),
            body: msg.body.clone(),
        })
    }

    /// A message that was ready or waiting (already taken out of its endpoint's sets)
    /// fails with `error`.
    fn drop_pending(&mut self, mid: MessageId, error: &str) {
        let Some(msg) = self.messages.get(&mid) else {
            return;
        };
        if let MsgState::Waiting(due) = msg.state {
            self.retry_timers.remove(&(due, mid));
        }
        if msg.attempts == 0 {
            self.stats.queued -= 1;
        } else {
            self.stats.retrying -= 1;
        }
        self.finish(mid, failed(msg.attempts, error));
    }

    /// Removes a message and reports its outcome.
    fn finish(&mut self, mid: MessageId, outcome: Outcome) {
        let Some(msg) = self.messages.remove(&mid) else {
            return;
        };
        match outcome {
            Outcome::Delivered { .. } => self.stats.delivered += 1,
            Outcome::Failed { .. } => self.stats.failed += 1,
        }
        log::debug!("webhook message {mid} ({}): {outcome:?}", msg.webhook_id);
        self.out.push_back(Action::Finished {
            endpoint: msg.endpoint,
            message: mid,
            webhook_id: msg.webhook_id,
            outcome,
        });
    }

    /// Counts a failed message against the endpoint; pauses it at the threshold.
    fn message_failed(&mut self, endpoint: EndpointId, now: Instant) {
        let threshold = self.config.pause_after_failures;
        let Some(ep) = self.endpoints.get_mut(&endpoint) else {
            return;
        };
        ep.info.consecutive_failures += 1;
        if threshold > 0 && ep.info.consecutive_failures >= threshold && !ep.info.paused {
            log::info!(
                "webhook endpoint {endpoint} paused after {} failed messages",
                ep.info.consecutive_failures
            );
            ep.info.paused = true;
            ep.next_probe = Some(now + self.config.probe_interval);
        }
    }

    /// 410 Gone: stop delivering to the endpoint for good.
    fn disable(&mut self, endpoint: EndpointId, reason: String) {
        let Some(ep) = self.endpoints.get_mut(&endpoint) else {
            return;
        };
        log::info!("webhook endpoint {endpoint} disabled: {reason}");
        ep.info.disabled = true;
        ep.info.paused = false;
        let pending: Vec<MessageId> = ep.ready.iter().chain(ep.waiting.iter()).copied().collect();
        ep.ready.clear();
        ep.waiting.clear();
        if let Some(at) = ep.probe_timer.take() {
            self.probe_timers.remove(&(at, endpoint));
        }
        self.stats.endpoints_disabled += 1;
        self.out
            .push_back(Action::EndpointDisabled { endpoint, reason });
        for mid in pending {
            self.drop_pending(mid, "endpoint disabled");
        }
    }
}

fn failed(attempts: u32, error: &str) -> Outcome {
    Outcome::Failed {
        attempts,
        error: error.to_owned(),
    }
}

#[cfg(test)]
impl Engine {
    /// Cross-checks every index against the messages (test builds only).
    fn check_invariants(&self) {
        let (mut queued, mut retrying, mut in_flight) = (0u64, 0u64, 0u64);
        let mut per_ep: BTreeMap<EndpointId, (usize, usize, usize)> = BTreeMap::new();
        for (mid, msg) in &self.messages {
            let ep = self.endpoints.get(&msg.endpoint);
            let counts = per_ep.entry(msg.endpoint).or_default();
            match msg.state {
                MsgState::Ready => {
                    assert!(ep.unwrap().ready.contains(mid), "{mid} ready");
                    counts.0 += 1;
                }
                MsgState::Waiting(due) => {
                    assert!(ep.unwrap().waiting.contains(mid), "{mid} waiting");
                    assert!(self.retry_timers.contains(&(due, *mid)), "{mid} timer");
                    counts.1 += 1;
                }
                MsgState::InFlight(a) => {
                    assert_eq!(self.attempts.get(&a), Some(mid));
                    counts.2 += 1;
                }
            }
            match (msg.state, msg.attempts) {
                (MsgState::InFlight(_), _) => in_flight += 1,
                (_, 0) => queued += 1,
                _ => retrying += 1,
            }
        }
        assert_eq!(self.stats.queued, queued, "queued gauge");
        assert_eq!(self.stats.retrying, retrying, "retrying gauge");
        assert_eq!(self.stats.in_flight, in_flight, "in_flight gauge");
        assert_eq!(self.attempts.len() as u64, in_flight);
        assert_eq!(
            self.retry_timers.len(),
            per_ep.values().map(|c| c.1).sum::<usize>()
        );
        for (id, ep) in &self.endpoints {
            let c = per_ep.get(id).copied().unwrap_or_default();
            assert_eq!(
                (ep.ready.len(), ep.waiting.len(), ep.in_flight),
                c,
                "endpoint {id}"
            );
            assert!(ep.in_flight <= self.config.max_in_flight_per_endpoint);
            if let Some(at) = ep.probe_timer {
                assert!(self.probe_timers.contains(&(at, *id)));
            }
        }
        assert_eq!(
            self.probe_timers.len(),
            self.endpoints
                .values()
                .filter(|e| e.probe_timer.is_some())
                .count()
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// One attempt the simulated driver started.
    #[derive(Debug, Clone)]
    struct Started {
        at: Duration,
        endpoint: EndpointId,
        message: MessageId,
        number: u32,
        webhook_id: Rc<str>,
    }

    type Responder = Box<dyn FnMut(&Started) -> (Duration, AttemptResult)>;

    /// A deterministic driver: fake time, scripted results, every action recorded.
    struct Sim {
        engine: Engine,
        t0: Instant,
        now: Instant,
        running: Vec<(Instant, AttemptId, AttemptResult)>,
        started: Vec<Started>,
        outcomes: BTreeMap<MessageId, (EndpointId, Rc<str>, Outcome, Duration)>,
        disabled: Vec<(EndpointId, String)>,
        responder: Responder,
        max_running: BTreeMap<EndpointId, usize>,
        /// Check the engine's invariants after every n-th drain (they cost O(messages)).
        check_every: u32,
        drains: u32,
    }

    fn secs(s: u64) -> Duration {
        Duration::from_secs(s)
    }

    fn status(code: u16) -> AttemptResult {
        AttemptResult::Status {
            code,
            retry_after: None,
        }
    }

    fn delivered(attempts: u32, latency: u64) -> Outcome {
        Outcome::Delivered {
            attempts,
            latency: secs(latency),
        }
    }

    impl Sim {
        fn new(config: EngineConfig, responder: Responder) -> Sim {
            let t0 = Instant::now();
            Sim {
                engine: Engine::new(config),
                t0,
                now: t0,
                running: Vec::new(),
                started: Vec::new(),
                outcomes: BTreeMap::new(),
                disabled: Vec::new(),
                responder,
                max_running: BTreeMap::new(),
                check_every: 1,
                drains: 0,
            }
        }

        /// Every response takes no time and follows `script` for each attempt number.
        fn scripted(config: EngineConfig, script: Vec<AttemptResult>) -> Sim {
            Sim::new(
                config,
                Box::new(move |s: &Started| {
                    let i = (s.number as usize - 1).min(script.len() - 1);
                    (Duration::ZERO, script[i].clone())
                }),
            )
        }

        fn add(&mut self) -> EndpointId {
            let url = Url::parse("http://receiver.example/hook").unwrap();
            let secret = Secret::from_bytes(&[7; 32]).unwrap();
            self.engine.add_endpoint(url, secret)
        }

        fn publish(&mut self, endpoint: EndpointId, webhook_id: &str) -> MessageId {
            let body: Rc<[u8]> = Rc::from(&b"{}"[..]);
            self.engine
                .enqueue(endpoint, webhook_id.into(), body, self.now)
        }

        fn elapsed(&self) -> Duration {
            self.now - self.t0
        }

        fn drain(&mut self) {
            while let Some(action) = self.engine.poll_action(self.now) {
                match action {
                    Action::Attempt {
                        attempt,
                        endpoint,
                        message,
                        number,
                        webhook_id,
                        body,
                    } => {
                        assert_eq!(&*body, b"{}");
                        let s = Started {
                            at: self.elapsed(),
                            endpoint,
                            message,
                            number,
                            webhook_id,
                        };
                        let (latency, result) = (self.responder)(&s);
                        self.running.push((self.now + latency, attempt, result));
                        self.started.push(s);
                        let n = self
                            .engine
                            .endpoints
                            .get(&endpoint)
                            .map_or(0, |e| e.in_flight);
                        let max = self.max_running.entry(endpoint).or_default();
                        *max = (*max).max(n);
                    }
                    Action::Finished {
                        endpoint,
                        message,
                        webhook_id,
                        outcome,
                    } => {
                        let at = self.elapsed();
                        let prev = self
                            .outcomes
                            .insert(message, (endpoint, webhook_id, outcome, at));
                        assert!(prev.is_none(), "message {message} finished twice");
                    }
                    Action::EndpointDisabled { endpoint, reason } => {
                        self.disabled.push((endpoint, reason));
                    }
                }
            }
            self.drains += 1;
            if self.drains.is_multiple_of(self.check_every) {
                self.engine.check_invariants();
            }
        }

        /// Runs the loop until nothing is left to do (time stays where it is) or until
        /// `limit` (counted from the start) is reached.
        fn run_for(&mut self, limit: Duration) {
            let limit = self.t0 + limit;
            loop {
                self.drain();
                let next_done = self.running.iter().map(|r| r.0).min();
                let next = match (next_done, self.engine.next_deadline()) {
                    (Some(a), Some(b)) => Some(a.min(b)),
                    (a, b) => a.or(b),
                };
                match next {
                    Some(t) if t <= limit => self.now = self.now.max(t),
                    Some(_) => {
                        self.now = self.now.max(limit);
                        break;
                    }
                    None => break, // idle: time stands still
                }
                self.running.sort_by_key(|r| (r.0, r.1));
                while self.running.first().is_some_and(|r| r.0 <= self.now) {
                    let (_, attempt, result) = self.running.remove(0);
                    self.engine.attempt_finished(attempt, result, self.now, 0.5);
                }
            }
        }

        fn run(&mut self) {
            self.run_for(Duration::from_secs(100 * 24 * 3600));
        }

        fn outcome(&self, m: MessageId) -> &Outcome {
            &self.outcomes.get(&m).expect("finished").2
        }

        fn attempts_of(&self, m: MessageId) -> Vec<(Duration, u32, Rc<str>)> {
            self.started
                .iter()
                .filter(|s| s.message == m)
                .map(|s| (s.at, s.number, s.webhook_id.clone()))
                .collect()
        }
    }

    #[test]
    fn retried_twice_then_delivered_once() {
        let mut sim = Sim::scripted(
            EngineConfig::default(),
            vec![status(500), status(500), status(200)],
        );
        let ep = sim.add();
        let m = sim.publish(ep, "msg_a");
        sim.run();
        let id: Rc<str> = "msg_a".into();
        assert_eq!(
            sim.attempts_of(m),
            vec![
                (secs(0), 1, id.clone()),
                (secs(5), 2, id.clone()),
                (secs(305), 3, id.clone())
            ]
        );
        assert_eq!(sim.outcomes.len(), 1);
        assert_eq!(sim.outcome(m), &delivered(3, 305));
        let st = sim.engine.stats();
        assert_eq!(
            st,
            EngineStats {
                delivered: 1,
                failed: 0,
                attempts: 3,
                retrying: 0,
                queued: 0,
                in_flight: 0,
                endpoints_disabled: 0
            }
        );
    }

    #[test]
    fn retrying_gauge_while_waiting() {
        let mut sim = Sim::scripted(EngineConfig::default(), vec![status(500), status(204)]);
        let ep = sim.add();
        sim.publish(ep, "m");
        sim.run_for(secs(1));
        assert_eq!(sim.engine.stats().retrying, 1);
        assert_eq!(sim.engine.next_deadline(), Some(sim.t0 + secs(5)));
        sim.run();
        assert_eq!(sim.engine.stats().retrying, 0);
        assert_eq!(sim.engine.stats().delivered, 1);
    }

    #[test]
    fn exhausted_schedule_fails_with_last_error() {
        let config = EngineConfig {
            schedule: Schedule::from_secs(&[1.0, 2.0]).unwrap(),
            ..EngineConfig::default()
        };
        let mut sim = Sim::scripted(
            config,
            vec![
                AttemptResult::Timeout,
                AttemptResult::ConnectFailed("connection refused".into()),
                status(502),
            ],
        );
        let ep = sim.add();
        let m = sim.publish(ep, "m");
        sim.run();
        let at: Vec<Duration> = sim.attempts_of(m).iter().map(|a| a.0).collect();
        assert_eq!(at, vec![secs(0), secs(1), secs(3)]);
        assert_eq!(
            sim.outcome(m),
            &Outcome::Failed {
                attempts: 3,
                error: "HTTP 502".into()
            }
        );
        assert_eq!(sim.engine.endpoint(ep).unwrap().consecutive_failures, 1);
    }

    #[test]
    fn status_codes() {
        // (result, attempts made with a 3-attempt schedule, delivered?, final error)
        let io = |s: &str| AttemptResult::Io(s.into());
        let table: Vec<(AttemptResult, u32, Option<&str>)> = vec![
            (status(200), 1, None),
            (status(204), 1, None),
            (status(299), 1, None),
            (
                status(301),
                3,
                Some("HTTP 301 (redirects are not followed)"),
            ),
            (
                status(304),
                3,
                Some("HTTP 304 (redirects are not followed)"),
            ),
            (status(400), 1, Some("HTTP 400")),
            (status(401), 1, Some("HTTP 401")),
            (status(404), 1, Some("HTTP 404")),
            (status(408), 3, Some("HTTP 408")),
            (status(413), 1, Some("HTTP 413")),
            (status(429), 3, Some("HTTP 429")),
            (status(499), 1, Some("HTTP 499")),
            (status(500), 3, Some("HTTP 500")),
            (status(503), 3, Some("HTTP 503")),
            (status(599), 3, Some("HTTP 599")),
            (status(101), 3, Some("HTTP 101")),
            (status(999), 3, Some("HTTP 999")),
            (AttemptResult::Timeout, 3, Some("timeout")),
            (io("reset"), 3, Some("I/O error: reset")),
            (
                AttemptResult::ConnectFailed("no route".into()),
                3,
                Some("connect failed: no route"),
            ),
            (
                AttemptResult::Refused(
                    "refusing to deliver to 10.0.0.1: private address (RFC 1918)".into(),
                ),
                1,
                Some("refusing to deliver to 10.0.0.1: private address (RFC 1918)"),
            ),
        ];
        for (result, attempts, error) in table {
            let config = EngineConfig {
                schedule: Schedule::from_secs(&[1.0, 1.0]).unwrap(),
                ..EngineConfig::default()
            };
            let mut sim = Sim::scripted(config, vec![result.clone()]);
            let ep = sim.add();
            let m = sim.publish(ep, "m");
            sim.run();
            let want = match error {
                None => Outcome::Delivered {
                    attempts,
                    latency: Duration::ZERO,
                },
                Some(e) => Outcome::Failed {
                    attempts,
                    error: e.into(),
                },
            };
            assert_eq!(sim.outcome(m), &want, "{result:?}");
            assert_eq!(sim.started.len() as u32, attempts, "{result:?}");
            assert!(sim.disabled.is_empty());
        }
    }

    #[test]
    fn gone_fails_and_disables() {
        let config = EngineConfig {
            max_in_flight_per_endpoint: 1,
            ..EngineConfig::default()
        };
        let mut sim = Sim::new(
            config,
            Box::new(|s: &Started| {
                let code = match s.webhook_id.as_ref() {
                    "first" => 500,
                    "other" => 200,
                    _ => 410,
                };
                (secs(1), status(code))
            }),
        );
        let ep = sim.add();
        let other = sim.add();
        let first = sim.publish(ep, "first"); // 500 then 410 on its retry
        let second = sim.publish(ep, "second"); // 410
        let third = sim.publish(ep, "third");
        let unaffected = sim.publish(other, "other");
        sim.run_for(secs(2));
        // first: 500 at 1 s, waits until 6 s; second gets 410 at 2 s.
        assert_eq!(
            sim.outcome(second),
            &Outcome::Failed {
                attempts: 1,
                error: "HTTP 410 Gone".into()
            }
        );
        assert_eq!(sim.disabled, vec![(ep, "HTTP 410 Gone".to_string())]);
        for m in [first, third] {
            assert_eq!(
                sim.outcome(m),
                &Outcome::Failed {
                    attempts: u32::from(m == first),
                    error: "endpoint disabled".into()
                }
            );
        }
        assert!(sim.engine.endpoint(ep).unwrap().disabled);
        assert_eq!(sim.engine.stats().endpoints_disabled, 1);
        assert_eq!(
            sim.engine.next_deadline(),
            None,
            "first's retry timer is gone"
        );
        // later messages fail at once, without an attempt
        let later = sim.publish(ep, "later");
        sim.run();
        assert_eq!(
            sim.outcome(later),
            &Outcome::Failed {
                attempts: 0,
                error: "endpoint disabled".into()
            }
        );
        assert_eq!(sim.started.iter().filter(|s| s.endpoint == ep).count(), 2);
        // the other endpoint is not affected
        assert_eq!(sim.outcome(unaffected), &delivered(1, 1));
        assert!(!sim.engine.endpoint(other).unwrap().disabled);
        assert_eq!(sim.outcomes.len(), 5);
    }

    #[test]
    fn retry_after_overrides_schedule() {
        let ra = |code: u16, s: u64| AttemptResult::Status {
            code,
            retry_after: Some(secs(s)),
        };
        // (first result, when the second attempt starts)
        let table: Vec<(AttemptResult, u64)> = vec![
            (ra(503, 30), 30),
            (ra(429, 0), 0),
            (ra(429, 7200), 3600), // capped at one hour
            (ra(503, 2), 2),       // shorter than the schedule, too
            (ra(500, 30), 5),      // only 429 and 503 carry Retry-After
            (ra(302, 30), 5),
            (status(429), 5),
        ];
        for (first, second_at) in table {
            let mut sim = Sim::scripted(EngineConfig::default(), vec![first.clone(), status(200)]);
            let ep = sim.add();
            let m = sim.publish(ep, "m");
            sim.run();
            let at: Vec<Duration> = sim.attempts_of(m).iter().map(|a| a.0).collect();
            assert_eq!(at, vec![secs(0), secs(second_at)], "{first:?}");
            assert_eq!(sim.outcome(m), &delivered(2, second_at));
        }
        // Retry-After does not add attempts beyond the schedule.
        let config = EngineConfig {
            schedule: Schedule::from_secs(&[]).unwrap(),
            ..EngineConfig::default()
        };
        let mut sim = Sim::scripted(config, vec![ra(503, 1)]);
        let ep = sim.add();
        let m = sim.publish(ep, "m");
        sim.run();
        assert_eq!(sim.started.len(), 1);
        assert!(matches!(
            sim.outcome(m),
            Outcome::Failed { attempts: 1, .. }
        ));
    }

    #[test]
    fn jitter_is_applied_to_retries() {
        let mut e = Engine::new(EngineConfig::default());
        let t0 = Instant::now();
        let ep = e.add_endpoint(
            Url::parse("http://h/").unwrap(),
            Secret::from_bytes(&[1; 24]).unwrap(),
        );
        e.enqueue(ep, "m".into(), Rc::from(&b"x"[..]), t0);
        let Some(Action::Attempt { attempt, .. }) = e.poll_action(t0) else {
            panic!()
        };
        e.attempt_finished(attempt, status(500), t0, 1.0);
        assert_eq!(e.next_deadline(), Some(t0 + secs(6)));
        assert_eq!(e.poll_action(t0 + Duration::from_millis(5999)), None);
        assert!(matches!(
            e.poll_action(t0 + secs(6)),
            Some(Action::Attempt { number: 2, .. })
        ));
    }

    #[test]
    fn concurrency_limit_and_publish_order() {
        let config = EngineConfig {
            max_in_flight_per_endpoint: 4,
            ..EngineConfig::default()
        };
        let mut sim = Sim::new(config, Box::new(|_: &Started| (secs(1), status(200))));
        let a = sim.add();
        let b = sim.add();
        let mut ids = Vec::new();
        for i in 0..10 {
            ids.push(sim.publish(a, &format!("a{i}")));
            sim.publish(b, &format!("b{i}"));
        }
        sim.run();
        assert_eq!(sim.max_running[&a], 4);
        assert_eq!(sim.max_running[&b], 4);
        let order: Vec<MessageId> = sim
            .started
            .iter()
            .filter(|s| s.endpoint == a)
            .map(|s| s.message)
            .collect();
        assert_eq!(order, ids, "publish order");
        // 10 messages, 4 at a time, 1 s each: batches at 0, 1, 2 s
        let starts: Vec<u64> = sim
            .started
            .iter()
            .filter(|s| s.endpoint == a)
            .map(|s| s.at.as_secs())
            .collect();
        assert_eq!(starts, vec![0, 0, 0, 0, 1, 1, 1, 1, 2, 2]);
        // endpoints take turns
        let first_eight: Vec<EndpointId> = sim.started[..8].iter().map(|s| s.endpoint).collect();
        assert_eq!(first_eight, vec![a, b, a, b, a, b, a, b]);
        assert_eq!(sim.engine.stats().delivered, 20);
    }

    #[test]
    fn pause_probe_resume() {
        let config = EngineConfig {
            schedule: Schedule::from_secs(&[]).unwrap(), // one attempt per message
            max_in_flight_per_endpoint: 1,
            pause_after_failures: 2,
            probe_interval: secs(60),
            ..EngineConfig::default()
        };
        // The receiver is down until 150 s.
        let mut sim = Sim::new(
            config,
            Box::new(|s: &Started| {
                let code = if s.at < secs(150) { 500 } else { 200 };
                (Duration::ZERO, status(code))
            }),
        );
        let ep = sim.add();
        let m1 = sim.publish(ep, "m1");
        let m2 = sim.publish(ep, "m2");
        sim.run_for(secs(1));
        assert!(matches!(sim.outcome(m1), Outcome::Failed { .. }));
        assert!(matches!(sim.outcome(m2), Outcome::Failed { .. }));
        let info = sim.engine.endpoint(ep).unwrap();
        assert!(info.paused);
        assert_eq!(info.consecutive_failures, 2);
        // Messages published while paused wait; the probe goes at 60 s.
        let m3 = sim.publish(ep, "m3");
        let m4 = sim.publish(ep, "m4");
        let m5 = sim.publish(ep, "m5");
        sim.run_for(secs(59));
        assert_eq!(sim.started.len(), 2, "no attempt before the probe time");
        assert_eq!(sim.engine.next_deadline(), Some(sim.t0 + secs(60)));
        sim.run_for(secs(61));
        assert_eq!(
            sim.attempts_of(m3)[0].0,
            secs(60),
            "probe with the oldest message"
        );
        assert!(matches!(sim.outcome(m3), Outcome::Failed { .. }));
        assert_eq!(sim.started.len(), 3, "one probe only");
        // next probe at 120 s fails too; the one at 180 s succeeds and resumes
        sim.run();
        assert_eq!(sim.attempts_of(m4)[0].0, secs(120));
        assert_eq!(sim.attempts_of(m5)[0].0, secs(180));
        assert_eq!(sim.outcome(m5), &delivered(1, 180));
        let info = sim.engine.endpoint(ep).unwrap();
        assert!(!info.paused);
        assert_eq!(info.consecutive_failures, 0);
        // resumed: new messages go at once
        let m6 = sim.publish(ep, "m6");
        sim.run();
        assert_eq!(sim.attempts_of(m6)[0].0, secs(180));
        assert_eq!(sim.outcome(m6), &delivered(1, 0));
        assert_eq!(sim.engine.next_deadline(), None);
    }

    #[test]
    fn paused_endpoint_probes_when_work_arrives_late() {
        let config = EngineConfig {
            schedule: Schedule::from_secs(&[]).unwrap(),
            pause_after_failures: 1,
            probe_interval: secs(60),
            ..EngineConfig::default()
        };
        let mut sim = Sim::scripted(config, vec![status(500)]);
        let ep = sim.add();
        sim.publish(ep, "m1");
        sim.run();
        assert!(sim.engine.endpoint(ep).unwrap().paused);
        assert_eq!(sim.engine.next_deadline(), None, "nothing to probe with");
        sim.now = sim.t0 + secs(500);
        let m2 = sim.publish(ep, "m2");
        sim.run_for(secs(500));
        assert_eq!(
            sim.attempts_of(m2)[0].0,
            secs(500),
            "probe is overdue: at once"
        );
        let m3 = sim.publish(ep, "m3");
        sim.run();
        assert_eq!(sim.attempts_of(m3)[0].0, secs(560));
    }

    #[test]
    fn retries_of_a_paused_endpoint_wait_for_probes() {
        let config = EngineConfig {
            schedule: Schedule::from_secs(&[1.0]).unwrap(),
            pause_after_failures: 1,
            probe_interval: secs(60),
            max_in_flight_per_endpoint: 1,
            ..EngineConfig::default()
        };
        let mut sim = Sim::new(
            config,
            Box::new(|s: &Started| {
                let code = match (s.webhook_id.as_ref(), s.number) {
                    ("m1", _) => 404,
                    (_, 1) => 500,
                    _ => 200,
                };
                (Duration::ZERO, status(code))
            }),
        );
        let ep = sim.add();
        let m1 = sim.publish(ep, "m1"); // 404: fails, pauses the endpoint
        let m2 = sim.publish(ep, "m2");
        sim.run();
        assert_eq!(
            sim.outcome(m1),
            &Outcome::Failed {
                attempts: 1,
                error: "HTTP 404".into()
            }
        );
        // m2: probe at 60 s (its attempt #1, a 500), retry due at 61 s but paused: the next
        // probe at 120 s is its attempt #2 (a 200)
        let at: Vec<(Duration, u32)> = sim.attempts_of(m2).iter().map(|a| (a.0, a.1)).collect();
        assert_eq!(at, vec![(secs(60), 1), (secs(120), 2)]);
        assert_eq!(sim.outcome(m2), &delivered(2, 120));
    }

    #[test]
    fn queue_full_drops_the_oldest() {
        let config = EngineConfig {
            max_in_flight_per_endpoint: 1,
            max_queue: 3,
            ..EngineConfig::default()
        };
        let mut sim = Sim::new(config, Box::new(|_: &Started| (secs(1), status(200))));
        let ep = sim.add();
        let first = sim.publish(ep, "m0");
        sim.drain(); // m0 in flight: not counted against the queue
        let ids: Vec<MessageId> = (1..=6).map(|i| sim.publish(ep, &format!("m{i}"))).collect();
        sim.run();
        for m in &ids[..3] {
            assert_eq!(
                sim.outcome(*m),
                &Outcome::Failed {
                    attempts: 0,
                    error: "queue full".into()
                }
            );
        }
        assert_eq!(sim.outcome(first), &delivered(1, 1));
        for (k, m) in ids[3..].iter().enumerate() {
            assert_eq!(sim.outcome(*m), &delivered(1, 2 + k as u64));
        }
        assert_eq!(sim.engine.stats().failed, 3);
        assert_eq!(sim.engine.stats().delivered, 4);
        assert_eq!(sim.engine.endpoint(ep).unwrap().consecutive_failures, 0);
    }

    #[test]
    fn queue_full_can_drop_a_waiting_retry() {
        let config = EngineConfig {
            max_queue: 2,
            ..EngineConfig::default()
        };
        let mut sim = Sim::scripted(config, vec![status(500), status(200)]);
        let ep = sim.add();
        let old = sim.publish(ep, "old");
        sim.run_for(secs(1)); // old failed once, waits for 5 s
        assert_eq!(sim.engine.stats().retrying, 1);
        sim.engine.config.max_in_flight_per_endpoint = 1;
        let a = sim.publish(ep, "a");
        let b = sim.publish(ep, "b"); // 3 pending > 2: `old` goes
        assert_eq!(sim.engine.next_deadline(), None, "its timer went with it");
        sim.run();
        assert_eq!(
            sim.outcome(old),
            &Outcome::Failed {
                attempts: 1,
                error: "queue full".into()
            }
        );
        assert!(matches!(sim.outcome(a), Outcome::Delivered { .. }));
        assert!(matches!(sim.outcome(b), Outcome::Delivered { .. }));
    }

    #[test]
    fn remove_endpoint_with_messages_in_flight() {
        let config = EngineConfig {
            max_in_flight_per_endpoint: 2,
            ..EngineConfig::default()
        };
        let mut sim = Sim::new(
            config,
            Box::new(|s: &Started| {
                let code = match s.webhook_id.as_ref() {
                    "ok" => 200,
                    "retry" if s.number == 1 => 500,
                    _ => 503,
                };
                (secs(10), status(code))
            }),
        );
        let ep = sim.add();
        let retry = sim.publish(ep, "retry");
        sim.run_for(secs(12)); // "retry" failed at 10 s, waits until 15 s
        let ok = sim.publish(ep, "ok");
        let bad = sim.publish(ep, "bad");
        let queued = sim.publish(ep, "queued");
        sim.drain(); // ok and bad in flight, queued ready, retry waiting
        assert_eq!(sim.engine.stats().in_flight, 2);
        assert!(sim.engine.remove_endpoint(ep, sim.now));
        assert!(!sim.engine.remove_endpoint(ep, sim.now));
        assert!(sim.engine.endpoint(ep).is_none());
        sim.drain();
        for m in [retry, queued] {
            assert!(
                matches!(sim.outcome(m), Outcome::Failed { error, .. } if error == "endpoint removed"),
                "{m}"
            );
        }
        assert!(!sim.outcomes.contains_key(&ok));
        assert!(!sim.outcomes.contains_key(&bad));
        let late = sim.publish(ep, "late");
        sim.run();
        // in-flight attempts still finish their messages exactly once, never retried
        assert_eq!(sim.outcome(ok), &delivered(1, 10));
        assert_eq!(
            sim.outcome(bad),
            &Outcome::Failed {
                attempts: 1,
                error: "endpoint removed".into()
            }
        );
        assert_eq!(
            sim.outcome(late),
            &Outcome::Failed {
                attempts: 0,
                error: "unknown endpoint".into()
            }
        );
        assert_eq!(sim.outcomes.len(), 5);
        assert_eq!(sim.started.len(), 3);
        assert_eq!(sim.engine.next_deadline(), None);
        let st = sim.engine.stats();
        assert_eq!(
            (
                st.delivered,
                st.failed,
                st.retrying,
                st.queued,
                st.in_flight
            ),
            (1, 4, 0, 0, 0)
        );
    }

    #[test]
    fn unknown_and_repeated_results_are_ignored() {
        let mut e = Engine::new(EngineConfig::default());
        let t0 = Instant::now();
        let ep = e.add_endpoint(
            Url::parse("http://h/").unwrap(),
            Secret::from_bytes(&[1; 24]).unwrap(),
        );
        e.attempt_finished(AttemptId(999), status(200), t0, 0.5);
        let m = e.enqueue(ep, "m".into(), Rc::from(&b"x"[..]), t0);
        let Some(Action::Attempt {
            attempt, message, ..
        }) = e.poll_action(t0)
        else {
            panic!()
        };
        assert_eq!(message, m);
        e.attempt_finished(attempt, status(200), t0, 0.5);
        e.attempt_finished(attempt, status(500), t0, 0.5);
        assert!(matches!(
            e.poll_action(t0),
            Some(Action::Finished {
                outcome: Outcome::Delivered { .. },
                ..
            })
        ));
        assert_eq!(e.poll_action(t0), None);
        e.check_invariants();
        assert_eq!(e.stats().delivered, 1);
        assert_eq!(e.stats().failed, 0);
    }

    #[test]
    fn ids_and_listing() {
        let mut e = Engine::new(EngineConfig::default());
        let a = e.add_endpoint(
            Url::parse("http://a/").unwrap(),
            Secret::from_bytes(&[1; 24]).unwrap(),
        );
        let b = e.add_endpoint(
            Url::parse("http://b/").unwrap(),
            Secret::from_bytes(&[2; 24]).unwrap(),
        );
        assert_ne!(a, b);
        assert_eq!(a.to_string().parse::<EndpointId>(), Ok(a));
        assert!("x".parse::<EndpointId>().is_err());
        let urls: Vec<String> = e.endpoints().map(|(_, i)| i.url.to_string()).collect();
        assert_eq!(urls, vec!["http://a/", "http://b/"]);
        assert_eq!(e.endpoint(b).unwrap().secret.as_bytes(), &[2; 24]);
    }

    #[test]
    fn thousand_messages_to_ten_endpoints_finish_once() {
        // A flaky fleet: deterministic pseudo-random latencies and results, with every
        // message eventually answered 200 within its schedule.
        let mut seed = 0x2545_F491_4F6C_DD1Du64;
        let mut next = move || {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            seed
        };
        let mut sim = Sim::new(
            EngineConfig::default(),
            Box::new(move |s: &Started| {
                let r = next();
                let latency = Duration::from_millis(r % 2000);
                let result = if s.number >= 4 {
                    status(200)
                } else {
                    match (r >> 16) % 8 {
                        0 => status(500),
                        1 => AttemptResult::Timeout,
                        2 => AttemptResult::Io("connection reset".into()),
                        3 => AttemptResult::Status {
                            code: 429,
                            retry_after: Some(secs(r >> 40 & 0xFF)),
                        },
                        _ => status(200),
                    }
                };
                (latency, result)
            }),
        );
        sim.check_every = 997;
        let eps: Vec<EndpointId> = (0..10).map(|_| sim.add()).collect();
        let body: Rc<[u8]> = Rc::from(&b"{}"[..]);
        let mut msgs = Vec::new();
        for i in 0..1000 {
            let wid: Rc<str> = format!("msg_{i}").into();
            for ep in &eps {
                msgs.push(sim.engine.enqueue(*ep, wid.clone(), body.clone(), sim.now));
            }
            if i % 50 == 0 {
                sim.run_for(sim.elapsed() + Duration::from_millis(100));
            }
        }
        sim.run();
        sim.engine.check_invariants();
        assert_eq!(sim.outcomes.len(), 10_000);
        for m in &msgs {
            assert!(matches!(sim.outcome(*m), Outcome::Delivered { .. }), "{m}");
        }
        // every endpoint saw every webhook id
        for ep in &eps {
            let seen: BTreeSet<&str> = sim
                .started
                .iter()
                .filter(|s| s.endpoint == *ep)
                .map(|s| &*s.webhook_id)
                .collect();
            assert_eq!(seen.len(), 1000);
            assert!(sim.max_running[ep] <= 4);
        }
        let st = sim.engine.stats();
        assert_eq!(st.delivered, 10_000);
        assert_eq!(st.failed, 0);
        assert_eq!(st.attempts, sim.started.len() as u64);
        assert!(
            st.attempts > 12_000,
            "some retries happened: {}",
            st.attempts
        );
        assert_eq!((st.retrying, st.queued, st.in_flight), (0, 0, 0));
        assert_eq!(sim.engine.messages.len(), 0);
        assert_eq!(sim.engine.next_deadline(), None);
        // the body was shared, never copied: only `body` itself is left
        assert_eq!(Rc::strong_count(&body), 1);
    }
}
