//! Webhook host names, looked up on a resolver thread that answers through the loop's
//! waker, so a slow DNS server never stalls the loop; every lookup has the attempt's
//! timeout.

use std::net::{SocketAddr, ToSocketAddrs};
use std::sync::mpsc::{self, Sender};
use std::sync::Arc;

use log::{debug, trace, warn};
use mio::Waker;

use crate::api::Resolver;
use crate::driver::{deadline, Command, Core, TimerEv};
use crate::proto::webhook::{AttemptResult, HookJob, Host};

/// Starts the resolver thread: it answers `(n, host, port)` requests with
/// [`Command::Resolved`].
pub(super) fn spawn_resolver(
    resolver: Option<Resolver>,
    tx: Sender<Command>,
    waker: Arc<Waker>,
) -> mpsc::Sender<(u64, String, u16)> {
    let (req_tx, req_rx) = mpsc::channel::<(u64, String, u16)>();
    let spawned = std::thread::Builder::new()
        .name("pushwire-resolver".into())
        .spawn(move || {
            for (n, host, port) in req_rx {
                let result = match &resolver {
                    Some(r) => r(&host, port),
                    None => (host.as_str(), port).to_socket_addrs().map(|a| a.collect()),
                };
                let result = result.map_err(|e| format!("cannot resolve {host}: {e}"));
                if tx.send(Command::Resolved(n, result)).is_err() || waker.wake().is_err() {
                    break;
                }
            }
        });
    if let Err(e) = spawned {
        warn!("cannot start the resolver thread: {e}");
    }
    req_tx
}

impl Core {
    /// Sends `job` once the resolver thread has looked `name` up.
    pub(super) fn lookup(&mut self, job: HookJob, name: String, port: u16, tls: Option<Host>) {
        let (config, tx, waker) = (&self.hooks.config, &self.tx, &self.waker);
        let resolver_tx = (self.hooks.resolver_tx).get_or_insert_with(|| {
            spawn_resolver(config.resolver.clone(), tx.clone(), waker.clone())
        });
        self.hooks.next_resolve += 1;
        let n = self.hooks.next_resolve;
        trace!("resolving {name} (request {n})");
        if resolver_tx.send((n, name, port)).is_err() {
            let why = "resolver unavailable".into();
            return self.finish_attempt(job.attempt(), AttemptResult::ConnectFailed(why));
        }
        self.hooks.resolving.insert(n, (job, port, tls));
        // A lookup that never comes back still ends the attempt in time.
        let at = deadline(self.now, self.hooks.config.attempt_timeout);
        self.timers.insert(at, TimerEv::HookResolve(n));
    }

    /// Lookup `n` took the whole attempt time: the attempt times out (a late answer is ignored).
    pub(crate) fn hook_resolve_timer(&mut self, n: u64) {
        if let Some((job, ..)) = self.hooks.resolving.remove(&n) {
            debug!("webhook: name lookup {n} did not answer in time");
            self.finish_attempt(job.attempt(), AttemptResult::Timeout);
        }
    }

    /// The resolver thread answered request `n`.
    pub(crate) fn resolved(&mut self, n: u64, result: Result<Vec<SocketAddr>, String>) {
        let Some((job, port, tls)) = self.hooks.resolving.remove(&n) else {
            return;
        };
        match result {
            Ok(addrs) if !addrs.is_empty() => {
                let with_port = |a: &SocketAddr| SocketAddr::new(a.ip(), port);
                self.connect_to(job, addrs.iter().map(with_port).collect(), tls);
            }
            Ok(_) => {
                let why = "no address found".into();
                self.finish_attempt(job.attempt(), AttemptResult::ConnectFailed(why));
            }
            Err(e) => self.finish_attempt(job.attempt(), AttemptResult::ConnectFailed(e)),
        }
    }
}
