//! The engine's public data: settings, ids, results, outcomes and actions.

use std::fmt;
use std::rc::Rc;
use std::str::FromStr;
use std::time::{Duration, Instant};

use super::super::schedule::Schedule;
use super::super::sign::Secret;
use super::super::url::Url;

/// The engine's settings; `Default` gives the hub's defaults.
#[derive(Debug, Clone)]
pub struct EngineConfig {
    /// When to retry (default: immediately, 5 s, 5 min, 30 min, 2 h, 5 h, 10 h, 10 h).
    pub schedule: Schedule,
    /// Attempts running at once per endpoint (default 4; 0 counts as 1).
    pub max_in_flight_per_endpoint: usize,
    /// Consecutive failed messages that pause an endpoint (default 5; 0 never pauses).
    pub pause_after_failures: u32,
    /// Time between probe attempts of a paused endpoint (default 60 s).
    pub probe_interval: Duration,
    /// Ready-or-waiting messages kept per endpoint before the oldest fails with "queue
    /// full" (default 10,000).
    pub max_queue: usize,
    /// Body bytes held for one endpoint (every message not yet at its outcome: ready,
    /// waiting or in flight) before its oldest ready-or-waiting message fails with "queue
    /// full" (default 16 MiB). See "Byte budgets" in the module docs.
    pub max_queue_bytes_per_endpoint: usize,
    /// Body bytes held for all endpoints together before the oldest ready-or-waiting
    /// message of any endpoint fails with "queue full" (default 256 MiB). A body shared by
    /// N endpoints counts N times.
    pub max_queue_bytes_total: usize,
}

impl Default for EngineConfig {
    fn default() -> EngineConfig {
        EngineConfig {
            schedule: Schedule::default(),
            max_in_flight_per_endpoint: 4,
            pause_after_failures: 5,
            probe_interval: Duration::from_secs(60),
            max_queue: 10_000,
            max_queue_bytes_per_endpoint: 16 << 20,
            max_queue_bytes_total: 256 << 20,
        }
    }
}

macro_rules! id_type {
    ($(#[$doc:meta])* $name:ident) => {
        $(#[$doc])*
        #[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
        pub struct $name(pub(in crate::proto::webhook) u64);

        impl $name {
            /// The number inside (unique within one [`Engine`](super::Engine); counts up from 1).
            pub fn as_u64(self) -> u64 {
                self.0
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                write!(f, "{}", self.0)
            }
        }
    };
}

id_type!(
    /// Names an endpoint inside this crate: a counter, stored in the durable log and used
    /// by the subscription table. `Display` gives its decimal form (for logs) that
    /// `FromStr` parses back. It is guessable, so it is never shown to clients: they get
    /// the endpoint's [`HookId`](crate::proto::webhook::HookId).
    EndpointId
);
id_type!(
    /// Names one message (one event for one endpoint), across all its attempts.
    MessageId
);
id_type!(
    /// Names one delivery attempt; report its result with [`Engine::attempt_finished`](super::Engine::attempt_finished).
    AttemptId
);

impl EndpointId {
    /// The endpoint id numbered `n`, for restoring one that was issued before a restart
    /// (see [`Engine::restore_endpoint`](super::Engine::restore_endpoint)).
    pub fn from_u64(n: u64) -> EndpointId {
        EndpointId(n)
    }
}

impl FromStr for EndpointId {
    type Err = std::num::ParseIntError;
    fn from_str(s: &str) -> Result<EndpointId, Self::Err> {
        s.parse().map(EndpointId)
    }
}

/// What came of one attempt, as reported by the driver.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AttemptResult {
    /// A complete response: its status code and its parsed `Retry-After`, if any (see
    /// [`parse_retry_after`](crate::proto::webhook::parse_retry_after)).
    Status {
        /// The final (non-1xx) status code.
        code: u16,
        /// The `Retry-After` delay; only honoured on 429 and 503.
        retry_after: Option<Duration>,
    },
    /// No complete response within the attempt timeout.
    Timeout,
    /// Resolution or the TCP connect failed.
    ConnectFailed(String),
    /// Every resolved address was refused by the SSRF guard (carries its message).
    Refused(String),
    /// The connection failed mid-request or mid-response.
    Io(String),
}

/// The one final result of a message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// A 2xx answer.
    Delivered {
        /// Attempts made, the successful one included.
        attempts: u32,
        /// From enqueue to the successful result.
        latency: Duration,
    },
    /// Given up.
    Failed {
        /// Attempts made (0 when the message never got one).
        attempts: u32,
        /// The last error, or why the message was dropped.
        error: String,
    },
}

