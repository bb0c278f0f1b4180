//! The WebSocket client (`Ctx::connect_ws`, `Handle::connect_ws`) against real sockets on
//! 127.0.0.1: a pushwire client (one `Server` in a thread) dials a pushwire server (another
//! `Server` in a thread that accepts and echoes), with and without permessage-deflate;
//! closes from either side; the client's message limit; every way a dial fails; and the
//! hub's `--upstream` feed reconnecting to a restarted upstream. Two of them began as reproductions of bugs in the dialing code (closing a dial that
//! is resolving; resolving dials and `max_connections`), now fixed.

mod util;

use std::collections::HashMap;
use std::io::{self, Read, Write};
use std::net::{Shutdown, SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::mpsc::{self, Receiver, Sender};
use std::sync::{Arc, Mutex};
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant};

use pushwire::{
    App, CloseInfo, Config, ConnId, ConnKind, ConnectError, Ctx, Handle, Message, Reply, Request,
    Response, Server, WsAccept, WsConnect,
};

/// The bound on every single wait.
const WAIT: Duration = Duration::from_secs(10);

// ---------------------------------------------------------------------------------------
// Servers in threads

/// A pushwire server running on its own thread; stopped and joined on drop.
struct Running {
    addr: SocketAddr,
    handle: Handle,
    thread: Option<JoinHandle<()>>,
}

impl Running {
    /// Stops the server and waits for its thread.
    fn stop(mut self) {
        self.shutdown();
    }

    fn shutdown(&mut self) {
        if let Some(t) = self.thread.take() {
            self.handle.stop();
            let _ = t.join();
        }
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        self.shutdown();
    }
}

/// Binds `addr` and runs `app` on a new thread.
fn run_server<A: App + Send + 'static>(addr: &str, config: Config, app: A) -> io::Result<Running> {
    let (tx, rx) = mpsc::channel();
    let addr = addr.to_owned();
    let thread = thread::spawn(move || match Server::bind(addr.as_str(), config, app) {
        Ok(mut server) => {
            let _ = tx.send(Ok((server.local_addr(), server.handle())));
            server.run().expect("server run");
        }
        Err(e) => {
            let _ = tx.send(Err(e));
        }
    });
    match rx.recv_timeout(WAIT).expect("server thread started") {
        Ok((addr, handle)) => Ok(Running {
            addr,
            handle,
            thread: Some(thread),
        }),
        Err(e) => {
            let _ = thread.join();
            Err(e)
        }
    }
}

/// Polls `cond` every 5 ms until it holds; panics after [`WAIT`].
fn wait_until(what: &str, mut cond: impl FnMut() -> bool) {
    let deadline = Instant::now() + WAIT;
    while !cond() {
        assert!(Instant::now() < deadline, "waited {WAIT:?} for {what}");
        thread::sleep(Duration::from_millis(5));
    }
}

// ---------------------------------------------------------------------------------------
// The echo server: the side that accepts

/// What the accepting server saw.
#[derive(Default, Debug)]
struct Seen {
    /// Each upgrade request: its path, `Host` and `Sec-WebSocket-Extensions` fields.
    requests: Vec<(String, Option<String>, Option<String>)>,
    opened: usize,
    /// The close code of each WebSocket that closed.
    closes: Vec<Option<u16>>,
}

/// Accepts every WebSocket and echoes each message. Paths with a plan:
/// `/close4000` closes with 4000 at once; `/send/N,M,...` sends text messages of those
/// sizes at once (then echoes).
struct Echo {
    seen: Arc<Mutex<Seen>>,
    paths: HashMap<ConnId, String>,
}

impl App for Echo {
    fn on_request(&mut self, _cx: &mut Ctx<'_>, conn: ConnId, req: &Request) -> Reply {
        self.seen.lock().unwrap().requests.push((
            req.path().to_owned(),
            req.header_str("host").map(str::to_owned),
            req.header_str("sec-websocket-extensions")
                .map(str::to_owned),
        ));
        self.paths.insert(conn, req.path().to_owned());
        Reply::WebSocket(WsAccept::new())
    }

    fn on_ws_open(&mut self, cx: &mut Ctx<'_>, conn: ConnId) {
        self.seen.lock().unwrap().opened += 1;
        let path = self.paths.get(&conn).cloned().unwrap_or_default();
        if path == "/close4000" {
            assert!(cx.close_ws(conn, 4000, "bye from the server"));
        } else if let Some(sizes) = path.strip_prefix("/send/") {
            for n in sizes.split(',').map(|n| n.parse::<usize>().unwrap()) {
                assert!(cx.send_text(conn, &"a".repeat(n)));
            }
        }
    }

    fn on_ws_message(&mut self, cx: &mut Ctx<'_>, conn: ConnId, msg: Message<'_>) {
        let sent = match msg {
            Message::Text(t) => cx.send_text(conn, t),
            Message::Binary(b) => cx.send_binary(conn, b),
        };
        assert!(sent, "the echo was refused");
    }

    fn on_close(&mut self, _cx: &mut Ctx<'_>, conn: ConnId, info: &CloseInfo) {
        self.paths.remove(&conn);
        if info.kind == ConnKind::WebSocket {
            self.seen.lock().unwrap().closes.push(info.ws_code);
        }
    }
}

fn echo_server(config: Config) -> (Running, Arc<Mutex<Seen>>) {
    let seen = Arc::new(Mutex::new(Seen::default()));
    let app = Echo {
        seen: seen.clone(),
        paths: HashMap::new(),
    };
    (run_server("127.0.0.1:0", config, app).unwrap(), seen)
}

