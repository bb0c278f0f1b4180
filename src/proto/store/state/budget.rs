//! The total history budget of a recovered state, kept as
//! [`Topics`](crate::proto::topic::Topics) keeps it: an index of the topics by size, so
//! each eviction costs O(log topics).

use super::Recovered;

impl Recovered {
    /// Takes `topic` out of the total and the size index, before its history changes.
    pub(super) fn unindex(&mut self, topic: &str) {
        if let Some(t) = self.topics.get(topic) {
            self.total_bytes -= t.bytes;
            if !t.events.is_empty() {
                self.by_size.remove(&(t.bytes, topic.to_owned()));
            }
        }
    }

    /// Counts `topic` (again) in the total and the size index, after its history changed.
    pub(super) fn index(&mut self, topic: String) {
        if let Some(t) = self.topics.get(&topic) {
            self.total_bytes += t.bytes;
            if !t.events.is_empty() {
                self.by_size.insert((t.bytes, topic));
            }
        }
    }

    /// The total budget of [`Topics`](crate::proto::topic::Topics), applied the same way:
    /// while over it, the largest topic keeping events (of two the same size,
    /// the greater name) gives up its oldest event.
    pub(super) fn enforce_total(&mut self) {
        while self.total_bytes > self.limits.max_total_bytes {
            let Some((_, topic)) = self.by_size.pop_last() else {
                return;
            };
            let Some(t) = self.topics.get_mut(&topic) else {
                continue; // unreachable: the index holds existing topics only
            };
            if let Some(old) = t.events.pop_front() {
                t.bytes -= old.bytes();
                self.total_bytes -= old.bytes();
            }
            if !t.events.is_empty() {
                self.by_size.insert((t.bytes, topic));
            }
        }
    }
}
