//! Issue 17: the hub's own `PUSHWIRE_LOG=wire` (the log target `pushwire::wire` at trace
//! level) shows what it receives (`>`) and sends (`<`) in the wire tap's one-line format: a
//! publish, an SSE stream, a WebSocket session and a webhook it sends. The hub runs as a
//! real process on loopback; its stderr is read back from a file.

mod util;

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::thread;
use std::time::{Duration, Instant};

use util::{connect, WsClient};

struct Hub {
    child: Child,
    addr: SocketAddr,
    log: PathBuf,
}

impl Drop for Hub {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = std::fs::remove_file(&self.log);
    }
}

fn spawn(level: &str, name: &str) -> Hub {
    use std::io::BufRead;
    let log = std::env::temp_dir().join(format!("pushwire-wire-{}-{name}", std::process::id()));
    let mut child = Command::new(util::example_bin("hub"))
        .args(["--addr", "127.0.0.1:0", "--webhook-allow-private"])
        .env("PUSHWIRE_LOG", level)
        .stdout(Stdio::piped())
        .stderr(std::fs::File::create(&log).unwrap())
        .spawn()
        .expect("spawn hub");
    let mut line = String::new();
    std::io::BufReader::new(child.stdout.take().unwrap())
        .read_line(&mut line)
        .unwrap();
    let addr = line.trim().rsplit("//").next().unwrap().parse().unwrap();
    Hub { child, addr, log }
}

impl Hub {
    fn text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// Waits (at most 10 s) until every one of `wanted` is a line's text (after the level)
    /// or the start of one; the log so far either way.
    fn wait_for(&self, wanted: &[&str]) -> String {
        let end = Instant::now() + Duration::from_secs(10);
        loop {
            let text = self.text();
            let all = wanted.iter().all(|w| {
                text.lines()
                    .any(|l| l.strip_prefix("TRACE ").is_some_and(|l| l.starts_with(w)))
            });
            if all || Instant::now() > end {
                return text;
            }
            thread::sleep(Duration::from_millis(20));
        }
    }
}

/// The label of the first wire line that contains `needle` (`conn#3.1`).
fn label_of(text: &str, needle: &str) -> String {
    let line = text
        .lines()
        .find(|l| l.contains(needle))
        .unwrap_or_else(|| panic!("no line with {needle:?} in:\n{text}"));
    line.split_whitespace().nth(1).unwrap().to_owned()
}

fn assert_lines(text: &str, wanted: &[String]) {
    for w in wanted {
        assert!(
            text.lines().any(|l| l
                .strip_prefix("TRACE ")
                .is_some_and(|l| l.starts_with(w.as_str()))),
            "no line starting {w:?} in:\n{text}"
        );
    }
}