// ---------------------------------------------------------------------------------------
// The client: a pushwire server that dials

#[derive(Debug, Clone, PartialEq, Eq)]
enum Msg {
    Text(String),
    Binary(Vec<u8>),
}

#[derive(Debug)]
enum Ev {
    Open(ConnId),
    Msg(ConnId, Msg),
    Closed(ConnId, CloseInfo),
    Failed(ConnId, String, String),
}

impl Ev {
    fn conn(&self) -> ConnId {
        match self {
            Ev::Open(c) | Ev::Msg(c, _) | Ev::Closed(c, _) | Ev::Failed(c, ..) => *c,
        }
    }
}

/// Forwards every callback about a dialed WebSocket to the test thread.
struct Dialer {
    tx: Sender<(Instant, Ev)>,
}

impl Dialer {
    fn tell(&self, ev: Ev) {
        let _ = self.tx.send((Instant::now(), ev));
    }
}

impl App for Dialer {
    fn on_request(&mut self, _cx: &mut Ctx<'_>, _conn: ConnId, _req: &Request) -> Reply {
        Response::text(404, "a client only").into()
    }
    fn on_ws_open(&mut self, _cx: &mut Ctx<'_>, conn: ConnId) {
        self.tell(Ev::Open(conn));
    }
    fn on_ws_message(&mut self, _cx: &mut Ctx<'_>, conn: ConnId, msg: Message<'_>) {
        let m = match msg {
            Message::Text(t) => Msg::Text(t.to_owned()),
            Message::Binary(b) => Msg::Binary(b.to_vec()),
        };
        self.tell(Ev::Msg(conn, m));
    }
    fn on_close(&mut self, _cx: &mut Ctx<'_>, conn: ConnId, info: &CloseInfo) {
        self.tell(Ev::Closed(conn, *info));
    }
    fn on_ws_connect_failed(&mut self, _cx: &mut Ctx<'_>, conn: ConnId, url: &str, why: &str) {
        self.tell(Ev::Failed(conn, url.to_owned(), why.to_owned()));
    }
}

/// The dialing server and the events of its dialed connections.
struct Client {
    server: Running,
    rx: Receiver<(Instant, Ev)>,
    /// Events received while waiting for another connection's.
    stash: Vec<(Instant, Ev)>,
}

impl Client {
    fn start() -> Client {
        let (tx, rx) = mpsc::channel();
        let server = run_server("127.0.0.1:0", Config::new(), Dialer { tx }).unwrap();
        Client {
            server,
            rx,
            stash: Vec::new(),
        }
    }

    fn handle(&self) -> &Handle {
        &self.server.handle
    }

    /// Runs `f` on the client's loop and returns its result.
    fn on_loop<R: Send + 'static>(&self, f: impl FnOnce(&mut Ctx<'_>) -> R + Send + 'static) -> R {
        let (tx, rx) = mpsc::channel();
        assert!(self.handle().run(move |cx| {
            let _ = tx.send(f(cx));
        }));
        rx.recv_timeout(WAIT).expect("the loop ran the job")
    }

    /// `Ctx::connect_ws` on the client's loop.
    fn dial(&self, url: &str, opts: WsConnect) -> Result<ConnId, ConnectError> {
        let url = url.to_owned();
        self.on_loop(move |cx| cx.connect_ws(&url, &opts))
    }

    /// The next event of `conn`, with the time it happened.
    fn next_at(&mut self, conn: ConnId) -> (Instant, Ev) {
        if let Some(i) = self.stash.iter().position(|(_, e)| e.conn() == conn) {
            return self.stash.remove(i);
        }
        let deadline = Instant::now() + WAIT;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.rx.recv_timeout(left) {
                Ok((at, ev)) if ev.conn() == conn => return (at, ev),
                Ok(other) => self.stash.push(other),
                Err(_) => panic!("no event for {conn} within {WAIT:?}"),
            }
        }
    }

    fn next(&mut self, conn: ConnId) -> Ev {
        self.next_at(conn).1
    }

    fn expect_open(&mut self, conn: ConnId) {
        match self.next(conn) {
            Ev::Open(_) => {}
            ev => panic!("expected {conn} to open, got {ev:?}"),
        }
    }

    fn expect_msg(&mut self, conn: ConnId) -> Msg {
        match self.next(conn) {
            Ev::Msg(_, m) => m,
            ev => panic!("expected a message on {conn}, got {ev:?}"),
        }
    }

    fn expect_closed(&mut self, conn: ConnId) -> CloseInfo {
        match self.next(conn) {
            Ev::Closed(_, info) => info,
            ev => panic!("expected {conn} to close, got {ev:?}"),
        }
    }

    /// The dial's failure: (url, reason).
    fn expect_failed(&mut self, conn: ConnId) -> (Instant, String, String) {
        match self.next_at(conn) {
            (at, Ev::Failed(_, url, why)) => {
                eprintln!("dial to {url} failed: {why}");
                (at, url, why)
            }
            (_, ev) => panic!("expected {conn}'s dial to fail, got {ev:?}"),
        }
    }

    /// Nothing more arrives for `conn` within `quiet`.
    fn expect_silence(&mut self, conn: ConnId, quiet: Duration) {
        let deadline = Instant::now() + quiet;
        while let Ok((at, ev)) = self
            .rx
            .recv_timeout(deadline.saturating_duration_since(Instant::now()))
        {
            assert_ne!(ev.conn(), conn, "unexpected event for {conn}: {ev:?}");
            self.stash.push((at, ev));
        }
        assert!(
            !self.stash.iter().any(|(_, e)| e.conn() == conn),
            "unexpected event for {conn}"
        );
    }

    fn send_text(&self, conn: ConnId, text: String) {
        assert!(
            self.on_loop(move |cx| cx.send_text(conn, &text)),
            "send_text refused"
        );
    }

    fn send_binary(&self, conn: ConnId, data: Vec<u8>) {
        assert!(
            self.on_loop(move |cx| cx.send_binary(conn, &data)),
            "send_binary refused"
        );
    }
}

