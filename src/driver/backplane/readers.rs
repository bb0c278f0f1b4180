//! Readers of a followed topic: they wait until it is in sync on this server (their resume
//! is then served from the local history), or get 503 (a WebSocket: close 1011) while the
//! subscriber link is down.

use log::debug;

use super::super::Core;
use super::{Followed, Role};
use crate::api::{ConnId, EventsQuery, Park, SseStream};
use crate::proto::backplane::sync::{SyncState, TopicSync};
use crate::proto::http1::Response;

/// A reader waiting for its topic to be in sync.
#[derive(Debug)]
pub(crate) enum Waiter {
    Sse(ConnId, SseStream),
    Park(ConnId, Park),
    Ws(ConnId, String, Option<u64>),
    Events(ConnId, EventsQuery),
}

impl Waiter {
    fn conn(&self) -> ConnId {
        match self {
            Waiter::Sse(c, _) | Waiter::Park(c, _) | Waiter::Ws(c, ..) | Waiter::Events(c, _) => *c,
        }
    }
}

impl Core {
    /// Whether a reader of `topic` may be served now. Otherwise it waits for the topic
    /// (kept in `w`, `Ok(None)` back), or, Redis being unreachable, is refused (`Err`,
    /// with the waiter to answer 503).
    pub(crate) fn bp_reader(&mut self, topic: &str, w: Waiter) -> Result<Option<Waiter>, Waiter> {
        // Live here, a topic needs only its subscription; otherwise a read too.
        let subscriber_up = self.redis_up(Role::Subscriber);
        let both_up = subscriber_up && self.redis_up(Role::Command);
        let local_last = self
            .topics
            .contains(topic)
            .then(|| self.topics.last_id(topic));
        let Some(b) = self.bp.as_mut() else {
            return Ok(Some(w));
        };
        // Just started, the links still connecting: wait for them rather than refuse.
        let both_up = both_up || !b.ever_up;
        if let Some(f) = b.topics.get_mut(topic) {
            f.idle_since = None;
            if f.sync.state() == SyncState::Live && subscriber_up {
                return Ok(Some(w));
            }
            if !both_up {
                return Err(w);
            }
            f.waiters.push(w);
            return Ok(None);
        }
        if !both_up {
            return Err(w);
        }
        let channel = b.keys.channel(topic);
        let page = b.page;
        if self.redis_subscribe(channel.as_bytes()).is_err() {
            return Err(w);
        }
        debug!("backplane: following {topic:?} (after {local_last:?})");
        let f = Followed {
            sync: TopicSync::new(local_last, page),
            waiters: vec![w],
            first_id: 1,
            stream_len: None,
            idle_since: None,
        };
        if let Some(b) = self.bp.as_mut() {
            b.topics.insert(topic.into(), f);
        }
        self.arm_sweep();
        Ok(None)
    }

    /// Refuses a reader because Redis is unreachable.
    pub(crate) fn refuse_reader(&mut self, w: Waiter) {
        let Some(i) = self.index_of(w.conn()) else {
            return;
        };
        if let Waiter::Ws(..) = w {
            self.with_conn(i, |p, env| {
                p.close_ws(env, 1011, "redis unavailable: cannot read the topic")
            });
            return;
        }
        let resp = Response::text(503, "redis unavailable: cannot read the topic's history\n")
            .header("Retry-After", "1");
        self.with_conn(i, |p, env| p.respond(&resp, env));
        self.mark_dirty(i);
    }

    /// Serves a reader whose topic is now live here.
    pub(super) fn serve_reader(&mut self, w: Waiter) {
        let Some(i) = self.index_of(w.conn()) else {
            return;
        };
        match w {
            Waiter::Sse(_, s) => self.start_sse(i, s),
            Waiter::Park(_, p) => self.park(i, p),
            Waiter::Ws(conn, topic, since) => {
                self.subscribe_ws(conn, &topic, since);
            }
            Waiter::Events(_, q) => self.answer_events(i, q),
        }
        self.mark_dirty(i);
    }

    /// Answers an [`EventsQuery`] from the local history.
    pub(crate) fn answer_events(&mut self, i: usize, q: EventsQuery) {
        let page = self.topics.read_after(&q.topic, q.since, q.max);
        let body = crate::api::EventPage::from_page(&page).to_json();
        let mut resp = Response::json(200, body).header("Cache-Control", "no-store");
        for (k, v) in &q.headers {
            resp = resp.header(k, v);
        }
        self.with_conn(i, |p, env| p.respond(&resp, env));
    }

    /// Lets a reader of `topic` through (`Some`), or keeps it waiting for the topic, or
    /// refuses it while Redis is unreachable (`None` for both).
    /// The topics WebSocket `conn` is about to be subscribed to: its subscription waits for
    /// the topic's history to be in sync with Redis.
    pub(crate) fn bp_pending_ws(&self, conn: ConnId) -> impl Iterator<Item = &str> + '_ {
        self.bp
            .iter()
            .flat_map(|b| b.topics.values())
            .flat_map(|f| f.waiters.iter())
            .filter_map(move |w| match w {
                Waiter::Ws(c, topic, _) if *c == conn => Some(topic.as_str()),
                _ => None,
            })
    }

    pub(crate) fn gate(&mut self, topic: &str, w: Waiter) -> Option<Waiter> {
        match self.bp_reader(topic, w) {
            Ok(w) => w,
            Err(w) => {
                self.refuse_reader(w);
                None
            }
        }
    }
}
