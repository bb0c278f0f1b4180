//! Durability cost (issue 10, section 4): what a data directory costs a hub, measured from
//! outside the release hub binary over loopback, every figure and ratio in one run.
//!
//! ```text
//! cargo build --release --example hub
//! cargo bench --bench durability          # or: bash benches/durability.sh
//! ```
//!
//! Three parts:
//!
//! 1. **Publish throughput.** For each hub mode (in memory: no `--data-dir`; `--data-dir D
//!    --fsync always`; `--data-dir D --fsync interval`) and each publisher count (1 and 64),
//!    a fresh hub (and a fresh, empty data dir `D` under `DURBENCH_DIR`, on the normal disk:
//!    the bench prints `df -T` of it and warns when it is a tmpfs) gets `N` threads, each
//!    with its own keep-alive `std::net::TcpStream`, doing `POST /topics/bench-<k % 8>` with
//!    a small body one after the other and reading each `201`. After a warm-up
//!    (`DURBENCH_WARMUP` s, not counted), responses are counted for `DURBENCH_SECS` s.
//!    Per cell: publishes/s, publish latency p50/p99, the hub's CPU (user + system, all its
//!    threads, in cores), this process's CPU, the device flushes completed on the data dir's
//!    block device (`/sys/dev/block/M:m/stat`, field 16; the whole device, so other activity
//!    counts too) and the data dir's size afterwards.
//! 2. **Loop responsiveness.** During each of those loads one more thread sends
//!    `GET /healthz` every `DURBENCH_PROBE_MS` ms on its own keep-alive connection (one
//!    probe in flight at a time, the next one due 10 ms after the previous was due, or at
//!    once when it is late) and reports p50/p99/max of the round trip.
//! 3. **Recovery.** A data dir holding `DURBENCH_TOPICS` x `DURBENCH_EVENTS` events (1,000 x
//!    1,000 of about 100 bytes of data) is written directly with the public sans-IO encoder
//!    (`pushwire::proto::store`): one segment `0000000001.seg` (0600, in a 0700 dir), events
//!    round-robin over the topics `t-0`, `t-1`, ... (as a live log interleaves them), each
//!    topic's ids consecutive from `FIRST_ID`, a `TopicFirst` record before each topic's
//!    first event. It is checked with `pushwire::proto::store::scan` (every record there,
//!    a clean tail). Then `DURBENCH_RUNS` times: a copy of it, a hub started on it with
//!    `--history-events 1000`, timed from spawn to its "listening on" line (median
//!    reported); `/topics/t-0/events?since=0` and the newest event of the last topic are
//!    checked; the dir's size (`du -sk` and apparent bytes) is taken once the hub has been
//!    quiet on disk for a second (it may compact), the hub is killed (SIGKILL) and started
//!    once more on the dir it left (the "restart" row). The page cache is warm (the files
//!    were just written): this is the CPU cost of recovery, not the disk's read speed.
//!
//! A hub that does not know `--data-dir` (it exits with its usage line: issue 10 not in this
//! build yet) gets the in-memory cells only; the durable cells and the recovery starts are
//! shown as `n/a`, the dataset is still generated and checked, and the exit status is 0.
//! Any failed request or check is a `durability ERROR ...` line and exit status 1.
//!
//! The hub is `PUSHWIRE_HUB`, else `target/release/examples/hub`; without one the bench
//! says so and exits 0. Settings (environment): `DURBENCH_SECS` (3), `DURBENCH_WARMUP`
//! (0.5), `DURBENCH_ROUNDS` (1: every cell once; N: the cells N times, interleaved, and the
//! table shows the median of each figure), `DURBENCH_PUBLISHERS` (1,64), `DURBENCH_MODES`
//! (memory,always,interval), `DURBENCH_BODY_BYTES` (64), `DURBENCH_PROBE_MS` (10),
//! `DURBENCH_TOPICS` (1000), `DURBENCH_EVENTS` (1000), `DURBENCH_DATA_BYTES` (100),
//! `DURBENCH_RUNS` (3), `DURBENCH_PARTS` (load,recovery), `DURBENCH_DIR`
//! (target/durability), `DURBENCH_PORT` (19401, one port per hub start from there),
//! `DURBENCH_PIN` (0; 1 pins the hub to core `DURBENCH_HUB_CPU` (0) and this process to
//! `DURBENCH_BENCH_CPU` (1). Off by default: on a shared box a pinned hub cannot move off a
//! core another process is using, which made the figures swing more, not less),
//! `DURBENCH_KEEP` (1 = keep the data dirs). Every hub listens on 127.0.0.1 and is killed
//! (SIGKILL) when its cell ends, also on failure; its stderr is kept in
//! `DURBENCH_DIR/hub-*.log`.
//!
//! Within a round the three modes of one publisher count run one after the other, so each
//! ratio compares cells measured seconds apart.

use std::fs::{self, DirBuilder, File, OpenOptions};
use std::io::{self, BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::os::unix::fs::{DirBuilderExt, MetadataExt, OpenOptionsExt, PermissionsExt};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{exit, Child, Command, ExitStatus, Stdio};
use std::sync::atomic::{AtomicU8, Ordering};
use std::sync::mpsc::{self, Receiver, RecvTimeoutError};
use std::sync::{Arc, Barrier};
use std::thread::{self, sleep};
use std::time::{Duration, Instant};

use pushwire::proto::store::{scan, write_header, Record, Tail, DEFAULT_MAX_RECORD};

/// The first id of every topic of the recovery dataset (Unix µs, early December 2025).
const FIRST_ID: u64 = 1_764_620_000_000_000;
/// Topics the publishers spread over.
const PUB_TOPICS: usize = 8;
/// A hub must print its "listening on" line within this (recovery of 1M events included).
const START_DEADLINE: Duration = Duration::from_secs(120);
/// One request's read or write.
const IO_TIMEOUT: Duration = Duration::from_secs(10);
/// The longest response we read.
const MAX_RESPONSE: usize = 1 << 20;
/// Responses counted per publisher thread at most (a bound that a 3 s cell never reaches).
const MAX_PER_THREAD: usize = 2_000_000;
/// Latency samples kept per thread at most.
const MAX_SAMPLES: usize = 1_000_000;
/// How long the data dir's size must stay still before it counts as settled, and the
/// longest wait for that.
const SETTLE: Duration = Duration::from_secs(1);
const SETTLE_DEADLINE: Duration = Duration::from_secs(15);

/// Load phases, shared by the publishers and the prober.
const WARMUP: u8 = 0;
const MEASURE: u8 = 1;
const STOP: u8 = 2;

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Mode {
    Memory,
    Always,
    Interval,
}

impl Mode {
    fn name(self) -> &'static str {
        match self {
            Mode::Memory => "memory",
            Mode::Always => "always",
            Mode::Interval => "interval",
        }
    }
    fn durable(self) -> bool {
        self != Mode::Memory
    }
}

struct Cfg {
    hub: PathBuf,
    secs: f64,
    warmup: f64,
    publishers: Vec<usize>,
    modes: Vec<Mode>,
    body_bytes: usize,
    probe_ms: u64,
    topics: usize,
    events: usize,
    data_bytes: usize,
    runs: usize,
    rounds: usize,
    load: bool,
    recovery: bool,
    dir: PathBuf,
    port: u16,
    hub_cpu: Option<usize>,
    bench_cpu: Option<usize>,
    keep: bool,
}

fn env_or<T: std::str::FromStr>(name: &str, default: T) -> Result<T, String> {
    match std::env::var(name) {
        Ok(v) => v
            .trim()
            .parse()
            .map_err(|_| format!("bad value for {name}: {v:?}")),
        Err(_) => Ok(default),
    }
}

