//! Pub/sub on a [`RedisConn`](super::RedisConn): recognizing messages and confirmations,
//! and the table of which channels and patterns are active.
//!
//! Redis's pub/sub messages are three- or four-element arrays whose first element names
//! the kind: `message` (channel, payload), `pmessage` (pattern, channel, payload),
//! `subscribe`/`unsubscribe`/`psubscribe`/`punsubscribe` (channel or pattern, and "the
//! total number of channels and patterns the client is still subscribed to"). RESP2 sends
//! them as arrays (`*`), RESP3 as pushes (`>`).

use std::collections::HashMap;

use super::ConnError;
use crate::proto::resp::Value;

/// Out-of-band data from Redis: pub/sub messages, subscription confirmations, and any
/// other RESP3 push.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Push {
    /// A message published to a subscribed channel.
    Message {
        /// The channel it was published to.
        channel: Vec<u8>,
        /// What was published.
        payload: Vec<u8>,
    },
    /// A message published to a channel matching a subscribed pattern.
    PMessage {
        /// The pattern that matched.
        pattern: Vec<u8>,
        /// The channel it was published to.
        channel: Vec<u8>,
        /// What was published.
        payload: Vec<u8>,
    },
    /// Redis confirmed a `SUBSCRIBE` (or `PSUBSCRIBE`) of one channel (or pattern): from
    /// now on its messages arrive.
    Subscribed {
        /// The channel or pattern.
        channel: Vec<u8>,
        /// It is a pattern (`PSUBSCRIBE`).
        pattern: bool,
        /// Channels and patterns the connection is now subscribed to, as Redis counts them.
        count: i64,
    },
    /// Redis confirmed an `UNSUBSCRIBE` (or `PUNSUBSCRIBE`) of one channel (or pattern).
    Unsubscribed {
        /// The channel or pattern.
        channel: Vec<u8>,
        /// It is a pattern (`PUNSUBSCRIBE`).
        pattern: bool,
        /// Channels and patterns the connection is still subscribed to.
        count: i64,
    },
    /// Redis refused a pub/sub command with an error reply (`-NOPERM` when the ACL user may
    /// not use a channel): none of its channels changed.
    Refused {
        /// `SUBSCRIBE`, `UNSUBSCRIBE`, `PSUBSCRIBE` or `PUNSUBSCRIBE`.
        command: &'static str,
        /// The channels or patterns it named, whose confirmations will not come.
        channels: Vec<Vec<u8>>,
        /// Redis's error text.
        error: Vec<u8>,
    },
    /// Any other RESP3 push (client-side caching's `invalidate`, sharded pub/sub), as
    /// received.
    Other(Vec<Value>),
}

/// The four pub/sub commands, and the confirmations that answer them (one per channel).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum SubKind {
    Subscribe,
    Unsubscribe,
    PSubscribe,
    PUnsubscribe,
}

impl SubKind {
    /// The command that asks for it.
    pub(super) fn command(self) -> &'static [u8] {
        self.name().as_bytes()
    }

    /// The command's name as text.
    pub(super) fn name(self) -> &'static str {
        match self {
            SubKind::Subscribe => "SUBSCRIBE",
            SubKind::Unsubscribe => "UNSUBSCRIBE",
            SubKind::PSubscribe => "PSUBSCRIBE",
            SubKind::PUnsubscribe => "PUNSUBSCRIBE",
        }
    }

    /// The first element of its confirmation.
    fn from_confirmation(kind: &[u8]) -> Option<SubKind> {
        Some(match kind {
            b"subscribe" => SubKind::Subscribe,
            b"unsubscribe" => SubKind::Unsubscribe,
            b"psubscribe" => SubKind::PSubscribe,
            b"punsubscribe" => SubKind::PUnsubscribe,
            _ => return None,
        })
    }

    pub(super) fn pattern(self) -> bool {
        matches!(self, SubKind::PSubscribe | SubKind::PUnsubscribe)
    }

    pub(super) fn subscribes(self) -> bool {
        matches!(self, SubKind::Subscribe | SubKind::PSubscribe)
    }
}

/// What a pub/sub-shaped array turned out to be.
#[derive(Debug)]
pub(super) enum Classified {
    /// `message` or `pmessage`.
    Message(Push),
    /// A confirmation of one channel or pattern.
    Confirm {
        kind: SubKind,
        channel: Vec<u8>,
        count: i64,
    },
    /// `["pong", data]`: RESP2's answer to `PING` on a subscribed connection.
    Pong,
    /// Not a pub/sub message: the elements are given back.
    Other(Vec<Value>),
}

