//! The Redis backplane across processes, over loopback: several `hub` examples share topics
//! through one real `redis-server` (Debian's package, `/usr/bin/redis-server`; CI installs
//! it, and a missing one fails these tests rather than skipping them).
//!
//! Every test starts its own `redis-server` on a free 127.0.0.1 port, in its own temporary
//! directory, without persistence unless the test wants it, killed on drop; the hubs run
//! with `PUSHWIRE_LOG=debug`, their stderr kept in memory (and its tail printed when a test
//! fails). Redis is spoken to over a plain `TcpStream` with `pushwire::proto::resp`. Every
//! wait has a deadline ([`WAIT`] at most), every load loop a bound.

mod util;

#[path = "util/redis.rs"]
mod redis_server;
#[path = "util/sse_parser.rs"]
mod sse_parser;

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{Shutdown, SocketAddr, TcpListener, TcpStream};
use std::process::{Command as Process, Stdio};
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::{Duration, Instant};

use pushwire::proto::resp::{Limits, Parser, Value};
use redis_server::RedisServer;
use sse_parser::SseParser;
use util::{connect, example_bin, frame_bytes, get, json_ids, json_u64, post, read_response};
use util::{Proc, Resp, WsClient};

/// The longest any single wait in these tests may take.
const WAIT: Duration = Duration::from_secs(15);
/// The topic most tests use.
const TOPIC: &str = "bp";

// ---- small helpers ------------------------------------------------------------------------

/// Calls `f` until it is true or `limit` has passed; whether it became true.
fn wait_until(limit: Duration, mut f: impl FnMut() -> bool) -> bool {
    let end = Instant::now() + limit;
    loop {
        if f() {
            return true;
        }
        if Instant::now() > end {
            return false;
        }
        thread::sleep(Duration::from_millis(20));
    }
}

/// Prints how far into the test each step is (seen with `--nocapture`, or on failure).
struct Clock(Instant);

impl Clock {
    fn start() -> Clock {
        Clock(Instant::now())
    }
    fn mark(&self, what: &str) {
        eprintln!("[{:>8.3}s] {what}", self.0.elapsed().as_secs_f64());
    }
}

/// The string value of `"key":"..."` in a JSON text (JSON escapes decoded; enough for the
/// texts these tests send).
fn json_str(text: &str, key: &str) -> Option<String> {
    let pat = format!("\"{key}\":\"");
    let at = text.find(&pat)? + pat.len();
    let mut out = String::new();
    let mut chars = text[at..].chars();
    while let Some(c) = chars.next() {
        match c {
            '"' => return Some(out),
            '\\' => match chars.next()? {
                'n' => out.push('\n'),
                'r' => out.push('\r'),
                't' => out.push('\t'),
                'b' => out.push('\u{8}'),
                'f' => out.push('\u{c}'),
                'u' => {
                    let hex: String = chars.by_ref().take(4).collect();
                    out.push(char::from_u32(u32::from_str_radix(&hex, 16).ok()?)?);
                }
                other => out.push(other),
            },
            c => out.push(c),
        }
    }
    None
}

/// `ids` are `first, first + 1, ...` (a description of the first break otherwise).
fn check_consecutive(ids: &[u64]) -> Result<(), String> {
    for w in ids.windows(2) {
        if w[1] != w[0] + 1 {
            let at = ids.iter().position(|i| *i == w[1]).unwrap_or(0);
            return Err(format!(
                "{} follows {} (at index {at} of {}; first {:?}, last {:?})",
                w[1],
                w[0],
                ids.len(),
                ids.first(),
                ids.last()
            ));
        }
    }
    Ok(())
}

// ---- a real redis-server --------------------------------------------------------------------

// ---- a hub, its log kept --------------------------------------------------------------------

/// A hub example process with `PUSHWIRE_LOG=debug`, its stderr lines kept in memory.
struct Node {
    name: String,
    proc: Proc,
    log: Arc<Mutex<Vec<String>>>,
}

impl Node {
    /// `hub --addr 127.0.0.1:0 --redis URL EXTRA...`, once both its Redis links are
    /// connected (a reader arriving before the subscriber link is ready is refused).
    fn start(name: &str, redis_url: &str, extra: &[&str]) -> Node {
        let node = Node::spawn(name, redis_url, extra);
        for link in ["command", "subscriber"] {
            assert!(
                node.wait_log(0, &format!("redis: {link} link connected")),
                "{name}: the {link} link never connected"
            );
        }
        node
    }

    /// The hub as soon as it listens, its links in whatever state.
    fn spawn(name: &str, redis_url: &str, extra: &[&str]) -> Node {
        let mut child = Process::new(example_bin("hub"))
            .args(["--addr", "127.0.0.1:0", "--redis", redis_url])
            .args(extra)
            .env("PUSHWIRE_LOG", "debug")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawn the hub example");
        let log = Arc::new(Mutex::new(Vec::new()));
        let stderr = child.stderr.take().unwrap();
        let lines = log.clone();
        thread::spawn(move || {
            for line in BufReader::new(stderr).lines() {
                let Ok(line) = line else { break };
                lines.lock().unwrap().push(line);
            }
        });
        let mut stdout = BufReader::new(child.stdout.take().unwrap());
        let mut line = String::new();
        stdout
            .read_line(&mut line)
            .expect("read the listening line");
        let addr = line
            .trim()
            .rsplit("//")
            .next()
            .and_then(|a| a.parse().ok())
            .unwrap_or_else(|| panic!("{name}: no address in {line:?}"));
        thread::spawn(move || {
            let mut sink = Vec::new();
            let _ = stdout.read_to_end(&mut sink);
        });
        Node {
            name: name.to_owned(),
            proc: Proc { child, addr },
            log,
        }
    }

    fn addr(&self) -> SocketAddr {
        self.proc.addr
    }

    fn log_len(&self) -> usize {
        self.log.lock().unwrap().len()
    }

    /// The log lines from line `from` on that contain `needle`.
    fn log_lines(&self, from: usize, needle: &str) -> Vec<String> {
        let log = self.log.lock().unwrap();
        log.iter()
            .skip(from)
            .filter(|l| l.contains(needle))
            .cloned()
            .collect()
    }

    /// Waits (bounded) for a log line from line `from` on containing `needle`.
    fn wait_log(&self, from: usize, needle: &str) -> bool {
        wait_until(WAIT, || !self.log_lines(from, needle).is_empty())
    }

    fn alive(&mut self) -> bool {
        self.proc.child.try_wait().unwrap().is_none()
    }
}

impl Drop for Node {
    fn drop(&mut self) {
        if thread::panicking() {
            let log = self.log.lock().unwrap();
            let from = log.len().saturating_sub(40);
            eprintln!(
                "---- {} ({}): last log lines ----",
                self.name, self.proc.addr
            );
            for l in &log[from..] {
                eprintln!("{l}");
            }
        }
    }
}

/// Three hubs on one Redis.
fn cluster(redis: &RedisServer, extra: &[&str]) -> Vec<Node> {
    (1..=3)
        .map(|i| Node::start(&format!("node{i}"), &redis.url(), extra))
        .collect()
}

// ---- HTTP ---------------------------------------------------------------------------------

/// A kept-alive HTTP connection to one hub.
struct Http {
    addr: SocketAddr,
    s: TcpStream,
    buf: Vec<u8>,
}

impl Http {
    fn new(addr: SocketAddr) -> Http {
        Http {
            addr,
            s: connect(addr),
            buf: Vec::new(),
        }
    }

    /// Sends one request and reads its response; a connection the hub closed (said so, or
    /// found closed before anything was sent) is opened again.
    fn request(&mut self, raw: &[u8]) -> Resp {
        if self.s.write_all(raw).is_err() {
            self.reopen();
            self.s.write_all(raw).expect("write the request");
        }
        let r = read_response(&mut self.s, &mut self.buf, false)
            .unwrap_or_else(|| panic!("no response from {}", self.addr));
        if r.header("connection").is_some_and(|c| c.contains("close")) {
            self.reopen();
        }
        r
    }

    fn reopen(&mut self) {
        self.s = connect(self.addr);
        self.buf.clear();
    }

