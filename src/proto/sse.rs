//! Server-Sent Events encoder (WHATWG HTML, §9.2 "Server-sent events").
//!
//! An event stream is UTF-8 text, a sequence of lines, each a field `name: value` (or a
//! comment starting with `:`). A blank line dispatches the event built up by the lines
//! before it. The browser side is specified in §9.2.6 "Interpreting an event stream"; this
//! encoder writes exactly what makes that algorithm hand back the original id, event name
//! and data:
//!
//! * Lines end at CRLF, LF or a lone CR ("Lines must be separated by either a U+000D
//!   CARRIAGE RETURN U+000A LINE FEED (CRLF) character pair, a single U+000A LINE FEED (LF)
//!   character, or a single U+000D CARRIAGE RETURN (CR) character."). So data is split at
//!   every CRLF, CR and LF and written as one `data:` line per piece; the parser joins
//!   `data` lines with LF. (A CRLF or lone CR in data therefore comes back as LF: the
//!   format cannot carry them. An empty data string is written as one empty `data:` line
//!   so that the event is still dispatched.)
//! * "If value starts with a U+0020 SPACE character, remove it from value." We always write
//!   `field: value`, so a value that itself starts with a space survives.
//! * The `id` field: "If the field value does not contain U+0000 NULL, then set the last
//!   event ID buffer to the field value. Otherwise, ignore the field." An id can hold
//!   neither a line break nor NUL; an event name cannot hold a line break. Those are
//!   refused with an [`SseError`] before anything is written.
//! * The `gap` notice ([`write_gap`]) has no `id` line, so it does not move the client's
//!   last event id (the id the browser sends back as `Last-Event-ID` on reconnection).
//!
//! Every event ends with a blank line (`\n`); this encoder always ends lines with LF.

use std::fmt;

use super::json::write_u64;
use super::topic::TopicEvent;

/// Why an event cannot be written as SSE. These are the caller's mistakes, not a peer's.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SseError {
    /// The event name holds a CR or LF, which would end its `event:` line early.
    EventNameHasNewline,
    /// The id holds a CR or LF (which would end its `id:` line early) or a NUL (which makes
    /// browsers ignore the field).
    IdHasNewlineOrNul,
}

impl fmt::Display for SseError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            SseError::EventNameHasNewline => {
                "SSE event name contains a line break (CR or LF), which the format cannot carry"
            }
            SseError::IdHasNewlineOrNul => {
                "SSE event id contains a line break (CR or LF) or NUL, which the format cannot carry"
            }
        })
    }
}

impl std::error::Error for SseError {}

fn has_line_break(s: &str) -> bool {
    s.bytes().any(|b| b == b'\r' || b == b'\n')
}

/// Appends `name: value\n`.
fn field(out: &mut Vec<u8>, name: &[u8], value: &[u8]) {
    out.extend_from_slice(name);
    out.extend_from_slice(b": ");
    out.extend_from_slice(value);
    out.push(b'\n');
}

/// Calls `f` with each line of `text`, split at CRLF, lone CR and LF.
fn for_each_line(text: &str, mut f: impl FnMut(&[u8])) {
    let bytes = text.as_bytes();
    let mut start = 0;
    let mut i = 0;
    while let Some(&b) = bytes.get(i) {
        if b == b'\n' || b == b'\r' {
            f(&bytes[start..i]);
            i += if b == b'\r' && bytes.get(i + 1) == Some(&b'\n') {
                2
            } else {
                1
            };
            start = i;
        } else {
            i += 1;
        }
    }
    f(&bytes[start..]);
}

/// Appends one event: an optional `id:` line, an optional `event:` line, one `data:` line
/// per line of `data`, and a blank line.
///
/// `id: Some("")` writes an empty `id:` line, which resets the client's last event id. An
/// empty event name is the default type, `message`, and is not written. Nothing is written
/// when an error is returned.
pub fn write_event(
    out: &mut Vec<u8>,
    id: Option<&str>,
    event: Option<&str>,
    data: &str,
) -> Result<(), SseError> {
    if let Some(id) = id {
        if has_line_break(id) || id.contains('\0') {
            return Err(SseError::IdHasNewlineOrNul);
        }
    }
    if let Some(event) = event {
        if has_line_break(event) {
            return Err(SseError::EventNameHasNewline);
        }
    }
    let start = out.len();
    // Each data line adds "data: " and "\n" (7 bytes) to the data itself.
    out.reserve(data.len() + 8 + id.map_or(0, |i| i.len() + 5) + event.map_or(0, |e| e.len() + 8));
    if let Some(id) = id {
        field(out, b"id", id.as_bytes());
    }
    if let Some(event) = event.filter(|e| !e.is_empty()) {
        field(out, b"event", event.as_bytes());
    }
    for_each_line(data, |line| field(out, b"data", line));
    out.push(b'\n');
    log::trace!("sse: wrote {:?}", String::from_utf8_lossy(&out[start..]));
    Ok(())
}

