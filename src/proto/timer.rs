//! Deadlines keyed by caller-given [`Instant`]s.
//!
//! The driver owns the clock: it asks [`Timers::next_deadline`] how long `poll` may sleep,
//! then reads the clock once and hands `now` to [`Timers::pop_expired`] until it returns
//! `None`. Nothing in here reads the clock, so tests drive time by hand.
//!
//! # Theory of operation
//!
//! Live values sit in a slab (`slots`, with a free list); every insertion gets a fresh
//! sequence number that is never handed out again. A min-heap holds `(deadline, seq, slot)`
//! entries: the deadline orders the heap, the sequence number breaks ties so that timers
//! due at the same instant fire in insertion order.
//!
//! [`Timers::cancel`] is O(1): it empties the slot and leaves the heap entry behind. A heap
//! entry is *stale* when its slot no longer holds the same sequence number; stale entries
//! are skipped (and dropped) when they reach the top of the heap, and the whole heap is
//! compacted in O(n) once stale entries outnumber live ones, so a program that arms and
//! cancels timeouts all day long (every keep-alive request does) keeps a heap no bigger
//! than about twice the number of live timers.
//!
//! A [`TimerKey`] carries the slot and the sequence number, so an id that was cancelled or
//! has fired never matches a later timer that reuses its slot.
//!
//! Every connection with a deadline pays for one slot and one or two heap entries, so they
//! are kept small: a heap entry is 24 bytes, the deadline stored as signed nanoseconds from
//! the first deadline ever inserted (an `i64` spans ±292 years), and the slot as a `u32`.
//! Stale entries are compacted away once they outnumber half the live ones, which bounds
//! the heap at about 1.5 entries per live timer.

use std::cmp::Reverse;
use std::collections::BinaryHeap;
use std::num::NonZeroU64;
use std::time::{Duration, Instant};

/// Identifies one armed timer. Ids are never reused: once a timer fired or was cancelled,
/// its id matches nothing.
#[derive(Clone, Copy, PartialEq, Eq, Hash, Debug)]
pub struct TimerKey {
    slot: u32,
    /// Never zero, so an `Option<TimerKey>` is as small as the key.
    seq: NonZeroU64,
}

/// One occupied slot: the sequence number of the timer that owns it, its deadline (as in
/// the heap) and its value.
struct HeapEntry<T> {
    seq: u64,
    at: i64,
    value: T,
}

/// A set of deadlines, each carrying a value of type `T` (typically a connection id and
/// what to do when the deadline passes).
pub struct Timers<T> {
    /// Min-heap on `(deadline, seq)`, deadlines as nanoseconds from `base`; may hold stale
    /// entries (see the module docs).
    heap: BinaryHeap<Reverse<(i64, u64, u32)>>,
    /// The first deadline inserted: the origin of the heap's deadlines.
    base: Option<Instant>,
    slots: Vec<Option<HeapEntry<T>>>,
    /// Indices of empty slots.
    free: Vec<u32>,
    next_seq: u64,
    live: usize,
}

impl<T> Default for Timers<T> {
    fn default() -> Self {
        Self::new()
    }
}

impl<T> Timers<T> {
    /// An empty set of timers.
    pub fn new() -> Self {
        Timers {
            heap: BinaryHeap::new(),
            base: None,
            slots: Vec::new(),
            free: Vec::new(),
            next_seq: 1,
            live: 0,
        }
    }

    /// Arms a timer that expires at `at`, carrying `value`.
    pub fn insert(&mut self, at: Instant, value: T) -> TimerKey {
        let seq = self.next_seq;
        self.next_seq += 1;
        let base = *self.base.get_or_insert(at);
        let at = offset(base, at);
        let slot = Some(HeapEntry { seq, at, value });
        let index = match self.free.pop() {
            Some(index) => {
                self.slots[index as usize] = slot;
                index
            }
            None => {
                self.slots.push(slot);
                // More than 4 billion live timers would need more memory than there is.
                (self.slots.len() - 1) as u32
            }
        };
        self.heap.push(Reverse((at, seq, index)));
        self.live += 1;
        TimerKey {
            slot: index,
            seq: NonZeroU64::new(seq).expect("sequence numbers start at 1"),
        }
    }

