//! The long-lived modes on the [`Core`]: WebSocket upgrade and sends, SSE streams, topic
//! subscriptions, publishing (one encoding shared by every subscriber), the slow-reader
//! policy, and graceful stop.

use super::*;

impl Core {
    /// Validates a WebSocket handshake and switches connection `i` to WebSocket.
    pub(super) fn upgrade(
        &mut self,
        i: usize,
        meta: ReqMeta,
        req: &Request,
        acc: &WsAccept,
    ) -> bool {
        let headers = req
            .headers
            .iter()
            .map(|h| (h.name.as_str(), h.value.as_slice()));
        let hs = match ws::validate_request(&req.method, headers) {
            Ok(hs) => hs,
            Err(e) => {
                debug!("bad WebSocket handshake: {} {}", e.status, e.reason);
                let mut resp = Response::text(e.status, format!("{}\n", e.reason));
                if e.status == 426 {
                    resp = resp.header("Sec-WebSocket-Version", "13");
                }
                self.respond(i, meta, &resp);
                return false;
            }
        };
        if meta.version != Version::Http11 {
            self.respond(i, meta, &Response::text(400, "WebSocket needs HTTP/1.1\n"));
            return false;
        }
        if let Some(p) = &acc.protocol {
            if !hs.protocols.iter().any(|o| o == p) {
                warn!("application chose subprotocol {p:?}, which the client did not offer");
                self.respond(
                    i,
                    meta,
                    &Response::text(500, "subprotocol not offered by the client\n"),
                );
                return false;
            }
        }
        let mut out = Vec::new();
        ws::write_accept_response(&mut out, hs.key, acc.protocol.as_deref());
        let cfg = ws::Config {
            max_frame_bytes: self.config.ws_max_frame,
            max_message_bytes: acc.max_message.unwrap_or(self.config.ws_max_message),
        };
        self.cancel_conn_timer(i);
        let Some(c) = slot(&mut self.slots, i) else {
            return false;
        };
        debug!("{} upgraded to WebSocket", c.id);
        c.out.push_slice(&mut self.pool, &out);
        c.mode = Mode::Ws(Some(Box::new(ws::Connection::new(cfg))));
        self.set_kind(i, ConnKind::WebSocket);
        self.mark_dirty(i);
        true
    }

    /// Turns connection `i` into an SSE stream of a topic.
    pub(super) fn start_sse(&mut self, i: usize, meta: ReqMeta, s: SseStream) {
        if !crate::proto::topic::valid_topic(&s.topic) {
            self.respond(i, meta, &Response::text(400, "bad topic name\n"));
            return;
        }
        if meta.head {
            let resp = Response::new(200).header("Content-Type", "text/event-stream");
            self.respond(i, meta, &resp);
            return;
        }
        let chunked = meta.version == Version::Http11;
        self.refresh_date();
        let mut head = Vec::new();
        http1::write_stream_head(
            &mut head,
            meta.version,
            200,
            &[
                ("Content-Type", "text/event-stream"),
                ("Cache-Control", "no-cache"),
                ("X-Accel-Buffering", "no"),
            ],
            Some(&self.date.text),
        );
        let mut body = Vec::new();
        if let Some(ms) = self.config.sse_retry {
            sse::write_retry(&mut body, ms);
        }
        let mut replayed = 0;
        if let Some(last) = s.last_id {
            let page = self.topics.read_after(&s.topic, last, usize::MAX);
            if page.gap {
                sse::write_gap(&mut body, page.oldest);
            }
            for ev in &page.events {
                sse::write_topic_event(&mut body, ev);
            }
            replayed = page.events.len();
        }
        self.stats.delivered_sse += replayed as u64;
        self.cancel_conn_timer(i);
        let Some(c) = slot(&mut self.slots, i) else {
            return;
        };
        debug!(
            "{} SSE stream of {:?} (after {:?}, {replayed} replayed)",
            c.id, s.topic, s.last_id
        );
        c.out.push_slice(&mut self.pool, &head);
        c.mode = Mode::Sse { chunked };
        c.rbuf.clear();
        let id = c.id;
        self.push_stream_bytes(i, chunked, &body);
        self.add_sub(i, id, &s.topic);
        self.set_kind(i, ConnKind::Sse);
        let every = self.config.sse_heartbeat;
        self.set_conn_timer(i, ConnTimer::Heartbeat, every);
    }

    pub(super) fn add_sub(&mut self, i: usize, id: ConnId, topic: &str) {
        let Some(c) = slot(&mut self.slots, i) else {
            return;
        };
        if c.topics.iter().any(|t| &**t == topic) {
            return;
        }
        c.topics.push(topic.into());
        self.subs.entry(topic.into()).or_default().push(id);
    }

