//! Webhooks: the signed POST, the retry schedule, `Retry-After`, pausing and probing.
//!
//! A webhook turns push around: instead of the client keeping a connection open, it
//! registers a URL, and the server makes an HTTP request to it for every event. pushwire
//! follows the [Standard Webhooks] specification (1.0.0): a JSON `POST` with three headers
//! that let the receiver check who sent it and that nothing changed on the way, retried
//! with backoff until the receiver answers 2xx. The code is [`crate::proto::webhook`].
//!
//! # The body
//!
//! One JSON object per event (the specification's recommended payload shape), made once
//! per publish by [`webhook_body`](crate::proto::webhook::body::webhook_body) and shared by
//! every endpoint and every retry:
//!
//! ```
//! use pushwire::proto::topic::{HistoryLimits, Topics};
//! use pushwire::proto::webhook::body::webhook_body;
//!
//! let mut topics = Topics::new(HistoryLimits::default());
//! let ev = topics.publish("news", Some("greeting"), "hello", 1_764_620_000_123_456).unwrap();
//! let mut body = Vec::new();
//! webhook_body(&mut body, "news", &ev, ev.published_ms);
//! assert_eq!(
//!     String::from_utf8(body).unwrap(),
//!     r#"{"type":"greeting","timestamp":"2025-12-01T20:13:20.123Z","data":{"topic":"news","id":1764620000123456,"event":"greeting","data":"hello"}}"#
//! );
//! ```
//!
//! | member | meaning | reference |
//! |---|---|---|
//! | `type` | the event's name (`message` when it has none) | Standard Webhooks, payload structure |
//! | `timestamp` | when the event was published, UTC, milliseconds | RFC 3339 §5.6 |
//! | `data.topic`, `data.id` | where the event is: its topic and its id there | |
//! | `data.event`, `data.data` | its name (`null`: none) and payload (a string, or the JSON value of a JSON event) | RFC 8259 |
//!
//! # The signed request
//!
//! Each attempt is one HTTP/1.1 request ([`super::http1`]) with a `Content-Length` body,
//! written by [`encode_webhook`](crate::proto::webhook::encode_webhook):
//!
//! | header | value | reference |
//! |---|---|---|
//! | `webhook-id` | the message's id: the same on every retry of it, so a receiver can drop duplicates | Standard Webhooks |
//! | `webhook-timestamp` | the attempt's time, Unix seconds (the body keeps the publish time) | Standard Webhooks |
//! | `webhook-signature` | `v1,` and the base64 of HMAC-SHA256 over `{id}.{timestamp}.{body}` | Standard Webhooks; RFC 2104; FIPS 180-4 |
//!
//! HMAC (RFC 2104) is a keyed hash: only someone holding the key can compute it, and any
//! change to the signed bytes changes it. The key is the endpoint's secret, shown to people
//! as `whsec_` followed by the base64 of its bytes (24 to 64 random bytes); the HMAC key is
//! those bytes, not the text. The signed content joins the id, the timestamp and the exact
//! body bytes with `.`, so the signature covers the time too: with the receiver's clock
//! check below, a captured request cannot be replayed later. The test below computes the MAC a second time with the `hmac` crate;
//! the value was also checked with Python's `hmac` module.
//!
//! ```
//! use base64::Engine as _;
//! use hmac::{Hmac, Mac};
//! use pushwire::proto::webhook::{encode_webhook, Secret, Url, USER_AGENT};
//!
//! let secret = Secret::from_bytes(&[0x2a; 32]).unwrap();
//! assert_eq!(secret.to_string(), "whsec_KioqKioqKioqKioqKioqKioqKioqKioqKioqKioqKio=");
//! let body = br#"{"type":"greeting","timestamp":"2025-12-01T20:13:20.123Z","data":{"topic":"news","id":1764620000123456,"event":"greeting","data":"hello"}}"#;
//! let (id, ts) = ("msg_k3x9_1", 1_764_620_001);
//!
//! let url = Url::parse("http://receiver.example/hook").unwrap();
//! let mut out = Vec::new();
//! encode_webhook(&mut out, &url, &secret, id, ts, &[], body).unwrap();
//! let expected = format!(
//!     "POST /hook HTTP/1.1\r\n\
//!      Host: receiver.example\r\n\
//!      User-Agent: {USER_AGENT}\r\n\
//!      Content-Type: application/json\r\n\
//!      Content-Length: 138\r\n\
//!      webhook-id: msg_k3x9_1\r\n\
//!      webhook-timestamp: 1764620001\r\n\
//!      webhook-signature: v1,592ZojI1FdknQ2O9RsxyuqvrH1f5xQrDV/VD+WE2x9s=\r\n\
//!      \r\n"
//! );
//! assert_eq!(out[..expected.len()], *expected.as_bytes());
//! assert_eq!(out[expected.len()..], body[..]);
//!
//! // The same MAC, computed by hand: HMAC-SHA256(key, "msg_k3x9_1.1764620001." + body).
//! let mut mac = Hmac::<sha2::Sha256>::new_from_slice(&[0x2a; 32]).unwrap();
//! mac.update(format!("{id}.{ts}.").as_bytes());
//! mac.update(body);
//! let b64 = base64::engine::general_purpose::STANDARD.encode(mac.finalize().into_bytes());
//! assert_eq!(secret.sign(id, ts, body), format!("v1,{b64}"));
//! ```
//!
//! The receiver recomputes the MAC over what it received and compares in constant time
//! (so response timing reveals nothing about the expected value), and refuses a
//! timestamp too far from its own clock (five minutes either way by default). The header
//! may hold several space-separated signatures, so a sender can sign with an old and a new
//! secret while the receiver switches over. [`verify`](crate::proto::webhook::verify) is
//! that receiver:
//!
//! ```
//! use pushwire::proto::webhook::{verify, Secret, VerifyError, DEFAULT_TOLERANCE};
//!
//! let secret = Secret::from_bytes(&[0x2a; 32]).unwrap();
//! let body = b"{}";
//! let sig = secret.sign("msg_1", 1_764_620_001, body);
//! let check = |sig: &str, body: &[u8], now| verify(&[secret.clone()], "msg_1", "1764620001", sig, body, now, DEFAULT_TOLERANCE);
//!
//! assert_eq!(check(&sig, body, 1_764_620_030), Ok(()));
//! assert_eq!(check(&sig, b"{ }", 1_764_620_030), Err(VerifyError::NoMatchingSignature));
//! assert_eq!(check(&sig, body, 1_764_620_001 + 301), Err(VerifyError::TooOld));
//! // Rotation: an unknown signature next to the good one does no harm.
//! let two = format!("v1,AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA= {sig}");
//! assert_eq!(check(&two, body, 1_764_620_030), Ok(()));
//! ```
//!
//! # What the answer means
//!
//! | answer | what pushwire does |
//! |---|---|
//! | any 2xx | delivered |
//! | 410 Gone | the message fails, and the endpoint is disabled for good |
//! | 429 or 503 with `Retry-After` | retried after that delay instead of the schedule's (at most 1 hour; the schedule still bounds the number of attempts) |
//! | 3xx (redirects are not followed), 408, 429, 5xx, other codes, a timeout, a connect or I/O error | retried on the schedule; failed once it is used up |
//! | any other 4xx | fails at once: asking again would get the same answer |
//!
//! `Retry-After` (RFC 9110 §10.2.3) is either a number of seconds or an HTTP date;
//! [`parse_retry_after`](crate::proto::webhook::parse_retry_after) reads both and caps
//! the delay at [`MAX_RETRY_AFTER`](crate::proto::webhook::MAX_RETRY_AFTER):
//!
//! ```
//! use std::time::Duration;
//! use pushwire::proto::webhook::parse_retry_after;
//!
//! let now = 784_111_777 - 120; // two minutes before Sun, 06 Nov 1994 08:49:37 GMT
//! assert_eq!(parse_retry_after(b"30", now), Some(Duration::from_secs(30)));
//! assert_eq!(parse_retry_after(b"Sun, 06 Nov 1994 08:49:37 GMT", now), Some(Duration::from_secs(120)));
//! assert_eq!(parse_retry_after(b"86400", now), Some(Duration::from_secs(3600))); // capped
//! assert_eq!(parse_retry_after(b"soon", now), None);
//! ```
//!
//! # The retry schedule
//!
//! The specification recommends exponential backoff over days, with some random jitter so
//! that receivers that failed together are not all retried at the same instant. pushwire's
//! default [`Schedule`](crate::proto::webhook::Schedule) is its example list cut at eight
//! attempts: at once, then 5 s, 5 min, 30 min, 2 h, 5 h, 10 h and 10 h after the previous
//! attempt (about 27.6 hours in all). Each wait is scaled by a random factor between 0.8
//! and 1.2; the random number is an input, so tests are exact:
//!
//! ```
//! use std::time::Duration;
//! use pushwire::proto::webhook::Schedule;
//!
//! let schedule = Schedule::default();
//! let secs: Vec<u64> = schedule.delays().iter().map(Duration::as_secs).collect();
//! assert_eq!(secs, [0, 5, 300, 1800, 7200, 18000, 36000, 36000]);
//! assert_eq!(secs.iter().sum::<u64>(), 99_305); // 27.6 hours
//!
//! // Before attempt 2 (the first retry): 5 s, spread by the jitter input in 0..1.
//! assert_eq!(schedule.delay_before(2, 0.5), Some(Duration::from_secs(5)));
//! assert_eq!(schedule.delay_before(2, 0.0), Some(Duration::from_secs(4)));
//! assert_eq!(schedule.delay_before(2, 1.0), Some(Duration::from_secs(6)));
//! assert_eq!(schedule.delay_before(9, 0.5), None); // no ninth attempt
//! ```
//!
//! # Pausing and probing a failing endpoint
//!
//! An endpoint that keeps failing should not be hammered with every queued message. After
//! 5 consecutive failed messages (by default,
//! [`EngineConfig`](crate::proto::webhook::EngineConfig)) the endpoint is *paused*: no
//! attempt starts, except one *probe* with its oldest message every 60 s. Messages
//! published meanwhile wait in its queue (10,000 at most; beyond that the oldest fails
//! with "queue full"). The first delivery resumes it. Here with a one-attempt schedule and
//! a pause after one failed message:
//!
//! ```
//! use std::rc::Rc;
//! use std::time::{Duration, Instant};
//! use pushwire::proto::webhook::{Action, AttemptResult, Engine, EngineConfig, Schedule, Secret, Url};
//!
//! let config = EngineConfig { schedule: Schedule::from_secs(&[]).unwrap(), pause_after_failures: 1, ..EngineConfig::default() };
//! let mut engine = Engine::new(config);
//! let url = Url::parse("http://receiver.example/hook").unwrap();
//! let endpoint = engine.add_endpoint(url, Secret::from_bytes(&[0x2a; 32]).unwrap());
//! let body: Rc<[u8]> = Rc::from(&b"{}"[..]);
//! let t0 = Instant::now();
//! let answer = |engine: &mut Engine, code, now| {
//!     let Some(Action::Attempt { attempt, .. }) = engine.poll_action(now) else { panic!("no attempt") };
//!     engine.attempt_finished(attempt, AttemptResult::Status { code, retry_after: None }, now, 0.5);
//!     while engine.poll_action(now).is_some() {} // the outcome, for the application
//! };
//!
//! engine.enqueue(endpoint, "msg_1".into(), body.clone(), t0);
//! answer(&mut engine, 500, t0); // failed, no retries left: the endpoint pauses
//! assert!(engine.endpoint(endpoint).unwrap().paused);
//!
//! engine.enqueue(endpoint, "msg_2".into(), body, t0);
//! assert_eq!(engine.poll_action(t0), None); // paused: it waits
//! let probe_at = engine.next_deadline().unwrap();
//! assert_eq!(probe_at - t0, Duration::from_secs(60));
//! answer(&mut engine, 200, probe_at); // the probe is delivered
//! assert!(!engine.endpoint(endpoint).unwrap().paused);
//! ```
//!
//! Delivery is at least once: an attempt cut short by a crash is made again after the
//! restart (with a data directory, [`super::datadir`], the outbox survives), so receivers
//! should treat a repeated `webhook-id` as a duplicate. Before connecting, every address
//! a webhook host resolves to is checked against
//! [`ssrf::check`](crate::proto::webhook::ssrf::check), so a registration cannot make the
//! server call into a private network unless that is allowed.
//!
//! [Standard Webhooks]: https://www.standardwebhooks.com
