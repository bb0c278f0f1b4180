//! The library API over real loopback sockets: a test application, a `Handle` used from
//! another thread, deferred answers, timers and graceful stop.

mod util;

use std::io::Write;
use std::sync::mpsc;
use std::thread;
use std::time::Duration;

use pushwire::{App, CloseInfo, Config, ConnId, Ctx, Reply, Request, Response, Server, TimerId};
use util::*;

#[derive(Default)]
struct TestApp {
    later: Vec<ConnId>,
    closed: usize,
}

impl App for TestApp {
    fn on_request(&mut self, cx: &mut Ctx<'_>, conn: ConnId, req: &Request) -> Reply {
        match req.path() {
            "/later" => {
                // Answer after a timer: the request waits, nothing blocks.
                self.later.push(conn);
                cx.set_timer(Duration::from_millis(50), self.later.len() as u64 - 1);
                Reply::Later
            }
            "/last" => {
                let last = cx.last_id("t");
                Response::text(200, last.to_string()).into()
            }
            "/stop" => {
                cx.stop();
                Response::text(200, "stopping").into()
            }
            _ => Response::text(404, "").into(),
        }
    }

    fn on_timer(&mut self, cx: &mut Ctx<'_>, _t: TimerId, tag: u64) {
        let conn = self.later[tag as usize];
        assert!(cx.respond(conn, Response::text(200, format!("later {tag}"))));
        // A second answer to the same request is refused.
        assert!(!cx.respond(conn, Response::text(200, "again")));
    }

    fn on_close(&mut self, _cx: &mut Ctx<'_>, _conn: ConnId, _info: &CloseInfo) {
        self.closed += 1;
    }
}

fn spawn(
    config: Config,
) -> (
    std::net::SocketAddr,
    pushwire::Handle,
    thread::JoinHandle<usize>,
) {
    let (tx, rx) = mpsc::channel();
    let th = thread::spawn(move || {
        let mut server = Server::bind("127.0.0.1:0", config, TestApp::default()).unwrap();
        tx.send((server.local_addr(), server.handle())).unwrap();
        server.run().unwrap();
        server.app().closed
    });
    let (addr, handle) = rx.recv().unwrap();
    (addr, handle, th)
}

#[test]
fn handle_publishes_from_another_thread() {
    let (addr, handle, th) = spawn(Config::new());
    let last_id = |handle: &pushwire::Handle| {
        let (tx, rx) = mpsc::channel();
        assert!(handle.run(move |cx| tx.send(cx.last_id("t")).unwrap()));
        rx.recv_timeout(Duration::from_secs(5)).unwrap()
    };
    assert_eq!(last_id(&handle), 0, "an unknown topic");
    // One event first, to learn where this topic's ids start.
    assert!(handle.publish("t", None, "first"));
    let first = last_id(&handle);
    assert!(first > 0);
    let publishers: Vec<_> = (0..4)
        .map(|_| {
            let h = handle.clone();
            thread::spawn(move || {
                for i in 0..250 {
                    assert!(h.publish("t", None, &format!("m{i}")));
                }
            })
        })
        .collect();
    for p in publishers {
        p.join().unwrap();
    }
    // Commands are handled in order, so a request made after they were all sent and a
    // round trip through the loop sees all 1,000, each with the next id.
    assert_eq!(last_id(&handle), first + 1000);
    assert_eq!(get(addr, "/last").text(), (first + 1000).to_string());
    let (tx, rx) = mpsc::channel();
    handle.run(move |cx| tx.send(cx.events("t", first, 2000)).unwrap());
    let page = rx.recv_timeout(Duration::from_secs(5)).unwrap();
    assert!(!page.gap && !page.more);
    assert_eq!(page.next, first + 1000);
    let ids: Vec<u64> = page.events.iter().map(|e| e.id).collect();
    assert_eq!(ids, (first + 1..=first + 1000).collect::<Vec<_>>());
    assert!(handle.stop());
    th.join().unwrap();
    assert!(
        !handle.publish("t", None, "after stop"),
        "a stopped server takes no commands"
    );
}

