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
fn resp2_subscriber_connection() {
    let t = Instant::now();
    let make = || {
        let mut c = ready(RedisConfig::default(), t);
        c.send(1, &[b"LRANGE", b"l", b"0", b"-1"], t).unwrap();
        c.subscribe(&[b"a", b"b"], t).unwrap();
        c.psubscribe(&[b"n.*"], t).unwrap();
        assert!(c.is_subscriber() && !c.is_subscribed(b"a"));
        assert_eq!(
            c.send(2, &[b"GET", b"x"], t).unwrap_err().error,
            SendError::Subscriber
        );
        assert_eq!(c.subscribe(&[], t), Ok(()), "nothing to send");
        assert_eq!(
            drain(&mut c),
            cmds(&[
                &["LRANGE", "l", "0", "-1"],
                &["SUBSCRIBE", "a", "b"],
                &["PSUBSCRIBE", "n.*"]
            ])
        );
        c
    };
    let input: &[u8] = b"\
        *3\r\n$7\r\nmessage\r\n$1\r\na\r\n$1\r\nz\r\n\
        *3\r\n$9\r\nsubscribe\r\n$1\r\na\r\n:1\r\n\
        *3\r\n$9\r\nsubscribe\r\n$1\r\nb\r\n:2\r\n\
        *3\r\n$7\r\nmessage\r\n$1\r\nb\r\n$5\r\nhello\r\n\
        *3\r\n$10\r\npsubscribe\r\n$3\r\nn.*\r\n:3\r\n\
        *4\r\n$8\r\npmessage\r\n$3\r\nn.*\r\n$3\r\nn.x\r\n$0\r\n\r\n\
        *3\r\n$7\r\nmessage\r\n$1\r\na\r\n$3\r\n\r\n\n\r\n";
    let ev = all_splits(&make, input, t);
    assert_eq!(ev.failed, None);
    // The first array answers LRANGE, sent before SUBSCRIBE, whatever it looks like.
    assert_eq!(
        ev.replies,
        vec![(1, Value::Array(vec![bulk("message"), bulk("a"), bulk("z")]))]
    );
    let sub = |c: &str, n| Push::Subscribed {
        channel: c.into(),
        pattern: false,
        count: n,
    };
    assert_eq!(
        ev.pushes,
        vec![
            sub("a", 1),
            sub("b", 2),
            Push::Message {
                channel: b"b".to_vec(),
                payload: b"hello".to_vec()
            },
            Push::Subscribed {
                channel: b"n.*".to_vec(),
                pattern: true,
                count: 3
            },
            Push::PMessage {
                pattern: b"n.*".to_vec(),
                channel: b"n.x".to_vec(),
                payload: vec![]
            },
            Push::Message {
                channel: b"a".to_vec(),
                payload: b"\r\n\n".to_vec()
            },
        ]
    );
    let mut c = make();
    c.on_read(input, t);
    assert!(c.is_subscribed(b"a") && c.is_subscribed(b"b") && c.is_psubscribed(b"n.*"));
    assert!(!c.is_subscribed(b"n.*") && !c.is_psubscribed(b"a"));
    let mut channels: Vec<&[u8]> = c.channels().collect();
    channels.sort();
    assert_eq!(channels, vec![&b"a"[..], b"b"]);
    assert_eq!(c.patterns().collect::<Vec<_>>(), vec![&b"n.*"[..]]);
    assert_eq!(c.in_flight(), 0);
    // Unsubscribing: inactive only once Redis confirms.
    c.unsubscribe(&[b"a"], t).unwrap();
    c.punsubscribe(&[b"n.*"], t).unwrap();
    assert_eq!(
        drain(&mut c),
        cmds(&[&["UNSUBSCRIBE", "a"], &["PUNSUBSCRIBE", "n.*"]])
    );
    assert!(c.is_subscribed(b"a"));
    let ev = c.on_read(
        b"*3\r\n$11\r\nunsubscribe\r\n$1\r\na\r\n:2\r\n\
          *3\r\n$12\r\npunsubscribe\r\n$3\r\nn.*\r\n:1\r\n",
        t,
    );
    assert_eq!(
        ev.pushes,
        vec![
            Push::Unsubscribed {
                channel: b"a".to_vec(),
                pattern: false,
                count: 2
            },
            Push::Unsubscribed {
                channel: b"n.*".to_vec(),
                pattern: true,
                count: 1
            }
        ]
    );
    assert!(!c.is_subscribed(b"a") && c.is_subscribed(b"b") && !c.is_psubscribed(b"n.*"));
    // A failure forgets every subscription.
    let failure = c.on_eof().unwrap();
    assert_eq!(failure.error, ConnError::Closed);
    assert_eq!(c.channels().count(), 0);
}

