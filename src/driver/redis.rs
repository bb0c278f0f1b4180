//! Redis links: the sockets of the pure Redis client ([`RedisConn`]), reconnected forever.
//!
//! The driver half of the Redis backplane ([`super::backplane`] is its user). What exists:
//!
//! * Two [`Link`]s, created by [`Driver::bind`](super::Driver::bind) when the
//!   configuration names a Redis URL: the [`Role::Command`] link pipelines commands
//!   (the publish script, `XRANGE`, `XREADGROUP`, ...), the [`Role::Subscriber`] link does
//!   pub/sub (RESP2: a subscribed connection takes no other commands).
//! * The API on [`Core`]: [`Core::redis_send`], [`Core::redis_subscribe`],
//!   [`Core::redis_unsubscribe`], and [`Core::take_redis_events`], which drains the
//!   [`RedisEvent`]s collected since the last call (replies, pushes, failed tags, a link
//!   going up or down); the backplane drains them after each step of the loop.
//!
//! # Theory of operation
//!
//! ```text
//!           connect (non-blocking)         handshake answered
//!   Down ---------------------------> Up ---------------------> Up, ready
//!    ^   reconnect timer: Backoff      |  any failure: EOF, I/O error, timeout,   |
//!    +---------------------------------+--- bad reply, refused handshake <--------+
//! ```
//!
//! The address is resolved once, when the link is made at server start (the only place a
//! host name may block). Every decision about the connection is the [`RedisConn`]'s: the
//! link connects, moves bytes (writes until `WouldBlock`, reads until `WouldBlock`) and, in
//! one place ([`Core::settle_redis`]), sets the socket's interest and its **one timer**:
//! the connection's [`RedisConn::poll_timeout`] while up, the reconnect time while down.
//! Each connection attempt and each down period has a new generation, carried by its
//! timer event ([`TimerEv::Redis`]), so a stale timer is ignored.
//!
//! * **Ready**: the backoff is reset, a debug line logged, [`RedisEvent::Ready`] reported.
//!   For the subscriber this is also the moment the backplane must catch up (from streams)
//!   on what was published while it was down: the channels it wants are re-`SUBSCRIBE`d
//!   on every connection, and each confirmation arrives as a
//!   [`Push::Subscribed`] right after.
//! * **Failure**: every tag in flight comes back as [`RedisEvent::Failed`] (the caller
//!   answers 503), then [`RedisEvent::Down`] with the cause; one warning is logged (at
//!   most one a second per link, with a count, like failed accepts); the socket is
//!   dropped and the reconnect armed after [`Backoff::next_delay`] (100 ms doubling to
//!   5 s). While a link is not ready, [`Core::redis_command`] refuses at once: a request
//!   never waits for Redis to come back.
//!
//! Reads are not budgeted: a link reads until `WouldBlock`, as Redis sends only what was
//! asked for and what the subscribed channels carry. (A budget is for the backplane to
//! add if a channel can flood the loop.)

use std::collections::{BTreeSet, VecDeque};
use std::io;
use std::net::{SocketAddr, ToSocketAddrs};
use std::time::{Duration, Instant};

use log::{debug, trace, warn};
use mio::net::TcpStream;
use mio::{Interest, Token};

use super::{Core, TimerEv};
use crate::proto::resp::{
    Backoff, Events, Failure, Push, RedisConfig, RedisConn, RedisUrl, SendError, Value,
};
use crate::proto::timer::TimerKey;
use crate::proto::webhook::Host;

/// The command link's socket.
pub(crate) const COMMAND_TOKEN: Token = Token(usize::MAX - 4);
/// The subscriber link's socket.
pub(crate) const SUBSCRIBER_TOKEN: Token = Token(usize::MAX - 5);
/// The most "link failed" warnings per link: one per this interval, with a count.
const WARN_EVERY: Duration = Duration::from_secs(1);
/// Connection attempts remembered per link (for stats and tests).
const ATTEMPTS_KEPT: usize = 32;

/// The caller's tag for a command: whatever routes the reply back (a request's id).
pub(crate) type Tag = u64;

/// What a link is for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub(crate) enum Role {
    /// Pipelined commands.
    Command,
    /// Pub/sub: `SUBSCRIBE`, `UNSUBSCRIBE` and the messages.
    Subscriber,
}

impl Role {
    fn index(self) -> usize {
        self as usize
    }

    fn token(self) -> Token {
        match self {
            Role::Command => COMMAND_TOKEN,
            Role::Subscriber => SUBSCRIBER_TOKEN,
        }
    }

