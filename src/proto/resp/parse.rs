//! The incremental reply parser: bytes in as they arrive, whole [`Value`]s out.
//!
//! See the [module docs](super#theory-of-operation) for the resumable state and its cost,
//! and [`Parser::advance`] for the contract with the caller.

use super::value::{is_big_number, Value};
use super::{Limits, RespError};

mod scalar;

use scalar::{bulk_value, parse_count, parse_double, parse_integer};

/// Parses one whole reply at the start of `buf`: `Ok(Some((value, consumed)))`, or
/// `Ok(None)` when `buf` holds only the start of one. A convenience over [`Parser`] for
/// input that is all there (tests, tools); a connection uses a [`Parser`].
pub fn parse(buf: &[u8], limits: &Limits) -> Result<Option<(Value, usize)>, RespError> {
    let (used, value) = Parser::new(*limits).advance(buf)?;
    Ok(value.map(|v| (v, used)))
}

/// The kinds of length-prefixed data.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum BulkKind {
    String,
    Error,
    Verbatim,
}

/// The kinds of counted aggregates.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum AggKind {
    Array,
    Set,
    Push,
    Map,
    Attribute,
}

/// What the parser is reading now.
#[derive(Debug)]
enum State {
    /// A line: a type byte, its text and CRLF. Nothing of it is consumed before the CRLF.
    Line,
    /// `left` more bytes of `len` bytes of bulk data.
    Data {
        kind: BulkKind,
        len: usize,
        left: usize,
        data: Vec<u8>,
    },
    /// The CRLF after bulk data; `seen` of its two bytes have arrived.
    Tail {
        kind: BulkKind,
        data: Vec<u8>,
        seen: usize,
    },
}

/// The elements an open aggregate has collected.
#[derive(Debug)]
enum Items {
    Array(Vec<Value>),
    Set(Vec<Value>),
    Push(Vec<Value>),
    /// The entries, and the key of the entry whose value comes next.
    Map(Vec<(Value, Value)>, Option<Value>),
    /// An attribute: read and dropped.
    Attribute,
}

/// An aggregate whose elements are still arriving.
#[derive(Debug)]
struct Frame {
    /// The elements or entries announced.
    declared: usize,
    /// Values still to come (two per map or attribute entry).
    left: usize,
    items: Items,
}

impl Frame {
    /// The finished aggregate, or `None` for an attribute (dropped).
    fn finish(self) -> Option<Value> {
        match self.items {
            Items::Array(v) => Some(Value::Array(v)),
            Items::Set(v) => Some(Value::Set(v)),
            Items::Push(v) => Some(Value::Push(v)),
            Items::Map(pairs, _) => Some(Value::Map(pairs)),
            Items::Attribute => None,
        }
    }
}

/// Reads replies off one connection, one at a time, sans-IO (see [`advance`](Self::advance)).
#[derive(Debug)]
pub struct Parser {
    limits: Limits,
    state: State,
    /// The open aggregates, outermost first.
    stack: Vec<Frame>,
    /// Bytes of the current reply consumed so far (bulk data counted when announced).
    used: usize,
    /// How far into the pending line the search for its end has looked.
    scan: usize,
    failed: Option<RespError>,
}

impl Default for Parser {
    fn default() -> Self {
        Parser::new(Limits::default())
    }
}

impl Parser {
    /// A parser at the start of a reply.
    pub fn new(limits: Limits) -> Parser {
        Parser {
            limits,
            state: State::Line,
            stack: Vec::new(),
            used: 0,
            scan: 0,
            failed: None,
        }
    }

    /// The limits in force.
    pub fn limits(&self) -> &Limits {
        &self.limits
    }

    /// Part of a reply has been consumed (or looked at) and the rest has not arrived.
    pub fn is_mid_reply(&self) -> bool {
        self.used > 0 || self.scan > 0 || !matches!(self.state, State::Line)
    }

    /// Reads from `buf`, the connection's unconsumed input.
    ///
    /// The caller keeps the bytes not consumed yet, appends new reads after them, calls
    /// `advance` with all of them and drains `consumed` bytes from the front, calling again
    /// while a value comes out (replies are pipelined).
    ///
    /// * `Ok((consumed, Some(value)))`: a complete reply; the bytes after it are left
    ///   alone.
    /// * `Ok((consumed, None))`: more input is needed. The lines and bulk data read so far
    ///   are consumed into the reply being built; a line not complete yet is left in the
    ///   buffer (at most [`Limits::max_line_len`] + 2 bytes), and the parser remembers how
    ///   far it has scanned it.
    /// * `Err(e)`: the stream cannot be read any further; close the connection. The parser
    ///   keeps returning `e`.
    pub fn advance(&mut self, buf: &[u8]) -> Result<(usize, Option<Value>), RespError> {
        if let Some(e) = &self.failed {
            return Err(e.clone());
        }
        let mut used = 0;
        let result = self.step(buf, &mut used);
        match result {
            Ok(value) => Ok((used, value)),
            Err(e) => {
                log::debug!("RESP reply refused: {e}");
                self.state = State::Line;
                self.stack = Vec::new();
                self.failed = Some(e.clone());
                Err(e)
            }
        }
    }