#[test]
fn resp3_pushes_apart_from_replies() {
    let t = Instant::now();
    let make = || {
        let mut c = ready(resp3(), t);
        c.subscribe(&[b"a"], t).unwrap();
        c.send(1, &[b"GET", b"k"], t).unwrap();
        assert!(!c.is_subscriber(), "RESP3 takes commands while subscribed");
        c.send(2, &[b"PUBLISH", b"a", b"hi"], t).unwrap();
        drain(&mut c);
        c
    };
    let input: &[u8] = b"\
        >3\r\n$9\r\nsubscribe\r\n$1\r\na\r\n:1\r\n\
        $1\r\nv\r\n\
        >3\r\n$7\r\nmessage\r\n$1\r\na\r\n$2\r\nhi\r\n\
        :1\r\n\
        >2\r\n$10\r\ninvalidate\r\n*1\r\n$1\r\nk\r\n\
        >2\r\n$4\r\npong\r\n$0\r\n\r\n";
    let ev = all_splits(&make, input, t);
    assert_eq!(ev.failed, None);
    assert_eq!(ev.replies, vec![(1, bulk("v")), (2, Value::Integer(1))]);
    assert_eq!(
        ev.pushes,
        vec![
            Push::Subscribed {
                channel: b"a".to_vec(),
                pattern: false,
                count: 1
            },
            Push::Message {
                channel: b"a".to_vec(),
                payload: b"hi".to_vec()
            },
            Push::Other(vec![bulk("invalidate"), Value::Array(vec![bulk("k")])]),
            Push::Other(vec![bulk("pong"), bulk("")]),
        ]
    );
    // A push may come before the handshake's reply, too.
    let mut c = connected("redis://h", resp3(), t);
    let ev = c.on_read(b">1\r\n$5\r\nhello\r\n%0\r\n", t);
    assert!(ev.ready);
    assert_eq!(ev.pushes, vec![Push::Other(vec![bulk("hello")])]);
}

#[test]
fn a_refused_subscribe_is_reported_and_changes_nothing() {
    let t = Instant::now();
    for config in [RedisConfig::default(), resp3()] {
        let mut c = ready(config, t);
        c.subscribe(&[b"secret", b"other"], t).unwrap();
        let noperm = b"-NOPERM this user has no permissions to access one of the channels \
                       used as arguments\r\n";
        let ev = c.on_read(noperm, t);
        assert_eq!(ev.failed, None);
        let [Push::Refused {
            command,
            channels,
            error,
        }] = &ev.pushes[..]
        else {
            panic!("{ev:?}")
        };
        assert_eq!(*command, "SUBSCRIBE");
        assert_eq!(channels, &vec![b"secret".to_vec(), b"other".to_vec()]);
        assert!(error.starts_with(b"NOPERM"));
        assert!(!c.is_subscribed(b"secret") && c.in_flight() == 0 && c.is_ready());
        assert_eq!(c.subs.len(), 0, "nothing pending is left behind");
    }
}

