//! Redis links against a real `redis-server` (started per test on a free port, in its own
//! temporary directory, killed on drop) and against fake servers that answer garbage. A
//! real server loop runs in a thread; the test acts on it through its [`Handle`]'s command
//! channel and polls the links' events and status, with bounded waits everywhere.

use std::io::Write;
use std::net::{TcpListener, TcpStream};
use std::path::PathBuf;
use std::process::{Child, Command as Process, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{mpsc, Arc, Mutex, Once};
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant};

use super::{LinkStatus, RedisEvent, Role, Tag};
use crate::driver::{Command, Core};
use crate::proto::resp::{Push, RedisUrl, SendError, Value};
use crate::{App, ConnId, Ctx, Handle, Reply, Request, Response, Server};

/// The longest any wait in these tests may take.
const WAIT: Duration = Duration::from_secs(15);

// ---- the log, captured ------------------------------------------------------------------

static LOG: Mutex<Vec<String>> = Mutex::new(Vec::new());

/// Keeps this module's log lines (all tests share it: filter by port).
struct TestLog;

impl log::Log for TestLog {
    fn enabled(&self, m: &log::Metadata<'_>) -> bool {
        m.target().starts_with("pushwire::driver::redis") && m.level() <= log::Level::Debug
    }
    fn log(&self, r: &log::Record<'_>) {
        if self.enabled(r.metadata()) {
            let line = format!("{} {}", r.level(), r.args());
            LOG.lock().unwrap().push(line);
        }
    }
    fn flush(&self) {}
}

fn capture_log() {
    static INIT: Once = Once::new();
    INIT.call_once(|| {
        if log::set_logger(&TestLog).is_ok() {
            log::set_max_level(log::LevelFilter::Debug);
        }
    });
}

/// The captured lines at `level` that mention `needle`.
fn log_lines(level: &str, needle: &str) -> Vec<String> {
    let log = LOG.lock().unwrap();
    let at = format!("{level} ");
    log.iter()
        .filter(|l| l.starts_with(&at) && l.contains(needle))
        .cloned()
        .collect()
}

// ---- a real redis-server ----------------------------------------------------------------

fn free_port() -> u16 {
    let l = TcpListener::bind("127.0.0.1:0").unwrap();
    l.local_addr().unwrap().port()
}

/// A `redis-server` of its own on 127.0.0.1, killed (and its directory removed) on drop.
struct RedisServer {
    child: Option<Child>,
    port: u16,
    dir: PathBuf,
    password: Option<String>,
}

impl RedisServer {
    fn start(password: Option<&str>) -> RedisServer {
        let n: u64 = rand::random();
        let dir = std::env::temp_dir().join(format!("pushwire-redis-{n:x}"));
        std::fs::create_dir_all(&dir).unwrap();
        let mut s = RedisServer {
            child: None,
            port: free_port(),
            dir,
            password: password.map(str::to_owned),
        };
        s.restart();
        s
    }

    /// Starts the server (again) on its port and waits until it accepts.
    fn restart(&mut self) {
        assert!(self.child.is_none());
        let mut cmd = Process::new("redis-server");
        cmd.args(["--port", &self.port.to_string(), "--bind", "127.0.0.1"])
            .args(["--save", "", "--appendonly", "no", "--daemonize", "no"])
            .arg("--dir")
            .arg(&self.dir)
            .arg("--logfile")
            .arg(self.dir.join("redis.log"))
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null());
        if let Some(p) = &self.password {
            cmd.args(["--requirepass", p]);
        }
        self.child = Some(cmd.spawn().expect("redis-server runs"));
        let end = Instant::now() + WAIT;
        while TcpStream::connect(("127.0.0.1", self.port)).is_err() {
            let exited = self.child.as_mut().unwrap().try_wait().unwrap();
            assert!(exited.is_none(), "redis-server exited: {exited:?}");
            assert!(Instant::now() < end, "redis-server does not accept");
            thread::sleep(Duration::from_millis(10));
        }
    }

    fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    fn url(&self, db: u32) -> String {
        match &self.password {
            Some(p) => format!("redis://:{p}@127.0.0.1:{}/{db}", self.port),
            None => format!("redis://127.0.0.1:{}/{db}", self.port),
        }
    }
}

