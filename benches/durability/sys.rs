//! Readings from outside the hub: CPU time and write syscalls from `/proc/PID`, device
//! flushes from `/sys/dev/block`, the data dir's filesystem (`df -T`) and size (`du -sk`,
//! apparent bytes), and the percentile and median helpers.

use std::fs;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::thread::sleep;
use std::time::{Duration, Instant};

/// How long the data dir's size must stay still before it counts as settled, and the
/// longest wait for that.
const SETTLE: Duration = Duration::from_secs(1);
const SETTLE_DEADLINE: Duration = Duration::from_secs(15);

/// User + system CPU time of a process (all its threads), from `/proc/PID/stat`.
pub fn cpu_time(pid: &str) -> Option<Duration> {
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
pub fn write_calls(pid: &str) -> Option<u64> {
    let s = fs::read_to_string(format!("/proc/{pid}/io")).ok()?;
    let line = s.lines().find(|l| l.starts_with("syscw:"))?;
    line.split_whitespace().nth(1)?.parse().ok()
}

/// A `/proc/PID/status` field in kB (VmHWM, VmRSS).
pub fn status_kb(pid: u32, field: &str) -> Option<u64> {
    let s = fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let line = s.lines().find(|l| l.starts_with(field))?;
    line.split_whitespace().nth(1)?.parse().ok()
}

/// The block device a path is on: `/sys/dev/block/M:m` of the whole disk (flushes are
/// counted there, not on partitions).
pub fn block_device(path: &Path) -> Option<PathBuf> {
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
pub fn device_flushes(dev: Option<&Path>) -> Option<u64> {
    let s = fs::read_to_string(dev?.join("stat")).ok()?;
    s.split_whitespace().nth(15)?.parse().ok()
}

/// `df -T PATH`: filesystem type and source.
pub fn filesystem(path: &Path) -> (String, String) {
    let out = Command::new("df").arg("-T").arg(path).output();
    let text = out.map(|o| String::from_utf8_lossy(&o.stdout).into_owned());
    let line = text.ok().and_then(|t| t.lines().nth(1).map(str::to_owned));
    let mut f = line.as_deref().unwrap_or("").split_whitespace();
    let source = f.next().unwrap_or("?").to_owned();
    let ty = f.next().unwrap_or("?").to_owned();
    (ty, source)
}

/// `du -sk PATH` (kB allocated on disk) and the apparent size (the sum of file lengths).
pub fn dir_size(path: &Path) -> (Option<u64>, u64) {
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

pub fn apparent_bytes(path: &Path) -> u64 {
    let Ok(rd) = fs::read_dir(path) else { return 0 };
    rd.flatten()
        .filter_map(|e| e.metadata().ok())
        .map(|m| if m.is_dir() { 0 } else { m.len() })
        .sum()
}

/// The files of a dir, `name:bytes`, sorted.
pub fn listing(path: &Path) -> String {
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
pub fn wait_settled(path: &Path) -> Duration {
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

pub fn percentile(sorted: &[u64], q: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    let i = ((q * sorted.len() as f64).ceil() as usize).clamp(1, sorted.len()) - 1;
    sorted[i] as f64
}

/// The median (the mean of the middle two for an even count).
pub fn median(v: &mut [f64]) -> f64 {
    v.sort_by(|a, b| a.total_cmp(b));
    match v.len() {
        0 => f64::NAN,
        n if n % 2 == 1 => v[n / 2],
        n => (v[n / 2 - 1] + v[n / 2]) / 2.0,
    }
}
