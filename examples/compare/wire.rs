//! What every client of the comparison shares: sockets that count their bytes, the server
//! child process, one keep-alive HTTP exchange, and the event payload.

use std::io::{self, BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::process::{Child, ChildStdin, Command, Stdio};
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::Arc;
use std::time::{Duration, Instant};

use pushwire::proto::http1::{ClientResponse, Limits, ResponseReader};

/// The bytes, requests and connections one subscriber used, counted on its own sockets.
#[derive(Default)]
pub struct Meter {
    /// Bytes read from the socket (toward the subscriber).
    pub down: AtomicU64,
    /// Bytes written to the socket (from the subscriber).
    pub up: AtomicU64,
    /// HTTP requests on the wire (sent by a client, or received by the webhook receiver).
    pub requests: AtomicU64,
    /// TCP connections opened (by a client, or accepted by the webhook receiver).
    pub connections: AtomicU64,
}

/// A copy of a [`Meter`] at one moment; phases subtract two of them.
#[derive(Clone, Copy, Default, Debug)]
pub struct Counts {
    pub down: u64,
    pub up: u64,
    pub requests: u64,
    pub connections: u64,
}

impl Meter {
    pub fn snapshot(&self) -> Counts {
        Counts {
            down: self.down.load(Relaxed),
            up: self.up.load(Relaxed),
            requests: self.requests.load(Relaxed),
            connections: self.connections.load(Relaxed),
        }
    }
    pub fn request(&self) {
        self.requests.fetch_add(1, Relaxed);
    }
}

impl std::ops::Sub for Counts {
    type Output = Counts;
    fn sub(self, o: Counts) -> Counts {
        Counts {
            down: self.down - o.down,
            up: self.up - o.up,
            requests: self.requests - o.requests,
            connections: self.connections - o.connections,
        }
    }
}

/// A TCP stream whose reads and writes are added to a [`Meter`].
pub struct Wire {
    pub s: TcpStream,
    m: Arc<Meter>,
}

impl Wire {
    /// Connects (counted as one connection), with `TCP_NODELAY` and a read timeout so that
    /// the reader can look at its orders between reads.
    pub fn connect(addr: SocketAddr, m: &Arc<Meter>) -> io::Result<Wire> {
        let s = TcpStream::connect_timeout(&addr, Duration::from_secs(5))?;
        m.connections.fetch_add(1, Relaxed);
        Wire::wrap(s, m)
    }

    /// An accepted stream (the caller counts the connection).
    pub fn wrap(s: TcpStream, m: &Arc<Meter>) -> io::Result<Wire> {
        s.set_nodelay(true)?;
        s.set_read_timeout(Some(Duration::from_millis(20)))?;
        Ok(Wire { s, m: m.clone() })
    }
}

impl Read for Wire {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.s.read(buf)?;
        self.m.down.fetch_add(n as u64, Relaxed);
        Ok(n)
    }
}

impl Write for Wire {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let n = self.s.write(buf)?;
        self.m.up.fetch_add(n as u64, Relaxed);
        Ok(n)
    }
    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

/// True for the errors a read timeout gives (nothing arrived yet).
pub fn timed_out(e: &io::Error) -> bool {
    matches!(
        e.kind(),
        io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut | io::ErrorKind::Interrupted
    )
}

/// The `compare --serve` child: killed when dropped; it also exits by itself when its
/// stdin closes, so it never outlives this process.
pub struct ServerProc {
    child: Child,
    _stdin: ChildStdin,
    pub addr: SocketAddr,
}

impl ServerProc {
    pub fn start(max_subs: usize, retry: Option<f64>) -> io::Result<ServerProc> {
        let mut cmd = Command::new(std::env::current_exe()?);
        cmd.arg("--serve").arg(max_subs.to_string());
        if let Some(r) = retry {
            cmd.arg(r.to_string());
        }
        let mut child = cmd
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()?;
        let stdin = child.stdin.take().expect("piped stdin");
        let mut line = String::new();
        let read = BufReader::new(child.stdout.take().expect("piped stdout")).read_line(&mut line);
        let port = line
            .trim()
            .strip_prefix("port ")
            .and_then(|p| p.parse().ok());
        match (read, port) {
            (Ok(_), Some(port)) => Ok(ServerProc {
                child,
                _stdin: stdin,
                addr: SocketAddr::from(([127, 0, 0, 1], port)),
            }),
            _ => {
                let _ = child.kill();
                let _ = child.wait();
                Err(io::Error::other(format!("the server said {line:?}")))
            }
        }
    }

