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

use super::engine::{Action, AttemptId, AttemptResult, EndpointId, EndpointInfo, Engine, Outcome};
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
        let mut body = Vec::new();
        webhook_body(&mut body, topic, ev, published_ms);
        let body: Rc<[u8]> = body.into();
        self.seq += 1;
        let webhook_id: Rc<str> = format!("msg_{}_{}", self.prefix, self.seq).into();
        for id in ids {
            let (id, body) = (*id, body.clone());
            self.engine.enqueue(id, webhook_id.clone(), body, now);
        }
        ids.len()
    }

    /// The next thing for the driver to do, from [`Engine::poll_action`]: an `Attempt`
    /// becomes its signed request (`webhook-timestamp`: `unix_secs`) and destination, or,
    /// when it cannot be made, a result to report at once; `Finished` gains the topic; an
    /// endpoint being disabled is only logged (the application hears of it through the
    /// failed outcomes and the endpoint's `disabled` flag).
    pub fn poll_action(&mut self, now: Instant, unix_secs: u64) -> Option<HookAction> {
        loop {
            match self.engine.poll_action(now)? {
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
                    return Some(match job {
                        Ok((job, to)) => HookAction::Send { job, to },
                        Err(result) => HookAction::Report { attempt, result },
                    });
                }
                Action::Finished {
                    endpoint,
                    webhook_id,
                    outcome,
                    ..
                } => {
                    debug!("webhook {webhook_id}: {outcome:?}");
                    let topic = self.topic_of(endpoint).unwrap_or_default().into();
                    return Some(HookAction::Finished {
                        endpoint,
                        topic,
                        webhook_id,
                        outcome,
                    });
                }
                Action::EndpointDisabled { endpoint, reason } => {
                    trace!("webhook endpoint {endpoint} disabled: {reason}");
                }
            }
        }
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
}
