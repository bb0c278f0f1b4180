//! One server-side connection after the handshake: frames in, messages out, and the
//! closing handshake (RFC 6455 §5.1-§5.6, §7).
//!
//! # Theory of operation
//!
//! [`Connection::read`] is handed the driver's read buffer. It walks it frame by frame:
//!
//! * At a frame boundary it parses a header ([`parse_header`]) and applies the server's
//!   rules: client frames must be masked (§5.1), RSV bits must be zero (no extension is
//!   negotiated, §5.2), fragments must follow each other properly (§5.4), and the frame and
//!   message must fit the [`Config`] limits, checked against the header's length before a
//!   single payload byte is stored.
//! * A **control frame** (≤ 125 bytes) is handled only once it is complete in the buffer;
//!   until then nothing of it is consumed. It is unmasked in place and reported as an
//!   event that borrows the buffer. What it forces us to send (the Pong answering a Ping,
//!   the Close echoing a Close) is appended to `out` at once.
//! * A **data frame** that is a whole unfragmented message, complete in the buffer, is
//!   unmasked in place and returned zero-copy as a slice of the buffer.
//! * Any other data frame is **streamed**: its payload bytes are consumed as they arrive,
//!   unmasked, checked as UTF-8 (text) and appended to the message buffer, so an invalid
//!   sequence fails the connection with 1007 as soon as it is seen (§8.1), and a large
//!   frame never has to sit whole in the read buffer. When the final fragment ends, the
//!   message is returned as a slice of the message buffer; the buffer is freed on the next
//!   call, so an idle connection holds no heap memory.
//!
//! Closing (§7): a Close from the peer is validated (status code, UTF-8 reason), echoed
//! with the same status code, and reported; after it `read` consumes nothing. A close
//! started by us ([`Connection::close`]) makes further data frames be discarded, unread,
//! until the peer's Close arrives. On any protocol fault `read` returns the error after
//! writing the Close frame carrying its code ("_Fail the WebSocket Connection_", §7.1.7);
//! the connection is then dead. In both cases the server closes the TCP connection
//! first once `out` is flushed (§7.1.1).

use std::ops::Range;

use super::frame::{encode_frame, parse_header, FrameHeader, OpCode, MAX_CONTROL_PAYLOAD};
use super::mask::apply_mask;
use super::utf8::Utf8Validator;

/// Close status codes (§7.4.1, and the IANA "WebSocket Close Code Number Registry").
pub mod close_code {
    /// The purpose of the connection has been fulfilled.
    pub const NORMAL: u16 = 1000;
    /// The endpoint is going away (server shutting down, page left).
    pub const GOING_AWAY: u16 = 1001;
    /// The peer broke the protocol.
    pub const PROTOCOL_ERROR: u16 = 1002;
    /// The endpoint cannot accept this type of data (e.g. binary for a text-only service).
    pub const UNSUPPORTED_DATA: u16 = 1003;
    /// Reserved: "no status code was present". Never sent on the wire.
    pub const NO_STATUS: u16 = 1005;
    /// Reserved: "closed abnormally", without a Close frame. Never sent on the wire.
    pub const ABNORMAL: u16 = 1006;
    /// Data inconsistent with the message type (e.g. non-UTF-8 in a text message).
    pub const INVALID_PAYLOAD: u16 = 1007;
    /// A message violates the endpoint's policy.
    pub const POLICY_VIOLATION: u16 = 1008;
    /// A message (or frame) is too big to process.
    pub const MESSAGE_TOO_BIG: u16 = 1009;
    /// The client expected the server to negotiate an extension.
    pub const MANDATORY_EXTENSION: u16 = 1010;
    /// The server met an unexpected condition.
    pub const INTERNAL_ERROR: u16 = 1011;
    /// The service is restarting (IANA registry).
    pub const SERVICE_RESTART: u16 = 1012;
    /// Temporary overload, try again later (IANA registry).
    pub const TRY_AGAIN_LATER: u16 = 1013;
    /// A gateway got an invalid response upstream (IANA registry).
    pub const BAD_GATEWAY: u16 = 1014;

