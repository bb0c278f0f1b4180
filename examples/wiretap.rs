//! A transparent TCP proxy that decodes what passes through it: one line per HTTP message,
//! WebSocket frame or Server-Sent Event, both directions, on stdout.
//!
//! ```text
//! cargo run --release --example wiretap -- --listen 127.0.0.1:9000 --upstream 127.0.0.1:8080
//! cargo run --release --example wiretap -- --upstream 127.0.0.1:8080 --hex
//! ```
//!
//! Point clients at the `--listen` address instead of the server's; every accepted
//! connection is numbered from 1 and shown as `#N`, `>` for client to server and `<` for
//! server to client:
//!
//! ```text
//! #1 > HTTP POST /topics/demo 5 bytes
//! #1 > HTTP body 5 bytes "hello"
//! #1 < HTTP 201 Created application/json 41 bytes
//! #2 > HTTP GET /topics/demo/ws upgrade=websocket
//! #2 < HTTP 101 Switching Protocols
//! #2 > WS text fin masked len=5 "hello"
//! #2 < WS close 1000 ""
//! ```
//!
//! It follows the upgrade from HTTP to WebSocket, cuts `text/event-stream` bodies (chunked
//! or not) into events, shows what it cannot parse as `RAW` lines, and with `--hex` adds an
//! annotated hexdump of each unit. It never alters the stream: the bytes are forwarded as
//! they came, and the decoder is handed a copy of exactly what was forwarded. The lines go
//! to stdout (flushed after each batch; a reader of stdout slower than the traffic slows
//! the proxy down with it), diagnostics to stderr.
//!
//! The decoding is [`pushwire::proto::tap::Tap`], built on the crate's own sans-IO parsers;
//! this file is all the I/O there is. That the same parsers run here, driven by a proxy
//! that owns the sockets, is the proof that they do no I/O of their own.
//!
//! One thread, one `mio` loop. Each direction has a bounded buffer ([`BUF`]): while it is
//! full the proxy stops reading that side (backpressure, as TCP has). An EOF from one side
//! is passed on as a half-close (`shutdown(Write)` on the other) once its buffer is
//! drained; a connection ends when both directions have, or on an error.

use std::collections::HashMap;
use std::io::{self, ErrorKind, Read, Write};
use std::net::{Shutdown, SocketAddr, ToSocketAddrs};
use std::time::Duration;

use mio::net::{TcpListener, TcpStream};
use mio::{Events, Interest, Poll, Token};
use pushwire::proto::tap::{Dir, Tap};

/// The most bytes held per direction of a connection, read but not yet forwarded.
const BUF: usize = 256 * 1024;
/// The largest piece handed to the decoder at once (keeps the text of one batch small).
const FEED: usize = 4096;
/// Printed lines are written out once they reach this many bytes, and after each batch.
const FLUSH_AT: usize = 64 * 1024;
/// Read/write steps one connection gets per turn of the loop before the others.
const TURN: usize = 64;
/// The listener's token; a connection numbered `n` uses `2n` (client) and `2n + 1`
/// (upstream).
const LISTENER: Token = Token(0);

/// `--help`.
const USAGE: &str = "\
usage: wiretap --upstream HOST:PORT [--listen HOST:PORT] [--hex]

A transparent TCP proxy that prints one line per HTTP message, WebSocket frame and
Server-Sent Event crossing it, in both directions, and forwards the bytes unchanged.

  --listen HOST:PORT    where clients connect [default: 127.0.0.1:9000]
  --upstream HOST:PORT  the server to forward to (required)
  --hex                 add an annotated hexdump of each unit
  --help                this help

Lines go to stdout, diagnostics to stderr. `#N` numbers connections from 1;
`>` is client to server, `<` server to client.
";

/// The command line.
struct Args {
    /// Where to accept clients.
    listen: String,
    /// Where to forward them.
    upstream: SocketAddr,
    /// Hexdumps on.
    hex: bool,
}

/// A one-line complaint about the command line: printed, then exit status 2.
fn usage_error(msg: &str) -> ! {
    eprintln!("wiretap: {msg}");
    std::process::exit(2);
}

