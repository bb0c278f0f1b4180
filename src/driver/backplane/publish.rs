//! Publishing through the backplane: the publish script on the command link, its reply
//! (the id) reported to the application, `NOSCRIPT` answered by sending the script once.
//! A batch of more than one event goes as one call of the batch script
//! ([`bp::BATCH_SCRIPT`]): its reply, the first id, is what the application hears.

use log::{debug, trace, warn};

use super::super::{Core, Note};
use super::{unix_ms, Pending, Tag};
use crate::api::{PublishTicket, Publishing};
use crate::proto::backplane::{self as bp, BackplaneError, Publish, PublishBatch};
use crate::proto::resp::Value;
use crate::proto::topic::{valid_event_name, valid_topic, PublishError};

/// A publish waiting for the script's reply.
pub(in crate::driver) struct PendingPublish {
    /// Whom to tell (none for a publish from a [`Handle`](crate::Handle)).
    pub(super) ticket: Option<PublishTicket>,
    pub(super) topic: String,
    event: Option<String>,
    /// The data of each event (one for a single publish).
    datas: Vec<String>,
    /// Every event's data is a checked JSON value.
    json: bool,
    published_ms: u64,
    /// Sent with the script's source (after `NOSCRIPT`).
    eval: bool,
}

impl Core {
    /// Publishes, through the backplane when there is one. `async_ok`: the caller takes
    /// [`Publishing::Pending`] (a ticket is made for it, and its outcome is reported);
    /// otherwise the outcome is only logged and `None` comes back for a publish sent.
    ///
    /// `json`: the data is a JSON value the caller checked; the Redis entries carry the
    /// kind, so every server delivers it as a value.
    pub(crate) fn publish_async(
        &mut self,
        topic: &str,
        event: Option<&str>,
        data: &str,
        json: bool,
        async_ok: bool,
    ) -> Result<Option<Publishing>, PublishError> {
        if self.bp.is_none() {
            return self
                .publish(topic, event, data, json)
                .map(|id| Some(Publishing::Done(id)));
        }
        self.publish_redis(topic, event, vec![data.into()], json, async_ok)
    }

    /// [`Core::publish_async`] for a batch: without a backplane [`Publishing::Done`] with
    /// the batch's first id; with one, a single call of the batch script.
    pub(crate) fn publish_batch_async(
        &mut self,
        topic: &str,
        event: Option<&str>,
        datas: &[&str],
        json: bool,
        async_ok: bool,
    ) -> Result<Option<Publishing>, PublishError> {
        if self.bp.is_none() {
            return self
                .publish_batch(topic, event, datas, json)
                .map(|ids| Some(Publishing::Done(*ids.start())));
        }
        if datas.is_empty() {
            return Err(PublishError::EmptyBatch);
        }
        let datas = datas.iter().map(|d| (*d).to_owned()).collect();
        self.publish_redis(topic, event, datas, json, async_ok)
    }

    /// Sends events to Redis (checked first: nothing is sent for a bad name).
    fn publish_redis(
        &mut self,
        topic: &str,
        event: Option<&str>,
        datas: Vec<String>,
        json: bool,
        async_ok: bool,
    ) -> Result<Option<Publishing>, PublishError> {
        if !valid_topic(topic) {
            return Err(PublishError::BadTopic);
        }
        if event.is_some_and(|e| !valid_event_name(e)) {
            return Err(PublishError::BadEventName);
        }
        let Some(b) = self.bp.as_mut() else {
            return Err(PublishError::BackplaneDown);
        };
        let tag = b.tag();
        let ticket = async_ok.then_some(PublishTicket(tag));
        let pending = PendingPublish {
            ticket,
            topic: topic.into(),
            event: event.map(Into::into),
            datas,
            json,
            published_ms: unix_ms(),
            eval: false,
        };
        self.send_publish(tag, pending)?;
        Ok(ticket.map(Publishing::Pending))
    }

    fn send_publish(&mut self, tag: Tag, pending: PendingPublish) -> Result<(), PublishError> {
        let Some(b) = self.bp.as_mut() else {
            return Err(PublishError::BackplaneDown);
        };
        let cmd = match &pending.datas[..] {
            [data] => {
                let p = Publish {
                    topic: &pending.topic,
                    event: pending.event.as_deref(),
                    data: data.as_bytes(),
                    json: pending.json,
                    published_ms: pending.published_ms,
                    max_events: b.max_events,
                };
                bp::publish_command(&b.keys, &p, pending.eval)
            }
            datas => {
                let datas: Vec<&[u8]> = datas.iter().map(|d| d.as_bytes()).collect();
                let p = PublishBatch {
                    topic: &pending.topic,
                    event: pending.event.as_deref(),
                    datas: &datas,
                    json: pending.json,
                    published_ms: pending.published_ms,
                    max_events: b.max_events,
                };
                bp::publish_batch_command(&b.keys, &p, pending.eval)
            }
        };
        b.sent.0 += 1;
        if let Err(e) = self.redis_send(tag, &cmd) {
            debug!("backplane: publish to {:?} refused: {e}", pending.topic);
            return Err(PublishError::BackplaneDown);
        }
        trace!("backplane: publish to {:?} sent (tag {tag})", pending.topic);
        if let Some(b) = self.bp.as_mut() {
            b.pending.insert(tag, Pending::Publish(pending));
        }
        Ok(())
    }

    /// The script's reply to publish `tag`.
    pub(super) fn bp_published(&mut self, tag: Tag, p: PendingPublish, v: &Value) {
        match bp::parse_publish_reply(v) {
            Ok(id) => {
                let n = p.datas.len();
                trace!("backplane: {:?} published as {id} ({n} events)", p.topic);
                self.stats.published += n as u64;
                if let Some(t) = p.ticket {
                    self.notes.push(Note::Published(t, Ok(id)));
                }
            }
            Err(BackplaneError::NoScript) if !p.eval => {
                debug!("backplane: the publish script is not loaded: sending it");
                let ticket = p.ticket;
                if let Err(e) = self.send_publish(tag, PendingPublish { eval: true, ..p }) {
                    if let Some(t) = ticket {
                        self.notes.push(Note::Published(t, Err(e)));
                    }
                }
            }
            Err(e) => {
                warn!("backplane: publish to {:?} failed: {e}", p.topic);
                self.publish_failed(p.ticket, &p.topic);
            }
        }
    }

    /// A publish that Redis did not store (the link failed, or the script did).
    pub(super) fn publish_failed(&mut self, ticket: Option<PublishTicket>, topic: &str) {
        match ticket {
            Some(t) => self
                .notes
                .push(Note::Published(t, Err(PublishError::BackplaneDown))),
            None => warn!("backplane: a publish to {topic:?} was not stored: redis unavailable"),
        }
    }
}
