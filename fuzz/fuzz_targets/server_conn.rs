//! A whole `ServerConn` driven the way the driver drives it, by a small op-code program:
//! bytes from the peer in arbitrary pieces, time in arbitrary steps, partial writes, EOF, a
//! fake application answering requests by path (keep-alive, `Later`, upgrades, SSE, long
//! polls), sends, closes, broadcasts and a server stop.
//!
//! Input: byte 0 picks the settings (bits 0-1: default, tiny limits, tiny with
//! `DropMessages`, tiny with 1 ms timeouts; bits 2-7 scale the tiny limits). Then ops of
//! two bytes, `op param`, some followed by data:
//!
//! | op % 16 | what                                                                     |
//! |---------|--------------------------------------------------------------------------|
//! | 0       | the peer sends the next `param + 1` input bytes                          |
//! | 1       | the peer sends canned request `param % REQUESTS.len()`                   |
//! | 2       | the peer sends a masked frame (`param`: kind, fin; next byte: length)    |
//! | 3       | time passes: `param` ms                                                  |
//! | 4       | time passes: `2^(param % 40)` ms (up to years)                           |
//! | 5       | time jumps to the next deadline (`param` odd: 1 ns before it)            |
//! | 6       | the socket takes `(param + 1) * (1 or 37)` queued bytes                  |
//! | 7       | the socket takes every queued byte                                       |
//! | 8       | the peer ends its side (EOF after what it sent)                          |
//! | 9       | the app answers the owed (`Later`) request: `param` picks how            |
//! | 10      | the app calls `close_ws(code)`, `param` picks the code                   |
//! | 11      | the app calls `close()`                                                  |
//! | 12      | the app sends a message (WebSocket text/binary/ping, SSE bytes)          |
//! | 13      | a broadcast (one shared `Rc<[u8]>` per transport) is delivered           |
//! | 14      | the server stops                                                         |
//! | 15      | an I/O error aborts the connection                                       |
//!
//! After every op the due timers run as the driver's `run_timers` does, and buffered input
//! is processed as the driver's ready list does. Asserted: no panic; the queue never grows
//! once `finished()` is `Some`, nor becomes non-empty after the half-close; a due deadline
//! is acted on (no timer that stays due); a closing connection always has a deadline; on
//! the wire (bytes written plus bytes left queued), after an accepted upgrade the 101 is
//! there and is followed by well-formed unmasked frames only, at most one Close and no frame
//! after it; an SSE stream's chunks are well formed and nothing follows its last chunk.
#![no_main]

use std::io::{self, IoSlice};
use std::rc::Rc;
use std::time::{Duration, Instant};

use libfuzzer_sys::fuzz_target;
use pushwire::proto::fanout::{self, Transport};
use pushwire::proto::http1::{Limits, Request, Response};
use pushwire::proto::out::{OutQueue, MAX_SLICES};
use pushwire::proto::server::{
    CloseReason, ConnKind, ConnSettings, Delivery, Env, Expired, Message, ServerConn, SlowPolicy,
};
use pushwire::proto::topic::TopicEvent;
use pushwire::proto::ws::{self, OpCode, WsLimits};

/// The driver's input buffer cap (`proto::inbuf::READ_MAX`).
const READ_MAX: usize = 128 * 1024;
const MAX_OPS: usize = 400;
const MAX_FED: usize = 64 * 1024;
/// Calls of `handle_timeout` at one instant before a deadline that stays due is a livelock.
const TIMER_ROUNDS: usize = 16;

const KEY: &str = "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n";

