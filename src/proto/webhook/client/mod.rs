//! One keep-alive HTTP/1.1 connection of the webhook sender, sans-IO.
//!
//! [`ClientConn`] makes every decision about one client connection to a webhook
//! receiver; the driver only moves bytes and reports what the socket did. It implements the
//! client side of RFC 9112: the request goes out as the encoder made it, the response is read with
//! [`ResponseReader`] (status line §4, body length §6.3, the body capped and discarded),
//! and the connection is kept for another request only as persistence (§9.3) allows.
//!
//! # Theory of operation
//!
//! ```text
//!              on_connected            request written           response
//!  Connecting -------------> Writing -----------------> Reading ----------> Idle
//!                             |  ^  first response byte   ^    (reusable)   |
//!                             |  |  (an early answer)     |                 |
//!                             |  +------------------------|--- send(job) ---+
//!                             +---------------------------+
//!  any phase: a failure, EOF, a timeout, a response that is not reusable --> Closed
//! ```
//!
//! * **Connecting**: the driver has started a non-blocking connect. It tells the
//!   connection how that went: [`ClientConn::on_connected`] or [`ClientConn::on_error`].
//! * **Writing**: [`ClientConn::pending`] is the part of the request the socket has not
//!   taken yet; the driver writes it and reports [`ClientConn::wrote`]. Response bytes may
//!   arrive before the request is all out (a receiver answering 413 as soon as it sees the
//!   head). RFC 9112 §9.5: "A client sending a message body SHOULD monitor the network
//!   connection for an error response while it is transmitting the request"; the
//!   connection then stops writing and reads the answer, and is never reused afterwards:
//!   the receiver would read the rest of the request as the start of the next one.
//! * **Reading**: [`ClientConn::on_read`] feeds the bytes to the response reader.
//! * **Idle**: the connection sits in the driver's pool until [`ClientConn::send`] gives it
//!   the next request. "A client, server, or proxy MAY close the transport connection at
//!   any time" (RFC 9112 §9.5), so the connection keeps reading: EOF or any byte while idle
//!   closes it.
//!
//! **Reuse** (RFC 9112 §9.3): only when the whole request was written, the response allows
//! persistence (HTTP/1.1 without `Connection: close`, HTTP/1.0 with `keep-alive`, and not
//! delimited by the connection closing) and no byte follows the response.
//!
//! **The stale pooled connection**: RFC 9112 §9.5 goes on: "a client might have started
//! to send a new request at the same time that the server has decided to close the
//! "idle" connection". A reused connection that meets EOF or an error before any response
//! byte gives its job back as [`ClientEvent::RetryFresh`], marked so that it goes out once
//! more on a *new* connection; a second failure is reported. POST is not idempotent, and
//! RFC 9110 §9.2.2 says a client "SHOULD NOT automatically retry a request with a
//! non-idempotent method unless it has some means to know that the request semantics are
//! actually idempotent": Standard Webhooks receivers deduplicate by `webhook-id`, which is
//! the same on the retry, so delivery stays at least once and effectively once.
//!
//! **Deadlines** (all computed from the `now` values the driver passes in): the connect
//! timeout, counted from [`ClientConn::connect`]; the whole-attempt timeout, counted from
//! [`HookJob::started`] (so the name lookup and the connect count); the idle timeout of a
//! pooled connection. [`ClientConn::poll_timeout`] is the nearest one that applies in the
//! current phase; [`ClientConn::handle_timeout`] acts on it.
//!
//! **Results** are values: every method that can end the attempt or the connection returns
//! an `Option<`[`ClientEvent`]`>`. After any call the driver looks at
//! [`ClientConn::is_closed`], [`ClientConn::wants_read`], [`ClientConn::wants_write`] and
//! [`ClientConn::poll_timeout`] to drop the socket, set its interest and arm its timer.

use std::fmt;
use std::time::{Duration, Instant};

use log::{debug, trace};

use super::engine::{AttemptId, AttemptResult};
use super::schedule::parse_retry_after;
use crate::proto::http1::{ClientResponse, Limits, ResponseReader};

