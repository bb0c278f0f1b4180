//! Webhooks across servers (see [`crate::proto::backplane::hooks`] for the keys and the
//! outbox): registrations go to Redis and are announced to every server; each outbox
//! message is taken by one server (`XREADGROUP`), attempted by the usual engine, and
//! acknowledged at its final outcome; a dead server's messages are taken over after the
//! claim timeout (`XAUTOCLAIM`) with the same `webhook-id`.

mod registrations;

use registrations::parse_id;

use std::collections::{HashMap, HashSet};
use std::rc::Rc;
use std::time::Instant;

use log::{debug, warn};

use super::super::{Core, SubKey};
use super::{Pending, Tag};
use crate::api::{ConnId, WebhookError};
use crate::proto::backplane::hooks::{self as bh, OutboxEntry};
use crate::proto::http1::Response;
use crate::proto::resp::{Command, Value};
use crate::proto::topic::TopicEvent;
use crate::proto::webhook::body::webhook_body;
use crate::proto::webhook::EndpointId;

/// Outbox entries read at a time.
const READ_COUNT: usize = 64;

/// What a webhook command's reply is for.
pub(super) enum HookOp {
    /// `XGROUP CREATE` (a `BUSYGROUP` error is fine).
    Group,
    /// `XREADGROUP` or `XAUTOCLAIM`.
    Read,
    /// `HGETALL` of the registrations.
    LoadAll,
    /// `GET` of the epoch key.
    Epoch,
    /// `XCLAIM ... JUSTID` of these entries.
    Refresh(Vec<String>),
    /// `HGET` of one registration, then the entries that waited for it.
    LoadOne(u64, Vec<OutboxEntry>),
    /// The last command of a registration's write: answer the held reply.
    Registered(EndpointId, String),
    /// Anything else (`XACK`, `XDEL`, `XCLAIM`, `SREM`, ...): only an error is logged.
    Other,
}

/// The webhook side of the backplane.
pub(crate) struct BpHooks {
    /// This server's consumer name in the group.
    consumer: String,
    /// The registry prefix every server of the backplane uses.
    id_prefix: String,
    /// A read is on its way; `again`: another is wanted after it.
    reading: bool,
    again: bool,
    /// The outbox entries this server holds, by `webhook-id`.
    held: HashMap<String, String>,
    /// Replies held until their registration is in Redis.
    holds: Vec<(Tag, ConnId, Response)>,
    /// The last registration tag sent.
    last_reg: Tag,
    /// When entries were last refreshed and claimed.
    last_claim: Option<Instant>,
    /// Endpoints being loaded (`HGET` on its way).
    loading: HashSet<u64>,
    /// Endpoints registered here since the last `HGETALL` was sent (not in its answer).
    fresh: HashSet<u64>,
    /// The epoch value seen last; `lost`: it changed (Redis lost its data), so the
    /// registrations this server knows are written again instead of reconciled.
    epoch: Option<Vec<u8>>,
    lost: bool,
}

impl BpHooks {
    pub(crate) fn new(prefix: &str) -> BpHooks {
        let digest = <sha1::Sha1 as sha1::Digest>::digest(prefix.as_bytes());
        let id_prefix = format!(
            "bp{:02x}{:02x}{:02x}{:02x}",
            digest[0], digest[1], digest[2], digest[3]
        );
        BpHooks {
            consumer: format!("node-{:016x}", rand::random::<u64>()),
            id_prefix,
            reading: false,
            again: false,
            held: HashMap::new(),
            holds: Vec::new(),
            last_reg: 0,
            last_claim: None,
            loading: HashSet::new(),
            fresh: HashSet::new(),
            epoch: None,
            lost: false,
        }
    }

    pub(crate) fn id_prefix(&self) -> &str {
        &self.id_prefix
    }
}

fn err_text(v: &Value) -> Option<String> {
    v.as_error()
        .map(|e| String::from_utf8_lossy(e).into_owned())
}

