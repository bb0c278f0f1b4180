use super::*;
use crate::proto::topic::HistoryLimits;

const MAX: usize = DEFAULT_MAX_RECORD;

/// A frame around `body` (type byte and payload), with the CRC of crc32fast as the oracle.
fn frame(body: &[u8]) -> Vec<u8> {
    let mut v = (body.len() as u32).to_le_bytes().to_vec();
    v.extend_from_slice(&crc32fast::hash(body).to_le_bytes());
    v.extend_from_slice(body);
    v
}

fn enc(r: &Record) -> Vec<u8> {
    let mut out = Vec::new();
    let n = r.encode(&mut out, MAX).expect("valid record");
    assert_eq!(n, out.len());
    out
}

fn secret() -> Vec<u8> {
    (0..24).collect()
}

fn event(topic: &str, id: u64, data: &str) -> Record {
    Record::Event {
        topic: topic.into(),
        id,
        name: None,
        published_ms: 1_000 + id,
        data: data.into(),
        json: false,
    }
}

fn added(endpoint: u64, topic: &str) -> Record {
    Record::WebhookAdded {
        endpoint,
        topic: topic.into(),
        url: "http://h/x".into(),
        secret: secret(),
        disabled: false,
    }
}

fn enqueued(id: &str, endpoints: &[u64]) -> Record {
    Record::OutboxEnqueued {
        webhook_id: id.into(),
        next_attempt_ms: 5,
        body: b"{}".to_vec(),
        endpoints: endpoints.to_vec(),
    }
}

fn segment(records: &[Record]) -> Vec<u8> {
    let mut out = Vec::new();
    write_header(&mut out);
    for r in records {
        r.encode(&mut out, MAX).expect("valid record");
    }
    out
}

/// One record of each type.
fn one_of_each() -> Vec<Record> {
    vec![
        Record::Event {
            topic: "t".into(),
            id: 1,
            name: Some("e".into()),
            published_ms: 2,
            data: "hi".into(),
            json: false,
        },
        added(3, "t"),
        Record::WebhookDisabled { endpoint: 3 },
        Record::WebhookRemoved { endpoint: 3 },
        enqueued("m", &[1, 2]),
        Record::OutboxAttempt {
            webhook_id: "m".into(),
            endpoint: 2,
            attempts: 1,
            next_attempt_ms: 9,
        },
        Record::OutboxDone {
            webhook_id: "m".into(),
            endpoint: 2,
        },
        Record::NextEndpoint { next: 4 },
        first("t", 1),
        Record::TopicRange {
            topic: "t".into(),
            last_id: 7,
        },
        Record::Group {
            records: vec![first("g", 1), Record::NextEndpoint { next: 2 }],
        },
        dropped("t"),
    ]
}

fn dropped(topic: &str) -> Record {
    Record::TopicDropped {
        topic: topic.into(),
    }
}

fn first(topic: &str, first_id: u64) -> Record {
    Record::TopicFirst {
        topic: topic.into(),
        first_id,
    }
}

#[test]
fn exact_bytes_of_each_type() {
    let le8 = |v: u64| v.to_le_bytes().to_vec();
    let mut added_body = vec![2];
    added_body.extend(le8(3));
    added_body.extend([1, 0, b't', 10, 0]);
    added_body.extend(b"http://h/x");
    added_body.push(24);
    added_body.extend(secret());
    added_body.push(0);
    let mut enq_body = vec![5, 1, 0, b'm'];
    enq_body.extend(le8(5));
    enq_body.extend([2, 0, 0, 0, b'{', b'}', 2, 0, 0, 0]);
    enq_body.extend(le8(1));
    enq_body.extend(le8(2));
    let bodies: Vec<Vec<u8>> = vec![
        [
            &[1, 1, 0, b't'][..],
            &le8(1),
            &[1, 0, b'e'],
            &le8(2),
            &[2, 0, 0, 0, b'h', b'i'],
        ]
        .concat(),
        added_body,
        [&[3][..], &le8(3)].concat(),
        [&[4][..], &le8(3)].concat(),
        enq_body,
        [&[6, 1, 0, b'm'][..], &le8(2), &[1, 0, 0, 0], &le8(9)].concat(),
        [&[7, 1, 0, b'm'][..], &le8(2)].concat(),
        [&[8][..], &le8(4)].concat(),
        [&[9, 1, 0, b't'][..], &le8(1)].concat(),
        [&[10, 1, 0, b't'][..], &le8(7)].concat(),
        [
            &[11, 9, 11, 0, 0, 0, 1, 0, b'g'][..],
            &le8(1),
            &[8, 8, 0, 0, 0],
            &le8(2),
        ]
        .concat(),
        vec![12, 1, 0, b't'],
    ];
    assert_eq!(bodies.len(), one_of_each().len());
    for (record, body) in one_of_each().iter().zip(&bodies) {
        assert_eq!(enc(record), frame(body), "{record:?}");
        assert_eq!(record.type_byte(), body[0]);
        assert_eq!(Record::decode(body[0], &body[1..]).as_ref(), Ok(record));
    }
}

#[test]
fn the_documented_example_and_crc() {
    let done = &one_of_each()[6];
    assert!(matches!(done, Record::OutboxDone { .. }));
    let mut want = vec![0x0c, 0, 0, 0, 0xae, 0x91, 0xca, 0x21, 7, 1, 0, b'm', 2];
    want.extend([0; 7]);
    assert_eq!(enc(done), want);
}

#[test]
fn round_trips() {
    let long = "x".repeat(70_000);
    let mut records = one_of_each();
    records.push(Record::Event {
        topic: "a.b_c-D9".into(),
        id: u64::MAX,
        name: None,
        published_ms: u64::MAX,
        data: long,
        json: false,
    });
    records.push(first("a.b_c-D9", u64::MAX));
    records.push(Record::WebhookAdded {
        endpoint: u64::MAX,
        topic: "t".into(),
        url: "u".repeat(2048),
        secret: vec![0xff; 64],
        disabled: true,
    });
    let seg = segment(&records);
    let scan = scan(&seg, MAX);
    assert_eq!(scan.tail, Tail::Clean);
    assert_eq!(scan.valid_len, seg.len());
    let got: Vec<Record> = scan.records.into_iter().map(|(_, r)| r).collect();
    assert_eq!(got, records);
}

