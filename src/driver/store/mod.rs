//! The loop's side of the durable log: what it writes, what it holds back until the
//! writer thread says it is on disk, and recovery at start.
//!
//! With a data directory every publish, registration and outbox change becomes a record
//! ([`crate::proto::store`]) sent to the writer thread ([`writer`]). In [`Fsync::Always`]
//! mode a publish takes its id at once (the publisher learns it) but is **held**: it
//! enters the topic log, reaches subscribers and queues its webhooks only when the writer
//! reports an fsync covering it, and the reply of the request that published it is held
//! just as long. When the write fails (a full disk), the held reply becomes 507 and the
//! event never existed: its id is handed out again. In [`Fsync::Interval`] mode publishes
//! take effect at once; after a failed write they are held like in `always` mode until a
//! write succeeds again.

mod batch;
mod dir;
mod recover;
mod writer;

#[cfg(test)]
mod tests;

use std::collections::{HashMap, VecDeque};
use std::fs::File;
use std::rc::Rc;
use std::sync::mpsc::Sender;
use std::thread::JoinHandle;

use log::{error, warn};

use super::Core;
use crate::api::ConnId;
use crate::config::Fsync;
use crate::proto::http1::Response;
use crate::proto::store::{Record, DEFAULT_MAX_RECORD};
use crate::proto::topic::{valid_event_name, PublishError, TopicEvent};
use crate::proto::webhook::EndpointId;

pub(crate) use recover::open;
pub(crate) use writer::Report;
use writer::ToWriter;

/// Bytes of publishes on their way to the disk beyond which publishing is refused (503)
/// until the writer catches up: the queue to the writer thread has a budget too.
const UNWRITTEN_BUDGET: usize = 64 << 20;

/// What the webhooks of a publish share: its `webhook-id`, body and endpoints.
pub(crate) type Prepared = (Rc<str>, Rc<[u8]>, Vec<EndpointId>);

/// A publish written but not yet durable.
pub(crate) struct HeldPublish {
    topic: Box<str>,
    event: Option<Box<str>>,
    data: Box<str>,
    /// The events are JSON ([`TopicEvent::json`]).
    json: bool,
    now_us: u64,
    id: u64,
    hooks: Option<Prepared>,
}

/// Something waiting for the writer.
enum Op {
    Publish(HeldPublish),
    /// A batch: its events take effect together.
    Batch(batch::HeldBatch),
    /// A registration: undone if its record cannot be written.
    HookAdded(EndpointId, String),
    /// Nothing to do: makes a reply wait for the bookkeeping written before it (a
    /// removal) to be durable.
    Barrier,
    /// The reply of a request whose records are not yet durable.
    Reply(ConnId, Response),
}

/// The loop's handle on the data directory and its writer thread.
pub(crate) struct Store {
    tx: Sender<ToWriter>,
    thread: Option<JoinHandle<()>>,
    _lock: File,
    mode: Fsync,
    /// The seq of the last acknowledging write sent.
    seq: u64,
    pending: VecDeque<(u64, Op)>,
    /// Topics with held publishes: the last id handed out.
    reserved: HashMap<Box<str>, u64>,
    /// (interval mode) The last write failed: hold publishes until one succeeds.
    failing: bool,
    /// Acknowledging writes sent but not yet reported written: seq and bytes.
    unwritten: VecDeque<(u64, usize)>,
    /// Sum of the bytes in `unwritten`: publishes are refused past [`UNWRITTEN_BUDGET`].
    unwritten_bytes: usize,
    /// No more records: the server is stopping (its outcomes are not final ones).
    closing: bool,
    /// This round's records, sent at its end ([`Core::store_flush`]).
    batch: Vec<u8>,
    parts: Vec<(u64, usize)>,
}

pub(crate) fn unix_micros() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_micros() as u64)
}

impl Store {
    /// Whether `topic` has a publish on its way to the disk (it must not expire meanwhile:
    /// the id written would not match a fresh log's).
    pub(crate) fn holds_topic(&self, topic: &str) -> bool {
        self.reserved.contains_key(topic)
    }