// ---------------------------------------------------------------------------------------
// A byte-counting relay between the client and the server

/// A TCP relay for one connection: counts the bytes each way and keeps the first bytes of
/// each direction (the handshake's request and answer heads).
struct Tap {
    addr: SocketAddr,
    up: Arc<AtomicUsize>,
    down: Arc<AtomicUsize>,
    up_head: Arc<Mutex<Vec<u8>>>,
    down_head: Arc<Mutex<Vec<u8>>>,
}

fn pump(
    mut from: TcpStream,
    mut to: TcpStream,
    count: Arc<AtomicUsize>,
    head: Arc<Mutex<Vec<u8>>>,
) {
    let mut buf = vec![0u8; 64 * 1024];
    loop {
        match from.read(&mut buf) {
            Ok(0) | Err(_) => break,
            Ok(n) => {
                {
                    let mut h = head.lock().unwrap();
                    let keep = n.min(4096usize.saturating_sub(h.len()));
                    h.extend_from_slice(&buf[..keep]);
                }
                // Counted before it is passed on: once the far side got it, it was counted.
                count.fetch_add(n, Ordering::SeqCst);
                if to.write_all(&buf[..n]).is_err() {
                    break;
                }
            }
        }
    }
    let _ = to.shutdown(Shutdown::Write);
}

fn tap(target: SocketAddr) -> Tap {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let t = Tap {
        addr: listener.local_addr().unwrap(),
        up: Arc::default(),
        down: Arc::default(),
        up_head: Arc::default(),
        down_head: Arc::default(),
    };
    let (up, down) = (t.up.clone(), t.down.clone());
    let (up_head, down_head) = (t.up_head.clone(), t.down_head.clone());
    thread::spawn(move || {
        let Ok((client, _)) = listener.accept() else {
            return;
        };
        let server = TcpStream::connect(target).unwrap();
        let (c2, s2) = (client.try_clone().unwrap(), server.try_clone().unwrap());
        thread::spawn(move || pump(c2, s2, up, up_head));
        pump(server, client, down, down_head);
    });
    t
}

fn head_text(head: &Mutex<Vec<u8>>) -> String {
    let h = head.lock().unwrap();
    let end = h
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .unwrap_or(h.len());
    String::from_utf8_lossy(&h[..end]).to_ascii_lowercase()
}

// ---------------------------------------------------------------------------------------
// Payloads

/// xorshift64*: incompressible bytes, the same every run.
fn noise(n: usize, mut seed: u64) -> Vec<u8> {
    let mut out = Vec::with_capacity(n + 8);
    while out.len() < n {
        seed ^= seed >> 12;
        seed ^= seed << 25;
        seed ^= seed >> 27;
        out.extend_from_slice(&seed.wrapping_mul(0x2545_f491_4f6c_dd1d).to_le_bytes());
    }
    out.truncate(n);
    out
}

/// 1 MiB of JSON-like text: very compressible.
fn compressible_text() -> String {
    let mut s = String::with_capacity(1 << 20);
    let mut i = 0u64;
    while s.len() < (1 << 20) - 64 {
        s.push_str(&format!(
            "{{\"seq\":{i},\"symbol\":\"ACME\",\"price\":{}.25}},",
            100 + i % 7
        ));
        i += 1;
    }
    while s.len() < 1 << 20 {
        s.push(' ');
    }
    s
}

/// 1 MiB of random printable ASCII (64 symbols: deflate saves about a quarter at best).
fn noisy_text() -> String {
    const ALPHABET: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    noise(1 << 20, 7)
        .iter()
        .map(|b| ALPHABET[(b & 63) as usize] as char)
        .collect()
}

// ---------------------------------------------------------------------------------------
// Round trips

