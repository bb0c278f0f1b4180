//! The library's conveniences over real loopback sockets: extra headers on every kind of
//! push answer, the request's resume cursor and poll timeout, `Handle::run_app`, a
//! timer armed before `run`, `Handle::stop_now`, and a topic removed under a WebSocket
//! that follows two topics.

mod util;

use std::io::Read;
use std::sync::mpsc;
use std::thread;
use std::time::{Duration, Instant};

use pushwire::{
    App, Config, ConnId, Ctx, Handle, Park, Reply, Request, Response, Server, SseStream, TimerId,
    WsAccept,
};
use util::*;

#[derive(Default)]
struct Conv {
    /// What a worker thread wrote through `Handle::run_app`.
    notes: Vec<String>,
    /// The tags of the timers that fired.
    fired: Vec<u64>,
    /// The WebSockets opened, in order.
    opened: Vec<ConnId>,
}

impl App for Conv {
    fn on_request(&mut self, _cx: &mut Ctx<'_>, _conn: ConnId, req: &Request) -> Reply {
        let cors = ("Access-Control-Allow-Origin", "https://app.example");
        match req.path() {
            "/ws" => match req.resume_cursor() {
                Ok(since) => Reply::WebSocket(
                    WsAccept::new()
                        .subscribe("t", since)
                        .header("Set-Cookie", "seen=1; HttpOnly")
                        .header(cors.0, cors.1)
                        .header("Sec-WebSocket-Accept", "forged"),
                ),
                Err(e) => e.into(),
            },
            "/sse" => match req.resume_cursor() {
                Ok(last) => Reply::Sse(
                    SseStream::new("t")
                        .resume_after(last)
                        .header(cors.0, cors.1),
                ),
                Err(e) => e.into(),
            },
            "/poll" => {
                let since = match req.number_param("since") {
                    Ok(s) => s.unwrap_or(0),
                    Err(e) => return e.into(),
                };
                let max = Duration::from_secs(2);
                match req.poll_timeout(Duration::from_millis(300), max) {
                    Ok(t) => Reply::Park(Park::new("t", since, t).header(cors.0, cors.1)),
                    Err(e) => e.into(),
                }
            }
            "/state" => {
                let body = format!("notes={:?} fired={:?}", self.notes, self.fired);
                Response::text(200, body).into()
            }
            _ => Response::text(404, "").into(),
        }
    }

    fn on_timer(&mut self, _cx: &mut Ctx<'_>, _t: TimerId, tag: u64) {
        self.fired.push(tag);
    }

    fn on_ws_open(&mut self, _cx: &mut Ctx<'_>, conn: ConnId) {
        self.opened.push(conn);
    }
}

fn spawn() -> (std::net::SocketAddr, Handle, thread::JoinHandle<()>) {
    let (tx, rx) = mpsc::channel();
    let th = thread::spawn(move || {
        let mut server = Server::bind("127.0.0.1:0", Config::new(), Conv::default()).unwrap();
        // Armed before the loop runs: it fires once the loop does.
        server.set_timer(Duration::from_millis(20), 7);
        tx.send((server.local_addr(), server.handle())).unwrap();
        server.run().unwrap();
    });
    let (addr, handle) = rx.recv().unwrap();
    (addr, handle, th)
}

fn publish(handle: &Handle, data: &str) -> u64 {
    let (tx, rx) = mpsc::channel();
    let data = data.to_owned();
    assert!(handle.run(move |cx| tx.send(cx.publish("t", None, &data).unwrap()).unwrap()));
    rx.recv_timeout(Duration::from_secs(5)).unwrap()
}

/// Polls `/state` until it holds `want` (5 s at most).
fn wait_state(addr: std::net::SocketAddr, want: &str) -> String {
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let state = get(addr, "/state").text();
        if state.contains(want) || Instant::now() > deadline {
            return state;
        }
        thread::sleep(Duration::from_millis(10));
    }
}

