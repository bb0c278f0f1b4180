//! Issue 4: Server-Sent Events and long-poll parking through the hub, over loopback.

mod util;

#[path = "util/sse_parser.rs"]
mod sse_parser;

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::thread;
use std::time::{Duration, Instant};

use sse_parser::{ParsedEvent, SseParser};
use util::*;

/// An SSE client over a raw socket: de-chunks the body and feeds a WHATWG parser.
struct SseClient {
    s: TcpStream,
    raw: Vec<u8>,
    parser: SseParser,
    events: Vec<ParsedEvent>,
    head: Resp,
}

impl SseClient {
    fn open(addr: SocketAddr, path: &str, extra: &str) -> SseClient {
        let mut s = connect(addr);
        s.write_all(
            format!("GET {path} HTTP/1.1\r\nHost: t\r\nAccept: text/event-stream\r\n{extra}\r\n")
                .as_bytes(),
        )
        .unwrap();
        let mut raw = Vec::new();
        let head = read_response(&mut s, &mut raw, true).expect("stream head");
        assert_eq!(head.status, 200);
        assert_eq!(head.header("transfer-encoding"), Some("chunked"));
        SseClient {
            s,
            raw,
            parser: SseParser::new(),
            events: Vec::new(),
            head,
        }
    }

    /// Decodes whole chunks from `raw` into the parser.
    fn pump(&mut self) {
        loop {
            let Some(eol) = self.raw.windows(2).position(|w| w == b"\r\n") else {
                return;
            };
            let size =
                usize::from_str_radix(std::str::from_utf8(&self.raw[..eol]).unwrap(), 16).unwrap();
            if self.raw.len() < eol + 2 + size + 2 {
                return;
            }
            let data: Vec<u8> = self.raw[eol + 2..eol + 2 + size].to_vec();
            self.raw.drain(..eol + 2 + size + 2);
            let evs = self.parser.feed(&data);
            self.events.extend(evs);
        }
    }

    /// Waits until at least `n` events arrived in total (bounded by `secs`).
    fn wait_events(&mut self, n: usize, secs: u64) -> bool {
        let deadline = Instant::now() + Duration::from_secs(secs);
        self.s
            .set_read_timeout(Some(Duration::from_millis(100)))
            .unwrap();
        let mut tmp = [0u8; 65536];
        self.pump();
        while self.events.len() < n {
            if Instant::now() > deadline {
                return false;
            }
            match self.s.read(&mut tmp) {
                Ok(0) => return false,
                Ok(k) => {
                    self.raw.extend_from_slice(&tmp[..k]);
                    self.pump();
                }
                Err(_) => {}
            }
        }
        true
    }
}

/// Publishes `body` (path and query in `path`) and returns the id from the hub's answer,
/// `201 {"topic":..,"id":ID}`.
fn publish(addr: SocketAddr, path: &str, body: &str) -> u64 {
    let r = post(addr, path, body);
    assert_eq!(r.status, 201, "{}", r.text());
    json_u64(&r.text(), "id").unwrap_or_else(|| panic!("no id in {}", r.text()))
}

/// Publishes the bodies in order; asserts their ids are consecutive and returns the first.
fn publish_run(addr: SocketAddr, path: &str, bodies: &[&str]) -> u64 {
    let ids: Vec<u64> = bodies.iter().map(|b| publish(addr, path, b)).collect();
    let first = ids[0];
    assert_eq!(ids, (first..first + ids.len() as u64).collect::<Vec<_>>());
    first
}

fn data_ids(events: &[ParsedEvent]) -> Vec<u64> {
    events
        .iter()
        .filter(|e| e.event != "gap")
        .map(|e| e.last_event_id.parse().unwrap())
        .collect()
}

