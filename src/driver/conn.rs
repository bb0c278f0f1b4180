//! The connection slab: accepting, the one timer per connection, flushing, and dropping.
//! Every decision is the connection core's; [`Core::with_conn`] is the one place that calls
//! it and applies what it decided.

use std::io::{self, IoSlice};
use std::net::SocketAddr;

use log::{debug, trace};
use mio::net::TcpStream;
use mio::{Interest, Token};

use super::transport::Stream;
use super::wire::WireKey;
use super::{Core, Note, SubKey, TimerEv};
use crate::api::{CloseInfo, ConnId};
use crate::proto::inbuf::InBuf;
use crate::proto::out::{OutQueue, MAX_SLICES};
use crate::proto::server::{CloseReason, ConnKind, Env, Expired, ServerConn};
use crate::proto::timer::TimerKey;

/// One slot of the slab.
#[derive(Debug)]
pub(super) struct ConnSlot {
    gen: u32,
    pub(super) conn: Option<Conn>,
}

/// The I/O facts of one connection, and its core.
#[derive(Debug)]
pub(crate) struct Conn {
    pub(crate) stream: Stream,
    pub(crate) id: ConnId,
    pub(crate) proto: ServerConn,
    pub(crate) rbuf: InBuf,
    pub(crate) out: OutQueue,
    /// The armed timer (its deadline is the timer table's).
    timer: Option<TimerKey>,
    /// The kind last seen (for the per-kind counts).
    kind: ConnKind,
    writable: bool,
    pub(crate) read_paused: bool,
    pub(crate) eof: bool,
    pub(crate) dirty: bool,
    /// The poller reported the peer's end of stream or an error: read until the end.
    pub(crate) hup: bool,
}

/// The connection in slot `i`, borrowing only the slab.
pub(super) fn slot(slots: &mut [ConnSlot], i: usize) -> Option<&mut Conn> {
    slots.get_mut(i).and_then(|s| s.conn.as_mut())
}

fn kind_index(k: ConnKind) -> usize {
    match k {
        ConnKind::Http => 0,
        ConnKind::Parked => 1,
        ConnKind::Sse => 2,
        ConnKind::WebSocket => 3,
    }
}

impl Core {
    pub(crate) fn index_of(&self, id: ConnId) -> Option<usize> {
        let i = id.index as usize;
        let s = self.slots.get(i)?;
        (s.gen == id.gen && s.conn.is_some()).then_some(i)
    }

    /// The connection `id`, if it is still open.
    pub(crate) fn conn(&self, id: ConnId) -> Option<&Conn> {
        self.slots.get(self.index_of(id)?)?.conn.as_ref()
    }

    /// Answers the request connection `id` is waiting on (a `Later` reply, or one held
    /// for the store); `false` when it is gone or not waiting.
    pub(crate) fn respond_to(&mut self, id: ConnId, resp: &crate::proto::http1::Response) -> bool {
        let Some(i) = self.index_of(id) else {
            return false;
        };
        let waiting = self
            .conn(id)
            .is_some_and(|c| c.proto.kind() == crate::proto::server::ConnKind::Http);
        let answered = waiting && self.with_conn(i, |p, env| p.respond(resp, env)) == Some(true);
        if answered {
            self.mark_dirty(i);
        }
        answered
    }

    /// Takes an accepted socket into the slab: plain, or `tls` with a new server session.
    pub(crate) fn add_conn(&mut self, tcp: TcpStream, peer: SocketAddr, tls: bool) {
        let _ = tcp.set_nodelay(true);
        let Some(mut stream) = self.new_stream(tcp, tls) else {
            return;
        };
        let (i, id) = self.reserve_slot();
        let registry = self.poll.registry();
        if let Err(e) = registry.register(&mut stream.tcp, Token(i), Interest::READABLE) {
            log::warn!("register {peer}: {e}");
            self.free.push(i);
            return;
        }
        let mut out = OutQueue::default();
        let mut env = Env {
            now: self.now,
            cfg: &self.config.conn,
            stopping: false,
            date: None,
            out: &mut out,
            codec: &mut self.codec,
        };
        let proto = match tls {
            true => ServerConn::new_with_handshake(&mut env),
            false => ServerConn::new(&mut env),
        };
        self.fill_slot(i, id, stream, proto, out);
        let how = if tls { " (TLS)" } else { "" };
        debug!("{id} accepted from {peer}{how}");
    }

