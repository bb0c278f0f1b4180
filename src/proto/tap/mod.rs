//! A wire tap: decodes a copy of both directions of one connection into one line per
//! protocol unit, for people watching what crosses the wire (the `wiretap` example, and the
//! hub's own `PUSHWIRE_LOG=trace` output under the log target `pushwire::wire`).
//!
//! It reads what the crate's own parsers read, and with them: request and response heads
//! are found with the head scanner of [`http1`](super::http1) and parsed by `httparse`;
//! bodies are framed as RFC 9112 §6.3 says (`Content-Length`, the chunked coding of §7.1
//! through [`ChunkedDecoder`](super::http1::ChunkedDecoder), or until the connection
//! closes); after `101 Switching Protocols` (RFC 9110 §15.2.2, RFC 6455 §4) frames are read
//! with [`parse_header`](super::ws::parse_header) (RFC 6455 §5.2) and unmasked with
//! [`apply_mask`](super::ws::apply_mask) (§5.3); a `text/event-stream` body is cut into
//! events as the WHATWG HTML standard's §9.2.6 "Interpreting an event stream" does; and a
//! compressed message (RFC 7692 §6, RSV1 set) is inflated for display with
//! [`Inflater`](super::ws::deflate::Inflater) when permessage-deflate was agreed.
//!
//! It never changes anything: it is handed copies. It is pure (bytes in, text out), never
//! panics on any input, and holds a bounded amount of memory whatever it is fed (see
//! [`Tap::buffered`] and the budgets below).
//!
//! # The line format
//!
//! Every line starts with the connection's label (`#7`), the direction and the unit:
//!
//! ```text
//! #1 > HTTP POST /topics/demo 5 bytes              request line, body framing
//! #1 > HTTP body 5 bytes "hello"                   the body, once complete
//! #1 < HTTP 201 Created application/json 41 bytes  status, content type, framing
//! #2 > HTTP GET /topics/demo/ws upgrade=websocket
//! #2 < HTTP 101 Switching Protocols permessage-deflate
//! #2 > WS text fin masked len=5 "hello"            data frame: opcode, FIN, RSVs, MASK
//! #2 < WS text fin rsv1 len=30 compressed inflated=120 "{\"id\":..."
//! #2 > WS ping "" masked                           control frames: always final, short
//! #2 < WS close 1000 ""
//! #3 < HTTP 200 OK text/event-stream chunked
//! #3 < SSE id=17 event=- data="hi"                 one dispatched event
//! #3 < SSE comment "keepalive"
//! #4 > RAW 12 bytes (not HTTP: bare LF in head) "GET /\n\n..."
//! ```
//!
//! * The direction is `>` or `<` ([`Dir`]). In the wiretap `>` is client to server; in the
//!   hub's own log `>` is what the hub received from its peer and `<` what it sent.
//! * Quoted text is a preview: at most [`PREVIEW`] bytes, `\n`, `\r`, `\t`, `\"`, `\\` and
//!   `\xNN` escaped (also any byte that is not UTF-8), `...` after it when cut.
//! * `RAW` is what could not be parsed: the reason once, then every later piece of that
//!   direction, which is only counted from then on (a byte stream cannot be resynchronised).
//! * With [`Tap::set_hex`] every unit is followed by an annotated hexdump of its first
//!   [`HEX_MAX`] bytes per part (head, body; frame header, mask key, payload as sent and
//!   unmasked), on lines that start with the label, the direction and four spaces.
//!
//! # Budgets
//!
//! A head is kept until complete, up to 16 KiB ([`Limits`](super::http1::Limits)'
//! default; past it the direction becomes `RAW`); a body, a frame or an event keeps only its
//! first [`PREVIEW`] bytes (or [`HEX_MAX`] with hex on) and is counted past them; an SSE
//! line keeps its first [`SSE_LINE_MAX`] bytes; a compressed message is inflated only when
//! it is at most [`INFLATE_MAX`] bytes both ways; what a client sends after asking for an
//! upgrade and before the answer is held up to [`HOLD_MAX`] bytes; at most [`MAX_PENDING`]
//! requests wait for their responses.

mod fmt;
mod http;
mod sse;
mod ws;

#[cfg(test)]
mod tests;

