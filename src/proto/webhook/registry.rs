//! The webhook registrations of one server, sans-IO.
//!
//! [`Registry`] wraps the delivery [`Engine`] with what the engine does not know: the
//! topic of each endpoint (which endpoints follow a topic is kept by the caller, in the
//! server's one subscription table, [`crate::proto::subs`]), the checks a registration must pass (a valid topic name, an
//! `http://` [`Url`], the SSRF [`Policy`] for an IP literal, a well-formed secret), the
//! `webhook-id` of each published event and the signed request of each attempt. Randomness
//! (a generated secret, the id prefix) and the clocks come in as arguments.
//!
//! `webhook-id`s are `msg_{prefix}_{n}`: a random per-process prefix and a counter, so ids
//! stay unique across restarts and contain no `.` (the separator of the signed content).

use std::collections::HashMap;
use std::fmt;
use std::net::SocketAddr;
use std::rc::Rc;
use std::time::Instant;

use super::body::webhook_body;
use super::client::HookJob;
use log::{debug, trace};

use super::engine::{
    Action, AttemptId, AttemptResult, EndpointId, EndpointInfo, Engine, MessageId, Outcome,
    RestoreError, RestoredMessage,
};
use super::sign::{Secret, SecretError};
use super::ssrf::{self, Policy, Refused};
use super::url::{Host, Url, UrlError};
use crate::proto::topic::{valid_topic, TopicEvent};

/// Why a registration was refused.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RegisterError {
    /// The topic name is not valid (see [`valid_topic`]).
    BadTopic,
    /// The URL does not parse or is not `http://`.
    BadUrl(UrlError),
    /// The URL's IP literal is refused by the SSRF guard.
    Refused(Refused),
    /// The given secret is malformed.
    BadSecret(SecretError),
}

impl fmt::Display for RegisterError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            RegisterError::BadTopic => f.write_str("bad topic name"),
            RegisterError::BadUrl(e) => write!(f, "bad url: {e}"),
            RegisterError::Refused(e) => write!(f, "{e}"),
            RegisterError::BadSecret(e) => write!(f, "bad secret: {e}"),
        }
    }
}

impl std::error::Error for RegisterError {}

/// Why [`Registry::restore`] refused a stored registration.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RestoreHookError {
    /// It fails a check a new registration must pass (its topic, URL or secret; the SSRF
    /// policy is not applied here: the driver checks every address it connects to).
    Invalid(RegisterError),
    /// The engine refused its id.
    Id(RestoreError),
}

impl fmt::Display for RestoreHookError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            RestoreHookError::Invalid(e) => write!(f, "stored registration refused: {e}"),
            RestoreHookError::Id(e) => write!(f, "stored registration refused: {e}"),
        }
    }
}

impl std::error::Error for RestoreHookError {}

/// Where an attempt's request goes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Destination {
    /// An IP literal: check it with [`ssrf::check`] and connect.
    Addr(SocketAddr),
    /// A host name to resolve (off the loop), then check every address.
    Lookup {
        /// The host name.
        name: String,
        /// The port to connect to.
        port: u16,
    },
}

/// What the driver is to do next; see [`Registry::poll_action`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum HookAction {
    /// Send `job` to `to` (resolving and SSRF-checking it first), then report the result
    /// with [`Engine::attempt_finished`].
    Send {
        /// The request.
        job: HookJob,
        /// Where to.
        to: Destination,
    },
    /// The attempt cannot be made: report `result` for it.
    Report {
        /// The attempt.
        attempt: AttemptId,
        /// Its result (the endpoint is gone, or the request cannot be encoded).
        result: AttemptResult,
    },
    /// A message waits for its next attempt (see [`Action::Retrying`]).
    Retrying {
        /// Where it goes.
        endpoint: EndpointId,
        /// Its `webhook-id`.
        webhook_id: Rc<str>,
        /// Attempts made so far.
        attempts: u32,
        /// When the next attempt is due.
        next_attempt: Instant,
    },
    /// An endpoint answered 410 Gone and is disabled for good.
    Disabled {
        /// Which one.
        endpoint: EndpointId,
    },
    /// A message is done: report `outcome` to the application. Exactly once per message.
    Finished {
        /// Where it was going.
        endpoint: EndpointId,
        /// The topic the endpoint was registered for (empty once it is removed).
        topic: String,
        /// The message's `webhook-id`.
        webhook_id: Rc<str>,
        /// Delivered or failed.
        outcome: Outcome,
    },
}

