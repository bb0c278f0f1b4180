//! The Redis backplane on the loop: several servers share topics through one Redis.
//!
//! The data model (keys, the publish script, the pub/sub payload, stream entries) is
//! [`crate::proto::backplane`], each topic's sync is a pure
//! [`TopicSync`](crate::proto::backplane::sync::TopicSync), and the sockets are
//! [`super::redis`]'s two links. This module joins them to the rest of the core:
//!
//! * **Publishing** sends the script (`EVALSHA`; `EVAL` once after `NOSCRIPT`) on the
//!   command link; its reply is the id, reported to the application through
//!   [`Note::Published`](super::Note::Published). A link that is not ready refuses at once
//!   ([`PublishError::BackplaneDown`](crate::PublishError::BackplaneDown), 503): never a hang, never an id for an event Redis
//!   did not store. The publishing server does not deliver from the reply: the event comes
//!   back over pub/sub like on every other server, so there is one order, the stream's.
//! * **Following a topic**: the first reader of a topic (a WebSocket, SSE or long-poll
//!   subscriber, an `/events` read) makes the server `SUBSCRIBE` its channel and read its
//!   stream; readers wait until the topic is live here (a resume is then served from the
//!   local history, which is a cache of the stream), or get 503 (WebSocket: close 1011)
//!   while the subscriber link is down. A topic nobody reads for [`LINGER`] is unsubscribed
//!   (a long-poll client coming back in between keeps it). Delivered events enter the
//!   local history with Redis's id and go out with the usual encode-once fan-out.
//!   Stream reads go a page ([`READ_PAGE`] entries) at a time, so a reply stays bounded
//!   whatever the history limit.
//! * **Webhooks** ([`hooks`]): registrations in Redis, announced to every server; each
//!   outbox message is attempted by one server at a time and acknowledged at its outcome.
//! * **Faults**: a lost subscriber link puts every topic back to Subscribing (the link
//!   re-subscribes when it is back, then each topic reads its stream after its cursor, so
//!   live subscribers miss nothing Redis kept); waiting readers get 503 (also while the
//!   command link is down); connected subscribers stay connected.
//!
//! Budgets: commands waiting for a reply are bounded by the command link's own limits
//! (4,096 in flight, 4 MiB unwritten: past them a publish is refused with 503); a topic
//! buffers at most [`BUFFER_BYTES`](crate::proto::backplane::sync::BUFFER_BYTES) of live
//! messages while its stream is read (past it, it reads again).

mod hooks;
mod publish;
mod readers;

pub(crate) use readers::Waiter;

use std::collections::HashMap;
use std::time::{Duration, Instant};

use log::{debug, trace, warn};

use super::redis::{RedisEvent, Role, Tag};
use super::{Core, TimerEv};
use crate::proto::backplane::sync::{Step, TopicSync};
use crate::proto::backplane::{self as bp, Announced, Keys};
use crate::proto::resp::{Command, Push, Value};
use crate::proto::timer::TimerKey;
use crate::proto::topic::TopicEvent;

/// Stream entries per read: a reply holds at most this many events (each within the
/// largest publish), whatever the history limit.
const READ_PAGE: usize = 64;
/// How long a topic nobody reads stays subscribed.
pub(crate) const LINGER: Duration = Duration::from_secs(2);
/// How often idle topics are looked for and failed reads retried.
const SWEEP_EVERY: Duration = Duration::from_secs(1);

/// A topic this server follows.
struct Followed {
    sync: TopicSync,
    waiters: Vec<Waiter>,
    /// The first id to create the local topic with (see [`Step::Create`]).
    first_id: u64,
    /// The stream's length when this server started reading it from the start.
    stream_len: Option<u64>,
    /// Since when nobody reads it.
    idle_since: Option<Instant>,
}

/// A command waiting for its reply.
enum Pending {
    Publish(publish::PendingPublish),
    Read(String),
    /// `XLEN` before a read from the stream's start.
    Len(String),
    /// A webhook command (see [`hooks`]).
    Hook(hooks::HookOp),
}

/// The backplane's state on the loop.
pub(crate) struct Backplane {
    keys: Keys,
    /// The streams' `MAXLEN`: the history limit.
    max_events: usize,
    /// Entries per stream read (a reply holds at most this many events).
    page: usize,
    topics: HashMap<String, Followed>,
    pending: HashMap<Tag, Pending>,
    next_tag: Tag,
    sweep: Option<TimerKey>,
    /// Commands sent, by kind: publishes, stream reads (with their `XLEN`).
    pub(crate) sent: (u64, u64),
    /// Both links have been up at least once: until then (the server just started) a
    /// reader waits for them instead of being refused.
    ever_up: bool,
    hooks: hooks::BpHooks,
}

