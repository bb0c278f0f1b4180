//! The webhook `Engine`, driven by an op-code program against a model kept here: endpoints
//! added, restored and removed, messages enqueued (one at a time, or one shared body for
//! every endpoint) and restored, arbitrary results for the attempts it hands out, stale
//! results repeated, and a fake clock that only goes forward (by milliseconds up to hours,
//! or to the next deadline), with small limits.
//!
//! The model predicts, at the moment of each call, what the engine must do (the engine
//! decides synchronously; the actions only come out later), and every action is checked
//! against that prediction:
//!
//! - every message gets exactly one `Finished`, never two, never while an attempt for it
//!   is out, with the attempt count handed out, and the predicted outcome: delivered on a
//!   2xx (latency from enqueue to the result), the exact error otherwise ("endpoint
//!   removed", "endpoint disabled", "unknown endpoint", "queue full" for exactly the
//!   oldest pending messages beyond `max_queue`, the result's error when it is not
//!   retried or the schedule is used up);
//! - an `Attempt` has a fresh id, is for a pending message of a live, enabled endpoint,
//!   the oldest of those that are due, numbered one more than the last, with the message's
//!   webhook-id and the very body enqueued; at most `max_in_flight` per endpoint; a paused
//!   endpoint gets one probe at a time, `probe_interval` apart;
//! - a `Retrying` comes for each retried result, due exactly `now` plus the schedule's
//!   jittered delay (or the capped `Retry-After` on 429 and 503);
//! - `EndpointDisabled` comes once, after a 410 from an enabled endpoint;
//! - a repeated result is ignored (no stats change, no action);
//! - after each drain: the stats gauges (queued, retrying, in flight) and counters equal the
//!   model's, pause state and failure counts match, nothing due is left waiting (no
//!   endpoint that could start an attempt and did not, `next_deadline` after `now` and no
//!   later than the earliest retry), and pending plus in-flight messages of an endpoint
//!   stay within `max_queue + max_in_flight`;
//! - at the end, either every attempt is answered 200 and time jumps from deadline to
//!   deadline until the engine is idle, or every endpoint is removed and the attempts out
//!   are answered with an arbitrary result: either way every message has had its outcome,
//!   the gauges are zero and there is no deadline.
//!
//! Input: two settings bytes, an optional restore prologue, then ops `op param ...`.
//!
//! Byte 0: bits 0-1 the schedule (default; one attempt; 0, 1 s, 5 s; 0, 0.5 s, 30 s, 2 h),
//! bits 2-3 `max_in_flight_per_endpoint` (0-3, 0 counts as 1), bits 4-5 `max_queue - 1`,
//! bits 6-7 `pause_after_failures` (0-3). Byte 1: bits 0-2 `probe_interval` (1 + 15 n s),
//! bit 3 how the run ends (answer everything 200, or remove every endpoint), bit 4 a
//! restore prologue follows: `n` then n times `id flags` (restore an endpoint, bit 0
//! disabled), then `next` (`set_next_endpoint_id`), then `m` then m times
//! `endpoint attempts due enqueued` (restore a message).
//!
//! | (op & 0x7f) % 12 | what (op bit 7: do not drain the engine after this op) |
//! |---------|-----------------------------------------------------------------|
//! | 0       | add an endpoint                                                 |
//! | 1       | enqueue a message for endpoint `param` (any id ever seen, or an unknown one) |
//! | 2       | enqueue one shared body for every live endpoint                 |
//! | 3       | report attempt `param` (of those out) with the result `kind p jitter` |
//! | 4       | report every attempt out with the result `kind p jitter`        |
//! | 5       | remove endpoint `param`                                         |
//! | 6       | time passes: `param` s                                          |
//! | 7       | time passes: `param` min (up to 4 h 15 min)                     |
//! | 8       | time jumps to the next deadline (`param` odd: 1 ns before it)   |
//! | 9       | repeat the result of an attempt already reported                |
//! | 10      | time passes: `param` ms                                         |
//! | 11      | drain now (whatever bit 7 says)                                 |
#![no_main]

use std::collections::{BTreeMap, BTreeSet};
use std::rc::Rc;
use std::time::{Duration, Instant};

