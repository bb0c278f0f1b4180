//! A batch through the durable log: one record for the whole batch (a [`Record::Group`]
//! of its topic's first id when it starts the log, its events, and their outbox entries),
//! so a crash keeps all of it or none, and one held operation until it is durable.
//!
//! The on-disk format is unchanged: a group already holds "records that take effect
//! together", and recovery applies a group's events in order as it applies single ones.

use std::ops::RangeInclusive;

use super::{unix_micros, HeldPublish, Op, Prepared};
use crate::driver::Core;
use crate::proto::store::Record;
use crate::proto::topic::{batch_ids, PublishError, TopicEvent};

/// A batch written but not yet durable: its events take effect together.
pub(super) struct HeldBatch {
    /// The batch's first event: topic, name, time, first id, the first item's data and
    /// webhooks.
    pub(super) first: HeldPublish,
    /// The data of the events after the first.
    pub(super) rest: Vec<Box<str>>,
    /// The webhooks prepared for the events after the first.
    pub(super) rest_hooks: Vec<Option<Prepared>>,
}

impl HeldBatch {
    /// The last id of the batch.
    pub(super) fn last_id(&self) -> u64 {
        self.first.id + self.rest.len() as u64
    }
}

impl Core {
    /// Publishes a batch through the durable log: see the module docs. Refused as a whole
    /// before anything is written: an empty batch, a bad name, the topic limit, the disk
    /// behind, or a batch too large for one record ([`PublishError::TooLarge`]).
    pub(crate) fn publish_durable_batch(
        &mut self,
        topic: &str,
        event: Option<&str>,
        datas: &[&str],
        json: bool,
    ) -> Result<RangeInclusive<u64>, PublishError> {
        let now_us = unix_micros();
        if self.store.is_none() {
            return self.publish_batch_now(topic, event, datas, json, now_us, Vec::new());
        }
        if datas.is_empty() {
            return Err(PublishError::EmptyBatch);
        }
        let (first, starts_log) = self.durable_next_id(topic, event, now_us)?;
        let published_ms = now_us / 1000;
        let endpoints = self.hook_ids(topic);
        let mut records = Vec::with_capacity(datas.len() * 2 + 1);
        if starts_log {
            let first_id = first;
            records.push(Record::TopicFirst {
                topic: topic.into(),
                first_id,
            });
        }
        let mut hooks = Vec::with_capacity(datas.len());
        for (id, data) in batch_ids(first, datas.len()).zip(datas) {
            records.push(Record::Event {
                topic: topic.into(),
                id,
                name: event.map(Into::into),
                published_ms,
                data: (*data).into(),
                json,
            });
            if endpoints.is_empty() {
                hooks.push(None);
                continue;
            }
            let ev = TopicEvent {
                id,
                event: event.map(Into::into),
                data: (*data).into(),
                json,
                published_ms,
            };
            let (wid, body) = self.hooks.reg.prepare(topic, &ev, published_ms);
            let mut ids: Vec<u64> = endpoints.iter().map(|e| e.as_u64()).collect();
            ids.sort_unstable();
            ids.dedup();
            records.push(Record::OutboxEnqueued {
                webhook_id: wid.to_string(),
                next_attempt_ms: published_ms,
                body: body.to_vec(),
                endpoints: ids,
            });
            hooks.push(Some((wid, body, endpoints.clone())));
        }
        if records.len() > 1 {
            // One batch is one record: a torn write keeps all of it or none.
            records = vec![Record::Group { records }];
        }
        let Some(s) = self.store.as_mut() else {
            return Err(PublishError::TooLarge); // unreachable: checked above
        };
        let holds = s.holds();
        let seq = s.send(&records, true)?;
        if !holds {
            return self.publish_batch_now(topic, event, datas, json, now_us, hooks);
        }
        let ids = batch_ids(first, datas.len());
        s.reserved.insert(topic.into(), *ids.end());
        let mut hooks = hooks.into_iter();
        let held = HeldBatch {
            first: HeldPublish {
                topic: topic.into(),
                event: event.map(Into::into),
                data: datas[0].into(),
                json,
                now_us,
                id: first,
                hooks: hooks.next().flatten(),
            },
            rest: datas[1..].iter().map(|d| (*d).into()).collect(),
            rest_hooks: hooks.collect(),
        };
        s.pending.push_back((seq, Op::Batch(held)));
        Ok(ids)
    }

    /// A held batch is durable: it takes effect, all of it in this step.
    pub(super) fn commit_batch(&mut self, b: HeldBatch) {
        let HeldBatch {
            first: p,
            rest,
            rest_hooks,
        } = b;
        let mut datas: Vec<&str> = Vec::with_capacity(rest.len() + 1);
        datas.push(&p.data);
        datas.extend(rest.iter().map(|d| &**d));
        let mut hooks = Vec::with_capacity(datas.len());
        hooks.push(p.hooks);
        hooks.extend(rest_hooks);
        let (topic, event) = (&*p.topic, p.event.as_deref());
        match self.publish_batch_now(topic, event, &datas, p.json, p.now_us, hooks) {
            Ok(ids) if *ids.start() == p.id && ids.clone().count() == datas.len() => {}
            other => log::error!("store: held batch {} of {topic:?} became {other:?}", p.id),
        }
    }
}

#[cfg(test)]
mod tests {
    use crate::proto::store::{scan, Record, Recovered, Tail, DEFAULT_MAX_RECORD, SEGMENT_HEADER};
    use crate::proto::topic::HistoryLimits;

    /// The record a batch of three events starting a topic's log is written as.
    fn batch_record() -> Record {
        let event = |id, data: &str| Record::Event {
            topic: "t".into(),
            id,
            name: Some("up".into()),
            published_ms: 7,
            data: data.into(),
            json: false,
        };
        let records = vec![
            Record::TopicFirst {
                topic: "t".into(),
                first_id: 10,
            },
            event(10, "{\"a\":1}"),
            event(11, "2"),
            event(12, "[3]"),
        ];
        Record::Group { records }
    }

    #[test]
    fn a_batch_is_one_record_kept_whole_or_not_at_all() {
        let mut seg = SEGMENT_HEADER.to_vec();
        batch_record().encode(&mut seg, DEFAULT_MAX_RECORD).unwrap();
        let whole = scan(&seg, DEFAULT_MAX_RECORD);
        assert_eq!((whole.records.len(), whole.tail), (1, Tail::Clean));
        let mut state = Recovered::new(HistoryLimits::default());
        for (_, r) in whole.records {
            state.apply(r).unwrap();
        }
        let t = &state.topics()["t"];
        let got: Vec<_> = t.events.iter().map(|e| (e.id, e.data.as_str())).collect();
        assert_eq!(got, [(10, "{\"a\":1}"), (11, "2"), (12, "[3]")]);
        assert_eq!((t.first_id, t.last_id), (10, 12));
        // A crash anywhere in the write leaves a torn tail and none of the batch.
        for cut in SEGMENT_HEADER.len() + 1..seg.len() {
            let torn = scan(&seg[..cut], DEFAULT_MAX_RECORD);
            assert!(torn.records.is_empty(), "cut at {cut}");
            assert!(matches!(torn.tail, Tail::Torn { .. }), "cut at {cut}");
        }
    }

    #[test]
    fn a_batch_over_the_record_limit_does_not_encode() {
        let mut out = Vec::new();
        assert!(batch_record().encode(&mut out, 40).is_err());
        assert!(out.is_empty());
    }
}