    fn name(self) -> &'static str {
        match self {
            Role::Command => "command link",
            Role::Subscriber => "subscriber link",
        }
    }
}

/// What the links report, in order, drained by [`Core::take_redis_events`].
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum RedisEvent {
    /// The link's handshake succeeded: commands are taken (the subscriber's channels are
    /// being re-subscribed; catch up on what was missed).
    Ready(Role),
    /// The answer to the command sent with this tag (a Redis error reply is an answer).
    Reply(Tag, Value),
    /// A pub/sub message, confirmation or refusal from the subscriber link.
    Push(Push),
    /// The command sent with this tag will never be answered: its link failed.
    Failed(Tag),
    /// The link failed (after the `Failed` tags it held); it reconnects after a backoff.
    Down(Role, String),
}

/// What a link has been through (see [`Core::redis_status`]).
#[derive(Debug, Clone, Default)]
#[cfg_attr(not(test), allow(dead_code))] // read whole by the links' tests
pub(crate) struct LinkStatus {
    /// The handshake succeeded and the connection is up.
    pub(crate) ready: bool,
    /// Connection attempts started.
    pub(crate) connects: u64,
    /// Handshakes that succeeded.
    pub(crate) readies: u64,
    /// Connections (and attempts) that failed.
    pub(crate) failures: u64,
    /// The last failure's cause.
    pub(crate) last_error: Option<String>,
    /// When the last attempts started, oldest first (at most [`ATTEMPTS_KEPT`]).
    pub(crate) attempts: Vec<Instant>,
    /// The channels Redis has confirmed on the current connection.
    pub(crate) subscribed: Vec<Vec<u8>>,
    /// Commands waiting for their answer.
    pub(crate) in_flight: usize,
}

/// One connection to Redis of one role, and everything that outlives a connection.
pub(crate) struct Link {
    url: RedisUrl,
    addr: SocketAddr,
    config: RedisConfig,
    /// The socket and its connection, while up.
    up: Option<(TcpStream, RedisConn<Tag>)>,
    /// The interest registered with mio for the current socket.
    interest: Option<Interest>,
    /// The one timer and when it fires.
    timer: Option<(TimerKey, Instant)>,
    /// Changes with every attempt and every down period: older timer events are stale.
    gen: u32,
    backoff: Backoff,
    /// While down: when to reconnect.
    retry_at: Option<Instant>,
    /// Subscriber: the channels the caller wants, subscribed on every connection.
    wanted: BTreeSet<Vec<u8>>,
    /// Output was queued since the last write (flushed after the loop's step).
    dirty: bool,
    /// Failures since the last warning, and when that was.
    warned: (u64, Option<Instant>),
    status: LinkStatus,
    attempts: VecDeque<Instant>,
}

impl Link {
    fn new(url: RedisUrl, addr: SocketAddr, config: RedisConfig) -> Link {
        Link {
            url,
            addr,
            config,
            up: None,
            interest: None,
            timer: None,
            gen: 0,
            backoff: Backoff::new(),
            retry_at: None,
            wanted: BTreeSet::new(),
            dirty: false,
            warned: (0, None),
            status: LinkStatus::default(),
            attempts: VecDeque::new(),
        }
    }

    fn conn(&mut self) -> Option<&mut RedisConn<Tag>> {
        self.up.as_mut().map(|(_, c)| c)
    }

    fn is_ready(&self) -> bool {
        self.up.as_ref().is_some_and(|(_, c)| c.is_ready())
    }
}

/// The Redis state of a [`Core`]: its links (none without a Redis URL) and their events.
#[derive(Default)]
pub(crate) struct Redis {
    links: [Option<Link>; 2],
    events: Vec<RedisEvent>,
}

impl Redis {
    /// The links for `url` (none without one), its host resolved now: this runs at server
    /// start, the one place a name lookup may block. A name without an address fails the
    /// bind; an unreachable server does not (the links retry).
    pub(crate) fn new(url: Option<&RedisUrl>) -> io::Result<Redis> {
        let Some(url) = url else {
            return Ok(Redis::default());
        };
        let addr = match (&url.host, url.socket_addr()) {
            (_, Some(addr)) => addr,
            (Host::Name(name), None) => (name.as_str(), url.port)
                .to_socket_addrs()?
                .next()
                .ok_or_else(|| {
                    let why = format!("redis: {name} has no address");
                    io::Error::new(io::ErrorKind::NotFound, why)
                })?,
            (Host::Ip(ip), None) => SocketAddr::new(*ip, url.port),
        };
        let config = RedisConfig::default();
        let link = || Some(Link::new(url.clone(), addr, config));
        Ok(Redis {
            links: [link(), link()],
            events: Vec::new(),
        })
    }
}

