//! The per-connection output queue: owned chunks for one connection's bytes, shared chunks
//! for bytes encoded once and sent to many (a broadcast frame, an SSE event, a long-poll
//! body).
//!
//! Everything the core writes for a connection goes through an [`OutQueue`]; the driver
//! asks it for the one chunk queued ([`single`](OutQueue::single), sent with `send`) or
//! for [`io_slices`](OutQueue::io_slices) to hand to `writev`, and reports how many bytes
//! the socket took with [`advance`](OutQueue::advance). An idle connection's queue is one
//! null pointer and holds no heap memory: the queue's state is boxed only while bytes wait,
//! and drained boxes and owned chunks go back to per-thread pools (the loop is
//! single-threaded).

use std::cell::RefCell;
use std::collections::VecDeque;
use std::io::IoSlice;
use std::rc::Rc;

/// Owned output chunks are filled up to this size before a new one is started, so a chunk
/// never grows (and reallocates) past it.
pub const OUT_CHUNK: usize = 64 * 1024;
/// Drained chunks kept for reuse.
const POOL_MAX: usize = 16;
/// Most slices handed to one `writev`: every frame a connection was given in one loop step
/// (a burst of single publishes, each its own shared chunk) goes out in one system call.
/// Linux takes up to 1024 (`IOV_MAX`); 256 slices are 4 KiB of stack.
pub const MAX_SLICES: usize = 256;

thread_local! {
    static POOL: RefCell<Vec<Vec<u8>>> = const { RefCell::new(Vec::new()) };
}

fn take_chunk() -> Vec<u8> {
    POOL.with(|p| p.borrow_mut().pop()).unwrap_or_default()
}

fn give_chunk(mut v: Vec<u8>) {
    if v.capacity() <= OUT_CHUNK {
        v.clear();
        POOL.with(|p| {
            let mut p = p.borrow_mut();
            if p.len() < POOL_MAX {
                p.push(v);
            }
        });
    }
}

/// A piece of queued output.
#[derive(Debug)]
enum Chunk {
    /// Bytes for this connection only.
    Owned(Vec<u8>),
    /// Bytes shared by many connections (encoded once).
    Shared(Rc<[u8]>),
}

impl Chunk {
    fn bytes(&self) -> &[u8] {
        match self {
            Chunk::Owned(v) => v,
            Chunk::Shared(r) => r,
        }
    }
}

/// Queued chunks: the oldest inline, the rest in a deque that exists only while two or
/// more chunks are queued. A connection that gets one message at a time (the common case
/// of a subscriber) queues and drains without allocating.
#[derive(Debug, Default)]
struct Chunks {
    first: Option<Chunk>,
    rest: VecDeque<Chunk>,
}

impl Chunks {
    fn len(&self) -> usize {
        usize::from(self.first.is_some()) + self.rest.len()
    }

    fn is_empty(&self) -> bool {
        self.first.is_none()
    }

    fn push_back(&mut self, c: Chunk) {
        if self.first.is_none() {
            self.first = Some(c);
        } else {
            self.rest.push_back(c);
        }
    }

    fn back(&self) -> Option<&Chunk> {
        self.rest.back().or(self.first.as_ref())
    }

    fn back_mut(&mut self) -> Option<&mut Chunk> {
        match self.rest.back_mut() {
            Some(c) => Some(c),
            None => self.first.as_mut(),
        }
    }

    fn pop_back(&mut self) -> Option<Chunk> {
        self.rest.pop_back().or_else(|| self.first.take())
    }

    fn front(&self) -> Option<&Chunk> {
        self.first.as_ref()
    }

    fn pop_front(&mut self) -> Option<Chunk> {
        let c = self.first.take();
        self.first = self.rest.pop_front();
        if self.rest.is_empty() && self.rest.capacity() > 0 {
            // Give the deque's allocation back: idle connections hold nothing.
            self.rest = VecDeque::new();
        }
        c
    }

    fn iter(&self) -> impl Iterator<Item = &Chunk> {
        self.first.iter().chain(self.rest.iter())
    }
}