    /// `POST /topics/TOPIC[?event=E]` with `data`; the response and how long it took.
    fn publish(&mut self, topic: &str, event: Option<&str>, data: &str) -> (Resp, Duration) {
        let query = event.map(|e| format!("?event={e}")).unwrap_or_default();
        let raw = format!(
            "POST /topics/{topic}{query} HTTP/1.1\r\nHost: t\r\nContent-Length: {}\r\n\r\n{data}",
            data.len()
        );
        let t = Instant::now();
        let r = self.request(raw.as_bytes());
        (r, t.elapsed())
    }

    /// A publish that must be answered 201; its id.
    fn publish_ok(&mut self, topic: &str, event: Option<&str>, data: &str) -> u64 {
        let (r, _) = self.publish(topic, event, data);
        assert_eq!(r.status, 201, "publish to {}: {}", self.addr, r.text());
        json_u64(&r.text(), "id").unwrap_or_else(|| panic!("no id in {}", r.text()))
    }
}

/// One publish on a connection of its own; its id.
fn publish(addr: SocketAddr, topic: &str, event: Option<&str>, data: &str) -> u64 {
    Http::new(addr).publish_ok(topic, event, data)
}

/// Publishes on `addr` until one is answered 201 (the hub's command link is back); its id.
fn publish_once_up(addr: SocketAddr, topic: &str, data: &str) -> u64 {
    let mut http = Http::new(addr);
    let mut id = None;
    let up = wait_until(WAIT, || {
        let (r, _) = http.publish(topic, Some("retry"), data);
        match r.status {
            201 => {
                id = json_u64(&r.text(), "id");
                true
            }
            503 => {
                thread::sleep(Duration::from_millis(50));
                false
            }
            s => panic!("publish answered {s}: {}", r.text()),
        }
    });
    assert!(up, "{addr}: publishes still refused after {WAIT:?}");
    id.expect("an id")
}

/// A page of `/events` or `/poll`: status, ids, `next`, `gap`, the text.
#[derive(Debug)]
struct Page {
    status: u16,
    ids: Vec<u64>,
    next: Option<u64>,
    gap: bool,
    text: String,
}

impl Page {
    fn of(r: Resp) -> Page {
        let text = r.text();
        Page {
            status: r.status,
            ids: json_ids(&text),
            next: json_u64(&text, "next"),
            gap: text.contains("\"gap\":true"),
            text,
        }
    }
}

fn events_page(addr: SocketAddr, topic: &str, since: u64) -> Page {
    Page::of(get(addr, &format!("/topics/{topic}/events?since={since}")))
}

/// One long poll (its timeout below the helpers' 10 s read limit).
fn poll_page(addr: SocketAddr, topic: &str, since: u64, timeout_s: u64) -> Page {
    assert!(timeout_s < 9);
    Page::of(get(
        addr,
        &format!("/topics/{topic}/poll?since={since}&timeout={timeout_s}"),
    ))
}

/// All events after `since` through `/events`, page after page (bounded).
fn all_events(addr: SocketAddr, topic: &str, since: u64) -> (Vec<u64>, bool) {
    let (mut ids, mut gap, mut cur) = (Vec::new(), false, since);
    for _ in 0..1000 {
        let p = events_page(addr, topic, cur);
        assert_eq!(p.status, 200, "{}", p.text);
        gap |= p.gap;
        if p.ids.is_empty() {
            return (ids, gap);
        }
        cur = *p.ids.last().unwrap();
        ids.extend(p.ids);
    }
    panic!("more than 1000 pages of {topic}");
}

// ---- subscribers ----------------------------------------------------------------------------

/// An event as a subscriber got it.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Ev {
    id: u64,
    event: Option<String>,
    data: String,
}

/// What the subscribers of all kinds have in common.
trait Sub: Send {
    fn name(&self) -> &str;
    /// Reads what arrives within `wait` (one read).
    fn pump(&mut self, wait: Duration);
    fn events(&self) -> &[Ev];
    /// Gap notices received (the `oldest` each gave), and the number of events before each.
    fn gaps(&self) -> &[(usize, u64)];
    /// Why the stream ended, if it did.
    fn closed(&self) -> Option<&str>;

    fn ids(&self) -> Vec<u64> {
        self.events().iter().map(|e| e.id).collect()
    }

    fn last_id(&self) -> Option<u64> {
        self.events().last().map(|e| e.id)
    }

    /// Pumps until `f` holds of the events (true), the stream ends or `limit` passes.
    fn wait_for(&mut self, limit: Duration, f: &dyn Fn(&[Ev]) -> bool) -> bool {
        let end = Instant::now() + limit;
        loop {
            if f(self.events()) {
                return true;
            }
            if self.closed().is_some() || Instant::now() > end {
                return false;
            }
            self.pump(Duration::from_millis(100));
        }
    }

    /// Waits for the event with id `id` (or a later one).
    fn wait_id(&mut self, id: u64) -> bool {
        self.wait_for(WAIT, &|evs| evs.last().is_some_and(|e| e.id >= id))
    }
}

/// Reads once from `s` into `buf` within `wait`; `Err` at EOF or on a hard error.
fn read_some(s: &mut TcpStream, buf: &mut Vec<u8>, wait: Duration) -> Result<usize, String> {
    s.set_read_timeout(Some(wait.max(Duration::from_millis(1))))
        .unwrap();
    let mut tmp = [0u8; 65536];
    match s.read(&mut tmp) {
        Ok(0) => Err("EOF".into()),
        Ok(n) => {
            buf.extend_from_slice(&tmp[..n]);
            Ok(n)
        }
        Err(e)
            if matches!(
                e.kind(),
                std::io::ErrorKind::WouldBlock
                    | std::io::ErrorKind::TimedOut
                    | std::io::ErrorKind::Interrupted
            ) =>
        {
            Ok(0)
        }
        Err(e) => Err(e.to_string()),
    }
}

/// A WebSocket subscriber: `GET /topics/T/ws[?since=N]`.
struct WsSub {
    name: String,
    s: TcpStream,
    buf: Vec<u8>,
    events: Vec<Ev>,
    gaps: Vec<(usize, u64)>,
    closed: Option<String>,
}

impl WsSub {
    fn open(name: &str, addr: SocketAddr, topic: &str, since: Option<u64>) -> WsSub {
        let path = match since {
            Some(n) => format!("/topics/{topic}/ws?since={n}"),
            None => format!("/topics/{topic}/ws"),
        };
        let c = WsClient::open(addr, &path, "");
        WsSub {
            name: name.to_owned(),
            s: c.s,
            buf: c.buf,
            events: Vec::new(),
            gaps: Vec::new(),
            closed: None,
        }
    }

    /// Takes the whole frames out of `buf`.
    fn frames(&mut self) {
        loop {
            if self.buf.len() < 2 {
                return;
            }
            let (len, hl) = match self.buf[1] & 0x7f {
                126 if self.buf.len() >= 4 => {
                    (u16::from_be_bytes([self.buf[2], self.buf[3]]) as usize, 4)
                }
                127 if self.buf.len() >= 10 => (
                    u64::from_be_bytes(self.buf[2..10].try_into().unwrap()) as usize,
                    10,
                ),
                126 | 127 => return,
                n => (n as usize, 2),
            };
            assert_eq!(self.buf[1] & 0x80, 0, "server frames must not be masked");
            if self.buf.len() < hl + len {
                return;
            }
            let opcode = self.buf[0] & 0x0f;
            let payload: Vec<u8> = self.buf[hl..hl + len].to_vec();
            self.buf.drain(..hl + len);
            match opcode {
                1 => {
                    let text = String::from_utf8(payload).expect("UTF-8 text frame");
                    if text.starts_with("{\"gap\":true") {
                        let oldest = json_u64(&text, "oldest").unwrap_or(0);
                        self.gaps.push((self.events.len(), oldest));
                        continue;
                    }
                    let id = json_u64(&text, "id").unwrap_or_else(|| panic!("no id: {text}"));
                    self.events.push(Ev {
                        id,
                        event: json_str(&text, "event"),
                        data: json_str(&text, "data").unwrap_or_else(|| panic!("{text}")),
                    });
                }
                8 => {
                    let code = payload
                        .get(..2)
                        .map_or(0, |c| u16::from_be_bytes([c[0], c[1]]));
                    let why = String::from_utf8_lossy(payload.get(2..).unwrap_or(&[]));
                    self.closed = Some(format!("close {code} {why}"));
                    return;
                }
                9 => {
                    let pong = frame_bytes(true, 10, &payload, [1, 2, 3, 4]);
                    let _ = self.s.write_all(&pong);
                }
                _ => {}
            }
        }
    }
}

