//! Restoring an engine after a restart: endpoints under their old ids, the id counter, and
//! the pending messages with their attempt counts and due times.
//!
//! What survives a restart is kept by [`crate::proto::store`]; this is the engine's half.
//! The order of calls, before any [`Engine::add_endpoint`] or [`Engine::enqueue`]:
//!
//! 1. [`Engine::restore_endpoint`] for every registration, with its disabled flag;
//! 2. [`Engine::set_next_endpoint_id`] with the store's lowest id never issued, so a new
//!    endpoint never gets the id of a restored or a removed one;
//! 3. [`Engine::restore_message`] for every message without a final outcome, in the
//!    store's outbox order (publish order), converting each stored Unix time to an
//!    [`Instant`] with [`instant_from_unix_ms`] and one reading of both clocks;
//! 4. the usual loop: [`Engine::poll_action`] until `None`, then sleep until
//!    [`Engine::next_deadline`].
//!
//! After that the engine behaves as if the process had never stopped: a restored message
//! is attempted at its due time (at once if that time has passed), with the concurrency
//! limit, as attempt number `attempts + 1` with its old `webhook-id`; the delay after a
//! failed attempt is the schedule's next entry; and it gets exactly one
//! [`Action::Finished`]. What is not restored: attempts that were in flight (the store
//! does not record them, so they are repeated: delivery is at least once) and endpoint
//! health (a restored endpoint starts unpaused, with no failures counted).

use std::fmt;
use std::rc::Rc;
use std::time::{Duration, Instant};

use super::super::schedule::MAX_DELAY;
use super::super::sign::Secret;
use super::super::url::Url;
use super::{failed, Action, EndpointId, Engine, Message, MessageId, MsgState};

/// Why [`Engine::restore_endpoint`] refused an endpoint.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RestoreError {
    /// An endpoint with this id is registered already (restored twice, or taken by
    /// [`Engine::add_endpoint`] because restoring came too late).
    DuplicateEndpoint(EndpointId),
    /// Id 0, which is never issued (ids count up from 1).
    ZeroEndpointId,
}

impl fmt::Display for RestoreError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            RestoreError::DuplicateEndpoint(id) => write!(f, "endpoint {id} is already registered"),
            RestoreError::ZeroEndpointId => f.write_str("endpoint id 0 is never issued"),
        }
    }
}

impl std::error::Error for RestoreError {}

/// A message that had no final outcome when the process stopped, for
/// [`Engine::restore_message`].
#[derive(Debug, Clone)]
pub struct RestoredMessage {
    /// Where it goes.
    pub endpoint: EndpointId,
    /// Its `webhook-id`, the same as before the restart.
    pub webhook_id: Rc<str>,
    /// Its body (share one `Rc` among the endpoints of one stored event).
    pub body: Rc<[u8]>,
    /// Attempts already made (all failed); the next one is number `attempts + 1`.
    pub attempts: u32,
    /// When the next attempt is due; a time not after `now` means at once.
    pub next_attempt: Instant,
    /// When it was first queued, for [`Outcome::Delivered`](super::Outcome::Delivered)'s
    /// latency (the store's first due time; `now` when unknown).
    pub enqueued: Instant,
}

/// The [`Instant`] of the Unix time `unix_ms`, given one reading of both clocks: `now`
/// and `now_unix_ms` (milliseconds since the Unix epoch, taken together with `now`).
///
/// The engine never reads a clock; this is how the driver turns a stored due time into
/// one. A time in the past that `Instant` cannot represent (before the machine booted,
/// say) gives `now`, which for a due time means at once and for an enqueue time makes a
/// latency count from the restart. A time in the future is capped at [`MAX_DELAY`] ahead
/// (7 days, the longest delay of any schedule): a due time further out means the wall
/// clock went back, and the message should not be parked for longer than it could have
/// been.
pub fn instant_from_unix_ms(unix_ms: u64, now: Instant, now_unix_ms: u64) -> Instant {
    if unix_ms >= now_unix_ms {
        now + Duration::from_millis(unix_ms - now_unix_ms).min(MAX_DELAY)
    } else {
        let behind = Duration::from_millis(now_unix_ms - unix_ms);
        now.checked_sub(behind).unwrap_or(now)
    }
}

