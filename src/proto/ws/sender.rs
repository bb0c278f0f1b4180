//! The sending half of a WebSocket connection (RFC 6455 §5.5.1, §7.1.2): the one owner of
//! the closing-handshake state, of the connection's role (a client masks every frame it
//! sends, §5.3) and of permessage-deflate's sending side (RFC 7692 §7.2.1). The receiving
//! half, [`Receiver`](super::Receiver), reads and updates it.
//!
//! A message of at least [`MIN_COMPRESSED`] bytes goes out compressed (RSV1 set) when the
//! extension was negotiated: with the loop's shared compressor for its window size
//! ([`Codec`], at its direct level: this message is for one connection), or, with context
//! takeover, the connection's own. Without takeover a message
//! that does not shrink is sent as it is; with takeover it is always sent compressed, as the
//! compressor's context now holds it and the peer's must too.

use super::close::close_code;
use super::deflate::{Codec, Deflater, LEVEL, MIN_COMPRESSED};
use super::frame::{close_body, write_frame, OpCode, MAX_CONTROL_PAYLOAD};
use super::mask::MaskKeys;

/// RSV1: the first frame of a compressed message (RFC 7692 §6).
pub const RSV1: u8 = 0b100;

/// Where the closing handshake stands; owned by the [`Sender`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum CloseProgress {
    /// Messages flow both ways.
    Open,
    /// We sent a Close; the peer's data frames are discarded until its Close arrives.
    CloseSent,
    /// Close sent and received: done.
    Closed,
    /// We failed the connection (sent a Close with an error code): done.
    Failed,
}

/// The sending half: the one owner of the closing-handshake state.
///
/// Its size does not depend on what was negotiated: a connection with permessage-deflate
/// (and no context takeover) holds no more memory than one without.
#[derive(Debug)]
pub struct Sender {
    pub(super) progress: CloseProgress,
    /// Our compressor's window bits when permessage-deflate was negotiated, else 0.
    deflate_bits: u8,
    /// What only some connections have, in one box (a server connection without context
    /// takeover has none, and pays one pointer).
    extra: Option<Box<Extra>>,
}

/// The rarer parts of a [`Sender`].
#[derive(Debug, Default)]
struct Extra {
    /// Our own compressor, when we keep its context between messages (opt-in).
    own: Option<Deflater>,
    /// A client's masking keys; `None` on the server side ("A server MUST NOT mask any
    /// frames", §5.1).
    keys: Option<MaskKeys>,
}

impl Default for Sender {
    fn default() -> Self {
        Sender {
            progress: CloseProgress::Open,
            deflate_bits: 0,
            extra: None,
        }
    }
}

impl Sender {
    /// The sending half of a client: every frame masked with a key from `keys`.
    pub fn client(keys: MaskKeys) -> Sender {
        Sender {
            extra: Some(Box::new(Extra {
                own: None,
                keys: Some(keys),
            })),
            ..Sender::default()
        }
    }

    /// Compresses messages (permessage-deflate) with a window of `window_bits`; with
    /// `takeover` the connection gets its own compressor that keeps its context (at
    /// [`LEVEL`]; see [`with_deflate_level`](Self::with_deflate_level)).
    pub fn with_deflate(self, window_bits: u8, takeover: bool) -> Sender {
        self.with_deflate_level(window_bits, takeover, LEVEL)
    }

    /// [`with_deflate`](Self::with_deflate), the connection's own compressor (with
    /// `takeover`) at `level`.
    pub fn with_deflate_level(mut self, window_bits: u8, takeover: bool, level: u32) -> Sender {
        self.deflate_bits = window_bits.clamp(9, 15);
        if takeover {
            let own = Deflater::new(self.deflate_bits, level, true);
            self.extra.get_or_insert_with(Box::default).own = Some(own);
        } else if let Some(extra) = &mut self.extra {
            extra.own = None;
        }
        self
    }

    /// The window bits of a connection whose broadcasts may share the loop's compressed
    /// frames: permessage-deflate without context takeover, on the server side. `None`
    /// otherwise (it takes the uncompressed frame).
    pub fn shared_deflate(&self) -> Option<u8> {
        let own_state = self
            .extra
            .as_ref()
            .is_some_and(|e| e.own.is_some() || e.keys.is_some());
        (self.deflate_bits != 0 && !own_state).then_some(self.deflate_bits)
    }

