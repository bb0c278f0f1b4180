//! Helpers for `tests/hostile.rs` (issue 11): the hub as a process with its stderr in a
//! file and its pid at hand (for `/proc/<pid>/status`), raw HTTP with arbitrary headers,
//! keep-alive clients that report failures instead of panicking, and loopback peers (a
//! webhook receiver that records, one that never answers, a forwarding TCP proxy).
//!
//! Included from `tests/hostile.rs` with `#[path]`; it uses `crate::util` (tests/util/mod.rs).
#![allow(dead_code)]

use std::fs;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{Shutdown, SocketAddr, TcpListener, TcpStream};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{mpsc, Arc, Mutex, Once};
use std::thread;
use std::time::{Duration, Instant};

use crate::util::{json_u64, read_response, Resp};

// ---- the hub as a process ---------------------------------------------------------------

/// The hub example, rebuilt once per test process when a source file is newer than it
/// (`cargo test --test hostile` alone does not rebuild examples).
pub fn hub_bin() -> PathBuf {
    static FRESH: Once = Once::new();
    let bin = crate::util::example_bin("hub");
    FRESH.call_once(|| {
        let built = fs::metadata(&bin).and_then(|m| m.modified()).ok();
        let root = Path::new(env!("CARGO_MANIFEST_DIR"));
        let mut newest = None;
        let mut stack = vec![
            root.join("src"),
            root.join("examples"),
            root.join("Cargo.toml"),
        ];
        while let Some(p) = stack.pop() {
            let Ok(m) = fs::metadata(&p) else { continue };
            if m.is_dir() {
                stack.extend(
                    fs::read_dir(&p)
                        .unwrap()
                        .filter_map(|e| Some(e.ok()?.path())),
                );
            } else if let Ok(t) = m.modified() {
                newest = newest.max(Some(t));
            }
        }
        if built < newest {
            let release = bin
                .parent()
                .and_then(|p| p.parent())
                .is_some_and(|d| d.ends_with("release"));
            let mut cmd = Command::new(env!("CARGO"));
            cmd.args(["build", "--example", "hub"]);
            if release {
                cmd.arg("--release");
            }
            let st = cmd.status().expect("cargo build --example hub");
            assert!(st.success(), "rebuilding the hub example failed");
        }
    });
    bin
}

/// A running hub: killed (SIGKILL) and its stderr file removed on drop.
pub struct Hub {
    pub child: Child,
    pub addr: SocketAddr,
    pub pid: u32,
    pub stderr: PathBuf,
}

impl Hub {
    /// Starts the hub on `127.0.0.1:0` (an `--addr` in `args` overrides it: the last one
    /// wins) and waits at most 30 s for its listening line.
    pub fn start(args: &[&str]) -> Hub {
        Self::start_with(args, None)
    }

    /// Like [`Hub::start`], with `RLIMIT_NOFILE` set to `nofile` (soft and hard) in the
    /// child before it runs the hub.
    pub fn start_with(args: &[&str], nofile: Option<u64>) -> Hub {
        static N: AtomicUsize = AtomicUsize::new(0);
        let stderr = std::env::temp_dir().join(format!(
            "pushwire-hostile-{}-{}.stderr",
            std::process::id(),
            N.fetch_add(1, Ordering::SeqCst)
        ));
        let err_file = fs::File::create(&stderr).unwrap();
        let mut cmd = Command::new(hub_bin());
        cmd.arg("--addr")
            .arg("127.0.0.1:0")
            .args(args)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(err_file);
        if let Some(n) = nofile {
            // SAFETY: setrlimit is async-signal-safe; nothing else runs in the closure.
            unsafe {
                cmd.pre_exec(move || {
                    let lim = libc::rlimit {
                        rlim_cur: n as libc::rlim_t,
                        rlim_max: n as libc::rlim_t,
                    };
                    if libc::setrlimit(libc::RLIMIT_NOFILE, &lim) != 0 {
                        return Err(std::io::Error::last_os_error());
                    }
                    Ok(())
                });
            }
        }
        let mut child = cmd.spawn().expect("spawn the hub");
        let pid = child.id();
        let out = child.stdout.take().unwrap();
        let (tx, rx) = mpsc::channel();
        thread::spawn(move || {
            let mut r = BufReader::new(out);
            let mut line = String::new();
            let _ = r.read_line(&mut line);
            let _ = tx.send(line);
            let mut rest = Vec::new();
            let _ = r.read_to_end(&mut rest);
        });
        let line: String = rx.recv_timeout(Duration::from_secs(30)).unwrap_or_default();
        let addr = line.trim().rsplit("//").next().and_then(|a| a.parse().ok());
        let Some(addr) = addr else {
            let _ = child.kill();
            let _ = child.wait();
            let err = fs::read_to_string(&stderr).unwrap_or_default();
            let _ = fs::remove_file(&stderr);
            panic!("the hub did not start with {args:?}: stdout {line:?}\nstderr:\n{err}");
        };
        Hub {
            child,
            addr,
            pid,
            stderr,
        }
    }