use libfuzzer_sys::fuzz_target;
use pushwire::proto::webhook::schedule::Schedule;
use pushwire::proto::webhook::{
    Action, AttemptId, AttemptResult, EndpointId, Engine, EngineConfig, MessageId, Outcome,
    RestoreError, RestoredMessage, Secret, Url, MAX_RETRY_AFTER,
};

const MAX_OPS: usize = 300;
const MAX_ENDPOINTS: usize = 6;
const MAX_MESSAGES: usize = 200;
/// Rounds of "answer everything, jump to the deadline" before the engine must be idle.
const END_ROUNDS: usize = 5000;

struct Input<'a> {
    data: &'a [u8],
}

impl Input<'_> {
    fn byte(&mut self) -> u8 {
        match self.data.split_first() {
            Some((&b, rest)) => {
                self.data = rest;
                b
            }
            None => 0,
        }
    }
    fn is_empty(&self) -> bool {
        self.data.is_empty()
    }
}

/// What the model knows will happen to a message.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Fate {
    Delivered(Duration),
    Failed(String),
}

#[derive(Debug)]
struct Msg {
    endpoint: EndpointId,
    webhook_id: Rc<str>,
    body: Rc<[u8]>,
    enqueued: Instant,
    /// Attempts handed out (or restored as made).
    attempts: u32,
    in_flight: Option<AttemptId>,
    /// Waiting for a retry until then (None: ready).
    due: Option<Instant>,
    /// Decided by the engine (the `Finished` may not have come out yet).
    fate: Option<Fate>,
    finished_seen: bool,
    /// A `Retrying` for it is owed, due then.
    retry_owed: Option<Instant>,
}

impl Msg {
    fn pending(&self) -> bool {
        self.fate.is_none() && self.in_flight.is_none()
    }
    fn ready(&self, now: Instant) -> bool {
        self.pending() && self.due.is_none_or(|d| d <= now)
    }
}

#[derive(Debug, Default)]
struct Ep {
    live: bool,
    disabled: bool,
    disable_owed: bool,
    paused: bool,
    failures: u32,
    next_probe: Option<Instant>,
    probe: Option<AttemptId>,
    /// Enqueued to since the last drain: "queue full" may come.
    enqueued: bool,
}

struct Harness {
    engine: Engine,
    schedule: Schedule,
    max_in_flight: usize,
    max_queue: usize,
    pause_after: u32,
    probe_interval: Duration,
    base: Instant,
    offset: Duration,
    eps: BTreeMap<EndpointId, Ep>,
    /// Every endpoint id ever issued or restored, in order.
    ep_order: Vec<EndpointId>,
    msgs: BTreeMap<MessageId, Msg>,
    by_webhook_id: BTreeMap<Rc<str>, MessageId>,
    out: BTreeMap<AttemptId, MessageId>,
    reported: Vec<(AttemptId, AttemptResult)>,
    seen_attempts: BTreeSet<AttemptId>,
    seen_ids: BTreeSet<u64>,
    next_msg: u64,
    delivered: u64,
    failed: u64,
    disabled_count: u64,
}

fn status(code: u16) -> AttemptResult {
    AttemptResult::Status {
        code,
        retry_after: None,
    }
}

fn result(input: &mut Input) -> (AttemptResult, f64) {
    let (kind, p, j) = (input.byte(), input.byte(), input.byte());
    const CODES: [u16; 14] = [
        200, 204, 299, 301, 400, 404, 408, 410, 429, 500, 503, 100, 999, 0,
    ];
    let r = match kind % 10 {
        0 => status(200 + u16::from(p % 100)),
        1 => status(CODES[usize::from(p) % CODES.len()]),
        2 | 3 => AttemptResult::Status {
            code: if kind % 10 == 2 { 429 } else { 503 },
            retry_after: (p != 0).then(|| Duration::from_secs(u64::from(p - 1) * 30)),
        },
        4 => AttemptResult::Timeout,
        5 => AttemptResult::ConnectFailed("refused".into()),
        6 => AttemptResult::Refused("ssrf: loopback".into()),
        7 => AttemptResult::Io("reset".into()),
        8 => status(u16::from(p) * 4),
        _ => status(u16::from_le_bytes([p, j])),
    };
    let jitter = match j {
        0..=249 => f64::from(j) / 249.0,
        250 => f64::NAN,
        251 => -1.0,
        252 => 2.0,
        253 => f64::INFINITY,
        _ => 0.5,
    };
    (r, jitter)
}

