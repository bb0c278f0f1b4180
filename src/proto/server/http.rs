//! The HTTP/1.1 side of a [`ServerConn`]: reading requests, answering them, and turning a
//! request into a WebSocket, an SSE stream or a parked long poll.

use std::rc::Rc;

use super::{Closing, Deadline, Env, Mode, Owed, ServerConn};
use crate::proto::fanout::{self, SharedPage};
use crate::proto::http1::{self, Request, Response, Version};
use crate::proto::out::OutQueue;
use crate::proto::topic::Page;
use crate::proto::ws;

/// Appends stream bytes, in a chunk when the stream is chunked.
pub(super) fn push_stream(out: &mut OutQueue, chunked: bool, bytes: &[u8]) {
    if bytes.is_empty() {
        return;
    }
    out.append(bytes.len() + 12, |v| {
        if chunked {
            http1::write_chunk(v, bytes)
        } else {
            v.extend_from_slice(bytes)
        }
    });
}

impl ServerConn {
    /// Reads HTTP input from `buf` (the driver's whole unconsumed input). Returns how many
    /// bytes were consumed and, when one is complete, a request the application must answer
    /// (through [`respond`](Self::respond), [`accept_ws`](Self::accept_ws),
    /// [`start_sse`](Self::start_sse) or [`park`](Self::park), now or later). Until it is
    /// answered, further input waits (pipelining keeps answers in order). Input that cannot
    /// matter any more (after the answer that closes, on an SSE stream) is consumed and
    /// dropped. A bad request is answered here, with its status, and closes.
    pub fn read_http(&mut self, buf: &[u8], env: &mut Env<'_>) -> (usize, Option<Request>) {
        if self.done.is_some() {
            return (0, None);
        }
        if self.closing != Closing::No {
            return (buf.len(), None);
        }
        let (reader, owed) = match &mut self.mode {
            // Nothing is expected from an SSE client; its bytes are discarded.
            Mode::Sse { .. } => return (buf.len(), None),
            Mode::Ws { .. } | Mode::Dialing(_) => return (0, None),
            Mode::Http { reader, owed } => (reader, owed),
        };
        if owed.is_some() || env.out.len() > env.cfg.high_water {
            // An answer is owed, or a client pipelines requests without reading the
            // answers: the next request waits.
            return (0, None);
        }
        let r = reader.get_or_insert_with(Box::default);
        let limits = env.cfg.limits;
        let res = env.out.append(32, |v| {
            let res = r.advance(buf, &limits, v);
            if !v.is_empty() {
                log::trace!("<- 100 Continue");
            }
            res
        });
        match res {
            Ok((n, Some(req))) => {
                *reader = None;
                *owed = Some(Owed {
                    version: req.version,
                    keep_alive: req.keep_alive(),
                    head: req.is_head(),
                    parked: false,
                });
                self.timer = None;
                (n, Some(req))
            }
            Ok((n, None)) => {
                if r.is_idle() {
                    // Only stray line breaks between requests: still idle, so the idle
                    // timeout keeps running, not the header timeout.
                    *reader = None;
                } else if !matches!(self.timer, Some((_, Deadline::Header))) {
                    self.set_timer(env, Deadline::Header, env.cfg.header_timeout);
                }
                (n, None)
            }
            Err(e) => {
                log::debug!("bad request: {} {}", e.status, e.reason);
                self.answer_error(env, e.status, e.reason);
                (buf.len(), None)
            }
        }
    }

    /// True when a request is owed an answer (just read, [`Later`](crate::Reply::Later), or
    /// parked).
    pub fn owes_answer(&self) -> bool {
        matches!(self.mode, Mode::Http { owed: Some(_), .. })
    }

    /// Takes the owed request's facts, if the connection can still answer.
    fn take_owed(&mut self) -> Option<Owed> {
        if !self.is_open() {
            return None;
        }
        self.poll_head = None;
        match &mut self.mode {
            Mode::Http { owed, .. } => owed.take(),
            _ => None,
        }
    }

