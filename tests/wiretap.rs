//! Issue 17: the `wiretap` example in front of the hub, driven by real clients over
//! loopback: the lines for a publish, a WebSocket session and an SSE stream, a hexdump, and
//! arbitrary bytes forwarded unchanged (through an echo server) while the tap stays up.

mod util;

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{Shutdown, SocketAddr, TcpListener, TcpStream};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use util::*;

/// A running `wiretap`: its address and the lines it printed so far (read by a thread).
struct Wiretap {
    child: Child,
    addr: SocketAddr,
    lines: Arc<Mutex<Vec<String>>>,
}

impl Drop for Wiretap {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Wiretap {
    /// Starts the tap on a free port in front of `upstream`, with `extra` flags; learns its
    /// address from the first stderr line.
    fn start(upstream: SocketAddr, extra: &[&str]) -> Wiretap {
        let mut child = Command::new(example_bin("wiretap"))
            .args([
                "--listen",
                "127.0.0.1:0",
                "--upstream",
                &upstream.to_string(),
            ])
            .args(extra)
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawn wiretap");
        let mut err = BufReader::new(child.stderr.take().unwrap());
        let mut first = String::new();
        err.read_line(&mut first).expect("listening line");
        let addr = first
            .strip_prefix("wiretap: listening on ")
            .and_then(|r| r.split(',').next())
            .and_then(|a| a.parse().ok())
            .unwrap_or_else(|| panic!("no address in {first:?}"));
        // The diagnostics are drained (a full pipe would stall the tap), the lines kept.
        std::thread::spawn(move || std::io::copy(&mut err, &mut std::io::sink()));
        let lines = Arc::new(Mutex::new(Vec::new()));
        let out = BufReader::new(child.stdout.take().unwrap());
        let keep = Arc::clone(&lines);
        std::thread::spawn(move || {
            for line in out.lines() {
                let Ok(line) = line else { break };
                keep.lock().unwrap().push(line);
            }
        });
        Wiretap { child, addr, lines }
    }

    /// The lines printed so far that start with `prefix`.
    fn lines(&self, prefix: &str) -> Vec<String> {
        let lines = self.lines.lock().unwrap();
        lines
            .iter()
            .filter(|l| l.starts_with(prefix))
            .cloned()
            .collect()
    }

    /// Waits (at most 10 s) until `done` holds for the lines starting with `prefix`, and
    /// returns them.
    fn wait(&self, prefix: &str, done: impl Fn(&[String]) -> bool) -> Vec<String> {
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            let got = self.lines(prefix);
            if done(&got) {
                return got;
            }
            if Instant::now() > deadline {
                let all = self.lines.lock().unwrap().join("\n");
                panic!("timed out waiting for lines {prefix:?}; the tap printed:\n{all}");
            }
            std::thread::sleep(Duration::from_millis(10));
        }
    }

    /// Waits until a line equal to `want` is printed.
    fn expect(&self, want: &str) {
        self.wait(want, |l| l.iter().any(|l| l == want));
    }

    /// The tap is still running.
    fn alive(&mut self) -> bool {
        self.child.try_wait().unwrap().is_none()
    }
}

/// Publishes through `addr` and returns the id from `201 {"topic":..,"id":ID}`.
fn publish(addr: SocketAddr, path: &str, body: &str) -> u64 {
    let r = post(addr, path, body);
    assert_eq!(r.status, 201, "{}", r.text());
    json_u64(&r.text(), "id").unwrap()
}

/// The lines of one connection going one way: `#n >` or `#n <` (without hexdump rows).
fn way(lines: &[String], n: u64, arrow: char) -> Vec<String> {
    let prefix = format!("#{n} {arrow} ");
    lines
        .iter()
        .filter_map(|l| l.strip_prefix(&prefix))
        .filter(|l| !l.starts_with("    "))
        .map(str::to_owned)
        .collect()
}