impl Core {
    fn hook_cmd(&mut self, cmd: &Command, op: HookOp) -> Result<Tag, ()> {
        let Some(b) = self.bp.as_mut() else {
            return Err(());
        };
        let tag = b.tag();
        match self.redis_send(tag, cmd) {
            Ok(()) => {
                if let Some(b) = self.bp.as_mut() {
                    b.pending.insert(tag, Pending::Hook(op));
                }
                Ok(tag)
            }
            Err(e) => {
                debug!("backplane: webhook command refused: {e}");
                Err(())
            }
        }
    }

    /// The command link is (again) up: the group, the registrations, the outbox.
    pub(super) fn bp_hooks_ready(&mut self) {
        let Some(b) = self.bp.as_mut() else { return };
        b.hooks.fresh.clear();
        let epoch = b.keys.epoch();
        let mine = format!("{:016x}", rand::random::<u64>());
        let set = Command::new("SET").arg(&epoch).arg(mine).arg("NX");
        let get = Command::new("GET").arg(&epoch);
        let group = bh::group_create(&b.keys);
        let all = Command::new("HGETALL").arg(b.keys.hooks());
        let _ = self.hook_cmd(&set, HookOp::Other);
        let _ = self.hook_cmd(&get, HookOp::Epoch);
        let _ = self.hook_cmd(&group, HookOp::Group);
        let _ = self.hook_cmd(&all, HookOp::LoadAll);
        self.bp_hooks_read();
    }

    /// Reads new outbox entries, unless a read is on its way.
    pub(super) fn bp_hooks_read(&mut self) {
        let Some(b) = self.bp.as_mut() else { return };
        if b.hooks.reading {
            b.hooks.again = true;
            return;
        }
        let cmd = bh::read_group(&b.keys, &b.hooks.consumer, READ_COUNT);
        if self.hook_cmd(&cmd, HookOp::Read).is_ok() {
            if let Some(b) = self.bp.as_mut() {
                b.hooks.reading = true;
                b.hooks.again = false;
            }
        }
    }

    /// Every third of the claim timeout: this server still works on its entries
    /// (`XCLAIM ... JUSTID`), and takes over those idle longer than the timeout.
    pub(super) fn bp_hooks_sweep(&mut self) {
        let now = self.now;
        let timeout = self.config.redis_claim_timeout;
        let Some(b) = self.bp.as_mut() else { return };
        if b.hooks
            .last_claim
            .is_some_and(|t| now.saturating_duration_since(t) < timeout / 3)
        {
            return;
        }
        b.hooks.last_claim = Some(now);
        let held: Vec<String> = b.hooks.held.values().cloned().collect();
        let ms = timeout.as_millis() as u64;
        let cmds: Vec<(Command, Vec<String>)> = held
            .chunks(100)
            .map(|c| {
                let ids: Vec<&str> = c.iter().map(String::as_str).collect();
                let cmd = bh::refresh(&b.keys, &b.hooks.consumer, &ids);
                (cmd, c.to_vec())
            })
            .collect();
        let claim = bh::autoclaim(&b.keys, &b.hooks.consumer, ms, READ_COUNT);
        for (cmd, ids) in cmds {
            let _ = self.hook_cmd(&cmd, HookOp::Refresh(ids));
        }
        let _ = self.hook_cmd(&claim, HookOp::Read);
        self.bp_hooks_read();
    }

    /// A message on the registrations channel (`+<id>`, `-<id>`) or the outbox's.
    pub(super) fn bp_hooks_push(&mut self, channel: &[u8], payload: &[u8]) {
        let Some(b) = self.bp.as_ref() else { return };
        if channel == b.keys.outbox_wake().as_bytes() {
            return self.bp_hooks_read();
        }
        let text = std::str::from_utf8(payload).unwrap_or("");
        let (sign, id) = text.split_at(text.len().min(1));
        let Ok(id) = id.parse::<u64>() else {
            return warn!("backplane: bad registration announcement {text:?}");
        };
        let endpoint = EndpointId::from_u64(id);
        let known = self.hooks.reg.topic_of(endpoint).map(str::to_owned);
        match (sign, known) {
            ("+", None) => self.bp_load_one(id, Vec::new()),
            ("-", Some(topic)) => {
                debug!("backplane: webhook endpoint {id} removed elsewhere");
                if self.hooks.reg.remove_endpoint(&topic, endpoint, self.now) {
                    self.subs.unsubscribe(&topic, SubKey::Hook(endpoint));
                    self.drive_hooks();
                }
            }
            _ => {}
        }
    }

