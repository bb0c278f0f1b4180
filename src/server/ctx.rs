//! [`Ctx`]: what a callback can do.

use std::net::SocketAddr;
use std::ops::RangeInclusive;
use std::time::{Duration, Instant};

use crate::api::{
    ConnId, ConnectError, EventPage, Publishing, RemoveTopicError, Stats, TimerId, TopicInfo,
    WebhookCreated, WebhookError, WebhookInfo, WebhookStats, WsConnect,
};
use crate::driver::{Core, SubKey};
use crate::proto::fanout::WsFrames;
use crate::proto::http1::Response;
use crate::proto::server::{ConnKind, Delivery};
use crate::proto::topic::PublishError;
use crate::proto::ws::OpCode;

/// The context handed to every callback: send, close, publish, set timers.
pub struct Ctx<'a> {
    core: &'a mut Core,
}

impl<'a> Ctx<'a> {
    pub(crate) fn new(core: &'a mut Core) -> Self {
        Ctx { core }
    }

    /// Publishes an event to `topic` and delivers it to every subscriber: WebSocket and SSE
    /// subscribers get it queued now, parked long polls are answered, webhooks enqueued.
    /// Returns its id.
    ///
    /// With a data directory in [`Fsync::Always`](crate::Fsync::Always) mode the id is
    /// given at once but the event takes effect (enters the history, is delivered) only
    /// once an fsync covers it; a [`Response`] returned from the `on_request` that
    /// published is held back until then, and becomes `507 cannot store: ...` if the write
    /// fails (the event then never existed). Errors: a bad name, the topic limit, an event
    /// over the log's record limit, or (503) too many bytes waiting for the disk. With a
    /// Redis backplane: [`PublishError::NeedsAsync`] (use [`Ctx::publish_async`]).
    pub fn publish(
        &mut self,
        topic: &str,
        event: Option<&str>,
        data: &str,
    ) -> Result<u64, PublishError> {
        self.core.publish(topic, event, data, false)
    }

    /// Publishes like [`Ctx::publish`] without a backplane ([`Publishing::Done`] with the
    /// id). With a Redis backplane ([`Config::redis`](crate::Config::redis)) the event goes
    /// to Redis, which gives its id: [`Publishing::Pending`], then
    /// [`App::on_published`](crate::App::on_published) with the same ticket once Redis
    /// answered (the id) or failed ([`PublishError::BackplaneDown`]: not published). The
    /// event reaches this server's subscribers the way it reaches every other server's,
    /// from Redis. Refused at once, with nothing sent: a bad name, or Redis unreachable.
    pub fn publish_async(
        &mut self,
        topic: &str,
        event: Option<&str>,
        data: &str,
    ) -> Result<Publishing, PublishError> {
        let sent = self.core.publish_async(topic, event, data, false, true)?;
        sent.ok_or(PublishError::BackplaneDown) // unreachable: a ticket is always made
    }

    /// Publishes a batch: one event per item of `datas`, in order, all named `event`, to
    /// `topic`, all or nothing. Returns their ids, consecutive (`ids.start()` is the
    /// first; `ids.count()` the number of items).
    ///
    /// Everything is checked before anything is stored or delivered, so a refused batch
    /// leaves no trace: the refusals of [`Ctx::publish`] (a bad name, the topic limit, the
    /// disk behind, [`PublishError::NeedsAsync`] with a Redis backplane), no item at all
    /// ([`PublishError::EmptyBatch`]), and with a data directory a batch whose events
    /// together exceed the log's largest record ([`PublishError::TooLarge`]: a batch is
    /// stored as one record, so a crash keeps all of it or none). In
    /// [`Fsync::Always`](crate::Fsync::Always) mode the whole batch is held until its
    /// fsync, as one publish is.
    ///
    /// Every event of the batch is queued to each subscriber in this loop step, so a
    /// subscriber's share of the batch goes out in one write at the step's end; a parked
    /// long poll is answered with as many of them as one poll answer holds. Webhooks get
    /// one message per event.
    pub fn publish_batch<I>(
        &mut self,
        topic: &str,
        event: Option<&str>,
        datas: I,
    ) -> Result<RangeInclusive<u64>, PublishError>
    where
        I: IntoIterator,
        I::Item: AsRef<str>,
    {
        let items: Vec<I::Item> = datas.into_iter().collect();
        let datas: Vec<&str> = items.iter().map(AsRef::as_ref).collect();
        self.core.publish_batch(topic, event, &datas, false)
    }

