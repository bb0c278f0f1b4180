//! Carrying out publishes and the long-lived replies: the topic log, the one subscription
//! table and the connections' cores meet here. Encodings come from
//! [`crate::proto::fanout`], each made once per publish and shared.

use std::ops::RangeInclusive;
use std::rc::Rc;

use log::{debug, trace};

use super::backplane::Waiter;
use super::store::Prepared;
use super::{conn, Core, SubKey};
use crate::api::{ConnId, Park, SseStream, WsAccept};
use crate::proto::fanout::Transport;
use crate::proto::fanout::{self, Broadcast};
use crate::proto::http1::{Request, Response};
use crate::proto::server::{ConnKind, Delivery};
use crate::proto::subs::Entry;
use crate::proto::topic::{batch_ids, valid_topic, PublishError, TopicEvent};
use crate::proto::ws;

impl Core {
    /// Publishes an event (through the data directory when there is one; see
    /// [`super::store`]). Returns its id.
    pub(crate) fn publish(
        &mut self,
        topic: &str,
        event: Option<&str>,
        data: &str,
        json: bool,
    ) -> Result<u64, PublishError> {
        if self.bp.is_some() {
            return Err(PublishError::NeedsAsync);
        }
        self.publish_durable(topic, event, data, json)
    }

    /// Publishes an event now: into the topic log, to every subscriber, to the webhook
    /// outbox (with the `webhook-id`, body and endpoints prepared for the log, if any).
    pub(crate) fn publish_now(
        &mut self,
        topic: &str,
        event: Option<&str>,
        data: &str,
        json: bool,
        now_us: u64,
        prepared: Option<Prepared>,
    ) -> Result<u64, PublishError> {
        let ev = self.topics.publish_as(topic, event, data, json, now_us)?;
        self.arm_expiry();
        self.stats.published += 1;
        trace!("publish {topic:?} id {} ({} bytes)", ev.id, ev.data.len());
        let id = ev.id;
        self.deliver_published(topic, &ev, prepared);
        Ok(id)
    }

    /// Publishes a batch (through the data directory when there is one; see
    /// [`super::store`]). Returns its ids.
    pub(crate) fn publish_batch(
        &mut self,
        topic: &str,
        event: Option<&str>,
        datas: &[&str],
        json: bool,
    ) -> Result<RangeInclusive<u64>, PublishError> {
        if self.bp.is_some() {
            return Err(PublishError::NeedsAsync);
        }
        self.publish_durable_batch(topic, event, datas, json)
    }

    /// Publishes a batch now, all or nothing ([`Topics::publish_batch`]): every event
    /// enters the topic log first, then the batch goes to the subscribers
    /// ([`Core::fan_out_batch`]: one chunk per connection, so each connection's share is
    /// one `writev` at the step's end), then to the webhooks, one message per event.
    /// `prepared`: per event, the webhooks prepared for the log (empty: none).
    ///
    /// [`Topics::publish_batch`]: crate::proto::topic::Topics::publish_batch
    pub(crate) fn publish_batch_now(
        &mut self,
        topic: &str,
        event: Option<&str>,
        datas: &[&str],
        json: bool,
        now_us: u64,
        prepared: Vec<Option<Prepared>>,
    ) -> Result<RangeInclusive<u64>, PublishError> {
        let evs = self
            .topics
            .publish_batch_as(topic, event, datas, json, now_us)?;
        self.arm_expiry();
        self.stats.published += evs.len() as u64;
        let ids = batch_ids(evs[0].id, evs.len());
        trace!("publish {topic:?} batch of {} ids {ids:?}", evs.len());
        let hooks = self.fan_out_batch(topic, &evs);
        let mut prepared = prepared.into_iter();
        for ev in &evs {
            match prepared.next().flatten() {
                Some(p) => self.enqueue_prepared(p),
                None if hooks => self.publish_webhooks(topic, ev),
                None => {}
            }
        }
        Ok(ids)
    }