#[test]
fn encode_refuses_invalid_records_and_leaves_out_alone() {
    let bad = |r: Record, e: RecordError| {
        let mut out = vec![9];
        assert_eq!(r.encode(&mut out, MAX), Err(e), "{r:?}");
        assert_eq!(out, [9]);
    };
    bad(event("..", 1, ""), RecordError::BadTopic);
    bad(event("t", 0, ""), RecordError::ZeroEventId);
    bad(first("t", 0), RecordError::ZeroFirstId);
    bad(first("a b", 1), RecordError::BadTopic);
    bad(first("", 1), RecordError::BadTopic);
    bad(dropped(".."), RecordError::BadTopic);
    bad(dropped(""), RecordError::BadTopic);
    bad(dropped(&"a".repeat(129)), RecordError::BadTopic);
    let named = |name: &str| Record::Event {
        topic: "t".into(),
        id: 1,
        name: Some(name.into()),
        published_ms: 0,
        data: String::new(),
        json: false,
    };
    bad(named(""), RecordError::BadEventName);
    bad(named("a b"), RecordError::BadEventName);
    let hook = |url: &str, secret: Vec<u8>| Record::WebhookAdded {
        endpoint: 1,
        topic: "t".into(),
        url: url.into(),
        secret,
        disabled: false,
    };
    bad(hook("", secret()), RecordError::BadUrl);
    bad(hook(&"u".repeat(2049), secret()), RecordError::BadUrl);
    bad(hook("u", vec![0; 23]), RecordError::BadSecretLen(23));
    bad(hook("u", vec![0; 65]), RecordError::BadSecretLen(65));
    bad(enqueued("", &[1]), RecordError::BadWebhookId);
    bad(enqueued(&"m".repeat(256), &[1]), RecordError::BadWebhookId);
    bad(enqueued("m", &[]), RecordError::NoEndpoints);
    bad(enqueued("m", &[2, 1]), RecordError::EndpointsUnordered);
    bad(enqueued("m", &[1, 1]), RecordError::EndpointsUnordered);
    let mut out = Vec::new();
    let big = event("t", 1, &"d".repeat(100));
    assert_eq!(big.encode(&mut out, 100), Err(RecordError::TooLarge(126)));
    assert!(out.is_empty());
    assert_eq!(big.encode(&mut out, 126), Ok(134));
}

#[test]
fn decode_table() {
    let ok_done = [&[1, 0, b'm'][..], &[2, 0, 0, 0, 0, 0, 0, 0]].concat();
    let cases: &[(u8, &[u8], RecordError)] = &[
        (0, &[], RecordError::UnknownType(0)),
        (14, &[], RecordError::UnknownType(14)),
        (13, &[], RecordError::Truncated),
        (0xff, &[], RecordError::UnknownType(0xff)),
        // TopicDropped: empty, a topic length past the end, a byte after the topic, an
        // empty or bad topic, a topic not UTF-8.
        (12, &[], RecordError::Truncated),
        (12, &[1], RecordError::Truncated),
        (12, &[2, 0, b't'], RecordError::Truncated),
        (12, &[1, 0, b't', 0], RecordError::TrailingBytes),
        (12, &[0, 0], RecordError::BadTopic),
        (12, &[2, 0, b'.', b'.'], RecordError::BadTopic),
        (12, &[3, 0, b'a', b'/', b'b'], RecordError::BadTopic),
        (12, &[1, 0, 0xff], RecordError::BadUtf8),
        // TopicRange: a last id of 0, cut short.
        (
            10,
            &[1, 0, b't', 0, 0, 0, 0, 0, 0, 0, 0],
            RecordError::ZeroFirstId,
        ),
        (10, &[1, 0, b't', 1], RecordError::Truncated),
        // Group: one record only; a group inside; an inner length past the end; an inner
        // record that does not decode.
        (
            11,
            &[8, 8, 0, 0, 0, 2, 0, 0, 0, 0, 0, 0, 0],
            RecordError::BadGroup,
        ),
        (11, &[11, 0, 0, 0, 0], RecordError::BadGroup),
        (
            11,
            &[8, 9, 0, 0, 0, 2, 0, 0, 0, 0, 0, 0, 0],
            RecordError::Truncated,
        ),
        (
            11,
            &[0, 0, 0, 0, 0, 8, 0, 0, 0, 0],
            RecordError::UnknownType(0),
        ),
        // TopicFirst: empty, a topic length past the end, a first id cut short, a byte
        // after it, a first id of 0, a bad topic, a topic not UTF-8.
        (9, &[], RecordError::Truncated),
        (9, &[1], RecordError::Truncated),
        (9, &[2, 0, b't'], RecordError::Truncated),
        (
            9,
            &[1, 0, b't', 1, 0, 0, 0, 0, 0, 0],
            RecordError::Truncated,
        ),
        (
            9,
            &[1, 0, b't', 1, 0, 0, 0, 0, 0, 0, 0, 0],
            RecordError::TrailingBytes,
        ),
        (
            9,
            &[1, 0, b't', 0, 0, 0, 0, 0, 0, 0, 0],
            RecordError::ZeroFirstId,
        ),
        (
            9,
            &[1, 0, b' ', 1, 0, 0, 0, 0, 0, 0, 0],
            RecordError::BadTopic,
        ),
        (9, &[0, 0, 1, 0, 0, 0, 0, 0, 0, 0], RecordError::BadTopic),
        (
            9,
            &[1, 0, 0xff, 1, 0, 0, 0, 0, 0, 0, 0],
            RecordError::BadUtf8,
        ),
        (8, &[4, 0, 0, 0, 0, 0, 0], RecordError::Truncated),
        (3, &[1, 0, 0], RecordError::Truncated),
        (3, &[1, 0, 0, 0, 0, 0, 0, 0, 0], RecordError::TrailingBytes),
        (7, &ok_done[..ok_done.len() - 1], RecordError::Truncated),
        (
            7,
            &[1, 0, 0xff, 2, 0, 0, 0, 0, 0, 0, 0],
            RecordError::BadUtf8,
        ),
        (
            7,
            &[0, 0, 2, 0, 0, 0, 0, 0, 0, 0],
            RecordError::BadWebhookId,
        ),
        (
            7,
            &[9, 0, b'm', 2, 0, 0, 0, 0, 0, 0, 0],
            RecordError::Truncated,
        ),
        // An outbox entry whose count claims more endpoints than there are bytes for.
        (
            5,
            &[
                1, 0, b'm', 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff, 0xff, 0xff,
            ],
            RecordError::Truncated,
        ),
    ];
    for (ty, payload, want) in cases {
        assert_eq!(Record::decode(*ty, payload), Err(*want), "{ty} {payload:?}");
    }
    // A disabled flag of 2.
    let mut body = enc(&added(1, "t"))[FRAME_HEADER_LEN..].to_vec();
    *body.last_mut().unwrap() = 2;
    assert_eq!(
        Record::decode(body[0], &body[1..]),
        Err(RecordError::BadFlag(2))
    );
}

