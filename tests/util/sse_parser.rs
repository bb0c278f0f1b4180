//! A client-side event-stream parser following WHATWG HTML §9.2.6 "Interpreting an event
//! stream", step for step: the oracle that integration tests and the `sse_roundtrip` fuzz
//! target check the server's SSE output against.
//!
//! Standalone (std only, no crate imports) so that it can be included anywhere with
//! `#[path = ".../tests/util/sse_parser.rs"] mod sse_parser;`.
//!
//! The stream is decoded as UTF-8 with replacement characters and one leading BOM is
//! stripped. Lines end at CRLF, LF or a lone CR, also when a CRLF is split across two
//! [`SseParser::feed`] calls. The parser only remembers the current partial line, so
//! feeding is linear in the input.
#![allow(dead_code)]

/// The UTF-8 byte order mark, stripped once at the start of the stream.
const BOM: [u8; 3] = [0xEF, 0xBB, 0xBF];

/// One dispatched event, as a browser's `MessageEvent` would show it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ParsedEvent {
    /// The event type (`message` unless an `event:` field said otherwise).
    pub event: String,
    /// The data, `data:` lines joined with LF.
    pub data: String,
    /// The `lastEventId` of the event.
    pub last_event_id: String,
}

/// An incremental event-stream parser.
#[derive(Debug, Default)]
pub struct SseParser {
    /// Bytes of a possible leading BOM seen so far, until the stream start is decided.
    head: Vec<u8>,
    /// The BOM check is done.
    started: bool,
    /// Bytes of the current, unfinished line.
    line: Vec<u8>,
    /// The last byte seen was a CR: an LF right after it ends nothing.
    after_cr: bool,
    data: String,
    event_type: String,
    last_event_id_buffer: String,
    /// The event source's last event ID string (what it would send as `Last-Event-ID`).
    pub last_event_id: String,
    /// The reconnection time set by the last valid `retry:` field.
    pub retry: Option<u64>,
    /// Number of comment lines seen.
    pub comments: usize,
    /// Number of lines seen.
    pub lines: usize,
}

impl SseParser {
    /// A parser at the start of a stream.
    pub fn new() -> Self {
        Self::default()
    }

    /// Feeds the next bytes of the stream; returns the events they complete.
    pub fn feed(&mut self, mut bytes: &[u8]) -> Vec<ParsedEvent> {
        let mut events = Vec::new();
        // "The UTF-8 decode algorithm strips one leading UTF-8 Byte Order Mark (BOM), if any."
        while !self.started {
            let Some((&b, rest)) = bytes.split_first() else {
                return events;
            };
            if BOM.get(self.head.len()) == Some(&b) {
                self.head.push(b);
                bytes = rest;
                if self.head.len() == BOM.len() {
                    self.head.clear();
                    self.started = true;
                }
            } else {
                // Not a BOM: the held bytes are ordinary (invalid) stream content.
                self.started = true;
                let held = std::mem::take(&mut self.head);
                self.scan(&held, &mut events);
            }
        }
        self.scan(bytes, &mut events);
        events
    }

    /// Splits `bytes` into lines.
    fn scan(&mut self, mut bytes: &[u8], events: &mut Vec<ParsedEvent>) {
        if self.after_cr && !bytes.is_empty() {
            self.after_cr = false;
            if let Some((b'\n', rest)) = bytes.split_first() {
                bytes = rest;
            }
        }
        while let Some(end) = bytes.iter().position(|&b| b == b'\r' || b == b'\n') {
            self.line.extend_from_slice(&bytes[..end]);
            self.end_line(events);
            let is_cr = bytes[end] == b'\r';
            bytes = &bytes[end + 1..];
            if is_cr {
                match bytes.split_first() {
                    Some((b'\n', rest)) => bytes = rest, // CRLF
                    Some(_) => {}
                    None => self.after_cr = true, // an LF may come in the next feed
                }
            }
        }
        self.line.extend_from_slice(bytes);
    }

    fn end_line(&mut self, events: &mut Vec<ParsedEvent>) {
        let line = String::from_utf8_lossy(&self.line).into_owned();
        self.line.clear();
        self.lines += 1;
        // "If the line is empty (a blank line): Dispatch the event."
        if line.is_empty() {
            if let Some(ev) = self.dispatch() {
                events.push(ev);
            }
            return;
        }
        // "If the line starts with a U+003A COLON character (:): Ignore the line."
        if line.starts_with(':') {
            self.comments += 1;
            return;
        }
        // "If the line contains a U+003A COLON character: collect the characters on the
        // line before the first colon, and let field be that string; collect the characters
        // after it, and let value be that string. If value starts with a U+0020 SPACE
        // character, remove it from value. Otherwise, the string is not empty but does not
        // contain a colon: process the field using the whole line as the field name, and
        // the empty string as the field value."
        let (field, value) = match line.split_once(':') {
            Some((field, value)) => (field, value.strip_prefix(' ').unwrap_or(value)),
            None => (line.as_str(), ""),
        };
        match field {
            "event" => self.event_type = value.to_string(),
            "data" => {
                self.data.push_str(value);
                self.data.push('\n');
            }
            // "If the field value does not contain U+0000 NULL, then set the last event ID
            // buffer to the field value. Otherwise, ignore the field."
            "id" if !value.contains('\0') => self.last_event_id_buffer = value.to_string(),
            // "If the field value consists of only ASCII digits, then interpret the field
            // value as an integer in base ten, and set the event stream's reconnection time
            // to that integer. Otherwise, ignore the field." (A value too big for u64 is
            // ignored here.)
            "retry" if !value.is_empty() && value.bytes().all(|b| b.is_ascii_digit()) => {
                if let Ok(ms) = value.parse() {
                    self.retry = Some(ms);
                }
            }
            _ => {} // "Otherwise: The field is ignored."
        }
    }

