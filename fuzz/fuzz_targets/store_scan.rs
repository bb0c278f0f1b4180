//! Segment scan: arbitrary bytes never panic, records come back in order and contiguous
//! from the header up to `valid_len`, each re-encodes to exactly the bytes it was read
//! from, applying them to a state never panics either, and the state's compacted snapshot
//! replays to the same state.
#![no_main]

use libfuzzer_sys::fuzz_target;
use pushwire::proto::store::{scan, Recovered, Tail, SEGMENT_HEADER_LEN};
use pushwire::proto::topic::HistoryLimits;

/// Small, so that the length limit is within the fuzzer's reach.
const MAX_RECORD: usize = 4096;

fuzz_target!(|data: &[u8]| {
    let s = scan(data, MAX_RECORD);
    assert!(s.valid_len <= data.len());
    match s.tail {
        Tail::Clean => assert_eq!(s.valid_len, data.len()),
        Tail::Torn { at, dropped_bytes } => {
            assert_eq!(at, s.valid_len);
            assert_eq!(at + dropped_bytes, data.len());
        }
        Tail::Corrupt { at, .. } => assert_eq!(at, s.valid_len),
    }
    let mut pos = SEGMENT_HEADER_LEN.min(s.valid_len);
    let mut out = Vec::new();
    for (offset, record) in &s.records {
        assert_eq!(*offset, pos);
        out.clear();
        let n = record
            .encode(&mut out, MAX_RECORD)
            .expect("a scanned record encodes");
        assert_eq!(&data[pos..pos + n], &out[..]);
        pos += n;
    }
    assert_eq!(pos, s.valid_len);
    let limits = HistoryLimits {
        max_events: 4,
        max_bytes: 64,
        max_topics: 4,
        max_total_bytes: 128,
    };
    let mut state = Recovered::new(limits);
    for (_, record) in s.records {
        let _ = state.apply(record);
    }
    let mut compacted = Vec::new();
    state
        .compact(&mut compacted, MAX_RECORD)
        .expect("live records fit");
    let again = scan(&compacted, MAX_RECORD);
    assert_eq!(again.tail, Tail::Clean);
    // Replaying the snapshot gives the same state: compaction loses nothing live.
    let mut replayed = Recovered::new(limits);
    for (_, record) in again.records {
        replayed
            .apply(record)
            .expect("a snapshot's records all apply");
    }
    assert_eq!(replayed, state);
});
