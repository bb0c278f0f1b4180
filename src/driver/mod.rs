//! The mio driver: the only code that touches sockets.
//!
//! # Theory of operation
//!
//! One thread runs one `mio::Poll`. Connections live in a slab indexed by their `Token`;
//! each slot carries a generation so a [`ConnId`] of a closed connection never reaches a
//! newer one. Sockets are edge-triggered: on a readable event the driver reads until
//! `WouldBlock` (retrying `Interrupted`), handing each read to the sans-IO core in
//! [`crate::proto`], which says what happened and what to send. Output goes to a
//! per-connection queue; writable interest is registered only while that queue is
//! non-empty. A per-event read budget keeps one fast sender from starving the others:
//! a connection that used its budget goes on a ready list and is revisited after the
//! other events of the round.
//!
//! Every timeout (request head, keep-alive idle, long-poll, SSE heartbeat, WebSocket close
//! handshake, lingering close, application timers) is an entry in one deadline heap; the
//! poll timeout is the nearest deadline.
//!
//! Callbacks run with a [`Ctx`] over the driver's state (everything but the application),
//! so they can send, publish and close directly. A connection is never removed from the
//! slab while a callback for it is running: closes requested then are applied after it
//! returns.

mod buf;
mod handle;
mod webhook;

use std::collections::HashMap;
use std::io;
use std::net::{Shutdown, SocketAddr, ToSocketAddrs};
use std::rc::Rc;
use std::sync::mpsc::{channel, Receiver, Sender};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use log::{debug, trace, warn};
use mio::net::{TcpListener, TcpStream};
use mio::{Events, Interest, Poll, Token, Waker};

use crate::api::{
    App, CloseInfo, ConnId, ConnKind, Message, Park, Reply, SlowPolicy, SseStream, TimerId,
    WsAccept,
};
use crate::config::Config;
use crate::proto::http1::{self, Request, RequestReader, Response, Version};
use crate::proto::longpoll::Parked;
use crate::proto::timer::{TimerId as RawTimer, Timers};
use crate::proto::topic::{Event, Page, PublishError, Topics};
use crate::proto::ws::frame::{encode_frame, OpCode};
use crate::proto::{json, sse, ws};

use buf::{Flushed, OutQueue, Pool, ReadBuf};
pub(crate) use handle::Command;
pub use handle::Handle;
pub(crate) use webhook::HookConfig;
use webhook::{Hooks, CLIENT_BASE};
pub use webhook::{
    Resolver, WebhookCreated, WebhookError, WebhookInfo, WebhookOutcome, WebhookStats,
};

const LISTENER: Token = Token(usize::MAX - 1);
const WAKER: Token = Token(usize::MAX - 2);
/// Bytes read from one connection per readiness event before the others get a turn.
const READ_BUDGET: usize = 1 << 20;
/// How long a closing connection waits for the peer to read our last bytes and hang up.
const LINGER: Duration = Duration::from_secs(2);
/// Retry delay after `accept` failed (e.g. out of file descriptors).
const ACCEPT_RETRY: Duration = Duration::from_millis(100);

/// Counters and gauges of a running server; see [`Ctx::stats`].
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Stats {
    /// Open plain HTTP connections.
    pub http: usize,
    /// Open WebSocket connections.
    pub websocket: usize,
    /// Open SSE streams.
    pub sse: usize,
    /// Parked long polls.
    pub parked: usize,
    /// Events published.
    pub published: u64,
    /// Events sent to WebSocket subscribers.
    pub delivered_websocket: u64,
    /// Events sent on SSE streams.
    pub delivered_sse: u64,
    /// Events returned by long polls (events, not responses).
    pub delivered_longpoll: u64,
    /// Events delivered by webhook (2xx received).
    pub delivered_webhook: u64,
}

/// Facts about the request being answered, kept while its answer is pending.
#[derive(Debug, Clone, Copy)]
struct ReqMeta {
    version: Version,
    keep_alive: bool,
    head: bool,
}

#[derive(Debug)]
enum Waiting {
    No,
    Later(ReqMeta),
    Parked(ReqMeta),
}