#[test]
fn empty_and_header_only_segments() {
    let s = scan(&[], MAX);
    assert_eq!((s.records.len(), s.valid_len, s.tail), (0, 0, Tail::Clean));
    let s = scan(&SEGMENT_HEADER, MAX);
    assert_eq!((s.records.len(), s.valid_len, s.tail), (0, 8, Tail::Clean));
    for cut in 1..SEGMENT_HEADER_LEN {
        let s = scan(&SEGMENT_HEADER[..cut], MAX);
        let torn = Tail::Torn {
            at: 0,
            dropped_bytes: cut,
        };
        assert_eq!((s.valid_len, s.tail), (0, torn));
    }
}

#[test]
fn bad_headers() {
    let corrupt = |bytes: &[u8], reason| {
        let s = scan(bytes, MAX);
        assert_eq!(s.tail, Tail::Corrupt { at: 0, reason }, "{bytes:?}");
        assert_eq!((s.valid_len, s.records.len()), (0, 0));
    };
    corrupt(b"PWSX\x01\0\0\0", Corruption::BadHeader);
    corrupt(b"PWST\x01\0\0\x01", Corruption::BadHeader);
    corrupt(b"PWST\x02\0\0\0", Corruption::UnsupportedVersion(2));
    corrupt(b"X", Corruption::BadHeader);
    corrupt(b"PWSTx", Corruption::BadHeader);
}

#[test]
fn frame_faults() {
    let mut seg = segment(&[event("t", 1, "a")]);
    let first = seg.len();
    // u32::MAX, with and without bytes after it: refused before any allocation.
    let mut huge = seg.clone();
    huge.extend_from_slice(&u32::MAX.to_le_bytes());
    huge.extend_from_slice(&[1, 2, 3, 4]);
    let s = scan(&huge, MAX);
    let reason = Corruption::TooLarge(u32::MAX as usize);
    assert_eq!(s.tail, Tail::Corrupt { at: first, reason });
    assert_eq!((s.records.len(), s.valid_len), (1, first));
    huge.extend_from_slice(&[7; 64]);
    assert_eq!(scan(&huge, MAX).tail, Tail::Corrupt { at: first, reason });
    // A zero length followed by something that is not zero.
    let mut zero = seg.clone();
    zero.extend_from_slice(&[0, 0, 0, 0, 1, 0, 0, 0, 9]);
    let reason = Corruption::ZeroLength;
    assert_eq!(scan(&zero, MAX).tail, Tail::Corrupt { at: first, reason });
    // Zeros up to the end: space allocated but never written.
    let mut zeros = seg.clone();
    zeros.extend_from_slice(&[0; 100]);
    let torn = Tail::Torn {
        at: first,
        dropped_bytes: 100,
    };
    assert_eq!(scan(&zeros, MAX).tail, torn);
    // A checksum-valid record that does not decode.
    seg.extend_from_slice(&frame(&[3, 1, 2, 3]));
    let reason = Corruption::BadRecord(RecordError::Truncated);
    assert_eq!(scan(&seg, MAX).tail, Tail::Corrupt { at: first, reason });
    // A smaller limit on reading than on writing.
    let s = scan(&segment(&[event("t", 1, "abc")]), 20);
    assert_eq!(
        s.tail,
        Tail::Corrupt {
            at: 8,
            reason: Corruption::TooLarge(29)
        }
    );
}

/// Records of every type, some long, for the damage tests.
fn sample() -> Vec<Record> {
    let mut r = one_of_each();
    r.insert(2, event("t", 2, &"z".repeat(300)));
    r
}

#[test]
fn torn_tail_at_every_offset_of_the_last_record() {
    let records = sample();
    let seg = segment(&records);
    let last = segment(&records[..records.len() - 1]).len();
    for cut in last..seg.len() {
        let s = scan(&seg[..cut], MAX);
        let torn = Tail::Torn {
            at: last,
            dropped_bytes: cut - last,
        };
        let want_tail = if cut == last { Tail::Clean } else { torn };
        assert_eq!(s.tail, want_tail, "cut at {cut}");
        assert_eq!(s.valid_len, last);
        let got: Vec<&Record> = s.records.iter().map(|(_, r)| r).collect();
        assert_eq!(got, records[..records.len() - 1].iter().collect::<Vec<_>>());
    }
}

/// xorshift64*, deterministic.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }
}

