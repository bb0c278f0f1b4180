//! Shared helpers for the loopback integration tests: start the hub example, speak raw
//! HTTP/1.1 over `std::net::TcpStream`, parse responses with httparse.
#![allow(dead_code)]

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// Path of a built example (`cargo test` builds examples next to the test binaries).
///
/// The first call per example in a test process runs `cargo build --example NAME` with this
/// test's features (a no-op when it is fresh): `cargo test --no-default-features` and
/// `cargo test` share one binary path, and a test must not run the other build's example.
pub fn example_bin(name: &str) -> PathBuf {
    static BUILT: std::sync::Mutex<Vec<String>> = std::sync::Mutex::new(Vec::new());
    let exe = std::env::current_exe().expect("current_exe");
    let dir = exe.parent().and_then(|d| d.parent()).expect("target dir");
    let bin = dir.join("examples").join(name);
    let mut built = BUILT.lock().unwrap_or_else(|e| e.into_inner());
    if !built.iter().any(|b| b == name) {
        let profile_release = dir.ends_with("release");
        let mut cmd = Command::new(env!("CARGO"));
        cmd.args(["build", "--quiet", "--example", name]);
        // The variables cargo sets for the test itself (CARGO_MANIFEST_DIR, CARGO_PKG_NAME
        // and the rest) would make build scripts that read them (ring's) run again, and the
        // outer `cargo test` rebuild after us.
        for (k, _) in std::env::vars_os() {
            let k = k.to_string_lossy();
            let own = [
                "CARGO_MANIFEST_",
                "CARGO_PKG_",
                "CARGO_CRATE_",
                "CARGO_PRIMARY_",
            ];
            if own.iter().any(|p| k.starts_with(p)) {
                cmd.env_remove(&*k);
            }
        }
        if profile_release {
            cmd.arg("--release");
        }
        if !cfg!(feature = "tls") {
            cmd.arg("--no-default-features");
        }
        let st = cmd.status().expect("cargo build --example");
        assert!(st.success(), "building example {name} failed");
        built.push(name.to_owned());
    }
    bin
}

/// A running example process, killed on drop.
pub struct Proc {
    pub child: Child,
    pub addr: SocketAddr,
}

impl Drop for Proc {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Starts an example listening on an ephemeral loopback port and waits for its
/// "listening on" line to learn the address.
pub fn start_example(name: &str, args: &[&str]) -> Proc {
    let mut child = Command::new(example_bin(name))
        .arg("--addr")
        .arg("127.0.0.1:0")
        .args(args)
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .expect("spawn example");
    let stdout = child.stdout.take().expect("stdout");
    let mut line = String::new();
    BufReader::new(stdout)
        .read_line(&mut line)
        .expect("read listening line");
    let addr = line
        .trim()
        .rsplit("//")
        .next()
        .and_then(|a| a.parse().ok())
        .unwrap_or_else(|| panic!("no address in {line:?}"));
    Proc { child, addr }
}

pub fn start_hub(args: &[&str]) -> Proc {
    start_example("hub", args)
}

pub fn connect(addr: SocketAddr) -> TcpStream {
    let s = TcpStream::connect(addr).expect("connect");
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    s.set_nodelay(true).unwrap();
    s
}

/// One parsed HTTP response.
#[derive(Debug, Clone)]
pub struct Resp {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

impl Resp {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }
    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }
}

