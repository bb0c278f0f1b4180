//! One direction of a WebSocket: frames (RFC 6455 §5.2) read with the crate's header
//! parser, unmasked (§5.3), and compressed messages (RFC 7692 §6) inflated for display.

use std::fmt::Write;

use super::fmt::{keep_head, quote, raw};
use super::{Out, INFLATE_MAX};
use crate::proto::http1::{first_value, Header};
use crate::proto::ws::deflate::{InflateError, Inflater};
use crate::proto::ws::extensions::{self, DeflateParams, PERMESSAGE_DEFLATE};
use crate::proto::ws::frame::{FrameHeader, MAX_HEADER_LEN};
use crate::proto::ws::{apply_mask, parse_header, OpCode};

/// How one direction's messages are compressed (RFC 7692 §7.1.1): whether the sender keeps
/// its context from one message to the next.
#[derive(Debug, Clone, Copy)]
pub(super) struct Deflate {
    takeover: bool,
}

/// What a 101 answer agreed on, per sender.
#[derive(Debug, Clone, Copy, Default)]
pub(super) struct Agreed {
    pub(super) server: Option<Deflate>,
    pub(super) client: Option<Deflate>,
}

impl Agreed {
    /// Reads the server's `Sec-WebSocket-Extensions` answer (RFC 7692 §7).
    pub(super) fn from_response(headers: &[Header]) -> Agreed {
        let field = first_value(headers, "sec-websocket-extensions")
            .and_then(|v| std::str::from_utf8(v).ok())
            .unwrap_or_default();
        let Ok(exts) = extensions::parse(field) else {
            return Agreed::default();
        };
        let Some(ext) = exts
            .iter()
            .find(|e| e.name.eq_ignore_ascii_case(PERMESSAGE_DEFLATE))
        else {
            return Agreed::default();
        };
        let p = DeflateParams::from_params(&ext.params).unwrap_or_default();
        Agreed {
            server: Some(Deflate {
                takeover: !p.server_no_context_takeover,
            }),
            client: Some(Deflate {
                takeover: !p.client_no_context_takeover,
            }),
        }
    }
}

#[derive(Debug)]
struct Frame {
    h: FrameHeader,
    got: u64,
    /// The payload's first bytes, unmasked.
    kept: Vec<u8>,
}

/// The data message the frames belong to.
#[derive(Debug)]
struct Message {
    compressed: bool,
    /// The compressed payload so far, unmasked; `None` once it is too large to inflate.
    deflated: Option<Vec<u8>>,
}

/// The reader of one direction's frames.
#[derive(Debug)]
pub(super) struct WsHalf {
    hdr: [u8; MAX_HEADER_LEN],
    hdr_len: usize,
    frame: Option<Frame>,
    message: Option<Message>,
    deflate: Option<Deflate>,
    inflater: Option<Box<Inflater>>,
    /// A sender's context was lost (a message not inflated while it keeps context).
    lost: bool,
    failed: bool,
}

impl WsHalf {
    /// A reader of frames from a sender that compresses as `deflate` says.
    pub(super) fn new(deflate: Option<Deflate>) -> WsHalf {
        WsHalf {
            hdr: [0; MAX_HEADER_LEN],
            hdr_len: 0,
            frame: None,
            message: None,
            deflate,
            inflater: None,
            lost: false,
            failed: false,
        }
    }

    pub(super) fn buffered(&self) -> usize {
        self.frame.as_ref().map_or(0, |f| f.kept.capacity())
            + self
                .message
                .as_ref()
                .and_then(|m| m.deflated.as_ref())
                .map_or(0, Vec::capacity)
    }