/// The engine's classification, restated: (delivered, error, retried, gone).
enum Verdict {
    Delivered,
    Retry(String, Option<Duration>),
    Fail(String),
    Gone,
}

fn verdict(r: &AttemptResult) -> Verdict {
    match r {
        AttemptResult::Status { code, retry_after } => match code {
            200..=299 => Verdict::Delivered,
            410 => Verdict::Gone,
            429 | 503 => Verdict::Retry(format!("HTTP {code}"), *retry_after),
            300..=399 => Verdict::Retry(format!("HTTP {code} (redirects are not followed)"), None),
            408 => Verdict::Retry(format!("HTTP {code}"), None),
            400..=499 => Verdict::Fail(format!("HTTP {code}")),
            _ => Verdict::Retry(format!("HTTP {code}"), None),
        },
        AttemptResult::Timeout => Verdict::Retry("timeout".into(), None),
        AttemptResult::ConnectFailed(e) => Verdict::Retry(format!("connect failed: {e}"), None),
        AttemptResult::Io(e) => Verdict::Retry(format!("I/O error: {e}"), None),
        AttemptResult::Refused(e) => Verdict::Fail(e.clone()),
    }
}

impl Harness {
    fn now(&self) -> Instant {
        self.base + self.offset
    }

    fn url(n: usize) -> (Url, Secret) {
        let url = Url::parse(&format!("http://h{n}.example/hook")).unwrap();
        (url, Secret::from_bytes(&[n as u8; 32]).unwrap())
    }

    fn fresh(&mut self, id: u64) {
        assert!(self.seen_ids.insert(id), "id {id} issued twice");
    }

    fn add_endpoint(&mut self) {
        if self.eps.values().filter(|e| e.live).count() >= MAX_ENDPOINTS {
            return;
        }
        let (url, secret) = Harness::url(self.ep_order.len());
        let next = self.engine.next_endpoint_id();
        let id = self.engine.add_endpoint(url.clone(), secret);
        assert!(id.as_u64() >= next, "{id} below next_endpoint_id {next}");
        assert!(!self.eps.contains_key(&id), "endpoint id {id} reused");
        self.fresh(id.as_u64());
        assert_eq!(self.engine.endpoint(id).map(|e| &e.url), Some(&url));
        self.eps.insert(
            id,
            Ep {
                live: true,
                ..Ep::default()
            },
        );
        self.ep_order.push(id);
    }

    fn new_body(&mut self) -> (Rc<[u8]>, u64) {
        self.next_msg += 1;
        let n = self.next_msg;
        (Rc::from(format!("{{\"n\":{n}}}").as_bytes()), n)
    }

    /// Records a message the engine took (or refused), predicting what happens to it.
    fn queued(
        &mut self,
        id: MessageId,
        endpoint: EndpointId,
        webhook_id: Rc<str>,
        body: Rc<[u8]>,
        enqueued: Instant,
        attempts: u32,
        due: Option<Instant>,
        exhausted: bool,
    ) {
        self.fresh(id.as_u64());
        let ep = self.eps.get_mut(&endpoint);
        let fate = if exhausted {
            Some(Fate::Failed(
                "retry schedule exhausted before the restart".into(),
            ))
        } else {
            match ep {
                Some(ep) if ep.live && ep.disabled => {
                    Some(Fate::Failed("endpoint disabled".into()))
                }
                Some(ep) if ep.live => {
                    ep.enqueued = true;
                    None
                }
                _ => Some(Fate::Failed("unknown endpoint".into())),
            }
        };
        let accepted = fate.is_none();
        assert!(self.by_webhook_id.insert(webhook_id.clone(), id).is_none());
        self.msgs.insert(
            id,
            Msg {
                endpoint,
                webhook_id,
                body,
                enqueued,
                attempts,
                in_flight: None,
                due,
                fate,
                finished_seen: false,
                retry_owed: None,
            },
        );
        if accepted {
            // Beyond max_queue pending messages, the oldest fail.
            loop {
                let pending: Vec<MessageId> = self
                    .msgs
                    .iter()
                    .filter(|(_, m)| m.endpoint == endpoint && m.pending())
                    .map(|(id, _)| *id)
                    .collect();
                if pending.len() <= self.max_queue {
                    break;
                }
                let oldest = self.msgs.get_mut(&pending[0]).unwrap();
                oldest.fate = Some(Fate::Failed("queue full".into()));
            }
        }
    }

