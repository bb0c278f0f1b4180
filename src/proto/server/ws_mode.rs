//! The WebSocket and broadcast side of a [`ServerConn`]: the split halves, sends, the
//! closing handshake, the keepalive and the slow-reader decision.
//!
//! # Keepalive
//!
//! A half-open peer (its host gone, a NAT entry dropped) sends nothing and never closes;
//! without a check it is found only when a write fails, which may be never on a quiet
//! connection. So an open WebSocket, accepted or dialed, whose peer sent nothing for
//! [`ws_ping_interval`](super::ConnSettings::ws_ping_interval) gets a Ping (RFC 6455
//! §5.5.2; 8 bytes, `ping` and the Ping's number in 4 hex digits, masked in the client
//! role). Any input from the peer counts as alive: the Pong (§5.5.3), any other frame, or
//! part of one. Pongs are not matched against Pings: "A Pong frame MAY be sent
//! unsolicited" (§5.5.3), and one answering an older Ping is input like another. If
//! nothing arrives within [`ws_ping_timeout`](super::ConnSettings::ws_ping_timeout) of
//! the Ping, the connection is closed with 1001 "ping timeout"; a half-open peer does not
//! answer that Close either, so the close timeout then drops it. However the close ends,
//! the connection finishes with [`CloseReason::PingTimeout`](super::CloseReason::PingTimeout).
//!
//! ```text
//!   open --(interval without input)--> Ping sent --(input)--> open
//!                                          \--(timeout)--> Close 1001 --> closing
//! ```
//!
//! The keepalive uses the connection's one deadline ([`Deadline::Ping`]); input does not
//! move it, so a busy connection does not re-arm the driver's timer per message: it only
//! notes by how much the Ping is now later due, and the deadline moves on once, when it
//! fires.

use std::rc::Rc;

use std::time::Duration;

use super::{deadline, CloseReason, Closing, Deadline, Env, Message, Mode, ServerConn, SlowPolicy};
use crate::proto::fanout::{self, Transport};
use crate::proto::http1;
use crate::proto::topic::Page;
use crate::proto::ws::{self, close_code, OpCode};

/// The payload of keepalive Ping number `seq`: `ping` and `seq` in 4 lowercase hex digits.
pub(super) fn ping_payload(seq: u16) -> [u8; 8] {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    let mut p = *b"ping0000";
    for (i, b) in p[4..].iter_mut().enumerate() {
        *b = HEX[usize::from(seq >> (12 - 4 * i) & 0xf)];
    }
    p
}

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
        if !buf.is_empty() {
            self.ws_alive(env);
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

    /// The keepalive interval, `None` when it is off (unset or zero).
    fn ping_interval(env: &Env<'_>) -> Option<Duration> {
        env.cfg.ws_ping_interval.filter(|d| !d.is_zero())
    }

    /// Arms the keepalive of a WebSocket that just opened (or whose peer just answered).
    pub(super) fn arm_ping(&mut self, env: &Env<'_>) {
        self.arm_ping_seq(0, env);
    }

    fn arm_ping_seq(&mut self, seq: u16, env: &Env<'_>) {
        self.timer = Self::ping_interval(env).map(|every| {
            let what = Deadline::Ping { slack_ms: 0, seq };
            (deadline(env.now, every), what)
        });
    }

    /// Input arrived from the peer: it is alive. While a Ping is due, the deadline stays
    /// and the slack says how much later the Ping is now due (rounded up to the
    /// millisecond); while a Ping waits for an answer, the next Ping is due an interval
    /// from now.
    fn ws_alive(&mut self, env: &Env<'_>) {
        match self.timer {
            Some((at, Deadline::Ping { seq, .. })) => {
                let Some(every) = Self::ping_interval(env) else {
                    return;
                };
                let later = deadline(env.now, every).saturating_duration_since(at);
                let ms = later.as_nanos().div_ceil(1_000_000);
                let slack_ms = u32::try_from(ms).unwrap_or(u32::MAX);
                self.timer = Some((at, Deadline::Ping { slack_ms, seq }));
            }
            Some((_, Deadline::Pong { seq })) => {
                log::trace!("ws peer alive after ping {seq}");
                self.arm_ping_seq(seq, env);
            }
            _ => {}
        }
    }

    /// The peer sent nothing for the ping interval: sends Ping number `seq + 1` and waits
    /// the ping timeout for input.
    pub(super) fn send_keepalive_ping(&mut self, seq: u16, env: &mut Env<'_>) {
        if !self.ws_open() {
            return;
        }
        let Mode::Ws { send, .. } = &mut self.mode else {
            return;
        };
        let seq = seq.wrapping_add(1);
        let payload = ping_payload(seq);
        env.out.append(16, |out| send.send_ping(out, &payload));
        log::trace!("ws keepalive ping {seq} sent");
        self.set_timer(env, Deadline::Pong { seq }, env.cfg.ws_ping_timeout);
    }

    /// Nothing arrived within the ping timeout after Ping `seq`: close with 1001.
    pub(super) fn ping_timeout(&mut self, seq: u16, env: &mut Env<'_>) {
        log::debug!("ws peer did not answer ping {seq}: closing with 1001");
        self.ping_timed_out = true;
        if !self.close_ws(env, close_code::GOING_AWAY, "ping timeout") {
            self.done = Some(CloseReason::PingTimeout);
        }
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