#[test]
fn sse_framing_of_multiline_unicode_and_empty_data() {
    let hub = start_hub(&[]);
    let mut c = SseClient::open(hub.addr, "/topics/s/sse", "");
    assert_eq!(c.head.header("content-type"), Some("text/event-stream"));
    assert_eq!(c.head.header("cache-control"), Some("no-cache"));
    assert_eq!(c.head.header("x-accel-buffering"), Some("no"));
    let bodies = [
        "one",
        "two\nlines",
        "crlf\r\nand\rcr",
        "",
        "ünïcødé ✓ 🚀",
        " leading space",
        "data: x\n\n",
    ];
    let first = publish_run(hub.addr, "/topics/s?event=note", &bodies);
    assert!(c.wait_events(bodies.len(), 10), "got {:?}", c.events);
    assert_eq!(c.events.len(), bodies.len(), "got {:?}", c.events);
    for (i, (ev, sent)) in c.events.iter().zip(bodies).enumerate() {
        assert_eq!(ev.event, "note");
        assert_eq!(ev.last_event_id, (first + i as u64).to_string());
        // Browsers normalise CR and CRLF line breaks to LF.
        assert_eq!(ev.data, sent.replace("\r\n", "\n").replace('\r', "\n"));
    }
}

#[test]
fn last_event_id_resumes_exactly_and_too_old_gets_a_gap() {
    let hub = start_hub(&["--history-events", "5"]);
    let bodies: Vec<String> = (1..=8).map(|i| format!("e{i}")).collect();
    let bodies: Vec<&str> = bodies.iter().map(String::as_str).collect();
    // Ids f..=f+7; kept: f+3..=f+7.
    let f = publish_run(hub.addr, "/topics/r", &bodies);
    let hdr = |id: u64| format!("Last-Event-ID: {id}\r\n");
    let mut c = SseClient::open(hub.addr, "/topics/r/sse", &hdr(f + 4));
    assert!(c.wait_events(3, 5));
    assert_eq!(data_ids(&c.events), vec![f + 5, f + 6, f + 7]);
    assert_eq!(publish(hub.addr, "/topics/r", "e9"), f + 8); // kept: f+4..=f+8
    assert!(c.wait_events(4, 5));
    assert_eq!(data_ids(&c.events), vec![f + 5, f + 6, f + 7, f + 8]);
    assert!(c.events.iter().all(|e| e.event != "gap"), "{:?}", c.events);
    // The query form, for clients that cannot set headers; the header wins when both exist.
    let mut q = SseClient::open(
        hub.addr,
        &format!("/topics/r/sse?last_event_id={}", f + 6),
        "",
    );
    assert!(q.wait_events(2, 5));
    assert_eq!(data_ids(&q.events), vec![f + 7, f + 8]);
    assert!(q.events.iter().all(|e| e.event != "gap"), "{:?}", q.events);
    let mut both = SseClient::open(hub.addr, "/topics/r/sse?last_event_id=1", &hdr(f + 7));
    assert!(both.wait_events(1, 5));
    assert_eq!(both.events.len(), 1, "{:?}", both.events);
    assert_eq!(data_ids(&both.events), vec![f + 8]);
    // Too old: the gap event first (data = oldest kept id, no id line), then from the oldest.
    // An evicted cursor (f + 1), an old small one from before a restart (3, 2), and "from
    // the start" (0) on a trimmed log all get the gap.
    for last in [hdr(f + 1), hdr(3), hdr(2), hdr(0)] {
        let mut g = SseClient::open(hub.addr, "/topics/r/sse", &last);
        assert!(g.wait_events(6, 5), "{last:?}: {:?}", g.events);
        assert_eq!(g.events.len(), 6, "{last:?}: {:?}", g.events);
        assert_eq!(g.events[0].event, "gap", "{last:?}");
        assert_eq!(g.events[0].data, (f + 4).to_string(), "{last:?}");
        assert_eq!(g.events[0].last_event_id, "", "{last:?}");
        assert_eq!(
            data_ids(&g.events),
            (f + 4..=f + 8).collect::<Vec<_>>(),
            "{last:?}"
        );
    }

    // A fresh, untrimmed topic: an old small cursor is a gap that starts from its first event;
    // the cursor right before its first id, or 0, is no gap.
    let g0 = publish_run(hub.addr, "/topics/fresh", &["a", "b"]);
    let mut g = SseClient::open(hub.addr, "/topics/fresh/sse", "Last-Event-ID: 3\r\n");
    assert!(g.wait_events(3, 5), "{:?}", g.events);
    assert_eq!(g.events.len(), 3, "{:?}", g.events);
    assert_eq!(
        (g.events[0].event.as_str(), g.events[0].data.clone()),
        ("gap", g0.to_string())
    );
    assert_eq!(data_ids(&g.events), vec![g0, g0 + 1]);
    for last in [hdr(g0 - 1), hdr(0)] {
        let mut n = SseClient::open(hub.addr, "/topics/fresh/sse", &last);
        assert!(n.wait_events(2, 5), "{last:?}: {:?}", n.events);
        assert_eq!(n.events.len(), 2, "{last:?}: {:?}", n.events);
        assert!(n.events.iter().all(|e| e.event != "gap"), "{last:?}");
        assert_eq!(data_ids(&n.events), vec![g0, g0 + 1], "{last:?}");
        assert_eq!(
            (n.events[0].data.as_str(), n.events[1].data.as_str()),
            ("a", "b")
        );
    }
}

