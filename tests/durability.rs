//! Issue 10, section 3: the faults a data directory must survive, each with a test, against
//! the hub example as a real process on loopback (no mocks): `kill -9` under load, a torn
//! tail, a flipped byte, a full disk, a bad data directory, and the id ranges of the two
//! fsync modes across an unclean stop.
//!
//! Every loop is bounded in count and time; nothing asserts how long something took (the
//! machine is small and noisy), timings are only printed.
//!
//! `PUSHWIRE_KILL_CYCLES=N` sets the number of kill -9 cycles (3 by default; the long run,
//! `tests/interop/durability.sh`, uses 20). `PUSHWIRE_KEEP_DIRS=1` keeps the temporary
//! directories (data dirs and hub stderr logs) for a post-mortem.

mod util;

#[path = "util/sse_parser.rs"]
mod sse_parser;

use std::collections::{BTreeSet, HashMap, HashSet};
use std::fs;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{Shutdown, SocketAddr, TcpListener, TcpStream};
use std::os::unix::fs::{DirBuilderExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{mpsc, Arc, Mutex, Once};
use std::thread;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use pushwire::proto::store::{scan, Corruption, Record, Recovered, Tail, DEFAULT_MAX_RECORD};
use pushwire::proto::topic::HistoryLimits;
use pushwire::proto::webhook::{verify, Secret, DEFAULT_TOLERANCE};
use rand::Rng;
use sse_parser::{ParsedEvent, SseParser};
use util::{frame_bytes, json_u64, read_response, Resp};

const SEG_HEADER_LEN: usize = pushwire::proto::store::SEGMENT_HEADER_LEN;

// ---- small helpers ----------------------------------------------------------------------

fn now_unix_us() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_micros() as u64)
}

/// `key` of the object `obj` in a `/stats` answer (`{..,"obj":{..,"key":N,..},..}`).
fn stat(stats: &str, obj: &str, key: &str) -> Option<u64> {
    let at = stats.find(&format!("\"{obj}\":{{"))?;
    let inner = &stats[at..];
    json_u64(&inner[..inner.find('}')?], key)
}

/// `s` cut to 40 characters, for messages.
fn short(s: &str) -> String {
    match s.char_indices().nth(40) {
        Some((at, _)) => format!("{}…", &s[..at]),
        None => s.to_owned(),
    }
}

fn ms(d: Duration) -> u128 {
    d.as_millis()
}

/// Polls `cond` every 20 ms until it holds or `secs` pass; returns whether it held.
fn wait_until(secs: u64, mut cond: impl FnMut() -> bool) -> bool {
    let deadline = Instant::now() + Duration::from_secs(secs);
    loop {
        if cond() {
            return true;
        }
        if Instant::now() > deadline {
            return false;
        }
        thread::sleep(Duration::from_millis(20));
    }
}

/// A temporary directory, removed on drop (kept when `PUSHWIRE_KEEP_DIRS` is set).
struct TempDir(PathBuf);

impl TempDir {
    fn new(tag: &str) -> TempDir {
        static N: AtomicUsize = AtomicUsize::new(0);
        let p = std::env::temp_dir().join(format!(
            "pushwire-dur-{tag}-{}-{}",
            std::process::id(),
            N.fetch_add(1, Ordering::SeqCst)
        ));
        let _ = fs::remove_dir_all(&p);
        fs::DirBuilder::new()
            .recursive(true)
            .mode(0o755)
            .create(&p)
            .unwrap();
        // Other users (the permission case runs the hub as nobody) must reach inside.
        fs::set_permissions(&p, fs::Permissions::from_mode(0o755)).unwrap();
        TempDir(p)
    }

    fn join(&self, name: &str) -> PathBuf {
        self.0.join(name)
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        if std::env::var_os("PUSHWIRE_KEEP_DIRS").is_some() {
            eprintln!("kept {}", self.0.display());
        } else {
            let _ = fs::remove_dir_all(&self.0);
        }
    }
}

/// Copies the regular files of `from` into a fresh directory `to` (mode 0700).
fn copy_dir(from: &Path, to: &Path) {
    let _ = fs::remove_dir_all(to);
    fs::DirBuilder::new().mode(0o700).create(to).unwrap();
    for e in fs::read_dir(from).unwrap() {
        let e = e.unwrap();
        if e.file_type().unwrap().is_file() {
            fs::copy(e.path(), to.join(e.file_name())).unwrap();
        }
    }
}

/// The log segments of a data dir (`NNNNNNNNNN.seg`), oldest first.
fn segments(dir: &Path) -> Vec<(u64, PathBuf)> {
    let mut v: Vec<(u64, PathBuf)> = fs::read_dir(dir)
        .unwrap()
        .filter_map(|e| {
            let e = e.ok()?;
            let name = e.file_name().into_string().ok()?;
            let num = name.strip_suffix(".seg")?;
            (num.len() == 10 && num.bytes().all(|b| b.is_ascii_digit()))
                .then(|| (num.parse().unwrap(), e.path()))
        })
        .collect();
    v.sort();
    v
}

/// Bytes in the log files of a data dir, and the live data they hold
/// ([`Recovered::live_len`] after replaying them as the hub does: the newest snapshot, then
/// the segments after it).
fn disk_and_live(dir: &Path, limits: HistoryLimits) -> (u64, usize) {
    let mut files: Vec<(u64, bool, PathBuf)> = fs::read_dir(dir)
        .unwrap()
        .filter_map(|e| {
            let p = e.ok()?.path();
            let name = p.file_name()?.to_str()?.to_owned();
            let (num, ext) = name.split_once('.')?;
            let snap = match ext {
                "seg" => false,
                "snap" => true,
                _ => return None,
            };
            Some((num.parse().ok()?, snap, p))
        })
        .collect();
    files.sort();
    if let Some(at) = files.iter().rposition(|f| f.1) {
        files.drain(..at);
    }
    let mut state = Recovered::new(limits);
    let mut total = 0;
    for (_, _, p) in &files {
        let bytes = fs::read(p).unwrap();
        total += bytes.len() as u64;
        for (_, r) in scan(&bytes, DEFAULT_MAX_RECORD).records {
            let _ = state.apply(r);
        }
    }
    (total, state.live_len())
}

fn dir_listing(dir: &Path) -> Vec<String> {
    let mut v: Vec<String> = fs::read_dir(dir)
        .map(|rd| {
            rd.filter_map(|e| e.ok()?.file_name().into_string().ok())
                .collect()
        })
        .unwrap_or_default();
    v.sort();
    v
}

// ---- JSON bits (enough for the hub's answers; strings fully unescaped) -------------------

/// Parses the JSON string at the start of `s`; returns it and the text after it.
fn json_string(s: &str) -> Option<(String, &str)> {
    let body = s.strip_prefix('"')?;
    let mut out = String::new();
    let mut it = body.char_indices();
    let hex4 = |it: &mut std::str::CharIndices<'_>| -> Option<u32> {
        let mut v = 0;
        for _ in 0..4 {
            v = v * 16 + it.next()?.1.to_digit(16)?;
        }
        Some(v)
    };
    while let Some((i, c)) = it.next() {
        match c {
            '"' => return Some((out, &body[i + 1..])),
            '\\' => match it.next()?.1 {
                '"' => out.push('"'),
                '\\' => out.push('\\'),
                '/' => out.push('/'),
                'b' => out.push('\u{8}'),
                'f' => out.push('\u{c}'),
                'n' => out.push('\n'),
                'r' => out.push('\r'),
                't' => out.push('\t'),
                'u' => {
                    let hi = hex4(&mut it)?;
                    let cp = if (0xD800..0xDC00).contains(&hi) {
                        if it.next()?.1 != '\\' || it.next()?.1 != 'u' {
                            return None;
                        }
                        let lo = hex4(&mut it)?;
                        0x10000 + ((hi - 0xD800) << 10) + (lo.checked_sub(0xDC00)?)
                    } else {
                        hi
                    };
                    out.push(char::from_u32(cp)?);
                }
                _ => return None,
            },
            c => out.push(c),
        }
    }
    None
}

/// Parses `N,"event":E,"data":"..."` (what follows `{"id":` in an event object).
fn event_fields(s: &str) -> Option<(u64, Option<String>, String)> {
    let n = s.bytes().take_while(u8::is_ascii_digit).count();
    let id = s[..n].parse().ok()?;
    let rest = s[n..].strip_prefix(",\"event\":")?;
    let (name, rest) = match rest.strip_prefix("null") {
        Some(r) => (None, r),
        None => {
            let (name, r) = json_string(rest)?;
            (Some(name), r)
        }
    };
    let (data, _) = json_string(rest.strip_prefix(",\"data\":")?)?;
    Some((id, name, data))
}

/// Every event `(id, data)` of an `/events` or `/poll` answer, in order; `None` if one of
/// them does not parse.
fn parse_events(text: &str) -> Option<Vec<(u64, String)>> {
    text.match_indices("{\"id\":")
        .map(|(at, _)| event_fields(&text[at + 6..]).map(|(id, _, data)| (id, data)))
        .collect()
}

/// `(topic, id, data)` of a webhook body
/// `{"type":..,"timestamp":..,"data":{"topic":"T","id":N,"event":..,"data":".."}}`.
fn parse_webhook_body(body: &[u8]) -> Option<(String, u64, String)> {
    let text = std::str::from_utf8(body).ok()?;
    let at = text.find("\"data\":{\"topic\":")?;
    let (topic, rest) = json_string(&text[at + 16..])?;
    let (id, _, data) = event_fields(rest.strip_prefix(",\"id\":")?)?;
    Some((topic, id, data))
}

// ---- the hub as a process ---------------------------------------------------------------

/// The hub example, rebuilt once per test process when a source file is newer than it
/// (`cargo test --test durability` alone does not rebuild examples).
fn hub_bin() -> PathBuf {
    static FRESH: Once = Once::new();
    let bin = util::example_bin("hub");
    FRESH.call_once(|| {
        let built = fs::metadata(&bin).and_then(|m| m.modified()).ok();
        let root = Path::new(env!("CARGO_MANIFEST_DIR"));
        let mut newest = None;
        let mut stack = vec![
            root.join("src"),
            root.join("examples"),
            root.join("Cargo.toml"),
        ];
        while let Some(p) = stack.pop() {
            let Ok(m) = fs::metadata(&p) else { continue };
            if m.is_dir() {
                stack.extend(
                    fs::read_dir(&p)
                        .unwrap()
                        .filter_map(|e| Some(e.ok()?.path())),
                );
            } else if let Ok(t) = m.modified() {
                newest = newest.max(Some(t));
            }
        }
        if built < newest {
            let release = bin
                .parent()
                .and_then(|p| p.parent())
                .is_some_and(|d| d.ends_with("release"));
            let mut cmd = Command::new(env!("CARGO"));
            cmd.args(["build", "--example", "hub"]);
            if release {
                cmd.arg("--release");
            }
            let st = cmd.status().expect("cargo build --example hub");
            assert!(st.success(), "rebuilding the hub example failed");
        }
    });
    bin
}