    /// A slot for a new connection and its id (the slot's next generation); it counts as
    /// taken (off the free list) but holds no connection until [`fill_slot`](Self::fill_slot).
    pub(super) fn reserve_slot(&mut self) -> (usize, ConnId) {
        let i = self.free.pop().unwrap_or_else(|| {
            self.slots.push(ConnSlot { gen: 0, conn: None });
            self.slots.len() - 1
        });
        let slot = &mut self.slots[i];
        slot.gen = slot.gen.wrapping_add(1);
        let id = ConnId {
            index: i as u32,
            gen: slot.gen,
        };
        (i, id)
    }

    /// Puts a connection (its socket registered with token `i`) into reserved slot `i`.
    pub(super) fn fill_slot(
        &mut self,
        i: usize,
        id: ConnId,
        stream: Stream,
        proto: ServerConn,
        out: OutQueue,
    ) {
        let kind = proto.kind();
        if let Some(w) = &mut self.wire {
            w.open_conn(i, id, proto.dial_url().is_some());
        }
        self.slots[i].conn = Some(Conn {
            stream,
            id,
            proto,
            rbuf: InBuf::default(),
            out,
            timer: None,
            kind,
            writable: false,
            read_paused: false,
            eof: false,
            dirty: false,
            hup: false,
        });
        self.live += 1;
        self.counts[kind_index(kind)] += 1;
        self.settle(i);
    }

    /// The stream for an accepted socket (`None`: no TLS session could be made).
    fn new_stream(&mut self, tcp: TcpStream, tls: bool) -> Option<Stream> {
        if !tls {
            return Some(Stream::plain(tcp));
        }
        #[cfg(feature = "tls")]
        if let Some(server) = &self.tls_server {
            return match server.session() {
                Ok(session) => Some(Stream::tls(tcp, session)),
                Err(e) => {
                    log::warn!("tls: no session for a new connection: {e}");
                    None
                }
            };
        }
        None
    }

