//! Keeping one topic in sync with Redis on one node, pure: the per-topic state machine of
//! the backplane. The driver feeds it what Redis said (a subscription confirmed, a live
//! message, a stream read's entries, a link lost) and carries out the [`Step`]s it
//! returns; nothing here does I/O or reads a clock.
//!
//! # Theory of operation
//!
//! ```text
//!  new ──► Subscribing ──(SUBSCRIBE confirmed)──► Reading ──(a complete read)──► Live
//!             ▲                                    ▲   │ full page: read on        │
//!             │ subscriber link lost               │   └───────────────────────────┤
//!             └──────────────────── any state      └──── a live id skips ahead ◄───┘
//! ```
//!
//! * **Subscribing**: `SUBSCRIBE` is on its way. Nothing can be missed yet: the read that
//!   follows the confirmation covers everything published before it.
//! * **Reading**: the channel is subscribed, so every event published from now on arrives
//!   live; a stream read (`XRANGE` after the cursor, or from the stream's start when the
//!   node has nothing of the topic, a page at a time) brings what came before. Live messages meanwhile are
//!   **buffered** (up to [`BUFFER_BYTES`]; past it they are dropped and the stream is read
//!   again, as it holds them too). The read's events pass through the [`Cursor`], then the
//!   buffer does: so every event is delivered once, in id order.
//! * **Live**: each live message passes the cursor: the next id is delivered, an old one
//!   dropped, and an id that skips ahead (a message lost between Redis and this node)
//!   starts a read after the cursor, back in Reading.
//!
//! A read that finds nothing between the cursor and a newer buffered id (the stream was
//! trimmed, or Redis lost its data and the counter restarted from its clock) delivers the
//! newer id anyway: the clients then see the gap by the id rule (the first event they get
//! is not `since + 1`).

use std::collections::VecDeque;

use super::{Announced, Cursor, Offer};

/// The live messages one topic may buffer while its stream is read; past it they are
/// dropped and read from the stream again.
pub const BUFFER_BYTES: usize = 1 << 20;

/// Where a topic's sync is (see the module docs).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SyncState {
    /// `SUBSCRIBE` sent, not yet confirmed.
    Subscribing,
    /// A stream read is wanted or on its way.
    Reading,
    /// In sync: live messages are delivered as they come.
    Live,
}

/// What the driver must do next for the topic.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Step {
    /// Read at most `count` entries of the stream: after `after` (exclusive), or from its
    /// start when `after` is `None`. Answer with
    /// [`TopicSync::on_read`] or [`TopicSync::on_read_failed`].
    Read {
        /// The cursor, if the node has delivered anything of the topic.
        after: Option<u64>,
        /// At most this many entries.
        count: usize,
    },
    /// The topic starts on this node with `oldest`, the stream's oldest entry (or, the
    /// stream being empty when read, the topic's first event, arriving live): the driver
    /// knows whether older ones were trimmed (the stream was as long as its cap) and so
    /// what the topic's first id is (`oldest`, or 1 so that a read from 0 reports the gap).
    Create {
        /// The id of the stream's oldest entry.
        oldest: u64,
    },
    /// Deliver this event: into the local history, to the local subscribers.
    Deliver(Announced),
    /// The topic is in sync: serve the readers that waited for it.
    Live,
}

/// One topic's sync with Redis (see the module docs).
#[derive(Debug)]
pub struct TopicSync {
    state: SyncState,
    cursor: Cursor,
    /// A read is on its way (answered by `on_read` or `on_read_failed`).
    reading: bool,
    /// That read was sent before the subscriber link was lost: its answer may miss what
    /// was published until the new subscription, so it is read again.
    stale: bool,
    buffer: VecDeque<Announced>,
    buffered_bytes: usize,
    /// Live messages were dropped over the budget: read the stream again.
    overflowed: bool,
    /// Entries per read: the history limit.
    page: usize,
}