/// A running hub, killed with SIGKILL on drop.
struct HubProc {
    child: Child,
    addr: SocketAddr,
    stderr: PathBuf,
}

impl HubProc {
    /// SIGKILL (`Child::kill`), then reap it.
    fn kill9(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    fn stderr_text(&self) -> String {
        fs::read_to_string(&self.stderr).unwrap_or_default()
    }
}

impl Drop for HubProc {
    fn drop(&mut self) {
        self.kill9();
    }
}

/// A hub that did not come up: how it ended and what it printed.
#[derive(Debug)]
struct StartFailure {
    /// `None`: it neither printed its address nor exited in time (it was killed).
    status: Option<ExitStatus>,
    stdout: String,
    stderr: String,
}

/// Waits (at most `secs`) for `child` to exit; kills it and returns `None` otherwise.
fn wait_exit(child: &mut Child, secs: u64) -> Option<ExitStatus> {
    let deadline = Instant::now() + Duration::from_secs(secs);
    loop {
        if let Ok(Some(st)) = child.try_wait() {
            return Some(st);
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            return None;
        }
        thread::sleep(Duration::from_millis(10));
    }
}

/// Starts `cmd` (the hub, possibly behind a wrapper such as setpriv) with `--addr
/// 127.0.0.1:0` and `args`, stderr into the file `stderr`, and waits (at most 30 s) for
/// its "listening on" line.
fn spawn_hub(mut cmd: Command, args: &[&str], stderr: &Path) -> Result<HubProc, StartFailure> {
    let err_file = fs::File::create(stderr).unwrap();
    let mut child = cmd
        .arg("--addr")
        .arg("127.0.0.1:0")
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(err_file)
        .spawn()
        .expect("spawn the hub");
    let out = child.stdout.take().unwrap();
    let (tx, rx) = mpsc::channel();
    thread::spawn(move || {
        let mut r = BufReader::new(out);
        let mut line = String::new();
        let _ = r.read_line(&mut line);
        let _ = tx.send(line.clone());
        // Keep draining (the hub prints nothing else today) until it exits.
        let mut rest = String::new();
        let _ = r.read_to_string(&mut rest);
        let _ = tx.send(rest);
    });
    let fail = |child: &mut Child, stdout: String| {
        let status = wait_exit(child, 15);
        let mut stdout = stdout;
        if let Ok(rest) = rx.recv_timeout(Duration::from_secs(2)) {
            stdout.push_str(&rest);
        }
        StartFailure {
            status,
            stdout,
            stderr: fs::read_to_string(stderr).unwrap_or_default(),
        }
    };
    match rx.recv_timeout(Duration::from_secs(30)) {
        Ok(line) if line.contains("://") => {
            let addr = line
                .trim()
                .rsplit("//")
                .next()
                .and_then(|a| a.parse().ok())
                .unwrap_or_else(|| panic!("no address in {line:?}"));
            Ok(HubProc {
                child,
                addr,
                stderr: stderr.to_owned(),
            })
        }
        Ok(line) => Err(fail(&mut child, line)),
        Err(_) => {
            let _ = child.kill();
            Err(fail(&mut child, String::new()))
        }
    }
}

fn start(args: &[&str], stderr: &Path) -> Result<HubProc, StartFailure> {
    spawn_hub(Command::new(hub_bin()), args, stderr)
}

fn start_ok(args: &[&str], stderr: &Path) -> HubProc {
    start(args, stderr).unwrap_or_else(|f| {
        panic!(
            "the hub did not start with {args:?}: exit {:?}\nstdout: {}\nstderr:\n{}",
            f.status, f.stdout, f.stderr
        )
    })
}

fn no_panic(hub: &HubProc, what: &str) {
    let err = hub.stderr_text();
    assert!(
        !err.contains("panicked"),
        "{what}: the hub panicked:\n{err}"
    );
}

// ---- HTTP -------------------------------------------------------------------------------

/// A keep-alive HTTP/1.1 client connection that reports failures instead of panicking.
struct Http {
    s: TcpStream,
    buf: Vec<u8>,
}

impl Http {
    fn connect(addr: SocketAddr) -> Option<Http> {
        let s = TcpStream::connect_timeout(&addr, Duration::from_secs(2)).ok()?;
        s.set_read_timeout(Some(Duration::from_secs(10))).ok()?;
        s.set_nodelay(true).ok()?;
        Some(Http { s, buf: Vec::new() })
    }

    fn send(&mut self, method: &str, path: &str, body: &[u8]) -> Option<Resp> {
        let mut req = format!("{method} {path} HTTP/1.1\r\nHost: t\r\n").into_bytes();
        if method == "POST" {
            req.extend_from_slice(format!("Content-Length: {}\r\n", body.len()).as_bytes());
        }
        req.extend_from_slice(b"\r\n");
        req.extend_from_slice(body);
        self.s.write_all(&req).ok()?;
        read_response(&mut self.s, &mut self.buf, method == "HEAD")
    }
}

fn get(addr: SocketAddr, path: &str) -> Resp {
    Http::connect(addr)
        .and_then(|mut h| h.send("GET", path, b""))
        .unwrap_or_else(|| panic!("no answer to GET {path} from {addr}"))
}

fn post(addr: SocketAddr, path: &str, body: &str) -> Resp {
    Http::connect(addr)
        .and_then(|mut h| h.send("POST", path, body.as_bytes()))
        .unwrap_or_else(|| panic!("no answer to POST {path} from {addr}"))
}

/// Publishes and returns the id of the 201 answer (panics otherwise).
fn publish(addr: SocketAddr, topic: &str, data: &str) -> u64 {
    let r = post(addr, &format!("/topics/{topic}"), data);
    assert_eq!(r.status, 201, "publish {data:?} to {topic}: {}", r.text());
    json_u64(&r.text(), "id").unwrap_or_else(|| panic!("no id in {}", r.text()))
}

/// A whole topic log, read from `/events?since=0` by following `next`.
struct Listing {
    events: Vec<(u64, String)>,
    /// The `gap` flag of the first page (since = 0).
    first_gap: bool,
    /// Some later page (after a cursor) said `gap: true`.
    later_gap: bool,
}

impl Listing {
    fn ids(&self) -> Vec<u64> {
        self.events.iter().map(|e| e.0).collect()
    }
}

fn list_all(addr: SocketAddr, topic: &str) -> Listing {
    let mut http = Http::connect(addr).unwrap_or_else(|| panic!("connect to {addr}"));
    let mut since = 0u64;
    let mut events: Vec<(u64, String)> = Vec::new();
    let (mut first_gap, mut later_gap) = (false, false);
    for page in 0..1_000_000 {
        let path = format!("/topics/{topic}/events?since={since}");
        let r = http
            .send("GET", &path, b"")
            .unwrap_or_else(|| panic!("no answer to GET {path}"));
        assert_eq!(r.status, 200, "GET {path}: {}", r.text());
        let text = r.text();
        let got = parse_events(&text).unwrap_or_else(|| panic!("unparsable page: {text}"));
        let gap = text.contains("\"gap\":true");
        if page == 0 {
            first_gap = gap;
        } else {
            later_gap |= gap;
        }
        if got.is_empty() {
            return Listing {
                events,
                first_gap,
                later_gap,
            };
        }
        for (id, data) in got {
            assert!(
                events.last().is_none_or(|l| id > l.0),
                "/events ids not increasing: {id} after {:?} (page since={since})",
                events.last()
            );
            events.push((id, data));
        }
        since = json_u64(&text, "next").unwrap_or_else(|| panic!("no next in {text}"));
        assert_eq!(
            Some(since),
            events.last().map(|e| e.0),
            "next is the last id"
        );
    }
    panic!("/events of {topic}: more than a million pages");
}

// ---- streaming clients ------------------------------------------------------------------

/// An SSE stream over a raw socket: de-chunks the body and feeds the WHATWG parser.
struct SseConn {
    s: TcpStream,
    raw: Vec<u8>,
    parser: SseParser,
    ended: bool,
}

impl SseConn {
    /// Opens `path` with extra header lines; `None` unless the answer is a 200 stream.
    fn open(addr: SocketAddr, path: &str, extra: &str) -> Option<SseConn> {
        let mut s = TcpStream::connect_timeout(&addr, Duration::from_secs(2)).ok()?;
        s.set_read_timeout(Some(Duration::from_secs(10))).ok()?;
        s.write_all(
            format!("GET {path} HTTP/1.1\r\nHost: t\r\nAccept: text/event-stream\r\n{extra}\r\n")
                .as_bytes(),
        )
        .ok()?;
        let mut raw = Vec::new();
        let head = read_response(&mut s, &mut raw, true)?;
        if head.status != 200 || head.header("transfer-encoding") != Some("chunked") {
            return None;
        }
        s.set_read_timeout(Some(Duration::from_millis(300))).ok()?;
        Some(SseConn {
            s,
            raw,
            parser: SseParser::new(),
            ended: false,
        })
    }

    /// Reads once (waiting at most 300 ms); the events completed. `None` once the stream
    /// ended (EOF, error, last chunk, malformed chunking).
    fn read_events(&mut self) -> Option<Vec<ParsedEvent>> {
        let mut events = self.pump()?;
        if self.ended {
            return if events.is_empty() {
                None
            } else {
                Some(events)
            };
        }
        let mut tmp = [0u8; 65536];
        match self.s.read(&mut tmp) {
            Ok(0) => self.ended = true,
            Ok(k) => {
                self.raw.extend_from_slice(&tmp[..k]);
                events.extend(self.pump()?);
            }
            Err(e)
                if matches!(
                    e.kind(),
                    std::io::ErrorKind::WouldBlock
                        | std::io::ErrorKind::TimedOut
                        | std::io::ErrorKind::Interrupted
                ) => {}
            Err(_) => self.ended = true,
        }
        if self.ended && events.is_empty() {
            return None;
        }
        Some(events)
    }

    /// Decodes the whole chunks in `raw`; `None` for malformed chunking.
    fn pump(&mut self) -> Option<Vec<ParsedEvent>> {
        let mut events = Vec::new();
        while !self.ended {
            let Some(eol) = self.raw.windows(2).position(|w| w == b"\r\n") else {
                break;
            };
            let size_text = std::str::from_utf8(&self.raw[..eol]).ok()?;
            let size = usize::from_str_radix(size_text.split(';').next()?.trim(), 16).ok()?;
            if size == 0 {
                self.ended = true;
                break;
            }
            if self.raw.len() < eol + 2 + size + 2 {
                break;
            }
            let data = self.raw[eol + 2..eol + 2 + size].to_vec();
            self.raw.drain(..eol + 2 + size + 2);
            events.extend(self.parser.feed(&data));
        }
        Some(events)
    }
}

/// A WebSocket subscription over a raw socket (RFC 6455 client side: masked frames).
struct WsConn {
    s: TcpStream,
    buf: Vec<u8>,
    msg: Vec<u8>,
}

impl WsConn {
    fn open(addr: SocketAddr, path: &str) -> Option<WsConn> {
        let mut s = TcpStream::connect_timeout(&addr, Duration::from_secs(2)).ok()?;
        s.set_read_timeout(Some(Duration::from_secs(10))).ok()?;
        s.set_nodelay(true).ok()?;
        let req = format!(
            "GET {path} HTTP/1.1\r\nHost: t\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
             Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n"
        );
        s.write_all(req.as_bytes()).ok()?;
        let mut buf = Vec::new();
        let head = read_response(&mut s, &mut buf, true)?;
        if head.status != 101 {
            return None;
        }
        s.set_read_timeout(Some(Duration::from_millis(300))).ok()?;
        Some(WsConn {
            s,
            buf,
            msg: Vec::new(),
        })
    }