    pub fn stderr_text(&self) -> String {
        fs::read_to_string(&self.stderr).unwrap_or_default()
    }

    /// `http://<addr>` + `path`.
    pub fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.addr)
    }

    /// The `VmRSS` of the hub process in bytes (0 when unreadable).
    pub fn rss(&self) -> u64 {
        proc_status_kib(self.pid, "VmRSS:") * 1024
    }

    /// The peak resident set size (`VmHWM`) of the hub process in bytes.
    pub fn peak_rss(&self) -> u64 {
        proc_status_kib(self.pid, "VmHWM:") * 1024
    }

    /// Asserts the hub is still running and did not panic.
    pub fn assert_alive(&mut self, what: &str) {
        let err = self.stderr_text();
        assert!(
            !err.contains("panicked"),
            "{what}: the hub panicked:\n{err}"
        );
        if let Ok(Some(st)) = self.child.try_wait() {
            panic!("{what}: the hub exited ({st}); stderr:\n{err}");
        }
    }
}

impl Drop for Hub {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        if std::env::var_os("PUSHWIRE_KEEP_DIRS").is_some() {
            eprintln!("kept {}", self.stderr.display());
        } else {
            let _ = fs::remove_file(&self.stderr);
        }
    }
}

/// A `kB` line of `/proc/<pid>/status` (0 when absent).
pub fn proc_status_kib(pid: u32, key: &str) -> u64 {
    let text = fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    text.lines()
        .find(|l| l.starts_with(key))
        .and_then(|l| l[key.len()..].split_whitespace().next())
        .and_then(|n| n.parse().ok())
        .unwrap_or(0)
}

pub const MIB: u64 = 1 << 20;

pub fn mib(bytes: u64) -> String {
    format!("{:.1} MiB", bytes as f64 / MIB as f64)
}

/// Polls `cond` every 20 ms until it holds or `secs` pass; returns whether it held.
pub fn wait_until(secs: f64, mut cond: impl FnMut() -> bool) -> bool {
    let deadline = Instant::now() + Duration::from_secs_f64(secs);
    loop {
        if cond() {
            return true;
        }
        if Instant::now() > deadline {
            return false;
        }
        thread::sleep(Duration::from_millis(20));
    }
}

// ---- HTTP -------------------------------------------------------------------------------

/// The bytes of one request. `Host` is `host` unless `headers` carry one; `Content-Length`
/// is added for a body or a POST.
pub fn request_bytes(
    host: &str,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: &[u8],
) -> Vec<u8> {
    let mut req = format!("{method} {path} HTTP/1.1\r\n").into_bytes();
    if !headers.iter().any(|(n, _)| n.eq_ignore_ascii_case("host")) {
        req.extend_from_slice(format!("Host: {host}\r\n").as_bytes());
    }
    for (n, v) in headers {
        req.extend_from_slice(format!("{n}: {v}\r\n").as_bytes());
    }
    if !body.is_empty() || method == "POST" {
        req.extend_from_slice(format!("Content-Length: {}\r\n", body.len()).as_bytes());
    }
    req.extend_from_slice(b"\r\n");
    req.extend_from_slice(body);
    req
}

/// A keep-alive HTTP/1.1 client connection that reports failures instead of panicking.
pub struct Http {
    pub s: TcpStream,
    pub buf: Vec<u8>,
    host: String,
}

impl Http {
    pub fn connect(addr: SocketAddr) -> Option<Http> {
        let s = TcpStream::connect_timeout(&addr, Duration::from_secs(5)).ok()?;
        s.set_read_timeout(Some(Duration::from_secs(20))).ok()?;
        s.set_nodelay(true).ok()?;
        Some(Http {
            s,
            buf: Vec::new(),
            host: addr.to_string(),
        })
    }

    pub fn send(
        &mut self,
        method: &str,
        path: &str,
        headers: &[(&str, &str)],
        body: &[u8],
    ) -> Option<Resp> {
        let req = request_bytes(&self.host, method, path, headers, body);
        self.s.write_all(&req).ok()?;
        read_response(&mut self.s, &mut self.buf, method == "HEAD")
    }