/// Reads the command line (`--flag value` or `--flag=value`).
fn parse_args(args: impl Iterator<Item = String>) -> Args {
    let mut listen = "127.0.0.1:9000".to_owned();
    let mut upstream = None;
    let mut hex = false;
    let mut args = args.peekable();
    while let Some(arg) = args.next() {
        let (flag, inline) = match arg.split_once('=') {
            Some((f, v)) if f.starts_with("--") => (f.to_owned(), Some(v.to_owned())),
            _ => (arg.clone(), None),
        };
        let mut value = |name: &str| -> String {
            inline
                .clone()
                .or_else(|| args.next_if(|a| !a.starts_with("--")))
                .unwrap_or_else(|| usage_error(&format!("{name}: missing value")))
        };
        match flag.as_str() {
            "--help" | "-h" => {
                print!("{USAGE}");
                std::process::exit(0);
            }
            "--hex" if inline.is_some() => usage_error("--hex: takes no value"),
            "--hex" => hex = true,
            "--listen" => listen = value("--listen"),
            "--upstream" => {
                let v = value("--upstream");
                let addr = v.to_socket_addrs().ok().and_then(|mut a| a.next());
                match addr {
                    Some(a) => upstream = Some(a),
                    None => usage_error(&format!("--upstream: expected HOST:PORT, got {v:?}")),
                }
            }
            other => usage_error(&format!("unknown option {other} (see --help)")),
        }
    }
    let Some(upstream) = upstream else {
        usage_error("--upstream HOST:PORT is required (see --help)");
    };
    Args {
        listen,
        upstream,
        hex,
    }
}

/// The bytes read from one side and not yet written to the other: at most [`BUF`].
struct Pending {
    /// The storage, [`BUF`] bytes.
    data: Box<[u8]>,
    /// The first byte not yet written.
    start: usize,
    /// One past the last byte read.
    end: usize,
}

impl Pending {
    /// An empty buffer.
    fn new() -> Pending {
        Pending {
            data: vec![0; BUF].into_boxed_slice(),
            start: 0,
            end: 0,
        }
    }

    /// Nothing waits to be written.
    fn is_empty(&self) -> bool {
        self.start == self.end
    }

    /// Where the next read goes (empty when the buffer is full).
    fn room(&mut self) -> &mut [u8] {
        if self.end == self.data.len() && self.start > 0 {
            self.data.copy_within(self.start..self.end, 0);
            self.end -= self.start;
            self.start = 0;
        }
        &mut self.data[self.end..]
    }

    /// What waits to be written.
    fn waiting(&self) -> &[u8] {
        &self.data[self.start..self.end]
    }

    /// `n` bytes were written.
    fn consume(&mut self, n: usize) {
        self.start += n;
        if self.start == self.end {
            self.start = 0;
            self.end = 0;
        }
    }
}

/// One side of a connection: the client's socket (index 0) or the upstream one (1).
struct Side {
    /// The socket.
    sock: TcpStream,
    /// Read from this side, to be written to the other.
    pending: Pending,
    /// This side sent its EOF (or failed).
    read_done: bool,
    /// The EOF was passed on: the other side's write half is shut and the tap told.
    passed_on: bool,
}

/// One proxied connection: the client, the upstream and the decoder of both directions.
struct Pair {
    /// `[client, upstream]`.
    sides: [Side; 2],
    /// The nonblocking connect to the upstream has completed.
    connected: bool,
    /// A side failed: what is held for the healthy side is flushed, then both close.
    broken: Option<usize>,
    /// The decoder.
    tap: Tap,
}

/// Bytes read from side `i` go in this direction.
fn dir(i: usize) -> Dir {
    if i == 0 {
        Dir::Right
    } else {
        Dir::Left
    }
}

/// The name of side `i` in diagnostics.
fn side_name(i: usize) -> &'static str {
    if i == 0 {
        "client"
    } else {
        "upstream"
    }
}

/// What one step of [`Pair::pump`] ended with.
enum Step {
    /// Bytes moved: try again.
    Progress,
    /// Nothing to do until the sockets say so.
    Idle,
    /// The connection is over: deregister and drop it.
    Done,
}

impl Pair {
    /// Checks whether the upstream connect finished (mio: a writable event, then
    /// `take_error` and `peer_addr`). `Err` when it failed.
    fn check_connected(&mut self) -> io::Result<()> {
        if self.connected {
            return Ok(());
        }
        let sock = &self.sides[1].sock;
        if let Some(e) = sock.take_error()? {
            return Err(e);
        }
        match sock.peer_addr() {
            Ok(_) => {
                self.connected = true;
                Ok(())
            }
            Err(e) if e.kind() == ErrorKind::NotConnected => Ok(()),
            Err(e) => Err(e),
        }
    }

    /// Moves bytes both ways for at most [`TURN`] steps, feeding the tap what was written;
    /// `Progress` when the turn ran out with more to do.
    fn pump(&mut self, n: u64, out: &mut String, flush: &mut dyn FnMut(&mut String)) -> Step {
        if let Err(e) = self.check_connected() {
            eprintln!("wiretap: #{n}: cannot connect to the upstream: {e}");
            return Step::Done;
        }
        for _ in 0..TURN {
            let mut moved = false;
            for i in 0..2 {
                match self.read(i) {
                    Ok(m) => moved |= m,
                    Err(e) => self.fail(n, i, "read from", &e),
                }
                match self.write(i, out, flush) {
                    Ok(m) => moved |= m,
                    Err(e) => self.fail(n, 1 - i, "write to", &e),
                }
                self.pass_eof(i, out);
            }
            if self.finished(out) {
                return Step::Done;
            }
            if !moved {
                return Step::Idle;
            }
        }
        Step::Progress
    }