    /// The "dispatch the event" steps.
    fn dispatch(&mut self) -> Option<ParsedEvent> {
        // 1. "Set the last event ID string of the event source to the value of the last
        //    event ID buffer. The buffer does not get reset."
        self.last_event_id = self.last_event_id_buffer.clone();
        // 2. "If the data buffer is an empty string, set the data buffer and the event type
        //    buffer to the empty string and return."
        if self.data.is_empty() {
            self.event_type.clear();
            return None;
        }
        // 3. "If the data buffer's last character is a U+000A LINE FEED (LF) character, then
        //    remove the last character from the data buffer."
        if self.data.ends_with('\n') {
            self.data.pop();
        }
        // 4.-5. The type defaults to "message".
        let event = if self.event_type.is_empty() {
            "message".to_string()
        } else {
            std::mem::take(&mut self.event_type)
        };
        Some(ParsedEvent {
            event,
            data: std::mem::take(&mut self.data),
            last_event_id: self.last_event_id.clone(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ev(event: &str, data: &str, id: &str) -> ParsedEvent {
        ParsedEvent {
            event: event.into(),
            data: data.into(),
            last_event_id: id.into(),
        }
    }

    /// Parses whole, byte by byte and at every split point, asserting the same result,
    /// and returns the events and the whole-fed parser.
    fn parse(bytes: &[u8]) -> (Vec<ParsedEvent>, SseParser) {
        let mut whole = SseParser::new();
        let events = whole.feed(bytes);
        let mut p = SseParser::new();
        let bytewise: Vec<_> = bytes.iter().flat_map(|b| p.feed(&[*b])).collect();
        assert_eq!(bytewise, events, "byte by byte");
        for cut in 0..=bytes.len() {
            let mut p = SseParser::new();
            let mut split = p.feed(&bytes[..cut]);
            split.extend(p.feed(&[]));
            split.extend(p.feed(&bytes[cut..]));
            assert_eq!(split, events, "cut at {cut}");
            assert_eq!(
                (&p.last_event_id, p.retry, p.comments, p.lines),
                (
                    &whole.last_event_id,
                    whole.retry,
                    whole.comments,
                    whole.lines
                ),
                "cut at {cut}"
            );
        }
        (events, whole)
    }

    #[test]
    fn spec_examples() {
        // The examples of WHATWG HTML §9.2.5 "Event stream format".
        let table: &[(&str, Vec<ParsedEvent>)] = &[
            (
                "data: YHOO\ndata: +2\ndata: 10\n\n",
                vec![ev("message", "YHOO\n+2\n10", "")],
            ),
            (
                ": test stream\n\ndata: first event\nid: 1\n\ndata:second event\nid\n\ndata:  third event\n",
                vec![ev("message", "first event", "1"), ev("message", "second event", "")],
            ),
            (
                "data\n\ndata\ndata\n\ndata:",
                vec![ev("message", "", ""), ev("message", "\n", "")],
            ),
            (
                "data:test\n\ndata: test\n\n",
                vec![ev("message", "test", ""), ev("message", "test", "")],
            ),
            (
                "event: add\ndata: 73857293\n\nevent: remove\ndata: 2153\n\n",
                vec![ev("add", "73857293", ""), ev("remove", "2153", "")],
            ),
        ];
        for (input, want) in table {
            assert_eq!(&parse(input.as_bytes()).0, want, "{input:?}");
        }
    }

    #[test]
    fn line_endings() {
        let table: &[(&str, Vec<ParsedEvent>)] = &[
            (
                "data: a\r\ndata: b\r\n\r\n",
                vec![ev("message", "a\nb", "")],
            ),
            ("data: a\rdata: b\r\r", vec![ev("message", "a\nb", "")]),
            ("data: a\ndata: b\n\n", vec![ev("message", "a\nb", "")]),
            ("data: a\r\n\n", vec![ev("message", "a", "")]),
            // CR LF is one line end, never two: no blank line, no dispatch here.
            ("data: a\r\ndata: b\r\n", vec![]),
            ("data: a\n\r", vec![ev("message", "a", "")]),
            ("data: a\r\r\n", vec![ev("message", "a", "")]),
            (
                "data: a\n\r\ndata: b\r\n\n",
                vec![ev("message", "a", ""), ev("message", "b", "")],
            ),
        ];
        for (input, want) in table {
            assert_eq!(&parse(input.as_bytes()).0, want, "{input:?}");
        }
    }

    #[test]
    fn crlf_split_across_feeds() {
        let mut p = SseParser::new();
        assert_eq!(p.feed(b"data: a\r"), vec![]);
        assert_eq!(p.feed(b"\ndata: b\r"), vec![]);
        assert_eq!(p.feed(b"\n"), vec![]);
        assert_eq!(p.feed(b"\r"), vec![ev("message", "a\nb", "")]);
        assert_eq!(p.feed(b""), vec![]);
        // An LF after an empty feed still belongs to the CR before it.
        assert_eq!(p.feed(b"\ndata: c\n\n"), vec![ev("message", "c", "")]);
    }

    #[test]
    fn fields() {
        let table: &[(&str, Vec<ParsedEvent>)] = &[
            // Only one leading space is stripped.
            ("data:  two\n\n", vec![ev("message", " two", "")]),
            ("data:no space\n\n", vec![ev("message", "no space", "")]),
            ("data: a: b\n\n", vec![ev("message", "a: b", "")]),
            // Field names are case-sensitive; unknown fields are ignored.
            ("Data: x\nfoo: y\ndata: z\n\n", vec![ev("message", "z", "")]),
            ("data :x\n\n", vec![]),
            // Event type resets after each dispatch, and on a blank line without data.
            (
                "event: a\ndata: 1\n\ndata: 2\n\n",
                vec![ev("a", "1", ""), ev("message", "2", "")],
            ),
            ("event: a\n\ndata: 2\n\n", vec![ev("message", "2", "")]),
            ("event\ndata: 2\n\n", vec![ev("message", "2", "")]),
            // The last event id persists across events; a NUL makes the field ignored.
            (
                "id: 1\ndata: a\n\ndata: b\n\n",
                vec![ev("message", "a", "1"), ev("message", "b", "1")],
            ),
            (
                "id: 1\n\nid: x\0y\ndata: a\n\n",
                vec![ev("message", "a", "1")],
            ),
            (
                "id: 1\ndata: a\n\nid\ndata: b\n\n",
                vec![ev("message", "a", "1"), ev("message", "b", "")],
            ),
            // Incomplete at end of stream: not dispatched.
            ("data: a\n", vec![]),
            ("data: a", vec![]),
            // NUL is fine in data.
            ("data: \u{0}\n\n", vec![ev("message", "\0", "")]),
        ];
        for (input, want) in table {
            assert_eq!(&parse(input.as_bytes()).0, want, "{input:?}");
        }
        // Invalid UTF-8 becomes U+FFFD.
        let (events, _) = parse(b"data: a\xffb\xe2\x80\n\n");
        assert_eq!(events, vec![ev("message", "a\u{fffd}b\u{fffd}", "")]);
    }

    #[test]
    fn id_without_data_still_sets_last_event_id() {
        let (events, p) = parse(b"id: 5\n\n");
        assert!(events.is_empty());
        assert_eq!(p.last_event_id, "5");
        let (_, p) = parse(b"id: 5\n"); // not dispatched: only the buffer is set
        assert_eq!(p.last_event_id, "");
    }

    #[test]
    fn retry_and_comments() {
        let table: &[(&str, Option<u64>, usize)] = &[
            ("retry: 1000\n", Some(1000), 0),
            ("retry:0\n", Some(0), 0),
            ("retry: 10x\n", None, 0),
            ("retry: \n", None, 0),
            ("retry:  5\n", None, 0),
            ("retry: -5\n", None, 0),
            ("retry: 99999999999999999999999\n", None, 0),
            ("retry: 5\nretry: x\n", Some(5), 0),
            (": a\n:\n:b\r\n", None, 3),
            (" : not a comment\n", None, 0),
        ];
        for (input, retry, comments) in table {
            let (_, p) = parse(input.as_bytes());
            assert_eq!((p.retry, p.comments), (*retry, *comments), "{input:?}");
        }
    }

    #[test]
    fn bom() {
        let table: &[(&[u8], Vec<ParsedEvent>)] = &[
            (b"\xEF\xBB\xBFdata: x\n\n", vec![ev("message", "x", "")]),
            // Only one BOM is stripped: the second makes the field name unknown.
            (b"\xEF\xBB\xBF\xEF\xBB\xBFdata: x\n\n", vec![]),
            // A BOM later in the stream is content.
            (
                b"data: \xEF\xBB\xBFx\n\n",
                vec![ev("message", "\u{feff}x", "")],
            ),
            // A partial BOM is invalid UTF-8, not a BOM.
            (
                b"\xEF\xBBdata: x\n\ndata: y\n\n",
                vec![ev("message", "y", "")],
            ),
            (b"\xEF\n\ndata: y\n\n", vec![ev("message", "y", "")]),
            (b"\xEF", vec![]),
            (b"", vec![]),
        ];
        for (input, want) in table {
            assert_eq!(&parse(input).0, want, "{input:?}");
        }
        let (_, p) = parse(b"\xEF\xBB:c\n");
        assert_eq!(p.comments, 0, "the line starts with U+FFFD, not a colon");
    }
}
