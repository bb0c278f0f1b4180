//! Webhook registrations across servers: written to Redis before the reply, announced
//! (`+<id>`, `-<id>`), loaded at every (re)connect, written again when Redis lost its data.

use std::collections::HashSet;

use log::{debug, warn};

use super::super::super::{Core, SubKey};
use super::super::Tag;
use super::HookOp;
use crate::api::{ConnId, WebhookCreated, WebhookError};
use crate::proto::backplane::hooks::{OutboxEntry, Registration};
use crate::proto::http1::Response;
use crate::proto::resp::{Command, Value};
use crate::proto::webhook::EndpointId;

impl Core {
    /// The epoch changed: Redis lost its data. The registrations this server knows are
    /// written again (the other servers do the same), so webhooks keep their messages.
    pub(super) fn bp_rewrite_registrations(&mut self) {
        let Some(b) = self.bp.as_ref() else { return };
        let endpoints = self.hooks.reg.engine().endpoints();
        let mut cmds = Vec::new();
        for (id, e) in endpoints {
            let Some(topic) = self.hooks.reg.topic_of(id) else {
                continue;
            };
            let value = Registration {
                topic: topic.into(),
                url: e.url.to_string(),
                secret: e.secret.as_bytes().to_vec(),
            };
            let n = id.as_u64().to_string();
            cmds.push(
                Command::new("HSET")
                    .arg(b.keys.hooks())
                    .arg(&n)
                    .arg(value.encode()),
            );
            cmds.push(Command::new("SADD").arg(b.keys.topic_hooks(topic)).arg(&n));
        }
        warn!(
            "backplane: redis lost its data (new epoch): {} webhook registrations written again; \
             events and webhook messages it held are gone (resuming clients see the gap)",
            cmds.len() / 2
        );
        for cmd in &cmds {
            let _ = self.hook_cmd(cmd, HookOp::Other);
        }
    }

    pub(super) fn bp_load_one(&mut self, id: u64, waiting: Vec<OutboxEntry>) {
        let Some(b) = self.bp.as_mut() else { return };
        if !b.hooks.loading.insert(id) && waiting.is_empty() {
            return;
        }
        let cmd = Command::new("HGET").arg(b.keys.hooks()).arg(id.to_string());
        if self.hook_cmd(&cmd, HookOp::LoadOne(id, waiting)).is_err() {
            if let Some(b) = self.bp.as_mut() {
                b.hooks.loading.remove(&id);
            }
        }
    }

    /// Installs a registration read from Redis (one this server does not know).
    pub(super) fn bp_install(&mut self, id: u64, value: &[u8]) -> bool {
        let endpoint = EndpointId::from_u64(id);
        if self.hooks.reg.topic_of(endpoint).is_some() {
            return true;
        }
        let r = match Registration::decode(value) {
            Ok(r) => r,
            Err(e) => {
                warn!("backplane: registration {id} unreadable: {e}");
                return false;
            }
        };
        match self
            .hooks
            .reg
            .restore(endpoint, &r.topic, &r.url, &r.secret, false)
        {
            Ok(()) => {
                debug!("backplane: webhook endpoint {id} of {:?} loaded", r.topic);
                self.subs.subscribe(&r.topic, SubKey::Hook(endpoint), 0);
                true
            }
            Err(e) => {
                warn!("backplane: registration {id} refused here: {e}");
                false
            }
        }
    }

    /// After loading every registration: the ones this server knows that Redis no longer
    /// has were removed while it was away (their announcement missed).
    pub(super) fn bp_drop_unlisted(&mut self, listed: &HashSet<u64>) {
        let fresh = self
            .bp
            .as_ref()
            .map(|b| b.hooks.fresh.clone())
            .unwrap_or_default();
        let gone: Vec<(EndpointId, String)> = self
            .hooks
            .reg
            .engine()
            .endpoints()
            .filter(|(id, _)| !listed.contains(&id.as_u64()) && !fresh.contains(&id.as_u64()))
            .filter_map(|(id, _)| Some((id, self.hooks.reg.topic_of(id)?.to_owned())))
            .collect();
        for (id, topic) in gone {
            debug!("backplane: webhook endpoint {id} was removed while this server was away");
            if self.hooks.reg.remove_endpoint(&topic, id, self.now) {
                self.subs.unsubscribe(&topic, SubKey::Hook(id));
            }
        }
        self.drive_hooks();
    }

