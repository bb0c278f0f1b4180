//! The webhook sockets: connecting (plain or TLS) or taking a pooled connection, the one
//! place a socket's fate and timer are settled ([`Core::settle_client`]), and moving bytes
//! for the pure [`ClientConn`] as far as the readiness the edges reported allows (see the
//! parent module on why each socket is registered once, for both directions).

use std::io;
use std::net::SocketAddr;

use log::{debug, trace};
use mio::net::TcpStream;
use mio::{Interest, Token};

#[cfg(feature = "tls")]
use super::tls;
use super::{rearm, unix_millis, HookSocket, CLIENT_BASE, MAX_IDLE_PER_ADDR};
use crate::driver::transport::Stream;
use crate::driver::wire::WireKey;
use crate::driver::{Core, TimerEv};
use crate::proto::tap::Dir;
use crate::proto::timer::TimerKey as RawTimer;
use crate::proto::webhook::{AttemptResult, ClientConn, ClientEvent, ClientPhase, HookJob, Host};

/// What a failed read or write says: the TLS cause when the session failed.
fn io_failure(stream: &Stream, what: &str, e: &io::Error) -> String {
    stream
        .failure_detail()
        .unwrap_or_else(|| format!("{what}: {e}"))
}

/// Moves a TLS handshake on (see [`tls::handshake`]); plain TCP has none.
fn handshake(stream: &mut Stream) -> Result<bool, String> {
    #[cfg(feature = "tls")]
    return tls::handshake(stream);
    #[cfg(not(feature = "tls"))]
    {
        let _ = stream;
        Ok(true)
    }
}

/// Both directions, edge-triggered, for the socket's whole life.
const INTEREST: Interest = Interest::READABLE.add(Interest::WRITABLE);

/// The read buffer: a response head with a short body fits, so it takes one read.
const READ_BUF: usize = 16 * 1024;

impl Core {
    /// Puts `job` on an idle pooled connection to `addr` (verified for the same `tls`
    /// name), or on a new one, with `fallback` addresses should connecting fail.
    pub(super) fn run_job(
        &mut self,
        job: HookJob,
        addr: SocketAddr,
        tls: Option<Host>,
        fallback: Vec<SocketAddr>,
    ) {
        let key = (addr, tls);
        let pooled = match self.hooks.idle.get_mut(&key) {
            Some(list) if !job.needs_fresh() => list.pop(),
            _ => None,
        };
        if self.hooks.idle.get(&key).is_some_and(Vec::is_empty) {
            self.hooks.idle.remove(&key);
        }
        let (addr, tls) = key;
        let job = match pooled.and_then(|idx| Some((idx, self.hooks.socket(idx)?))) {
            Some((idx, s)) => match s.conn.send(job) {
                Ok(()) => {
                    trace!("webhook: reusing connection {idx} to {addr}");
                    let ev = self.client_io(idx);
                    return self.settle_client(idx, ev);
                }
                Err(job) => job,
            },
            None => job,
        };
        let tcp = match TcpStream::connect(addr) {
            Ok(tcp) => tcp,
            Err(e) => return self.connect_failed(job, format!("{addr}: {e}"), tls, fallback),
        };
        let mut stream = match self.client_stream(tcp, tls.as_ref()) {
            Ok(stream) => stream,
            Err(why) => {
                return self.finish_attempt(job.attempt(), AttemptResult::ConnectFailed(why));
            }
        };
        let idx = self.hooks.free.pop().unwrap_or_else(|| {
            self.hooks.sockets.push((0, None));
            self.hooks.sockets.len() - 1
        });
        let attempt = job.attempt();
        let conn = ClientConn::connect(job, self.now, self.hooks.client);
        if let Err(e) =
            self.poll
                .registry()
                .register(&mut stream.tcp, Token(CLIENT_BASE + idx), INTEREST)
        {
            self.hooks.free.push(idx);
            return self.finish_attempt(attempt, AttemptResult::ConnectFailed(e.to_string()));
        }
        let how = if tls.is_some() { " (TLS)" } else { "" };
        debug!("webhook: connecting to {addr}{how} (client {idx})");
        if let Some(w) = &mut self.wire {
            w.open_hook(idx);
        }
        let slot = &mut self.hooks.sockets[idx];
        slot.0 = slot.0.wrapping_add(1);
        let gen = slot.0;
        slot.1 = Some(HookSocket {
            stream,
            gen,
            addr,
            tls,
            fallback,
            conn,
            // Nothing is known until the connect's first edge.
            writable: false,
            readable: false,
            timer: None,
        });
        self.settle_client(idx, None);
    }