    fn step(&mut self, buf: &[u8], pos: &mut usize) -> Result<Option<Value>, RespError> {
        loop {
            let rest = &buf[*pos..];
            let done = match &mut self.state {
                State::Line => {
                    let Some(len) = self.find_line(rest)? else {
                        return Ok(None);
                    };
                    self.charge(len + 2)?;
                    *pos += len + 2;
                    self.on_line(&rest[..len])?
                }
                State::Data {
                    kind,
                    len,
                    left,
                    data,
                } => {
                    let take = (*left).min(rest.len());
                    if take == 0 {
                        return Ok(None);
                    }
                    extend_toward(data, &rest[..take], *len);
                    *pos += take;
                    *left -= take;
                    if *left == 0 {
                        let (kind, data) = (*kind, std::mem::take(data));
                        self.state = State::Tail {
                            kind,
                            data,
                            seen: 0,
                        };
                    }
                    None
                }
                State::Tail { kind, data, seen } => {
                    while *seen < 2 {
                        let Some(&b) = buf.get(*pos) else {
                            return Ok(None);
                        };
                        if b != b"\r\n"[*seen] {
                            return Err(RespError::MissingTerminator);
                        }
                        *pos += 1;
                        *seen += 1;
                    }
                    let value = bulk_value(*kind, std::mem::take(data))?;
                    self.state = State::Line;
                    Some(value)
                }
            };
            if let Some(value) = done {
                if let Some(reply) = self.deliver(value) {
                    self.used = 0;
                    return Ok(Some(reply));
                }
            }
        }
    }

    /// Finds the CRLF ending the line at the start of `buf`: `Some(len)` when
    /// `buf[..len]` is a whole line and CRLF follows. The scan resumes where the last call
    /// stopped, so a line arriving byte by byte costs linear time.
    fn find_line(&mut self, buf: &[u8]) -> Result<Option<usize>, RespError> {
        let Some(&first) = buf.first() else {
            return Ok(None);
        };
        // A wrong first byte is refused at once: no need to wait for a line of garbage.
        if !b"+-:$*_#,(!=%~>|".contains(&first) {
            return Err(RespError::UnknownType(first));
        }
        let max = self.limits.max_line_len;
        // The CR of a line of `max` bytes sits at index `max`.
        let window = &buf[..buf.len().min(max.saturating_add(1))];
        let from = self.scan.min(window.len());
        match window[from..]
            .iter()
            .position(|&b| b == b'\r' || b == b'\n')
        {
            Some(i) => {
                let at = from + i;
                if window[at] == b'\n' {
                    return Err(RespError::BadLineEnding);
                }
                match buf.get(at + 1) {
                    None => {
                        self.scan = at;
                        Ok(None)
                    }
                    Some(b'\n') => {
                        self.scan = 0;
                        Ok(Some(at))
                    }
                    Some(_) => Err(RespError::BadLineEnding),
                }
            }
            None if buf.len() > max => Err(RespError::LineTooLong { limit: max }),
            None => {
                self.scan = window.len();
                Ok(None)
            }
        }
    }

    /// Counts `n` more bytes against [`Limits::max_reply_bytes`].
    fn charge(&mut self, n: usize) -> Result<(), RespError> {
        self.used = self.used.saturating_add(n);
        if self.used > self.limits.max_reply_bytes {
            return Err(RespError::ReplyTooLarge {
                limit: self.limits.max_reply_bytes,
            });
        }
        Ok(())
    }

    /// A whole line: a scalar value, or the start of bulk data or of an aggregate (which
    /// may be complete at once when it is empty).
    fn on_line(&mut self, line: &[u8]) -> Result<Option<Value>, RespError> {
        let (kind, text) = match line {
            [kind, text @ ..] => (*kind, text),
            [] => return Err(RespError::BadLineEnding), // find_line never returns this
        };
        let value = match kind {
            b'+' => Value::SimpleString(text.to_vec()),
            b'-' => Value::Error(text.to_vec()),
            b':' => Value::Integer(parse_integer(text)?),
            b'_' if text.is_empty() => Value::Null,
            b'_' => return Err(RespError::BadNull),
            b'#' => match text {
                b"t" => Value::Boolean(true),
                b"f" => Value::Boolean(false),
                _ => return Err(RespError::BadBoolean),
            },
            b',' => Value::Double(parse_double(text)?),
            b'(' if is_big_number(text) => Value::BigNumber(text.to_vec()),
            b'(' => return Err(RespError::BadBigNumber),
            b'$' | b'!' | b'=' => {
                let kind = match kind {
                    b'$' => BulkKind::String,
                    b'!' => BulkKind::Error,
                    _ => BulkKind::Verbatim,
                };
                return self.start_bulk(kind, text);
            }
            _ => {
                let kind = match kind {
                    b'*' => AggKind::Array,
                    b'~' => AggKind::Set,
                    b'>' => AggKind::Push,
                    b'%' => AggKind::Map,
                    b'|' => AggKind::Attribute,
                    other => return Err(RespError::UnknownType(other)),
                };
                return self.open(kind, text);
            }
        };
        Ok(Some(value))
    }