    /// Registers a webhook for every server: here at once, in Redis before the reply.
    pub(crate) fn bp_add_webhook(
        &mut self,
        topic: &str,
        url: &str,
        secret: Option<&str>,
    ) -> Result<WebhookCreated, WebhookError> {
        let ready = self.redis_up(crate::driver::redis::Role::Command);
        if !ready {
            return Err(WebhookError::Unavailable);
        }
        let mut key = [0u8; 32];
        rand::RngCore::fill_bytes(&mut rand::thread_rng(), &mut key);
        let endpoint = EndpointId::from_u64((rand::random::<u64>() >> 12).max(1));
        let reg = self.hooks.reg.add_as(endpoint, topic, url, secret, &key)?;
        self.subs.subscribe(topic, SubKey::Hook(endpoint), 0);
        if let Some(b) = self.bp.as_mut() {
            b.hooks.fresh.insert(endpoint.as_u64());
        }
        let Some(b) = self.bp.as_ref() else {
            return Err(WebhookError::Unavailable);
        };
        let value = Registration {
            topic: topic.into(),
            url: url.into(),
            secret: reg.secret.as_bytes().to_vec(),
        }
        .encode();
        let n = endpoint.as_u64().to_string();
        let hset = Command::new("HSET").arg(b.keys.hooks()).arg(&n).arg(value);
        let sadd = Command::new("SADD").arg(b.keys.topic_hooks(topic)).arg(&n);
        let announce = Command::new("PUBLISH")
            .arg(b.keys.hooks())
            .arg(format!("+{n}"));
        let sent = self.hook_cmd(&hset, HookOp::Other).is_ok()
            && self.hook_cmd(&sadd, HookOp::Other).is_ok()
            && self
                .hook_cmd(&announce, HookOp::Registered(endpoint, topic.into()))
                .map(|tag| {
                    if let Some(b) = self.bp.as_mut() {
                        b.hooks.last_reg = tag;
                    }
                })
                .is_ok();
        if !sent {
            self.forget_webhook(endpoint, topic);
            return Err(WebhookError::Unavailable);
        }
        debug!("backplane: webhook endpoint {n} registered for {topic:?}");
        let (id, secret) = (reg.id.to_string(), reg.secret.to_string());
        Ok(WebhookCreated { id, secret })
    }

    /// Removes a registration everywhere.
    pub(crate) fn bp_remove_webhook(&mut self, topic: &str, endpoint: EndpointId) {
        let Some(b) = self.bp.as_ref() else { return };
        let n = endpoint.as_u64().to_string();
        let cmds = [
            Command::new("HDEL").arg(b.keys.hooks()).arg(&n),
            Command::new("SREM").arg(b.keys.topic_hooks(topic)).arg(&n),
            Command::new("PUBLISH")
                .arg(b.keys.hooks())
                .arg(format!("-{n}")),
        ];
        for cmd in &cmds {
            if self.hook_cmd(cmd, HookOp::Other).is_err() {
                warn!("backplane: removing webhook {n} from redis failed: redis unavailable");
                return;
            }
        }
    }

    /// The mark to tell whether a callback registered a webhook.
    pub(crate) fn bp_mark(&self) -> Tag {
        self.bp.as_ref().map_or(0, |b| b.hooks.last_reg)
    }

    /// Holds `resp` until the registrations written since `mark` are in Redis.
    pub(crate) fn bp_hold_reply(
        &mut self,
        mark: Tag,
        conn: ConnId,
        resp: Response,
    ) -> Option<Response> {
        let Some(b) = self.bp.as_mut() else {
            return Some(resp);
        };
        if b.hooks.last_reg <= mark {
            return Some(resp);
        }
        b.hooks.holds.push((b.hooks.last_reg, conn, resp));
        None
    }
}

pub(super) fn parse_id(v: &Value) -> Option<u64> {
    std::str::from_utf8(v.as_bytes()?).ok()?.parse().ok()
}