#[test]
fn heartbeats_arrive_on_idle_streams() {
    let hub = start_hub(&["--sse-heartbeat", "0.2"]);
    let mut c = SseClient::open(hub.addr, "/topics/hb/sse", "");
    let t = Instant::now();
    while c.parser.comments < 2 && t.elapsed() < Duration::from_secs(5) {
        c.wait_events(1, 1);
    }
    assert!(c.parser.comments >= 2, "no heartbeat comments");
}

fn stats(addr: SocketAddr) -> String {
    get(addr, "/stats").text()
}

#[test]
fn long_poll_parks_releases_times_out_and_notices_disconnects() {
    let hub = start_hub(&[]);
    let addr = hub.addr;
    let t = thread::spawn(move || {
        let started = Instant::now();
        let r = get(addr, "/topics/lp/poll?since=0&timeout=30");
        (r, started.elapsed())
    });
    // Wait until it is parked, then publish.
    let deadline = Instant::now() + Duration::from_secs(5);
    while json_u64(&stats(addr), "parked") != Some(1) {
        assert!(Instant::now() < deadline, "never parked: {}", stats(addr));
        thread::sleep(Duration::from_millis(5));
    }
    let published = Instant::now();
    let id = publish(addr, "/topics/lp", "wake up");
    let (r, _) = t.join().unwrap();
    let latency = published.elapsed();
    assert_eq!(
        r.text(),
        format!(
            r#"{{"events":[{{"id":{id},"event":null,"data":"wake up"}}],"next":{id},"gap":false}}"#
        )
    );
    assert!(
        latency < Duration::from_millis(500),
        "released after {latency:?}"
    );

    // Nothing newer within the timeout: an empty list and the same cursor.
    let started = Instant::now();
    let r = get(addr, &format!("/topics/lp/poll?since={id}&timeout=1"));
    assert!(started.elapsed() >= Duration::from_millis(900));
    assert_eq!(
        r.text(),
        format!(r#"{{"events":[],"next":{id},"gap":false}}"#)
    );
    assert_eq!(get(addr, "/topics/lp/poll?timeout=x").status, 400);

    // A client that disconnects while parked frees its slot at once.
    let mut s = connect(addr);
    s.write_all(
        format!("GET /topics/lp/poll?since={id}&timeout=60 HTTP/1.1\r\nHost: t\r\n\r\n").as_bytes(),
    )
    .unwrap();
    let deadline = Instant::now() + Duration::from_secs(5);
    while json_u64(&stats(addr), "parked") != Some(1) {
        assert!(Instant::now() < deadline);
        thread::sleep(Duration::from_millis(5));
    }
    drop(s);
    let deadline = Instant::now() + Duration::from_secs(5);
    while json_u64(&stats(addr), "parked") != Some(0) {
        assert!(
            Instant::now() < deadline,
            "parked count did not drop: {}",
            stats(addr)
        );
        thread::sleep(Duration::from_millis(5));
    }
    let st = stats(addr);
    assert_eq!(json_u64(&st, "longpoll"), Some(1), "{st}");
}

#[test]
fn no_event_lost_for_long_poll_and_resuming_sse() {
    const N: u64 = 10_000;
    let hub = start_hub(&["--history-events", "20000", "--history-bytes", "10000000"]);
    let addr = hub.addr;
    let publisher = thread::spawn(move || {
        let mut s = connect(addr);
        let mut buf = Vec::new();
        let mut ids = Vec::new();
        for i in 1..=N {
            let body = format!("event {i}");
            let raw = format!(
                "POST /topics/loss HTTP/1.1\r\nHost: t\r\nContent-Length: {}\r\n\r\n{body}",
                body.len()
            );
            s.write_all(raw.as_bytes()).unwrap();
            let r = read_response(&mut s, &mut buf, false).unwrap();
            assert_eq!(r.status, 201);
            ids.push(json_u64(&r.text(), "id").unwrap());
        }
        ids
    });
    // Both readers learn the first id from the first event they get (a fresh log starts at
    // the clock); they stop after the N-th id from there.
    let done = |seen: &[u64], at: u64| seen.first().is_some_and(|f| at >= f + N - 1);
    let poller = thread::spawn(move || {
        let mut seen = Vec::new();
        let mut since = 0;
        let deadline = Instant::now() + Duration::from_secs(60);
        let mut s = connect(addr);
        let mut buf = Vec::new();
        while !done(&seen, since) && Instant::now() < deadline {
            s.write_all(
                format!(
                    "GET /topics/loss/poll?since={since}&timeout=5 HTTP/1.1\r\nHost: t\r\n\r\n"
                )
                .as_bytes(),
            )
            .unwrap();
            let r = read_response(&mut s, &mut buf, false).unwrap();
            let text = r.text();
            assert!(text.ends_with("\"gap\":false}"), "{text}");
            seen.extend(json_ids(&text));
            since = json_u64(&text, "next").unwrap();
        }
        seen
    });
    // The SSE client is cut every ~1,500 events and resumes with Last-Event-ID.
    let mut sse_seen: Vec<u64> = Vec::new();
    let deadline = Instant::now() + Duration::from_secs(60);
    let mut cuts = 0;
    while !done(&sse_seen, sse_seen.last().copied().unwrap_or(0)) && Instant::now() < deadline {
        let extra = match sse_seen.last() {
            Some(id) => format!("Last-Event-ID: {id}\r\n"),
            None => String::new(),
        };
        let path = if sse_seen.is_empty() {
            "/topics/loss/sse?last_event_id=0"
        } else {
            "/topics/loss/sse"
        };
        let mut c = SseClient::open(addr, path, &extra);
        c.wait_events(1500, 10);
        assert!(c.events.iter().all(|e| e.event != "gap"));
        sse_seen.extend(data_ids(&c.events));
        cuts += 1;
    }
    let published = publisher.join().unwrap();
    let polled = poller.join().unwrap();
    let first = published[0];
    let want: Vec<u64> = (first..first + N).collect();
    assert_eq!(published, want, "publish answers are not consecutive ids");
    assert_eq!(polled, want, "long-poll lost or duplicated events");
    assert_eq!(sse_seen, want, "SSE lost or duplicated events");
    assert!(cuts >= 5, "the SSE client was cut only {cuts} times");
}
