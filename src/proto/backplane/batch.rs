//! Publishing a batch through Redis: one script call for all of its events.
//!
//! [`BATCH_SCRIPT`] is [`PUBLISH_SCRIPT`](super::PUBLISH_SCRIPT) for `n` events at once,
//! run atomically by Redis like every script: no other command runs between its steps,
//! so the batch's ids are consecutive and no other publish to the topic interleaves. It
//! takes `n` ids with one `INCRBY` (a counter that does not exist starts from Redis's
//! clock, `TIME` in microseconds, as for a single publish), then per event, in order, the
//! `XADD` (with `MAXLEN`), the `PUBLISH` of the same [`Announced`](super::Announced)
//! payload a single publish sends (so every server delivers a batch as that many events,
//! all read from one pub/sub burst), and an outbox entry per webhook endpoint; one wake-up
//! of the outbox at the end. It replies with the **first** id: the batch's ids are
//! `first..first + n`.
//!
//! All or nothing: the events are validated before the script is sent (the server checks
//! names; Redis takes any bytes), and a script does not stop half-way on valid input. A
//! Redis that refuses the script (out of memory, `NOSCRIPT`) refuses it before its first
//! write. A batch of one is sent as a single publish.

use sha1::{Digest, Sha1};

use super::Keys;
use crate::proto::resp::Command;

/// The batch publish script. `KEYS` as [`PUBLISH_SCRIPT`](super::PUBLISH_SCRIPT)'s (the
/// counter, the stream, the topic's webhook endpoints, the outbox); `ARGV[1]` the
/// stream's `MAXLEN`, `ARGV[2]` the event name (`""` when there is none), `ARGV[3]` the
/// events' kind ([`kind_flag`](super::kind_flag)), `ARGV[4]` the published time (unix ms),
/// `ARGV[5]` the channel, `ARGV[6]` the topic, `ARGV[7]` the outbox's wake-up channel,
/// `ARGV[8]` and on: the events' data, in order. Replies with the first id.
pub const BATCH_SCRIPT: &str = r#"local n = #ARGV - 7
local last
if redis.call('EXISTS', KEYS[1]) == 0 then
  local t = redis.call('TIME')
  last = tonumber(t[1]) * 1000000 + tonumber(t[2]) + n - 1
  redis.call('SET', KEYS[1], string.format('%d', last))
else
  last = redis.call('INCRBY', KEYS[1], n)
end
local first = last - n + 1
local hooks = redis.call('SMEMBERS', KEYS[3])
local named = ARGV[3] == '1' or ARGV[3] == '3'
local json = ARGV[3] == '2' or ARGV[3] == '3'
local stamp = ARGV[4]
if json then
  stamp = stamp .. 'j'
end
for i = 1, n do
  local sid = string.format('%d', first + i - 1)
  local d = ARGV[7 + i]
  local f = {'d', d, 't', ARGV[4]}
  if json then
    table.insert(f, 'j')
    table.insert(f, '1')
  end
  if named then
    table.insert(f, 'e')
    table.insert(f, ARGV[2])
    redis.call('XADD', KEYS[2], 'MAXLEN', ARGV[1], '0-' .. sid, unpack(f))
    redis.call('PUBLISH', ARGV[5], sid .. ' ' .. stamp .. ' ' .. #ARGV[2] .. ' ' .. ARGV[2] .. d)
  else
    redis.call('XADD', KEYS[2], 'MAXLEN', ARGV[1], '0-' .. sid, unpack(f))
    redis.call('PUBLISH', ARGV[5], sid .. ' ' .. stamp .. ' - ' .. d)
  end
  for _, h in ipairs(hooks) do
    redis.call('XADD', KEYS[4], '*', 'h', h, 'o', ARGV[6], 'i', sid, 'n', ARGV[3], 'e', ARGV[2], 'd', d, 't', ARGV[4])
  end
end
if #hooks > 0 then
  redis.call('PUBLISH', ARGV[7], string.format('%d', first))
end
return first
"#;

/// The SHA-1 of [`BATCH_SCRIPT`] in lowercase hex, as `EVALSHA` wants it.
pub fn batch_script_sha1() -> String {
    let digest = Sha1::digest(BATCH_SCRIPT.as_bytes());
    digest.iter().map(|b| format!("{b:02x}")).collect()
}

/// Events to publish to one topic at once.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PublishBatch<'a> {
    /// The topic (already validated).
    pub topic: &'a str,
    /// The event name of every event, if any.
    pub event: Option<&'a str>,
    /// The events' data, in order (at least one).
    pub datas: &'a [&'a [u8]],
    /// Every event's data is a checked JSON value.
    pub json: bool,
    /// When they were published, unix milliseconds.
    pub published_ms: u64,
    /// The history limit: the stream's `MAXLEN`.
    pub max_events: usize,
}