#[test]
fn later_answers_keep_pipelined_order() {
    let (addr, handle, th) = spawn(Config::new());
    let mut s = connect(addr);
    s.write_all(b"GET /later HTTP/1.1\r\nHost: t\r\n\r\nGET /last HTTP/1.1\r\nHost: t\r\n\r\n")
        .unwrap();
    let mut buf = Vec::new();
    assert_eq!(
        read_response(&mut s, &mut buf, false).unwrap().text(),
        "later 0"
    );
    assert_eq!(read_response(&mut s, &mut buf, false).unwrap().text(), "0");
    handle.stop();
    th.join().unwrap();
}

#[test]
fn graceful_stop_flushes_and_closes_everything() {
    let (addr, _handle, th) = spawn(Config::new());
    let mut idle: Vec<_> = (0..20).map(|_| connect(addr)).collect();
    for s in idle.iter_mut() {
        s.write_all(b"GET /last HTTP/1.1\r\nHost: t\r\n\r\n")
            .unwrap();
        assert_eq!(
            read_response(s, &mut Vec::new(), false).unwrap().status,
            200
        );
    }
    let r = get(addr, "/stop");
    assert_eq!(r.text(), "stopping");
    assert_eq!(r.header("connection"), Some("close"));
    for s in idle.iter_mut() {
        assert!(is_closed(s));
    }
    let closed = th.join().unwrap();
    assert_eq!(closed, 21, "on_close once per connection");
    assert!(
        std::net::TcpStream::connect(addr).is_err(),
        "listener is gone"
    );
}

/// Long-lived replies that begin after a stop (here: from the very request that asked to
/// stop) finish politely at once: a parked poll gets its (empty) answer, an SSE stream its
/// last chunk, a WebSocket a Close 1001, well before the stop timeout.
#[test]
fn replies_begun_after_a_stop_are_finished_politely() {
    struct StopApp;
    impl App for StopApp {
        fn on_request(&mut self, cx: &mut Ctx<'_>, _conn: ConnId, req: &Request) -> Reply {
            cx.stop();
            match req.path() {
                "/poll" => Reply::Park(pushwire::Park::new("t", 0, Duration::from_secs(30))),
                "/sse" => Reply::Sse(pushwire::SseStream::new("t")),
                _ => Reply::WebSocket(pushwire::WsAccept::new()),
            }
        }
    }
    for path in ["/poll", "/sse", "/ws"] {
        let (tx, rx) = mpsc::channel();
        let th = thread::spawn(move || {
            let config = Config::new().stop_timeout(Duration::from_secs(20));
            let mut server = Server::bind("127.0.0.1:0", config, StopApp).unwrap();
            tx.send(server.local_addr()).unwrap();
            server.run().unwrap();
        });
        let addr = rx.recv().unwrap();
        let started = std::time::Instant::now();
        let mut s = connect(addr);
        let ws = "Upgrade: websocket\r\nConnection: Upgrade\r\n\
                  Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n";
        let extra = if path == "/ws" { ws } else { "" };
        write!(s, "GET {path} HTTP/1.1\r\nHost: t\r\n{extra}\r\n").unwrap();
        // Read until the answer is complete: EOF, or for the WebSocket its Close frame
        // (the server then waits for ours, which this client does not send).
        let mut got = Vec::new();
        let done = |got: &[u8]| {
            got.windows(4)
                .position(|w| w == b"\r\n\r\n")
                .is_some_and(|at| path == "/ws" && got.len() >= at + 4 + 19)
        };
        while !done(&got) {
            let mut buf = [0u8; 4096];
            match std::io::Read::read(&mut s, &mut buf).unwrap() {
                0 => break,
                n => got.extend_from_slice(&buf[..n]),
            }
        }
        let text = String::from_utf8_lossy(&got);
        match path {
            "/poll" => assert!(
                text.starts_with("HTTP/1.1 200") && text.ends_with(r#""gap":false}"#),
                "{text}"
            ),
            "/sse" => assert!(
                text.contains("text/event-stream") && text.ends_with("0\r\n\r\n"),
                "{text}"
            ),
            _ => {
                let frame = &got[got.windows(4).position(|w| w == b"\r\n\r\n").unwrap() + 4..];
                assert_eq!(&frame[..4], b"\x88\x11\x03\xe9", "a Close 1001: {frame:?}");
            }
        }
        assert!(
            started.elapsed() < Duration::from_secs(10),
            "{path}: finished at once, not after the stop timeout"
        );
        drop(s);
        th.join().unwrap();
    }
}