const REQUESTS: &[&str] = &[
    "GET / HTTP/1.1\r\nHost: a\r\n\r\n",
    "GET /ws HTTP/1.1\r\nHost: a\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n#KEY\r\n",
    "GET /wsp HTTP/1.1\r\nHost: a\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Protocol: chat\r\n#KEY\r\n",
    "GET /sse HTTP/1.1\r\nHost: a\r\nAccept: text/event-stream\r\n\r\n",
    "GET /sse HTTP/1.0\r\n\r\n",
    "GET /poll HTTP/1.1\r\nHost: a\r\n\r\n",
    "GET /later HTTP/1.1\r\nHost: a\r\n\r\n",
    "GET /close HTTP/1.1\r\nHost: a\r\n\r\n",
    "GET /big HTTP/1.1\r\nHost: a\r\n\r\n",
    "HEAD /sse HTTP/1.1\r\nHost: a\r\n\r\n",
    "POST /later HTTP/1.1\r\nHost: a\r\nContent-Length: 5\r\nExpect: 100-continue\r\n\r\n",
    "POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\n\r\n",
    "GET / HTTP/1.0\r\n\r\n",
    "GET /shared HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n",
    "GET /ws HTTP/1.0\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n#KEY\r\n",
    "GET /ws HTTP/1.1\r\nHost: a\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Version: 8\r\n\r\n",
    "GET /wsq HTTP/1.1\r\nHost: a\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n#KEY\r\n",
    "\r\n",
    "GET /slow HTTP/1.1\r\nHost: a\r\nX-Filler: ",
    "GET /later HTTP/1.0\r\nConnection: keep-alive\r\n\r\n",
    "GET /ws HTTP/1.1\r\nHost: a\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n#KEY\r\nGET / HTTP/1.1\r\n\r\n",
];

const CLOSE_CODES: &[u16] = &[1000, 1001, 1008, 1011, 3000, 4999, 999, 1005, 1006, 1015];

/// The input program.
struct Input<'a> {
    data: &'a [u8],
}

impl<'a> Input<'a> {
    fn byte(&mut self) -> Option<u8> {
        let (&b, rest) = self.data.split_first()?;
        self.data = rest;
        Some(b)
    }
    fn bytes(&mut self, n: usize) -> &'a [u8] {
        let (a, b) = self.data.split_at(n.min(self.data.len()));
        self.data = b;
        a
    }
}

/// The driver's facts about the connection, and the fake application's.
struct Harness {
    cfg: ConnSettings,
    ws_limits: WsLimits,
    park_timeout: Duration,
    read_limit: usize,
    base: Instant,
    offset: Duration,
    stopping: bool,
    conn: ServerConn,
    out: OutQueue,
    codec: ws::deflate::Codec,
    /// Bytes the peer sent that the driver has not read yet.
    inbox: Vec<u8>,
    /// The driver's input buffer.
    rbuf: Vec<u8>,
    peer_eof: bool,
    eof: bool,
    read_paused: bool,
    fed: usize,
    /// Bytes written to the socket.
    wire: Vec<u8>,
    /// The request the app answered `Later`.
    later: Option<Request>,
    upgraded: bool,
    sse_started: bool,
    /// A HEAD request for the stream was answered (its head looks like the stream's).
    sse_head_answered: bool,
    half_closed: bool,
    /// Queue length when `finished()` was first seen (then the lowest since).
    fin_len: Option<usize>,
    shared_ws: Rc<[u8]>,
    shared_sse: [Rc<[u8]>; 2],
    shared_page: Rc<[u8]>,
}

macro_rules! env {
    ($h:expr) => {
        &mut Env {
            now: $h.base + $h.offset,
            cfg: &$h.cfg,
            stopping: $h.stopping,
            date: Some("Thu, 01 Jan 2026 00:00:00 GMT"),
            out: &mut $h.out,
            codec: &mut $h.codec,
        }
    };
}

