use super::*;
use crate::proto::resp::RespError;
use crate::proto::resp::Value;

type Conn = RedisConn<u32>;

fn url(text: &str) -> RedisUrl {
    RedisUrl::parse(text).unwrap()
}

fn resp3() -> RedisConfig {
    RedisConfig {
        protocol: Protocol::Resp3,
        ..RedisConfig::default()
    }
}

/// The encoding of a command given as text arguments.
fn cmd(args: &[&str]) -> Vec<u8> {
    let args: Vec<&[u8]> = args.iter().map(|a| a.as_bytes()).collect();
    let mut out = Vec::new();
    encode_command(&mut out, &args);
    out
}

fn cmds(list: &[&[&str]]) -> Vec<u8> {
    list.iter().flat_map(|c| cmd(c)).collect()
}

fn bulk(s: &str) -> Value {
    Value::BulkString(s.as_bytes().to_vec())
}

/// Everything pending, marked written.
fn drain(c: &mut Conn) -> Vec<u8> {
    let out = c.pending().to_vec();
    c.wrote(out.len());
    out
}

/// Connected, handshake written, not answered.
fn connected(u: &str, config: RedisConfig, t: Instant) -> Conn {
    let mut c = Conn::new(&url(u), config, t);
    c.on_connected();
    drain(&mut c);
    c
}

/// A ready connection to `redis://h` (handshake: PING, or HELLO 3 for RESP3).
fn ready(config: RedisConfig, t: Instant) -> Conn {
    let mut c = connected("redis://h", config, t);
    let answer: &[u8] = match config.protocol {
        Protocol::Resp2 => b"+PONG\r\n",
        Protocol::Resp3 => b"%1\r\n$5\r\nproto\r\n:3\r\n",
    };
    let ev = c.on_read(answer, t);
    assert!(ev.ready && ev.failed.is_none(), "{ev:?}");
    assert!(c.is_ready());
    c
}

/// Feeds `input` to connections made by `make`, whole, split in two at every offset, and
/// byte by byte; the merged events must be the same every time. Returns them.
fn all_splits(make: &dyn Fn() -> Conn, input: &[u8], t: Instant) -> Events<u32> {
    let run = |pieces: &[&[u8]]| {
        let mut c = make();
        let mut all = Events::default();
        for piece in pieces {
            let ev = c.on_read(piece, t);
            all.ready |= ev.ready;
            all.replies.extend(ev.replies);
            all.pushes.extend(ev.pushes);
            if ev.failed.is_some() {
                assert!(all.failed.is_none(), "failed twice");
                all.failed = ev.failed;
            }
        }
        all
    };
    let whole = run(&[input]);
    for at in 0..=input.len() {
        let (a, b) = input.split_at(at);
        assert_eq!(run(&[a, b]), whole, "split at {at}");
    }
    let bytes: Vec<&[u8]> = input.chunks(1).collect();
    assert_eq!(run(&bytes), whole, "byte by byte");
    whole
}

#[test]
fn the_handshake_on_the_wire() {
    let r3 = resp3();
    let d = RedisConfig::default();
    let table: &[(&str, RedisConfig, &[&[&str]])] = &[
        ("redis://h", d, &[&["PING"]]),
        ("redis://:pw@h", d, &[&["AUTH", "pw"]]),
        (
            "redis://u:p%40w@h/3",
            d,
            &[&["AUTH", "u", "p@w"], &["SELECT", "3"]],
        ),
        ("redis://h/2", d, &[&["SELECT", "2"]]),
        ("redis://h", r3, &[&["HELLO", "3"]]),
        (
            "redis://:pw@h/1",
            r3,
            &[&["AUTH", "pw"], &["HELLO", "3"], &["SELECT", "1"]],
        ),
    ];
    let t = Instant::now();
    for (u, config, expected) in table {
        let mut c = Conn::new(&url(u), *config, t);
        assert_eq!(c.phase(), Phase::Connecting);
        assert_eq!(c.pending(), b"", "nothing before the connect completes");
        assert!(c.wants_write() && c.wants_read());
        assert_eq!(c.in_flight(), expected.len());
        c.on_connected();
        assert_eq!(c.phase(), Phase::Handshaking);
        assert_eq!(c.pending(), cmds(expected), "{u}");
    }
}

