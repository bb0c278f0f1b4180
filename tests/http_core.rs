//! Issue 2: the HTTP/1.1 server and topic log, driven through the hub over loopback.

mod util;

use std::io::Write;
use std::net::TcpStream;
use std::thread;
use std::time::{Duration, Instant};

use util::*;

/// Posts `body` to `path`, asserts `201 {"topic":...,"id":N}` and returns N.
fn publish_id(addr: std::net::SocketAddr, path: &str, body: &str) -> u64 {
    let r = post(addr, path, body);
    assert_eq!(r.status, 201, "{}", r.text());
    json_u64(&r.text(), "id").unwrap_or_else(|| panic!("no id in {}", r.text()))
}

/// The Unix time in microseconds, as the hub reads it for a new topic's first id.
fn now_us() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_micros() as u64
}

#[test]
fn health_index_publish_and_read_back() {
    let hub = start_hub(&[]);
    let r = get(hub.addr, "/healthz");
    assert_eq!((r.status, r.text().as_str()), (200, "ok"));
    let r = get(hub.addr, "/");
    assert_eq!(r.status, 200);
    assert!(r.header("content-type").unwrap().starts_with("text/html"));

    let before = now_us();
    let r = post(
        hub.addr,
        "/topics/demo?event=greeting",
        "hello \"world\"\n\u{1}é",
    );
    let after = now_us();
    assert_eq!(r.status, 201, "{}", r.text());
    let first = json_u64(&r.text(), "id").unwrap();
    // A new topic's ids start at the clock, in microseconds.
    assert!(
        (before..=after).contains(&first),
        "first id {first} not in {before}..={after}"
    );
    assert_eq!(r.text(), format!(r#"{{"topic":"demo","id":{first}}}"#));
    let r = post(hub.addr, "/topics/demo", "second");
    assert_eq!(
        r.text(),
        format!(r#"{{"topic":"demo","id":{}}}"#, first + 1)
    );

    let want_all = format!(
        concat!(
            r#"{{"events":[{{"id":{a},"event":"greeting","data":"hello \"world\"\n\u0001é"}},"#,
            r#"{{"id":{b},"event":null,"data":"second"}}],"next":{b},"gap":false}}"#
        ),
        a = first,
        b = first + 1
    );
    let r = get(hub.addr, "/topics/demo/events?since=0");
    assert_eq!(r.status, 200);
    assert_eq!(r.header("content-type"), Some("application/json"));
    assert_eq!(r.text(), want_all);
    // The cursor right before the first id is the same read: nothing missed.
    let r = get(
        hub.addr,
        &format!("/topics/demo/events?since={}", first - 1),
    );
    assert_eq!(r.text(), want_all);
    let r = get(hub.addr, &format!("/topics/demo/events?since={first}"));
    assert_eq!(json_ids(&r.text()), vec![first + 1], "{}", r.text());
    assert!(r
        .text()
        .ends_with(&format!(r#""next":{},"gap":false}}"#, first + 1)));
    let r = get(
        hub.addr,
        &format!("/topics/demo/events?since={}", first + 1),
    );
    assert_eq!(
        r.text(),
        format!(r#"{{"events":[],"next":{},"gap":false}}"#, first + 1)
    );
    let r = get(hub.addr, "/topics/demo/events");
    assert_eq!(json_ids(&r.text()), vec![first, first + 1]);
}

#[test]
fn history_gap_is_reported() {
    let hub = start_hub(&["--history-events", "3"]);
    let first = publish_id(hub.addr, "/topics/g", "e1");
    for i in 2..=5 {
        assert_eq!(
            publish_id(hub.addr, "/topics/g", &format!("e{i}")),
            first + i - 1
        );
    }
    // Kept: first+2..=first+4 (the last 3); next is the last id.
    let kept = vec![first + 2, first + 3, first + 4];
    let gap_end = format!(r#""next":{},"gap":true}}"#, first + 4);
    let no_gap_end = format!(r#""next":{},"gap":false}}"#, first + 4);
    // After the first event: the second was trimmed, so the first returned is not since + 1.
    let r = get(hub.addr, &format!("/topics/g/events?since={first}"));
    assert_eq!(json_ids(&r.text()), kept);
    assert!(r.text().ends_with(&gap_end), "{}", r.text());
    // After the second: the third comes next, nothing missed.
    let r = get(hub.addr, &format!("/topics/g/events?since={}", first + 1));
    assert_eq!(json_ids(&r.text()), kept);
    assert!(r.text().ends_with(&no_gap_end), "{}", r.text());
    // From the start after trimming: a gap.
    let r = get(hub.addr, "/topics/g/events?since=0");
    assert_eq!(json_ids(&r.text()), kept);
    assert!(r.text().ends_with(&gap_end), "{}", r.text());
    // An old small cursor (from before a restart that started a new range): a gap, from
    // the oldest kept event.
    let r = get(hub.addr, "/topics/g/events?since=5");
    assert_eq!(json_ids(&r.text()), kept);
    assert!(r.text().ends_with(&gap_end), "{}", r.text());
    // A cursor ahead of the topic (the server lost its history) restarts from the oldest.
    let r = get(hub.addr, &format!("/topics/g/events?since={}", first + 99));
    assert_eq!(json_ids(&r.text()), kept);
    assert!(r.text().contains(r#""gap":true"#), "{}", r.text());

    // An untrimmed topic: from 0 and from just before its first id there is no gap, but
    // an old small cursor is one.
    let f = publish_id(hub.addr, "/topics/h", "x");
    assert_eq!(publish_id(hub.addr, "/topics/h", "y"), f + 1);
    let end = |gap: bool| format!(r#""next":{},"gap":{gap}}}"#, f + 1);
    for (since, gap) in [(0, false), (f - 1, false), (5, true)] {
        let r = get(hub.addr, &format!("/topics/h/events?since={since}"));
        assert_eq!(json_ids(&r.text()), vec![f, f + 1], "since={since}");
        assert!(r.text().ends_with(&end(gap)), "since={since}: {}", r.text());
    }
}

#[test]
fn application_errors_keep_the_connection() {
    let hub = start_hub(&[]);
    let mut s = connect(hub.addr);
    let mut buf = Vec::new();
    let cases: &[(&[u8], u16)] = &[
        (b"GET /nope HTTP/1.1\r\nHost: t\r\n\r\n", 404),
        (
            b"PUT /topics/a HTTP/1.1\r\nHost: t\r\nContent-Length: 0\r\n\r\n",
            405,
        ),
        (b"DELETE /topics/a HTTP/1.1\r\nHost: t\r\n\r\n", 404),
        (
            b"POST /topics/a..b/x HTTP/1.1\r\nHost: t\r\nContent-Length: 0\r\n\r\n",
            404,
        ),
        (
            b"POST /topics/.. HTTP/1.1\r\nHost: t\r\nContent-Length: 1\r\n\r\nx",
            400,
        ),
        (
            b"POST /topics/a%20b HTTP/1.1\r\nHost: t\r\nContent-Length: 1\r\n\r\nx",
            400,
        ),
        (
            b"POST /topics/a HTTP/1.1\r\nHost: t\r\nContent-Length: 2\r\n\r\n\xff\xfe",
            400,
        ),
        (
            b"POST /topics/a?event=a%0Ab HTTP/1.1\r\nHost: t\r\nContent-Length: 1\r\n\r\nx",
            400,
        ),
        (
            b"GET /topics/a/events?since=x HTTP/1.1\r\nHost: t\r\n\r\n",
            400,
        ),
        (b"GET /healthz HTTP/1.1\r\nHost: t\r\n\r\n", 200),
    ];
    for (raw, status) in cases {
        s.write_all(raw).unwrap();
        let r = read_response(&mut s, &mut buf, false).expect("response");
        assert_eq!(
            r.status,
            *status,
            "{}: {}",
            String::from_utf8_lossy(raw),
            r.text()
        );
        if *status == 405 {
            assert_eq!(r.header("allow"), Some("GET, HEAD, POST, DELETE"));
        }
    }
    let long = "a".repeat(129);
    let r = post(hub.addr, &format!("/topics/{long}"), "x");
    assert_eq!(r.status, 400);
    assert_eq!(
        post(hub.addr, &format!("/topics/{}", &long[..128]), "x").status,
        201
    );
}

#[test]
fn pipelined_requests_are_answered_in_order() {
    let hub = start_hub(&[]);
    let mut s = connect(hub.addr);
    let mut raw = String::new();
    for i in 0..5 {
        raw += &format!("POST /topics/p HTTP/1.1\r\nHost: t\r\nContent-Length: 2\r\n\r\nm{i}");
        raw += "GET /healthz HTTP/1.1\r\nHost: t\r\n\r\n";
    }
    raw += "HEAD /topics/p/events HTTP/1.1\r\nHost: t\r\n\r\n";
    raw += "GET /topics/p/events?since=0 HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n";
    s.write_all(raw.as_bytes()).unwrap();
    let mut buf = Vec::new();
    let mut first = 0;
    for i in 0..5 {
        let r = read_response(&mut s, &mut buf, false).unwrap();
        if i == 0 {
            first = json_u64(&r.text(), "id").expect("an id");
        }
        assert_eq!(
            r.text(),
            format!("{{\"topic\":\"p\",\"id\":{}}}", first + i)
        );
        assert_eq!(read_response(&mut s, &mut buf, false).unwrap().text(), "ok");
    }
    let head = read_response(&mut s, &mut buf, true).unwrap();
    assert_eq!(head.status, 200);
    assert!(
        head.header("content-length")
            .unwrap()
            .parse::<usize>()
            .unwrap()
            > 0
    );
    let r = read_response(&mut s, &mut buf, false).unwrap();
    assert_eq!(json_ids(&r.text()), (first..first + 5).collect::<Vec<_>>());
    assert_eq!(r.header("connection"), Some("close"));
    assert!(buf.is_empty());
    assert!(is_closed(&mut s));
}

/// Sends `raw` in two writes split at `at`, with a pause so they arrive apart.
fn send_split(addr: std::net::SocketAddr, raw: &[u8], at: usize) -> Resp {
    let mut s = connect(addr);
    s.write_all(&raw[..at]).unwrap();
    s.flush().unwrap();
    thread::sleep(Duration::from_millis(1));
    s.write_all(&raw[at..]).unwrap();
    read_response(&mut s, &mut Vec::new(), false).expect("response")
}

#[test]
fn bodies_split_at_every_byte_boundary() {
    let hub = start_hub(&[]);
    let cl = b"POST /topics/s HTTP/1.1\r\nHost: t\r\nContent-Length: 11\r\n\r\nhello world";
    let chunked = b"POST /topics/s HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked\r\n\r\n5;ext=1\r\nhello\r\n6\r\n world\r\n0\r\nX-Trailer: yes\r\n\r\n";
    let mut n = 0;
    let mut first = None;
    for raw in [&cl[..], &chunked[..]] {
        for at in 1..raw.len() {
            let r = send_split(hub.addr, raw, at);
            assert_eq!(r.status, 201, "split at {at}: {}", r.text());
            let id = json_u64(&r.text(), "id").expect("an id");
            let first = *first.get_or_insert(id);
            assert_eq!(id, first + n, "split at {at}: {}", r.text());
            n += 1;
        }
    }
    let first = first.unwrap();
    let last = first + n - 1;
    let r = get(hub.addr, &format!("/topics/s/events?since={}", last - 1));
    assert_eq!(json_ids(&r.text()), vec![last], "{}", r.text());
    assert!(r.text().contains(r#""data":"hello world""#), "{}", r.text());
    assert_eq!(json_u64(&r.text(), "next"), Some(last));
}

#[test]
fn expect_100_continue() {
    let hub = start_hub(&[]);
    let mut s = connect(hub.addr);
    s.write_all(
        b"POST /topics/c HTTP/1.1\r\nHost: t\r\nExpect: 100-continue\r\nContent-Length: 3\r\n\r\n",
    )
    .unwrap();
    let mut buf = Vec::new();
    let r = read_response(&mut s, &mut buf, false).unwrap();
    assert_eq!(r.status, 100);
    s.write_all(b"abc").unwrap();
    let r = read_response(&mut s, &mut buf, false).unwrap();
    assert_eq!(r.status, 201);
    // Too large: 413 at once, no 100 Continue, and the connection closes.
    let mut s = connect(hub.addr);
    s.write_all(b"POST /topics/c HTTP/1.1\r\nHost: t\r\nExpect: 100-continue\r\nContent-Length: 2000000\r\n\r\n")
        .unwrap();
    let r = read_response(&mut s, &mut Vec::new(), false).unwrap();
    assert_eq!(r.status, 413);
    assert!(is_closed(&mut s));
}

#[test]
fn limits_and_smuggling_get_their_status_and_close() {
    let hub = start_hub(&[]);
    // A keep-alive bystander that must keep being served throughout.
    let mut bystander = connect(hub.addr);
    let mut bbuf = Vec::new();
    let big_header = format!(
        "GET / HTTP/1.1\r\nHost: t\r\nX-Big: {}\r\n\r\n",
        "a".repeat(17_000)
    );
    let many_headers = format!(
        "GET / HTTP/1.1\r\nHost: t\r\n{}\r\n",
        (0..101)
            .map(|i| format!("X-H{i}: v\r\n"))
            .collect::<String>()
    );
    let big_body = format!(
        "POST /topics/l HTTP/1.1\r\nHost: t\r\nContent-Length: {}\r\n\r\n",
        2 << 20
    );
    let big_chunked = format!(
        "POST /topics/l HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked\r\n\r\n{:x}\r\n{}\r\n0\r\n\r\n",
        (1 << 20) + 1,
        "a".repeat((1 << 20) + 1)
    );
    let cases: Vec<(String, u16)> = vec![
        (big_header, 431),
        (many_headers, 431),
        (big_body, 413),
        (big_chunked, 413),
        ("GARBAGE\r\n\r\n".into(), 400),
        ("GET / HTTP/1.1\r\nHost: t\r\nBad Header: x\r\n\r\n".into(), 400),
        ("GET / HTTP/1.1\r\n\r\n".into(), 400),
        ("GET / HTTP/2.0\r\nHost: t\r\n\r\n".into(), 505),
        ("GET / HTTP/1.2\r\nHost: t\r\n\r\n".into(), 505),
        ("POST /topics/l HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: gzip, chunked\r\n\r\n0\r\n\r\n".into(), 501),
        ("POST /topics/l HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked, gzip\r\n\r\n0\r\n\r\n".into(), 400),
        (
            "POST /topics/l HTTP/1.1\r\nHost: t\r\nContent-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n"
                .into(),
            400,
        ),
        ("POST /topics/l HTTP/1.1\r\nHost: t\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\nab".into(), 400),
        ("POST /topics/l HTTP/1.1\r\nHost: t\r\nContent-Length: -1\r\n\r\n".into(), 400),
        ("POST /topics/l HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n".into(), 400),
        ("POST /topics/l HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabcX\r\n".into(), 400),
        ("POST /topics/l HTTP/1.0\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n".into(), 400),
        ("POST /topics/l HTTP/1.1\r\nHost: t\r\nExpect: teapot\r\nContent-Length: 1\r\n\r\nx".into(), 417),
    ];
    for (raw, status) in &cases {
        let mut s = connect(hub.addr);
        s.write_all(raw.as_bytes()).unwrap();
        let r = read_response(&mut s, &mut Vec::new(), false)
            .unwrap_or_else(|| panic!("no response to {:?}", &raw[..raw.len().min(80)]));
        assert_eq!(
            r.status,
            *status,
            "{:?}: {}",
            &raw[..raw.len().min(80)],
            r.text()
        );
        assert_eq!(r.header("connection"), Some("close"));
        assert!(is_closed(&mut s), "not closed after {status}");
        bystander
            .write_all(b"GET /healthz HTTP/1.1\r\nHost: t\r\n\r\n")
            .unwrap();
        assert_eq!(
            read_response(&mut bystander, &mut bbuf, false)
                .unwrap()
                .text(),
            "ok"
        );
    }
    // Identical duplicate Content-Length values are one length.
    let r = request(
        hub.addr,
        "POST /topics/l HTTP/1.1\r\nHost: t\r\nContent-Length: 2\r\nContent-Length: 2\r\n\r\nok",
    );
    assert_eq!(r.status, 201);
}

#[test]
fn http10_keep_alive_only_when_asked() {
    let hub = start_hub(&[]);
    let mut s = connect(hub.addr);
    s.write_all(b"GET /healthz HTTP/1.0\r\n\r\n").unwrap();
    let r = read_response(&mut s, &mut Vec::new(), false).unwrap();
    assert_eq!(r.text(), "ok");
    assert!(is_closed(&mut s));
    let mut s = connect(hub.addr);
    let mut buf = Vec::new();
    for _ in 0..3 {
        s.write_all(b"GET /healthz HTTP/1.0\r\nConnection: keep-alive\r\n\r\n")
            .unwrap();
        let r = read_response(&mut s, &mut buf, false).unwrap();
        assert_eq!(r.header("connection"), Some("keep-alive"));
    }
}

#[test]
fn thousand_concurrent_keep_alive_connections() {
    let hub = start_hub(&[]);
    let mut conns: Vec<TcpStream> = (0..1000).map(|_| connect(hub.addr)).collect();
    let mut ids = Vec::with_capacity(2000);
    for round in 0..2 {
        for (i, s) in conns.iter_mut().enumerate() {
            let body = format!("c{i}r{round}");
            let raw = format!(
                "POST /topics/k HTTP/1.1\r\nHost: t\r\nContent-Length: {}\r\n\r\n{body}",
                body.len()
            );
            s.write_all(raw.as_bytes()).unwrap();
        }
        for s in conns.iter_mut() {
            let r = read_response(s, &mut Vec::new(), false).expect("response");
            assert_eq!(r.status, 201);
            ids.push(json_u64(&r.text(), "id").expect("an id"));
        }
    }
    // Every publish got its own id, the 2,000 ids are consecutive, and each round's ids
    // are all below the next round's (a round is answered before the next is sent).
    let first = *ids.iter().min().unwrap();
    assert!(ids[..1000].iter().all(|&id| id < first + 1000), "round 0");
    let mut sorted = ids.clone();
    sorted.sort_unstable();
    assert_eq!(sorted, (first..first + 2000).collect::<Vec<_>>());
    let r = get(
        hub.addr,
        &format!("/topics/k/events?since={}", first + 1998),
    );
    assert_eq!(json_ids(&r.text()), vec![first + 1999]);
}

#[test]
fn slowloris_and_idle_timeouts_fire() {
    let hub = start_hub(&["--header-timeout", "1", "--idle-timeout", "2"]);
    let started = Instant::now();
    let mut slow = connect(hub.addr);
    slow.write_all(b"GET /healthz HTTP/1.1\r\nHost: t\r\n")
        .unwrap();
    // Keep dripping header bytes: the timeout counts from the first byte, not the last.
    for _ in 0..3 {
        thread::sleep(Duration::from_millis(300));
        let _ = slow.write_all(b"X-Drip: 1\r\n");
    }
    let r = read_response(&mut slow, &mut Vec::new(), false).expect("408");
    assert_eq!(r.status, 408);
    assert!(is_closed(&mut slow));
    assert!(started.elapsed() < Duration::from_secs(4));

    let mut idle = connect(hub.addr);
    idle.write_all(b"GET /healthz HTTP/1.1\r\nHost: t\r\n\r\n")
        .unwrap();
    assert_eq!(
        read_response(&mut idle, &mut Vec::new(), false)
            .unwrap()
            .status,
        200
    );
    let t = Instant::now();
    assert!(is_closed(&mut idle));
    assert!(
        t.elapsed() >= Duration::from_millis(1500),
        "closed too early"
    );
    // Meanwhile the hub still serves.
    assert_eq!(get(hub.addr, "/healthz").status, 200);
}
