//! The webhook sender's socket side: sockets for the pure client connections.
//!
//! The delivery decisions (retries, backoff, pausing, outcomes) belong to the pure
//! [`Engine`], and every decision about one connection (what to write, reading the
//! response, reuse, the stale-connection retry, its deadlines) to the pure [`ClientConn`].
//! This file moves bytes for them and carries out the engine's `Attempt` actions:
//!
//! 1. **Resolve.** IP literals connect directly. Host names go to one resolver thread,
//!    whose answer comes back through the loop's command channel and `mio::Waker`, so a
//!    slow DNS server never stalls the loop.
//! 2. **Guard.** Every resolved address passes [`ssrf::check`] right before connecting (so
//!    DNS rebinding cannot slip a private address in after registration).
//! 3. **Connect** non-blocking, or take an idle keep-alive connection to the same address
//!    from the pool (at most [`MAX_IDLE_PER_ADDR`] per address).
//! 4. **Pump**: write [`ClientConn::pending`] and read until `WouldBlock`, hand every
//!    outcome to the connection, then in one place ([`Core::settle_client`]) drop the
//!    socket, pool it or set its interest and its one timer from
//!    [`ClientConn::poll_timeout`], and pass the [`ClientEvent`] on: a result to the
//!    engine, or the job of a stale pooled connection to a fresh connect.

mod resolver;
#[cfg(feature = "tls")]
mod tls;

use std::collections::HashMap;
use std::io;
use std::net::SocketAddr;
use std::sync::mpsc;
use std::time::{Instant, SystemTime, UNIX_EPOCH};

use log::{debug, trace};
use mio::net::TcpStream;
use mio::{Interest, Token};

use super::transport::Stream;
use super::{Core, Note, SubKey, TimerEv};
use crate::api::{WebhookCreated, WebhookError, WebhookInfo, WebhookOutcome, WebhookStats};
use crate::config::HookConfig;
use crate::proto::store::Record;
use crate::proto::timer::{TimerKey as RawTimer, Timers};
use crate::proto::topic::TopicEvent;
use crate::proto::webhook::{
    ssrf, AttemptId, AttemptResult, ClientConfig, ClientConn, ClientEvent, ClientPhase,
    Destination, EndpointId, Engine, HookAction, HookJob, Host, Outcome, Policy, Registry,
};

/// Tokens at and above this belong to webhook client connections.
pub(crate) const CLIENT_BASE: usize = usize::MAX / 2;
/// Idle keep-alive connections kept per destination.
const MAX_IDLE_PER_ADDR: usize = 16;

/// Pooled connections are shared by the address and, for TLS, the name the receiver's
/// certificate was verified for.
type PoolKey = (SocketAddr, Option<Host>);

/// The socket of one webhook client connection and the pure connection it serves.
struct HookSocket {
    stream: Stream,
    gen: u32,
    addr: SocketAddr,
    /// `https://`: the host the certificate was (or is being) verified for.
    tls: Option<Host>,
    /// The host's other allowed addresses, tried in turn if connecting to this one fails.
    fallback: Vec<SocketAddr>,
    conn: ClientConn,
    /// The interest registered with mio.
    interest: Interest,
    /// The one timer, armed at `conn.poll_timeout()`.
    timer: Option<(RawTimer, Instant)>,
}

/// The webhook state of a [`Core`].
pub(crate) struct Hooks {
    pub(crate) reg: Registry,
    config: HookConfig,
    client: ClientConfig,
    sockets: Vec<(u32, Option<HookSocket>)>,
    free: Vec<usize>,
    idle: HashMap<PoolKey, Vec<usize>>,
    /// Jobs waiting for the resolver (with their port and TLS name), by request number.
    resolving: HashMap<u64, (HookJob, u16, Option<Host>)>,
    resolver_tx: Option<mpsc::Sender<(u64, String, u16)>>,
    next_resolve: u64,
    engine_timer: Option<(RawTimer, Instant)>,
    /// `drive_hooks` is running: results reported meanwhile are picked up by its loop
    /// instead of recursing (a run of synchronous connect failures would otherwise nest
    /// once per queued message).
    driving: bool,
    /// The rustls client configuration, built on the first `https://` delivery.
    #[cfg(feature = "tls")]
    tls_config: Option<std::sync::Arc<rustls::ClientConfig>>,
}

