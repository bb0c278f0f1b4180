//! The records of the log: their binary layouts, and their framing (length, checksum, type).
//!
//! See the [module docs](super) for the byte diagrams. Encoding validates a record with
//! the same checks decoding applies, so the writer can never put on disk a record that
//! recovery would refuse; decoding is canonical (every record has exactly one encoding),
//! so a decoded record re-encodes to exactly the bytes it was read from.

use std::fmt;

use super::wire::{put_bytes32, put_str16, Reader};
use crate::proto::topic::{valid_event_name, valid_topic};
use crate::proto::webhook::sign::{MAX_SECRET_LEN, MIN_SECRET_LEN};
use crate::proto::webhook::url::MAX_URL_LEN;

/// Bytes of a record's frame before its type byte: length (u32 LE) and CRC-32 (u32 LE).
pub const FRAME_HEADER_LEN: usize = 8;

/// The default for the largest record (type byte plus payload) the log writes and reads:
/// 16 MiB, far above a webhook body or an event of the default 1 MiB request limit.
pub const DEFAULT_MAX_RECORD: usize = 16 * 1024 * 1024;

/// Longest `webhook-id` stored (they are `msg_{prefix}_{n}`, a few dozen bytes).
pub const MAX_WEBHOOK_ID_LEN: usize = 255;

/// Type bytes, in the order of the module docs' table.
mod ty {
    pub const EVENT: u8 = 1;
    pub const WEBHOOK_ADDED: u8 = 2;
    pub const WEBHOOK_DISABLED: u8 = 3;
    pub const WEBHOOK_REMOVED: u8 = 4;
    pub const OUTBOX_ENQUEUED: u8 = 5;
    pub const OUTBOX_ATTEMPT: u8 = 6;
    pub const OUTBOX_DONE: u8 = 7;
    pub const NEXT_ENDPOINT: u8 = 8;
    pub const TOPIC_FIRST: u8 = 9;
    pub const TOPIC_RANGE: u8 = 10;
    pub const GROUP: u8 = 11;
    pub const TOPIC_DROPPED: u8 = 12;
    pub const JSON_EVENT: u8 = 13;
}

/// One entry of the log. See the module docs for why each kind exists and its layout.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Record {
    /// An event was published to a topic (type 1; type 13 for a JSON event).
    Event {
        /// The topic (a [`valid_topic`] name).
        topic: String,
        /// Its per-topic id (at least 1).
        id: u64,
        /// The event name ([`valid_event_name`]), `None` for the default.
        name: Option<String>,
        /// When it was published, Unix milliseconds.
        published_ms: u64,
        /// The payload.
        data: String,
        /// `data` is one JSON value ([`crate::proto::json::check()`]): written as type 13,
        /// which has the same layout as type 1. Type 1 records (and every log written
        /// before type 13 existed) are text events.
        json: bool,
    },
    /// A webhook was registered (type 2).
    WebhookAdded {
        /// The endpoint id (its decimal form is what clients see).
        endpoint: u64,
        /// The topic it follows.
        topic: String,
        /// The target URL, as given (1 to 2048 bytes).
        url: String,
        /// The raw signing key (24 to 64 bytes).
        secret: Vec<u8>,
        /// Whether the endpoint is disabled (a 410 Gone answer disables it for good).
        disabled: bool,
    },
    /// A webhook endpoint was disabled (type 3).
    WebhookDisabled {
        /// The endpoint id.
        endpoint: u64,
    },
    /// A webhook was removed; its undelivered messages failed with it (type 4).
    WebhookRemoved {
        /// The endpoint id.
        endpoint: u64,
    },
    /// One published event was queued for delivery to some endpoints (type 5): one
    /// message per endpoint, all with the same `webhook-id` and body, none attempted yet.
    OutboxEnqueued {
        /// The `webhook-id` shared by the messages.
        webhook_id: String,
        /// When the first attempt is due, Unix milliseconds.
        next_attempt_ms: u64,
        /// The request body, exactly as signed and sent.
        body: Vec<u8>,
        /// The endpoints, strictly ascending, at least one.
        endpoints: Vec<u64>,
    },
    /// An attempt of one message failed and it will be retried (type 6).
    OutboxAttempt {
        /// The message's `webhook-id`.
        webhook_id: String,
        /// Its endpoint.
        endpoint: u64,
        /// Attempts made so far.
        attempts: u32,
        /// When the next attempt is due, Unix milliseconds.
        next_attempt_ms: u64,
    },
    /// One message reached its final outcome, delivered or failed (type 7).
    OutboxDone {
        /// The message's `webhook-id`.
        webhook_id: String,
        /// Its endpoint.
        endpoint: u64,
    },
    /// Endpoint ids below this one were issued (type 8): written by compaction, so that an
    /// id removed since is never issued again after a restart.
    NextEndpoint {
        /// The lowest endpoint id never issued.
        next: u64,
    },
    /// A topic's log begins at `first_id` (type 9): written before the topic's first event,
    /// and by compaction before each topic's kept events, so that recovery knows whether
    /// the history was trimmed even after the events before the oldest kept one are gone.
    TopicFirst {
        /// The topic (a [`valid_topic`] name).
        topic: String,
        /// The first id of its log (at least 1).
        first_id: u64,
    },
    /// A topic's ids continue after `last_id` (type 10): written at a start after an
    /// unclean stop with fsync at an interval, which may have lost events the log never
    /// got, so that their ids are never given to other events. Compaction writes one for
    /// every topic whose last id is above its newest kept event.
    TopicRange {
        /// The topic (a [`valid_topic`] name).
        topic: String,
        /// The last id handed out, or that may have been (at least 1).
        last_id: u64,
    },
    /// Records that take effect together or not at all (type 11): one publish (its
    /// topic's first id, its event, its outbox entry), so that a write cut short by a crash
    /// never leaves an event without the webhook messages it was queued with. At least two
    /// records, none of them a group.
    Group {
        /// The records, in the order they apply.
        records: Vec<Record>,
    },
    /// A topic expired and was dropped with its history (type 12): recovery forgets it,
    /// so compaction writes nothing of it, and an event for it after this record starts a
    /// new log (with its own [`Record::TopicFirst`]).
    TopicDropped {
        /// The topic (a [`valid_topic`] name).
        topic: String,
    },
}