/// The registrations and the delivery engine (see the module docs).
#[derive(Debug)]
pub struct Registry {
    engine: Engine,
    policy: Policy,
    endpoint_topic: HashMap<EndpointId, Box<str>>,
    prefix: String,
    seq: u64,
}

impl Registry {
    /// A registry delivering with `engine`, guarding targets with `policy` and naming
    /// messages `msg_{prefix}_{n}` (`prefix`: random, without `.`).
    pub fn new(engine: Engine, policy: Policy, prefix: String) -> Registry {
        Registry {
            engine,
            policy,
            endpoint_topic: HashMap::new(),
            prefix,
            seq: 0,
        }
    }

    /// A `webhook-id` prefix made of `random` bytes: one of `[a-z0-9]` per byte.
    pub fn id_prefix(random: &[u8]) -> String {
        const ALPHABET: &[u8; 36] = b"abcdefghijklmnopqrstuvwxyz0123456789";
        let pick = |b: &u8| char::from(ALPHABET[usize::from(*b) % ALPHABET.len()]);
        random.iter().map(pick).collect()
    }

    /// The engine, to read.
    pub fn engine(&self) -> &Engine {
        &self.engine
    }

    /// The engine, to drive (poll its actions, report attempts).
    pub fn engine_mut(&mut self) -> &mut Engine {
        &mut self.engine
    }

    /// The SSRF policy every resolved address is checked against.
    pub fn policy(&self) -> &Policy {
        &self.policy
    }

    /// Whether `webhook_id` is one this registry issued (`msg_{prefix}_{n}` with this
    /// process's prefix): a request carrying it came from one of our own deliveries.
    pub fn issued(&self, webhook_id: &str) -> bool {
        let n = webhook_id
            .strip_prefix("msg_")
            .and_then(|r| r.strip_prefix(self.prefix.as_str()))
            .and_then(|r| r.strip_prefix('_'));
        n.is_some_and(|n| !n.is_empty() && n.bytes().all(|b| b.is_ascii_digit()))
    }

    /// Registers `url` for `topic`, signed with `secret` or, when `None`, with a new secret
    /// made of `random_key`. Returns the endpoint and its secret.
    pub fn add(
        &mut self,
        topic: &str,
        url: &str,
        secret: Option<&str>,
        random_key: &[u8; 32],
    ) -> Result<(EndpointId, Secret), RegisterError> {
        if !valid_topic(topic) {
            return Err(RegisterError::BadTopic);
        }
        let url = Url::parse(url).map_err(RegisterError::BadUrl)?;
        if let Host::Ip(ip) = url.host {
            ssrf::check(SocketAddr::new(ip, url.port), &self.policy)
                .map_err(RegisterError::Refused)?;
        }
        let secret = match secret {
            Some(s) => Secret::parse(s),
            None => Secret::from_bytes(random_key),
        }
        .map_err(RegisterError::BadSecret)?;
        let id = self.engine.add_endpoint(url, secret.clone());
        self.endpoint_topic.insert(id, topic.into());
        Ok((id, secret))
    }

