//! Output: number formatting, the median of a cell's rounds, and the publishes/s and
//! `/healthz` table with its ratios, scaling and group commit check.

use std::time::Duration;

use crate::load::{Cell, PUB_TOPICS};
use crate::sys::median;
use crate::{Cfg, Mode};

fn f1(v: f64) -> String {
    if v.is_finite() {
        format!("{v:.1}")
    } else {
        "-".into()
    }
}

pub fn f2(v: f64) -> String {
    if v.is_finite() {
        format!("{v:.2}")
    } else {
        "-".into()
    }
}

pub fn opt2(v: Option<f64>) -> String {
    v.map_or("-".into(), f2)
}

fn ratio(a: f64, b: f64) -> String {
    if a.is_finite() && b.is_finite() && b > 0.0 {
        format!("{:.2}", a / b)
    } else {
        "n/a".into()
    }
}

pub fn ms_opt(d: Option<Duration>) -> String {
    d.map_or("-".into(), |d| format!("{:.0}", d.as_secs_f64() * 1e3))
}

pub fn mib(bytes: u64) -> String {
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

pub fn print_load_table(cfg: &Cfg, cells: &[Cell], unsupported: bool) {
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