    /// Whether `code` may appear in a Close frame on the wire.
    ///
    /// Valid: 1000-1003, 1007-1011 (§7.4.1), 1012-1014 (registered with IANA since RFC
    /// 6455: Service Restart, Try Again Later, Bad Gateway), 3000-3999 (registered by
    /// libraries and frameworks) and 4000-4999 (private use). Invalid: below 1000, 1004
    /// (reserved), 1005, 1006 and 1015 ("MUST NOT be set as a status code in a Close
    /// control frame"), the rest of 1016-2999 (reserved for this protocol and extensions,
    /// unassigned), and 5000 and above (undefined).
    pub fn is_valid(code: u16) -> bool {
        matches!(code, 1000..=1003 | 1007..=1014 | 3000..=4999)
    }
}

/// Limits of one connection. Every limit is checked against the length a header announces,
/// before any memory is reserved for the payload.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Config {
    /// The largest data frame payload accepted (1009 above it). Default 16 MiB.
    pub max_frame_bytes: usize,
    /// The largest message accepted, all fragments together (1009 above it). Default 16 MiB.
    pub max_message_bytes: usize,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            max_frame_bytes: 16 << 20,
            max_message_bytes: 16 << 20,
        }
    }
}

/// A fault that fails the connection: the close status code sent to the peer and why.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct CloseError {
    /// The status code of the Close frame (1002, 1007, 1009, ...).
    pub code: u16,
    /// A short reason, also sent as the Close frame's reason.
    pub reason: &'static str,
}

impl std::fmt::Display for CloseError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "websocket close {}: {}", self.code, self.reason)
    }
}

impl std::error::Error for CloseError {}

