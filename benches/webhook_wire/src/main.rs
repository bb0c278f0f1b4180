//! Helpers for `benches/webhook_wire.sh` (std only, blocking sockets).
//!
//! * `capture ADDR OUT`: listens on `ADDR`, reads one whole HTTP request (head and
//!   `Content-Length` body), writes its exact bytes to `OUT`, answers 200 and exits. The
//!   script points a webhook at it to learn the request the hub sends, for `wrk` to replay.
//! * `feed HUB TOPIC FANOUT WARM SECS TOTAL`: publishes to `http://HUB/topics/TOPIC` over
//!   one keep-alive connection, in pipelined bursts, keeping about `BACKLOG` (4,000)
//!   deliveries queued (`published * FANOUT - delivered - failed`, from `/stats`), so the
//!   hub's pipeline stays full without its per-endpoint queues overflowing. It measures
//!   `webhooks.delivered` from `WARM` to `WARM + SECS` seconds, prints
//!   `rate DELIVERIES_PER_SEC`, and keeps feeding until `TOTAL` seconds (so the script can
//!   count system calls while the pipeline is still full). With `FEED=batch` in the
//!   environment (the script's default) a burst of `n` events is one NDJSON batch publish
//!   (`Content-Type: application/x-ndjson`, `n` lines), so the publishes cost the hub one
//!   request per burst instead of one per event; `FEED=single` sends `n` pipelined
//!   publishes (for hubs without the batch publish).

use std::io::{self, BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::time::{Duration, Instant};

const BACKLOG: u64 = 4000;

fn main() -> io::Result<()> {
    let args: Vec<String> = std::env::args().collect();
    match args.get(1).map(String::as_str) {
        Some("capture") if args.len() == 4 => capture(&args[2], &args[3]),
        Some("feed") if args.len() == 8 => {
            let n = |i: usize| args[i].parse::<u64>().expect("a number");
            feed(&args[2], &args[3], n(4), n(5), n(6), n(7))
        }
        _ => {
            eprintln!(
                "usage: webhook-wire capture ADDR OUT | feed HUB TOPIC FANOUT WARM SECS TOTAL"
            );
            std::process::exit(2);
        }
    }
}

/// Reads one response or request head plus its `Content-Length` body; returns its bytes.
fn read_message(r: &mut BufReader<TcpStream>) -> io::Result<Vec<u8>> {
    let mut msg = Vec::new();
    let mut len = 0usize;
    loop {
        let start = msg.len();
        if r.read_until(b'\n', &mut msg)? == 0 {
            return Err(io::ErrorKind::UnexpectedEof.into());
        }
        let line = String::from_utf8_lossy(&msg[start..]).to_ascii_lowercase();
        if let Some(v) = line.strip_prefix("content-length:") {
            len = v.trim().parse().unwrap_or(0);
        }
        if line == "\r\n" {
            break;
        }
    }
    let start = msg.len();
    msg.resize(start + len, 0);
    r.read_exact(&mut msg[start..])?;
    Ok(msg)
}

fn capture(addr: &str, out: &str) -> io::Result<()> {
    let listener = TcpListener::bind(addr)?;
    loop {
        // Connections that close without a request (a port probe) are skipped.
        let (sock, _) = listener.accept()?;
        let mut r = BufReader::new(sock.try_clone()?);
        let Ok(req) = read_message(&mut r) else {
            continue;
        };
        std::fs::write(out, &req)?;
        (&sock).write_all(b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n")?;
        return Ok(());
    }
}

/// `webhooks.delivered + webhooks.failed` and `webhooks.delivered` from `/stats`.
fn stats(hub: &str) -> io::Result<(u64, u64)> {
    let mut s = TcpStream::connect(hub)?;
    write!(
        s,
        "GET /stats HTTP/1.1\r\nHost: {hub}\r\nConnection: close\r\n\r\n"
    )?;
    let mut body = String::new();
    s.read_to_string(&mut body)?;
    let field = |name: &str| -> u64 {
        let key = format!("\"{name}\":");
        let at = body.find("\"webhooks\":{").unwrap_or(0);
        body[at..]
            .find(&key)
            .map(|i| &body[at + i + key.len()..])
            .map(|v| {
                v.chars()
                    .take_while(char::is_ascii_digit)
                    .collect::<String>()
            })
            .and_then(|v| v.parse().ok())
            .unwrap_or(0)
    };
    let delivered = field("delivered");
    Ok((delivered + field("failed"), delivered))
}

fn feed(hub: &str, topic: &str, fanout: u64, warm: u64, secs: u64, total: u64) -> io::Result<()> {
    let sock = TcpStream::connect(hub)?;
    sock.set_nodelay(true)?;
    let mut r = BufReader::new(sock.try_clone()?);
    let mut w = &sock;
    let body = "x".repeat(16);
    let req = format!(
        "POST /topics/{topic} HTTP/1.1\r\nHost: {hub}\r\nContent-Type: text/plain\r\n\
         Content-Length: {}\r\n\r\n{body}",
        body.len()
    );
    let start = Instant::now();
    let (base, _) = stats(hub)?;
    let mut published = 0u64;
    let mut window: Option<(Instant, u64)> = None;
    let mut rate = None;
    let mut burst = Vec::new();
    let batch = std::env::var("FEED").map_or(true, |v| v != "single");
    while start.elapsed() < Duration::from_secs(total) {
        let (done, delivered) = stats(hub)?;
        let t = start.elapsed();
        if window.is_none() && t >= Duration::from_secs(warm) {
            window = Some((Instant::now(), delivered));
        }
        if let Some((t0, d0)) = window {
            if rate.is_none() && t >= Duration::from_secs(warm + secs) {
                let r = (delivered - d0) as f64 / t0.elapsed().as_secs_f64();
                println!("rate {r:.0}");
                io::stdout().flush()?;
                rate = Some(r);
            }
        }
        let backlog = (published * fanout).saturating_sub(done - base);
        if backlog >= BACKLOG / 2 {
            std::thread::sleep(Duration::from_millis(5));
            continue;
        }
        let n = ((BACKLOG - backlog) / fanout).clamp(1, 512);
        burst.clear();
        let answers = if batch {
            let lines = format!("{body}\n").repeat(n as usize);
            burst.extend_from_slice(
                format!(
                    "POST /topics/{topic} HTTP/1.1\r\nHost: {hub}\r\n\
                     Content-Type: application/x-ndjson\r\nContent-Length: {}\r\n\r\n{lines}",
                    lines.len()
                )
                .as_bytes(),
            );
            1
        } else {
            for _ in 0..n {
                burst.extend_from_slice(req.as_bytes());
            }
            n
        };
        w.write_all(&burst)?;
        for _ in 0..answers {
            let resp = read_message(&mut r)?;
            if !resp.starts_with(b"HTTP/1.1 201") {
                let head = String::from_utf8_lossy(&resp[..resp.len().min(120)]).into_owned();
                return Err(io::Error::other(format!("publish answered {head:?}")));
            }
        }
        published += n;
    }
    if rate.is_none() {
        println!("rate 0");
    }
    Ok(())
}
