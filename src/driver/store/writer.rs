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
    /// Encoded records. `seq > 0` acknowledges something (the loop holds it until it hears
    /// back); `seq == 0` is bookkeeping.
    Write { seq: u64, bytes: Vec<u8> },
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

    /// The thread's body.
    pub(crate) fn run(mut self, rx: Receiver<ToWriter>) {
        let mut seg = match self.new_segment() {
            Ok(s) => Some(s),
            Err(e) => {
                error!("store: cannot start a segment: {e}");
                None
            }
        };
        let mut fatal: Option<String> = seg.is_none().then(|| "cannot start a segment".into());
        let mut rejecting: Option<String> = None;
        let mut lost = fatal.is_some();
        let mut retry: Vec<u8> = Vec::new();
        let mut buf: Vec<u8> = Vec::new();
        let mut book: Vec<u8> = Vec::new();
        let mut seqs: Vec<u64> = Vec::new();
        let mut refused: Vec<u64> = Vec::new();
        let mut written_seq = 0u64;
        let mut synced_seq = 0u64;
        let mut unsynced = false;
        let mut last_sync = Instant::now();
        let mut compacting: Option<Receiver<Compacted>> = None;
        let mut stop = false;
        while !stop {
            // Wait for work; in interval mode wake up for the due fsync.
            let first = if unsynced && self.mode == Fsync::Interval {
                let wait = SYNC_INTERVAL.saturating_sub(last_sync.elapsed());
                match rx.recv_timeout(wait) {
                    Ok(m) => Some(m),
                    Err(RecvTimeoutError::Timeout) => None,
                    Err(RecvTimeoutError::Disconnected) => Some(ToWriter::Stop),
                }
            } else if compacting.is_some() || !retry.is_empty() {
                match rx.recv_timeout(SYNC_INTERVAL) {
                    Ok(m) => Some(m),
                    Err(RecvTimeoutError::Timeout) => None,
                    Err(RecvTimeoutError::Disconnected) => Some(ToWriter::Stop),
                }
            } else {
                Some(rx.recv().unwrap_or(ToWriter::Stop))
            };
            // Group: everything that is already waiting goes into this write.
            buf.clear();
            buf.extend_from_slice(&retry);
            seqs.clear();
            refused.clear();
            book.clear();
            let mut next = first;
            while let Some(msg) = next {
                match msg {
                    ToWriter::Write { seq, bytes } => {
                        if seq > 0 && (rejecting.is_some() || fatal.is_some()) {
                            refused.push(seq);
                        } else {
                            buf.extend_from_slice(&bytes);
                            if seq > 0 {
                                seqs.push(seq);
                            } else {
                                book.extend_from_slice(&bytes);
                            }
                        }
                    }
                    ToWriter::Resume => rejecting = None,
                    ToWriter::Stop => stop = true,
                }
                next = rx.try_recv().ok();
            }
            if !refused.is_empty() {
                let why = fatal
                    .clone()
                    .or_else(|| rejecting.clone())
                    .unwrap_or_default();
                self.report(Report::Failed(std::mem::take(&mut refused), why));
            }
            let max_seq = seqs.last().copied();
            if !buf.is_empty() {
                let Some(s) = seg.as_mut() else {
                    lost = true;
                    if !seqs.is_empty() {
                        let why = fatal.clone().unwrap_or_else(|| "cannot store".into());
                        self.report(Report::Failed(seqs.clone(), why));
                    }
                    continue;
                };
                match s.file.write_all(&buf) {
                    Ok(()) => {
                        s.len += buf.len() as u64;
                        retry.clear();
                        unsynced = true;
                        if let Some(seq) = max_seq {
                            written_seq = seq;
                            self.report(Report::Written(seq));
                        }
                    }
                    Err(e) => {
                        let why = format!("cannot store: {e}");
                        warn!("store: write of {} bytes failed: {e}", buf.len());
                        lost = true;
                        if let Err(e2) = s.file.set_len(s.len) {
                            error!("store: cannot cut back a failed write: {e2}; refusing writes");
                            fatal = Some(format!("cannot store: {e2}"));
                        }
                        // Bookkeeping is kept for the next try (bounded); the
                        // acknowledging records are refused.
                        retry.extend_from_slice(&book);
                        if retry.len() > RETRY_BUDGET {
                            warn!(
                                "store: dropping {} bytes of webhook bookkeeping",
                                retry.len()
                            );
                            retry.clear();
                        }
                        if !seqs.is_empty() {
                            self.report(Report::Failed(seqs.clone(), why.clone()));
                        }
                        rejecting = Some(why);
                        continue;
                    }
                }
            }
            let sync_due = match self.mode {
                Fsync::Always => unsynced,
                Fsync::Interval => unsynced && (stop || last_sync.elapsed() >= SYNC_INTERVAL),
            };
            if sync_due {
                if let Some(s) = seg.as_mut() {
                    if let Err(e) = s.file.sync_data() {
                        error!("store: fsync failed: {e}; the data dir can no longer be trusted, refusing writes (restart the process)");
                        fatal = Some(format!("cannot store: fsync failed: {e}"));
                        lost = true;
                        seg = None;
                        continue;
                    }
                }
                unsynced = false;
                last_sync = Instant::now();
                if written_seq > synced_seq {
                    synced_seq = written_seq;
                    self.report(Report::Durable(synced_seq));
                }
            }
            // A compaction that finished: its snapshot replaced the files it covered.
            if let Some(rx_c) = &compacting {
                match rx_c.try_recv() {
                    Ok(Ok((size, covered))) => {
                        self.files.retain(|(f, _)| !covered.contains(f));
                        let snap = LogFile {
                            n: covered.iter().map(|f| f.n).max().unwrap_or(0),
                            snap: true,
                        };
                        self.files.insert(0, (snap, size));
                        self.live_base = size;
                        compacting = None;
                    }
                    Ok(Err(e)) => {
                        warn!("store: compaction failed: {e}; the log stays as it is");
                        self.live_base = self.total(&seg);
                        compacting = None;
                    }
                    Err(_) => {}
                }
            }
            if stop || fatal.is_some() {
                continue;
            }
            // Roll the segment when it is big, or when a compaction is due (it covers only
            // sealed files, so appends go on while it runs).
            let Some(s) = seg.as_ref() else { continue };
            let total = self.total(&seg);
            let compact = compacting.is_none()
                && total > self.compact_min
                && total > 2 * self.live_base.max(SEGMENT_HEADER.len() as u64);
            if s.len > self.segment_max || compact {
                if unsynced {
                    if let Err(e) = s.file.sync_data() {
                        error!("store: fsync failed: {e}; refusing writes");
                        fatal = Some(format!("cannot store: fsync failed: {e}"));
                        seg = None;
                        continue;
                    }
                    unsynced = false;
                    if written_seq > synced_seq {
                        synced_seq = written_seq;
                        self.report(Report::Durable(synced_seq));
                    }
                }
                let sealed = (s.f.clone(), s.len);
                match self.new_segment() {
                    Ok(new) => {
                        self.files.push(sealed);
                        seg = Some(new);
                    }
                    Err(e) => {
                        warn!("store: cannot start a new segment: {e}; appending to the old one");
                        continue;
                    }
                }
                if compact {
                    compacting = Some(self.start_compaction());
                }
            }
        }
        // Stopped: everything above is fsynced. With fsync at an interval, the log now
        // holds every answered write, unless one failed.
        if let Some(rx_c) = compacting.take() {
            let _ = rx_c.recv();
        }
        let complete = fatal.is_none() && !lost && retry.is_empty();
        if self.mode == Fsync::Interval && complete {
            if let Err(e) = dir::set_unsynced(&self.dir, false) {
                warn!("store: cannot mark the stop as graceful: {e}");
            }
        }
        debug!("store: writer stopped");
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