/// A client dials an echo server with `server_config` through a [`Tap`], offering
/// permessage-deflate or not; sends text, binary, empty and 1 MiB messages one at a time
/// (the next once the echo is back: two 1 MiB messages at once would pass `high_water`);
/// checks each echo, the handshake and the bytes on the wire; closes with 1000.
fn round_trip(server_config: Config, offered: bool, negotiated: bool) {
    let opts = WsConnect::new().deflate(offered);
    let (server, seen) = echo_server(server_config);
    let tap = tap(server.addr);
    let mut client = Client::start();
    // From the test thread: Handle::connect_ws waits for the id.
    let url = format!("ws://{}/echo?x=1", tap.addr);
    let conn = client.handle().connect_ws(&url, &opts).unwrap();
    client.expect_open(conn);

    // The handshake as it went over the wire.
    let request = head_text(&tap.up_head);
    let answer = head_text(&tap.down_head);
    assert!(
        request.starts_with("get /echo?x=1 http/1.1\r\n"),
        "{request}"
    );
    assert!(
        request.contains("\r\nsec-websocket-version: 13"),
        "{request}"
    );
    assert_eq!(
        request.contains("sec-websocket-extensions: permessage-deflate; client_max_window_bits"),
        offered,
        "the offer: {request}"
    );
    assert!(answer.starts_with("http/1.1 101 "), "{answer}");
    assert_eq!(
        answer.contains("sec-websocket-extensions: permessage-deflate"),
        negotiated,
        "the answer: {answer}"
    );
    {
        let s = seen.lock().unwrap();
        assert_eq!(s.requests.len(), 1);
        assert_eq!(s.requests[0].0, "/echo");
        assert_eq!(
            s.requests[0].1.as_deref(),
            Some(tap.addr.to_string().as_str())
        );
        assert_eq!(s.requests[0].2.is_some(), offered);
    }

    // Dialed connections do not subscribe.
    assert!(!client.on_loop(move |cx| cx.subscribe(conn, "topic", None)));
    assert_eq!(
        client.on_loop(move |cx| cx.kind(conn)),
        Some(ConnKind::WebSocket)
    );

    let big_text = compressible_text();
    let cases: Vec<(&str, Msg, bool)> = vec![
        ("short text", Msg::Text("hello, ünïcödé ✓".into()), false),
        ("0-byte text", Msg::Text(String::new()), false),
        ("binary", Msg::Binary(vec![0, 1, 2, 255, 254]), false),
        ("0-byte binary", Msg::Binary(Vec::new()), false),
        ("125-byte text", Msg::Text("x".repeat(125)), false),
        ("126-byte text", Msg::Text("y".repeat(126)), false),
        ("65536-byte binary", Msg::Binary(noise(65536, 3)), false),
        ("1 MiB compressible text", Msg::Text(big_text), true),
        (
            "1 MiB compressible binary",
            Msg::Binary(vec![0x42; 1 << 20]),
            true,
        ),
        ("1 MiB noisy text", Msg::Text(noisy_text()), false),
        (
            "1 MiB random binary",
            Msg::Binary(noise(1 << 20, 11)),
            false,
        ),
    ];
    for (what, msg, compressible) in cases {
        let (up0, down0) = (
            tap.up.load(Ordering::SeqCst),
            tap.down.load(Ordering::SeqCst),
        );
        let len = match &msg {
            Msg::Text(t) => {
                client.send_text(conn, t.clone());
                t.len()
            }
            Msg::Binary(b) => {
                client.send_binary(conn, b.clone());
                b.len()
            }
        };
        let got = client.expect_msg(conn);
        assert!(got == msg, "{what}: the echo differs");
        let up = tap.up.load(Ordering::SeqCst) - up0;
        let down = tap.down.load(Ordering::SeqCst) - down0;
        if len >= 1 << 20 {
            if compressible && negotiated {
                // Messages to one connection are compressed at level 1 (about 12% here).
                assert!(up < len / 5, "{what}: {up} bytes sent for {len}");
                assert!(down < len / 5, "{what}: {down} bytes received for {len}");
            } else if !negotiated {
                // Plain frames: the payload plus a header (and the client's mask).
                assert_eq!(up, len + 14, "{what}: bytes sent");
                assert_eq!(down, len + 10, "{what}: bytes received");
            } else {
                // Compressed or not, never much more than the payload.
                assert!(
                    up <= len + len / 100 + 64,
                    "{what}: {up} bytes sent for {len}"
                );
                assert!(
                    down <= len + len / 100 + 64,
                    "{what}: {down} bytes received"
                );
                assert!(
                    up > len / 2 && down > len / 2,
                    "{what}: noise does not compress"
                );
            }
        }
    }

    // A ping goes out (its pong is not reported to the application; over 125 bytes it is
    // refused), and the connection goes on.
    assert!(client.on_loop(move |cx| cx.ping(conn, b"ping?")));
    assert!(!client.on_loop(move |cx| cx.ping(conn, &[0u8; 126])));
    client.send_text(conn, "after the ping".into());
    assert_eq!(client.expect_msg(conn), Msg::Text("after the ping".into()));

    // The client closes: 1000 on both sides.
    assert!(client.on_loop(move |cx| cx.close_ws(conn, 1000, "done")));
    let info = client.expect_closed(conn);
    assert_eq!(info.ws_code, Some(1000), "{info:?}");
    assert_eq!(info.kind, ConnKind::WebSocket);
    wait_until("the server's on_close", || {
        !seen.lock().unwrap().closes.is_empty()
    });
    assert_eq!(seen.lock().unwrap().closes, vec![Some(1000)]);
    assert_eq!(seen.lock().unwrap().opened, 1);
    // The id refers to nothing now.
    assert!(!client.on_loop(move |cx| cx.send_text(conn, "late")));
    assert_eq!(client.on_loop(move |cx| cx.kind(conn)), None);
    client.expect_silence(conn, Duration::from_millis(50));
}

#[test]
fn round_trip_with_deflate_negotiated() {
    round_trip(Config::new(), true, true);
}

#[test]
fn round_trip_with_a_server_that_refuses_deflate() {
    round_trip(Config::new().ws_deflate(false), true, false);
}

#[test]
fn round_trip_without_offering_deflate() {
    round_trip(Config::new(), false, false);
}

#[test]
fn round_trip_with_context_takeover() {
    round_trip(Config::new().ws_deflate_takeover(true), true, true);
}

