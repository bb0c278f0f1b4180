//! What a [`RedisConn`](super::RedisConn) reports: events, failures, refusals.

use std::fmt;

use super::Push;
use crate::proto::resp::{RespError, Value};

/// Why a connection failed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ConnError {
    /// The TCP connect and the handshake did not finish within
    /// [`RedisConfig::connect_timeout`](super::RedisConfig::connect_timeout).
    ConnectTimeout,
    /// The oldest command in flight waited longer than
    /// [`RedisConfig::reply_timeout`](super::RedisConfig::reply_timeout).
    ReplyTimeout,
    /// Redis refused a handshake command.
    Handshake {
        /// `AUTH`, `HELLO`, `SELECT` or `PING`.
        command: &'static str,
        /// Redis's error text (`WRONGPASS invalid username-password pair ...`), or what
        /// was wrong with its reply.
        message: String,
    },
    /// A reply that is not RESP, or over the [`Limits`](crate::proto::resp::Limits).
    Protocol(RespError),
    /// A reply that matches nothing asked for (the connection is out of step).
    OutOfStep(&'static str),
    /// Redis closed the connection.
    Closed,
    /// The socket failed (the driver's description).
    Io(String),
    /// The connection was closed by us ([`RedisConn::abort`](super::RedisConn::abort)).
    Aborted,
}

impl fmt::Display for ConnError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ConnError::ConnectTimeout => write!(f, "Redis connect and handshake timed out"),
            ConnError::ReplyTimeout => write!(f, "Redis did not reply in time"),
            ConnError::Handshake { command, message } => {
                write!(f, "Redis refused {command}: {message}")
            }
            ConnError::Protocol(e) => write!(f, "bad reply from Redis: {e}"),
            ConnError::OutOfStep(why) => write!(f, "Redis connection out of step: {why}"),
            ConnError::Closed => write!(f, "Redis closed the connection"),
            ConnError::Io(e) => write!(f, "Redis connection failed: {e}"),
            ConnError::Aborted => write!(f, "Redis connection closed"),
        }
    }
}

impl std::error::Error for ConnError {}

/// Why [`RedisConn::send`](super::RedisConn::send) (or a pub/sub command) was refused;
/// the connection carries on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SendError {
    /// The connection has failed or was closed.
    Closed,
    /// The bytes queued and not yet written would pass
    /// [`RedisConfig::max_pending_bytes`](super::RedisConfig::max_pending_bytes).
    OutputFull,
    /// [`RedisConfig::max_in_flight`](super::RedisConfig::max_in_flight) commands are
    /// waiting for their answer.
    TooManyInFlight,
    /// A RESP2 subscriber connection takes only pub/sub commands.
    Subscriber,
    /// A command needs at least its name.
    Empty,
}

impl fmt::Display for SendError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            SendError::Closed => "Redis connection is closed",
            SendError::OutputFull => "too many bytes queued for Redis",
            SendError::TooManyInFlight => "too many commands waiting for Redis",
            SendError::Subscriber => "a RESP2 subscriber connection takes only pub/sub commands",
            SendError::Empty => "empty Redis command",
        })
    }
}

impl std::error::Error for SendError {}

/// A refused [`RedisConn::send`](super::RedisConn::send): the tag comes back with the reason.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Refused<T> {
    /// The tag given to `send`.
    pub tag: T,
    /// Why.
    pub error: SendError,
}

/// A failed connection: why, and the tags of every command that will never be answered, in
/// the order they were sent.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Failure<T> {
    /// Why the connection failed.
    pub error: ConnError,
    /// The commands in flight.
    pub tags: Vec<T>,
}

/// What one [`RedisConn::on_read`](super::RedisConn::on_read) produced, in this order:
/// readiness, replies, pushes, and a failure that ended it all.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Events<T> {
    /// The handshake completed: the connection is ready (reset the reconnect backoff).
    pub ready: bool,
    /// Replies to commands, in the order they were sent.
    pub replies: Vec<(T, Value)>,
    /// Pub/sub messages, confirmations and other pushes, in the order received.
    pub pushes: Vec<Push>,
    /// The connection failed after the events above.
    pub failed: Option<Failure<T>>,
}

impl<T> Default for Events<T> {
    fn default() -> Self {
        Events {
            ready: false,
            replies: Vec::new(),
            pushes: Vec::new(),
            failed: None,
        }
    }
}

impl<T> Events<T> {
    /// Nothing happened.
    pub fn is_empty(&self) -> bool {
        !self.ready && self.replies.is_empty() && self.pushes.is_empty() && self.failed.is_none()
    }
}