/// `1`/`0` (or `true`/`false`, `yes`/`no`).
fn env_bool(name: &str, default: bool) -> Result<bool, String> {
    match std::env::var(name).as_deref().map(str::trim) {
        Err(_) => Ok(default),
        Ok("1" | "true" | "yes") => Ok(true),
        Ok("0" | "false" | "no") => Ok(false),
        Ok(v) => Err(format!("bad value for {name}: {v:?} (1 or 0)")),
    }
}

fn env_list(name: &str, default: &str) -> Vec<String> {
    std::env::var(name)
        .unwrap_or_else(|_| default.into())
        .split(',')
        .map(|s| s.trim().to_owned())
        .filter(|s| !s.is_empty())
        .collect()
}

fn target_dir() -> PathBuf {
    match std::env::var_os("CARGO_TARGET_DIR") {
        Some(d) => PathBuf::from(d),
        None => Path::new(env!("CARGO_MANIFEST_DIR")).join("target"),
    }
}

fn config() -> Result<Cfg, String> {
    let cores = thread::available_parallelism().map_or(1, |n| n.get());
    let pin = env_bool("DURBENCH_PIN", false)?;
    if pin && cores < 2 {
        return Err("DURBENCH_PIN=1 needs at least 2 cores".into());
    }
    let hub = std::env::var_os("PUSHWIRE_HUB")
        .map(PathBuf::from)
        .unwrap_or_else(|| target_dir().join("release/examples/hub"));
    let publishers = env_list("DURBENCH_PUBLISHERS", "1,64")
        .iter()
        .map(|p| p.parse::<usize>().ok().filter(|n| (1..=512).contains(n)))
        .collect::<Option<Vec<_>>>()
        .ok_or("DURBENCH_PUBLISHERS: a list of counts 1..=512")?;
    let modes = env_list("DURBENCH_MODES", "memory,always,interval")
        .iter()
        .map(|m| match m.as_str() {
            "memory" => Some(Mode::Memory),
            "always" => Some(Mode::Always),
            "interval" => Some(Mode::Interval),
            _ => None,
        })
        .collect::<Option<Vec<_>>>()
        .ok_or("DURBENCH_MODES: a list of memory, always, interval")?;
    let parts = env_list("DURBENCH_PARTS", "load,recovery");
    if let Some(p) = parts.iter().find(|p| *p != "load" && *p != "recovery") {
        return Err(format!(
            "DURBENCH_PARTS: unknown part {p:?} (load, recovery)"
        ));
    }
    let c = Cfg {
        hub,
        secs: env_or("DURBENCH_SECS", 3.0)?,
        warmup: env_or("DURBENCH_WARMUP", 0.5)?,
        publishers,
        modes,
        body_bytes: env_or("DURBENCH_BODY_BYTES", 64)?,
        probe_ms: env_or("DURBENCH_PROBE_MS", 10)?,
        topics: env_or("DURBENCH_TOPICS", 1000)?,
        events: env_or("DURBENCH_EVENTS", 1000)?,
        data_bytes: env_or("DURBENCH_DATA_BYTES", 100)?,
        runs: env_or("DURBENCH_RUNS", 3)?,
        rounds: env_or("DURBENCH_ROUNDS", 1)?,
        load: parts.iter().any(|p| p == "load"),
        recovery: parts.iter().any(|p| p == "recovery"),
        dir: std::env::var_os("DURBENCH_DIR")
            .map(PathBuf::from)
            .unwrap_or_else(|| target_dir().join("durability")),
        port: env_or("DURBENCH_PORT", 19401)?,
        hub_cpu: if pin {
            Some(env_or("DURBENCH_HUB_CPU", 0)?)
        } else {
            None
        },
        bench_cpu: if pin {
            Some(env_or("DURBENCH_BENCH_CPU", 1)?)
        } else {
            None
        },
        keep: env_bool("DURBENCH_KEEP", false)?,
    };
    if !(c.secs > 0.0 && c.secs <= 600.0 && (0.0..=60.0).contains(&c.warmup)) {
        return Err("DURBENCH_SECS must be in (0, 600], DURBENCH_WARMUP in [0, 60]".into());
    }
    if !(1..=20).contains(&c.rounds) {
        return Err("DURBENCH_ROUNDS must be 1..=20".into());
    }
    if !(1..=65_536).contains(&c.body_bytes) || !(1..=1000).contains(&c.probe_ms) {
        return Err("DURBENCH_BODY_BYTES must be 1..=65536, DURBENCH_PROBE_MS 1..=1000".into());
    }
    if !(1..=100_000).contains(&c.topics)
        || !(1..=100_000).contains(&c.events)
        || c.topics * c.events > 20_000_000
        || !(16..=65_536).contains(&c.data_bytes)
        || !(1..=15).contains(&c.runs)
    {
        return Err(
            "recovery dataset: DURBENCH_TOPICS, DURBENCH_EVENTS 1..=100000 with at most \
                    20M events, DURBENCH_DATA_BYTES 16..=65536, DURBENCH_RUNS 1..=15"
                .into(),
        );
    }
    Ok(c)
}

// ---------------------------------------------------------------------------------------
// Hub processes
// ---------------------------------------------------------------------------------------

/// A running hub, killed (SIGKILL) when dropped.
struct Hub {
    child: Child,
    addr: SocketAddr,
}

impl Hub {
    fn pid(&self) -> u32 {
        self.child.id()
    }
}

