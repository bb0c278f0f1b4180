//! The Redis backplane's cost, measured from outside release builds of the hub example
//! (loopback HTTP and WebSocket only), next to one in-memory hub doing the same work.
//!
//! ```text
//! cargo bench -p pushwire-benches --bench backplane -- [--subs 3000] [--mem-subs 3000,9000]
//!     [--samples 2000] [--rounds 10] [--burst 50] [--rtt 1000] [--idle-samples 40]
//!     [--data-bytes 64]
//! ```
//!
//! The bench builds the hub itself (`cargo build --release --example hub`), starts its own
//! `redis-server` (`/usr/bin/redis-server`, no persistence, a free 127.0.0.1 port, a
//! directory under `target/backplane-bench/`), and raises its open-files soft limit to the
//! hard one (the hubs inherit it). Without `redis-server` it says so and exits 0. Every
//! wait has a deadline, and a watchdog kills everything after 15 minutes. Figures:
//!
//! 1. **Latency**, `--samples` publishes one at a time, each a `POST /topics/lat` whose data
//!    starts with the send time (nanoseconds on this process's monotonic clock); the time
//!    is read back from the payload when the WebSocket text frame arrives (in a reader
//!    thread of its own). `redis`: three hubs on one Redis, published on hub 1, received
//!    on hub 2 (hubs 1 and 3 have a subscriber of the topic too, drained, as every hub of
//!    a cluster would). `memory`: one hub without `--redis`, published and received on it.
//!    Also the time until the `201` (the publishing client's view).
//! 2. **Fan-out**: `--subs` WebSocket subscribers on each of three hubs (one topic), all on
//!    one mio loop in this process, bound to 127.0.0.2 / 127.0.0.3 with
//!    `IP_BIND_ADDRESS_NO_PORT`; vs one in-memory hub with each of `--mem-subs`. Once all
//!    are subscribed (warm-up publishes until every one got one), `--rounds` publishes one
//!    at a time (the time from the POST until the last subscriber has the event), then a
//!    burst of `--burst` publishes back to back (deliveries per second = subscribers x
//!    burst / the time from the first POST until the last subscriber has the last event).
//!    Every subscriber must get every measured event once and in order; anything else is
//!    an error. The CPU seconds used during the burst by this process's loop thread, the
//!    hubs and Redis (`/proc/PID/stat`, 10 ms ticks) tell who set the pace: the clients
//!    share the machine with the hubs.
//! 3. **Redis round trips per publish**: `INFO commandstats` and `INFO stats` before and
//!    after `--rtt` sequential publishes on the three-hub cluster (subscribers on every
//!    hub): the commands clients sent (`EVALSHA`/`EVAL` for publishes, `XRANGE`/
//!    `XREVRANGE` for stream reads, everything else as background), the commands the
//!    publish script ran, and `total_commands_processed`, per publish; and each hub's own
//!    `/stats` `redis` counters where the hub reports them.
//! 4. **A publish on a hub that reads nothing**: `--idle-samples` sequential publishes,
//!    10 ms apart, on a fourth hub of the cluster that follows no topic, until the `201`
//!    (at most 60 s in all): a reply the loop reads while writing its Redis commands must
//!    not wait for the next timer (see `tests/backplane.rs`).
//!
//! Output: a table, then one `backplane ...` line per figure (`key=value` pairs).

use std::collections::HashMap;
use std::fs::File;
use std::io::{self, BufRead, BufReader, Read, Write};
use std::net::TcpStream as StdStream;
use std::net::{Ipv4Addr, SocketAddr, SocketAddrV4, TcpListener as StdListener};
use std::os::fd::FromRawFd;
use std::path::{Path, PathBuf};
use std::process::{exit, Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{mpsc, Arc, Mutex, OnceLock};
use std::thread;
use std::time::{Duration, Instant};

use mio::net::TcpStream;
use mio::{Events, Interest, Poll, Token};
use pushwire::proto::resp::{Command as RedisCommand, Limits, Parser, Value};

const USAGE: &str = "usage: backplane [--subs N] [--mem-subs N,N] [--samples N] [--rounds N] \
[--burst N] [--rtt N] [--idle-samples N] [--data-bytes B]";
const REDIS_SERVER: &str = "/usr/bin/redis-server";
const WS_KEY: &str = "dGhlIHNhbXBsZSBub25jZQ==";
/// Everything is killed after this long.
const WATCHDOG: Duration = Duration::from_secs(900);
const STEP: Duration = Duration::from_secs(10);
const SETUP_DEADLINE: Duration = Duration::from_secs(180);
const ROUND_DEADLINE: Duration = Duration::from_secs(30);
const BURST_DEADLINE: Duration = Duration::from_secs(120);
/// Connects and handshakes outstanding at once while subscribing.
const CONNECT_WINDOW: usize = 256;
/// Source addresses the subscribers bind to (127.0.0.2, 127.0.0.3).
const SOURCES: u8 = 2;

struct Args {
    subs: usize,
    mem_subs: Vec<usize>,
    samples: usize,
    rounds: usize,
    burst: usize,
    rtt: usize,
    idle_samples: usize,
    data_bytes: usize,
}

fn parse_args() -> Result<Args, String> {
    let mut a = Args {
        subs: 3000,
        mem_subs: vec![3000, 9000],
        samples: 2000,
        rounds: 10,
        burst: 50,
        rtt: 1000,
        idle_samples: 40,
        data_bytes: 64,
    };
    let mut it = std::env::args().skip(1);
    while let Some(flag) = it.next() {
        let mut num = || -> Result<usize, String> {
            it.next()
                .ok_or(format!("{flag} needs a value"))?
                .parse()
                .map_err(|e| format!("{flag}: {e}"))
        };
        match flag.as_str() {
            "--subs" => a.subs = num()?,
            "--samples" => a.samples = num()?.max(10),
            "--rounds" => a.rounds = num()?.max(1),
            "--burst" => a.burst = num()?.max(1),
            "--rtt" => a.rtt = num()?.max(1),
            "--idle-samples" => a.idle_samples = num()?,
            "--data-bytes" => a.data_bytes = num()?.clamp(32, 60_000),
            "--mem-subs" => {
                let v = it.next().ok_or("--mem-subs needs a value")?;
                a.mem_subs = v
                    .split(',')
                    .filter(|s| !s.is_empty())
                    .map(|s| s.parse().map_err(|e| format!("--mem-subs: {e}")))
                    .collect::<Result<_, String>>()?;
            }
            // What `cargo bench` passes to every bench.
            "--bench" => {}
            other => return Err(format!("unknown argument {other}")),
        }
    }
    Ok(a)
}

// ---- processes ------------------------------------------------------------------------------

/// The pids of every child, for the watchdog.
fn children() -> &'static Mutex<Vec<u32>> {
    static PIDS: OnceLock<Mutex<Vec<u32>>> = OnceLock::new();
    PIDS.get_or_init(|| Mutex::new(Vec::new()))
}

/// A child process, killed when dropped.
struct Proc(Child);

impl Proc {
    fn spawn(cmd: &mut Command) -> io::Result<Proc> {
        let child = cmd.spawn()?;
        children().lock().unwrap().push(child.id());
        Ok(Proc(child))
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
        children().lock().unwrap().retain(|p| *p != self.0.id());
    }
}

