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
//!
//! Each endpoint has two names: its internal [`EndpointId`] (a counter, what the durable
//! log and the subscription table use) and its public [`HookId`] (128 unguessable bits
//! derived from its secret key and that counter, see [`super::hook_id`]): registration
//! answers the public one, and listing, removal and outcomes go by it. The registry keeps
//! a removed endpoint's topic and public id until its last message has its outcome, so
//! every [`HookAction::Finished`] names them; queue messages through the registry
//! ([`Registry::publish`], [`Registry::enqueue_prepared`], [`Registry::restore_message`]),
//! not through [`Registry::engine_mut`], for that count to hold.
//!
//! # Limits on registrations
//!
//! * At most [`RegistryConfig::max_per_topic`] endpoints per topic (default 16): one publish
//!   costs one message per endpoint, so this bounds the fan-out of a single event.
//! * No webhook at the server itself, except at [`RegistryConfig::self_path`]: a webhook
//!   whose target is the server's own address and a publish route would republish every
//!   delivery, and three of them on one topic turn one publish into an exponential chain.
//!   A target is the server's own when its port is that of a listening address in
//!   [`RegistryConfig::own_addrs`] and its host is that address's IP (IPv4-mapped IPv6
//!   forms included), or, when the server listens on loopback or on the unspecified
//!   address, any loopback IP, the unspecified IP, `localhost` or a name under
//!   `.localhost` (RFC 6761). The path compared is the URL's path without its query,
//!   byte for byte. Other names for the server (its DNS name, a proxy) cannot be known
//!   here; a loop through them must be stopped where deliveries are received.
//!
//! [`Registry::restore`] applies neither limit: a registration accepted before a restart
//! is kept (with a lowered limit, new ones are refused until the topic is below it).

mod deliver;
mod shared;

use std::collections::HashMap;
use std::fmt;
use std::net::SocketAddr;
use std::rc::Rc;
use std::time::Instant;

use super::body::webhook_body;
use super::client::HookJob;
use log::{debug, trace};

use super::engine::{
    Action, AttemptId, AttemptResult, EndpointId, Engine, MessageId, Outcome, RestoreError,
    RestoredMessage,
};
use super::hook_id::HookId;
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
    /// The topic has [`RegistryConfig::max_per_topic`] endpoints already (the number).
    TooManyOnTopic(usize),
    /// The target is the server's own address, allowed only for this path (`None`: not at
    /// all); see [`RegistryConfig::self_path`].
    OwnAddress(Option<String>),
    /// The endpoint id asked for ([`Registry::add_as`]) is taken.
    IdTaken,
}

impl fmt::Display for RegisterError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            RegisterError::BadTopic => f.write_str("bad topic name"),
            RegisterError::BadUrl(e) => write!(f, "bad url: {e}"),
            RegisterError::Refused(e) => write!(f, "{e}"),
            RegisterError::BadSecret(e) => write!(f, "bad secret: {e}"),
            RegisterError::TooManyOnTopic(max) => {
                write!(f, "too many webhooks on this topic ({max})")
            }
            RegisterError::OwnAddress(Some(path)) => {
                write!(f, "the server's own address is allowed only for {path}")
            }
            RegisterError::IdTaken => f.write_str("the endpoint id is taken: try again"),
            RegisterError::OwnAddress(None) => {
                f.write_str("the server's own address is not allowed as a webhook target")
            }
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
        /// For an `https://` URL, the host the receiver's certificate must be valid for
        /// (and the SNI name, when it is a DNS name).
        tls: Option<Host>,
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
        /// Its public id; `None` only for a message queued for an endpoint this registry
        /// never had (a stored message whose registration was not restored).
        id: Option<HookId>,
        /// The topic the endpoint was registered for (empty in the same case).
        topic: String,
        /// The message's `webhook-id`.
        webhook_id: Rc<str>,
        /// Delivered or failed.
        outcome: Outcome,
    },
}