    /// Sends a request and reads only the response head (for streams: SSE, WebSocket).
    pub fn send_head(
        &mut self,
        method: &str,
        path: &str,
        headers: &[(&str, &str)],
    ) -> Option<Resp> {
        let req = request_bytes(&self.host, method, path, headers, b"");
        self.s.write_all(&req).ok()?;
        read_response(&mut self.s, &mut self.buf, true)
    }
}

/// One request on a fresh connection; panics when there is no answer.
pub fn http(
    addr: SocketAddr,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: &[u8],
) -> Resp {
    Http::connect(addr)
        .and_then(|mut h| h.send(method, path, headers, body))
        .unwrap_or_else(|| panic!("no answer to {method} {path} from {addr}"))
}

/// The response head of a streaming request (SSE, long poll that may wait, WebSocket
/// upgrade) on a fresh connection, and the connection (kept open by the caller or dropped).
pub fn http_head(
    addr: SocketAddr,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
) -> (Resp, Http) {
    let mut h = Http::connect(addr).unwrap_or_else(|| panic!("connect to {addr}"));
    let r = h
        .send_head(method, path, headers)
        .unwrap_or_else(|| panic!("no answer to {method} {path} from {addr}"));
    (r, h)
}

pub fn get(addr: SocketAddr, path: &str) -> Resp {
    http(addr, "GET", path, &[], b"")
}

pub fn post(addr: SocketAddr, path: &str, body: &str) -> Resp {
    http(addr, "POST", path, &[], body.as_bytes())
}

/// `key` of the object `obj` in a `/stats` answer (`{..,"obj":{..,"key":N,..},..}`).
pub fn stat(stats: &str, obj: &str, key: &str) -> Option<u64> {
    let at = stats.find(&format!("\"{obj}\":{{"))?;
    let inner = &stats[at..];
    json_u64(&inner[..inner.find('}')?], key)
}

/// The top-level `"published":N` of a `/stats` answer.
pub fn published(stats: &str) -> Option<u64> {
    json_u64(stats, "published")
}

/// The `"gap":` flag of an events page.
pub fn gap_of(page: &str) -> Option<bool> {
    if page.contains("\"gap\":true") {
        Some(true)
    } else if page.contains("\"gap\":false") {
        Some(false)
    } else {
        None
    }
}

/// The first `"key":"value"` string value in a JSON text (no escapes inside: enough for ids).
pub fn json_str<'a>(text: &'a str, key: &str) -> Option<&'a str> {
    let pat = format!("\"{key}\":\"");
    let at = text.find(&pat)? + pat.len();
    let end = text[at..].find('"')?;
    Some(&text[at..at + end])
}

/// Every `"key":"value"` string value in a JSON text, in order.
pub fn json_strs<'a>(text: &'a str, key: &str) -> Vec<&'a str> {
    let pat = format!("\"{key}\":\"");
    text.match_indices(&pat)
        .filter_map(|(at, _)| {
            let rest = &text[at + pat.len()..];
            Some(&rest[..rest.find('"')?])
        })
        .collect()
}

/// `url=<url>` as a form body (percent-encoding what a form must).
pub fn form_url(url: &str) -> String {
    let mut out = String::from("url=");
    for b in url.bytes() {
        match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'.' | b'_' | b'~' => {
                out.push(b as char)
            }
            _ => out.push_str(&format!("%{b:02X}")),
        }
    }
    out
}

// ---- loopback peers ---------------------------------------------------------------------

/// One request a [`Recorder`] got.
#[derive(Debug, Clone)]
pub struct Rec {
    pub path: String,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

impl Rec {
    pub fn header(&self, name: &str) -> &str {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map_or("", |(_, v)| v)
    }
}

/// Reads one request (head and Content-Length body) from `s`; `None` at EOF or error.
fn read_request(s: &mut TcpStream, buf: &mut Vec<u8>) -> Option<Rec> {
    let mut tmp = [0u8; 65536];
    loop {
        let mut hdrs = [httparse::EMPTY_HEADER; 64];
        let mut req = httparse::Request::new(&mut hdrs);
        if let Ok(httparse::Status::Complete(n)) = req.parse(buf) {
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
                .and_then(|(_, v)| v.trim().parse().ok())
                .unwrap_or(0);
            if buf.len() >= n + len {
                let rec = Rec {
                    path: req.path.unwrap_or("").to_owned(),
                    headers,
                    body: buf[n..n + len].to_vec(),
                };
                buf.drain(..n + len);
                return Some(rec);
            }
        }
        match s.read(&mut tmp) {
            Ok(0) | Err(_) => return None,
            Ok(k) => buf.extend_from_slice(&tmp[..k]),
        }
    }
}

/// A webhook receiver on loopback that records every request and answers 204.
pub struct Recorder {
    pub addr: SocketAddr,
    pub recs: Arc<Mutex<Vec<Rec>>>,
}

impl Recorder {
    pub fn start() -> Recorder {
        let l = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = l.local_addr().unwrap();
        let recs = Arc::new(Mutex::new(Vec::new()));
        let r2 = recs.clone();
        thread::spawn(move || {
            for s in l.incoming() {
                let Ok(mut s) = s else { break };
                let r3 = r2.clone();
                thread::spawn(move || {
                    let _ = s.set_read_timeout(Some(Duration::from_secs(60)));
                    let mut buf = Vec::new();
                    while let Some(rec) = read_request(&mut s, &mut buf) {
                        r3.lock().unwrap().push(rec);
                        if s.write_all(b"HTTP/1.1 204 No Content\r\n\r\n").is_err() {
                            return;
                        }
                    }
                });
            }
        });
        Recorder { addr, recs }
    }