#[test]
fn replies_out_of_step_fail_the_connection() {
    let t = Instant::now();
    let out_of_step = |config: RedisConfig, setup: &dyn Fn(&mut Conn), input: &[u8]| {
        let mut c = ready(config, t);
        setup(&mut c);
        let ev = c.on_read(input, t);
        match ev.failed {
            Some(Failure {
                error: ConnError::OutOfStep(why),
                ..
            }) => why,
            other => panic!("{other:?}"),
        }
    };
    let none = |_: &mut Conn| {};
    assert_eq!(
        out_of_step(RedisConfig::default(), &none, b"+OK\r\n"),
        "a reply with no command in flight"
    );
    // A message on a connection that never subscribed (RESP2): a reply to nothing.
    assert_eq!(
        out_of_step(
            RedisConfig::default(),
            &none,
            b"*3\r\n$7\r\nmessage\r\n$1\r\na\r\n$1\r\nb\r\n"
        ),
        "a reply with no command in flight"
    );
    let sub_a = |c: &mut Conn| c.subscribe(&[b"a"], t).unwrap();
    assert_eq!(
        out_of_step(
            RedisConfig::default(),
            &sub_a,
            b"*3\r\n$9\r\nsubscribe\r\n$1\r\nb\r\n:1\r\n"
        ),
        "a subscription confirmation that was not asked for"
    );
    assert_eq!(
        out_of_step(
            RedisConfig::default(),
            &sub_a,
            b"*3\r\n$11\r\nunsubscribe\r\n$1\r\na\r\n:0\r\n"
        ),
        "a subscription confirmation that was not asked for"
    );
    assert_eq!(
        out_of_step(RedisConfig::default(), &sub_a, b"*1\r\n:1\r\n"),
        "an array that is not pub/sub on a subscriber connection"
    );
    assert_eq!(
        out_of_step(RedisConfig::default(), &sub_a, b"+OK\r\n"),
        "a reply where a subscription confirmation was due"
    );
    assert_eq!(
        out_of_step(
            RedisConfig::default(),
            &sub_a,
            b"*2\r\n$4\r\npong\r\n$0\r\n\r\n"
        ),
        "a pong without a ping"
    );
    assert_eq!(
        out_of_step(
            RedisConfig::default(),
            &sub_a,
            b"*2\r\n$7\r\nmessage\r\n$1\r\na\r\n"
        ),
        "malformed pub/sub message"
    );
    assert_eq!(
        out_of_step(
            resp3(),
            &none,
            b">3\r\n$9\r\nsubscribe\r\n$1\r\na\r\n:1\r\n"
        ),
        "a subscription confirmation that was not asked for"
    );
    // RESP3: a reply while the confirmation is due is out of order.
    assert_eq!(
        out_of_step(resp3(), &sub_a, b"$1\r\nv\r\n"),
        "a reply where a subscription confirmation was due"
    );
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
fn connect_timeout_covers_the_connect_and_the_handshake() {
    let t = Instant::now();
    let s = Duration::from_secs;
    let mut c = Conn::new(&url("redis://h"), RedisConfig::default(), t);
    assert_eq!(c.poll_timeout(), Some(t + s(5)));
    assert_eq!(c.handle_timeout(t + s(4)), None);
    assert_eq!(
        c.handle_timeout(t + s(5)),
        Some(Failure {
            error: ConnError::ConnectTimeout,
            tags: vec![]
        })
    );
    assert!(c.is_closed());
    assert_eq!(c.poll_timeout(), None);
    // Connected, but the handshake is not answered.
    let mut c = Conn::new(&url("redis://h"), RedisConfig::default(), t);
    c.send(7, &[b"GET", b"k"], t + s(1)).unwrap();
    c.on_connected();
    assert_eq!(c.poll_timeout(), Some(t + s(5)));
    let f = c.handle_timeout(t + s(6)).unwrap();
    assert_eq!((f.error, f.tags), (ConnError::ConnectTimeout, vec![7]));
    // Ready in time: the connect deadline is gone.
    let mut c = Conn::new(&url("redis://h"), RedisConfig::default(), t);
    c.on_connected();
    assert!(c.on_read(b"+PONG\r\n", t + s(4)).ready);
    assert_eq!(c.poll_timeout(), Some(t + s(4 + 30)), "the keepalive");
    assert_eq!(c.handle_timeout(t + s(6)), None);
    assert!(c.is_ready());
}

#[test]
fn the_oldest_command_unanswered_too_long_fails_the_connection() {
    let t = Instant::now();
    let s = Duration::from_secs;
    let mut c = ready(RedisConfig::default(), t);
    c.send(1, &[b"GET", b"a"], t + s(1)).unwrap();
    c.send(2, &[b"GET", b"b"], t + s(2)).unwrap();
    assert_eq!(c.poll_timeout(), Some(t + s(11)));
    c.on_read(b"+a\r\n", t + s(5));
    assert_eq!(
        c.poll_timeout(),
        Some(t + s(12)),
        "now the second is the oldest"
    );
    assert_eq!(c.handle_timeout(t + s(11)), None);
    assert_eq!(
        c.handle_timeout(t + s(12)),
        Some(Failure {
            error: ConnError::ReplyTimeout,
            tags: vec![2]
        })
    );
    // Subscription confirmations are waited for the same way.
    let mut c = ready(RedisConfig::default(), t);
    c.subscribe(&[b"a"], t + s(1)).unwrap();
    assert_eq!(c.poll_timeout(), Some(t + s(11)));
    assert_eq!(
        c.handle_timeout(t + s(11)).unwrap().error,
        ConnError::ReplyTimeout
    );
}

#[test]
fn keepalive_pings_a_quiet_connection() {
    let t = Instant::now();
    let s = Duration::from_secs;
    for (config, pong) in [
        (RedisConfig::default(), &b"+PONG\r\n"[..]),
        (resp3(), b"+PONG\r\n"),
    ] {
        let mut c = ready(config, t);
        assert_eq!(c.poll_timeout(), Some(t + s(30)));
        assert_eq!(c.handle_timeout(t + s(29)), None);
        assert_eq!(c.pending(), b"");
        assert_eq!(c.handle_timeout(t + s(30)), None);
        assert!(c.wants_write());
        assert_eq!(drain(&mut c), cmd(&["PING"]));
        assert_eq!(
            c.poll_timeout(),
            Some(t + s(40)),
            "the PING's reply timeout"
        );
        let ev = c.on_read(pong, t + s(31));
        assert!(
            ev.is_empty(),
            "the pong is not the caller's business: {ev:?}"
        );
        assert_eq!(c.poll_timeout(), Some(t + s(61)));
        // Bytes from Redis postpone it.
        c.send(1, &[b"GET", b"k"], t + s(40)).unwrap();
        c.on_read(b"+v\r\n", t + s(50));
        assert_eq!(c.poll_timeout(), Some(t + s(80)));
    }
    // A RESP2 subscriber answers with an array.
    let mut c = ready(RedisConfig::default(), t);
    c.subscribe(&[b"a"], t).unwrap();
    c.on_read(b"*3\r\n$9\r\nsubscribe\r\n$1\r\na\r\n:1\r\n", t + s(1));
    assert_eq!(c.handle_timeout(t + s(31)), None);
    assert_eq!(drain(&mut c), cmds(&[&["SUBSCRIBE", "a"], &["PING"]]));
    let ev = c.on_read(b"*2\r\n$4\r\npong\r\n$0\r\n\r\n", t + s(32));
    assert!(ev.is_empty() && c.in_flight() == 0, "{ev:?}");
    // Unanswered: the reply timeout.
    assert_eq!(c.handle_timeout(t + s(62)), None);
    assert_eq!(
        c.handle_timeout(t + s(72)).unwrap().error,
        ConnError::ReplyTimeout
    );
    // Switched off.
    let mut c = ready(
        RedisConfig {
            keepalive: None,
            ..RedisConfig::default()
        },
        t,
    );
    assert_eq!(c.poll_timeout(), None);
    assert_eq!(c.handle_timeout(t + s(1000)), None);
}

#[test]
fn every_tag_comes_back_when_the_connection_ends() {
    let t = Instant::now();
    type End = fn(&mut Conn) -> Option<Failure<u32>>;
    let ends: [(End, ConnError); 3] = [
        (|c| c.on_eof(), ConnError::Closed),
        (
            |c| c.on_error("reset by peer".into()),
            ConnError::Io("reset by peer".into()),
        ),
        (|c| c.abort(), ConnError::Aborted),
    ];
    for (end, error) in ends {
        let mut c = ready(RedisConfig::default(), t);
        for tag in [5, 3, 9] {
            c.send(tag, &[b"GET", b"k"], t).unwrap();
        }
        c.on_read(b"$1\r\n", t); // mid-reply
        assert_eq!(
            end(&mut c),
            Some(Failure {
                error: error.clone(),
                tags: vec![5, 3, 9]
            })
        );
        assert!(c.is_closed());
        assert_eq!(end(&mut c), None, "once");
        assert_eq!(c.handle_timeout(t + Duration::from_secs(99)), None);
        assert!(!error.to_string().is_empty());
    }
    // Refused before connecting.
    let mut c = Conn::new(&url("redis://h"), RedisConfig::default(), t);
    c.send(1, &[b"PING"], t).unwrap();
    let f = c.on_error("connection refused".into()).unwrap();
    assert_eq!(f.tags, vec![1]);
    assert_eq!(
        f.error.to_string(),
        "Redis connection failed: connection refused"
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
