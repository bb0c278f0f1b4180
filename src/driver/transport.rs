//! The transport under every connection: plain TCP, or a rustls session over it.
//!
//! The HTTP/1.1, WebSocket, SSE and long-poll code above reads and writes plaintext and
//! never learns which one it has: [`Stream::read`] and [`Stream::write_vectored`] behave
//! like a non-blocking socket's (`WouldBlock` when there is nothing to do, `Ok(0)` at the
//! end), and [`Stream::pending`] says whether encrypted bytes still wait for the socket.
//!
//! For TLS, rustls's buffered API is driven for edge-triggered readiness:
//!
//! * **Reading** first drains plaintext rustls already decrypted; only when that is empty
//!   does it read TLS records from the socket (`read_tls`, `Ok(0)` is the end of the
//!   stream), decrypt them (`process_new_packets`) and send what the handshake answers at
//!   once. A read therefore returns `WouldBlock` only when the socket did, so the readiness
//!   edge is never lost, and rustls never holds more than one read's worth of plaintext. A
//!   TCP end without `close_notify` is an end too: HTTP/1.1 frames its own messages
//!   (RFC 9112 §9.8 allows an incomplete close).
//! * **A protocol error** (not TLS at all, a bad record, a failed handshake): the alert
//!   rustls prepared is written once, then the connection fails with
//!   [`CloseReason::Tls`](crate::CloseReason::Tls) naming the cause.
//! * **Writing** hands plaintext to rustls only when the records of the previous write are
//!   on the socket, so at most one write's worth (rustls's 64 KiB buffer limit) sits
//!   encrypted in memory; the caller's output queue keeps the rest, under its own budget.
//!   Writable interest stays registered while [`Stream::pending`] is true.
//! * **Half-closing** sends `close_notify` first (RFC 8446 §6.1), then shuts the socket's
//!   write side once that record is out.
//!
//! The TLS state is boxed: a plaintext connection pays one pointer for the feature.

use std::io::{self, IoSlice, Read, Write};
use std::net::Shutdown;

use mio::net::TcpStream;

/// A connection's byte stream.
#[derive(Debug)]
pub(crate) struct Stream {
    /// The socket (registered with mio as it is).
    pub(crate) tcp: TcpStream,
    #[cfg(feature = "tls")]
    tls: Option<Box<Tls>>,
}

/// A rustls session and what the stream has seen of it.
#[cfg(feature = "tls")]
struct Tls {
    conn: rustls::Connection,
    /// Why the session failed (an alert was sent; the connection ends). Boxed: rarely set.
    failed: Option<Box<rustls::Error>>,
    /// `close_notify` is queued: shut the socket's write side once it is out.
    shut_after_flush: bool,
}

#[cfg(feature = "tls")]
impl std::fmt::Debug for Tls {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Tls")
            .field("handshaking", &self.conn.is_handshaking())
            .field("failed", &self.failed)
            .finish()
    }
}

impl Stream {
    /// A plaintext stream.
    pub(crate) fn plain(tcp: TcpStream) -> Stream {
        Stream {
            tcp,
            #[cfg(feature = "tls")]
            tls: None,
        }
    }

    /// A TLS stream over `tcp` (server or client side).
    #[cfg(feature = "tls")]
    pub(crate) fn tls(tcp: TcpStream, conn: rustls::Connection) -> Stream {
        Stream {
            tcp,
            tls: Some(Box::new(Tls {
                conn,
                failed: None,
                shut_after_flush: false,
            })),
        }
    }

    /// Whether this stream is TLS.
    pub(crate) fn is_tls(&self) -> bool {
        #[cfg(feature = "tls")]
        return self.tls.is_some();
        #[cfg(not(feature = "tls"))]
        false
    }

    /// Still handshaking (always false for plain TCP).
    pub(crate) fn handshaking(&self) -> bool {
        #[cfg(feature = "tls")]
        return self.tls.as_ref().is_some_and(|t| t.conn.is_handshaking());
        #[cfg(not(feature = "tls"))]
        false
    }

