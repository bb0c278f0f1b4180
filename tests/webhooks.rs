//! Issue 5: outbound webhooks, delivered by the loop to scripted receivers on loopback.

mod util;

use std::collections::HashMap;
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{mpsc, Arc, Mutex};
use std::thread;
use std::time::{Duration, Instant};

use pushwire::proto::webhook::{verify, Outcome, Schedule, Secret, DEFAULT_TOLERANCE};
use pushwire::{
    App, Config, ConnId, Ctx, Handle, Reply, Request, Response, Server, WebhookOutcome,
};

/// One request a receiver got.
#[derive(Debug, Clone)]
struct Rec {
    path: String,
    headers: Vec<(String, String)>,
    body: Vec<u8>,
    at: Instant,
}

impl Rec {
    fn header(&self, name: &str) -> &str {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map_or("", |(_, v)| v)
    }
}

/// What a scripted receiver answers: raw response bytes (or None: never answer), and
/// whether to close the connection afterwards.
type Script = Arc<dyn Fn(&Rec, usize) -> (Option<Vec<u8>>, bool) + Send + Sync>;

/// Every request so far, and how many times each (path, webhook-id) was seen.
type Log = Arc<Mutex<(Vec<Rec>, HashMap<(String, String), usize>)>>;

struct Receiver {
    addr: SocketAddr,
    recs: Log,
    accepted: Arc<AtomicUsize>,
}

impl Receiver {
    fn start(script: Script) -> Receiver {
        let l = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = l.local_addr().unwrap();
        let recs = Arc::new(Mutex::new((Vec::new(), HashMap::new())));
        let accepted = Arc::new(AtomicUsize::new(0));
        let (r2, a2) = (recs.clone(), accepted.clone());
        thread::spawn(move || {
            for s in l.incoming() {
                let Ok(s) = s else { break };
                a2.fetch_add(1, Ordering::SeqCst);
                let (r3, sc) = (r2.clone(), script.clone());
                thread::spawn(move || serve(s, r3, sc));
            }
        });
        Receiver {
            addr,
            recs,
            accepted,
        }
    }

    fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.addr)
    }

    fn recs(&self) -> Vec<Rec> {
        self.recs.lock().unwrap().0.clone()
    }
}

fn serve(mut s: TcpStream, recs: Log, script: Script) {
    let mut buf = Vec::new();
    let mut tmp = [0u8; 8192];
    s.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
    loop {
        // Read one request: head, then Content-Length body.
        let (rec, used) = loop {
            let mut hdrs = [httparse::EMPTY_HEADER; 32];
            let mut req = httparse::Request::new(&mut hdrs);
            if let Ok(httparse::Status::Complete(n)) = req.parse(&buf) {
                let headers: Vec<(String, String)> = req
                    .headers
                    .iter()
                    .map(|h| {
                        (
                            h.name.to_owned(),
                            String::from_utf8_lossy(h.value).into_owned(),
                        )
                    })
                    .collect();
                let len: usize = headers
                    .iter()
                    .find(|(n, _)| n.eq_ignore_ascii_case("content-length"))
                    .map_or(0, |(_, v)| v.parse().unwrap());
                if buf.len() >= n + len {
                    let rec = Rec {
                        path: req.path.unwrap().to_owned(),
                        headers,
                        body: buf[n..n + len].to_vec(),
                        at: Instant::now(),
                    };
                    break (rec, n + len);
                }
            }
            match s.read(&mut tmp) {
                Ok(0) | Err(_) => return,
                Ok(k) => buf.extend_from_slice(&tmp[..k]),
            }
        };
        buf.drain(..used);
        let nth = {
            let mut g = recs.lock().unwrap();
            g.0.push(rec.clone());
            let n =
                g.1.entry((rec.path.clone(), rec.header("webhook-id").to_owned()))
                    .or_default();
            *n += 1;
            *n
        };
        let (answer, close) = script(&rec, nth);
        match answer {
            Some(bytes) => {
                if s.write_all(&bytes).is_err() {
                    return;
                }
            }
            None => {
                // Never answer: hold the connection until the sender gives up.
                let _ = s.read(&mut tmp);
                return;
            }
        }
        if close {
            return;
        }
    }
}

fn status(code: u16) -> Vec<u8> {
    if code == 204 {
        return b"HTTP/1.1 204 No Content\r\n\r\n".to_vec();
    }
    format!("HTTP/1.1 {code} X\r\nContent-Length: 2\r\n\r\nok").into_bytes()
}

