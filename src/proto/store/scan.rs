//! Segment headers, and recovery of a segment's records from its bytes.

use std::fmt;

use super::record::{Record, RecordError, FRAME_HEADER_LEN};

/// The first four bytes of every segment.
pub const SEGMENT_MAGIC: [u8; 4] = *b"PWST";

/// The format version this code writes and reads.
pub const FORMAT_VERSION: u16 = 1;

/// Bytes of a segment header: magic, version (u16 LE), reserved (u16, zero).
pub const SEGMENT_HEADER_LEN: usize = 8;

/// The header that starts every segment of this format version.
pub const SEGMENT_HEADER: [u8; SEGMENT_HEADER_LEN] = {
    let v = FORMAT_VERSION.to_le_bytes();
    let m = SEGMENT_MAGIC;
    [m[0], m[1], m[2], m[3], v[0], v[1], 0, 0]
};

/// Appends a segment header to `out` (a new segment starts with it).
pub fn write_header(out: &mut Vec<u8>) {
    out.extend_from_slice(&SEGMENT_HEADER);
}

/// What [`scan`] found in a segment.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Scan {
    /// Every valid record before the tail, with the offset of its frame in the segment,
    /// in log order.
    pub records: Vec<(usize, Record)>,
    /// Bytes of the segment that hold its header and these records. Appending may go on
    /// from here once the tail is dealt with (with a header first when it is less than
    /// [`SEGMENT_HEADER_LEN`], which happens only for an empty or torn header).
    pub valid_len: usize,
    /// What follows `valid_len`.
    pub tail: Tail,
}

/// How a segment ends: what follows its last valid record.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Tail {
    /// Nothing: the segment ends right after a record (or its header, or it is empty).
    Clean,
    /// An unfinished write: a record (or the header) cut short by the end of the segment,
    /// or a run of zero bytes up to the end (space a crash left allocated but unwritten).
    /// Truncate the segment to `at`.
    Torn {
        /// Where the unfinished bytes start (equal to [`Scan::valid_len`]).
        at: usize,
        /// How many bytes follow `at`.
        dropped_bytes: usize,
    },
    /// Damage: bytes that no writer of this format produces. Keep the records before `at`,
    /// and move the file aside; nothing after `at` can be trusted.
    Corrupt {
        /// Where the damaged header or frame starts (equal to [`Scan::valid_len`]).
        at: usize,
        /// What is wrong there.
        reason: Corruption,
    },
}

/// Why a segment is [`Tail::Corrupt`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Corruption {
    /// The segment does not start with [`SEGMENT_MAGIC`] (or its reserved bytes are not
    /// zero): it is not a segment of this format.
    BadHeader,
    /// The header names a format version this code does not read (carries it).
    UnsupportedVersion(u16),
    /// A frame's length is 0: a record has at least its type byte.
    ZeroLength,
    /// A frame's length is over the maximum record size (carries it). No allocation is
    /// made for it.
    TooLarge(usize),
    /// The CRC-32 of the type byte and payload is not the stored one.
    Checksum {
        /// The CRC-32 stored in the frame.
        stored: u32,
        /// The CRC-32 of the bytes there.
        computed: u32,
    },
    /// The checksum matches but the record is invalid (a newer writer, or a bug).
    BadRecord(RecordError),
}

impl fmt::Display for Corruption {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Corruption::BadHeader => f.write_str("not a pushwire segment (bad header)"),
            Corruption::UnsupportedVersion(v) => write!(f, "unsupported format version {v}"),
            Corruption::ZeroLength => f.write_str("record length 0"),
            Corruption::TooLarge(n) => write!(f, "record length {n} over the maximum"),
            Corruption::Checksum { stored, computed } => write!(
                f,
                "checksum mismatch (stored {stored:08x}, computed {computed:08x})"
            ),
            Corruption::BadRecord(e) => write!(f, "invalid record: {e}"),
        }
    }
}

/// Reads the records of one segment, stopping at the first byte that is not part of a
/// valid record, and says how the segment ends (see the module docs' recovery rules).
///
/// `max_record` bounds a frame's length field (type byte plus payload): a longer one is
/// [`Corruption::TooLarge`], never an allocation. Never panics; never returns a record
/// whose checksum or validation failed.
pub fn scan(bytes: &[u8], max_record: usize) -> Scan {
    let mut records = Vec::new();
    let (valid_len, tail) = scan_each(bytes, max_record, |at, r| records.push((at, r)));
    Scan {
        records,
        valid_len,
        tail,
    }
}

/// [`scan`] without collecting: hands each valid record (with its frame's offset) to
/// `each` as it is decoded, and returns [`Scan::valid_len`] and the [`Tail`]. Recovery
/// uses it so that a segment's records are never all in memory at once beside its bytes.
pub fn scan_each(
    bytes: &[u8],
    max_record: usize,
    mut each: impl FnMut(usize, Record),
) -> (usize, Tail) {
    let tail = scan_into(bytes, max_record, &mut each);
    let valid_len = match tail {
        Tail::Clean => bytes.len(),
        Tail::Torn { at, .. } | Tail::Corrupt { at, .. } => at,
    };
    (valid_len, tail)
}

fn scan_into(bytes: &[u8], max_record: usize, each: &mut impl FnMut(usize, Record)) -> Tail {
    let torn = |at: usize| Tail::Torn {
        at,
        dropped_bytes: bytes.len() - at,
    };
    let corrupt = |at: usize, reason| Tail::Corrupt { at, reason };
    if bytes.is_empty() {
        return Tail::Clean;
    }
    let Some(header) = bytes.get(..SEGMENT_HEADER_LEN) else {
        return if SEGMENT_HEADER.starts_with(bytes) {
            torn(0)
        } else {
            corrupt(0, Corruption::BadHeader)
        };
    };
    if header[..4] != SEGMENT_MAGIC || header[6..] != [0, 0] {
        return corrupt(0, Corruption::BadHeader);
    }
    let version = u16::from_le_bytes([header[4], header[5]]);
    if version != FORMAT_VERSION {
        return corrupt(0, Corruption::UnsupportedVersion(version));
    }
    let mut pos = SEGMENT_HEADER_LEN;
    loop {
        let rest = &bytes[pos..];
        if rest.is_empty() {
            return Tail::Clean;
        }
        if rest.iter().all(|&b| b == 0) {
            log::trace!("store: {} zero bytes at {pos} end the segment", rest.len());
            return torn(pos);
        }
        let Some(frame) = rest.get(..FRAME_HEADER_LEN) else {
            return torn(pos);
        };
        let len = u32::from_le_bytes([frame[0], frame[1], frame[2], frame[3]]) as usize;
        let stored = u32::from_le_bytes([frame[4], frame[5], frame[6], frame[7]]);
        if len == 0 {
            return corrupt(pos, Corruption::ZeroLength);
        }
        if len > max_record {
            return corrupt(pos, Corruption::TooLarge(len));
        }
        let Some(body) = rest[FRAME_HEADER_LEN..].get(..len) else {
            return torn(pos);
        };
        let computed = crc32fast::hash(body);
        if computed != stored {
            return corrupt(pos, Corruption::Checksum { stored, computed });
        }
        match Record::decode(body[0], &body[1..]) {
            Ok(record) => {
                log::trace!("store: record type {} at {pos}, {len} bytes", body[0]);
                each(pos, record);
            }
            Err(e) => return corrupt(pos, Corruption::BadRecord(e)),
        }
        pos += FRAME_HEADER_LEN + len;
    }
}
