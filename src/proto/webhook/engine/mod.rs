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
//! | 3xx (redirects are not followed), 408, 429, 5xx, other codes, timeout, connect or I/O error | retry per the [`Schedule`](super::schedule::Schedule); fail with this error when it is exhausted |
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
//! # Byte budgets
//!
//! The engine counts the body bytes of every message it holds, from [`Engine::enqueue`]
//! (or [`Engine::restore_message`]) to its outcome: ready, waiting *and in flight*, since
//! an attempt running still holds its body. It counts them per endpoint
//! ([`EndpointInfo::queued_bytes`]) and in total ([`EngineStats::queued_bytes`]). A body
//! shared by N endpoints is counted N times: the `Rc` is stored once, so the count is an
//! upper bound on the memory, never less. Only bodies are counted; the per-message overhead
//! (the `webhook-id`, the bookkeeping) is bounded by `max_queue` instead.
//!
//! When a new message takes its endpoint past `max_queue_bytes_per_endpoint`, the oldest
//! ready-or-waiting messages *of that endpoint* fail with "queue full" until it fits; then,
//! while all endpoints together are past `max_queue_bytes_total`, the oldest
//! ready-or-waiting message *of any endpoint* fails with "queue full". Attempts in flight
//! are never cut short (each ends with its own result), so when nothing older can go the
//! new message itself fails. A body larger than a budget on its own fails at once, alone
//! (the messages queued before it stay). A message whose
//! attempt fails goes back to waiting without growing the count (it was counted all along).
//! So both budgets hold at all times, strictly: the bytes held never exceed
//! `max_queue_bytes_per_endpoint` for one endpoint nor `max_queue_bytes_total` in all. Each
//! message evicted gets its one `Finished` ("queue full", with its attempts so far).
//!
//! Removing an endpoint fails its ready and waiting messages with "endpoint removed" at
//! once; an attempt still in flight finishes its message when its result comes: delivered
//! on a 2xx, otherwise failed with "endpoint removed", never retried.
//!
//! When the server stops, [`Engine::stop_starting`] lets the attempts in flight finish
//! and starts no new one: the messages still ready or waiting are the driver's to keep (a
//! durable outbox) or fail.
//!
//! Latency in [`Outcome::Delivered`] runs from [`Engine::enqueue`] to the successful
//! result. Jitter for retries comes from the caller as a uniform number in `0..1`.
//!
//! After a restart, [`Engine::restore_endpoint`], [`Engine::set_next_endpoint_id`] and
//! [`Engine::restore_message`] rebuild the endpoints and the pending messages (their
//! `webhook-id`s, attempt counts and due times) from what the store kept, so that delivery
//! carries on as if the process had never stopped; see [`RestoredMessage`] and
//! [`instant_from_unix_ms`] for the conversion of stored Unix times.
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
//! // Where delivery stands (what a durable log records), then nothing until the retry.
//! let Some(Action::Retrying { attempts: 1, .. }) = engine.poll_action(t0) else {
//!     unreachable!()
//! };
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

use std::rc::Rc;

use std::time::Instant;

use super::schedule::MAX_RETRY_AFTER;
use super::sign::Secret;
use super::url::Url;

mod queue;
mod restore;
mod types;
mod verdict;
use queue::failed;
pub use restore::*;
pub use types::*;
use verdict::Verdict;

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

/// The delivery state machine of all endpoints; see the module docs.
#[derive(Debug)]
pub struct Engine {
    config: EngineConfig,
    endpoints: BTreeMap<EndpointId, Endpoint>,
    messages: BTreeMap<MessageId, Message>,
    attempts: BTreeMap<AttemptId, MessageId>,
    retry_timers: BTreeSet<(Instant, MessageId)>,
    probe_timers: BTreeSet<(Instant, EndpointId)>,
    /// Every ready or waiting message, of all endpoints, oldest (lowest id) first: the
    /// candidates of the total byte budget's eviction.
    pending: BTreeSet<MessageId>,
    /// Endpoints that may be able to start an attempt, served round-robin.
    run_queue: VecDeque<EndpointId>,
    out: VecDeque<Action>,
    next_id: u64,
    stats: EngineStats,
    /// The server is stopping ([`Engine::stop_starting`]): no attempt starts any more.
    stopping: bool,
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
            pending: BTreeSet::new(),
            run_queue: VecDeque::new(),
            out: VecDeque::new(),
            next_id: 0,
            stats: EngineStats::default(),
            stopping: false,
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
        log::debug!("webhook endpoint {id} added: {}", url.without_query());
        self.insert_endpoint(id, url, secret, false);
        id
    }

    /// Inserts a new endpoint under `id` (not already taken).
    fn insert_endpoint(&mut self, id: EndpointId, url: Url, secret: Secret, disabled: bool) {
        let info = EndpointInfo {
            url,
            secret,
            disabled,
            paused: false,
            consecutive_failures: 0,
            queued_bytes: 0,
        };
        self.endpoints.insert(
            id,
            Endpoint {
                info,
                ready: BTreeSet::new(),
                waiting: BTreeSet::new(),
                in_flight: 0,
                probe: None,
                next_probe: None,
                probe_timer: None,
                scheduled: false,
            },
        );
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
        self.remove_endpoint_because(id, now, "endpoint removed")
    }

    /// [`Engine::remove_endpoint`], its ready and waiting messages failing with `error`
    /// (e.g. "server stopped").
    pub fn remove_endpoint_because(&mut self, id: EndpointId, now: Instant, error: &str) -> bool {
        let Some(ep) = self.endpoints.remove(&id) else {
            return false;
        };
        log::debug!("webhook endpoint {id} removed at {now:?}");
        if let Some(at) = ep.probe_timer {
            self.probe_timers.remove(&(at, id));
        }
        for mid in ep.ready.iter().chain(ep.waiting.iter()) {
            self.drop_pending(*mid, error);
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
        let message = Message {
            endpoint,
            webhook_id,
            body,
            enqueued: now,
            attempts: 0,
            state: MsgState::Ready,
        };
        self.queue(message)
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
                    self.out.push_back(Action::Retrying {
                        endpoint,
                        webhook_id: msg.webhook_id.clone(),
                        attempts,
                        next_attempt: due,
                    });
                }
                self.retry_timers.insert((due, mid));
                self.pending.insert(mid);
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

    /// The server is stopping: from now on no attempt starts (no first attempt, no retry,
    /// no probe), while the attempts in flight run to their results, which are handled as
    /// usual (a failed one goes back to waiting for a retry that will not come in this
    /// process). The driver waits for [`EngineStats::in_flight`] to reach zero, bounded
    /// by its stop timeout; what is left then is its to settle (a durable log keeps the
    /// messages for the next start, otherwise they fail). There is no way back.
    pub fn stop_starting(&mut self) {
        self.stopping = true;
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
        if self.stopping
            || ep.info.disabled
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
        self.pending.remove(&mid);
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

#[cfg(test)]
mod tests;