    /// Registers a stored registration again after a restart, under its old `id`, with
    /// its raw signing key and disabled flag (see [`Engine::restore_endpoint`]). Call it
    /// for every registration before [`Registry::add`], then
    /// [`Registry::set_next_endpoint_id`].
    pub fn restore(
        &mut self,
        id: EndpointId,
        topic: &str,
        url: &str,
        secret: &[u8],
        disabled: bool,
    ) -> Result<(), RestoreHookError> {
        let invalid = RestoreHookError::Invalid;
        if !valid_topic(topic) {
            return Err(invalid(RegisterError::BadTopic));
        }
        let url = Url::parse(url).map_err(|e| invalid(RegisterError::BadUrl(e)))?;
        let secret =
            Secret::from_bytes(secret).map_err(|e| invalid(RegisterError::BadSecret(e)))?;
        self.engine
            .restore_endpoint(id, url, secret, disabled)
            .map_err(RestoreHookError::Id)?;
        self.endpoint_topic.insert(id, topic.into());
        Ok(())
    }

    /// No endpoint id below `next` (the store's lowest id never issued) is issued again;
    /// see [`Engine::set_next_endpoint_id`].
    pub fn set_next_endpoint_id(&mut self, next: u64) {
        self.engine.set_next_endpoint_id(next);
    }

    /// Queues a stored outbox message again, in publish order, after the registrations are
    /// restored; see [`Engine::restore_message`]. Its outcome comes as a
    /// [`HookAction::Finished`], exactly once.
    pub fn restore_message(&mut self, msg: RestoredMessage, now: Instant) -> MessageId {
        self.engine.restore_message(msg, now)
    }

    /// Removes endpoint `id` (its decimal form) of `topic`; its messages fail (`Finished`
    /// actions follow). Returns the endpoint removed, `None` when no such registration
    /// exists.
    pub fn remove(&mut self, topic: &str, id: &str, now: Instant) -> Option<EndpointId> {
        let id = id.parse::<EndpointId>().ok()?;
        if self.topic_of(id) != Some(topic) {
            return None;
        }
        self.endpoint_topic.remove(&id);
        self.engine.remove_endpoint(id, now);
        Some(id)
    }

    /// Removes every endpoint from the engine (the server stops): every message gets its
    /// outcome. The topics stay known, for those outcomes.
    pub fn remove_all(&mut self, now: Instant) {
        let ids: Vec<EndpointId> = self.engine.endpoints().map(|(id, _)| id).collect();
        for id in ids {
            self.engine.remove_endpoint(id, now);
        }
    }

