//! The durable log, sans-IO: the on-disk format of topic history and the webhook outbox,
//! recovery of a segment from its bytes, the state a log rebuilds, and compaction.
//!
//! Nothing here touches a file. [`Record::encode`] appends a framed record to a caller's
//! `Vec<u8>`; [`scan`] reads a whole segment given as a byte slice and says how it ends;
//! [`Recovered`] applies records in order and writes the live ones back out
//! ([`Recovered::compact`]). Opening, appending, `fsync`, renaming and locking belong to the
//! driver.
//!
//! # What survives a restart, and the records that carry it
//!
//! | type | record | why it exists |
//! |---|---|---|
//! | 1 | [`Record::Event`] | every publish: rebuilds each topic's kept history and its last id (the next id is `last_id + 1`; the newest event is always kept, so the last id is never lost) |
//! | 2 | [`Record::WebhookAdded`] | a registration: id, topic, URL, secret, disabled flag |
//! | 3 | [`Record::WebhookDisabled`] | a 410 Gone disables an endpoint for good (there is no re-enable) |
//! | 4 | [`Record::WebhookRemoved`] | an unregistration; its undelivered messages fail with it, so they leave the outbox too |
//! | 5 | [`Record::OutboxEnqueued`] | one publish queued for its webhook subscribers: the `webhook-id` and body they share, the endpoints, the first attempt's due time |
//! | 6 | [`Record::OutboxAttempt`] | a failed attempt to be retried: attempts so far, when the next is due |
//! | 7 | [`Record::OutboxDone`] | a message reached its final outcome (delivered, or failed for good): it leaves the outbox |
//! | 8 | [`Record::NextEndpoint`] | written by compaction: the lowest endpoint id never issued, so that the id of a removed endpoint (whose records compaction drops) is never given to a new one; clients hold these ids to unregister |
//! | 9 | [`Record::TopicFirst`] | the first id of a topic's log, for the gap rule of [`Topics::restore`](crate::proto::topic::Topics::restore) (a read from `since = 0` reports a gap only when the oldest kept id is above it): compaction drops the events before the oldest kept one, so without this record a trimmed history would look complete after a compaction |
//! | 10 | [`Record::TopicRange`] | a topic's ids continue above `last_id`: written at a start after an unclean stop with fsync at an interval (the log may lack events that were answered), so the ids that may have been handed out are never reused, and clients resuming from them get a gap; compaction writes it for a topic whose last id is above its newest kept event |
//! | 11 | [`Record::Group`] | records that take effect together or not at all: the writer puts each publish (its topic's first id, its event, its outbox entry) in one group, so a write a crash cut short never leaves an event served without the webhook messages it was queued with; a batch publish is one group too (the first id, then each event followed by its outbox entry), so a crash keeps all of a batch or none of it |
//! | 12 | [`Record::TopicDropped`] | a topic expired ([`Topics::expire`](crate::proto::topic::Topics::expire): idle, no subscriber, no webhook) or was removed ([`Ctx::remove_topic`](crate::Ctx::remove_topic), after a type 4 record per webhook endpoint of it): recovery forgets it, so compaction drops its history, and its next event starts a new log with its own first id (type 9); without it a restart would bring the topic back and take the slot it freed |
//! | 13 | [`Record::Event`] with `json` | a publish of a JSON event ([`TopicEvent::json`](crate::proto::topic::TopicEvent::json)): the layout of type 1, a type of its own so that logs written before it (type 1 only) read as they did, as text events, and a restart keeps JSON as JSON |
//!
//! **The writer's contract for type 9.** When a topic's log begins (the first event of a
//! topic the log does not hold yet), the writer appends `TopicFirst { topic, first_id }`
//! with that event's id, before the event and in the same group (type 11), so the two
//! are durable together; a topic restored after a restart is already in the log and gets none.
//! Compaction writes one for every topic, right before its kept events. [`Recovered`]
//! keeps the lowest first id it sees per topic (see [`TopicHistory::first_id`]); a topic
//! with no such record (a log written without them) falls back to the lowest event id
//! applied, which is exact as long as no compaction dropped its events.
//!
//! Why a record of its own rather than a field of [`Record::Event`]: the first id is
//! written once per topic, not repeated in every event, and compaction can state it for a
//! trimmed topic without inventing an event (an event-less `TopicFirst`, a crash between
//! it and its event, restores as a topic with `last_id = first_id - 1`: nothing published).
//!
//! **The writer's contract for type 12.** For each topic that
//! [`Topics::expire`](crate::proto::topic::Topics::expire) drops, the writer appends
//! `TopicDropped { topic }` at once (a topic with a publish still on its way to the log
//! counts as in use, so it is never dropped under it). The topic's next event is then the
//! first of a new log and gets its `TopicFirst` as any first event does. The drop needs
//! no fsync of its own: a drop lost in a crash brings the topic back at the restart, to
//! expire again later.
//! A removal ([`Ctx::remove_topic`](crate::Ctx::remove_topic)) writes the same record,
//! followed by an fsync barrier in `always` mode (the request that removed is answered
//! once it is durable); publishes to the topic already written before it are dropped
//! with it at recovery, as they never enter the history in memory either.
//!
//! Some things are deliberately not recorded:
//!
//! * **Evictions.** The kept history is a function of the records in order (events and
//!   topic drops) and the [`HistoryLimits`](crate::proto::topic::HistoryLimits), per topic
//!   and in total (the rules of
//!   [`Topics::publish`](crate::proto::topic::Topics::publish)), so recovery evicts again
//!   instead of reading trim records, and holds no more than the total budget while it
//!   replays. Starting with other limits keeps what the new limits allow of the events
//!   still on disk.
//! * **The outbox body as a reference to an event.** A message outlives its event in the
//!   history (retries run for hours, history is bounded), so the body itself is stored,
//!   once per publish and shared by its endpoints. The topic and event id are inside it;
//!   the topic of an outcome comes from the registration.
//! * **The `webhook-id` counter.** Ids are `msg_{prefix}_{n}` with a random per-process
//!   prefix, so a restarted process never reuses one.
//! * **Attempts in flight.** An attempt is recorded after its result. A crash during an
//!   attempt repeats it after the restart: delivery is at least once, and receivers
//!   deduplicate by `webhook-id`.
//!
//! # On-disk format
//!
//! A log is a sequence of segment files, replayed in order. Each segment is a header and
//! a run of records; every integer is little endian.
//!
//! ```text
//! segment header (8 bytes)
//! +----+----+----+----+----+----+----+----+
//! | 'P'| 'W'| 'S'| 'T'| version | reserved|    version = 1 (u16), reserved = 0
//! +----+----+----+----+----+----+----+----+
//!
//! record frame (8 + len bytes)
//! +-------------------+-------------------+------+------------------------+
//! | len: u32          | crc: u32          | type | payload (len - 1)      |
//! +-------------------+-------------------+------+------------------------+
//!                                         \______ CRC-32 (IEEE) covers ___/
//! 1 <= len <= max_record (default 16 MiB)
//! ```
//!
//! Payloads, field by field (`str16`: a u16 length then that many UTF-8 bytes; `bytes32`:
//! a u32 length then the bytes; `bytes8`: a u8 length then the bytes):
//!
//! ```text
//! 1 Event           topic: str16 | id: u64 | name: str16 (0 bytes: none) | published_ms: u64 | data: bytes32 (UTF-8)
//! 2 WebhookAdded    endpoint: u64 | topic: str16 | url: str16 | secret: bytes8 | disabled: u8 (0 or 1)
//! 3 WebhookDisabled endpoint: u64
//! 4 WebhookRemoved  endpoint: u64
//! 5 OutboxEnqueued  webhook_id: str16 | next_attempt_ms: u64 | body: bytes32 | count: u32 | endpoint: u64 x count
//! 6 OutboxAttempt   webhook_id: str16 | endpoint: u64 | attempts: u32 | next_attempt_ms: u64
//! 7 OutboxDone      webhook_id: str16 | endpoint: u64
//! 8 NextEndpoint    next: u64
//! 9 TopicFirst      topic: str16 | first_id: u64
//! 10 TopicRange     topic: str16 | last_id: u64
//! 11 Group          (type: u8 | len: u32 | payload of that type) x 2 or more, no group inside
//! 12 TopicDropped   topic: str16
//! 13 JsonEvent      the layout of 1 Event; data must be one JSON value (RFC 8259)
//! ```
//!
//! Decoding is strict, so that every record has exactly one encoding: topics must be
//! valid topic names, event names valid event names (an empty name field means none), event
//! ids, first ids and range ids at least 1, URLs 1 to 2048 bytes, secrets 24 to 64 bytes, flags 0 or
//! 1, `webhook-id`s 1 to 255 bytes, an outbox entry's endpoints at least one and strictly ascending, and no
//! byte may follow the last field. Every length is checked against the bytes actually
//! there before anything is allocated, and a frame's length against `max_record` before
//! it is believed at all.
//!
//! For example, `OutboxDone { webhook_id: "m", endpoint: 2 }` is 20 bytes:
//!
//! ```text
//! 0c 00 00 00  ae 91 ca 21  07    01 00 'm'  02 00 00 00 00 00 00 00
//! len = 12     crc           type  str16      endpoint
//! ```
//!
//! # Recovery
//!
//! [`scan`] reads records until the first byte that does not start a valid one, and the
//! [`Tail`] says what is there:
//!
//! * [`Tail::Clean`]: nothing; the segment ends after a record.
//! * [`Tail::Torn`]: an unfinished write. The bytes left are shorter than a frame header,
//!   or shorter than the length a (plausible) frame header announces, or all zero (space a
//!   crash left allocated but unwritten). A crash while appending leaves exactly this in
//!   the newest segment: truncate it to [`Scan::valid_len`] and append from there.
//! * [`Tail::Corrupt`]: bytes no writer produces: a bad header, a length of 0 or over the
//!   maximum, a checksum mismatch, or a checksum-valid record that does not decode. Keep
//!   the records before it, move the file aside, and start a new segment.
//!
//! A torn tail in a segment other than the newest is damage too (the writer moved on
//! after it): treat it as corrupt. A record whose checksum failed is never returned; a
//! damaged length field can hide the records after it, never invent one (a CRC-32 catches
//! every error burst of up to 32 bits in what it covers).
//!
//! The driver feeds the records of every segment, oldest first, to
//! [`Recovered::apply`]. A record that contradicts the state so far (an event id that does
//! not grow, an attempt for a message not queued, ...) is skipped with a [`Skip`] to log.
//!
//! # Compaction
//!
//! A log only grows; [`Recovered::compact`] writes a fresh segment holding just the live
//! records ([`Recovered::live_records`]): per topic its first id, its kept events and
//! (when its last id is above them) its range,
//! the next endpoint id, the registrations (with their disabled flag), and per outbox
//! entry its enqueued record, narrowed to the endpoints still pending, followed by an
//! attempt record for every message already attempted. Replaying it gives the same state
//! (first ids included).
//!
//! The driver keeps no second copy of the state for this: when its log files hold more
//! than twice the size of the last snapshot (and at least 8 MiB), it seals the current
//! segment, and a compaction thread reads the sealed files back, rebuilds their
//! [`Recovered`] and writes it as a snapshot file that replaces them (see the README's
//! "Data directory" section for the file names and the crash-safe order of the steps).
//! Appends go on to the new segment meanwhile.

mod record;
mod scan;
mod state;
mod wire;

#[cfg(test)]
mod tests;

pub use record::{Record, RecordError, DEFAULT_MAX_RECORD, FRAME_HEADER_LEN, MAX_WEBHOOK_ID_LEN};
pub use scan::{
    scan, scan_each, write_header, Corruption, Scan, Tail, FORMAT_VERSION, SEGMENT_HEADER,
    SEGMENT_HEADER_LEN, SEGMENT_MAGIC,
};
pub use state::{Delivery, OutboxEntry, Recovered, Skip, StoredEvent, TopicHistory, Webhook};
