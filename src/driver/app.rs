//! The one trait an application implements. The loop calls its methods; every call gets a
//! [`Ctx`] that lets the application send, close, publish and set timers. Inside the loop
//! nothing goes through a channel: the context acts on the connections directly. Only
//! other threads use a [`Handle`](crate::Handle), which wakes the loop through `mio::Waker`.

use super::ctx::Ctx;
use crate::api::{CloseInfo, ConnId, Reply, TimerId, WebhookOutcome};
use crate::proto::http1::Request;
use crate::proto::server::{ConnKind, Message};

/// The application: the loop calls these methods. Only `on_request` is required.
pub trait App {
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

    /// `conn` closed (any kind). Called exactly once per connection that was accepted.
    fn on_close(&mut self, cx: &mut Ctx<'_>, conn: ConnId, info: &CloseInfo) {
        let _ = (cx, conn, info);
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
}
