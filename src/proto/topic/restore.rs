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

impl Topics {
    /// Appends an event whose id was given elsewhere (by the Redis backplane), creating
    /// the topic with `first_id` (see [`Topics::restore`]) when it is not known. The id
    /// must be above the topic's last id: a larger step is a new id range, as after a
    /// restart (readers with a cursor before it see the gap by the id rule). `now_us`
    /// counts as the topic's activity for expiry. Returns the event as kept, for the
    /// fan-out.
    pub fn append(
        &mut self,
        topic: &str,
        ev: TopicEvent,
        first_id: u64,
        now_us: u64,
    ) -> Result<Rc<TopicEvent>, RestoreError> {
        if !self.topics.contains_key(topic) {
            let first_id = first_id.clamp(1, ev.id);
            self.restore_inner(topic, std::iter::empty(), ev.id - 1, first_id, Some(now_us))?;
        }
        if ev.event.as_deref().is_some_and(|n| !valid_event_name(n)) {
            return Err(RestoreError::BadEventName { id: ev.id });
        }
        if ev.id >= MAX_ID {
            return Err(RestoreError::IdTooLarge { last_id: ev.id });
        }
        let Some((name, t)) = self.topics.get_key_value(topic) else {
            return Err(RestoreError::BadTopic); // unreachable: created just above
        };
        if ev.id <= t.last_id {
            let (after, id) = (t.last_id, ev.id);
            return Err(RestoreError::NotAscending { after, id });
        }
        let name = Rc::clone(name);
        self.unindex(&name);
        self.touch(&name, now_us);
        let ev = Rc::new(ev);
        if let Some(t) = self.topics.get_mut(topic) {
            t.last_id = ev.id;
            t.push(Rc::clone(&ev), self.limits);
        }
        self.index(name);
        self.enforce_total();
        Ok(ev)
    }
}

#[cfg(test)]
mod append_tests {
    use super::super::HistoryLimits;
    use super::*;

    fn ev(id: u64) -> TopicEvent {
        TopicEvent {
            id,
            event: None,
            data: format!("e{id}").into(),
            json: false,
            published_ms: 5,
        }
    }

    #[test]
    fn append_creates_then_continues_and_refuses_old_ids() {
        let mut t = Topics::new(HistoryLimits::default());
        t.append("a", ev(100), 100, 1).unwrap();
        t.append("a", ev(101), 1, 2).unwrap();
        assert_eq!(t.last_id("a"), 101);
        let page = t.read_after("a", 0, 10);
        assert!(!page.gap, "first id 100: nothing before it was lost");
        assert_eq!(page.events.len(), 2);
        assert_eq!(
            t.append("a", ev(101), 1, 3),
            Err(RestoreError::NotAscending {
                after: 101,
                id: 101
            })
        );
        // A jump is a new range: a cursor before it gets the next event, not 102.
        t.append("a", ev(5000), 1, 4).unwrap();
        let page = t.read_after("a", 101, 10);
        assert_eq!(page.events.first().map(|e| e.id), Some(5000));
    }

    #[test]
    fn append_with_an_unknown_start_reports_the_gap_from_zero() {
        let mut t = Topics::new(HistoryLimits::default());
        t.append("b", ev(50), 1, 1).unwrap();
        assert!(t.read_after("b", 0, 10).gap);
        let bad = TopicEvent {
            event: Some("".into()),
            ..ev(51)
        };
        assert!(t.append("b", bad, 1, 1).is_err());
        assert_eq!(t.last_id("b"), 50);
    }
}