    /// Calls the core of connection `i` with an [`Env`], then applies what it decided
    /// ([`settle`](Self::settle)). `None` when the connection is gone.
    pub(crate) fn with_conn<R>(
        &mut self,
        i: usize,
        f: impl FnOnce(&mut ServerConn, &mut Env<'_>) -> R,
    ) -> Option<R> {
        let c = slot(&mut self.slots, i)?;
        let mut env = Env {
            now: self.now,
            cfg: &self.config.conn,
            stopping: self.stopping.is_some(),
            date: Some(&self.date.1),
            out: &mut c.out,
            codec: &mut self.codec,
        };
        let r = f(&mut c.proto, &mut env);
        self.settle(i);
        Some(r)
    }

    /// After a call into connection `i`'s core: count a change of kind (a poll that is no
    /// longer parked leaves the table), re-arm its one timer from `poll_timeout()`, queue it
    /// for a flush, resume input that waited for an answer, and drop it when it finished.
    fn settle(&mut self, i: usize) {
        let Some(c) = slot(&mut self.slots, i) else {
            return;
        };
        let kind = c.proto.kind();
        if kind != c.kind {
            self.counts[kind_index(c.kind)] -= 1;
            self.counts[kind_index(kind)] += 1;
            if c.kind == ConnKind::Parked {
                self.subs.remove_key(SubKey::Conn(c.id));
            }
            c.kind = kind;
        }
        let want = c.proto.poll_timeout();
        if c.timer.and_then(|key| self.timers.deadline(key)) != want {
            if let Some(key) = c.timer.take() {
                self.timers.cancel(key);
            }
            if let Some(at) = want {
                c.timer = Some(self.timers.insert(at, TimerEv::Conn(c.id)));
            }
        }
        if c.proto.take_slow() {
            self.notes.push(Note::Slow(c.id, kind));
        }
        if let Some(why) = c.proto.finished() {
            self.close_now(i, why);
            return;
        }
        if kind == ConnKind::Http && !c.rbuf.is_empty() && !c.proto.owes_answer() {
            self.ready.push(i);
        }
        if (!c.out.is_empty() || c.proto.awaiting_drain()) && !c.dirty {
            c.dirty = true;
            self.dirty.push(i);
        }
    }

    pub(crate) fn conn_timer(&mut self, key: TimerKey, id: ConnId) {
        let Some(i) = self.index_of(id) else { return };
        let Some(c) = slot(&mut self.slots, i) else {
            return;
        };
        if c.timer != Some(key) {
            return;
        }
        c.timer = None;
        if self.with_conn(i, |p, env| p.handle_timeout(env)) == Some(Expired::Park) {
            self.answer_parked(i, None);
        }
    }

    pub(crate) fn mark_dirty(&mut self, i: usize) {
        if let Some(c) = slot(&mut self.slots, i) {
            if !c.dirty {
                c.dirty = true;
                self.dirty.push(i);
            }
        }
    }

    pub(crate) fn flush_dirty(&mut self) {
        while !self.dirty.is_empty() {
            let mut batch = std::mem::take(&mut self.dirty);
            for &i in &batch {
                if let Some(c) = slot(&mut self.slots, i) {
                    c.dirty = false;
                    self.flush(i);
                }
            }
            if self.dirty.is_empty() {
                // Keep the list's allocation for the next step (a fan-out fills it again).
                batch.clear();
                self.dirty = batch;
            }
        }
    }

    /// Writes what connection `i` has queued; keeps writable interest only while bytes
    /// remain; tells the core when the queue drained.
    pub(crate) fn flush(&mut self, i: usize) {
        let Some(c) = slot(&mut self.slots, i) else {
            return;
        };
        let mut result = Ok(());
        while !c.out.is_empty() {
            // One chunk: a plain send (cheaper in the kernel than writev, and no slice
            // array). Several: one writev for all of them.
            let wrote = match c.out.single() {
                Some(bytes) => c.stream.write(bytes),
                None => {
                    let mut slices = [IoSlice::new(&[]); MAX_SLICES];
                    let n = c.out.io_slices(&mut slices);
                    c.stream.write_vectored(&slices[..n])
                }
            };
            match wrote {
                Ok(0) => result = Err(io::ErrorKind::WriteZero),
                Ok(k) => {
                    trace!("{} wrote {k} bytes", c.id);
                    if let Some(w) = &mut self.wire {
                        w.wrote(WireKey::Conn(i), &c.out, k);
                    }
                    c.out.advance(k);
                    continue;
                }
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
                Err(e) => result = Err(e.kind()),
            }
            break;
        }
        if result.is_ok() && c.out.is_empty() {
            // Only encrypted bytes may be left (a handshake answer, the last records).
            match c.stream.flush_pending() {
                Err(e) if e.kind() != io::ErrorKind::WouldBlock => result = Err(e.kind()),
                _ => {}
            }
        }
        if let Err(kind) = result {
            let why = c
                .stream
                .failure()
                .map_or(CloseReason::WriteError(kind), CloseReason::Tls);
            self.fail_conn(i, why);
            return;
        }
        let drained = c.out.is_empty() && !c.stream.pending();
        if drained == c.writable {
            c.writable = !drained;
            let interest = if drained {
                Interest::READABLE
            } else {
                Interest::READABLE | Interest::WRITABLE
            };
            let _ = self
                .poll
                .registry()
                .reregister(&mut c.stream.tcp, Token(i), interest);
        }
        if !drained {
            return;
        }
        if c.read_paused {
            c.read_paused = false;
            self.ready.push(i);
        }
        if self.with_conn(i, |p, env| p.on_drained(env)) == Some(true) {
            if let Some(c) = slot(&mut self.slots, i) {
                // Half-close, then keep reading (and discarding) until the peer hangs up,
                // so unread request bytes do not turn our last response into a reset.
                // (TLS sends close_notify first; if the socket is full, the flush that
                // sends it shuts the write side afterwards.)
                c.stream.shutdown_write();
                if c.stream.pending() {
                    self.mark_dirty(i);
                }
                self.ready.push(i);
            }
        }
    }

    /// Before the core judges a reader slow (its queue at the high-water mark), let the
    /// socket take what it can: the queue may only look full because this step has not
    /// flushed yet.
    pub(crate) fn flush_if_full(&mut self, i: usize) {
        let full =
            slot(&mut self.slots, i).is_some_and(|c| c.out.len() >= self.config.conn.high_water);
        if full {
            self.flush(i);
        }
    }

    /// An I/O error: the connection ends now.
    pub(crate) fn fail_conn(&mut self, i: usize, why: CloseReason) {
        self.with_conn(i, |p, _| p.abort(why));
    }

    /// Removes connection `i` and tells the application.
    fn close_now(&mut self, i: usize, why: CloseReason) {
        let Some(slot) = self.slots.get_mut(i) else {
            return;
        };
        let Some(mut c) = slot.conn.take() else {
            return;
        };
        self.free.push(i);
        self.live -= 1;
        self.counts[kind_index(c.kind)] -= 1;
        if let Some(key) = c.timer.take() {
            self.timers.cancel(key);
        }
        self.subs.remove_key(SubKey::Conn(c.id));
        let _ = self.poll.registry().deregister(&mut c.stream.tcp);
        c.rbuf.clear();
        c.rbuf.release_if_empty();
        if let Some(w) = &mut self.wire {
            w.close(WireKey::Conn(i));
        }
        debug!("{} closed: {why}", c.id);
        if why == CloseReason::PingTimeout {
            self.stats.ws_ping_timeouts += 1;
        }
        if let Some(failure) = c.proto.dial_failure() {
            // A TLS failure in rustls's own words (e.g. which certificate check failed).
            let failure = c.stream.failure_detail().unwrap_or(failure);
            let url = c.proto.dial_url().unwrap_or_default().to_owned();
            debug!("{} dial to {url} failed: {failure}", c.id);
            self.notes.push(Note::DialFailed(c.id, url, failure));
            return;
        }
        let info = CloseInfo {
            kind: c.kind,
            ws_code: c.proto.ws_code(),
            reason: why,
        };
        self.notes.push(Note::Closed(c.id, info));
    }

    pub(crate) fn close_all(&mut self) {
        for i in 0..self.slots.len() {
            self.fail_conn(i, CloseReason::ServerStopped);
        }
    }
}

#[cfg(test)]
mod size_tests {
    use super::*;
    use std::mem::size_of;

    /// Every connection pays its slab slot, open or idle: it stays small. (Debug builds
    /// carry mio's selector id in the socket; release slots are 8 bytes smaller.)
    #[test]
    fn a_connection_slot_stays_small() {
        let sizes = [
            ("ConnSlot", size_of::<ConnSlot>()),
            ("ServerConn", size_of::<ServerConn>()),
            ("OutQueue", size_of::<OutQueue>()),
            ("InBuf", size_of::<InBuf>()),
            ("Stream", size_of::<Stream>()),
            ("timer", size_of::<Option<TimerKey>>()),
        ];
        println!("{sizes:?}");
        assert!(size_of::<ConnSlot>() <= 184, "{sizes:?}");
        assert_eq!(size_of::<OutQueue>(), 8, "an empty queue is one pointer");
        assert!(size_of::<InBuf>() <= 32, "{sizes:?}");
    }
}
