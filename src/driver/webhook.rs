//! The webhook sender's socket side: an HTTP/1.1 client on the same mio loop.
//!
//! The delivery decisions (retries, backoff, pausing, outcomes) belong to the pure
//! [`Engine`]; this file carries out its `Attempt` actions:
//!
//! 1. **Resolve.** IP literals connect directly. Host names go to one resolver thread,
//!    whose answer comes back through the loop's command channel and `mio::Waker`, so a
//!    slow DNS server never stalls the loop.
//! 2. **Guard.** Every resolved address passes [`ssrf::check`] right before connecting (so
//!    DNS rebinding cannot slip a private address in after registration).
//! 3. **Connect** non-blocking, or reuse an idle keep-alive connection to the same
//!    address. A pooled connection the server closed is noticed (EOF while idle), and a
//!    request that meets EOF on a reused connection before any response byte is retried
//!    once on a fresh one.
//! 4. **Write** the signed request, **read** the response with the sans-IO
//!    [`ResponseReader`] (body capped and discarded), and report one [`AttemptResult`].
//!
//! Timeouts: connect (default 5 s) and whole attempt (default 15 s), on the loop's timers.

use std::collections::HashMap;
use std::io::{self, Read, Write};
use std::net::{SocketAddr, ToSocketAddrs};
use std::rc::Rc;
use std::sync::mpsc::{self, Sender};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use log::{debug, trace, warn};
use mio::net::TcpStream;
use mio::{Interest, Token, Waker};

use super::{deadline, Command, Core, Note, TimerEv};
use crate::proto::http1::{ClientResponse, Limits, ResponseReader};
use crate::proto::timer::TimerId as RawTimer;
use crate::proto::topic::Event;
use crate::proto::webhook::{
    self, ssrf, Action, AttemptId, AttemptResult, EndpointId, Engine, EngineConfig, Host, Outcome,
    Policy, Secret, Url,
};

/// Tokens at and above this belong to webhook client connections.
pub(crate) const CLIENT_BASE: usize = usize::MAX / 2;
/// Response body bytes kept (for logs); the rest is read and discarded.
const BODY_CAP: usize = 1024;
/// Idle keep-alive connections kept per destination.
const MAX_IDLE_PER_ADDR: usize = 16;
/// An idle pooled connection is closed after this long.
const IDLE_TIMEOUT: Duration = Duration::from_secs(30);

/// A host-name resolver: blocking is fine, it runs off the loop thread.
pub type Resolver = Arc<dyn Fn(&str, u16) -> io::Result<Vec<SocketAddr>> + Send + Sync>;

/// Webhook settings, part of [`Config`](crate::Config).
#[derive(Clone)]
pub(crate) struct HookConfig {
    pub(crate) engine: EngineConfig,
    pub(crate) allow_private: bool,
    pub(crate) connect_timeout: Duration,
    pub(crate) attempt_timeout: Duration,
    pub(crate) resolver: Option<Resolver>,
}

impl std::fmt::Debug for HookConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("HookConfig")
            .field("engine", &self.engine)
            .field("allow_private", &self.allow_private)
            .field("connect_timeout", &self.connect_timeout)
            .field("attempt_timeout", &self.attempt_timeout)
            .finish()
    }
}

impl Default for HookConfig {
    fn default() -> Self {
        HookConfig {
            engine: EngineConfig::default(),
            allow_private: false,
            connect_timeout: Duration::from_secs(5),
            attempt_timeout: Duration::from_secs(15),
            resolver: None,
        }
    }
}

/// A registered webhook endpoint, as listed by [`Ctx::webhooks`](crate::Ctx::webhooks).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WebhookInfo {
    /// Opaque id (for removal).
    pub id: String,
    /// The target URL.
    pub url: String,
    /// Disabled after the receiver answered 410 Gone.
    pub disabled: bool,
}

/// A new registration: its id and signing secret (`whsec_...`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WebhookCreated {
    /// Opaque id.
    pub id: String,
    /// The secret receivers verify signatures with.
    pub secret: String,
}

/// Why a registration was refused.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WebhookError(pub String);

impl std::fmt::Display for WebhookError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for WebhookError {}