#[test]
fn output_is_written_in_pieces() {
    let t = Instant::now();
    let mut c = Conn::new(&url("redis://u:pw@h/3"), RedisConfig::default(), t);
    c.send(1, &[b"GET", b"k"], t).unwrap();
    c.on_connected();
    let expected = cmds(&[&["AUTH", "u", "pw"], &["SELECT", "3"], &["GET", "k"]]);
    assert_eq!(c.pending(), expected);
    assert_eq!(c.pending_len(), expected.len());
    c.wrote(5);
    assert_eq!(c.pending(), &expected[5..]);
    c.wrote(expected.len()); // more than pending: clamped
    assert_eq!(c.pending(), b"");
    assert!(!c.wants_write() && c.wants_read());
    // Compaction keeps the unwritten part intact.
    let t = Instant::now();
    let mut c = ready(RedisConfig::default(), t);
    let value = vec![b'v'; 1000];
    let mut expected = Vec::new();
    for i in 0..200u32 {
        c.send(i, &[b"SET", b"k", &value], t).unwrap();
        encode_command(&mut expected, &[b"SET", b"k", &value]);
    }
    let mut got = Vec::new();
    while !c.pending().is_empty() {
        let n = c.pending().len().min(7919);
        got.extend_from_slice(&c.pending()[..n]);
        c.wrote(n);
    }
    assert_eq!(got, expected);
}

#[test]
fn ready_when_every_handshake_reply_is_in() {
    let t = Instant::now();
    let make = || connected("redis://u:pw@h/3", RedisConfig::default(), t);
    let ev = all_splits(&make, b"+OK\r\n+OK\r\n", t);
    assert!(ev.ready && ev.replies.is_empty() && ev.failed.is_none());
    let mut c = make();
    assert!(!c.on_read(b"+OK\r\n", t).ready);
    assert_eq!(c.phase(), Phase::Handshaking);
    assert!(c.on_read(b"+OK\r\n", t).ready);
    assert!(c.is_ready());
    // RESP3: HELLO answers with a map.
    let make = || connected("redis://:pw@h", resp3(), t);
    let hello = b"+OK\r\n%2\r\n$6\r\nserver\r\n$5\r\nredis\r\n$5\r\nproto\r\n:3\r\n";
    assert!(all_splits(&make, hello, t).ready);
}

