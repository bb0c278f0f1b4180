//! Bounds that protect the server from clients that stop reading, and API values that
//! must not crash it.

mod util;

use std::io::Write;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{mpsc, Arc};
use std::thread;
use std::time::{Duration, Instant};

use pushwire::{
    App, Config, ConnId, Ctx, Handle, Park, Reply, Request, Response, Server, TimerId, WsAccept,
};
use util::*;

struct Big {
    answered: Arc<AtomicUsize>,
}

impl App for Big {
    fn on_request(&mut self, cx: &mut Ctx<'_>, _conn: ConnId, req: &Request) -> Reply {
        self.answered.fetch_add(1, Ordering::SeqCst);
        match req.path() {
            "/big" => Response::new(200).body(vec![b'x'; 64 * 1024]).into(),
            "/huge" => Response::new(200)
                .body(vec![b'x'; 32 << 20])
                .header("Connection", "close")
                .into(),
            "/forever" => {
                // Duration::MAX means "never": no overflow, no panic.
                cx.set_timer(Duration::MAX, 1);
                Reply::Park(Park::new("t", 0, Duration::MAX))
            }
            "/ws" => Reply::WebSocket(WsAccept::new()),
            "/poll" => Reply::Park(Park::new("t", 0, Duration::from_secs(5))),
            _ => Response::text(200, "ok").into(),
        }
    }
    fn on_ws_open(&mut self, cx: &mut Ctx<'_>, conn: ConnId) {
        // Start the closing handshake at once; the test client never answers it.
        cx.close_ws(conn, 1000, "bye");
    }
    fn on_timer(&mut self, _cx: &mut Ctx<'_>, _t: TimerId, _tag: u64) {}
}

fn start(
    config: Config,
) -> (
    std::net::SocketAddr,
    Handle,
    Arc<AtomicUsize>,
    thread::JoinHandle<()>,
) {
    let answered = Arc::new(AtomicUsize::new(0));
    let a2 = answered.clone();
    let (tx, rx) = mpsc::channel();
    let th = thread::spawn(move || {
        let mut server = Server::bind("127.0.0.1:0", config, Big { answered: a2 }).unwrap();
        tx.send((server.local_addr(), server.handle())).unwrap();
        server.run().unwrap();
    });
    let (addr, handle) = rx.recv().unwrap();
    (addr, handle, answered, th)
}

fn http_count(handle: &Handle) -> usize {
    let (tx, rx) = mpsc::channel();
    handle.run(move |cx| tx.send(cx.stats().http).unwrap());
    rx.recv_timeout(Duration::from_secs(5)).unwrap()
}

#[test]
fn pipelined_requests_wait_while_answers_are_unread() {
    let (addr, handle, answered, th) = start(Config::new().high_water(256 * 1024));
    let mut s = connect(addr);
    let n = 2000;
    let raw = "GET /big HTTP/1.1\r\nHost: t\r\n\r\n".repeat(n);
    s.write_all(raw.as_bytes()).unwrap();
    thread::sleep(Duration::from_millis(500));
    let early = answered.load(Ordering::SeqCst);
    assert!(
        early < n / 4,
        "{early} of {n} answered although the client reads nothing"
    );
    // Reading now: every answer arrives, in order.
    let mut buf = Vec::new();
    for k in 0..n {
        let r = read_response(&mut s, &mut buf, false).unwrap_or_else(|| panic!("answer {k}"));
        assert_eq!(r.body.len(), 64 * 1024);
    }
    assert_eq!(answered.load(Ordering::SeqCst), n);
    handle.stop();
    th.join().unwrap();
}

#[test]
fn a_closing_connection_whose_peer_never_reads_is_dropped() {
    let (addr, handle, _, th) = start(Config::new());
    let mut s = connect(addr);
    s.write_all(b"GET /huge HTTP/1.1\r\nHost: t\r\n\r\n")
        .unwrap();
    let t = Instant::now();
    thread::sleep(Duration::from_millis(200));
    assert_eq!(http_count(&handle), 1);
    // No progress for the linger time: the server gives up on it.
    while http_count(&handle) != 0 {
        assert!(
            t.elapsed() < Duration::from_secs(8),
            "a client that never reads holds its slot"
        );
        thread::sleep(Duration::from_millis(50));
    }
    handle.stop();
    th.join().unwrap();
}

#[test]
fn duration_max_timeouts_mean_never() {
    let (addr, handle, _, th) = start(
        Config::new()
            .idle_timeout(Duration::MAX)
            .stop_timeout(Duration::MAX),
    );
    let mut s = connect(addr);
    s.write_all(b"GET /forever HTTP/1.1\r\nHost: t\r\n\r\n")
        .unwrap();
    thread::sleep(Duration::from_millis(100));
    // Still alive and serving.
    assert_eq!(get(addr, "/").status, 200);
    drop(s);
    handle.stop();
    th.join().unwrap();
}

#[test]
fn connections_beyond_the_maximum_are_closed_at_once() {
    let (addr, handle, _, th) = start(Config::new().max_connections(3));
    let mut kept: Vec<_> = (0..3).map(|_| connect(addr)).collect();
    for s in kept.iter_mut() {
        s.write_all(b"GET / HTTP/1.1\r\nHost: t\r\n\r\n").unwrap();
        assert_eq!(
            read_response(s, &mut Vec::new(), false).unwrap().status,
            200
        );
    }
    let mut extra = connect(addr);
    assert!(is_closed(&mut extra), "a fourth connection was kept");
    // The three are still served.
    kept[0]
        .write_all(b"GET / HTTP/1.1\r\nHost: t\r\n\r\n")
        .unwrap();
    assert_eq!(
        read_response(&mut kept[0], &mut Vec::new(), false)
            .unwrap()
            .status,
        200
    );
    drop(kept);
    handle.stop();
    th.join().unwrap();
}

#[test]
fn an_unanswered_close_frame_times_out() {
    let (addr, handle, _, th) = start(Config::new().ws_close_timeout(Duration::from_millis(300)));
    let mut c = WsClient::open(addr, "/ws", "");
    let close = c.recv().expect("the server's close frame");
    assert_eq!(close.opcode, 8);
    let t = Instant::now();
    // We never answer: the server closes TCP after its close timeout.
    assert!(is_closed(&mut c.s));
    assert!(
        t.elapsed() >= Duration::from_millis(200),
        "closed before the timeout"
    );
    handle.stop();
    th.join().unwrap();
}

#[test]
fn a_long_poll_answer_holds_at_most_poll_batch_events() {
    let (addr, handle, _, th) = start(Config::new().poll_batch(5));
    let last_id = |handle: &Handle| {
        let (tx, rx) = mpsc::channel();
        handle.run(move |cx| tx.send(cx.last_id("t")).unwrap());
        rx.recv_timeout(Duration::from_secs(5)).unwrap()
    };
    assert!(handle.publish("t", None, "e0"));
    // Commands run in order: once this one ran, the first event is published.
    let first = last_id(&handle);
    assert!(first > 0);
    for i in 1..12 {
        assert!(handle.publish("t", None, &format!("e{i}")));
    }
    // And once this one ran, all 12 are, with consecutive ids.
    assert_eq!(last_id(&handle), first + 11);
    let r = get(addr, "/poll");
    assert_eq!(
        json_ids(&r.text()),
        (first..first + 5).collect::<Vec<_>>(),
        "{}",
        r.text()
    );
    assert_eq!(json_u64(&r.text(), "next"), Some(first + 4));
    handle.stop();
    th.join().unwrap();
}