#[test]
fn cut_at_random_offsets_keeps_every_complete_record() {
    let records = sample();
    let seg = segment(&records);
    let starts: Vec<usize> = scan(&seg, MAX).records.iter().map(|r| r.0).collect();
    let mut rng = Rng(0x9E37_79B9_7F4A_7C15);
    for _ in 0..500 {
        let cut = (rng.next() % (seg.len() as u64 + 1)) as usize;
        let s = scan(&seg[..cut], MAX);
        // Complete records: those whose end is at or before the cut.
        let mut ends: Vec<usize> = starts[1..].to_vec();
        ends.push(seg.len());
        let complete = ends.iter().filter(|&&e| e <= cut).count();
        assert_eq!(s.records.len(), complete, "cut at {cut}");
        assert!(
            matches!(s.tail, Tail::Clean | Tail::Torn { .. }),
            "cut at {cut}"
        );
        let header = if cut < SEGMENT_HEADER_LEN {
            0
        } else {
            SEGMENT_HEADER_LEN
        };
        let valid = if complete == 0 {
            header
        } else {
            ends[complete - 1]
        };
        assert_eq!(s.valid_len, valid, "cut at {cut}");
    }
}

#[test]
fn flipped_byte_at_every_offset() {
    let records = sample();
    let seg = segment(&records);
    let starts: Vec<usize> = scan(&seg, MAX).records.iter().map(|r| r.0).collect();
    for at in 0..seg.len() {
        for flip in [0x01, 0x80, 0xff] {
            let mut bad = seg.clone();
            bad[at] ^= flip;
            let s = scan(&bad, MAX);
            // The record holding the damaged byte, and every one before it.
            let hit = starts.iter().rposition(|&s| s <= at);
            let before = hit.unwrap_or(0);
            assert!(s.records.len() >= before, "flip {flip:#x} at {at}");
            assert!(s.records.len() <= hit.map_or(0, |h| h + 1));
            for (i, (off, r)) in s.records.iter().enumerate() {
                assert_eq!(
                    (*off, r),
                    (starts[i], &records[i]),
                    "flip {flip:#x} at {at}"
                );
            }
            if at < SEGMENT_HEADER_LEN {
                assert!(matches!(s.tail, Tail::Corrupt { at: 0, .. }));
            } else {
                assert_ne!(s.tail, Tail::Clean, "flip {flip:#x} at {at}");
                assert_eq!(s.records.len(), before, "flip {flip:#x} at {at}");
            }
        }
    }
}

fn limits(max_events: usize, max_bytes: usize, max_topics: usize) -> HistoryLimits {
    HistoryLimits {
        max_events,
        max_bytes,
        max_topics,
        max_total_bytes: usize::MAX,
    }
}

fn rebuild(limits: HistoryLimits, records: &[Record]) -> (Recovered, Vec<Skip>) {
    let mut state = Recovered::new(limits);
    let skips = records
        .iter()
        .filter_map(|r| state.apply(r.clone()).err())
        .collect();
    (state, skips)
}

fn kept(state: &Recovered, topic: &str) -> (u64, Vec<u64>) {
    let t = &state.topics()[topic];
    (t.last_id, t.events.iter().map(|e| e.id).collect())
}

#[test]
fn history_is_bounded_like_topics() {
    let records: Vec<Record> = (1..=5).map(|i| event("t", i, "abcd")).collect();
    let (s, skips) = rebuild(limits(3, 1000, 10), &records);
    assert!(skips.is_empty());
    assert_eq!(kept(&s, "t"), (5, vec![3, 4, 5]));
    let (s, _) = rebuild(limits(10, 9, 10), &records);
    assert_eq!(kept(&s, "t"), (5, vec![4, 5]));
    assert_eq!(s.topics()["t"].bytes, 8);
    // The newest is kept even alone over the byte budget.
    let (s, _) = rebuild(limits(10, 1, 10), &records);
    assert_eq!(kept(&s, "t"), (5, vec![5]));
}

#[test]
fn replay_applies_the_total_budget_as_topics_does() {
    let lim = HistoryLimits {
        max_total_bytes: 10,
        ..limits(100, 100, 10)
    };
    // a: 4 + 4, b: 2; then b: 2 more is 12, and a (the larger) gives up its oldest.
    let records = [
        event("a", 1, "aaaa"),
        event("a", 2, "aaaa"),
        event("b", 1, "bb"),
        event("b", 2, "bb"),
    ];
    let (s, _) = rebuild(lim, &records);
    assert_eq!(
        (kept(&s, "a"), kept(&s, "b")),
        ((2, vec![2]), (2, vec![1, 2]))
    );
    assert_eq!(s.total_bytes(), 8);
    // An event alone over the budget goes itself (the largest topic gives first), and
    // the others keep theirs.
    let mut more = records.to_vec();
    more.push(event("c", 1, &"c".repeat(20)));
    let (s, _) = rebuild(lim, &more);
    assert_eq!(
        (kept(&s, "a"), kept(&s, "b"), kept(&s, "c")),
        ((2, vec![2]), (2, vec![1, 2]), (1, vec![]))
    );
    assert_eq!(s.total_bytes(), 8);
    // A drop gives its bytes back.
    more.push(dropped("a"));
    let (mut s, _) = rebuild(lim, &more);
    assert_eq!(s.total_bytes(), 4);
    s.apply(event("b", 3, "bb")).unwrap();
    assert_eq!((kept(&s, "b"), s.total_bytes()), ((3, vec![1, 2, 3]), 6));
    // Taking the topics out leaves nothing counted.
    s.take_topics();
    assert_eq!(s.total_bytes(), 0);
    s.apply(event("z", 1, "zz")).unwrap();
    assert_eq!(s.total_bytes(), 2);
}