    /// The registrations of the endpoints `ids`.
    pub fn list<'a>(
        &'a self,
        ids: &'a [EndpointId],
    ) -> impl Iterator<Item = (EndpointId, &'a EndpointInfo)> + 'a {
        ids.iter()
            .filter_map(|id| Some((*id, self.engine.endpoint(*id)?)))
    }

    /// The topic endpoint `id` was registered for.
    pub fn topic_of(&self, id: EndpointId) -> Option<&str> {
        self.endpoint_topic.get(&id).map(|t| &**t)
    }

    /// The secrets of registrations whose URL points at `local` itself (the same port, and
    /// the same IP, loopback for loopback, or `localhost`).
    pub fn own_secrets(&self, local: SocketAddr) -> Vec<Secret> {
        let loopback = local.ip().is_loopback();
        let own = |url: &Url| {
            url.port == local.port()
                && match &url.host {
                    Host::Ip(ip) => *ip == local.ip() || (ip.is_loopback() && loopback),
                    Host::Name(n) => n == "localhost" && loopback,
                }
        };
        let endpoints = self.engine.endpoints();
        endpoints
            .filter(|(_, e)| own(&e.url))
            .map(|(_, e)| e.secret.clone())
            .collect()
    }

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
                    Ok((job, to)) => HookAction::Send { job, to },
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
                let topic = self.topic_of(endpoint).unwrap_or_default().into();
                HookAction::Finished {
                    endpoint,
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

    /// The request of one attempt and where it goes, or its result when it cannot be made.
    fn job(
        &self,
        attempt: AttemptId,
        endpoint: EndpointId,
        webhook_id: &str,
        body: &[u8],
        unix_secs: u64,
        now: Instant,
    ) -> Result<(HookJob, Destination), AttemptResult> {
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
        Ok((job, to))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::proto::webhook::EngineConfig;

    fn registry() -> Registry {
        let policy = Policy {
            allow_private: false,
            allow: vec!["127.0.0.1:8080".parse().unwrap()],
        };
        Registry::new(Engine::new(EngineConfig::default()), policy, "p".into())
    }

    #[test]
    fn issued_webhook_ids_are_this_prefix_and_a_number() {
        let r = registry(); // prefix "p"
        assert!(r.issued("msg_p_1"));
        assert!(r.issued("msg_p_1234"));
        for other in [
            "msg_q_1", "msg_p_", "msg_p_1x", "msg_pp_1", "p_1", "", "msg_p",
        ] {
            assert!(!r.issued(other), "{other}");
        }
    }

    #[test]
    fn registrations_are_checked() {
        let mut r = registry();
        let key = [1u8; 32];
        let err = |r: &mut Registry, topic, url| r.add(topic, url, None, &key).unwrap_err();
        assert_eq!(
            err(&mut r, "bad topic!", "http://a/").to_string(),
            "bad topic name"
        );
        assert!(err(&mut r, "t", "https://a/")
            .to_string()
            .starts_with("bad url: "));
        assert!(matches!(
            err(&mut r, "t", "http://10.0.0.1/"),
            RegisterError::Refused(_)
        ));
        let bad = r.add("t", "http://a/", Some("whsec_!"), &key).unwrap_err();
        assert!(bad.to_string().starts_with("bad secret: "), "{bad}");
        // The hub's own address is allowed, and a generated secret is made of the key.
        let (id, secret) = r.add("t", "http://127.0.0.1:8080/in", None, &key).unwrap();
        assert_eq!(secret, Secret::from_bytes(&key).unwrap());
        assert_eq!(r.topic_of(id), Some("t"));
    }

    #[test]
    fn publish_list_remove() {
        let mut r = registry();
        let t = Instant::now();
        let (a, _) = r.add("t", "http://example.com/a", None, &[2; 32]).unwrap();
        let (b, _) = r
            .add("t", "http://93.184.215.14:81/b", None, &[3; 32])
            .unwrap();
        let listed: Vec<EndpointId> = r.list(&[a, b]).map(|(id, _)| id).collect();
        assert_eq!(listed, [a, b]);
        let ev = TopicEvent {
            id: 1,
            event: None,
            data: "x".into(),
            published_ms: 0,
        };
        assert_eq!(r.publish("t", &[a, b], &ev, 0, t), 2);
        assert_eq!(r.publish("nobody", &[], &ev, 0, t), 0);
        let (mut dests, mut attempts) = (Vec::new(), Vec::new());
        while let Some(action) = r.poll_action(t, 9) {
            let HookAction::Send { job, to } = action else {
                panic!("{action:?}")
            };
            let text = String::from_utf8_lossy(job.request()).into_owned();
            assert!(text.contains("\r\nwebhook-id: msg_p_1\r\n"), "{text}");
            assert!(text.contains("\r\nwebhook-timestamp: 9\r\n"), "{text}");
            assert!(text.ends_with(r#""data":"x"}}"#), "{text}");
            dests.push(to);
            attempts.push(job.attempt());
        }
        assert_eq!(
            dests,
            [
                Destination::Lookup {
                    name: "example.com".into(),
                    port: 80
                },
                Destination::Addr("93.184.215.14:81".parse().unwrap()),
            ]
        );
        assert_eq!(r.remove("other", &a.to_string(), t), None);
        assert_eq!(r.remove("t", "nonsense", t), None);
        assert_eq!(r.remove("t", &a.to_string(), t), Some(a));
        assert_eq!(r.remove("t", &b.to_string(), t), Some(b));
        // The two messages in flight end when their attempts do.
        for a in attempts {
            let result = AttemptResult::Io("cut".into());
            r.engine_mut().attempt_finished(a, result, t, 0.5);
        }
        let mut finished = 0;
        while let Some(action) = r.poll_action(t, 9) {
            let HookAction::Finished { topic, outcome, .. } = action else {
                panic!("{action:?}")
            };
            assert!(topic.is_empty(), "the registration is gone");
            assert!(matches!(outcome, Outcome::Failed { .. }), "{outcome:?}");
            finished += 1;
        }
        assert_eq!(finished, 2);
    }

    #[test]
    fn id_prefixes() {
        assert_eq!(Registry::id_prefix(&[0, 25, 26, 35, 36, 255]), "az09ad");
    }

    #[test]
    fn own_secrets_match_the_local_address() {
        let mut r = registry();
        let local: SocketAddr = "127.0.0.1:8080".parse().unwrap();
        let (_, own) = r
            .add("t", "http://127.0.0.1:8080/in", None, &[4; 32])
            .unwrap();
        let mut allow = r.policy().clone();
        allow.allow_private = true;
        r.policy = allow;
        let (_, named) = r
            .add("t", "http://localhost:8080/in", None, &[5; 32])
            .unwrap();
        r.add("t", "http://127.0.0.1:8081/in", None, &[6; 32])
            .unwrap();
        r.add("t", "http://example.com:8080/in", None, &[7; 32])
            .unwrap();
        assert_eq!(r.own_secrets(local), [own, named]);
    }

    #[test]
    fn restore_registrations_and_messages() {
        let mut r = registry();
        let t = Instant::now();
        let id = EndpointId::from_u64(3);
        let url = "http://example.com/a";
        let key = [8u8; 32];
        let bad = |e| Err(RestoreHookError::Invalid(e));
        assert_eq!(
            r.restore(id, "bad topic!", url, &key, false),
            bad(RegisterError::BadTopic)
        );
        assert!(matches!(
            r.restore(id, "t", "https://a/", &key, false),
            Err(RestoreHookError::Invalid(RegisterError::BadUrl(_)))
        ));
        assert!(matches!(
            r.restore(id, "t", url, &[], false),
            Err(RestoreHookError::Invalid(RegisterError::BadSecret(_)))
        ));
        r.restore(id, "t", url, &key, false).unwrap();
        let dup = r.restore(id, "u", url, &key, true).unwrap_err();
        assert_eq!(
            dup,
            RestoreHookError::Id(RestoreError::DuplicateEndpoint(id))
        );
        assert_eq!(
            dup.to_string(),
            "stored registration refused: endpoint 3 is already registered"
        );
        assert_eq!(r.topic_of(id), Some("t"));
        r.set_next_endpoint_id(7);
        let (new, _) = r.add("t", url, None, &[9; 32]).unwrap();
        assert_eq!(new.as_u64(), 7);
        let msg = RestoredMessage {
            endpoint: id,
            webhook_id: "msg_old_4".into(),
            body: Rc::from(&b"{}"[..]),
            attempts: 2,
            next_attempt: t,
            enqueued: t,
        };
        r.restore_message(msg, t);
        let Some(HookAction::Send { job, .. }) = r.poll_action(t, 9) else {
            panic!("an attempt at once")
        };
        let text = String::from_utf8_lossy(job.request()).into_owned();
        assert!(text.contains("\r\nwebhook-id: msg_old_4\r\n"), "{text}");
        let ok = AttemptResult::Status {
            code: 200,
            retry_after: None,
        };
        r.engine_mut().attempt_finished(job.attempt(), ok, t, 0.5);
        let Some(HookAction::Finished { topic, outcome, .. }) = r.poll_action(t, 9) else {
            panic!("its outcome")
        };
        assert_eq!(topic, "t");
        assert!(
            matches!(outcome, Outcome::Delivered { attempts: 3, .. }),
            "{outcome:?}"
        );
    }
}
