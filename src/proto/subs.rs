//! The one subscription table: which subscribers each topic has, for every transport.
//!
//! WebSocket connections, SSE streams, parked long polls and webhook endpoints all
//! subscribe here, under a key of the driver's choosing (`K`), with a cursor (the id after
//! which a parked poll waits; 0 for the others). Subscribing and unsubscribing are O(1);
//! dropping a key from all its topics costs O(its topics), so a mass disconnect of N
//! subscribers of one topic costs O(N).
//!
//! # Theory of operation
//!
//! Two maps stay in step. `by_topic` holds, per topic, a vector of entries (key, cursor).
//! `by_key` holds, per key, the topics it is in and its index in each topic's vector.
//! Removing is `swap_remove` from the topic's vector, then fixing the index of the entry
//! that moved into the hole. Nearly every key is in one topic, so a key's topics are kept
//! inline until it has two. A topic's entry is removed as soon as its vector is empty, so
//! the table holds nothing for topics nobody follows. Topic names are shared between the
//! two maps through one thin pointer each.
//!
//! # What a subscriber costs
//!
//! Every subscriber is paid for twice, so both halves are kept small: its topic entry is the
//! key and a cursor (24 bytes for the driver's keys), its key entry the key and one place, a
//! thin topic pointer and a `u32` index (16 bytes, with the rare many-topic list boxed).

use std::borrow::Borrow;
use std::collections::HashMap;
use std::hash::{Hash, Hasher};
use std::rc::Rc;

/// One subscriber of a topic.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Entry<K> {
    /// The subscriber.
    pub key: K,
    /// Its cursor (a parked poll's `since`; 0 for the others).
    pub cursor: u64,
}

/// A topic name shared by both maps: a thin pointer (the name's length lives behind it),
/// hashed and compared as the `str` it holds, so the maps are looked up by `&str`.
#[derive(Debug, Clone)]
struct Name(Rc<Box<str>>);

impl Name {
    fn as_str(&self) -> &str {
        &self.0
    }
}

impl Borrow<str> for Name {
    fn borrow(&self) -> &str {
        self.as_str()
    }
}

impl Hash for Name {
    fn hash<H: Hasher>(&self, h: &mut H) {
        self.as_str().hash(h) // exactly as the `str` (Borrow's contract)
    }
}

impl PartialEq for Name {
    fn eq(&self, other: &Self) -> bool {
        self.as_str() == other.as_str()
    }
}

impl Eq for Name {}

/// Where a key sits in one topic's vector.
#[derive(Debug, Clone)]
struct Place {
    topic: Name,
    index: u32,
}

/// The topics of one key, inline for the common case of one.
#[derive(Debug, Clone)]
enum Places {
    One(Place),
    // Boxed so the common one-topic case sets the size: 16 bytes, not 24.
    #[allow(clippy::box_collection)]
    Many(Box<Vec<Place>>),
}

impl Places {
    fn as_slice(&self) -> &[Place] {
        match self {
            Places::One(p) => std::slice::from_ref(p),
            Places::Many(v) => v,
        }
    }

    fn as_mut_slice(&mut self) -> &mut [Place] {
        match self {
            Places::One(p) => std::slice::from_mut(p),
            Places::Many(v) => v,
        }
    }
}

/// Subscribers by topic and topics by subscriber.
#[derive(Debug)]
pub struct Subscriptions<K> {
    by_topic: HashMap<Name, Vec<Entry<K>>>,
    by_key: HashMap<K, Places>,
}

impl<K: Copy + Eq + Hash> Default for Subscriptions<K> {
    fn default() -> Self {
        Self::new()
    }
}

impl<K: Copy + Eq + Hash> Subscriptions<K> {
    /// An empty table.
    pub fn new() -> Self {
        Subscriptions {
            by_topic: HashMap::new(),
            by_key: HashMap::new(),
        }
    }

    /// Subscribes `key` to `topic` with `cursor`. `false` (nothing changes) when it is
    /// subscribed already.
    pub fn subscribe(&mut self, topic: &str, key: K, cursor: u64) -> bool {
        if self.position(topic, key).is_some() {
            return false;
        }
        let name = match self.by_topic.get_key_value(topic) {
            Some((name, _)) => name.clone(),
            None => Name(Rc::new(topic.into())),
        };
        let list = self.by_topic.entry(name.clone()).or_default();
        list.push(Entry { key, cursor });
        let place = Place {
            topic: name,
            // A topic with 4 billion subscribers would not fit in memory first.
            index: (list.len() - 1) as u32,
        };
        match self.by_key.get_mut(&key) {
            None => {
                self.by_key.insert(key, Places::One(place));
            }
            Some(Places::Many(v)) => v.push(place),
            Some(one) => {
                let Places::One(first) = one.clone() else {
                    unreachable!("matched above")
                };
                *one = Places::Many(Box::new(vec![first, place]));
            }
        }
        true
    }

    fn position(&self, topic: &str, key: K) -> Option<usize> {
        let places = self.by_key.get(&key)?;
        places
            .as_slice()
            .iter()
            .position(|p| p.topic.as_str() == topic)
    }

    /// Removes `key` from `topic`; returns its cursor, `None` when it was not subscribed.
    pub fn unsubscribe(&mut self, topic: &str, key: K) -> Option<u64> {
        let at = self.position(topic, key)?;
        let place = match self.by_key.get_mut(&key)? {
            Places::One(_) => match self.by_key.remove(&key) {
                Some(Places::One(p)) => p,
                _ => return None,
            },
            Places::Many(v) => {
                let p = v.swap_remove(at);
                if v.len() == 1 {
                    let last = v.pop()?;
                    self.by_key.insert(key, Places::One(last));
                }
                p
            }
        };
        Some(self.remove_at(&place))
    }