fn watchdog() {
    thread::spawn(|| {
        thread::sleep(WATCHDOG);
        eprintln!("backplane: ERROR: still running after {WATCHDOG:?}: killing everything");
        for pid in children().lock().unwrap().iter() {
            // SAFETY: kill(2) on the pid of a child this process started.
            unsafe {
                libc::kill(*pid as libc::pid_t, libc::SIGKILL);
            }
        }
        exit(1);
    });
}

/// The repository's root: this bench crate is its `benches/`.
fn repo_root() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("benches/ is in the repository")
}

/// The workspace's `target/` (or `CARGO_TARGET_DIR`).
fn target_dir() -> PathBuf {
    match std::env::var_os("CARGO_TARGET_DIR") {
        Some(d) => PathBuf::from(d),
        None => repo_root().join("target"),
    }
}

/// Builds the release hub (a no-op when fresh) and returns its path.
fn build_hub() -> Result<PathBuf, String> {
    let st = Command::new(env!("CARGO"))
        .args(["build", "--quiet", "--release", "--example", "hub"])
        .current_dir(repo_root())
        // ring's build script reruns when CARGO_MANIFEST_DIR changes, and cargo sets it for
        // this process: without this every run rebuilt ring, rustls and the crate.
        .env_remove("CARGO_MANIFEST_DIR")
        .status()
        .map_err(|e| format!("cargo build: {e}"))?;
    if !st.success() {
        return Err("cargo build --release --example hub failed".into());
    }
    Ok(target_dir().join("release").join("examples").join("hub"))
}

/// Raises the open-files soft limit to the hard limit; returns the new soft limit.
fn raise_fd_limit() -> u64 {
    // SAFETY: getrlimit/setrlimit with a valid, initialised struct.
    unsafe {
        let mut r = libc::rlimit {
            rlim_cur: 0,
            rlim_max: 0,
        };
        if libc::getrlimit(libc::RLIMIT_NOFILE, &mut r) != 0 {
            return 0;
        }
        r.rlim_cur = r.rlim_max;
        libc::setrlimit(libc::RLIMIT_NOFILE, &r);
        libc::getrlimit(libc::RLIMIT_NOFILE, &mut r);
        r.rlim_cur
    }
}

fn free_port() -> io::Result<u16> {
    Ok(StdListener::bind("127.0.0.1:0")?.local_addr()?.port())
}

struct Redis {
    _proc: Proc,
    port: u16,
}

impl Redis {
    fn start(dir: &Path) -> Result<Redis, String> {
        std::fs::create_dir_all(dir).map_err(|e| e.to_string())?;
        let port = free_port().map_err(|e| e.to_string())?;
        let proc = Proc::spawn(
            Command::new(REDIS_SERVER)
                .args(["--port", &port.to_string(), "--bind", "127.0.0.1"])
                .args(["--save", "", "--appendonly", "no", "--daemonize", "no"])
                .arg("--dir")
                .arg(dir)
                .arg("--logfile")
                .arg(dir.join("redis.log"))
                .stdin(Stdio::null())
                .stdout(Stdio::null())
                .stderr(Stdio::null()),
        )
        .map_err(|e| format!("{REDIS_SERVER}: {e}"))?;
        let r = Redis { _proc: proc, port };
        let end = Instant::now() + STEP;
        loop {
            if let Ok(v) = r.cmd(&["PING"]) {
                if v.as_bytes() == Some(b"PONG") {
                    return Ok(r);
                }
            }
            if Instant::now() > end {
                return Err("redis-server does not answer PING".into());
            }
            thread::sleep(Duration::from_millis(10));
        }
    }

    fn url(&self) -> String {
        format!("redis://127.0.0.1:{}", self.port)
    }

    fn cmd(&self, args: &[&str]) -> Result<Value, String> {
        let mut s = StdStream::connect(("127.0.0.1", self.port)).map_err(|e| e.to_string())?;
        s.set_read_timeout(Some(STEP)).map_err(|e| e.to_string())?;
        let mut cmd = RedisCommand::new(args[0]);
        for a in &args[1..] {
            cmd.push(a);
        }
        s.write_all(&cmd.to_bytes()).map_err(|e| e.to_string())?;
        let mut parser = Parser::new(Limits::default());
        let (mut buf, mut tmp) = (Vec::new(), [0u8; 16384]);
        loop {
            let (used, v) = parser.advance(&buf).map_err(|e| format!("{e:?}"))?;
            buf.drain(..used);
            if let Some(v) = v {
                return Ok(v);
            }
            match s.read(&mut tmp) {
                Ok(0) => return Err("redis closed the connection".into()),
                Ok(n) => buf.extend_from_slice(&tmp[..n]),
                Err(e) => return Err(e.to_string()),
            }
        }
    }

    /// `INFO section` as `field -> value`.
    fn info(&self, section: &str) -> Result<HashMap<String, String>, String> {
        let v = self.cmd(&["INFO", section])?;
        let text =
            String::from_utf8_lossy(v.as_bytes().ok_or("INFO: not a bulk string")?).into_owned();
        Ok(text
            .lines()
            .filter_map(|l| l.split_once(':'))
            .map(|(k, v)| (k.to_owned(), v.trim().to_owned()))
            .collect())
    }

    /// Calls per command (`cmdstat_evalsha:calls=N,...`), and `total_commands_processed`.
    fn counts(&self) -> Result<(HashMap<String, u64>, u64), String> {
        let stats = self.info("commandstats")?;
        let calls = stats
            .iter()
            .filter_map(|(k, v)| {
                let name = k.strip_prefix("cmdstat_")?;
                let n = v.split(',').find_map(|f| f.strip_prefix("calls="))?;
                Some((name.to_owned(), n.parse().ok()?))
            })
            .collect();
        let total = self
            .info("stats")?
            .get("total_commands_processed")
            .and_then(|v| v.parse().ok())
            .ok_or("no total_commands_processed")?;
        Ok((calls, total))
    }
}

/// A hub, its stderr in a log file.
struct Hub {
    proc: Proc,
    addr: SocketAddr,
    log: PathBuf,
}

impl Hub {
    fn start(bin: &Path, log: PathBuf, redis: Option<&str>) -> Result<Hub, String> {
        let mut cmd = Command::new(bin);
        cmd.args(["--addr", "127.0.0.1:0", "--max-connections", "30000"])
            .args(["--sse-heartbeat", "3600"])
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(File::create(&log).map_err(|e| e.to_string())?);
        if let Some(url) = redis {
            cmd.args(["--redis", url]);
        }
        let mut proc = Proc::spawn(&mut cmd).map_err(|e| format!("{}: {e}", bin.display()))?;
        let stdout = proc.0.stdout.take().ok_or("no stdout")?;
        let (tx, rx) = mpsc::channel();
        thread::spawn(move || {
            let mut r = BufReader::new(stdout);
            let mut line = String::new();
            let _ = r.read_line(&mut line);
            let _ = tx.send(line);
            let mut sink = Vec::new();
            let _ = r.read_to_end(&mut sink);
        });
        let line = rx
            .recv_timeout(STEP)
            .map_err(|_| "the hub did not print its address".to_string())?;
        let addr = line
            .trim()
            .rsplit("//")
            .next()
            .and_then(|a| a.parse().ok())
            .ok_or(format!("no address in {line:?}"))?;
        let hub = Hub { proc, addr, log };
        if redis.is_some() {
            // Both links up: a reader arriving earlier is refused.
            let end = Instant::now() + STEP;
            while !hub.stats()?.contains("\"ready\":true") {
                if Instant::now() > end {
                    return Err(format!("{}: redis links not ready", hub.addr));
                }
                thread::sleep(Duration::from_millis(20));
            }
        }
        Ok(hub)
    }