/// The log a topic table's publishes and expiries write, as the driver writes it, replays
/// to what the table keeps: per topic the same events, last id and first id, and the
/// same total, after every step; and so does its compaction.
#[test]
fn replay_keeps_what_the_topic_table_kept() {
    use crate::proto::topic::{PublishError, Topics};
    use std::time::Duration;
    let lim = HistoryLimits {
        max_total_bytes: 200,
        ..limits(6, 50, 8)
    };
    let ttl = Duration::from_secs(30);
    let mut topics = Topics::new(lim);
    let mut state = Recovered::new(lim);
    let mut rng = Rng(0x2545_F491_4F6C_DD1D);
    let mut now = 1_700_000_000_000_000;
    let (mut refused, mut expired) = (0, 0);
    for step in 0..3_000 {
        now += rng.next() % 2_000_000;
        let mut log = Vec::new();
        if step % 25 == 24 {
            for name in topics.expire(now, ttl, |n| n.ends_with('0')) {
                log.push(dropped(&name));
                expired += 1;
            }
        }
        let topic = format!("t{}", rng.next() % 12);
        let data = "x".repeat((rng.next() % 30) as usize);
        let new = !topics.contains(&topic);
        match topics.publish(&topic, None, &data, now) {
            Ok(ev) => {
                if new {
                    log.push(first(&topic, ev.id));
                }
                log.push(Record::Event {
                    topic: topic.clone(),
                    id: ev.id,
                    name: None,
                    published_ms: ev.published_ms,
                    data,
                    json: false,
                });
            }
            Err(PublishError::TooManyTopics) => refused += 1,
            Err(e) => panic!("{e}"),
        }
        for r in log {
            state.apply(r).unwrap();
        }
        assert_eq!(state.topics().len(), topics.len(), "step {step}");
        assert_eq!(state.total_bytes(), topics.total_bytes(), "step {step}");
        for (name, t) in state.topics() {
            let p = topics.read_after(name, 0, usize::MAX);
            let ids: Vec<u64> = p.events.iter().map(|e| e.id).collect();
            let want: Vec<u64> = t.events.iter().map(|e| e.id).collect();
            assert_eq!(ids, want, "step {step}, topic {name}");
            assert_eq!(topics.last_id(name), t.last_id);
            // Trimmed, or emptied by the budget after events were published: a gap.
            let trimmed = match t.events.front() {
                Some(e) => e.id > t.first_id,
                None => t.last_id >= t.first_id,
            };
            assert_eq!(p.gap, trimmed);
        }
        if step % 100 == 0 {
            // A snapshot taken now replays to the same state, under the budget too.
            let (again, skips) = rebuild(lim, &state.live_records().collect::<Vec<_>>());
            assert!(skips.is_empty(), "step {step}: {skips:?}");
            assert_eq!(again, state, "step {step}");
        }
    }
    assert!(
        refused > 10 && expired > 10,
        "{refused} refused, {expired} expired"
    );
    let live: Vec<Record> = state.live_records().collect();
    let (again, skips) = rebuild(lim, &live);
    assert!(skips.is_empty(), "{skips:?}");
    assert_eq!(again, state);
    assert_eq!(again.total_bytes(), state.total_bytes());
    let restored = restore_all(&again);
    assert_eq!(restored.total_bytes(), topics.total_bytes());
}

#[test]
fn event_rules() {
    let records = [
        event("t", 1, ""),
        event("t", 1, ""),
        event("t", 4, ""),
        event("t", 5, ""),
        event("u", 1, ""),
    ];
    let (s, skips) = rebuild(limits(10, 100, 1), &records);
    let stale = Skip::StaleEvent {
        topic: "t".into(),
        id: 1,
        last_id: 1,
    };
    assert_eq!(skips, [stale, Skip::TooManyTopics]);
    // A jump (a new id range) keeps the run before it.
    assert_eq!(kept(&s, "t"), (5, vec![1, 4, 5]));
}

#[test]
fn webhook_and_outbox_rules() {
    let attempt = |id: &str, endpoint, attempts| Record::OutboxAttempt {
        webhook_id: id.into(),
        endpoint,
        attempts,
        next_attempt_ms: 100 * u64::from(attempts),
    };
    let done = |id: &str, endpoint| Record::OutboxDone {
        webhook_id: id.into(),
        endpoint,
    };
    let records = [
        added(1, "t"),
        added(2, "t"),
        added(3, "u"),
        added(1, "t"),
        enqueued("a", &[1, 2, 3]),
        enqueued("b", &[1, 2]),
        enqueued("b", &[1]),
        enqueued("c", &[9]),
        attempt("a", 2, 1),
        attempt("a", 2, 2),
        attempt("z", 2, 1),
        done("a", 1),
        done("a", 1),
        Record::WebhookDisabled { endpoint: 3 },
        Record::WebhookDisabled { endpoint: 9 },
        Record::WebhookRemoved { endpoint: 2 },
        Record::WebhookRemoved { endpoint: 2 },
    ];
    let (s, skips) = rebuild(HistoryLimits::default(), &records);
    assert_eq!(
        skips,
        [
            Skip::DuplicateEndpoint(1),
            Skip::DuplicateMessage,
            Skip::UnknownEndpoint(9),
            Skip::UnknownMessage,
            Skip::UnknownMessage,
            Skip::UnknownEndpoint(9),
            Skip::UnknownEndpoint(2),
        ]
    );
    assert_eq!(s.webhooks().keys().copied().collect::<Vec<_>>(), [1, 3]);
    assert!(s.webhooks()[&3].disabled && !s.webhooks()[&1].disabled);
    // Removing endpoint 2 took its messages: "a" keeps 3, "b" keeps 1.
    let outbox: Vec<(&str, Vec<u64>)> = s
        .outbox()
        .map(|o| (&*o.webhook_id, o.messages.keys().copied().collect()))
        .collect();
    assert_eq!(outbox, [("a", vec![3]), ("b", vec![1])]);
    let fresh = Delivery {
        attempts: 0,
        next_attempt_ms: 5,
    };
    assert_eq!(s.outbox_entry("a").unwrap().messages[&3], fresh);
    // Finishing the last message drops the entry and its body.
    let (s, _) = rebuild(
        HistoryLimits::default(),
        &[added(1, "t"), enqueued("a", &[1]), done("a", 1)],
    );
    assert_eq!((s.outbox().count(), s.outbox_entry("a")), (0, None));
}