/// The final result of one message, handed to
/// [`App::on_webhook`](crate::App::on_webhook). Exactly one per message.
#[derive(Debug, Clone)]
pub struct WebhookOutcome {
    /// The endpoint's id.
    pub endpoint: String,
    /// The topic the event was published to.
    pub topic: String,
    /// The `webhook-id` every attempt carried.
    pub webhook_id: String,
    /// Delivered (attempts, latency) or failed (attempts, last error).
    pub outcome: Outcome,
}

/// Webhook counters for `/stats`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct WebhookStats {
    /// Messages delivered.
    pub delivered: u64,
    /// Messages waiting for a retry (gauge).
    pub retrying: u64,
    /// Messages failed.
    pub failed: u64,
    /// Attempts made.
    pub attempts: u64,
    /// Endpoints disabled by 410 Gone.
    pub endpoints_disabled: u64,
}

#[derive(Debug, PartialEq, Eq, Clone, Copy)]
enum Phase {
    Connecting,
    Writing,
    Reading,
    Idle,
}

/// One request to be made, kept until it has a result.
struct Job {
    attempt: AttemptId,
    request: Rc<[u8]>,
    addr: SocketAddr,
    started: Instant,
    /// Already moved once from a stale pooled connection to a fresh one.
    retried: bool,
}

struct Client {
    stream: TcpStream,
    gen: u32,
    addr: SocketAddr,
    phase: Phase,
    job: Option<Job>,
    reader: Option<ResponseReader>,
    written: usize,
    rbuf: Vec<u8>,
    got_bytes: bool,
    reused: bool,
    timer: Option<RawTimer>,
}

/// An attempt waiting for the resolver: its id, request bytes, port and start time.
type Pending = (AttemptId, Rc<[u8]>, u16, Instant);

/// The webhook state of a [`Core`].
pub(crate) struct Hooks {
    engine: Engine,
    config: HookConfig,
    policy: Policy,
    topic_endpoints: HashMap<Box<str>, Vec<EndpointId>>,
    endpoint_topic: HashMap<EndpointId, Box<str>>,
    clients: Vec<(u32, Option<Client>)>,
    free: Vec<usize>,
    idle: HashMap<SocketAddr, Vec<usize>>,
    /// Attempts waiting for the resolver, by request number.
    resolving: HashMap<u64, Pending>,
    resolver_tx: Option<mpsc::Sender<(u64, String, u16)>>,
    next_resolve: u64,
    prefix: String,
    seq: u64,
    engine_timer: Option<(RawTimer, Instant)>,
    /// `drive_hooks` is running: results reported meanwhile are picked up by its loop
    /// instead of recursing (a run of synchronous connect failures would otherwise nest
    /// once per queued message).
    driving: bool,
}

impl Hooks {
    pub(crate) fn new(config: HookConfig, local: SocketAddr) -> Hooks {
        let policy = Policy {
            allow_private: config.allow_private,
            allow: vec![local],
        };
        // A random per-process prefix keeps webhook-ids unique across restarts.
        let prefix: String = {
            use rand::Rng;
            let mut rng = rand::thread_rng();
            (0..12)
                .map(|_| char::from(b"abcdefghijklmnopqrstuvwxyz0123456789"[rng.gen_range(0..36)]))
                .collect()
        };
        Hooks {
            engine: Engine::new(config.engine.clone()),
            config,
            policy,
            topic_endpoints: HashMap::new(),
            endpoint_topic: HashMap::new(),
            clients: Vec::new(),
            free: Vec::new(),
            idle: HashMap::new(),
            resolving: HashMap::new(),
            resolver_tx: None,
            next_resolve: 0,
            prefix,
            seq: 0,
            engine_timer: None,
            driving: false,
        }
    }

    pub(crate) fn stats(&self) -> WebhookStats {
        let s = self.engine.stats();
        WebhookStats {
            delivered: s.delivered,
            retrying: s.retrying,
            failed: s.failed,
            attempts: s.attempts,
            endpoints_disabled: s.endpoints_disabled,
        }
    }

    pub(crate) fn has_subscribers(&self, topic: &str) -> bool {
        self.topic_endpoints.contains_key(topic)
    }
}

