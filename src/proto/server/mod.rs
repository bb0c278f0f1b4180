//! One server connection as a state machine: every decision about it, no I/O.
//!
//! [`ServerConn`] is the shape of h11's connection and quinn-proto's `Connection`: the
//! driver hands it the bytes it read and the time, and it appends what must be sent to the
//! connection's [`OutQueue`]. It exposes its next deadline ([`ServerConn::poll_timeout`],
//! acted on by [`ServerConn::handle_timeout`]) and whether it wants input
//! ([`ServerConn::wants_read`]); when it is over it says why ([`ServerConn::finished`]) and
//! the driver drops the socket.
//!
//! # Theory of operation
//!
//! ```text
//!            request complete            Reply::Response / Ctx::respond
//!   Http ---------------------> owed ------------------------------------> Http (keep-alive)
//!    |  \                        |  \--- Park ---> parked --(event, timeout)--^
//!    |   \-- bad request: 4xx ---+--- Connection: close -----> closing
//!    |                           |--- upgrade ---> WebSocket --(close handshake)--> closing
//!    |                           \--- SSE -------> Sse --(last chunk)-------------> closing
//!    v
//!  closing: AfterFlush --(queue drained: half-close)--> Lingering --(peer EOF, linger)--> done
//! ```
//!
//! * **Requests** (RFC 9112 §9.3 persistence, §9.3.2 pipelining): one request at a time is
//!   *owed* an answer. While it is owed (the application answered [`Later`], or parked it),
//!   pipelined requests wait in the driver's buffer; they are answered in order.
//!   `Expect: 100-continue` gets its interim answer from the reader (RFC 9110 §10.1.1). A
//!   request that fails to parse is answered with its status (400, 413, 431, 501, 505, ...)
//!   and the connection closes; so does a request that is not complete within the header
//!   timeout (408).
//! * **Closing** (RFC 9112 §9.6): after the last answer is queued the connection waits for
//!   the queue to drain, then half-closes and keeps reading (and discarding) until the peer
//!   hangs up or the linger time passes, so unread request bytes cannot turn the last answer
//!   into a reset. Closing has a deadline that only expires while no byte moves.
//! * **Keep-alive idleness**: between requests the idle timeout runs; it is extended while
//!   a slow client is still reading an answer.
//! * **WebSocket** (RFC 6455): after the 101, the connection is split in halves
//!   ([`ws::Receiver`] and [`ws::Sender`]). The driver borrows the receiving half while the
//!   application handles a message; a send or close from inside the callback goes through
//!   the sending half that stays here, so a Close takes effect at once and frames already
//!   buffered behind it are discarded, never delivered (§5.5.1, §7.1.2).
//! * **Keepalive** (RFC 6455 §5.5.2, §5.5.3): a WebSocket peer quiet for the ping interval
//!   gets a Ping (`ping` and its number in 4 hex digits); any input answers it. Nothing
//!   within the ping timeout: Close 1001 "ping timeout", the close timeout drops a peer that
//!   ignores it too, and the connection ends as [`CloseReason::PingTimeout`].
//! * **Dialed WebSockets** (RFC 6455 §4.1, `dial.rs`): a connection the application opens
//!   starts with its upgrade request queued and one deadline for connect, TLS and the
//!   handshake; once the `101` checks out it is a WebSocket like the others, in the client
//!   role (masked frames) and taking no shared broadcast bytes.
//! * **SSE** (WHATWG HTML §9.2): a streamed response, chunked on HTTP/1.1 and delimited by
//!   the close on HTTP/1.0, with heartbeat comments while quiet.
//! * **Slow readers**: given the bytes queued, the connection decides whether a broadcast
//!   is queued, dropped, or ends the connection (close 1008 / the last chunk).
//!
//! [`Later`]: crate::Reply::Later

mod dial;
mod http;
mod reason;
mod ws_mode;

#[cfg(test)]
mod tests;

use std::rc::Rc;
use std::time::{Duration, Instant};

use super::http1::{Limits, RequestReader, Response, Version};
use super::out::OutQueue;
use super::ws;

pub use dial::DialSpec;
pub use reason::{CloseReason, TlsFailure};
pub use ws_mode::Delivery;

/// What kind of connection a connection currently is.
#[derive(Clone, Copy, PartialEq, Eq, Debug, Hash)]
pub enum ConnKind {
    /// A plain HTTP/1.1 connection (between requests, or with a request in progress).
    Http,
    /// An HTTP request parked as a long poll, waiting for an event or its timeout.
    Parked,
    /// A Server-Sent Events stream.
    Sse,
    /// A WebSocket connection (after the 101 answer).
    WebSocket,
}

