//! Part 3: recovery. Writes the `DURBENCH_TOPICS` x `DURBENCH_EVENTS` dataset with the
//! public sans-IO encoder, checks it with `scan`, then times hub starts (and restarts after
//! kill -9) on copies of it, checks what they serve, and prints the recovery table.

use std::fs::{self, DirBuilder, File, OpenOptions};
use std::io::{self, Write};
use std::net::SocketAddr;
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt, PermissionsExt};
use std::path::Path;
use std::time::{Duration, Instant};

use pushwire::proto::store::{scan, write_header, Record, Tail, DEFAULT_MAX_RECORD};

use crate::client::get;
use crate::hub::{log_tail, start_hub, Ports, StartError};
use crate::report::{mib, ms_opt};
use crate::sys::{cpu_time, dir_size, listing, median, status_kb, wait_settled};
use crate::Cfg;

/// The first id of every topic of the recovery dataset (Unix µs, early December 2025).
const FIRST_ID: u64 = 1_764_620_000_000_000;

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
                json: false,
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

pub fn recovery(cfg: &Cfg, ports: &mut Ports, supported: bool) -> Result<(), String> {
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