fn bulk(value: Value) -> Result<Vec<u8>, ConnError> {
    match value {
        Value::BulkString(b) => Ok(b),
        _ => Err(ConnError::OutOfStep(
            "pub/sub message with a non-string field",
        )),
    }
}

/// Recognizes a pub/sub message by its first element (`pong` only when `pong` is true). A
/// known kind with the wrong shape is an error; anything else is [`Classified::Other`].
pub(super) fn classify(items: Vec<Value>, pong: bool) -> Result<Classified, ConnError> {
    #[derive(Clone, Copy)]
    enum Kind {
        Message,
        PMessage,
        Pong,
        Confirm(SubKind),
    }
    let kind = match items.first() {
        Some(Value::BulkString(k) | Value::SimpleString(k)) => match k.as_slice() {
            b"message" => Kind::Message,
            b"pmessage" => Kind::PMessage,
            b"pong" if pong => Kind::Pong,
            other => match SubKind::from_confirmation(other) {
                Some(sub) => Kind::Confirm(sub),
                None => return Ok(Classified::Other(items)),
            },
        },
        _ => return Ok(Classified::Other(items)),
    };
    let bad = ConnError::OutOfStep("malformed pub/sub message");
    let mut fields = items.into_iter().skip(1);
    let mut next = || fields.next();
    Ok(match kind {
        Kind::Message => {
            let (Some(channel), Some(payload), None) = (next(), next(), next()) else {
                return Err(bad);
            };
            Classified::Message(Push::Message {
                channel: bulk(channel)?,
                payload: bulk(payload)?,
            })
        }
        Kind::PMessage => {
            let (Some(pattern), Some(channel), Some(payload), None) =
                (next(), next(), next(), next())
            else {
                return Err(bad);
            };
            Classified::Message(Push::PMessage {
                pattern: bulk(pattern)?,
                channel: bulk(channel)?,
                payload: bulk(payload)?,
            })
        }
        Kind::Pong => match (next(), next()) {
            (Some(_), None) => Classified::Pong,
            _ => return Err(bad),
        },
        Kind::Confirm(kind) => {
            let (Some(channel), Some(Value::Integer(count)), None) = (next(), next(), next())
            else {
                return Err(bad);
            };
            Classified::Confirm {
                kind,
                channel: bulk(channel)?,
                count,
            }
        }
    })
}

/// One channel's or pattern's state: confirmed active, and confirmations still to come.
#[derive(Debug, Default, Clone, Copy)]
struct Sub {
    active: bool,
    pending: u32,
}

/// Which channels and patterns a connection has asked for and Redis has confirmed.
///
/// Redis answers every channel of every (un)subscribe command with one confirmation, in
/// order, even when nothing changes (subscribing twice, unsubscribing from a channel never
/// subscribed). So the confirmed state after all confirmations is the last one asked for,
/// and a channel is forgotten once it is inactive with nothing pending.
#[derive(Debug, Default)]
pub(super) struct Subscriptions {
    channels: HashMap<Vec<u8>, Sub>,
    patterns: HashMap<Vec<u8>, Sub>,
}

impl Subscriptions {
    fn table(&mut self, pattern: bool) -> &mut HashMap<Vec<u8>, Sub> {
        match pattern {
            true => &mut self.patterns,
            false => &mut self.channels,
        }
    }

    /// A command for `names` went out.
    pub(super) fn requested(&mut self, kind: SubKind, names: &[&[u8]]) {
        let table = self.table(kind.pattern());
        for name in names {
            let sub = table.entry(name.to_vec()).or_default();
            sub.pending = sub.pending.saturating_add(1);
        }
    }

    /// Redis confirmed `kind` for `name`.
    pub(super) fn confirmed(&mut self, kind: SubKind, name: &[u8]) {
        let table = self.table(kind.pattern());
        let Some(sub) = table.get_mut(name) else {
            return;
        };
        sub.pending = sub.pending.saturating_sub(1);
        sub.active = kind.subscribes();
        if !sub.active && sub.pending == 0 {
            table.remove(name);
        }
    }

    /// The command for `names` was refused: their confirmations will not come.
    pub(super) fn refused(&mut self, kind: SubKind, names: &[Vec<u8>]) {
        let table = self.table(kind.pattern());
        for name in names {
            if let Some(sub) = table.get_mut(name) {
                sub.pending = sub.pending.saturating_sub(1);
                if !sub.active && sub.pending == 0 {
                    table.remove(name);
                }
            }
        }
    }

