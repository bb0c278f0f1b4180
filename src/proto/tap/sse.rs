//! Reading a `text/event-stream` body the way the WHATWG HTML standard's §9.2.6
//! "Interpreting an event stream" does, to show each event as one line.
//!
//! * Lines end at CRLF, a lone LF or a lone CR; a leading U+FEFF BOM is skipped.
//! * A line starting with `:` is a comment (shown at once: heartbeats are comments).
//! * `field: value` (one leading space removed) sets `event`, appends to `data` (lines
//!   joined with LF), sets `id` (unless it holds NUL) or `retry` (digits only); other
//!   fields are ignored, as the standard says.
//! * A blank line dispatches the event; one without data lines is not dispatched (then a
//!   `retry` alone is still shown).
//!
//! The event's fields are shown as they were given in it (the standard's "last event ID"
//! carries over between events; the line shows `id=-` when the event had no `id` field).

use std::fmt::Write;

use super::fmt::{keep_head, quote};
use super::http::word;
use super::{Out, HEX_MAX, SSE_LINE_MAX};

/// Reads one event stream.
#[derive(Debug, Default)]
pub(super) struct SseReader {
    line: Vec<u8>,
    /// The current line's length, also past what is kept.
    line_len: u64,
    after_cr: bool,
    started: bool,
    id: Option<Vec<u8>>,
    event: Option<Vec<u8>>,
    retry: Option<Vec<u8>>,
    data: Vec<u8>,
    data_len: u64,
    data_lines: u64,
    /// The event's bytes as received (for the hexdump), and how many there were.
    raw: Vec<u8>,
    raw_len: u64,
}

impl SseReader {
    pub(super) fn new() -> SseReader {
        SseReader::default()
    }

    pub(super) fn buffered(&self) -> usize {
        self.line.capacity()
            + self.data.capacity()
            + self.raw.capacity()
            + [&self.id, &self.event, &self.retry]
                .iter()
                .map(|v| v.as_ref().map_or(0, Vec::capacity))
                .sum::<usize>()
    }

    /// Reads the next bytes of the (decoded) body.
    pub(super) fn feed(&mut self, mut data: &[u8], o: &mut Out<'_>) {
        if !self.started {
            // "The UTF-8 decode algorithm strips one leading UTF-8 Byte Order Mark (BOM),
            // if any." Only a BOM that arrives whole at the very start is recognised here.
            self.started = true;
            if let Some(rest) = data.strip_prefix("\u{feff}".as_bytes()) {
                data = rest;
            }
        }
        let mut rest = data;
        while let Some(at) = rest.iter().position(|&b| b == b'\r' || b == b'\n') {
            if o.hex {
                keep_head(&mut self.raw, &rest[..=at], HEX_MAX);
            }
            let (text, tail) = rest.split_at(at);
            let lf_after_cr = self.after_cr && at == 0 && tail[0] == b'\n';
            self.after_cr = tail[0] == b'\r';
            rest = &tail[1..];
            self.raw_len += text.len() as u64 + 1;
            if lf_after_cr {
                continue;
            }
            self.add(text);
            self.end_line(o);
        }
        if !rest.is_empty() {
            if o.hex {
                keep_head(&mut self.raw, rest, HEX_MAX);
            }
            self.after_cr = false;
            self.raw_len += rest.len() as u64;
            self.add(rest);
        }
    }

    fn add(&mut self, text: &[u8]) {
        keep_head(&mut self.line, text, SSE_LINE_MAX);
        self.line_len += text.len() as u64;
    }

    fn end_line(&mut self, o: &mut Out<'_>) {
        let line = std::mem::take(&mut self.line);
        let len = std::mem::replace(&mut self.line_len, 0);
        if len == 0 {
            self.dispatch(o);
        } else if let Some(comment) = line.strip_prefix(b":") {
            let text = comment.strip_prefix(b" ").unwrap_or(comment);
            let l = o.line("SSE");
            l.push_str(" comment ");
            quote(l, text, text.len() as u64 + (len - line.len() as u64));
            o.end();
            o.hex("comment", &self.raw, self.raw_len);
            self.raw.clear();
            self.raw_len = 0;
        } else {
            let (name, value) = match line.iter().position(|&b| b == b':') {
                Some(c) => {
                    let v = &line[c + 1..];
                    (&line[..c], v.strip_prefix(b" ").unwrap_or(v))
                }
                None => (&line[..], &[][..]),
            };
            let cut = len - line.len() as u64;
            match name {
                b"event" => self.event = Some(value.to_vec()),
                b"data" => {
                    if self.data_lines > 0 {
                        keep_head(&mut self.data, b"\n", o.keep());
                        self.data_len += 1;
                    }
                    keep_head(&mut self.data, value, o.keep());
                    self.data_len += value.len() as u64 + cut;
                    self.data_lines += 1;
                }
                b"id" if !value.contains(&0) => self.id = Some(value.to_vec()),
                b"retry" if !value.is_empty() && value.iter().all(u8::is_ascii_digit) => {
                    self.retry = Some(value.to_vec())
                }
                _ => {}
            }
        }
        // The line's allocation is kept for the next one, up to a modest size.
        let mut line = line;
        line.clear();
        line.shrink_to(256);
        self.line = line;
    }

    fn dispatch(&mut self, o: &mut Out<'_>) {
        let (id, event, retry) = (self.id.take(), self.event.take(), self.retry.take());
        let data = std::mem::take(&mut self.data);
        let (data_len, lines) = (self.data_len, self.data_lines);
        self.data_len = 0;
        self.data_lines = 0;
        if lines == 0 && retry.is_none() {
            self.raw.clear();
            self.raw_len = 0;
            return;
        }
        let l = o.line("SSE");
        if lines > 0 {
            for (name, v) in [("id", &id), ("event", &event)] {
                let _ = write!(l, " {name}=");
                match v {
                    Some(v) => word(l, v),
                    None => l.push('-'),
                }
            }
            l.push_str(" data=");
            quote(l, &data, data_len);
        }
        if let Some(r) = &retry {
            l.push_str(" retry=");
            word(l, r);
        }
        o.end();
        o.hex("event", &self.raw, self.raw_len);
        self.raw.clear();
        self.raw_len = 0;
    }
}