    fn enqueue(&mut self, endpoint: EndpointId, body: Rc<[u8]>, n: u64, k: usize) {
        let now = self.now();
        let webhook_id: Rc<str> = format!("msg_{n}_{k}").into();
        let id = self
            .engine
            .enqueue(endpoint, webhook_id.clone(), body.clone(), now);
        self.queued(id, endpoint, webhook_id, body, now, 0, None, false);
    }

    fn report(&mut self, attempt: AttemptId, r: AttemptResult, jitter: f64) {
        let now = self.now();
        let mid = self
            .out
            .remove(&attempt)
            .expect("reporting an attempt not out");
        let msg = self.msgs.get_mut(&mid).unwrap();
        assert_eq!(msg.in_flight, Some(attempt));
        msg.in_flight = None;
        let (endpoint, attempts) = (msg.endpoint, msg.attempts);
        let latency = now.saturating_duration_since(msg.enqueued);
        let v = verdict(&r);
        let ep = self.eps.get_mut(&endpoint).unwrap();
        if ep.live && ep.probe == Some(attempt) {
            ep.probe = None;
        }
        let mut gone = false;
        let fate = match (&v, ep.live, ep.disabled) {
            (Verdict::Delivered, live, _) => {
                if live {
                    ep.failures = 0;
                    ep.paused = false;
                }
                Some(Fate::Delivered(latency))
            }
            (_, false, _) => Some(Fate::Failed("endpoint removed".into())),
            (_, true, true) => Some(Fate::Failed("endpoint disabled".into())),
            (Verdict::Gone, ..) => {
                gone = true;
                ep.disabled = true;
                ep.disable_owed = true;
                ep.paused = false;
                Some(Fate::Failed("HTTP 410 Gone".into()))
            }
            (Verdict::Fail(e), ..) => Some(Fate::Failed(e.clone())),
            (Verdict::Retry(e, ra), ..) => match self.schedule.delay_before(attempts + 1, jitter) {
                None => Some(Fate::Failed(e.clone())),
                Some(d) => {
                    let delay = ra.map_or(d, |ra| ra.min(MAX_RETRY_AFTER));
                    let msg = self.msgs.get_mut(&mid).unwrap();
                    msg.due = Some(now + delay);
                    msg.retry_owed = Some(now + delay);
                    None
                }
            },
        };
        let counts_as_failure = matches!(&v, Verdict::Fail(_) | Verdict::Retry(..))
            && matches!(fate, Some(Fate::Failed(_)));
        let ep = self.eps.get_mut(&endpoint).unwrap();
        if counts_as_failure && ep.live && !ep.disabled {
            ep.failures += 1;
            if self.pause_after > 0 && ep.failures >= self.pause_after && !ep.paused {
                ep.paused = true;
                ep.next_probe = Some(now + self.probe_interval);
            }
        }
        self.msgs.get_mut(&mid).unwrap().fate = fate;
        if gone {
            // Its other pending messages fail now (a `Retrying` already decided for one of
            // them still comes out first).
            for m in self.msgs.values_mut() {
                if m.endpoint == endpoint && m.pending() {
                    m.fate = Some(Fate::Failed("endpoint disabled".into()));
                }
            }
        }
        self.reported.push((attempt, r.clone()));
        self.engine.attempt_finished(attempt, r, now, jitter);
    }

