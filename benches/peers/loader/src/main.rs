//! Loader for `benches/peers/run.sh`: N WebSocket or SSE subscribers of one topic and one
//! publisher, all nonblocking sockets on one mio loop, against any server that speaks
//! `POST /topics/fanout` (publish) and `GET /topics/fanout/ws` / `/topics/fanout/sse`
//! (subscribe): pushwire's hub, a uWebSockets pub/sub server, nginx + nchan.
//!
//! ```text
//! peers-loader --target NAME --addr 127.0.0.1:PORT --transport ws|sse --subs N
//!     --mode serial|rate=R|hold [--events E] [--sub-path P] [--pub-path P]
//!     [--wrap] [--stats] [--server-pid PID] [--sources 4] [--data-bytes 64]
//!     [--subscribed] [--pause-file PATH] [--setup-secs 120] [--drain-secs 20]
//! ```
//!
//! Subscribers are bound before connecting to 127.0.0.2, 127.0.0.3, ... (`--sources`, with
//! `IP_BIND_ADDRESS_NO_PORT`), at most 256 handshakes in flight. A WebSocket subscriber
//! sends a masked-client handshake (no extension offered), checks `101` and
//! `Sec-WebSocket-Accept`, parses frames (text/binary, continuations, answers pings with
//! masked pongs); an SSE subscriber checks `200`, decodes chunked bodies and collects `data:`
//! lines into events. Every event carries `fanout-NNNNNN` (its sequence number) or
//! `warmup-NNNNNN` in its data.
//!
//! Setup: with `--stats` the loader waits until the hub's `/stats` counts N connections of
//! the transport; then (always) it publishes warm-up events, one at a time, until every
//! subscriber has received one, so a server that has no `/stats` is known to have all N
//! subscribed. With `--pause-file P` it then writes `P.ready` and waits (at most 60 s) for
//! `P.go` to exist, so a script can attach `perf stat` to the server first.
//!
//! Modes (the publisher is one keep-alive HTTP connection, one request in flight):
//! - `serial`: publish event k+1 once event k has reached all N subscribers and its answer
//!   came back;
//! - `rate=R`: publish event k at `t0 + k/R` (or as soon as the previous answer is back, when
//!   behind);
//! - `hold`: no events; read the server's RSS (`--server-pid`) before connecting and after
//!   all N are open (with `--subscribed`: and have each received a warm-up event) and 1 s
//!   of quiet: prints `rss_per_conn`.
//!
//! Rate = events delivered to all subscribers / time from the first publish's write to the
//! last delivery. Every subscriber must get every event once, in order: `missing` counts
//! the events some subscriber never got, `dups` the ones it got twice or out of order. With
//! `--wrap` the body posted is `{"id":<16 digits>,"event":null,"data":"<data>"}`, the shape
//! of pushwire's WebSocket frame, so servers that forward bodies as they are (uWS, nchan)
//! send frames of the same size as pushwire's. Output, one line:
//!
//! ```text
//! peers target=NAME transport=ws subs=N mode=serial deliveries=D secs=S
//!     deliveries_per_s=R missing=M dups=0 closed=0 pub_per_s=.. loader_cpu_share=..
//!     server_cpu_share=.. deliveries_per_server_cpu_s=..
//! ```
//!
//! (`server_cpu_share`: the server's utime + stime (its CPU-time clock, `clock_getcpuclockid`;
//! `/proc/PID/stat` as the fallback) over the measured time; `deliveries_per_server_cpu_s`: deliveries per second of that CPU time,
//! the steadier figure when other work shares the server's core.)
use mio::net::TcpStream;
use mio::{Events, Interest, Poll, Token};
use std::io::{self, Read, Write};
use std::net::{Ipv4Addr, SocketAddr, SocketAddrV4};
use std::os::fd::FromRawFd;
use std::time::{Duration, Instant};

const PUB: Token = Token(usize::MAX - 1);
const MAX_CONNECTING: usize = 256;

fn die(msg: impl std::fmt::Display) -> ! {
    eprintln!("peers-loader: {msg}");
    std::process::exit(1)
}

#[derive(Clone, Copy, PartialEq)]
enum Transport {
    Ws,
    Sse,
}

#[derive(Clone, Copy, PartialEq)]
enum Mode {
    Serial,
    Rate(f64),
    Hold,
}

struct Opts {
    target: String,
    addr: SocketAddrV4,
    transport: Transport,
    subs: usize,
    mode: Mode,
    events: u32,
    sub_path: String,
    pub_path: String,
    wrap: bool,
    stats: bool,
    subscribed: bool,
    server_pid: Option<u32>,
    sources: u8,
    data_bytes: usize,
    pause_file: Option<String>,
    setup_secs: u64,
    drain_secs: u64,
}