/// The bytes queued for one connection, in order.
///
/// One pointer while nothing is queued: the queue's state lives in a box that exists only
/// while bytes wait (drained boxes go back to a per-thread pool), so an idle connection's
/// slot carries 8 bytes for it.
#[derive(Debug, Default)]
pub struct OutQueue {
    q: Option<Box<Queue>>,
}

/// Boxes kept for reuse: a fan-out fills every subscriber's queue in one step and drains
/// them at its end, so the pool holds as many as one fan-out needs (up to this many, 96
/// bytes each), and the next event allocates nothing. A loop that never fanned out holds
/// none.
const QUEUE_POOL_MAX: usize = 16 * 1024;

thread_local! {
    // Boxes, not values: the pool hands back the allocation an OutQueue points to.
    #[allow(clippy::vec_box)]
    static QUEUES: RefCell<Vec<Box<Queue>>> = const { RefCell::new(Vec::new()) };
}

impl OutQueue {
    /// Nothing is queued.
    pub fn is_empty(&self) -> bool {
        self.q.is_none()
    }

    /// Bytes queued and not yet written.
    pub fn len(&self) -> usize {
        self.q.as_ref().map_or(0, |q| q.len)
    }

    /// The queue's state, made (or taken from the pool) when nothing was queued.
    fn open(&mut self) -> &mut Queue {
        self.q
            .get_or_insert_with(|| QUEUES.with(|p| p.borrow_mut().pop()).unwrap_or_default())
    }

    /// Gives the state back to the pool once everything is written or dropped.
    fn settle(&mut self) {
        if self.q.as_ref().is_some_and(|q| q.chunks.is_empty()) {
            if let Some(mut q) = self.q.take() {
                q.offset = 0;
                q.len = 0;
                q.sealed = 0;
                QUEUES.with(|p| {
                    let mut p = p.borrow_mut();
                    if p.len() < QUEUE_POOL_MAX {
                        p.push(q);
                    }
                });
            }
        }
    }

    /// Lets `f` append about `hint` bytes, coalescing small writes into the tail owned chunk;
    /// a write that would push the tail past [`OUT_CHUNK`] starts a new chunk. Returns what
    /// `f` returns.
    pub fn append<R>(&mut self, hint: usize, f: impl FnOnce(&mut Vec<u8>) -> R) -> R {
        let r = self.open().append(hint, f);
        self.settle();
        r
    }

    /// Appends a copy of `bytes`.
    pub fn push_slice(&mut self, bytes: &[u8]) {
        if !bytes.is_empty() {
            self.append(bytes.len(), |v| v.extend_from_slice(bytes));
        }
    }

    /// Queues a shared chunk without copying it.
    pub fn push_shared(&mut self, bytes: &Rc<[u8]>) {
        if !bytes.is_empty() {
            self.open().push_shared(bytes);
        }
    }

    /// Protects everything queued so far from [`drop_unstarted`](Self::drop_unstarted):
    /// the head of a response whose body may be cut short (a 101, an SSE head).
    pub fn seal(&mut self) {
        if let Some(q) = &mut self.q {
            q.sealed = q.chunks.len();
        }
    }

    /// Drops every queued chunk that has not started to be written (except sealed ones), so
    /// that a close frame or last chunk can follow at once without breaking framing.
    pub fn drop_unstarted(&mut self) {
        if let Some(q) = &mut self.q {
            q.drop_unstarted();
        }
        self.settle();
    }

    /// Fills `slices` with the queued bytes, oldest first, for one vectored write; returns
    /// how many slices were filled.
    pub fn io_slices<'a>(&'a self, slices: &mut [IoSlice<'a>]) -> usize {
        self.q.as_ref().map_or(0, |q| q.io_slices(slices))
    }

    /// The queued bytes when they are one chunk (the common case of one frame or one
    /// shared event): written with one plain `send`, no slice array to build.
    pub fn single(&self) -> Option<&[u8]> {
        let q = self.q.as_ref()?;
        match (&q.chunks.first, q.chunks.rest.is_empty()) {
            (Some(c), true) => Some(&c.bytes()[q.offset..]),
            _ => None,
        }
    }