/// What happens to a WebSocket connection whose output queue passed the high-water mark.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SlowPolicy {
    /// Close it with 1008 (policy violation) after the frame being written. The default.
    Disconnect,
    /// Keep it, but drop broadcast messages for it while it is above the mark.
    DropMessages,
}

/// A complete WebSocket data message.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Message<'a> {
    /// A text message (already validated as UTF-8).
    Text(&'a str),
    /// A binary message.
    Binary(&'a [u8]),
}

/// The settings of every connection (a part of the server's `Config`).
#[derive(Debug, Clone, Copy)]
pub struct ConnSettings {
    /// Request limits.
    pub limits: Limits,
    /// Time to send a whole request once it started (408 after it).
    pub header_timeout: Duration,
    /// Time an idle keep-alive connection is kept.
    pub idle_timeout: Duration,
    /// Queued bytes beyond which a connection is a slow reader.
    pub high_water: usize,
    /// What to do with a slow WebSocket reader.
    pub slow_policy: SlowPolicy,
    /// Wait for the peer's Close after ours.
    pub ws_close_timeout: Duration,
    /// Interval of SSE heartbeat comments (zero: none).
    pub sse_heartbeat: Duration,
    /// How long a closing connection waits for the peer to read our last bytes and hang up.
    pub linger: Duration,
    /// Accept permessage-deflate when a WebSocket client offers it.
    pub ws_deflate: bool,
    /// ... with context takeover, when the client allows it.
    pub ws_deflate_takeover: bool,
    /// Send a Ping to a WebSocket peer that sent nothing for this long (`None` or zero:
    /// never; see the [module docs](self), keepalive).
    pub ws_ping_interval: Option<Duration>,
    /// After such a Ping, how long the peer has to send anything before the connection is
    /// closed with 1001 ([`CloseReason::PingTimeout`]).
    pub ws_ping_timeout: Duration,
}

impl Default for ConnSettings {
    fn default() -> Self {
        ConnSettings {
            limits: Limits::default(),
            header_timeout: Duration::from_secs(10),
            idle_timeout: Duration::from_secs(60),
            high_water: 1 << 20,
            slow_policy: SlowPolicy::Disconnect,
            ws_close_timeout: Duration::from_secs(5),
            sse_heartbeat: Duration::from_secs(15),
            linger: Duration::from_secs(2),
            ws_deflate: true,
            ws_deflate_takeover: false,
            ws_ping_interval: Some(Duration::from_secs(30)),
            ws_ping_timeout: Duration::from_secs(30),
        }
    }
}

/// What every call into a [`ServerConn`] gets: the time, the settings, the server-wide
/// facts, and the connection's output queue to append to.
#[derive(Debug)]
pub struct Env<'a> {
    /// The current time.
    pub now: Instant,
    /// The connection settings.
    pub cfg: &'a ConnSettings,
    /// The server is stopping: answers carry `Connection: close`.
    pub stopping: bool,
    /// The current `Date` header value (RFC 9110 §6.6.1), or `None` to send none.
    pub date: Option<&'a str>,
    /// The connection's output queue.
    pub out: &'a mut OutQueue,
    /// The loop's shared permessage-deflate compressors and decompressor.
    pub codec: &'a mut ws::deflate::Codec,
}

/// `now + after`, saturating far in the future instead of overflowing (a `Duration::MAX`
/// timeout means "never").
pub fn deadline(now: Instant, after: Duration) -> Instant {
    now.checked_add(after)
        .unwrap_or_else(|| now + Duration::from_secs(100 * 365 * 86_400))
}

/// Facts about the request being answered, kept while its answer is owed.
#[derive(Debug, Clone, Copy)]
struct Owed {
    version: Version,
    keep_alive: bool,
    head: bool,
    /// Parked as a long poll.
    parked: bool,
}

#[derive(Debug)]
enum Mode {
    Http {
        reader: Option<Box<RequestReader>>,
        owed: Option<Owed>,
    },
    Sse {
        chunked: bool,
    },
    Ws {
        /// `None` while the driver has lent it out.
        recv: Option<Box<ws::Receiver>>,
        send: ws::Sender,
    },
    /// A dialed WebSocket before its `101`.
    Dialing(Box<dial::Dial>),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Closing {
    No,
    /// Close once the output queue is drained.
    AfterFlush,
    /// Write side shut; discarding input until the peer closes or the linger timer fires.
    Lingering,
}

/// The one deadline of a connection, and what it means.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Deadline {
    Header,
    Idle,
    Park,
    Heartbeat,
    WsClose,
    Linger,
    /// A dial's connect timeout.
    Dial,
    /// An open WebSocket's keepalive: send a Ping at this deadline, unless input arrived
    /// meanwhile. Input does not move the deadline (that would re-arm the driver's timer
    /// for every message): it records `slack_ms`, how much later the Ping is now due, and
    /// the deadline moves on by that when it fires. `seq` numbers the Pings.
    Ping {
        slack_ms: u32,
        seq: u16,
    },
    /// A Ping (number `seq`) was sent: close with 1001 at this deadline, unless input
    /// arrives first.
    Pong {
        seq: u16,
    },
}

