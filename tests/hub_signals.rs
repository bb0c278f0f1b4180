//! Issue 16: SIGINT/SIGTERM stop the hub gracefully (WebSockets closed with 1001, SSE
//! streams ended with the last chunk, parked polls answered, webhook attempts in flight
//! finished or, with a data directory, kept for the next start), and a second signal stops
//! it at once. The hub runs as a real process on loopback; signals are sent with kill(2).

mod util;

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::thread;
use std::time::{Duration, Instant};

use util::{connect, read_response, request, WsClient};

/// Starts the hub on an ephemeral port; its stderr goes to `log`.
fn spawn(args: &[&str], log: &std::path::Path) -> (Child, SocketAddr) {
    let mut child = Command::new(util::example_bin("hub"))
        .args(["--addr", "127.0.0.1:0"])
        .args(args)
        .env("PUSHWIRE_LOG", "info")
        .stdout(Stdio::piped())
        .stderr(std::fs::File::create(log).unwrap())
        .spawn()
        .expect("spawn hub");
    let mut line = String::new();
    BufReader::new(child.stdout.take().unwrap())
        .read_line(&mut line)
        .unwrap();
    let addr = line.trim().rsplit("//").next().unwrap().parse().unwrap();
    (child, addr)
}

fn signal(child: &Child, sig: libc::c_int) {
    // SAFETY: kill(2) on our own child's pid; no memory is involved.
    assert_eq!(unsafe { libc::kill(child.id() as libc::pid_t, sig) }, 0);
}

/// Waits (at most `limit`) for the hub to exit; its status, or `None` (then it is killed).
fn wait_exit(child: &mut Child, limit: Duration) -> Option<std::process::ExitStatus> {
    let end = Instant::now() + limit;
    while Instant::now() < end {
        if let Some(st) = child.try_wait().unwrap() {
            return Some(st);
        }
        thread::sleep(Duration::from_millis(20));
    }
    let _ = child.kill();
    let _ = child.wait();
    None
}

