//! Issue 15: the library's batch publish over real loopback sockets. A batch reaches a
//! WebSocket, an SSE stream and a parked long poll in order, as the exact bytes N single
//! publishes would make, all queued in one loop step (so each subscriber's share arrives
//! in one write); a refused batch leaves no trace; with a data directory a batch survives
//! a restart, and one too large for a log record is refused whole.

mod util;

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::ops::RangeInclusive;
use std::sync::mpsc;
use std::thread;
use std::time::{Duration, Instant};

use pushwire::proto::fanout::{sse_event_bytes, ws_event_frame};
use pushwire::proto::topic::TopicEvent;
use pushwire::{
    App, Config, ConnId, Ctx, Handle, Park, PublishError, Reply, Request, Response, Server,
    SseStream, WsAccept,
};
use util::{connect, read_response, WsClient};

struct BatchApp;

impl App for BatchApp {
    fn on_request(&mut self, _cx: &mut Ctx<'_>, _conn: ConnId, req: &Request) -> Reply {
        match req.path() {
            "/ws" => Reply::WebSocket(WsAccept::new().subscribe("t", None)),
            "/sse" => Reply::Sse(SseStream::new("t")),
            "/poll" => {
                let since = req.query_param("since").and_then(|s| s.parse().ok());
                Reply::Park(Park::new("t", since.unwrap_or(0), Duration::from_secs(10)))
            }
            _ => Response::text(404, "").into(),
        }
    }
}

fn spawn(config: Config) -> (SocketAddr, Handle, thread::JoinHandle<()>) {
    let (tx, rx) = mpsc::channel();
    let th = thread::spawn(move || {
        let mut server = Server::bind("127.0.0.1:0", config, BatchApp).unwrap();
        tx.send((server.local_addr(), server.handle())).unwrap();
        server.run().unwrap();
    });
    let (addr, handle) = rx.recv().unwrap();
    (addr, handle, th)
}

/// Runs `f` on the loop and returns its result.
fn on_loop<T: Send + 'static>(h: &Handle, f: impl FnOnce(&mut Ctx<'_>) -> T + Send + 'static) -> T {
    let (tx, rx) = mpsc::channel();
    assert!(h.run(move |cx| tx.send(f(cx)).unwrap()));
    rx.recv_timeout(Duration::from_secs(10)).unwrap()
}

fn batch(
    h: &Handle,
    event: Option<&'static str>,
    datas: Vec<String>,
) -> Result<RangeInclusive<u64>, PublishError> {
    on_loop(h, move |cx| cx.publish_batch("t", event, &datas))
}

fn ev(id: u64, event: Option<&str>, data: &str) -> TopicEvent {
    TopicEvent {
        id,
        event: event.map(Into::into),
        data: data.into(),
        json: false,
        published_ms: 0,
    }
}

/// Reads until `want` bytes are there; returns them and how many reads it took.
fn read_exactly(s: &mut TcpStream, buf: &mut Vec<u8>, want: usize) -> (Vec<u8>, usize) {
    let deadline = Instant::now() + Duration::from_secs(10);
    let mut tmp = vec![0u8; 1 << 16];
    let mut reads = 0;
    while buf.len() < want {
        assert!(
            Instant::now() < deadline,
            "timed out with {} of {want}",
            buf.len()
        );
        let n = s.read(&mut tmp).expect("read");
        assert!(n > 0, "EOF after {} of {want} bytes", buf.len());
        buf.extend_from_slice(&tmp[..n]);
        reads += 1;
    }
    (buf.drain(..want).collect(), reads)
}

/// An SSE stream of `t`, its head read.
fn sse(addr: SocketAddr) -> (TcpStream, Vec<u8>) {
    let mut s = connect(addr);
    s.write_all(b"GET /sse HTTP/1.1\r\nHost: t\r\n\r\n")
        .unwrap();
    let mut buf = Vec::new();
    let r = read_response(&mut s, &mut buf, true).expect("SSE head");
    assert_eq!(r.status, 200);
    // The stream opens with its retry hint or a comment: skip what came with the head.
    (s, Vec::new())
}