    /// Reads part of a frame; consumes at least one byte of a non-empty `input`.
    pub(super) fn feed(&mut self, input: &[u8], o: &mut Out<'_>) -> usize {
        if self.failed {
            raw(o, &[], input, None);
            return input.len();
        }
        let Some(frame) = &mut self.frame else {
            return self.header(input, o);
        };
        let left = frame.h.payload_len - frame.got;
        let n = input.len().min(usize::try_from(left).unwrap_or(usize::MAX));
        let piece = &input[..n];
        let offset = (frame.got & 3) as usize;
        let key = frame.h.mask;
        let start = frame.kept.len();
        let room = if frame.h.opcode.is_control() {
            125
        } else {
            o.keep()
        };
        keep_head(&mut frame.kept, piece, room);
        if let Some(key) = key {
            apply_mask(&mut frame.kept[start..], key, offset);
        }
        if let Some(m) = &mut self.message {
            if m.compressed && !frame.h.opcode.is_control() {
                let fits = m
                    .deflated
                    .as_ref()
                    .is_some_and(|d| d.len() + piece.len() <= INFLATE_MAX);
                match &mut m.deflated {
                    Some(d) if fits => {
                        let at = d.len();
                        d.extend_from_slice(piece);
                        if let Some(key) = key {
                            apply_mask(&mut d[at..], key, offset);
                        }
                    }
                    _ => m.deflated = None,
                }
            }
        }
        frame.got += n as u64;
        if frame.got == frame.h.payload_len {
            self.end_frame(o, "");
        }
        n
    }

    fn header(&mut self, input: &[u8], o: &mut Out<'_>) -> usize {
        let take = (MAX_HEADER_LEN - self.hdr_len).min(input.len());
        self.hdr[self.hdr_len..self.hdr_len + take].copy_from_slice(&input[..take]);
        self.hdr_len += take;
        match parse_header(&self.hdr[..self.hdr_len]) {
            Ok(None) => take,
            Err(e) => {
                self.failed = true;
                raw(o, &self.hdr[..self.hdr_len], &input[take..], Some(e.reason));
                input.len()
            }
            Ok(Some((h, used))) => {
                let over = self.hdr_len - used;
                self.hdr_len = used;
                self.start_message(&h);
                self.frame = Some(Frame {
                    h,
                    got: 0,
                    kept: Vec::new(),
                });
                if h.payload_len == 0 {
                    self.end_frame(o, "");
                }
                take - over
            }
        }
    }

    fn start_message(&mut self, h: &FrameHeader) {
        if matches!(h.opcode, OpCode::Text | OpCode::Binary) {
            let compressed = h.rsv & 0b100 != 0 && self.deflate.is_some();
            self.message = Some(Message {
                compressed,
                deflated: compressed.then(Vec::new),
            });
        }
    }

    /// The frame is complete (or cut short: `note`): its line.
    fn end_frame(&mut self, o: &mut Out<'_>, note: &str) {
        let Some(f) = self.frame.take() else { return };
        let h = f.h;
        let hdr_len = std::mem::replace(&mut self.hdr_len, 0);
        let line = o.line("WS");
        let name = match h.opcode {
            OpCode::Continuation => "continuation",
            OpCode::Text => "text",
            OpCode::Binary => "binary",
            OpCode::Close => "close",
            OpCode::Ping => "ping",
            OpCode::Pong => "pong",
        };
        let _ = write!(line, " {name}");
        let mut inflated = None;
        if h.opcode.is_control() {
            control(line, h.opcode, &f.kept, h.payload_len);
            flags(line, &h, false);
        } else {
            flags(line, &h, true);
            let _ = write!(line, " len={}", h.payload_len);
            let compressed = self.message.as_ref().is_some_and(|m| m.compressed);
            if compressed {
                line.push_str(" compressed");
                if h.fin && note.is_empty() {
                    inflated = self.inflate(line);
                }
            } else {
                line.push(' ');
                quote(line, &f.kept, h.payload_len);
            }
            if h.fin {
                self.message = None;
            }
        }
        line.push_str(note);
        o.end();
        if o.hex {
            let hdr = &self.hdr[..hdr_len];
            let (fixed, key) = match h.mask {
                Some(_) => hdr.split_at(hdr_len.saturating_sub(4)),
                None => (hdr, &[][..]),
            };
            o.hex(
                &format!(
                    "header: fin={} rsv={:03b} opcode={:#x} mask={} len={}",
                    u8::from(h.fin),
                    h.rsv,
                    h.opcode.as_u8(),
                    u8::from(h.mask.is_some()),
                    h.payload_len
                ),
                fixed,
                fixed.len() as u64,
            );
            if let Some(k) = h.mask {
                o.hex("masking key", key, 4);
                let mut sent = f.kept.clone();
                apply_mask(&mut sent, k, 0);
                o.hex("payload as sent (masked)", &sent, h.payload_len);
                o.hex("payload unmasked", &f.kept, h.payload_len);
            } else {
                o.hex("payload", &f.kept, h.payload_len);
            }
            if let Some(m) = &inflated {
                o.hex("payload inflated", m, m.len() as u64);
            }
        }
    }

