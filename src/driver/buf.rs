//! Connection buffers: a read buffer that exists only while bytes are pending, an output
//! queue of owned and shared chunks, and a small pool that recycles both.
//!
//! An idle connection holds no heap memory here: its read buffer goes back to the pool when
//! drained and its output queue is an empty `VecDeque` (which does not allocate).

use std::collections::VecDeque;
use std::io::{self, IoSlice, Write};
use std::rc::Rc;

/// Size of a fresh read buffer; doubled while reads keep filling it, up to [`READ_MAX`].
const READ_START: usize = 4096;
/// Largest read buffer worth growing to for throughput.
pub(crate) const READ_MAX: usize = 128 * 1024;
/// Owned output chunks are filled up to this size before a new one is started.
const OUT_CHUNK: usize = 64 * 1024;

/// Recycles buffers so that a busy server does not allocate per read or per response.
#[derive(Debug)]
pub(crate) struct Pool {
    read: Vec<Vec<u8>>,
    out: Vec<Vec<u8>>,
    max: usize,
}

impl Pool {
    pub(crate) fn new(max: usize) -> Self {
        Pool {
            read: Vec::new(),
            out: Vec::new(),
            max,
        }
    }

    fn take_read(&mut self) -> Vec<u8> {
        self.read.pop().unwrap_or_else(|| vec![0; READ_START])
    }

    fn give_read(&mut self, v: Vec<u8>) {
        if self.read.len() < self.max && v.len() <= READ_MAX {
            self.read.push(v);
        }
    }

    fn take_out(&mut self) -> Vec<u8> {
        self.out.pop().unwrap_or_default()
    }

    fn give_out(&mut self, mut v: Vec<u8>) {
        if self.out.len() < self.max && v.capacity() <= OUT_CHUNK {
            v.clear();
            self.out.push(v);
        }
    }
}

/// Bytes read from a socket and not yet consumed by the protocol.
///
/// The storage is always fully initialised (`data.len()` is the capacity in use), so reads
/// go straight into it without zeroing each time; `start..end` is the pending part.
#[derive(Debug, Default)]
pub(crate) struct ReadBuf {
    data: Vec<u8>,
    start: usize,
    end: usize,
    /// The last read filled all the free space: more is probably waiting, so a bigger
    /// buffer means fewer system calls.
    filled: bool,
}

impl ReadBuf {
    /// The pending bytes.
    pub(crate) fn pending(&self) -> &[u8] {
        &self.data[self.start..self.end]
    }

    /// The pending bytes, mutable (WebSocket payloads are unmasked in place).
    pub(crate) fn pending_mut(&mut self) -> &mut [u8] {
        &mut self.data[self.start..self.end]
    }

    pub(crate) fn len(&self) -> usize {
        self.end - self.start
    }

    pub(crate) fn is_empty(&self) -> bool {
        self.start == self.end
    }

    /// Marks `n` pending bytes as consumed.
    pub(crate) fn consume(&mut self, n: usize) {
        self.start += n.min(self.len());
        if self.start == self.end {
            self.start = 0;
            self.end = 0;
        }
    }

    /// Drops all pending bytes.
    pub(crate) fn clear(&mut self) {
        self.start = 0;
        self.end = 0;
    }

    /// Gives the storage back to the pool when nothing is pending.
    pub(crate) fn release_if_empty(&mut self, pool: &mut Pool) {
        if self.is_empty() && !self.data.is_empty() {
            pool.give_read(std::mem::take(&mut self.data));
            self.start = 0;
            self.end = 0;
        }
    }

    /// Reads once from `r` into free space, growing the buffer (while reads fill it) up to
    /// [`READ_MAX`], or to `limit` pending bytes when a protocol needs more to see a whole
    /// unit. `Ok(Some(0))` is end of stream; `Ok(None)` means `limit` bytes are already
    /// pending and nothing was read (the caller decides whether that is an error).
    pub(crate) fn read_from(
        &mut self,
        r: &mut impl io::Read,
        pool: &mut Pool,
        limit: usize,
    ) -> io::Result<Option<usize>> {
        if self.data.is_empty() {
            self.data = pool.take_read();
        }
        if self.filled && self.data.len() < READ_MAX.min(limit.max(READ_START)) {
            let grown = (self.data.len() * 2).min(READ_MAX);
            self.data.resize(grown, 0);
        }
        if self.end == self.data.len() {
            if self.start > 0 {
                // Compact: move the pending bytes to the front.
                self.data.copy_within(self.start..self.end, 0);
                self.end -= self.start;
                self.start = 0;
            } else if self.data.len() < limit.max(READ_START) {
                let grown = (self.data.len() * 2)
                    .min(limit.max(READ_START))
                    .max(READ_START);
                self.data.resize(grown, 0);
            } else {
                return Ok(None);
            }
        }
        let n = r.read(&mut self.data[self.end..])?;
        self.filled = n > 0 && self.end + n == self.data.len();
        self.end += n;
        Ok(Some(n))
    }
}

/// A piece of queued output.
#[derive(Debug)]
pub(crate) enum Chunk {
    /// Bytes for this connection only.
    Owned(Vec<u8>),
    /// Bytes shared by many connections (a broadcast frame encoded once).
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

/// The per-connection output queue.
#[derive(Debug, Default)]
pub(crate) struct OutQueue {
    chunks: VecDeque<Chunk>,
    /// Bytes of the front chunk already written.
    offset: usize,
    /// Bytes queued and not yet written.
    len: usize,
}

/// How a flush ended.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Flushed {
    /// Everything was written.
    All,
    /// The socket would block; bytes remain.
    Blocked,
}

impl OutQueue {
    pub(crate) fn is_empty(&self) -> bool {
        self.len == 0
    }

