//! The JSON body of a webhook delivery, a pure encoder.
//!
//! The Standard Webhooks specification ("Payload structure") recommends a JSON object with
//! `type` (a full-stop delimited event name), `timestamp` (when the event happened, an
//! RFC 3339 date-time) and `data` (the event itself). pushwire sends:
//!
//! ```text
//! {"type":"message","timestamp":"2026-11-28T10:11:12.345Z",
//!  "data":{"topic":"t.1","id":7,"event":null,"data":"..."}}
//! ```
//!
//! `type` is the event's SSE name (`message` when it has none), `timestamp` the publish
//! time in UTC with milliseconds (RFC 3339 §5.6 `date-time`, `Z` offset), and `data`
//! carries the topic, the per-topic id, the event name (`null` when unnamed) and the
//! payload as a JSON string. One body is encoded per publish and shared by every endpoint
//! and every retry (the signature covers it, so it must not change between attempts).

use crate::proto::json;
use crate::proto::topic::TopicEvent;

/// `2026-11-28T10:11:12.345Z` from milliseconds since the Unix epoch: an RFC 3339 §5.6
/// `date-time` in UTC, with a three-digit `time-secfrac`.
pub fn rfc3339_millis(ms: u64) -> String {
    let secs = ms / 1000;
    let rem = secs % 86_400;
    let (year, month, day) = crate::proto::http1::civil_from_days((secs / 86_400) as i64);
    format!(
        "{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}.{:03}Z",
        rem / 3600,
        rem / 60 % 60,
        rem % 60,
        ms % 1000
    )
}

/// Appends the delivered body of `ev`, published to `topic` at `published_ms`
/// (milliseconds since the Unix epoch), to `out`:
/// `{"type":...,"timestamp":...,"data":{"topic":...,"id":N,"event":...,"data":...}}`.
pub fn webhook_body(out: &mut Vec<u8>, topic: &str, ev: &TopicEvent, published_ms: u64) {
    out.reserve(ev.data.len() + topic.len() + 128);
    out.extend_from_slice(b"{\"type\":");
    json::write_str(out, ev.event.as_deref().unwrap_or("message"));
    out.extend_from_slice(b",\"timestamp\":");
    json::write_str(out, &rfc3339_millis(published_ms));
    out.extend_from_slice(b",\"data\":{\"topic\":");
    json::write_str(out, topic);
    out.extend_from_slice(b",\"id\":");
    json::write_u64(out, ev.id);
    out.extend_from_slice(b",\"event\":");
    match &ev.event {
        Some(e) => json::write_str(out, e),
        None => out.extend_from_slice(b"null"),
    }
    out.extend_from_slice(b",\"data\":");
    json::write_data(out, ev);
    out.extend_from_slice(b"}}");
}

#[cfg(test)]
mod tests {
    use super::*;

    fn body(topic: &str, ev: &TopicEvent, ms: u64) -> String {
        let mut out = Vec::new();
        webhook_body(&mut out, topic, ev, ms);
        String::from_utf8(out).unwrap()
    }

    #[test]
    fn rfc3339_dates() {
        assert_eq!(rfc3339_millis(0), "1970-01-01T00:00:00.000Z");
        assert_eq!(rfc3339_millis(951_782_400_123), "2000-02-29T00:00:00.123Z");
        assert_eq!(
            rfc3339_millis(1_795_860_671_999),
            "2026-11-28T10:11:11.999Z"
        );
    }

    #[test]
    fn body_shape() {
        let ev = TopicEvent {
            id: 7,
            event: Some("note".into()),
            data: "a\"b".into(),
            json: false,
            published_ms: 0,
        };
        assert_eq!(
            body("t.1", &ev, 0),
            r#"{"type":"note","timestamp":"1970-01-01T00:00:00.000Z","data":{"topic":"t.1","id":7,"event":"note","data":"a\"b"}}"#
        );
        let ev = TopicEvent {
            id: 1,
            event: None,
            data: "".into(),
            json: false,
            published_ms: 0,
        };
        assert_eq!(
            body("t", &ev, 1_795_860_671_999),
            r#"{"type":"message","timestamp":"2026-11-28T10:11:11.999Z","data":{"topic":"t","id":1,"event":null,"data":""}}"#
        );
    }

    #[test]
    fn json_event_body_carries_the_value() {
        let ev = TopicEvent {
            id: 3,
            event: None,
            data: r#"{"msg":"hi"}"#.into(),
            json: true,
            published_ms: 0,
        };
        assert_eq!(
            body("t", &ev, 0),
            r#"{"type":"message","timestamp":"1970-01-01T00:00:00.000Z","data":{"topic":"t","id":3,"event":null,"data":{"msg":"hi"}}}"#
        );
    }

    #[test]
    fn appends_to_what_is_there() {
        let ev = TopicEvent {
            id: 2,
            event: None,
            data: "x".into(),
            json: false,
            published_ms: 0,
        };
        let mut out = b"prefix".to_vec();
        webhook_body(&mut out, "t", &ev, 0);
        assert!(out.starts_with(b"prefix{\"type\":\"message\""));
    }
}
