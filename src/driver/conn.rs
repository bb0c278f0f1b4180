//! Connection bookkeeping on the [`Core`]: accepting, timers, flushing, closing, and
//! answering HTTP requests (including parked long polls).

use super::*;

impl Core {
    pub(super) fn conn_mut(&mut self, i: usize) -> Option<&mut Conn> {
        slot(&mut self.slots, i)
    }

    pub(super) fn index_of(&self, id: ConnId) -> Option<usize> {
        let i = id.index as usize;
        let s = self.slots.get(i)?;
        (s.gen == id.gen && s.conn.is_some()).then_some(i)
    }

    pub(super) fn read_limit(&self) -> usize {
        (self.config.http.max_head_bytes + 4096).max(super::buf::READ_MAX)
    }

    pub(super) fn poll_timeout(&mut self) -> Option<Duration> {
        if !self.ready.is_empty() || !self.notes.is_empty() {
            return Some(Duration::ZERO);
        }
        let mut next = self.timers.next_deadline();
        if let Some(stop) = self.stopping {
            next = Some(next.map_or(stop, |n| n.min(stop)));
        }
        // Round up to whole milliseconds so the loop does not spin on a near deadline.
        next.map(|d| d.saturating_duration_since(self.now) + Duration::from_micros(999))
    }

