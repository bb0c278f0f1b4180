//! The live state a log describes: rebuilt by applying records in order, and written back
//! as a compacted segment.

mod budget;

use std::collections::{BTreeMap, BTreeSet, HashMap, VecDeque};
use std::fmt;

use super::record::{Record, RecordError};
use super::scan::write_header;
use crate::proto::topic::{HistoryLimits, TopicEvent};

/// One kept event of a topic.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct StoredEvent {
    /// Its per-topic id.
    pub id: u64,
    /// Its name, `None` for the default.
    pub name: Option<String>,
    /// When it was published, Unix milliseconds.
    pub published_ms: u64,
    /// The payload.
    pub data: String,
    /// `data` is one JSON value (see [`TopicEvent::json`]).
    pub json: bool,
}

impl StoredEvent {
    /// The event as the topic table holds it, for
    /// [`Topics::restore`](crate::proto::topic::Topics::restore).
    pub fn to_topic_event(&self) -> TopicEvent {
        TopicEvent {
            id: self.id,
            event: self.name.as_deref().map(Into::into),
            data: self.data.as_str().into(),
            json: self.json,
            published_ms: self.published_ms,
        }
    }

    /// [`StoredEvent::to_topic_event`] without copying the strings.
    pub fn into_topic_event(self) -> TopicEvent {
        TopicEvent {
            id: self.id,
            event: self.name.map(String::into_boxed_str),
            data: self.data.into_boxed_str(),
            json: self.json,
            published_ms: self.published_ms,
        }
    }

    /// The bytes it counts against [`HistoryLimits::max_bytes`] (as
    /// [`TopicEvent::bytes`](crate::proto::topic::TopicEvent::bytes)): data plus name.
    pub fn bytes(&self) -> usize {
        self.data.len() + self.name.as_deref().map_or(0, str::len)
    }
}

/// One topic's kept history, last id and first id: what
/// [`Topics::restore`](crate::proto::topic::Topics::restore) takes, as
/// `restore(name, t.events.iter().map(StoredEvent::to_topic_event), t.last_id, t.first_id)`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TopicHistory {
    /// The first id of the topic's log: the lowest [`Record::TopicFirst`] first id applied
    /// for it, or, in a log without such a record for it, the lowest event id applied
    /// (exact as long as none of its events was compacted away, since compaction writes
    /// the record). At least 1, and at most the oldest kept id (`last_id + 1` when no
    /// event is kept), so it is a valid `first_id` for `Topics::restore`: a read from
    /// `since = 0` reports a gap exactly when the history was trimmed.
    pub first_id: u64,
    /// The id of the last event published; the next one gets `last_id + 1`. For a topic
    /// with no event kept (only a [`Record::TopicFirst`] was applied) it is
    /// `first_id - 1`: nothing was published. A [`Record::TopicRange`] moves it above the
    /// newest kept event.
    pub last_id: u64,
    /// Kept events, oldest first, with ascending ids up to `last_id` (consecutive but
    /// where a new id range starts, see [`Record::TopicRange`]).
    pub events: VecDeque<StoredEvent>,
    /// Sum of [`StoredEvent::bytes`] over `events`.
    pub bytes: usize,
}

/// One webhook registration.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Webhook {
    /// The topic it follows.
    pub topic: String,
    /// The target URL.
    pub url: String,
    /// The raw signing key.
    pub secret: Vec<u8>,
    /// Disabled for good (by a 410 Gone).
    pub disabled: bool,
}

/// Where one undelivered message stands.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Delivery {
    /// Attempts made so far.
    pub attempts: u32,
    /// When the next attempt is due, Unix milliseconds.
    pub next_attempt_ms: u64,
}

/// The undelivered messages of one published event: its `webhook-id`, its body and,
/// per endpoint not yet done, where delivery stands.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct OutboxEntry {
    /// The `webhook-id` the messages share.
    pub webhook_id: String,
    /// The request body they share.
    pub body: Vec<u8>,
    /// The first attempt's due time, as enqueued (kept so a compacted log says the same).
    pub enqueued_next_ms: u64,
    /// Per endpoint, in ascending order: the messages not yet at their final outcome.
    pub messages: BTreeMap<u64, Delivery>,
}

