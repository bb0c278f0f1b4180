//! One client connection to Redis, sans-IO.
//!
//! [`RedisConn`] makes every decision about one TCP connection to a Redis server; the
//! driver only moves bytes, reports what the socket did, and arms one timer.
//!
//! # Theory of operation
//!
//! ```text
//!              on_connected             handshake answered
//!  Connecting --------------> Handshaking -----------------> Ready
//!       any phase: EOF, an error, a timeout, a bad reply, a refused handshake --> Closed
//! ```
//!
//! * **Handshake.** [`RedisConn::new`] queues it at once: `AUTH [user] password` when the
//!   URL has credentials, `HELLO 3` for [`Protocol::Resp3`], `SELECT db` when the database
//!   is not 0, and `PING` when none of these is needed, so that "ready" always means Redis
//!   has answered. The commands are pipelined; the first error reply (`WRONGPASS ...`,
//!   `NOAUTH ...`, `-ERR unknown command 'HELLO'` from a Redis before 6.0) fails the
//!   connection with [`ConnError::Handshake`] and Redis's text. When all are answered,
//!   [`Events::ready`] is set (the driver then resets its [`Backoff`](super::Backoff)).
//! * **Pipelining.** [`RedisConn::send`] appends a command to the output and its tag to the
//!   in-flight queue, at any phase before Closed (commands sent during the handshake go out
//!   after it). Redis answers in order, so replies are matched to tags first in, first out
//!   and come back in [`Events::replies`]. A Redis error reply (`-ERR`, `-WRONGTYPE`) is
//!   the command's answer ([`Value::Error`](super::Value::Error)), not a failure of the
//!   connection. Two budgets refuse a command ([`SendError`]; the caller answers 503): the
//!   bytes queued and not yet written ([`RedisConfig::max_pending_bytes`]) and the
//!   commands in flight ([`RedisConfig::max_in_flight`]).
//! * **Output.** [`RedisConn::pending`] is what the socket has not taken yet; the driver
//!   writes it and reports [`RedisConn::wrote`].
//! * **Deadlines** (from the `now` values passed in): the connect timeout covers the TCP
//!   connect and the handshake; the reply timeout fails the connection when the oldest
//!   command in flight has waited too long (commands are answered in order, so the oldest
//!   has the nearest deadline); the optional keepalive sends a `PING` on a connection that
//!   has been quiet for a while (a subscriber connection otherwise never notices a dead
//!   peer). [`RedisConn::poll_timeout`] is the nearest; [`RedisConn::handle_timeout`] acts.
//! * **Failure** is final: every tag in flight comes back in [`Failure::tags`], in the order
//!   sent, so the caller can answer each one; subscriptions are gone. The driver makes a
//!   new connection after [`Backoff::next_delay`](super::Backoff::next_delay).
//!
//! # Pub/sub
//!
//! [`RedisConn::subscribe`] and friends send `SUBSCRIBE` (`UNSUBSCRIBE`, `PSUBSCRIBE`,
//! `PUNSUBSCRIBE`). Redis confirms each channel separately; the confirmations are matched
//! in order against what was asked, shown as [`Push::Subscribed`] and
//! [`Push::Unsubscribed`], and tracked: [`RedisConn::is_subscribed`] is true once Redis has
//! confirmed. Messages come out as [`Push::Message`] and [`Push::PMessage`] in
//! [`Events::pushes`], apart from the replies.
//!
//! * **RESP2** (the default, any Redis version): "A client subscribed to one or more
//!   channels shouldn't issue commands", and in RESP2 a message is an array like any reply.
//!   So the first pub/sub command makes the connection a **subscriber connection**: commands
//!   already in flight are answered first, as usual; after that every array is read as
//!   pub/sub, and [`RedisConn::send`] is refused ([`SendError::Subscriber`]). Use a second
//!   connection for commands (`PUBLISH`). The keepalive `PING` is allowed and answered by
//!   `["pong", ""]`.
//! * **RESP3** (`HELLO 3`, Redis 6.0 or later): messages and confirmations are pushes
//!   (`>`), told apart from replies by their type, so one connection can subscribe and send
//!   commands. Other pushes (client-side caching's `invalidate`) come out as
//!   [`Push::Other`].
//!
//! Sharded pub/sub (`SSUBSCRIBE`) and `MONITOR` are not supported.