use http::HttpHalf;
use ws::WsHalf;

/// At most this many bytes of a unit's content are shown in its line.
pub const PREVIEW: usize = 64;
/// At most this many bytes of each part of a unit are hexdumped.
pub const HEX_MAX: usize = 256;
/// The longest SSE line kept (the rest of it is counted, not kept).
pub const SSE_LINE_MAX: usize = 4096;
/// The largest compressed message inflated for display, before and after inflating.
pub const INFLATE_MAX: usize = 256 * 1024;
/// The most a client may send after an upgrade request before the tap sees the answer
/// (it shows the rest as `RAW`).
pub const HOLD_MAX: usize = 64 * 1024;
/// The most requests that wait for their responses (pipelining); older ones are forgotten.
pub const MAX_PENDING: usize = 64;

/// The direction of bytes, shown as `>` ([`Dir::Right`]) or `<` ([`Dir::Left`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Dir {
    /// Shown as `>`: client to server in the wiretap; received, in the hub's log.
    Right,
    /// Shown as `<`: server to client in the wiretap; sent, in the hub's log.
    Left,
}

impl Dir {
    /// `'>'` or `'<'`.
    pub fn arrow(self) -> char {
        match self {
            Dir::Right => '>',
            Dir::Left => '<',
        }
    }

    fn index(self) -> usize {
        match self {
            Dir::Right => 0,
            Dir::Left => 1,
        }
    }
}

/// What one request tells the reader of its response (RFC 9112 §6.3).
#[derive(Debug, Clone, Copy, Default)]
struct Asked {
    head: bool,
    websocket: bool,
    connect: bool,
}

/// What a direction's decoder reads now.
#[derive(Debug)]
enum Mode {
    Http(Box<HttpHalf>),
    /// After an upgrade request: the client's bytes until the answer is seen.
    Held(Vec<u8>),
    Ws(Box<WsHalf>),
    /// Unparseable: counted, shown, never decoded again.
    Raw,
}

/// What the response reader asks of the tap after a head.
#[derive(Debug)]
enum Switch {
    /// 101 for a WebSocket upgrade: both directions read frames.
    Ws(ws::Agreed),
    /// The upgrade was refused: the client's held bytes are HTTP again.
    Refused,
    /// Another protocol (an upgrade not to WebSocket, a CONNECT tunnel): raw both ways.
    Opaque,
}

/// Where one line is written: the label and direction, whether hexdumps are on.
struct Out<'a> {
    label: &'a str,
    arrow: char,
    hex: bool,
    text: &'a mut String,
}

/// The decoder of both directions of one connection. See the [module docs](self).
#[derive(Debug)]
pub struct Tap {
    label: String,
    client: Dir,
    hex: bool,
    modes: [Mode; 2],
    /// Requests waiting for their responses, oldest first.
    asked: std::collections::VecDeque<Asked>,
    /// Raw bytes seen per direction once it became unparseable.
    raw_first: [bool; 2],
}

impl Tap {
    /// A tap for connection number `conn` (shown as `#conn`) whose client sends in
    /// direction `client` (the wiretap and a server: [`Dir::Right`]; a connection the hub
    /// dialed: [`Dir::Left`], as what it sends is shown as `<`).
    pub fn new(conn: u64, client: Dir) -> Tap {
        Tap {
            label: format!("#{conn}"),
            client,
            hex: false,
            modes: [
                Mode::Http(Box::new(HttpHalf::new(client == Dir::Right))),
                Mode::Http(Box::new(HttpHalf::new(client == Dir::Left))),
            ],
            asked: std::collections::VecDeque::new(),
            raw_first: [true; 2],
        }
    }

    /// A tap whose lines start with `label` instead of `#conn` (the hub's own log labels
    /// them with the connection's id).
    pub fn with_label(label: impl Into<String>, client: Dir) -> Tap {
        let mut tap = Tap::new(0, client);
        tap.label = label.into();
        tap
    }

    /// Turns the annotated hexdump after each line on or off.
    pub fn set_hex(&mut self, on: bool) {
        self.hex = on;
    }