impl Hooks {
    pub(crate) fn new(config: HookConfig, local: SocketAddr) -> Hooks {
        let policy = Policy {
            allow_private: config.allow_private,
            allow: vec![local],
        };
        // A random per-process prefix keeps webhook-ids unique across restarts.
        let prefix = Registry::id_prefix(&rand::random::<[u8; 12]>());
        let client = ClientConfig {
            connect_timeout: config.connect_timeout,
            attempt_timeout: config.attempt_timeout,
            ..ClientConfig::default()
        };
        let mut limits = config.registry.clone();
        limits.own_addrs = vec![local];
        let engine = Engine::new(config.engine.clone());
        Hooks {
            reg: Registry::new(engine, policy, prefix, limits),
            config,
            client,
            sockets: Vec::new(),
            free: Vec::new(),
            idle: HashMap::new(),
            resolving: HashMap::new(),
            resolver_tx: None,
            next_resolve: 0,
            engine_timer: None,
            driving: false,
            #[cfg(feature = "tls")]
            tls_config: None,
        }
    }

    pub(crate) fn stats(&self) -> WebhookStats {
        let s = self.reg.engine().stats();
        WebhookStats {
            delivered: s.delivered,
            retrying: s.retrying,
            failed: s.failed,
            attempts: s.attempts,
            endpoints_disabled: s.endpoints_disabled,
            queued_bytes: s.queued_bytes,
        }
    }

    /// The rustls client configuration, built once.
    #[cfg(feature = "tls")]
    fn tls_config(&mut self) -> std::sync::Arc<rustls::ClientConfig> {
        let config = &self.config;
        (self.tls_config.get_or_insert_with(|| config.tls.build())).clone()
    }

    /// One more address of this server (the TLS listener).
    #[cfg(feature = "tls")]
    pub(crate) fn add_own_addr(&mut self, addr: SocketAddr) {
        self.reg.add_own_addr(addr);
    }

    fn socket(&mut self, idx: usize) -> Option<&mut HookSocket> {
        self.sockets.get_mut(idx).and_then(|s| s.1.as_mut())
    }
}

/// Milliseconds since the Unix epoch.
fn unix_millis() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

/// Moves `timer` to `at` (none: cancelled), unless it is there already.
fn rearm(
    timers: &mut Timers<TimerEv>,
    timer: &mut Option<(RawTimer, Instant)>,
    at: Option<Instant>,
    ev: TimerEv,
) {
    if timer.map(|t| t.1) != at {
        if let Some((t, _)) = timer.take() {
            timers.cancel(t);
        }
        *timer = at.map(|at| (timers.insert(at, ev), at));
    }
}

/// What a failed read or write says: the TLS cause when the session failed.
fn io_failure(stream: &Stream, what: &str, e: &io::Error) -> String {
    stream
        .failure_detail()
        .unwrap_or_else(|| format!("{what}: {e}"))
}

/// The mio interest a connection asks for (`None`: it is closed).
fn interest(conn: &ClientConn) -> Option<Interest> {
    let read = conn.wants_read().then_some(Interest::READABLE);
    let write = conn.wants_write().then_some(Interest::WRITABLE);
    read.map_or(write, |r| Some(write.map_or(r, |w| r | w)))
}

impl Core {
    // ---- registration and publishing ----------------------------------------------------

    pub(crate) fn add_webhook(
        &mut self,
        topic: &str,
        url: &str,
        secret: Option<&str>,
    ) -> Result<WebhookCreated, WebhookError> {
        let mut key = [0u8; 32];
        rand::RngCore::fill_bytes(&mut rand::thread_rng(), &mut key);
        let reg = self.hooks.reg.add(topic, url, secret, &key)?;
        let endpoint = reg.endpoint;
        self.subs.subscribe(topic, SubKey::Hook(endpoint), 0);
        self.store_hook_added(endpoint, topic, url, reg.secret.as_bytes());
        debug!("webhook endpoint {endpoint} registered for {topic:?}");
        let (id, secret) = (reg.id.to_string(), reg.secret.to_string());
        Ok(WebhookCreated { id, secret })
    }