mod job;
pub use job::HookJob;

/// The settings of a [`ClientConn`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ClientConfig {
    /// How long a TCP connect may take (default 5 s).
    pub connect_timeout: Duration,
    /// How long a whole attempt may take, from [`HookJob::started`] to the end of the
    /// response (default 15 s).
    pub attempt_timeout: Duration,
    /// How long a connection may sit idle in the pool (default 30 s).
    pub idle_timeout: Duration,
    /// Response body bytes kept (for logs); the rest is read and dropped (default 1 KiB).
    pub body_cap: usize,
    /// Limits on the response head.
    pub limits: Limits,
}

impl Default for ClientConfig {
    fn default() -> Self {
        ClientConfig {
            connect_timeout: Duration::from_secs(5),
            attempt_timeout: Duration::from_secs(15),
            idle_timeout: Duration::from_secs(30),
            body_cap: 1024,
            limits: Limits::default(),
        }
    }
}

/// Where a [`ClientConn`] is (see the module's theory of operation).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ClientPhase {
    /// The TCP connect is under way.
    Connecting,
    /// Writing the request (some of it may still be unwritten).
    Writing,
    /// The request is written (or the answer came early): reading the response.
    Reading,
    /// In the pool, waiting for the next request.
    Idle,
    /// Finished: the driver closes the socket.
    Closed,
}

/// What a [`ClientConn`] has to report after an input.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ClientEvent {
    /// A complete response ended the attempt.
    Response {
        /// The attempt it answers.
        attempt: AttemptId,
        /// The final status code.
        status: u16,
        /// The parsed `Retry-After`, if any.
        retry_after: Option<Duration>,
        /// The connection is now [`ClientPhase::Idle`] and may go into the pool; otherwise
        /// it is closed.
        reusable: bool,
    },
    /// The attempt failed; the connection is closed.
    Failed {
        /// The failed attempt.
        attempt: AttemptId,
        /// Why, for the engine.
        result: AttemptResult,
    },
    /// Connecting failed (refused, unreachable, the connect timeout): the connection is
    /// closed and the job comes back, so that the driver may try the host's next address.
    /// With none left it is the attempt's end: [`AttemptResult::ConnectFailed`]`(why)`
    /// (what [`attempt_result`](Self::attempt_result) gives).
    ConnectFailed {
        /// The job, to run on the next address.
        job: HookJob,
        /// What failed.
        why: String,
    },
    /// A reused connection turned out stale before any response byte: it is closed, and
    /// the job goes out again on a new connection to the same address (it is marked
    /// [`HookJob::needs_fresh`], so this happens at most once).
    RetryFresh(HookJob),
    /// An idle connection ended (closed by the peer, unexpected bytes, an error or the idle
    /// timeout); no attempt was running.
    Closed(&'static str),
}

impl ClientEvent {
    /// The attempt this event ends and its result for the engine, if it ends one.
    pub fn attempt_result(&self) -> Option<(AttemptId, AttemptResult)> {
        match self {
            ClientEvent::Response {
                attempt,
                status,
                retry_after,
                ..
            } => Some((
                *attempt,
                AttemptResult::Status {
                    code: *status,
                    retry_after: *retry_after,
                },
            )),
            ClientEvent::Failed { attempt, result } => Some((*attempt, result.clone())),
            ClientEvent::ConnectFailed { job, why } => {
                Some((job.attempt, AttemptResult::ConnectFailed(why.clone())))
            }
            ClientEvent::RetryFresh(_) | ClientEvent::Closed(_) => None,
        }
    }
}

/// One client connection to a webhook receiver, sans-IO (see the module docs).
pub struct ClientConn {
    config: ClientConfig,
    phase: ClientPhase,
    job: Option<HookJob>,
    /// Request bytes the socket has taken.
    written: usize,
    reader: ResponseReader,
    /// Response bytes not consumed by the reader yet.
    rbuf: Vec<u8>,
    /// A response byte has arrived for the current job.
    got_bytes: bool,
    /// The current job runs on a connection taken from the pool.
    reused: bool,
    connect_deadline: Option<Instant>,
    idle_deadline: Option<Instant>,
}

