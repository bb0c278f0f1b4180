//! The read buffer of a connection: it exists only while bytes are pending, and drained
//! buffers are recycled by a small pool.

use std::io;

/// Size of a fresh read buffer; doubled while reads keep filling it, up to [`READ_MAX`].
const READ_START: usize = 4096;
/// Largest read buffer worth growing to for throughput.
pub(crate) const READ_MAX: usize = 128 * 1024;

/// Recycles read buffers so that a busy server does not allocate per read.
#[derive(Debug)]
pub(crate) struct ReadPool {
    bufs: Vec<Vec<u8>>,
    max: usize,
}

impl ReadPool {
    pub(crate) fn new(max: usize) -> Self {
        ReadPool {
            bufs: Vec::new(),
            max,
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
    /// The last read filled all the free space: a bigger buffer means fewer system calls.
    filled: bool,
}

impl ReadBuf {
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

    pub(crate) fn consume(&mut self, n: usize) {
        self.start += n.min(self.len());
        if self.start == self.end {
            self.start = 0;
            self.end = 0;
        }
    }

    pub(crate) fn clear(&mut self) {
        self.start = 0;
        self.end = 0;
    }

    /// Gives the storage back to the pool when nothing is pending.
    pub(crate) fn release_if_empty(&mut self, pool: &mut ReadPool) {
        if self.is_empty() && !self.data.is_empty() {
            let v = std::mem::take(&mut self.data);
            if pool.bufs.len() < pool.max && v.len() <= READ_MAX {
                pool.bufs.push(v);
            }
            self.clear();
        }
    }

    /// Reads once from `r` into free space, growing the buffer (while reads fill it) up to
    /// [`READ_MAX`], or to `limit` pending bytes when a protocol needs more to see a whole
    /// unit. `Ok(Some(0))` is end of stream; `Ok(None)` means `limit` bytes are already
    /// pending and nothing was read.
    pub(crate) fn read_from(
        &mut self,
        r: &mut impl io::Read,
        pool: &mut ReadPool,
        limit: usize,
    ) -> io::Result<Option<usize>> {
        if self.data.is_empty() {
            self.data = pool.bufs.pop().unwrap_or_else(|| vec![0; READ_START]);
        }
        if self.filled && self.data.len() < READ_MAX.min(limit.max(READ_START)) {
            let grown = (self.data.len() * 2).min(READ_MAX);
            self.data.resize(grown, 0);
        }
        if self.end == self.data.len() {
            if self.start > 0 {
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn grows_to_limit_and_compacts() {
        let mut pool = ReadPool::new(4);
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
