//! The three subscribers that hold a connection to the server (WebSocket, SSE, long poll),
//! each a thread over `std::net` that reads with the crate's own parsers, records every
//! event it gets, and drops its connection and resumes from its cursor when told to.

use std::io::{self, Read, Write};
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering::Relaxed};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use pushwire::proto::http1::{ChunkedDecoder, Limits, ResponseReader};
use pushwire::proto::ws::client::{read_response, write_request, ClientOffer, WsUrl};
use pushwire::proto::ws::frame::{parse_header, write_frame, OpCode};

use crate::wire::{find, find_payload, number_after, timed_out, Meter, Wire};

/// One event as a subscriber got it.
#[derive(Clone, Copy, Debug)]
pub struct Got {
    pub seq: u64,
    pub sent_ns: u64,
    pub recv_ns: u64,
}

/// What a subscriber shares with the conductor: its counters, what it got, and its orders.
#[derive(Default)]
pub struct Sub {
    pub meter: Arc<Meter>,
    pub got: Mutex<Vec<Got>>,
    /// Connected and subscribed (the WebSocket's 101, the stream's head, the poll sent).
    pub ready: AtomicBool,
    /// Order: drop the connection and stay away until this is false again.
    pub down: AtomicBool,
    /// The connection is gone (the answer to `down`).
    pub is_down: AtomicBool,
    /// When it began to come back (nanoseconds since the run's start).
    pub back_ns: AtomicU64,
    pub stop: AtomicBool,
    /// The last error, for the report.
    pub error: Mutex<Option<String>>,
}

impl Sub {
    pub fn record(&self, g: Got) {
        self.got.lock().unwrap_or_else(|e| e.into_inner()).push(g);
    }
    pub fn fail(&self, what: String) {
        *self.error.lock().unwrap_or_else(|e| e.into_inner()) = Some(what);
    }
    pub fn got(&self) -> Vec<Got> {
        self.got.lock().unwrap_or_else(|e| e.into_inner()).clone()
    }
}

/// A subscriber's connection: reads what is there and hands over `(id, seq, sent_ns)` for
/// each whole event, with the time the bytes arrived.
pub trait Session: Send {
    fn pump(&mut self, on: &mut dyn FnMut(u64, u64, u64)) -> io::Result<()>;
}

type Open = fn(SocketAddr, Option<u64>, &Arc<Meter>) -> io::Result<Box<dyn Session>>;

/// The three kinds with a connection.
#[derive(Clone, Copy)]
pub enum Kind {
    Ws,
    Sse,
    Poll,
}

/// Connects a subscriber of `kind` to topic `cmp`, resuming after `cursor`.
pub fn open(
    kind: Kind,
    addr: SocketAddr,
    cursor: Option<u64>,
    m: &Arc<Meter>,
) -> io::Result<Box<dyn Session>> {
    opener(kind)(addr, cursor, m)
}

fn opener(kind: Kind) -> Open {
    match kind {
        Kind::Ws => open_ws,
        Kind::Sse => open_sse,
        Kind::Poll => open_poll,
    }
}

/// Starts a subscriber thread of `kind` on topic `cmp`; `base` is the run's clock.
pub fn spawn(kind: Kind, addr: SocketAddr, base: Instant) -> Arc<Sub> {
    let sub = Arc::new(Sub::default());
    let open = opener(kind);
    let s = sub.clone();
    std::thread::spawn(move || run(&s, addr, base, open));
    sub
}

fn run(sub: &Sub, addr: SocketAddr, base: Instant, open: Open) {
    let mut cursor: Option<u64> = None;
    let mut failures = 0;
    while !sub.stop.load(Relaxed) {
        let mut session = match open(addr, cursor, &sub.meter) {
            Ok(s) => s,
            Err(e) => {
                sub.fail(format!("connect: {e}"));
                failures += 1;
                if failures > 100 {
                    return;
                }
                std::thread::sleep(Duration::from_millis(20));
                continue;
            }
        };
        sub.ready.store(true, Relaxed);
        loop {
            if sub.stop.load(Relaxed) {
                return;
            }
            if sub.down.load(Relaxed) {
                drop(session);
                sub.is_down.store(true, Relaxed);
                while sub.down.load(Relaxed) && !sub.stop.load(Relaxed) {
                    std::thread::sleep(Duration::from_micros(200));
                }
                sub.back_ns.store(base.elapsed().as_nanos() as u64, Relaxed);
                sub.is_down.store(false, Relaxed);
                break;
            }
            let mut on = |id: u64, seq: u64, sent_ns: u64| {
                let recv_ns = base.elapsed().as_nanos() as u64;
                cursor = Some(cursor.map_or(id, |c| c.max(id)));
                sub.record(Got {
                    seq,
                    sent_ns,
                    recv_ns,
                });
            };
            if let Err(e) = session.pump(&mut on) {
                sub.fail(format!("read: {e}"));
                std::thread::sleep(Duration::from_millis(20));
                break;
            }
        }
    }
}

