//! The mio driver: the only code that touches sockets. It moves bytes; the core decides.
//!
//! # Theory of operation
//!
//! One thread runs one `mio::Poll`. Connections live in a slab indexed by their `Token`;
//! each slot carries a generation so a [`ConnId`] of a closed connection never reaches a
//! newer one. Per connection the driver keeps only I/O facts: the socket, the read buffer,
//! the output queue, the writable/paused flags and one timer. Everything else is the
//! connection's [`ServerConn`](crate::proto::server::ServerConn) in the core: the driver
//! hands it what it read and the time, and after every call re-arms the one timer from
//! `poll_timeout()` and drops the socket once it says it is finished
//! ([`Core::with_conn`]).
//!
//! Sockets are edge-triggered: on a readable event the driver reads until `WouldBlock`
//! (retrying `Interrupted`), as long as the core wants input (`input.rs`). Writable interest is
//! registered only while output is queued. A per-event read budget keeps one fast sender
//! from starving the others: a connection that used its budget goes on a ready list and is
//! revisited after the other events of the round.
//!
//! Callbacks run with a [`Ctx`] over the driver's state (everything but the application).
//! While a WebSocket message is handled only the connection's receiving half is lent out,
//! so a send or a close from the callback acts on the connection at once.

mod accept;
mod backplane;
mod conn;
mod dial;
mod input;
mod pubsub;
mod redis;
mod store;
mod topics;
mod transport;
mod webhook;
mod wire;

use std::io;
use std::net::{SocketAddr, ToSocketAddrs};
use std::sync::mpsc::{channel, Receiver, Sender};
use std::sync::Arc;
use std::time::Instant;

use log::{debug, info};
use mio::net::TcpListener;
use mio::{Events, Interest, Poll, Token, Waker};

use crate::api::{CloseInfo, ConnId, Reply, Stats, TimerId, WebhookOutcome};
use crate::config::Config;
use crate::proto::http1::{self, Request};
use crate::proto::server::Message;
use crate::proto::server::{deadline, ConnKind};
use crate::proto::subs::Subscriptions;
use crate::proto::timer::{TimerKey, Timers};
use crate::proto::topic::Topics;
use crate::proto::webhook::EndpointId;

use conn::ConnSlot;

use webhook::{Hooks, CLIENT_BASE};

const LISTENER: Token = Token(usize::MAX - 1);
const WAKER: Token = Token(usize::MAX - 2);
/// The TLS listener, when there is one.
const TLS_LISTENER: Token = Token(usize::MAX - 3);
/// The tokens of the application's own event sources ([`Driver::add_source`]): above the
/// webhook clients' range start, below the fixed tokens, matched before both.
const SOURCE_BASE: usize = usize::MAX - 4096;
/// Most application event sources on one loop.
const MAX_SOURCES: usize = 1024;
/// Bytes read from one connection per readiness event before the others get a turn.
const READ_BUDGET: usize = 1 << 20;

/// What one timer-heap entry is for.
#[derive(Debug)]
enum TimerEv {
    Conn(ConnId),
    App(u64),
    AcceptRetry,
    HookEngine,
    HookClient(usize, u32),
    HookResolve(u64),
    /// The next topic may be due to expire.
    TopicExpiry,
    /// The backplane's sweep of idle topics.
    BackplaneSweep,
    /// A Redis link's one timer, of the link's generation then.
    Redis(redis::Role, u32),
}

/// A subscriber in the one subscription table.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub(crate) enum SubKey {
    /// A WebSocket, an SSE stream or a parked long poll.
    Conn(ConnId),
    /// A webhook endpoint.
    Hook(EndpointId),
}

/// Something the application must hear about once the current step is done.
enum Note {
    Closed(ConnId, CloseInfo),
    /// A dialed WebSocket did not open: its URL and why.
    DialFailed(ConnId, String, String),
    Slow(ConnId, ConnKind),
    Webhook(WebhookOutcome),
    Published(
        crate::api::PublishTicket,
        Result<u64, crate::proto::topic::PublishError>,
    ),
}