    /// Why the TLS session failed, once it has.
    pub(crate) fn failure(&self) -> Option<crate::proto::server::TlsFailure> {
        #[cfg(feature = "tls")]
        return (self.tls.as_ref()?.failed.as_deref()).map(crate::tls::cause);
        #[cfg(not(feature = "tls"))]
        None
    }

    /// The short cause and rustls's own words, once the session failed.
    pub(crate) fn failure_detail(&self) -> Option<String> {
        #[cfg(feature = "tls")]
        return (self.tls.as_ref()?.failed.as_deref())
            .map(|e| format!("tls: {}: {e}", crate::tls::failure(e)));
        #[cfg(not(feature = "tls"))]
        None
    }

    /// Reads plaintext, like a non-blocking socket: `Ok(0)` at the end of the stream.
    pub(crate) fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        #[cfg(feature = "tls")]
        if let Some(tls) = self.tls.as_deref_mut() {
            return tls.read(&mut self.tcp, buf);
        }
        self.tcp.read(buf)
    }

    /// Writes plaintext, like a non-blocking socket.
    pub(crate) fn write_vectored(&mut self, bufs: &[IoSlice<'_>]) -> io::Result<usize> {
        #[cfg(feature = "tls")]
        if let Some(tls) = self.tls.as_deref_mut() {
            return tls.write_vectored(&mut self.tcp, bufs);
        }
        self.tcp.write_vectored(bufs)
    }

    /// Writes plaintext from one buffer (a plain socket: one `send`).
    pub(crate) fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        #[cfg(feature = "tls")]
        if let Some(tls) = self.tls.as_deref_mut() {
            return tls.write_vectored(&mut self.tcp, &[IoSlice::new(buf)]);
        }
        self.tcp.write(buf)
    }

    /// Encrypted bytes wait for the socket (handshake messages, records, an alert).
    pub(crate) fn pending(&self) -> bool {
        #[cfg(feature = "tls")]
        return self.tls.as_ref().is_some_and(|t| t.conn.wants_write());
        #[cfg(not(feature = "tls"))]
        false
    }

    /// Writes what [`pending`](Self::pending) holds until it is empty or the socket is full.
    pub(crate) fn flush_pending(&mut self) -> io::Result<()> {
        #[cfg(feature = "tls")]
        if let Some(tls) = self.tls.as_deref_mut() {
            return tls.flush(&mut self.tcp);
        }
        Ok(())
    }

    /// Drives a TLS handshake as far as the socket allows: `Ok(true)` once it is complete
    /// (at once for plain TCP); `UnexpectedEof` when the peer closed during it.
    #[cfg(feature = "tls")]
    pub(crate) fn handshake(&mut self) -> io::Result<bool> {
        #[cfg(feature = "tls")]
        if let Some(tls) = self.tls.as_deref_mut() {
            return tls.handshake(&mut self.tcp);
        }
        Ok(true)
    }

    /// Ends our side: for TLS, `close_notify` and then the socket's write side.
    pub(crate) fn shutdown_write(&mut self) {
        #[cfg(feature = "tls")]
        if let Some(tls) = self.tls.as_deref_mut() {
            tls.conn.send_close_notify();
            tls.shut_after_flush = true;
            let _ = tls.flush(&mut self.tcp);
            return;
        }
        let _ = self.tcp.shutdown(Shutdown::Write);
    }
}

#[cfg(feature = "tls")]
impl Tls {
    fn read(&mut self, tcp: &mut TcpStream, buf: &mut [u8]) -> io::Result<usize> {
        loop {
            match self.conn.reader().read(buf) {
                Ok(n) => return Ok(n),
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
                // The TCP stream ended without close_notify.
                Err(e) if e.kind() == io::ErrorKind::UnexpectedEof => return Ok(0),
                Err(e) => return Err(e),
            }
            if self.read_records(tcp)? == 0 {
                return Ok(0);
            }
        }
    }