    fn stats(&self) -> Result<String, String> {
        let (status, body) = http(self.addr, "GET /stats HTTP/1.1\r\nHost: b\r\n\r\n")?;
        if status != 200 {
            return Err(format!("/stats answered {status}"));
        }
        Ok(body)
    }

    fn warnings(&self) -> usize {
        std::fs::read_to_string(&self.log)
            .map(|t| t.lines().filter(|l| l.starts_with("WARN")).count())
            .unwrap_or(0)
    }
}

/// The number after `"key":` inside the `"section":{...}` object of a `/stats` body.
fn stat(body: &str, section: &str, key: &str) -> Option<u64> {
    let at = body.find(&format!("\"{section}\":{{"))?;
    let obj = &body[at..];
    let obj = &obj[..obj.find('}')?];
    let k = obj.find(&format!("\"{key}\":"))? + key.len() + 3;
    let digits: String = obj[k..].chars().take_while(char::is_ascii_digit).collect();
    digits.parse().ok()
}

// ---- blocking HTTP and WebSocket --------------------------------------------------------------

/// One request on a fresh connection: status and body.
fn http(addr: SocketAddr, raw: &str) -> Result<(u16, String), String> {
    let mut s = StdStream::connect_timeout(&addr, STEP).map_err(|e| e.to_string())?;
    s.set_read_timeout(Some(STEP)).map_err(|e| e.to_string())?;
    s.write_all(raw.as_bytes()).map_err(|e| e.to_string())?;
    let mut c = HttpConn { s, buf: Vec::new() };
    c.response()
}

/// A kept-alive HTTP connection.
struct HttpConn {
    s: StdStream,
    buf: Vec<u8>,
}

impl HttpConn {
    fn open(addr: SocketAddr) -> Result<HttpConn, String> {
        let s = StdStream::connect_timeout(&addr, STEP).map_err(|e| e.to_string())?;
        s.set_nodelay(true).map_err(|e| e.to_string())?;
        s.set_read_timeout(Some(STEP)).map_err(|e| e.to_string())?;
        Ok(HttpConn { s, buf: Vec::new() })
    }

    fn publish(&mut self, topic: &str, data: &[u8]) -> Result<u16, String> {
        let mut req = format!(
            "POST /topics/{topic} HTTP/1.1\r\nHost: b\r\nContent-Length: {}\r\n\r\n",
            data.len()
        )
        .into_bytes();
        req.extend_from_slice(data);
        self.s.write_all(&req).map_err(|e| e.to_string())?;
        Ok(self.response()?.0)
    }

    /// One response with a Content-Length body.
    fn response(&mut self) -> Result<(u16, String), String> {
        let mut tmp = [0u8; 16384];
        loop {
            if let Some(end) = find(&self.buf, b"\r\n\r\n") {
                let head = String::from_utf8_lossy(&self.buf[..end]).into_owned();
                let status = head
                    .split(' ')
                    .nth(1)
                    .and_then(|s| s.parse().ok())
                    .ok_or(format!("bad status line in {head:?}"))?;
                let len: usize = head
                    .lines()
                    .find_map(|l| {
                        let (k, v) = l.split_once(':')?;
                        k.eq_ignore_ascii_case("content-length")
                            .then(|| v.trim().parse().ok())?
                    })
                    .unwrap_or(0);
                if self.buf.len() >= end + 4 + len {
                    let body =
                        String::from_utf8_lossy(&self.buf[end + 4..end + 4 + len]).into_owned();
                    self.buf.drain(..end + 4 + len);
                    return Ok((status, body));
                }
            }
            match self.s.read(&mut tmp) {
                Ok(0) => return Err("connection closed".into()),
                Ok(n) => self.buf.extend_from_slice(&tmp[..n]),
                Err(e) => return Err(format!("reading a response: {e}")),
            }
        }
    }
}

fn find(hay: &[u8], needle: &[u8]) -> Option<usize> {
    hay.windows(needle.len()).position(|w| w == needle)
}

fn ws_request(topic: &str) -> String {
    format!(
        "GET /topics/{topic}/ws HTTP/1.1\r\nHost: b\r\nUpgrade: websocket\r\n\
         Connection: Upgrade\r\nSec-WebSocket-Key: {WS_KEY}\r\nSec-WebSocket-Version: 13\r\n\r\n"
    )
}

/// A frame header: (opcode, header length, payload length), once complete.
fn ws_frame(b: &[u8]) -> Result<Option<(u8, usize, usize)>, String> {
    if b.len() < 2 {
        return Ok(None);
    }
    if b[1] & 0x80 != 0 {
        return Err("a masked frame from the server".into());
    }
    let (hdr, len) = match b[1] & 0x7f {
        126 if b.len() >= 4 => (4, u16::from_be_bytes([b[2], b[3]]) as usize),
        127 if b.len() >= 10 => (
            10,
            u64::from_be_bytes(b[2..10].try_into().expect("8 bytes")) as usize,
        ),
        126 | 127 => return Ok(None),
        l => (2, l as usize),
    };
    if len > 1 << 20 {
        return Err(format!("a {len}-byte frame"));
    }
    if b.len() < hdr + len {
        return Ok(None);
    }
    Ok(Some((b[0] & 0x0f, hdr, len)))
}

/// A masked client pong.
fn pong(payload: &[u8]) -> Vec<u8> {
    let mut f = vec![0x8a, 0x80 | payload.len().min(125) as u8, 0, 0, 0, 0];
    f.extend_from_slice(&payload[..payload.len().min(125)]);
    f
}

/// The data of a WebSocket event frame, `{"id":N,"event":..,"data":"..."}` (our data needs no
/// escapes).
fn frame_data(payload: &[u8]) -> Option<&[u8]> {
    let at = find(payload, b"\"data\":\"")? + 8;
    let rest = &payload[at..];
    Some(&rest[..rest.iter().position(|b| *b == b'"')?])
}

/// The number a data field starts with (after `prefix`).
fn leading(data: &[u8], prefix: u8) -> Option<u64> {
    let rest = data.strip_prefix(&[prefix])?;
    let digits = rest.iter().take_while(|b| b.is_ascii_digit()).count();
    std::str::from_utf8(&rest[..digits]).ok()?.parse().ok()
}

/// A blocking WebSocket subscriber (for the latency phase).
fn ws_blocking(addr: SocketAddr, topic: &str) -> Result<(StdStream, Vec<u8>), String> {
    let mut s = StdStream::connect_timeout(&addr, STEP).map_err(|e| e.to_string())?;
    s.set_nodelay(true).map_err(|e| e.to_string())?;
    s.set_read_timeout(Some(STEP)).map_err(|e| e.to_string())?;
    s.write_all(ws_request(topic).as_bytes())
        .map_err(|e| e.to_string())?;
    let mut buf = Vec::new();
    let mut tmp = [0u8; 4096];
    let end = loop {
        if let Some(end) = find(&buf, b"\r\n\r\n") {
            break end;
        }
        match s.read(&mut tmp) {
            Ok(0) | Err(_) => return Err("no handshake answer".into()),
            Ok(n) => buf.extend_from_slice(&tmp[..n]),
        }
    };
    if !buf.starts_with(b"HTTP/1.1 101") {
        return Err(format!(
            "handshake refused: {}",
            String::from_utf8_lossy(&buf[..end])
        ));
    }
    buf.drain(..end + 4);
    Ok((s, buf))
}