impl Sub for WsSub {
    fn name(&self) -> &str {
        &self.name
    }
    fn pump(&mut self, wait: Duration) {
        if self.closed.is_some() {
            return;
        }
        self.frames();
        if let Err(e) = read_some(&mut self.s, &mut self.buf, wait) {
            self.frames();
            self.closed.get_or_insert(e);
            return;
        }
        self.frames();
    }
    fn events(&self) -> &[Ev] {
        &self.events
    }
    fn gaps(&self) -> &[(usize, u64)] {
        &self.gaps
    }
    fn closed(&self) -> Option<&str> {
        self.closed.as_deref()
    }
}

/// A Server-Sent Events subscriber: `GET /topics/T/sse [Last-Event-ID: N]`, de-chunked and
/// parsed by the WHATWG parser of `util/sse_parser.rs`.
struct SseSub {
    name: String,
    s: TcpStream,
    raw: Vec<u8>,
    parser: SseParser,
    events: Vec<Ev>,
    gaps: Vec<(usize, u64)>,
    closed: Option<String>,
}

impl SseSub {
    /// Opens the stream; the response head if it is not 200.
    fn try_open(
        name: &str,
        addr: SocketAddr,
        topic: &str,
        last_id: Option<u64>,
    ) -> Result<SseSub, Resp> {
        let mut s = connect(addr);
        let extra = last_id
            .map(|n| format!("Last-Event-ID: {n}\r\n"))
            .unwrap_or_default();
        let req = format!(
            "GET /topics/{topic}/sse HTTP/1.1\r\nHost: t\r\nAccept: text/event-stream\r\n{extra}\r\n"
        );
        s.write_all(req.as_bytes()).unwrap();
        let mut raw = Vec::new();
        let head = read_response(&mut s, &mut raw, true).expect("the stream's head");
        if head.status != 200 {
            let mut body = Vec::new();
            if let Some(len) = head
                .header("content-length")
                .and_then(|l| l.parse::<usize>().ok())
            {
                let end = Instant::now() + Duration::from_secs(5);
                let _ = util::fill(&mut s, &mut raw, len, end);
                body = raw.drain(..len.min(raw.len())).collect();
            }
            return Err(Resp { body, ..head });
        }
        assert_eq!(head.header("transfer-encoding"), Some("chunked"));
        Ok(SseSub {
            name: name.to_owned(),
            s,
            raw,
            parser: SseParser::new(),
            events: Vec::new(),
            gaps: Vec::new(),
            closed: None,
        })
    }

    fn open(name: &str, addr: SocketAddr, topic: &str, last_id: Option<u64>) -> SseSub {
        SseSub::try_open(name, addr, topic, last_id)
            .unwrap_or_else(|r| panic!("{name}: SSE refused: {} {}", r.status, r.text()))
    }

    /// Decodes the whole chunks of `raw` into the parser.
    fn chunks(&mut self) {
        loop {
            let Some(eol) = self.raw.windows(2).position(|w| w == b"\r\n") else {
                return;
            };
            let size_txt = std::str::from_utf8(&self.raw[..eol]).unwrap();
            let size = usize::from_str_radix(size_txt.trim(), 16).unwrap();
            if size == 0 {
                self.closed.get_or_insert_with(|| "last chunk".into());
                return;
            }
            if self.raw.len() < eol + 2 + size + 2 {
                return;
            }
            let data: Vec<u8> = self.raw[eol + 2..eol + 2 + size].to_vec();
            self.raw.drain(..eol + 2 + size + 2);
            for ev in self.parser.feed(&data) {
                if ev.event == "gap" {
                    let oldest = ev.data.trim().parse().unwrap_or(0);
                    self.gaps.push((self.events.len(), oldest));
                    continue;
                }
                self.events.push(Ev {
                    id: ev
                        .last_event_id
                        .parse()
                        .unwrap_or_else(|_| panic!("bad id {ev:?}")),
                    event: (ev.event != "message").then_some(ev.event),
                    data: ev.data,
                });
            }
        }
    }
}

impl Sub for SseSub {
    fn name(&self) -> &str {
        &self.name
    }
    fn pump(&mut self, wait: Duration) {
        if self.closed.is_some() {
            return;
        }
        self.chunks();
        if let Err(e) = read_some(&mut self.s, &mut self.raw, wait) {
            self.chunks();
            self.closed.get_or_insert(e);
            return;
        }
        self.chunks();
    }
    fn events(&self) -> &[Ev] {
        &self.events
    }
    fn gaps(&self) -> &[(usize, u64)] {
        &self.gaps
    }
    fn closed(&self) -> Option<&str> {
        self.closed.as_deref()
    }
}

/// A chain of long polls in a thread of its own, each after the last id it got, until
/// the id `until` (set once known; 0 until then) is reached or [`WAIT`] passes after it is
/// set. Joined: the ids got, and whether any answer had `gap: true`.
struct PollChain {
    until: Arc<AtomicU64>,
    handle: thread::JoinHandle<Result<(Vec<u64>, bool), String>>,
}

impl PollChain {
    fn start(addr: SocketAddr, topic: &str, since: u64) -> PollChain {
        let until = Arc::new(AtomicU64::new(0));
        let target = until.clone();
        let topic = topic.to_owned();
        let handle = thread::spawn(move || {
            let (mut ids, mut gap, mut cur) = (Vec::new(), false, since);
            let started = Instant::now();
            let mut set_at: Option<Instant> = None;
            loop {
                let t = target.load(Ordering::SeqCst);
                if t != 0 {
                    let at = *set_at.get_or_insert_with(Instant::now);
                    if cur >= t {
                        return Ok((ids, gap));
                    }
                    if at.elapsed() > WAIT {
                        return Err(format!("poll chain stuck at {cur}, waiting for {t}"));
                    }
                }
                if started.elapsed() > Duration::from_secs(120) {
                    return Err("poll chain: never told where to stop".into());
                }
                let p = poll_page(addr, &topic, cur, 2);
                if p.status != 200 {
                    return Err(format!("poll answered {}: {}", p.status, p.text));
                }
                gap |= p.gap;
                if let Some(&last) = p.ids.last() {
                    cur = last;
                }
                ids.extend(p.ids);
            }
        });
        PollChain { until, handle }
    }

    fn finish(self, until: u64) -> (Vec<u64>, bool) {
        self.until.store(until, Ordering::SeqCst);
        match self.handle.join().expect("poll thread") {
            Ok(r) => r,
            Err(e) => panic!("{e}"),
        }
    }
}

/// Publishes warm-up events (event `warmup`) on `addr` until every one of `subs` got one:
/// each is then live on its hub. Bounded by [`WAIT`].
fn warm_up(addr: SocketAddr, topic: &str, subs: &mut [&mut dyn Sub]) {
    let mut http = Http::new(addr);
    let end = Instant::now() + WAIT;
    for k in 0.. {
        http.publish_ok(topic, Some("warmup"), &format!("w{k}"));
        for s in subs.iter_mut() {
            s.pump(Duration::from_millis(30));
        }
        if subs.iter().all(|s| !s.events().is_empty()) {
            return;
        }
        let late: Vec<&str> = subs
            .iter()
            .filter(|s| s.events().is_empty())
            .map(|s| s.name())
            .collect();
        assert!(
            Instant::now() < end,
            "never live after {k} warm-ups: {late:?}"
        );
        thread::sleep(Duration::from_millis(50));
    }
}

// ---- 1. a cluster -------------------------------------------------------------------------