    /// Hands the events of a batch (ids consecutive) to the WebSocket, SSE and long-poll
    /// subscribers of `topic`. Each event's encodings are made once, as for a single
    /// publish, and each transport's are joined into one chunk shared by its
    /// subscribers: a connection queues the whole batch as one piece (one slice of its
    /// `writev`, however many events), and the slow-reader check sees the batch as one
    /// message. A parked poll is answered with as many of the events as an answer holds.
    /// Returns whether webhooks subscribe to the topic.
    pub(crate) fn fan_out_batch(&mut self, topic: &str, evs: &[Rc<TopicEvent>]) -> bool {
        if let [ev] = evs {
            return self.fan_out(topic, Rc::clone(ev));
        }
        let mut casts: Vec<Broadcast> = evs.iter().map(|e| Broadcast::new(Rc::clone(e))).collect();
        let mut joined: Vec<(Transport, Option<Rc<[u8]>>)> = Vec::new();
        let mut subs = std::mem::take(&mut self.scratch);
        self.subs.copy_subscribers(topic, &mut subs);
        let mut hooks = false;
        for &Entry { key, cursor } in &subs {
            let conn = match key {
                SubKey::Hook(_) => {
                    hooks = true;
                    continue;
                }
                SubKey::Conn(conn) => conn,
            };
            let Some(i) = self.index_of(conn) else {
                continue;
            };
            let Some(c) = conn::slot(&mut self.slots, i) else {
                continue;
            };
            let transport = c.proto.transport();
            if transport == Transport::None {
                if c.proto.kind() == ConnKind::Parked {
                    self.answer_parked(i, Some((topic, cursor, &mut casts[0])));
                }
                continue;
            }
            self.flush_if_full(i);
            let bytes = match joined.iter().find(|(t, _)| *t == transport) {
                Some((_, bytes)) => bytes.clone(),
                None => {
                    let mut all = Vec::new();
                    for cast in &mut casts {
                        if let Some(b) = cast.bytes_for(transport, &mut self.codec) {
                            all.extend_from_slice(&b);
                        }
                    }
                    let bytes: Option<Rc<[u8]>> = (!all.is_empty()).then(|| all.into());
                    joined.push((transport, bytes.clone()));
                    bytes
                }
            };
            let Some(bytes) = bytes else {
                continue;
            };
            let n = evs.len() as u64;
            match self.with_conn(i, |p, env| p.deliver(&bytes, env)) {
                Some(Delivery::Queued)
                    if matches!(transport, Transport::WebSocket | Transport::WsDeflate(_)) =>
                {
                    self.stats.delivered_websocket += n
                }
                Some(Delivery::Queued) => self.stats.delivered_sse += n,
                _ => {}
            }
        }
        subs.clear();
        self.scratch = subs;
        hooks
    }

    /// Hands a published event to its subscribers and its webhooks.
    fn deliver_published(&mut self, topic: &str, ev: &Rc<TopicEvent>, prepared: Option<Prepared>) {
        let hooks = self.fan_out(topic, Rc::clone(ev));
        match prepared {
            Some(p) => self.enqueue_prepared(p),
            None if hooks => self.publish_webhooks(topic, ev),
            None => {}
        }
    }

    /// Queues the webhook messages the durable log prepared for an event.
    fn enqueue_prepared(&mut self, (webhook_id, body, ids): Prepared) {
        let reg = &mut self.hooks.reg;
        if reg.enqueue_prepared(&ids, &webhook_id, &body, self.now) > 0 {
            self.drive_hooks();
        }
    }

    /// Hands a new event of `topic` to its WebSocket, SSE and long-poll subscribers, each
    /// encoding made once and shared. Returns whether webhooks subscribe to the topic.
    pub(crate) fn fan_out(&mut self, topic: &str, ev: Rc<TopicEvent>) -> bool {
        let mut cast = Broadcast::new(ev);
        let mut subs = std::mem::take(&mut self.scratch);
        self.subs.copy_subscribers(topic, &mut subs);
        let mut hooks = false;
        for &Entry { key, cursor } in &subs {
            match key {
                SubKey::Hook(_) => hooks = true,
                SubKey::Conn(conn) => self.deliver_event(conn, cursor, topic, &mut cast),
            }
        }
        subs.clear();
        self.scratch = subs;
        hooks
    }

    /// Drops the topics idle for the configured ttl that nothing uses (no subscriber of
    /// any kind, no webhook endpoint, no publish on its way to the disk), writes their
    /// drop to the data directory, and arms the timer for the next one.
    pub(crate) fn expire_topics(&mut self, key: crate::proto::timer::TimerKey) {
        if self.expiry_timer == Some(key) {
            self.expiry_timer = None;
        }
        let ttl = self.config.topic_ttl;
        let now_us = super::store::unix_micros();
        let (subs, store, bp) = (&self.subs, &self.store, &self.bp);
        let live = |t: &str| {
            subs.count(t) > 0
                || store.as_ref().is_some_and(|s| s.holds_topic(t))
                || bp.as_ref().is_some_and(|b| b.follows(t))
        };
        let dropped = self.topics.expire(now_us, ttl, live);
        for topic in dropped {
            debug!("topic {topic:?} expired");
            self.store_note(crate::proto::store::Record::TopicDropped { topic });
        }
        self.arm_expiry();
    }

