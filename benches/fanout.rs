//! Fan-out cost: one publish delivered to many subscribers of one kind, measured from
//! outside a hub binary (loopback HTTP only, no library internals), so the same bench runs
//! against two builds of the hub and compares them in one run (`benches/fanout.sh`).
//!
//! ```text
//! cargo build --release --example hub
//! cargo bench -p pushwire-benches --bench fanout -- [--subs 10000] [--webhooks 100]
//!     [--publishes 20] [--phases ws,sse,poll,webhook,wsdeflate] [--label NAME] [--hub PATH]
//!     [--port 19301] [--hub-cpu N] [--data-bytes 64] [--data fill|json] [--rounds 1] [--sources 4]
//!     [--hook-ports 4]
//! cargo bench -p pushwire-benches --bench fanout -- --self-test
//! ```
//!
//! `benches/fanout.sh` builds a "before" and an "after" hub and runs this against both.
//!
//! The hub is `--hub`, else `PUSHWIRE_HUB`, else `target/release/examples/hub`; without it
//! the bench says so and exits 0. Each phase starts a fresh hub as
//! `hub --addr 127.0.0.1:PORT --max-connections .. --webhook-allow-private
//! --sse-heartbeat 3600` (under `taskset -c N` with `--hub-cpu N`), with
//! `LD_PRELOAD=alloc_count.so` (`benches/alloc_count/alloc_count.c`, compiled with `cc`
//! into `target/fanout/` when missing or older than its source) and `ALLOC_COUNT_FILE`, a
//! small file the hub's counters live in, mapped shared, so they are read at any moment
//! without stopping the hub. The phases, one hub each (30,000 subscribers do not fit in one
//! process under a 20,000 open-files limit):
//!
//! - `ws`: `--subs` WebSocket subscribers (`GET /topics/fanout/ws`), events as text frames;
//! - `wsdeflate` (not in the default list): the same, each offering
//!   `Sec-WebSocket-Extensions: permessage-deflate; client_max_window_bits` and checking the
//!   answer is permessage-deflate without context takeover, so events of 64 bytes and more
//!   come compressed (RSV1), one compressed frame shared by all (see below);
//! - `sse`: `--subs` SSE streams (`GET /topics/fanout/sse`);
//! - `poll`: `--subs` parked long polls (`GET /topics/fanout/poll?since=N&timeout=120`),
//!   each re-armed with `since=` its last id after the window (below) closes;
//! - `webhook`: `--webhooks` endpoints, `http://127.0.0.1:P/hook/I` on `--hook-ports`
//!   listeners of this process, answering `204` and keeping the connection alive. They have
//!   their own phase so the other three figures are about one transport each.
//!
//! Every subscriber is a nonblocking socket on this process's single mio loop, bound before
//! connecting to one of `--sources` addresses 127.0.0.2, 127.0.0.3, ... (with
//! `IP_BIND_ADDRESS_NO_PORT`, so ports are shared across destinations). Once all are
//! subscribed (checked in the hub's `/stats`), one warm-up publish (not measured) and then
//! `--publishes` publishes, one at a time: `POST /topics/fanout` with a `--data-bytes` body
//! (`fanout-000001-xxx...`, different per publish) on a kept-alive connection. Per publish:
//!
//! - **time**: from just before the POST is written until the last subscriber of the phase
//!   has the event (a webhook counts when its receiver has the whole POST);
//! - **window** for allocations and CPU: from just before the POST until the hub is quiet
//!   again after the last delivery (its allocation counters unchanged for 10 ms), so the
//!   publish request, the writes, and for webhooks the reading of the `204`s are in it;
//!   the long polls' re-arming requests are not (they are sent after the window closes).
//! - **CPU**: the hub's user + system time (what `/proc/PID/stat` shows as utime + stime, read
//!   with nanosecond precision through `clock_getcpuclockid`, since the stat file's 10 ms
//!   ticks are coarser than one window; the stat file is the fallback). Loopback receive
//!   processing that the kernel runs in softirq context is not always charged to the hub,
//!   so `cpu_ns_per_delivery` may stay below `ns_per_delivery` even when the hub's core is
//!   the one that is busy.
//!
//! and one line per phase:
//!
//! ```text
//! fanout target=NAME transport=ws subs=10000 publishes=20 deliveries=200000
//!     ns_per_delivery=.. allocs_per_delivery=.. alloc_bytes_per_delivery=..
//!     cpu_ns_per_delivery=.. publish_ms_p50=.. publish_ms_max=.. bench_cpu_share=..
//! ```
//!
//! (`allocs` counts malloc, calloc, realloc and the aligned allocators; `bench_cpu_share` is
//! this process's CPU time over the delivery time: near 1 means the clients, not the hub,
//! set the pace of `ns_per_delivery`; the allocation and CPU figures are the hub's alone.
//! `not_quiet_windows=N` is appended when N windows closed at their 2 s limit without the
//! hub going quiet.)
//!
//! **permessage-deflate** (`--phases ws,wsdeflate --data json --data-bytes 1024`): the data
//! of each publish is `--data-bytes` of quote JSON (`benches/common/quotes.rs`, different
//! per publish; the hub carries it as a JSON string, so its quotes are escaped on the wire)
//! instead of `fanout-00000k-xxx...`. Every phase line then also has the WebSocket bytes per
//! delivery (`ws_wire_bytes_per_delivery`: frame headers and payloads as read from the
//! sockets, compressed or not; TCP/IP headers not counted), the uncompressed event payload
//! (`event_bytes`, the mean over the publishes), `cpu_us_per_event` (the CPU figure above
//! times the subscribers) and `stat_cpu_us_per_event` (utime + stime from `/proc/PID/stat`,
//! 10 ms ticks, from before the first measured publish to after the last, over the
//! publishes), and `compressed_frame_share` and `frames_inflated` (the warm-up included). The client inflates no frame to count
//! its bytes: per publish the first compressed frame any subscriber gets is inflated (with
//! pushwire's `deflate::Inflater`) and checked like a plain one (its id, its data equal to
//! what was published); every other subscriber's frame of that publish must be byte for
//! byte the same (so `frames_inflated` equal to the publishes says the hub compressed each
//! event once and everyone got that frame), else it is inflated and checked too. With
//! `--data json` the plain `ws` phase checks its frames the same way (the first parsed, the
//! others compared), so both phases do the same client work. `--rounds R` runs the phase
//! list R times, interleaved (a fresh hub each), and when both `ws` and `wsdeflate` ran it
//! ends with
//!
//! ```text
//! fanout deflate_vs_plain rounds=R cpu_per_event_ratio=.. stat_cpu_per_event_ratio=..
//!     wire_bytes_ratio=.. ns_per_delivery_ratio=.. (medians over the rounds; ...)
//! ```
//!
//! Checks: every subscriber gets every event exactly once and in order (consecutive ids,
//! the data of that publish, the first id the one the warm-up POST answered); every webhook
//! endpoint gets every event exactly once (in any order: the hub has up to 4 deliveries in
//! flight per endpoint). Anything else, and a publish not fully delivered within 30 s, is a
//! `fanout ERROR ...` line on stdout; the phase is abandoned and the exit status is 1.
//! Every wait has a deadline; hubs are killed at the end of their phase, also on failure.
//! This process and each hub hold one fd per subscriber, so `--subs` is checked against the
//! open-files limit first (lower it to fit).

use std::borrow::Cow;
use std::fs::File;
use std::io::{self, Read, Write};
use std::net::{Ipv4Addr, SocketAddr, SocketAddrV4, TcpStream as StdStream};
use std::os::fd::FromRawFd;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::process::{exit, Child, Command, Stdio};
use std::thread::sleep;
use std::time::{Duration, Instant};

use base64::engine::general_purpose::STANDARD as BASE64;
use base64::Engine as _;
use mio::net::{TcpListener, TcpStream};
use mio::{Events, Interest, Poll, Token};
use pushwire::proto::ws::deflate::Inflater;
use sha1::{Digest, Sha1};

#[path = "common/quotes.rs"]
mod quotes;

const USAGE: &str = "usage: fanout [--subs N] [--webhooks N] [--publishes K] \
[--phases ws,sse,poll,webhook,wsdeflate] [--label NAME] [--hub PATH] [--port P] [--hub-cpu N] \
[--data-bytes B] [--data fill|json] [--rounds R] [--sources S] [--hook-ports P]\n       \
fanout --self-test";

const TOPIC: &str = "fanout";
const WS_GUID: &str = "258EAFA5-E914-47DA-95CA-C5AB0DC85B11";
const MAX_SUBS: usize = 19_000;
const MAX_WEBHOOKS: usize = 1_000;
const MAX_PUBLISHES: usize = 1_000;
const MAX_ROUNDS: usize = 20;
/// fds kept for ourselves besides the subscribers (stdio, listeners, the hub's pipes...).
const SPARE_FDS: u64 = 128;
/// The hub keeps at most this many deliveries in flight per webhook endpoint (one
/// connection each).
const HOOK_IN_FLIGHT: usize = 4;
/// Connects and handshakes outstanding at once while subscribing.
const CONNECT_WINDOW: usize = 256;
const START_DEADLINE: Duration = Duration::from_secs(10);
const SETUP_DEADLINE: Duration = Duration::from_secs(180);
const PUBLISH_DEADLINE: Duration = Duration::from_secs(30);
const STEP_TIMEOUT: Duration = Duration::from_secs(5);
/// The hub counts as quiet once its allocation counters stay still this long...
const QUIET: Duration = Duration::from_millis(10);
/// ...and the window closes after this at most, quiet or not.
const QUIET_DEADLINE: Duration = Duration::from_secs(2);
/// The longest response head, poll body or webhook request we accept.
const MAX_MESSAGE: usize = 1 << 20;
/// Detail lines kept per phase; the rest are only counted.
const MAX_ERROR_LINES: usize = 20;

const PUB_TOKEN: Token = Token(usize::MAX - 1);
const LISTEN_BASE: usize = 1 << 40;
const HOOK_BASE: usize = 1 << 41;

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Transport {
    Ws,
    /// WebSocket subscribers that negotiated permessage-deflate.
    WsDeflate,
    Sse,
    Poll,
    Webhook,
}

impl Transport {
    fn is_ws(self) -> bool {
        matches!(self, Transport::Ws | Transport::WsDeflate)
    }

    fn name(self) -> &'static str {
        match self {
            Transport::Ws => "ws",
            Transport::WsDeflate => "wsdeflate",
            Transport::Sse => "sse",
            Transport::Poll => "poll",
            Transport::Webhook => "webhook",
        }
    }
}

struct Args {
    subs: usize,
    webhooks: usize,
    publishes: usize,
    phases: Vec<Transport>,
    label: String,
    hub: String,
    port: u16,
    hub_cpu: Option<u32>,
    data_bytes: usize,
    /// Quote JSON as the event data instead of `fanout-00000k-xxx...`.
    json_data: bool,
    rounds: usize,
    sources: usize,
    hook_ports: usize,
}

/// A hub process, killed when dropped.
struct Hub(Child);