/// One server-side connection: HTTP/1.1, then perhaps a WebSocket, an SSE stream or a
/// parked long poll. See the [module docs](self).
#[derive(Debug)]
pub struct ServerConn {
    mode: Mode,
    closing: Closing,
    timer: Option<(Instant, Deadline)>,
    /// Bytes queued when the idle or closing deadline was set: a deadline that finds fewer
    /// bytes queued saw progress and waits again.
    out_mark: usize,
    ws_code: Option<u16>,
    done: Option<CloseReason>,
    /// The slow-reader policy ended the connection and the application is not told yet.
    slow: bool,
    /// The peer ended its side (half-close) while an answer was still owed to it.
    peer_eof: bool,
    /// Closed for an unanswered Ping: it ends as [`CloseReason::PingTimeout`], however.
    ping_timed_out: bool,
    /// The head of the owed long poll's answer, when it has header fields of its own.
    poll_head: Option<Rc<Response>>,
}

/// What a deadline meant, when the driver must act on it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Expired {
    /// Nothing for the driver: the connection acted itself (or nothing was due).
    Nothing,
    /// The long poll's timeout passed: answer it (with an empty page).
    Park,
}

impl ServerConn {
    /// A connection just accepted: waiting for its first request, under the idle timeout.
    pub fn new(env: &mut Env<'_>) -> Self {
        let mut c = ServerConn {
            mode: Mode::Http {
                reader: None,
                owed: None,
            },
            closing: Closing::No,
            timer: None,
            out_mark: 0,
            ws_code: None,
            done: None,
            slow: false,
            peer_eof: false,
            ping_timed_out: false,
            poll_head: None,
        };
        c.set_timer(env, Deadline::Idle, env.cfg.idle_timeout);
        c
    }

    /// A connection just accepted whose transport must first do a handshake (TLS): the
    /// header timeout runs from now, so a handshake that stalls, or a client that then
    /// sends nothing, is closed after it ([`CloseReason::HeaderTimeout`]; no 408, as not a
    /// byte of a request arrived to answer).
    pub fn new_with_handshake(env: &mut Env<'_>) -> Self {
        let mut c = Self::new(env);
        c.set_timer(env, Deadline::Header, env.cfg.header_timeout);
        c
    }

    /// What the connection currently is.
    pub fn kind(&self) -> ConnKind {
        match &self.mode {
            Mode::Http {
                owed: Some(Owed { parked: true, .. }),
                ..
            } => ConnKind::Parked,
            Mode::Http { .. } => ConnKind::Http,
            Mode::Sse { .. } => ConnKind::Sse,
            Mode::Ws { .. } | Mode::Dialing(_) => ConnKind::WebSocket,
        }
    }

    /// The WebSocket close code sent or received, if any.
    pub fn ws_code(&self) -> Option<u16> {
        self.ws_code
    }

    /// `Some(why)` once the connection is over: drop the socket now.
    pub fn finished(&self) -> Option<CloseReason> {
        match self.done {
            Some(_) if self.ping_timed_out => Some(CloseReason::PingTimeout),
            done => done,
        }
    }

    /// True once (then false): the slow-reader policy ended this connection, through a
    /// broadcast or a direct send; tell the application.
    pub fn take_slow(&mut self) -> bool {
        std::mem::take(&mut self.slow)
    }

    /// Ends the connection at once (an I/O error, the server stopped).
    pub fn abort(&mut self, why: CloseReason) {
        self.done.get_or_insert(why);
        self.timer = None;
    }

    /// True while the connection waits for its queue to drain before half-closing: the
    /// driver must try a flush (and call [`on_drained`](Self::on_drained)) even when
    /// nothing is queued.
    pub fn awaiting_drain(&self) -> bool {
        self.closing == Closing::AfterFlush && self.done.is_none()
    }

    /// True while the connection takes new output (not closing, not over).
    pub fn is_open(&self) -> bool {
        self.closing == Closing::No && self.done.is_none()
    }

