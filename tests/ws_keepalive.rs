//! Issue 16 point 5: the WebSocket keepalive over real sockets. A peer that sent nothing
//! for the ping interval gets a Ping; one that answers stays open, one that does not is
//! closed with 1001 "ping timeout" and `on_close` says `CloseReason::PingTimeout`.

mod util;

use std::net::SocketAddr;
use std::sync::{mpsc, Arc, Mutex};
use std::thread;
use std::time::{Duration, Instant};

use pushwire::{
    App, CloseInfo, CloseReason, Config, ConnId, Ctx, Handle, Reply, Request, Server, WsAccept,
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