impl Drop for RedisServer {
    fn drop(&mut self) {
        self.kill();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

// ---- a hub: a server loop with Redis links, in a thread ---------------------------------

struct Nop;

impl App for Nop {
    fn on_request(&mut self, _cx: &mut Ctx<'_>, _conn: ConnId, _req: &Request) -> Reply {
        Reply::Response(Response::text(404, "nothing here"))
    }
}

/// Runs `f` on the loop thread and returns its result.
fn on_loop<R: Send + 'static>(h: &Handle, f: impl FnOnce(&mut Core) -> R + Send + 'static) -> R {
    let (tx, rx) = mpsc::channel();
    let job = move |core: &mut Core| {
        let _ = tx.send(f(core));
    };
    h.tx.send(Command::Run(Box::new(job))).unwrap();
    h.waker.wake().unwrap();
    rx.recv_timeout(WAIT).expect("the loop answers")
}

struct Hub {
    handle: Handle,
    thread: Option<JoinHandle<()>>,
    /// Every event so far, in order.
    events: Vec<RedisEvent>,
    cmd: LinkStatus,
    sub: LinkStatus,
}

impl Hub {
    fn start(url: &str) -> Hub {
        capture_log();
        let url = RedisUrl::parse(url).unwrap();
        let (tx, rx) = mpsc::channel();
        let thread = thread::spawn(move || {
            let mut config = crate::Config::new().stop_timeout(Duration::from_secs(1));
            config.redis = Some(url);
            config.redis_links_only = true;
            let mut server = Server::bind("127.0.0.1:0", config, Nop).unwrap();
            tx.send(server.handle()).unwrap();
            server.run().unwrap();
        });
        let handle = rx.recv_timeout(WAIT).expect("the server starts");
        Hub {
            handle,
            thread: Some(thread),
            events: Vec::new(),
            cmd: LinkStatus::default(),
            sub: LinkStatus::default(),
        }
    }

    /// Takes the new events and the links' status.
    fn refresh(&mut self) {
        let (events, cmd, sub) = on_loop(&self.handle, |core| {
            let status = |r| core.redis_status(r).expect("the links exist");
            let (cmd, sub) = (status(Role::Command), status(Role::Subscriber));
            (core.take_redis_events(), cmd, sub)
        });
        self.events.extend(events);
        (self.cmd, self.sub) = (cmd, sub);
    }

    /// Waits until `cond` holds (bounded).
    fn wait(&mut self, what: &str, mut cond: impl FnMut(&Hub) -> bool) {
        let end = Instant::now() + WAIT;
        loop {
            self.refresh();
            if cond(self) {
                return;
            }
            let tail = &self.events[self.events.len().saturating_sub(5)..];
            assert!(
                Instant::now() < end,
                "timed out waiting for {what}: command {:?}, subscriber {:?}, last events {tail:?}",
                self.cmd,
                self.sub
            );
            thread::sleep(Duration::from_millis(10));
        }
    }

    fn wait_ready(&mut self) {
        self.wait("both links ready", |h| h.cmd.ready && h.sub.ready);
    }

    fn command(&self, tag: Tag, args: &[&str]) -> Result<(), SendError> {
        let args: Vec<Vec<u8>> = args.iter().map(|a| a.as_bytes().to_vec()).collect();
        on_loop(&self.handle, move |core| {
            let args: Vec<&[u8]> = args.iter().map(Vec::as_slice).collect();
            core.redis_command(tag, &args)
        })
    }

    fn subscribe(&self, channel: &str) {
        let channel = channel.as_bytes().to_vec();
        on_loop(&self.handle, move |core| core.redis_subscribe(&channel)).unwrap();
    }

    fn reply(&self, tag: Tag) -> Option<&Value> {
        self.events.iter().find_map(|e| match e {
            RedisEvent::Reply(t, v) if *t == tag => Some(v),
            _ => None,
        })
    }

    fn count(&self, f: impl Fn(&RedisEvent) -> bool) -> usize {
        self.events.iter().filter(|e| f(e)).count()
    }