impl fmt::Debug for ClientConn {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ClientConn")
            .field("phase", &self.phase)
            .field("attempt", &self.job.as_ref().map(HookJob::attempt))
            .field("written", &self.written)
            .field("reused", &self.reused)
            .finish()
    }
}

/// `now + after`, saturating far in the future instead of overflowing.
fn later(now: Instant, after: Duration) -> Instant {
    now.checked_add(after)
        .unwrap_or_else(|| now + Duration::from_secs(100 * 365 * 86_400))
}

impl ClientConn {
    /// A new connection for `job`, whose non-blocking connect the driver started at `now`.
    pub fn connect(job: HookJob, now: Instant, config: ClientConfig) -> ClientConn {
        ClientConn {
            reader: ResponseReader::new(false, config.body_cap, &config.limits),
            config,
            phase: ClientPhase::Connecting,
            job: Some(job),
            written: 0,
            rbuf: Vec::new(),
            got_bytes: false,
            reused: false,
            connect_deadline: Some(later(now, config.connect_timeout)),
            idle_deadline: None,
        }
    }

    /// The connect has completed: start writing the request.
    pub fn on_connected(&mut self) {
        if self.phase == ClientPhase::Connecting {
            trace!("webhook client: connected");
            self.phase = ClientPhase::Writing;
            self.connect_deadline = None;
        }
    }

    /// Gives an idle pooled connection its next job. Refused (the job comes back) unless
    /// the connection is [`ClientPhase::Idle`] and the job may use a pooled connection
    /// (not [`HookJob::needs_fresh`]).
    pub fn send(&mut self, job: HookJob) -> Result<(), HookJob> {
        if self.phase != ClientPhase::Idle || job.needs_fresh() {
            return Err(job);
        }
        trace!("webhook client: reused for attempt {}", job.attempt());
        self.phase = ClientPhase::Writing;
        self.job = Some(job);
        self.reused = true;
        self.idle_deadline = None;
        Ok(())
    }

    /// The phase.
    pub fn phase(&self) -> ClientPhase {
        self.phase
    }

    /// The connection is done; the driver closes the socket.
    pub fn is_closed(&self) -> bool {
        self.phase == ClientPhase::Closed
    }

    /// The connection is in the pool, waiting for a job.
    pub fn is_idle(&self) -> bool {
        self.phase == ClientPhase::Idle
    }

    /// The driver should read: in every live phase (the completion of a connect is
    /// signalled as writable, but an error may come as readable; an idle connection watches
    /// for the receiver closing it).
    pub fn wants_read(&self) -> bool {
        self.phase != ClientPhase::Closed
    }

    /// The driver should write: while connecting (writable means connected) and while part
    /// of the request is unwritten.
    pub fn wants_write(&self) -> bool {
        match self.phase {
            ClientPhase::Connecting => true,
            ClientPhase::Writing => !self.pending().is_empty(),
            _ => false,
        }
    }

    /// The request bytes still to be written (empty unless [`ClientPhase::Writing`]).
    pub fn pending(&self) -> &[u8] {
        match (&self.job, self.phase) {
            (Some(job), ClientPhase::Writing) => job.request.get(self.written..).unwrap_or(&[]),
            _ => &[],
        }
    }

    /// The socket took the first `n` bytes of [`pending`](Self::pending).
    pub fn wrote(&mut self, n: usize) {
        let Some(job) = &self.job else { return };
        if self.phase != ClientPhase::Writing {
            return;
        }
        self.written = (self.written + n).min(job.request.len());
        trace!(
            "webhook client -> {n} request bytes ({}/{})",
            self.written,
            job.request.len()
        );
        if self.written == job.request.len() {
            self.phase = ClientPhase::Reading;
        }
    }