#[test]
fn three_hubs_deliver_every_event_to_every_kind_of_subscriber_in_order() {
    let redis = RedisServer::start();
    let nodes = cluster(&redis, &[]);
    let (n1, n2, n3) = (nodes[0].addr(), nodes[1].addr(), nodes[2].addr());
    // The topic's first event, before anybody reads it: the resumers start after it.
    let w0 = publish(n1, TOPIC, Some("first"), "w0");

    let mut live: Vec<Box<dyn Sub>> = Vec::new();
    let mut resumed: Vec<Box<dyn Sub>> = Vec::new();
    let mut polls = Vec::new();
    for (n, addr) in [(1, n1), (2, n2), (3, n3)] {
        live.push(Box::new(WsSub::open(
            &format!("ws live @{n}"),
            addr,
            TOPIC,
            None,
        )));
        if n == 1 {
            continue;
        }
        live.push(Box::new(SseSub::open(
            &format!("sse live @{n}"),
            addr,
            TOPIC,
            None,
        )));
        resumed.push(Box::new(WsSub::open(
            &format!("ws since @{n}"),
            addr,
            TOPIC,
            Some(w0),
        )));
        resumed.push(Box::new(SseSub::open(
            &format!("sse Last-Event-ID @{n}"),
            addr,
            TOPIC,
            Some(w0),
        )));
        polls.push((n, PollChain::start(addr, TOPIC, w0)));
    }
    {
        let mut all: Vec<&mut dyn Sub> =
            live.iter_mut().map(|s| &mut **s as &mut dyn Sub).collect();
        warm_up(n1, TOPIC, &mut all);
    }

    let mut http = Http::new(n1);
    let sent: Vec<(u64, String)> = (0..50)
        .map(|i| {
            let data = format!("event {i} \"quoted\" ünï");
            (http.publish_ok(TOPIC, Some("e"), &data), data)
        })
        .collect();
    let ids: Vec<u64> = sent.iter().map(|(id, _)| *id).collect();
    check_consecutive(&ids).expect("the ids of one publisher's 50 events");
    let last = *ids.last().unwrap();

    for s in live.iter_mut().chain(resumed.iter_mut()) {
        assert!(
            s.wait_id(last),
            "{}: stopped at {:?}",
            s.name(),
            s.last_id()
        );
        let got = s.ids();
        check_consecutive(&got).unwrap_or_else(|e| panic!("{}: {e}", s.name()));
        assert_eq!(got.last(), Some(&last), "{}", s.name());
        assert!(got[0] > w0, "{}: got the first event", s.name());
        assert!(s.gaps().is_empty(), "{}: gap notice", s.name());
        let tail = &s.events()[s.events().len() - 50..];
        for (ev, (id, data)) in tail.iter().zip(&sent) {
            assert_eq!(
                (ev.id, ev.event.as_deref(), ev.data.as_str()),
                (*id, Some("e"), data.as_str()),
                "{}",
                s.name()
            );
        }
        assert!(s.closed().is_none(), "{}: {:?}", s.name(), s.closed());
    }
    // The resumers have everything after the first event, warm-ups included.
    for s in &resumed {
        assert_eq!(s.ids()[0], w0 + 1, "{}", s.name());
    }
    for (n, chain) in polls {
        let (got, gap) = chain.finish(last);
        assert!(!gap, "poll @{n}: gap");
        assert_eq!(got, (w0 + 1..=last).collect::<Vec<_>>(), "poll @{n}");
    }
}

// ---- 2. resuming on another hub -------------------------------------------------------------

#[test]
fn a_client_resumes_on_another_hub_without_gap_or_duplicate() {
    let redis = RedisServer::start();
    let nodes = cluster(&redis, &[]);
    let (n1, n2, n3) = (nodes[0].addr(), nodes[1].addr(), nodes[2].addr());
    let mut http = Http::new(n1);
    let w0 = http.publish_ok(TOPIC, None, "w0");

    // An SSE client on node 2 reads five events, then its socket is dropped.
    let mut sse = SseSub::open("sse @2", n2, TOPIC, Some(w0));
    let first: Vec<u64> = (0..5)
        .map(|i| http.publish_ok(TOPIC, None, &format!("a{i}")))
        .collect();
    assert!(
        sse.wait_id(first[4]),
        "sse @2 stopped at {:?}",
        sse.last_id()
    );
    assert_eq!(sse.ids(), first);
    let seen = sse.last_id().unwrap();
    drop(sse);

    // Missed while away, published on node 1.
    let missed: Vec<u64> = (0..7)
        .map(|i| http.publish_ok(TOPIC, None, &format!("b{i}")))
        .collect();
    check_consecutive(&missed).unwrap();
    assert_eq!(missed[0], seen + 1);

    // Back on node 3 (which never read the topic) with Last-Event-ID: exactly the missed
    // ones, then live ones.
    let mut back = SseSub::open("sse @3", n3, TOPIC, Some(seen));
    assert!(
        back.wait_id(missed[6]),
        "sse @3 stopped at {:?}",
        back.last_id()
    );
    assert_eq!(back.ids(), missed, "sse @3 after {seen}");
    assert!(back.gaps().is_empty());
    let more = http.publish_ok(TOPIC, None, "c0");
    assert!(back.wait_id(more));
    assert_eq!(back.ids().last(), Some(&more));
    assert_eq!(back.ids().len(), missed.len() + 1);
    for (ev, i) in back.events()[..7].iter().zip(0..) {
        assert_eq!(ev.data, format!("b{i}"));
    }

    // The same through /events and a long poll, on the two other hubs.
    for addr in [n2, n3] {
        let p = events_page(addr, TOPIC, seen);
        assert_eq!(p.status, 200, "{}", p.text);
        let mut want = missed.clone();
        want.push(more);
        assert_eq!(p.ids, want, "/events at {addr}: {}", p.text);
        assert!(!p.gap, "{}", p.text);
        assert_eq!(p.next, Some(more));
        let p = poll_page(addr, TOPIC, seen, 5);
        assert_eq!(
            (p.status, p.ids.clone(), p.gap),
            (200, want, false),
            "{}",
            p.text
        );
    }
    // A poll on a hub that has nothing after the cursor yet waits for the next event.
    let chain = PollChain::start(n3, TOPIC, more);
    thread::sleep(Duration::from_millis(200));
    let later = http.publish_ok(TOPIC, None, "d0");
    assert_eq!(chain.finish(later), (vec![later], false));

    // Node 2 stops following the topic once nobody reads it (2 s); a reader coming back
    // there after more publishes gets them from Redis, not its stale copy.
    assert!(
        nodes[1].wait_log(0, "no reader of \"bp\" left: unsubscribing"),
        "node 2 never let go of the topic"
    );
    let stale: Vec<u64> = (0..3)
        .map(|i| http.publish_ok(TOPIC, None, &format!("e{i}")))
        .collect();
    let p = events_page(n2, TOPIC, later);
    assert_eq!((p.ids.clone(), p.gap), (stale.clone(), false), "{}", p.text);
    let mut ws = WsSub::open("ws @2", n2, TOPIC, Some(seen));
    let mut want: Vec<u64> = missed.clone();
    want.extend([more, later]);
    want.extend(&stale);
    assert!(ws.wait_id(*stale.last().unwrap()), "ws @2: {:?}", ws.ids());
    assert_eq!(ws.ids(), want);
    assert!(ws.gaps().is_empty());
}

// ---- 3. concurrent publishes ----------------------------------------------------------------

/// A subscriber read in a thread of its own until it has the id `until` (set once known;
/// 0 until then), its stream ends, or [`WAIT`] passes without progress.
fn reader<S: Sub + 'static>(mut sub: S, until: Arc<AtomicU64>) -> thread::JoinHandle<S> {
    thread::spawn(move || {
        let mut progress = (0, Instant::now());
        loop {
            let want = until.load(Ordering::SeqCst);
            if want != 0 && sub.last_id().is_some_and(|l| l >= want) {
                return sub;
            }
            let have = sub.events().len();
            if have != progress.0 {
                progress = (have, Instant::now());
            } else if progress.1.elapsed() > WAIT || sub.closed().is_some() {
                return sub;
            }
            sub.pump(Duration::from_millis(100));
        }
    })
}

