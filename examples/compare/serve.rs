//! `compare --serve`: the server side of the comparison, in a process of its own so that
//! its memory can be read from `/proc/PID/status`.
//!
//! The hub's four subscribe routes and its publish and webhook routes, on the library API
//! alone (so the bytes on the wire are the library's, with none of the hub's extras such as
//! CORS fields): `POST /topics/{t}` publishes the body, `GET /topics/{t}/ws?since=N`,
//! `GET /topics/{t}/sse` (`Last-Event-ID`), `GET /topics/{t}/poll?since=N&timeout=S`,
//! `POST /topics/{t}/webhooks` (form `url=...`, answers the secret), `GET /stats`.

use std::io::Read;
use std::time::Duration;

use pushwire::proto::webhook::Schedule;
use pushwire::{form_pairs, App, Config, ConnId, Ctx, Park, Reply, Request, Response, Server};
use pushwire::{SseStream, WsAccept};

/// The longest a long poll may wait (the idle phase parks polls for its whole length).
const POLL_MAX: Duration = Duration::from_secs(120);

struct Serve;

impl App for Serve {
    fn on_request(&mut self, cx: &mut Ctx<'_>, _conn: ConnId, req: &Request) -> Reply {
        if req.path() == "/stats" {
            let s = cx.stats();
            let w = cx.webhook_stats();
            let text = format!(
                "websocket={} sse={} parked={} http={} published={} webhook_attempts={} webhook_delivered={}\n",
                s.websocket, s.sse, s.parked, s.http, s.published, w.attempts, w.delivered
            );
            return Response::text(200, text).into();
        }
        let Some(rest) = req.path().strip_prefix("/topics/") else {
            return Response::text(404, "not found\n").into();
        };
        let (topic, tail) = rest.split_once('/').unwrap_or((rest, ""));
        match (req.method.as_str(), tail) {
            ("POST", "") => {
                let data = String::from_utf8_lossy(&req.body);
                match cx.publish(topic, None, &data) {
                    Ok(id) => Response::text(201, id.to_string()).into(),
                    Err(e) => Response::text(e.status(), format!("{e}\n")).into(),
                }
            }
            ("GET", "ws") => match req.resume_cursor() {
                Ok(since) => Reply::WebSocket(WsAccept::new().subscribe(topic, since)),
                Err(e) => e.into(),
            },
            ("GET", "sse") => match req.resume_cursor() {
                Ok(last) => Reply::Sse(SseStream::new(topic).resume_after(last)),
                Err(e) => e.into(),
            },
            ("GET", "poll") => {
                let since = match req.number_param("since") {
                    Ok(s) => s.unwrap_or(0),
                    Err(e) => return e.into(),
                };
                match req.poll_timeout(Duration::from_secs(30), POLL_MAX) {
                    Ok(timeout) => Reply::Park(Park::new(topic, since, timeout)),
                    Err(e) => e.into(),
                }
            }
            ("POST", "webhooks") => {
                let pairs = form_pairs(&req.body).unwrap_or_default();
                let url = pairs.iter().find(|(k, _)| k == "url").map(|(_, v)| v);
                match cx.add_webhook(topic, url.map_or("", |u| u.as_str()), None) {
                    Ok(created) => Response::text(201, created.secret).into(),
                    Err(e) => Response::text(400, format!("{e}\n")).into(),
                }
            }
            _ => Response::text(404, "not found\n").into(),
        }
    }
}

/// Runs the server on 127.0.0.1:0, prints `port N` on stdout and serves until its stdin
/// closes (the parent exited, however it ended). `max_subs`: the idle phase's count, for
/// the connection and per-topic webhook limits. `retry`: the first webhook retry delay in
/// seconds, `None` for the library's schedule.
pub fn run(max_subs: usize, retry: Option<f64>) -> ! {
    let mut config = Config::new()
        .webhook_allow_private(true)
        .webhook_max_per_topic(max_subs + 16)
        .max_connections(max_subs + 64);
    if let Some(first) = retry {
        // The library's shape (a short first retry, then longer ones), shortened.
        let secs: Vec<f64> = (0..6).map(|i| first * 4f64.powi(i)).collect();
        match Schedule::from_secs(&secs) {
            Ok(s) => config = config.webhook_schedule(s),
            Err(e) => fail(&format!("--webhook-retry: {e}")),
        }
    }
    let mut server =
        Server::bind("127.0.0.1:0", config, Serve).unwrap_or_else(|e| fail(&format!("bind: {e}")));
    println!("port {}", server.local_addr().port());
    std::thread::spawn(|| {
        let mut sink = [0u8; 64];
        while matches!(std::io::stdin().read(&mut sink), Ok(n) if n > 0) {}
        std::process::exit(0);
    });
    if let Err(e) = server.run() {
        fail(&format!("the event loop failed: {e}"));
    }
    std::process::exit(0)
}

fn fail(what: &str) -> ! {
    eprintln!("compare --serve: {what}");
    std::process::exit(1)
}
