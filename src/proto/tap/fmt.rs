//! Writing lines: quoted previews, `RAW` lines and the annotated hexdump.

use std::fmt::Write;

use super::{Out, HEX_MAX, PREVIEW};

impl Out<'_> {
    /// Starts a line: label, arrow, unit.
    pub(super) fn line(&mut self, unit: &str) -> &mut String {
        let _ = write!(self.text, "{} {} {unit}", self.label, self.arrow);
        self.text
    }

    /// Ends the line begun with [`line`](Self::line).
    pub(super) fn end(&mut self) {
        self.text.push('\n');
    }

    /// How many bytes of a unit's content to keep: enough for the preview, and for the
    /// hexdump when it is on.
    pub(super) fn keep(&self) -> usize {
        if self.hex {
            HEX_MAX
        } else {
            PREVIEW
        }
    }

    /// Hexdump rows of `bytes` (at most [`HEX_MAX`] of them) labelled `what`, when hex is on.
    /// `total` is the part's whole length, said when only its head is shown.
    pub(super) fn hex(&mut self, what: &str, bytes: &[u8], total: u64) {
        if !self.hex {
            return;
        }
        let shown = bytes.get(..HEX_MAX).unwrap_or(bytes);
        let _ = write!(self.text, "{} {}     {what}", self.label, self.arrow);
        if total > shown.len() as u64 {
            let _ = write!(self.text, " (first {} of {total} bytes)", shown.len());
        }
        self.text.push('\n');
        for (row, chunk) in shown.chunks(16).enumerate() {
            let _ = write!(
                self.text,
                "{} {}     {:04x} ",
                self.label,
                self.arrow,
                row * 16
            );
            for k in 0..16 {
                match chunk.get(k) {
                    Some(b) => {
                        let _ = write!(self.text, " {b:02x}");
                    }
                    None => self.text.push_str("   "),
                }
                if k == 7 {
                    self.text.push(' ');
                }
            }
            self.text.push_str("  |");
            for &b in chunk {
                self.text.push(if b.is_ascii_graphic() || b == b' ' {
                    char::from(b)
                } else {
                    '.'
                });
            }
            self.text.push_str("|\n");
        }
    }
}

/// Appends `bytes` as a quoted preview: at most [`PREVIEW`] bytes, escaped, with `...` when
/// `total` says there was more.
pub(super) fn quote(s: &mut String, bytes: &[u8], total: u64) {
    let shown = bytes.get(..PREVIEW).unwrap_or(bytes);
    s.push('"');
    for chunk in shown.utf8_chunks() {
        for c in chunk.valid().chars() {
            match c {
                '"' => s.push_str("\\\""),
                '\\' => s.push_str("\\\\"),
                '\n' => s.push_str("\\n"),
                '\r' => s.push_str("\\r"),
                '\t' => s.push_str("\\t"),
                c if c.is_ascii_control() => {
                    let _ = write!(s, "\\x{:02x}", u32::from(c));
                }
                c if c.is_control() => {
                    let _ = write!(s, "\\u{{{:x}}}", u32::from(c));
                }
                c => s.push(c),
            }
        }
        for b in chunk.invalid() {
            let _ = write!(s, "\\x{b:02x}");
        }
    }
    s.push('"');
    if total > shown.len() as u64 {
        s.push_str("...");
    }
}

/// A `RAW` line for bytes that could not be parsed: `head` then `rest` (two pieces of one
/// run of bytes), with `why` when given.
pub(super) fn raw(o: &mut Out<'_>, head: &[u8], rest: &[u8], why: Option<&str>) {
    let total = head.len() + rest.len();
    if total == 0 {
        return;
    }
    let mut shown = Vec::with_capacity(o.keep().min(total));
    for part in [head, rest] {
        let room = o.keep().saturating_sub(shown.len()).min(part.len());
        shown.extend_from_slice(&part[..room]);
    }
    let line = o.line("RAW");
    let _ = write!(line, " {}", bytes(total as u64));
    if let Some(why) = why {
        let _ = write!(line, " ({why})");
    }
    line.push(' ');
    quote(line, &shown, total as u64);
    o.end();
    o.hex("bytes", &shown, total as u64);
}

/// Keeps the first `room` bytes of what a unit has so far: appends from `data` to `kept`
/// while it is shorter than `room`.
pub(super) fn keep_head(kept: &mut Vec<u8>, data: &[u8], room: usize) {
    let n = room.saturating_sub(kept.len()).min(data.len());
    kept.extend_from_slice(&data[..n]);
}

/// `1 byte`, `7 bytes`.
pub(super) fn bytes(n: u64) -> String {
    if n == 1 {
        "1 byte".to_owned()
    } else {
        format!("{n} bytes")
    }
}
