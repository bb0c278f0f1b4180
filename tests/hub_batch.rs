//! Issue 15: the hub's batch publish, `POST /topics/{t}` with
//! `Content-Type: application/x-ndjson`, against the hub example as a real process on
//! loopback: 201 with the ids, all or nothing (a bad line is a 400 naming it, and nothing
//! is stored), CRLF lines, the batch limit, subscribers over WebSocket, SSE and long-poll
//! getting every event in order, a batch surviving a restart with a data directory, and a
//! batch through the Redis backplane.

mod util;

#[path = "util/redis.rs"]
mod redis_server;

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::thread;
use std::time::{Duration, Instant};

use redis_server::RedisServer;
use util::{connect, get, json_ids, read_response, start_hub, Resp, WsClient};

/// `POST /topics/{topic}{query}` with this content type and raw body.
fn post_typed(addr: SocketAddr, path: &str, content_type: &str, body: &[u8]) -> Resp {
    let mut s = connect(addr);
    let head = format!(
        "POST {path} HTTP/1.1\r\nHost: t\r\nContent-Type: {content_type}\r\nContent-Length: {}\r\n\r\n",
        body.len()
    );
    s.write_all(head.as_bytes()).unwrap();
    s.write_all(body).unwrap();
    read_response(&mut s, &mut Vec::new(), false).expect("a response")
}

fn ndjson(addr: SocketAddr, path: &str, body: &[u8]) -> Resp {
    post_typed(addr, path, "application/x-ndjson", body)
}

/// The ids of a 201 batch answer, checked for its shape.
fn created_ids(r: &Resp, topic: &str) -> Vec<u64> {
    assert_eq!(r.status, 201, "{}", r.text());
    assert_eq!(r.header("content-type"), Some("application/json"));
    let text = r.text();
    let prefix = format!("{{\"topic\":\"{topic}\",\"ids\":[");
    assert!(text.starts_with(&prefix) && text.ends_with("]}"), "{text}");
    let ids: Vec<u64> = text[prefix.len()..text.len() - 2]
        .split(',')
        .map(|n| n.parse().unwrap())
        .collect();
    for w in ids.windows(2) {
        assert_eq!(w[1], w[0] + 1, "consecutive ids: {text}");
    }
    ids
}

/// `(id, event, data)` of every kept event of `topic` after `since`; `data` is the JSON
/// value as `/events` writes it (NDJSON lines are JSON events: their value itself).
fn events(addr: SocketAddr, topic: &str, since: u64) -> Vec<(u64, String, String)> {
    let r = get(addr, &format!("/topics/{topic}/events?since={since}"));
    assert_eq!(r.status, 200);
    let text = r.text();
    let ids = json_ids(&text);
    let mut out = Vec::new();
    let mut rest = text.as_str();
    for id in ids {
        let at = rest.find("\"event\":").unwrap() + 8;
        rest = &rest[at..];
        let event = if rest.starts_with("null") {
            "null".to_owned()
        } else {
            rest[1..rest[1..].find('"').unwrap() + 1].to_owned()
        };
        // The data as the JSON value written (a JSON event's value, a text event's string).
        let at = rest.find("\"data\":").unwrap() + 7;
        rest = &rest[at..];
        let (mut depth, mut in_str, mut esc, mut end) = (0, false, false, rest.len());
        for (i, c) in rest.char_indices() {
            match c {
                _ if esc => esc = false,
                '\\' if in_str => esc = true,
                '"' => in_str = !in_str,
                _ if in_str => {}
                '{' | '[' => depth += 1,
                '}' | ']' | ',' if depth == 0 => {
                    end = i;
                    break;
                }
                '}' | ']' => depth -= 1,
                _ => {}
            }
        }
        let data = rest[..end].to_owned();
        rest = &rest[end..];
        out.push((id, event, data));
    }
    out
}