/// Something for the driver to do; see [`Engine::poll_action`](super::Engine::poll_action).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Action {
    /// Make one attempt: POST `body` to the endpoint's URL, signed with its secret and
    /// with this `webhook_id` and the current time as `webhook-timestamp`.
    Attempt {
        /// Report the result under this id.
        attempt: AttemptId,
        /// Where to (look up its URL and secret with [`Engine::endpoint`](super::Engine::endpoint)).
        endpoint: EndpointId,
        /// Which message.
        message: MessageId,
        /// 1 for the first attempt of this message, 2 for the first retry, ...
        number: u32,
        /// The `webhook-id` header: the same for every attempt of the message.
        webhook_id: Rc<str>,
        /// The request body.
        body: Rc<[u8]>,
    },
    /// A message is done: report `outcome` to the application. Exactly once per message.
    Finished {
        /// Where it was going (the endpoint may be gone by now).
        endpoint: EndpointId,
        /// Which message.
        message: MessageId,
        /// Its `webhook-id`.
        webhook_id: Rc<str>,
        /// Delivered or failed.
        outcome: Outcome,
    },
    /// An attempt failed and the message waits for its next one (for the durable log:
    /// where delivery stands, so a restart resumes it instead of starting over).
    Retrying {
        /// Where it goes.
        endpoint: EndpointId,
        /// Its `webhook-id`.
        webhook_id: Rc<str>,
        /// Attempts made so far (all failed).
        attempts: u32,
        /// When the next attempt is due.
        next_attempt: Instant,
    },
    /// An endpoint answered 410 Gone and was disabled.
    EndpointDisabled {
        /// Which one.
        endpoint: EndpointId,
        /// Why, e.g. "HTTP 410 Gone".
        reason: String,
    },
}

/// What the engine knows about an endpoint.
#[derive(Debug, Clone)]
pub struct EndpointInfo {
    /// The target.
    pub url: Url,
    /// The signing secret.
    pub secret: Secret,
    /// Disabled after a 410 Gone: nothing is delivered any more.
    pub disabled: bool,
    /// Paused after too many failed messages: only probes are attempted.
    pub paused: bool,
    /// Failed messages since the last delivered one.
    pub consecutive_failures: u32,
    /// Body bytes of its messages not yet at their outcome (ready, waiting or in flight),
    /// counted against `max_queue_bytes_per_endpoint`.
    pub queued_bytes: usize,
}

/// Counters and gauges for `/stats`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct EngineStats {
    /// Messages delivered (counter).
    pub delivered: u64,
    /// Messages failed, for any reason (counter).
    pub failed: u64,
    /// Attempts started (counter).
    pub attempts: u64,
    /// Messages that failed an attempt and wait for their next one (gauge).
    pub retrying: u64,
    /// Messages waiting for their first attempt (gauge).
    pub queued: u64,
    /// Attempts running now (gauge).
    pub in_flight: u64,
    /// Body bytes of every message not yet at its outcome (ready, waiting or in flight),
    /// a body shared by N endpoints counted N times: what `max_queue_bytes_total` bounds
    /// (gauge).
    pub queued_bytes: u64,
    /// Endpoints disabled by a 410 Gone (counter).
    pub endpoints_disabled: u64,
}