    /// True for a client's sending half (it masks its frames).
    pub fn is_client(&self) -> bool {
        self.extra.as_ref().is_some_and(|e| e.keys.is_some())
    }

    /// True when permessage-deflate was negotiated.
    pub fn deflates(&self) -> bool {
        self.deflate_bits != 0
    }

    /// Sends a text message as one frame. Returns false, writing nothing, once a Close was
    /// sent (§5.5.1).
    pub fn send_text(&mut self, out: &mut Vec<u8>, text: &str, codec: &mut Codec) -> bool {
        self.send(out, OpCode::Text, text.as_bytes(), codec)
    }

    /// Sends a binary message as one frame. Returns false, writing nothing, once a Close
    /// was sent.
    pub fn send_binary(&mut self, out: &mut Vec<u8>, data: &[u8], codec: &mut Codec) -> bool {
        self.send(out, OpCode::Binary, data, codec)
    }

    /// Sends a Ping. Returns false, writing nothing, when `data` is over 125 bytes or a
    /// Close was sent.
    pub fn send_ping(&mut self, out: &mut Vec<u8>, data: &[u8]) -> bool {
        if self.progress != CloseProgress::Open || data.len() > MAX_CONTROL_PAYLOAD {
            return false;
        }
        self.frame(out, 0, OpCode::Ping, data);
        true
    }

    /// Sends one frame of any data or control `opcode` (control payloads at most 125
    /// bytes); a data message may go out compressed. Returns false, writing nothing, once
    /// a Close was sent.
    pub fn send(
        &mut self,
        out: &mut Vec<u8>,
        opcode: OpCode,
        payload: &[u8],
        codec: &mut Codec,
    ) -> bool {
        if self.progress != CloseProgress::Open
            || opcode == OpCode::Close
            || (opcode.is_control() && payload.len() > MAX_CONTROL_PAYLOAD)
        {
            return false;
        }
        if opcode.is_control() || self.deflate_bits == 0 || payload.len() < MIN_COMPRESSED {
            self.frame(out, 0, opcode, payload);
            return true;
        }
        let (own, keys) = match self.extra.as_deref_mut() {
            Some(Extra { own, keys }) => (own.as_mut(), keys.as_mut()),
            None => (None, None),
        };
        let takeover = own.is_some();
        let packed = match own {
            Some(own) => codec.compress_with(own, payload),
            None => codec.compress(self.deflate_bits, payload),
        };
        if packed.len() < payload.len() || takeover {
            let mask = keys.map(|k| k.next_key());
            write_frame(out, RSV1, opcode, mask, packed);
        } else {
            self.frame(out, 0, opcode, payload);
        }
        codec.trim();
        true
    }

    /// Writes one whole frame, masked when we are the client.
    pub(super) fn frame(&mut self, out: &mut Vec<u8>, rsv: u8, opcode: OpCode, payload: &[u8]) {
        let mask = self
            .extra
            .as_mut()
            .and_then(|e| e.keys.as_mut())
            .map(|k| k.next_key());
        write_frame(out, rsv, opcode, mask, payload);
    }

    /// Writes a Close frame with `code` (none: an empty body) and `reason`.
    pub(super) fn close_frame(&mut self, out: &mut Vec<u8>, code: Option<u16>, reason: &str) {
        let (body, len) = close_body(code, reason);
        self.frame(out, 0, OpCode::Close, &body[..len]);
    }

    /// Starts the closing handshake (§7.1.2) with a status `code` and a `reason`, cut to
    /// 123 bytes on a character boundary. Returns false, writing nothing, when a Close was
    /// already sent or `code` may not be sent ([`close_code::is_valid`]). The receiving
    /// half then discards data frames until the peer's [`WsEvent::Close`](super::WsEvent::Close).
    pub fn close(&mut self, out: &mut Vec<u8>, code: u16, reason: &str) -> bool {
        if self.progress != CloseProgress::Open || !close_code::is_valid(code) {
            return false;
        }
        self.close_frame(out, Some(code), reason);
        self.progress = CloseProgress::CloseSent;
        true
    }

    /// True once the connection is over: Close sent and received, or failed.
    pub fn is_closed(&self) -> bool {
        matches!(self.progress, CloseProgress::Closed | CloseProgress::Failed)
    }

    /// True once we have sent a Close (ours, an echo, or a failure).
    pub fn close_sent(&self) -> bool {
        self.progress != CloseProgress::Open
    }
}
