//! Unit tests of the connection state machine: exact bytes in, exact bytes out, fake time.
//!
//! The harness [`H`] plays the driver: it keeps the unconsumed input, calls
//! [`ServerConn::read_http`] / [`ServerConn::ws_read`] and drains what they consumed, takes
//! the queued bytes as a flush would and then reports [`ServerConn::on_drained`], and moves
//! a fake clock (one `Instant::now()` base plus offsets) to the connection's deadline.

use std::rc::Rc;
use std::time::{Duration, Instant};

use super::*;
use crate::proto::fanout::Transport;
use crate::proto::http1::{Request, Response};
use crate::proto::ws::{OpCode, WsLimits};

/// The settings the tests use unless they change one: small round numbers.
fn settings() -> ConnSettings {
    ConnSettings {
        header_timeout: Duration::from_secs(10),
        idle_timeout: Duration::from_secs(60),
        high_water: 256,
        slow_policy: SlowPolicy::Disconnect,
        ws_close_timeout: Duration::from_secs(5),
        sse_heartbeat: Duration::from_secs(15),
        linger: Duration::from_secs(2),
        ..ConnSettings::default()
    }
}

/// A WebSocket message, owned (the core's borrows the input buffer).
#[derive(Debug, Clone, PartialEq, Eq)]
enum Msg {
    Text(String),
    Binary(Vec<u8>),
}

impl From<Message<'_>> for Msg {
    fn from(m: Message<'_>) -> Self {
        match m {
            Message::Text(t) => Msg::Text(t.to_owned()),
            Message::Binary(b) => Msg::Binary(b.to_vec()),
        }
    }
}

/// The fake driver around one connection.
struct H {
    conn: ServerConn,
    out: OutQueue,
    cfg: ConnSettings,
    base: Instant,
    now: Instant,
    stopping: bool,
    date: Option<&'static str>,
    /// Input read and not yet consumed.
    input: Vec<u8>,
    codec: ws::deflate::Codec,
}

impl H {
    fn new() -> H {
        H::with(settings())
    }

    fn with(cfg: ConnSettings) -> H {
        let base = Instant::now();
        let mut out = OutQueue::default();
        let mut codec = ws::deflate::Codec::new();
        let conn = ServerConn::new(&mut Env {
            now: base,
            cfg: &cfg,
            stopping: false,
            date: None,
            out: &mut out,
            codec: &mut codec,
        });
        H {
            conn,
            out,
            cfg,
            base,
            now: base,
            stopping: false,
            date: None,
            input: Vec::new(),
            codec,
        }
    }