    pub(crate) fn remove_webhook(&mut self, topic: &str, id: &str) -> bool {
        let Some(id) = self.hooks.reg.remove(topic, id, self.now) else {
            return false;
        };
        self.subs.unsubscribe(topic, SubKey::Hook(id));
        let endpoint = id.as_u64();
        self.store_removal(Record::WebhookRemoved { endpoint });
        self.drive_hooks();
        true
    }

    /// Takes back a registration whose record could not be stored (nothing is written).
    pub(crate) fn forget_webhook(&mut self, id: EndpointId, topic: &str) {
        if self.hooks.reg.remove_endpoint(topic, id, self.now) {
            self.subs.unsubscribe(topic, SubKey::Hook(id));
            debug!("webhook {id} registration taken back: it could not be stored");
            self.drive_hooks();
        }
    }

    /// The webhook endpoints subscribed to `topic`, from the one subscription table.
    pub(crate) fn hook_ids(&self, topic: &str) -> Vec<EndpointId> {
        let subs = self.subs.subscribers(topic).iter();
        subs.filter_map(|e| match e.key {
            SubKey::Hook(id) => Some(id),
            SubKey::Conn(_) => None,
        })
        .collect()
    }

    pub(crate) fn list_webhooks(&self, topic: &str) -> Vec<WebhookInfo> {
        let ids = self.hook_ids(topic);
        let list = self.hooks.reg.list(&ids);
        list.map(|l| WebhookInfo {
            id: l.id.to_string(),
            url: l.url,
            disabled: l.disabled,
        })
        .collect()
    }

    /// Every registration's URL and secret (`whsec_...`).
    pub(crate) fn webhook_secrets(&self) -> Vec<(String, String)> {
        let endpoints = self.hooks.reg.engine().endpoints();
        endpoints
            .map(|(_, e)| (e.url.to_string(), e.secret.to_string()))
            .collect()
    }

    /// Enqueues one message per endpoint subscribed to `topic`, sharing one body.
    pub(crate) fn publish_webhooks(&mut self, topic: &str, ev: &TopicEvent) {
        let ids = self.hook_ids(topic);
        if self
            .hooks
            .reg
            .publish(topic, &ids, ev, ev.published_ms, self.now)
            > 0
        {
            self.drive_hooks();
        }
    }

    // ---- the engine's actions ------------------------------------------------------------

    /// Runs the engine's ready actions and re-arms its timer.
    pub(crate) fn drive_hooks(&mut self) {
        if self.hooks.driving {
            return;
        }
        self.hooks.driving = true;
        while let Some(action) = self.hooks.reg.poll_action(self.now, unix_millis() / 1000) {
            match action {
                HookAction::Send { job, to, tls } => match to {
                    Destination::Addr(addr) => self.connect_to(job, vec![addr], tls),
                    Destination::Lookup { name, port } => self.lookup(job, name, port, tls),
                },
                HookAction::Report { attempt, result } => self.finish_attempt(attempt, result),
                HookAction::Retrying {
                    endpoint,
                    webhook_id,
                    attempts,
                    next_attempt,
                } => {
                    let ahead = next_attempt.saturating_duration_since(self.now);
                    let next_attempt_ms = unix_millis() + ahead.as_millis() as u64;
                    self.store_note(Record::OutboxAttempt {
                        webhook_id: webhook_id.to_string(),
                        endpoint: endpoint.as_u64(),
                        attempts,
                        next_attempt_ms,
                    });
                }
                HookAction::Disabled { endpoint } => {
                    let endpoint = endpoint.as_u64();
                    self.store_note(Record::WebhookDisabled { endpoint });
                }
                HookAction::Finished {
                    endpoint,
                    id,
                    topic,
                    webhook_id,
                    outcome,
                } => {
                    if let Outcome::Delivered { .. } = outcome {
                        self.stats.delivered_webhook += 1;
                    }
                    self.store_note(Record::OutboxDone {
                        webhook_id: webhook_id.to_string(),
                        endpoint: endpoint.as_u64(),
                    });
                    // The public id (empty for a stored message whose registration was
                    // not restored).
                    let endpoint = id.map(|id| id.to_string()).unwrap_or_default();
                    let webhook_id = webhook_id.to_string();
                    self.notes.push(Note::Webhook(WebhookOutcome {
                        endpoint,
                        topic,
                        webhook_id,
                        outcome,
                    }));
                }
            }
        }
        self.hooks.driving = false;
        let (next, timer) = (
            self.hooks.reg.engine().next_deadline(),
            &mut self.hooks.engine_timer,
        );
        rearm(&mut self.timers, timer, next, TimerEv::HookEngine);
    }