#[test]
fn ten_thousand_concurrent_publishes_reach_every_hub_once_in_order() {
    const TOTAL: usize = 10_000;
    const PER_CONN: usize = TOTAL / 6 + 1;
    let redis = RedisServer::start();
    let nodes = cluster(&redis, &[]);
    let w0 = publish(nodes[0].addr(), TOPIC, None, "w0");
    let until = Arc::new(AtomicU64::new(0));
    let readers: Vec<_> = nodes
        .iter()
        .enumerate()
        .map(|(i, n)| {
            let ws = WsSub::open(&format!("ws @{}", i + 1), n.addr(), TOPIC, Some(w0));
            reader(ws, until.clone())
        })
        .collect();
    // The readers are in sync once an event reaches them all: check with /events (which
    // waits for the sync too) on every node.
    for n in &nodes {
        assert_eq!(events_page(n.addr(), TOPIC, w0).status, 200);
    }

    // Two kept-alive connections per node, each its own thread, all at once.
    let started = Instant::now();
    let publishers: Vec<_> = (0..6)
        .map(|k| {
            let addr = nodes[k % 3].addr();
            let n = PER_CONN.min(TOTAL - (k * PER_CONN).min(TOTAL));
            thread::spawn(move || {
                let mut http = Http::new(addr);
                let mut got = Vec::with_capacity(n);
                let mut refused = 0;
                for i in 0..n {
                    let (r, _) = http.publish(TOPIC, Some("c"), &format!("{k}-{i}"));
                    match r.status {
                        201 => got.push(json_u64(&r.text(), "id").expect("an id")),
                        _ => refused += 1,
                    }
                }
                (got, refused)
            })
        })
        .collect();
    let mut ids = Vec::new();
    let mut refused = 0;
    for p in publishers {
        let (got, r) = p.join().expect("publisher");
        // One connection's ids increase (each publish is answered before the next).
        assert!(got.windows(2).all(|w| w[0] < w[1]), "one connection's ids");
        ids.extend(got);
        refused += r;
    }
    let publish_time = started.elapsed();
    assert_eq!(refused, 0, "publishes not answered 201 with Redis up");
    ids.sort_unstable();
    let created = ids.len();
    assert_eq!(created, TOTAL);
    assert_eq!(ids[0], w0 + 1);
    check_consecutive(&ids).expect("the ids Redis handed out");
    until.store(*ids.last().unwrap(), Ordering::SeqCst);
    for r in readers {
        let ws = r.join().expect("reader");
        let got = ws.ids();
        assert!(ws.closed.is_none(), "{}: {:?}", ws.name, ws.closed);
        assert_eq!(got.len(), created, "{}: count", ws.name);
        assert_eq!(got, ids, "{}: ids", ws.name);
    }
    eprintln!(
        "{TOTAL} publishes on 3 hubs in {publish_time:?}, all delivered after {:?}",
        started.elapsed()
    );
}

// ---- 4. Redis restarted with its data lost --------------------------------------------------

#[test]
fn redis_restarted_without_its_data_subscribers_stay_and_resumers_see_the_gap() {
    let mut redis = RedisServer::start();
    let nodes = cluster(&redis, &[]);
    let (n1, n2, n3) = (nodes[0].addr(), nodes[1].addr(), nodes[2].addr());
    let w0 = publish(n1, TOPIC, None, "w0");
    let mut ws = WsSub::open("ws @2", n2, TOPIC, Some(w0));
    let mut sse = SseSub::open("sse @3", n3, TOPIC, Some(w0));
    let mut http = Http::new(n1);
    let old: Vec<u64> = (0..5)
        .map(|i| http.publish_ok(TOPIC, None, &format!("old{i}")))
        .collect();
    let old_last = *old.last().unwrap();
    assert!(ws.wait_id(old_last) && sse.wait_id(old_last));

    let marks: Vec<usize> = nodes.iter().map(Node::log_len).collect();
    redis.kill();
    // Publishes while Redis is gone: 503 at once (well under a second), never 201, on
    // every node.
    let mut refused = 0;
    let mut https: Vec<Http> = nodes.iter().map(|n| Http::new(n.addr())).collect();
    let end = Instant::now() + Duration::from_millis(1500);
    while Instant::now() < end || refused < 12 {
        assert!(refused < 200);
        let h = &mut https[refused % 3];
        let (r, took) = h.publish(TOPIC, None, "during");
        assert_eq!(r.status, 503, "a publish with Redis down: {}", r.text());
        assert!(took < Duration::from_secs(1), "503 took {took:?}");
        assert!(r.text().starts_with("redis unavailable"), "{}", r.text());
        assert_eq!(r.header("retry-after"), Some("1"));
        refused += 1;
        thread::sleep(Duration::from_millis(40));
    }
    // Readers that need Redis are refused too, once a node knows its link is down.
    for n in &nodes {
        assert!(
            wait_until(WAIT, || events_page(n.addr(), TOPIC, 0).status == 503),
            "{}: /events still served with Redis down",
            n.name
        );
    }
    for (n, mark) in nodes.iter().zip(&marks) {
        assert!(
            !n.log_lines(*mark, "WARN  redis: subscriber link")
                .is_empty(),
            "{}: no warning about the subscriber link",
            n.name
        );
    }
    // The subscribers are still connected.
    ws.pump(Duration::from_millis(100));
    sse.pump(Duration::from_millis(100));
    assert!(ws.closed().is_none() && sse.closed().is_none());
    assert_eq!((ws.ids(), sse.ids()), (old.clone(), old.clone()));

    redis.restart();
    // Every node's command link comes back; the counter starts again from Redis's clock.
    let new_first = publish_once_up(n1, TOPIC, "new0");
    assert!(new_first > old_last + 1, "{new_first} after {old_last}");
    publish_once_up(n2, TOPIC, "new1");
    publish_once_up(n3, TOPIC, "new2");
    let new: Vec<u64> = (new_first..new_first + 3)
        .chain((3..6).map(|i| http.publish_ok(TOPIC, None, &format!("new{i}"))))
        .collect();
    check_consecutive(&new).unwrap();
    let new_last = *new.last().unwrap();
    // The live subscribers (never disconnected) get every new event, after the old ones.
    for s in [&mut ws as &mut dyn Sub, &mut sse] {
        assert!(s.wait_id(new_last), "{}: at {:?}", s.name(), s.last_id());
        let mut want = old.clone();
        want.extend(&new);
        assert_eq!(s.ids(), want, "{}", s.name());
    }
    // A client resuming with the old last id sees the gap: the first id is not since + 1.
    for addr in [n2, n3] {
        let p = events_page(addr, TOPIC, old_last);
        assert_eq!(p.status, 200, "{}", p.text);
        assert_eq!(p.ids, new, "{}", p.text);
        assert!(p.gap, "no gap reported: {}", p.text);
    }
    let mut resumed = SseSub::open("sse resumed @1", n1, TOPIC, Some(old_last));
    assert!(resumed.wait_id(new_last), "{:?}", resumed.ids());
    assert_eq!(resumed.ids(), new);
    assert_ne!(resumed.ids()[0], old_last + 1);
    let mut resumed = WsSub::open("ws resumed @3", n3, TOPIC, Some(old_last));
    assert!(resumed.wait_id(new_last), "{:?}", resumed.ids());
    assert_eq!(resumed.ids(), new);
    assert_eq!(resumed.gaps().len(), 1, "one gap notice first");
}

// ---- a publish is answered as soon as Redis replies ----------------------------------------

/// Sequential publishes on a hub that follows no topic: each is answered when Redis's
/// reply is read, not at the loop's next timer.
#[test]
fn a_publish_on_a_hub_without_readers_is_answered_at_once() {
    let redis = RedisServer::start();
    let node = Node::start("node", &redis.url(), &[]);
    let mut http = Http::new(node.addr());
    http.publish_ok(TOPIC, None, "loads the script");
    let mut slow = Vec::new();
    for i in 0..30 {
        let (r, took) = http.publish(TOPIC, None, &format!("p{i}"));
        assert_eq!(r.status, 201, "{}", r.text());
        if took > Duration::from_millis(250) {
            slow.push((i, took));
            if slow.len() == 3 {
                break;
            }
        }
        thread::sleep(Duration::from_millis(20));
    }
    // A stall of this shared machine may slow one or two; the bug slowed nearly all.
    assert!(slow.len() < 3, "publishes answered late: {slow:?}");
}

// ---- the gap rule from 0 on a hub that followed an empty topic ------------------------------