impl Backplane {
    pub(crate) fn new(prefix: &str, max_events: usize) -> Backplane {
        Backplane {
            keys: Keys::new(prefix),
            max_events: max_events.max(1),
            page: max_events.clamp(1, READ_PAGE),
            topics: HashMap::new(),
            pending: HashMap::new(),
            next_tag: 1,
            sweep: None,
            sent: (0, 0),
            ever_up: false,
            hooks: hooks::BpHooks::new(prefix),
        }
    }

    /// Whether this server follows `topic` (its local history is a live cache).
    pub(crate) fn follows(&self, topic: &str) -> bool {
        self.topics.contains_key(topic)
    }

    fn tag(&mut self) -> Tag {
        self.next_tag += 1;
        self.next_tag
    }
}

fn unix_ms() -> u64 {
    super::store::unix_micros() / 1000
}

impl Core {
    /// Both Redis links are up (false without a backplane).
    pub(crate) fn bp_ready(&self) -> bool {
        let up = |r| self.redis_up(r);
        self.bp.is_some() && up(Role::Command) && up(Role::Subscriber)
    }

    /// Publishes and stream reads sent to Redis.
    pub(crate) fn bp_sent(&self) -> (u64, u64) {
        self.bp.as_ref().map_or((0, 0), |b| b.sent)
    }

    /// Server start: the webhook channels, the shared message-id prefix, the sweep.
    pub(crate) fn backplane_start(&mut self) {
        let Some(b) = self.bp.as_ref() else { return };
        let (hooks, wake) = (b.keys.hooks(), b.keys.outbox_wake());
        let prefix = b.hooks.id_prefix().to_owned();
        self.hooks.reg.set_id_prefix(prefix);
        for channel in [hooks, wake] {
            if let Err(e) = self.redis_subscribe(channel.as_bytes()) {
                warn!("backplane: cannot subscribe {channel}: {e}");
            }
        }
        self.arm_sweep();
    }

    fn arm_sweep(&mut self) {
        let at = super::deadline(self.now, SWEEP_EVERY);
        let Some(b) = self.bp.as_mut() else { return };
        if b.sweep.is_none() {
            b.sweep = Some(self.timers.insert(at, TimerEv::BackplaneSweep));
        }
    }

    /// The sweep timer: unsubscribes the topics nobody read for [`LINGER`], retries
    /// failed reads.
    pub(crate) fn backplane_sweep(&mut self, key: TimerKey) {
        let now = self.now;
        let Some(b) = self.bp.as_mut() else { return };
        if b.sweep == Some(key) {
            b.sweep = None;
        }
        let mut gone = Vec::new();
        let mut steps = Vec::new();
        let subs = &self.subs;
        for (topic, f) in &mut b.topics {
            let conns = subs.subscribers(topic).iter();
            let read = !f.waiters.is_empty()
                || conns
                    .into_iter()
                    .any(|e| matches!(e.key, super::SubKey::Conn(_)));
            if read {
                f.idle_since = None;
            } else if now.saturating_duration_since(*f.idle_since.get_or_insert(now)) >= LINGER {
                gone.push(topic.clone());
                continue;
            }
            let mut out = Vec::new();
            f.sync.retry(&mut out);
            if !out.is_empty() {
                steps.push((topic.clone(), out));
            }
        }
        let channels: Vec<String> = gone
            .iter()
            .map(|topic| {
                b.topics.remove(topic);
                debug!("backplane: no reader of {topic:?} left: unsubscribing");
                b.keys.channel(topic)
            })
            .collect();
        for channel in channels {
            self.redis_unsubscribe(channel.as_bytes());
        }
        for (topic, out) in steps {
            self.run_steps(&topic, out);
        }
        self.bp_hooks_sweep();
        self.arm_sweep();
    }

    /// Acts on what the Redis links reported since the last call.
    pub(crate) fn backplane_events(&mut self) {
        if self.bp.is_none() {
            return;
        }
        if !self.bp.as_ref().is_some_and(|b| b.ever_up) && self.bp_ready() {
            if let Some(b) = self.bp.as_mut() {
                b.ever_up = true;
            }
        }
        for ev in self.take_redis_events() {
            match ev {
                RedisEvent::Reply(tag, v) => self.bp_reply(tag, v),
                RedisEvent::Failed(tag) => self.bp_failed(tag),
                RedisEvent::Push(p) => self.bp_push(p),
                RedisEvent::Ready(Role::Command) => {
                    self.bp_hooks_ready();
                    self.bp_retry_reads();
                }
                RedisEvent::Ready(Role::Subscriber) => {}
                RedisEvent::Down(Role::Subscriber, why) => self.bp_subscriber_down(&why),
                RedisEvent::Down(Role::Command, why) => self.bp_command_down(&why),
            }
        }
    }

