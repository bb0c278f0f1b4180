//! Memory per idle connection: what N kept-alive, quiet connections cost the server.
//!
//! ```text
//! cargo build --release --example hub
//! cargo bench --bench idle_conns -- [--conns 10000] [--port 19201] [--settle-ms 1000]
//!     [--no-baseline]
//! ```
//!
//! Starts the hub (`target/release/examples/hub`, or the binary named by `PUSHWIRE_HUB`) as
//! `hub --addr 127.0.0.1:PORT`, reads its `VmRSS` from `/proc/PID/status`, opens `--conns`
//! connections that each complete one `GET /healthz` (HTTP/1.1, kept alive) so the server
//! has really parsed and answered a request on every one, waits `--settle-ms`, checks the
//! server closed none of them, reads `VmRSS` again and prints
//!
//! ```text
//! idle_conns target=pushwire-hub conns=10000 rss_before_kib=.. rss_after_kib=.. bytes_per_conn=..
//! ```
//!
//! For scale it then does the same with the tokio-tungstenite baseline
//! (`benches/tt-echo/target/release/tt-echo`, or `TT_ECHO`), each connection idle after a
//! WebSocket handshake, if that binary exists and `--no-baseline` is not given. The two are
//! not the same work (an HTTP keep-alive connection against an open WebSocket), so compare
//! them with that in mind.
//!
//! All connections come from 127.0.0.1's ephemeral ports (about 28,000 of them), which is
//! why `--conns` stops at 20,000; both processes hold one fd per connection, each under its
//! own open-files limit, which is checked first. Every step has a deadline; the servers are
//! killed at the end, also on failure. Without a hub binary it says so and exits 0, so a
//! bare `cargo bench` does not fail for want of a build.