    /// The socket took `n` bytes from the front.
    pub fn advance(&mut self, n: usize) {
        if let Some(q) = &mut self.q {
            q.advance(n);
        }
        self.settle();
    }

    /// All queued bytes, concatenated (for tests and fuzzing).
    pub fn to_vec(&self) -> Vec<u8> {
        self.q.as_ref().map_or_else(Vec::new, |q| q.to_vec())
    }

    /// Takes every queued byte out (for tests and fuzzing).
    pub fn take_all(&mut self) -> Vec<u8> {
        let v = self.to_vec();
        self.advance(v.len());
        v
    }
}

/// The state of a non-empty [`OutQueue`].
#[derive(Debug, Default)]
struct Queue {
    chunks: Chunks,
    /// Bytes of the front chunk already written.
    offset: usize,
    /// Bytes queued and not yet written.
    len: usize,
    /// The first this many chunks are protected from [`drop_unstarted`](Self::drop_unstarted)
    /// (a response head that must go out before anything else can).
    sealed: usize,
}

impl Queue {
    /// Lets `f` append about `hint` bytes, coalescing small writes into the tail owned chunk;
    /// a write that would push the tail past [`OUT_CHUNK`] starts a new chunk. Returns what
    /// `f` returns.
    fn append<R>(&mut self, hint: usize, f: impl FnOnce(&mut Vec<u8>) -> R) -> R {
        let fits = self.chunks.len() > self.sealed
            && matches!(self.chunks.back(), Some(Chunk::Owned(v)) if v.len() + hint <= OUT_CHUNK);
        if !fits {
            let mut v = take_chunk();
            v.reserve(hint);
            self.chunks.push_back(Chunk::Owned(v));
        }
        let Some(Chunk::Owned(v)) = self.chunks.back_mut() else {
            unreachable!("an owned chunk was just ensured at the back");
        };
        let need = v.len() + hint;
        if need > v.capacity() {
            // Grow by doubling, but never past OUT_CHUNK (unless one write is bigger): a
            // chunk that outgrew it would not go back to the pool.
            let target = need.max(v.capacity() * 2).min(OUT_CHUNK).max(need);
            v.reserve_exact(target - v.len());
        }
        let before = v.len();
        let r = f(v);
        let added = v.len() - before;
        self.len += added;
        if v.is_empty() {
            // Nothing was written into a fresh chunk: do not keep it.
            if let Some(Chunk::Owned(v)) = self.chunks.pop_back() {
                give_chunk(v);
            }
        }
        r
    }

    fn push_shared(&mut self, bytes: &Rc<[u8]>) {
        self.len += bytes.len();
        self.chunks.push_back(Chunk::Shared(Rc::clone(bytes)));
    }

    /// Drops every queued chunk that has not started to be written (except sealed ones), so
    /// that a close frame or last chunk can follow at once without breaking framing.
    fn drop_unstarted(&mut self) {
        let keep = usize::from(self.offset > 0).max(self.sealed);
        while self.chunks.len() > keep {
            if let Some(c) = self.chunks.pop_back() {
                self.len -= c.bytes().len();
                if let Chunk::Owned(v) = c {
                    give_chunk(v);
                }
            }
        }
    }

    /// Fills `slices` with the queued bytes, oldest first, for one vectored write; returns
    /// how many slices were filled.
    fn io_slices<'a>(&'a self, slices: &mut [IoSlice<'a>]) -> usize {
        let mut n = 0;
        for (i, c) in self.chunks.iter().take(slices.len()).enumerate() {
            let b = c.bytes();
            slices[i] = IoSlice::new(if i == 0 { &b[self.offset..] } else { b });
            n += 1;
        }
        n
    }

    /// The socket took `n` bytes from the front.
    fn advance(&mut self, mut n: usize) {
        n = n.min(self.len);
        self.len -= n;
        while n > 0 {
            let Some(front) = self.chunks.front() else {
                break;
            };
            let rest = front.bytes().len() - self.offset;
            if n >= rest {
                n -= rest;
                self.offset = 0;
                self.sealed = self.sealed.saturating_sub(1);
                if let Some(Chunk::Owned(v)) = self.chunks.pop_front() {
                    give_chunk(v);
                }
            } else {
                self.offset += n;
                n = 0;
            }
        }
        if self.chunks.is_empty() {
            self.offset = 0;
            self.sealed = 0;
        }
    }