    fn remove(&mut self, endpoint: EndpointId) {
        let now = self.now();
        let live = self.eps.get(&endpoint).is_some_and(|e| e.live);
        assert_eq!(
            self.engine.remove_endpoint(endpoint, now),
            live,
            "{endpoint}"
        );
        assert!(self.engine.endpoint(endpoint).is_none());
        if !live {
            return;
        }
        let ep = self.eps.get_mut(&endpoint).unwrap();
        ep.live = false;
        ep.probe = None;
        for m in self.msgs.values_mut() {
            if m.endpoint == endpoint && m.pending() {
                m.fate = Some(Fate::Failed("endpoint removed".into()));
                // A Retrying already decided still comes out (the engine queued it).
            }
        }
    }

    fn on_action(&mut self, action: Action) {
        let now = self.now();
        match action {
            Action::Attempt {
                attempt,
                endpoint,
                message,
                number,
                webhook_id,
                body,
            } => {
                assert!(
                    self.seen_attempts.insert(attempt),
                    "attempt {attempt} twice"
                );
                self.fresh(attempt.as_u64());
                let in_flight = self
                    .out
                    .values()
                    .filter(|m| self.msgs[m].endpoint == endpoint)
                    .count();
                assert!(
                    in_flight < self.max_in_flight,
                    "{endpoint}: {in_flight} in flight"
                );
                let ep = self
                    .eps
                    .get_mut(&endpoint)
                    .expect("attempt for an unknown endpoint");
                assert!(ep.live && !ep.disabled, "attempt for {endpoint}: {ep:?}");
                if ep.paused {
                    assert_eq!(ep.probe, None, "{endpoint}: a second probe");
                    let at = ep.next_probe.expect("a paused endpoint has a probe time");
                    assert!(now >= at, "{endpoint}: probe before its time");
                    ep.probe = Some(attempt);
                    ep.next_probe = Some(now + self.probe_interval);
                }
                let oldest = self
                    .msgs
                    .iter()
                    .find(|(_, m)| m.endpoint == endpoint && m.ready(now))
                    .map(|(id, _)| *id);
                assert_eq!(oldest, Some(message), "not the oldest due message");
                let msg = self.msgs.get_mut(&message).unwrap();
                assert_eq!(msg.retry_owed, None, "attempt before its Retrying");
                assert_eq!(msg.webhook_id, webhook_id);
                assert!(Rc::ptr_eq(&msg.body, &body), "the body was copied");
                assert_eq!(number, msg.attempts + 1);
                assert!(number <= self.schedule.max_attempts());
                msg.attempts = number;
                msg.in_flight = Some(attempt);
                msg.due = None;
                self.out.insert(attempt, message);
            }
            Action::Finished {
                endpoint,
                message,
                webhook_id,
                outcome,
            } => {
                let msg = self
                    .msgs
                    .get_mut(&message)
                    .expect("outcome of an unknown message");
                assert!(!msg.finished_seen, "second outcome for {message}");
                msg.finished_seen = true;
                assert_eq!(msg.endpoint, endpoint);
                assert_eq!(msg.webhook_id, webhook_id);
                assert_eq!(
                    msg.in_flight, None,
                    "{message} finished with an attempt out"
                );
                let want = msg
                    .fate
                    .clone()
                    .expect("an outcome the model did not predict");
                match (outcome, want) {
                    (Outcome::Delivered { attempts, latency }, Fate::Delivered(l)) => {
                        assert_eq!(attempts, msg.attempts);
                        assert_eq!(latency, l);
                        self.delivered += 1;
                    }
                    (Outcome::Failed { attempts, error }, Fate::Failed(e)) => {
                        assert_eq!(attempts, msg.attempts, "{error}");
                        assert_eq!(error, e, "{message}");
                        self.failed += 1;
                        if error == "queue full" {
                            assert!(self.eps[&endpoint].enqueued, "queue full without enqueue");
                        }
                    }
                    (got, want) => panic!("{message}: {got:?}, predicted {want:?}"),
                }
            }
            Action::Retrying {
                endpoint,
                webhook_id,
                attempts,
                next_attempt,
            } => {
                let mid = self.by_webhook_id[&webhook_id];
                let msg = self.msgs.get_mut(&mid).unwrap();
                assert_eq!(msg.endpoint, endpoint);
                assert_eq!(msg.attempts, attempts);
                let owed = msg.retry_owed.take().expect("a Retrying not owed");
                assert_eq!(next_attempt, owed, "{webhook_id}");
            }
            Action::EndpointDisabled { endpoint, reason } => {
                let ep = self.eps.get_mut(&endpoint).unwrap();
                assert!(ep.disable_owed, "{endpoint} disabled twice or unasked");
                ep.disable_owed = false;
                assert_eq!(reason, "HTTP 410 Gone");
                self.disabled_count += 1;
            }
        }
    }