/// Milliseconds since the Unix epoch.
fn unix_millis() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

fn spawn_resolver(
    resolver: Option<Resolver>,
    tx: Sender<Command>,
    waker: Arc<Waker>,
) -> mpsc::Sender<(u64, String, u16)> {
    let (req_tx, req_rx) = mpsc::channel::<(u64, String, u16)>();
    let spawned = std::thread::Builder::new()
        .name("pushwire-resolver".into())
        .spawn(move || {
            for (n, host, port) in req_rx {
                let result = match &resolver {
                    Some(r) => r(&host, port),
                    None => (host.as_str(), port).to_socket_addrs().map(|a| a.collect()),
                };
                let result = result.map_err(|e| format!("cannot resolve {host}: {e}"));
                if tx.send(Command::Resolved(n, result)).is_err() || waker.wake().is_err() {
                    break;
                }
            }
        });
    if let Err(e) = spawned {
        warn!("cannot start the resolver thread: {e}");
    }
    req_tx
}

impl Core {
    // ---- registration -------------------------------------------------------------------

    pub(crate) fn add_webhook(
        &mut self,
        topic: &str,
        url: &str,
        secret: Option<&str>,
    ) -> Result<WebhookCreated, WebhookError> {
        if !crate::proto::topic::valid_topic(topic) {
            return Err(WebhookError("bad topic name".into()));
        }
        let parsed = Url::parse(url).map_err(|e| WebhookError(format!("bad url: {e}")))?;
        if let Host::Ip(ip) = parsed.host {
            ssrf::check(SocketAddr::new(ip, parsed.port), &self.hooks.policy)
                .map_err(|e| WebhookError(e.to_string()))?;
        }
        let secret = match secret {
            Some(s) => Secret::parse(s).map_err(|e| WebhookError(format!("bad secret: {e}")))?,
            None => {
                use rand::RngCore;
                let mut key = [0u8; 32];
                rand::thread_rng().fill_bytes(&mut key);
                Secret::from_bytes(&key).map_err(|e| WebhookError(e.to_string()))?
            }
        };
        let text = secret.to_string();
        let id = self.hooks.engine.add_endpoint(parsed, secret);
        self.hooks
            .topic_endpoints
            .entry(topic.into())
            .or_default()
            .push(id);
        self.hooks.endpoint_topic.insert(id, topic.into());
        debug!("webhook {id} registered for {topic:?}: {url}");
        Ok(WebhookCreated {
            id: id.to_string(),
            secret: text,
        })
    }

    pub(crate) fn remove_webhook(&mut self, topic: &str, id: &str) -> bool {
        let Ok(id) = id.parse::<EndpointId>() else {
            return false;
        };
        if self.hooks.endpoint_topic.get(&id).map(|t| &**t) != Some(topic) {
            return false;
        }
        self.hooks.endpoint_topic.remove(&id);
        if let Some(list) = self.hooks.topic_endpoints.get_mut(topic) {
            list.retain(|e| *e != id);
            if list.is_empty() {
                self.hooks.topic_endpoints.remove(topic);
            }
        }
        let now = self.now;
        self.hooks.engine.remove_endpoint(id, now);
        self.drive_hooks();
        true
    }

    pub(crate) fn list_webhooks(&self, topic: &str) -> Vec<WebhookInfo> {
        let Some(ids) = self.hooks.topic_endpoints.get(topic) else {
            return Vec::new();
        };
        ids.iter()
            .filter_map(|id| {
                let e = self.hooks.engine.endpoint(*id)?;
                Some(WebhookInfo {
                    id: id.to_string(),
                    url: e.url.to_string(),
                    disabled: e.disabled,
                })
            })
            .collect()
    }

    /// The secrets of registrations whose URL points at this server itself.
    pub(crate) fn own_webhook_secrets(&self) -> Vec<Secret> {
        let local = self.local_addr;
        self.hooks
            .engine
            .endpoints()
            .filter(|(_, e)| {
                e.url.port == local.port()
                    && match &e.url.host {
                        Host::Ip(ip) => {
                            *ip == local.ip() || (ip.is_loopback() && local.ip().is_loopback())
                        }
                        Host::Name(n) => n == "localhost" && local.ip().is_loopback(),
                    }
            })
            .map(|(_, e)| e.secret.clone())
            .collect()
    }

