//! The writer thread: appends the loop's records to the current segment, fsyncs them
//! (grouped: one fsync covers everything that arrived meanwhile), rolls segments, starts
//! compactions, and reports back through the loop's waker. The loop never waits for it.
//!
//! Failure rules. A write that fails (`ENOSPC`, ...) is cut back off the file (`ftruncate`
//! to the last good length), so nothing half-written stays behind; the records of its
//! batch that acknowledge something (an event, a registration) are reported failed, the
//! bookkeeping ones (outbox progress, removals) are kept and written again with the next
//! batch. After a failure every acknowledging record is refused until the loop has
//! seen the failure (`Resume`), so the loop can hand out the refused ids again. A failed
//! `fsync` is fatal: after it the kernel may have dropped dirty pages, so nothing written
//! since the last good fsync can be trusted, and every later write is refused.

use std::fs::File;
use std::io::{self, Write};
use std::path::PathBuf;
use std::sync::mpsc::{Receiver, RecvTimeoutError, Sender};
use std::sync::Arc;
use std::time::{Duration, Instant};

use log::{debug, error, trace, warn};
use mio::Waker;

use super::dir::{self, LogFile};
use crate::config::Fsync;
use crate::driver::Command;
use crate::proto::store::SEGMENT_HEADER;
use crate::proto::topic::HistoryLimits;

/// A segment is sealed and a new one started past this size.
pub(crate) const SEGMENT_MAX: u64 = 64 << 20;
/// No compaction below this much log.
pub(crate) const COMPACT_MIN: u64 = 8 << 20;
/// Bookkeeping bytes kept for the next write after a failure; beyond, the oldest go (the
/// cost: a message delivered again after a restart, which receivers deduplicate).
const RETRY_BUDGET: usize = 16 << 20;
/// `interval` mode: most time between fsyncs.
pub(crate) const SYNC_INTERVAL: Duration = Duration::from_secs(1);

/// A compaction's result: the snapshot's size and the files it replaced.
type Compacted = io::Result<(u64, Vec<LogFile>)>;

/// What the loop sends.
pub(crate) enum ToWriter {
    /// Encoded records, in parts: `(seq, end)` says the bytes up to `end` (from the end of
    /// the part before) are write `seq`. `seq > 0` acknowledges something (the loop holds
    /// it until it hears back); `seq == 0` is bookkeeping. The loop sends one such batch
    /// per round of its events, so the writer wakes and writes once per round.
    Write {
        bytes: Vec<u8>,
        parts: Vec<(u64, usize)>,
    },
    /// The loop saw the last failure: accept acknowledging records again.
    Resume,
    /// Write what is left, fsync, mark a graceful stop (unless data was lost) and end.
    Stop,
}

/// What the writer reports (as [`Command::Stored`]).
#[derive(Debug)]
pub(crate) enum Report {
    /// Every record up to `seq` is written (in the page cache).
    Written(u64),
    /// Every record up to `seq` is on disk.
    Durable(u64),
    /// These acknowledging writes were refused, with why.
    Failed(Vec<u64>, String),
}

pub(crate) struct Writer {
    pub(crate) dir: PathBuf,
    pub(crate) mode: Fsync,
    pub(crate) limits: HistoryLimits,
    pub(crate) max_record: usize,
    pub(crate) next_n: u64,
    /// Log files before the current segment, with sizes.
    pub(crate) files: Vec<(LogFile, u64)>,
    /// The live size at the last compaction (or at start).
    pub(crate) live_base: u64,
    /// Seal segments past this size ([`SEGMENT_MAX`]).
    pub(crate) segment_max: u64,
    /// No compaction below this much log ([`COMPACT_MIN`]).
    pub(crate) compact_min: u64,
    pub(crate) tx: Sender<Command>,
    pub(crate) waker: Arc<Waker>,
}

struct Segment {
    f: LogFile,
    file: File,
    len: u64,
}

/// One batch: the bytes to append, the acknowledging writes in it, its bookkeeping.
#[derive(Default)]
struct Batch {
    bytes: Vec<u8>,
    seqs: Vec<u64>,
    book: Vec<u8>,
}