impl Harness {
    fn new(sel: u8) -> Harness {
        let scale = usize::from(sel >> 2);
        let (cfg, ws_limits, park_timeout) = match sel & 3 {
            0 => (
                ConnSettings::default(),
                WsLimits::default(),
                Duration::from_secs(30),
            ),
            v => {
                let ms = |n: u64| Duration::from_millis(if v == 3 { 1 } else { n });
                let cfg = ConnSettings {
                    limits: Limits {
                        max_head_bytes: 96 + 16 * scale,
                        max_headers: 4 + scale % 8,
                        max_body_bytes: 8 + scale,
                    },
                    header_timeout: ms(50),
                    idle_timeout: ms(100),
                    high_water: 16 + 8 * scale,
                    slow_policy: if v == 2 {
                        SlowPolicy::DropMessages
                    } else {
                        SlowPolicy::Disconnect
                    },
                    ws_close_timeout: ms(30),
                    sse_heartbeat: ms(20),
                    linger: ms(40),
                    // permessage-deflate when the handshake offers it, with context
                    // takeover in one variant.
                    ws_deflate: true,
                    ws_deflate_takeover: v == 2,
                    // Keepalive Pings while idle; no Pong within the timeout closes.
                    ws_ping_interval: Some(ms(60)),
                    ws_ping_timeout: ms(30),
                };
                let lim = WsLimits {
                    max_frame_bytes: 8 + scale,
                    max_message_bytes: 16 + 2 * scale,
                };
                (cfg, lim, ms(25))
            }
        };
        // The driver's read limit; with tiny limits a smaller buffer, so that a full input
        // buffer (`input_full`) is reachable within the bounded input.
        let read_limit = if sel & 3 == 0 {
            (cfg.limits.max_head_bytes + 4096).max(READ_MAX)
        } else {
            cfg.limits.max_head_bytes + 32 + scale
        };
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
        let ev = |chunked| {
            fanout::sse_event_bytes(
                &TopicEvent {
                    id: 7,
                    event: None,
                    data: "shared event".into(),
                    json: false,
        published_ms: 0,
                },
                chunked,
            )
        };
        Harness {
            cfg,
            ws_limits,
            park_timeout,
            read_limit,
            base,
            offset: Duration::ZERO,
            stopping: false,
            conn,
            out,
            codec,
            inbox: Vec::new(),
            rbuf: Vec::new(),
            peer_eof: false,
            eof: false,
            read_paused: false,
            fed: 0,
            wire: Vec::new(),
            later: None,
            upgraded: false,
            sse_started: false,
            sse_head_answered: false,
            half_closed: false,
            fin_len: None,
            shared_ws: fanout::text_message_frame("shared broadcast"),
            shared_sse: [ev(false), ev(true)],
            shared_page: fanout::empty_page(3),
        }
    }

    fn now(&self) -> Instant {
        self.base + self.offset
    }

    fn finished(&self) -> bool {
        self.conn.finished().is_some()
    }

    /// The peer sends `bytes`; the driver reads what it can.
    fn peer_sends(&mut self, bytes: &[u8]) {
        let n = bytes.len().min(MAX_FED - self.fed);
        self.fed += n;
        if !self.peer_eof {
            self.inbox.extend_from_slice(&bytes[..n]);
        }
        self.read_conn();
    }

    /// The driver's `read_conn`: read until the socket is empty or input must pause.
    fn read_conn(&mut self) {
        if self.finished() {
            return;
        }
        for _ in 0..64 {
            if self.eof || self.finished() {
                break;
            }
            if self.read_paused || !self.conn.wants_read(self.out.len(), &self.cfg) {
                self.read_paused = true;
                break;
            }
            let space = self.read_limit - self.rbuf.len().min(self.read_limit);
            if space == 0 {
                // The read found the buffer full (`Ok(None)`).
                self.process();
                if self.rbuf.len() >= self.read_limit && !self.finished() {
                    if !self.conn.input_full(env!(self)) {
                        self.read_paused = true;
                    }
                    break;
                }
                continue;
            }
            if self.inbox.is_empty() {
                if self.peer_eof {
                    self.eof = true;
                }
                break; // EOF, or WouldBlock
            }
            let n = space.min(self.inbox.len());
            self.rbuf.extend(self.inbox.drain(..n));
            self.process();
        }
        if self.eof && !self.finished() {
            let unread = self.rbuf.len();
            self.conn.on_eof(unread, env!(self));
        }
    }

    /// The driver's `process`: hand buffered input to the core, calling the app.
    fn process(&mut self) {
        for _ in 0..64 {
            if self.rbuf.is_empty() {
                return;
            }
            if self.conn.kind() == ConnKind::WebSocket {
                self.process_ws();
                return;
            }
            let (n, req) = self.conn.read_http(&self.rbuf, env!(self));
            assert!(
                n <= self.rbuf.len(),
                "read_http consumed more than it was given"
            );
            self.rbuf.drain(..n);
            match req {
                Some(req) => self.dispatch(req),
                None => return,
            }
        }
    }