    // ---- publishing ----------------------------------------------------------------------

    /// Enqueues one message per endpoint subscribed to `topic`, sharing one body.
    pub(crate) fn publish_webhooks(&mut self, topic: &str, ev: &Event) {
        let Some(ids) = self.hooks.topic_endpoints.get(topic) else {
            return;
        };
        let ids = ids.clone();
        let mut body = Vec::new();
        webhook::body::webhook_body(&mut body, topic, ev, unix_millis());
        let body: Rc<[u8]> = body.into();
        self.hooks.seq += 1;
        let webhook_id: Rc<str> = format!("msg_{}_{}", self.hooks.prefix, self.hooks.seq).into();
        let now = self.now;
        for id in ids {
            self.hooks
                .engine
                .enqueue(id, webhook_id.clone(), body.clone(), now);
        }
        self.drive_hooks();
    }

    // ---- the engine's actions ------------------------------------------------------------

    /// Runs the engine's ready actions and re-arms its timer.
    pub(crate) fn drive_hooks(&mut self) {
        if self.hooks.driving {
            return;
        }
        self.hooks.driving = true;
        let now = self.now;
        while let Some(action) = self.hooks.engine.poll_action(now) {
            match action {
                Action::Attempt {
                    attempt,
                    endpoint,
                    number,
                    webhook_id,
                    body,
                    ..
                } => {
                    trace!("webhook {webhook_id} attempt {number} to endpoint {endpoint}");
                    self.start_attempt(attempt, endpoint, &webhook_id, &body);
                }
                Action::Finished {
                    endpoint,
                    webhook_id,
                    outcome,
                    ..
                } => {
                    match &outcome {
                        Outcome::Delivered { attempts, latency } => {
                            self.stats.delivered_webhook += 1;
                            debug!("webhook {webhook_id} delivered after {attempts} attempt(s), {latency:?}");
                        }
                        Outcome::Failed { attempts, error } => {
                            debug!(
                                "webhook {webhook_id} failed after {attempts} attempt(s): {error}"
                            );
                        }
                    }
                    let topic = self
                        .hooks
                        .endpoint_topic
                        .get(&endpoint)
                        .map(|t| t.to_string())
                        .unwrap_or_default();
                    self.notes.push(Note::Webhook(WebhookOutcome {
                        endpoint: endpoint.to_string(),
                        topic,
                        webhook_id: webhook_id.to_string(),
                        outcome,
                    }));
                }
                Action::EndpointDisabled { endpoint, reason } => {
                    // The engine logs it; the application hears of it through the failed
                    // outcomes and `Ctx::webhooks` (disabled: true).
                    trace!("webhook endpoint {endpoint} disabled: {reason}");
                }
            }
        }
        self.hooks.driving = false;
        let next = self.hooks.engine.next_deadline();
        let current = self.hooks.engine_timer.map(|(_, at)| at);
        if next != current {
            if let Some((t, _)) = self.hooks.engine_timer.take() {
                self.timers.cancel(t);
            }
            if let Some(at) = next {
                let t = self.timers.insert(at, TimerEv::HookEngine);
                self.hooks.engine_timer = Some((t, at));
            }
        }
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
        self.hooks
            .engine
            .attempt_finished(attempt, result, now, jitter);
        self.drive_hooks();
    }