/// What the writer thread tracks between batches.
struct State {
    /// The segment appended to; `None` after a fatal error.
    seg: Option<Segment>,
    /// Why every acknowledging write is refused for good (a failed fsync).
    fatal: Option<String>,
    /// Why acknowledging writes are refused until the loop's `Resume`.
    rejecting: Option<String>,
    /// Some answered write is not in the log (interval mode's marker stays).
    lost: bool,
    /// Bookkeeping of failed writes, written with the next batch.
    retry: Vec<u8>,
    batch: Batch,
    written_seq: u64,
    synced_seq: u64,
    unsynced: bool,
    last_sync: Instant,
    compacting: Option<Receiver<Compacted>>,
    stop: bool,
}

impl Writer {
    fn report(&self, r: Report) {
        trace!("store: {r:?}");
        if self.tx.send(Command::Stored(r)).is_ok() {
            let _ = self.waker.wake();
        }
    }

    fn new_segment(&mut self) -> io::Result<Segment> {
        let f = LogFile {
            n: self.next_n,
            snap: false,
        };
        self.next_n += 1;
        let file = dir::create(&self.dir, &f, &SEGMENT_HEADER)?;
        file.sync_all()?;
        dir::sync_dir(&self.dir)?;
        debug!("store: new segment {}", f.name());
        Ok(Segment {
            f,
            file,
            len: SEGMENT_HEADER.len() as u64,
        })
    }

    /// The thread's body: wait for work, write it as one batch, fsync when due, roll and
    /// compact when due; at `Stop` (or when the loop is gone) finish and return.
    pub(crate) fn run(mut self, rx: Receiver<ToWriter>) {
        let seg = match self.new_segment() {
            Ok(s) => Some(s),
            Err(e) => {
                error!("store: cannot start a segment: {e}");
                None
            }
        };
        let mut st = State {
            fatal: seg.is_none().then(|| "cannot store: no segment".into()),
            lost: seg.is_none(),
            seg,
            rejecting: None,
            retry: Vec::new(),
            batch: Batch::default(),
            written_seq: 0,
            synced_seq: 0,
            unsynced: false,
            last_sync: Instant::now(),
            compacting: None,
            stop: false,
        };
        // A log recovered at more than twice its live size is compacted at once.
        self.roll_if_due(&mut st);
        while !st.stop {
            let first = self.wait(&st, &rx);
            self.collect(&mut st, first, &rx);
            if self.write(&mut st) {
                self.sync_if_due(&mut st);
            }
            self.compaction_done(&mut st);
            if !st.stop && st.fatal.is_none() {
                self.roll_if_due(&mut st);
            }
        }
        // Stopped: everything above is fsynced. With fsync at an interval, the log now
        // holds every answered write, unless one failed.
        if let Some(rx_c) = st.compacting.take() {
            let _ = rx_c.recv();
        }
        let complete = st.fatal.is_none() && !st.lost && st.retry.is_empty();
        if self.mode == Fsync::Interval && complete {
            if let Err(e) = dir::set_unsynced(&self.dir, false) {
                warn!("store: cannot mark the stop as graceful: {e}");
            }
        }
        debug!("store: writer stopped");
    }

    /// Waits for the next message; wakes without one when an interval fsync is due, or
    /// every second while a compaction runs or bookkeeping waits to be written again.
    fn wait(&self, st: &State, rx: &Receiver<ToWriter>) -> Option<ToWriter> {
        let timeout = if st.unsynced && self.mode == Fsync::Interval {
            Some(SYNC_INTERVAL.saturating_sub(st.last_sync.elapsed()))
        } else if st.compacting.is_some() || !st.retry.is_empty() {
            Some(SYNC_INTERVAL)
        } else {
            None
        };
        let Some(timeout) = timeout else {
            return Some(rx.recv().unwrap_or(ToWriter::Stop));
        };
        match rx.recv_timeout(timeout) {
            Ok(m) => Some(m),
            Err(RecvTimeoutError::Timeout) => None,
            Err(RecvTimeoutError::Disconnected) => Some(ToWriter::Stop),
        }
    }

