//! Input: reading a connection until `WouldBlock` (within its budget), handing the bytes
//! to its core, and calling the application for each complete request or WebSocket message.

use std::io;

use log::{debug, trace};

use super::wire::WireKey;
use super::{conn, Driver, Handler, READ_BUDGET};
use crate::api::Reply;
use crate::proto::http1::Request;
use crate::proto::server::ConnKind;
use crate::proto::tap::Dir;

impl<H: Handler> Driver<H> {
    /// Reads from connection `i` until `WouldBlock`, its budget, or the core wants no more.
    pub(super) fn read_conn(&mut self, i: usize) {
        let mut budget = READ_BUDGET;
        let limit = self.core.read_limit();
        loop {
            let core = &mut self.core;
            let Some(c) = conn::slot(&mut core.slots, i) else {
                return;
            };
            if c.eof {
                break;
            }
            if c.read_paused || !c.proto.wants_read(c.out.len(), &core.config.conn) {
                c.read_paused = true;
                break;
            }
            let read = match c.rbuf.spare(limit) {
                Some(space) => {
                    let room = space.len();
                    c.stream.read(space).map(|n| Some((n, room)))
                }
                None => Ok(None),
            };
            match read {
                Ok(Some((0, _))) => {
                    c.eof = true;
                    break;
                }
                Ok(Some((n, room))) => {
                    c.rbuf.filled(n);
                    trace!("{} read {n} bytes", c.id);
                    if let Some(w) = &mut core.wire {
                        let got = c.rbuf.pending();
                        let new = &got[got.len().saturating_sub(n)..];
                        w.saw(WireKey::Conn(i), Dir::Right, new);
                    }
                    // A short read from a plain socket emptied its receive queue: more
                    // bytes will raise a new readiness edge, so the read that would only
                    // say WouldBlock is skipped. Not after the peer's FIN was reported
                    // (no edge follows it: read on to the end of stream), nor for TLS
                    // (rustls may hold decrypted bytes the socket no longer has).
                    let drained = n < room && !c.hup && !c.stream.is_tls();
                    self.process(i);
                    budget = budget.saturating_sub(n);
                    if budget == 0 {
                        self.core.ready.push(i);
                        break;
                    }
                    if drained {
                        break;
                    }
                }
                Ok(None) => {
                    // The buffer is full of bytes the protocol cannot consume yet.
                    self.process(i);
                    let full =
                        conn::slot(&mut self.core.slots, i).is_some_and(|c| c.rbuf.len() >= limit);
                    if full {
                        let answered = self.core.with_conn(i, |p, env| p.input_full(env));
                        if let (Some(false), Some(c)) =
                            (answered, conn::slot(&mut self.core.slots, i))
                        {
                            c.read_paused = true;
                        }
                        break;
                    }
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => {
                    use crate::proto::server::CloseReason;
                    let why = c
                        .stream
                        .failure()
                        .map_or(CloseReason::ReadError(e.kind()), CloseReason::Tls);
                    self.core.fail_conn(i, why);
                    return;
                }
            }
        }
        let core = &mut self.core;
        let Some(c) = conn::slot(&mut core.slots, i) else {
            return;
        };
        c.rbuf.release_if_empty();
        if c.eof {
            let unread = c.rbuf.len();
            core.with_conn(i, |p, env| p.on_eof(unread, env));
        } else if c.dirty || c.stream.pending() {
            // Answer what this connection asked for now, while its data is hot and before
            // reading the next one (or the TLS handshake's next flight). Broadcasts to
            // others still go out at the end.
            core.flush(i);
        }
    }

    /// Hands buffered input of connection `i` to its core, calling the application.
    pub(super) fn process(&mut self, i: usize) {
        loop {
            let core = &mut self.core;
            let Some(c) = conn::slot(&mut core.slots, i) else {
                return;
            };
            if c.rbuf.is_empty() {
                return;
            }
            if c.proto.dialing() {
                if !self.process_dial(i) {
                    return;
                }
                continue;
            }
            if c.proto.kind() == ConnKind::WebSocket {
                self.process_ws(i);
                return;
            }
            let mut rbuf = std::mem::take(&mut c.rbuf);
            let step = core.with_conn(i, |p, env| p.read_http(rbuf.pending(), env));
            rbuf.consume(step.as_ref().map_or(usize::MAX, |s| s.0));
            let Some(c) = conn::slot(&mut self.core.slots, i) else {
                return;
            };
            c.rbuf = rbuf;
            match step {
                Some((_, Some(req))) => self.dispatch(i, req),
                _ => return,
            }
        }
    }

    /// Reads a dial's handshake answer; once the WebSocket is open, tells the application.
    /// True when the connection opened (the rest of its input is WebSocket frames).
    fn process_dial(&mut self, i: usize) -> bool {
        let core = &mut self.core;
        let Some(c) = conn::slot(&mut core.slots, i) else {
            return false;
        };
        let id = c.id;
        let mut rbuf = std::mem::take(&mut c.rbuf);
        let step = core.with_conn(i, |p, env| p.read_dial(rbuf.pending(), env));
        rbuf.consume(step.map_or(usize::MAX, |s| s.0));
        let Some(c) = conn::slot(&mut self.core.slots, i) else {
            return false;
        };
        c.rbuf = rbuf;
        if step.is_some_and(|s| s.1) {
            self.handler.ws_open(&mut self.core, id);
            return self.core.index_of(id).is_some();
        }
        false
    }

    /// Calls the application for a complete request and carries out its reply.
    pub(super) fn dispatch(&mut self, i: usize, req: Request) {
        let Some(c) = conn::slot(&mut self.core.slots, i) else {
            return;
        };
        let id = c.id;
        debug!(
            "{id} {} {} ({:?}, {} body bytes)",
            req.method,
            req.target,
            req.version,
            req.body.len()
        );
        let mark = self.core.store_mark();
        let bp_mark = self.core.bp_mark();
        let reply = self.handler.request(&mut self.core, id, &req);
        if self.core.index_of(id).is_none() {
            return;
        }
        match reply {
            Reply::Response(resp) => {
                // Held while what the request wrote is not yet durable.
                // And while a registration it made is not yet in Redis.
                let resp = self.core.hold_reply(mark, id, resp);
                if let Some(resp) = resp.and_then(|r| self.core.bp_hold_reply(bp_mark, id, r)) {
                    self.core.with_conn(i, |p, env| p.respond(&resp, env));
                }
            }
            Reply::Later => {}
            Reply::Events(q) => self.core.events_reply(i, q),
            Reply::Park(p) => self.core.park(i, p),
            Reply::Sse(s) => self.core.start_sse(i, s),
            Reply::WebSocket(acc) => {
                if self.core.upgrade(i, &req, &acc) {
                    self.handler.ws_open(&mut self.core, id);
                    if let Some((topic, since)) = &acc.subscribe {
                        self.core.subscribe_ws(id, topic, *since);
                    }
                }
            }
        }
        if self.core.stopping.is_some() {
            // A long-lived reply that began after the stop finishes like the others did.
            self.core.stop_conn(i);
        }
        self.core.mark_dirty(i);
    }

    /// Runs WebSocket input of connection `i`, lending its receiving half out while the
    /// application handles each message.
    pub(super) fn process_ws(&mut self, i: usize) {
        let core = &mut self.core;
        let Some(c) = conn::slot(&mut core.slots, i) else {
            return;
        };
        let id = c.id;
        let Some(mut recv) = c.proto.take_receiver() else {
            return;
        };
        let mut rbuf = std::mem::take(&mut c.rbuf);
        loop {
            let step = self
                .core
                .with_conn(i, |p, env| p.ws_read(&mut recv, rbuf.pending_mut(), env));
            let Some((n, msg)) = step else { break };
            if let Some(msg) = msg {
                self.handler.ws_message(&mut self.core, id, msg);
            }
            rbuf.consume(n);
            if n == 0 || rbuf.is_empty() || self.core.index_of(id).is_none() {
                break;
            }
        }
        let Some(c) = conn::slot(&mut self.core.slots, i) else {
            return;
        };
        if c.proto.ws_input_done() {
            rbuf.clear();
        }
        c.rbuf = rbuf;
        c.proto.put_receiver(recv);
        self.core.mark_dirty(i);
    }
}