    fn start_attempt(
        &mut self,
        attempt: AttemptId,
        endpoint: EndpointId,
        webhook_id: &str,
        body: &[u8],
    ) {
        let Some(info) = self.hooks.engine.endpoint(endpoint) else {
            self.finish_attempt(attempt, AttemptResult::Io("endpoint removed".into()));
            return;
        };
        let url = info.url.clone();
        let mut request = Vec::with_capacity(body.len() + 512);
        let ts = unix_millis() / 1000;
        if let Err(e) =
            webhook::encode_webhook(&mut request, &url, &info.secret, webhook_id, ts, &[], body)
        {
            self.finish_attempt(
                attempt,
                AttemptResult::Io(format!("cannot encode the request: {e}")),
            );
            return;
        }
        let request: Rc<[u8]> = request.into();
        match &url.host {
            Host::Ip(ip) => self.connect_to(
                attempt,
                request,
                vec![SocketAddr::new(*ip, url.port)],
                self.now,
            ),
            Host::Name(name) => {
                if self.hooks.resolver_tx.is_none() {
                    let tx = spawn_resolver(
                        self.hooks.config.resolver.clone(),
                        self.tx.clone(),
                        self.waker.clone(),
                    );
                    self.hooks.resolver_tx = Some(tx);
                }
                self.hooks.next_resolve += 1;
                let n = self.hooks.next_resolve;
                self.hooks
                    .resolving
                    .insert(n, (attempt, request, url.port, self.now));
                // A lookup that never comes back still ends the attempt in time.
                let at = deadline(self.now, self.hooks.config.attempt_timeout);
                self.timers.insert(at, TimerEv::HookResolve(n));
                let sent = self
                    .hooks
                    .resolver_tx
                    .as_ref()
                    .is_some_and(|tx| tx.send((n, name.clone(), url.port)).is_ok());
                trace!("resolving {name} (request {n})");
                if !sent {
                    self.hooks.resolving.remove(&n);
                    self.finish_attempt(
                        attempt,
                        AttemptResult::ConnectFailed("resolver unavailable".into()),
                    );
                }
            }
        }
    }

    /// The server stops: every message still queued, retrying or in flight gets its one
    /// outcome now (failed: "endpoint removed") instead of vanishing silently.
    pub(crate) fn shutdown_hooks(&mut self) {
        let ids: Vec<EndpointId> = self.hooks.engine.endpoints().map(|(id, _)| id).collect();
        let now = self.now;
        for id in ids {
            self.hooks.engine.remove_endpoint(id, now);
        }
        for n in self.hooks.resolving.keys().copied().collect::<Vec<_>>() {
            if let Some((attempt, ..)) = self.hooks.resolving.remove(&n) {
                self.finish_attempt(attempt, AttemptResult::Io("server stopped".into()));
            }
        }
        for idx in 0..self.hooks.clients.len() {
            let job = self.hooks.clients[idx]
                .1
                .as_mut()
                .and_then(|c| c.job.take());
            self.drop_client(idx);
            if let Some(job) = job {
                self.finish_attempt(job.attempt, AttemptResult::Io("server stopped".into()));
            }
        }
        self.drive_hooks();
    }

    /// Lookup `n` took the whole attempt time: the attempt times out (a late answer is ignored).
    pub(crate) fn hook_resolve_timer(&mut self, n: u64) {
        if let Some((attempt, ..)) = self.hooks.resolving.remove(&n) {
            debug!("webhook: name lookup {n} did not answer in time");
            self.finish_attempt(attempt, AttemptResult::Timeout);
        }
    }

    /// The resolver thread answered request `n`.
    pub(crate) fn resolved(&mut self, n: u64, result: Result<Vec<SocketAddr>, String>) {
        let Some((attempt, request, port, started)) = self.hooks.resolving.remove(&n) else {
            return;
        };
        match result {
            Ok(addrs) if !addrs.is_empty() => {
                let addrs = addrs
                    .into_iter()
                    .map(|a| SocketAddr::new(a.ip(), port))
                    .collect();
                self.connect_to(attempt, request, addrs, started);
            }
            Ok(_) => self.finish_attempt(
                attempt,
                AttemptResult::ConnectFailed("no address found".into()),
            ),
            Err(e) => self.finish_attempt(attempt, AttemptResult::ConnectFailed(e)),
        }
    }