    /// Inflates the message just completed and describes the result in `line`.
    fn inflate(&mut self, line: &mut String) -> Option<Vec<u8>> {
        let takeover = self.deflate.is_some_and(|d| d.takeover);
        let deflated = self.message.as_mut().and_then(|m| m.deflated.take());
        let Some(deflated) = deflated.filter(|_| !self.lost) else {
            if takeover {
                self.lost = true;
            }
            line.push_str(if self.lost {
                " (not inflated: its context was lost)"
            } else {
                " (too large to inflate)"
            });
            return None;
        };
        let inflater = self
            .inflater
            .get_or_insert_with(|| Box::new(Inflater::new(15, takeover)));
        let mut out = Vec::new();
        match inflater.inflate(&deflated, INFLATE_MAX, &mut out) {
            Ok(()) => {
                let _ = write!(line, " inflated={} ", out.len());
                quote(line, &out, out.len() as u64);
                out.truncate(super::HEX_MAX);
                Some(out)
            }
            Err(e) => {
                self.lost |= takeover;
                line.push_str(match e {
                    InflateError::TooBig => " (inflates past the budget)",
                    InflateError::Corrupt => " (not valid DEFLATE data)",
                });
                None
            }
        }
    }

    /// The direction ended: a frame in progress was cut short.
    pub(super) fn eof(&mut self, o: &mut Out<'_>) {
        if let Some(f) = &self.frame {
            let note = format!(" (cut short after {} bytes)", f.got);
            self.end_frame(o, &note);
        } else if self.hdr_len > 0 {
            let hdr = self.hdr;
            raw(
                o,
                &hdr[..self.hdr_len],
                &[],
                Some("a frame header cut short"),
            );
            self.hdr_len = 0;
        }
    }
}

/// ` fin`, ` rsv1`-` rsv3`, ` masked` (FIN only for data frames: control frames are never
/// fragmented, §5.5).
fn flags(line: &mut String, h: &FrameHeader, with_fin: bool) {
    if with_fin && h.fin {
        line.push_str(" fin");
    }
    for (bit, name) in [(0b100, " rsv1"), (0b010, " rsv2"), (0b001, " rsv3")] {
        if h.rsv & bit != 0 {
            line.push_str(name);
        }
    }
    if h.mask.is_some() {
        line.push_str(" masked");
    }
}

/// A control frame's payload: a close code and reason (§5.5.1), or the ping/pong data.
fn control(line: &mut String, op: OpCode, payload: &[u8], len: u64) {
    if op != OpCode::Close {
        line.push(' ');
        quote(line, payload, len);
        return;
    }
    match payload {
        [] => line.push_str(" (no code)"),
        [_] => line.push_str(" (a 1-byte body: no valid code)"),
        [a, b, reason @ ..] => {
            let _ = write!(line, " {} ", u16::from_be_bytes([*a, *b]));
            quote(line, reason, reason.len() as u64);
        }
    }
}