/// Why [`Recovered::apply`] ignored a record: the log contradicts itself (a writer bug,
/// or segments from different runs mixed up). Recovery goes on; the driver logs these.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Skip {
    /// An event whose id is not above its topic's last id.
    StaleEvent {
        /// The topic.
        topic: String,
        /// The event's id.
        id: u64,
        /// The topic's last id.
        last_id: u64,
    },
    /// An event for a new topic beyond [`HistoryLimits::max_topics`].
    TooManyTopics,
    /// A registration for an endpoint id that is already registered.
    DuplicateEndpoint(u64),
    /// A record naming an endpoint that is not registered (or no longer).
    UnknownEndpoint(u64),
    /// An outbox entry whose `webhook-id` is already queued.
    DuplicateMessage,
    /// An attempt or outcome for a message that is not queued.
    UnknownMessage,
    /// A new id range for a topic the log does not hold.
    UnknownTopic(String),
    /// A drop of a topic the log does not hold.
    UnknownDropped(String),
}

impl fmt::Display for Skip {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Skip::StaleEvent { topic, id, last_id } => {
                write!(
                    f,
                    "event {id} of {topic:?} is not after its last id {last_id}"
                )
            }
            Skip::TooManyTopics => f.write_str("event for a topic beyond the topic limit"),
            Skip::DuplicateEndpoint(e) => write!(f, "endpoint {e} registered twice"),
            Skip::UnknownEndpoint(e) => write!(f, "endpoint {e} is not registered"),
            Skip::DuplicateMessage => f.write_str("webhook-id queued twice"),
            Skip::UnknownMessage => f.write_str("message not in the outbox"),
            Skip::UnknownTopic(t) => write!(f, "id range for the unknown topic {t:?}"),
            Skip::UnknownDropped(t) => write!(f, "drop of the unknown topic {t:?}"),
        }
    }
}

/// The live state of a log: what survives a restart (see the module docs).
#[derive(Clone, Debug)]
pub struct Recovered {
    limits: HistoryLimits,
    /// Every topic with its kept history, by name.
    topics: BTreeMap<String, TopicHistory>,
    /// Sum of [`TopicHistory::bytes`] over `topics`.
    total_bytes: usize,
    /// The topics keeping events, by `(bytes, name)`: the total budget takes
    /// from the last, as [`Topics`](crate::proto::topic::Topics) does.
    by_size: BTreeSet<(usize, String)>,
    /// Every registration, by endpoint id.
    webhooks: BTreeMap<u64, Webhook>,
    /// The outbox, in the order its entries were first queued (keys: that order).
    outbox: BTreeMap<u64, OutboxEntry>,
    /// `webhook-id` to its key in `outbox`.
    outbox_index: HashMap<String, u64>,
    /// Key of the next outbox entry.
    outbox_seq: u64,
    /// The lowest endpoint id never issued.
    next_endpoint: u64,
}

/// Two states are equal when they hold the same topics, registrations and outbox (in the
/// same order) under the same limits.
impl PartialEq for Recovered {
    fn eq(&self, other: &Recovered) -> bool {
        self.limits == other.limits
            && self.topics == other.topics
            && self.webhooks == other.webhooks
            && self.outbox().eq(other.outbox())
            && self.next_endpoint == other.next_endpoint
    }
}

impl Eq for Recovered {}

impl Recovered {
    /// An empty state whose topics keep history within `limits`.
    pub fn new(limits: HistoryLimits) -> Recovered {
        Recovered {
            limits,
            topics: BTreeMap::new(),
            total_bytes: 0,
            by_size: BTreeSet::new(),
            webhooks: BTreeMap::new(),
            outbox: BTreeMap::new(),
            outbox_index: HashMap::new(),
            outbox_seq: 0,
            next_endpoint: 1,
        }
    }

    /// The history limits applied.
    pub fn limits(&self) -> HistoryLimits {
        self.limits
    }