    /// A webhook command's reply (`None`: it failed with the link).
    pub(super) fn bp_hooks_reply(&mut self, tag: Tag, op: HookOp, v: Option<Value>) {
        let error = v.as_ref().and_then(err_text);
        match op {
            HookOp::Group => {
                if let Some(e) = error.filter(|e| !e.starts_with("BUSYGROUP")) {
                    warn!("backplane: creating the outbox group failed: {e}");
                }
            }
            HookOp::Read => {
                if let Some(b) = self.bp.as_mut() {
                    b.hooks.reading = false;
                }
                match v.as_ref().map(bh::parse_entries) {
                    Some(Ok((entries, gone))) => {
                        let full = entries.len() >= READ_COUNT;
                        for entry in gone {
                            self.bp_hook_ack(&entry);
                        }
                        self.bp_take_entries(entries);
                        let again = self.bp.as_ref().is_some_and(|b| b.hooks.again);
                        if full || again {
                            self.bp_hooks_read();
                        }
                    }
                    Some(Err(e)) if e.to_string().contains("NOGROUP") => {
                        // Read before the group was made (a sweep at start), or Redis
                        // lost its data: the group is made again.
                        debug!("backplane: the outbox has no group yet: making it");
                        self.bp_hooks_ready();
                    }
                    Some(Err(e)) => warn!("backplane: reading the outbox failed: {e}"),
                    None => {}
                }
            }
            HookOp::LoadAll => {
                let pairs: Vec<(u64, Vec<u8>)> = match &v {
                    Some(Value::Array(items)) => items
                        .chunks(2)
                        .filter_map(|p| match p {
                            [k, v] => Some((parse_id(k)?, v.as_bytes()?.to_vec())),
                            _ => None,
                        })
                        .collect(),
                    Some(Value::Map(items)) => items
                        .iter()
                        .filter_map(|(k, v)| Some((parse_id(k)?, v.as_bytes()?.to_vec())))
                        .collect(),
                    _ => Vec::new(),
                };
                let lost = self
                    .bp
                    .as_mut()
                    .is_some_and(|b| std::mem::take(&mut b.hooks.lost));
                let mut listed = HashSet::new();
                for (id, value) in pairs {
                    listed.insert(id);
                    self.bp_install(id, &value);
                }
                if !lost && v.is_some() {
                    self.bp_drop_unlisted(&listed);
                }
            }
            HookOp::Epoch => {
                let now = v.as_ref().and_then(Value::as_bytes).map(<[u8]>::to_vec);
                let Some(b) = self.bp.as_mut() else { return };
                let before = std::mem::replace(&mut b.hooks.epoch, now.clone());
                if before.is_some() && before != now {
                    b.hooks.lost = true;
                    self.bp_rewrite_registrations();
                }
            }
            HookOp::Refresh(ids) => {
                let Some(Value::Array(kept)) = &v else { return };
                let kept: HashSet<&[u8]> = kept.iter().filter_map(Value::as_bytes).collect();
                let Some(b) = self.bp.as_mut() else { return };
                for entry in ids.iter().filter(|e| !kept.contains(e.as_bytes())) {
                    // Acknowledged elsewhere (another server took it over while this one
                    // was silent too long, and finished it): its outcome there counts.
                    warn!("backplane: outbox entry {entry} was finished by another server");
                    b.hooks.held.retain(|_, e| e != entry);
                }
            }
            HookOp::LoadOne(id, waiting) => {
                if let Some(b) = self.bp.as_mut() {
                    b.hooks.loading.remove(&id);
                }
                let Some(v) = v else { return };
                let known = match v.as_bytes() {
                    Some(value) => self.bp_install(id, value),
                    None => false,
                };
                for entry in waiting {
                    if known {
                        self.bp_take_entries(vec![entry]);
                    } else {
                        debug!(
                            "backplane: outbox entry {} for removed endpoint {id}",
                            entry.entry
                        );
                        self.bp_hook_ack(&entry.entry);
                    }
                }
            }
            HookOp::Registered(endpoint, topic) => {
                let failed = v.is_none() || error.is_some();
                if failed {
                    warn!("backplane: webhook registration not stored: {error:?}");
                    self.forget_webhook(endpoint, &topic);
                }
                let held = match self.bp.as_mut() {
                    Some(b) => {
                        let (ready, rest) = std::mem::take(&mut b.hooks.holds)
                            .into_iter()
                            .partition(|(t, ..)| *t <= tag);
                        b.hooks.holds = rest;
                        ready
                    }
                    None => Vec::new(),
                };
                for (_, conn, resp) in held {
                    let resp = if failed {
                        Response::text(503, format!("{}\n", WebhookError::Unavailable))
                    } else {
                        resp
                    };
                    self.respond_to(conn, &resp);
                }
            }
            HookOp::Other => {
                if let Some(e) = error {
                    warn!("backplane: webhook command failed: {e}");
                }
            }
        }
    }