/// The interest a connection asks for.
fn interest(conn: &RedisConn<Tag>) -> Option<Interest> {
    let read = conn.wants_read().then_some(Interest::READABLE);
    let write = conn.wants_write().then_some(Interest::WRITABLE);
    read.map_or(write, |r| Some(write.map_or(r, |w| r | w)))
}

impl Core {
    fn link(&mut self, role: Role) -> Option<&mut Link> {
        self.redis.links[role.index()].as_mut()
    }

    // ---- the API for the backplane ------------------------------------------------------

    /// Sends `args` (the command's name first) on the command link; its answer comes back
    /// as [`RedisEvent::Reply`] with `tag` (or [`RedisEvent::Failed`]). Refused at once
    /// when there is no link, it is not ready ([`SendError::Closed`]), or a budget is full:
    /// the caller answers 503 instead of waiting.
    #[cfg_attr(not(test), allow(dead_code))] // the backplane sends encoded commands
    pub(crate) fn redis_command(&mut self, tag: Tag, args: &[&[u8]]) -> Result<(), SendError> {
        let now = self.now;
        let link = self.link(Role::Command).ok_or(SendError::Closed)?;
        if !link.is_ready() {
            return Err(SendError::Closed);
        }
        let conn = link.conn().ok_or(SendError::Closed)?;
        conn.send(tag, args, now).map_err(|r| r.error)?;
        link.dirty = true;
        Ok(())
    }

    /// [`Core::redis_command`] for an encoded [`Command`](crate::proto::resp::Command).
    pub(crate) fn redis_send(
        &mut self,
        tag: Tag,
        cmd: &crate::proto::resp::Command,
    ) -> Result<(), SendError> {
        let now = self.now;
        let link = self.link(Role::Command).ok_or(SendError::Closed)?;
        if !link.is_ready() {
            return Err(SendError::Closed);
        }
        let conn = link.conn().ok_or(SendError::Closed)?;
        conn.send_command(tag, cmd, now).map_err(|r| r.error)?;
        link.dirty = true;
        Ok(())
    }

    /// Wants `channel`'s messages from now on, on this connection and every later one. The
    /// confirmation is a [`Push::Subscribed`]. While the link is down the channel is
    /// subscribed when it comes back. Refused without a link, or when the budget is full.
    pub(crate) fn redis_subscribe(&mut self, channel: &[u8]) -> Result<(), SendError> {
        let now = self.now;
        let link = self.link(Role::Subscriber).ok_or(SendError::Closed)?;
        if !link.wanted.insert(channel.to_vec()) {
            return Ok(());
        }
        let sent = match link.conn() {
            Some(conn) if !conn.is_closed() => conn.subscribe(&[channel], now),
            _ => return Ok(()),
        };
        if let Err(e) = sent {
            link.wanted.remove(channel);
            return Err(e);
        }
        link.dirty = true;
        Ok(())
    }

    /// No more of `channel`'s messages (confirmed by a [`Push::Unsubscribed`] when up).
    pub(crate) fn redis_unsubscribe(&mut self, channel: &[u8]) {
        let now = self.now;
        let Some(link) = self.link(Role::Subscriber) else {
            return;
        };
        if !link.wanted.remove(channel) {
            return;
        }
        if let Some(conn) = link.conn() {
            if conn.unsubscribe(&[channel], now).is_ok() {
                link.dirty = true;
            }
        }
    }

    /// Events are waiting for the backplane (which takes them with
    /// [`Core::take_redis_events`]; without one, only the links' tests read them).
    pub(crate) fn redis_has_events(&self) -> bool {
        self.bp.is_some() && !self.redis.events.is_empty()
    }

    /// The events since the last call, in the order they happened.
    pub(crate) fn take_redis_events(&mut self) -> Vec<RedisEvent> {
        std::mem::take(&mut self.redis.events)
    }

    /// Whether the `role` link is up and answered its handshake (cheap: for every reader).
    pub(crate) fn redis_up(&self, role: Role) -> bool {
        self.redis.links[role.index()]
            .as_ref()
            .is_some_and(Link::is_ready)
    }

    /// Where the `role` link is (none without a Redis URL).
    #[cfg_attr(not(test), allow(dead_code))] // the links' tests
    pub(crate) fn redis_status(&self, role: Role) -> Option<LinkStatus> {
        let link = self.redis.links[role.index()].as_ref()?;
        let mut s = link.status.clone();
        s.ready = link.is_ready();
        s.attempts = link.attempts.iter().copied().collect();
        if let Some((_, conn)) = &link.up {
            s.subscribed = conn.channels().map(<[u8]>::to_vec).collect();
            s.in_flight = conn.in_flight();
        }
        Some(s)
    }