    /// The driver's `process_ws`, with the receiving half lent out while the app acts.
    fn process_ws(&mut self) {
        let Some(mut recv) = self.conn.take_receiver() else {
            return;
        };
        assert!(
            self.conn.take_receiver().is_none(),
            "the receiver was lent twice"
        );
        let mut rbuf = std::mem::take(&mut self.rbuf);
        for _ in 0..256 {
            let total = rbuf.len();
            let (n, msg) = self.conn.ws_read(&mut recv, &mut rbuf, env!(self));
            assert!(n <= total, "ws_read consumed more than it was given");
            if let Some(msg) = msg {
                let (text, first) = match msg {
                    Message::Text(t) => (true, t.as_bytes().first().copied()),
                    Message::Binary(b) => (false, b.first().copied()),
                };
                let payload: Vec<u8> = match msg {
                    Message::Text(t) => t.as_bytes().to_vec(),
                    Message::Binary(b) => b.to_vec(),
                };
                self.on_ws_message(text, first, &payload);
            }
            rbuf.drain(..n);
            if n == 0 || rbuf.is_empty() || self.finished() {
                break;
            }
        }
        if self.conn.ws_input_done() {
            rbuf.clear();
        }
        self.rbuf = rbuf;
        self.conn.put_receiver(recv);
    }

    /// The fake application's `on_ws_message`, running while the receiver is lent.
    fn on_ws_message(&mut self, text: bool, first: Option<u8>, payload: &[u8]) {
        match first {
            Some(b'c') => {
                self.conn.close_ws(env!(self), 1000, "bye");
            }
            Some(b'x') => self.conn.close(env!(self)),
            Some(b'b') => self.broadcast(),
            Some(b'p') => {
                self.conn.ws_send(OpCode::Ping, b"ping", env!(self));
            }
            Some(b'B') => {
                self.conn.ws_send(OpCode::Binary, &[b'B'; 600], env!(self));
            }
            Some(b'n') => {}
            _ => {
                let op = if text { OpCode::Text } else { OpCode::Binary };
                self.conn.ws_send(op, payload, env!(self));
            }
        }
    }

    /// The fake application's `on_request`, answering by path, and the driver's dispatch.
    fn dispatch(&mut self, req: Request) {
        let path = req.path().to_owned();
        if path.starts_with("/ws") {
            self.upgrade(&req, &path);
        } else if path.starts_with("/sse") {
            self.start_sse();
        } else if path.starts_with("/poll") {
            self.conn.park(self.park_timeout, env!(self));
        } else if path.starts_with("/later") {
            self.later = Some(req);
        } else if path.starts_with("/close") {
            let resp = Response::text(200, "bye\n").header("Connection", "close");
            self.conn.respond(&resp, env!(self));
        } else if path.starts_with("/big") {
            let resp = Response::new(200).body(vec![b'x'; 3000]);
            self.conn.respond(&resp, env!(self));
        } else if path.starts_with("/shared") {
            let page = Rc::clone(&self.shared_page);
            self.conn
                .respond_shared(fanout::poll_head(), &page, env!(self));
        } else {
            self.conn.respond(&Response::text(200, "ok\n"), env!(self));
        }
    }

    fn upgrade(&mut self, req: &Request, path: &str) {
        let protocol = match path {
            "/wsp" | "/wsq" => Some("chat"),
            _ => None,
        };
        let limits = self.ws_limits;
        // Extra response fields on one path (those the handshake owns are dropped).
        let extra = match path {
            "/wsq" => vec![
                ("Set-Cookie".to_owned(), "a=1".to_owned()),
                ("Upgrade".to_owned(), "not-this".to_owned()),
            ],
            _ => Vec::new(),
        };
        if self.conn.accept_ws(req, protocol, &extra, limits, env!(self)) {
            self.upgraded = true;
            // on_ws_open: a greeting.
            self.conn.ws_send(OpCode::Text, b"hello", env!(self));
        }
    }

