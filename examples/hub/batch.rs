//! `POST /topics/{t}` with `Content-Type: application/x-ndjson`: a batch publish, one
//! event per line, all or nothing.
//!
//! Each line (ended by LF or CRLF; a last line without a newline counts) is one event's
//! data: one JSON text, as the NDJSON spec says, checked like a single
//! `application/json` publish (RFC 8259, nested at most 64 deep) and published as a JSON
//! event, so the JSON transports carry it as a value (`"data":{"n":1}`) and SSE as the
//! line as it was sent. A line that is not JSON refuses the batch with 400
//! `line N: invalid JSON at byte B: ...` (B counted from the line's start). A line must
//! be UTF-8 and not empty: an empty line (two newlines
//! in a row, or a blank line in the middle) refuses the batch with 400 naming it, so that
//! a stray blank line never becomes an event of its own. The newline after the last line
//! ends it and adds none. At most `--max-batch` lines (1000 by default): above it 413.
//! `?event=NAME` names every event. The answer is 201 `{"topic":"t","ids":[...]}`; any
//! refusal publishes nothing.

use std::ops::RangeInclusive;

use pushwire::proto::json;
use pushwire::{ConnId, Ctx, PublishError, Publishing, Reply, Request, Response};

use super::{Hub, Waiting};

/// The default of `--max-batch`.
pub const DEFAULT_MAX_BATCH: usize = 1000;

/// What the request's `Content-Type` says about a publish.
pub enum Kind {
    /// One text event: the body.
    Single,
    /// `application/json`: one JSON event, the body checked as JSON.
    Json,
    /// NDJSON: a batch of JSON events.
    Batch,
    /// JSON or NDJSON with a charset other than UTF-8: 415 with this message.
    BadCharset(&'static str),
}

/// The publish kind of `req`: `application/x-ndjson` (any case) is a batch,
/// `application/json` one JSON event, both with parameters allowed (`charset` must then be
/// `utf-8`: RFC 8259 §8.1); every other type (or none) is a single text publish.
pub fn kind(req: &Request) -> Kind {
    let Some(ct) = req.header_str("content-type") else {
        return Kind::Single;
    };
    let mut parts = ct.split(';');
    let media = parts.next().unwrap_or("").trim();
    let (kind, bad) = if media.eq_ignore_ascii_case("application/x-ndjson") {
        (Kind::Batch, "application/x-ndjson is UTF-8: charset=utf-8")
    } else if media.eq_ignore_ascii_case("application/json") {
        (Kind::Json, "application/json is UTF-8: charset=utf-8")
    } else {
        return Kind::Single;
    };
    for p in parts {
        let Some((name, value)) = p.split_once('=') else {
            continue;
        };
        let value = value.trim().trim_matches('"');
        if name.trim().eq_ignore_ascii_case("charset") && !value.eq_ignore_ascii_case("utf-8") {
            return Kind::BadCharset(bad);
        }
    }
    kind
}

/// Why a batch body was refused: the status and the message.
#[derive(Debug, PartialEq, Eq)]
pub struct Refused(pub u16, pub String);

/// The lines of an NDJSON body, each an event's data, checked as the module docs say.
pub fn lines(body: &[u8], max: usize) -> Result<Vec<&str>, Refused> {
    if body.is_empty() {
        return Err(Refused(400, "empty batch: the body has no line".into()));
    }
    let body = body.strip_suffix(b"\n").unwrap_or(body);
    let mut out = Vec::new();
    for (n, line) in body
        .split(|b| *b == b'\n')
        .enumerate()
        .map(|(i, l)| (i + 1, l))
    {
        if n > max {
            let msg = format!("too many events: at most {max} lines per batch");
            return Err(Refused(413, msg));
        }
        let line = line.strip_suffix(b"\r").unwrap_or(line);
        if line.is_empty() {
            return Err(Refused(400, format!("line {n}: empty line")));
        }
        match std::str::from_utf8(line) {
            Ok(text) => {
                if let Err(e) = json::check(line) {
                    return Err(Refused(400, format!("line {n}: {e}")));
                }
                out.push(text)
            }
            Err(e) => {
                let at = e.valid_up_to() + 1;
                return Err(Refused(400, format!("line {n}: not UTF-8 (byte {at})")));
            }
        }
    }
    Ok(out)
}

/// The answer to a batch publish: 201 `{"topic":...,"ids":[...]}`, or the error's status.
pub fn created(topic: &str, result: Result<RangeInclusive<u64>, PublishError>) -> Response {
    match result {
        Ok(ids) => {
            let mut body = b"{\"topic\":".to_vec();
            json::write_str(&mut body, topic);
            body.extend_from_slice(b",\"ids\":[");
            for (i, id) in ids.enumerate() {
                if i > 0 {
                    body.push(b',');
                }
                json::write_u64(&mut body, id);
            }
            body.extend_from_slice(b"]}");
            Response::json(201, body)
        }
        Err(e) => super::created(topic, Err(e)),
    }
}

impl Hub {
    /// A batch publish (see the module docs); with Redis, answered once Redis confirms.
    pub fn publish_batch(
        &mut self,
        cx: &mut Ctx<'_>,
        conn: ConnId,
        topic: &str,
        req: &Request,
    ) -> Reply {
        let datas = match lines(&req.body, self.max_batch) {
            Ok(d) => d,
            Err(Refused(status, msg)) => return Response::text(status, format!("{msg}\n")).into(),
        };
        let n = datas.len();
        let event = req.query_param("event");
        let event = event.as_deref().filter(|e| !e.is_empty());
        match cx.publish_batch_json_async(topic, event, &datas) {
            Ok(Publishing::Done(first)) => created(topic, Ok(first..=first + n as u64 - 1)).into(),
            Ok(Publishing::Pending(t)) => {
                let waiting = Waiting::Batch(conn, topic.to_owned(), n);
                self.publishing.insert(t, waiting);
                Reply::Later
            }
            Err(e) => created(topic, Err(e)).into(),
        }
    }
}