    /// [`Ctx::publish_batch`] as [`Ctx::publish_async`] publishes one event: without a
    /// backplane [`Publishing::Done`] with the batch's **first** id; with a Redis
    /// backplane the batch goes to Redis in one atomic script call ([`Publishing::Pending`]),
    /// and [`App::on_published`](crate::App::on_published) gets the first id (or the
    /// error: then none of it was published). The ids are `first..first + n` for `n`
    /// items. Refused at once, with nothing sent: a bad name, no item, Redis unreachable.
    pub fn publish_batch_async<I>(
        &mut self,
        topic: &str,
        event: Option<&str>,
        datas: I,
    ) -> Result<Publishing, PublishError>
    where
        I: IntoIterator,
        I::Item: AsRef<str>,
    {
        let items: Vec<I::Item> = datas.into_iter().collect();
        let datas: Vec<&str> = items.iter().map(AsRef::as_ref).collect();
        let sent = self
            .core
            .publish_batch_async(topic, event, &datas, false, true)?;
        sent.ok_or(PublishError::BackplaneDown) // unreachable: a ticket is always made
    }

    /// [`Ctx::publish_batch_async`] without a ticket (a failure with a backplane is logged).
    pub(crate) fn publish_batch_detached(
        &mut self,
        topic: &str,
        event: Option<&str>,
        datas: &[&str],
        json: bool,
    ) -> Result<(), PublishError> {
        if json {
            check_items(datas)?;
        }
        self.core
            .publish_batch_async(topic, event, datas, json, false)
            .map(drop)
    }

    /// [`Ctx::publish_async`] without a ticket (a failure with a backplane is logged).
    pub(crate) fn publish_detached(
        &mut self,
        topic: &str,
        event: Option<&str>,
        data: &str,
        json: bool,
    ) -> Result<(), PublishError> {
        if json {
            check_one(data)?;
        }
        self.core
            .publish_async(topic, event, data, json, false)
            .map(drop)
    }

    /// Publishes a JSON event: like [`Ctx::publish`], but `data` must be exactly one JSON
    /// value (RFC 8259, nested at most 64 deep; see [`crate::proto::json::check()`]), and
    /// the JSON transports carry it as that value, not as a string: WebSocket messages,
    /// long-poll and `/events` pages and webhook bodies read
    /// `{"id":1,"event":null,"data":{"msg":"hi"}}`. SSE sends the text as it is either
    /// way. The kind is kept in the history and in the data directory.
    ///
    /// Errors: [`PublishError::InvalidJson`] (with the byte and the cause; nothing is
    /// published), then those of [`Ctx::publish`].
    pub fn publish_json(
        &mut self,
        topic: &str,
        event: Option<&str>,
        data: &str,
    ) -> Result<u64, PublishError> {
        check_one(data)?;
        self.core.publish(topic, event, data, true)
    }

    /// [`Ctx::publish_json`] as [`Ctx::publish_async`] publishes text. Through a Redis
    /// backplane the event is checked here, before it is sent, and its kind travels with
    /// it: every hub (this one too) delivers it as a JSON value, from pub/sub, from the
    /// stream's history and in webhook bodies from the outbox.
    pub fn publish_json_async(
        &mut self,
        topic: &str,
        event: Option<&str>,
        data: &str,
    ) -> Result<Publishing, PublishError> {
        check_one(data)?;
        let sent = self.core.publish_async(topic, event, data, true, true)?;
        sent.ok_or(PublishError::BackplaneDown) // unreachable: a ticket is always made
    }

    /// [`Ctx::publish_batch`] of JSON events: every item must be one JSON value; the
    /// first that is not refuses the whole batch with [`PublishError::InvalidJson`] and
    /// its index (`item: Some(i)`, 0-based).
    pub fn publish_batch_json<I>(
        &mut self,
        topic: &str,
        event: Option<&str>,
        datas: I,
    ) -> Result<RangeInclusive<u64>, PublishError>
    where
        I: IntoIterator,
        I::Item: AsRef<str>,
    {
        let items: Vec<I::Item> = datas.into_iter().collect();
        let datas: Vec<&str> = items.iter().map(AsRef::as_ref).collect();
        check_items(&datas)?;
        self.core.publish_batch(topic, event, &datas, true)
    }