fn parse_opts() -> Opts {
    let mut o = Opts {
        target: "server".into(),
        addr: "127.0.0.1:19401".parse().unwrap(),
        transport: Transport::Ws,
        subs: 1000,
        mode: Mode::Serial,
        events: 0,
        sub_path: String::new(),
        pub_path: "/topics/fanout".into(),
        wrap: false,
        stats: false,
        subscribed: false,
        server_pid: None,
        sources: 4,
        data_bytes: 64,
        pause_file: None,
        setup_secs: 120,
        drain_secs: 20,
    };
    let mut args = std::env::args().skip(1);
    while let Some(a) = args.next() {
        let mut val = || args.next().unwrap_or_else(|| die(format!("{a} needs a value")));
        match a.as_str() {
            "--target" => o.target = val(),
            "--addr" => o.addr = val().parse().unwrap_or_else(|e| die(format!("--addr: {e}"))),
            "--transport" => {
                o.transport = match val().as_str() {
                    "ws" => Transport::Ws,
                    "sse" => Transport::Sse,
                    t => die(format!("--transport {t}: ws or sse")),
                }
            }
            "--subs" => o.subs = num(&val()),
            "--mode" => {
                let v = val();
                o.mode = match v.as_str() {
                    "serial" => Mode::Serial,
                    "hold" => Mode::Hold,
                    r if r.starts_with("rate=") => Mode::Rate(
                        r[5..].parse().unwrap_or_else(|_| die(format!("--mode {v}"))),
                    ),
                    _ => die(format!("--mode {v}: serial, rate=R or hold")),
                }
            }
            "--events" => o.events = num(&val()) as u32,
            "--sub-path" => o.sub_path = val(),
            "--pub-path" => o.pub_path = val(),
            "--wrap" => o.wrap = true,
            "--stats" => o.stats = true,
            "--subscribed" => o.subscribed = true,
            "--server-pid" => o.server_pid = Some(num(&val()) as u32),
            "--sources" => o.sources = num(&val()).clamp(1, 200) as u8,
            "--data-bytes" => o.data_bytes = num(&val()).max(24),
            "--pause-file" => o.pause_file = Some(val()),
            "--setup-secs" => o.setup_secs = num(&val()) as u64,
            "--drain-secs" => o.drain_secs = num(&val()) as u64,
            _ => die(format!("unknown argument {a}")),
        }
    }
    if o.sub_path.is_empty() {
        o.sub_path = match o.transport {
            Transport::Ws => "/topics/fanout/ws".into(),
            Transport::Sse => "/topics/fanout/sse".into(),
        };
    }
    if o.events == 0 {
        o.events = match o.mode {
            Mode::Rate(r) => (2.0 * r) as u32,
            _ => 100,
        };
    }
    o
}

fn num(s: &str) -> usize {
    s.parse().unwrap_or_else(|_| die(format!("{s}: not a number")))
}

// ---- SHA-1 and base64, for Sec-WebSocket-Accept ----

fn sha1(data: &[u8]) -> [u8; 20] {
    let mut h: [u32; 5] = [0x67452301, 0xEFCDAB89, 0x98BADCFE, 0x10325476, 0xC3D2E1F0];
    let mut msg = data.to_vec();
    let bits = (data.len() as u64) * 8;
    msg.push(0x80);
    while msg.len() % 64 != 56 {
        msg.push(0);
    }
    msg.extend_from_slice(&bits.to_be_bytes());
    for block in msg.chunks(64) {
        let mut w = [0u32; 80];
        for i in 0..16 {
            w[i] = u32::from_be_bytes([block[4 * i], block[4 * i + 1], block[4 * i + 2], block[4 * i + 3]]);
        }
        for i in 16..80 {
            w[i] = (w[i - 3] ^ w[i - 8] ^ w[i - 14] ^ w[i - 16]).rotate_left(1);
        }
        let [mut a, mut b, mut c, mut d, mut e] = h;
        for (i, wi) in w.iter().enumerate() {
            let (f, k) = match i {
                0..=19 => ((b & c) | (!b & d), 0x5A827999),
                20..=39 => (b ^ c ^ d, 0x6ED9EBA1),
                40..=59 => ((b & c) | (b & d) | (c & d), 0x8F1BBCDC),
                _ => (b ^ c ^ d, 0xCA62C1D6),
            };
            let t = a.rotate_left(5).wrapping_add(f).wrapping_add(e).wrapping_add(k).wrapping_add(*wi);
            e = d;
            d = c;
            c = b.rotate_left(30);
            b = a;
            a = t;
        }
        for (x, y) in h.iter_mut().zip([a, b, c, d, e]) {
            *x = x.wrapping_add(y);
        }
    }
    let mut out = [0u8; 20];
    for (i, x) in h.iter().enumerate() {
        out[4 * i..4 * i + 4].copy_from_slice(&x.to_be_bytes());
    }
    out
}

fn base64(data: &[u8]) -> String {
    const T: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut s = String::new();
    for c in data.chunks(3) {
        let n = (c[0] as u32) << 16 | (*c.get(1).unwrap_or(&0) as u32) << 8 | *c.get(2).unwrap_or(&0) as u32;
        s.push(T[(n >> 18) as usize & 63] as char);
        s.push(T[(n >> 12) as usize & 63] as char);
        s.push(if c.len() > 1 { T[(n >> 6) as usize & 63] as char } else { '=' });
        s.push(if c.len() > 2 { T[n as usize & 63] as char } else { '=' });
    }
    s
}

struct Rng(u64);
impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
}

// ---- subscribers ----

#[derive(PartialEq)]
enum State {
    Waiting,
    Connecting,
    Head,
    Open,
    Closed,
}

#[derive(Clone, Copy)]
enum Chunk {
    Size(usize),
    SizeExt(usize),
    SizeLf(usize),
    Data(usize),
    DataCr,
    DataLf,
    Plain,
}

struct Sub {
    sock: Option<TcpStream>,
    state: State,
    out: Vec<u8>,
    out_off: usize,
    inbuf: Vec<u8>,
    accept: String,
    next: u32,
    missing: u64,
    dups: u64,
    warm: bool,
    // WebSocket: a fragmented message in progress; SSE: the current event's data.
    msg: Vec<u8>,
    fragmented: bool,
    // SSE: chunked decoding, the current line.
    chunk: Chunk,
    line: Vec<u8>,
}