/// Why a record cannot be encoded, or why a checksum-valid record's bytes are refused.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RecordError {
    /// The type byte is not one of the known record types.
    UnknownType(u8),
    /// The payload ends inside a field.
    Truncated,
    /// Bytes follow the payload's last field.
    TrailingBytes,
    /// A string field is not UTF-8.
    BadUtf8,
    /// A topic name is not [`valid_topic`].
    BadTopic,
    /// An event name is present but not [`valid_event_name`].
    BadEventName,
    /// An event id is 0.
    ZeroEventId,
    /// A topic's first id is 0.
    ZeroFirstId,
    /// A URL is empty or longer than [`MAX_URL_LEN`].
    BadUrl,
    /// A secret is not 24 to 64 bytes (carries its length).
    BadSecretLen(usize),
    /// A flag byte is neither 0 nor 1 (carries it).
    BadFlag(u8),
    /// A `webhook-id` is empty or longer than [`MAX_WEBHOOK_ID_LEN`].
    BadWebhookId,
    /// An outbox entry names no endpoint.
    NoEndpoints,
    /// An outbox entry's endpoints are not strictly ascending.
    EndpointsUnordered,
    /// A field is longer than its length prefix can say.
    FieldTooLong,
    /// The record (type byte plus payload) is longer than the maximum (carries its length).
    TooLarge(usize),
    /// A group holds fewer than two records, or a group.
    BadGroup,
    /// A JSON event's data is not one JSON value.
    BadJson,
}

impl fmt::Display for RecordError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            RecordError::UnknownType(t) => write!(f, "unknown record type {t}"),
            RecordError::Truncated => f.write_str("payload ends inside a field"),
            RecordError::TrailingBytes => f.write_str("bytes after the last field"),
            RecordError::BadUtf8 => f.write_str("a text field is not UTF-8"),
            RecordError::BadTopic => f.write_str("bad topic name"),
            RecordError::BadEventName => f.write_str("bad event name"),
            RecordError::ZeroEventId => f.write_str("event id 0"),
            RecordError::ZeroFirstId => f.write_str("topic first id 0"),
            RecordError::BadUrl => write!(f, "URL empty or longer than {MAX_URL_LEN} bytes"),
            RecordError::BadSecretLen(n) => write!(f, "secret of {n} bytes"),
            RecordError::BadFlag(b) => write!(f, "flag byte {b} (not 0 or 1)"),
            RecordError::BadWebhookId => f.write_str("webhook-id empty or too long"),
            RecordError::NoEndpoints => f.write_str("outbox entry without endpoints"),
            RecordError::EndpointsUnordered => f.write_str("endpoints not strictly ascending"),
            RecordError::FieldTooLong => f.write_str("field longer than its length prefix"),
            RecordError::TooLarge(n) => write!(f, "record of {n} bytes is over the maximum"),
            RecordError::BadGroup => f.write_str("a group of fewer than two records, or nested"),
            RecordError::BadJson => f.write_str("JSON event whose data is not JSON"),
        }
    }
}