    /// A side failed: stop reading it, flush what it already sent, then close.
    fn fail(&mut self, n: u64, i: usize, what: &str, e: &io::Error) {
        if self.broken.is_none() {
            eprintln!("wiretap: #{n}: {what} the {}: {e}", side_name(i));
        }
        self.broken.get_or_insert(i);
        self.sides[i].read_done = true;
    }

    /// Reads side `i` into its buffer until it would block, is full or ends.
    fn read(&mut self, i: usize) -> io::Result<bool> {
        let usable = (i == 0 || self.connected) && self.broken.is_none_or(|b| b == i);
        let side = &mut self.sides[i];
        let mut moved = false;
        while usable && !side.read_done {
            let room = side.pending.room();
            if room.is_empty() {
                break;
            }
            match side.sock.read(room) {
                Ok(0) => side.read_done = true,
                Ok(k) => {
                    side.pending.end += k;
                    moved = true;
                }
                Err(e) if e.kind() == ErrorKind::WouldBlock => break,
                Err(e) if e.kind() == ErrorKind::Interrupted => {}
                Err(e) => return Err(e),
            }
        }
        Ok(moved)
    }

    /// Writes what side `i` sent to the other side, feeding the tap what was written.
    fn write(
        &mut self,
        i: usize,
        out: &mut String,
        flush: &mut dyn FnMut(&mut String),
    ) -> io::Result<bool> {
        if !self.connected || self.broken == Some(1 - i) {
            return Ok(false);
        }
        let [a, b] = &mut self.sides;
        let (from, to) = if i == 0 { (a, b) } else { (b, a) };
        let mut moved = false;
        while !from.pending.is_empty() {
            match to.sock.write(from.pending.waiting()) {
                Ok(0) => return Err(ErrorKind::WriteZero.into()),
                Ok(k) => {
                    for piece in from.pending.waiting()[..k].chunks(FEED) {
                        self.tap.feed(dir(i), piece, out);
                        if out.len() >= FLUSH_AT {
                            flush(out);
                        }
                    }
                    from.pending.consume(k);
                    moved = true;
                }
                Err(e) if e.kind() == ErrorKind::WouldBlock => break,
                Err(e) if e.kind() == ErrorKind::Interrupted => {}
                Err(e) => return Err(e),
            }
        }
        Ok(moved)
    }

    /// Side `i` ended and all it sent was forwarded: half-close the other side, tell the tap.
    fn pass_eof(&mut self, i: usize, out: &mut String) {
        let side = &self.sides[i];
        // (A client that ends before the upstream answered the connect waits for it: the
        // EOF is passed on as a half-close once there is a socket to shut.)
        if !self.connected || !side.read_done || side.passed_on || !side.pending.is_empty() {
            return;
        }
        self.sides[i].passed_on = true;
        if self.connected && self.broken.is_none() {
            // Fails only when the other side is gone already, which its own read says.
            let _ = self.sides[1 - i].sock.shutdown(Shutdown::Write);
        }
        self.tap.eof(dir(i), out);
    }

    /// Both directions ended, or a side failed and what it had sent was flushed to the
    /// other (what the healthy side sent cannot go anywhere: it is dropped, and the tap
    /// told that its direction ended there).
    fn finished(&mut self, out: &mut String) -> bool {
        if let Some(b) = self.broken {
            if !self.sides[b].pending.is_empty() && self.connected {
                return false;
            }
            for i in 0..2 {
                if !std::mem::replace(&mut self.sides[i].passed_on, true) {
                    self.tap.eof(dir(i), out);
                }
            }
            return true;
        }
        self.sides.iter().all(|s| s.passed_on)
    }
}

/// Writes the lines gathered so far to stdout and flushes it; a closed stdout (the reader
/// went away, as `wiretap | head` does) ends the proxy.
fn flush_stdout(out: &mut String) {
    if out.is_empty() {
        return;
    }
    let mut stdout = io::stdout().lock();
    let res = stdout
        .write_all(out.as_bytes())
        .and_then(|()| stdout.flush());
    out.clear();
    if let Err(e) = res {
        if e.kind() != ErrorKind::BrokenPipe {
            eprintln!("wiretap: cannot write to stdout: {e}");
            std::process::exit(1);
        }
        std::process::exit(0);
    }
}