/// Reads once (up to the socket's short read timeout) into `buf`; EOF is an error.
fn fill(w: &mut Wire, buf: &mut Vec<u8>) -> io::Result<bool> {
    let mut chunk = [0u8; 64 * 1024];
    match w.read(&mut chunk) {
        Ok(0) => Err(io::ErrorKind::UnexpectedEof.into()),
        Ok(n) => {
            buf.extend_from_slice(&chunk[..n]);
            Ok(true)
        }
        Err(e) if timed_out(&e) => Ok(false),
        Err(e) => Err(e),
    }
}

// --- WebSocket: one text frame per event, `{"id":N,"event":null,"data":"..."}` ---

struct WsSession {
    w: Wire,
    buf: Vec<u8>,
    /// Nothing parsed yet: `buf` may hold frames that came with the head.
    fresh: bool,
}

fn open_ws(addr: SocketAddr, since: Option<u64>, m: &Arc<Meter>) -> io::Result<Box<dyn Session>> {
    let query = since.map_or(String::new(), |s| format!("?since={s}"));
    let url = WsUrl::parse(&format!("ws://{addr}/topics/cmp/ws{query}"))
        .map_err(|e| io::Error::other(format!("{e:?}")))?;
    let offer = ClientOffer::default();
    let mut req = Vec::new();
    let accept = write_request(&mut req, &url, &rand::random(), &offer)
        .map_err(|e| io::Error::other(format!("{e:?}")))?;
    let mut w = Wire::connect(addr, m)?;
    m.request();
    w.write_all(&req)?;
    let mut buf = Vec::new();
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        match read_response(&buf, &accept, &offer).map_err(|e| io::Error::other(e.to_string()))? {
            Some(a) => {
                buf.drain(..a.head_len);
                return Ok(Box::new(WsSession {
                    w,
                    buf,
                    fresh: true,
                }));
            }
            None if Instant::now() > deadline => return Err(io::ErrorKind::TimedOut.into()),
            None => {
                fill(&mut w, &mut buf)?;
            }
        }
    }
}

impl Session for WsSession {
    fn pump(&mut self, on: &mut dyn FnMut(u64, u64, u64)) -> io::Result<()> {
        // Frames that came with the handshake's answer are parsed before any read.
        if std::mem::take(&mut self.fresh) || fill(&mut self.w, &mut self.buf)? {
            self.frames(on)?;
        }
        Ok(())
    }
}

impl WsSession {
    fn frames(&mut self, on: &mut dyn FnMut(u64, u64, u64)) -> io::Result<()> {
        let mut reply = Vec::new();
        while let Some((h, len)) =
            parse_header(&self.buf).map_err(|e| io::Error::other(e.reason))?
        {
            let end = len + h.payload_len as usize;
            if self.buf.len() < end {
                break;
            }
            let payload = &self.buf[len..end];
            match h.opcode {
                OpCode::Text => {
                    if let (Some((id, _)), Some((seq, sent, _))) = (
                        number_after(payload, b"\"id\":", 0),
                        find_payload(payload, 0),
                    ) {
                        on(id, seq, sent);
                    }
                }
                OpCode::Ping => {
                    write_frame(&mut reply, 0, OpCode::Pong, Some(rand::random()), payload)
                }
                OpCode::Close => return Err(io::Error::other("the server closed the WebSocket")),
                _ => {}
            }
            self.buf.drain(..end);
        }
        if !reply.is_empty() {
            self.w.write_all(&reply)?;
        }
        Ok(())
    }
}

// --- SSE: a chunked `text/event-stream`, `id: N` and `data: ...` per event ---

struct SseSession {
    w: Wire,
    raw: Vec<u8>,
    chunks: ChunkedDecoder,
    text: Vec<u8>,
    /// Nothing parsed yet: `raw` may hold events that came with the head.
    fresh: bool,
}