#[test]
fn extra_headers_reach_the_websocket_sse_and_poll_answers() {
    let (addr, handle, th) = spawn();
    let first = publish(&handle, "one");
    publish(&handle, "two");

    // WebSocket: the app's fields in the 101, the handshake's own field not overridden;
    // ?since= replays through the resume cursor.
    let (mut ws, resp) = WsClient::try_open(addr, &format!("/ws?since={first}"), "");
    assert_eq!(resp.status, 101);
    assert_eq!(resp.header("set-cookie"), Some("seen=1; HttpOnly"));
    assert_eq!(
        resp.header("access-control-allow-origin"),
        Some("https://app.example")
    );
    let accepts: Vec<_> = resp
        .headers
        .iter()
        .filter(|(n, _)| n.eq_ignore_ascii_case("sec-websocket-accept"))
        .map(|(_, v)| v.as_str())
        .collect();
    assert_eq!(accepts.len(), 1, "{accepts:?}");
    assert_ne!(accepts[0], "forged");
    assert!(ws.recv_text().contains("\"data\":\"two\""));

    // A bad since is a 400 naming it, from the library's BadParam.
    let (_, resp) = WsClient::try_open(addr, "/ws?since=x", "");
    assert_eq!(resp.status, 400);
    assert_eq!(resp.text(), "since must be a non-negative integer\n");

    // SSE: Last-Event-ID wins over ?since=.
    let mut s = connect(addr);
    std::io::Write::write_all(
        &mut s,
        format!("GET /sse?since=0 HTTP/1.1\r\nHost: x\r\nLast-Event-ID: {first}\r\n\r\n")
            .as_bytes(),
    )
    .unwrap();
    let mut got = Vec::new();
    let deadline = Instant::now() + Duration::from_secs(5);
    s.set_read_timeout(Some(Duration::from_millis(100)))
        .unwrap();
    while !String::from_utf8_lossy(&got).contains("data: two") && Instant::now() < deadline {
        let mut b = [0u8; 4096];
        if let Ok(n) = s.read(&mut b) {
            got.extend_from_slice(&b[..n]);
        }
    }
    let text = String::from_utf8_lossy(&got);
    assert!(text.starts_with("HTTP/1.1 200 OK\r\n"), "{text}");
    assert!(
        text.contains("\r\nAccess-Control-Allow-Origin: https://app.example\r\n"),
        "{text}"
    );
    assert!(
        text.contains("data: two") && !text.contains("data: one"),
        "{text}"
    );

    // Long poll: the timeout from ?timeout= (clamped), the header on the empty answer.
    let t0 = Instant::now();
    let r = get(addr, &format!("/poll?since={}&timeout=999", first + 1));
    assert_eq!(r.status, 200);
    assert_eq!(
        r.header("access-control-allow-origin"),
        Some("https://app.example")
    );
    assert!(r.text().contains("\"events\":[]"), "{}", r.text());
    assert!(
        t0.elapsed() >= Duration::from_secs(2),
        "clamped to 2 s, not shorter"
    );
    assert_eq!(get(addr, "/poll?timeout=soon").status, 400);

    assert!(handle.stop());
    th.join().unwrap();
}

