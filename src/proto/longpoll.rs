//! The table of parked long-poll requests.
//!
//! A long-poll request (`GET /topics/{t}/poll?since=N&timeout=S`) that finds nothing newer
//! than `since` is *parked*: the driver keeps the connection open without answering and
//! records it here under its topic. When an event is published to the topic, the driver
//! [takes](Parked::take_topic) everyone parked on it and answers each from the topic's
//! history. When a parked request times out, or its client disconnects (end of stream
//! counts), the driver [unparks](Parked::unpark) it at once.
//!
//! This table does no I/O and keeps no time: the driver owns the connections and their
//! timers. `K` is the driver's connection key.
//!
//! # Theory of operation
//!
//! Two maps stay in step: `by_topic` holds, per topic, a vector of the parked keys, and
//! `by_key` holds, per key, its topic, its cursor and its index in that vector. Unparking
//! is O(1): `swap_remove` from the topic's vector, then fix the index of the key that moved
//! into the hole. A topic entry is removed as soon as its vector is empty, so the table
//! holds nothing for topics nobody waits on.

use std::collections::HashMap;
use std::hash::Hash;

/// Where one parked request sits.
struct ParkedEntry {
    topic: Box<str>,
    since: u64,
    /// Index in `by_topic[topic]`.
    index: usize,
}

/// Parked long-poll requests, by topic and by connection key.
pub struct Parked<K> {
    by_key: HashMap<K, ParkedEntry>,
    by_topic: HashMap<Box<str>, Vec<K>>,
}

impl<K: Copy + Eq + Hash> Default for Parked<K> {
    fn default() -> Self {
        Self::new()
    }
}

impl<K: Copy + Eq + Hash> Parked<K> {
    /// An empty table.
    pub fn new() -> Self {
        Parked {
            by_key: HashMap::new(),
            by_topic: HashMap::new(),
        }
    }

    /// Parks `key` on `topic`, waiting for events after id `since`. A key that is already
    /// parked is moved (one connection waits for one thing at a time).
    pub fn park(&mut self, topic: &str, key: K, since: u64) {
        self.unpark(key);
        let keys = match self.by_topic.get_mut(topic) {
            Some(keys) => keys,
            None => self.by_topic.entry(topic.into()).or_default(),
        };
        keys.push(key);
        let index = keys.len() - 1;
        self.by_key.insert(
            key,
            ParkedEntry {
                topic: topic.into(),
                since,
                index,
            },
        );
        log::trace!(
            "longpoll: parked on {topic} after {since} ({} parked)",
            self.len()
        );
    }

    /// Removes `key` (timed out or disconnected); returns its topic and cursor, `None` when
    /// it was not parked.
    pub fn unpark(&mut self, key: K) -> Option<(Box<str>, u64)> {
        let slot = self.by_key.remove(&key)?;
        if let Some(keys) = self.by_topic.get_mut(&slot.topic) {
            if slot.index < keys.len() {
                keys.swap_remove(slot.index);
                if let Some(&moved) = keys.get(slot.index) {
                    if let Some(m) = self.by_key.get_mut(&moved) {
                        m.index = slot.index;
                    }
                }
            }
            if keys.is_empty() {
                self.by_topic.remove(&slot.topic);
            }
        }
        Some((slot.topic, slot.since))
    }

    /// Removes and returns everyone parked on `topic`, with their cursors, in no particular
    /// order.
    pub fn take_topic(&mut self, topic: &str) -> Vec<(K, u64)> {
        let keys = self.by_topic.remove(topic).unwrap_or_default();
        let taken: Vec<_> = keys
            .into_iter()
            .filter_map(|k| self.by_key.remove(&k).map(|slot| (k, slot.since)))
            .collect();
        if !taken.is_empty() {
            log::trace!("longpoll: woke {} on {topic}", taken.len());
        }
        taken
    }