use std::collections::VecDeque;
use std::fmt;
use std::time::{Duration, Instant};

use log::trace;

use super::command::{command_len, decimal, encode_command, Command};
use super::{Limits, Parser, RedisUrl};

mod events;
mod pubsub;
mod read;

pub use events::{ConnError, Events, Failure, Refused, SendError};
pub use pubsub::Push;
use pubsub::{SubKind, Subscriptions};

/// The protocol version a [`RedisConn`] speaks.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Protocol {
    /// RESP2: every Redis version; a subscribed connection only does pub/sub.
    #[default]
    Resp2,
    /// RESP3 after `HELLO 3` (Redis 6.0 or later): pushes apart from replies.
    Resp3,
}

/// The settings of a [`RedisConn`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RedisConfig {
    /// RESP2 or RESP3 (default RESP2).
    pub protocol: Protocol,
    /// How long the TCP connect and the handshake may take together (default 5 s).
    pub connect_timeout: Duration,
    /// How long a command may wait for its reply (default 10 s).
    pub reply_timeout: Duration,
    /// Send a `PING` after this long without a byte from Redis and with nothing in flight
    /// (default 30 s; `None`: never).
    pub keepalive: Option<Duration>,
    /// Most bytes of commands queued and not yet written (default 4 MiB).
    pub max_pending_bytes: usize,
    /// Most commands (and pub/sub commands) waiting for their answer (default 4096).
    pub max_in_flight: usize,
    /// Limits on each reply.
    pub limits: Limits,
}

impl Default for RedisConfig {
    fn default() -> Self {
        RedisConfig {
            protocol: Protocol::Resp2,
            connect_timeout: Duration::from_secs(5),
            reply_timeout: Duration::from_secs(10),
            keepalive: Some(Duration::from_secs(30)),
            max_pending_bytes: 4 << 20,
            max_in_flight: 4096,
            limits: Limits::default(),
        }
    }
}

/// Where a [`RedisConn`] is (see the module's theory of operation).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Phase {
    /// The TCP connect is under way.
    Connecting,
    /// Connected; the handshake is not answered yet.
    Handshaking,
    /// The handshake succeeded.
    Ready,
    /// Finished: the driver closes the socket.
    Closed,
}

/// What the next reply in order answers.
#[derive(Debug)]
enum Expect<T> {
    /// A handshake command.
    Setup(&'static str),
    /// A caller's command.
    Reply(T),
    /// Confirmations of a pub/sub command still to come, one per channel, in order.
    Confirm {
        kind: SubKind,
        channels: VecDeque<Vec<u8>>,
    },
    /// The keepalive `PING`.
    Ping,
}

#[derive(Debug)]
struct InFlight<T> {
    expect: Expect<T>,
    /// When it was queued: the reply timeout counts from here.
    since: Instant,
}

/// Output compacted once this much of it has been written.
const COMPACT_AT: usize = 64 * 1024;

/// One client connection to Redis, sans-IO (see the module docs). `T` is the caller's tag
/// for each command: whatever it needs to route the reply.
pub struct RedisConn<T> {
    config: RedisConfig,
    phase: Phase,
    out: Vec<u8>,
    /// Bytes of `out` the socket has taken.
    written: usize,
    in_flight: VecDeque<InFlight<T>>,
    /// Handshake replies still to come.
    setup_left: usize,
    parser: Parser,
    /// Input the parser has not consumed: at most a partial line.
    rbuf: Vec<u8>,
    subs: Subscriptions,
    /// RESP2: a pub/sub command was sent; arrays after the commands before it are pub/sub.
    subscriber: bool,
    /// Until ready.
    connect_deadline: Option<Instant>,
    /// The last byte from Redis (or readiness): the keepalive counts from here.
    last_heard: Instant,
}

impl<T> fmt::Debug for RedisConn<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RedisConn")
            .field("phase", &self.phase)
            .field("protocol", &self.config.protocol)
            .field("in_flight", &self.in_flight.len())
            .field("pending", &self.pending_len())
            .field("subscriber", &self.subscriber)
            .finish()
    }
}

/// `now + after`, saturating far in the future instead of overflowing.
fn later(now: Instant, after: Duration) -> Instant {
    now.checked_add(after)
        .unwrap_or_else(|| now + Duration::from_secs(100 * 365 * 86_400))
}

