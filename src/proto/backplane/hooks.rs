//! Webhooks across servers, pure: registrations kept in Redis, and the outbox stream that
//! a consumer group shares out so that each message is attempted by one server at a time.
//!
//! # Keys
//!
//! | key | type | what |
//! |---|---|---|
//! | `{prefix}hooks` | hash | endpoint id (decimal) → [`Registration::encode`] |
//! | `{prefix}hooks` | channel | `+<id>` registered, `-<id>` removed |
//! | `{prefix}{{topic}}:hooks` | set | the topic's endpoint ids (the publish script reads it) |
//! | `{prefix}hooks:out` | stream | the outbox: one entry per message, consumer group [`GROUP`] |
//! | `{prefix}hooks:new` | channel | the outbox has new entries |
//! | `{prefix}epoch` | string | random, set once: a new value means Redis lost its data |
//!
//! # The outbox
//!
//! The publish script adds one entry per endpoint of the topic, in the same atomic step as
//! the event: fields `h` endpoint id, `o` topic, `i` event id, `n` the event's kind
//! ([`kind_flag`](super::kind_flag): bit 0 named, bit 1 JSON), `e` the name, `d` the data, `t` published (unix ms). Each server reads new
//! entries with `XREADGROUP GROUP pushwire <its name> ... >`, which hands every entry to
//! exactly one consumer; the entry stays pending (owned by that server) until its final
//! outcome, then `XACK` and `XDEL`. A server refreshes its entries' idle time with
//! `XCLAIM ... JUSTID` while it retries them, and takes over entries idle longer than the
//! claim timeout (their server died) with `XAUTOCLAIM`. The `webhook-id` is made from the
//! entry id ([`webhook_id`]), so a message keeps it whichever server attempts it.

use super::{decimal, BackplaneError, Keys};
use crate::proto::resp::{Command, Value};

/// The consumer group of the outbox.
pub const GROUP: &str = "pushwire";

/// A webhook registration as the hash stores it: `<topic> LF <url> LF <secret-key-hex>`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Registration {
    /// The topic.
    pub topic: String,
    /// The target URL.
    pub url: String,
    /// The raw signing key.
    pub secret: Vec<u8>,
}

impl Registration {
    /// The hash value.
    pub fn encode(&self) -> Vec<u8> {
        let mut out = format!("{}\n{}\n", self.topic, self.url).into_bytes();
        for b in &self.secret {
            out.extend_from_slice(format!("{b:02x}").as_bytes());
        }
        out
    }

    /// Reads a hash value.
    pub fn decode(value: &[u8]) -> Result<Registration, BackplaneError> {
        let text = std::str::from_utf8(value)
            .map_err(|_| BackplaneError::Payload("registration is not UTF-8"))?;
        let mut parts = text.splitn(3, '\n');
        let (Some(topic), Some(url), Some(hex)) = (parts.next(), parts.next(), parts.next()) else {
            return Err(BackplaneError::Payload("registration fields"));
        };
        if hex.len() % 2 != 0 || hex.len() > 256 {
            return Err(BackplaneError::Payload("registration secret"));
        }
        let secret: Option<Vec<u8>> = (0..hex.len())
            .step_by(2)
            .map(|i| u8::from_str_radix(hex.get(i..i + 2)?, 16).ok())
            .collect();
        Ok(Registration {
            topic: topic.into(),
            url: url.into(),
            secret: secret.ok_or(BackplaneError::Payload("registration secret"))?,
        })
    }
}

/// One outbox entry (see the module docs).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OutboxEntry {
    /// The stream entry id, `<ms>-<seq>`.
    pub entry: String,
    /// The endpoint.
    pub endpoint: u64,
    /// The topic.
    pub topic: String,
    /// The event's id.
    pub id: u64,
    /// The event name, if any.
    pub event: Option<String>,
    /// The data.
    pub data: Vec<u8>,
    /// The data is a JSON value.
    pub json: bool,
    /// Published, unix ms.
    pub published_ms: u64,
}

/// The `webhook-id` of the message in outbox entry `entry` (`<ms>-<seq>`), under the
/// registry prefix `prefix`: `msg_{prefix}_{ms * 10^6 + seq}`, a number like the ids a
/// single server issues, the same on every server. `None` for an entry id of another shape.
pub fn webhook_id(prefix: &str, entry: &str) -> Option<String> {
    let (ms, seq) = entry.split_once('-')?;
    let ms = decimal(ms.as_bytes(), "ms").ok()?;
    let seq = decimal(seq.as_bytes(), "seq").ok()?.min(999_999);
    Some(format!("msg_{prefix}_{}", ms.checked_mul(1_000_000)? + seq))
}