/// Reads frames from a blocking subscriber until `stop`, handing each data field with the
/// time it was read to `f`.
fn ws_read_loop(
    mut s: StdStream,
    mut buf: Vec<u8>,
    stop: Arc<AtomicBool>,
    mut f: impl FnMut(&[u8], Instant),
) {
    let _ = s.set_read_timeout(Some(Duration::from_millis(100)));
    let mut tmp = [0u8; 65536];
    while !stop.load(Ordering::SeqCst) {
        while let Ok(Some((op, hdr, len))) = ws_frame(&buf) {
            let now = Instant::now();
            if op == 1 {
                if let Some(d) = frame_data(&buf[hdr..hdr + len]) {
                    f(d, now);
                }
            } else if op == 9 {
                let p = pong(&buf[hdr..hdr + len]);
                let _ = s.write_all(&p);
            } else if op == 8 {
                return;
            }
            buf.drain(..hdr + len);
        }
        match s.read(&mut tmp) {
            Ok(0) => return,
            Ok(n) => buf.extend_from_slice(&tmp[..n]),
            Err(e)
                if matches!(
                    e.kind(),
                    io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut
                ) => {}
            Err(_) => return,
        }
    }
}

// ---- 1. latency -------------------------------------------------------------------------------

struct Latency {
    target: String,
    samples: usize,
    deliver_us: Vec<f64>,
    created_us: Vec<f64>,
}

fn pct(sorted: &[f64], p: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[i.min(sorted.len() - 1)]
}

/// `samples` publishes on `publish_on`, each received by a subscriber on `receive_on`;
/// `drain` hubs get a subscriber of the topic too.
fn latency(
    target: &str,
    publish_on: SocketAddr,
    receive_on: SocketAddr,
    drain: &[SocketAddr],
    samples: usize,
    data_bytes: usize,
) -> Result<Latency, String> {
    let topic = "lat";
    let base = Instant::now();
    let stop = Arc::new(AtomicBool::new(false));
    let mut threads = Vec::new();
    for &a in drain {
        let (s, buf) = ws_blocking(a, topic)?;
        let stop = stop.clone();
        threads.push(thread::spawn(move || ws_read_loop(s, buf, stop, |_, _| {})));
    }
    let (s, buf) = ws_blocking(receive_on, topic)?;
    let (tx, rx) = mpsc::channel::<(u64, f64)>();
    {
        let stop = stop.clone();
        threads.push(thread::spawn(move || {
            ws_read_loop(s, buf, stop, |d, at| {
                // "s<seq> <sent ns> ..."
                let Some(seq) = leading(d, b's') else { return };
                let sent = d
                    .split(|b| *b == b' ')
                    .nth(1)
                    .and_then(|t| std::str::from_utf8(t).ok()?.parse::<u64>().ok());
                if let Some(sent) = sent {
                    let now = at.duration_since(base).as_nanos() as u64;
                    let _ = tx.send((seq, now.saturating_sub(sent) as f64 / 1000.0));
                }
            })
        }));
    }
    let mut publisher = HttpConn::open(publish_on)?;
    let data = |seq: u64| {
        let sent = base.elapsed().as_nanos() as u64;
        let mut d = format!("s{seq} {sent} ").into_bytes();
        d.resize(data_bytes.max(d.len()), b'x');
        d
    };
    let mut out = Latency {
        target: target.into(),
        samples,
        deliver_us: Vec::with_capacity(samples),
        created_us: Vec::with_capacity(samples),
    };
    // Warm-up: until the subscriber is live (not measured).
    let end = Instant::now() + STEP;
    let mut seq = 0;
    'warm: loop {
        seq += 1;
        if publisher.publish(topic, &data(seq))? != 201 {
            return Err("a warm-up publish was refused".into());
        }
        while let Ok((s, _)) = rx.recv_timeout(Duration::from_millis(100)) {
            if s == seq {
                break 'warm;
            }
        }
        if Instant::now() > end {
            return Err("the latency subscriber never got a warm-up event".into());
        }
    }
    for _ in 0..samples + 20 {
        seq += 1;
        let t = Instant::now();
        let status = publisher.publish(topic, &data(seq))?;
        let created = t.elapsed();
        if status != 201 {
            return Err(format!("publish {seq} answered {status}"));
        }
        let got = loop {
            match rx.recv_timeout(STEP) {
                Ok((s, us)) if s == seq => break us,
                Ok((s, _)) if s < seq => continue,
                Ok((s, _)) => return Err(format!("event {s} before {seq}")),
                Err(_) => return Err(format!("event {seq} never arrived")),
            }
        };
        // The first 20 are a second warm-up.
        if seq > 20 + 1 {
            out.deliver_us.push(got);
            out.created_us.push(created.as_secs_f64() * 1e6);
        }
    }
    out.deliver_us.truncate(samples);
    out.created_us.truncate(samples);
    stop.store(true, Ordering::SeqCst);
    for t in threads {
        let _ = t.join();
    }
    out.deliver_us.sort_by(f64::total_cmp);
    out.created_us.sort_by(f64::total_cmp);
    Ok(out)
}

// ---- 2. fan-out -------------------------------------------------------------------------------

/// One subscriber socket of the fan-out phase.
struct Sub {
    sock: TcpStream,
    out: Vec<u8>,
    off: usize,
    buf: Vec<u8>,
    upgraded: bool,
    warm: bool,
    /// The last measured sequence number received.
    last: Option<u64>,
}

struct Fanout {
    target: String,
    subs: usize,
    hubs: usize,
    round_ms: Vec<f64>,
    burst: usize,
    burst_s: f64,
    deliveries_per_s: f64,
    first_ms: f64,
    /// CPU seconds during the burst: this process's loop thread, the hubs, Redis.
    cpu_client: f64,
    cpu_hubs: f64,
    cpu_redis: f64,
}

/// CPU seconds (user + system) of process `pid` so far, from `/proc/PID/stat`.
fn process_cpu(pid: u32) -> f64 {
    let Ok(stat) = std::fs::read_to_string(format!("/proc/{pid}/stat")) else {
        return 0.0;
    };
    // After the command name in parentheses: state is field 3; utime, stime are 14, 15.
    let Some(rest) = stat.rsplit_once(')').map(|(_, r)| r) else {
        return 0.0;
    };
    let f: Vec<&str> = rest.split_whitespace().collect();
    let ticks: f64 = f.get(11..13).map_or(0.0, |t| {
        t.iter().filter_map(|v| v.parse::<f64>().ok()).sum()
    });
    // SAFETY: sysconf has no preconditions.
    let hz = unsafe { libc::sysconf(libc::_SC_CLK_TCK) }.max(1) as f64;
    ticks / hz
}

/// CPU seconds of the calling thread.
fn thread_cpu() -> f64 {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: clock_gettime with a valid clock id and a live timespec.
    unsafe {
        libc::clock_gettime(libc::CLOCK_THREAD_CPUTIME_ID, &mut ts);
    }
    ts.tv_sec as f64 + ts.tv_nsec as f64 / 1e9
}

