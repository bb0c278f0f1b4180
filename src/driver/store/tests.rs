//! The data directory with real files in a temporary directory: opening, locking, modes,
//! recovery from torn and damaged files, snapshots, and the writer thread's reports.

use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::sync::mpsc::{channel, Receiver};
use std::sync::Arc;
use std::time::Duration;

use super::dir::{self, LogFile};
use super::writer::{Report, ToWriter, Writer};
use crate::config::Fsync;
use crate::driver::Command;
use crate::proto::store::{Record, DEFAULT_MAX_RECORD, SEGMENT_HEADER};
use crate::proto::topic::HistoryLimits;

const MAX: usize = DEFAULT_MAX_RECORD;

/// A fresh directory under the system's temp dir, removed on drop.
struct Tmp(PathBuf);

impl Tmp {
    fn new(tag: &str) -> Tmp {
        let n: u64 = rand::random();
        let p = std::env::temp_dir().join(format!("pushwire-store-{tag}-{n:x}"));
        Tmp(p)
    }
    fn path(&self) -> &Path {
        &self.0
    }
}

impl Drop for Tmp {
    fn drop(&mut self) {
        let _ = fs::remove_dir_all(&self.0);
    }
}

fn limits() -> HistoryLimits {
    HistoryLimits {
        max_events: 100,
        max_bytes: 1 << 20,
        max_topics: 10,
        ..HistoryLimits::default()
    }
}

fn event(id: u64, data: &str) -> Record {
    Record::Event {
        topic: "t".into(),
        id,
        name: None,
        published_ms: 1,
        data: data.into(),
        json: false,
    }
}

fn segment(records: &[Record]) -> Vec<u8> {
    let mut out = SEGMENT_HEADER.to_vec();
    for r in records {
        r.encode(&mut out, MAX).unwrap();
    }
    out
}

fn seg_name(n: u64) -> String {
    LogFile { n, snap: false }.name()
}

fn ids(o: &dir::Opened) -> Vec<u64> {
    o.state
        .topics()
        .get("t")
        .map_or(Vec::new(), |t| t.events.iter().map(|e| e.id).collect())
}

fn mode(p: &Path) -> u32 {
    fs::metadata(p).unwrap().permissions().mode() & 0o777
}

#[test]
fn a_new_directory_is_private_and_locked() {
    let tmp = Tmp::new("new");
    let d = tmp.path().join("a/b");
    let o = dir::open(&d, limits(), MAX).unwrap();
    assert_eq!(mode(&d), 0o700);
    assert_eq!(mode(&d.join("lock")), 0o600);
    assert!(o.files.is_empty() && !o.unsynced && !o.damaged);
    assert_eq!(o.next_n, 1);
    // A second opener is refused while the first holds the lock, and gets it after.
    let err = dir::open(&d, limits(), MAX).err().unwrap().to_string();
    assert!(err.contains("in use by another process"), "{err}");
    assert!(err.contains(&d.display().to_string()), "{err}");
    drop(o);
    dir::open(&d, limits(), MAX).unwrap();
}

#[test]
fn a_shared_directory_is_made_private_and_a_file_is_refused() {
    let tmp = Tmp::new("modes");
    fs::create_dir_all(tmp.path()).unwrap();
    fs::set_permissions(tmp.path(), fs::Permissions::from_mode(0o755)).unwrap();
    dir::open(tmp.path(), limits(), MAX).unwrap();
    assert_eq!(mode(tmp.path()), 0o700);
    let file = tmp.path().join("f");
    fs::write(&file, b"x").unwrap();
    let err = dir::open(&file, limits(), MAX).err().unwrap().to_string();
    assert!(err.contains("not a directory"), "{err}");
}

