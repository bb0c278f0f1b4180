//! The delivery side of the registry: a publish becomes one message per endpoint with a
//! shared `webhook-id` and body, and the engine's actions become signed requests and
//! destinations.

use super::*;

impl Registry {
    /// Enqueues `ev`, published to `topic` at `published_ms` (Unix milliseconds), once for
    /// every endpoint in `ids` (the topic's webhook subscribers), all sharing one body and
    /// one `webhook-id`. Returns how many messages were queued.
    pub fn publish(
        &mut self,
        topic: &str,
        ids: &[EndpointId],
        ev: &TopicEvent,
        published_ms: u64,
        now: Instant,
    ) -> usize {
        if ids.is_empty() {
            return 0;
        }
        let (webhook_id, body) = self.prepare(topic, ev, published_ms);
        self.enqueue_prepared(ids, &webhook_id, &body, now)
    }

    /// The `webhook-id` and body the messages of `ev` share, made before they are queued
    /// (the durable log records them first): a fresh id, never handed out before.
    pub fn prepare(
        &mut self,
        topic: &str,
        ev: &TopicEvent,
        published_ms: u64,
    ) -> (Rc<str>, Rc<[u8]>) {
        let mut body = Vec::new();
        webhook_body(&mut body, topic, ev, published_ms);
        self.seq += 1;
        let webhook_id: Rc<str> = format!("msg_{}_{}", self.prefix, self.seq).into();
        (webhook_id, body.into())
    }

    /// Queues one message per endpoint of `ids`, sharing a prepared id and body (see
    /// [`Registry::prepare`]). Returns how many were queued.
    pub fn enqueue_prepared(
        &mut self,
        ids: &[EndpointId],
        webhook_id: &Rc<str>,
        body: &Rc<[u8]>,
        now: Instant,
    ) -> usize {
        for id in ids {
            self.count_message(*id);
            self.engine
                .enqueue(*id, webhook_id.clone(), body.clone(), now);
        }
        ids.len()
    }

    /// The next thing for the driver to do, from [`Engine::poll_action`]: an `Attempt`
    /// becomes its signed request (`webhook-timestamp`: `unix_secs`) and destination, or,
    /// when it cannot be made, a result to report at once; `Finished` gains the topic; an
    /// endpoint being disabled is only logged (the application hears of it through the
    /// failed outcomes and the endpoint's `disabled` flag).
    pub fn poll_action(&mut self, now: Instant, unix_secs: u64) -> Option<HookAction> {
        Some(match self.engine.poll_action(now)? {
            Action::Attempt {
                attempt,
                endpoint,
                number,
                webhook_id,
                body,
                ..
            } => {
                trace!("webhook {webhook_id} attempt {number} to endpoint {endpoint}");
                let job = self.job(attempt, endpoint, &webhook_id, &body, unix_secs, now);
                match job {
                    Ok((job, to, tls)) => HookAction::Send { job, to, tls },
                    Err(result) => HookAction::Report { attempt, result },
                }
            }
            Action::Finished {
                endpoint,
                webhook_id,
                outcome,
                ..
            } => {
                debug!("webhook {webhook_id}: {outcome:?}");
                let (id, topic) = self.finished(endpoint);
                HookAction::Finished {
                    endpoint,
                    id,
                    topic,
                    webhook_id,
                    outcome,
                }
            }
            Action::EndpointDisabled { endpoint, reason } => {
                trace!("webhook endpoint {endpoint} disabled: {reason}");
                HookAction::Disabled { endpoint }
            }
            Action::Retrying {
                endpoint,
                webhook_id,
                attempts,
                next_attempt,
            } => HookAction::Retrying {
                endpoint,
                webhook_id,
                attempts,
                next_attempt,
            },
        })
    }

    /// One message of `endpoint` had its outcome: its public id and topic, and the entry
    /// of a removed endpoint goes with its last message.
    pub(super) fn finished(&mut self, endpoint: EndpointId) -> (Option<HookId>, String) {
        let Some(e) = self.entries.get_mut(&endpoint) else {
            return (None, String::new());
        };
        e.messages = e.messages.saturating_sub(1);
        let found = (Some(e.id), e.topic.to_string());
        if !e.live && e.messages == 0 {
            self.entries.remove(&endpoint);
        }
        found
    }

    /// The request of one attempt and where it goes, or its result when it cannot be made.
    pub(super) fn job(
        &self,
        attempt: AttemptId,
        endpoint: EndpointId,
        webhook_id: &str,
        body: &[u8],
        unix_secs: u64,
        now: Instant,
    ) -> Result<(HookJob, Destination, Option<Host>), AttemptResult> {
        let Some(info) = self.engine.endpoint(endpoint) else {
            return Err(AttemptResult::Io("endpoint removed".into()));
        };
        let url = &info.url;
        let job = HookJob::encode(attempt, url, &info.secret, webhook_id, unix_secs, body, now)
            .map_err(|e| AttemptResult::Io(format!("cannot encode the request: {e}")))?;
        let to = match &url.host {
            Host::Ip(ip) => Destination::Addr(SocketAddr::new(*ip, url.port)),
            Host::Name(name) => Destination::Lookup {
                name: name.clone(),
                port: url.port,
            },
        };
        let tls = url.tls.then(|| url.host.clone());
        Ok((job, to, tls))
    }
}