/// Subscribers on many sockets, one mio loop.
struct Swarm {
    poll: Poll,
    subs: Vec<Sub>,
    hubs: Vec<SocketAddr>,
    n: usize,
    upgraded: usize,
    warm: usize,
    /// Per measured sequence number: subscribers that have it.
    got: Vec<usize>,
    errors: Vec<String>,
}

impl Swarm {
    fn new(hubs: Vec<SocketAddr>, n: usize) -> Result<Swarm, String> {
        Ok(Swarm {
            poll: Poll::new().map_err(|e| e.to_string())?,
            subs: Vec::with_capacity(n),
            hubs,
            n,
            upgraded: 0,
            warm: 0,
            got: Vec::new(),
            errors: Vec::new(),
        })
    }

    fn error(&mut self, e: String) {
        if self.errors.len() < 20 {
            self.errors.push(e);
        }
    }

    fn check(&self) -> Result<(), String> {
        match self.errors.first() {
            None => Ok(()),
            Some(e) => Err(format!("{} errors, the first: {e}", self.errors.len())),
        }
    }

    fn open(&mut self, topic: &str) -> Result<(), String> {
        let i = self.subs.len();
        let SocketAddr::V4(dst) = self.hubs[i % self.hubs.len()] else {
            return Err("IPv4 only".into());
        };
        let src = Ipv4Addr::new(127, 0, 0, 2 + (i % SOURCES as usize) as u8);
        let std = connect_from(src, dst).map_err(|e| format!("connect from {src}: {e}"))?;
        let mut sock = TcpStream::from_std(std);
        self.poll
            .registry()
            .register(&mut sock, Token(i), Interest::READABLE | Interest::WRITABLE)
            .map_err(|e| e.to_string())?;
        self.subs.push(Sub {
            sock,
            out: ws_request(topic).into_bytes(),
            off: 0,
            buf: Vec::new(),
            upgraded: false,
            warm: false,
            last: None,
        });
        Ok(())
    }

    fn subscribe_all(&mut self, topic: &str) -> Result<(), String> {
        let end = Instant::now() + SETUP_DEADLINE;
        while self.upgraded < self.n {
            while self.subs.len() < self.n && self.subs.len() - self.upgraded < CONNECT_WINDOW {
                self.open(topic)?;
            }
            self.turn(Duration::from_millis(10))?;
            self.check()?;
            if Instant::now() > end {
                return Err(format!("{} of {} subscribed", self.upgraded, self.n));
            }
        }
        Ok(())
    }

    fn turn(&mut self, timeout: Duration) -> Result<(), String> {
        let mut events = Events::with_capacity(4096);
        match self.poll.poll(&mut events, Some(timeout)) {
            Ok(()) => {}
            Err(e) if e.kind() == io::ErrorKind::Interrupted => return Ok(()),
            Err(e) => return Err(e.to_string()),
        }
        for ev in events.iter() {
            self.io(ev.token().0);
        }
        Ok(())
    }

    fn io(&mut self, i: usize) {
        if let Err(e) = self.io_inner(i) {
            self.error(format!("subscriber {i}: {e}"));
        }
    }

    fn io_inner(&mut self, i: usize) -> Result<(), String> {
        let s = &mut self.subs[i];
        while s.off < s.out.len() {
            match s.sock.write(&s.out[s.off..]) {
                Ok(n) => s.off += n,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                Err(e) if e.kind() == io::ErrorKind::NotConnected => break,
                Err(e) => return Err(format!("write: {e}")),
            }
        }
        let mut tmp = [0u8; 65536];
        loop {
            match s.sock.read(&mut tmp) {
                Ok(0) => return Err("closed by the hub".into()),
                Ok(n) => s.buf.extend_from_slice(&tmp[..n]),
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                Err(e) if e.kind() == io::ErrorKind::NotConnected => break,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(format!("read: {e}")),
            }
        }
        if !s.upgraded {
            let Some(end) = find(&s.buf, b"\r\n\r\n") else {
                return Ok(());
            };
            if !s.buf.starts_with(b"HTTP/1.1 101") {
                let head = String::from_utf8_lossy(&s.buf[..end]).into_owned();
                return Err(format!("handshake refused: {head}"));
            }
            s.buf.drain(..end + 4);
            s.upgraded = true;
            s.out.clear();
            s.off = 0;
            self.upgraded += 1;
        }
        let s = &mut self.subs[i];
        let mut consumed = 0;
        let mut seqs = Vec::new();
        let mut reply = Vec::new();
        while let Some((op, hdr, len)) = ws_frame(&s.buf[consumed..])? {
            let payload = &s.buf[consumed + hdr..consumed + hdr + len];
            match op {
                1 => {
                    let d = frame_data(payload).ok_or("a frame without data")?;
                    if d.first() == Some(&b'w') {
                        if !s.warm {
                            s.warm = true;
                            self.warm += 1;
                        }
                    } else {
                        seqs.push(leading(d, b'm').ok_or("a frame without a number")?);
                    }
                }
                8 => return Err("a close frame".into()),
                9 => reply.extend(pong(payload)),
                _ => {}
            }
            consumed += hdr + len;
        }
        s.buf.drain(..consumed);
        if !reply.is_empty() {
            s.out.extend(reply);
            let _ = s.sock.write_all(&s.out[s.off..]);
            s.out.clear();
            s.off = 0;
        }
        for seq in seqs {
            let s = &mut self.subs[i];
            let want = s.last.map_or(0, |l| l + 1);
            if seq != want {
                return Err(format!("got event {seq}, wanted {want}"));
            }
            s.last = Some(seq);
            let k = seq as usize;
            if self.got.len() <= k {
                self.got.resize(k + 1, 0);
            }
            self.got[k] += 1;
        }
        Ok(())
    }

    /// Runs the loop until every subscriber has the measured event `seq` (or a deadline).
    fn until_delivered(&mut self, seq: usize, deadline: Instant) -> Result<(), String> {
        while self.got.get(seq).copied().unwrap_or(0) < self.n {
            self.turn(Duration::from_millis(5))?;
            self.check()?;
            if Instant::now() > deadline {
                let have = self.got.get(seq).copied().unwrap_or(0);
                return Err(format!("event {seq}: {have} of {} subscribers", self.n));
            }
        }
        Ok(())
    }
}

/// A nonblocking socket bound to `src` (port chosen at connect) connecting to `dst`.
fn connect_from(src: Ipv4Addr, dst: SocketAddrV4) -> io::Result<StdStream> {
    let sockaddr = |ip: Ipv4Addr, port: u16| libc::sockaddr_in {
        sin_family: libc::AF_INET as libc::sa_family_t,
        sin_port: port.to_be(),
        sin_addr: libc::in_addr {
            s_addr: u32::from(ip).to_be(),
        },
        sin_zero: [0; 8],
    };
    let len = std::mem::size_of::<libc::sockaddr_in>() as libc::socklen_t;
    // SAFETY: plain socket syscalls on a fd we own (wrapped at once so it is closed on every
    // path), with pointers to live, correctly sized values.
    unsafe {
        let fd = libc::socket(
            libc::AF_INET,
            libc::SOCK_STREAM | libc::SOCK_NONBLOCK | libc::SOCK_CLOEXEC,
            0,
        );
        if fd < 0 {
            return Err(io::Error::last_os_error());
        }
        let sock = StdStream::from_raw_fd(fd);
        let one: libc::c_int = 1;
        libc::setsockopt(
            fd,
            libc::IPPROTO_IP,
            libc::IP_BIND_ADDRESS_NO_PORT,
            (&one as *const libc::c_int).cast(),
            std::mem::size_of::<libc::c_int>() as libc::socklen_t,
        );
        let from = sockaddr(src, 0);
        if libc::bind(fd, (&from as *const libc::sockaddr_in).cast(), len) != 0 {
            return Err(io::Error::last_os_error());
        }
        let to = sockaddr(*dst.ip(), dst.port());
        if libc::connect(fd, (&to as *const libc::sockaddr_in).cast(), len) != 0 {
            let e = io::Error::last_os_error();
            if e.raw_os_error() != Some(libc::EINPROGRESS) {
                return Err(e);
            }
        }
        Ok(sock)
    }
}

