//! What a topic has ([`Core::topic_info`]) and removing one ([`Core::remove_topic`]).
//!
//! Both read the one subscription table: a topic's subscribers are its entries there, so
//! counting them by transport costs O(the topic's subscribers), never a pass over every
//! connection.
//!
//! # Removing a topic
//!
//! The history goes (its slot under `max_topics` is free), every webhook endpoint of the
//! topic is removed as [`Core::remove_webhook`] removes one (queued messages fail with
//! "endpoint removed"), and each subscriber hears of it:
//!
//! * an SSE stream is ended (the terminating chunk);
//! * a parked long poll is answered `404 topic removed` (so a client does not mistake it
//!   for a timeout and poll on);
//! * a WebSocket subscribed to nothing else is closed with 1000 `topic removed`; one that
//!   follows other topics too stays open and gets the text message
//!   `{"removed":"TOPIC"}`.
//!
//! With a data directory the removal is written as `TopicDropped` (type 12, as an expiry
//! writes it) after the `WebhookRemoved` records of its endpoints, so a restart keeps it
//! removed; publishes to the topic still waiting for their fsync never enter the
//! history (their records precede the drop, so recovery drops them too). With a Redis
//! backplane removal is refused: other servers share the stream.

use log::debug;

use super::{conn, Core, SubKey};
use crate::api::{RemoveTopicError, TopicInfo, TopicSubscribers};
use crate::proto::http1::Response;
use crate::proto::server::ConnKind;
use crate::proto::store::Record;

impl Core {
    /// The configured connection limit.
    pub(crate) fn max_connections(&self) -> usize {
        self.config.max_connections
    }

    /// Bytes queued for output on every open connection (O(connections)).
    pub(crate) fn output_queued_bytes(&self) -> usize {
        let conns = self.slots.iter().filter_map(|s| s.conn.as_ref());
        conns.map(|c| c.out.len()).sum()
    }

    /// The topic's state, `None` when it has no history, no subscriber and no webhook.
    pub(crate) fn topic_info(&self, topic: &str) -> Option<TopicInfo> {
        let entries = self.subs.subscribers(topic);
        if !self.topics.contains(topic) && entries.is_empty() {
            return None;
        }
        let mut subscribers = TopicSubscribers::default();
        let mut webhooks = 0;
        for e in entries {
            match e.key {
                SubKey::Hook(_) => webhooks += 1,
                SubKey::Conn(id) => match self.conn(id).map(|c| c.proto.kind()) {
                    Some(ConnKind::WebSocket) => subscribers.websocket += 1,
                    Some(ConnKind::Sse) => subscribers.sse += 1,
                    Some(ConnKind::Parked) => subscribers.parked += 1,
                    Some(ConnKind::Http) | None => {}
                },
            }
        }
        Some(TopicInfo {
            topic: topic.to_owned(),
            last_id: self.topics.last_id(topic),
            oldest_id: self.topics.oldest_id(topic),
            subscribers,
            webhooks,
        })
    }

    /// Removes `topic` (see the module docs). `Ok(false)` when it is unknown.
    pub(crate) fn remove_topic(&mut self, topic: &str) -> Result<bool, RemoveTopicError> {
        if self.bp.is_some() {
            return Err(RemoveTopicError::Backplane);
        }
        if self.topic_info(topic).is_none() {
            return Ok(false);
        }
        for hook in self.list_webhooks(topic) {
            self.remove_webhook(topic, &hook.id);
        }
        let mut subs = std::mem::take(&mut self.scratch);
        self.subs.copy_subscribers(topic, &mut subs);
        for e in &subs {
            let SubKey::Conn(id) = e.key else { continue };
            self.subs.unsubscribe(topic, e.key);
            let Some(i) = self.index_of(id) else { continue };
            let Some(c) = conn::slot(&mut self.slots, i) else {
                continue;
            };
            match c.proto.kind() {
                ConnKind::Parked => {
                    let resp = Response::text(404, "topic removed\n");
                    self.with_conn(i, |p, env| p.respond(&resp, env));
                }
                ConnKind::Sse => {
                    self.with_conn(i, |p, env| p.close(env));
                }
                ConnKind::WebSocket => {
                    if self.subs.topics_of(e.key).next().is_none() {
                        self.with_conn(i, |p, env| p.close_ws(env, 1000, "topic removed"));
                    } else {
                        let mut note = b"{\"removed\":".to_vec();
                        crate::proto::json::write_str(&mut note, topic);
                        note.push(b'}');
                        let op = crate::proto::ws::OpCode::Text;
                        self.with_conn(i, |p, env| p.ws_send(op, &note, env));
                    }
                }
                ConnKind::Http => {}
            }
        }
        subs.clear();
        self.scratch = subs;
        if self.topics.remove(topic) {
            if let Some(s) = self.store.as_mut() {
                s.forget_topic(topic);
            }
            self.store_removal(Record::TopicDropped {
                topic: topic.to_owned(),
            });
        }
        debug!("topic {topic:?} removed");
        Ok(true)
    }
}
