//! The webhook subscriber: a small HTTP server on 127.0.0.1 that receives the server's
//! signed POSTs, verifies them (`pushwire::proto::webhook::verify`), records the event and
//! answers 204. "Dropping the connection" here means going away: while down it closes
//! every connection it has and every new one at once, so the server retries on its
//! schedule.

use std::io::{self, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicUsize, Ordering::Relaxed};
use std::sync::{Arc, OnceLock};
use std::time::{Instant, SystemTime, UNIX_EPOCH};

use pushwire::proto::http1::{Limits, RequestReader};
use pushwire::proto::webhook::{verify, Secret, DEFAULT_TOLERANCE};

use crate::subs::{Got, Sub};
use crate::wire::{find_payload, timed_out, Wire};

/// The most connections the receiver serves at once (the server keeps at most 4 in
/// flight per endpoint); more are closed.
const MAX_LIVE: usize = 32;

pub struct Hook {
    pub sub: Arc<Sub>,
    pub addr: SocketAddr,
    /// The registration's secret, once registered.
    pub secret: Arc<OnceLock<Secret>>,
    /// Connections open now.
    pub live: Arc<AtomicUsize>,
}

pub fn spawn(base: Instant) -> io::Result<Hook> {
    let listener = TcpListener::bind("127.0.0.1:0")?;
    let hook = Hook {
        sub: Arc::new(Sub::default()),
        addr: listener.local_addr()?,
        secret: Arc::new(OnceLock::new()),
        live: Arc::new(AtomicUsize::new(0)),
    };
    hook.sub.ready.store(true, Relaxed);
    let (sub, secret, live) = (hook.sub.clone(), hook.secret.clone(), hook.live.clone());
    std::thread::spawn(move || {
        for s in listener.incoming() {
            let Ok(s) = s else { continue };
            sub.meter.connections.fetch_add(1, Relaxed);
            if sub.down.load(Relaxed) || live.load(Relaxed) >= MAX_LIVE {
                drop(s);
                continue;
            }
            live.fetch_add(1, Relaxed);
            let (sub, secret, live) = (sub.clone(), secret.clone(), live.clone());
            std::thread::spawn(move || {
                if let Err(e) = serve(s, &sub, &secret, base) {
                    sub.fail(format!("receiver: {e}"));
                }
                live.fetch_sub(1, Relaxed);
            });
        }
    });
    Ok(hook)
}

fn serve(s: TcpStream, sub: &Sub, secret: &OnceLock<Secret>, base: Instant) -> io::Result<()> {
    let mut w = Wire::wrap(s, &sub.meter)?;
    let mut reader = RequestReader::new();
    let limits = Limits::default();
    let mut buf = Vec::new();
    let mut out = Vec::new();
    let mut chunk = [0u8; 16 * 1024];
    loop {
        if sub.down.load(Relaxed) || sub.stop.load(Relaxed) {
            return Ok(());
        }
        match w.read(&mut chunk) {
            Ok(0) => return Ok(()),
            Ok(n) => buf.extend_from_slice(&chunk[..n]),
            Err(e) if timed_out(&e) => continue,
            Err(e) if e.kind() == io::ErrorKind::ConnectionReset => return Ok(()),
            Err(e) => return Err(e),
        }
        let recv_ns = base.elapsed().as_nanos() as u64;
        loop {
            let (used, req) = reader
                .advance(&buf, &limits, &mut out)
                .map_err(|e| io::Error::other(e.to_string()))?;
            buf.drain(..used);
            let Some(req) = req else { break };
            sub.meter.request();
            let now = SystemTime::now()
                .duration_since(UNIX_EPOCH)
                .map_or(0, |d| d.as_secs());
            let verdict = secret.get().map(|key| {
                verify(
                    std::slice::from_ref(key),
                    req.header_str("webhook-id").unwrap_or(""),
                    req.header_str("webhook-timestamp").unwrap_or(""),
                    req.header_str("webhook-signature").unwrap_or(""),
                    &req.body,
                    now,
                    DEFAULT_TOLERANCE,
                )
            });
            match verdict {
                Some(Ok(())) => {
                    if let Some((seq, sent_ns, _)) = find_payload(&req.body, 0) {
                        sub.record(Got {
                            seq,
                            sent_ns,
                            recv_ns,
                        });
                    }
                    out.extend_from_slice(b"HTTP/1.1 204 No Content\r\n\r\n");
                }
                Some(Err(e)) => {
                    sub.fail(format!("bad signature: {e}"));
                    out.extend_from_slice(
                        b"HTTP/1.1 401 Unauthorized\r\nContent-Length: 0\r\n\r\n",
                    );
                }
                None => out.extend_from_slice(
                    b"HTTP/1.1 503 Service Unavailable\r\nContent-Length: 0\r\n\r\n",
                ),
            }
        }
        if !out.is_empty() {
            w.write_all(&out)?;
            out.clear();
        }
    }
}