    /// Gathers `first` and everything already waiting into one batch (group commit):
    /// bookkeeping kept from a failed write first, then the parts in order. While the
    /// writer refuses acknowledging writes, those are reported failed at once.
    fn collect(&self, st: &mut State, first: Option<ToWriter>, rx: &Receiver<ToWriter>) {
        let b = &mut st.batch;
        b.bytes.clear();
        b.bytes.extend_from_slice(&st.retry);
        b.seqs.clear();
        b.book.clear();
        let mut refused = Vec::new();
        let mut next = first;
        while let Some(msg) = next {
            match msg {
                ToWriter::Write { bytes, parts } => {
                    let mut start = 0;
                    for (seq, end) in parts {
                        let part = bytes.get(start..end).unwrap_or_default();
                        start = end;
                        if seq > 0 && (st.rejecting.is_some() || st.fatal.is_some()) {
                            refused.push(seq);
                            continue;
                        }
                        b.bytes.extend_from_slice(part);
                        if seq > 0 {
                            b.seqs.push(seq);
                        } else {
                            b.book.extend_from_slice(part);
                        }
                    }
                }
                ToWriter::Resume => st.rejecting = None,
                ToWriter::Stop => st.stop = true,
            }
            next = rx.try_recv().ok();
        }
        if !refused.is_empty() {
            let why = st.fatal.clone().or_else(|| st.rejecting.clone());
            self.report(Report::Failed(refused, why.unwrap_or_default()));
        }
    }

    /// Appends the batch. On failure the bytes are cut back off the file, the batch's
    /// acknowledging writes are refused and its bookkeeping kept. Returns whether the
    /// segment is still usable.
    fn write(&self, st: &mut State) -> bool {
        let b = &st.batch;
        if b.bytes.is_empty() && b.seqs.is_empty() {
            return st.seg.is_some();
        }
        let Some(s) = st.seg.as_mut() else {
            st.lost = true;
            if !b.seqs.is_empty() {
                let why = st.fatal.clone().unwrap_or_else(|| "cannot store".into());
                self.report(Report::Failed(b.seqs.clone(), why));
            }
            return false;
        };
        match s.file.write_all(&b.bytes) {
            Ok(()) => {
                trace!(
                    "store: appended {} bytes ({} acknowledging writes) to {} at {}",
                    b.bytes.len(),
                    b.seqs.len(),
                    s.f.name(),
                    s.len
                );
                s.len += b.bytes.len() as u64;
                st.retry.clear();
                st.unsynced = true;
                if let Some(&seq) = b.seqs.last() {
                    st.written_seq = seq;
                    // Only interval mode acts on it (always mode waits for the fsync,
                    // reported right after): no second wake-up per batch.
                    if self.mode == Fsync::Interval {
                        self.report(Report::Written(seq));
                    }
                }
                true
            }
            Err(e) => {
                let why = format!("cannot store: {e}");
                warn!("store: write of {} bytes failed: {e}", b.bytes.len());
                st.lost = true;
                if let Err(e2) = s.file.set_len(s.len) {
                    error!("store: cannot cut back a failed write: {e2}; refusing writes");
                    st.fatal = Some(format!("cannot store: {e2}"));
                }
                st.retry.extend_from_slice(&b.book);
                if st.retry.len() > RETRY_BUDGET {
                    warn!(
                        "store: dropping {} bytes of webhook bookkeeping",
                        st.retry.len()
                    );
                    st.retry.clear();
                }
                if !b.seqs.is_empty() {
                    self.report(Report::Failed(b.seqs.clone(), why.clone()));
                }
                st.rejecting = Some(why);
                false
            }
        }
    }

    /// Fsyncs when due: after every batch (always), at most once a second and at the stop
    /// (interval).
    fn sync_if_due(&self, st: &mut State) {
        let due = match self.mode {
            Fsync::Always => st.unsynced,
            Fsync::Interval => st.unsynced && (st.stop || st.last_sync.elapsed() >= SYNC_INTERVAL),
        };
        if due {
            self.sync(st);
        }
    }