/// What the loop calls when something happens: the application's side, implemented by
/// every [`App`](crate::App). Each call gets the driver's state to act on.
pub(crate) trait Handler {
    fn as_any(&mut self) -> &mut dyn std::any::Any;
    fn request(&mut self, core: &mut Core, conn: ConnId, req: &Request) -> Reply;
    fn ws_open(&mut self, core: &mut Core, conn: ConnId);
    fn ws_message(&mut self, core: &mut Core, conn: ConnId, msg: Message<'_>);
    fn closed(&mut self, core: &mut Core, conn: ConnId, info: &CloseInfo);
    fn ws_connect_failed(&mut self, core: &mut Core, conn: ConnId, url: &str, reason: &str);
    fn timer(&mut self, core: &mut Core, timer: TimerId, tag: u64);
    fn webhook(&mut self, core: &mut Core, outcome: &WebhookOutcome);
    fn slow_reader(&mut self, core: &mut Core, conn: ConnId, kind: ConnKind);
    fn published(
        &mut self,
        core: &mut Core,
        ticket: crate::api::PublishTicket,
        result: Result<u64, crate::proto::topic::PublishError>,
    );
}

/// A job for the loop thread that needs the application too.
pub(crate) type AppJob = Box<dyn FnOnce(&mut dyn std::any::Any, &mut Core) + Send>;

/// What another thread asks the loop to do (through a [`Handle`](crate::Handle) or the
/// resolver thread).
pub(crate) enum Command {
    /// Run this on the loop thread.
    Run(Box<dyn FnOnce(&mut Core) + Send>),
    /// Run this on the loop thread with the application (as `Any`, for the caller to
    /// downcast to its own type).
    RunApp(AppJob),
    /// The resolver thread's answer to request `n`.
    Resolved(u64, Result<Vec<SocketAddr>, String>),
    /// The store's writer thread reports.
    Stored(store::Report),
}

/// The driver's state: everything but the application.
pub(crate) struct Core {
    poll: Poll,
    listener: Option<TcpListener>,
    pub(crate) local_addr: SocketAddr,
    /// The TLS listener and its address, once [`Core::listen_tls`] added it.
    tls_listener: Option<TcpListener>,
    pub(crate) tls_addr: Option<SocketAddr>,
    /// What TLS connections present.
    #[cfg(feature = "tls")]
    tls_server: Option<crate::tls::ServerTls>,
    config: Config,
    slots: Vec<ConnSlot>,
    free: Vec<usize>,
    live: usize,
    pub(crate) counts: [usize; 4],
    timers: Timers<TimerEv>,
    /// An accept retry is armed (one at a time, however often the listener wakes us).
    accept_retry: bool,
    /// Failed accepts since the last warning, and when that was.
    accept_failures: (u64, Option<Instant>),
    pub(crate) topics: Topics,
    pub(crate) subs: Subscriptions<SubKey>,
    /// A publish's copy of its topic's subscribers, kept for the next publish.
    scratch: Vec<crate::proto::subs::Entry<SubKey>>,
    ready: Vec<usize>,
    dirty: Vec<usize>,
    notes: Vec<Note>,
    pub(crate) stats: Stats,
    stopping: Option<Instant>,
    /// The stop is immediate ([`Core::stop_now`]): nothing more is waited for.
    stop_now: bool,
    /// The `Date` header value and the second it was made for.
    date: (u64, String),
    rx: Receiver<Command>,
    pub(crate) tx: Sender<Command>,
    pub(crate) waker: Arc<Waker>,
    pub(crate) now: Instant,
    pub(crate) hooks: Hooks,
    /// The data directory, when there is one.
    store: Option<store::Store>,
    /// The one timer for topic expiry, while armed.
    expiry_timer: Option<TimerKey>,
    /// The Redis links, when the configuration names a Redis URL.
    redis: redis::Redis,
    /// The Redis backplane, when the configuration names a Redis URL.
    bp: Option<backplane::Backplane>,
    /// The loop's shared permessage-deflate compressors and decompressor.
    pub(crate) codec: crate::proto::ws::deflate::Codec,
    /// Dials waiting for their host name to resolve.
    dials: std::collections::HashMap<ConnId, dial::Pending>,
    /// The decoded wire log, when `pushwire::wire` is enabled at trace level.
    pub(crate) wire: Option<wire::WireLog>,
}

/// What an application event source's readiness runs: its callback, with the source.
type SourceFn<H> = Box<dyn FnMut(&mut H, &mut Core)>;

/// The loop: the driver's state and the handler it calls.
pub(crate) struct Driver<H: Handler> {
    pub(crate) core: Core,
    pub(crate) handler: H,
    /// The application's own event sources, by token minus [`SOURCE_BASE`].
    sources: Vec<SourceFn<H>>,
}

impl<H: Handler> Driver<H> {
    /// Binds `addr` and prepares the loop.
    pub(crate) fn bind(addr: impl ToSocketAddrs, config: Config, handler: H) -> io::Result<Self> {
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
        let opened = store::open(&config, tx.clone(), waker.clone())?;
        if config.redis.is_some() && config.data_dir.is_some() {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                "a data directory and a Redis backplane cannot be combined: Redis keeps the history",
            ));
        }
        let redis = redis::Redis::new(config.redis.as_ref())?;
        let bp = config
            .redis
            .as_ref()
            .filter(|_| !config.redis_links_only)
            .map(|_| backplane::Backplane::new(&config.redis_prefix, config.history.max_events));
        let (store, recovered) = match opened {
            Some((s, state)) => (Some(s), Some(state)),
            None => (None, None),
        };
        let level = (config.ws_deflate_level, config.ws_deflate_direct_level);
        let mut core = Core {
            poll,
            listener: Some(listener),
            local_addr,
            tls_listener: None,
            tls_addr: None,
            #[cfg(feature = "tls")]
            tls_server: None,
            slots: Vec::new(),
            free: Vec::new(),
            live: 0,
            counts: [0; 4],
            timers: Timers::new(),
            accept_retry: false,
            accept_failures: (0, None),
            topics: Topics::new(config.history),
            subs: Subscriptions::new(),
            scratch: Vec::new(),
            ready: Vec::new(),
            dirty: Vec::new(),
            notes: Vec::new(),
            stats: Stats::default(),
            stopping: None,
            stop_now: false,
            date: (0, String::new()),
            rx,
            tx,
            waker,
            now: Instant::now(),
            hooks: Hooks::new(config.hooks.clone(), local_addr),
            config,
            store,
            expiry_timer: None,
            redis,
            bp,
            codec: crate::proto::ws::deflate::Codec::with_levels(level.0, level.1),
            wire: wire::WireLog::if_enabled(),
            dials: Default::default(),
        };
        if let Some(state) = recovered {
            core.restore(state);
            core.drive_hooks();
        }
        core.arm_expiry();
        core.redis_start();
        core.backplane_start();
        debug!("listening on {local_addr}");
        Ok(Driver {
            core,
            handler,
            sources: Vec::new(),
        })
    }

    /// Registers `source` for readable events on the loop; every readiness event runs
    /// `f` (which owns the source) on the loop thread, followed by the usual end of step.
    pub(crate) fn add_source<S>(
        &mut self,
        mut source: S,
        mut f: impl FnMut(&mut H, &mut Core, &mut S) + 'static,
    ) -> io::Result<()>
    where
        S: mio::event::Source + 'static,
    {
        let n = self.sources.len();
        if n >= MAX_SOURCES {
            return Err(io::Error::new(
                io::ErrorKind::OutOfMemory,
                format!("at most {MAX_SOURCES} event sources per server"),
            ));
        }
        self.core.poll.registry().register(
            &mut source,
            Token(SOURCE_BASE + n),
            Interest::READABLE,
        )?;
        self.sources
            .push(Box::new(move |h, core| f(h, core, &mut source)));
        Ok(())
    }

    /// Runs the loop until the server is stopped and every connection is closed or the
    /// stop timeout passed.
    pub(crate) fn run(&mut self) -> io::Result<()> {
        let mut events = Events::with_capacity(1024);
        loop {
            self.core.tick();
            if let Some(deadline) = self.core.stopping {
                let hooks = self.core.hooks.reg.engine().stats().in_flight;
                let done = self.core.live == 0 && hooks == 0;
                if done || self.core.now >= deadline {
                    if !done && !self.core.stop_now {
                        info!(
                            "stop timeout passed: dropping {} connections and {hooks} webhook \
                             attempts",
                            self.core.live
                        );
                    }
                    self.core.store_closing();
                    self.core.shutdown_hooks();
                    self.core.redis_shutdown();
                    self.core.close_all();
                    self.deliver_notes();
                    self.core.store_finish();
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
            self.core.tick();
            for ev in events.iter() {
                match ev.token() {
                    LISTENER => self.core.accept(false),
                    TLS_LISTENER => self.core.accept(true),
                    WAKER => self.drain_commands(),
                    Token(t) if (SOURCE_BASE..SOURCE_BASE + MAX_SOURCES).contains(&t) => {
                        if let Some(f) = self.sources.get_mut(t - SOURCE_BASE) {
                            f(&mut self.handler, &mut self.core);
                        }
                    }
                    redis::COMMAND_TOKEN => self.core.redis_ready(redis::Role::Command),
                    redis::SUBSCRIBER_TOKEN => self.core.redis_ready(redis::Role::Subscriber),
                    Token(t) if t >= CLIENT_BASE => self.core.hook_client_event(t - CLIENT_BASE),
                    Token(i) => {
                        if ev.is_writable() {
                            self.core.flush(i);
                        }
                        if ev.is_read_closed() || ev.is_error() {
                            if let Some(c) = conn::slot(&mut self.core.slots, i) {
                                c.hup = true;
                            }
                        }
                        if ev.is_readable() || ev.is_read_closed() || ev.is_error() {
                            self.read_conn(i);
                        }
                    }
                }
            }
            self.run_timers();
            let mut ready = std::mem::take(&mut self.core.ready);
            for &i in &ready {
                self.process(i);
                self.read_conn(i);
            }
            if self.core.ready.is_empty() {
                ready.clear();
                self.core.ready = ready;
            }
            self.after_step();
        }
    }

    /// Flushes what callbacks queued and tells the application about closes.
    pub(crate) fn after_step(&mut self) {
        loop {
            self.core.backplane_events();
            self.core.flush_dirty();
            if !self.core.notes.is_empty() {
                self.deliver_notes();
                continue;
            }
            // Writing the step's Redis commands also reads what the links have: replies
            // read here are acted on now, not at the next wake-up (edge-triggered sockets
            // say nothing more about bytes already read).
            self.core.redis_flush();
            if !self.core.redis_has_events() {
                break;
            }
        }
        self.core.store_flush();
    }

    fn deliver_notes(&mut self) {
        while !self.core.notes.is_empty() {
            for n in std::mem::take(&mut self.core.notes) {
                let (h, core) = (&mut self.handler, &mut self.core);
                match n {
                    Note::Closed(id, info) => h.closed(core, id, &info),
                    Note::DialFailed(id, url, why) => h.ws_connect_failed(core, id, &url, &why),
                    Note::Slow(id, kind) => h.slow_reader(core, id, kind),
                    Note::Webhook(outcome) => h.webhook(core, &outcome),
                    Note::Published(ticket, result) => h.published(core, ticket, result),
                }
            }
        }
    }

    fn drain_commands(&mut self) {
        while let Ok(cmd) = self.core.rx.try_recv() {
            match cmd {
                Command::Run(f) => f(&mut self.core),
                Command::RunApp(f) => f(self.handler.as_any(), &mut self.core),
                Command::Resolved(n, result) => self.core.resolved(n, result),
                Command::Stored(report) => self.core.stored(report),
            }
        }
    }

    fn run_timers(&mut self) {
        let now = self.core.now;
        while let Some((key, ev)) = self.core.timers.pop_expired(now) {
            match ev {
                TimerEv::App(tag) => self.handler.timer(&mut self.core, TimerId(key), tag),
                TimerEv::AcceptRetry => {
                    self.core.accept_retry = false;
                    self.core.accept(false);
                    self.core.accept(true);
                }
                TimerEv::HookEngine => self.core.hook_engine_timer(key),
                TimerEv::HookClient(idx, gen) => self.core.hook_client_timer(idx, gen, key),
                TimerEv::HookResolve(n) => self.core.hook_resolve_timer(n),
                TimerEv::TopicExpiry => self.core.expire_topics(key),
                TimerEv::Conn(id) => self.core.conn_timer(key, id),
                TimerEv::Redis(role, gen) => self.core.redis_timer(role, gen, key),
                TimerEv::BackplaneSweep => self.core.backplane_sweep(key),
            }
        }
    }
}

impl Core {
    /// Reads the clock: the loop's `now` and, once a second, the `Date` header value.
    pub(crate) fn tick(&mut self) {
        self.now = Instant::now();
        let secs = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_secs());
        if secs != self.date.0 || self.date.1.is_empty() {
            self.date = (secs, http1::http_date(secs));
        }
    }

    fn read_limit(&self) -> usize {
        (self.config.conn.limits.max_head_bytes + 4096).max(crate::proto::inbuf::READ_MAX)
    }

    fn poll_timeout(&mut self) -> Option<std::time::Duration> {
        if !self.ready.is_empty() || !self.notes.is_empty() || self.redis_has_events() {
            return Some(std::time::Duration::ZERO);
        }
        let mut next = self.timers.next_deadline();
        if let Some(stop) = self.stopping {
            next = Some(next.map_or(stop, |n| n.min(stop)));
        }
        // Round up to whole milliseconds so the loop does not spin on a near deadline.
        next.map(|d| d.saturating_duration_since(self.now) + std::time::Duration::from_micros(999))
    }

    /// Stops gracefully: no new connections and no new webhook attempts; every open
    /// connection finishes politely and the attempts in flight run to their results, all
    /// bounded by the stop timeout.
    pub(crate) fn stop(&mut self) {
        if self.stopping.is_some() {
            return;
        }
        debug!("stopping: no new connections; flushing and closing the open ones");
        self.stopping = Some(deadline(self.now, self.config.stop_timeout));
        self.stop_listening();
        for i in 0..self.slots.len() {
            self.stop_conn(i);
        }
    }

    /// Stops at once: the loop ends at its next turn, dropping every connection without
    /// flushing and aborting the webhook attempts in flight (with a data directory their
    /// messages stay pending for the next start); the store is still closed cleanly. Also
    /// cuts a graceful stop short.
    pub(crate) fn stop_now(&mut self) {
        debug!("stopping now");
        self.stop_now = true;
        self.stopping = Some(self.now);
        self.stop_listening();
    }

    /// Whether a stop was asked for.
    pub(crate) fn is_stopping(&self) -> bool {
        self.stopping.is_some()
    }

    /// Accepts no more connections and starts no more webhook attempts.
    fn stop_listening(&mut self) {
        for mut l in [self.listener.take(), self.tls_listener.take()]
            .into_iter()
            .flatten()
        {
            let _ = self.poll.registry().deregister(&mut l);
        }
        self.hooks.reg.engine_mut().stop_starting();
    }

    /// Connection `i` finishes politely because the server is stopping (again harmless:
    /// a reply started after the stop, a parked poll, a stream, a WebSocket, gets it too).
    fn stop_conn(&mut self, i: usize) {
        let Some(c) = conn::slot(&mut self.slots, i) else {
            return;
        };
        let unread = c.rbuf.len();
        if self.with_conn(i, |p, env| p.stop(unread, env)) == Some(true) {
            self.answer_parked(i, None);
        }
    }

    /// Binds a second listener whose connections speak TLS with `tls`.
    #[cfg(feature = "tls")]
    pub(crate) fn listen_tls(
        &mut self,
        addr: impl ToSocketAddrs,
        tls: crate::tls::ServerTls,
    ) -> io::Result<SocketAddr> {
        if self.tls_listener.is_some() {
            return Err(io::Error::new(
                io::ErrorKind::AlreadyExists,
                "a TLS listener is already bound",
            ));
        }
        let addr = addr
            .to_socket_addrs()?
            .next()
            .ok_or_else(|| io::Error::new(io::ErrorKind::InvalidInput, "no address to bind"))?;
        let mut listener = TcpListener::bind(addr)?;
        self.poll
            .registry()
            .register(&mut listener, TLS_LISTENER, Interest::READABLE)?;
        let bound = listener.local_addr()?;
        self.tls_listener = Some(listener);
        self.tls_addr = Some(bound);
        self.tls_server = Some(tls);
        self.hooks.add_own_addr(bound);
        debug!("listening on {bound} (TLS)");
        Ok(bound)
    }

    /// Calls the application's timer `tag` after `after`.
    pub(crate) fn set_timer(&mut self, after: std::time::Duration, tag: u64) -> TimerKey {
        self.timers
            .insert(deadline(self.now, after), TimerEv::App(tag))
    }

    /// Drops an application timer.
    pub(crate) fn cancel_timer(&mut self, key: TimerKey) -> bool {
        self.timers.cancel(key).is_some()
    }
}