    /// Checks the addresses with the SSRF guard and starts the request on the first allowed.
    fn connect_to(
        &mut self,
        attempt: AttemptId,
        request: Rc<[u8]>,
        addrs: Vec<SocketAddr>,
        started: Instant,
    ) {
        let mut refused = None;
        let Some(addr) =
            addrs
                .iter()
                .copied()
                .find(|a| match ssrf::check(*a, &self.hooks.policy) {
                    Ok(()) => true,
                    Err(e) => {
                        debug!("webhook target refused: {e}");
                        refused = Some(e.to_string());
                        false
                    }
                })
        else {
            let why = refused.unwrap_or_else(|| "no address".into());
            self.finish_attempt(attempt, AttemptResult::Refused(why));
            return;
        };
        let job = Job {
            attempt,
            request,
            addr,
            started,
            retried: false,
        };
        self.run_job(job);
    }

    /// Puts `job` on an idle pooled connection to its address, or a new one.
    fn run_job(&mut self, job: Job) {
        let pooled = self.hooks.idle.get_mut(&job.addr).and_then(|v| v.pop());
        if self.hooks.idle.get(&job.addr).is_some_and(Vec::is_empty) {
            self.hooks.idle.remove(&job.addr);
        }
        let idx = match pooled {
            Some(idx) if !job.retried => {
                trace!("webhook: reusing connection {idx} to {}", job.addr);
                idx
            }
            other => {
                if let Some(idx) = other {
                    self.hooks.idle.entry(job.addr).or_default().push(idx);
                }
                match TcpStream::connect(job.addr) {
                    Ok(stream) => {
                        let idx = self.hooks.free.pop().unwrap_or_else(|| {
                            self.hooks.clients.push((0, None));
                            self.hooks.clients.len() - 1
                        });
                        let slot = &mut self.hooks.clients[idx];
                        slot.0 = slot.0.wrapping_add(1);
                        slot.1 = Some(Client {
                            stream,
                            gen: slot.0,
                            addr: job.addr,
                            phase: Phase::Connecting,
                            job: None,
                            reader: None,
                            written: 0,
                            rbuf: Vec::new(),
                            got_bytes: false,
                            reused: false,
                            timer: None,
                        });
                        let c = self.hooks.clients[idx].1.as_mut().expect("just set");
                        if let Err(e) = self.poll.registry().register(
                            &mut c.stream,
                            Token(CLIENT_BASE + idx),
                            Interest::READABLE | Interest::WRITABLE,
                        ) {
                            self.drop_client(idx);
                            self.finish_attempt(
                                job.attempt,
                                AttemptResult::ConnectFailed(e.to_string()),
                            );
                            return;
                        }
                        debug!("webhook: connecting to {} (client {idx})", job.addr);
                        idx
                    }
                    Err(e) => {
                        self.finish_attempt(
                            job.attempt,
                            AttemptResult::ConnectFailed(format!("{}: {e}", job.addr)),
                        );
                        return;
                    }
                }
            }
        };
        let attempt_deadline = deadline(job.started, self.hooks.config.attempt_timeout);
        let connect_deadline = deadline(self.now, self.hooks.config.connect_timeout);
        let Some(c) = self.hooks.clients[idx].1.as_mut() else {
            return;
        };
        let connecting = c.phase == Phase::Connecting;
        c.reused = !connecting;
        if !connecting {
            c.phase = Phase::Writing;
            let _ = self.poll.registry().reregister(
                &mut c.stream,
                Token(CLIENT_BASE + idx),
                Interest::READABLE | Interest::WRITABLE,
            );
        }
        c.job = Some(job);
        c.reader = Some(ResponseReader::new(false, BODY_CAP, &Limits::default()));
        c.written = 0;
        c.rbuf.clear();
        c.got_bytes = false;
        let deadline = if connecting {
            connect_deadline.min(attempt_deadline)
        } else {
            attempt_deadline
        };
        let gen = c.gen;
        self.set_client_timer(idx, gen, deadline);
        if !connecting {
            self.client_write(idx);
        }
    }

    fn set_client_timer(&mut self, idx: usize, gen: u32, at: Instant) {
        let Some(c) = self.hooks.clients.get_mut(idx).and_then(|s| s.1.as_mut()) else {
            return;
        };
        if let Some(t) = c.timer.take() {
            self.timers.cancel(t);
        }
        c.timer = Some(self.timers.insert(at, TimerEv::HookClient(idx, gen)));
    }