fn publish_one(addr: SocketAddr, topic: &str) -> u64 {
    let r = util::post(addr, &format!("/topics/{topic}"), "one");
    assert_eq!(r.status, 201, "{}", r.text());
    util::json_u64(&r.text(), "id").unwrap()
}

#[test]
fn a_batch_is_answered_with_its_ids_and_every_line_is_an_event() {
    let hub = start_hub(&[]);
    let a = hub.addr;
    let before = publish_one(a, "b");
    let r = ndjson(a, "/topics/b?event=up", b"{\"n\":1}\n{\"n\":2}\n[3]\n");
    let ids = created_ids(&r, "b");
    assert_eq!(ids, [before + 1, before + 2, before + 3]);
    let want: Vec<(u64, String, String)> = ids
        .iter()
        .zip(["{\"n\":1}", "{\"n\":2}", "[3]"])
        .map(|(id, d)| (*id, "up".to_owned(), d.to_owned()))
        .collect();
    assert_eq!(events(a, "b", before), want);

    // CRLF lines, a last line without a newline, a parameter, the type in any case.
    let r = post_typed(
        a,
        "/topics/b",
        "Application/X-NDJSON; charset=UTF-8",
        b"\"x\"\r\n\"y\"\r\n7",
    );
    let crlf = created_ids(&r, "b");
    assert_eq!(crlf.len(), 3);
    let got: Vec<String> = events(a, "b", crlf[0] - 1)
        .into_iter()
        .map(|e| e.2)
        .collect();
    assert_eq!(got, ["\"x\"", "\"y\"", "7"]);
    // One line: a batch of one.
    assert_eq!(created_ids(&ndjson(a, "/topics/b", b"1\n"), "b").len(), 1);

    // Another type: one event, newlines and all (unchanged single publish).
    let r = post_typed(a, "/topics/b", "text/plain", b"a\nb\n");
    assert_eq!(r.status, 201);
    let id = util::json_u64(&r.text(), "id").unwrap();
    assert!(r.text().contains("\"id\":"));
    assert_eq!(events(a, "b", id - 1)[0].2, "\"a\\nb\\n\"");
}

#[test]
fn a_bad_line_refuses_the_whole_batch_and_stores_nothing() {
    let hub = start_hub(&["--max-batch", "3"]);
    let a = hub.addr;
    let last = publish_one(a, "r");
    // (content type, body) -> (status, message)
    let table: &[(&str, &[u8], u16, &str)] = &[
        (
            "application/x-ndjson",
            b"1\n2\n\xff\xfe\n",
            400,
            "line 3: not UTF-8 (byte 1)",
        ),
        (
            "application/x-ndjson",
            b"1\n\n2\n",
            400,
            "line 2: empty line",
        ),
        (
            "application/x-ndjson",
            b"1\r\n\r\n",
            400,
            "line 2: empty line",
        ),
        (
            "application/x-ndjson",
            b"1\n2\n\n",
            400,
            "line 3: empty line",
        ),
        ("application/x-ndjson", b"\n", 400, "line 1: empty line"),
        (
            "application/x-ndjson",
            b"1\n{a}\n",
            400,
            "line 2: invalid JSON at byte 1: expected a string member name",
        ),
        (
            "application/x-ndjson",
            b"[1,]\n",
            400,
            "line 1: invalid JSON at byte 3: expected a value",
        ),
        (
            "application/json; charset=latin1",
            b"1",
            415,
            "application/json is UTF-8: charset=utf-8",
        ),
        (
            "application/json",
            b"{\"msg\" 1}",
            400,
            "invalid JSON at byte 7: expected ':'",
        ),
        (
            "application/x-ndjson",
            b"",
            400,
            "empty batch: the body has no line",
        ),
        (
            "application/x-ndjson",
            b"1\n2\n3\n4\n",
            413,
            "too many events: at most 3 lines per batch",
        ),
        (
            "application/x-ndjson; charset=latin1",
            b"1\n",
            415,
            "application/x-ndjson is UTF-8: charset=utf-8",
        ),
    ];
    for &(ct, body, status, msg) in table {
        let r = post_typed(a, "/topics/r", ct, body);
        assert_eq!(
            (r.status, r.text()),
            (status, format!("{msg}\n")),
            "{body:?}"
        );
    }
    let r = ndjson(a, "/topics/r?event=a%20b", b"1\n");
    assert_eq!(r.status, 400);
    assert!(r.text().starts_with("bad event name"), "{}", r.text());
    // Nothing of any of them was stored: the next id follows the last one.
    assert!(events(a, "r", last).is_empty());
    assert_eq!(publish_one(a, "r"), last + 1);
    // At the limit: accepted.
    assert_eq!(
        created_ids(&ndjson(a, "/topics/r", b"1\n2\n3"), "r").len(),
        3
    );
}