impl Drop for Hub {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn main() {
    let args = match parse_args() {
        Ok(a) => a,
        Err(e) => {
            eprintln!("fanout: {e}\n{USAGE}");
            exit(2);
        }
    };
    if !Path::new(&args.hub).is_file() {
        eprintln!(
            "fanout: SKIPPED: no hub binary at {}; build it with \
             `cargo build --release --example hub`, or set PUSHWIRE_HUB or --hub",
            args.hub
        );
        return;
    }
    let lib = match build_alloc_lib() {
        Ok(p) => p,
        Err(e) => {
            eprintln!("fanout: SKIPPED: cannot build the allocation counter: {e}");
            return;
        }
    };
    if let Err(e) = check_fd_limit(&args) {
        eprintln!("fanout: {e}");
        exit(1);
    }
    let mut failed = false;
    let mut results: Vec<(Transport, PhaseFigures)> = Vec::new();
    let runs = args.phases.len() * args.rounds;
    for r in 0..runs {
        let t = args.phases[r % args.phases.len()];
        let port = args.port.wrapping_add(r as u16);
        match run_phase(&args, t, port, &lib) {
            Ok((line, figures)) => {
                println!("{line}");
                results.push((t, figures));
            }
            Err(e) => {
                for line in e.lines() {
                    println!(
                        "fanout ERROR target={} transport={} {line}",
                        args.label,
                        t.name()
                    );
                }
                failed = true;
            }
        }
    }
    deflate_summary(&results);
    if failed {
        exit(1);
    }
}

/// A phase's figures for the summary across rounds.
#[derive(Clone, Copy)]
struct PhaseFigures {
    cpu_us_per_event: f64,
    stat_cpu_us_per_event: f64,
    wire_bytes_per_delivery: f64,
    ns_per_delivery: f64,
    event_bytes: f64,
}

fn median(mut v: Vec<f64>) -> f64 {
    if v.is_empty() {
        return f64::NAN;
    }
    v.sort_by(|a, b| a.total_cmp(b));
    let n = v.len();
    if n % 2 == 1 {
        v[n / 2]
    } else {
        (v[n / 2 - 1] + v[n / 2]) / 2.0
    }
}

/// With both `ws` and `wsdeflate` measured: the medians over the rounds and their ratios
/// (deflate / plain), and each round's ratio (a round's two phases ran back to back).
fn deflate_summary(results: &[(Transport, PhaseFigures)]) {
    let of = |t: Transport| -> Vec<PhaseFigures> {
        results
            .iter()
            .filter(|(x, _)| *x == t)
            .map(|(_, f)| *f)
            .collect()
    };
    let (plain, deflate) = (of(Transport::Ws), of(Transport::WsDeflate));
    if plain.is_empty() || deflate.is_empty() {
        return;
    }
    let med = |v: &[PhaseFigures], f: fn(&PhaseFigures) -> f64| median(v.iter().map(f).collect());
    let ratio = |f: fn(&PhaseFigures) -> f64| med(&deflate, f) / med(&plain, f);
    let per_round: Vec<String> = plain
        .iter()
        .zip(&deflate)
        .map(|(p, d)| {
            format!(
                "{:.2}/{:.3}",
                d.cpu_us_per_event / p.cpu_us_per_event,
                d.wire_bytes_per_delivery / p.wire_bytes_per_delivery
            )
        })
        .collect();
    println!(
        "fanout deflate_vs_plain rounds={} cpu_per_event_ratio={:.2} \
         stat_cpu_per_event_ratio={:.2} wire_bytes_ratio={:.3} ns_per_delivery_ratio={:.2} \
         (medians: cpu_us_per_event plain={:.0} deflate={:.0}; stat_cpu_us_per_event \
         plain={:.0} deflate={:.0}; ws_wire_bytes_per_delivery plain={:.1} deflate={:.1}; \
         event_bytes={:.0}; per round cpu/bytes ratios: {})",
        plain.len().min(deflate.len()),
        ratio(|f| f.cpu_us_per_event),
        ratio(|f| f.stat_cpu_us_per_event),
        ratio(|f| f.wire_bytes_per_delivery),
        ratio(|f| f.ns_per_delivery),
        med(&plain, |f| f.cpu_us_per_event),
        med(&deflate, |f| f.cpu_us_per_event),
        med(&plain, |f| f.stat_cpu_us_per_event),
        med(&deflate, |f| f.stat_cpu_us_per_event),
        med(&plain, |f| f.wire_bytes_per_delivery),
        med(&deflate, |f| f.wire_bytes_per_delivery),
        med(&plain, |f| f.event_bytes),
        per_round.join(" ")
    );
}

fn parse_args() -> Result<Args, String> {
    let mut a = Args {
        subs: 10_000,
        webhooks: 100,
        publishes: 20,
        phases: vec![
            Transport::Ws,
            Transport::Sse,
            Transport::Poll,
            Transport::Webhook,
        ],
        label: "hub".into(),
        hub: std::env::var("PUSHWIRE_HUB").unwrap_or_else(|_| {
            let hub = repo_root().join("target/release/examples/hub");
            hub.to_string_lossy().into_owned()
        }),
        port: 19301,
        hub_cpu: None,
        data_bytes: 64,
        json_data: false,
        rounds: 1,
        sources: 4,
        hook_ports: 4,
    };
    let mut it = std::env::args().skip(1);
    while let Some(flag) = it.next() {
        // `cargo bench` passes `--bench` to every harness-less bench.
        if flag == "--bench" {
            continue;
        }
        if flag == "--self-test" {
            self_test();
            exit(0);
        }
        let value = it.next().ok_or_else(|| format!("{flag} needs a value"))?;
        let bad = || format!("bad value for {flag}: {value:?}");
        match flag.as_str() {
            "--subs" => a.subs = value.parse().map_err(|_| bad())?,
            "--webhooks" => a.webhooks = value.parse().map_err(|_| bad())?,
            "--publishes" => a.publishes = value.parse().map_err(|_| bad())?,
            "--label" => a.label = value.clone(),
            "--hub" => a.hub = value.clone(),
            "--port" => a.port = value.parse().map_err(|_| bad())?,
            "--hub-cpu" => a.hub_cpu = Some(value.parse().map_err(|_| bad())?),
            "--data-bytes" => a.data_bytes = value.parse().map_err(|_| bad())?,
            "--sources" => a.sources = value.parse().map_err(|_| bad())?,
            "--hook-ports" => a.hook_ports = value.parse().map_err(|_| bad())?,
            "--rounds" => a.rounds = value.parse().map_err(|_| bad())?,
            "--data" => {
                a.json_data = match value.as_str() {
                    "fill" => false,
                    "json" => true,
                    _ => return Err(bad()),
                }
            }
            "--phases" => {
                a.phases = value
                    .split(',')
                    .map(|p| match p.trim() {
                        "ws" => Ok(Transport::Ws),
                        "wsdeflate" => Ok(Transport::WsDeflate),
                        "sse" => Ok(Transport::Sse),
                        "poll" => Ok(Transport::Poll),
                        "webhook" => Ok(Transport::Webhook),
                        _ => Err(bad()),
                    })
                    .collect::<Result<_, _>>()?
            }
            _ => return Err(format!("unknown argument {flag:?}")),
        }
    }
    if !(1..=MAX_SUBS).contains(&a.subs) {
        return Err(format!("--subs must be 1..={MAX_SUBS}"));
    }
    if !(1..=MAX_WEBHOOKS).contains(&a.webhooks) {
        return Err(format!("--webhooks must be 1..={MAX_WEBHOOKS}"));
    }
    if !(1..=MAX_ROUNDS).contains(&a.rounds) {
        return Err(format!("--rounds must be 1..={MAX_ROUNDS}"));
    }
    if a.phases.is_empty() {
        return Err("--phases names no phase".into());
    }
    if !(1..=MAX_PUBLISHES).contains(&a.publishes) {
        return Err(format!("--publishes must be 1..={MAX_PUBLISHES}"));
    }
    if !(20..=16_384).contains(&a.data_bytes) {
        return Err("--data-bytes must be 20..=16384".into());
    }
    if !(1..=200).contains(&a.sources) {
        return Err("--sources must be 1..=200".into());
    }
    if !(1..=64).contains(&a.hook_ports) {
        return Err("--hook-ports must be 1..=64".into());
    }
    if a.label.is_empty() || a.label.contains(char::is_whitespace) {
        return Err("--label must be one word".into());
    }
    Ok(a)
}

/// Both we and the hub (which inherits our limit) need one fd per subscriber.
fn check_fd_limit(args: &Args) -> Result<(), String> {
    let limits = std::fs::read_to_string("/proc/self/limits").map_err(|e| e.to_string())?;
    let soft = limits
        .lines()
        .find(|l| l.starts_with("Max open files"))
        .and_then(|l| l.split_whitespace().nth(3))
        .and_then(|v| v.parse::<u64>().ok());
    let need = |t: Transport| match t {
        Transport::Webhook => args.webhooks * HOOK_IN_FLIGHT + args.hook_ports,
        _ => args.subs,
    } as u64
        + SPARE_FDS;
    let most = args.phases.iter().map(|&t| need(t)).max().unwrap_or(0);
    match soft {
        Some(soft) if soft < most => Err(format!(
            "open-files limit {soft} is too low: a phase needs {most} fds here and in the hub; \
             lower --subs (or --webhooks)"
        )),
        _ => Ok(()),
    }
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

/// Compiles `benches/alloc_count/alloc_count.c` into `target/fanout/alloc_count.so` unless
/// an up-to-date one is there.
fn build_alloc_lib() -> Result<PathBuf, String> {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("alloc_count/alloc_count.c");
    let dir = target_dir().join("fanout");
    let lib = dir.join("alloc_count.so");
    let mtime = |p: &Path| std::fs::metadata(p).and_then(|m| m.modified()).ok();
    let src_time = mtime(&src).ok_or_else(|| format!("no source at {}", src.display()))?;
    if mtime(&lib).is_some_and(|t| t >= src_time) {
        return Ok(lib);
    }
    std::fs::create_dir_all(&dir).map_err(|e| format!("mkdir {}: {e}", dir.display()))?;
    let cc = std::env::var("CC").unwrap_or_else(|_| "cc".into());
    let out = Command::new(&cc)
        .args(["-O2", "-Wall", "-shared", "-fPIC", "-o"])
        .arg(&lib)
        .arg(&src)
        .arg("-ldl")
        .stdin(Stdio::null())
        .output()
        .map_err(|e| format!("running {cc}: {e}"))?;
    if !out.status.success() {
        return Err(format!(
            "{cc} failed ({}): {}",
            out.status,
            String::from_utf8_lossy(&out.stderr).trim()
        ));
    }
    Ok(lib)
}

/// The hub's allocation counters, in the file its preloaded `alloc_count.so` maps.
struct AllocFile(File);

#[derive(Clone, Copy, PartialEq, Eq, Default)]
struct Allocs {
    allocs: u64,
    reallocs: u64,
    frees: u64,
    bytes: u64,
}

impl AllocFile {
    const MAGIC: u64 = 0x636f_6c6c_6177_7070;

    /// Waits for the hub to have mapped the file and written its pid there.
    fn open(path: &Path, pid: u32) -> Result<Self, String> {
        let deadline = Instant::now() + START_DEADLINE;
        loop {
            if let Ok(f) = File::open(path) {
                let f = AllocFile(f);
                if let Ok(w) = f.words() {
                    if w[0] == Self::MAGIC && w[5] == u64::from(pid) {
                        return Ok(f);
                    }
                }
            }
            if Instant::now() >= deadline {
                return Err(format!(
                    "the hub did not map {} (is alloc_count.so preloaded? a static binary?)",
                    path.display()
                ));
            }
            sleep(Duration::from_millis(20));
        }
    }

    fn words(&self) -> io::Result<[u64; 8]> {
        let mut b = [0u8; 64];
        self.0.read_exact_at(&mut b, 0)?;
        let mut w = [0u64; 8];
        for (i, c) in b.chunks_exact(8).enumerate() {
            w[i] = u64::from_le_bytes(c.try_into().expect("8 bytes"));
        }
        Ok(w)
    }

    fn read(&self) -> Result<Allocs, String> {
        let w = self
            .words()
            .map_err(|e| format!("reading the alloc counters: {e}"))?;
        Ok(Allocs {
            allocs: w[1],
            reallocs: w[2],
            frees: w[3],
            bytes: w[4],
        })
    }
}

/// User plus system CPU time of process `pid` in nanoseconds.
fn process_cpu_ns(pid: u32) -> Result<u64, String> {
    let mut clock: libc::clockid_t = 0;
    // SAFETY: clock_getcpuclockid only writes the clock id through the valid pointer.
    if unsafe { libc::clock_getcpuclockid(pid as libc::pid_t, &mut clock) } == 0 {
        let mut ts = libc::timespec {
            tv_sec: 0,
            tv_nsec: 0,
        };
        // SAFETY: clock_gettime writes one timespec through the valid pointer.
        if unsafe { libc::clock_gettime(clock, &mut ts) } == 0 {
            return Ok(ts.tv_sec as u64 * 1_000_000_000 + ts.tv_nsec as u64);
        }
    }
    // Fallback: utime + stime from /proc/PID/stat, in ticks of 10 ms (USER_HZ = 100).
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .map_err(|e| format!("reading /proc/{pid}/stat: {e}"))?;
    let rest = stat.rsplit_once(')').map(|(_, r)| r).unwrap_or("");
    let fields: Vec<&str> = rest.split_whitespace().collect();
    let ticks = |i: usize| fields.get(i).and_then(|v| v.parse::<u64>().ok());
    match (ticks(11), ticks(12)) {
        (Some(u), Some(s)) => Ok((u + s) * 10_000_000),
        _ => Err(format!("bad /proc/{pid}/stat")),
    }
}

/// utime + stime of process `pid` from `/proc/PID/stat`, in ns (10 ms ticks, USER_HZ = 100).
fn stat_cpu_ns(pid: u32) -> Result<u64, String> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .map_err(|e| format!("reading /proc/{pid}/stat: {e}"))?;
    let rest = stat.rsplit_once(')').map(|(_, r)| r).unwrap_or("");
    let fields: Vec<&str> = rest.split_whitespace().collect();
    let ticks = |i: usize| fields.get(i).and_then(|v| v.parse::<u64>().ok());
    match (ticks(11), ticks(12)) {
        (Some(u), Some(s)) => Ok((u + s) * 10_000_000),
        _ => Err(format!("bad /proc/{pid}/stat")),
    }
}

/// CPU time of the calling thread in nanoseconds.
fn thread_cpu_ns() -> u64 {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: clock_gettime writes one timespec through the valid pointer.
    unsafe { libc::clock_gettime(libc::CLOCK_THREAD_CPUTIME_ID, &mut ts) };
    ts.tv_sec as u64 * 1_000_000_000 + ts.tv_nsec as u64
}

/// What one phase measured over its `--publishes` windows.
#[derive(Default)]
struct Totals {
    deliveries: u64,
    delivery_ns: u64,
    publish_ns: Vec<u64>,
    allocs: u64,
    bytes: u64,
    cpu_ns: u64,
    bench_cpu_ns: u64,
    noisy_windows: usize,
    /// WebSocket frame bytes (headers and payloads) of the measured events.
    ws_wire_bytes: u64,
    /// The uncompressed payloads of the measured events' frames, summed.
    event_bytes: usize,
    /// `/proc/PID/stat` utime + stime (ns, 10 ms ticks) before the first measured publish
    /// and after the last.
    stat_cpu_ns: u64,
    compressed_frames: u64,
    frames_inflated: u64,
}

fn run_phase(
    args: &Args,
    t: Transport,
    port: u16,
    lib: &Path,
) -> Result<(String, PhaseFigures), String> {
    let addr = SocketAddr::from(([127, 0, 0, 1], port));
    if StdStream::connect_timeout(&addr, Duration::from_millis(500)).is_ok() {
        return Err(format!("something already listens on {addr}"));
    }
    let n = match t {
        Transport::Webhook => args.webhooks,
        _ => args.subs,
    };
    let dir = target_dir().join("fanout");
    std::fs::create_dir_all(&dir).map_err(|e| format!("mkdir {}: {e}", dir.display()))?;
    let count_path = dir.join(format!(
        "allocs-{}-{}-{}.bin",
        args.label,
        t.name(),
        std::process::id()
    ));
    let log_path = dir.join(format!("hub-{}-{}.log", args.label, t.name()));
    let _ = std::fs::remove_file(&count_path);
    let log = File::create(&log_path).map_err(|e| format!("{}: {e}", log_path.display()))?;

    let max_conns = args.subs.max(args.webhooks * HOOK_IN_FLIGHT) + 256;
    let mut cmd = match args.hub_cpu {
        Some(cpu) => {
            let mut c = Command::new("taskset");
            c.arg("-c").arg(cpu.to_string()).arg(&args.hub);
            c
        }
        None => Command::new(&args.hub),
    };
    cmd.arg("--addr")
        .arg(addr.to_string())
        .arg("--max-connections")
        .arg(max_conns.to_string())
        .arg("--webhook-allow-private")
        .arg("--sse-heartbeat")
        .arg("3600")
        .env("LD_PRELOAD", lib)
        .env("ALLOC_COUNT_FILE", &count_path)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(log);
    let child = cmd
        .spawn()
        .map_err(|e| format!("cannot start the hub: {e}"))?;
    let mut hub = Hub(child);
    let pid = hub.0.id();
    wait_listening(&mut hub, addr)?;
    let counters = AllocFile::open(&count_path, pid)?;
    let result = drive(args, t, n, addr, &mut hub, pid, &counters);
    drop(hub);
    let _ = std::fs::remove_file(&count_path);
    let totals = result?;

    let d = totals.deliveries.max(1) as f64;
    let mut ms: Vec<u64> = totals.publish_ns.clone();
    ms.sort_unstable();
    let p50 = ms.get(ms.len() / 2).copied().unwrap_or(0) as f64 / 1e6;
    let max = ms.last().copied().unwrap_or(0) as f64 / 1e6;
    let mut line = format!(
        "fanout target={} transport={} subs={n} publishes={} deliveries={} \
         ns_per_delivery={:.1} allocs_per_delivery={:.3} alloc_bytes_per_delivery={:.1} \
         cpu_ns_per_delivery={:.1} publish_ms_p50={p50:.2} publish_ms_max={max:.2} \
         bench_cpu_share={:.2}",
        args.label,
        t.name(),
        args.publishes,
        totals.deliveries,
        totals.delivery_ns as f64 / d,
        totals.allocs as f64 / d,
        totals.bytes as f64 / d,
        totals.cpu_ns as f64 / d,
        totals.bench_cpu_ns as f64 / totals.delivery_ns.max(1) as f64,
    );
    let figures = PhaseFigures {
        cpu_us_per_event: totals.cpu_ns as f64 / d * n as f64 / 1e3,
        stat_cpu_us_per_event: totals.stat_cpu_ns as f64 / args.publishes as f64 / 1e3,
        wire_bytes_per_delivery: totals.ws_wire_bytes as f64 / d,
        ns_per_delivery: totals.delivery_ns as f64 / d,
        event_bytes: totals.event_bytes as f64 / args.publishes as f64,
    };
    if t.is_ws() || args.json_data {
        line.push_str(&format!(
            " cpu_us_per_event={:.1} stat_cpu_us_per_event={:.0}",
            figures.cpu_us_per_event, figures.stat_cpu_us_per_event
        ));
    }
    if t.is_ws() {
        line.push_str(&format!(
            " ws_wire_bytes_per_delivery={:.1} event_bytes={:.1} compressed_frame_share={:.3} \
             frames_inflated={}",
            figures.wire_bytes_per_delivery,
            figures.event_bytes,
            // Over every delivery, the warm-up's too (what frames_inflated counts).
            totals.compressed_frames as f64 / (n * (args.publishes + 1)) as f64,
            totals.frames_inflated
        ));
    }
    if totals.noisy_windows > 0 {
        line.push_str(&format!(" not_quiet_windows={}", totals.noisy_windows));
    }
    Ok((line, figures))
}

/// Subscribes, publishes and measures; the caller owns (and kills) the hub.
fn drive(
    args: &Args,
    t: Transport,
    n: usize,
    addr: SocketAddr,
    hub: &mut Hub,
    pid: u32,
    counters: &AllocFile,
) -> Result<Totals, String> {
    let data: Vec<Vec<u8>> = (0..=args.publishes)
        .map(|k| {
            if args.json_data {
                quotes::quotes(k as u64 + 1, args.data_bytes)
            } else {
                event_data(k, args.data_bytes)
            }
        })
        .collect();
    let mut b = Bench::new(t, addr, n, data, args.sources)?;
    // Compare each frame with the first checked one of its publish (see the docs).
    b.tally.cache_frames = t == Transport::WsDeflate || args.json_data;
    let setup_deadline = Instant::now() + SETUP_DEADLINE;
    if t == Transport::Webhook {
        b.listen(args.hook_ports)?;
        for i in 0..n {
            let port = b.listener_ports[i % b.listener_ports.len()];
            let url = format!("http://127.0.0.1:{port}/hook/{i}");
            let body = format!("url={}", form_encode(&url));
            let (status, resp) = http_request(
                addr,
                "POST",
                &format!("/topics/{TOPIC}/webhooks"),
                body.as_bytes(),
            )?;
            if status != 201 {
                return Err(format!(
                    "registering webhook {i}: status {status}: {}",
                    String::from_utf8_lossy(&resp).trim()
                ));
            }
        }
    } else {
        b.subscribe_all(setup_deadline)?;
        let (section, key) = match t {
            Transport::Ws | Transport::WsDeflate => ("connections", "websocket"),
            Transport::Sse => ("connections", "sse"),
            _ => ("connections", "parked"),
        };
        b.wait_stat(section, key, n as u64, setup_deadline)?;
    }
    b.open_publisher()?;

    let mut totals = Totals::default();
    let mut stat0 = 0;
    for k in 0..=args.publishes {
        if let Ok(Some(status)) = hub.0.try_wait() {
            return Err(format!("the hub exited ({status}) before publish {k}"));
        }
        if t == Transport::Poll && k > 0 {
            b.rearm_polls(Instant::now() + STEP_TIMEOUT)?;
            b.wait_stat(
                "connections",
                "parked",
                n as u64,
                Instant::now() + STEP_TIMEOUT,
            )?;
        }
        // Let anything left from the last step settle before the window opens.
        b.wait_quiet(counters)?;
        if k == 1 {
            stat0 = stat_cpu_ns(pid)?;
        }
        let a0 = counters.read()?;
        let cpu0 = process_cpu_ns(pid)?;
        let self0 = thread_cpu_ns();
        let t0 = Instant::now();
        b.publish(k)?;
        let deadline = t0 + PUBLISH_DEADLINE;
        b.run_until(deadline, |b| {
            b.tally.delivered[k] as usize == n && b.publisher_answered > k
        })
        .map_err(|e| b.explain_missing(k, e))?;
        let t_last = b.tally.last_at[k].expect("all delivered");
        let self1 = b.tally.last_cpu[k];
        let quiet = b.wait_quiet(counters)?;
        let a1 = counters.read()?;
        let cpu1 = process_cpu_ns(pid)?;
        b.check_errors()?;
        if k == args.publishes {
            totals.stat_cpu_ns = stat_cpu_ns(pid)?.saturating_sub(stat0);
        }
        if k == 0 {
            continue; // the warm-up
        }
        totals.ws_wire_bytes += b.tally.ws_bytes[k];
        totals.event_bytes += b.tally.event_len[k].unwrap_or(0);
        let ns = t_last.duration_since(t0).as_nanos() as u64;
        totals.deliveries += n as u64;
        totals.delivery_ns += ns;
        totals.publish_ns.push(ns);
        totals.allocs += (a1.allocs + a1.reallocs) - (a0.allocs + a0.reallocs);
        totals.bytes += a1.bytes - a0.bytes;
        totals.cpu_ns += cpu1.saturating_sub(cpu0);
        totals.bench_cpu_ns += self1.saturating_sub(self0);
        if !quiet {
            totals.noisy_windows += 1;
        }
    }
    b.verify_final()?;
    totals.compressed_frames = b.tally.compressed_frames;
    totals.frames_inflated = b.tally.frames_inflated;
    if t == Transport::WsDeflate
        && totals.compressed_frames == 0
        && totals.event_bytes >= 64 * args.publishes
    {
        return Err("permessage-deflate was negotiated but no frame came compressed".into());
    }
    Ok(totals)
}

/// The data of publish `k`: `fanout-00000k-` then `x`s, `len` bytes, nothing to escape.
fn event_data(k: usize, len: usize) -> Vec<u8> {
    let mut d = format!("fanout-{k:06}-").into_bytes();
    d.resize(len, b'x');
    d
}

/// Which publish a data string belongs to.
fn data_index(d: &[u8]) -> Option<usize> {
    let digits = d.strip_prefix(b"fanout-")?.get(..6)?;
    std::str::from_utf8(digits).ok()?.parse().ok()
}

fn form_encode(s: &str) -> String {
    let mut out = String::new();
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || b"-._~".contains(&b) {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

fn wait_listening(hub: &mut Hub, addr: SocketAddr) -> Result<(), String> {
    let deadline = Instant::now() + START_DEADLINE;
    loop {
        if StdStream::connect_timeout(&addr, Duration::from_millis(200)).is_ok() {
            return Ok(());
        }
        if let Ok(Some(status)) = hub.0.try_wait() {
            return Err(format!("the hub exited at start ({status})"));
        }
        if Instant::now() >= deadline {
            return Err(format!(
                "the hub does not listen on {addr} after {START_DEADLINE:?}"
            ));
        }
        sleep(Duration::from_millis(50));
    }
}

/// One blocking request on a fresh connection (`Connection: close`); status and body.
fn http_request(
    addr: SocketAddr,
    method: &str,
    path: &str,
    body: &[u8],
) -> Result<(u16, Vec<u8>), String> {
    let what = |e: io::Error| format!("{method} {path}: {e}");
    let mut s = StdStream::connect_timeout(&addr, STEP_TIMEOUT).map_err(what)?;
    s.set_read_timeout(Some(STEP_TIMEOUT)).map_err(what)?;
    s.set_write_timeout(Some(STEP_TIMEOUT)).map_err(what)?;
    let mut req = format!(
        "{method} {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\
         Content-Type: application/x-www-form-urlencoded\r\nContent-Length: {}\r\n\r\n",
        body.len()
    )
    .into_bytes();
    req.extend_from_slice(body);
    s.write_all(&req).map_err(what)?;
    let deadline = Instant::now() + STEP_TIMEOUT;
    let mut buf = Vec::new();
    let mut chunk = [0u8; 4096];
    loop {
        match s.read(&mut chunk) {
            Ok(0) => break,
            Ok(k) => buf.extend_from_slice(&chunk[..k]),
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(what(e)),
        }
        if buf.len() > MAX_MESSAGE || Instant::now() >= deadline {
            return Err(format!("{method} {path}: response too long or too slow"));
        }
    }
    let mut headers = [httparse::EMPTY_HEADER; 32];
    let mut resp = httparse::Response::new(&mut headers);
    match resp.parse(&buf) {
        Ok(httparse::Status::Complete(head)) => {
            let status = resp.code.unwrap_or(0);
            let chunked = resp.headers.iter().any(|h| {
                h.name.eq_ignore_ascii_case("transfer-encoding")
                    && String::from_utf8_lossy(h.value)
                        .to_ascii_lowercase()
                        .contains("chunked")
            });
            let mut body = buf[head..].to_vec();
            if chunked {
                let mut dec = Chunked::default();
                let mut out = Vec::new();
                dec.feed(&body, &mut out)?;
                body = out;
            }
            Ok((status, body))
        }
        _ => Err(format!("{method} {path}: bad or incomplete response")),
    }
}

/// The number at `"section":{..."key":N` in a flat JSON object like `/stats`.
fn json_number(body: &[u8], section: &str, key: &str) -> Option<u64> {
    let start = find(body, format!("\"{section}\":{{").as_bytes())?;
    let rest = &body[start..];
    let k = find(rest, format!("\"{key}\":").as_bytes())?;
    leading_number(&rest[k + key.len() + 3..]).map(|(n, _)| n)
}

fn find(hay: &[u8], needle: &[u8]) -> Option<usize> {
    hay.windows(needle.len()).position(|w| w == needle)
}

/// A decimal number at the start of `b` and the bytes it took.
fn leading_number(b: &[u8]) -> Option<(u64, usize)> {
    let digits = b.iter().take_while(|c| c.is_ascii_digit()).count();
    if digits == 0 || digits > 19 {
        return None;
    }
    let n = std::str::from_utf8(&b[..digits]).ok()?.parse().ok()?;
    Some((n, digits))
}

/// An event's id and data.
type Event<'a> = (u64, Cow<'a, [u8]>);

/// Every `"id":N ... "data":"TEXT"` pair in an event (or page of events) as JSON, in order,
/// the data unescaped (borrowed when it has no escapes, as `fanout-...` data never has).
fn json_events(b: &[u8]) -> Result<Vec<Event<'_>>, String> {
    let mut out = Vec::new();
    let mut pos = 0;
    while let Some(i) = find(&b[pos..], b"\"id\":") {
        let at = pos + i + 5;
        let (id, len) = leading_number(&b[at..]).ok_or("an event id that is not a number")?;
        let after = at + len;
        let d = find(&b[after..], b"\"data\":\"").ok_or("an event without data")? + after + 8;
        let mut end = d;
        let mut escaped = false;
        loop {
            match b.get(end) {
                None => return Err("unterminated data".into()),
                Some(b'"') => break,
                Some(b'\\') => {
                    escaped = true;
                    end += 2;
                }
                Some(_) => end += 1,
            }
        }
        let raw = b.get(d..end).ok_or("unterminated data")?;
        out.push((
            id,
            if escaped {
                Cow::Owned(json_unescape(raw)?)
            } else {
                Cow::Borrowed(raw)
            },
        ));
        pos = end;
    }
    Ok(out)
}

/// A JSON string's contents without its escapes.
fn json_unescape(raw: &[u8]) -> Result<Vec<u8>, String> {
    let mut out = Vec::with_capacity(raw.len());
    let mut i = 0;
    while i < raw.len() {
        let c = raw[i];
        if c != b'\\' {
            out.push(c);
            i += 1;
            continue;
        }
        let e = *raw.get(i + 1).ok_or("a lone backslash")?;
        i += 2;
        match e {
            b'"' | b'\\' | b'/' => out.push(e),
            b'n' => out.push(b'\n'),
            b'r' => out.push(b'\r'),
            b't' => out.push(b'\t'),
            b'b' => out.push(8),
            b'f' => out.push(12),
            b'u' => {
                let hex = raw.get(i..i + 4).ok_or("a short \\u escape")?;
                let code = std::str::from_utf8(hex)
                    .ok()
                    .and_then(|h| u32::from_str_radix(h, 16).ok())
                    .ok_or("a bad \\u escape")?;
                let ch = char::from_u32(code).unwrap_or(char::REPLACEMENT_CHARACTER);
                let mut buf = [0u8; 4];
                out.extend_from_slice(ch.encode_utf8(&mut buf).as_bytes());
                i += 4;
            }
            _ => return Err(format!("a bad escape \\{}", e as char)),
        }
    }
    Ok(out)
}

/// An incremental `Transfer-Encoding: chunked` decoder.
#[derive(Default)]
struct Chunked {
    state: ChunkState,
    size: usize,
    at_line_start: bool,
}

#[derive(Default, PartialEq, Eq)]
enum ChunkState {
    #[default]
    Size,
    Ext,
    Data,
    DataEnd,
    Trailer,
    Done,
}

impl Chunked {
    /// Decodes what it can of `input` into `out`; returns the bytes consumed (all of them
    /// unless the body ended inside `input`).
    fn feed(&mut self, input: &[u8], out: &mut Vec<u8>) -> Result<usize, String> {
        let mut i = 0;
        while i < input.len() {
            let c = input[i];
            match self.state {
                ChunkState::Size => match c {
                    b'0'..=b'9' | b'a'..=b'f' | b'A'..=b'F' => {
                        let d = (c as char).to_digit(16).expect("hex") as usize;
                        self.size = self
                            .size
                            .checked_mul(16)
                            .and_then(|s| s.checked_add(d))
                            .filter(|&s| s <= MAX_MESSAGE)
                            .ok_or("chunk too large")?;
                    }
                    b';' | b' ' | b'\t' => self.state = ChunkState::Ext,
                    b'\r' => {}
                    b'\n' => self.end_size_line(),
                    _ => return Err(format!("bad chunk size byte {c:#04x}")),
                },
                ChunkState::Ext => {
                    if c == b'\n' {
                        self.end_size_line();
                    }
                }
                ChunkState::Data => {
                    let take = self.size.min(input.len() - i);
                    out.extend_from_slice(&input[i..i + take]);
                    self.size -= take;
                    i += take;
                    if self.size == 0 {
                        self.state = ChunkState::DataEnd;
                    }
                    continue;
                }
                ChunkState::DataEnd => match c {
                    b'\r' => {}
                    b'\n' => self.state = ChunkState::Size,
                    _ => return Err("no CRLF after chunk data".into()),
                },
                ChunkState::Trailer => match c {
                    b'\r' => {}
                    b'\n' if self.at_line_start => {
                        self.state = ChunkState::Done;
                        return Ok(i + 1);
                    }
                    b'\n' => self.at_line_start = true,
                    _ => self.at_line_start = false,
                },
                ChunkState::Done => return Ok(i),
            }
            i += 1;
        }
        Ok(i)
    }