    /// All queued bytes, concatenated (for tests and fuzzing).
    fn to_vec(&self) -> Vec<u8> {
        let mut v = Vec::with_capacity(self.len);
        for (i, c) in self.chunks.iter().enumerate() {
            let b = c.bytes();
            v.extend_from_slice(if i == 0 { &b[self.offset..] } else { b });
        }
        v
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keeps_order_across_partial_writes() {
        let mut q = OutQueue::default();
        q.push_slice(b"hello ");
        q.push_shared(&Rc::from(&b"shared "[..]));
        q.push_slice(b"world");
        assert_eq!(q.len(), 18);
        q.advance(7);
        assert_eq!(q.len(), 11);
        q.drop_unstarted();
        // The shared chunk was partly written, so it stays; "world" goes.
        assert_eq!(q.len(), 6);
        assert_eq!(q.to_vec(), b"hared ");
        let mut slices = [IoSlice::new(&[]); MAX_SLICES];
        assert_eq!(q.io_slices(&mut slices), 1);
        assert_eq!(&*slices[0], b"hared ");
        q.advance(6);
        assert!(q.is_empty());
    }

    #[test]
    fn a_single_chunk_is_offered_whole() {
        let mut q = OutQueue::default();
        assert_eq!(q.single(), None);
        q.push_slice(b"frame one");
        assert_eq!(q.single(), Some(&b"frame one"[..]));
        q.advance(6);
        assert_eq!(q.single(), Some(&b"one"[..]));
        q.push_shared(&Rc::from(&b"shared"[..]));
        assert_eq!(q.single(), None, "two chunks go out with writev");
        q.advance(3);
        assert_eq!(q.single(), Some(&b"shared"[..]));
    }

    #[test]
    fn sealed_chunks_survive_drop_unstarted() {
        let mut q = OutQueue::default();
        q.push_slice(b"HTTP/1.1 101 ...\r\n\r\n");
        q.seal();
        q.push_slice(b"frame");
        q.push_shared(&Rc::from(&b"shared"[..]));
        q.drop_unstarted();
        assert_eq!(q.to_vec(), b"HTTP/1.1 101 ...\r\n\r\n");
        q.advance(q.len());
        q.push_slice(b"a");
        q.push_slice(b"b");
        q.drop_unstarted();
        assert!(q.is_empty(), "the seal ends once its chunks are written");
    }

    #[test]
    fn empty_append_leaves_no_chunk() {
        let mut q = OutQueue::default();
        q.append(10, |_| ());
        assert!(q.is_empty());
        assert_eq!(q.io_slices(&mut [IoSlice::new(&[])]), 0);
    }

    #[test]
    fn owned_chunks_grow_but_never_past_the_pooled_size() {
        let mut q = OutQueue::default();
        for _ in 0..40 {
            q.push_slice(&[7u8; 16_398]); // a 16 KiB echo frame, again and again
        }
        for c in q.q.as_ref().unwrap().chunks.iter() {
            let Chunk::Owned(v) = c else { panic!("owned") };
            assert!(v.capacity() <= OUT_CHUNK, "capacity {}", v.capacity());
        }
        // One write bigger than a chunk gets a chunk of its own size.
        q.push_slice(&vec![1u8; OUT_CHUNK + 5]);
        assert_eq!(q.len(), 40 * 16_398 + OUT_CHUNK + 5);
    }

    #[test]
    fn owned_chunks_stop_at_the_chunk_size() {
        let mut q = OutQueue::default();
        let big = vec![1u8; OUT_CHUNK - 10];
        q.push_slice(&big);
        q.push_slice(&[2u8; 20]);
        let mut slices = [IoSlice::new(&[]); MAX_SLICES];
        assert_eq!(q.io_slices(&mut slices), 2);
    }
}