    /// `name` is confirmed active.
    pub(super) fn is_active(&self, pattern: bool, name: &[u8]) -> bool {
        let table = if pattern {
            &self.patterns
        } else {
            &self.channels
        };
        table.get(name).is_some_and(|s| s.active)
    }

    /// The confirmed active channels (or patterns), in no particular order.
    pub(super) fn active(&self, pattern: bool) -> impl Iterator<Item = &[u8]> {
        let table = if pattern {
            &self.patterns
        } else {
            &self.channels
        };
        table
            .iter()
            .filter(|(_, s)| s.active)
            .map(|(name, _)| name.as_slice())
    }

    /// Channels and patterns remembered (active, or with confirmations to come).
    #[cfg(test)]
    pub(super) fn len(&self) -> usize {
        self.channels.len() + self.patterns.len()
    }

    pub(super) fn clear(&mut self) {
        self.channels = HashMap::new();
        self.patterns = HashMap::new();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn b(s: &str) -> Value {
        Value::BulkString(s.as_bytes().to_vec())
    }

    #[test]
    fn classify_table() {
        let msg = classify(vec![b("message"), b("ch"), b("hi")], true).unwrap();
        assert!(matches!(
            msg,
            Classified::Message(Push::Message { ref channel, ref payload })
                if channel == b"ch" && payload == b"hi"
        ));
        let pmsg = classify(vec![b("pmessage"), b("c*"), b("ch"), b("hi")], true).unwrap();
        assert!(matches!(pmsg, Classified::Message(Push::PMessage { .. })));
        let conf = classify(vec![b("psubscribe"), b("c*"), Value::Integer(2)], true).unwrap();
        assert!(matches!(
            conf,
            Classified::Confirm {
                kind: SubKind::PSubscribe,
                count: 2,
                ..
            }
        ));
        assert!(matches!(
            classify(vec![b("pong"), b("")], true).unwrap(),
            Classified::Pong
        ));
        assert!(matches!(
            classify(vec![b("pong"), b("")], false).unwrap(),
            Classified::Other(_)
        ));
        let other = classify(vec![b("invalidate"), Value::Array(vec![b("k")])], true).unwrap();
        assert!(matches!(other, Classified::Other(ref v) if v.len() == 2));
        assert!(matches!(
            classify(vec![Value::Integer(1)], true).unwrap(),
            Classified::Other(_)
        ));
        assert!(matches!(
            classify(vec![], true).unwrap(),
            Classified::Other(_)
        ));
        for bad in [
            vec![b("message"), b("ch")],
            vec![b("message"), b("ch"), b("x"), b("y")],
            vec![b("message"), Value::Integer(1), b("x")],
            vec![b("pmessage"), b("c*"), b("ch")],
            vec![b("subscribe"), b("ch"), b("1")],
            vec![b("unsubscribe"), Value::NullBulk, Value::Integer(0)],
            vec![b("pong")],
        ] {
            assert!(classify(bad.clone(), true).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn confirmations_in_order_give_the_last_state_asked_for() {
        let mut s = Subscriptions::default();
        s.requested(SubKind::Subscribe, &[b"a", b"b"]);
        assert!(!s.is_active(false, b"a"), "not before the confirmation");
        s.confirmed(SubKind::Subscribe, b"a");
        assert!(s.is_active(false, b"a") && !s.is_active(false, b"b"));
        s.requested(SubKind::Unsubscribe, &[b"a"]);
        s.requested(SubKind::Subscribe, &[b"a"]);
        s.confirmed(SubKind::Subscribe, b"b");
        s.confirmed(SubKind::Unsubscribe, b"a");
        assert!(!s.is_active(false, b"a"));
        assert_eq!(s.channels[&b"a"[..]].pending, 1, "still remembered");
        s.confirmed(SubKind::Subscribe, b"a");
        let mut active: Vec<&[u8]> = s.active(false).collect();
        active.sort();
        assert_eq!(active, vec![&b"a"[..], b"b"]);
        s.requested(SubKind::Unsubscribe, &[b"a"]);
        s.confirmed(SubKind::Unsubscribe, b"a");
        assert!(!s.channels.contains_key(&b"a"[..]), "forgotten");
        // Patterns are a table of their own.
        s.requested(SubKind::PSubscribe, &[b"a"]);
        s.confirmed(SubKind::PSubscribe, b"a");
        assert!(s.is_active(true, b"a") && !s.is_active(false, b"a"));
        s.clear();
        assert_eq!(s.active(true).count() + s.active(false).count(), 0);
    }
}
