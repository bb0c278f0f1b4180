//! Outbound webhooks, the sans-IO part: signing, target URLs, the SSRF guard, the retry
//! schedule, the request encoder and the delivery state machine.
//!
//! The conventions are those of the [Standard Webhooks] specification (v1.0.0): a JSON
//! `POST` carrying `webhook-id` (stable across the retries of one message),
//! `webhook-timestamp` (of the attempt) and `webhook-signature` (`v1,` + base64
//! HMAC-SHA256 over `{id}.{timestamp}.{body}`); any 2xx is a delivery; 410 Gone disables
//! the endpoint; failures are retried on a schedule with backoff and jitter.
//!
//! How the pieces fit (the driver owns the sockets and the clock):
//!
//! 1. Registration ([`registry::Registry::add`] does all of it, within the limits of
//!    [`registry::RegistryConfig`]: endpoints per topic, the server's own address):
//!    [`url::Url::parse`] the target (only `http://`), [`ssrf::check`] it when it is an IP
//!    literal, [`sign::Secret::parse`] or generate the secret, then
//!    [`engine::Engine::add_endpoint`]; the application gets the endpoint's public
//!    [`hook_id::HookId`], never its internal number.
//! 2. Publishing: encode the JSON [`body::webhook_body`] once and
//!    [`engine::Engine::enqueue`] one message per endpoint, sharing one `Rc<[u8]>` body.
//! 3. The loop: call [`engine::Engine::poll_action`] until `None` after every input; for
//!    each `Attempt`, resolve the host off-thread, [`ssrf::check`] every address, connect,
//!    write [`request::encode_webhook`], read the response (the HTTP/1 response parser
//!    lives in `proto::http1`), and report one [`engine::AttemptResult`] with
//!    [`engine::Engine::attempt_finished`] (using [`schedule::parse_retry_after`] for
//!    `Retry-After`). Sleep until [`engine::Engine::next_deadline`].
//! 4. `Finished` actions are the per-message outcomes for the application; exactly one per
//!    message.
//! 5. After a restart: [`registry::Registry::restore`] each stored registration,
//!    [`registry::Registry::set_next_endpoint_id`], then
//!    [`registry::Registry::restore_message`] each stored outbox message (see
//!    [`engine::RestoredMessage`]).
//!
//! [Standard Webhooks]: https://www.standardwebhooks.com

pub mod body;
pub mod client;
pub mod engine;
pub mod hook_id;
pub mod registry;
pub mod request;
pub mod schedule;
pub mod sign;
pub mod ssrf;
pub mod url;

pub use client::{ClientConfig, ClientConn, ClientEvent, ClientPhase, HookJob};
pub use engine::{
    instant_from_unix_ms, Action, AttemptId, AttemptResult, EndpointId, EndpointInfo, Engine,
    EngineConfig, EngineStats, MessageId, Outcome, RestoreError, RestoredMessage,
};
pub use hook_id::{BadHookId, HookId};
pub use registry::{
    Destination, HookAction, Listed, RegisterError, Registered, Registry, RegistryConfig,
    RestoreHookError,
};
pub use request::{encode_post, encode_webhook, RequestError, USER_AGENT};
pub use schedule::{parse_retry_after, Schedule, ScheduleError, MAX_RETRY_AFTER};
pub use sign::{verify, Secret, SecretError, VerifyError, DEFAULT_TOLERANCE};
pub use ssrf::{check, classify, AddrClass, Policy, Refused};
pub use url::{Host, Url, UrlError};
