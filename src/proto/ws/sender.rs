//! The sending half of a server-side WebSocket connection (RFC 6455 §5.5.1, §7.1.2): the
//! one owner of the closing-handshake state. The receiving half,
//! [`Receiver`](super::Receiver), reads and updates it.

use super::close::close_code;
use super::frame::{encode_frame, write_close, OpCode, MAX_CONTROL_PAYLOAD};

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
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Sender {
    pub(super) progress: CloseProgress,
}

impl Default for Sender {
    fn default() -> Self {
        Sender {
            progress: CloseProgress::Open,
        }
    }
}

impl Sender {
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

    /// Sends one frame of any data or control `opcode` (control payloads at most 125
    /// bytes). Returns false, writing nothing, once a Close was sent.
    pub fn send(&mut self, out: &mut Vec<u8>, opcode: OpCode, payload: &[u8]) -> bool {
        if self.progress != CloseProgress::Open
            || opcode == OpCode::Close
            || (opcode.is_control() && payload.len() > MAX_CONTROL_PAYLOAD)
        {
            return false;
        }
        encode_frame(out, opcode, payload);
        true
    }

    /// Starts the closing handshake (§7.1.2) with a status `code` and a `reason`, cut to
    /// 123 bytes on a character boundary. Returns false, writing nothing, when a Close was
    /// already sent or `code` may not be sent ([`close_code::is_valid`]). The receiving
    /// half then discards data frames until the peer's [`WsEvent::Close`](super::WsEvent::Close).
    pub fn close(&mut self, out: &mut Vec<u8>, code: u16, reason: &str) -> bool {
        if self.progress != CloseProgress::Open || !close_code::is_valid(code) {
            return false;
        }
        write_close(out, Some(code), reason);
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