/// `XGROUP CREATE` of the outbox's group, from its start, making the stream if needed
/// (`BUSYGROUP` answers when it exists: fine).
pub fn group_create(keys: &Keys) -> Command {
    Command::new("XGROUP")
        .arg("CREATE")
        .arg(keys.outbox())
        .arg(GROUP)
        .arg("0")
        .arg("MKSTREAM")
}

/// `XREADGROUP` of at most `count` new entries for `consumer` (never blocking: the
/// command link is shared).
pub fn read_group(keys: &Keys, consumer: &str, count: usize) -> Command {
    Command::new("XREADGROUP")
        .arg("GROUP")
        .arg(GROUP)
        .arg(consumer)
        .arg("COUNT")
        .arg(count.max(1).to_string())
        .arg("STREAMS")
        .arg(keys.outbox())
        .arg(">")
}

/// `XAUTOCLAIM` of at most `count` entries idle for `min_idle_ms` or more, for `consumer`.
pub fn autoclaim(keys: &Keys, consumer: &str, min_idle_ms: u64, count: usize) -> Command {
    Command::new("XAUTOCLAIM")
        .arg(keys.outbox())
        .arg(GROUP)
        .arg(consumer)
        .arg(min_idle_ms.to_string())
        .arg("0-0")
        .arg("COUNT")
        .arg(count.max(1).to_string())
}

/// `XCLAIM ... 0 <entries> JUSTID`: `consumer` still works on these (resets their idle
/// time, so that nobody takes them over). An entry missing from the reply is no longer
/// pending: another server finished it.
pub fn refresh(keys: &Keys, consumer: &str, entries: &[&str]) -> Command {
    let mut cmd = Command::new("XCLAIM")
        .arg(keys.outbox())
        .arg(GROUP)
        .arg(consumer)
        .arg("0");
    for e in entries {
        cmd.push(e);
    }
    cmd.arg("JUSTID")
}

/// `XACK`, at a message's final outcome.
pub fn ack(keys: &Keys, entry: &str) -> Command {
    Command::new("XACK")
        .arg(keys.outbox())
        .arg(GROUP)
        .arg(entry)
}

/// `XDEL`, after the `XACK`: the outbox keeps only messages without an outcome.
pub fn delete(keys: &Keys, entry: &str) -> Command {
    Command::new("XDEL").arg(keys.outbox()).arg(entry)
}

/// Reads the entries of an `XREADGROUP` reply (`[[stream, [entries]]]`, or nil when there
/// is nothing new), or of an `XAUTOCLAIM` reply (`[next, [entries], [deleted]]`).
/// Entries whose fields are gone (deleted meanwhile) are returned by id alone in the
/// second list, to acknowledge.
pub fn parse_entries(reply: &Value) -> Result<(Vec<OutboxEntry>, Vec<String>), BackplaneError> {
    if let Some(e) = reply.as_error() {
        return Err(BackplaneError::Redis(
            String::from_utf8_lossy(e).into_owned(),
        ));
    }
    let items = match reply {
        v if v.is_null() => return Ok((Vec::new(), Vec::new())),
        Value::Array(items) => items,
        Value::Map(pairs) => {
            // RESP3 XREADGROUP: {stream: entries}
            let mut out = (Vec::new(), Vec::new());
            for (_, entries) in pairs {
                entries_of(entries, &mut out)?;
            }
            return Ok(out);
        }
        _ => return Err(BackplaneError::Shape("an outbox reply")),
    };
    let mut out = (Vec::new(), Vec::new());
    match items.as_slice() {
        // XAUTOCLAIM: [next-cursor, entries, deleted?]
        [Value::BulkString(_) | Value::SimpleString(_), entries, ..] => {
            entries_of(entries, &mut out)?
        }
        streams => {
            for s in streams {
                let Value::Array(pair) = s else {
                    return Err(BackplaneError::Shape("[stream, entries]"));
                };
                let [_, entries] = pair.as_slice() else {
                    return Err(BackplaneError::Shape("[stream, entries]"));
                };
                entries_of(entries, &mut out)?;
            }
        }
    }
    Ok(out)
}

fn text(v: &Value) -> Option<&[u8]> {
    v.as_bytes()
}

fn entries_of(
    entries: &Value,
    out: &mut (Vec<OutboxEntry>, Vec<String>),
) -> Result<(), BackplaneError> {
    let Value::Array(entries) = entries else {
        return Err(BackplaneError::Shape("outbox entries"));
    };
    for entry in entries {
        let Value::Array(parts) = entry else {
            return Err(BackplaneError::Shape("an outbox entry"));
        };
        let (id, fields) = match parts.as_slice() {
            [id, Value::Array(fields)] => (id, fields.as_slice()),
            [id, v] if v.is_null() => (id, &[][..]),
            _ => return Err(BackplaneError::Shape("an outbox entry [id, fields]")),
        };
        let id = text(id)
            .and_then(|b| std::str::from_utf8(b).ok())
            .ok_or(BackplaneError::Shape("an entry id"))?
            .to_owned();
        match parse_fields(&id, fields) {
            Some(e) => out.0.push(e),
            None => out.1.push(id),
        }
    }
    Ok(())
}

