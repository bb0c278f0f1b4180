//! The backplane's publish script and stream encoding against a real `redis-server`
//! (Debian's package), started by the test on a free loopback port with its own temp dir
//! and no persistence. The client is a blocking `TcpStream` speaking RESP through
//! `pushwire::proto::resp`.

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::process::{Child, Command as Process, Stdio};
use std::time::{Duration, Instant};

use pushwire::proto::backplane::hooks::parse_entries;
use pushwire::proto::backplane::{
    parse_publish_reply, parse_range, publish_batch_command, publish_command, range_command,
    Announced, BackplaneError, Keys, Publish, PublishBatch,
};
use pushwire::proto::resp::{Command, Limits, Parser, Value};

/// A `redis-server` of its own, killed on drop.
struct Redis {
    child: Child,
    port: u16,
    dir: std::path::PathBuf,
}

impl Redis {
    fn start() -> Redis {
        let port = TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let dir =
            std::env::temp_dir().join(format!("pushwire-redis-{}-{port}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let child = Process::new("redis-server")
            .args(["--port", &port.to_string(), "--bind", "127.0.0.1"])
            .args(["--save", "", "--appendonly", "no"])
            .arg("--dir")
            .arg(&dir)
            .stdout(Stdio::null())
            .spawn()
            .expect("redis-server (Debian package redis-server) must be installed");
        let deadline = Instant::now() + Duration::from_secs(10);
        while TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(Instant::now() < deadline, "redis-server did not start");
            std::thread::sleep(Duration::from_millis(20));
        }
        Redis { child, port, dir }
    }

    fn client(&self) -> Client {
        let s = TcpStream::connect(("127.0.0.1", self.port)).unwrap();
        s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
        Client {
            s,
            buf: Vec::new(),
            parser: Parser::new(Limits::default()),
        }
    }
}

impl Drop for Redis {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// A blocking RESP client.
struct Client {
    s: TcpStream,
    buf: Vec<u8>,
    parser: Parser,
}

impl Client {
    fn send(&mut self, cmd: &Command) {
        self.s.write_all(&cmd.to_bytes()).unwrap();
    }

    fn reply(&mut self) -> Value {
        loop {
            let (used, value) = self.parser.advance(&self.buf).unwrap();
            self.buf.drain(..used);
            if let Some(v) = value {
                return v;
            }
            let mut chunk = [0u8; 16384];
            let n = self.s.read(&mut chunk).unwrap();
            assert!(n > 0, "redis closed the connection");
            self.buf.extend_from_slice(&chunk[..n]);
        }
    }

    fn call(&mut self, cmd: &Command) -> Value {
        self.send(cmd);
        self.reply()
    }

    /// Publishes through the script: EVALSHA, and EVAL once when it is not loaded.
    fn publish(&mut self, keys: &Keys, p: &Publish<'_>) -> u64 {
        match parse_publish_reply(&self.call(&publish_command(keys, p, false))) {
            Ok(id) => id,
            Err(BackplaneError::NoScript) => {
                parse_publish_reply(&self.call(&publish_command(keys, p, true))).unwrap()
            }
            Err(e) => panic!("{e}"),
        }
    }
}

fn unix_micros() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_micros() as u64
}

#[test]
fn the_publish_script_assigns_ids_stores_and_announces() {
    let redis = Redis::start();
    let keys = Keys::default();
    let mut c = redis.client();
    let mut sub = redis.client();
    sub.send(&Command::new("SUBSCRIBE").arg(keys.channel("t")));
    let confirm = sub.reply();
    assert!(
        matches!(&confirm, Value::Array(v) if v.len() == 3),
        "{confirm:?}"
    );

    let before = unix_micros();
    let p = |data: &'static [u8], event| Publish {
        topic: "t",
        event,
        data,
        json: false,
        published_ms: 1_700_000_000_123,
        max_events: 3,
    };
    // The first publish of a topic: EVALSHA is refused (NOSCRIPT), EVAL loads it, and the
    // id is Redis's clock in microseconds.
    let first = c.publish(&keys, &p(b"zero", Some("greet")));
    assert!(
        first >= before - 5_000_000 && first <= unix_micros() + 5_000_000,
        "{first}"
    );
    let mut ids = vec![first];
    for data in [&b"one"[..], b"two \0 binary\r\n", b"three", b"four"] {
        ids.push(c.publish(&keys, &p(data, None)));
    }
    assert_eq!(
        ids,
        (first..first + 5).collect::<Vec<_>>(),
        "then +1 per publish"
    );

    // Every publish was announced, decodable, in order.
    for (i, id) in ids.iter().enumerate() {
        let Value::Array(msg) = sub.reply() else {
            panic!()
        };
        assert_eq!(msg[0].as_bytes(), Some(&b"message"[..]));
        let a = Announced::decode(msg[2].as_bytes().unwrap()).unwrap();
        assert_eq!(a.id, *id);
        assert_eq!(a.published_ms, 1_700_000_000_123);
        assert_eq!(a.event.as_deref(), (i == 0).then_some("greet"));
    }

    // The stream keeps the last 3 (MAXLEN), read after a cursor.
    let all = parse_range(&c.call(&range_command(&keys, "t", 0, 100))).unwrap();
    let got: Vec<_> = all.iter().map(|e| e.id).collect();
    assert_eq!(got, ids[2..].to_vec());
    assert_eq!(all[0].data, b"two \0 binary\r\n");
    assert_eq!(all[0].event, None);
    let after = parse_range(&c.call(&range_command(&keys, "t", ids[3], 100))).unwrap();
    assert_eq!(after.iter().map(|e| e.id).collect::<Vec<_>>(), vec![ids[4]]);
    assert!(
        parse_range(&c.call(&range_command(&keys, "t", ids[4], 100)))
            .unwrap()
            .is_empty()
    );
    let two = parse_range(&c.call(&range_command(&keys, "t", 0, 2))).unwrap();
    assert_eq!(two.len(), 2, "COUNT");

