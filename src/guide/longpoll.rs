//! Long polling: the poll request, the JSON page, `since`/`next`/`gap`, and the timeout.
//!
//! Long polling is push for clients that can only make plain requests. The client asks
//! "anything after id N?"; if there is, the answer comes at once; if not, the server holds
//! (*parks*) the request until an event is published or a timeout passes, then answers. The
//! client reads the answer and asks again at once, with the cursor the answer gave it.
//! Nothing is lost between two polls: the client holds the cursor and the topic's history
//! holds the events. No RFC defines this exchange (RFC 6202 describes the practice); the
//! rules below are pushwire's. The code is [`crate::proto::topic`] (what a cursor reads),
//! [`crate::proto::json`] and [`crate::proto::fanout`] (the answer's bytes); an application
//! parks a request with [`Park`](crate::Park).
//!
//! # The request
//!
//! `GET /topics/{topic}/poll?since=N&timeout=SECS` in the hub. `since` is the id of the
//! last event the client has (missing: 0, from the start of the history).
//! `timeout` is how long to wait, in whole seconds: missing means the default (30 s in the
//! hub), anything above the maximum (120 s) is clamped to it, and anything but digits is
//! a 400. [`Request::number_param`](crate::Request::number_param) and
//! [`Request::poll_timeout`](crate::Request::poll_timeout) implement this:
//!
//! ```
//! use std::time::Duration;
//! use pushwire::proto::http1::{Limits, RequestReader};
//!
//! let poll = |target: &str| {
//!     let head = format!("GET {target} HTTP/1.1\r\nHost: a\r\n\r\n");
//!     let (_, req) = RequestReader::new().advance(head.as_bytes(), &Limits::default(), &mut Vec::new()).unwrap();
//!     let req = req.unwrap();
//!     let (default, max) = (Duration::from_secs(30), Duration::from_secs(120));
//!     (req.number_param("since").map(|s| s.unwrap_or(0)), req.poll_timeout(default, max).map(|t| t.as_secs()))
//! };
//! assert_eq!(poll("/topics/news/poll?since=7&timeout=10"), (Ok(7), Ok(10)));
//! assert_eq!(poll("/topics/news/poll"), (Ok(0), Ok(30))); // the defaults
//! assert_eq!(poll("/topics/news/poll?timeout=3600"), (Ok(0), Ok(120))); // clamped
//! assert!(poll("/topics/news/poll?timeout=soon").1.is_err()); // 400
//! assert!(poll("/topics/news/poll?since=-1").0.is_err()); // 400
//! ```
//!
//! # The answer
//!
//! Always `200` with a JSON object (RFC 8259), whether events came or the timeout passed.
//! The head is [`poll_head`](crate::proto::fanout::poll_head) (with the framing its
//! encoder adds), the body [`page_body`](crate::proto::fanout::page_body) of the
//! [`Page`](crate::proto::topic::Page) that
//! [`Topics::read_after`](crate::proto::topic::Topics::read_after) returned:
//!
//! ```
//! use pushwire::proto::fanout::{page_body, poll_head};
//! use pushwire::proto::http1::Version;
//! use pushwire::proto::topic::{HistoryLimits, Topics};
//!
//! let mut topics = Topics::new(HistoryLimits::default());
//! let now_us = 1_764_620_000_123_456;
//! topics.publish("news", Some("greeting"), "hello", now_us).unwrap();
//! topics.publish_as("news", None, r#"{"n":2}"#, true, now_us).unwrap(); // a JSON event
//!
//! let page = topics.read_after("news", 0, 100);
//! let body = page_body(&page);
//! let mut out = Vec::new();
//! poll_head().encode_head(Version::Http11, true, None, body.len(), &mut out);
//! out.extend_from_slice(&body);
//! assert_eq!(
//!     String::from_utf8(out).unwrap(),
//!     "HTTP/1.1 200 OK\r\n\
//!      Content-Type: application/json\r\n\
//!      Cache-Control: no-store\r\n\
//!      Content-Length: 158\r\n\
//!      \r\n\
//!      {\"events\":[\
//!      {\"id\":1764620000123456,\"event\":\"greeting\",\"data\":\"hello\"},\
//!      {\"id\":1764620000123457,\"event\":null,\"data\":{\"n\":2}}],\
//!      \"next\":1764620000123457,\"gap\":false}"
//! );
//! ```
//!
//! | member | value | meaning |
//! |---|---|---|
//! | `events` | array, oldest first | the kept events after `since`, at most 100 per answer (the hub's [`Config::poll_batch`](crate::Config::poll_batch)) |
//! | `events[].id` | number | the event's id, unique and growing within its topic, below 2^53 so JavaScript reads it exactly |
//! | `events[].event` | string or `null` | the event's name (`null`: none; SSE calls it `message`) |
//! | `events[].data` | string, or any JSON value | the payload: a string, or for an event published as JSON the value itself |
//! | `next` | number | the `since` of the next poll: the id of the last event returned, or `since` itself when none is |
//! | `gap` | `true` or `false` | events after `since` may have been lost before this answer (the gap rule below) |
//!
//! `Cache-Control: no-store` (RFC 9111 §5.2.2.5) keeps any cache from storing an answer
//! that is stale as soon as it is sent. When the page was cut at 100 events, the next poll
//! (from `next`) answers at once with the rest.
//!
//! # `since`, `next` and `gap`
//!
//! The rules are those of every resumable transport here ([`super::sse`] has the same):
//!
//! * A cursor with kept events after it is answered at once.
//! * A cursor at the topic's last id parks; the timeout answers the empty page, whose
//!   `next` is `since` ([`empty_page`](crate::proto::fanout::empty_page)).
//! * **The gap rule**: after `since = N > 0`, `gap` is `true` exactly when the first event
//!   returned is not `N + 1`; after `since = 0`, only when the history was trimmed (its
//!   oldest events are gone).
//! * A cursor *ahead* of the last id comes from before a restart that lost the history: it
//!   is answered at once, from the oldest kept event, with `gap: true` (an empty topic:
//!   no events, `next: 0`), never parked waiting for ids that will not come.
//!
//! ```
//! use pushwire::proto::fanout::{empty_page, page_body};
//! use pushwire::proto::topic::{HistoryLimits, Topics};
//!
//! let limits = HistoryLimits { max_events: 2, ..HistoryLimits::default() };
//! let mut topics = Topics::new(limits);
//! for data in ["a", "b", "c"] {
//!     topics.publish("t", None, data, 100).unwrap(); // ids 100, 101, 102; 100 is dropped
//! }
//! let answer = |since| String::from_utf8(page_body(&topics.read_after("t", since, 100)).to_vec()).unwrap();
//!
//! // After 101: 102 follows at once, no gap.
//! assert_eq!(answer(101), r#"{"events":[{"id":102,"event":null,"data":"c"}],"next":102,"gap":false}"#);
//! // After 99 (or from 0): 100 was dropped, so the page starts at 101 and says so.
//! let from_101 = r#"{"events":[{"id":101,"event":null,"data":"b"},{"id":102,"event":null,"data":"c"}],"next":102,"gap":true}"#;
//! assert_eq!(answer(99), from_101);
//! assert_eq!(answer(0), from_101);
//! // Ahead of 102: the same answer, at once.
//! assert_eq!(answer(5000), from_101);
//! // At 102 nothing is kept after it: the driver parks the poll; the timeout answers this.
//! let page = topics.read_after("t", 102, 100);
//! assert!(page.events.is_empty() && !page.gap && page.next == 102);
//! assert_eq!(&*empty_page(102), br#"{"events":[],"next":102,"gap":false}"#);
//! // An unknown topic: a cursor above 0 is ahead of it.
//! assert_eq!(answer_for(&topics, "none", 7), r#"{"events":[],"next":0,"gap":true}"#);
//! # fn answer_for(t: &Topics, topic: &str, since: u64) -> String {
//! #     String::from_utf8(page_body(&t.read_after(topic, since, 100)).to_vec()).unwrap()
//! # }
//! ```
//!
//! # Parking
//!
//! A parked poll costs one entry in the subscription table
//! ([`crate::proto::subs`]) and a timer. The next publish to its topic answers it (and
//! every other poll parked on the same cursor, with one shared encoding of the page); its
//! timeout answers the empty page; and a client that disconnects frees its entry at once.
//! The answer's `next` is all the state a client carries from one poll to the next.