/// What all subscribers feed.
struct Tally {
    events: u32,
    got: Vec<u32>,
    delivered: u64,
    warm: usize,
    open: usize,
    closed: usize,
    other: u64,
    last_delivery: Instant,
    now: Instant,
    errors: Vec<String>,
}

impl Tally {
    fn on_message(&mut self, sub_next: &mut u32, missing: &mut u64, dups: &mut u64, warm: &mut bool, payload: &[u8]) {
        if let Some(seq) = marker(payload, b"fanout-") {
            if seq == 0 || seq > self.events {
                self.other += 1;
                return;
            }
            if seq < *sub_next {
                *dups += 1;
                return;
            }
            if seq > *sub_next {
                *missing += (seq - *sub_next) as u64;
            }
            *sub_next = seq + 1;
            self.got[seq as usize] += 1;
            self.delivered += 1;
            self.last_delivery = self.now;
        } else if marker(payload, b"warmup-").is_some() {
            if !*warm {
                *warm = true;
                self.warm += 1;
            }
        } else {
            self.other += 1;
        }
    }
}

/// The six-digit number after `tag` in `b`.
fn marker(b: &[u8], tag: &[u8]) -> Option<u32> {
    let i = b.windows(tag.len()).position(|w| w == tag)? + tag.len();
    let d = b.get(i..i + 6)?;
    let mut n = 0u32;
    for c in d {
        if !c.is_ascii_digit() {
            return None;
        }
        n = n * 10 + (c - b'0') as u32;
    }
    Some(n)
}

impl Sub {
    /// Parses what `data` holds; returns how many bytes it used (the rest is an incomplete
    /// frame / line to keep).
    fn feed(&mut self, data: &[u8], t: &mut Tally, transport: Transport, rng: &mut Rng) -> usize {
        let mut pos = 0;
        if self.state == State::Head {
            let mut headers = [httparse::EMPTY_HEADER; 32];
            let mut resp = httparse::Response::new(&mut headers);
            match resp.parse(data) {
                Ok(httparse::Status::Partial) => return 0,
                Err(e) => {
                    t.errors.push(format!("bad response head: {e}"));
                    self.state = State::Closed;
                    return data.len();
                }
                Ok(httparse::Status::Complete(n)) => {
                    let h = |name: &str| {
                        resp.headers
                            .iter()
                            .find(|h| h.name.eq_ignore_ascii_case(name))
                            .map(|h| String::from_utf8_lossy(h.value).trim().to_owned())
                    };
                    let code = resp.code.unwrap_or(0);
                    let ok = match transport {
                        Transport::Ws => {
                            code == 101 && h("sec-websocket-accept").as_deref() == Some(&self.accept)
                                && h("sec-websocket-extensions").is_none()
                        }
                        Transport::Sse => code == 200,
                    };
                    if !ok {
                        t.errors.push(format!(
                            "subscribe answered {code} (accept {:?}, extensions {:?})",
                            h("sec-websocket-accept"),
                            h("sec-websocket-extensions")
                        ));
                        self.state = State::Closed;
                        return data.len();
                    }
                    if transport == Transport::Sse {
                        let chunked = h("transfer-encoding").is_some_and(|v| v.eq_ignore_ascii_case("chunked"));
                        self.chunk = if chunked { Chunk::Size(0) } else { Chunk::Plain };
                    }
                    self.state = State::Open;
                    t.open += 1;
                    pos = n;
                }
            }
        }
        if self.state != State::Open {
            return data.len();
        }
        match transport {
            Transport::Ws => pos + self.feed_ws(&data[pos..], t, rng),
            Transport::Sse => {
                self.feed_chunked(&data[pos..], t);
                data.len()
            }
        }
    }

    fn feed_ws(&mut self, data: &[u8], t: &mut Tally, rng: &mut Rng) -> usize {
        let mut pos = 0;
        loop {
            let d = &data[pos..];
            if d.len() < 2 {
                return pos;
            }
            let (b0, b1) = (d[0], d[1]);
            if b1 & 0x80 != 0 {
                t.errors.push("server frame is masked".into());
                self.state = State::Closed;
                return data.len();
            }
            let (len, hl) = match b1 & 0x7f {
                126 if d.len() >= 4 => (u16::from_be_bytes([d[2], d[3]]) as usize, 4),
                127 if d.len() >= 10 => (u64::from_be_bytes(d[2..10].try_into().unwrap()) as usize, 10),
                126 | 127 => return pos,
                n => (n as usize, 2),
            };
            if d.len() < hl + len {
                return pos;
            }
            let payload = &d[hl..hl + len];
            let fin = b0 & 0x80 != 0;
            match b0 & 0x0f {
                1 | 2 if fin && !self.fragmented => {
                    t.on_message(&mut self.next, &mut self.missing, &mut self.dups, &mut self.warm, payload)
                }
                1 | 2 => {
                    self.fragmented = true;
                    self.msg.clear();
                    self.msg.extend_from_slice(payload);
                }
                0 => {
                    self.msg.extend_from_slice(payload);
                    if fin {
                        self.fragmented = false;
                        let m = std::mem::take(&mut self.msg);
                        t.on_message(&mut self.next, &mut self.missing, &mut self.dups, &mut self.warm, &m);
                        self.msg = m;
                    }
                }
                8 => {
                    t.errors.push("server sent a close frame".into());
                    self.state = State::Closed;
                    return data.len();
                }
                9 => {
                    // pong, masked, same payload
                    let mask = (rng.next() as u32).to_be_bytes();
                    self.out.push(0x8a);
                    self.out.push(0x80 | len as u8);
                    self.out.extend_from_slice(&mask);
                    for (i, c) in payload.iter().enumerate() {
                        self.out.push(c ^ mask[i & 3]);
                    }
                }
                _ => {}
            }
            pos += hl + len;
        }
    }