#[test]
fn run_app_reaches_the_application_and_a_timer_armed_before_run_fires() {
    let (addr, handle, th) = spawn();
    assert!(wait_state(addr, "fired=[7]").contains("fired=[7]"));

    let worker = {
        let handle = handle.clone();
        thread::spawn(move || {
            for i in 0..3 {
                assert!(handle.run_app(move |app: &mut Conv, cx| {
                    app.notes.push(format!("n{i}"));
                    cx.publish("t", None, &format!("from the worker {i}"))
                        .unwrap();
                }));
            }
        })
    };
    worker.join().unwrap();
    let state = wait_state(addr, "n2");
    assert!(state.contains(r#"notes=["n0", "n1", "n2"]"#), "{state}");

    // The wrong type: not run (and logged), the server carries on.
    struct Other;
    impl App for Other {
        fn on_request(&mut self, _: &mut Ctx<'_>, _: ConnId, _: &Request) -> Reply {
            Response::text(500, "").into()
        }
    }
    assert!(handle.run_app(|_: &mut Other, cx| {
        cx.publish("t", None, "never").unwrap();
    }));
    let (tx, rx) = mpsc::channel();
    assert!(handle.run(move |cx| tx.send(cx.events("t", 0, 100).events.len()).unwrap()));
    assert_eq!(rx.recv_timeout(Duration::from_secs(5)).unwrap(), 3);

    assert!(handle.stop());
    th.join().unwrap();
}

#[test]
fn stop_now_from_a_handle_drops_connections_without_answering() {
    let (addr, handle, th) = spawn();
    let id = publish(&handle, "before");
    // A parked poll: a graceful stop would answer it with the empty page; stop_now drops it.
    let mut s = connect(addr);
    let req = format!("GET /poll?since={id}&timeout=60 HTTP/1.1\r\nHost: t\r\n\r\n");
    std::io::Write::write_all(&mut s, req.as_bytes()).unwrap();
    thread::sleep(Duration::from_millis(300)); // parked
    assert!(handle.stop_now());
    let (tx, rx) = mpsc::channel();
    thread::spawn(move || tx.send(th.join().is_ok()).unwrap());
    assert_eq!(
        rx.recv_timeout(Duration::from_secs(10)),
        Ok(true),
        "run returned"
    );
    s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    let mut got = Vec::new();
    let _ = s.read_to_end(&mut got);
    assert!(got.is_empty(), "{:?}", String::from_utf8_lossy(&got));
}

/// A WebSocket on two topics hears `{"removed":"T"}` when one is removed and stays open
/// for the other; removing its last topic closes it with 1000 "topic removed".
#[test]
fn removing_one_of_a_websockets_topics_tells_it_and_keeps_it_open() {
    let (addr, handle, th) = spawn();
    let mut ws = WsClient::open(addr, "/ws", "");
    let (tx, rx) = mpsc::channel();
    let on_u = move |app: &mut Conv, cx: &mut Ctx<'_>| {
        let conn = *app.opened.last().expect("the WebSocket opened");
        tx.send(cx.subscribe(conn, "u", None)).unwrap();
    };
    // on_ws_open may run just after the handshake's answer: try until it has.
    let deadline = Instant::now() + Duration::from_secs(5);
    let mut subscribed = false;
    while !subscribed && Instant::now() < deadline {
        let on_u = on_u.clone();
        assert!(handle.run_app(move |app: &mut Conv, cx| {
            if !app.opened.is_empty() {
                on_u(app, cx);
            }
        }));
        subscribed = rx.recv_timeout(Duration::from_millis(200)).unwrap_or(false);
    }
    assert!(subscribed, "subscribed to u");
    let (done, removed) = mpsc::channel();
    assert!(handle.run(move |cx| {
        let first = cx.publish("u", None, "on u").unwrap();
        done.send((first, cx.remove_topic("u"))).unwrap();
    }));
    let (first, r) = removed.recv_timeout(Duration::from_secs(5)).unwrap();
    assert_eq!(r, Ok(true));
    assert_eq!(
        ws.recv_text(),
        format!(r#"{{"id":{first},"event":null,"data":"on u"}}"#)
    );
    assert_eq!(ws.recv_text(), r#"{"removed":"u"}"#);
    // Still on t.
    let id = publish(&handle, "still here");
    assert_eq!(
        ws.recv_text(),
        format!(r#"{{"id":{id},"event":null,"data":"still here"}}"#)
    );
    assert!(handle.run(|cx| assert_eq!(cx.remove_topic("t"), Ok(true))));
    let f = ws.recv().expect("a close frame");
    assert_eq!(f.opcode, 8);
    assert_eq!(&f.payload[..2], &1000u16.to_be_bytes());
    assert_eq!(&f.payload[2..], b"topic removed");
    assert!(handle.stop());
    th.join().unwrap();
}
