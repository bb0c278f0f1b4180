//! The few JSON documents the hub writes (RFC 8259), and a validator for the ones it is
//! given.
//!
//! The hub never needs to build a value from JSON: what it writes has a fixed shape, and a
//! JSON event's data (published with `Ctx::publish_json`, or `Content-Type:
//! application/json` at the hub) is checked once by [`check()`] and then copied verbatim, so
//! a small writer and a validator beat a dependency. Strings are written per RFC 8259 §7: "All Unicode
//! characters may be placed within the quotation marks, except for the characters that
//! MUST be escaped: quotation mark, reverse solidus, and the control characters (U+0000
//! through U+001F)." Beyond that, U+2028 and U+2029 are escaped too: they are legal in JSON
//! but were line terminators in JavaScript string literals before ES2019, so escaping them
//! keeps the output safe to paste into a script. Every other character is written as raw
//! UTF-8.
//!
//! Shapes:
//!
//! * [`write_event`] writes `{"id":1,"event":null,"data":"..."}`; for a JSON event
//!   ([`TopicEvent::json`]) `data` is the event's JSON value as published:
//!   `{"id":1,"event":null,"data":{"msg":"hi"}}`
//! * [`write_page`] writes `{"events":[...],"next":M,"gap":false}` (long-poll and `/events`)
//! * [`write_gap`] writes `{"gap":true,"oldest":N}` (the WebSocket gap notice)

pub mod check;

pub use check::{check, check_with, Cause, JsonError, Limits};

use super::topic::{Page, TopicEvent};

/// Appends `s` as a quoted JSON string.
pub fn write_str(out: &mut Vec<u8>, s: &str) {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    let bytes = s.as_bytes();
    out.reserve(bytes.len() + 2);
    out.push(b'"');
    // Copy runs of bytes that need no escape in one go.
    let mut run = 0;
    let mut i = 0;
    while let Some(&b) = bytes.get(i) {
        let escape: Option<&[u8]> = match b {
            b'"' => Some(b"\\\""),
            b'\\' => Some(b"\\\\"),
            b'\n' => Some(b"\\n"),
            b'\r' => Some(b"\\r"),
            b'\t' => Some(b"\\t"),
            0x08 => Some(b"\\b"),
            0x0C => Some(b"\\f"),
            // U+2028 LINE SEPARATOR and U+2029 PARAGRAPH SEPARATOR are E2 80 A8 / E2 80 A9.
            0xE2 => match bytes.get(i + 1..i + 3) {
                Some([0x80, 0xA8]) => Some(b"\\u2028"),
                Some([0x80, 0xA9]) => Some(b"\\u2029"),
                _ => None,
            },
            _ => None,
        };
        let len = if b == 0xE2 && escape.is_some() { 3 } else { 1 };
        if escape.is_some() || b < 0x20 {
            out.extend_from_slice(&bytes[run..i]);
            match escape {
                Some(e) => out.extend_from_slice(e),
                None => out.extend_from_slice(&[
                    b'\\',
                    b'u',
                    b'0',
                    b'0',
                    HEX[usize::from(b >> 4)],
                    HEX[usize::from(b & 0xF)],
                ]),
            }
            run = i + len;
        }
        i += len;
    }
    out.extend_from_slice(&bytes[run..]);
    out.push(b'"');
}

/// Appends `n` in decimal.
pub fn write_u64(out: &mut Vec<u8>, mut n: u64) {
    let mut buf = [0u8; 20];
    let mut at = buf.len();
    loop {
        at -= 1;
        buf[at] = b'0' + (n % 10) as u8;
        n /= 10;
        if n == 0 {
            break;
        }
    }
    out.extend_from_slice(&buf[at..]);
}

/// Appends one event: `{"id":1,"event":null,"data":"..."}` (`event` is a string when the
/// event has a name).
pub fn write_event(out: &mut Vec<u8>, ev: &TopicEvent) {
    out.extend_from_slice(b"{\"id\":");
    write_u64(out, ev.id);
    out.extend_from_slice(b",\"event\":");
    match &ev.event {
        Some(name) => write_str(out, name),
        None => out.extend_from_slice(b"null"),
    }
    out.extend_from_slice(b",\"data\":");
    write_data(out, ev);
    out.push(b'}');
}

/// Appends an event's data as a JSON value: a JSON event's text as it is (it was checked
/// when published), a text event's as a quoted string.
pub fn write_data(out: &mut Vec<u8>, ev: &TopicEvent) {
    if ev.json {
        out.extend_from_slice(ev.data.as_bytes());
    } else {
        write_str(out, &ev.data);
    }
}