    /// Arms the one topic-expiry timer at the next topic's due time, unless it is armed.
    pub(crate) fn arm_expiry(&mut self) {
        if self.expiry_timer.is_some() {
            return;
        }
        let Some(at_us) = self.topics.next_expiry(self.config.topic_ttl) else {
            return;
        };
        let now_us = super::store::unix_micros();
        let after = std::time::Duration::from_micros(at_us.saturating_sub(now_us));
        // A little late rather than early: a topic due now is dropped at the next tick.
        let at =
            crate::proto::server::deadline(self.now, after + std::time::Duration::from_millis(1));
        self.expiry_timer = Some(self.timers.insert(at, super::TimerEv::TopicExpiry));
    }

    /// Hands one published event to the subscriber `conn` (its cursor is a parked poll's).
    fn deliver_event(&mut self, conn: ConnId, cursor: u64, topic: &str, cast: &mut Broadcast) {
        let Some(i) = self.index_of(conn) else {
            return;
        };
        let Some(c) = conn::slot(&mut self.slots, i) else {
            return;
        };
        let transport = c.proto.transport();
        if transport == Transport::None {
            if c.proto.kind() == ConnKind::Parked {
                self.answer_parked(i, Some((topic, cursor, cast)));
            }
            return;
        }
        self.flush_if_full(i);
        let Some(bytes) = cast.bytes_for(transport, &mut self.codec) else {
            return;
        };
        match self.with_conn(i, |p, env| p.deliver(&bytes, env)) {
            Some(Delivery::Queued)
                if matches!(transport, Transport::WebSocket | Transport::WsDeflate(_)) =>
            {
                self.stats.delivered_websocket += 1
            }
            Some(Delivery::Queued) => self.stats.delivered_sse += 1,
            // A slow reader (Delivery::Slow) is reported by `settle`.
            _ => {}
        }
    }

    /// Answers a parked long poll: from a publish (the page for its cursor, shared by
    /// everyone parked on the same cursor), or with the empty page (its timeout, a stop).
    pub(crate) fn answer_parked(&mut self, i: usize, from: Option<(&str, u64, &mut Broadcast)>) {
        let Some(c) = conn::slot(&mut self.slots, i) else {
            return;
        };
        let key = SubKey::Conn(c.id);
        match from {
            Some((topic, since, cast)) => {
                let batch = self.config.poll_batch;
                let page = cast.page_for(&self.topics, topic, since, batch);
                let n = page.events;
                if self.with_conn(i, |p, env| p.answer_poll_shared(page, env)) == Some(true) {
                    self.stats.delivered_longpoll += n as u64;
                }
            }
            None => {
                let since = self.subs.cursor(key).unwrap_or(0);
                self.with_conn(i, |p, env| p.answer_poll_empty(since, env));
            }
        }
        // Answered, the connection is no longer parked: `settle` took it out of the table.
        // Not answered (it is closing), it leaves the table when it closes.
    }

    /// A long-lived reply names a valid topic; otherwise it is answered 400.
    fn topic_ok(&mut self, i: usize, topic: &str) -> bool {
        let ok = valid_topic(topic);
        if !ok {
            let resp = Response::text(400, "bad topic name\n");
            self.with_conn(i, |c, env| c.respond(&resp, env));
        }
        ok
    }

    pub(crate) fn park(&mut self, i: usize, p: Park) {
        if !self.topic_ok(i, &p.topic) {
            return;
        }
        let p = match self.gate_conn(i, &p.topic.clone(), |c| Waiter::Park(c, p)) {
            Some(Waiter::Park(_, p)) => p,
            _ => return,
        };
        if !p.headers.is_empty() {
            self.with_conn(i, |c, _| c.set_poll_headers(&p.headers));
        }
        let page = self
            .topics
            .read_after(&p.topic, p.since, self.config.poll_batch);
        if !page.events.is_empty() || page.gap {
            let n = page.events.len();
            if self.with_conn(i, |c, env| c.answer_poll(&page, env)) == Some(true) {
                self.stats.delivered_longpoll += n as u64;
            }
            return;
        }
        let Some(c) = conn::slot(&mut self.slots, i) else {
            return;
        };
        let id = c.id;
        trace!("{id} parked on {:?} after {}", p.topic, p.since);
        if self.with_conn(i, |c, env| c.park(p.timeout, env)) == Some(true) {
            self.subs.subscribe(&p.topic, SubKey::Conn(id), p.since);
        }
    }

