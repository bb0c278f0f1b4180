//! Installing a topic's recovered history after a restart (see "Restoring a topic" in
//! the module docs).

use std::rc::Rc;

use super::{valid_event_name, valid_topic, RestoreError, Topic, TopicEvent, Topics, MAX_ID};

impl Topics {
    /// Installs the recovered history of `topic`, a topic not yet known, so that the next
    /// publish to it gets `last_id + 1` (see "Restoring a topic" in the module docs).
    ///
    /// * `events`: the kept events, oldest first, with ascending ids ending at `last_id`;
    ///   it may be empty (the topic then exists with no event kept). Their
    ///   `published_ms` is kept as given. Events over the limits are dropped oldest first,
    ///   as after a publish; the newest is always kept.
    /// * `last_id`: the id of the last event published, below [`MAX_ID`]; above the last
    ///   event's id when a new range was started after it (see the durable log's
    ///   [`Record::TopicRange`](crate::proto::store::Record::TopicRange)).
    /// * `first_id`: the first id of the log this topic continues, at least 1 and at most
    ///   the first event's id (`last_id + 1` when `events` is empty). A read from `since
    ///   = 0` reports a gap when the oldest kept id is above it; so pass the first event's
    ///   id only when nothing before it was lost, and a lower one (1 is always safe) when
    ///   the history was trimmed, or may have been, before the restart.
    ///
    /// A topic that already exists is refused ([`RestoreError::Exists`]), not replaced:
    /// restoring happens once, before publishing starts, and replacing a live history
    /// would move ids and cursors backwards. The topic counts against
    /// [`HistoryLimits::max_topics`](super::HistoryLimits::max_topics). Everything is validated before anything changes: on
    /// an error the table is as before (the events consumed so far are dropped). Memory
    /// stays within the limits while `events` is read. Once installed, the total budget
    /// ([`HistoryLimits::max_total_bytes`](super::HistoryLimits::max_total_bytes)) is applied as after a publish.
    pub fn restore(
        &mut self,
        topic: &str,
        events: impl IntoIterator<Item = TopicEvent>,
        last_id: u64,
        first_id: u64,
    ) -> Result<(), RestoreError> {
        self.restore_inner(topic, events.into_iter(), last_id, first_id, None)
    }

    /// [`Topics::restore`], with `now_us` (Unix microseconds, normally the time of the
    /// restore) as the topic's last activity for expiry ([`Topics::expire`]): a restored
    /// topic nobody uses then lives `ttl` from the restart, so that its clients have the
    /// time to come back. [`Topics::restore`] takes the newest kept event's publish time
    /// instead (0 when none is kept), so after a downtime longer than `ttl` its topics go
    /// at the first `expire` unless they are in use by then.
    pub fn restore_at(
        &mut self,
        topic: &str,
        events: impl IntoIterator<Item = TopicEvent>,
        last_id: u64,
        first_id: u64,
        now_us: u64,
    ) -> Result<(), RestoreError> {
        self.restore_inner(topic, events.into_iter(), last_id, first_id, Some(now_us))
    }

    pub(super) fn restore_inner(
        &mut self,
        topic: &str,
        events: impl Iterator<Item = TopicEvent>,
        last_id: u64,
        first_id: u64,
        now_us: Option<u64>,
    ) -> Result<(), RestoreError> {
        if !valid_topic(topic) {
            return Err(RestoreError::BadTopic);
        }
        if self.topics.contains_key(topic) {
            return Err(RestoreError::Exists);
        }
        if self.topics.len() >= self.limits.max_topics {
            return Err(RestoreError::TooManyTopics);
        }
        if last_id >= MAX_ID {
            return Err(RestoreError::IdTooLarge { last_id });
        }
        let mut t = Topic {
            first_id,
            last_id,
            ..Topic::default()
        };
        let mut prev: Option<u64> = None;
        for ev in events {
            match prev {
                None if first_id == 0 || first_id > ev.id => {
                    let oldest = ev.id;
                    return Err(RestoreError::BadFirstId { first_id, oldest });
                }
                Some(after) if ev.id <= after => {
                    let id = ev.id;
                    return Err(RestoreError::NotAscending { after, id });
                }
                _ => {}
            }
            if ev.id > last_id {
                let event_id = ev.id;
                return Err(RestoreError::WrongLastId { event_id, last_id });
            }
            if ev.event.as_deref().is_some_and(|n| !valid_event_name(n)) {
                return Err(RestoreError::BadEventName { id: ev.id });
            }
            prev = Some(ev.id);
            t.push(Rc::new(ev), self.limits);
        }
        match prev {
            None if first_id == 0 || first_id > last_id + 1 => {
                let oldest = last_id + 1;
                return Err(RestoreError::BadFirstId { first_id, oldest });
            }
            _ => {}
        }
        log::debug!(
            "topic {topic}: restored up to id {last_id} (log from {first_id}), keeping {} events / {} bytes",
            t.history.len(),
            t.bytes
        );
        let newest_us = t
            .history
            .back()
            .map_or(0, |e| e.published_ms.saturating_mul(1000));
        t.active_us = now_us.unwrap_or(newest_us);
        let name: Rc<str> = topic.into();
        self.by_activity.insert((t.active_us, Rc::clone(&name)));
        self.topics.insert(Rc::clone(&name), t);
        self.index(name);
        self.enforce_total();
        Ok(())
    }
}