impl Drop for Hub {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

enum StartError {
    /// The hub exited before listening.
    Exited(ExitStatus, String),
    Other(String),
}

impl StartError {
    fn text(self) -> String {
        match self {
            StartError::Exited(status, log) => {
                format!("the hub exited at start ({status}); its stderr ends with:\n{log}")
            }
            StartError::Other(e) => e,
        }
    }
}

/// The last few lines of a log file.
fn log_tail(path: &Path) -> String {
    let text = fs::read_to_string(path).unwrap_or_default();
    let lines: Vec<&str> = text.lines().collect();
    lines[lines.len().saturating_sub(8)..].join("\n")
}

struct Ports(u16);

impl Ports {
    /// The next port nothing listens on.
    fn next(&mut self) -> Result<SocketAddr, String> {
        for _ in 0..100 {
            let addr = SocketAddr::from(([127, 0, 0, 1], self.0));
            self.0 = self.0.wrapping_add(1).max(1024);
            if TcpStream::connect_timeout(&addr, Duration::from_millis(200)).is_err() {
                return Ok(addr);
            }
        }
        Err("no free port found".into())
    }
}

/// Starts the hub with `args` on `addr` and waits for its "listening on" line; returns
/// the hub and the time from spawn to that line.
fn start_hub(
    cfg: &Cfg,
    addr: SocketAddr,
    args: &[String],
    log: &Path,
) -> Result<(Hub, Duration), StartError> {
    let log_file =
        File::create(log).map_err(|e| StartError::Other(format!("{}: {e}", log.display())))?;
    let mut cmd = Command::new(&cfg.hub);
    cmd.arg("--addr")
        .arg(addr.to_string())
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(log_file);
    if let Some(cpu) = cfg.hub_cpu {
        // SAFETY: sched_setaffinity is async-signal-safe; the set lives on this stack.
        unsafe {
            cmd.pre_exec(move || {
                let mut set: libc::cpu_set_t = std::mem::zeroed();
                libc::CPU_SET(cpu, &mut set);
                if libc::sched_setaffinity(0, std::mem::size_of::<libc::cpu_set_t>(), &set) != 0 {
                    return Err(io::Error::last_os_error());
                }
                Ok(())
            });
        }
    }
    let t0 = Instant::now();
    let mut child = cmd
        .spawn()
        .map_err(|e| StartError::Other(format!("cannot start {}: {e}", cfg.hub.display())))?;
    let stdout = child.stdout.take().expect("piped stdout");
    let lines = stdout_lines(stdout);
    let mut hub = Hub { child, addr };
    let deadline = t0 + START_DEADLINE;
    loop {
        match lines.recv_timeout(Duration::from_millis(50)) {
            Ok(line) if line.contains("listening on") => return Ok((hub, t0.elapsed())),
            Ok(_) => {}
            Err(RecvTimeoutError::Timeout) => {}
            Err(RecvTimeoutError::Disconnected) => {
                // stdout closed: the hub is exiting; give it a moment to be reaped.
                let status = hub
                    .child
                    .wait()
                    .map_err(|e| StartError::Other(e.to_string()))?;
                return Err(StartError::Exited(status, log_tail(log)));
            }
        }
        if let Ok(Some(status)) = hub.child.try_wait() {
            return Err(StartError::Exited(status, log_tail(log)));
        }
        if Instant::now() >= deadline {
            return Err(StartError::Other(format!(
                "the hub printed no \"listening on\" line within {START_DEADLINE:?}"
            )));
        }
    }
}

/// The hub's stdout lines, read by a thread that drains it until EOF.
fn stdout_lines(stdout: impl Read + Send + 'static) -> Receiver<String> {
    let (tx, rx) = mpsc::channel();
    thread::spawn(move || {
        for line in BufReader::new(stdout).lines() {
            let Ok(line) = line else { break };
            let _ = tx.send(line);
        }
    });
    rx
}

fn mode_args(mode: Mode, dir: &Path) -> Vec<String> {
    match mode {
        Mode::Memory => Vec::new(),
        Mode::Always | Mode::Interval => vec![
            "--data-dir".into(),
            dir.display().to_string(),
            "--fsync".into(),
            mode.name().into(),
        ],
    }
}

/// Whether this hub build knows `--data-dir` and `--fsync`: `Ok(false)` when it exits with
/// its usage line (status 2) on them.
fn hub_knows_data_dir(cfg: &Cfg, ports: &mut Ports) -> Result<bool, String> {
    let dir = cfg.dir.join(format!("probe-{}", std::process::id()));
    let _ = fs::remove_dir_all(&dir);
    let addr = ports.next()?;
    let log = cfg.dir.join("hub-probe.log");
    let r = start_hub(cfg, addr, &mode_args(Mode::Always, &dir), &log);
    let _ = fs::remove_dir_all(&dir);
    match r {
        Ok(_) => Ok(true),
        Err(StartError::Exited(status, log))
            if status.code() == Some(2) && log.contains("usage") =>
        {
            Ok(false)
        }
        Err(e) => Err(e.text()),
    }
}

// ---------------------------------------------------------------------------------------
// HTTP/1.1 keep-alive client
// ---------------------------------------------------------------------------------------

struct Conn {
    s: TcpStream,
    buf: Vec<u8>,
}

impl Conn {
    fn open(addr: SocketAddr) -> Result<Conn, String> {
        let e = |e: io::Error| format!("connect {addr}: {e}");
        let s = TcpStream::connect_timeout(&addr, IO_TIMEOUT).map_err(e)?;
        s.set_nodelay(true).map_err(e)?;
        s.set_read_timeout(Some(IO_TIMEOUT)).map_err(e)?;
        s.set_write_timeout(Some(IO_TIMEOUT)).map_err(e)?;
        Ok(Conn {
            s,
            buf: Vec::with_capacity(4096),
        })
    }