    /// Bytes read from the socket. `now` and `unix_secs` (the wall clock, for an HTTP-date
    /// in `Retry-After`) are used when they complete the response.
    pub fn on_read(&mut self, data: &[u8], now: Instant, unix_secs: u64) -> Option<ClientEvent> {
        match self.phase {
            ClientPhase::Idle => return Some(self.close_idle("unexpected bytes while idle")),
            ClientPhase::Writing if !data.is_empty() => {
                // An early answer (say, 413 before the whole body went out): read it, and
                // stop writing.
                debug!(
                    "webhook client: answer before the request was written ({} bytes unsent)",
                    self.pending().len()
                );
                self.phase = ClientPhase::Reading;
            }
            ClientPhase::Reading => {}
            _ => return None,
        }
        if data.is_empty() {
            return None;
        }
        trace!("webhook client <- {} response bytes", data.len());
        self.got_bytes = true;
        self.rbuf.extend_from_slice(data);
        match self.reader.advance(&self.rbuf) {
            Ok((used, response)) => {
                self.rbuf.drain(..used);
                response.map(|r| self.respond(r, false, now, unix_secs))
            }
            Err(e) => Some(self.fail(format!("bad response: {e}"))),
        }
    }

    /// The receiver closed the connection (a read returned 0).
    pub fn on_eof(&mut self, now: Instant, unix_secs: u64) -> Option<ClientEvent> {
        match self.phase {
            ClientPhase::Idle => Some(self.close_idle("closed by the receiver while idle")),
            ClientPhase::Connecting => Some(self.fail("connection closed while connecting".into())),
            ClientPhase::Writing | ClientPhase::Reading => match self.reader.on_eof() {
                // A body delimited by the connection closing (RFC 9112 §6.3 point 8).
                Ok(Some(r)) => Some(self.respond(r, true, now, unix_secs)),
                Ok(None) | Err(_) => {
                    Some(self.fail("connection closed before a complete response".into()))
                }
            },
            ClientPhase::Closed => None,
        }
    }

    /// The socket failed (`error` says how: a failed connect, a write or read error).
    pub fn on_error(&mut self, error: String) -> Option<ClientEvent> {
        match self.phase {
            ClientPhase::Idle => Some(self.close_idle("error while idle")),
            ClientPhase::Connecting => Some(self.connect_failed(error)),
            ClientPhase::Writing | ClientPhase::Reading => Some(self.fail(error)),
            ClientPhase::Closed => None,
        }
    }

    /// Ends the connection at once (the server stops): a running attempt fails with
    /// `reason`.
    pub fn abort(&mut self, reason: &str) -> Option<ClientEvent> {
        match self.phase {
            ClientPhase::Closed => None,
            ClientPhase::Idle => Some(self.close_idle("closed by us")),
            _ => Some(self.finish(AttemptResult::Io(reason.into()))),
        }
    }

    /// The nearest deadline of the current phase: the connect timeout or the attempt
    /// timeout (whichever is first) while connecting, the attempt timeout while writing and
    /// reading, the idle timeout in the pool.
    pub fn poll_timeout(&self) -> Option<Instant> {
        let attempt = self
            .job
            .as_ref()
            .map(|j| later(j.started, self.config.attempt_timeout));
        match self.phase {
            ClientPhase::Connecting => match (self.connect_deadline, attempt) {
                (Some(c), Some(a)) => Some(c.min(a)),
                (c, a) => c.or(a),
            },
            ClientPhase::Writing | ClientPhase::Reading => attempt,
            ClientPhase::Idle => self.idle_deadline,
            ClientPhase::Closed => None,
        }
    }

    /// Acts on the deadline if it has passed at `now` (nothing happens before it).
    pub fn handle_timeout(&mut self, now: Instant) -> Option<ClientEvent> {
        if self.poll_timeout().is_none_or(|at| now < at) {
            return None;
        }
        let attempt_over = self
            .job
            .as_ref()
            .is_some_and(|j| now >= later(j.started, self.config.attempt_timeout));
        match self.phase {
            ClientPhase::Idle => Some(self.close_idle("idle timeout")),
            ClientPhase::Connecting if !attempt_over => {
                debug!("webhook client: connect timeout");
                Some(self.connect_failed("connect timeout".into()))
            }
            ClientPhase::Connecting | ClientPhase::Writing | ClientPhase::Reading => {
                debug!("webhook client: attempt timeout");
                Some(self.finish(AttemptResult::Timeout))
            }
            ClientPhase::Closed => None,
        }
    }

