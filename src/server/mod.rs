//! The application's side of the loop: the [`App`] trait it implements, the [`Server`]
//! that runs it, the [`Ctx`] every callback gets and the [`Handle`] for other threads.
//!
//! The loop (the driver) calls [`App`] methods; every call gets a [`Ctx`] that lets the
//! application send, close, publish and set timers. Inside the loop nothing goes through a
//! channel: the context acts on the connections directly. Only other threads use a
//! [`Handle`], which wakes the loop through `mio::Waker`.

mod ctx;
mod handle;

use std::io;
use std::net::{SocketAddr, ToSocketAddrs};

pub use ctx::Ctx;
pub use handle::Handle;

use crate::api::{CloseInfo, ConnId, PublishTicket, Reply, TimerId, WebhookOutcome};
use crate::config::Config;
use crate::driver::{Core, Driver, Handler};
use crate::proto::http1::Request;
use crate::proto::server::{ConnKind, Message};
use crate::proto::topic::PublishError;

/// The application: the loop calls these methods. Only `on_request` is required.
///
/// An application owns its state (`'static`): the loop keeps it for as long as it runs,
/// and [`Handle::run_app`] reaches it from other threads by its type.
pub trait App: 'static {
    /// A complete HTTP request arrived on `conn`. Answer it with a [`Reply`].
    fn on_request(&mut self, cx: &mut Ctx<'_>, conn: ConnId, req: &Request) -> Reply;

    /// A WebSocket handshake on `conn` was accepted and answered with 101.
    fn on_ws_open(&mut self, cx: &mut Ctx<'_>, conn: ConnId) {
        let _ = (cx, conn);
    }

    /// A complete WebSocket message arrived. A close started from here
    /// ([`Ctx::close_ws`]) takes effect at once: messages behind it are not delivered.
    fn on_ws_message(&mut self, cx: &mut Ctx<'_>, conn: ConnId, msg: Message<'_>) {
        let _ = (cx, conn, msg);
    }

    /// `conn` closed (any kind). Called exactly once per connection that was accepted,
    /// and once per dialed WebSocket ([`Ctx::connect_ws`]) that opened.
    fn on_close(&mut self, cx: &mut Ctx<'_>, conn: ConnId, info: &CloseInfo) {
        let _ = (cx, conn, info);
    }

    /// A WebSocket dialed with [`Ctx::connect_ws`] did not open: `reason` says why (the
    /// connection was refused, timed out, TLS failed, the server's answer was not a valid
    /// `101`). Called instead of [`on_ws_open`](Self::on_ws_open) and
    /// [`on_close`](Self::on_close); `conn` is gone.
    fn on_ws_connect_failed(&mut self, cx: &mut Ctx<'_>, conn: ConnId, url: &str, reason: &str) {
        let _ = (cx, conn, url, reason);
    }

    /// A timer set with [`Ctx::set_timer`] fired.
    fn on_timer(&mut self, cx: &mut Ctx<'_>, timer: TimerId, tag: u64) {
        let _ = (cx, timer, tag);
    }

    /// A webhook message reached its one final outcome (delivered or failed).
    fn on_webhook(&mut self, cx: &mut Ctx<'_>, outcome: &WebhookOutcome) {
        let _ = (cx, outcome);
    }

    /// `conn`'s output queue passed the high-water mark; the configured
    /// [`SlowPolicy`](crate::SlowPolicy) was applied (SSE streams are always closed: their
    /// clients resume with `Last-Event-ID`).
    fn on_slow_reader(&mut self, cx: &mut Ctx<'_>, conn: ConnId, kind: ConnKind) {
        let _ = (cx, conn, kind);
    }

    /// A publish made with [`Ctx::publish_async`] that went to the Redis backplane has its
    /// outcome: the id Redis gave it, or why it was not published (then it never existed).
    fn on_published(
        &mut self,
        cx: &mut Ctx<'_>,
        ticket: PublishTicket,
        result: Result<u64, PublishError>,
    ) {
        let _ = (cx, ticket, result);
    }
}

/// Every application is the loop's handler: each event becomes its callback, with a [`Ctx`].
impl<A: App> Handler for A {
    fn as_any(&mut self) -> &mut dyn std::any::Any {
        self
    }
    fn request(&mut self, core: &mut Core, conn: ConnId, req: &Request) -> Reply {
        self.on_request(&mut Ctx::new(core), conn, req)
    }
    fn ws_open(&mut self, core: &mut Core, conn: ConnId) {
        self.on_ws_open(&mut Ctx::new(core), conn)
    }
    fn ws_message(&mut self, core: &mut Core, conn: ConnId, msg: Message<'_>) {
        self.on_ws_message(&mut Ctx::new(core), conn, msg)
    }
    fn closed(&mut self, core: &mut Core, conn: ConnId, info: &CloseInfo) {
        self.on_close(&mut Ctx::new(core), conn, info)
    }
    fn ws_connect_failed(&mut self, core: &mut Core, conn: ConnId, url: &str, reason: &str) {
        self.on_ws_connect_failed(&mut Ctx::new(core), conn, url, reason)
    }
    fn timer(&mut self, core: &mut Core, timer: TimerId, tag: u64) {
        self.on_timer(&mut Ctx::new(core), timer, tag)
    }
    fn webhook(&mut self, core: &mut Core, outcome: &WebhookOutcome) {
        self.on_webhook(&mut Ctx::new(core), outcome)
    }
    fn slow_reader(&mut self, core: &mut Core, conn: ConnId, kind: ConnKind) {
        self.on_slow_reader(&mut Ctx::new(core), conn, kind)
    }
    fn published(&mut self, core: &mut Core, t: PublishTicket, r: Result<u64, PublishError>) {
        self.on_published(&mut Ctx::new(core), t, r)
    }
}

