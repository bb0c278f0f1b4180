use super::*;
use crate::proto::sse::{write_comment, write_event};
use crate::proto::ws::deflate::Deflater;
use crate::proto::ws::frame::{write_close, write_header_rsv};
use crate::proto::ws::OpCode;

type Script<'a> = &'a [(Dir, &'a [u8])];

/// The lines of a script fed whole, after checking that feeding it byte by byte gives the
/// same lines (the result must not depend on how reads split the stream).
fn run(script: Script<'_>) -> String {
    let whole = feed(script, false, usize::MAX);
    let bytewise = feed(script, false, 1);
    assert_eq!(whole, bytewise, "fed byte by byte");
    whole
}

fn feed(script: Script<'_>, hex: bool, piece: usize) -> String {
    let mut tap = Tap::new(1, Dir::Right);
    tap.set_hex(hex);
    let mut out = String::new();
    for (dir, bytes) in script {
        for part in bytes.chunks(piece.min(bytes.len()).max(1)) {
            tap.feed(*dir, part, &mut out);
            assert!(tap.buffered() < 1 << 20, "{}", tap.buffered());
        }
    }
    out
}

/// A frame made with the crate's encoder, masked with `mask` when given.
fn frame(fin: bool, op: OpCode, mask: Option<[u8; 4]>, payload: &[u8]) -> Vec<u8> {
    let mut v = Vec::new();
    write_header_rsv(&mut v, fin, 0, op, mask, payload.len() as u64);
    let at = v.len();
    v.extend_from_slice(payload);
    if let Some(key) = mask {
        crate::proto::ws::apply_mask(&mut v[at..], key, 0);
    }
    v
}

fn masked(op: OpCode, payload: &[u8]) -> Vec<u8> {
    frame(true, op, Some([1, 2, 3, 4]), payload)
}

fn plain(op: OpCode, payload: &[u8]) -> Vec<u8> {
    frame(true, op, None, payload)
}

const UPGRADE: &[u8] = b"GET /topics/demo/ws HTTP/1.1\r\nHost: h\r\nUpgrade: websocket\r\n\
Connection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n";
const SWITCH: &[u8] = b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\n\
Connection: Upgrade\r\nSec-WebSocket-Accept: s3pPLMBiTxaQ9kYGzzhZRbK+xOo=\r\n\r\n";

#[test]
fn a_publish_and_keep_alive() {
    let got = run(&[
        (
            Dir::Right,
            b"POST /topics/demo HTTP/1.1\r\nHost: h\r\nContent-Length: 5\r\n\r\nhello",
        ),
        (
            Dir::Left,
            b"HTTP/1.1 201 Created\r\nContent-Type: application/json\r\nContent-Length: 11\r\n\r\n{\"id\":1764}",
        ),
        (Dir::Right, b"\r\nGET /topics/demo/events?since=0 HTTP/1.1\r\nHost: h\r\n\r\n"),
        (
            Dir::Left,
            b"HTTP/1.1 200 OK\r\nContent-Type: application/json; charset=utf-8\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n2;x=y\r\nde\r\n0\r\nT: 1\r\n\r\n",
        ),
        (Dir::Right, b"HEAD / HTTP/1.0\r\n\r\n"),
        (Dir::Left, b"HTTP/1.1 200 OK\r\nContent-Length: 99\r\n\r\n"),
    ]);
    assert_eq!(
        got,
        "#1 > HTTP POST /topics/demo 5 bytes\n\
         #1 > HTTP body 5 bytes \"hello\"\n\
         #1 < HTTP 201 Created application/json 11 bytes\n\
         #1 < HTTP body 11 bytes \"{\\\"id\\\":1764}\"\n\
         #1 > HTTP GET /topics/demo/events?since=0\n\
         #1 < HTTP 200 OK application/json chunked\n\
         #1 < HTTP body 5 bytes \"abcde\"\n\
         #1 > HTTP HEAD / HTTP/1.0\n\
         #1 < HTTP 200 OK\n"
    );
}

#[test]
fn a_websocket_session() {
    let mut server = Vec::new();
    server.extend_from_slice(SWITCH);
    server.extend(plain(OpCode::Text, b"{\"id\":1,\"data\":\"hi\"}"));
    server.extend(plain(OpCode::Pong, b"p1"));
    let mut close = Vec::new();
    write_close(&mut close, Some(1000), "");
    server.extend(&close);
    let mut client = Vec::new();
    client.extend(masked(OpCode::Text, b"hello"));
    client.extend(masked(OpCode::Ping, b"p1"));
    client.extend(frame(false, OpCode::Binary, Some([9; 4]), &[0, 1, 2]));
    client.extend(frame(true, OpCode::Continuation, Some([7; 4]), b"\xff"));
    let mut cclose = Vec::new();
    crate::proto::ws::frame::write_header(&mut cclose, true, OpCode::Close, Some([5; 4]), 4);
    cclose.extend([1000u16.to_be_bytes()[0] ^ 5, 0xe8 ^ 5, b'o' ^ 5, b'k' ^ 5]);
    client.extend(cclose);
    let got = run(&[
        (Dir::Right, UPGRADE),
        (Dir::Left, &server),
        (Dir::Right, &client),
    ]);
    assert_eq!(
        got,
        "#1 > HTTP GET /topics/demo/ws upgrade=websocket\n\
         #1 < HTTP 101 Switching Protocols\n\
         #1 < WS text fin len=20 \"{\\\"id\\\":1,\\\"data\\\":\\\"hi\\\"}\"\n\
         #1 < WS pong \"p1\"\n\
         #1 < WS close 1000 \"\"\n\
         #1 > WS text fin masked len=5 \"hello\"\n\
         #1 > WS ping \"p1\" masked\n\
         #1 > WS binary masked len=3 \"\\x00\\x01\\x02\"\n\
         #1 > WS continuation fin masked len=1 \"\\xff\"\n\
         #1 > WS close 1000 \"ok\" masked\n"
    );
}

#[test]
fn client_bytes_before_the_answer_are_held_then_read_as_frames() {
    let mut early = UPGRADE.to_vec();
    early.extend(masked(OpCode::Text, b"early"));
    let got = run(&[(Dir::Right, &early), (Dir::Left, SWITCH)]);
    assert_eq!(
        got,
        "#1 > HTTP GET /topics/demo/ws upgrade=websocket\n\
         #1 < HTTP 101 Switching Protocols\n\
         #1 > WS text fin masked len=5 \"early\"\n"
    );
}

#[test]
fn a_refused_upgrade_stays_http() {
    let got = run(&[
        (Dir::Right, UPGRADE),
        (
            Dir::Left,
            b"HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\n\r\n",
        ),
        (Dir::Right, b"GET /x HTTP/1.1\r\n\r\n"),
    ]);
    assert_eq!(
        got,
        "#1 > HTTP GET /topics/demo/ws upgrade=websocket\n\
         #1 < HTTP 404 Not Found\n\
         #1 > HTTP GET /x\n"
    );
}

#[test]
fn an_event_stream_chunked_or_not() {
    let mut events = Vec::new();
    write_event(&mut events, Some("17"), None, "hi").unwrap();
    write_event(&mut events, Some("18"), Some("greeting"), "two\nlines").unwrap();
    write_comment(&mut events, "keepalive");
    events.extend_from_slice(b"retry: 3000\r\n\r\ndata:x\rdata: y\r\r: bye");
    let mut chunked = b"HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\n\
Transfer-Encoding: chunked\r\n\r\n"
        .to_vec();
    for part in events.chunks(7) {
        crate::proto::http1::write_chunk(&mut chunked, part);
    }
    crate::proto::http1::write_last_chunk(&mut chunked);
    let got = run(&[
        (Dir::Right, b"GET /t/sse HTTP/1.1\r\n\r\n"),
        (Dir::Left, &chunked),
    ]);
    let events_lines = "#1 < SSE id=17 event=- data=\"hi\"\n\
         #1 < SSE id=18 event=greeting data=\"two\\nlines\"\n\
         #1 < SSE comment \"keepalive\"\n\
         #1 < SSE retry=3000\n\
         #1 < SSE id=- event=- data=\"x\\ny\"\n";
    assert_eq!(
        got,
        format!(
            "#1 > HTTP GET /t/sse\n\
             #1 < HTTP 200 OK text/event-stream chunked\n\
             {events_lines}\
             #1 < SSE comment \"bye\"\n\
             #1 < HTTP body {} bytes (event stream)\n",
            events.len()
        )
        .replace("#1 < SSE comment \"bye\"\n", "")
    );
    // Delimited by the close: the last comment line ends with the stream, and is lost
    // with it (an unterminated line is never dispatched).
    let mut tap = Tap::new(2, Dir::Right);
    let mut out = String::new();
    tap.feed(Dir::Right, b"GET /t/sse HTTP/1.1\r\n\r\n", &mut out);
    tap.feed(
        Dir::Left,
        b"HTTP/1.1 200 OK\r\nContent-Type: Text/Event-Stream; charset=utf-8\r\n\r\n",
        &mut out,
    );
    tap.feed(Dir::Left, &events, &mut out);
    tap.eof(Dir::Left, &mut out);
    assert!(
        out.contains("#2 < HTTP 200 OK Text/Event-Stream until-close\n"),
        "{out}"
    );
    assert!(
        out.contains("#2 < SSE id=17 event=- data=\"hi\"\n"),
        "{out}"
    );
    assert!(out.ends_with(&format!(
        "#2 < HTTP body {} bytes (event stream)\n",
        events.len()
    )));
}

#[test]
fn compressed_messages_are_inflated_when_negotiated() {
    let switch =
        b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
Sec-WebSocket-Extensions: permessage-deflate; server_no_context_takeover\r\n\r\n";
    let text = "{\"data\":\"hello hello hello hello\"}";
    let mut d = Deflater::new(15, 6, false);
    let mut server = switch.to_vec();
    for _ in 0..2 {
        let mut z = Vec::new();
        d.compress(text.as_bytes(), &mut z);
        write_header_rsv(&mut server, true, 0b100, OpCode::Text, None, z.len() as u64);
        server.extend(&z);
    }
    let got = run(&[(Dir::Right, UPGRADE), (Dir::Left, &server)]);
    let lines: Vec<&str> = got.lines().collect();
    assert_eq!(
        lines[1],
        "#1 < HTTP 101 Switching Protocols permessage-deflate"
    );
    for l in &lines[2..] {
        assert!(l.starts_with("#1 < WS text fin rsv1 len="), "{l}");
        assert!(
            l.ends_with(
                " compressed inflated=34 \"{\\\"data\\\":\\\"hello hello hello hello\\\"}\""
            ),
            "{l}"
        );
    }
    assert_eq!(lines.len(), 4);
    // Without the extension agreed, RSV1 is only shown.
    let mut bare = SWITCH.to_vec();
    write_header_rsv(&mut bare, true, 0b100, OpCode::Text, None, 2);
    bare.extend(b"ab");
    let got = run(&[(Dir::Right, UPGRADE), (Dir::Left, &bare)]);
    assert!(
        got.ends_with("#1 < WS text fin rsv1 len=2 \"ab\"\n"),
        "{got}"
    );
}

#[test]
fn what_cannot_be_parsed_is_raw() {
    // (What a RAW line holds depends on how the bytes came: there is no unit to wait for.)
    let got = feed(&[(Dir::Right, b"GET /\n\nmore")], false, usize::MAX);
    assert_eq!(
        got,
        "#1 > RAW 11 bytes (bare LF in head) \"GET /\\n\\nmore\"\n"
    );
    let got = feed(&[(Dir::Right, b"GET /\n\nmore")], false, 4);
    assert_eq!(
        got,
        "#1 > RAW 8 bytes (bare LF in head) \"GET /\\n\\nm\"\n\
         #1 > RAW 3 bytes \"ore\"\n"
    );
    // A frame with a reserved opcode: the rest of the direction is raw.
    let got = feed(
        &[
            (Dir::Right, UPGRADE),
            (Dir::Left, SWITCH),
            (Dir::Left, b"\x83\x00zz"),
        ],
        false,
        usize::MAX,
    );
    assert!(
        got.ends_with("#1 < RAW 4 bytes (reserved opcode) \"\\x83\\x00zz\"\n"),
        "{got}"
    );
}

#[test]
fn large_units_are_counted_not_kept() {
    let mut tap = Tap::new(3, Dir::Right);
    let mut out = String::new();
    tap.feed(
        Dir::Right,
        b"POST /big HTTP/1.1\r\nContent-Length: 10000000\r\n\r\n",
        &mut out,
    );
    let block = vec![b'a'; 65536];
    let mut left = 10_000_000usize;
    while left > 0 {
        let n = left.min(block.len());
        tap.feed(Dir::Right, &block[..n], &mut out);
        assert!(tap.buffered() < 4096, "{}", tap.buffered());
        left -= n;
    }
    let body = format!(
        "#3 > HTTP body 10000000 bytes \"{}\"...\n",
        "a".repeat(PREVIEW)
    );
    assert!(out.ends_with(&body), "{out}");
    // A head past 16 KiB is not a head.
    let mut tap = Tap::new(4, Dir::Right);
    let mut out = String::new();
    let mut head = b"GET / HTTP/1.1\r\nX: ".to_vec();
    head.resize(20000, b'x');
    tap.feed(Dir::Right, &head, &mut out);
    assert!(
        out.starts_with("#4 > RAW 20000 bytes (header section too large)"),
        "{out}"
    );
}

#[test]
fn hexdump_annotates_a_frame() {
    let mut script_client = Vec::new();
    script_client.extend(masked(OpCode::Text, b"hello"));
    let got = feed(
        &[
            (Dir::Right, UPGRADE),
            (Dir::Left, SWITCH),
            (Dir::Right, &script_client),
        ],
        true,
        usize::MAX,
    );
    let ws = &got[got.find("#1 > WS").unwrap()..];
    assert_eq!(
        ws,
        "#1 > WS text fin masked len=5 \"hello\"\n\
         #1 >     header: fin=1 rsv=000 opcode=0x1 mask=1 len=5\n\
         #1 >     0000  81 85                                             |..|\n\
         #1 >     masking key\n\
         #1 >     0000  01 02 03 04                                       |....|\n\
         #1 >     payload as sent (masked)\n\
         #1 >     0000  69 67 6f 68 6e                                    |igohn|\n\
         #1 >     payload unmasked\n\
         #1 >     0000  68 65 6c 6c 6f                                    |hello|\n"
    );
}

#[test]
fn the_client_may_be_the_left_side() {
    // A connection the hub dialed: what it sends (`<`) is the request.
    let mut tap = Tap::new(5, Dir::Left);
    let mut out = String::new();
    tap.feed(Dir::Left, UPGRADE, &mut out);
    tap.feed(Dir::Right, SWITCH, &mut out);
    tap.feed(Dir::Right, &plain(OpCode::Text, b"up"), &mut out);
    tap.feed(Dir::Left, &masked(OpCode::Pong, b""), &mut out);
    assert_eq!(
        out,
        "#5 < HTTP GET /topics/demo/ws upgrade=websocket\n\
         #5 > HTTP 101 Switching Protocols\n\
         #5 > WS text fin len=2 \"up\"\n\
         #5 < WS pong \"\" masked\n"
    );
}

#[test]
fn quoting() {
    let mut s = String::new();
    super::fmt::quote(&mut s, "é\"\\\r\n\t\u{7f}\u{85}".as_bytes(), 9);
    super::fmt::quote(&mut s, b"\xe9x", 2);
    assert_eq!(s, "\"é\\\"\\\\\\r\\n\\t\\x7f\\u{85}\"\"\\xe9x\"");
}

#[test]
fn arbitrary_bytes_never_panic_and_stay_bounded() {
    // A small deterministic generator: the tap is pure, so no randomness from outside.
    let mut x: u64 = 0x9e37_79b9_7f4a_7c15;
    let mut next = move || {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        x
    };
    let pieces: [&[u8]; 6] = [
        UPGRADE,
        SWITCH,
        b"\r\n",
        b"HTTP/1.1 200 OK\r\n",
        b"\x81\x7e",
        b"0\r\n",
    ];
    for round in 0..200 {
        let mut tap = Tap::new(round, Dir::Right);
        tap.set_hex(round % 2 == 0);
        let mut out = String::new();
        for _ in 0..40 {
            let dir = if next() % 2 == 0 {
                Dir::Right
            } else {
                Dir::Left
            };
            let mut bytes: Vec<u8> = (0..next() % 300).map(|_| next() as u8).collect();
            if next() % 3 == 0 {
                bytes.extend_from_slice(pieces[(next() % 6) as usize]);
            }
            tap.feed(dir, &bytes, &mut out);
            assert!(tap.buffered() < 1 << 20);
            out.clear();
        }
        tap.eof(Dir::Left, &mut out);
        tap.eof(Dir::Right, &mut out);
    }
}