    // Redis loses its data: the next id starts from its clock again, ahead of the old
    // ones, so resuming clients see the gap instead of reused ids.
    assert_eq!(
        c.call(&Command::new("FLUSHALL")).as_bytes(),
        Some(&b"OK"[..])
    );
    std::thread::sleep(Duration::from_millis(10));
    let after_loss = c.publish(&keys, &p(b"new", None));
    assert!(after_loss > ids[4] + 1, "{after_loss} after {}", ids[4]);
}

#[test]
fn topics_are_independent_and_keys_carry_a_prefix() {
    let redis = Redis::start();
    let mut c = redis.client();
    let (a, b) = (Keys::new("one:"), Keys::new("two:"));
    let p = |topic| Publish {
        topic,
        event: None,
        data: b"x",
        json: false,
        published_ms: 1,
        max_events: 10,
    };
    let a1 = c.publish(&a, &p("t"));
    let a2 = c.publish(&a, &p("t"));
    let b1 = c.publish(&b, &p("t"));
    let u1 = c.publish(&a, &p("u"));
    assert_eq!(a2, a1 + 1);
    assert_ne!(b1, a2 + 1, "another prefix is another topic");
    assert_eq!(
        parse_range(&c.call(&range_command(&a, "t", 0, 10)))
            .unwrap()
            .len(),
        2
    );
    assert_eq!(
        parse_range(&c.call(&range_command(&b, "t", 0, 10)))
            .unwrap()
            .len(),
        1
    );
    assert_eq!(
        parse_range(&c.call(&range_command(&a, "u", 0, 10))).unwrap()[0].id,
        u1
    );
    let keys = c.call(&Command::new("KEYS").arg("*"));
    let Value::Array(keys) = keys else { panic!() };
    let mut names: Vec<_> = keys
        .iter()
        .map(|k| String::from_utf8_lossy(k.as_bytes().unwrap()).into_owned())
        .collect();
    names.sort();
    assert_eq!(
        names,
        [
            "one:{t}:events",
            "one:{t}:seq",
            "one:{u}:events",
            "one:{u}:seq",
            "two:{t}:events",
            "two:{t}:seq"
        ]
    );
}

/// The kind of an event (JSON or text) goes through both scripts: into the pub/sub
/// payload, the stream entry and the webhook outbox entry, for named and unnamed events.
#[test]
fn json_events_keep_their_kind_through_both_scripts() {
    let redis = Redis::start();
    let keys = Keys::default();
    let mut c = redis.client();
    let mut sub = redis.client();
    sub.send(&Command::new("SUBSCRIBE").arg(keys.channel("j")));
    sub.reply();
    // One webhook endpoint on the topic, so the scripts write outbox entries too.
    c.call(&Command::new("SADD").arg(keys.topic_hooks("j")).arg("7"));
    let one = |data: &'static [u8], event, json| Publish {
        topic: "j",
        event,
        data,
        json,
        published_ms: 5,
        max_events: 100,
    };
    c.publish(&keys, &one(br#"{"msg":"hi"}"#, None, true));
    c.publish(&keys, &one(b"[1]", Some("up"), true));
    c.publish(&keys, &one(b"plain", None, false));
    let datas: [&[u8]; 2] = [b"2", b"{}"];
    let batch = PublishBatch {
        topic: "j",
        event: Some("b"),
        datas: &datas,
        json: true,
        published_ms: 6,
        max_events: 100,
    };
    let mut reply = c.call(&publish_batch_command(&keys, &batch, false));
    if matches!(parse_publish_reply(&reply), Err(BackplaneError::NoScript)) {
        reply = c.call(&publish_batch_command(&keys, &batch, true));
    }
    parse_publish_reply(&reply).unwrap();

    let want = [
        (&br#"{"msg":"hi"}"#[..], None, true),
        (b"[1]", Some("up"), true),
        (b"plain", None, false),
        (b"2", Some("b"), true),
        (b"{}", Some("b"), true),
    ];
    let kinds = |evs: &[Announced]| -> Vec<(Vec<u8>, Option<String>, bool)> {
        evs.iter()
            .map(|e| (e.data.clone(), e.event.clone(), e.json))
            .collect()
    };
    let want: Vec<_> = want
        .iter()
        .map(|(d, e, j)| (d.to_vec(), e.map(String::from), *j))
        .collect();
    let mut live = Vec::new();
    for _ in 0..want.len() {
        let Value::Array(msg) = sub.reply() else {
            panic!()
        };
        live.push(Announced::decode(msg[2].as_bytes().unwrap()).unwrap());
    }
    assert_eq!(kinds(&live), want, "pub/sub");
    let stored = parse_range(&c.call(&range_command(&keys, "j", 0, 100))).unwrap();
    assert_eq!(kinds(&stored), want, "stream");
    let outbox = c.call(&Command::new("XRANGE").arg(keys.outbox()).arg("-").arg("+"));
    // XRANGE answers the entries themselves; parse_entries reads XREADGROUP's shape.
    let read = Value::Array(vec![Value::Array(vec![
        Value::BulkString(keys.outbox().into_bytes()),
        outbox,
    ])]);
    let (entries, _) = parse_entries(&read).unwrap();
    let got: Vec<_> = entries
        .iter()
        .map(|e| (e.data.clone(), e.event.clone(), e.json))
        .collect();
    assert_eq!(got, want, "outbox");
}