    pub(crate) fn hook_engine_timer(&mut self, tid: RawTimer) {
        if self.hooks.engine_timer.map(|(t, _)| t) == Some(tid) {
            self.hooks.engine_timer = None;
        }
        self.drive_hooks();
    }

    fn finish_attempt(&mut self, attempt: AttemptId, result: AttemptResult) {
        trace!("webhook attempt {attempt}: {result:?}");
        let jitter: f64 = rand::random();
        // A fresh reading: the loop's `now` is per batch, and latencies should be exact.
        let now = Instant::now().max(self.now);
        let engine = self.hooks.reg.engine_mut();
        engine.attempt_finished(attempt, result, now, jitter);
        self.drive_hooks();
    }

    /// The server stops: every message still queued, retrying or in flight gets its one
    /// outcome now (failed: "endpoint removed") instead of vanishing silently.
    pub(crate) fn shutdown_hooks(&mut self) {
        self.hooks.reg.remove_all(self.now);
        for n in self.hooks.resolving.keys().copied().collect::<Vec<_>>() {
            if let Some((job, ..)) = self.hooks.resolving.remove(&n) {
                self.finish_attempt(job.attempt(), AttemptResult::Io("server stopped".into()));
            }
        }
        for idx in 0..self.hooks.sockets.len() {
            let ev = self
                .hooks
                .socket(idx)
                .and_then(|s| s.conn.abort("server stopped"));
            self.drop_socket(idx);
            if let Some((attempt, result)) = ev.and_then(|ev| ev.attempt_result()) {
                self.finish_attempt(attempt, result);
            }
        }
        self.drive_hooks();
    }

    /// Checks the addresses with the SSRF guard and starts the job on the first allowed;
    /// the other allowed ones are its fallbacks, in order, should connecting fail.
    fn connect_to(&mut self, job: HookJob, addrs: Vec<SocketAddr>, tls: Option<Host>) {
        let mut why = String::from("no address");
        let mut allowed = Vec::with_capacity(addrs.len());
        for addr in addrs {
            match ssrf::check(addr, self.hooks.reg.policy()) {
                Ok(()) => allowed.push(addr),
                Err(e) => {
                    debug!("webhook target refused: {e}");
                    why = e.to_string();
                }
            }
        }
        if allowed.is_empty() {
            return self.finish_attempt(job.attempt(), AttemptResult::Refused(why));
        }
        let first = allowed.remove(0);
        self.run_job(job, first, tls, allowed);
    }

    /// Connecting to one address failed: the next fallback, or the attempt's end.
    fn connect_failed(
        &mut self,
        job: HookJob,
        why: String,
        tls: Option<Host>,
        mut fallback: Vec<SocketAddr>,
    ) {
        if fallback.is_empty() {
            return self.finish_attempt(job.attempt(), AttemptResult::ConnectFailed(why));
        }
        let next = fallback.remove(0);
        debug!("webhook: {why}; trying the next address, {next}");
        self.run_job(job, next, tls, fallback);
    }

    // ---- the sockets ----------------------------------------------------------------------