#[test]
fn compaction_keeps_exactly_the_live_state() {
    let mut records: Vec<Record> = (1..=6).map(|i| event("t", i, "d")).collect();
    records.extend([
        event("u", 1, "x"),
        added(1, "t"),
        added(2, "t"),
        added(3, "u"),
    ]);
    records.extend([enqueued("a", &[1, 2, 3]), enqueued("b", &[1, 2])]);
    records.push(Record::OutboxAttempt {
        webhook_id: "a".into(),
        endpoint: 3,
        attempts: 2,
        next_attempt_ms: 77,
    });
    records.push(Record::OutboxDone {
        webhook_id: "a".into(),
        endpoint: 1,
    });
    records.push(Record::OutboxDone {
        webhook_id: "b".into(),
        endpoint: 1,
    });
    records.push(Record::WebhookDisabled { endpoint: 2 });
    records.push(Record::WebhookRemoved { endpoint: 1 });
    let lim = limits(3, 1000, 10);
    let (state, skips) = rebuild(lim, &records);
    assert!(skips.is_empty(), "{skips:?}");
    let mut out = vec![0xaa];
    let n = state.compact(&mut out, MAX).unwrap();
    assert_eq!(n, out.len() - 1);
    assert_eq!(state.live_len(), n);
    let s = scan(&out[1..], MAX);
    assert_eq!(s.tail, Tail::Clean);
    let live: Vec<Record> = s.records.into_iter().map(|(_, r)| r).collect();
    assert_eq!(live, state.live_records().collect::<Vec<_>>());
    // Per topic its first id and kept events (1 + 3, 1 + 1), the next endpoint id,
    // 2 registrations, 2 entries and 1 attempt.
    assert_eq!(live.len(), 12);
    assert_eq!(live[0], first("t", 1));
    assert_eq!(live[1], event("t", 4, "d"));
    assert_eq!(live[4], first("u", 1));
    assert_eq!(state.topics()["t"].first_id, 1, "trimmed: 1..=3 are gone");
    // Endpoint 1 is gone, but its id is never issued again.
    assert_eq!(state.next_endpoint(), 4);
    assert_eq!(live[6], Record::NextEndpoint { next: 4 });
    let (again, skips) = rebuild(lim, &live);
    assert!(skips.is_empty(), "{skips:?}");
    assert_eq!(again, state);
    assert_eq!(again.topics()["t"].first_id, 1);
    assert!(n < segment(&records).len());
    // Compacting twice gives the same bytes.
    let mut twice = Vec::new();
    again.compact(&mut twice, MAX).unwrap();
    assert_eq!(twice, out[1..]);
    // A live record over the limit: nothing written.
    let mut out = vec![1];
    assert!(state.compact(&mut out, 10).is_err());
    assert_eq!(out, [1]);
}

#[test]
fn first_id_rules() {
    let lim = limits(10, 100, 3);
    let first_of = |s: &Recovered, t: &str| {
        let h = &s.topics()[t];
        (
            h.first_id,
            h.last_id,
            h.events.iter().map(|e| e.id).collect(),
        )
    };
    // Without a TopicFirst: the lowest event id applied, also across a gap.
    let (s, _) = rebuild(
        lim,
        &[event("t", 7, ""), event("t", 8, ""), event("t", 10, "")],
    );
    assert_eq!(first_of(&s, "t"), (7, 10, vec![7, 8, 10]));
    let records = [
        // Written before the first event: the event follows on.
        first("a", 5),
        event("a", 5, ""),
        // A higher first id later changes nothing; a lower one wins.
        first("a", 9),
        first("a", 2),
        // Event-less: nothing published, so last_id is first_id - 1.
        first("b", 20),
        first("b", 30),
        first("b", 10),
        // An event below the log's first id is stale.
        first("c", 50),
        event("c", 49, ""),
        first("d", 1),
        event("d", 1, ""),
    ];
    let (s, skips) = rebuild(lim, &records);
    let stale = Skip::StaleEvent {
        topic: "c".into(),
        id: 49,
        last_id: 49,
    };
    assert_eq!(skips, [stale, Skip::TooManyTopics, Skip::TooManyTopics]);
    assert_eq!(first_of(&s, "a"), (2, 5, vec![5]));
    assert_eq!(first_of(&s, "b"), (10, 9, vec![]));
    assert_eq!(first_of(&s, "c"), (50, 49, vec![]));
    assert!(!s.topics().contains_key("d"));
    // Compaction keeps all of it, and compacting again gives the same bytes.
    let mut once = Vec::new();
    s.compact(&mut once, MAX).unwrap();
    let replayed: Vec<Record> = scan(&once, MAX)
        .records
        .into_iter()
        .map(|(_, r)| r)
        .collect();
    let (again, skips) = rebuild(lim, &replayed);
    assert!(skips.is_empty(), "{skips:?}");
    assert_eq!(again, s);
    let mut twice = Vec::new();
    again.compact(&mut twice, MAX).unwrap();
    assert_eq!(once, twice);
}

/// Restores every recovered topic into a topic table, as the driver does.
fn restore_all(state: &Recovered) -> crate::proto::topic::Topics {
    let mut topics = crate::proto::topic::Topics::new(state.limits());
    for (name, t) in state.topics() {
        let events = t.events.iter().map(StoredEvent::to_topic_event);
        topics.restore(name, events, t.last_id, t.first_id).unwrap();
    }
    topics
}