    /// `topic` was removed: its held publishes (written before the removal's record, so
    /// a restart drops them with the topic) will not enter the history when their fsync
    /// comes; their replies still go out (the events existed, then the topic went).
    pub(crate) fn forget_topic(&mut self, topic: &str) {
        self.reserved.remove(topic);
        for (_, op) in &mut self.pending {
            let held = match op {
                Op::Publish(p) => &*p.topic == topic,
                Op::Batch(b) => &*b.first.topic == topic,
                _ => false,
            };
            if held {
                *op = Op::Barrier;
            }
        }
    }

    /// Whether a publish now must wait for the writer.
    fn holds(&self) -> bool {
        self.mode == Fsync::Always || self.failing || !self.reserved.is_empty()
    }

    /// Encodes `records` and sends them; `ack`: the loop waits for them (returns the seq).
    /// Forgets the byte count of the writes up to `seq` (written, or refused).
    fn written(&mut self, seq: u64) {
        while let Some(&(q, n)) = self.unwritten.front() {
            if q > seq {
                break;
            }
            self.unwritten.pop_front();
            self.unwritten_bytes -= n;
        }
    }

    /// Encodes `records` into this round's batch as one write; `ack`: the loop waits for
    /// it (returns its seq, else 0). Nothing is added when one does not encode.
    fn send(&mut self, records: &[Record], ack: bool) -> Result<u64, PublishError> {
        let start = self.batch.len();
        for r in records {
            if r.encode(&mut self.batch, DEFAULT_MAX_RECORD).is_err() {
                self.batch.truncate(start);
                return Err(PublishError::TooLarge);
            }
        }
        let seq = if ack {
            self.seq += 1;
            let n = self.batch.len() - start;
            self.unwritten.push_back((self.seq, n));
            self.unwritten_bytes += n;
            self.seq
        } else {
            0
        };
        self.parts.push((seq, self.batch.len()));
        Ok(seq)
    }

    /// Hands this round's batch to the writer thread.
    fn flush(&mut self) {
        if self.parts.is_empty() {
            return;
        }
        let bytes = std::mem::take(&mut self.batch);
        let parts = std::mem::take(&mut self.parts);
        if self.tx.send(ToWriter::Write { bytes, parts }).is_err() {
            error!("store: the writer thread is gone");
        }
    }
}

impl Core {
    /// Operations waiting for the writer (for [`Stats::store_held`](crate::api::Stats::store_held)).
    pub(crate) fn store_held(&self) -> usize {
        self.store.as_ref().map_or(0, |s| s.pending.len())
    }

    /// The seq of the last acknowledging write (to tell whether a callback wrote any).
    pub(crate) fn store_mark(&self) -> u64 {
        self.store.as_ref().map_or(0, |s| s.seq)
    }

    /// Holds `resp`, the reply to `conn`, until the writes made since `mark` are durable.
    /// Returns it back when nothing is waiting.
    pub(crate) fn hold_reply(
        &mut self,
        mark: u64,
        conn: ConnId,
        resp: Response,
    ) -> Option<Response> {
        let Some(s) = self.store.as_mut() else {
            return Some(resp);
        };
        let waiting = s.pending.back().is_some_and(|(seq, _)| *seq > mark);
        if !waiting {
            return Some(resp);
        }
        let seq = s.seq;
        s.pending.push_back((seq, Op::Reply(conn, resp)));
        None
    }

    /// The id the next durable publish to `topic` gets, checked like a publish (a topic
    /// that holds a reserved id is counted already: only the event name is checked), and
    /// whether it starts the topic's log. `StoreBusy` while too much waits to be written.
    pub(super) fn durable_next_id(
        &self,
        topic: &str,
        event: Option<&str>,
        now_us: u64,
    ) -> Result<(u64, bool), PublishError> {
        let Some(s) = self.store.as_ref() else {
            return Err(PublishError::StoreBusy); // unreachable: callers hold a store
        };
        if s.unwritten_bytes > UNWRITTEN_BUDGET {
            return Err(PublishError::StoreBusy);
        }
        let reserved = s.reserved.get(topic).copied();
        let id = match reserved {
            Some(last) => {
                if event.is_some_and(|name| !valid_event_name(name)) {
                    return Err(PublishError::BadEventName);
                }
                last + 1
            }
            None => {
                let new_held = s
                    .reserved
                    .keys()
                    .filter(|t| !self.topics.contains(t))
                    .count();
                self.topics.check_publish(topic, event, now_us, new_held)?
            }
        };
        Ok((id, reserved.is_none() && !self.topics.contains(topic)))
    }

