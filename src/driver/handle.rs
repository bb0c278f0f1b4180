//! The cross-thread [`Handle`]: the only way into the loop from another thread.
//!
//! Commands go through an unbounded `std::sync::mpsc` channel and a `mio::Waker` wakes the
//! loop. Code running inside the loop never uses this: callbacks get a
//! [`Ctx`](crate::Ctx) that acts directly.

use std::sync::mpsc::Sender;
use std::sync::Arc;

use mio::Waker;

use super::ctx::Ctx;
use crate::api::ConnId;

/// A closure run on the loop thread with a context.
pub(crate) type LoopJob = Box<dyn FnOnce(&mut Ctx<'_>) + Send>;

/// What another thread asks the loop to do.
pub(crate) enum Command {
    Publish {
        topic: String,
        event: Option<String>,
        data: String,
    },
    SendText(ConnId, String),
    SendBinary(ConnId, Vec<u8>),
    Ping(ConnId, Vec<u8>),
    CloseWs(ConnId, u16, String),
    Close(ConnId),
    Run(LoopJob),
    Stop,
    /// The resolver thread's answer to request `n`.
    Resolved(u64, Result<Vec<std::net::SocketAddr>, String>),
}

/// A `Send + Clone` handle that injects work into a running [`Server`](crate::Server)
/// from any thread.
///
/// Every method returns `false` once the [`Server`](crate::Server) has been dropped (the
/// command could not be delivered); otherwise the command runs on the loop thread soon
/// after (commands sent after `run` returned, to a server not yet dropped, are not run).
#[derive(Clone)]
pub struct Handle {
    pub(crate) tx: Sender<Command>,
    pub(crate) waker: Arc<Waker>,
}

impl std::fmt::Debug for Handle {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Handle")
    }
}

impl Handle {
    fn send(&self, cmd: Command) -> bool {
        self.tx.send(cmd).is_ok() && self.waker.wake().is_ok()
    }

    /// Publishes an event to `topic` (errors such as a bad topic name are logged).
    /// Use [`Handle::run`] with [`Ctx::publish`](crate::Ctx::publish) to see the result.
    pub fn publish(&self, topic: &str, event: Option<&str>, data: &str) -> bool {
        self.send(Command::Publish {
            topic: topic.to_owned(),
            event: event.map(str::to_owned),
            data: data.to_owned(),
        })
    }

    /// Sends a text message to a WebSocket connection.
    pub fn send_text(&self, conn: ConnId, text: &str) -> bool {
        self.send(Command::SendText(conn, text.to_owned()))
    }

    /// Sends a binary message to a WebSocket connection.
    pub fn send_binary(&self, conn: ConnId, data: &[u8]) -> bool {
        self.send(Command::SendBinary(conn, data.to_vec()))
    }

    /// Sends a ping (at most 125 bytes) to a WebSocket connection.
    pub fn ping(&self, conn: ConnId, data: &[u8]) -> bool {
        self.send(Command::Ping(conn, data.to_vec()))
    }

    /// Starts a WebSocket's closing handshake with `code` and `reason`.
    pub fn close_ws(&self, conn: ConnId, code: u16, reason: &str) -> bool {
        self.send(Command::CloseWs(conn, code, reason.to_owned()))
    }

    /// Closes a connection (a WebSocket with 1000 and the closing handshake).
    pub fn close(&self, conn: ConnId) -> bool {
        self.send(Command::Close(conn))
    }

    /// Runs `f` on the loop thread with a context: anything a callback can do.
    pub fn run(&self, f: impl FnOnce(&mut Ctx<'_>) + Send + 'static) -> bool {
        self.send(Command::Run(Box::new(f)))
    }

    /// Stops the server gracefully: stop accepting, flush what is queued (bounded by the
    /// configured stop timeout), close every connection, return from
    /// [`Server::run`](crate::Server::run).
    pub fn stop(&self) -> bool {
        self.send(Command::Stop)
    }
}