/// Appends a page of events: `{"events":[...],"next":M,"gap":false}`.
pub fn write_page(out: &mut Vec<u8>, page: &Page) {
    out.extend_from_slice(b"{\"events\":[");
    for (i, ev) in page.events.iter().enumerate() {
        if i > 0 {
            out.push(b',');
        }
        write_event(out, ev);
    }
    out.extend_from_slice(b"],\"next\":");
    write_u64(out, page.next);
    out.extend_from_slice(if page.gap {
        b",\"gap\":true}"
    } else {
        b",\"gap\":false}"
    });
}

/// Appends the gap notice sent on a WebSocket before replayed events when some were lost:
/// `{"gap":true,"oldest":N}` with `N` the oldest id still kept.
pub fn write_gap(out: &mut Vec<u8>, oldest: u64) {
    out.extend_from_slice(b"{\"gap\":true,\"oldest\":");
    write_u64(out, oldest);
    out.push(b'}');
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::rc::Rc;

    fn s(text: &str) -> String {
        let mut out = Vec::new();
        write_str(&mut out, text);
        String::from_utf8(out).unwrap()
    }

    /// A tiny JSON string parser (RFC 8259 §7), strict: the oracle for the round trip.
    fn parse_str(json: &str) -> Result<String, &'static str> {
        let body = json
            .strip_prefix('"')
            .and_then(|r| r.strip_suffix('"'))
            .ok_or("not quoted")?;
        let mut out = String::new();
        let mut chars = body.chars();
        let hex4 = |chars: &mut std::str::Chars<'_>| -> Result<u32, &'static str> {
            let h: String = chars.by_ref().take(4).collect();
            if h.len() != 4 {
                return Err("short \\u");
            }
            u32::from_str_radix(&h, 16).map_err(|_| "bad hex")
        };
        while let Some(c) = chars.next() {
            match c {
                '"' => return Err("unescaped quote"),
                '\0'..='\x1f' => return Err("raw control character"),
                '\\' => {
                    let e = chars.next().ok_or("dangling backslash")?;
                    out.push(match e {
                        '"' => '"',
                        '\\' => '\\',
                        '/' => '/',
                        'b' => '\x08',
                        'f' => '\x0c',
                        'n' => '\n',
                        'r' => '\r',
                        't' => '\t',
                        'u' => {
                            let u = hex4(&mut chars)?;
                            if (0xD800..0xDC00).contains(&u) {
                                if chars.next() != Some('\\') || chars.next() != Some('u') {
                                    return Err("lone high surrogate");
                                }
                                let lo = hex4(&mut chars)?;
                                if !(0xDC00..0xE000).contains(&lo) {
                                    return Err("bad low surrogate");
                                }
                                let c = 0x10000 + ((u - 0xD800) << 10) + (lo - 0xDC00);
                                char::from_u32(c).ok_or("bad pair")?
                            } else {
                                char::from_u32(u).ok_or("lone low surrogate")?
                            }
                        }
                        _ => return Err("unknown escape"),
                    });
                }
                c => out.push(c),
            }
        }
        Ok(out)
    }

    #[test]
    fn string_escapes_exact() {
        let table: &[(&str, &str)] = &[
            ("", r#""""#),
            ("plain", r#""plain""#),
            ("a\"b", r#""a\"b""#),
            ("a\\b", r#""a\\b""#),
            ("/", r#""/""#),
            ("\n\r\t\x08\x0c", r#""\n\r\t\b\f""#),
            ("\0\x01\x1f", r#""\u0000\u0001\u001f""#),
            ("\x0b\x1b", r#""\u000b\u001b""#),
            ("\x7f", "\"\x7f\""),
            ("é€😀", "\"é€😀\""),
            ("a\u{2028}b\u{2029}c", r#""a\u2028b\u2029c""#),
            // Other characters starting with E2 stay raw: U+2027, U+202A, U+20AC.
            ("\u{2027}\u{202a}\u{20ac}", "\"\u{2027}\u{202a}\u{20ac}\""),
            ("\u{2028}", r#""\u2028""#),
            ("x\u{2029}", r#""x\u2029""#),
            ("<\"\\\n>", r#""<\"\\\n>""#),
        ];
        for (input, want) in table {
            assert_eq!(s(input), *want, "{input:?}");
        }
    }

    #[test]
    fn string_round_trips_through_a_parser() {
        let mut every: String = (0u32..0x800).filter_map(char::from_u32).collect();
        every.extend([
            '\u{2028}',
            '\u{2029}',
            '\u{fffd}',
            '\u{10ffff}',
            '😀',
            '\u{e000}',
        ]);
        let cases = [
            every.as_str(),
            "",
            "\"\"\\\\",
            "ends with E2-ish \u{2028}",
            "\u{2029}\u{2029}\u{2028}",
        ];
        for case in cases {
            let json = s(case);
            assert_eq!(parse_str(&json).as_deref(), Ok(case));
            assert!(!json.contains('\u{2028}') && !json.contains('\u{2029}'));
        }
    }

    #[test]
    fn numbers() {
        for (n, want) in [
            (0u64, "0"),
            (7, "7"),
            (10, "10"),
            (1234567890, "1234567890"),
        ] {
            let mut out = Vec::new();
            write_u64(&mut out, n);
            assert_eq!(out, want.as_bytes());
        }
        let mut out = Vec::new();
        write_u64(&mut out, u64::MAX);
        assert_eq!(out, u64::MAX.to_string().as_bytes());
    }

    #[test]
    fn event_exact() {
        let table = [
            (
                TopicEvent {
                    id: 1,
                    event: None,
                    data: "hi".into(),
                    json: false,
                    published_ms: 0,
                },
                r#"{"id":1,"event":null,"data":"hi"}"#,
            ),
            (
                TopicEvent {
                    id: 42,
                    event: Some("up".into()),
                    data: "a\"b\nc".into(),
                    json: false,
                    published_ms: 0,
                },
                r#"{"id":42,"event":"up","data":"a\"b\nc"}"#,
            ),
            (
                TopicEvent {
                    id: 3,
                    event: None,
                    data: "".into(),
                    json: false,
                    published_ms: 0,
                },
                r#"{"id":3,"event":null,"data":""}"#,
            ),
        ];
        for (ev, want) in table {
            let mut out = Vec::new();
            write_event(&mut out, &ev);
            assert_eq!(String::from_utf8(out).unwrap(), want);
        }
    }

    #[test]
    fn page_exact() {
        let a = Rc::new(TopicEvent {
            id: 4,
            event: None,
            data: "x".into(),
            json: false,
            published_ms: 0,
        });
        let b = Rc::new(TopicEvent {
            id: 5,
            event: Some("e".into()),
            data: "y".into(),
            json: false,
            published_ms: 0,
        });
        let table = [
            (
                Page {
                    events: vec![],
                    gap: false,
                    next: 0,
                    oldest: 0,
                    more: false,
                },
                r#"{"events":[],"next":0,"gap":false}"#,
            ),
            (
                Page {
                    events: vec![a.clone()],
                    gap: true,
                    next: 4,
                    oldest: 4,
                    more: true,
                },
                r#"{"events":[{"id":4,"event":null,"data":"x"}],"next":4,"gap":true}"#,
            ),
            (
                Page {
                    events: vec![a.clone(), b.clone()],
                    gap: false,
                    next: 5,
                    oldest: 1,
                    more: false,
                },
                concat!(
                    r#"{"events":[{"id":4,"event":null,"data":"x"},"#,
                    r#"{"id":5,"event":"e","data":"y"}],"next":5,"gap":false}"#
                ),
            ),
        ];
        for (page, want) in table {
            let mut out = Vec::new();
            write_page(&mut out, &page);
            assert_eq!(String::from_utf8(out).unwrap(), want);
        }
    }

    #[test]
    fn json_event_data_is_the_value_itself() {
        let mut ev = TopicEvent {
            id: 9,
            event: None,
            data: r#"{"msg":"hi","n":[1,2]}"#.into(),
            json: true,
            published_ms: 0,
        };
        let mut out = Vec::new();
        write_event(&mut out, &ev);
        assert_eq!(
            out,
            br#"{"id":9,"event":null,"data":{"msg":"hi","n":[1,2]}}"#
        );
        // The same text as a text event stays a string.
        ev.json = false;
        out.clear();
        write_event(&mut out, &ev);
        assert_eq!(
            out,
            br#"{"id":9,"event":null,"data":"{\"msg\":\"hi\",\"n\":[1,2]}"}"#
        );
        // A page mixes both, and stays valid JSON.
        let page = Page {
            events: vec![
                Rc::new(TopicEvent {
                    json: true,
                    data: " 5 ".into(),
                    ..ev.clone()
                }),
                Rc::new(ev),
            ],
            gap: false,
            next: 9,
            oldest: 9,
            more: false,
        };
        out.clear();
        write_page(&mut out, &page);
        assert!(out.starts_with(br#"{"events":[{"id":9,"event":null,"data": 5 },"#));
        assert_eq!(check(&out), Ok(()));
    }

    #[test]
    fn gap_exact() {
        let mut out = Vec::new();
        write_gap(&mut out, 17);
        assert_eq!(out, br#"{"gap":true,"oldest":17}"#);
    }
}
