//! Webhook vs WebSocket vs SSE vs long polling, measured: the same events published to one
//! subscriber of each kind on loopback, and per mechanism what it cost.
//!
//! ```text
//! cargo run --release --example compare               # the table
//! cargo run --release --example compare -- --markdown # the same as a markdown table
//! cargo run --release --example compare -- --quick    # small counts (the test's run)
//! ```
//!
//! The server is this program again (`--serve`, see `compare/serve.rs`), a pushwire
//! `Server` in a child process so its memory can be read from `/proc/PID/status`. The
//! subscribers and the publisher live in this process and share one clock: each event's
//! data carries its send time. Per mechanism it prints:
//!
//! * **p50/p99 ms**: publish to receive, over `--events` events published every
//!   `--rate-ms` (the publisher's POST is written at the send time; the subscriber reads
//!   the time when the bytes holding the event arrived);
//! * **bytes/ev down, up**: bytes the subscriber read and wrote on its sockets over the
//!   same events, HTTP and frame headers included, divided by the events;
//! * **requests/ev, conns/ev**: HTTP requests and TCP connections over the same events
//!   (for the webhook, the requests and connections its receiver got);
//! * **idle B/sub**: the server's `VmRSS` growth per idle subscriber, over `--idle` of
//!   them, a fresh server per mechanism (a webhook's idle subscriber is a registration);
//! * **missed, resume ms**: every subscriber drops its connection (the webhook receiver
//!   closes every connection for as long), `--drop` events are published while it is
//!   away, it comes back (resuming from its cursor; the webhook server retries on its
//!   schedule) and `--drop` more are published; missed = events of those never received,
//!   resume = from coming back to holding every event published while away.

#[path = "compare/hook.rs"]
mod hook;
#[path = "compare/idle.rs"]
mod idle;
#[path = "compare/serve.rs"]
mod serve;
#[path = "compare/subs.rs"]
mod subs;
#[path = "compare/table.rs"]
mod table;
#[path = "compare/wire.rs"]
mod wire;

use std::io;
use std::ops::Range;
use std::sync::atomic::Ordering::Relaxed;
use std::sync::Arc;
use std::time::{Duration, Instant};

use idle::Mech;
use pushwire::proto::webhook::Secret;
use subs::{Kind, Sub};
use table::Row;
use wire::{payload, Http, ServerProc};