/// The limits on registrations (see "Limits on registrations" in the module docs).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RegistryConfig {
    /// Most endpoints registered for one topic (default 16).
    pub max_per_topic: usize,
    /// The server's own listening addresses (default none; the driver fills them in).
    pub own_addrs: Vec<SocketAddr>,
    /// The one path (without query) a webhook may target at the server's own address,
    /// such as a built-in receiver that does not republish to a topic with webhooks
    /// (default `None`: every target at the server's own address is refused).
    pub self_path: Option<String>,
    /// Whether `https://` targets are accepted (default: when pushwire is built with its
    /// `tls` feature).
    pub https: bool,
}

impl Default for RegistryConfig {
    fn default() -> RegistryConfig {
        RegistryConfig {
            max_per_topic: 16,
            own_addrs: Vec::new(),
            self_path: None,
            https: cfg!(feature = "tls"),
        }
    }
}

/// A new registration, as [`Registry::add`] returns it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Registered {
    /// Its internal number (for the subscription table and the durable log).
    pub endpoint: EndpointId,
    /// Its public id (for the application).
    pub id: HookId,
    /// The secret it signs with.
    pub secret: Secret,
}

/// A registration as [`Registry::list`] shows it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Listed {
    /// Its internal number.
    pub endpoint: EndpointId,
    /// Its public id.
    pub id: HookId,
    /// The target URL without its query string ([`Url::without_query`]).
    pub url: String,
    /// Disabled after a 410 Gone.
    pub disabled: bool,
}

/// What the registry keeps of one endpoint, registered or removed with messages left.
#[derive(Debug)]
struct Entry {
    topic: Box<str>,
    id: HookId,
    /// Registered (not removed).
    live: bool,
    /// Its messages queued through the registry and not yet `Finished`.
    messages: usize,
}

/// The registrations and the delivery engine (see the module docs).
#[derive(Debug)]
pub struct Registry {
    engine: Engine,
    policy: Policy,
    config: RegistryConfig,
    entries: HashMap<EndpointId, Entry>,
    /// The live registrations by public id.
    by_id: HashMap<HookId, EndpointId>,
    /// Endpoints registered per topic (topics with none are absent).
    per_topic: HashMap<Box<str>, usize>,
    prefix: String,
    seq: u64,
}

impl Registry {
    /// A registry delivering with `engine`, guarding targets with `policy`, limiting
    /// registrations by `config` and naming messages `msg_{prefix}_{n}` (`prefix`: random,
    /// without `.`).
    pub fn new(engine: Engine, policy: Policy, prefix: String, config: RegistryConfig) -> Registry {
        Registry {
            engine,
            policy,
            config,
            entries: HashMap::new(),
            by_id: HashMap::new(),
            per_topic: HashMap::new(),
            prefix,
            seq: 0,
        }
    }