    /// Reads once (waiting at most 300 ms); the text messages completed. Pings are
    /// answered. `None` once the connection ended (EOF, error, a close frame).
    fn read_messages(&mut self) -> Option<Vec<String>> {
        let mut out = Vec::new();
        let mut tmp = [0u8; 65536];
        match self.s.read(&mut tmp) {
            Ok(0) => return None,
            Ok(k) => self.buf.extend_from_slice(&tmp[..k]),
            Err(e)
                if matches!(
                    e.kind(),
                    std::io::ErrorKind::WouldBlock
                        | std::io::ErrorKind::TimedOut
                        | std::io::ErrorKind::Interrupted
                ) => {}
            Err(_) => return None,
        }
        loop {
            let b = &self.buf;
            if b.len() < 2 {
                break;
            }
            let (len, hl) = match b[1] & 0x7f {
                126 if b.len() >= 4 => (u16::from_be_bytes([b[2], b[3]]) as usize, 4),
                127 if b.len() >= 10 => (
                    u64::from_be_bytes(b[2..10].try_into().unwrap()) as usize,
                    10,
                ),
                126 | 127 => break,
                n => (n as usize, 2),
            };
            if b[1] & 0x80 != 0 {
                return None; // a masked server frame: protocol error
            }
            if b.len() < hl + len {
                break;
            }
            let (fin, opcode) = (b[0] & 0x80 != 0, b[0] & 0x0f);
            let payload = b[hl..hl + len].to_vec();
            self.buf.drain(..hl + len);
            match opcode {
                0 | 1 => {
                    self.msg.extend_from_slice(&payload);
                    if fin {
                        out.push(
                            String::from_utf8_lossy(&std::mem::take(&mut self.msg)).into_owned(),
                        );
                    }
                }
                8 => return None,
                9 => {
                    let pong = frame_bytes(true, 10, &payload, [1, 2, 3, 4]);
                    self.s.write_all(&pong).ok()?;
                }
                _ => {}
            }
        }
        Some(out)
    }
}

// ---- the webhook receiver ---------------------------------------------------------------

/// One request the receiver got.
#[derive(Clone, Debug)]
struct Delivery {
    webhook_id: String,
    timestamp: String,
    signature: String,
    body: Vec<u8>,
}

/// An HTTP receiver on loopback that records every request. It answers 204, except that
/// some messages fail their first attempts (500), so retries happen and cross restarts:
/// per `webhook-id`, 1 in 8 fails twice, another 1 in 8 fails once.
struct Receiver {
    addr: SocketAddr,
    log: Arc<Mutex<Vec<Delivery>>>,
    /// While set, requests are read but never answered (and not logged): the attempts
    /// stay in flight, so the hub writes no outcome for them.
    hold: Arc<AtomicBool>,
}

/// What the connection threads of a [`Receiver`] share.
#[derive(Clone)]
struct RcvShared {
    log: Arc<Mutex<Vec<Delivery>>>,
    counts: Arc<Mutex<HashMap<String, usize>>>,
    hold: Arc<AtomicBool>,
}

impl Receiver {
    fn start() -> Receiver {
        let l = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = l.local_addr().unwrap();
        let shared = RcvShared {
            log: Arc::default(),
            counts: Arc::default(),
            hold: Arc::default(),
        };
        let (log, hold) = (shared.log.clone(), shared.hold.clone());
        thread::spawn(move || {
            for s in l.incoming() {
                let Ok(s) = s else { break };
                let sh = shared.clone();
                thread::spawn(move || receiver_conn(s, sh));
            }
        });
        Receiver { addr, log, hold }
    }

    fn deliveries_from(&self, from: usize) -> Vec<Delivery> {
        let g = self.log.lock().unwrap();
        g.get(from..).map(<[Delivery]>::to_vec).unwrap_or_default()
    }
}

fn fnv(s: &str) -> u64 {
    s.bytes().fold(0xcbf29ce484222325u64, |h, b| {
        (h ^ b as u64).wrapping_mul(0x100000001b3)
    })
}

fn receiver_conn(mut s: TcpStream, sh: RcvShared) {
    let _ = s.set_read_timeout(Some(Duration::from_secs(120)));
    let mut buf = Vec::new();
    let mut tmp = [0u8; 16384];
    loop {
        let (d, used) = loop {
            let mut hdrs = [httparse::EMPTY_HEADER; 32];
            let mut req = httparse::Request::new(&mut hdrs);
            if let Ok(httparse::Status::Complete(n)) = req.parse(&buf) {
                let h = |name: &str| {
                    req.headers
                        .iter()
                        .find(|x| x.name.eq_ignore_ascii_case(name))
                        .map(|x| String::from_utf8_lossy(x.value).into_owned())
                        .unwrap_or_default()
                };
                let len: usize = h("content-length").parse().unwrap_or(0);
                if buf.len() >= n + len {
                    let d = Delivery {
                        webhook_id: h("webhook-id"),
                        timestamp: h("webhook-timestamp"),
                        signature: h("webhook-signature"),
                        body: buf[n..n + len].to_vec(),
                    };
                    break (d, n + len);
                }
            }
            match s.read(&mut tmp) {
                Ok(0) | Err(_) => return,
                Ok(k) => buf.extend_from_slice(&tmp[..k]),
            }
        };
        buf.drain(..used);
        if sh.hold.load(Ordering::SeqCst) {
            // Hold the attempt open (bounded) and leave without an answer.
            for _ in 0..600 {
                if !sh.hold.load(Ordering::SeqCst) {
                    break;
                }
                thread::sleep(Duration::from_millis(100));
            }
            return;
        }
        let nth = {
            let mut c = sh.counts.lock().unwrap();
            let n = c.entry(d.webhook_id.clone()).or_default();
            *n += 1;
            *n
        };
        let fails = match fnv(&d.webhook_id) % 8 {
            0 => 2,
            1 => 1,
            _ => 0,
        };
        sh.log.lock().unwrap().push(d);
        let answer: &[u8] = if nth <= fails {
            b"HTTP/1.1 500 Try Again\r\nContent-Length: 2\r\n\r\nno"
        } else {
            b"HTTP/1.1 204 No Content\r\n\r\n"
        };
        if s.write_all(answer).is_err() {
            return;
        }
    }
}

/// Registers a webhook for `topic` pointing at `url`; returns (id, secret).
fn add_webhook(addr: SocketAddr, topic: &str, url: &str) -> (String, String) {
    let enc: String = url
        .bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'.' | b'-' | b'_' => (b as char).to_string(),
            _ => format!("%{b:02X}"),
        })
        .collect();
    let r = post(
        addr,
        &format!("/topics/{topic}/webhooks"),
        &format!("url={enc}"),
    );
    assert_eq!(r.status, 201, "webhook registration: {}", r.text());
    let text = r.text();
    let id = json_string(&text[text.find("\"id\":").expect("id") + 5..])
        .unwrap()
        .0;
    let secret = json_string(&text[text.find("\"secret\":").expect("secret") + 9..])
        .unwrap()
        .0;
    (id, secret)
}

// ---- 1. kill -9 under load --------------------------------------------------------------

const KILL_TOPIC: &str = "dur";

/// What one subscriber saw, in order.
#[derive(Clone, Copy, Debug)]
enum Obs {
    /// (Re)connected, resuming after this id (0: live / from the start).
    Connect(u64),
    /// A gap notice.
    Gap,
    /// An event.
    Ev(u64),
}

struct Sub {
    name: &'static str,
    obs: Mutex<Vec<Obs>>,
    /// The last event id seen (0: none yet).
    last: AtomicU64,
    errors: Mutex<Vec<String>>,
}

impl Sub {
    fn new(name: &'static str) -> Sub {
        Sub {
            name,
            obs: Mutex::new(Vec::new()),
            last: AtomicU64::new(0),
            errors: Mutex::new(Vec::new()),
        }
    }

    fn ev(&self, load: &Load, id: u64, data: &str) {
        self.obs.lock().unwrap().push(Obs::Ev(id));
        self.last.store(id, Ordering::SeqCst);
        load.observe(id, data, self.name);
    }

    fn error(&self, e: String) {
        let mut g = self.errors.lock().unwrap();
        if g.len() < 20 {
            g.push(e);
        }
    }

    fn gaps(&self) -> usize {
        self.obs
            .lock()
            .unwrap()
            .iter()
            .filter(|o| matches!(o, Obs::Gap))
            .count()
    }

    /// At most once each, in increasing order; an id skipped only after a gap notice.
    fn check(&self) -> Vec<String> {
        let obs = self.obs.lock().unwrap().clone();
        let mut errs: Vec<String> = self.errors.lock().unwrap().clone();
        let mut last: Option<u64> = None;
        let mut gap = false;
        let mut cursor = 0;
        for (i, o) in obs.iter().enumerate() {
            match *o {
                Obs::Connect(c) => cursor = c,
                Obs::Gap => gap = true,
                Obs::Ev(id) => {
                    if let Some(l) = last {
                        let ctx = &obs[i.saturating_sub(6)..(i + 1).min(obs.len())];
                        if id <= l {
                            errs.push(format!(
                                "{}: event {id} after {l} (duplicate or out of order; \
                                 resumed after {cursor}); recent: {ctx:?}",
                                self.name
                            ));
                        } else if id != l + 1 && !gap {
                            errs.push(format!(
                                "{}: skipped {}..={} without a gap notice (resumed after \
                                 {cursor}); recent: {ctx:?}",
                                self.name,
                                l + 1,
                                id - 1
                            ));
                        }
                    }
                    last = Some(id);
                    gap = false;
                }
            }
        }
        errs
    }
}

#[derive(Clone)]
struct Acked {
    id: u64,
    data: String,
}

/// State shared by the load threads and the test.
struct Load {
    /// The hub's address; `None` while it is down.
    addr: Mutex<Option<SocketAddr>>,
    stop_pub: AtomicBool,
    stop_sub: AtomicBool,
    acked: Mutex<Vec<Acked>>,
    /// Publishes whose answer never came (the hub died): they may or may not be in the log.
    unknown: Mutex<Vec<String>>,
    /// Answers other than 201.
    refused: Mutex<Vec<String>>,
    /// Every (id, data) anyone saw: publish answers, subscribers, /events, webhooks.
    seen: Mutex<HashMap<u64, (String, String)>>,
    conflicts: Mutex<Vec<String>>,
    /// Clones of the subscribers' sockets, shut down to stop them.
    sockets: Mutex<Vec<TcpStream>>,
}