    // ---- the loop's hooks -----------------------------------------------------------------

    /// Connects both links (server start).
    pub(crate) fn redis_start(&mut self) {
        for role in [Role::Command, Role::Subscriber] {
            self.redis_connect(role);
        }
    }

    /// Writes what the step's commands queued (one write for a whole pipeline).
    pub(crate) fn redis_flush(&mut self) {
        for role in [Role::Command, Role::Subscriber] {
            if self
                .link(role)
                .is_some_and(|l| std::mem::take(&mut l.dirty))
            {
                self.redis_ready(role);
            }
        }
    }

    /// The server stops: every tag in flight comes back failed, and the links stay down.
    pub(crate) fn redis_shutdown(&mut self) {
        for role in [Role::Command, Role::Subscriber] {
            let Some(link) = self.link(role) else {
                continue;
            };
            let failure = link.conn().and_then(|c| c.abort());
            self.redis_down(role, failure, false);
            if let Some(link) = self.redis.links[role.index()].take() {
                if let Some((t, _)) = link.timer {
                    self.timers.cancel(t);
                }
            }
        }
    }

    /// A readiness event for `role`'s socket. Which kind does not matter: the connection
    /// says what to try, and a spurious event ends in `WouldBlock`.
    pub(crate) fn redis_ready(&mut self, role: Role) {
        let failure = self.redis_io(role);
        self.settle_redis(role, failure);
    }

    /// `role`'s timer of generation `gen` fired: reconnect, or let the connection act on
    /// its deadline.
    pub(crate) fn redis_timer(&mut self, role: Role, gen: u32, key: TimerKey) {
        let now = self.now;
        let Some(link) = self.link(role) else {
            return;
        };
        if link.gen != gen || link.timer.map(|t| t.0) != Some(key) {
            return;
        }
        link.timer = None;
        match link.conn() {
            None => self.redis_connect(role),
            Some(conn) => match conn.handle_timeout(now) {
                Some(failure) => self.settle_redis(role, Some(failure)),
                // A keepalive `PING` may be queued.
                None => self.redis_ready(role),
            },
        }
    }

    // ---- the socket -------------------------------------------------------------------------

    /// Starts a connection attempt (a failure to start is handled like any other).
    fn redis_connect(&mut self, role: Role) {
        let now = self.now;
        let Some(link) = self.link(role) else {
            return;
        };
        link.gen = link.gen.wrapping_add(1);
        link.retry_at = None;
        link.status.connects += 1;
        if link.attempts.len() == ATTEMPTS_KEPT {
            link.attempts.pop_front();
        }
        link.attempts.push_back(now);
        trace!("redis: {} connecting to {}", role.name(), link.addr);
        let addr = link.addr;
        let mut stream = match TcpStream::connect(addr) {
            Ok(stream) => stream,
            Err(e) => return self.redis_start_failed(role, format!("connect {addr}: {e}")),
        };
        let want = Interest::READABLE | Interest::WRITABLE;
        if let Err(e) = self
            .poll
            .registry()
            .register(&mut stream, role.token(), want)
        {
            return self.redis_start_failed(role, format!("register: {e}"));
        }
        let Some(link) = self.link(role) else {
            return;
        };
        let mut conn = RedisConn::new(&link.url, link.config, now);
        if role == Role::Subscriber && !link.wanted.is_empty() {
            let channels: Vec<&[u8]> = link.wanted.iter().map(Vec::as_slice).collect();
            if let Err(e) = conn.subscribe(&channels, now) {
                warn!(
                    "redis: cannot re-subscribe {} channels: {e}",
                    channels.len()
                );
            }
        }
        link.interest = Some(want);
        link.up = Some((stream, conn));
        self.settle_redis(role, None);
    }

    /// A connection attempt that failed before it had a socket.
    fn redis_start_failed(&mut self, role: Role, why: String) {
        let failure = Failure {
            error: crate::proto::resp::ConnError::Io(why),
            tags: Vec::new(),
        };
        self.redis_down(role, Some(failure), true);
    }