#[test]
fn segments_replay_in_order_and_a_torn_tail_is_cut_off() {
    let tmp = Tmp::new("torn");
    let d = tmp.path();
    fs::create_dir_all(d).unwrap();
    fs::write(
        d.join(seg_name(1)),
        segment(&[event(1, "a"), event(2, "b")]),
    )
    .unwrap();
    let whole = segment(&[event(3, "c"), event(4, "d")]);
    let cut = whole.len() - 3;
    fs::write(d.join(seg_name(2)), &whole[..cut]).unwrap();
    let o = dir::open(d, limits(), MAX).unwrap();
    assert_eq!(ids(&o), [1, 2, 3]);
    assert!(!o.damaged);
    assert_eq!(o.next_n, 3);
    // The torn bytes are gone from the file: appending goes on after the last record.
    let kept = fs::metadata(d.join(seg_name(2))).unwrap().len() as usize;
    assert_eq!(kept, segment(&[event(3, "c")]).len());
    assert_eq!(o.files.last().unwrap().1 as usize, kept);
}

#[test]
fn a_damaged_segment_keeps_what_precedes_the_damage_and_is_moved_aside() {
    let tmp = Tmp::new("damaged");
    let d = tmp.path();
    fs::create_dir_all(d).unwrap();
    let mut bytes = segment(&[event(1, "aaaa"), event(2, "bbbb"), event(3, "cccc")]);
    let second = segment(&[event(1, "aaaa")]).len();
    bytes[second + 12] ^= 0x40; // inside the second record
    fs::write(d.join(seg_name(1)), &bytes).unwrap();
    fs::write(d.join(seg_name(2)), segment(&[event(9, "later")])).unwrap();
    let o = dir::open(d, limits(), MAX).unwrap();
    assert!(o.damaged);
    // Nothing of the damaged record or after it in that file; later files still count.
    assert_eq!(ids(&o), [1, 9]);
    assert!(d.join(format!("{}.damaged", seg_name(1))).exists());
    assert!(!d.join(seg_name(1)).exists());
}

#[test]
fn a_snapshot_replaces_the_files_before_it() {
    let tmp = Tmp::new("snap");
    let d = tmp.path();
    fs::create_dir_all(d).unwrap();
    // Leftovers of a compaction that crashed after its rename: old segments, a .tmp.
    fs::write(d.join(seg_name(1)), segment(&[event(1, "old")])).unwrap();
    fs::write(d.join(seg_name(2)), segment(&[event(2, "old")])).unwrap();
    let mut state = crate::proto::store::Recovered::new(limits());
    state.apply(event(1, "old")).unwrap();
    state.apply(event(2, "old")).unwrap();
    let older = [LogFile { n: 1, snap: false }];
    dir::write_snapshot(d, 2, &state, &older, MAX).unwrap();
    assert!(!d.join(seg_name(1)).exists(), "the files it covers go");
    fs::write(d.join("0000000003.snap.tmp"), b"half").unwrap();
    fs::write(d.join(seg_name(3)), segment(&[event(3, "new")])).unwrap();
    let o = dir::open(d, limits(), MAX).unwrap();
    assert_eq!(ids(&o), [1, 2, 3]);
    assert!(
        !d.join(seg_name(2)).exists(),
        "segment 2 is covered by snapshot 2"
    );
    assert!(!d.join("0000000003.snap.tmp").exists());
    let names: Vec<String> = o.files.iter().map(|(f, _)| f.name()).collect();
    assert_eq!(names, ["0000000002.snap", "0000000003.seg"]);
}

/// A writer thread on `d`, with its reports.
fn writer(
    d: &Path,
    mode: Fsync,
    compact_min: u64,
) -> (
    std::sync::mpsc::Sender<ToWriter>,
    Receiver<Command>,
    std::thread::JoinHandle<()>,
    mio::Poll,
) {
    let poll = mio::Poll::new().unwrap();
    let waker = Arc::new(mio::Waker::new(poll.registry(), mio::Token(0)).unwrap());
    let (tx, rx) = channel();
    let w = Writer {
        dir: d.to_owned(),
        mode,
        limits: limits(),
        max_record: MAX,
        next_n: 1,
        files: Vec::new(),
        live_base: 0,
        segment_max: 1 << 30,
        compact_min,
        tx,
        waker,
    };
    let (wtx, wrx) = channel();
    let t = std::thread::spawn(move || w.run(wrx));
    (wtx, rx, t, poll)
}

fn next_report(rx: &Receiver<Command>) -> Report {
    match rx.recv_timeout(Duration::from_secs(10)) {
        Ok(Command::Stored(r)) => r,
        Ok(_) => panic!("not a store report"),
        Err(e) => panic!("no report: {e}"),
    }
}