impl Load {
    fn addr(&self) -> Option<SocketAddr> {
        *self.addr.lock().unwrap()
    }

    fn observe(&self, id: u64, data: &str, source: &str) {
        let mut seen = self.seen.lock().unwrap();
        match seen.get(&id) {
            Some((d, src)) if d != data => {
                let mut c = self.conflicts.lock().unwrap();
                if c.len() < 20 {
                    c.push(format!(
                        "id {id}: {data:?} ({source}) but {d:?} earlier ({src})"
                    ));
                }
            }
            Some(_) => {}
            None => {
                seen.insert(id, (data.to_owned(), source.to_owned()));
            }
        }
    }

    fn keep_socket(&self, s: &TcpStream) {
        if let Ok(c) = s.try_clone() {
            self.sockets.lock().unwrap().push(c);
        }
    }

    fn acked_len(&self) -> usize {
        self.acked.lock().unwrap().len()
    }
}

fn publisher(load: Arc<Load>, n: usize) {
    let mut rng = rand::thread_rng();
    let mut http: Option<Http> = None;
    let mut seq = 0u64;
    let path = format!("/topics/{KILL_TOPIC}");
    while !load.stop_pub.load(Ordering::SeqCst) {
        let Some(addr) = load.addr() else {
            http = None;
            thread::sleep(Duration::from_millis(10));
            continue;
        };
        if http.is_none() {
            http = Http::connect(addr);
            if http.is_none() {
                thread::sleep(Duration::from_millis(10));
                continue;
            }
        }
        seq += 1;
        let pad = "abcdefghijklmnopqrstuvwxyz".repeat(rng.gen_range(0..8));
        let data = format!("p{n}-{seq:07}-{pad}");
        match http.as_mut().unwrap().send("POST", &path, data.as_bytes()) {
            Some(r) if r.status == 201 => match json_u64(&r.text(), "id") {
                Some(id) => {
                    load.observe(id, &data, "publish answer");
                    load.acked.lock().unwrap().push(Acked { id, data });
                }
                None => load
                    .refused
                    .lock()
                    .unwrap()
                    .push(format!("201 without id: {}", r.text())),
            },
            Some(r) => {
                load.refused
                    .lock()
                    .unwrap()
                    .push(format!("{} {}", r.status, r.text().trim()));
                http = None;
                thread::sleep(Duration::from_millis(50));
            }
            None => {
                load.unknown.lock().unwrap().push(data);
                http = None;
            }
        }
    }
}

fn sse_subscriber(load: Arc<Load>, sub: Arc<Sub>) {
    while !load.stop_sub.load(Ordering::SeqCst) {
        let Some(addr) = load.addr() else {
            thread::sleep(Duration::from_millis(10));
            continue;
        };
        let last = sub.last.load(Ordering::SeqCst);
        let extra = if last > 0 {
            format!("Last-Event-ID: {last}\r\n")
        } else {
            String::new()
        };
        let Some(mut c) = SseConn::open(addr, &format!("/topics/{KILL_TOPIC}/sse"), &extra) else {
            thread::sleep(Duration::from_millis(20));
            continue;
        };
        load.keep_socket(&c.s);
        sub.obs.lock().unwrap().push(Obs::Connect(last));
        while !load.stop_sub.load(Ordering::SeqCst) {
            let Some(events) = c.read_events() else { break };
            for e in events {
                if e.event == "gap" {
                    sub.obs.lock().unwrap().push(Obs::Gap);
                } else if let Ok(id) = e.last_event_id.parse::<u64>() {
                    sub.ev(&load, id, &e.data);
                } else {
                    sub.error(format!("sse: event without a numeric id: {e:?}"));
                }
            }
        }
    }
}

fn ws_subscriber(load: Arc<Load>, sub: Arc<Sub>) {
    while !load.stop_sub.load(Ordering::SeqCst) {
        let Some(addr) = load.addr() else {
            thread::sleep(Duration::from_millis(10));
            continue;
        };
        let last = sub.last.load(Ordering::SeqCst);
        let path = if last > 0 {
            format!("/topics/{KILL_TOPIC}/ws?since={last}")
        } else {
            format!("/topics/{KILL_TOPIC}/ws")
        };
        let Some(mut c) = WsConn::open(addr, &path) else {
            thread::sleep(Duration::from_millis(20));
            continue;
        };
        load.keep_socket(&c.s);
        sub.obs.lock().unwrap().push(Obs::Connect(last));
        while !load.stop_sub.load(Ordering::SeqCst) {
            let Some(msgs) = c.read_messages() else { break };
            for m in msgs {
                if m.starts_with("{\"gap\":true") {
                    sub.obs.lock().unwrap().push(Obs::Gap);
                } else if let Some((id, _, data)) =
                    m.strip_prefix("{\"id\":").and_then(event_fields)
                {
                    sub.ev(&load, id, &data);
                } else {
                    sub.error(format!("ws: unexpected message {m:?}"));
                }
            }
        }
    }
}

fn poll_subscriber(load: Arc<Load>, sub: Arc<Sub>) {
    let mut http: Option<Http> = None;
    while !load.stop_sub.load(Ordering::SeqCst) {
        let Some(addr) = load.addr() else {
            http = None;
            thread::sleep(Duration::from_millis(10));
            continue;
        };
        if http.is_none() {
            http = Http::connect(addr);
            match &http {
                Some(h) => load.keep_socket(&h.s),
                None => {
                    thread::sleep(Duration::from_millis(20));
                    continue;
                }
            }
        }
        let since = sub.last.load(Ordering::SeqCst);
        let path = format!("/topics/{KILL_TOPIC}/poll?since={since}&timeout=2");
        let Some(r) = http.as_mut().unwrap().send("GET", &path, b"") else {
            http = None;
            continue;
        };
        if r.status != 200 {
            sub.error(format!("poll: {} {}", r.status, r.text()));
            http = None;
            thread::sleep(Duration::from_millis(50));
            continue;
        }
        let text = r.text();
        let Some(events) = parse_events(&text) else {
            sub.error(format!("poll: unparsable answer {text}"));
            continue;
        };
        sub.obs.lock().unwrap().push(Obs::Connect(since));
        if text.contains("\"gap\":true") {
            sub.obs.lock().unwrap().push(Obs::Gap);
        }
        for (id, data) in events {
            sub.ev(&load, id, &data);
        }
    }
}

/// What the receiver got, indexed: each event's webhook-ids and each webhook-id's events.
#[derive(Default)]
struct HookBook {
    done: usize,
    by_event: HashMap<u64, BTreeSet<String>>,
    by_wid: HashMap<String, BTreeSet<u64>>,
    errors: Vec<String>,
}

impl HookBook {
    fn update(&mut self, rcv: &Receiver, secret: &Secret, load: &Load) {
        let new = rcv.deliveries_from(self.done);
        self.done += new.len();
        let now = now_unix_us() / 1_000_000;
        for d in new {
            if let Err(e) = verify(
                std::slice::from_ref(secret),
                &d.webhook_id,
                &d.timestamp,
                &d.signature,
                &d.body,
                now,
                DEFAULT_TOLERANCE,
            ) {
                self.error(format!("delivery {} does not verify: {e}", d.webhook_id));
            }
            match parse_webhook_body(&d.body) {
                Some((topic, id, data)) if topic == KILL_TOPIC => {
                    load.observe(id, &data, "webhook");
                    self.by_event
                        .entry(id)
                        .or_default()
                        .insert(d.webhook_id.clone());
                    self.by_wid.entry(d.webhook_id).or_default().insert(id);
                }
                _ => self.error(format!(
                    "unexpected webhook body: {}",
                    String::from_utf8_lossy(&d.body)
                )),
            }
        }
    }

    fn error(&mut self, e: String) {
        if self.errors.len() < 20 {
            self.errors.push(e);
        }
    }

    /// One webhook-id per event and one event per webhook-id (receivers deduplicate by it).
    fn check_ids(&self) -> Vec<String> {
        let mut errs = self.errors.clone();
        errs.extend(
            self.by_event
                .iter()
                .filter(|(_, w)| w.len() > 1)
                .take(5)
                .map(|(id, w)| format!("event {id} came with several webhook-ids: {w:?}")),
        );
        errs.extend(
            self.by_wid
                .iter()
                .filter(|(_, e)| e.len() > 1)
                .take(5)
                .map(|(w, e)| format!("webhook-id {w} carried several events: {e:?}")),
        );
        errs
    }
}

/// The checks made after every restart (and at the end) against the log as `/events`
/// shows it. Returns the listing.
fn check_log(load: &Load, addr: SocketAddr, when: &str) -> Listing {
    // Snapshots first: everything in them was acknowledged or seen before the listing is
    // read, so all of it must be in the log.
    let acked = load.acked.lock().unwrap().clone();
    let seen = load.seen.lock().unwrap().clone();
    let listing = list_all(addr, KILL_TOPIC);
    let mut errs = Vec::new();
    if listing.first_gap {
        errs.push("/events?since=0 reports a gap, but the history was never trimmed".into());
    }
    if listing.later_gap {
        errs.push("a page of /events after a cursor in the log reports a gap".into());
    }
    let log: HashMap<u64, &str> = listing
        .events
        .iter()
        .map(|(i, d)| (*i, d.as_str()))
        .collect();
    let mut datas = HashSet::new();
    for (id, data) in &listing.events {
        if !datas.insert(data.as_str()) {
            errs.push(format!(
                "data {data:?} is in the log twice (again as id {id})"
            ));
        }
    }
    let missing: Vec<String> = acked
        .iter()
        .filter(|a| log.get(&a.id) != Some(&a.data.as_str()))
        .map(|a| {
            let has = log.get(&a.id).map(|d| short(d));
            format!("{} {:?} (log has {has:?})", a.id, short(&a.data))
        })
        .collect();
    if !missing.is_empty() {
        errs.push(format!(
            "{} of {} publishes answered 201 are not in /events as answered: {:?}",
            missing.len(),
            acked.len(),
            &missing[..missing.len().min(8)]
        ));
    }
    let lost: Vec<String> = seen
        .iter()
        .filter(|(id, (d, _))| log.get(id) != Some(&d.as_str()))
        .map(|(id, (d, src))| {
            let has = log.get(id).map(|d| short(d));
            format!("{id} {:?} seen by {src} (log has {has:?})", short(d))
        })
        .collect();
    if !lost.is_empty() {
        errs.push(format!(
            "{} events seen before are not in /events as seen: {:?}",
            lost.len(),
            &lost[..lost.len().min(8)]
        ));
    }
    for (id, data) in &listing.events {
        load.observe(*id, data, "/events");
    }
    errs.extend(load.conflicts.lock().unwrap().iter().cloned());
    errs.extend(load.refused.lock().unwrap().iter().take(8).cloned());
    assert!(errs.is_empty(), "{when}:\n  {}", errs.join("\n  "));
    listing
}

