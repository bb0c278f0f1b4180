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
//! 4. **Pump**: write [`ClientConn::pending`] and read the response, hand every outcome
//!    to the connection, then in one place ([`Core::settle_client`]) drop the socket, pool
//!    it or arm its one timer from [`ClientConn::poll_timeout`], and pass the
//!    [`ClientEvent`] on: a result to the engine, or the job of a stale pooled connection
//!    to a fresh connect.
//!
//! **Readiness, not interest.** A client socket is registered once, when its connect
//! starts, for `READABLE | WRITABLE`, edge-triggered (mio's only mode), and never
//! reregistered: a pooled connection costs no `epoll_ctl` per request. Instead of asking
//! the kernel for the interest the connection's state wants, the driver remembers what the
//! edges said (`HookSocket::writable`, `HookSocket::readable`: set by every event, cleared
//! when the socket proves otherwise) and acts on the state alone. An edge that comes while
//! nothing is wanted costs a wakeup and no call: writable edges only follow a write that
//! hit `WouldBlock`, readable ones only bytes the receiver sent. So a delivery on a pooled
//! connection is one write (the whole request, one buffer) and, when the response fits,
//! one read:
//!
//! * the request goes out as soon as the job is handed over, while `writable` holds;
//! * no read follows the write unless the socket may still hold bytes: the response
//!   arrives as the next readable edge;
//! * on plain TCP a read shorter than the buffer means the receive queue was empty at that
//!   moment (`recv` returns what is queued, up to the length asked), so any byte after it
//!   raises a new edge, and the read that would only return `WouldBlock` is skipped. A TLS
//!   session may keep decrypted or undecrypted bytes of its own, so there a read proves
//!   the socket empty only with `WouldBlock`.

mod resolver;
mod socket;
#[cfg(feature = "tls")]
pub(crate) mod tls;

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::mpsc;
use std::time::{Instant, SystemTime, UNIX_EPOCH};

use log::{debug, trace};

use super::transport::Stream;
use super::{Core, Note, SubKey, TimerEv};
use crate::api::{WebhookCreated, WebhookError, WebhookInfo, WebhookOutcome, WebhookStats};
use crate::config::HookConfig;
use crate::proto::store::Record;
use crate::proto::timer::{TimerKey as RawTimer, Timers};
use crate::proto::topic::TopicEvent;
use crate::proto::webhook::{
    ssrf, AttemptId, AttemptResult, ClientConfig, ClientConn, Destination, EndpointId, Engine,
    HookAction, HookJob, Host, Outcome, Policy, Registry,
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
    /// The socket may take bytes: set by every readiness event, cleared by a write that
    /// returned `WouldBlock` (after which the kernel owes us a writable edge).
    writable: bool,
    /// The socket may hold unread bytes: set by every readiness event, cleared once a read
    /// proved it empty (`WouldBlock`, or for plain TCP a read shorter than the buffer).
    readable: bool,
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
            in_flight: s.in_flight,
        }
    }

    /// The rustls client configuration, built once.
    #[cfg(feature = "tls")]
    pub(crate) fn tls_config(&mut self) -> std::sync::Arc<rustls::ClientConfig> {
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

impl Core {
    // ---- registration and publishing ----------------------------------------------------

    pub(crate) fn add_webhook(
        &mut self,
        topic: &str,
        url: &str,
        secret: Option<&str>,
    ) -> Result<WebhookCreated, WebhookError> {
        if self.bp.is_some() {
            return self.bp_add_webhook(topic, url, secret);
        }
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
        self.bp_remove_webhook(topic, id);
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
                    self.bp_hook_done(&webhook_id);
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

    /// The server stops: the attempts still in flight (the stop timeout passed, or the
    /// stop is immediate) are aborted, then every message still queued or waiting for a
    /// retry gets its one outcome now (failed: "server stopped") instead of vanishing
    /// silently. With a data directory these outcomes are not recorded (the store is
    /// closing): the messages are delivered after the next start.
    pub(crate) fn shutdown_hooks(&mut self) {
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
        self.hooks.reg.remove_all(self.now, "server stopped");
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
}