    fn feed_chunked(&mut self, mut d: &[u8], t: &mut Tally) {
        while !d.is_empty() {
            match self.chunk {
                Chunk::Plain => {
                    self.feed_sse(d, t);
                    return;
                }
                Chunk::Size(n) => {
                    let c = d[0];
                    d = &d[1..];
                    self.chunk = match c {
                        b'0'..=b'9' => Chunk::Size(n * 16 + (c - b'0') as usize),
                        b'a'..=b'f' => Chunk::Size(n * 16 + (c - b'a' + 10) as usize),
                        b'A'..=b'F' => Chunk::Size(n * 16 + (c - b'A' + 10) as usize),
                        b'\r' => Chunk::SizeLf(n),
                        _ => Chunk::SizeExt(n),
                    };
                }
                Chunk::SizeExt(n) => {
                    if d[0] == b'\r' {
                        self.chunk = Chunk::SizeLf(n);
                    }
                    d = &d[1..];
                }
                Chunk::SizeLf(n) => {
                    d = &d[1..];
                    if n == 0 {
                        t.errors.push("SSE stream ended".into());
                        self.state = State::Closed;
                        return;
                    }
                    self.chunk = Chunk::Data(n);
                }
                Chunk::Data(n) => {
                    let k = n.min(d.len());
                    self.feed_sse(&d[..k], t);
                    d = &d[k..];
                    self.chunk = if k == n { Chunk::DataCr } else { Chunk::Data(n - k) };
                }
                Chunk::DataCr => {
                    d = &d[1..];
                    self.chunk = Chunk::DataLf;
                }
                Chunk::DataLf => {
                    d = &d[1..];
                    self.chunk = Chunk::Size(0);
                }
            }
        }
    }

    fn feed_sse(&mut self, mut d: &[u8], t: &mut Tally) {
        while let Some(i) = d.iter().position(|&c| c == b'\n') {
            let line: &[u8] = if self.line.is_empty() {
                &d[..i]
            } else {
                self.line.extend_from_slice(&d[..i]);
                &self.line
            };
            let line = line.strip_suffix(b"\r").unwrap_or(line);
            if line.is_empty() {
                if !self.msg.is_empty() {
                    let m = std::mem::take(&mut self.msg);
                    t.on_message(&mut self.next, &mut self.missing, &mut self.dups, &mut self.warm, &m);
                    self.msg = m;
                    self.msg.clear();
                }
            } else if let Some(v) = line.strip_prefix(b"data:") {
                let v = v.strip_prefix(b" ").unwrap_or(v);
                if !self.msg.is_empty() {
                    self.msg.push(b'\n');
                }
                self.msg.extend_from_slice(v);
            }
            self.line.clear();
            d = &d[i + 1..];
        }
        self.line.extend_from_slice(d);
    }

    fn flush(&mut self) -> io::Result<()> {
        let Some(sock) = self.sock.as_mut() else { return Ok(()) };
        while self.out_off < self.out.len() {
            match sock.write(&self.out[self.out_off..]) {
                Ok(n) => self.out_off += n,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Ok(()),
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(e),
            }
        }
        self.out.clear();
        self.out_off = 0;
        Ok(())
    }
}

fn connect_from(src: Ipv4Addr, dst: SocketAddrV4) -> io::Result<TcpStream> {
    unsafe {
        let fd = libc::socket(libc::AF_INET, libc::SOCK_STREAM | libc::SOCK_NONBLOCK | libc::SOCK_CLOEXEC, 0);
        if fd < 0 {
            return Err(io::Error::last_os_error());
        }
        let sock = TcpStream::from_raw_fd(fd);
        let one: libc::c_int = 1;
        libc::setsockopt(fd, libc::IPPROTO_IP, libc::IP_BIND_ADDRESS_NO_PORT, &one as *const _ as *const _, 4);
        libc::setsockopt(fd, libc::IPPROTO_TCP, libc::TCP_NODELAY, &one as *const _ as *const _, 4);
        let sin = |a: SocketAddrV4| libc::sockaddr_in {
            sin_family: libc::AF_INET as _,
            sin_port: a.port().to_be(),
            sin_addr: libc::in_addr { s_addr: u32::from(*a.ip()).to_be() },
            sin_zero: [0; 8],
        };
        let s = sin(SocketAddrV4::new(src, 0));
        if libc::bind(fd, &s as *const _ as *const _, std::mem::size_of::<libc::sockaddr_in>() as _) < 0 {
            return Err(io::Error::last_os_error());
        }
        let d = sin(dst);
        if libc::connect(fd, &d as *const _ as *const _, std::mem::size_of::<libc::sockaddr_in>() as _) < 0 {
            let e = io::Error::last_os_error();
            if e.raw_os_error() != Some(libc::EINPROGRESS) {
                return Err(e);
            }
        }
        Ok(sock)
    }
}

// ---- the publisher ----