impl<T> RedisConn<T> {
    /// A connection to the server of `url`, whose non-blocking connect the driver started
    /// at `now`. The handshake is queued (see the module docs); `url`'s host and port are
    /// the driver's business.
    pub fn new(url: &RedisUrl, config: RedisConfig, now: Instant) -> RedisConn<T> {
        let mut conn = RedisConn {
            config,
            phase: Phase::Connecting,
            out: Vec::new(),
            written: 0,
            in_flight: VecDeque::new(),
            setup_left: 0,
            parser: Parser::new(config.limits),
            rbuf: Vec::new(),
            subs: Subscriptions::default(),
            subscriber: false,
            connect_deadline: Some(later(now, config.connect_timeout)),
            last_heard: now,
        };
        if let Some(auth) = &url.auth {
            let password = auth.password.expose();
            match &auth.username {
                Some(user) => conn.setup("AUTH", &[b"AUTH", user, password], now),
                None => conn.setup("AUTH", &[b"AUTH", password], now),
            }
        }
        if config.protocol == Protocol::Resp3 {
            conn.setup("HELLO", &[b"HELLO", b"3"], now);
        }
        if url.db != 0 {
            conn.setup("SELECT", &[b"SELECT", &decimal(url.db as usize)], now);
        }
        if conn.setup_left == 0 {
            conn.setup("PING", &[b"PING"], now);
        }
        conn
    }

    fn setup(&mut self, name: &'static str, args: &[&[u8]], now: Instant) {
        trace!("redis -> {name} (handshake)");
        encode_command(&mut self.out, args);
        self.in_flight.push_back(InFlight {
            expect: Expect::Setup(name),
            since: now,
        });
        self.setup_left += 1;
    }

    /// The connect has completed: the handshake goes out.
    pub fn on_connected(&mut self) {
        if self.phase == Phase::Connecting {
            trace!("redis: connected");
            self.phase = Phase::Handshaking;
        }
    }

    /// The phase.
    pub fn phase(&self) -> Phase {
        self.phase
    }

    /// The handshake succeeded and the connection has not failed.
    pub fn is_ready(&self) -> bool {
        self.phase == Phase::Ready
    }

    /// The connection is done; the driver closes the socket.
    pub fn is_closed(&self) -> bool {
        self.phase == Phase::Closed
    }

    /// The protocol version in use.
    pub fn protocol(&self) -> Protocol {
        self.config.protocol
    }

    /// The driver should read: in every phase but Closed.
    pub fn wants_read(&self) -> bool {
        self.phase != Phase::Closed
    }

    /// The driver should write: while connecting (writable means connected) and while
    /// output is pending.
    pub fn wants_write(&self) -> bool {
        self.phase == Phase::Connecting || !self.pending().is_empty()
    }

    /// The bytes to write (empty before the connect completes and after a failure).
    pub fn pending(&self) -> &[u8] {
        match self.phase {
            Phase::Handshaking | Phase::Ready => self.out.get(self.written..).unwrap_or(&[]),
            Phase::Connecting | Phase::Closed => &[],
        }
    }

    /// Bytes queued and not yet written, whatever the phase (what the budget counts).
    pub fn pending_len(&self) -> usize {
        self.out.len() - self.written
    }

    /// The socket took the first `n` bytes of [`pending`](Self::pending).
    pub fn wrote(&mut self, n: usize) {
        let n = n.min(self.pending().len());
        self.written += n;
        if self.written == self.out.len() {
            self.out.clear();
            self.written = 0;
        } else if self.written >= COMPACT_AT && self.written * 2 >= self.out.len() {
            self.out.drain(..self.written);
            self.written = 0;
        }
    }

    /// Commands (handshake and pub/sub commands included) waiting for their answer.
    pub fn in_flight(&self) -> usize {
        self.in_flight.len()
    }

    /// Queues the command `args` (its name first), answered in [`Events::replies`] with
    /// `tag`. Refused when the connection is closed, over a budget, or a RESP2 subscriber
    /// connection.
    pub fn send(&mut self, tag: T, args: &[&[u8]], now: Instant) -> Result<(), Refused<T>> {
        let name = args.first().copied().unwrap_or_default();
        let checked = match args.is_empty() {
            true => Err(SendError::Empty),
            false => self.check(command_len(args), false),
        };
        if let Err(error) = checked {
            return Err(Refused { tag, error });
        }
        trace!("redis -> {} ({} args)", name.escape_ascii(), args.len() - 1);
        encode_command(&mut self.out, args);
        self.in_flight.push_back(InFlight {
            expect: Expect::Reply(tag),
            since: now,
        });
        Ok(())
    }