#[test]
fn a_publish_a_websocket_session_and_an_sse_stream_through_the_tap() {
    let hub = start_hub(&[]);
    let tap = Wiretap::start(hub.addr, &[]);

    // #1: a publish.
    let id = publish(tap.addr, "/topics/demo", "hello");
    let reply = format!(r#"{{"topic":"demo","id":{id}}}"#);
    let l = tap.wait("#1 ", |l| l.len() >= 4);
    assert_eq!(
        l,
        [
            "#1 > HTTP POST /topics/demo 5 bytes".to_owned(),
            "#1 > HTTP body 5 bytes \"hello\"".to_owned(),
            format!(
                "#1 < HTTP 201 Created application/json {} bytes",
                reply.len()
            ),
            format!(
                "#1 < HTTP body {} bytes \"{}\"",
                reply.len(),
                reply.replace('"', "\\\"")
            ),
        ]
    );

    // #2: a WebSocket session: handshake, a masked text (which the hub publishes and sends
    // back unmasked, as the event), ping and pong, close 1000 both ways.
    let mut ws = WsClient::open(tap.addr, "/topics/demo/ws", "");
    ws.send_text("hello ws");
    let event = ws.recv_text();
    let ws_id = json_u64(&event, "id").unwrap();
    assert_eq!(
        event,
        format!(r#"{{"id":{ws_id},"event":null,"data":"hello ws"}}"#)
    );
    ws.send_frame(true, 0x9, b"p1");
    let pong = ws.recv().expect("pong");
    assert_eq!((pong.opcode, &pong.payload[..]), (0xa, &b"p1"[..]));
    ws.send_frame(true, 0x8, &1000u16.to_be_bytes());
    let close = ws.recv().expect("close");
    assert_eq!((close.opcode, &close.payload[..]), (0x8, &[0x03, 0xe8][..]));
    assert!(is_closed(&mut ws.s));
    let l = tap.wait("#2 ", |l| l.len() >= 8);
    let quoted = event.replace('"', "\\\"");
    assert_eq!(
        way(&l, 2, '>'),
        [
            "HTTP GET /topics/demo/ws upgrade=websocket",
            "WS text fin masked len=8 \"hello ws\"",
            "WS ping \"p1\" masked",
            "WS close 1000 \"\" masked",
        ]
    );
    assert_eq!(
        way(&l, 2, '<'),
        [
            "HTTP 101 Switching Protocols".to_owned(),
            format!("WS text fin len={} \"{quoted}\"", event.len()),
            "WS pong \"p1\"".to_owned(),
            "WS close 1000 \"\"".to_owned(),
        ]
    );

    // #3: an SSE stream; #4 publishes an event that arrives on it.
    let mut sse = connect(tap.addr);
    sse.write_all(b"GET /topics/demo/sse HTTP/1.1\r\nHost: t\r\n\r\n")
        .unwrap();
    tap.expect("#3 < HTTP 200 OK text/event-stream chunked");
    let id = publish(tap.addr, "/topics/demo?event=greeting", "to sse");
    let mut got = Vec::new();
    let want = b"data: to sse";
    let deadline = Instant::now() + Duration::from_secs(10);
    while !got.windows(want.len()).any(|w| w == want) {
        let more = got.len() + 1;
        assert!(fill(&mut sse, &mut got, more, deadline).is_some());
    }
    assert_eq!(
        way(&tap.wait("#3 ", |l| l.len() >= 2), 3, '>'),
        ["HTTP GET /topics/demo/sse"]
    );
    tap.expect(&format!("#3 < SSE id={id} event=greeting data=\"to sse\""));
    tap.expect("#4 > HTTP POST /topics/demo?event=greeting 6 bytes");
    // The client leaves; the hub's side of the stream ends with the connection.
    drop(sse);
    tap.wait("#3 < HTTP body ", |l| {
        l.iter().any(|l| l.ends_with(", cut short (event stream)"))
    });
    // Every line is a unit line of one of the four connections.
    for l in tap.lines("") {
        assert!(
            ["#1 ", "#2 ", "#3 ", "#4 "]
                .iter()
                .any(|p| l.starts_with(p)),
            "{l}"
        );
    }
}

#[test]
fn hex_annotates_each_unit() {
    let hub = start_hub(&[]);
    let tap = Wiretap::start(hub.addr, &["--hex"]);
    publish(tap.addr, "/topics/hex", "hi");
    let l = tap.wait("#1 > ", |l| l.iter().any(|l| l.ends_with("|hi|")));
    assert_eq!(l[0], "#1 > HTTP POST /topics/hex 2 bytes");
    assert_eq!(l[1], "#1 >     head");
    assert_eq!(
        l[2],
        "#1 >     0000  50 4f 53 54 20 2f 74 6f  70 69 63 73 2f 68 65 78  |POST /topics/hex|"
    );
    let body = l.iter().position(|l| l == "#1 > HTTP body 2 bytes \"hi\"");
    let body = body.expect("the body line");
    assert_eq!(l[body + 1], "#1 >     body");
    assert_eq!(
        l[body + 2],
        format!("#1 >     0000  68 69{}  |hi|", " ".repeat(3 * 14 + 1))
    );
    // A masked frame: its key and payload both ways.
    let mut ws = WsClient::open(tap.addr, "/topics/hex/ws", "");
    ws.send_text("hey");
    ws.recv_text();
    let l = tap.wait("#2 > ", |l| {
        l.iter().any(|l| l.starts_with("#2 >     payload unmasked"))
    });
    let at = l
        .iter()
        .position(|l| l == "#2 > WS text fin masked len=3 \"hey\"")
        .expect("the frame line");
    assert_eq!(
        &l[at + 1..at + 9],
        [
            "#2 >     header: fin=1 rsv=000 opcode=0x1 mask=1 len=3",
            &format!("#2 >     0000  81 83{}  |..|", " ".repeat(3 * 14 + 1)),
            "#2 >     masking key",
            &format!(
                "#2 >     0000  37 fa 21 3d{}  |7.!=|",
                " ".repeat(3 * 12 + 1)
            ),
            "#2 >     payload as sent (masked)",
            &format!(
                "#2 >     0000  {:02x} {:02x} {:02x}{}  |{}|",
                b'h' ^ 0x37,
                b'e' ^ 0xfa,
                b'y' ^ 0x21,
                " ".repeat(3 * 13 + 1),
                "_.X",
            ),
            "#2 >     payload unmasked",
            &format!("#2 >     0000  68 65 79{}  |hey|", " ".repeat(3 * 13 + 1)),
        ]
    );
}

/// A small deterministic generator (xorshift64).
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }

    fn bytes(&mut self, n: usize) -> Vec<u8> {
        (0..n).map(|_| self.next() as u8).collect()
    }
}