/// Waits (at most 60 s) until the receiver got every event in `want`, then checks the
/// webhook-ids.
fn check_hooks(
    book: &mut HookBook,
    rcv: &Receiver,
    secret: &Secret,
    load: &Load,
    want: &[u64],
    acked: &HashSet<u64>,
    when: &str,
) {
    let ok = wait_until(60, || {
        book.update(rcv, secret, load);
        want.iter().all(|id| book.by_event.contains_key(id))
    });
    let mut errs = book.check_ids();
    if !ok {
        let missing: Vec<(u64, bool)> = want
            .iter()
            .filter(|id| !book.by_event.contains_key(id))
            .map(|id| (*id, acked.contains(id)))
            .collect();
        errs.push(format!(
            "{} events never reached the webhook receiver within 60 s (id, was it answered 201): {:?}",
            missing.len(),
            &missing[..missing.len().min(10)]
        ));
    }
    assert!(
        errs.is_empty(),
        "{when}: webhooks:\n  {}",
        errs.join("\n  ")
    );
}

/// Waits (at most 60 s) until every subscriber is at or past `id`, then checks what each saw.
fn check_subs(subs: &[Arc<Sub>], id: u64, when: &str) {
    let ok = wait_until(60, || {
        subs.iter().all(|s| s.last.load(Ordering::SeqCst) >= id)
    });
    let mut errs: Vec<String> = subs.iter().flat_map(|s| s.check()).collect();
    if !ok {
        errs.extend(
            subs.iter()
                .filter(|s| s.last.load(Ordering::SeqCst) < id)
                .map(|s| {
                    format!(
                        "{} did not get to id {id} within 60 s (last {})",
                        s.name,
                        s.last.load(Ordering::SeqCst)
                    )
                }),
        );
    }
    assert!(
        errs.is_empty(),
        "{when}: subscribers:\n  {}",
        errs.join("\n  ")
    );
}

