//! One direction of HTTP/1.1: heads (RFC 9112 §2-§5) and the body framing of RFC 9112
//! §6.3, with the crate's head scanner and chunked decoder.

use std::collections::VecDeque;
use std::fmt::Write;

use super::fmt::{keep_head, quote};
use super::sse::SseReader;
use super::{ws, Asked, Out, Switch, MAX_PENDING};
use crate::proto::http1::{
    content_length, first_value, list_has_token, own_headers, transfer_coding, ChunkedDecoder,
    Coding, HeadScan, Limits,
};

/// How the rest of a body is delimited (RFC 9112 §6.3).
#[derive(Debug)]
enum Framing {
    Length(u64),
    Chunked(Box<ChunkedDecoder>),
    UntilClose,
}

#[derive(Debug)]
struct Body {
    framing: Framing,
    total: u64,
    kept: Vec<u8>,
    sse: Option<Box<SseReader>>,
    /// An upgrade (or CONNECT) request: hold what follows until the answer.
    then_hold: bool,
}

/// The reader of one direction's requests (or responses).
#[derive(Debug)]
pub(super) struct HttpHalf {
    requests: bool,
    scan: HeadScan,
    head: Vec<u8>,
    body: Option<Body>,
    failed: Option<&'static str>,
    hold: bool,
}

fn limits() -> Limits {
    Limits::default()
}

impl HttpHalf {
    /// A reader of requests (`requests`) or of responses.
    pub(super) fn new(requests: bool) -> HttpHalf {
        HttpHalf {
            requests,
            scan: HeadScan::default(),
            head: Vec::new(),
            body: None,
            failed: None,
            hold: false,
        }
    }