    fn end_size_line(&mut self) {
        if self.size == 0 {
            self.state = ChunkState::Trailer;
            self.at_line_start = true;
        } else {
            self.state = ChunkState::Data;
        }
    }
}

/// How a response body after its head is framed.
enum Body {
    /// Nothing read yet: the head is not complete.
    Head,
    Ws,
    Chunked(Chunked),
    Length(usize),
    /// Until EOF (an SSE stream on HTTP/1.0).
    Raw,
}

/// One subscriber.
struct Sub {
    sock: TcpStream,
    connected: bool,
    /// WebSocket: 101 seen; SSE: head seen; poll: the request was sent.
    ready: bool,
    out: Vec<u8>,
    out_off: usize,
    /// Bytes not parsed yet: the response head, a partial frame.
    inbuf: Vec<u8>,
    body: Body,
    /// Decoded body text: SSE lines, a poll answer.
    text: Vec<u8>,
    sse: SseEvent,
    /// Poll: a request is outstanding.
    waiting: bool,
    /// Poll: an answer with events came; the next request waits for the window to close.
    rearm: bool,
    seq: Seq,
}

#[derive(Default)]
struct SseEvent {
    id: Option<u64>,
    data: Vec<u8>,
    has_data: bool,
    named: Option<Vec<u8>>,
}

/// What one receiver got so far.
#[derive(Default, Clone, Copy)]
struct Seq {
    got: usize,
    first_id: u64,
    last_id: u64,
}

/// A connection the hub opened to one of our webhook listeners.
struct HookConn {
    sock: TcpStream,
    inbuf: Vec<u8>,
    out: Vec<u8>,
    out_off: usize,
}

struct Publisher {
    sock: TcpStream,
    out: Vec<u8>,
    out_off: usize,
    inbuf: Vec<u8>,
}

/// A frame's payload that was checked, and the event id it carried.
type Checked = (Vec<u8>, u64);

/// Deliveries per publish, and everything that went wrong.
struct Tally {
    expect: u32,
    published: usize,
    delivered: Vec<u32>,
    last_at: Vec<Option<Instant>>,
    /// This thread's CPU time when the last delivery of each publish came.
    last_cpu: Vec<u64>,
    data: Vec<Vec<u8>>,
    /// The id each webhook delivery of each publish carried (they must agree).
    hook_ids: Vec<Option<u64>>,
    /// `[endpoint][publish]`: delivered already.
    hook_seen: Vec<Vec<bool>>,
    errors: Vec<String>,
    error_count: usize,
    /// WebSocket frame bytes (header + payload) delivered per publish.
    ws_bytes: Vec<u64>,
    /// The uncompressed payload length of each publish's WebSocket message.
    event_len: Vec<Option<usize>>,
    /// Compare frames with the first checked one of their publish (`[plain, compressed]`:
    /// its payload and id) instead of parsing each.
    cache_frames: bool,
    cache: Vec<[Option<Checked>; 2]>,
    inflater: Inflater,
    compressed_frames: u64,
    frames_inflated: u64,
}

impl Tally {
    fn new(n: usize, data: Vec<Vec<u8>>, webhooks: bool) -> Self {
        let publishes = data.len();
        Tally {
            expect: n as u32,
            published: 0,
            delivered: vec![0; publishes],
            last_at: vec![None; publishes],
            last_cpu: vec![0; publishes],
            hook_ids: vec![None; publishes],
            hook_seen: if webhooks {
                vec![vec![false; publishes]; n]
            } else {
                Vec::new()
            },
            data,
            errors: Vec::new(),
            error_count: 0,
            ws_bytes: vec![0; publishes],
            event_len: vec![None; publishes],
            cache_frames: false,
            cache: (0..publishes).map(|_| [None, None]).collect(),
            inflater: Inflater::new(15, false),
            compressed_frames: 0,
            frames_inflated: 0,
        }
    }