#[test]
fn a_batch_reaches_every_transport_in_order_in_one_write() {
    let (addr, h, th) = spawn(Config::new());
    let first = on_loop(&h, |cx| cx.publish("t", None, "before")).unwrap();
    let mut ws = WsClient::open(addr, "/ws", "");
    let (mut sse, mut sse_buf) = sse(addr);
    let mut poll = connect(addr);
    let req = format!("GET /poll?since={first} HTTP/1.1\r\nHost: t\r\n\r\n");
    poll.write_all(req.as_bytes()).unwrap();
    // Subscribed and parked once the loop served them: a publish after a round trip.
    thread::sleep(Duration::from_millis(200));
    let _ = sse.set_read_timeout(Some(Duration::from_millis(100)));
    let mut tmp = [0u8; 4096];
    while let Ok(n) = sse.read(&mut tmp) {
        if n == 0 {
            break;
        }
    }
    sse.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    sse_buf.clear();

    let n = 50;
    let datas: Vec<String> = (0..n).map(|i| format!("{{\"n\":{i}}}")).collect();
    let ids = batch(&h, Some("up"), datas.clone()).unwrap();
    assert_eq!(ids, first + 1..=first + n as u64);
    let evs: Vec<TopicEvent> = ids
        .clone()
        .zip(&datas)
        .map(|(id, d)| ev(id, Some("up"), d))
        .collect();

    // WebSocket: the exact frames of N single publishes, together.
    let want: Vec<u8> = evs
        .iter()
        .flat_map(|e| ws_event_frame(e).to_vec())
        .collect();
    let (got, reads) = read_exactly(&mut ws.s, &mut ws.buf, want.len());
    assert_eq!(got, want);
    println!(
        "websocket: {n} frames, {} bytes, in {reads} read(s)",
        want.len()
    );
    assert_eq!(reads, 1, "the batch's frames are written together");

    // SSE: the exact chunks, together.
    let want: Vec<u8> = evs
        .iter()
        .flat_map(|e| sse_event_bytes(e, true).to_vec())
        .collect();
    let (got, reads) = read_exactly(&mut sse, &mut sse_buf, want.len());
    assert_eq!(
        String::from_utf8_lossy(&got),
        String::from_utf8_lossy(&want)
    );
    assert_eq!(reads, 1, "the batch's SSE events are written together");

    // The parked poll: one answer with the whole batch.
    let r = read_response(&mut poll, &mut Vec::new(), false).expect("poll answer");
    assert_eq!(r.status, 200);
    assert_eq!(util::json_ids(&r.text()), ids.clone().collect::<Vec<_>>());

    // The history holds them, after the earlier event.
    let page = on_loop(&h, move |cx| cx.events("t", first, 100));
    let kept: Vec<(u64, String)> = page.events.iter().map(|e| (e.id, e.data.clone())).collect();
    let want: Vec<(u64, String)> = ids.clone().zip(datas).collect();
    assert_eq!(kept, want);
    assert!(page.events.iter().all(|e| e.name.as_deref() == Some("up")));
    assert!(h.stop());
    th.join().unwrap();
}

#[test]
fn a_refused_batch_stores_and_delivers_nothing() {
    let (addr, h, th) = spawn(Config::new().max_topics(1));
    let first = on_loop(&h, |cx| cx.publish("t", None, "x")).unwrap();
    let mut ws = WsClient::open(addr, "/ws", "");
    thread::sleep(Duration::from_millis(100));
    let two = || vec!["a".to_owned(), "b".to_owned()];
    assert_eq!(batch(&h, Some(""), two()), Err(PublishError::BadEventName));
    assert_eq!(
        batch(&h, Some("a b"), two()),
        Err(PublishError::BadEventName)
    );
    assert_eq!(batch(&h, None, Vec::new()), Err(PublishError::EmptyBatch));
    let other = on_loop(&h, |cx| cx.publish_batch("u", None, ["a", "b"]));
    assert_eq!(other, Err(PublishError::TooManyTopics));
    let bad = on_loop(&h, |cx| cx.publish_batch("a/b", None, ["a"]));
    assert_eq!(bad, Err(PublishError::BadTopic));
    let (last, published) = on_loop(&h, |cx| (cx.last_id("t"), cx.stats().published));
    assert_eq!((last, published), (first, 1));
    // The next thing the subscriber gets is the next publish: nothing came before it.
    let next = on_loop(&h, |cx| cx.publish_batch("t", None, vec!["c".to_string()])).unwrap();
    assert_eq!(next, first + 1..=first + 1);
    let want = ws_event_frame(&ev(first + 1, None, "c"));
    let (got, _) = read_exactly(&mut ws.s, &mut ws.buf, want.len());
    assert_eq!(&got[..], &want[..]);
    // From another thread: fire and forget.
    assert!(h.publish_batch("t", Some("h"), ["p", "q"]));
    let page = on_loop(&h, move |cx| cx.events("t", first + 1, 10));
    let got: Vec<_> = page
        .events
        .iter()
        .map(|e| (e.id, e.data.as_str()))
        .collect();
    assert_eq!(got, [(first + 2, "p"), (first + 3, "q")]);
    assert!(h.stop());
    th.join().unwrap();
}