    /// Why this direction cannot be read as HTTP, once that is so.
    pub(super) fn failed(&self) -> Option<&'static str> {
        self.failed
    }

    /// The head bytes taken in but not parsed (shown as `RAW` after a failure).
    pub(super) fn unparsed(&self) -> &[u8] {
        &self.head
    }

    /// A request asking to switch protocols is complete: hold what follows.
    pub(super) fn wants_hold(&self) -> bool {
        self.hold
    }

    pub(super) fn buffered(&self) -> usize {
        self.head.capacity()
            + self.body.as_ref().map_or(0, |b| {
                b.kept.capacity()
                    + b.sse.as_ref().map_or(0, |s| s.buffered())
                    + match &b.framing {
                        Framing::Chunked(_) => crate::proto::http1::MAX_CHUNK_LINE,
                        _ => 0,
                    }
            })
    }

    /// One step: part of a head, a whole head, or part of a body. Consumes at least one
    /// byte of a non-empty `input`, or fails.
    pub(super) fn feed(
        &mut self,
        input: &[u8],
        asked: &mut VecDeque<Asked>,
        o: &mut Out<'_>,
    ) -> (usize, Option<Switch>) {
        if self.failed.is_some() {
            return (0, None);
        }
        if self.body.is_some() {
            return (self.body_step(input, o), None);
        }
        // RFC 9112 §2.2: a server "SHOULD ignore at least one empty line (CRLF) received
        // prior to the request-line".
        if self.requests && self.head.is_empty() && input.starts_with(b"\r\n") {
            return (2, None);
        }
        let cap = limits().max_head_bytes + 1;
        let take = cap.saturating_sub(self.head.len()).min(input.len());
        self.head.extend_from_slice(&input[..take]);
        let end = match self.scan.scan(&self.head, &limits()) {
            Ok(Some(end)) => end,
            Ok(None) => return (take, None),
            Err(e) => {
                self.failed = Some(e.reason);
                return (take, None);
            }
        };
        // The head ends inside what was just appended (it did not end before).
        let over = self.head.len().saturating_sub(end.len);
        self.head.truncate(end.len);
        let used = take.saturating_sub(over);
        let switch = if self.requests {
            self.request_head(end.fields, asked, o);
            None
        } else {
            self.response_head(end.fields, asked, o)
        };
        if self.failed.is_none() {
            self.head.clear();
            self.head.shrink_to(1024);
            self.scan = HeadScan::default();
        }
        (used, switch)
    }

    fn request_head(&mut self, fields: usize, asked: &mut VecDeque<Asked>, o: &mut Out<'_>) {
        let mut parsed = vec![httparse::EMPTY_HEADER; fields];
        let mut req = httparse::Request::new(&mut parsed);
        match req.parse(&self.head) {
            Ok(httparse::Status::Complete(n)) if n == self.head.len() => {}
            _ => {
                self.failed = Some("not an HTTP request head");
                return;
            }
        }
        let method = req.method.unwrap_or_default().to_owned();
        let target = req.path.unwrap_or_default().to_owned();
        let http10 = req.version == Some(0);
        let headers = own_headers(req.headers);
        let framing = match (transfer_coding(&headers), content_length(&headers)) {
            (Err(e), _) | (Ok(Coding::Absent), Err(e)) => {
                self.failed = Some(e.reason);
                return;
            }
            (Ok(Coding::Chunked { .. }), _) => Some(chunked()),
            (Ok(Coding::NotChunked), _) => {
                self.failed = Some("a request coding other than chunked");
                return;
            }
            (Ok(Coding::Absent), Ok(Some(n))) if n > 0 => Some(Framing::Length(n)),
            (Ok(Coding::Absent), Ok(_)) => None,
        };
        let upgrade = list_has_token(&headers, "connection", "upgrade")
            .then(|| first_value(&headers, "upgrade"))
            .flatten();
        let websocket = upgrade.is_some() && list_has_token(&headers, "upgrade", "websocket");
        let connect = method == "CONNECT";
        if asked.len() >= MAX_PENDING {
            asked.pop_front();
        }
        asked.push_back(Asked {
            head: method == "HEAD",
            websocket,
            connect,
        });
        let line = o.line("HTTP");
        let _ = write!(line, " {method} {target}");
        if http10 {
            line.push_str(" HTTP/1.0");
        }
        framing_words(line, framing.as_ref());
        if let Some(up) = upgrade {
            line.push_str(" upgrade=");
            word(line, up);
        }
        o.end();
        o.hex("head", &self.head, self.head.len() as u64);
        let then_hold = upgrade.is_some() || connect;
        match framing {
            Some(framing) => self.body = Some(body(framing, None, then_hold)),
            None => self.hold = then_hold,
        }
    }

    fn response_head(
        &mut self,
        fields: usize,
        asked: &mut VecDeque<Asked>,
        o: &mut Out<'_>,
    ) -> Option<Switch> {
        let mut parsed = vec![httparse::EMPTY_HEADER; fields];
        let mut resp = httparse::Response::new(&mut parsed);
        match resp.parse(&self.head) {
            Ok(httparse::Status::Complete(n)) if n == self.head.len() => {}
            _ => {
                self.failed = Some("not an HTTP response head");
                return None;
            }
        }
        let status = resp.code.unwrap_or_default();
        let reason = resp.reason.unwrap_or_default().to_owned();
        let headers = own_headers(resp.headers);
        let interim = (100..200).contains(&status) && status != 101;
        let request = if interim {
            Asked::default()
        } else {
            asked.pop_front().unwrap_or_default()
        };
        let mut switch = None;
        let mut extra = String::new();
        let framing = if status == 101 {
            let ws = request.websocket && list_has_token(&headers, "upgrade", "websocket");
            switch = Some(if ws {
                let agreed = ws::Agreed::from_response(&headers);
                if agreed.server.is_some() || agreed.client.is_some() {
                    extra.push_str(" permessage-deflate");
                }
                Switch::Ws(agreed)
            } else {
                Switch::Opaque
            });
            None
        } else if interim || request.head || status == 204 || status == 304 {
            None
        } else if request.connect && (200..300).contains(&status) {
            switch = Some(Switch::Opaque);
            None
        } else {
            match (transfer_coding(&headers), content_length(&headers)) {
                (Err(e), _) | (Ok(Coding::Absent), Err(e)) => {
                    self.failed = Some(e.reason);
                    return None;
                }
                (Ok(Coding::Chunked { .. }), _) => Some(chunked()),
                (Ok(Coding::NotChunked), _) | (Ok(Coding::Absent), Ok(None)) => {
                    Some(Framing::UntilClose)
                }
                (Ok(Coding::Absent), Ok(Some(0))) => None,
                (Ok(Coding::Absent), Ok(Some(n))) => Some(Framing::Length(n)),
            }
        };
        if switch.is_none() && !interim && (request.websocket || request.connect) {
            switch = Some(Switch::Refused);
        }
        let ctype = first_value(&headers, "content-type");
        let sse = framing.is_some()
            && (200..300).contains(&status)
            && ctype.is_some_and(|t| {
                t.get(..17)
                    .is_some_and(|t| t.eq_ignore_ascii_case(b"text/event-stream"))
            });
        let line = o.line("HTTP");
        let _ = write!(line, " {status} {reason}");
        if let Some(t) = ctype {
            // The media type, without its parameters.
            let end = t.iter().position(|&b| b == b';').unwrap_or(t.len());
            line.push(' ');
            word(line, crate::proto::http1::trim_ows(&t[..end]));
        }
        framing_words(line, framing.as_ref());
        line.push_str(&extra);
        o.end();
        o.hex("head", &self.head, self.head.len() as u64);
        if let Some(framing) = framing {
            let sse = sse.then(|| Box::new(SseReader::new()));
            self.body = Some(body(framing, sse, false));
        }
        switch
    }

    /// Part of a body: consumes what belongs to it.
    fn body_step(&mut self, input: &[u8], o: &mut Out<'_>) -> usize {
        let Some(Body {
            framing,
            total,
            kept,
            sse,
            ..
        }) = &mut self.body
        else {
            return 0;
        };
        let room = o.keep();
        let mut sink = |data: &[u8]| {
            *total += data.len() as u64;
            match sse {
                Some(sse) => sse.feed(data, o),
                None => keep_head(kept, data, room),
            }
        };
        let (used, done) = match framing {
            Framing::Length(remaining) => {
                let n = input
                    .len()
                    .min(usize::try_from(*remaining).unwrap_or(usize::MAX));
                sink(&input[..n]);
                *remaining -= n as u64;
                (n, *remaining == 0)
            }
            Framing::Chunked(decoder) => match decoder.decode_into(input, &mut sink) {
                Ok(step) => step,
                Err(e) => {
                    self.failed = Some(e.reason);
                    return 0;
                }
            },
            Framing::UntilClose => {
                sink(input);
                (input.len(), false)
            }
        };
        if done {
            self.end_body(o, "");
        }
        used
    }

    /// The body is complete (or cut short: `note`): its line.
    fn end_body(&mut self, o: &mut Out<'_>, note: &str) {
        let Some(b) = self.body.take() else { return };
        if b.total > 0 || !note.is_empty() {
            let line = o.line("HTTP");
            let _ = write!(line, " body {}{note}", super::fmt::bytes(b.total));
            if b.sse.is_some() {
                line.push_str(" (event stream)");
            } else {
                line.push(' ');
                quote(line, &b.kept, b.total);
            }
            o.end();
            o.hex("body", &b.kept, b.total);
        }
        self.hold = b.then_hold;
    }

    /// The direction ended: a body delimited by the close is complete; anything else
    /// in progress was cut short.
    pub(super) fn eof(&mut self, o: &mut Out<'_>) {
        match &self.body {
            Some(Body {
                framing: Framing::UntilClose,
                ..
            }) => self.end_body(o, ""),
            Some(_) => self.end_body(o, ", cut short"),
            None if !self.head.is_empty() => {
                super::fmt::raw(o, &self.head, &[], Some("a head cut short"));
                self.head.clear();
            }
            None => {}
        }
    }
}