/// Accepts every waiting client and starts its upstream connect.
fn accept(
    listener: &TcpListener,
    poll: &Poll,
    args: &Args,
    next: &mut u64,
    pairs: &mut HashMap<u64, Pair>,
    again: &mut Vec<u64>,
) -> io::Result<()> {
    loop {
        let (client, from) = match listener.accept() {
            Ok(c) => c,
            Err(e) if e.kind() == ErrorKind::WouldBlock => return Ok(()),
            Err(e) if e.kind() == ErrorKind::Interrupted => continue,
            Err(e) => return Err(e),
        };
        let n = *next;
        *next += 1;
        let upstream = match TcpStream::connect(args.upstream) {
            Ok(s) => s,
            Err(e) => {
                eprintln!("wiretap: #{n}: cannot connect to {}: {e}", args.upstream);
                continue;
            }
        };
        eprintln!("wiretap: #{n}: {from} -> {}", args.upstream);
        // No Nagle delay added on either leg; the bytes are the same either way.
        let _ = client.set_nodelay(true);
        let _ = upstream.set_nodelay(true);
        let mut tap = Tap::new(n, Dir::Right);
        tap.set_hex(args.hex);
        let mut pair = Pair {
            sides: [client, upstream].map(|sock| Side {
                sock,
                pending: Pending::new(),
                read_done: false,
                passed_on: false,
            }),
            connected: false,
            broken: None,
            tap,
        };
        let both = Interest::READABLE | Interest::WRITABLE;
        for (k, side) in pair.sides.iter_mut().enumerate() {
            let token = Token(2 * n as usize + k);
            poll.registry().register(&mut side.sock, token, both)?;
        }
        pairs.insert(n, pair);
        // The client may have sent already: read it without waiting for an edge.
        again.push(n);
    }
}

/// Reads the flags, binds the listener, runs the loop; exits 2 on a bad flag, 1 on an
/// error.
fn main() {
    let args = parse_args(std::env::args().skip(1));
    let listen = match args
        .listen
        .to_socket_addrs()
        .ok()
        .and_then(|mut a| a.next())
    {
        Some(a) => a,
        None => usage_error(&format!(
            "--listen: expected HOST:PORT, got {:?}",
            args.listen
        )),
    };
    let mut listener = match TcpListener::bind(listen) {
        Ok(l) => l,
        Err(e) => {
            eprintln!("wiretap: cannot listen on {listen}: {e}");
            std::process::exit(1);
        }
    };
    if let Err(e) = run(&mut listener, &args) {
        eprintln!("wiretap: {e}");
        std::process::exit(1);
    }
}

/// The loop: accept, pump the connections the events name, print, repeat.
fn run(listener: &mut TcpListener, args: &Args) -> io::Result<()> {
    let mut poll = Poll::new()?;
    poll.registry()
        .register(listener, LISTENER, Interest::READABLE)?;
    eprintln!(
        "wiretap: listening on {}, upstream {}",
        listener.local_addr()?,
        args.upstream
    );
    let mut events = Events::with_capacity(256);
    let mut pairs: HashMap<u64, Pair> = HashMap::new();
    let mut next = 1u64;
    let mut out = String::new();
    // Connections to pump without waiting for an event (a turn ran out, a new one).
    let mut again: Vec<u64> = Vec::new();
    // Accepting failed (out of descriptors, say): try again shortly, not on an edge.
    let mut accept_later = false;
    loop {
        let timeout = if !again.is_empty() {
            Some(Duration::ZERO)
        } else if accept_later {
            Some(Duration::from_millis(100))
        } else {
            None
        };
        match poll.poll(&mut events, timeout) {
            Ok(()) => {}
            Err(e) if e.kind() == ErrorKind::Interrupted => continue,
            Err(e) => return Err(e),
        }
        let mut ready = std::mem::take(&mut again);
        for ev in &events {
            if ev.token() == LISTENER {
                accept_later = true;
            } else {
                ready.push((ev.token().0 / 2) as u64);
            }
        }
        if accept_later {
            accept_later = false;
            if let Err(e) = accept(listener, &poll, args, &mut next, &mut pairs, &mut ready) {
                eprintln!("wiretap: accept: {e}");
                accept_later = true;
            }
        }
        ready.sort_unstable();
        ready.dedup();
        for n in ready {
            let Some(pair) = pairs.get_mut(&n) else {
                continue;
            };
            match pair.pump(n, &mut out, &mut flush_stdout) {
                Step::Progress => again.push(n),
                Step::Idle => {}
                Step::Done => {
                    if let Some(mut pair) = pairs.remove(&n) {
                        for side in &mut pair.sides {
                            let _ = poll.registry().deregister(&mut side.sock);
                        }
                        eprintln!("wiretap: #{n}: closed");
                    }
                }
            }
        }
        flush_stdout(&mut out);
    }
}
