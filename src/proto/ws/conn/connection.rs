//! [`Connection`]: both halves of a WebSocket and a [`Codec`] of its own, for code that
//! does not split them (tests, fuzzing, a program with one connection).

use super::{CloseError, Receiver, WsEvent, WsLimits};
use crate::proto::ws::deflate::Codec;
use crate::proto::ws::mask::MaskKeys;
use crate::proto::ws::sender::Sender;

/// One WebSocket connection after a successful handshake: both halves together, with a
/// [`Codec`] of its own, for code that does not need to split them (tests, fuzzing, a
/// program with one connection).
#[derive(Debug)]
pub struct Connection {
    /// The receiving half.
    pub receiver: Receiver,
    /// The sending half.
    pub sender: Sender,
    /// The compressors and decompressor (used when permessage-deflate was negotiated).
    pub codec: Codec,
}

impl Connection {
    /// A server-side connection that has just completed its opening handshake.
    pub fn new(config: WsLimits) -> Self {
        Connection::from_halves(Receiver::new(config), Sender::default())
    }

    /// A client-side connection: frames masked with keys from `keys`.
    pub fn client(config: WsLimits, keys: MaskKeys) -> Self {
        Connection::from_halves(Receiver::client(config), Sender::client(keys))
    }

    /// Both halves, set up as the caller wants (e.g. with permessage-deflate).
    pub fn from_halves(receiver: Receiver, sender: Sender) -> Self {
        Connection {
            receiver,
            sender,
            codec: Codec::new(),
        }
    }

    /// [`Receiver::read`] with this connection's sender and codec.
    pub fn read<'a>(
        &'a mut self,
        buf: &'a mut [u8],
        out: &mut Vec<u8>,
    ) -> Result<(usize, Option<WsEvent<'a>>), CloseError> {
        self.receiver
            .read(&mut self.sender, &mut self.codec, buf, out)
    }

    /// [`Sender::send_text`].
    pub fn send_text(&mut self, out: &mut Vec<u8>, text: &str) -> bool {
        self.sender.send_text(out, text, &mut self.codec)
    }

    /// [`Sender::send_binary`].
    pub fn send_binary(&mut self, out: &mut Vec<u8>, data: &[u8]) -> bool {
        self.sender.send_binary(out, data, &mut self.codec)
    }

    /// [`Sender::send_ping`].
    pub fn send_ping(&mut self, out: &mut Vec<u8>, data: &[u8]) -> bool {
        self.sender.send_ping(out, data)
    }

    /// [`Sender::close`].
    pub fn close(&mut self, out: &mut Vec<u8>, code: u16, reason: &str) -> bool {
        self.sender.close(out, code, reason)
    }

    /// [`Sender::is_closed`].
    pub fn is_closed(&self) -> bool {
        self.sender.is_closed()
    }

    /// [`Sender::close_sent`].
    pub fn close_sent(&self) -> bool {
        self.sender.close_sent()
    }
}