struct Publisher {
    // connected at the first publish (a hold run against an echo server has none)
    sock: Option<TcpStream>,
    addr: SocketAddrV4,
    inbuf: Vec<u8>,
    out: Vec<u8>,
    out_off: usize,
    in_flight: bool,
    reconnect: bool,
    answered: u64,
}

impl Publisher {
    fn connect(poll: &Poll, addr: SocketAddrV4) -> io::Result<TcpStream> {
        let s = std::net::TcpStream::connect_timeout(&SocketAddr::V4(addr), Duration::from_secs(5))?;
        s.set_nodelay(true)?;
        s.set_nonblocking(true)?;
        let mut s = TcpStream::from_std(s);
        poll.registry().register(&mut s, PUB, Interest::READABLE | Interest::WRITABLE)?;
        Ok(s)
    }

    fn send(&mut self, poll: &Poll, path: &str, body: &[u8]) -> Result<(), String> {
        if self.reconnect || self.sock.is_none() {
            if let Some(mut old) = self.sock.take() {
                let _ = poll.registry().deregister(&mut old);
            }
            self.sock = Some(Self::connect(poll, self.addr).map_err(|e| format!("publisher connect {}: {e}", self.addr))?);
            self.reconnect = false;
        }
        self.out.clear();
        self.out_off = 0;
        self.out.extend_from_slice(
            format!(
                "POST {path} HTTP/1.1\r\nHost: {}\r\nContent-Type: text/plain\r\nContent-Length: {}\r\n\r\n",
                self.addr,
                body.len()
            )
            .as_bytes(),
        );
        self.out.extend_from_slice(body);
        self.in_flight = true;
        self.flush()
    }

    fn flush(&mut self) -> Result<(), String> {
        let Some(sock) = self.sock.as_mut() else { return Ok(()) };
        while self.out_off < self.out.len() {
            match sock.write(&self.out[self.out_off..]) {
                Ok(n) => self.out_off += n,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Ok(()),
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(format!("publisher write: {e}")),
            }
        }
        Ok(())
    }

    fn readable(&mut self) -> Result<(), String> {
        let mut buf = [0u8; 16384];
        let Some(sock) = self.sock.as_mut() else { return Ok(()) };
        loop {
            match sock.read(&mut buf) {
                Ok(0) => {
                    if self.in_flight {
                        return Err("publisher connection closed with a request in flight".into());
                    }
                    self.reconnect = true;
                    return Ok(());
                }
                Ok(n) => self.inbuf.extend_from_slice(&buf[..n]),
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(format!("publisher read: {e}")),
            }
        }
        loop {
            let mut headers = [httparse::EMPTY_HEADER; 32];
            let mut resp = httparse::Response::new(&mut headers);
            let n = match resp.parse(&self.inbuf) {
                Ok(httparse::Status::Partial) => return Ok(()),
                Err(e) => return Err(format!("publisher: bad answer: {e}")),
                Ok(httparse::Status::Complete(n)) => n,
            };
            let code = resp.code.unwrap_or(0);
            let h = |name: &str| {
                resp.headers
                    .iter()
                    .find(|h| h.name.eq_ignore_ascii_case(name))
                    .map(|h| String::from_utf8_lossy(h.value).trim().to_ascii_lowercase())
            };
            if h("transfer-encoding").is_some() {
                return Err("publisher: chunked answers are not handled".into());
            }
            let len: usize = h("content-length").and_then(|v| v.parse().ok()).unwrap_or(0);
            if self.inbuf.len() < n + len {
                return Ok(());
            }
            if !(200..300).contains(&code) {
                return Err(format!(
                    "publish answered {code}: {}",
                    String::from_utf8_lossy(&self.inbuf[n..n + len])
                ));
            }
            if h("connection").as_deref() == Some("close") {
                self.reconnect = true;
            }
            self.inbuf.drain(..n + len);
            self.in_flight = false;
            self.answered += 1;
        }
    }
}

// ---- small helpers ----

fn http_get(addr: SocketAddrV4, path: &str) -> io::Result<(u16, Vec<u8>)> {
    let mut s = std::net::TcpStream::connect_timeout(&SocketAddr::V4(addr), Duration::from_secs(5))?;
    s.set_read_timeout(Some(Duration::from_secs(5)))?;
    write!(s, "GET {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n")?;
    let mut v = Vec::new();
    s.read_to_end(&mut v)?;
    let code = std::str::from_utf8(v.get(9..12).unwrap_or(b"0")).unwrap_or("0").parse().unwrap_or(0);
    let body = v.windows(4).position(|w| w == b"\r\n\r\n").map(|i| v[i + 4..].to_vec()).unwrap_or_default();
    Ok((code, body))
}

/// `"section":{..."key":N` in /stats.
fn stat(body: &[u8], section: &str, key: &str) -> Option<u64> {
    let s = std::str::from_utf8(body).ok()?;
    let rest = &s[s.find(&format!("\"{section}\":{{"))?..];
    let rest = &rest[rest.find(&format!("\"{key}\":"))? + key.len() + 3..];
    rest[..rest.find(|c: char| !c.is_ascii_digit())?].parse().ok()
}

fn rss_kb(pid: u32) -> Option<u64> {
    let s = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let l = s.lines().find(|l| l.starts_with("VmRSS:"))?;
    l.split_whitespace().nth(1)?.parse().ok()
}