/// What the publisher thread is told: a batch of event data to publish in order, or `None`
/// to stop.
type Batch = Option<Vec<Vec<u8>>>;

/// A publisher thread on a kept-alive connection: publishes each batch it is sent, then
/// answers `Ok` (or the first failure).
fn publisher(
    addr: SocketAddr,
    topic: &'static str,
) -> (mpsc::Sender<Batch>, mpsc::Receiver<Result<(), String>>) {
    let (tx, rx) = mpsc::channel::<Batch>();
    let (done_tx, done_rx) = mpsc::channel();
    thread::spawn(move || {
        let mut conn = match HttpConn::open(addr) {
            Ok(c) => c,
            Err(e) => {
                let _ = done_tx.send(Err(e));
                return;
            }
        };
        while let Ok(Some(batch)) = rx.recv() {
            let mut r = Ok(());
            for d in batch {
                match conn.publish(topic, &d) {
                    Ok(201) => {}
                    Ok(s) => r = Err(format!("a publish answered {s}")),
                    Err(e) => r = Err(e),
                }
            }
            let _ = done_tx.send(r);
        }
    });
    (tx, done_rx)
}

fn fanout(
    target: &str,
    hubs: &[SocketAddr],
    per_hub: usize,
    args: &Args,
    hub_pids: &[u32],
    redis_pid: Option<u32>,
) -> Result<Fanout, String> {
    const TOPIC: &str = "fan";
    let (rounds, burst, data_bytes) = (args.rounds, args.burst, args.data_bytes);
    let n = per_hub * hubs.len();
    let mut swarm = Swarm::new(hubs.to_vec(), n)?;
    let t = Instant::now();
    swarm.subscribe_all(TOPIC)?;
    eprintln!(
        "backplane: {target}: {n} subscribers connected in {:.1} s",
        t.elapsed().as_secs_f64()
    );
    let (tx, done) = publisher(hubs[0], TOPIC);
    let wait_done = |swarm: &mut Swarm, deadline: Instant| -> Result<(), String> {
        loop {
            match done.try_recv() {
                Ok(r) => return r,
                Err(mpsc::TryRecvError::Disconnected) => return Err("publisher gone".into()),
                Err(mpsc::TryRecvError::Empty) => {}
            }
            swarm.turn(Duration::from_millis(2))?;
            swarm.check()?;
            if Instant::now() > deadline {
                return Err("publish not answered".into());
            }
        }
    };
    let data = |prefix: char, k: usize| {
        let mut d = format!("{prefix}{k} ").into_bytes();
        d.resize(data_bytes.max(d.len()), b'x');
        d
    };
    // Warm-up publishes until every subscriber is live.
    let end = Instant::now() + SETUP_DEADLINE;
    let mut k = 0;
    while swarm.warm < n {
        k += 1;
        let _ = tx.send(Some(vec![data('w', k)]));
        wait_done(&mut swarm, Instant::now() + STEP)?;
        let settle = Instant::now() + Duration::from_millis(200);
        while swarm.warm < n && Instant::now() < settle {
            swarm.turn(Duration::from_millis(5))?;
        }
        swarm.check()?;
        if Instant::now() > end {
            return Err(format!("{} of {n} subscribers live", swarm.warm));
        }
    }
    let mut round_ms = Vec::new();
    let mut first_ms = 0.0;
    for r in 0..rounds {
        let t = Instant::now();
        let _ = tx.send(Some(vec![data('m', r)]));
        swarm.until_delivered(r, t + ROUND_DEADLINE)?;
        let ms = t.elapsed().as_secs_f64() * 1e3;
        if r == 0 {
            first_ms = ms;
        }
        round_ms.push(ms);
        wait_done(&mut swarm, Instant::now() + STEP)?;
    }
    let cpu = || {
        (
            thread_cpu(),
            hub_pids.iter().map(|p| process_cpu(*p)).sum::<f64>(),
            redis_pid.map_or(0.0, process_cpu),
        )
    };
    let cpu_before = cpu();
    let t = Instant::now();
    let batch: Vec<Vec<u8>> = (rounds..rounds + burst).map(|k| data('m', k)).collect();
    let _ = tx.send(Some(batch));
    swarm.until_delivered(rounds + burst - 1, t + BURST_DEADLINE)?;
    let burst_s = t.elapsed().as_secs_f64();
    let cpu_after = cpu();
    wait_done(&mut swarm, Instant::now() + STEP)?;
    let _ = tx.send(None);
    // Every subscriber had every event once, in order (checked as they came): all counts.
    if let Some((k, c)) = swarm.got.iter().enumerate().find(|(_, c)| **c != n) {
        return Err(format!("event {k} reached {c} of {n} subscribers"));
    }
    round_ms.sort_by(f64::total_cmp);
    Ok(Fanout {
        target: target.into(),
        subs: n,
        hubs: hubs.len(),
        round_ms,
        burst,
        burst_s,
        deliveries_per_s: (n * burst) as f64 / burst_s,
        first_ms,
        cpu_client: cpu_after.0 - cpu_before.0,
        cpu_hubs: cpu_after.1 - cpu_before.1,
        cpu_redis: cpu_after.2 - cpu_before.2,
    })
}

// ---- 3. round trips -----------------------------------------------------------------------

struct RoundTrips {
    publishes: usize,
    seconds: f64,
    /// Client commands per publish, by name (EVALSHA, XRANGE, ...).
    client: Vec<(String, f64)>,
    /// Commands the script ran, per publish.
    script: Vec<(String, f64)>,
    total_per_publish: f64,
    hub_publishes: Option<u64>,
    hub_reads: Option<u64>,
}

/// Commands counted by (run by the script, name).
type CommandCounts = HashMap<(bool, String), u64>;

/// Counts the commands Redis runs while it is on, through `MONITOR`: by who sent them (a
/// client, or the publish script: `[0 lua]`) and name.
struct Monitor {
    stop: Arc<AtomicBool>,
    handle: thread::JoinHandle<Result<CommandCounts, String>>,
}

