//! SSE round trip: whatever `sse::write_event` accepts, a WHATWG parser gives back exactly.
//!
//! Input: one flags byte, then `id 0xFF event 0xFF data` (0xFF never occurs in UTF-8).
//! Flags bit 0: the id is present; bit 1: the event name is present; bits 2-7: the size
//! (1-64) of the pieces the output is fed to the parser in.
#![no_main]

use libfuzzer_sys::fuzz_target;
use pushwire::proto::sse;

#[path = "../../tests/util/sse_parser.rs"]
mod sse_parser;

fuzz_target!(|input: &[u8]| {
    let Some((&flags, rest)) = input.split_first() else {
        return;
    };
    let mut parts = rest.splitn(3, |&b| b == 0xFF);
    let mut next = || std::str::from_utf8(parts.next().unwrap_or(b"")).ok();
    let (Some(id), Some(event), Some(data)) = (next(), next(), next()) else {
        return;
    };
    let id = (flags & 1 != 0).then_some(id);
    let event = (flags & 2 != 0).then_some(event);
    let piece = usize::from(flags >> 2) + 1;

    let mut out = Vec::new();
    match sse::write_event(&mut out, id, event, data) {
        Err(_) => {
            assert!(out.is_empty(), "a refused event wrote bytes");
            let bad_id = id.is_some_and(|i| i.contains(['\r', '\n', '\0']));
            let bad_event = event.is_some_and(|e| e.contains(['\r', '\n']));
            assert!(bad_id || bad_event, "refused a valid event");
        }
        Ok(()) => {
            let mut parser = sse_parser::SseParser::new();
            let events: Vec<_> = out.chunks(piece).flat_map(|c| parser.feed(c)).collect();
            assert_eq!(events.len(), 1, "{out:?}");
            let ev = &events[0];
            // The format turns CRLF and lone CR in data into LF.
            let want_data = data.replace("\r\n", "\n").replace('\r', "\n");
            assert_eq!(ev.data, want_data);
            assert_eq!(
                ev.event,
                event.filter(|e| !e.is_empty()).unwrap_or("message")
            );
            assert_eq!(ev.last_event_id, id.unwrap_or(""));
        }
    }
});
