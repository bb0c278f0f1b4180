//! Issue 3: WebSocket through the hub over loopback, with the test client in `util`.

mod util;

use std::io::Write;
use std::net::SocketAddr;

use util::*;

/// Publishes `body` (path and query in `path`) and returns the id from the hub's answer,
/// `201 {"topic":..,"id":ID}`.
fn publish(addr: SocketAddr, path: &str, body: &str) -> u64 {
    let r = post(addr, path, body);
    assert_eq!(r.status, 201, "{}", r.text());
    json_u64(&r.text(), "id").unwrap_or_else(|| panic!("no id in {}", r.text()))
}

/// Checks that `text` is the event message for `data` (no event name) and returns its id;
/// the topic's whole log must be exactly that one event (it was the first published).
fn only_event(addr: SocketAddr, topic: &str, text: &str, data: &str) -> u64 {
    let id = json_u64(text, "id").unwrap_or_else(|| panic!("no id in {text}"));
    assert_eq!(
        text,
        format!(r#"{{"id":{id},"event":null,"data":"{data}"}}"#)
    );
    let log = get(addr, &format!("/topics/{topic}/events?since=0")).text();
    assert_eq!(json_ids(&log), vec![id], "{log}");
    id
}

#[test]
fn handshake_rules() {
    let hub = start_hub(&[]);
    let (_, r) = WsClient::try_open(hub.addr, "/topics/h/ws", "");
    assert_eq!(r.status, 101);
    assert_eq!(
        r.header("upgrade").map(str::to_ascii_lowercase).as_deref(),
        Some("websocket")
    );
    // Wrong version: 426 naming the one we speak.
    let mut s = connect(hub.addr);
    s.write_all(
        b"GET /topics/h/ws HTTP/1.1\r\nHost: t\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
          Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 8\r\n\r\n",
    )
    .unwrap();
    let r = read_response(&mut s, &mut Vec::new(), false).unwrap();
    assert_eq!(r.status, 426);
    assert_eq!(r.header("sec-websocket-version"), Some("13"));
    // A key that is not 16 bytes of base64: 400.
    let mut s = connect(hub.addr);
    s.write_all(
        b"GET /topics/h/ws HTTP/1.1\r\nHost: t\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
          Sec-WebSocket-Key: c2hvcnQ=\r\nSec-WebSocket-Version: 13\r\n\r\n",
    )
    .unwrap();
    assert_eq!(
        read_response(&mut s, &mut Vec::new(), false)
            .unwrap()
            .status,
        400
    );
    // Not a WebSocket request at all: 400.
    assert_eq!(get(hub.addr, "/topics/h/ws").status, 400);
}

#[test]
fn subscribers_get_events_and_chat_reaches_everyone_in_order() {
    let hub = start_hub(&[]);
    let mut a = WsClient::open(hub.addr, "/topics/chat/ws", "");
    let mut b = WsClient::open(hub.addr, "/topics/chat/ws", "");
    let f = publish(hub.addr, "/topics/chat?event=news", "from http");
    let expect1 = format!(r#"{{"id":{f},"event":"news","data":"from http"}}"#);
    assert_eq!(a.recv_text(), expect1);
    assert_eq!(b.recv_text(), expect1);
    a.send_text("hello from a \"quoted\" ✓");
    b.send_text("hello from b");
    let expect2 = format!(
        r#"{{"id":{},"event":null,"data":"hello from a \"quoted\" ✓"}}"#,
        f + 1
    );
    let expect3 = format!(r#"{{"id":{},"event":null,"data":"hello from b"}}"#, f + 2);
    for c in [&mut a, &mut b] {
        assert_eq!(c.recv_text(), expect2);
        assert_eq!(c.recv_text(), expect3);
    }
    let r = get(hub.addr, &format!("/topics/chat/events?since={f}"));
    assert_eq!(json_ids(&r.text()), vec![f + 1, f + 2]);
    let r = get(hub.addr, "/topics/chat/events?since=0");
    assert_eq!(json_ids(&r.text()), vec![f, f + 1, f + 2]);
}

#[test]
fn bytes_pipelined_after_the_handshake_are_not_lost() {
    let hub = start_hub(&[]);
    let mut s = connect(hub.addr);
    let mut raw =
        b"GET /topics/pipe/ws HTTP/1.1\r\nHost: t\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
          Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n"
            .to_vec();
    raw.extend(frame_bytes(true, 1, b"early bird", [1, 2, 3, 4]));
    s.write_all(&raw).unwrap();
    let mut c = WsClient { s, buf: Vec::new() };
    let r = read_response(&mut c.s, &mut c.buf, true).unwrap();
    assert_eq!(r.status, 101);
    let text = c.recv_text();
    only_event(hub.addr, "pipe", &text, "early bird");
}

#[test]
fn ping_pong_binary_close_and_fragmentation() {
    let hub = start_hub(&[]);
    let mut c = WsClient::open(hub.addr, "/topics/f/ws", "");
    c.send_frame(true, 9, b"are you there");
    assert_eq!(
        c.recv().unwrap(),
        WsFrame {
            fin: true,
            opcode: 10,
            payload: b"are you there".to_vec()
        }
    );
    // A fragmented text message with a ping in the middle.
    c.send_frame(false, 1, "frag".as_bytes());
    c.send_frame(true, 9, b"mid");
    c.send_frame(true, 0, "mented ✓".as_bytes());
    assert_eq!(c.recv().unwrap().opcode, 10);
    let text = c.recv_text();
    only_event(hub.addr, "f", &text, "fragmented ✓");
    // Clean close: echoed, then the server closes TCP.
    c.send_frame(true, 8, &[0x03, 0xe8]);
    assert_eq!(
        c.recv().unwrap(),
        WsFrame {
            fin: true,
            opcode: 8,
            payload: vec![0x03, 0xe8]
        }
    );
    assert!(is_closed(&mut c.s));

    // Binary is not published: 1003.
    let mut c = WsClient::open(hub.addr, "/topics/f/ws", "");
    c.send_frame(true, 2, b"\x00\x01");
    let f = c.recv().unwrap();
    assert_eq!((f.opcode, &f.payload[..2]), (8, &[0x03, 0xeb][..]));
    // Invalid UTF-8 text: 1007; unmasked frame: 1002.
    let mut c = WsClient::open(hub.addr, "/topics/f/ws", "");
    c.send_frame(true, 1, b"\xce\xba\xe1\xbd");
    c.send_frame(true, 1, b"\xff");
    let f = c.recv().unwrap();
    assert_eq!((f.opcode, &f.payload[..2]), (8, &[0x03, 0xef][..]));
    let mut c = WsClient::open(hub.addr, "/topics/f/ws", "");
    c.s.write_all(&[0x81, 0x02, b'h', b'i']).unwrap();
    let f = c.recv().unwrap();
    assert_eq!((f.opcode, &f.payload[..2]), (8, &[0x03, 0xea][..]));
    assert!(is_closed(&mut c.s));
}

#[test]
fn oversized_text_closes_with_1009() {
    let hub = start_hub(&[]);
    let mut c = WsClient::open(hub.addr, "/topics/big/ws", "");
    c.send_text(&"x".repeat((1 << 20) + 1));
    let f = c.recv().unwrap();
    assert_eq!((f.opcode, &f.payload[..2]), (8, &[0x03, 0xf1][..]));
}

#[test]
fn since_replays_with_gap_notice() {
    let hub = start_hub(&["--history-events", "2"]);
    let ev = |id: u64, data: &str| format!(r#"{{"id":{id},"event":null,"data":"{data}"}}"#);
    let gap = |oldest: u64| format!(r#"{{"gap":true,"oldest":{oldest}}}"#);
    // Ids f..=f+3; kept: f+2, f+3.
    let f = publish(hub.addr, "/topics/r", "e1");
    for i in 2..=4 {
        assert_eq!(publish(hub.addr, "/topics/r", &format!("e{i}")), f + i - 1);
    }
    let mut c = WsClient::open(hub.addr, &format!("/topics/r/ws?since={f}"), "");
    assert_eq!(c.recv_text(), gap(f + 2));
    assert_eq!(c.recv_text(), ev(f + 2, "e3"));
    assert_eq!(c.recv_text(), ev(f + 3, "e4"));
    assert_eq!(publish(hub.addr, "/topics/r", "e5"), f + 4);
    assert_eq!(c.recv_text(), ev(f + 4, "e5"));
    // Kept: f+3, f+4. Resuming inside the kept range: no notice.
    let mut c = WsClient::open(hub.addr, &format!("/topics/r/ws?since={}", f + 2), "");
    assert_eq!(c.recv_text(), ev(f + 3, "e4"));
    assert_eq!(c.recv_text(), ev(f + 4, "e5"));
    // An old small cursor (from before a restart) and "from the start" on a trimmed log:
    // the notice, then from the oldest kept event.
    for since in [1, 3, 0] {
        let mut c = WsClient::open(hub.addr, &format!("/topics/r/ws?since={since}"), "");
        assert_eq!(c.recv_text(), gap(f + 3), "since={since}");
        assert_eq!(c.recv_text(), ev(f + 3, "e4"), "since={since}");
        assert_eq!(c.recv_text(), ev(f + 4, "e5"), "since={since}");
    }

    // A fresh, untrimmed topic: since=3 is a gap starting at its first event; the cursor
    // right before its first id, and 0, are not.
    let g = publish(hub.addr, "/topics/fresh", "a");
    assert_eq!(publish(hub.addr, "/topics/fresh", "b"), g + 1);
    let mut c = WsClient::open(hub.addr, "/topics/fresh/ws?since=3", "");
    assert_eq!(c.recv_text(), gap(g));
    assert_eq!(c.recv_text(), ev(g, "a"));
    assert_eq!(c.recv_text(), ev(g + 1, "b"));
    for since in [g - 1, 0] {
        let mut c = WsClient::open(hub.addr, &format!("/topics/fresh/ws?since={since}"), "");
        assert_eq!(c.recv_text(), ev(g, "a"), "since={since}");
        assert_eq!(c.recv_text(), ev(g + 1, "b"), "since={since}");
    }
}

#[test]
fn allow_origin_refuses_other_sites() {
    let hub = start_hub(&["--allow-origin", "http://good.example"]);
    let (_, r) = WsClient::try_open(hub.addr, "/topics/o/ws", "Origin: http://evil.example\r\n");
    assert_eq!(r.status, 403);
    let (_, r) = WsClient::try_open(hub.addr, "/topics/o/ws", "Origin: null\r\n");
    assert_eq!(r.status, 403);
    let (_, r) = WsClient::try_open(hub.addr, "/topics/o/ws", "Origin: http://good.example\r\n");
    assert_eq!(r.status, 101);
    // Not a browser (no Origin): served, as curl's publishes are (issue 11: the origin rule
    // keeps other sites' pages out; tokens keep other programs out).
    let (_, r) = WsClient::try_open(hub.addr, "/topics/o/ws", "");
    assert_eq!(r.status, 101);
    // The hub's own page (Origin = http:// + Host; the client sends `Host: t`) is always
    // served.
    let (_, r) = WsClient::try_open(hub.addr, "/topics/o/ws", "Origin: http://t\r\n");
    assert_eq!(r.status, 101);
}

/// Issue 9's bug: the hub closes with 1003 on a binary frame; text frames that came in the
/// same TCP segment behind it must be neither published nor echoed, and nothing may follow
/// the Close.
#[test]
fn frames_behind_a_refused_binary_frame_are_not_published() {
    let hub = start_hub(&[]);
    let mut watcher = WsClient::open(hub.addr, "/topics/after/ws", "");
    let mut c = WsClient::open(hub.addr, "/topics/after/ws", "");
    let mut burst = frame_bytes(true, 2, b"\x00\x01binary", [9, 8, 7, 6]);
    burst.extend(frame_bytes(
        true,
        1,
        b"must not be published 1",
        [1, 2, 3, 4],
    ));
    burst.extend(frame_bytes(
        true,
        1,
        b"must not be published 2",
        [5, 6, 7, 8],
    ));
    c.s.write_all(&burst).unwrap();
    let close = c.recv().expect("the close frame");
    assert_eq!(
        close.opcode, 8,
        "the first frame back is the Close, got {close:?}"
    );
    assert_eq!(&close.payload[..2], &1003u16.to_be_bytes());
    // Complete the handshake; nothing but EOF may follow our Close.
    c.send_frame(true, 8, &1000u16.to_be_bytes());
    assert_eq!(c.recv(), None, "no frame after the Close");
    // Nothing reached the topic: its log is empty and the watcher got nothing.
    let r = get(hub.addr, "/topics/after/events?since=0");
    assert_eq!(json_ids(&r.text()), Vec::<u64>::new(), "{}", r.text());
    assert_eq!(post(hub.addr, "/topics/after", "marker").status, 201);
    assert!(watcher.recv_text().contains("\"data\":\"marker\""));
}
