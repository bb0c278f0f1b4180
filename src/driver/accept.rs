//! Accepting connections: until `WouldBlock`, closing those over the connection limit at
//! once, and out of file descriptors retrying on one timer with a rate-limited warning.

use std::io;

use log::{debug, warn};

use super::{deadline, Core, TimerEv};

/// The most "accept failed" warnings: one per this interval, with a count.
const ACCEPT_WARN_EVERY: std::time::Duration = std::time::Duration::from_secs(1);

impl Core {
    /// Accepts on the plain listener, or on the TLS one (`tls`).
    pub(super) fn accept(&mut self, tls: bool) {
        loop {
            let listener = if tls {
                &self.tls_listener
            } else {
                &self.listener
            };
            let Some(listener) = listener.as_ref() else {
                return;
            };
            match listener.accept() {
                Ok((stream, peer)) => {
                    if self.live >= self.config.max_connections {
                        debug!("refusing {peer}: {} connections open", self.live);
                        continue;
                    }
                    self.add_conn(stream, peer, tls);
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => {
                    // E.g. EMFILE: the pending connection stays in the backlog; with
                    // edge-triggered readiness nothing would wake us for it, so retry,
                    // with one timer at a time however often the listener wakes us.
                    self.accept_failed(&e);
                    if !self.accept_retry {
                        self.accept_retry = true;
                        let at = deadline(self.now, std::time::Duration::from_millis(100));
                        self.timers.insert(at, TimerEv::AcceptRetry);
                    }
                    return;
                }
            }
        }
    }

    /// Counts a failed accept and warns at most once a second, with the count since the
    /// last warning: out of file descriptors, every wake-up fails again, and a line per
    /// failure would flood the log.
    fn accept_failed(&mut self, e: &io::Error) {
        let (count, since) = &mut self.accept_failures;
        *count += 1;
        let due = since.is_none_or(|t| self.now.saturating_duration_since(t) >= ACCEPT_WARN_EVERY);
        if due {
            warn!("accept failed {count} times since the last warning: {e}; retrying every 100ms");
            *count = 0;
            *since = Some(self.now);
        }
    }
}
