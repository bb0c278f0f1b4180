//! Issue 16 point 5: the WebSocket keepalive over real sockets. A peer that sent nothing
//! for the ping interval gets a Ping; one that answers stays open, one that does not is
//! closed with 1001 "ping timeout" and `on_close` says `CloseReason::PingTimeout`. A
//! WebSocket the server dialed (`Ctx::connect_ws`) pings a silent server the same way,
//! masked.

mod util;

use std::io::Write;
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::sync::{mpsc, Arc, Mutex};
use std::thread;
use std::time::{Duration, Instant};

use pushwire::{
    App, CloseInfo, CloseReason, Config, ConnId, Ctx, Handle, Reply, Request, Server, WsAccept,
    WsConnect,
};
use util::*;

type Closed = Arc<Mutex<Vec<(Option<u16>, CloseReason)>>>;

struct Accept {
    closed: Closed,
}

impl App for Accept {
    fn on_request(&mut self, _cx: &mut Ctx<'_>, _conn: ConnId, _req: &Request) -> Reply {
        Reply::WebSocket(WsAccept::new())
    }
    fn on_close(&mut self, _cx: &mut Ctx<'_>, _conn: ConnId, info: &CloseInfo) {
        self.closed
            .lock()
            .unwrap()
            .push((info.ws_code, info.reason));
    }
}

/// A server pinging after 200 ms without input, 300 ms to answer, 300 ms for the Close.
fn server() -> (SocketAddr, Handle, Closed) {
    let closed: Closed = Arc::default();
    let c2 = closed.clone();
    let (tx, rx) = mpsc::channel();
    thread::spawn(move || {
        let config = Config::new()
            .ws_ping_interval(Some(Duration::from_millis(200)))
            .ws_ping_timeout(Duration::from_millis(300))
            .ws_close_timeout(Duration::from_millis(300));
        let mut server = Server::bind("127.0.0.1:0", config, Accept { closed: c2 }).unwrap();
        tx.send((server.local_addr(), server.handle())).unwrap();
        server.run().unwrap();
    });
    let (addr, handle) = rx.recv().unwrap();
    (addr, handle, closed)
}

fn stats(handle: &Handle) -> pushwire::Stats {
    let (tx, rx) = mpsc::channel();
    handle.run(move |cx| tx.send(cx.stats()).unwrap());
    rx.recv_timeout(Duration::from_secs(5)).unwrap()
}

#[test]
fn a_client_that_answers_the_pings_stays_open() {
    let (addr, handle, closed) = server();
    let mut c = WsClient::open(addr, "/", "");
    let mut pings = Vec::new();
    let deadline = Instant::now() + Duration::from_secs(20);
    // Five intervals and more: each Ping answered with its Pong.
    while pings.len() < 5 {
        assert!(Instant::now() < deadline, "pings so far: {pings:?}");
        let f = c.recv().expect("a frame, not the end");
        assert_eq!(f.opcode, 9, "only Pings arrive: {f:?}");
        c.send_frame(true, 10, &f.payload);
        pings.push(String::from_utf8(f.payload).unwrap());
    }
    assert_eq!(
        pings,
        ["ping0001", "ping0002", "ping0003", "ping0004", "ping0005"]
    );
    assert!(closed.lock().unwrap().is_empty());
    assert_eq!(stats(&handle).websocket, 1);
    // Our own Close ends it normally.
    c.send_frame(true, 8, &1000u16.to_be_bytes());
    let f = c.recv().expect("the Close echo");
    assert_eq!((f.opcode, f.payload), (8, 1000u16.to_be_bytes().to_vec()));
    let deadline = Instant::now() + Duration::from_secs(10);
    while closed.lock().unwrap().is_empty() {
        assert!(Instant::now() < deadline);
        thread::sleep(Duration::from_millis(5));
    }
    let got = closed.lock().unwrap()[0];
    assert_eq!(got.0, Some(1000));
    assert_ne!(got.1, CloseReason::PingTimeout);
    assert_eq!(stats(&handle).ws_ping_timeouts, 0);
}