/// Many messages in a row without waiting, both ways compressed: every echo, in order.
#[test]
fn a_burst_of_messages_is_echoed_in_order() {
    for deflate in [true, false] {
        let (server, _seen) = echo_server(Config::new().ws_deflate(deflate));
        let mut client = Client::start();
        let conn = client
            .dial(&format!("ws://{}/", server.addr), WsConnect::new())
            .unwrap();
        client.expect_open(conn);
        let n = 500;
        assert!(client.on_loop(move |cx| (0..n)
            .all(|i| cx.send_text(conn, &format!("message {i} {}", "z".repeat(i % 300))))));
        for i in 0..n {
            assert_eq!(
                client.expect_msg(conn),
                Msg::Text(format!("message {i} {}", "z".repeat(i % 300))),
                "deflate {deflate}"
            );
        }
        assert!(client.on_loop(move |cx| {
            cx.close(conn);
            true
        }));
        assert_eq!(client.expect_closed(conn).ws_code, Some(1000));
    }
}

/// Several dialed connections on one loop, to several servers, each with its own echo.
#[test]
fn several_connections_on_one_loop() {
    let (a, _) = echo_server(Config::new());
    let (b, _) = echo_server(Config::new().ws_deflate(false));
    let mut client = Client::start();
    let mut conns = Vec::new();
    for (i, addr) in [a.addr, b.addr, a.addr, b.addr].into_iter().enumerate() {
        let opts = WsConnect::new().deflate(i % 3 == 0);
        conns.push(client.dial(&format!("ws://{addr}/{i}"), opts).unwrap());
    }
    for &c in &conns {
        client.expect_open(c);
    }
    for (i, &c) in conns.iter().enumerate() {
        client.send_text(c, format!("to connection {i}"));
    }
    for (i, &c) in conns.iter().enumerate().rev() {
        assert_eq!(
            client.expect_msg(c),
            Msg::Text(format!("to connection {i}"))
        );
    }
}

// ---------------------------------------------------------------------------------------
// Closes and limits

#[test]
fn a_server_close_reaches_the_client_with_its_code() {
    for deflate in [true, false] {
        let (server, seen) = echo_server(Config::new().ws_deflate(deflate));
        let mut client = Client::start();
        let conn = client
            .handle()
            .connect_ws(
                &format!("ws://{}/close4000", server.addr),
                &WsConnect::new(),
            )
            .unwrap();
        client.expect_open(conn);
        let info = client.expect_closed(conn);
        assert_eq!(info.ws_code, Some(4000), "{info:?}");
        wait_until("the server's on_close", || {
            !seen.lock().unwrap().closes.is_empty()
        });
        assert_eq!(seen.lock().unwrap().closes, vec![Some(4000)]);
        client.expect_silence(conn, Duration::from_millis(50));
    }
}

#[test]
fn a_message_over_the_clients_max_message_closes_1009() {
    for deflate in [true, false] {
        let (server, seen) = echo_server(Config::new().ws_deflate(deflate));
        let mut client = Client::start();
        // The server sends 1000 bytes (at the limit), then 1001 (over it).
        let url = format!("ws://{}/send/1000,1001", server.addr);
        let conn = client
            .dial(&url, WsConnect::new().max_message(1000))
            .unwrap();
        client.expect_open(conn);
        assert_eq!(client.expect_msg(conn), Msg::Text("a".repeat(1000)));
        let info = client.expect_closed(conn);
        assert_eq!(info.ws_code, Some(1009), "deflate {deflate}: {info:?}");
        wait_until("the server's on_close", || {
            !seen.lock().unwrap().closes.is_empty()
        });
        assert_eq!(seen.lock().unwrap().closes, vec![Some(1009)]);
    }
}

/// A compressed message's limit is its inflated size: 64 KiB of one letter is a few
/// hundred bytes on the wire, still 1009.
#[test]
fn a_compressed_message_over_max_message_closes_1009() {
    let (server, seen) = echo_server(Config::new());
    let mut client = Client::start();
    let url = format!("ws://{}/send/65536", server.addr);
    let conn = client
        .dial(&url, WsConnect::new().max_message(65535))
        .unwrap();
    client.expect_open(conn);
    assert_eq!(client.expect_closed(conn).ws_code, Some(1009));
    wait_until("the server's on_close", || {
        !seen.lock().unwrap().closes.is_empty()
    });
    assert_eq!(seen.lock().unwrap().closes, vec![Some(1009)]);
}

// ---------------------------------------------------------------------------------------
// Failures

/// A listener that answers each connection with `answer` once it read a request head
/// (`None`: accepts and never answers, holding the socket until the test ends).
fn raw_server(answer: Option<fn(&str) -> String>) -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    thread::spawn(move || {
        let mut held = Vec::new();
        for s in listener.incoming() {
            let Ok(mut s) = s else { return };
            let Some(answer) = answer else {
                held.push(s);
                continue;
            };
            thread::spawn(move || {
                s.set_read_timeout(Some(WAIT)).unwrap();
                let mut head = Vec::new();
                let mut b = [0u8; 1024];
                while !head.windows(4).any(|w| w == b"\r\n\r\n") {
                    match s.read(&mut b) {
                        Ok(0) | Err(_) => return,
                        Ok(n) => head.extend_from_slice(&b[..n]),
                    }
                }
                let _ = s.write_all(answer(&String::from_utf8_lossy(&head)).as_bytes());
                thread::sleep(Duration::from_millis(500));
            });
        }
    });
    addr
}

fn free_port() -> u16 {
    let l = TcpListener::bind("127.0.0.1:0").unwrap();
    l.local_addr().unwrap().port()
}

