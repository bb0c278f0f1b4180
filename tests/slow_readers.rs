//! Bounded output: a subscriber that stops reading is closed (or skipped) by policy instead
//! of growing the server's memory, and the application is told.

mod util;

use std::io::Read;
use std::sync::{mpsc, Arc, Mutex};
use std::thread;
use std::time::{Duration, Instant};

use pushwire::{
    App, Config, ConnId, ConnKind, Ctx, Handle, Reply, Request, Response, Server, SlowPolicy,
    SseStream, WsAccept,
};
use util::*;

struct SubApp {
    slow: Arc<Mutex<Vec<ConnKind>>>,
}

impl App for SubApp {
    fn on_request(&mut self, _cx: &mut Ctx<'_>, _conn: ConnId, req: &Request) -> Reply {
        match req.path() {
            "/ws" => Reply::WebSocket(WsAccept::new().subscribe("t", None)),
            "/sse" => Reply::Sse(SseStream::new("t")),
            _ => Response::text(404, "").into(),
        }
    }
    fn on_slow_reader(&mut self, _cx: &mut Ctx<'_>, _conn: ConnId, kind: ConnKind) {
        self.slow.lock().unwrap().push(kind);
    }
}

fn start(
    policy: SlowPolicy,
    heartbeat: Duration,
) -> (
    std::net::SocketAddr,
    Handle,
    Arc<Mutex<Vec<ConnKind>>>,
    thread::JoinHandle<()>,
) {
    let slow = Arc::new(Mutex::new(Vec::new()));
    let s2 = slow.clone();
    let (tx, rx) = mpsc::channel();
    let th = thread::spawn(move || {
        let config = Config::new()
            .high_water(64 * 1024)
            .slow_policy(policy)
            .sse_heartbeat(heartbeat);
        let mut server = Server::bind("127.0.0.1:0", config, SubApp { slow: s2 }).unwrap();
        tx.send((server.local_addr(), server.handle())).unwrap();
        server.run().unwrap();
    });
    let (addr, handle) = rx.recv().unwrap();
    (addr, handle, slow, th)
}

/// Publishes 64 KiB events until the app hears of a slow reader (at most 400 = 25 MiB;
/// with `expect_slow` false, all 400).
fn flood(handle: &Handle, slow: &Arc<Mutex<Vec<ConnKind>>>, expect_slow: bool) -> usize {
    let data = "x".repeat(64 * 1024);
    for n in 1..=400 {
        handle.publish("t", None, &data);
        if n % 10 == 0 {
            // Let the loop run so the kernel buffers fill and the queue builds up.
            thread::sleep(Duration::from_millis(5));
            if !slow.lock().unwrap().is_empty() {
                return n;
            }
        }
    }
    let deadline = Instant::now() + Duration::from_secs(5);
    while expect_slow && slow.lock().unwrap().is_empty() && Instant::now() < deadline {
        thread::sleep(Duration::from_millis(10));
    }
    400
}

fn ws_count(handle: &Handle) -> usize {
    let (tx, rx) = mpsc::channel();
    handle.run(move |cx| tx.send(cx.stats().websocket).unwrap());
    rx.recv_timeout(Duration::from_secs(5)).unwrap()
}

#[test]
fn a_websocket_that_stops_reading_is_closed_with_1008() {
    let (addr, handle, slow, th) = start(SlowPolicy::Disconnect, Duration::from_secs(15));
    let mut c = WsClient::open(addr, "/ws", "");
    flood(&handle, &slow, true);
    assert_eq!(*slow.lock().unwrap(), vec![ConnKind::WebSocket]);
    // Reading now: whole text frames, then the close frame with 1008, then EOF.
    let mut texts = 0;
    let close = loop {
        let f = c.recv().expect("frames until the close");
        match f.opcode {
            1 => texts += 1,
            8 => break f,
            op => panic!("unexpected opcode {op}"),
        }
    };
    assert_eq!(&close.payload[..2], &1008u16.to_be_bytes());
    assert!(texts > 0);
    assert!(is_closed(&mut c.s));
    drop(c);
    let deadline = Instant::now() + Duration::from_secs(5);
    while ws_count(&handle) != 0 {
        assert!(
            Instant::now() < deadline,
            "the slow connection is still counted"
        );
        thread::sleep(Duration::from_millis(10));
    }
    handle.stop();
    th.join().unwrap();
}

#[test]
fn drop_messages_policy_keeps_the_connection_and_skips_events() {
    let (addr, handle, slow, th) = start(SlowPolicy::DropMessages, Duration::from_secs(15));
    let mut c = WsClient::open(addr, "/ws", "");
    let published = flood(&handle, &slow, false) as u64;
    assert!(
        slow.lock().unwrap().is_empty(),
        "drop-messages does not close"
    );
    let mut ids = Vec::new();
    c.s.set_read_timeout(Some(Duration::from_secs(2))).unwrap();
    while let Some(f) = c.recv() {
        assert_eq!(f.opcode, 1);
        ids.push(json_u64(&String::from_utf8_lossy(&f.payload), "id").unwrap());
        if ids.last() == Some(&published) {
            break;
        }
    }
    assert!(ids.windows(2).all(|w| w[0] < w[1]), "in order");
    assert!(
        (ids.len() as u64) < published,
        "some events were dropped for the slow reader"
    );
    // Still alive: a new event arrives once it reads again.
    handle.publish("t", None, "after");
    let mut last = String::new();
    for _ in 0..1000 {
        let f = c.recv().expect("the connection is still open");
        last = String::from_utf8_lossy(&f.payload).into_owned();
        if last.contains("\"after\"") {
            break;
        }
    }
    assert!(last.contains("\"after\""));
    assert_eq!(ws_count(&handle), 1);
    handle.stop();
    th.join().unwrap();
}

#[test]
fn an_sse_stream_that_stops_reading_is_ended() {
    // Frequent heartbeats: none may follow the last chunk while the stream drains.
    let (addr, handle, slow, th) = start(SlowPolicy::Disconnect, Duration::from_millis(20));
    let mut s = connect(addr);
    std::io::Write::write_all(&mut s, b"GET /sse HTTP/1.1\r\nHost: t\r\n\r\n").unwrap();
    thread::sleep(Duration::from_millis(50));
    flood(&handle, &slow, true);
    assert_eq!(*slow.lock().unwrap(), vec![ConnKind::Sse]);
    // The stream ends properly: the last chunk, then the connection closes.
    let mut all = Vec::new();
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    let _ = s.read_to_end(&mut all);
    assert!(
        all.ends_with(b"\r\n0\r\n\r\n"),
        "stream did not end with the last chunk"
    );
    handle.stop();
    th.join().unwrap();
}