    /// [`Ctx::publish_batch_json`] as [`Ctx::publish_batch_async`] publishes text (through
    /// a backplane the kind travels with the events, as for [`Ctx::publish_json_async`]).
    pub fn publish_batch_json_async<I>(
        &mut self,
        topic: &str,
        event: Option<&str>,
        datas: I,
    ) -> Result<Publishing, PublishError>
    where
        I: IntoIterator,
        I::Item: AsRef<str>,
    {
        let items: Vec<I::Item> = datas.into_iter().collect();
        let datas: Vec<&str> = items.iter().map(AsRef::as_ref).collect();
        check_items(&datas)?;
        let sent = self
            .core
            .publish_batch_async(topic, event, &datas, true, true)?;
        sent.ok_or(PublishError::BackplaneDown) // unreachable: a ticket is always made
    }

    fn ws_send(&mut self, conn: ConnId, opcode: OpCode, payload: &[u8]) -> bool {
        let Some(i) = self.core.index_of(conn) else {
            return false;
        };
        self.core.flush_if_full(i);
        self.core
            .with_conn(i, |p, env| p.ws_send(opcode, payload, env))
            .unwrap_or(false)
    }

    /// Whether `webhook_id` (a request's `webhook-id` field) was issued by this server's
    /// webhook deliveries: a publish route that gets one is part of a loop (the hub answers
    /// 508 Loop Detected instead of publishing).
    pub fn is_own_webhook_id(&self, webhook_id: &str) -> bool {
        self.core.hooks.reg.issued(webhook_id)
    }

    /// Sends a text message to a WebSocket connection. `false` when `conn` is not an open
    /// WebSocket (closed, closing, or another kind), or the message was refused as slow.
    pub fn send_text(&mut self, conn: ConnId, text: &str) -> bool {
        self.ws_send(conn, OpCode::Text, text.as_bytes())
    }

    /// Sends a binary message to a WebSocket connection.
    pub fn send_binary(&mut self, conn: ConnId, data: &[u8]) -> bool {
        self.ws_send(conn, OpCode::Binary, data)
    }

    /// Sends a ping (payload at most 125 bytes) to a WebSocket connection.
    pub fn ping(&mut self, conn: ConnId, data: &[u8]) -> bool {
        data.len() <= 125 && self.ws_send(conn, OpCode::Ping, data)
    }

    /// Sends `text` to every connection in `conns` that is an open WebSocket, encoding the
    /// frame once and sharing its bytes. Returns how many got it.
    pub fn broadcast_text(&mut self, conns: &[ConnId], text: &str) -> usize {
        let mut frames = WsFrames::new(crate::proto::fanout::text_message_frame(text));
        let mut n = 0;
        for &id in conns {
            let Some(i) = self.core.index_of(id) else {
                continue;
            };
            self.core.flush_if_full(i);
            let delivered = self.core.with_conn(i, |p, env| {
                let plain = || crate::proto::fanout::text_message_frame(text);
                frames
                    .get(p.transport(), env.codec, plain)
                    .is_some_and(|frame| p.deliver(&frame, env) == Delivery::Queued)
            });
            n += usize::from(delivered == Some(true));
        }
        n
    }

    /// Starts the WebSocket closing handshake with `code` and `reason` (RFC 6455 §7.1.2).
    /// From inside [`App::on_ws_message`](crate::App::on_ws_message) it takes effect at
    /// once: messages already received behind it are discarded.
    pub fn close_ws(&mut self, conn: ConnId, code: u16, reason: &str) -> bool {
        if self.core.cancel_dial(conn) {
            return true;
        }
        let Some(i) = self.core.index_of(conn) else {
            return false;
        };
        self.core
            .with_conn(i, |p, env| p.close_ws(env, code, reason))
            .unwrap_or(false)
    }

    /// Opens a WebSocket to `url` (`ws://`, or `wss://` with the `tls` feature) on this
    /// loop. The connection's [`ConnId`] is returned at once; then
    /// [`App::on_ws_open`](crate::App::on_ws_open) (messages arrive in
    /// [`App::on_ws_message`](crate::App::on_ws_message), sends and closes work as for
    /// accepted WebSockets, [`App::on_close`](crate::App::on_close) at the end) or
    /// [`App::on_ws_connect_failed`](crate::App::on_ws_connect_failed). Dialed connections
    /// count against `max_connections`; they cannot subscribe to topics (their frames are
    /// masked one by one, RFC 6455 §5.3).
    pub fn connect_ws(&mut self, url: &str, opts: &WsConnect) -> Result<ConnId, ConnectError> {
        let id = self.core.connect_ws(url, opts)?;
        if let Some(i) = self.core.index_of(id) {
            self.core.mark_dirty(i);
        }
        Ok(id)
    }