impl std::error::Error for RecordError {}

impl Record {
    /// The record's type byte.
    pub fn type_byte(&self) -> u8 {
        match self {
            Record::Event { json: false, .. } => ty::EVENT,
            Record::Event { json: true, .. } => ty::JSON_EVENT,
            Record::WebhookAdded { .. } => ty::WEBHOOK_ADDED,
            Record::WebhookDisabled { .. } => ty::WEBHOOK_DISABLED,
            Record::WebhookRemoved { .. } => ty::WEBHOOK_REMOVED,
            Record::OutboxEnqueued { .. } => ty::OUTBOX_ENQUEUED,
            Record::OutboxAttempt { .. } => ty::OUTBOX_ATTEMPT,
            Record::OutboxDone { .. } => ty::OUTBOX_DONE,
            Record::NextEndpoint { .. } => ty::NEXT_ENDPOINT,
            Record::TopicFirst { .. } => ty::TOPIC_FIRST,
            Record::TopicRange { .. } => ty::TOPIC_RANGE,
            Record::Group { .. } => ty::GROUP,
            Record::TopicDropped { .. } => ty::TOPIC_DROPPED,
        }
    }

    /// Checks the field rules of the module docs (the checks decoding applies).
    pub fn validate(&self) -> Result<(), RecordError> {
        match self {
            Record::Event {
                topic,
                id,
                name,
                data,
                json,
                ..
            } => {
                check_topic(topic)?;
                if *id == 0 {
                    return Err(RecordError::ZeroEventId);
                }
                // Any depth: the publisher's limit was applied when it was published.
                let any_depth = crate::proto::json::Limits {
                    max_depth: data.len(),
                    max_bytes: usize::MAX,
                };
                if *json && crate::proto::json::check_with(data.as_bytes(), any_depth).is_err() {
                    return Err(RecordError::BadJson);
                }
                match name {
                    Some(n) if !valid_event_name(n) => Err(RecordError::BadEventName),
                    _ => Ok(()),
                }
            }
            Record::WebhookAdded {
                topic, url, secret, ..
            } => {
                check_topic(topic)?;
                if url.is_empty() || url.len() > MAX_URL_LEN {
                    return Err(RecordError::BadUrl);
                }
                if !(MIN_SECRET_LEN..=MAX_SECRET_LEN).contains(&secret.len()) {
                    return Err(RecordError::BadSecretLen(secret.len()));
                }
                Ok(())
            }
            Record::WebhookDisabled { .. }
            | Record::WebhookRemoved { .. }
            | Record::NextEndpoint { .. } => Ok(()),
            Record::OutboxEnqueued {
                webhook_id,
                endpoints,
                ..
            } => {
                check_webhook_id(webhook_id)?;
                if endpoints.is_empty() {
                    return Err(RecordError::NoEndpoints);
                }
                if endpoints.windows(2).any(|w| w[0] >= w[1]) {
                    return Err(RecordError::EndpointsUnordered);
                }
                Ok(())
            }
            Record::OutboxAttempt { webhook_id, .. } | Record::OutboxDone { webhook_id, .. } => {
                check_webhook_id(webhook_id)
            }
            Record::TopicFirst { topic, first_id } => {
                check_topic(topic)?;
                if *first_id == 0 {
                    return Err(RecordError::ZeroFirstId);
                }
                Ok(())
            }
            Record::TopicRange { topic, last_id } => {
                check_topic(topic)?;
                if *last_id == 0 {
                    return Err(RecordError::ZeroFirstId);
                }
                Ok(())
            }
            Record::TopicDropped { topic } => check_topic(topic),
            Record::Group { records } => {
                if records.len() < 2 {
                    return Err(RecordError::BadGroup);
                }
                for r in records {
                    if let Record::Group { .. } = r {
                        return Err(RecordError::BadGroup);
                    }
                    r.validate()?;
                }
                Ok(())
            }
        }
    }

