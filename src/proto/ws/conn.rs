//! One connection after the handshake: frames in, messages out, and the closing handshake
//! (RFC 6455 §5.1-§5.6, §7), on the server or the client side, with permessage-deflate
//! (RFC 7692 §6, §7.2.2) when it was negotiated.
//!
//! # Theory of operation
//!
//! [`Receiver::read`] is handed the driver's read buffer. It walks it frame by frame:
//!
//! * At a frame boundary it parses a header ([`parse_header`]) and applies the rules of its
//!   role: a server requires masked frames, a client unmasked ones (§5.1); RSV2 and RSV3
//!   must be zero, and RSV1 too unless permessage-deflate was negotiated, and then only on
//!   the first frame of a data message (RFC 7692 §6.1); fragments must follow each other
//!   properly (§5.4); the frame and message must fit the [`WsLimits`] limits, checked
//!   against the header's length before a single payload byte is stored.
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
//! * A **compressed message** (RSV1 on its first frame) is assembled compressed (its size
//!   counts against the limits as it arrives), then inflated in one go when its last frame
//!   is in, with the loop's shared decompressor ([`Codec`]) or, with context takeover, the
//!   connection's own. The inflated size counts against the message limit while inflating:
//!   past it the connection fails with 1009 after at most the limit's worth of output; a
//!   corrupt DEFLATE stream fails it with 1007. A text message's UTF-8 is checked once it
//!   is inflated.
//!
//! Closing (§7): a Close from the peer is validated (status code, UTF-8 reason), echoed
//! with the same status code, and reported; after it `read` consumes nothing. A close
//! started by us ([`Sender::close`]) makes further data frames be discarded, unread,
//! until the peer's Close arrives. On any protocol fault `read` returns the error after
//! writing the Close frame carrying its code ("_Fail the WebSocket Connection_", §7.1.7);
//! the connection is then dead. In both cases the server closes the TCP connection
//! first once `out` is flushed (§7.1.1).

use std::ops::Range;

pub use super::close::{close_code, CloseError};
use super::deflate::{Codec, InflateError, Inflater};
use super::frame::{parse_header, FrameHeader, OpCode};
use super::mask::apply_mask;
use super::sender::{CloseProgress, Sender, RSV1};
use super::utf8::Utf8Validator;

mod assembly;
mod connection;
pub use super::limits::WsLimits;
use assembly::Assembly;
pub use connection::Connection;

/// What [`Connection::read`] reports. Payloads borrow the read buffer or the connection's
/// message buffer, until the next call.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum WsEvent<'a> {
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
    /// The masking key (frames from a client); `None` for a server's frames.
    key: Option<[u8; 4]>,
    /// Payload bytes seen so far, modulo 4: where the mask stands.
    mask_offset: u8,
    /// Final fragment of its message.
    fin: bool,
    /// Payload is thrown away (we sent a Close).
    discard: bool,
}