#[test]
fn a_trimmed_then_compacted_topic_keeps_its_true_first_id() {
    let lim = limits(2, 1000, 10);
    let mut records = vec![first("t", 100)];
    records.extend((100..=104).map(|i| event("t", i, "d")));
    records.extend([first("u", 7), event("u", 7, "d"), event("u", 8, "d")]);
    let (state, skips) = rebuild(lim, &records);
    assert!(skips.is_empty(), "{skips:?}");
    assert_eq!(kept(&state, "t"), (104, vec![103, 104]));
    assert_eq!(state.topics()["t"].first_id, 100);
    // Compact, then replay the compacted segment (twice over): 100..=102 are gone from
    // the log, but the first id is still 100.
    let mut seg = Vec::new();
    state.compact(&mut seg, MAX).unwrap();
    for _ in 0..2 {
        let s = scan(&seg, MAX);
        assert_eq!(s.tail, Tail::Clean);
        let live: Vec<Record> = s.records.into_iter().map(|(_, r)| r).collect();
        assert!(!live.contains(&event("t", 100, "d")));
        let (again, skips) = rebuild(lim, &live);
        assert!(skips.is_empty(), "{skips:?}");
        assert_eq!(again, state);
        assert_eq!(again.topics()["t"].first_id, 100);
        let mut next = Vec::new();
        again.compact(&mut next, MAX).unwrap();
        assert_eq!(next, seg, "compacting again gives the same bytes");
        seg = next;
    }
    // Restored, "t" reports the gap from since=0 (it was trimmed); "u" does not.
    let (state, _) = rebuild(
        lim,
        &scan(&seg, MAX)
            .records
            .into_iter()
            .map(|(_, r)| r)
            .collect::<Vec<_>>(),
    );
    let mut topics = restore_all(&state);
    let t = topics.read_after("t", 0, 10);
    assert!(t.gap, "100..=102 were trimmed before the restart");
    assert_eq!(
        t.events.iter().map(|e| e.id).collect::<Vec<_>>(),
        [103, 104]
    );
    assert!(!topics.read_after("u", 0, 10).gap, "7 and 8 are both kept");
    assert_eq!(topics.publish("t", None, "x", 1).unwrap().id, 105);
    // An event-less topic (a crash between TopicFirst and its event) restores too, and
    // its first publish gets the first id.
    let (state, _) = rebuild(lim, &[first("e", 40)]);
    let mut topics = restore_all(&state);
    assert!(!topics.read_after("e", 0, 10).gap);
    assert_eq!(topics.publish("e", None, "x", 1).unwrap().id, 40);
}

#[test]
fn state_across_segments_with_a_torn_tail() {
    let first = segment(&[added(1, "t"), enqueued("a", &[1])]);
    let done = Record::OutboxDone {
        webhook_id: "a".into(),
        endpoint: 1,
    };
    let mut second = segment(&[event("t", 1, "x")]);
    let cut = second.len() + 3;
    done.encode(&mut second, MAX).unwrap();
    second.truncate(cut);
    let mut state = Recovered::new(HistoryLimits::default());
    for seg in [&first[..], &second[..]] {
        for (_, r) in scan(seg, MAX).records {
            state.apply(r).unwrap();
        }
    }
    // The torn OutboxDone is lost: the message is delivered again (at least once).
    assert_eq!(state.outbox().count(), 1);
    assert_eq!(kept(&state, "t"), (1, vec![1]));
}

/// Writes the fuzz seeds of `fuzz/seeds/store_scan` (run with `--ignored`).
#[test]
#[ignore]
fn write_fuzz_seeds() {
    let dir = concat!(env!("CARGO_MANIFEST_DIR"), "/fuzz/seeds/store_scan");
    std::fs::create_dir_all(dir).unwrap();
    let all = segment(&one_of_each());
    let mut torn = segment(&[event("t", 1, "x"), added(1, "t")]);
    torn.truncate(torn.len() - 5);
    let mut flipped = segment(&[event("t", 1, "hello"), enqueued("m", &[1, 2])]);
    flipped[20] ^= 0x10;
    for (name, bytes) in [("each_type", all), ("torn", torn), ("flipped", flipped)] {
        std::fs::write(format!("{dir}/{name}"), bytes).unwrap();
    }
}

#[test]
fn a_new_id_range_survives_replay_and_compaction() {
    let range = |topic: &str, last_id| Record::TopicRange {
        topic: topic.into(),
        last_id,
    };
    let records = [
        first("t", 10),
        event("t", 10, "a"),
        event("t", 11, "b"),
        range("t", 500),
        range("t", 400), // never backwards
        range("u", 9),   // unknown topic: skipped
        first("e", 3),
        range("e", 70), // an event-less topic moves too
    ];
    let (s, skips) = rebuild(limits(10, 100, 5), &records);
    assert_eq!(skips, [Skip::UnknownTopic("u".into())]);
    assert_eq!(kept(&s, "t"), (500, vec![10, 11]));
    assert_eq!(s.topics()["e"].last_id, 70);
    // Compaction keeps the ranges: same state after a replay of the snapshot.
    let mut out = Vec::new();
    s.compact(&mut out, MAX).unwrap();
    let scanned = scan(&out, MAX);
    let mut again = Recovered::new(limits(10, 100, 5));
    for (_, r) in scanned.records {
        again.apply(r).unwrap();
    }
    assert_eq!(again, s);
    // And events after the range continue it, keeping the run before it.
    let (s, _) = rebuild(
        limits(10, 100, 5),
        &[
            first("t", 10),
            event("t", 10, "a"),
            range("t", 500),
            event("t", 501, "c"),
        ],
    );
    assert_eq!(kept(&s, "t"), (501, vec![10, 501]));
}