#[derive(Debug)]
enum Mode {
    Http {
        reader: Option<Box<RequestReader>>,
        waiting: Waiting,
    },
    Sse {
        chunked: bool,
    },
    /// `None` while a callback for this connection runs.
    Ws(Option<Box<ws::Connection>>),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Closing {
    No,
    /// Close once the output queue is drained.
    AfterFlush,
    /// Write side shut; discarding input until the peer closes or the linger timer fires.
    Lingering,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum ConnTimer {
    Header,
    Idle,
    Park,
    Heartbeat,
    WsClose,
    Linger,
}

#[derive(Debug)]
enum TimerEv {
    Conn(ConnId, ConnTimer),
    App(u64),
    AcceptRetry,
    HookEngine,
    HookClient(usize, u32),
}

#[derive(Debug)]
struct Conn {
    stream: TcpStream,
    id: ConnId,
    kind: ConnKind,
    mode: Mode,
    rbuf: ReadBuf,
    out: OutQueue,
    timer: Option<(RawTimer, ConnTimer)>,
    closing: Closing,
    writable: bool,
    read_paused: bool,
    eof: bool,
    dirty: bool,
    ws_close_sent: bool,
    ws_code: Option<u16>,
    /// A close requested while a callback for this connection was running.
    pending_close: Option<(u16, String)>,
    /// Set when the connection must go; applied when no callback for it is running.
    kill: Option<String>,
    topics: Vec<Box<str>>,
}

#[derive(Debug)]
struct Slot {
    gen: u32,
    conn: Option<Conn>,
}

/// Something the application must hear about once the current step is done.
enum Note {
    Closed(ConnId, CloseInfo),
    Slow(ConnId, ConnKind),
    Webhook(WebhookOutcome),
}

/// Cached `Date` header value, reformatted once per second.
struct DateCache {
    secs: u64,
    text: String,
}

/// The driver's state: everything but the application.
pub(crate) struct Core {
    poll: Poll,
    listener: Option<TcpListener>,
    local_addr: SocketAddr,
    config: Config,
    slots: Vec<Slot>,
    free: Vec<usize>,
    live: usize,
    counts: [usize; 4],
    pool: Pool,
    timers: Timers<TimerEv>,
    topics: Topics,
    subs: HashMap<Box<str>, Vec<ConnId>>,
    parked: Parked<ConnId>,
    ready: Vec<usize>,
    dirty: Vec<usize>,
    notes: Vec<Note>,
    busy: Option<usize>,
    stats: Stats,
    stopping: Option<Instant>,
    date: DateCache,
    rx: Receiver<Command>,
    tx: Sender<Command>,
    waker: Arc<Waker>,
    now: Instant,
    hooks: Hooks,
}

/// The context handed to every callback: send, close, publish, set timers.
pub struct Ctx<'a> {
    core: &'a mut Core,
}

/// A pushwire server: one listener, one thread, one `mio::Poll`.
pub struct Server<A: App> {
    app: A,
    core: Core,
}

/// The connection in slot `i`, borrowing only the slab (so other fields stay usable).
fn slot(slots: &mut [Slot], i: usize) -> Option<&mut Conn> {
    slots.get_mut(i).and_then(|s| s.conn.as_mut())
}

/// Marks `c` (in slot `i`) for a flush at the end of the step.
fn dirty(list: &mut Vec<usize>, c: &mut Conn, i: usize) {
    if !c.dirty {
        c.dirty = true;
        list.push(i);
    }
}

fn kind_index(k: ConnKind) -> usize {
    match k {
        ConnKind::Http => 0,
        ConnKind::Parked => 1,
        ConnKind::Sse => 2,
        ConnKind::WebSocket => 3,
    }
}

impl<A: App> Server<A> {
    /// Binds `addr` and prepares the loop. Nothing is served until [`Server::run`].
    pub fn bind(addr: impl ToSocketAddrs, config: Config, app: A) -> io::Result<Self> {
        let addr = addr
            .to_socket_addrs()?
            .next()
            .ok_or_else(|| io::Error::new(io::ErrorKind::InvalidInput, "no address to bind"))?;
        let poll = Poll::new()?;
        let mut listener = TcpListener::bind(addr)?;
        poll.registry()
            .register(&mut listener, LISTENER, Interest::READABLE)?;
        let waker = Arc::new(Waker::new(poll.registry(), WAKER)?);
        let local_addr = listener.local_addr()?;
        let (tx, rx) = channel();
        let topics = Topics::new(config.history);
        let hooks = Hooks::new(config.hooks.clone(), local_addr);
        let core = Core {
            poll,
            listener: Some(listener),
            local_addr,
            config,
            slots: Vec::new(),
            free: Vec::new(),
            live: 0,
            counts: [0; 4],
            pool: Pool::new(64),
            timers: Timers::new(),
            topics,
            subs: HashMap::new(),
            parked: Parked::new(),
            ready: Vec::new(),
            dirty: Vec::new(),
            notes: Vec::new(),
            busy: None,
            stats: Stats::default(),
            stopping: None,
            date: DateCache {
                secs: 0,
                text: String::new(),
            },
            rx,
            tx,
            waker,
            now: Instant::now(),
            hooks,
        };
        debug!("listening on {local_addr}");
        Ok(Server { app, core })
    }