impl Streaming {
    /// The payload of the data frame `header` (masked with `key`) starts.
    fn start(header: &FrameHeader, key: Option<[u8; 4]>, discard: bool) -> Streaming {
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

/// The receiving half of a WebSocket connection: frames in, messages out.
///
/// It owns no buffer while idle: the message buffer exists only while a fragmented or
/// partially received message is assembled. While the application handles a message, the
/// driver lends it this half only; sends and closes go through the [`Sender`], so a Close
/// requested inside a callback takes effect at once and the next [`read`](Self::read)
/// already discards what follows.
#[derive(Debug)]
pub struct Receiver {
    config: WsLimits,
    /// The message or frame in progress, if any.
    asm: Option<Box<Assembly>>,
    /// The connection's own decompressor, which keeps its context (the peer's takeover);
    /// `None` with the loop's shared one, or without permessage-deflate.
    own_inflater: Option<Box<Inflater>>,
    /// We are the client: frames must arrive unmasked.
    client: bool,
    /// permessage-deflate was negotiated (without it, RSV1 is an error).
    deflate: bool,
    /// The assembled message was handed out in the last event and is freed on the next call.
    release: bool,
}

/// Most bytes reserved for a streamed frame's payload before they arrive.
const STREAM_RESERVE: usize = 64 * 1024;

fn err(code: u16, reason: &'static str) -> CloseError {
    CloseError { code, reason }
}

const NOT_MASKED: CloseError = CloseError {
    code: close_code::PROTOCOL_ERROR,
    reason: "client frame not masked",
};
const MASKED: CloseError = CloseError {
    code: close_code::PROTOCOL_ERROR,
    reason: "server frame masked",
};
const BAD_UTF8: CloseError = CloseError {
    code: close_code::INVALID_PAYLOAD,
    reason: "invalid UTF-8 in text message",
};

impl Receiver {
    /// The receiving half of a server-side connection that has just completed its opening
    /// handshake.
    pub fn new(config: WsLimits) -> Self {
        Receiver {
            config,
            asm: None,
            own_inflater: None,
            client: false,
            deflate: false,
            release: false,
        }
    }

    /// The receiving half of a client: the server's frames must be unmasked.
    pub fn client(config: WsLimits) -> Self {
        Receiver {
            client: true,
            ..Receiver::new(config)
        }
    }

    /// Inflates compressed messages (permessage-deflate was negotiated). With `takeover`
    /// the peer keeps its compression context, so this connection gets its own
    /// decompressor for windows of `window_bits`; otherwise the loop's shared one serves.
    pub fn with_deflate(mut self, takeover: bool, window_bits: u8) -> Self {
        self.deflate = true;
        self.own_inflater = takeover.then(|| Box::new(Inflater::new(window_bits, true)));
        self
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
    /// [`WsEvent::Close`] likewise. Once closed or failed, `read` consumes nothing.
    ///
    /// Control frames, Close echoes and failures consult and update `send`, the one owner
    /// of the closing state: once `send` has sent a Close (perhaps from a callback since the
    /// last call), data frames are discarded, unread, until the peer's Close. `codec`
    /// inflates compressed messages (unless the connection has its own decompressor).
    pub fn read<'a>(
        &'a mut self,
        send: &mut Sender,
        codec: &mut Codec,
        buf: &'a mut [u8],
        out: &mut Vec<u8>,
    ) -> Result<(usize, Option<WsEvent<'a>>), CloseError> {
        if self.release {
            self.release = false;
            self.asm = None;
        }
        if send.is_closed() {
            return Ok((0, None));
        }
        if send.close_sent() {
            // Any message in assembly is now moot (§5.5.1).
            self.drop_message_keep_frame();
        }
        let (used, ready) = match self.advance(send, codec, buf, out) {
            Ok(step) => step,
            Err(e) => return Err(self.fail(send, e, out)),
        };
        let buf: &'a [u8] = buf;
        let event = match ready {
            Ready::Nothing => None,
            Ready::Binary(r) => Some(WsEvent::Binary(&buf[r])),
            Ready::Ping(r) => Some(WsEvent::Ping(&buf[r])),
            Ready::Pong(r) => Some(WsEvent::Pong(&buf[r])),
            Ready::Text(r) => match std::str::from_utf8(&buf[r]) {
                Ok(text) => Some(WsEvent::Text(text)),
                Err(_) => return Err(self.fail(send, BAD_UTF8, out)),
            },
            // The reason was checked before the echo was written.
            Ready::Close(code, r) => Some(WsEvent::Close {
                code,
                reason: std::str::from_utf8(&buf[r]).unwrap_or_default(),
            }),
            Ready::Assembled(kind) => {
                let Some(asm) = self.asm.as_deref() else {
                    return Ok((used, None)); // unreachable: an assembled message is kept
                };
                match kind {
                    Kind::Binary => Some(WsEvent::Binary(&asm.data[..])),
                    Kind::Text => match asm.text() {
                        Some(text) => Some(WsEvent::Text(text)),
                        None => {
                            send.progress = CloseProgress::Failed;
                            send.close_frame(out, Some(BAD_UTF8.code), BAD_UTF8.reason);
                            return Err(BAD_UTF8);
                        }
                    },
                }
            }
        };
        Ok((used, event))
    }

    /// Walks `buf` until an event is ready or the input runs out.
    fn advance(
        &mut self,
        send: &mut Sender,
        codec: &mut Codec,
        buf: &mut [u8],
        out: &mut Vec<u8>,
    ) -> Result<(usize, Ready), CloseError> {
        let mut pos = 0;
        loop {
            if let Some(mut frame) = self.asm.as_ref().and_then(|a| a.frame) {
                // Inside a data frame's payload: take what has arrived.
                let available = buf.len() - pos;
                let n = usize::try_from(frame.remaining).map_or(available, |r| r.min(available));
                let chunk = &mut buf[pos..pos + n];
                pos += n;
                frame.remaining -= n as u64;
                let asm = self.asm.get_or_insert_with(Box::default);
                if !frame.discard {
                    if let Some(key) = frame.key {
                        apply_mask(chunk, key, usize::from(frame.mask_offset));
                    }
                    if asm.message == Some(Kind::Text) && !asm.compressed {
                        // Fail fast, even mid-frame (§8.1).
                        asm.utf8.feed(chunk).map_err(|_| BAD_UTF8)?;
                    }
                    asm.data.extend_from_slice(chunk);
                }
                frame.mask_offset = ((usize::from(frame.mask_offset) + n) & 3) as u8;
                if frame.remaining > 0 {
                    asm.frame = Some(frame);
                    return Ok((pos, Ready::Nothing));
                }
                asm.frame = None;
                if frame.fin && !frame.discard {
                    if let Some(kind) = asm.message.take() {
                        if asm.compressed {
                            asm.compressed = false;
                            let packed = std::mem::take(&mut asm.data);
                            self.inflate_into_data(codec, &packed)?;
                        } else if kind == Kind::Text {
                            if !asm.utf8.is_complete() {
                                return Err(BAD_UTF8);
                            }
                            asm.validated = true;
                        }
                        log::trace!("ws recv {:?} message, {} bytes", kind, self.data_len());
                        self.release = true;
                        return Ok((pos, Ready::Assembled(kind)));
                    }
                }
                if asm.message.is_none() {
                    // A discarded frame ended between messages: nothing is in progress.
                    self.asm = None;
                }
                continue;
            }

            let Some((header, header_len)) = parse_header(&buf[pos..])? else {
                return Ok((pos, Ready::Nothing));
            };
            // "MUST be 0 unless an extension is negotiated that defines meanings for
            // non-zero values. If a nonzero value is received and none of the negotiated
            // extensions defines the meaning of such a nonzero value, the receiving endpoint
            // MUST _Fail the WebSocket Connection_." (§5.2) permessage-deflate gives RSV1 a
            // meaning on the first frame of a data message only (RFC 7692 §6, §6.1).
            let rsv1 = header.rsv & RSV1 != 0;
            if header.rsv & !RSV1 != 0 {
                return Err(err(close_code::PROTOCOL_ERROR, "reserved bits set"));
            }
            if rsv1 {
                let why = match header.opcode {
                    _ if !self.deflate => Some("RSV1 set without permessage-deflate"),
                    op if op.is_control() => Some("RSV1 set on a control frame"),
                    OpCode::Continuation => Some("RSV1 set on a continuation frame"),
                    _ => None,
                };
                if let Some(why) = why {
                    return Err(err(close_code::PROTOCOL_ERROR, why));
                }
            }
            // "The server MUST close the connection upon receiving a frame that is not
            // masked. [...] A client MUST close a connection if it detects a masked
            // frame." (§5.1)
            let key = match (self.client, header.mask) {
                (false, None) => return Err(NOT_MASKED),
                (true, Some(_)) => return Err(MASKED),
                (_, key) => key,
            };
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
                if let Some(key) = key {
                    apply_mask(payload, key, 0);
                }
                match header.opcode {
                    OpCode::Ping if send.progress == CloseProgress::Open => {
                        // "Upon receipt of a Ping frame, an endpoint MUST send a Pong frame in
                        // response [...] A Pong frame sent in response to a Ping frame must
                        // have identical "Application data"" (§5.5.2, §5.5.3)
                        send.frame(out, 0, OpCode::Pong, payload);
                        return Ok((pos, Ready::Ping(start..end)));
                    }
                    OpCode::Pong if send.progress == CloseProgress::Open => {
                        return Ok((pos, Ready::Pong(start..end)));
                    }
                    OpCode::Close => {
                        let code = self.on_close(send, payload, out)?;
                        let reason_start = if code.is_some() { start + 2 } else { start };
                        return Ok((pos, Ready::Close(code, reason_start..end)));
                    }
                    // After our Close, Pings and Pongs are not answered nor reported.
                    _ => continue,
                }
            }

            if send.progress != CloseProgress::Open {
                // We sent a Close: skip the peer's data until its Close (§5.5.1: "After
                // sending a Close frame, the endpoint MUST NOT send any more data frames").
                pos = start;
                self.asm.get_or_insert_with(Box::default).frame =
                    Some(Streaming::start(&header, key, true));
                continue;
            }

            // Fragmentation (§5.4): "a Continuation frame [...] only follows a Text or
            // Binary frame without FIN", and the fragments of one message "MUST NOT" be
            // interleaved with another message's.
            let message = self.asm.as_ref().and_then(|a| a.message);
            let kind = match (header.opcode, message) {
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
            if (self.data_len() as u64).saturating_add(header.payload_len)
                > self.config.max_message_bytes as u64
            {
                return Err(err(close_code::MESSAGE_TOO_BIG, "message too big"));
            }
            let len = header.payload_len as usize; // fits: at most max_frame_bytes

            if header.fin && message.is_none() && buf.len() - start >= len {
                // A whole unfragmented message, complete in buf: hand it out in place (or
                // inflate it from there).
                let end = start + len;
                if let Some(key) = key {
                    apply_mask(&mut buf[start..end], key, 0);
                }
                if rsv1 {
                    self.inflate_into_data(codec, &buf[start..end])?;
                    log::trace!("ws recv compressed {kind:?}, {len} -> {}", self.data_len());
                    self.release = true;
                    return Ok((end, Ready::Assembled(kind)));
                }
                let ready = match kind {
                    Kind::Text => Ready::Text(start..end),
                    Kind::Binary => Ready::Binary(start..end),
                };
                return Ok((end, ready));
            }

            let asm = self.asm.get_or_insert_with(Box::default);
            if asm.message.is_none() {
                asm.message = Some(kind);
                asm.compressed = rsv1;
                asm.utf8 = Utf8Validator::new();
            }
            pos = start;
            // Room for this frame's payload at once (it fits the limits, checked above),
            // but at most STREAM_RESERVE ahead of what has arrived: a peer announcing a big
            // frame and sending nothing costs little.
            asm.data.reserve(len.min(STREAM_RESERVE));
            asm.frame = Some(Streaming::start(&header, key, false));
        }
    }

    /// Validates the peer's Close payload (already unmasked), echoes it if we have not sent
    /// a Close, and returns its status code.
    fn on_close(
        &mut self,
        send: &mut Sender,
        payload: &[u8],
        out: &mut Vec<u8>,
    ) -> Result<Option<u16>, CloseError> {
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
        if send.progress == CloseProgress::Open {
            send.close_frame(out, code, "");
        }
        send.progress = CloseProgress::Closed;
        self.drop_message();
        Ok(code)
    }

    /// Fails the connection (§7.1.7): sends a Close with the error's code unless one was
    /// already sent, and stops.
    fn fail(&mut self, send: &mut Sender, e: CloseError, out: &mut Vec<u8>) -> CloseError {
        log::debug!("ws failing connection: {e}");
        if send.progress == CloseProgress::Open {
            send.close_frame(out, Some(e.code), e.reason);
        }
        send.progress = CloseProgress::Failed;
        self.drop_message();
        e
    }

    /// Inflates a whole compressed message into the (empty) message buffer, within the
    /// message limit.
    fn inflate_into_data(&mut self, codec: &mut Codec, packed: &[u8]) -> Result<(), CloseError> {
        let limit = self.config.max_message_bytes;
        let inflater = match &mut self.own_inflater {
            Some(own) => own,
            None if self.deflate => codec.inflater(),
            None => return Err(err(close_code::INTERNAL_ERROR, "no decompressor")),
        };
        let asm = self.asm.get_or_insert_with(Box::default);
        asm.data.clear();
        asm.validated = false;
        inflater
            .inflate(packed, limit, &mut asm.data)
            .map_err(|e| match e {
                InflateError::TooBig => err(close_code::MESSAGE_TOO_BIG, "message too big"),
                InflateError::Corrupt => {
                    err(close_code::INVALID_PAYLOAD, "invalid compressed data")
                }
            })
    }

    fn drop_message(&mut self) {
        self.asm = None;
        self.release = false;
    }

    /// Capacity of the message buffer (0 while nothing is in progress).
    #[cfg(test)]
    fn data_capacity(&self) -> usize {
        self.asm.as_ref().map_or(0, |a| a.data.capacity())
    }

    /// Bytes of the message being assembled (or just assembled).
    fn data_len(&self) -> usize {
        self.asm.as_ref().map_or(0, |a| a.data.len())
    }

    /// Forgets the message being assembled; a data frame being streamed is now skipped.
    fn drop_message_keep_frame(&mut self) {
        self.release = false;
        let Some(asm) = &mut self.asm else { return };
        if let Some(mut frame) = asm.frame {
            frame.discard = true;
            **asm = Assembly {
                frame: Some(frame),
                ..Assembly::default()
            };
        } else {
            self.asm = None;
        }
    }
}

#[cfg(test)]
mod tests;
