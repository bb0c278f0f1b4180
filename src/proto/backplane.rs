//! The Redis backplane's data model, pure: which keys a topic uses, the one script that
//! publishes, what goes over pub/sub, how stream entries read back, and the per-topic
//! cursor that keeps live delivery in id order without duplicates.
//!
//! Several hubs share topics through one Redis. The rules are the single hub's: a topic's
//! first id is a clock in microseconds, then +1 per publish; a reader after cursor N sees a
//! gap exactly when the first event it gets is not N + 1.
//!
//! # Keys (one hash tag per topic, so a Redis Cluster keeps a topic's keys together)
//!
//! | key | type | what |
//! |---|---|---|
//! | `{prefix}{{topic}}:seq` | string | the topic's last id |
//! | `{prefix}{{topic}}:events` | stream | the history, capped at the history limit (`XADD MAXLEN`); entry id `0-<id>` |
//! | `{prefix}{{topic}}` | pub/sub channel | every event as it is published |
//!
//! # Publishing
//!
//! [`PUBLISH_SCRIPT`] runs atomically in Redis (`EVALSHA`, falling back to `EVAL` on
//! `NOSCRIPT`): `INCR` the counter; a counter that did not exist (a new topic, or a Redis
//! that lost its data) starts from Redis's own clock, `TIME` in microseconds, so ids never
//! go backwards and resuming clients see the gap; `XADD` the entry with `MAXLEN`; `PUBLISH`
//! the [`Announced`] payload; reply with the id. The publish is answered when that reply
//! arrives. A batch goes as one call of [`BATCH_SCRIPT`], the same steps for each of its
//! events in one atomic run (see [`publish_batch_command`]).
//!
//! # The pub/sub payload
//!
//! `<id> SP <published_ms>[j] SP <event-length or "-"> SP <event bytes><data bytes>`: three
//! decimal fields (the published time followed by `j` when the data is a JSON value), the
//! event name (length-prefixed, `-` when there is none), then the data to the end.
//! Binary-safe; decoded by [`Announced::decode`].
//!
//! # Stream entries
//!
//! `XRANGE` answers `[[entry-id, [field, value, ...]], ...]`; an entry has the fields `e`
//! (event name, absent when none), `d` (data), `t` (published, unix milliseconds) and `j`
//! (`1` when the data is a JSON value, absent for text).
//! [`parse_range`] reads them, [`range_command`] asks for the events after a cursor
//! (an exclusive start, `(0-N`, Redis 6.2 or later).

use std::fmt;

use sha1::{Digest, Sha1};

use super::resp::{Command, Value};

/// The publish script. `KEYS[1]` the counter, `KEYS[2]` the stream, `KEYS[3]` the set of
/// the topic's webhook endpoints, `KEYS[4]` the webhook outbox stream; `ARGV[1]` the
/// stream's `MAXLEN`, `ARGV[2]` the event name (`""` when there is none), `ARGV[3]` the
/// event's kind ([`kind_flag`]: bit 0 named, bit 1 JSON), `ARGV[4]` the data, `ARGV[5]` the
/// published time (unix ms), `ARGV[6]` the channel, `ARGV[7]` the topic, `ARGV[8]` the
/// outbox's wake-up channel. Replies with the new id.
pub const PUBLISH_SCRIPT: &str = r#"local id = redis.call('INCR', KEYS[1])
if id == 1 then
  local t = redis.call('TIME')
  id = tonumber(t[1]) * 1000000 + tonumber(t[2])
  redis.call('SET', KEYS[1], string.format('%d', id))
end
local sid = string.format('%d', id)
local named = ARGV[3] == '1' or ARGV[3] == '3'
local f = {'d', ARGV[4], 't', ARGV[5]}
local stamp = ARGV[5]
if ARGV[3] == '2' or ARGV[3] == '3' then
  table.insert(f, 'j')
  table.insert(f, '1')
  stamp = stamp .. 'j'