    /// Reads TLS records from the socket once and processes them: `Ok(0)` at the end of
    /// the stream, `WouldBlock` when there was nothing, `InvalidData` when the session
    /// failed (its alert was sent).
    fn read_records(&mut self, tcp: &mut TcpStream) -> io::Result<usize> {
        if let Some(e) = &self.failed {
            return Err(io::Error::new(io::ErrorKind::InvalidData, (**e).clone()));
        }
        let n = self.conn.read_tls(tcp)?;
        if n == 0 {
            return Ok(0);
        }
        log::trace!("tls: read {n} record bytes");
        let was_handshaking = self.conn.is_handshaking();
        if let Err(e) = self.conn.process_new_packets() {
            log::debug!("tls: {}: {e}", crate::tls::failure(&e));
            self.failed = Some(Box::new(e.clone()));
            // The alert rustls queued for the peer goes out once, best effort.
            let _ = self.flush(tcp);
            return Err(io::Error::new(io::ErrorKind::InvalidData, e));
        }
        if was_handshaking && !self.conn.is_handshaking() {
            self.log_handshake();
        }
        // Handshake messages answer at once; a full socket leaves them pending.
        match self.flush(tcp) {
            Err(e) if e.kind() != io::ErrorKind::WouldBlock => Err(e),
            _ => Ok(n),
        }
    }

    /// What the handshake agreed on, at debug level.
    fn log_handshake(&self) {
        let sni = match &self.conn {
            rustls::Connection::Server(s) => s.server_name().map(str::to_owned),
            rustls::Connection::Client(_) => None,
        };
        let alpn = self.conn.alpn_protocol().map(String::from_utf8_lossy);
        log::debug!(
            "tls: handshake done: {:?} {:?}, ALPN {alpn:?}, SNI {sni:?}",
            self.conn.protocol_version(),
            self.conn.negotiated_cipher_suite().map(|c| c.suite()),
        );
    }

    /// Drives the handshake as far as the socket allows: `Ok(true)` once it is complete.
    fn handshake(&mut self, tcp: &mut TcpStream) -> io::Result<bool> {
        loop {
            match self.flush(tcp) {
                Err(e) if e.kind() != io::ErrorKind::WouldBlock => return Err(e),
                _ => {}
            }
            if !self.conn.is_handshaking() {
                return Ok(true);
            }
            match self.read_records(tcp) {
                Ok(0) => return Err(io::ErrorKind::UnexpectedEof.into()),
                Ok(_) => {}
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Ok(false),
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(e),
            }
        }
    }

    fn write_vectored(&mut self, tcp: &mut TcpStream, bufs: &[IoSlice<'_>]) -> io::Result<usize> {
        if let Some(e) = &self.failed {
            return Err(io::Error::new(io::ErrorKind::InvalidData, (**e).clone()));
        }
        self.flush(tcp)?;
        if self.conn.wants_write() {
            return Err(io::ErrorKind::WouldBlock.into());
        }
        let n = self.conn.writer().write_vectored(bufs)?;
        if n == 0 && bufs.iter().any(|b| !b.is_empty()) {
            return Err(io::ErrorKind::WouldBlock.into());
        }
        match self.flush(tcp) {
            Err(e) if e.kind() != io::ErrorKind::WouldBlock => Err(e),
            _ => Ok(n),
        }
    }

    /// Writes queued records until none are left (`Ok`) or the socket is full
    /// (`WouldBlock`); then, after a `close_notify`, shuts the write side.
    fn flush(&mut self, tcp: &mut TcpStream) -> io::Result<()> {
        while self.conn.wants_write() {
            match self.conn.write_tls(tcp) {
                Ok(0) => return Err(io::ErrorKind::WriteZero.into()),
                Ok(n) => log::trace!("tls: wrote {n} record bytes"),
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(e),
            }
        }
        if self.shut_after_flush {
            self.shut_after_flush = false;
            let _ = tcp.shutdown(Shutdown::Write);
        }
        Ok(())
    }
}
