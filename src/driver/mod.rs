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
mod conn;
mod ctx;
mod handle;
mod pubsub;
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
    HookResolve(u64),
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
    /// Bytes queued when the idle or closing timer was armed: a timer that finds fewer
    /// bytes queued saw progress and waits again; one that finds no progress gives up.
    out_mark: usize,
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

/// `now + after`, saturating far in the future instead of overflowing (a `Duration::MAX`
/// timeout means "never").
fn deadline(now: Instant, after: Duration) -> Instant {
    now.checked_add(after)
        .unwrap_or_else(|| now + Duration::from_secs(100 * 365 * 86_400))
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
            pool: Pool::new(16),
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
                    self.core.shutdown_hooks();
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
                Command::Ping(c, p) => {
                    cx.ping(c, &p);
                }
                Command::CloseWs(c, code, reason) => {
                    cx.close_ws(c, code, &reason);
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
                TimerEv::HookResolve(n) => self.core.hook_resolve_timer(n),
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
            let Some(c) = slot(&mut core.slots, i) else {
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
            } else if c.dirty && core.busy.is_none() {
                // Answer what this connection asked for now, while its data is hot and
                // before reading the next one: the peer can go on sooner. (Broadcasts to
                // other connections still go out once, at the end of the step.)
                core.flush(i);
            }
        }
    }

    /// Hands buffered input of connection `i` to its protocol, calling the application.
    fn process(&mut self, i: usize) {
        loop {
            let core = &mut self.core;
            let limits = core.config.http;
            let high_water = core.config.high_water;
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
                    if c.out.len() > high_water {
                        // A client pipelining requests without reading the answers: stop
                        // answering (and reading) until it catches up; `flush` resumes.
                        c.read_paused = true;
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
                            if let Mode::Http {
                                reader: r @ Some(_),
                                ..
                            } = &mut c.mode
                            {
                                if r.as_ref().is_some_and(|r| r.is_idle()) {
                                    // Only stray line breaks between requests (perhaps a
                                    // lone CR still buffered): still idle, so the idle
                                    // timeout keeps running, not the header timeout.
                                    *r = None;
                                    return;
                                }
                            }
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
        let closed = wsc.is_closed();
        if closed {
            c.rbuf.clear();
        }
        c.mode = Mode::Ws(Some(wsc));
        if closed {
            core.start_closing(i);
        }
        core.mark_dirty(i);
        core.after_callback(i);
    }
}