/// Reads from `s` until `done` says the bytes so far are complete.
fn read_until(s: &mut TcpStream, buf: &mut Vec<u8>, done: impl Fn(&[u8]) -> bool) {
    let deadline = Instant::now() + Duration::from_secs(10);
    let mut tmp = [0u8; 16384];
    while !done(buf) {
        assert!(
            Instant::now() < deadline,
            "timed out: {}",
            String::from_utf8_lossy(buf)
        );
        let n = s.read(&mut tmp).expect("read");
        assert!(n > 0, "EOF: {}", String::from_utf8_lossy(buf));
        buf.extend_from_slice(&tmp[..n]);
    }
}

#[test]
fn subscribers_on_every_transport_get_the_whole_batch_in_order() {
    let hub = start_hub(&[]);
    let a = hub.addr;
    let last = publish_one(a, "s");
    let mut ws = WsClient::open(a, "/topics/s/ws", "");
    let mut sse = connect(a);
    sse.write_all(b"GET /topics/s/sse HTTP/1.1\r\nHost: t\r\n\r\n")
        .unwrap();
    let mut sse_buf = Vec::new();
    let head = read_response(&mut sse, &mut sse_buf, true).unwrap();
    assert_eq!(head.status, 200);
    let mut poll = connect(a);
    let req = format!("GET /topics/s/poll?since={last}&timeout=20 HTTP/1.1\r\nHost: t\r\n\r\n");
    poll.write_all(req.as_bytes()).unwrap();
    thread::sleep(Duration::from_millis(300)); // subscribed and parked

    let n = 150;
    let body: String = (0..n).map(|i| format!("{{\"i\":{i}}}\n")).collect();
    let ids = created_ids(&ndjson(a, "/topics/s?event=tick", body.as_bytes()), "s");
    assert_eq!(ids.len(), n);

    for (k, id) in ids.iter().enumerate() {
        let text = ws.recv_text();
        assert_eq!(
            text,
            format!("{{\"id\":{id},\"event\":\"tick\",\"data\":{{\"i\":{k}}}}}")
        );
    }
    let last_sse = format!("id: {}\n", ids[n - 1]);
    read_until(&mut sse, &mut sse_buf, |b| {
        String::from_utf8_lossy(b).contains(&last_sse)
    });
    let text = String::from_utf8_lossy(&sse_buf).into_owned();
    let sse_ids: Vec<u64> = text
        .lines()
        .filter_map(|l| l.strip_prefix("id: "))
        .map(|n| n.parse().unwrap())
        .collect();
    assert_eq!(sse_ids, ids);
    assert_eq!(text.matches("event: tick\n").count(), n);
    assert!(text.contains(&format!("data: {{\"i\":{}}}\n", n - 1)));

    // The parked poll: one answer of at most 100 events, in order; the rest follows.
    let r = read_response(&mut poll, &mut Vec::new(), false).unwrap();
    assert_eq!(json_ids(&r.text()), ids[..100]);
    let next = util::json_u64(&r.text(), "next").unwrap();
    let r = get(a, &format!("/topics/s/poll?since={next}"));
    assert_eq!(json_ids(&r.text()), ids[100..]);
}