    fn drop_client(&mut self, idx: usize) {
        let Some(slot) = self.hooks.clients.get_mut(idx) else {
            return;
        };
        let Some(mut c) = slot.1.take() else { return };
        if let Some(t) = c.timer.take() {
            self.timers.cancel(t);
        }
        let _ = self.poll.registry().deregister(&mut c.stream);
        if let Some(list) = self.hooks.idle.get_mut(&c.addr) {
            list.retain(|i| *i != idx);
            if list.is_empty() {
                self.hooks.idle.remove(&c.addr);
            }
        }
        self.hooks.free.push(idx);
        trace!("webhook: client {idx} to {} closed", c.addr);
    }

    /// Fails the client's current job (if any) and closes the connection. A stale pooled
    /// connection (EOF before any response byte) gets the job retried once on a fresh one.
    fn client_failed(&mut self, idx: usize, result: AttemptResult) {
        let Some(c) = self.hooks.clients.get_mut(idx).and_then(|s| s.1.as_mut()) else {
            return;
        };
        let job = c.job.take();
        let stale = c.reused && !c.got_bytes;
        self.drop_client(idx);
        if let Some(mut job) = job {
            if stale && !job.retried {
                debug!("webhook: pooled connection to {} was closed by the server; retrying on a new one", job.addr);
                job.retried = true;
                self.run_job(job);
            } else {
                self.finish_attempt(job.attempt, result);
            }
        }
    }

    pub(crate) fn hook_client_timer(&mut self, idx: usize, gen: u32, tid: RawTimer) {
        let Some(c) = self.hooks.clients.get_mut(idx).and_then(|s| s.1.as_mut()) else {
            return;
        };
        if c.gen != gen || c.timer != Some(tid) {
            return;
        }
        c.timer = None;
        match c.phase {
            Phase::Idle => self.drop_client(idx),
            Phase::Connecting => {
                let timed_out = c.job.as_ref().is_some_and(|j| {
                    self.now >= deadline(j.started, self.hooks.config.attempt_timeout)
                });
                let r = if timed_out {
                    AttemptResult::Timeout
                } else {
                    AttemptResult::ConnectFailed("connect timeout".into())
                };
                c.reused = false;
                self.client_failed(idx, r);
            }
            Phase::Writing | Phase::Reading => {
                c.reused = false;
                self.client_failed(idx, AttemptResult::Timeout);
            }
        }
    }

    /// A readiness event for webhook client `idx`.
    pub(crate) fn hook_client_event(&mut self, idx: usize, readable: bool, writable: bool) {
        let Some(c) = self.hooks.clients.get_mut(idx).and_then(|s| s.1.as_mut()) else {
            return;
        };
        if c.phase == Phase::Connecting && (writable || readable) {
            // A non-blocking connect has finished when the socket turns writable:
            // `take_error` says whether it failed, `peer_addr` whether it is up.
            match c.stream.take_error() {
                Ok(Some(e)) | Err(e) => {
                    let addr = c.addr;
                    c.reused = false;
                    self.client_failed(idx, AttemptResult::ConnectFailed(format!("{addr}: {e}")));
                    return;
                }
                Ok(None) => {}
            }
            match c.stream.peer_addr() {
                Ok(_) => {
                    trace!("webhook: client {idx} connected to {}", c.addr);
                    c.phase = Phase::Writing;
                    let attempt_deadline = c
                        .job
                        .as_ref()
                        .map(|j| deadline(j.started, self.hooks.config.attempt_timeout));
                    let gen = c.gen;
                    if let Some(at) = attempt_deadline {
                        self.set_client_timer(idx, gen, at);
                    }
                }
                Err(e) if e.kind() == io::ErrorKind::NotConnected => return,
                Err(e) => {
                    c.reused = false;
                    self.client_failed(idx, AttemptResult::ConnectFailed(e.to_string()));
                    return;
                }
            }
        }
        if writable {
            self.client_write(idx);
        }
        if readable {
            self.client_read(idx);
        }
    }