    /// Finishes the connect, writes and reads until `WouldBlock` or a failure, collecting
    /// the events.
    fn redis_io(&mut self, role: Role) -> Option<Failure<Tag>> {
        let now = self.now;
        let events = &mut self.redis.events;
        let link = self.redis.links[role.index()].as_mut()?;
        let addr = link.addr;
        let (stream, conn) = link.up.as_mut()?;
        if conn.phase() == crate::proto::resp::Phase::Connecting {
            // A non-blocking connect has finished when the socket turns writable:
            // `take_error` says whether it failed, `peer_addr` whether it is up.
            if let Ok(Some(e)) | Err(e) = stream.take_error() {
                return conn.on_error(format!("connect {addr}: {e}"));
            }
            match stream.peer_addr() {
                Ok(_) => conn.on_connected(),
                Err(e) if e.kind() == io::ErrorKind::NotConnected => return None,
                Err(e) => return conn.on_error(format!("connect {addr}: {e}")),
            }
        }
        while !conn.pending().is_empty() {
            match io::Write::write(stream, conn.pending()) {
                Ok(0) => return conn.on_error("connection closed while writing".into()),
                Ok(n) => conn.wrote(n),
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return conn.on_error(format!("write: {e}")),
            }
        }
        let mut tmp = [0u8; 16 * 1024];
        while conn.wants_read() {
            let got = match io::Read::read(stream, &mut tmp) {
                Ok(0) => return conn.on_eof(),
                Ok(n) => conn.on_read(&tmp[..n], now),
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => return conn.on_error(format!("read: {e}")),
            };
            let Events {
                ready,
                replies,
                pushes,
                failed,
            } = got;
            if ready {
                link.backoff.reset();
                link.status.readies += 1;
                debug!("redis: {} connected to {}", role.name(), link.url);
                events.push(RedisEvent::Ready(role));
            }
            events.extend(replies.into_iter().map(|(t, v)| RedisEvent::Reply(t, v)));
            events.extend(pushes.into_iter().map(RedisEvent::Push));
            if failed.is_some() {
                return failed;
            }
        }
        // Output still pending keeps the writable interest (set by `settle_redis`).
        None
    }

    /// After any input to `role`'s link: the one place its interest and its timer are set
    /// (and the socket dropped after `failure`).
    fn settle_redis(&mut self, role: Role, failure: Option<Failure<Tag>>) {
        if failure.is_some() {
            return self.redis_down(role, failure, true);
        }
        let (timers, registry) = (&mut self.timers, self.poll.registry());
        let Some(link) = self.redis.links[role.index()].as_mut() else {
            return;
        };
        let at = match &mut link.up {
            Some((stream, conn)) => {
                let want = interest(conn).unwrap_or(Interest::READABLE);
                if link.interest != Some(want) {
                    link.interest = Some(want);
                    let _ = registry.reregister(stream, role.token(), want);
                }
                conn.poll_timeout()
            }
            None => link.retry_at,
        };
        if link.timer.map(|t| t.1) != at {
            if let Some((t, _)) = link.timer.take() {
                timers.cancel(t);
            }
            let ev = TimerEv::Redis(role, link.gen);
            link.timer = at.map(|at| (timers.insert(at, ev), at));
        }
    }

    /// The link failed: report its tags and the cause, warn (rate-limited), drop the
    /// socket and, when `retry`, arm the reconnect after the backoff.
    fn redis_down(&mut self, role: Role, failure: Option<Failure<Tag>>, retry: bool) {
        let now = self.now;
        let Some(Failure { error, tags }) = failure else {
            return;
        };
        let (events, registry) = (&mut self.redis.events, self.poll.registry());
        let Some(link) = self.redis.links[role.index()].as_mut() else {
            return;
        };
        if let Some((mut stream, _)) = link.up.take() {
            let _ = registry.deregister(&mut stream);
        }
        link.interest = None;
        link.gen = link.gen.wrapping_add(1);
        link.status.failures += 1;
        let why = error.to_string();
        link.status.last_error = Some(why.clone());
        let in_flight = tags.len();
        events.extend(tags.into_iter().map(RedisEvent::Failed));
        events.push(RedisEvent::Down(role, why.clone()));
        let delay = link.backoff.next_delay();
        let (count, since) = &mut link.warned;
        *count += 1;
        if since.is_none_or(|t| now.saturating_duration_since(t) >= WARN_EVERY) {
            warn!(
                "redis: {} to {} failed: {why} ({in_flight} commands in flight; {count} \
                 failures since the last warning); retrying in {delay:?}",
                role.name(),
                link.url,
            );
            *count = 0;
            *since = Some(now);
        }
        link.retry_at = retry.then(|| super::deadline(now, delay));
        self.settle_redis(role, None);
    }
}

#[cfg(test)]
mod tests;