    fn start_bulk(&mut self, kind: BulkKind, text: &[u8]) -> Result<Option<Value>, RespError> {
        match text {
            b"?" => return Err(RespError::Streamed),
            b"-1" if kind == BulkKind::String => return Ok(Some(Value::NullBulk)),
            _ => {}
        }
        let len = parse_count(text)?;
        if len > self.limits.max_bulk_len as u64 {
            return Err(RespError::BulkTooLong {
                len,
                limit: self.limits.max_bulk_len,
            });
        }
        let len = len as usize; // <= max_bulk_len, a usize
        if kind == BulkKind::Verbatim && len < 4 {
            return Err(RespError::BadVerbatim);
        }
        // Refused before a byte of it arrives, if it cannot fit.
        self.charge(len.saturating_add(2))?;
        self.state = match len {
            0 => State::Tail {
                kind,
                data: Vec::new(),
                seen: 0,
            },
            _ => State::Data {
                kind,
                len,
                left: len,
                data: Vec::new(),
            },
        };
        Ok(None)
    }

    fn open(&mut self, kind: AggKind, text: &[u8]) -> Result<Option<Value>, RespError> {
        match text {
            b"?" => return Err(RespError::Streamed),
            b"-1" if kind == AggKind::Array => return Ok(Some(Value::NullArray)),
            _ => {}
        }
        let n = parse_count(text)?;
        if n > self.limits.max_elements as u64 {
            return Err(RespError::TooManyElements {
                len: n,
                limit: self.limits.max_elements,
            });
        }
        if self.stack.len() >= self.limits.max_depth {
            return Err(RespError::TooDeep {
                limit: self.limits.max_depth,
            });
        }
        if kind == AggKind::Push && !self.stack.is_empty() {
            return Err(RespError::NestedPush);
        }
        let n = n as usize; // <= max_elements
        if n == 0 {
            return Ok(match kind {
                AggKind::Array => Some(Value::Array(Vec::new())),
                AggKind::Set => Some(Value::Set(Vec::new())),
                AggKind::Push => Some(Value::Push(Vec::new())),
                AggKind::Map => Some(Value::Map(Vec::new())),
                AggKind::Attribute => None,
            });
        }
        let (left, items) = match kind {
            AggKind::Array => (n, Items::Array(Vec::new())),
            AggKind::Set => (n, Items::Set(Vec::new())),
            AggKind::Push => (n, Items::Push(Vec::new())),
            AggKind::Map => (2 * n, Items::Map(Vec::new(), None)),
            AggKind::Attribute => (2 * n, Items::Attribute),
        };
        self.stack.push(Frame {
            declared: n,
            left,
            items,
        });
        Ok(None)
    }

    /// Hands a finished value to the open aggregate, closing every aggregate it completes;
    /// returns the reply when the outermost one is done (or the value was the reply).
    fn deliver(&mut self, mut value: Value) -> Option<Value> {
        loop {
            let Some(top) = self.stack.last_mut() else {
                return Some(value);
            };
            match &mut top.items {
                Items::Array(items) | Items::Set(items) | Items::Push(items) => {
                    push_toward(items, value, top.declared)
                }
                Items::Map(pairs, key) => match key.take() {
                    None => *key = Some(value),
                    Some(k) => push_toward(pairs, (k, value), top.declared),
                },
                Items::Attribute => {}
            }
            top.left -= 1;
            if top.left > 0 {
                return None;
            }
            let frame = self.stack.pop()?;
            // A finished attribute is dropped: the value it describes comes next, in the
            // attribute's place.
            value = frame.finish()?;
        }
    }
}

/// Appends `chunk`, growing the vector by doubling but never past `declared` bytes, so the
/// memory follows the bytes that actually arrived.
fn extend_toward(data: &mut Vec<u8>, chunk: &[u8], declared: usize) {
    let need = data.len() + chunk.len();
    if need > data.capacity() {
        let target = need
            .max(data.capacity().saturating_mul(2))
            .min(declared.max(need));
        data.reserve_exact(target - data.len());
    }
    data.extend_from_slice(chunk);
}

/// Pushes `item`, growing by doubling but never past `declared` elements.
fn push_toward<V>(items: &mut Vec<V>, item: V, declared: usize) {
    if items.len() == items.capacity() {
        let extra = items
            .capacity()
            .max(4)
            .min(declared.saturating_sub(items.len()))
            .max(1);
        items.reserve_exact(extra);
    }
    items.push(item);
}

#[cfg(test)]
mod tests;