#[test]
fn a_client_that_never_answers_is_closed_with_1001_and_dropped() {
    let (addr, handle, closed) = server();
    let mut c = WsClient::open(addr, "/", "");
    // Silent: the Ping ...
    let f = c.recv().expect("a Ping");
    assert_eq!((f.opcode, f.payload.as_slice()), (9, &b"ping0001"[..]));
    // ... no Pong: the Close 1001 ...
    let f = c.recv().expect("a Close");
    assert_eq!(f.opcode, 8);
    assert_eq!(f.payload, b"\x03\xe9ping timeout");
    // ... not answered either: the close timeout drops the connection.
    assert_eq!(c.recv(), None, "then the end of the stream");
    let deadline = Instant::now() + Duration::from_secs(10);
    while closed.lock().unwrap().is_empty() {
        assert!(Instant::now() < deadline);
        thread::sleep(Duration::from_millis(5));
    }
    assert_eq!(
        closed.lock().unwrap()[0],
        (Some(1001), CloseReason::PingTimeout)
    );
    let s = stats(&handle);
    assert_eq!((s.ws_ping_timeouts, s.websocket), (1, 0));
}

/// Reads one masked client frame (payload under 126 bytes): opcode and unmasked payload.
/// `None` at the end of the stream or after 10 s.
fn read_client_frame(s: &mut TcpStream, buf: &mut Vec<u8>) -> Option<(u8, Vec<u8>)> {
    let deadline = Instant::now() + Duration::from_secs(10);
    fill(s, buf, 2, deadline)?;
    assert_eq!(buf[1] & 0x80, 0x80, "client frames are masked");
    let len = usize::from(buf[1] & 0x7f);
    assert!(len < 126);
    fill(s, buf, 6 + len, deadline)?;
    let key = [buf[2], buf[3], buf[4], buf[5]];
    let payload = buf[6..6 + len]
        .iter()
        .enumerate()
        .map(|(i, b)| b ^ key[i % 4])
        .collect();
    let opcode = buf[0] & 0x0f;
    buf.drain(..6 + len);
    Some((opcode, payload))
}

#[test]
fn a_dialed_websocket_pings_a_silent_server_and_closes_it_with_1001() {
    // A WebSocket server played by hand: it answers the handshake, then never says a word.
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let target = listener.local_addr().unwrap();
    let (frames_tx, frames) = mpsc::channel();
    thread::spawn(move || {
        let (mut s, _) = listener.accept().unwrap();
        let mut buf = Vec::new();
        let deadline = Instant::now() + Duration::from_secs(10);
        while !buf.windows(4).any(|w| w == b"\r\n\r\n") {
            let want = buf.len() + 1;
            fill(&mut s, &mut buf, want, deadline).expect("the upgrade request");
        }
        let head = String::from_utf8_lossy(&buf).into_owned();
        let key = head
            .lines()
            .find_map(|l| {
                let (name, value) = l.split_once(':')?;
                name.eq_ignore_ascii_case("sec-websocket-key")
                    .then(|| value.trim().to_owned())
            })
            .expect("a key");
        let accept = pushwire::proto::ws::accept_key(&key);
        let answer = format!(
            "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\n\
             Connection: Upgrade\r\nSec-WebSocket-Accept: {accept}\r\n\r\n"
        );
        s.write_all(answer.as_bytes()).unwrap();
        buf.clear();
        while let Some(frame) = read_client_frame(&mut s, &mut buf) {
            frames_tx.send(frame).unwrap();
        }
        frames_tx.send((0xff, Vec::new())).unwrap();
    });
    let (_, handle, closed) = server();
    let url = format!("ws://{target}/");
    let (tx, rx) = mpsc::channel();
    handle.run(move |cx| {
        tx.send(cx.connect_ws(&url, &WsConnect::new()).is_ok())
            .unwrap()
    });
    assert!(rx.recv_timeout(Duration::from_secs(5)).unwrap());
    let wait = Duration::from_secs(10);
    assert_eq!(
        frames.recv_timeout(wait).unwrap(),
        (9, b"ping0001".to_vec())
    );
    assert_eq!(
        frames.recv_timeout(wait).unwrap(),
        (8, b"\x03\xe9ping timeout".to_vec())
    );
    assert_eq!(frames.recv_timeout(wait).unwrap().0, 0xff, "then the end");
    let deadline = Instant::now() + wait;
    while closed.lock().unwrap().is_empty() {
        assert!(Instant::now() < deadline);
        thread::sleep(Duration::from_millis(5));
    }
    assert_eq!(
        closed.lock().unwrap()[0],
        (Some(1001), CloseReason::PingTimeout)
    );
}