    /// Fsyncs the segment and reports what is durable now. A failure is fatal.
    fn sync(&self, st: &mut State) {
        let Some(s) = st.seg.as_mut() else { return };
        if let Err(e) = s.file.sync_data() {
            error!("store: fsync failed: {e}; the data dir can no longer be trusted, refusing writes (restart the process)");
            st.fatal = Some(format!("cannot store: fsync failed: {e}"));
            st.lost = true;
            st.seg = None;
            return;
        }
        st.unsynced = false;
        st.last_sync = Instant::now();
        if st.written_seq > st.synced_seq {
            st.synced_seq = st.written_seq;
            self.report(Report::Durable(st.synced_seq));
        }
    }

    /// Takes in a compaction that finished: its snapshot replaced the files it covered.
    fn compaction_done(&mut self, st: &mut State) {
        let Some(rx_c) = &st.compacting else { return };
        match rx_c.try_recv() {
            Ok(Ok((size, covered))) => {
                self.files.retain(|(f, _)| !covered.contains(f));
                let snap = LogFile {
                    n: covered.iter().map(|f| f.n).max().unwrap_or(0),
                    snap: true,
                };
                self.files.insert(0, (snap, size));
                self.live_base = size;
                st.compacting = None;
            }
            Ok(Err(e)) => {
                warn!("store: compaction failed: {e}; the log stays as it is");
                self.live_base = self.total(&st.seg);
                st.compacting = None;
            }
            Err(_) => {}
        }
    }

    /// Seals the segment when it is big, or when a compaction is due (a compaction covers
    /// only sealed files, so appends go on while it runs), and starts the compaction.
    fn roll_if_due(&mut self, st: &mut State) {
        let Some(s) = st.seg.as_ref() else { return };
        let total = self.total(&st.seg);
        let compact = st.compacting.is_none()
            && total > self.compact_min
            && total > 2 * self.live_base.max(SEGMENT_HEADER.len() as u64);
        if s.len <= self.segment_max && !compact {
            return;
        }
        if st.unsynced {
            self.sync(st);
        }
        let Some(s) = st.seg.as_ref() else { return };
        let sealed = (s.f.clone(), s.len);
        match self.new_segment() {
            Ok(new) => {
                self.files.push(sealed);
                st.seg = Some(new);
            }
            Err(e) => {
                warn!("store: cannot start a new segment: {e}; appending to the old one");
                return;
            }
        }
        if compact {
            st.compacting = Some(self.start_compaction());
        }
    }

    fn total(&self, seg: &Option<Segment>) -> u64 {
        self.files.iter().map(|(_, n)| n).sum::<u64>() + seg.as_ref().map_or(0, |s| s.len)
    }

    /// Compacts every sealed file into one snapshot, on a thread of its own.
    fn start_compaction(&self) -> Receiver<Compacted> {
        let (tx, rx) = std::sync::mpsc::channel();
        let covered: Vec<LogFile> = self.files.iter().map(|(f, _)| f.clone()).collect();
        let (dir, limits, max) = (self.dir.clone(), self.limits, self.max_record);
        debug!("store: compacting {} files", covered.len());
        let spawned = std::thread::Builder::new()
            .name("pushwire-compact".into())
            .spawn(move || {
                let started = Instant::now();
                let result = (|| {
                    let state = dir::read_sealed(&dir, &covered, limits, max)?;
                    let n = covered.iter().map(|f| f.n).max().unwrap_or(0);
                    let size = dir::write_snapshot(&dir, n, &state, &covered, max)?;
                    debug!(
                        "store: compacted into {size} bytes in {:?}",
                        started.elapsed()
                    );
                    Ok((size, covered))
                })();
                let _ = tx.send(result);
            });
        if let Err(e) = spawned {
            warn!("store: cannot start a compaction thread: {e}");
        }
        rx
    }
}