#[test]
fn a_refused_handshake_fails_with_redis_text_and_gives_back_the_tags() {
    let t = Instant::now();
    let make = || {
        let mut c = Conn::new(&url("redis://u:bad@h/3"), RedisConfig::default(), t);
        c.send(1, &[b"GET", b"a"], t).unwrap();
        c.send(2, &[b"GET", b"b"], t).unwrap();
        c.on_connected();
        drain(&mut c);
        c
    };
    // Every pipelined command after AUTH fails too; the first error is the one reported.
    let input = b"-WRONGPASS invalid username-password pair or user is disabled.\r\n\
                  -NOAUTH Authentication required.\r\n-NOAUTH x\r\n-NOAUTH x\r\n";
    let ev = all_splits(&make, input, t);
    assert_eq!(
        ev.failed,
        Some(Failure {
            error: ConnError::Handshake {
                command: "AUTH",
                message: "WRONGPASS invalid username-password pair or user is disabled.".into()
            },
            tags: vec![1, 2]
        })
    );
    assert!(!ev.ready && ev.replies.is_empty());
    let mut c = make();
    c.on_read(input, t);
    assert!(c.is_closed() && !c.wants_read() && !c.wants_write());
    assert_eq!(
        (c.pending(), c.poll_timeout(), c.in_flight()),
        (&b""[..], None, 0)
    );
    assert_eq!(
        c.send(3, &[b"PING"], t),
        Err(Refused {
            tag: 3,
            error: SendError::Closed
        })
    );
    assert_eq!(c.subscribe(&[b"x"], t), Err(SendError::Closed));
    assert!(c.on_read(b"+OK\r\n", t).is_empty());
    assert_eq!((c.on_eof(), c.abort()), (None, None));

    let cases: &[(&str, RedisConfig, &[u8], &str, &str)] = &[
        (
            "redis://h",
            RedisConfig::default(),
            b"-NOAUTH Authentication required.\r\n",
            "PING",
            "NOAUTH Authentication required.",
        ),
        (
            "redis://h",
            RedisConfig::default(),
            b"-DENIED Redis is running in protected mode\r\n",
            "PING",
            "DENIED Redis is running in protected mode",
        ),
        (
            "redis://h",
            resp3(),
            b"-ERR unknown command 'HELLO'\r\n",
            "HELLO",
            "ERR unknown command 'HELLO'",
        ),
        (
            "redis://h/99",
            RedisConfig::default(),
            b"!21\r\nERR DB index is out\r\n\r\n",
            "SELECT",
            "ERR DB index is out\r\n",
        ),
        (
            "redis://h/1",
            RedisConfig::default(),
            b":1\r\n",
            "SELECT",
            "unexpected integer reply",
        ),
        (
            "redis://h",
            resp3(),
            b"+OK\r\n",
            "HELLO",
            "unexpected simple string reply",
        ),
        (
            "redis://h",
            RedisConfig::default(),
            b"+OK\r\n",
            "PING",
            "unexpected simple string reply",
        ),
    ];
    for (u, config, input, command, message) in cases {
        let mut c = connected(u, *config, t);
        let ev = c.on_read(input, t);
        let Some(Failure {
            error:
                ConnError::Handshake {
                    command: c2,
                    message: m2,
                },
            tags,
        }) = ev.failed
        else {
            panic!("{u}: {ev:?}")
        };
        assert_eq!((c2, m2.as_str(), tags), (*command, *message, vec![]), "{u}");
    }
    // A long error text is cut for the report.
    let mut c = connected("redis://h", RedisConfig::default(), t);
    let long = [b"-".as_slice(), &[b'E'; 2000], b"\r\n"].concat();
    let ev = c.on_read(&long, t);
    let Some(Failure {
        error: ConnError::Handshake { message, .. },
        ..
    }) = ev.failed
    else {
        panic!()
    };
    assert_eq!(message.len(), 512);
}

#[test]
fn pipelined_replies_are_matched_in_order() {
    let t = Instant::now();
    let make = || {
        let mut c = ready(RedisConfig::default(), t);
        c.send(10, &[b"GET", b"a"], t).unwrap();
        c.send(11, &[b"INCR", b"n"], t).unwrap();
        c.send_command(
            12,
            &Command::new("LRANGE").arg("l").arg_int(0).arg_int(-1),
            t,
        )
        .unwrap();
        c.send(13, &[b"GET", b"missing"], t).unwrap();
        assert_eq!(
            drain(&mut c),
            cmds(&[
                &["GET", "a"],
                &["INCR", "n"],
                &["LRANGE", "l", "0", "-1"],
                &["GET", "missing"]
            ])
        );
        c
    };
    // An array reply shaped like a pub/sub message is a reply on a normal connection.
    let input = b"$1\r\nx\r\n-WRONGTYPE Operation against a key\r\n\
                  *3\r\n$7\r\nmessage\r\n$1\r\na\r\n$1\r\nb\r\n$-1\r\n";
    let ev = all_splits(&make, input, t);
    assert_eq!(
        ev.replies,
        vec![
            (10, bulk("x")),
            (
                11,
                Value::Error(b"WRONGTYPE Operation against a key".to_vec())
            ),
            (
                12,
                Value::Array(vec![bulk("message"), bulk("a"), bulk("b")])
            ),
            (13, Value::NullBulk),
        ]
    );
    assert!(ev.pushes.is_empty() && ev.failed.is_none() && !ev.ready);
    let mut c = make();
    c.on_read(input, t);
    assert!(c.is_ready() && c.in_flight() == 0);
    // Commands sent before ready are answered after the handshake.
    let mut c = Conn::new(&url("redis://:pw@h"), RedisConfig::default(), t);
    c.send(1, &[b"PING"], t).unwrap();
    c.on_connected();
    let ev = c.on_read(b"+OK\r\n+PONG\r\n", t);
    assert!(ev.ready);
    assert_eq!(ev.replies, vec![(1, Value::SimpleString(b"PONG".to_vec()))]);
}