fn parse_fields(entry: &str, fields: &[Value]) -> Option<OutboxEntry> {
    let mut e = OutboxEntry {
        entry: entry.into(),
        endpoint: 0,
        topic: String::new(),
        id: 0,
        event: None,
        data: Vec::new(),
        json: false,
        published_ms: 0,
    };
    let mut named = false;
    let mut name = String::new();
    for pair in fields.chunks(2) {
        let [k, v] = pair else { return None };
        let (k, v) = (text(k)?, text(v)?);
        match k {
            b"h" => e.endpoint = decimal(v, "h").ok()?,
            b"o" => e.topic = String::from_utf8(v.to_vec()).ok()?,
            b"i" => e.id = decimal(v, "i").ok()?,
            b"n" => (named, e.json) = super::parse_kind_flag(v),
            b"e" => name = String::from_utf8(v.to_vec()).ok()?,
            b"d" => e.data = v.to_vec(),
            b"t" => e.published_ms = decimal(v, "t").ok()?,
            _ => {}
        }
    }
    e.event = named.then_some(name);
    (e.id > 0 && !e.topic.is_empty()).then_some(e)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn bulk(s: &str) -> Value {
        Value::BulkString(s.as_bytes().to_vec())
    }

    #[test]
    fn registrations_round_trip() {
        let r = Registration {
            topic: "t".into(),
            url: "http://127.0.0.1:9/x".into(),
            secret: vec![0, 1, 0xfe, 0xff],
        };
        assert_eq!(r.encode(), b"t\nhttp://127.0.0.1:9/x\n0001feff");
        assert_eq!(Registration::decode(&r.encode()), Ok(r));
        for bad in [&b"t\nu"[..], b"t\nu\n0", b"t\nu\nzz", b"\xff\nu\n00"] {
            assert!(Registration::decode(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn webhook_ids_come_from_the_entry() {
        assert_eq!(
            webhook_id("bp1", "1700000000123-7").as_deref(),
            Some("msg_bp1_1700000000123000007")
        );
        assert_eq!(webhook_id("p", "x-1"), None);
        assert_eq!(webhook_id("p", "17"), None);
    }

    fn entry(id: &str, fields: &[&str]) -> Value {
        Value::Array(vec![
            bulk(id),
            Value::Array(fields.iter().map(|f| bulk(f)).collect()),
        ])
    }

    #[test]
    fn outbox_replies_parse() {
        let e = entry(
            "5-0",
            &[
                "h", "42", "o", "t", "i", "9", "n", "1", "e", "ev", "d", "x", "t", "3",
            ],
        );
        let read = Value::Array(vec![Value::Array(vec![
            bulk("pushwire:hooks:out"),
            Value::Array(vec![e.clone()]),
        ])]);
        let (got, gone) = parse_entries(&read).unwrap();
        assert!(gone.is_empty());
        assert_eq!(
            got,
            vec![OutboxEntry {
                entry: "5-0".into(),
                endpoint: 42,
                topic: "t".into(),
                id: 9,
                event: Some("ev".into()),
                data: b"x".to_vec(),
                json: false,
                published_ms: 3,
            }]
        );
        // XAUTOCLAIM: [cursor, entries, deleted]; an entry without fields is acknowledged.
        let deleted = Value::Array(vec![bulk("6-0"), Value::Null]);
        let claim = Value::Array(vec![
            bulk("0-0"),
            Value::Array(vec![e, deleted]),
            Value::Array(vec![]),
        ]);
        let (got, gone) = parse_entries(&claim).unwrap();
        assert_eq!(got.len(), 1);
        assert_eq!(gone, vec!["6-0".to_string()]);
        assert_eq!(parse_entries(&Value::Null).unwrap().0.len(), 0);
        // The kind flag: 2 is a JSON event without a name, 3 a named one.
        for (flag, event, json) in [
            ("2", None, true),
            ("3", Some("ev"), true),
            ("0", None, false),
        ] {
            let e = entry(
                "7-0",
                &[
                    "h", "1", "o", "t", "i", "9", "n", flag, "e", "ev", "d", "[]",
                ],
            );
            let (got, _) = parse_entries(&Value::Array(vec![Value::Array(vec![
                bulk("pushwire:hooks:out"),
                Value::Array(vec![e]),
            ])]))
            .unwrap();
            assert_eq!(
                (got[0].event.as_deref(), got[0].json),
                (event, json),
                "{flag}"
            );
        }
        assert!(parse_entries(&Value::Error(b"NOGROUP x".to_vec())).is_err());
        assert!(parse_entries(&Value::Integer(3)).is_err());
    }
}
