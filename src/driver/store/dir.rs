//! The data directory on disk: opening and locking it, reading the log back at start
//! (recovery), writing compacted snapshots. Plain blocking file I/O: it runs before the
//! loop starts, or on the writer's threads, never on the loop.
//!
//! Layout (see the README and [`crate::proto::store`] for the record format):
//!
//! ```text
//! DIR/                    0700
//! DIR/lock                0600, exclusively locked (flock) while a process uses DIR
//! DIR/0000000001.seg      segments, replayed in number order
//! DIR/0000000007.snap     a compacted snapshot: replaces every segment numbered <= 7
//! DIR/NAME.damaged        a segment found damaged at start, moved aside
//! DIR/unsynced            while a process runs with fsync at an interval (removed at a
//!                         graceful stop that lost nothing): found at start, it means the
//!                         log may lack answered events, so every topic starts a new id range
//! ```

use std::fs::{self, File, OpenOptions};
use std::io::{self, Write};
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

use log::{debug, info, warn};

use crate::proto::store::{scan_each, Recovered, Tail};
use crate::proto::topic::HistoryLimits;

/// Name of the lock file.
const LOCK: &str = "lock";
/// Name of the marker of a run whose log may lack answered writes.
pub(crate) const UNSYNCED: &str = "unsynced";

/// A file of the log, by number and kind.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub(crate) struct LogFile {
    /// Its number.
    pub(crate) n: u64,
    /// A snapshot (`.snap`) rather than a segment (`.seg`). Sorts after the segment of the
    /// same number, which it replaces.
    pub(crate) snap: bool,
}

impl LogFile {
    pub(crate) fn name(&self) -> String {
        format!("{:010}.{}", self.n, if self.snap { "snap" } else { "seg" })
    }

    fn parse(name: &str) -> Option<LogFile> {
        let (num, ext) = name.split_once('.')?;
        let snap = match ext {
            "seg" => false,
            "snap" => true,
            _ => return None,
        };
        if num.len() != 10 || !num.bytes().all(|b| b.is_ascii_digit()) {
            return None;
        }
        Some(LogFile {
            n: num.parse().ok()?,
            snap,
        })
    }
}

/// An open, locked data directory and what recovery found in it.
pub(crate) struct Opened {
    pub(crate) path: PathBuf,
    /// Held for the life of the process: the lock goes with it.
    pub(crate) lock: File,
    pub(crate) state: Recovered,
    /// The `unsynced` marker was there: the last run may have lost answered writes.
    pub(crate) unsynced: bool,
    /// The number the next segment gets.
    pub(crate) next_n: u64,
    /// The log files kept, oldest first, with their sizes.
    pub(crate) files: Vec<(LogFile, u64)>,
    /// Something was dropped or moved aside: write a snapshot before appending.
    pub(crate) damaged: bool,
}

/// An error about the data directory, naming it.
fn dir_error(path: &Path, what: impl std::fmt::Display) -> io::Error {
    io::Error::other(format!("data dir {}: {what}", path.display()))
}

/// Opens (creating it, mode 0700) and locks the data directory `path`, then reads the log
/// back: the newest snapshot and the segments after it, in order. A torn tail of the
/// newest file is cut off; a damaged file keeps the records before the damage and is moved
/// aside. Every drop is logged.
pub(crate) fn open(path: &Path, limits: HistoryLimits, max_record: usize) -> io::Result<Opened> {
    match fs::metadata(path) {
        Ok(m) if !m.is_dir() => return Err(dir_error(path, "exists and is not a directory")),
        Ok(m) => {
            if m.permissions().mode() & 0o077 != 0 {
                let set = fs::set_permissions(path, fs::Permissions::from_mode(0o700));
                set.map_err(|e| dir_error(path, format!("cannot make it private (0700): {e}")))?;
                info!("data dir {}: mode set to 0700", path.display());
            }
        }
        Err(e) if e.kind() == io::ErrorKind::NotFound => {
            let mut b = fs::DirBuilder::new();
            b.recursive(true).mode(0o700);
            b.create(path)
                .map_err(|e| dir_error(path, format!("cannot create it: {e}")))?;
        }
        Err(e) => return Err(dir_error(path, e)),
    }
    let lock = OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(false)
        .mode(0o600)
        .open(path.join(LOCK))
        .map_err(|e| dir_error(path, format!("cannot open its lock file: {e}")))?;
    match lock.try_lock() {
        Ok(()) => {}
        Err(fs::TryLockError::WouldBlock) => {
            return Err(dir_error(
                path,
                "in use by another process (its lock is held)",
            ))
        }
        Err(fs::TryLockError::Error(e)) => {
            return Err(dir_error(path, format!("cannot lock it: {e}")))
        }
    }

    let mut files = Vec::new();
    for entry in fs::read_dir(path).map_err(|e| dir_error(path, e))? {
        let entry = entry.map_err(|e| dir_error(path, e))?;
        let name = entry.file_name();
        let Some(name) = name.to_str() else { continue };
        if let Some(f) = LogFile::parse(name) {
            files.push(f);
        } else if name.ends_with(".tmp") {
            // A snapshot a crash interrupted before it was renamed into place.
            let _ = fs::remove_file(entry.path());
        }
    }
    files.sort();
    let next_n = files.last().map_or(1, |f| f.n + 1);
    // The newest snapshot replaces everything up to its number: what is older is the
    // leftover of a compaction that crashed before it cleaned up.
    if let Some(snap) = files.iter().rposition(|f| f.snap) {
        for old in files.drain(..snap) {
            debug!("data dir: removing {} (covered by a snapshot)", old.name());
            let _ = fs::remove_file(path.join(old.name()));
        }
    }

    let unsynced = path.join(UNSYNCED).exists();
    let mut state = Recovered::new(limits);
    let mut kept = Vec::new();
    let mut damaged = false;
    let count = files.len();
    for (k, f) in files.into_iter().enumerate() {
        let file_path = path.join(f.name());
        let bytes = fs::read(&file_path)
            .map_err(|e| dir_error(path, format!("cannot read {}: {e}", f.name())))?;
        let size = bytes.len() as u64;
        let mut records = 0usize;
        let (_, tail) = scan_each(&bytes, max_record, |at, record| {
            records += 1;
            if let Err(skip) = state.apply(record) {
                warn!(
                    "data dir: {} at byte {at}: record skipped: {skip}",
                    f.name()
                );
            }
        });
        drop(bytes);
        let newest = k + 1 == count;
        match tail {
            Tail::Clean => kept.push((f, size)),
            Tail::Torn { at, dropped_bytes } if newest => {
                warn!(
                    "data dir: {}: dropped {dropped_bytes} bytes of an unfinished write at byte {at} (kept {records} records)",
                    f.name()
                );
                let file = OpenOptions::new().write(true).open(&file_path);
                file.and_then(|fh| fh.set_len(at as u64).and_then(|()| fh.sync_all()))
                    .map_err(|e| dir_error(path, format!("cannot truncate {}: {e}", f.name())))?;
                kept.push((f, at as u64));
            }
            tail => {
                let (at, why) = match tail {
                    Tail::Corrupt { at, reason } => (at, reason.to_string()),
                    Tail::Torn { at, .. } => (at, "cut short, and not the newest file".into()),
                    Tail::Clean => unreachable!("handled above"),
                };
                let aside = format!("{}.damaged", f.name());
                warn!(
                    "data dir: {} is damaged at byte {at} ({why}): kept the {records} records before it, moved the file to {aside}",
                    f.name()
                );
                fs::rename(&file_path, path.join(&aside))
                    .map_err(|e| dir_error(path, format!("cannot move {} aside: {e}", f.name())))?;
                damaged = true;
            }
        }
    }
    sync_dir(path).map_err(|e| dir_error(path, e))?;
    Ok(Opened {
        path: path.to_owned(),
        lock,
        state,
        unsynced,
        next_n,
        files: kept,
        damaged,
    })
}