    /// Removes the entry at `place` from its topic's vector, fixing the moved entry.
    fn remove_at(&mut self, place: &Place) -> u64 {
        let Some(list) = self.by_topic.get_mut(place.topic.as_str()) else {
            return 0;
        };
        let index = place.index as usize;
        if index >= list.len() {
            return 0;
        }
        let gone = list.swap_remove(index);
        if let Some(moved) = list.get(index).copied() {
            if let Some(places) = self.by_key.get_mut(&moved.key) {
                for p in places.as_mut_slice() {
                    if Rc::ptr_eq(&p.topic.0, &place.topic.0) {
                        p.index = place.index;
                    }
                }
            }
        }
        if list.is_empty() {
            self.by_topic.remove(place.topic.as_str());
        }
        gone.cursor
    }

    /// Removes `key` from every topic (a connection closed, an endpoint removed).
    pub fn remove_key(&mut self, key: K) {
        let Some(places) = self.by_key.remove(&key) else {
            return;
        };
        for p in places.as_slice() {
            self.remove_at(p);
        }
    }

    /// The subscribers of `topic`, in no particular order.
    pub fn subscribers(&self, topic: &str) -> &[Entry<K>] {
        self.by_topic.get(topic).map_or(&[], Vec::as_slice)
    }

    /// Copies the subscribers of `topic` into `into` (cleared first), so the caller can
    /// act on them while changing the table; `into` is the caller's reusable buffer.
    pub fn copy_subscribers(&self, topic: &str, into: &mut Vec<Entry<K>>) {
        into.clear();
        into.extend_from_slice(self.subscribers(topic));
    }

    /// The cursor of `key`'s first subscription (a parked poll has exactly one).
    pub fn cursor(&self, key: K) -> Option<u64> {
        let place = self.by_key.get(&key)?.as_slice().first()?;
        Some(
            self.by_topic
                .get(place.topic.as_str())?
                .get(place.index as usize)?
                .cursor,
        )
    }

    /// The topics `key` is subscribed to.
    pub fn topics_of(&self, key: K) -> impl Iterator<Item = &str> {
        self.by_key
            .get(&key)
            .into_iter()
            .flat_map(|p| p.as_slice().iter().map(|p| p.topic.as_str()))
    }

    /// Whether `key` is subscribed to `topic`.
    pub fn contains(&self, topic: &str, key: K) -> bool {
        self.position(topic, key).is_some()
    }

    /// The number of subscribers of `topic`.
    pub fn count(&self, topic: &str) -> usize {
        self.subscribers(topic).len()
    }

    /// The number of topics with subscribers.
    pub fn topics(&self) -> usize {
        self.by_topic.len()
    }

    /// Checks that both maps agree (for tests and fuzzing).
    pub fn check(&self) -> bool {
        let entries: usize = self.by_topic.values().map(Vec::len).sum();
        let places: usize = self.by_key.values().map(|p| p.as_slice().len()).sum();
        entries == places
            && self.by_key.iter().all(|(k, ps)| {
                ps.as_slice().iter().all(|p| {
                    self.by_topic
                        .get(p.topic.as_str())
                        .and_then(|l| l.get(p.index as usize))
                        .is_some_and(|e| e.key == *k)
                })
            })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn subscribe_unsubscribe_keep_both_maps_in_step() {
        let mut s = Subscriptions::new();
        assert!(s.subscribe("a", 1u32, 0));
        assert!(!s.subscribe("a", 1, 5), "no second subscription");
        assert!(s.subscribe("a", 2, 0));
        assert!(s.subscribe("a", 3, 7));
        assert_eq!((s.cursor(3), s.cursor(9)), (Some(7), None));
        assert!(s.subscribe("b", 1, 0));
        assert!(s.check());
        assert_eq!(s.count("a"), 3);
        assert_eq!(s.unsubscribe("a", 1), Some(0));
        assert!(s.check());
        assert_eq!(s.unsubscribe("a", 1), None);
        assert_eq!(s.topics_of(1).collect::<Vec<_>>(), vec!["b"]);
        s.remove_key(3);
        assert!(s.check());
        assert_eq!(s.subscribers("a"), &[Entry { key: 2, cursor: 0 }]);
        s.remove_key(2);
        s.remove_key(1);
        assert_eq!(s.topics(), 0);
        assert!(s.by_key.is_empty());
    }

    #[test]
    fn a_key_entry_is_small() {
        assert_eq!(std::mem::size_of::<Place>(), 16);
        assert_eq!(std::mem::size_of::<Places>(), 16);
    }

    #[test]
    fn mass_removal_is_linear_and_consistent() {
        let mut s = Subscriptions::new();
        for k in 0..10_000u32 {
            s.subscribe("t", k, u64::from(k));
            if k % 3 == 0 {
                s.subscribe("u", k, 0);
            }
        }
        for k in (0..10_000u32).rev().step_by(2) {
            s.remove_key(k);
        }
        assert!(s.check());
        assert_eq!(s.count("t"), 5_000);
        for k in 0..10_000u32 {
            s.remove_key(k);
        }
        assert_eq!(s.topics(), 0);
    }
}