    pub fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.addr)
    }

    pub fn recs(&self) -> Vec<Rec> {
        self.recs.lock().unwrap().clone()
    }
}

/// A webhook receiver that accepts, reads and discards everything, and never answers:
/// every delivery attempt to it hangs until the hub's attempt timeout.
pub struct Silent {
    pub addr: SocketAddr,
    pub accepted: Arc<AtomicUsize>,
    pub bytes: Arc<AtomicUsize>,
    stop: Arc<AtomicBool>,
}

impl Silent {
    pub fn start() -> Silent {
        let l = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = l.local_addr().unwrap();
        let accepted = Arc::new(AtomicUsize::new(0));
        let bytes = Arc::new(AtomicUsize::new(0));
        let stop = Arc::new(AtomicBool::new(false));
        let (a2, b2, s2) = (accepted.clone(), bytes.clone(), stop.clone());
        thread::spawn(move || {
            for s in l.incoming() {
                if s2.load(Ordering::SeqCst) {
                    break;
                }
                let Ok(mut s) = s else { break };
                a2.fetch_add(1, Ordering::SeqCst);
                let (b3, s3) = (b2.clone(), s2.clone());
                thread::spawn(move || {
                    let _ = s.set_read_timeout(Some(Duration::from_millis(500)));
                    let mut tmp = vec![0u8; 1 << 16];
                    while !s3.load(Ordering::SeqCst) {
                        match s.read(&mut tmp) {
                            Ok(0) => return,
                            Ok(k) => {
                                b3.fetch_add(k, Ordering::SeqCst);
                            }
                            Err(e)
                                if e.kind() == std::io::ErrorKind::WouldBlock
                                    || e.kind() == std::io::ErrorKind::TimedOut => {}
                            Err(_) => return,
                        }
                    }
                });
            }
        });
        Silent {
            addr,
            accepted,
            bytes,
            stop,
        }
    }

    pub fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.addr)
    }
}

impl Drop for Silent {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        let _ = TcpStream::connect(self.addr); // wake the accept loop
    }
}

/// A TCP forwarder on its own loopback address: every connection is piped, bytes as they
/// are, to `target` (a second name for the hub, as a reverse proxy would be).
pub struct Proxy {
    pub addr: SocketAddr,
    pub connections: Arc<AtomicUsize>,
}

impl Proxy {
    pub fn start(target: SocketAddr) -> Proxy {
        let l = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = l.local_addr().unwrap();
        let connections = Arc::new(AtomicUsize::new(0));
        let c2 = connections.clone();
        thread::spawn(move || {
            for s in l.incoming() {
                let Ok(down) = s else { break };
                c2.fetch_add(1, Ordering::SeqCst);
                let Ok(up) = TcpStream::connect(target) else {
                    continue;
                };
                let (Ok(down2), Ok(up2)) = (down.try_clone(), up.try_clone()) else {
                    continue;
                };
                thread::spawn(move || pipe(down, up));
                thread::spawn(move || pipe(up2, down2));
            }
        });
        Proxy { addr, connections }
    }

    pub fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.addr)
    }
}

/// Copies `from` to `to` until EOF or an error (at most 10 minutes), then shuts `to` down.
fn pipe(mut from: TcpStream, mut to: TcpStream) {
    let _ = from.set_read_timeout(Some(Duration::from_secs(600)));
    let mut tmp = vec![0u8; 1 << 16];
    loop {
        match from.read(&mut tmp) {
            Ok(0) | Err(_) => break,
            Ok(k) => {
                if to.write_all(&tmp[..k]).is_err() {
                    break;
                }
            }
        }
    }
    let _ = to.shutdown(Shutdown::Write);
}