/// The `EVALSHA` (or, with `with_source`, `EVAL`) command publishing the batch `p`; its
/// reply is read with [`parse_publish_reply`](super::parse_publish_reply) (the first id).
pub fn publish_batch_command(keys: &Keys, p: &PublishBatch<'_>, with_source: bool) -> Command {
    let cmd = if with_source {
        Command::new("EVAL").arg(BATCH_SCRIPT)
    } else {
        Command::new("EVALSHA").arg(batch_script_sha1())
    };
    let mut cmd = cmd
        .arg("4")
        .arg(keys.seq(p.topic))
        .arg(keys.stream(p.topic))
        .arg(keys.topic_hooks(p.topic))
        .arg(keys.outbox())
        .arg(p.max_events.max(1).to_string())
        .arg(p.event.unwrap_or(""))
        .arg(super::kind_flag(p.event.is_some(), p.json))
        .arg(p.published_ms.to_string())
        .arg(keys.channel(p.topic))
        .arg(p.topic)
        .arg(keys.outbox_wake());
    for d in p.datas {
        cmd = cmd.arg(d);
    }
    cmd
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn batch_commands_exactly() {
        let k = Keys::default();
        let datas: [&[u8]; 2] = [b"{\"a\":1}", b"2"];
        let p = PublishBatch {
            topic: "t",
            event: Some("up"),
            datas: &datas,
            json: false,
            published_ms: 1700000000123,
            max_events: 1000,
        };
        let sha = batch_script_sha1();
        assert_eq!(sha.len(), 40);
        assert_ne!(sha, super::super::script_sha1());
        let want = format!(
            "*16\r\n$7\r\nEVALSHA\r\n$40\r\n{sha}\r\n$1\r\n4\r\n$16\r\npushwire:{{t}}:seq\r\n\
             $19\r\npushwire:{{t}}:events\r\n$18\r\npushwire:{{t}}:hooks\r\n$18\r\npushwire:hooks:out\r\n\
             $4\r\n1000\r\n$2\r\nup\r\n$1\r\n1\r\n$13\r\n1700000000123\r\n$12\r\npushwire:{{t}}\r\n\
             $1\r\nt\r\n$18\r\npushwire:hooks:new\r\n$7\r\n{{\"a\":1}}\r\n$1\r\n2\r\n"
        );
        let got = publish_batch_command(&k, &p, false).to_bytes();
        assert_eq!(String::from_utf8(got).unwrap(), want);
        let none = PublishBatch { event: None, ..p };
        let text = String::from_utf8(publish_batch_command(&k, &none, true).to_bytes()).unwrap();
        assert!(text.starts_with("*16\r\n$4\r\nEVAL\r\n"), "{text}");
        assert!(text.contains(BATCH_SCRIPT));
        assert!(
            text.contains("$4\r\n1000\r\n$0\r\n\r\n$1\r\n0\r\n"),
            "{text}"
        );
    }
}