    /// Calls the core with an [`Env`], as the driver's `with_conn` does.
    fn call<R>(&mut self, f: impl FnOnce(&mut ServerConn, &mut Env<'_>) -> R) -> R {
        let mut env = Env {
            now: self.now,
            cfg: &self.cfg,
            stopping: self.stopping,
            date: self.date,
            out: &mut self.out,
            codec: &mut self.codec,
        };
        f(&mut self.conn, &mut env)
    }

    /// The time `secs` seconds after the start.
    fn at(&self, secs: u64) -> Instant {
        self.base + Duration::from_secs(secs)
    }

    /// Moves the clock to `secs` seconds after the start.
    fn set_time(&mut self, secs: u64) {
        self.now = self.at(secs);
    }

    /// Moves the clock to the connection's deadline and acts on it.
    fn expire(&mut self) -> Expired {
        self.now = self.conn.poll_timeout().expect("a deadline is set");
        self.call(|c, env| c.handle_timeout(env))
    }

    /// Hands the buffered input to `read_http` until a request comes out or nothing more
    /// is consumed, draining what was consumed.
    fn read(&mut self) -> Option<Request> {
        loop {
            let input = std::mem::take(&mut self.input);
            let (n, req) = self.call(|c, env| c.read_http(&input, env));
            self.input = input;
            self.input.drain(..n);
            if req.is_some() {
                return req;
            }
            if n == 0 || self.input.is_empty() {
                return None;
            }
        }
    }

    /// Receives `bytes`, then reads as [`read`](Self::read) does.
    fn feed(&mut self, bytes: &[u8]) -> Option<Request> {
        self.input.extend_from_slice(bytes);
        self.read()
    }

    /// Receives one whole request and returns it.
    fn request(&mut self, bytes: &[u8]) -> Request {
        self.feed(bytes).expect("a complete request")
    }

    fn respond(&mut self, resp: &Response) -> bool {
        self.call(|c, env| c.respond(resp, env))
    }

    /// Takes every queued byte, as a flush that wrote everything.
    fn take(&mut self) -> Vec<u8> {
        self.out.take_all()
    }

    /// Writes everything queued, then tells the core the queue drained; returns the bytes
    /// and whether the core asked for the half-close.
    fn flush(&mut self) -> (Vec<u8>, bool) {
        let bytes = self.out.take_all();
        let shut = self.call(|c, env| c.on_drained(env));
        (bytes, shut)
    }

    fn eof(&mut self) {
        let unread = self.input.len();
        self.call(|c, env| c.on_eof(unread, env));
    }

    /// Upgrades to a WebSocket: reads the handshake, accepts it, and checks the 101.
    fn upgrade(&mut self) {
        let req = self.request(WS_HANDSHAKE);
        assert!(self.call(|c, env| c.accept_ws(&req, None, &[], WsLimits::default(), env)));
        assert_eq!(self.conn.kind(), ConnKind::WebSocket);
        same(self.out.to_vec(), ACCEPT_101);
    }

    /// Receives WebSocket bytes and runs them through the lent receiving half, as the
    /// driver's `process_ws` does; `app` is called for each message while the receiver is
    /// still lent out.
    fn ws_feed_with(
        &mut self,
        bytes: &[u8],
        mut app: impl FnMut(&mut ServerConn, &mut Env<'_>, &Msg),
    ) -> Vec<Msg> {
        self.input.extend_from_slice(bytes);
        let mut got = Vec::new();
        let Some(mut recv) = self.conn.take_receiver() else {
            return got;
        };
        assert!(self.conn.take_receiver().is_none(), "lent once only");
        while !self.input.is_empty() {
            let mut env = Env {
                now: self.now,
                cfg: &self.cfg,
                stopping: self.stopping,
                date: self.date,
                out: &mut self.out,
                codec: &mut self.codec,
            };
            let (n, msg) = self.conn.ws_read(&mut recv, &mut self.input, &mut env);
            let msg = msg.map(Msg::from);
            if let Some(m) = &msg {
                app(&mut self.conn, &mut env, m);
                got.push(m.clone());
            }
            self.input.drain(..n);
            if n == 0 {
                break;
            }
        }
        if self.conn.ws_input_done() {
            self.input.clear();
        }
        self.conn.put_receiver(recv);
        got
    }

    fn ws_feed(&mut self, bytes: &[u8]) -> Vec<Msg> {
        self.ws_feed_with(bytes, |_, _, _| {})
    }
}

const GET: &[u8] = b"GET / HTTP/1.1\r\nHost: a\r\n\r\n";

const WS_HANDSHAKE: &[u8] = b"GET /ws HTTP/1.1\r\nHost: a\r\nUpgrade: websocket\r\n\
    Connection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\
    Sec-WebSocket-Version: 13\r\n\r\n";

/// The answer to [`WS_HANDSHAKE`] (the key and accept value of RFC 6455 §1.3).
const ACCEPT_101: &[u8] = b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\n\
    Connection: Upgrade\r\nSec-WebSocket-Accept: s3pPLMBiTxaQ9kYGzzhZRbK+xOo=\r\n\r\n";

const EVENT_STREAM: &[(&str, &str)] = &[("Content-Type", "text/event-stream")];

/// `Response::text(200, body)` as written on a keep-alive HTTP/1.1 connection, no `Date`.
fn ok_bytes(body: &str) -> Vec<u8> {
    format!(
        "HTTP/1.1 200 OK\r\nContent-Type: text/plain; charset=utf-8\r\n\
         Content-Length: {}\r\n\r\n{body}",
        body.len()
    )
    .into_bytes()
}

/// An error answer as the core writes it: text body `reason\n`, `Connection: close`.
fn error_bytes(status: u16, phrase: &str, reason: &str) -> Vec<u8> {
    format!(
        "HTTP/1.1 {status} {phrase}\r\nContent-Type: text/plain; charset=utf-8\r\n\
         Content-Length: {}\r\nConnection: close\r\n\r\n{reason}\n",
        reason.len() + 1
    )
    .into_bytes()
}

/// A masked client frame (payload under 126 bytes), FIN set.
fn client_frame(opcode: u8, payload: &[u8]) -> Vec<u8> {
    assert!(payload.len() < 126);
    let key = [0x37, 0xfa, 0x21, 0x3d];
    let mut v = vec![0x80 | opcode, 0x80 | payload.len() as u8];
    v.extend_from_slice(&key);
    v.extend(payload.iter().enumerate().map(|(i, b)| b ^ key[i % 4]));
    v
}

/// A client Close frame with `code` and `reason`.
fn client_close(code: u16, reason: &str) -> Vec<u8> {
    let mut payload = code.to_be_bytes().to_vec();
    payload.extend_from_slice(reason.as_bytes());
    client_frame(0x8, &payload)
}

/// A server frame (unmasked, payload under 126 bytes), FIN set.
fn server_frame(opcode: u8, payload: &[u8]) -> Vec<u8> {
    assert!(payload.len() < 126);
    let mut v = vec![0x80 | opcode, payload.len() as u8];
    v.extend_from_slice(payload);
    v
}

/// A server Close frame with `code` and `reason`.
fn server_close(code: u16, reason: &str) -> Vec<u8> {
    let mut payload = code.to_be_bytes().to_vec();
    payload.extend_from_slice(reason.as_bytes());
    server_frame(0x8, &payload)
}

/// Asserts equal bytes, showing them escaped when they differ.
#[track_caller]
fn same(actual: impl AsRef<[u8]>, expected: impl AsRef<[u8]>) {
    let (a, e) = (actual.as_ref(), expected.as_ref());
    assert!(
        a == e,
        "bytes differ\n  actual: {}\nexpected: {}",
        a.escape_ascii(),
        e.escape_ascii()
    );
}

fn cat(parts: &[&[u8]]) -> Vec<u8> {
    parts.concat()
}

fn count(hay: &[u8], needle: &[u8]) -> usize {
    hay.windows(needle.len()).filter(|w| *w == needle).count()
}

// ---------------------------------------------------------------------------------------
// Keep-alive (RFC 9112 §9.3)

#[test]
fn http11_keeps_alive_by_default() {
    let mut h = H::new();
    assert_eq!(h.conn.kind(), ConnKind::Http);
    assert_eq!(h.conn.poll_timeout(), Some(h.at(60)));
    h.set_time(1);
    let req = h.request(GET);
    assert_eq!(req.target, "/");
    assert!(h.conn.owes_answer());
    // No deadline runs while the application owes the answer.
    assert_eq!(h.conn.poll_timeout(), None);
    assert!(h.respond(&Response::text(200, "hi")));
    assert!(!h.conn.owes_answer());
    let (bytes, shut) = h.flush();
    same(bytes, ok_bytes("hi"));
    assert!(!shut);
    assert!(h.conn.is_open());
    assert_eq!(h.conn.kind(), ConnKind::Http);
    // The idle timeout runs again from the answer.
    assert_eq!(h.conn.poll_timeout(), Some(h.at(61)));
    // A second request on the same connection.
    h.request(GET);
    assert!(h.respond(&Response::text(200, "again")));
    same(h.take(), ok_bytes("again"));
    assert_eq!(h.conn.finished(), None);
}

#[test]
fn answers_carry_date_only_when_given() {
    let mut h = H::new();
    h.date = Some("Mon, 01 Jan 2024 00:00:00 GMT");
    h.request(GET);
    h.respond(&Response::new(204));
    same(
        h.take(),
        b"HTTP/1.1 204 No Content\r\nDate: Mon, 01 Jan 2024 00:00:00 GMT\r\n\r\n",
    );
}

#[test]
fn connection_close_request_closes_after_the_answer() {
    let mut h = H::new();
    h.request(b"GET / HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n");
    assert!(h.respond(&Response::text(200, "bye")));
    assert!(h.conn.is_closing());
    assert!(!h.conn.is_open());
    // Nothing more may be answered.
    assert!(!h.respond(&Response::text(200, "more")));
    let (bytes, shut) = h.flush();
    same(
        bytes,
        b"HTTP/1.1 200 OK\r\nContent-Type: text/plain; charset=utf-8\r\n\
          Content-Length: 3\r\nConnection: close\r\n\r\nbye",
    );
    assert!(shut, "drained: half-close now");
    assert_eq!(h.conn.finished(), None, "lingering until the peer hangs up");
    assert!(h.conn.wants_read(0, &h.cfg));
    h.eof();
    assert_eq!(h.conn.finished(), Some(CloseReason::Finished));
}

#[test]
fn http10_without_keep_alive_closes() {
    let mut h = H::new();
    let req = h.request(b"GET / HTTP/1.0\r\n\r\n");
    assert_eq!(req.version, crate::proto::http1::Version::Http10);
    h.respond(&Response::text(200, "x"));
    assert!(h.conn.is_closing());
    let (bytes, shut) = h.flush();
    same(
        bytes,
        b"HTTP/1.1 200 OK\r\nContent-Type: text/plain; charset=utf-8\r\n\
          Content-Length: 1\r\nConnection: close\r\n\r\nx",
    );
    assert!(shut);
}

#[test]
fn http10_with_keep_alive_stays_open() {
    let mut h = H::new();
    h.request(b"GET / HTTP/1.0\r\nConnection: keep-alive\r\n\r\n");
    h.respond(&Response::text(200, "x"));
    let (bytes, shut) = h.flush();
    same(
        bytes,
        b"HTTP/1.1 200 OK\r\nContent-Type: text/plain; charset=utf-8\r\n\
          Content-Length: 1\r\nConnection: keep-alive\r\n\r\nx",
    );
    assert!(!shut);
    assert!(h.conn.is_open());
}

#[test]
fn response_with_connection_close_closes() {
    let mut h = H::new();
    h.request(GET);
    h.respond(&Response::new(204).header("Connection", "close"));
    assert!(h.conn.is_closing());
    let (bytes, shut) = h.flush();
    assert!(bytes.starts_with(b"HTTP/1.1 204 No Content\r\n"));
    assert!(count(&bytes, b"Connection: close\r\n") >= 1);
    assert!(shut);
}

#[test]
fn response_with_connection_close_says_it_once() {
    let mut h = H::new();
    h.request(GET);
    h.respond(&Response::new(204).header("Connection", "close"));
    same(
        h.take(),
        b"HTTP/1.1 204 No Content\r\nConnection: close\r\n\r\n",
    );
}

#[test]
fn stopping_makes_answers_close() {
    let mut h = H::new();
    h.request(GET);
    h.stopping = true;
    h.respond(&Response::text(200, "x"));
    assert!(h.conn.is_closing());
    let (bytes, shut) = h.flush();
    same(
        bytes,
        b"HTTP/1.1 200 OK\r\nContent-Type: text/plain; charset=utf-8\r\n\
          Content-Length: 1\r\nConnection: close\r\n\r\nx",
    );
    assert!(shut);
}

#[test]
fn stop_closes_an_idle_connection_and_leaves_an_owed_answer_to_the_app() {
    let mut h = H::new();
    assert!(!h.call(|c, env| c.stop(0, env)));
    assert!(h.conn.is_closing());
    let (bytes, shut) = h.flush();
    assert!(bytes.is_empty());
    assert!(shut);

    let mut h = H::new();
    h.request(GET);
    h.stopping = true;
    assert!(!h.call(|c, env| c.stop(0, env)));
    assert!(h.conn.is_open(), "the owed answer still goes out");
    h.respond(&Response::new(204));
    same(
        h.take(),
        b"HTTP/1.1 204 No Content\r\nConnection: close\r\n\r\n",
    );
    assert!(h.conn.is_closing());
}

#[test]
fn eof_between_requests_is_peer_closed() {
    let mut h = H::new();
    h.request(GET);
    h.respond(&Response::new(204));
    h.flush();
    h.eof();
    assert_eq!(h.conn.finished(), Some(CloseReason::PeerClosed));
}

#[test]
fn eof_with_an_answer_still_queued_finishes_it_first() {
    let mut h = H::new();
    h.request(GET);
    h.respond(&Response::new(204));
    h.eof();
    assert_eq!(h.conn.finished(), None);
    assert!(h.conn.is_closing());
    let (bytes, shut) = h.flush();
    same(bytes, b"HTTP/1.1 204 No Content\r\n\r\n");
    // The peer has ended its side already: no half-close and no lingering, just done.
    assert!(!shut);
    assert_eq!(h.conn.finished(), Some(CloseReason::Finished));
}

// ---------------------------------------------------------------------------------------
// Pipelining (RFC 9112 §9.3.2)

#[test]
fn pipelined_requests_are_answered_in_order() {
    let mut h = H::new();
    h.input = cat(&[
        b"GET /one HTTP/1.1\r\nHost: a\r\n\r\n",
        b"GET /two HTTP/1.1\r\nHost: a\r\n\r\n",
    ]);
    let one = h.read().unwrap();
    assert_eq!(one.target, "/one");
    h.respond(&Response::text(200, "one"));
    let two = h.read().unwrap();
    assert_eq!(two.target, "/two");
    h.respond(&Response::text(200, "two"));
    assert!(h.input.is_empty());
    same(h.take(), cat(&[&ok_bytes("one"), &ok_bytes("two")]));
}

#[test]
fn a_later_answer_holds_the_next_request_back() {
    let mut h = H::new();
    let second = b"GET /two HTTP/1.1\r\nHost: a\r\n\r\n";
    h.input = cat(&[b"GET /one HTTP/1.1\r\nHost: a\r\n\r\n", second]);
    assert_eq!(h.read().unwrap().target, "/one");
    // The application answers Later: the second request stays in the buffer.
    let input = h.input.clone();
    assert_eq!(h.call(|c, env| c.read_http(&input, env)), (0, None));
    assert_eq!(h.read(), None);
    assert_eq!(h.input, second);
    assert!(h.out.is_empty());
    // The input buffer filling up behind an owed answer pauses input, no 431.
    assert!(!h.call(|c, env| c.input_full(env)));
    assert!(h.out.is_empty());
    h.set_time(3);
    h.respond(&Response::text(200, "one"));
    assert_eq!(h.read().unwrap().target, "/two");
    h.respond(&Response::text(200, "two"));
    same(h.take(), cat(&[&ok_bytes("one"), &ok_bytes("two")]));
}

#[test]
fn pipelined_requests_wait_while_answers_are_not_read() {
    let mut h = H::new();
    h.request(GET);
    h.respond(&Response::text(200, "x".repeat(300)));
    assert!(h.out.len() > h.cfg.high_water);
    assert!(!h.conn.wants_read(h.out.len(), &h.cfg));
    assert_eq!(h.feed(GET), None);
    assert_eq!(h.input, GET);
    h.take();
    assert!(h.read().is_some());
}

#[test]
fn input_behind_a_closing_answer_is_dropped() {
    let mut h = H::new();
    h.input = cat(&[
        b"GET / HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n",
        GET,
    ]);
    h.read().unwrap();
    h.respond(&Response::new(204));
    assert_eq!(h.read(), None);
    assert!(h.input.is_empty());
    same(
        h.take(),
        b"HTTP/1.1 204 No Content\r\nConnection: close\r\n\r\n",
    );
}

// ---------------------------------------------------------------------------------------
// 100-continue (RFC 9110 §10.1.1)

#[test]
fn expect_continue_is_answered_once_before_the_body() {
    let mut h = H::new();
    let head = b"POST /up HTTP/1.1\r\nHost: a\r\nContent-Length: 5\r\nExpect: 100-continue\r\n\r\n";
    assert_eq!(h.feed(head), None);
    same(h.out.to_vec(), b"HTTP/1.1 100 Continue\r\n\r\n");
    assert_eq!(h.feed(b"he"), None);
    assert_eq!(h.feed(b""), None);
    let req = h.feed(b"llo").unwrap();
    assert_eq!(req.body, b"hello");
    h.respond(&Response::new(204));
    same(
        h.take(),
        b"HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 204 No Content\r\n\r\n",
    );
}

#[test]
fn expect_continue_with_the_body_already_there_gets_no_interim_answer() {
    let mut h = H::new();
    let req = h.request(
        b"POST /up HTTP/1.1\r\nHost: a\r\nContent-Length: 2\r\nExpect: 100-continue\r\n\r\nhi",
    );
    assert_eq!(req.body, b"hi");
    assert!(h.out.is_empty());
}

// ---------------------------------------------------------------------------------------
// Timeouts: 408, idle

#[test]
fn a_slow_request_head_gets_408_then_lingers() {
    let mut h = H::new();
    h.set_time(1);
    assert_eq!(h.feed(b"GET / HTTP/1.1\r\nHost: a\r\n"), None);
    assert_eq!(h.conn.poll_timeout(), Some(h.at(11)));
    // More bytes of the same head do not move the deadline.
    h.set_time(5);
    assert_eq!(h.feed(b"X-A: b\r\n"), None);
    assert_eq!(h.conn.poll_timeout(), Some(h.at(11)));
    assert_eq!(h.expire(), Expired::Nothing);
    assert!(h.conn.is_closing());
    assert_eq!(h.conn.finished(), None);
    let (bytes, shut) = h.flush();
    same(
        bytes,
        error_bytes(408, "Request Timeout", "request not complete in time"),
    );
    assert!(shut);
    assert_eq!(h.conn.poll_timeout(), Some(h.at(13)));
    // The rest of the head arrives while lingering: dropped.
    assert_eq!(h.feed(b"\r\n"), None);
    assert!(h.input.is_empty());
    assert!(h.out.is_empty());
    assert_eq!(h.expire(), Expired::Nothing);
    assert_eq!(h.conn.finished(), Some(CloseReason::Finished));
}

impl H {
    /// A connection whose transport handshakes first (TLS).
    fn with_handshake() -> H {
        let mut h = H::new();
        h.conn = h.call(|_, env| ServerConn::new_with_handshake(env));
        h
    }
}

#[test]
fn after_a_handshake_the_header_timeout_runs_from_accept() {
    // Nothing at all arrives (a stalled TLS handshake): closed at the header timeout,
    // with nothing written (there is no request to answer).
    let mut h = H::with_handshake();
    assert_eq!(h.conn.poll_timeout(), Some(h.at(10)));
    assert_eq!(h.expire(), Expired::Nothing);
    assert_eq!(h.conn.finished(), Some(CloseReason::HeaderTimeout));
    assert!(h.out.is_empty());

    // Part of a request arrived: the usual 408, the deadline still from accept.
    let mut h = H::with_handshake();
    h.set_time(4);
    assert_eq!(h.feed(b"GET / HTTP/1.1\r\n"), None);
    assert_eq!(h.conn.poll_timeout(), Some(h.at(10)));
    assert_eq!(h.expire(), Expired::Nothing);
    assert_eq!(h.conn.finished(), None);
    let (bytes, _) = h.flush();
    same(
        bytes,
        error_bytes(408, "Request Timeout", "request not complete in time"),
    );

    // A complete request in time: answered, then the idle timeout as usual.
    let mut h = H::with_handshake();
    h.set_time(3);
    h.request(b"GET / HTTP/1.1\r\nHost: a\r\n\r\n");
    assert!(h.call(|c, env| c.respond(&Response::text(200, "ok"), env)));
    h.flush();
    assert_eq!(h.conn.poll_timeout(), Some(h.at(63)));
}

#[test]
fn stray_line_breaks_keep_the_idle_timeout() {
    let mut h = H::new();
    h.set_time(1);
    assert_eq!(h.feed(b"\r\n\r\n"), None);
    assert!(h.input.is_empty());
    assert_eq!(h.conn.poll_timeout(), Some(h.at(60)));
}

#[test]
fn an_idle_connection_times_out() {
    let mut h = H::new();
    assert_eq!(h.conn.poll_timeout(), Some(h.at(60)));
    // Early: nothing happens.
    h.set_time(59);
    assert_eq!(h.call(|c, env| c.handle_timeout(env)), Expired::Nothing);
    assert_eq!(h.conn.finished(), None);
    assert_eq!(h.expire(), Expired::Nothing);
    assert_eq!(h.conn.finished(), Some(CloseReason::IdleTimeout));
    assert!(h.out.is_empty());
    assert!(!h.conn.wants_read(0, &h.cfg));
}

#[test]
fn idle_timeout_waits_for_a_slow_but_reading_client() {
    let mut h = H::new();
    h.request(GET);
    h.respond(&Response::text(200, "x".repeat(1000)));
    let total = h.out.len();
    assert_eq!(h.conn.poll_timeout(), Some(h.at(60)));
    // The client read some of the answer by the deadline: not idle.
    h.out.advance(100);
    assert_eq!(h.expire(), Expired::Nothing);
    assert_eq!(h.conn.finished(), None);
    assert_eq!(h.conn.poll_timeout(), Some(h.at(120)));
    h.out.advance(100);
    h.expire();
    assert_eq!(h.conn.finished(), None);
    assert_eq!(h.conn.poll_timeout(), Some(h.at(180)));
    assert_eq!(h.out.len(), total - 200);
    // No progress over a whole idle timeout: idle.
    h.expire();
    assert_eq!(h.conn.finished(), Some(CloseReason::IdleTimeout));
}

// ---------------------------------------------------------------------------------------
// Bad requests

#[test]
fn a_head_too_large_is_431() {
    let mut h = H::new();
    assert_eq!(h.feed(b"GET / HTTP/1.1\r\nHost: a\r\nX-Big: aaaa"), None);
    assert!(h.call(|c, env| c.input_full(env)));
    assert!(h.conn.is_closing());
    let (bytes, shut) = h.flush();
    same(
        bytes,
        error_bytes(
            431,
            "Request Header Fields Too Large",
            "request header block too large",
        ),
    );
    assert!(shut);
    // Once closing, a full buffer is not answered again.
    assert!(!h.call(|c, env| c.input_full(env)));
    assert!(h.out.is_empty());
}

#[test]
fn bad_requests_are_answered_and_close() {
    let table: &[(&[u8], u16, &str, &str)] = &[
        (
            b"BAD REQUEST LINE\r\n\r\n",
            400,
            "Bad Request",
            "malformed request line",
        ),
        (
            b"GET / HTTP/1.1\r\n\r\n",
            400,
            "Bad Request",
            "missing Host field",
        ),
        (
            b"POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: gzip, chunked\r\n\r\n",
            501,
            "Not Implemented",
            "unsupported transfer coding",
        ),
        (
            b"GET / HTTP/2.0\r\nHost: a\r\n\r\n",
            505,
            "HTTP Version Not Supported",
            "HTTP version not supported",
        ),
    ];
    for (input, status, phrase, reason) in table {
        let mut h = H::new();
        let bytes = cat(&[input, b"GET / HTTP/1.1\r\nHost: a\r\n\r\n"]);
        let (n, req) = h.call(|c, env| c.read_http(&bytes, env));
        assert_eq!((n, req), (bytes.len(), None), "{status}: all input dropped");
        assert!(h.conn.is_closing(), "{status}");
        assert!(!h.conn.owes_answer(), "{status}");
        let (out, shut) = h.flush();
        same(out, error_bytes(*status, phrase, reason));
        assert!(shut, "{status}");
        h.eof();
        assert_eq!(h.conn.finished(), Some(CloseReason::Finished), "{status}");
    }
}

// ---------------------------------------------------------------------------------------
// Lingering close (RFC 9112 §9.6)

/// A connection that answered with `Connection: close` and has its answer queued.
fn closing_conn() -> H {
    let mut h = H::new();
    h.request(b"GET / HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n");
    h.respond(&Response::text(200, "x".repeat(100)));
    assert!(h.conn.is_closing());
    h
}

#[test]
fn input_while_closing_is_dropped() {
    let mut h = closing_conn();
    let junk = b"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 100\r\n\r\nxx";
    assert_eq!(h.call(|c, env| c.read_http(junk, env)), (junk.len(), None));
    let (_, shut) = h.flush();
    assert!(shut);
    assert_eq!(h.call(|c, env| c.read_http(junk, env)), (junk.len(), None));
    assert!(h.out.is_empty());
    assert!(h.conn.wants_read(0, &h.cfg));
}

#[test]
fn lingering_ends_at_the_linger_time() {
    let mut h = closing_conn();
    h.set_time(1);
    let (_, shut) = h.flush();
    assert!(shut);
    assert_eq!(h.conn.poll_timeout(), Some(h.at(3)));
    assert_eq!(h.expire(), Expired::Nothing);
    assert_eq!(h.conn.finished(), Some(CloseReason::Finished));
}

#[test]
fn a_closing_connection_whose_peer_does_not_read_times_out() {
    let mut h = closing_conn();
    assert_eq!(h.conn.poll_timeout(), Some(h.at(2)));
    h.expire();
    assert_eq!(h.conn.finished(), Some(CloseReason::CloseTimeout));
}

#[test]
fn a_closing_connection_whose_queue_shrinks_waits_on() {
    let mut h = closing_conn();
    let total = h.out.len();
    h.out.advance(10);
    h.expire();
    assert_eq!(h.conn.finished(), None);
    assert_eq!(h.conn.poll_timeout(), Some(h.at(4)));
    h.out.advance(10);
    h.expire();
    assert_eq!(h.conn.finished(), None);
    assert_eq!(h.conn.poll_timeout(), Some(h.at(6)));
    assert_eq!(h.out.len(), total - 20);
    h.set_time(5);
    let (rest, shut) = h.flush();
    assert_eq!(rest.len(), total - 20);
    assert!(shut);
    assert_eq!(h.conn.poll_timeout(), Some(h.at(7)));
    h.eof();
    assert_eq!(h.conn.finished(), Some(CloseReason::Finished));
}

#[test]
fn closing_with_nothing_queued_still_half_closes() {
    // stop() on an idle keep-alive connection closes with nothing queued: the connection
    // asks for a drain anyway (the driver flushes it although empty), and half-closes.
    let mut h = H::new();
    assert!(!h.call(|c, env| c.stop(0, env)));
    assert!(h.out.is_empty());
    assert!(h.conn.awaiting_drain());
    assert!(h.call(|c, env| c.on_drained(env)), "half-close at once");
    assert!(!h.conn.awaiting_drain());
    h.eof();
    assert_eq!(h.conn.finished(), Some(CloseReason::Finished));
}

#[test]
fn input_fed_byte_by_byte_reads_as_whole() {
    let whole = {
        let mut h = H::new();
        h.request(b"POST /p HTTP/1.1\r\nHost: a\r\nContent-Length: 3\r\n\r\nabc")
    };
    let mut h = H::new();
    let input = cat(&[
        b"POST /p HTTP/1.1\r\nHost: a\r\nContent-Length: 3\r\n\r\nabc",
        GET,
    ]);
    let mut got = Vec::new();
    for b in &input {
        if let Some(req) = h.feed(&[*b]) {
            h.respond(&Response::new(204));
            got.push(req);
        }
    }
    assert_eq!(got.len(), 2);
    assert_eq!(got[0], whole);
    assert_eq!(got[1].target, "/");
    same(
        h.take(),
        b"HTTP/1.1 204 No Content\r\n\r\nHTTP/1.1 204 No Content\r\n\r\n",
    );

    let mut h = ws_conn(settings());
    let frames = cat(&[
        &client_frame(0x1, b"one"),
        &client_frame(0x9, b"p"),
        &client_frame(0x2, b"two"),
    ]);
    let mut msgs = Vec::new();
    for b in &frames {
        msgs.extend(h.ws_feed(&[*b]));
    }
    assert_eq!(
        msgs,
        [Msg::Text("one".into()), Msg::Binary(b"two".to_vec())]
    );
    same(h.take(), b"\x8a\x01p");
}

// ---------------------------------------------------------------------------------------
// Slow readers

/// A WebSocket whose 101 was written.
fn ws_conn(cfg: ConnSettings) -> H {
    let mut h = H::with(cfg);
    h.upgrade();
    h.take();
    h
}

/// A shared text frame of 100 bytes of payload, marked with `tag`.
fn broadcast(tag: u8) -> Rc<[u8]> {
    server_frame(0x1, &[tag; 100]).into()
}

#[test]
fn a_slow_websocket_reader_is_closed_with_1008() {
    let mut h = ws_conn(settings());
    for tag in b"abc" {
        assert_eq!(
            h.call(|c, env| c.deliver(&broadcast(*tag), env)),
            Delivery::Queued
        );
    }
    // The socket took 10 bytes of the first frame; 292 bytes remain, over the mark.
    h.out.advance(10);
    assert!(h.out.len() >= h.cfg.high_water);
    assert_eq!(
        h.call(|c, env| c.deliver(&broadcast(b'd'), env)),
        Delivery::Slow
    );
    assert_eq!(h.conn.ws_code(), Some(1008));
    assert!(h.conn.is_closing());
    assert!(!h.conn.ws_open());
    // The frame being written is finished; the frames not started are dropped.
    let first = broadcast(b'a');
    let expected = cat(&[&first[10..], &server_close(1008, "slow reader")]);
    same(h.out.to_vec(), &expected);
    // Nothing more is taken.
    assert_eq!(
        h.call(|c, env| c.deliver(&broadcast(b'e'), env)),
        Delivery::Dropped
    );
    assert!(!h.call(|c, env| c.ws_send(OpCode::Text, b"x", env)));
    let (bytes, shut) = h.flush();
    same(bytes, expected);
    assert!(shut);
}

#[test]
fn a_slow_websocket_reader_is_closed_on_a_direct_send_too() {
    let mut h = ws_conn(settings());
    for tag in b"abc" {
        h.call(|c, env| c.deliver(&broadcast(*tag), env));
    }
    assert!(!h.call(|c, env| c.ws_send(OpCode::Text, b"x", env)));
    same(h.out.to_vec(), server_close(1008, "slow reader"));
    assert_eq!(h.conn.ws_code(), Some(1008));
    assert!(h.conn.take_slow(), "the application is to be told");
    assert!(!h.conn.take_slow(), "once");
}

#[test]
fn a_slow_reader_keeps_the_unwritten_101() {
    let mut h = H::new();
    h.upgrade();
    // Broadcasts queued behind the 101 before any of it was written.
    loop {
        let d = h.call(|c, env| c.deliver(&broadcast(b'a'), env));
        if d != Delivery::Queued {
            assert_eq!(d, Delivery::Slow);
            break;
        }
    }
    let out = h.out.to_vec();
    assert!(out.starts_with(ACCEPT_101), "the 101 answer was dropped");
    assert!(out.ends_with(&server_close(1008, "slow reader")));
}

#[test]
fn a_slow_websocket_reader_loses_messages_under_drop_messages() {
    let cfg = ConnSettings {
        slow_policy: SlowPolicy::DropMessages,
        ..settings()
    };
    let mut h = ws_conn(cfg);
    for tag in b"abc" {
        assert_eq!(
            h.call(|c, env| c.deliver(&broadcast(*tag), env)),
            Delivery::Queued
        );
    }
    let before = h.out.to_vec();
    assert_eq!(
        h.call(|c, env| c.deliver(&broadcast(b'd'), env)),
        Delivery::Dropped
    );
    assert!(!h.call(|c, env| c.ws_send(OpCode::Text, b"x", env)));
    same(h.out.to_vec(), before);
    assert!(h.conn.ws_open());
    assert_eq!(h.conn.ws_code(), None);
    // Once the reader caught up, messages flow again.
    h.take();
    assert_eq!(
        h.call(|c, env| c.deliver(&broadcast(b'e'), env)),
        Delivery::Queued
    );
    same(h.out.to_vec(), &*broadcast(b'e'));
}

#[test]
fn a_slow_sse_reader_gets_the_last_chunk() {
    let mut h = H::new();
    h.request(b"GET /events HTTP/1.1\r\nHost: a\r\n\r\n");
    assert!(h.call(|c, env| c.start_sse(EVENT_STREAM, b"", env)));
    h.take();
    assert_eq!(h.conn.transport(), Transport::SseChunked);
    let event: Rc<[u8]> = Rc::from(&b"64\r\n"[..]);
    let mut queued = 0;
    let last = loop {
        let d = h.call(|c, env| c.deliver(&event, env));
        if d != Delivery::Queued {
            break d;
        }
        queued += 1;
    };
    assert_eq!(last, Delivery::Slow);
    assert_eq!(queued, 64);
    assert!(h.conn.is_closing());
    let (bytes, shut) = h.flush();
    same(bytes, b"0\r\n\r\n");
    assert!(shut);
}

// ---------------------------------------------------------------------------------------
// WebSocket (RFC 6455)

#[test]
fn a_close_from_a_callback_discards_the_frames_behind_it() {
    let mut h = H::new();
    h.upgrade();
    let input = cat(&[
        &client_frame(0x2, b"\x01\x02\x03"),
        &client_frame(0x1, b"first text"),
        &client_frame(0x1, b"second text"),
    ]);
    let mut closed = false;
    let got = h.ws_feed_with(&input, |conn, env, msg| {
        // The application refuses binary messages, from inside the callback, while the
        // driver still holds the lent receiving half.
        if let Msg::Binary(_) = msg {
            assert!(conn.close_ws(env, 1003, "binary not accepted"));
            closed = true;
        }
    });
    assert!(closed);
    assert_eq!(got, [Msg::Binary(vec![1, 2, 3])], "no text after the Close");
    assert!(h.input.is_empty(), "the texts were consumed and discarded");
    same(
        h.out.to_vec(),
        cat(&[ACCEPT_101, &server_close(1003, "binary not accepted")]),
    );
    assert_eq!(h.conn.ws_code(), Some(1003));
    assert!(!h.conn.ws_open());
    assert!(!h.conn.ws_input_done(), "waiting for the peer's Close");
    assert_eq!(h.conn.poll_timeout(), Some(h.at(5)));
    // More data from the peer before its Close: still discarded.
    assert!(h.ws_feed(&client_frame(0x1, b"third")).is_empty());
    // The peer's Close completes the handshake: no echo, closing.
    assert!(h.ws_feed(&client_close(1003, "")).is_empty());
    assert!(h.conn.ws_input_done());
    assert!(h.conn.is_closing());
    assert_eq!(h.conn.ws_code(), Some(1003));
    let (bytes, shut) = h.flush();
    same(
        bytes,
        cat(&[ACCEPT_101, &server_close(1003, "binary not accepted")]),
    );
    assert!(shut);
    h.eof();
    assert_eq!(h.conn.finished(), Some(CloseReason::Finished));
}

#[test]
fn websocket_messages_and_sends() {
    let mut h = ws_conn(settings());
    let got = h.ws_feed(&cat(&[
        &client_frame(0x1, b"hello"),
        &client_frame(0x2, b"\x00\xff"),
    ]));
    assert_eq!(got, [Msg::Text("hello".into()), Msg::Binary(vec![0, 0xff])]);
    assert!(h.out.is_empty());
    assert!(h.call(|c, env| c.ws_send(OpCode::Text, b"hey", env)));
    same(h.take(), server_frame(0x1, b"hey"));
    assert_eq!(h.conn.transport(), Transport::WebSocket);
    // A frame split across reads.
    let frame = client_frame(0x1, b"split");
    assert!(h.ws_feed(&frame[..4]).is_empty());
    assert_eq!(h.ws_feed(&frame[4..]), [Msg::Text("split".into())]);
    // HTTP reading is over on a WebSocket.
    assert_eq!(h.call(|c, env| c.read_http(GET, env)), (0, None));
}

#[test]
fn ping_gets_pong() {
    let mut h = ws_conn(settings());
    assert!(h.ws_feed(&client_frame(0x9, b"hi")).is_empty());
    same(h.take(), b"\x8a\x02hi");
    assert!(h.conn.ws_open());
}

#[test]
fn peer_close_is_echoed_with_its_code() {
    let mut h = ws_conn(settings());
    assert!(h.ws_feed(&client_close(1000, "bye")).is_empty());
    assert_eq!(h.conn.ws_code(), Some(1000));
    assert!(h.conn.ws_input_done());
    assert!(h.conn.is_closing());
    let (bytes, shut) = h.flush();
    same(bytes, b"\x88\x02\x03\xe8");
    assert!(shut);
    h.eof();
    assert_eq!(h.conn.finished(), Some(CloseReason::Finished));
}

#[test]
fn an_unmasked_frame_fails_with_1002() {
    let mut h = ws_conn(settings());
    let got = h.ws_feed(&cat(&[b"\x81\x02hi", &client_frame(0x1, b"after")]));
    assert!(got.is_empty());
    assert_eq!(h.conn.ws_code(), Some(1002));
    assert!(h.conn.is_closing());
    assert!(h.conn.ws_input_done());
    assert!(h.input.is_empty());
    let (bytes, shut) = h.flush();
    same(bytes, server_close(1002, "client frame not masked"));
    assert!(shut);
}

#[test]
fn a_close_unanswered_times_out() {
    let mut h = ws_conn(settings());
    h.set_time(1);
    assert!(h.call(|c, env| c.close_ws(env, 1000, "")));
    assert!(!h.call(|c, env| c.close_ws(env, 1000, "")), "once only");
    same(h.take(), b"\x88\x02\x03\xe8");
    assert_eq!(h.conn.poll_timeout(), Some(h.at(6)));
    h.expire();
    assert_eq!(h.conn.finished(), Some(CloseReason::CloseTimeout));
    assert_eq!(h.conn.ws_code(), Some(1000));
}

#[test]
fn close_and_stop_on_a_websocket() {
    let mut h = ws_conn(settings());
    h.call(|c, env| c.close(env));
    same(h.take(), b"\x88\x02\x03\xe8");
    let mut h = ws_conn(settings());
    assert!(!h.call(|c, env| c.stop(0, env)));
    same(h.take(), server_close(1001, "server stopping"));
    assert_eq!(h.conn.ws_code(), Some(1001));
}

#[test]
fn eof_without_a_close_frame_is_1006() {
    let mut h = ws_conn(settings());
    h.eof();
    assert_eq!(h.conn.finished(), Some(CloseReason::NoCloseFrame));
    assert_eq!(h.conn.ws_code(), Some(1006));
    assert!(h.out.is_empty());
}

#[test]
fn a_refused_handshake_is_answered_and_stays_http() {
    let mut h = H::new();
    let req = h.request(b"GET /ws HTTP/1.1\r\nHost: a\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 8\r\n\r\n");
    assert!(!h.call(|c, env| c.accept_ws(&req, None, &[], WsLimits::default(), env)));
    assert_eq!(h.conn.kind(), ConnKind::Http);
    let reason = "unsupported Sec-WebSocket-Version (only 13)";
    same(
        h.take(),
        format!(
            "HTTP/1.1 426 Upgrade Required\r\nContent-Type: text/plain; charset=utf-8\r\n\
             Sec-WebSocket-Version: 13\r\nContent-Length: {}\r\n\r\n{reason}\n",
            reason.len() + 1
        )
        .into_bytes(),
    );
}

// ---------------------------------------------------------------------------------------
// Server-Sent Events

#[test]
fn sse_on_http11_is_chunked() {
    let mut h = H::new();
    h.set_time(1);
    h.request(b"GET /events HTTP/1.1\r\nHost: a\r\n\r\n");
    assert!(h.call(|c, env| c.start_sse(EVENT_STREAM, b"retry: 1000\n\n", env)));
    assert_eq!(h.conn.kind(), ConnKind::Sse);
    same(
        h.take(),
        b"HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\nTransfer-Encoding: chunked\r\n\r\n\
          D\r\nretry: 1000\n\n\r\n",
    );
    assert!(h.call(|c, env| c.sse_send(b"data: x\n\n", env)));
    same(h.take(), b"9\r\ndata: x\n\n\r\n");
    // Input from an SSE client is dropped.
    assert_eq!(h.call(|c, env| c.read_http(GET, env)), (GET.len(), None));
    // Heartbeats while quiet.
    assert_eq!(h.conn.poll_timeout(), Some(h.at(16)));
    assert_eq!(h.expire(), Expired::Nothing);
    same(h.take(), b"C\r\n: heartbeat\n\r\n");
    assert_eq!(h.conn.poll_timeout(), Some(h.at(31)));
    // The end: the last chunk, then closing.
    h.call(|c, env| c.close(env));
    assert!(h.conn.is_closing());
    assert!(!h.call(|c, env| c.sse_send(b"data: y\n\n", env)));
    let (bytes, shut) = h.flush();
    same(bytes, b"0\r\n\r\n");
    assert!(shut);
    h.eof();
    assert_eq!(h.conn.finished(), Some(CloseReason::Finished));
}

#[test]
fn sse_on_http10_is_delimited_by_the_close() {
    let mut h = H::new();
    h.request(b"GET /events HTTP/1.0\r\n\r\n");
    assert!(h.call(|c, env| c.start_sse(EVENT_STREAM, b"retry: 1000\n\n", env)));
    assert_eq!(h.conn.transport(), Transport::SsePlain);
    same(
        h.take(),
        b"HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\nConnection: close\r\n\r\n\
          retry: 1000\n\n",
    );
    h.expire();
    same(h.take(), b": heartbeat\n");
    h.call(|c, env| c.close(env));
    let (bytes, shut) = h.flush();
    assert!(bytes.is_empty());
    assert!(shut);
}

#[test]
fn sse_for_head_is_a_plain_200() {
    let mut h = H::new();
    h.request(b"HEAD /events HTTP/1.1\r\nHost: a\r\n\r\n");
    assert!(!h.call(|c, env| c.start_sse(EVENT_STREAM, b"retry: 1000\n\n", env)));
    assert_eq!(h.conn.kind(), ConnKind::Http);
    assert!(h.conn.is_open());
    same(
        h.take(),
        b"HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\nContent-Length: 0\r\n\r\n",
    );
    // The connection reads the next request.
    assert!(h.feed(GET).is_some());
}

// ---------------------------------------------------------------------------------------
// Parked long polls

#[test]
fn a_parked_poll_expires_and_is_answered_shared() {
    let mut h = H::new();
    h.set_time(1);
    h.request(b"GET /poll HTTP/1.1\r\nHost: a\r\n\r\n");
    assert!(h.call(|c, env| c.park(Duration::from_secs(30), env)));
    assert_eq!(h.conn.kind(), ConnKind::Parked);
    assert_eq!(h.conn.transport(), Transport::None);
    assert_eq!(h.conn.poll_timeout(), Some(h.at(31)));
    // Broadcasts do not go to a parked poll.
    assert_eq!(
        h.call(|c, env| c.deliver(&broadcast(b'a'), env)),
        Delivery::Dropped
    );
    assert_eq!(h.expire(), Expired::Park);
    assert!(h.out.is_empty());
    let head = Response::new(200).header("Content-Type", "application/json");
    let body: Rc<[u8]> = Rc::from(&b"{\"events\":[]}"[..]);
    assert!(h.call(|c, env| c.respond_shared(&head, &body, env)));
    assert!(!h.call(|c, env| c.respond_shared(&head, &body, env)));
    assert_eq!(h.conn.kind(), ConnKind::Http);
    same(
        h.take(),
        b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: 13\r\n\r\n\
          {\"events\":[]}",
    );
    assert_eq!(h.conn.poll_timeout(), Some(h.at(91)));
}

#[test]
fn a_parked_head_request_gets_no_shared_body() {
    let mut h = H::new();
    h.request(b"HEAD /poll HTTP/1.1\r\nHost: a\r\n\r\n");
    h.call(|c, env| c.park(Duration::from_secs(30), env));
    let body: Rc<[u8]> = Rc::from(&b"{}"[..]);
    assert!(h.call(|c, env| c.respond_shared(&Response::new(200), &body, env)));
    same(h.take(), b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\n");
}

#[test]
fn eof_while_parked_is_peer_closed() {
    let mut h = H::new();
    h.request(b"GET /poll HTTP/1.1\r\nHost: a\r\n\r\n");
    h.call(|c, env| c.park(Duration::from_secs(30), env));
    h.eof();
    assert_eq!(h.conn.finished(), Some(CloseReason::PeerClosed));
    assert_eq!(h.conn.poll_timeout(), None);
}

#[test]
fn stop_hands_a_parked_poll_to_the_driver() {
    let mut h = H::new();
    h.request(b"GET /poll HTTP/1.1\r\nHost: a\r\n\r\n");
    h.call(|c, env| c.park(Duration::from_secs(30), env));
    assert!(h.call(|c, env| c.stop(0, env)));
    h.stopping = true;
    let body: Rc<[u8]> = Rc::from(&b"{}"[..]);
    assert!(h.call(|c, env| c.respond_shared(&Response::new(200), &body, env)));
    same(
        h.take(),
        b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nConnection: close\r\n\r\n{}",
    );
    assert!(h.conn.is_closing());
}

// ---------------------------------------------------------------------------------------
// Never output after finished()

/// Calls every method that may queue bytes and checks that none does.
fn assert_silent(h: &mut H) {
    assert!(h.conn.finished().is_some());
    let req = Request {
        method: "GET".into(),
        target: "/".into(),
        version: crate::proto::http1::Version::Http11,
        headers: Vec::new(),
        body: Vec::new(),
        trailers: Vec::new(),
    };
    let ws_req = {
        let mut h2 = H::new();
        h2.request(WS_HANDSHAKE)
    };
    let body: Rc<[u8]> = Rc::from(&b"x"[..]);
    let frame = client_frame(0x9, b"ping");
    assert_eq!(h.call(|c, env| c.read_http(GET, env)), (0, None));
    assert!(!h.respond(&Response::new(200)));
    assert!(!h.call(|c, env| c.respond_shared(&Response::new(200), &body, env)));
    h.call(|c, env| c.accept_ws(&req, None, &[], WsLimits::default(), env));
    h.call(|c, env| c.accept_ws(&ws_req, None, &[], WsLimits::default(), env));
    h.call(|c, env| c.start_sse(EVENT_STREAM, b"retry: 1\n\n", env));
    assert!(!h.call(|c, env| c.park(Duration::from_secs(1), env)));
    assert!(!h.call(|c, env| c.sse_send(b"data: x\n\n", env)));
    assert_ne!(h.call(|c, env| c.deliver(&body, env)), Delivery::Queued);
    assert!(!h.call(|c, env| c.ws_send(OpCode::Text, b"x", env)));
    assert!(!h.call(|c, env| c.close_ws(env, 1000, "")));
    h.call(|c, env| c.close(env));
    h.call(|c, env| c.stop(0, env));
    assert!(!h.call(|c, env| c.input_full(env)));
    h.now += Duration::from_secs(3600);
    assert_eq!(h.call(|c, env| c.handle_timeout(env)), Expired::Nothing);
    assert!(!h.call(|c, env| c.on_drained(env)));
    h.eof();
    h.ws_feed(&frame);
    assert!(!h.conn.wants_read(0, &h.cfg));
    assert!(
        h.out.is_empty(),
        "queued after finished: {:?}",
        h.out.to_vec()
    );
}

#[test]
fn nothing_is_queued_after_finished() {
    // Idle HTTP.
    let mut h = H::new();
    h.expire();
    assert_eq!(h.conn.finished(), Some(CloseReason::IdleTimeout));
    assert_silent(&mut h);

    // An HTTP request owed an answer when the socket failed.
    let mut h = H::new();
    h.request(GET);
    h.conn
        .abort(CloseReason::ReadError(std::io::ErrorKind::ConnectionReset));
    assert_silent(&mut h);

    // A parked poll whose peer hung up.
    let mut h = H::new();
    h.request(GET);
    h.call(|c, env| c.park(Duration::from_secs(30), env));
    h.eof();
    assert_silent(&mut h);

    // An SSE stream that failed to write.
    let mut h = H::new();
    h.request(GET);
    h.call(|c, env| c.start_sse(EVENT_STREAM, b"", env));
    h.take();
    h.conn
        .abort(CloseReason::WriteError(std::io::ErrorKind::BrokenPipe));
    assert_silent(&mut h);

    // A WebSocket whose peer hung up.
    let mut h = ws_conn(settings());
    h.eof();
    assert_silent(&mut h);

    // A WebSocket whose close timed out.
    let mut h = ws_conn(settings());
    h.call(|c, env| c.close_ws(env, 1000, ""));
    h.take();
    h.expire();
    assert_eq!(h.conn.finished(), Some(CloseReason::CloseTimeout));
    assert_silent(&mut h);
}

#[test]
fn a_zero_heartbeat_interval_means_no_heartbeat() {
    let cfg = ConnSettings {
        sse_heartbeat: Duration::ZERO,
        ..ConnSettings::default()
    };
    let mut h = H::with(cfg);
    h.request(b"GET /sse HTTP/1.1\r\nHost: a\r\n\r\n");
    assert!(h.call(|c, env| c.start_sse(&[("Content-Type", "text/event-stream")], b"", env)));
    assert_eq!(
        h.conn.poll_timeout(),
        None,
        "no deadline due at once, again and again"
    );
}

#[test]
fn parked_polls_on_one_cursor_share_one_whole_answer() {
    let body: Rc<[u8]> = Rc::from(&b"{\"events\":[],\"next\":4,\"gap\":false}"[..]);
    let mut page = crate::proto::fanout::SharedPage {
        body: Rc::clone(&body),
        events: 0,
        whole: None,
    };
    let want: &[u8] = b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\n\
        Cache-Control: no-store\r\nContent-Length: 34\r\n\r\n{\"events\":[],\"next\":4,\"gap\":false}";
    let mut made: Option<Rc<[u8]>> = None;
    for _ in 0..2 {
        let mut h = H::new();
        h.request(b"GET /poll HTTP/1.1\r\nHost: a\r\n\r\n");
        assert!(h.call(|c, env| c.park(Duration::from_secs(30), env)));
        assert!(h.call(|c, env| c.answer_poll_shared(&mut page, env)));
        assert_eq!(h.conn.kind(), ConnKind::Http);
        same(h.take(), want);
        let whole = page.whole.clone().expect("the whole answer was made");
        let first = made.get_or_insert_with(|| Rc::clone(&whole));
        assert!(Rc::ptr_eq(first, &whole), "made once, then shared");
    }
    // HTTP/1.0 and HEAD get their own head, and the shared body.
    let mut h = H::new();
    h.request(b"HEAD /poll HTTP/1.1\r\nHost: a\r\n\r\n");
    assert!(h.call(|c, env| c.answer_poll_shared(&mut page, env)));
    same(
        h.take(),
        b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nCache-Control: no-store\r\n\
          Content-Length: 34\r\n\r\n",
    );
    let mut h = H::new();
    h.request(b"GET /poll HTTP/1.0\r\n\r\n");
    assert!(h.call(|c, env| c.answer_poll_shared(&mut page, env)));
    assert!(h
        .out
        .to_vec()
        .ends_with(b"Connection: close\r\n\r\n{\"events\":[],\"next\":4,\"gap\":false}"));
}

#[test]
fn a_poll_with_headers_of_its_own_gets_its_own_head_once() {
    let body: Rc<[u8]> = Rc::from(&b"{\"events\":[],\"next\":4,\"gap\":false}"[..]);
    let mut page = crate::proto::fanout::SharedPage {
        body: Rc::clone(&body),
        events: 0,
        whole: None,
    };
    let cors = [(
        "Access-Control-Allow-Origin".to_owned(),
        "http://a.example".to_owned(),
    )];
    let mut h = H::new();
    h.request(b"GET /poll HTTP/1.1\r\nHost: a\r\n\r\n");
    assert!(h.call(|c, _| c.set_poll_headers(&cors)));
    assert!(h.call(|c, env| c.park(Duration::from_secs(30), env)));
    assert!(h.call(|c, env| c.answer_poll_shared(&mut page, env)));
    same(
        h.take(),
        b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nCache-Control: no-store\r\n\
          Access-Control-Allow-Origin: http://a.example\r\nContent-Length: 34\r\n\r\n\
          {\"events\":[],\"next\":4,\"gap\":false}",
    );
    assert!(page.whole.is_none(), "not the shared whole answer");
    // The next request on the connection has the shared head again.
    h.request(b"GET /poll HTTP/1.1\r\nHost: a\r\n\r\n");
    assert!(h.call(|c, env| c.answer_poll_empty(4, env)));
    assert!(!String::from_utf8(h.take())
        .unwrap()
        .contains("Access-Control"));
    // Nothing owed: nothing set.
    assert!(!h.call(|c, _| c.set_poll_headers(&cors)));
}

#[test]
fn a_half_closed_client_still_gets_its_later_answer() {
    // RFC 9112 §9.6: the client sent its request and shut its write side.
    let mut h = H::new();
    h.request(GET);
    h.eof();
    assert_eq!(h.conn.finished(), None, "the answer is still owed");
    assert!(h.conn.owes_answer());
    assert!(h.respond(&Response::new(204)));
    same(
        h.take(),
        b"HTTP/1.1 204 No Content\r\nConnection: close\r\n\r\n",
    );
    assert!(
        !h.call(|c, env| c.on_drained(env)),
        "no half-close: both sides are done"
    );
    assert_eq!(h.conn.finished(), Some(CloseReason::Finished));
}

#[test]
fn a_forgotten_later_answer_to_a_half_closed_client_times_out() {
    let mut h = H::new();
    h.request(GET);
    h.eof();
    assert!(h.conn.poll_timeout().is_some(), "the idle timeout runs");
    h.expire();
    assert_eq!(h.conn.finished(), Some(CloseReason::IdleTimeout));
}

/// [`WS_HANDSHAKE`] offering permessage-deflate as Chromium does.
const WS_DEFLATE_HANDSHAKE: &[u8] = b"GET /ws HTTP/1.1\r\nHost: a\r\nUpgrade: websocket\r\n\
    Connection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\
    Sec-WebSocket-Version: 13\r\n\
    Sec-WebSocket-Extensions: permessage-deflate; client_max_window_bits\r\n\r\n";

#[test]
fn websocket_deflate_is_negotiated_without_context_takeover_and_used() {
    let mut h = H::new();
    let req = h.request(WS_DEFLATE_HANDSHAKE);
    assert!(h.call(|c, env| c.accept_ws(&req, None, &[], WsLimits::default(), env)));
    same(
        h.take(),
        b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\n\
          Connection: Upgrade\r\nSec-WebSocket-Accept: s3pPLMBiTxaQ9kYGzzhZRbK+xOo=\r\n\
          Sec-WebSocket-Extensions: permessage-deflate; server_no_context_takeover; \
          client_no_context_takeover\r\n\r\n",
    );
    // Broadcasts share the loop's compressed frame for 15-bit windows.
    assert_eq!(h.conn.transport(), Transport::WsDeflate(15));
    // RFC 7692 §7.2.3.1's "Hello", compressed, masked.
    let hello = [0xf2, 0x48, 0xcd, 0xc9, 0xc9, 0x07, 0x00];
    let mut frame = client_frame(0x1, &hello);
    frame[0] |= 0x40;
    assert_eq!(h.ws_feed(&frame), [Msg::Text("Hello".into())]);
    // A long message goes out compressed, a short one plain.
    let long = "pushwire ".repeat(20);
    assert!(h.call(|c, env| c.ws_send(OpCode::Text, long.as_bytes(), env)));
    let out = h.take();
    assert_eq!(out[0], 0xC1);
    assert!(out.len() < long.len() / 3);
    assert!(h.call(|c, env| c.ws_send(OpCode::Text, b"hey", env)));
    same(h.take(), server_frame(0x1, b"hey"));
}

#[test]
fn websocket_deflate_can_be_refused_by_config() {
    let mut cfg = settings();
    cfg.ws_deflate = false;
    let mut h = H::with(cfg);
    let req = h.request(WS_DEFLATE_HANDSHAKE);
    assert!(h.call(|c, env| c.accept_ws(&req, None, &[], WsLimits::default(), env)));
    same(h.take(), ACCEPT_101);
    assert_eq!(h.conn.transport(), Transport::WebSocket);
    // RSV1 is then an error.
    let mut frame = client_frame(0x1, b"x");
    frame[0] |= 0x40;
    assert!(h.ws_feed(&frame).is_empty());
    assert_eq!(h.conn.ws_code(), Some(1002));
}

#[path = "tests/dial.rs"]
mod dial;

#[path = "tests/keepalive.rs"]
mod keepalive;