    /// Turns connection `i` into an SSE stream of a topic.
    pub(crate) fn start_sse(&mut self, i: usize, s: SseStream) {
        if !self.topic_ok(i, &s.topic) {
            return;
        }
        let s = match self.gate_conn(i, &s.topic.clone(), |c| Waiter::Sse(c, s)) {
            Some(Waiter::Sse(_, s)) => s,
            _ => return,
        };
        let page = s
            .last_id
            .map(|last| self.topics.read_after(&s.topic, last, usize::MAX));
        let replayed = page.as_ref().map_or(0, |p| p.events.len());
        let retry = self.config.sse_retry;
        let extra = &s.headers;
        let started = self.with_conn(i, |c, env| {
            c.start_topic_stream_with(retry, page.as_ref(), extra, env)
        });
        let mut replayed = replayed;
        let mut more = page.filter(|p| p.more && started == Some(true));
        while let Some(p) = more {
            // The history holds a jump to a new id range: the rest of the replay.
            let page = self.topics.read_after(&s.topic, p.next, usize::MAX);
            let mut bytes = Vec::new();
            fanout::sse_replay(&page, &mut bytes);
            self.with_conn(i, |c, env| c.sse_send(&bytes, env));
            replayed += page.events.len();
            more = page.more.then_some(page);
        }
        let Some(c) = conn::slot(&mut self.slots, i) else {
            return;
        };
        if started == Some(true) {
            debug!(
                "{} SSE stream of {:?} (after {:?}, {replayed} replayed)",
                c.id, s.topic, s.last_id
            );
            c.rbuf.clear();
            self.stats.delivered_sse += replayed as u64;
            self.subs.subscribe(&s.topic, SubKey::Conn(c.id), 0);
        }
    }

    /// With a backplane, [`Core::gate`] for connection `i`'s reader; without, `Some` of it.
    fn gate_conn(
        &mut self,
        i: usize,
        topic: &str,
        make: impl FnOnce(ConnId) -> Waiter,
    ) -> Option<Waiter> {
        let id = conn::slot(&mut self.slots, i)?.id;
        let w = make(id);
        if self.bp.is_none() {
            return Some(w);
        }
        self.gate(topic, w)
    }

    /// Answers an `/events` read (through the backplane's gate).
    pub(crate) fn events_reply(&mut self, i: usize, q: crate::api::EventsQuery) {
        if !self.topic_ok(i, &q.topic) {
            return;
        }
        if let Some(Waiter::Events(_, q)) =
            self.gate_conn(i, &q.topic.clone(), |c| Waiter::Events(c, q))
        {
            self.answer_events(i, q);
        }
    }

    /// Accepts a WebSocket upgrade on connection `i`.
    pub(crate) fn upgrade(&mut self, i: usize, req: &Request, acc: &WsAccept) -> bool {
        let limits = ws::WsLimits {
            max_frame_bytes: self.config.ws_max_frame,
            max_message_bytes: acc.max_message.unwrap_or(self.config.ws_max_message),
        };
        let protocol = acc.protocol.as_deref();
        self.with_conn(i, |c, env| {
            c.accept_ws(req, protocol, &acc.headers, limits, env)
        }) == Some(true)
    }

    /// Subscribes an open WebSocket to `topic`, replaying the kept events after `since`.
    pub(crate) fn subscribe_ws(&mut self, conn: ConnId, topic: &str, since: Option<u64>) -> bool {
        let Some(i) = self.index_of(conn) else {
            return false;
        };
        // A dialed (client) WebSocket takes no shared frames: it cannot subscribe.
        let open = conn::slot(&mut self.slots, i)
            .is_some_and(|c| c.proto.ws_open() && c.proto.transport() != Transport::None);
        if !open || !valid_topic(topic) {
            return false;
        }
        if self.subs.contains(topic, SubKey::Conn(conn)) {
            // Already subscribed: replaying again would duplicate events.
            return true;
        }
        if self.bp.is_some() {
            match self.gate(topic, Waiter::Ws(conn, topic.into(), since)) {
                Some(_) => {}
                None => return self.index_of(conn).is_some(),
            }
        }
        let mut from = since;
        while let Some(since) = from {
            let page = self.topics.read_after(topic, since, usize::MAX);
            if self.with_conn(i, |c, env| c.ws_replay(&page, env)) != Some(true) {
                break;
            }
            self.stats.delivered_websocket += page.events.len() as u64;
            // More after a jump to a new id range: replay on from there.
            from = page.more.then_some(page.next);
        }
        self.subs.subscribe(topic, SubKey::Conn(conn), 0);
        true
    }
}