    fn bp_retry_reads(&mut self) {
        let Some(b) = self.bp.as_mut() else { return };
        let mut steps = Vec::new();
        for (topic, f) in &mut b.topics {
            let mut out = Vec::new();
            f.sync.retry(&mut out);
            if !out.is_empty() {
                steps.push((topic.clone(), out));
            }
        }
        for (topic, out) in steps {
            self.run_steps(&topic, out);
        }
    }

    /// The command link is down: readers waiting for a stream read get 503 (the read is
    /// sent again when the link is back).
    fn bp_command_down(&mut self, why: &str) {
        let Some(b) = self.bp.as_mut() else { return };
        b.ever_up = true;
        let mut refused = Vec::new();
        for f in b.topics.values_mut() {
            refused.append(&mut f.waiters);
        }
        if !refused.is_empty() {
            warn!(
                "backplane: command link down ({why}): {} waiting readers answered 503",
                refused.len()
            );
        }
        for w in refused {
            self.refuse_reader(w);
        }
    }

    fn bp_subscriber_down(&mut self, why: &str) {
        let Some(b) = self.bp.as_mut() else { return };
        b.ever_up = true; // a first connect that failed: readers are refused from now on
        let mut refused = Vec::new();
        for f in b.topics.values_mut() {
            f.sync.on_link_down();
            refused.append(&mut f.waiters);
        }
        if !refused.is_empty() {
            warn!(
                "backplane: subscriber link down ({why}): {} waiting readers answered 503",
                refused.len()
            );
        }
        for w in refused {
            self.refuse_reader(w);
        }
    }

    fn bp_reply(&mut self, tag: Tag, v: Value) {
        let Some(pending) = self.bp.as_mut().and_then(|b| b.pending.remove(&tag)) else {
            return;
        };
        match pending {
            Pending::Publish(p) => self.bp_published(tag, p, &v),
            Pending::Hook(op) => self.bp_hooks_reply(tag, op, Some(v)),
            Pending::Len(topic) => {
                if let Some(f) = self.bp.as_mut().and_then(|b| b.topics.get_mut(&topic)) {
                    f.stream_len = v.as_integer().and_then(|n| u64::try_from(n).ok());
                }
            }
            Pending::Read(topic) => {
                let read = bp::parse_range(&v);
                let Some(f) = self.bp.as_mut().and_then(|b| b.topics.get_mut(&topic)) else {
                    return;
                };
                let mut out = Vec::new();
                match read {
                    Ok(events) => {
                        trace!(
                            "backplane: read {} events of {topic:?} ({:?}..{:?}, cursor {:?})",
                            events.len(),
                            events.first().map(|e| e.id),
                            events.last().map(|e| e.id),
                            f.sync.last()
                        );
                        f.sync.on_read(events, &mut out);
                    }
                    Err(e) => {
                        warn!("backplane: reading the stream of {topic:?} failed: {e}");
                        f.sync.on_read_failed();
                    }
                }
                self.run_steps(&topic, out);
            }
        }
    }

    fn bp_failed(&mut self, tag: Tag) {
        let Some(pending) = self.bp.as_mut().and_then(|b| b.pending.remove(&tag)) else {
            return;
        };
        match pending {
            Pending::Publish(p) => self.publish_failed(p.ticket, &p.topic),
            Pending::Len(_) => {}
            Pending::Read(topic) => {
                if let Some(f) = self.bp.as_mut().and_then(|b| b.topics.get_mut(&topic)) {
                    f.sync.on_read_failed();
                }
            }
            Pending::Hook(op) => self.bp_hooks_reply(tag, op, None),
        }
    }

    fn bp_push(&mut self, p: Push) {
        let Some(b) = self.bp.as_mut() else { return };
        let (channel, payload) = match &p {
            Push::Subscribed { channel, .. } => (channel, None),
            Push::Message { channel, payload } => (channel, Some(payload)),
            _ => return,
        };
        let Some(topic) = b.keys.topic_of_channel(channel).map(str::to_owned) else {
            let wake = b.keys.outbox_wake();
            match payload {
                Some(payload) => {
                    let (channel, payload) = (channel.clone(), payload.clone());
                    self.bp_hooks_push(&channel, &payload);
                }
                // Subscribed again after a reconnect: wake-ups may have been missed.
                None if channel == wake.as_bytes() => self.bp_hooks_read(),
                None => {}
            }
            return;
        };
        let Some(f) = b.topics.get_mut(&topic) else {
            return;
        };
        let mut out = Vec::new();
        match payload {
            None => f.sync.on_subscribed(&mut out),
            Some(payload) => match Announced::decode(payload) {
                Ok(ev) => f.sync.on_message(ev, &mut out),
                Err(e) => warn!("backplane: dropped a message on {topic:?}: {e}"),
            },
        }
        self.run_steps(&topic, out);
    }

