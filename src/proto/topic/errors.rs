//! Why a publish or a restore was refused, and what to answer.

use std::fmt;

/// Why a publish was refused.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PublishError {
    /// A JSON publish whose data is not one JSON value (RFC 8259), or nests deeper than
    /// the limit: where and why.
    InvalidJson {
        /// For a batch, the 0-based index of the first bad item; `None` for one publish.
        item: Option<usize>,
        /// The checker's verdict: byte position and cause.
        error: crate::proto::json::JsonError,
    },
    /// The topic name is not 1-128 bytes of `[A-Za-z0-9._-]`, or is `.` or `..`.
    BadTopic,
    /// The event name is not 1-64 bytes of visible ASCII (0x21-0x7E).
    BadEventName,
    /// The topic is new and [`HistoryLimits::max_topics`](super::HistoryLimits::max_topics) topics already exist.
    TooManyTopics,
    /// The event is larger than the durable log's largest record (a batch: its events
    /// together, as a batch is stored as one record).
    TooLarge,
    /// Too many bytes are on their way to the durable log: try again shortly.
    StoreBusy,
    /// The Redis backplane is unreachable, or could not store the event: it was not
    /// published.
    BackplaneDown,
    /// With a Redis backplane the id comes from Redis: publish with `Ctx::publish_async`.
    NeedsAsync,
    /// A batch with no event in it.
    EmptyBatch,
}

impl PublishError {
    /// The HTTP status to answer a publish request with: 400 for a bad name (the client's
    /// fault), 507 Insufficient Storage when the topic table is full, 413 for an event
    /// over the durable log's record limit (a batch: all of it in one record), 503 while the disk is behind.
    pub fn status(self) -> u16 {
        match self {
            PublishError::BadTopic
            | PublishError::BadEventName
            | PublishError::EmptyBatch
            | PublishError::InvalidJson { .. } => 400,
            PublishError::TooManyTopics => 507,
            PublishError::TooLarge => 413,
            PublishError::StoreBusy | PublishError::BackplaneDown => 503,
            PublishError::NeedsAsync => 500,
        }
    }

    /// A short static reason, suitable for a response body (for
    /// [`PublishError::InvalidJson`] only "invalid JSON": its `Display` names the byte
    /// and the cause).
    pub fn reason(self) -> &'static str {
        match self {
            PublishError::InvalidJson { .. } => "invalid JSON",
            PublishError::BadTopic => {
                "bad topic name: use 1-128 characters of A-Z a-z 0-9 . _ - (not . or ..)"
            }
            PublishError::BadEventName => {
                "bad event name: use 1-64 visible ASCII characters (0x21-0x7E)"
            }
            PublishError::TooManyTopics => "too many topics: the topic limit is reached",
            PublishError::TooLarge => "event too large for the durable log",
            PublishError::StoreBusy => "the disk is behind: too many writes waiting, try again",
            PublishError::BackplaneDown => {
                "redis unavailable: the event was not published, try again"
            }
            PublishError::NeedsAsync => {
                "with a Redis backplane the id comes from Redis: publish with Ctx::publish_async"
            }
            PublishError::EmptyBatch => "empty batch: give at least one event",
        }
    }
}

/// Why [`Topics::restore`](super::Topics::restore) refused a history. Nothing changed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RestoreError {
    /// The topic name is not valid ([`valid_topic`](super::valid_topic)).
    BadTopic,
    /// The topic already exists (was restored or published to): restoring never replaces.
    Exists,
    /// The topic is new and [`HistoryLimits::max_topics`](super::HistoryLimits::max_topics) topics already exist.
    TooManyTopics,
    /// `last_id` is at or above [`MAX_ID`](super::MAX_ID): the next id would not be exact in JavaScript.
    IdTooLarge {
        /// The `last_id` given.
        last_id: u64,
    },
    /// The event with this id has an invalid name ([`valid_event_name`](super::valid_event_name)).
    BadEventName {
        /// The event's id.
        id: u64,
    },
    /// An event's id is not above the one before it.
    NotAscending {
        /// The id before it.
        after: u64,
        /// Its id (not above `after`).
        id: u64,
    },
    /// An event's id is above `last_id`.
    WrongLastId {
        /// The id of the offending event: the first above `last_id`, or the last one.
        event_id: u64,
        /// The `last_id` given.
        last_id: u64,
    },
    /// `first_id` is 0, or above the first event given (above `last_id + 1` when none is).
    BadFirstId {
        /// The `first_id` given.
        first_id: u64,
        /// The first event's id (`last_id + 1` when none is given).
        oldest: u64,
    },
}

impl fmt::Display for RestoreError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match *self {
            RestoreError::BadTopic => f.write_str("bad topic name"),
            RestoreError::Exists => f.write_str("topic already exists"),
            RestoreError::TooManyTopics => f.write_str("too many topics"),
            RestoreError::IdTooLarge { last_id } => {
                write!(f, "last id {last_id} is not below 2^53 - 1")
            }
            RestoreError::BadEventName { id } => write!(f, "event {id} has a bad event name"),
            RestoreError::NotAscending { after, id } => {
                write!(f, "event {id} is not above event {after}")
            }
            RestoreError::WrongLastId { event_id, last_id } => {
                write!(f, "event {event_id} is above the last id {last_id}")
            }
            RestoreError::BadFirstId { first_id, oldest } => {
                write!(
                    f,
                    "first id {first_id} is 0 or above the oldest id {oldest}"
                )
            }
        }
    }
}

impl std::error::Error for RestoreError {}

impl fmt::Display for PublishError {
    /// The reason; for invalid JSON the checker's message (`invalid JSON at byte 7:
    /// expected ':'`), after `item N: ` for an item of a batch.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            PublishError::InvalidJson { item: None, error } => write!(f, "{error}"),
            PublishError::InvalidJson {
                item: Some(i),
                error,
            } => write!(f, "item {i}: {error}"),
            e => f.write_str(e.reason()),
        }
    }
}

impl std::error::Error for PublishError {}