/// Creates log file `f` in `dir` (mode 0600, a new file) with `head` written.
pub(crate) fn create(dir: &Path, f: &LogFile, head: &[u8]) -> io::Result<File> {
    // Append mode: after a failed write is cut back off, the next write goes to the new
    // end, not to where the failed one stopped.
    let mut file = OpenOptions::new()
        .append(true)
        .create_new(true)
        .mode(0o600)
        .open(dir.join(f.name()))?;
    file.write_all(head)?;
    Ok(file)
}

/// Makes the directory's entries (files created, renamed, removed) durable.
pub(crate) fn sync_dir(dir: &Path) -> io::Result<()> {
    File::open(dir)?.sync_all()
}

/// Writes a snapshot of `state` as `{n}.snap` (through a `.tmp` file, fsynced, renamed,
/// the directory fsynced), then removes the files it replaces (`older`). Returns its size.
pub(crate) fn write_snapshot(
    dir: &Path,
    n: u64,
    state: &Recovered,
    older: &[LogFile],
    max_record: usize,
) -> io::Result<u64> {
    let mut bytes = Vec::new();
    state
        .compact(&mut bytes, max_record)
        .map_err(|e| io::Error::other(format!("cannot encode the snapshot: {e}")))?;
    let f = LogFile { n, snap: true };
    let tmp = dir.join(format!("{}.tmp", f.name()));
    let _ = fs::remove_file(&tmp);
    let mut file = OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(&tmp)?;
    file.write_all(&bytes)?;
    file.sync_all()?;
    fs::rename(&tmp, dir.join(f.name()))?;
    sync_dir(dir)?;
    for old in older {
        if *old != f {
            let _ = fs::remove_file(dir.join(old.name()));
        }
    }
    sync_dir(dir)?;
    debug!(
        "data dir: wrote snapshot {} ({} bytes)",
        f.name(),
        bytes.len()
    );
    Ok(bytes.len() as u64)
}

/// Reads log files `files` of `dir` (sealed: no writer appends to them) into a fresh state
/// for a snapshot. Fails on any damage: a compaction never drops what it cannot read.
pub(crate) fn read_sealed(
    dir: &Path,
    files: &[LogFile],
    limits: HistoryLimits,
    max_record: usize,
) -> io::Result<Recovered> {
    let mut state = Recovered::new(limits);
    for f in files {
        let bytes = fs::read(dir.join(f.name()))?;
        let (_, tail) = scan_each(&bytes, max_record, |_, record| {
            let _ = state.apply(record);
        });
        if tail != Tail::Clean {
            return Err(io::Error::other(format!("{}: {tail:?}", f.name())));
        }
    }
    Ok(state)
}

/// Creates (`on`) or removes the `unsynced` marker, durably.
pub(crate) fn set_unsynced(dir: &Path, on: bool) -> io::Result<()> {
    let marker = dir.join(UNSYNCED);
    if on {
        let f = OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .mode(0o600)
            .open(marker)?;
        f.sync_all()?;
    } else {
        match fs::remove_file(marker) {
            Err(e) if e.kind() != io::ErrorKind::NotFound => return Err(e),
            _ => {}
        }
    }
    sync_dir(dir)
}
