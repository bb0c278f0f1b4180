//! `GET /topics/{t}` (Ctx::topic_info) and `DELETE /topics/{t}` (Ctx::remove_topic) on the
//! hub over real sockets: the counts follow WebSocket, SSE and parked clients as they come
//! and go, the JSON has exactly its shape, a delete ends each kind of subscriber, and with
//! a data directory a deleted topic stays deleted across a restart.

#[path = "util/redis.rs"]
mod redis_server;
mod util;

use std::io::Write;
use std::net::{SocketAddr, TcpStream};
use std::time::{Duration, Instant};

use util::*;

/// Polls `GET /topics/{t}` until its body is `want` (bounded: 10 s, 200 tries).
fn info_becomes(addr: SocketAddr, topic: &str, want: &str) -> String {
    let deadline = Instant::now() + Duration::from_secs(10);
    let mut last = String::new();
    for _ in 0..200 {
        last = get(addr, &format!("/topics/{topic}")).text();
        if last == want || Instant::now() > deadline {
            break;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    last
}

fn shape(
    topic: &str,
    last: u64,
    oldest: Option<u64>,
    ws: u32,
    sse: u32,
    parked: u32,
    hooks: u32,
) -> String {
    let oldest = oldest.map_or("null".to_owned(), |o| o.to_string());
    format!(
        "{{\"topic\":\"{topic}\",\"last_id\":{last},\"oldest_id\":{oldest},\
         \"subscribers\":{{\"websocket\":{ws},\"sse\":{sse},\"parked\":{parked}}},\"webhooks\":{hooks}}}"
    )
}

fn open_sse(addr: SocketAddr, topic: &str) -> (TcpStream, Vec<u8>) {
    let mut s = connect(addr);
    write!(s, "GET /topics/{topic}/sse HTTP/1.1\r\nHost: t\r\n\r\n").unwrap();
    let mut buf = Vec::new();
    let r = read_response(&mut s, &mut buf, true).expect("SSE head");
    assert_eq!(r.status, 200);
    assert_eq!(r.header("transfer-encoding"), Some("chunked"));
    (s, buf)
}

fn park(addr: SocketAddr, topic: &str, since: u64) -> TcpStream {
    let mut s = connect(addr);
    write!(
        s,
        "GET /topics/{topic}/poll?since={since}&timeout=60 HTTP/1.1\r\nHost: t\r\n\r\n"
    )
    .unwrap();
    s
}

fn delete(addr: SocketAddr, path: &str) -> Resp {
    request(addr, &format!("DELETE {path} HTTP/1.1\r\nHost: t\r\n\r\n"))
}

#[test]
fn counts_follow_clients_and_delete_ends_every_kind() {
    let hub = start_hub(&["--webhook-allow-private"]);
    let a = hub.addr;
    assert_eq!(get(a, "/topics/room").status, 404, "unknown topic");
    assert_eq!(get(a, "/topics/room").text(), "no such topic\n");
    let mut ids = Vec::new();
    for i in 0..3 {
        let r = post(a, "/topics/room", &format!("m{i}"));
        assert_eq!(r.status, 201);
        ids.push(json_u64(&r.text(), "id").unwrap());
    }
    let (first, last) = (ids[0], ids[2]);
    let r = get(a, "/topics/room");
    assert_eq!(r.status, 200);
    assert_eq!(r.header("content-type"), Some("application/json"));
    assert_eq!(r.text(), shape("room", last, Some(first), 0, 0, 0, 0));
    let head = request(a, "HEAD /topics/room HTTP/1.1\r\nHost: t\r\n\r\n");
    assert_eq!(head.status, 200);

    let mut ws = WsClient::open(a, "/topics/room/ws", "");
    // A second WebSocket that follows another topic too: it stays open after the delete.
    let mut ws2 = WsClient::open(a, "/topics/other/ws", "");
    let (mut sse, mut sse_buf) = open_sse(a, "room");
    let mut parked = park(a, "room", last);
    let want = shape("room", last, Some(first), 1, 1, 1, 0);
    assert_eq!(info_becomes(a, "room", &want), want);

    // A webhook counts too.
    let r = post(
        a,
        "/topics/room/webhooks",
        "url=http%3A%2F%2F127.0.0.1%3A9%2Fh",
    );
    assert_eq!(r.status, 201, "{}", r.text());
    let want = shape("room", last, Some(first), 1, 1, 1, 1);
    assert_eq!(info_becomes(a, "room", &want), want);

    // The parked poll leaves when it is answered; a client that goes away leaves too.
    let (sse_b, _) = open_sse(a, "room");
    let want = shape("room", last, Some(first), 1, 2, 1, 1);
    assert_eq!(info_becomes(a, "room", &want), want);
    sse_b.shutdown(std::net::Shutdown::Both).unwrap();
    drop(sse_b);
    let want = shape("room", last, Some(first), 1, 1, 1, 1);
    assert_eq!(info_becomes(a, "room", &want), want);

    // Delete: 204, then 404 for info and a second delete.
    let r = delete(a, "/topics/room");
    assert_eq!(r.status, 204, "{}", r.text());
    assert_eq!(get(a, "/topics/room").status, 404);
    assert_eq!(delete(a, "/topics/room").status, 404);
    assert_eq!(get(a, "/topics/room/webhooks").text(), "{\"webhooks\":[]}");

    // The parked poll: 404 topic removed.
    let r = read_response(&mut parked, &mut Vec::new(), false).expect("poll answer");
    assert_eq!((r.status, r.text().as_str()), (404, "topic removed\n"));
    // The SSE stream: the terminating chunk, then the end.
    let deadline = Instant::now() + Duration::from_secs(10);
    let mut ended = false;
    while Instant::now() < deadline {
        if sse_buf.ends_with(b"0\r\n\r\n") {
            ended = true;
            break;
        }
        let want = sse_buf.len() + 1;
        if fill(&mut sse, &mut sse_buf, want, deadline).is_none() {
            break;
        }
    }
    assert!(
        ended,
        "SSE stream ended with the last chunk: {:?}",
        String::from_utf8_lossy(&sse_buf)
    );
    assert!(is_closed(&mut sse));
    // The WebSocket that followed only this topic: close 1000 "topic removed".
    let f = ws.recv().expect("a close frame");
    assert_eq!(f.opcode, 8);
    assert_eq!(&f.payload[..2], &1000u16.to_be_bytes());
    assert_eq!(&f.payload[2..], b"topic removed");
    // The other WebSocket was never on `room`: untouched and still counted on `other`.
    assert_eq!(
        info_becomes(a, "other", &shape("other", 0, None, 1, 0, 0, 0)),
        shape("other", 0, None, 1, 0, 0, 0)
    );
    ws2.send_frame(true, 8, &1000u16.to_be_bytes());

    // Published again, the topic starts a new log.
    let r = post(a, "/topics/room", "again");
    let id = json_u64(&r.text(), "id").unwrap();
    assert_eq!(
        get(a, "/topics/room").text(),
        shape("room", id, Some(id), 0, 0, 0, 0)
    );
}

#[test]
fn tokens_and_methods() {
    let hub = start_hub(&["--subscribe-token", "sub", "--admin-token", "adm"]);
    let a = hub.addr;
    let r = request(
        a,
        "POST /topics/t HTTP/1.1\r\nHost: t\r\nContent-Length: 1\r\n\r\nx",
    );
    assert_eq!(r.status, 201);
    assert_eq!(get(a, "/topics/t").status, 401);
    let r = request(
        a,
        "GET /topics/t HTTP/1.1\r\nHost: t\r\nAuthorization: Bearer sub\r\n\r\n",
    );
    assert_eq!(r.status, 200);
    let r = request(
        a,
        "DELETE /topics/t HTTP/1.1\r\nHost: t\r\nAuthorization: Bearer sub\r\n\r\n",
    );
    assert_eq!(r.status, 403, "delete takes the admin token");
    let r = request(
        a,
        "PUT /topics/t HTTP/1.1\r\nHost: t\r\nContent-Length: 0\r\n\r\n",
    );
    assert_eq!(r.status, 405);
    assert_eq!(r.header("allow"), Some("GET, HEAD, POST, DELETE"));
    let r = request(
        a,
        "DELETE /topics/t HTTP/1.1\r\nHost: t\r\nAuthorization: Bearer adm\r\n\r\n",
    );
    assert_eq!(r.status, 204);
    assert_eq!(
        get(a, "/metrics").status,
        401,
        "metrics take the admin token"
    );
}

#[test]
fn a_deleted_topic_stays_deleted_after_a_restart() {
    let dir = std::env::temp_dir().join(format!("pushwire-topic-info-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    let d = dir.to_str().unwrap();
    let (kept, gone_last);
    {
        let hub = start_hub(&["--data-dir", d, "--webhook-allow-private"]);
        let a = hub.addr;
        post(a, "/topics/gone", "1");
        gone_last = json_u64(&post(a, "/topics/gone", "2").text(), "id").unwrap();
        let r = post(
            a,
            "/topics/gone/webhooks",
            "url=http%3A%2F%2F127.0.0.1%3A9%2Fh",
        );
        assert_eq!(r.status, 201);
        kept = json_u64(&post(a, "/topics/kept", "k").text(), "id").unwrap();
        assert_eq!(delete(a, "/topics/gone").status, 204);
        assert_eq!(get(a, "/topics/gone").status, 404);
    }
    let hub = start_hub(&["--data-dir", d, "--webhook-allow-private"]);
    let a = hub.addr;
    assert_eq!(get(a, "/topics/gone").status, 404, "still deleted");
    assert_eq!(get(a, "/topics/gone/webhooks").text(), "{\"webhooks\":[]}");
    assert_eq!(
        get(a, "/topics/kept").text(),
        shape("kept", kept, Some(kept), 0, 0, 0, 0)
    );
    // A publish starts a new log (at the clock, above the old ids).
    let id = json_u64(&post(a, "/topics/gone", "3").text(), "id").unwrap();
    assert!(id > gone_last);
    assert_eq!(
        get(a, "/topics/gone").text(),
        shape("gone", id, Some(id), 0, 0, 0, 0)
    );
    drop(hub);
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn with_a_redis_backplane_removal_is_refused() {
    let redis = redis_server::RedisServer::start();
    let hub = start_hub(&["--redis", &redis.url()]);
    let a = hub.addr;
    let deadline = Instant::now() + Duration::from_secs(15);
    let mut r = post(a, "/topics/shared", "x");
    while r.status != 201 && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(100)); // Redis links coming up
        r = post(a, "/topics/shared", "x");
    }
    assert_eq!(r.status, 201, "{}", r.text());
    let r = delete(a, "/topics/shared");
    assert_eq!(
        (r.status, r.text().as_str()),
        (501, "topics cannot be removed with a Redis backplane\n")
    );
    assert_eq!(
        post(a, "/topics/shared", "y").status,
        201,
        "nothing removed"
    );
}