    /// Appends the framed record (length, CRC-32, type, payload) to `out` and returns the
    /// bytes appended. On error `out` is left as it was: the record is invalid (see
    /// [`Record::validate`]) or its type byte and payload exceed `max_record` bytes.
    pub fn encode(&self, out: &mut Vec<u8>, max_record: usize) -> Result<usize, RecordError> {
        self.validate()?;
        let start = out.len();
        out.extend_from_slice(&[0; FRAME_HEADER_LEN]);
        out.push(self.type_byte());
        if let Err(e) = self.encode_payload(out) {
            out.truncate(start);
            return Err(e);
        }
        let body = &out[start + FRAME_HEADER_LEN..];
        let len = body.len();
        let Some(len32) = u32::try_from(len).ok().filter(|_| len <= max_record) else {
            out.truncate(start);
            return Err(RecordError::TooLarge(len));
        };
        let crc = crc32fast::hash(body);
        out[start..start + 4].copy_from_slice(&len32.to_le_bytes());
        out[start + 4..start + 8].copy_from_slice(&crc.to_le_bytes());
        Ok(out.len() - start)
    }

    fn encode_payload(&self, out: &mut Vec<u8>) -> Result<(), RecordError> {
        match self {
            Record::Event {
                topic,
                id,
                name,
                published_ms,
                data,
                json: _,
            } => {
                put_str16(out, topic)?;
                out.extend_from_slice(&id.to_le_bytes());
                put_str16(out, name.as_deref().unwrap_or(""))?;
                out.extend_from_slice(&published_ms.to_le_bytes());
                put_bytes32(out, data.as_bytes())
            }
            Record::WebhookAdded {
                endpoint,
                topic,
                url,
                secret,
                disabled,
            } => {
                out.extend_from_slice(&endpoint.to_le_bytes());
                put_str16(out, topic)?;
                put_str16(out, url)?;
                // validate() bounds the secret to 64 bytes.
                out.push(secret.len() as u8);
                out.extend_from_slice(secret);
                out.push(u8::from(*disabled));
                Ok(())
            }
            Record::WebhookDisabled { endpoint }
            | Record::WebhookRemoved { endpoint }
            | Record::NextEndpoint { next: endpoint } => {
                out.extend_from_slice(&endpoint.to_le_bytes());
                Ok(())
            }
            Record::OutboxEnqueued {
                webhook_id,
                next_attempt_ms,
                body,
                endpoints,
            } => {
                put_str16(out, webhook_id)?;
                out.extend_from_slice(&next_attempt_ms.to_le_bytes());
                put_bytes32(out, body)?;
                let n = u32::try_from(endpoints.len()).map_err(|_| RecordError::FieldTooLong)?;
                out.extend_from_slice(&n.to_le_bytes());
                for e in endpoints {
                    out.extend_from_slice(&e.to_le_bytes());
                }
                Ok(())
            }
            Record::OutboxAttempt {
                webhook_id,
                endpoint,
                attempts,
                next_attempt_ms,
            } => {
                put_str16(out, webhook_id)?;
                out.extend_from_slice(&endpoint.to_le_bytes());
                out.extend_from_slice(&attempts.to_le_bytes());
                out.extend_from_slice(&next_attempt_ms.to_le_bytes());
                Ok(())
            }
            Record::OutboxDone {
                webhook_id,
                endpoint,
            } => {
                put_str16(out, webhook_id)?;
                out.extend_from_slice(&endpoint.to_le_bytes());
                Ok(())
            }
            Record::TopicFirst { topic, first_id } => {
                put_str16(out, topic)?;
                out.extend_from_slice(&first_id.to_le_bytes());
                Ok(())
            }
            Record::TopicRange { topic, last_id } => {
                put_str16(out, topic)?;
                out.extend_from_slice(&last_id.to_le_bytes());
                Ok(())
            }
            Record::TopicDropped { topic } => put_str16(out, topic),
            Record::Group { records } => {
                for r in records {
                    out.push(r.type_byte());
                    let at = out.len();
                    out.extend_from_slice(&[0; 4]);
                    r.encode_payload(out)?;
                    let len =
                        u32::try_from(out.len() - at - 4).map_err(|_| RecordError::FieldTooLong)?;
                    out[at..at + 4].copy_from_slice(&len.to_le_bytes());
                }
                Ok(())
            }
        }
    }

