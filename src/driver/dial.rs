//! Outgoing WebSockets: the application dials a `ws://` or `wss://` URL
//! ([`Core::connect_ws`]). The connection gets a slot and a [`ConnId`] at once; its core
//! ([`ServerConn::dial`]) queues the upgrade request, which goes out when the non-blocking
//! connect completes (TLS first, for `wss://`). A host name is resolved on a short-lived
//! thread, so the loop never blocks on DNS; the slot is reserved (its id refers to nothing)
//! meanwhile.

use std::net::{IpAddr, SocketAddr, ToSocketAddrs};

use log::debug;
use mio::net::TcpStream;
use mio::{Interest, Token};

use super::transport::Stream;
use super::{Command, Core, Note};
use crate::api::{ConnId, ConnectError, WsConnect};
use crate::proto::out::OutQueue;
use crate::proto::server::{DialSpec, Env, ServerConn};
use crate::proto::ws::client::WsUrl;
use crate::proto::ws::WsLimits;

/// A dial whose host name is being resolved.
#[derive(Debug)]
pub(crate) struct Pending {
    proto: ServerConn,
    out: OutQueue,
    url: WsUrl,
}

impl Core {
    /// Starts a WebSocket connection to `url`. Events arrive as for accepted WebSockets,
    /// or `on_ws_connect_failed`.
    pub(crate) fn connect_ws(
        &mut self,
        url: &str,
        opts: &WsConnect,
    ) -> Result<ConnId, ConnectError> {
        let url = WsUrl::parse(url).map_err(ConnectError::Url)?;
        if url.secure && !cfg!(feature = "tls") {
            return Err(ConnectError::NoTls);
        }
        if self.stopping.is_some() {
            return Err(ConnectError::Stopped);
        }
        // Dials still resolving hold a slot too.
        if self.live + self.dials.len() >= self.config.max_connections {
            return Err(ConnectError::TooManyConnections);
        }
        let spec = DialSpec {
            url: url.clone(),
            protocols: opts.protocols.clone(),
            headers: opts.headers.clone(),
            deflate: opts.deflate,
            limits: WsLimits {
                max_frame_bytes: self.config.ws_max_frame,
                max_message_bytes: opts.max_message.unwrap_or(self.config.ws_max_message),
            },
            timeout: opts.timeout,
        };
        let mut out = OutQueue::default();
        let mut env = Env {
            now: self.now,
            cfg: &self.config.conn,
            stopping: false,
            date: None,
            out: &mut out,
            codec: &mut self.codec,
        };
        let proto = ServerConn::dial(&spec, rand::random(), rand::random(), &mut env)
            .map_err(ConnectError::Offer)?;
        let (i, id) = self.reserve_slot();
        let pending = Pending { proto, out, url };
        match pending.url.host.parse::<IpAddr>() {
            Ok(ip) => {
                let addr = SocketAddr::new(ip, pending.url.port);
                if let Err(e) = self.dial_addr(i, id, addr, pending) {
                    self.free.push(i);
                    return Err(e);
                }
            }
            Err(_) => self.resolve_for_dial(i, id, pending),
        }
        Ok(id)
    }

    /// Forgets a dial still resolving its host name (the application closed it): it is
    /// reported as failed. False when `id` is no such dial.
    pub(crate) fn cancel_dial(&mut self, id: ConnId) -> bool {
        let Some(pending) = self.dials.remove(&id) else {
            return false;
        };
        self.free.push(id.index as usize);
        let url = pending.url.to_string();
        debug!("{id} dial to {url} closed while resolving");
        self.notes
            .push(Note::DialFailed(id, url, "closed before it opened".into()));
        true
    }

    /// Resolves the dial's host on a thread; the loop connects when the answer comes.
    fn resolve_for_dial(&mut self, i: usize, id: ConnId, pending: Pending) {
        let (host, port) = (pending.url.host.clone(), pending.url.port);
        self.dials.insert(id, pending);
        let (tx, waker) = (self.tx.clone(), self.waker.clone());
        let spawned = std::thread::Builder::new()
            .name("pushwire-dial-resolve".into())
            .spawn(move || {
                let found = (host.as_str(), port)
                    .to_socket_addrs()
                    .map(|a| a.collect::<Vec<_>>())
                    .map_err(|e| format!("{host}: {e}"));
                let job = move |core: &mut Core| core.dial_resolved(i, id, found);
                let _ = tx.send(Command::Run(Box::new(job)));
                let _ = waker.wake();
            });
        if let Err(e) = spawned {
            self.dial_resolved(i, id, Err(format!("no resolver thread: {e}")));
        }
    }

    /// The dial's host name resolved (or not).
    fn dial_resolved(&mut self, i: usize, id: ConnId, found: Result<Vec<SocketAddr>, String>) {
        let Some(pending) = self.dials.remove(&id) else {
            return;
        };
        let url = pending.url.to_string();
        // IPv4 first: a loopback name usually resolves to both.
        let addr = found.and_then(|mut addrs| {
            addrs.sort_by_key(|a| !a.is_ipv4());
            addrs
                .first()
                .copied()
                .ok_or_else(|| "no address".to_owned())
        });
        let result = match addr {
            Ok(addr) => self
                .dial_addr(i, id, addr, pending)
                .map_err(|e| e.to_string()),
            Err(e) => Err(e),
        };
        if let Err(why) = result {
            debug!("{id} dial to {url} failed: {why}");
            self.free.push(i);
            self.notes.push(Note::DialFailed(id, url, why));
        }
    }

    /// Connects the dial to `addr` and puts it into its slot.
    fn dial_addr(
        &mut self,
        i: usize,
        id: ConnId,
        addr: SocketAddr,
        pending: Pending,
    ) -> Result<(), ConnectError> {
        let tcp = TcpStream::connect(addr).map_err(|e| ConnectError::Io(e.kind()))?;
        let _ = tcp.set_nodelay(true);
        let mut stream = self.dial_stream(tcp, &pending.url)?;
        self.poll
            .registry()
            .register(&mut stream.tcp, Token(i), Interest::READABLE)
            .map_err(|e| ConnectError::Io(e.kind()))?;
        debug!("{id} dialing {} at {addr}", pending.url);
        self.fill_slot(i, id, stream, pending.proto, pending.out);
        Ok(())
    }

    /// The stream: plain, or a TLS client session verified for the URL's host.
    fn dial_stream(&mut self, tcp: TcpStream, url: &WsUrl) -> Result<Stream, ConnectError> {
        if !url.secure {
            return Ok(Stream::plain(tcp));
        }
        #[cfg(feature = "tls")]
        {
            let host = match url.host.parse::<IpAddr>() {
                Ok(ip) => crate::proto::webhook::Host::Ip(ip),
                Err(_) => crate::proto::webhook::Host::Name(url.host.clone()),
            };
            let config = self.hooks.tls_config();
            super::webhook::tls::stream(tcp, config, &host).map_err(ConnectError::Tls)
        }
        #[cfg(not(feature = "tls"))]
        Err(ConnectError::NoTls)
    }
}
