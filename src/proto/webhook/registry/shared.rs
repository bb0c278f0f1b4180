//! Registrations shared by several servers (the Redis backplane): endpoint ids chosen by
//! the caller, one message-id prefix for all.

use super::*;

impl Registry {
    /// [`Registry::add`] under an endpoint id chosen by the caller (the Redis backplane
    /// picks random ones, shared by every server); refused like a restore when `endpoint`
    /// is taken or 0.
    pub fn add_as(
        &mut self,
        endpoint: EndpointId,
        topic: &str,
        url: &str,
        secret: Option<&str>,
        random_key: &[u8; 32],
    ) -> Result<Registered, RegisterError> {
        let (url, secret) = self.check(topic, url, secret, random_key)?;
        if self
            .engine
            .restore_endpoint(endpoint, url, secret.clone(), false)
            .is_err()
        {
            return Err(RegisterError::IdTaken);
        }
        let id = self.insert(endpoint, topic, &secret);
        Ok(Registered {
            endpoint,
            id,
            secret,
        })
    }

    /// Names this registry's messages `msg_{prefix}_{n}` from now on (several servers
    /// sharing a backplane use one prefix, so that each knows the others' ids).
    pub fn set_id_prefix(&mut self, prefix: String) {
        self.prefix = prefix;
    }
}