    /// The stream for a new connection: plain, or a TLS session for `tls`.
    fn client_stream(&mut self, tcp: TcpStream, tls: Option<&Host>) -> Result<Stream, String> {
        let Some(host) = tls else {
            return Ok(Stream::plain(tcp));
        };
        #[cfg(feature = "tls")]
        return tls::stream(tcp, self.hooks.tls_config(), host);
        #[cfg(not(feature = "tls"))]
        Err(format!("{host}: https needs pushwire's `tls` feature"))
    }

    pub(super) fn drop_socket(&mut self, idx: usize) {
        let Some(mut s) = self.hooks.sockets.get_mut(idx).and_then(|s| s.1.take()) else {
            return;
        };
        if let Some((t, _)) = s.timer.take() {
            self.timers.cancel(t);
        }
        let _ = self.poll.registry().deregister(&mut s.stream.tcp);
        let key = (s.addr, s.tls);
        if let Some(list) = self.hooks.idle.get_mut(&key) {
            list.retain(|i| *i != idx);
            if list.is_empty() {
                self.hooks.idle.remove(&key);
            }
        }
        self.hooks.free.push(idx);
        if let Some(w) = &mut self.wire {
            w.close(WireKey::Hook(idx));
        }
        trace!("webhook: client {idx} to {} closed", s.addr);
    }

    /// After any input to client `idx`'s connection: drop, pool or re-arm the socket (the
    /// one place the timer is set), then pass `ev` on. Last, because a result
    /// runs the engine, which may give this very connection its next job.
    fn settle_client(&mut self, idx: usize, ev: Option<ClientEvent>) {
        let pool = matches!(ev, Some(ClientEvent::Response { reusable: true, .. }));
        let Some(s) = self.hooks.sockets.get_mut(idx).and_then(|s| s.1.as_mut()) else {
            return;
        };
        let key = (s.addr, s.tls.clone());
        let addr = s.addr;
        let fallback = match ev {
            Some(ClientEvent::ConnectFailed { .. }) => std::mem::take(&mut s.fallback),
            _ => Vec::new(),
        };
        let pooled = self.hooks.idle.get(&key).map_or(0, Vec::len);
        if s.conn.is_closed() || (pool && pooled >= MAX_IDLE_PER_ADDR) {
            self.drop_socket(idx);
        } else {
            // No interest to change: the socket is registered for both directions once.
            let ev = TimerEv::HookClient(idx, s.gen);
            rearm(&mut self.timers, &mut s.timer, s.conn.poll_timeout(), ev);
            if pool {
                self.hooks.idle.entry(key.clone()).or_default().push(idx);
            }
        }
        match ev {
            Some(ClientEvent::RetryFresh(job)) => self.run_job(job, addr, key.1, Vec::new()),
            Some(ClientEvent::ConnectFailed { job, why }) => {
                self.connect_failed(job, why, key.1, fallback)
            }
            Some(ClientEvent::Closed(why)) => trace!("webhook: client {idx} to {addr}: {why}"),
            Some(ev) => {
                if let Some((attempt, result)) = ev.attempt_result() {
                    self.finish_attempt(attempt, result);
                }
            }
            None => {}
        }
    }

    pub(crate) fn hook_client_timer(&mut self, idx: usize, gen: u32, tid: RawTimer) {
        let now = self.now;
        let Some(s) = self.hooks.socket(idx) else {
            return;
        };
        if s.gen != gen || s.timer.map(|t| t.0) != Some(tid) {
            return;
        }
        s.timer = None;
        let ev = s.conn.handle_timeout(now);
        self.settle_client(idx, ev);
    }