    pub(crate) fn len(&self) -> usize {
        self.len
    }

    /// Appends about `hint` bytes produced by `f`, coalescing small writes into the tail
    /// owned chunk. A write that would push the tail past [`OUT_CHUNK`] starts a new chunk
    /// instead, so chunks never grow (and reallocate) past it.
    pub(crate) fn append(&mut self, pool: &mut Pool, hint: usize, f: impl FnOnce(&mut Vec<u8>)) {
        let fits =
            matches!(self.chunks.back(), Some(Chunk::Owned(v)) if v.len() + hint <= OUT_CHUNK);
        if !fits {
            let mut v = pool.take_out();
            v.reserve(hint);
            self.chunks.push_back(Chunk::Owned(v));
        }
        if let Some(Chunk::Owned(v)) = self.chunks.back_mut() {
            let before = v.len();
            f(v);
            self.len += v.len() - before;
        }
    }

    /// Appends a copy of `bytes`.
    pub(crate) fn push_slice(&mut self, pool: &mut Pool, bytes: &[u8]) {
        if !bytes.is_empty() {
            self.append(pool, bytes.len(), |v| v.extend_from_slice(bytes));
        }
    }

    /// Queues a shared chunk without copying it.
    pub(crate) fn push_shared(&mut self, bytes: Rc<[u8]>) {
        if !bytes.is_empty() {
            self.len += bytes.len();
            self.chunks.push_back(Chunk::Shared(bytes));
        }
    }

    /// Drops every queued chunk that has not started to be written, so that a close frame
    /// or last chunk can follow at once without breaking framing.
    pub(crate) fn drop_unstarted(&mut self, pool: &mut Pool) {
        let keep = usize::from(self.offset > 0);
        while self.chunks.len() > keep {
            if let Some(c) = self.chunks.pop_back() {
                self.len -= c.bytes().len();
                if let Chunk::Owned(v) = c {
                    pool.give_out(v);
                }
            }
        }
    }

    /// Writes as much as the socket takes, several chunks per system call.
    pub(crate) fn flush(&mut self, w: &mut impl Write, pool: &mut Pool) -> io::Result<Flushed> {
        while !self.chunks.is_empty() {
            let mut slices: [IoSlice<'_>; 32] = [IoSlice::new(&[]); 32];
            let mut n = 0;
            for (i, c) in self.chunks.iter().take(32).enumerate() {
                let b = c.bytes();
                slices[i] = IoSlice::new(if i == 0 { &b[self.offset..] } else { b });
                n += 1;
            }
            let written = match w.write_vectored(&slices[..n]) {
                Ok(0) => return Err(io::ErrorKind::WriteZero.into()),
                Ok(k) => k,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Ok(Flushed::Blocked),
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => return Err(e),
            };
            self.advance(written, pool);
        }
        Ok(Flushed::All)
    }

    fn advance(&mut self, mut n: usize, pool: &mut Pool) {
        self.len -= n;
        while n > 0 {
            let Some(front) = self.chunks.front() else {
                break;
            };
            let rest = front.bytes().len() - self.offset;
            if n >= rest {
                n -= rest;
                self.offset = 0;
                if let Some(Chunk::Owned(v)) = self.chunks.pop_front() {
                    pool.give_out(v);
                }
            } else {
                self.offset += n;
                n = 0;
            }
        }
        if self.chunks.is_empty() {
            // Give back the deque's own allocation too: idle connections hold nothing.
            self.chunks = VecDeque::new();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A writer that takes at most `cap` bytes per call and then would block.
    struct Trickle {
        got: Vec<u8>,
        cap: usize,
        budget: usize,
    }

    impl Write for Trickle {
        fn write(&mut self, b: &[u8]) -> io::Result<usize> {
            if self.budget == 0 {
                return Err(io::ErrorKind::WouldBlock.into());
            }
            let n = b.len().min(self.cap).min(self.budget);
            self.got.extend_from_slice(&b[..n]);
            self.budget -= n;
            Ok(n)
        }
        fn flush(&mut self) -> io::Result<()> {
            Ok(())
        }
    }

    #[test]
    fn out_queue_keeps_order_across_partial_writes() {
        let mut pool = Pool::new(4);
        let mut q = OutQueue::default();
        q.push_slice(&mut pool, b"hello ");
        q.push_shared(Rc::from(&b"shared "[..]));
        q.push_slice(&mut pool, b"world");
        assert_eq!(q.len(), 18);
        let mut w = Trickle {
            got: Vec::new(),
            cap: 5,
            budget: 7,
        };
        assert_eq!(q.flush(&mut w, &mut pool).unwrap(), Flushed::Blocked);
        assert_eq!(q.len(), 11);
        q.drop_unstarted(&mut pool);
        // The shared chunk was partly written, so it stays; "world" goes.
        assert_eq!(q.len(), 6);
        w.budget = 100;
        assert_eq!(q.flush(&mut w, &mut pool).unwrap(), Flushed::All);
        assert_eq!(w.got, b"hello shared ");
        assert!(q.is_empty());
    }

    #[test]
    fn read_buf_grows_to_limit_and_compacts() {
        let mut pool = Pool::new(4);
        let mut rb = ReadBuf::default();
        let data = vec![7u8; 10_000];
        let mut src = &data[..];
        let mut total = 0;
        while let Some(n) = rb.read_from(&mut src, &mut pool, 8192).unwrap() {
            if n == 0 {
                break;
            }
            total += n;
        }
        assert_eq!(total, 8192);
        rb.consume(8000);
        assert_eq!(rb.read_from(&mut src, &mut pool, 8192).unwrap(), Some(1808));
        assert_eq!(rb.len(), 2000);
        rb.consume(2000);
        rb.release_if_empty(&mut pool);
        assert!(rb.data.is_empty());
    }
}
