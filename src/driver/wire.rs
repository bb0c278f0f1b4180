//! The hub's own wire log: with the log target `pushwire::wire` enabled at trace level
//! (`PUSHWIRE_LOG=trace` in the hub), every connection's bytes are decoded by a
//! [`Tap`](crate::proto::tap::Tap) and logged one line per HTTP message, WebSocket frame or
//! SSE event, in the wire tap's format (see [`proto::tap`](crate::proto::tap)): `>` is what
//! the server received from its peer, `<` what it sent. Lines are labelled with the
//! connection's id (`conn#3.1`), or `webhook#N` for the webhook sender's client sockets.
//!
//! Whether the log is on is decided once, when the server is made (so a logger must be
//! installed before [`Server::bind`](crate::Server::bind)); when it is off nothing is kept
//! per connection and the read and write paths only test one `Option`. The bytes are the
//! plain ones (after TLS decryption, before encryption). Redis links are not decoded (RESP
//! is not in the tap); their byte counts are in the ordinary trace lines.

use std::collections::HashMap;
use std::io::IoSlice;

use crate::api::ConnId;
use crate::proto::out::{OutQueue, MAX_SLICES};
use crate::proto::tap::{Dir, Tap};

/// The log target of the decoded lines.
pub(crate) const TARGET: &str = "pushwire::wire";

/// What a tap belongs to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub(crate) enum WireKey {
    /// A slot of the connection table (accepted, or a dialed WebSocket).
    Conn(usize),
    /// A webhook client socket.
    Hook(usize),
}

/// The taps of the open connections, and the text their lines are written to.
#[derive(Debug, Default)]
pub(crate) struct WireLog {
    taps: HashMap<WireKey, Tap>,
    text: String,
}

impl WireLog {
    /// A wire log when its target is enabled at trace level, else `None`.
    pub(crate) fn if_enabled() -> Option<WireLog> {
        let on = log::log_enabled!(target: TARGET, log::Level::Trace);
        on.then(WireLog::default)
    }

    /// Starts the tap of connection `id` in slot `i`; `dialed` when this end is the client.
    pub(crate) fn open_conn(&mut self, i: usize, id: ConnId, dialed: bool) {
        let client = if dialed { Dir::Left } else { Dir::Right };
        let tap = Tap::with_label(id.to_string(), client);
        self.taps.insert(WireKey::Conn(i), tap);
    }

    /// Starts the tap of webhook client socket `idx` (this end sends the requests).
    pub(crate) fn open_hook(&mut self, idx: usize) {
        let tap = Tap::with_label(format!("webhook#{idx}"), Dir::Left);
        self.taps.insert(WireKey::Hook(idx), tap);
    }

    /// `bytes` were received (`Dir::Right`) or sent (`Dir::Left`) on `key`'s connection.
    pub(crate) fn saw(&mut self, key: WireKey, dir: Dir, bytes: &[u8]) {
        let Some(tap) = self.taps.get_mut(&key) else {
            return;
        };
        tap.feed(dir, bytes, &mut self.text);
        self.emit();
    }

    /// The first `n` bytes of `out` were written on `key`'s connection.
    pub(crate) fn wrote(&mut self, key: WireKey, out: &OutQueue, n: usize) {
        let Some(tap) = self.taps.get_mut(&key) else {
            return;
        };
        let mut slices = [IoSlice::new(&[]); MAX_SLICES];
        let count = out.io_slices(&mut slices);
        let mut left = n;
        for s in &slices[..count] {
            if left == 0 {
                break;
            }
            let take = left.min(s.len());
            tap.feed(Dir::Left, &s[..take], &mut self.text);
            left -= take;
        }
        self.emit();
    }

    /// `key`'s connection closed: what was cut short is said, and its tap dropped.
    pub(crate) fn close(&mut self, key: WireKey) {
        let Some(mut tap) = self.taps.remove(&key) else {
            return;
        };
        tap.eof(Dir::Right, &mut self.text);
        tap.eof(Dir::Left, &mut self.text);
        self.emit();
    }

    /// Logs the lines written so far, one record each.
    fn emit(&mut self) {
        for line in self.text.lines() {
            log::trace!(target: TARGET, "{line}");
        }
        self.text.clear();
    }
}