#[test]
fn a_refused_connection_fails_the_dial() {
    let mut client = Client::start();
    let url = format!("ws://127.0.0.1:{}/feed", free_port());
    let t0 = Instant::now();
    let conn = client.dial(&url, WsConnect::new()).unwrap();
    let (at, failed_url, why) = client.expect_failed(conn);
    assert!(why.to_lowercase().contains("refused"), "reason: {why}");
    assert_eq!(failed_url, url);
    assert!(at - t0 < Duration::from_secs(2), "took {:?}", at - t0);
    client.expect_silence(conn, Duration::from_millis(100));
    // The loop is fine: the next dial works.
    let (server, _) = echo_server(Config::new());
    let conn = client
        .dial(&format!("ws://{}/", server.addr), WsConnect::new())
        .unwrap();
    client.expect_open(conn);
}

#[test]
fn a_403_answer_fails_the_dial() {
    let addr = raw_server(Some(|_| {
        "HTTP/1.1 403 Forbidden\r\nContent-Length: 9\r\nConnection: close\r\n\r\nforbidden".into()
    }));
    let mut client = Client::start();
    let conn = client
        .dial(&format!("ws://{addr}/private"), WsConnect::new())
        .unwrap();
    let (_, _, why) = client.expect_failed(conn);
    assert!(why.contains("403"), "reason: {why}");
    assert!(why.contains("not 101"), "reason: {why}");
    client.expect_silence(conn, Duration::from_millis(100));
}

#[test]
fn a_silent_server_fails_the_dial_at_the_connect_timeout() {
    let addr = raw_server(None);
    let mut client = Client::start();
    let t0 = Instant::now();
    let conn = client
        .dial(
            &format!("ws://{addr}/"),
            WsConnect::new().timeout(Duration::from_millis(200)),
        )
        .unwrap();
    let (at, _, why) = client.expect_failed(conn);
    let took = at - t0;
    assert!(why.contains("connect timeout"), "reason: {why}");
    assert!(
        took >= Duration::from_millis(180) && took < Duration::from_secs(2),
        "failed after {took:?}"
    );
    client.expect_silence(conn, Duration::from_millis(100));
}

#[test]
fn a_wrong_accept_value_fails_the_dial() {
    let addr = raw_server(Some(|_| {
        "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
         Sec-WebSocket-Accept: s3pPLMBiTxaQ9kYGzzhZRbK+xOo=\r\n\r\n"
            .into()
    }));
    let mut client = Client::start();
    let conn = client
        .dial(&format!("ws://{addr}/"), WsConnect::new())
        .unwrap();
    let (_, _, why) = client.expect_failed(conn);
    assert!(why.contains("Sec-WebSocket-Accept"), "reason: {why}");
    client.expect_silence(conn, Duration::from_millis(100));
}

/// The right accept value but an extension the client did not offer.
#[test]
fn an_unoffered_extension_fails_the_dial() {
    fn answer(req: &str) -> String {
        let key = req
            .lines()
            .find_map(|l| {
                let (n, v) = l.split_once(':')?;
                n.eq_ignore_ascii_case("sec-websocket-key")
                    .then(|| v.trim().to_owned())
            })
            .unwrap();
        format!(
            "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
             Sec-WebSocket-Accept: {}\r\nSec-WebSocket-Extensions: permessage-deflate\r\n\r\n",
            pushwire::proto::ws::handshake::accept_key(&key)
        )
    }
    let addr = raw_server(Some(answer));
    let mut client = Client::start();
    let conn = client
        .dial(&format!("ws://{addr}/"), WsConnect::new().deflate(false))
        .unwrap();
    let (_, _, why) = client.expect_failed(conn);
    assert!(why.contains("extension not offered"), "reason: {why}");
}

#[test]
fn a_server_that_hangs_up_fails_the_dial() {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    thread::spawn(move || {
        for s in listener.incoming().flatten() {
            drop(s);
        }
    });
    let mut client = Client::start();
    let conn = client
        .dial(&format!("ws://{addr}/"), WsConnect::new())
        .unwrap();
    let (_, _, why) = client.expect_failed(conn);
    assert!(
        why.contains("closed the connection before the handshake answer")
            || why.to_lowercase().contains("reset"),
        "reason: {why}"
    );
}

/// `wss://` to a plain server: the TLS handshake fails (or, without the `tls` feature, the
/// dial is refused at once).
#[test]
fn wss_to_a_plain_server() {
    let (server, _) = echo_server(Config::new());
    let mut client = Client::start();
    let url = format!("wss://{}/", server.addr);
    let result = client.dial(&url, WsConnect::new().timeout(Duration::from_secs(5)));
    if cfg!(feature = "tls") {
        let conn = result.unwrap();
        let (_, _, why) = client.expect_failed(conn);
        assert!(why.to_lowercase().contains("tls"), "reason: {why}");
    } else {
        assert_eq!(result, Err(ConnectError::NoTls));
    }
}

