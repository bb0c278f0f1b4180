//! Named topics, each with a bounded history of published events.
//!
//! A publisher appends a [`TopicEvent`] to a topic; subscribers on every transport (WebSocket,
//! Server-Sent Events, long-poll, webhooks) read it from there. Each topic keeps its most
//! recent events in a ring buffer bounded both by count and by bytes ([`HistoryLimits`]),
//! so a client that reconnects with a cursor (`since`, or SSE's `Last-Event-ID`) can catch
//! up on what it missed.
//!
//! # Ids
//!
//! Event ids are per topic and never go backwards. A topic log with no known past starts at
//! the current Unix time in **microseconds** (an input: [`Topics::publish`] takes `now_us`),
//! and every publish adds 1; so a server restarted without its history starts a new range
//! above every id it handed out before, and resuming clients see a gap instead of being
//! silently skipped. Ids stay below 2^53 (JavaScript reads them exactly). The kept history
//! of a topic is a run of consecutive ids `oldest..=last`, except after a restart that
//! may have lost the newest events: the durable log then starts a new id range at the
//! clock (restored with a `last_id` above the kept events), and the history holds the old
//! run followed by the new range.
//!
//! # Eviction
//!
//! After each publish the oldest events are dropped while the topic holds more than
//! `max_events` events or more than `max_bytes` bytes ([`TopicEvent::bytes`]: data plus event
//! name), but the newest event is always kept, even when it alone exceeds the byte budget,
//! so that a publish is never lost before anyone could read it.
//!
//! On top of the per-topic limits, the table keeps all its topics within one total budget,
//! [`HistoryLimits::max_total_bytes`] (counted the same way, [`Topics::total_bytes`]). After
//! each publish and each restore, while the total is over it, the **largest** topic (by
//! bytes; of two the same size, the greater name) gives up its **oldest** event, even
//! when that is its newest: the budget always holds, however many topics a client
//! creates, so new topics are never refused for it. Each such eviction costs O(log
//! topics) (an ordered index of the topics keeping events, by size). A topic trimmed this
//! way reads as any trimmed topic: a read from 0 reports a gap, and so does a cursor
//! before its oldest kept event; a topic left with no event reports a gap to every cursor
//! but its last id (never a silent empty answer), and goes on from its last id.
//!
//! # Reading after a cursor, and gaps
//!
//! [`Topics::read_after`]`(topic, since, max)` answers "what came after id `since`?" with a
//! [`Page`] of at most `max` events with ids greater than `since`, in id order:
//!
//! * `gap` is `true` when the client may have missed events. For a cursor `since > 0` that
//!   is exactly when the first event returned is not `since + 1`; for `since = 0` only when
//!   the history was trimmed (the oldest kept event is not the topic's first). In detail:
//!   - events with ids greater than `since` are not kept (`since < oldest - 1`: evicted, or
//!     from before a restart that started a new id range): the page starts at the oldest
//!     kept event;
//!   - or `since` is **ahead** of the topic's last id. Ids only grow, so this cursor comes
//!     from before a restart of the server, which lost its history. The page starts at the
//!     oldest kept event; the caller must never wait for an id that will not come. For an
//!     empty or unknown topic an ahead cursor (any `since > 0`) gives a gap, no events
//!     and `next = 0`.
//! * `next` is the id of the last event returned; when none is returned it is the
//!   effective cursor: `since` itself, or for an ahead cursor `oldest - 1` (0 when the
//!   topic is empty). The client sends `next` as its next `since`.
//! * `oldest` is the oldest kept id (0 when none is kept), for the transports' gap notice.
//! * `more` is `true` when kept events follow the returned ones (the page was cut at
//!   `max`, or at a jump to a new id range: a page never spans one, so reading on from
//!   `next` reports the jump as a gap).
//!
//! # Restoring a topic after a restart
//!
//! [`Topics::restore`] (or [`Topics::restore_at`], which also says when, for expiry)
//! installs a topic's recovered history (from the durable log, see
//! [`crate::proto::store`]) before anything is published to it. The next publish then gets
//! `last_id + 1`, not the clock: the log continues, and cursors from before the restart
//! stay valid. The events are checked like publishes (names) and like a kept history (ids
//! ascending, at most `last_id`), and the limits are applied as after a publish, so a
//! restart with smaller limits keeps the newest events that fit.
//!
//! The gap rule from `since = 0` needs `first_id`, the first id of the log the topic
//! continues: a read from 0 reports a gap when the oldest kept id is above it. The caller
//! passes the earliest id it knows the log to have held. When events before the oldest
//! recovered one were lost (evicted before the crash, or dropped by compaction) and the
//! caller cannot tell, it must pass a lower value than the oldest recovered id (1 is
//! always safe): a spurious gap notice costs a client a refetch, a missed one loses events
//! silently.
//!
//! # Expiry
//!
//! A topic nobody uses is dropped, so that a burst of junk topics heals itself: the topic
//! limit ([`HistoryLimits::max_topics`]) counts only the topics that exist.
//! [`Topics::expire`]`(now_us, ttl, live)` drops every topic idle for `ttl` or longer,
//! that is whose last activity is at or before `now_us - ttl`, unless `live(name)` says
//! it is still in use (the driver answers from its subscription table and its webhook
//! registrations). A topic's last activity is its last publish, or its restore (the time
//! given to [`Topics::restore_at`]), or the last `expire` that found it live: a topic in
//! use is not asked about again for `ttl`, and once its last subscriber leaves it still
//! lives `ttl` longer, so a client that reconnects at once finds its history. Topics are
//! kept in the order of their last activity, so `expire` costs O(log topics) per topic it
//! drops or asks about, whatever the number of topics; [`Topics::next_expiry`] says when
//! the next one is due, for the driver's one timer. A zero `ttl` never expires anything.
//!
//! A topic published to after it was dropped starts a new log at the clock
//! ([`first_id`]`(now_us)`), as after a restart without history: a client resuming with a
//! cursor from the old log gets a gap (its cursor is below the new first id, or, had the
//! clock gone back, ahead of the new last id), and so does one resuming while the topic
//! does not exist (an unknown topic reads as empty, a gap for any cursor above 0). The
//! new first id is above every old id as long as the clock did not go back by more than
//! the time the topic was idle (ids are the clock at a log's start and grow by one per
//! publish, so they run ahead of the clock only at more than one publish per
//! microsecond).
//!
//! Events are shared as [`Rc<TopicEvent>`]: the driver is single-threaded and hands the same
//! event to the history and to many subscriber queues without copying it.

mod batch;
mod budget;
mod errors;
mod expiry;
mod restore;

pub use batch::batch_ids;
pub use errors::{PublishError, RestoreError};

use std::collections::{BTreeSet, HashMap, VecDeque};
use std::rc::Rc;
use std::time::Duration;

/// Bounds on the memory the topic log may hold.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct HistoryLimits {
    /// Events kept per topic (at least 1 is always kept). Default 1000.
    pub max_events: usize,
    /// Bytes of data plus event names kept per topic (the newest event is kept even when
    /// it alone is larger). Default 1 MiB.
    pub max_bytes: usize,
    /// Number of distinct topics; publishing to a new topic beyond it fails with
    /// [`PublishError::TooManyTopics`]. Default 10 000.
    pub max_topics: usize,
    /// Bytes (as [`TopicEvent::bytes`] counts them) kept across all topics; past it the
    /// oldest events of the largest topics are dropped (see "Eviction" in the module
    /// docs), down to no event at all. Default 256 MiB.
    pub max_total_bytes: usize,
}

impl Default for HistoryLimits {
    fn default() -> Self {
        HistoryLimits {
            max_events: 1000,
            max_bytes: 1024 * 1024,
            max_topics: 10_000,
            max_total_bytes: 256 * 1024 * 1024,
        }
    }
}

/// One published event.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TopicEvent {
    /// Per-topic id, starting at 1.
    pub id: u64,
    /// TopicEvent name (SSE `event:` field); `None` for the default (`message`).
    pub event: Option<Box<str>>,
    /// The payload, any UTF-8 text (with `json`, one JSON value, as published).
    pub data: Box<str>,
    /// `data` is a JSON text (RFC 8259, checked by [`crate::proto::json::check()`] when
    /// published): the JSON encoders (WebSocket, long-poll, `/events`, webhooks) write
    /// it as the value itself, not as a string. SSE writes data as it is either way.
    pub json: bool,
    /// When it was published, Unix milliseconds (the webhook body's `timestamp`; the
    /// durable log records it too). Not counted by [`TopicEvent::bytes`].
    pub published_ms: u64,
}

