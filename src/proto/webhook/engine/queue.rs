//! The bookkeeping of pending messages: queueing one (with the `max_queue` bound), dropping
//! one, and handing out its one outcome.

use super::{Action, Engine, Message, MessageId, MsgState, Outcome};

impl Engine {
    /// Gives `msg` (state `Ready`, or `Waiting` without its timer yet) a fresh id and
    /// queues it: it fails at once for an unknown or disabled endpoint, and the oldest
    /// pending messages of its endpoint fail with "queue full" beyond `max_queue`.
    pub(super) fn queue(&mut self, msg: Message) -> MessageId {
        let id = MessageId(self.fresh_id());
        let endpoint = msg.endpoint;
        let refusal = match self.endpoints.get(&endpoint) {
            None => Some("unknown endpoint"),
            Some(ep) if ep.info.disabled => Some("endpoint disabled"),
            Some(_) => None,
        };
        if let Some(error) = refusal {
            self.stats.failed += 1;
            self.out.push_back(Action::Finished {
                endpoint,
                message: id,
                webhook_id: msg.webhook_id,
                outcome: failed(msg.attempts, error),
            });
            return id;
        }
        if msg.attempts == 0 {
            self.stats.queued += 1;
        } else {
            self.stats.retrying += 1;
        }
        let state = msg.state;
        if let MsgState::Waiting(due) = state {
            self.retry_timers.insert((due, id));
        }
        self.messages.insert(id, msg);
        let max_queue = self.config.max_queue;
        let mut evict = Vec::new();
        if let Some(ep) = self.endpoints.get_mut(&endpoint) {
            match state {
                MsgState::Waiting(_) => ep.waiting.insert(id),
                _ => ep.ready.insert(id),
            };
            while ep.ready.len() + ep.waiting.len() > max_queue {
                let oldest = match (ep.ready.first(), ep.waiting.first()) {
                    (Some(r), Some(w)) => *r.min(w),
                    (Some(r), None) => *r,
                    (None, Some(w)) => *w,
                    (None, None) => break,
                };
                ep.ready.remove(&oldest);
                ep.waiting.remove(&oldest);
                evict.push(oldest);
            }
        }
        for mid in evict {
            log::debug!("webhook endpoint {endpoint}: queue full, dropping message {mid}");
            self.drop_pending(mid, "queue full");
        }
        self.schedule(endpoint);
        id
    }

    /// A message that was ready or waiting (already taken out of its endpoint's sets)
    /// fails with `error`.
    pub(super) fn drop_pending(&mut self, mid: MessageId, error: &str) {
        let Some(msg) = self.messages.get(&mid) else {
            return;
        };
        if let MsgState::Waiting(due) = msg.state {
            self.retry_timers.remove(&(due, mid));
        }
        if msg.attempts == 0 {
            self.stats.queued -= 1;
        } else {
            self.stats.retrying -= 1;
        }
        self.finish(mid, failed(msg.attempts, error));
    }

    /// Removes a message and reports its outcome.
    pub(super) fn finish(&mut self, mid: MessageId, outcome: Outcome) {
        let Some(msg) = self.messages.remove(&mid) else {
            return;
        };
        match outcome {
            Outcome::Delivered { .. } => self.stats.delivered += 1,
            Outcome::Failed { .. } => self.stats.failed += 1,
        }
        log::debug!("webhook message {mid} ({}): {outcome:?}", msg.webhook_id);
        self.out.push_back(Action::Finished {
            endpoint: msg.endpoint,
            message: mid,
            webhook_id: msg.webhook_id,
            outcome,
        });
    }
}

/// A `Failed` outcome after `attempts` attempts.
pub(super) fn failed(attempts: u32, error: &str) -> Outcome {
    Outcome::Failed {
        attempts,
        error: error.to_owned(),
    }
}