impl TopicSync {
    /// A topic the node starts to follow, having delivered up to `after` (what its local
    /// history holds, if anything), reading `page` entries at a time. `SUBSCRIBE` the
    /// channel next.
    pub fn new(after: Option<u64>, page: usize) -> TopicSync {
        TopicSync {
            state: SyncState::Subscribing,
            cursor: after.map_or_else(Cursor::new, Cursor::after),
            reading: false,
            stale: false,
            buffer: VecDeque::new(),
            buffered_bytes: 0,
            overflowed: false,
            page: page.max(1),
        }
    }

    /// Where it is.
    pub fn state(&self) -> SyncState {
        self.state
    }

    /// The last id delivered, if any.
    pub fn last(&self) -> Option<u64> {
        self.cursor.last()
    }

    /// Bytes of live messages buffered (within [`BUFFER_BYTES`]).
    pub fn buffered_bytes(&self) -> usize {
        self.buffered_bytes
    }

    fn read(&mut self, out: &mut Vec<Step>) {
        self.state = SyncState::Reading;
        if !self.reading {
            self.reading = true;
            let (after, count) = (self.cursor.last(), self.page);
            out.push(Step::Read { after, count });
        }
    }

    /// Redis confirmed the `SUBSCRIBE`: read what came before.
    pub fn on_subscribed(&mut self, out: &mut Vec<Step>) {
        if self.state == SyncState::Subscribing {
            self.read(out);
        }
    }

    /// The subscriber link was lost: whatever is published now is missed until the
    /// channel is subscribed again (the link does it when it is back), then read.
    pub fn on_link_down(&mut self) {
        self.state = SyncState::Subscribing;
        self.stale = self.reading;
        self.buffer.clear();
        self.buffered_bytes = 0;
        self.overflowed = false;
    }

    /// A live message of the topic.
    pub fn on_message(&mut self, ev: Announced, out: &mut Vec<Step>) {
        match self.state {
            // Not subscribed yet (a message from before a reconnect): the read covers it.
            SyncState::Subscribing => {}
            SyncState::Reading => self.buffer_message(ev),
            SyncState::Live => match self.cursor.offer(ev.id) {
                Offer::Deliver => self.pass(ev, out),
                Offer::Duplicate => {}
                Offer::CatchUp { .. } => {
                    self.buffer_message(ev);
                    self.read(out);
                }
            },
        }
    }

    fn buffer_message(&mut self, ev: Announced) {
        if self.overflowed {
            return;
        }
        let size = ev.data.len() + ev.event.as_ref().map_or(0, String::len) + 32;
        if self.buffered_bytes + size > BUFFER_BYTES {
            // The stream holds them too: read it again once this read is answered.
            self.overflowed = true;
            self.buffer.clear();
            self.buffered_bytes = 0;
            return;
        }
        self.buffered_bytes += size;
        self.buffer.push_back(ev);
    }

    /// The answer to the read: entries in stream (id) order.
    pub fn on_read(&mut self, events: Vec<Announced>, out: &mut Vec<Step>) {
        if !self.reading {
            return;
        }
        self.reading = false;
        if std::mem::take(&mut self.stale) {
            // Sent before the link went down: read again once subscribed.
            if self.state == SyncState::Reading {
                self.read(out);
            }
            return;
        }
        if self.state != SyncState::Reading {
            // The link went down meanwhile: a read follows the new subscription.
            return;
        }
        let full = events.len() >= self.page;
        for ev in events {
            self.pass(ev, out);
        }
        if full || self.overflowed {
            // More in the stream (or dropped from the buffer): read on after the cursor.
            self.overflowed = false;
            if full {
                // What is buffered is in the stream, after what was just read.
                self.buffer.clear();
                self.buffered_bytes = 0;
            }
            self.read(out);
            return;
        }
        // The read reached the stream's end: the buffer follows without a hole, or
        // the hole is in Redis too (see the module docs).
        while let Some(ev) = self.buffer.pop_front() {
            self.pass(ev, out);
        }
        self.buffered_bytes = 0;
        self.state = SyncState::Live;
        out.push(Step::Live);
    }