/// An echo server: every connection gets back what it sent, then an EOF after the client's.
fn echo_server() -> SocketAddr {
    let l = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = l.local_addr().unwrap();
    std::thread::spawn(move || {
        for s in l.incoming() {
            let Ok(mut s) = s else { break };
            std::thread::spawn(move || {
                let mut r = s.try_clone().unwrap();
                let _ = std::io::copy(&mut r, &mut s);
                let _ = s.shutdown(Shutdown::Write);
            });
        }
    });
    addr
}

/// Sends `data` through the tap in random-sized writes, half-closes, and returns what came
/// back before the EOF.
fn round_trip(tap: SocketAddr, data: Vec<u8>, seed: u64) -> Vec<u8> {
    let mut s = TcpStream::connect(tap).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    let mut w = s.try_clone().unwrap();
    let writer = std::thread::spawn(move || {
        let mut rng = Rng(seed);
        let mut at = 0;
        while at < data.len() {
            let n = match rng.next() % 4 {
                0 => 1 + rng.next() % 8,
                1 => 1 + rng.next() % 512,
                _ => 1 + rng.next() % 16384,
            } as usize;
            let n = n.min(data.len() - at);
            w.write_all(&data[at..at + n]).unwrap();
            at += n;
        }
        w.shutdown(Shutdown::Write).unwrap();
    });
    let mut back = Vec::new();
    s.read_to_end(&mut back).expect("the echo, then EOF");
    writer.join().unwrap();
    back
}