/// A hub that started following a topic before its first event (its stream read came back
/// empty) answers a read from 0 like a hub that read the stream afterwards, and like a
/// single hub: no gap, nothing was lost.
#[test]
fn a_hub_that_followed_a_topic_before_its_first_event_reports_no_gap_from_zero() {
    let redis = RedisServer::start();
    let nodes = cluster(&redis, &[]);
    let (n1, n2, n3) = (nodes[0].addr(), nodes[1].addr(), nodes[2].addr());
    // Node 2 follows the topic before anything was published to it.
    let poll = thread::spawn(move || poll_page(n2, "fresh", 0, 5));
    assert!(
        nodes[1].wait_log(0, "\"fresh\" in sync"),
        "node 2 never followed"
    );
    let id = publish(n1, "fresh", None, "first");
    let p = poll.join().expect("poll");
    assert_eq!(p.ids, vec![id], "{}", p.text);
    // Node 3 reads the stream only now: no gap there.
    let p3 = events_page(n3, "fresh", 0);
    assert_eq!((p3.ids.clone(), p3.gap), (vec![id], false), "{}", p3.text);
    let p2 = events_page(n2, "fresh", 0);
    assert_eq!(p2.ids, vec![id], "{}", p2.text);
    assert!(
        !p.gap && !p2.gap,
        "node 2 reports a gap from 0: poll {} /events {}",
        p.text,
        p2.text
    );
}

// ---- 5. one hub cut off, Redis keeps its data -----------------------------------------------

/// A TCP proxy in front of Redis that can be cut: every connection through it is closed,
/// and new ones are accepted and closed at once, until it is restored.
struct CutProxy {
    addr: SocketAddr,
    up: Arc<AtomicBool>,
    stop: Arc<AtomicBool>,
    conns: Arc<Mutex<Vec<TcpStream>>>,
    accepted: Arc<AtomicUsize>,
}

impl CutProxy {
    fn start(target: SocketAddr) -> CutProxy {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        listener.set_nonblocking(true).unwrap();
        let p = CutProxy {
            addr: listener.local_addr().unwrap(),
            up: Arc::new(AtomicBool::new(true)),
            stop: Arc::new(AtomicBool::new(false)),
            conns: Arc::new(Mutex::new(Vec::new())),
            accepted: Arc::new(AtomicUsize::new(0)),
        };
        let (up, stop, conns, accepted) = (
            p.up.clone(),
            p.stop.clone(),
            p.conns.clone(),
            p.accepted.clone(),
        );
        thread::spawn(move || {
            while !stop.load(Ordering::SeqCst) {
                let client = match listener.accept() {
                    Ok((c, _)) => c,
                    Err(_) => {
                        thread::sleep(Duration::from_millis(5));
                        continue;
                    }
                };
                accepted.fetch_add(1, Ordering::SeqCst);
                if !up.load(Ordering::SeqCst) {
                    drop(client);
                    continue;
                }
                client.set_nonblocking(false).unwrap();
                let Ok(server) = TcpStream::connect(target) else {
                    continue;
                };
                let mut list = conns.lock().unwrap();
                list.push(client.try_clone().unwrap());
                list.push(server.try_clone().unwrap());
                drop(list);
                for (mut from, mut to) in [
                    (client.try_clone().unwrap(), server.try_clone().unwrap()),
                    (server, client),
                ] {
                    thread::spawn(move || {
                        let _ = std::io::copy(&mut from, &mut to);
                        let _ = to.shutdown(Shutdown::Both);
                        let _ = from.shutdown(Shutdown::Both);
                    });
                }
            }
        });
        p
    }

    fn url(&self) -> String {
        format!("redis://{}", self.addr)
    }

    fn cut(&self) {
        self.up.store(false, Ordering::SeqCst);
        for s in self.conns.lock().unwrap().drain(..) {
            let _ = s.shutdown(Shutdown::Both);
        }
    }

    fn restore(&self) {
        self.up.store(true, Ordering::SeqCst);
    }
}

impl Drop for CutProxy {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        self.cut();
    }
}

#[test]
fn a_hub_cut_off_from_redis_catches_up_on_what_the_others_published() {
    let clock = Clock::start();
    let redis = RedisServer::start();
    let proxy = CutProxy::start(redis.addr());
    let n1 = Node::start("node1", &redis.url(), &[]);
    let n2 = Node::start("node2", &redis.url(), &[]);
    let n3 = Node::start("node3 (via the proxy)", &proxy.url(), &[]);
    let (a1, a2, a3) = (n1.addr(), n2.addr(), n3.addr());
    clock.mark("three hubs up");
    let w0 = publish(a1, TOPIC, None, "w0");
    let mut subs: Vec<Box<dyn Sub>> = vec![
        Box::new(WsSub::open("ws @3", a3, TOPIC, Some(w0))),
        Box::new(SseSub::open("sse @3", a3, TOPIC, Some(w0))),
        Box::new(WsSub::open("ws @2", a2, TOPIC, Some(w0))),
    ];
    clock.mark("subscribers open");
    let mut live = WsSub::open("ws live @3", a3, TOPIC, None);
    let mut want: Vec<u64> = Vec::new();
    let mut h1 = Http::new(a1);
    let mut h2 = Http::new(a2);
    let mut h3 = Http::new(a3);
    for i in 0..5 {
        want.push(h1.publish_ok(TOPIC, None, &format!("before{i}")));
        want.push(h3.publish_ok(TOPIC, None, &format!("before3-{i}")));
    }
    clock.mark("published");
    for s in &mut subs {
        assert!(s.wait_id(*want.last().unwrap()), "{}", s.name());
    }
    assert!(live.wait_for(WAIT, &|e| !e.is_empty()));
    let live_from = live.ids()[0];

    clock.mark("subscribed, 10 events delivered");
    let mark = n3.log_len();
    proxy.cut();
    assert!(
        n3.wait_log(mark, "WARN  redis: subscriber link"),
        "node 3 did not notice the cut"
    );
    // Node 3 refuses what needs Redis: publishes (at once), reads, new subscribers.
    assert!(wait_until(WAIT, || {
        let (r, took) = h3.publish(TOPIC, None, "refused");
        assert_ne!(r.status, 201, "a publish through a cut link");
        assert!(took < Duration::from_secs(1), "503 took {took:?}");
        r.status == 503
    }));
    clock.mark("publish refused");
    assert_eq!(events_page(a3, TOPIC, w0).status, 503);
    let r = SseSub::try_open("sse refused", a3, TOPIC, Some(w0))
        .err()
        .expect("a refusal");
    assert_eq!(r.status, 503, "{}", r.text());
    assert_eq!(r.header("retry-after"), Some("1"));
    clock.mark("sse refused");
    let mut refused = WsSub::open("ws refused @3", a3, TOPIC, Some(w0));
    assert!(!refused.wait_for(Duration::from_secs(5), &|e| !e.is_empty()));
    assert!(
        refused
            .closed()
            .is_some_and(|c| c.starts_with("close 1011")),
        "{:?}",
        refused.closed()
    );
    clock.mark("node 3 refuses");
    // Meanwhile the other two publish.
    for i in 0..10 {
        want.push(h1.publish_ok(TOPIC, None, &format!("during{i}")));
        want.push(h2.publish_ok(TOPIC, None, &format!("during2-{i}")));
    }
    thread::sleep(Duration::from_millis(500));
    proxy.restore();
    clock.mark("restored");
    // Node 3 reconnects and catches up; then it publishes again.
    let back = publish_once_up(a3, TOPIC, "back");
    want.push(back);
    clock.mark("node 3 publishes again");
    for i in 0..3 {
        want.push(h2.publish_ok(TOPIC, None, &format!("after{i}")));
    }
    check_consecutive(&want).unwrap();
    assert_eq!(want[0], w0 + 1);
    let last = *want.last().unwrap();
    for s in &mut subs {
        assert!(s.wait_id(last), "{}: at {:?}", s.name(), s.last_id());
        assert_eq!(s.ids(), want, "{}", s.name());
        assert!(s.gaps().is_empty(), "{}", s.name());
        assert!(s.closed().is_none(), "{}", s.name());
    }
    assert!(live.wait_id(last));
    assert_eq!(live.ids(), (live_from..=last).collect::<Vec<_>>());
    let (ids, gap) = all_events(a3, TOPIC, w0);
    assert_eq!((ids, gap), (want.clone(), false));
    assert!(
        proxy.accepted.load(Ordering::SeqCst) >= 4,
        "node 3 reconnected"
    );
}