#[test]
fn with_a_data_dir_a_batch_survives_a_kill() {
    let n: u64 = rand::random();
    let dir = std::env::temp_dir().join(format!("pushwire-hub-batch-{n:x}"));
    let dir_arg = dir.to_str().unwrap().to_owned();
    let hub = start_hub(&["--data-dir", &dir_arg]);
    let body: String = (0..40).map(|i| format!("[{i}]\n")).collect();
    let ids = created_ids(&ndjson(hub.addr, "/topics/d", body.as_bytes()), "d");
    drop(hub); // SIGKILL: the 201 came after the fsync
    let hub = start_hub(&["--data-dir", &dir_arg]);
    let kept = events(hub.addr, "d", 0);
    let want: Vec<(u64, String, String)> = ids
        .iter()
        .enumerate()
        .map(|(i, id)| (*id, "null".to_owned(), format!("[{i}]")))
        .collect();
    assert_eq!(kept, want);
    assert_eq!(publish_one(hub.addr, "d"), ids[39] + 1);
    drop(hub);
    let _ = std::fs::remove_dir_all(&dir);
}

/// Waits until the hub's `/stats` says its Redis links are up.
fn redis_ready(addr: SocketAddr) {
    let deadline = Instant::now() + Duration::from_secs(15);
    while !get(addr, "/stats").text().contains("\"ready\":true") {
        assert!(
            Instant::now() < deadline,
            "the hub's redis links never came up"
        );
        thread::sleep(Duration::from_millis(50));
    }
}

#[test]
fn a_batch_through_the_redis_backplane_reaches_the_other_hub_whole() {
    let redis = RedisServer::start();
    let url = redis.url();
    let (one, two) = (start_hub(&["--redis", &url]), start_hub(&["--redis", &url]));
    redis_ready(one.addr);
    redis_ready(two.addr);
    let mut ws = WsClient::open(two.addr, "/topics/rb/ws", "");
    thread::sleep(Duration::from_millis(300)); // following the topic
    let body: String = (0..60).map(|i| format!("{{\"r\":{i}}}\r\n")).collect();
    let ids = created_ids(
        &ndjson(one.addr, "/topics/rb?event=e", body.as_bytes()),
        "rb",
    );
    assert_eq!(ids.len(), 60);
    for (k, id) in ids.iter().enumerate() {
        // JSON lines stay JSON on the other hub: the kind travels with the event.
        let want = format!("{{\"id\":{id},\"event\":\"e\",\"data\":{{\"r\":{k}}}}}");
        assert_eq!(ws.recv_text(), want);
    }
    // Both hubs read the batch back from Redis; a refused one stores nothing there.
    for hub in [&one, &two] {
        let kept: Vec<u64> = events(hub.addr, "rb", 0).iter().map(|e| e.0).collect();
        assert_eq!(kept, ids);
    }
    assert_eq!(redis.int(&["XLEN", "pushwire:{rb}:events"]), 60);
    let r = ndjson(one.addr, "/topics/rb", b"1\n\n");
    assert_eq!(r.status, 400);
    let r = ndjson(one.addr, "/topics/rb", b"9");
    assert_eq!(created_ids(&r, "rb"), [ids[59] + 1]);
    assert_eq!(redis.int(&["XLEN", "pushwire:{rb}:events"]), 61);
    // A batch on a topic Redis already counts goes on from its counter.
    let r = ndjson(one.addr, "/topics/rb", b"\"a\"\n\"b\"\n");
    assert_eq!(created_ids(&r, "rb"), [ids[59] + 2, ids[59] + 3]);
    for want in [ids[59] + 1, ids[59] + 2, ids[59] + 3] {
        assert!(ws.recv_text().starts_with(&format!("{{\"id\":{want},")));
    }
}