    /// Delivers `ev` unless the cursor has it already.
    fn pass(&mut self, ev: Announced, out: &mut Vec<Step>) {
        match self.cursor.last() {
            Some(last) if ev.id <= last => return,
            Some(_) => {}
            // The first event this node has of the topic: from the stream's start, or
            // (the stream was empty) the topic's first event, arriving live.
            None => out.push(Step::Create { oldest: ev.id }),
        }
        self.cursor.skip_to(ev.id);
        out.push(Step::Deliver(ev));
    }

    /// The read failed (the command link is down): [`TopicSync::retry`] once it is back.
    pub fn on_read_failed(&mut self) {
        self.reading = false;
        self.stale = false;
    }

    /// The command link is up again: send the read that failed, if one is wanted.
    pub fn retry(&mut self, out: &mut Vec<Step>) {
        if self.state == SyncState::Reading && !self.reading {
            self.read(out);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ev(id: u64) -> Announced {
        Announced {
            id,
            published_ms: 1,
            event: None,
            data: format!("d{id}").into_bytes(),
            json: false,
        }
    }

    fn ids(out: &[Step]) -> Vec<u64> {
        out.iter()
            .filter_map(|s| match s {
                Step::Deliver(e) => Some(e.id),
                _ => None,
            })
            .collect()
    }

    #[test]
    fn a_new_topic_reads_the_stream_then_goes_live() {
        let mut s = TopicSync::new(None, 10);
        let mut out = Vec::new();
        s.on_message(ev(1), &mut out); // before the confirmation: ignored
        assert!(out.is_empty());
        s.on_subscribed(&mut out);
        let read = Step::Read {
            after: None,
            count: 10,
        };
        assert_eq!(out, vec![read]);
        out.clear();
        // Live messages during the read are buffered; one the read also has is dropped.
        s.on_message(ev(7), &mut out);
        s.on_message(ev(8), &mut out);
        assert!(out.is_empty());
        assert_eq!(s.state(), SyncState::Reading);
        s.on_read(vec![ev(5), ev(6), ev(7)], &mut out);
        assert_eq!(out[0], Step::Create { oldest: 5 });
        assert_eq!(ids(&out), vec![5, 6, 7, 8]);
        assert_eq!(out.last(), Some(&Step::Live));
        assert_eq!(s.state(), SyncState::Live);
        assert_eq!(s.buffered_bytes(), 0);
    }

    #[test]
    fn a_full_page_is_read_on() {
        let mut s = TopicSync::new(None, 2);
        let mut out = Vec::new();
        s.on_subscribed(&mut out);
        out.clear();
        s.on_read(vec![ev(9), ev(10)], &mut out);
        assert_eq!(out[0], Step::Create { oldest: 9 });
        // Full page: read on after 10, not live yet.
        let read = Step::Read {
            after: Some(10),
            count: 2,
        };
        assert_eq!(out.last(), Some(&read));
        out.clear();
        s.on_read(vec![], &mut out);
        assert_eq!(out, vec![Step::Live]);
    }

    #[test]
    fn an_empty_stream_goes_live_without_creating_the_topic() {
        let mut s = TopicSync::new(None, 5);
        let mut out = Vec::new();
        s.on_subscribed(&mut out);
        out.clear();
        s.on_read(vec![], &mut out);
        assert_eq!(out, vec![Step::Live]);
        out.clear();
        s.on_message(ev(100), &mut out);
        assert_eq!(out[0], Step::Create { oldest: 100 });
        assert_eq!(ids(&out), vec![100]);
    }

    #[test]
    fn live_messages_pass_the_cursor_in_order_once() {
        let mut s = TopicSync::new(Some(4), 5);
        let mut out = Vec::new();
        s.on_subscribed(&mut out);
        assert_eq!(
            out,
            vec![Step::Read {
                after: Some(4),
                count: 5
            }]
        );
        out.clear();
        s.on_read(vec![ev(5)], &mut out);
        out.clear();
        s.on_message(ev(5), &mut out); // duplicate
        s.on_message(ev(6), &mut out);
        assert_eq!(ids(&out), vec![6]);
        out.clear();
        // 8 skips 7: catch up from the stream, buffering 8 meanwhile.
        s.on_message(ev(8), &mut out);
        assert_eq!(
            out,
            vec![Step::Read {
                after: Some(6),
                count: 5
            }]
        );
        out.clear();
        s.on_message(ev(9), &mut out);
        assert!(out.is_empty());
        s.on_read(vec![ev(7), ev(8)], &mut out);
        assert_eq!(ids(&out), vec![7, 8, 9]);
        assert_eq!(s.last(), Some(9));
    }

    #[test]
    fn a_hole_that_redis_also_lost_is_skipped() {
        // Redis lost its data: the counter restarted from its clock.
        let mut s = TopicSync::new(Some(10), 5);
        let mut out = Vec::new();
        s.on_subscribed(&mut out);
        s.on_read(vec![], &mut out);
        out.clear();
        s.on_message(ev(1_000_000), &mut out);
        s.on_read(vec![], &mut out);
        assert_eq!(ids(&out), vec![1_000_000]);
        assert_eq!(out.last(), Some(&Step::Live));
    }

    #[test]
    fn a_lost_link_subscribes_and_reads_again() {
        let mut s = TopicSync::new(Some(3), 5);
        let mut out = Vec::new();
        s.on_subscribed(&mut out);
        s.on_read(vec![], &mut out);
        out.clear();
        s.on_link_down();
        assert_eq!(s.state(), SyncState::Subscribing);
        s.on_message(ev(4), &mut out);
        assert!(out.is_empty());
        s.on_subscribed(&mut out);
        assert_eq!(
            out,
            vec![Step::Read {
                after: Some(3),
                count: 5
            }]
        );
        out.clear();
        s.on_read(vec![ev(4), ev(5)], &mut out);
        assert_eq!(ids(&out), vec![4, 5]);
    }

    #[test]
    fn a_failed_read_is_retried_once_the_command_link_is_back() {
        let mut s = TopicSync::new(None, 5);
        let mut out = Vec::new();
        s.on_subscribed(&mut out);
        out.clear();
        s.on_read_failed();
        s.retry(&mut out);
        assert_eq!(
            out,
            vec![Step::Read {
                after: None,
                count: 5
            }]
        );
        out.clear();
        s.retry(&mut out); // one on its way already
        assert!(out.is_empty());
        // A read answered after the link went down is ignored.
        s.on_link_down();
        s.on_read(vec![ev(1)], &mut out);
        assert!(out.is_empty());
        s.on_subscribed(&mut out);
        out.clear();
        // One answered after the new subscription is read again (it may miss events).
        s.on_link_down();
        s.on_subscribed(&mut out);
        assert!(out.is_empty(), "the first read is still on its way");
        s.on_read(vec![ev(1)], &mut out);
        assert_eq!(
            out,
            vec![Step::Read {
                after: None,
                count: 5
            }]
        );
    }

    #[test]
    fn a_buffer_over_budget_reads_the_stream_again() {
        let mut s = TopicSync::new(Some(0), 100);
        let mut out = Vec::new();
        s.on_subscribed(&mut out);
        out.clear();
        let big = |id| Announced {
            data: vec![b'x'; BUFFER_BYTES / 2],
            ..ev(id)
        };
        s.on_message(big(1), &mut out);
        s.on_message(big(2), &mut out);
        s.on_message(big(3), &mut out);
        assert!(s.buffered_bytes() <= BUFFER_BYTES);
        s.on_read(vec![], &mut out);
        assert_eq!(
            out,
            vec![Step::Read {
                after: Some(0),
                count: 100
            }]
        );
        out.clear();
        s.on_read(vec![big(1), big(2), big(3)], &mut out);
        assert_eq!(ids(&out), vec![1, 2, 3]);
        assert_eq!(out.last(), Some(&Step::Live));
    }
}