    /// Subscriber `conn` got a text frame of `frame_len` bytes with `payload`, compressed
    /// when `rsv1` (permessage-deflate).
    fn ws_message(
        &mut self,
        conn: usize,
        s: &mut Seq,
        rsv1: bool,
        payload: &[u8],
        frame_len: usize,
    ) {
        let k = s.got;
        if let Some(b) = self.ws_bytes.get_mut(k) {
            *b += frame_len as u64;
        }
        self.compressed_frames += u64::from(rsv1);
        let slot = usize::from(rsv1);
        if self.cache_frames {
            if let Some(Some((bytes, id))) = self.cache.get(k).map(|c| &c[slot]) {
                if bytes.as_slice() == payload {
                    let id = *id;
                    self.sub_event_checked(conn, s, id, None);
                    return;
                }
            }
        }
        let text: Cow<'_, [u8]> = if rsv1 {
            self.frames_inflated += 1;
            let mut out = Vec::new();
            if let Err(e) = self.inflater.inflate(payload, MAX_MESSAGE, &mut out) {
                self.error(format!("subscriber {conn}: a compressed frame: {e}"));
                return;
            }
            Cow::Owned(out)
        } else {
            Cow::Borrowed(payload)
        };
        if let Some(len @ None) = self.event_len.get_mut(k) {
            *len = Some(text.len());
        }
        match json_events(&text) {
            Ok(evs) if evs.len() == 1 => {
                let errors = self.error_count;
                let id = evs[0].0;
                self.sub_event(conn, s, id, &evs[0].1);
                if self.cache_frames && self.error_count == errors {
                    if let Some(c @ None) = self.cache.get_mut(k).map(|c| &mut c[slot]) {
                        *c = Some((payload.to_vec(), id));
                    }
                }
            }
            _ => self.error(format!(
                "subscriber {conn}: unexpected message {:?}",
                String::from_utf8_lossy(&text)
            )),
        }
    }