    /// The address the server listens on (useful after binding port 0).
    pub fn local_addr(&self) -> SocketAddr {
        self.core.local_addr
    }

    /// A handle for other threads.
    pub fn handle(&self) -> Handle {
        Handle {
            tx: self.core.tx.clone(),
            waker: self.core.waker.clone(),
        }
    }

    /// The application.
    pub fn app(&self) -> &A {
        &self.app
    }

    /// The application, mutably.
    pub fn app_mut(&mut self) -> &mut A {
        &mut self.app
    }

    /// Runs `f` with a context before (or between) runs, e.g. to publish initial events.
    pub fn with_ctx<R>(&mut self, f: impl FnOnce(&mut A, &mut Ctx<'_>) -> R) -> R {
        self.core.now = Instant::now();
        let r = f(
            &mut self.app,
            &mut Ctx {
                core: &mut self.core,
            },
        );
        self.after_step();
        r
    }

    /// Runs the loop until the server is stopped (through [`Handle::stop`] or
    /// [`Ctx::stop`]) and every connection is closed or the stop timeout passed.
    pub fn run(&mut self) -> io::Result<()> {
        let mut events = Events::with_capacity(1024);
        loop {
            self.core.now = Instant::now();
            if let Some(deadline) = self.core.stopping {
                if self.core.live == 0 || self.core.now >= deadline {
                    self.core.close_all("server stopped");
                    self.deliver_notes();
                    debug!("stopped");
                    return Ok(());
                }
            }
            let timeout = self.core.poll_timeout();
            if let Err(e) = self.core.poll.poll(&mut events, timeout) {
                if e.kind() == io::ErrorKind::Interrupted {
                    continue;
                }
                return Err(e);
            }
            self.core.now = Instant::now();
            for ev in events.iter() {
                match ev.token() {
                    LISTENER => self.core.accept(),
                    WAKER => self.drain_commands(),
                    Token(t) if t >= CLIENT_BASE => {
                        let readable = ev.is_readable() || ev.is_read_closed() || ev.is_error();
                        self.core
                            .hook_client_event(t - CLIENT_BASE, readable, ev.is_writable());
                    }
                    Token(i) => {
                        if ev.is_writable() {
                            self.core.flush(i);
                        }
                        if ev.is_readable() || ev.is_read_closed() || ev.is_error() {
                            self.read_conn(i);
                        }
                    }
                }
            }
            self.run_timers();
            let ready = std::mem::take(&mut self.core.ready);
            for i in ready {
                self.process(i);
                self.read_conn(i);
            }
            self.after_step();
        }
    }

    /// Flushes what callbacks queued and tells the application about closes.
    fn after_step(&mut self) {
        loop {
            self.core.flush_dirty();
            if self.core.notes.is_empty() {
                break;
            }
            self.deliver_notes();
        }
    }

    fn deliver_notes(&mut self) {
        while !self.core.notes.is_empty() {
            let notes = std::mem::take(&mut self.core.notes);
            for n in notes {
                let mut cx = Ctx {
                    core: &mut self.core,
                };
                match n {
                    Note::Closed(id, info) => self.app.on_close(&mut cx, id, &info),
                    Note::Slow(id, kind) => self.app.on_slow_reader(&mut cx, id, kind),
                    Note::Webhook(outcome) => self.app.on_webhook(&mut cx, &outcome),
                }
            }
        }
    }

    fn drain_commands(&mut self) {
        while let Ok(cmd) = self.core.rx.try_recv() {
            let mut cx = Ctx {
                core: &mut self.core,
            };
            match cmd {
                Command::Publish { topic, event, data } => {
                    if let Err(e) = cx.publish(&topic, event.as_deref(), &data) {
                        warn!("publish to {topic:?} from a handle failed: {e}");
                    }
                }
                Command::SendText(c, t) => {
                    cx.send_text(c, &t);
                }
                Command::SendBinary(c, b) => {
                    cx.send_binary(c, &b);
                }
                Command::Close(c) => cx.close(c),
                Command::Run(f) => f(&mut cx),
                Command::Stop => cx.stop(),
                Command::Resolved(n, result) => self.core.resolved(n, result),
            }
        }
    }

    fn run_timers(&mut self) {
        let now = self.core.now;
        while let Some((tid, ev)) = self.core.timers.pop_expired(now) {
            match ev {
                TimerEv::App(tag) => {
                    let mut cx = Ctx {
                        core: &mut self.core,
                    };
                    self.app.on_timer(&mut cx, TimerId(tid), tag);
                }
                TimerEv::AcceptRetry => self.core.accept(),
                TimerEv::HookEngine => self.core.hook_engine_timer(tid),
                TimerEv::HookClient(idx, gen) => self.core.hook_client_timer(idx, gen, tid),
                TimerEv::Conn(id, what) => self.core.conn_timer(tid, id, what),
            }
        }
    }

    /// Reads from connection `i` until `WouldBlock`, its budget, or a pause.
    fn read_conn(&mut self, i: usize) {
        let mut budget = READ_BUDGET;
        let limit = self.core.read_limit();
        loop {
            let core = &mut self.core;
            let high_water = core.config.high_water;
            let Some(c) = core.slots.get_mut(i).and_then(|s| s.conn.as_mut()) else {
                return;
            };
            if c.eof || c.kill.is_some() {
                break;
            }
            if c.read_paused || (c.out.len() > high_water && c.closing == Closing::No) {
                // Backpressure: the peer is not reading what we send; stop reading from it
                // until the queue drains (`Core::flush` resumes).
                c.read_paused = true;
                break;
            }
            match c.rbuf.read_from(&mut c.stream, &mut core.pool, limit) {
                Ok(Some(0)) => {
                    c.eof = true;
                    break;
                }
                Ok(Some(n)) => {
                    trace!("{} read {n} bytes", c.id);
                    self.process(i);
                    budget = budget.saturating_sub(n);
                    if budget == 0 {
                        self.core.ready.push(i);
                        break;
                    }
                }
                Ok(None) => {
                    // The buffer is full of bytes the protocol cannot consume yet.
                    self.process(i);
                    let core = &mut self.core;
                    let Some(c) = core.conn_mut(i) else { return };
                    if c.rbuf.len() >= limit {
                        match &c.mode {
                            Mode::Http {
                                waiting: Waiting::No,
                                ..
                            } => {
                                core.respond_error(i, 431, "request header block too large");
                            }
                            _ => c.read_paused = true,
                        }
                        break;
                    }
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => {
                    let msg = format!("read error: {e}");
                    self.core.close_now(i, &msg);
                    return;
                }
            }
        }
        let core = &mut self.core;
        if let Some(c) = slot(&mut core.slots, i) {
            let eof = c.eof;
            c.rbuf.release_if_empty(&mut core.pool);
            if eof {
                core.on_eof(i);
            }
        }
    }

    /// Hands buffered input of connection `i` to its protocol, calling the application.
    fn process(&mut self, i: usize) {
        loop {
            let core = &mut self.core;
            let limits = core.config.http;
            let Some(c) = slot(&mut core.slots, i) else {
                return;
            };
            if c.rbuf.is_empty() || c.kill.is_some() {
                return;
            }
            if c.closing != Closing::No {
                c.rbuf.clear();
                return;
            }
            match &mut c.mode {
                Mode::Sse { .. } => {
                    // Nothing is expected from an SSE client; its bytes are discarded.
                    c.rbuf.clear();
                    return;
                }
                Mode::Ws(_) => {
                    self.process_ws(i);
                    return;
                }
                Mode::Http { reader, waiting } => {
                    if !matches!(waiting, Waiting::No) {
                        // Pipelined requests wait until the pending answer is sent.
                        return;
                    }
                    let r = reader.get_or_insert_with(Box::default);
                    let mut early = Vec::new();
                    let res = r.advance(c.rbuf.pending(), &limits, &mut early);
                    if !early.is_empty() {
                        trace!("{} <- 100 Continue", c.id);
                        c.out.push_slice(&mut core.pool, &early);
                        dirty(&mut core.dirty, c, i);
                    }
                    match res {
                        Ok((n, Some(req))) => {
                            let Some(c) = core.conn_mut(i) else { return };
                            c.rbuf.consume(n);
                            if let Mode::Http { reader, .. } = &mut c.mode {
                                *reader = None;
                            }
                            core.cancel_conn_timer(i);
                            self.dispatch(i, req);
                        }
                        Ok((n, None)) => {
                            let Some(c) = core.conn_mut(i) else { return };
                            c.rbuf.consume(n);
                            if !matches!(c.timer, Some((_, ConnTimer::Header))) {
                                let after = core.config.header_timeout;
                                core.set_conn_timer(i, ConnTimer::Header, after);
                            }
                            return;
                        }
                        Err(e) => {
                            debug!("{} bad request: {} {}", c.id, e.status, e.reason);
                            c.rbuf.clear();
                            core.respond_error(i, e.status, e.reason);
                            return;
                        }
                    }
                }
            }
        }
    }

    /// Calls the application for a complete request and carries out its reply.
    fn dispatch(&mut self, i: usize, req: Request) {
        let Some(c) = self.core.conn_mut(i) else {
            return;
        };
        let id = c.id;
        let meta = ReqMeta {
            version: req.version,
            keep_alive: req.keep_alive(),
            head: req.is_head(),
        };
        debug!(
            "{id} {} {} ({:?}, {} body bytes)",
            req.method,
            req.target,
            req.version,
            req.body.len()
        );
        self.core.busy = Some(i);
        let reply = self.app.on_request(
            &mut Ctx {
                core: &mut self.core,
            },
            id,
            &req,
        );
        self.core.busy = None;
        match reply {
            Reply::Response(resp) => self.core.respond(i, meta, &resp),
            Reply::Later => self.core.set_waiting(i, Waiting::Later(meta)),
            Reply::Park(p) => self.core.park(i, meta, p),
            Reply::Sse(s) => self.core.start_sse(i, meta, s),
            Reply::WebSocket(acc) => {
                if self.core.upgrade(i, meta, &req, &acc) {
                    self.core.busy = Some(i);
                    self.app.on_ws_open(
                        &mut Ctx {
                            core: &mut self.core,
                        },
                        id,
                    );
                    self.core.busy = None;
                    if let Some((topic, since)) = &acc.subscribe {
                        Ctx {
                            core: &mut self.core,
                        }
                        .subscribe(id, topic, *since);
                    }
                }
            }
        }
        self.core.after_callback(i);
    }

    /// Runs the WebSocket codec over the buffered input of connection `i`.
    fn process_ws(&mut self, i: usize) {
        let core = &mut self.core;
        let Some(c) = core.conn_mut(i) else { return };
        let id = c.id;
        let Mode::Ws(ws_slot) = &mut c.mode else {
            return;
        };
        let Some(mut wsc) = ws_slot.take() else {
            return;
        };
        let mut rbuf = std::mem::take(&mut c.rbuf);
        core.busy = Some(i);
        loop {
            let mut forced = Vec::new();
            let step = wsc.read(rbuf.pending_mut(), &mut forced);
            if !forced.is_empty() {
                if let Some(c) = slot(&mut core.slots, i) {
                    c.out.push_slice(&mut core.pool, &forced);
                    dirty(&mut core.dirty, c, i);
                }
            }
            let consumed = match step {
                Ok((0, None)) => break,
                Ok((n, None)) => n,
                Ok((n, Some(ev))) => {
                    let mut cx = Ctx { core: &mut *core };
                    match ev {
                        ws::Event::Text(t) => {
                            trace!("{id} ws text {} bytes", t.len());
                            self.app.on_ws_message(&mut cx, id, Message::Text(t));
                        }
                        ws::Event::Binary(b) => {
                            trace!("{id} ws binary {} bytes", b.len());
                            self.app.on_ws_message(&mut cx, id, Message::Binary(b));
                        }
                        ws::Event::Ping(p) => {
                            trace!("{id} ws ping {} bytes (pong queued)", p.len())
                        }
                        ws::Event::Pong(p) => trace!("{id} ws pong {} bytes (ignored)", p.len()),
                        ws::Event::Close { code, reason } => {
                            debug!("{id} ws close received: {code:?} {reason:?}");
                            if let Some(c) = core.conn_mut(i) {
                                c.ws_code = c.ws_code.or(code).or(Some(1005));
                                c.ws_close_sent = true;
                            }
                        }
                    }
                    n
                }
                Err(e) => {
                    debug!("{id} ws protocol error: {} {}", e.code, e.reason);
                    if let Some(c) = core.conn_mut(i) {
                        c.ws_code = Some(e.code);
                        c.ws_close_sent = true;
                    }
                    rbuf.clear();
                    0
                }
            };
            rbuf.consume(consumed);
            if core.conn_mut(i).is_none_or(|c| c.kill.is_some()) || wsc.is_closed() {
                break;
            }
        }
        core.busy = None;
        let Some(c) = core.conn_mut(i) else { return };
        c.rbuf = rbuf;
        if wsc.is_closed() {
            c.rbuf.clear();
            c.closing = Closing::AfterFlush;
        }
        c.mode = Mode::Ws(Some(wsc));
        core.mark_dirty(i);
        core.after_callback(i);
    }
}

impl Core {
    fn conn_mut(&mut self, i: usize) -> Option<&mut Conn> {
        self.slots.get_mut(i).and_then(|s| s.conn.as_mut())
    }

    fn index_of(&self, id: ConnId) -> Option<usize> {
        let i = id.index as usize;
        let s = self.slots.get(i)?;
        (s.gen == id.gen && s.conn.is_some()).then_some(i)
    }

    fn read_limit(&self) -> usize {
        (self.config.http.max_head_bytes + 4096).max(64 * 1024)
    }

    fn poll_timeout(&mut self) -> Option<Duration> {
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

    fn date(&mut self) -> &str {
        let secs = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_secs());
        if secs != self.date.secs || self.date.text.is_empty() {
            self.date.secs = secs;
            self.date.text = http1::http_date(secs);
        }
        &self.date.text
    }

    fn accept(&mut self) {
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

    fn set_kind(&mut self, i: usize, kind: ConnKind) {
        if let Some(c) = self.slots.get_mut(i).and_then(|s| s.conn.as_mut()) {
            self.counts[kind_index(c.kind)] -= 1;
            self.counts[kind_index(kind)] += 1;
            c.kind = kind;
        }
    }

    fn set_conn_timer(&mut self, i: usize, what: ConnTimer, after: Duration) {
        let at = self.now + after;
        let Some(c) = self.slots.get_mut(i).and_then(|s| s.conn.as_mut()) else {
            return;
        };
        if let Some((old, _)) = c.timer.take() {
            self.timers.cancel(old);
        }
        let tid = self.timers.insert(at, TimerEv::Conn(c.id, what));
        c.timer = Some((tid, what));
    }

    fn cancel_conn_timer(&mut self, i: usize) {
        if let Some(c) = self.slots.get_mut(i).and_then(|s| s.conn.as_mut()) {
            if let Some((old, _)) = c.timer.take() {
                self.timers.cancel(old);
            }
        }
    }

    fn conn_timer(&mut self, tid: RawTimer, id: ConnId, what: ConnTimer) {
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
            ConnTimer::Idle => self.close_now(i, "idle timeout"),
            ConnTimer::Park => {
                if let Some((topic, since)) = self.parked.unpark(id) {
                    self.answer_parked(i, &topic, since, true);
                }
            }
            ConnTimer::Heartbeat => {
                let chunked = matches!(c.mode, Mode::Sse { chunked: true });
                let mut body = Vec::new();
                sse::write_comment(&mut body, "heartbeat");
                self.push_stream_bytes(i, chunked, &body);
                let every = self.config.sse_heartbeat;
                self.set_conn_timer(i, ConnTimer::Heartbeat, every);
            }
            ConnTimer::WsClose => self.close_now(i, "peer did not answer our close frame"),
            ConnTimer::Linger => self.close_now(i, "closed"),
        }
    }

    fn mark_dirty(&mut self, i: usize) {
        if let Some(c) = self.slots.get_mut(i).and_then(|s| s.conn.as_mut()) {
            if !c.dirty {
                c.dirty = true;
                self.dirty.push(i);
            }
        }
    }

    fn flush_dirty(&mut self) {
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
    fn flush(&mut self, i: usize) {
        let Some(c) = self.slots.get_mut(i).and_then(|s| s.conn.as_mut()) else {
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
    fn after_callback(&mut self, i: usize) {
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

    fn on_eof(&mut self, i: usize) {
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
                    c.closing = Closing::AfterFlush;
                    self.mark_dirty(i);
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
    fn close_now(&mut self, i: usize, reason: &str) {
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

    fn close_all(&mut self, reason: &str) {
        for i in 0..self.slots.len() {
            self.close_now(i, reason);
        }
    }

    fn set_waiting(&mut self, i: usize, w: Waiting) {
        if let Some(Conn {
            mode: Mode::Http { waiting, .. },
            ..
        }) = self.conn_mut(i)
        {
            *waiting = w;
        }
    }

    /// Queues a response to the request answered on connection `i`.
    fn respond(&mut self, i: usize, meta: ReqMeta, resp: &Response) {
        let stopping = self.stopping.is_some();
        let wants_close = resp
            .headers
            .iter()
            .any(|(n, v)| n.eq_ignore_ascii_case("connection") && v.eq_ignore_ascii_case("close"));
        let keep_alive = meta.keep_alive && !stopping && !wants_close;
        let date = self.date().to_owned();
        let Some(c) = self.slots.get_mut(i).and_then(|s| s.conn.as_mut()) else {
            return;
        };
        trace!(
            "{} <- {} ({} body bytes)",
            c.id,
            resp.status,
            resp.body.len()
        );
        c.out.append(&mut self.pool, |out| {
            resp.encode(meta.version, meta.head, keep_alive, Some(&date), out)
        });
        if let Mode::Http { waiting, .. } = &mut c.mode {
            *waiting = Waiting::No;
        }
        if !keep_alive {
            c.closing = Closing::AfterFlush;
        }
        let pending = !c.rbuf.is_empty();
        if c.kind == ConnKind::Parked {
            self.set_kind(i, ConnKind::Http);
        }
        if keep_alive {
            if pending {
                self.ready.push(i);
            } else {
                let idle = self.config.idle_timeout;
                self.set_conn_timer(i, ConnTimer::Idle, idle);
            }
        }
        self.mark_dirty(i);
    }

    /// Answers with an error status and closes the connection afterwards.
    fn respond_error(&mut self, i: usize, status: u16, reason: &str) {
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

    fn park(&mut self, i: usize, meta: ReqMeta, p: Park) {
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
    fn answer_parked(&mut self, i: usize, topic: &str, since: u64, timed_out: bool) {
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

impl Core {
    /// Validates a WebSocket handshake and switches connection `i` to WebSocket.
    fn upgrade(&mut self, i: usize, meta: ReqMeta, req: &Request, acc: &WsAccept) -> bool {
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
        let Some(c) = self.slots.get_mut(i).and_then(|s| s.conn.as_mut()) else {
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
    fn start_sse(&mut self, i: usize, meta: ReqMeta, s: SseStream) {
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
        let date = self.date().to_owned();
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
            Some(&date),
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
        let Some(c) = self.slots.get_mut(i).and_then(|s| s.conn.as_mut()) else {
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

    fn add_sub(&mut self, i: usize, id: ConnId, topic: &str) {
        let Some(c) = self.slots.get_mut(i).and_then(|s| s.conn.as_mut()) else {
            return;
        };
        if c.topics.iter().any(|t| &**t == topic) {
            return;
        }
        c.topics.push(topic.into());
        self.subs.entry(topic.into()).or_default().push(id);
    }

    /// Appends SSE bytes to a stream, in a chunk when the stream is chunked.
    fn push_stream_bytes(&mut self, i: usize, chunked: bool, bytes: &[u8]) {
        if bytes.is_empty() {
            return;
        }
        let Some(c) = self.slots.get_mut(i).and_then(|s| s.conn.as_mut()) else {
            return;
        };
        c.out.append(&mut self.pool, |v| {
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
    fn ws_send(&mut self, id: ConnId, opcode: OpCode, payload: &[u8]) -> bool {
        let Some(i) = self.index_of(id) else {
            return false;
        };
        let Some(c) = self.conn_mut(i) else {
            return false;
        };
        if !matches!(c.mode, Mode::Ws(_)) || c.ws_close_sent || c.closing != Closing::No {
            return false;
        }
        if c.out.len() >= self.config.high_water {
            self.slow(i);
            return false;
        }
        let Some(c) = self.slots.get_mut(i).and_then(|s| s.conn.as_mut()) else {
            return false;
        };
        c.out
            .append(&mut self.pool, |v| encode_frame(v, opcode, payload));
        self.mark_dirty(i);
        true
    }

    /// Queues shared bytes for a subscriber, respecting the slow-reader policy.
    fn deliver(&mut self, i: usize, bytes: &Rc<[u8]>) -> bool {
        let Some(c) = self.slots.get_mut(i).and_then(|s| s.conn.as_mut()) else {
            return false;
        };
        if c.ws_close_sent || c.closing != Closing::No {
            return false;
        }
        if c.out.len() >= self.config.high_water {
            self.slow(i);
            return false;
        }
        c.out.push_shared(bytes.clone());
        self.mark_dirty(i);
        true
    }

    /// Applies the slow-reader policy to connection `i`.
    fn slow(&mut self, i: usize) {
        let policy = self.config.slow_policy;
        let Some(c) = self.slots.get_mut(i).and_then(|s| s.conn.as_mut()) else {
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
                c.out
                    .append(&mut self.pool, |v| encode_frame(v, OpCode::Close, &payload));
                c.ws_close_sent = true;
                c.ws_code = Some(1008);
            }
            Mode::Sse { chunked } => {
                debug!("{id} slow SSE reader: ending the stream");
                c.out.drop_unstarted(&mut self.pool);
                if chunked {
                    c.out.append(&mut self.pool, http1::write_last_chunk);
                }
            }
            Mode::Http { .. } => return,
        }
        c.closing = Closing::AfterFlush;
        let kind = c.kind;
        self.notes.push(Note::Slow(id, kind));
        self.mark_dirty(i);
    }

    fn publish(
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
            self.subs.insert(key, list);
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

    fn close_ws(&mut self, id: ConnId, code: u16, reason: &str) -> bool {
        let Some(i) = self.index_of(id) else {
            return false;
        };
        let busy = self.busy == Some(i);
        let Some(c) = self.slots.get_mut(i).and_then(|s| s.conn.as_mut()) else {
            return false;
        };
        if c.ws_close_sent || c.closing != Closing::No {
            return false;
        }
        match &mut c.mode {
            Mode::Ws(Some(wsc)) if !busy => {
                let mut out = Vec::new();
                wsc.close(&mut out, code, reason);
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

    fn stop(&mut self) {
        if self.stopping.is_some() {
            return;
        }
        debug!("stopping: no new connections; flushing and closing the open ones");
        self.stopping = Some(self.now + self.config.stop_timeout);
        if let Some(mut l) = self.listener.take() {
            let _ = self.poll.registry().deregister(&mut l);
        }
        for i in 0..self.slots.len() {
            let Some(c) = slot(&mut self.slots, i) else {
                continue;
            };
            let id = c.id;
            match &c.mode {
                Mode::Http {
                    reader: None,
                    waiting: Waiting::No,
                } if c.rbuf.is_empty() => {
                    c.closing = Closing::AfterFlush;
                    self.mark_dirty(i);
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
                        c.out.append(&mut self.pool, http1::write_last_chunk);
                    }
                    c.closing = Closing::AfterFlush;
                    self.mark_dirty(i);
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
                    c.out.append(&mut core.pool, http1::write_last_chunk);
                }
                c.closing = Closing::AfterFlush;
                dirty(&mut core.dirty, c, i);
            }
            Mode::Http { .. } => {
                if c.kind == ConnKind::Parked {
                    core.parked.unpark(conn);
                }
                c.closing = Closing::AfterFlush;
                dirty(&mut core.dirty, c, i);
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
    /// `false` when `conn` is not an open WebSocket or the topic name is invalid.
    pub fn subscribe(&mut self, conn: ConnId, topic: &str, since: Option<u64>) -> bool {
        let core = &mut *self.core;
        let Some(i) = core.index_of(conn) else {
            return false;
        };
        if !matches!(core.conn_mut(i).map(|c| &c.mode), Some(Mode::Ws(_)))
            || !crate::proto::topic::valid_topic(topic)
        {
            return false;
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
            if let Some(c) = core.slots.get_mut(i).and_then(|s| s.conn.as_mut()) {
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
        if let Some(c) = core.slots.get_mut(i).and_then(|s| s.conn.as_mut()) {
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
        let at = self.core.now + after;
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