    /// The next deadline; call [`handle_timeout`](Self::handle_timeout) once it passed.
    pub fn poll_timeout(&self) -> Option<Instant> {
        self.timer.map(|(at, _)| at)
    }

    /// Whether to read from the socket, given `queued` output bytes. Input stops while the
    /// peer does not read what we send (backpressure), once the connection is over, and
    /// (see [`input_full`](Self::input_full)) while buffered input cannot be consumed.
    pub fn wants_read(&self, queued: usize, cfg: &ConnSettings) -> bool {
        match self.closing {
            _ if self.done.is_some() => false,
            Closing::Lingering => true,
            Closing::AfterFlush => true,
            Closing::No => queued <= cfg.high_water,
        }
    }

    /// The driver's input buffer is full of bytes the connection cannot consume yet. A
    /// request head that does not fit is answered 431; otherwise (a pipelined request behind
    /// an owed answer, a large WebSocket control frame still arriving) input pauses: the
    /// answer is `false` and the driver stops reading until the buffer drains.
    pub fn input_full(&mut self, env: &mut Env<'_>) -> bool {
        if let Mode::Http { owed: None, .. } = self.mode {
            if self.is_open() {
                self.answer_error(env, 431, "request header block too large");
                return true;
            }
        }
        false
    }

    /// The next SSE heartbeat; a zero interval means none (never a deadline due at once,
    /// again and again).
    fn arm_heartbeat(&mut self, env: &Env<'_>) {
        if env.cfg.sse_heartbeat.is_zero() {
            self.timer = None;
        } else {
            self.set_timer(env, Deadline::Heartbeat, env.cfg.sse_heartbeat);
        }
    }

    fn set_timer(&mut self, env: &Env<'_>, what: Deadline, after: Duration) {
        self.timer = Some((deadline(env.now, after), what));
    }

    /// Acts on a passed deadline. Returns what the driver must do about it.
    pub fn handle_timeout(&mut self, env: &mut Env<'_>) -> Expired {
        let Some((at, what)) = self.timer else {
            return Expired::Nothing;
        };
        if env.now < at || self.done.is_some() {
            return Expired::Nothing;
        }
        self.timer = None;
        let queued = env.out.len();
        match what {
            Deadline::Header
                if matches!(
                    self.mode,
                    Mode::Http {
                        reader: None,
                        owed: None
                    }
                ) =>
            {
                log::debug!("no request began within the header timeout");
                self.done = Some(CloseReason::HeaderTimeout);
            }
            Deadline::Header => {
                log::debug!("request not complete in time");
                self.answer_error(env, 408, "request not complete in time");
            }
            Deadline::Idle if queued > 0 && queued < self.out_mark => {
                // Still sending an answer to a slow but reading client: not idle.
                self.out_mark = queued;
                self.set_timer(env, Deadline::Idle, env.cfg.idle_timeout);
            }
            Deadline::Idle => self.done = Some(CloseReason::IdleTimeout),
            Deadline::Park => return Expired::Park,
            Deadline::Heartbeat if self.closing != Closing::No => {}
            Deadline::Heartbeat => {
                if let Mode::Sse { chunked } = self.mode {
                    let mut body = Vec::with_capacity(16);
                    super::sse::write_comment(&mut body, "heartbeat");
                    http::push_stream(env.out, chunked, &body);
                }
                self.arm_heartbeat(env);
            }
            Deadline::Ping { slack_ms, seq } if slack_ms > 0 => {
                // Input arrived since the deadline was set: the Ping is due later.
                let later = at + Duration::from_millis(u64::from(slack_ms));
                self.timer = Some((later, Deadline::Ping { slack_ms: 0, seq }));
            }
            Deadline::Ping { seq, .. } => self.send_keepalive_ping(seq, env),
            Deadline::Pong { seq } => self.ping_timeout(seq, env),
            Deadline::WsClose => self.done = Some(CloseReason::CloseTimeout),
            Deadline::Dial => self.done = Some(CloseReason::ConnectTimeout),
            Deadline::Linger if self.closing == Closing::AfterFlush && queued < self.out_mark => {
                // The last answer is still going out, and moving: wait on.
                self.out_mark = queued;
                self.set_timer(env, Deadline::Linger, env.cfg.linger);
            }
            Deadline::Linger if self.closing == Closing::AfterFlush => {
                self.done = Some(CloseReason::CloseTimeout);
            }
            Deadline::Linger => self.done = Some(CloseReason::Finished),
        }
        Expired::Nothing
    }