#[test]
fn a_publish_an_sse_stream_and_a_websocket_session_in_the_wire_format() {
    let hub = spawn("wire", "session");
    // An SSE stream, then a publish it hears.
    let mut sse = connect(hub.addr);
    sse.write_all(b"GET /topics/demo/sse HTTP/1.1\r\nHost: t\r\n\r\n")
        .unwrap();
    let mut head = [0u8; 256];
    let _ = sse.read(&mut head).unwrap();
    let r = util::post(hub.addr, "/topics/demo", "hello");
    assert_eq!(r.status, 201);
    let id = util::json_u64(&r.text(), "id").unwrap();
    // A WebSocket session: ping and pong, an event as server text, client text, close.
    let mut ws = WsClient::open(hub.addr, "/topics/demo/ws", "");
    ws.send_frame(true, 0x9, b"are you there");
    let pong = ws.recv().expect("pong");
    assert_eq!(pong.opcode, 0xA);
    let r = util::post(hub.addr, "/topics/demo", "to the socket");
    assert_eq!(r.status, 201);
    let msg = ws.recv_text();
    assert!(msg.contains("to the socket"), "{msg}");
    ws.send_text("hi from the client");
    ws.send_frame(true, 0x8, &[0x03, 0xE8]);
    // The client's text may come back as an event before the close.
    let mut frames = 0;
    while ws.recv().expect("close").opcode != 0x8 {
        frames += 1;
        assert!(frames < 10, "no close");
    }

    let text = hub.wait_for(&["conn#1.2 < WS close 1000", "conn#0.1 < SSE"]);
    let sse_c = label_of(&text, "> HTTP GET /topics/demo/sse");
    let publish = label_of(&text, "> HTTP POST /topics/demo 5 bytes");
    let ws_c = label_of(&text, "> HTTP GET /topics/demo/ws upgrade=websocket");
    assert_ne!(sse_c, publish);
    assert_lines(
        &text,
        &[
            format!("{sse_c} < HTTP 200 OK text/event-stream chunked"),
            format!("{publish} > HTTP body 5 bytes \"hello\""),
            format!("{publish} < HTTP 201 Created application/json"),
            format!("{sse_c} < SSE id={id} event=- data=\"hello\""),
            format!("{ws_c} < HTTP 101 Switching Protocols"),
            format!("{ws_c} > WS ping \"are you there\" masked"),
            format!("{ws_c} < WS pong \"are you there\""),
            format!("{ws_c} < WS text fin len="),
            format!("{ws_c} > WS text fin masked len=18 \"hi from the client\""),
            format!("{ws_c} > WS close 1000 \"\" masked"),
            format!("{ws_c} < WS close 1000 \"\""),
        ],
    );
    // The server's frames are never masked, the client's always are.
    for l in text.lines().filter(|l| l.contains(&format!("{ws_c} < WS"))) {
        assert!(!l.contains("masked"), "{l}");
    }
    for l in text.lines().filter(|l| l.contains(&format!("{ws_c} > WS"))) {
        assert!(l.contains("masked"), "{l}");
    }
    // Only wire lines (and no warnings) at this level.
    for l in text.lines() {
        assert!(l.starts_with("TRACE conn#"), "not a wire line: {l}");
    }
}

#[test]
fn a_webhook_the_hub_sends_is_shown_from_the_client_side() {
    let hub = spawn("wire", "hook");
    let receiver = TcpListener::bind("127.0.0.1:0").unwrap();
    let hook = receiver.local_addr().unwrap();
    let body = format!("url=http://{hook}/hook");
    let r = util::request(
        hub.addr,
        &format!(
            "POST /topics/h/webhooks HTTP/1.1\r\nHost: t\r\nContent-Type: application/x-www-form-urlencoded\r\nContent-Length: {}\r\n\r\n{body}",
            body.len()
        ),
    );
    assert_eq!(r.status, 201, "{}", r.text());
    let r = util::post(hub.addr, "/topics/h", "to the receiver");
    assert_eq!(r.status, 201);
    let (mut s, _) = receiver.accept().unwrap();
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    let mut got = Vec::new();
    let mut tmp = [0u8; 4096];
    while !got.windows(15).any(|w| w == b"to the receiver") {
        let n = s.read(&mut tmp).unwrap();
        assert!(n > 0, "the hub closed before its body");
        got.extend_from_slice(&tmp[..n]);
    }
    s.write_all(b"HTTP/1.1 204 No Content\r\n\r\n").unwrap();
    let text = hub.wait_for(&["webhook#0 > HTTP 204 No Content"]);
    assert_lines(
        &text,
        &[
            "webhook#0 < HTTP POST /hook ".to_owned(),
            "webhook#0 < HTTP body ".to_owned(),
            "webhook#0 > HTTP 204 No Content".to_owned(),
        ],
    );
}

#[test]
fn plain_trace_has_the_wire_lines_among_the_others_and_info_has_none() {
    let hub = spawn("trace", "trace");
    let r = util::post(hub.addr, "/topics/t", "x");
    assert_eq!(r.status, 201);
    let text = hub.wait_for(&["conn#0.1 < HTTP 201 Created"]);
    assert_lines(&text, &["conn#0.1 > HTTP POST /topics/t 1 byte".to_owned()]);
    assert!(text.contains("DEBUG conn#0.1 accepted"), "{text}");

    let quiet = spawn("info", "info");
    let r = util::post(quiet.addr, "/topics/t", "x");
    assert_eq!(r.status, 201);
    thread::sleep(Duration::from_millis(200));
    assert!(!quiet.text().contains("> HTTP"), "{}", quiet.text());
}