    /// Appends SSE bytes to a stream, in a chunk when the stream is chunked.
    pub(super) fn push_stream_bytes(&mut self, i: usize, chunked: bool, bytes: &[u8]) {
        if bytes.is_empty() {
            return;
        }
        let Some(c) = slot(&mut self.slots, i) else {
            return;
        };
        c.out.append(&mut self.pool, bytes.len() + 12, |v| {
            if chunked {
                http1::write_chunk(v, bytes)
            } else {
                v.extend_from_slice(bytes)
            }
        });
        self.mark_dirty(i);
    }

    /// Queues a frame for a WebSocket connection (stateless encoding: server frames are
    /// unmasked), respecting the closing state and the slow-reader policy.
    pub(super) fn ws_send(&mut self, id: ConnId, opcode: OpCode, payload: &[u8]) -> bool {
        let Some(i) = self.index_of(id) else {
            return false;
        };
        let Some(c) = self.conn_mut(i) else {
            return false;
        };
        if !matches!(c.mode, Mode::Ws(_)) || c.ws_close_sent || c.closing != Closing::No {
            return false;
        }
        if c.out.len() >= self.config.high_water && self.over_high_water(i) {
            return false;
        }
        let Some(c) = slot(&mut self.slots, i) else {
            return false;
        };
        c.out.append(&mut self.pool, payload.len() + 14, |v| {
            encode_frame(v, opcode, payload)
        });
        self.mark_dirty(i);
        true
    }

    /// Queues shared bytes for a subscriber, respecting the slow-reader policy.
    pub(super) fn deliver(&mut self, i: usize, bytes: &Rc<[u8]>) -> bool {
        let Some(c) = slot(&mut self.slots, i) else {
            return false;
        };
        if c.ws_close_sent || c.closing != Closing::No {
            return false;
        }
        if c.out.len() >= self.config.high_water && self.over_high_water(i) {
            return false;
        }
        let Some(c) = slot(&mut self.slots, i) else {
            return false;
        };
        c.out.push_shared(bytes.clone());
        self.mark_dirty(i);
        true
    }

    /// Connection `i` has `high_water` bytes queued: first let the socket take what it can
    /// (the queue may only look full because this step has not flushed yet); if it is still
    /// over the mark, apply the slow-reader policy. True when the new bytes must not go in.
    pub(super) fn over_high_water(&mut self, i: usize) -> bool {
        self.flush(i);
        let high_water = self.config.high_water;
        match slot(&mut self.slots, i) {
            Some(c) if c.out.len() < high_water && c.closing == Closing::No => false,
            Some(_) => {
                self.slow(i);
                true
            }
            None => true,
        }
    }

    /// Applies the slow-reader policy to connection `i`.
    pub(super) fn slow(&mut self, i: usize) {
        let policy = self.config.slow_policy;
        let Some(c) = slot(&mut self.slots, i) else {
            return;
        };
        let id = c.id;
        match c.mode {
            Mode::Ws(_) if policy == SlowPolicy::DropMessages => {
                trace!("{id} slow reader: message dropped");
                return;
            }
            Mode::Ws(_) => {
                debug!("{id} slow reader: closing with 1008");
                c.out.drop_unstarted(&mut self.pool);
                let mut payload = 1008u16.to_be_bytes().to_vec();
                payload.extend_from_slice(b"slow reader");
                c.out.append(&mut self.pool, payload.len() + 14, |v| {
                    encode_frame(v, OpCode::Close, &payload)
                });
                c.ws_close_sent = true;
                c.ws_code = Some(1008);
            }
            Mode::Sse { chunked } => {
                debug!("{id} slow SSE reader: ending the stream");
                c.out.drop_unstarted(&mut self.pool);
                if chunked {
                    c.out.append(&mut self.pool, 5, http1::write_last_chunk);
                }
            }
            Mode::Http { .. } => return,
        }
        let kind = c.kind;
        self.notes.push(Note::Slow(id, kind));
        self.start_closing(i);
    }