    /// Closes a connection: a WebSocket with 1000 and the closing handshake, an SSE stream
    /// by ending it, an HTTP connection after what is queued for it was written.
    pub fn close(&mut self, conn: ConnId) {
        if self.core.cancel_dial(conn) {
            return;
        }
        if let Some(i) = self.core.index_of(conn) {
            self.core.with_conn(i, |p, env| p.close(env));
        }
    }

    /// Answers a request for which the application returned [`Reply::Later`](crate::Reply::Later).
    /// `false` when `conn` is gone or is not waiting for an answer.
    pub fn respond(&mut self, conn: ConnId, resp: Response) -> bool {
        self.core.respond_to(conn, &resp)
    }

    /// Subscribes a WebSocket connection to `topic` (see [`WsAccept::subscribe`](crate::WsAccept::subscribe)).
    /// `false` when `conn` is not an open WebSocket or the topic name is invalid; subscribing
    /// again to the same topic changes nothing (no second replay).
    pub fn subscribe(&mut self, conn: ConnId, topic: &str, since: Option<u64>) -> bool {
        self.core.subscribe_ws(conn, topic, since)
    }

    /// Removes a subscription made with [`Ctx::subscribe`].
    pub fn unsubscribe(&mut self, conn: ConnId, topic: &str) {
        self.core.subs.unsubscribe(topic, SubKey::Conn(conn));
    }