end
if named then
  table.insert(f, 'e')
  table.insert(f, ARGV[2])
  redis.call('XADD', KEYS[2], 'MAXLEN', ARGV[1], '0-' .. sid, unpack(f))
  redis.call('PUBLISH', ARGV[6], sid .. ' ' .. stamp .. ' ' .. #ARGV[2] .. ' ' .. ARGV[2] .. ARGV[4])
else
  redis.call('XADD', KEYS[2], 'MAXLEN', ARGV[1], '0-' .. sid, unpack(f))
  redis.call('PUBLISH', ARGV[6], sid .. ' ' .. stamp .. ' - ' .. ARGV[4])
end
local hooks = redis.call('SMEMBERS', KEYS[3])
for _, h in ipairs(hooks) do
  redis.call('XADD', KEYS[4], '*', 'h', h, 'o', ARGV[7], 'i', sid, 'n', ARGV[3], 'e', ARGV[2], 'd', ARGV[4], 't', ARGV[5])
end
if #hooks > 0 then
  redis.call('PUBLISH', ARGV[8], sid)
end
return id
"#;

/// The SHA-1 of [`PUBLISH_SCRIPT`] in lowercase hex, as `EVALSHA` wants it.
pub fn script_sha1() -> String {
    let digest = Sha1::digest(PUBLISH_SCRIPT.as_bytes());
    digest.iter().map(|b| format!("{b:02x}")).collect()
}

/// The scripts' kind argument: `"0"` a text event without a name, `"1"` a named text
/// event, `"2"` a JSON event without a name, `"3"` a named JSON event. Outbox entries keep
/// it as their `n` field.
pub fn kind_flag(named: bool, json: bool) -> &'static str {
    match (named, json) {
        (false, false) => "0",
        (true, false) => "1",
        (false, true) => "2",
        (true, true) => "3",
    }
}

/// Reads a kind argument back: (named, JSON). Anything else is a text event without a name.
pub fn parse_kind_flag(flag: &[u8]) -> (bool, bool) {
    match flag {
        b"1" => (true, false),
        b"2" => (false, true),
        b"3" => (true, true),
        _ => (false, false),
    }
}

/// A reply or payload that does not have the expected shape.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum BackplaneError {
    /// Redis answered with an error (its text).
    Redis(String),
    /// The script is not loaded (`NOSCRIPT`): send it with `EVAL`.
    NoScript,
    /// The reply is not what the command answers (what was expected).
    Shape(&'static str),
    /// A pub/sub payload that does not decode (which field).
    Payload(&'static str),
}

impl fmt::Display for BackplaneError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            BackplaneError::Redis(e) => write!(f, "redis: {e}"),
            BackplaneError::NoScript => f.write_str("redis: the publish script is not loaded"),
            BackplaneError::Shape(what) => write!(f, "unexpected redis reply: {what}"),
            BackplaneError::Payload(what) => write!(f, "bad pub/sub payload: {what}"),
        }
    }
}

impl std::error::Error for BackplaneError {}

/// The names a topic uses in Redis.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Keys {
    prefix: String,
}

impl Default for Keys {
    fn default() -> Keys {
        Keys::new("pushwire:")
    }
}

impl Keys {
    /// Keys under `prefix` (e.g. `"pushwire:"`; several deployments can share one Redis).
    pub fn new(prefix: impl Into<String>) -> Keys {
        Keys {
            prefix: prefix.into(),
        }
    }

    /// The topic's counter.
    pub fn seq(&self, topic: &str) -> String {
        format!("{}{{{topic}}}:seq", self.prefix)
    }

    /// The topic's stream.
    pub fn stream(&self, topic: &str) -> String {
        format!("{}{{{topic}}}:events", self.prefix)
    }

    /// The topic's pub/sub channel.
    pub fn channel(&self, topic: &str) -> String {
        format!("{}{{{topic}}}", self.prefix)
    }

    /// The hash of webhook registrations (endpoint id → [`Registration::encode`]), also the
    /// channel that announces changes (`+<id>`, `-<id>`).
    pub fn hooks(&self) -> String {
        format!("{}hooks", self.prefix)
    }

    /// The set of a topic's webhook endpoint ids.
    pub fn topic_hooks(&self, topic: &str) -> String {
        format!("{}{{{topic}}}:hooks", self.prefix)
    }

    /// The webhook outbox stream: one entry per message (see [`OutboxEntry`]).
    pub fn outbox(&self) -> String {
        format!("{}hooks:out", self.prefix)
    }

    /// The channel that says the outbox has new entries.
    pub fn outbox_wake(&self) -> String {
        format!("{}hooks:new", self.prefix)
    }

    /// A random value set once (`SET NX`): when it changes, Redis lost its data.
    pub fn epoch(&self) -> String {
        format!("{}epoch", self.prefix)
    }

    /// The prefix itself.
    pub fn prefix(&self) -> &str {
        &self.prefix
    }

    /// The topic a channel name belongs to, if it is one of ours.
    pub fn topic_of_channel<'a>(&self, channel: &'a [u8]) -> Option<&'a str> {
        let rest = channel.strip_prefix(self.prefix.as_bytes())?;
        let inner = rest.strip_prefix(b"{")?.strip_suffix(b"}")?;
        std::str::from_utf8(inner).ok()
    }
}

/// One event to publish.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Publish<'a> {
    /// The topic (already validated).
    pub topic: &'a str,
    /// The event name, if any.
    pub event: Option<&'a str>,
    /// The data.
    pub data: &'a [u8],
    /// The data is a checked JSON value (delivered as a value, not a string).
    pub json: bool,
    /// When it was published, unix milliseconds.
    pub published_ms: u64,
    /// The history limit: the stream's `MAXLEN`.
    pub max_events: usize,
}