#[test]
fn bad_urls_are_refused_synchronously() {
    let client = Client::start();
    for url in [
        "http://127.0.0.1:1/",
        "ws://",
        "ws://127.0.0.1:0/",
        "ws://127.0.0.1:99999/",
        "ws://user:pw@127.0.0.1:1/",
        "ws://127.0.0.1:1/#fragment",
        "ws://[::1/",
        "ws://exa mple.com/",
        "127.0.0.1:8080",
    ] {
        match client.dial(url, WsConnect::new()) {
            Err(ConnectError::Url(e)) => assert!(!e.to_string().is_empty()),
            other => panic!("{url}: {other:?}"),
        }
        match client.handle().connect_ws(url, &WsConnect::new()) {
            Err(ConnectError::Url(_)) => {}
            other => panic!("{url} from a handle: {other:?}"),
        }
    }
    // An offer that cannot be written is refused too.
    let bad = WsConnect::new().protocol("not a token");
    assert!(matches!(
        client.dial("ws://127.0.0.1:1/", bad),
        Err(ConnectError::Offer(_))
    ));
    let bad = WsConnect::new().header("Sec-WebSocket-Key", "mine");
    assert!(matches!(
        client.dial("ws://127.0.0.1:1/", bad),
        Err(ConnectError::Offer(_))
    ));
}

#[test]
fn a_localhost_url_is_resolved_and_dialed() {
    let (server, seen) = echo_server(Config::new());
    let mut client = Client::start();
    let url = format!("ws://localhost:{}/named", server.addr.port());
    let conn = client.handle().connect_ws(&url, &WsConnect::new()).unwrap();
    client.expect_open(conn);
    client.send_text(conn, "by name".into());
    assert_eq!(client.expect_msg(conn), Msg::Text("by name".into()));
    let host = seen.lock().unwrap().requests[0].1.clone();
    assert_eq!(host, Some(format!("localhost:{}", server.addr.port())));
}

/// The application closes a dial before it opened: the dial fails, nothing is
/// sent on it meanwhile, and `on_close` never comes.
#[test]
fn closing_a_dial_before_it_opens() {
    let addr = raw_server(None);
    let mut client = Client::start();
    let conn = client
        .dial(&format!("ws://{addr}/"), WsConnect::new())
        .unwrap();
    thread::sleep(Duration::from_millis(50)); // connected, the request sent, no answer
    assert!(!client.on_loop(move |cx| cx.send_text(conn, "too early")));
    // There is no closing handshake to make yet: close_ws ends it at once.
    let t0 = Instant::now();
    assert!(client.on_loop(move |cx| cx.close_ws(conn, 1000, "")));
    let (at, _, why) = client.expect_failed(conn);
    assert!(at - t0 < Duration::from_secs(1), "took {:?}", at - t0);
    assert_eq!(why, "closed before it opened");
    // And `close` on another.
    let conn = client
        .dial(&format!("ws://{addr}/"), WsConnect::new())
        .unwrap();
    thread::sleep(Duration::from_millis(50));
    client.on_loop(move |cx| cx.close(conn));
    assert_eq!(client.expect_failed(conn).2, "closed before it opened");
    client.expect_silence(conn, Duration::from_millis(100));
}

/// A loop dials its own listener: both ends on one thread (the dialer's app answers 404).
#[test]
fn a_loop_can_dial_itself() {
    let mut client = Client::start();
    let url = format!("ws://{}/self", client.server.addr);
    let conn = client.dial(&url, WsConnect::new()).unwrap();
    let (_, _, why) = client.expect_failed(conn);
    assert_eq!(why, "server answered 404 Not Found, not 101");
}

/// Dials count against `max_connections`.
#[test]
fn dials_count_against_max_connections() {
    let addr = raw_server(None);
    let (tx, rx) = mpsc::channel();
    let config = Config::new().max_connections(2);
    let mut client = Client {
        server: run_server("127.0.0.1:0", config, Dialer { tx }).unwrap(),
        rx,
        stash: Vec::new(),
    };
    let url = format!("ws://{addr}/");
    let opts = WsConnect::new().timeout(Duration::from_millis(300));
    let a = client.dial(&url, opts.clone()).unwrap();
    let b = client.dial(&url, opts.clone()).unwrap();
    assert_eq!(
        client.dial(&url, opts.clone()),
        Err(ConnectError::TooManyConnections)
    );
    // Once they failed, their places are free again.
    client.expect_failed(a);
    client.expect_failed(b);
    assert!(client.dial(&url, opts).is_ok());
}

/// `Ctx::close` on a dial whose host name is still being resolved: it fails ("closed
/// before it opened") and never opens; the server sees no WebSocket.
#[test]
fn closing_a_dial_while_it_resolves() {
    let (server, seen) = echo_server(Config::new());
    let mut client = Client::start();
    let url = format!("ws://localhost:{}/", server.addr.port());
    let conn = client.on_loop(move |cx| {
        let conn = cx.connect_ws(&url, &WsConnect::new()).unwrap();
        cx.close(conn);
        conn
    });
    match client.next(conn) {
        Ev::Failed(..) => {}
        ev => panic!("the closed dial went on: {ev:?}"),
    }
    thread::sleep(Duration::from_millis(200));
    assert_eq!(seen.lock().unwrap().opened, 0);
}

/// Dials to host names count against `max_connections` while they resolve, so one
/// callback cannot open more than the limit.
#[test]
fn resolving_dials_count_against_max_connections() {
    let addr = raw_server(None);
    let (tx, rx) = mpsc::channel();
    let config = Config::new().max_connections(2);
    let client = Client {
        server: run_server("127.0.0.1:0", config, Dialer { tx }).unwrap(),
        rx,
        stash: Vec::new(),
    };
    let url = format!("ws://localhost:{}/", addr.port());
    let started = client.on_loop(move |cx| {
        (0..5)
            .filter(|_| cx.connect_ws(&url, &WsConnect::new()).is_ok())
            .count()
    });
    thread::sleep(Duration::from_millis(300));
    let open = client.on_loop(|cx| cx.stats().websocket);
    assert!(
        started <= 2 && open <= 2,
        "{started} dials started, {open} connections with max_connections 2"
    );
}

