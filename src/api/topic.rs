//! What the callback API tells of a topic: its kept events as a page, its subscribers, and
//! why a removal was refused.

use std::fmt;

/// One kept event of a topic, as [`Ctx::events`](crate::Ctx::events) returns it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredEvent {
    /// Its id (per topic, ascending).
    pub id: u64,
    /// Its event name, if it has one.
    pub name: Option<String>,
    /// Its data.
    pub data: String,
    /// `data` is one JSON value, published with [`Ctx::publish_json`](crate::Ctx::publish_json).
    pub json: bool,
}

/// Kept events after a cursor, with the gap rule's verdict; see
/// [`Ctx::events`](crate::Ctx::events).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EventPage {
    /// The events, ids ascending.
    pub events: Vec<StoredEvent>,
    /// Events after the cursor were lost (trimmed from the history, or the cursor is ahead).
    pub gap: bool,
    /// The cursor to read after next time.
    pub next: u64,
    /// The oldest kept id (0 when the topic keeps nothing).
    pub oldest: u64,
    /// More kept events follow these.
    pub more: bool,
}

impl EventPage {
    pub(crate) fn from_page(page: &crate::proto::topic::Page) -> Self {
        EventPage {
            events: page
                .events
                .iter()
                .map(|e| StoredEvent {
                    id: e.id,
                    name: e.event.as_deref().map(str::to_owned),
                    data: e.data.to_string(),
                    json: e.json,
                })
                .collect(),
            gap: page.gap,
            next: page.next,
            oldest: page.oldest,
            more: page.more,
        }
    }

    /// The page as the hub's JSON: `{"events":[{"id":N,"event":...,"data":"..."}],"next":M,"gap":false}`
    /// (a JSON event's `data` is its value: `"data":{"msg":"hi"}`).
    pub fn to_json(&self) -> Vec<u8> {
        use crate::proto::json;
        let mut out =
            Vec::with_capacity(64 + self.events.iter().map(|e| e.data.len() + 40).sum::<usize>());
        out.extend_from_slice(b"{\"events\":[");
        for (i, e) in self.events.iter().enumerate() {
            if i > 0 {
                out.push(b',');
            }
            out.extend_from_slice(b"{\"id\":");
            json::write_u64(&mut out, e.id);
            out.extend_from_slice(b",\"event\":");
            match &e.name {
                Some(n) => json::write_str(&mut out, n),
                None => out.extend_from_slice(b"null"),
            }
            out.extend_from_slice(b",\"data\":");
            if e.json {
                out.extend_from_slice(e.data.as_bytes());
            } else {
                json::write_str(&mut out, &e.data);
            }
            out.push(b'}');
        }
        out.extend_from_slice(b"],\"next\":");
        json::write_u64(&mut out, self.next);
        out.extend_from_slice(if self.gap {
            b",\"gap\":true}"
        } else {
            b",\"gap\":false}"
        });
        out
    }
}

/// What a topic has now, as [`Ctx::topic_info`](crate::Ctx::topic_info) tells it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TopicInfo {
    /// The topic's name.
    pub topic: String,
    /// The id of its last event (0 when nothing was published to it).
    pub last_id: u64,
    /// The oldest kept id, `None` when it keeps no event.
    pub oldest_id: Option<u64>,
    /// Its subscribers by transport.
    pub subscribers: TopicSubscribers,
    /// Webhook endpoints registered for it (disabled ones included).
    pub webhooks: usize,
}

/// A topic's subscribers by transport (part of [`TopicInfo`]).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct TopicSubscribers {
    /// WebSocket connections subscribed (closing ones until they are gone).
    pub websocket: usize,
    /// Open SSE streams.
    pub sse: usize,
    /// Parked long polls.
    pub parked: usize,
}

impl TopicInfo {
    /// The hub's JSON: `{"topic":"t","last_id":N,"oldest_id":M,"subscribers":{"websocket":a,
    /// "sse":b,"parked":c},"webhooks":K}` (`oldest_id` is `null` when no event is kept).
    pub fn to_json(&self) -> Vec<u8> {
        use crate::proto::json;
        let mut out = Vec::with_capacity(160 + self.topic.len());
        out.extend_from_slice(b"{\"topic\":");
        json::write_str(&mut out, &self.topic);
        out.extend_from_slice(b",\"last_id\":");
        json::write_u64(&mut out, self.last_id);
        out.extend_from_slice(b",\"oldest_id\":");
        match self.oldest_id {
            Some(id) => json::write_u64(&mut out, id),
            None => out.extend_from_slice(b"null"),
        }
        let s = &self.subscribers;
        for (name, n) in [
            (&b",\"subscribers\":{\"websocket\":"[..], s.websocket),
            (b",\"sse\":", s.sse),
            (b",\"parked\":", s.parked),
            (b"},\"webhooks\":", self.webhooks),
        ] {
            out.extend_from_slice(name);
            json::write_u64(&mut out, n as u64);
        }
        out.push(b'}');
        out
    }
}

/// Why [`Ctx::remove_topic`](crate::Ctx::remove_topic) refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RemoveTopicError {
    /// A Redis backplane is configured: the topic's stream in Redis is shared with the
    /// other servers, which would go on serving it, so removal is not offered there.
    Backplane,
}

impl RemoveTopicError {
    /// The HTTP status to answer with: 501 (not implemented with a backplane).
    pub fn status(self) -> u16 {
        501
    }
}

impl fmt::Display for RemoveTopicError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            RemoveTopicError::Backplane => {
                f.write_str("topics cannot be removed with a Redis backplane")
            }
        }
    }
}

impl std::error::Error for RemoveTopicError {}