/// The `EVALSHA` (or, with `with_source`, `EVAL`) command publishing `p`.
pub fn publish_command(keys: &Keys, p: &Publish<'_>, with_source: bool) -> Command {
    let cmd = if with_source {
        Command::new("EVAL").arg(PUBLISH_SCRIPT)
    } else {
        Command::new("EVALSHA").arg(script_sha1())
    };
    cmd.arg("4")
        .arg(keys.seq(p.topic))
        .arg(keys.stream(p.topic))
        .arg(keys.topic_hooks(p.topic))
        .arg(keys.outbox())
        .arg(p.max_events.max(1).to_string())
        .arg(p.event.unwrap_or(""))
        .arg(kind_flag(p.event.is_some(), p.json))
        .arg(p.data)
        .arg(p.published_ms.to_string())
        .arg(keys.channel(p.topic))
        .arg(p.topic)
        .arg(keys.outbox_wake())
}

/// The id a publish got, from the script's reply.
pub fn parse_publish_reply(reply: &Value) -> Result<u64, BackplaneError> {
    if let Some(e) = reply.as_error() {
        let text = String::from_utf8_lossy(e).into_owned();
        return Err(if text.starts_with("NOSCRIPT") {
            BackplaneError::NoScript
        } else {
            BackplaneError::Redis(text)
        });
    }
    reply
        .as_integer()
        .and_then(|n| u64::try_from(n).ok())
        .filter(|n| *n > 0)
        .ok_or(BackplaneError::Shape("a positive integer id"))
}

/// An event as pub/sub announces it, or as a stream entry stores it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Announced {
    /// Its id.
    pub id: u64,
    /// When it was published, unix milliseconds.
    pub published_ms: u64,
    /// The event name, if any.
    pub event: Option<String>,
    /// The data.
    pub data: Vec<u8>,
    /// The data is a JSON value (published as JSON).
    pub json: bool,
}

/// Takes a decimal field and its trailing space.
fn field<'a>(input: &'a [u8], what: &'static str) -> Result<(&'a [u8], &'a [u8]), BackplaneError> {
    let at = input
        .iter()
        .position(|b| *b == b' ')
        .ok_or(BackplaneError::Payload(what))?;
    Ok((&input[..at], &input[at + 1..]))
}

pub(crate) fn decimal(text: &[u8], what: &'static str) -> Result<u64, BackplaneError> {
    let ok = !text.is_empty() && text.len() <= 20 && text.iter().all(u8::is_ascii_digit);
    let n = ok.then(|| std::str::from_utf8(text).ok()?.parse::<u64>().ok());
    n.flatten().ok_or(BackplaneError::Payload(what))
}

impl Announced {
    /// Encodes the pub/sub payload (what the script builds; see the module docs).
    pub fn encode(&self) -> Vec<u8> {
        let j = if self.json { "j" } else { "" };
        let mut out = format!("{} {}{j} ", self.id, self.published_ms).into_bytes();
        match &self.event {
            Some(e) => {
                out.extend_from_slice(format!("{} ", e.len()).as_bytes());
                out.extend_from_slice(e.as_bytes());
            }
            None => out.extend_from_slice(b"- "),
        }
        out.extend_from_slice(&self.data);
        out
    }

    /// Decodes a pub/sub payload.
    pub fn decode(payload: &[u8]) -> Result<Announced, BackplaneError> {
        let (id, rest) = field(payload, "id")?;
        let (ms, rest) = field(rest, "published time")?;
        let (len, rest) = field(rest, "event length")?;
        let (event, data) = if len == b"-" {
            (None, rest)
        } else {
            let n = decimal(len, "event length")?;
            let n = usize::try_from(n).map_err(|_| BackplaneError::Payload("event length"))?;
            if n > rest.len() {
                return Err(BackplaneError::Payload("event longer than the payload"));
            }
            let name = std::str::from_utf8(&rest[..n])
                .map_err(|_| BackplaneError::Payload("event name is not UTF-8"))?;
            (Some(name.to_owned()), &rest[n..])
        };
        let id = decimal(id, "id")?;
        if id == 0 {
            return Err(BackplaneError::Payload("id"));
        }
        let (ms, json) = match ms.strip_suffix(b"j") {
            Some(ms) => (ms, true),
            None => (ms, false),
        };
        Ok(Announced {
            id,
            published_ms: decimal(ms, "published time")?,
            event,
            data: data.to_vec(),
            json,
        })
    }
}

/// `XRANGE` for the events after `after` (exclusive), at most `count`.
pub fn range_command(keys: &Keys, topic: &str, after: u64, count: usize) -> Command {
    Command::new("XRANGE")
        .arg(keys.stream(topic))
        .arg(format!("(0-{after}"))
        .arg("+")
        .arg("COUNT")
        .arg(count.max(1).to_string())
}