/// One write of `seq` in a batch of its own.
fn write(seq: u64, bytes: Vec<u8>) -> ToWriter {
    let parts = vec![(seq, bytes.len())];
    ToWriter::Write { bytes, parts }
}

fn bytes_of(records: &[Record]) -> Vec<u8> {
    let mut out = Vec::new();
    for r in records {
        r.encode(&mut out, MAX).unwrap();
    }
    out
}

#[test]
fn the_writer_reports_written_then_durable_and_the_log_reads_back() {
    let tmp = Tmp::new("writer");
    let d = tmp.path();
    let o = dir::open(d, limits(), MAX).unwrap();
    let (tx, rx, t, _poll) = writer(d, Fsync::Always, 1 << 30);
    tx.send(write(1, bytes_of(&[event(1, "a")]))).unwrap();
    // Bookkeeping (seq 0) is written but never reported.
    tx.send(write(0, bytes_of(&[event(2, "b")]))).unwrap();
    tx.send(write(2, bytes_of(&[event(3, "c")]))).unwrap();
    let mut durable = 0;
    while durable < 2 {
        match next_report(&rx) {
            Report::Written(_) => {}
            Report::Durable(s) => {
                assert!(s > durable, "durable seqs only grow");
                durable = s;
            }
            Report::Failed(s, why) => panic!("failed {s:?}: {why}"),
        }
    }
    tx.send(ToWriter::Stop).unwrap();
    t.join().unwrap();
    drop(o);
    let o = dir::open(d, limits(), MAX).unwrap();
    assert_eq!(ids(&o), [1, 2, 3]);
    assert!(!o.unsynced);
}

#[test]
fn the_writer_compacts_sealed_segments_into_a_snapshot() {
    let tmp = Tmp::new("compact");
    let d = tmp.path();
    let _lock = dir::open(d, limits(), MAX).unwrap();
    let (tx, rx, t, _poll) = writer(d, Fsync::Always, 64 << 10);
    // 3,000 events of 100 bytes in a topic keeping 100: the live data is small.
    let data = "x".repeat(100);
    for id in 1..=3000u64 {
        let bytes = bytes_of(&[event(id, &data)]);
        tx.send(write(id, bytes)).unwrap();
    }
    loop {
        if let Report::Durable(3000) = next_report(&rx) {
            break;
        }
    }
    // Written: 3,000 records of 134 bytes. Live: 100 of them. Compaction runs on its own
    // thread; the log shrinks to about the live data soon after (bounded wait).
    let size = || -> u64 {
        // Files may go between the listing and their metadata: compaction runs meanwhile.
        let files = fs::read_dir(d).unwrap().filter_map(Result::ok);
        files
            .filter_map(|e| e.metadata().ok())
            .map(|m| m.len())
            .sum()
    };
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    while size() > 64 << 10 {
        assert!(
            std::time::Instant::now() < deadline,
            "not compacted: {} bytes",
            size()
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    tx.send(ToWriter::Stop).unwrap();
    t.join().unwrap();
    drop(_lock);
    let o = dir::open(d, limits(), MAX).unwrap();
    assert_eq!(ids(&o), (2901..=3000).collect::<Vec<_>>());
    assert!(o.files.iter().any(|(f, _)| f.snap), "{:?}", o.files);
}

#[test]
fn interval_mode_marks_the_directory_until_a_graceful_stop() {
    let tmp = Tmp::new("interval");
    let d = tmp.path();
    let o = dir::open(d, limits(), MAX).unwrap();
    dir::set_unsynced(d, true).unwrap();
    let (tx, rx, t, _poll) = writer(d, Fsync::Interval, 1 << 30);
    tx.send(write(1, bytes_of(&[event(1, "a")]))).unwrap();
    // Written at once; durable within the interval, without any further input.
    assert!(matches!(next_report(&rx), Report::Written(1)));
    assert!(matches!(next_report(&rx), Report::Durable(1)));
    assert!(d.join(dir::UNSYNCED).exists());
    tx.send(ToWriter::Stop).unwrap();
    t.join().unwrap();
    assert!(
        !d.join(dir::UNSYNCED).exists(),
        "a graceful stop removes the marker"
    );
    drop(o);
}