    fn start_sse(&mut self) {
        let mut first = Vec::new();
        fanout::sse_first(Some(1500), None, &mut first);
        let started = self.conn.start_sse(fanout::SSE_HEADERS, &first, env!(self));
        if started {
            self.sse_started = true;
            self.rbuf.clear();
        } else if self.conn.kind() != ConnKind::Sse {
            // A HEAD request got a plain 200 with the stream's header fields.
            self.sse_head_answered = true;
        }
    }

    /// The app answers the request it deferred.
    fn answer_later(&mut self, param: u8) {
        let Some(req) = self.later.take() else {
            return;
        };
        match param % 8 {
            0 | 1 => {
                // Ctx::respond answers only a connection that is (still) plain HTTP.
                if self.conn.kind() == ConnKind::Http {
                    self.conn
                        .respond(&Response::text(200, "later\n"), env!(self));
                }
            }
            2 => {
                let resp = Response::text(503, "no\n").header("Connection", "close");
                self.conn.respond(&resp, env!(self));
            }
            3 => self.upgrade(&req, "/ws"),
            4 => self.start_sse(),
            5 => {
                self.conn.park(self.park_timeout, env!(self));
            }
            6 => {
                let page = Rc::clone(&self.shared_page);
                self.conn
                    .respond_shared(fanout::poll_head(), &page, env!(self));
            }
            _ => self.later = Some(req), // still later
        }
    }

    /// A published event reaching this connection, as the driver's publish does.
    fn broadcast(&mut self) {
        let bytes = match self.conn.transport() {
            // A plain frame is valid to a deflate subscriber too (RSV1 is per message).
            Transport::WebSocket | Transport::WsDeflate(_) => Rc::clone(&self.shared_ws),
            Transport::SseChunked => Rc::clone(&self.shared_sse[1]),
            Transport::SsePlain => Rc::clone(&self.shared_sse[0]),
            Transport::None => {
                if self.conn.kind() == ConnKind::Parked {
                    self.answer_parked();
                }
                return;
            }
        };
        let before = self.out.len();
        let d = self.conn.deliver(&bytes, env!(self));
        if d != Delivery::Queued {
            // Dropped: nothing queued. Slow: maybe less (unstarted output dropped) plus the
            // close frame or the last chunk.
            assert!(d == Delivery::Slow || self.out.len() == before);
        }
    }

    /// The driver's `answer_parked` (empty page).
    fn answer_parked(&mut self) {
        let page = Rc::clone(&self.shared_page);
        self.conn
            .respond_shared(fanout::poll_head(), &page, env!(self));
    }

    /// The socket takes up to `n` queued bytes.
    fn write(&mut self, mut n: usize) {
        if self.finished() {
            return; // the driver dropped the socket
        }
        while n > 0 && !self.out.is_empty() {
            let mut slices = [IoSlice::new(&[]); MAX_SLICES];
            let k = self.out.io_slices(&mut slices);
            let mut took = 0;
            for s in &slices[..k] {
                let m = s.len().min(n - took);
                self.wire.extend_from_slice(&s[..m]);
                took += m;
                if took == n {
                    break;
                }
            }
            assert!(took > 0, "a non-empty queue gave no bytes to write");
            self.out.advance(took);
            n -= took;
        }
        if !self.out.is_empty() {
            return;
        }
        // The driver's flush, once the queue drained.
        let was_paused = self.read_paused;
        self.read_paused = false;
        let shut = self.conn.on_drained(env!(self));
        if shut {
            assert!(
                !self.half_closed,
                "on_drained asked for a second half-close"
            );
            self.half_closed = true;
        }
        if was_paused || shut {
            self.process();
            self.read_conn();
        }
    }

    /// The driver's `run_timers` for this connection's one timer.
    fn run_timers(&mut self) {
        for _ in 0..TIMER_ROUNDS {
            if self.finished() {
                return;
            }
            match self.conn.poll_timeout() {
                Some(at) if at <= self.now() => {
                    if self.conn.handle_timeout(env!(self)) == Expired::Park {
                        self.answer_parked();
                    }
                    self.settle();
                }
                _ => return,
            }
        }
        if !self.finished() {
            let at = self.conn.poll_timeout();
            assert!(
                at.is_none_or(|at| at > self.now()),
                "a deadline stays due after {TIMER_ROUNDS} handle_timeout calls: livelock"
            );
        }
    }