    /// Puts `job` on an idle pooled connection to `addr` (verified for the same `tls`
    /// name), or on a new one, with `fallback` addresses should connecting fail.
    fn run_job(
        &mut self,
        job: HookJob,
        addr: SocketAddr,
        tls: Option<Host>,
        fallback: Vec<SocketAddr>,
    ) {
        let key = (addr, tls);
        let pooled = match self.hooks.idle.get_mut(&key) {
            Some(list) if !job.needs_fresh() => list.pop(),
            _ => None,
        };
        if self.hooks.idle.get(&key).is_some_and(Vec::is_empty) {
            self.hooks.idle.remove(&key);
        }
        let (addr, tls) = key;
        let job = match pooled.and_then(|idx| Some((idx, self.hooks.socket(idx)?))) {
            Some((idx, s)) => match s.conn.send(job) {
                Ok(()) => {
                    trace!("webhook: reusing connection {idx} to {addr}");
                    return self.hook_client_event(idx);
                }
                Err(job) => job,
            },
            None => job,
        };
        let tcp = match TcpStream::connect(addr) {
            Ok(tcp) => tcp,
            Err(e) => return self.connect_failed(job, format!("{addr}: {e}"), tls, fallback),
        };
        let mut stream = match self.client_stream(tcp, tls.as_ref()) {
            Ok(stream) => stream,
            Err(why) => {
                return self.finish_attempt(job.attempt(), AttemptResult::ConnectFailed(why));
            }
        };
        let idx = self.hooks.free.pop().unwrap_or_else(|| {
            self.hooks.sockets.push((0, None));
            self.hooks.sockets.len() - 1
        });
        let attempt = job.attempt();
        let conn = ClientConn::connect(job, self.now, self.hooks.client);
        let interest = interest(&conn).unwrap_or(Interest::WRITABLE);
        if let Err(e) =
            self.poll
                .registry()
                .register(&mut stream.tcp, Token(CLIENT_BASE + idx), interest)
        {
            self.hooks.free.push(idx);
            return self.finish_attempt(attempt, AttemptResult::ConnectFailed(e.to_string()));
        }
        let how = if tls.is_some() { " (TLS)" } else { "" };
        debug!("webhook: connecting to {addr}{how} (client {idx})");
        let slot = &mut self.hooks.sockets[idx];
        slot.0 = slot.0.wrapping_add(1);
        let gen = slot.0;
        slot.1 = Some(HookSocket {
            stream,
            gen,
            addr,
            tls,
            fallback,
            conn,
            interest,
            timer: None,
        });
        self.settle_client(idx, None);
    }

    /// The stream for a new connection: plain, or a TLS session for `tls`.
    fn client_stream(&mut self, tcp: TcpStream, tls: Option<&Host>) -> Result<Stream, String> {
        let Some(host) = tls else {
            return Ok(Stream::plain(tcp));
        };
        #[cfg(feature = "tls")]
        return tls::stream(tcp, self.hooks.tls_config(), host);
        #[cfg(not(feature = "tls"))]
        Err(format!("{host}: https needs pushwire's `tls` feature"))
    }

    fn drop_socket(&mut self, idx: usize) {
        let Some(mut s) = self.hooks.sockets.get_mut(idx).and_then(|s| s.1.take()) else {
            return;
        };
        if let Some((t, _)) = s.timer.take() {
            self.timers.cancel(t);
        }
        let _ = self.poll.registry().deregister(&mut s.stream.tcp);
        let key = (s.addr, s.tls);
        if let Some(list) = self.hooks.idle.get_mut(&key) {
            list.retain(|i| *i != idx);
            if list.is_empty() {
                self.hooks.idle.remove(&key);
            }
        }
        self.hooks.free.push(idx);
        trace!("webhook: client {idx} to {} closed", s.addr);
    }

    /// After any input to client `idx`'s connection: drop, pool or re-arm the socket (the
    /// one place interest and the timer are set), then pass `ev` on. Last, because a result
    /// runs the engine, which may give this very connection its next job.
    fn settle_client(&mut self, idx: usize, ev: Option<ClientEvent>) {
        let pool = matches!(ev, Some(ClientEvent::Response { reusable: true, .. }));
        let Some(s) = self.hooks.sockets.get_mut(idx).and_then(|s| s.1.as_mut()) else {
            return;
        };
        let key = (s.addr, s.tls.clone());
        let addr = s.addr;
        let fallback = match ev {
            Some(ClientEvent::ConnectFailed { .. }) => std::mem::take(&mut s.fallback),
            _ => Vec::new(),
        };
        let pooled = self.hooks.idle.get(&key).map_or(0, Vec::len);
        if s.conn.is_closed() || (pool && pooled >= MAX_IDLE_PER_ADDR) {
            self.drop_socket(idx);
        } else {
            let mut want = interest(&s.conn).unwrap_or(Interest::READABLE);
            if s.stream.pending() {
                // Encrypted bytes wait for the socket (a handshake flight, records).
                want |= Interest::WRITABLE;
            }
            if s.stream.handshaking() {
                want |= Interest::READABLE;
            }
            if want != s.interest {
                s.interest = want;
                let token = Token(CLIENT_BASE + idx);
                let _ = self
                    .poll
                    .registry()
                    .reregister(&mut s.stream.tcp, token, want);
            }
            let ev = TimerEv::HookClient(idx, s.gen);
            rearm(&mut self.timers, &mut s.timer, s.conn.poll_timeout(), ev);
            if pool {
                self.hooks.idle.entry(key.clone()).or_default().push(idx);
            }
        }
        match ev {
            Some(ClientEvent::RetryFresh(job)) => self.run_job(job, addr, key.1, Vec::new()),
            Some(ClientEvent::ConnectFailed { job, why }) => {
                self.connect_failed(job, why, key.1, fallback)
            }
            Some(ClientEvent::Closed(why)) => trace!("webhook: client {idx} to {addr}: {why}"),
            Some(ev) => {
                if let Some((attempt, result)) = ev.attempt_result() {
                    self.finish_attempt(attempt, result);
                }
            }
            None => {}
        }
    }

