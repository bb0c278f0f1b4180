//! Publishing many events to one topic at once: all or none.
//!
//! A batch is checked once (topic name, event name, the topic limit for a new topic, at
//! least one event) and then published as that many single publishes in order, so its
//! ids are consecutive and the history, the per-topic limits and the total budget end
//! exactly as after the same publishes one by one. A refused batch changes nothing.

use std::ops::RangeInclusive;
use std::rc::Rc;

use super::{PublishError, TopicEvent, Topics};

impl Topics {
    /// Appends one event per item of `datas` to `topic`, all named `event`, and returns
    /// them, ids consecutive and ascending. Refused as a whole, with nothing changed, for
    /// a bad topic or event name, the topic limit ([`Topics::publish`]'s refusals), or no
    /// event at all ([`PublishError::EmptyBatch`]).
    pub fn publish_batch<S: AsRef<str>>(
        &mut self,
        topic: &str,
        event: Option<&str>,
        datas: &[S],
        now_us: u64,
    ) -> Result<Vec<Rc<TopicEvent>>, PublishError> {
        self.publish_batch_as(topic, event, datas, false, now_us)
    }

    /// [`Topics::publish_batch`] of events whose [`TopicEvent::json`] flag is `json`
    /// (checked by the caller).
    pub fn publish_batch_as<S: AsRef<str>>(
        &mut self,
        topic: &str,
        event: Option<&str>,
        datas: &[S],
        json: bool,
        now_us: u64,
    ) -> Result<Vec<Rc<TopicEvent>>, PublishError> {
        if datas.is_empty() {
            return Err(PublishError::EmptyBatch);
        }
        // The only refusals of a publish, checked for the first: the others then pass.
        self.check_publish(topic, event, now_us, 0)?;
        datas
            .iter()
            .map(|d| self.publish_as(topic, event, d.as_ref(), json, now_us))
            .collect()
    }
}

/// The ids of a batch of `count` events whose first id is `first` (`count` at least 1).
pub fn batch_ids(first: u64, count: usize) -> RangeInclusive<u64> {
    first..=first + (count.max(1) as u64 - 1)
}

#[cfg(test)]
mod tests {
    use super::super::HistoryLimits;
    use super::*;

    fn limits(max_events: usize, max_bytes: usize, max_topics: usize) -> HistoryLimits {
        HistoryLimits {
            max_events,
            max_bytes,
            max_topics,
            max_total_bytes: usize::MAX,
        }
    }

    fn kept(t: &Topics, topic: &str) -> Vec<(u64, String)> {
        let page = t.read_after(topic, 0, usize::MAX);
        let events = page.events.iter();
        events.map(|e| (e.id, e.data.to_string())).collect()
    }

    #[test]
    fn a_batch_gets_consecutive_ids_in_order() {
        let mut t = Topics::new(limits(100, 1 << 20, 10));
        t.publish("a", None, "x", 1).unwrap();
        let evs = t
            .publish_batch("a", Some("up"), &["p", "q", "r"], 1)
            .unwrap();
        let got: Vec<_> = evs.iter().map(|e| (e.id, &*e.data)).collect();
        assert_eq!(got, [(2, "p"), (3, "q"), (4, "r")]);
        assert!(evs.iter().all(|e| e.event.as_deref() == Some("up")));
        assert_eq!(t.last_id("a"), 4);
        // A new topic starts at the clock, like a single publish.
        let evs = t.publish_batch("b", None, &["1", "2"], 5_000).unwrap();
        assert_eq!((evs[0].id, evs[1].id), (5_000, 5_001));
        assert_eq!(evs[0].published_ms, 5);
        assert_eq!(batch_ids(5_000, 2), 5_000..=5_001);
        assert_eq!(batch_ids(7, 1), 7..=7);
    }

    #[test]
    fn a_refused_batch_changes_nothing() {
        let mut t = Topics::new(limits(100, 1 << 20, 1));
        t.publish("a", None, "x", 1).unwrap();
        let none: [&str; 0] = [];
        // (topic, event, datas) -> error
        let table: &[(&str, Option<&str>, &[&str], PublishError)] = &[
            ("a/b", None, &["x"], PublishError::BadTopic),
            ("a", Some(""), &["x", "y"], PublishError::BadEventName),
            ("a", Some("a b"), &["x"], PublishError::BadEventName),
            ("b", None, &["x", "y"], PublishError::TooManyTopics),
            ("a", None, &none, PublishError::EmptyBatch),
        ];
        for &(topic, event, datas, want) in table {
            assert_eq!(
                t.publish_batch(topic, event, datas, 1).map(drop),
                Err(want),
                "{topic} {event:?}"
            );
            assert_eq!((t.len(), t.last_id("a"), t.total_bytes()), (1, 1, 1));
        }
        assert_eq!(kept(&t, "a"), [(1, "x".to_string())]);
    }

    #[test]
    fn a_batch_evicts_exactly_like_single_publishes() {
        let datas = ["aaaa", "b", "cc", "dddddd", "e", "ff", "g"];
        for lim in [
            limits(3, 1 << 20, 10),
            limits(100, 7, 10),
            limits(0, 0, 10),
            HistoryLimits {
                max_total_bytes: 9,
                ..limits(100, 100, 10)
            },
        ] {
            let (mut one, mut many) = (Topics::new(lim), Topics::new(lim));
            for t in [&mut one, &mut many] {
                t.publish("other", None, "zzzz", 1).unwrap();
            }
            for d in datas {
                one.publish("a", Some("n"), d, 1).unwrap();
            }
            many.publish_batch("a", Some("n"), &datas, 1).unwrap();
            assert_eq!(kept(&one, "a"), kept(&many, "a"), "{lim:?}");
            assert_eq!(kept(&one, "other"), kept(&many, "other"), "{lim:?}");
            assert_eq!(one.total_bytes(), many.total_bytes());
            assert_eq!(
                one.read_after("a", 0, 9).gap,
                many.read_after("a", 0, 9).gap
            );
        }
    }

    #[test]
    fn owned_strings_are_accepted() {
        let mut t = Topics::new(HistoryLimits::default());
        let datas: Vec<String> = (0..3).map(|i| format!("{{\"n\":{i}}}")).collect();
        let evs = t.publish_batch("a", None, &datas, 1).unwrap();
        assert_eq!(&*evs[2].data, "{\"n\":2}");
    }
}
