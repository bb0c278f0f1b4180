//! Topic expiry: an index of the topics by last activity, so a sweep costs O(log topics)
//! per topic dropped or asked about.

use std::rc::Rc;
use std::time::Duration;

use super::{micros, Topics};

impl Topics {
    /// Moves the last activity of `name` to `now_us` (never back).
    pub(super) fn touch(&mut self, name: &Rc<str>, now_us: u64) {
        if let Some(t) = self.topics.get_mut(name) {
            if now_us > t.active_us {
                self.by_activity.remove(&(t.active_us, Rc::clone(name)));
                t.active_us = now_us;
                self.by_activity.insert((now_us, Rc::clone(name)));
            }
        }
    }

    /// Removes `topic` and its kept history now, whatever its activity (an application
    /// deleting it); `false` when it does not exist. Its slot under
    /// [`HistoryLimits::max_topics`](super::HistoryLimits::max_topics) is free again and a
    /// publish to it later starts a new log at the clock, as after an expiry.
    pub fn remove(&mut self, topic: &str) -> bool {
        let Some((name, _)) = self.topics.get_key_value(topic) else {
            return false;
        };
        let name = Rc::clone(name);
        self.unindex(&name);
        if let Some(t) = self.topics.remove(&name) {
            self.by_activity.remove(&(t.active_us, Rc::clone(&name)));
        }
        true
    }

    /// Drops every topic idle for `ttl` or longer at `now_us` (Unix microseconds) for
    /// which `live(name)` is false, and returns their names, longest idle first (see
    /// "Expiry" in the module docs). `live` is asked only about the topics due, and a
    /// topic it calls live counts as active at `now_us`. The dropped topics' histories
    /// are freed (subscriber queues may still hold some of their events) and their slots
    /// under [`HistoryLimits::max_topics`](super::HistoryLimits::max_topics) are free again. A zero `ttl` drops nothing.
    /// Costs O(log topics) per topic dropped or asked about.
    pub fn expire(
        &mut self,
        now_us: u64,
        ttl: Duration,
        mut live: impl FnMut(&str) -> bool,
    ) -> Vec<String> {
        let ttl_us = micros(ttl);
        let mut dropped = Vec::new();
        if ttl_us == 0 {
            return dropped;
        }
        let mut kept = Vec::new();
        while let Some((active_us, _)) = self.by_activity.first() {
            if active_us.saturating_add(ttl_us) > now_us {
                break;
            }
            let Some((_, name)) = self.by_activity.pop_first() else {
                break; // unreachable: first() just saw it
            };
            if live(&name) {
                kept.push(name);
                continue;
            }
            self.unindex(&name);
            if let Some(t) = self.topics.remove(&name) {
                log::debug!(
                    "topic {name}: expired after {} s idle ({} events / {} bytes freed)",
                    now_us.saturating_sub(t.active_us) / 1_000_000,
                    t.history.len(),
                    t.bytes
                );
            }
            dropped.push(name.to_string());
        }
        for name in kept {
            if let Some(t) = self.topics.get_mut(&name) {
                t.active_us = t.active_us.max(now_us);
                self.by_activity.insert((t.active_us, name));
            }
        }
        if !dropped.is_empty() && self.topics.capacity() > 4 * self.topics.len().max(64) {
            // After a burst of junk topics: give the table's memory back too.
            self.topics.shrink_to(2 * self.topics.len());
        }
        dropped
    }

    /// When [`Topics::expire`] with this `ttl` will next have a topic to drop or ask about:
    /// the longest idle topic's last activity plus `ttl`, in Unix microseconds (it may be
    /// in the past). `None` when there is no topic or `ttl` is zero. A publish moves it
    /// only later (unless the clock went back), so a timer armed at it after each
    /// `expire` is never late; when it was `None`, arm one after the next publish or
    /// restore.
    pub fn next_expiry(&self, ttl: Duration) -> Option<u64> {
        let ttl_us = micros(ttl);
        if ttl_us == 0 {
            return None;
        }
        let (active_us, _) = self.by_activity.first()?;
        Some(active_us.saturating_add(ttl_us))
    }
}