    fn keep_alive(&self, owed: &Owed, resp_close: bool, env: &Env<'_>) -> bool {
        owed.keep_alive && !env.stopping && !resp_close && !self.peer_eof
    }

    /// After an answer: keep the connection for the next request, or close it.
    fn answered(&mut self, keep_alive: bool, env: &mut Env<'_>) {
        if keep_alive {
            self.set_timer(env, Deadline::Idle, env.cfg.idle_timeout);
            self.out_mark = env.out.len();
        } else {
            self.start_closing(env);
        }
    }

    /// Answers the owed request with `resp`. `false` (nothing written) when no request is
    /// owed an answer or the connection is closing.
    pub fn respond(&mut self, resp: &Response, env: &mut Env<'_>) -> bool {
        let Some(owed) = self.take_owed() else {
            return false;
        };
        let wants_close = resp
            .headers
            .iter()
            .any(|(n, v)| n.eq_ignore_ascii_case("connection") && v.eq_ignore_ascii_case("close"));
        let keep_alive = self.keep_alive(&owed, wants_close, env);
        log::trace!("<- {} ({} body bytes)", resp.status, resp.body.len());
        env.out.append(resp.body.len() + 256, |out| {
            resp.encode(owed.version, owed.head, keep_alive, env.date, out)
        });
        self.answered(keep_alive, env);
        true
    }

    /// Answers the owed request with `head`'s status and header fields and a body encoded
    /// once and shared with other connections (a long-poll page). `false` as for
    /// [`respond`](Self::respond).
    pub fn respond_shared(&mut self, head: &Response, body: &Rc<[u8]>, env: &mut Env<'_>) -> bool {
        let Some(owed) = self.take_owed() else {
            return false;
        };
        let keep_alive = self.keep_alive(&owed, false, env);
        env.out.append(256, |out| {
            head.encode_head(owed.version, keep_alive, env.date, body.len(), out)
        });
        if !owed.head {
            env.out.push_shared(body);
        }
        self.answered(keep_alive, env);
        true
    }

    /// Answers with an error status and closes the connection afterwards.
    pub(super) fn answer_error(&mut self, env: &mut Env<'_>, status: u16, reason: &str) {
        let mut resp = Response::text(status, format!("{reason}\n"));
        if status == 426 {
            resp = resp.header("Sec-WebSocket-Version", "13");
        }
        if let Mode::Http { owed, reader } = &mut self.mode {
            *reader = None;
            *owed = Some(Owed {
                version: Version::Http11,
                keep_alive: false,
                head: false,
                parked: false,
            });
        }
        self.timer = None;
        self.respond(&resp, env);
    }