    /// Queues the messages of outbox entries this server now holds.
    fn bp_take_entries(&mut self, entries: Vec<OutboxEntry>) {
        let now = self.now;
        let mut queued = 0;
        for e in entries {
            let endpoint = EndpointId::from_u64(e.endpoint);
            if self.hooks.reg.topic_of(endpoint).is_none() {
                // Not known here yet (its announcement may be on its way), or removed.
                self.bp_load_one(e.endpoint, vec![e]);
                continue;
            }
            let Some(b) = self.bp.as_mut() else { return };
            let Some(wid) = bh::webhook_id(&b.hooks.id_prefix, &e.entry) else {
                continue;
            };
            if b.hooks.held.contains_key(&wid) {
                continue;
            }
            b.hooks.held.insert(wid.clone(), e.entry.clone());
            let data = String::from_utf8_lossy(&e.data);
            let json = e.json && super::json_or_warn(&e.topic, e.id, &data);
            let ev = TopicEvent {
                id: e.id,
                event: e.event.map(Into::into),
                data: data.into(),
                json,
                published_ms: e.published_ms,
            };
            let mut body = Vec::new();
            webhook_body(&mut body, &e.topic, &ev, e.published_ms);
            let (wid, body): (Rc<str>, Rc<[u8]>) = (wid.into(), body.into());
            queued += self
                .hooks
                .reg
                .enqueue_prepared(&[endpoint], &wid, &body, now);
        }
        if queued > 0 {
            debug!("backplane: took {queued} webhook messages from the outbox");
            self.drive_hooks();
        }
    }

    /// A message reached its final outcome: its outbox entry is done (unless the server
    /// is stopping: then another server takes it over after the claim timeout).
    pub(crate) fn bp_hook_done(&mut self, webhook_id: &str) {
        if self.stopping.is_some() {
            return;
        }
        let Some(entry) = self
            .bp
            .as_mut()
            .and_then(|b| b.hooks.held.remove(webhook_id))
        else {
            return;
        };
        self.bp_hook_ack(&entry);
    }

    fn bp_hook_ack(&mut self, entry: &str) {
        let Some(b) = self.bp.as_ref() else { return };
        let (ack, del) = (bh::ack(&b.keys, entry), bh::delete(&b.keys, entry));
        if self.hook_cmd(&ack, HookOp::Other).is_err()
            || self.hook_cmd(&del, HookOp::Other).is_err()
        {
            warn!("backplane: outbox entry {entry} not acknowledged (redis unavailable): it will be attempted again");
        }
    }
}