/// The test application: publishes on POST, records webhook outcomes.
struct HookApp {
    outcomes: Arc<Mutex<Vec<WebhookOutcome>>>,
}

impl App for HookApp {
    fn on_request(&mut self, cx: &mut Ctx<'_>, _conn: ConnId, req: &Request) -> Reply {
        if req.method == "POST" {
            let id = cx
                .publish("t", None, std::str::from_utf8(&req.body).unwrap())
                .unwrap();
            return Response::text(201, id.to_string()).into();
        }
        Response::text(200, "ok").into()
    }

    fn on_webhook(&mut self, _cx: &mut Ctx<'_>, outcome: &WebhookOutcome) {
        self.outcomes.lock().unwrap().push(outcome.clone());
    }
}

struct Running {
    addr: SocketAddr,
    handle: Handle,
    outcomes: Arc<Mutex<Vec<WebhookOutcome>>>,
    thread: Option<thread::JoinHandle<()>>,
}

impl Drop for Running {
    fn drop(&mut self) {
        self.handle.stop();
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

fn fast_schedule() -> Schedule {
    Schedule::from_secs(&[0.05, 0.05, 0.05]).unwrap()
}

fn run(config: Config) -> Running {
    let outcomes = Arc::new(Mutex::new(Vec::new()));
    let o2 = outcomes.clone();
    let (tx, rx) = mpsc::channel();
    let thread = thread::spawn(move || {
        let mut server = Server::bind("127.0.0.1:0", config, HookApp { outcomes: o2 }).unwrap();
        tx.send((server.local_addr(), server.handle())).unwrap();
        server.run().unwrap();
    });
    let (addr, handle) = rx.recv().unwrap();
    Running {
        addr,
        handle,
        outcomes,
        thread: Some(thread),
    }
}

impl Running {
    /// Registers a webhook on topic "t"; returns (id, secret).
    fn add(&self, url: &str) -> Result<(String, String), String> {
        let (tx, rx) = mpsc::channel();
        let url = url.to_owned();
        self.handle.run(move |cx| {
            let r = cx
                .add_webhook("t", &url, None)
                .map(|c| (c.id, c.secret))
                .map_err(|e| e.to_string());
            tx.send(r).unwrap();
        });
        rx.recv_timeout(Duration::from_secs(5)).unwrap()
    }

    /// Publishes on "t"; returns the event id (HookApp answers it as the body).
    fn publish(&self, data: &str) -> u64 {
        let r = util::post(self.addr, "/pub", data);
        assert_eq!(r.status, 201);
        r.text().parse().unwrap()
    }

    fn wait_outcomes(&self, n: usize, secs: u64) -> Vec<WebhookOutcome> {
        let deadline = Instant::now() + Duration::from_secs(secs);
        loop {
            let got = self.outcomes.lock().unwrap().clone();
            if got.len() >= n || Instant::now() > deadline {
                return got;
            }
            thread::sleep(Duration::from_millis(10));
        }
    }
}

fn check_signature(rec: &Rec, secret: &str) {
    let secret = Secret::parse(secret).unwrap();
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs();
    verify(
        &[secret],
        rec.header("webhook-id"),
        rec.header("webhook-timestamp"),
        rec.header("webhook-signature"),
        &rec.body,
        now,
        DEFAULT_TOLERANCE,
    )
    .unwrap_or_else(|e| panic!("bad signature on {rec:?}: {e}"));
}

#[test]
fn failing_twice_then_ok_is_one_delivery_with_a_stable_id() {
    let rx = Receiver::start(Arc::new(|_, nth| {
        (Some(status(if nth <= 2 { 500 } else { 200 })), false)
    }));
    let srv = run(Config::new()
        .webhook_allow_private(true)
        .webhook_schedule(fast_schedule()));
    let (_, secret) = srv.add(&rx.url("/flaky")).unwrap();
    let id = srv.publish("hello \"hooks\" ✓");
    let outcomes = srv.wait_outcomes(1, 10);
    assert_eq!(outcomes.len(), 1);
    assert!(
        matches!(outcomes[0].outcome, Outcome::Delivered { attempts: 3, .. }),
        "{outcomes:?}"
    );
    let recs = rx.recs();
    assert_eq!(recs.len(), 3);
    assert!(recs
        .iter()
        .all(|r| r.header("webhook-id") == recs[0].header("webhook-id")));
    assert_eq!(outcomes[0].webhook_id, recs[0].header("webhook-id"));
    for r in &recs {
        check_signature(r, &secret);
        let body = String::from_utf8(r.body.clone()).unwrap();
        assert!(
            body.starts_with(r#"{"type":"message","timestamp":""#),
            "{body}"
        );
        assert!(
            body.ends_with(&format!(
                r#""data":{{"topic":"t","id":{id},"event":null,"data":"hello \"hooks\" ✓"}}}}"#
            )),
            "{body}"
        );
        assert_eq!(r.header("content-type"), "application/json");
    }
    // Only one outcome, ever.
    thread::sleep(Duration::from_millis(300));
    assert_eq!(srv.outcomes.lock().unwrap().len(), 1);
}

#[test]
fn gone_fails_at_once_and_disables_the_endpoint() {
    let rx = Receiver::start(Arc::new(|_, _| (Some(status(410)), false)));
    let srv = run(Config::new()
        .webhook_allow_private(true)
        .webhook_schedule(fast_schedule()));
    srv.add(&rx.url("/gone")).unwrap();
    srv.publish("a");
    let outcomes = srv.wait_outcomes(1, 10);
    assert!(
        matches!(&outcomes[0].outcome, Outcome::Failed { attempts: 1, .. }),
        "{outcomes:?}"
    );
    let (tx, r) = mpsc::channel();
    srv.handle
        .run(move |cx| tx.send((cx.webhooks("t"), cx.webhook_stats())).unwrap());
    let (list, stats) = r.recv().unwrap();
    assert!(list[0].disabled);
    assert_eq!(stats.endpoints_disabled, 1);
    srv.publish("b");
    let outcomes = srv.wait_outcomes(2, 5);
    assert!(
        matches!(&outcomes[1].outcome, Outcome::Failed { attempts: 0, .. }),
        "{outcomes:?}"
    );
    assert_eq!(rx.recs().len(), 1, "a disabled endpoint gets nothing more");
}

#[test]
fn a_receiver_that_never_answers_times_out_and_is_retried() {
    let rx = Receiver::start(Arc::new(|_, nth| {
        (if nth == 1 { None } else { Some(status(204)) }, false)
    }));
    let srv = run(Config::new()
        .webhook_allow_private(true)
        .webhook_schedule(fast_schedule())
        .webhook_timeout(Duration::from_millis(300)));
    srv.add(&rx.url("/slow")).unwrap();
    let t = Instant::now();
    srv.publish("x");
    let outcomes = srv.wait_outcomes(1, 10);
    assert!(
        matches!(outcomes[0].outcome, Outcome::Delivered { attempts: 2, .. }),
        "{outcomes:?}"
    );
    assert!(t.elapsed() >= Duration::from_millis(300));
    assert_eq!(rx.recs().len(), 2);
}

#[test]
fn retry_after_is_honoured() {
    let rx = Receiver::start(Arc::new(|_, nth| {
        if nth == 1 {
            (
                Some(
                    b"HTTP/1.1 429 Slow Down\r\nRetry-After: 1\r\nContent-Length: 0\r\n\r\n"
                        .to_vec(),
                ),
                false,
            )
        } else {
            (Some(status(200)), false)
        }
    }));
    let srv = run(Config::new()
        .webhook_allow_private(true)
        .webhook_schedule(fast_schedule()));
    srv.add(&rx.url("/ra")).unwrap();
    srv.publish("x");
    let outcomes = srv.wait_outcomes(1, 10);
    assert!(
        matches!(outcomes[0].outcome, Outcome::Delivered { attempts: 2, .. }),
        "{outcomes:?}"
    );
    let recs = rx.recs();
    let gap = recs[1].at - recs[0].at;
    assert!(gap >= Duration::from_millis(950), "retried after {gap:?}");
}

#[test]
fn receivers_closing_keep_alive_connections_lose_nothing() {
    // Answers keep-alive (no Connection: close) but closes the socket after every answer.
    let rx = Receiver::start(Arc::new(|_, _| (Some(status(200)), true)));
    let srv = run(Config::new()
        .webhook_allow_private(true)
        .webhook_schedule(Schedule::from_secs(&[]).unwrap())
        .webhook_max_in_flight(1));
    srv.add(&rx.url("/closer")).unwrap();
    for i in 0..50 {
        srv.publish(&format!("e{i}"));
        thread::sleep(Duration::from_millis(2));
    }
    let outcomes = srv.wait_outcomes(50, 20);
    assert_eq!(outcomes.len(), 50);
    assert!(
        outcomes
            .iter()
            .all(|o| matches!(o.outcome, Outcome::Delivered { attempts: 1, .. })),
        "{outcomes:?}"
    );
    assert_eq!(rx.recs().len(), 50);
}

#[test]
fn thousand_events_to_ten_endpoints() {
    let rx = Receiver::start(Arc::new(|_, _| (Some(status(204)), false)));
    let srv = run(Config::new()
        .webhook_allow_private(true)
        .webhook_schedule(fast_schedule()));
    for e in 0..10 {
        srv.add(&rx.url(&format!("/ep{e}"))).unwrap();
    }
    let mut s = util::connect(srv.addr);
    let mut buf = Vec::new();
    let mut published = Vec::new();
    for i in 0..1000 {
        let body = format!("event {i}");
        write!(
            s,
            "POST /pub HTTP/1.1\r\nHost: t\r\nContent-Length: {}\r\n\r\n{body}",
            body.len()
        )
        .unwrap();
        let r = util::read_response(&mut s, &mut buf, false).unwrap();
        assert_eq!(r.status, 201);
        published.push(r.text().parse::<u64>().unwrap());
    }
    let first = published[0];
    let want: Vec<u64> = (first..first + 1000).collect();
    assert_eq!(published, want, "publish ids are not consecutive");
    let outcomes = srv.wait_outcomes(10_000, 60);
    let st = util::get(srv.addr, "/x");
    assert_eq!(
        outcomes.len(),
        10_000,
        "each message has exactly one outcome; accepted {}; {}",
        rx.accepted.load(Ordering::SeqCst),
        st.status
    );
    let mut ids: Vec<&str> = outcomes.iter().map(|o| o.webhook_id.as_str()).collect();
    ids.sort_unstable();
    let per_id = ids
        .chunk_by(|a, b| a == b)
        .map(<[&str]>::len)
        .collect::<Vec<_>>();
    assert_eq!(per_id.len(), 1000);
    assert!(per_id.iter().all(|n| *n == 10));
    let recs = rx.recs();
    for e in 0..10 {
        let path = format!("/ep{e}");
        let mut got: Vec<u64> = recs
            .iter()
            .filter(|r| r.path == path)
            .map(|r| util::json_u64(&String::from_utf8_lossy(&r.body), "id").unwrap())
            .collect();
        got.sort_unstable();
        got.dedup();
        assert_eq!(got, want, "endpoint {path}");
    }
    let accepted = rx.accepted.load(Ordering::SeqCst);
    assert!(
        accepted <= 500,
        "connections are pooled and reused: {accepted} for 10,000 requests"
    );
}

#[test]
fn refused_targets_are_never_connected_to() {
    let rx = Receiver::start(Arc::new(|_, _| (Some(status(200)), false)));
    let port = rx.addr.port();
    let resolver: pushwire::Resolver =
        Arc::new(move |_host: &str, _port: u16| Ok(vec![SocketAddr::from(([127, 0, 0, 1], port))]));
    let srv = run(Config::new()
        .webhook_schedule(fast_schedule())
        .webhook_resolver(resolver));
    // An IP literal in a refused range: refused at registration.
    for url in [
        "http://127.0.0.1:9/",
        "http://10.1.2.3/",
        "http://169.254.169.254/latest",
        "http://[::1]/",
        "http://100.64.0.1/",
    ] {
        let e = srv.add(url).unwrap_err();
        assert!(e.contains("refusing"), "{url}: {e}");
    }
    // The same rules for https (refused for want of TLS in a build without it).
    for url in ["https://10.1.2.3/", "https://[::1]:8443/"] {
        let e = srv.add(url).unwrap_err();
        let why = if cfg!(feature = "tls") {
            "refusing"
        } else {
            "tls"
        };
        assert!(e.contains(why), "{url}: {e}");
    }
    assert!(srv.add("http://user:pw@example.com/").is_err());
    // A name that resolves to loopback: refused right before connecting.
    srv.add(&format!("http://rebind.test:{port}/hook")).unwrap();
    srv.publish("secret stuff");
    let outcomes = srv.wait_outcomes(1, 10);
    match &outcomes[0].outcome {
        Outcome::Failed { error, .. } => assert!(error.contains("loopback"), "{error}"),
        o => panic!("{o:?}"),
    }
    assert_eq!(
        rx.accepted.load(Ordering::SeqCst),
        0,
        "the refused target was connected to"
    );
    // https is accepted with the `tls` feature, refused with the reason without it.
    let https = srv.add("https://example.com/");
    assert_eq!(https.is_ok(), cfg!(feature = "tls"), "{https:?}");
    if let Err(e) = https {
        assert!(e.contains("tls"), "{e}");
    }
}

#[test]
fn a_slow_name_lookup_does_not_stall_the_loop() {
    let rx = Receiver::start(Arc::new(|_, _| (Some(status(200)), false)));
    let port = rx.addr.port();
    let resolver: pushwire::Resolver = Arc::new(move |host: &str, _port: u16| {
        if host == "slow.test" {
            thread::sleep(Duration::from_secs(2));
        }
        Ok(vec![SocketAddr::from(([127, 0, 0, 1], port))])
    });
    let srv = run(Config::new()
        .webhook_allow_private(true)
        .webhook_resolver(resolver));
    srv.add(&format!("http://slow.test:{port}/hook")).unwrap();
    let t = Instant::now();
    srv.publish("x");
    // While the resolver thread sleeps, the loop keeps answering.
    for _ in 0..20 {
        let t1 = Instant::now();
        assert_eq!(util::get(srv.addr, "/").status, 200);
        assert!(
            t1.elapsed() < Duration::from_millis(500),
            "the loop stalled for {:?}",
            t1.elapsed()
        );
        thread::sleep(Duration::from_millis(20));
    }
    assert!(
        t.elapsed() < Duration::from_millis(1900),
        "requests should have overlapped the lookup"
    );
    let outcomes = srv.wait_outcomes(1, 10);
    assert!(
        matches!(outcomes[0].outcome, Outcome::Delivered { attempts: 1, .. }),
        "{outcomes:?}"
    );
    assert!(t.elapsed() >= Duration::from_secs(2));
}

#[test]
fn a_lookup_that_never_answers_still_ends_the_attempt() {
    let resolver: pushwire::Resolver = Arc::new(|_host: &str, _port: u16| {
        thread::sleep(Duration::from_secs(10));
        Ok(vec![SocketAddr::from(([127, 0, 0, 1], 9))])
    });
    let srv = run(Config::new()
        .webhook_allow_private(true)
        .webhook_resolver(resolver)
        .webhook_schedule(Schedule::from_secs(&[]).unwrap())
        .webhook_timeout(Duration::from_millis(300)));
    srv.add("http://stuck.test/hook").unwrap();
    let t = Instant::now();
    srv.publish("x");
    let outcomes = srv.wait_outcomes(1, 5);
    assert!(
        matches!(&outcomes[0].outcome, Outcome::Failed { attempts: 1, error } if error.contains("time")),
        "{outcomes:?}"
    );
    assert!(t.elapsed() < Duration::from_secs(3));
}

#[test]
fn stopping_gives_every_pending_message_its_outcome() {
    let rx = Receiver::start(Arc::new(|_, _| (None, false)));
    let mut srv = run(Config::new()
        .webhook_allow_private(true)
        .webhook_max_in_flight(1));
    srv.add(&rx.url("/never")).unwrap();
    for i in 0..3 {
        srv.publish(&format!("e{i}"));
    }
    // One in flight (never answered), two queued behind it.
    let deadline = Instant::now() + Duration::from_secs(5);
    while rx.recs().is_empty() {
        assert!(Instant::now() < deadline);
        thread::sleep(Duration::from_millis(10));
    }
    srv.handle.stop();
    srv.thread.take().unwrap().join().unwrap();
    let outcomes = srv.outcomes.lock().unwrap().clone();
    assert_eq!(outcomes.len(), 3, "{outcomes:?}");
    assert!(outcomes
        .iter()
        .all(|o| matches!(o.outcome, Outcome::Failed { .. })));
}

/// A data directory for one test, removed at the end.
struct TmpDir(std::path::PathBuf);

impl TmpDir {
    fn new(tag: &str) -> TmpDir {
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_nanos();
        let name = format!("pushwire-{tag}-{}-{nanos}", std::process::id());
        TmpDir(std::env::temp_dir().join(name))
    }
}

impl Drop for TmpDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

#[test]
fn a_restart_resumes_the_outbox_with_the_same_ids_and_schedule() {
    let rx = Receiver::start(Arc::new(|_, nth| {
        (Some(status(if nth == 1 { 500 } else { 200 })), false)
    }));
    let dir = TmpDir::new("outbox");
    let config = || {
        Config::new()
            .webhook_allow_private(true)
            .webhook_schedule(Schedule::from_secs(&[2.0]).unwrap())
            .data_dir(&dir.0)
    };
    let mut srv = run(config());
    let (hook, _secret) = srv.add(&rx.url("/in")).unwrap();
    let id = srv.publish("e1");
    let deadline = Instant::now() + Duration::from_secs(5);
    while rx.recs().is_empty() {
        assert!(Instant::now() < deadline, "no first attempt");
        thread::sleep(Duration::from_millis(10));
    }
    // The failed attempt is recorded; then a graceful stop, which gives the message an
    // outcome for this run's application but not a final one in the log.
    thread::sleep(Duration::from_millis(200));
    srv.handle.stop();
    srv.thread.take().unwrap().join().unwrap();
    drop(srv);

    let srv = run(config());
    // The retry comes about 2 s (+-20% jitter) after the first attempt (not at once, not
    // from zero), with
    // the same webhook-id, and the message ends delivered at its second attempt.
    let outcomes = srv.wait_outcomes(1, 10);
    assert_eq!(outcomes.len(), 1, "{outcomes:?}");
    assert_eq!(outcomes[0].endpoint, hook);
    assert!(
        matches!(outcomes[0].outcome, Outcome::Delivered { attempts: 2, .. }),
        "{outcomes:?}"
    );
    let recs = rx.recs();
    assert_eq!(recs.len(), 2, "{recs:?}");
    assert_eq!(recs[0].header("webhook-id"), recs[1].header("webhook-id"));
    assert_eq!(outcomes[0].webhook_id, recs[0].header("webhook-id"));
    let waited = recs[1].at - recs[0].at;
    assert!(
        waited >= Duration::from_millis(1500),
        "retried after {waited:?}"
    );
    assert!(std::str::from_utf8(&recs[1].body)
        .unwrap()
        .contains(&format!("\"id\":{id}")));
    // The registration survived with its id; a new one gets another id; the history too.
    let (second, _) = srv.add(&rx.url("/other")).unwrap();
    assert_ne!(second, hook);
    let next = srv.publish("e2");
    assert_eq!(next, id + 1, "ids continue after a restart");
    // A removal survives the next restart too.
    let (tx, rx_done) = mpsc::channel();
    let gone = hook.clone();
    srv.handle
        .run(move |cx| tx.send(cx.remove_webhook("t", &gone)).unwrap());
    assert!(rx_done.recv_timeout(Duration::from_secs(5)).unwrap());
    drop(srv);
    let srv = run(config());
    let (tx, rx_list) = mpsc::channel();
    srv.handle.run(move |cx| {
        let ids: Vec<String> = cx.webhooks("t").into_iter().map(|w| w.id).collect();
        tx.send(ids).unwrap();
    });
    let ids = rx_list.recv_timeout(Duration::from_secs(5)).unwrap();
    assert_eq!(ids, vec![second]);
}

#[test]
fn a_refused_address_falls_back_to_the_hosts_next_one() {
    let rx = Receiver::start(Arc::new(|_, _| (Some(status(200)), false)));
    let good = rx.addr;
    // A port nobody listens on (bound, then closed).
    let dead = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap();
    let resolver: pushwire::Resolver = Arc::new(move |host: &str, _port: u16| {
        Ok(match host {
            "two.test" => vec![dead, good],
            _ => vec![dead, dead],
        })
    });
    let srv = run(Config::new()
        .webhook_allow_private(true)
        .webhook_resolver(resolver)
        .webhook_schedule(Schedule::from_secs(&[]).unwrap()));
    // The name's first address refuses: the second one gets it, in the same attempt.
    srv.add(&format!("http://two.test:{}/hook", good.port()))
        .unwrap();
    srv.publish("x");
    let outcomes = srv.wait_outcomes(1, 10);
    assert!(
        matches!(&outcomes[0].outcome, Outcome::Delivered { attempts: 1, .. }),
        "{outcomes:?}"
    );
    assert_eq!(rx.recs().len(), 1);
    // Every address refuses: one failed attempt naming the last one tried.
    srv.add(&format!("http://none.test:{}/hook", dead.port()))
        .unwrap_or_else(|e| panic!("{e}"));
    srv.publish("y");
    let outcomes = srv.wait_outcomes(3, 10);
    let failed: Vec<_> = outcomes
        .iter()
        .filter_map(|o| match &o.outcome {
            Outcome::Failed { attempts, error } => Some((*attempts, error.clone())),
            _ => None,
        })
        .collect();
    assert_eq!(failed.len(), 1, "{outcomes:?}");
    assert_eq!(failed[0].0, 1);
    assert!(failed[0].1.contains(&dead.to_string()), "{failed:?}");
}