    /// The limits in use.
    pub fn config(&self) -> &RegistryConfig {
        &self.config
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

    /// Adds one more address of this server (a second listener): it is allowed by the
    /// SSRF policy and counts as "own" for the loop check, like the first.
    pub fn add_own_addr(&mut self, addr: SocketAddr) {
        self.config.own_addrs.push(addr);
        self.policy.allow.push(addr);
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
    /// made of `random_key`. Returns its two ids and its secret. Checked in this order:
    /// the topic name, the topic's endpoint count, the URL, the server's own address, the
    /// SSRF policy (IP literals), the secret.
    pub fn add(
        &mut self,
        topic: &str,
        url: &str,
        secret: Option<&str>,
        random_key: &[u8; 32],
    ) -> Result<Registered, RegisterError> {
        let (url, secret) = self.check(topic, url, secret, random_key)?;
        let endpoint = self.engine.add_endpoint(url, secret.clone());
        let id = self.insert(endpoint, topic, &secret);
        Ok(Registered {
            endpoint,
            id,
            secret,
        })
    }

    /// The checks of [`Registry::add`]: the URL and the secret to register.
    pub(super) fn check(
        &self,
        topic: &str,
        url: &str,
        secret: Option<&str>,
        random_key: &[u8; 32],
    ) -> Result<(Url, Secret), RegisterError> {
        if !valid_topic(topic) {
            return Err(RegisterError::BadTopic);
        }
        let max = self.config.max_per_topic;
        if self.per_topic.get(topic).copied().unwrap_or(0) >= max {
            return Err(RegisterError::TooManyOnTopic(max));
        }
        let url = Url::parse(url).map_err(RegisterError::BadUrl)?;
        if url.tls && !self.config.https {
            return Err(RegisterError::BadUrl(UrlError::HttpsUnsupported));
        }
        let own = self.config.own_addrs.iter().any(|a| points_at(&url, *a));
        if own && self.config.self_path.as_deref() != Some(url.path()) {
            return Err(RegisterError::OwnAddress(self.config.self_path.clone()));
        }
        if let Host::Ip(ip) = url.host {
            ssrf::check(SocketAddr::new(ip, url.port), &self.policy)
                .map_err(RegisterError::Refused)?;
        }
        let secret = match secret {
            Some(s) => Secret::parse(s),
            None => Secret::from_bytes(random_key),
        }
        .map_err(RegisterError::BadSecret)?;
        Ok((url, secret))
    }

    fn insert(&mut self, endpoint: EndpointId, topic: &str, secret: &Secret) -> HookId {
        let id = HookId::derive(secret.as_bytes(), endpoint);
        let entry = Entry {
            topic: topic.into(),
            id,
            live: true,
            messages: 0,
        };
        self.entries.insert(endpoint, entry);
        self.by_id.insert(id, endpoint);
        *self.per_topic.entry(topic.into()).or_default() += 1;
        id
    }

    /// Endpoints registered for `topic` (removed ones not counted).
    pub fn count_on(&self, topic: &str) -> usize {
        self.per_topic.get(topic).copied().unwrap_or(0)
    }

    /// Registers a stored registration again after a restart, under its old `id`, with
    /// its raw signing key and disabled flag (see [`Engine::restore_endpoint`]); its public
    /// id comes out the same as before, being derived from those two. Call it for every
    /// registration before [`Registry::add`], then [`Registry::set_next_endpoint_id`].
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
        if url.tls && !self.config.https {
            return Err(invalid(RegisterError::BadUrl(UrlError::HttpsUnsupported)));
        }
        let secret =
            Secret::from_bytes(secret).map_err(|e| invalid(RegisterError::BadSecret(e)))?;
        self.engine
            .restore_endpoint(id, url, secret.clone(), disabled)
            .map_err(RestoreHookError::Id)?;
        self.insert(id, topic, &secret);
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
        self.count_message(msg.endpoint);
        self.engine.restore_message(msg, now)
    }

    /// One more message of `endpoint` will get a `Finished`.
    fn count_message(&mut self, endpoint: EndpointId) {
        if let Some(e) = self.entries.get_mut(&endpoint) {
            e.messages += 1;
        }
    }

    /// Removes the endpoint of `topic` whose public id is `id` (the text form of a
    /// [`HookId`]); its messages fail (`Finished` actions follow). Returns the endpoint
    /// removed, `None` when `id` is not the id of a registration for `topic`.
    pub fn remove(&mut self, topic: &str, id: &str, now: Instant) -> Option<EndpointId> {
        let id = id.parse::<HookId>().ok()?;
        let endpoint = *self.by_id.get(&id)?;
        self.remove_endpoint(topic, endpoint, now)
            .then_some(endpoint)
    }

    /// Removes `endpoint` if it is registered for `topic` (see [`Registry::remove`]);
    /// false when it is not.
    pub fn remove_endpoint(&mut self, topic: &str, endpoint: EndpointId, now: Instant) -> bool {
        match self.entries.get(&endpoint) {
            Some(e) if e.live && *e.topic == *topic => {}
            _ => return false,
        }
        self.retire(endpoint);
        self.engine.remove_endpoint(endpoint, now);
        true
    }

    /// Takes `endpoint` out of the live registrations; what is left of it goes with its
    /// last message.
    fn retire(&mut self, endpoint: EndpointId) {
        let Some(e) = self.entries.get_mut(&endpoint) else {
            return;
        };
        if !e.live {
            return;
        }
        e.live = false;
        self.by_id.remove(&e.id);
        if let Some(n) = self.per_topic.get_mut(&e.topic) {
            *n -= 1;
            if *n == 0 {
                self.per_topic.remove(&e.topic);
            }
        }
        if e.messages == 0 {
            self.entries.remove(&endpoint);
        }
    }

    /// Removes every endpoint (the server stops): every message gets its outcome, failed
    /// with `error` unless an attempt in flight delivers it, which still names its
    /// endpoint's topic and public id.
    pub fn remove_all(&mut self, now: Instant, error: &str) {
        let ids: Vec<EndpointId> = self.engine.endpoints().map(|(id, _)| id).collect();
        for id in ids {
            self.retire(id);
            self.engine.remove_endpoint_because(id, now, error);
        }
    }

    /// The registrations among the endpoints `ids`, in that order, their URLs without the
    /// query string.
    pub fn list<'a>(&'a self, ids: &'a [EndpointId]) -> impl Iterator<Item = Listed> + 'a {
        ids.iter().filter_map(|&endpoint| {
            let entry = self.entries.get(&endpoint).filter(|e| e.live)?;
            let info = self.engine.endpoint(endpoint)?;
            Some(Listed {
                endpoint,
                id: entry.id,
                url: info.url.without_query(),
                disabled: info.disabled,
            })
        })
    }

    /// The topic endpoint `id` is registered for (`None` once it is removed).
    pub fn topic_of(&self, id: EndpointId) -> Option<&str> {
        let entry = self.entries.get(&id).filter(|e| e.live)?;
        Some(&entry.topic)
    }

    /// The public id of endpoint `id` (kept after a removal until its last outcome).
    pub fn hook_id(&self, id: EndpointId) -> Option<HookId> {
        self.entries.get(&id).map(|e| e.id)
    }

    /// The endpoint whose public id is `id`, if it is registered.
    pub fn endpoint_of(&self, id: HookId) -> Option<EndpointId> {
        self.by_id.get(&id).copied()
    }

    /// The secrets of registrations whose URL points at `local` itself (the rule of
    /// "Limits on registrations" in the module docs).
    pub fn own_secrets(&self, local: SocketAddr) -> Vec<Secret> {
        let endpoints = self.engine.endpoints();
        endpoints
            .filter(|(_, e)| points_at(&e.url, local))
            .map(|(_, e)| e.secret.clone())
            .collect()
    }
}

/// Whether `url` reaches the server listening at `local` (see the module docs).
fn points_at(url: &Url, local: SocketAddr) -> bool {
    if url.port != local.port() {
        return false;
    }
    let me = local.ip().to_canonical();
    // Listening on loopback or on every address: reachable through every loopback name.
    let loopback = me.is_loopback() || me.is_unspecified();
    match &url.host {
        Host::Ip(ip) => {
            let ip = ip.to_canonical();
            ip == me || (loopback && (ip.is_loopback() || ip.is_unspecified()))
        }
        Host::Name(n) => loopback && (n == "localhost" || n.ends_with(".localhost")),
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
        let config = RegistryConfig {
            own_addrs: vec!["127.0.0.1:8080".parse().unwrap()],
            self_path: Some("/in".into()),
            ..RegistryConfig::default()
        };
        let engine = Engine::new(EngineConfig::default());
        Registry::new(engine, policy, "p".into(), config)
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
        assert!(err(&mut r, "t", "ftp://a/")
            .to_string()
            .starts_with("bad url: "));
        // https: accepted when the build has TLS, refused with the reason when not.
        let https = r.add("t", "https://a/", None, &key);
        assert_eq!(https.is_ok(), cfg!(feature = "tls"));
        let mut plain_only = registry();
        plain_only.config.https = false;
        assert_eq!(
            err(&mut plain_only, "t", "https://a/"),
            RegisterError::BadUrl(UrlError::HttpsUnsupported)
        );
        assert!(matches!(
            err(&mut r, "t", "http://10.0.0.1/"),
            RegisterError::Refused(_)
        ));
        let bad = r.add("t", "http://a/", Some("whsec_!"), &key).unwrap_err();
        assert!(bad.to_string().starts_with("bad secret: "), "{bad}");
        // The server's own address is allowed for its self path only, and a generated
        // secret is made of the key.
        let own = r.add("t", "http://127.0.0.1:8080/topics/t", None, &key);
        assert_eq!(own, Err(RegisterError::OwnAddress(Some("/in".into()))));
        let reg = r.add("t", "http://127.0.0.1:8080/in", None, &key).unwrap();
        assert_eq!(reg.secret, Secret::from_bytes(&key).unwrap());
        assert_eq!(r.topic_of(reg.endpoint), Some("t"));
        assert_eq!(reg.id, HookId::derive(&key, reg.endpoint));
    }

    #[test]
    fn publish_list_remove() {
        let mut r = registry();
        let t = Instant::now();
        let ra = (r.add("t", "http://example.com/a?token=s3cret", None, &[2; 32])).unwrap();
        let rb = r
            .add("t", "http://93.184.215.14:81/b", None, &[3; 32])
            .unwrap();
        let (a, b) = (ra.endpoint, rb.endpoint);
        let listed: Vec<Listed> = r.list(&[a, b]).collect();
        let want = |r: &Registered, url: &str| Listed {
            endpoint: r.endpoint,
            id: r.id,
            url: url.into(),
            disabled: false,
        };
        assert_eq!(
            listed,
            [
                want(&ra, "http://example.com/a"),
                want(&rb, "http://93.184.215.14:81/b")
            ]
        );
        assert_eq!(r.endpoint_of(ra.id), Some(a));
        let ev = TopicEvent {
            id: 1,
            event: None,
            data: "x".into(),
            json: false,
            published_ms: 0,
        };
        assert_eq!(r.publish("t", &[a, b], &ev, 0, t), 2);
        assert_eq!(r.publish("nobody", &[], &ev, 0, t), 0);
        let (mut dests, mut attempts) = (Vec::new(), Vec::new());
        while let Some(action) = r.poll_action(t, 9) {
            let HookAction::Send { job, to, .. } = action else {
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
        // Removal goes by the public id, on its own topic only; the internal number is
        // not a name for it.
        let (ida, idb) = (ra.id.to_string(), rb.id.to_string());
        assert_eq!(r.remove("other", &ida, t), None);
        assert_eq!(r.remove("t", "nonsense", t), None);
        assert_eq!(r.remove("t", &a.to_string(), t), None);
        assert_eq!(r.remove("t", &ida.to_uppercase(), t), None);
        assert_eq!(r.remove("t", &ida, t), Some(a));
        assert_eq!(r.remove("t", &ida, t), None, "once");
        assert_eq!(r.remove("t", &idb, t), Some(b));
        assert_eq!(r.list(&[a, b]).count(), 0);
        assert_eq!(r.topic_of(a), None);
        assert_eq!(r.endpoint_of(ra.id), None);
        // The two messages in flight end when their attempts do.
        for a in attempts {
            let result = AttemptResult::Io("cut".into());
            r.engine_mut().attempt_finished(a, result, t, 0.5);
        }
        let mut finished = Vec::new();
        while let Some(action) = r.poll_action(t, 9) {
            let HookAction::Finished {
                id, topic, outcome, ..
            } = action
            else {
                panic!("{action:?}")
            };
            // The registration is gone, yet its outcomes still name it.
            assert_eq!(topic, "t");
            assert!(matches!(outcome, Outcome::Failed { .. }), "{outcome:?}");
            finished.push(id);
        }
        assert_eq!(finished, [Some(ra.id), Some(rb.id)]);
        // Its last outcome given, nothing of it is kept.
        assert!(r.entries.is_empty() && r.by_id.is_empty() && r.per_topic.is_empty());
        assert_eq!(r.hook_id(a), None);
    }

    #[test]
    fn a_removed_endpoint_is_kept_only_until_its_last_outcome() {
        let mut r = registry();
        let t = Instant::now();
        let reg = r.add("t", "http://example.com/a", None, &[2; 32]).unwrap();
        let ev = TopicEvent {
            id: 1,
            event: None,
            data: "x".into(),
            json: false,
            published_ms: 0,
        };
        for _ in 0..3 {
            r.publish("t", &[reg.endpoint], &ev, 0, t);
        }
        // A message for an endpoint this registry never had: no id, no topic.
        let stranger = EndpointId::from_u64(999);
        r.publish("t", &[stranger], &ev, 0, t);
        // A removal with nothing in flight: its three queued messages fail now.
        assert_eq!(r.remove("t", &reg.id.to_string(), t), Some(reg.endpoint));
        assert_eq!(r.hook_id(reg.endpoint), Some(reg.id), "until the outcomes");
        let mut named = Vec::new();
        while let Some(action) = r.poll_action(t, 9) {
            let HookAction::Finished { id, topic, .. } = action else {
                panic!("{action:?}")
            };
            named.push((id, topic));
        }
        let ours = (Some(reg.id), "t".to_string());
        let theirs = (None, String::new());
        assert_eq!(named, [theirs, ours.clone(), ours.clone(), ours]);
        assert_eq!(r.hook_id(reg.endpoint), None);
        assert!(r.entries.is_empty());
        // A registration removed with no message at all leaves nothing at once.
        let reg = r.add("t", "http://example.com/b", None, &[3; 32]).unwrap();
        r.remove("t", &reg.id.to_string(), t).unwrap();
        assert!(r.entries.is_empty() && r.by_id.is_empty());
        // Shutting down: outcomes still name their registration.
        let reg = r.add("t", "http://example.com/c", None, &[4; 32]).unwrap();
        r.publish("t", &[reg.endpoint], &ev, 0, t);
        r.remove_all(t, "server stopped");
        let Some(HookAction::Finished { id, topic, .. }) = r.poll_action(t, 9) else {
            panic!("its outcome")
        };
        assert_eq!((id, topic.as_str()), (Some(reg.id), "t"));
        assert!(r.entries.is_empty() && r.count_on("t") == 0);
    }

    #[test]
    fn at_most_max_per_topic_endpoints_per_topic() {
        let mut r = registry();
        let t = Instant::now();
        let ids: Vec<HookId> = (0..16)
            .map(|i| r.add("t", &format!("http://h{i}.example/"), None, &[1; 32]))
            .map(|a| a.unwrap().id)
            .collect();
        assert_eq!(r.count_on("t"), 16);
        let full = r.add("t", "http://more.example/", None, &[1; 32]);
        assert_eq!(full, Err(RegisterError::TooManyOnTopic(16)));
        assert_eq!(
            full.unwrap_err().to_string(),
            "too many webhooks on this topic (16)"
        );
        // Other topics are not affected; a removal makes room again.
        r.add("u", "http://more.example/", None, &[1; 32]).unwrap();
        assert!(r.remove("t", &ids[3].to_string(), t).is_some());
        assert_eq!(r.count_on("t"), 15);
        r.add("t", "http://more.example/", None, &[1; 32]).unwrap();
        assert!(r.add("t", "http://x.example/", None, &[1; 32]).is_err());
        // Restored registrations are kept even past the limit (it may have been lowered).
        r.restore(
            EndpointId::from_u64(900),
            "t",
            "http://old.example/",
            &[2; 32],
            false,
        )
        .unwrap();
        assert_eq!(r.count_on("t"), 17);
        for id in &ids {
            r.remove("t", &id.to_string(), t);
        }
        assert_eq!(r.count_on("t"), 2);
        assert_eq!(r.count_on("nobody"), 0);
    }

    fn limited(local: &str, self_path: Option<&str>) -> Registry {
        let local: SocketAddr = local.parse().unwrap();
        let policy = Policy {
            allow_private: true,
            allow: vec![local],
        };
        let config = RegistryConfig {
            own_addrs: vec![local],
            self_path: self_path.map(str::to_owned),
            ..RegistryConfig::default()
        };
        let engine = Engine::new(EngineConfig::default());
        Registry::new(engine, policy, "p".into(), config)
    }

    #[test]
    fn the_servers_own_address_only_for_the_self_path() {
        let only = |p: &str| RegisterError::OwnAddress(Some(p.into()));
        /// Listening address, self path, target, verdict.
        type Row<'a> = (&'a str, Option<&'a str>, &'a str, Result<(), RegisterError>);
        let table: &[Row] = &[
            (
                "127.0.0.1:8080",
                Some("/hooks/receive"),
                "http://127.0.0.1:8080/hooks/receive",
                Ok(()),
            ),
            (
                "127.0.0.1:8080",
                Some("/hooks/receive"),
                "http://127.0.0.1:8080/hooks/receive?a=1",
                Ok(()),
            ),
            (
                "127.0.0.1:8080",
                Some("/hooks/receive"),
                "http://localhost:8080/hooks/receive",
                Ok(()),
            ),
            (
                "127.0.0.1:8080",
                Some("/hooks/receive"),
                "http://127.0.0.1:8080/topics/loop",
                Err(only("/hooks/receive")),
            ),
            (
                "127.0.0.1:8080",
                Some("/hooks/receive"),
                "http://127.0.0.1:8080/hooks/receive/",
                Err(only("/hooks/receive")),
            ),
            (
                "127.0.0.1:8080",
                Some("/hooks/receive"),
                "http://127.0.0.1:8080/hooks/Receive",
                Err(only("/hooks/receive")),
            ),
            (
                "127.0.0.1:8080",
                Some("/hooks/receive"),
                "http://127.0.0.1:8080/hooks/%72eceive",
                Err(only("/hooks/receive")),
            ),
            (
                "127.0.0.1:8080",
                Some("/hooks/receive"),
                "http://127.0.0.1:8080",
                Err(only("/hooks/receive")),
            ),
            (
                "127.0.0.1:8080",
                None,
                "http://127.0.0.1:8080/hooks/receive",
                Err(RegisterError::OwnAddress(None)),
            ),
            // every name of loopback, with the port
            (
                "127.0.0.1:8080",
                None,
                "http://LocalHost:8080/topics/loop",
                Err(RegisterError::OwnAddress(None)),
            ),
            (
                "127.0.0.1:8080",
                None,
                "http://localhost.:8080/x",
                Err(RegisterError::OwnAddress(None)),
            ),
            (
                "127.0.0.1:8080",
                None,
                "http://hub.localhost:8080/x",
                Err(RegisterError::OwnAddress(None)),
            ),
            (
                "127.0.0.1:8080",
                None,
                "http://127.0.0.2:8080/x",
                Err(RegisterError::OwnAddress(None)),
            ),
            (
                "127.0.0.1:8080",
                None,
                "http://[::1]:8080/x",
                Err(RegisterError::OwnAddress(None)),
            ),
            (
                "127.0.0.1:8080",
                None,
                "http://[::ffff:127.0.0.1]:8080/x",
                Err(RegisterError::OwnAddress(None)),
            ),
            (
                "127.0.0.1:8080",
                None,
                "http://0.0.0.0:8080/x",
                Err(RegisterError::OwnAddress(None)),
            ),
            (
                "[::1]:8080",
                None,
                "http://127.0.0.1:8080/x",
                Err(RegisterError::OwnAddress(None)),
            ),
            // listening on every address: loopback reaches it too
            (
                "0.0.0.0:8080",
                None,
                "http://127.0.0.1:8080/x",
                Err(RegisterError::OwnAddress(None)),
            ),
            (
                "[::]:8080",
                None,
                "http://localhost:8080/x",
                Err(RegisterError::OwnAddress(None)),
            ),
            // a specific address: only that one is the server
            (
                "192.168.1.5:8080",
                None,
                "http://192.168.1.5:8080/x",
                Err(RegisterError::OwnAddress(None)),
            ),
            (
                "192.168.1.5:8080",
                None,
                "http://[::ffff:192.168.1.5]:8080/x",
                Err(RegisterError::OwnAddress(None)),
            ),
            ("192.168.1.5:8080", None, "http://127.0.0.1:8080/x", Ok(())),
            ("192.168.1.5:8080", None, "http://localhost:8080/x", Ok(())),
            // another port or host is someone else
            ("127.0.0.1:8080", None, "http://127.0.0.1:8081/x", Ok(())),
            (
                "127.0.0.1:80",
                None,
                "http://localhost/x",
                Err(RegisterError::OwnAddress(None)),
            ),
            ("127.0.0.1:8080", None, "http://example.com:8080/x", Ok(())),
            ("127.0.0.1:8080", None, "http://localhostx:8080/x", Ok(())),
        ];
        for (local, self_path, url, want) in table {
            let mut r = limited(local, *self_path);
            let got = r.add("t", url, None, &[3; 32]).map(|_| ());
            assert_eq!(&got, want, "{local} {self_path:?} {url}");
        }
        let msg = |e: RegisterError| e.to_string();
        assert_eq!(
            msg(only("/hooks/receive")),
            "the server's own address is allowed only for /hooks/receive"
        );
        assert_eq!(
            msg(RegisterError::OwnAddress(None)),
            "the server's own address is not allowed as a webhook target"
        );
    }

    #[test]
    fn the_own_address_check_does_not_depend_on_the_ssrf_policy() {
        // allow_private opens loopback to the SSRF guard; the server itself stays closed.
        let mut r = limited("127.0.0.1:8080", None);
        assert!(r.policy().allow_private);
        let e = r.add("t", "http://127.0.0.1:8080/topics/t", None, &[3; 32]);
        assert_eq!(e, Err(RegisterError::OwnAddress(None)));
        // Without own addresses (the default), nothing is the server's own.
        let policy = Policy {
            allow_private: true,
            allow: vec![],
        };
        let engine = Engine::new(EngineConfig::default());
        let mut r = Registry::new(engine, policy, "p".into(), RegistryConfig::default());
        r.add("t", "http://127.0.0.1:8080/topics/t", None, &[3; 32])
            .unwrap();
    }

    #[test]
    fn public_ids_survive_a_restart() {
        // Before: a registration with a generated key. After: the store gives back its
        // number and key, and the same public id names it.
        let mut before = registry();
        let reg = before
            .add("t", "http://example.com/a", None, &[6; 32])
            .unwrap();
        let mut after = registry();
        let key = reg.secret.as_bytes().to_vec();
        after
            .restore(reg.endpoint, "t", "http://example.com/a", &key, false)
            .unwrap();
        assert_eq!(after.hook_id(reg.endpoint), Some(reg.id));
        let listed: Vec<HookId> = after.list(&[reg.endpoint]).map(|l| l.id).collect();
        assert_eq!(listed, [reg.id]);
        let t = Instant::now();
        assert_eq!(
            after.remove("t", &reg.id.to_string(), t),
            Some(reg.endpoint)
        );
        // Ids differ between endpoints even with one secret (numbers differ).
        let mut r = registry();
        let secret = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw";
        let a = r.add("t", "http://example.com/a", Some(secret), &[0; 32]);
        let b = r.add("t", "http://example.com/a", Some(secret), &[0; 32]);
        assert_ne!(a.unwrap().id, b.unwrap().id);
    }

    #[test]
    fn id_prefixes() {
        assert_eq!(Registry::id_prefix(&[0, 25, 26, 35, 36, 255]), "az09ad");
    }

    #[test]
    fn own_secrets_match_the_local_address() {
        let mut r = registry();
        let local: SocketAddr = "127.0.0.1:8080".parse().unwrap();
        let own = (r.add("t", "http://127.0.0.1:8080/in", None, &[4; 32]))
            .unwrap()
            .secret;
        let mut allow = r.policy().clone();
        allow.allow_private = true;
        r.policy = allow;
        let named = (r.add("t", "http://localhost:8080/in", None, &[5; 32]))
            .unwrap()
            .secret;
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
            r.restore(id, "t", "ftp://a/", &key, false),
            Err(RestoreHookError::Invalid(RegisterError::BadUrl(_)))
        ));
        // A build without TLS does not take back an https endpoint it cannot deliver to.
        let mut plain_only = registry();
        plain_only.config.https = false;
        assert_eq!(
            plain_only.restore(id, "t", "https://a/", &key, false),
            bad(RegisterError::BadUrl(UrlError::HttpsUnsupported))
        );
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
        assert_eq!(r.count_on("t"), 1, "the duplicate was not counted");
        r.set_next_endpoint_id(7);
        let new = r.add("t", url, None, &[9; 32]).unwrap().endpoint;
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
