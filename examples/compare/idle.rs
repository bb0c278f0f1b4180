//! Server memory per idle subscriber: a fresh server per mechanism (so that memory one
//! kind freed cannot be reused by the next), one subscriber first (the topic and the
//! server's tables exist), `VmRSS`, then `n` more idle subscribers, a settle, `VmRSS`
//! again; the difference over `n`.

use std::io;
use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::subs::{self, Kind};
use crate::wire::{Http, Meter, ServerProc};

/// How long the server is left alone before each reading.
const SETTLE: Duration = Duration::from_millis(300);

/// The mechanisms, in table order.
#[derive(Clone, Copy, PartialEq, Eq)]
pub enum Mech {
    Ws,
    Sse,
    Poll,
    Webhook,
}

/// Bytes of server RSS per idle subscriber of `mech`, measured over `n` of them.
pub fn per_subscriber(mech: Mech, n: usize) -> io::Result<f64> {
    let server = ServerProc::start(n + 1, None)?;
    let meter = Arc::new(Meter::default());
    let mut held = Vec::with_capacity(n + 1);
    let mut http = Http::connect(server.addr)?;
    let mut add = |i: usize| -> io::Result<()> {
        let kind = match mech {
            Mech::Ws => Kind::Ws,
            Mech::Sse => Kind::Sse,
            Mech::Poll => Kind::Poll,
            Mech::Webhook => {
                // Never called: no event is published, only the registration is kept.
                let body = format!("url=http://127.0.0.1:9/hook/{i}");
                let (status, text) = http.call(
                    "POST",
                    "/topics/cmp/webhooks",
                    "application/x-www-form-urlencoded",
                    body.as_bytes(),
                )?;
                return match status {
                    201 => Ok(()),
                    _ => Err(io::Error::other(format!(
                        "registration answered {status}: {text}"
                    ))),
                };
            }
        };
        held.push(subs::open(kind, server.addr, None, &meter)?);
        Ok(())
    };
    add(0)?;
    wait_for(&server, mech, 1)?;
    std::thread::sleep(SETTLE);
    let before = server.rss()?;
    for i in 1..=n {
        add(i)?;
    }
    wait_for(&server, mech, n + 1)?;
    std::thread::sleep(SETTLE);
    let after = server.rss()?;
    drop(held);
    Ok((after.saturating_sub(before)) as f64 / n as f64)
}

/// Waits until the server counts `want` subscribers of `mech` (a parked poll is parked
/// when the server has read it, which the client cannot see).
fn wait_for(server: &ServerProc, mech: Mech, want: usize) -> io::Result<()> {
    let key = match mech {
        Mech::Ws => "websocket=",
        Mech::Sse => "sse=",
        Mech::Poll => "parked=",
        Mech::Webhook => return Ok(()),
    };
    let mut http = Http::connect(server.addr)?;
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let (_, stats) = http.call("GET", "/stats", "text/plain", b"")?;
        let have = stats
            .split_whitespace()
            .find_map(|f| f.strip_prefix(key))
            .and_then(|v| v.parse::<usize>().ok())
            .unwrap_or(0);
        if have >= want {
            return Ok(());
        }
        if Instant::now() > deadline {
            return Err(io::Error::other(format!(
                "the server has {have} of {want} idle subscribers"
            )));
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}