    /// Publishes through the durable log: see the module docs.
    pub(crate) fn publish_durable(
        &mut self,
        topic: &str,
        event: Option<&str>,
        data: &str,
        json: bool,
    ) -> Result<u64, PublishError> {
        let now_us = unix_micros();
        if self.store.is_none() {
            return self.publish_now(topic, event, data, json, now_us, None);
        }
        let (id, first) = self.durable_next_id(topic, event, now_us)?;
        let published_ms = now_us / 1000;
        let ids = self.hook_ids(topic);
        let hooks = (!ids.is_empty()).then(|| {
            let ev = TopicEvent {
                id,
                event: event.map(Into::into),
                data: data.into(),
                json,
                published_ms,
            };
            let (wid, body) = self.hooks.reg.prepare(topic, &ev, published_ms);
            (wid, body, ids)
        });
        let mut records = Vec::with_capacity(3);
        if first {
            let (topic, first_id) = (topic.into(), id);
            records.push(Record::TopicFirst { topic, first_id });
        }
        records.push(Record::Event {
            topic: topic.into(),
            id,
            name: event.map(Into::into),
            published_ms,
            data: data.into(),
            json,
        });
        if let Some((wid, body, ids)) = &hooks {
            let mut endpoints: Vec<u64> = ids.iter().map(|e| e.as_u64()).collect();
            endpoints.sort_unstable();
            endpoints.dedup();
            records.push(Record::OutboxEnqueued {
                webhook_id: wid.to_string(),
                next_attempt_ms: published_ms,
                body: body.to_vec(),
                endpoints,
            });
        }
        if records.len() > 1 {
            // One publish is one record: a torn write keeps all of it or none.
            records = vec![Record::Group { records }];
        }
        let Some(s) = self.store.as_mut() else {
            return Err(PublishError::TooLarge); // unreachable: checked above
        };
        let holds = s.holds();
        let seq = s.send(&records, true)?;
        if !holds {
            return self.publish_now(topic, event, data, json, now_us, hooks);
        }
        s.reserved.insert(topic.into(), id);
        let held = HeldPublish {
            topic: topic.into(),
            event: event.map(Into::into),
            data: data.into(),
            json,
            now_us,
            id,
            hooks,
        };
        s.pending.push_back((seq, Op::Publish(held)));
        Ok(id)
    }

    /// Writes a registration; returns whether it is held (undone if it cannot be written).
    pub(crate) fn store_hook_added(
        &mut self,
        endpoint: EndpointId,
        topic: &str,
        url: &str,
        secret: &[u8],
    ) {
        let Some(s) = self.store.as_mut() else { return };
        let record = Record::WebhookAdded {
            endpoint: endpoint.as_u64(),
            topic: topic.into(),
            url: url.into(),
            secret: secret.to_vec(),
            disabled: false,
        };
        let holds = s.holds();
        if let Ok(seq) = s.send(&[record], true) {
            if holds {
                s.pending
                    .push_back((seq, Op::HookAdded(endpoint, topic.into())));
            }
        }
    }

    /// Writes a bookkeeping record (outbox progress, a removal). Nothing waits for it;
    /// nothing is written once the server is stopping.
    pub(crate) fn store_note(&mut self, record: Record) {
        let Some(s) = self.store.as_mut() else { return };
        if !s.closing {
            let _ = s.send(&[record], false);
        }
    }

    /// Sends this round's records to the writer (the loop calls it after every round).
    pub(crate) fn store_flush(&mut self) {
        if let Some(s) = self.store.as_mut() {
            s.flush();
        }
    }