    fn error(&mut self, e: String) {
        self.error_count += 1;
        if self.errors.len() < MAX_ERROR_LINES {
            self.errors.push(e);
        }
    }

    fn count(&mut self, k: usize) {
        self.delivered[k] += 1;
        if self.delivered[k] == self.expect {
            self.last_at[k] = Some(Instant::now());
            self.last_cpu[k] = thread_cpu_ns();
        }
    }

    /// Subscriber `conn` got event `id` with `data`: it must be the next one.
    fn sub_event(&mut self, conn: usize, s: &mut Seq, id: u64, data: &[u8]) {
        self.sub_event_checked(conn, s, id, Some(data))
    }

    /// [`Tally::sub_event`]; `None` for data known to be right (a frame equal to a checked
    /// one of the same publish).
    fn sub_event_checked(&mut self, conn: usize, s: &mut Seq, id: u64, data: Option<&[u8]>) {
        let k = s.got;
        if k >= self.published {
            self.error(format!(
                "subscriber {conn}: event id {id} after all {} publishes had come",
                self.published
            ));
            return;
        }
        if k > 0 && id != s.last_id + 1 {
            self.error(format!(
                "subscriber {conn}: event id {id} after id {} (a miss, a duplicate or reordering)",
                s.last_id
            ));
        } else if let Some(data) = data.filter(|d| *d != self.data[k].as_slice()) {
            self.error(format!(
                "subscriber {conn}: event id {id} has data {:?}, want {:?}",
                String::from_utf8_lossy(data),
                String::from_utf8_lossy(&self.data[k])
            ));
        }
        if k == 0 {
            s.first_id = id;
        }
        s.last_id = id;
        s.got += 1;
        self.count(k);
    }

    fn hook_event(&mut self, endpoint: usize, id: u64, data: &[u8]) {
        let k = data_index(data).or_else(|| self.data.iter().position(|d| d == data));
        let Some(k) = k.filter(|&k| k < self.published) else {
            self.error(format!(
                "webhook {endpoint}: unexpected data {:?}",
                String::from_utf8_lossy(data)
            ));
            return;
        };
        if data != self.data[k].as_slice() {
            self.error(format!(
                "webhook {endpoint}: event id {id} has data {:?}",
                String::from_utf8_lossy(data)
            ));
            return;
        }
        if self.hook_seen[endpoint][k] {
            self.error(format!("webhook {endpoint}: event id {id} delivered twice"));
            return;
        }
        match self.hook_ids[k] {
            Some(prev) if prev != id => self.error(format!(
                "webhook {endpoint}: publish {k} came as id {id}, to others as id {prev}"
            )),
            _ => self.hook_ids[k] = Some(id),
        }
        self.hook_seen[endpoint][k] = true;
        self.count(k);
    }
}

/// The client side of one phase: subscribers, webhook receivers and the publisher on one
/// mio loop.
struct Bench {
    transport: Transport,
    addr: SocketAddr,
    n: usize,
    sources: usize,
    poll: Poll,
    events: Events,
    subs: Vec<Sub>,
    ready: usize,
    listeners: Vec<TcpListener>,
    listener_ports: Vec<u16>,
    hooks: Vec<Option<HookConn>>,
    publisher: Option<Publisher>,
    publisher_answered: usize,
    pub_ids: Vec<u64>,
    rbuf: Vec<u8>,
    ws_key: String,
    ws_accept: String,
    tally: Tally,
}

impl Bench {
    fn new(
        transport: Transport,
        addr: SocketAddr,
        n: usize,
        data: Vec<Vec<u8>>,
        sources: usize,
    ) -> Result<Self, String> {
        let ws_key = BASE64.encode(*b"pushwire-fanout!");
        let mut sha = Sha1::new();
        sha.update(ws_key.as_bytes());
        sha.update(WS_GUID.as_bytes());
        let ws_accept = BASE64.encode(sha.finalize());
        Ok(Bench {
            transport,
            addr,
            n,
            sources,
            poll: Poll::new().map_err(|e| format!("poll: {e}"))?,
            events: Events::with_capacity(4096),
            subs: Vec::with_capacity(n),
            ready: 0,
            listeners: Vec::new(),
            listener_ports: Vec::new(),
            hooks: Vec::new(),
            publisher: None,
            publisher_answered: 0,
            pub_ids: Vec::new(),
            rbuf: vec![0; 256 * 1024],
            ws_key,
            ws_accept,
            tally: Tally::new(n, data, transport == Transport::Webhook),
        })
    }

    fn check_errors(&mut self) -> Result<(), String> {
        if self.tally.error_count == 0 {
            return Ok(());
        }
        let mut msg = self.tally.errors.join("\n");
        if self.tally.error_count > self.tally.errors.len() {
            msg.push_str(&format!("\n... {} errors in all", self.tally.error_count));
        }
        Err(msg)
    }

    /// What is missing when publish `k` did not reach everyone.
    fn explain_missing(&mut self, k: usize, e: String) -> String {
        let mut lines = Vec::new();
        let _ = self.check_errors().map_err(|m| lines.push(m));
        lines.push(format!(
            "publish {k}: {e}: {} of {} deliveries came (POST answered: {})",
            self.tally.delivered[k],
            self.n,
            self.publisher_answered > k
        ));
        if self.transport == Transport::Webhook {
            let missing: Vec<usize> = (0..self.n)
                .filter(|&i| !self.tally.hook_seen[i][k])
                .collect();
            lines.push(format!(
                "publish {k}: {} webhook endpoints missed it, e.g. {:?}",
                missing.len(),
                &missing[..missing.len().min(10)]
            ));
        } else {
            let missing: Vec<(usize, Seq)> = self
                .subs
                .iter()
                .enumerate()
                .filter(|(_, s)| s.seq.got <= k)
                .map(|(i, s)| (i, s.seq))
                .collect();
            lines.push(format!(
                "publish {k}: {} subscribers missed it; e.g. {}",
                missing.len(),
                missing
                    .iter()
                    .take(10)
                    .map(|(i, s)| format!("#{i} (got {}, last id {})", s.got, s.last_id))
                    .collect::<Vec<_>>()
                    .join(", ")
            ));
        }
        lines.join("\n")
    }

    /// After the last publish: everyone got all of them, with the ids the POSTs answered.
    fn verify_final(&mut self) -> Result<(), String> {
        let total = self.tally.data.len();
        if self.pub_ids.len() != total {
            return Err(format!(
                "{} POST answers for {total} publishes",
                self.pub_ids.len()
            ));
        }
        let first = self.pub_ids[0];
        for (k, &id) in self.pub_ids.iter().enumerate() {
            if id != first + k as u64 {
                self.tally.error(format!(
                    "publish {k} was answered id {id}, want {}",
                    first + k as u64
                ));
            }
        }
        for i in 0..self.subs.len() {
            let s = self.subs[i].seq;
            if s.got != total || s.first_id != first {
                self.tally.error(format!(
                    "subscriber {i}: got {} events from id {}, want {total} from id {first}",
                    s.got, s.first_id
                ));
            }
        }
        for k in 0..self.tally.hook_ids.len().min(total) {
            if self.transport == Transport::Webhook
                && self.tally.hook_ids[k] != Some(first + k as u64)
            {
                self.tally.error(format!(
                    "webhooks: publish {k} came as id {:?}, want {}",
                    self.tally.hook_ids[k],
                    first + k as u64
                ));
            }
        }
        self.check_errors()
    }