    /// The driver's `settle` (input waiting behind an answer resumes) and ready list.
    fn settle(&mut self) {
        for _ in 0..8 {
            let ready = !self.finished()
                && self.conn.kind() == ConnKind::Http
                && !self.rbuf.is_empty()
                && !self.conn.owes_answer();
            if !ready {
                return;
            }
            let before = self.rbuf.len();
            self.process();
            self.read_conn();
            if self.rbuf.len() == before {
                return;
            }
        }
    }

    /// Invariants after every op.
    fn check(&mut self) {
        if self.finished() {
            let len = self.out.len();
            if let Some(was) = self.fin_len {
                assert!(len <= was, "output queued after finished(): {was} -> {len}");
            }
            self.fin_len = Some(len);
            return;
        }
        if self.half_closed {
            assert!(self.out.is_empty(), "output queued after the half-close");
        }
        let timer = self.conn.poll_timeout();
        if self.conn.is_closing() {
            assert!(timer.is_some(), "a closing connection without a deadline");
        }
        match self.conn.kind() {
            ConnKind::Http if !self.conn.owes_answer() => {
                assert!(
                    timer.is_some(),
                    "an idle HTTP connection without a deadline"
                )
            }
            ConnKind::Parked | ConnKind::Sse => {
                assert!(
                    timer.is_some(),
                    "a parked poll / SSE stream without a deadline"
                )
            }
            _ => {}
        }
        if self.later.is_some() {
            // The app still owes it, unless the connection ended or failed meanwhile.
            assert!(
                self.conn.owes_answer()
                    || !self.conn.is_open()
                    || self.conn.kind() != ConnKind::Http
            );
        }
    }

    fn step(&mut self, op: u8, param: u8, input: &mut Input<'_>) {
        if debug() {
            eprintln!(
                "op {} param {param} at +{:?}: {:?}, queued {}, timer {:?}",
                op % 16,
                self.offset,
                self.conn.kind(),
                self.out.len(),
                self.conn.poll_timeout().map(|t| t - self.base)
            );
        }
        match op % 16 {
            0 => {
                let bytes = input.bytes(usize::from(param) + 1);
                self.peer_sends(bytes);
            }
            1 => {
                let t = REQUESTS[usize::from(param) % REQUESTS.len()].replace("#KEY", KEY);
                self.peer_sends(t.as_bytes());
            }
            2 => {
                let frame = client_frame(param, input);
                self.peer_sends(&frame);
            }
            3 => self.offset += Duration::from_millis(u64::from(param)),
            4 => {
                let ms = 1u64 << (param % 40);
                if self.offset < Duration::from_secs(1000 * 365 * 86_400) {
                    self.offset += Duration::from_millis(ms);
                }
            }
            5 => {
                if let Some(at) = self.conn.poll_timeout() {
                    let target = if param & 1 == 1 {
                        at.checked_sub(Duration::from_nanos(1)).unwrap_or(at)
                    } else {
                        at
                    };
                    if target > self.now() {
                        self.offset = target - self.base;
                    }
                    if param & 1 == 1 && target < at && !self.finished() {
                        // Just before the deadline: a (spurious) call does nothing.
                        let len = self.out.len();
                        assert_eq!(self.conn.handle_timeout(env!(self)), Expired::Nothing);
                        assert_eq!(
                            self.conn.poll_timeout(),
                            Some(at),
                            "an early call moved the deadline"
                        );
                        assert_eq!(self.out.len(), len, "an early call queued output");
                    }
                }
            }
            6 => {
                let k = (usize::from(param & 0x7F) + 1) * if param & 0x80 != 0 { 37 } else { 1 };
                self.write(k);
            }
            7 => self.write(usize::MAX),
            8 => {
                self.peer_eof = true;
                self.read_conn();
            }
            9 => self.answer_later(param),
            10 => {
                let code = CLOSE_CODES[usize::from(param) % CLOSE_CODES.len()];
                let ok = self.conn.close_ws(env!(self), code, "app");
                if ok {
                    assert!(ws::close_code::is_valid(code));
                }
            }
            11 => self.conn.close(env!(self)),
            12 => {
                let len = usize::from(param >> 2) * 7;
                let payload = vec![b'm'; len];
                match self.conn.kind() {
                    ConnKind::WebSocket => {
                        let op = [OpCode::Text, OpCode::Binary, OpCode::Ping, OpCode::Pong]
                            [usize::from(param & 3)];
                        self.conn.ws_send(op, &payload, env!(self));
                    }
                    ConnKind::Sse => {
                        let mut ev = Vec::new();
                        pushwire::proto::sse::write_comment(&mut ev, "app");
                        self.conn.sse_send(&ev, env!(self));
                    }
                    _ => {}
                }
            }
            13 => {
                for _ in 0..=(param % 4) {
                    self.broadcast();
                }
            }
            14 => {
                self.stopping = true;
                let unread = self.rbuf.len();
                if self.conn.stop(unread, env!(self)) {
                    self.answer_parked();
                }
            }
            _ => {
                let why = match param % 3 {
                    0 => CloseReason::ReadError(io::ErrorKind::ConnectionReset),
                    1 => CloseReason::WriteError(io::ErrorKind::BrokenPipe),
                    _ => CloseReason::ServerStopped,
                };
                if !self.finished() {
                    self.conn.abort(why);
                }
            }
        }
        self.run_timers();
        self.settle();
        self.check();
    }

