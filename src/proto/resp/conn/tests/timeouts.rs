//! Deadlines, and the end of a connection.

use super::*;

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