#[test]
fn with_a_data_dir_a_batch_survives_a_restart_and_one_too_large_is_refused_whole() {
    let n: u64 = rand::random();
    let dir = std::env::temp_dir().join(format!("pushwire-batch-lib-{n:x}"));
    let config = || Config::new().data_dir(&dir);
    let (addr, h, th) = spawn(config());
    let mut ws = WsClient::open(addr, "/ws", "");
    thread::sleep(Duration::from_millis(100));
    let datas: Vec<String> = (0..20).map(|i| format!("e{i}")).collect();
    let ids = batch(&h, None, datas.clone()).unwrap();
    // Held until its fsync, then delivered whole.
    let evs: Vec<TopicEvent> = ids
        .clone()
        .zip(&datas)
        .map(|(id, d)| ev(id, None, d))
        .collect();
    let want: Vec<u8> = evs
        .iter()
        .flat_map(|e| ws_event_frame(e).to_vec())
        .collect();
    let (got, _) = read_exactly(&mut ws.s, &mut ws.buf, want.len());
    assert_eq!(got, want);
    // 17 events of 1 MiB: more than one 16 MiB record can hold.
    let big = "x".repeat(1 << 20);
    let too_large = on_loop(&h, move |cx| {
        cx.publish_batch("t", None, vec![big.as_str(); 17])
    });
    assert_eq!(too_large, Err(PublishError::TooLarge));
    assert_eq!(on_loop(&h, |cx| cx.last_id("t")), *ids.end());
    assert!(h.stop());
    th.join().unwrap();

    let (_addr, h, th) = spawn(config());
    let page = on_loop(&h, |cx| cx.events("t", 0, 100));
    let kept: Vec<(u64, String)> = page.events.iter().map(|e| (e.id, e.data.clone())).collect();
    assert_eq!(kept, ids.clone().zip(datas).collect::<Vec<_>>());
    // Ids go on after the batch.
    let next = batch(&h, None, vec!["after".into()]).unwrap();
    assert_eq!(*next.start(), ids.end() + 1);
    assert!(h.stop());
    th.join().unwrap();
    let _ = std::fs::remove_dir_all(&dir);
}

/// The library's JSON entry points: `publish_json`, `publish_batch_json`, the handle's
/// `publish_json`; invalid JSON names the item, the byte and the cause and stores
/// nothing; `events()` exposes the kind.
#[test]
fn json_publishes_through_the_library() {
    use pushwire::proto::json::{Cause, JsonError};
    let (_addr, h, th) = spawn(Config::new());
    let id = on_loop(&h, |cx| cx.publish_json("t", None, r#"{"a":1}"#)).unwrap();
    let bad = on_loop(&h, |cx| cx.publish_json("t", None, "{\"a\" 1}"));
    let err = PublishError::InvalidJson {
        item: None,
        error: JsonError {
            at: 5,
            cause: Cause::ExpectedColon,
        },
    };
    assert_eq!(bad, Err(err));
    assert_eq!(err.status(), 400);
    assert_eq!(err.to_string(), "invalid JSON at byte 5: expected ':'");
    let bad = on_loop(&h, |cx| cx.publish_batch_json("t", None, ["1", "[1,]"]));
    let Err(e) = bad else { panic!("{bad:?}") };
    assert_eq!(
        e.to_string(),
        "item 1: invalid JSON at byte 3: expected a value"
    );
    assert_eq!(on_loop(&h, |cx| cx.last_id("t")), id);
    let ids = on_loop(&h, |cx| cx.publish_batch_json("t", None, ["1", "\"s\""])).unwrap();
    assert_eq!(ids, id + 1..=id + 2);
    assert!(h.publish_json("t", None, "[true]"));
    assert!(h.publish("t", None, "[text]"));
    let page = on_loop(&h, move |cx| cx.events("t", id - 1, 10));
    let got: Vec<(&str, bool)> = page.events.iter().map(|e| (&*e.data, e.json)).collect();
    assert_eq!(
        got,
        [
            (r#"{"a":1}"#, true),
            ("1", true),
            ("\"s\"", true),
            ("[true]", true),
            ("[text]", false)
        ]
    );
    let json = String::from_utf8(page.to_json()).unwrap();
    assert!(json.contains(r#""data":"s"},{"id""#), "{json}");
    assert!(json.contains(r#""data":"[text]"}"#), "{json}");
    h.stop();
    th.join().unwrap();
}