impl Monitor {
    fn start(redis: &Redis) -> Result<Monitor, String> {
        let mut s = StdStream::connect(("127.0.0.1", redis.port)).map_err(|e| e.to_string())?;
        s.set_read_timeout(Some(Duration::from_millis(100)))
            .map_err(|e| e.to_string())?;
        s.write_all(b"MONITOR\r\n").map_err(|e| e.to_string())?;
        let mut buf = Vec::new();
        let mut tmp = [0u8; 65536];
        let end = Instant::now() + STEP;
        while find(&buf, b"\r\n").is_none() {
            match s.read(&mut tmp) {
                Ok(0) => return Err("MONITOR: closed".into()),
                Ok(n) => buf.extend_from_slice(&tmp[..n]),
                Err(_) if Instant::now() < end => {}
                Err(e) => return Err(format!("MONITOR: {e}")),
            }
        }
        if !buf.starts_with(b"+OK\r\n") {
            return Err(format!("MONITOR: {}", String::from_utf8_lossy(&buf)));
        }
        buf.drain(..5);
        let stop = Arc::new(AtomicBool::new(false));
        let flag = stop.clone();
        let handle = thread::spawn(move || {
            let mut counts = CommandCounts::new();
            loop {
                while let Some(eol) = find(&buf, b"\r\n") {
                    // +1700000000.123456 [0 127.0.0.1:5555] "EVALSHA" "..." ...
                    let line = String::from_utf8_lossy(&buf[..eol]).into_owned();
                    buf.drain(..eol + 2);
                    let Some((src, rest)) = line.split_once("] \"") else {
                        continue;
                    };
                    let lua = src.ends_with(" lua");
                    let name = rest.split('"').next().unwrap_or("").to_ascii_lowercase();
                    *counts.entry((lua, name)).or_default() += 1;
                }
                if flag.load(Ordering::SeqCst) {
                    return Ok(counts);
                }
                match s.read(&mut tmp) {
                    Ok(0) => return Err("MONITOR: closed".into()),
                    Ok(n) => buf.extend_from_slice(&tmp[..n]),
                    Err(e)
                        if matches!(
                            e.kind(),
                            io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut
                        ) => {}
                    Err(e) => return Err(format!("MONITOR: {e}")),
                }
            }
        });
        Ok(Monitor { stop, handle })
    }

    fn finish(self) -> Result<CommandCounts, String> {
        self.stop.store(true, Ordering::SeqCst);
        self.handle
            .join()
            .map_err(|_| "MONITOR thread panicked".to_string())?
    }
}

fn round_trips(redis: &Redis, hubs: &[Hub], n: usize) -> Result<RoundTrips, String> {
    const TOPIC: &str = "rtt";
    // A subscriber on every hub, as in a cluster in use.
    let stop = Arc::new(AtomicBool::new(false));
    let mut threads = Vec::new();
    for h in hubs {
        let (s, buf) = ws_blocking(h.addr, TOPIC)?;
        let stop = stop.clone();
        threads.push(thread::spawn(move || ws_read_loop(s, buf, stop, |_, _| {})));
    }
    let mut publisher = HttpConn::open(hubs[0].addr)?;
    publisher.publish(TOPIC, b"warm-up")?;
    thread::sleep(Duration::from_millis(300));
    let hub_before: Vec<String> = hubs.iter().map(Hub::stats).collect::<Result<_, _>>()?;
    let (_, total_before) = redis.counts()?;
    let monitor = Monitor::start(redis)?;
    let t = Instant::now();
    for i in 0..n {
        let status = publisher.publish(TOPIC, format!("r{i}").as_bytes())?;
        if status != 201 {
            return Err(format!("publish answered {status}"));
        }
    }
    thread::sleep(Duration::from_millis(300));
    let seconds = t.elapsed().as_secs_f64();
    let counts = monitor.finish()?;
    let (_, total_after) = redis.counts()?;
    let hub_after: Vec<String> = hubs.iter().map(Hub::stats).collect::<Result<_, _>>()?;
    stop.store(true, Ordering::SeqCst);
    for t in threads {
        let _ = t.join();
    }
    let mut counts: Vec<((bool, String), u64)> = counts.into_iter().collect();
    counts.sort();
    let per = |lua: bool| -> Vec<(String, f64)> {
        counts
            .iter()
            .filter(|((l, _), _)| *l == lua)
            .map(|((_, name), c)| (name.clone(), *c as f64 / n as f64))
            .collect()
    };
    let sum = |v: &[String], key: &str| -> Option<u64> {
        v.iter().map(|b| stat(b, "redis", key)).sum::<Option<u64>>()
    };
    let delta = |key: &str| Some(sum(&hub_after, key)? - sum(&hub_before, key)?);
    Ok(RoundTrips {
        publishes: n,
        seconds,
        client: per(false),
        script: per(true),
        // Less the INFO commands of the second count.
        total_per_publish: (total_after - total_before).saturating_sub(2) as f64 / n as f64,
        hub_publishes: delta("publishes"),
        hub_reads: delta("reads"),
    })
}

// ---- 4. a hub without readers ------------------------------------------------------------

/// The times until the `201` of sequential publishes (10 ms apart) on `addr`, sorted.
fn idle_publishes(addr: SocketAddr, samples: usize) -> Result<Vec<f64>, String> {
    let mut conn = HttpConn::open(addr)?;
    conn.publish("idle", b"loads the script")?;
    let end = Instant::now() + Duration::from_secs(60);
    let mut us = Vec::with_capacity(samples);
    for i in 0..samples {
        thread::sleep(Duration::from_millis(10));
        let t = Instant::now();
        let status = conn.publish("idle", format!("i{i}").as_bytes())?;
        if status != 201 {
            return Err(format!("publish answered {status}"));
        }
        us.push(t.elapsed().as_secs_f64() * 1e6);
        if Instant::now() > end {
            break;
        }
    }
    us.sort_by(f64::total_cmp);
    Ok(us)
}

// ---- main ---------------------------------------------------------------------------------

fn main() {
    let args = match parse_args() {
        Ok(a) => a,
        Err(e) => {
            eprintln!("backplane: {e}\n{USAGE}");
            exit(2);
        }
    };
    if !Path::new(REDIS_SERVER).is_file() {
        eprintln!("backplane: SKIPPED: {REDIS_SERVER} is missing (Debian package redis-server)");
        return;
    }
    watchdog();
    if let Err(e) = run(&args) {
        println!("backplane ERROR {e}");
        exit(1);
    }
}