/// utime + stime of a process, in seconds: its CPU-time clock (nanoseconds), else
/// `/proc/PID/stat` (10 ms ticks).
fn proc_cpu(pid: u32) -> Option<f64> {
    unsafe {
        let mut clk: libc::clockid_t = 0;
        if libc::clock_getcpuclockid(pid as libc::pid_t, &mut clk) == 0 {
            let mut ts: libc::timespec = std::mem::zeroed();
            if libc::clock_gettime(clk, &mut ts) == 0 {
                return Some(ts.tv_sec as f64 + ts.tv_nsec as f64 / 1e9);
            }
        }
    }
    proc_cpu_ticks(pid)
}

fn proc_cpu_ticks(pid: u32) -> Option<f64> {
    let s = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let f: Vec<&str> = s[s.rfind(')')? + 2..].split_whitespace().collect();
    let ticks: f64 = f.get(11)?.parse::<f64>().ok()? + f.get(12)?.parse::<f64>().ok()?;
    Some(ticks / unsafe { libc::sysconf(libc::_SC_CLK_TCK) } as f64)
}

fn self_cpu() -> f64 {
    let mut ru: libc::rusage = unsafe { std::mem::zeroed() };
    unsafe { libc::getrusage(libc::RUSAGE_SELF, &mut ru) };
    let tv = |t: libc::timeval| t.tv_sec as f64 + t.tv_usec as f64 / 1e6;
    tv(ru.ru_utime) + tv(ru.ru_stime)
}

fn raise_nofile() {
    unsafe {
        let mut r: libc::rlimit = std::mem::zeroed();
        libc::getrlimit(libc::RLIMIT_NOFILE, &mut r);
        r.rlim_cur = r.rlim_max;
        libc::setrlimit(libc::RLIMIT_NOFILE, &r);
    }
}

fn body(o: &Opts, tag: &str, seq: u32) -> Vec<u8> {
    let mut data = format!("{tag}{seq:06}-");
    while data.len() < o.data_bytes {
        data.push('x');
    }
    if o.wrap {
        // pushwire's WebSocket frame: {"id":<16 digits>,"event":null,"data":"..."}
        format!("{{\"id\":{},\"event\":null,\"data\":\"{data}\"}}", 1_796_317_597_000_000u64 + seq as u64).into_bytes()
    } else {
        data.into_bytes()
    }
}

// ---- the loop ----

struct Bench {
    o: Opts,
    poll: Poll,
    events: Events,
    subs: Vec<Sub>,
    tally: Tally,
    publ: Publisher,
    scratch: Vec<u8>,
    rng: Rng,
    connecting: usize,
    next_connect: usize,
}

impl Bench {
    fn start_connects(&mut self) {
        while self.connecting < MAX_CONNECTING && self.next_connect < self.subs.len() {
            let i = self.next_connect;
            self.next_connect += 1;
            let src = Ipv4Addr::new(127, 0, 0, 2 + (i % self.o.sources as usize) as u8);
            let mut sock = connect_from(src, self.o.addr).unwrap_or_else(|e| die(format!("connect {i}: {e}")));
            self.poll
                .registry()
                .register(&mut sock, Token(i), Interest::READABLE | Interest::WRITABLE)
                .unwrap_or_else(|e| die(format!("register: {e}")));
            let key: Vec<u8> = (0..16).map(|_| self.rng.next() as u8).collect();
            let key = base64(&key);
            let s = &mut self.subs[i];
            s.accept = base64(&sha1(format!("{key}258EAFA5-E914-47DA-95CA-C5AB0DC85B11").as_bytes()));
            s.out.clear();
            s.out.extend_from_slice(
                match self.o.transport {
                    Transport::Ws => format!(
                        "GET {} HTTP/1.1\r\nHost: {}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
                         Sec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\n\r\n",
                        self.o.sub_path, self.o.addr
                    ),
                    Transport::Sse => format!(
                        "GET {} HTTP/1.1\r\nHost: {}\r\nAccept: text/event-stream\r\n\r\n",
                        self.o.sub_path, self.o.addr
                    ),
                }
                .as_bytes(),
            );
            s.sock = Some(sock);
            s.state = State::Connecting;
            self.connecting += 1;
        }
    }

    /// One turn of the loop, waiting at most `timeout`.
    fn turn(&mut self, timeout: Duration) -> Result<(), String> {
        match self.poll.poll(&mut self.events, Some(timeout)) {
            Ok(()) => {}
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(format!("poll: {e}")),
        }
        self.tally.now = Instant::now();
        let toks: Vec<(Token, bool, bool)> =
            self.events.iter().map(|e| (e.token(), e.is_readable() || e.is_read_closed() || e.is_error(), e.is_writable())).collect();
        for (tok, readable, writable) in toks {
            if tok == PUB {
                if writable {
                    self.publ.flush()?;
                }
                if readable {
                    self.publ.readable()?;
                }
                continue;
            }
            let i = tok.0;
            if writable || readable {
                self.sub_io(i, readable);
            }
        }
        self.start_connects();
        Ok(())
    }