    /// Decodes `bytes`, the next bytes seen going `dir`, appending complete lines (each
    /// ending with `\n`) to `out`.
    pub fn feed(&mut self, dir: Dir, bytes: &[u8], out: &mut String) {
        let i = dir.index();
        let mut input = bytes;
        let mut replay: Vec<u8> = Vec::new();
        let mut o = Out {
            label: &self.label,
            arrow: dir.arrow(),
            hex: self.hex,
            text: out,
        };
        while !input.is_empty() {
            let (used, switch) = match &mut self.modes[i] {
                Mode::Http(h) => h.feed(input, &mut self.asked, &mut o),
                Mode::Held(held) => {
                    let room = HOLD_MAX.saturating_sub(held.len()).min(input.len());
                    held.extend_from_slice(&input[..room]);
                    if room == 0 {
                        self.modes[i] = Mode::Raw;
                        self.raw_first[i] = false;
                        fmt::raw(&mut o, &[], input, Some("more than the hold budget"));
                        (input.len(), None)
                    } else {
                        (room, None)
                    }
                }
                Mode::Ws(w) => (w.feed(input, &mut o), None),
                Mode::Raw => {
                    let first = std::mem::replace(&mut self.raw_first[i], false);
                    fmt::raw(&mut o, &[], input, first.then_some("not decoded"));
                    (input.len(), None)
                }
            };
            let rest = input.get(used..).unwrap_or_default();
            if let Mode::Http(h) = &mut self.modes[i] {
                if let Some(why) = h.failed() {
                    fmt::raw(&mut o, h.unparsed(), rest, Some(why));
                    self.modes[i] = Mode::Raw;
                    self.raw_first[i] = false;
                    break;
                }
                if h.wants_hold() {
                    self.modes[i] = Mode::Held(Vec::new());
                } else if used == 0 {
                    // Not reached: every step consumes a byte or fails. Kept as a guard
                    // against looping forever.
                    fmt::raw(&mut o, &[], rest, Some("no progress"));
                    self.modes[i] = Mode::Raw;
                    self.raw_first[i] = false;
                    break;
                }
            }
            input = rest;
            let Some(switch) = switch else { continue };
            let other = 1 - i;
            let held = match &mut self.modes[other] {
                Mode::Held(held) => Some(std::mem::take(held)),
                _ => None,
            };
            match switch {
                Switch::Ws(agreed) => {
                    self.modes[i] = Mode::Ws(Box::new(WsHalf::new(agreed.server)));
                    self.modes[other] = Mode::Ws(Box::new(WsHalf::new(agreed.client)));
                }
                Switch::Refused => {
                    if held.is_some() {
                        self.modes[other] = Mode::Http(Box::new(HttpHalf::new(true)));
                    }
                }
                Switch::Opaque => {
                    self.modes[i] = Mode::Raw;
                    self.modes[other] = Mode::Raw;
                    self.raw_first = [true; 2];
                }
            }
            replay.extend(held.unwrap_or_default());
        }
        if !replay.is_empty() {
            let client = self.client;
            self.feed(client, &replay, out);
        }
    }

    /// The connection's end in direction `dir`: completes a body delimited by the close and
    /// says what was cut short.
    pub fn eof(&mut self, dir: Dir, out: &mut String) {
        let mut o = Out {
            label: &self.label,
            arrow: dir.arrow(),
            hex: self.hex,
            text: out,
        };
        match &mut self.modes[dir.index()] {
            Mode::Http(h) => h.eof(&mut o),
            Mode::Ws(w) => w.eof(&mut o),
            Mode::Held(held) if !held.is_empty() => {
                fmt::raw(
                    &mut o,
                    held,
                    &[],
                    Some("sent before an answer to the upgrade"),
                );
            }
            _ => {}
        }
        self.modes[dir.index()] = Mode::Raw;
        self.raw_first[dir.index()] = false;
    }

    /// Bytes this tap holds now (heads, previews, held input, a compressed message): never
    /// more than a few budgets above, whatever it was fed.
    pub fn buffered(&self) -> usize {
        self.modes
            .iter()
            .map(|m| match m {
                Mode::Http(h) => h.buffered(),
                Mode::Held(v) => v.capacity(),
                Mode::Ws(w) => w.buffered(),
                Mode::Raw => 0,
            })
            .sum::<usize>()
            + self.asked.capacity() * std::mem::size_of::<Asked>()
    }
}
