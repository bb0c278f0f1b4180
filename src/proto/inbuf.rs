//! A connection's input buffer: bytes read and not yet consumed by the protocol.
//!
//! It exists only while bytes are pending: a drained buffer goes back to a per-thread pool
//! (the loop is single-threaded), so an idle connection holds no heap memory here. It grows
//! while reads keep filling it (fewer system calls for a fast sender), up to
//! [`READ_MAX`], or up to a protocol's limit when a whole unit (a request head) must fit.
//!
//! The driver asks for free space ([`InBuf::spare`]), reads into it, and reports how many
//! bytes arrived ([`InBuf::filled`]); the core reads [`InBuf::pending`] and says how many
//! bytes it consumed ([`InBuf::consume`]).

use std::cell::RefCell;

/// Size of a fresh buffer; doubled while reads keep filling it.
const READ_START: usize = 4096;
/// Largest buffer worth growing to for throughput.
pub const READ_MAX: usize = 128 * 1024;
/// Drained buffers kept for reuse.
const POOL_MAX: usize = 16;

thread_local! {
    static POOL: RefCell<Vec<Box<[u8]>>> = const { RefCell::new(Vec::new()) };
}

/// Pending input of one connection.
///
/// The storage is always fully initialised (a boxed slice: its length is its capacity), so
/// reads go straight into it without zeroing each time; `start..end` is the pending part.
/// Offsets are `u32` (a buffer never exceeds [`READ_MAX`] or a head limit): an idle
/// connection's buffer is 24 bytes of its slot and nothing on the heap.
#[derive(Debug, Default)]
pub struct InBuf {
    data: Box<[u8]>,
    start: u32,
    end: u32,
    /// The last read filled all the free space: more is probably waiting.
    filled: bool,
}

impl InBuf {
    /// The pending bytes.
    pub fn pending(&self) -> &[u8] {
        &self.data[self.start as usize..self.end as usize]
    }

    /// The pending bytes, mutable (WebSocket payloads are unmasked in place).
    pub fn pending_mut(&mut self) -> &mut [u8] {
        &mut self.data[self.start as usize..self.end as usize]
    }

    /// Number of pending bytes.
    pub fn len(&self) -> usize {
        (self.end - self.start) as usize
    }

    /// Nothing is pending.
    pub fn is_empty(&self) -> bool {
        self.start == self.end
    }

    /// Marks `n` pending bytes as consumed.
    pub fn consume(&mut self, n: usize) {
        self.start += n.min(self.len()) as u32;
        if self.start == self.end {
            self.start = 0;
            self.end = 0;
        }
    }

    /// Drops all pending bytes.
    pub fn clear(&mut self) {
        self.start = 0;
        self.end = 0;
    }

    /// Gives the storage back to the pool when nothing is pending.
    pub fn release_if_empty(&mut self) {
        if self.is_empty() && !self.data.is_empty() {
            let v = std::mem::take(&mut self.data);
            if v.len() <= READ_MAX {
                POOL.with(|p| {
                    let mut p = p.borrow_mut();
                    if p.len() < POOL_MAX {
                        p.push(v);
                    }
                });
            }
            self.clear();
        }
    }

    /// Free space to read into: after the pending bytes, growing the buffer while reads
    /// fill it (up to [`READ_MAX`]) or until `limit` bytes can be pending. `None` when
    /// `limit` bytes are pending already (the protocol cannot consume them yet).
    pub fn spare(&mut self, limit: usize) -> Option<&mut [u8]> {
        // A head limit is at most u32::MAX bytes, so the offsets stay in range.
        let limit = limit.min(u32::MAX as usize);
        if self.data.is_empty() {
            self.data = POOL
                .with(|p| p.borrow_mut().pop())
                .unwrap_or_else(|| vec![0; READ_START].into_boxed_slice());
        }
        if self.filled && self.data.len() < READ_MAX.min(limit.max(READ_START)) {
            let grown = (self.data.len() * 2).min(READ_MAX);
            self.grow(grown);
        }
        if self.end as usize == self.data.len() {
            if self.start > 0 {
                // Compact: move the pending bytes to the front.
                self.data
                    .copy_within(self.start as usize..self.end as usize, 0);
                self.end -= self.start;
                self.start = 0;
            } else if self.data.len() < limit.max(READ_START) {
                let grown = (self.data.len() * 2)
                    .min(limit.max(READ_START))
                    .max(READ_START);
                self.grow(grown);
            } else {
                return None;
            }
        }
        Some(&mut self.data[self.end as usize..])
    }

    /// Resizes the storage to `len` bytes, keeping the pending ones.
    fn grow(&mut self, len: usize) {
        let mut v = std::mem::take(&mut self.data).into_vec();
        v.resize(len, 0);
        self.data = v.into_boxed_slice();
    }

    /// `n` bytes were read into the space [`spare`](Self::spare) gave.
    pub fn filled(&mut self, n: usize) {
        let room = self.data.len() - self.end as usize;
        let n = n.min(room);
        self.filled = n > 0 && n == room;
        self.end += n as u32;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn read(b: &mut InBuf, src: &mut &[u8], limit: usize) -> Option<usize> {
        let space = b.spare(limit)?;
        let n = space.len().min(src.len());
        space[..n].copy_from_slice(&src[..n]);
        *src = &src[n..];
        b.filled(n);
        Some(n)
    }

    #[test]
    fn grows_to_limit_and_compacts() {
        let mut rb = InBuf::default();
        let data = vec![7u8; 10_000];
        let mut src = &data[..];
        let mut total = 0;
        while let Some(n) = read(&mut rb, &mut src, 8192) {
            if n == 0 {
                break;
            }
            total += n;
        }
        assert_eq!(total, 8192);
        rb.consume(8000);
        assert_eq!(read(&mut rb, &mut src, 8192), Some(1808));
        assert_eq!(rb.len(), 2000);
        rb.consume(2000);
        rb.release_if_empty();
        assert!(rb.data.is_empty());
    }
}