    /// Carries out a topic's steps.
    fn run_steps(&mut self, topic: &str, steps: Vec<Step>) {
        for step in steps {
            match step {
                Step::Read { after, count } => self.bp_read(topic, after, count),
                Step::Create { oldest } => {
                    let Some(b) = self.bp.as_mut() else { return };
                    let max = b.max_events as u64;
                    if let Some(f) = b.topics.get_mut(topic) {
                        // A stream shorter than its cap was never trimmed: the oldest
                        // entry is the topic's first event.
                        let whole = f.stream_len.is_some_and(|n| n < max);
                        f.first_id = if whole { oldest } else { 1 };
                    }
                }
                Step::Deliver(ev) => self.bp_deliver(topic, ev),
                Step::Live => {
                    let waiters = match self.bp.as_mut().and_then(|b| b.topics.get_mut(topic)) {
                        Some(f) => std::mem::take(&mut f.waiters),
                        None => Vec::new(),
                    };
                    debug!(
                        "backplane: {topic:?} in sync ({} readers served)",
                        waiters.len()
                    );
                    for w in waiters {
                        self.serve_reader(w);
                    }
                }
            }
        }
    }

    fn bp_read(&mut self, topic: &str, after: Option<u64>, count: usize) {
        let Some(b) = self.bp.as_mut() else { return };
        let (len_tag, tag) = (b.tag(), b.tag());
        trace!("backplane: reading {topic:?} after {after:?}");
        b.sent.1 += 1;
        let cmds = match after {
            Some(after) => (None, bp::range_command(&b.keys, topic, after, count)),
            // From the start: its length first, to tell whether it was ever trimmed.
            None => (
                Some(Command::new("XLEN").arg(b.keys.stream(topic))),
                bp::start_command(&b.keys, topic, count),
            ),
        };
        let sent = match cmds {
            (None, read) => self.redis_send(tag, &read),
            (Some(len), read) => self.redis_send(len_tag, &len).and_then(|()| {
                if let Some(b) = self.bp.as_mut() {
                    b.pending.insert(len_tag, Pending::Len(topic.into()));
                }
                self.redis_send(tag, &read)
            }),
        };
        match sent {
            Ok(()) => {
                if let Some(b) = self.bp.as_mut() {
                    b.pending.insert(tag, Pending::Read(topic.into()));
                }
            }
            Err(e) => {
                trace!("backplane: reading {topic:?} deferred: {e}");
                if let Some(f) = self.bp.as_mut().and_then(|b| b.topics.get_mut(topic)) {
                    f.sync.on_read_failed();
                }
            }
        }
    }

    /// An event that passed the topic's cursor: into the local history, to the local
    /// subscribers.
    fn bp_deliver(&mut self, topic: &str, a: Announced) {
        let first_id = self
            .bp
            .as_ref()
            .and_then(|b| b.topics.get(topic))
            .map_or(1, |f| f.first_id);
        let data = match String::from_utf8(a.data) {
            Ok(s) => s,
            Err(e) => {
                warn!(
                    "backplane: event {} of {topic:?} is not UTF-8: kept lossily",
                    a.id
                );
                String::from_utf8_lossy(e.as_bytes()).into_owned()
            }
        };
        let json = a.json && json_or_warn(topic, a.id, &data);
        let ev = TopicEvent {
            id: a.id,
            event: a.event.map(Into::into),
            data: data.into(),
            json,
            published_ms: a.published_ms,
        };
        let now_us = super::store::unix_micros();
        match self.topics.append(topic, ev, first_id, now_us) {
            Ok(ev) => {
                self.arm_expiry();
                self.fan_out(topic, ev);
            }
            Err(e) => warn!("backplane: event {} of {topic:?} not kept: {e}", a.id),
        }
    }
}

/// Whether an event that Redis says is JSON really is one: data from Redis is checked
/// again (another program may have written the keys), and one that is not is delivered as
/// text, with a warning, never as a broken value spliced into JSON bodies.
pub(super) fn json_or_warn(topic: &str, id: u64, data: &str) -> bool {
    match crate::proto::json::check(data.as_bytes()) {
        Ok(()) => true,
        Err(e) => {
            warn!(
                "backplane: event {id} of {topic:?} is marked JSON but is not ({e}): sent as text"
            );
            false
        }
    }
}