fn temp(name: &str) -> std::path::PathBuf {
    let d = std::env::temp_dir().join(format!("pushwire-signals-{}-{name}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    d
}

/// Reads one HTTP request (head and Content-Length body); its `webhook-id`.
fn read_hook(s: &mut TcpStream) -> Option<String> {
    let mut buf = Vec::new();
    let mut tmp = [0u8; 4096];
    loop {
        let mut h = [httparse::EMPTY_HEADER; 32];
        let mut r = httparse::Request::new(&mut h);
        if let Ok(httparse::Status::Complete(n)) = r.parse(&buf) {
            let header = |name: &str| {
                r.headers
                    .iter()
                    .find(|h| h.name.eq_ignore_ascii_case(name))
                    .map(|h| String::from_utf8_lossy(h.value).into_owned())
            };
            let len: usize = header("content-length")?.parse().ok()?;
            let id = header("webhook-id")?;
            while buf.len() < n + len {
                let k = s.read(&mut tmp).ok().filter(|k| *k > 0)?;
                buf.extend_from_slice(&tmp[..k]);
            }
            return Some(id);
        }
        let k = s.read(&mut tmp).ok().filter(|k| *k > 0)?;
        buf.extend_from_slice(&tmp[..k]);
    }
}

/// What a receiver saw: the webhook-id, and whether the hub was still connected when the
/// answer went out after the hold.
type Seen = (String, bool);

/// A receiver on `listener` for `count` requests: each is held for `hold`, then answered
/// 204 (`answer`) or left unanswered until the hub goes away.
fn receiver(
    listener: TcpListener,
    count: usize,
    hold: Duration,
    answer: bool,
) -> mpsc::Receiver<Seen> {
    let (tx, rx) = mpsc::channel();
    thread::spawn(move || {
        for _ in 0..count {
            let Ok((mut s, _)) = listener.accept() else {
                return;
            };
            s.set_read_timeout(Some(Duration::from_secs(20))).unwrap();
            let Some(id) = read_hook(&mut s) else { return };
            let _ = tx.send((id.clone(), false));
            if !answer {
                let _ = s.read(&mut [0u8; 64]); // until the hub drops it (or 20 s)
                continue;
            }
            thread::sleep(hold);
            // Still connected? A hub that gave up has closed its end: a read sees EOF.
            s.set_nonblocking(true).unwrap();
            let open = !matches!(s.read(&mut [0u8; 1]), Ok(0));
            s.set_nonblocking(false).unwrap();
            let done = open && s.write_all(b"HTTP/1.1 204 No Content\r\n\r\n").is_ok();
            let _ = tx.send((id, done));
            // Hold the connection until the hub closes it.
            let _ = s.read(&mut [0u8; 64]);
        }
    });
    rx
}

fn add_webhook(addr: SocketAddr, topic: &str, hook: SocketAddr) {
    let body = format!("url=http://{hook}/hook");
    let r = request(
        addr,
        &format!(
            "POST /topics/{topic}/webhooks HTTP/1.1\r\nHost: t\r\nContent-Type: application/x-www-form-urlencoded\r\nContent-Length: {}\r\n\r\n{body}",
            body.len()
        ),
    );
    assert_eq!(r.status, 201, "{}", r.text());
}

fn publish(addr: SocketAddr, topic: &str, data: &str) -> u64 {
    let r = util::post(addr, &format!("/topics/{topic}"), data);
    assert_eq!(r.status, 201, "{}", r.text());
    util::json_u64(&r.text(), "id").unwrap()
}

#[test]
fn sigterm_closes_every_client_politely_and_finishes_the_webhook_in_flight() {
    let log = temp("graceful.log");
    let (mut hub, addr) = spawn(&["--webhook-allow-private", "--stop-timeout", "20"], &log);
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let hook = listener.local_addr().unwrap();
    let seen = receiver(listener, 1, Duration::from_millis(1500), true);
    add_webhook(addr, "t", hook);
    let id = publish(addr, "t", "hello");
    let (webhook_id, _) = seen
        .recv_timeout(Duration::from_secs(10))
        .expect("the webhook");

    let mut ws = WsClient::open(addr, "/topics/t/ws", "");
    let mut sse = connect(addr);
    sse.write_all(b"GET /topics/t/sse HTTP/1.1\r\nHost: t\r\n\r\n")
        .unwrap();
    let mut sse_buf = Vec::new();
    let head = read_response(&mut sse, &mut sse_buf, true).unwrap();
    assert_eq!(head.status, 200);
    let mut poll = connect(addr);
    let req = format!("GET /topics/t/poll?since={id}&timeout=60 HTTP/1.1\r\nHost: t\r\n\r\n");
    poll.write_all(req.as_bytes()).unwrap();
    // The three are attached once /stats counts them.
    let end = Instant::now() + Duration::from_secs(10);
    loop {
        let s = util::get(addr, "/stats").text();
        let n = |k: &str| util::json_u64(&s, k).unwrap_or(0);
        if n("websocket") == 1 && n("sse") == 1 && n("parked") == 1 {
            break;
        }
        assert!(Instant::now() < end, "clients not attached: {s}");
        thread::sleep(Duration::from_millis(20));
    }

    signal(&hub, libc::SIGTERM);

    // WebSocket: a close frame with 1001.
    let close = loop {
        let f = ws.recv().expect("a close frame");
        if f.opcode == 8 {
            break f;
        }
    };
    assert_eq!(&close.payload[..2], &1001u16.to_be_bytes());
    // SSE: the stream ends with the terminating chunk.
    let _ = sse.read_to_end(&mut sse_buf);
    assert!(
        sse_buf.ends_with(b"0\r\n\r\n"),
        "{:?}",
        String::from_utf8_lossy(&sse_buf)
    );
    // The parked poll: 200 with the empty page, next = since.
    let r = read_response(&mut poll, &mut Vec::new(), false).expect("the poll's answer");
    assert_eq!(r.status, 200);
    assert!(r.text().contains("\"events\":[]"), "{}", r.text());
    assert_eq!(util::json_u64(&r.text(), "next"), Some(id));
    // The webhook in flight was waited for and answered.
    let (answered_id, done) = seen
        .recv_timeout(Duration::from_secs(20))
        .expect("answered");
    assert_eq!(answered_id, webhook_id);
    assert!(done, "the hub dropped the webhook attempt in flight");
    let st = wait_exit(&mut hub, Duration::from_secs(20)).expect("the hub exits");
    assert!(st.success(), "{st:?}");
    let text = std::fs::read_to_string(&log).unwrap();
    assert!(text.contains("stopping (SIGTERM): "), "{text}");
    assert!(
        text.contains("1 webhook attempts, waiting up to 20 s"),
        "{text}"
    );
    assert!(!text.contains("stop timeout passed"), "{text}");
}

#[test]
fn with_a_data_dir_an_unanswered_webhook_is_delivered_after_the_restart() {
    let dir = temp("data");
    let dir_s = dir.to_str().unwrap();
    let log = temp("durable.log");
    let args = [
        "--webhook-allow-private",
        "--stop-timeout",
        "1",
        "--webhook-timeout",
        "60",
        "--data-dir",
        dir_s,
    ];
    let (mut hub, addr) = spawn(&args, &log);
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let hook = listener.local_addr().unwrap();
    let first = receiver(listener.try_clone().unwrap(), 1, Duration::ZERO, false);
    add_webhook(addr, "t", hook);
    publish(addr, "t", "kept");
    let (id1, _) = first
        .recv_timeout(Duration::from_secs(10))
        .expect("the first attempt");
    signal(&hub, libc::SIGTERM);
    let st = wait_exit(&mut hub, Duration::from_secs(20)).expect("the hub exits");
    assert!(st.success(), "{st:?}");
    let text = std::fs::read_to_string(&log).unwrap();
    assert!(text.contains("stop timeout passed"), "{text}");

    let second = receiver(listener, 1, Duration::ZERO, true);
    let (mut hub, _) = spawn(&args, &log);
    let (id2, _) = second
        .recv_timeout(Duration::from_secs(20))
        .expect("redelivered");
    assert_eq!(id1, id2, "the same webhook-id");
    let (_, done) = second
        .recv_timeout(Duration::from_secs(20))
        .expect("answered");
    assert!(done);
    signal(&hub, libc::SIGTERM);
    assert!(wait_exit(&mut hub, Duration::from_secs(20)).is_some_and(|s| s.success()));
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn a_second_signal_stops_at_once() {
    let log = temp("twice.log");
    let args = [
        "--webhook-allow-private",
        "--stop-timeout",
        "300",
        "--webhook-timeout",
        "300",
    ];
    let (mut hub, addr) = spawn(&args, &log);
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let hook = listener.local_addr().unwrap();
    let seen = receiver(listener, 1, Duration::ZERO, false);
    add_webhook(addr, "t", hook);
    publish(addr, "t", "slow");
    seen.recv_timeout(Duration::from_secs(10))
        .expect("the attempt");
    signal(&hub, libc::SIGINT);
    // The first signal is under way once the log says so; the hub still waits.
    let end = Instant::now() + Duration::from_secs(10);
    while !std::fs::read_to_string(&log)
        .unwrap()
        .contains("stopping (SIGINT)")
    {
        assert!(Instant::now() < end, "no stop logged");
        thread::sleep(Duration::from_millis(20));
    }
    assert!(hub.try_wait().unwrap().is_none(), "waits for the webhook");
    signal(&hub, libc::SIGINT);
    // Far below the 300 s the graceful stop would wait.
    let st = wait_exit(&mut hub, Duration::from_secs(30)).expect("stopped at once");
    assert!(st.success(), "{st:?}");
    let text = std::fs::read_to_string(&log).unwrap();
    assert!(text.contains("stopping now (SIGINT again)"), "{text}");
}