    /// Checks what went on the wire (written, then what is left queued).
    fn check_wire(&mut self) {
        let mut wire = std::mem::take(&mut self.wire);
        wire.extend_from_slice(&self.out.to_vec());
        if debug() {
            eprintln!(
                "kind {:?}, finished {:?}, ws code {:?}, upgraded {}, sse {}, half-closed {}, \
                 wire:\n{}",
                self.conn.kind(),
                self.conn.finished(),
                self.conn.ws_code(),
                self.upgraded,
                self.sse_started,
                self.half_closed,
                wire.escape_ascii()
            );
        }
        if self.upgraded {
            check_ws_wire(&wire);
        } else {
            assert!(
                find(&wire, b"HTTP/1.1 101").is_none(),
                "a 101 without an upgrade"
            );
        }
        if self.sse_started && !self.sse_head_answered {
            check_sse_wire(&wire);
        }
    }
}

/// `SERVER_CONN_DEBUG=1` prints each op and the wire (to read a reproducer).
fn debug() -> bool {
    static ON: std::sync::OnceLock<bool> = std::sync::OnceLock::new();
    *ON.get_or_init(|| std::env::var_os("SERVER_CONN_DEBUG").is_some())
}

fn find(hay: &[u8], needle: &[u8]) -> Option<usize> {
    hay.windows(needle.len()).position(|w| w == needle)
}

fn rfind(hay: &[u8], needle: &[u8]) -> Option<usize> {
    hay.windows(needle.len()).rposition(|w| w == needle)
}

/// After the one 101: frames only, server frames unmasked, complete, at most one Close and
/// nothing after it.
fn check_ws_wire(wire: &[u8]) {
    let at = find(wire, b"HTTP/1.1 101").expect("the upgrade was accepted but its 101 is gone");
    let head_end = find(&wire[at..], b"\r\n\r\n").expect("the 101 head is cut") + at + 4;
    let mut rest = &wire[head_end..];
    let mut closed = false;
    while !rest.is_empty() {
        let (h, n) = match ws::parse_header(rest) {
            Ok(Some(h)) => h,
            Ok(None) => panic!(
                "a cut frame header after the 101: {:?}",
                &rest[..rest.len().min(16)]
            ),
            Err(e) => panic!(
                "a bad frame after the 101 ({}): {:?}",
                e.reason,
                &rest[..rest.len().min(16)]
            ),
        };
        assert!(h.mask.is_none(), "a masked server frame");
        assert_eq!(h.rsv, 0);
        let len = usize::try_from(h.payload_len).unwrap();
        assert!(n + len <= rest.len(), "a cut frame payload after the 101");
        assert!(!closed, "a {:?} frame after the Close frame", h.opcode);
        if h.opcode == OpCode::Close {
            closed = true;
        }
        rest = &rest[n + len..];
    }
}