#[test]
fn a_dropped_topic_is_forgotten_and_its_next_event_starts_a_new_log() {
    let lim = limits(10, 100, 2);
    let records = [
        first("t", 100),
        event("t", 100, "a"),
        event("t", 101, "b"),
        first("u", 7),
        event("u", 7, "c"),
        dropped("t"),
        dropped("t"), // gone already: skipped
        dropped("x"), // never there: skipped
        // The slot is free: a third topic fits under max_topics = 2.
        first("v", 1),
        event("v", 1, "d"),
        // t again, published after it expired: a new log at the clock.
        dropped("v"),
        first("t", 5_000),
        event("t", 5_000, "e"),
    ];
    let (s, skips) = rebuild(lim, &records);
    assert_eq!(
        skips,
        [
            Skip::UnknownDropped("t".into()),
            Skip::UnknownDropped("x".into())
        ]
    );
    assert_eq!(
        Skip::UnknownDropped("t".into()).to_string(),
        "drop of the unknown topic \"t\""
    );
    assert_eq!(s.topics().keys().collect::<Vec<_>>(), ["t", "u"]);
    assert_eq!(kept(&s, "t"), (5_000, vec![5_000]));
    assert_eq!(s.topics()["t"].first_id, 5_000, "not the old log's 100");
    assert_eq!(s.topics()["t"].bytes, 1);
    // Compaction keeps nothing of the old log, and replays to the same state.
    let live: Vec<Record> = s.live_records().collect();
    assert_eq!(
        live,
        [
            first("t", 5_000),
            event("t", 5_000, "e"),
            first("u", 7),
            event("u", 7, "c")
        ]
    );
    let (again, skips) = rebuild(lim, &live);
    assert!(skips.is_empty(), "{skips:?}");
    assert_eq!(again, s);
    // Restored: a cursor from the old log gets a gap; a read from 0 gets the new log whole.
    let topics = restore_all(&s);
    let p = topics.read_after("t", 101, 10);
    assert_eq!(
        (p.events.iter().map(|e| e.id).collect::<Vec<_>>(), p.gap),
        (vec![5_000], true)
    );
    assert!(!topics.read_after("t", 0, 10).gap);
    // Without a TopicFirst after the drop (a log written without them), the new log's
    // first id is its first event's, not the old one's.
    let (s, _) = rebuild(
        lim,
        &[
            event("t", 100, "a"),
            dropped("t"),
            event("t", 90, "b"), // below the old ids, yet not stale: a new log
        ],
    );
    assert_eq!(kept(&s, "t"), (90, vec![90]));
    assert_eq!(s.topics()["t"].first_id, 90);
    // A drop inside a group applies as alone.
    let group = Record::Group {
        records: vec![dropped("u"), first("w", 3)],
    };
    let (s, skips) = rebuild(lim, &[first("u", 1), group]);
    assert!(skips.is_empty(), "{skips:?}");
    assert_eq!(s.topics().keys().collect::<Vec<_>>(), ["w"]);
}

#[test]
fn a_group_applies_as_its_records_would() {
    let grouped = Record::Group {
        records: vec![first("t", 5), event("t", 5, "a"), enqueued("m", &[1])],
    };
    let mut bytes = segment(&[added(1, "t"), grouped]);
    let (s, skips) = rebuild(
        limits(10, 100, 5),
        &scan(&bytes, MAX)
            .records
            .into_iter()
            .map(|(_, r)| r)
            .collect::<Vec<_>>(),
    );
    assert!(skips.is_empty(), "{skips:?}");
    assert_eq!(kept(&s, "t"), (5, vec![5]));
    assert_eq!(s.outbox().count(), 1);
    // Cut anywhere inside the group: none of it is there (the event is never served
    // without its webhook message).
    let whole = bytes.len();
    let start = segment(&[added(1, "t")]).len();
    for cut in start + 1..whole {
        bytes.truncate(cut);
        let sc = scan(&bytes, MAX);
        assert!(matches!(sc.tail, Tail::Torn { .. }), "cut {cut}");
        assert_eq!(sc.records.len(), 1, "cut {cut}");
        bytes = segment(&[
            added(1, "t"),
            Record::Group {
                records: vec![first("t", 5), event("t", 5, "a"), enqueued("m", &[1])],
            },
        ]);
    }
}

/// A JSON event is type 13 with type 1's layout; its data must be JSON; a type 1 record
/// (every log written before type 13) reads as a text event.
#[test]
fn json_events_are_type_13_and_old_events_stay_text() {
    let ev = |data: &str, json| Record::Event {
        topic: "t".into(),
        id: 7,
        name: None,
        published_ms: 9,
        data: data.into(),
        json,
    };
    let (mut text, mut json) = (Vec::new(), Vec::new());
    ev("{\"a\":1}", false).encode(&mut text, 1 << 20).unwrap();
    ev("{\"a\":1}", true).encode(&mut json, 1 << 20).unwrap();
    assert_eq!(text[8], 1);
    assert_eq!(json[8], 13);
    // Same payload bytes; only the type (and so the checksum) differs.
    assert_eq!(text[9..], json[9..]);
    assert_eq!(Record::decode(1, &text[9..]), Ok(ev("{\"a\":1}", false)));
    assert_eq!(Record::decode(13, &json[9..]), Ok(ev("{\"a\":1}", true)));
    // Not JSON: refused when encoding and when decoding.
    let mut out = Vec::new();
    assert_eq!(
        ev("{a:1}", true).encode(&mut out, 1 << 20),
        Err(RecordError::BadJson)
    );
    assert!(out.is_empty());
    let mut bad = Vec::new();
    ev("{a:1}", false).encode(&mut bad, 1 << 20).unwrap();
    assert_eq!(Record::decode(13, &bad[9..]), Err(RecordError::BadJson));
    // Recovery keeps the kind, and so does compaction.
    let mut state = Recovered::new(crate::proto::topic::HistoryLimits::default());
    state.apply(ev("[1,2]", true)).unwrap();
    let t = &state.topics()["t"];
    assert!(t.events[0].json);
    assert!(t.events[0].to_topic_event().json);
    let mut compacted = Vec::new();
    state.compact(&mut compacted, 1 << 20).unwrap();
    let again = scan(&compacted, 1 << 20);
    assert!(again.records.iter().any(|(_, r)| *r == ev("[1,2]", true)));
}