#[test]
fn kill9_under_load_loses_nothing_acknowledged() {
    let cycles: usize = std::env::var("PUSHWIRE_KILL_CYCLES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(3);
    let started = Instant::now();
    let tmp = TempDir::new("kill");
    let data = tmp.join("data");
    let data_s = data.to_str().unwrap().to_owned();
    let args = [
        "--data-dir",
        &data_s,
        "--fsync",
        "always",
        "--history-events",
        "100000000",
        "--history-bytes",
        "4000000000",
        "--webhook-allow-private",
        "--webhook-schedule",
        "0,0.2,0.5",
    ];
    let rcv = Receiver::start();
    let mut hub = start_ok(&args, &tmp.join("hub-0.stderr"));
    let (hook_id, secret) = add_webhook(hub.addr, KILL_TOPIC, &format!("http://{}/hook", rcv.addr));
    let secret = Secret::parse(&secret).expect("the registration's secret parses");

    let load = Arc::new(Load {
        addr: Mutex::new(Some(hub.addr)),
        stop_pub: AtomicBool::new(false),
        stop_sub: AtomicBool::new(false),
        acked: Mutex::new(Vec::new()),
        unknown: Mutex::new(Vec::new()),
        refused: Mutex::new(Vec::new()),
        seen: Mutex::new(HashMap::new()),
        conflicts: Mutex::new(Vec::new()),
        sockets: Mutex::new(Vec::new()),
    });
    let subs = [
        Arc::new(Sub::new("sse")),
        Arc::new(Sub::new("ws")),
        Arc::new(Sub::new("poll")),
    ];
    let mut sub_threads = Vec::new();
    type SubFn = fn(Arc<Load>, Arc<Sub>);
    let kinds: [SubFn; 3] = [sse_subscriber, ws_subscriber, poll_subscriber];
    for (s, f) in subs.iter().zip(kinds) {
        let (l, s) = (load.clone(), s.clone());
        sub_threads.push(thread::spawn(move || f(l, s)));
    }
    let pub_threads: Vec<_> = (0..4)
        .map(|n| {
            let l = load.clone();
            thread::spawn(move || publisher(l, n))
        })
        .collect();

    let mut book = HookBook::default();
    let mut rng = rand::thread_rng();
    for cycle in 1..=cycles {
        // Under load: at least 20 publishes answered by this hub, then a random moment.
        let before = load.acked_len();
        assert!(
            wait_until(60, || load.acked_len() >= before + 20),
            "cycle {cycle}: fewer than 20 publishes answered 201 in 60 s ({} refused: {:?})\nhub stderr:\n{}",
            load.refused.lock().unwrap().len(),
            load.refused.lock().unwrap().iter().take(5).collect::<Vec<_>>(),
            hub.stderr_text()
        );
        thread::sleep(Duration::from_millis(rng.gen_range(0..1200)));
        *load.addr.lock().unwrap() = None;
        hub.kill9();
        no_panic(&hub, &format!("cycle {cycle}, before the kill"));
        let t = Instant::now();
        hub = start_ok(&args, &tmp.join(&format!("hub-{cycle}.stderr")));
        let restart = t.elapsed();
        *load.addr.lock().unwrap() = Some(hub.addr);
        let when = format!("after restart {cycle}");

        let hooks = get(hub.addr, &format!("/topics/{KILL_TOPIC}/webhooks")).text();
        assert!(
            hooks.contains(&format!("{{\"id\":\"{hook_id}\","))
                && hooks.contains("\"disabled\":false"),
            "{when}: the webhook registration {hook_id} did not survive: {hooks}"
        );
        let acked_ids: HashSet<u64> = load.acked.lock().unwrap().iter().map(|a| a.id).collect();
        let max_acked = acked_ids.iter().copied().max().unwrap_or(0);
        let listing = check_log(&load, hub.addr, &when);
        let want: Vec<u64> = acked_ids.iter().copied().collect();
        check_hooks(&mut book, &rcv, &secret, &load, &want, &acked_ids, &when);
        check_subs(&subs, max_acked, &when);
        no_panic(&hub, &when);
        let recovery: Vec<String> = hub
            .stderr_text()
            .lines()
            .filter(|l| l.contains("dropped") || l.contains("damaged"))
            .map(str::to_owned)
            .collect();
        println!(
            "durability cycle {cycle}/{cycles} ok: {} in the log, {} answered 201, {} unanswered, \
             {} webhook deliveries, gaps sse/ws/poll {}/{}/{}, restart {} ms, recovery log {:?}",
            listing.events.len(),
            acked_ids.len(),
            load.unknown.lock().unwrap().len(),
            book.done,
            subs[0].gaps(),
            subs[1].gaps(),
            subs[2].gaps(),
            ms(restart),
            recovery
        );
    }

    // The end: no more publishes; the last hub delivers its whole outbox.
    load.stop_pub.store(true, Ordering::SeqCst);
    for t in pub_threads {
        t.join().expect("publisher thread");
    }
    let acked_ids: HashSet<u64> = load.acked.lock().unwrap().iter().map(|a| a.id).collect();
    let listing = check_log(&load, hub.addr, "at the end");
    let acked_list: Vec<u64> = acked_ids.iter().copied().collect();
    check_hooks(
        &mut book,
        &rcv,
        &secret,
        &load,
        &acked_list,
        &acked_ids,
        "at the end (every publish answered 201)",
    );
    let settled = wait_until(60, || {
        stat(&get(hub.addr, "/stats").text(), "webhooks", "retrying") == Some(0)
    });
    let stats = get(hub.addr, "/stats").text();
    assert!(
        settled,
        "at the end: webhook messages still retrying after 60 s: {stats}"
    );
    // Every message of the last hub ended delivered (the receiver accepts every message in
    // the end), and every write reached the disk.
    let got = [
        stat(&stats, "webhooks", "failed"),
        stat(&stats, "webhooks", "endpoints_disabled"),
        stat(&stats, "store", "held"),
        stat(&stats, "store", "failed"),
    ];
    assert_eq!(
        got,
        [Some(0); 4],
        "at the end: webhooks failed/endpoints_disabled, store held/failed: {stats}"
    );
    check_subs(
        &subs,
        listing.events.last().map_or(0, |e| e.0),
        "at the end",
    );
    no_panic(&hub, "at the end");
    load.stop_sub.store(true, Ordering::SeqCst);
    for s in load.sockets.lock().unwrap().iter() {
        let _ = s.shutdown(Shutdown::Both);
    }
    for t in sub_threads {
        t.join().expect("subscriber thread");
    }
    // The streams really resumed: after each kill they came back with a cursor.
    for s in &subs[..2] {
        let resumed = s
            .obs
            .lock()
            .unwrap()
            .iter()
            .filter(|o| matches!(o, Obs::Connect(c) if *c > 0))
            .count();
        assert!(
            resumed + 1 >= cycles,
            "{} resumed with a cursor {resumed} times in {cycles} cycles",
            s.name
        );
    }
    let files = dir_listing(&data);
    let (disk, live) = disk_and_live(
        &data,
        HistoryLimits {
            max_events: 100_000_000,
            max_bytes: 4_000_000_000,
            max_topics: 10_000,
            max_total_bytes: usize::MAX,
        },
    );
    println!(
        "durability disk use after {cycles} kill -9 cycles: {} KiB in log files, live data {} KiB",
        disk / 1024,
        live / 1024
    );
    // The compaction rule: the log is compacted once it holds more than twice its live
    // data (and at least 8 MiB), also right after a start. Slack: the 8 MiB floor and what
    // the last run appended since its last compaction.
    assert!(
        disk <= 2 * live as u64 + (16 << 20),
        "the log holds {disk} bytes for {live} bytes of live data: not compacted"
    );
    println!(
        "durability kill -9: {cycles} cycles, {} events, {} answered 201, {} webhook deliveries, \
         {} s; data dir: {} segments, {} snapshots, {} damaged",
        listing.events.len(),
        acked_ids.len(),
        book.done,
        started.elapsed().as_secs(),
        files.iter().filter(|f| f.ends_with(".seg")).count(),
        files.iter().filter(|f| f.ends_with(".snap")).count(),
        files.iter().filter(|f| f.ends_with(".damaged")).count(),
    );
    assert!(
        !files.iter().any(|f| f.ends_with(".damaged")),
        "kill -9 alone damaged a segment: {files:?}"
    );
    // Last, as it is the strictest: every event in the log, answered or not (a publish
    // whose answer the kill cut off), reached the webhooks like every other subscriber.
    check_hooks(
        &mut book,
        &rcv,
        &secret,
        &load,
        &listing.ids(),
        &acked_ids,
        "at the end (every event in the log)",
    );
}

/// The subscriber check itself: it passes a clean run and flags each kind of violation.
#[test]
fn subscriber_check_flags_duplicates_reorders_and_silent_skips() {
    let run = |obs: &[Obs]| {
        let s = Sub::new("t");
        *s.obs.lock().unwrap() = obs.to_vec();
        s.check().len()
    };
    use Obs::{Connect, Ev, Gap};
    assert_eq!(run(&[Connect(0), Ev(5), Ev(6), Connect(6), Ev(7)]), 0);
    assert_eq!(run(&[Connect(0), Ev(5), Connect(5), Gap, Ev(9)]), 0);
    assert_eq!(
        run(&[Connect(0), Ev(5), Connect(5), Ev(9)]),
        1,
        "a silent skip"
    );
    assert_eq!(run(&[Ev(5), Ev(6), Connect(6), Ev(6)]), 1, "a duplicate");
    assert_eq!(
        run(&[Ev(5), Ev(7), Gap, Ev(6)]),
        2,
        "a skip, then a step back"
    );
}

// ---- 2. torn tail -----------------------------------------------------------------------

/// The records of a segment file with their [start, end) offsets, and where the valid part
/// ends.
fn segment_records(path: &Path) -> (Vec<(usize, usize, Record)>, usize, Tail) {
    let bytes = fs::read(path).unwrap();
    let sc = scan(&bytes, DEFAULT_MAX_RECORD);
    let mut out = Vec::new();
    for (i, (at, rec)) in sc.records.iter().enumerate() {
        let end = sc.records.get(i + 1).map_or(sc.valid_len, |r| r.0);
        out.push((*at, end, rec.clone()));
    }
    (out, sc.valid_len, sc.tail)
}

#[test]
fn torn_tail_keeps_every_complete_record() {
    let started = Instant::now();
    let tmp = TempDir::new("torn");
    let src = tmp.join("src");
    let src_s = src.to_str().unwrap().to_owned();
    // Two runs, each killed: the newest segment holds the second run's events.
    let mut published = Vec::new();
    for (run, datas) in [["a1", "a2", "a3", ""], ["b1", "b2", "b3", "z"]]
        .iter()
        .enumerate()
    {
        let hub = start_ok(
            &["--data-dir", &src_s],
            &tmp.join(&format!("src-{run}.stderr")),
        );
        for d in datas.iter().filter(|d| !d.is_empty()) {
            published.push((publish(hub.addr, "tt", d), d.to_string()));
        }
        drop(hub); // SIGKILL
    }
    let segs = segments(&src);
    let newest = segs.last().expect("a segment in the data dir").1.clone();
    let newest_name = newest.file_name().unwrap().to_owned();
    let (records, valid_len, tail) = segment_records(&newest);
    let (last_start, last_end, last) = records.last().cloned().unwrap_or_else(|| {
        panic!(
            "the newest segment {newest:?} holds no records (dir: {:?})",
            dir_listing(&src)
        )
    });
    assert!(
        matches!(&last, Record::Event { data, .. } if data == "z"),
        "the newest segment should end with the last event published, not {last:?} ({tail:?})"
    );
    // Where each event of the newest segment ends (it is lost when the cut comes earlier).
    let ends: HashMap<u64, usize> = records
        .iter()
        .filter_map(|(_, end, r)| match r {
            Record::Event { id, .. } => Some((*id, *end)),
            _ => None,
        })
        .collect();
    let mut boundaries: Vec<usize> = records.iter().map(|r| r.0).collect();
    boundaries.push(valid_len);

    let trial_dir = tmp.join("trial");
    let trial_s = trial_dir.to_str().unwrap().to_owned();
    // The baseline: the whole copy serves everything published.
    copy_dir(&src, &trial_dir);
    let hub = start_ok(&["--data-dir", &trial_s], &tmp.join("baseline.stderr"));
    let baseline = list_all(hub.addr, "tt").events;
    assert_eq!(
        baseline, published,
        "the untouched data dir serves every event published"
    );
    drop(hub);

    let mut rng = rand::thread_rng();
    let mut cuts: BTreeSet<usize> = (last_start..last_end).collect();
    let random: BTreeSet<usize> = (0..20).map(|_| rng.gen_range(0..valid_len)).collect();
    cuts.extend(&random);
    let mut failures = Vec::new();
    let mut starts = 1;
    for (n, &cut) in cuts.iter().enumerate() {
        copy_dir(&src, &trial_dir);
        let f = fs::OpenOptions::new()
            .write(true)
            .open(trial_dir.join(&newest_name))
            .unwrap();
        f.set_len(cut as u64).unwrap();
        drop(f);
        let expected: Vec<(u64, String)> = baseline
            .iter()
            .filter(|(id, _)| ends.get(id).is_none_or(|&end| end <= cut))
            .cloned()
            .collect();
        let stderr = tmp.join("trial.stderr");
        starts += 1;
        let hub = match start(&["--data-dir", &trial_s], &stderr) {
            Ok(h) => h,
            Err(f) => {
                failures.push(format!(
                    "cut at {cut}: the hub did not start ({:?}): {}",
                    f.status, f.stderr
                ));
                continue;
            }
        };
        let got = list_all(hub.addr, "tt").events;
        if got != expected {
            failures.push(format!(
                "cut at {cut}: /events has {got:?}, expected {expected:?}"
            ));
        }
        let prev = boundaries
            .iter()
            .copied()
            .filter(|&b| b <= cut)
            .max()
            .unwrap_or(0);
        if cut > SEG_HEADER_LEN && cut != prev {
            let want = format!("dropped {} bytes", cut - prev);
            if !hub.stderr_text().contains(&want) {
                failures.push(format!(
                    "cut at {cut}: stderr does not say {want:?}: {}",
                    hub.stderr_text().trim()
                ));
            }
        }
        // The log goes on from the cut: a new event, then (every 4th trial) a second
        // restart still has everything.
        let after = format!("after-{cut}");
        let r = post(hub.addr, "/topics/tt", &after);
        let id = json_u64(&r.text(), "id");
        if r.status != 201 || id.is_none() {
            failures.push(format!(
                "cut at {cut}: publish after recovery: {} {}",
                r.status,
                r.text()
            ));
        } else if expected.last().is_some_and(|l| id.unwrap() <= l.0) {
            failures.push(format!(
                "cut at {cut}: new id {id:?} not above the kept {:?}",
                expected.last()
            ));
        }
        let err = hub.stderr_text();
        if err.contains("panicked") {
            failures.push(format!("cut at {cut}: panic: {err}"));
        }
        drop(hub);
        if n % 4 == 0 && r.status == 201 {
            starts += 1;
            match start(&["--data-dir", &trial_s], &stderr) {
                Ok(h) => {
                    let mut want = expected.clone();
                    want.push((id.unwrap(), after.clone()));
                    let got = list_all(h.addr, "tt").events;
                    if got != want {
                        failures.push(format!(
                            "cut at {cut}, restarted after one more publish: /events has {got:?}, expected {want:?}"
                        ));
                    }
                }
                Err(f) => failures.push(format!(
                    "cut at {cut}: the second restart failed ({:?}): {}",
                    f.status, f.stderr
                )),
            }
        }
    }
    println!(
        "torn tail: {} cuts ({} in the last record {last_start}..{last_end}, {} random), {starts} hub starts, {} ms",
        cuts.len(),
        last_end - last_start,
        random.len(),
        ms(started.elapsed())
    );
    assert!(
        failures.is_empty(),
        "{} failures:\n  {}",
        failures.len(),
        failures.join("\n  ")
    );
}

/// A publish to a topic with webhooks is its event and its webhook message, written as one
/// group record. A write cut anywhere inside that group must drop both: an event served
/// without its webhook message would reach every subscriber but the webhook receivers.
#[test]
fn torn_tail_between_an_event_and_its_webhook_message() {
    let tmp = TempDir::new("torn-hook");
    let src = tmp.join("src");
    let src_s = src.to_str().unwrap().to_owned();
    let rcv = Receiver::start();
    // The first run's attempts stay in flight: no outcome record follows the messages.
    rcv.hold.store(true, Ordering::SeqCst);
    let args = |dir: &str| -> Vec<String> {
        [
            "--data-dir",
            dir,
            "--webhook-allow-private",
            "--webhook-timeout",
            "60",
            "--webhook-schedule",
            "0.2,0.2,0.2",
        ]
        .map(str::to_owned)
        .to_vec()
    };
    let a = args(&src_s);
    let a: Vec<&str> = a.iter().map(String::as_str).collect();
    let hub = start_ok(&a, &tmp.join("src.stderr"));
    add_webhook(hub.addr, "tw", &format!("http://{}/hook", rcv.addr));
    let published: Vec<(u64, String)> = ["w1", "w2", "w3"]
        .iter()
        .map(|d| (publish(hub.addr, "tw", d), d.to_string()))
        .collect();
    drop(hub); // SIGKILL
    let newest = segments(&src).last().expect("a segment").1.clone();
    let newest_name = newest.file_name().unwrap().to_owned();
    let (records, _, _) = segment_records(&newest);
    let (group_start, group_end) = records
        .iter()
        .rev()
        .find(|(_, _, r)| match r {
            Record::Group { records } => {
                records
                    .iter()
                    .any(|r| matches!(r, Record::OutboxEnqueued { .. }))
                    && records
                        .iter()
                        .any(|r| matches!(r, Record::Event { data, .. } if data == "w3"))
            }
            _ => false,
        })
        .map(|(s, e, _)| (*s, *e))
        .unwrap_or_else(|| panic!("no group of w3 and its message in {newest:?}: {records:?}"));
    rcv.hold.store(false, Ordering::SeqCst);
    let trial = tmp.join("trial");
    let trial_s = trial.to_str().unwrap().to_owned();
    let mut failures = Vec::new();
    let complete = &published[..2];
    for (cut, what) in [
        (group_start + 9, "inside the group's first record"),
        ((group_start + group_end) / 2, "in the middle of the group"),
        (group_end - 1, "one byte before the group's end"),
    ] {
        copy_dir(&src, &trial);
        let f = fs::OpenOptions::new()
            .write(true)
            .open(trial.join(&newest_name))
            .unwrap();
        f.set_len(cut as u64).unwrap();
        drop(f);
        let mark = rcv.log.lock().unwrap().len();
        let a = args(&trial_s);
        let a: Vec<&str> = a.iter().map(String::as_str).collect();
        let hub = start_ok(&a, &tmp.join("trial.stderr"));
        let served = list_all(hub.addr, "tw").events;
        if served != complete {
            failures.push(format!(
                "cut at {cut} ({what}): /events has {served:?}, expected the complete publishes {complete:?}"
            ));
        }
        let delivered = || -> BTreeSet<u64> {
            rcv.deliveries_from(mark)
                .iter()
                .filter_map(|d| parse_webhook_body(&d.body))
                .map(|(_, id, _)| id)
                .collect()
        };
        let all = wait_until(10, || served.iter().all(|e| delivered().contains(&e.0)));
        if !all {
            let missing: Vec<&(u64, String)> = served
                .iter()
                .filter(|e| !delivered().contains(&e.0))
                .collect();
            failures.push(format!(
                "cut at {cut} ({what}): served by /events but no webhook within 10 s: {missing:?}"
            ));
        }
        no_panic(&hub, "torn webhook message");
    }
    assert!(
        failures.is_empty(),
        "{} failures:\n  {}",
        failures.len(),
        failures.join("\n  ")
    );
}

// ---- 3. corruption ----------------------------------------------------------------------

#[test]
fn flipped_byte_keeps_records_before_it_and_moves_the_segment_aside() {
    let tmp = TempDir::new("flip");
    let dir = tmp.join("data");
    let dir_s = dir.to_str().unwrap().to_owned();
    let hub = start_ok(&["--data-dir", &dir_s], &tmp.join("1.stderr"));
    let published: Vec<(u64, String)> = (1..=9)
        .map(|i| {
            let d = format!("event-number-{i}-with-some-text");
            (publish(hub.addr, "fl", &d), d)
        })
        .collect();
    drop(hub); // SIGKILL
    let segs = segments(&dir);
    let (seg, events): (PathBuf, Vec<(usize, usize, u64)>) = segs
        .iter()
        .find_map(|(_, p)| {
            let (recs, _, _) = segment_records(p);
            let evs: Vec<(usize, usize, u64)> = recs
                .iter()
                .filter_map(|(s, e, r)| match r {
                    Record::Event { id, .. } => Some((*s, *e, *id)),
                    // A topic's first publish groups its first id with its event.
                    Record::Group { records } => records.iter().find_map(|r| match r {
                        Record::Event { id, .. } => Some((*s, *e, *id)),
                        _ => None,
                    }),
                    _ => None,
                })
                .collect();
            (evs.len() == 9).then(|| (p.clone(), evs))
        })
        .unwrap_or_else(|| panic!("no segment holds the 9 events: {:?}", dir_listing(&dir)));
    // Flip the last data byte of the 5th event (mid-segment): its checksum fails.
    let (start5, end5, id5) = events[4];
    let mut bytes = fs::read(&seg).unwrap();
    bytes[end5 - 1] ^= 0x01;
    fs::write(&seg, &bytes).unwrap();
    assert!(
        matches!(
            scan(&bytes, DEFAULT_MAX_RECORD).tail,
            Tail::Corrupt { at, reason: Corruption::Checksum { .. } } if at == start5
        ),
        "test setup: the flip must make a checksum failure at {start5}"
    );
    let hub = start_ok(&["--data-dir", &dir_s], &tmp.join("2.stderr"));
    let got = list_all(hub.addr, "fl").events;
    let before: Vec<(u64, String)> = published.iter().filter(|e| e.0 < id5).cloned().collect();
    assert_eq!(
        got, before,
        "the events before the flipped byte, and nothing from it on"
    );
    let err = hub.stderr_text();
    assert!(
        err.lines().any(|l| l.contains("damaged")),
        "no stderr line says `damaged`:\n{err}"
    );
    let name = seg.file_name().unwrap().to_str().unwrap().to_owned();
    let files = dir_listing(&dir);
    assert!(
        files.contains(&format!("{name}.damaged")) && !files.contains(&name),
        "{name} should have been renamed to {name}.damaged: {files:?}"
    );
    // The hub goes on: a new event is served, and the damaged file stays out after
    // another restart.
    let id = publish(hub.addr, "fl", "after the damage");
    assert!(
        id > before.last().unwrap().0,
        "new id {id} above the kept ones"
    );
    drop(hub);
    let hub = start_ok(&["--data-dir", &dir_s], &tmp.join("3.stderr"));
    let mut want = before.clone();
    want.push((id, "after the damage".to_owned()));
    assert_eq!(
        list_all(hub.addr, "fl").events,
        want,
        "after a second restart"
    );
    no_panic(&hub, "second restart");
    // The README: "a restarted hub hands out ids above every id it gave before". The
    // records after the damage were acknowledged; their ids must not come back with other
    // data (a client resuming from one of them would skip the new event silently).
    let max_old = published.last().unwrap().0;
    assert!(
        id > max_old,
        "after the damage the new event got id {id}, but ids up to {max_old} were handed out \
         before (id {id} was {:?})",
        published.iter().find(|e| e.0 == id).map(|e| &e.1)
    );
}

// ---- 4. disk full -----------------------------------------------------------------------

/// A tmpfs mounted for the test, unmounted on drop.
struct Mount(PathBuf);

impl Drop for Mount {
    fn drop(&mut self) {
        let c = std::ffi::CString::new(self.0.to_str().unwrap()).unwrap();
        // SAFETY: a valid NUL-terminated path.
        if unsafe { libc::umount2(c.as_ptr(), 0) } != 0 {
            // SAFETY: as above; lazy detach if something still holds it.
            unsafe { libc::umount2(c.as_ptr(), libc::MNT_DETACH) };
        }
    }
}

/// Mounts a 1 MiB tmpfs on `dir`; `Err(reason)` when mounting is not permitted here.
fn mount_tmpfs(dir: &Path) -> Result<Mount, String> {
    let target = std::ffi::CString::new(dir.to_str().unwrap()).unwrap();
    let (src, fstype, opts) = (c"tmpfs", c"tmpfs", c"size=1m,mode=0755");
    // SAFETY: valid NUL-terminated strings; no flags.
    let rc = unsafe {
        libc::mount(
            src.as_ptr(),
            target.as_ptr(),
            fstype.as_ptr(),
            0,
            opts.as_ptr().cast(),
        )
    };
    if rc == 0 {
        return Ok(Mount(dir.to_owned()));
    }
    let e = std::io::Error::last_os_error();
    if e.raw_os_error() == Some(libc::EPERM) {
        return Err(format!(
            "mount -t tmpfs failed with EPERM ({e}): not permitted here"
        ));
    }
    panic!("mount -t tmpfs on {dir:?} failed: {e}");
}

#[test]
fn disk_full_refuses_with_507_serves_reads_and_recovers() {
    let tmp = TempDir::new("full");
    let mnt_dir = tmp.join("mnt");
    fs::create_dir(&mnt_dir).unwrap();
    let _mount = match mount_tmpfs(&mnt_dir) {
        Ok(m) => m,
        Err(reason) => {
            println!("SKIPPED disk_full: {reason}");
            return;
        }
    };
    // Most of the space goes to a filler file, so the hub fills the rest quickly.
    let filler = mnt_dir.join("filler");
    fs::write(&filler, vec![7u8; 1024 * 1024 - 192 * 1024]).unwrap();
    let data = mnt_dir.join("data");
    let data_s = data.to_str().unwrap().to_owned();
    let args = [
        "--data-dir",
        data_s.as_str(),
        "--history-events",
        "100000",
        "--history-bytes",
        "100000000",
    ];
    let hub = start_ok(&args, &tmp.join("1.stderr"));
    let addr = hub.addr;

    // A live SSE subscriber, subscribed before the first publish.
    let (tx, rx) = mpsc::channel();
    let stop = Arc::new(AtomicBool::new(false));
    let sse_got: Arc<Mutex<Vec<ParsedEvent>>> = Arc::default();
    let (stop2, got2) = (stop.clone(), sse_got.clone());
    let sse = thread::spawn(move || {
        let mut c = SseConn::open(addr, "/topics/full/sse", "").expect("sse stream");
        tx.send(()).unwrap();
        let deadline = Instant::now() + Duration::from_secs(120);
        while !stop2.load(Ordering::SeqCst) && Instant::now() < deadline {
            match c.read_events() {
                Some(evs) => got2.lock().unwrap().extend(evs),
                None => break,
            }
        }
    });
    rx.recv_timeout(Duration::from_secs(10))
        .expect("the SSE stream opened");

    let mut acked: Vec<(u64, String)> = Vec::new();
    let mut refused: Vec<String> = Vec::new();
    let mut first_507 = None;
    for i in 0..2000 {
        let d = format!("fill-{i:04}-{}", "x".repeat(3000 + i % 7 * 100));
        let r = post(addr, "/topics/full", &d);
        match r.status {
            201 => acked.push((json_u64(&r.text(), "id").expect("id"), d)),
            507 => {
                first_507.get_or_insert_with(|| r.text());
                refused.push(d);
                if refused.len() >= 3 {
                    break;
                }
            }
            s => panic!("publish {i}: {s} {} (expected 201 or 507)", r.text()),
        }
    }
    let body = first_507.expect("no 507 after 2000 publishes of 3 KB into a 1 MiB tmpfs");
    assert!(body.starts_with("cannot store"), "507 body: {body:?}");
    assert!(
        !acked.is_empty(),
        "some publishes fit before the disk was full"
    );
    println!("disk full after {} events: {}", acked.len(), body.trim());

    // Reads keep working.
    let h = get(addr, "/healthz");
    assert_eq!((h.status, h.text().as_str()), (200, "ok"));
    assert_eq!(
        list_all(addr, "full").events,
        acked,
        "/events while the disk is full"
    );

    // Space again: the next publish is stored.
    fs::remove_file(&filler).unwrap();
    let r = post(addr, "/topics/full", "after-free");
    assert_eq!(
        r.status,
        201,
        "the first publish after freeing space: {}",
        r.text()
    );
    acked.push((json_u64(&r.text(), "id").unwrap(), "after-free".to_owned()));
    assert_eq!(
        list_all(addr, "full").events,
        acked,
        "/events after freeing space"
    );

    // The subscriber got exactly what was stored, and nothing refused.
    wait_until(20, || {
        sse_got
            .lock()
            .unwrap()
            .iter()
            .any(|e| e.data == "after-free")
    });
    stop.store(true, Ordering::SeqCst);
    sse.join().expect("sse thread");
    let got: Vec<(u64, String)> = sse_got
        .lock()
        .unwrap()
        .iter()
        .filter(|e| e.event != "gap")
        .map(|e| (e.last_event_id.parse().unwrap_or(0), e.data.clone()))
        .collect();
    let leaked = refused
        .iter()
        .filter(|d| got.iter().any(|g| &g.1 == *d))
        .count();
    assert_eq!(leaked, 0, "events answered 507 were delivered over SSE");
    assert!(
        got == acked,
        "SSE got {} events, not the {} stored: {:?}",
        got.len(),
        acked.len(),
        got.iter().map(|g| g.0).collect::<Vec<_>>()
    );
    no_panic(&hub, "disk full");

    // After kill -9 the log holds what was acknowledged, and nothing refused.
    drop(hub);
    let hub = start_ok(&args, &tmp.join("2.stderr"));
    assert_eq!(
        list_all(hub.addr, "full").events,
        acked,
        "/events after kill -9 and restart"
    );
    publish(hub.addr, "full", "after-restart");
    no_panic(&hub, "restart after disk full");
}

// ---- 5. bad data dir --------------------------------------------------------------------

/// Starts the hub on `dir` (behind `wrapper`, if any) and checks that it refuses to start:
/// exit status 1, no listening line, one stderr line naming the data dir, the path and
/// one of `causes`.
fn expect_refusal(tmp: &TempDir, wrapper: &[&str], dir: &Path, causes: &[&str], what: &str) {
    let mut cmd = match wrapper.split_first() {
        Some((w, rest)) => {
            let mut c = Command::new(w);
            c.args(rest).arg(hub_bin());
            c
        }
        None => Command::new(hub_bin()),
    };
    cmd.env_remove("PUSHWIRE_LOG");
    let stderr = tmp.join("refusal.stderr");
    let dir_s = dir.to_str().unwrap();
    match spawn_hub(cmd, &["--data-dir", dir_s], &stderr) {
        Ok(hub) => panic!(
            "{what}: the hub started on {dir_s} (listening on {})",
            hub.addr
        ),
        Err(f) => {
            assert_eq!(
                f.status.and_then(|s| s.code()),
                Some(1),
                "{what}: exit status (stderr: {})",
                f.stderr
            );
            assert!(
                !f.stdout.contains("listening"),
                "{what}: stdout {:?}",
                f.stdout
            );
            let line = f.stderr.lines().find(|l| {
                l.contains("data dir")
                    && l.contains(dir_s)
                    && causes
                        .iter()
                        .any(|c| l.to_lowercase().contains(&c.to_lowercase()))
            });
            assert!(
                line.is_some(),
                "{what}: no stderr line with `data dir`, {dir_s} and one of {causes:?}:\n{}",
                f.stderr
            );
            assert!(
                !f.stderr.contains("panicked"),
                "{what}: panic: {}",
                f.stderr
            );
        }
    }
}

#[test]
fn bad_data_dir_is_a_clear_error_at_start() {
    let tmp = TempDir::new("bad");
    // A file where the directory should be, and below it.
    let file = tmp.join("a-file");
    fs::write(&file, "not a directory").unwrap();
    expect_refusal(
        &tmp,
        &[],
        &file,
        &["not a directory", "file exists"],
        "a file as data dir",
    );
    expect_refusal(
        &tmp,
        &[],
        &file.join("sub"),
        &["not a directory"],
        "a data dir below a file",
    );

    // Another hub holds the lock.
    let dir = tmp.join("shared");
    let dir_s = dir.to_str().unwrap().to_owned();
    let first = start_ok(&["--data-dir", &dir_s], &tmp.join("first.stderr"));
    let id = publish(first.addr, "lk", "held");
    expect_refusal(
        &tmp,
        &[],
        &dir,
        &["in use", "locked"],
        "a second hub on the same dir",
    );
    assert_eq!(
        list_all(first.addr, "lk").events,
        vec![(id, "held".to_owned())],
        "the first hub is unharmed"
    );
    drop(first); // SIGKILL: the lock goes with the process
    let again = start_ok(&["--data-dir", &dir_s], &tmp.join("again.stderr"));
    assert_eq!(
        list_all(again.addr, "lk").events,
        vec![(id, "held".to_owned())]
    );
    drop(again);

    // No permission: a directory with mode 0000, and a missing one in a read-only parent.
    // Root ignores permissions, so as root the hub runs as nobody (setpriv).
    let locked = tmp.join("perm");
    fs::DirBuilder::new().mode(0o755).create(&locked).unwrap();
    let no_access = locked.join("d");
    fs::DirBuilder::new()
        .mode(0o700)
        .create(&no_access)
        .unwrap();
    fs::set_permissions(&no_access, fs::Permissions::from_mode(0o000)).unwrap();
    let ro_parent = tmp.join("ro");
    fs::DirBuilder::new()
        .mode(0o755)
        .create(&ro_parent)
        .unwrap();
    fs::set_permissions(&ro_parent, fs::Permissions::from_mode(0o555)).unwrap();
    // SAFETY: geteuid has no preconditions.
    let root = unsafe { libc::geteuid() } == 0;
    let wrapper: Vec<&str> = if root {
        vec![
            "setpriv",
            "--reuid=65534",
            "--regid=65534",
            "--clear-groups",
        ]
    } else {
        vec![]
    };
    if root {
        // Can nobody run the hub at all? (`--bogus` makes it print its usage and exit 2.)
        let probe = Command::new(wrapper[0])
            .args(&wrapper[1..])
            .arg(hub_bin())
            .arg("--bogus")
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .output();
        match probe {
            Ok(o)
                if o.status.code() == Some(2)
                    && String::from_utf8_lossy(&o.stderr).contains("usage") => {}
            other => {
                println!(
                    "SKIPPED the permission cases: running the hub as nobody via setpriv failed ({other:?})"
                );
                return;
            }
        }
    }
    expect_refusal(
        &tmp,
        &wrapper,
        &no_access,
        &["permission denied"],
        "a data dir with mode 0000",
    );
    expect_refusal(
        &tmp,
        &wrapper,
        &ro_parent.join("new"),
        &["permission denied"],
        "a data dir that cannot be created",
    );
    fs::set_permissions(&no_access, fs::Permissions::from_mode(0o700)).unwrap();
    fs::set_permissions(&ro_parent, fs::Permissions::from_mode(0o755)).unwrap();
}

// ---- 6. the id ranges of the two fsync modes across kill -9 ------------------------------

/// The first message of a WebSocket subscription to `path` (10 s at most).
fn ws_first(addr: SocketAddr, path: &str) -> String {
    let mut c = WsConn::open(addr, path).expect("ws handshake");
    let deadline = Instant::now() + Duration::from_secs(10);
    while Instant::now() < deadline {
        if let Some(m) = c.read_messages().expect("ws open").into_iter().next() {
            return m;
        }
    }
    panic!("no WebSocket message on {path} within 10 s");
}

/// The first `n` SSE events of a stream (10 s at most).
fn sse_first(addr: SocketAddr, path: &str, extra: &str, n: usize) -> Vec<ParsedEvent> {
    let mut c = SseConn::open(addr, path, extra).expect("sse stream");
    let mut got = Vec::new();
    let deadline = Instant::now() + Duration::from_secs(10);
    while got.len() < n && Instant::now() < deadline {
        match c.read_events() {
            Some(evs) => got.extend(evs),
            None => break,
        }
    }
    got
}

#[test]
fn fsync_interval_kill9_starts_a_new_id_range_and_resumers_get_a_gap() {
    let tmp = TempDir::new("interval");
    let dir = tmp.join("data");
    let dir_s = dir.to_str().unwrap().to_owned();
    let args = ["--data-dir", dir_s.as_str(), "--fsync", "interval"];
    let hub = start_ok(&args, &tmp.join("1.stderr"));
    let old: Vec<(u64, String)> = (0..5)
        .map(|i| {
            let d = format!("old-{i}");
            (publish(hub.addr, "iv", &d), d)
        })
        .collect();
    drop(hub); // SIGKILL, within the fsync interval
    let n = old.last().unwrap().0;
    let before_restart = now_unix_us();
    let hub = start_ok(&args, &tmp.join("2.stderr"));
    let new_id = publish(hub.addr, "iv", "new-0");
    assert!(
        new_id > n,
        "the new id {new_id} must be above every id handed out before (last {n}); an old \
         id came back for other data: {:?}",
        old.iter().find(|o| o.0 == new_id)
    );
    assert_ne!(
        new_id,
        n + 1,
        "after kill -9 in interval mode the ids must start a new range from the clock, \
         not continue the old one (a resumer from a lost tail would skip silently)"
    );
    assert!(
        new_id >= before_restart,
        "the new range starts from the clock: id {new_id} < {before_restart} µs (the clock \
         before the restart)"
    );
    // Whatever of the old events survived keeps its data.
    let log = list_all(hub.addr, "iv").events;
    for (id, d) in &log {
        if let Some(o) = old.iter().find(|o| o.0 == *id) {
            assert_eq!(&o.1, d, "id {id} changed its data across the restart");
        }
    }
    assert_eq!(log.last(), Some(&(new_id, "new-0".to_owned())));
    // A resumer from the last old id is told of a gap on every transport.
    let r = get(hub.addr, &format!("/topics/iv/events?since={n}"));
    assert!(
        r.text().contains("\"gap\":true"),
        "/events?since={n}: {}",
        r.text()
    );
    assert_eq!(
        parse_events(&r.text()).unwrap().first().map(|e| e.0),
        Some(new_id)
    );
    let r = get(hub.addr, &format!("/topics/iv/poll?since={n}&timeout=1"));
    assert!(
        r.text().contains("\"gap\":true"),
        "/poll?since={n}: {}",
        r.text()
    );
    let evs = sse_first(
        hub.addr,
        "/topics/iv/sse",
        &format!("Last-Event-ID: {n}\r\n"),
        2,
    );
    assert_eq!(
        evs.first().map(|e| e.event.as_str()),
        Some("gap"),
        "SSE resume from {n}: {evs:?}"
    );
    assert_eq!(
        evs.get(1).map(|e| e.last_event_id.clone()),
        Some(new_id.to_string()),
        "{evs:?}"
    );
    let m = ws_first(hub.addr, &format!("/topics/iv/ws?since={n}"));
    assert!(
        m.starts_with("{\"gap\":true"),
        "WebSocket resume from {n}: {m}"
    );
    no_panic(&hub, "interval restart");
}

#[test]
fn fsync_always_kill9_continues_the_ids_and_resumers_get_no_gap() {
    let tmp = TempDir::new("always");
    let dir = tmp.join("data");
    let dir_s = dir.to_str().unwrap().to_owned();
    let args = ["--data-dir", dir_s.as_str(), "--fsync", "always"];
    let hub = start_ok(&args, &tmp.join("1.stderr"));
    let old: Vec<(u64, String)> = (0..5)
        .map(|i| {
            let d = format!("old-{i}");
            (publish(hub.addr, "al", &d), d)
        })
        .collect();
    drop(hub); // SIGKILL
    let n = old.last().unwrap().0;
    let hub = start_ok(&args, &tmp.join("2.stderr"));
    assert_eq!(
        list_all(hub.addr, "al").events,
        old,
        "every acknowledged event survived"
    );
    let new_id = publish(hub.addr, "al", "new-0");
    assert_eq!(new_id, n + 1, "ids continue from the last one in the log");
    let r = get(hub.addr, &format!("/topics/al/events?since={n}"));
    assert!(
        r.text().contains("\"gap\":false"),
        "/events?since={n}: {}",
        r.text()
    );
    let evs = sse_first(
        hub.addr,
        "/topics/al/sse",
        &format!("Last-Event-ID: {n}\r\n"),
        1,
    );
    assert_eq!(
        evs.first()
            .map(|e| (e.event.as_str(), e.last_event_id.clone())),
        Some(("message", new_id.to_string())),
        "SSE resume from {n}: {evs:?}"
    );
    let m = ws_first(hub.addr, &format!("/topics/al/ws?since={n}"));
    assert!(
        m.starts_with(&format!("{{\"id\":{new_id},")),
        "WebSocket resume from {n}: {m}"
    );
    no_panic(&hub, "always restart");
}