    /// A complete response: the attempt's result, and the reuse decision.
    fn respond(
        &mut self,
        response: ClientResponse,
        eof: bool,
        now: Instant,
        unix_secs: u64,
    ) -> ClientEvent {
        let job = self.job.take();
        let request_len = job.as_ref().map_or(0, |j| j.request.len());
        debug!(
            "webhook client <- {} ({} body bytes kept)",
            response.status,
            response.body.len()
        );
        let retry_after = response
            .header("retry-after")
            .and_then(|v| parse_retry_after(v, unix_secs));
        // Reusable only when the whole request went out (an early answer may cut it short:
        // the rest would be read as the next request) and nothing follows the response.
        let reusable =
            !eof && response.keep_alive && self.rbuf.is_empty() && self.written == request_len;
        self.reset();
        if reusable {
            self.phase = ClientPhase::Idle;
            self.idle_deadline = Some(later(now, self.config.idle_timeout));
        } else {
            trace!("webhook client: not reusable, closing");
            self.phase = ClientPhase::Closed;
        }
        match job {
            Some(job) => ClientEvent::Response {
                attempt: job.attempt,
                status: response.status,
                retry_after,
                reusable,
            },
            None => ClientEvent::Closed("response without a request"),
        }
    }

    /// The connection failed mid-request or mid-response: a stale pooled connection gives
    /// its job back for a fresh one, anything else fails the attempt.
    fn fail(&mut self, error: String) -> ClientEvent {
        let stale = self.reused && !self.got_bytes;
        match self.job.take() {
            Some(mut job) if stale && !job.retried => {
                debug!(
                    "webhook client: pooled connection was stale ({error}); retrying on a new one"
                );
                job.retried = true;
                self.reset();
                self.phase = ClientPhase::Closed;
                ClientEvent::RetryFresh(job)
            }
            job => {
                self.job = job;
                self.finish(AttemptResult::Io(error))
            }
        }
    }

    /// Closes the connection and fails the current attempt with `result`.
    /// Connecting failed: closed, the job handed back with the reason.
    fn connect_failed(&mut self, why: String) -> ClientEvent {
        let job = self.job.take();
        self.reset();
        self.phase = ClientPhase::Closed;
        match job {
            Some(job) => {
                debug!(
                    "webhook client: attempt {}: connect failed: {why}",
                    job.attempt
                );
                ClientEvent::ConnectFailed { job, why }
            }
            None => ClientEvent::Closed("closed"),
        }
    }

    fn finish(&mut self, result: AttemptResult) -> ClientEvent {
        let job = self.job.take();
        self.reset();
        self.phase = ClientPhase::Closed;
        match job {
            Some(job) => {
                debug!("webhook client: attempt {} failed: {result:?}", job.attempt);
                ClientEvent::Failed {
                    attempt: job.attempt,
                    result,
                }
            }
            None => ClientEvent::Closed("closed"),
        }
    }

    fn close_idle(&mut self, why: &'static str) -> ClientEvent {
        trace!("webhook client: idle connection ends: {why}");
        self.reset();
        self.phase = ClientPhase::Closed;
        ClientEvent::Closed(why)
    }

    /// Forgets the finished exchange (the job itself is taken by the caller).
    fn reset(&mut self) {
        self.job = None;
        self.written = 0;
        self.rbuf = Vec::new();
        self.got_bytes = false;
        self.reused = false;
        self.connect_deadline = None;
        self.idle_deadline = None;
        self.reader = ResponseReader::new(false, self.config.body_cap, &self.config.limits);
    }
}

#[cfg(test)]
mod tests;