    /// The output queue drained. Returns true when the driver must now shut the socket's
    /// write side (RFC 9112 §9.6: half-close, then read until the peer closes).
    pub fn on_drained(&mut self, env: &mut Env<'_>) -> bool {
        if self.closing != Closing::AfterFlush || self.done.is_some() {
            return false;
        }
        if self.peer_eof {
            // Both sides are done: nothing to linger for.
            self.done = Some(CloseReason::Finished);
            self.timer = None;
            return false;
        }
        self.closing = Closing::Lingering;
        self.set_timer(env, Deadline::Linger, env.cfg.linger);
        true
    }

    /// The peer ended its side (read returned 0). `unread` is the number of input bytes
    /// still buffered.
    pub fn on_eof(&mut self, unread: usize, env: &mut Env<'_>) {
        if self.done.is_some() {
            return;
        }
        log::trace!("end of stream from peer");
        let why = match (&self.mode, self.closing) {
            (_, Closing::Lingering) => CloseReason::Finished,
            (
                Mode::Http {
                    reader: None,
                    owed: None,
                },
                _,
            ) if unread == 0 => {
                if env.out.is_empty() {
                    CloseReason::PeerClosed
                } else {
                    // The client finished sending; finish our answers, then close.
                    self.peer_eof = true;
                    self.start_closing(env);
                    return;
                }
            }
            (
                Mode::Http {
                    owed: Some(Owed { parked: false, .. }),
                    ..
                },
                Closing::No,
            ) if unread == 0 => {
                // RFC 9112 §9.6: a client that half-closed after its request still gets
                // its answer (then the connection closes). A forgotten `Later` does not
                // hold the slot forever: the idle timeout runs meanwhile.
                self.peer_eof = true;
                self.set_timer(env, Deadline::Idle, env.cfg.idle_timeout);
                return;
            }
            (Mode::Ws { .. }, Closing::AfterFlush) => {
                self.ws_code = self.ws_code.or(Some(ws::close_code::ABNORMAL));
                CloseReason::PeerClosed
            }
            (Mode::Ws { .. }, _) => {
                self.ws_code = Some(ws::close_code::ABNORMAL);
                CloseReason::NoCloseFrame
            }
            _ => CloseReason::PeerClosed,
        };
        self.done = Some(why);
        self.timer = None;
    }

    /// Closes once the queued output is written. That gets a deadline too: a peer that
    /// stops reading must not hold its slot forever (the WebSocket close timeout for
    /// WebSockets, the linger time otherwise).
    fn start_closing(&mut self, env: &mut Env<'_>) {
        if self.closing != Closing::No || self.done.is_some() {
            return;
        }
        self.closing = Closing::AfterFlush;
        self.out_mark = env.out.len();
        let wait = if matches!(self.mode, Mode::Ws { .. }) {
            env.cfg.ws_close_timeout
        } else {
            env.cfg.linger
        };
        self.set_timer(env, Deadline::Linger, wait);
    }

    /// Closes the connection the polite way: a WebSocket with 1000 and the closing
    /// handshake, an SSE stream by ending it, an HTTP connection (a parked poll included,
    /// unanswered) after what is queued for it was written.
    pub fn close(&mut self, env: &mut Env<'_>) {
        match &mut self.mode {
            Mode::Ws { .. } => {
                self.close_ws(env, ws::close_code::NORMAL, "");
            }
            Mode::Sse { chunked } => {
                if *chunked && self.closing == Closing::No && self.done.is_none() {
                    env.out.append(5, super::http1::write_last_chunk);
                }
                self.start_closing(env);
            }
            Mode::Http { owed, .. } => {
                if let Some(o) = owed {
                    o.parked = false;
                }
                self.start_closing(env);
            }
            Mode::Dialing(_) => self.abort(CloseReason::Finished),
        }
    }

    /// The server is stopping: finish politely. Returns true when this is a parked long
    /// poll, which the driver answers now (an empty page). An answer still owed by the
    /// application goes out with `Connection: close`; a request half read is left to
    /// complete or time out.
    pub fn stop(&mut self, unread: usize, env: &mut Env<'_>) -> bool {
        match &self.mode {
            Mode::Http {
                owed: Some(Owed { parked: true, .. }),
                ..
            } => return true,
            Mode::Http {
                reader: None,
                owed: None,
            } if unread == 0 => self.start_closing(env),
            Mode::Http { .. } => {}
            Mode::Sse { .. } => self.close(env),
            Mode::Ws { .. } => {
                self.close_ws(env, ws::close_code::GOING_AWAY, "server stopping");
            }
            Mode::Dialing(_) => self.abort(CloseReason::ServerStopped),
        }
        false
    }
}