    /// Whether `key` is parked.
    pub fn contains(&self, key: K) -> bool {
        self.by_key.contains_key(&key)
    }

    /// The number of parked requests.
    pub fn len(&self) -> usize {
        self.by_key.len()
    }

    /// Whether nobody is parked.
    pub fn is_empty(&self) -> bool {
        self.by_key.is_empty()
    }

    /// Checks that the two maps agree (tests only).
    #[cfg(test)]
    fn check(&self) {
        let mut n = 0;
        for (topic, keys) in &self.by_topic {
            assert!(!keys.is_empty(), "empty topic entry {topic}");
            for (i, k) in keys.iter().enumerate() {
                let slot = &self.by_key[k];
                assert_eq!((&*slot.topic, slot.index), (&**topic, i));
                n += 1;
            }
        }
        assert_eq!(n, self.by_key.len());
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sorted(mut v: Vec<(u32, u64)>) -> Vec<(u32, u64)> {
        v.sort();
        v
    }

    #[test]
    fn park_unpark_take() {
        let mut p = Parked::new();
        assert!(p.is_empty());
        p.park("a", 1u32, 10);
        p.park("a", 2, 20);
        p.park("b", 3, 30);
        p.park("a", 4, 40);
        p.check();
        assert_eq!(p.len(), 4);
        assert!(p.contains(2));

        // Unpark from the middle: key 4 moves into key 1's place.
        assert_eq!(p.unpark(1), Some(("a".into(), 10)));
        p.check();
        assert_eq!(p.unpark(1), None);
        assert!(!p.contains(1));
        assert_eq!(p.len(), 3);

        assert_eq!(sorted(p.take_topic("a")), [(2, 20), (4, 40)]);
        p.check();
        assert_eq!(p.take_topic("a"), []);
        assert_eq!(p.take_topic("nobody"), []);
        assert_eq!(p.unpark(2), None);
        assert_eq!(p.len(), 1);

        assert_eq!(p.unpark(3), Some(("b".into(), 30)));
        p.check();
        assert!(p.is_empty());
        assert!(p.by_topic.is_empty(), "no entry left for empty topics");
    }

    #[test]
    fn parking_again_moves_the_key() {
        let mut p = Parked::new();
        p.park("a", 7u32, 1);
        p.park("a", 8, 1);
        p.park("b", 7, 5);
        p.check();
        assert_eq!(p.len(), 2);
        assert_eq!(p.take_topic("a"), [(8, 1)]);
        assert_eq!(p.take_topic("b"), [(7, 5)]);
        p.park("a", 9, 0);
        p.park("a", 9, 3);
        assert_eq!(p.take_topic("a"), [(9, 3)]);
        p.check();
        assert!(p.is_empty());
    }

    #[test]
    fn many_in_random_order_stay_consistent() {
        let mut p = Parked::new();
        let mut model: HashMap<u32, (String, u64)> = HashMap::new();
        let mut state = 0x9e37_79b9_7f4a_7c15u64;
        let mut rnd = move || {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            state
        };
        for _ in 0..3000 {
            let key = (rnd() % 64) as u32;
            let topic = format!("t{}", rnd() % 5);
            match rnd() % 5 {
                0 | 1 => {
                    let since = rnd() % 100;
                    p.park(&topic, key, since);
                    model.insert(key, (topic, since));
                }
                2 | 3 => {
                    let want = model.remove(&key).map(|(t, s)| (t.into_boxed_str(), s));
                    assert_eq!(p.unpark(key), want);
                }
                _ => {
                    let mut want: Vec<_> = model
                        .iter()
                        .filter(|(_, (t, _))| *t == topic)
                        .map(|(k, (_, s))| (*k, *s))
                        .collect();
                    model.retain(|_, (t, _)| *t != topic);
                    want.sort();
                    assert_eq!(sorted(p.take_topic(&topic)), want);
                }
            }
            p.check();
            assert_eq!(p.len(), model.len());
        }
    }
}