    /// The server's resident memory, in bytes (`VmRSS` of `/proc/PID/status`).
    pub fn rss(&self) -> io::Result<u64> {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.child.id()))?;
        status
            .lines()
            .find_map(|l| l.strip_prefix("VmRSS:"))
            .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
            .map(|kb| kb * 1024)
            .ok_or_else(|| io::Error::other("no VmRSS in /proc/PID/status"))
    }
}

impl Drop for ServerProc {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Reads one response from `w` into `buf` (which may hold bytes already), within `limit`.
pub fn read_response(
    w: &mut impl Read,
    buf: &mut Vec<u8>,
    limit: Duration,
) -> io::Result<ClientResponse> {
    let deadline = Instant::now() + limit;
    let mut reader = ResponseReader::new(false, 1 << 20, &Limits::default());
    let mut chunk = [0u8; 16 * 1024];
    loop {
        let (used, done) = reader
            .advance(buf)
            .map_err(|e| io::Error::other(e.to_string()))?;
        buf.drain(..used);
        if let Some(resp) = done {
            return Ok(resp);
        }
        if Instant::now() > deadline {
            return Err(io::ErrorKind::TimedOut.into());
        }
        match w.read(&mut chunk) {
            Ok(0) => return Err(io::ErrorKind::UnexpectedEof.into()),
            Ok(n) => buf.extend_from_slice(&chunk[..n]),
            Err(e) if timed_out(&e) => {}
            Err(e) => return Err(e),
        }
    }
}

/// A plain keep-alive HTTP client for the publisher and the set-up requests.
pub struct Http {
    w: Wire,
    buf: Vec<u8>,
}

impl Http {
    pub fn connect(addr: SocketAddr) -> io::Result<Http> {
        Ok(Http {
            w: Wire::connect(addr, &Arc::new(Meter::default()))?,
            buf: Vec::new(),
        })
    }

    /// One request; the answer's status and body.
    pub fn call(
        &mut self,
        method: &str,
        path: &str,
        ctype: &str,
        body: &[u8],
    ) -> io::Result<(u16, String)> {
        let mut req = format!(
            "{method} {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: {ctype}\r\nContent-Length: {}\r\n\r\n",
            body.len()
        )
        .into_bytes();
        req.extend_from_slice(body);
        self.w.write_all(&req)?;
        let resp = read_response(&mut self.w, &mut self.buf, Duration::from_secs(10))?;
        Ok((
            resp.status,
            String::from_utf8_lossy(&resp.body).into_owned(),
        ))
    }
}

/// An event's data: `cmp SEQ SENT_NS` padded with `x` to `size` bytes. `SENT_NS` is the
/// publisher's clock (nanoseconds since the run's start), shared by every subscriber in
/// this process; JSON, SSE and form encodings all carry these bytes unchanged.
pub fn payload(seq: u64, sent_ns: u64, size: usize) -> String {
    let mut s = format!("cmp {seq} {sent_ns} ");
    while s.len() < size {
        s.push('x');
    }
    s
}

/// The `(seq, sent_ns)` of a payload, found anywhere in `text` after `from`; and where it
/// ended, to look for the next one.
pub fn find_payload(text: &[u8], from: usize) -> Option<(u64, u64, usize)> {
    let start = from + find(&text[from.min(text.len())..], b"cmp ")? + 4;
    let mut nums = [0u64; 2];
    let mut at = start;
    for n in &mut nums {
        let digits = text[at..].iter().take_while(|b| b.is_ascii_digit()).count();
        if digits == 0 {
            return None;
        }
        *n = std::str::from_utf8(&text[at..at + digits])
            .ok()?
            .parse()
            .ok()?;
        at += digits + 1;
    }
    Some((nums[0], nums[1], at))
}

/// The number after `key` (like `"id":` or `id: `) at or after `from`.
pub fn number_after(text: &[u8], key: &[u8], from: usize) -> Option<(u64, usize)> {
    let at = from + find(&text[from.min(text.len())..], key)? + key.len();
    let digits = text[at..].iter().take_while(|b| b.is_ascii_digit()).count();
    let n = std::str::from_utf8(&text[at..at + digits])
        .ok()?
        .parse()
        .ok()?;
    Some((n, at + digits))
}

pub fn find(hay: &[u8], needle: &[u8]) -> Option<usize> {
    hay.windows(needle.len()).position(|w| w == needle)
}