    /// Accepts the owed request as a WebSocket upgrade (RFC 6455 §4.2.2) with `protocol`
    /// and the given limits. The handshake is validated here; an invalid one is answered
    /// (400, 426 with `Sec-WebSocket-Version: 13`, or 500 when `protocol` was not offered)
    /// and `false` returned.
    pub fn accept_ws(
        &mut self,
        req: &Request,
        protocol: Option<&str>,
        extra: &[(String, String)],
        limits: ws::WsLimits,
        env: &mut Env<'_>,
    ) -> bool {
        let headers = req
            .headers
            .iter()
            .map(|h| (h.name.as_str(), h.value.as_slice()));
        let refuse = match ws::validate_request(&req.method, headers) {
            Err(e) => {
                log::debug!("bad WebSocket handshake: {} {}", e.status, e.reason);
                let mut resp = Response::text(e.status, format!("{}\n", e.reason));
                if e.status == 426 {
                    resp = resp.header("Sec-WebSocket-Version", "13");
                }
                Err(resp)
            }
            Ok(_) if req.version != Version::Http11 => {
                Err(Response::text(400, "WebSocket needs HTTP/1.1\n"))
            }
            Ok(hs) if protocol.is_some_and(|p| !hs.protocols.contains(&p)) => {
                log::warn!(
                    "application chose subprotocol {protocol:?}, which the client did not offer"
                );
                Err(Response::text(
                    500,
                    "subprotocol not offered by the client\n",
                ))
            }
            Ok(hs) => Ok(hs),
        };
        let hs = match refuse {
            Ok(hs) => hs,
            Err(resp) => {
                self.respond(&resp, env);
                return false;
            }
        };
        if self.take_owed().is_none() {
            return false;
        }
        // permessage-deflate (RFC 7692 §5): the first offer we can honour, or none.
        let policy = ws::extensions::ServerPolicy {
            context_takeover: env.cfg.ws_deflate_takeover,
        };
        let agreed = (env.cfg.ws_deflate && !hs.extensions.is_empty())
            .then(|| ws::extensions::negotiate(&hs.extensions, policy))
            .flatten();
        let answer = agreed.map(|a| a.response());
        env.out.append(160, |out| {
            ws::write_accept_response(out, hs.key, protocol, answer.as_deref(), extra)
        });
        // A slow reader's Close must follow the 101, not replace it.
        env.out.seal();
        log::debug!("upgraded to WebSocket (extensions: {answer:?})");
        let mut recv = ws::Receiver::new(limits);
        let mut send = ws::Sender::default();
        if let Some(a) = agreed {
            recv = recv.with_deflate(!a.client_no_context_takeover, a.client_window_bits);
            send = send.with_deflate_level(
                a.server_window_bits,
                !a.server_no_context_takeover,
                env.codec.level(),
            );
        }
        self.mode = Mode::Ws {
            recv: Some(Box::new(recv)),
            send,
        };
        self.arm_ping(env);
        true
    }

    /// Starts a Server-Sent Events stream answering the owed request: the head with
    /// `headers` (on HTTP/1.1 chunked, on HTTP/1.0 delimited by the close), then `first`
    /// (a `retry:` field, replayed events: bytes of the `text/event-stream` format). A HEAD
    /// request gets the head of a plain 200 instead, and `false`.
    pub fn start_sse(&mut self, headers: &[(&str, &str)], first: &[u8], env: &mut Env<'_>) -> bool {
        let head = match &self.mode {
            Mode::Http { owed: Some(o), .. } => o.head,
            _ => return false,
        };
        if head {
            let mut resp = Response::new(200);
            for (n, v) in headers {
                resp = resp.header(*n, *v);
            }
            self.respond(&resp, env);
            return false;
        }
        let Some(owed) = self.take_owed() else {
            return false;
        };
        let chunked = owed.version == Version::Http11;
        env.out.append(256, |out| {
            http1::write_stream_head(out, owed.version, 200, headers, env.date)
        });
        // A slow reader's last chunk must follow the head, not replace it.
        env.out.seal();
        push_stream(env.out, chunked, first);
        self.mode = Mode::Sse { chunked };
        self.arm_heartbeat(env);
        true
    }

    /// Parks the owed request as a long poll for at most `timeout`; answer it later with
    /// [`respond_shared`](Self::respond_shared) or [`respond`](Self::respond).
    pub fn park(&mut self, timeout: std::time::Duration, env: &mut Env<'_>) -> bool {
        if !self.is_open() {
            return false;
        }
        let Mode::Http { owed: Some(o), .. } = &mut self.mode else {
            return false;
        };
        o.parked = true;
        self.set_timer(env, Deadline::Park, timeout);
        true
    }

    /// Adds header fields (CORS, say) to the answer of the owed long poll, whenever it
    /// comes. That answer then gets a head of its own instead of the shared one. `false`
    /// when no request is owed.
    pub fn set_poll_headers(&mut self, headers: &[(String, String)]) -> bool {
        if !matches!(&self.mode, Mode::Http { owed: Some(_), .. }) || headers.is_empty() {
            return false;
        }
        let mut head = fanout::poll_head().clone();
        for (name, value) in headers {
            head = head.header(name.as_str(), value.as_str());
        }
        self.poll_head = Some(Rc::new(head));
        true
    }