/// After the stream's head: well-formed chunks (HTTP/1.1), nothing after the last one.
fn check_sse_wire(wire: &[u8]) {
    let Some(at) = rfind(wire, b"Content-Type: text/event-stream\r\n") else {
        panic!("the SSE stream was started but its head is gone");
    };
    let head_end = find(&wire[at..], b"\r\n\r\n").expect("the SSE head is cut") + at + 4;
    let head = &wire[..head_end];
    let line = rfind(head, b"HTTP/1.").expect("an SSE head without a status line");
    if find(&head[line..], b"Transfer-Encoding: chunked\r\n").is_none() {
        return; // HTTP/1.0: delimited by the close
    }
    let mut rest = &wire[head_end..];
    while !rest.is_empty() {
        let eol = find(rest, b"\r\n").expect("a cut chunk-size line");
        let size = std::str::from_utf8(&rest[..eol])
            .ok()
            .and_then(|s| usize::from_str_radix(s, 16).ok())
            .unwrap_or_else(|| panic!("a bad chunk-size line: {:?}", &rest[..eol.min(16)]));
        rest = &rest[eol + 2..];
        if size == 0 {
            assert_eq!(rest, b"\r\n", "bytes after the SSE stream's last chunk");
            return;
        }
        assert!(rest.len() >= size + 2, "a cut chunk");
        assert_eq!(&rest[size..size + 2], b"\r\n", "a chunk without its CRLF");
        rest = &rest[size + 2..];
    }
}

/// A client frame: `param` bits 0-2 the kind, bit 3 unmasked (when bit 4 too), bits 5-7
/// the payload source; the next byte the length (control frames: at most 125 unless
/// bit 7 of it), then the payload from the input when bit 5 of `param` is set.
fn client_frame(param: u8, input: &mut Input<'_>) -> Vec<u8> {
    let (fin, opcode) = match param & 7 {
        0 => (true, 0x1),
        1 => (true, 0x2),
        2 => (true, 0x9),
        3 => (true, 0xA),
        4 => (true, 0x8),
        5 => (true, 0x0),
        6 => (false, 0x1),
        _ => (false, 0x0),
    };
    let lb = input.byte().unwrap_or(3);
    let mut len = usize::from(lb & 0x7F);
    if lb & 0x80 != 0 && opcode < 8 {
        len = len * 13 + 126; // a 16-bit length
    }
    let mut payload = if param & 0x20 != 0 {
        input.bytes(len).to_vec()
    } else {
        // A payload the fake app reacts to: its first byte picks the app's action.
        let lead = [b'c', b'x', b'b', b'p', b'B', b'n', b'e', b'e'][usize::from(param >> 5)];
        let mut p = vec![b'e'; len];
        if let Some(f) = p.first_mut() {
            *f = lead;
        }
        p
    };
    if opcode == 0x8 && payload.len() >= 2 && param & 0x20 == 0 {
        payload[..2].copy_from_slice(&1000u16.to_be_bytes());
    }
    let masked = param & 0x18 != 0x18;
    let key = [0x37, 0xfa, 0x21, param];
    let mut f = Vec::with_capacity(payload.len() + 14);
    f.push(if fin { 0x80 } else { 0 } | opcode);
    let mbit = if masked { 0x80 } else { 0 };
    if payload.len() <= 125 {
        f.push(mbit | payload.len() as u8);
    } else {
        f.push(mbit | 126);
        f.extend_from_slice(&(payload.len() as u16).to_be_bytes());
    }
    if masked {
        f.extend_from_slice(&key);
        for (i, b) in payload.iter_mut().enumerate() {
            *b ^= key[i % 4];
        }
    }
    f.extend_from_slice(&payload);
    f
}

fuzz_target!(|data: &[u8]| {
    let mut input = Input { data };
    let Some(sel) = input.byte() else {
        return;
    };
    let mut h = Harness::new(sel);
    h.check();
    for _ in 0..MAX_OPS {
        let (Some(op), Some(param)) = (input.byte(), input.byte()) else {
            break;
        };
        h.step(op, param, &mut input);
    }
    // The socket drains at the end (if the connection is still there).
    h.write(usize::MAX);
    h.run_timers();
    h.check();
    h.check_wire();
});