/// Reads exactly one response (Content-Length or chunked body; none for HEAD/1xx/204/304).
/// `buf` holds bytes read beyond the previous response (pipelining).
pub fn read_response(s: &mut TcpStream, buf: &mut Vec<u8>, head_request: bool) -> Option<Resp> {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let mut hdrs = [httparse::EMPTY_HEADER; 64];
        let mut r = httparse::Response::new(&mut hdrs);
        if let Ok(httparse::Status::Complete(n)) = r.parse(buf) {
            let status = r.code.unwrap();
            let headers: Vec<(String, String)> = r
                .headers
                .iter()
                .map(|h| {
                    (
                        h.name.to_owned(),
                        String::from_utf8_lossy(h.value).into_owned(),
                    )
                })
                .collect();
            buf.drain(..n);
            let mut resp = Resp {
                status,
                headers,
                body: Vec::new(),
            };
            if head_request || status / 100 == 1 || status == 204 || status == 304 {
                return Some(resp);
            }
            if let Some(len) = resp.header("content-length") {
                let len: usize = len.parse().unwrap();
                fill(s, buf, len, deadline)?;
                resp.body = buf.drain(..len).collect();
            } else if resp.header("transfer-encoding").is_some() {
                loop {
                    let line_end = loop {
                        if let Some(p) = buf.windows(2).position(|w| w == b"\r\n") {
                            break p;
                        }
                        fill(s, buf, buf.len() + 1, deadline)?;
                    };
                    let size_txt = String::from_utf8_lossy(&buf[..line_end]).to_string();
                    let size =
                        usize::from_str_radix(size_txt.split(';').next().unwrap().trim(), 16)
                            .unwrap();
                    buf.drain(..line_end + 2);
                    fill(s, buf, size + 2, deadline)?;
                    resp.body.extend(buf.drain(..size));
                    buf.drain(..2);
                    if size == 0 {
                        break;
                    }
                }
            } else {
                // Close-delimited.
                let _ = s.read_to_end(buf);
                resp.body = std::mem::take(buf);
            }
            return Some(resp);
        }
        fill(s, buf, buf.len() + 1, deadline)?;
    }
}

/// Reads until `buf` holds at least `n` bytes; `None` at EOF or timeout.
pub fn fill(s: &mut TcpStream, buf: &mut Vec<u8>, n: usize, deadline: Instant) -> Option<()> {
    let mut tmp = [0u8; 16384];
    while buf.len() < n {
        if Instant::now() > deadline {
            return None;
        }
        match s.read(&mut tmp) {
            Ok(0) => return None,
            Ok(k) => buf.extend_from_slice(&tmp[..k]),
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(_) => return None,
        }
    }
    Some(())
}

/// Sends one request on a fresh connection and reads one response.
pub fn request(addr: SocketAddr, raw: &str) -> Resp {
    let mut s = connect(addr);
    s.write_all(raw.as_bytes()).unwrap();
    read_response(&mut s, &mut Vec::new(), raw.starts_with("HEAD ")).expect("a response")
}

pub fn get(addr: SocketAddr, path: &str) -> Resp {
    request(addr, &format!("GET {path} HTTP/1.1\r\nHost: t\r\n\r\n"))
}

pub fn post(addr: SocketAddr, path: &str, body: &str) -> Resp {
    request(
        addr,
        &format!(
            "POST {path} HTTP/1.1\r\nHost: t\r\nContent-Length: {}\r\n\r\n{body}",
            body.len()
        ),
    )
}

/// True when the server closed the connection (EOF, or reset) within the timeout.
pub fn is_closed(s: &mut TcpStream) -> bool {
    s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    let mut tmp = [0u8; 4096];
    loop {
        match s.read(&mut tmp) {
            Ok(0) => return true,
            Ok(_) => continue,
            Err(e)
                if e.kind() == std::io::ErrorKind::WouldBlock
                    || e.kind() == std::io::ErrorKind::TimedOut =>
            {
                return false
            }
            Err(_) => return true,
        }
    }
}

/// Extracts the integer after `"key":` in a JSON text (enough for these tests).
pub fn json_u64(text: &str, key: &str) -> Option<u64> {
    let pat = format!("\"{key}\":");
    let at = text.find(&pat)? + pat.len();
    let digits: String = text[at..]
        .chars()
        .take_while(|c| c.is_ascii_digit())
        .collect();
    digits.parse().ok()
}

/// All `"id":N` values in a JSON text, in order.
pub fn json_ids(text: &str) -> Vec<u64> {
    text.match_indices("\"id\":")
        .filter_map(|(at, _)| {
            let rest = &text[at + 5..];
            let digits: String = rest.chars().take_while(|c| c.is_ascii_digit()).collect();
            digits.parse().ok()
        })
        .collect()
}

/// A minimal blocking WebSocket client for tests (RFC 6455 client side: masked frames).
pub struct WsClient {
    pub s: TcpStream,
    pub buf: Vec<u8>,
}

/// A frame received by [`WsClient`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WsFrame {
    pub fin: bool,
    pub opcode: u8,
    pub payload: Vec<u8>,
}