/// `XRANGE` for the oldest `count` events (a node reading a topic from its start).
pub fn start_command(keys: &Keys, topic: &str, count: usize) -> Command {
    Command::new("XRANGE")
        .arg(keys.stream(topic))
        .arg("-")
        .arg("+")
        .arg("COUNT")
        .arg(count.max(1).to_string())
}

/// The events of an `XRANGE` reply, in stream order.
pub fn parse_range(reply: &Value) -> Result<Vec<Announced>, BackplaneError> {
    if let Some(e) = reply.as_error() {
        return Err(BackplaneError::Redis(
            String::from_utf8_lossy(e).into_owned(),
        ));
    }
    let entries = match reply {
        Value::Array(items) | Value::Set(items) => items,
        v if v.is_null() => return Ok(Vec::new()),
        _ => return Err(BackplaneError::Shape("an array of stream entries")),
    };
    let mut out = Vec::with_capacity(entries.len());
    for entry in entries {
        let Value::Array(parts) = entry else {
            return Err(BackplaneError::Shape("a stream entry [id, fields]"));
        };
        let [id, Value::Array(fields)] = parts.as_slice() else {
            return Err(BackplaneError::Shape("a stream entry [id, fields]"));
        };
        let id = id
            .as_bytes()
            .and_then(|b| b.strip_prefix(b"0-"))
            .and_then(|b| decimal(b, "id").ok())
            .filter(|n| *n > 0)
            .ok_or(BackplaneError::Shape("an entry id 0-<id>"))?;
        let mut ev = Announced {
            id,
            published_ms: 0,
            event: None,
            data: Vec::new(),
            json: false,
        };
        for pair in fields.chunks(2) {
            let [k, v] = pair else {
                return Err(BackplaneError::Shape("field-value pairs"));
            };
            let (k, v) = match (k.as_bytes(), v.as_bytes()) {
                (Some(k), Some(v)) => (k, v),
                _ => return Err(BackplaneError::Shape("string fields")),
            };
            match k {
                b"e" => {
                    let name = std::str::from_utf8(v)
                        .map_err(|_| BackplaneError::Shape("a UTF-8 event name"))?;
                    ev.event = Some(name.to_owned());
                }
                b"d" => ev.data = v.to_vec(),
                b"j" => ev.json = v == b"1",
                b"t" => {
                    ev.published_ms =
                        decimal(v, "published time").map_err(|_| BackplaneError::Shape("t"))?
                }
                _ => {}
            }
        }
        out.push(ev);
    }
    Ok(out)
}

/// What to do with an event that arrived live for a topic (see [`Cursor::offer`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Offer {
    /// The next one: deliver it.
    Deliver,
    /// Already delivered (it came through the stream and pub/sub both): drop it.
    Duplicate,
    /// Events between the cursor and this one are missing here (a dropped subscriber
    /// connection, a node that was away): read the stream after the cursor first.
    CatchUp {
        /// The last id delivered.
        after: u64,
    },
}

/// The last id a node delivered of one topic: live events pass in order, once.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Cursor {
    last: Option<u64>,
}

impl Cursor {
    /// A topic subscribed to now, having delivered nothing yet: the first event seen is
    /// delivered as it is.
    pub fn new() -> Cursor {
        Cursor::default()
    }

    /// Starting after `id` (what the node had delivered before).
    pub fn after(id: u64) -> Cursor {
        Cursor { last: Some(id) }
    }

    /// The last id delivered.
    pub fn last(&self) -> Option<u64> {
        self.last
    }

    /// Judges a live event.
    pub fn offer(&self, id: u64) -> Offer {
        match self.last {
            None => Offer::Deliver,
            Some(last) if id <= last => Offer::Duplicate,
            Some(last) if id == last + 1 => Offer::Deliver,
            Some(last) => Offer::CatchUp { after: last },
        }
    }

    /// Records `id` as delivered (ids only move forward).
    pub fn delivered(&mut self, id: u64) {
        self.last = Some(self.last.map_or(id, |l| l.max(id)));
    }

    /// After a catch-up read found nothing between the cursor and `id` (the stream was
    /// trimmed, or Redis lost it and the counter restarted from its clock): deliver `id`
    /// anyway; the receiving clients see the gap by the id rule.
    pub fn skip_to(&mut self, id: u64) {
        self.delivered(id);
    }
}

mod batch;
pub mod hooks;
pub mod sync;

pub use batch::{batch_script_sha1, publish_batch_command, PublishBatch, BATCH_SCRIPT};
pub use hooks::{OutboxEntry, Registration};

#[cfg(test)]
mod tests;