impl TopicEvent {
    /// The bytes this event counts against [`HistoryLimits::max_bytes`]: data plus name.
    pub fn bytes(&self) -> usize {
        self.data.len() + self.event.as_deref().map_or(0, str::len)
    }
}

/// Whether `name` is a valid topic name: 1-128 bytes of `[A-Za-z0-9._-]`, and neither `.`
/// nor `..` (names appear as URL path segments, matched without percent-decoding).
pub fn valid_topic(name: &str) -> bool {
    (1..=128).contains(&name.len())
        && name != "."
        && name != ".."
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'))
}

/// Whether `name` is a valid event name: 1-64 bytes of visible ASCII (0x21-0x7E), so every
/// transport can carry it (an SSE `event:` line cannot hold a line break).
pub fn valid_event_name(name: &str) -> bool {
    (1..=64).contains(&name.len()) && name.bytes().all(|b| (0x21..=0x7E).contains(&b))
}

/// The largest first id: ids stay below 2^53 (exact in JavaScript) for 2^32 publishes.
pub const MAX_FIRST_ID: u64 = (1 << 53) - (1 << 32);

/// The largest id exact in JavaScript (`Number.MAX_SAFE_INTEGER`, 2^53 - 1):
/// [`Topics::restore`] refuses a `last_id` at or above it, so the next publish stays at or
/// below it.
pub const MAX_ID: u64 = (1 << 53) - 1;

/// The first id of a topic log with no known past: the clock in microseconds, at least 1,
/// at most [`MAX_FIRST_ID`].
pub fn first_id(now_us: u64) -> u64 {
    now_us.clamp(1, MAX_FIRST_ID)
}

/// `d` in whole microseconds, saturating.
fn micros(d: Duration) -> u64 {
    u64::try_from(d.as_micros()).unwrap_or(u64::MAX)
}

/// One topic's state.
#[derive(Default)]
struct Topic {
    /// Kept events, oldest first; ids ascending (consecutive but for new ranges).
    history: VecDeque<Rc<TopicEvent>>,
    /// Sum of [`TopicEvent::bytes`] over `history`.
    bytes: usize,
    /// Id of the last event published (`first_id - 1` before the first).
    last_id: u64,
    /// Id of the first event this log ever held (for a restored topic: as the caller
    /// knows it, see [`Topics::restore`]): older ones, if any, are another range or lost.
    first_id: u64,
    /// Unix microseconds of its last activity: publish, restore, or found live by
    /// [`Topics::expire`]. Never goes back.
    active_us: u64,
}

impl Topic {
    fn oldest_id(&self) -> Option<u64> {
        self.history.front().map(|e| e.id)
    }

    /// Appends `ev` to the history (not touching `last_id`) and evicts by the rule of the
    /// module docs: the oldest go while over either limit, the newest always stays.
    fn push(&mut self, ev: Rc<TopicEvent>, limits: HistoryLimits) {
        self.bytes += ev.bytes();
        self.history.push_back(ev);
        while self.history.len() > 1
            && (self.history.len() > limits.max_events || self.bytes > limits.max_bytes)
        {
            if let Some(old) = self.history.pop_front() {
                self.bytes -= old.bytes();
            }
        }
    }
}

/// A page of events answering [`Topics::read_after`]; see the module docs for the rules.
#[derive(Debug, PartialEq, Eq)]
pub struct Page {
    /// At most `max` events, ids ascending and consecutive (a page stops at a jump).
    pub events: Vec<Rc<TopicEvent>>,
    /// Events after the cursor were lost (evicted, or the cursor is ahead of the topic).
    pub gap: bool,
    /// The cursor to read after next time: the last returned id, or the effective cursor.
    pub next: u64,
    /// Oldest kept id, 0 if the topic keeps nothing.
    pub oldest: u64,
    /// More kept events follow the returned ones.
    pub more: bool,
}

/// The table of topics and their histories.
pub struct Topics {
    limits: HistoryLimits,
    topics: HashMap<Rc<str>, Topic>,
    /// Sum of `Topic::bytes` over every topic.
    total_bytes: usize,
    /// The topics that keep events (those that can give one up to the total
    /// budget), by `(bytes, name)`: the largest is the last.
    by_size: BTreeSet<(usize, Rc<str>)>,
    /// Every topic by `(active_us, name)`: the longest idle is the first.
    by_activity: BTreeSet<(u64, Rc<str>)>,
}

impl Topics {
    /// An empty table with the given limits.
    pub fn new(limits: HistoryLimits) -> Self {
        Topics {
            limits,
            topics: HashMap::new(),
            total_bytes: 0,
            by_size: BTreeSet::new(),
            by_activity: BTreeSet::new(),
        }
    }

    /// The limits this table was made with.
    pub fn limits(&self) -> HistoryLimits {
        self.limits
    }

    /// The id [`Topics::publish`] would give an event of `topic` named `event` at `now_us`,
    /// after the same checks, without publishing it: the durable log writes the event
    /// under this id before it is published. `new_elsewhere` counts new topics held
    /// outside the table (written, not yet published), for the topic limit.
    pub fn check_publish(
        &self,
        topic: &str,
        event: Option<&str>,
        now_us: u64,
        new_elsewhere: usize,
    ) -> Result<u64, PublishError> {
        if !valid_topic(topic) {
            return Err(PublishError::BadTopic);
        }
        if event.is_some_and(|name| !valid_event_name(name)) {
            return Err(PublishError::BadEventName);
        }
        match self.topics.get(topic) {
            Some(t) => Ok(t.last_id + 1),
            None if self.topics.len() + new_elsewhere >= self.limits.max_topics => {
                Err(PublishError::TooManyTopics)
            }
            None => Ok(first_id(now_us)),
        }
    }

    /// Whether `topic` exists (was published to or restored).
    pub fn contains(&self, topic: &str) -> bool {
        self.topics.contains_key(topic)
    }

    /// Appends an event to `topic` (creating the topic) and returns it with its new id.
    ///
    /// `event` is the event name; pass `None` for the default (an empty `?event=` is no
    /// name: map it to `None` before calling, `Some("")` is refused). `now_us` is the
    /// current Unix time in microseconds: a new topic's first id (see the module docs).
    /// Everything is validated before anything changes. The event is a text event: see
    /// [`Topics::publish_as`] for a JSON one.
    pub fn publish(
        &mut self,
        topic: &str,
        event: Option<&str>,
        data: &str,
        now_us: u64,
    ) -> Result<Rc<TopicEvent>, PublishError> {
        self.publish_as(topic, event, data, false, now_us)
    }

    /// [`Topics::publish`] of an event whose [`TopicEvent::json`] flag is `json`. The
    /// table does not check the JSON: the caller did ([`crate::proto::json::check()`]).
    pub fn publish_as(
        &mut self,
        topic: &str,
        event: Option<&str>,
        data: &str,
        json: bool,
        now_us: u64,
    ) -> Result<Rc<TopicEvent>, PublishError> {
        if !valid_topic(topic) {
            return Err(PublishError::BadTopic);
        }
        if let Some(name) = event {
            if !valid_event_name(name) {
                return Err(PublishError::BadEventName);
            }
        }
        let name: Rc<str> = match self.topics.get_key_value(topic) {
            Some((name, _)) => Rc::clone(name),
            None => {
                if self.topics.len() >= self.limits.max_topics {
                    return Err(PublishError::TooManyTopics);
                }
                let first = first_id(now_us);
                let fresh = Topic {
                    first_id: first,
                    last_id: first - 1,
                    active_us: now_us,
                    ..Topic::default()
                };
                let name: Rc<str> = topic.into();
                self.by_activity.insert((now_us, Rc::clone(&name)));
                self.topics.insert(Rc::clone(&name), fresh);
                name
            }
        };
        self.unindex(&name);
        self.touch(&name, now_us);
        let Some(t) = self.topics.get_mut(topic) else {
            return Err(PublishError::BadTopic); // unreachable: inserted just above
        };
        t.last_id += 1;
        let ev = Rc::new(TopicEvent {
            id: t.last_id,
            event: event.map(Into::into),
            data: data.into(),
            json,
            published_ms: now_us / 1000,
        });
        t.push(Rc::clone(&ev), self.limits);
        log::trace!(
            "topic {topic}: published id {} ({} bytes), keeping {} events / {} bytes",
            ev.id,
            ev.bytes(),
            t.history.len(),
            t.bytes
        );
        self.index(name);
        self.enforce_total();
        Ok(ev)
    }