    /// Takes every topic out (leaving none), so that restoring them one by one frees each
    /// recovered history as it goes instead of holding two copies.
    pub fn take_topics(&mut self) -> BTreeMap<String, TopicHistory> {
        self.total_bytes = 0;
        self.by_size.clear();
        std::mem::take(&mut self.topics)
    }

    /// Bytes kept across all topics: within
    /// [`HistoryLimits::max_total_bytes`] but when every topic keeps only its newest event.
    pub fn total_bytes(&self) -> usize {
        self.total_bytes
    }

    /// Every topic with its kept history, by name.
    pub fn topics(&self) -> &BTreeMap<String, TopicHistory> {
        &self.topics
    }

    /// Every registration, by endpoint id.
    pub fn webhooks(&self) -> &BTreeMap<u64, Webhook> {
        &self.webhooks
    }

    /// The outbox entries, in the order they were first queued (the order to re-queue
    /// them in).
    pub fn outbox(&self) -> impl Iterator<Item = &OutboxEntry> + '_ {
        self.outbox.values()
    }

    /// The lowest endpoint id never issued (1 when none was): the restarted engine counts
    /// its endpoint ids from here, so a removed endpoint's id is never given to another.
    pub fn next_endpoint(&self) -> u64 {
        self.next_endpoint
    }

    /// The outbox entry of `webhook_id`.
    pub fn outbox_entry(&self, webhook_id: &str) -> Option<&OutboxEntry> {
        self.outbox.get(self.outbox_index.get(webhook_id)?)
    }

    /// Applies one record (records must come in log order: segment by segment, each in
    /// offset order). A record that contradicts the state is ignored and says why.
    pub fn apply(&mut self, record: Record) -> Result<(), Skip> {
        match record {
            Record::Event {
                topic,
                id,
                name,
                published_ms,
                data,
                json,
            } => {
                let event = StoredEvent {
                    id,
                    name,
                    published_ms,
                    data,
                    json,
                };
                self.apply_event(topic, event)
            }
            Record::WebhookAdded {
                endpoint,
                topic,
                url,
                secret,
                disabled,
            } => {
                if self.webhooks.contains_key(&endpoint) {
                    return Err(Skip::DuplicateEndpoint(endpoint));
                }
                let hook = Webhook {
                    topic,
                    url,
                    secret,
                    disabled,
                };
                self.webhooks.insert(endpoint, hook);
                self.next_endpoint = self.next_endpoint.max(endpoint.saturating_add(1));
                Ok(())
            }
            Record::WebhookDisabled { endpoint } => match self.webhooks.get_mut(&endpoint) {
                Some(w) => {
                    w.disabled = true;
                    Ok(())
                }
                None => Err(Skip::UnknownEndpoint(endpoint)),
            },
            Record::WebhookRemoved { endpoint } => {
                if self.webhooks.remove(&endpoint).is_none() {
                    return Err(Skip::UnknownEndpoint(endpoint));
                }
                // Its messages failed with it: they have their final outcome.
                let keys: Vec<u64> = self.outbox.keys().copied().collect();
                for key in keys {
                    self.finish(key, endpoint);
                }
                Ok(())
            }
            Record::OutboxEnqueued {
                webhook_id,
                next_attempt_ms,
                body,
                endpoints,
            } => self.apply_enqueued(webhook_id, next_attempt_ms, body, endpoints),
            Record::OutboxAttempt {
                webhook_id,
                endpoint,
                attempts,
                next_attempt_ms,
            } => {
                let key = self.outbox_index.get(&webhook_id);
                let entry = key.and_then(|k| self.outbox.get_mut(k));
                let Some(d) = entry.and_then(|e| e.messages.get_mut(&endpoint)) else {
                    return Err(Skip::UnknownMessage);
                };
                *d = Delivery {
                    attempts,
                    next_attempt_ms,
                };
                Ok(())
            }
            Record::OutboxDone {
                webhook_id,
                endpoint,
            } => match self.outbox_index.get(&webhook_id).copied() {
                Some(key) if self.finish(key, endpoint) => Ok(()),
                _ => Err(Skip::UnknownMessage),
            },
            Record::NextEndpoint { next } => {
                self.next_endpoint = self.next_endpoint.max(next);
                Ok(())
            }
            Record::TopicFirst { topic, first_id } => self.apply_first(topic, first_id),
            Record::Group { records } => {
                // The writer's records of one publish or one batch: each applies as it
                // would alone (a contradiction skips only the record that has it).
                let mut first_skip = Ok(());
                for r in records {
                    if let Err(skip) = self.apply(r) {
                        first_skip = first_skip.and(Err(skip));
                    }
                }
                first_skip
            }
            Record::TopicRange { topic, last_id } => match self.topics.get_mut(&topic) {
                Some(t) => {
                    t.last_id = t.last_id.max(last_id);
                    Ok(())
                }
                None => Err(Skip::UnknownTopic(topic)),
            },
            Record::TopicDropped { topic } => {
                if !self.topics.contains_key(&topic) {
                    return Err(Skip::UnknownDropped(topic));
                }
                // Forgotten: compaction writes nothing of it, and its next event starts a
                // new log (the lowest-first-id rule of `TopicFirst` does not reach back).
                self.unindex(&topic);
                self.topics.remove(&topic);
                Ok(())
            }
        }
    }

    /// A topic's log begins at `first_id` (at least 1: decoding refuses 0). The lowest
    /// first id seen wins; a new topic starts with no event and `last_id = first_id - 1`.
    fn apply_first(&mut self, topic: String, first_id: u64) -> Result<(), Skip> {
        if let Some(t) = self.topics.get_mut(&topic) {
            t.first_id = t.first_id.min(first_id);
            if t.events.is_empty() {
                t.last_id = t.first_id - 1;
            }
            return Ok(());
        }
        if self.topics.len() >= self.limits.max_topics {
            return Err(Skip::TooManyTopics);
        }
        let t = TopicHistory {
            first_id,
            last_id: first_id - 1,
            events: VecDeque::new(),
            bytes: 0,
        };
        self.topics.insert(topic, t);
        Ok(())
    }

    fn apply_event(&mut self, topic: String, event: StoredEvent) -> Result<(), Skip> {
        match self.topics.get(&topic) {
            Some(t) if event.id <= t.last_id => {
                let last_id = t.last_id;
                let id = event.id;
                return Err(Skip::StaleEvent { topic, id, last_id });
            }
            None if self.topics.len() >= self.limits.max_topics => return Err(Skip::TooManyTopics),
            _ => {}
        }
        let limits = self.limits;
        self.unindex(&topic);
        // Without a `TopicFirst` before it, a topic's first event gives its first id.
        let t = self
            .topics
            .entry(topic.clone())
            .or_insert_with(|| TopicHistory {
                first_id: event.id,
                last_id: 0,
                events: VecDeque::new(),
                bytes: 0,
            });
        t.last_id = event.id;
        t.bytes += event.bytes();
        t.events.push_back(event);
        // The eviction rule of `Topics::publish`: the newest event always stays.
        while t.events.len() > 1
            && (t.events.len() > limits.max_events || t.bytes > limits.max_bytes)
        {
            if let Some(old) = t.events.pop_front() {
                t.bytes -= old.bytes();
            }
        }
        self.index(topic);
        self.enforce_total();
        Ok(())
    }

    fn apply_enqueued(
        &mut self,
        webhook_id: String,
        next_attempt_ms: u64,
        body: Vec<u8>,
        endpoints: Vec<u64>,
    ) -> Result<(), Skip> {
        if self.outbox_index.contains_key(&webhook_id) {
            return Err(Skip::DuplicateMessage);
        }
        if let Some(&e) = endpoints.iter().find(|e| !self.webhooks.contains_key(e)) {
            return Err(Skip::UnknownEndpoint(e));
        }
        let first = Delivery {
            attempts: 0,
            next_attempt_ms,
        };
        let messages = endpoints.into_iter().map(|e| (e, first)).collect();
        let key = self.outbox_seq;
        self.outbox_seq += 1;
        self.outbox_index.insert(webhook_id.clone(), key);
        let entry = OutboxEntry {
            webhook_id,
            body,
            enqueued_next_ms: next_attempt_ms,
            messages,
        };
        self.outbox.insert(key, entry);
        Ok(())
    }

    /// Drops the message of `endpoint` in outbox entry `key`, and the entry once it has no
    /// message left. Whether there was such a message.
    fn finish(&mut self, key: u64, endpoint: u64) -> bool {
        let Some(entry) = self.outbox.get_mut(&key) else {
            return false;
        };
        let found = entry.messages.remove(&endpoint).is_some();
        if entry.messages.is_empty() {
            self.outbox_index.remove(&entry.webhook_id);
            self.outbox.remove(&key);
        }
        found
    }

    /// The records that rebuild this state, in an order [`Recovered::apply`] accepts:
    /// topics (each its first id, then each kept event), the next endpoint id (when one
    /// was issued), registrations,
    /// then the outbox (each entry, then an
    /// attempt record for every message already attempted).
    pub fn live_records(&self) -> impl Iterator<Item = Record> + '_ {
        let events = self.topics.iter().flat_map(|(topic, t)| {
            let first = Record::TopicFirst {
                topic: topic.clone(),
                first_id: t.first_id,
            };
            let events = t.events.iter().map(move |e| Record::Event {
                topic: topic.clone(),
                id: e.id,
                name: e.name.clone(),
                published_ms: e.published_ms,
                data: e.data.clone(),
                json: e.json,
            });
            let newest = t.events.back().map_or(t.first_id - 1, |e| e.id);
            let range = (t.last_id > newest).then(|| Record::TopicRange {
                topic: topic.clone(),
                last_id: t.last_id,
            });
            std::iter::once(first).chain(events).chain(range)
        });
        let hooks = self
            .webhooks
            .iter()
            .map(|(&endpoint, w)| Record::WebhookAdded {
                endpoint,
                topic: w.topic.clone(),
                url: w.url.clone(),
                secret: w.secret.clone(),
                disabled: w.disabled,
            });
        let outbox = self.outbox.values().flat_map(|o| {
            let enqueued = Record::OutboxEnqueued {
                webhook_id: o.webhook_id.clone(),
                next_attempt_ms: o.enqueued_next_ms,
                body: o.body.clone(),
                endpoints: o.messages.keys().copied().collect(),
            };
            let attempts = o
                .messages
                .iter()
                .filter(|(_, d)| d.attempts > 0 || d.next_attempt_ms != o.enqueued_next_ms);
            let attempts = attempts.map(|(&endpoint, d)| Record::OutboxAttempt {
                webhook_id: o.webhook_id.clone(),
                endpoint,
                attempts: d.attempts,
                next_attempt_ms: d.next_attempt_ms,
            });
            std::iter::once(enqueued).chain(attempts)
        });
        let next = (self.next_endpoint > 1).then_some(Record::NextEndpoint {
            next: self.next_endpoint,
        });
        events.chain(next).chain(hooks).chain(outbox)
    }

    /// Appends a compacted segment to `out`: a header and the [live
    /// records](Recovered::live_records), nothing else. Scanning it and applying its records
    /// to an empty state with the same limits gives this state back. Returns the bytes
    /// appended; on error (a live record over `max_record`) `out` is left as it was.
    pub fn compact(&self, out: &mut Vec<u8>, max_record: usize) -> Result<usize, RecordError> {
        let start = out.len();
        write_header(out);
        for record in self.live_records() {
            if let Err(e) = record.encode(out, max_record) {
                out.truncate(start);
                return Err(e);
            }
        }
        Ok(out.len() - start)
    }

    /// The bytes [`Recovered::compact`] would write: the live data. The driver compacts
    /// when its segments hold about twice this. It encodes every live record (one at a
    /// time, into a scratch buffer), so call it seldom: after each few megabytes appended.
    pub fn live_len(&self) -> usize {
        let mut scratch = Vec::new();
        let mut total = super::scan::SEGMENT_HEADER_LEN;
        for record in self.live_records() {
            scratch.clear();
            total += record.encode(&mut scratch, usize::MAX).unwrap_or(0);
        }
        total
    }
}