    fn client_write(&mut self, idx: usize) {
        let Some(c) = self.hooks.clients.get_mut(idx).and_then(|s| s.1.as_mut()) else {
            return;
        };
        if c.phase != Phase::Writing {
            return;
        }
        let Some(job) = c.job.as_ref() else { return };
        let request = job.request.clone();
        while c.written < request.len() {
            match c.stream.write(&request[c.written..]) {
                Ok(0) => {
                    self.client_failed(
                        idx,
                        AttemptResult::Io("connection closed while writing".into()),
                    );
                    return;
                }
                Ok(n) => c.written += n,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => {
                    self.client_failed(idx, AttemptResult::Io(format!("write: {e}")));
                    return;
                }
            }
        }
        trace!(
            "webhook: client {idx} wrote {} request bytes",
            request.len()
        );
        c.phase = Phase::Reading;
        let _ = self.poll.registry().reregister(
            &mut c.stream,
            Token(CLIENT_BASE + idx),
            Interest::READABLE,
        );
        // The response may already be there.
        self.client_read(idx);
    }

    fn client_read(&mut self, idx: usize) {
        let mut tmp = [0u8; 16 * 1024];
        loop {
            let Some(c) = self.hooks.clients.get_mut(idx).and_then(|s| s.1.as_mut()) else {
                return;
            };
            let n = match c.stream.read(&mut tmp) {
                Ok(n) => n,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => {
                    if c.phase == Phase::Idle {
                        self.drop_client(idx);
                    } else {
                        self.client_failed(idx, AttemptResult::Io(format!("read: {e}")));
                    }
                    return;
                }
            };
            if c.phase == Phase::Writing && n > 0 {
                // An early answer (say, 413 before the whole body went out): read it.
                c.phase = Phase::Reading;
            }
            if c.phase == Phase::Idle {
                // EOF (or unexpected bytes) on an idle pooled connection: it is done.
                self.drop_client(idx);
                return;
            }
            if c.phase != Phase::Reading {
                if n == 0 {
                    return;
                }
                continue;
            }
            let Some(reader) = c.reader.as_mut() else {
                return;
            };
            let done: Result<Option<ClientResponse>, String> = if n == 0 {
                reader.on_eof().map_err(|e| e.to_string())
            } else {
                c.got_bytes = true;
                c.rbuf.extend_from_slice(&tmp[..n]);
                match reader.advance(&c.rbuf) {
                    Ok((used, resp)) => {
                        c.rbuf.drain(..used);
                        Ok(resp)
                    }
                    Err(e) => Err(e.to_string()),
                }
            };
            match done {
                Ok(Some(resp)) => {
                    self.client_response(idx, resp);
                    return;
                }
                Ok(None) if n == 0 => {
                    self.client_failed(
                        idx,
                        AttemptResult::Io("connection closed before a complete response".into()),
                    );
                    return;
                }
                Ok(None) => {}
                Err(e) => {
                    self.client_failed(idx, AttemptResult::Io(format!("bad response: {e}")));
                    return;
                }
            }
        }
    }

    fn client_response(&mut self, idx: usize, resp: ClientResponse) {
        let Some(c) = self.hooks.clients.get_mut(idx).and_then(|s| s.1.as_mut()) else {
            return;
        };
        let Some(job) = c.job.take() else { return };
        debug!("webhook: {} answered {}", c.addr, resp.status);
        let retry_after = resp
            .header("retry-after")
            .and_then(|v| webhook::parse_retry_after(v, unix_millis() / 1000));
        // Reusable only when the whole request went out (an early answer may cut it short:
        // the rest would be read as the next request) and nothing follows the response.
        let reusable = resp.keep_alive && c.rbuf.is_empty() && c.written == job.request.len();
        if reusable && self.hooks.idle.get(&c.addr).map_or(0, Vec::len) < MAX_IDLE_PER_ADDR {
            c.phase = Phase::Idle;
            c.reader = None;
            c.rbuf = Vec::new();
            let (addr, gen) = (c.addr, c.gen);
            self.hooks.idle.entry(addr).or_default().push(idx);
            let at = deadline(self.now, IDLE_TIMEOUT);
            self.set_client_timer(idx, gen, at);
        } else {
            self.drop_client(idx);
        }
        self.finish_attempt(
            job.attempt,
            AttemptResult::Status {
                code: resp.status,
                retry_after,
            },
        );
    }
}
