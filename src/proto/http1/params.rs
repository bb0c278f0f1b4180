//! The request parameters every push endpoint reads: a resume cursor and a poll timeout.
//!
//! The rules are the hub's, so an app built on the library answers the same way:
//!
//! * **Resume cursor** ([`Request::resume_cursor`]): the `Last-Event-ID` header first (what
//!   a reconnecting `EventSource` sends, WHATWG HTML §9.2.4), then `?last_event_id=` (for
//!   clients that cannot set headers), then `?since=`. The first two follow the SSE rule
//!   that an id the server does not understand is ignored: a value that is not a decimal
//!   number means "start live" (`None`). `?since=` is a parameter of our own API, so
//!   anything but digits there is an error (a 400), never silently read as 0.
//! * **Poll timeout** ([`Request::poll_timeout`]): `?timeout=` in whole seconds; missing or
//!   empty means the default, anything above the maximum is clamped to it, anything but
//!   digits is an error.
//!
//! Errors are [`BadParam`], whose `Display` is the line the hub answers with; `Reply`
//! converts from it into a `400 Bad Request` (`impl From<BadParam> for Reply`).

use std::fmt;
use std::time::Duration;

use super::Request;

/// A query parameter that is present but not what the endpoint accepts.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BadParam {
    /// The parameter's name, e.g. `since`.
    pub name: &'static str,
}

impl fmt::Display for BadParam {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} must be a non-negative integer", self.name)
    }
}

impl std::error::Error for BadParam {}

impl Request {
    /// `?name=N` as a number: `Ok(None)` when missing or empty, an error when it is not a
    /// decimal number that fits in a `u64`.
    pub fn number_param(&self, name: &'static str) -> Result<Option<u64>, BadParam> {
        match self.query_param(name) {
            None => Ok(None),
            Some(v) if v.is_empty() => Ok(None),
            Some(v) => digits(&v).map(Some).ok_or(BadParam { name }),
        }
    }

    /// Where a subscriber resumes: the id of the last event it has, or `None` to start
    /// live. `Last-Event-ID` wins over `?last_event_id=`, which wins over `?since=` (see
    /// the module docs for which bad values are ignored and which are errors).
    pub fn resume_cursor(&self) -> Result<Option<u64>, BadParam> {
        if let Some(h) = self.header("last-event-id") {
            return Ok(std::str::from_utf8(h).ok().and_then(|v| digits(v.trim())));
        }
        if let Some(v) = self.query_param("last_event_id") {
            return Ok(digits(&v));
        }
        self.number_param("since")
    }

    /// The long-poll timeout: `?timeout=SECS`, `default` when missing, at most `max`.
    pub fn poll_timeout(&self, default: Duration, max: Duration) -> Result<Duration, BadParam> {
        Ok(match self.number_param("timeout")? {
            Some(secs) => Duration::from_secs(secs).min(max),
            None => default.min(max),
        })
    }
}

/// A decimal number of ASCII digits only (no sign, no spaces), if it fits in a `u64`.
fn digits(s: &str) -> Option<u64> {
    if s.is_empty() || !s.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    s.parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::proto::http1::{Header, Version};

    fn req(target: &str, last_event_id: Option<&[u8]>) -> Request {
        Request {
            method: "GET".into(),
            target: target.into(),
            version: Version::Http11,
            headers: last_event_id
                .map(|v| Header {
                    name: "Last-Event-ID".into(),
                    value: v.to_vec(),
                })
                .into_iter()
                .collect(),
            body: Vec::new(),
            trailers: Vec::new(),
        }
    }

    #[test]
    fn the_header_wins_then_the_query_then_since() {
        let since = BadParam { name: "since" };
        type Case = (
            &'static str,
            Option<&'static [u8]>,
            Result<Option<u64>, BadParam>,
        );
        let cases: &[Case] = &[
            ("/t", None, Ok(None)),
            ("/t?since=", None, Ok(None)),
            ("/t?since=7", None, Ok(Some(7))),
            ("/t?since=x", None, Err(since.clone())),
            ("/t?since=-1", None, Err(since.clone())),
            ("/t?since=+1", None, Err(since.clone())),
            ("/t?since=99999999999999999999", None, Err(since)),
            ("/t?last_event_id=5&since=7", None, Ok(Some(5))),
            // An id we cannot read means "start live", like EventSource's own rule.
            ("/t?last_event_id=abc&since=7", None, Ok(None)),
            ("/t?last_event_id=5", Some(b"9"), Ok(Some(9))),
            ("/t?since=x", Some(b" 9 "), Ok(Some(9))),
            ("/t?since=7", Some(b"nope"), Ok(None)),
            ("/t?since=7", Some(b""), Ok(None)),
            ("/t", Some(b"\xff"), Ok(None)),
        ];
        for (target, header, want) in cases {
            let got = req(target, *header).resume_cursor();
            assert_eq!(&got, want, "{target} {header:?}");
        }
    }

    #[test]
    fn the_poll_timeout_defaults_clamps_and_refuses() {
        let (d, max) = (Duration::from_secs(30), Duration::from_secs(120));
        let t = |target: &str| req(target, None).poll_timeout(d, max);
        assert_eq!(t("/p"), Ok(d));
        assert_eq!(t("/p?timeout="), Ok(d));
        assert_eq!(t("/p?timeout=0"), Ok(Duration::ZERO));
        assert_eq!(t("/p?timeout=5"), Ok(Duration::from_secs(5)));
        assert_eq!(t("/p?timeout=121"), Ok(max));
        assert_eq!(t("/p?timeout=1.5"), Err(BadParam { name: "timeout" }));
        assert_eq!(
            BadParam { name: "timeout" }.to_string(),
            "timeout must be a non-negative integer"
        );
    }
}