    fn messages(&self, channel: &str, payload: &str) -> usize {
        self.count(|e| {
            matches!(e, RedisEvent::Push(Push::Message { channel: c, payload: p })
                if c == channel.as_bytes() && p == payload.as_bytes())
        })
    }

    /// Subscribes to `channel` and waits for Redis to confirm it.
    fn subscribe_and_wait(&mut self, channel: &str) {
        self.subscribe(channel);
        let ch = channel.as_bytes().to_vec();
        self.wait("the subscription", |h| h.sub.subscribed.contains(&ch));
    }

    /// Publishes through the command link and waits until the message arrives.
    fn publish_and_receive(&mut self, tag: Tag, channel: &str, payload: &str) {
        let before = self.messages(channel, payload);
        self.command(tag, &["PUBLISH", channel, payload]).unwrap();
        self.wait("the message", |h| h.messages(channel, payload) > before);
        assert_eq!(self.reply(tag), Some(&Value::Integer(1)));
    }
}

impl Drop for Hub {
    fn drop(&mut self) {
        self.handle.stop();
        if let Some(t) = self.thread.take() {
            let end = Instant::now() + WAIT;
            while !t.is_finished() && Instant::now() < end {
                thread::sleep(Duration::from_millis(10));
            }
            if t.is_finished() && !thread::panicking() {
                t.join().unwrap();
            }
        }
    }
}

/// The gaps between successive connection attempts from `from` on.
fn gaps(attempts: &[Instant], from: usize) -> Vec<Duration> {
    attempts[from..].windows(2).map(|w| w[1] - w[0]).collect()
}

/// Asserts the attempts back off: no hot loop, and later gaps longer than the first.
fn assert_backs_off(gaps: &[Duration]) {
    assert!(gaps.len() >= 3, "{gaps:?}");
    assert!(
        gaps.iter().all(|g| *g >= Duration::from_millis(50)),
        "{gaps:?}"
    );
    assert!(gaps[gaps.len() - 1] > gaps[0], "{gaps:?}");
}

// ---- the cases --------------------------------------------------------------------------

#[test]
fn both_links_become_ready_without_a_password() {
    let redis = RedisServer::start(None);
    let mut hub = Hub::start(&redis.url(0));
    hub.wait_ready();
    assert_eq!(
        (hub.cmd.connects, hub.cmd.readies, hub.cmd.failures),
        (1, 1, 0)
    );
    assert_eq!(hub.count(|e| matches!(e, RedisEvent::Ready(_))), 2);
    hub.command(1, &["PING"]).unwrap();
    hub.wait("PONG", |h| h.reply(1).is_some());
    assert_eq!(hub.reply(1), Some(&Value::SimpleString(b"PONG".to_vec())));
    let shown = format!("connected to redis://127.0.0.1:{}/0", redis.port);
    assert_eq!(log_lines("DEBUG", &shown).len(), 2, "{:?}", LOG.lock());
}

#[test]
fn a_password_and_a_database_number_are_used_and_the_password_is_not_logged() {
    let redis = RedisServer::start(Some("s3cret-pw"));
    let mut hub = Hub::start(&redis.url(3));
    hub.wait_ready();
    hub.command(1, &["CLIENT", "INFO"]).unwrap();
    hub.wait("CLIENT INFO", |h| h.reply(1).is_some());
    let info = hub.reply(1).and_then(Value::as_bytes).unwrap().to_vec();
    let info = String::from_utf8(info).unwrap();
    assert!(info.contains(" db=3 "), "{info}");
    let shown = format!("connected to redis://:***@127.0.0.1:{}/3", redis.port);
    assert_eq!(log_lines("DEBUG", &shown).len(), 2, "{:?}", LOG.lock());
    assert!(!LOG.lock().unwrap().iter().any(|l| l.contains("s3cret")));
}

#[test]
fn a_thousand_pipelined_commands_are_answered_in_order() {
    let redis = RedisServer::start(None);
    let mut hub = Hub::start(&redis.url(0));
    hub.wait_ready();
    // All in one loop step: one pipeline, flushed after the step.
    on_loop(&hub.handle, |core| {
        for tag in 0..1000 {
            core.redis_command(tag, &[b"INCR", b"counter"]).unwrap();
        }
    });
    let replies = |h: &Hub| h.count(|e| matches!(e, RedisEvent::Reply(..)));
    hub.wait("1000 replies", |h| replies(h) == 1000);
    let got: Vec<(Tag, Value)> = hub
        .events
        .iter()
        .filter_map(|e| match e {
            RedisEvent::Reply(t, v) => Some((*t, v.clone())),
            _ => None,
        })
        .collect();
    let want: Vec<(Tag, Value)> = (0..1000)
        .map(|t| (t, Value::Integer(t as i64 + 1)))
        .collect();
    assert_eq!(got, want);
    assert_eq!(hub.cmd.in_flight, 0);
}

#[test]
fn a_publish_from_the_command_link_arrives_on_the_subscriber() {
    let redis = RedisServer::start(None);
    let mut hub = Hub::start(&redis.url(0));
    hub.wait_ready();
    hub.subscribe_and_wait("news");
    let confirmed = hub.count(
        |e| matches!(e, RedisEvent::Push(Push::Subscribed { channel, .. }) if channel == b"news"),
    );
    assert_eq!(confirmed, 1);
    hub.publish_and_receive(1, "news", "hello");
    // Unsubscribed: the next message has no receiver.
    on_loop(&hub.handle, |core| core.redis_unsubscribe(b"news"));
    hub.wait("the unsubscription", |h| h.sub.subscribed.is_empty());
    hub.command(2, &["PUBLISH", "news", "nobody"]).unwrap();
    hub.wait("the PUBLISH reply", |h| h.reply(2).is_some());
    assert_eq!(hub.reply(2), Some(&Value::Integer(0)));
}

#[test]
fn a_killed_redis_fails_the_tags_refuses_commands_backs_off_and_comes_back() {
    let mut redis = RedisServer::start(None);
    let mut hub = Hub::start(&redis.url(0));
    hub.wait_ready();
    hub.subscribe_and_wait("ch");
    // A command that is never answered: it is in flight when Redis dies.
    hub.command(7, &["BLPOP", "empty-list", "0"]).unwrap();
    hub.wait("BLPOP in flight", |h| h.cmd.in_flight == 1);
    let tried = hub.cmd.attempts.len();
    redis.kill();
    let down = |h: &Hub, role| h.count(|e| matches!(e, RedisEvent::Down(r, _) if *r == role));
    hub.wait("both links down", |h| {
        down(h, Role::Command) == 1 && down(h, Role::Subscriber) == 1
    });
    let failed = hub.events.iter().position(|e| *e == RedisEvent::Failed(7));
    let went_down = hub
        .events
        .iter()
        .position(|e| matches!(e, RedisEvent::Down(Role::Command, _)));
    assert!(failed.unwrap() < went_down.unwrap(), "{:?}", hub.events);
    // Refused at once while down.
    let asked = Instant::now();
    assert_eq!(hub.command(8, &["PING"]), Err(SendError::Closed));
    assert!(asked.elapsed() < Duration::from_secs(2));
    // Reconnect attempts back off: 100, 200, 400 ms, ...
    hub.wait("four attempts", |h| h.cmd.attempts.len() >= tried + 4);
    assert_backs_off(&gaps(&hub.cmd.attempts, tried));
    assert!(!hub.cmd.ready && hub.cmd.failures >= 4);
    assert!(!log_lines("WARN", &format!("127.0.0.1:{}", redis.port)).is_empty());
    // Back on the same port: both links ready again, the channel subscribed again.
    redis.restart();
    hub.wait("both links ready again", |h| {
        h.cmd.ready && h.sub.ready && h.sub.subscribed == [b"ch".to_vec()]
    });
    assert_eq!((hub.cmd.readies, hub.sub.readies), (2, 2));
    assert_eq!(hub.count(|e| *e == RedisEvent::Ready(Role::Subscriber)), 2);
    hub.publish_and_receive(9, "ch", "after the restart");
}

#[test]
fn a_wrong_password_is_never_ready_names_wrongpass_and_is_retried_with_backoff() {
    let mut redis = RedisServer::start(Some("right"));
    redis.password = Some("wrong".into());
    let mut hub = Hub::start(&redis.url(0));
    hub.wait("four refused handshakes", |h| {
        h.cmd.failures >= 4 && h.sub.failures >= 4
    });
    for s in [&hub.cmd, &hub.sub] {
        assert!(!s.ready && s.readies == 0, "{s:?}");
        let error = s.last_error.as_deref().unwrap();
        assert!(error.contains("WRONGPASS"), "{error}");
    }
    assert_backs_off(&gaps(&hub.cmd.attempts, 0));
    assert_eq!(hub.command(1, &["PING"]), Err(SendError::Closed));
    let warned = log_lines("WARN", &format!("127.0.0.1:{}", redis.port));
    assert!(warned.iter().any(|l| l.contains("WRONGPASS")), "{warned:?}");
    assert!(!warned.iter().any(|l| l.contains("wrong")), "{warned:?}");
}

/// A fake Redis that answers every connection with one of `answers`, in turn, and keeps it
/// open; it stops when dropped.
struct Garbage {
    port: u16,
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<usize>>,
}

impl Garbage {
    fn start(answers: &'static [&'static [u8]]) -> Garbage {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        listener.set_nonblocking(true).unwrap();
        let port = listener.local_addr().unwrap().port();
        let stop = Arc::new(AtomicBool::new(false));
        let flag = stop.clone();
        let thread = thread::spawn(move || {
            let mut open = Vec::new();
            while !flag.load(Ordering::Relaxed) {
                match listener.accept() {
                    Ok((mut s, _)) => {
                        let _ = s.write_all(answers[open.len() % answers.len()]);
                        open.push(s);
                    }
                    Err(_) => thread::sleep(Duration::from_millis(5)),
                }
            }
            open.len()
        });
        Garbage {
            port,
            stop,
            thread: Some(thread),
        }
    }
}