    /// Opens the webhook listeners, on ephemeral ports of 127.0.0.1.
    fn listen(&mut self, count: usize) -> Result<(), String> {
        for i in 0..count {
            let mut l = TcpListener::bind(SocketAddr::from(([127, 0, 0, 1], 0)))
                .map_err(|e| format!("webhook listener: {e}"))?;
            let port = l.local_addr().map_err(|e| e.to_string())?.port();
            self.poll
                .registry()
                .register(&mut l, Token(LISTEN_BASE + i), Interest::READABLE)
                .map_err(|e| format!("register: {e}"))?;
            self.listeners.push(l);
            self.listener_ports.push(port);
        }
        Ok(())
    }

    fn subscribe_all(&mut self, deadline: Instant) -> Result<(), String> {
        while self.ready < self.n {
            while self.subs.len() < self.n && self.subs.len() - self.ready < CONNECT_WINDOW {
                self.open_sub()?;
            }
            self.turn(Duration::from_millis(10))?;
            self.check_errors()?;
            if Instant::now() >= deadline {
                return Err(format!(
                    "only {} of {} subscribers ready after {SETUP_DEADLINE:?}",
                    self.ready, self.n
                ));
            }
        }
        Ok(())
    }

    fn open_sub(&mut self) -> Result<(), String> {
        let i = self.subs.len();
        let src = Ipv4Addr::new(127, 0, 0, 2 + (i % self.sources) as u8);
        let SocketAddr::V4(dst) = self.addr else {
            return Err("IPv4 only".into());
        };
        let std_sock = connect_from(src, dst)
            .map_err(|e| format!("subscriber {i}: connect from {src}: {e}"))?;
        let mut sock = TcpStream::from_std(std_sock);
        self.poll
            .registry()
            .register(&mut sock, Token(i), Interest::READABLE | Interest::WRITABLE)
            .map_err(|e| format!("register: {e}"))?;
        self.subs.push(Sub {
            sock,
            connected: false,
            ready: false,
            out: Vec::new(),
            out_off: 0,
            inbuf: Vec::new(),
            body: Body::Head,
            text: Vec::new(),
            sse: SseEvent::default(),
            waiting: false,
            rearm: false,
            seq: Seq::default(),
        });
        Ok(())
    }

    fn open_publisher(&mut self) -> Result<(), String> {
        let s = StdStream::connect_timeout(&self.addr, STEP_TIMEOUT)
            .map_err(|e| format!("publisher: {e}"))?;
        s.set_nodelay(true).map_err(|e| e.to_string())?;
        s.set_nonblocking(true).map_err(|e| e.to_string())?;
        let mut sock = TcpStream::from_std(s);
        self.poll
            .registry()
            .register(
                &mut sock,
                PUB_TOKEN,
                Interest::READABLE | Interest::WRITABLE,
            )
            .map_err(|e| format!("register: {e}"))?;
        self.publisher = Some(Publisher {
            sock,
            out: Vec::new(),
            out_off: 0,
            inbuf: Vec::new(),
        });
        Ok(())
    }

    fn publish(&mut self, k: usize) -> Result<(), String> {
        self.tally.published = k + 1;
        let data = &self.tally.data[k];
        let p = self.publisher.as_mut().ok_or("no publisher")?;
        p.out.clear();
        p.out_off = 0;
        p.out.extend_from_slice(
            format!(
                "POST /topics/{TOPIC} HTTP/1.1\r\nHost: {}\r\nContent-Type: text/plain\r\n\
                 Content-Length: {}\r\n\r\n",
                self.addr,
                data.len()
            )
            .as_bytes(),
        );
        p.out.extend_from_slice(data);
        flush(&mut p.sock, &p.out, &mut p.out_off).map_err(|e| format!("publisher: {e}"))?;
        Ok(())
    }

    /// Polls `/stats` until `"section":{.."key":want`, keeping the loop turning.
    fn wait_stat(
        &mut self,
        section: &str,
        key: &str,
        want: u64,
        deadline: Instant,
    ) -> Result<(), String> {
        loop {
            let (status, body) = http_request(self.addr, "GET", "/stats", b"")?;
            let got = json_number(&body, section, key);
            if status == 200 && got == Some(want) {
                return Ok(());
            }
            if Instant::now() >= deadline {
                return Err(format!(
                    "/stats {section}.{key} is {got:?} (status {status}), want {want}"
                ));
            }
            self.turn(Duration::from_millis(20))?;
            self.check_errors()?;
        }
    }

    /// Turns the loop until the hub's allocation counters stay still for `QUIET`; false
    /// if that did not happen within `QUIET_DEADLINE`.
    fn wait_quiet(&mut self, counters: &AllocFile) -> Result<bool, String> {
        let end = Instant::now() + QUIET_DEADLINE;
        let mut last = counters.read()?;
        let mut since = Instant::now();
        loop {
            self.turn(Duration::from_millis(2))?;
            let now = Instant::now();
            let c = counters.read()?;
            if c != last {
                last = c;
                since = now;
            } else if now.duration_since(since) >= QUIET {
                return Ok(true);
            }
            if now >= end {
                return Ok(false);
            }
        }
    }

    /// Poll phase: sends every subscriber its next poll.
    fn rearm_polls(&mut self, deadline: Instant) -> Result<(), String> {
        for i in 0..self.subs.len() {
            if self.subs[i].rearm {
                self.subs[i].rearm = false;
                self.send_poll(i)?;
            }
        }
        self.run_until(deadline, |b| {
            b.subs.iter().all(|s| s.out_off == s.out.len())
        })
    }

    fn send_poll(&mut self, i: usize) -> Result<(), String> {
        let s = &mut self.subs[i];
        s.out.clear();
        s.out_off = 0;
        s.out.extend_from_slice(
            format!(
                "GET /topics/{TOPIC}/poll?since={}&timeout=120 HTTP/1.1\r\nHost: {}\r\n\r\n",
                s.seq.last_id, self.addr
            )
            .as_bytes(),
        );
        s.waiting = true;
        s.body = Body::Head;
        flush(&mut s.sock, &s.out, &mut s.out_off).map_err(|e| format!("subscriber {i}: {e}"))?;
        Ok(())
    }

    fn run_until(
        &mut self,
        deadline: Instant,
        done: impl Fn(&Bench) -> bool,
    ) -> Result<(), String> {
        while !done(self) {
            let now = Instant::now();
            if now >= deadline {
                return Err("deadline passed".into());
            }
            self.turn((deadline - now).min(Duration::from_millis(100)))?;
            if self.tally.error_count > 0 {
                return self.check_errors();
            }
        }
        Ok(())
    }

    /// One poll of the loop and the handling of what it reported.
    fn turn(&mut self, timeout: Duration) -> Result<(), String> {
        match self.poll.poll(&mut self.events, Some(timeout)) {
            Ok(()) => {}
            Err(e) if e.kind() == io::ErrorKind::Interrupted => return Ok(()),
            Err(e) => return Err(format!("poll: {e}")),
        }
        let tokens: Vec<(Token, bool)> = self
            .events
            .iter()
            .map(|e| (e.token(), e.is_writable()))
            .collect();
        for (token, writable) in tokens {
            let t = token.0;
            if token == PUB_TOKEN {
                self.publisher_io()?;
            } else if t >= HOOK_BASE {
                self.hook_io(t - HOOK_BASE)?;
            } else if t >= LISTEN_BASE {
                self.accept(t - LISTEN_BASE)?;
            } else if t < self.subs.len() {
                self.sub_io(t, writable);
            }
        }
        Ok(())
    }