    /// Brings the cached `Date` value (`self.date.text`) up to the current second.
    pub(super) fn refresh_date(&mut self) {
        let secs = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_secs());
        if secs != self.date.secs || self.date.text.is_empty() {
            self.date.secs = secs;
            self.date.text = http1::http_date(secs);
        }
    }

    pub(super) fn accept(&mut self) {
        loop {
            let Some(listener) = self.listener.as_ref() else {
                return;
            };
            match listener.accept() {
                Ok((mut stream, peer)) => {
                    if self.live >= self.config.max_connections {
                        debug!("refusing {peer}: {} connections open", self.live);
                        continue;
                    }
                    let _ = stream.set_nodelay(true);
                    let i = self.free.pop().unwrap_or_else(|| {
                        self.slots.push(Slot { gen: 0, conn: None });
                        self.slots.len() - 1
                    });
                    if let Err(e) =
                        self.poll
                            .registry()
                            .register(&mut stream, Token(i), Interest::READABLE)
                    {
                        warn!("register {peer}: {e}");
                        self.free.push(i);
                        continue;
                    }
                    let slot = &mut self.slots[i];
                    slot.gen = slot.gen.wrapping_add(1);
                    let id = ConnId {
                        index: i as u32,
                        gen: slot.gen,
                    };
                    slot.conn = Some(Conn {
                        stream,
                        id,
                        kind: ConnKind::Http,
                        mode: Mode::Http {
                            reader: None,
                            waiting: Waiting::No,
                        },
                        rbuf: ReadBuf::default(),
                        out: OutQueue::default(),
                        timer: None,
                        closing: Closing::No,
                        writable: false,
                        read_paused: false,
                        eof: false,
                        dirty: false,
                        ws_close_sent: false,
                        ws_code: None,
                        pending_close: None,
                        kill: None,
                        topics: Vec::new(),
                        out_mark: 0,
                    });
                    self.live += 1;
                    self.counts[kind_index(ConnKind::Http)] += 1;
                    let idle = self.config.idle_timeout;
                    self.set_conn_timer(i, ConnTimer::Idle, idle);
                    debug!("{id} accepted from {peer}");
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => {
                    // E.g. EMFILE: the pending connection stays in the backlog; with
                    // edge-triggered readiness nothing would wake us for it, so retry.
                    warn!("accept failed: {e}; retrying in {ACCEPT_RETRY:?}");
                    self.timers
                        .insert(self.now + ACCEPT_RETRY, TimerEv::AcceptRetry);
                    return;
                }
            }
        }
    }

    pub(super) fn set_kind(&mut self, i: usize, kind: ConnKind) {
        if let Some(c) = slot(&mut self.slots, i) {
            self.counts[kind_index(c.kind)] -= 1;
            self.counts[kind_index(kind)] += 1;
            c.kind = kind;
        }
    }

    pub(super) fn set_conn_timer(&mut self, i: usize, what: ConnTimer, after: Duration) {
        let at = deadline(self.now, after);
        let Some(c) = slot(&mut self.slots, i) else {
            return;
        };
        if let Some((old, _)) = c.timer.take() {
            self.timers.cancel(old);
        }
        let tid = self.timers.insert(at, TimerEv::Conn(c.id, what));
        c.timer = Some((tid, what));
    }

    pub(super) fn cancel_conn_timer(&mut self, i: usize) {
        if let Some(c) = slot(&mut self.slots, i) {
            if let Some((old, _)) = c.timer.take() {
                self.timers.cancel(old);
            }
        }
    }

    pub(super) fn conn_timer(&mut self, tid: RawTimer, id: ConnId, what: ConnTimer) {
        let Some(i) = self.index_of(id) else { return };
        let Some(c) = self.conn_mut(i) else { return };
        if c.timer.map(|t| t.0) != Some(tid) {
            return;
        }
        c.timer = None;
        match what {
            ConnTimer::Header => {
                debug!("{id} request not complete in time");
                self.respond_error(i, 408, "request not complete in time");
            }
            ConnTimer::Idle if !c.out.is_empty() && c.out.len() < c.out_mark => {
                // Still sending an answer to a slow but reading client: not idle.
                c.out_mark = c.out.len();
                let idle = self.config.idle_timeout;
                self.set_conn_timer(i, ConnTimer::Idle, idle);
            }
            ConnTimer::Idle => self.close_now(i, "idle timeout"),
            ConnTimer::Park => {
                if let Some((topic, since)) = self.parked.unpark(id) {
                    self.answer_parked(i, &topic, since, true);
                }
            }
            ConnTimer::Heartbeat if c.closing != Closing::No => {}
            ConnTimer::Heartbeat => {
                let chunked = matches!(c.mode, Mode::Sse { chunked: true });
                let mut body = Vec::new();
                sse::write_comment(&mut body, "heartbeat");
                self.push_stream_bytes(i, chunked, &body);
                let every = self.config.sse_heartbeat;
                self.set_conn_timer(i, ConnTimer::Heartbeat, every);
            }
            ConnTimer::WsClose => self.close_now(i, "peer did not answer our close frame"),
            ConnTimer::Linger if c.closing == Closing::AfterFlush && c.out.len() < c.out_mark => {
                // The last answer is still going out, and moving: wait on.
                c.out_mark = c.out.len();
                self.set_conn_timer(i, ConnTimer::Linger, LINGER);
            }
            ConnTimer::Linger => self.close_now(i, "closed"),
        }
    }

    pub(super) fn mark_dirty(&mut self, i: usize) {
        if let Some(c) = slot(&mut self.slots, i) {
            if !c.dirty {
                c.dirty = true;
                self.dirty.push(i);
            }
        }
    }

    pub(super) fn flush_dirty(&mut self) {
        while !self.dirty.is_empty() {
            for i in std::mem::take(&mut self.dirty) {
                if let Some(c) = self.conn_mut(i) {
                    c.dirty = false;
                    self.flush(i);
                }
            }
        }
    }

    /// Writes what connection `i` has queued; keeps writable interest only while bytes remain.
    pub(super) fn flush(&mut self, i: usize) {
        let Some(c) = slot(&mut self.slots, i) else {
            return;
        };
        if let Some(reason) = c.kill.take() {
            if self.busy != Some(i) {
                self.close_now(i, &reason);
            } else {
                c.kill = Some(reason);
            }
            return;
        }
        match c.out.flush(&mut c.stream, &mut self.pool) {
            Ok(Flushed::All) => {
                if c.writable {
                    c.writable = false;
                    let _ = self.poll.registry().reregister(
                        &mut c.stream,
                        Token(i),
                        Interest::READABLE,
                    );
                }
                if c.read_paused {
                    c.read_paused = false;
                    self.ready.push(i);
                }
                if c.closing == Closing::AfterFlush && self.busy != Some(i) {
                    c.closing = Closing::Lingering;
                    // Half-close, then keep reading (and discarding) until the peer hangs
                    // up, so unread request bytes do not turn our last response into a RST.
                    let _ = c.stream.shutdown(Shutdown::Write);
                    self.set_conn_timer(i, ConnTimer::Linger, LINGER);
                    self.ready.push(i);
                }
            }
            Ok(Flushed::Blocked) => {
                if !c.writable {
                    c.writable = true;
                    let _ = self.poll.registry().reregister(
                        &mut c.stream,
                        Token(i),
                        Interest::READABLE | Interest::WRITABLE,
                    );
                }
            }
            Err(e) => {
                let msg = format!("write error: {e}");
                self.close_now(i, &msg);
            }
        }
    }

    /// Applies what a callback asked for while connection `i` was busy.
    pub(super) fn after_callback(&mut self, i: usize) {
        let Some(c) = self.conn_mut(i) else { return };
        if let Some((code, reason)) = c.pending_close.take() {
            let id = c.id;
            self.close_ws(id, code, &reason);
        }
        let Some(c) = self.conn_mut(i) else { return };
        if let Some(reason) = c.kill.take() {
            self.close_now(i, &reason);
            return;
        }
        self.mark_dirty(i);
    }

    pub(super) fn on_eof(&mut self, i: usize) {
        let Some(c) = self.conn_mut(i) else { return };
        trace!("{} end of stream from peer", c.id);
        match (&c.mode, c.closing) {
            (_, Closing::Lingering) => self.close_now(i, "closed"),
            (
                Mode::Http {
                    reader: None,
                    waiting: Waiting::No,
                },
                _,
            ) if c.rbuf.is_empty() => {
                if c.out.is_empty() {
                    self.close_now(i, "peer closed");
                } else {
                    // The client finished sending; finish our answers, then close.
                    self.start_closing(i);
                }
            }
            (Mode::Ws(_), Closing::AfterFlush) => {
                c.ws_code = c.ws_code.or(Some(1006));
                self.close_now(i, "peer closed");
            }
            (Mode::Ws(_), _) => {
                c.ws_code = Some(1006);
                self.close_now(i, "peer closed without a close frame");
            }
            _ => self.close_now(i, "peer closed"),
        }
    }

    /// Removes connection `i` now (or as soon as the callback running for it returns).
    pub(super) fn close_now(&mut self, i: usize, reason: &str) {
        if self.busy == Some(i) {
            if let Some(c) = self.conn_mut(i) {
                c.kill.get_or_insert_with(|| reason.to_owned());
            }
            return;
        }
        let Some(slot) = self.slots.get_mut(i) else {
            return;
        };
        let Some(mut c) = slot.conn.take() else {
            return;
        };
        self.free.push(i);
        self.live -= 1;
        self.counts[kind_index(c.kind)] -= 1;
        if let Some((t, _)) = c.timer.take() {
            self.timers.cancel(t);
        }
        if c.kind == ConnKind::Parked {
            self.parked.unpark(c.id);
        }
        for t in c.topics.drain(..) {
            if let Some(list) = self.subs.get_mut(&t) {
                if let Some(pos) = list.iter().position(|x| *x == c.id) {
                    list.swap_remove(pos);
                }
                if list.is_empty() {
                    self.subs.remove(&t);
                }
            }
        }
        let _ = self.poll.registry().deregister(&mut c.stream);
        c.rbuf.clear();
        c.rbuf.release_if_empty(&mut self.pool);
        debug!("{} closed: {reason}", c.id);
        let info = CloseInfo {
            kind: c.kind,
            ws_code: c.ws_code,
            reason: reason.to_owned(),
        };
        self.notes.push(Note::Closed(c.id, info));
    }

    pub(super) fn close_all(&mut self, reason: &str) {
        for i in 0..self.slots.len() {
            self.close_now(i, reason);
        }
    }

    pub(super) fn set_waiting(&mut self, i: usize, w: Waiting) {
        if let Some(Conn {
            mode: Mode::Http { waiting, .. },
            ..
        }) = self.conn_mut(i)
        {
            *waiting = w;
        }
    }

    /// Queues a response to the request answered on connection `i`.
    pub(super) fn respond(&mut self, i: usize, meta: ReqMeta, resp: &Response) {
        let stopping = self.stopping.is_some();
        let wants_close = resp
            .headers
            .iter()
            .any(|(n, v)| n.eq_ignore_ascii_case("connection") && v.eq_ignore_ascii_case("close"));
        let keep_alive = meta.keep_alive && !stopping && !wants_close;
        self.refresh_date();
        let date = &self.date.text;
        let Some(c) = slot(&mut self.slots, i) else {
            return;
        };
        if c.closing != Closing::No {
            // The application closed it meanwhile (or its write side is shut): no answer.
            return;
        }
        trace!(
            "{} <- {} ({} body bytes)",
            c.id,
            resp.status,
            resp.body.len()
        );
        c.out.append(&mut self.pool, resp.body.len() + 256, |out| {
            resp.encode(meta.version, meta.head, keep_alive, Some(date), out)
        });
        if let Mode::Http { waiting, .. } = &mut c.mode {
            *waiting = Waiting::No;
        }
        let pending = !c.rbuf.is_empty();
        if c.kind == ConnKind::Parked {
            self.set_kind(i, ConnKind::Http);
        }
        if !keep_alive {
            self.start_closing(i);
        } else if pending {
            self.ready.push(i);
        } else {
            let idle = self.config.idle_timeout;
            self.set_conn_timer(i, ConnTimer::Idle, idle);
            if let Some(c) = slot(&mut self.slots, i) {
                c.out_mark = c.out.len();
            }
        }
        self.mark_dirty(i);
    }

    /// Connection `i` closes once its queued output is written. That gets a deadline too:
    /// a peer that stops reading must not hold its slot forever (the WebSocket close
    /// timeout for WebSockets, the linger time otherwise).
    pub(super) fn start_closing(&mut self, i: usize) {
        let Some(c) = slot(&mut self.slots, i) else {
            return;
        };
        if c.closing != Closing::No {
            return;
        }
        c.closing = Closing::AfterFlush;
        c.out_mark = c.out.len();
        let wait = if matches!(c.mode, Mode::Ws(_)) {
            self.config.ws_close_timeout
        } else {
            LINGER
        };
        self.set_conn_timer(i, ConnTimer::Linger, wait);
        self.mark_dirty(i);
    }

    /// Answers with an error status and closes the connection afterwards.
    pub(super) fn respond_error(&mut self, i: usize, status: u16, reason: &str) {
        let mut resp = Response::text(status, format!("{reason}\n"));
        if status == 426 {
            resp = resp.header("Sec-WebSocket-Version", "13");
        }
        let meta = ReqMeta {
            version: Version::Http11,
            keep_alive: false,
            head: false,
        };
        self.cancel_conn_timer(i);
        self.respond(i, meta, &resp);
    }

    pub(super) fn park(&mut self, i: usize, meta: ReqMeta, p: Park) {
        if !crate::proto::topic::valid_topic(&p.topic) {
            self.respond(i, meta, &Response::text(400, "bad topic name\n"));
            return;
        }
        let page = self
            .topics
            .read_after(&p.topic, p.since, self.config.poll_batch);
        if !page.events.is_empty() || page.gap {
            self.set_waiting(i, Waiting::Parked(meta));
            self.answer_parked(i, &p.topic, p.since, false);
            return;
        }
        let Some(c) = self.conn_mut(i) else { return };
        let id = c.id;
        trace!("{id} parked on {:?} after {}", p.topic, p.since);
        self.parked.park(&p.topic, id, p.since);
        self.set_waiting(i, Waiting::Parked(meta));
        self.set_kind(i, ConnKind::Parked);
        self.set_conn_timer(i, ConnTimer::Park, p.timeout);
    }

    /// Answers a parked (or about to be parked) request with the events after `since`.
    pub(super) fn answer_parked(&mut self, i: usize, topic: &str, since: u64, timed_out: bool) {
        let Some(Conn {
            mode:
                Mode::Http {
                    waiting: Waiting::Parked(meta),
                    ..
                },
            ..
        }) = self.conn_mut(i)
        else {
            return;
        };
        let meta = *meta;
        let mut body = Vec::new();
        let n = {
            let page = if timed_out {
                Page {
                    events: Vec::new(),
                    gap: false,
                    next: since,
                    oldest: 0,
                    more: false,
                }
            } else {
                self.topics.read_after(topic, since, self.config.poll_batch)
            };
            json::write_page(&mut body, &page);
            page.events.len()
        };
        self.stats.delivered_longpoll += n as u64;
        let resp = Response::json(200, body).header("Cache-Control", "no-store");
        self.cancel_conn_timer(i);
        self.respond(i, meta, &resp);
    }
}