    fn sub_io(&mut self, i: usize, readable: bool) {
        let transport = self.o.transport;
        let s = &mut self.subs[i];
        if s.state == State::Connecting {
            let sock = s.sock.as_mut().unwrap();
            match sock.take_error() {
                Ok(None) if sock.peer_addr().is_ok() => {
                    s.state = State::Head;
                    self.connecting -= 1;
                }
                Ok(None) => return, // not connected yet
                Ok(Some(e)) | Err(e) => {
                    self.tally.errors.push(format!("connect: {e}"));
                    s.state = State::Closed;
                    self.tally.closed += 1;
                    self.connecting -= 1;
                    return;
                }
            }
        }
        if s.state == State::Closed {
            return;
        }
        if let Err(e) = s.flush() {
            self.tally.errors.push(format!("write: {e}"));
            s.state = State::Closed;
            self.tally.closed += 1;
            return;
        }
        if !readable {
            return;
        }
        loop {
            let n = match s.sock.as_mut().unwrap().read(&mut self.scratch) {
                Ok(0) => {
                    self.tally.errors.push("subscriber connection closed by the server".into());
                    s.state = State::Closed;
                    self.tally.closed += 1;
                    return;
                }
                Ok(n) => n,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => {
                    self.tally.errors.push(format!("read: {e}"));
                    s.state = State::Closed;
                    self.tally.closed += 1;
                    return;
                }
            };
            if s.inbuf.is_empty() {
                let used = s.feed(&self.scratch[..n], &mut self.tally, transport, &mut self.rng);
                s.inbuf.extend_from_slice(&self.scratch[used..n]);
            } else {
                s.inbuf.extend_from_slice(&self.scratch[..n]);
                let buf = std::mem::take(&mut s.inbuf);
                let used = s.feed(&buf, &mut self.tally, transport, &mut self.rng);
                s.inbuf = buf;
                s.inbuf.drain(..used);
            }
            if s.state == State::Closed {
                self.tally.closed += 1;
                return;
            }
        }
        if !s.out.is_empty() {
            let _ = s.flush();
        }
    }

    fn check(&self) -> Result<(), String> {
        if let Some(e) = self.tally.errors.first() {
            return Err(format!("{} subscriber errors, first: {e}", self.tally.errors.len()));
        }
        Ok(())
    }

    fn setup(&mut self, want_warm: bool) -> Result<(), String> {
        let deadline = Instant::now() + Duration::from_secs(self.o.setup_secs);
        self.start_connects();
        while self.tally.open < self.subs.len() {
            if Instant::now() > deadline {
                return Err(format!("only {} of {} subscribers open after {} s", self.tally.open, self.subs.len(), self.o.setup_secs));
            }
            self.turn(Duration::from_millis(50))?;
            self.check()?;
        }
        if self.o.stats {
            let key = match self.o.transport {
                Transport::Ws => "websocket",
                Transport::Sse => "sse",
            };
            loop {
                let (code, b) = http_get(self.o.addr, "/stats").map_err(|e| format!("/stats: {e}"))?;
                let got = stat(&b, "connections", key);
                if code == 200 && got == Some(self.subs.len() as u64) {
                    break;
                }
                if Instant::now() > deadline {
                    return Err(format!("/stats connections.{key} is {got:?}, want {}", self.subs.len()));
                }
                self.turn(Duration::from_millis(50))?;
                self.check()?;
            }
        }
        if !want_warm {
            return Ok(());
        }
        let mut k = 0;
        let mut last_sent = Instant::now() - Duration::from_secs(1);
        while self.tally.warm < self.subs.len() {
            if Instant::now() > deadline {
                return Err(format!("only {} of {} subscribers got a warm-up event", self.tally.warm, self.subs.len()));
            }
            if !self.publ.in_flight && last_sent.elapsed() >= Duration::from_millis(200) {
                k += 1;
                let b = body(&self.o, "warmup-", k);
                let path = self.o.pub_path.clone();
                self.publ.send(&self.poll, &path, &b)?;
                last_sent = Instant::now();
            }
            self.turn(Duration::from_millis(20))?;
            self.check()?;
        }
        // the last warm-up's answer
        while self.publ.in_flight {
            if Instant::now() > deadline {
                return Err("no answer to the warm-up publish".into());
            }
            self.turn(Duration::from_millis(20))?;
        }
        Ok(())
    }

    fn pause(&mut self) -> Result<(), String> {
        let Some(p) = self.o.pause_file.clone() else { return Ok(()) };
        std::fs::write(format!("{p}.ready"), b"ready\n").map_err(|e| format!("{p}.ready: {e}"))?;
        let end = Instant::now() + Duration::from_secs(60);
        while !std::path::Path::new(&format!("{p}.go")).exists() {
            if Instant::now() > end {
                return Err(format!("{p}.go did not appear within 60 s"));
            }
            self.turn(Duration::from_millis(10))?;
        }
        Ok(())
    }