/// What [`Connection::read`] reports. Payloads borrow the read buffer or the connection's
/// message buffer, until the next call.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Event<'a> {
    /// A whole text message (valid UTF-8, all fragments joined).
    Text(&'a str),
    /// A whole binary message.
    Binary(&'a [u8]),
    /// A Ping; the Pong with the same payload has already been written to `out`.
    Ping(&'a [u8]),
    /// A Pong (answering our Ping, or an unsolicited heartbeat, §5.5.3).
    Pong(&'a [u8]),
    /// The peer's Close. If we had not sent one, the echo has been written to `out`.
    /// Either way the closing handshake is complete: flush `out` and close the TCP
    /// connection.
    Close {
        /// The status code, or `None` for an empty Close (reported as 1005 by APIs that
        /// need a number, §7.1.5).
        code: Option<u16>,
        /// The reason (valid UTF-8, possibly empty).
        reason: &'a str,
    },
}

/// Where the closing handshake stands.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Phase {
    /// Messages flow both ways.
    Open,
    /// We sent a Close; the peer's data frames are discarded until its Close arrives.
    CloseSent,
    /// Close sent and received: done.
    Closed,
    /// We failed the connection (sent a Close with an error code): done.
    Failed,
}

/// The type of the message being assembled.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Kind {
    Text,
    Binary,
}

/// A data frame whose payload is being streamed.
#[derive(Clone, Copy, Debug)]
struct Streaming {
    /// Payload bytes still to come.
    remaining: u64,
    key: [u8; 4],
    /// Payload bytes seen so far, modulo 4: where the mask stands.
    mask_offset: u8,
    /// Final fragment of its message.
    fin: bool,
    /// Payload is thrown away (we sent a Close).
    discard: bool,
}

impl Streaming {
    /// The payload of the data frame `header` (masked with `key`) starts.
    fn start(header: &FrameHeader, key: [u8; 4], discard: bool) -> Streaming {
        Streaming {
            remaining: header.payload_len,
            key,
            mask_offset: 0,
            fin: header.fin,
            discard,
        }
    }
}

/// What one pass of [`Connection::advance`] found; ranges index the read buffer.
enum Ready {
    Nothing,
    Text(Range<usize>),
    Binary(Range<usize>),
    Ping(Range<usize>),
    Pong(Range<usize>),
    Close(Option<u16>, Range<usize>),
    /// The message buffer holds a whole message of this kind.
    Assembled(Kind),
}

/// One WebSocket connection, server side, after a successful handshake.
///
/// It owns no buffer while idle: the message buffer exists only while a fragmented or
/// partially received message is assembled.
#[derive(Debug)]
pub struct Connection {
    config: Config,
    phase: Phase,
    /// The data frame being streamed, if any.
    frame: Option<Streaming>,
    /// The type of the fragmented message being assembled, if any.
    message: Option<Kind>,
    /// UTF-8 state of the text message being assembled.
    utf8: Utf8Validator,
    /// The message being assembled (empty, unallocated, otherwise).
    data: Vec<u8>,
    /// `data` was handed out in the last event and is freed on the next call.
    release: bool,
}

fn err(code: u16, reason: &'static str) -> CloseError {
    CloseError { code, reason }
}

const NOT_MASKED: CloseError = CloseError {
    code: close_code::PROTOCOL_ERROR,
    reason: "client frame not masked",
};
const BAD_UTF8: CloseError = CloseError {
    code: close_code::INVALID_PAYLOAD,
    reason: "invalid UTF-8 in text message",
};

impl Connection {
    /// A connection that has just completed its opening handshake.
    pub fn new(config: Config) -> Self {
        Connection {
            config,
            phase: Phase::Open,
            frame: None,
            message: None,
            utf8: Utf8Validator::new(),
            data: Vec::new(),
            release: false,
        }
    }

    /// Processes input.
    ///
    /// `buf` is mutable so payloads are unmasked in place. Returns the number of bytes
    /// consumed and at most one event; call again with the unconsumed rest (plus any new
    /// input) until it returns `(0, None)`, which means it needs more input. Data-frame
    /// payload is consumed as it arrives; an incomplete header or control frame is left
    /// in `buf`. A complete unfragmented message that is whole in `buf` is returned as a
    /// slice of `buf`; a message assembled from pieces as a slice of the connection's own
    /// buffer.
    ///
    /// Output the protocol forces (Pong, Close echo) is appended to `out`. On `Err` the
    /// Close frame with the error's code has been appended to `out` (unless we had
    /// already sent one) and the connection is dead: flush `out` and close TCP. After
    /// [`Event::Close`] likewise. Once closed or failed, `read` consumes nothing.
    pub fn read<'a>(
        &'a mut self,
        buf: &'a mut [u8],
        out: &mut Vec<u8>,
    ) -> Result<(usize, Option<Event<'a>>), CloseError> {
        if self.release {
            self.release = false;
            self.data = Vec::new();
        }
        if self.is_closed() {
            return Ok((0, None));
        }
        let (used, ready) = match self.advance(buf, out) {
            Ok(step) => step,
            Err(e) => return Err(self.fail(e, out)),
        };
        let buf: &'a [u8] = buf;
        let event = match ready {
            Ready::Nothing => None,
            Ready::Binary(r) => Some(Event::Binary(&buf[r])),
            Ready::Ping(r) => Some(Event::Ping(&buf[r])),
            Ready::Pong(r) => Some(Event::Pong(&buf[r])),
            Ready::Text(r) => match std::str::from_utf8(&buf[r]) {
                Ok(text) => Some(Event::Text(text)),
                Err(_) => return Err(self.fail(BAD_UTF8, out)),
            },
            // The reason was checked before the echo was written.
            Ready::Close(code, r) => Some(Event::Close {
                code,
                reason: std::str::from_utf8(&buf[r]).unwrap_or_default(),
            }),
            Ready::Assembled(kind) => {
                // Split the borrows: `data` is lent out for 'a, `phase` may still change.
                let Connection { data, phase, .. } = self;
                match kind {
                    Kind::Binary => Some(Event::Binary(&data[..])),
                    // The validator accepted every byte and ended complete, so this cannot
                    // fail; std's check gives us the &str without `unsafe`.
                    Kind::Text => match std::str::from_utf8(data) {
                        Ok(text) => Some(Event::Text(text)),
                        Err(_) => {
                            *phase = Phase::Failed;
                            write_close(out, Some(BAD_UTF8.code), BAD_UTF8.reason);
                            return Err(BAD_UTF8);
                        }
                    },
                }
            }
        };
        Ok((used, event))
    }

    /// Walks `buf` until an event is ready or the input runs out.
    fn advance(&mut self, buf: &mut [u8], out: &mut Vec<u8>) -> Result<(usize, Ready), CloseError> {
        let mut pos = 0;
        loop {
            if let Some(mut frame) = self.frame {
                // Inside a data frame's payload: take what has arrived.
                let available = buf.len() - pos;
                let n = usize::try_from(frame.remaining).map_or(available, |r| r.min(available));
                let chunk = &mut buf[pos..pos + n];
                pos += n;
                frame.remaining -= n as u64;
                if !frame.discard {
                    apply_mask(chunk, frame.key, usize::from(frame.mask_offset));
                    if self.message == Some(Kind::Text) {
                        // Fail fast, even mid-frame (§8.1).
                        self.utf8.feed(chunk).map_err(|_| BAD_UTF8)?;
                    }
                    self.data.extend_from_slice(chunk);
                }
                frame.mask_offset = ((usize::from(frame.mask_offset) + n) & 3) as u8;
                if frame.remaining > 0 {
                    self.frame = Some(frame);
                    return Ok((pos, Ready::Nothing));
                }
                self.frame = None;
                if frame.fin && !frame.discard {
                    if let Some(kind) = self.message.take() {
                        if kind == Kind::Text && !self.utf8.is_complete() {
                            return Err(BAD_UTF8);
                        }
                        log::trace!("ws recv {:?} message, {} bytes", kind, self.data.len());
                        self.release = true;
                        return Ok((pos, Ready::Assembled(kind)));
                    }
                }
                continue;
            }

            let Some((header, header_len)) = parse_header(&buf[pos..])? else {
                return Ok((pos, Ready::Nothing));
            };
            // "MUST be 0 unless an extension is negotiated that defines meanings for
            // non-zero values. If a nonzero value is received and none of the negotiated
            // extensions defines the meaning of such a nonzero value, the receiving endpoint
            // MUST _Fail the WebSocket Connection_." (§5.2)
            if header.rsv != 0 {
                return Err(err(close_code::PROTOCOL_ERROR, "reserved bits set"));
            }
            // "The server MUST close the connection upon receiving a frame that is not
            // masked." (§5.1)
            let key = header.mask.ok_or(NOT_MASKED)?;
            let start = pos + header_len;
            log::trace!(
                "ws recv {:?} fin={} len={}",
                header.opcode,
                header.fin,
                header.payload_len
            );

            if header.opcode.is_control() {
                // Control frames are handled whole (parse_header capped them at 125 bytes).
                let len = header.payload_len as usize;
                if buf.len() - start < len {
                    return Ok((pos, Ready::Nothing));
                }
                let end = start + len;
                pos = end;
                let payload = &mut buf[start..end];
                apply_mask(payload, key, 0);
                match header.opcode {
                    OpCode::Ping if self.phase == Phase::Open => {
                        // "Upon receipt of a Ping frame, an endpoint MUST send a Pong frame in
                        // response [...] A Pong frame sent in response to a Ping frame must
                        // have identical "Application data"" (§5.5.2, §5.5.3)
                        encode_frame(out, OpCode::Pong, payload);
                        return Ok((pos, Ready::Ping(start..end)));
                    }
                    OpCode::Pong if self.phase == Phase::Open => {
                        return Ok((pos, Ready::Pong(start..end)));
                    }
                    OpCode::Close => {
                        let code = self.on_close(payload, out)?;
                        let reason_start = if code.is_some() { start + 2 } else { start };
                        return Ok((pos, Ready::Close(code, reason_start..end)));
                    }
                    // After our Close, Pings and Pongs are not answered nor reported.
                    _ => continue,
                }
            }

            if self.phase != Phase::Open {
                // We sent a Close: skip the peer's data until its Close (§5.5.1: "After
                // sending a Close frame, the endpoint MUST NOT send any more data frames").
                pos = start;
                self.frame = Some(Streaming::start(&header, key, true));
                continue;
            }

            // Fragmentation (§5.4): "a Continuation frame [...] only follows a Text or
            // Binary frame without FIN", and the fragments of one message "MUST NOT" be
            // interleaved with another message's.
            let kind = match (header.opcode, self.message) {
                (OpCode::Continuation, Some(kind)) => kind,
                (OpCode::Continuation, None) => {
                    return Err(err(
                        close_code::PROTOCOL_ERROR,
                        "continuation frame without a message to continue",
                    ))
                }
                (_, Some(_)) => {
                    return Err(err(
                        close_code::PROTOCOL_ERROR,
                        "new message inside a fragmented message",
                    ))
                }
                (OpCode::Text, None) => Kind::Text,
                (_, None) => Kind::Binary,
            };

            // Limits, from the header alone, before storing anything.
            if header.payload_len > self.config.max_frame_bytes as u64 {
                return Err(err(close_code::MESSAGE_TOO_BIG, "frame too big"));
            }
            if (self.data.len() as u64).saturating_add(header.payload_len)
                > self.config.max_message_bytes as u64
            {
                return Err(err(close_code::MESSAGE_TOO_BIG, "message too big"));
            }
            let len = header.payload_len as usize; // fits: at most max_frame_bytes

            if header.fin && self.message.is_none() && buf.len() - start >= len {
                // A whole unfragmented message, complete in buf: hand it out in place.
                let end = start + len;
                apply_mask(&mut buf[start..end], key, 0);
                let ready = match kind {
                    Kind::Text => Ready::Text(start..end),
                    Kind::Binary => Ready::Binary(start..end),
                };
                return Ok((end, ready));
            }

            if self.message.is_none() {
                self.message = Some(kind);
                self.utf8 = Utf8Validator::new();
            }
            pos = start;
            self.frame = Some(Streaming::start(&header, key, false));
        }
    }

    /// Validates the peer's Close payload (already unmasked), echoes it if we have not sent
    /// a Close, and returns its status code.
    fn on_close(&mut self, payload: &[u8], out: &mut Vec<u8>) -> Result<Option<u16>, CloseError> {
        // "If there is a body, the first two bytes of the body MUST be a 2-byte unsigned
        // integer (in network byte order) representing a status code" (§5.5.1)
        let code = match payload {
            [] => None,
            [_] => return Err(err(close_code::PROTOCOL_ERROR, "close payload of 1 byte")),
            [hi, lo, reason @ ..] => {
                let code = u16::from_be_bytes([*hi, *lo]);
                if !close_code::is_valid(code) {
                    return Err(err(close_code::PROTOCOL_ERROR, "invalid close code"));
                }
                // "the body MAY contain UTF-8-encoded data" (§5.5.1); not UTF-8: 1007.
                if std::str::from_utf8(reason).is_err() {
                    return Err(err(close_code::INVALID_PAYLOAD, "close reason not UTF-8"));
                }
                Some(code)
            }
        };
        log::debug!("ws peer close {:?}", code);
        // "If an endpoint receives a Close frame and did not previously send a Close frame,
        // the endpoint MUST send a Close frame in response. [...] it is typical to echo the
        // status code it received." (§5.5.1)
        if self.phase == Phase::Open {
            write_close(out, code, "");
        }
        self.phase = Phase::Closed;
        self.drop_message();
        Ok(code)
    }

    /// Fails the connection (§7.1.7): sends a Close with the error's code unless one was
    /// already sent, and stops.
    fn fail(&mut self, e: CloseError, out: &mut Vec<u8>) -> CloseError {
        log::debug!("ws failing connection: {e}");
        if self.phase == Phase::Open {
            write_close(out, Some(e.code), e.reason);
        }
        self.phase = Phase::Failed;
        self.drop_message();
        e
    }

    fn drop_message(&mut self) {
        self.frame = None;
        self.message = None;
        self.data = Vec::new();
        self.release = false;
    }

    /// Sends a text message as one frame. Returns false, writing nothing, once a Close was
    /// sent (§5.5.1).
    pub fn send_text(&mut self, out: &mut Vec<u8>, text: &str) -> bool {
        self.send(out, OpCode::Text, text.as_bytes())
    }

    /// Sends a binary message as one frame. Returns false, writing nothing, once a Close
    /// was sent.
    pub fn send_binary(&mut self, out: &mut Vec<u8>, data: &[u8]) -> bool {
        self.send(out, OpCode::Binary, data)
    }

    /// Sends a Ping. Returns false, writing nothing, when `data` is over 125 bytes or a
    /// Close was sent.
    pub fn send_ping(&mut self, out: &mut Vec<u8>, data: &[u8]) -> bool {
        data.len() <= MAX_CONTROL_PAYLOAD && self.send(out, OpCode::Ping, data)
    }

    fn send(&mut self, out: &mut Vec<u8>, opcode: OpCode, payload: &[u8]) -> bool {
        if self.phase != Phase::Open {
            return false;
        }
        encode_frame(out, opcode, payload);
        true
    }

    /// Starts the closing handshake (§7.1.2) with a status `code` and a `reason`, cut to
    /// 123 bytes on a character boundary. Returns false, writing nothing, when a Close was
    /// already sent or `code` may not be sent ([`close_code::is_valid`]). Then keep
    /// reading: data frames are discarded until the peer's [`Event::Close`].
    pub fn close(&mut self, out: &mut Vec<u8>, code: u16, reason: &str) -> bool {
        if self.phase != Phase::Open || !close_code::is_valid(code) {
            return false;
        }
        write_close(out, Some(code), reason);
        self.phase = Phase::CloseSent;
        // Any message in assembly is now moot.
        self.message = None;
        self.data = Vec::new();
        self.release = false;
        if let Some(frame) = &mut self.frame {
            frame.discard = true;
        }
        true
    }

    /// True once the connection is over: Close sent and received, or failed.
    pub fn is_closed(&self) -> bool {
        matches!(self.phase, Phase::Closed | Phase::Failed)
    }

    /// True once we have sent a Close (ours, an echo, or a failure).
    pub fn close_sent(&self) -> bool {
        self.phase != Phase::Open
    }
}

/// Appends a Close frame: no body for `None`, else the code and `reason` cut to fit 125
/// bytes on a char boundary.
fn write_close(out: &mut Vec<u8>, code: Option<u16>, reason: &str) {
    let mut body = [0u8; MAX_CONTROL_PAYLOAD];
    let len = match code {
        None => 0,
        Some(code) => {
            let mut cut = reason.len().min(MAX_CONTROL_PAYLOAD - 2);
            while !reason.is_char_boundary(cut) {
                cut -= 1;
            }
            body[..2].copy_from_slice(&code.to_be_bytes());
            body[2..2 + cut].copy_from_slice(&reason.as_bytes()[..cut]);
            2 + cut
        }
    };
    encode_frame(out, OpCode::Close, &body[..len]);
}

#[cfg(test)]
mod tests;
