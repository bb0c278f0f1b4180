//! Server-Sent Events: the event stream format, `id:`, `retry:`, the `gap` event, and how
//! a client resumes with `Last-Event-ID`.
//!
//! Server-Sent Events (WHATWG HTML §9.2) is the simplest push mechanism of the web: the
//! client (a browser's `EventSource`, or `curl -N`) makes an ordinary GET, and the server
//! answers `200` with `Content-Type: text/event-stream` and a body that never ends. Events
//! are lines of UTF-8 text in that body. When the connection drops, the client reconnects
//! by itself and says which event it saw last. The code is [`crate::proto::sse`] (the
//! encoder) and [`crate::proto::fanout`] (what a topic's subscribers are sent).
//!
//! # The response head
//!
//! On HTTP/1.1 the stream is a chunked body ([`super::http1`]); every piece of the event
//! stream below travels inside chunks. pushwire's stream head, written with
//! [`write_stream_head`](crate::proto::http1::write_stream_head) and the header fields of
//! [`SSE_HEADERS`](crate::proto::fanout::SSE_HEADERS):
//!
//! ```
//! use pushwire::proto::fanout::SSE_HEADERS;
//! use pushwire::proto::http1::{write_stream_head, Version};
//!
//! let mut out = Vec::new();
//! write_stream_head(&mut out, Version::Http11, 200, SSE_HEADERS, None);
//! assert_eq!(
//!     out,
//!     b"HTTP/1.1 200 OK\r\n\
//!       Content-Type: text/event-stream\r\n\
//!       Cache-Control: no-cache\r\n\
//!       X-Accel-Buffering: no\r\n\
//!       Transfer-Encoding: chunked\r\n\r\n"
//! );
//! ```
//!
//! | line | why | reference |
//! |---|---|---|
//! | `Content-Type: text/event-stream` | the media type `EventSource` requires | WHATWG HTML §9.2.3 |
//! | `Cache-Control: no-cache` | a cache must not reuse this response without asking the server again | RFC 9111 §5.2.2.4 |
//! | `X-Accel-Buffering: no` | asks an nginx proxy in front not to buffer the stream (an nginx convention, not a standard) | |
//! | `Transfer-Encoding: chunked` | the length is unknown | RFC 9112 §7.1 |
//!
//! # The event stream format (WHATWG HTML §9.2.5, §9.2.6)
//!
//! The stream is a sequence of lines, each ending with LF, CR, or CR LF. A line
//! `name: value` sets a field (one space after the colon is dropped, so `data: x` and
//! `data:x` mean the same); a line starting with `:` is a comment, ignored; an empty line
//! *dispatches* the event the lines before it built. The fields:
//!
//! | field | effect on the client | reference |
//! |---|---|---|
//! | `data` | appends its value, and an LF, to the event's data; several `data` lines make a multi-line event (the final LF is removed) | §9.2.6 |
//! | `event` | the event's type (a listener name); without it the type is `message` | §9.2.6 |
//! | `id` | sets the *last event ID*, which the client sends back when it reconnects (ignored if the value holds a NUL) | §9.2.6, §9.2.4 |
//! | `retry` | if only ASCII digits: the reconnection delay, in milliseconds | §9.2.6 |
//! | anything else | ignored | §9.2.6 |
//!
//! [`write_event`](crate::proto::sse::write_event) writes one event. Data holding line
//! breaks becomes several `data:` lines, which the client joins with LF again:
//!
//! ```
//! use pushwire::proto::sse::write_event;
//!
//! let mut out = Vec::new();
//! write_event(&mut out, Some("42"), Some("price"), "EUR 10\nUSD 11").unwrap();
//! assert_eq!(out, b"id: 42\nevent: price\ndata: EUR 10\ndata: USD 11\n\n");
//!
//! // An id or name with a line break would end its line early: refused, nothing written.
//! assert!(write_event(&mut out, Some("4\n2"), None, "x").is_err());
//! assert!(write_event(&mut out, None, Some("a\rb"), "x").is_err());
//! ```
//!
//! | bytes | field | meaning |
//! |---|---|---|
//! | `id: 42\n` | id | after this event the client's last event ID is `42` |
//! | `event: price\n` | event | listeners for `price` get it (`addEventListener("price", ...)`) |
//! | `data: EUR 10\n` | data | first line of the data |
//! | `data: USD 11\n` | data | second line; the data is `EUR 10\nUSD 11` |
//! | `\n` | empty line | dispatch |
//!
//! The other pieces a stream may hold: `retry:` (pushwire sends one at the start of each
//! stream when [`Config::sse_retry`](crate::Config::sse_retry) is set), and comments, which
//! keep idle connections (and the proxies along them) from timing out
//! ([`Config::sse_heartbeat`](crate::Config::sse_heartbeat), 15 s by default). Each goes in
//! its own chunk:
//!
//! ```
//! use pushwire::proto::http1::write_chunk;
//! use pushwire::proto::sse::{write_comment, write_retry};
//!
//! let (mut retry, mut heartbeat) = (Vec::new(), Vec::new());
//! write_retry(&mut retry, 3000);
//! write_comment(&mut heartbeat, "heartbeat");
//! assert_eq!(retry, b"retry: 3000\n\n"); // no data: the empty line dispatches nothing
//! assert_eq!(heartbeat, b": heartbeat\n");
//!
//! let mut wire = Vec::new();
//! write_chunk(&mut wire, &heartbeat);
//! assert_eq!(wire, b"C\r\n: heartbeat\n\r\n"); // 12 bytes, in hexadecimal
//! ```
//!
//! A topic's events carry their id, so a reconnecting client says where it was.
//! [`sse_event_bytes`](crate::proto::fanout::sse_event_bytes) is what every SSE
//! subscriber of a topic is sent for one publish, encoded once and shared:
//!
//! ```
//! use pushwire::proto::fanout::sse_event_bytes;
//! use pushwire::proto::topic::{HistoryLimits, Topics};
//!
//! let mut topics = Topics::new(HistoryLimits::default());
//! let now_us = 1_764_620_000_123_456; // 2025-12-01 20:13:20.123456 UTC
//! let ev = topics.publish("news", Some("greeting"), "hello", now_us).unwrap();
//! assert_eq!(ev.id, now_us); // a new topic's ids start at the clock, in microseconds
//! assert_eq!(
//!     &*sse_event_bytes(&ev, true),
//!     b"32\r\nid: 1764620000123456\nevent: greeting\ndata: hello\n\n\r\n"
//! ); // a chunk of 0x32 = 50 bytes
//! ```
//!
//! # Resuming: `Last-Event-ID` and the gap rule
//!
//! When an `EventSource` reconnects it sends the last event ID it holds in a
//! `Last-Event-ID` request header (WHATWG HTML §9.2.4). pushwire also accepts
//! `?last_event_id=N`, for clients that cannot set headers, and `?since=N`, the cursor of
//! its other endpoints. [`Request::resume_cursor`](crate::Request::resume_cursor) applies
//! the order: the header wins over `last_event_id`, which wins over `since`. A
//! `Last-Event-ID` (or `last_event_id`) that is not a decimal number cannot be an id
//! pushwire gave, so it is ignored: the client starts live, with only the events
//! published from now on. A bad `since` is an error (400), as it is on every endpoint.
//!
//! ```
//! use pushwire::proto::http1::{Limits, RequestReader};
//!
//! let cursor = |head: &str| {
//!     let (_, req) = RequestReader::new().advance(head.as_bytes(), &Limits::default(), &mut Vec::new()).unwrap();
//!     req.unwrap().resume_cursor()
//! };
//! assert_eq!(cursor("GET /s?since=5 HTTP/1.1\r\nHost: a\r\nLast-Event-ID: 41\r\n\r\n"), Ok(Some(41)));
//! assert_eq!(cursor("GET /s?last_event_id=7&since=5 HTTP/1.1\r\nHost: a\r\n\r\n"), Ok(Some(7)));
//! assert_eq!(cursor("GET /s HTTP/1.1\r\nHost: a\r\nLast-Event-ID: abc\r\n\r\n"), Ok(None)); // live
//! assert_eq!(cursor("GET /s?since=x HTTP/1.1\r\nHost: a\r\n\r\n").unwrap_err().name, "since"); // 400
//! ```
//!
//! The stream then starts with the kept events after the cursor (the history of the topic,
//! [`Topics::read_after`](crate::proto::topic::Topics::read_after)). Events may have been
//! lost in between: dropped from a bounded history, or never kept because the server
//! restarted without its data directory. The **gap rule** says when to tell the client:
//! after a cursor `N > 0` a gap is reported exactly when the first event sent is not
//! `N + 1`; from `N = 0` only when the history was trimmed. A cursor *ahead* of the topic's
//! last id (ids only grow, so it comes from before a restart) is answered from the oldest
//! kept event, with a gap, rather than waiting for ids that will never come.
//!
//! The notice is an event named `gap` whose data is the oldest id still kept
//! ([`write_gap`](crate::proto::sse::write_gap)). It has no `id:` line on purpose: the
//! client's last event ID must keep pointing at the last event it really has.
//! [`sse_first`](crate::proto::fanout::sse_first) writes the start of a resumed stream:
//!
//! ```
//! use pushwire::proto::fanout::sse_first;
//! use pushwire::proto::topic::{HistoryLimits, Topics};
//!
//! let mut topics = Topics::new(HistoryLimits::default());
//! let first = topics.publish("news", None, "hello", 1_764_620_000_123_456).unwrap().id;
//! topics.publish("news", None, "world", 1_764_620_000_200_000).unwrap();
//!
//! // Last-Event-ID: 41, from before a restart: the gap event first, then every kept event.
//! let page = topics.read_after("news", 41, 100);
//! let mut out = Vec::new();
//! sse_first(Some(3000), Some(&page), &mut out);
//! assert_eq!(
//!     String::from_utf8(out).unwrap(),
//!     "retry: 3000\n\n\
//!      event: gap\ndata: 1764620000123456\n\n\
//!      id: 1764620000123456\ndata: hello\n\n\
//!      id: 1764620000123457\ndata: world\n\n"
//! );
//!
//! // Last-Event-ID: the first id: no gap, the one event after it.
//! let page = topics.read_after("news", first, 100);
//! let mut out = Vec::new();
//! sse_first(None, Some(&page), &mut out);
//! assert_eq!(out, b"id: 1764620000123457\ndata: world\n\n");
//!
//! // Ahead of the last id: the same gap answer as for 41, never a wait.
//! let ahead = topics.read_after("news", first + 1000, 100);
//! assert_eq!((ahead.gap, ahead.events.len(), ahead.oldest), (true, 2, first));
//! ```
//!
//! Why ids start at the clock: a topic with no known past takes the current Unix time in
//! microseconds as its first id, then counts up by one. A server restarted without its
//! history thus starts above every id it gave before, so an old cursor is *below* the new
//! range and gets a gap notice, instead of silently skipping new events that reuse small
//! ids. With a data directory ([`super::datadir`]) ids simply continue. The same rule and
//! the same cursor serve long polling ([`super::longpoll`]) and WebSocket replays.