    /// The topics connection `conn` (a WebSocket, an SSE stream or a parked poll) is
    /// subscribed to, in no particular order; none for a connection that is gone. A
    /// WebSocket subscription still waiting for its topic to be in sync with a Redis
    /// backplane is included. The library keeps them, so an application need not keep its
    /// own copy per connection.
    pub fn subscriptions(&self, conn: ConnId) -> impl Iterator<Item = &str> + '_ {
        self.core
            .subs
            .topics_of(SubKey::Conn(conn))
            .chain(self.core.bp_pending_ws(conn))
    }

    /// The kept events of `topic` after `since` (at most `max`), telling gaps.
    pub fn events(&self, topic: &str, since: u64, max: usize) -> EventPage {
        EventPage::from_page(&self.core.topics.read_after(topic, since, max))
    }

    /// The id of the last event published to `topic` (0 for an unknown topic).
    pub fn last_id(&self, topic: &str) -> u64 {
        self.core.topics.last_id(topic)
    }

    /// How many WebSocket, SSE and long-poll subscribers `topic` has (webhooks excluded).
    pub fn subscriber_count(&self, topic: &str) -> usize {
        self.core
            .subs
            .subscribers(topic)
            .iter()
            .filter(|e| matches!(e.key, SubKey::Conn(_)))
            .count()
    }

    /// What `topic` has now: its last and oldest kept ids, its subscribers by transport
    /// and its webhook count; `None` when it has no history, no subscriber and no webhook.
    /// Costs O(the topic's subscribers).
    pub fn topic_info(&self, topic: &str) -> Option<TopicInfo> {
        self.core.topic_info(topic)
    }

    /// Removes `topic`: its history and its webhooks go, its SSE streams are ended, its
    /// parked polls answered `404 topic removed`, a WebSocket that followed only it is
    /// closed with 1000 `topic removed` (one following other topics too gets the text
    /// message `{"removed":"TOPIC"}` and stays). With a data directory the removal
    /// survives a restart; in [`Fsync::Always`](crate::Fsync::Always) mode a response
    /// from the `on_request` that removed waits for its fsync. `Ok(false)` for an unknown
    /// topic (as [`Ctx::topic_info`] tells it). With a Redis backplane:
    /// [`RemoveTopicError::Backplane`], nothing removed.
    pub fn remove_topic(&mut self, topic: &str) -> Result<bool, RemoveTopicError> {
        self.core.remove_topic(topic)
    }

    /// Calls `tag`'s [`App::on_timer`](crate::App::on_timer) after `after`.
    pub fn set_timer(&mut self, after: Duration, tag: u64) -> TimerId {
        TimerId(self.core.set_timer(after, tag))
    }

    /// Cancels a timer; `false` if it already fired or was cancelled.
    pub fn cancel_timer(&mut self, timer: TimerId) -> bool {
        self.core.cancel_timer(timer.0)
    }

    /// Counters and gauges.
    pub fn stats(&self) -> Stats {
        let c = &self.core.counts;
        Stats {
            http: c[0],
            parked: c[1],
            sse: c[2],
            websocket: c[3],
            store_held: self.core.store_held(),
            history_bytes: self.core.topics.total_bytes(),
            history_max_bytes: self.core.topics.limits().max_total_bytes,
            topics: self.core.topics.len(),
            max_topics: self.core.topics.limits().max_topics,
            max_connections: self.core.max_connections(),
            output_queued_bytes: self.core.output_queued_bytes(),
            redis_ready: self.core.bp_ready(),
            redis_publishes: self.core.bp_sent().0,
            redis_reads: self.core.bp_sent().1,
            ..self.core.stats
        }
    }

    /// What kind of connection `conn` is, or `None` when it is closed.
    pub fn kind(&self, conn: ConnId) -> Option<ConnKind> {
        self.core.conn(conn).map(|c| c.proto.kind())
    }

    /// The address the server listens on.
    pub fn local_addr(&self) -> SocketAddr {
        self.core.local_addr
    }

    /// The address of the TLS listener, when the server has one.
    pub fn tls_addr(&self) -> Option<SocketAddr> {
        self.core.tls_addr
    }

    /// Whether connection `conn` speaks TLS (`false` also when it is gone).
    pub fn is_tls(&self, conn: ConnId) -> bool {
        self.core.conn(conn).is_some_and(|c| c.stream.is_tls())
    }

    /// The loop's current time (read once per loop turn).
    pub fn now(&self) -> Instant {
        self.core.now
    }

    /// Registers a webhook: every event published to `topic` is POSTed to `url`, signed
    /// (Standard Webhooks) with `secret` (`whsec_` + base64 of 24-64 bytes) or a generated
    /// one. Refused: URLs that do not parse, with userinfo, not `http://`, and IP literals
    /// the SSRF guard refuses (host names are checked after each resolution).
    pub fn add_webhook(
        &mut self,
        topic: &str,
        url: &str,
        secret: Option<&str>,
    ) -> Result<WebhookCreated, WebhookError> {
        self.core.add_webhook(topic, url, secret)
    }

    /// Removes a webhook; its queued messages fail with "endpoint removed".
    pub fn remove_webhook(&mut self, topic: &str, id: &str) -> bool {
        self.core.remove_webhook(topic, id)
    }

    /// The webhooks registered for `topic` (without their secrets).
    pub fn webhooks(&self, topic: &str) -> Vec<WebhookInfo> {
        self.core.list_webhooks(topic)
    }

    /// The signing secrets (`whsec_...`) and URLs of every registered webhook, for an
    /// application that receives its own deliveries and verifies them.
    pub fn webhook_secrets(&self) -> Vec<(String, String)> {
        self.core.webhook_secrets()
    }

    /// Webhook delivery counters.
    pub fn webhook_stats(&self) -> WebhookStats {
        self.core.hooks.stats()
    }

    /// Stops the server gracefully: no new connections and no new webhook attempts;
    /// WebSockets are closed with 1001, SSE streams ended with their last chunk, parked
    /// long polls answered with the empty page (`next` = their `since`), answers still
    /// owed go out with `Connection: close`, and webhook attempts in flight run to their
    /// results. [`Server::run`](crate::Server::run) returns once all that is done or the
    /// stop timeout ([`Config::stop_timeout`](crate::Config::stop_timeout)) passed; what is
    /// left then is dropped. Webhook messages not delivered fail with "server stopped",
    /// except with a data directory, which keeps them for the next start (same
    /// `webhook-id`). Calling it again changes nothing.
    pub fn stop(&mut self) {
        self.core.stop();
    }

    /// Stops the server at once (e.g. on a second Ctrl-C): [`Server::run`](crate::Server::run)
    /// returns at the loop's next turn, dropping every connection without flushing what is
    /// queued and aborting the webhook attempts in flight. The data directory, if any, is
    /// still closed cleanly: what was acknowledged is on disk, and pending webhook
    /// messages are delivered after the next start. Also cuts a graceful
    /// [`stop`](Self::stop) short.
    pub fn stop_now(&mut self) {
        self.core.stop_now();
    }

    /// Whether the server is stopping (a [`stop`](Self::stop) or
    /// [`stop_now`](Self::stop_now) was called).
    pub fn is_stopping(&self) -> bool {
        self.core.is_stopping()
    }
}

/// Checks one JSON publish's data.
fn check_one(data: &str) -> Result<(), PublishError> {
    crate::proto::json::check(data.as_bytes())
        .map_err(|error| PublishError::InvalidJson { item: None, error })
}

/// Checks every item of a JSON batch; the first bad one names its index.
fn check_items(datas: &[&str]) -> Result<(), PublishError> {
    for (i, d) in datas.iter().enumerate() {
        crate::proto::json::check(d.as_bytes()).map_err(|error| PublishError::InvalidJson {
            item: Some(i),
            error,
        })?;
    }
    Ok(())
}