#[test]
fn budgets_refuse_and_free_up() {
    let t = Instant::now();
    let config = RedisConfig {
        max_in_flight: 3,
        max_pending_bytes: 64,
        ..RedisConfig::default()
    };
    let mut c = ready(config, t);
    c.send(1, &[b"GET", b"a"], t).unwrap();
    c.send(2, &[b"GET", b"b"], t).unwrap();
    c.send(3, &[b"GET", b"c"], t).unwrap();
    let refused = c.send(4, &[b"GET", b"d"], t);
    assert_eq!(
        refused,
        Err(Refused {
            tag: 4,
            error: SendError::TooManyInFlight
        })
    );
    assert_eq!(c.subscribe(&[b"x"], t), Err(SendError::TooManyInFlight));
    assert_eq!(c.on_read(b"+a\r\n", t).replies.len(), 1);
    drain(&mut c);
    c.send(4, &[b"GET", b"d"], t).unwrap();
    assert_eq!(c.on_read(b"+b\r\n+c\r\n+d\r\n", t).replies.len(), 3);
    drain(&mut c);
    // Bytes: 64 queued at most. `GET` of a 37-byte key is 57 bytes, `GET k` 20.
    let key = [b'k'; 37];
    assert_eq!(command_len(&[b"GET", &key]), 57);
    assert_eq!(command_len(&[b"GET", b"k"]), 20);
    c.send(5, &[b"GET", &key], t).unwrap();
    let refused = c.send(6, &[b"GET", b"k"], t).unwrap_err();
    assert_eq!(refused.error, SendError::OutputFull);
    c.wrote(12);
    assert_eq!(
        c.send(6, &[b"GET", b"k"], t).unwrap_err().error,
        SendError::OutputFull
    );
    c.wrote(1);
    c.send(6, &[b"GET", b"k"], t).unwrap(); // 44 + 20 = 64
    let big = Command::new("SET").arg([b'v'; 64]);
    assert_eq!(
        c.send_command(7, &big, t).unwrap_err().error,
        SendError::OutputFull
    );
    assert_eq!(c.send(8, &[], t).unwrap_err().error, SendError::Empty);
    assert_eq!(c.in_flight(), 2);
    for e in [
        SendError::Closed,
        SendError::OutputFull,
        SendError::TooManyInFlight,
        SendError::Subscriber,
        SendError::Empty,
    ] {
        assert!(!e.to_string().is_empty());
    }
}

#[test]
fn a_bad_reply_fails_the_connection_with_the_tags() {
    let t = Instant::now();
    let mut c = ready(RedisConfig::default(), t);
    c.send(1, &[b"GET", b"a"], t).unwrap();
    c.send(2, &[b"GET", b"b"], t).unwrap();
    let ev = c.on_read(b"+one\r\n+two\n", t);
    assert_eq!(ev.replies, vec![(1, Value::SimpleString(b"one".to_vec()))]);
    assert_eq!(
        ev.failed,
        Some(Failure {
            error: ConnError::Protocol(RespError::BadLineEnding),
            tags: vec![2]
        })
    );
    // Over a limit.
    let config = RedisConfig {
        limits: crate::proto::resp::Limits {
            max_bulk_len: 10,
            ..Default::default()
        },
        ..RedisConfig::default()
    };
    let mut c = ready(config, t);
    c.send(1, &[b"GET", b"a"], t).unwrap();
    let ev = c.on_read(b"$11\r\n", t);
    assert_eq!(
        ev.failed.unwrap().error,
        ConnError::Protocol(RespError::BulkTooLong { len: 11, limit: 10 })
    );
}

#[test]
fn errors_and_debug_say_what_they_are() {
    let e = ConnError::Handshake {
        command: "AUTH",
        message: "WRONGPASS invalid username-password pair".into(),
    };
    assert_eq!(
        e.to_string(),
        "Redis refused AUTH: WRONGPASS invalid username-password pair"
    );
    let t = Instant::now();
    let c = Conn::new(&url("redis://u:hunter2@h"), RedisConfig::default(), t);
    let shown = format!("{c:?}");
    assert!(
        shown.contains("Connecting") && !shown.contains("hunter2"),
        "{shown}"
    );
    assert_eq!(c.protocol(), Protocol::Resp2);
}

mod pubsub;
mod timeouts;