impl Drop for Garbage {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

#[test]
fn garbage_from_the_server_drops_the_link_with_a_protocol_error_and_it_reconnects() {
    let fake = Garbage::start(&[b"$999999999999\r\n", b"?x\r\n"]);
    let mut hub = Hub::start(&format!("redis://127.0.0.1:{}", fake.port));
    hub.wait("four protocol errors per link", |h| {
        h.cmd.failures >= 4 && h.sub.failures >= 4
    });
    for s in [&hub.cmd, &hub.sub] {
        assert!(!s.ready && s.readies == 0, "{s:?}");
        let error = s.last_error.as_deref().unwrap();
        assert!(error.starts_with("bad reply from Redis"), "{error}");
        assert!(s.connects >= 4, "{s:?}");
    }
    assert_backs_off(&gaps(&hub.cmd.attempts, 0));
    // Logged, and rate-limited: fewer warnings than failures (at most one a second).
    let shown = format!("command link to redis://127.0.0.1:{}/0 failed", fake.port);
    let warned = log_lines("WARN", &shown);
    assert!(!warned.is_empty(), "{:?}", LOG.lock());
    assert!((warned.len() as u64) < hub.cmd.failures, "{warned:?}");
    assert!(warned[0].contains("bad reply from Redis"), "{warned:?}");
    // The loop is alive.
    assert_eq!(hub.command(1, &["PING"]), Err(SendError::Closed));
}

#[test]
fn a_killed_subscriber_connection_reconnects_and_resubscribes() {
    let redis = RedisServer::start(None);
    let mut hub = Hub::start(&redis.url(0));
    hub.wait_ready();
    hub.subscribe_and_wait("a");
    hub.subscribe_and_wait("b");
    hub.command(1, &["CLIENT", "KILL", "TYPE", "pubsub"])
        .unwrap();
    hub.wait("CLIENT KILL's reply", |h| h.reply(1).is_some());
    assert_eq!(hub.reply(1), Some(&Value::Integer(1)));
    hub.wait("the subscriber back, both channels subscribed", |h| {
        h.sub.ready && h.sub.readies == 2 && h.sub.subscribed.len() == 2
    });
    assert_eq!(hub.sub.failures, 1);
    let error = hub.sub.last_error.clone().unwrap();
    assert!(error.contains("closed"), "{error}");
    assert_eq!((hub.cmd.failures, hub.cmd.readies), (0, 1));
    hub.publish_and_receive(2, "a", "one");
    hub.publish_and_receive(3, "b", "two");
}
