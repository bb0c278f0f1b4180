//! The WebSocket and broadcast side of a [`ServerConn`]: the split halves, sends, the
//! closing handshake and the slow-reader decision.

use std::rc::Rc;

use super::{Closing, Deadline, Env, Message, Mode, ServerConn, SlowPolicy};
use crate::proto::fanout::{self, Transport};
use crate::proto::http1;
use crate::proto::topic::Page;
use crate::proto::ws::{self, close_code, OpCode};

/// What became of a broadcast offered to a connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Delivery {
    /// Queued.
    Queued,
    /// Not queued: the connection is closing, or it is a slow reader under
    /// [`SlowPolicy::DropMessages`].
    Dropped,
    /// Not queued, and the connection is now ending as a slow reader (a WebSocket with
    /// close 1008, an SSE stream with its last chunk): tell the application.
    Slow,
}

impl ServerConn {
    /// Which shared encoding broadcasts to this connection use.
    pub fn transport(&self) -> Transport {
        match &self.mode {
            // A client's frames are masked one by one: it takes no shared bytes.
            Mode::Ws { send, .. } if send.is_client() => Transport::None,
            Mode::Ws { send, .. } => match send.shared_deflate() {
                Some(bits) => Transport::WsDeflate(bits),
                None => Transport::WebSocket,
            },
            Mode::Sse { chunked: true } => Transport::SseChunked,
            Mode::Sse { chunked: false } => Transport::SsePlain,
            Mode::Http { .. } | Mode::Dialing(_) => Transport::None,
        }
    }

    /// True while this is a WebSocket that may still send messages (no Close sent).
    pub fn ws_open(&self) -> bool {
        matches!(&self.mode, Mode::Ws { send, .. } if !send.close_sent()) && self.is_open()
    }

    /// Lends out the WebSocket's receiving half (while the application handles messages).
    /// `None` for other kinds, or while it is lent.
    pub fn take_receiver(&mut self) -> Option<Box<ws::Receiver>> {
        match &mut self.mode {
            Mode::Ws { recv, .. } => recv.take(),
            _ => None,
        }
    }

    /// Gives the receiving half back.
    pub fn put_receiver(&mut self, r: Box<ws::Receiver>) {
        if let Mode::Ws { recv, .. } = &mut self.mode {
            *recv = Some(r);
        }
    }

    /// True when WebSocket input is over (closing handshake done or failed, or closing):
    /// further input is to be discarded.
    pub fn ws_input_done(&self) -> bool {
        match &self.mode {
            Mode::Ws { send, .. } => send.is_closed() || !self.is_open(),
            _ => true,
        }
    }

