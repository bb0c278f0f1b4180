//! Pub/sub on RESP2 and RESP3, and replies out of step.

use super::*;

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