#[test]
fn arbitrary_bytes_are_forwarded_unchanged() {
    let echo = echo_server();
    let mut tap = Wiretap::start(echo, &[]);
    let mut rng = Rng(0x2545_f491_4f6c_dd1d);
    let upgrade = b"GET /topics/demo/ws HTTP/1.1\r\nHost: t\r\nUpgrade: websocket\r\n\
Connection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n";
    let starts: [&[u8]; 6] = [
        b"",
        upgrade,
        b"POST /x HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\nzz",
        b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\n\r\n\x81\x7e",
        b"GET /sse HTTP/1.1\r\n\r\nHTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\n\r\ndata:",
        b"\r\n\r\nGET / HTTP/1.1\n\n",
    ];
    // Sizes from a few bytes to more than the tap's 256 KiB buffers (backpressure both
    // ways: the echo writes back while the client still sends), four connections at once.
    let sizes = [3usize, 5000, 20_000, 70_000, 700_000, 9000];
    let mut rounds = Vec::new();
    for (k, start) in starts.iter().enumerate() {
        let mut data = start.to_vec();
        data.extend(rng.bytes(sizes[k]));
        if k % 2 == 1 {
            // HTTP-looking pieces in the middle too.
            let at = data.len() / 2;
            data.splice(at..at, upgrade.iter().copied());
        }
        let seed = rng.next();
        let addr = tap.addr;
        rounds.push(std::thread::spawn(move || {
            let back = round_trip(addr, data.clone(), seed);
            (data, back)
        }));
        if rounds.len() == 4 {
            let (data, back) = rounds.remove(0).join().unwrap();
            assert!(
                back == data,
                "{} bytes sent, {} back",
                data.len(),
                back.len()
            );
        }
    }
    for r in rounds {
        let (data, back) = r.join().unwrap();
        assert!(
            back == data,
            "{} bytes sent, {} back",
            data.len(),
            back.len()
        );
    }
    assert!(tap.alive());
    // Still forwarding, and it printed what it saw (the echoed request is not a response).
    let back = round_trip(tap.addr, upgrade.to_vec(), 1);
    assert_eq!(back, upgrade);
    tap.expect("#7 > HTTP GET /topics/demo/ws upgrade=websocket");
    tap.wait("#7 < RAW ", |l| {
        l.iter().any(|l| l.contains("(not an HTTP response head)"))
    });
    assert!(tap.alive());
}

#[test]
fn bad_flags_get_one_line_and_exit_2() {
    let bin = example_bin("wiretap");
    let cases: [(&[&str], &str); 5] = [
        (
            &[],
            "wiretap: --upstream HOST:PORT is required (see --help)\n",
        ),
        (
            &["--upstream", "127.0.0.1:1", "--port", "1"],
            "wiretap: unknown option --port (see --help)\n",
        ),
        (&["--upstream"], "wiretap: --upstream: missing value\n"),
        (
            &["--upstream", "nowhere"],
            "wiretap: --upstream: expected HOST:PORT, got \"nowhere\"\n",
        ),
        (
            &["--upstream=127.0.0.1:1", "--hex=yes"],
            "wiretap: --hex: takes no value\n",
        ),
    ];
    for (args, want) in cases {
        let o = Command::new(&bin).args(args).output().unwrap();
        assert_eq!(o.status.code(), Some(2), "{args:?}");
        assert_eq!(String::from_utf8_lossy(&o.stderr), want, "{args:?}");
        assert!(o.stdout.is_empty());
    }
    let o = Command::new(&bin).arg("--help").output().unwrap();
    assert_eq!(o.status.code(), Some(0));
    let help = String::from_utf8(o.stdout).unwrap();
    for flag in [
        "--listen HOST:PORT",
        "--upstream HOST:PORT",
        "--hex",
        "--help",
    ] {
        assert!(help.contains(flag), "{flag}:\n{help}");
    }
}

#[test]
fn an_upstream_that_refuses_closes_the_client_and_the_tap_goes_on() {
    // A port nothing listens on: bound, then closed.
    let gone = TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap();
    let mut tap = Wiretap::start(gone, &[]);
    for _ in 0..3 {
        let mut s = connect(tap.addr);
        let _ = s.write_all(b"GET / HTTP/1.1\r\n\r\n");
        assert!(is_closed(&mut s));
    }
    assert!(tap.alive());
    assert!(tap.lines("").is_empty(), "{:?}", tap.lines(""));
}
