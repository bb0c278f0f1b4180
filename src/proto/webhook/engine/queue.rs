//! The bookkeeping of pending messages: queueing one (with the `max_queue` bound and the
//! byte budgets), dropping one, and handing out its one outcome.

use super::{Action, EndpointId, Engine, Message, MessageId, MsgState, Outcome};

impl Engine {
    /// Gives `msg` (state `Ready`, or `Waiting` without its timer yet) a fresh id and
    /// queues it: it fails at once for an unknown or disabled endpoint, or with "queue
    /// full" when its body alone is larger than a byte budget; then the oldest
    /// pending messages of its endpoint fail with "queue full" beyond `max_queue` or
    /// `max_queue_bytes_per_endpoint`, and the oldest pending messages of any endpoint
    /// beyond `max_queue_bytes_total` (see "Byte budgets" in the module docs).
    pub(super) fn queue(&mut self, msg: Message) -> MessageId {
        let id = MessageId(self.fresh_id());
        let endpoint = msg.endpoint;
        let len = msg.body.len();
        let budget =
            (self.config.max_queue_bytes_per_endpoint).min(self.config.max_queue_bytes_total);
        let refusal = match self.endpoints.get(&endpoint) {
            None => Some("unknown endpoint"),
            Some(ep) if ep.info.disabled => Some("endpoint disabled"),
            // It could never fit: it fails alone instead of taking older messages along.
            Some(_) if len > budget => Some("queue full"),
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
        self.pending.insert(id);
        self.stats.queued_bytes += len as u64;
        if let Some(ep) = self.endpoints.get_mut(&endpoint) {
            ep.info.queued_bytes += len;
            match state {
                MsgState::Waiting(_) => ep.waiting.insert(id),
                _ => ep.ready.insert(id),
            };
        }
        self.enforce_endpoint_limits(endpoint);
        self.enforce_total_budget();
        self.schedule(endpoint);
        id
    }

    /// Fails the oldest pending messages of `endpoint` while it holds more than
    /// `max_queue` of them or more than `max_queue_bytes_per_endpoint` body bytes.
    fn enforce_endpoint_limits(&mut self, endpoint: EndpointId) {
        let (max_queue, max_bytes) = (
            self.config.max_queue,
            self.config.max_queue_bytes_per_endpoint,
        );
        while let Some(ep) = self.endpoints.get(&endpoint) {
            let count = ep.ready.len() + ep.waiting.len();
            if count <= max_queue && ep.info.queued_bytes <= max_bytes {
                break;
            }
            let oldest = match (ep.ready.first(), ep.waiting.first()) {
                (Some(r), Some(w)) => *r.min(w),
                (Some(r), None) => *r,
                (None, Some(w)) => *w,
                // Only attempts in flight are left: they end with their own results.
                (None, None) => break,
            };
            self.evict(oldest);
        }
    }

    /// Fails the oldest pending messages of any endpoint while all of them together hold
    /// more than `max_queue_bytes_total` body bytes.
    fn enforce_total_budget(&mut self) {
        let max = self.config.max_queue_bytes_total as u64;
        while self.stats.queued_bytes > max {
            let Some(&oldest) = self.pending.first() else {
                break;
            };
            self.evict(oldest);
        }
    }

    /// Pending message `mid` fails with "queue full".
    fn evict(&mut self, mid: MessageId) {
        let Some(endpoint) = self.messages.get(&mid).map(|m| m.endpoint) else {
            self.pending.remove(&mid);
            return;
        };
        if let Some(ep) = self.endpoints.get_mut(&endpoint) {
            ep.ready.remove(&mid);
            ep.waiting.remove(&mid);
        }
        log::debug!("webhook endpoint {endpoint}: queue full, dropping message {mid}");
        self.drop_pending(mid, "queue full");
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

    /// Removes a message (ending its share of the byte budgets) and reports its outcome.
    pub(super) fn finish(&mut self, mid: MessageId, outcome: Outcome) {
        let Some(msg) = self.messages.remove(&mid) else {
            return;
        };
        self.pending.remove(&mid);
        let len = msg.body.len();
        self.stats.queued_bytes -= len as u64;
        if let Some(ep) = self.endpoints.get_mut(&msg.endpoint) {
            // Saturating: an endpoint restored under the id of a removed one whose last
            // attempt was still running never counted that message.
            ep.info.queued_bytes = ep.info.queued_bytes.saturating_sub(len);
        }
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