use std::io::{self, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::process::{exit, Child, Command, Stdio};
use std::thread::sleep;
use std::time::{Duration, Instant};

use base64::engine::general_purpose::STANDARD as BASE64;
use base64::Engine as _;
use sha1::{Digest, Sha1};

const USAGE: &str = "usage: idle_conns [--conns N] [--port P] [--settle-ms MS] [--no-baseline]";
const MAX_CONNS: usize = 20_000;
/// fds we keep for ourselves besides the connections (stdio, the spawned child's pipes...).
const SPARE_FDS: u64 = 64;
/// Each connect, request and response must finish within this...
const STEP_TIMEOUT: Duration = Duration::from_secs(5);
/// ...and opening all of them within this.
const OPEN_DEADLINE: Duration = Duration::from_secs(180);
/// How long a server may take to start listening.
const START_DEADLINE: Duration = Duration::from_secs(10);
/// The longest response we read.
const MAX_RESPONSE: usize = 16 * 1024;
const WS_GUID: &str = "258EAFA5-E914-47DA-95CA-C5AB0DC85B11";

struct Args {
    conns: usize,
    port: u16,
    settle: Duration,
    baseline: bool,
}

/// What each idle connection did before going quiet.
#[derive(Clone, Copy)]
enum Probe {
    /// One `GET /healthz`, answered 200 and kept alive.
    Healthz,
    /// The WebSocket opening handshake on this path, answered 101.
    WsHandshake(&'static str),
    /// A long poll on this path: sent, and left parked (no answer is expected).
    Parked(&'static str),
}

/// A server process that is killed when dropped.
struct Server(Child);

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn main() {
    let args = match parse_args() {
        Ok(a) => a,
        Err(e) => {
            eprintln!("idle_conns: {e}\n{USAGE}");
            exit(2);
        }
    };
    let hub =
        std::env::var("PUSHWIRE_HUB").unwrap_or_else(|_| "target/release/examples/hub".into());
    if !std::path::Path::new(&hub).is_file() {
        eprintln!(
            "idle_conns: SKIPPED: no hub binary at {hub}; build it with \
             `cargo build --release --example hub` or set PUSHWIRE_HUB"
        );
        return;
    }
    if let Err(e) = check_fd_limit(args.conns) {
        eprintln!("idle_conns: {e}");
        exit(1);
    }
    let mut targets = vec![
        ("pushwire-hub", hub.clone(), Probe::Healthz, args.port),
        // The same hub, each connection an idle WebSocket subscribed to a topic.
        (
            "pushwire-hub-ws",
            hub.clone(),
            Probe::WsHandshake("/topics/idle/ws"),
            args.port.wrapping_add(2),
        ),
        // ...and each connection a parked long poll.
        (
            "pushwire-hub-parked",
            hub,
            Probe::Parked("/topics/idle/poll?since=0&timeout=120"),
            args.port.wrapping_add(3),
        ),
    ];
    let tt = std::env::var("TT_ECHO")
        .unwrap_or_else(|_| "benches/tt-echo/target/release/tt-echo".into());
    if args.baseline && std::path::Path::new(&tt).is_file() {
        targets.push((
            "tokio-tungstenite",
            tt,
            Probe::WsHandshake("/"),
            args.port.wrapping_add(1),
        ));
    } else if args.baseline {
        eprintln!(
            "idle_conns: no baseline: {tt} not built (cd benches/tt-echo && cargo build --release)"
        );
    }
    for (label, bin, probe, port) in targets {
        match measure(&bin, port, probe, &args) {
            Ok((before, after, idle_cpu_ms)) => {
                let per_conn = (after as i64 - before as i64) * 1024 / args.conns as i64;
                println!(
                    "idle_conns target={label} conns={} rss_before_kib={before} \
                     rss_after_kib={after} bytes_per_conn={per_conn} \
                     idle_cpu_ms={idle_cpu_ms} (over {:?})",
                    args.conns, args.settle
                );
            }
            Err(e) => {
                eprintln!("idle_conns: {label} ({bin}): {e}");
                exit(1);
            }
        }
    }
}

fn parse_args() -> Result<Args, String> {
    let mut a = Args {
        conns: 10_000,
        port: 19201,
        settle: Duration::from_millis(1000),
        baseline: true,
    };
    let mut it = std::env::args().skip(1);
    while let Some(flag) = it.next() {
        match flag.as_str() {
            // `cargo bench` passes `--bench` to every harness-less bench.
            "--bench" => continue,
            "--no-baseline" => {
                a.baseline = false;
                continue;
            }
            _ => {}
        }
        let value = it.next().ok_or_else(|| format!("{flag} needs a value"))?;
        let bad = || format!("bad value for {flag}: {value:?}");
        match flag.as_str() {
            "--conns" => a.conns = value.parse().map_err(|_| bad())?,
            "--port" => a.port = value.parse().map_err(|_| bad())?,
            "--settle-ms" => {
                let ms: u64 = value.parse().map_err(|_| bad())?;
                a.settle = Duration::from_millis(ms.min(60_000));
            }
            _ => return Err(format!("unknown argument {flag:?}")),
        }
    }
    if !(1..=MAX_CONNS).contains(&a.conns) {
        return Err(format!("--conns must be 1..={MAX_CONNS}"));
    }
    Ok(a)
}

/// Both we and the server (which inherits our limit) need one fd per connection.
fn check_fd_limit(conns: usize) -> Result<(), String> {
    let limits = std::fs::read_to_string("/proc/self/limits").map_err(|e| e.to_string())?;
    let soft = limits
        .lines()
        .find(|l| l.starts_with("Max open files"))
        .and_then(|l| l.split_whitespace().nth(3))
        .and_then(|v| v.parse::<u64>().ok());
    match soft {
        Some(soft) if soft < conns as u64 + SPARE_FDS => Err(format!(
            "open-files limit {soft} is too low for {conns} connections; lower --conns"
        )),
        _ => Ok(()),
    }
}

/// Starts `bin`, loads it with idle connections; returns VmRSS in KiB before and after, and
/// the CPU time (ms) the server used during one settle period while holding them all.
fn measure(bin: &str, port: u16, probe: Probe, args: &Args) -> Result<(u64, u64, u64), String> {
    let addr = SocketAddr::from(([127, 0, 0, 1], port));
    if TcpStream::connect_timeout(&addr, STEP_TIMEOUT).is_ok() {
        return Err(format!("something already listens on {addr}"));
    }
    let child = Command::new(bin)
        .arg("--addr")
        .arg(addr.to_string())
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .map_err(|e| format!("cannot start: {e}"))?;
    let mut server = Server(child);
    let pid = server.0.id();
    wait_listening(&mut server, addr)?;

    // One request first, so whatever the server sets up lazily is in the "before" figure.
    drop(open_one(addr, probe, Instant::now() + STEP_TIMEOUT).map_err(|e| format!("probe: {e}"))?);
    sleep(args.settle);
    let before = vm_rss_kib(pid)?;

    let deadline = Instant::now() + OPEN_DEADLINE;
    let mut conns = Vec::with_capacity(args.conns);
    for n in 0..args.conns {
        let s = open_one(addr, probe, deadline).map_err(|e| format!("conn {n}: {e}"))?;
        conns.push(s);
    }
    sleep(args.settle);
    let cpu_start = cpu_ms(pid)?;
    sleep(args.settle);
    let idle_cpu = cpu_ms(pid)? - cpu_start;
    if let Ok(Some(status)) = server.0.try_wait() {
        return Err(format!(
            "server exited ({status}) while holding the connections"
        ));
    }
    let after = vm_rss_kib(pid)?;
    let closed = count_closed(&conns)?;
    if closed > 0 {
        return Err(format!(
            "the server closed {closed} of {} connections while they were idle",
            conns.len()
        ));
    }
    drop(conns);
    drop(server);
    Ok((before, after, idle_cpu))
}

/// User plus system CPU time of `pid` in milliseconds, from /proc/PID/stat.
fn cpu_ms(pid: u32) -> Result<u64, String> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .map_err(|e| format!("reading /proc/{pid}/stat: {e}"))?;
    // Fields after the command name (which may contain spaces) start at state (field 3).
    let rest = stat.rsplit_once(')').map(|(_, r)| r).unwrap_or("");
    let fields: Vec<&str> = rest.split_whitespace().collect();
    let ticks = |i: usize| fields.get(i).and_then(|v| v.parse::<u64>().ok());
    // utime and stime are fields 14 and 15, i.e. 11 and 12 after the state.
    match (ticks(11), ticks(12)) {
        // USER_HZ is 100 on Linux.
        (Some(u), Some(s)) => Ok((u + s) * 10),
        _ => Err(format!("bad /proc/{pid}/stat")),
    }
}

fn wait_listening(server: &mut Server, addr: SocketAddr) -> Result<(), String> {
    let deadline = Instant::now() + START_DEADLINE;
    loop {
        if TcpStream::connect_timeout(&addr, Duration::from_millis(200)).is_ok() {
            return Ok(());
        }
        if let Ok(Some(status)) = server.0.try_wait() {
            return Err(format!("server exited at start ({status})"));
        }
        if Instant::now() >= deadline {
            return Err(format!(
                "server does not listen on {addr} after {START_DEADLINE:?}"
            ));
        }
        sleep(Duration::from_millis(50));
    }
}

/// A connection that has done `probe` and now sits idle.
fn open_one(addr: SocketAddr, probe: Probe, deadline: Instant) -> Result<TcpStream, String> {
    let left = || {
        let d = deadline
            .checked_duration_since(Instant::now())
            .unwrap_or_default();
        if d.is_zero() {
            Err("deadline passed".to_string())
        } else {
            Ok(d.min(STEP_TIMEOUT))
        }
    };
    let mut s = TcpStream::connect_timeout(&addr, left()?).map_err(|e| format!("connect: {e}"))?;
    s.set_write_timeout(Some(left()?))
        .map_err(|e| e.to_string())?;
    let key = BASE64.encode(*b"pushwire-idle-16");
    let req = match probe {
        Probe::Healthz => format!("GET /healthz HTTP/1.1\r\nHost: {addr}\r\n\r\n"),
        Probe::Parked(path) => format!("GET {path} HTTP/1.1\r\nHost: {addr}\r\n\r\n"),
        Probe::WsHandshake(path) => format!(
            "GET {path} HTTP/1.1\r\nHost: {addr}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
             Sec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\n\r\n"
        ),
    };
    s.write_all(req.as_bytes())
        .map_err(|e| format!("write: {e}"))?;
    if let Probe::Parked(_) = probe {
        // Parked: nothing comes back until an event or the timeout.
        return Ok(s);
    }

    let mut buf = Vec::with_capacity(512);
    let mut chunk = [0u8; 1024];
    let mut head_len = None;
    loop {
        if let Some(head) = head_len {
            if response_done(&buf, head, probe, &key)? {
                return Ok(s);
            }
        }
        if buf.len() >= MAX_RESPONSE {
            return Err(format!("response longer than {MAX_RESPONSE} bytes"));
        }
        s.set_read_timeout(Some(left()?))
            .map_err(|e| e.to_string())?;
        let k = match s.read(&mut chunk) {
            Ok(0) => return Err("server closed the connection after the request".into()),
            Ok(k) => k,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(format!("read: {e}")),
        };
        buf.extend_from_slice(&chunk[..k]);
        if head_len.is_none() {
            let mut headers = [httparse::EMPTY_HEADER; 32];
            let mut resp = httparse::Response::new(&mut headers);
            match resp.parse(&buf) {
                Ok(httparse::Status::Complete(n)) => head_len = Some(n),
                Ok(httparse::Status::Partial) => {}
                Err(e) => return Err(format!("bad response head: {e}")),
            }
        }
    }
}

/// Checks the response whose head is `buf[..head]`; true once all of it is in `buf`.
fn response_done(buf: &[u8], head: usize, probe: Probe, key: &str) -> Result<bool, String> {
    let mut headers = [httparse::EMPTY_HEADER; 32];
    let mut resp = httparse::Response::new(&mut headers);
    resp.parse(buf)
        .map_err(|e| format!("bad response head: {e}"))?;
    let header = |name: &str| {
        resp.headers
            .iter()
            .find(|h| h.name.eq_ignore_ascii_case(name))
            .map(|h| String::from_utf8_lossy(h.value).trim().to_ascii_lowercase())
    };
    let body = &buf[head..];
    match probe {
        Probe::WsHandshake(_) => {
            if resp.code != Some(101) {
                return Err(format!("status {:?}, want 101", resp.code));
            }
            let mut sha = Sha1::new();
            sha.update(key.as_bytes());
            sha.update(WS_GUID.as_bytes());
            let want = BASE64.encode(sha.finalize()).to_ascii_lowercase();
            if header("sec-websocket-accept") != Some(want) {
                return Err("wrong or missing Sec-WebSocket-Accept".into());
            }
            Ok(true)
        }
        Probe::Parked(_) => Err("a parked poll was answered".into()),
        Probe::Healthz => {
            if resp.code != Some(200) {
                return Err(format!("GET /healthz: status {:?}, want 200", resp.code));
            }
            if header("connection").is_some_and(|v| v.split(',').any(|t| t.trim() == "close")) {
                return Err("GET /healthz: server answered Connection: close".into());
            }
            if let Some(len) = header("content-length") {
                let len: usize = len.parse().map_err(|_| "bad Content-Length".to_string())?;
                return match body.len().cmp(&len) {
                    std::cmp::Ordering::Less => Ok(false),
                    std::cmp::Ordering::Equal => Ok(true),
                    std::cmp::Ordering::Greater => Err("bytes after the response body".into()),
                };
            }
            if header("transfer-encoding").is_some_and(|v| v.ends_with("chunked")) {
                // A short body: done when the last chunk and an empty trailer have come.
                return Ok(body.ends_with(b"0\r\n\r\n"));
            }
            Err("GET /healthz: response has no length, so the connection cannot stay open".into())
        }
    }
}

/// How many of the connections the server has closed (EOF or reset is readable at once).
fn count_closed(conns: &[TcpStream]) -> Result<usize, String> {
    let mut closed = 0;
    let mut byte = [0u8; 1];
    for s in conns {
        s.set_nonblocking(true).map_err(|e| e.to_string())?;
        match s.peek(&mut byte) {
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
            Ok(0) | Err(_) => closed += 1,
            Ok(_) => return Err("server sent bytes on an idle connection".into()),
        }
    }
    Ok(closed)
}

/// The resident set size of `pid` in KiB, from /proc/PID/status.
fn vm_rss_kib(pid: u32) -> Result<u64, String> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status"))
        .map_err(|e| format!("reading /proc/{pid}/status: {e}"))?;
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.split_whitespace().next())
        .and_then(|v| v.parse().ok())
        .ok_or_else(|| format!("no VmRSS in /proc/{pid}/status"))
}