impl WsClient {
    /// Opens `path` with a valid handshake plus `extra` header lines; panics unless 101.
    pub fn open(addr: SocketAddr, path: &str, extra: &str) -> WsClient {
        let (c, r) = Self::try_open(addr, path, extra);
        assert_eq!(r.status, 101, "handshake refused: {}", r.text());
        assert_eq!(
            r.header("sec-websocket-accept"),
            Some("s3pPLMBiTxaQ9kYGzzhZRbK+xOo=")
        );
        c
    }

    pub fn try_open(addr: SocketAddr, path: &str, extra: &str) -> (WsClient, Resp) {
        let mut s = connect(addr);
        let req = format!(
            "GET {path} HTTP/1.1\r\nHost: t\r\nUpgrade: websocket\r\nConnection: keep-alive, Upgrade\r\n\
             Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n{extra}\r\n"
        );
        s.write_all(req.as_bytes()).unwrap();
        let mut buf = Vec::new();
        let r = read_response(&mut s, &mut buf, true).expect("handshake response");
        if r.status != 101 {
            // read the body of an error answer
            if let Some(len) = r
                .header("content-length")
                .and_then(|l| l.parse::<usize>().ok())
            {
                let _ = fill(
                    &mut s,
                    &mut buf,
                    len,
                    Instant::now() + Duration::from_secs(5),
                );
                let body = buf.drain(..len.min(buf.len())).collect();
                return (WsClient { s, buf }, Resp { body, ..r });
            }
        }
        (WsClient { s, buf }, r)
    }

    pub fn send_frame(&mut self, fin: bool, opcode: u8, payload: &[u8]) {
        let f = frame_bytes(fin, opcode, payload, [0x37, 0xfa, 0x21, 0x3d]);
        self.s.write_all(&f).unwrap();
    }

    pub fn send_text(&mut self, text: &str) {
        self.send_frame(true, 1, text.as_bytes());
    }

    /// Reads one frame; `None` on EOF/timeout.
    pub fn recv(&mut self) -> Option<WsFrame> {
        let deadline = Instant::now() + Duration::from_secs(10);
        fill(&mut self.s, &mut self.buf, 2, deadline)?;
        let b1 = self.buf[1];
        let (len, hl) = match b1 & 0x7f {
            126 => {
                fill(&mut self.s, &mut self.buf, 4, deadline)?;
                (u16::from_be_bytes([self.buf[2], self.buf[3]]) as usize, 4)
            }
            127 => {
                fill(&mut self.s, &mut self.buf, 10, deadline)?;
                (
                    u64::from_be_bytes(self.buf[2..10].try_into().unwrap()) as usize,
                    10,
                )
            }
            n => (n as usize, 2),
        };
        assert_eq!(b1 & 0x80, 0, "server frames must not be masked");
        fill(&mut self.s, &mut self.buf, hl + len, deadline)?;
        let f = WsFrame {
            fin: self.buf[0] & 0x80 != 0,
            opcode: self.buf[0] & 0x0f,
            payload: self.buf[hl..hl + len].to_vec(),
        };
        self.buf.drain(..hl + len);
        Some(f)
    }

    /// Reads one text message (skipping nothing: the next frame must be text).
    pub fn recv_text(&mut self) -> String {
        let f = self.recv().expect("a frame");
        assert_eq!(f.opcode, 1, "expected text, got {f:?}");
        String::from_utf8(f.payload).unwrap()
    }
}

/// A client frame (masked with `key`).
pub fn frame_bytes(fin: bool, opcode: u8, payload: &[u8], key: [u8; 4]) -> Vec<u8> {
    let mut f = vec![(if fin { 0x80 } else { 0 }) | opcode];
    let len = payload.len();
    if len < 126 {
        f.push(0x80 | len as u8);
    } else if len < 65536 {
        f.push(0x80 | 126);
        f.extend_from_slice(&(len as u16).to_be_bytes());
    } else {
        f.push(0x80 | 127);
        f.extend_from_slice(&(len as u64).to_be_bytes());
    }
    f.extend_from_slice(&key);
    f.extend(payload.iter().enumerate().map(|(i, b)| b ^ key[i % 4]));
    f
}
