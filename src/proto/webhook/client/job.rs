//! [`HookJob`]: the request of one attempt, kept until the attempt has a result.

use std::rc::Rc;
use std::time::Instant;

use crate::proto::webhook::engine::AttemptId;
use crate::proto::webhook::request::{encode_webhook, RequestError};
use crate::proto::webhook::sign::Secret;
use crate::proto::webhook::url::Url;

/// One request to make for one attempt of the engine, kept until it has a result.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HookJob {
    pub(super) attempt: AttemptId,
    pub(super) request: Rc<[u8]>,
    pub(super) started: Instant,
    /// Already moved once from a stale pooled connection to a fresh one.
    pub(super) retried: bool,
}

impl HookJob {
    /// A job sending the complete request bytes `request` for `attempt`, which started at
    /// `started` (the attempt timeout counts from there).
    pub fn new(attempt: AttemptId, request: Rc<[u8]>, started: Instant) -> HookJob {
        HookJob {
            attempt,
            request,
            started,
            retried: false,
        }
    }

    /// Encodes the signed request of one attempt with
    /// [`encode_webhook`] (`unix_secs`: the attempt's
    /// `webhook-timestamp`) and makes a job of it.
    pub fn encode(
        attempt: AttemptId,
        url: &Url,
        secret: &Secret,
        webhook_id: &str,
        unix_secs: u64,
        body: &[u8],
        started: Instant,
    ) -> Result<HookJob, RequestError> {
        let mut request = Vec::with_capacity(body.len() + 512);
        encode_webhook(&mut request, url, secret, webhook_id, unix_secs, &[], body)?;
        Ok(HookJob::new(attempt, request.into(), started))
    }

    /// The engine's attempt this job carries out.
    pub fn attempt(&self) -> AttemptId {
        self.attempt
    }

    /// When the attempt started.
    pub fn started(&self) -> Instant {
        self.started
    }

    /// The whole request.
    pub fn request(&self) -> &[u8] {
        &self.request
    }

    /// The job was given back by a stale pooled connection: it must go out on a new
    /// connection, not on another pooled one.
    pub fn needs_fresh(&self) -> bool {
        self.retried
    }
}
