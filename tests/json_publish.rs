//! JSON as JSON (issue 16 point 3): a `Content-Type: application/json` publish to the hub
//! example (a real process on loopback) reaches WebSocket, long-poll, `/events` and a
//! webhook receiver as the JSON value itself, SSE as its text; invalid JSON is 400 with
//! the byte and the cause; text publishes are unchanged; a data directory keeps the kind;
//! hubs sharing a Redis carry the kind through pub/sub, the stream and the webhook outbox.

#[path = "util/redis.rs"]
mod redis_server;
mod util;

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::sync::mpsc;
use std::thread;
use std::time::{Duration, Instant};

use util::{connect, get, read_response, start_hub, Resp, WsClient};

fn post_typed(addr: SocketAddr, path: &str, content_type: &str, body: &[u8]) -> Resp {
    let mut s = connect(addr);
    let head = format!(
        "POST {path} HTTP/1.1\r\nHost: t\r\nContent-Type: {content_type}\r\nContent-Length: {}\r\n\r\n",
        body.len()
    );
    s.write_all(head.as_bytes()).unwrap();
    s.write_all(body).unwrap();
    let mut buf = Vec::new();
    read_response(&mut s, &mut buf, false).expect("a response")
}

fn publish_json(addr: SocketAddr, topic: &str, body: &str) -> u64 {
    let r = post_typed(
        addr,
        &format!("/topics/{topic}"),
        "application/json",
        body.as_bytes(),
    );
    assert_eq!(r.status, 201, "{}", r.text());
    util::json_u64(&r.text(), "id").unwrap()
}

/// A webhook receiver on loopback: answers 204 to every request, hands over each body.
fn receiver() -> (SocketAddr, mpsc::Receiver<String>) {
    let l = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = l.local_addr().unwrap();
    let (tx, rx) = mpsc::channel();
    thread::spawn(move || {
        for s in l.incoming().take(50) {
            let Ok(mut s) = s else { continue };
            s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
            let mut buf = Vec::new();
            let mut chunk = [0u8; 4096];
            // Read the head, then Content-Length bytes of body.
            let body = loop {
                let Ok(n) = s.read(&mut chunk) else {
                    break None;
                };
                if n == 0 {
                    break None;
                }
                buf.extend_from_slice(&chunk[..n]);
                let Some(end) = buf.windows(4).position(|w| w == b"\r\n\r\n") else {
                    continue;
                };
                let head = String::from_utf8_lossy(&buf[..end]).to_ascii_lowercase();
                let len: usize = head
                    .lines()
                    .find_map(|l| l.strip_prefix("content-length:"))
                    .map_or(0, |v| v.trim().parse().unwrap());
                if buf.len() >= end + 4 + len {
                    break Some(String::from_utf8_lossy(&buf[end + 4..end + 4 + len]).into_owned());
                }
            };
            let _ = s.write_all(b"HTTP/1.1 204 No Content\r\nConnection: close\r\n\r\n");
            if let Some(b) = body {
                let _ = tx.send(b);
            }
        }
    });
    (addr, rx)
}

fn read_until(s: &mut TcpStream, buf: &mut Vec<u8>, want: &str) {
    let deadline = Instant::now() + Duration::from_secs(10);
    s.set_read_timeout(Some(Duration::from_millis(200)))
        .unwrap();
    let mut chunk = [0u8; 4096];
    while !String::from_utf8_lossy(buf).contains(want) {
        assert!(
            Instant::now() < deadline,
            "no {want:?} in {:?}",
            String::from_utf8_lossy(buf)
        );
        if let Ok(n) = s.read(&mut chunk) {
            assert!(n > 0, "closed before {want:?}");
            buf.extend_from_slice(&chunk[..n]);
        }
    }
}