    /// Decodes a record from its type byte and payload (the bytes the checksum covers,
    /// already checked). Allocates at most the payload's length.
    pub fn decode(ty: u8, payload: &[u8]) -> Result<Record, RecordError> {
        let mut r = Reader(payload);
        let record = match ty {
            ty::EVENT | ty::JSON_EVENT => {
                let topic = r.str16()?;
                let id = r.u64()?;
                let name = r.str16()?;
                let published_ms = r.u64()?;
                let data = r.str32()?;
                Record::Event {
                    topic,
                    id,
                    name: Some(name).filter(|n| !n.is_empty()),
                    published_ms,
                    data,
                    json: ty == ty::JSON_EVENT,
                }
            }
            ty::WEBHOOK_ADDED => {
                let endpoint = r.u64()?;
                let topic = r.str16()?;
                let url = r.str16()?;
                let n = usize::from(r.u8()?);
                let secret = r.take(n)?.to_vec();
                let disabled = match r.u8()? {
                    0 => false,
                    1 => true,
                    b => return Err(RecordError::BadFlag(b)),
                };
                Record::WebhookAdded {
                    endpoint,
                    topic,
                    url,
                    secret,
                    disabled,
                }
            }
            ty::WEBHOOK_DISABLED => Record::WebhookDisabled { endpoint: r.u64()? },
            ty::WEBHOOK_REMOVED => Record::WebhookRemoved { endpoint: r.u64()? },
            ty::OUTBOX_ENQUEUED => {
                let webhook_id = r.str16()?;
                let next_attempt_ms = r.u64()?;
                let n = r.u32()? as usize;
                let body = r.take(n)?.to_vec();
                let count = r.u32()? as usize;
                // Limits before allocation: the count must match the bytes that are there.
                if r.0.len() / 8 < count {
                    return Err(RecordError::Truncated);
                }
                let mut endpoints = Vec::with_capacity(count);
                for _ in 0..count {
                    endpoints.push(r.u64()?);
                }
                Record::OutboxEnqueued {
                    webhook_id,
                    next_attempt_ms,
                    body,
                    endpoints,
                }
            }
            ty::OUTBOX_ATTEMPT => Record::OutboxAttempt {
                webhook_id: r.str16()?,
                endpoint: r.u64()?,
                attempts: r.u32()?,
                next_attempt_ms: r.u64()?,
            },
            ty::OUTBOX_DONE => Record::OutboxDone {
                webhook_id: r.str16()?,
                endpoint: r.u64()?,
            },
            ty::NEXT_ENDPOINT => Record::NextEndpoint { next: r.u64()? },
            ty::TOPIC_FIRST => Record::TopicFirst {
                topic: r.str16()?,
                first_id: r.u64()?,
            },
            ty::TOPIC_RANGE => Record::TopicRange {
                topic: r.str16()?,
                last_id: r.u64()?,
            },
            ty::TOPIC_DROPPED => Record::TopicDropped { topic: r.str16()? },
            ty::GROUP => {
                let mut records = Vec::new();
                while !r.0.is_empty() {
                    let inner = r.u8()?;
                    if inner == ty::GROUP {
                        return Err(RecordError::BadGroup);
                    }
                    let n = r.u32()? as usize;
                    records.push(Record::decode(inner, r.take(n)?)?);
                }
                Record::Group { records }
            }
            other => return Err(RecordError::UnknownType(other)),
        };
        if !r.0.is_empty() {
            return Err(RecordError::TrailingBytes);
        }
        record.validate()?;
        Ok(record)
    }
}

fn check_topic(topic: &str) -> Result<(), RecordError> {
    if valid_topic(topic) {
        Ok(())
    } else {
        Err(RecordError::BadTopic)
    }
}

fn check_webhook_id(id: &str) -> Result<(), RecordError> {
    if (1..=MAX_WEBHOOK_ID_LEN).contains(&id.len()) {
        Ok(())
    } else {
        Err(RecordError::BadWebhookId)
    }
}