    /// At most `max` kept events of `topic` with ids greater than `since`, with the gap
    /// and cursor rules of the module docs. An unknown topic reads as an empty one.
    pub fn read_after(&self, topic: &str, since: u64, max: usize) -> Page {
        let Some(t) = self.topics.get(topic) else {
            return Page {
                events: Vec::new(),
                gap: since > 0,
                next: 0,
                oldest: 0,
                more: false,
            };
        };
        let (Some(oldest), last) = (t.oldest_id(), t.last_id) else {
            // Empty: nothing published yet, or the total budget took even the newest
            // event. Then every cursor but the last id missed something: a gap, never a
            // silent empty answer.
            let published = t.last_id >= t.first_id;
            let gap = if since == 0 {
                published
            } else {
                since != t.last_id
            };
            let next = if since > t.last_id {
                0
            } else {
                t.last_id.max(since)
            };
            return Page {
                events: Vec::new(),
                gap,
                next: if gap { next } else { since },
                oldest: 0,
                more: false,
            };
        };
        let start = if since > last {
            0 // ahead: the server lost its history
        } else {
            t.history.partition_point(|e| e.id <= since)
        };
        let mut events: Vec<Rc<TopicEvent>> = Vec::new();
        for ev in t.history.range(start..).take(max) {
            if events.last().is_some_and(|prev| ev.id != prev.id + 1) {
                break; // a jump to a new id range: the next page reports it
            }
            events.push(Rc::clone(ev));
        }
        let gap = if since > last {
            true
        } else if since == 0 {
            oldest > t.first_id // from the start: lost only if trimmed
        } else {
            events.first().is_some_and(|e| e.id != since + 1)
        };
        let more = start + events.len() < t.history.len();
        let from = if since > last { oldest - 1 } else { since };
        let next = events.last().map_or(from, |e| e.id);
        Page {
            events,
            gap,
            next,
            oldest,
            more,
        }
    }

    /// The id of the last event published to `topic` (0 for an unknown topic).
    pub fn last_id(&self, topic: &str) -> u64 {
        self.topics.get(topic).map_or(0, |t| t.last_id)
    }

    /// The oldest kept id of `topic`, `None` when it keeps nothing.
    pub fn oldest_id(&self, topic: &str) -> Option<u64> {
        self.topics.get(topic).and_then(Topic::oldest_id)
    }

    /// The number of topics.
    pub fn len(&self) -> usize {
        self.topics.len()
    }

