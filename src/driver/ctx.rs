//! [`Ctx`]: what a callback can do.

use super::*;

impl Ctx<'_> {
    /// Publishes an event to `topic` and delivers it to every subscriber: WebSocket and SSE
    /// subscribers get it queued now, parked long polls are answered. Returns its id.
    pub fn publish(
        &mut self,
        topic: &str,
        event: Option<&str>,
        data: &str,
    ) -> Result<u64, PublishError> {
        self.core.publish(topic, event, data)
    }

    /// Sends a text message to a WebSocket connection. `false` when `conn` is not an open
    /// WebSocket (closed, closing, or another kind), or the message was dropped as slow.
    pub fn send_text(&mut self, conn: ConnId, text: &str) -> bool {
        self.core.ws_send(conn, OpCode::Text, text.as_bytes())
    }

    /// Sends a binary message to a WebSocket connection.
    pub fn send_binary(&mut self, conn: ConnId, data: &[u8]) -> bool {
        self.core.ws_send(conn, OpCode::Binary, data)
    }

    /// Sends a ping (payload at most 125 bytes) to a WebSocket connection.
    pub fn ping(&mut self, conn: ConnId, data: &[u8]) -> bool {
        data.len() <= 125 && self.core.ws_send(conn, OpCode::Ping, data)
    }

    /// Sends `text` to every connection in `conns` that is an open WebSocket, encoding the
    /// frame once and sharing its bytes. Returns how many got it.
    pub fn broadcast_text(&mut self, conns: &[ConnId], text: &str) -> usize {
        let mut frame = Vec::with_capacity(text.len() + 10);
        encode_frame(&mut frame, OpCode::Text, text.as_bytes());
        let frame: Rc<[u8]> = frame.into();
        let mut n = 0;
        for &id in conns {
            let Some(i) = self.core.index_of(id) else {
                continue;
            };
            if matches!(self.core.conn_mut(i).map(|c| &c.mode), Some(Mode::Ws(_)))
                && self.core.deliver(i, &frame)
            {
                n += 1;
            }
        }
        n
    }

    /// Starts the WebSocket closing handshake with `code` and `reason` (RFC 6455 §7.1.2).
    pub fn close_ws(&mut self, conn: ConnId, code: u16, reason: &str) -> bool {
        self.core.close_ws(conn, code, reason)
    }

    /// Closes a connection: a WebSocket with 1000 and the closing handshake, an SSE stream
    /// by ending it, an HTTP connection after what is queued for it was written.
    pub fn close(&mut self, conn: ConnId) {
        let core = &mut *self.core;
        let Some(i) = core.index_of(conn) else { return };
        let Some(c) = slot(&mut core.slots, i) else {
            return;
        };
        match c.mode {
            Mode::Ws(_) => {
                core.close_ws(conn, 1000, "");
            }
            Mode::Sse { chunked } => {
                if chunked && c.closing == Closing::No {
                    c.out.append(&mut core.pool, 5, http1::write_last_chunk);
                }
                core.start_closing(i);
            }
            Mode::Http { .. } => {
                if c.kind == ConnKind::Parked {
                    core.parked.unpark(conn);
                }
                core.start_closing(i);
            }
        }
    }

    /// Answers a request for which the application returned [`Reply::Later`].
    /// `false` when `conn` is gone or is not waiting for an answer.
    pub fn respond(&mut self, conn: ConnId, resp: Response) -> bool {
        let Some(i) = self.core.index_of(conn) else {
            return false;
        };
        match self.core.conn_mut(i).map(|c| &c.mode) {
            Some(Mode::Http {
                waiting: Waiting::Later(meta),
                ..
            }) => {
                let meta = *meta;
                self.core.respond(i, meta, &resp);
                true
            }
            _ => false,
        }
    }

    /// Subscribes a WebSocket connection to `topic` (see [`WsAccept::subscribe`]).
    /// `false` when `conn` is not an open WebSocket or the topic name is invalid; subscribing
    /// again to the same topic changes nothing (no second replay).
    pub fn subscribe(&mut self, conn: ConnId, topic: &str, since: Option<u64>) -> bool {
        let core = &mut *self.core;
        let Some(i) = core.index_of(conn) else {
            return false;
        };
        let Some(c) = core.conn_mut(i) else {
            return false;
        };
        if !matches!(c.mode, Mode::Ws(_))
            || c.ws_close_sent
            || c.closing != Closing::No
            || !crate::proto::topic::valid_topic(topic)
        {
            return false;
        }
        if c.topics.iter().any(|t| &**t == topic) {
            // Already subscribed: replaying again would duplicate events.
            return true;
        }
        if let Some(since) = since {
            let page = core.topics.read_after(topic, since, usize::MAX);
            let mut frames = Vec::new();
            if page.gap {
                let text = format!("{{\"gap\":true,\"oldest\":{}}}", page.oldest);
                encode_frame(&mut frames, OpCode::Text, text.as_bytes());
            }
            let mut json_text = Vec::new();
            for ev in &page.events {
                json_text.clear();
                json::write_event(&mut json_text, ev);
                encode_frame(&mut frames, OpCode::Text, &json_text);
            }
            core.stats.delivered_websocket += page.events.len() as u64;
            if let Some(c) = slot(&mut core.slots, i) {
                c.out.push_slice(&mut core.pool, &frames);
            }
            core.mark_dirty(i);
        }
        core.add_sub(i, conn, topic);
        true
    }

    /// Removes a subscription made with [`Ctx::subscribe`].
    pub fn unsubscribe(&mut self, conn: ConnId, topic: &str) {
        let core = &mut *self.core;
        let Some(i) = core.index_of(conn) else { return };
        if let Some(c) = slot(&mut core.slots, i) {
            c.topics.retain(|t| &**t != topic);
        }
        if let Some(list) = core.subs.get_mut(topic) {
            list.retain(|x| *x != conn);
            if list.is_empty() {
                core.subs.remove(topic);
            }
        }
    }

    /// Reads the kept events of `topic` after `since` (at most `max`), telling gaps.
    pub fn events(&self, topic: &str, since: u64, max: usize) -> Page<'_> {
        self.core.topics.read_after(topic, since, max)
    }

    /// The topic log.
    pub fn topics(&self) -> &Topics {
        &self.core.topics
    }

    /// Calls `tag`'s [`App::on_timer`] after `after`.
    pub fn set_timer(&mut self, after: Duration, tag: u64) -> TimerId {
        let at = deadline(self.core.now, after);
        TimerId(self.core.timers.insert(at, TimerEv::App(tag)))
    }

    /// Cancels a timer; `false` if it already fired or was cancelled.
    pub fn cancel_timer(&mut self, timer: TimerId) -> bool {
        self.core.timers.cancel(timer.0).is_some()
    }

    /// Counters and gauges.
    pub fn stats(&self) -> Stats {
        let c = &self.core.counts;
        Stats {
            http: c[0],
            parked: c[1],
            sse: c[2],
            websocket: c[3],
            ..self.core.stats
        }
    }

    /// What kind of connection `conn` is, or `None` when it is closed.
    pub fn kind(&self, conn: ConnId) -> Option<ConnKind> {
        let i = self.core.index_of(conn)?;
        self.core.slots[i].conn.as_ref().map(|c| c.kind)
    }

    /// The address the server listens on.
    pub fn local_addr(&self) -> SocketAddr {
        self.core.local_addr
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

    /// The secrets of the webhooks that point at this server itself (to verify what it
    /// receives from itself).
    pub fn own_webhook_secrets(&self) -> Vec<crate::proto::webhook::Secret> {
        self.core.own_webhook_secrets()
    }

    /// Webhook delivery counters.
    pub fn webhook_stats(&self) -> WebhookStats {
        self.core.hooks.stats()
    }

    /// Stops the server gracefully (see [`Handle::stop`]).
    pub fn stop(&mut self) {
        self.core.stop();
    }
}
