//! Durability cost (issue 10, section 4): what a data directory costs a hub, measured from
//! outside the release hub binary over loopback, every figure and ratio in one run.
//!
//! ```text
//! cargo build --release --example hub
//! cargo bench -p pushwire-benches --bench durability          # or: bash benches/durability.sh
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
//!
//! Layout: this file holds the settings, `main` and the order of the parts; `hub` starts
//! and kills hubs, `client` is the HTTP/1.1 keep-alive client, `sys` the /proc and /sys
//! readings, `load` parts 1 and 2, `recovery` part 3, `report` the tables.

mod client;
mod hub;
mod load;
mod recovery;
mod report;
mod sys;

use std::fs;
use std::path::{Path, PathBuf};
use std::process::exit;
use std::thread;
use std::time::Instant;

use hub::{hub_knows_data_dir, Ports};
use load::run_cell;
use recovery::recovery;
use report::{f2, opt2, print_load_table};
use sys::{block_device, filesystem};

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
        // This bench crate is the repository's `benches/`: the workspace's target/.
        None => Path::new(env!("CARGO_MANIFEST_DIR"))
            .parent()
            .expect("benches/ is in the repository")
            .join("target"),
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