    /// [`send`](Self::send) for a built [`Command`].
    pub fn send_command(&mut self, tag: T, cmd: &Command, now: Instant) -> Result<(), Refused<T>> {
        if let Err(error) = self.check(cmd.encoded_len(), false) {
            return Err(Refused { tag, error });
        }
        trace!("redis -> {cmd:?}");
        cmd.encode(&mut self.out);
        self.in_flight.push_back(InFlight {
            expect: Expect::Reply(tag),
            since: now,
        });
        Ok(())
    }

    /// Whether a command of `len` bytes may be queued now.
    fn check(&self, len: usize, pubsub: bool) -> Result<(), SendError> {
        if self.phase == Phase::Closed {
            return Err(SendError::Closed);
        }
        if self.subscriber && !pubsub {
            return Err(SendError::Subscriber);
        }
        if self.in_flight.len() >= self.config.max_in_flight {
            return Err(SendError::TooManyInFlight);
        }
        if self.pending_len().saturating_add(len) > self.config.max_pending_bytes {
            return Err(SendError::OutputFull);
        }
        Ok(())
    }

    /// Subscribes to `channels` (`SUBSCRIBE`); each is confirmed by a
    /// [`Push::Subscribed`]. Nothing is sent for an empty list.
    pub fn subscribe(&mut self, channels: &[&[u8]], now: Instant) -> Result<(), SendError> {
        self.pubsub(SubKind::Subscribe, channels, now)
    }

    /// Unsubscribes from `channels` (`UNSUBSCRIBE`; an empty list sends nothing, rather
    /// than unsubscribing from everything).
    pub fn unsubscribe(&mut self, channels: &[&[u8]], now: Instant) -> Result<(), SendError> {
        self.pubsub(SubKind::Unsubscribe, channels, now)
    }

    /// Subscribes to glob-style `patterns` (`PSUBSCRIBE`).
    pub fn psubscribe(&mut self, patterns: &[&[u8]], now: Instant) -> Result<(), SendError> {
        self.pubsub(SubKind::PSubscribe, patterns, now)
    }

    /// Unsubscribes from `patterns` (`PUNSUBSCRIBE`).
    pub fn punsubscribe(&mut self, patterns: &[&[u8]], now: Instant) -> Result<(), SendError> {
        self.pubsub(SubKind::PUnsubscribe, patterns, now)
    }

    fn pubsub(&mut self, kind: SubKind, names: &[&[u8]], now: Instant) -> Result<(), SendError> {
        if names.is_empty() {
            return Ok(());
        }
        let mut args = Vec::with_capacity(names.len() + 1);
        args.push(kind.command());
        args.extend_from_slice(names);
        self.check(command_len(&args), true)?;
        trace!(
            "redis -> {} ({} names)",
            kind.command().escape_ascii(),
            names.len()
        );
        encode_command(&mut self.out, &args);
        self.subs.requested(kind, names);
        self.in_flight.push_back(InFlight {
            expect: Expect::Confirm {
                kind,
                channels: names.iter().map(|n| n.to_vec()).collect(),
            },
            since: now,
        });
        if self.config.protocol == Protocol::Resp2 {
            self.subscriber = true;
        }
        Ok(())
    }

    /// Redis has confirmed the subscription to `channel`, and no unsubscription since.
    pub fn is_subscribed(&self, channel: &[u8]) -> bool {
        self.subs.is_active(false, channel)
    }

    /// Redis has confirmed the subscription to `pattern`, and no unsubscription since.
    pub fn is_psubscribed(&self, pattern: &[u8]) -> bool {
        self.subs.is_active(true, pattern)
    }

    /// The channels Redis has confirmed, in no particular order.
    pub fn channels(&self) -> impl Iterator<Item = &[u8]> {
        self.subs.active(false)
    }

    /// The patterns Redis has confirmed, in no particular order.
    pub fn patterns(&self) -> impl Iterator<Item = &[u8]> {
        self.subs.active(true)
    }

    /// A RESP2 connection that has sent a pub/sub command: it takes no other commands.
    pub fn is_subscriber(&self) -> bool {
        self.subscriber
    }
}

#[cfg(test)]
mod tests;