/// A pushwire server: one listener, one thread, one `mio::Poll`.
pub struct Server<A: App> {
    driver: Driver<A>,
}

impl<A: App> Server<A> {
    /// Binds `addr` and prepares the loop. Nothing is served until [`Server::run`].
    pub fn bind(addr: impl ToSocketAddrs, config: Config, app: A) -> io::Result<Self> {
        Ok(Server {
            driver: Driver::bind(addr, config, app)?,
        })
    }

    /// The address the server listens on (useful after binding port 0).
    pub fn local_addr(&self) -> SocketAddr {
        self.driver.core.local_addr
    }

    /// Adds a TLS listener on `addr`: every route is served there too, over TLS
    /// (`https://`, `wss://`), on the same loop. Returns the bound address. One per server.
    #[cfg(feature = "tls")]
    pub fn listen_tls(
        &mut self,
        addr: impl ToSocketAddrs,
        tls: crate::tls::ServerTls,
    ) -> io::Result<SocketAddr> {
        self.driver.core.listen_tls(addr, tls)
    }

    /// The TLS listener's address, once `listen_tls` (feature `tls`) bound one.
    pub fn tls_addr(&self) -> Option<SocketAddr> {
        self.driver.core.tls_addr
    }

    /// A handle for other threads.
    pub fn handle(&self) -> Handle {
        Handle::new(&self.driver.core)
    }

    /// The application.
    pub fn app(&self) -> &A {
        &self.driver.handler
    }

    /// The application, mutably.
    pub fn app_mut(&mut self) -> &mut A {
        &mut self.driver.handler
    }

    /// Runs `f` with a context before (or between) runs, e.g. to publish initial events.
    pub fn with_ctx<R>(&mut self, f: impl FnOnce(&mut A, &mut Ctx<'_>) -> R) -> R {
        let d = &mut self.driver;
        d.core.tick();
        let r = f(&mut d.handler, &mut Ctx::new(&mut d.core));
        d.after_step();
        r
    }

    /// Arms a timer before (or between) runs: [`App::on_timer`] is called with `tag` once
    /// `after` has passed, as with [`Ctx::set_timer`].
    pub fn set_timer(&mut self, after: std::time::Duration, tag: u64) -> TimerId {
        self.with_ctx(|_, cx| cx.set_timer(after, tag))
    }

    /// Puts another event source on the server's loop: `f` runs on the loop thread, with
    /// the application, a context and the source, whenever `source` is readable. A
    /// signal listener (`signal_hook_mio::v1_0::Signals`), a `mio::net::UdpSocket` or a
    /// `mio::unix::pipe::Receiver` can join the loop this way, with no thread of its own.
    ///
    /// The source is registered for readable events only (at tokens of a range the server
    /// reserves; at most 1,024 sources per server), and mio's events are edge-triggered:
    /// `f` must drain the source (read until `WouldBlock`, or take every pending signal),
    /// or it may not be called again. What `f` queues through the context is sent at the
    /// end of the step, as from any callback. The source lives as long as the server;
    /// sources keep being served during a graceful stop, so a second signal can still
    /// [`stop_now`](Ctx::stop_now).
    ///
    /// ```no_run
    /// # use pushwire::{App, Config, ConnId, Ctx, Reply, Request, Response, Server};
    /// # struct Hello;
    /// # impl App for Hello {
    /// #     fn on_request(&mut self, _: &mut Ctx<'_>, _: ConnId, _: &Request) -> Reply {
    /// #         Response::text(200, "hello\n").into()
    /// #     }
    /// # }
    /// let mut server = Server::bind("127.0.0.1:0", Config::new(), Hello)?;
    /// // SIGINT and SIGTERM (signal-hook and signal-hook-mio, its `support-v1_0`
    /// // feature): the first stops gracefully, a second at once.
    /// use signal_hook::consts::{SIGINT, SIGTERM};
    /// let signals = signal_hook_mio::v1_0::Signals::new([SIGINT, SIGTERM])?;
    /// server.add_source(signals, |_app, cx, signals| {
    ///     for _signal in signals.pending() {
    ///         if cx.is_stopping() {
    ///             cx.stop_now();
    ///         } else {
    ///             cx.stop();
    ///         }
    ///     }
    /// })?;
    /// server.run()?;
    /// # Ok::<(), std::io::Error>(())
    /// ```
    pub fn add_source<S>(
        &mut self,
        source: S,
        mut f: impl FnMut(&mut A, &mut Ctx<'_>, &mut S) + 'static,
    ) -> io::Result<()>
    where
        S: mio::event::Source + 'static,
    {
        self.driver
            .add_source(source, move |app: &mut A, core: &mut Core, s: &mut S| {
                f(app, &mut Ctx::new(core), s)
            })
    }

    /// Runs the loop until the server is stopped (through [`Handle::stop`] or
    /// [`Ctx::stop`]) and every connection is closed or the stop timeout passed.
    pub fn run(&mut self) -> io::Result<()> {
        self.driver.run()
    }
}