    fn measure(&mut self) -> Result<String, String> {
        let n = self.subs.len() as u32;
        let e = self.o.events;
        let path = self.o.pub_path.clone();
        let bodies: Vec<Vec<u8>> = (1..=e).map(|k| body(&self.o, "fanout-", k)).collect();
        let cpu0 = self_cpu();
        let srv0 = self.o.server_pid.and_then(proc_cpu);
        let t0 = Instant::now();
        let mut sent = 0u32;
        let mut last_pub = t0;
        let max_secs = match self.o.mode {
            Mode::Rate(r) => e as f64 / r * 3.0 + 60.0,
            _ => 300.0,
        };
        let hard_end = t0 + Duration::from_secs_f64(max_secs);
        let mut drain_end: Option<Instant> = None;
        loop {
            let now = Instant::now();
            if self.tally.delivered == n as u64 * e as u64 || now > hard_end {
                break;
            }
            if drain_end.is_some_and(|d| now > d) {
                break;
            }
            let mut timeout = Duration::from_millis(5);
            if sent < e && !self.publ.in_flight {
                let due = match self.o.mode {
                    Mode::Rate(r) => {
                        let at = t0 + Duration::from_secs_f64(sent as f64 / r);
                        if at > now {
                            timeout = timeout.min(at - now);
                        }
                        at <= now
                    }
                    _ => sent == 0 || self.tally.got[sent as usize] >= n - self.tally.closed as u32 || now - last_pub > Duration::from_secs(10),
                };
                if due {
                    self.publ.send(&self.poll, &path, &bodies[sent as usize])?;
                    sent += 1;
                    last_pub = Instant::now();
                    if sent == e {
                        drain_end = Some(last_pub + Duration::from_secs(self.o.drain_secs));
                    }
                    timeout = Duration::ZERO;
                }
            }
            self.turn(timeout)?;
        }
        let pub_secs = (last_pub - t0).as_secs_f64();
        let secs = (self.tally.last_delivery.max(t0) - t0).as_secs_f64();
        let cpu = self_cpu() - cpu0;
        let d = self.tally.delivered;
        let (srv, per_cpu) = match (srv0, self.o.server_pid.and_then(proc_cpu)) {
            (Some(a), Some(b)) if secs > 0.0 && b > a => {
                (format!("{:.2}", (b - a) / secs), format!("{:.0}", d as f64 / (b - a)))
            }
            _ => ("na".into(), "na".into()),
        };
        let mut missing = 0u64;
        let mut dups = 0u64;
        for s in &self.subs {
            missing += s.missing + (e + 1 - s.next.min(e + 1)) as u64;
            dups += s.dups;
        }
        let mode = match self.o.mode {
            Mode::Serial => "serial".to_string(),
            Mode::Rate(r) => format!("rate={r}"),
            Mode::Hold => "hold".into(),
        };
        Ok(format!(
            "peers target={} transport={} subs={} mode={mode} events={e} deliveries={d} secs={secs:.3} \
             deliveries_per_s={:.0} missing={missing} dups={dups} closed={} other={} pub_per_s={:.0} \
             loader_cpu_share={:.2} server_cpu_share={srv} deliveries_per_server_cpu_s={per_cpu}",
            self.o.target,
            if self.o.transport == Transport::Ws { "ws" } else { "sse" },
            n,
            if secs > 0.0 { d as f64 / secs } else { 0.0 },
            self.tally.closed,
            self.tally.other,
            if pub_secs > 0.0 { (sent.max(1) - 1) as f64 / pub_secs } else { 0.0 },
            if secs > 0.0 { cpu / secs } else { 0.0 },
        ))
    }
}

fn main() {
    let o = parse_opts();
    raise_nofile();
    let poll = Poll::new().unwrap_or_else(|e| die(format!("poll: {e}")));
    let n = o.subs;
    let subs = (0..n)
        .map(|_| Sub {
            sock: None,
            state: State::Waiting,
            out: Vec::new(),
            out_off: 0,
            inbuf: Vec::new(),
            accept: String::new(),
            next: 1,
            missing: 0,
            dups: 0,
            warm: false,
            msg: Vec::new(),
            fragmented: false,
            chunk: Chunk::Plain,
            line: Vec::new(),
        })
        .collect();
    let now = Instant::now();
    let seed = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_nanos() as u64).unwrap_or(1) | 1;
    let mut b = Bench {
        tally: Tally {
            events: o.events,
            got: vec![0; o.events as usize + 1],
            delivered: 0,
            warm: 0,
            open: 0,
            closed: 0,
            other: 0,
            last_delivery: now,
            now,
            errors: Vec::new(),
        },
        publ: Publisher {
            sock: None,
            addr: o.addr,
            inbuf: Vec::new(),
            out: Vec::new(),
            out_off: 0,
            in_flight: false,
            reconnect: false,
            answered: 0,
        },
        o,
        poll,
        events: Events::with_capacity(4096),
        subs,
        scratch: vec![0; 256 * 1024],
        rng: Rng(seed),
        connecting: 0,
        next_connect: 0,
    };
    if b.o.mode == Mode::Hold {
        let pid = b.o.server_pid.unwrap_or_else(|| die("--mode hold needs --server-pid"));
        let before = rss_kb(pid).unwrap_or_else(|| die(format!("no RSS for pid {pid}")));
        let warm = b.o.subscribed;
        if let Err(e) = b.setup(warm) {
            die(format!("{}: {e}", b.o.target));
        }
        let end = Instant::now() + Duration::from_secs(1);
        while Instant::now() < end {
            if let Err(e) = b.turn(Duration::from_millis(50)) {
                die(e);
            }
        }
        if let Err(e) = b.check() {
            die(format!("{}: {e}", b.o.target));
        }
        let after = rss_kb(pid).unwrap_or_else(|| die(format!("no RSS for pid {pid}")));
        println!(
            "peers target={} transport=ws subs={n} mode=hold subscribed={warm} rss_before_kb={before} rss_after_kb={after} rss_per_conn={:.0}",
            b.o.target,
            (after as f64 - before as f64) * 1024.0 / n as f64
        );
        return;
    }
    if let Err(e) = b.setup(true).and_then(|_| b.pause()) {
        die(format!("{}: setup: {e}", b.o.target));
    }
    match b.measure() {
        Ok(line) => {
            println!("{line}");
            if let Some(e) = b.tally.errors.first() {
                eprintln!("peers-loader: {}: {} subscriber errors, first: {e}", b.o.target, b.tally.errors.len());
            }
        }
        Err(e) => die(format!("{}: {e}", b.o.target)),
    }
}
