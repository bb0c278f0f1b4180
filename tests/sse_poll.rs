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
    for b in bodies {
        assert_eq!(post(hub.addr, "/topics/s?event=note", b).status, 201);
    }
    assert!(c.wait_events(bodies.len(), 10), "got {:?}", c.events);
    for (i, (ev, sent)) in c.events.iter().zip(bodies).enumerate() {
        assert_eq!(ev.event, "note");
        assert_eq!(ev.last_event_id, (i + 1).to_string());
        // Browsers normalise CR and CRLF line breaks to LF.
        assert_eq!(ev.data, sent.replace("\r\n", "\n").replace('\r', "\n"));
    }
}

#[test]
fn last_event_id_resumes_exactly_and_too_old_gets_a_gap() {
    let hub = start_hub(&["--history-events", "5"]);
    for i in 1..=8 {
        post(hub.addr, "/topics/r", &format!("e{i}"));
    }
    let mut c = SseClient::open(hub.addr, "/topics/r/sse", "Last-Event-ID: 5\r\n");
    assert!(c.wait_events(3, 5));
    assert_eq!(data_ids(&c.events), vec![6, 7, 8]);
    post(hub.addr, "/topics/r", "e9");
    assert!(c.wait_events(4, 5));
    assert_eq!(data_ids(&c.events), vec![6, 7, 8, 9]);
    // The query form, for clients that cannot set headers; the header wins when both exist.
    let mut q = SseClient::open(hub.addr, "/topics/r/sse?last_event_id=7", "");
    assert!(q.wait_events(2, 5));
    assert_eq!(data_ids(&q.events), vec![8, 9]);
    let mut both = SseClient::open(
        hub.addr,
        "/topics/r/sse?last_event_id=1",
        "Last-Event-ID: 8\r\n",
    );
    assert!(both.wait_events(1, 5));
    assert_eq!(data_ids(&both.events), vec![9]);
    // Too old: the gap event first (data = oldest kept id, no id line), then from the oldest.
    let mut g = SseClient::open(hub.addr, "/topics/r/sse", "Last-Event-ID: 2\r\n");
    assert!(g.wait_events(6, 5));
    assert_eq!(g.events[0].event, "gap");
    assert_eq!(g.events[0].data, "5");
    assert_eq!(g.events[0].last_event_id, "");
    assert_eq!(data_ids(&g.events), vec![5, 6, 7, 8, 9]);
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
    post(addr, "/topics/lp", "wake up");
    let (r, _) = t.join().unwrap();
    let latency = published.elapsed();
    assert_eq!(
        r.text(),
        r#"{"events":[{"id":1,"event":null,"data":"wake up"}],"next":1,"gap":false}"#
    );
    assert!(
        latency < Duration::from_millis(500),
        "released after {latency:?}"
    );

    // Nothing newer within the timeout: an empty list and the same cursor.
    let started = Instant::now();
    let r = get(addr, "/topics/lp/poll?since=1&timeout=1");
    assert!(started.elapsed() >= Duration::from_millis(900));
    assert_eq!(r.text(), r#"{"events":[],"next":1,"gap":false}"#);
    assert_eq!(get(addr, "/topics/lp/poll?timeout=x").status, 400);

    // A client that disconnects while parked frees its slot at once.
    let mut s = connect(addr);
    s.write_all(b"GET /topics/lp/poll?since=1&timeout=60 HTTP/1.1\r\nHost: t\r\n\r\n")
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
        for i in 1..=N {
            let body = format!("event {i}");
            let raw = format!(
                "POST /topics/loss HTTP/1.1\r\nHost: t\r\nContent-Length: {}\r\n\r\n{body}",
                body.len()
            );
            s.write_all(raw.as_bytes()).unwrap();
            assert_eq!(read_response(&mut s, &mut buf, false).unwrap().status, 201);
        }
    });
    let poller = thread::spawn(move || {
        let mut seen = Vec::new();
        let mut since = 0;
        let deadline = Instant::now() + Duration::from_secs(60);
        let mut s = connect(addr);
        let mut buf = Vec::new();
        while since < N && Instant::now() < deadline {
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
    while (sse_seen.last().copied().unwrap_or(0)) < N && Instant::now() < deadline {
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
    publisher.join().unwrap();
    let polled = poller.join().unwrap();
    let want: Vec<u64> = (1..=N).collect();
    assert_eq!(polled, want, "long-poll lost or duplicated events");
    assert_eq!(sse_seen, want, "SSE lost or duplicated events");
    assert!(cuts >= 5, "the SSE client was cut only {cuts} times");
}