    pub(crate) fn hook_client_timer(&mut self, idx: usize, gen: u32, tid: RawTimer) {
        let now = self.now;
        let Some(s) = self.hooks.socket(idx) else {
            return;
        };
        if s.gen != gen || s.timer.map(|t| t.0) != Some(tid) {
            return;
        }
        s.timer = None;
        let ev = s.conn.handle_timeout(now);
        self.settle_client(idx, ev);
    }

    /// A readiness event for webhook client `idx`. Which kind does not matter: the
    /// connection's state says what to try, and a spurious event ends in `WouldBlock`.
    pub(crate) fn hook_client_event(&mut self, idx: usize) {
        let ev = self.client_io(idx);
        self.settle_client(idx, ev);
    }

    /// Finishes a connect, writes and reads until `WouldBlock` or an event.
    fn client_io(&mut self, idx: usize) -> Option<ClientEvent> {
        let now = self.now;
        let s = self.hooks.socket(idx)?;
        if s.conn.phase() == ClientPhase::Connecting {
            // A non-blocking connect has finished when the socket turns writable:
            // `take_error` says whether it failed, `peer_addr` whether it is up.
            if let Ok(Some(e)) | Err(e) = s.stream.tcp.take_error() {
                return s.conn.on_error(format!("{}: {e}", s.addr));
            }
            match s.stream.tcp.peer_addr() {
                Ok(_) => {}
                Err(e) if e.kind() == io::ErrorKind::NotConnected => return None,
                Err(e) => return s.conn.on_error(format!("{}: {e}", s.addr)),
            }
            // TLS: the handshake is part of connecting (inside the connect timeout).
            #[cfg(feature = "tls")]
            match tls::handshake(&mut s.stream) {
                Ok(true) => {}
                Ok(false) => return None,
                Err(why) => {
                    // A certificate or protocol failure is the receiver's answer, not an
                    // unreachable address: no fallback.
                    s.fallback.clear();
                    return s.conn.on_error(format!("{}: {why}", s.addr));
                }
            }
            s.conn.on_connected();
            trace!("webhook: client {idx} connected to {}", s.addr);
        }
        while !s.conn.pending().is_empty() || s.stream.pending() {
            let written = match s.conn.pending() {
                [] => s.stream.flush_pending().map(|()| 0),
                pending => s.stream.write(pending),
            };
            match written {
                Ok(0) if s.conn.pending().is_empty() => {}
                Ok(0) => return s.conn.on_error("connection closed while writing".into()),
                Ok(n) => s.conn.wrote(n),
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return s.conn.on_error(io_failure(&s.stream, "write", &e)),
            }
        }
        // Read even without a readable event: the response may already be there.
        let mut tmp = [0u8; 16 * 1024];
        while s.conn.wants_read() {
            let ev = match s.stream.read(&mut tmp) {
                Ok(0) => return s.conn.on_eof(now, unix_millis() / 1000),
                Ok(n) => s.conn.on_read(&tmp[..n], now, unix_millis() / 1000),
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return None,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => return s.conn.on_error(io_failure(&s.stream, "read", &e)),
            };
            if ev.is_some() {
                return ev;
            }
        }
        None
    }
}