    fn drain(&mut self) {
        let now = self.now();
        let mut n = 0;
        while let Some(action) = self.engine.poll_action(now) {
            self.on_action(action);
            n += 1;
            assert!(n < 100_000, "poll_action never returns None");
        }
        self.check();
        for ep in self.eps.values_mut() {
            ep.enqueued = false;
        }
    }

    /// After a drain: everything the model predicted has come out, and the engine agrees.
    fn check(&self) {
        let now = self.now();
        let (mut queued, mut retrying) = (0, 0);
        let mut earliest_retry: Option<Instant> = None;
        for (id, m) in &self.msgs {
            assert_eq!(m.finished_seen, m.fate.is_some(), "{id}: {m:?}");
            assert_eq!(m.retry_owed, None, "{id}: Retrying not seen");
            if m.pending() {
                if m.attempts == 0 {
                    queued += 1;
                } else {
                    retrying += 1;
                }
                if let Some(d) = m.due.filter(|d| *d > now) {
                    earliest_retry = Some(earliest_retry.map_or(d, |e| e.min(d)));
                }
            }
        }
        let s = self.engine.stats();
        assert_eq!(s.queued, queued, "queued gauge");
        assert_eq!(s.retrying, retrying, "retrying gauge");
        assert_eq!(s.in_flight, self.out.len() as u64, "in_flight gauge");
        assert_eq!(s.delivered, self.delivered);
        assert_eq!(s.failed, self.failed);
        assert_eq!(s.attempts, self.seen_attempts.len() as u64);
        assert_eq!(s.endpoints_disabled, self.disabled_count);

        let deadline = self.engine.next_deadline();
        if let Some(d) = deadline {
            assert!(d > now, "a deadline stays due");
        }
        if let Some(r) = earliest_retry {
            assert!(
                deadline.is_some_and(|d| d <= r),
                "retry at {r:?}, deadline {deadline:?}"
            );
        }
        for (id, ep) in &self.eps {
            let info = self.engine.endpoint(*id);
            assert_eq!(info.is_some(), ep.live, "{id}");
            let Some(info) = info else { continue };
            assert!(!ep.disable_owed);
            assert_eq!(info.disabled, ep.disabled, "{id}");
            assert_eq!(info.paused, ep.paused, "{id}");
            assert_eq!(info.consecutive_failures, ep.failures, "{id}");
            let mine = |m: &&Msg| m.endpoint == *id;
            let in_flight = self
                .out
                .values()
                .filter(|m| self.msgs[m].endpoint == *id)
                .count();
            let pending = self
                .msgs
                .values()
                .filter(mine)
                .filter(|m| m.pending())
                .count();
            let ready = self.msgs.values().filter(mine).any(|m| m.ready(now));
            assert!(
                pending + in_flight <= self.max_queue + self.max_in_flight,
                "{id}"
            );
            if ep.disabled {
                assert_eq!(pending, 0);
                continue;
            }
            if ready && in_flight < self.max_in_flight {
                // It could start an attempt: only a paused endpoint waiting to probe may not.
                assert!(ep.paused, "{id}: an attempt could start and did not");
                if ep.probe.is_none() {
                    let at = ep.next_probe.unwrap();
                    assert!(at > now, "{id}: a due probe did not start");
                    assert!(
                        deadline.is_some_and(|d| d <= at),
                        "{id}: no timer for the probe"
                    );
                }
            }
        }
    }

    fn advance(&mut self, by: Duration) {
        self.offset += by;
    }
}