fn run(args: &Args) -> Result<(), String> {
    let hub_bin = build_hub()?;
    let fds = raise_fd_limit();
    let need = (args.subs * 3).max(args.mem_subs.iter().copied().max().unwrap_or(0)) as u64 + 200;
    if fds < need {
        return Err(format!(
            "open-files limit {fds}: {need} needed here and in the hub; lower --subs or --mem-subs"
        ));
    }
    let dir = target_dir().join("backplane-bench");
    std::fs::create_dir_all(&dir).map_err(|e| e.to_string())?;
    let started = Instant::now();
    let machine = machine();
    eprintln!("backplane: {machine}; open-files limit {fds}");

    let mut latencies = Vec::new();
    let mut fanouts = Vec::new();

    // The cluster: one Redis, three hubs.
    let redis = Redis::start(&dir.join("redis"))?;
    let cluster: Vec<Hub> = (1..=3)
        .map(|i| {
            Hub::start(
                &hub_bin,
                dir.join(format!("hub{i}.log")),
                Some(&redis.url()),
            )
        })
        .collect::<Result<_, _>>()?;
    let addrs: Vec<SocketAddr> = cluster.iter().map(|h| h.addr).collect();
    eprintln!("backplane: latency, 3 hubs + redis");
    latencies.push(latency(
        "redis-3-hubs",
        addrs[0],
        addrs[1],
        &[addrs[0], addrs[2]],
        args.samples,
        args.data_bytes,
    )?);
    eprintln!("backplane: round trips");
    let rtt = round_trips(&redis, &cluster, args.rtt)?;
    let idle = if args.idle_samples > 0 {
        eprintln!("backplane: publishes on a hub without readers");
        let hub4 = Hub::start(&hub_bin, dir.join("hub4.log"), Some(&redis.url()))?;
        idle_publishes(hub4.addr, args.idle_samples)?
    } else {
        Vec::new()
    };
    eprintln!("backplane: fan-out, 3 hubs x {} + redis", args.subs);
    let pids: Vec<u32> = cluster.iter().map(|h| h.proc.0.id()).collect();
    fanouts.push(fanout(
        &format!("redis-3x{}", args.subs),
        &addrs,
        args.subs,
        args,
        &pids,
        Some(redis._proc.0.id()),
    )?);
    let warnings: Vec<usize> = cluster.iter().map(Hub::warnings).collect();
    for mut h in cluster {
        let exited = h.proc.0.try_wait().ok().flatten();
        if let Some(st) = exited {
            return Err(format!("hub {} exited: {st}", h.addr));
        }
    }
    drop(redis);

    // One hub, in memory.
    {
        let hub = Hub::start(&hub_bin, dir.join("memory.log"), None)?;
        eprintln!("backplane: latency, 1 hub in memory");
        latencies.push(latency(
            "memory-1-hub",
            hub.addr,
            hub.addr,
            &[],
            args.samples,
            args.data_bytes,
        )?);
    }
    for &n in &args.mem_subs {
        let hub = Hub::start(&hub_bin, dir.join(format!("memory-{n}.log")), None)?;
        eprintln!("backplane: fan-out, 1 hub x {n} in memory");
        fanouts.push(fanout(
            &format!("memory-1x{n}"),
            &[hub.addr],
            n,
            args,
            &[hub.proc.0.id()],
            None,
        )?);
    }

    report(&latencies, &fanouts, &rtt, &idle, &warnings);
    println!(
        "backplane run seconds={:.0} machine=\"{machine}\"",
        started.elapsed().as_secs_f64()
    );
    Ok(())
}

/// CPU count and model, for the figures.
fn machine() -> String {
    let cpus = thread::available_parallelism().map_or(0, |n| n.get());
    let model = std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|t| {
            t.lines()
                .find(|l| l.starts_with("model name"))
                .and_then(|l| l.split_once(':'))
                .map(|(_, m)| m.trim().to_owned())
        })
        .unwrap_or_else(|| "unknown CPU".into());
    format!("{cpus} CPUs, {model}")
}

fn report(lat: &[Latency], fan: &[Fanout], rtt: &RoundTrips, idle: &[f64], warnings: &[usize]) {
    println!();
    println!("| latency | samples | deliver p50 | deliver p99 | deliver max | 201 p50 | 201 p99 | 201 max |");
    println!("|---|---:|---:|---:|---:|---:|---:|---:|");
    for l in lat {
        let d = &l.deliver_us;
        let c = &l.created_us;
        println!(
            "| {} | {} | {:.0} µs | {:.0} µs | {:.0} µs | {:.0} µs | {:.0} µs | {:.0} µs |",
            l.target,
            l.samples,
            pct(d, 0.5),
            pct(d, 0.99),
            pct(d, 1.0),
            pct(c, 0.5),
            pct(c, 0.99),
            pct(c, 1.0)
        );
    }
    if !idle.is_empty() {
        println!(
            "| redis, a 4th hub reading nothing (201 only) | {} | | | | {:.0} µs | {:.0} µs | {:.0} µs |",
            idle.len(),
            pct(idle, 0.5),
            pct(idle, 0.99),
            pct(idle, 1.0)
        );
    }
    println!();
    println!(
        "| fan-out | hubs | subscribers | one publish p50 | max | first | burst | deliveries/s \
         | burst CPU s: client / hubs / redis |"
    );
    println!("|---|---:|---:|---:|---:|---:|---:|---:|---:|");
    for f in fan {
        println!(
            "| {} | {} | {} | {:.1} ms | {:.1} ms | {:.1} ms | {} in {:.2} s | {:.0} \
             | {:.2} / {:.2} / {:.2} |",
            f.target,
            f.hubs,
            f.subs,
            pct(&f.round_ms, 0.5),
            pct(&f.round_ms, 1.0),
            f.first_ms,
            f.burst,
            f.burst_s,
            f.deliveries_per_s,
            f.cpu_client,
            f.cpu_hubs,
            f.cpu_redis
        );
    }
    println!();
    let list = |v: &[(String, f64)]| {
        v.iter()
            .map(|(k, p)| format!("{k}={p:.3}"))
            .collect::<Vec<_>>()
            .join(" ")
    };
    println!(
        "redis commands per publish ({} publishes in {:.2} s): sent by clients: {}; run by the \
         script: {}; total_commands_processed: {:.3}",
        rtt.publishes,
        rtt.seconds,
        list(&rtt.client),
        list(&rtt.script),
        rtt.total_per_publish
    );
    println!();
    for l in lat {
        println!(
            "backplane latency target={} samples={} deliver_us_p50={:.0} deliver_us_p99={:.0} \
             deliver_us_max={:.0} created_us_p50={:.0} created_us_p99={:.0} created_us_max={:.0}",
            l.target,
            l.samples,
            pct(&l.deliver_us, 0.5),
            pct(&l.deliver_us, 0.99),
            pct(&l.deliver_us, 1.0),
            pct(&l.created_us, 0.5),
            pct(&l.created_us, 0.99),
            pct(&l.created_us, 1.0)
        );
    }
    for f in fan {
        println!(
            "backplane fanout target={} hubs={} subs={} rounds={} round_ms_p50={:.1} \
             round_ms_max={:.1} first_ms={:.1} burst={} burst_s={:.3} deliveries_per_s={:.0} \
             burst_cpu_s_client={:.2} burst_cpu_s_hubs={:.2} burst_cpu_s_redis={:.2}",
            f.target,
            f.hubs,
            f.subs,
            f.round_ms.len(),
            pct(&f.round_ms, 0.5),
            pct(&f.round_ms, 1.0),
            f.first_ms,
            f.burst,
            f.burst_s,
            f.deliveries_per_s,
            f.cpu_client,
            f.cpu_hubs,
            f.cpu_redis
        );
    }
    if !idle.is_empty() {
        let late = idle.iter().filter(|us| **us > 250_000.0).count();
        println!(
            "backplane idle_hub_publish samples={} created_us_p50={:.0} created_us_p99={:.0} \
             created_us_max={:.0} over_250ms={late}",
            idle.len(),
            pct(idle, 0.5),
            pct(idle, 0.99),
            pct(idle, 1.0)
        );
    }
    let opt = |v: Option<u64>| v.map_or("n/a".to_string(), |n| n.to_string());
    println!(
        "backplane round_trips publishes={} client_per_publish=\"{}\" script_per_publish=\"{}\" \
         total_commands_per_publish={:.3} hub_stats_publishes={} hub_stats_reads={} \
         cluster_warnings={:?}",
        rtt.publishes,
        list(&rtt.client),
        list(&rtt.script),
        rtt.total_per_publish,
        opt(rtt.hub_publishes),
        opt(rtt.hub_reads),
        warnings
    );
}