#[test]
fn a_json_publish_reaches_every_transport_as_its_value() {
    let hub = start_hub(&["--webhook-allow-private"]);
    let a = hub.addr;
    let (rx_addr, bodies) = receiver();
    let r = util::request(
        a,
        &format!(
            "POST /topics/j/webhooks HTTP/1.1\r\nHost: t\r\nContent-Type: application/x-www-form-urlencoded\r\nContent-Length: {}\r\n\r\nurl=http://{rx_addr}/in",
            format!("url=http://{rx_addr}/in").len()
        ),
    );
    assert_eq!(r.status, 201, "{}", r.text());

    let mut ws = WsClient::open(a, "/topics/j/ws", "");
    let mut sse = connect(a);
    sse.write_all(b"GET /topics/j/sse HTTP/1.1\r\nHost: t\r\n\r\n")
        .unwrap();
    let mut sse_buf = Vec::new();
    read_until(&mut sse, &mut sse_buf, "\r\n\r\n");
    let mut poll = connect(a);
    thread::sleep(Duration::from_millis(200)); // subscribed

    let value = r#"{"msg":"hi","n":[1,2.5,null]}"#;
    let id = publish_json(a, "j", value);
    let want = format!(r#"{{"id":{id},"event":null,"data":{value}}}"#);
    assert_eq!(ws.recv_text(), want);
    read_until(&mut sse, &mut sse_buf, &format!("id: {id}\n"));
    read_until(&mut sse, &mut sse_buf, &format!("data: {value}\n\n"));
    let body = bodies.recv_timeout(Duration::from_secs(10)).unwrap();
    assert!(
        body.ends_with(&format!(
            r#""data":{{"topic":"j","id":{id},"event":null,"data":{value}}}}}"#
        )),
        "{body}"
    );
    let page = get(a, &format!("/topics/j/events?since={}", id - 1)).text();
    assert_eq!(
        page,
        format!(r#"{{"events":[{want}],"next":{id},"gap":false}}"#)
    );
    let req = format!(
        "GET /topics/j/poll?since={} HTTP/1.1\r\nHost: t\r\n\r\n",
        id - 1
    );
    poll.write_all(req.as_bytes()).unwrap();
    let mut buf = Vec::new();
    let r = read_response(&mut poll, &mut buf, false).unwrap();
    assert!(
        r.text().starts_with(&format!(r#"{{"events":[{want}]"#)),
        "{}",
        r.text()
    );

    // A text publish of the same bytes is still a string everywhere.
    let r = util::post(a, "/topics/j", value);
    assert_eq!(r.status, 201);
    let id2 = util::json_u64(&r.text(), "id").unwrap();
    let text = ws.recv_text();
    assert_eq!(
        text,
        format!(r#"{{"id":{id2},"event":null,"data":"{{\"msg\":\"hi\",\"n\":[1,2.5,null]}}"}}"#)
    );
    read_until(&mut sse, &mut sse_buf, &format!("id: {id2}\n"));
    // A charset parameter is fine; the type's case does not matter.
    let r = post_typed(
        a,
        "/topics/j",
        "Application/JSON; charset=utf-8",
        b" [true] ",
    );
    assert_eq!(r.status, 201, "{}", r.text());
    assert!(ws.recv_text().ends_with(r#""data": [true] }"#));
}

#[test]
fn invalid_json_is_400_naming_the_byte_and_nothing_is_published() {
    let hub = start_hub(&[]);
    let a = hub.addr;
    let deep = "[".repeat(65) + &"]".repeat(65);
    let ok_deep = "[".repeat(64) + &"]".repeat(64);
    let table: &[(&[u8], &str)] = &[
        (b"{\"msg\" 1}", "invalid JSON at byte 7: expected ':'"),
        (
            b"{\"a\":1,}",
            "invalid JSON at byte 7: expected a string member name",
        ),
        (b"", "invalid JSON at byte 0: unexpected end of input"),
        (b"01", "invalid JSON at byte 0: leading zero in a number"),
        (
            b"{} {}",
            "invalid JSON at byte 3: unexpected characters after the value",
        ),
        (
            b"\"\\ud800\"",
            "invalid JSON at byte 1: unpaired surrogate in a \\u escape",
        ),
        (deep.as_bytes(), "JSON nested deeper than 64 (at byte 64)"),
    ];
    for (body, msg) in table {
        let r = post_typed(a, "/topics/bad", "application/json", body);
        assert_eq!((r.status, r.text()), (400, format!("{msg}\n")));
    }
    let page = get(a, "/topics/bad/events").text();
    assert_eq!(page, r#"{"events":[],"next":0,"gap":false}"#);
    let id = publish_json(a, "bad", &ok_deep);
    let page = get(a, "/topics/bad/events").text();
    assert!(page.contains(&format!(r#""id":{id},"event":null,"data":{ok_deep}}}"#)));
}

#[test]
fn a_restart_with_a_data_dir_keeps_json_as_json() {
    let dir = std::env::temp_dir().join(format!("pushwire-json-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    let dir_arg = dir.to_string_lossy().into_owned();
    let hub = start_hub(&["--data-dir", &dir_arg]);
    let id = publish_json(hub.addr, "d", r#"{"k":"v"}"#);
    let r = util::post(hub.addr, "/topics/d", "plain");
    let text_id = util::json_u64(&r.text(), "id").unwrap();
    let r = post_typed(
        hub.addr,
        "/topics/d",
        "application/x-ndjson",
        b"[1]\n{\"b\":2}\n",
    );
    assert_eq!(r.status, 201, "{}", r.text());
    drop(hub);
    let hub = start_hub(&["--data-dir", &dir_arg]);
    let page = get(hub.addr, &format!("/topics/d/events?since={}", id - 1)).text();
    let want = format!(
        concat!(
            r#"{{"events":[{{"id":{},"event":null,"data":{{"k":"v"}}}},"#,
            r#"{{"id":{},"event":null,"data":"plain"}},"#,
            r#"{{"id":{},"event":null,"data":[1]}},"#,
            r#"{{"id":{},"event":null,"data":{{"b":2}}}}],"next":{},"gap":false}}"#
        ),
        id,
        text_id,
        text_id + 1,
        text_id + 2,
        text_id + 2
    );
    assert_eq!(page, want);
    drop(hub);
    let _ = std::fs::remove_dir_all(&dir);
}

/// Three hubs on one real `redis-server`: a JSON publish (and a JSON batch) on hub A
/// reaches a WebSocket on hub B live (pub/sub), an `/events` read on hub C, which had
/// never followed the topic (the stream), and the webhook receiver (the outbox, delivered
/// by whichever hub takes the entry) as the value; a text publish stays a string.
#[test]
fn json_events_keep_their_kind_across_hubs_sharing_redis() {
    let redis = redis_server::RedisServer::start();
    let url = redis.url();
    let start = || {
        let hub = start_hub(&["--redis", &url, "--webhook-allow-private"]);
        let deadline = Instant::now() + Duration::from_secs(10);
        while !get(hub.addr, "/stats")
            .text()
            .contains("\"redis\":{\"ready\":true")
        {
            assert!(
                Instant::now() < deadline,
                "the hub's redis links never came up"
            );
            thread::sleep(Duration::from_millis(50));
        }
        hub
    };
    let (a, b, c) = (start(), start(), start());
    let (rx_addr, bodies) = receiver();
    let form = format!("url=http://{rx_addr}/in");
    let r = post_typed(
        a.addr,
        "/topics/rj/webhooks",
        "application/x-www-form-urlencoded",
        form.as_bytes(),
    );
    assert_eq!(r.status, 201, "{}", r.text());
    let mut ws = WsClient::open(b.addr, "/topics/rj/ws", "");
    thread::sleep(Duration::from_millis(300)); // B follows the topic, the hubs know the hook

    let value = r#"{"msg":"hi"}"#;
    let id = publish_json(a.addr, "rj", value);
    let want = format!(r#"{{"id":{id},"event":null,"data":{value}}}"#);
    assert_eq!(ws.recv_text(), want, "live, through pub/sub");
    let body = bodies.recv_timeout(Duration::from_secs(10)).unwrap();
    assert!(
        body.ends_with(&format!(r#""id":{id},"event":null,"data":{value}}}}}"#)),
        "through the outbox: {body}"
    );
    let r = post_typed(
        a.addr,
        "/topics/rj?event=n",
        "application/x-ndjson",
        b"[1]\n{\"k\":true}\n",
    );
    assert_eq!(r.status, 201, "{}", r.text());
    let batch = [
        format!(r#"{{"id":{},"event":"n","data":[1]}}"#, id + 1),
        format!(r#"{{"id":{},"event":"n","data":{{"k":true}}}}"#, id + 2),
    ];
    assert_eq!(ws.recv_text(), batch[0], "a JSON batch, live");
    assert_eq!(ws.recv_text(), batch[1]);
    let r = util::post(a.addr, "/topics/rj", value);
    assert_eq!(r.status, 201);
    let text = format!(
        r#"{{"id":{},"event":null,"data":"{{\"msg\":\"hi\"}}"}}"#,
        id + 3
    );
    assert_eq!(ws.recv_text(), text, "text stays a string");

    let page = get(c.addr, &format!("/topics/rj/events?since={}", id - 1)).text();
    assert_eq!(
        page,
        format!(
            r#"{{"events":[{want},{},{},{text}],"next":{},"gap":false}}"#,
            batch[0],
            batch[1],
            id + 3
        ),
        "from the stream, on a hub that never followed the topic"
    );
    for _ in 0..2 {
        let body = bodies.recv_timeout(Duration::from_secs(10)).unwrap();
        assert!(body.contains(r#""event":"n","data":"#), "{body}");
        assert!(
            !body.contains(r#""data":"["#),
            "a batch item as a value: {body}"
        );
    }
}