    /// One step of WebSocket input through the lent receiving half `recv`: how many bytes of
    /// `buf` were consumed, and at most one message for the application. `(0, None)` means
    /// more input is needed. What the protocol forces (a Pong, the Close echo, the Close
    /// failing the connection) is queued here; once the closing handshake is complete or the
    /// connection failed, the connection closes after its queue drains.
    pub fn ws_read<'a>(
        &mut self,
        recv: &'a mut ws::Receiver,
        buf: &'a mut [u8],
        env: &mut Env<'_>,
    ) -> (usize, Option<Message<'a>>) {
        if self.ws_input_done() {
            return (buf.len(), None);
        }
        let Mode::Ws { send, .. } = &mut self.mode else {
            return (buf.len(), None);
        };
        let total = buf.len();
        // What the protocol forces (a Pong, a Close) is rare: collect it in a vector that
        // allocates only if something is written, instead of opening a queue chunk per read.
        let mut forced = Vec::new();
        let step = recv.read(send, env.codec, buf, &mut forced);
        env.out.push_slice(&forced);
        let (n, msg, close) = match step {
            Ok((n, None)) => (n, None, None),
            Ok((n, Some(ev))) => match ev {
                ws::WsEvent::Text(t) => {
                    log::trace!("ws text {} bytes", t.len());
                    (n, Some(Message::Text(t)), None)
                }
                ws::WsEvent::Binary(b) => {
                    log::trace!("ws binary {} bytes", b.len());
                    (n, Some(Message::Binary(b)), None)
                }
                ws::WsEvent::Ping(p) => {
                    log::trace!("ws ping {} bytes (pong queued)", p.len());
                    (n, None, None)
                }
                ws::WsEvent::Pong(p) => {
                    log::trace!("ws pong {} bytes", p.len());
                    (n, None, None)
                }
                ws::WsEvent::Close { code, reason } => {
                    log::debug!("ws close received: {code:?} {reason:?}");
                    (n, None, Some(code.unwrap_or(close_code::NO_STATUS)))
                }
            },
            Err(e) => {
                log::debug!("ws protocol error: {} {}", e.code, e.reason);
                self.ws_code = Some(e.code);
                (total, None, None)
            }
        };
        if let Some(code) = close {
            self.ws_code = self.ws_code.or(Some(code));
        }
        if self.ws_input_done() {
            self.start_closing(env);
        }
        (n, msg)
    }

    /// Sends one WebSocket frame (text, binary or ping) to this connection alone.
    /// `false` when it is no open WebSocket, or the frame was refused as a slow reader's.
    pub fn ws_send(&mut self, opcode: OpCode, payload: &[u8], env: &mut Env<'_>) -> bool {
        if !self.ws_open() {
            return false;
        }
        if env.out.len() >= env.cfg.high_water {
            self.slow(env);
            return false;
        }
        let Mode::Ws { send, .. } = &mut self.mode else {
            return false;
        };
        let codec = &mut *env.codec;
        env.out.append(payload.len() + 14, |out| {
            send.send(out, opcode, payload, codec)
        })
    }

    /// Starts the WebSocket closing handshake (RFC 6455 §7.1.2). `false` when this is no
    /// open WebSocket, a Close was already sent, or `code` may not be sent.
    pub fn close_ws(&mut self, env: &mut Env<'_>, code: u16, reason: &str) -> bool {
        if self.dialing() && self.done.is_none() {
            // Not open yet: there is no closing handshake to make.
            self.abort(super::CloseReason::Finished);
            return true;
        }
        if !self.ws_open() {
            return false;
        }
        let Mode::Ws { send, .. } = &mut self.mode else {
            return false;
        };
        if !env
            .out
            .append(reason.len() + 8, |out| send.close(out, code, reason))
        {
            return false;
        }
        log::debug!("ws close sent: {code} {reason:?}");
        self.ws_code = Some(code);
        self.set_timer(env, Deadline::WsClose, env.cfg.ws_close_timeout);
        true
    }

    /// Replays kept events to a WebSocket that subscribes with a cursor: the gap notice
    /// when events were lost, then one frame per event. `false` when it is no open
    /// WebSocket.
    pub fn ws_replay(&mut self, page: &Page, env: &mut Env<'_>) -> bool {
        if !self.ws_open() {
            return false;
        }
        let Mode::Ws { send, .. } = &mut self.mode else {
            return false;
        };
        let codec = &mut *env.codec;
        env.out.append(64, |out| {
            fanout::ws_replay(page, |text| {
                send.send(out, OpCode::Text, text, codec);
            })
        });
        true
    }

    /// Offers a broadcast, encoded once for this connection's [`Transport`], given how many
    /// bytes are queued already (the slow-reader decision).
    pub fn deliver(&mut self, bytes: &Rc<[u8]>, env: &mut Env<'_>) -> Delivery {
        let open = match &self.mode {
            Mode::Ws { send, .. } => !send.close_sent(),
            Mode::Sse { .. } => true,
            Mode::Http { .. } | Mode::Dialing(_) => false,
        };
        if !open || !self.is_open() {
            return Delivery::Dropped;
        }
        if env.out.len() >= env.cfg.high_water {
            return self.slow(env);
        }
        env.out.push_shared(bytes);
        Delivery::Queued
    }

    /// Applies the slow-reader policy.
    fn slow(&mut self, env: &mut Env<'_>) -> Delivery {
        match &mut self.mode {
            Mode::Ws { .. } if env.cfg.slow_policy == SlowPolicy::DropMessages => {
                log::trace!("slow reader: message dropped");
                return Delivery::Dropped;
            }
            Mode::Ws { send, .. } => {
                log::debug!("slow reader: closing with 1008");
                env.out.drop_unstarted();
                env.out.append(32, |out| {
                    send.close(out, close_code::POLICY_VIOLATION, "slow reader")
                });
                self.ws_code = Some(close_code::POLICY_VIOLATION);
            }
            Mode::Sse { chunked } => {
                log::debug!("slow SSE reader: ending the stream");
                env.out.drop_unstarted();
                if *chunked {
                    env.out.append(5, http1::write_last_chunk);
                }
            }
            Mode::Http { .. } | Mode::Dialing(_) => return Delivery::Dropped,
        }
        self.start_closing(env);
        self.slow = true;
        Delivery::Slow
    }

    /// True once the connection is closing (no new output is taken).
    pub fn is_closing(&self) -> bool {
        self.closing != Closing::No
    }
}