#[test]
fn redis_restarted_with_its_data_kept_ids_continue_without_a_gap() {
    let mut redis = RedisServer::start_with(true);
    let nodes = cluster(&redis, &[]);
    let (n1, n2, n3) = (nodes[0].addr(), nodes[1].addr(), nodes[2].addr());
    let w0 = publish(n1, TOPIC, None, "w0");
    let mut ws = WsSub::open("ws @2", n2, TOPIC, Some(w0));
    let mut sse = SseSub::open("sse @3", n3, TOPIC, Some(w0));
    let mut http = Http::new(n1);
    let mut want: Vec<u64> = (0..5)
        .map(|i| http.publish_ok(TOPIC, None, &format!("old{i}")))
        .collect();
    let old_last = *want.last().unwrap();
    assert!(ws.wait_id(old_last) && sse.wait_id(old_last));

    redis.kill();
    for h in [n1, n2, n3] {
        let (r, took) = Http::new(h).publish(TOPIC, None, "down");
        // The first publish may be the one that finds the link broken: 503 either way.
        assert_eq!(r.status, 503, "{}", r.text());
        assert!(took < Duration::from_secs(1), "{took:?}");
    }
    thread::sleep(Duration::from_millis(300));
    redis.restart();
    let next = publish_once_up(n2, TOPIC, "again");
    assert_eq!(next, old_last + 1, "the counter survived in the AOF");
    want.push(next);
    // n1's link may come back later than n2's (its own backoff): a 503 is not published,
    // so retrying it duplicates nothing.
    for i in 0..5 {
        want.push(publish_once_up(n1, TOPIC, &format!("new{i}")));
    }
    let last = *want.last().unwrap();
    for s in [&mut ws as &mut dyn Sub, &mut sse] {
        assert!(s.wait_id(last), "{}: at {:?}", s.name(), s.last_id());
        assert_eq!(s.ids(), want, "{}", s.name());
        assert!(s.gaps().is_empty());
    }
    let p = events_page(n3, TOPIC, old_last);
    assert_eq!((p.ids, p.gap), (want[5..].to_vec(), false), "{}", p.text);
    // A hub that never read the topic reads it from the kept stream.
    let n4 = Node::start("node4", &redis.url(), &[]);
    let (ids, gap) = all_events(n4.addr(), TOPIC, w0);
    assert_eq!((ids, gap), (want, false));
}

// ---- 6. CLIENT KILL TYPE pubsub -------------------------------------------------------------

#[test]
fn client_kill_type_pubsub_while_publishing_loses_and_duplicates_nothing() {
    let redis = RedisServer::start();
    let nodes = cluster(&redis, &[]);
    let w0 = publish(nodes[0].addr(), TOPIC, None, "w0");
    let until = Arc::new(AtomicU64::new(0));
    let readers: Vec<_> = nodes
        .iter()
        .enumerate()
        .map(|(i, n)| {
            let ws = WsSub::open(&format!("ws @{}", i + 1), n.addr(), TOPIC, Some(w0));
            reader(ws, until.clone())
        })
        .collect();
    let sse = reader(
        SseSub::open("sse live @2", nodes[1].addr(), TOPIC, None),
        until.clone(),
    );
    for n in &nodes {
        assert_eq!(events_page(n.addr(), TOPIC, w0).status, 200);
    }
    let marks: Vec<usize> = nodes.iter().map(Node::log_len).collect();

    // One publisher per node, for 3 s (at most 5,000 each), while the subscriber links are
    // killed twice.
    let stop = Arc::new(AtomicBool::new(false));
    let publishers: Vec<_> = nodes
        .iter()
        .map(|n| {
            let (addr, stop) = (n.addr(), stop.clone());
            thread::spawn(move || {
                let mut http = Http::new(addr);
                let mut ids = Vec::new();
                for i in 0..5_000 {
                    if stop.load(Ordering::SeqCst) {
                        break;
                    }
                    ids.push(http.publish_ok(TOPIC, None, &format!("{addr}-{i}")));
                }
                ids
            })
        })
        .collect();
    let mut killed = Vec::new();
    for _ in 0..2 {
        thread::sleep(Duration::from_millis(1000));
        killed.push(redis.int(&["CLIENT", "KILL", "TYPE", "pubsub"]));
    }
    thread::sleep(Duration::from_millis(1000));
    stop.store(true, Ordering::SeqCst);
    let mut ids: Vec<u64> = publishers
        .into_iter()
        .flat_map(|p| p.join().expect("publisher"))
        .collect();
    ids.sort_unstable();
    // Each kill found the three subscriber links (each follows the topic).
    assert_eq!(killed, vec![3, 3], "subscriber connections killed");
    assert_eq!(ids[0], w0 + 1);
    check_consecutive(&ids).unwrap();
    let last = *ids.last().unwrap();
    until.store(last, Ordering::SeqCst);
    for r in readers {
        let ws = r.join().expect("reader");
        assert!(ws.closed.is_none(), "{}: {:?}", ws.name, ws.closed);
        assert_eq!(ws.ids(), ids, "{}", ws.name);
    }
    let sse = sse.join().expect("reader");
    let got = sse.ids();
    check_consecutive(&got).unwrap();
    assert_eq!(got.last(), Some(&last));
    for (n, mark) in nodes.iter().zip(marks) {
        let downs = n.log_lines(mark, "WARN  redis: subscriber link");
        assert!(!downs.is_empty(), "{}: the kill went unnoticed", n.name);
        let connected = n.log_lines(mark, "redis: subscriber link connected");
        assert!(connected.len() >= 2, "{}: {connected:?}", n.name);
    }
    eprintln!(
        "{} publishes across two kills of the subscriber links",
        ids.len()
    );
}

// ---- 7. a "redis" that answers garbage ------------------------------------------------------

/// A fake Redis on 127.0.0.1 that answers connection k's first bytes with `replies[k %
/// len]` and then holds it open until the peer closes (at most 10 s). Counts connections.
struct FakeRedis {
    addr: SocketAddr,
    conns: Arc<AtomicUsize>,
    stop: Arc<AtomicBool>,
}

impl FakeRedis {
    fn start(replies: Vec<&'static [u8]>) -> FakeRedis {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        listener.set_nonblocking(true).unwrap();
        let f = FakeRedis {
            addr: listener.local_addr().unwrap(),
            conns: Arc::new(AtomicUsize::new(0)),
            stop: Arc::new(AtomicBool::new(false)),
        };
        let (conns, stop) = (f.conns.clone(), f.stop.clone());
        thread::spawn(move || {
            while !stop.load(Ordering::SeqCst) {
                let Ok((mut s, _)) = listener.accept() else {
                    thread::sleep(Duration::from_millis(5));
                    continue;
                };
                let k = conns.fetch_add(1, Ordering::SeqCst);
                let reply = replies[k % replies.len()];
                thread::spawn(move || {
                    s.set_nonblocking(false).unwrap();
                    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
                    let mut tmp = [0u8; 4096];
                    if matches!(s.read(&mut tmp), Ok(n) if n > 0) {
                        let _ = s.write_all(reply);
                    }
                    while matches!(s.read(&mut tmp), Ok(n) if n > 0) {}
                });
            }
        });
        f
    }

    fn url(&self) -> String {
        format!("redis://{}", self.addr)
    }
}

impl Drop for FakeRedis {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
    }
}

#[test]
fn garbage_from_redis_keeps_the_hub_up_answers_503_and_reconnects() {
    let fake = FakeRedis::start(vec![
        b"$99999999999\r\n",
        b"@@@\r\n",
        b"+PONG\n",
        b"*-7\r\n",
        b":12x\r\n",
    ]);
    let mut node = Node::spawn("hub on a fake redis", &fake.url(), &[]);
    let addr = node.addr();
    // Both links connect, get garbage, warn, and connect again.
    assert!(node.wait_log(0, "WARN  redis: command link"), "no warning");
    assert!(
        node.wait_log(0, "WARN  redis: subscriber link"),
        "no warning"
    );
    assert!(
        wait_until(WAIT, || fake.conns.load(Ordering::SeqCst) >= 4),
        "the hub did not reconnect: {} connections",
        fake.conns.load(Ordering::SeqCst)
    );
    for _ in 0..5 {
        let r = get(addr, "/healthz");
        assert_eq!((r.status, r.text().as_str()), (200, "ok"));
        let t = Instant::now();
        let r = post(addr, "/topics/t", "x");
        assert_eq!(r.status, 503, "{}", r.text());
        assert!(t.elapsed() < Duration::from_secs(1));
        assert_eq!(r.header("retry-after"), Some("1"));
        assert_eq!(events_page(addr, "t", 0).status, 503);
        thread::sleep(Duration::from_millis(100));
    }
    let warns = node.log_lines(0, "WARN  redis:");
    assert!(
        warns.iter().any(|w| w.contains("failed")),
        "warnings: {warns:?}"
    );
    assert!(node.alive(), "the hub died");
}

