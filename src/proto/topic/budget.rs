//! The total history budget across topics: the running total and an index of the topics
//! keeping events by `(bytes, name)`, so each eviction costs O(log topics).

use std::rc::Rc;

use super::Topics;

impl Topics {
    /// Takes `name` out of the size index and its bytes out of the total, before its
    /// history changes; [`Topics::index`] puts it back.
    pub(super) fn unindex(&mut self, name: &Rc<str>) {
        if let Some(t) = self.topics.get(name) {
            self.total_bytes -= t.bytes;
            if !t.history.is_empty() {
                self.by_size.remove(&(t.bytes, Rc::clone(name)));
            }
        }
    }

    /// Counts `name` (again) in the total and the size index, after its history changed.
    pub(super) fn index(&mut self, name: Rc<str>) {
        if let Some(t) = self.topics.get(&name) {
            self.total_bytes += t.bytes;
            if !t.history.is_empty() {
                self.by_size.insert((t.bytes, name));
            }
        }
    }

    /// The total budget: while over it, the largest topic that keeps events
    /// gives up its oldest one (see "Eviction" in the module docs).
    pub(super) fn enforce_total(&mut self) {
        while self.total_bytes > self.limits.max_total_bytes {
            let Some((_, name)) = self.by_size.pop_last() else {
                return; // every topic keeps only its newest event
            };
            let Some(t) = self.topics.get_mut(&name) else {
                continue; // unreachable: the index holds existing topics only
            };
            if let Some(old) = t.history.pop_front() {
                t.bytes -= old.bytes();
                self.total_bytes -= old.bytes();
                log::trace!(
                    "topic {name}: id {} dropped for the total budget ({} bytes kept in all)",
                    old.id,
                    self.total_bytes
                );
            }
            if !t.history.is_empty() {
                self.by_size.insert((t.bytes, name));
            }
        }
    }

    /// Bytes kept across all topics (as [`TopicEvent::bytes`](super::TopicEvent::bytes) counts them), the figure
    /// [`HistoryLimits::max_total_bytes`](super::HistoryLimits::max_total_bytes) bounds: a gauge for statistics.
    pub fn total_bytes(&self) -> usize {
        self.total_bytes
    }
}