    /// A readiness event for webhook client `idx`. Which kind does not matter: an edge in
    /// either direction may have changed both, so both flags are set, the connection's
    /// state says what to try, and a spurious event ends in `WouldBlock`.
    pub(crate) fn hook_client_event(&mut self, idx: usize) {
        if let Some(s) = self.hooks.socket(idx) {
            s.writable = true;
            s.readable = true;
        }
        let ev = self.client_io(idx);
        self.settle_client(idx, ev);
    }

    /// Finishes a connect, writes while the socket is writable and reads while it may
    /// hold bytes, until an event, `WouldBlock` or (plain TCP) a short read.
    fn client_io(&mut self, idx: usize) -> Option<ClientEvent> {
        let now = self.now;
        let s = self.hooks.socket(idx)?;
        if s.conn.phase() == ClientPhase::Connecting {
            // A non-blocking connect has finished when the socket turns writable:
            // `take_error` says whether it failed, `peer_addr` whether it is up.
            if let Ok(Some(e)) | Err(e) = s.stream.tcp.take_error() {
                return s.conn.on_error(format!("{}: {e}", s.addr));
            }
            match s.stream.tcp.peer_addr() {
                Ok(_) => {}
                Err(e) if e.kind() == io::ErrorKind::NotConnected => return None,
                Err(e) => return s.conn.on_error(format!("{}: {e}", s.addr)),
            }
            // TLS: the handshake is part of connecting (inside the connect timeout).
            if s.stream.handshaking() {
                match handshake(&mut s.stream) {
                    Ok(true) => {}
                    Ok(false) => return None,
                    Err(why) => {
                        // A certificate or protocol failure is the receiver's answer, not
                        // an unreachable address: no fallback.
                        s.fallback.clear();
                        return s.conn.on_error(format!("{}: {why}", s.addr));
                    }
                }
            }
            s.conn.on_connected();
            trace!("webhook: client {idx} connected to {}", s.addr);
        }
        // The whole request is one buffer: one write unless the socket is full.
        while s.writable && !s.conn.pending().is_empty() {
            match s.stream.write(s.conn.pending()) {
                Ok(0) => return s.conn.on_error("connection closed while writing".into()),
                Ok(n) => {
                    if let Some(w) = &mut self.wire {
                        w.saw(WireKey::Hook(idx), Dir::Left, &s.conn.pending()[..n]);
                    }
                    s.conn.wrote(n)
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => s.writable = false,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return s.conn.on_error(io_failure(&s.stream, "write", &e)),
            }
        }
        if s.writable && s.conn.pending().is_empty() && s.stream.pending() {
            // TLS: the request's last records may still wait for the socket.
            match s.stream.flush_pending() {
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => s.writable = false,
                Err(e) => return s.conn.on_error(io_failure(&s.stream, "write", &e)),
                Ok(()) => {}
            }
        }
        // Read only what an edge announced or an earlier read left: the response to a
        // request just written comes as the next readable edge.
        let plain = !s.stream.is_tls();
        let mut tmp = [0u8; READ_BUF];
        while s.readable && s.conn.wants_read() {
            let ev = match s.stream.read(&mut tmp) {
                Ok(0) => return s.conn.on_eof(now, unix_millis() / 1000),
                Ok(n) => {
                    // A short read emptied the receive queue: the next byte is a new edge.
                    s.readable = !(plain && n < tmp.len());
                    if let Some(w) = &mut self.wire {
                        w.saw(WireKey::Hook(idx), Dir::Right, &tmp[..n]);
                    }
                    s.conn.on_read(&tmp[..n], now, unix_millis() / 1000)
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                    s.readable = false;
                    return None;
                }
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => return s.conn.on_error(io_failure(&s.stream, "read", &e)),
            };
            if ev.is_some() {
                return ev;
            }
        }
        None
    }
}