fn chunked() -> Framing {
    let l = limits();
    Framing::Chunked(Box::new(ChunkedDecoder::new(
        u64::MAX,
        l.max_head_bytes,
        l.max_headers,
    )))
}

fn body(framing: Framing, sse: Option<Box<SseReader>>, then_hold: bool) -> Body {
    Body {
        framing,
        total: 0,
        kept: Vec::new(),
        sse,
        then_hold,
    }
}

fn framing_words(line: &mut String, framing: Option<&Framing>) {
    match framing {
        Some(Framing::Length(n)) => {
            let _ = write!(line, " {}", super::fmt::bytes(*n));
        }
        Some(Framing::Chunked(_)) => line.push_str(" chunked"),
        Some(Framing::UntilClose) => line.push_str(" until-close"),
        None => {}
    }
}

/// A field value as one word: as it is when it is short plain text, else quoted.
pub(super) fn word(line: &mut String, value: &[u8]) {
    let plain = value.len() <= super::PREVIEW
        && !value.is_empty()
        && value
            .iter()
            .all(|&b| b.is_ascii_graphic() && b != b'"' && b != b'\\');
    match std::str::from_utf8(value) {
        Ok(s) if plain => line.push_str(s),
        _ => quote(line, value, value.len() as u64),
    }
}