/// A fake Redis that speaks RESP: it parses each command and answers the handshake
/// (`PING`), `SUBSCRIBE` and stream reads as Redis would, and each `EVALSHA`/`EVAL` with
/// the next of `publish_replies` (then `-ERR no more`). On `SUBSCRIBE` it also sends the
/// `messages` (raw RESP). Counts connections.
fn scripted_redis(
    publish_replies: Vec<&'static [u8]>,
    messages: Vec<Vec<u8>>,
) -> (SocketAddr, Arc<AtomicUsize>) {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    let conns = Arc::new(AtomicUsize::new(0));
    let counter = conns.clone();
    let replies = Arc::new(Mutex::new(publish_replies.into_iter()));
    thread::spawn(move || {
        for s in listener.incoming() {
            let Ok(mut s) = s else { return };
            counter.fetch_add(1, Ordering::SeqCst);
            let (replies, messages) = (replies.clone(), messages.clone());
            thread::spawn(move || {
                s.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
                let mut parser = Parser::new(Limits::default());
                let mut buf = Vec::new();
                let mut tmp = [0u8; 4096];
                loop {
                    let Ok((used, v)) = parser.advance(&buf) else {
                        return;
                    };
                    buf.drain(..used);
                    let Some(Value::Array(args)) = v else {
                        match s.read(&mut tmp) {
                            Ok(n) if n > 0 => buf.extend_from_slice(&tmp[..n]),
                            _ => return,
                        }
                        continue;
                    };
                    let args: Vec<Vec<u8>> = args
                        .iter()
                        .map(|a| a.as_bytes().unwrap_or_default().to_vec())
                        .collect();
                    let name = String::from_utf8_lossy(&args[0]).to_ascii_uppercase();
                    let mut out: Vec<u8> = Vec::new();
                    match name.as_str() {
                        "PING" => out.extend_from_slice(b"+PONG\r\n"),
                        "SUBSCRIBE" => {
                            for ch in &args[1..] {
                                out.extend_from_slice(
                                    format!("*3\r\n$9\r\nsubscribe\r\n${}\r\n", ch.len())
                                        .as_bytes(),
                                );
                                out.extend_from_slice(ch);
                                out.extend_from_slice(b"\r\n:1\r\n");
                            }
                            for m in &messages {
                                out.extend_from_slice(m);
                            }
                        }
                        "XRANGE" | "XREVRANGE" => out.extend_from_slice(b"*0\r\n"),
                        "EVALSHA" | "EVAL" => {
                            let next = replies.lock().unwrap().next();
                            out.extend_from_slice(next.unwrap_or(b"-ERR no more\r\n"));
                        }
                        _ => out.extend_from_slice(b"-ERR unknown command\r\n"),
                    }
                    if s.write_all(&out).is_err() {
                        return;
                    }
                }
            });
        }
    });
    (addr, conns)
}

/// A pub/sub message as RESP2 sends it.
fn message(channel: &str, payload: &[u8]) -> Vec<u8> {
    let mut m = format!(
        "*3\r\n$7\r\nmessage\r\n${}\r\n{channel}\r\n${}\r\n",
        channel.len(),
        payload.len()
    )
    .into_bytes();
    m.extend_from_slice(payload);
    m.extend_from_slice(b"\r\n");
    m
}

#[test]
fn wrong_replies_and_bad_messages_from_redis_are_refused_one_by_one() {
    let (addr, conns) = scripted_redis(
        vec![
            b"+OK\r\n",
            b":0\r\n",
            b":-3\r\n",
            b"-ERR boom\r\n",
            b"$5\r\nhello\r\n",
            b"*1\r\n:5\r\n",
            b":42\r\n",
            b"-NOSCRIPT No matching script\r\n",
            b"-NOSCRIPT No matching script\r\n",
            b"@@@\r\n",
        ],
        vec![
            message("pushwire:{t}", b"not a payload"),
            message("pushwire:{t}", b"7 1700000000000 99 short"),
            message("pushwire:{other}", b"8 1700000000000 - elsewhere"),
            message("pushwire:{t}", b"9 1700000000000 2 hihello"),
        ],
    );
    let node = Node::start("hub on a scripted redis", &format!("redis://{addr}"), &[]);
    let a = node.addr();
    assert!(node.wait_log(0, "redis: command link connected"));
    // The subscriber gets the messages sent on SUBSCRIBE: two undecodable ones dropped
    // with a warning, one of another topic ignored, one delivered.
    let mut ws = WsSub::open("ws", a, "t", Some(0));
    assert!(ws.wait_for(WAIT, &|e| !e.is_empty()), "{:?}", ws.closed());
    assert_eq!(
        ws.events(),
        &[Ev {
            id: 9,
            event: Some("hi".into()),
            data: "hello".into()
        }]
    );
    assert!(node.wait_log(0, "WARN  backplane: dropped a message on \"t\""));
    assert_eq!(node.log_lines(0, "dropped a message").len(), 2);
    // Each publish reply of the wrong shape is a 503, the link staying up.
    let mut http = Http::new(a);
    for what in ["+OK", ":0", ":-3", "-ERR", "bulk", "array"] {
        let (r, _) = http.publish("t", None, what);
        assert_eq!(r.status, 503, "reply {what}: {}", r.text());
    }
    assert_eq!(
        conns.load(Ordering::SeqCst),
        2,
        "no reconnect for a wrong reply"
    );
    // A well-formed id is taken as it is.
    let (r, _) = http.publish("t", None, "ok");
    assert_eq!((r.status, json_u64(&r.text(), "id")), (201, Some(42)));
    // NOSCRIPT twice: EVALSHA, then EVAL once, then refused.
    let (r, _) = http.publish("t", None, "noscript");
    assert_eq!(r.status, 503, "{}", r.text());
    // Garbage fails the command link: 503, a warning, a new connection.
    let (r, _) = http.publish("t", None, "garbage");
    assert_eq!(r.status, 503, "{}", r.text());
    assert!(node.wait_log(0, "WARN  redis: command link"));
    assert!(wait_until(WAIT, || conns.load(Ordering::SeqCst) >= 3));
    assert_eq!(get(a, "/healthz").status, 200);
    assert!(ws.closed().is_none());
}

// ---- the keys in Redis ----------------------------------------------------------------------

#[test]
fn keys_stream_entries_history_cap_and_prefixes_in_redis() {
    let redis = RedisServer::start();
    let a = Node::start("a", &redis.url(), &["--history-events", "5"]);
    let b = Node::start("b", &redis.url(), &["--redis-prefix", "other:"]);
    let ids: Vec<u64> = (0..12)
        .map(|i| publish(a.addr(), "k", Some("n"), &format!("v{i}")))
        .collect();
    check_consecutive(&ids).unwrap();
    let last = *ids.last().unwrap();
    let seq = redis.cmd(&["GET", "pushwire:{k}:seq"]);
    assert_eq!(seq.as_bytes(), Some(last.to_string().as_bytes()));
    assert_eq!(redis.int(&["XLEN", "pushwire:{k}:events"]), 5, "MAXLEN");
    let Value::Array(entries) = redis.cmd(&["XRANGE", "pushwire:{k}:events", "-", "+"]) else {
        panic!("XRANGE")
    };
    let entry_ids: Vec<String> = entries
        .iter()
        .map(|e| match e {
            Value::Array(v) => String::from_utf8_lossy(v[0].as_bytes().unwrap()).into_owned(),
            other => panic!("{other:?}"),
        })
        .collect();
    let want: Vec<String> = ids[7..].iter().map(|id| format!("0-{id}")).collect();
    assert_eq!(entry_ids, want);
    // A hub with another prefix shares nothing with these.
    let p = events_page(b.addr(), "k", 0);
    assert_eq!((p.status, p.ids.len()), (200, 0), "{}", p.text);
    let other = publish(b.addr(), "k", None, "x");
    assert!(other > last, "a clock id of its own");
    assert_eq!(redis.int(&["XLEN", "other:{k}:events"]), 1);
    // A reader from before the kept history learns of the gap.
    let p = events_page(a.addr(), "k", ids[2]);
    assert_eq!(p.ids, ids[7..].to_vec(), "{}", p.text);
    assert!(p.gap, "{}", p.text);
}