    /// The deadline of a live timer; `None` once it fired or was cancelled.
    pub fn deadline(&self, id: TimerKey) -> Option<Instant> {
        match self.slots.get(id.slot as usize) {
            Some(Some(s)) if s.seq == id.seq.get() => Some(instant(self.base?, s.at)),
            _ => None,
        }
    }

    /// Disarms a timer and gives its value back; `None` when it already fired or was
    /// cancelled.
    pub fn cancel(&mut self, id: TimerKey) -> Option<T> {
        let value = self.take_slot(id.slot, id.seq.get())?;
        // The heap entry stays behind as a stale one; compact when stale entries outnumber
        // live ones (the constant keeps tiny heaps from being rebuilt over and over).
        if self.heap.len() > self.live + self.live / 2 + 16 {
            self.compact();
        }
        Some(value)
    }

    /// The earliest deadline of a live timer, if any.
    pub fn next_deadline(&mut self) -> Option<Instant> {
        self.drop_stale_top();
        let base = self.base?;
        self.heap
            .peek()
            .map(|Reverse((at, _, _))| instant(base, *at))
    }

    /// Removes and returns the earliest timer whose deadline is at or before `now`; timers
    /// with equal deadlines come out in insertion order. Call it until it returns `None`.
    pub fn pop_expired(&mut self, now: Instant) -> Option<(TimerKey, T)> {
        self.drop_stale_top();
        let &Reverse((at, seq, slot)) = self.heap.peek()?;
        if at > offset(self.base?, now) {
            return None;
        }
        self.heap.pop();
        let value = self.take_slot(slot, seq)?;
        let seq = NonZeroU64::new(seq)?; // never zero (they start at 1)
        Some((TimerKey { slot, seq }, value))
    }

    /// The number of live timers.
    pub fn len(&self) -> usize {
        self.live
    }

    /// Whether no timer is armed.
    pub fn is_empty(&self) -> bool {
        self.live == 0
    }

    /// Empties `slot` if it still belongs to timer `seq`.
    fn take_slot(&mut self, slot: u32, seq: u64) -> Option<T> {
        let cell = self.slots.get_mut(slot as usize)?;
        if cell.as_ref()?.seq != seq {
            return None;
        }
        let taken = cell.take()?;
        self.free.push(slot);
        self.live -= 1;
        Some(taken.value)
    }

    fn is_live(&self, slot: u32, seq: u64) -> bool {
        matches!(self.slots.get(slot as usize), Some(Some(s)) if s.seq == seq)
    }

    fn drop_stale_top(&mut self) {
        while let Some(&Reverse((_, seq, slot))) = self.heap.peek() {
            if self.is_live(slot, seq) {
                break;
            }
            self.heap.pop();
        }
    }

    fn compact(&mut self) {
        let slots = &self.slots;
        self.heap.retain(
            |Reverse((_, seq, slot))| matches!(slots.get(*slot as usize), Some(Some(s)) if s.seq == *seq),
        );
        log::trace!("timers: compacted heap to {} entries", self.heap.len());
    }

    #[cfg(test)]
    fn heap_len(&self) -> usize {
        self.heap.len()
    }
}

/// `at` as signed nanoseconds from `base` (saturating: ±292 years).
fn offset(base: Instant, at: Instant) -> i64 {
    let ns = |d: Duration| i64::try_from(d.as_nanos()).unwrap_or(i64::MAX);
    match at.checked_duration_since(base) {
        Some(after) => ns(after),
        None => -ns(base.duration_since(at)),
    }
}