fuzz_target!(|data: &[u8]| {
    let mut input = Input { data };
    let (c0, c1) = (input.byte(), input.byte());
    let schedule = match c0 & 3 {
        0 => Schedule::default(),
        1 => Schedule::from_secs(&[]).unwrap(),
        2 => Schedule::from_secs(&[0.0, 1.0, 5.0]).unwrap(),
        _ => Schedule::from_secs(&[0.0, 0.5, 30.0, 7200.0]).unwrap(),
    };
    let config = EngineConfig {
        schedule: schedule.clone(),
        max_in_flight_per_endpoint: usize::from(c0 >> 2 & 3),
        max_queue: usize::from(c0 >> 4 & 3) + 1,
        pause_after_failures: u32::from(c0 >> 6),
        probe_interval: Duration::from_secs(1 + 15 * u64::from(c1 & 7)),
        ..EngineConfig::default()
    };
    let mut h = Harness {
        engine: Engine::new(config.clone()),
        schedule,
        max_in_flight: config.max_in_flight_per_endpoint.max(1),
        max_queue: config.max_queue,
        pause_after: config.pause_after_failures,
        probe_interval: config.probe_interval,
        base: Instant::now(),
        // A day in, so that restored times can lie in the past.
        offset: Duration::from_secs(86_400),
        eps: BTreeMap::new(),
        ep_order: Vec::new(),
        msgs: BTreeMap::new(),
        by_webhook_id: BTreeMap::new(),
        out: BTreeMap::new(),
        reported: Vec::new(),
        seen_attempts: BTreeSet::new(),
        seen_ids: BTreeSet::new(),
        next_msg: 0,
        delivered: 0,
        failed: 0,
        disabled_count: 0,
    };
    let remove_at_end = c1 & 8 != 0;

    if c1 & 16 != 0 {
        let n = input.byte() % 4;
        for _ in 0..n {
            let (k, flags) = (input.byte() % 8, input.byte());
            let id = EndpointId::from_u64(u64::from(k));
            let (url, secret) = Harness::url(usize::from(k));
            let disabled = flags & 1 != 0;
            let got = h.engine.restore_endpoint(id, url, secret, disabled);
            match () {
                _ if k == 0 => assert_eq!(got, Err(RestoreError::ZeroEndpointId)),
                _ if h.eps.contains_key(&id) => {
                    assert_eq!(got, Err(RestoreError::DuplicateEndpoint(id)))
                }
                _ => {
                    assert_eq!(got, Ok(()));
                    h.seen_ids.insert(id.as_u64());
                    h.eps.insert(
                        id,
                        Ep {
                            live: true,
                            disabled,
                            ..Ep::default()
                        },
                    );
                    h.ep_order.push(id);
                }
            }
        }
        let next = u64::from(input.byte() % 16);
        h.engine.set_next_endpoint_id(next);
        let max_restored = h.seen_ids.iter().max().copied().unwrap_or(0);
        assert!(h.engine.next_endpoint_id() >= next.max(max_restored + 1));
        // Ids below the counter are taken: none may be issued again.
        h.seen_ids.extend(1..h.engine.next_endpoint_id());
        let m = input.byte() % 6;
        for _ in 0..m {
            let (e, attempts, due, enq) = (input.byte(), input.byte(), input.byte(), input.byte());
            let endpoint = match h.ep_order.get(usize::from(e) % (h.ep_order.len() + 1)) {
                Some(id) => *id,
                None => EndpointId::from_u64(1000),
            };
            let attempts = u32::from(attempts % 10);
            let now = h.now();
            // Due up to 2 min ahead or behind; enqueued up to 4 min before now.
            let next_attempt = if due & 1 == 0 {
                now + Duration::from_secs(u64::from(due / 2))
            } else {
                now - Duration::from_secs(u64::from(due / 2))
            };
            let enqueued = now - Duration::from_secs(u64::from(enq));
            let (body, n) = h.new_body();
            let webhook_id: Rc<str> = format!("msg_{n}_r").into();
            let msg = RestoredMessage {
                endpoint,
                webhook_id: webhook_id.clone(),
                body: body.clone(),
                attempts,
                next_attempt,
                enqueued,
            };
            let id = h.engine.restore_message(msg, now);
            let exhausted = attempts >= h.schedule.max_attempts();
            let due = (next_attempt > now).then_some(next_attempt);
            h.queued(
                id, endpoint, webhook_id, body, enqueued, attempts, due, exhausted,
            );
        }
        h.drain();
    }

    let mut ops = 0;
    while !input.is_empty() && ops < MAX_OPS {
        ops += 1;
        let (op, param) = (input.byte(), input.byte());
        match (op & 0x7f) % 12 {
            0 => h.add_endpoint(),
            1 => {
                if h.msgs.len() < MAX_MESSAGES {
                    let endpoint = match h.ep_order.get(usize::from(param) % (h.ep_order.len() + 1))
                    {
                        Some(id) => *id,
                        None => EndpointId::from_u64(u64::from(param) + 10_000),
                    };
                    let (body, n) = h.new_body();
                    h.enqueue(endpoint, body, n, 0);
                }
            }
            2 => {
                if h.msgs.len() < MAX_MESSAGES {
                    let (body, n) = h.new_body();
                    let live: Vec<EndpointId> = h
                        .eps
                        .iter()
                        .filter(|(_, e)| e.live)
                        .map(|(id, _)| *id)
                        .collect();
                    for (k, endpoint) in live.into_iter().enumerate() {
                        h.enqueue(endpoint, body.clone(), n, k);
                    }
                }
            }
            3 => {
                let (r, jitter) = result(&mut input);
                let out: Vec<AttemptId> = h.out.keys().copied().collect();
                if !out.is_empty() {
                    let attempt = out[usize::from(param) % out.len()];
                    h.report(attempt, r, jitter);
                }
            }
            4 => {
                let (r, jitter) = result(&mut input);
                let out: Vec<AttemptId> = h.out.keys().copied().collect();
                for attempt in out {
                    h.report(attempt, r.clone(), jitter);
                }
            }
            5 => {
                if !h.ep_order.is_empty() {
                    let endpoint = h.ep_order[usize::from(param) % h.ep_order.len()];
                    h.remove(endpoint);
                }
            }
            6 => h.advance(Duration::from_secs(u64::from(param))),
            7 => h.advance(Duration::from_secs(60 * u64::from(param))),
            8 => {
                if let Some(d) = h.engine.next_deadline() {
                    let to = if param & 1 != 0 {
                        d - Duration::from_nanos(1)
                    } else {
                        d
                    };
                    if to > h.now() {
                        h.offset = to - h.base;
                    }
                }
            }
            9 => {
                if !h.reported.is_empty() {
                    let (attempt, r) = h.reported[usize::from(param) % h.reported.len()].clone();
                    let before = h.engine.stats();
                    h.engine.attempt_finished(attempt, r, h.now(), 0.5);
                    assert_eq!(h.engine.stats(), before, "a repeated result counted");
                }
            }
            10 => h.advance(Duration::from_millis(u64::from(param))),
            _ => {}
        }
        if op & 0x80 == 0 || (op & 0x7f) % 12 == 11 {
            h.drain();
        }
    }
    h.drain();

    if remove_at_end {
        let live: Vec<EndpointId> = h
            .eps
            .iter()
            .filter(|(_, e)| e.live)
            .map(|(id, _)| *id)
            .collect();
        for endpoint in live {
            h.remove(endpoint);
        }
        h.drain();
        let (r, jitter) = result(&mut input);
        let out: Vec<AttemptId> = h.out.keys().copied().collect();
        for attempt in out {
            h.report(attempt, r.clone(), jitter);
        }
        h.drain();
    } else {
        let mut rounds = 0;
        loop {
            rounds += 1;
            assert!(rounds < END_ROUNDS, "the engine does not become idle");
            let out: Vec<AttemptId> = h.out.keys().copied().collect();
            for attempt in out.iter().copied() {
                h.report(attempt, status(200), 0.5);
            }
            if out.is_empty() {
                match h.engine.next_deadline() {
                    Some(d) => h.offset = d - h.base,
                    None => break,
                }
            }
            h.drain();
        }
    }
    // Every message has had its one outcome; nothing is left.
    assert!(h.out.is_empty());
    for (id, m) in &h.msgs {
        assert!(m.finished_seen, "{id} never finished: {m:?}");
    }
    let s = h.engine.stats();
    assert_eq!((s.queued, s.retrying, s.in_flight), (0, 0, 0));
    assert_eq!(s.delivered + s.failed, h.msgs.len() as u64);
    assert_eq!(h.engine.next_deadline(), None);
});