    fn accept(&mut self, l: usize) -> Result<(), String> {
        loop {
            match self.listeners[l].accept() {
                Ok((mut sock, _)) => {
                    let idx = self.hooks.len();
                    self.poll
                        .registry()
                        .register(
                            &mut sock,
                            Token(HOOK_BASE + idx),
                            Interest::READABLE | Interest::WRITABLE,
                        )
                        .map_err(|e| format!("register: {e}"))?;
                    self.hooks.push(Some(HookConn {
                        sock,
                        inbuf: Vec::new(),
                        out: Vec::new(),
                        out_off: 0,
                    }));
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Ok(()),
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(format!("webhook accept: {e}")),
            }
        }
    }

    /// A webhook connection: read requests, answer each `204`.
    fn hook_io(&mut self, h: usize) -> Result<(), String> {
        let Some(c) = self.hooks.get_mut(h).and_then(|c| c.as_mut()) else {
            return Ok(());
        };
        let mut eof = false;
        loop {
            match c.sock.read(&mut self.rbuf) {
                Ok(0) => {
                    eof = true;
                    break;
                }
                Ok(k) => c.inbuf.extend_from_slice(&self.rbuf[..k]),
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(_) => {
                    eof = true;
                    break;
                }
            }
        }
        let mut got = Vec::new();
        loop {
            let mut headers = [httparse::EMPTY_HEADER; 32];
            let mut req = httparse::Request::new(&mut headers);
            let head = match req.parse(&c.inbuf) {
                Ok(httparse::Status::Complete(n)) => n,
                Ok(httparse::Status::Partial) if c.inbuf.len() < MAX_MESSAGE => break,
                Ok(httparse::Status::Partial) => return Err("webhook request head too long".into()),
                Err(e) => return Err(format!("bad webhook request: {e}")),
            };
            if req
                .headers
                .iter()
                .any(|h| h.name.eq_ignore_ascii_case("transfer-encoding"))
            {
                return Err("webhook request with Transfer-Encoding (unsupported here)".into());
            }
            let len = req
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
                .unwrap_or(0);
            if len > MAX_MESSAGE {
                return Err("webhook body too long".into());
            }
            if c.inbuf.len() < head + len {
                break;
            }
            let path = req.path.unwrap_or("");
            let endpoint = path
                .strip_prefix("/hook/")
                .and_then(|n| n.parse::<usize>().ok())
                .filter(|&n| n < self.n && req.method == Some("POST"));
            let body = &c.inbuf[head..head + len];
            match (endpoint, json_events(body)) {
                (Some(e), Ok(evs)) if evs.len() == 1 => got.push((e, evs[0].0, evs[0].1.to_vec())),
                _ => got.push((
                    usize::MAX,
                    0,
                    format!("{:?} {path}: {}", req.method, String::from_utf8_lossy(body))
                        .into_bytes(),
                )),
            }
            c.inbuf.drain(..head + len);
            if c.out_off == c.out.len() {
                c.out.clear();
                c.out_off = 0;
            }
            c.out.extend_from_slice(b"HTTP/1.1 204 No Content\r\n\r\n");
        }
        let flushed = flush(&mut c.sock, &c.out, &mut c.out_off);
        if eof || flushed.is_err() {
            if let Some(mut c) = self.hooks[h].take() {
                let _ = self.poll.registry().deregister(&mut c.sock);
            }
        }
        for (endpoint, id, data) in got {
            if endpoint == usize::MAX {
                self.tally.error(format!(
                    "unexpected webhook request: {}",
                    String::from_utf8_lossy(&data)
                ));
            } else {
                self.tally.hook_event(endpoint, id, &data);
            }
        }
        Ok(())
    }

    fn publisher_io(&mut self) -> Result<(), String> {
        let p = self.publisher.as_mut().ok_or("no publisher")?;
        flush(&mut p.sock, &p.out, &mut p.out_off).map_err(|e| format!("publisher: {e}"))?;
        loop {
            match p.sock.read(&mut self.rbuf) {
                Ok(0) => return Err("the hub closed the publisher's connection".into()),
                Ok(k) => p.inbuf.extend_from_slice(&self.rbuf[..k]),
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(format!("publisher: {e}")),
            }
        }
        loop {
            let mut headers = [httparse::EMPTY_HEADER; 32];
            let mut resp = httparse::Response::new(&mut headers);
            let head = match resp.parse(&p.inbuf) {
                Ok(httparse::Status::Complete(n)) => n,
                Ok(httparse::Status::Partial) => return Ok(()),
                Err(e) => return Err(format!("publisher: bad response: {e}")),
            };
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
                .ok_or("publisher: response without Content-Length")?;
            if p.inbuf.len() < head + len {
                return Ok(());
            }
            let body = &p.inbuf[head..head + len];
            if resp.code != Some(201) {
                return Err(format!(
                    "publish answered {:?}: {}",
                    resp.code,
                    String::from_utf8_lossy(body).trim()
                ));
            }
            let id = find(body, b"\"id\":")
                .and_then(|i| leading_number(&body[i + 5..]))
                .map(|(n, _)| n)
                .ok_or_else(|| {
                    format!(
                        "publish answer without id: {}",
                        String::from_utf8_lossy(body)
                    )
                })?;
            self.pub_ids.push(id);
            self.publisher_answered += 1;
            p.inbuf.drain(..head + len);
        }
    }

    fn sub_io(&mut self, i: usize, writable: bool) {
        if let Err(e) = self.sub_io_inner(i, writable) {
            self.tally.error(format!("subscriber {i}: {e}"));
        }
    }

    fn sub_io_inner(&mut self, i: usize, writable: bool) -> Result<(), String> {
        let t = self.transport;
        let s = &mut self.subs[i];
        if !s.connected {
            if let Some(e) = s.sock.take_error().map_err(|e| e.to_string())? {
                return Err(format!("connect: {e}"));
            }
            match s.sock.peer_addr() {
                Ok(_) => {}
                Err(e) if e.kind() == io::ErrorKind::NotConnected => return Ok(()),
                Err(e) => return Err(format!("connect: {e}")),
            }
            s.connected = true;
            let path = match t {
                Transport::Ws | Transport::WsDeflate => format!("/topics/{TOPIC}/ws"),
                Transport::Sse => format!("/topics/{TOPIC}/sse"),
                _ => String::new(),
            };
            match t {
                Transport::Ws | Transport::WsDeflate => s.out.extend_from_slice(
                    format!(
                        "GET {path} HTTP/1.1\r\nHost: {}\r\nUpgrade: websocket\r\n\
                         Connection: Upgrade\r\nSec-WebSocket-Key: {}\r\n\
                         Sec-WebSocket-Version: 13\r\n{}\r\n",
                        self.addr,
                        self.ws_key,
                        if t == Transport::WsDeflate {
                            "Sec-WebSocket-Extensions: permessage-deflate; \
                             client_max_window_bits\r\n"
                        } else {
                            ""
                        }
                    )
                    .as_bytes(),
                ),
                Transport::Sse => s.out.extend_from_slice(
                    format!(
                        "GET {path} HTTP/1.1\r\nHost: {}\r\nAccept: text/event-stream\r\n\r\n",
                        self.addr
                    )
                    .as_bytes(),
                ),
                _ => {}
            }
            if t == Transport::Poll {
                self.send_poll(i)?;
                self.subs[i].ready = true;
                self.ready += 1;
                return Ok(());
            }
        }
        let s = &mut self.subs[i];
        if writable || s.out_off < s.out.len() {
            flush(&mut s.sock, &s.out, &mut s.out_off).map_err(|e| format!("write: {e}"))?;
        }
        loop {
            let k = match s.sock.read(&mut self.rbuf) {
                Ok(0) => return Err("the hub closed the connection".into()),
                Ok(k) => k,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Ok(()),
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => return Err(format!("read: {e}")),
            };
            let became_ready = feed(t, i, s, &self.rbuf[..k], &self.ws_accept, &mut self.tally)?;
            if became_ready {
                self.ready += 1;
            }
        }
    }
}

/// Creates a nonblocking socket bound to `src` (port chosen at connect time) and starts
/// connecting it to `dst`.
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

/// Writes `out[*off..]` until done or the socket is full.
fn flush(sock: &mut TcpStream, out: &[u8], off: &mut usize) -> io::Result<()> {
    while *off < out.len() {
        match sock.write(&out[*off..]) {
            Ok(0) => return Err(io::ErrorKind::WriteZero.into()),
            Ok(k) => *off += k,
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Ok(()),
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(())
}

/// Feeds bytes a subscriber read; true when it just became ready (head accepted).
fn feed(
    t: Transport,
    i: usize,
    s: &mut Sub,
    bytes: &[u8],
    ws_accept: &str,
    tally: &mut Tally,
) -> Result<bool, String> {
    let mut became_ready = false;
    let mut input: &[u8] = bytes;
    let owned;
    if let Body::Head = s.body {
        s.inbuf.extend_from_slice(bytes);
        let mut headers = [httparse::EMPTY_HEADER; 32];
        let mut resp = httparse::Response::new(&mut headers);
        let head = match resp.parse(&s.inbuf) {
            Ok(httparse::Status::Complete(n)) => n,
            Ok(httparse::Status::Partial) if s.inbuf.len() < MAX_MESSAGE => return Ok(false),
            Ok(httparse::Status::Partial) => return Err("response head too long".into()),
            Err(e) => return Err(format!("bad response head: {e}")),
        };
        let header = |name: &str| {
            resp.headers
                .iter()
                .find(|h| h.name.eq_ignore_ascii_case(name))
                .map(|h| String::from_utf8_lossy(h.value).trim().to_string())
        };
        let want = if t.is_ws() { 101 } else { 200 };
        if resp.code != Some(want) {
            return Err(format!("status {:?}, want {want}", resp.code));
        }
        let chunked = header("transfer-encoding")
            .is_some_and(|v| v.to_ascii_lowercase().ends_with("chunked"));
        s.body = match t {
            Transport::Ws | Transport::WsDeflate => {
                if header("sec-websocket-accept").as_deref() != Some(ws_accept) {
                    return Err("wrong or missing Sec-WebSocket-Accept".into());
                }
                check_extensions(t, header("sec-websocket-extensions").as_deref())?;
                Body::Ws
            }
            _ if chunked => Body::Chunked(Chunked::default()),
            Transport::Sse => Body::Raw,
            _ => Body::Length(
                header("content-length")
                    .and_then(|v| v.parse().ok())
                    .ok_or("a poll answer with neither Content-Length nor chunked")?,
            ),
        };
        if t == Transport::Poll
            && header("connection").is_some_and(|v| v.to_ascii_lowercase().contains("close"))
        {
            return Err("a poll answer with Connection: close".into());
        }
        if t != Transport::Poll && !s.ready {
            s.ready = true;
            became_ready = true;
        }
        owned = s.inbuf.split_off(head);
        s.inbuf.clear();
        input = &owned;
    }
    match &mut s.body {
        Body::Head => unreachable!("set above"),
        Body::Ws => {
            s.inbuf.extend_from_slice(input);
            let mut pos = 0;
            let mut pong = Vec::new();
            let deflate = t == Transport::WsDeflate;
            while let Some((op, fin, hdr, len)) = ws_frame_header(&s.inbuf[pos..], deflate)? {
                let rsv1 = s.inbuf[pos] & 0x40 != 0;
                let payload = &s.inbuf[pos + hdr..pos + hdr + len];
                match (op, fin) {
                    (1, true) => tally.ws_message(i, &mut s.seq, rsv1, payload, hdr + len),
                    (9, true) => pong.push(payload.to_vec()),
                    (10, true) => {}
                    (8, _) => {
                        return Err(format!(
                            "the hub closed the WebSocket: {:?}",
                            String::from_utf8_lossy(payload)
                        ))
                    }
                    _ => return Err(format!("unexpected frame: opcode {op}, fin {fin}")),
                }
                pos += hdr + len;
            }
            s.inbuf.drain(..pos);
            for p in pong {
                if s.out_off == s.out.len() {
                    s.out.clear();
                    s.out_off = 0;
                }
                s.out.push(0x8a);
                s.out.push(0x80 | p.len() as u8);
                s.out.extend_from_slice(&[0, 0, 0, 0]); // the zero mask: payload as is
                s.out.extend_from_slice(&p);
                flush(&mut s.sock, &s.out, &mut s.out_off).map_err(|e| format!("pong: {e}"))?;
            }
        }
        Body::Chunked(dec) => {
            let used = dec.feed(input, &mut s.text)?;
            let done = dec.state == ChunkState::Done;
            if t == Transport::Sse {
                if done {
                    return Err("the SSE stream ended".into());
                }
                sse_lines(i, &mut s.text, &mut s.sse, &mut s.seq, tally);
            } else if done {
                if used < input.len() {
                    return Err("bytes after a poll answer".into());
                }
                poll_answer(i, s, tally)?;
            }
        }
        Body::Length(left) => {
            if input.len() > *left {
                return Err("bytes after a poll answer".into());
            }
            s.text.extend_from_slice(input);
            *left -= input.len();
            if *left == 0 {
                poll_answer(i, s, tally)?;
            }
        }
        Body::Raw => {
            s.text.extend_from_slice(input);
            sse_lines(i, &mut s.text, &mut s.sse, &mut s.seq, tally);
        }
    }
    Ok(became_ready)
}

/// What the 101 must say about extensions: nothing to a plain WebSocket; to a
/// permessage-deflate offer, permessage-deflate without context takeover either way (the
/// hub's default: what lets every subscriber share one compressed frame).
fn check_extensions(t: Transport, ext: Option<&str>) -> Result<(), String> {
    match (t, ext) {
        (Transport::WsDeflate, Some(e)) => {
            let params: Vec<String> = e
                .split(';')
                .map(|p| p.trim().to_ascii_lowercase())
                .collect();
            let has = |p: &str| params.iter().any(|x| x == p);
            if params.first().map(String::as_str) == Some("permessage-deflate")
                && has("server_no_context_takeover")
                && has("client_no_context_takeover")
            {
                Ok(())
            } else {
                Err(format!("permessage-deflate answered as {e:?}"))
            }
        }
        (Transport::WsDeflate, None) => Err("permessage-deflate was not accepted".into()),
        (_, Some(e)) => Err(format!("an extension we did not offer: {e:?}")),
        (_, None) => Ok(()),
    }
}

/// The opcode, FIN, header length and payload length of the complete server frame at the
/// start of `b`, if it is all there. RSV1 is allowed on a data frame with `deflate` (a
/// compressed message); any other RSV bit is an error.
fn ws_frame_header(b: &[u8], deflate: bool) -> Result<Option<(u8, bool, usize, usize)>, String> {
    if b.len() < 2 {
        return Ok(None);
    }
    if b[1] & 0x80 != 0 {
        return Err("a masked frame from the server".into());
    }
    let allowed = if deflate && b[0] & 0x08 == 0 { 0x40 } else { 0 };
    if b[0] & 0x70 & !allowed != 0 {
        return Err("RSV bits set".into());
    }
    let (hdr, len) = match b[1] & 0x7f {
        126 if b.len() >= 4 => (4, u16::from_be_bytes([b[2], b[3]]) as usize),
        127 if b.len() >= 10 => {
            let len = u64::from_be_bytes(b[2..10].try_into().expect("8 bytes"));
            (10, usize::try_from(len).unwrap_or(usize::MAX))
        }
        126 | 127 => return Ok(None),
        l => (2, l as usize),
    };
    if len > MAX_MESSAGE {
        return Err(format!("a {len}-byte frame"));
    }
    if b.len() < hdr + len {
        return Ok(None);
    }
    Ok(Some((b[0] & 0x0f, b[0] & 0x80 != 0, hdr, len)))
}

/// Parses the complete SSE lines in `s.text`, dispatching events on blank lines.
fn sse_lines(i: usize, text: &mut Vec<u8>, ev: &mut SseEvent, seq: &mut Seq, tally: &mut Tally) {
    let mut pos = 0;
    while let Some(nl) = text[pos..].iter().position(|&c| c == b'\n') {
        let mut line = &text[pos..pos + nl];
        pos += nl + 1;
        if let Some(l) = line.strip_suffix(b"\r") {
            line = l;
        }
        if line.is_empty() {
            if ev.has_data {
                if ev.named.is_some() {
                    tally.error(format!(
                        "subscriber {i}: an SSE event named {:?}",
                        String::from_utf8_lossy(ev.named.as_deref().unwrap_or_default())
                    ));
                } else if let Some(id) = ev.id {
                    tally.sub_event(i, seq, id, &ev.data);
                } else {
                    tally.error(format!("subscriber {i}: an SSE event without id"));
                }
            }
            ev.id = None;
            ev.named = None;
            ev.has_data = false;
            ev.data.clear();
            continue;
        }
        if line[0] == b':' {
            continue; // a comment (heartbeat)
        }
        let (field, value) = match line.iter().position(|&c| c == b':') {
            Some(c) => {
                let v = &line[c + 1..];
                (&line[..c], v.strip_prefix(b" ").unwrap_or(v))
            }
            None => (line, &b""[..]),
        };
        match field {
            b"id" => ev.id = leading_number(value).map(|(n, _)| n),
            b"data" => {
                if ev.has_data {
                    ev.data.push(b'\n');
                }
                ev.data.extend_from_slice(value);
                ev.has_data = true;
            }
            b"event" => ev.named = Some(value.to_vec()),
            _ => {} // retry: and unknown fields
        }
    }
    text.drain(..pos);
}

/// A whole poll answer is in `s.text`.
fn poll_answer(i: usize, s: &mut Sub, tally: &mut Tally) -> Result<(), String> {
    if find(&s.text, b"\"gap\":true").is_some() {
        return Err(format!(
            "a poll answer with a gap: {}",
            String::from_utf8_lossy(&s.text)
        ));
    }
    let evs = json_events(&s.text)?;
    if evs.is_empty() {
        // Its 120 s ran out: nothing here waits that long between publishes.
        return Err("a poll was answered with no events".into());
    }
    for (id, data) in evs {
        tally.sub_event(i, &mut s.seq, id, &data);
    }
    s.text.clear();
    s.waiting = false;
    s.body = Body::Head;
    s.rearm = true;
    Ok(())
}

/// `--self-test`: the decoders and the checks against hand-made input, split every way.
fn self_test() {
    // Chunked, fed one byte at a time and whole.
    let wire = b"5;ext=1\r\nhello\r\n1\r\n \r\nA\r\n0123456789\r\n0\r\nX-T: 1\r\n\r\nrest";
    for step in [1, 2, 3, 7, wire.len()] {
        let mut dec = Chunked::default();
        let mut out = Vec::new();
        let mut used = 0;
        for piece in wire.chunks(step) {
            if dec.state == ChunkState::Done {
                break;
            }
            used += dec.feed(piece, &mut out).expect("valid chunked");
        }
        assert!(dec.state == ChunkState::Done, "step {step}");
        assert_eq!(out, b"hello 0123456789", "step {step}");
        assert_eq!(&wire[used..], b"rest", "step {step}");
    }
    assert!(Chunked::default().feed(b"zz\r\n", &mut Vec::new()).is_err());

    // JSON events: one WebSocket message, a poll page, a webhook body.
    let page = br#"{"events":[{"id":7,"event":null,"data":"a"},{"id":8,"event":"x","data":"b"}],"next":8,"gap":false}"#;
    let evs = json_events(page).expect("page");
    assert_eq!(
        evs,
        vec![(7, Cow::Borrowed(&b"a"[..])), (8, Cow::Borrowed(&b"b"[..]))]
    );
    let hook = br#"{"type":"message","timestamp":"2026-01-01T00:00:00Z","data":{"topic":"fanout","id":3,"event":null,"data":"fanout-000001-xx"}}"#;
    assert_eq!(
        json_events(hook).expect("hook"),
        vec![(3, Cow::Borrowed(&b"fanout-000001-xx"[..]))]
    );
    assert_eq!(
        json_events(br#"{"events":[],"next":0,"gap":false}"#).expect("empty"),
        vec![]
    );
    assert_eq!(
        json_number(
            br#"{"connections":{"http":1,"parked":12}}"#,
            "connections",
            "parked"
        ),
        Some(12)
    );
    // Escaped data (a JSON body carried as a string) comes back as published.
    let body = quotes::quotes(5, 300);
    let ev = quotes::event(99, &body);
    let evs = json_events(&ev).expect("escaped");
    assert_eq!(evs.len(), 1);
    assert_eq!((evs[0].0, &evs[0].1[..]), (99, &body[..]));
    assert_eq!(
        json_unescape(br#"a\"b\\c\/\n\u00e9"#).expect("escapes"),
        "a\"b\\c/\n\u{e9}".as_bytes()
    );
    assert!(json_unescape(b"x\\").is_err());
    assert_eq!(data_index(&event_data(42, 64)), Some(42));
    assert_eq!(event_data(3, 64).len(), 64);

    // WebSocket frame headers: 7-bit and 16-bit lengths, partial frames, a masked frame.
    assert_eq!(
        ws_frame_header(&[0x81, 3, b'a', b'b', b'c'], false).expect("ok"),
        Some((1, true, 2, 3))
    );
    assert_eq!(ws_frame_header(&[0x81, 3, b'a'], false).expect("ok"), None);
    let mut long = vec![0x81, 126, 1, 0];
    long.resize(4 + 256, b'x');
    assert_eq!(
        ws_frame_header(&long, false).expect("ok"),
        Some((1, true, 4, 256))
    );
    assert_eq!(ws_frame_header(&long[..100], false).expect("ok"), None);
    assert!(ws_frame_header(&[0x81, 0x83, 0, 0, 0, 0], false).is_err());
    // RSV1: only on a data frame and only with permessage-deflate; RSV2/3 never.
    assert!(ws_frame_header(&[0xc1, 1, 0], false).is_err());
    assert_eq!(
        ws_frame_header(&[0xc1, 1, 0], true).expect("ok"),
        Some((1, true, 2, 1))
    );
    assert!(ws_frame_header(&[0xc9, 0], true).is_err());
    assert!(ws_frame_header(&[0xa1, 1, 0], true).is_err());
    assert!(check_extensions(Transport::Ws, None).is_ok());
    assert!(check_extensions(Transport::Ws, Some("permessage-deflate")).is_err());
    assert!(check_extensions(
        Transport::WsDeflate,
        Some("permessage-deflate; server_no_context_takeover; client_no_context_takeover")
    )
    .is_ok());
    assert!(check_extensions(Transport::WsDeflate, Some("permessage-deflate")).is_err());
    assert!(check_extensions(Transport::WsDeflate, None).is_err());

    // Compressed frames: the first of a publish is inflated and checked, equal ones are
    // only compared, a different one is inflated again; a corrupt one is an error.
    let data: Vec<Vec<u8>> = (0..2).map(|k| quotes::quotes(k + 1, 1024)).collect();
    let mut tally = Tally::new(3, data.clone(), false);
    tally.cache_frames = true;
    tally.published = 2;
    let mut d = pushwire::proto::ws::deflate::Deflater::new(15, 6, false);
    let packed: Vec<Vec<u8>> = (0..2)
        .map(|k| {
            let mut o = Vec::new();
            d.compress(&quotes::event(50 + k as u64, &data[k]), &mut o);
            o
        })
        .collect();
    let mut seqs = [Seq::default(); 3];
    for (k, p) in packed.iter().enumerate() {
        for (i, seq) in seqs.iter_mut().enumerate() {
            tally.ws_message(i, seq, true, p, p.len() + 4);
        }
        assert_eq!(tally.delivered[k], 3);
    }
    assert_eq!(tally.error_count, 0, "{:?}", tally.errors);
    assert_eq!(tally.frames_inflated, 2, "one per publish");
    assert_eq!(tally.compressed_frames, 6);
    assert_eq!(tally.ws_bytes[0], 3 * (packed[0].len() as u64 + 4));
    assert!(tally.event_len[0].unwrap() > 1024);
    let mut seq = Seq::default();
    tally.ws_message(0, &mut seq, true, &[0xff, 0xff, 0xff], 5);
    assert_eq!(tally.error_count, 1, "corrupt");

    // SSE: events split anywhere, a heartbeat comment, CRLF lines.
    let data: Vec<Vec<u8>> = (0..3).map(|k| event_data(k, 24)).collect();
    let mut stream: Vec<u8> = Vec::new();
    for (k, d) in data.iter().enumerate() {
        stream.extend_from_slice(format!(": heartbeat\n\nid: {}\r\ndata: ", 10 + k).as_bytes());
        stream.extend_from_slice(d);
        stream.extend_from_slice(b"\n\n");
    }
    for step in [1, 5, stream.len()] {
        let mut tally = Tally::new(1, data.clone(), false);
        tally.published = 3;
        let (mut text, mut ev, mut seq) = (Vec::new(), SseEvent::default(), Seq::default());
        for piece in stream.chunks(step) {
            text.extend_from_slice(piece);
            sse_lines(0, &mut text, &mut ev, &mut seq, &mut tally);
        }
        assert_eq!(tally.error_count, 0, "step {step}: {:?}", tally.errors);
        assert_eq!(
            (seq.got, seq.first_id, seq.last_id),
            (3, 10, 12),
            "step {step}"
        );
        assert_eq!(tally.delivered, vec![1, 1, 1]);
    }

    // The checks: a duplicate, a gap, wrong data, one event too many; webhooks twice.
    let mut tally = Tally::new(2, data.clone(), true);
    tally.published = 2;
    let mut seq = Seq::default();
    tally.sub_event(0, &mut seq, 5, &data[0]);
    tally.sub_event(0, &mut seq, 5, &data[1]);
    assert_eq!(tally.error_count, 1, "duplicate");
    let mut seq = Seq::default();
    tally.sub_event(1, &mut seq, 5, &data[0]);
    tally.sub_event(1, &mut seq, 7, &data[1]);
    assert_eq!(tally.error_count, 2, "gap");
    let mut seq = Seq::default();
    tally.sub_event(1, &mut seq, 5, &data[1]);
    assert_eq!(tally.error_count, 3, "wrong data");
    let mut seq = Seq::default();
    tally.sub_event(1, &mut seq, 5, &data[0]);
    tally.sub_event(1, &mut seq, 6, &data[1]);
    tally.sub_event(1, &mut seq, 7, &data[2]);
    assert_eq!(tally.error_count, 4, "beyond the publishes");
    tally.hook_event(0, 5, &data[0]);
    tally.hook_event(0, 5, &data[0]);
    assert_eq!(tally.error_count, 5, "webhook twice");
    tally.hook_event(1, 9, &data[0]);
    assert_eq!(tally.error_count, 6, "webhook with another id");
    println!("fanout self-test: ok");
}
