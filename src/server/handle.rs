//! The cross-thread [`Handle`]: the only way into the loop from another thread.
//!
//! Commands go through an unbounded `std::sync::mpsc` channel and a `mio::Waker` wakes the
//! loop. Code running inside the loop never uses this: callbacks get a
//! [`Ctx`](crate::Ctx) that acts directly.

use std::any::Any;
use std::sync::mpsc::Sender;
use std::sync::Arc;

use mio::Waker;

use super::ctx::Ctx;
use super::App;
use crate::api::{ConnId, ConnectError, WsConnect};
use crate::driver::{Command, Core};

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
    pub(crate) fn new(core: &Core) -> Handle {
        Handle {
            tx: core.tx.clone(),
            waker: core.waker.clone(),
        }
    }

    fn send(&self, f: impl FnOnce(&mut Ctx<'_>) + Send + 'static) -> bool {
        let job = move |core: &mut Core| f(&mut Ctx::new(core));
        self.tx.send(Command::Run(Box::new(job))).is_ok() && self.waker.wake().is_ok()
    }

    /// Publishes an event to `topic` (errors such as a bad topic name are logged).
    /// Use [`Handle::run`] with [`Ctx::publish`](crate::Ctx::publish) to see the result.
    /// With a Redis backplane it goes through Redis; a failure there is logged too.
    pub fn publish(&self, topic: &str, event: Option<&str>, data: &str) -> bool {
        self.publish_kind(topic, event, data, false)
    }

    /// Publishes a JSON event ([`Ctx::publish_json`](crate::Ctx::publish_json)); invalid
    /// JSON and other refusals are logged.
    pub fn publish_json(&self, topic: &str, event: Option<&str>, data: &str) -> bool {
        self.publish_kind(topic, event, data, true)
    }

    fn publish_kind(&self, topic: &str, event: Option<&str>, data: &str, json: bool) -> bool {
        let (topic, event, data) = (topic.to_owned(), event.map(str::to_owned), data.to_owned());
        self.send(move |cx| {
            if let Err(e) = cx.publish_detached(&topic, event.as_deref(), &data, json) {
                log::warn!("publish to {topic:?} from a handle failed: {e}");
            }
        })
    }

    /// Publishes a batch to `topic` ([`Ctx::publish_batch`], or through Redis with a
    /// backplane), all or nothing; a refusal is logged. Use [`Handle::run`] with
    /// [`Ctx::publish_batch`] to see the ids.
    pub fn publish_batch<I>(&self, topic: &str, event: Option<&str>, datas: I) -> bool
    where
        I: IntoIterator,
        I::Item: Into<String>,
    {
        self.publish_batch_kind(topic, event, datas, false)
    }

    /// Publishes a batch of JSON events
    /// ([`Ctx::publish_batch_json`](crate::Ctx::publish_batch_json)), all or nothing; a
    /// refusal (an item that is not JSON, ...) is logged.
    pub fn publish_batch_json<I>(&self, topic: &str, event: Option<&str>, datas: I) -> bool
    where
        I: IntoIterator,
        I::Item: Into<String>,
    {
        self.publish_batch_kind(topic, event, datas, true)
    }

    fn publish_batch_kind<I>(&self, topic: &str, event: Option<&str>, datas: I, json: bool) -> bool
    where
        I: IntoIterator,
        I::Item: Into<String>,
    {
        let (topic, event) = (topic.to_owned(), event.map(str::to_owned));
        let datas: Vec<String> = datas.into_iter().map(Into::into).collect();
        self.send(move |cx| {
            let items: Vec<&str> = datas.iter().map(String::as_str).collect();
            if let Err(e) = cx.publish_batch_detached(&topic, event.as_deref(), &items, json) {
                log::warn!("batch publish to {topic:?} from a handle failed: {e}");
            }
        })
    }

    /// Sends a text message to a WebSocket connection.
    pub fn send_text(&self, conn: ConnId, text: &str) -> bool {
        let text = text.to_owned();
        self.send(move |cx| {
            cx.send_text(conn, &text);
        })
    }

    /// Sends a binary message to a WebSocket connection.
    pub fn send_binary(&self, conn: ConnId, data: &[u8]) -> bool {
        let data = data.to_vec();
        self.send(move |cx| {
            cx.send_binary(conn, &data);
        })
    }

    /// Sends a ping (at most 125 bytes) to a WebSocket connection.
    pub fn ping(&self, conn: ConnId, data: &[u8]) -> bool {
        let data = data.to_vec();
        self.send(move |cx| {
            cx.ping(conn, &data);
        })
    }

    /// Starts a WebSocket's closing handshake with `code` and `reason`.
    pub fn close_ws(&self, conn: ConnId, code: u16, reason: &str) -> bool {
        let reason = reason.to_owned();
        self.send(move |cx| {
            cx.close_ws(conn, code, &reason);
        })
    }

    /// Closes a connection (a WebSocket with 1000 and the closing handshake).
    pub fn close(&self, conn: ConnId) -> bool {
        self.send(move |cx| cx.close(conn))
    }

    /// [`Ctx::connect_ws`] from another thread: waits (at most 5 s) for the loop to start
    /// the connection and returns its id. Never call it on the loop's own thread (from a
    /// callback use [`Ctx::connect_ws`]): it would wait for itself and fail with
    /// [`ConnectError::Stopped`].
    pub fn connect_ws(&self, url: &str, opts: &WsConnect) -> Result<ConnId, ConnectError> {
        let (url, opts) = (url.to_owned(), opts.clone());
        let (tx, rx) = std::sync::mpsc::channel();
        if !self.send(move |cx| {
            let _ = tx.send(cx.connect_ws(&url, &opts));
        }) {
            return Err(ConnectError::Stopped);
        }
        rx.recv_timeout(std::time::Duration::from_secs(5))
            .unwrap_or(Err(ConnectError::Stopped))
    }

    /// Runs `f` on the loop thread with a context: anything a callback can do.
    pub fn run(&self, f: impl FnOnce(&mut Ctx<'_>) + Send + 'static) -> bool {
        self.send(f)
    }

    /// Runs `f` on the loop thread with the application and a context, e.g. for a worker
    /// thread to update the app's state and publish in one step. `A` must be the type the
    /// [`Server`](crate::Server) was built with; when it is not, `f` is not run and an
    /// error is logged (the `Handle` does not know its server's type, so this cannot be
    /// checked when compiling).
    pub fn run_app<A: App>(&self, f: impl FnOnce(&mut A, &mut Ctx<'_>) + Send + 'static) -> bool {
        let job = move |app: &mut dyn Any, core: &mut Core| match app.downcast_mut::<A>() {
            Some(app) => f(app, &mut Ctx::new(core)),
            None => log::error!(
                "Handle::run_app: the server's application is not a {}",
                std::any::type_name::<A>()
            ),
        };
        self.tx.send(Command::RunApp(Box::new(job))).is_ok() && self.waker.wake().is_ok()
    }

    /// Stops the server gracefully: stop accepting, flush what is queued (bounded by the
    /// configured stop timeout), close every connection, return from
    /// [`Server::run`](crate::Server::run).
    pub fn stop(&self) -> bool {
        self.send(|cx| cx.stop())
    }

    /// Stops the server at once ([`Ctx::stop_now`](crate::Ctx::stop_now)): connections are
    /// closed without flushing, [`Server::run`](crate::Server::run) returns. Also ends a
    /// graceful stop already under way (what a second signal does in the hub).
    pub fn stop_now(&self) -> bool {
        self.send(|cx| cx.stop_now())
    }
}
