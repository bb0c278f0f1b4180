//! The webhook types of the callback API: registrations, their errors, attempt outcomes
//! and the sender's counts.

use std::fmt;
use std::io;
use std::net::SocketAddr;
use std::sync::Arc;

use crate::proto::webhook::{Outcome, RegisterError};

/// A host-name resolver for webhook URLs: blocking is fine, it runs off the loop thread.
pub type Resolver = Arc<dyn Fn(&str, u16) -> io::Result<Vec<SocketAddr>> + Send + Sync>;

/// A registered webhook endpoint, as listed by [`Ctx::webhooks`](crate::Ctx::webhooks).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WebhookInfo {
    /// Opaque id (for removal).
    pub id: String,
    /// The target URL.
    pub url: String,
    /// Disabled after the receiver answered 410 Gone.
    pub disabled: bool,
}

/// A new registration: its id and signing secret (`whsec_...`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WebhookCreated {
    /// Opaque id.
    pub id: String,
    /// The secret receivers verify signatures with.
    pub secret: String,
}

/// Why a webhook registration was refused.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum WebhookError {
    /// The topic name is not valid.
    BadTopic,
    /// The URL does not parse, has userinfo, or is not `http://`.
    BadUrl(String),
    /// The target address is refused by the SSRF guard (loopback, private, ...).
    Refused(String),
    /// The secret is not `whsec_` + base64 of 24-64 bytes.
    BadSecret(String),
    /// The Redis backplane is unreachable: the registration was not stored.
    Unavailable,
}

impl fmt::Display for WebhookError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            WebhookError::BadTopic => f.write_str("bad topic name"),
            WebhookError::BadUrl(e) => write!(f, "bad url: {e}"),
            WebhookError::Refused(e) => f.write_str(e),
            WebhookError::BadSecret(e) => write!(f, "bad secret: {e}"),
            WebhookError::Unavailable => {
                f.write_str("redis unavailable: the registration was not stored, try again")
            }
        }
    }
}

impl std::error::Error for WebhookError {}

impl From<RegisterError> for WebhookError {
    fn from(e: RegisterError) -> Self {
        match e {
            RegisterError::BadTopic => WebhookError::BadTopic,
            RegisterError::BadUrl(e) => WebhookError::BadUrl(e.to_string()),
            RegisterError::Refused(e) => WebhookError::Refused(e.to_string()),
            RegisterError::BadSecret(e) => WebhookError::BadSecret(e.to_string()),
            e @ (RegisterError::TooManyOnTopic(_)
            | RegisterError::OwnAddress(_)
            | RegisterError::IdTaken) => WebhookError::Refused(e.to_string()),
        }
    }
}

/// The final result of one webhook message, handed to
/// [`App::on_webhook`](crate::App::on_webhook). Exactly one per message.
#[derive(Debug, Clone)]
pub struct WebhookOutcome {
    /// The endpoint's id.
    pub endpoint: String,
    /// The topic the event was published to.
    pub topic: String,
    /// The `webhook-id` every attempt carried.
    pub webhook_id: String,
    /// Delivered (attempts, latency) or failed (attempts, last error).
    pub outcome: Outcome,
}

/// Webhook counters for `/stats`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct WebhookStats {
    /// Messages delivered.
    pub delivered: u64,
    /// Messages waiting for a retry (gauge).
    pub retrying: u64,
    /// Messages failed.
    pub failed: u64,
    /// Attempts made.
    pub attempts: u64,
    /// Endpoints disabled by 410 Gone.
    pub endpoints_disabled: u64,
    /// Body bytes of the messages not yet at their outcome, per endpoint summed (gauge).
    pub queued_bytes: u64,
    /// Attempts running now (gauge): what a graceful stop waits for.
    pub in_flight: u64,
}