/// The instant `ns` nanoseconds from `base` (the inverse of [`offset`]).
fn instant(base: Instant, ns: i64) -> Instant {
    let d = Duration::from_nanos(ns.unsigned_abs());
    let at = if ns >= 0 {
        base.checked_add(d)
    } else {
        base.checked_sub(d)
    };
    at.unwrap_or(base)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    fn at(base: Instant, ms: u64) -> Instant {
        base + Duration::from_millis(ms)
    }

    fn drain(t: &mut Timers<&'static str>, now: Instant) -> Vec<&'static str> {
        let mut out = Vec::new();
        while let Some((_, v)) = t.pop_expired(now) {
            out.push(v);
        }
        out
    }

    #[test]
    fn fires_in_deadline_order_then_insertion_order() {
        let b = Instant::now();
        let mut t = Timers::new();
        // (deadline ms, name), inserted in this order.
        let table = [
            (30, "c1"),
            (10, "a1"),
            (20, "b1"),
            (10, "a2"),
            (30, "c2"),
            (10, "a3"),
        ];
        for (ms, name) in table {
            t.insert(at(b, ms), name);
        }
        assert_eq!(t.len(), 6);
        assert_eq!(t.next_deadline(), Some(at(b, 10)));
        assert_eq!(drain(&mut t, at(b, 9)), Vec::<&str>::new());
        assert_eq!(drain(&mut t, at(b, 10)), ["a1", "a2", "a3"]);
        assert_eq!(t.next_deadline(), Some(at(b, 20)));
        assert_eq!(drain(&mut t, at(b, 100)), ["b1", "c1", "c2"]);
        assert!(t.is_empty());
        assert_eq!(t.next_deadline(), None);
        assert_eq!(t.pop_expired(at(b, 1000)), None);
    }

    #[test]
    fn pop_returns_the_id_that_insert_gave() {
        let b = Instant::now();
        let mut t = Timers::new();
        let x = t.insert(at(b, 5), "x");
        let y = t.insert(at(b, 1), "y");
        assert_ne!(x, y);
        assert_eq!(t.pop_expired(at(b, 5)), Some((y, "y")));
        assert_eq!(t.pop_expired(at(b, 5)), Some((x, "x")));
        // A fired timer cannot be cancelled.
        assert_eq!(t.cancel(x), None);
    }

    #[test]
    fn deadline_answers_for_live_timers_only() {
        let b = Instant::now();
        let mut t = Timers::new();
        let x = t.insert(at(b, 7), "x");
        let y = t.insert(at(b, 3), "y");
        assert_eq!(t.deadline(x), Some(at(b, 7)));
        assert_eq!(t.deadline(y), Some(at(b, 3)));
        assert_eq!(t.cancel(x), Some("x"));
        assert_eq!(t.deadline(x), None);
        assert_eq!(t.pop_expired(at(b, 5)), Some((y, "y")));
        assert_eq!(t.deadline(y), None);
        assert_eq!(std::mem::size_of::<Option<TimerKey>>(), 16);
    }

    #[test]
    fn cancel_skips_and_next_deadline_is_exact() {
        let b = Instant::now();
        let mut t = Timers::new();
        let a = t.insert(at(b, 1), "a");
        let _bb = t.insert(at(b, 2), "b");
        let c = t.insert(at(b, 3), "c");
        assert_eq!(t.cancel(a), Some("a"));
        assert_eq!(t.cancel(a), None, "second cancel finds nothing");
        assert_eq!(t.len(), 2);
        assert_eq!(t.next_deadline(), Some(at(b, 2)));
        assert_eq!(t.cancel(c), Some("c"));
        assert_eq!(drain(&mut t, at(b, 10)), ["b"]);
        assert_eq!(t.next_deadline(), None);
    }

    #[test]
    fn ids_are_never_reused_even_when_slots_are() {
        let b = Instant::now();
        let mut t = Timers::new();
        let old = t.insert(at(b, 1), "old");
        assert_eq!(t.cancel(old), Some("old"));
        let new = t.insert(at(b, 1), "new");
        assert_ne!(old, new);
        // The stale id must not cancel the new timer that took its slot.
        assert_eq!(t.cancel(old), None);
        assert_eq!(t.len(), 1);
        assert_eq!(t.cancel(new), Some("new"));
    }

    #[test]
    fn stale_heap_entries_are_compacted() {
        let b = Instant::now();
        let mut t = Timers::new();
        let keep: Vec<_> = (0..10).map(|i| t.insert(at(b, 1000 + i), i)).collect();
        // Arm and cancel many timeouts, like a keep-alive connection does per request.
        for i in 0..10_000u64 {
            let id = t.insert(at(b, i), 99);
            assert_eq!(t.cancel(id), Some(99));
            assert!(
                t.heap_len() <= t.len() + t.len() / 2 + 17,
                "heap grew to {} with {} live",
                t.heap_len(),
                t.len()
            );
        }
        assert_eq!(t.len(), 10);
        assert_eq!(t.next_deadline(), Some(at(b, 1000)));
        let fired: Vec<_> = std::iter::from_fn(|| t.pop_expired(at(b, 5000))).collect();
        let want: Vec<_> = keep.iter().copied().zip(0..10).collect();
        assert_eq!(fired, want);
    }

    #[test]
    fn deadlines_before_the_first_one_and_far_ahead_keep_their_order() {
        let b = Instant::now();
        let mut t = Timers::new();
        t.insert(b + Duration::from_secs(10), "later");
        t.insert(b - Duration::from_millis(3), "before the first");
        t.insert(b + Duration::from_secs(100 * 365 * 86_400), "in a century");
        assert_eq!(t.next_deadline(), Some(b - Duration::from_millis(3)));
        assert_eq!(drain(&mut t, b), ["before the first"]);
        assert_eq!(t.next_deadline(), Some(b + Duration::from_secs(10)));
        assert_eq!(drain(&mut t, b + Duration::from_secs(10)), ["later"]);
        assert_eq!(
            drain(&mut t, b + Duration::from_secs(86_400)),
            Vec::<&str>::new()
        );
        assert_eq!(t.len(), 1);
        assert_eq!(
            std::mem::size_of::<Reverse<(i64, u64, u32)>>(),
            24,
            "a heap entry stays 24 bytes"
        );
    }

    #[test]
    fn matches_a_naive_model() {
        // Deterministic pseudo-random operations checked against a sorted Vec.
        let b = Instant::now();
        let mut t = Timers::new();
        let mut model: Vec<(u64, u64, TimerKey)> = Vec::new(); // (ms, seq, id)
        let mut state = 0x2545_f491_4f6c_dd1du64;
        let mut rnd = move || {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            state
        };
        let mut now = 0u64;
        for seq in 0..5000u64 {
            match rnd() % 4 {
                0 | 1 => {
                    let ms = now + rnd() % 50;
                    let id = t.insert(at(b, ms), seq);
                    model.push((ms, seq, id));
                }
                2 if !model.is_empty() => {
                    let i = (rnd() as usize) % model.len();
                    let (_, v, id) = model.remove(i);
                    assert_eq!(t.cancel(id), Some(v));
                }
                _ => {
                    now += rnd() % 20;
                    model.sort_by_key(|m| (m.0, m.1));
                    while model.first().is_some_and(|m| m.0 <= now) {
                        let (_, v, id) = model.remove(0);
                        assert_eq!(t.pop_expired(at(b, now)), Some((id, v)));
                    }
                    assert_eq!(t.pop_expired(at(b, now)), None);
                }
            }
            model.sort_by_key(|m| (m.0, m.1));
            assert_eq!(t.len(), model.len());
            assert_eq!(t.next_deadline(), model.first().map(|m| at(b, m.0)));
        }
    }
}