    pub(super) fn publish(
        &mut self,
        topic: &str,
        event: Option<&str>,
        data: &str,
    ) -> Result<u64, PublishError> {
        let ev = self.topics.publish(topic, event, data)?;
        self.stats.published += 1;
        trace!("publish {topic:?} id {} ({} bytes)", ev.id, ev.data.len());
        if let Some((key, list)) = self.subs.remove_entry(topic) {
            // Each encoding is made once and shared by every subscriber that needs it.
            let mut ws_frame: Option<Rc<[u8]>> = None;
            let mut sse_chunked: Option<Rc<[u8]>> = None;
            let mut sse_plain: Option<Rc<[u8]>> = None;
            for &id in &list {
                let Some(i) = self.index_of(id) else { continue };
                let Some(c) = self.conn_mut(i) else { continue };
                match c.mode {
                    Mode::Ws(_) => {
                        let bytes = ws_frame.get_or_insert_with(|| ws_event_frame(&ev)).clone();
                        if self.deliver(i, &bytes) {
                            self.stats.delivered_websocket += 1;
                        }
                    }
                    Mode::Sse { chunked } => {
                        let slot = if chunked {
                            &mut sse_chunked
                        } else {
                            &mut sse_plain
                        };
                        let bytes = slot
                            .get_or_insert_with(|| sse_event_bytes(&ev, chunked))
                            .clone();
                        if self.deliver(i, &bytes) {
                            self.stats.delivered_sse += 1;
                        }
                    }
                    Mode::Http { .. } => {}
                }
            }
            // A subscriber may have closed meanwhile (a write error while flushing).
            let mut list = list;
            list.retain(|id| self.index_of(*id).is_some());
            if !list.is_empty() {
                self.subs.insert(key, list);
            }
        }
        if self.hooks.has_subscribers(topic) {
            self.publish_webhooks(topic, &ev);
        }
        for (id, since) in self.parked.take_topic(topic) {
            if let Some(i) = self.index_of(id) {
                self.answer_parked(i, topic, since, false);
            }
        }
        Ok(ev.id)
    }

    pub(super) fn close_ws(&mut self, id: ConnId, code: u16, reason: &str) -> bool {
        let Some(i) = self.index_of(id) else {
            return false;
        };
        let busy = self.busy == Some(i);
        let Some(c) = slot(&mut self.slots, i) else {
            return false;
        };
        if c.ws_close_sent || c.closing != Closing::No {
            return false;
        }
        match &mut c.mode {
            Mode::Ws(Some(wsc)) if !busy => {
                let mut out = Vec::new();
                if !wsc.close(&mut out, code, reason) {
                    // A code that may not be sent (1005, 1006, 1015, < 1000...).
                    return false;
                }
                c.out.push_slice(&mut self.pool, &out);
                c.ws_close_sent = true;
                c.ws_code = Some(code);
                debug!("{id} ws close sent: {code} {reason:?}");
            }
            Mode::Ws(_) => {
                c.pending_close = Some((code, reason.to_owned()));
                return true;
            }
            _ => return false,
        }
        let wait = self.config.ws_close_timeout;
        self.set_conn_timer(i, ConnTimer::WsClose, wait);
        self.mark_dirty(i);
        true
    }

    pub(super) fn stop(&mut self) {
        if self.stopping.is_some() {
            return;
        }
        debug!("stopping: no new connections; flushing and closing the open ones");
        self.stopping = Some(deadline(self.now, self.config.stop_timeout));
        if let Some(mut l) = self.listener.take() {
            let _ = self.poll.registry().deregister(&mut l);
        }
        for i in 0..self.slots.len() {
            let Some(c) = slot(&mut self.slots, i) else {
                continue;
            };
            if self.busy == Some(i) && matches!(c.mode, Mode::Http { .. }) {
                // The request whose callback asked to stop: its answer is still to be
                // queued, and goes out with `Connection: close` since we are stopping.
                continue;
            }
            let id = c.id;
            match &c.mode {
                Mode::Http {
                    reader: None,
                    waiting: Waiting::No,
                } if c.rbuf.is_empty() => {
                    self.start_closing(i);
                }
                Mode::Http {
                    waiting: Waiting::Parked(_),
                    ..
                } => {
                    if let Some((topic, since)) = self.parked.unpark(id) {
                        self.answer_parked(i, &topic, since, true);
                    }
                }
                Mode::Http { .. } => {}
                Mode::Sse { chunked } => {
                    if *chunked {
                        c.out.append(&mut self.pool, 5, http1::write_last_chunk);
                    }
                    self.start_closing(i);
                }
                Mode::Ws(_) => {
                    self.close_ws(id, 1001, "server stopping");
                }
            }
        }
    }
}

/// One text frame `{"id":N,"event":...,"data":"..."}` for WebSocket subscribers.
fn ws_event_frame(ev: &Event) -> Rc<[u8]> {
    let mut json_text = Vec::with_capacity(ev.data.len() + 48);
    json::write_event(&mut json_text, ev);
    let mut frame = Vec::with_capacity(json_text.len() + 10);
    encode_frame(&mut frame, OpCode::Text, &json_text);
    frame.into()
}

/// One SSE event, chunk-framed when the stream is chunked.
fn sse_event_bytes(ev: &Event, chunked: bool) -> Rc<[u8]> {
    let mut text = Vec::with_capacity(ev.data.len() + 32);
    sse::write_topic_event(&mut text, ev);
    if chunked {
        let mut framed = Vec::with_capacity(text.len() + 12);
        http1::write_chunk(&mut framed, &text);
        framed.into()
    } else {
        text.into()
    }
}
