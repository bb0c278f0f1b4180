//! Opening the data directory at start: reading the log back, starting a new id range
//! after an unclean stop with fsync at an interval, writing a snapshot of what a damaged
//! file kept, starting the writer thread; then installing the recovered state in the core.

use std::collections::{HashMap, VecDeque};
use std::io;
use std::rc::Rc;
use std::sync::mpsc::{channel, Sender};
use std::time::Instant;

use log::{debug, info, warn};

use super::dir;
use super::writer::{self, Writer};
use super::{unix_micros, Store};
use crate::config::{Config, Fsync};
use crate::driver::{Command, Core, SubKey};
use crate::proto::store::{Record, Recovered, DEFAULT_MAX_RECORD, SEGMENT_HEADER};
use crate::proto::topic::first_id;
use crate::proto::webhook::{instant_from_unix_ms, EndpointId, RestoredMessage};

/// Opens the data directory of `config` (if any) and reads it back: the store, and the
/// state to install before the loop starts.
pub(crate) fn open(
    config: &Config,
    tx: Sender<Command>,
    waker: std::sync::Arc<mio::Waker>,
) -> io::Result<Option<(Store, Recovered)>> {
    let Some(path) = config.data_dir.as_deref() else {
        return Ok(None);
    };
    let started = Instant::now();
    let max = DEFAULT_MAX_RECORD;
    let opened = dir::open(path, config.history, max)?;
    let mut files = opened.files;
    let mut next_n = opened.next_n;
    let mut state = opened.state;
    let err = |e: io::Error| io::Error::other(format!("data dir {}: {e}", path.display()));
    let lost_tail = opened.unsynced || opened.damaged;
    let mut ranges = Vec::new();
    if lost_tail {
        // Answered events may be missing: the last run fsynced at an interval and did not
        // stop cleanly, or a damaged file hid what followed the damage. Their ids must
        // never name other events: every topic continues on a new range from the clock,
        // on disk before anything is published.
        let start = first_id(unix_micros());
        let moved: Vec<Record> = (state.topics().iter())
            .filter(|(_, t)| start > t.last_id + 1)
            .map(|(topic, _)| Record::TopicRange {
                topic: topic.clone(),
                last_id: start - 1,
            })
            .collect();
        for r in moved {
            if state.apply(r.clone()).is_ok() {
                ranges.push(r);
            }
        }
        let why = if opened.damaged {
            "a damaged file may have hidden acknowledged events"
        } else {
            "the last run (fsync interval) did not stop cleanly and may have lost its newest events"
        };
        warn!(
            "data dir {}: {why}: {} topics continue from id {start}",
            path.display(),
            ranges.len()
        );
    }
    if opened.damaged {
        // What was kept of a damaged file is only in memory now (ranges included): write
        // it down first.
        let older: Vec<_> = files.iter().map(|(f, _)| f.clone()).collect();
        let size = dir::write_snapshot(path, next_n, &state, &older, max).map_err(err)?;
        let snap = dir::LogFile {
            n: next_n,
            snap: true,
        };
        files = vec![(snap, size)];
        next_n += 1;
    } else if !ranges.is_empty() {
        let mut bytes = SEGMENT_HEADER.to_vec();
        for r in &ranges {
            let _ = r.encode(&mut bytes, max);
        }
        let f = dir::LogFile {
            n: next_n,
            snap: false,
        };
        let file = dir::create(path, &f, &bytes).and_then(|fh| fh.sync_all());
        file.and_then(|()| dir::sync_dir(path)).map_err(err)?;
        files.push((f, bytes.len() as u64));
        next_n += 1;
    }
    dir::set_unsynced(path, config.fsync == Fsync::Interval).map_err(err)?;
    // The base of the compaction rule is the live data, not the files: a log that many
    // restarts left at several times its live size is compacted soon after this start.
    let live = state.live_len() as u64;
    info!(
        "data dir {}: recovered {} topics, {} webhooks, {} outbox entries in {:?}",
        path.display(),
        state.topics().len(),
        state.webhooks().len(),
        state.outbox().count(),
        started.elapsed(),
    );
    let writer = Writer {
        dir: opened.path,
        mode: config.fsync,
        limits: config.history,
        max_record: max,
        next_n,
        files,
        live_base: live,
        segment_max: writer::SEGMENT_MAX,
        compact_min: writer::COMPACT_MIN,
        tx,
        waker,
    };
    let (wtx, wrx) = channel();
    let thread = std::thread::Builder::new()
        .name("pushwire-store".into())
        .spawn(move || writer.run(wrx))?;
    let store = Store {
        tx: wtx,
        thread: Some(thread),
        _lock: opened.lock,
        mode: config.fsync,
        seq: 0,
        pending: VecDeque::new(),
        reserved: HashMap::new(),
        failing: false,
        unwritten: VecDeque::new(),
        unwritten_bytes: 0,
        closing: false,
        batch: Vec::new(),
        parts: Vec::new(),
    };
    Ok(Some((store, state)))
}

impl Core {
    /// Installs what recovery read: topics, registrations, the outbox.
    pub(crate) fn restore(&mut self, mut state: Recovered) {
        let now_us = unix_micros();
        for (name, t) in state.take_topics() {
            let (last_id, first_id) = (t.last_id, t.first_id);
            let events = t.events.into_iter().map(|e| e.into_topic_event());
            // Restored topics live a whole ttl from the restart: their clients may come back.
            let restored = self
                .topics
                .restore_at(&name, events, last_id, first_id, now_us);
            if let Err(e) = restored {
                warn!("data dir: topic {name:?} not restored: {e}");
            }
        }
        for (&id, w) in state.webhooks() {
            let endpoint = EndpointId::from_u64(id);
            let reg = &mut self.hooks.reg;
            match reg.restore(endpoint, &w.topic, &w.url, &w.secret, w.disabled) {
                Ok(()) => {
                    self.subs.subscribe(&w.topic, SubKey::Hook(endpoint), 0);
                }
                Err(e) => warn!("data dir: webhook {id} not restored: {e}"),
            }
        }
        self.hooks.reg.set_next_endpoint_id(state.next_endpoint());
        let now_ms = unix_micros() / 1000;
        let mut restored = 0;
        for entry in state.outbox() {
            let body: Rc<[u8]> = entry.body.as_slice().into();
            let webhook_id: Rc<str> = entry.webhook_id.as_str().into();
            let enqueued = instant_from_unix_ms(entry.enqueued_next_ms, self.now, now_ms);
            for (&endpoint, d) in &entry.messages {
                let msg = RestoredMessage {
                    endpoint: EndpointId::from_u64(endpoint),
                    webhook_id: webhook_id.clone(),
                    body: body.clone(),
                    attempts: d.attempts,
                    next_attempt: instant_from_unix_ms(d.next_attempt_ms, self.now, now_ms),
                    enqueued,
                };
                self.hooks.reg.restore_message(msg, self.now);
                restored += 1;
            }
        }
        debug!("data dir: {restored} webhook messages queued again");
    }
}
