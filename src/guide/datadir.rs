//! The data directory: segment files, record framing, CRC-32, snapshots and the lock.
//!
//! With a data directory ([`Config::data_dir`](crate::Config::data_dir)) every publish, every
//! webhook registration and every step of webhook delivery is written to an append-only log
//! before (or, with `Fsync::Interval`, while) it takes effect, so a restart finds the
//! topics, their next ids and the webhook outbox where they were. The format is pushwire's
//! own; this page walks through it byte by byte. The sans-IO code is
//! [`crate::proto::store`] (its module docs have every record's layout); the file handling
//! is the driver's.
//!
//! # The files
//!
//! | name | what it is |
//! |---|---|
//! | `DIR/lock` | held with an exclusive lock for the life of the process: a second process using the same directory fails at start ("in use by another process") |
//! | `DIR/0000000001.seg` | a log segment: a header, then records, replayed in number order; a new one is begun at every start |
//! | `DIR/0000000007.snap` | a snapshot written by compaction: the live state, replacing every segment numbered 7 or less |
//! | `DIR/NAME.damaged` | a segment found damaged at start, moved aside |
//! | `DIR/unsynced` | present while a process runs with fsync at an interval: found at start, it means the log may lack events that were answered, so every topic goes on in a new id range |
//!
//! The lock is an advisory lock on a file of its own (taken with `File::try_lock`, an
//! `flock` on Linux), so it is released by the kernel whatever way the process ends,
//! `kill -9` included: a stale lock never blocks a restart.
//!
//! # Segment header
//!
//! Every segment and snapshot starts with 8 bytes; all integers in the format are little
//! endian. [`write_header`](crate::proto::store::write_header):
//!
//! ```
//! use pushwire::proto::store::{write_header, FORMAT_VERSION, SEGMENT_HEADER};
//!
//! let mut segment = Vec::new();
//! write_header(&mut segment);
//! assert_eq!(segment, [b'P', b'W', b'S', b'T', 0x01, 0x00, 0x00, 0x00]);
//! assert_eq!((FORMAT_VERSION, SEGMENT_HEADER.len()), (1, 8));
//! ```
//!
//! | offset | bytes | field | meaning |
//! |---|---|---|---|
//! | 0 | `50 57 53 54` | magic | `PWST`: a pushwire store file |
//! | 4 | `01 00` | version (u16) | format version 1 |
//! | 6 | `00 00` | reserved (u16) | must be zero |
//!
//! # Record framing
//!
//! A record is a frame: its length, a checksum, a type byte and the payload. The length
//! counts the type byte and the payload; the checksum is the CRC-32 (the IEEE polynomial
//! of zlib, PNG and Ethernet) of those same bytes. [`Record::encode`](crate::proto::store::Record::encode)
//! writes one; here an event published to `news`:
//!
//! ```
//! use pushwire::proto::store::{Record, DEFAULT_MAX_RECORD};
//!
//! let event = Record::Event {
//!     topic: "news".into(),
//!     id: 7,
//!     name: None,
//!     published_ms: 1_700_000_000_000, // 2023-11-14 22:13:20 UTC
//!     data: "hi".into(),
//!     json: false,
//! };
//! let mut out = Vec::new();
//! assert_eq!(event.encode(&mut out, DEFAULT_MAX_RECORD), Ok(39));
//! assert_eq!(out, [
//!     0x1f, 0x00, 0x00, 0x00,                         // len = 31
//!     0x8f, 0x19, 0xcd, 0xd1,                         // crc
//!     0x01,                                           // type 1: Event
//!     0x04, 0x00, b'n', b'e', b'w', b's',             // topic: str16
//!     0x07, 0, 0, 0, 0, 0, 0, 0,                      // id: u64
//!     0x00, 0x00,                                     // name: str16, empty = none
//!     0x00, 0x68, 0xe5, 0xcf, 0x8b, 0x01, 0x00, 0x00, // published_ms: u64
//!     0x02, 0x00, 0x00, 0x00, b'h', b'i',             // data: bytes32
//! ]);
//!
//! // The checksum covers the type byte and the payload, as computed by crc32fast.
//! assert_eq!(u32::from_le_bytes(out[4..8].try_into().unwrap()), crc32fast::hash(&out[8..]));
//! // And the record decodes back from its type and payload.
//! assert_eq!(Record::decode(out[8], &out[9..]), Ok(event));
//! ```
//!
//! | offset | bytes | field | meaning |
//! |---|---|---|---|
//! | 0 | `1f 00 00 00` | len (u32) | 31 bytes follow the checksum: type and payload |
//! | 4 | `8f 19 cd d1` | crc (u32) | CRC-32 of bytes 8-38 |
//! | 8 | `01` | type | 1: an event (13 is the same layout for a JSON event) |
//! | 9 | `04 00 6e 65 77 73` | topic (str16) | a u16 length, then `news` |
//! | 15 | `07 00 00 00 00 00 00 00` | id (u64) | event id 7 |
//! | 23 | `00 00` | name (str16) | empty: the default name, `message` in SSE |
//! | 25 | `00 68 e5 cf 8b 01 00 00` | published_ms (u64) | 1,700,000,000,000 ms after the Unix epoch |
//! | 33 | `02 00 00 00 68 69` | data (bytes32) | a u32 length, then `hi` (UTF-8) |
//!
//! Decoding is strict, so every record has exactly one encoding: names are checked as at
//! publish time, ids are at least 1, and no byte may follow the last field. The other
//! types: 2-4 a webhook added, disabled, removed; 5-7 the outbox (a message queued, an
//! attempt that failed and when the next is due, a final outcome); 8 the next endpoint
//! id; 9 a topic's first id (for the gap rule, [`super::sse`]); 10 a topic's new id range;
//! 11 a group of records that take effect together or not at all (one publish: the event
//! and its webhook messages); 12 a topic dropped; 13 a JSON event.
//!
//! # Reading a segment back, and what a crash leaves
//!
//! At start each file is read with [`scan`](crate::proto::store::scan), which returns the
//! valid records and says how the file ends ([`Tail`](crate::proto::store::Tail)). A write
//! cut short by a crash leaves a *torn* tail: fewer bytes than the frame announces (or
//! zeros). That is expected at the end of the newest segment: it is cut off, and
//! appending resumes there. Bytes no writer produces (a bad checksum, a length of zero or
//! over the maximum) are *corrupt*: the records before them are kept, and the file is
//! moved aside. A record whose checksum fails is never served.
//!
//! ```
//! use pushwire::proto::store::{scan, write_header, Corruption, Record, Tail, DEFAULT_MAX_RECORD};
//!
//! let mut segment = Vec::new();
//! write_header(&mut segment);
//! let first = Record::TopicFirst { topic: "news".into(), first_id: 7 };
//! first.encode(&mut segment, DEFAULT_MAX_RECORD).unwrap();
//! let whole = segment.len();
//! Record::NextEndpoint { next: 3 }.encode(&mut segment, DEFAULT_MAX_RECORD).unwrap();
//!
//! let s = scan(&segment, DEFAULT_MAX_RECORD);
//! assert_eq!((s.records.len(), s.tail), (2, Tail::Clean));
//! assert_eq!(s.records[0], (8, first.clone())); // each record with its frame's offset
//!
//! // A crash in the middle of the second write: it is torn, the first one stays.
//! let s = scan(&segment[..segment.len() - 3], DEFAULT_MAX_RECORD);
//! assert_eq!(s.records, [(8, first.clone())]);
//! assert_eq!(s.tail, Tail::Torn { at: whole, dropped_bytes: 14 });
//! assert_eq!(s.valid_len, whole); // truncate here and append
//!
//! // A flipped bit in the second record's payload: the checksum catches it.
//! let mut damaged = segment.clone();
//! *damaged.last_mut().unwrap() ^= 0x01;
//! let s = scan(&damaged, DEFAULT_MAX_RECORD);
//! assert_eq!(s.records, [(8, first)]);
//! assert!(matches!(s.tail, Tail::Corrupt { at, reason: Corruption::Checksum { .. } } if at == whole));
//! ```
//!
//! # Replaying, and snapshots
//!
//! The records of every file, oldest first, are applied to a
//! [`Recovered`](crate::proto::store::Recovered) state: each topic's kept events (evicted
//! again by the same history limits as in memory, so evictions need no records of their
//! own), its first and last ids, the registrations and the outbox. A log only grows, so
//! once it holds more than twice the live data (and at least 8 MiB) a compaction thread
//! writes that state as a snapshot,
//! [`Recovered::compact`](crate::proto::store::Recovered::compact): a header and only the
//! live records. Replaying the snapshot gives the same state back:
//!
//! ```
//! use pushwire::proto::store::{scan, Record, Recovered, DEFAULT_MAX_RECORD};
//! use pushwire::proto::topic::HistoryLimits;
//!
//! let limits = HistoryLimits { max_events: 2, ..HistoryLimits::default() };
//! let mut state = Recovered::new(limits);
//! state.apply(Record::TopicFirst { topic: "t".into(), first_id: 100 }).unwrap();
//! for (id, data) in [(100, "a"), (101, "b"), (102, "c")] {
//!     let event = Record::Event { topic: "t".into(), id, name: None, published_ms: 0, data: data.into(), json: false };
//!     state.apply(event).unwrap();
//! }
//!
//! let mut snapshot = Vec::new();
//! state.compact(&mut snapshot, DEFAULT_MAX_RECORD).unwrap();
//! let records: Vec<Record> = scan(&snapshot, DEFAULT_MAX_RECORD).records.into_iter().map(|(_, r)| r).collect();
//! let ids: Vec<u64> = records.iter().filter_map(|r| match r { Record::Event { id, .. } => Some(*id), _ => None }).collect();
//! assert_eq!(ids, [101, 102]); // event 100 was evicted: it is not written again
//! assert_eq!(records[0], Record::TopicFirst { topic: "t".into(), first_id: 100 }); // so a read from 0 still sees the gap
//!
//! let mut again = Recovered::new(limits);
//! for r in records { again.apply(r).unwrap(); }
//! assert_eq!(again.topics(), state.topics());
//! ```
//!
//! A snapshot is made crash-safe by the order of its steps: it is written to
//! `N.snap.tmp`, fsynced, renamed to `N.snap`, the directory is fsynced, and only then
//! are the files it replaces deleted. A crash at any point leaves either the old files or
//! the new snapshot, and the next start removes whatever a newer snapshot covers (the
//! README's "Data directory" section has the whole procedure and the fsync modes).