/// Appends a `retry:` field telling the client how long to wait before reconnecting,
/// followed by a blank line (which dispatches nothing: there is no data).
pub fn write_retry(out: &mut Vec<u8>, millis: u64) {
    out.extend_from_slice(b"retry: ");
    write_u64(out, millis);
    out.extend_from_slice(b"\n\n");
}

/// Appends a comment, `: text\n` for each line of `text` (split at CRLF, CR and LF).
/// Clients ignore comments; they keep idle connections and proxies awake (heartbeats).
pub fn write_comment(out: &mut Vec<u8>, text: &str) {
    for_each_line(text, |line| field(out, b"", line));
}

/// Appends the gap notice: `event: gap` whose data is the oldest id still kept, and no
/// `id:` line, so that the client's last event id is left alone.
pub fn write_gap(out: &mut Vec<u8>, oldest: u64) {
    out.extend_from_slice(b"event: gap\ndata: ");
    write_u64(out, oldest);
    out.extend_from_slice(b"\n\n");
}

/// Appends a topic event: `id` is the event's id, `event` its name, `data` its data.
///
/// Infallible for events from [`Topics::publish`](super::topic::Topics::publish), which
/// validates event names. A hand-made event whose name holds a line break is not written
/// (and logged), rather than corrupting the stream.
pub fn write_topic_event(out: &mut Vec<u8>, ev: &TopicEvent) {
    let mut digits = Vec::with_capacity(20);
    write_u64(&mut digits, ev.id);
    let id = std::str::from_utf8(&digits).unwrap_or("0");
    if let Err(e) = write_event(out, Some(id), ev.event.as_deref(), &ev.data) {
        log::error!("sse: event {} not written: {e}", ev.id);
    }
}

#[cfg(test)]
#[path = "../../tests/util/sse_parser.rs"]
mod sse_parser;

#[cfg(test)]
mod tests {
    use super::sse_parser::{ParsedEvent, SseParser};
    use super::*;

    fn ev(id: Option<&str>, event: Option<&str>, data: &str) -> Result<String, SseError> {
        let mut out = b"prefix".to_vec();
        write_event(&mut out, id, event, data)?;
        assert!(out.starts_with(b"prefix"), "appends");
        Ok(String::from_utf8(out.split_off(6)).unwrap())
    }