// ---------------------------------------------------------------------------------------
// The hub's --upstream

/// When each upstream connection opened, and the extensions it offered.
type Opens = Arc<Mutex<Vec<(Instant, Option<String>)>>>;

/// An upstream feed: on each WebSocket open it sends `{label}-1`, a binary message,
/// `{label}-2`, `{label}-3`; records when each connection opened and what it offered.
struct Feed {
    label: &'static str,
    opens: Opens,
    offers: HashMap<ConnId, Option<String>>,
}

impl App for Feed {
    fn on_request(&mut self, _cx: &mut Ctx<'_>, conn: ConnId, req: &Request) -> Reply {
        let offer = req
            .header_str("sec-websocket-extensions")
            .map(str::to_owned);
        self.offers.insert(conn, offer);
        Reply::WebSocket(WsAccept::new())
    }
    fn on_ws_open(&mut self, cx: &mut Ctx<'_>, conn: ConnId) {
        let offer = self.offers.remove(&conn).flatten();
        self.opens.lock().unwrap().push((Instant::now(), offer));
        let l = self.label;
        assert!(cx.send_text(conn, &format!("{l}-1")));
        assert!(cx.send_binary(conn, b"binary: not published"));
        assert!(cx.send_text(conn, &format!("{l}-2")));
        assert!(cx.send_text(conn, &format!("{l}-3 \"quoted\" ✓")));
    }
}

fn start_feed(addr: &str, label: &'static str, opens: &Opens) -> io::Result<Running> {
    let app = Feed {
        label,
        opens: opens.clone(),
        offers: HashMap::new(),
    };
    run_server(addr, Config::new(), app)
}

/// The `data` strings of a hub events page, in order (enough JSON for these tests).
fn event_datas(json: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut rest = json;
    while let Some(at) = rest.find("\"data\":\"") {
        rest = &rest[at + 8..];
        let mut s = String::new();
        let mut chars = rest.char_indices();
        let end = loop {
            match chars.next() {
                Some((i, '"')) => break i,
                Some((_, '\\')) => match chars.next() {
                    Some((_, 'n')) => s.push('\n'),
                    Some((_, 't')) => s.push('\t'),
                    Some((_, c)) => s.push(c),
                    None => break rest.len(),
                },
                Some((_, c)) => s.push(c),
                None => break rest.len(),
            }
        };
        out.push(s);
        rest = &rest[end..];
    }
    out
}

fn hub_events(hub: SocketAddr) -> Vec<String> {
    let r = util::get(hub, "/topics/feed/events?since=0");
    assert_eq!(r.status, 200, "{}", r.text());
    event_datas(&r.text())
}

#[test]
fn the_hub_publishes_an_upstream_feed_and_reconnects() {
    let opens = Arc::new(Mutex::new(Vec::new()));
    let first = start_feed("127.0.0.1:0", "first", &opens).unwrap();
    let port = first.addr.port();
    let upstream = format!("feed=ws://127.0.0.1:{port}/x");
    let hub = util::start_hub(&["--upstream", &upstream]);
    let want1: Vec<String> = vec![
        "first-1".into(),
        "first-2".into(),
        "first-3 \"quoted\" ✓".into(),
    ];
    wait_until("the first feed's 3 events at the hub", || {
        hub_events(hub.addr).len() >= 3
    });
    assert_eq!(hub_events(hub.addr), want1);
    {
        let o = opens.lock().unwrap();
        assert_eq!(o.len(), 1);
        let offer = o[0].1.as_deref().unwrap_or_default();
        assert!(offer.starts_with("permessage-deflate"), "offer {offer:?}");
    }

    // The upstream goes away; another comes up on the same port.
    let t_stop = Instant::now();
    first.stop();
    let stopped = t_stop.elapsed();
    // Down for a while: the hub's first redials are refused and its backoff grows
    // (50-100 ms, then 100-200 ms, 200-400 ms, ...).
    thread::sleep(Duration::from_millis(300));
    let mut second = None;
    for _ in 0..50 {
        match start_feed(&format!("127.0.0.1:{port}"), "second", &opens) {
            Ok(s) => {
                second = Some(s);
                break;
            }
            Err(_) => thread::sleep(Duration::from_millis(50)),
        }
    }
    let _second = second.expect("the upstream's port could be bound again");
    let t_up = Instant::now();
    wait_until("the hub's second connection", || {
        opens.lock().unwrap().len() >= 2
    });
    let reconnect = opens.lock().unwrap()[1].0 - t_up;
    let outage = opens.lock().unwrap()[1].0 - t_stop;
    eprintln!(
        "upstream stop took {stopped:?}; the hub reconnected {reconnect:?} after the new \
         upstream listened ({outage:?} after the stop began, 300 ms of it down)"
    );
    assert!(
        reconnect < Duration::from_secs(2),
        "reconnect took {reconnect:?}"
    );
    wait_until("the second feed's 3 events at the hub", || {
        hub_events(hub.addr).len() >= 6
    });
    let mut want = want1;
    want.extend([
        "second-1".into(),
        "second-2".into(),
        "second-3 \"quoted\" ✓".into(),
    ]);
    assert_eq!(hub_events(hub.addr), want);
    // Exactly two connections: nothing dialed twice.
    thread::sleep(Duration::from_millis(200));
    assert_eq!(opens.lock().unwrap().len(), 2);
    drop(hub);
}