impl Engine {
    /// Registers an endpoint under an id issued before a restart, with its URL, secret and
    /// disabled flag (a disabled endpoint refuses messages, as after a 410 Gone: each one
    /// fails at once with "endpoint disabled"). The endpoint starts unpaused. Later
    /// [`Engine::add_endpoint`] calls issue ids above `id`.
    ///
    /// Call it before any `add_endpoint`: an id is refused only while an endpoint holds it,
    /// so the engine cannot tell a restored id from one it issued and removed itself.
    pub fn restore_endpoint(
        &mut self,
        id: EndpointId,
        url: Url,
        secret: Secret,
        disabled: bool,
    ) -> Result<(), RestoreError> {
        if id.0 == 0 {
            return Err(RestoreError::ZeroEndpointId);
        }
        if self.endpoints.contains_key(&id) {
            return Err(RestoreError::DuplicateEndpoint(id));
        }
        let shown = url.without_query();
        log::debug!("webhook endpoint {id} restored (disabled: {disabled}): {shown}");
        self.insert_endpoint(id, url, secret, disabled);
        self.next_id = self.next_id.max(id.0);
        Ok(())
    }

    /// Makes sure no id below `next` is issued again: `next` is the lowest endpoint id
    /// never issued before the restart (the store's `next_endpoint`), which covers removed
    /// endpoints that [`Engine::restore_endpoint`] never sees. Never lowers the counter.
    pub fn set_next_endpoint_id(&mut self, next: u64) {
        self.next_id = self.next_id.max(next.saturating_sub(1));
    }

    /// The lowest endpoint id this engine has not issued and will not issue (ids of
    /// endpoints, messages and attempts share one counter, so ids have gaps).
    pub fn next_endpoint_id(&self) -> u64 {
        self.next_id + 1
    }

    /// Queues a message again after a restart and returns its (new) [`MessageId`].
    ///
    /// The message waits until `next_attempt` (or is ready at once if that is not after
    /// `now`), then gets attempt number `attempts + 1` with its old `webhook-id`; if that
    /// fails, the delay before the next one is the schedule's entry for attempt
    /// `attempts + 2`, and once the schedule is exhausted it fails with the last error,
    /// exactly as if the process had never stopped. Restore messages in publish order:
    /// as at [`Engine::enqueue`], beyond `max_queue` pending messages or
    /// `max_queue_bytes_per_endpoint` body bytes of one endpoint its oldest message fails
    /// with "queue full", beyond `max_queue_bytes_total` body bytes in all the oldest
    /// message of any endpoint does (so a data directory written with larger budgets comes
    /// back within the current ones, keeping the newest messages), and an unknown or
    /// disabled endpoint fails the message at once ("unknown endpoint", "endpoint
    /// disabled").
    ///
    /// When `attempts` already uses up the schedule (possible when the schedule was
    /// shortened between the runs), no attempt is left: the message fails at once with
    /// "retry schedule exhausted before the restart".
    ///
    /// Every one of these cases ends in exactly one [`Action::Finished`] for the message.
    pub fn restore_message(&mut self, msg: RestoredMessage, now: Instant) -> MessageId {
        let RestoredMessage {
            endpoint,
            webhook_id,
            body,
            attempts,
            next_attempt,
            enqueued,
        } = msg;
        if attempts >= self.config.schedule.max_attempts() {
            let id = MessageId(self.fresh_id());
            log::debug!("webhook message {id} ({webhook_id}) restored after its last attempt");
            self.stats.failed += 1;
            let error = "retry schedule exhausted before the restart";
            self.out.push_back(Action::Finished {
                endpoint,
                message: id,
                webhook_id,
                outcome: failed(attempts, error),
            });
            return id;
        }
        let state = if next_attempt > now {
            MsgState::Waiting(next_attempt)
        } else {
            MsgState::Ready
        };
        self.queue(Message {
            endpoint,
            webhook_id,
            body,
            enqueued,
            attempts,
            state,
        })
    }
}