    /// Writes a removal: bookkeeping (written again after a failed write, never undone),
    /// and the reply of the request that removed waits for its fsync in `always` mode.
    pub(crate) fn store_removal(&mut self, record: Record) {
        let Some(s) = self.store.as_mut() else { return };
        let _ = s.send(&[record], false);
        if s.mode == Fsync::Always {
            if let Ok(seq) = s.send(&[], true) {
                s.pending.push_back((seq, Op::Barrier));
            }
        }
    }

    /// The server is stopping: what the webhooks report from now on is not final.
    pub(crate) fn store_closing(&mut self) {
        if let Some(s) = self.store.as_mut() {
            s.closing = true;
        }
    }

    /// Stops the writer (it fsyncs and marks a graceful stop) and waits for it.
    pub(crate) fn store_finish(&mut self) {
        let Some(s) = self.store.as_mut() else { return };
        s.closing = true;
        s.flush();
        let _ = s.tx.send(ToWriter::Stop);
        if let Some(t) = s.thread.take() {
            let _ = t.join();
        }
    }

    /// A report of the writer thread.
    pub(crate) fn stored(&mut self, report: Report) {
        let Some(s) = self.store.as_mut() else { return };
        match report {
            Report::Written(seq) if s.mode == Fsync::Interval => {
                s.written(seq);
                s.failing = false;
                self.commit_upto(seq);
            }
            Report::Written(seq) => s.written(seq),
            Report::Durable(seq) => {
                s.written(seq);
                self.commit_upto(seq);
            }
            Report::Failed(seqs, why) => {
                if let Some(&last) = seqs.iter().max() {
                    s.written(last);
                }
                self.write_failed(&seqs, &why);
            }
        }
    }

    fn commit_upto(&mut self, seq: u64) {
        loop {
            let Some(s) = self.store.as_mut() else { return };
            if s.pending.front().is_none_or(|(q, _)| *q > seq) {
                return;
            }
            let Some((_, op)) = s.pending.pop_front() else {
                return;
            };
            match op {
                Op::Publish(p) => {
                    if s.reserved.get(&p.topic) == Some(&p.id) {
                        s.reserved.remove(&p.topic);
                    }
                    let (topic, event) = (&*p.topic, p.event.as_deref());
                    match self.publish_now(topic, event, &p.data, p.json, p.now_us, p.hooks) {
                        Ok(id) if id == p.id => {}
                        other => {
                            error!("store: held publish {} of {topic:?} became {other:?}", p.id)
                        }
                    }
                }
                Op::Batch(b) => {
                    if s.reserved.get(&b.first.topic) == Some(&b.last_id()) {
                        s.reserved.remove(&b.first.topic);
                    }
                    self.commit_batch(b);
                }
                Op::HookAdded(..) | Op::Barrier => {}
                Op::Reply(conn, resp) => {
                    self.respond_to(conn, &resp);
                }
            }
        }
    }

    /// Every held operation fails: the writer refuses them all until it hears `Resume`.
    fn write_failed(&mut self, seqs: &[u64], why: &str) {
        let Some(s) = self.store.as_mut() else { return };
        s.flush(); // whatever this round wrote goes first, to be refused in order
        let held = s.pending.len();
        let answered = seqs
            .iter()
            .filter(|q| !s.pending.iter().any(|(p, _)| p == *q));
        let answered = answered.count();
        if s.mode == Fsync::Interval && answered > 0 {
            error!("store: {answered} writes already answered could not be stored ({why}): a crash now loses them; holding publishes until a write succeeds");
            s.failing = true;
        }
        if held == 0 {
            let _ = s.tx.send(ToWriter::Resume);
            return;
        }
        warn!("store: {why}: refusing {held} held operations");
        self.stats.store_failed += seqs.len() as u64;
        s.reserved.clear();
        let ops: Vec<_> = s.pending.drain(..).collect();
        let _ = s.tx.send(ToWriter::Resume);
        let body = format!("{why}\n");
        for (_, op) in ops {
            match op {
                Op::Publish(_) | Op::Batch(_) | Op::Barrier => {}
                Op::HookAdded(endpoint, topic) => self.forget_webhook(endpoint, &topic),
                Op::Reply(conn, _) => {
                    self.respond_to(conn, &Response::text(507, body.clone()));
                }
            }
        }
    }
}