    /// Sends one request (whole, prebuilt) and reads its response: status and body. The
    /// response must carry a Content-Length and nothing may follow it.
    fn request(&mut self, req: &[u8]) -> Result<(u16, &[u8]), String> {
        self.s.write_all(req).map_err(|e| format!("write: {e}"))?;
        self.buf.clear();
        let mut chunk = [0u8; 4096];
        loop {
            let n = match self.s.read(&mut chunk) {
                Ok(0) => return Err("the hub closed the connection".into()),
                Ok(n) => n,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => return Err(format!("read: {e}")),
            };
            self.buf.extend_from_slice(&chunk[..n]);
            let mut headers = [httparse::EMPTY_HEADER; 16];
            let mut resp = httparse::Response::new(&mut headers);
            match resp.parse(&self.buf) {
                Ok(httparse::Status::Complete(head)) => {
                    let status = resp.code.unwrap_or(0);
                    let len = resp
                        .headers
                        .iter()
                        .find(|h| h.name.eq_ignore_ascii_case("content-length"))
                        .and_then(|h| {
                            std::str::from_utf8(h.value)
                                .ok()?
                                .trim()
                                .parse::<usize>()
                                .ok()
                        })
                        .ok_or("a response without Content-Length")?;
                    if self.buf.len() > head + len {
                        return Err("bytes after the response".into());
                    }
                    if self.buf.len() == head + len {
                        return Ok((status, &self.buf[head..]));
                    }
                }
                Ok(httparse::Status::Partial) => {}
                Err(e) => return Err(format!("bad response: {e}")),
            }
            if self.buf.len() > MAX_RESPONSE {
                return Err("response too long".into());
            }
        }
    }
}

fn get_request(path: &str) -> Vec<u8> {
    format!("GET {path} HTTP/1.1\r\nHost: bench\r\n\r\n").into_bytes()
}

fn post_request(topic: &str, body: &[u8]) -> Vec<u8> {
    let mut r = format!(
        "POST /topics/{topic} HTTP/1.1\r\nHost: bench\r\nContent-Length: {}\r\n\r\n",
        body.len()
    )
    .into_bytes();
    r.extend_from_slice(body);
    r
}

/// One GET on a fresh connection.
fn get(addr: SocketAddr, path: &str) -> Result<(u16, Vec<u8>), String> {
    let mut c = Conn::open(addr)?;
    let (status, body) = c
        .request(&get_request(path))
        .map_err(|e| format!("GET {path}: {e}"))?;
    Ok((status, body.to_vec()))
}

// ---------------------------------------------------------------------------------------
// Measurements from /proc and /sys
// ---------------------------------------------------------------------------------------

/// User + system CPU time of a process (all its threads), from `/proc/PID/stat`.
fn cpu_time(pid: &str) -> Option<Duration> {
    let stat = fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let rest = &stat[stat.rfind(')')? + 2..];
    let f: Vec<&str> = rest.split_whitespace().collect();
    let ticks = f.get(11)?.parse::<u64>().ok()? + f.get(12)?.parse::<u64>().ok()?;
    // SAFETY: sysconf has no preconditions.
    let hz = unsafe { libc::sysconf(libc::_SC_CLK_TCK) }.max(1) as u64;
    Some(Duration::from_nanos(ticks * 1_000_000_000 / hz))
}

/// `syscw` of `/proc/PID/io`: write-family system calls (`write`, `writev`), which here are
/// the HTTP responses (sockets are written with `writev`/`write`, and counted), segment
/// writes, and the eventfd writes that wake the loop.
fn write_calls(pid: &str) -> Option<u64> {
    let s = fs::read_to_string(format!("/proc/{pid}/io")).ok()?;
    let line = s.lines().find(|l| l.starts_with("syscw:"))?;
    line.split_whitespace().nth(1)?.parse().ok()
}

/// A `/proc/PID/status` field in kB (VmHWM, VmRSS).
fn status_kb(pid: u32, field: &str) -> Option<u64> {
    let s = fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let line = s.lines().find(|l| l.starts_with(field))?;
    line.split_whitespace().nth(1)?.parse().ok()
}

/// The block device a path is on: `/sys/dev/block/M:m` of the whole disk (flushes are
/// counted there, not on partitions).
fn block_device(path: &Path) -> Option<PathBuf> {
    let dev = fs::metadata(path).ok()?.dev();
    let (maj, min) = (libc::major(dev), libc::minor(dev));
    let sys = PathBuf::from(format!("/sys/dev/block/{maj}:{min}"));
    if sys.join("partition").exists() {
        let parent = fs::canonicalize(&sys).ok()?.parent()?.to_path_buf();
        return parent.join("stat").exists().then_some(parent);
    }
    sys.join("stat").exists().then_some(sys)
}

/// Flush requests the device completed so far (field 16 of its stat file).
fn device_flushes(dev: Option<&Path>) -> Option<u64> {
    let s = fs::read_to_string(dev?.join("stat")).ok()?;
    s.split_whitespace().nth(15)?.parse().ok()
}

/// `df -T PATH`: filesystem type and source.
fn filesystem(path: &Path) -> (String, String) {
    let out = Command::new("df").arg("-T").arg(path).output();
    let text = out.map(|o| String::from_utf8_lossy(&o.stdout).into_owned());
    let line = text.ok().and_then(|t| t.lines().nth(1).map(str::to_owned));
    let mut f = line.as_deref().unwrap_or("").split_whitespace();
    let source = f.next().unwrap_or("?").to_owned();
    let ty = f.next().unwrap_or("?").to_owned();
    (ty, source)
}

/// `du -sk PATH` (kB allocated on disk) and the apparent size (the sum of file lengths).
fn dir_size(path: &Path) -> (Option<u64>, u64) {
    let du = Command::new("du")
        .arg("-sk")
        .arg(path)
        .output()
        .ok()
        .and_then(|o| {
            String::from_utf8_lossy(&o.stdout)
                .split_whitespace()
                .next()?
                .parse()
                .ok()
        });
    (du, apparent_bytes(path))
}

fn apparent_bytes(path: &Path) -> u64 {
    let Ok(rd) = fs::read_dir(path) else { return 0 };
    rd.flatten()
        .filter_map(|e| e.metadata().ok())
        .map(|m| if m.is_dir() { 0 } else { m.len() })
        .sum()
}

/// The files of a dir, `name:bytes`, sorted.
fn listing(path: &Path) -> String {
    let mut v: Vec<(String, u64)> = fs::read_dir(path)
        .map(|rd| {
            rd.flatten()
                .map(|e| {
                    let len = e.metadata().map_or(0, |m| m.len());
                    (e.file_name().to_string_lossy().into_owned(), len)
                })
                .collect()
        })
        .unwrap_or_default();
    v.sort();
    v.iter()
        .map(|(n, l)| format!("{n}:{l}"))
        .collect::<Vec<_>>()
        .join(" ")
}

/// Waits until the dir's apparent size stays the same for `SETTLE` (bounded).
fn wait_settled(path: &Path) -> Duration {
    let t0 = Instant::now();
    let mut last = apparent_bytes(path);
    let mut since = Instant::now();
    while t0.elapsed() < SETTLE_DEADLINE {
        sleep(Duration::from_millis(100));
        let now = apparent_bytes(path);
        if now != last {
            last = now;
            since = Instant::now();
        } else if since.elapsed() >= SETTLE {
            break;
        }
    }
    t0.elapsed()
}

fn percentile(sorted: &[u64], q: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    let i = ((q * sorted.len() as f64).ceil() as usize).clamp(1, sorted.len()) - 1;
    sorted[i] as f64
}

/// The median (the mean of the middle two for an even count).
fn median(v: &mut [f64]) -> f64 {
    v.sort_by(|a, b| a.total_cmp(b));
    match v.len() {
        0 => f64::NAN,
        n if n % 2 == 1 => v[n / 2],
        n => (v[n / 2 - 1] + v[n / 2]) / 2.0,
    }
}

// ---------------------------------------------------------------------------------------
// Part 1 and 2: throughput and /healthz latency under load
// ---------------------------------------------------------------------------------------

#[derive(Default)]
struct ThreadStats {
    count: u64,
    latencies_ns: Vec<u64>,
    capped: bool,
}

#[derive(Clone)]
struct Cell {
    mode: Mode,
    publishers: usize,
    /// Publishes answered during the measurement.
    publishes: u64,
    per_sec: f64,
    pub_p50_ms: f64,
    pub_p99_ms: f64,
    health_p50_ms: f64,
    health_p99_ms: f64,
    health_max_ms: f64,
    probes: usize,
    hub_cpu: Option<f64>,
    bench_cpu: Option<f64>,
    /// The hub's write-family system calls during the measurement.
    hub_writes: Option<u64>,
    flushes: Option<u64>,
    dir_bytes: Option<u64>,
    capped: bool,
}

fn publisher(
    addr: SocketAddr,
    k: usize,
    body_bytes: usize,
    start: &Barrier,
    phase: &AtomicU8,
) -> Result<ThreadStats, String> {
    let conn = Conn::open(addr);
    // Reach the barrier in every case, so one failed connect cannot hang the others.
    start.wait();
    let mut conn = conn?;
    let topic = format!("bench-{}", k % PUB_TOPICS);
    let mut body = format!("p{k:03}-").into_bytes();
    body.resize(body_bytes, b'x');
    let req = post_request(&topic, &body);
    let mut st = ThreadStats::default();
    loop {
        let sent_in = phase.load(Ordering::Acquire);
        if sent_in == STOP {
            break;
        }
        let t = Instant::now();
        let (status, resp) = conn
            .request(&req)
            .map_err(|e| format!("publisher {k}: POST /topics/{topic}: {e}"))?;
        let ns = t.elapsed().as_nanos() as u64;
        if status != 201 {
            return Err(format!(
                "publisher {k}: POST /topics/{topic}: {status} {}",
                String::from_utf8_lossy(resp).trim()
            ));
        }
        if sent_in == MEASURE && phase.load(Ordering::Acquire) == MEASURE {
            st.count += 1;
            if st.latencies_ns.len() < MAX_SAMPLES {
                st.latencies_ns.push(ns);
            }
            if st.count as usize >= MAX_PER_THREAD {
                st.capped = true;
                break;
            }
        }
    }
    Ok(st)
}

fn prober(
    addr: SocketAddr,
    every: Duration,
    start: &Barrier,
    phase: &AtomicU8,
) -> Result<Vec<u64>, String> {
    let conn = Conn::open(addr);
    start.wait();
    let mut conn = conn?;
    let req = get_request("/healthz");
    let mut out = Vec::new();
    let mut due = Instant::now();
    loop {
        let now = Instant::now();
        if due > now {
            sleep(due - now);
        }
        due = (due + every).max(Instant::now());
        let sent_in = phase.load(Ordering::Acquire);
        if sent_in == STOP {
            break;
        }
        let t = Instant::now();
        let (status, body) = conn
            .request(&req)
            .map_err(|e| format!("prober: GET /healthz: {e}"))?;
        let ns = t.elapsed().as_nanos() as u64;
        if status != 200 || body != b"ok" {
            return Err(format!("prober: GET /healthz: {status}"));
        }
        if sent_in == MEASURE && out.len() < MAX_SAMPLES {
            out.push(ns);
        }
    }
    Ok(out)
}

fn run_cell(
    cfg: &Cfg,
    ports: &mut Ports,
    mode: Mode,
    n: usize,
    device: Option<&Path>,
) -> Result<Cell, String> {
    let dir = cfg
        .dir
        .join(format!("data-{}-{}-{}", mode.name(), n, std::process::id()));
    let _ = fs::remove_dir_all(&dir);
    let addr = ports.next()?;
    let log = cfg.dir.join(format!("hub-{}-{n}.log", mode.name()));
    let (hub, _) = start_hub(cfg, addr, &mode_args(mode, &dir), &log).map_err(StartError::text)?;
    let result = drive_load(cfg, &hub, n, device);
    let dir_bytes = mode.durable().then(|| apparent_bytes(&dir));
    if mode.durable() && dir_bytes == Some(0) {
        return Err(format!(
            "the hub ran with --data-dir {} but nothing is in it",
            dir.display()
        ));
    }
    drop(hub);
    if !cfg.keep {
        let _ = fs::remove_dir_all(&dir);
    }
    let r = result.map_err(|e| format!("{e}\nhub stderr ends with:\n{}", log_tail(&log)))?;
    Ok(Cell {
        mode,
        publishers: n,
        dir_bytes,
        ..r
    })
}

fn drive_load(cfg: &Cfg, hub: &Hub, n: usize, device: Option<&Path>) -> Result<Cell, String> {
    let addr = hub.addr;
    let start = Arc::new(Barrier::new(n + 2));
    let phase = Arc::new(AtomicU8::new(WARMUP));
    let mut pubs = Vec::with_capacity(n);
    for k in 0..n {
        let (start, phase) = (start.clone(), phase.clone());
        let body_bytes = cfg.body_bytes;
        let h = thread::Builder::new()
            .stack_size(256 * 1024)
            .spawn(move || publisher(addr, k, body_bytes, &start, &phase))
            .map_err(|e| format!("cannot start a publisher thread: {e}"))?;
        pubs.push(h);
    }
    let probe = {
        let (start, phase) = (start.clone(), phase.clone());
        let every = Duration::from_millis(cfg.probe_ms);
        thread::spawn(move || prober(addr, every, &start, &phase))
    };
    start.wait();
    sleep(Duration::from_secs_f64(cfg.warmup));
    let hub_pid = hub.pid().to_string();
    let cpu0 = (cpu_time(&hub_pid), cpu_time("self"));
    let flush0 = device_flushes(device);
    let writes0 = write_calls(&hub_pid);
    let t0 = Instant::now();
    phase.store(MEASURE, Ordering::Release);
    sleep(Duration::from_secs_f64(cfg.secs));
    phase.store(STOP, Ordering::Release);
    let wall = t0.elapsed();
    let cpu1 = (cpu_time(&hub_pid), cpu_time("self"));
    let flush1 = device_flushes(device);
    let writes1 = write_calls(&hub_pid);

    let mut errors = Vec::new();
    let mut count = 0u64;
    let mut lat = Vec::new();
    let mut capped = false;
    for h in pubs {
        match h.join() {
            Ok(Ok(st)) => {
                count += st.count;
                lat.extend_from_slice(&st.latencies_ns);
                capped |= st.capped;
            }
            Ok(Err(e)) => errors.push(e),
            Err(_) => errors.push("a publisher thread panicked".into()),
        }
    }
    let mut health = match probe.join() {
        Ok(Ok(v)) => v,
        Ok(Err(e)) => {
            errors.push(e);
            Vec::new()
        }
        Err(_) => {
            errors.push("the prober thread panicked".into());
            Vec::new()
        }
    };
    if !errors.is_empty() {
        let more = errors.len().saturating_sub(5);
        errors.truncate(5);
        if more > 0 {
            errors.push(format!("... and {more} more"));
        }
        return Err(errors.join("\n"));
    }
    if count == 0 {
        return Err("no publish was answered during the measurement".into());
    }
    lat.sort_unstable();
    health.sort_unstable();
    let share = |a: Option<Duration>, b: Option<Duration>| {
        Some(b?.saturating_sub(a?).as_secs_f64() / wall.as_secs_f64())
    };
    let ms = 1e-6;
    Ok(Cell {
        mode: Mode::Memory,
        publishers: n,
        publishes: count,
        per_sec: count as f64 / wall.as_secs_f64(),
        pub_p50_ms: percentile(&lat, 0.50) * ms,
        pub_p99_ms: percentile(&lat, 0.99) * ms,
        health_p50_ms: percentile(&health, 0.50) * ms,
        health_p99_ms: percentile(&health, 0.99) * ms,
        health_max_ms: health.last().map_or(f64::NAN, |&v| v as f64 * ms),
        probes: health.len(),
        hub_cpu: share(cpu0.0, cpu1.0),
        bench_cpu: share(cpu0.1, cpu1.1),
        hub_writes: writes1.zip(writes0).map(|(b, a)| b.saturating_sub(a)),
        flushes: flush1.zip(flush0).map(|(b, a)| b.saturating_sub(a)),
        dir_bytes: None,
        capped,
    })
}

// ---------------------------------------------------------------------------------------
// Part 3: recovery
// ---------------------------------------------------------------------------------------

fn topic_name(t: usize) -> String {
    format!("t-{t}")
}

fn event_data(t: usize, i: usize, len: usize) -> String {
    // Nothing JSON escapes, so the served data can be compared as it is.
    let mut s = format!("t{t}-i{i:06}-");
    while s.len() < len {
        s.push('x');
    }
    s
}

/// Writes the recovery dataset into `dir` (created 0700): one segment, 0600. Returns the
/// records written.
fn write_dataset(cfg: &Cfg, dir: &Path) -> Result<u64, String> {
    let e = |e: io::Error| format!("{}: {e}", dir.display());
    DirBuilder::new().mode(0o700).create(dir).map_err(e)?;
    let path = dir.join("0000000001.seg");
    let mut f = OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(&path)
        .map_err(e)?;
    let names: Vec<String> = (0..cfg.topics).map(topic_name).collect();
    let base_ms = FIRST_ID / 1000;
    let mut buf = Vec::with_capacity(8 << 20);
    write_header(&mut buf);
    let mut records = 0u64;
    // Round-robin, as a live log interleaves its topics: event i of every topic, then i + 1.
    for i in 0..cfg.events {
        for (t, topic) in names.iter().enumerate() {
            let id = FIRST_ID + i as u64;
            if i == 0 {
                Record::TopicFirst {
                    topic: topic.clone(),
                    first_id: id,
                }
                .encode(&mut buf, DEFAULT_MAX_RECORD)
                .map_err(|e| format!("encode: {e:?}"))?;
                records += 1;
            }
            Record::Event {
                topic: topic.clone(),
                id,
                name: None,
                published_ms: base_ms + i as u64,
                data: event_data(t, i, cfg.data_bytes),
            }
            .encode(&mut buf, DEFAULT_MAX_RECORD)
            .map_err(|e| format!("encode: {e:?}"))?;
            records += 1;
            if buf.len() >= 4 << 20 {
                f.write_all(&buf).map_err(e)?;
                buf.clear();
            }
        }
    }
    f.write_all(&buf).map_err(e)?;
    f.sync_all().map_err(e)?;
    File::open(dir).and_then(|d| d.sync_all()).map_err(e)?;
    Ok(records)
}

/// Reads the dataset back with the library's scanner: every record, a clean tail, the
/// first and last events as written.
fn check_dataset(cfg: &Cfg, dir: &Path, records: u64) -> Result<(), String> {
    let path = dir.join("0000000001.seg");
    let bytes = fs::read(&path).map_err(|e| format!("{}: {e}", path.display()))?;
    let s = scan(&bytes, DEFAULT_MAX_RECORD);
    if s.tail != Tail::Clean || s.valid_len != bytes.len() {
        return Err(format!(
            "the generated segment does not scan clean: {:?} at {} of {} bytes",
            s.tail,
            s.valid_len,
            bytes.len()
        ));
    }
    if s.records.len() as u64 != records {
        return Err(format!(
            "the generated segment holds {} records, {records} were written",
            s.records.len()
        ));
    }
    let first_event = s.records.iter().find_map(|(_, r)| match r {
        Record::Event {
            topic, id, data, ..
        } => Some((topic.clone(), *id, data.len())),
        _ => None,
    });
    let last = s.records.last().map(|(_, r)| r.clone());
    let last_topic = topic_name(cfg.topics - 1);
    let want_last = FIRST_ID + cfg.events as u64 - 1;
    match (first_event, last) {
        (Some((t, FIRST_ID, len)), Some(Record::Event { topic, id, .. }))
            if t == "t-0" && len == cfg.data_bytes && topic == last_topic && id == want_last =>
        {
            Ok(())
        }
        (f, l) => Err(format!("unexpected first/last records: {f:?} / {l:?}")),
    }
}

fn copy_dir(from: &Path, to: &Path) -> Result<(), String> {
    let e = |e: io::Error| format!("copy {} -> {}: {e}", from.display(), to.display());
    DirBuilder::new().mode(0o700).create(to).map_err(e)?;
    for entry in fs::read_dir(from).map_err(e)? {
        let entry = entry.map_err(e)?;
        let dst = to.join(entry.file_name());
        fs::copy(entry.path(), &dst).map_err(e)?;
        fs::set_permissions(&dst, fs::Permissions::from_mode(0o600)).map_err(e)?;
        File::open(&dst).and_then(|f| f.sync_all()).map_err(e)?;
    }
    File::open(to).and_then(|d| d.sync_all()).map_err(e)?;
    Ok(())
}

/// The ids of a `/events` page (`"id":N` in order).
fn page_ids(body: &[u8]) -> Vec<u64> {
    let text = String::from_utf8_lossy(body);
    text.match_indices("\"id\":")
        .filter_map(|(i, m)| {
            let rest = &text[i + m.len()..];
            let end = rest
                .find(|c: char| !c.is_ascii_digit())
                .unwrap_or(rest.len());
            rest[..end].parse().ok()
        })
        .collect()
}

/// The checks after a start: the oldest page of `t-0` and the newest event of the last
/// topic are there, with the ids written.
fn check_served(cfg: &Cfg, addr: SocketAddr) -> Result<(), String> {
    let path = "/topics/t-0/events?since=0";
    let (status, body) = get(addr, path)?;
    let ids = page_ids(&body);
    let want: Vec<u64> = (FIRST_ID..FIRST_ID + ids.len() as u64).collect();
    let text = String::from_utf8_lossy(&body);
    if status != 200 || ids.is_empty() || ids != want || !text.contains("\"gap\":false") {
        let cut: String = text.chars().take(300).collect();
        return Err(format!(
            "GET {path}: {status}, expected events from id {FIRST_ID} without a gap: {cut}"
        ));
    }
    let last = FIRST_ID + cfg.events as u64 - 1;
    let path = format!(
        "/topics/{}/events?since={}",
        topic_name(cfg.topics - 1),
        last - 1
    );
    let (status, body) = get(addr, &path)?;
    let ids = page_ids(&body);
    let data = event_data(cfg.topics - 1, cfg.events - 1, cfg.data_bytes);
    if status != 200
        || ids != [last]
        || !String::from_utf8_lossy(&body).contains(&format!("\"data\":\"{data}\""))
    {
        return Err(format!(
            "GET {path}: {status}, expected exactly event {last}: {}",
            String::from_utf8_lossy(&body)
                .chars()
                .take(300)
                .collect::<String>()
        ));
    }
    Ok(())
}

struct RecoveryRun {
    start: Duration,
    /// The hub's CPU time (all threads) when it printed "listening on".
    start_cpu: Option<Duration>,
    restart: Duration,
    restart_cpu: Option<Duration>,
    after_du_kb: Option<u64>,
    after_bytes: u64,
    after_files: String,
    hwm_kb: Option<u64>,
}

fn recovery_run(
    cfg: &Cfg,
    ports: &mut Ports,
    pristine: &Path,
    run: usize,
) -> Result<RecoveryRun, String> {
    let dir = cfg
        .dir
        .join(format!("recovery-run{run}-{}", std::process::id()));
    let _ = fs::remove_dir_all(&dir);
    copy_dir(pristine, &dir)?;
    let args = vec![
        "--data-dir".to_owned(),
        dir.display().to_string(),
        "--history-events".to_owned(),
        "1000".to_owned(),
    ];
    let log = cfg.dir.join(format!("hub-recovery-{run}.log"));
    let result = (|| {
        let (hub, start) = start_hub(cfg, ports.next()?, &args, &log).map_err(StartError::text)?;
        let start_cpu = cpu_time(&hub.pid().to_string());
        check_served(cfg, hub.addr)?;
        wait_settled(&dir);
        let hwm_kb = status_kb(hub.pid(), "VmHWM:");
        let (after_du_kb, after_bytes) = dir_size(&dir);
        let after_files = listing(&dir);
        drop(hub); // SIGKILL
        let log2 = cfg.dir.join(format!("hub-recovery-{run}-restart.log"));
        let (hub, restart) =
            start_hub(cfg, ports.next()?, &args, &log2).map_err(StartError::text)?;
        let restart_cpu = cpu_time(&hub.pid().to_string());
        check_served(cfg, hub.addr)?;
        drop(hub);
        Ok(RecoveryRun {
            start,
            start_cpu,
            restart,
            restart_cpu,
            after_du_kb,
            after_bytes,
            after_files,
            hwm_kb,
        })
    })();
    if !cfg.keep {
        let _ = fs::remove_dir_all(&dir);
    }
    result.map_err(|e: String| format!("{e}\nhub stderr ends with:\n{}", log_tail(&log)))
}

// ---------------------------------------------------------------------------------------
// Output
// ---------------------------------------------------------------------------------------

fn f1(v: f64) -> String {
    if v.is_finite() {
        format!("{v:.1}")
    } else {
        "-".into()
    }
}

fn f2(v: f64) -> String {
    if v.is_finite() {
        format!("{v:.2}")
    } else {
        "-".into()
    }
}

fn opt2(v: Option<f64>) -> String {
    v.map_or("-".into(), f2)
}

fn ratio(a: f64, b: f64) -> String {
    if a.is_finite() && b.is_finite() && b > 0.0 {
        format!("{:.2}", a / b)
    } else {
        "n/a".into()
    }
}

fn ms_opt(d: Option<Duration>) -> String {
    d.map_or("-".into(), |d| format!("{:.0}", d.as_secs_f64() * 1e3))
}

fn mib(bytes: u64) -> String {
    format!("{:.1} MiB", bytes as f64 / (1 << 20) as f64)
}

/// The median of each figure over a cell's rounds (flushes and sizes too).
fn aggregate(rounds: &[&Cell]) -> Cell {
    let med =
        |f: &dyn Fn(&Cell) -> f64| median(&mut rounds.iter().map(|c| f(c)).collect::<Vec<_>>());
    let med_opt = |f: &dyn Fn(&Cell) -> Option<f64>| {
        let mut v: Vec<f64> = rounds.iter().filter_map(|c| f(c)).collect();
        (!v.is_empty()).then(|| median(&mut v))
    };
    let first = rounds[0];
    Cell {
        mode: first.mode,
        publishers: first.publishers,
        publishes: med(&|c| c.publishes as f64) as u64,
        per_sec: med(&|c| c.per_sec),
        pub_p50_ms: med(&|c| c.pub_p50_ms),
        pub_p99_ms: med(&|c| c.pub_p99_ms),
        health_p50_ms: med(&|c| c.health_p50_ms),
        health_p99_ms: med(&|c| c.health_p99_ms),
        health_max_ms: med(&|c| c.health_max_ms),
        probes: med(&|c| c.probes as f64) as usize,
        hub_cpu: med_opt(&|c| c.hub_cpu),
        bench_cpu: med_opt(&|c| c.bench_cpu),
        hub_writes: med_opt(&|c| c.hub_writes.map(|f| f as f64)).map(|f| f as u64),
        flushes: med_opt(&|c| c.flushes.map(|f| f as f64)).map(|f| f as u64),
        dir_bytes: med_opt(&|c| c.dir_bytes.map(|b| b as f64)).map(|b| b as u64),
        capped: rounds.iter().any(|c| c.capped),
    }
}

/// Publishes per device flush (durable modes only).
fn per_flush(c: &Cell) -> Option<f64> {
    match c.flushes {
        Some(f) if c.mode.durable() && f > 0 => Some(c.publishes as f64 / f as f64),
        _ => None,
    }
}

fn print_load_table(cfg: &Cfg, cells: &[Cell], unsupported: bool) {
    let mut agg: Vec<Cell> = Vec::new();
    let mut spread: Vec<String> = Vec::new();
    for &mode in &cfg.modes {
        for &n in &cfg.publishers {
            let rounds: Vec<&Cell> = cells
                .iter()
                .filter(|c| c.mode == mode && c.publishers == n)
                .collect();
            if !rounds.is_empty() {
                let all: Vec<String> = rounds.iter().map(|c| format!("{:.0}", c.per_sec)).collect();
                spread.push(all.join(", "));
                agg.push(aggregate(&rounds));
            }
        }
    }
    let get = |m: Mode, n: usize| agg.iter().find(|c| c.mode == m && c.publishers == n);
    println!();
    println!(
        "### Publishes/s and /healthz latency ({} s per cell after {} s warm-up{}; keep-alive \
         publishers, {}-byte bodies over {PUB_TOPICS} topics; /healthz every {} ms, one in flight)",
        cfg.secs,
        cfg.warmup,
        if cfg.rounds > 1 {
            format!("; median of {} rounds", cfg.rounds)
        } else {
            String::new()
        },
        cfg.body_bytes,
        cfg.probe_ms
    );
    println!();
    println!(
        "| mode | publishers | publishes/s | publish p50 / p99 ms | healthz p50 / p99 / max ms \
         (probes) | hub CPU cores | hub CPU µs/publish | bench CPU cores | device flushes | \
         publishes/flush | hub write syscalls/publish | data dir after |"
    );
    println!("|---|---|---|---|---|---|---|---|---|---|---|---|");
    for &mode in &cfg.modes {
        for &n in &cfg.publishers {
            let Some(i) = agg.iter().position(|c| c.mode == mode && c.publishers == n) else {
                let why = if unsupported && mode.durable() {
                    "n/a (hub has no --data-dir)"
                } else {
                    "failed"
                };
                println!("| {} | {n} | {why} | | | | | | | | | |", mode.name());
                continue;
            };
            let c = &agg[i];
            let rounds = if cfg.rounds > 1 {
                format!(" ({})", spread[i])
            } else {
                String::new()
            };
            let per_publish = |v: f64| v / c.publishes.max(1) as f64;
            println!(
                "| {} | {n} | {:.0}{rounds}{} | {} / {} | {} / {} / {} ({}) | {} | {} | {} | {} | {} | {} | {} |",
                mode.name(),
                c.per_sec,
                if c.capped { " (capped)" } else { "" },
                f2(c.pub_p50_ms),
                f2(c.pub_p99_ms),
                f2(c.health_p50_ms),
                f2(c.health_p99_ms),
                f2(c.health_max_ms),
                c.probes,
                opt2(c.hub_cpu),
                c.hub_cpu.map_or("-".into(), |cores| f1(cores / c.per_sec * 1e6)),
                opt2(c.bench_cpu),
                c.flushes.map_or("-".into(), |f| f.to_string()),
                per_flush(c).map_or("-".into(), f1),
                c.hub_writes.map_or("-".into(), |w| f2(per_publish(w as f64))),
                c.dir_bytes.map_or("-".into(), mib),
            );
        }
    }
    let probes = (cfg.secs * 1000.0 / cfg.probe_ms as f64) as usize;
    let left_out = probes - (0.99 * probes as f64).ceil() as usize;
    println!();
    println!(
        "(hub CPU: user + system of all its threads over the wall time. Device flushes: the \
         whole device's, other processes' included. Write syscalls: the hub's write/writev \
         calls (/proc/PID/io syscw): the HTTP response (the 1.00 of memory mode), plus with a \
         data dir the segment writes and the writer's eventfd wakes of the loop. The healthz \
         p99 of ~{probes} probes leaves out only the {left_out} slowest.)"
    );
    let val = |m: Mode, n: usize, f: fn(&Cell) -> f64| get(m, n).map_or(f64::NAN, f);
    println!();
    println!("### Ratios (same run)");
    println!();
    println!(
        "| publishers | publishes/s always/memory | publishes/s interval/memory | \
         healthz p99 always/memory | healthz p99 interval/memory |"
    );
    println!("|---|---|---|---|---|");
    for &n in &cfg.publishers {
        let tp = |m| val(m, n, |c| c.per_sec);
        let hp = |m| val(m, n, |c| c.health_p99_ms);
        println!(
            "| {n} | {} | {} | {} | {} |",
            ratio(tp(Mode::Always), tp(Mode::Memory)),
            ratio(tp(Mode::Interval), tp(Mode::Memory)),
            ratio(hp(Mode::Always), hp(Mode::Memory)),
            ratio(hp(Mode::Interval), hp(Mode::Memory)),
        );
    }
    let (lo, hi) = match (cfg.publishers.iter().min(), cfg.publishers.iter().max()) {
        (Some(&lo), Some(&hi)) if lo < hi => (lo, hi),
        _ => return,
    };
    println!();
    println!("Scaling, publishes/s with {hi} publishers over {lo}:");
    for &m in &cfg.modes {
        let r = ratio(val(m, hi, |c| c.per_sec), val(m, lo, |c| c.per_sec));
        println!("  {:8} {r}", m.name());
    }
    // Group commit: with fsync always one fsync should cover every publish that arrived
    // meanwhile, so many publishers get far more publishes per second than one.
    if let (Some(a1), Some(a64), Some(m1)) = (
        get(Mode::Always, lo),
        get(Mode::Always, hi),
        get(Mode::Memory, lo),
    ) {
        let scale = a64.per_sec / a1.per_sec;
        let fsync_bound = a1.per_sec < 0.5 * m1.per_sec;
        println!(
            "Group commit check (fsync always): {hi} publishers give {scale:.2}x the publishes/s \
             of {lo}; publishes per device flush {} with {lo}, {} with {hi}; {lo} publisher is \
             {}fsync-bound ({:.0}/s against {:.0}/s in memory).",
            per_flush(a1).map_or("-".into(), f1),
            per_flush(a64).map_or("-".into(), f1),
            if fsync_bound { "" } else { "not " },
            a1.per_sec,
            m1.per_sec
        );
        if fsync_bound && scale < 2.0 {
            println!(
                "WARNING: fsync always with {hi} publishers is only {scale:.2}x one publisher \
                 although one publisher is fsync-bound: group commit may be broken."
            );
        }
    }
}

fn main() {
    let started = Instant::now();
    let cfg = match config() {
        Ok(c) => c,
        Err(e) => {
            eprintln!("durability: {e}");
            exit(2);
        }
    };
    if !cfg.hub.is_file() {
        eprintln!(
            "durability: SKIPPED: no hub binary at {}; build it with \
             `cargo build --release --example hub`, or set PUSHWIRE_HUB",
            cfg.hub.display()
        );
        return;
    }
    if let Err(e) = fs::create_dir_all(&cfg.dir) {
        eprintln!("durability: mkdir {}: {e}", cfg.dir.display());
        exit(1);
    }
    // Before pinning: the count of cores this process may use shrinks to 1 after it.
    let cores = thread::available_parallelism().map_or(1, |n| n.get());
    let mut pinned = String::from("not pinned");
    if let (Some(hub_cpu), Some(bench_cpu)) = (cfg.hub_cpu, cfg.bench_cpu) {
        // SAFETY: a zeroed cpu_set_t is a valid empty set; the call only reads it.
        let ok = unsafe {
            let mut set: libc::cpu_set_t = std::mem::zeroed();
            libc::CPU_SET(bench_cpu, &mut set);
            libc::sched_setaffinity(0, std::mem::size_of::<libc::cpu_set_t>(), &set) == 0
        };
        pinned = if ok {
            format!("hub pinned to core {hub_cpu}, bench threads to core {bench_cpu}")
        } else {
            format!("hub pinned to core {hub_cpu}, bench NOT pinned (sched_setaffinity failed)")
        };
    }
    let (fs_type, fs_source) = filesystem(&cfg.dir);
    let device = block_device(&cfg.dir);
    println!("durability bench (issue 10): hub {}", cfg.hub.display());
    println!(
        "NOTE: this machine is a noisy {cores}-core box (shared VM; the hub, up to {} publisher \
         threads and the prober share its cores; {pinned}): read the ratios, measured in this \
         one run, rather than the absolute figures.",
        cfg.publishers.iter().max().unwrap_or(&1)
    );
    println!(
        "data dirs under {} on {fs_type} ({fs_source}, from `df -T`); flushes counted on {}",
        cfg.dir.display(),
        device
            .as_deref()
            .map_or("no device found".into(), |d| d.display().to_string())
    );
    if fs_type == "tmpfs" || fs_type == "ramfs" {
        println!(
            "WARNING: the data dir is on {fs_type}: fsync costs nothing there; set DURBENCH_DIR \
             to a dir on a real disk"
        );
    }
    let mut ports = Ports(cfg.port);
    let mut failed = false;
    let supported = match hub_knows_data_dir(&cfg, &mut ports) {
        Ok(s) => s,
        Err(e) => {
            for l in e.lines() {
                println!("durability ERROR probe {l}");
            }
            exit(1);
        }
    };
    if !supported {
        println!(
            "durability: this hub exits with its usage line on --data-dir/--fsync (issue 10 not \
             in this build): durable cells and recovery starts are n/a"
        );
    }

    if cfg.load {
        let mut cells = Vec::new();
        // Rounds outside, and the modes of one publisher count next to each other, so that
        // the cells compared in a ratio are measured close in time.
        for round in 1..=cfg.rounds {
            for &n in &cfg.publishers {
                for &mode in &cfg.modes {
                    if mode.durable() && !supported {
                        continue;
                    }
                    match run_cell(&cfg, &mut ports, mode, n, device.as_deref()) {
                        Ok(c) => {
                            println!(
                                "durability round={round} mode={} publishers={n} publishes={} \
                                 publishes_per_sec={:.0} publish_ms_p50={} publish_ms_p99={} \
                                 healthz_ms_p50={} healthz_ms_p99={} healthz_ms_max={} \
                                 probes={} hub_cpu={} bench_cpu={} hub_write_calls={} \
                                 device_flushes={} dir_bytes={}",
                                mode.name(),
                                c.publishes,
                                c.per_sec,
                                f2(c.pub_p50_ms),
                                f2(c.pub_p99_ms),
                                f2(c.health_p50_ms),
                                f2(c.health_p99_ms),
                                f2(c.health_max_ms),
                                c.probes,
                                opt2(c.hub_cpu),
                                opt2(c.bench_cpu),
                                c.hub_writes.map_or("-".into(), |f| f.to_string()),
                                c.flushes.map_or("-".into(), |f| f.to_string()),
                                c.dir_bytes.map_or("-".into(), |b| b.to_string()),
                            );
                            cells.push(c);
                        }
                        Err(e) => {
                            for l in e.lines() {
                                println!(
                                    "durability ERROR round={round} mode={} publishers={n} {l}",
                                    mode.name()
                                );
                            }
                            failed = true;
                        }
                    }
                }
            }
        }
        print_load_table(&cfg, &cells, !supported);
    }

    if cfg.recovery {
        if let Err(e) = recovery(&cfg, &mut ports, supported) {
            for l in e.lines() {
                println!("durability ERROR recovery {l}");
            }
            failed = true;
        }
    }
    println!();
    println!(
        "durability: done in {:.1} s{}",
        started.elapsed().as_secs_f64(),
        if failed { " (with errors)" } else { "" }
    );
    if failed {
        exit(1);
    }
}

fn recovery(cfg: &Cfg, ports: &mut Ports, supported: bool) -> Result<(), String> {
    let pristine = cfg
        .dir
        .join(format!("recovery-dataset-{}", std::process::id()));
    let _ = fs::remove_dir_all(&pristine);
    let t = Instant::now();
    let records = write_dataset(cfg, &pristine)?;
    let gen = t.elapsed();
    check_dataset(cfg, &pristine, records)?;
    let (du_kb, bytes) = dir_size(&pristine);
    let events = cfg.topics as u64 * cfg.events as u64;
    println!();
    println!(
        "### Recovery: {} topics x {} events ({events} events, {} B of data each, {records} \
         records), --history-events 1000",
        cfg.topics, cfg.events, cfg.data_bytes
    );
    println!();
    println!(
        "dataset written with pushwire::proto::store in {:.2} s and checked with scan(): {} \
         apparent ({bytes} B, {:.1} B/event), du -sk {} kB",
        gen.as_secs_f64(),
        mib(bytes),
        bytes as f64 / events as f64,
        du_kb.map_or("-".into(), |k| k.to_string())
    );
    let result = if supported {
        let mut runs = Vec::new();
        let mut err = None;
        for run in 1..=cfg.runs {
            match recovery_run(cfg, ports, &pristine, run) {
                Ok(r) => {
                    println!(
                        "durability recovery run={run} start_ms={:.0} start_cpu_ms={} \
                         restart_ms={:.0} restart_cpu_ms={} after_du_kb={} after_bytes={} \
                         hub_max_rss_kb={} files=[{}]",
                        r.start.as_secs_f64() * 1e3,
                        ms_opt(r.start_cpu),
                        r.restart.as_secs_f64() * 1e3,
                        ms_opt(r.restart_cpu),
                        r.after_du_kb.map_or("-".into(), |k| k.to_string()),
                        r.after_bytes,
                        r.hwm_kb.map_or("-".into(), |k| k.to_string()),
                        r.after_files
                    );
                    runs.push(r);
                }
                Err(e) => {
                    err = Some(e);
                    break;
                }
            }
        }
        if !runs.is_empty() {
            let mut s: Vec<f64> = runs.iter().map(|r| r.start.as_secs_f64() * 1e3).collect();
            let mut rs: Vec<f64> = runs.iter().map(|r| r.restart.as_secs_f64() * 1e3).collect();
            let cpu = |f: fn(&RecoveryRun) -> Option<Duration>| {
                let mut v: Vec<f64> = runs
                    .iter()
                    .filter_map(|r| Some(f(r)?.as_secs_f64() * 1e3))
                    .collect();
                if v.is_empty() {
                    "-".to_owned()
                } else {
                    format!("{:.0} ms", median(&mut v))
                }
            };
            let (s_cpu, rs_cpu) = (cpu(|r| r.start_cpu), cpu(|r| r.restart_cpu));
            let all = |v: &[f64]| {
                v.iter()
                    .map(|x| format!("{x:.0}"))
                    .collect::<Vec<_>>()
                    .join(", ")
            };
            let (s_all, rs_all) = (all(&s), all(&rs));
            let last = runs.last().expect("a run");
            println!();
            println!("| what | median | runs | hub CPU by then (median) | size on disk |");
            println!("|---|---|---|---|---|");
            println!(
                "| start on the generated dir (spawn to \"listening on\") | {:.0} ms | {s_all} ms \
                 | {s_cpu} | before: du {} kB, {} apparent; after the start: du {} kB, {} apparent |",
                median(&mut s),
                du_kb.map_or("-".into(), |k| k.to_string()),
                mib(bytes),
                last.after_du_kb.map_or("-".into(), |k| k.to_string()),
                mib(last.after_bytes)
            );
            println!(
                "| restart after kill -9 on the dir that start left | {:.0} ms | {rs_all} ms | {rs_cpu} | |",
                median(&mut rs)
            );
            println!();
            println!(
                "hub max RSS after recovery: {}; files after the start: {}",
                last.hwm_kb
                    .map_or("-".into(), |k| format!("{:.0} MiB", k as f64 / 1024.0)),
                last.after_files
            );
        }
        err.map_or(Ok(()), Err)
    } else {
        println!("recovery starts: n/a (hub has no --data-dir)");
        Ok(())
    };
    if !cfg.keep {
        let _ = fs::remove_dir_all(&pristine);
    }
    result
}