    /// Answers with the long poll's head (its own, or the shared one) and `body`.
    fn respond_poll(&mut self, body: &Rc<[u8]>, env: &mut Env<'_>) -> bool {
        match self.poll_head.clone() {
            Some(head) => self.respond_shared(&head, body, env),
            None => self.respond_shared(fanout::poll_head(), body, env),
        }
    }

    /// Answers the owed (parked or new) long poll with `page`.
    pub fn answer_poll(&mut self, page: &Page, env: &mut Env<'_>) -> bool {
        self.respond_poll(&fanout::page_body(page), env)
    }

    /// Answers a parked long poll whose timeout passed (or that a stop ends) with the
    /// empty page after `since`.
    pub fn answer_poll_empty(&mut self, since: u64, env: &mut Env<'_>) -> bool {
        self.respond_poll(&fanout::empty_page(since), env)
    }

    /// Answers a parked long poll with a page encoded once for everyone parked on the same
    /// cursor ([`Broadcast::page_for`](crate::proto::fanout::Broadcast::page_for)). An
    /// HTTP/1.1 keep-alive GET, the common case, gets the page's whole answer as one shared
    /// chunk, made by the first such poll.
    pub fn answer_poll_shared(&mut self, page: &mut SharedPage, env: &mut Env<'_>) -> bool {
        let common = match &self.mode {
            Mode::Http { owed: Some(o), .. } => {
                o.version == Version::Http11 && o.keep_alive && !o.head && !env.stopping
            }
            _ => false,
        };
        if !common || !self.is_open() || self.poll_head.is_some() {
            return self.respond_poll(&page.body.clone(), env);
        }
        let whole = page.whole.get_or_insert_with(|| {
            let mut v = Vec::with_capacity(page.body.len() + 160);
            fanout::poll_head().encode_head(
                Version::Http11,
                true,
                env.date,
                page.body.len(),
                &mut v,
            );
            v.extend_from_slice(&page.body);
            v.into()
        });
        self.take_owed();
        env.out.push_shared(whole);
        self.answered(true, env);
        true
    }

    /// Starts the SSE stream of a topic: `retry:` when configured, then (resuming) the gap
    /// event and the kept events of `replay`. See [`start_sse`](Self::start_sse).
    pub fn start_topic_stream(
        &mut self,
        retry: Option<u64>,
        replay: Option<&Page>,
        env: &mut Env<'_>,
    ) -> bool {
        self.start_topic_stream_with(retry, replay, &[], env)
    }

    /// [`start_topic_stream`](Self::start_topic_stream) with more header fields after the
    /// stream's own (CORS, say).
    pub fn start_topic_stream_with(
        &mut self,
        retry: Option<u64>,
        replay: Option<&Page>,
        extra: &[(String, String)],
        env: &mut Env<'_>,
    ) -> bool {
        let mut first = Vec::new();
        fanout::sse_first(retry, replay, &mut first);
        if extra.is_empty() {
            return self.start_sse(fanout::SSE_HEADERS, &first, env);
        }
        let mut headers: Vec<(&str, &str)> = fanout::SSE_HEADERS.to_vec();
        headers.extend(extra.iter().map(|(n, v)| (n.as_str(), v.as_str())));
        self.start_sse(&headers, &first, env)
    }

    /// Appends bytes of the `text/event-stream` format to an SSE stream (framed as the
    /// stream is). `false` when this is no open SSE stream.
    pub fn sse_send(&mut self, bytes: &[u8], env: &mut Env<'_>) -> bool {
        match self.mode {
            Mode::Sse { chunked } if self.is_open() => {
                push_stream(env.out, chunked, bytes);
                true
            }
            _ => false,
        }
    }
}