    /// Whether no topic exists yet.
    pub fn is_empty(&self) -> bool {
        self.topics.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn limits(max_events: usize, max_bytes: usize, max_topics: usize) -> HistoryLimits {
        HistoryLimits {
            max_events,
            max_bytes,
            max_topics,
            max_total_bytes: usize::MAX,
        }
    }

    fn ids(page: &Page) -> Vec<u64> {
        page.events.iter().map(|e| e.id).collect()
    }

    fn kept(t: &Topics, topic: &str) -> Vec<u64> {
        ids(&t.read_after(topic, 0, usize::MAX))
    }

    #[test]
    fn default_limits() {
        let want = HistoryLimits {
            max_total_bytes: 268_435_456,
            ..limits(1000, 1_048_576, 10_000)
        };
        assert_eq!(HistoryLimits::default(), want);
    }

    #[test]
    fn config_carries_the_total_budget_and_the_ttl() {
        let c = crate::Config::new();
        assert_eq!(
            (c.history.max_total_bytes, c.topic_ttl),
            (256 << 20, Duration::from_secs(3600))
        );
        let c = c
            .history_total_bytes(1234)
            .topic_ttl(Duration::ZERO)
            .max_topics(7);
        assert_eq!(
            (c.history.max_total_bytes, c.topic_ttl, c.history.max_topics),
            (1234, Duration::ZERO, 7)
        );
    }

    #[test]
    fn topic_names() {
        let long = "a".repeat(128);
        let too_long = "a".repeat(129);
        let table: &[(&str, bool)] = &[
            ("a", true),
            ("news", true),
            ("A-z_0.9", true),
            ("...", true),
            (".a", true),
            (&long, true),
            ("", false),
            (".", false),
            ("..", false),
            (&too_long, false),
            ("a/b", false),
            ("a b", false),
            ("a%2F", false),
            ("é", false),
            ("a\0", false),
            ("a?x", false),
        ];
        for (name, ok) in table {
            assert_eq!(valid_topic(name), *ok, "{name:?}");
        }
    }

    #[test]
    fn event_names() {
        let max = "x".repeat(64);
        let too_long = "x".repeat(65);
        let table: &[(&str, bool)] = &[
            ("update", true),
            ("!", true),
            ("~", true),
            ("a:b", true),
            (&max, true),
            ("", false),
            (&too_long, false),
            ("a b", false),
            ("a\n", false),
            ("a\r", false),
            ("\x7f", false),
            ("é", false),
            ("\0", false),
        ];
        for (name, ok) in table {
            assert_eq!(valid_event_name(name), *ok, "{name:?}");
        }
    }

    #[test]
    fn publish_refusals_change_nothing() {
        let mut t = Topics::new(limits(10, 100, 2));
        assert_eq!(t.publish("a/b", None, "x", 1), Err(PublishError::BadTopic));
        assert_eq!(t.publish("..", None, "x", 1), Err(PublishError::BadTopic));
        assert_eq!(
            t.publish("a", Some(""), "x", 1),
            Err(PublishError::BadEventName)
        );
        assert_eq!(
            t.publish("a", Some("a b"), "x", 1),
            Err(PublishError::BadEventName)
        );
        assert_eq!(t.len(), 0);
        t.publish("a", None, "x", 1).unwrap();
        t.publish("b", None, "x", 1).unwrap();
        assert_eq!(
            t.publish("c", None, "x", 1),
            Err(PublishError::TooManyTopics)
        );
        assert_eq!(t.len(), 2);
        assert_eq!(t.last_id("c"), 0);
        // Existing topics still accept events at the limit.
        assert_eq!(t.publish("a", Some("up"), "y", 1).unwrap().id, 2);
    }

    #[test]
    fn publish_error_status_and_display() {
        assert_eq!(PublishError::BadTopic.status(), 400);
        assert_eq!(PublishError::BadEventName.status(), 400);
        assert_eq!(PublishError::TooManyTopics.status(), 507);
        assert!(PublishError::BadTopic
            .to_string()
            .starts_with("bad topic name"));
        assert!(PublishError::BadEventName
            .to_string()
            .starts_with("bad event name"));
        assert!(PublishError::TooManyTopics
            .to_string()
            .starts_with("too many topics"));
    }

    #[test]
    fn ids_start_at_one_per_topic_and_only_grow() {
        let mut t = Topics::new(limits(2, 1000, 10));
        for want in 1..=5 {
            assert_eq!(t.publish("a", None, "x", 1).unwrap().id, want);
        }
        assert_eq!(t.publish("b", Some("e"), "y", 1).unwrap().id, 1);
        assert_eq!(t.last_id("a"), 5);
        assert_eq!(t.last_id("b"), 1);
        assert_eq!(t.last_id("zzz"), 0);
        assert_eq!(t.oldest_id("a"), Some(4));
        assert_eq!(t.oldest_id("zzz"), None);
        let ev = t.publish("a", Some("n"), "data", 1).unwrap();
        assert_eq!(
            *ev,
            TopicEvent {
                id: 6,
                event: Some("n".into()),
                data: "data".into(),
                json: false,
                published_ms: 0,
            }
        );
    }

    #[test]
    fn eviction_by_count() {
        let mut t = Topics::new(limits(3, 1 << 20, 10));
        for i in 1..=3 {
            t.publish("a", None, "x", 1).unwrap();
            assert_eq!(kept(&t, "a"), (1..=i).collect::<Vec<_>>());
        }
        t.publish("a", None, "x", 1).unwrap();
        assert_eq!(kept(&t, "a"), [2, 3, 4]);
    }

    #[test]
    fn eviction_by_bytes_counts_data_and_name() {
        // Budget 10 bytes. Each event: data 3 + name 1 = 4 bytes.
        let mut t = Topics::new(limits(100, 10, 10));
        t.publish("a", Some("e"), "abc", 1).unwrap();
        t.publish("a", Some("e"), "abc", 1).unwrap();
        assert_eq!(kept(&t, "a"), [1, 2]); // 8 bytes
        t.publish("a", Some("e"), "abc", 1).unwrap(); // 12 > 10
        assert_eq!(kept(&t, "a"), [2, 3]);
        t.publish("a", None, "ab", 1).unwrap(); // 4 + 4 + 2 = 10, fits exactly
        assert_eq!(kept(&t, "a"), [2, 3, 4]);
        // Multi-byte characters count in bytes: "é" is 2 bytes.
        t.publish("a", None, "é", 1).unwrap(); // 12 -> drop 2 -> 8
        assert_eq!(kept(&t, "a"), [3, 4, 5]);
    }

    #[test]
    fn newest_is_always_kept() {
        let mut t = Topics::new(limits(100, 10, 10));
        t.publish("a", None, "abc", 1).unwrap();
        let big = "x".repeat(50);
        t.publish("a", None, &big, 1).unwrap();
        assert_eq!(kept(&t, "a"), [2]);
        t.publish("a", None, "abc", 1).unwrap();
        assert_eq!(kept(&t, "a"), [3]);
        // max_events = 0 still keeps the newest.
        let mut t = Topics::new(limits(0, 0, 10));
        t.publish("a", None, "x", 1).unwrap();
        t.publish("a", None, "y", 1).unwrap();
        assert_eq!(kept(&t, "a"), [2]);
        assert_eq!(&*t.read_after("a", 0, 10).events[0].data, "y");
    }

    /// A table with unbounded topics under a total budget of `total` bytes.
    fn budget(total: usize) -> Topics {
        Topics::new(HistoryLimits {
            max_total_bytes: total,
            ..limits(1000, 1 << 20, 100)
        })
    }

    /// The total and the size index agree with the histories.
    fn check_index(t: &Topics) {
        let sum: usize = t.topics.values().map(|x| x.bytes).sum();
        assert_eq!(t.total_bytes(), sum);
        let want: BTreeSet<(usize, Rc<str>)> = t
            .topics
            .iter()
            .filter(|(_, x)| !x.history.is_empty())
            .map(|(n, x)| (x.bytes, Rc::clone(n)))
            .collect();
        assert_eq!(t.by_size, want);
        let active: BTreeSet<(u64, Rc<str>)> = t
            .topics
            .iter()
            .map(|(n, x)| (x.active_us, Rc::clone(n)))
            .collect();
        assert_eq!(t.by_activity, active);
        for x in t.topics.values() {
            assert_eq!(x.bytes, x.history.iter().map(|e| e.bytes()).sum::<usize>());
        }
    }

    #[test]
    fn the_total_budget_takes_the_oldest_event_of_the_largest_topic() {
        let mut t = budget(10);
        // (topic, data) -> kept ids of a and b, total bytes after the publish.
        type Row = (
            (&'static str, &'static str),
            (&'static [u64], &'static [u64], usize),
        );
        let table: &[Row] = &[
            (("a", "aaaa"), (&[1], &[], 4)),
            (("a", "aaaa"), (&[1, 2], &[], 8)),
            (("b", "bb"), (&[1, 2], &[1], 10)), // exactly the budget: nothing goes
            // 12: a (8 bytes) is larger than b (4): its oldest goes.
            (("b", "bb"), (&[2], &[1, 2], 8)),
            (("b", "bb"), (&[2], &[1, 2, 3], 10)),
            // 12: a keeps only its newest, so b gives up one although it was just published.
            (("b", "bb"), (&[2], &[2, 3, 4], 10)),
            // 22: a (16) drops 2; 18: a (12) is still the largest and gives up even its
            // newest event: the budget holds, and a's readers are told of the gap.
            (("a", "aaaaaaaaaaaa"), (&[], &[2, 3, 4], 6)),
            (("b", "bb"), (&[], &[2, 3, 4, 5], 8)),
        ];
        for &((topic, data), (a, b, total)) in table {
            t.publish(topic, None, data, 1).unwrap();
            assert_eq!(
                (kept(&t, "a"), kept(&t, "b"), t.total_bytes()),
                (a.to_vec(), b.to_vec(), total),
                "after {data} to {topic}"
            );
            check_index(&t);
        }
        // Event names count, as for the per-topic limit.
        let mut t = budget(6);
        t.publish("a", Some("ee"), "x", 1).unwrap();
        t.publish("a", Some("ee"), "x", 1).unwrap();
        assert_eq!((kept(&t, "a"), t.total_bytes()), (vec![1, 2], 6));
        t.publish("a", None, "x", 1).unwrap();
        assert_eq!((kept(&t, "a"), t.total_bytes()), (vec![2, 3], 4));
        check_index(&t);
    }

    #[test]
    fn of_two_topics_the_same_size_the_greater_name_gives_first() {
        let mut t = budget(3);
        for topic in ["a", "a", "b"] {
            t.publish(topic, None, "x", 1).unwrap();
        }
        t.publish("b", None, "x", 1).unwrap(); // 4 > 3: a and b hold 2 each
        assert_eq!((kept(&t, "a"), kept(&t, "b")), (vec![1, 2], vec![2]));
        t.publish("a", None, "x", 1).unwrap(); // a holds 3
        assert_eq!((kept(&t, "a"), kept(&t, "b")), (vec![2, 3], vec![2]));
        check_index(&t);
    }

    #[test]
    fn past_the_budget_even_a_newest_event_goes_and_the_empty_topic_reads_as_a_gap() {
        let mut t = budget(4);
        let a = t.publish("a", None, "xxx", 1).unwrap().id;
        let b = t.publish("b", None, "yyy", 1).unwrap().id; // 6 bytes: the larger name goes
        assert_eq!(t.total_bytes(), 3);
        assert_eq!((kept(&t, "a"), kept(&t, "b")), (vec![a], vec![]));
        // New topics are never refused for the budget: a flood of them heals itself.
        t.publish("c", None, "z", 1).unwrap();
        assert_eq!(t.total_bytes(), 4);
        // The emptied topic tells every reader but one at its last id that it lost events.
        // (since) -> (gap, next)
        for (since, want) in [(0, (true, b)), (b - 1, (true, b)), (b, (false, b))] {
            let p = t.read_after("b", since, 10);
            assert!(p.events.is_empty());
            assert_eq!((p.gap, p.next), want, "since {since}");
        }
        let p = t.read_after("b", b + 5, 10);
        assert_eq!((p.gap, p.next), (true, 0), "ahead");
        // It goes on from its last id.
        assert_eq!(t.publish("b", None, "y", 1).unwrap().id, b + 1);
    }

    #[test]
    fn a_topic_trimmed_by_the_total_budget_reads_as_a_gap() {
        let mut t = budget(4);
        for _ in 0..4 {
            t.publish("a", None, "x", 1).unwrap(); // a: 1..=4
        }
        // 6 bytes: a (the largest) gives up 1, then 2.
        t.publish("b", None, "xy", 1).unwrap();
        assert_eq!((kept(&t, "a"), kept(&t, "b")), (vec![3, 4], vec![1]));
        // (since) -> (ids, gap, next, oldest)
        type Row = (u64, (&'static [u64], bool, u64, u64));
        let table: &[Row] = &[
            (0, (&[3, 4], true, 4, 3)),  // from the start: 1 and 2 were dropped
            (1, (&[3, 4], true, 4, 3)),  // 2 missed
            (2, (&[3, 4], false, 4, 3)), // it had everything before 3
            (3, (&[4], false, 4, 3)),
            (4, (&[], false, 4, 3)),
            (9, (&[3, 4], true, 4, 3)), // ahead, as always
        ];
        for &(since, (want, gap, next, oldest)) in table {
            let p = t.read_after("a", since, 10);
            assert_eq!(
                (ids(&p), p.gap, p.next, p.oldest),
                (want.to_vec(), gap, next, oldest),
                "since {since}"
            );
        }
        // b was never trimmed: no gap from the start.
        assert!(!t.read_after("b", 0, 10).gap);
    }

    #[test]
    fn restore_applies_the_total_budget() {
        let mut t = budget(10);
        let four = |id| ev(id, None, "abcd");
        t.restore("a", (1..=3).map(four), 3, 1).unwrap();
        assert_eq!((kept(&t, "a"), t.total_bytes()), (vec![2, 3], 8));
        // 16: a and b hold 8 each, b (the greater name) gives first; then a (8 > 4).
        t.restore("b", (1..=2).map(four), 2, 1).unwrap();
        assert_eq!(
            (kept(&t, "a"), kept(&t, "b"), t.total_bytes()),
            (vec![3], vec![2], 8)
        );
        check_index(&t);
        assert!(t.read_after("a", 0, 10).gap && t.read_after("b", 0, 10).gap);
        // A refused restore counts nothing.
        assert_eq!(t.restore("a", [], 5, 1), Err(RestoreError::Exists));
        assert_eq!(t.total_bytes(), 8);
        check_index(&t);
    }

    /// The total budget and expiry against a model that scans every topic: for the
    /// largest, and for the idle ones.
    #[test]
    fn budget_and_expiry_match_a_scanning_model() {
        use std::collections::BTreeMap;
        let mut rng = 0x9E37_79B9_7F4A_7C15_u64;
        let mut next = move || {
            rng ^= rng >> 12;
            rng ^= rng << 25;
            rng ^= rng >> 27;
            rng.wrapping_mul(0x2545_F491_4F6C_DD1D)
        };
        let lim = HistoryLimits {
            max_total_bytes: 300,
            ..limits(8, 60, 50)
        };
        let ttl = Duration::from_secs(20);
        let ttl_us = 20 * SEC;
        let live = |n: &str| n.ends_with('3');
        let mut t = Topics::new(lim);
        // Per topic: (id, bytes) kept, and its last activity.
        type Model = BTreeMap<String, (VecDeque<(u64, usize)>, u64)>;
        let mut model: Model = BTreeMap::new();
        let size = |h: &VecDeque<(u64, usize)>| h.iter().map(|e| e.1).sum::<usize>();
        let mut now = 1_000 * SEC;
        let (mut expired, mut trimmed) = (0, 0);
        for step in 0..5_000 {
            now += next() % (2 * SEC);
            if step % 40 == 39 {
                let got = t.expire(now, ttl, live);
                let mut due: Vec<(u64, String)> = model
                    .iter()
                    .filter(|(_, (_, at))| at + ttl_us <= now)
                    .map(|(n, (_, at))| (*at, n.clone()))
                    .collect();
                due.sort();
                let mut want = Vec::new();
                for (_, n) in due {
                    if live(&n) {
                        model.get_mut(&n).unwrap().1 = now;
                    } else {
                        model.remove(&n);
                        want.push(n);
                    }
                }
                assert_eq!(got, want, "step {step}");
                expired += got.len();
            }
            let topic = format!("t{}", next() % 20);
            let len = (next() % 40) as usize;
            let id = t.publish(&topic, None, &"x".repeat(len), now).unwrap().id;
            let (h, at) = model.entry(topic.clone()).or_default();
            *at = now;
            h.push_back((id, len));
            while h.len() > 1 && (h.len() > lim.max_events || size(h) > lim.max_bytes) {
                h.pop_front();
            }
            loop {
                let total: usize = model.values().map(|(h, _)| size(h)).sum();
                if total <= lim.max_total_bytes {
                    break;
                }
                let largest = model
                    .iter()
                    .filter(|(_, (h, _))| !h.is_empty())
                    .map(|(n, (h, _))| (size(h), n.clone()))
                    .max();
                let Some((_, n)) = largest else { break };
                model.get_mut(&n).unwrap().0.pop_front();
                trimmed += 1;
            }
            assert_eq!(t.len(), model.len());
            for (n, (h, _)) in &model {
                let want: Vec<u64> = h.iter().map(|e| e.0).collect();
                assert_eq!(kept(&t, n), want, "step {step}, topic {n}");
            }
            let soonest = model.values().map(|(_, at)| at + ttl_us).min();
            assert_eq!(t.next_expiry(ttl), soonest);
            check_index(&t);
        }
        assert!(
            expired > 100 && trimmed > 100,
            "{expired} expired, {trimmed} trimmed"
        );
    }

    const SEC: u64 = 1_000_000;

    fn names(v: &[&str]) -> Vec<String> {
        v.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn expire_drops_idle_topics_nobody_uses() {
        let ttl = Duration::from_secs(10);
        let mut t = Topics::new(HistoryLimits::default());
        assert_eq!(t.next_expiry(ttl), None, "no topic");
        t.publish("a", None, "xy", SEC).unwrap();
        t.publish("b", None, "x", 2 * SEC).unwrap();
        t.publish("c", None, "x", 3 * SEC).unwrap();
        assert_eq!(t.next_expiry(ttl), Some(11 * SEC));
        assert_eq!(t.next_expiry(Duration::ZERO), None, "zero: never");
        let mut asked = Vec::new();
        // Idle for just under the ttl: nothing is due, nobody is asked.
        let dropped = t.expire(11 * SEC - 1, ttl, |n| {
            asked.push(n.to_string());
            false
        });
        assert!(dropped.is_empty() && asked.is_empty());
        // Idle for exactly the ttl: a is due and not live.
        let dropped = t.expire(11 * SEC, ttl, |n| {
            asked.push(n.to_string());
            false
        });
        assert_eq!((dropped, asked), (names(&["a"]), names(&["a"])));
        assert_eq!((t.len(), t.total_bytes(), t.contains("a")), (2, 2, false));
        assert_eq!(t.next_expiry(ttl), Some(12 * SEC));
        check_index(&t);
        // b is live, c is not: b counts as active now and is not asked again for a ttl.
        let mut asked = Vec::new();
        let dropped = t.expire(13 * SEC + 500, ttl, |n| {
            asked.push(n.to_string());
            n == "b"
        });
        assert_eq!((dropped, asked), (names(&["c"]), names(&["b", "c"])));
        assert_eq!(t.next_expiry(ttl), Some(23 * SEC + 500));
        let mut asked = 0;
        assert!(t
            .expire(23 * SEC + 499, ttl, |_| {
                asked += 1;
                false
            })
            .is_empty());
        assert_eq!(asked, 0);
        // A zero ttl never drops, even a topic idle for ages.
        assert!(t.expire(u64::MAX, Duration::ZERO, |_| false).is_empty());
        assert_eq!(t.expire(u64::MAX, ttl, |_| false), names(&["b"]));
        assert_eq!((t.len(), t.total_bytes(), t.next_expiry(ttl)), (0, 0, None));
        check_index(&t);
    }

    #[test]
    fn a_publish_keeps_a_topic_alive() {
        let ttl = Duration::from_secs(10);
        let mut t = Topics::new(HistoryLimits::default());
        t.publish("a", None, "x", SEC).unwrap();
        t.publish("a", None, "x", 5 * SEC).unwrap();
        assert_eq!(t.next_expiry(ttl), Some(15 * SEC));
        assert!(t.expire(14 * SEC, ttl, |_| false).is_empty());
        // A clock that went back does not make the topic look older.
        t.publish("a", None, "x", 2 * SEC).unwrap();
        assert_eq!(t.next_expiry(ttl), Some(15 * SEC));
        assert_eq!(t.expire(15 * SEC, ttl, |_| false), names(&["a"]));
        check_index(&t);
    }

    #[test]
    fn expired_topics_free_their_slots_and_their_bytes() {
        let ttl = Duration::from_secs(60);
        let mut t = Topics::new(HistoryLimits {
            max_total_bytes: 10,
            ..limits(100, 100, 2)
        });
        for _ in 0..3 {
            t.publish("a", None, "xxx", SEC).unwrap();
        }
        t.publish("b", None, "xxx", 30 * SEC).unwrap();
        // 12 bytes: a gives up its oldest.
        assert_eq!(
            (kept(&t, "a"), t.total_bytes()),
            (vec![SEC + 1, SEC + 2], 9)
        );
        assert_eq!(
            t.publish("c", None, "x", 30 * SEC),
            Err(PublishError::TooManyTopics)
        );
        assert_eq!(
            t.check_publish("c", None, 30 * SEC, 0),
            Err(PublishError::TooManyTopics)
        );
        assert_eq!(t.expire(61 * SEC, ttl, |_| false), names(&["a"]));
        assert_eq!((t.len(), t.total_bytes()), (1, 3));
        check_index(&t);
        // The slot is free: a new topic is accepted, and the budget has room again.
        assert_eq!(t.check_publish("c", None, 62 * SEC, 0), Ok(62 * SEC));
        assert_eq!(
            t.check_publish("c", None, 62 * SEC, 1),
            Err(PublishError::TooManyTopics)
        );
        t.publish("c", None, "xxx", 62 * SEC).unwrap();
        t.publish("c", None, "xxx", 62 * SEC).unwrap();
        assert_eq!(
            (kept(&t, "c"), t.total_bytes()),
            (vec![62 * SEC, 62 * SEC + 1], 9)
        );
        check_index(&t);
    }

    #[test]
    fn remove_frees_the_slot_the_bytes_and_the_expiry_index() {
        let ttl = Duration::from_secs(60);
        let mut t = Topics::new(limits(100, 100, 2));
        t.publish("a", None, "xxx", SEC).unwrap();
        t.publish("b", None, "yy", 2 * SEC).unwrap();
        assert!(!t.remove("nope"));
        assert!(t.remove("a"));
        assert!(!t.remove("a"), "gone already");
        assert_eq!((t.len(), t.total_bytes(), t.last_id("a")), (1, 2, 0));
        assert_eq!(t.oldest_id("a"), None);
        check_index(&t);
        // Nothing of it is left to expire: b is the next one due.
        assert_eq!(t.next_expiry(ttl), Some(62 * SEC));
        assert_eq!(t.expire(100 * SEC, ttl, |_| false), names(&["b"]));
        // Its slot is free, and a publish starts a new log at the clock.
        assert_eq!(t.publish("a", None, "z", 5 * SEC).unwrap().id, 5 * SEC);
        t.publish("c", None, "z", 5 * SEC).unwrap();
        check_index(&t);
    }

    #[test]
    fn a_topic_published_after_it_expired_starts_a_new_log_and_old_cursors_get_a_gap() {
        let ttl = Duration::from_secs(3600);
        let t0 = 1_764_620_000_000_000; // 2025-12-01, in microseconds
        let mut t = Topics::new(HistoryLimits::default());
        for _ in 0..3 {
            t.publish("a", None, "x", t0).unwrap(); // t0, t0 + 1, t0 + 2
        }
        assert_eq!(t.expire(t0 + 3600 * SEC, ttl, |_| false), names(&["a"]));
        // While the topic does not exist: a gap for any cursor, nothing to wait for at it.
        let p = t.read_after("a", t0 + 1, 10);
        assert_eq!((ids(&p), p.gap, p.next), (vec![], true, 0));
        assert_eq!(t.last_id("a"), 0);
        // Published again two hours later: a new log at the clock.
        let t1 = t0 + 7200 * SEC;
        assert_eq!(t.check_publish("a", None, t1, 0), Ok(t1));
        assert_eq!(t.publish("a", None, "new", t1).unwrap().id, t1);
        t.publish("a", None, "new", t1).unwrap();
        // Cursors from the old log are below the new first id: a gap ("since < oldest - 1"),
        // also for the client that had read everything (it cannot tell the logs apart).
        for since in [t0, t0 + 1, t0 + 2] {
            let p = t.read_after("a", since, 10);
            assert_eq!(
                (ids(&p), p.gap, p.next, p.oldest),
                (vec![t1, t1 + 1], true, t1 + 1, t1),
                "since {since}"
            );
        }
        // The client that was told of the gap and went back to 0: the new log, complete.
        let p = t.read_after("a", 0, 10);
        assert_eq!((ids(&p), p.gap), (vec![t1, t1 + 1], false));
        // Had the clock gone back below the old ids, the old cursor is ahead of the new
        // log: a gap too, from the oldest kept event.
        assert_eq!(t.expire(t1 + 3600 * SEC, ttl, |_| false), names(&["a"]));
        let back = t0 - 60 * SEC;
        assert_eq!(t.publish("a", None, "x", back).unwrap().id, back);
        let p = t.read_after("a", t0 + 2, 10);
        assert_eq!((ids(&p), p.gap, p.next), (vec![back], true, back));
    }

    #[test]
    fn restore_at_counts_the_idle_time_from_the_restore() {
        let ttl = Duration::from_secs(10);
        let mut t = Topics::new(HistoryLimits::default());
        // Events published long before the restart (ev() stamps id * 10 ms).
        t.restore_at("a", run(1, 2), 2, 1, 50 * SEC).unwrap();
        assert_eq!(t.next_expiry(ttl), Some(60 * SEC));
        assert!(t.expire(60 * SEC - 1, ttl, |_| false).is_empty());
        // Plain restore: the newest kept event's publish time (20 ms), 0 when none.
        t.restore("b", run(1, 2), 2, 1).unwrap();
        t.restore("c", [], 5, 6).unwrap();
        assert_eq!(t.next_expiry(ttl), Some(10 * SEC));
        assert_eq!(
            t.expire(10 * SEC + 20_000, ttl, |_| false),
            names(&["c", "b"])
        );
        assert_eq!(t.expire(60 * SEC, ttl, |_| false), names(&["a"]));
        check_index(&t);
        // A refused restore leaves no trace in the expiry order.
        t.publish("d", None, "x", 70 * SEC).unwrap();
        assert_eq!(t.restore_at("d", [], 5, 1, SEC), Err(RestoreError::Exists));
        assert_eq!(
            t.restore_at("e", run(2, 1), 5, 1, SEC),
            Ok(()),
            "an empty run"
        );
        check_index(&t);
    }

    #[test]
    fn expire_looks_only_at_due_topics_among_ten_thousand() {
        let ttl = Duration::from_secs(3600);
        let mut t = Topics::new(HistoryLimits::default());
        for i in 0..10_000u64 {
            t.publish(&format!("t{i}"), None, "x", i * SEC).unwrap();
        }
        // One sweep a minute for a day; the even topics have a subscriber.
        let mut asked = 0;
        let mut dropped = 0;
        for minute in 0..24 * 60 {
            let now = minute * 60 * SEC;
            dropped += t
                .expire(now, ttl, |n| {
                    asked += 1;
                    n[1..].parse::<u64>().unwrap() % 2 == 0
                })
                .len();
        }
        // Every odd topic went once it was idle an hour; each even one was asked about
        // once per hour of the day it existed, never at the other sweeps.
        assert_eq!((dropped, t.len()), (5_000, 5_000));
        let even_asks: u64 = (0..10_000u64)
            .step_by(2)
            .map(|i| {
                let mut at = i * SEC + 3600 * SEC;
                let mut n = 0;
                while at < 24 * 3600 * SEC {
                    let sweep = at.div_ceil(60 * SEC) * 60 * SEC;
                    if sweep >= 24 * 3600 * SEC {
                        break;
                    }
                    n += 1;
                    at = sweep + 3600 * SEC;
                }
                n
            })
            .sum();
        assert_eq!(asked as u64, 5_000 + even_asks);
        assert!(even_asks < 5_000 * 24, "{even_asks}");
        check_index(&t);
    }

    /// Topic "a" keeping ids 3..=5 (1 and 2 evicted).
    fn three_to_five() -> Topics {
        let mut t = Topics::new(limits(3, 1 << 20, 10));
        for _ in 0..5 {
            t.publish("a", None, "x", 1).unwrap();
        }
        t
    }

    #[test]
    fn read_after_table() {
        let t = three_to_five();
        // (since, max) -> (ids, gap, next, oldest, more)
        type Row = ((u64, usize), (&'static [u64], bool, u64, u64, bool));
        let table: &[Row] = &[
            ((0, 10), (&[3, 4, 5], true, 5, 3, false)), // 1, 2 lost
            ((1, 10), (&[3, 4, 5], true, 5, 3, false)), // 2 lost
            ((2, 10), (&[3, 4, 5], false, 5, 3, false)),
            ((3, 10), (&[4, 5], false, 5, 3, false)),
            ((4, 10), (&[5], false, 5, 3, false)),
            ((5, 10), (&[], false, 5, 3, false)), // up to date: wait
            ((2, 2), (&[3, 4], false, 4, 3, true)),
            ((0, 1), (&[3], true, 3, 3, true)),
            ((2, 0), (&[], false, 2, 3, true)),
            ((0, 0), (&[], true, 0, 3, true)),
            // Ahead of the last id: the server lost its history; read from the oldest.
            ((6, 10), (&[3, 4, 5], true, 5, 3, false)),
            ((u64::MAX, 10), (&[3, 4, 5], true, 5, 3, false)),
            ((9, 1), (&[3], true, 3, 3, true)),
            ((9, 0), (&[], true, 2, 3, true)),
        ];
        for &((since, max), (want_ids, gap, next, oldest, more)) in table {
            let p = t.read_after("a", since, max);
            let got = (ids(&p), p.gap, p.next, p.oldest, p.more);
            assert_eq!(
                got,
                (want_ids.to_vec(), gap, next, oldest, more),
                "since {since} max {max}"
            );
        }
    }

    #[test]
    fn read_after_without_eviction() {
        let mut t = Topics::new(HistoryLimits::default());
        t.publish("a", None, "1", 1).unwrap();
        t.publish("a", None, "2", 1).unwrap();
        let p = t.read_after("a", 0, 100);
        assert_eq!(
            (ids(&p), p.gap, p.next, p.oldest, p.more),
            (vec![1, 2], false, 2, 1, false)
        );
        let p = t.read_after("a", 2, 100);
        assert_eq!((ids(&p), p.gap, p.next), (vec![], false, 2));
        let p = t.read_after("a", 3, 100); // ahead by one
        assert_eq!((ids(&p), p.gap, p.next), (vec![1, 2], true, 2));
    }

    #[test]
    fn read_after_unknown_topic() {
        let t = Topics::new(HistoryLimits::default());
        let p = t.read_after("nope", 0, 10);
        assert_eq!(
            (ids(&p), p.gap, p.next, p.oldest, p.more),
            (vec![], false, 0, 0, false)
        );
        let p = t.read_after("nope", 7, 10);
        assert_eq!(
            (ids(&p), p.gap, p.next, p.oldest, p.more),
            (vec![], true, 0, 0, false)
        );
    }

    #[test]
    fn events_are_shared_not_copied() {
        let mut t = Topics::new(HistoryLimits::default());
        let ev = t.publish("a", None, "x", 1).unwrap();
        let p = t.read_after("a", 0, 1);
        assert!(Rc::ptr_eq(&ev, &p.events[0]));
    }

    #[test]
    fn a_fresh_log_starts_at_the_clock_so_a_restart_is_a_gap() {
        let now_us = 1_764_620_000_123_456; // 2025-12-01, in microseconds
        let mut t = Topics::new(HistoryLimits::default());
        let first = t.publish("a", None, "x", now_us).unwrap().id;
        assert_eq!(first, now_us);
        // Later publishes add 1 whatever the clock says, even if it went back.
        assert_eq!(
            t.publish("a", None, "y", now_us - 5_000_000).unwrap().id,
            now_us + 1
        );
        // From the start: everything, no gap (nothing was trimmed).
        let p = t.read_after("a", 0, 10);
        assert_eq!((ids(&p), p.gap), (vec![now_us, now_us + 1], false));
        // A cursor from before a restart (an old, small id): the first event returned is not
        // cursor + 1, so the client is told it may have missed events.
        let p = t.read_after("a", 500, 10);
        assert_eq!((ids(&p), p.gap), (vec![now_us, now_us + 1], true));
        // The cursor right before the range is no gap; inside it neither.
        assert!(!t.read_after("a", now_us - 1, 10).gap);
        assert!(!t.read_after("a", now_us, 10).gap);
        // Ids stay exact in JavaScript even for a clock far in the future.
        let mut t = Topics::new(HistoryLimits::default());
        assert_eq!(
            t.publish("b", None, "x", u64::MAX).unwrap().id,
            MAX_FIRST_ID
        );
        assert!(MAX_FIRST_ID + u64::from(u32::MAX) < 1 << 53);
        assert_eq!(first_id(0), 1);
    }

    #[test]
    fn from_the_start_is_a_gap_only_when_trimmed() {
        let mut t = Topics::new(limits(2, 1 << 20, 10));
        for _ in 0..2 {
            t.publish("a", None, "x", 100).unwrap();
        }
        assert!(!t.read_after("a", 0, 10).gap, "100, 101 kept: nothing lost");
        t.publish("a", None, "x", 100).unwrap();
        let p = t.read_after("a", 0, 10);
        assert_eq!((ids(&p), p.gap), (vec![101, 102], true), "100 was trimmed");
    }

    fn ev(id: u64, name: Option<&str>, data: &str) -> TopicEvent {
        TopicEvent {
            id,
            event: name.map(Into::into),
            data: data.into(),
            json: false,
            published_ms: id * 10,
        }
    }

    /// Events `from..=to`, each with 1 byte of data.
    fn run(from: u64, to: u64) -> Vec<TopicEvent> {
        (from..=to).map(|id| ev(id, None, "x")).collect()
    }

    #[test]
    fn publish_records_the_time_in_milliseconds() {
        let mut t = Topics::new(HistoryLimits::default());
        let e = t.publish("a", None, "x", 1_764_620_000_123_456).unwrap();
        assert_eq!(e.published_ms, 1_764_620_000_123);
    }

    #[test]
    fn restore_then_publish_continues_at_last_id_plus_one() {
        let base = 1_700_000_000_000_000;
        let mut t = Topics::new(HistoryLimits::default());
        t.restore("a", run(base, base + 2), base + 2, base).unwrap();
        assert_eq!(t.last_id("a"), base + 2);
        assert_eq!(t.oldest_id("a"), Some(base));
        let p = t.read_after("a", 0, 10);
        assert_eq!((ids(&p), p.gap), (vec![base, base + 1, base + 2], false));
        assert_eq!(p.events[1].published_ms, (base + 1) * 10, "kept as given");
        // The clock (now far later, or earlier) does not matter: the log continues.
        let e = t.publish("a", Some("n"), "y", 1).unwrap();
        assert_eq!((e.id, e.published_ms), (base + 3, 0));
        assert_eq!(t.publish("a", None, "z", u64::MAX).unwrap().id, base + 4);
        // A cursor from before the restart resumes without a gap.
        let p = t.read_after("a", base + 1, 10);
        assert_eq!(
            (ids(&p), p.gap),
            (vec![base + 2, base + 3, base + 4], false)
        );
        // Other topics still start at the clock.
        assert_eq!(t.publish("b", None, "x", 5_000).unwrap().id, 5_000);
    }

    #[test]
    fn restore_of_an_empty_history() {
        let mut t = Topics::new(HistoryLimits::default());
        t.restore("a", [], 41, 42).unwrap();
        assert_eq!((t.len(), t.last_id("a"), t.oldest_id("a")), (1, 41, None));
        let p = t.read_after("a", 0, 10);
        assert_eq!((ids(&p), p.gap, p.next), (vec![], false, 0));
        assert!(t.read_after("a", 42, 10).gap, "ahead of the last id");
        assert_eq!(t.publish("a", None, "x", 9_999).unwrap().id, 42);
        assert!(!t.read_after("a", 0, 10).gap, "42 is the log's first id");
        // First id below: events were lost before the restart.
        t.restore("b", [], 41, 1).unwrap();
        t.publish("b", None, "x", 9_999).unwrap();
        assert!(t.read_after("b", 0, 10).gap);
    }

    #[test]
    fn restore_of_a_trimmed_history_reports_the_gap_from_zero() {
        let mut t = Topics::new(HistoryLimits::default());
        // Kept 100..=102 of a log that began at 90 (or of unknown start: 1).
        for (topic, first) in [("a", 90), ("b", 1)] {
            t.restore(topic, run(100, 102), 102, first).unwrap();
            let p = t.read_after(topic, 0, 10);
            assert_eq!((ids(&p), p.gap, p.oldest), (vec![100, 101, 102], true, 100));
            assert!(!t.read_after(topic, 99, 10).gap, "oldest - 1");
            assert!(!t.read_after(topic, 100, 10).gap);
            assert!(t.read_after(topic, 98, 10).gap, "99 was lost");
        }
        // Untrimmed: the first id is the oldest kept.
        t.restore("c", run(100, 102), 102, 100).unwrap();
        assert!(!t.read_after("c", 0, 10).gap);
    }

    #[test]
    fn restore_applies_the_limits_as_publish_does() {
        // By count: 5 events into 3 slots keep 3..=5, and 1, 2 are then a gap from 0.
        let mut t = Topics::new(limits(3, 1 << 20, 10));
        t.restore("a", run(1, 5), 5, 1).unwrap();
        assert_eq!(kept(&t, "a"), [3, 4, 5]);
        // Reads as the same history built by publishing (times aside).
        let published = three_to_five();
        for since in 0..=6 {
            let (p, q) = (
                t.read_after("a", since, 2),
                published.read_after("a", since, 2),
            );
            assert_eq!(
                (ids(&p), p.gap, p.next, p.oldest, p.more),
                (ids(&q), q.gap, q.next, q.oldest, q.more),
                "since {since}"
            );
        }
        t.publish("a", None, "x", 1).unwrap();
        assert_eq!(kept(&t, "a"), [4, 5, 6]);
        // By bytes (data plus name), the newest kept even when it alone is over budget.
        let mut t = Topics::new(limits(100, 10, 10));
        let evs = vec![
            ev(7, Some("e"), "abc"),
            ev(8, Some("e"), "abc"),
            ev(9, None, "abcd"),
        ];
        t.restore("a", evs, 9, 7).unwrap();
        assert_eq!(kept(&t, "a"), [8, 9]); // 4 + 4 = 8 <= 10
        let evs = vec![ev(7, None, "ab"), ev(8, None, &"x".repeat(50))];
        t.restore("b", evs, 8, 7).unwrap();
        assert_eq!(kept(&t, "b"), [8]);
        assert!(t.read_after("b", 0, 10).gap);
        // The byte count carries on: the next publish evicts the big one.
        t.publish("b", None, "abc", 1).unwrap();
        assert_eq!(kept(&t, "b"), [9]);
    }

    #[test]
    fn a_new_range_is_a_gap_for_every_cursor_into_the_lost_tail() {
        let mut t = Topics::new(limits(10, 1000, 10));
        // Restored after an unclean stop: 100..=102 were on disk, 103..=105 were answered
        // before the crash but lost; the log starts a new range at 5000.
        let kept = [ev(100, None, "a"), ev(101, None, "b"), ev(102, None, "c")];
        t.restore("t", kept, 4_999, 100).unwrap();
        // Nothing new yet: the kept history reads as before, no gap.
        let p = t.read_after("t", 101, 10);
        assert_eq!(
            (ids(&p), p.gap, p.next, p.more),
            (vec![102], false, 102, false)
        );
        let e = t.publish("t", None, "new", 6_000_000).unwrap();
        assert_eq!(e.id, 5_000, "the range starts at the clock of the restart");
        assert_eq!(t.publish("t", None, "x", 0).unwrap().id, 5_001);
        // A page never spans the jump; reading on from its end reports the gap.
        let p = t.read_after("t", 0, 10);
        assert_eq!(
            (ids(&p), p.gap, p.next, p.more),
            (vec![100, 101, 102], false, 102, true)
        );
        let p = t.read_after("t", 102, 10);
        assert_eq!(
            (ids(&p), p.gap, p.next, p.more),
            (vec![5_000, 5_001], true, 5_001, false)
        );
        // Cursors into the lost tail (103..=105) and just below the new range: a gap.
        for since in [103, 105, 4_998] {
            let p = t.read_after("t", since, 10);
            assert_eq!(
                (ids(&p), p.gap),
                (vec![5_000, 5_001], true),
                "since {since}"
            );
        }
        // The cursor right before the range start: no gap (nothing was handed out there).
        let p = t.read_after("t", 4_999, 10);
        assert_eq!((ids(&p), p.gap), (vec![5_000, 5_001], false));
        // Ahead of everything: the oldest kept run, with a gap, as always.
        let p = t.read_after("t", 9_999, 10);
        assert_eq!((ids(&p), p.gap, p.more), (vec![100, 101, 102], true, true));
    }

    #[test]
    fn restore_refusals_change_nothing() {
        use RestoreError as E;
        let mut t = Topics::new(limits(10, 100, 2));
        t.publish("live", None, "x", 50).unwrap();
        let bad_name = vec![ev(1, Some("a b"), "x")];
        let down = vec![ev(2, None, "x"), ev(1, None, "x")];
        let dup = vec![ev(1, None, "x"), ev(1, None, "x")];
        type Row = (&'static str, Vec<TopicEvent>, u64, u64, RestoreError);
        let table: Vec<Row> = vec![
            ("a/b", run(1, 1), 1, 1, E::BadTopic),
            ("..", run(1, 1), 1, 1, E::BadTopic),
            ("live", run(1, 1), 1, 1, E::Exists),
            ("a", bad_name, 1, 1, E::BadEventName { id: 1 }),
            ("a", down, 2, 1, E::NotAscending { after: 2, id: 1 }),
            ("a", dup, 1, 1, E::NotAscending { after: 1, id: 1 }),
            (
                "a",
                run(1, 3),
                2,
                1,
                E::WrongLastId {
                    event_id: 3,
                    last_id: 2,
                },
            ),
            (
                "a",
                run(5, 6),
                6,
                0,
                E::BadFirstId {
                    first_id: 0,
                    oldest: 5,
                },
            ),
            (
                "a",
                run(5, 6),
                6,
                6,
                E::BadFirstId {
                    first_id: 6,
                    oldest: 5,
                },
            ),
            (
                "a",
                vec![],
                6,
                8,
                E::BadFirstId {
                    first_id: 8,
                    oldest: 7,
                },
            ),
            (
                "a",
                vec![],
                6,
                0,
                E::BadFirstId {
                    first_id: 0,
                    oldest: 7,
                },
            ),
            ("a", vec![], MAX_ID, 1, E::IdTooLarge { last_id: MAX_ID }),
            (
                "a",
                run(1, 1),
                u64::MAX,
                1,
                E::IdTooLarge { last_id: u64::MAX },
            ),
        ];
        for (topic, events, last_id, first_id, want) in table {
            assert_eq!(
                t.restore(topic, events, last_id, first_id),
                Err(want),
                "{topic} {last_id} {first_id}"
            );
            assert_eq!((t.len(), t.last_id("a")), (1, 0), "{want}");
            assert_eq!(kept(&t, "live"), [50]);
        }
        // The largest last id accepted: the next publish is MAX_ID itself.
        t.restore("a", run(MAX_ID - 1, MAX_ID - 1), MAX_ID - 1, 1)
            .unwrap();
        assert_eq!(t.publish("a", None, "x", 1).unwrap().id, MAX_ID);
        // The table is full now (max_topics = 2).
        assert_eq!(t.restore("c", [], 1, 1), Err(E::TooManyTopics));
        assert_eq!(t.len(), 2);
    }

    #[test]
    fn restore_error_display() {
        let table: &[(RestoreError, &str)] = &[
            (RestoreError::BadTopic, "bad topic name"),
            (RestoreError::Exists, "topic already exists"),
            (RestoreError::TooManyTopics, "too many topics"),
            (
                RestoreError::NotAscending { after: 3, id: 1 },
                "event 1 is not above event 3",
            ),
            (
                RestoreError::WrongLastId {
                    event_id: 3,
                    last_id: 2,
                },
                "event 3 is above the last id 2",
            ),
        ];
        for (e, want) in table {
            assert_eq!(e.to_string(), *want);
        }
    }

    #[test]
    fn restore_from_stored_events() {
        use crate::proto::store::StoredEvent;
        let stored = [
            StoredEvent {
                id: 7,
                name: Some("up".into()),
                published_ms: 1_000,
                data: "a".into(),
                json: false,
            },
            StoredEvent {
                id: 8,
                name: None,
                published_ms: 2_000,
                data: "b".into(),
                json: false,
            },
        ];
        let mut t = Topics::new(HistoryLimits::default());
        t.restore("a", stored.iter().map(StoredEvent::to_topic_event), 8, 7)
            .unwrap();
        let p = t.read_after("a", 0, 10);
        let got: Vec<TopicEvent> = p.events.iter().map(|e| (**e).clone()).collect();
        let want = [
            TopicEvent {
                id: 7,
                event: Some("up".into()),
                data: "a".into(),
                json: false,
                published_ms: 1_000,
            },
            TopicEvent {
                id: 8,
                event: None,
                data: "b".into(),
                json: false,
                published_ms: 2_000,
            },
        ];
        assert_eq!(got, want);
        for (s, e) in stored.iter().zip(&want) {
            assert_eq!(s.bytes(), e.bytes());
        }
    }
}