const HELP: &str = "\
compare: the same events to a WebSocket, an SSE, a long-poll and a webhook subscriber on
loopback, and what each mechanism cost.

  --events N         events in the latency phase (1000)
  --rate-ms MS       one event every MS milliseconds (2)
  --drop N           events published while the subscribers are away, and as many after (50)
  --idle N           idle subscribers per mechanism for the memory figure (1000)
  --size BYTES       event data size (64)
  --webhook-retry S  first webhook retry delay, seconds (the library's schedule: 5 s, 5 min, ...)
  --quick            100 events, --drop 10, --idle 100
  --markdown         print the table as markdown
";

struct Opts {
    events: u64,
    rate: Duration,
    drop: u64,
    idle: usize,
    size: usize,
    retry: Option<f64>,
    markdown: bool,
}

fn parse(mut args: impl Iterator<Item = String>) -> Result<Opts, String> {
    let mut o = Opts {
        events: 1000,
        rate: Duration::from_millis(2),
        drop: 50,
        idle: 1000,
        size: 64,
        retry: None,
        markdown: false,
    };
    while let Some(a) = args.next() {
        let mut value = |name: &str| args.next().ok_or(format!("{name} needs a value"));
        fn num<T: std::str::FromStr>(name: &str, v: String) -> Result<T, String> {
            v.parse()
                .map_err(|_| format!("{name}: not a number: {v:?}"))
        }
        match a.as_str() {
            "--events" => o.events = num(&a, value(&a)?)?,
            "--rate-ms" => {
                o.rate =
                    Duration::from_secs_f64(num::<f64>(&a, value(&a)?)?.clamp(0.0, 1000.0) / 1e3)
            }
            "--drop" => o.drop = num(&a, value(&a)?)?,
            "--idle" => o.idle = num(&a, value(&a)?)?,
            "--size" => o.size = num(&a, value(&a)?)?,
            "--webhook-retry" => o.retry = Some(num(&a, value(&a)?)?),
            "--quick" => (o.events, o.drop, o.idle) = (100, 10, 100),
            "--markdown" => o.markdown = true,
            "--help" | "-h" => return Err(String::new()),
            _ => return Err(format!("unknown argument {a:?} (see --help)")),
        }
    }
    if !(1..=100_000).contains(&o.events) || !(1..=900).contains(&o.drop) {
        return Err("--events must be 1-100000 and --drop 1-900 (the history keeps 1000)".into());
    }
    if !(1..=10_000).contains(&o.idle) || !(40..=65_536).contains(&o.size) {
        return Err("--idle must be 1-10000 and --size 40-65536".into());
    }
    Ok(o)
}

fn main() {
    let mut args = std::env::args().skip(1).peekable();
    if args.peek().map(String::as_str) == Some("--serve") {
        args.next();
        let max_subs = args.next().and_then(|n| n.parse().ok()).unwrap_or(16);
        serve::run(max_subs, args.next().and_then(|r| r.parse().ok()));
    }
    let o = match parse(args) {
        Ok(o) => o,
        Err(e) if e.is_empty() => {
            print!("{HELP}");
            return;
        }
        Err(e) => {
            eprintln!("compare: {e}");
            std::process::exit(2);
        }
    };
    match run(&o) {
        Ok(rows) => {
            println!(
                "{} events of {} bytes, one every {:?}; {} published while away and {} after; {} idle subscribers per mechanism",
                o.events, o.size, o.rate, o.drop, o.drop, o.idle
            );
            print!("{}", table::render(&rows, o.markdown));
        }
        Err(e) => {
            eprintln!("compare: {e}");
            std::process::exit(1);
        }
    }
}

/// Publishes events `cmp SEQ SENT_NS xxx...` over one keep-alive connection.
struct Publisher {
    http: Http,
    seq: u64,
    base: Instant,
    size: usize,
}

impl Publisher {
    fn publish(&mut self) -> io::Result<u64> {
        let seq = self.seq;
        self.seq += 1;
        let data = payload(seq, self.base.elapsed().as_nanos() as u64, self.size);
        match self
            .http
            .call("POST", "/topics/cmp", "text/plain", data.as_bytes())?
        {
            (201, _) => Ok(seq),
            (status, text) => Err(io::Error::other(format!(
                "publish answered {status}: {text}"
            ))),
        }
    }

    /// `n` events, one every `rate` (on a fixed schedule: a late one does not push the
    /// others back); their seqs.
    fn run(&mut self, n: u64, rate: Duration) -> io::Result<Range<u64>> {
        let first = self.seq;
        let start = Instant::now();
        for i in 0..n {
            let at = start + rate.mul_f64(i as f64);
            if let Some(wait) = at.checked_duration_since(Instant::now()) {
                std::thread::sleep(wait);
            }
            self.publish()?;
        }
        Ok(first..self.seq)
    }
}

struct Subscriber {
    mech: Mech,
    sub: Arc<Sub>,
    resumes_with: &'static str,
}

fn has_all(sub: &Sub, range: Range<u64>) -> bool {
    table::latencies(&sub.got(), range).1 == 0
}

/// Waits until every subscriber has every event of `range`, at most `limit`.
fn wait_all(subs: &[Subscriber], range: Range<u64>, limit: Duration) {
    let deadline = Instant::now() + limit;
    while Instant::now() < deadline && !subs.iter().all(|s| has_all(&s.sub, range.clone())) {
        std::thread::sleep(Duration::from_millis(5));
    }
}

fn wait_until(limit: Duration, what: &str, done: impl Fn() -> bool) -> io::Result<()> {
    let deadline = Instant::now() + limit;
    while !done() {
        if Instant::now() > deadline {
            return Err(io::Error::other(format!("timed out waiting for {what}")));
        }
        std::thread::sleep(Duration::from_millis(1));
    }
    Ok(())
}

fn run(o: &Opts) -> io::Result<Vec<Row>> {
    let base = Instant::now();
    let server = ServerProc::start(16, o.retry)?;
    let hook = hook::spawn(base)?;
    let mut admin = Http::connect(server.addr)?;
    let form = format!("url=http://{}/hook", hook.addr);
    let (status, secret) = admin.call(
        "POST",
        "/topics/cmp/webhooks",
        "application/x-www-form-urlencoded",
        form.as_bytes(),
    )?;
    let secret = match (status, Secret::parse(secret.trim())) {
        (201, Ok(s)) => s,
        _ => {
            return Err(io::Error::other(format!(
                "webhook registration answered {status}: {secret}"
            )))
        }
    };
    let _ = hook.secret.set(secret);
    let subs = [
        Subscriber {
            mech: Mech::Ws,
            sub: subs::spawn(Kind::Ws, server.addr, base),
            resumes_with: "?since=<last id>",
        },
        Subscriber {
            mech: Mech::Sse,
            sub: subs::spawn(Kind::Sse, server.addr, base),
            resumes_with: "Last-Event-ID: <last id>",
        },
        Subscriber {
            mech: Mech::Poll,
            sub: subs::spawn(Kind::Poll, server.addr, base),
            resumes_with: "?since=<next>",
        },
        Subscriber {
            mech: Mech::Webhook,
            sub: hook.sub.clone(),
            resumes_with: "the sender's retry schedule",
        },
    ];
    wait_until(Duration::from_secs(5), "the subscribers to connect", || {
        subs.iter().all(|s| s.sub.ready.load(Relaxed))
    })?;
    let mut publisher = Publisher {
        http: Http::connect(server.addr)?,
        seq: 0,
        base,
        size: o.size,
    };

    // Warm-up: every subscriber has an event (and the webhook a pooled connection).
    let warm = publisher.run(3, Duration::from_millis(20))?;
    wait_all(&subs, warm.clone(), Duration::from_secs(5));
    if let Some(s) = subs.iter().find(|s| !has_all(&s.sub, warm.clone())) {
        return Err(io::Error::other(format!(
            "{}: no warm-up event ({:?})",
            name(s.mech),
            s.sub.error.lock().ok()
        )));
    }

    let before: Vec<_> = subs.iter().map(|s| s.sub.meter.snapshot()).collect();
    let steady = publisher.run(o.events, o.rate)?;
    wait_all(&subs, steady.clone(), Duration::from_secs(10));
    let after: Vec<_> = subs.iter().map(|s| s.sub.meter.snapshot()).collect();

    // The drop: everyone away, events published, everyone back, more events.
    for s in &subs {
        s.sub.down.store(true, Relaxed);
    }
    wait_until(Duration::from_secs(5), "the connections to drop", || {
        hook.live.load(Relaxed) == 0 && subs[..3].iter().all(|s| s.sub.is_down.load(Relaxed))
    })?;
    let away = publisher.run(o.drop, o.rate)?;
    hook.sub
        .back_ns
        .store(base.elapsed().as_nanos() as u64, Relaxed);
    for s in &subs {
        s.sub.down.store(false, Relaxed);
    }
    let live = publisher.run(o.drop, o.rate)?;
    let retry = o.retry.unwrap_or(5.0);
    wait_all(
        &subs,
        away.start..live.end,
        Duration::from_secs_f64(30.0 + 3.0 * retry),
    );
    // Errors seen until now (after this the server goes away and every reader sees EOF).
    let errors: Vec<_> = subs
        .iter()
        .map(|s| s.sub.error.lock().ok().and_then(|e| e.clone()))
        .collect();
    for s in &subs {
        s.sub.stop.store(true, Relaxed);
    }
    drop(server);

    let mut rows = Vec::new();
    for (((s, b), a), error) in subs.iter().zip(before).zip(after).zip(errors) {
        let got = s.sub.got();
        let (latencies, _, _) = table::latencies(&got, steady.clone());
        let (_, missed, duplicates) = table::latencies(&got, away.start..live.end);
        let back = s.sub.back_ns.load(Relaxed);
        let resume_ns = (table::latencies(&got, away.clone()).1 == 0).then(|| {
            let last = got
                .iter()
                .filter(|g| away.contains(&g.seq))
                .map(|g| g.recv_ns)
                .max();
            last.unwrap_or(back).saturating_sub(back)
        });
        if let Some(e) = error {
            eprintln!("{}: {e}", name(s.mech));
        }
        rows.push(Row {
            name: name(s.mech),
            latencies,
            events: steady.end - steady.start,
            steady: a - b,
            idle_bytes: None,
            missed,
            duplicates,
            resume_ns,
            resumes_with: s.resumes_with,
        });
    }
    for row in &mut rows {
        let mech = subs
            .iter()
            .find(|s| name(s.mech) == row.name)
            .map(|s| s.mech);
        if let Some(mech) = mech {
            row.idle_bytes = Some(idle::per_subscriber(mech, o.idle)?);
        }
    }
    Ok(rows)
}

fn name(m: Mech) -> &'static str {
    match m {
        Mech::Ws => "WebSocket",
        Mech::Sse => "SSE",
        Mech::Poll => "long poll",
        Mech::Webhook => "webhook",
    }
}
