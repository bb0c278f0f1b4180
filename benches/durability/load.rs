//! Parts 1 and 2: publish throughput and `/healthz` latency under load. `run_cell` starts a
//! fresh hub (and data dir) for one mode and publisher count, `drive_load` runs the
//! keep-alive publisher threads and the prober against it and measures one cell.

use std::fs;
use std::net::SocketAddr;
use std::path::Path;
use std::sync::atomic::{AtomicU8, Ordering};
use std::sync::{Arc, Barrier};
use std::thread::{self, sleep};
use std::time::{Duration, Instant};

use crate::client::{get_request, post_request, Conn};
use crate::hub::{log_tail, mode_args, start_hub, Hub, Ports, StartError};
use crate::sys::{apparent_bytes, cpu_time, device_flushes, percentile, write_calls};
use crate::{Cfg, Mode};

/// Topics the publishers spread over.
pub const PUB_TOPICS: usize = 8;

/// Responses counted per publisher thread at most (a bound that a 3 s cell never reaches).
const MAX_PER_THREAD: usize = 2_000_000;
/// Latency samples kept per thread at most.
const MAX_SAMPLES: usize = 1_000_000;

/// Load phases, shared by the publishers and the prober.
const WARMUP: u8 = 0;
const MEASURE: u8 = 1;
const STOP: u8 = 2;

#[derive(Default)]
struct ThreadStats {
    count: u64,
    latencies_ns: Vec<u64>,
    capped: bool,
}

#[derive(Clone)]
pub struct Cell {
    pub mode: Mode,
    pub publishers: usize,
    /// Publishes answered during the measurement.
    pub publishes: u64,
    pub per_sec: f64,
    pub pub_p50_ms: f64,
    pub pub_p99_ms: f64,
    pub health_p50_ms: f64,
    pub health_p99_ms: f64,
    pub health_max_ms: f64,
    pub probes: usize,
    pub hub_cpu: Option<f64>,
    pub bench_cpu: Option<f64>,
    /// The hub's write-family system calls during the measurement.
    pub hub_writes: Option<u64>,
    pub flushes: Option<u64>,
    pub dir_bytes: Option<u64>,
    pub capped: bool,
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

pub fn run_cell(
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