    #[test]
    fn write_event_exact() {
        type Row = (
            (Option<&'static str>, Option<&'static str>, &'static str),
            &'static str,
        );
        let table: &[Row] = &[
            ((None, None, "hello"), "data: hello\n\n"),
            (
                (Some("7"), Some("up"), "x"),
                "id: 7\nevent: up\ndata: x\n\n",
            ),
            ((None, None, ""), "data: \n\n"),
            ((None, None, "a\nb"), "data: a\ndata: b\n\n"),
            ((None, None, "a\r\nb"), "data: a\ndata: b\n\n"),
            ((None, None, "a\rb"), "data: a\ndata: b\n\n"),
            ((None, None, "a\n\rb"), "data: a\ndata: \ndata: b\n\n"),
            ((None, None, "a\r\r\nb"), "data: a\ndata: \ndata: b\n\n"),
            ((None, None, "\n"), "data: \ndata: \n\n"),
            ((None, None, "x\r"), "data: x\ndata: \n\n"),
            ((None, None, "\r\n\r\n"), "data: \ndata: \ndata: \n\n"),
            ((None, None, " lead"), "data:  lead\n\n"),
            ((None, None, ": not a comment"), "data: : not a comment\n\n"),
            ((None, None, "é 😀 \u{2028}"), "data: é 😀 \u{2028}\n\n"),
            ((None, None, "nul\0inside"), "data: nul\0inside\n\n"),
            ((Some(""), None, "r"), "id: \ndata: r\n\n"),
            (
                (Some(" sp"), Some(" sp"), "d"),
                "id:  sp\nevent:  sp\ndata: d\n\n",
            ),
            ((None, Some(""), "d"), "data: d\n\n"),
            (
                (Some("ü"), Some("a:b"), "d"),
                "id: ü\nevent: a:b\ndata: d\n\n",
            ),
        ];
        for &((id, event, data), want) in table {
            assert_eq!(
                ev(id, event, data).as_deref(),
                Ok(want),
                "{id:?} {event:?} {data:?}"
            );
        }
    }

    #[test]
    fn write_event_refusals_write_nothing() {
        let table: &[(Option<&str>, Option<&str>, SseError)] = &[
            (Some("a\nb"), None, SseError::IdHasNewlineOrNul),
            (Some("a\rb"), None, SseError::IdHasNewlineOrNul),
            (Some("\0"), None, SseError::IdHasNewlineOrNul),
            (Some("1"), Some("a\n"), SseError::EventNameHasNewline),
            (None, Some("\r"), SseError::EventNameHasNewline),
        ];
        for &(id, event, err) in table {
            let mut out = b"keep".to_vec();
            assert_eq!(write_event(&mut out, id, event, "data"), Err(err));
            assert_eq!(out, b"keep");
        }
        assert!(SseError::IdHasNewlineOrNul.to_string().contains("NUL"));
        assert!(SseError::EventNameHasNewline
            .to_string()
            .contains("event name"));
    }

    #[test]
    fn retry_comment_gap_exact() {
        let mut out = Vec::new();
        write_retry(&mut out, 3000);
        assert_eq!(out, b"retry: 3000\n\n");

        let table: &[(&str, &str)] = &[
            ("", ": \n"),
            ("ping", ": ping\n"),
            ("a\nb\r\nc\rd", ": a\n: b\n: c\n: d\n"),
        ];
        for (text, want) in table {
            let mut out = Vec::new();
            write_comment(&mut out, text);
            assert_eq!(String::from_utf8(out).unwrap(), *want);
        }

        let mut out = Vec::new();
        write_gap(&mut out, 12);
        assert_eq!(out, b"event: gap\ndata: 12\n\n");
    }

    #[test]
    fn topic_event_exact() {
        let table = [
            (
                TopicEvent {
                    id: 1,
                    event: None,
                    data: "hi".into(),
                    json: false,
                    published_ms: 0,
                },
                "id: 1\ndata: hi\n\n",
            ),
            (
                TopicEvent {
                    id: 99,
                    event: Some("up".into()),
                    data: "a\nb".into(),
                    json: false,
                    published_ms: 0,
                },
                "id: 99\nevent: up\ndata: a\ndata: b\n\n",
            ),
            // Hand-made, invalid: nothing is written.
            (
                TopicEvent {
                    id: 2,
                    event: Some("x\ny".into()),
                    data: "d".into(),
                    json: false,
                    published_ms: 0,
                },
                "",
            ),
        ];
        for (e, want) in table {
            let mut out = Vec::new();
            write_topic_event(&mut out, &e);
            assert_eq!(String::from_utf8(out).unwrap(), want);
        }
    }

    /// Parses `bytes` whole, byte by byte, and split at every point: same events each way.
    fn parse_all_ways(bytes: &[u8]) -> Vec<ParsedEvent> {
        let whole = SseParser::new().feed(bytes);
        let mut p = SseParser::new();
        let bytewise: Vec<_> = bytes.iter().flat_map(|b| p.feed(&[*b])).collect();
        assert_eq!(bytewise, whole);
        for cut in 0..=bytes.len() {
            let mut p = SseParser::new();
            let mut split = p.feed(&bytes[..cut]);
            split.extend(p.feed(&bytes[cut..]));
            assert_eq!(split, whole, "cut at {cut}");
        }
        whole
    }

    #[test]
    fn round_trip_through_a_whatwg_parser() {
        let table: &[(Option<&str>, Option<&str>, &str, &str)] = &[
            // (id, event, data, data the browser sees)
            (Some("1"), None, "hello", "hello"),
            (Some("2"), Some("up"), "a\nb\nc", "a\nb\nc"),
            (None, Some("x"), "", ""),
            (Some(""), None, "\n", "\n"),
            (Some(" 3"), Some(" e "), "  two spaces", "  two spaces"),
            (
                Some("ü"),
                None,
                "é 😀 \u{2028}\u{feff}",
                "é 😀 \u{2028}\u{feff}",
            ),
            // CR and CRLF in data come back as LF: the format has no other way.
            (None, None, "a\r\nb\rc\n", "a\nb\nc\n"),
            (None, None, "data: x\n\nid: 9", "data: x\n\nid: 9"),
        ];
        let mut stream = Vec::new();
        write_comment(&mut stream, "hello\nthere");
        write_retry(&mut stream, 1500);
        let mut want = Vec::new();
        let mut last_id = String::new();
        for &(id, event, data, seen) in table {
            write_event(&mut stream, id, event, data).unwrap();
            if let Some(id) = id {
                last_id = id.to_string();
            }
            let event = event.filter(|e| !e.is_empty()).unwrap_or("message");
            want.push(ParsedEvent {
                event: event.to_string(),
                data: seen.to_string(),
                last_event_id: last_id.clone(),
            });
        }
        // The gap notice leaves the last event id alone.
        write_gap(&mut stream, 5);
        want.push(ParsedEvent {
            event: "gap".into(),
            data: "5".into(),
            last_event_id: last_id.clone(),
        });
        write_topic_event(
            &mut stream,
            &TopicEvent {
                id: 6,
                event: None,
                data: "t".into(),
                json: false,
                published_ms: 0,
            },
        );
        want.push(ParsedEvent {
            event: "message".into(),
            data: "t".into(),
            last_event_id: "6".into(),
        });

        assert_eq!(parse_all_ways(&stream), want);
        let mut p = SseParser::new();
        p.feed(&stream);
        assert_eq!(p.comments, 2);
        assert_eq!(p.retry, Some(1500));
    }
}