fn open_sse(addr: SocketAddr, last: Option<u64>, m: &Arc<Meter>) -> io::Result<Box<dyn Session>> {
    let resume = last.map_or(String::new(), |l| format!("Last-Event-ID: {l}\r\n"));
    let mut w = Wire::connect(addr, m)?;
    m.request();
    w.write_all(
        format!(
            "GET /topics/cmp/sse HTTP/1.1\r\nHost: 127.0.0.1\r\nAccept: text/event-stream\r\n{resume}\r\n"
        )
        .as_bytes(),
    )?;
    let mut raw = Vec::new();
    let deadline = Instant::now() + Duration::from_secs(5);
    let head = loop {
        if let Some(end) = find(&raw, b"\r\n\r\n") {
            break end + 4;
        }
        if Instant::now() > deadline || raw.len() > 16 * 1024 {
            return Err(io::Error::other("no stream head"));
        }
        fill(&mut w, &mut raw)?;
    };
    let mut fields = [httparse::EMPTY_HEADER; 32];
    let mut resp = httparse::Response::new(&mut fields);
    resp.parse(&raw[..head])
        .map_err(|e| io::Error::other(e.to_string()))?;
    if resp.code != Some(200) {
        return Err(io::Error::other(format!("stream answered {:?}", resp.code)));
    }
    raw.drain(..head);
    let s = SseSession {
        w,
        raw,
        chunks: ChunkedDecoder::new(u64::MAX, 4096, 16),
        text: Vec::new(),
        fresh: true,
    };
    Ok(Box::new(s))
}

impl SseSession {
    fn decode(&mut self) -> io::Result<()> {
        let (used, done) = self
            .chunks
            .decode(&self.raw, &mut self.text)
            .map_err(|e| io::Error::other(e.to_string()))?;
        self.raw.drain(..used);
        if done {
            return Err(io::Error::other("the stream ended"));
        }
        Ok(())
    }
}

impl Session for SseSession {
    fn pump(&mut self, on: &mut dyn FnMut(u64, u64, u64)) -> io::Result<()> {
        // Events that came with the stream's head are parsed before any read.
        if !std::mem::take(&mut self.fresh) && !fill(&mut self.w, &mut self.raw)? {
            return Ok(());
        }
        self.decode()?;
        // Whole events end with a blank line; comments (heartbeats) carry no payload.
        let mut start = 0;
        while let Some(end) = find(&self.text[start..], b"\n\n") {
            let event = &self.text[start..start + end];
            if let (Some((id, _)), Some((seq, sent, _))) =
                (number_after(event, b"id: ", 0), find_payload(event, 0))
            {
                on(id, seq, sent);
            }
            start += end + 2;
        }
        self.text.drain(..start);
        Ok(())
    }
}

// --- Long poll: `GET /topics/cmp/poll?since=N` again and again on one keep-alive connection ---

struct PollSession {
    w: Wire,
    m: Arc<Meter>,
    since: u64,
    buf: Vec<u8>,
    reader: ResponseReader,
}

fn open_poll(addr: SocketAddr, since: Option<u64>, m: &Arc<Meter>) -> io::Result<Box<dyn Session>> {
    let mut s = PollSession {
        w: Wire::connect(addr, m)?,
        m: m.clone(),
        since: since.unwrap_or(0),
        buf: Vec::new(),
        reader: ResponseReader::new(false, 1 << 20, &Limits::default()),
    };
    s.ask()?;
    Ok(Box::new(s))
}

impl PollSession {
    fn ask(&mut self) -> io::Result<()> {
        self.m.request();
        self.reader = ResponseReader::new(false, 1 << 20, &Limits::default());
        let req = format!(
            "GET /topics/cmp/poll?since={}&timeout=60 HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n",
            self.since
        );
        self.w.write_all(req.as_bytes())
    }
}

impl Session for PollSession {
    fn pump(&mut self, on: &mut dyn FnMut(u64, u64, u64)) -> io::Result<()> {
        if !fill(&mut self.w, &mut self.buf)? {
            return Ok(());
        }
        loop {
            let (used, done) = self
                .reader
                .advance(&self.buf)
                .map_err(|e| io::Error::other(e.to_string()))?;
            self.buf.drain(..used);
            let Some(resp) = done else {
                return Ok(());
            };
            if resp.status != 200 {
                return Err(io::Error::other(format!("poll answered {}", resp.status)));
            }
            // `{"events":[{"id":N,"event":null,"data":"cmp ..."},...],"next":M,"gap":false}`
            let body = &resp.body;
            let mut at = 0;
            while let Some((id, after)) = number_after(body, b"{\"id\":", at) {
                if let Some((seq, sent, end)) = find_payload(body, after) {
                    on(id, seq, sent);
                    at = end;
                } else {
                    at = after;
                }
            }
            if let Some((next, _)) = number_after(body, b"\"next\":", 0) {
                self.since = next;
            }
            self.ask()?;
        }
    }
}
